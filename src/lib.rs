//! blindspot: a passive network sensor for managed iOS fleets.
//!
//! It reads packets (pcap/pcapng files in replay, a mirror port live),
//! follows every TCP and UDP flow, and writes JSON Lines records that feed a
//! SIEM. The tree follows the pipeline:
//!
//! ```text
//! capture (sources) → decode → dispatch (symmetric hash) → flow workers
//!   (flow table, TCP state, bounded reassembly, app parsers)
//!   → correlate (one owner of device state) → detect (AN1726, AN1717)
//!   → output (sinks)
//! ```
//!
//! Invariants, held throughout:
//! - **No panic on any input.** Wire data is hostile; lengths are checked
//!   before use and clamped, sequence arithmetic wraps.
//! - **Bounded.** Every buffer, table and queue has a cap and a counter for
//!   what it refused (see the `stats` record).
//! - **Packet time.** Timeouts follow the timestamps on packets, never the
//!   wall clock, so a replay is deterministic whatever the worker count.
#![forbid(unsafe_code)]

pub mod app;
pub mod bounded;
pub mod capture;
pub mod config;
pub mod correlate;
pub mod decode;
pub mod detect;
pub mod fleet;
pub mod flow;
#[doc(hidden)]
pub mod fuzzing;
pub mod inputs;
pub mod output;
pub mod record;
pub mod report;
pub mod run;
#[cfg(unix)]
pub mod sensor;
pub mod time;
