//! Device evidence: who held which address, read off the wire in packet
//! order by the decoder (DHCPv4, DHCPv6, ARP, IPv6 neighbour discovery) and
//! sent to the correlator, which alone keeps the IP ↔ MAC history.
//!
//! Evidence is what a frame claims; ARP and NDP are unauthenticated, so a
//! spoofing host is recorded as what it claims to be (as arpwatch and Zeek
//! would see it). Later evidence supersedes earlier from its own time on,
//! never before it.

use crate::app::{dhcp::DhcpInfo, dhcp6::Dhcp6Info};
use crate::time::Timestamp;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// What a piece of evidence says about `ip` (or the MAC alone).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// `ip` is held by the MAC from `ts` until `until` (`None`: until
    /// other evidence says otherwise).
    Bind {
        ip: IpAddr,
        until: Option<Timestamp>,
    },
    /// The MAC gave `ip` back (DHCP RELEASE, DHCPv6 RELEASE or valid lifetime 0).
    Release { ip: IpAddr },
    /// The MAC's host name (DHCP option 12, DHCPv6 FQDN).
    Name(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Evidence {
    pub ts: Timestamp,
    pub mac: [u8; 6],
    pub action: Action,
    /// `dhcp`, `dhcpv6`, `arp` or `ndp`.
    pub source: &'static str,
}

/// A MAC that can name a station: not all-zero, not group (multicast or
/// broadcast).
fn station(mac: [u8; 6]) -> bool {
    mac != [0; 6] && mac[0] & 1 == 0
}

fn push(
    out: &mut Vec<Evidence>,
    ts: Timestamp,
    mac: [u8; 6],
    action: Action,
    source: &'static str,
) {
    if station(mac) {
        out.push(Evidence {
            ts,
            mac,
            action,
            source,
        });
    }
}

/// DHCPv4: an ACK binds `yiaddr` (for the lease time; an ACK to INFORM
/// confirms `ciaddr`), a RELEASE gives `ciaddr` back, and host names are
/// taken from any message that carries option 12.
pub fn from_dhcp4(d: &DhcpInfo, ts: Timestamp, out: &mut Vec<Evidence>) {
    let Some(mac) = d.client_mac.map(|m| m.0).filter(|_| d.hw_type == 1) else {
        return;
    };
    let unspecified = Ipv4Addr::UNSPECIFIED;
    match d.message_type_code {
        Some(5) if d.your_ip != unspecified => {
            let until = d
                .lease_s
                .filter(|s| *s != u32::MAX)
                .map(|s| ts.plus(u64::from(s) * crate::time::NANOS_PER_SEC));
            let ip = IpAddr::V4(d.your_ip);
            push(out, ts, mac, Action::Bind { ip, until }, "dhcp");
        }
        Some(5) if d.client_ip != unspecified => {
            let ip = IpAddr::V4(d.client_ip);
            push(out, ts, mac, Action::Bind { ip, until: None }, "dhcp");
        }
        Some(7) if d.client_ip != unspecified => {
            let ip = IpAddr::V4(d.client_ip);
            push(out, ts, mac, Action::Release { ip }, "dhcp");
        }
        _ => {}
    }
    if let Some(h) = d.hostname.as_ref().filter(|h| !h.is_empty()) {
        push(out, ts, mac, Action::Name(h.clone()), "dhcp");
    }
}

/// DHCPv6: a REPLY binds its IA addresses to the client (MAC from the
/// DUID, else the frame's destination when the reply is not relayed), for
/// their valid lifetime; lifetime 0 or a client RELEASE gives them back.
pub fn from_dhcp6(
    d: &Dhcp6Info,
    ts: Timestamp,
    frame_dst: Option<[u8; 6]>,
    out: &mut Vec<Evidence>,
) {
    let duid_mac = d.client_mac.map(|m| m.0);
    let mac = match d.message_type_code {
        7 => duid_mac.or(frame_dst.filter(|_| !d.relayed)),
        _ => duid_mac,
    };
    let Some(mac) = mac else { return };
    for a in &d.ia_addresses {
        let ip = IpAddr::V6(a.ip);
        let action = match (d.message_type_code, a.valid_s) {
            (7, 0) | (8, _) => Action::Release { ip },
            (7, s) => Action::Bind {
                ip,
                until: (s != u32::MAX).then(|| ts.plus(u64::from(s) * crate::time::NANOS_PER_SEC)),
            },
            _ => continue,
        };
        push(out, ts, mac, action, "dhcpv6");
    }
    if let Some(h) = &d.hostname {
        push(out, ts, mac, Action::Name(h.clone()), "dhcpv6");
    }
}

/// ARP (Ethernet/IPv4, request or reply): the sender's MAC holds the
/// sender's IP. Probes (sender 0.0.0.0) say nothing.
pub fn from_arp(b: &[u8], ts: Timestamp, out: &mut Vec<Evidence>) {
    // htype 1, ptype 0x0800, hlen 6, plen 4, op 1|2, sha, spa, tha, tpa
    let Some(h) = b.get(..28) else { return };
    if h[..6] != [0, 1, 8, 0, 6, 4] || !matches!(h[6..8], [0, 1] | [0, 2]) {
        return;
    }
    let mac: [u8; 6] = h[8..14].try_into().expect("6 bytes");
    let spa = Ipv4Addr::new(h[14], h[15], h[16], h[17]);
    if spa.is_unspecified() || spa.is_broadcast() || spa.is_multicast() {
        return;
    }
    push(
        out,
        ts,
        mac,
        Action::Bind {
            ip: IpAddr::V4(spa),
            until: None,
        },
        "arp",
    );
}

/// IPv6 neighbour discovery (`icmp` is the ICMPv6 message): a neighbour
/// advertisement binds its target to the target link-layer address option;
/// a neighbour or router solicitation binds its (specified) source to the
/// source link-layer address option.
pub fn from_ndp(icmp: &[u8], src: Ipv6Addr, ts: Timestamp, out: &mut Vec<Evidence>) {
    let (ip, opts, want_opt) = match icmp.first() {
        Some(136) if icmp.len() >= 24 => {
            let t: [u8; 16] = icmp[8..24].try_into().expect("16 bytes");
            (Ipv6Addr::from(t), &icmp[24..], 2)
        }
        Some(135) if icmp.len() >= 24 => (src, &icmp[24..], 1),
        Some(133) if icmp.len() >= 8 => (src, &icmp[8..], 1),
        _ => return,
    };
    if ip.is_unspecified() || ip.is_multicast() {
        return;
    }
    // Options: type, length in 8-byte units, body. At most 32 are walked.
    let mut rest = opts;
    for _ in 0..32 {
        let [t, len, ..] = *rest else { return };
        let n = len as usize * 8;
        if n == 0 || rest.len() < n {
            return;
        }
        if t == want_opt && n >= 8 {
            let mac: [u8; 6] = rest[2..8].try_into().expect("6 bytes");
            push(
                out,
                ts,
                mac,
                Action::Bind {
                    ip: IpAddr::V6(ip),
                    until: None,
                },
                "ndp",
            );
            return;
        }
        rest = &rest[n..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arp_reply_binds_sender() {
        let mut b = vec![0, 1, 8, 0, 6, 4, 0, 2];
        b.extend([2, 0, 0x5e, 0x10, 0, 1, 192, 0, 2, 117]);
        b.extend([0; 6]);
        b.extend([192, 0, 2, 1]);
        let mut out = Vec::new();
        from_arp(&b, Timestamp(5), &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].mac, [2, 0, 0x5e, 0x10, 0, 1]);
        assert_eq!(
            out[0].action,
            Action::Bind {
                ip: "192.0.2.117".parse().unwrap(),
                until: None
            }
        );
        // A probe (sender 0.0.0.0) and a truncated frame say nothing.
        b[14..18].copy_from_slice(&[0, 0, 0, 0]);
        from_arp(&b, Timestamp(5), &mut out);
        from_arp(&b[..20], Timestamp(5), &mut out);
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn neighbour_advertisement_binds_target() {
        let target: Ipv6Addr = "2001:db8::17".parse().unwrap();
        let mut na = vec![136, 0, 0, 0, 0x60, 0, 0, 0];
        na.extend(target.octets());
        na.extend([2, 1, 0x0a, 0, 0, 0, 0, 7]);
        let mut out = Vec::new();
        from_ndp(&na, "fe80::1".parse().unwrap(), Timestamp(1), &mut out);
        assert_eq!(
            out,
            vec![Evidence {
                ts: Timestamp(1),
                mac: [0x0a, 0, 0, 0, 0, 7],
                action: Action::Bind {
                    ip: IpAddr::V6(target),
                    until: None
                },
                source: "ndp",
            }]
        );
        // A zero-length option stops the walk instead of looping.
        na.truncate(24);
        na.extend([1, 0, 0, 0, 0, 0, 0, 0]);
        from_ndp(&na, "fe80::1".parse().unwrap(), Timestamp(1), &mut out);
        assert_eq!(out.len(), 1);
    }
}
