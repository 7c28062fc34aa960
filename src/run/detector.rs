//! The detector's own thread (replay with workers, issue 17): the
//! correlator hands it one ordered stream — its record blocks, and each
//! call it makes to the detector in its place — and it hands the blocks
//! on to the encoders with the detections spliced in where the correlator
//! made the call.
//!
//! ```text
//!  correlator ──Hold, Release, Learnt, Block(records, marks), …──▶ detector ──blocks──▶ encoders
//! ```
//!
//! A block's marks are the record indices at which the correlator called
//! the detector, in order. Every call is sent before the block that holds
//! its mark, so the detector has made that call's detections (kept in a
//! queue, oldest first) by the time the block arrives. The records come
//! out in the very order the correlator would have written them with the
//! detector inline, whatever the thread timing.
//!
//! The CA learner stays with the correlator, which annotates the `tls`
//! records as it goes; the detector asks whether a session's CA is learnt
//! at the point of the stream where it evaluates, so the correlator sends
//! the learnt keys again (`Learnt`) whenever they may have changed, ahead
//! of the next call. The detector's counters come back in a `Report`
//! before the correlator writes its stats record.

use super::{Handoff, ToSink};
use crate::correlate::{Correlator, RecordBatch};
use crate::detect::{Detector, Session};
use crate::record::{DetectionRecord, Record};
use crate::time::Timestamp;
use crossbeam_channel::{Receiver, Sender, bounded};
use std::collections::{BTreeMap, VecDeque};
use std::thread::JoinHandle;
use std::time::Instant;

/// Steps queued ahead of the detector thread.
const QUEUE: usize = 64;

/// What the correlator sends, in its order.
pub enum Step {
    /// A block of records; the detections of the calls marked at each
    /// index go in before the record at that index (or at the end).
    Block(RecordBatch, Vec<u32>),
    Hold(Vec<Session>),
    Release(Timestamp),
    Finish,
    /// Sensor mode: windows that ended before the time, and `open`
    /// detections due by it.
    Advance(Timestamp),
    AdvanceOpen(Timestamp),
    /// Sensor SIGHUP: new detection settings, apps and baseline.
    Reload(
        std::sync::Arc<crate::detect::DetectSettings>,
        Box<crate::detect::context::Apps>,
        Option<std::sync::Arc<crate::detect::baseline::Baseline>>,
    ),
    /// Passed on to the sink in its turn (`Handoff::sync`).
    Sync(Sender<()>),
    /// The keys of the learnt CAs from here on.
    Learnt(Vec<u64>),
    /// Everything before it is done: the counters, for the stats record.
    Report(Sender<Report>),
}

/// The detector's side of the stats record.
#[derive(Default)]
pub struct Report {
    pub counters: BTreeMap<&'static str, u64>,
    pub ja4_apps_over_cap: u64,
    /// Detection records made so far.
    pub detections: u64,
}

/// The correlator's end: the channel, the marks of the block being
/// filled and of the full blocks waiting, and the learnt keys last sent.
pub struct Remote {
    tx: Sender<Step>,
    /// The encoders' queues (for the sensor's `queued_blocks`).
    encoders: Vec<Sender<ToSink>>,
    /// The sink's end ([`Handoff::watching`]).
    gone: Option<Receiver<()>>,
    /// Disconnected when the detector thread ends: a request queued to it
    /// then (a sync, a report) is never answered, nor dropped while we
    /// hold the channel's sender.
    ended: Receiver<()>,
    /// When a block was last sent.
    last_send: Instant,
    pub marks: Vec<u32>,
    pub full_marks: VecDeque<Vec<u32>>,
    learnt_sent: u64,
    thread: Option<JoinHandle<Detector>>,
    /// The detector thread has stopped (its sink did): nothing more goes.
    pub stopped: bool,
}

impl Remote {
    /// Starts the detector thread with `detector`, handing its blocks to
    /// the encoders `sink`.
    /// `learner` is the correlator's (it keeps it).
    pub fn start(
        mut detector: Detector,
        learner: &crate::correlate::inspection::Learner,
        sink: Handoff,
        fleet: Option<crate::fleet::DetectorSync>,
    ) -> Remote {
        let (tx, rx) = bounded(QUEUE);
        let encoders = sink.txs.clone();
        let gone = sink.gone.clone();
        let (alive, ended) = bounded::<()>(0);
        detector.learnt_keys = Some(learner.learnt_keys());
        let learnt_sent = learner.generation;
        let thread = std::thread::Builder::new()
            .name("detector".into())
            .spawn(move || {
                let _alive = alive;
                run(detector, rx, sink, fleet)
            })
            .expect("spawn detector thread");
        Remote {
            tx,
            encoders,
            gone,
            ended,
            last_send: Instant::now(),
            marks: Vec::new(),
            full_marks: VecDeque::new(),
            learnt_sent,
            thread: Some(thread),
            stopped: false,
        }
    }

    pub fn send(&mut self, step: Step) {
        if !self.stopped && self.tx.send(step).is_err() {
            self.stopped = true;
        }
    }

    /// Sends the learnt keys when the learner's generation moved since.
    pub fn learnt(&mut self, learner: &crate::correlate::inspection::Learner) {
        if learner.generation != self.learnt_sent {
            self.learnt_sent = learner.generation;
            self.send(Step::Learnt(learner.learnt_keys()));
        }
    }

    /// A block with the marks of the calls in it.
    pub fn send_block(&mut self, block: RecordBatch, marks: Vec<u32>) {
        self.last_send = Instant::now();
        self.send(Step::Block(block, marks));
    }

    /// A call in the stream, marked at `at` in the block being filled.
    pub fn call(&mut self, at: usize, step: Step) {
        self.marks.push(at as u32);
        self.send(step);
    }

    /// Waits until the sink has written everything sent before; false
    /// when it has stopped.
    pub fn sync(&mut self) -> bool {
        let (tx, rx) = bounded(1);
        self.send(Step::Sync(tx));
        if self.stopped {
            return false;
        }
        // An answer that came just before the end still counts. Without
        // a sink to watch (replay), only the detector thread's end.
        let never = crossbeam_channel::never();
        crossbeam_channel::select! {
            recv(rx) -> r => r.is_ok(),
            recv(self.gone.as_ref().unwrap_or(&never)) -> _ => rx.try_recv().is_ok(),
            recv(self.ended) -> _ => rx.try_recv().is_ok(),
        }
    }

    /// Blocks waiting for the encoders and the sink (what waits for the
    /// detector thread is mostly calls, not blocks).
    pub fn queued(&self) -> usize {
        self.encoders.iter().map(Sender::len).sum::<usize>()
    }

    /// The detector's counters, once it has done everything sent before.
    pub fn report(&mut self) -> Report {
        let (tx, rx) = bounded(1);
        self.send(Step::Report(tx));
        crossbeam_channel::select! {
            recv(rx) -> r => r.unwrap_or_default(),
            recv(self.ended) -> _ => rx.try_recv().unwrap_or_default(),
        }
    }

    /// Closes the stream and waits for the thread: the detector, with what
    /// it gathered (`wants`).
    pub fn join(mut self) -> Option<Detector> {
        drop(self.tx);
        drop(self.encoders);
        self.thread.take().and_then(|t| t.join().ok())
    }
}

/// Where the correlator's blocks go: through the detector's thread to the
/// encoders. Replay (with workers) and capture start it the same way.
pub struct Out;

impl Out {
    /// Moves the detector to its own thread, which hands blocks to `sink`.
    pub fn start(corr: &mut Correlator, sink: Handoff) -> Out {
        corr.detector_thread(sink);
        Out
    }

    /// Hands on the full blocks (`partial`: the last one too); false when
    /// the sink has stopped.
    pub fn blocks(&mut self, corr: &mut Correlator, partial: bool) -> bool {
        corr.send_blocks(partial)
    }

    /// Time since a block was last handed on.
    pub fn idle(&self, corr: &mut Correlator) -> std::time::Duration {
        corr.remote()
            .map_or_else(Default::default, |r| r.last_send.elapsed())
    }

    /// Blocks waiting to be written.
    pub fn queued(&self, corr: &mut Correlator) -> usize {
        corr.remote().map_or(0, |r| r.queued())
    }

    /// Waits until the sink has written everything handed on so far.
    pub fn sync(&mut self, corr: &mut Correlator) -> bool {
        corr.remote().is_some_and(Remote::sync)
    }
}

/// `fleet`: the fleet state's sync of the detector's proxy fingerprints,
/// around each hold and release, as the correlator syncs around them inline.
fn run(
    mut d: Detector,
    rx: Receiver<Step>,
    mut sink: Handoff,
    mut fleet: Option<crate::fleet::DetectorSync>,
) -> Detector {
    let mut found: VecDeque<Vec<Record>> = VecDeque::new();
    let mut made = 0u64;
    for step in rx {
        let syncs = matches!(step, Step::Hold(_) | Step::Release(_));
        if syncs && let Some(f) = &mut fleet {
            f(&mut d);
        }
        let mut keep = |v: Vec<DetectionRecord>| {
            made += v.len() as u64;
            found.push_back(
                v.into_iter()
                    .map(|d| Record::Detection(Box::new(d)))
                    .collect(),
            );
        };
        match step {
            Step::Hold(mut s) => keep(d.hold(&mut s)),
            Step::Release(h) => keep(d.release(h)),
            Step::Finish => keep(d.finish()),
            Step::Advance(t) => keep(d.advance(t)),
            Step::AdvanceOpen(t) => keep(d.advance_open(t)),
            Step::Reload(s, apps, baseline) => {
                d.s = s;
                d.apps = *apps;
                d.baseline = baseline;
            }
            Step::Sync(ack) => {
                if !sink.send(ToSink::Sync(ack)) {
                    break;
                }
            }
            Step::Learnt(keys) => d.learnt_keys = Some(keys),
            Step::Report(tx) => {
                let _ = tx.send(Report {
                    counters: crate::record::sorted(&d.counters),
                    ja4_apps_over_cap: d.apps.ja4_dropped,
                    detections: made,
                });
            }
            Step::Block(block, marks) => {
                let block = splice(block, &marks, &mut found);
                // Capture's timer calls on a quiet link: no record, and
                // nothing to wake the encoders and the sink for.
                if block.is_empty() {
                    continue;
                }
                if !sink.send_block(block) {
                    // The sink stopped: the correlator sees the channel close.
                    break;
                }
            }
        }
        if syncs && let Some(f) = &mut fleet {
            f(&mut d);
        }
    }
    d
}

/// `block` with the detections of each mark's call (taken from `found`,
/// oldest first) put in before the record at the mark.
fn splice(block: RecordBatch, marks: &[u32], found: &mut VecDeque<Vec<Record>>) -> RecordBatch {
    let calls: Vec<Vec<Record>> = marks
        .iter()
        .map(|_| found.pop_front().unwrap_or_default())
        .collect();
    let n: usize = calls.iter().map(Vec::len).sum();
    if n == 0 {
        return block;
    }
    let mut out = Vec::with_capacity(block.len() + n);
    let mut calls = marks.iter().zip(calls).peekable();
    for (i, r) in block.into_iter().enumerate() {
        while let Some((_, v)) = calls.next_if(|(m, _)| **m as usize <= i) {
            out.extend(v);
        }
        out.push(r);
    }
    for (_, v) in calls {
        out.extend(v);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::StatsRecord;

    /// A record told apart by its time: `n`.
    fn rec(n: u64) -> Record {
        Record::Stats(Box::new(StatsRecord {
            ts: Timestamp(n),
            ..Default::default()
        }))
    }

    fn times(block: &RecordBatch) -> Vec<u64> {
        block
            .iter()
            .map(|r| match r {
                Record::Stats(s) => s.ts.0,
                _ => unreachable!(),
            })
            .collect()
    }

    #[test]
    fn detections_go_in_at_their_marks_in_call_order() {
        let mut found =
            VecDeque::from([vec![rec(11), rec(12)], vec![], vec![rec(13)], vec![rec(14)]]);
        // Calls after the first record, again there, and after the second
        // (the block's end).
        let out = splice(vec![rec(1), rec(2)], &[1, 1, 2], &mut found);
        assert_eq!(times(&out), [1, 11, 12, 2, 13]);
        assert_eq!(found.len(), 1);
        // Before the first record.
        let out = splice(vec![rec(3)], &[0], &mut found);
        assert_eq!(times(&out), [14, 3]);
        // No detections: the block goes on as it came.
        let out = splice(vec![rec(4)], &[0, 1], &mut found);
        assert_eq!(times(&out), [4]);
        assert!(found.is_empty());
    }
}
