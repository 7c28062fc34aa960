//! Zscaler Internet Access NSS web logs, JSON Lines as an NSS feed writes
//! them. The feed's output format is chosen by the admin from Zscaler's
//! documented NSS web log fields; blindspot reads these names, either at
//! the top level or inside `"event"` (the Splunk-style feed template):
//!
//! | meaning | NSS field | JSON names read |
//! | --- | --- | --- |
//! | time | `%s{time}` / `%d{epochtime}` | `datetime`, `time`, `epochtime` |
//! | client | `%s{cip}` | `clientip`, `cip` |
//! | client port | `%d{cport}` (if the feed has it) | `clientport`, `cport` |
//! | server | `%s{sip}` | `serverip`, `sip` |
//! | server port | `%d{sport}` (if any) | `serverport`, `sport` |
//! | host | `%s{host}` / `%s{ehost}` | `hostname`, `host`, `ehost` |
//! | decrypted | `%s{ssldecrypted}` (Yes/No) | `ssldecrypted` |
//! | action | `%s{action}` (Allowed/Blocked) | `action` |
//! | reason | `%s{reason}` | `reason` |
//!
//! `ssldecrypted` Yes is inspected, No not inspected (the reason says which
//! rule); `action` Blocked is blocked. Lines of a feed without
//! `ssldecrypted` are not TLS decisions and are skipped silently.

use super::{Ctx, LineResult, Parts, Verdict, field, ip, name, port, time, yes};
use serde_json::{Map, Value};

fn object(line: &str) -> Option<Map<String, Value>> {
    let o = match serde_json::from_str(line) {
        Ok(Value::Object(o)) => o,
        _ => return None,
    };
    match o.get("event") {
        Some(Value::Object(e)) => Some(e.clone()),
        _ => Some(o),
    }
}

pub fn sniff(line: &str) -> bool {
    let raw: Option<Map<String, Value>> = serde_json::from_str(line).ok();
    let zs = raw
        .as_ref()
        .and_then(|o| o.get("sourcetype"))
        .and_then(Value::as_str)
        .is_some_and(|s| s.starts_with("zscalernss"));
    zs || object(line).is_some_and(|o| {
        o.contains_key("ssldecrypted") && (o.contains_key("clientip") || o.contains_key("cip"))
    })
}

pub(crate) fn parse_line(line: &str, ctx: &Ctx) -> LineResult {
    let o = object(line).ok_or("not a JSON object")?;
    let Some(decrypted) = field(&o, &["ssldecrypted"]) else {
        return Ok(None);
    };
    let ts = time(&field(&o, &["datetime", "time", "epochtime"]).ok_or("no datetime")?)?;
    let action = field(&o, &["action"]).unwrap_or_default();
    let why = field(&o, &["reason"]).unwrap_or_default();
    let (verdict, intercepted, reason) = if action.eq_ignore_ascii_case("blocked") {
        (Verdict::Blocked, None, format!("blocked: {why}"))
    } else {
        match yes(&decrypted) {
            Some(true) => (
                Verdict::Inspected,
                Some(true),
                "inspected (SSL decrypted)".into(),
            ),
            Some(false) => (
                Verdict::NotInspected,
                Some(false),
                if why.is_empty() {
                    "not inspected: SSL inspection bypassed".into()
                } else {
                    format!("not inspected: {why}")
                },
            ),
            None => return Err(format!("ssldecrypted {decrypted:?} is not Yes or No")),
        }
    };
    let opt = |keys: &[&str]| field(&o, keys).unwrap_or_default();
    Parts {
        ts,
        end_ts: ts,
        client: (
            ip(&opt(&["clientip", "cip"]))?,
            port(&opt(&["clientport", "cport"]))?,
        ),
        server: (
            ip(&opt(&["serverip", "sip"]))?,
            port(&opt(&["serverport", "sport"]))?,
        ),
        sni: name(&opt(&["hostname", "host", "ehost"])),
        community_id: None,
        verdict,
        intercepted,
        reason,
    }
    .entry("zscaler", ctx)
}

#[cfg(test)]
mod tests {
    use super::super::{Verdict, parse_str};

    /// Lines written from Zscaler's NSS web log field list, in the
    /// Splunk-style feed template (fields inside "event").
    #[test]
    fn nss_feed_lines() {
        let text = r#"{"sourcetype": "zscalernss-web", "event": {"datetime": "2026-12-04 19:48:13", "clientip": "10.0.0.5", "serverip": "10.0.1.1", "hostname": "bank.example", "action": "Allowed", "reason": "Allowed", "ssldecrypted": "No", "urlcategory": "Finance"}}
{"sourcetype": "zscalernss-web", "event": {"datetime": "2026-12-04 19:48:14", "clientip": "10.0.0.5", "serverip": "10.0.1.2", "hostname": "mail.example", "action": "Allowed", "reason": "Allowed", "ssldecrypted": "Yes"}}
{"sourcetype": "zscalernss-web", "event": {"datetime": "2026-12-04 19:48:15", "clientip": "10.0.0.5", "serverip": "10.0.1.3", "hostname": "bad.example", "action": "Blocked", "reason": "Blocked by URL filtering", "ssldecrypted": "Yes"}}
{"sourcetype": "zscalernss-web", "event": {"datetime": "2026-12-04 19:48:16", "clientip": "10.0.0.5", "hostname": "x.example", "action": "Allowed"}}
{"sourcetype": "zscalernss-web", "event": {"datetime": "2026-12-04 19:48:17", "clientip": "10.0.0.5", "ssldecrypted": "Maybe"}}
{"sourcetype": "zscalernss-web", "event": {"datetime": "yesterday", "clientip": "10.0.0.5", "ssldecrypted": "No"}}
"#;
        let got = parse_str(text, "z.json").unwrap();
        let v: Vec<_> = got
            .items
            .iter()
            .map(|e| (e.verdict, e.reason.as_str(), e.client_port))
            .collect();
        assert_eq!(
            v,
            [
                (Verdict::NotInspected, "not inspected: Allowed", None),
                (Verdict::Inspected, "inspected (SSL decrypted)", None),
                (Verdict::Blocked, "blocked: Blocked by URL filtering", None),
            ]
        );
        let lines: Vec<_> = got.errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, [Some(5), Some(6)]);
    }
}
