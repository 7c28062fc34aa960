//! App lifecycle events: JSON Lines of foreground / background / suspended
//! transitions per device and bundle ID.
//!
//! # Shape
//!
//! One JSON object per line:
//!
//! ```json
//! {"ts": "2026-11-21T10:00:00Z", "device": "F2LXK0AAHG7F", "bundle_id": "com.example.bank", "state": "foreground"}
//! ```
//!
//! - `ts`: RFC 3339 text (offset optional, UTC when absent) or a number of
//!   seconds since the Unix epoch (fractions allowed), up to year 9999;
//! - `device`: how the source names the device (serial, UDID or Wi-Fi MAC),
//!   kept as written;
//! - `bundle_id`: the app;
//! - `state`: `foreground`, `background` or `suspended` (any case).
//!
//! Other keys are ignored, so producers may add their own. Blank lines and
//! lines whose first non-blank character is `#` are skipped. The events come
//! back sorted by `ts`, events with equal times in file order.
//!
//! # How the shape is told
//!
//! The first line that is neither blank nor a comment must be a whole JSON
//! object. A file that starts otherwise (a JSON array, a pretty-printed JSON
//! document, CSV, ...) is an `Err`. After that, a line that is not a valid
//! event is skipped with a [`LoadError`] at its line.

use super::jsondoc::{bare_message, kind, shown, strip_bom};
use super::leases::Errors;
use super::{LoadError, Loaded, read_text};
use crate::time::{NANOS_PER_SEC, Timestamp};
use serde::Deserialize;
use serde_json::Value;
use std::path::Path;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AppLifecycle {
    Foreground,
    Background,
    Suspended,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppEvent {
    pub ts: Timestamp,
    /// How the event names the device: serial, UDID or Wi-Fi MAC, as given.
    pub device: String,
    pub bundle_id: String,
    pub state: AppLifecycle,
}

const SHAPE: &str = "expected JSON Lines, one object per line such as \
    {\"ts\": \"2026-11-21T10:00:00Z\", \"device\": \"F2LXK0AAHG7F\", \
    \"bundle_id\": \"com.example.bank\", \"state\": \"foreground\"}";

/// 9999-12-31T23:59:59Z, the last second accepted as epoch seconds.
const MAX_EPOCH_SECS: u64 = 253_402_300_799;

/// One event; `event` is accepted for `state`, `udid` and `serial` for
/// `device`; other keys are warned about once per file.
#[derive(Deserialize)]
struct Line {
    ts: Value,
    #[serde(alias = "udid", alias = "serial")]
    device: String,
    bundle_id: String,
    #[serde(alias = "event")]
    state: String,
    #[serde(flatten)]
    other: std::collections::BTreeMap<String, serde::de::IgnoredAny>,
}

pub fn load(path: &Path) -> Result<Loaded<AppEvent>, LoadError> {
    let text = read_text(path)?;
    parse_str(&text, &path.display().to_string())
}

/// Parses the text of the file; `file` names it in errors.
pub fn parse_str(text: &str, file: &str) -> Result<Loaded<AppEvent>, LoadError> {
    let fail = |line: usize, message: String| LoadError {
        file: file.to_string(),
        line: Some(line),
        message,
    };
    let mut out = Loaded::default();
    // Skipped entries: at most MAX_ERRORS listed, the rest counted.
    let mut errs = Errors::new(file);
    let mut first = true;
    for (i, raw) in strip_bom(text).lines().enumerate() {
        let n = i + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let parsed = if line.starts_with('{') {
            serde_json::from_str::<Line>(line)
        } else {
            if first {
                return Err(fail(
                    n,
                    format!(
                        "not app events: the line starts with {}; {SHAPE}",
                        shown(&head(line))
                    ),
                ));
            }
            errs.push(n, format!("not a JSON object; {SHAPE}"));
            continue;
        };
        let event = match parsed {
            Ok(l) => {
                for k in l.other.keys() {
                    errs.unknown_key(n, "an event", k);
                }
                event(l)
            }
            Err(e) if first && e.classify() == serde_json::error::Category::Eof => {
                return Err(fail(
                    n,
                    format!(
                        "the object does not end on its line (a multi-line JSON document?); {SHAPE}"
                    ),
                ));
            }
            Err(e) => Err(format!("not a valid event: {}", bare_message(&e))),
        };
        first = false;
        match event {
            Ok(ev) => out.items.push(ev),
            Err(m) => errs.push(n, m),
        }
    }
    out.warnings = errs.take_warnings();
    out.errors = errs.finish();
    // Stable: events with the same time stay in file order.
    out.items.sort_by_key(|e| e.ts);
    Ok(out)
}

/// The first few characters of a line, for a message.
fn head(line: &str) -> String {
    line.chars().take(16).collect()
}

fn event(l: Line) -> Result<AppEvent, String> {
    let device = l.device.trim();
    if device.is_empty() {
        return Err("device is empty".into());
    }
    let bundle_id = l.bundle_id.trim();
    if bundle_id.is_empty() {
        return Err("bundle_id is empty".into());
    }
    let state = match l.state.trim().to_ascii_lowercase().as_str() {
        "foreground" => AppLifecycle::Foreground,
        "background" => AppLifecycle::Background,
        "suspended" => AppLifecycle::Suspended,
        _ => {
            return Err(format!(
                "state {} is not foreground, background or suspended",
                shown(&l.state)
            ));
        }
    };
    Ok(AppEvent {
        ts: timestamp(&l.ts)?,
        device: device.to_string(),
        bundle_id: bundle_id.to_string(),
        state,
    })
}

fn timestamp(v: &Value) -> Result<Timestamp, String> {
    const WANT: &str = "expected RFC 3339 such as 2026-11-21T10:00:00Z, or epoch seconds";
    match v {
        Value::String(s) => Timestamp::parse_rfc3339(s)
            .ok_or_else(|| format!("ts {} is not a time ({WANT})", shown(s))),
        Value::Number(n) => {
            if let Some(secs) = n.as_u64() {
                if secs <= MAX_EPOCH_SECS {
                    return Ok(Timestamp::from_secs(secs));
                }
            } else if let Some(f) = n.as_f64()
                && f.is_finite()
                && (0.0..=MAX_EPOCH_SECS as f64).contains(&f)
            {
                let whole = f.trunc();
                let frac =
                    (((f - whole) * NANOS_PER_SEC as f64).round() as u64).min(NANOS_PER_SEC - 1);
                return Ok(Timestamp::from_units(whole as u64, frac, NANOS_PER_SEC));
            }
            Err(format!(
                "ts {n} is out of range (epoch seconds from 0 to {MAX_EPOCH_SECS})"
            ))
        }
        other => Err(format!("ts is {} ({WANT})", kind(other))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_str(text: &str) -> Result<Loaded<AppEvent>, LoadError> {
        parse_str(text, "e.jsonl")
    }

    #[test]
    fn site_aliases_load_and_unknown_keys_warn_once() {
        let text = concat!(
            r#"{"ts": 1700000000, "udid": "U1", "bundle_id": "com.a", "event": "background", "app_name": "A"}"#,
            "\n",
            r#"{"ts": 1700000001, "serial": "S1", "bundle_id": "com.a", "state": "foreground", "app_name": "A"}"#,
        );
        let got = load_str(text).unwrap();
        assert_eq!(got.errors, []);
        let devices: Vec<_> = got
            .items
            .iter()
            .map(|e| (e.device.as_str(), e.state))
            .collect();
        assert_eq!(
            devices,
            [
                ("U1", AppLifecycle::Background),
                ("S1", AppLifecycle::Foreground)
            ]
        );
        let warned: Vec<String> = got.warnings.iter().map(ToString::to_string).collect();
        assert_eq!(
            warned,
            ["e.jsonl:1: unknown key \"app_name\" in an event ignored (warned once per file)"]
        );
    }

    #[test]
    fn sorts_stably_and_reports_bad_lines() {
        let text = "\u{feff}# comment\n\
            {\"ts\": \"2026-11-21T10:00:05Z\", \"device\": \"A\", \"bundle_id\": \"b\", \"state\": \"background\", \"extra\": 1}\n\
            \n\
            {\"ts\": 1795255200.25, \"device\": \"A\", \"bundle_id\": \"b\", \"state\": \"Foreground\"}\n\
            {\"ts\": \"2026-11-21T10:00:05+00:00\", \"device\": \"B\", \"bundle_id\": \"b\", \"state\": \"suspended\"}\n\
            {\"ts\": \"yesterday\", \"device\": \"A\", \"bundle_id\": \"b\", \"state\": \"foreground\"}\n\
            {\"ts\": 1, \"device\": \"A\", \"bundle_id\": \"b\", \"state\": \"paused\"}\n\
            {\"ts\": 1, \"device\": \"A\"\n\
            [1]\n\
            {\"ts\": -5, \"device\": \"A\", \"bundle_id\": \"b\", \"state\": \"foreground\"}\r\n";
        let got = load_str(text).unwrap();
        let order: Vec<(&str, AppLifecycle)> = got
            .items
            .iter()
            .map(|e| (e.device.as_str(), e.state))
            .collect();
        assert_eq!(
            order,
            [
                ("A", AppLifecycle::Foreground),
                ("A", AppLifecycle::Background),
                ("B", AppLifecycle::Suspended)
            ]
        );
        assert_eq!(got.items[0].ts, Timestamp(1_795_255_200_250_000_000));
        assert_eq!(got.items[0].ts.to_string(), "2026-11-21T10:00:00.250000Z");
        let lines: Vec<Option<usize>> = got.errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, [Some(6), Some(7), Some(8), Some(9), Some(10)]);
        assert!(
            got.errors[0]
                .message
                .contains("\"yesterday\" is not a time"),
            "{}",
            got.errors[0]
        );
        assert!(
            got.errors[1].message.contains("\"paused\""),
            "{}",
            got.errors[1]
        );
        assert!(
            got.errors[4].message.contains("out of range"),
            "{}",
            got.errors[4]
        );
    }

    #[test]
    fn other_shapes_are_errors() {
        for (text, line) in [
            ("[{\"ts\": 1}]", 1),
            ("# c\n{\n  \"ts\": 1\n}", 2),
            ("ts,device,bundle_id,state\n", 1),
        ] {
            let e = load_str(text).unwrap_err();
            assert_eq!(e.line, Some(line), "{e}");
        }
        assert!(load_str("# only comments\n\n").unwrap().items.is_empty());
    }

    #[test]
    fn hostile_lines_do_not_panic() {
        let deep = format!("{{\"ts\": {}", "[".repeat(100_000));
        let cases = [
            "{\"ts\": 1e400, \"device\": \"A\", \"bundle_id\": \"b\", \"state\": \"foreground\"}".to_string(),
            "{\"ts\": 18446744073709551615, \"device\": \"A\", \"bundle_id\": \"b\", \"state\": \"foreground\"}".to_string(),
            "{\"ts\": \"9999-99-99T99:99:99Z\", \"device\": \"\", \"bundle_id\": \"\", \"state\": \"\"}".to_string(),
            deep,
            "{\"ts\": {}, \"device\": 5, \"bundle_id\": null, \"state\": []}".to_string(),
        ];
        for c in &cases {
            let _ = load_str(&format!(
                "{{\"ts\": 0, \"device\": \"A\", \"bundle_id\": \"b\", \"state\": \"suspended\"}}\n{c}"
            ));
            let _ = load_str(c);
        }
    }
    const FIXTURES: [&str; 1] = [include_str!("../../fixtures/inventory/app-events.jsonl")];

    /// Byte flips, insertions and cuts of the example files: never a panic.
    #[test]
    fn mutated_examples_do_not_panic() {
        for original in FIXTURES {
            crate::inputs::for_each_mutation(original, |text| {
                let _ = parse_str(text, "f");
            });
        }
    }
}
