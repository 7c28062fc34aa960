//! Decode: a frame's bytes → a [`Packet`] (flow key, TCP fields, where the
//! payload is), or the reason it was not usable.
//!
//! The link layer is read here (Ethernet, Linux cooked v1/v2, raw IP, BSD
//! loopback); 802.1Q/QinQ, IPv4/IPv6 with extension headers, TCP and UDP are
//! sliced by `etherparse` in its lax mode, so a frame cut by the snap length
//! still gives its headers. IPv4 and IPv6 fragments go to the bounded
//! reassembler in [`defrag`]. Nothing here allocates per packet except a
//! completed fragment train, and nothing panics on any byte sequence (the
//! fuzz target `decode` holds us to that).

pub mod defrag;

use crate::capture::{FrameRef, linktype};
use crate::flow::key::{Addr, FlowKey, PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP};
use crate::time::Timestamp;
use etherparse::{EtherType, LaxNetSlice, LaxSlicedPacket, TransportSlice};

/// TCP flag bits as on the wire.
pub mod tcp_flags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
    pub const URG: u8 = 0x20;
}

/// Where a packet's transport payload lies: a range of the chunk the frame
/// came in, or of the batch's side buffer for reassembled fragments.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PayloadRef {
    pub offset: u32,
    pub len: u32,
    pub in_extra: bool,
}

/// Everything the flow workers need from one packet (no borrowed bytes, so it
/// can cross a channel; the payload is found again through [`PayloadRef`]).
#[derive(Clone, Copy, Debug, Default)]
pub struct Packet {
    pub ts: Timestamp,
    pub key: FlowKey,
    /// Frame length on the wire (what tshark counts).
    pub wire_len: u32,
    /// IP datagram length (header + payload), Zeek's `ip_bytes`.
    pub ip_len: u32,
    pub tcp_flags: u8,
    pub seq: u32,
    pub ack: u32,
    pub window: u16,
    pub payload: PayloadRef,
    /// Payload bytes on the wire; more than `payload.len` when the snap length cut the frame.
    pub payload_wire_len: u32,
    pub src_mac: Option<[u8; 6]>,
    pub dst_mac: Option<[u8; 6]>,
}

/// Why a frame did not become a [`Packet`]. Each reason has a counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
pub enum Skip {
    UnknownLinkType = 0,
    TruncatedLink,
    NotIp,
    Arp,
    IpMalformed,
    FragmentHeld,
    FragmentDropped,
    Icmp,
    OtherTransport,
    TcpMalformed,
    UdpMalformed,
}

impl Skip {
    pub const COUNT: usize = 11;
    pub const ALL: [Skip; Skip::COUNT] = [
        Skip::UnknownLinkType,
        Skip::TruncatedLink,
        Skip::NotIp,
        Skip::Arp,
        Skip::IpMalformed,
        Skip::FragmentHeld,
        Skip::FragmentDropped,
        Skip::Icmp,
        Skip::OtherTransport,
        Skip::TcpMalformed,
        Skip::UdpMalformed,
    ];
    pub fn name(self) -> &'static str {
        match self {
            Skip::UnknownLinkType => "unknown_link_type",
            Skip::TruncatedLink => "truncated_link_header",
            Skip::NotIp => "not_ip",
            Skip::Arp => "arp",
            Skip::IpMalformed => "ip_malformed",
            Skip::FragmentHeld => "ip_fragment_held",
            Skip::FragmentDropped => "ip_fragment_dropped",
            Skip::Icmp => "icmp",
            Skip::OtherTransport => "other_transport",
            Skip::TcpMalformed => "tcp_malformed",
            Skip::UdpMalformed => "udp_malformed",
        }
    }
}

/// Per-reason counters of frames that did not become packets.
#[derive(Clone, Debug, Default)]
pub struct DecodeStats {
    pub skipped: [u64; Skip::COUNT],
    pub fragments_reassembled: u64,
}

impl DecodeStats {
    pub fn count(&mut self, s: Skip) {
        self.skipped[s as usize] += 1;
    }
    pub fn merge(&mut self, o: &DecodeStats) {
        for (a, b) in self.skipped.iter_mut().zip(o.skipped.iter()) {
            *a += b;
        }
        self.fragments_reassembled += o.fragments_reassembled;
    }
}

/// Decoder state: the fragment reassembler and counters. One per reader.
pub struct Decoder {
    pub defrag: defrag::Defrag,
    pub stats: DecodeStats,
}

/// Link layer result: ethertype, the bytes after the link header, MACs.
struct Link<'a> {
    ether_type: u16,
    rest: &'a [u8],
    src_mac: Option<[u8; 6]>,
    dst_mac: Option<[u8; 6]>,
}

fn mac(b: &[u8]) -> Option<[u8; 6]> {
    b.get(..6).map(|m| [m[0], m[1], m[2], m[3], m[4], m[5]])
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

const ETH_IPV4: u16 = 0x0800;
const ETH_IPV6: u16 = 0x86dd;
const ETH_ARP: u16 = 0x0806;

fn ip_version_ethertype(b: &[u8]) -> Option<u16> {
    match b.first()? >> 4 {
        4 => Some(ETH_IPV4),
        6 => Some(ETH_IPV6),
        _ => None,
    }
}

fn link(frame: &[u8], lt: u16) -> Result<Link<'_>, Skip> {
    let t = Skip::TruncatedLink;
    match lt {
        linktype::ETHERNET => Ok(Link {
            ether_type: be16(frame, 12).ok_or(t)?,
            rest: frame.get(14..).ok_or(t)?,
            dst_mac: mac(frame),
            src_mac: mac(frame.get(6..).ok_or(t)?),
        }),
        linktype::LINUX_SLL => {
            // packet type(2) ARPHRD(2) addr len(2) addr(8) protocol(2)
            let halen = be16(frame, 4).ok_or(t)?;
            Ok(Link {
                ether_type: be16(frame, 14).ok_or(t)?,
                rest: frame.get(16..).ok_or(t)?,
                src_mac: if halen == 6 {
                    mac(frame.get(6..).ok_or(t)?)
                } else {
                    None
                },
                dst_mac: None,
            })
        }
        linktype::LINUX_SLL2 => {
            // protocol(2) reserved(2) ifindex(4) ARPHRD(2) pkttype(1) halen(1) addr(8)
            let halen = *frame.get(11).ok_or(t)?;
            Ok(Link {
                ether_type: be16(frame, 0).ok_or(t)?,
                rest: frame.get(20..).ok_or(t)?,
                src_mac: if halen == 6 {
                    mac(frame.get(12..).ok_or(t)?)
                } else {
                    None
                },
                dst_mac: None,
            })
        }
        linktype::RAW | linktype::RAW_BSD | linktype::RAW_OPENBSD => Ok(Link {
            ether_type: ip_version_ethertype(frame).ok_or(Skip::NotIp)?,
            rest: frame,
            src_mac: None,
            dst_mac: None,
        }),
        linktype::IPV4 => Ok(Link {
            ether_type: ETH_IPV4,
            rest: frame,
            src_mac: None,
            dst_mac: None,
        }),
        linktype::IPV6 => Ok(Link {
            ether_type: ETH_IPV6,
            rest: frame,
            src_mac: None,
            dst_mac: None,
        }),
        linktype::NULL | linktype::LOOP => {
            // Address family in the capturing host's byte order (NULL) or
            // network order (LOOP): AF_INET is 2 everywhere, AF_INET6 is 10,
            // 24, 28 or 30 depending on the OS. The IP version nibble decides.
            let hdr = frame.get(..4).ok_or(t)?;
            let rest = &frame[4..];
            let _family = hdr;
            Ok(Link {
                ether_type: ip_version_ethertype(rest).ok_or(Skip::NotIp)?,
                rest,
                src_mac: None,
                dst_mac: None,
            })
        }
        _ => Err(Skip::UnknownLinkType),
    }
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new(defrag::DefragLimits::default())
    }
}

impl Decoder {
    pub fn new(limits: defrag::DefragLimits) -> Self {
        Decoder {
            defrag: defrag::Defrag::new(limits),
            stats: DecodeStats::default(),
        }
    }

    /// Decodes one frame. `base` is the chunk the frame lies in (payload
    /// offsets are relative to it); completed fragment trains are appended to
    /// `extra` and referenced from there.
    pub fn decode(&mut self, base: &[u8], frame: &FrameRef, extra: &mut Vec<u8>) -> Option<Packet> {
        let start = frame.offset as usize;
        let end = start.saturating_add(frame.caplen as usize).min(base.len());
        let bytes = base.get(start..end).unwrap_or(&[]);
        match self.decode_inner(base, bytes, frame, extra) {
            Ok(p) => Some(p),
            Err(s) => {
                self.stats.count(s);
                None
            }
        }
    }

    fn decode_inner(
        &mut self,
        base: &[u8],
        bytes: &[u8],
        frame: &FrameRef,
        extra: &mut Vec<u8>,
    ) -> Result<Packet, Skip> {
        let l = link(bytes, frame.linktype)?;
        let sliced = LaxSlicedPacket::from_ether_type(EtherType(l.ether_type), l.rest);
        let mut vlan = [0u16; 2];
        for (i, id) in sliced.vlan_ids().iter().take(2).enumerate() {
            vlan[i] = id.value();
        }
        let mut pkt = Packet {
            ts: frame.ts,
            wire_len: frame.wire_len,
            src_mac: l.src_mac,
            dst_mac: l.dst_mac,
            ..Packet::default()
        };
        let (src, dst, ip_payload) = match &sliced.net {
            Some(LaxNetSlice::Ipv4(v4)) => {
                let h = v4.header();
                pkt.ip_len = h.total_len() as u32;
                (
                    Addr::v4(h.source()),
                    Addr::v4(h.destination()),
                    v4.payload(),
                )
            }
            Some(LaxNetSlice::Ipv6(v6)) => {
                let h = v6.header();
                pkt.ip_len = 40 + h.payload_length() as u32;
                (
                    Addr::v6(h.source()),
                    Addr::v6(h.destination()),
                    v6.payload(),
                )
            }
            Some(LaxNetSlice::Arp(_)) => return Err(Skip::Arp),
            None => {
                return Err(if matches!(l.ether_type, ETH_IPV4 | ETH_IPV6) {
                    Skip::IpMalformed
                } else if l.ether_type == ETH_ARP {
                    Skip::Arp
                } else {
                    Skip::NotIp
                });
            }
        };
        pkt.key = FlowKey {
            src,
            dst,
            vlan,
            proto: ip_payload.ip_number.0,
            ..FlowKey::default()
        };
        if ip_payload.fragmented {
            return self.defragment(&mut pkt, ip_payload, sliced.net.as_ref(), extra);
        }
        let base_ptr = base.as_ptr() as usize;
        match &sliced.transport {
            Some(TransportSlice::Tcp(tcp)) => {
                pkt.key.sport = tcp.source_port();
                pkt.key.dport = tcp.destination_port();
                pkt.tcp_flags = (tcp.slice()[13]) & 0x3f;
                pkt.seq = tcp.sequence_number();
                pkt.ack = tcp.acknowledgment_number();
                pkt.window = tcp.window_size();
                let payload = tcp.payload();
                pkt.payload = PayloadRef {
                    offset: (payload.as_ptr() as usize).wrapping_sub(base_ptr) as u32,
                    len: payload.len() as u32,
                    in_extra: false,
                };
                // The IP header's length says how much payload was sent,
                // even when the snap length cut the frame.
                let hdr_total =
                    (payload.as_ptr() as usize).wrapping_sub(ip_payload.payload.as_ptr() as usize);
                let ip_payload_wire = match &sliced.net {
                    Some(LaxNetSlice::Ipv4(v4)) => (v4.header().total_len() as usize)
                        .saturating_sub(v4.header().slice().len() + ext_len_v4(v4)),
                    Some(LaxNetSlice::Ipv6(v6)) => (v6.header().payload_length() as usize)
                        .saturating_sub(v6.extensions().slice().len()),
                    _ => payload.len(),
                };
                pkt.payload_wire_len =
                    ip_payload_wire.saturating_sub(hdr_total).max(payload.len()) as u32;
                Ok(pkt)
            }
            Some(TransportSlice::Udp(udp)) => {
                pkt.key.sport = udp.source_port();
                pkt.key.dport = udp.destination_port();
                let payload = udp.payload();
                pkt.payload = PayloadRef {
                    offset: (payload.as_ptr() as usize).wrapping_sub(base_ptr) as u32,
                    len: payload.len() as u32,
                    in_extra: false,
                };
                pkt.payload_wire_len = (udp.length() as u32)
                    .saturating_sub(8)
                    .max(payload.len() as u32);
                Ok(pkt)
            }
            Some(TransportSlice::Icmpv4(_)) | Some(TransportSlice::Icmpv6(_)) => Err(Skip::Icmp),
            Some(_) => Err(Skip::OtherTransport),
            None => Err(match ip_payload.ip_number.0 {
                PROTO_TCP => Skip::TcpMalformed,
                PROTO_UDP => Skip::UdpMalformed,
                PROTO_ICMP | PROTO_ICMPV6 => Skip::Icmp,
                _ => Skip::OtherTransport,
            }),
        }
    }

    fn defragment(
        &mut self,
        pkt: &mut Packet,
        ip_payload: &etherparse::LaxIpPayloadSlice<'_>,
        net: Option<&LaxNetSlice<'_>>,
        extra: &mut Vec<u8>,
    ) -> Result<Packet, Skip> {
        let frag = match net {
            Some(LaxNetSlice::Ipv4(v4)) => {
                let h = v4.header();
                defrag::Fragment {
                    id: h.identification() as u32,
                    offset: h.fragments_offset().byte_offset() as usize,
                    more: h.more_fragments(),
                }
            }
            Some(LaxNetSlice::Ipv6(v6)) => match v6_fragment(v6) {
                Some(f) => f,
                None => return Err(Skip::IpMalformed),
            },
            _ => return Err(Skip::IpMalformed),
        };
        let done = self
            .defrag
            .add(pkt.key, frag, ip_payload.payload, pkt.ts, pkt.wire_len);
        match done {
            defrag::AddResult::Held => Err(Skip::FragmentHeld),
            defrag::AddResult::Dropped => Err(Skip::FragmentDropped),
            defrag::AddResult::Complete { data, wire_len } => {
                self.stats.fragments_reassembled += 1;
                pkt.wire_len = wire_len;
                pkt.ip_len = pkt.ip_len.max(data.len() as u32);
                let at = extra.len();
                extra.extend_from_slice(&data);
                let seg = &extra[at..];
                match pkt.key.proto {
                    PROTO_TCP => {
                        let tcp = etherparse::TcpSlice::from_slice(seg)
                            .map_err(|_| Skip::TcpMalformed)?;
                        pkt.key.sport = tcp.source_port();
                        pkt.key.dport = tcp.destination_port();
                        pkt.tcp_flags = tcp.slice()[13] & 0x3f;
                        pkt.seq = tcp.sequence_number();
                        pkt.ack = tcp.acknowledgment_number();
                        pkt.window = tcp.window_size();
                        let hl = tcp.header_len();
                        pkt.payload = PayloadRef {
                            offset: (at + hl) as u32,
                            len: (seg.len() - hl) as u32,
                            in_extra: true,
                        };
                    }
                    PROTO_UDP => {
                        if seg.len() < 8 {
                            return Err(Skip::UdpMalformed);
                        }
                        pkt.key.sport = u16::from_be_bytes([seg[0], seg[1]]);
                        pkt.key.dport = u16::from_be_bytes([seg[2], seg[3]]);
                        pkt.payload = PayloadRef {
                            offset: (at + 8) as u32,
                            len: (seg.len() - 8) as u32,
                            in_extra: true,
                        };
                    }
                    PROTO_ICMP | PROTO_ICMPV6 => return Err(Skip::Icmp),
                    _ => return Err(Skip::OtherTransport),
                }
                pkt.payload_wire_len = pkt.payload.len;
                Ok(*pkt)
            }
        }
    }
}

fn ext_len_v4(v4: &etherparse::LaxIpv4Slice<'_>) -> usize {
    v4.extensions().auth.map(|a| a.slice().len()).unwrap_or(0)
}

fn v6_fragment(v6: &etherparse::LaxIpv6Slice<'_>) -> Option<defrag::Fragment> {
    for ext in v6.extensions().clone().into_iter() {
        if let etherparse::Ipv6ExtensionSlice::Fragment(f) = ext {
            return Some(defrag::Fragment {
                id: f.identification(),
                offset: f.fragment_offset().byte_offset() as usize,
                more: f.more_fragments(),
            });
        }
    }
    None
}

/// Resolves a packet's payload bytes against its chunk or the batch's side buffer.
pub fn payload<'a>(p: &Packet, chunk: &'a [u8], extra: &'a [u8]) -> &'a [u8] {
    let src = if p.payload.in_extra { extra } else { chunk };
    let start = p.payload.offset as usize;
    src.get(start..start.saturating_add(p.payload.len as usize))
        .unwrap_or(&[])
}
