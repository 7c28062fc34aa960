//! Flows: identity, TCP state, bounded reassembly and the per-worker table.

pub mod isn;
pub mod key;
pub mod reassembly;
pub mod table;
pub mod tcp;

use crate::time::{NANOS_PER_SEC, Nanos};

const NANOS_PER_MS: Nanos = NANOS_PER_SEC / 1000;

/// Flow-table settings (config section `[flow]`, documented in the README).
#[derive(Clone, Copy, Debug)]
pub struct FlowSettings {
    /// Flows tracked at once across all workers; beyond it the flow nearest
    /// its timeout is evicted (counted as `evicted`). Default 500 000.
    pub max_flows: usize,
    /// Memory the flow tables may hold, all workers together, in bytes
    /// (default 1 GiB; `flow.memcap`, as Suricata's): each flow's structure
    /// and the parser state and out-of-order bytes it holds, about. Beyond
    /// it the flow nearest its timeout is evicted (`evicted_memcap`).
    pub memcap: usize,
    /// TCP idle timeout once data or a handshake was seen (default 300 s, Zeek's `tcp_inactivity_timeout`).
    pub tcp_idle: Nanos,
    /// TCP timeout while only a SYN was seen (default 30 s).
    pub tcp_attempt: Nanos,
    /// After a RST, or both FINs not yet both acknowledged, packets are
    /// still counted in the flow for this long after the last one, then its
    /// record is written (default 250 ms: a packet racing the close crosses
    /// it within a round trip, and a sensor killed a second after a close
    /// has written it). A close whose FINs are both acknowledged is written
    /// at that acknowledgement.
    pub tcp_close_linger: Nanos,
    /// After the record of a closed connection, its trailing packets are
    /// absorbed (counted in `late_packets`) for this long instead of
    /// starting a new flow (default 5 s, Zeek's `tcp_close_delay`).
    pub tcp_closed: Nanos,
    /// UDP idle timeout (default 60 s, Zeek's `udp_inactivity_timeout`).
    pub udp_idle: Nanos,
    /// Bytes per direction for first-payload features (default 1024).
    pub first_payload_bytes: usize,
    /// Look for TLS in every TCP flow (default true; false gives flows only).
    pub tls: bool,
    pub reassembly: reassembly::ReassemblyLimits,
}

impl Default for FlowSettings {
    fn default() -> Self {
        FlowSettings {
            max_flows: 500_000,
            memcap: 1 << 30,
            tcp_idle: 300 * NANOS_PER_SEC,
            tcp_attempt: 30 * NANOS_PER_SEC,
            tcp_close_linger: 250 * NANOS_PER_MS,
            tcp_closed: 5 * NANOS_PER_SEC,
            udp_idle: 60 * NANOS_PER_SEC,
            first_payload_bytes: 1024,
            tls: true,
            reassembly: reassembly::ReassemblyLimits::default(),
        }
    }
}
