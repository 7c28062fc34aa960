//! Fleet mode (issue 22): sensors publish what the fleet-wide analytics
//! need to a NATS JetStream stream, and `blindspot correlate` consumers run
//! the same detections (`detect/`) on every device's sessions, whichever
//! sensors saw them.
//!
//! ```text
//!  sensor A ─ correlator ─▶ Tap ─▶ publish.rs (own thread, own runtime) ─┐   JetStream stream
//!  sensor B ─ correlator ─▶ Tap ─▶ publish.rs ───────────────────────────┼─▶ BLINDSPOT, R3      ─▶ correlate.rs (P/N)
//!                                                                        ┘   blindspot.p.<part>.<sensor>
//! ```
//!
//! - [`wire`]: the message form (JSON Lines of sessions and records), the
//!   device key and its partition.
//! - `publish`: the publisher thread: batches per partition, Msg-Id per
//!   message, in-order resend of what was not acknowledged, a bounded queue
//!   that drops (and counts) rather than block the correlator.
//! - `correlate`: durable consumers for a share of the partitions, the
//!   merge by packet time, the detector, acknowledgements after output.
//!
//! Subjects (`blindspot` is `fleet.subject`): `blindspot.p.<partition>.<sensor>` for sessions and device
//! records (a consumer of partition `p` filters `blindspot.p.<p>.>`, every
//! sensor at once), `blindspot.s.<sensor>` for coverage and stats.

pub mod kafka;
pub mod wire;

#[cfg(feature = "fleet")]
pub mod correlate;
#[cfg(feature = "fleet")]
pub mod publish;
#[cfg(feature = "fleet")]
pub mod state;

use crate::detect::Session;
use std::sync::atomic::{AtomicU64, Ordering};

/// The current-thread runtime each fleet client runs its async side on.
#[cfg(feature = "fleet")]
fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

/// Connects to `servers` (URLs already checked) as `name`, for a client
/// that reads or writes once and is done: a 5 s connection timeout, and
/// JetStream requests answered within 10 s.
#[cfg(feature = "fleet")]
async fn connect(
    servers: &[String],
    name: &str,
) -> Result<(async_nats::Client, async_nats::jetstream::Context), String> {
    let addrs: Vec<async_nats::ServerAddr> = servers
        .iter()
        .map(|u| u.parse().map_err(|e| format!("{u}: {e}")))
        .collect::<Result<_, _>>()?;
    let client = async_nats::ConnectOptions::new()
        .name(name)
        .connection_timeout(std::time::Duration::from_secs(5))
        .max_reconnects(None)
        .connect(addrs)
        .await
        .map_err(|e| format!("cannot connect to {servers:?}: {e}"))?;
    let js = async_nats::jetstream::ContextBuilder::new()
        .timeout(std::time::Duration::from_secs(10))
        .build(client.clone());
    Ok((client, js))
}

/// `[fleet]` settings (the config file's keys; `Config::fleet` holds the
/// validated copy). README "Fleet mode" has each key's range.
#[derive(Clone, Debug, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// `--publish` / `fleet.publish`: server URLs; empty: no publishing.
    pub publish: Vec<String>,
    /// `fleet.servers`: where `correlate` reads when `--from` is not given.
    pub servers: Vec<String>,
    /// `fleet.stream`: the JetStream stream's name.
    pub stream: String,
    /// `fleet.subject`: the first token of every subject (one per stream:
    /// two streams cannot share subjects).
    pub subject: String,
    /// `fleet.replicas`: the stream's replicas when it is created.
    pub replicas: usize,
    /// `fleet.partitions`: device-key partitions (fixed for a stream's life).
    pub partitions: u32,
    /// `fleet.batch_records`: records per message.
    pub batch_records: usize,
    /// `fleet.zstd_level`: message bodies are compressed with zstd at this
    /// level (header `Content-Encoding: zstd`); 0 sends plain JSON Lines.
    pub zstd_level: i32,
    /// `fleet.linger_ms`: a partial batch is sent after this long.
    pub linger_ms: u64,
    /// `fleet.queue_records`: records held (queued, batched, unacknowledged)
    /// before new ones are dropped and counted.
    pub queue_records: u64,
    /// `fleet.ack_timeout_s`: a message unacknowledged this long is resent.
    pub ack_timeout_s: u64,
    /// `fleet.drain_timeout_s`: at the end, how long to wait for the queue to empty.
    pub drain_timeout_s: u64,
    /// `fleet.max_age_h`: the stream keeps messages this long (0: no limit).
    pub max_age_h: u64,
    /// `fleet.reorder_s`: `correlate` holds sessions this long in packet
    /// time, to merge the sensors' streams in time order.
    pub reorder_s: u64,
    /// `fleet.ack_wait_s`: `correlate`'s consumers' ack wait: a message
    /// read and neither acknowledged nor kept (progress) this long is
    /// delivered again.
    pub ack_wait_s: u64,
    /// `fleet.durable`: prefix of `correlate`'s durable consumer names.
    pub durable: String,
    /// `fleet.state`: share learnt state in the key-value buckets
    /// (`state.rs`) when publishing, and in `correlate`.
    pub state: bool,
    /// `fleet.state_interval_s`: how often the buckets are read and what
    /// was learnt is written.
    pub state_interval_s: u64,
    /// `fleet.state_max_keys`: keys written per bucket per interval (16
    /// times as many are read).
    pub state_max_keys: usize,
    /// `fleet.state_wait_s`: at the start, how long a sensor waits for its
    /// first read of the buckets.
    pub state_wait_s: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            publish: Vec::new(),
            servers: Vec::new(),
            stream: "BLINDSPOT".into(),
            subject: "blindspot".into(),
            replicas: 3,
            partitions: 16,
            batch_records: 64,
            zstd_level: 1,
            linger_ms: 200,
            queue_records: 262_144,
            ack_timeout_s: 5,
            drain_timeout_s: 30,
            max_age_h: 168,
            reorder_s: 60,
            ack_wait_s: 60,
            durable: "blindspot-correlate".into(),
            state: true,
            state_interval_s: 10,
            state_max_keys: 256,
            state_wait_s: 5,
        }
    }
}

/// A sensor name as a subject token: `.`, `*`, `>`, white space and
/// control characters become `_` (at most 64 characters).
pub fn subject_token(name: &str) -> String {
    let t: String = name
        .chars()
        .take(64)
        .map(|c| {
            if c == '.' || c == '*' || c == '>' || c.is_whitespace() || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect();
    if t.is_empty() { "_".into() } else { t }
}

impl Settings {
    /// The subject of partition `p`'s messages from `sensor` (a token).
    pub fn partition_subject(&self, p: u32, sensor: &str) -> String {
        format!("{}.p.{p}.{sensor}", self.subject)
    }

    /// What a consumer of partition `p` takes: every sensor's messages.
    pub fn partition_filter(&self, p: u32) -> String {
        format!("{}.p.{p}.>", self.subject)
    }

    /// The subject of `sensor`'s coverage and stats records.
    pub fn sensor_subject(&self, sensor: &str) -> String {
        format!("{}.s.{sensor}", self.subject)
    }
}

/// The publisher's counters, read into each `stats` record's `fleet` object.
#[derive(Debug, Default)]
pub struct Counters {
    /// Records held now: queued, batched or unacknowledged.
    pub queued: AtomicU64,
    /// Records the stream acknowledged.
    pub sent: AtomicU64,
    /// Messages acknowledged.
    pub messages: AtomicU64,
    /// Body bytes of the acknowledged messages, as sent (compressed).
    pub bytes: AtomicU64,
    /// The same bodies before compression (JSON Lines).
    pub plain_bytes: AtomicU64,
    /// Messages published again after a failed or missing acknowledgement.
    pub resent: AtomicU64,
    /// Acknowledgements that said the message was a duplicate (a resend of
    /// one already stored).
    pub duplicates: AtomicU64,
    /// Records dropped: the queue was full, or the drain at the end ran out of time.
    pub dropped: AtomicU64,
    /// The longest a record waited from the correlator to its acknowledgement
    /// since the last stats record, milliseconds.
    pub lag_ms: AtomicU64,
    /// Publish or acknowledgement failures (timeouts, no stream leader).
    pub errors: AtomicU64,
    /// Fleet state (`state.rs`): values read from the buckets.
    pub state_read: AtomicU64,
    /// Values the learner or detector took from the fleet.
    pub state_seeded: AtomicU64,
    /// Values written (merged into the bucket's entry).
    pub state_written: AtomicU64,
    /// Writes that lost a race (the entry's revision moved) and were tried again.
    pub state_conflicts: AtomicU64,
    /// Reads or writes that failed (or ran out of tries).
    pub state_errors: AtomicU64,
    /// Keys or values left out by a cap (pending changes, keys read, value size).
    pub state_over_cap: AtomicU64,
    /// Values read that did not parse.
    pub state_bad_values: AtomicU64,
}

impl Counters {
    /// The counters as the `stats` record's `fleet` object (`lag_ms` restarts).
    pub fn snapshot(&self) -> std::collections::BTreeMap<&'static str, u64> {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        std::collections::BTreeMap::from([
            ("queued", g(&self.queued)),
            ("sent", g(&self.sent)),
            ("messages", g(&self.messages)),
            ("bytes", g(&self.bytes)),
            ("plain_bytes", g(&self.plain_bytes)),
            ("resent", g(&self.resent)),
            ("duplicates", g(&self.duplicates)),
            ("dropped", g(&self.dropped)),
            ("errors", g(&self.errors)),
            ("lag_ms", self.lag_ms.swap(0, Ordering::Relaxed)),
        ])
    }

    /// The fleet-state counters (`state_*`), for the `stats` record.
    pub fn state_snapshot(&self) -> std::collections::BTreeMap<&'static str, u64> {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        std::collections::BTreeMap::from([
            ("state_read", g(&self.state_read)),
            ("state_seeded", g(&self.state_seeded)),
            ("state_written", g(&self.state_written)),
            ("state_conflicts", g(&self.state_conflicts)),
            ("state_errors", g(&self.state_errors)),
            ("state_over_cap", g(&self.state_over_cap)),
            ("state_bad_values", g(&self.state_bad_values)),
        ])
    }
}

/// What the correlator hands the fleet beside its own output: each
/// session it built, and each block of records before the sink gets it
/// (the tap takes device, coverage and stats records, and writes its
/// counters into the stats record). Must never block.
pub trait Tap: Send {
    fn session(&mut self, s: &Session);
    fn block(&mut self, block: &mut [crate::record::Record]);
    /// Fleet state: seeds the detector with what the fleet learnt and
    /// takes what it learnt itself (called before and after each push).
    /// Once [`Tap::detector_side`] was taken, only the CA learner's part.
    fn sync(&mut self, _d: &mut crate::detect::Detector) {}
    /// The detector's part of the sync (its proxy fingerprints), for the
    /// detector's own thread (`run::detector`), which calls it around each
    /// call; `None` when this tap keeps no fleet state.
    fn detector_side(&mut self) -> Option<DetectorSync> {
        None
    }
}

/// [`Tap::detector_side`]: called with the detector on its thread.
pub type DetectorSync = Box<dyn FnMut(&mut crate::detect::Detector) + Send>;

/// Hands `take` the records of `block` a tap forwards, in order: device,
/// coverage and stats records, each stats record first given `stats` (the
/// tap's counters, written into the sink's copy too).
pub fn take_records(
    block: &mut [crate::record::Record],
    mut stats: impl FnMut(&mut crate::record::StatsRecord),
    mut take: impl FnMut(crate::record::Record),
) {
    use crate::record::Record;
    for r in block.iter_mut() {
        match r {
            Record::Stats(st) => {
                stats(st);
                take(r.clone());
            }
            Record::Device(_) | Record::Coverage(_) => take(r.clone()),
            _ => {}
        }
    }
}

/// The tap `cfg` asks for: a NATS publisher when `fleet.publish` names
/// servers, a Kafka producer when `--publish` named `kafka://` brokers
/// ([`kafka`]), both in turn when both.
pub fn tap(cfg: &crate::config::Config) -> Option<Box<dyn Tap>> {
    kafka::with_kafka(nats_tap(cfg), cfg)
}

fn nats_tap(cfg: &crate::config::Config) -> Option<Box<dyn Tap>> {
    if cfg.fleet.publish.is_empty() {
        return None;
    }
    #[cfg(feature = "fleet")]
    {
        let name = crate::output::observer::Observer::new(cfg.sensor_name.as_deref(), &[]).name;
        Some(Box::new(publish::Publisher::start(&cfg.fleet, &name)))
    }
    #[cfg(not(feature = "fleet"))]
    {
        None
    }
}

/// What the command line adds to `[fleet]` for `blindspot correlate`.
pub struct CorrelateOptions {
    pub servers: Vec<String>,
    /// This process's share of the partitions: (index, count).
    pub share: (u32, u32),
    /// Stop after the stream has been idle this long: evaluate every open
    /// window, write, acknowledge everything, exit (batch use).
    pub until_idle: Option<std::time::Duration>,
    pub output: String,
}

/// `blindspot correlate`: its counters (messages, sessions, detections, ...).
pub fn correlate(
    cfg: &crate::config::Config,
    o: &CorrelateOptions,
) -> Result<std::collections::BTreeMap<&'static str, u64>, String> {
    #[cfg(feature = "fleet")]
    {
        correlate::run(cfg, o)
    }
    #[cfg(not(feature = "fleet"))]
    {
        let _ = (cfg, o);
        Err("this blindspot was built without the `fleet` feature".into())
    }
}
