//! Application-layer parsers fed by the flow workers.
//!
//! A flow's [`AppState`] says, per direction, whether any parser still wants
//! stream bytes ([`AppState::wants`]). While one does, the worker keeps a
//! bounded reassembler for that direction and hands it the in-order stream;
//! once none does, the reassembler is freed and the flow is only counted
//! (STYLE habit 6: stop work once the answer is known).

pub mod dhcp;
pub mod dhcp6;
pub mod dns;
pub mod evidence;
pub mod features;
pub mod parser;
pub mod quic;
pub mod service;
pub mod tls;

use crate::flow::key::Direction;
use crate::flow::reassembly::StreamEvent;
use crate::time::Timestamp;
use features::{PayloadFeatures, Sampler};
use parser::{Cx, End, Parser, ParserSet, Probe};

/// Per-flow parser state: the first-payload samplers, the registry
/// entries not yet probed, and the parsers that claimed the flow.
#[derive(Debug, Default)]
pub struct AppState {
    sample: [Sampler; 2],
    /// Probed at the flow's first payload (either direction), then empty.
    unprobed: ParserSet,
    parsers: Vec<Box<dyn Parser>>,
}

impl AppState {
    /// `enabled`: the registry entries of the flow's transport that are on.
    pub fn new(first_payload_bytes: usize, enabled: ParserSet) -> Self {
        AppState {
            sample: [
                Sampler::new(first_payload_bytes),
                Sampler::new(first_payload_bytes),
            ],
            unprobed: enabled,
            parsers: Vec::new(),
        }
    }

    /// Bytes this state holds, itself included, about (for `flow.memcap`).
    pub fn footprint(&self) -> usize {
        std::mem::size_of::<AppState>()
            + self.sample.iter().map(Sampler::heap_bytes).sum::<usize>()
            + self.parsers.capacity() * std::mem::size_of::<Box<dyn Parser>>()
            + self.parsers.iter().map(|p| p.heap_bytes()).sum::<usize>()
    }

    /// Does any parser still want bytes of direction `d`?
    pub fn wants(&self, d: Direction) -> bool {
        self.sample[d.index()].wants()
            || !self.unprobed.is_empty()
            || self.parsers.iter().any(|p| p.wants(d))
    }

    /// In-order stream bytes (TCP) or a datagram's payload (UDP, with its
    /// packet in `cx`).
    pub fn on_stream(&mut self, d: Direction, ev: StreamEvent<'_>, cx: &mut Cx<'_>) {
        let s = &mut self.sample[d.index()];
        match ev {
            StreamEvent::Data(b) => {
                s.feed(b);
                if !self.unprobed.is_empty() {
                    let (sport, dport) = match cx.packet {
                        Some(p) => (p.key.sport, p.key.dport),
                        None if d == Direction::ToServer => (cx.key.sport, cx.key.dport),
                        None => (cx.key.dport, cx.key.sport),
                    };
                    let probe = Probe {
                        sport,
                        dport,
                        dir: d,
                        first: b,
                    };
                    self.parsers = self.unprobed.claim(&probe);
                    self.unprobed = ParserSet::default();
                }
            }
            // Nothing can be probed across a gap.
            StreamEvent::Gap(_) => {
                s.gap();
                self.unprobed = ParserSet::default();
            }
        }
        for p in &mut self.parsers {
            // A gap reaches every parser: a handshake cannot be bridged.
            if matches!(ev, StreamEvent::Gap(_)) || p.wants(d) {
                p.feed(d, ev, cx);
            }
        }
    }

    /// The side's first FIN or RST, after that packet's payload was fed.
    pub fn on_close(&mut self, d: Direction, rst: bool, ts: Timestamp) {
        for p in &mut self.parsers {
            p.on_close(d, rst, ts);
        }
    }

    /// The flow ended: each parser writes what it owns, in registry order.
    pub fn finish(&mut self, end: &mut End<'_>) {
        for p in &mut self.parsers {
            p.finish(end);
        }
    }

    pub fn payload_features(&self, d: Direction) -> Option<PayloadFeatures> {
        self.sample[d.index()].features()
    }

    /// The protocol the flow speaks (Zeek's `service` names), if recognised:
    /// a parser's word first, else the first bytes and ports.
    pub fn service(&self, tcp: bool, sport: u16, dport: u16) -> Option<&'static str> {
        self.parsers.iter().find_map(|p| p.service()).or_else(|| {
            service::identify(
                tcp,
                sport,
                dport,
                self.sample[0].bytes(),
                self.sample[1].bytes(),
            )
        })
    }

    /// The parsers' limits for the flow record's `limits`.
    pub fn limits(&self) -> crate::record::Limits {
        self.parsers.iter().filter_map(|p| p.limit()).collect()
    }

    /// The flow's parser of type `T`, if it claimed the flow.
    pub fn parser<T: Parser>(&self) -> Option<&T> {
        self.parsers
            .iter()
            .find_map(|p| (p.as_ref() as &dyn std::any::Any).downcast_ref())
    }
}
