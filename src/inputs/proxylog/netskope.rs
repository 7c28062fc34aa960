//! Netskope transaction events (Web Transactions, "WebTx"), JSON Lines as
//! Log Streaming delivers them, with the field names of Netskope's
//! published transaction-event field list (W3C-style names):
//!
//! | meaning | field |
//! | --- | --- |
//! | time | `x-cs-timestamp` (epoch seconds), else `date` + `time` (UTC) |
//! | client | `c-ip`; its port `c-port` / `x-cs-src-port` where present |
//! | server | `s-ip`; its port `cs-uri-port` |
//! | SNI, host | `x-cs-sni`, else `cs-host` |
//! | bypassed | `x-ssl-bypass` (Yes/No) with `x-ssl-bypass-reason` |
//! | error | `x-error`, `x-sr-ssl-...`/`x-cs-ssl-...` handshake errors |
//! | action | `x-transaction-action` / `x-policy-action` (`block`) |
//!
//! `x-ssl-bypass` Yes is not inspected (the reason is Netskope's, e.g.
//! "Certificate Pinned App" or "SSL Do Not Decrypt Policy"); No is
//! inspected; an `x-error` that names the client's handshake is the client
//! rejecting the certificate.

use super::{Ctx, LineResult, Parts, Verdict, field, ip, name, port, time, yes};
use serde_json::{Map, Value};

fn object(line: &str) -> Option<Map<String, Value>> {
    match serde_json::from_str(line) {
        Ok(Value::Object(o)) => Some(o),
        _ => None,
    }
}

pub fn sniff(line: &str) -> bool {
    object(line).is_some_and(|o| {
        o.contains_key("c-ip") && (o.contains_key("x-ssl-bypass") || o.contains_key("x-cs-sni"))
    })
}

pub(crate) fn parse_line(line: &str, ctx: &Ctx) -> LineResult {
    let o = object(line).ok_or("not a JSON object")?;
    let ts = match field(&o, &["x-cs-timestamp"]) {
        Some(t) => time(&t)?,
        None => {
            let d = field(&o, &["date"]).ok_or("no x-cs-timestamp, nor date and time")?;
            let t = field(&o, &["time"]).ok_or("no time")?;
            time(&format!("{d} {t}"))?
        }
    };
    let opt = |keys: &[&str]| field(&o, keys).unwrap_or_default();
    let error = opt(&[
        "x-error",
        "x-cs-ssl-handshake-error",
        "x-sr-ssl-handshake-error",
    ]);
    let action = opt(&["x-transaction-action", "x-policy-action"]).to_ascii_lowercase();
    let bypass = field(&o, &["x-ssl-bypass"]).and_then(|b| yes(&b));
    let (verdict, intercepted, reason) =
        if !error.is_empty() && error.to_ascii_lowercase().contains("client") {
            (
                Verdict::ClientRejected,
                Some(true),
                format!("client rejected certificate: {error}"),
            )
        } else if !error.is_empty() && error.to_ascii_lowercase().contains("server") {
            (
                Verdict::ServerFailed,
                Some(true),
                format!("server handshake failed: {error}"),
            )
        } else if action == "block" || action == "blocked" {
            (
                Verdict::Blocked,
                None,
                format!("blocked by policy {}", opt(&["x-policy-name"]))
                    .trim()
                    .to_string(),
            )
        } else {
            match bypass {
                Some(true) => {
                    let why = opt(&["x-ssl-bypass-reason"]);
                    (
                        Verdict::NotInspected,
                        Some(false),
                        if why.is_empty() {
                            "not inspected: SSL bypass".into()
                        } else {
                            format!("not inspected: {why}")
                        },
                    )
                }
                Some(false) => (Verdict::Inspected, Some(true), "inspected".into()),
                None => return Ok(None),
            }
        };
    Parts {
        ts,
        end_ts: ts,
        client: (
            ip(&opt(&["c-ip"]))?,
            port(&opt(&["c-port", "x-cs-src-port"]))?,
        ),
        server: (ip(&opt(&["s-ip"]))?, port(&opt(&["cs-uri-port"]))?),
        sni: name(&opt(&["x-cs-sni", "cs-host"])),
        community_id: None,
        verdict,
        intercepted,
        reason,
    }
    .entry("netskope", ctx)
}

#[cfg(test)]
mod tests {
    use super::super::{Verdict, parse_str};

    /// Lines written from Netskope's transaction-event field list.
    #[test]
    fn transaction_events() {
        let text = r#"{"date": "2026-12-04", "time": "19:48:13", "x-cs-timestamp": 1796413693, "c-ip": "10.0.0.5", "c-port": 40708, "s-ip": "10.0.1.1", "cs-uri-port": 443, "cs-host": "api.pinned.example", "x-cs-sni": "api.pinned.example", "x-ssl-bypass": "Yes", "x-ssl-bypass-reason": "Certificate Pinned App"}
{"date": "2026-12-04", "time": "19:48:14", "c-ip": "10.0.0.5", "s-ip": "10.0.1.2", "cs-uri-port": "443", "x-cs-sni": "mail.example", "x-ssl-bypass": "No"}
{"x-cs-timestamp": 1796413695, "c-ip": "10.0.0.5", "s-ip": "10.0.1.3", "x-cs-sni": "c.example", "x-error": "client closed the TLS handshake: unknown CA", "x-ssl-bypass": "No"}
{"x-cs-timestamp": 1796413696, "c-ip": "10.0.0.5", "x-cs-sni": "d.example"}
{"x-cs-timestamp": 1796413697, "c-ip": "ten", "x-cs-sni": "d.example", "x-ssl-bypass": "No"}
"#;
        let got = parse_str(text, "n.json").unwrap();
        let v: Vec<_> = got
            .items
            .iter()
            .map(|e| (e.verdict, e.reason.as_str()))
            .collect();
        assert_eq!(
            v,
            [
                (
                    Verdict::NotInspected,
                    "not inspected: Certificate Pinned App"
                ),
                (Verdict::Inspected, "inspected"),
                (
                    Verdict::ClientRejected,
                    "client rejected certificate: client closed the TLS handshake: unknown CA"
                ),
            ]
        );
        assert_eq!(got.items[0].client_port, Some(40708));
        assert_eq!(got.items[1].server_port, Some(443));
        let lines: Vec<_> = got.errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, [Some(5)]);
    }
}
