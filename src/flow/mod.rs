//! Flows: identity, TCP state, bounded reassembly and the per-worker table.

pub mod key;
pub mod reassembly;
pub mod table;
pub mod tcp;

use crate::time::{NANOS_PER_SEC, Nanos};

/// Flow-table settings (config section `[flow]`, documented in the README).
#[derive(Clone, Copy, Debug)]
pub struct FlowSettings {
    /// Flows tracked at once across all workers; beyond it the flow nearest
    /// its timeout is evicted (counted as `evicted`). Default 500 000.
    pub max_flows: usize,
    /// TCP idle timeout once data or a handshake was seen (default 300 s, Zeek's `tcp_inactivity_timeout`).
    pub tcp_idle: Nanos,
    /// TCP timeout while only a SYN was seen (default 30 s).
    pub tcp_attempt: Nanos,
    /// Linger after both FINs or a RST, for trailing ACKs (default 5 s, Zeek's `tcp_close_delay`).
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
            tcp_idle: 300 * NANOS_PER_SEC,
            tcp_attempt: 30 * NANOS_PER_SEC,
            tcp_closed: 5 * NANOS_PER_SEC,
            udp_idle: 60 * NANOS_PER_SEC,
            first_payload_bytes: 1024,
            tls: true,
            reassembly: reassembly::ReassemblyLimits::default(),
        }
    }
}
