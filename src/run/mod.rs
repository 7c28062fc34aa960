//! The stages replay and capture share. They differ only in their source:
//!
//! ```text
//!  source                      flow workers (N)           correlator (1)           sink (1)
//!  replay.rs: files → chunks   flow table, parsers ─┐     order.rs: InOrder /      sink.rs: encode,
//!    → decode → hash ─────────▶ ...                 ├──▶  Watermark, EndMerge ───▶ write, flush,
//!  sensor/: AF_PACKET rings,   flow table, parsers ─┘     correlate/, stats.rs      rotate
//!    each worker decodes
//! ```
//!
//! - [`order`] puts the workers' output in one order before the
//!   correlator: by chunk number in replay (exact), by packet time live.
//! - [`correlator`] makes the correlator the same way for both; the
//!   [`Handoff`] hands its blocks of records to the sink thread.
//! - [`stats`] assembles the `stats` and `coverage` records.
//! - [`encode`] is the encoder pool between them: block `k` is encoded
//!   by encoder `k mod E` and written in turn.
//! - [`sink`] is the sink thread: it writes what the encoders made;
//!   replay's stops at the first write error, capture's holds and retries.

pub mod detector;
pub mod encode;
pub mod order;
pub mod replay;
pub mod sink;
pub mod stats;

pub use replay::{Outcome, OutputError, replay};

use crate::config::Config;
use crate::correlate::devices::Devices;
use crate::correlate::{Correlator, RecordBatch};
use crossbeam_channel::Sender;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The beat of the live stages: how often a capture worker advances its
/// timers and hands records on, and how often the correlator and the sink
/// look at their timers.
pub const TICK: Duration = Duration::from_millis(100);

/// The correlator of a run: device inputs, inspection CAs, the detector.
pub fn correlator(cfg: &Config) -> Correlator {
    let inputs = &cfg.device_inputs;
    let apps = crate::detect::context::Apps::new(inputs.apps.clone(), &inputs.app_events);
    let detector = crate::detect::Detector::new(
        Arc::clone(&cfg.detect),
        apps,
        cfg.baseline.clone(),
        cfg.evidence_dir.is_some(),
    );
    let devices = Devices::new(cfg.device_limits, (**inputs).clone());
    let mut c = Correlator::new(Arc::clone(&cfg.inspection), devices, detector);
    c.proxy = crate::correlate::proxylog::ProxyIndex::new(Arc::clone(&inputs.proxy_log));
    c.fleet = crate::fleet::tap(cfg);
    c
}

/// What the correlator hands the encoder pool (and so the sink thread).
pub enum ToSink {
    /// Records, and when they were sent; an encoder encodes them.
    Block(Instant, RecordBatch),
    /// Write everything received so far (capture: retrying while writes
    /// fail), then answer.
    Sync(Sender<()>),
}

/// The detector thread's end of the channels to the sink thread: the
/// encoder pool's channels taken in turn ([`encode`]).
pub struct Handoff {
    txs: Vec<Sender<ToSink>>,
    next: usize,
    /// Disconnected when the sink thread has ended ([`Handoff::watching`]).
    gone: Option<crossbeam_channel::Receiver<()>>,
}

impl Handoff {
    /// Hands block `k` to `txs[k mod len]` (the sink takes them back in turn).
    pub fn pooled(txs: Vec<Sender<ToSink>>) -> Self {
        Handoff {
            txs,
            next: 0,
            gone: None,
        }
    }

    /// A sync ([`detector::Remote::sync`]) gives up once `gone`
    /// disconnects: the sink thread holds its sender and drops it as it
    /// ends. A `Sync` queued behind an encoder that ended (its sink went
    /// first) is never answered, nor dropped while its channel has a sender.
    pub fn watching(mut self, gone: crossbeam_channel::Receiver<()>) -> Self {
        self.gone = Some(gone);
        self
    }

    fn send(&mut self, item: ToSink) -> bool {
        let ok = self.txs[self.next].send(item).is_ok();
        self.next = (self.next + 1) % self.txs.len();
        ok
    }

    /// Hands on one block; false when the sink has stopped.
    pub fn send_block(&mut self, block: RecordBatch) -> bool {
        self.send(ToSink::Block(Instant::now(), block))
    }
}
