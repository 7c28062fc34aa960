//! Sensor mode: `blindspot capture`, the live pipeline.
//!
//! ```text
//!  worker 0: ring(s) ─ decode ─ flow table ─┐  (AF_PACKET fanout: the kernel
//!  worker 1: ring(s) ─ decode ─ flow table ─┼─▶ correlator ─▶ sink ─▶ files
//!  ...                                      ┘   hashes each connection to one worker)
//! ```
//!
//! The kernel hashes a UDP tunnel's outer header, so a worker hands each
//! tunnelled packet to the worker of its inner flow ([`forward`]).
//!
//! The stages are those of replay, with three differences. Each worker owns
//! its rings (one per interface) and decodes its own packets: there is no
//! reader thread. Timeouts follow the wall clock: every tick a worker
//! advances its table to the later of its last packet time and the wall
//! clock less a ring block's timeout and a tick (how long a packet can wait
//! before it is read). A record reaches the file within about half a second
//! of its connection's close (the close linger, a tick, the sink's flush), so
//! a `kill -9` loses at most the last second of finished connections. And nothing waits for a slow stage: a worker that cannot
//! hand its records to the correlator keeps them in a bounded backlog and
//! counts what does not fit (`stats.queues`), so the rings keep draining and
//! flow state stays right; the kernel counts what the rings could not take
//! (`stats.capture`).
//!
//! Every `capture.stats_interval_s` the correlator writes a `coverage` and a
//! `stats` record with the totals since start. `SIGTERM`/`SIGINT` end the
//! run: workers flush every open flow, the correlator closes every detection
//! window and waits for the sink to write everything, then writes the last
//! stats record (whose output counters so match the files) and the sink
//! closes, within `capture.drain_timeout_s`.
//! `SIGHUP` reopens the output.

pub mod forward;
pub mod privilege;

use crate::capture::FrameRef;
use crate::capture::live::{LiveSource, RingStats};
use crate::config::{CaptureSettings, Config};
use crate::correlate::Correlator;
use crate::decode::defrag::DefragStats;
use crate::decode::{self, DecodeStats, Decoder};
use crate::flow::table::{FlowTable, TableStats};
use crate::output::rotate::{LiveSink, OutputCounters, Target};
use crate::record::{QueueStats, StatsRecord};
use crate::run::order::{Tick, Watermark};
use crate::run::{TICK, sink, stats};
use crate::time::Timestamp;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError, bounded};
use forward::Forwarder;
use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

/// How long a worker that forwards waits on its rings before it looks at
/// its inbox and held packets again.
const FORWARD_WAIT: Duration = Duration::from_millis(10);

/// What `blindspot capture` was asked to do.
#[derive(Clone, Debug, Default)]
pub struct SensorOptions {
    pub interfaces: Vec<String>,
    pub output: String,
    /// Write plain JSON Lines into an output folder (default zstd).
    pub plain: bool,
    /// Read through libpcap (feature `libpcap`) instead of AF_PACKET.
    pub libpcap: bool,
    /// BPF filter expression (libpcap only).
    pub filter: Option<String>,
    /// Stop after this long, as on `SIGTERM` (tests, benchmarks).
    pub duration: Option<Duration>,
}

/// How a capture ended.
#[derive(Debug)]
pub struct SensorOutcome {
    /// The last stats record.
    pub stats: StatsRecord,
    /// The drain did not finish within the timeout: the last records may be lost.
    pub drain_timed_out: bool,
}

/// Shared between the main thread and the workers.
#[derive(Default)]
struct Control {
    stop: AtomicBool,
    /// Bumped every stats interval; workers answer with a snapshot.
    epoch: AtomicU64,
}

/// A worker's counters since start.
#[derive(Clone, Debug, Default)]
struct Snapshot {
    worker: usize,
    epoch: u64,
    packets: u64,
    bytes: u64,
    decode: DecodeStats,
    defrag: DefragStats,
    table: TableStats,
    rings: Vec<RingStats>,
    queue: QueueStats,
}

enum Live {
    /// One tick of a worker: its device evidence and finished records, the
    /// packet time it has reached, and when it handed them on.
    Tick(Tick),
    Stats(Box<Snapshot>),
    Done(Box<Snapshot>),
}

/// Loads the configuration and inputs again (SIGHUP): `None` when they do
/// not load (the problems are printed by it), and the running ones stay.
pub type Reload<'a> = &'a dyn Fn() -> Option<Config>;

/// Runs the sensor until a signal (or `duration`).
pub fn run(cfg: &Config, opts: &SensorOptions, reload: Reload) -> Result<SensorOutcome, String> {
    let settings = cfg.capture.clone();
    let workers = cfg.workers.max(1);
    // Sources first, while privileged.
    let sources: Vec<Box<dyn LiveSource>> = open_sources(opts, workers, &settings)?;
    let workers = sources.len();

    let term = Arc::new(AtomicBool::new(false));
    let hup = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        // A second signal while draining ends the process at once.
        signal_hook::flag::register_conditional_shutdown(sig, 1, Arc::clone(&term))
            .map_err(|e| format!("signal handler: {e}"))?;
        signal_hook::flag::register(sig, Arc::clone(&term))
            .map_err(|e| format!("signal handler: {e}"))?;
    }
    // SIGHUP: the sink reopens the output; this thread reloads the inputs.
    let hup_reload = Arc::new(AtomicBool::new(false));
    for flag in [&hup, &hup_reload] {
        signal_hook::flag::register(signal_hook::consts::SIGHUP, Arc::clone(flag))
            .map_err(|e| format!("signal handler: {e}"))?;
    }
    let (reload_tx, reload_rx) = bounded::<Box<Config>>(1);

    let who = privilege::drop_to(settings.user.as_deref())?;

    let target = Target::parse(&opts.output, &settings.prefix, opts.plain);
    let sink = LiveSink::new(target, settings.rotation, cfg.zstd_level)
        .map_err(|e| format!("cannot open the output: {e}"))?;
    eprintln!(
        "blindspot: capturing on {} ({} worker{}, {}), uid {} gid {}{}; records to {}",
        opts.interfaces.join(", "),
        workers,
        if workers == 1 { "" } else { "s" },
        if opts.libpcap {
            "libpcap".to_string()
        } else {
            format!(
                "AF_PACKET TPACKET_V3, {} × {} KiB per ring",
                settings.ring.blocks,
                settings.ring.block_size >> 10
            )
        },
        who.uid,
        who.gid,
        if cfg!(target_os = "linux") {
            ", no capabilities"
        } else {
            ""
        },
        sink.current()
    );

    let ctl = Arc::new(Control::default());
    let counters = Arc::clone(&sink.counters);
    let (live_tx, live_rx) = bounded::<Live>(cfg.queue_batches * workers * 4);
    // The encoders: as many as workers, each a share of the queue.
    let (sink_txs, sink_rx) = crate::run::encode::pool(
        workers,
        cfg.queue_batches.div_ceil(workers.max(1)).max(2),
        || crate::output::Encoding::for_config(cfg, &opts.interfaces),
    )
    .map_err(|e| format!("cannot start the encoder threads: {e}"))?;
    let (done_tx, done_rx) = bounded::<std::io::Result<()>>(1);
    let flush = Duration::from_millis(cfg.flush_interval_ms);
    let max_pending = settings.max_pending_bytes;
    let hup_sink = Arc::clone(&hup);
    let term_sink = Arc::clone(&term);
    // Disconnected when the sink thread ends: a sync never waits on it then.
    let (alive_tx, gone_rx) = bounded::<()>(0);
    thread::Builder::new()
        .name("sink".into())
        .spawn(move || {
            let _alive = alive_tx;
            let r = sink::live(sink_rx, sink, &hup_sink, &term_sink, flush, max_pending);
            let _ = done_tx.send(r);
        })
        .map_err(|e| format!("cannot start the sink thread: {e}"))?;
    let mut corr = crate::run::correlator(cfg);
    // A detection is written when its window reaches its threshold, then
    // updated, then closed.
    corr.detector.live = true;
    let slack = cfg.flow.tcp_idle;
    let corr_counters = Arc::clone(&counters);
    let corr_thread = thread::Builder::new()
        .name("correlator".into())
        .spawn(move || {
            run_correlator(
                corr,
                live_rx,
                reload_rx,
                crate::run::Handoff::pooled(sink_txs).watching(gone_rx),
                workers,
                corr_counters,
                slack,
            )
        })
        .map_err(|e| format!("cannot start the correlator thread: {e}"))?;
    // Tunnelled packets go to the worker their inner flow hashes to
    // (`forward.rs`); the test knob `BLINDSPOT_TEST_NO_FORWARD` (debug
    // builds) turns that off to show the split it prevents.
    let forward_off =
        cfg!(debug_assertions) && std::env::var_os("BLINDSPOT_TEST_NO_FORWARD").is_some();
    let mut mesh = forward::mesh(workers, !forward_off).into_iter();
    let barrier = Arc::new(Barrier::new(workers));
    for (i, src) in sources.into_iter().enumerate() {
        let tx = live_tx.clone();
        let fwd = mesh.next().expect("one forwarder per worker");
        let barrier = Arc::clone(&barrier);
        let ctl = Arc::clone(&ctl);
        let table = FlowTable::new(cfg.flow, workers);
        let decoder = Decoder::new(cfg.defrag);
        let cap = settings.max_backlog_records;
        let block_timeout = u64::from(settings.ring.block_timeout_ms);
        thread::Builder::new()
            .name(format!("worker-{i}"))
            .spawn(move || {
                Worker::new(i, tx, cap, block_timeout).run(src, decoder, table, fwd, &barrier, &ctl)
            })
            .map_err(|e| format!("cannot start worker thread {i}: {e}"))?;
    }
    drop(live_tx);

    let started = Instant::now();
    let mut last_stats = Instant::now();
    loop {
        thread::sleep(TICK);
        let elapsed = opts.duration.is_some_and(|d| started.elapsed() >= d);
        if term.load(Ordering::Relaxed) || elapsed {
            break;
        }
        if last_stats.elapsed() >= settings.stats_interval {
            last_stats = Instant::now();
            ctl.epoch.fetch_add(1, Ordering::Relaxed);
        }
        if hup_reload.swap(false, Ordering::Relaxed) {
            match reload() {
                Some(new) => {
                    if reload_tx.try_send(Box::new(new)).is_ok() {
                        eprintln!(
                            "blindspot: SIGHUP: inputs, [inspection] and [detections] reloaded"
                        );
                    }
                }
                None => eprintln!(
                    "blindspot: SIGHUP: the configuration or inputs above did not load; keeping the running ones"
                ),
            }
        }
    }
    ctl.stop.store(true, Ordering::Release);
    match done_rx.recv_timeout(settings.drain_timeout) {
        Ok(r) => {
            let stats = corr_thread.join().unwrap_or_default();
            match r {
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                    return Err(format!("output: {e}"));
                }
                _ => {}
            }
            Ok(SensorOutcome {
                stats,
                drain_timed_out: false,
            })
        }
        Err(_) => Ok(SensorOutcome {
            stats: StatsRecord::default(),
            drain_timed_out: true,
        }),
    }
}

fn open_sources(
    opts: &SensorOptions,
    workers: usize,
    settings: &CaptureSettings,
) -> Result<Vec<Box<dyn LiveSource>>, String> {
    if opts.interfaces.is_empty() {
        return Err("name at least one interface with -i".into());
    }
    if opts.libpcap {
        #[cfg(feature = "libpcap")]
        {
            let p = crate::capture::libpcap::open(
                &opts.interfaces,
                opts.filter.as_deref(),
                settings.ring.block_size * settings.ring.blocks,
                settings.ring.promiscuous,
            )?;
            return Ok(vec![Box::new(p)]);
        }
        #[cfg(not(feature = "libpcap"))]
        return Err(
            "this blindspot was built without libpcap: rebuild with `cargo build --release --features libpcap` (needs libpcap-dev), or capture with AF_PACKET (leave out --pcap and --filter)"
                .into(),
        );
    }
    if opts.filter.is_some() {
        return Err("--filter needs --pcap (libpcap compiles the expression)".into());
    }
    #[cfg(target_os = "linux")]
    {
        Ok(
            crate::capture::afpacket::open(&opts.interfaces, workers, settings.ring)?
                .into_iter()
                .map(|r| Box::new(r) as Box<dyn LiveSource>)
                .collect(),
        )
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (workers, settings);
        Err("AF_PACKET is Linux-only: capture with --pcap (a build with --features libpcap)".into())
    }
}

/// A worker's hand-off to the correlator, which never blocks the rings.
struct Worker {
    idx: usize,
    tx: Sender<Live>,
    backlog: VecDeque<Live>,
    backlog_records: usize,
    max_backlog: usize,
    queue: QueueStats,
    block_timeout_ms: u64,
}

fn record_count(m: &Live) -> usize {
    match m {
        Live::Tick(t) => t.evidence.len() + t.records.len(),
        Live::Stats(_) | Live::Done(_) => 0,
    }
}

impl Worker {
    fn new(idx: usize, tx: Sender<Live>, max_backlog: usize, block_timeout_ms: u64) -> Worker {
        Worker {
            idx,
            tx,
            backlog: VecDeque::new(),
            backlog_records: 0,
            max_backlog,
            block_timeout_ms,
            queue: QueueStats {
                queue: format!("worker-{idx}"),
                ..QueueStats::default()
            },
        }
    }

    fn queue(&mut self, msg: Live) {
        self.pump();
        let msg = if self.backlog.is_empty() {
            match self.tx.try_send(msg) {
                Ok(()) => return,
                Err(TrySendError::Full(m)) => m,
                Err(TrySendError::Disconnected(_)) => return,
            }
        } else {
            msg
        };
        let n = record_count(&msg);
        if n > 0 && self.backlog_records + n > self.max_backlog {
            self.queue.dropped += n as u64;
            return;
        }
        self.backlog_records += n;
        self.queue.backlog_max = self.queue.backlog_max.max(self.backlog_records as u64);
        self.backlog.push_back(msg);
    }

    /// Hands on what the backlog holds, as far as the channel takes it.
    fn pump(&mut self) {
        while let Some(m) = self.backlog.pop_front() {
            let n = record_count(&m);
            match self.tx.try_send(m) {
                Ok(()) => self.backlog_records -= n,
                Err(TrySendError::Full(m)) => {
                    self.backlog.push_front(m);
                    return;
                }
                Err(TrySendError::Disconnected(_)) => {
                    self.backlog.clear();
                    return;
                }
            }
        }
    }

    fn run(
        mut self,
        mut src: Box<dyn LiveSource>,
        mut decoder: Decoder,
        mut table: FlowTable,
        mut fwd: Forwarder,
        stopping: &Barrier,
        ctl: &Control,
    ) {
        let mut out = Vec::new();
        let mut extra = Vec::new();
        let (mut packets, mut bytes) = (0u64, 0u64);
        let mut last_ts = Timestamp::ZERO;
        let mut last_tick = Instant::now();
        let mut epoch_seen = 0;
        let mut error_reported: Option<Instant> = None;
        // How far packet time may trail the wall clock: a packet waits up
        // to a ring block's timeout in the kernel, then up to a tick here.
        let lag = Duration::from_millis(self.block_timeout_ms) + TICK;
        // Forwarded packets wait in the inbox while the rings are polled:
        // a shorter wait keeps them close to their owner's clock.
        let wait = if fwd.enabled() { FORWARD_WAIT } else { TICK };
        let ring_wait = Duration::from_millis(self.block_timeout_ms) + FORWARD_WAIT;
        loop {
            let stop = ctl.stop.load(Ordering::Acquire);
            let polled = src.poll(wait, &mut |f| {
                packets += 1;
                bytes += u64::from(f.wire_len);
                last_ts = last_ts.max(f.ts);
                let frame = FrameRef {
                    ts: f.ts,
                    offset: 0,
                    caplen: f.data.len() as u32,
                    wire_len: f.wire_len,
                    linktype: f.linktype,
                };
                extra.clear();
                if let Some(p) = decoder.decode(f.data, &frame, &mut extra) {
                    let payload = decode::payload(&p, f.data, &extra);
                    if !fwd.route(&p, payload) {
                        table.process(&p, payload, &mut out);
                    }
                }
            });
            // Nothing this worker reads later is older than its newest
            // packet; when its rings were empty, than what may still sit in
            // an open ring block (a block's timeout, and a margin).
            let progress = if matches!(polled, Ok(0)) {
                last_ts.max(Timestamp(
                    Timestamp::now()
                        .0
                        .saturating_sub(ring_wait.as_nanos() as u64),
                ))
            } else {
                last_ts
            };
            fwd.after_poll(progress);
            fwd.release(false, |p, payload| table.process(p, payload, &mut out));
            if let Err(e) = polled {
                if error_reported.is_none_or(|t| t.elapsed() >= Duration::from_secs(60)) {
                    eprintln!(
                        "blindspot: worker {}: capture error: {e}; retrying",
                        self.idx
                    );
                    error_reported = Some(Instant::now());
                }
                thread::sleep(TICK);
            }
            if last_tick.elapsed() < TICK && !stop {
                continue;
            }
            last_tick = Instant::now();
            let now = last_ts.max(Timestamp(
                Timestamp::now().0.saturating_sub(lag.as_nanos() as u64),
            ));
            if stop && fwd.enabled() {
                // Every worker has sent all it will forward: the held
                // packets all go, in time order.
                stopping.wait();
                fwd.release(true, |p, payload| table.process(p, payload, &mut out));
            }
            // No tunnelled packet still to come precedes it. (The tick's
            // own time stays: its evidence is no later than that.)
            let earliest = fwd.earliest();
            if stop {
                table.drain(now.max(Timestamp::now()), &mut out);
            } else {
                table.advance(now, &mut out);
            }
            // Every tick, empty or not: the correlator releases records in
            // packet-time order once every worker is past them.
            self.queue(Live::Tick(Tick {
                worker: self.idx,
                now,
                horizon: crate::detect::admit::horizon(now.min(earliest), table.oldest_open()),
                sent: Instant::now(),
                evidence: std::mem::take(&mut decoder.evidence),
                records: std::mem::take(&mut out),
            }));
            let epoch = ctl.epoch.load(Ordering::Relaxed);
            if epoch != epoch_seen || stop {
                epoch_seen = epoch;
                let snap = Box::new(Snapshot {
                    worker: self.idx,
                    epoch,
                    packets,
                    bytes,
                    decode: decoder.stats.clone(),
                    defrag: decoder.defrag.stats.clone(),
                    table: table.stats.clone(),
                    rings: src.stats(),
                    queue: QueueStats {
                        forwarded: fwd.stats.forwarded,
                        forward_dropped: fwd.stats.dropped,
                        forward_received: fwd.stats.received,
                        forward_held_over_cap: fwd.stats.held_over_cap,
                        ..self.queue.clone()
                    },
                });
                if stop {
                    // Draining: wait for the correlator rather than drop.
                    for m in std::mem::take(&mut self.backlog) {
                        let _ = self.tx.send(m);
                    }
                    let _ = self.tx.send(Live::Done(snap));
                    return;
                }
                self.queue(Live::Stats(snap));
            }
            self.pump();
        }
    }
}

/// The totals of every worker's latest snapshot.
fn merge(snaps: &[Snapshot], now: Timestamp) -> StatsRecord {
    let mut decode = DecodeStats::default();
    let mut defrag = DefragStats::default();
    let mut table = TableStats::default();
    for s in snaps {
        decode.merge(&s.decode);
        defrag.merge(&s.defrag);
        table.merge(&s.table);
    }
    let mut st = stats::counters(&decode, &defrag, &table, now);
    st.packets = snaps.iter().map(|s| s.packets).sum();
    st.bytes = snaps.iter().map(|s| s.bytes).sum();
    st.capture = snaps.iter().flat_map(|s| s.rings.iter().cloned()).collect();
    st.capture
        .sort_by(|a, b| (&a.interface, a.worker).cmp(&(&b.interface, b.worker)));
    st.queues = snaps.iter().map(|s| s.queue.clone()).collect();
    st.drops = BTreeMap::from([
        ("internal", st.queues.iter().map(|q| q.dropped).sum()),
        ("kernel", st.capture.iter().map(|r| r.drops).sum()),
        ("forward", st.queues.iter().map(|q| q.forward_dropped).sum()),
    ]);
    st
}

fn output_counters(c: &OutputCounters, queued: usize, lag_ms: u64) -> BTreeMap<&'static str, u64> {
    BTreeMap::from([
        ("queue_lag_ms", lag_ms),
        ("sink_lag_ms", c.sink_lag_ms.swap(0, Ordering::Relaxed)),
        ("bytes", OutputCounters::get(&c.bytes)),
        ("files_closed", OutputCounters::get(&c.files_closed)),
        ("reopens", OutputCounters::get(&c.reopens)),
        ("write_errors", OutputCounters::get(&c.write_errors)),
        ("pending_bytes", OutputCounters::get(&c.pending_bytes)),
        ("queued_blocks", queued as u64),
    ])
}

fn run_correlator(
    mut corr: Correlator,
    rx: Receiver<Live>,
    reload: Receiver<Box<Config>>,
    sink: crate::run::Handoff,
    workers: usize,
    counters: Arc<OutputCounters>,
    slack: u64,
) -> StatsRecord {
    let mut snaps: Vec<Snapshot> = (0..workers)
        .map(|worker| Snapshot {
            worker,
            ..Snapshot::default()
        })
        .collect();
    let mut emitted_epoch = 0;
    let mut done = 0;
    // The longest records waited between a worker and the correlator
    // since the last stats record.
    let mut lag_ms = 0u64;
    // The detector on a thread of its own, after this one (`run::detector`).
    let mut sink = crate::run::detector::Out::start(&mut corr, sink);
    let mut order = Watermark::new(workers);
    while done < workers {
        if let Ok(new) = reload.try_recv() {
            corr.reload(&new);
        }
        match rx.recv_timeout(TICK) {
            Ok(Live::Tick(t)) => {
                lag_ms = lag_ms.max(t.sent.elapsed().as_millis() as u64);
                order.add(t);
                order.release(&mut corr);
            }
            Ok(Live::Stats(s)) => {
                let w = s.worker;
                snaps[w] = *s;
                let epoch = snaps.iter().map(|s| s.epoch).min().unwrap_or(0);
                if epoch > emitted_epoch {
                    emitted_epoch = epoch;
                    let mut st = merge(&snaps, Timestamp::now());
                    st.output = output_counters(&counters, sink.queued(&mut corr), lag_ms);
                    lag_ms = 0;
                    stats::totals(&mut corr, &mut st);
                    if !sink.blocks(&mut corr, true) {
                        return StatsRecord::default();
                    }
                }
            }
            Ok(Live::Done(s)) => {
                let w = s.worker;
                snaps[w] = *s;
                done += 1;
                order.finished(w);
                order.release(&mut corr);
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        // Detection windows close with the wall clock, less the longest a
        // flow's record can lag its start (the TCP idle timeout).
        let now = Timestamp::now();
        corr.advance_open_detections(now);
        corr.advance_detections(Timestamp(now.0.saturating_sub(slack)));
        // A full block goes at once, a partial one every tick: the sink
        // batches, and a record closed a second ago is on disk by then.
        let partial = sink.idle(&mut corr) >= TICK;
        if !sink.blocks(&mut corr, partial) {
            return StatsRecord::default();
        }
    }
    let mut st = merge(&snaps, Timestamp::now());
    corr.finish_detections();
    stats::push_coverage(&mut corr, &st);
    // The last stats record is written last and alone, once everything
    // before it is on disk: its output counters then account for every byte
    // of the output but its own line, and nothing is held or queued.
    if sink.blocks(&mut corr, true) {
        sink.sync(&mut corr);
    }
    st.output = output_counters(&counters, sink.queued(&mut corr), lag_ms);
    stats::push_stats(&mut corr, &mut st);
    sink.blocks(&mut corr, true);
    corr.join_detector();
    st
}
