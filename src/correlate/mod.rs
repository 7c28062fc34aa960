//! The correlator: the single owner of cross-flow state.
//!
//! Workers send it their finished records and the reader sends it device
//! evidence; it keeps the device history ([`devices`]), puts the `device`
//! object on every record, marks inspected TLS sessions, counts, runs the
//! detections, and hands the records on in batches: encoding them is the
//! sink's stage (`output::Encoder`), not the correlator's. It runs on one
//! thread.

pub mod devices;
pub mod inspection;
pub mod names;
pub mod proxylog;

use crate::app::evidence::Evidence;
use crate::detect::{Detector, Session, TlsFacts};
use crate::record::Record;
use devices::Devices;
use inspection::Inspection;
use names::{Asker, Names};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Records are handed to the sink in batches of this many.
pub const BATCH_RECORDS: usize = 512;

/// Records on their way to the sink, in output order.
pub type RecordBatch = Vec<Record>;

pub struct Correlator {
    block: RecordBatch,
    /// Batches that filled up during a push, oldest first: a chunk whose
    /// every packet ended a flow is handed on in batches of
    /// [`BATCH_RECORDS`], never as one batch of the whole chunk.
    full: std::collections::VecDeque<RecordBatch>,
    /// Emptied batches the sink gave back.
    spare: Vec<RecordBatch>,
    inspection: Arc<Inspection>,
    pub devices: Devices,
    pub counts: crate::record::Counts,
    /// TLS sessions by outcome and TLS counters, for the stats record.
    pub tls: crate::record::Counts,
    /// Flow records, those without a device, QUIC flows (service `quic`).
    flows: [u64; 3],
    /// QUIC `tls` records by why their hello was not read (`parsed` when it was).
    quic: BTreeMap<&'static str, u64>,
    pub detector: Detector,
    /// TLS facts waiting for their flow record (the worker writes the two
    /// together, TLS first), by flow_id.
    pending_tls: hashbrown::HashMap<crate::record::FlowId, (TlsFacts, crate::record::Limits)>,
    sessions: Vec<Session>,
    /// Passive DNS and the encrypted-DNS flows.
    pub names: Names,
    /// Inspecting proxies' log entries, joined to sessions (`--proxy-log`).
    pub proxy: proxylog::ProxyIndex,
    /// Fleet mode (`--publish`): gets each session and each block handed on.
    pub fleet: Option<Box<dyn crate::fleet::Tap>>,
    /// Replay with workers: the detector runs on its own thread
    /// (`run::detector`); `detector` is then a stand-in that keeps the
    /// settings, the CA learner and this side's counters.
    remote: Option<crate::run::detector::Remote>,
}

impl Correlator {
    pub fn new(inspection: Arc<Inspection>, devices: Devices, detector: Detector) -> Self {
        Correlator {
            block: Vec::with_capacity(BATCH_RECORDS),
            full: std::collections::VecDeque::new(),
            spare: Vec::new(),
            inspection,
            devices,
            counts: Default::default(),
            tls: Default::default(),
            flows: [0; 3],
            quic: BTreeMap::new(),
            detector,
            pending_tls: hashbrown::HashMap::new(),
            sessions: Vec::new(),
            names: Names::default(),
            proxy: proxylog::ProxyIndex::default(),
            fleet: None,
            remote: None,
        }
    }

    /// Moves the detector to a thread of its own that hands the blocks to
    /// `sink` (replay with workers, and capture). A fleet tap's state sync
    /// is split: the CAs stay here with the learner, the proxy
    /// fingerprints go with the detector ([`crate::fleet::Tap::detector_side`]).
    /// From now on the blocks go out through [`Correlator::send_blocks`].
    pub fn detector_thread(&mut self, sink: crate::run::Handoff) {
        let stand_in = Detector::new(
            Arc::clone(&self.detector.s),
            Default::default(),
            None,
            false,
        );
        let mut real = std::mem::replace(&mut self.detector, stand_in);
        self.detector.learner = std::mem::take(&mut real.learner);
        // Fleet state: the CAs stay synced here (`fleet_sync`, with the
        // learner), the proxy fingerprints on the detector's thread.
        let fleet = self.fleet.as_mut().and_then(|t| t.detector_side());
        self.remote = Some(crate::run::detector::Remote::start(
            real,
            &self.detector.learner,
            sink,
            fleet,
        ));
    }

    /// Hands the full blocks (`partial`: the last one too) to the detector
    /// thread with their marks; false once it has stopped (its sink did).
    pub fn send_blocks(&mut self, partial: bool) -> bool {
        let mut sent = false;
        loop {
            let Some(r) = self.remote.as_mut() else {
                return true;
            };
            let (mut b, marks) = match self.full.pop_front() {
                Some(b) => (b, r.full_marks.pop_front().unwrap_or_default()),
                // Calls after the last record go too, in a block of their own.
                None if partial && (!self.block.is_empty() || !r.marks.is_empty()) => {
                    let marks = std::mem::take(&mut r.marks);
                    (self.swap_block(), marks)
                }
                None => break,
            };
            // The fleet tap sees every block first, as in `next_block` (and
            // is called once with none when there is none).
            if let Some(t) = &mut self.fleet {
                t.block(&mut b);
            }
            if let Some(r) = &mut self.remote {
                r.send_block(b, marks);
            }
            sent = true;
        }
        if !sent && let Some(t) = &mut self.fleet {
            t.block(&mut []);
        }
        self.remote.as_ref().is_some_and(|r| !r.stopped)
    }

    /// The end of a run with the detector on its own thread: closes its
    /// stream and waits for it; what it gathered for `--evidence`.
    pub fn join_detector(&mut self) -> Option<Vec<crate::detect::EvidenceWant>> {
        self.remote.take().and_then(|r| r.join()).map(|d| d.wants)
    }

    /// A call to the detector thread in the stream, after the learnt CAs
    /// when they changed; false when the detector is here.
    fn call_remote(&mut self, step: impl FnOnce(&mut Self) -> crate::run::detector::Step) -> bool {
        if self.remote.is_none() {
            return false;
        }
        let step = step(self);
        let at = self.block.len();
        if let Some(r) = &mut self.remote {
            r.learnt(&self.detector.learner);
            r.call(at, step);
        }
        true
    }

    /// Who asked, for the passive-DNS map: the MAC evidence tied `ip` to at
    /// `ts`, else the address.
    fn asker(&self, ip: std::net::IpAddr, ts: crate::time::Timestamp) -> Asker {
        match self.devices.holder(ip, ts) {
            Some((mac, _)) => Asker::Mac(mac),
            None => Asker::Ip(ip),
        }
    }

    /// Learns the answers of a chunk's `dns` records before any of its
    /// flows is named, in an order that does not depend on the workers
    /// (see [`names`]).
    fn learn_dns(&mut self, records: &mut [Record]) {
        self.learn_dns_until(records.iter_mut(), None);
    }

    /// Sensor mode: learns, ahead of their records, the answers of every
    /// `dns` record up to `mark` that the workers have handed on but that
    /// wait for the watermark: a worker's tick can hold an answer that
    /// preceded a flow whose record another worker's earlier tick holds,
    /// and replay would have learnt it first (answers sorted by time, as
    /// replay's chunks have them).
    pub fn learn_dns_until<'a>(
        &mut self,
        records: impl Iterator<Item = &'a mut Record>,
        mark: Option<crate::time::Timestamp>,
    ) {
        let at = |d: &crate::record::DnsRecord| d.answered_at.unwrap_or(d.ts);
        let mut dns: Vec<&mut crate::record::DnsRecord> = records
            .filter_map(|r| match r {
                Record::Dns(d) if !d.learned && mark.is_none_or(|m| at(d) <= m) => Some(&mut **d),
                _ => None,
            })
            .collect();
        if dns.is_empty() {
            return;
        }
        dns.sort_by(|a, b| {
            (at(a), a.flow_id, a.ts, a.trans_id, &a.query).cmp(&(
                at(b),
                b.flow_id,
                b.ts,
                b.trans_id,
                &b.query,
            ))
        });
        for d in dns {
            d.learned = true;
            let asker = self.asker(d.src_ip, at(d));
            self.names.learn(d, asker);
        }
    }

    /// The name the flow's client resolved its server address to.
    fn name_flow(&mut self, f: &mut crate::record::FlowRecord) {
        if let Some(s) = self.names.encrypted_service(f) {
            f.service = Some(s);
        }
        // By the device that held the address then, else by the address
        // (asked once when no device held it).
        let by_device = self.asker(f.src_ip, f.ts);
        let mut name = self.names.lookup(by_device, f.dst_ip, f.ts);
        if name.is_none() && by_device != Asker::Ip(f.src_ip) {
            name = self.names.lookup(Asker::Ip(f.src_ip), f.dst_ip, f.ts);
        }
        if let Some(n) = name {
            *self.names.counters.entry("flows_named").or_default() += 1;
            f.destination.name = Some(n);
            f.destination.name_source = Some("dns");
        }
    }

    /// Applies device evidence (in frame order), writing the `device`
    /// records it gives rise to.
    pub fn evidence(&mut self, evidence: &[Evidence]) {
        for e in evidence {
            if let Some(r) = self.devices.apply(e) {
                *self.counts.entry("device").or_default() += 1;
                self.emit(Record::Device(Box::new(r)));
            }
        }
    }

    /// Shows the CA learner the chains of a chunk's `tls` records that no
    /// configured CA matches, in (start, flow id) order rather than the
    /// order the workers' pieces came in, so that when a CA is learnt —
    /// and so which records say `inspection_source: learnt` — does not
    /// depend on the worker count. By record index: the key of each chain's
    /// CA, and the CA's subject once it is learnt.
    fn learn_cas(
        &mut self,
        records: &[Record],
    ) -> hashbrown::HashMap<usize, (u64, Option<String>)> {
        let mut chains: Vec<(crate::time::Timestamp, crate::record::FlowId, usize)> = records
            .iter()
            .enumerate()
            .filter_map(|(i, r)| match r {
                Record::Tls(t)
                    if t.cert
                        .as_ref()
                        .is_some_and(|c| self.inspection.matches(c).is_none()) =>
                {
                    Some((t.ts, t.flow_id, i))
                }
                _ => None,
            })
            .collect();
        chains.sort_unstable();
        let mut out = hashbrown::HashMap::with_capacity(chains.len());
        for (_, _, i) in chains {
            if let Record::Tls(t) = &records[i]
                && let Some(chain) = &t.cert
                && let Some((key, ca)) = self.detector.learner.observe(chain, t.ts)
            {
                out.insert(i, (key, ca.map(|c| c.subject.clone())));
            }
        }
        out
    }

    /// Adds records to the pending block.
    pub fn push(&mut self, records: impl IntoIterator<Item = Record>) {
        let mut records: Vec<Record> = records.into_iter().collect();
        self.fleet_sync();
        self.learn_dns(&mut records);
        let mut learnt = self.learn_cas(&records);
        for (i, mut r) in records.into_iter().enumerate() {
            match &mut r {
                Record::Flow(f) => self.name_flow(f),
                Record::Tls(t) => self.names.tls(t),
                _ => {}
            }
            let d = &mut self.devices;
            match &mut r {
                Record::Flow(f) => {
                    f.device = d.for_connection(f.src_ip, f.dst_ip, f.ts, &mut f.limits);
                    self.flows[0] += 1;
                    self.flows[1] += u64::from(f.device.info.is_none());
                    self.flows[2] += u64::from(f.service == Some("quic"));
                    if f.limits.contains(&"upgrade_prelude_cap") {
                        *self.tls.entry("upgrade_prelude_cap").or_default() += 1;
                    }
                }
                Record::Tls(t) => {
                    t.device = d.for_connection(t.src_ip, t.dst_ip, t.ts, &mut t.limits)
                }
                Record::Dns(x) => {
                    x.device = d.for_connection(x.src_ip, x.dst_ip, x.ts, &mut x.limits)
                }
                Record::Dhcp(x) => {
                    let (mac, ip) = match &x.dhcp {
                        crate::record::DhcpBody::V4(v) => {
                            let ip = [v.your_ip, v.client_ip]
                                .into_iter()
                                .find(|ip| !ip.is_unspecified())
                                .map(std::net::IpAddr::V4);
                            (v.client_mac, ip)
                        }
                        crate::record::DhcpBody::V6(v) => (
                            v.client_mac,
                            v.ia_addresses.first().map(|a| std::net::IpAddr::V6(a.ip)),
                        ),
                    };
                    if let Some(mac) = mac {
                        x.device = d.for_mac(mac.0, ip, x.ts, &mut x.limits);
                    }
                }
                _ => {}
            }
            if let Record::Tls(t) = &mut r {
                // Configured CAs win; else a CA learnt from the chains.
                let mut private_ca = None;
                if let Some(chain) = &t.cert {
                    if let Some(ca) = self.inspection.matches(chain) {
                        t.inspected = Some(true);
                        t.inspection_ca = Some(ca.name.clone());
                        t.inspection_source = Some("configured");
                    } else if let Some((key, ca)) = learnt.remove(&i) {
                        private_ca = Some(key);
                        if let Some(subject) = ca {
                            t.inspected = Some(true);
                            t.inspection_ca = Some(subject);
                            t.inspection_source = Some("learnt");
                        }
                    }
                }
                let mut count = |k: &'static str, yes: bool| {
                    if yes {
                        *self.tls.entry(k).or_default() += 1;
                    }
                };
                count(t.outcome.name(), true);
                count("sslv2_hellos", t.sslv2_hello);
                count("handshake_overflow", t.handshake_overflow);
                count("connect_tunnels", t.proxy_connect.is_some());
                count("upgraded", t.upgrade.is_some());
                count("inspected", t.inspected == Some(true));
                count("certificate_hidden", t.inspected.is_none());
                count("ech", t.ech);
                if let Some(q) = &t.quic {
                    count("quic", true);
                    count(
                        "quic_crypto_overflow",
                        q.not_parsed == Some("crypto_overflow"),
                    );
                    *self
                        .quic
                        .entry(q.not_parsed.unwrap_or("parsed"))
                        .or_default() += 1;
                }
                if self.detector.s.enabled {
                    let mut facts = TlsFacts::new(t);
                    facts.private_ca = private_ca;
                    self.pending_tls
                        .insert(t.flow_id, (facts, t.limits.clone()));
                }
            }
            if let Record::Flow(f) = &r
                && self.detector.s.enabled
            {
                let tls = self.pending_tls.remove(&f.flow_id);
                let mut s = Session::new(f, tls);
                s.proxy = self.proxy.lookup(&s);
                if let Some(t) = &mut self.fleet {
                    t.session(&s);
                }
                self.sessions.push(s);
            }
            *self.counts.entry(r.kind()).or_default() += 1;
            self.emit(r);
        }
        if !self.pending_tls.is_empty() {
            // Cannot happen (a TLS record always comes with its flow); keep it bounded anyway.
            *self
                .detector
                .counters
                .entry("tls_without_flow")
                .or_default() += self.pending_tls.len() as u64;
            self.pending_tls.clear();
        }
        self.names.end_chunk();
        if !self.sessions.is_empty()
            && !self.call_remote(|c| {
                // Sized as this block's: a list grown by doubling would
                // move every session (several hundred bytes) again.
                let n = c.sessions.len();
                crate::run::detector::Step::Hold(std::mem::replace(
                    &mut c.sessions,
                    Vec::with_capacity(n),
                ))
            })
        {
            let found = self.detector.hold(&mut self.sessions);
            self.write_detections(found);
        }
        self.fleet_sync();
    }

    /// Fleet state (`--publish`, `fleet/state.rs`): the detector takes what
    /// the fleet learnt, and the fleet what the detector learnt.
    fn fleet_sync(&mut self) {
        if let Some(t) = &mut self.fleet {
            t.sync(&mut self.detector);
        }
    }

    /// Lets the held sessions whose order time is before `horizon` into the
    /// detector (see `detect::admit`): the run stages call it once every
    /// worker's records up to a point are in, with the smallest horizon
    /// the workers reported.
    pub fn release_sessions(&mut self, horizon: crate::time::Timestamp) {
        if self.call_remote(|_| crate::run::detector::Step::Release(horizon)) {
            return;
        }
        let found = self.detector.release(horizon);
        self.write_detections(found);
        self.fleet_sync();
    }

    fn write_detections(&mut self, found: Vec<crate::record::DetectionRecord>) {
        for d in found {
            *self.counts.entry("detection").or_default() += 1;
            self.emit(Record::Detection(Box::new(d)));
        }
    }

    /// Live capture: evaluates the detection windows that ended before `now`.
    pub fn advance_detections(&mut self, now: crate::time::Timestamp) {
        if self.call_remote(|_| crate::run::detector::Step::Advance(now)) {
            return;
        }
        let found = self.detector.advance(now);
        self.write_detections(found);
    }

    /// Sensor SIGHUP: the inputs, inspection CAs and detection settings of
    /// `cfg` replace the running ones; what was learnt from the wire (the
    /// device map, open windows, learnt fingerprints) stays.
    pub fn reload(&mut self, cfg: &crate::config::Config) {
        let inputs = &cfg.device_inputs;
        self.inspection = Arc::clone(&cfg.inspection);
        self.devices.reload((**inputs).clone());
        self.detector.s = Arc::clone(&cfg.detect);
        let apps = crate::detect::context::Apps::new(inputs.apps.clone(), &inputs.app_events);
        match &mut self.remote {
            Some(r) => r.send(crate::run::detector::Step::Reload(
                Arc::clone(&cfg.detect),
                Box::new(apps),
                cfg.baseline.clone(),
            )),
            None => {
                self.detector.apps = apps;
                self.detector.baseline = cfg.baseline.clone();
            }
        }
    }

    /// The detector's thread, when it runs on one ([`Correlator::detector_thread`]).
    pub fn remote(&mut self) -> Option<&mut crate::run::detector::Remote> {
        self.remote.as_mut()
    }

    /// Live capture: writes the `open` detections whose update is due by `now`.
    pub fn advance_open_detections(&mut self, now: crate::time::Timestamp) {
        if self.call_remote(|_| crate::run::detector::Step::AdvanceOpen(now)) {
            return;
        }
        let found = self.detector.advance_open(now);
        self.write_detections(found);
    }

    /// End of input: evaluates every open detection window.
    pub fn finish_detections(&mut self) {
        if self.call_remote(|_| crate::run::detector::Step::Finish) {
            return;
        }
        let found = self.detector.finish();
        self.write_detections(found);
    }

    /// Appends a record to the pending batch.
    fn emit(&mut self, r: Record) {
        self.block.push(r);
        if self.block.len() >= BATCH_RECORDS {
            let b = self.swap_block();
            self.full.push_back(b);
            if let Some(r) = &mut self.remote {
                r.full_marks.push_back(std::mem::take(&mut r.marks));
            }
        }
    }

    /// The oldest full batch (call until `None`).
    pub fn full_block(&mut self) -> Option<RecordBatch> {
        self.full.pop_front()
    }

    /// The next batch to hand on: a full one, or with `partial` also the
    /// last, partly filled one (call until `None`).
    /// The fleet tap sees every block first (and is called once more,
    /// with none, when there is none).
    pub fn next_block(&mut self, partial: bool) -> Option<RecordBatch> {
        let mut b = self
            .full_block()
            .or_else(|| (partial && self.has_pending()).then(|| self.take()));
        if let Some(t) = &mut self.fleet {
            t.block(b.as_deref_mut().unwrap_or(&mut []));
        }
        b
    }

    /// The oldest batch, even a partial one (call while [`Self::has_pending`]).
    pub fn take(&mut self) -> RecordBatch {
        self.full.pop_front().unwrap_or_else(|| self.swap_block())
    }

    fn swap_block(&mut self) -> RecordBatch {
        let next = self
            .spare
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(BATCH_RECORDS));
        std::mem::replace(&mut self.block, next)
    }

    /// An emptied batch back from the sink, for reuse (at most a few kept).
    pub fn recycle(&mut self, mut block: RecordBatch) {
        if self.spare.len() < 4 {
            block.clear();
            self.spare.push(block);
        }
    }

    /// The coverage record of the run so far, from the finished stats.
    pub fn coverage(&self, stats: &crate::record::StatsRecord) -> crate::record::CoverageRecord {
        use crate::record::Share;
        let tls = self.counts.get("tls").copied().unwrap_or(0);
        let get = |k| self.tls.get(k).copied().unwrap_or(0);
        // QUIC sessions: flows labelled `quic`; those with no `tls` record
        // showed no long header (picked up after the handshake).
        let quic_tls: u64 = self.quic.values().sum();
        let parsed = self.quic.get("parsed").copied().unwrap_or(0);
        let mut reasons: BTreeMap<&'static str, u64> = self
            .quic
            .iter()
            .filter(|(k, _)| **k != "parsed")
            .map(|(k, v)| (*k, *v))
            .collect();
        let unseen = self.flows[2].saturating_sub(quic_tls);
        if unseen > 0 {
            reasons.insert("handshake_not_seen", unseen);
        }
        let not_parsed: u64 = reasons.values().sum();
        crate::record::CoverageRecord {
            kind: "coverage",
            ts: stats.ts,
            tls_sessions: tls,
            tls_certificate_hidden: Share::new(get("certificate_hidden"), tls),
            tls_ech: Share::new(get("ech"), tls),
            quic: Share::new(not_parsed, not_parsed + tls),
            dns_transactions: self
                .names
                .counters
                .get("transactions")
                .copied()
                .unwrap_or(0),
            encrypted_dns: self.names.encrypted.clone(),
            quic_sessions: crate::record::QuicCoverage {
                sessions: self.flows[2].max(quic_tls),
                parsed,
                not_parsed: reasons,
            },
            flows_without_device: Share::new(self.flows[1], self.flows[0]),
            learnt_inspection_cas: self
                .detector
                .learner
                .learnt()
                .map(|c| crate::record::LearntCa {
                    subject: c.subject.clone(),
                    sha256: c.sha256.clone(),
                    key_id: c.key_id.clone(),
                    first_seen: c.first_seen,
                    learnt: c.learnt.unwrap_or(c.first_seen),
                    domains: c.domains.iter().cloned().collect(),
                })
                .collect(),
            devices: self.devices.coverage(),
            capture_drops: stats.drops.values().sum(),
            damaged_inputs: stats.files.iter().filter(|f| f.error.is_some()).count() as u64,
        }
    }

    /// Completes a stats record with the record counts (itself included)
    /// and the TLS counters.
    /// With the detector on its own thread, its counters are asked for
    /// first: they then count everything sent before.
    pub fn fill_stats(&mut self, stats: &mut crate::record::StatsRecord) {
        let report = self.remote.as_mut().map(|r| r.report());
        stats.records = crate::record::sorted(&self.counts);
        *stats.records.entry("stats").or_default() += 1;
        stats.tls = crate::record::sorted(&self.tls);
        stats.devices = crate::record::sorted(&self.devices.counters);
        stats.detections = crate::record::sorted(&self.detector.counters);
        let mut ja4_dropped = self.detector.apps.ja4_dropped;
        if let Some(rep) = report {
            if rep.detections > 0 {
                *stats.records.entry("detection").or_default() += rep.detections;
            }
            for (k, v) in rep.counters {
                *stats.detections.entry(k).or_default() += v;
            }
            ja4_dropped = rep.ja4_apps_over_cap;
        }
        stats.dns = crate::record::sorted(&self.names.counters);
        stats
            .dns
            .insert("pdns_entries", self.names.entries() as u64);
        if !self.proxy.is_empty() {
            stats.detections.extend(self.proxy.counters);
        }
        if ja4_dropped > 0 {
            stats.detections.insert("ja4_apps_over_cap", ja4_dropped);
        }
    }

    pub fn has_pending(&self) -> bool {
        !self.full.is_empty() || !self.block.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::StatsRecord;

    /// Regression: a push that filled a block once handed the block back
    /// through its return value, and callers that ignored it lost records.
    #[test]
    fn no_record_is_lost_across_block_boundaries() {
        let det = Detector::new(Arc::default(), Default::default(), None, false);
        let mut c = Correlator::new(Arc::default(), Devices::default(), det);
        let mut written = 0;
        let rec = || {
            Record::Stats(Box::new(StatsRecord {
                kind: "stats",
                ..StatsRecord::default()
            }))
        };
        for _ in 0..3000 {
            c.push([rec()]);
            if let Some(b) = c.full_block() {
                written += b.len();
            }
        }
        c.push([rec()]);
        while c.has_pending() {
            written += c.take().len();
        }
        assert_eq!(written, 3001);
        assert_eq!(c.counts["stats"], 3001);
    }
}
