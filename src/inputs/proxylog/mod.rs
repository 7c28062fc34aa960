//! Inspecting proxies' own logs (`--proxy-log`, `inspection.proxy_logs`):
//! what the proxy says it did with each TLS session — inspected it, let it
//! through uninspected (a bypass rule), saw the client reject its
//! certificate, failed upstream, blocked it. The correlator joins each entry
//! to the wire session by client address and port, server and time (and
//! Community ID where the log has it); detections cite it.
//!
//! One module per product, each reading the fields its vendor documents:
//!
//! | module | product | shape |
//! | --- | --- | --- |
//! | [`squid`] | Squid ssl-bump access log | the logformat the README documents |
//! | [`mitmproxy`] | mitmproxy | JSON Lines from the addon the README gives |
//! | [`panos`] | Palo Alto Networks PAN-OS DECRYPTION log | syslog CSV |
//! | [`zscaler`] | Zscaler NSS web log | JSON Lines (NSS feed output) |
//! | [`netskope`] | Netskope transaction events | JSON Lines |
//! | [`fortigate`] | FortiGate `type=ssl` (`subtype="ssl"`) log | key=value |
//!
//! The product is recognised from the first line that is neither blank nor
//! a comment; every other line must be of the same product. A line that is
//! not is skipped with a [`LoadError`] at its line (at most
//! `MAX_ERRORS` listed, the rest counted), as for the other inputs.

pub mod fortigate;
pub mod mitmproxy;
pub mod netskope;
pub mod panos;
pub mod squid;
pub mod zscaler;

use super::jsondoc::strip_bom;
use super::leases::Errors;
use super::{LoadError, Loaded, read_text};
use crate::time::Timestamp;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

/// What the proxy says it did with the session.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Verdict {
    /// Intercepted (bumped, decrypted) and completed.
    Inspected,
    /// Passed through without interception (splice, no-decrypt, bypass).
    NotInspected,
    /// The client refused the proxy's certificate (alert, abort).
    ClientRejected,
    /// The server's side failed (certificate not trusted upstream, handshake).
    ServerFailed,
    /// The proxy's policy blocked it.
    Blocked,
    /// Not a TLS session (plain HTTP through the proxy).
    NotTls,
}

impl Verdict {
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Inspected => "inspected",
            Verdict::NotInspected => "not_inspected",
            Verdict::ClientRejected => "client_rejected",
            Verdict::ServerFailed => "server_failed",
            Verdict::Blocked => "blocked",
            Verdict::NotTls => "not_tls",
        }
    }

    /// When several entries describe one session, the one that says most
    /// wins: a failure over a completion, a completion over "not TLS".
    pub fn weight(self) -> u8 {
        match self {
            Verdict::ClientRejected => 6,
            Verdict::ServerFailed => 5,
            Verdict::Blocked => 4,
            Verdict::NotInspected => 3,
            Verdict::Inspected => 2,
            Verdict::NotTls => 1,
        }
    }
}

/// One log entry, in the products' common terms.
#[derive(Clone, Debug, PartialEq)]
pub struct ProxyEntry {
    /// When the session started (the log's start time, else its end time
    /// less the elapsed time, else the entry's time).
    pub ts: Timestamp,
    /// When the entry was written (the session's end for most products).
    pub end_ts: Timestamp,
    pub client_ip: IpAddr,
    pub client_port: Option<u16>,
    pub server_ip: Option<IpAddr>,
    pub server_port: Option<u16>,
    /// The SNI or host name, lower case without a trailing dot.
    pub sni: Option<String>,
    pub community_id: Option<String>,
    pub verdict: Verdict,
    /// Did the proxy intercept TLS (`Some(false)`: passed through)?
    pub intercepted: Option<bool>,
    /// The proxy's reason in one phrase, e.g. "client rejected certificate:
    /// alert unknown_ca (48)" or "not inspected: bypass rule (splice)".
    pub reason: String,
    /// The product (`squid`, `mitmproxy`, `panos`, `zscaler`, `netskope`, `fortigate`).
    pub source: &'static str,
    /// The file and line the entry came from.
    pub file: Arc<str>,
    pub line: u32,
}

/// What one product's line reader gives back.
pub(crate) type LineResult = Result<Option<ProxyEntry>, String>;

/// A product's reader: does the first line look like it, and the line reader.
struct Product {
    name: &'static str,
    sniff: fn(&str) -> bool,
    parse: fn(&str, &Ctx) -> LineResult,
}

/// Where an entry comes from, for the readers.
pub(crate) struct Ctx {
    pub file: Arc<str>,
    pub line: u32,
}

const PRODUCTS: [Product; 6] = [
    Product {
        name: "squid",
        sniff: squid::sniff,
        parse: squid::parse_line,
    },
    Product {
        name: "mitmproxy",
        sniff: mitmproxy::sniff,
        parse: mitmproxy::parse_line,
    },
    Product {
        name: "panos",
        sniff: panos::sniff,
        parse: panos::parse_line,
    },
    Product {
        name: "zscaler",
        sniff: zscaler::sniff,
        parse: zscaler::parse_line,
    },
    Product {
        name: "netskope",
        sniff: netskope::sniff,
        parse: netskope::parse_line,
    },
    Product {
        name: "fortigate",
        sniff: fortigate::sniff,
        parse: fortigate::parse_line,
    },
];

const SHAPES: &str = "expected a Squid access log in the documented logformat, mitmproxy addon JSON Lines, \
    PAN-OS DECRYPTION CSV, Zscaler NSS web JSON, Netskope transaction JSON or FortiGate type=ssl key=value lines \
    (README, \"Proxy logs\")";

pub fn load(path: &Path) -> Result<Loaded<ProxyEntry>, LoadError> {
    let text = read_text(path)?;
    parse_str(&text, &path.display().to_string())
}

/// Parses the text of a proxy log; `file` names it in errors and citations.
pub fn parse_str(text: &str, file: &str) -> Result<Loaded<ProxyEntry>, LoadError> {
    let mut out = Loaded::default();
    let mut errs = Errors::new(file);
    let name: Arc<str> = Arc::from(file);
    let mut product: Option<&Product> = None;
    for (i, raw) in strip_bom(text).lines().enumerate() {
        let n = i + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let p = match product {
            Some(p) => p,
            None => match PRODUCTS.iter().find(|p| (p.sniff)(line)) {
                Some(p) => {
                    product = Some(p);
                    p
                }
                None => {
                    return Err(LoadError {
                        file: file.to_string(),
                        line: Some(n),
                        message: format!("not a proxy log this version reads; {SHAPES}"),
                    });
                }
            },
        };
        let ctx = Ctx {
            file: Arc::clone(&name),
            line: u32::try_from(n).unwrap_or(u32::MAX),
        };
        match (p.parse)(line, &ctx) {
            Ok(Some(e)) => out.items.push(e),
            Ok(None) => {}
            Err(m) => errs.push(n, format!("not a {} entry: {m}", p.name)),
        }
    }
    out.errors = errs.finish();
    // Stable: entries with the same start stay in file order.
    out.items.sort_by_key(|e| e.ts);
    Ok(out)
}

/// A host name as the join compares it: lower case, no trailing dot;
/// `None` for the products' spellings of "none".
pub(crate) fn name(s: &str) -> Option<String> {
    let s = s.trim().trim_end_matches('.');
    if s.is_empty() || s == "-" || s.eq_ignore_ascii_case("none") || s.len() > 253 {
        return None;
    }
    Some(s.to_ascii_lowercase())
}

/// An address, or `None` for "-" and empty.
pub(crate) fn ip(s: &str) -> Result<Option<IpAddr>, String> {
    let s = s.trim().trim_start_matches('[').trim_end_matches(']');
    if s.is_empty() || s == "-" {
        return Ok(None);
    }
    s.parse()
        .map(Some)
        .map_err(|_| format!("{} is not an IP address", super::jsondoc::shown(s)))
}

/// A port, or `None` for "-", empty and 0.
pub(crate) fn port(s: &str) -> Result<Option<u16>, String> {
    let s = s.trim();
    if s.is_empty() || s == "-" {
        return Ok(None);
    }
    match s.parse::<u16>() {
        Ok(0) => Ok(None),
        Ok(p) => Ok(Some(p)),
        Err(_) => Err(format!("{} is not a port", super::jsondoc::shown(s))),
    }
}

/// `ip:port`, `[v6]:port`, `ip` or `-`.
pub(crate) fn endpoint(s: &str) -> Result<(Option<IpAddr>, Option<u16>), String> {
    let s = s.trim();
    if let Some(rest) = s.strip_prefix('[') {
        let (a, p) = rest
            .split_once(']')
            .ok_or_else(|| format!("{} is not [address]:port", super::jsondoc::shown(s)))?;
        return Ok((ip(a)?, port(p.trim_start_matches(':'))?));
    }
    match s.rsplit_once(':') {
        // One colon: IPv4 (or "-") and port; more: a bare IPv6 address.
        Some((a, p)) if !a.contains(':') => Ok((ip(a)?, port(p)?)),
        _ => Ok((ip(s)?, None)),
    }
}

/// Epoch seconds with an optional fraction (`1796413693.485`).
pub(crate) fn epoch(s: &str) -> Result<Timestamp, String> {
    let bad = || format!("{} is not epoch seconds", super::jsondoc::shown(s));
    let (whole, frac) = s.trim().split_once('.').unwrap_or((s.trim(), ""));
    if whole.is_empty() || whole.len() > 11 || !whole.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    if frac.len() > 9 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let secs: u64 = whole.parse().map_err(|_| bad())?;
    let mut ns: u64 = 0;
    for (i, b) in frac.bytes().enumerate() {
        ns += u64::from(b - b'0') * 10u64.pow(8 - i as u32);
    }
    Ok(Timestamp::from_secs(secs).plus(ns))
}

/// RFC 3339, `YYYY-MM-DD HH:MM:SS`, `YYYY/MM/DD HH:MM:SS` (PAN-OS) or epoch
/// seconds; times without an offset are UTC.
pub(crate) fn time(s: &str) -> Result<Timestamp, String> {
    let t = s.trim();
    if t.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return epoch(t);
    }
    let fixed = t.replace('/', "-");
    Timestamp::parse_rfc3339(&fixed).ok_or_else(|| {
        format!(
            "{} is not a time (RFC 3339, YYYY/MM/DD HH:MM:SS or epoch seconds)",
            super::jsondoc::shown(t)
        )
    })
}

/// A JSON value as text (strings as they are, numbers written out).
pub(crate) fn text(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        serde_json::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// The first of `keys` a JSON object has, as text.
pub(crate) fn field(
    o: &serde_json::Map<String, serde_json::Value>,
    keys: &[&str],
) -> Option<String> {
    keys.iter()
        .find_map(|k| o.get(*k).and_then(text))
        .filter(|s| !s.trim().is_empty())
}

/// Yes/No, true/false, 1/0 (any case).
pub(crate) fn yes(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "yes" | "true" | "1" | "y" => Some(true),
        "no" | "false" | "0" | "n" => Some(false),
        _ => None,
    }
}

/// TLS alert names by description (RFC 8446 §6, the ones proxies report).
pub(crate) fn alert_name(d: u16) -> Option<&'static str> {
    Some(match d {
        0 => "close_notify",
        10 => "unexpected_message",
        20 => "bad_record_mac",
        40 => "handshake_failure",
        42 => "bad_certificate",
        43 => "unsupported_certificate",
        44 => "certificate_revoked",
        45 => "certificate_expired",
        46 => "certificate_unknown",
        47 => "illegal_parameter",
        48 => "unknown_ca",
        49 => "access_denied",
        50 => "decode_error",
        51 => "decrypt_error",
        70 => "protocol_version",
        80 => "internal_error",
        86 => "inappropriate_fallback",
        90 => "user_canceled",
        112 => "unrecognized_name",
        116 => "certificate_required",
        _ => return None,
    })
}

/// The parts every product fills the same way.
pub(crate) struct Parts {
    pub ts: Timestamp,
    pub end_ts: Timestamp,
    pub client: (Option<IpAddr>, Option<u16>),
    pub server: (Option<IpAddr>, Option<u16>),
    pub sni: Option<String>,
    pub community_id: Option<String>,
    pub verdict: Verdict,
    pub intercepted: Option<bool>,
    pub reason: String,
}

impl Parts {
    /// The entry; an error when the client address is missing (nothing
    /// could join it).
    pub(crate) fn entry(self, source: &'static str, ctx: &Ctx) -> LineResult {
        let client_ip = self
            .client
            .0
            .ok_or("no client address (nothing to join it to)")?;
        let mut reason = self.reason;
        if reason.len() > MAX_REASON {
            let mut at = MAX_REASON;
            while !reason.is_char_boundary(at) {
                at -= 1;
            }
            reason.truncate(at);
        }
        Ok(Some(ProxyEntry {
            ts: self.ts.min(self.end_ts),
            end_ts: self.end_ts.max(self.ts),
            client_ip,
            client_port: self.client.1,
            server_ip: self.server.0,
            server_port: self.server.1,
            sni: self.sni,
            community_id: self.community_id.filter(|c| c.len() <= 64),
            verdict: self.verdict,
            intercepted: self.intercepted,
            reason,
            source,
            file: Arc::clone(&ctx.file),
            line: ctx.line,
        }))
    }
}

/// Longest reason kept (bytes).
const MAX_REASON: usize = 200;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_times_and_names() {
        let v4: IpAddr = "10.78.0.100".parse().unwrap();
        assert_eq!(endpoint("10.78.0.100:40708"), Ok((Some(v4), Some(40708))));
        assert_eq!(endpoint("-:-"), Ok((None, None)));
        assert_eq!(endpoint("10.78.0.100"), Ok((Some(v4), None)));
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        assert_eq!(endpoint("[2001:db8::1]:443"), Ok((Some(v6), Some(443))));
        assert_eq!(endpoint("2001:db8::1"), Ok((Some(v6), None)));
        assert!(endpoint("10.78.0.300:1").is_err());
        assert!(endpoint("10.78.0.1:99999").is_err());
        assert_eq!(
            epoch("1796413693.485").unwrap(),
            Timestamp(1_796_413_693_485_000_000)
        );
        assert!(epoch("1.2.3").is_err());
        assert!(epoch("99999999999999999999").is_err());
        assert_eq!(
            time("2026/12/04 19:48:13").unwrap(),
            time("2026-12-04T19:48:13Z").unwrap()
        );
        assert_eq!(name("Bank.Example."), Some("bank.example".into()));
        assert_eq!(name("-"), None);
    }

    #[test]
    fn unknown_shapes_are_errors() {
        let e = parse_str("hello world\n", "x.log").unwrap_err();
        assert_eq!(e.line, Some(1));
        assert!(
            parse_str("# nothing\n\n", "x.log")
                .unwrap()
                .items
                .is_empty()
        );
    }
}
