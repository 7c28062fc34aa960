//! Suricata EVE JSON (as Suricata 8.0 writes it): `event_type` `flow`,
//! `tls`, `dhcp`, `alert` (detections) and `stats`, with Suricata's field
//! names and types, so that a pipeline built for Suricata ingests
//! blindspot unchanged. What EVE has no field for is under the one extra
//! key `blindspot` (README "Output forms"); blindspot's `device` and
//! `coverage` records are `event_type` `device` and `coverage` with only
//! that key. `.ci/run` validates every fixture's events against Suricata
//! 8.0.6's EVE schema.

use super::Encoder;
use super::builder::Obj;
use super::names;
use super::observer::Observer;
use crate::record::{
    DetectionRecord, DeviceRecord, DhcpBody, DhcpRecord, DnsRecord, FlowId, FlowRecord, Mac,
    Record, TlsRecord,
};
use crate::time::Timestamp;
use std::net::IpAddr;

/// EVE `flow_id`s are 51-bit integers (exact in a JSON double); the full
/// 64-bit id is `blindspot.flow_id` (16 hex digits, as in JSON Lines).
const FLOW_ID_MASK: u64 = (1 << 51) - 1;

/// Signature ids of the detection patterns (gid 1, rev 1): the analytic's
/// number and the pattern's place in it.
const SIDS: &[(&str, u64)] = &[
    ("repeated_handshake_rejection", 1_726_001),
    ("destination_bypass", 1_726_002),
    ("opaque_persistent_session", 1_726_003),
    ("background_transmission", 1_717_001),
    ("opaque_encrypted_channel", 1_717_002),
];

pub struct Eve {
    /// `"host":...` (and `"in_iface":...` with one interface).
    host: Vec<u8>,
    /// `"observer":{...}` inside `blindspot`.
    observer: Vec<u8>,
}

impl Eve {
    pub fn new(obs: &Observer) -> Eve {
        Eve {
            host: super::builder::members(|o| {
                o.str("host", &obs.name);
                if let [one] = obs.interfaces.as_slice() {
                    o.str("in_iface", one);
                }
            }),
            observer: obs.jsonl_member(),
        }
    }

    fn head(&self, o: &mut Obj<'_>, ts: Timestamp, event_type: &str) {
        o.disp("timestamp", &EveTime(ts)).raw_members(&self.host);
        o.str("event_type", event_type);
    }

    /// `"blindspot":{"type":..., "observer":{...}, ...`: the caller adds the rest.
    fn blindspot<'o>(&self, o: &'o mut Obj<'_>, kind: &str) -> Obj<'o> {
        let mut b = o.obj("blindspot");
        b.str("type", kind).raw_members(&self.observer);
        b
    }
}

/// `2024-05-01T12:34:56.123456+0000`, as Suricata writes its timestamps.
struct EveTime(Timestamp);

impl std::fmt::Display for EveTime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.0.to_string();
        f.write_str(s.strip_suffix('Z').unwrap_or(&s))?;
        f.write_str("+0000")
    }
}

fn eve_flow_id(id: FlowId) -> u64 {
    id.0 & FLOW_ID_MASK
}

/// Suricata's `proto` names.
fn proto(p: &str) -> &str {
    match p {
        "tcp" => "TCP",
        "udp" => "UDP",
        "icmp" => "ICMP",
        "ipv6-icmp" => "IPv6-ICMP",
        other => other,
    }
}

#[allow(clippy::too_many_arguments)]
fn tuple(
    o: &mut Obj<'_>,
    flow_id: FlowId,
    src: IpAddr,
    sport: u16,
    dst: IpAddr,
    dport: u16,
    p: &str,
    community: Option<&str>,
) {
    o.u64("flow_id", eve_flow_id(flow_id))
        .disp("src_ip", &src)
        .u64("src_port", u64::from(sport))
        .disp("dest_ip", &dst)
        .u64("dest_port", u64::from(dport))
        .str("proto", proto(p))
        .opt_str("community_id", community);
}

fn vlan_ether(o: &mut Obj<'_>, vlan: &[u16], src: Option<Mac>, dst: Option<Mac>) {
    if !vlan.is_empty() {
        let mut a = o.arr("vlan");
        for v in vlan {
            a.u64(u64::from(*v));
        }
    }
    if src.is_some() || dst.is_some() {
        o.obj("ether")
            .opt_disp("src_mac", src)
            .opt_disp("dest_mac", dst);
    }
}

/// Suricata's `app_proto` names for Zeek's service names.
fn app_proto(service: &str) -> &str {
    match service {
        "ssl" => "tls",
        other => other,
    }
}

/// `2025-01-31T00:00:00`, Suricata's certificate dates; `None` outside
/// the years its schema takes (1000–2999).
fn tls_date(rfc3339: Option<&str>) -> Option<&str> {
    let d = rfc3339?.strip_suffix('Z')?;
    matches!(d.as_bytes().first(), Some(b'1' | b'2')).then_some(d)
}

/// Suricata's serial: upper-case hex bytes joined by `:`.
fn colon_hex(hex: &str) -> String {
    let mut s = String::with_capacity(hex.len() * 3 / 2);
    let b = hex.as_bytes();
    let start = b.len() % 2;
    if start == 1 {
        s.push('0');
        s.push(b[0].to_ascii_uppercase() as char);
    }
    for pair in b[start..].chunks(2) {
        if !s.is_empty() {
            s.push(':');
        }
        for c in pair {
            s.push(c.to_ascii_uppercase() as char);
        }
    }
    s
}

/// Suricata's TLS version names.
fn tls_version(v: &str) -> &str {
    match v {
        "SSL 3.0" => "SSLv3",
        "SSL 2.0" => "SSLv2",
        other => other,
    }
}

impl Eve {
    fn flow(&self, f: &FlowRecord, out: &mut Vec<u8>) {
        let mut o = Obj::new(out);
        self.head(&mut o, f.ts, "flow");
        tuple(
            &mut o,
            f.flow_id,
            f.src_ip,
            f.src_port,
            f.dst_ip,
            f.dst_port,
            f.proto,
            Some(&f.community_id),
        );
        vlan_ether(&mut o, &f.vlan, f.src_mac, f.dst_mac);
        o.opt_str("app_proto", f.service.map(app_proto));
        {
            let state = match f.state {
                "S0" => "new",
                "S1" | "S2" | "S3" | "OTH" => "established",
                _ => "closed",
            };
            let reason = match f.end_reason {
                "end_of_input" => "shutdown",
                "evicted" | "reused" => "forced",
                _ => "timeout",
            };
            let mut w = o.obj("flow");
            w.u64("pkts_toserver", f.orig.packets)
                .u64("pkts_toclient", f.resp.packets)
                .u64("bytes_toserver", f.orig.bytes)
                .u64("bytes_toclient", f.resp.bytes)
                .disp("start", &EveTime(f.ts))
                .disp("end", &EveTime(f.end_ts))
                .u64("age", f.end_ts.as_secs().saturating_sub(f.ts.as_secs()))
                .str("state", state)
                .str("reason", reason)
                .bool("alerted", false);
        }
        let mut b = self.blindspot(&mut o, "flow");
        super::extras::flow(&mut b, f);
    }

    fn tls(&self, t: &TlsRecord, out: &mut Vec<u8>) {
        let mut o = Obj::new(out);
        self.head(&mut o, t.ts, "tls");
        tuple(
            &mut o,
            t.flow_id,
            t.src_ip,
            t.src_port,
            t.dst_ip,
            t.dst_port,
            t.proto,
            Some(&t.community_id),
        );
        o.str("app_proto", "tls");
        {
            let mut s = o.obj("tls");
            if let Some(c) = &t.cert {
                s.opt_str("subject", c.subject.as_deref())
                    .opt_str("issuerdn", c.issuer.as_deref());
                if let Some(serial) = &c.serial {
                    s.str("serial", &colon_hex(serial));
                }
                s.opt_str("notbefore", tls_date(c.not_before_rfc3339.as_deref()))
                    .opt_str("notafter", tls_date(c.not_after_rfc3339.as_deref()));
                if !c.san.is_empty() {
                    s.strs("subjectaltname", &c.san);
                }
            }
            s.opt_str("sni", t.sni.as_deref())
                .str(
                    "version",
                    t.version.as_deref().map_or("UNDETERMINED", tls_version),
                )
                .bool("session_resumed", t.resumed);
            if let (Some(h), Some(st)) = (&t.ja3, &t.ja3_string) {
                s.obj("ja3").str("hash", h).str("string", st);
            }
            if let (Some(h), Some(st)) = (&t.ja3s, &t.ja3s_string) {
                s.obj("ja3s").str("hash", h).str("string", st);
            }
            s.opt_str("ja4", t.ja4.as_deref());
            if !t.alpn.is_empty() {
                s.strs("client_alpns", &t.alpn);
            }
            if let Some(a) = &t.alpn_selected {
                s.strs("server_alpns", &[a]);
            }
            let code = t
                .cipher
                .as_deref()
                .and_then(|c| c.strip_prefix("0x"))
                .and_then(|h| u16::from_str_radix(h, 16).ok());
            if t.version.is_some() || code.is_some() {
                let mut h = s.obj("server_handshake");
                h.opt_str("version", t.version.as_deref().map(tls_version))
                    .opt_u64("cipher", code.map(u64::from));
            }
        }
        let mut b = self.blindspot(&mut o, "tls");
        super::extras::tls(&mut b, t);
    }

    /// Suricata 8's DNS v3 event: one per transaction, `response` when
    /// answered (with its queries and answers), else `request`.
    fn dns(&self, d: &DnsRecord, out: &mut Vec<u8>) {
        let mut o = Obj::new(out);
        self.head(&mut o, d.ts, "dns");
        tuple(
            &mut o, d.flow_id, d.src_ip, d.src_port, d.dst_ip, d.dst_port, d.proto, None,
        );
        o.str("app_proto", "dns");
        {
            let mut h = o.obj("dns");
            let answered = d.rcode.is_some();
            h.u64("version", 3)
                .str("type", if answered { "response" } else { "request" })
                .u64("id", u64::from(d.trans_id));
            if answered {
                h.bool("qr", true)
                    .bool("aa", d.aa)
                    .bool("tc", d.tc)
                    .bool("rd", d.rd)
                    .bool("ra", d.ra)
                    .opt_str("rcode", d.rcode_name);
            } else {
                h.bool("rd", d.rd);
            }
            h.u64("opcode", u64::from(d.opcode));
            if let Some(q) = &d.query {
                let mut qs = h.arr("queries");
                qs.obj().str("rrname", q).opt_str("rrtype", d.qtype_name);
            }
            if !d.answers.is_empty() {
                let mut a = h.arr("answers");
                for x in &d.answers {
                    a.obj()
                        .str("rrname", &x.name)
                        .opt_str("rrtype", x.type_name)
                        .u64("ttl", u64::from(x.ttl))
                        .opt_str("rdata", x.data.as_deref());
                }
            }
        }
        let mut b = self.blindspot(&mut o, "dns");
        b.ser("dns", d);
    }

    fn dhcp(&self, d: &DhcpRecord, out: &mut Vec<u8>) {
        let mut o = Obj::new(out);
        self.head(&mut o, d.ts, "dhcp");
        tuple(
            &mut o, d.flow_id, d.src_ip, d.src_port, d.dst_ip, d.dst_port, "udp", None,
        );
        vlan_ether(&mut o, &d.vlan, d.src_mac, d.dst_mac);
        o.str("app_proto", "dhcp");
        {
            let mut h = o.obj("dhcp");
            match &d.dhcp {
                DhcpBody::V4(i) => {
                    h.str("type", if i.op == 2 { "reply" } else { "request" });
                    if let Some(x) = i
                        .xid
                        .strip_prefix("0x")
                        .and_then(|x| u64::from_str_radix(x, 16).ok())
                    {
                        h.u64("id", x);
                    }
                    h.opt_disp("client_mac", i.client_mac)
                        .disp("client_ip", &i.client_ip)
                        .disp("assigned_ip", &i.your_ip)
                        .disp("relay_ip", &i.relay_ip)
                        .disp("next_server_ip", &i.server_ip)
                        .opt_str(
                            "dhcp_type",
                            i.message_type.map(str::to_ascii_lowercase).as_deref(),
                        )
                        .opt_str("client_id", i.client_id.as_deref())
                        .opt_str("hostname", i.hostname.as_deref())
                        .opt_disp("requested_ip", i.requested_ip)
                        .opt_u64("lease_time", i.lease_s.map(u64::from))
                        .opt_str("vendor_class_identifier", i.vendor_class.as_deref());
                }
                DhcpBody::V6(i) => {
                    if let Some(x) = i
                        .xid
                        .strip_prefix("0x")
                        .and_then(|x| u64::from_str_radix(x, 16).ok())
                    {
                        h.u64("id", x);
                    }
                    h.opt_disp("client_mac", i.client_mac)
                        .opt_str(
                            "dhcp_type",
                            i.message_type.map(str::to_ascii_lowercase).as_deref(),
                        )
                        .opt_str("hostname", i.hostname.as_deref());
                }
            }
        }
        let mut b = self.blindspot(&mut o, "dhcp");
        super::extras::dhcp(&mut b, d);
    }

    fn detection(&self, d: &DetectionRecord, out: &mut Vec<u8>) {
        let a = names::attack(d.analytic);
        let mut o = Obj::new(out);
        self.head(&mut o, d.end_ts, "alert");
        if let Some(first) = d.flow_ids.first() {
            o.u64("flow_id", eve_flow_id(*first));
        }
        if let Some(ip) = d.device.ip {
            o.disp("src_ip", &ip);
        }
        o.disp("dest_ip", &d.destination.ip)
            .u64("dest_port", u64::from(d.destination.port));
        if d.ja4.is_some() || d.destination.sni.is_some() {
            o.str("proto", "TCP").str("app_proto", "tls");
        }
        {
            let sid = SIDS
                .iter()
                .find(|(p, _)| *p == d.pattern)
                .map_or(1_700_000, |(_, s)| *s);
            let mut al = o.obj("alert");
            al.str("action", "allowed")
                .u64("gid", 1)
                .u64("signature_id", sid)
                .u64("rev", 1)
                .str(
                    "signature",
                    &format!("BLINDSPOT {} {}", a.analytic, d.pattern),
                )
                .str(
                    "category",
                    &format!(
                        "MITRE ATT&CK Mobile {} {}",
                        a.sub_technique.map_or(a.technique_id, |s| s.0),
                        a.sub_technique.map_or(a.technique_name, |s| s.1)
                    ),
                )
                .u64(
                    "severity",
                    match super::severity(d.score) {
                        "high" => 1,
                        "medium" => 2,
                        _ => 3,
                    },
                );
            let mut m = al.obj("metadata");
            m.strs("mitre_analytic_id", &[a.analytic])
                .strs(
                    "mitre_technique_id",
                    &[a.sub_technique.map_or(a.technique_id, |s| s.0)],
                )
                .strs("mitre_tactic_id", &[a.tactic_id])
                .strs("signature_severity", &[super::severity(d.score)])
                .strs("visibility", &[d.visibility]);
        }
        if let Some(sni) = &d.destination.sni {
            o.obj("tls")
                .str("sni", sni)
                .opt_str("ja4", d.ja4.as_deref());
        }
        let mut b = self.blindspot(&mut o, "detection");
        super::extras::detection(&mut b, d);
    }

    fn device(&self, d: &DeviceRecord, out: &mut Vec<u8>) {
        let mut o = Obj::new(out);
        self.head(&mut o, d.ts, "device");
        let mut b = self.blindspot(&mut o, "device");
        super::extras::device(&mut b, d);
    }

    fn other(&self, r: &Record, ts: Timestamp, out: &mut Vec<u8>) {
        let mut o = Obj::new(out);
        self.head(&mut o, ts, r.kind());
        if let Record::Stats(s) = r {
            let mut st = o.obj("stats");
            st.obj("decoder")
                .u64("pkts", s.packets)
                .u64("bytes", s.bytes);
            if let Some(k) = s.drops.get("kernel") {
                st.obj("capture").u64("kernel_drops", *k);
            }
        }
        let mut b = self.blindspot(&mut o, r.kind());
        b.ser("record", r);
    }
}

impl Encoder for Eve {
    fn encode(&mut self, r: &Record, out: &mut Vec<u8>) {
        match r {
            Record::Flow(f) => self.flow(f, out),
            Record::Tls(t) => self.tls(t, out),
            Record::Dhcp(d) => self.dhcp(d, out),
            Record::Device(d) => self.device(d, out),
            Record::Detection(d) => self.detection(d, out),
            Record::Coverage(c) => self.other(r, c.ts, out),
            Record::Stats(s) => self.other(r, s.ts, out),
            Record::Dns(d) => self.dns(d, out),
        }
        out.push(b'\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suricata_spellings() {
        assert_eq!(colon_hex("1A2B"), "1A:2B");
        assert_eq!(colon_hex("abc"), "0A:BC");
        assert_eq!(
            tls_date(Some("2025-01-31T00:00:00Z")),
            Some("2025-01-31T00:00:00")
        );
        assert_eq!(tls_date(Some("9999-12-31T23:59:59Z")), None);
        assert_eq!(
            EveTime(Timestamp::from_secs(1_700_000_000)).to_string(),
            "2023-11-14T22:13:20.000000+0000"
        );
    }
}
