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
pub mod tunnel;

use crate::app::evidence;
use crate::capture::{FrameRef, linktype};
use crate::flow::key::{Addr, FlowKey, PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP};
use crate::time::Timestamp;
use etherparse::{
    Ipv4HeaderSlice, Ipv6ExtensionsSlice, Ipv6HeaderSlice, TcpHeaderSlice, UdpHeaderSlice,
};
use std::net::IpAddr;

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
    /// The tunnels the packet came through (empty for most).
    pub encap: tunnel::Encap,
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
    TunnelDepth,
    TunnelMalformed,
    TunnelUnsupported,
    /// Not a skip: a fragment handed on for reassembly later
    /// ([`Decoder::defer_fragments`]); never counted, not in [`Skip::ALL`].
    Deferred,
}

impl Skip {
    pub const COUNT: usize = 14;
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
        Skip::TunnelDepth,
        Skip::TunnelMalformed,
        Skip::TunnelUnsupported,
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
            Skip::TunnelDepth => "tunnel_depth_exceeded",
            Skip::TunnelMalformed => "tunnel_malformed",
            Skip::TunnelUnsupported => "tunnel_unsupported",
            Skip::Deferred => "deferred",
        }
    }
}

/// Per-reason counters of frames that did not become packets.
#[derive(Clone, Debug, Default)]
pub struct DecodeStats {
    pub skipped: [u64; Skip::COUNT],
    pub fragments_reassembled: u64,
    /// Encapsulation layers decoded, by `tunnel::Kind`.
    pub tunnels: [u64; tunnel::Kind::COUNT],
}

impl DecodeStats {
    pub fn count(&mut self, s: Skip) {
        if let Some(c) = self.skipped.get_mut(s as usize) {
            *c += 1;
        }
    }
    pub fn merge(&mut self, o: &DecodeStats) {
        for (a, b) in self.skipped.iter_mut().zip(o.skipped.iter()) {
            *a += b;
        }
        self.fragments_reassembled += o.fragments_reassembled;
        for (a, b) in self.tunnels.iter_mut().zip(o.tunnels.iter()) {
            *a += b;
        }
    }
}

/// Decoder state: the fragment reassembler and counters. One per reader.
pub struct Decoder {
    pub defrag: defrag::Defrag,
    pub stats: DecodeStats,
    /// Device evidence (DHCP, ARP, NDP) from the frames decoded since the
    /// caller last drained it, in frame order.
    pub evidence: Vec<crate::app::evidence::Evidence>,
    /// Hand IP fragments out (`deferred`) instead of reassembling them:
    /// replay's decoders work on chunks in parallel, so the one ordered
    /// reassembly happens after them, in the flow workers
    /// ([`Decoder::reassemble`]).
    pub defer_fragments: bool,
    /// Fragments met since the caller last drained it, in frame order.
    pub deferred: Vec<Deferred>,
}

/// An IP fragment whose reassembly was left to a later stage: the packet
/// as far as it was read (addresses, protocol, tunnels, time), the
/// fragment header, and where its bytes lie in the chunk.
#[derive(Clone, Copy, Debug)]
pub struct Deferred {
    pub pkt: Packet,
    pub frag: defrag::Fragment,
    pub bytes: PayloadRef,
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
const ETH_VLAN: u16 = 0x8100;
const ETH_QINQ: u16 = 0x88a8;
const ETH_QINQ_OLD: u16 = 0x9100;

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
            let rest = frame.get(4..).ok_or(t)?;
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
            evidence: Vec::new(),
            defer_fragments: false,
            deferred: Vec::new(),
        }
    }

    /// Reassembles a fragment a decoder deferred, exactly as `decode` does
    /// inline: `Ok` with the completed packet (its payload in `extra`).
    pub fn reassemble(&mut self, d: &Deferred, base: &[u8], extra: &mut Vec<u8>) -> Option<Packet> {
        let mut pkt = d.pkt;
        let start = d.bytes.offset as usize;
        let bytes = base
            .get(start..start.saturating_add(d.bytes.len as usize))
            .unwrap_or(&[]);
        match self.defragment(&mut pkt, d.frag, bytes, extra) {
            Ok(p) => Some(p),
            Err(s) => {
                self.stats.count(s);
                None
            }
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
            Err(Skip::Deferred) => None,
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
        let mut pkt = Packet {
            ts: frame.ts,
            wire_len: frame.wire_len,
            src_mac: l.src_mac,
            dst_mac: l.dst_mac,
            ..Packet::default()
        };
        let (mut et, mut rest) = (l.ether_type, l.rest);
        let mut vlans = 0;
        // Each round reads one network layer; a tunnel found in it sends
        // the loop round again on the inner packet (at most
        // `tunnel::MAX_DEPTH` times, counted by `Encap::push`).
        loop {
            // 802.1Q / 802.1ad / QinQ tags: keep the first two ids of the
            // frame, skip up to four per layer.
            let mut tags = 0;
            while matches!(et, ETH_VLAN | ETH_QINQ | ETH_QINQ_OLD) {
                if tags == 4 || rest.len() < 4 {
                    return Err(Skip::TruncatedLink);
                }
                if vlans < 2 {
                    pkt.key.vlan[vlans] = u16::from_be_bytes([rest[0], rest[1]]) & 0x0fff;
                }
                vlans += 1;
                et = u16::from_be_bytes([rest[2], rest[3]]);
                rest = &rest[4..];
                tags += 1;
            }
            // Network layer: the payload (cut to the IP length, which drops
            // Ethernet padding) and how long it was on the wire.
            let (proto, ip_payload, payload_wire, frag) = match et {
                ETH_IPV4 => {
                    let h = Ipv4HeaderSlice::from_slice(rest).map_err(|_| Skip::IpMalformed)?;
                    let hl = h.slice().len();
                    let total = match h.total_len() as usize {
                        0 => rest.len(), // segmentation offload captures write 0
                        t if t < hl => return Err(Skip::IpMalformed),
                        t => t,
                    };
                    pkt.key.src = Addr::v4(h.source());
                    pkt.key.dst = Addr::v4(h.destination());
                    pkt.ip_len = total as u32;
                    let frag = h.is_fragmenting_payload().then(|| defrag::Fragment {
                        id: h.identification() as u32,
                        offset: h.fragments_offset().byte_offset() as usize,
                        more: h.more_fragments(),
                    });
                    (
                        h.protocol().0,
                        &rest[hl..total.min(rest.len())],
                        total - hl,
                        frag,
                    )
                }
                ETH_IPV6 => {
                    let h = Ipv6HeaderSlice::from_slice(rest).map_err(|_| Skip::IpMalformed)?;
                    let declared = h.payload_length() as usize;
                    let plen = if declared == 0 {
                        rest.len() - 40
                    } else {
                        declared
                    };
                    pkt.key.src = Addr::v6(h.source());
                    pkt.key.dst = Addr::v6(h.destination());
                    pkt.ip_len = 40 + plen as u32;
                    let body = &rest[40..(40 + plen).min(rest.len())];
                    let next = h.next_header();
                    if next.is_ipv6_ext_header_value() {
                        let (exts, proto, after) = Ipv6ExtensionsSlice::from_slice(next, body)
                            .map_err(|_| Skip::IpMalformed)?;
                        let ext_len = exts.slice().len();
                        let frag = if exts.is_fragmenting_payload() {
                            v6_fragment(&exts)
                        } else {
                            None
                        };
                        (proto.0, after, plen.saturating_sub(ext_len), frag)
                    } else {
                        (next.0, body, plen, None)
                    }
                }
                ETH_ARP => {
                    evidence::from_arp(rest, frame.ts, &mut self.evidence);
                    return Err(Skip::Arp);
                }
                _ if tunnel::is_tunnel_ethertype(et) => {
                    let d = tunnel::by_ethertype(et, rest).map_err(tunnel_skip)?;
                    (et, rest) = self.enter(&mut pkt, d, None)?;
                    continue;
                }
                _ => return Err(Skip::NotIp),
            };
            pkt.key.proto = proto;
            let base_ptr = base.as_ptr() as usize;
            if let Some(f) = frag {
                if self.defer_fragments {
                    self.deferred.push(Deferred {
                        pkt,
                        frag: f,
                        bytes: PayloadRef {
                            offset: (ip_payload.as_ptr() as usize).wrapping_sub(base_ptr) as u32,
                            len: ip_payload.len() as u32,
                            in_extra: false,
                        },
                    });
                    return Err(Skip::Deferred);
                }
                return self.defragment(&mut pkt, f, ip_payload, extra);
            }
            match proto {
                PROTO_TCP => {
                    let hl = read_tcp_header(&mut pkt, ip_payload)?;
                    let payload = &ip_payload[hl..];
                    pkt.payload = PayloadRef {
                        offset: (payload.as_ptr() as usize).wrapping_sub(base_ptr) as u32,
                        len: payload.len() as u32,
                        in_extra: false,
                    };
                    pkt.payload_wire_len =
                        payload_wire.saturating_sub(hl).max(payload.len()) as u32;
                    return Ok(pkt);
                }
                PROTO_UDP => {
                    let udp =
                        UdpHeaderSlice::from_slice(ip_payload).map_err(|_| Skip::UdpMalformed)?;
                    pkt.key.sport = udp.source_port();
                    pkt.key.dport = udp.destination_port();
                    let end = (udp.length() as usize).max(8).min(ip_payload.len());
                    let payload = ip_payload.get(8..end).unwrap_or(&[]);
                    if tunnel::is_tunnel_port(pkt.key.sport, pkt.key.dport)
                        && let Some(d) = tunnel::udp(pkt.key.sport, pkt.key.dport, payload)
                    {
                        let outer = Some((pkt.key.src, pkt.key.dst));
                        (et, rest) = self.enter(&mut pkt, d, outer)?;
                        continue;
                    }
                    pkt.payload = PayloadRef {
                        offset: (payload.as_ptr() as usize).wrapping_sub(base_ptr) as u32,
                        len: payload.len() as u32,
                        in_extra: false,
                    };
                    pkt.payload_wire_len = payload_wire.saturating_sub(8).max(payload.len()) as u32;
                    self.device_evidence(&pkt, payload);
                    return Ok(pkt);
                }
                PROTO_ICMPV6 => {
                    if let IpAddr::V6(src) = pkt.key.src.to_ip() {
                        evidence::from_ndp(ip_payload, src, pkt.ts, &mut self.evidence);
                    }
                    return Err(Skip::Icmp);
                }
                PROTO_ICMP => return Err(Skip::Icmp),
                _ => match tunnel::ip_proto(proto, et == ETH_IPV6, ip_payload) {
                    Some(d) => {
                        let outer = Some((pkt.key.src, pkt.key.dst));
                        (et, rest) = self.enter(&mut pkt, d.map_err(tunnel_skip)?, outer)?;
                        continue;
                    }
                    None => return Err(Skip::OtherTransport),
                },
            }
        }
    }

    /// Steps into a tunnel: records the layer (and the IP endpoints that
    /// carried it) and returns the inner packet's EtherType and bytes. An
    /// inner Ethernet frame gives its MACs to the packet; a layer-3 tunnel
    /// over IP leaves none (the outer MACs are the tunnel ends', not the
    /// hosts').
    fn enter<'a>(
        &mut self,
        pkt: &mut Packet,
        d: tunnel::Decap<'a>,
        outer: Option<(Addr, Addr)>,
    ) -> Result<(u16, &'a [u8]), Skip> {
        if !pkt.encap.push(d.layer, outer) {
            return Err(Skip::TunnelDepth);
        }
        self.stats.tunnels[d.layer.kind as usize] += 1;
        pkt.key.tunnel = pkt.encap.tunnel_id;
        match d.inner {
            tunnel::Inner::EtherType(et) => {
                if outer.is_some() {
                    (pkt.src_mac, pkt.dst_mac) = (None, None);
                }
                Ok((et, d.rest))
            }
            tunnel::Inner::Ethernet => {
                let et = be16(d.rest, 12).ok_or(Skip::TruncatedLink)?;
                pkt.dst_mac = mac(d.rest);
                pkt.src_mac = d.rest.get(6..).and_then(mac);
                Ok((et, d.rest.get(14..).ok_or(Skip::TruncatedLink)?))
            }
        }
    }

    /// DHCPv4 and DHCPv6 on their well-known ports (both ends, so relayed
    /// and server-to-server traffic is seen too).
    fn device_evidence(&mut self, pkt: &Packet, payload: &[u8]) {
        let (sport, dport) = (pkt.key.sport, pkt.key.dport);
        if crate::app::dhcp::on_ports(sport, dport) {
            if let Some(d) = crate::app::dhcp::parse(payload) {
                evidence::from_dhcp4(&d, pkt.ts, &mut self.evidence);
            }
        } else if crate::app::dhcp6::on_ports(sport, dport)
            && let Some(d) = crate::app::dhcp6::parse(payload)
        {
            evidence::from_dhcp6(&d, pkt.ts, pkt.dst_mac, &mut self.evidence);
        }
    }

    fn defragment(
        &mut self,
        pkt: &mut Packet,
        frag: defrag::Fragment,
        bytes: &[u8],
        extra: &mut Vec<u8>,
    ) -> Result<Packet, Skip> {
        match self.defrag.add(pkt.key, frag, bytes, pkt.ts, pkt.wire_len) {
            defrag::AddResult::Held => Err(Skip::FragmentHeld),
            defrag::AddResult::Dropped => Err(Skip::FragmentDropped),
            defrag::AddResult::Complete { data, wire_len } => {
                self.stats.fragments_reassembled += 1;
                pkt.wire_len = wire_len;
                let at = extra.len();
                extra.extend_from_slice(&data);
                let seg = &extra[at..];
                match pkt.key.proto {
                    PROTO_TCP => {
                        let hl = read_tcp_header(pkt, seg)?;
                        pkt.payload = PayloadRef {
                            offset: (at + hl) as u32,
                            len: (seg.len() - hl) as u32,
                            in_extra: true,
                        };
                    }
                    PROTO_UDP => {
                        let udp =
                            UdpHeaderSlice::from_slice(seg).map_err(|_| Skip::UdpMalformed)?;
                        pkt.key.sport = udp.source_port();
                        pkt.key.dport = udp.destination_port();
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

fn tunnel_skip(f: tunnel::Fail) -> Skip {
    match f {
        tunnel::Fail::Malformed => Skip::TunnelMalformed,
        tunnel::Fail::Unsupported => Skip::TunnelUnsupported,
    }
}

/// Reads the TCP header at the start of `seg` into `pkt`; returns its length.
fn read_tcp_header(pkt: &mut Packet, seg: &[u8]) -> Result<usize, Skip> {
    let tcp = TcpHeaderSlice::from_slice(seg).map_err(|_| Skip::TcpMalformed)?;
    pkt.key.sport = tcp.source_port();
    pkt.key.dport = tcp.destination_port();
    pkt.tcp_flags = tcp.slice()[13] & 0x3f;
    pkt.seq = tcp.sequence_number();
    pkt.ack = tcp.acknowledgment_number();
    pkt.window = tcp.window_size();
    Ok(tcp.slice().len())
}

fn v6_fragment(exts: &Ipv6ExtensionsSlice<'_>) -> Option<defrag::Fragment> {
    for ext in exts.clone() {
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
