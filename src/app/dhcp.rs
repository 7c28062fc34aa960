//! DHCPv4 messages (UDP 67/68): one `dhcp` record per message. `dhcproto`
//! reads the fixed header; the options are walked here, in wire order (the
//! order is part of an OS fingerprint), option overload (52) followed into
//! `file` / `sname`, and each option of a field decoded on its own, so one
//! option that cannot be read loses only itself (see [`FIELDS`]).

use crate::app::parser::{Cx, Parser, Registration, Transport};
use crate::decode::Packet;
use crate::flow::key::Direction;
use crate::flow::reassembly::StreamEvent;
use crate::record::{DhcpBody, DhcpRecord, FlowId, Mac, Record};
use dhcproto::v4::{Message, MessageType};
use dhcproto::{Decodable, Decoder};
use serde::Serialize;
use std::net::Ipv4Addr;

/// Option codes listed per message; the rest are counted in `options_more`.
const MAX_OPTIONS: usize = 64;
/// Longest host name / vendor class kept (bytes).
const MAX_TEXT: usize = 255;

/// Offsets of the fixed BOOTP fields.
const SNAME: std::ops::Range<usize> = 44..108;
const FILE: std::ops::Range<usize> = 108..236;
const OPTIONS: usize = 240;
/// The first 6 bytes of `chaddr`: the client's MAC when `hlen` is 6.
const CHADDR: std::ops::Range<usize> = 28..34;
const MAGIC: [u8; 4] = [99, 130, 83, 99];

/// DHCPv4's ports, at both ends (relayed and server-to-server traffic too).
pub fn on_ports(sport: u16, dport: u16) -> bool {
    matches!((sport, dport), (67 | 68, 67 | 68))
}

/// DHCPv4's entry in the parser registry: one `dhcp` record per message.
pub const PARSER: Registration = Registration {
    name: "dhcp",
    transport: Transport::Udp,
    enabled: |_| true,
    probe: |p| on_ports(p.sport, p.dport),
    new: |_| {
        Box::new(Messages {
            service: "dhcp",
            parse: |b| parse(b).map(DhcpBody::V4),
        })
    },
};

/// A DHCP parser (v4 or v6): each datagram is one message and one record.
#[derive(Debug)]
pub(crate) struct Messages {
    pub service: &'static str,
    pub parse: fn(&[u8]) -> Option<DhcpBody>,
}

impl Parser for Messages {
    fn feed(&mut self, _d: Direction, ev: StreamEvent<'_>, cx: &mut Cx<'_>) {
        if let (StreamEvent::Data(b), Some(p)) = (ev, cx.packet)
            && let Some(m) = (self.parse)(b)
        {
            cx.out.push(record(p, cx.flow_id(), m));
        }
    }

    fn wants(&self, _d: Direction) -> bool {
        true
    }

    fn service(&self) -> Option<&'static str> {
        Some(self.service)
    }
}

/// The `dhcp` record (v4 or v6) of one message carried by `p`.
pub(crate) fn record(p: &Packet, flow_id: FlowId, dhcp: DhcpBody) -> Record {
    let k = &p.key;
    Record::Dhcp(Box::new(DhcpRecord {
        kind: "dhcp",
        ts: p.ts,
        flow_id,
        src_ip: k.src.to_ip(),
        src_port: k.sport,
        dst_ip: k.dst.to_ip(),
        dst_port: k.dport,
        src_mac: p.src_mac.map(Mac),
        dst_mac: p.dst_mac.map(Mac),
        vlan: k.vlan.iter().copied().filter(|v| *v != 0).collect(),
        dhcp_version: if matches!(dhcp, DhcpBody::V4(_)) {
            4
        } else {
            6
        },
        dhcp,
        device: Default::default(),
        limits: Default::default(),
    }))
}

/// The DHCP part of a `dhcp` record.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DhcpInfo {
    /// 1 request (BOOTREQUEST), 2 reply.
    pub op: u8,
    /// DISCOVER, OFFER, REQUEST, DECLINE, ACK, NAK, RELEASE, INFORM, ... (option 53); null for BOOTP.
    pub message_type: Option<&'static str>,
    pub message_type_code: Option<u8>,
    /// Transaction id, `0x` + 8 hex digits.
    pub xid: String,
    pub hw_type: u8,
    /// chaddr, when the hardware address is 6 bytes long.
    pub client_mac: Option<crate::record::Mac>,
    pub client_ip: Ipv4Addr,
    pub your_ip: Ipv4Addr,
    pub server_ip: Ipv4Addr,
    pub relay_ip: Ipv4Addr,
    /// Option 50.
    pub requested_ip: Option<Ipv4Addr>,
    /// Option 12.
    pub hostname: Option<String>,
    /// Option 61, hex.
    pub client_id: Option<String>,
    /// Option 55, in the order sent.
    pub param_list: Option<Vec<u8>>,
    /// Option 60.
    pub vendor_class: Option<String>,
    /// Option 51, seconds.
    pub lease_s: Option<u32>,
    /// Option 54.
    pub server_id: Option<Ipv4Addr>,
    /// Option 82 (relay agent information), hex.
    pub relay_agent_info: Option<String>,
    /// Option codes in wire order (options area, then `file`, then `sname`
    /// when overloaded), pad and end left out.
    pub options: Vec<u8>,
    pub options_more: u32,
    /// Options whose length is impossible for their code (kept out of the
    /// decoded fields; e.g. a Rapid Commit with a body).
    pub malformed_options: Vec<u8>,
    /// Option 52: 1 `file`, 2 `sname`, 3 both carry options.
    pub overload: Option<u8>,
}

fn type_name(t: MessageType) -> Option<(&'static str, u8)> {
    Some(match t {
        MessageType::Discover => ("DISCOVER", 1),
        MessageType::Offer => ("OFFER", 2),
        MessageType::Request => ("REQUEST", 3),
        MessageType::Decline => ("DECLINE", 4),
        MessageType::Ack => ("ACK", 5),
        MessageType::Nak => ("NAK", 6),
        MessageType::Release => ("RELEASE", 7),
        MessageType::Inform => ("INFORM", 8),
        MessageType::ForceRenew => ("FORCERENEW", 9),
        MessageType::LeaseQuery => ("LEASEQUERY", 10),
        MessageType::LeaseUnassigned => ("LEASEUNASSIGNED", 11),
        MessageType::LeaseUnknown => ("LEASEUNKNOWN", 12),
        MessageType::LeaseActive => ("LEASEACTIVE", 13),
        MessageType::BulkLeaseQuery => ("BULKLEASEQUERY", 14),
        MessageType::LeaseQueryDone => ("LEASEQUERYDONE", 15),
        MessageType::ActiveLeaseQuery => ("ACTIVELEASEQUERY", 16),
        MessageType::LeaseQueryStatus => ("LEASEQUERYSTATUS", 17),
        MessageType::Tls => ("TLS", 18),
        MessageType::Unknown(_) => return None,
    })
}

/// The options of a raw options area in wire order, pad and end left out:
/// `(code, body)`, the body `None` when the area ends inside it (the walk
/// stops there).
fn raw_options(mut b: &[u8]) -> impl Iterator<Item = (u8, Option<&[u8]>)> {
    std::iter::from_fn(move || {
        loop {
            match b {
                [0, rest @ ..] => b = rest,
                [] | [255, ..] => return None,
                [code, rest @ ..] => {
                    let Some((len, body)) = rest.split_first() else {
                        b = &[];
                        return None;
                    };
                    let len = *len as usize;
                    b = body.get(len..).unwrap_or_default();
                    return Some((*code, body.get(..len)));
                }
            }
        }
    })
}

/// Option codes of a raw options area, in order.
fn walk_codes(b: &[u8], out: &mut Vec<u8>, more: &mut u32) {
    for (code, _) in raw_options(b) {
        if out.len() < MAX_OPTIONS {
            out.push(code);
        } else {
            *more += 1;
        }
    }
}

/// A text option: trailing NUL bytes dropped (clients that send C strings
/// with their terminator, `nas1\0`: Zeek and tshark drop them too), at most
/// [`MAX_TEXT`] bytes, invalid UTF-8 replaced.
fn text(b: &[u8]) -> String {
    let end = b.iter().rposition(|c| *c != 0).map_or(0, |i| i + 1);
    let b = &b[..end];
    String::from_utf8_lossy(&b[..b.len().min(MAX_TEXT)]).into_owned()
}

/// Option lengths no real option of the code has (an empty-bodied Rapid
/// Commit with a body, a Client FQDN under its 3 fixed bytes, a number of
/// another size): listed in `malformed_options` and kept out of the fields.
/// (These were the lengths that panicked or stopped `dhcproto` 0.15 when it
/// decoded the options; it no longer sees them.)
fn length_is_impossible(code: u8, len: usize) -> bool {
    match code {
        80 => len != 0, // Rapid Commit
        81 => len < 3,  // Client FQDN
        94 => len != 3, // Client Network Interface
        151 => len < 1, // bulk leasequery status code
        _ => fixed_len(code).is_some_and(|n| n != len),
    }
}

/// Body length of the options that are one number (a u8, u16 or u32).
fn fixed_len(code: u8) -> Option<usize> {
    Some(match code {
        // flags and single bytes: IP forwarding .. TCP keepalive garbage,
        // NetBIOS node type, overload, message type, disable SLAAC, BLQ state / source
        19 | 20 | 23 | 27 | 29..=31 | 34 | 36 | 37 | 39 | 46 | 52 | 53 | 116 | 156 | 157 => 1,
        // boot file size, max datagram size, interface MTU, max message size,
        // client system architecture
        13 | 22 | 26 | 57 | 93 => 2,
        // time offset, path MTU aging, ARP cache, TCP keepalive, lease time,
        // renewal, rebinding, client last transaction time, IPv6-only
        // preferred, bulk leasequery times
        2 | 24 | 35 | 38 | 51 | 58 | 59 | 91 | 106 | 152..=155 => 4,
        _ => return None,
    })
}

/// Option codes read into the record's fields. Options are decoded here,
/// one by one from the raw areas, and never by `dhcproto`'s option list:
/// that stops at the first option it cannot read and drops every option
/// after it, and it cannot read real ones (a Client FQDN (81) in the ASCII
/// encoding RFC 4702 §2.3.1 allows, which dhclient and Windows send, lost
/// the parameter list and vendor class behind it).
const FIELDS: [u8; 9] = [12, 50, 51, 52, 53, 54, 55, 60, 61];

/// The options of the areas in order (options area, then `file`, then
/// `sname` when overloaded), each code's instances joined (RFC 3396 §4:
/// a long option is split into several of one code, concatenated in order),
/// for the codes `keep` accepts: `(code, body)`, in first-seen order.
fn joined(areas: &[&[u8]], keep: impl Fn(u8) -> bool) -> Vec<(u8, Vec<u8>)> {
    let mut out: Vec<(u8, Vec<u8>)> = Vec::new();
    for (code, body) in areas.iter().flat_map(|a| raw_options(a)) {
        let Some(body) = body.filter(|_| keep(code)) else {
            continue;
        };
        match out.iter_mut().find(|(c, _)| *c == code) {
            Some((_, b)) => b.extend_from_slice(body),
            None => out.push((code, body.to_vec())),
        }
    }
    out
}

/// A DHCPv4 message from a UDP payload; `None` when it is not one.
pub fn parse(payload: &[u8]) -> Option<DhcpInfo> {
    if payload.len() < OPTIONS || payload[236..240] != MAGIC {
        return None;
    }
    // dhcproto reads the fixed header, handed an empty options area (an
    // End alone): no option reaches it, so no option length can break it.
    let mut header = payload[..OPTIONS].to_vec();
    header.push(255);
    let msg = Message::decode(&mut Decoder::new(&header)).ok()?;
    let mut malformed = Vec::new();
    let mut codes = Vec::new();
    let mut more = 0;
    walk_codes(&payload[OPTIONS..], &mut codes, &mut more);
    let mut areas = vec![&payload[OPTIONS..]];
    let overload = match joined(&areas, |c| c == 52).first() {
        Some((_, v)) if v.len() == 1 => Some(v[0]),
        _ => None,
    };
    if let Some(v) = overload {
        // RFC 2131 §4.1: `file` first, then `sname`.
        for (bit, range) in [(1, FILE), (2, SNAME)] {
            if v & bit != 0 {
                walk_codes(&payload[range.clone()], &mut codes, &mut more);
                areas.push(&payload[range]);
            }
        }
    }
    let all = joined(&areas, |_| true);
    for (code, b) in &all {
        if length_is_impossible(*code, b.len()) && malformed.len() < MAX_OPTIONS {
            malformed.push(*code);
        }
    }
    let mut info = DhcpInfo {
        op: payload[0],
        message_type: None,
        message_type_code: None,
        xid: format!("0x{:08x}", msg.xid()),
        hw_type: payload[1],
        // chaddr is read from the fixed field, never through
        // `Message::chaddr()`: dhcproto 0.15 slices its 16-byte array by the
        // wire's `hlen`, and a packet with `hlen` above 16 panicked it
        // (Suricata clamps the same way).
        client_mac: (payload[2] == 6)
            .then(|| payload[CHADDR].try_into().ok())
            .flatten()
            .map(crate::record::Mac),
        client_ip: msg.ciaddr(),
        your_ip: msg.yiaddr(),
        server_ip: msg.siaddr(),
        relay_ip: msg.giaddr(),
        options: codes,
        options_more: more,
        malformed_options: Vec::new(),
        overload,
        requested_ip: None,
        hostname: None,
        client_id: None,
        param_list: None,
        vendor_class: None,
        lease_s: None,
        server_id: None,
        relay_agent_info: None,
    };
    let ip = |b: &[u8]| <[u8; 4]>::try_from(b).ok().map(Ipv4Addr::from);
    for (code, b) in all {
        if !FIELDS.contains(&code) || length_is_impossible(code, b.len()) {
            continue; // impossible ones are listed in `malformed_options`
        }
        match code {
            53 => {
                info.message_type_code = None;
                if let Some((name, n)) = type_name(MessageType::from(b[0])) {
                    info.message_type = Some(name);
                    info.message_type_code = Some(n);
                }
            }
            50 => info.requested_ip = ip(&b),
            54 => info.server_id = ip(&b),
            51 => info.lease_s = Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]])),
            12 => info.hostname = Some(text(&b)),
            60 => info.vendor_class = Some(text(&b)),
            61 => info.client_id = Some(crate::record::hex(&b)),
            55 => info.param_list = Some(b),
            _ => {}
        }
    }
    info.malformed_options = malformed;
    // Relay agent information as sent (sub-options, hex).
    info.relay_agent_info = raw_option(&payload[OPTIONS..], 82).map(crate::record::hex);
    Some(info)
}

/// The body of the first option `code` in a raw options area.
fn raw_option(b: &[u8], code: u8) -> Option<&[u8]> {
    raw_options(b).find(|(c, _)| *c == code)?.1
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: dhcproto 0.15 asserts Rapid Commit (80) is empty and
    /// computes `len - 3` for Client FQDN (81); a hostile packet panicked it.
    #[test]
    fn impossible_option_lengths_are_flagged_not_fatal() {
        let mut p = vec![0u8; 300];
        p[0] = 2;
        p[1] = 1;
        p[2] = 6;
        p[236..240].copy_from_slice(&MAGIC);
        let opts = [
            53, 1, 5, 80, 2, 9, 9, 81, 1, 0, 12, 3, b'a', b'b', b'c', 255,
        ];
        p[240..240 + opts.len()].copy_from_slice(&opts);
        let d = parse(&p).expect("still a DHCP message");
        assert_eq!(d.message_type, Some("ACK"));
        assert_eq!(d.malformed_options, [80, 81]);
        assert_eq!(d.options, [53, 80, 81, 12]);
        assert_eq!(d.hostname.as_deref(), Some("abc"));
    }

    /// Regression (issue 15): `hlen` above 16 made dhcproto's `chaddr()`
    /// panic and killed the worker; every `hlen` now decodes, with a MAC only
    /// for 6.
    #[test]
    fn any_hardware_address_length_is_survived() {
        let mut p = vec![0u8; 300];
        p[0] = 1;
        p[1] = 1;
        p[28..34].copy_from_slice(&[2, 0, 0, 0, 0, 0x17]);
        p[236..240].copy_from_slice(&MAGIC);
        p[240..244].copy_from_slice(&[53, 1, 1, 255]);
        for hlen in 0..=255u8 {
            p[2] = hlen;
            let d = parse(&p).expect("a DHCP message whatever its hlen");
            assert_eq!(d.message_type, Some("DISCOVER"));
            let want = (hlen == 6).then(|| "02:00:00:00:00:17".to_string());
            assert_eq!(d.client_mac.map(|m| m.to_string()), want, "hlen {hlen}");
        }
    }

    /// Options read as one number: one of another length is renamed and
    /// listed, and the options after it are still decoded.
    #[test]
    fn fixed_size_options_of_another_length_are_defused() {
        for code in (1..=254u8).filter(|c| fixed_len(*c).is_some()) {
            let mut p = vec![0u8; 240];
            p[0] = 1;
            p[236..240].copy_from_slice(&MAGIC);
            p.extend_from_slice(&[12, 1, b'h', code, 0, 152, 2, 0, 0, 255]);
            let d = parse(&p).expect("a DHCP message");
            assert!(d.malformed_options.contains(&code), "code {code}");
            assert_eq!(d.options, [12, code, 152]);
            assert_eq!(d.hostname.as_deref(), Some("h"), "code {code}");
        }
        let mut p = vec![0u8; 240];
        p[236..240].copy_from_slice(&MAGIC);
        p.extend_from_slice(&[51, 2, 0, 0, 12, 3, b'a', b'b', b'c', 255]);
        assert_eq!(parse(&p).unwrap().hostname.as_deref(), Some("abc"));
    }

    /// Regression (fuzz, `fuzz/regressions/dhcp4/`): dhcproto joins adjacent
    /// options of one code (RFC 3396) before decoding, so two 4-byte bulk
    /// leasequery times were one of 8 and failed its assertion; and it read
    /// the overload from two joined options 52 while `file` was checked by
    /// the first alone.
    #[test]
    fn adjacent_options_are_checked_joined() {
        let mut p = vec![0u8; 240];
        p[236..240].copy_from_slice(&MAGIC);
        p.extend_from_slice(&[155, 4, 0, 0, 0, 1, 155, 4, 0, 0, 0, 2, 12, 1, b'h', 255]);
        let d = parse(&p).expect("a DHCP message");
        assert_eq!(d.malformed_options, [155]);
        assert_eq!(d.hostname.as_deref(), Some("h"));
        // 52 of length 0 then 52 of length 1: the overload is 3, and `file`
        // (a bulk leasequery time of 2 bytes) is checked.
        let mut p = vec![0u8; 240];
        p[236..240].copy_from_slice(&MAGIC);
        p[108..112].copy_from_slice(&[152, 2, 0, 0]);
        p.extend_from_slice(&[52, 0, 52, 1, 3, 255]);
        let d = parse(&p).expect("a DHCP message");
        assert_eq!(d.overload, Some(3));
        assert!(d.malformed_options.contains(&152));
    }

    #[test]
    fn short_or_foreign_payloads_are_not_dhcp() {
        assert!(parse(&[]).is_none());
        assert!(parse(&[1; 300]).is_none());
        let mut p = vec![0u8; 300];
        p[236..240].copy_from_slice(&MAGIC);
        p[240] = 53; // option 53 with its length missing
        p.truncate(241);
        let _ = parse(&p);
    }
}
