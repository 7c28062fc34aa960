//! Replay: files → cut → N decoders → N flow workers → correlator → sink.
//!
//! ```text
//!  reader (this thread)   decoders (N)            workers (N)               correlator (1)   sink (1)
//!  files → chunks ──i──▶ decode-(i mod N) ─┬──▶ defrag, flow table,    ─┐
//!  cut at record          symmetric hash   ├──▶ reassembly, parsers     ├─▶ records ──▶ encode, write
//!  boundaries                              └──▶ ...                     ┘
//! ```
//!
//! The reader only reads and cuts: 512 KiB chunks ending at a record
//! boundary, numbered. Chunk `i` goes to decoder `i mod N`, which decodes it
//! (link, VLAN, tunnels, IP, TCP/UDP), hashes each packet to its flow's
//! worker and sends every worker its batch of chunk `i`; its device
//! evidence goes to the correlator first. Worker `w` takes chunk `i` from
//! decoder `i mod N`, so it sees its packets in capture order with no
//! reordering buffer. IP fragments are the one order-dependent part of
//! decoding: decoders hand them on undecoded to every worker, and each
//! worker reassembles every train (bounded by `[defrag]`, per worker) and
//! keeps the datagrams of its own flows. Every channel is a bounded
//! crossbeam channel, so a slow stage makes the reader wait: replay never
//! drops. Packet bytes are not copied: a batch holds a reference to the
//! chunk they lie in. With `workers = 0` the same stages run on one thread
//! with no channels at all.

use crate::app::evidence::Evidence;
use crate::capture::pcap_file::{CaptureError, CaptureReader};
use crate::capture::{Chunk, FrameRef};
use crate::config::Config;
use crate::correlate::{Correlator, RecordBatch};
use crate::decode::defrag::DefragStats;
use crate::decode::{self, DecodeStats, Decoder, Deferred, Packet};
use crate::detect::admit::horizon;
use crate::flow::table::{FlowTable, TableStats};
use crate::output::Sink;
use crate::record::{FileStats, Record, StatsRecord};
use crate::run::order::{EndMerge, InOrder};
use crate::run::stats::{counters, finish};
use crate::run::{ToSink, correlator, encode, sink as sink_thread};
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
    pub packets: Vec<Packet>,
    /// The chunk's IP fragments (every worker gets all of them: each
    /// reassembles every train and keeps the datagrams of its own flows).
    pub fragments: Arc<Vec<Deferred>>,
    /// For each fragment, how many of `packets` come before it.
    pub fragment_at: Vec<u32>,
    /// Latest packet time the reader has seen (drives timeouts on every worker).
    pub now: Timestamp,
    /// The chunk's number: workers take chunks, and the correlator
    /// releases records, in this order.
    pub seq: u64,
}

enum Work {
    Batch(Batch),
    End(Timestamp),
}

/// A chunk cut by the reader, on its way to a decoder.
enum Cut {
    Chunk(u64, Chunk, Timestamp),
    /// End of input after `seq` chunks: the decoder whose turn `seq` is
    /// tells the workers.
    End(Timestamp),
}

enum ToCorrelator {
    /// Device evidence of chunk `seq`, sent by its decoder before the chunk's batches.
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

/// The source: reads the files in order, as one timeline, and cuts them
/// into chunks at record boundaries; it decodes nothing.
pub struct Reader {
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
    /// Threads that read a plain file's blocks (the decoder count; 0: this
    /// thread reads, as `--workers 0` does).
    pub loaders: usize,
}

impl Reader {
    pub fn new(cfg: &Config, files: &[PathBuf]) -> Self {
        Reader {
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
            loaders: 0,
        }
    }

    /// Calls `handle` with each chunk and the packet time reached at its
    /// end; `handle` may give the chunk's frame list back for reuse. Stops
    /// early when `handle` fails (the output is gone).
    pub fn cut(
        &mut self,
        files: &[PathBuf],
        in_flight: usize,
        mut handle: impl FnMut(Chunk, Timestamp) -> Result<Option<Vec<FrameRef>>, OutputError>,
    ) -> Result<(), OutputError> {
        // Bytes of the files read whole, for the progress line.
        let mut files_done = 0u64;
        for path in files {
            let name = path.display().to_string();
            let mut fs = FileStats {
                file: name.clone(),
                ..FileStats::default()
            };
            let mut reader = match CaptureReader::open_loaded(path, self.loaders) {
                Ok(r) => match self.block {
                    Some(size) => r.with_chunk_size(size),
                    None => r,
                }
                .with_recycle(in_flight),
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
                        let mut bytes = 0u64;
                        for f in &chunk.frames {
                            bytes += f.wire_len as u64;
                            self.now = self.now.max(f.ts);
                        }
                        let frames = chunk.frames.len() as u64;
                        fs.frames += frames;
                        fs.bytes += bytes;
                        self.packets += frames;
                        self.bytes += bytes;
                        let r = handle(chunk, self.now);
                        self.seq += 1;
                        if let Some(p) = &mut self.progress {
                            p.update(files_done + reader.raw_bytes(), self.packets);
                        }
                        if let Some(spare) = r? {
                            reader.recycle_frames(spare);
                        }
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

    /// The source's part of the stats record, with the decoders' counters.
    fn stats(&self, decode: &DecodeStats, defrag: &DefragStats, table: &TableStats) -> StatsRecord {
        let mut s = counters(decode, defrag, table, self.now);
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
    // The sink writes; the encoders (or, with no workers, the sink itself) encode.
    let sink = Sink::open(output, cfg.flush_interval_ms, cfg.zstd_level)
        .map_err(OutputError)?
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

fn replay_inline(files: &[PathBuf], cfg: &Config, sink: Sink) -> Result<Replayed, OutputError> {
    let mut sink = sink.with_encoding(crate::output::Encoding::for_config(cfg, &[]));
    let mut reader = Reader::new(cfg, files);
    let mut decoder = Decoder::new(cfg.defrag);
    let mut table = FlowTable::new(cfg.flow, 1);
    let mut corr = correlator(cfg);
    let mut out = Vec::new();
    let mut extra = Vec::new();
    reader.cut(files, 2, |chunk, now| {
        extra.clear();
        for f in &chunk.frames {
            if let Some(p) = decoder.decode(&chunk.data, f, &mut extra) {
                table.process(&p, decode::payload(&p, &chunk.data, &extra), &mut out);
            }
        }
        corr.evidence(&decoder.evidence);
        decoder.evidence.clear();
        table.advance(now, &mut out);
        corr.push(out.drain(..));
        corr.release_sessions(horizon(now, table.oldest_open()));
        write_blocks(&mut corr, &mut sink, false).map_err(OutputError)?;
        sink.flush_if_due().map_err(OutputError)?;
        Ok(Some(chunk.frames))
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
    let mut stats = reader.stats(&decoder.stats, &decoder.defrag.stats, &table.stats);
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

fn stopped() -> OutputError {
    OutputError(io::Error::other("pipeline stopped"))
}

/// ```text
///  reader ──chunk i──▶ decoder (i mod D) ──batch i, per worker──▶ worker w ──▶ correlator
/// ```
/// Worker `w` takes chunk `i` from decoder `i mod D`, so every worker sees
/// its packets in capture order with no reordering buffer; a decoder
/// blocks only on the worker that is behind, which always can go on.
fn replay_threaded(files: &[PathBuf], cfg: &Config, sink: Sink) -> Result<Replayed, OutputError> {
    let n = cfg.workers;
    let decoders = n;
    let interval = sink.interval();
    let (corr_tx, corr_rx) = bounded::<ToCorrelator>(cfg.queue_batches * n.max(1));
    // The encoders: as many as workers, each a share of the queue.
    let (sink_txs, sink_rx) = encode::pool(n, cfg.queue_batches.div_ceil(n).max(2), || {
        crate::output::Encoding::for_config(cfg, &[])
    })
    .map_err(OutputError)?;
    let (stats_tx, stats_rx) = bounded::<StatsRecord>(1);
    let (spare_blocks_tx, spare_blocks_rx) = bounded::<RecordBatch>(4 + 2 * n);
    // Frame lists go back to the reader: memory freed on another thread is
    // slow to come back to the allocating one, which then keeps faulting in
    // fresh pages.
    let (spare_frames_tx, spare_frames_rx) = bounded::<Vec<FrameRef>>(decoders * 2);

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
                sink_txs,
                stats_rx,
                n,
                interval,
                spare_blocks_rx,
            )
        })
        .expect("spawn correlator thread");
    // work[d][w]: decoder d's batches for worker w. A worker takes from the
    // decoders in turn, so each pair needs only its share of the queue.
    let per_pair = cfg.queue_batches.div_ceil(decoders).max(2);
    let mut work_rxs: Vec<Vec<Receiver<Work>>> = (0..n).map(|_| Vec::new()).collect();
    let mut spare_packet_txs = Vec::with_capacity(decoders);
    let mut cut_txs = Vec::with_capacity(decoders);
    let mut decode_threads = Vec::with_capacity(decoders);
    for d in 0..decoders {
        let mut txs = Vec::with_capacity(n);
        for rxs in work_rxs.iter_mut() {
            let (tx, rx) = bounded::<Work>(per_pair);
            txs.push(tx);
            rxs.push(rx);
        }
        let (cut_tx, cut_rx) = bounded::<Cut>(2);
        cut_txs.push(cut_tx);
        let (spare_tx, spare_rx) = bounded::<Vec<Packet>>(cfg.queue_batches * n * 2);
        spare_packet_txs.push(spare_tx);
        let ctx = corr_tx.clone();
        let spare = spare_frames_tx.clone();
        let mut decoder = Decoder::new(cfg.defrag);
        decoder.defer_fragments = true;
        decode_threads.push(
            thread::Builder::new()
                .name(format!("decode-{d}"))
                .spawn(move || run_decoder(decoder, cut_rx, txs, ctx, spare, spare_rx))
                .expect("spawn decoder thread"),
        );
    }
    drop(spare_frames_tx);
    let mut workers = Vec::with_capacity(n);
    for (i, rxs) in work_rxs.into_iter().enumerate() {
        let ctx = corr_tx.clone();
        let settings = cfg.flow;
        let defrag = cfg.defrag;
        let spare = spare_packet_txs.clone();
        workers.push(
            thread::Builder::new()
                .name(format!("worker-{i}"))
                .spawn(move || {
                    let table = FlowTable::new(settings, n);
                    run_worker(i, n, rxs, ctx, table, Decoder::new(defrag), spare)
                })
                .expect("spawn worker thread"),
        );
    }
    drop(corr_tx);
    let mut reader = Reader::new(cfg, files);
    reader.loaders = decoders;
    let mut seq = 0u64;
    // Chunks alive at once: per decoder, two waiting, one being decoded and
    // the `per_pair` its slowest worker has not taken yet; one per worker.
    let in_flight = decoders * (per_pair + 3) + n;
    let read_result = reader.cut(files, in_flight, |chunk, now| {
        cut_txs[(seq % decoders as u64) as usize]
            .send(Cut::Chunk(seq, chunk, now))
            .map_err(|_| stopped())?;
        seq += 1;
        Ok(spare_frames_rx.try_recv().ok())
    });
    let _ = cut_txs[(seq % decoders as u64) as usize].send(Cut::End(reader.now));
    drop(cut_txs);
    let mut decode_stats = DecodeStats::default();
    for d in decode_threads {
        if let Ok(s) = d.join() {
            decode_stats.merge(&s);
        }
    }
    let mut table_stats = TableStats::default();
    let mut defrag_stats = DefragStats::default();
    for w in workers {
        if let Ok((t, d, fr)) = w.join() {
            table_stats.merge(&t);
            decode_stats.merge(&d);
            defrag_stats.merge(&fr);
        }
    }
    // Counts are known to the correlator; it completes the record.
    let stats = reader.stats(&decode_stats, &defrag_stats, &table_stats);
    let _ = stats_tx.send(stats);
    let (final_stats, wants) = corr_thread.join().unwrap_or_default();
    let sink_result = sink_thread
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("sink thread panicked")));
    sink_result.map_err(OutputError)?;
    read_result?;
    Ok((reader.outcome(final_stats), wants))
}

/// A decoder: decodes the chunks it is given, hashes each packet to its
/// flow's worker and hands every worker its batch; the chunk's device
/// evidence goes to the correlator first. Returns its counters.
fn run_decoder(
    mut decoder: Decoder,
    rx: Receiver<Cut>,
    txs: Vec<Sender<Work>>,
    corr: Sender<ToCorrelator>,
    spare_frames: Sender<Vec<FrameRef>>,
    spare: Receiver<Vec<Packet>>,
) -> DecodeStats {
    let n = txs.len();
    // Packet lists are sized to the last chunk's share.
    let mut per_worker = 64usize;
    let mut unused = Vec::new();
    for cut in rx {
        let (seq, chunk, now) = match cut {
            Cut::Chunk(seq, chunk, now) => (seq, chunk, now),
            Cut::End(now) => {
                for tx in &txs {
                    let _ = tx.send(Work::End(now));
                }
                break;
            }
        };
        let mut pending: Vec<Vec<Packet>> = (0..n)
            .map(|_| {
                spare
                    .try_recv()
                    .unwrap_or_else(|_| Vec::with_capacity(per_worker))
            })
            .collect();
        let mut at: Vec<Vec<u32>> = (0..n).map(|_| Vec::new()).collect();
        for f in &chunk.frames {
            let deferred = decoder.deferred.len();
            if let Some(p) = decoder.decode(&chunk.data, f, &mut unused) {
                pending[(p.key.symmetric_hash() % n as u64) as usize].push(p);
            } else if decoder.deferred.len() > deferred {
                for (a, p) in at.iter_mut().zip(&pending) {
                    a.push(p.len() as u32);
                }
            }
        }
        per_worker = pending.iter().map(Vec::len).max().unwrap_or(0) + 16;
        // Evidence goes first: every record of this chunk reaches the
        // correlator after it (one FIFO channel, sent before the batches).
        if !decoder.evidence.is_empty()
            && corr
                .send(ToCorrelator::Evidence(
                    seq,
                    std::mem::take(&mut decoder.evidence),
                ))
                .is_err()
        {
            break;
        }
        let fragments = Arc::new(std::mem::take(&mut decoder.deferred));
        let Chunk { data, frames } = chunk;
        let _ = spare_frames.try_send(frames);
        for ((tx, packets), fragment_at) in txs.iter().zip(pending).zip(at) {
            let batch = Batch {
                chunk: Arc::clone(&data),
                packets,
                fragments: Arc::clone(&fragments),
                fragment_at,
                now,
                seq,
            };
            // A closed channel means a later stage failed; the sink reports why.
            if tx.send(Work::Batch(batch)).is_err() {
                return decoder.stats;
            }
        }
    }
    decoder.stats
}

fn run_worker(
    worker: usize,
    n: usize,
    rxs: Vec<Receiver<Work>>,
    tx: Sender<ToCorrelator>,
    mut table: FlowTable,
    mut defrag: Decoder,
    spare: Vec<Sender<Vec<Packet>>>,
) -> (TableStats, DecodeStats, DefragStats) {
    let mut out = Vec::new();
    let mut extra = Vec::new();
    let decoders = rxs.len() as u64;
    let mut seq = 0u64;
    let mine = |p: &Packet| (p.key.symmetric_hash() % n as u64) as usize == worker;
    let finish = |table: FlowTable, defrag: Decoder| {
        // Every worker reassembles every fragment train: the first one's counters stand for all.
        if worker == 0 {
            (table.stats, defrag.stats, defrag.defrag.stats)
        } else {
            (table.stats, DecodeStats::default(), DefragStats::default())
        }
    };
    while let Ok(work) = rxs[(seq % decoders) as usize].recv() {
        seq += 1;
        match work {
            Work::Batch(mut b) => {
                extra.clear();
                let mut frags = b.fragments.iter().zip(&b.fragment_at).peekable();
                for (i, p) in b.packets.iter().enumerate() {
                    while let Some((d, _)) = frags.next_if(|(_, at)| **at as usize <= i) {
                        let chunk = &b.chunk[..];
                        own_fragment(
                            d,
                            chunk,
                            &mut defrag,
                            &mut extra,
                            mine,
                            &mut table,
                            &mut out,
                        );
                    }
                    table.process(p, decode::payload(p, &b.chunk, &extra), &mut out);
                    if out.len() >= RECORDS_PER_MESSAGE {
                        let piece = ToCorrelator::Records(b.seq, std::mem::take(&mut out), None);
                        if tx.send(piece).is_err() {
                            return finish(table, defrag);
                        }
                    }
                }
                for (d, _) in frags {
                    let chunk = &b.chunk[..];
                    own_fragment(
                        d,
                        chunk,
                        &mut defrag,
                        &mut extra,
                        mine,
                        &mut table,
                        &mut out,
                    );
                }
                table.advance(b.now, &mut out);
                // The emptied list goes back to the decoder that filled it.
                b.packets.clear();
                let _ = spare[(b.seq % decoders) as usize].try_send(b.packets);
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
    finish(table, defrag)
}

/// Reassembles fragment `d` (every worker sees every fragment); a datagram
/// it completes goes to the flow table when its flow is this worker's.
fn own_fragment(
    d: &Deferred,
    chunk: &[u8],
    defrag: &mut Decoder,
    extra: &mut Vec<u8>,
    mine: impl Fn(&Packet) -> bool,
    table: &mut FlowTable,
    out: &mut Vec<Record>,
) {
    if let Some(q) = defrag.reassemble(d, chunk, extra)
        && mine(&q)
    {
        table.process(&q, decode::payload(&q, chunk, extra), out);
    }
}

fn run_correlator(
    mut corr: Correlator,
    rx: Receiver<ToCorrelator>,
    sink: Vec<Sender<ToSink>>,
    stats_rx: Receiver<StatsRecord>,
    workers: usize,
    interval: std::time::Duration,
    spare_blocks: Receiver<RecordBatch>,
) -> (StatsRecord, Vec<crate::detect::EvidenceWant>) {
    let mut order = InOrder::new(workers);
    // The detector on a thread of its own, after this one (`run::detector`).
    let mut sink = crate::run::detector::Out::start(&mut corr, crate::run::Handoff::pooled(sink));
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
    let wants = corr
        .join_detector()
        .unwrap_or_else(|| std::mem::take(&mut corr.detector.wants));
    (stats, wants)
}
