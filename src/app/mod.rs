//! Application-layer parsers fed by the flow workers.
//!
//! A flow's [`AppState`] says, per direction, whether any parser still wants
//! stream bytes ([`AppState::wants`]). While one does, the worker keeps a
//! bounded reassembler for that direction and hands it the in-order stream;
//! once none does, the reassembler is freed and the flow is only counted
//! (STYLE habit 6: stop work once the answer is known).

pub mod features;

use crate::flow::key::Direction;
use crate::flow::reassembly::StreamEvent;
use features::{PayloadFeatures, Sampler};

/// Per-flow parser state.
#[derive(Debug, Default)]
pub struct AppState {
    sample: [Sampler; 2],
}

fn idx(d: Direction) -> usize {
    match d {
        Direction::ToServer => 0,
        Direction::ToClient => 1,
    }
}

impl AppState {
    pub fn new(first_payload_bytes: usize) -> Self {
        AppState {
            sample: [
                Sampler::new(first_payload_bytes),
                Sampler::new(first_payload_bytes),
            ],
        }
    }

    /// Does any parser still want bytes of direction `d`?
    pub fn wants(&self, d: Direction) -> bool {
        self.sample[idx(d)].wants()
    }

    /// In-order stream bytes (TCP) or a datagram's payload (UDP).
    pub fn on_stream(&mut self, d: Direction, ev: StreamEvent<'_>) {
        let s = &mut self.sample[idx(d)];
        match ev {
            StreamEvent::Data(b) => s.feed(b),
            StreamEvent::Gap(_) => s.gap(),
        }
    }

    pub fn payload_features(&self, d: Direction) -> Option<PayloadFeatures> {
        self.sample[idx(d)].features()
    }
}
