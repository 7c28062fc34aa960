//! Live source through libpcap (cargo feature `libpcap`): for BPF filter
//! expressions (`--filter`) and for systems without AF_PACKET. One handle per
//! interface, read by a single worker (libpcap has no fanout), non-blocking
//! with a 5 ms nap when every handle is idle.

use super::live::{LiveFrame, LiveSource, RingStats};
use crate::time::Timestamp;
use std::time::Duration;

struct Handle {
    interface: String,
    linktype: u16,
    cap: pcap::Capture<pcap::Active>,
}

pub struct Pcap {
    handles: Vec<Handle>,
}

/// Opens every interface, applying `filter` (tcpdump syntax) to each.
pub fn open(
    interfaces: &[String],
    filter: Option<&str>,
    buffer_bytes: usize,
    promiscuous: bool,
) -> Result<Pcap, String> {
    let mut handles = Vec::new();
    for iface in interfaces {
        let fail = |e: pcap::Error| format!("cannot capture on {iface} with libpcap: {e}");
        let inactive = pcap::Capture::from_device(iface.as_str())
            .map_err(fail)?
            .promisc(promiscuous)
            .snaplen(65535)
            .timeout(100)
            .buffer_size(i32::try_from(buffer_bytes).unwrap_or(i32::MAX))
            .precision(pcap::Precision::Micro);
        let mut cap = inactive.open().map_err(fail)?;
        if let Some(expr) = filter {
            cap.filter(expr, true)
                .map_err(|e| format!("--filter {expr:?} on {iface}: {e}"))?;
        }
        // Non-blocking: libpcap's read timeout does not start on Linux until
        // a packet arrives, so a blocking read could wait forever on a quiet
        // interface and the worker would never see a stop request.
        cap = cap.setnonblock().map_err(fail)?;
        let linktype = u16::try_from(cap.get_datalink().0).unwrap_or(u16::MAX);
        handles.push(Handle {
            interface: iface.clone(),
            linktype,
            cap,
        });
    }
    Ok(Pcap { handles })
}

// The handles move to the worker thread once and are only used there.
// (pcap::Capture<Active> is Send.)
impl LiveSource for Pcap {
    fn poll(
        &mut self,
        timeout: Duration,
        f: &mut dyn FnMut(LiveFrame<'_>),
    ) -> std::io::Result<usize> {
        let mut seen = 0;
        for h in &mut self.handles {
            // Up to a bounded number per handle, so no interface starves the others.
            for _ in 0..4096 {
                match h.cap.next_packet() {
                    Ok(p) => {
                        seen += 1;
                        let ts = p.header.ts;
                        let nanos = (ts.tv_sec as u64)
                            .saturating_mul(1_000_000_000)
                            .saturating_add((ts.tv_usec as u64).saturating_mul(1000));
                        f(LiveFrame {
                            data: p.data,
                            ts: Timestamp(nanos),
                            wire_len: p.header.len,
                            linktype: h.linktype,
                        });
                    }
                    Err(pcap::Error::TimeoutExpired) | Err(pcap::Error::NoMorePackets) => break,
                    Err(e) => return Err(std::io::Error::other(e.to_string())),
                }
            }
        }
        if seen == 0 {
            // Non-blocking handles: a short nap instead of a busy loop.
            std::thread::sleep(timeout.min(Duration::from_millis(5)));
        }
        Ok(seen)
    }

    fn stats(&mut self) -> Vec<RingStats> {
        self.handles
            .iter_mut()
            .map(|h| {
                let s = h.cap.stats().unwrap_or(pcap::Stat {
                    received: 0,
                    dropped: 0,
                    if_dropped: 0,
                });
                RingStats {
                    interface: h.interface.clone(),
                    worker: 0,
                    packets: u64::from(s.received),
                    drops: u64::from(s.dropped) + u64::from(s.if_dropped),
                    freezes: 0,
                }
            })
            .collect()
    }
}
