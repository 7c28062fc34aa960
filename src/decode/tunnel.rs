//! Tunnels: the encapsulations a SPAN or remote-SPAN port delivers, peeled
//! to the inner packet with the outer context kept.
//!
//! Each function here reads one encapsulation header and says what follows
//! it (an EtherType, or a whole inner Ethernet frame) and what identifies the
//! tunnel (GRE key, ERSPAN session, VNI, MPLS label, PPPoE session, GTP TEID,
//! Cisco SGT). The decode loop in `decode/mod.rs` calls them and goes round
//! again on what they return, at most [`MAX_DEPTH`] times per frame; a frame
//! nested deeper is counted as `tunnel_depth_exceeded` and not used.
//!
//! | layer | carried by | header | inner |
//! | --- | --- | --- | --- |
//! | `gre` | IP protocol 47 | RFC 2784/2890 (checksum, key, sequence) | IPv4, IPv6, Ethernet (0x6558), MPLS, ERSPAN |
//! | `erspan1` | GRE 0x88BE without sequence | none | Ethernet |
//! | `erspan2` | GRE 0x88BE | 8 bytes, version 1 | Ethernet |
//! | `erspan3` | GRE 0x22EB | 12 bytes (+8 platform), version 2 | Ethernet |
//! | `vxlan` | UDP to 4789 | RFC 7348, I flag set | Ethernet |
//! | `geneve` | UDP to 6081 | RFC 8926, options skipped | Ethernet, IPv4, IPv6 |
//! | `gtpu` | UDP 2152 | 3GPP TS 29.281 G-PDU, extension headers skipped | IPv4, IPv6 |
//! | `capwap` | UDP 5247 | RFC 5415 data, 802.3 payload, unfragmented | Ethernet |
//! | `mpls` | EtherType 0x8847/0x8848, GRE | RFC 3032 label stack | IPv4/IPv6 by the first nibble, else Ethernet after a control word |
//! | `pppoe` | EtherType 0x8864 | RFC 2516 session | IPv4, IPv6 (PPP 0x0021, 0x0057) |
//! | `cmd` | EtherType 0x8909 | Cisco MetaData (SGT) | next EtherType |
//! | `ipip`, `6in4`, `4in6`, `6in6` | IP protocol 4 / 41 | none | IPv4, IPv6 |
//!
//! Flows inside tunnels are keyed by a tunnel id ([`Encap::tunnel_id`]): a
//! hash of every layer's kind, its outer IP endpoints (added, so both
//! directions agree) and its id where that id is the same in both
//! directions (GRE key, ERSPAN session, VNI, PPPoE session, SGT). GTP TEIDs
//! and MPLS labels are chosen per direction by the receiving end, so they
//! would split a connection in two: they are shown, not keyed.
//!
//! UDP tunnels are recognised by port and a valid header; a datagram whose
//! header does not fit stays the outer UDP flow it is. Nothing here
//! allocates or panics: every read is checked against the slice.

use crate::flow::key::{Addr, mix64};
use crate::record::{EncapLayerRecord, EncapRecord};

/// Encapsulation layers decoded per frame; a frame nested deeper is not
/// used (`tunnel_depth_exceeded`). Four covers the deepest real stacks
/// (MPLS → GRE → ERSPAN → 802.1Q, VXLAN in a provider's MPLS).
pub const MAX_DEPTH: usize = 4;

/// Labels read in one MPLS stack before it is called malformed.
const MAX_MPLS_LABELS: usize = 8;
/// GTP-U extension headers skipped before the packet is called malformed.
const MAX_GTP_EXTENSIONS: usize = 8;

pub const ETH_MPLS_UC: u16 = 0x8847;
pub const ETH_MPLS_MC: u16 = 0x8848;
pub const ETH_PPPOE_SESSION: u16 = 0x8864;
pub const ETH_CISCO_METADATA: u16 = 0x8909;
const ETH_IPV4: u16 = 0x0800;
const ETH_IPV6: u16 = 0x86dd;
const ETH_TEB: u16 = 0x6558;
const ETH_ERSPAN_2: u16 = 0x88be;
const ETH_ERSPAN_3: u16 = 0x22eb;

pub const IPPROTO_IPIP: u8 = 4;
pub const IPPROTO_IPV6: u8 = 41;
pub const IPPROTO_GRE: u8 = 47;

pub const PORT_VXLAN: u16 = 4789;
pub const PORT_GENEVE: u16 = 6081;
pub const PORT_GTPU: u16 = 2152;
pub const PORT_CAPWAP_DATA: u16 = 5247;

/// One kind of encapsulation layer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    #[default]
    Gre = 0,
    Erspan1,
    Erspan2,
    Erspan3,
    Vxlan,
    Geneve,
    Gtpu,
    Capwap,
    Mpls,
    Pppoe,
    CiscoMetadata,
    Ipip,
    SixIn4,
    FourIn6,
    SixIn6,
}

impl Kind {
    pub const COUNT: usize = 15;
    pub const ALL: [Kind; Kind::COUNT] = [
        Kind::Gre,
        Kind::Erspan1,
        Kind::Erspan2,
        Kind::Erspan3,
        Kind::Vxlan,
        Kind::Geneve,
        Kind::Gtpu,
        Kind::Capwap,
        Kind::Mpls,
        Kind::Pppoe,
        Kind::CiscoMetadata,
        Kind::Ipip,
        Kind::SixIn4,
        Kind::FourIn6,
        Kind::SixIn6,
    ];

    /// The layer's name in the `flow` record and the `tunnels` stats.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Gre => "gre",
            Kind::Erspan1 => "erspan1",
            Kind::Erspan2 => "erspan2",
            Kind::Erspan3 => "erspan3",
            Kind::Vxlan => "vxlan",
            Kind::Geneve => "geneve",
            Kind::Gtpu => "gtpu",
            Kind::Capwap => "capwap",
            Kind::Mpls => "mpls",
            Kind::Pppoe => "pppoe",
            Kind::CiscoMetadata => "cmd",
            Kind::Ipip => "ipip",
            Kind::SixIn4 => "6in4",
            Kind::FourIn6 => "4in6",
            Kind::SixIn6 => "6in6",
        }
    }

    /// Whether the layer's id is the same in both directions, so that it
    /// may key the flow.
    fn id_is_symmetric(self) -> bool {
        !matches!(self, Kind::Gtpu | Kind::Mpls)
    }
}

/// One decoded layer: its kind and its id (0 with `has_id` false when the
/// header carries none, as GRE without a key).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Layer {
    pub kind: Kind,
    pub has_id: bool,
    pub id: u32,
}

impl Layer {
    fn new(kind: Kind) -> Self {
        Layer {
            kind,
            has_id: false,
            id: 0,
        }
    }
    fn with_id(kind: Kind, id: u32) -> Self {
        Layer {
            kind,
            has_id: true,
            id,
        }
    }
}

/// The encapsulation a packet came through, outermost first. Empty
/// (`depth` 0) for a packet that came through none; it is `Copy` and
/// small, so untunnelled packets carry it at no cost beyond its bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Encap {
    pub layers: [Layer; MAX_DEPTH],
    pub depth: u8,
    /// Source and destination of the outermost IP header that carried a
    /// tunnel (absent when every layer rode below IP: MPLS, PPPoE).
    pub outer: Option<(Addr, Addr)>,
    /// The flow key's tunnel id (see the module docs); 0 with no tunnel.
    pub tunnel_id: u64,
}

impl Encap {
    pub fn is_empty(&self) -> bool {
        self.depth == 0
    }

    pub fn layers(&self) -> &[Layer] {
        &self.layers[..(self.depth as usize).min(MAX_DEPTH)]
    }

    /// Adds a layer carried by the IP header `outer` (if any). `false` when
    /// the frame is already [`MAX_DEPTH`] layers deep.
    pub fn push(&mut self, layer: Layer, outer: Option<(Addr, Addr)>) -> bool {
        let d = self.depth as usize;
        if d >= MAX_DEPTH {
            return false;
        }
        self.layers[d] = layer;
        self.depth += 1;
        let mut h = (layer.kind as u64 + 1) << 40;
        if layer.has_id && layer.kind.id_is_symmetric() {
            h ^= layer.id as u64 | 1 << 32;
        }
        if let Some((s, t)) = outer {
            if self.outer.is_none() {
                self.outer = Some((s, t));
            }
            h ^= addr_hash(&s).wrapping_add(addr_hash(&t));
        }
        // Never 0 once a layer is in, so a tunnelled flow never shares a
        // key with an untunnelled one.
        self.tunnel_id = mix64(self.tunnel_id.rotate_left(17) ^ h).max(1);
        true
    }

    /// The same tunnel seen from the other end (outer endpoints swapped).
    pub fn reversed(&self) -> Encap {
        Encap {
            outer: self.outer.map(|(s, d)| (d, s)),
            ..*self
        }
    }

    /// The `encap` object of the `flow` record.
    pub fn record(&self) -> EncapRecord {
        EncapRecord {
            outer_src_ip: self.outer.map(|(s, _)| s.to_ip()),
            outer_dst_ip: self.outer.map(|(_, d)| d.to_ip()),
            layers: self.layers().iter().map(layer_record).collect(),
        }
    }
}

fn layer_record(l: &Layer) -> EncapLayerRecord {
    let id = l.has_id.then_some(l.id);
    let mut r = EncapLayerRecord {
        kind: l.kind.name(),
        ..EncapLayerRecord::default()
    };
    match l.kind {
        Kind::Gre => r.key = id,
        Kind::Erspan1 | Kind::Erspan2 | Kind::Erspan3 | Kind::Pppoe => r.session_id = id,
        Kind::Vxlan | Kind::Geneve => r.vni = id,
        Kind::Gtpu => r.teid = id,
        Kind::Mpls => r.label = id,
        Kind::CiscoMetadata => r.sgt = id,
        Kind::Capwap | Kind::Ipip | Kind::SixIn4 | Kind::FourIn6 | Kind::SixIn6 => {}
    }
    r
}

fn addr_hash(a: &Addr) -> u64 {
    let lo = u64::from_le_bytes(a.bytes[..8].try_into().unwrap_or([0; 8]));
    let hi = u64::from_le_bytes(a.bytes[8..].try_into().unwrap_or([0; 8]));
    mix64(lo ^ hi.rotate_left(29) ^ a.v6 as u64)
}

/// What follows a decoded encapsulation header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Inner {
    /// A packet of this EtherType (IPv4, IPv6, MPLS, ...) starts the rest.
    EtherType(u16),
    /// A whole Ethernet frame starts the rest.
    Ethernet,
}

/// One peeled layer: what it was, what follows, and the bytes that follow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decap<'a> {
    pub layer: Layer,
    pub inner: Inner,
    pub rest: &'a [u8],
}

/// Why a tunnel header was not peeled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fail {
    /// Too short, or a field out of its range.
    Malformed,
    /// Well formed, but a variant not decoded (PPTP's GRE, an ERSPAN
    /// frame that is not Ethernet, CAPWAP fragments, PPP control).
    Unsupported,
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn rest(b: &[u8], at: usize) -> Result<&[u8], Fail> {
    b.get(at..).ok_or(Fail::Malformed)
}

/// IPv4 or IPv6 by the version nibble.
fn ip_by_nibble(b: &[u8]) -> Option<u16> {
    match b.first()? >> 4 {
        4 => Some(ETH_IPV4),
        6 => Some(ETH_IPV6),
        _ => None,
    }
}

/// The layers carried as an IP protocol: GRE, IP-in-IP. `outer_v6` is the
/// carrying header's version (it names 6in4 and 4in6).
pub fn ip_proto(proto: u8, outer_v6: bool, b: &[u8]) -> Option<Result<Decap<'_>, Fail>> {
    let inner_v6 = match proto {
        IPPROTO_GRE => return Some(gre(b)),
        IPPROTO_IPIP => false,
        IPPROTO_IPV6 => true,
        _ => return None,
    };
    let kind = match (outer_v6, inner_v6) {
        (false, false) => Kind::Ipip,
        (false, true) => Kind::SixIn4,
        (true, false) => Kind::FourIn6,
        (true, true) => Kind::SixIn6,
    };
    let et = if inner_v6 { ETH_IPV6 } else { ETH_IPV4 };
    Some(Ok(Decap {
        layer: Layer::new(kind),
        inner: Inner::EtherType(et),
        rest: b,
    }))
}

/// GRE (RFC 2784 with RFC 2890's key and sequence number), and the ERSPAN
/// header it may carry.
pub fn gre(b: &[u8]) -> Result<Decap<'_>, Fail> {
    let flags = be16(b, 0).ok_or(Fail::Malformed)?;
    let proto = be16(b, 2).ok_or(Fail::Malformed)?;
    // Version 1 is PPTP's enhanced GRE; the routing bit is RFC 1701's
    // source routing, obsolete and never seen from SPAN.
    if flags & 0x0007 != 0 || flags & 0x4000 != 0 {
        return Err(Fail::Unsupported);
    }
    let (c, k, s) = (
        flags & 0x8000 != 0,
        flags & 0x2000 != 0,
        flags & 0x1000 != 0,
    );
    let mut at = 4;
    if c {
        at += 4;
    }
    let key = if k {
        let v = be32(b, at).ok_or(Fail::Malformed)?;
        at += 4;
        Some(v)
    } else {
        None
    };
    if s {
        at += 4;
    }
    let body = rest(b, at)?;
    let gre = Layer {
        kind: Kind::Gre,
        has_id: key.is_some(),
        id: key.unwrap_or(0),
    };
    let inner = match proto {
        // Type I: no ERSPAN header and no sequence number.
        ETH_ERSPAN_2 if !s => Inner::EtherType(ETH_ERSPAN_TYPE1),
        ETH_TEB => Inner::Ethernet,
        _ => Inner::EtherType(proto),
    };
    Ok(Decap {
        layer: gre,
        inner,
        rest: body,
    })
}

/// A private marker for ERSPAN type I (GRE 0x88BE without a sequence
/// number), which has no header of its own: never on the wire, since
/// 0x88BE itself means type II here.
pub const ETH_ERSPAN_TYPE1: u16 = 0x0001;

/// The EtherTypes that start an encapsulation (after GRE or on a link).
pub fn is_tunnel_ethertype(et: u16) -> bool {
    matches!(
        et,
        ETH_MPLS_UC
            | ETH_MPLS_MC
            | ETH_PPPOE_SESSION
            | ETH_CISCO_METADATA
            | ETH_ERSPAN_2
            | ETH_ERSPAN_3
            | ETH_ERSPAN_TYPE1
    )
}

/// The encapsulations named by an EtherType: MPLS, PPPoE session, Cisco
/// MetaData, and the ERSPAN headers GRE announces.
pub fn by_ethertype(et: u16, b: &[u8]) -> Result<Decap<'_>, Fail> {
    match et {
        ETH_MPLS_UC | ETH_MPLS_MC => mpls(b),
        ETH_PPPOE_SESSION => pppoe(b),
        ETH_CISCO_METADATA => cisco_metadata(b),
        ETH_ERSPAN_TYPE1 => Ok(Decap {
            layer: Layer::new(Kind::Erspan1),
            inner: Inner::Ethernet,
            rest: b,
        }),
        ETH_ERSPAN_2 => erspan2(b),
        ETH_ERSPAN_3 => erspan3(b),
        _ => Err(Fail::Unsupported),
    }
}

/// ERSPAN type II: version 1, VLAN, COS/encapsulation/truncated, 10-bit
/// session id, index; then the mirrored Ethernet frame.
fn erspan2(b: &[u8]) -> Result<Decap<'_>, Fail> {
    let w0 = be32(b, 0).ok_or(Fail::Malformed)?;
    if w0 >> 28 != 1 {
        return Err(Fail::Malformed);
    }
    Ok(Decap {
        layer: Layer::with_id(Kind::Erspan2, w0 & 0x3ff),
        inner: Inner::Ethernet,
        rest: rest(b, 8)?,
    })
}

/// ERSPAN type III: version 2, 12 bytes, and an 8-byte platform subheader
/// when the O flag is set. Frame type 0 is Ethernet; others (IP) are not
/// decoded.
fn erspan3(b: &[u8]) -> Result<Decap<'_>, Fail> {
    let w0 = be32(b, 0).ok_or(Fail::Malformed)?;
    let w2 = be32(b, 8).ok_or(Fail::Malformed)?;
    if w0 >> 28 != 2 {
        return Err(Fail::Malformed);
    }
    let frame_type = (w2 >> 10) & 0x1f;
    if frame_type != 0 {
        return Err(Fail::Unsupported);
    }
    let len = if w2 & 1 != 0 { 20 } else { 12 };
    Ok(Decap {
        layer: Layer::with_id(Kind::Erspan3, w0 & 0x3ff),
        inner: Inner::Ethernet,
        rest: rest(b, len)?,
    })
}

/// An MPLS label stack (RFC 3032), then IPv4 or IPv6 by the first nibble,
/// or an Ethernet pseudowire behind a control word (first nibble 0,
/// RFC 4385). The layer's id is the bottom-of-stack label.
fn mpls(b: &[u8]) -> Result<Decap<'_>, Fail> {
    let mut at = 0;
    for _ in 0..MAX_MPLS_LABELS {
        let entry = be32(b, at).ok_or(Fail::Malformed)?;
        at += 4;
        if entry & 0x100 != 0 {
            let layer = Layer::with_id(Kind::Mpls, entry >> 12);
            let body = rest(b, at)?;
            let (inner, body) = match body.first().map(|n| n >> 4) {
                Some(4) => (Inner::EtherType(ETH_IPV4), body),
                Some(6) => (Inner::EtherType(ETH_IPV6), body),
                Some(0) => (Inner::Ethernet, rest(body, 4)?),
                _ => return Err(Fail::Unsupported),
            };
            return Ok(Decap {
                layer,
                inner,
                rest: body,
            });
        }
    }
    Err(Fail::Malformed)
}

/// A PPPoE session frame (RFC 2516, version and type 1, code 0) carrying
/// IPv4 or IPv6; the PPPoE length cuts the payload.
fn pppoe(b: &[u8]) -> Result<Decap<'_>, Fail> {
    if b.len() < 6 || b[0] != 0x11 || b[1] != 0 {
        return Err(Fail::Malformed);
    }
    let session = be16(b, 2).ok_or(Fail::Malformed)?;
    let len = be16(b, 4).ok_or(Fail::Malformed)? as usize;
    let payload = &b[6..(6 + len).min(b.len())];
    // The PPP protocol field, possibly compressed to one (odd) byte.
    let (proto, at) = match payload.first() {
        Some(&p) if p & 1 == 1 => (p as u16, 1),
        _ => (be16(payload, 0).ok_or(Fail::Malformed)?, 2),
    };
    let et = match proto {
        0x0021 => ETH_IPV4,
        0x0057 => ETH_IPV6,
        _ => return Err(Fail::Unsupported),
    };
    Ok(Decap {
        layer: Layer::with_id(Kind::Pppoe, session as u32),
        inner: Inner::EtherType(et),
        rest: rest(payload, at)?,
    })
}

/// Cisco MetaData (EtherType 0x8909): version, length, option type, the
/// security group tag, then the next EtherType (8 bytes in all, as
/// Wireshark's `cmd` dissector reads it).
fn cisco_metadata(b: &[u8]) -> Result<Decap<'_>, Fail> {
    let sgt = be16(b, 4).ok_or(Fail::Malformed)?;
    let next = be16(b, 6).ok_or(Fail::Malformed)?;
    Ok(Decap {
        layer: Layer::with_id(Kind::CiscoMetadata, sgt as u32),
        inner: Inner::EtherType(next),
        rest: rest(b, 8)?,
    })
}

/// Whether a UDP datagram between these ports may be a tunnel (the cheap
/// test on the untunnelled path).
#[inline]
pub fn is_tunnel_port(sport: u16, dport: u16) -> bool {
    matches!(
        dport,
        PORT_VXLAN | PORT_GENEVE | PORT_GTPU | PORT_CAPWAP_DATA
    ) || matches!(sport, PORT_GTPU | PORT_CAPWAP_DATA)
}

/// The UDP tunnels: VXLAN and Geneve to their port, GTP-U and CAPWAP data
/// on either port. `None` when the payload is not a tunnel header this
/// reads (the datagram then stays the UDP flow it is).
pub fn udp(sport: u16, dport: u16, b: &[u8]) -> Option<Decap<'_>> {
    match dport {
        PORT_VXLAN => return vxlan(b),
        PORT_GENEVE => return geneve(b),
        _ => {}
    }
    if sport == PORT_GTPU || dport == PORT_GTPU {
        gtpu(b)
    } else if sport == PORT_CAPWAP_DATA || dport == PORT_CAPWAP_DATA {
        capwap(b)
    } else {
        None
    }
}

/// VXLAN (RFC 7348): flags with I set, 24-bit VNI, then Ethernet.
fn vxlan(b: &[u8]) -> Option<Decap<'_>> {
    if *b.first()? & 0x08 == 0 {
        return None;
    }
    Some(Decap {
        layer: Layer::with_id(Kind::Vxlan, be32(b, 4)? >> 8),
        inner: Inner::Ethernet,
        rest: b.get(8..)?,
    })
}

/// Geneve (RFC 8926): version 0, options (length in 4-byte words)
/// skipped, the protocol type says what follows.
fn geneve(b: &[u8]) -> Option<Decap<'_>> {
    let v = *b.first()?;
    if v >> 6 != 0 {
        return None;
    }
    let len = 8 + (v & 0x3f) as usize * 4;
    let inner = match be16(b, 2)? {
        ETH_TEB => Inner::Ethernet,
        et => Inner::EtherType(et),
    };
    Some(Decap {
        layer: Layer::with_id(Kind::Geneve, be32(b, 4)? >> 8),
        inner,
        rest: b.get(len..)?,
    })
}

/// GTP-U version 1 G-PDU (message type 255): the optional sequence/N-PDU
/// word and the extension header chain skipped, then IPv4 or IPv6. Echo
/// and other messages are not tunnels.
fn gtpu(b: &[u8]) -> Option<Decap<'_>> {
    let flags = *b.first()?;
    if flags >> 5 != 1 || flags & 0x10 == 0 || *b.get(1)? != 0xff {
        return None;
    }
    let len = be16(b, 2)? as usize;
    let teid = be32(b, 4)?;
    let end = (8 + len).min(b.len());
    let mut at = 8;
    if flags & 0x07 != 0 {
        let mut next = *b.get(11)?;
        at = 12;
        let mut n = 0;
        while next != 0 {
            n += 1;
            if n > MAX_GTP_EXTENSIONS {
                return None;
            }
            let words = *b.get(at)? as usize;
            if words == 0 {
                return None;
            }
            at += words * 4;
            next = *b.get(at - 1)?;
        }
    }
    let body = b.get(at..end)?;
    Some(Decap {
        layer: Layer::with_id(Kind::Gtpu, teid),
        inner: Inner::EtherType(ip_by_nibble(body)?),
        rest: body,
    })
}

/// CAPWAP data (RFC 5415): preamble version 0 and type 0 (1 is DTLS,
/// encrypted), header length in 4-byte words, an unfragmented 802.3 frame
/// (T flag clear). Keep-alives and native 802.11 frames are not read.
fn capwap(b: &[u8]) -> Option<Decap<'_>> {
    if *b.first()? != 0 {
        return None;
    }
    let w = be32(b, 0)?;
    let hlen = ((w >> 19) & 0x1f) as usize * 4;
    let (t, f, k) = (w & 0x100 != 0, w & 0x80 != 0, w & 0x08 != 0);
    if hlen < 8 || t || f || k {
        return None;
    }
    Some(Decap {
        layer: Layer::new(Kind::Capwap),
        inner: Inner::Ethernet,
        rest: b.get(hlen..)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn gre_key_sequence_checksum() {
        // C, K and S set; protocol Ethernet bridging; key 0x11223344.
        let b = hex("b000 6558 0000 0000 11223344 00000007 ffffffffffff");
        let d = gre(&b).unwrap();
        assert_eq!(d.layer, Layer::with_id(Kind::Gre, 0x1122_3344));
        assert_eq!(d.inner, Inner::Ethernet);
        assert_eq!(d.rest, &[0xff; 6]);
        // PPTP's version 1 and truncated keys.
        assert_eq!(gre(&hex("3001 880b 0000 0000")), Err(Fail::Unsupported));
        assert_eq!(gre(&hex("2000 0800 0000")), Err(Fail::Malformed));
    }

    #[test]
    fn erspan_types() {
        // Type I: GRE 0x88BE with no sequence number.
        let b1 = hex("0000 88be aa");
        let d = gre(&b1).unwrap();
        assert_eq!(d.inner, Inner::EtherType(ETH_ERSPAN_TYPE1));
        let e = by_ethertype(ETH_ERSPAN_TYPE1, d.rest).unwrap();
        assert_eq!(
            (e.layer.kind, e.inner, e.rest),
            (Kind::Erspan1, Inner::Ethernet, &[0xaa][..])
        );
        // Type II, session 123, VLAN 0.
        let b2 = hex("1000 087b 0000 0000 bb");
        let e = by_ethertype(ETH_ERSPAN_2, &b2).unwrap();
        assert_eq!(e.layer, Layer::with_id(Kind::Erspan2, 123));
        assert_eq!(e.rest, &[0xbb]);
        // Type III with and without the platform subheader.
        let b3 = hex("2000 0005 00000000 0000 0000 cc");
        let e = by_ethertype(ETH_ERSPAN_3, &b3).unwrap();
        assert_eq!(
            (e.layer, e.rest),
            (Layer::with_id(Kind::Erspan3, 5), &[0xcc][..])
        );
        let platform = hex("2000 0005 00000000 0000 0001 0000000000000000 dd");
        let e = by_ethertype(ETH_ERSPAN_3, &platform).unwrap();
        assert_eq!(e.rest, &[0xdd]);
        // Frame type IP (2) is not decoded; a wrong version is malformed.
        let ip = hex("2000 0005 00000000 0000 0800 00");
        assert_eq!(by_ethertype(ETH_ERSPAN_3, &ip), Err(Fail::Unsupported));
        assert_eq!(
            by_ethertype(ETH_ERSPAN_2, &hex("2000 087b 0000 0000")),
            Err(Fail::Malformed)
        );
    }

    #[test]
    fn mpls_stack_then_ip_or_pseudowire() {
        // Labels 16 and 100 (bottom), then IPv4.
        let b4 = hex("00010040 000641ff 4500");
        let d = by_ethertype(ETH_MPLS_UC, &b4).unwrap();
        assert_eq!(d.layer, Layer::with_id(Kind::Mpls, 100));
        assert_eq!(d.inner, Inner::EtherType(ETH_IPV4));
        assert_eq!(d.rest, &[0x45, 0]);
        // Control word then Ethernet.
        let b5 = hex("000641ff 00000000 0102");
        let d = by_ethertype(ETH_MPLS_UC, &b5).unwrap();
        assert_eq!((d.inner, d.rest), (Inner::Ethernet, &[1, 2][..]));
        // No bottom of stack within the bound.
        assert_eq!(by_ethertype(ETH_MPLS_UC, &[0; 64]), Err(Fail::Malformed));
    }

    #[test]
    fn pppoe_session_ip() {
        let b6 = hex("1100 0042 0003 0057 60 ff ff");
        let d = by_ethertype(ETH_PPPOE_SESSION, &b6).unwrap();
        assert_eq!(d.layer, Layer::with_id(Kind::Pppoe, 0x42));
        assert_eq!((d.inner, d.rest), (Inner::EtherType(ETH_IPV6), &[0x60][..]));
        // LCP is control, not a packet to follow.
        let lcp = hex("1100 0042 0004 c021 0101");
        assert_eq!(
            by_ethertype(ETH_PPPOE_SESSION, &lcp),
            Err(Fail::Unsupported)
        );
    }

    #[test]
    fn udp_tunnels_need_their_header() {
        assert!(is_tunnel_port(50000, 4789) && !is_tunnel_port(4789, 50000));
        let v = hex("0800 0000 00002a00 ee");
        let d = udp(50000, PORT_VXLAN, &v).unwrap();
        assert_eq!(
            (d.layer, d.rest),
            (Layer::with_id(Kind::Vxlan, 42), &[0xee][..])
        );
        assert_eq!(udp(50000, PORT_VXLAN, &hex("0000 0000 00002a00")), None);
        // Geneve with one 4-byte option word, inner IPv4.
        let g = hex("0100 0800 00000700 01020304 45");
        let d = udp(1, PORT_GENEVE, &g).unwrap();
        assert_eq!(d.layer, Layer::with_id(Kind::Geneve, 7));
        assert_eq!((d.inner, d.rest), (Inner::EtherType(ETH_IPV4), &[0x45][..]));
        // GTP-U G-PDU with a sequence number and one extension header.
        let t = hex("36ff 000d 00000009 0000 00 85 01 0000 00 4500");
        let d = udp(PORT_GTPU, PORT_GTPU, &t).unwrap();
        assert_eq!(d.layer, Layer::with_id(Kind::Gtpu, 9));
        assert_eq!(d.rest, &[0x45, 0]);
        // Echo request is not a G-PDU.
        assert_eq!(
            udp(PORT_GTPU, PORT_GTPU, &hex("3201 0004 00000000 0000 0000")),
            None
        );
        // CAPWAP data, HLEN 2 words, 802.3 payload; DTLS is left alone.
        let c = hex("00100000 00000000 aa");
        let d = udp(40000, PORT_CAPWAP_DATA, &c).unwrap();
        assert_eq!((d.layer.kind, d.rest), (Kind::Capwap, &[0xaa][..]));
        assert_eq!(
            udp(40000, PORT_CAPWAP_DATA, &hex("01000000 00000000")),
            None
        );
    }

    #[test]
    fn tunnel_id_is_direction_free_and_separates_tunnels() {
        let (a, b) = (Addr::v4([10, 0, 0, 1]), Addr::v4([10, 0, 0, 2]));
        let mut fwd = Encap::default();
        assert!(fwd.push(Layer::with_id(Kind::Vxlan, 42), Some((a, b))));
        let mut rev = Encap::default();
        assert!(rev.push(Layer::with_id(Kind::Vxlan, 42), Some((b, a))));
        assert_eq!(fwd.tunnel_id, rev.tunnel_id);
        assert_ne!(fwd.tunnel_id, 0);
        let mut other = Encap::default();
        other.push(Layer::with_id(Kind::Vxlan, 43), Some((a, b)));
        assert_ne!(fwd.tunnel_id, other.tunnel_id);
        // GTP TEIDs differ per direction and do not split the flow.
        let (mut up, mut down) = (Encap::default(), Encap::default());
        up.push(Layer::with_id(Kind::Gtpu, 1), Some((a, b)));
        down.push(Layer::with_id(Kind::Gtpu, 2), Some((b, a)));
        assert_eq!(up.tunnel_id, down.tunnel_id);
        // The depth bound.
        let mut deep = Encap::default();
        for _ in 0..MAX_DEPTH {
            assert!(deep.push(Layer::new(Kind::Ipip), None));
        }
        assert!(!deep.push(Layer::new(Kind::Ipip), None));
        assert_eq!(deep.layers().len(), MAX_DEPTH);
    }
}
