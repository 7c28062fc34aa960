//! Fleet state (issue 22, item 3): what the sensors learn, in JetStream
//! key-value buckets, so that every sensor and `correlate` consumer starts
//! from what the fleet learnt.
//!
//! | bucket (`<fleet.stream>_…`) | key | value ([`CaValue`] …) | written by |
//! | --- | --- | --- | --- |
//! | `_inspection_cas` | [`ca_key`] of the CA's subject and key id | subject, key id, SHA-256, registrable domains, sensors, first seen, learnt | sensors |
//! | `_proxy_fingerprints` | `ja3s.<JA3S>` or `ja3s13.<JA3S>` | destination hashes, sensors | sensors |
//! | `_sightings` | [`kv_key`] of the device key | sensor → last session start | `correlate` |
//! | `_baselines` | [`kv_key`] of `<JA4>/<destination>` | sensor → its latest built entry | `baseline build --publish` |
//!
//! Every value merges with a commutative, idempotent rule (unions of sets
//! kept to their smallest N members, minima and maxima of times), so the
//! order in which writers come does not matter and a write repeated is
//! harmless. A write reads the entry, merges, and writes with the entry's
//! revision as the expected last one (`update`, or `create` for a new
//! key): a writer that lost the race reads again, [`RETRIES`] times.
//!
//! Sensors (`--publish`): the publisher's runtime reads the buckets at the
//! start (the run waits for it up to `fleet.state_wait_s`) and every
//! `fleet.state_interval_s`, and the correlator seeds its CA learner and
//! proxy fingerprints from them ([`Shared`]); what the sensor's own
//! learning changed is written back every interval, at most
//! `fleet.state_max_keys` keys per bucket per interval.
//!
//! Baselines are built offline (`blindspot baseline build`); with
//! `--publish` the build puts each entry in the `_baselines` bucket under
//! its builder's name, and a sensor or `correlate` without a baseline of
//! its own reads the fleet's at the start ([`fetch_baseline`]): each
//! JA4 and destination's entries from all builders, combined
//! ([`BaselineValue::combined`]).

use super::{Counters, Settings};
use crate::correlate::inspection::Candidate;
use crate::time::Timestamp;
use async_nats::jetstream::{self, kv};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Largest value written or read (the buckets' `max_value_size`).
pub const MAX_VALUE: usize = 32 << 10;
/// Registrable domains kept per CA (as the learner keeps).
pub const MAX_DOMAINS: usize = 64;
/// Sensors named per value.
pub const MAX_SENSORS: usize = 32;
/// Destination hashes kept per proxy fingerprint.
pub const MAX_DESTINATIONS: usize = 256;
/// Tries of one read-merge-write before it is given up (counted).
pub const RETRIES: usize = 5;
/// Changes waiting to be written, per bucket; new keys past this are
/// dropped and counted (`state_over_cap`).
const MAX_PENDING: usize = 4096;

/// A value of a bucket: merged with another by a commutative, idempotent rule.
pub trait Merge: Serialize + for<'de> Deserialize<'de> + Clone + PartialEq {
    fn merge(&mut self, other: &Self);
    /// Brings a value read from the bucket within the caps.
    fn cap(&mut self);
}

/// Keeps the `n` smallest members.
fn keep_first<T: Ord>(s: &mut BTreeSet<T>, n: usize) {
    while s.len() > n {
        s.pop_last();
    }
}

fn union<T: Ord + Clone>(a: &mut BTreeSet<T>, b: &BTreeSet<T>, n: usize) {
    a.extend(b.iter().cloned());
    keep_first(a, n);
}

/// An inspection CA candidate as the fleet knows it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CaValue {
    pub subject: String,
    pub key_id: Option<String>,
    /// SHA-256 of the CA certificate, when a chain carried it (the smallest seen).
    pub sha256: Option<String>,
    /// Registrable domains of the leaves it signed (the first 64 in order).
    pub domains: BTreeSet<String>,
    /// Sensors that saw it sign a leaf.
    pub sensors: BTreeSet<String>,
    /// Packet time, nanoseconds: the earliest first sighting.
    pub first_seen: u64,
    /// The earliest time a sensor learnt it (its own threshold reached).
    pub learnt: Option<u64>,
}

impl Merge for CaValue {
    fn merge(&mut self, o: &Self) {
        union(&mut self.domains, &o.domains, MAX_DOMAINS);
        union(&mut self.sensors, &o.sensors, MAX_SENSORS);
        self.first_seen = self.first_seen.min(o.first_seen);
        self.sha256 = match (self.sha256.take(), &o.sha256) {
            (Some(a), Some(b)) => Some(a.min(b.clone())),
            (a, b) => a.or_else(|| b.clone()),
        };
        self.learnt = match (self.learnt, o.learnt) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }

    fn cap(&mut self) {
        keep_first(&mut self.domains, MAX_DOMAINS);
        keep_first(&mut self.sensors, MAX_SENSORS);
    }
}

impl CaValue {
    pub fn of(c: &Candidate, sensor: &str) -> CaValue {
        CaValue {
            subject: c.subject.clone(),
            key_id: c.key_id.clone(),
            sha256: c.sha256.clone(),
            domains: c.domains.clone(),
            sensors: BTreeSet::from([sensor.to_string()]),
            first_seen: c.first_seen.0,
            learnt: c.learnt.map(|t| t.0),
        }
    }

    pub fn candidate(&self) -> Candidate {
        Candidate {
            subject: self.subject.clone(),
            key_id: self.key_id.clone(),
            sha256: self.sha256.clone(),
            first_seen: Timestamp(self.first_seen),
            learnt: self.learnt.map(Timestamp),
            domains: self.domains.clone(),
        }
    }

    pub fn key(&self) -> String {
        ca_key(&self.subject, self.key_id.as_deref())
    }
}

/// A proxy's ServerHello fingerprint as the fleet knows it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ProxyValue {
    pub ja3s: String,
    /// Seen in TLS 1.3 (chain hidden) of devices whose other sessions were
    /// inspected, rather than with an inspection CA's chain.
    pub tls13: bool,
    /// Hashes of the destination names it answered for (the smallest 256).
    pub destinations: BTreeSet<u64>,
    pub sensors: BTreeSet<String>,
}

impl Merge for ProxyValue {
    fn merge(&mut self, o: &Self) {
        union(&mut self.destinations, &o.destinations, MAX_DESTINATIONS);
        union(&mut self.sensors, &o.sensors, MAX_SENSORS);
    }

    fn cap(&mut self) {
        keep_first(&mut self.destinations, MAX_DESTINATIONS);
        keep_first(&mut self.sensors, MAX_SENSORS);
    }
}

impl ProxyValue {
    pub fn key(&self) -> String {
        kv_key(&format!(
            "{}.{}",
            if self.tls13 { "ja3s13" } else { "ja3s" },
            self.ja3s
        ))
    }
}

/// Where a device was seen: each sensor's latest session start (packet
/// time, nanoseconds), the 32 latest sensors.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Sighting {
    pub device: String,
    pub sensors: BTreeMap<String, u64>,
}

impl Merge for Sighting {
    fn merge(&mut self, o: &Self) {
        for (s, &t) in &o.sensors {
            let e = self.sensors.entry(s.clone()).or_insert(t);
            *e = (*e).max(t);
        }
        self.cap();
    }

    fn cap(&mut self) {
        keep_latest(&mut self.sensors, |t| *t);
    }
}

/// Keeps the [`MAX_SENSORS`] sensors with the latest `time`: the oldest
/// goes first (ties: the greatest name).
fn keep_latest<V>(m: &mut BTreeMap<String, V>, time: impl Fn(&V) -> u64) {
    while m.len() > MAX_SENSORS {
        let oldest = m
            .iter()
            .min_by(|a, b| (time(a.1), b.0).cmp(&(time(b.1), a.0)))
            .map(|(s, _)| s.clone());
        if let Some(s) = oldest {
            m.remove(&s);
        }
    }
}

/// A baseline entry (one JA4 and destination) as the fleet knows it: each
/// builder's latest, by builder name (the 32 latest builders).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct BaselineValue {
    pub ja4: String,
    pub destination: String,
    pub sensors: BTreeMap<String, BuiltEntry>,
}

/// One builder's entry and when it was built (nanoseconds since the epoch).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct BuiltEntry {
    pub built: u64,
    pub entry: crate::detect::baseline::Entry,
}

impl Merge for BaselineValue {
    fn merge(&mut self, o: &Self) {
        for (s, b) in &o.sensors {
            match self.sensors.get_mut(s) {
                // The later build wins; at the same time, the larger
                // serialised entry (any order gives the same result).
                Some(mine) => {
                    let key = |x: &BuiltEntry| (x.built, serde_json::to_string(&x.entry).ok());
                    if key(b) > key(mine) {
                        *mine = b.clone();
                    }
                }
                None => {
                    self.sensors.insert(s.clone(), b.clone());
                }
            }
        }
        self.cap();
    }

    fn cap(&mut self) {
        keep_latest(&mut self.sensors, |b| b.built);
    }
}

impl BaselineValue {
    pub fn key(&self) -> String {
        kv_key(&format!("{}/{}", self.ja4, self.destination))
    }

    /// The builders' entries as one: sessions and the inspection and
    /// outcome counts added up; of the spreads, the largest maximum and
    /// 95th percentile (a session must exceed every site's to be out of
    /// line) and the median weighted by sessions (percentiles of separate
    /// samples cannot be merged exactly).
    pub fn combined(&self) -> crate::detect::baseline::Entry {
        use crate::detect::baseline::{Entry, Spread};
        let mut e = Entry {
            ja4: self.ja4.clone(),
            destination: self.destination.clone(),
            ..Entry::default()
        };
        let (mut d50, mut b50) = (0.0, 0.0);
        for b in self.sensors.values() {
            let x = &b.entry;
            // Saturating: the values come from the network.
            e.sessions = e.sessions.saturating_add(x.sessions);
            for (k, n) in &x.inspection {
                let c = e.inspection.entry(k.clone()).or_default();
                *c = c.saturating_add(*n);
            }
            for (k, n) in &x.outcomes {
                let c = e.outcomes.entry(k.clone()).or_default();
                *c = c.saturating_add(*n);
            }
            let w = x.sessions as f64;
            d50 += w * x.duration_s.p50;
            b50 += w * x.payload_bytes.p50;
            let up = |a: &mut Spread, b: &Spread| {
                a.p95 = a.p95.max(b.p95);
                a.max = a.max.max(b.max);
            };
            up(&mut e.duration_s, &x.duration_s);
            up(&mut e.payload_bytes, &x.payload_bytes);
        }
        let n = e.sessions.max(1) as f64;
        e.duration_s.p50 = d50 / n;
        e.payload_bytes.p50 = b50 / n;
        e
    }
}

/// Connects to `servers` and opens (or creates) the baselines bucket, on
/// a runtime of the caller's.
async fn baselines_bucket(s: &Settings, servers: &[String]) -> Result<kv::Store, String> {
    let (_, js) = super::connect(servers, "blindspot baselines").await?;
    bucket(&js, s, "baselines").await
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    super::runtime().map_err(|e| format!("cannot start a runtime: {e}"))
}

/// `baseline build --publish`: puts every entry of `b` in the baselines
/// bucket as `sensor`'s, built at `built`; returns how many were written
/// and the counters.
pub fn publish_baseline(
    s: &Settings,
    servers: &[String],
    sensor: &str,
    b: &crate::detect::baseline::Baseline,
    built: u64,
) -> Result<BTreeMap<&'static str, u64>, String> {
    runtime()?.block_on(async {
        let store = baselines_bucket(s, servers).await?;
        let c = Counters::default();
        for e in b.entries() {
            let v = BaselineValue {
                ja4: e.ja4.clone(),
                destination: e.destination.clone(),
                sensors: BTreeMap::from([(
                    sensor.to_string(),
                    BuiltEntry {
                        built,
                        entry: e.clone(),
                    },
                )]),
            };
            put_merged(&store, &v.key(), &v, &c).await;
        }
        Ok(c.state_snapshot())
    })
}

/// The fleet's baseline: every entry of the baselines bucket, combined
/// across builders (at most [`crate::detect::baseline::MAX_KEYS`] keys);
/// `None` when the bucket is empty.
pub fn fetch_baseline(
    s: &Settings,
    servers: &[String],
) -> Result<Option<crate::detect::baseline::Baseline>, String> {
    let wait = Duration::from_secs(s.state_wait_s);
    runtime()?.block_on(async {
        tokio::time::timeout(wait, read_baselines(s, servers))
            .await
            .unwrap_or_else(|_| {
                Err(format!(
                    "no answer in {} s (fleet.state_wait_s)",
                    s.state_wait_s
                ))
            })
    })
}

async fn read_baselines(
    s: &Settings,
    servers: &[String],
) -> Result<Option<crate::detect::baseline::Baseline>, String> {
    {
        let store = baselines_bucket(s, servers).await?;
        let c = Counters::default();
        let values = read_all::<BaselineValue>(&store, crate::detect::baseline::MAX_KEYS, &c).await;
        if c.state_errors.load(Ordering::Relaxed) > 0 {
            return Err("cannot read the baselines bucket".into());
        }
        Ok((!values.is_empty()).then(|| {
            crate::detect::baseline::Baseline::from_entries(values.iter().map(|v| v.combined()))
        }))
    }
}

/// A string as a KV key: letters, digits, `-`, `_` and `/` stay, every
/// other byte is `=` and two hex digits (`.` too, so the key has one
/// token); at most 200 bytes of input.
pub fn kv_key(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut end = raw.len().min(200);
    while !raw.is_char_boundary(end) {
        end -= 1;
    }
    for b in raw[..end].bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'/' {
            out.push(b as char);
        } else {
            out.push_str(&format!("={b:02X}"));
        }
    }
    if out.is_empty() { "=".into() } else { out }
}

/// The key of a CA: SHA-256 of its subject, a newline and its key id (hex).
pub fn ca_key(subject: &str, key_id: Option<&str>) -> String {
    crate::app::tls::cert::sha256_hex(format!("{subject}\n{}", key_id.unwrap_or("")).as_bytes())
}

/// Parses a value read from a bucket (`None`: too large or not a value).
pub fn parse<V: Merge>(bytes: &[u8]) -> Option<V> {
    if bytes.len() > MAX_VALUE {
        return None;
    }
    let mut v: V = serde_json::from_slice(bytes).ok()?;
    v.cap();
    Some(v)
}

/// The buckets, opened or created.
pub struct Buckets {
    pub cas: kv::Store,
    pub proxies: kv::Store,
    pub sightings: kv::Store,
}

/// A bucket's name: `<fleet.stream>_<what>`.
pub fn bucket_name(s: &Settings, what: &str) -> String {
    format!("{}_{what}", s.stream)
}

async fn bucket(js: &jetstream::Context, s: &Settings, what: &str) -> Result<kv::Store, String> {
    let name = bucket_name(s, what);
    if let Ok(b) = js.get_key_value(&name).await {
        return Ok(b);
    }
    // The bucket's stream as `create_key_value` makes it: that call first
    // reads the account's info, which async-nats cannot parse from the
    // servers Debian ships (2.9).
    let made = js
        .get_or_create_stream(jetstream::stream::Config {
            name: format!("KV_{name}"),
            description: Some(format!("blindspot fleet state: {what}")),
            subjects: vec![format!("$KV.{name}.>")],
            max_messages_per_subject: 1,
            max_message_size: MAX_VALUE as i32,
            storage: jetstream::stream::StorageType::File,
            num_replicas: s.replicas,
            allow_rollup: true,
            deny_delete: true,
            allow_direct: true,
            discard: jetstream::stream::DiscardPolicy::New,
            ..Default::default()
        })
        .await;
    match made {
        Ok(_) => js
            .get_key_value(&name)
            .await
            .map_err(|e| format!("bucket {name}: {e}")),
        Err(e) => Err(format!("bucket {name}: {e}")),
    }
}

impl Buckets {
    pub async fn open(js: &jetstream::Context, s: &Settings) -> Result<Buckets, String> {
        Ok(Buckets {
            cas: bucket(js, s, "inspection_cas").await?,
            proxies: bucket(js, s, "proxy_fingerprints").await?,
            sightings: bucket(js, s, "sightings").await?,
        })
    }
}

/// Reads every value of a bucket (at most `max` keys; the rest counted
/// as `state_over_cap`).
pub async fn read_all<V: Merge>(store: &kv::Store, max: usize, c: &Counters) -> Vec<V> {
    let mut out = Vec::new();
    let Ok(mut keys) = store.keys().await else {
        c.state_errors.fetch_add(1, Ordering::Relaxed);
        return out;
    };
    let mut names = Vec::new();
    while let Some(k) = keys.next().await {
        match k {
            Ok(k) if names.len() < max => names.push(k),
            Ok(_) => {
                c.state_over_cap.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {
                c.state_errors.fetch_add(1, Ordering::Relaxed);
                break;
            }
        }
    }
    for k in names {
        match store.get(k).await {
            Ok(Some(b)) => match parse::<V>(&b) {
                Some(v) => {
                    c.state_read.fetch_add(1, Ordering::Relaxed);
                    out.push(v);
                }
                None => {
                    c.state_bad_values.fetch_add(1, Ordering::Relaxed);
                }
            },
            Ok(None) => {}
            Err(_) => {
                c.state_errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    out
}

/// Merges `v` into the entry at `key`: read, merge, write with the read
/// revision as the expected one; again on a conflict, [`RETRIES`] times.
pub async fn put_merged<V: Merge>(store: &kv::Store, key: &str, v: &V, c: &Counters) {
    for _ in 0..RETRIES {
        let entry = match store.entry(key).await {
            Ok(e) => e,
            Err(_) => {
                c.state_errors.fetch_add(1, Ordering::Relaxed);
                return;
            }
        };
        let merged = match entry.as_ref().filter(|e| e.operation == kv::Operation::Put) {
            Some(e) => {
                let mut m = parse::<V>(&e.value).unwrap_or_else(|| {
                    c.state_bad_values.fetch_add(1, Ordering::Relaxed);
                    v.clone()
                });
                let before = m.clone();
                m.merge(v);
                if m == before {
                    // Nothing new for the fleet.
                    return;
                }
                m
            }
            None => v.clone(),
        };
        let Ok(body) = serde_json::to_vec(&merged) else {
            return;
        };
        if body.len() > MAX_VALUE {
            c.state_over_cap.fetch_add(1, Ordering::Relaxed);
            return;
        }
        // A deleted key's marker has a revision too.
        let done = match &entry {
            Some(e) => store.update(key, body.into(), e.revision).await.is_ok(),
            None => store.create(key, body.into()).await.is_ok(),
        };
        if done {
            c.state_written.fetch_add(1, Ordering::Relaxed);
            return;
        }
        c.state_conflicts.fetch_add(1, Ordering::Relaxed);
    }
    c.state_errors.fetch_add(1, Ordering::Relaxed);
}

/// Changes waiting to be written: by key, merged as they come.
#[derive(Default)]
pub struct Pending<V> {
    map: BTreeMap<String, V>,
}

impl<V: Merge> Pending<V> {
    pub fn add(&mut self, key: String, v: V, c: &Counters) {
        let full = self.map.len() >= MAX_PENDING;
        match self.map.get_mut(&key) {
            Some(m) => m.merge(&v),
            None if !full => {
                self.map.insert(key, v);
            }
            None => {
                c.state_over_cap.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Up to `n` of them, first keys first.
    pub fn take(&mut self, n: usize) -> Vec<(String, V)> {
        let mut out = Vec::new();
        while out.len() < n {
            match self.map.pop_first() {
                Some(kv) => out.push(kv),
                None => break,
            }
        }
        out
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// What a sensor's correlator and its publisher thread share.
#[derive(Default)]
pub struct Shared {
    /// Bumped at each read of the buckets.
    pub generation: AtomicU64,
    /// The run ends: write what waits, then stop.
    pub closing: AtomicBool,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    fleet_cas: Vec<CaValue>,
    fleet_proxies: Vec<ProxyValue>,
    out_cas: Pending<CaValue>,
    out_proxies: Pending<ProxyValue>,
}

/// The correlator's side of a sensor's fleet state.
pub struct Local {
    shared: Arc<Shared>,
    counters: Arc<Counters>,
    sensor: String,
    /// The buckets' read last seeded into the CA learner, and into the
    /// detector's proxy fingerprints.
    generation: u64,
    proxy_generation: u64,
}

impl Local {
    pub fn new(shared: Arc<Shared>, counters: Arc<Counters>, sensor: &str) -> Local {
        Local {
            shared,
            counters,
            sensor: sensor.to_string(),
            generation: 0,
            proxy_generation: 0,
        }
    }

    /// The same shared state for another thread: the detector's, when it
    /// runs on its own (`run::detector`), which syncs the proxy
    /// fingerprints while the correlator syncs the CAs.
    pub fn detector_side(&self) -> Local {
        Local::new(
            Arc::clone(&self.shared),
            Arc::clone(&self.counters),
            &self.sensor,
        )
    }

    /// Seeds `d` from the last read of the buckets (when there was a new
    /// one) and hands on what `d` learnt since the last call.
    pub fn sync(&mut self, d: &mut crate::detect::Detector) {
        self.sync_cas(&mut d.learner);
        self.sync_proxies(d);
    }

    /// The CA learner's part of [`Local::sync`].
    pub fn sync_cas(&mut self, learner: &mut crate::correlate::inspection::Learner) {
        learner.track_changes();
        let cas = learner.take_changed();
        let Some((mut inner, seed)) = due(&self.shared, &mut self.generation, !cas.is_empty())
        else {
            return;
        };
        let c = &*self.counters;
        if seed {
            for v in &inner.fleet_cas {
                if learner.seed(&v.candidate()) {
                    c.state_seeded.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        for cand in cas {
            let v = CaValue::of(&cand, &self.sensor);
            inner.out_cas.add(v.key(), v, c);
        }
    }

    /// The detector's proxy fingerprints' part of [`Local::sync`].
    pub fn sync_proxies(&mut self, d: &mut crate::detect::Detector) {
        d.track_proxy_changes();
        let proxies = d.take_proxy_changes();
        let Some((mut inner, seed)) = due(
            &self.shared,
            &mut self.proxy_generation,
            !proxies.is_empty(),
        ) else {
            return;
        };
        let c = &*self.counters;
        if seed {
            for v in &inner.fleet_proxies {
                let dests: Vec<u64> = v.destinations.iter().copied().collect();
                d.seed_proxy(v.tls13, &v.ja3s, &dests);
                c.state_seeded.fetch_add(1, Ordering::Relaxed);
            }
        }
        for (tls13, ja3s, dests) in proxies {
            let mut v = ProxyValue {
                ja3s,
                tls13,
                destinations: dests.into_iter().collect(),
                sensors: BTreeSet::from([self.sensor.clone()]),
            };
            v.cap();
            inner.out_proxies.add(v.key(), v, c);
        }
    }
}

/// The shared state, locked, when a sync has something to do: a read of
/// the buckets newer than `last` (then `.1`: seed from it; `last` moves
/// on), or `changes` to hand on.
fn due<'a>(
    shared: &'a Shared,
    last: &mut u64,
    changes: bool,
) -> Option<(std::sync::MutexGuard<'a, Inner>, bool)> {
    let g = shared.generation.load(Ordering::Acquire);
    if g == *last && !changes {
        return None;
    }
    let inner = shared.inner.lock().ok()?;
    let seed = g != *last;
    *last = g;
    Some((inner, seed))
}

/// The publisher runtime's side: reads the buckets into [`Shared`] at the
/// start and every interval, and writes what waits. `first` is told once
/// the first read is done (or failed). Returns when [`Shared::closing`]
/// is set, after a last write.
pub async fn sensor_loop(
    js: jetstream::Context,
    s: Settings,
    shared: Arc<Shared>,
    counters: Arc<Counters>,
    first: std::sync::mpsc::Sender<()>,
) {
    let interval = Duration::from_secs(s.state_interval_s);
    let mut buckets = None;
    let mut first = Some(first);
    let mut last = Instant::now() - interval;
    loop {
        let closing = shared.closing.load(Ordering::Acquire);
        if last.elapsed() >= interval || closing {
            last = Instant::now();
            if buckets.is_none() {
                match Buckets::open(&js, &s).await {
                    Ok(b) => buckets = Some(b),
                    Err(e) => {
                        if counters.state_errors.fetch_add(1, Ordering::Relaxed) == 0 {
                            eprintln!("blindspot: fleet: state buckets not ready yet ({e})");
                        }
                    }
                }
            }
            if let Some(b) = &buckets {
                // At the end, everything that waits (within the drain time
                // the publisher thread gives this task).
                while write_pending(b, &shared, &counters, s.state_max_keys).await && closing {}
                if !closing {
                    let cas = read_all::<CaValue>(&b.cas, s.state_max_keys * 16, &counters).await;
                    let proxies =
                        read_all::<ProxyValue>(&b.proxies, s.state_max_keys * 16, &counters).await;
                    if let Ok(mut inner) = shared.inner.lock() {
                        inner.fleet_cas = cas;
                        inner.fleet_proxies = proxies;
                    }
                    shared.generation.fetch_add(1, Ordering::AcqRel);
                }
            }
            if let Some(f) = first.take() {
                let _ = f.send(());
            }
            if closing {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Writes up to `n` waiting changes per bucket; true when more wait.
async fn write_pending(b: &Buckets, shared: &Shared, c: &Counters, n: usize) -> bool {
    let (cas, proxies) = match shared.inner.lock() {
        Ok(mut i) => (i.out_cas.take(n), i.out_proxies.take(n)),
        Err(_) => return false,
    };
    for (k, v) in cas {
        put_merged(&b.cas, &k, &v, c).await;
    }
    for (k, v) in proxies {
        put_merged(&b.proxies, &k, &v, c).await;
    }
    shared
        .inner
        .lock()
        .is_ok_and(|i| !i.out_cas.is_empty() || !i.out_proxies.is_empty())
}

/// `correlate`'s side: seeds its detector from the buckets and writes the
/// sightings of the sessions it reads.
pub struct Correlate {
    buckets: Buckets,
    pub counters: Arc<Counters>,
    sightings: Pending<Sighting>,
    max_keys: usize,
}

impl Correlate {
    pub async fn open(js: &jetstream::Context, s: &Settings) -> Result<Correlate, String> {
        Ok(Correlate {
            buckets: Buckets::open(js, s).await?,
            counters: Arc::default(),
            sightings: Pending::default(),
            max_keys: s.state_max_keys,
        })
    }

    /// Seeds `d` with the inspection CAs and proxy fingerprints of the buckets.
    pub async fn seed(&mut self, d: &mut crate::detect::Detector) {
        let c = &*self.counters;
        for v in read_all::<CaValue>(&self.buckets.cas, self.max_keys * 16, c).await {
            if d.learner.seed(&v.candidate()) {
                c.state_seeded.fetch_add(1, Ordering::Relaxed);
            }
        }
        for v in read_all::<ProxyValue>(&self.buckets.proxies, self.max_keys * 16, c).await {
            let dests: Vec<u64> = v.destinations.iter().copied().collect();
            d.seed_proxy(v.tls13, &v.ja3s, &dests);
            c.state_seeded.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Notes that `sensor` saw `device` (a device key) at `ts`.
    pub fn sighting(&mut self, device: &str, sensor: &str, ts: u64) {
        let v = Sighting {
            device: device.to_string(),
            sensors: BTreeMap::from([(sensor.to_string(), ts)]),
        };
        self.sightings.add(kv_key(device), v, &self.counters);
    }

    /// Writes the sightings that wait (at most `fleet.state_max_keys`;
    /// all of them with `all`).
    pub async fn write(&mut self, all: bool) {
        loop {
            let batch = self.sightings.take(self.max_keys);
            for (k, v) in &batch {
                put_merged(&self.buckets.sightings, k, v, &self.counters).await;
            }
            if !all || self.sightings.is_empty() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// With the detector on its own thread, the correlator's side seeds
    /// the CA learner and the detector's side the proxy fingerprints, each
    /// once per read of the buckets.
    #[test]
    fn the_detector_side_seeds_the_proxy_fingerprints() {
        let shared = Arc::new(Shared::default());
        let counters = Arc::new(Counters::default());
        shared.inner.lock().unwrap().fleet_proxies.push(ProxyValue {
            ja3s: "j1".into(),
            tls13: false,
            destinations: (1..=64).collect(),
            sensors: BTreeSet::from(["site-a".to_string()]),
        });
        shared.generation.fetch_add(1, Ordering::Release);
        let mut here = Local::new(Arc::clone(&shared), Arc::clone(&counters), "site-b");
        let mut there = here.detector_side();
        let mut d = crate::detect::Detector::new(Arc::default(), Default::default(), None, false);
        here.sync_cas(&mut d.learner);
        assert!(
            !d.proxy_ja3s("j1"),
            "the CA side leaves the fingerprints alone"
        );
        there.sync_proxies(&mut d);
        assert!(d.proxy_ja3s("j1"));
        assert_eq!(counters.state_seeded.load(Ordering::Relaxed), 1);
        there.sync_proxies(&mut d);
        assert_eq!(
            counters.state_seeded.load(Ordering::Relaxed),
            1,
            "once per read"
        );
    }

    #[test]
    fn baselines_keep_each_builders_latest_and_combine() {
        use crate::detect::baseline::{Entry, Spread};
        let entry = |sessions: u64, p50: f64, max: f64| Entry {
            ja4: "t13d".into(),
            destination: "api.example".into(),
            sessions,
            inspection: [("not_inspected".to_string(), sessions)].into(),
            outcomes: [("established".to_string(), sessions)].into(),
            duration_s: Spread { p50, p95: max, max },
            payload_bytes: Spread::default(),
        };
        let one = |sensor: &str, built: u64, e: Entry| BaselineValue {
            ja4: "t13d".into(),
            destination: "api.example".into(),
            sensors: [(sensor.to_string(), BuiltEntry { built, entry: e })].into(),
        };
        let (a1, a2, b) = (
            one("a", 1, entry(1, 10.0, 10.0)),
            one("a", 2, entry(3, 20.0, 30.0)),
            one("b", 1, entry(1, 40.0, 50.0)),
        );
        let mut x = a1.clone();
        x.merge(&b);
        x.merge(&a2);
        let mut y = a2.clone();
        y.merge(&a1);
        y.merge(&b);
        assert_eq!(x, y, "any order");
        assert_eq!(x.sensors["a"].built, 2, "the later build wins");
        let c = x.combined();
        assert_eq!(c.sessions, 4);
        assert_eq!(c.outcomes["established"], 4);
        assert_eq!(c.duration_s.max, 50.0);
        assert_eq!(c.duration_s.p95, 50.0);
        assert_eq!(c.duration_s.p50, (3.0 * 20.0 + 40.0) / 4.0);
    }

    #[test]
    fn merges_are_commutative_and_idempotent() {
        let a = CaValue {
            subject: "CN=x".into(),
            domains: ["a.example", "b.example"].map(String::from).into(),
            sensors: ["site-a".to_string()].into(),
            first_seen: 5,
            learnt: None,
            sha256: Some("bb".into()),
            ..CaValue::default()
        };
        let b = CaValue {
            subject: "CN=x".into(),
            domains: ["b.example", "c.example"].map(String::from).into(),
            sensors: ["site-b".to_string()].into(),
            first_seen: 3,
            learnt: Some(9),
            sha256: Some("aa".into()),
            ..CaValue::default()
        };
        let (mut ab, mut ba) = (a.clone(), b.clone());
        ab.merge(&b);
        ba.merge(&a);
        assert_eq!(ab, ba);
        assert_eq!(ab.domains.len(), 3);
        assert_eq!(
            (ab.first_seen, ab.learnt, ab.sha256.as_deref()),
            (3, Some(9), Some("aa"))
        );
        let again = {
            let mut x = ab.clone();
            x.merge(&a);
            x
        };
        assert_eq!(again, ab);
        let s1 = Sighting {
            device: "d".into(),
            sensors: [("a".to_string(), 5), ("b".to_string(), 1)].into(),
        };
        let s2 = Sighting {
            device: "d".into(),
            sensors: [("a".to_string(), 2), ("c".to_string(), 7)].into(),
        };
        let (mut x, mut y) = (s1.clone(), s2.clone());
        x.merge(&s2);
        y.merge(&s1);
        assert_eq!(x, y);
        assert_eq!(
            x.sensors,
            [("a".into(), 5), ("b".into(), 1), ("c".into(), 7)].into()
        );
    }

    #[test]
    fn caps_hold_whatever_comes() {
        let mut s = Sighting::default();
        for i in 0..100u64 {
            s.merge(&Sighting {
                device: "d".into(),
                sensors: [(format!("s{i:03}"), i)].into(),
            });
        }
        assert_eq!(s.sensors.len(), MAX_SENSORS);
        // The latest sightings stay.
        assert!(s.sensors.contains_key("s099") && !s.sensors.contains_key("s000"));
        let mut c = CaValue::default();
        c.merge(&CaValue {
            domains: (0..200).map(|i| format!("d{i:03}.example")).collect(),
            ..CaValue::default()
        });
        assert_eq!(c.domains.len(), MAX_DOMAINS);
        assert!(parse::<CaValue>(&vec![b' '; MAX_VALUE + 1]).is_none());
    }

    #[test]
    fn keys_stay_in_the_kv_alphabet_and_apart() {
        assert_eq!(
            kv_key("mac:02:00:5e:10:00:01"),
            "mac=3A02=3A00=3A5e=3A10=3A00=3A01"
        );
        assert_eq!(kv_key("serial:C02X.1 é"), "serial=3AC02X=2E1=20=C3=A9");
        assert_ne!(kv_key("a=3A"), kv_key("a:"));
        assert_eq!(kv_key(""), "=");
        assert!(kv_key(&"x".repeat(1000)).len() <= 200);
    }
}
