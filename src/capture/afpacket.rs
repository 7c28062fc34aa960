//! Live source: Linux AF_PACKET with TPACKET_V3 memory-mapped rings.
//!
//! Each worker owns one ring per interface; the rings of an interface are
//! joined in one `PACKET_FANOUT` group in hash mode, so the kernel sends both
//! directions of a connection to the same worker (its flow hash is
//! symmetric) and, with `PACKET_FANOUT_FLAG_DEFRAG`, every fragment of a
//! datagram too. The ring code, and all of its `unsafe`, is the `netring`
//! crate's; this module only configures it and reads it through its safe API.

use super::linktype;
use super::live::{LiveFrame, LiveSource, RingSettings, RingStats};
use crate::time::Timestamp;
use netring::{Capture, FanoutFlags, FanoutMode};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use std::os::fd::AsFd;
use std::time::Duration;

/// One interface's ring of one worker.
struct Ring {
    interface: String,
    linktype: u16,
    /// Loopback: each packet shows twice, outgoing and looped back in;
    /// the outgoing copy is skipped (as libpcap does).
    skip_outgoing: bool,
    cap: Capture,
}

/// The rings one worker reads.
pub struct Rings {
    worker: usize,
    rings: Vec<Ring>,
    /// Frame with its VLAN tag put back (the kernel strips it into the header).
    tagged: Vec<u8>,
}

/// The link type of an interface, from its ARPHRD type in sysfs.
fn interface_linktype(iface: &str) -> Result<(u16, bool), String> {
    // An interface name is one path component (and at most 15 bytes).
    if iface.is_empty() || iface.contains(['/', '\0']) || iface == "." || iface == ".." {
        return Err(format!(
            "interface {iface:?} is not an interface name (see `ip link`)"
        ));
    }
    let path = format!("/sys/class/net/{iface}/type");
    // A sysfs attribute is a few bytes; read one page at most.
    let mut text = String::new();
    let read = std::fs::File::open(&path)
        .and_then(|f| std::io::Read::read_to_string(&mut std::io::Read::take(f, 4096), &mut text));
    read.map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            format!("interface {iface} does not exist (see `ip link`)")
        } else {
            format!("interface {iface}: cannot read {path}: {e}")
        }
    })?;
    match text.trim() {
        // ARPHRD_ETHER, ARPHRD_LOOPBACK: frames start with an Ethernet header.
        "1" => Ok((linktype::ETHERNET, false)),
        "772" => Ok((linktype::ETHERNET, true)),
        // ARPHRD_NONE (tun, WireGuard), ARPHRD_RAWIP: frames are IP packets.
        "65534" | "519" => Ok((linktype::RAW, false)),
        other => Err(format!(
            "interface {iface}: link type {other} (ARPHRD) is not supported: capture on an Ethernet, loopback or raw-IP interface"
        )),
    }
}

/// Opens `workers` rings on every interface, one fanout group per
/// interface. Needs CAP_NET_RAW, promiscuous mode included (a
/// `PACKET_MR_PROMISC` membership of the socket); call before dropping
/// privileges.
pub fn open(
    interfaces: &[String],
    workers: usize,
    settings: RingSettings,
) -> Result<Vec<Rings>, String> {
    let mut out: Vec<Rings> = (0..workers)
        .map(|worker| Rings {
            worker,
            rings: Vec::new(),
            tagged: Vec::new(),
        })
        .collect();
    // Fanout group ids are per network namespace: derive them from the
    // process id so two sensors on one host do not join each other's group.
    let base = (std::process::id() as u16).wrapping_mul(31);
    for (i, iface) in interfaces.iter().enumerate() {
        let (lt, skip_outgoing) = interface_linktype(iface)?;
        let group = base.wrapping_add(i as u16);
        for rings in out.iter_mut() {
            let mut b = Capture::builder()
                .interface(iface)
                .block_size(settings.block_size)
                .block_count(settings.blocks)
                .block_timeout_ms(settings.block_timeout_ms)
                .snap_len(65535)
                .promiscuous(settings.promiscuous)
                .poll_timeout(Duration::from_millis(100));
            if workers > 1 {
                b = b
                    .fanout(FanoutMode::Hash, group)
                    .fanout_flags(FanoutFlags::DEFRAG);
            }
            let cap = b.build().map_err(|e| open_error(iface, &e))?;
            rings.rings.push(Ring {
                interface: iface.clone(),
                linktype: lt,
                skip_outgoing,
                cap,
            });
        }
    }
    Ok(out)
}

fn open_error(iface: &str, e: &netring::Error) -> String {
    use std::error::Error as _;
    let cause = e.source().map(|s| format!(": {s}")).unwrap_or_default();
    let hint = match e {
        netring::Error::PermissionDenied => {
            " (run as root, or give the binary CAP_NET_RAW; see systemd/)"
        }
        netring::Error::Mmap(_) => " (lower capture.ring_blocks or capture.ring_block_size)",
        _ => "",
    };
    format!("cannot capture on {iface}: {e}{cause}{hint}")
}

/// Puts a VLAN tag the kernel moved into the packet header back into the
/// frame, so the decoder sees what was on the wire.
fn retag<'a>(tagged: &'a mut Vec<u8>, data: &'a [u8], tpid: u16, tci: u16) -> &'a [u8] {
    if data.len() < 12 {
        return data;
    }
    tagged.clear();
    tagged.extend_from_slice(&data[..12]);
    tagged.extend_from_slice(&tpid.to_be_bytes());
    tagged.extend_from_slice(&tci.to_be_bytes());
    tagged.extend_from_slice(&data[12..]);
    tagged
}

impl LiveSource for Rings {
    fn poll(
        &mut self,
        timeout: Duration,
        f: &mut dyn FnMut(LiveFrame<'_>),
    ) -> std::io::Result<usize> {
        let mut seen = self.drain(f);
        if seen == 0 {
            let mut fds: Vec<PollFd> = self
                .rings
                .iter()
                .map(|r| PollFd::new(r.cap.as_fd(), PollFlags::POLLIN))
                .collect();
            let ms = u16::try_from(timeout.as_millis()).unwrap_or(u16::MAX);
            match poll(&mut fds, PollTimeout::from(ms)) {
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(e.into()),
            }
            drop(fds);
            seen = self.drain(f);
        }
        Ok(seen)
    }

    fn stats(&mut self) -> Vec<RingStats> {
        self.rings
            .iter()
            .map(|r| {
                let s = r.cap.cumulative_stats().unwrap_or_default();
                RingStats {
                    interface: r.interface.clone(),
                    worker: self.worker,
                    packets: u64::from(s.packets),
                    drops: u64::from(s.drops),
                    freezes: u64::from(s.freeze_count),
                }
            })
            .collect()
    }
}

impl Rings {
    /// Hands every packet of every ready block to `f`; returns how many.
    fn drain(&mut self, f: &mut dyn FnMut(LiveFrame<'_>)) -> usize {
        let mut seen = 0;
        for ring in &mut self.rings {
            // A bounded number of blocks per ring per call, so one busy
            // interface cannot starve the others or the worker's timers.
            for _ in 0..8 {
                let Some(batch) = ring.cap.next_batch() else {
                    break;
                };
                for pkt in &batch {
                    if ring.skip_outgoing && pkt.direction() == netring::PacketDirection::Outgoing {
                        continue;
                    }
                    seen += 1;
                    let ts = pkt.timestamp();
                    let status = pkt.status();
                    let data = pkt.data();
                    let data = if status.vlan_valid && ring.linktype == linktype::ETHERNET {
                        let tpid = if status.vlan_tpid_valid && pkt.vlan_tpid() != 0 {
                            pkt.vlan_tpid()
                        } else {
                            0x8100
                        };
                        retag(&mut self.tagged, data, tpid, pkt.vlan_tci())
                    } else {
                        data
                    };
                    f(LiveFrame {
                        data,
                        ts: Timestamp(u64::from(ts.sec) * 1_000_000_000 + u64::from(ts.nsec)),
                        wire_len: pkt.original_len() as u32 + if status.vlan_valid { 4 } else { 0 },
                        linktype: ring.linktype,
                    });
                }
            }
        }
        seen
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retag_inserts_the_tag_after_the_addresses() {
        let frame: Vec<u8> = (0u8..20).collect();
        let mut buf = Vec::new();
        let out = retag(&mut buf, &frame, 0x8100, 0x0064);
        assert_eq!(&out[..12], &frame[..12]);
        assert_eq!(&out[12..16], &[0x81, 0x00, 0x00, 0x64]);
        assert_eq!(&out[16..], &frame[12..]);
    }

    #[test]
    fn unknown_interface_is_named() {
        let e = interface_linktype("no-such-if0").unwrap_err();
        assert!(e.contains("no-such-if0 does not exist"), "{e}");
    }
}
