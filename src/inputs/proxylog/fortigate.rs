//! FortiGate SSL logs (`type="utm" subtype="ssl"`; older firmware writes
//! `type="ssl"`), the key=value syslog lines of Fortinet's published log
//! message reference (log IDs 1700062xxx). Keys read:
//!
//! | meaning | keys |
//! | --- | --- |
//! | time | `eventtime` (epoch s, ms, µs or ns), else `date` + `time` (with `tz`) |
//! | client | `srcip`, `srcport` |
//! | server | `dstip`, `dstport` |
//! | SNI, host | `hostname`, else `sni` |
//! | what happened | `eventtype` (`ssl-exempt`, `ssl-negotiation`, `ssl-anomaly`), `action`, `msg`, `reason` |
//!
//! `ssl-exempt` is not inspected (the exemption's reason); an
//! `ssl-negotiation` or `ssl-anomaly` whose message names the client is
//! the client rejecting the certificate, else a server-side failure;
//! `action="blocked"` is blocked. Fortinet writes Community ID nowhere, so
//! the join uses the addresses.

use super::{Ctx, LineResult, Parts, Verdict, ip, name, port, time};

/// key=value pairs; values may be quoted.
fn pairs(line: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = line.trim();
    while !rest.is_empty() && out.len() < 256 {
        let Some(eq) = rest.find('=') else { break };
        let key = rest[..eq].rsplit(' ').next().unwrap_or("").to_string();
        let after = &rest[eq + 1..];
        let (value, next) = if let Some(q) = after.strip_prefix('"') {
            match q.find('"') {
                Some(end) => (q[..end].to_string(), &q[end + 1..]),
                None => (q.to_string(), ""),
            }
        } else {
            let end = after.find(' ').unwrap_or(after.len());
            (after[..end].to_string(), &after[end..])
        };
        out.push((key, value));
        rest = next.trim_start();
    }
    out
}

fn get<'a>(p: &'a [(String, String)], k: &str) -> &'a str {
    p.iter()
        .find(|(key, _)| key == k)
        .map_or("", |(_, v)| v.as_str())
}

pub fn sniff(line: &str) -> bool {
    let p = pairs(line);
    (get(&p, "type") == "ssl" || get(&p, "subtype") == "ssl") && !get(&p, "srcip").is_empty()
}

/// eventtime in seconds, ms, µs or ns, by its number of digits.
fn eventtime(s: &str) -> Result<crate::time::Timestamp, String> {
    let n: u64 = s
        .parse()
        .map_err(|_| format!("eventtime {s:?} is not a number"))?;
    let ns = match s.len() {
        0..=11 => n.saturating_mul(1_000_000_000),
        12..=14 => n.saturating_mul(1_000_000),
        15..=17 => n.saturating_mul(1_000),
        _ => n,
    };
    Ok(crate::time::Timestamp(ns))
}

pub(crate) fn parse_line(line: &str, ctx: &Ctx) -> LineResult {
    let p = pairs(line);
    if get(&p, "type") != "ssl" && get(&p, "subtype") != "ssl" {
        return Ok(None);
    }
    let ts = match get(&p, "eventtime") {
        "" => {
            let tz = get(&p, "tz");
            let tz = if tz.len() == 5 && tz.is_ascii() {
                format!("{}:{}", &tz[..3], &tz[3..])
            } else {
                String::new()
            };
            time(&format!("{}T{}{tz}", get(&p, "date"), get(&p, "time")))?
        }
        e => eventtime(e)?,
    };
    let event = get(&p, "eventtype");
    let action = get(&p, "action");
    let msg = get(&p, "msg");
    let why = match get(&p, "reason") {
        "" => msg.to_string(),
        r => format!("{msg} ({r})"),
    };
    let names_client = msg.to_ascii_lowercase().contains("client");
    let (verdict, intercepted, reason) = if event == "ssl-exempt" {
        (
            Verdict::NotInspected,
            Some(false),
            format!("not inspected: {why}"),
        )
    } else if action == "blocked" && !names_client {
        (Verdict::Blocked, None, format!("blocked: {why}"))
    } else if matches!(event, "ssl-negotiation" | "ssl-anomaly") && names_client {
        (
            Verdict::ClientRejected,
            Some(true),
            format!("client rejected certificate: {why}"),
        )
    } else if matches!(event, "ssl-negotiation" | "ssl-anomaly") {
        (
            Verdict::ServerFailed,
            Some(true),
            format!("server side failed: {why}"),
        )
    } else {
        return Ok(None);
    };
    let host = match get(&p, "hostname") {
        "" => get(&p, "sni"),
        h => h,
    };
    Parts {
        ts,
        end_ts: ts,
        client: (ip(get(&p, "srcip"))?, port(get(&p, "srcport"))?),
        server: (ip(get(&p, "dstip"))?, port(get(&p, "dstport"))?),
        sni: name(host),
        community_id: None,
        verdict,
        intercepted,
        reason,
    }
    .entry("fortigate", ctx)
}

#[cfg(test)]
mod tests {
    use super::super::{Verdict, parse_str};

    /// Lines written from Fortinet's log message reference (subtype ssl).
    #[test]
    fn ssl_log_lines() {
        let text = r#"date=2026-12-04 time=19:48:13 eventtime=1796413693123456789 tz="+0000" logid="1700062300" type="utm" subtype="ssl" eventtype="ssl-exempt" level="notice" vd="root" action="passthrough" policyid=1 sessionid=1234 srcip=10.0.0.5 srcport=40708 srcintf="port2" dstip=10.0.1.1 dstport=443 dstintf="port1" proto=6 service="HTTPS" hostname="bank.example" profile="deep-inspection" msg="SSL connection is exempted" reason="exempt-ftgd-cat"
date=2026-12-04 time=19:48:14 tz="+0100" logid="1700062302" type="utm" subtype="ssl" eventtype="ssl-negotiation" level="warning" action="blocked" srcip=10.0.0.5 srcport=40710 dstip=10.0.1.2 dstport=443 hostname="api.pinned.example" msg="SSL handshake failed: the client rejected the certificate" reason="unknown-ca"
date=2026-12-04 time=19:48:15 logid="1700062303" type="utm" subtype="ssl" eventtype="ssl-anomaly" action="blocked" srcip=10.0.0.5 srcport=40712 dstip=10.0.1.3 dstport=443 hostname="bad.example" msg="Server certificate blocked" reason="block-cert-invalid"
date=2026-12-04 time=19:48:16 logid="1700062304" type="utm" subtype="ssl" eventtype="ssl-anomaly" action="blocked" srcip=10.0.0.5 srcport=99999 dstip=10.0.1.3
"#;
        let got = parse_str(text, "f.log").unwrap();
        // Sorted by time: line 2 (18:48:14 UTC) comes first.
        let v: Vec<_> = got
            .items
            .iter()
            .map(|e| (e.line, e.verdict, e.reason.as_str()))
            .collect();
        assert_eq!(
            v,
            [
                (
                    2,
                    Verdict::ClientRejected,
                    "client rejected certificate: SSL handshake failed: the client rejected the certificate (unknown-ca)"
                ),
                (
                    1,
                    Verdict::NotInspected,
                    "not inspected: SSL connection is exempted (exempt-ftgd-cat)"
                ),
                (
                    3,
                    Verdict::Blocked,
                    "blocked: Server certificate blocked (block-cert-invalid)"
                ),
            ]
        );
        assert_eq!(got.items[1].ts.0, 1_796_413_693_123_456_789);
        // 19:48:14 at +01:00 is 18:48:14 UTC
        assert_eq!(got.items[0].ts.to_string(), "2026-12-04T18:48:14.000000Z");
        let lines: Vec<_> = got.errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, [Some(4)]);
    }
}
