//! Palo Alto Networks PAN-OS DECRYPTION logs (PAN-OS 10.0 and later), syslog
//! CSV in the order of Palo Alto's published "Decryption Log Fields" list.
//! A syslog header before the first field (`<14>Jan 15 10:00:00 fw1 `) is
//! skipped. The fields read, by position (0 = the first, FUTURE_USE, field):
//!
//! | # | field | # | field |
//! | --- | --- | --- | --- |
//! | 1 | Receive Time | 30 | Action |
//! | 3 | Type (`DECRYPTION`) | 37 | Stage for Client to Firewall |
//! | 6 | Generated Time | 38 | Stage for Firewall to Server |
//! | 7 | Source Address | 39 | TLS Version |
//! | 8 | Destination Address | 43 | Policy Name (decryption rule) |
//! | 11 | Rule Name | 45 | Error Index |
//! | 22 | Session ID | 48 | Proxy Type (`Forward`, `Inbound`, `No Decrypt`, ...) |
//! | 24 | Source Port | 63 | Server Name Indication |
//! | 25 | Destination Port | 64 | Error |
//!
//! Times are `YYYY/MM/DD HH:MM:SS` in the firewall's time zone: set it to
//! UTC (or the join's tolerance must cover the offset). The verdict: an
//! Error naming the client (for example "Received fatal alert
//! UnknownCA from client") is the client rejecting the firewall's
//! certificate; another error is a server-side failure; proxy type "No
//! Decrypt" (or a decryption policy action "no-decrypt") is not inspected;
//! otherwise the session was decrypted.

use super::{Ctx, LineResult, Parts, Verdict, ip, name, port, time};

/// Fields up to Error (#64) must be present.
const MIN_FIELDS: usize = 65;

/// The CSV fields after any syslog header; quoted fields may hold commas
/// and doubled quotes.
fn fields(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            ('"', true) => quoted = false,
            ('"', false) if cur.is_empty() => quoted = true,
            (',', false) => {
                out.push(std::mem::take(&mut cur));
                if out.len() > 256 {
                    return out;
                }
            }
            _ => cur.push(c),
        }
    }
    out.push(cur);
    // "<14>Jan 15 10:00:00 fw1 1,2024/01/15 ..." : the header ends at the last space of field 0
    if let Some(first) = out.first_mut()
        && let Some((_, rest)) = first.rsplit_once(' ')
    {
        *first = rest.to_string();
    }
    out
}

pub fn sniff(line: &str) -> bool {
    let f = fields(line);
    f.len() >= MIN_FIELDS && f[3] == "DECRYPTION"
}

pub(crate) fn parse_line(line: &str, ctx: &Ctx) -> LineResult {
    let f = fields(line);
    if f.len() < MIN_FIELDS {
        return Err(format!(
            "{} fields, expected at least {MIN_FIELDS}",
            f.len()
        ));
    }
    if f[3] != "DECRYPTION" {
        return Ok(None);
    }
    let ts = time(if f[6].is_empty() { &f[1] } else { &f[6] })?;
    let error = f[64].trim();
    let proxy_type = f[48].trim();
    let policy = f[43].trim();
    let lower = error.to_ascii_lowercase();
    let (verdict, intercepted, reason) = if !error.is_empty() && lower.contains("client") {
        (
            Verdict::ClientRejected,
            Some(true),
            format!("client rejected certificate: {error}"),
        )
    } else if !error.is_empty() {
        (
            Verdict::ServerFailed,
            Some(true),
            format!("decryption failed: {error} (stage {})", f[38].trim()),
        )
    } else if proxy_type.eq_ignore_ascii_case("no decrypt")
        || proxy_type.eq_ignore_ascii_case("no-decrypt")
        || f[30].trim().eq_ignore_ascii_case("no-decrypt")
    {
        (
            Verdict::NotInspected,
            Some(false),
            format!("not inspected: no-decrypt rule {policy}")
                .trim()
                .to_string(),
        )
    } else {
        (
            Verdict::Inspected,
            Some(true),
            format!("inspected ({proxy_type} proxy, rule {policy})"),
        )
    };
    Parts {
        ts,
        end_ts: ts,
        client: (ip(&f[7])?, port(&f[24])?),
        server: (ip(&f[8])?, port(&f[25])?),
        sni: name(&f[63]),
        community_id: None,
        verdict,
        intercepted,
        reason,
    }
    .entry("panos", ctx)
}

#[cfg(test)]
mod tests {
    use super::super::{Verdict, parse_str};

    /// Lines written from Palo Alto's decryption log field list (PAN-OS
    /// 10.x), the first behind a syslog header.
    #[test]
    fn decryption_log_lines() {
        let text = r#"<14>Dec  4 19:48:13 fw1 1,2026/12/04 19:48:13,012801096514,DECRYPTION,0,,2026/12/04 19:48:13,10.0.0.5,10.0.1.1,,,allow-web,,,ssl,vsys1,,,,,,,4242,1,40708,443,,,,tcp,allow,,,,,,,certificate,certificate,TLS1.2,,,,decrypt-all,,,,,Forward,,,,,,,,,,,,,,,mail.example,,,,,,
1,2026/12/04 19:48:13,012801096514,DECRYPTION,0,,2026/12/04 19:48:13,10.0.0.5,10.0.1.2,,,allow-web,,,ssl,vsys1,,,,,,,4242,1,40710,443,,,,tcp,allow,,,,,,,certificate,certificate,TLS1.2,,,,decrypt-all,,Certificate,,,Forward,,,,,,,,,,,,,,,api.pinned.example,Received fatal alert UnknownCA from client,,,,,
1,2026/12/04 19:48:13,012801096514,DECRYPTION,0,,2026/12/04 19:48:13,10.0.0.5,10.0.1.3,,,allow-web,,,ssl,vsys1,,,,,,,4242,1,40712,443,,,,tcp,allow,,,,,,,certificate,certificate,TLS1.2,,,,no-decrypt-finance,,,,,No Decrypt,,,,,,,,,,,,,,,bank.example,,,,,,
1,2026/12/04 19:48:13,012801096514,DECRYPTION,0,,2026/12/04 19:48:13,10.0.0.5,10.0.1.1,,,allow-web,,,ssl,vsys1,,,,,,,4242,1,40714,443,,,,tcp,allow,,,,,,,certificate,certificate,TLS1.2,,,,decrypt-all,,,,,Forward,,,,,,,,,,,,,,,"Weird, Name",,,,,,
1,2026/12/04 19:48:13,012801096514,DECRYPTION,0,,2026/12/04 19:48:13,not-an-ip,10.0.1.1,,,allow-web,,,ssl,vsys1,,,,,,,4242,1,40708,443,,,,tcp,allow,,,,,,,certificate,certificate,TLS1.2,,,,decrypt-all,,,,,Forward,,,,,,,,,,,,,,,mail.example,,,,,,
1,2026/12/04 19:48:13,0128,DECRYPTION,0,,short
"#;
        let got = parse_str(text, "pan.csv").unwrap();
        let v: Vec<_> = got
            .items
            .iter()
            .map(|e| {
                (
                    e.verdict,
                    e.reason.as_str(),
                    e.client_port,
                    e.sni.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            v,
            [
                (
                    Verdict::Inspected,
                    "inspected (Forward proxy, rule decrypt-all)",
                    Some(40708),
                    Some("mail.example")
                ),
                (
                    Verdict::ClientRejected,
                    "client rejected certificate: Received fatal alert UnknownCA from client",
                    Some(40710),
                    Some("api.pinned.example")
                ),
                (
                    Verdict::NotInspected,
                    "not inspected: no-decrypt rule no-decrypt-finance",
                    Some(40712),
                    Some("bank.example")
                ),
                (
                    Verdict::Inspected,
                    "inspected (Forward proxy, rule decrypt-all)",
                    Some(40714),
                    Some("weird, name")
                ),
            ]
        );
        assert_eq!(got.items[0].ts.to_string(), "2026-12-04T19:48:13.000000Z");
        let lines: Vec<_> = got.errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, [Some(5), Some(6)]);
    }
}
