//! The publisher: the correlator's [`Tap`] on one side (it never blocks:
//! what does not fit the bounded queue is dropped and counted), a thread
//! with its own current-thread tokio runtime and the NATS client on the
//! other.
//!
//! Records are batched per partition ([`Settings::batch_records`] to a
//! message, or what [`Settings::linger_ms`] gathered); each message carries
//! a `Nats-Msg-Id` (sensor, run, partition, sequence), so that a resend of
//! a message the stream already stored is dropped by the stream's
//! duplicate window. Each partition has at most one message in flight: a
//! message that fails or is not acknowledged within
//! [`Settings::ack_timeout_s`] is sent again before the next one of its
//! partition, so a device's records reach the stream in the order the
//! sensor wrote them, whatever node fails.

use super::wire;
use super::{Counters, Settings, Tap};
use crate::detect::Session;
use crate::record::Record;
use async_nats::jetstream;
use crossbeam_channel::{Receiver, Sender, TryRecvError, TrySendError, bounded};
use futures_util::FutureExt;
use std::collections::VecDeque;
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What the tap hands the publisher thread, in the order the correlator wrote it.
enum Item {
    Session(Box<Session>),
    Record(Record),
}

enum ToPublisher {
    Items(Vec<Item>, Instant),
    /// The run ends: send what is held, within the drain timeout.
    Close,
}

/// Pieces of items waiting in the channel (each piece is one correlator
/// hand-off); the record bound is [`Settings::queue_records`].
const CHANNEL_PIECES: usize = 4096;

/// The correlator's side: collects the items of a hand-off and sends them
/// to the publisher thread, or drops them when the queue is full.
pub struct Publisher {
    tx: Sender<ToPublisher>,
    pending: Vec<Item>,
    counters: Arc<Counters>,
    cap: u64,
    thread: Option<JoinHandle<()>>,
    /// Fleet state (`fleet.state`): the correlator's side.
    state: Option<super::state::Local>,
    /// The detector syncs its own part on its thread ([`Tap::detector_side`]).
    split: bool,
}

impl Publisher {
    /// Starts the publisher thread for `sensor` (the observer name).
    pub fn start(s: &Settings, sensor: &str) -> Publisher {
        let (tx, rx) = bounded(CHANNEL_PIECES);
        let counters = Arc::new(Counters::default());
        let c = Arc::clone(&counters);
        let s2 = s.clone();
        let sensor = super::subject_token(sensor);
        let shared = Arc::new(super::state::Shared::default());
        let (first_tx, first_rx) = std::sync::mpsc::channel();
        let state = s
            .state
            .then(|| super::state::Local::new(Arc::clone(&shared), Arc::clone(&counters), &sensor));
        let first = s.state.then_some((shared, first_tx));
        let thread = std::thread::Builder::new()
            .name("fleet-publish".into())
            .spawn(move || run(rx, s2, sensor, c, first))
            .ok();
        // The fleet's learnt state before the first packet (bounded wait).
        if thread.is_some() && state.is_some() {
            let _ = first_rx.recv_timeout(Duration::from_secs(s.state_wait_s));
        }
        if thread.is_none() {
            eprintln!("blindspot: fleet: cannot start the publisher thread; nothing is published");
        }
        Publisher {
            tx,
            pending: Vec::new(),
            counters,
            cap: s.queue_records,
            thread,
            state,
            split: false,
        }
    }

    fn hand_on(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let n = self.pending.len() as u64;
        let held = self.counters.queued.load(Ordering::Relaxed);
        if self.thread.is_none() || held + n > self.cap {
            self.counters.dropped.fetch_add(n, Ordering::Relaxed);
            self.pending.clear();
            return;
        }
        self.counters.queued.fetch_add(n, Ordering::Relaxed);
        let items = std::mem::take(&mut self.pending);
        match self.tx.try_send(ToPublisher::Items(items, Instant::now())) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.counters.queued.fetch_sub(n, Ordering::Relaxed);
                self.counters.dropped.fetch_add(n, Ordering::Relaxed);
            }
        }
    }
}

impl Tap for Publisher {
    fn session(&mut self, s: &Session) {
        self.pending.push(Item::Session(Box::new(s.clone())));
    }

    fn block(&mut self, block: &mut [Record]) {
        let (c, pending, state) = (&self.counters, &mut self.pending, self.state.is_some());
        super::take_records(
            block,
            |st| {
                let mut f = c.snapshot();
                if state {
                    f.extend(c.state_snapshot());
                }
                st.fleet = Some(f);
            },
            |r| pending.push(Item::Record(r)),
        );
        self.hand_on();
    }

    fn sync(&mut self, d: &mut crate::detect::Detector) {
        match &mut self.state {
            Some(st) if self.split => st.sync_cas(&mut d.learner),
            Some(st) => st.sync(d),
            None => {}
        }
    }

    fn detector_side(&mut self) -> Option<super::DetectorSync> {
        let mut side = self.state.as_ref()?.detector_side();
        self.split = true;
        Some(Box::new(move |d| side.sync_proxies(d)))
    }
}

impl Drop for Publisher {
    /// Sends what is held (up to `fleet.drain_timeout_s`) before the run ends.
    fn drop(&mut self) {
        self.hand_on();
        let _ = self.tx.send(ToPublisher::Close);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        // The stats records were written before the drain: the end of the
        // run's own account.
        let g = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        let c = &self.counters;
        eprintln!(
            "blindspot: fleet: published {} records in {} messages ({} resent, {} acknowledged as duplicates, {} dropped)",
            g(&c.sent),
            g(&c.messages),
            g(&c.resent),
            g(&c.duplicates),
            g(&c.dropped)
        );
    }
}

type AckFuture = Pin<
    Box<
        dyn Future<
                Output = Result<jetstream::publish::PublishAck, jetstream::context::PublishError>,
            > + Send,
    >,
>;

/// One message: its subject, Msg-Id, body and records.
struct Out {
    subject: String,
    id: String,
    body: bytes::Bytes,
    /// The body is compressed ([`wire::ZSTD`]).
    zstd: bool,
    /// The body's length before compression.
    plain_len: u64,
    records: u64,
    /// When its oldest record was handed on (for `lag_ms`).
    since: Instant,
}

/// A partition's batch being filled, its sealed messages, and the one in flight.
#[derive(Default)]
struct Part {
    body: Vec<u8>,
    records: u64,
    started: Option<Instant>,
    since: Option<Instant>,
    seq: u64,
    queue: VecDeque<Out>,
    flight: Option<(Out, AckFuture)>,
    /// Not before this instant (after a failure).
    retry_at: Option<Instant>,
}

struct Loop {
    s: Settings,
    sensor: String,
    run_id: String,
    counters: Arc<Counters>,
    /// Partitions 0..P, then the sensor's own subject (coverage, stats).
    parts: Vec<Part>,
    js: jetstream::Context,
    stream_ready: bool,
    stream_tried: Option<Instant>,
    /// `fleet.zstd_level` > 0: compresses each sealed body.
    zstd: Option<zstd::bulk::Compressor<'static>>,
}

/// The fleet-state task's handles: what it shares with the correlator,
/// and whom to tell that the first read is done.
type StateStart = (Arc<super::state::Shared>, std::sync::mpsc::Sender<()>);

fn run(
    rx: Receiver<ToPublisher>,
    s: Settings,
    sensor: String,
    counters: Arc<Counters>,
    state: Option<StateStart>,
) {
    let rt = match super::runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("blindspot: fleet: cannot start the publisher's runtime: {e}");
            return drop_all(&rx, &counters);
        }
    };
    rt.block_on(async move {
        let addrs: Vec<async_nats::ServerAddr> =
            s.publish.iter().filter_map(|u| u.parse().ok()).collect();
        let client = match async_nats::ConnectOptions::new()
            .name(format!("blindspot {sensor}"))
            .retry_on_initial_connect()
            .max_reconnects(None)
            .connect(addrs)
            .await
        {
            Ok(c) => c,
            Err(e) => {
                eprintln!("blindspot: fleet: cannot connect to {:?}: {e}", s.publish);
                return drop_all(&rx, &counters);
            }
        };
        let js = jetstream::ContextBuilder::new()
            .timeout(Duration::from_secs(s.ack_timeout_s))
            .ack_timeout(Duration::from_secs(s.ack_timeout_s))
            .build(client);
        let state = state.map(|(shared, first)| {
            let task = tokio::spawn(super::state::sensor_loop(
                js.clone(),
                s.clone(),
                Arc::clone(&shared),
                Arc::clone(&counters),
                first,
            ));
            (shared, task)
        });
        let drain = Duration::from_secs(s.drain_timeout_s);
        let run_id = format!(
            "{:x}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        );
        let mut l = Loop {
            parts: (0..=s.partitions).map(|_| Part::default()).collect(),
            s,
            sensor,
            run_id,
            counters,
            js,
            stream_ready: false,
            stream_tried: None,
            zstd: None,
        };
        if l.s.zstd_level > 0 {
            l.zstd = zstd::bulk::Compressor::new(l.s.zstd_level).ok();
        }
        l.main(rx).await;
        // What the sensor learnt last is written before the run ends.
        if let Some((shared, task)) = state {
            shared.closing.store(true, Ordering::Release);
            let _ = tokio::time::timeout(drain, task).await;
        }
    });
}

/// Without a client everything handed on is dropped (and counted).
fn drop_all(rx: &Receiver<ToPublisher>, counters: &Counters) {
    while let Ok(m) = rx.recv() {
        match m {
            ToPublisher::Items(items, _) => {
                let n = items.len() as u64;
                counters.queued.fetch_sub(n, Ordering::Relaxed);
                counters.dropped.fetch_add(n, Ordering::Relaxed);
            }
            ToPublisher::Close => break,
        }
    }
}

/// The stream's configuration: every fleet subject, `fleet.replicas`,
/// file storage, a two-minute duplicate window for Msg-Ids.
pub fn stream_config(s: &Settings) -> jetstream::stream::Config {
    jetstream::stream::Config {
        name: s.stream.clone(),
        subjects: vec![format!("{}.>", s.subject)],
        num_replicas: s.replicas,
        storage: jetstream::stream::StorageType::File,
        duplicate_window: Duration::from_secs(120),
        max_age: Duration::from_secs(s.max_age_h * 3600),
        ..Default::default()
    }
}

impl Loop {
    async fn main(&mut self, rx: Receiver<ToPublisher>) {
        let mut closing: Option<Instant> = None;
        let mut open = true;
        loop {
            let mut busy = false;
            // Take what the correlator handed on (a bounded number per turn,
            // so that acknowledgements are read in between).
            for _ in 0..64 {
                if !open {
                    break;
                }
                match rx.try_recv() {
                    Ok(ToPublisher::Items(items, at)) => {
                        busy = true;
                        self.add(items, at);
                    }
                    Ok(ToPublisher::Close) | Err(TryRecvError::Disconnected) => {
                        open = false;
                        closing =
                            Some(Instant::now() + Duration::from_secs(self.s.drain_timeout_s));
                    }
                    Err(TryRecvError::Empty) => break,
                }
            }
            let linger = Duration::from_millis(self.s.linger_ms);
            let now = Instant::now();
            for p in 0..self.parts.len() {
                let due = self.parts[p]
                    .started
                    .is_some_and(|t| closing.is_some() || now - t >= linger);
                if due {
                    self.seal(p);
                }
            }
            if !self.stream_ready {
                self.ensure_stream().await;
            }
            if self.stream_ready {
                busy |= self.pump().await;
            }
            let held = self.counters.queued.load(Ordering::Relaxed);
            if let Some(deadline) = closing {
                if held == 0 && rx.is_empty() {
                    return;
                }
                if Instant::now() >= deadline {
                    self.counters.dropped.fetch_add(held, Ordering::Relaxed);
                    self.counters.queued.store(0, Ordering::Relaxed);
                    return;
                }
            }
            if busy {
                tokio::task::yield_now().await;
            } else {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    }

    /// Creates the stream if it is missing (once a second until it works).
    async fn ensure_stream(&mut self) {
        if self
            .stream_tried
            .is_some_and(|t| t.elapsed() < Duration::from_secs(1))
        {
            return;
        }
        self.stream_tried = Some(Instant::now());
        match self.js.get_or_create_stream(stream_config(&self.s)).await {
            Ok(_) => self.stream_ready = true,
            Err(e) => {
                if self.counters.errors.fetch_add(1, Ordering::Relaxed) == 0 {
                    eprintln!(
                        "blindspot: fleet: stream {} not ready yet ({e}); records are queued up to fleet.queue_records",
                        self.s.stream
                    );
                }
            }
        }
    }

    fn add(&mut self, items: Vec<Item>, at: Instant) {
        let parts = self.s.partitions;
        for it in items {
            let p = match &it {
                Item::Session(s) => {
                    wire::partition(&wire::device_key(&s.device, s.tuple.src_ip), parts) as usize
                }
                Item::Record(Record::Device(d)) => {
                    wire::partition(&format!("mac:{}", d.mac), parts) as usize
                }
                Item::Record(_) => parts as usize,
            };
            let part = &mut self.parts[p];
            match &it {
                Item::Session(s) => wire::push_session(&mut part.body, s),
                Item::Record(r) => wire::push_record(&mut part.body, r),
            }
            part.records += 1;
            part.started.get_or_insert_with(Instant::now);
            part.since.get_or_insert(at);
            if part.records >= self.s.batch_records as u64
                || part.body.len() >= wire::MAX_MESSAGE - (64 << 10)
            {
                self.seal(p);
            }
        }
    }

    /// Closes partition `p`'s batch into a message.
    fn seal(&mut self, p: usize) {
        let parts = self.s.partitions as usize;
        let part = &mut self.parts[p];
        if part.records == 0 {
            return;
        }
        let subject = if p == parts {
            self.s.sensor_subject(&self.sensor)
        } else {
            self.s.partition_subject(p as u32, &self.sensor)
        };
        part.seq += 1;
        let id = format!("{}-{}-{}-{}", self.sensor, self.run_id, p, part.seq);
        let plain = std::mem::take(&mut part.body);
        // Compressed when it is smaller (JSON Lines shrink to about a
        // fifth): the stream's servers store and replicate a fifth of the
        // bytes, which is most of their work per record.
        let packed = self
            .zstd
            .as_mut()
            .and_then(|z| z.compress(&plain).ok())
            .filter(|z| z.len() < plain.len());
        let zstd = packed.is_some();
        let plain_len = plain.len() as u64;
        let body = bytes::Bytes::from(packed.unwrap_or(plain));
        part.queue.push_back(Out {
            subject,
            id,
            body,
            zstd,
            plain_len,
            records: part.records,
            since: part.since.take().unwrap_or_else(Instant::now),
        });
        part.records = 0;
        part.started = None;
    }

    /// Reads acknowledgements and publishes each partition's next message;
    /// true when something moved.
    async fn pump(&mut self) -> bool {
        let mut moved = false;
        let now = Instant::now();
        for part in &mut self.parts {
            if let Some((_, fut)) = &mut part.flight {
                match fut.now_or_never() {
                    None => {}
                    Some(Ok(ack)) => {
                        moved = true;
                        let (out, _) = part.flight.take().expect("checked above");
                        let c = &self.counters;
                        c.sent.fetch_add(out.records, Ordering::Relaxed);
                        c.messages.fetch_add(1, Ordering::Relaxed);
                        c.bytes.fetch_add(out.body.len() as u64, Ordering::Relaxed);
                        c.plain_bytes.fetch_add(out.plain_len, Ordering::Relaxed);
                        c.duplicates
                            .fetch_add(u64::from(ack.duplicate), Ordering::Relaxed);
                        c.queued.fetch_sub(out.records, Ordering::Relaxed);
                        c.lag_ms
                            .fetch_max(out.since.elapsed().as_millis() as u64, Ordering::Relaxed);
                    }
                    Some(Err(_)) => {
                        // Not stored, or not known to be: the same message
                        // (same Msg-Id) goes again, before the next one.
                        let (out, _) = part.flight.take().expect("checked above");
                        self.counters.errors.fetch_add(1, Ordering::Relaxed);
                        self.counters.resent.fetch_add(1, Ordering::Relaxed);
                        part.queue.push_front(out);
                        part.retry_at = Some(now + Duration::from_millis(250));
                    }
                }
            }
            if part.flight.is_some() || part.retry_at.is_some_and(|t| now < t) {
                continue;
            }
            let Some(out) = part.queue.pop_front() else {
                continue;
            };
            part.retry_at = None;
            let mut msg = jetstream::message::PublishMessage::build()
                .payload(out.body.clone())
                .message_id(&out.id);
            if out.zstd {
                msg = msg.header(wire::ENCODING, wire::ZSTD);
            }
            match self.js.send_publish(out.subject.clone(), msg).await {
                Ok(fut) => {
                    moved = true;
                    part.flight = Some((out, Box::pin(fut.into_future())));
                }
                Err(_) => {
                    self.counters.errors.fetch_add(1, Ordering::Relaxed);
                    self.counters.resent.fetch_add(1, Ordering::Relaxed);
                    part.queue.push_front(out);
                    part.retry_at = Some(now + Duration::from_millis(250));
                }
            }
        }
        moved
    }
}
