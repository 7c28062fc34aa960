//! What the live sources (AF_PACKET rings, libpcap) hand the sensor's
//! workers: frames as they arrive, and the capture counters of each ring.

use crate::time::Timestamp;
use serde::Serialize;
use std::time::Duration;

/// One frame, borrowed from the source until the callback returns.
#[derive(Clone, Copy, Debug)]
pub struct LiveFrame<'a> {
    pub data: &'a [u8],
    pub ts: Timestamp,
    pub wire_len: u32,
    /// LINKTYPE_* of the interface.
    pub linktype: u16,
}

/// Counters of one ring (AF_PACKET) or handle (libpcap), since it opened.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct RingStats {
    pub interface: String,
    pub worker: usize,
    /// Packets the kernel passed to the ring (`tp_packets`).
    pub packets: u64,
    /// Packets the kernel dropped because the ring was full (`tp_drops`).
    pub drops: u64,
    /// Times the ring froze its queue (`tp_freeze_q_cnt`; 0 under libpcap).
    pub freezes: u64,
}

/// Ring geometry and socket options (config `[capture]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingSettings {
    /// Bytes per ring block (a power of two, a multiple of the page size).
    pub block_size: usize,
    /// Blocks per ring.
    pub blocks: usize,
    /// Milliseconds after which the kernel hands over a block that is not full.
    pub block_timeout_ms: u32,
    pub promiscuous: bool,
}

/// A worker's packet source.
pub trait LiveSource: Send {
    /// Calls `f` for the frames ready now; when there are none, waits up to
    /// `timeout` for some. Returns how many frames were handed over.
    fn poll(
        &mut self,
        timeout: Duration,
        f: &mut dyn FnMut(LiveFrame<'_>),
    ) -> std::io::Result<usize>;

    /// Cumulative counters of each ring or handle.
    fn stats(&mut self) -> Vec<RingStats>;
}
