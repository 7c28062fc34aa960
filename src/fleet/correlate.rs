//! `blindspot correlate`: reads the sensors' sessions from the stream and
//! runs the detections of a single sensor (`detect::Detector`) on them,
//! fleet-wide.
//!
//! - One durable pull consumer per partition this process owns
//!   (`--partitions I/N`: the partitions `p` with `p % N == I`), named
//!   `<fleet.durable>-<p>` and filtered on `blindspot.p.<p>.>`, every
//!   sensor's messages of that partition in stream order.
//! - Sessions are held [`Settings::reorder_s`] of packet time behind the
//!   latest one seen, then released to the detector in (start, flow id)
//!   order: the sensors' streams merged in time order, as one sensor's
//!   correlator would have seen them.
//! - A message is acknowledged once every detection window its sessions
//!   can be in has been evaluated and written (its last session plus
//!   `detections.window_s` is behind the released time); until then a
//!   progress acknowledgement every third of `fleet.ack_wait_s` keeps it
//!   from redelivery, and SIGTERM gives the held ones back (NAK). So a
//!   consumer that restarts gets again exactly the sessions of the windows
//!   still open, and detection ids (pattern, key, window start) come out
//!   the same.
//! - `observers` on each detection: the sensors (their subject token) that
//!   sent the flows in its `flow_ids`.

use super::{CorrelateOptions as Options, Settings, publish::stream_config, wire};
use crate::config::Config;
use crate::detect::Session;
use crate::output::Sink;
use crate::record::{FlowId, Record};
use async_nats::jetstream::{self, consumer::pull};
use futures_util::StreamExt;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Messages held unacknowledged at most; past this the oldest is
/// acknowledged early (counted: `acked_early`).
const MAX_HELD_MESSAGES: usize = 200_000;
/// Flows whose sensors are remembered for `observers`; past this the map
/// starts again (counted: `observers_forgotten`).
const MAX_FLOW_SENSORS: usize = 4_000_000;
/// Sessions held for the time-order merge; past this, every held session
/// is released at once (counted: `released_early`).
const MAX_HELD_SESSIONS: usize = 1_000_000;
/// Distinct sensors named in `observers`.
const MAX_SENSORS: usize = 4096;

struct Held {
    msg: jetstream::Message,
    /// The latest session start in it (0: none).
    last_ts: u64,
    /// Order of arrival (ties).
    seq: u64,
}

// Min-heap order on (last_ts, arrival): the first to be done on top.
impl Ord for Held {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (o.last_ts, o.seq).cmp(&(self.last_ts, self.seq))
    }
}
impl PartialOrd for Held {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl PartialEq for Held {
    fn eq(&self, o: &Self) -> bool {
        (self.last_ts, self.seq) == (o.last_ts, o.seq)
    }
}
impl Eq for Held {}

/// A session waiting for the merge, in a min-heap on (start, arrival).
struct Waiting(Session, u64);

impl Ord for Waiting {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (o.0.ts, o.1).cmp(&(self.0.ts, self.1))
    }
}
impl PartialOrd for Waiting {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl PartialEq for Waiting {
    fn eq(&self, o: &Self) -> bool {
        (self.0.ts, self.1) == (o.0.ts, o.1)
    }
}
impl Eq for Waiting {}

struct State {
    detector: crate::detect::Detector,
    mdm: HashMap<String, Arc<crate::inputs::mdm::MdmDevice>>,
    sensors: Vec<String>,
    flow_sensors: HashMap<FlowId, Vec<u16>>,
    /// Sessions not yet released, with their sensor.
    sessions: BinaryHeap<Waiting>,
    held: BinaryHeap<Held>,
    /// Arrivals so far (heap ties).
    arrivals: u64,
    max_ts: u64,
    released: u64,
    counters: BTreeMap<&'static str, u64>,
    /// Fleet state (`fleet.state`): the buckets, and the sightings to write.
    fleet: Option<super::state::Correlate>,
}

impl State {
    fn count(&mut self, k: &'static str, n: u64) {
        *self.counters.entry(k).or_default() += n;
    }

    fn sensor(&mut self, token: &str) -> Option<u16> {
        if let Some(i) = self.sensors.iter().position(|s| s == token) {
            return Some(i as u16);
        }
        if self.sensors.len() >= MAX_SENSORS {
            return None;
        }
        self.sensors.push(token.to_string());
        Some((self.sensors.len() - 1) as u16)
    }

    /// Reads a message's sessions; the latest session start in it.
    fn take(&mut self, msg: jetstream::Message) -> u64 {
        let token = msg
            .subject
            .as_str()
            .split('.')
            .nth(3)
            .unwrap_or("_")
            .to_string();
        let sensor = self.sensor(&token);
        let mut bad = 0;
        let mdm = &self.mdm;
        let encoding = msg
            .headers
            .as_ref()
            .and_then(|h| h.get(wire::ENCODING))
            .map(|v| v.as_str());
        // A body that does not decompress is one bad line.
        let sessions = match wire::body(&msg.payload, encoding) {
            Some(body) => wire::read_sessions(&body, &|serial| mdm.get(serial).cloned(), &mut bad),
            None => {
                bad += 1;
                Vec::new()
            }
        };
        self.count("messages", 1);
        self.count("sessions", sessions.len() as u64);
        self.count("bad_lines", bad);
        let mut last_ts = 0;
        for s in sessions {
            last_ts = last_ts.max(s.ts.0);
            self.max_ts = self.max_ts.max(s.ts.0);
            if let Some(i) = sensor {
                if self.flow_sensors.len() >= MAX_FLOW_SENSORS {
                    self.flow_sensors.clear();
                    self.count("observers_forgotten", 1);
                }
                let v = self.flow_sensors.entry(s.flow_id).or_default();
                if !v.contains(&i) && v.len() < 16 {
                    v.push(i);
                }
            }
            if let Some(f) = &mut self.fleet {
                f.sighting(&wire::device_key(&s.device, s.tuple.src_ip), &token, s.ts.0);
            }
            self.arrivals += 1;
            self.sessions.push(Waiting(s, self.arrivals));
        }
        self.arrivals += 1;
        self.held.push(Held {
            msg,
            last_ts,
            seq: self.arrivals,
        });
        last_ts
    }

    /// Releases the sessions that started by `until` to the detector (and
    /// evaluates the windows that ended by then); the detections.
    fn release(&mut self, until: u64) -> Vec<Record> {
        let mut now = Vec::new();
        while self.sessions.peek().is_some_and(|w| w.0.ts.0 <= until) {
            if let Some(w) = self.sessions.pop() {
                now.push(w.0);
            }
        }
        let mut found = self.detector.push(&mut now);
        if until == u64::MAX {
            found.extend(self.detector.finish());
        } else {
            found.extend(self.detector.advance(crate::time::Timestamp(until)));
        }
        self.released = self.released.max(until);
        let mut out = Vec::with_capacity(found.len());
        for mut d in found {
            let mut names: Vec<String> = Vec::new();
            for f in &d.flow_ids {
                for &i in self.flow_sensors.get(f).map_or(&[][..], |v| v.as_slice()) {
                    let n = &self.sensors[i as usize];
                    if !names.contains(n) {
                        names.push(n.clone());
                    }
                }
            }
            names.sort();
            d.observers = names;
            out.push(Record::Detection(Box::new(d)));
        }
        self.count("detections", out.len() as u64);
        out
    }

    /// The held messages every window of which has been evaluated (all of
    /// them with `all`), oldest first; the early ones past the cap too.
    fn done(&mut self, window: u64, all: bool) -> Vec<jetstream::Message> {
        let mut out = Vec::new();
        let released = self.released;
        while self
            .held
            .peek()
            .is_some_and(|h| all || h.last_ts.saturating_add(window) <= released)
        {
            if let Some(h) = self.held.pop() {
                out.push(h.msg);
            }
        }
        while self.held.len() > MAX_HELD_MESSAGES {
            if let Some(h) = self.held.pop() {
                out.push(h.msg);
                self.count("acked_early", 1);
            }
        }
        out
    }
}

/// Runs until the stream is idle for `until_idle` (or SIGTERM/SIGINT).
pub fn run(cfg: &Config, o: &Options) -> Result<BTreeMap<&'static str, u64>, String> {
    let rt = super::runtime().map_err(|e| format!("cannot start the runtime: {e}"))?;
    rt.block_on(consume(cfg, o))
}

async fn consumers(
    s: &Settings,
    js: &jetstream::Context,
    share: (u32, u32),
    ack_wait: Duration,
) -> Result<Vec<jetstream::consumer::Consumer<pull::Config>>, String> {
    let stream = js
        .get_or_create_stream(stream_config(s))
        .await
        .map_err(|e| format!("stream {}: {e}", s.stream))?;
    // Created together: each is a round of the cluster's consensus.
    let made = futures_util::future::join_all(
        (0..s.partitions)
            .filter(|p| p % share.1 == share.0)
            .map(|p| {
                let name = format!("{}-{p}", s.durable);
                let stream = &stream;
                async move {
                    stream
                        .get_or_create_consumer(
                            &name,
                            pull::Config {
                                durable_name: Some(name.clone()),
                                filter_subject: s.partition_filter(p),
                                ack_policy: jetstream::consumer::AckPolicy::Explicit,
                                ack_wait,
                                max_ack_pending: -1,
                                deliver_policy: jetstream::consumer::DeliverPolicy::All,
                                ..Default::default()
                            },
                        )
                        .await
                        .map_err(|e| {
                            format!(
                                "consumer {name}: {e} (a consumer of that name with another filter exists? fleet.partitions must stay the same for a stream)"
                            )
                        })
                }
            }),
    )
    .await;
    let out = made.into_iter().collect::<Result<Vec<_>, _>>()?;
    Ok(out)
}

async fn consume(cfg: &Config, o: &Options) -> Result<BTreeMap<&'static str, u64>, String> {
    let s = &cfg.fleet;
    let (client, js) = super::connect(&o.servers, "blindspot correlate").await?;
    let window = cfg.detect.window;
    let reorder = s.reorder_s * 1_000_000_000;
    // Held messages wait a window and the reorder delay of packet time
    // (live: as long in wall time); they are kept from redelivery by a
    // progress acknowledgement every third of the ack wait.
    let ack_wait = Duration::from_secs(s.ack_wait_s);
    let mut progress_at = Instant::now();
    let consumers = consumers(s, &js, o.share, ack_wait).await?;
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        let _ = signal_hook::flag::register(sig, Arc::clone(&stop));
    }
    let mut sink = Sink::open(&o.output, cfg.flush_interval_ms, cfg.zstd_level)
        .map_err(|e| format!("cannot write {}: {e}", o.output))?
        .with_encoding(crate::output::Encoding::for_config(cfg, &[]));
    let mut st = State {
        detector: crate::run::correlator(cfg).detector,
        mdm: cfg
            .device_inputs
            .mdm
            .iter()
            .filter_map(|m| Some((m.serial.clone()?, Arc::new(m.clone()))))
            .collect(),
        sensors: Vec::new(),
        flow_sensors: HashMap::new(),
        sessions: BinaryHeap::new(),
        held: BinaryHeap::new(),
        arrivals: 0,
        max_ts: 0,
        released: 0,
        counters: ["messages", "sessions", "bad_lines", "detections"]
            .into_iter()
            .map(|k| (k, 0))
            .collect(),
        fleet: None,
    };
    if s.state {
        match super::state::Correlate::open(&js, s).await {
            Ok(f) => st.fleet = Some(f),
            Err(e) => eprintln!("blindspot: correlate: no fleet state ({e})"),
        }
    }
    // What the fleet learnt before (inspection CAs, proxy fingerprints).
    if let Some(f) = &mut st.fleet {
        f.seed(&mut st.detector).await;
    }
    let state_every = Duration::from_secs(s.state_interval_s);
    let mut state_at = Instant::now();
    // Per partition: the latest session start read, and whether the last
    // fetch left messages waiting.
    let mut part_max = vec![0u64; consumers.len()];
    let mut behind = vec![false; consumers.len()];
    let mut idle_since = Instant::now();
    let started = Instant::now();
    let mut last_ack_error: Option<String> = None;
    loop {
        let mut got = 0usize;
        // Every partition's next messages at once (each fetch waits up to
        // its expiry when the partition has nothing).
        // Every partition's next messages at once (a fetch returns what
        // is there, or waits up to its expiry when there is nothing).
        let batches = futures_util::future::join_all(consumers.iter().map(|c| async move {
            let mut v = Vec::new();
            let mut errors = 0u64;
            match c
                .fetch()
                .max_messages(512)
                .expires(Duration::from_millis(100))
                .messages()
                .await
            {
                Ok(mut batch) => {
                    while let Some(m) = batch.next().await {
                        match m {
                            Ok(m) => v.push(m),
                            Err(_) => errors += 1,
                        }
                    }
                }
                Err(_) => errors += 1,
            }
            (v, errors)
        }))
        .await;
        st.count("fetch_rounds", 1);
        for (i, (msgs, errors)) in batches.into_iter().enumerate() {
            st.count("fetch_errors", errors);
            // Caught up: the partition has nothing more now (its messages
            // then cannot be older than what is released).
            behind[i] = msgs
                .last()
                .and_then(|m| m.info().ok())
                .is_some_and(|info| info.pending > 0);
            for m in msgs {
                got += 1;
                let last = st.take(m);
                part_max[i] = part_max[i].max(last);
            }
        }
        let stopping = stop.load(Ordering::Relaxed);
        let finished =
            got == 0 && o.until_idle.is_some_and(|d| idle_since.elapsed() >= d) && !stopping;
        if got > 0 {
            idle_since = Instant::now();
        }
        let until = if finished {
            u64::MAX
        } else if st.sessions.len() > MAX_HELD_SESSIONS {
            st.count("released_early", st.sessions.len() as u64);
            st.max_ts
        } else {
            // Not past a partition that still has messages waiting.
            let lagging = (0..consumers.len())
                .filter(|&i| behind[i])
                .map(|i| part_max[i])
                .min()
                .unwrap_or(u64::MAX);
            st.max_ts.min(lagging).saturating_sub(reorder)
        };
        let mut acks = Vec::new();
        if !stopping && (finished || until > st.released) {
            let found = st.release(until);
            sink.write_records(&found)
                .map_err(|e| format!("cannot write {}: {e}", sink.name()))?;
            sink.flush()
                .map_err(|e| format!("cannot write {}: {e}", sink.name()))?;
            acks = st.done(window, finished);
        }
        // Acknowledgements sent, then flushed (a confirmed one per message
        // waited for the consumer's replicas each: 7 k sessions/s). A lost
        // one means a redelivery: its sessions come again, into windows
        // that closed (the detection ids repeat).
        if !acks.is_empty() {
            for m in &acks {
                if let Err(e) = m.ack().await {
                    st.count("ack_errors", 1);
                    last_ack_error = Some(e.to_string());
                }
            }
            if let Err(e) = client.flush().await {
                st.count("ack_errors", 1);
                last_ack_error = Some(e.to_string());
            }
        }
        if let Some(f) = &mut st.fleet
            && (stopping || finished || state_at.elapsed() >= state_every)
        {
            state_at = Instant::now();
            f.write(stopping || finished).await;
            if !(stopping || finished) {
                f.seed(&mut st.detector).await;
            }
        }
        if stopping {
            // Given back at once, for the next run (a process that dies
            // instead gets them back after fleet.ack_wait_s).
            let back: Vec<jetstream::Message> = std::mem::take(&mut st.held)
                .into_iter()
                .map(|h| h.msg)
                .collect();
            st.count("given_back", back.len() as u64);
            for m in back {
                let _ = m.ack_with(jetstream::AckKind::Nak(None)).await;
            }
            // The NAKs are only queued until the connection is flushed.
            if client.flush().await.is_err() {
                st.count("ack_errors", 1);
            }
            break;
        }
        if finished {
            break;
        }
        if progress_at.elapsed() >= ack_wait / 3 {
            progress_at = Instant::now();
            let mut failed = 0;
            for h in &st.held {
                if h.msg.ack_with(jetstream::AckKind::Progress).await.is_err() {
                    failed += 1;
                }
            }
            st.count("ack_errors", failed);
        }
        if got == 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    if let Some(e) = last_ack_error {
        eprintln!(
            "blindspot: correlate: some acknowledgements failed ({e}); their messages come again"
        );
    }
    st.count("held_unacknowledged", st.held.len() as u64);
    if let Some(f) = st.fleet.take() {
        st.counters.extend(f.counters.state_snapshot());
    }
    st.count("runtime_ms", started.elapsed().as_millis() as u64);
    let mut stats = crate::record::StatsRecord {
        kind: "stats",
        ts: crate::time::Timestamp(st.released.min(st.max_ts)),
        detections: crate::record::sorted(&st.detector.counters),
        ..Default::default()
    };
    st.count("names_refused", wire::names_refused());
    stats.fleet = Some(st.counters.clone());
    sink.write_records(&[Record::Stats(Box::new(stats))])
        .map_err(|e| format!("cannot write {}: {e}", sink.name()))?;
    let name = sink.name().to_string();
    sink.finish()
        .map_err(|e| format!("cannot write {name}: {e}"))?;
    Ok(st.counters)
}
