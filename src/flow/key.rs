//! Flow identity: the 5-tuple plus VLAN, its canonical (direction-free) form,
//! the symmetric hash that picks a worker, Community ID v1 and `flow_id`.

use sha1::{Digest, Sha1};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub const PROTO_ICMP: u8 = 1;
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;
pub const PROTO_ICMPV6: u8 = 58;

/// An address as 16 bytes; IPv4 sits in the first four with `v6 == false`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Addr {
    pub bytes: [u8; 16],
    pub v6: bool,
}

impl Addr {
    pub fn v4(b: [u8; 4]) -> Self {
        let mut bytes = [0u8; 16];
        bytes[..4].copy_from_slice(&b);
        Addr { bytes, v6: false }
    }
    pub fn v6(b: [u8; 16]) -> Self {
        Addr { bytes: b, v6: true }
    }
    pub fn as_slice(&self) -> &[u8] {
        if self.v6 {
            &self.bytes
        } else {
            &self.bytes[..4]
        }
    }
    pub fn to_ip(self) -> IpAddr {
        if self.v6 {
            IpAddr::V6(Ipv6Addr::from(self.bytes))
        } else {
            IpAddr::V4(Ipv4Addr::new(
                self.bytes[0],
                self.bytes[1],
                self.bytes[2],
                self.bytes[3],
            ))
        }
    }
}

impl From<IpAddr> for Addr {
    fn from(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(a) => Addr::v4(a.octets()),
            IpAddr::V6(a) => Addr::v6(a.octets()),
        }
    }
}

/// A directed 5-tuple as seen on one packet, plus its VLAN tags.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub src: Addr,
    pub dst: Addr,
    pub sport: u16,
    pub dport: u16,
    pub proto: u8,
    /// Outer and inner 802.1Q VLAN ids (0 = none).
    pub vlan: [u16; 2],
    /// The tunnel the packet came through (`decode::tunnel::Encap`), 0 for
    /// none: two tunnels carrying the same inner addresses stay apart. Part
    /// of the flow id, not of the Community ID (defined on the inner tuple).
    pub tunnel: u64,
}

/// Which way a packet travels relative to the flow's originator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// From the originator (Zeek's "orig", the client).
    ToServer,
    /// From the responder.
    ToClient,
}

impl Direction {
    /// 0 for the originator's direction, 1 for the responder's: the index of
    /// every per-direction array.
    pub fn index(self) -> usize {
        match self {
            Direction::ToServer => 0,
            Direction::ToClient => 1,
        }
    }

    /// The inverse of [`Direction::index`].
    pub fn from_index(i: usize) -> Self {
        if i == 0 {
            Direction::ToServer
        } else {
            Direction::ToClient
        }
    }

    pub fn flip(self) -> Self {
        match self {
            Direction::ToServer => Direction::ToClient,
            Direction::ToClient => Direction::ToServer,
        }
    }
}

impl FlowKey {
    pub fn reversed(&self) -> FlowKey {
        FlowKey {
            src: self.dst,
            dst: self.src,
            sport: self.dport,
            dport: self.sport,
            ..*self
        }
    }

    /// The direction-free form: the lower (address, port) endpoint first.
    /// Returns the canonical key and whether this packet travels from the
    /// lower endpoint.
    pub fn canonical(&self) -> (FlowKey, bool) {
        if (self.src, self.sport) <= (self.dst, self.dport) {
            (*self, true)
        } else {
            (self.reversed(), false)
        }
    }

    /// Symmetric 64-bit hash: both directions of a connection give the same
    /// value (the two endpoints' hashes are combined by addition, which does
    /// not care about order), independent of the process (no random seed), so
    /// the same flow always lands on the same worker.
    pub fn symmetric_hash(&self) -> u64 {
        fn endpoint(a: &Addr, port: u16) -> u64 {
            let lo = u64::from_le_bytes(a.bytes[..8].try_into().expect("8 bytes"));
            let hi = u64::from_le_bytes(a.bytes[8..].try_into().expect("8 bytes"));
            mix64(lo ^ hi.rotate_left(29) ^ ((port as u64) << 48) ^ a.v6 as u64)
        }
        let extra =
            ((self.proto as u64) << 32) | ((self.vlan[0] as u64) << 16) | self.vlan[1] as u64;
        mix64(
            endpoint(&self.src, self.sport).wrapping_add(endpoint(&self.dst, self.dport))
                ^ extra
                ^ self.tunnel,
        )
    }

    /// Community ID v1 (github.com/corelight/community-id-spec), seed 0 by
    /// default: base64(SHA-1(seed ‖ saddr ‖ daddr ‖ proto ‖ 0 ‖ sport ‖ dport))
    /// with the endpoints ordered so both directions agree. Shared: the
    /// flow's records, its session and its windows keep the one string.
    pub fn community_id(&self, seed: u16) -> std::sync::Arc<str> {
        let (mut sa, mut da, mut sp, mut dp) = (self.src, self.dst, self.sport, self.dport);
        if (da.as_slice(), dp) < (sa.as_slice(), sp) {
            std::mem::swap(&mut sa, &mut da);
            std::mem::swap(&mut sp, &mut dp);
        }
        let mut h = Sha1::new();
        h.update(seed.to_be_bytes());
        h.update(sa.as_slice());
        h.update(da.as_slice());
        h.update([self.proto, 0]);
        if matches!(self.proto, PROTO_TCP | PROTO_UDP | 132) {
            h.update(sp.to_be_bytes());
            h.update(dp.to_be_bytes());
        }
        let digest = h.finalize();
        // "1:" and the 28 characters of a 20-byte digest in base64.
        let mut out = String::with_capacity(30);
        out.push_str("1:");
        base64::Engine::encode_string(&base64::engine::general_purpose::STANDARD, digest, &mut out);
        out.into()
    }

    /// A stable 64-bit flow identifier, printed as 16 hex digits: the
    /// canonical tuple, VLAN and the flow's first packet time. The same flow
    /// gets the same id in every run and with any number of workers.
    pub fn flow_id(&self, start_nanos: u64) -> crate::record::FlowId {
        crate::record::FlowId(self.flow_id_u64(start_nanos))
    }

    /// The flow id as a number (its hex text orders the same way).
    pub fn flow_id_u64(&self, start_nanos: u64) -> u64 {
        mix64(self.symmetric_hash() ^ mix64(start_nanos))
    }
}

/// splitmix64 finaliser (Stafford's mix 13): every input bit reaches every output bit.
pub(crate) fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// splitmix64 (Steele, Lea and Flood): a small generator, the same
/// sequence for the same seed in every run. The randomized tests draw their
/// cases from it so that a failure can be replayed.
#[derive(Clone, Debug)]
pub struct SplitMix(pub u64);

impl SplitMix {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix64(self.0)
    }

    /// A number below `n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(src: &str, sport: u16, dst: &str, dport: u16, proto: u8) -> FlowKey {
        FlowKey {
            src: src.parse::<IpAddr>().unwrap().into(),
            dst: dst.parse::<IpAddr>().unwrap().into(),
            sport,
            dport,
            proto,
            vlan: [0, 0],
            tunnel: 0,
        }
    }

    /// The spec's published baseline vectors (community-id-spec
    /// `baseline/baseline_data.json`, also Zeek's btest for community_id_v1).
    #[test]
    fn community_id_published_vectors() {
        let t = key("1.2.3.4", 1122, "5.6.7.8", 3344, PROTO_TCP);
        assert_eq!(&*t.community_id(0), "1:wCb3OG7yAFWelaUydu0D+125CLM=");
        assert_eq!(
            &*t.reversed().community_id(0),
            "1:wCb3OG7yAFWelaUydu0D+125CLM="
        );
        assert_eq!(&*t.community_id(1), "1:HhA1B+6CoLbiKPEs5nhNYN4XWfk=");
        let u = key("1.2.3.4", 1122, "5.6.7.8", 3344, PROTO_UDP);
        assert_eq!(&*u.community_id(0), "1:0Mu9InQx6z4ZiCZM/7HXi2WMhOg=");
        assert_eq!(
            &*u.reversed().community_id(0),
            "1:0Mu9InQx6z4ZiCZM/7HXi2WMhOg="
        );
        assert_eq!(&*u.community_id(1), "1:OShq+iKDAMVouh/4bMxB9Sz4amw=");
    }

    #[test]
    fn symmetric_hash_and_canonical_agree_both_ways() {
        let k = key("2001:db8::1", 51000, "2001:db8::2", 443, PROTO_TCP);
        assert_eq!(k.symmetric_hash(), k.reversed().symmetric_hash());
        assert_eq!(k.canonical().0, k.reversed().canonical().0);
        assert_ne!(k.canonical().1, k.reversed().canonical().1);
        let mut v = k;
        v.vlan = [10, 0];
        assert_ne!(v.symmetric_hash(), k.symmetric_hash());
        let mut t = k;
        t.tunnel = 7;
        assert_ne!(t.symmetric_hash(), k.symmetric_hash());
        assert_eq!(t.symmetric_hash(), t.reversed().symmetric_hash());
        assert_eq!(t.community_id(0), k.community_id(0));
        assert_eq!(k.flow_id(5), k.reversed().flow_id(5));
        assert_ne!(k.flow_id(5), k.flow_id(6));
    }
}
