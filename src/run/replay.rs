//! Replay: files → decode/dispatch → N flow workers → correlator → sink.
//!
//! ```text
//!  reader (this thread)          workers (N)              correlator (1)      sink (1)
//!  files → chunks → decode ─┬──▶ flow table, reassembly ─┐
//!           symmetric hash  ├──▶ flow table, reassembly ─┼─▶ records → JSON ──▶ file / stdout
//!                           └──▶ ...                     ┘
//! ```
//!
//! Every channel is a bounded crossbeam channel carrying batches (one per
//! 512 KiB chunk per worker), so a slow stage makes the reader wait: replay
//! never drops. Packet bytes are not copied: a batch holds a reference to the
//! chunk they lie in. With `workers = 0` the same stages run on one thread
//! with no channels at all.

use crate::app::evidence::Evidence;
use crate::capture::Chunk;
use crate::capture::pcap_file::{CaptureError, CaptureReader};
use crate::config::Config;
use crate::correlate::{Correlator, RecordBatch};
use crate::decode::{self, Decoder, Packet};
use crate::detect::admit::horizon;
use crate::flow::table::{FlowTable, TableStats};
use crate::output::Sink;
use crate::record::{FileStats, Record, StatsRecord};
use crate::run::order::{EndMerge, InOrder};
use crate::run::stats::{counters, finish};
use crate::run::{Handoff, ToSink, correlator, sink as sink_thread};
use crate::time::Timestamp;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, bounded};
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::thread;

/// What a replay ran into besides records.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Files that could not be read at all (named, with the reason).
    pub unusable: Vec<String>,
    /// Files that were cut short or damaged; their records up to there were written.
    pub damaged: Vec<String>,
    pub stats: StatsRecord,
    /// What `--evidence` wrote, or why it could not.
    pub evidence: Option<Result<crate::detect::evidence::EvidenceReport, String>>,
}

/// The output could not be written.
#[derive(Debug)]
pub struct OutputError(pub io::Error);

impl std::fmt::Display for OutputError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}
impl std::error::Error for OutputError {}

/// Packets of one chunk bound for one worker.
pub struct Batch {
    pub chunk: Arc<Vec<u8>>,
    /// Reassembled IP fragments referenced by packets with `in_extra`.
    pub extra: Vec<u8>,
    pub packets: Vec<Packet>,
    /// Latest packet time the reader has seen (drives timeouts on every worker).
    pub now: Timestamp,
    /// The chunk's number: the correlator releases records in this order.
    pub seq: u64,
}

enum Work {
    Batch(Batch),
    End(Timestamp),
}

enum ToCorrelator {
    /// Device evidence of chunk `seq`, sent by the reader before the chunk's batches.
    Evidence(u64, Vec<Evidence>),
    /// A worker's records of chunk `seq`, in pieces of at most
    /// [`RECORDS_PER_MESSAGE`]; the last piece (empty or not, with the
    /// worker's `detect::admit::horizon`) tells the correlator that this
    /// worker is past the chunk. Pieces keep the
    /// records in flight bounded when every packet ends a flow (a SYN flood
    /// evicting one flow per packet makes a record per packet).
    Records(u64, Vec<Record>, Option<Timestamp>),
    /// A worker's end-of-input records (its flows still open), in pieces in
    /// the order of start and flow id; `last` on its final piece.
    End {
        worker: usize,
        records: Vec<Record>,
        last: bool,
    },
}

/// Flows a worker ends per piece at the end of input.
const END_BATCH: usize = 4096;
/// Records a worker hands on per message.
const RECORDS_PER_MESSAGE: usize = 1024;

/// Source + decode: reads the files in order, as one timeline.
pub struct Reader {
    pub decoder: Decoder,
    /// Chunks handed on so far.
    pub seq: u64,
    pub packets: u64,
    pub bytes: u64,
    pub now: Timestamp,
    pub files: Vec<FileStats>,
    pub outcome_unusable: Vec<String>,
    pub outcome_damaged: Vec<String>,
    /// On a terminal: the progress line.
    pub progress: Option<crate::output::progress::Progress>,
    /// Test knob, not documented: `BLINDSPOT_REPLAY_BLOCK` (bytes) reads
    /// the files in blocks of that size instead of 512 KiB, so the tests
    /// can show that records do not depend on where blocks split.
    block: Option<usize>,
}

impl Reader {
    pub fn new(cfg: &Config, files: &[PathBuf]) -> Self {
        Reader {
            decoder: Decoder::new(cfg.defrag),
            seq: 0,
            packets: 0,
            bytes: 0,
            now: Timestamp::ZERO,
            files: Vec::new(),
            outcome_unusable: Vec::new(),
            outcome_damaged: Vec::new(),
            progress: cfg
                .progress
                .then(|| crate::output::progress::Progress::new(files)),
            block: std::env::var("BLINDSPOT_REPLAY_BLOCK")
                .ok()
                .and_then(|v| v.parse().ok()),
        }
    }

    /// Calls `handle` with each chunk's decoded packets, the packet time
    /// and the chunk's device evidence. Stops early when `handle` fails
    /// (the output is gone).
    pub fn run(
        &mut self,
        files: &[PathBuf],
        mut handle: impl FnMut(
            &Chunk,
            &[Packet],
            &[u8],
            Timestamp,
            &mut Vec<Evidence>,
        ) -> Result<(), OutputError>,
    ) -> Result<(), OutputError> {
        let mut packets = Vec::with_capacity(8192);
        let mut extra = Vec::new();
        // Bytes of the files read whole, for the progress line.
        let mut files_done = 0u64;
        for path in files {
            let name = path.display().to_string();
            let mut fs = FileStats {
                file: name.clone(),
                ..FileStats::default()
            };
            let mut reader = match CaptureReader::open(path) {
                Ok(r) => match self.block {
                    Some(b) => r.with_chunk_size(b),
                    None => r,
                },
                Err(e) => {
                    let msg = format!("{name}: {e}");
                    fs.error = Some(e.to_string());
                    self.files.push(fs);
                    self.outcome_unusable.push(msg);
                    continue;
                }
            };
            loop {
                match reader.next_chunk() {
                    Ok(Some(chunk)) => {
                        packets.clear();
                        extra.clear();
                        for f in &chunk.frames {
                            fs.frames += 1;
                            fs.bytes += f.wire_len as u64;
                            self.now = self.now.max(f.ts);
                            if let Some(p) = self.decoder.decode(&chunk.data, f, &mut extra) {
                                packets.push(p);
                            }
                        }
                        self.packets += chunk.frames.len() as u64;
                        self.bytes += chunk.frames.iter().map(|f| f.wire_len as u64).sum::<u64>();
                        let mut evidence = std::mem::take(&mut self.decoder.evidence);
                        let r = handle(&chunk, &packets, &extra, self.now, &mut evidence);
                        reader.recycle(chunk);
                        evidence.clear();
                        self.decoder.evidence = evidence;
                        self.seq += 1;
                        if let Some(p) = &mut self.progress {
                            p.update(files_done + reader.raw_bytes(), self.packets);
                        }
                        r?;
                    }
                    Ok(None) => break,
                    Err(e) => {
                        let msg = format!("{name}: {e}");
                        fs.error = Some(e.to_string());
                        match e {
                            CaptureError::Empty
                            | CaptureError::NotACapture { .. }
                            | CaptureError::Io(_)
                                if fs.frames == 0 =>
                            {
                                self.outcome_unusable.push(msg)
                            }
                            _ => self.outcome_damaged.push(msg),
                        }
                        break;
                    }
                }
            }
            files_done += reader.raw_bytes();
            self.files.push(fs);
        }
        if let Some(p) = &mut self.progress {
            p.finish();
        }
        Ok(())
    }

    /// The reader's part of the stats record.
    fn stats(&self, table: &TableStats) -> StatsRecord {
        let mut s = counters(
            &self.decoder.stats,
            &self.decoder.defrag.stats,
            table,
            self.now,
        );
        s.packets = self.packets;
        s.bytes = self.bytes;
        s.files = self.files.clone();
        s
    }

    fn outcome(self, stats: StatsRecord) -> Outcome {
        Outcome {
            unusable: self.outcome_unusable,
            damaged: self.outcome_damaged,
            stats,
            evidence: None,
        }
    }
}

/// Replays `files` into the sink named `output`.
pub fn replay(files: &[PathBuf], cfg: &Config, output: &str) -> Result<Outcome, OutputError> {
    let sink = Sink::open(output, cfg.flush_interval_ms, cfg.zstd_level)
        .map_err(OutputError)?
        .with_encoding(crate::output::Encoding::for_config(cfg, &[]))
        .with_summary(cfg.progress);
    let (mut outcome, wants) = if cfg.workers == 0 {
        replay_inline(files, cfg, sink)?
    } else {
        replay_threaded(files, cfg, sink)?
    };
    if let Some(dir) = &cfg.evidence_dir {
        outcome.evidence = Some(crate::detect::evidence::write(
            files,
            dir,
            &wants,
            cfg.evidence_limits,
            cfg.defrag,
        ));
    }
    Ok(outcome)
}

/// Records written, and the flows `--evidence` must cut out.
type Replayed = (Outcome, Vec<crate::detect::EvidenceWant>);

fn replay_inline(files: &[PathBuf], cfg: &Config, mut sink: Sink) -> Result<Replayed, OutputError> {
    let mut reader = Reader::new(cfg, files);
    let mut table = FlowTable::new(cfg.flow, 1);
    let mut corr = correlator(cfg);
    let mut out = Vec::new();
    reader.run(files, |chunk, packets, extra, now, evidence| {
        corr.evidence(evidence);
        for p in packets {
            table.process(p, decode::payload(p, &chunk.data, extra), &mut out);
        }
        table.advance(now, &mut out);
        corr.push(out.drain(..));
        corr.release_sessions(horizon(now, table.oldest_open()));
        write_blocks(&mut corr, &mut sink, false).map_err(OutputError)?;
        sink.flush_if_due().map_err(OutputError)
    })?;
    let mut written = Ok(());
    table.drain_batches(reader.now, END_BATCH, &mut out, |recs| {
        corr.push(recs.drain(..));
        if written.is_ok() {
            written = write_blocks(&mut corr, &mut sink, false);
        }
    });
    written.map_err(OutputError)?;
    corr.push(out.drain(..));
    let mut stats = reader.stats(&table.stats);
    finish(&mut corr, &mut stats);
    write_blocks(&mut corr, &mut sink, true).map_err(OutputError)?;
    sink.finish().map_err(OutputError)?;
    let wants = std::mem::take(&mut corr.detector.wants);
    Ok((reader.outcome(stats), wants))
}

/// Writes the correlator's full blocks (`all`: every block, the last partial one too).
fn write_blocks(corr: &mut Correlator, sink: &mut Sink, all: bool) -> io::Result<()> {
    while let Some(block) = corr.next_block(all) {
        sink.write_records(&block)?;
        corr.recycle(block);
    }
    Ok(())
}

fn replay_threaded(files: &[PathBuf], cfg: &Config, sink: Sink) -> Result<Replayed, OutputError> {
    let n = cfg.workers;
    let interval = sink.interval();
    let (corr_tx, corr_rx) = bounded::<ToCorrelator>(cfg.queue_batches * n.max(1));
    let (sink_tx, sink_rx) = bounded::<ToSink>(cfg.queue_batches);
    let (stats_tx, stats_rx) = bounded::<StatsRecord>(1);
    // Emptied buffers go back to the thread that fills them: memory freed on
    // another thread is slow to come back to the allocating one, which then
    // keeps faulting in fresh pages.
    let (spare_packets_tx, spare_packets_rx) =
        bounded::<Vec<Packet>>(cfg.queue_batches * n.max(1) * 2);
    let (spare_blocks_tx, spare_blocks_rx) = bounded::<RecordBatch>(4);

    let sink_thread = thread::Builder::new()
        .name("sink".into())
        .spawn(move || sink_thread::replay(sink_rx, sink, spare_blocks_tx))
        .expect("spawn sink thread");
    let corr = correlator(cfg);
    let corr_thread = thread::Builder::new()
        .name("correlator".into())
        .spawn(move || {
            run_correlator(
                corr,
                corr_rx,
                sink_tx,
                stats_rx,
                n,
                interval,
                spare_blocks_rx,
            )
        })
        .expect("spawn correlator thread");
    let mut work_txs: Vec<Sender<Work>> = Vec::with_capacity(n);
    let mut workers = Vec::with_capacity(n);
    for i in 0..n {
        let (tx, rx) = bounded::<Work>(cfg.queue_batches);
        let ctx = corr_tx.clone();
        let settings = cfg.flow;
        let spare = spare_packets_tx.clone();
        workers.push(
            thread::Builder::new()
                .name(format!("worker-{i}"))
                .spawn(move || run_worker(i, rx, ctx, FlowTable::new(settings, n), spare))
                .expect("spawn worker thread"),
        );
        work_txs.push(tx);
    }
    let mut reader = Reader::new(cfg, files);
    let mut pending: Vec<Vec<Packet>> = (0..n).map(|_| Vec::new()).collect();
    let mut extras: Vec<Vec<u8>> = (0..n).map(|_| Vec::new()).collect();
    let mut seq = 0u64;
    let read_result = reader.run(files, |chunk, packets, extra, now, evidence| {
        // Evidence goes first: every record of this chunk reaches the
        // correlator after it (one FIFO channel, sent before the batches).
        if !evidence.is_empty() {
            corr_tx
                .send(ToCorrelator::Evidence(seq, std::mem::take(evidence)))
                .map_err(|_| OutputError(io::Error::other("pipeline stopped")))?;
        }
        for p in packets {
            let w = (p.key.symmetric_hash() % n as u64) as usize;
            let mut p = *p;
            if p.payload.in_extra {
                let bytes = decode::payload(&p, &chunk.data, extra);
                p.payload.offset = extras[w].len() as u32;
                extras[w].extend_from_slice(bytes);
            }
            pending[w].push(p);
        }
        for w in 0..n {
            let batch = Batch {
                chunk: Arc::clone(&chunk.data),
                extra: std::mem::take(&mut extras[w]),
                packets: std::mem::replace(
                    &mut pending[w],
                    spare_packets_rx
                        .try_recv()
                        .unwrap_or_else(|_| Vec::with_capacity(packets.len() / n + 16)),
                ),
                now,
                seq,
            };
            // A closed channel means a later stage failed; the sink reports why.
            work_txs[w]
                .send(Work::Batch(batch))
                .map_err(|_| OutputError(io::Error::other("pipeline stopped")))?;
        }
        seq += 1;
        Ok(())
    });
    drop(corr_tx);
    let now = reader.now;
    for tx in &work_txs {
        let _ = tx.send(Work::End(now));
    }
    drop(work_txs);
    let mut table_stats = TableStats::default();
    for w in workers {
        if let Ok(s) = w.join() {
            table_stats.merge(&s);
        }
    }
    // Counts are known to the correlator; it completes the record.
    let stats = reader.stats(&table_stats);
    let _ = stats_tx.send(stats);
    let (final_stats, wants) = corr_thread.join().unwrap_or_default();
    let sink_result = sink_thread
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("sink thread panicked")));
    sink_result.map_err(OutputError)?;
    read_result?;
    Ok((reader.outcome(final_stats), wants))
}

fn run_worker(
    worker: usize,
    rx: Receiver<Work>,
    tx: Sender<ToCorrelator>,
    mut table: FlowTable,
    spare: Sender<Vec<Packet>>,
) -> TableStats {
    let mut out = Vec::new();
    for work in rx {
        match work {
            Work::Batch(mut b) => {
                for p in &b.packets {
                    table.process(p, decode::payload(p, &b.chunk, &b.extra), &mut out);
                    if out.len() >= RECORDS_PER_MESSAGE {
                        let piece = ToCorrelator::Records(b.seq, std::mem::take(&mut out), None);
                        if tx.send(piece).is_err() {
                            return table.stats;
                        }
                    }
                }
                table.advance(b.now, &mut out);
                b.packets.clear();
                let _ = spare.try_send(b.packets);
                let h = horizon(b.now, table.oldest_open());
                if tx
                    .send(ToCorrelator::Records(
                        b.seq,
                        std::mem::take(&mut out),
                        Some(h),
                    ))
                    .is_err()
                {
                    break;
                }
            }
            Work::End(now) => {
                let end = |records: Vec<Record>, last| ToCorrelator::End {
                    worker,
                    records,
                    last,
                };
                table.drain_batches(now, END_BATCH, &mut out, |recs| {
                    let _ = tx.send(end(std::mem::take(recs), false));
                });
                let _ = tx.send(end(std::mem::take(&mut out), true));
                break;
            }
        }
    }
    table.stats
}

fn run_correlator(
    mut corr: Correlator,
    rx: Receiver<ToCorrelator>,
    sink: Sender<ToSink>,
    stats_rx: Receiver<StatsRecord>,
    workers: usize,
    interval: std::time::Duration,
    spare_blocks: Receiver<RecordBatch>,
) -> (StatsRecord, Vec<crate::detect::EvidenceWant>) {
    let mut order = InOrder::new(workers);
    let mut sink = Handoff::new(sink);
    let mut end = EndMerge::new(workers);
    let mut piece = Vec::new();
    while !end.all_done() {
        match rx.recv_timeout(interval) {
            Ok(ToCorrelator::Evidence(seq, ev)) => {
                order.evidence(seq, ev);
            }
            Ok(ToCorrelator::Records(seq, recs, last)) => {
                while let Ok(b) = spare_blocks.try_recv() {
                    corr.recycle(b);
                }
                order.add(seq, recs, last);
                order.release(&mut corr, false);
                if !sink.blocks(&mut corr, false) {
                    return Default::default();
                }
            }
            Ok(ToCorrelator::End {
                worker,
                records,
                last,
            }) => {
                end.add(worker, records, last);
                if end.started.iter().all(|s| *s) {
                    // Each worker sent its chunks before its end: all are in.
                    order.release(&mut corr, true);
                }
                loop {
                    end.release(&mut piece, END_BATCH);
                    if piece.is_empty() {
                        break;
                    }
                    corr.push(piece.drain(..));
                    if !sink.blocks(&mut corr, false) {
                        return Default::default();
                    }
                }
            }
            Err(RecvTimeoutError::Timeout) => {
                if !sink.blocks(&mut corr, true) {
                    return Default::default();
                }
            }
            Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    order.release(&mut corr, true);
    let mut stats = stats_rx.recv().unwrap_or_default();
    finish(&mut corr, &mut stats);
    sink.blocks(&mut corr, true);
    (stats, std::mem::take(&mut corr.detector.wants))
}
