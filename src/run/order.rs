//! Putting the workers' output back in one order before the correlator,
//! so that what it sees does not depend on the worker count or on thread
//! timing: [`InOrder`] by chunk number (replay: exact), [`Watermark`] by
//! packet time (capture: the workers' clocks), and [`EndMerge`] for the
//! flows every worker still holds when the input ends.

use crate::app::evidence::Evidence;
use crate::correlate::Correlator;
use crate::record::{FlowId, Record};
use crate::time::Timestamp;
use std::collections::BTreeMap;
use std::time::Instant;

/// Merges the workers' end-of-input pieces into one sequence ordered by
/// flow start and flow id, as one worker's drain would be: the detections
/// see the same sessions in the same order whatever the worker count, and
/// only a few pieces are held at once instead of every open flow's record.
pub struct EndMerge {
    queues: Vec<std::collections::VecDeque<Record>>,
    /// Sent its first piece: every regular chunk of it came before.
    pub started: Vec<bool>,
    last: Vec<bool>,
}

impl EndMerge {
    pub fn new(workers: usize) -> Self {
        EndMerge {
            queues: (0..workers).map(|_| Default::default()).collect(),
            started: vec![false; workers],
            last: vec![false; workers],
        }
    }

    pub fn add(&mut self, worker: usize, records: Vec<Record>, last: bool) {
        self.started[worker] = true;
        self.last[worker] |= last;
        self.queues[worker].extend(records);
    }

    pub fn all_done(&self) -> bool {
        self.last.iter().all(|l| *l) && self.queues.iter().all(|q| q.is_empty())
    }

    /// The merge key of a queue's first flow: its start and flow id. A flow's
    /// records end with its `flow` record (a `tls` record comes before it).
    fn head_key(q: &std::collections::VecDeque<Record>) -> Option<(Timestamp, FlowId)> {
        q.iter().find_map(|r| match r {
            Record::Flow(f) => Some((f.ts, f.flow_id)),
            _ => None,
        })
    }

    /// Moves the flows that can go now into `out`, in order: the smallest
    /// head of all queues, while no worker that may still send is empty.
    pub fn release(&mut self, out: &mut Vec<Record>, max: usize) {
        if !self.started.iter().all(|s| *s) {
            return;
        }
        while out.len() < max {
            let mut best: Option<(usize, (Timestamp, FlowId))> = None;
            for (w, q) in self.queues.iter().enumerate() {
                match Self::head_key(q) {
                    Some(k) if best.is_none_or(|(_, b)| k < b) => best = Some((w, k)),
                    Some(_) => {}
                    None if !self.last[w] => return,
                    None => {}
                }
            }
            let Some((w, _)) = best else { return };
            let q = &mut self.queues[w];
            while let Some(r) = q.pop_front() {
                let flow = matches!(r, Record::Flow(_));
                out.push(r);
                if flow {
                    break;
                }
            }
        }
    }
}

/// Puts the correlator's input back in chunk order: a chunk's evidence is
/// applied, then its records are resolved, once every worker is past it —
/// the order a one-thread replay has, so device lookups (and so records) do
/// not depend on the number of workers. Holds at most the chunks in flight
/// in the bounded channels.
pub struct InOrder {
    workers: usize,
    evidence: BTreeMap<u64, Vec<Evidence>>,
    /// Per chunk: the workers past it, its records, and the smallest
    /// horizon they reported (`detect::admit`).
    records: BTreeMap<u64, (usize, Vec<Record>, Timestamp)>,
}

impl InOrder {
    pub fn new(workers: usize) -> Self {
        InOrder {
            workers,
            evidence: BTreeMap::new(),
            records: BTreeMap::new(),
        }
    }

    /// Chunk `seq`'s device evidence (its decoder sends it before the chunk's batches).
    pub fn evidence(&mut self, seq: u64, evidence: Vec<Evidence>) {
        self.evidence.insert(seq, evidence);
    }

    /// A worker's records of chunk `seq`; `horizon` on its last piece.
    pub fn add(&mut self, seq: u64, recs: Vec<Record>, horizon: Option<Timestamp>) {
        let e = self
            .records
            .entry(seq)
            .or_insert_with(|| (0, Vec::new(), Timestamp(u64::MAX)));
        if let Some(h) = horizon {
            e.0 += 1;
            e.2 = e.2.min(h);
        }
        e.1.extend(recs);
    }

    /// Feeds `corr` every chunk that all workers are done with (or, at the
    /// end, everything), in order.
    pub fn release(&mut self, corr: &mut Correlator, all: bool) {
        loop {
            let rec = self.records.first_key_value().map(|(k, v)| (*k, v.0));
            // A chunk's evidence goes before its records. It can go once a
            // record of the same or a later chunk has come in: workers report
            // chunks in order, so every earlier chunk is released by then.
            if let Some((&e, _)) = self.evidence.first_key_value()
                && rec.map_or(all, |(k, _)| e <= k)
                && let Some((_, ev)) = self.evidence.pop_first()
            {
                corr.evidence(&ev);
                continue;
            }
            match rec {
                Some((_, reported)) if all || reported == self.workers => {
                    if let Some((_, (_, recs, horizon))) = self.records.pop_first() {
                        corr.push(recs);
                        if reported == self.workers {
                            corr.release_sessions(horizon);
                        }
                    }
                }
                _ => return,
            }
        }
    }
}

/// One tick of a live worker: its device evidence and finished records,
/// the packet time it has reached, and when it handed them on.
pub struct Tick {
    pub worker: usize,
    pub now: Timestamp,
    /// The smallest order time its worker's sessions still to come can
    /// have (`detect::admit::horizon`).
    pub horizon: Timestamp,
    pub sent: Instant,
    pub evidence: Vec<Evidence>,
    pub records: Vec<Record>,
}

/// Puts the workers' ticks back in packet-time order, as replay's chunks
/// are: once every worker has reached time T, the evidence of all ticks up
/// to T is applied in packet-time order, then their records are resolved.
/// So device lookups do not depend on which worker saw the DHCP or ARP.
pub struct Watermark {
    reached: Vec<Timestamp>,
    held: Vec<Tick>,
    /// Each worker's horizon as of its last tick released.
    horizons: Vec<Timestamp>,
}

impl Watermark {
    pub fn new(workers: usize) -> Self {
        Watermark {
            reached: vec![Timestamp::ZERO; workers],
            held: Vec::new(),
            horizons: vec![Timestamp::ZERO; workers],
        }
    }

    pub fn add(&mut self, t: Tick) {
        self.reached[t.worker] = self.reached[t.worker].max(t.now);
        self.held.push(t);
    }

    pub fn finished(&mut self, worker: usize) {
        self.reached[worker] = Timestamp(u64::MAX);
        self.horizons[worker] = Timestamp(u64::MAX);
    }

    pub fn release(&mut self, corr: &mut Correlator) {
        let mark = self
            .reached
            .iter()
            .copied()
            .min()
            .unwrap_or(Timestamp::ZERO);
        // Every worker has handed on all its evidence up to `mark`: apply
        // it in packet-time order, from every tick held...
        let mut evidence = Vec::new();
        for t in &mut self.held {
            let (now, later): (Vec<Evidence>, Vec<Evidence>) = std::mem::take(&mut t.evidence)
                .into_iter()
                .partition(|e| e.ts <= mark);
            evidence.extend(now);
            t.evidence = later;
        }
        evidence.sort_by_key(|e| e.ts);
        corr.evidence(&evidence);
        // DNS answers up to `mark` are learnt before any flow is named.
        let held = self.held.iter_mut().flat_map(|t| t.records.iter_mut());
        corr.learn_dns_until(held, Some(mark));
        // ... then resolve the records of the ticks up to `mark`.
        if !self.held.iter().any(|t| t.now <= mark) {
            return;
        }
        let (mut ready, keep): (Vec<Tick>, Vec<Tick>) = std::mem::take(&mut self.held)
            .into_iter()
            .partition(|t| t.now <= mark);
        self.held = keep;
        ready.sort_by_key(|t| (t.now, t.worker));
        // A released tick's evidence is all applied above: its times are at
        // most the tick's `now`, which is at most `mark`.
        for t in ready {
            let h = &mut self.horizons[t.worker];
            if *h != Timestamp(u64::MAX) {
                *h = (*h).max(t.horizon);
            }
            corr.push(t.records);
        }
        // The sessions no worker can still precede go into the detector.
        let horizon = self.horizons.iter().copied().min().unwrap_or_default();
        corr.release_sessions(horizon);
    }
}
