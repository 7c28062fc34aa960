//! OCSF 1.8.0 (<https://schema.ocsf.io/1.8.0/>): one event a line.
//!
//! | record | class |
//! | --- | --- |
//! | `flow` | Network Activity (4001), Close / Reset / Refuse / Fail by state |
//! | `tls` | Network Activity (4001), Traffic, with the `tls` object and JA4 in `ja4_fingerprint_list` |
//! | `dhcp` | DHCP Activity (4004), the activity by message type |
//! | `detection` | Detection Finding (2004): finding_info with the MITRE analytic, evidences, device, scores |
//! | `device` | Device Inventory Info (5001), Log |
//! | `coverage`, `stats` | Base Event (0), the record whole in `unmapped` |
//!
//! Times are milliseconds since the epoch (OCSF's timestamp_t); the sensor
//! is `metadata.loggers[0]`. What OCSF has no place for is in `unmapped`
//! under blindspot's own names (README "Output forms"). `.ci/run` validates
//! every fixture's events against the class schemas.

use super::Encoder;
use super::builder::Obj;
use super::names;
use super::observer::{Observer, VERSION};
use crate::record::{
    DetectionRecord, DeviceObject, DeviceRecord, DhcpBody, DhcpRecord, DnsRecord, FlowRecord,
    Record, TlsRecord,
};
use crate::time::Timestamp;
use std::net::IpAddr;

pub const OCSF_VERSION: &str = "1.8.0";

pub struct Ocsf {
    /// `"product":{...},"loggers":[...]`, the same on every event.
    metadata_fixed: Vec<u8>,
}

impl Ocsf {
    pub fn new(obs: &Observer) -> Ocsf {
        let mut product = Vec::new();
        write_product(&mut Obj::new(&mut product));
        let metadata_fixed = super::builder::members(|o| {
            o.raw("product", &product);
            let mut loggers = o.arr("loggers");
            let mut l = loggers.obj();
            l.str("name", &obs.name)
                .raw("product", &product)
                .str("version", VERSION);
            let mut d = l.obj("device");
            d.u64("type_id", 13)
                .str("type", "IDS")
                .str("hostname", &obs.hostname)
                .str("name", &obs.name);
            let mut ifs = d.arr("network_interfaces");
            for i in &obs.interfaces {
                ifs.obj().str("name", i);
            }
        });
        Ocsf { metadata_fixed }
    }

    /// class, category, activity, type, time, severity and metadata.
    #[allow(clippy::too_many_arguments)]
    fn head(
        &self,
        o: &mut Obj<'_>,
        class: (u64, &str),
        category: (u64, &str),
        activity: (u64, &str),
        time: Timestamp,
        severity: (u64, &str),
        log_name: &str,
        uid: Option<&dyn std::fmt::Display>,
    ) {
        o.u64("class_uid", class.0)
            .str("class_name", class.1)
            .u64("category_uid", category.0)
            .str("category_name", category.1)
            .u64("activity_id", activity.0)
            .str("activity_name", activity.1)
            .u64("type_uid", class.0 * 100 + activity.0)
            .u64("time", ms(time))
            .u64("severity_id", severity.0)
            .str("severity", severity.1);
        let mut m = o.obj("metadata");
        m.str("version", OCSF_VERSION);
        m.raw_members(&self.metadata_fixed);
        m.str("log_name", log_name);
        if let Some(u) = uid {
            m.disp("uid", u);
        }
    }
}

fn write_product(p: &mut Obj<'_>) {
    p.str("name", "blindspot")
        .str("vendor_name", "blindspot")
        .str("version", VERSION);
}

fn ms(t: Timestamp) -> u64 {
    t.as_nanos() / 1_000_000
}

const INFO: (u64, &str) = (1, "Informational");
const NETWORK: (u64, &str) = (4, "Network Activity");
const NETWORK_ACTIVITY: (u64, &str) = (4001, "Network Activity");

fn proto_num(p: &str) -> u64 {
    match p {
        "tcp" => 6,
        "udp" => 17,
        "icmp" => 1,
        "ipv6-icmp" | "icmpv6" => 58,
        _ => 0,
    }
}

fn endpoint(
    o: &mut Obj<'_>,
    k: &'static str,
    ip: IpAddr,
    port: u16,
    mac: Option<crate::record::Mac>,
) {
    let mut e = o.obj(k);
    e.disp("ip", &ip)
        .u64("port", u64::from(port))
        .opt_disp("mac", mac);
}

fn connection(
    o: &mut Obj<'_>,
    flow_id: crate::record::FlowId,
    community: Option<&str>,
    proto: &str,
    ip: IpAddr,
    history: Option<&str>,
) {
    let mut c = o.obj("connection_info");
    c.disp("uid", &flow_id)
        .opt_str("community_uid", community)
        .str("protocol_name", proto)
        .u64("protocol_num", proto_num(proto))
        .u64("protocol_ver_id", if ip.is_ipv4() { 4 } else { 6 })
        .u64("direction_id", 0)
        .opt_str("flag_history", history);
}

/// The OCSF `device` object of a record's device.
fn device(o: &mut Obj<'_>, k: &'static str, d: &DeviceObject) {
    let info = d.info.as_deref();
    let mdm = info.and_then(|i| i.mdm.as_ref()).map(|(m, _)| &**m);
    let mut v = o.obj(k);
    v.u64("type_id", if mdm.is_some() { 5 } else { 0 })
        .opt_disp("ip", d.ip)
        .opt_disp("mac", info.and_then(|i| i.mac))
        .opt_str("hostname", info.and_then(|i| i.hostname.as_deref()));
    if let Some(m) = mdm {
        v.opt_str("name", m.name.as_deref())
            .opt_str("model", m.model.as_deref())
            .opt_str("udid", m.udid.as_deref())
            .opt_str("uid", m.serial.as_deref())
            .opt_bool("is_supervised", m.supervised)
            .opt_bool("is_managed", m.managed)
            .opt_bool(
                "is_personal",
                m.ownership.as_deref().map(|o| o == "personal"),
            );
        if let Some(os) = &m.os {
            let type_id = if os.starts_with("iPadOS") {
                302
            } else if os.starts_with("iOS") {
                301
            } else {
                99
            };
            v.obj("os").str("name", os).u64("type_id", type_id);
        }
    }
}

impl Ocsf {
    fn flow(&self, f: &FlowRecord, out: &mut Vec<u8>) {
        let activity = match f.state {
            "REJ" => (5, "Refuse"),
            "RSTO" | "RSTR" | "RSTOS0" | "RSTRH" => (3, "Reset"),
            "S0" => (4, "Fail"),
            _ => (2, "Close"),
        };
        let mut o = Obj::new(out);
        self.head(
            &mut o,
            NETWORK_ACTIVITY,
            NETWORK,
            activity,
            f.ts,
            INFO,
            "flow",
            None,
        );
        o.u64("start_time", ms(f.ts))
            .u64("end_time", ms(f.end_ts))
            .u64("duration", (f.duration * 1000.0) as u64)
            .str("status_code", f.state)
            .str("status_detail", f.end_reason)
            .opt_str("app_protocol_name", f.service);
        endpoint(&mut o, "src_endpoint", f.src_ip, f.src_port, f.src_mac);
        endpoint(&mut o, "dst_endpoint", f.dst_ip, f.dst_port, f.dst_mac);
        connection(
            &mut o,
            f.flow_id,
            Some(&f.community_id),
            f.proto,
            f.src_ip,
            Some(&f.history),
        );
        {
            let mut t = o.obj("traffic");
            t.u64("bytes_out", f.orig.bytes)
                .u64("bytes_in", f.resp.bytes)
                .u64("bytes", f.orig.bytes + f.resp.bytes)
                .u64("packets_out", f.orig.packets)
                .u64("packets_in", f.resp.packets)
                .u64("packets", f.orig.packets + f.resp.packets)
                .u64("bytes_missed", f.orig.missed_bytes + f.resp.missed_bytes);
        }
        let mut u = o.obj("unmapped");
        super::extras::flow(&mut u, f);
    }

    fn tls(&self, t: &TlsRecord, out: &mut Vec<u8>) {
        let established = t.outcome == crate::app::tls::summary::Outcome::Established;
        let mut o = Obj::new(out);
        self.head(
            &mut o,
            NETWORK_ACTIVITY,
            NETWORK,
            (6, "Traffic"),
            t.ts,
            INFO,
            "tls",
            None,
        );
        o.u64("status_id", if established { 1 } else { 2 })
            .str("status", if established { "Success" } else { "Failure" })
            .str("status_detail", t.outcome.name());
        endpoint(&mut o, "src_endpoint", t.src_ip, t.src_port, None);
        endpoint(&mut o, "dst_endpoint", t.dst_ip, t.dst_port, None);
        connection(
            &mut o,
            t.flow_id,
            Some(&t.community_id),
            t.proto,
            t.src_ip,
            None,
        );
        {
            let mut s = o.obj("tls");
            s.str(
                "version",
                t.version
                    .as_deref()
                    .or(t.client_max_version.as_deref())
                    .unwrap_or("unknown"),
            )
            .opt_str("cipher", t.cipher_name.or(t.cipher.as_deref()))
            .opt_str("sni", t.sni.as_deref());
            if let Some(a) = t.alerts.iter().find_map(|a| a.description) {
                s.u64("alert", u64::from(a));
            }
            if let Some(h) = t.timing.handshake_us {
                s.u64("handshake_dur", h / 1000);
            }
            if let Some(j) = &t.ja3 {
                s.obj("ja3_hash")
                    .u64("algorithm_id", 1)
                    .str("algorithm", "MD5")
                    .str("value", j);
            }
            if let Some(j) = &t.ja3s {
                s.obj("ja3s_hash")
                    .u64("algorithm_id", 1)
                    .str("algorithm", "MD5")
                    .str("value", j);
            }
            if let Some(c) = &t.cert {
                if !c.san.is_empty() {
                    sans(&mut s, &c.san);
                }
                if let (Some(issuer), Some(serial)) = (&c.issuer, &c.serial) {
                    let mut x = s.obj("certificate");
                    x.str("issuer", issuer)
                        .str("serial_number", serial)
                        .opt_str("subject", c.subject.as_deref());
                    if let Some(nb) = c.not_before {
                        x.i64("created_time", nb.saturating_mul(1000));
                    }
                    if let Some(na) = c.not_after {
                        x.i64("expiration_time", na.saturating_mul(1000));
                    }
                    x.arr("fingerprints")
                        .obj()
                        .u64("algorithm_id", 3)
                        .str("algorithm", "SHA-256")
                        .str("value", &c.sha256);
                    if !c.san.is_empty() {
                        sans(&mut x, &c.san);
                    }
                }
            }
        }
        if let Some(j) = &t.ja4 {
            let mut l = o.arr("ja4_fingerprint_list");
            let mut f = l.obj();
            f.u64("type_id", 1).str("type", "JA4").str("value", j);
            let mut parts = j.splitn(3, '_');
            f.opt_str("section_a", parts.next())
                .opt_str("section_b", parts.next())
                .opt_str("section_c", parts.next());
        }
        let mut u = o.obj("unmapped");
        super::extras::tls(&mut u, t);
    }

    fn dhcp(&self, d: &DhcpRecord, out: &mut Vec<u8>) {
        let (mt, xid, lease) = match &d.dhcp {
            DhcpBody::V4(i) => (i.message_type, &i.xid, i.lease_s),
            DhcpBody::V6(i) => (i.message_type, &i.xid, None),
        };
        let activity = match mt.unwrap_or("") {
            "DISCOVER" | "SOLICIT" => (1, "Discover"),
            "OFFER" | "ADVERTISE" => (2, "Offer"),
            "REQUEST" | "RENEW" | "REBIND" | "CONFIRM" => (3, "Request"),
            "DECLINE" => (4, "Decline"),
            "ACK" | "REPLY" => (5, "Ack"),
            "NAK" => (6, "Nak"),
            "RELEASE" => (7, "Release"),
            "INFORM" | "INFORMATION-REQUEST" => (8, "Inform"),
            _ => (99, "Other"),
        };
        let mut o = Obj::new(out);
        self.head(
            &mut o,
            (4004, "DHCP Activity"),
            NETWORK,
            activity,
            d.ts,
            INFO,
            "dhcp",
            None,
        );
        endpoint(&mut o, "src_endpoint", d.src_ip, d.src_port, d.src_mac);
        endpoint(&mut o, "dst_endpoint", d.dst_ip, d.dst_port, d.dst_mac);
        connection(&mut o, d.flow_id, None, "udp", d.src_ip, None);
        o.str("transaction_uid", xid);
        if let Some(l) = lease {
            o.u64("lease_dur", u64::from(l));
        }
        let mut u = o.obj("unmapped");
        super::extras::dhcp(&mut u, d);
    }

    /// DNS Activity (4003): one event per transaction, `Traffic` when
    /// answered, `Query` when not.
    fn dns(&self, d: &DnsRecord, out: &mut Vec<u8>) {
        let activity = if d.rcode.is_some() {
            (6, "Traffic")
        } else {
            (1, "Query")
        };
        let mut o = Obj::new(out);
        self.head(
            &mut o,
            (4003, "DNS Activity"),
            NETWORK,
            activity,
            d.ts,
            INFO,
            "dns",
            None,
        );
        endpoint(&mut o, "src_endpoint", d.src_ip, d.src_port, None);
        endpoint(&mut o, "dst_endpoint", d.dst_ip, d.dst_port, None);
        connection(&mut o, d.flow_id, None, d.proto, d.src_ip, None);
        if let Some(q) = &d.query {
            let mut qo = o.obj("query");
            qo.str("hostname", q)
                .opt_str("type", d.qtype_name)
                .opt_str("class", d.qclass_name)
                .u64(
                    "opcode_id",
                    match d.opcode {
                        o @ (0..=2 | 4..=6) => u64::from(o),
                        _ => 99,
                    },
                )
                .u64("packet_uid", u64::from(d.trans_id));
        }
        if !d.answers.is_empty() {
            let mut a = o.arr("answers");
            for x in &d.answers {
                a.obj()
                    .str("rdata", x.data.as_deref().unwrap_or(""))
                    .opt_str("type", x.type_name)
                    .u64("ttl", u64::from(x.ttl))
                    .u64("packet_uid", u64::from(d.trans_id));
            }
        }
        if let Some(r) = d.rcode {
            // OCSF's Response Code ids are the DNS RCODEs it lists; 99 Other.
            let known = matches!(r, 0..=11 | 16..=23);
            o.u64("rcode_id", if known { u64::from(r) } else { 99 })
                .opt_str("rcode", d.rcode_name);
        }
        o.u64("query_time", ms(d.ts));
        if let Some(rtt) = d.rtt {
            o.u64("response_time", ms(d.ts) + (rtt * 1000.0) as u64);
        }
        let mut u = o.obj("unmapped");
        u.ser("dns", d);
    }

    fn device_record(&self, d: &DeviceRecord, out: &mut Vec<u8>) {
        let mut o = Obj::new(out);
        self.head(
            &mut o,
            (5001, "Device Inventory Info"),
            (5, "Discovery"),
            (1, "Log"),
            d.ts,
            INFO,
            "device",
            None,
        );
        device(&mut o, "device", &d.device);
        let mut u = o.obj("unmapped");
        super::extras::device(&mut u, d);
    }

    fn base(&self, r: &Record, ts: Timestamp, out: &mut Vec<u8>) {
        let mut o = Obj::new(out);
        self.head(
            &mut o,
            (0, "Base Event"),
            (0, "Uncategorized"),
            (99, "Other"),
            ts,
            INFO,
            r.kind(),
            None,
        );
        o.str("message", r.kind()).ser("unmapped", r);
    }

    fn detection(&self, d: &DetectionRecord, out: &mut Vec<u8>) {
        let a = names::attack(d.analytic);
        let sev = match super::severity(d.score) {
            "high" => (4, "High"),
            "medium" => (3, "Medium"),
            _ => (2, "Low"),
        };
        let (conf_id, conf_score) = match d.visibility {
            "high" => (3, 90),
            "medium" => (2, 60),
            _ => (1, 30),
        };
        let mut o = Obj::new(out);
        self.head(
            &mut o,
            (2004, "Detection Finding"),
            (2, "Findings"),
            (1, "Create"),
            d.end_ts,
            sev,
            "detection",
            Some(&d.detection_id),
        );
        let dest = d.destination.name.as_deref().map_or_else(
            || format!("{}:{}", d.destination.ip, d.destination.port),
            |n| format!("{n}:{}", d.destination.port),
        );
        o.str(
            "message",
            &format!(
                "{} {}: {} -> {dest} (score {}, {} confidence)",
                d.analytic,
                d.pattern,
                d.device
                    .ip
                    .map_or_else(|| "unknown device".into(), |ip| ip.to_string()),
                d.score,
                d.visibility
            ),
        )
        .u64("start_time", ms(d.ts))
        .u64("end_time", ms(d.end_ts))
        .bool("is_alert", true)
        .u64("status_id", 1)
        .str("status", "New")
        .u64("confidence_id", conf_id)
        .str("confidence", d.visibility)
        .u64("confidence_score", conf_score)
        .u64("risk_score", u64::from(d.score))
        .u64("risk_level_id", sev.0 - 1)
        .str("risk_level", sev.1);
        {
            let mut f = o.obj("finding_info");
            f.str("uid", &d.detection_id)
                .str("title", &format!("{} {}", a.analytic, d.pattern))
                .strs("types", &[d.pattern])
                .u64("first_seen_time", ms(d.ts))
                .u64("last_seen_time", ms(d.end_ts))
                .str("src_url", a.url)
                .strs("data_sources", &["network traffic"]);
            {
                let mut an = f.obj("analytic");
                an.str("uid", a.analytic)
                    .str("name", a.analytic_name)
                    .u64("type_id", 2)
                    .str("type", "Behavioral")
                    .str("category", a.strategy);
            }
            let mut attacks = f.arr("attacks");
            let mut at = attacks.obj();
            at.obj("technique")
                .str("uid", a.technique_id)
                .str("name", a.technique_name);
            if let Some((uid, name)) = a.sub_technique {
                at.obj("sub_technique").str("uid", uid).str("name", name);
            }
            at.obj("tactic")
                .str("uid", a.tactic_id)
                .str("name", a.tactic_name);
        }
        device(&mut o, "device", &d.device);
        {
            let mut ev = o.arr("evidences");
            let mut e = ev.obj();
            if let Some(ip) = d.device.ip {
                let mac = d.device.info.as_deref().and_then(|i| i.mac);
                let mut s = e.obj("src_endpoint");
                s.disp("ip", &ip).opt_disp("mac", mac);
            }
            {
                let mut t = e.obj("dst_endpoint");
                t.disp("ip", &d.destination.ip)
                    .u64("port", u64::from(d.destination.port))
                    .opt_str("hostname", d.destination.name.as_deref());
            }
            if let Some(j) = &d.ja4 {
                e.arr("ja4_fingerprint_list")
                    .obj()
                    .u64("type_id", 1)
                    .str("type", "JA4")
                    .str("value", j);
            }
            e.ser("data", &d.evidence);
        }
        let mut u = o.obj("unmapped");
        super::extras::detection(&mut u, d);
    }
}

fn sans(o: &mut Obj<'_>, san: &[String]) {
    let mut a = o.arr("sans");
    for s in san {
        let kind = if s.parse::<IpAddr>().is_ok() {
            "IP"
        } else {
            "DNS"
        };
        a.obj().str("name", s).str("type", kind);
    }
}

impl Encoder for Ocsf {
    fn encode(&mut self, r: &Record, out: &mut Vec<u8>) {
        match r {
            Record::Flow(f) => self.flow(f, out),
            Record::Tls(t) => self.tls(t, out),
            Record::Dhcp(d) => self.dhcp(d, out),
            Record::Device(d) => self.device_record(d, out),
            Record::Detection(d) => self.detection(d, out),
            Record::Coverage(c) => self.base(r, c.ts, out),
            Record::Stats(s) => self.base(r, s.ts, out),
            Record::Dns(d) => self.dns(d, out),
        }
        out.push(b'\n');
    }
}
