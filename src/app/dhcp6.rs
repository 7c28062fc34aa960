//! DHCPv6 messages (UDP 546/547), decoded with `dhcproto`: one `dhcp` record
//! per client/server message (relay-forward/relay-reply wrappers are opened
//! once to reach the message inside).

use crate::app::parser::{Registration, Transport};
use crate::record::DhcpBody;
use dhcproto::v6::{DhcpOption, Message, MessageType, RelayMessage};
use dhcproto::{Decodable, Decoder};
use serde::Serialize;
use std::net::Ipv6Addr;

/// Addresses listed per message (IA_NA / IA_TA); the rest are dropped.
const MAX_ADDRESSES: usize = 16;
/// Longest DUID kept (RFC 8415 caps a DUID at 128 bytes + 2 for the type).
const MAX_DUID: usize = 130;

/// DHCPv6's ports, at both ends (relayed traffic too).
pub fn on_ports(sport: u16, dport: u16) -> bool {
    matches!((sport, dport), (546 | 547, 546 | 547))
}

/// DHCPv6's entry in the parser registry: one `dhcp` record per message.
pub const PARSER: Registration = Registration {
    name: "dhcpv6",
    transport: Transport::Udp,
    enabled: |_| true,
    probe: |p| on_ports(p.sport, p.dport),
    new: |_| {
        Box::new(super::dhcp::Messages {
            service: "dhcpv6",
            parse: |b| parse(b).map(DhcpBody::V6),
        })
    },
};

/// One address from an IA_NA or IA_TA.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct IaAddress {
    pub ip: Ipv6Addr,
    pub valid_s: u32,
}

/// The DHCPv6 part of a `dhcp` record.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Dhcp6Info {
    /// SOLICIT, ADVERTISE, REQUEST, CONFIRM, RENEW, REBIND, REPLY, RELEASE,
    /// DECLINE, RECONFIGURE, INFORMATION-REQUEST, ...
    pub message_type: Option<&'static str>,
    pub message_type_code: u8,
    /// Transaction id, `0x` + 6 hex digits.
    pub xid: String,
    /// Client Identifier (option 1), hex.
    pub client_duid: Option<String>,
    /// The link-layer address inside a DUID-LLT or DUID-LL of hardware type 1.
    pub client_mac: Option<crate::record::Mac>,
    /// Addresses in IA_NA / IA_TA options (IA_ADDR), with valid lifetimes.
    pub ia_addresses: Vec<IaAddress>,
    /// Client FQDN (option 39) domain name, as sent.
    pub hostname: Option<String>,
    /// Relay-forward / relay-reply hops opened to reach the message.
    pub relayed: bool,
}

fn type_name(t: MessageType) -> Option<&'static str> {
    Some(match t {
        MessageType::Solicit => "SOLICIT",
        MessageType::Advertise => "ADVERTISE",
        MessageType::Request => "REQUEST",
        MessageType::Confirm => "CONFIRM",
        MessageType::Renew => "RENEW",
        MessageType::Rebind => "REBIND",
        MessageType::Reply => "REPLY",
        MessageType::Release => "RELEASE",
        MessageType::Decline => "DECLINE",
        MessageType::Reconfigure => "RECONFIGURE",
        MessageType::InformationRequest => "INFORMATION-REQUEST",
        MessageType::LeaseQuery => "LEASEQUERY",
        MessageType::LeaseQueryReply => "LEASEQUERY-REPLY",
        _ => return None,
    })
}

/// The MAC inside a DUID: DUID-LLT (type 1) or DUID-LL (type 3) with
/// hardware type 1 (Ethernet), whose link-layer address is then exactly 6
/// bytes (RFC 8415 §11.2, §11.4).
pub fn duid_mac(duid: &[u8]) -> Option<[u8; 6]> {
    let ll = match duid {
        [0, 1, 0, 1, _, _, _, _, ll @ ..] => ll,
        [0, 3, 0, 1, ll @ ..] => ll,
        _ => return None,
    };
    ll.try_into().ok()
}

/// A DHCPv6 message from a UDP payload; `None` when it is not one.
pub fn parse(payload: &[u8]) -> Option<Dhcp6Info> {
    let code = *payload.first()?;
    // dhcproto trusts some options' lengths (see `length_fits`); hand it
    // only the options before the first one whose length does not fit.
    let header = if matches!(code, 12 | 13) {
        RELAY_HEADER
    } else {
        MESSAGE_HEADER
    };
    let payload = sound_prefix(payload, header);
    // Relay messages (12, 13) wrap the client's message in option 9; open one level.
    let (msg, relayed) = if matches!(code, 12 | 13) {
        let relay = RelayMessage::decode(&mut Decoder::new(payload)).ok()?;
        let inner = relay.opts().iter().find_map(|o| match o {
            DhcpOption::RelayMsg(m) => Some(m.clone()),
            _ => None,
        })?;
        let bytes = dhcproto::Encodable::to_vec(&inner).ok()?;
        // Checked again: read as a message, its options start at another
        // offset than when they were checked as a relay's (a Vendor Class
        // of length 0 got through; device_evidence fuzzer).
        let bytes = sound_prefix(&bytes, MESSAGE_HEADER);
        (Message::decode(&mut Decoder::new(bytes)).ok()?, true)
    } else if (1..=11).contains(&code) || matches!(code, 14..=17) {
        (Message::decode(&mut Decoder::new(payload)).ok()?, false)
    } else {
        return None;
    };
    let t = msg.msg_type();
    let xid = msg.xid();
    let mut info = Dhcp6Info {
        message_type: type_name(t),
        message_type_code: u8::from(t),
        xid: format!("0x{:02x}{:02x}{:02x}", xid[0], xid[1], xid[2]),
        client_duid: None,
        client_mac: None,
        ia_addresses: Vec::new(),
        hostname: None,
        relayed,
    };
    for o in msg.opts().iter() {
        match o {
            DhcpOption::ClientId(d) => {
                let d = &d[..d.len().min(MAX_DUID)];
                info.client_duid = Some(crate::record::hex(d));
                info.client_mac = duid_mac(d).map(crate::record::Mac);
            }
            DhcpOption::IANA(ia) => push_addrs(ia.opts.iter(), &mut info.ia_addresses),
            DhcpOption::IATA(ia) => push_addrs(ia.opts.iter(), &mut info.ia_addresses),
            DhcpOption::Unknown(u) if u16::from(u.code()) == 39 => {
                info.hostname = fqdn_name(u.data());
            }
            _ => {}
        }
    }
    Some(info)
}

/// msg-type and transaction-id.
const MESSAGE_HEADER: usize = 4;
/// msg-type, hop-count, link-address and peer-address (RFC 8415 §9).
const RELAY_HEADER: usize = 34;
/// Relay messages nested in relay messages opened (each level is a
/// recursion in dhcproto); a deeper one is cut like a malformed option.
const MAX_RELAY_DEPTH: u8 = 8;

/// Can dhcproto 0.15 decode an option of this code and body length? It
/// reads the fixed fields of Authentication (11), Status Code (13), Vendor
/// Class (16) and Vendor-specific Information (17) and then `len - fixed`
/// bytes: a shorter body underflowed that subtraction (a panic with
/// overflow checks on). It reads Preference (7), Elapsed Time (8), Server
/// Unicast (12), Rapid Commit (14), Reconfigure Message (19) and
/// Reconfigure Accept (20) as fixed-size fields without looking at `len`:
/// another length shifts it onto bytes that are no option header. Both
/// found by the `device_evidence` fuzzer (kept in `fuzz/regressions/dhcp6/`).
fn length_fits(code: u16, len: usize) -> bool {
    match code {
        11 => len >= 11,
        13 => len >= 2,
        16 | 17 => len >= 4,
        7 | 19 => len == 1,
        8 => len == 2,
        12 => len == 16,
        14 | 20 => len == 0,
        _ => true,
    }
}

/// Options that dhcproto opens, decoding the options after this many fixed
/// bytes of the body: IA_NA, IA_TA, IAADDR, Relay Message (always read as a
/// relay message), Vendor-specific Information, IA_PD, IAPREFIX.
fn nested_at(code: u16) -> Option<usize> {
    match code {
        3 | 25 => Some(12),
        4 | 17 => Some(4),
        5 => Some(24),
        9 => Some(RELAY_HEADER),
        26 => Some(25),
        _ => None,
    }
}

/// `msg` up to the end of its sound options (see [`sound_options`]), its
/// options starting after `header` bytes.
fn sound_prefix(msg: &[u8], header: usize) -> &[u8] {
    let n = header + msg.get(header..).map_or(0, |o| sound_options(o, 0));
    &msg[..n.min(msg.len())]
}

/// Length of the leading options of `opts` that dhcproto decodes as the
/// options they are: the walk stops before the first option (or option
/// holding one, at any depth) whose length does not fit its code (see
/// [`length_fits`]). A truncated last option is left in: dhcproto stops at it.
fn sound_options(opts: &[u8], depth: u8) -> usize {
    let mut at = 0;
    while let Some(h) = opts.get(at..at + 4) {
        let code = u16::from_be_bytes([h[0], h[1]]);
        let len = u16::from_be_bytes([h[2], h[3]]) as usize;
        if !length_fits(code, len) {
            return at;
        }
        let Some(body) = opts.get(at + 4..at + 4 + len) else {
            return opts.len();
        };
        if let Some(fixed) = nested_at(code)
            && let Some(inner) = body.get(fixed..)
        {
            let too_deep = code == 9 && depth >= MAX_RELAY_DEPTH;
            if too_deep || sound_options(inner, depth + u8::from(code == 9)) < inner.len() {
                return at;
            }
        }
        at += 4 + len;
    }
    opts.len()
}

fn push_addrs<'a>(opts: impl Iterator<Item = &'a DhcpOption>, out: &mut Vec<IaAddress>) {
    for o in opts {
        if let DhcpOption::IAAddr(a) = o
            && out.len() < MAX_ADDRESSES
        {
            out.push(IaAddress {
                ip: a.addr,
                valid_s: a.valid_life,
            });
        }
    }
}

/// Option 39: one flags byte, then a domain name in DNS wire format
/// (uncompressed, possibly partial). Labels are joined with dots.
fn fqdn_name(b: &[u8]) -> Option<String> {
    let mut rest = b.get(1..)?;
    let mut name = String::new();
    while let Some((&len, tail)) = rest.split_first() {
        if len == 0 || len > 63 {
            break;
        }
        let label = tail.get(..len as usize)?;
        if !name.is_empty() {
            name.push('.');
        }
        name.push_str(&String::from_utf8_lossy(label));
        rest = &tail[len as usize..];
        if name.len() > 255 {
            break;
        }
    }
    (!name.is_empty()).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duid_link_layer_addresses() {
        // DUID-LLT from the foxio capture: type 1, hw 1, time, MAC.
        let llt = [
            0, 1, 0, 1, 0x1c, 0x39, 0xcf, 0x88, 8, 0, 0x27, 0xfe, 0x8f, 0x95,
        ];
        assert_eq!(duid_mac(&llt), Some([8, 0, 0x27, 0xfe, 0x8f, 0x95]));
        let ll = [0, 3, 0, 1, 2, 0, 0x5e, 0x10, 0, 1];
        assert_eq!(duid_mac(&ll), Some([2, 0, 0x5e, 0x10, 0, 1]));
        assert_eq!(duid_mac(&[0, 2, 0, 0, 0, 9, 1, 2, 3, 4]), None); // DUID-EN
        assert_eq!(duid_mac(&[0, 1, 0, 1]), None);
    }

    #[test]
    fn fqdn_labels() {
        assert_eq!(
            fqdn_name(b"\x01\x06iphone\x03lab\x00").as_deref(),
            Some("iphone.lab")
        );
        assert_eq!(fqdn_name(b"\x00\x06iph").as_deref(), None);
        assert_eq!(fqdn_name(b""), None);
    }

    /// Regression (fuzz, `fuzz/regressions/dhcp6/`): an option whose length
    /// does not fit its code made dhcproto subtract past zero, or read on
    /// from the wrong offset into a Vendor Class of length 0. The options
    /// before it are kept, at the top level and inside an IA_NA; a relayed
    /// message holding one is cut whole.
    #[test]
    fn options_whose_length_does_not_fit_are_cut() {
        let client_id = [0, 1, 0, 2, 0xab, 0xcd];
        let cases = [
            (11u16, 1u8),
            (13, 1),
            (16, 1),
            (17, 3),
            (7, 0),
            (8, 1),
            (12, 4),
            (14, 1),
            (19, 0),
            (20, 2),
        ];
        for (code, len) in cases {
            let mut bad = code.to_be_bytes().to_vec();
            bad.extend_from_slice(&[0, len]);
            bad.extend(std::iter::repeat_n(0xff, len as usize));
            bad.extend_from_slice(&[0, 16, 0, 0, 0, 16, 0, 0]);
            let top = [&[7, 1, 2, 3][..], &client_id, &bad].concat();
            let d = parse(&top).expect("the message up to the bad option");
            assert_eq!(d.client_duid.as_deref(), Some("abcd"), "code {code}");
            let ia = [&[0, 3, 0, (12 + bad.len()) as u8][..], &[0; 12], &bad].concat();
            let nested = [&[7, 1, 2, 3][..], &client_id, &ia].concat();
            assert_eq!(
                parse(&nested).expect("a REPLY").client_duid.as_deref(),
                Some("abcd")
            );
            let relay = [&[12, 0][..], &[0; 32], &[0, 9, 0, top.len() as u8], &top].concat();
            assert!(
                parse(&relay).is_none(),
                "code {code}: the relayed message is cut"
            );
        }
        let mut deep = [&[1, 1, 2, 3][..], &client_id].concat();
        for _ in 0..40 {
            deep = [
                &[12, 0][..],
                &[0; 32],
                &(9u16).to_be_bytes(),
                &(deep.len() as u16).to_be_bytes(),
                &deep,
            ]
            .concat();
        }
        assert!(
            parse(&deep).is_none(),
            "relays nested past the cap are not opened"
        );
    }

    /// Regression (fuzz, `fuzz/regressions/dhcp6/`): the relayed message is
    /// decoded as a relay, encoded again and read as a message, whose
    /// options start 30 bytes earlier; they are checked again there (its
    /// link-address held a Vendor Class of length 0).
    #[test]
    fn relayed_message_is_checked_where_it_is_read() {
        let inner = [&[1, 0][..], &[0, 0, 0, 16, 0, 0], &[0; 10], &[0; 16]].concat();
        let relay = [
            &[12, 0][..],
            &[0; 32],
            &[0, 9, 0, inner.len() as u8],
            &inner,
        ]
        .concat();
        let d = parse(&relay).expect("the relayed SOLICIT, its options cut");
        assert!(d.relayed);
        assert_eq!(d.message_type, Some("SOLICIT"));
    }

    #[test]
    fn foreign_payloads_are_not_dhcpv6() {
        assert!(parse(&[]).is_none());
        assert!(parse(&[0; 40]).is_none());
        assert!(parse(&[200, 1, 2, 3]).is_none());
        let _ = parse(&[12, 0, 1, 2, 3]);
        let _ = parse(&[1, 0, 0, 1, 0, 3, 0, 40, 1, 2]);
    }
}
