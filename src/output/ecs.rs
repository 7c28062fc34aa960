//! Elastic Common Schema 8.17 documents, one a line: `@timestamp`,
//! `event.*` set per record type, `source.*` / `destination.*` /
//! `network.*`, `tls.*` (with `tls.client.ja4` as Zeek and Arkime name it),
//! `rule.*` and `threat.*` for detections, `observer.*` for the sensor.
//! Everything ECS has no field for is under `blindspot.<type>` in
//! blindspot's own names (README "Output forms");
//! `tests/output_forms.rs` checks every field name against
//! `tests/schemas/ecs-fields.txt`.

use super::Encoder;
use super::builder::{Obj, members};
use super::names;
use super::observer::Observer;
use crate::record::{
    DetectionRecord, DeviceRecord, DhcpBody, DhcpRecord, DnsRecord, FlowRecord, Mac, Record,
    TlsRecord,
};
use crate::time::Timestamp;
use std::net::IpAddr;

pub const ECS_VERSION: &str = "8.17.0";

pub struct Ecs {
    /// `"ecs":{...},"observer":{...}`, the same on every document.
    fixed: Vec<u8>,
    /// `"observer":{...}` of `blindspot` (the interfaces list).
    interfaces: Vec<u8>,
}

impl Ecs {
    pub fn new(obs: &Observer) -> Ecs {
        Ecs {
            fixed: members(|o| {
                o.obj("ecs").str("version", ECS_VERSION);
                o.obj("observer")
                    .str("name", &obs.name)
                    .str("hostname", &obs.hostname)
                    .str("product", "blindspot")
                    .str("vendor", "blindspot")
                    .str("version", super::observer::VERSION)
                    .str("type", "sensor");
            }),
            interfaces: members(|o| {
                o.obj("observer").strs("interfaces", &obs.interfaces);
            }),
        }
    }

    /// `@timestamp`, `ecs`, `observer` and `event` (`more` adds to it).
    #[allow(clippy::too_many_arguments)]
    fn head(
        &self,
        o: &mut Obj<'_>,
        ts: Timestamp,
        kind: &str,
        category: &[&str],
        types: &[&str],
        dataset: &str,
        more: impl FnOnce(&mut Obj<'_>),
    ) {
        o.disp("@timestamp", &ts).raw_members(&self.fixed);
        let mut e = o.obj("event");
        e.str("kind", kind);
        if !category.is_empty() {
            e.strs("category", category).strs("type", types);
        }
        e.str("module", "blindspot").str("dataset", dataset);
        more(&mut e);
    }
}

/// ECS asks for MACs as RFC 7042 writes them: `AA-BB-CC-DD-EE-FF`.
struct EcsMac(Mac);

impl std::fmt::Display for EcsMac {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let b = self.0.0;
        write!(
            f,
            "{:02X}-{:02X}-{:02X}-{:02X}-{:02X}-{:02X}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

fn side(o: &mut Obj<'_>, k: &'static str, ip: IpAddr, port: u16, mac: Option<Mac>) {
    let mut s = o.obj(k);
    s.disp("ip", &ip)
        .u64("port", u64::from(port))
        .opt_disp("mac", mac.map(EcsMac));
}

fn network(
    o: &mut Obj<'_>,
    proto: &str,
    community: Option<&str>,
    ip: IpAddr,
    protocol: Option<&str>,
) {
    let mut n = o.obj("network");
    n.str("transport", proto)
        .opt_str("community_id", community)
        .str("type", if ip.is_ipv4() { "ipv4" } else { "ipv6" })
        .opt_str("protocol", protocol);
}

impl Ecs {
    fn flow(&self, f: &FlowRecord, out: &mut Vec<u8>) {
        let mut o = Obj::new(out);
        self.head(
            &mut o,
            f.ts,
            "event",
            &["network"],
            &["connection", "end"],
            "blindspot.flow",
            |e| {
                e.disp("start", &f.ts)
                    .disp("end", &f.end_ts)
                    .u64("duration", f.end_ts.since(f.ts));
            },
        );
        side(&mut o, "source", f.src_ip, f.src_port, f.src_mac);
        side(&mut o, "destination", f.dst_ip, f.dst_port, f.dst_mac);
        {
            let mut n = o.obj("network");
            n.str("transport", f.proto)
                .str("community_id", &f.community_id)
                .str("type", if f.src_ip.is_ipv4() { "ipv4" } else { "ipv6" })
                .opt_str("protocol", f.service)
                .u64("bytes", f.orig.bytes + f.resp.bytes)
                .u64("packets", f.orig.packets + f.resp.packets);
            if let Some(v) = f.vlan.first() {
                n.obj("vlan").disp("id", v);
            }
        }
        let mut b = o.obj("blindspot");
        b.str("type", "flow").raw_members(&self.interfaces);
        let mut r = b.obj("flow");
        super::extras::flow(&mut r, f);
    }

    fn tls(&self, t: &TlsRecord, out: &mut Vec<u8>) {
        let mut o = Obj::new(out);
        let established = t.outcome == crate::app::tls::summary::Outcome::Established;
        self.head(
            &mut o,
            t.ts,
            "event",
            &["network"],
            &["protocol"],
            "blindspot.tls",
            |e| {
                e.str("outcome", if established { "success" } else { "failure" })
                    .str("action", t.outcome.name());
            },
        );
        side(&mut o, "source", t.src_ip, t.src_port, None);
        side(&mut o, "destination", t.dst_ip, t.dst_port, None);
        network(
            &mut o,
            t.proto,
            Some(&t.community_id),
            t.src_ip,
            Some("tls"),
        );
        {
            let mut s = o.obj("tls");
            if let Some(v) = &t.version {
                let (proto, num) = v.split_once(' ').unwrap_or(("", v));
                s.str("version_protocol", &proto.to_ascii_lowercase())
                    .str("version", num);
            }
            s.opt_str("cipher", t.cipher_name.or(t.cipher.as_deref()))
                .bool("established", established)
                .bool("resumed", t.resumed)
                .opt_str("next_protocol", t.alpn_selected.as_deref());
            {
                let mut c = s.obj("client");
                c.opt_str("server_name", t.sni.as_deref())
                    .opt_str("ja3", t.ja3.as_deref())
                    .opt_str("ja4", t.ja4.as_deref());
            }
            let mut v = s.obj("server");
            v.opt_str("ja3s", t.ja3s.as_deref());
            if let Some(c) = &t.cert {
                v.opt_str("subject", c.subject.as_deref())
                    .opt_str("issuer", c.issuer.as_deref())
                    .opt_str("not_before", c.not_before_rfc3339.as_deref())
                    .opt_str("not_after", c.not_after_rfc3339.as_deref());
                v.obj("hash").str("sha256", &c.sha256.to_ascii_uppercase());
                let mut x = v.obj("x509");
                x.opt_str("serial_number", c.serial.as_deref())
                    .opt_str("not_before", c.not_before_rfc3339.as_deref())
                    .opt_str("not_after", c.not_after_rfc3339.as_deref())
                    .strs("alternative_names", &c.san);
                if let Some(s) = &c.subject {
                    x.obj("subject").str("distinguished_name", s);
                }
                if let Some(i) = &c.issuer {
                    x.obj("issuer").str("distinguished_name", i);
                }
            }
        }
        let mut b = o.obj("blindspot");
        b.str("type", "tls").raw_members(&self.interfaces);
        let mut r = b.obj("tls");
        super::extras::tls(&mut r, t);
    }

    fn dhcp(&self, d: &DhcpRecord, out: &mut Vec<u8>) {
        let mut o = Obj::new(out);
        self.head(
            &mut o,
            d.ts,
            "event",
            &["network"],
            &["protocol", "info"],
            "blindspot.dhcp",
            |_| {},
        );
        side(&mut o, "source", d.src_ip, d.src_port, d.src_mac);
        side(&mut o, "destination", d.dst_ip, d.dst_port, d.dst_mac);
        let proto = match d.dhcp {
            DhcpBody::V4(_) => "dhcp",
            DhcpBody::V6(_) => "dhcpv6",
        };
        network(&mut o, "udp", None, d.src_ip, Some(proto));
        let mut b = o.obj("blindspot");
        b.str("type", "dhcp").raw_members(&self.interfaces);
        let mut r = b.obj("dhcp");
        super::extras::dhcp(&mut r, d);
    }

    /// ECS `dns.*`: one event per transaction (`dns.type` answer when
    /// answered, else query).
    fn dns(&self, d: &DnsRecord, out: &mut Vec<u8>) {
        let mut o = Obj::new(out);
        self.head(
            &mut o,
            d.ts,
            "event",
            &["network"],
            &["protocol", "info"],
            "blindspot.dns",
            |_| {},
        );
        side(&mut o, "source", d.src_ip, d.src_port, None);
        side(&mut o, "destination", d.dst_ip, d.dst_port, None);
        network(&mut o, d.proto, None, d.src_ip, Some("dns"));
        {
            let mut n = o.obj("dns");
            n.str("type", if d.rcode.is_some() { "answer" } else { "query" })
                .str("id", &d.trans_id.to_string())
                .opt_str("op_code", if d.opcode == 0 { Some("QUERY") } else { None })
                .opt_str("response_code", d.rcode_name);
            let flags: Vec<&str> = [("AA", d.aa), ("TC", d.tc), ("RD", d.rd), ("RA", d.ra)]
                .into_iter()
                .filter(|(_, on)| *on)
                .map(|(f, _)| f)
                .collect();
            if !flags.is_empty() {
                n.strs("header_flags", &flags);
            }
            if let Some(q) = &d.query {
                let mut qo = n.obj("question");
                qo.str("name", q)
                    .opt_str("type", d.qtype_name)
                    .opt_str("class", d.qclass_name);
            }
            if !d.answers.is_empty() {
                let mut a = n.arr("answers");
                for x in &d.answers {
                    a.obj()
                        .str("name", &x.name)
                        .opt_str("type", x.type_name)
                        .u64("ttl", u64::from(x.ttl))
                        .opt_str("data", x.data.as_deref());
                }
            }
            let ips: Vec<&str> = d
                .answers
                .iter()
                .filter(|x| matches!(x.type_name, Some("A" | "AAAA")))
                .filter_map(|x| x.data.as_deref())
                .collect();
            if !ips.is_empty() {
                n.strs("resolved_ip", &ips);
            }
        }
        let mut b = o.obj("blindspot");
        b.str("type", "dns").raw_members(&self.interfaces);
        b.ser("dns", d);
    }

    fn device(&self, d: &DeviceRecord, out: &mut Vec<u8>) {
        let mut o = Obj::new(out);
        self.head(
            &mut o,
            d.ts,
            "event",
            &["host"],
            &["info"],
            "blindspot.device",
            |_| {},
        );
        {
            let info = d.device.info.as_deref();
            let mut h = o.obj("host");
            if let Some(ip) = d.ip {
                h.arr("ip").disp(&ip);
            }
            h.arr("mac").disp(&EcsMac(d.mac));
            if let Some(n) = info.and_then(|i| i.hostname.as_deref()) {
                h.str("hostname", n);
            }
        }
        let mut b = o.obj("blindspot");
        b.str("type", "device").raw_members(&self.interfaces);
        let mut r = b.obj("device");
        super::extras::device(&mut r, d);
    }

    fn metric(&self, r: &Record, ts: Timestamp, out: &mut Vec<u8>) {
        let mut o = Obj::new(out);
        let dataset = if r.kind() == "stats" {
            "blindspot.stats"
        } else {
            "blindspot.coverage"
        };
        self.head(&mut o, ts, "metric", &[], &[], dataset, |_| {});
        let mut b = o.obj("blindspot");
        b.str("type", r.kind()).raw_members(&self.interfaces);
        match r {
            Record::Stats(_) => b.ser("stats", r),
            _ => b.ser("coverage", r),
        };
    }

    fn detection(&self, d: &DetectionRecord, out: &mut Vec<u8>) {
        let a = names::attack(d.analytic);
        let mut o = Obj::new(out);
        o.disp("@timestamp", &d.end_ts).raw_members(&self.fixed);
        {
            let mut e = o.obj("event");
            e.str("kind", "alert")
                .strs("category", &["intrusion_detection", "network"])
                .strs("type", &["info"])
                .str("module", "blindspot")
                .str("dataset", "blindspot.detection")
                .str("id", &d.detection_id)
                .disp("start", &d.ts)
                .disp("end", &d.end_ts)
                .u64(
                    "severity",
                    match super::severity(d.score) {
                        "high" => 73,
                        "medium" => 47,
                        _ => 21,
                    },
                )
                .u64("risk_score", u64::from(d.score))
                .str("action", d.pattern);
        }
        o.str(
            "message",
            &format!(
                "{} {} (score {}, {} confidence)",
                d.analytic, d.pattern, d.score, d.visibility
            ),
        );
        {
            let mut r = o.obj("rule");
            r.str("id", &format!("{}-{}", a.analytic, d.pattern))
                .str("name", d.pattern)
                .str("category", a.analytic)
                .str("ruleset", "MITRE ATT&CK Mobile")
                .str("reference", a.url);
        }
        {
            let mut t = o.obj("threat");
            t.str("framework", "MITRE ATT&CK");
            {
                let mut q = t.obj("technique");
                q.strs("id", &[a.technique_id])
                    .strs("name", &[a.technique_name]);
                if let Some((id, name)) = a.sub_technique {
                    q.obj("subtechnique")
                        .strs("id", &[id])
                        .strs("name", &[name]);
                }
            }
            t.obj("tactic")
                .strs("id", &[a.tactic_id])
                .strs("name", &[a.tactic_name]);
        }
        if let Some(ip) = d.device.ip {
            let mac = d.device.info.as_deref().and_then(|i| i.mac);
            o.obj("source")
                .disp("ip", &ip)
                .opt_disp("mac", mac.map(EcsMac));
        }
        {
            let mut t = o.obj("destination");
            t.disp("ip", &d.destination.ip)
                .u64("port", u64::from(d.destination.port))
                .opt_str("domain", d.destination.name.as_deref());
        }
        if let Some(j) = &d.ja4 {
            o.obj("tls").obj("client").str("ja4", j);
        }
        let mut b = o.obj("blindspot");
        b.str("type", "detection").raw_members(&self.interfaces);
        let mut r = b.obj("detection");
        super::extras::detection(&mut r, d);
    }
}

impl Encoder for Ecs {
    fn encode(&mut self, r: &Record, out: &mut Vec<u8>) {
        match r {
            Record::Flow(f) => self.flow(f, out),
            Record::Tls(t) => self.tls(t, out),
            Record::Dhcp(d) => self.dhcp(d, out),
            Record::Device(d) => self.device(d, out),
            Record::Detection(d) => self.detection(d, out),
            Record::Coverage(c) => self.metric(r, c.ts, out),
            Record::Stats(s) => self.metric(r, s.ts, out),
            Record::Dns(d) => self.dns(d, out),
        }
        out.push(b'\n');
    }
}
