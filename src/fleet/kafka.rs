//! Kafka export (issue 22 item 4): `--publish kafka://HOST:PORT[,…]` writes
//! what the NATS publisher publishes to Kafka topics too, for SOCs whose
//! pipeline is Kafka. Correlation stays on JetStream (`blindspot correlate`
//! reads NATS only).
//!
//! ```text
//!  correlator ─▶ Tap ─▶ bounded channel ─▶ "kafka-produce" thread ─▶ librdkafka ThreadedProducer ─▶ brokers
//!                  (drops and counts          (serializes, keys,        (its own queue and poll thread,
//!                   when full)                 retries a full queue)     delivery reports → counters)
//! ```
//!
//! - Topics: `kafka.sessions_topic` (sessions, keyed by the device key of
//!   [`wire::device_key`]: `serial:…`, else `mac:…`, else `ip:…`) and
//!   `kafka.records_topic` (device records keyed by the same device key,
//!   coverage and stats keyed by the sensor's name).
//! - Value: one line of the NATS wire form ([`wire`]), without its
//!   newline: `{"kind":"session","session":{…}}` or
//!   `{"kind":"device"|"coverage"|"stats","record":{…}}`, one record per
//!   message. Headers: `sensor` (the sensor's name) and `kind`.
//! - Never blocks capture: past `kafka.queue_records` records held (in the
//!   channel and in librdkafka's queue) new ones are dropped and counted in
//!   the `stats` record's `kafka` object.
//!
//! The settings and the URL split are built without the `kafka` feature
//! too, so that a config naming Kafka is checked (and refused with one
//! line) by a build without it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

#[cfg(feature = "kafka")]
use super::wire;

/// `[kafka]` settings (README "Kafka export" has each key's range).
#[derive(Clone, Debug, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// The brokers (`HOST:PORT`): the `kafka://` URLs of `--publish` or
    /// `fleet.publish`; empty: no Kafka export.
    #[serde(skip)]
    pub brokers: Vec<String>,
    /// `kafka.sessions_topic`: sessions, keyed by the device key.
    pub sessions_topic: String,
    /// `kafka.records_topic`: device, coverage and stats records.
    pub records_topic: String,
    /// `kafka.compression`: `none`, `gzip`, `snappy` or `lz4`.
    pub compression: String,
    /// `kafka.linger_ms`: librdkafka's `linger.ms`.
    pub linger_ms: u64,
    /// `kafka.batch_records`: librdkafka's `batch.num.messages`.
    pub batch_records: u64,
    /// `kafka.queue_records`: records held (channel and librdkafka's queue)
    /// before new ones are dropped and counted.
    pub queue_records: u64,
    /// `kafka.message_timeout_s`: librdkafka's `message.timeout.ms`: a
    /// message not acknowledged this long counts as failed.
    pub message_timeout_s: u64,
    /// `kafka.drain_timeout_s`: at the end, how long to wait for the queue to empty.
    pub drain_timeout_s: u64,
    /// `kafka.properties`: more librdkafka properties (TLS, SASL, …), set
    /// after blindspot's own.
    pub properties: BTreeMap<String, String>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            brokers: Vec::new(),
            sessions_topic: "blindspot.sessions".into(),
            records_topic: "blindspot.records".into(),
            compression: "none".into(),
            linger_ms: 20,
            batch_records: 10_000,
            queue_records: 262_144,
            message_timeout_s: 30,
            drain_timeout_s: 30,
            properties: BTreeMap::new(),
        }
    }
}

/// The compression codecs `kafka.compression` takes (librdkafka's names;
/// the bundled librdkafka is built with zlib, without zstd).
pub const COMPRESSIONS: [&str; 4] = ["none", "gzip", "snappy", "lz4"];

/// A legal Kafka topic name: 1 to 249 letters, digits, `.`, `_`, `-`.
pub fn topic_ok(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= 249
        && t != "."
        && t != ".."
        && t.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// Splits publish URLs by scheme: the `kafka://HOST:PORT` ones become
/// broker addresses, the rest are left for the NATS check.
pub fn split_urls(key: &str, urls: &[String]) -> Result<(Vec<String>, Vec<String>), String> {
    let mut nats = Vec::new();
    let mut brokers = Vec::new();
    for u in urls {
        match u.strip_prefix("kafka://") {
            Some(rest) if !rest.is_empty() && !rest.contains(['/', ' ', ',']) => {
                brokers.push(rest.to_string())
            }
            Some(_) => {
                return Err(format!(
                    "{key} {u:?} is not a Kafka broker URL: use kafka://HOST:PORT"
                ));
            }
            None => nats.push(u.clone()),
        }
    }
    Ok((nats, brokers))
}

/// The producer's counters, read into each `stats` record's `kafka` object.
#[derive(Debug, Default)]
pub struct Counters {
    /// Records held now: in the channel, or in librdkafka's queue awaiting
    /// their delivery report.
    pub queued: AtomicU64,
    /// Records handed to librdkafka.
    pub produced: AtomicU64,
    /// Records the brokers acknowledged (`acks=all`).
    pub delivered: AtomicU64,
    /// Records librdkafka gave up on (message timeout, purged at the end,
    /// refused by the broker).
    pub failed: AtomicU64,
    /// Records dropped before librdkafka had them: the queue was full, or
    /// the drain at the end ran out of time.
    pub dropped: AtomicU64,
    /// Client errors librdkafka reported (a broker down, all brokers down, …).
    pub errors: AtomicU64,
}

impl Counters {
    /// The counters as the `stats` record's `kafka` object.
    pub fn snapshot(&self) -> BTreeMap<&'static str, u64> {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        BTreeMap::from([
            ("queued", g(&self.queued)),
            ("produced", g(&self.produced)),
            ("delivered", g(&self.delivered)),
            ("failed", g(&self.failed)),
            ("dropped", g(&self.dropped)),
            ("errors", g(&self.errors)),
        ])
    }
}

/// Several taps fed the same hand-offs, in order (NATS and Kafka together).
pub struct Taps(pub Vec<Box<dyn super::Tap>>);

impl super::Tap for Taps {
    fn session(&mut self, s: &crate::detect::Session) {
        for t in &mut self.0 {
            t.session(s);
        }
    }

    fn block(&mut self, block: &mut [crate::record::Record]) {
        for t in &mut self.0 {
            t.block(block);
        }
    }

    fn sync(&mut self, d: &mut crate::detect::Detector) {
        for t in &mut self.0 {
            t.sync(d);
        }
    }

    fn detector_side(&mut self) -> Option<super::DetectorSync> {
        let mut sides: Vec<super::DetectorSync> = self
            .0
            .iter_mut()
            .filter_map(|t| t.detector_side())
            .collect();
        (!sides.is_empty()).then(|| {
            Box::new(move |d: &mut crate::detect::Detector| {
                for s in &mut sides {
                    s(d);
                }
            }) as super::DetectorSync
        })
    }
}

/// `tap` (the NATS publisher, or none) with the Kafka producer after it
/// when `kafka.brokers` names brokers (the Kafka copies of the stats
/// records then carry both counter objects).
pub fn with_kafka(
    tap: Option<Box<dyn super::Tap>>,
    cfg: &crate::config::Config,
) -> Option<Box<dyn super::Tap>> {
    if cfg.kafka.brokers.is_empty() {
        return tap;
    }
    #[cfg(feature = "kafka")]
    {
        let name = crate::output::observer::Observer::new(cfg.sensor_name.as_deref(), &[]).name;
        let k: Box<dyn super::Tap> = Box::new(produce::Producer::start(&cfg.kafka, &name));
        Some(match tap {
            Some(t) => Box::new(Taps(vec![t, k])),
            None => k,
        })
    }
    #[cfg(not(feature = "kafka"))]
    {
        tap
    }
}

#[cfg(feature = "kafka")]
pub use produce::Producer;

#[cfg(feature = "kafka")]
mod produce {
    use super::{Counters, Settings, wire};
    use crate::detect::Session;
    use crate::record::Record;
    use crossbeam_channel::{Receiver, Sender, bounded};
    use rdkafka::ClientConfig;
    use rdkafka::error::KafkaError;
    use rdkafka::message::{Header, OwnedHeaders};
    use rdkafka::producer::{
        BaseRecord, DeliveryResult, Producer as _, ProducerContext, PurgeConfig, ThreadedProducer,
    };
    use rdkafka::types::RDKafkaErrorCode;
    use std::sync::atomic::Ordering;
    use std::sync::{Arc, OnceLock};
    use std::thread::JoinHandle;
    use std::time::{Duration, Instant};

    /// Pieces in the channel (each one correlator hand-off); the record
    /// bound is [`Settings::queue_records`].
    const CHANNEL_PIECES: usize = 4096;

    /// What the tap hands the producing thread, in the correlator's order.
    enum Item {
        Session(Box<Session>),
        Record(Record),
    }

    /// The correlator's side: collects a hand-off's items and sends them to
    /// the producing thread, or drops (and counts) them when it is full.
    pub struct Producer {
        tx: Option<Sender<Vec<Item>>>,
        pending: Vec<Item>,
        counters: Arc<Counters>,
        cap: u64,
        /// Set when the run ends: the producing thread gives up on what it
        /// cannot hand librdkafka by then, and librdkafka's flush stops then.
        deadline: Arc<OnceLock<Instant>>,
        drain: Duration,
        thread: Option<JoinHandle<()>>,
    }

    impl Producer {
        /// Starts the producing thread for `sensor` (the observer name).
        pub fn start(s: &Settings, sensor: &str) -> Producer {
            let (tx, rx) = bounded(CHANNEL_PIECES);
            let counters = Arc::new(Counters::default());
            let deadline = Arc::new(OnceLock::new());
            let (c, d, s2, name) = (
                Arc::clone(&counters),
                Arc::clone(&deadline),
                s.clone(),
                sensor.to_string(),
            );
            let thread = std::thread::Builder::new()
                .name("kafka-produce".into())
                .spawn(move || run(&rx, &s2, &name, &c, &d))
                .ok();
            if thread.is_none() {
                eprintln!(
                    "blindspot: kafka: cannot start the producing thread; nothing is exported"
                );
            }
            Producer {
                tx: Some(tx),
                pending: Vec::new(),
                counters,
                cap: s.queue_records,
                deadline,
                drain: Duration::from_secs(s.drain_timeout_s),
                thread,
            }
        }

        /// Sends the hand-off's items to the producing thread when they
        /// fit under `kafka.queue_records`; else counts them dropped.
        fn hand_on(&mut self) {
            let n = self.pending.len() as u64;
            if n == 0 {
                return;
            }
            let items = std::mem::take(&mut self.pending);
            let c = &self.counters;
            let sent = match (&self.tx, &self.thread) {
                (Some(tx), Some(_)) if c.queued.load(Ordering::Relaxed) + n <= self.cap => {
                    c.queued.fetch_add(n, Ordering::Relaxed);
                    let ok = tx.try_send(items).is_ok();
                    if !ok {
                        c.queued.fetch_sub(n, Ordering::Relaxed);
                    }
                    ok
                }
                _ => false,
            };
            if !sent {
                c.dropped.fetch_add(n, Ordering::Relaxed);
            }
        }
    }

    impl super::super::Tap for Producer {
        fn session(&mut self, s: &Session) {
            self.pending.push(Item::Session(Box::new(s.clone())));
        }

        fn block(&mut self, block: &mut [Record]) {
            let (c, pending) = (&self.counters, &mut self.pending);
            super::super::take_records(
                block,
                |st| st.kafka = Some(c.snapshot()),
                |r| pending.push(Item::Record(r)),
            );
            self.hand_on();
        }
    }

    impl Drop for Producer {
        /// Hands librdkafka what is held and waits for its delivery reports
        /// (up to `kafka.drain_timeout_s`) before the run ends.
        fn drop(&mut self) {
            self.hand_on();
            let _ = self.deadline.set(Instant::now() + self.drain);
            drop(self.tx.take());
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
            let g = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
            let c = &self.counters;
            eprintln!(
                "blindspot: kafka: delivered {} records ({} produced, {} failed, {} dropped)",
                g(&c.delivered),
                g(&c.produced),
                g(&c.failed),
                g(&c.dropped)
            );
        }
    }

    /// librdkafka's callbacks: delivery reports and client errors, into the counters.
    struct Context(Arc<Counters>);

    impl rdkafka::ClientContext for Context {
        fn error(&self, error: KafkaError, reason: &str) {
            if self.0.errors.fetch_add(1, Ordering::Relaxed) == 0 {
                eprintln!(
                    "blindspot: kafka: {error} ({reason}); records are queued up to kafka.queue_records"
                );
            }
        }

        /// librdkafka's log lines are not blindspot's: errors are counted
        /// (and the first printed) by `error`.
        fn log(&self, _: rdkafka::config::RDKafkaLogLevel, _: &str, _: &str) {}
    }

    impl ProducerContext for Context {
        type DeliveryOpaque = ();

        fn delivery(&self, r: &DeliveryResult<'_>, _: ()) {
            let c = &self.0;
            match r {
                Ok(_) => c.delivered.fetch_add(1, Ordering::Relaxed),
                Err(_) => c.failed.fetch_add(1, Ordering::Relaxed),
            };
            c.queued.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// librdkafka's configuration: blindspot's settings, then `kafka.properties`.
    pub fn client_config(s: &Settings, sensor: &str) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", s.brokers.join(","))
            .set(
                "client.id",
                format!("blindspot-{}", super::super::subject_token(sensor)),
            )
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set("linger.ms", s.linger_ms.to_string())
            .set("batch.num.messages", s.batch_records.to_string())
            .set("compression.type", &s.compression)
            .set("queue.buffering.max.messages", s.queue_records.to_string())
            .set(
                "message.timeout.ms",
                (s.message_timeout_s * 1000).to_string(),
            );
        for (k, v) in &s.properties {
            c.set(k, v);
        }
        c
    }

    /// The message key of a record on the records topic: a device record's
    /// device key (its MDM serial, else its MAC), else the sensor.
    fn record_key(r: &Record, sensor: &str) -> String {
        match r {
            Record::Device(d) => match d
                .device
                .info
                .as_deref()
                .and_then(|i| i.mdm.as_ref())
                .and_then(|(m, _)| m.serial.as_deref())
            {
                Some(serial) => format!("serial:{serial}"),
                None => format!("mac:{}", d.mac),
            },
            _ => sensor.to_string(),
        }
    }

    fn run(
        rx: &Receiver<Vec<Item>>,
        s: &Settings,
        sensor: &str,
        counters: &Arc<Counters>,
        deadline: &OnceLock<Instant>,
    ) {
        let producer: ThreadedProducer<Context> =
            match client_config(s, sensor).create_with_context(Context(Arc::clone(counters))) {
                Ok(p) => p,
                Err(e) => {
                    eprintln!("blindspot: kafka: cannot start the producer: {e}");
                    for items in rx.iter() {
                        let n = items.len() as u64;
                        counters.queued.fetch_sub(n, Ordering::Relaxed);
                        counters.dropped.fetch_add(n, Ordering::Relaxed);
                    }
                    return;
                }
            };
        let mut value = Vec::new();
        for items in rx.iter() {
            for it in items {
                value.clear();
                let (topic, key, kind) = match &it {
                    Item::Session(ses) => {
                        wire::push_session(&mut value, ses);
                        (
                            &s.sessions_topic,
                            wire::device_key(&ses.device, ses.tuple.src_ip),
                            "session",
                        )
                    }
                    Item::Record(r) => {
                        wire::push_record(&mut value, r);
                        (&s.records_topic, record_key(r, sensor), r.kind())
                    }
                };
                if value.last() == Some(&b'\n') {
                    value.pop();
                }
                let headers = OwnedHeaders::new_with_capacity(2)
                    .insert(Header {
                        key: "sensor",
                        value: Some(sensor),
                    })
                    .insert(Header {
                        key: "kind",
                        value: Some(kind),
                    });
                let mut rec = BaseRecord::to(topic)
                    .key(key.as_str())
                    .payload(value.as_slice())
                    .headers(headers);
                loop {
                    match producer.send(rec) {
                        Ok(()) => {
                            counters.produced.fetch_add(1, Ordering::Relaxed);
                            break;
                        }
                        // librdkafka's queue is full (brokers slow or
                        // down): wait here; the tap drops once the channel
                        // is full too. At the end, wait no longer than the drain.
                        Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r))
                            if deadline.get().is_none_or(|d| Instant::now() < *d) =>
                        {
                            rec = r;
                            std::thread::sleep(Duration::from_millis(5));
                        }
                        Err(_) => {
                            counters.queued.fetch_sub(1, Ordering::Relaxed);
                            counters.dropped.fetch_add(1, Ordering::Relaxed);
                            break;
                        }
                    }
                }
            }
        }
        // The channel is closed: wait for the delivery reports, up to the
        // drain's end, then purge what is left (reported as failed).
        let left = deadline.get().map_or(Duration::ZERO, |d| {
            d.saturating_duration_since(Instant::now())
        });
        if producer.flush(left).is_err() {
            producer.purge(PurgeConfig::default().queue().inflight());
            let _ = producer.flush(Duration::from_secs(1));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nats_and_kafka_urls_split_by_scheme() {
        let urls = [
            "nats://a:4222",
            "kafka://b:9092",
            "kafka://c:9092",
            "tls://d:4222",
        ]
        .map(String::from);
        let (nats, kafka) = split_urls("--publish", &urls).unwrap();
        assert_eq!(nats, ["nats://a:4222", "tls://d:4222"]);
        assert_eq!(kafka, ["b:9092", "c:9092"]);
        for bad in ["kafka://", "kafka://a:1/x", "kafka://a b:1"] {
            let e = split_urls("--publish", &[bad.into()]).unwrap_err();
            assert!(e.contains("kafka://HOST:PORT"), "{e}");
        }
    }

    #[test]
    fn topic_names_follow_kafkas_rule() {
        for ok in ["blindspot.sessions", "a", "A-b_c.9", &"x".repeat(249)] {
            assert!(topic_ok(ok), "{ok}");
        }
        for bad in ["", ".", "..", "a/b", "a b", "ü", &"x".repeat(250)] {
            assert!(!topic_ok(bad), "{bad}");
        }
    }
}
