//! Squid's access log (ssl-bump) in the logformat the README documents:
//!
//! ```text
//! logformat blindspot %ts.%03tu %6tr %>a:%>p %<a:%<p %Ss/%03>Hs %rm %ru %ssl::bump_mode %"ssl::>sni %"ssl::<cert_errors %err_code/%err_detail
//! ```
//!
//! Eleven fields: the time the entry was written (epoch seconds with ms),
//! the elapsed ms, client ip:port, server ip:port (`-:-` before Squid
//! connected upstream), result code/status, method, URL, the final bump
//! mode (`splice`, `bump`, `peek`, `stare`, `terminate` or `-`), the
//! client's SNI, the upstream certificate's validation errors and
//! `ERR_CODE/detail`. Fields may be quoted ("…", backslash escapes).
//!
//! The verdict: `ERR_SECURE_ACCEPT_FAIL` (the TLS handshake with the client
//! failed) is the client rejecting Squid's certificate — its detail's
//! `TLS_LIB_ERR` is an OpenSSL error whose reason 1000 + N means the client
//! sent alert N; `ERR_SECURE_CONNECT_FAIL` is the server side failing;
//! `splice` passed the session through; `bump` inspected it; `terminate`
//! and `TCP_DENIED` blocked it; no bump mode on an `http://` URL is not TLS.
//! One connection often has two entries (the CONNECT Squid makes up for an
//! intercepted connection, then the tunnel or request); the join combines
//! them.

use super::{Ctx, LineResult, Parts, Verdict, alert_name, endpoint, epoch, name};

/// Squid's line: starts with epoch seconds, has the elapsed time, then
/// `ip:port`.
pub fn sniff(line: &str) -> bool {
    let f = fields(line);
    f.len() == 11 && epoch(&f[0]).is_ok() && f[1].parse::<u64>().is_ok() && f[2].contains(':')
}

/// Whitespace-separated fields; a field starting with `"` runs to the next
/// unescaped `"` (Squid's quoted format).
fn fields(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = line.chars().peekable();
    while out.len() < 32 {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let Some(&c) = chars.peek() else { break };
        let mut f = String::new();
        if c == '"' {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => {
                        if let Some(n) = chars.next() {
                            f.push(n);
                        }
                    }
                    '"' => break,
                    _ => f.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                f.push(c);
                chars.next();
            }
        }
        out.push(f);
    }
    out
}

pub(crate) fn parse_line(line: &str, ctx: &Ctx) -> LineResult {
    let f = fields(line);
    if f.len() != 11 {
        return Err(format!(
            "{} fields, expected 11 (the documented logformat)",
            f.len()
        ));
    }
    let end = epoch(&f[0])?;
    let elapsed_ms: u64 = f[1]
        .parse()
        .map_err(|_| format!("elapsed time {:?} is not milliseconds", f[1]))?;
    let start = crate::time::Timestamp(
        end.0
            .saturating_sub(elapsed_ms.saturating_mul(1_000_000).min(end.0)),
    );
    let client = endpoint(&f[2])?;
    let server = endpoint(&f[3])?;
    let status = f[4].as_str();
    let url = f[6].as_str();
    let bump = f[7].as_str();
    let sni = name(&f[8]);
    let cert_errors = f[9].as_str();
    let (err_code, err_detail) = f[10].split_once('/').unwrap_or((&f[10], "-"));
    let (verdict, intercepted, reason) = if err_code == "ERR_SECURE_ACCEPT_FAIL" {
        let why = match client_alert(err_detail) {
            Some(a) => format!("client rejected certificate: alert {a}"),
            None => format!("client rejected certificate: handshake failed ({err_detail})"),
        };
        (Verdict::ClientRejected, Some(true), why)
    } else if err_code == "ERR_SECURE_CONNECT_FAIL" {
        let why = if cert_errors != "-" && !cert_errors.is_empty() {
            format!("server certificate not trusted: {cert_errors}")
        } else {
            format!("server handshake failed ({err_detail})")
        };
        (Verdict::ServerFailed, Some(bump == "bump"), why)
    } else if bump == "terminate" || status.starts_with("TCP_DENIED") {
        (
            Verdict::Blocked,
            None,
            format!("blocked by policy ({status})"),
        )
    } else {
        match bump {
            "splice" => (
                Verdict::NotInspected,
                Some(false),
                "not inspected: bypass rule (splice)".to_string(),
            ),
            "bump" => (
                Verdict::Inspected,
                Some(true),
                "inspected (bump)".to_string(),
            ),
            "peek" | "stare" => (
                Verdict::NotInspected,
                Some(false),
                format!("not inspected: ended at {bump}"),
            ),
            _ if url.starts_with("http://") => (
                Verdict::NotTls,
                None,
                "plain HTTP through the proxy".to_string(),
            ),
            _ => (
                Verdict::NotTls,
                None,
                format!("no TLS decision logged ({status})"),
            ),
        }
    };
    Parts {
        ts: start,
        end_ts: end,
        client,
        server,
        sni,
        community_id: None,
        verdict,
        intercepted,
        reason,
    }
    .entry("squid", ctx)
}

/// The alert a client sent, from Squid's error detail: `TLS_LIB_ERR=HEX` is
/// an OpenSSL packed error whose reason (low 23 bits) 1000 + N is "alert N
/// received" (OpenSSL's SSL_AD_REASON_OFFSET).
fn client_alert(detail: &str) -> Option<String> {
    let hex = detail
        .split('+')
        .find_map(|p| p.strip_prefix("TLS_LIB_ERR="))?;
    let e = u64::from_str_radix(hex, 16).ok()?;
    let reason = (e & 0x7f_ffff) as u16;
    let d = reason.checked_sub(1000).filter(|d| *d < 256)?;
    Some(match alert_name(d) {
        Some(n) => format!("{n} ({d})"),
        None => format!("{d}"),
    })
}

#[cfg(test)]
mod tests {
    use super::super::{Verdict, parse_str};

    /// The first lines of each kind from fixtures/detect/squid/access.log,
    /// written by Squid 5.7 in make-detect-squid.sh.
    const REAL: &str = include_str!("../../../fixtures/detect/squid/access.log");

    #[test]
    fn the_real_squid_log() {
        let got = parse_str(REAL, "access.log").unwrap();
        assert!(got.errors.is_empty(), "{:?}", got.errors);
        assert_eq!(got.items.len(), REAL.lines().count());
        let pinned: Vec<_> = got
            .items
            .iter()
            .filter(|e| e.sni.as_deref() == Some("api.pinned.example"))
            .collect();
        assert_eq!(pinned.len(), 8);
        for e in &pinned {
            assert_eq!(e.verdict, Verdict::ClientRejected);
            assert_eq!(
                e.reason,
                "client rejected certificate: alert unknown_ca (48)"
            );
            assert_eq!(e.intercepted, Some(true));
            assert_eq!(e.client_ip.to_string(), "10.78.0.100");
            assert!(e.client_port.is_some());
            assert_eq!(
                e.server_ip.map(|i| i.to_string()).as_deref(),
                Some("10.78.1.10")
            );
        }
        let spliced = got
            .items
            .iter()
            .filter(|e| matches!(e.sni.as_deref(), Some("bank.example" | "health.example")));
        for e in spliced {
            assert_eq!(e.verdict, Verdict::NotInspected, "line {}", e.line);
            assert_eq!(e.reason, "not inspected: bypass rule (splice)");
        }
        let http: Vec<_> = got
            .items
            .iter()
            .filter(|e| e.verdict == Verdict::NotTls)
            .collect();
        assert_eq!(http.len(), 1);
        assert_eq!(http[0].server_port, Some(80));
        // start = end - elapsed
        let e = &got.items[0];
        assert!(e.end_ts.since(e.ts) <= 1_000_000_000);
    }

    #[test]
    fn made_up_lines_of_other_outcomes_and_bad_lines() {
        let text = "\
1796413693.485     42 10.0.0.5:40708 10.0.1.1:443 NONE_NONE/503 CONNECT 10.0.1.1:443 bump \"a.example\" \"X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY\" ERR_SECURE_CONNECT_FAIL/SQUID_TLS_ERR_CONNECT+TLS_LIB_ERR=A000086+TLS_IO_ERR=1
1796413694.485     12 10.0.0.5:40709 10.0.1.1:443 TCP_DENIED/403 CONNECT 10.0.1.1:443 terminate b.example - -/-
1796413695.485     12 10.0.0.5:40710 10.0.1.1:443 NONE_NONE/000 CONNECT 10.0.1.1:443 bump c.example - ERR_SECURE_ACCEPT_FAIL/SQUID_TLS_ERR_ACCEPT+TLS_IO_ERR=5
1796413696.485 oops 10.0.0.5:40710 10.0.1.1:443 NONE_NONE/000 CONNECT 10.0.1.1:443 bump c.example - -/-
1796413696.485 12 10.0.0.5:40710 10.0.1.1:443 NONE_NONE/000 CONNECT
1796413696.485 12 -:- 10.0.1.1:443 NONE_NONE/000 CONNECT 10.0.1.1:443 bump c.example - -/-
";
        let got = parse_str(text, "a.log").unwrap();
        let v: Vec<_> = got
            .items
            .iter()
            .map(|e| (e.verdict, e.reason.as_str()))
            .collect();
        assert_eq!(
            v,
            [
                (
                    Verdict::ServerFailed,
                    "server certificate not trusted: X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY"
                ),
                (Verdict::Blocked, "blocked by policy (TCP_DENIED/403)"),
                (
                    Verdict::ClientRejected,
                    "client rejected certificate: handshake failed (SQUID_TLS_ERR_ACCEPT+TLS_IO_ERR=5)"
                ),
            ]
        );
        let lines: Vec<_> = got.errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, [Some(4), Some(5), Some(6)]);
    }

    #[test]
    fn mutated_real_log_does_not_panic() {
        crate::inputs::for_each_mutation(REAL, |t| {
            let _ = parse_str(t, "f");
        });
    }
}
