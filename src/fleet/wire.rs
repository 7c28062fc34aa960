//! The message form on the fleet's stream: JSON Lines, one envelope per
//! line, `{"kind": K, ...}`:
//!
//! - `session`: a [`detect::Session`](crate::detect::Session) after device
//!   resolution, as the sensor's correlator built it (flow and TLS facts,
//!   device identity with its MDM fields, limits); `correlate` rebuilds the
//!   same `Session` from it ([`WireSession::into_session`]).
//! - `device`, `coverage`, `stats`: the record as JSON Lines writes it,
//!   under `record` (for the fleet's state and its operators; `correlate`
//!   skips them).
//!
//! A message body is at most [`MAX_MESSAGE`] bytes; a line that does not
//! parse is counted and skipped, never fatal (the stream is shared).

use crate::app::features::PayloadFeatures;
use crate::detect::{Session, TlsFacts, Tuple};
use crate::inputs::mdm::MdmDevice;
use crate::record::{DeviceInfo, DeviceObject, FlowId, Mac};
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// The largest message body a publisher writes (the server's default
/// `max_payload` is 1 MiB).
pub const MAX_MESSAGE: usize = 512 << 10;

/// The most a compressed body may decompress to: the server's default
/// `max_payload` (1 MiB), the most a plain body can be. A publisher seals a
/// message once it passes 448 KiB, after the line that crossed it, so a
/// body may pass [`MAX_MESSAGE`] by one long line.
pub const MAX_BODY: usize = 1 << 20;

/// The header that names a compressed body, and its one value.
pub const ENCODING: &str = "Content-Encoding";
pub const ZSTD: &str = "zstd";

/// A message's body as JSON Lines: a `zstd` body is decompressed, to at
/// most [`MAX_BODY`] bytes (what a plain body can be); None when it does
/// not decompress within that, or names another encoding.
pub fn body<'a>(payload: &'a [u8], encoding: Option<&str>) -> Option<std::borrow::Cow<'a, [u8]>> {
    match encoding {
        None => Some(payload.into()),
        Some(ZSTD) => zstd::bulk::decompress(payload, MAX_BODY)
            .ok()
            .map(Into::into),
        Some(_) => None,
    }
}

/// A session as it travels: every field of `Session` the detections read.
#[derive(Debug, Serialize, Deserialize)]
pub struct WireSession {
    pub ts: u64,
    pub end_ts: u64,
    /// When the session entered the sensor's detector
    /// (`detect::admit::order_time`); the consumer orders by it too.
    #[serde(default)]
    pub order: u64,
    pub flow_id: u64,
    pub community_id: String,
    pub src_ip: IpAddr,
    pub src_port: u16,
    pub dst_ip: IpAddr,
    pub dst_port: u16,
    pub proto: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vlan: Vec<u16>,
    pub device: WireDevice,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub limits: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    pub orig_payload: u64,
    pub resp_payload: u64,
    #[serde(default)]
    pub first_payload: [Option<PayloadFeatures>; 2],
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsFacts>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_name: Option<String>,
}

/// The device object, with the MDM fields the records show.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct WireDevice {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac_source: Option<String>,
    /// `None`: the sensor tied the address to no MAC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub info: Option<WireInfo>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct WireInfo {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<[u8; 6]>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac_private: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mdm: Option<WireMdm>,
}

/// The MDM record the sensor matched (without its managed apps:
/// `correlate` takes them from its own inventory by serial) and how it
/// matched it (`wifi_mac`, `radius_identity`).
#[derive(Debug, Serialize, Deserialize)]
pub struct WireMdm {
    pub how: String,
    pub source: String,
    #[serde(flatten)]
    pub device: MdmDevice,
}

/// The names the pipeline spells as `&'static str` (limits, services,
/// sources), back from the wire: each distinct name is kept once, at most
/// [`MAX_NAMES`] of them; past that a name reads as `"other"` (counted by
/// the caller through [`names_refused`]).
pub const MAX_NAMES: usize = 4096;

static NAMES: Mutex<Option<(std::collections::HashSet<&'static str>, u64)>> = Mutex::new(None);

fn intern(s: &str) -> &'static str {
    let Ok(mut g) = NAMES.lock() else {
        return "other";
    };
    let (set, refused) = g.get_or_insert_with(Default::default);
    if let Some(k) = set.get(s) {
        return k;
    }
    if set.len() >= MAX_NAMES || s.len() > 64 {
        *refused += 1;
        return "other";
    }
    let k: &'static str = Box::leak(s.to_string().into_boxed_str());
    set.insert(k);
    k
}

/// Names read as `"other"` because the table was full.
pub fn names_refused() -> u64 {
    NAMES
        .lock()
        .ok()
        .and_then(|g| g.as_ref().map(|(_, n)| *n))
        .unwrap_or(0)
}

impl WireSession {
    pub fn from_session(s: &Session) -> WireSession {
        let info = s.device.info.as_deref().map(|i| WireInfo {
            mac: i.mac.map(|m| m.0),
            mac_private: i.mac_private,
            hostname: i.hostname.clone(),
            identity: i.identity.clone(),
            mdm: i.mdm.as_ref().map(|(m, how)| WireMdm {
                how: (*how).to_string(),
                source: m.source.to_string(),
                device: MdmDevice {
                    apps: Vec::new(),
                    ..(**m).clone()
                },
            }),
        });
        WireSession {
            ts: s.ts.0,
            end_ts: s.end_ts.0,
            order: s.order.0,
            flow_id: s.flow_id.0,
            community_id: s.community_id.to_string(),
            src_ip: s.tuple.src_ip,
            src_port: s.tuple.src_port,
            dst_ip: s.tuple.dst_ip,
            dst_port: s.tuple.dst_port,
            proto: s.tuple.proto.to_string(),
            vlan: s.tuple.vlan.clone(),
            device: WireDevice {
                ip: s.device.ip,
                mac_source: s.device.mac_source.map(str::to_string),
                info,
            },
            limits: s.limits.iter().map(|l| l.to_string()).collect(),
            service: s.service.map(str::to_string),
            orig_payload: s.orig_payload,
            resp_payload: s.resp_payload,
            first_payload: s.first_payload,
            tls: s.tls.clone(),
            dns_name: s.dns_name.as_deref().map(str::to_string),
        }
    }

    /// The session again; `mdm` finds the consumer's own inventory record
    /// by serial (with its managed apps), else the travelled fields make
    /// one.
    pub fn into_session(
        self,
        mdm: &dyn Fn(&str) -> Option<Arc<crate::inputs::mdm::MdmDevice>>,
    ) -> Session {
        let info = self.device.info.map(|i| {
            let m = i.mdm.map(|m| {
                let found = m.device.serial.as_deref().and_then(mdm);
                let dev = found.unwrap_or_else(|| {
                    Arc::new(MdmDevice {
                        source: intern(&m.source),
                        ..m.device
                    })
                });
                (dev, intern(&m.how))
            });
            Arc::new(DeviceInfo {
                mac: i.mac.map(Mac),
                mac_private: i.mac_private,
                hostname: i.hostname,
                identity: i.identity,
                mdm: m,
            })
        });
        Session {
            ts: Timestamp(self.ts),
            end_ts: Timestamp(self.end_ts),
            order: Timestamp(self.order.max(self.ts)),
            flow_id: FlowId(self.flow_id),
            community_id: self.community_id.into(),
            tuple: Tuple {
                src_ip: self.src_ip,
                src_port: self.src_port,
                dst_ip: self.dst_ip,
                dst_port: self.dst_port,
                proto: intern(&self.proto),
                vlan: self.vlan,
            },
            device: DeviceObject {
                ip: self.device.ip,
                mac_source: self.device.mac_source.as_deref().map(intern),
                info,
            },
            limits: self.limits.iter().map(|l| intern(l)).collect(),
            service: self.service.as_deref().map(intern),
            orig_payload: self.orig_payload,
            resp_payload: self.resp_payload,
            first_payload: self.first_payload,
            tls: self.tls,
            dns_name: self.dns_name.map(Arc::from),
            proxy: None,
        }
    }
}

/// The stable device key a session is partitioned by: the MDM serial, else
/// the MAC (hardware or private), else the client address.
pub fn device_key(d: &DeviceObject, client: IpAddr) -> String {
    let info = d.info.as_deref();
    if let Some(serial) = info
        .and_then(|i| i.mdm.as_ref())
        .and_then(|(m, _)| m.serial.as_deref())
    {
        return format!("serial:{serial}");
    }
    match info.and_then(|i| i.mac) {
        Some(m) => format!("mac:{m}"),
        None => format!("ip:{}", d.ip.unwrap_or(client)),
    }
}

/// The partition of a device key: FNV-1a, the same in every process and
/// version, modulo `partitions`.
pub fn partition(key: &str, partitions: u32) -> u32 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h % u64::from(partitions.max(1))) as u32
}

/// One line of a message, as `correlate` reads it (other kinds' `record`
/// is skipped unread).
#[derive(Deserialize)]
pub struct LineIn {
    pub kind: String,
    #[serde(default)]
    pub session: Option<WireSession>,
}

/// Appends a session line.
pub fn push_session(out: &mut Vec<u8>, s: &Session) {
    #[derive(Serialize)]
    struct Line<'a> {
        kind: &'static str,
        session: &'a WireSession,
    }
    let w = WireSession::from_session(s);
    // Serializing plain data into a Vec cannot fail.
    let _ = serde_json::to_writer(
        &mut *out,
        &Line {
            kind: "session",
            session: &w,
        },
    );
    out.push(b'\n');
}

/// Appends a `device`, `coverage` or `stats` line.
pub fn push_record(out: &mut Vec<u8>, r: &crate::record::Record) {
    out.extend_from_slice(b"{\"kind\":\"");
    out.extend_from_slice(r.kind().as_bytes());
    out.extend_from_slice(b"\",\"record\":");
    let _ = serde_json::to_writer(&mut *out, r);
    out.extend_from_slice(b"}\n");
}

/// The sessions of a message body; lines that are not a session envelope
/// or do not parse are counted in `bad`.
pub fn read_sessions(
    body: &[u8],
    mdm: &dyn Fn(&str) -> Option<Arc<crate::inputs::mdm::MdmDevice>>,
    bad: &mut u64,
) -> Vec<Session> {
    let mut out = Vec::new();
    for line in body.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        match serde_json::from_slice::<LineIn>(line) {
            Ok(LineIn {
                session: Some(w), ..
            }) => out.push(w.into_session(mdm)),
            Ok(l) if l.kind != "session" => {}
            _ => *bad += 1,
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_are_fnv1a_and_stable() {
        // FNV-1a 64 of "a" is 0xaf63dc4c8601ec8c (the published test vector).
        assert_eq!(
            partition("a", u32::MAX),
            (0xaf63_dc4c_8601_ec8c_u64 % u64::from(u32::MAX)) as u32
        );
        assert_eq!(partition("", 7), (0xcbf2_9ce4_8422_2325_u64 % 7) as u32);
        assert_eq!(partition("anything", 0), 0);
    }

    #[test]
    fn sensor_names_become_one_subject_token() {
        assert_eq!(crate::fleet::subject_token("site a.b*>"), "site_a_b__");
        assert_eq!(crate::fleet::subject_token(""), "_");
        assert_eq!(crate::fleet::subject_token(&"x".repeat(100)).len(), 64);
    }

    #[test]
    fn bodies_are_plain_or_zstd_within_the_message_cap() {
        let lines = b"{\"kind\":\"stats\"}\n".repeat(100);
        assert_eq!(body(&lines, None).as_deref(), Some(&lines[..]));
        let z = zstd::bulk::compress(&lines, 1).unwrap();
        assert!(z.len() < lines.len() / 4, "{} of {}", z.len(), lines.len());
        assert_eq!(body(&z, Some(ZSTD)).as_deref(), Some(&lines[..]));
        // A body that expands past what one message may hold (a bomb: 1 MiB
        // of zeros is a few dozen bytes), one that is not zstd, and an
        // encoding we do not know: refused, not read. A body just past
        // MAX_MESSAGE (one long line over the seal) is still read.
        let long = b"x".repeat(MAX_MESSAGE + 100);
        let z_long = zstd::bulk::compress(&long, 1).unwrap();
        assert_eq!(body(&z_long, Some(ZSTD)).map(|b| b.len()), Some(long.len()));
        let bomb = zstd::bulk::compress(&vec![0u8; MAX_BODY + 1], 19).unwrap();
        assert!(bomb.len() < 200);
        assert_eq!(body(&bomb, Some(ZSTD)), None);
        assert_eq!(body(&lines, Some(ZSTD)), None);
        assert_eq!(body(&z, Some("gzip")), None);
        assert_eq!(body(&z[..z.len() / 2], Some(ZSTD)), None);
    }

    /// Sensors before 2026-12-05 sent `tls.version`, which nothing read:
    /// a `correlate` of now still takes their sessions.
    #[test]
    fn a_tls_version_from_an_older_sensor_is_ignored() {
        use crate::app::tls::summary::Outcome;
        let s = crate::detect::tests::to(10, "192.0.2.1", 443, "tcp", Some(Outcome::Established));
        let mut body = Vec::new();
        push_session(&mut body, &s);
        let mut v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert!(v["session"]["tls"].get("version").is_none());
        v["session"]["tls"]["version"] = "TLS 1.3".into();
        let line = format!("{v}\n");
        let mut bad = 0;
        let got = read_sessions(line.as_bytes(), &|_| None, &mut bad);
        assert_eq!((got.len(), bad), (1, 0));
        let t = got[0].tls.as_ref().unwrap();
        assert_eq!(
            (t.ja4.as_deref(), t.outcome),
            (Some("t13d"), Outcome::Established)
        );
    }

    #[test]
    fn bad_lines_are_counted_and_other_kinds_skipped() {
        let body = b"{\"kind\":\"stats\",\"record\":{}}\nnot json\n{\"kind\":\"session\",\"session\":{\"ts\":1}}\n\n";
        let mut bad = 0;
        let s = read_sessions(body, &|_| None, &mut bad);
        assert_eq!((s.len(), bad), (0, 2));
    }
}
