//! Sources: where frames come from.
//!
//! A source yields [`Chunk`]s: one owned block of bytes (shared by reference
//! count with the workers, so packet bytes are never copied on the hot path)
//! and the frames found in it. Replay reads pcap and pcapng files
//! ([`pcap_file`]); the live sources of the sensor mode share this shape.

#[cfg(target_os = "linux")]
pub mod afpacket;
#[cfg(feature = "libpcap")]
pub mod libpcap;
pub mod live;
pub mod pcap_file;

use crate::time::Timestamp;
use std::sync::Arc;

/// One captured frame, as a range of its chunk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameRef {
    pub ts: Timestamp,
    /// Byte offset of the frame in [`Chunk::data`].
    pub offset: u32,
    /// Captured length (bytes present in the chunk).
    pub caplen: u32,
    /// Length on the wire (pcap `orig_len`), what tshark calls `frame.len`.
    pub wire_len: u32,
    /// LINKTYPE_* value of the interface the frame came from.
    pub linktype: u16,
}

/// A block of capture bytes and the frames in it.
#[derive(Debug, Default)]
pub struct Chunk {
    pub data: Arc<Vec<u8>>,
    pub frames: Vec<FrameRef>,
}

impl Chunk {
    pub fn frame_bytes(&self, f: &FrameRef) -> &[u8] {
        let start = f.offset as usize;
        let end = start.saturating_add(f.caplen as usize).min(self.data.len());
        self.data.get(start..end).unwrap_or(&[])
    }
}

/// Link-layer types blindspot decodes (tcpdump.org/linktypes.html).
pub mod linktype {
    pub const NULL: u16 = 0;
    pub const ETHERNET: u16 = 1;
    pub const RAW_OPENBSD: u16 = 12;
    pub const RAW_BSD: u16 = 14;
    pub const RAW: u16 = 101;
    pub const LOOP: u16 = 108;
    pub const LINUX_SLL: u16 = 113;
    pub const IPV4: u16 = 228;
    pub const IPV6: u16 = 229;
    pub const LINUX_SLL2: u16 = 276;
}
