//! mitmproxy: JSON Lines written by the small addon the README gives
//! (`blindspot_log.py`, run with `mitmdump -s blindspot_log.py`). One
//! object per TLS decision:
//!
//! ```json
//! {"ts": 1796413693.485, "start": 1796413693.402, "client": "10.0.0.5:40708", "server": "10.0.1.1:443", "sni": "a.example", "event": "client_rejected", "error": "Client TLS handshake failed. The client does not trust the proxy's certificate for a.example (tlsv1 alert unknown ca)"}
//! ```
//!
//! `event`: `intercepted` (hook `tls_established_client`), `passthrough`
//! (the connection is ignored: `--ignore-hosts`, `--allow-hosts`),
//! `client_rejected` (`tls_failed_client`), `server_failed`
//! (`tls_failed_server`). `start` is the client connection's start,
//! `ts` the time of the event; `server` and `error` may be null.

use super::{Ctx, LineResult, Parts, Verdict, endpoint, epoch, name};
use serde_json::{Map, Value};

fn object(line: &str) -> Option<Map<String, Value>> {
    match serde_json::from_str(line) {
        Ok(Value::Object(o)) => Some(o),
        _ => None,
    }
}

pub fn sniff(line: &str) -> bool {
    object(line).is_some_and(|o| {
        o.get("event").is_some_and(Value::is_string)
            && o.get("client").is_some_and(Value::is_string)
    })
}

fn num_or_text(v: Option<&Value>) -> Option<String> {
    v.and_then(super::text)
}

pub(crate) fn parse_line(line: &str, ctx: &Ctx) -> LineResult {
    let o = object(line).ok_or("not a JSON object")?;
    let ts = epoch(&num_or_text(o.get("ts")).ok_or("no ts")?)?;
    let start = match num_or_text(o.get("start")) {
        Some(s) => epoch(&s)?,
        None => ts,
    };
    let event = o.get("event").and_then(Value::as_str).ok_or("no event")?;
    let error = o
        .get("error")
        .and_then(Value::as_str)
        .filter(|e| !e.is_empty());
    let (verdict, intercepted, reason) = match event {
        "intercepted" => (Verdict::Inspected, Some(true), "inspected".to_string()),
        "passthrough" => (
            Verdict::NotInspected,
            Some(false),
            "not inspected: ignored host (passthrough)".to_string(),
        ),
        "client_rejected" => (
            Verdict::ClientRejected,
            Some(true),
            match error {
                Some(e) => format!("client rejected certificate: {e}"),
                None => "client rejected certificate".to_string(),
            },
        ),
        "server_failed" => (
            Verdict::ServerFailed,
            Some(true),
            match error {
                Some(e) => format!("server handshake failed: {e}"),
                None => "server handshake failed".to_string(),
            },
        ),
        other => {
            return Err(format!(
                "event {} is not intercepted, passthrough, client_rejected or server_failed",
                super::super::jsondoc::shown(other)
            ));
        }
    };
    let client = endpoint(o.get("client").and_then(Value::as_str).unwrap_or("-"))?;
    let server = match o.get("server").and_then(Value::as_str) {
        Some(s) => endpoint(s)?,
        None => (None, None),
    };
    Parts {
        ts: start,
        end_ts: ts,
        client,
        server,
        sni: o.get("sni").and_then(Value::as_str).and_then(name),
        community_id: None,
        verdict,
        intercepted,
        reason,
    }
    .entry("mitmproxy", ctx)
}

#[cfg(test)]
mod tests {
    use super::super::{Verdict, parse_str};

    /// Lines as the README's addon writes them.
    #[test]
    fn addon_lines() {
        let text = r#"{"ts": 1796413693.485, "start": 1796413693.402, "client": "10.0.0.5:40708", "server": "10.0.1.1:443", "sni": "a.example", "event": "client_rejected", "error": "Client TLS handshake failed. The client does not trust the proxy's certificate for a.example (tlsv1 alert unknown ca)"}
{"ts": 1796413694.0, "start": 1796413693.9, "client": "[2001:db8::5]:40710", "server": null, "sni": "b.example", "event": "passthrough", "error": null}
{"ts": 1796413695, "client": "10.0.0.5:40712", "server": "10.0.1.1:443", "sni": null, "event": "intercepted"}
{"ts": 1796413696, "client": "10.0.0.5:40714", "event": "tls_start"}
{"ts": "soon", "client": "10.0.0.5:40714", "event": "intercepted"}
{"ts": 1796413696, "client": "-", "event": "intercepted"}
"#;
        let got = parse_str(text, "m.jsonl").unwrap();
        let v: Vec<_> = got
            .items
            .iter()
            .map(|e| (e.verdict, e.client_port, e.sni.as_deref()))
            .collect();
        assert_eq!(
            v,
            [
                (Verdict::ClientRejected, Some(40708), Some("a.example")),
                (Verdict::NotInspected, Some(40710), Some("b.example")),
                (Verdict::Inspected, Some(40712), None),
            ]
        );
        assert!(
            got.items[0]
                .reason
                .contains("does not trust the proxy's certificate")
        );
        assert_eq!(got.items[0].end_ts.since(got.items[0].ts), 83_000_000);
        let lines: Vec<_> = got.errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, [Some(4), Some(5), Some(6)]);
    }
}
