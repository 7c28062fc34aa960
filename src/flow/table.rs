//! The per-worker flow table.
//!
//! A hashbrown map from the canonical (direction-free) key to the flow, a
//! one-second timer wheel driven by packet time, and a cap. Each worker owns
//! its table: a connection's two directions reach the same worker through
//! the symmetric hash, so workers share nothing.
//!
//! Determinism: a flow ends when packet time passes `last + timeout` (tested
//! on each packet of the flow and by the wheel), so the records do not
//! depend on when the wheel happened to run, nor on the worker count. Only
//! cap evictions depend on how flows are spread over workers; they are
//! counted and reported.

use super::FlowSettings;
use super::isn::Isns;
use super::key::{Direction, FlowKey, PROTO_TCP, PROTO_UDP};
use super::reassembly::{Reassembler, StreamEvent};
use super::tcp::{EpState, History, TcpState, udp_conn_state};
use crate::app::AppState;
use crate::app::parser::{Cx, End, ParserSet, Shared, Transport};
use crate::decode::Packet;
use crate::decode::tcp_flags::{ACK, FIN, RST, SYN};
use crate::decode::tunnel::Encap;
use crate::record::{EndpointRecord, FlowRecord, Mac, Record};
use crate::time::{Nanos, Timestamp, nanos_to_secs_f64};
use hashbrown::HashTable;
use std::collections::{BTreeSet, VecDeque};

const WHEEL_SLOTS: u64 = 1024;

/// Ports on which the first packet seen is most likely the server's, used to
/// orient a flow picked up without its SYN (as Zeek's `likely_server_ports`).
const LIKELY_SERVER_PORTS: &[u16] = &[
    22, 25, 53, 67, 80, 110, 123, 143, 443, 465, 587, 853, 993, 995, 3128, 5223, 8080, 8443,
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndReason {
    /// Both sides closed (FIN) or one reset, then the linger time passed.
    Closed,
    /// No packet within the idle timeout.
    Timeout,
    /// A new connection reused the 5-tuple (SYN after close).
    Reused,
    /// Removed to make room under `max_flows`.
    Evicted,
    /// Still open at the end of the input.
    EndOfInput,
}

impl EndReason {
    pub fn name(self) -> &'static str {
        match self {
            EndReason::Closed => "closed",
            EndReason::Timeout => "timeout",
            EndReason::Reused => "reused",
            EndReason::Evicted => "evicted",
            EndReason::EndOfInput => "end_of_input",
        }
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct Counters {
    packets: u64,
    bytes: u64,
    ip_bytes: u64,
    payload_bytes: u64,
}

#[derive(Debug)]
struct Stream {
    reasm: Reassembler,
}

#[derive(Debug)]
pub struct Flow {
    generation: u64,
    /// The canonical key and its symmetric hash (the table's key).
    canon: FlowKey,
    hash: u64,
    /// Oriented: `src` is the originator.
    key: FlowKey,
    /// Whether the originator is the canonical key's lower endpoint.
    orig_is_lower: bool,
    start: Timestamp,
    last: Timestamp,
    c: [Counters; 2],
    mac: [Option<[u8; 6]>; 2],
    tcp: TcpState,
    history: History,
    syn_ts: Option<Timestamp>,
    synack_ts: Option<Timestamp>,
    ack_ts: Option<Timestamp>,
    streams: [Option<Box<Stream>>; 2],
    /// Each side's SYN sequence number, until its first payload makes a reassembler.
    isn: Isns,
    missed: [u64; 2],
    gaps: [u32; 2],
    /// Parser state, from the first payload on: a half-open flow has none.
    app: Option<Box<AppState>>,
    /// This flow's part of the table's memory, as last counted.
    mem: usize,
    /// The tunnels its first packet came through, oriented as `key`.
    encap: Option<Box<Encap>>,
}

/// What a flow costs before any parser state: the boxed flow, its table
/// slot and its timer entry.
pub const FLOW_BASE_BYTES: usize =
    std::mem::size_of::<Flow>() + std::mem::size_of::<WheelEntry>() + 16;

/// A flow's parser state, made at its first payload; `enabled`: the
/// parsers of its transport that are on.
fn app_mut<'a>(
    app: &'a mut Option<Box<AppState>>,
    s: &FlowSettings,
    enabled: ParserSet,
) -> &'a mut AppState {
    app.get_or_insert_with(|| Box::new(AppState::new(s.first_payload_bytes, enabled)))
}

impl Flow {
    fn is_tcp(&self) -> bool {
        self.key.proto == PROTO_TCP
    }

    fn closed(&self) -> bool {
        let t = &self.tcp;
        t.orig == EpState::Reset
            || t.resp == EpState::Reset
            || (t.orig == EpState::Closed && t.resp == EpState::Closed)
    }

    fn timeout(&self, s: &FlowSettings) -> Nanos {
        match self.key.proto {
            PROTO_TCP if self.closed() => s.tcp_close_linger,
            PROTO_TCP
                if self.tcp.resp == EpState::Inactive && self.tcp.orig == EpState::SynSent =>
            {
                s.tcp_attempt
            }
            PROTO_TCP => s.tcp_idle,
            _ => s.udp_idle,
        }
    }

    fn expired(&self, now: Timestamp, s: &FlowSettings) -> bool {
        now.since(self.last) > self.timeout(s)
    }

    /// Why a flow whose time ran out ended: it had closed, or it went idle.
    fn idle_end(&self) -> EndReason {
        if self.closed() {
            EndReason::Closed
        } else {
            EndReason::Timeout
        }
    }

    /// Does a parser still want direction `d`'s bytes? Before the first
    /// payload, what a fresh parser state would say (`enabled`: the
    /// parsers of the flow's transport that are on).
    fn wants(&self, d: Direction, s: &FlowSettings, enabled: ParserSet) -> bool {
        match &self.app {
            Some(a) => a.wants(d),
            None => s.first_payload_bytes > 0 || !enabled.is_empty(),
        }
    }

    /// The memory this flow holds, about: see [`FLOW_BASE_BYTES`], plus
    /// its parser state and out-of-order bytes.
    fn footprint(&self) -> usize {
        FLOW_BASE_BYTES
            + self.app.as_ref().map_or(0, |a| a.footprint())
            + self
                .streams
                .iter()
                .flatten()
                .map(|s| std::mem::size_of::<Stream>() + s.reasm.queued_bytes())
                .sum::<usize>()
    }

    /// Folds a finished reassembler's gap counters into the flow.
    fn absorb(&mut self, i: usize, r: &Reassembler) {
        self.missed[i] += r.missed_bytes;
        self.gaps[i] += r.gaps;
    }
}

/// Worker counters, merged into the `stats` record.
#[derive(Clone, Debug, Default)]
pub struct TableStats {
    pub packets: u64,
    pub created: u64,
    pub ended: [u64; 5],
    pub active_max: u64,
    pub reassembly_gaps: u64,
    pub reassembly_missed_bytes: u64,
    pub reassembly_stopped: u64,
    /// Packets of connections already written at close, absorbed within
    /// `tcp_closed` of the close (the record does not count them).
    pub late_packets: u64,
    /// Flows evicted because the tables reached `flow.memcap`.
    pub evicted_memcap: u64,
    /// Closed connections forgotten before `tcp_closed` ended because more
    /// than `max_flows` were remembered (their trailing packets then start
    /// flows of their own).
    pub closed_over_cap: u64,
}

impl TableStats {
    pub fn merge(&mut self, o: &TableStats) {
        self.packets += o.packets;
        self.created += o.created;
        for (a, b) in self.ended.iter_mut().zip(o.ended.iter()) {
            *a += b;
        }
        self.active_max += o.active_max;
        self.reassembly_gaps += o.reassembly_gaps;
        self.reassembly_missed_bytes += o.reassembly_missed_bytes;
        self.reassembly_stopped += o.reassembly_stopped;
        self.late_packets += o.late_packets;
        self.evicted_memcap += o.evicted_memcap;
        self.closed_over_cap += o.closed_over_cap;
    }
}

/// A timer-wheel entry: which flow, and which incarnation of its tuple.
#[derive(Clone, Copy)]
struct WheelEntry {
    hash: u64,
    /// Unique per table: it names the flow, and which incarnation of its tuple.
    generation: u64,
}

/// A connection written at close: its tuple absorbs trailing packets until
/// `until` instead of starting a new flow.
struct Closed {
    hash: u64,
    canon: FlowKey,
    until: Timestamp,
}

pub struct FlowTable {
    settings: FlowSettings,
    max_flows: usize,
    /// This worker's share of `flow.memcap`, and what its flows hold now.
    memcap: usize,
    mem: usize,
    /// Boxed: the bucket array holds pointers, so its power-of-two growth
    /// wastes 8 bytes a slot instead of a whole flow, and a resize moves
    /// pointers, not flows.
    flows: HashTable<Box<Flow>>,
    wheel: Vec<Vec<WheelEntry>>,
    wheel_sec: Option<u64>,
    next_gen: u64,
    /// State the parsers share across this worker's flows, and the
    /// parsers that are on for TCP and for UDP flows.
    parsers: Shared,
    enabled_tcp: ParserSet,
    enabled_udp: ParserSet,
    /// Connections written at close, and the same in order of `until`
    /// (packet time only moves forward here, so that is insertion order);
    /// at most `max_flows` of them, the oldest forgotten first.
    closed: HashTable<Closed>,
    closed_order: VecDeque<(Timestamp, u64, FlowKey)>,
    /// Flows that closed, by the time their linger ends (packet time only
    /// moves forward, so push order is deadline order, near enough: a late
    /// one only waits for the one before it).
    closing: VecDeque<(Timestamp, WheelEntry)>,
    /// The open flows by start (and generation): the oldest start is what
    /// the worker reports with each block, so that the detector knows no
    /// session can still come that started before it (`detect::admit`).
    /// One entry per open flow: bounded by `max_flows`.
    open_starts: BTreeSet<(Timestamp, u64)>,
    pub stats: TableStats,
    /// Debug builds only: `BLINDSPOT_TEST_PANIC` set makes the first packet
    /// panic the worker, so the tests can prove that a panic ends the process.
    #[cfg(debug_assertions)]
    test_panic: bool,
}

impl FlowTable {
    /// `share` is this worker's part of `max_flows` (1 / workers).
    pub fn new(settings: FlowSettings, workers: usize) -> Self {
        let max_flows = (settings.max_flows / workers.max(1)).max(1);
        FlowTable {
            settings,
            max_flows,
            memcap: (settings.memcap / workers.max(1)).max(FLOW_BASE_BYTES),
            mem: 0,
            // Grown as flows come: a table reserved for 64 Ki flows of 464
            // bytes is 60 MiB, whose pages random inserts fault in one by
            // one (a quarter of the threaded replay's time went to zeroing them).
            flows: HashTable::with_capacity(max_flows.min(1 << 10)),
            wheel: (0..WHEEL_SLOTS).map(|_| Vec::new()).collect(),
            wheel_sec: None,
            next_gen: 0,
            parsers: Shared::default(),
            enabled_tcp: ParserSet::enabled(&settings, Transport::Tcp),
            enabled_udp: ParserSet::enabled(&settings, Transport::Udp),
            closed: HashTable::new(),
            closed_order: VecDeque::new(),
            closing: VecDeque::new(),
            open_starts: BTreeSet::new(),
            stats: TableStats::default(),
            #[cfg(debug_assertions)]
            test_panic: std::env::var_os("BLINDSPOT_TEST_PANIC").is_some(),
        }
    }

    pub fn active(&self) -> usize {
        self.flows.len()
    }

    /// The start of the oldest flow still open (none: no flow is open).
    pub fn oldest_open(&self) -> Option<Timestamp> {
        self.open_starts.first().map(|(ts, _)| *ts)
    }

    /// When a flow whose time runs out ends: its last packet plus its
    /// timeout (the linger after a close), whenever the wheel noticed.
    fn deadline(&self, f: &Flow) -> Timestamp {
        f.last.plus(f.timeout(&self.settings))
    }

    fn schedule(&mut self, e: WheelEntry, deadline: Timestamp) {
        let now = self.wheel_sec.unwrap_or(deadline.as_secs());
        let sec = deadline.as_secs().clamp(now + 1, now + WHEEL_SLOTS - 1);
        self.wheel[(sec % WHEEL_SLOTS) as usize].push(e);
    }

    fn find(&self, e: &WheelEntry) -> Option<&Flow> {
        self.flows
            .find(e.hash, |f| f.generation == e.generation)
            .map(|f| &**f)
    }

    fn remove(&mut self, hash: u64, canon: &FlowKey) -> Option<Box<Flow>> {
        self.flows
            .find_entry(hash, |f| f.canon == *canon)
            .ok()
            .map(|e| e.remove().0)
    }

    /// Removes the flow a wheel or linger entry names, if it is still there.
    fn remove_entry(&mut self, e: &WheelEntry) -> Option<Box<Flow>> {
        self.flows
            .find_entry(e.hash, |f| f.generation == e.generation)
            .ok()
            .map(|e| e.remove().0)
    }

    /// Moves packet time forward: ends the flows whose timeout has passed.
    pub fn advance(&mut self, now: Timestamp, out: &mut Vec<Record>) {
        self.forget_closed(|until| until < now);
        while let Some(&(deadline, e)) = self.closing.front() {
            if deadline >= now {
                break;
            }
            self.closing.pop_front();
            let Some(f) = self.find(&e) else { continue };
            if f.expired(now, &self.settings) {
                let ended = self.deadline(f);
                let f = self.remove_entry(&e).expect("found above");
                self.finish(f, EndReason::Closed, ended, out);
            } else if f.closed() {
                // Trailing packets moved its linger on.
                let deadline = f.last.plus(f.timeout(&self.settings));
                self.closing.push_back((deadline, e));
            }
        }
        let sec = now.as_secs();
        let from = match self.wheel_sec {
            None => {
                self.wheel_sec = Some(sec);
                return;
            }
            Some(s) if sec <= s => return,
            Some(s) => s,
        };
        let steps = (sec - from).min(WHEEL_SLOTS);
        for i in 1..=steps {
            let slot_sec = if sec - from > WHEEL_SLOTS {
                sec - WHEEL_SLOTS + i
            } else {
                from + i
            };
            self.wheel_sec = Some(slot_sec);
            let slot = std::mem::take(&mut self.wheel[(slot_sec % WHEEL_SLOTS) as usize]);
            for e in slot {
                let (expired, deadline) = match self.find(&e) {
                    Some(f) => (
                        f.expired(now, &self.settings),
                        f.last.plus(f.timeout(&self.settings)),
                    ),
                    None => continue, // ended already; a stale entry
                };
                if expired {
                    if let Some(f) = self.remove_entry(&e) {
                        let reason = f.idle_end();
                        let ended = self.deadline(&f);
                        self.finish(f, reason, ended, out);
                    }
                } else {
                    self.schedule(e, deadline);
                }
            }
        }
        self.wheel_sec = Some(sec);
    }

    /// Forgets the oldest closed tuples while `done(until)` holds.
    fn forget_closed(&mut self, mut done: impl FnMut(Timestamp) -> bool) {
        while let Some(&(until, hash, canon)) = self.closed_order.front() {
            if !done(until) {
                break;
            }
            self.closed_order.pop_front();
            // Only the entry this one put there: the tuple may have closed again since.
            if let Ok(e) = self
                .closed
                .find_entry(hash, |c| c.canon == canon && c.until == until)
            {
                e.remove();
            }
        }
    }

    /// A new connection on a closed tuple: its packets are its own.
    fn forget_tuple(&mut self, hash: u64, canon: &FlowKey) {
        if let Ok(e) = self.closed.find_entry(hash, |c| c.canon == *canon) {
            e.remove();
        }
    }

    /// Remembers a connection written at close, for its trailing packets.
    fn remember_closed(&mut self, hash: u64, canon: FlowKey, until: Timestamp) {
        match self.closed.find_mut(hash, |c| c.canon == canon) {
            Some(c) => c.until = until,
            None => {
                self.closed
                    .insert_unique(hash, Closed { hash, canon, until }, |c| c.hash);
            }
        }
        self.closed_order.push_back((until, hash, canon));
        let cap = self.max_flows;
        let mut over = self.closed_order.len().saturating_sub(cap);
        self.stats.closed_over_cap += over as u64;
        self.forget_closed(|_| {
            let forget = over > 0;
            over = over.saturating_sub(1);
            forget
        });
    }

    /// Ends every flow (end of input), all at once.
    pub fn drain(&mut self, now: Timestamp, out: &mut Vec<Record>) {
        self.drain_batches(now, usize::MAX, out, |_| {});
    }

    /// Ends every flow (end of input) in the order of their start, then
    /// flow id: the order in which the correlator merges the workers' ends,
    /// so the detections do not depend on the worker count. Every `batch`
    /// flows, `emit` takes the records so far: a full table never becomes
    /// one pile of records.
    pub fn drain_batches(
        &mut self,
        now: Timestamp,
        batch: usize,
        out: &mut Vec<Record>,
        mut emit: impl FnMut(&mut Vec<Record>),
    ) {
        let mut all: Vec<Box<Flow>> = self.flows.drain().collect();
        all.sort_by_cached_key(|f| (f.start, f.key.flow_id_u64(f.start.as_nanos())));
        for (i, f) in all.into_iter().enumerate() {
            let (reason, ended) = if f.expired(now, &self.settings) {
                (f.idle_end(), self.deadline(&f))
            } else {
                (EndReason::EndOfInput, now)
            };
            self.finish(f, reason, ended, out);
            if (i + 1) % batch == 0 {
                emit(out);
            }
        }
        for s in &mut self.wheel {
            s.clear();
        }
        self.closed.clear();
        self.closed_order.clear();
        self.closing.clear();
    }

    /// Makes room at packet time `now`: ends the flow scheduled soonest.
    fn evict_one(&mut self, now: Timestamp, out: &mut Vec<Record>) {
        let base = self.wheel_sec.unwrap_or(0);
        for i in 0..WHEEL_SLOTS {
            let slot = ((base + i) % WHEEL_SLOTS) as usize;
            while let Some(e) = self.wheel[slot].pop() {
                if self.find(&e).is_some() {
                    let f = self.remove_entry(&e).expect("found above");
                    self.finish(f, EndReason::Evicted, now, out);
                    return;
                }
            }
        }
    }

    fn create(
        &mut self,
        p: &Packet,
        hash: u64,
        canon: FlowKey,
        lower_is_src: bool,
        out: &mut Vec<Record>,
    ) {
        if self.flows.len() >= self.max_flows {
            self.evict_one(p.ts, out);
        }
        while self.mem + FLOW_BASE_BYTES > self.memcap && !self.flows.is_empty() {
            self.stats.evicted_memcap += 1;
            self.evict_one(p.ts, out);
        }
        // Orientation: the sender of the first packet is the originator,
        // unless that packet is a SYN+ACK, or it is mid-stream traffic from a
        // likely server port to a port that is not one.
        let syn_ack = p.key.proto == PROTO_TCP && p.tcp_flags & (SYN | ACK) == (SYN | ACK);
        let midstream_from_server = p.tcp_flags & SYN == 0
            && LIKELY_SERVER_PORTS.contains(&p.key.sport)
            && !LIKELY_SERVER_PORTS.contains(&p.key.dport);
        let flip = syn_ack || midstream_from_server;
        let key = if flip { p.key.reversed() } else { p.key };
        let orig_is_lower = lower_is_src != flip;
        let generation = self.next_gen;
        self.next_gen += 1;
        self.stats.created += 1;
        let mut history = History::default();
        if flip {
            history.flipped();
        }
        let flow = Flow {
            generation,
            canon,
            hash,
            key,
            orig_is_lower,
            start: p.ts,
            last: p.ts,
            c: [Counters::default(); 2],
            mac: [None, None],
            tcp: TcpState::default(),
            history,
            syn_ts: None,
            synack_ts: None,
            ack_ts: None,
            streams: [None, None],
            isn: Isns::default(),
            missed: [0; 2],
            gaps: [0; 2],
            app: None,
            mem: FLOW_BASE_BYTES,
            encap: (!p.encap.is_empty())
                .then(|| Box::new(if flip { p.encap.reversed() } else { p.encap })),
        };
        self.mem += FLOW_BASE_BYTES;
        let deadline = p.ts.plus(flow.timeout(&self.settings));
        self.open_starts.insert((p.ts, generation));
        self.flows.insert_unique(hash, Box::new(flow), |f| f.hash);
        self.schedule(WheelEntry { hash, generation }, deadline);
        self.stats.active_max = self.stats.active_max.max(self.flows.len() as u64);
    }

    /// Accounts one packet. `payload` is its transport payload as captured.
    pub fn process(&mut self, p: &Packet, payload: &[u8], out: &mut Vec<Record>) {
        #[cfg(debug_assertions)]
        if self.test_panic {
            panic!("BLINDSPOT_TEST_PANIC is set: a deliberate panic on the first packet");
        }
        self.stats.packets += 1;
        self.advance(p.ts, out);
        let (canon, lower_is_src) = p.key.canonical();
        let hash = p.key.symmetric_hash();
        // End the previous flow on this tuple if its time ran out, or if a
        // fresh SYN reuses a closed connection's ports.
        enum Existing {
            Absent,
            Continues,
            Ends(EndReason),
        }
        let fresh_syn = p.key.proto == PROTO_TCP && p.tcp_flags & (SYN | ACK | RST) == SYN;
        let existing = match self.flows.find(hash, |f| f.canon == canon) {
            None => {
                // A connection written at close absorbs its trailing packets;
                // a new SYN on its ports starts the next connection.
                if !self.closed.is_empty()
                    && let Ok(c) = self.closed.find_entry(hash, |c| c.canon == canon)
                {
                    if !fresh_syn && p.ts <= c.get().until {
                        self.stats.late_packets += 1;
                        return;
                    }
                    c.remove();
                }
                Existing::Absent
            }
            Some(f) => {
                if f.expired(p.ts, &self.settings) {
                    Existing::Ends(f.idle_end())
                } else if fresh_syn && f.closed() {
                    Existing::Ends(EndReason::Reused)
                } else {
                    Existing::Continues
                }
            }
        };
        match existing {
            Existing::Continues => {}
            Existing::Absent => self.create(p, hash, canon, lower_is_src, out),
            Existing::Ends(r) => {
                let f = self.remove(hash, &canon).expect("found above");
                let ended = if r == EndReason::Reused {
                    p.ts
                } else {
                    self.deadline(&f)
                };
                self.finish(f, r, ended, out);
                if r == EndReason::Closed {
                    // Written now; this packet trails it, unless it opens the next connection.
                    if !fresh_syn {
                        self.stats.late_packets += 1;
                        return;
                    }
                    self.forget_tuple(hash, &canon);
                }
                self.create(p, hash, canon, lower_is_src, out);
            }
        }
        let settings = self.settings;
        let Some(flow) = self.flows.find_mut(hash, |f| f.canon == canon) else {
            return;
        };
        let mut closing = None;
        let mut close_now = false;
        let d = if lower_is_src == flow.orig_is_lower {
            Direction::ToServer
        } else {
            Direction::ToClient
        };
        let i = d.index();
        flow.last = flow.last.max(p.ts);
        let c = &mut flow.c[i];
        c.packets += 1;
        c.bytes += p.wire_len as u64;
        c.ip_bytes += p.ip_len as u64;
        c.payload_bytes += p.payload_wire_len as u64;
        if flow.mac[i].is_none() {
            flow.mac[i] = p.src_mac;
        }
        if flow.is_tcp() {
            let was_closed = flow.closed();
            flow.tcp.update(
                &mut flow.history,
                d,
                p.tcp_flags,
                p.seq,
                p.payload_wire_len,
                p.window,
            );
            let syn = p.tcp_flags & SYN != 0;
            let ack = p.tcp_flags & ACK != 0;
            match (d, syn, ack) {
                (Direction::ToServer, true, false) if flow.syn_ts.is_none() => {
                    flow.syn_ts = Some(p.ts)
                }
                (Direction::ToClient, true, true)
                    if flow.synack_ts.is_none() && flow.syn_ts.is_some() =>
                {
                    flow.synack_ts = Some(p.ts)
                }
                (Direction::ToServer, false, true)
                    if flow.ack_ts.is_none() && flow.synack_ts.is_some() =>
                {
                    flow.ack_ts = Some(p.ts)
                }
                _ => {}
            }
            if syn {
                // Only noted: a half-open flow holds no reassembler.
                flow.isn.syn(d, p.seq);
                if let Some(s) = flow.streams[i].as_mut() {
                    s.reasm.set_isn(p.seq);
                }
            }
            // Of a side's SYNs with two ISNs, the one the peer acknowledges wins.
            if ack
                && let Some((side, isn)) = flow.isn.ack(d, p.ack)
                && let Some(s) = flow.streams[side].as_mut()
            {
                s.reasm.rebase(isn);
            }
            if !payload.is_empty() && flow.wants(d, &settings, self.enabled_tcp) {
                let isn = flow.isn.get(i);
                let stream = flow.streams[i].get_or_insert_with(|| {
                    let mut reasm = Reassembler::new(settings.reassembly);
                    if let Some(isn) = isn {
                        reasm.set_isn(isn);
                    }
                    Box::new(Stream { reasm })
                });
                let app = app_mut(&mut flow.app, &settings, self.enabled_tcp);
                let mut cx = Cx {
                    ts: p.ts,
                    packet: None,
                    key: &flow.key,
                    start: flow.start,
                    shared: &mut self.parsers,
                    out,
                };
                // A SYN's payload (TCP Fast Open) starts after the SYN's own
                // sequence number.
                let seq = p.seq.wrapping_add(u32::from(syn));
                stream
                    .reasm
                    .segment(seq, payload, &mut |ev| app.on_stream(d, ev, &mut cx));
                if !flow.wants(d, &settings, self.enabled_tcp)
                    && let Some(s) = flow.streams[i].take()
                {
                    flow.absorb(i, &s.reasm);
                    self.stats.reassembly_stopped += 1;
                }
            }
            if p.tcp_flags & (FIN | RST) != 0
                && let Some(app) = &mut flow.app
            {
                app.on_close(d, p.tcp_flags & RST != 0, p.ts);
            }
            let both_fins_acked =
                flow.tcp
                    .note_close(d, p.tcp_flags, p.seq, p.payload_wire_len, p.ack);
            if both_fins_acked {
                // The last packet of a normal close: written at once, so a
                // sensor killed a second later has written it.
                close_now = true;
            } else if flow.closed() && !was_closed {
                // A reset, or FINs not yet acknowledged: written
                // `tcp_close_linger` after the last packet (packets racing
                // the RST still count), off the one-second wheel.
                closing = Some(flow.generation);
            }
        } else if p.key.proto == PROTO_UDP
            && !payload.is_empty()
            && flow.wants(d, &settings, self.enabled_udp)
        {
            let app = app_mut(&mut flow.app, &settings, self.enabled_udp);
            let mut cx = Cx {
                ts: p.ts,
                packet: Some(p),
                key: &flow.key,
                start: flow.start,
                shared: &mut self.parsers,
                out,
            };
            app.on_stream(d, StreamEvent::Data(payload), &mut cx);
        }
        if !payload.is_empty() {
            // Only payload grows or frees parser state and queued bytes.
            let m = flow.footprint();
            self.mem = self.mem - flow.mem + m;
            flow.mem = m;
            while self.mem > self.memcap && !self.flows.is_empty() {
                self.stats.evicted_memcap += 1;
                self.evict_one(p.ts, out);
            }
        }
        if close_now {
            let Some(f) = self.remove(hash, &canon) else {
                return; // evicted just above
            };
            self.finish(f, EndReason::Closed, p.ts, out);
            return;
        }
        if let Some(generation) = closing {
            self.closing.push_back((
                p.ts.plus(settings.tcp_close_linger),
                WheelEntry { hash, generation },
            ));
        }
    }

    /// Writes a flow's records. `ended`: the packet time it ended at (see
    /// [`FlowRecord::ended`]), which does not depend on when the wheel ran.
    fn finish(
        &mut self,
        mut f: Box<Flow>,
        reason: EndReason,
        ended: Timestamp,
        out: &mut Vec<Record>,
    ) {
        self.stats.ended[reason as usize] += 1;
        self.open_starts.remove(&(f.start, f.generation));
        self.mem -= f.mem;
        if reason == EndReason::Closed {
            self.remember_closed(f.hash, f.canon, f.last.plus(self.settings.tcp_closed));
        }
        for i in 0..2 {
            let d = Direction::from_index(i);
            if let Some(mut s) = f.streams[i].take() {
                // Streams are TCP's alone.
                let app = app_mut(&mut f.app, &self.settings, self.enabled_tcp);
                let mut cx = Cx {
                    ts: f.last,
                    packet: None,
                    key: &f.key,
                    start: f.start,
                    shared: &mut self.parsers,
                    out,
                };
                s.reasm.finish(&mut |ev| app.on_stream(d, ev, &mut cx));
                f.absorb(i, &s.reasm);
            }
            self.stats.reassembly_gaps += f.gaps[i] as u64;
            self.stats.reassembly_missed_bytes += f.missed[i];
            if f.gaps[i] > 0 {
                for _ in 0..f.gaps[i].min(1000) {
                    f.history.repeat(b'G', d);
                }
            }
        }
        let k = f.key;
        let flow_id = k.flow_id(f.start.as_nanos());
        let community_id = k.community_id(0);
        // Each parser's records first, then the flow's.
        if let Some(app) = f.app.as_deref_mut() {
            app.finish(&mut End {
                key: &k,
                flow_id,
                community_id: &community_id,
                timed_out: reason == EndReason::Timeout,
                shared: &mut self.parsers,
                out,
            });
        }
        // A flow that carried no payload has no parser state: read a fresh one.
        let fresh;
        let app: &AppState = match f.app.as_deref() {
            Some(a) => a,
            None => {
                fresh = AppState::default();
                &fresh
            }
        };
        let state = if f.is_tcp() {
            f.tcp
                .conn_state(&f.history, f.c[0].payload_bytes, f.c[1].payload_bytes)
        } else {
            udp_conn_state(f.c[0].packets, f.c[1].packets)
        };
        let ep = |i: usize, d: Direction| EndpointRecord {
            packets: f.c[i].packets,
            bytes: f.c[i].bytes,
            ip_bytes: f.c[i].ip_bytes,
            payload_bytes: f.c[i].payload_bytes,
            missed_bytes: f.missed[i],
            first_payload: app.payload_features(d),
        };
        let rtt = |a: Option<Timestamp>, b: Option<Timestamp>| match (a, b) {
            (Some(a), Some(b)) => Some(b.since(a) / 1_000),
            _ => None,
        };
        out.push(Record::Flow(Box::new(FlowRecord {
            kind: "flow",
            ts: f.start,
            end_ts: f.last,
            ended,
            flow_id,
            community_id,
            src_ip: k.src.to_ip(),
            src_port: k.sport,
            dst_ip: k.dst.to_ip(),
            dst_port: k.dport,
            proto: match k.proto {
                PROTO_TCP => "tcp",
                PROTO_UDP => "udp",
                _ => "other",
            },
            service: app.service(k.proto == PROTO_TCP, k.sport, k.dport),
            vlan: k.vlan.iter().copied().filter(|v| *v != 0).collect(),
            src_mac: f.mac[0].map(Mac),
            dst_mac: f.mac[1].map(Mac),
            duration: nanos_to_secs_f64(f.last.since(f.start)),
            state,
            history: f.history.as_str().to_string(),
            end_reason: reason.name(),
            rtt_syn_synack_us: rtt(f.syn_ts, f.synack_ts),
            rtt_synack_ack_us: rtt(f.synack_ts, f.ack_ts),
            orig: ep(0, Direction::ToServer),
            resp: ep(1, Direction::ToClient),
            destination: Default::default(),
            device: Default::default(),
            limits: app.limits(),
            encap: f.encap.as_deref().map(Encap::record),
        })));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::key::Addr;

    const MS: u64 = 1_000_000;

    /// A TCP packet between 10.0.0.1:40000 (client) and 10.0.0.2:443.
    fn tcp(ms: u64, to_server: bool, flags: u8, seq: u32, ack: u32) -> Packet {
        let (c, s) = (Addr::v4([10, 0, 0, 1]), Addr::v4([10, 0, 0, 2]));
        let key = if to_server {
            FlowKey {
                src: c,
                dst: s,
                sport: 40000,
                dport: 443,
                proto: PROTO_TCP,
                vlan: [0, 0],
                tunnel: 0,
            }
        } else {
            FlowKey {
                src: s,
                dst: c,
                sport: 443,
                dport: 40000,
                proto: PROTO_TCP,
                vlan: [0, 0],
                tunnel: 0,
            }
        };
        Packet {
            ts: Timestamp(1_000_000_000 * MS + ms * MS),
            key,
            wire_len: 60,
            ip_len: 40,
            tcp_flags: flags,
            seq,
            ack,
            window: 1000,
            ..Packet::default()
        }
    }

    fn run(t: &mut FlowTable, packets: &[Packet]) -> Vec<Record> {
        let mut out = Vec::new();
        for p in packets {
            t.process(p, &[], &mut out);
        }
        out
    }

    fn flow_packets(r: &Record) -> (u64, u64, &'static str) {
        let Record::Flow(f) = r else {
            panic!("not a flow record")
        };
        (f.orig.packets, f.resp.packets, f.end_reason)
    }

    fn handshake() -> Vec<Packet> {
        vec![
            tcp(0, true, SYN, 100, 0),
            tcp(1, false, SYN | ACK, 500, 101),
            tcp(2, true, ACK, 101, 501),
        ]
    }

    /// A close whose two FINs are acknowledged is written at the last ACK,
    /// not after a linger: a sensor killed a second later has written it.
    #[test]
    fn acknowledged_close_is_written_at_the_last_ack() {
        let mut t = FlowTable::new(FlowSettings::default(), 1);
        let mut p = handshake();
        p.push(tcp(10, true, FIN | ACK, 101, 501));
        p.push(tcp(11, false, FIN | ACK, 501, 102));
        assert!(
            run(&mut t, &p).is_empty(),
            "not written before the last ACK"
        );
        let out = run(&mut t, &[tcp(12, true, ACK, 102, 502)]);
        assert_eq!(
            out.iter().map(flow_packets).collect::<Vec<_>>(),
            [(4, 2, "closed")]
        );
        assert_eq!(t.active(), 0);
        // A retransmitted ACK is absorbed: counted, no new flow.
        assert!(run(&mut t, &[tcp(300, true, ACK, 102, 502)]).is_empty());
        assert_eq!(
            (t.active(), t.stats.late_packets, t.stats.created),
            (0, 1, 1)
        );
        // Past `tcp_closed`, a stray packet is a flow of its own again.
        let out = run(&mut t, &[tcp(6_000, true, ACK, 102, 502)]);
        assert!(out.is_empty());
        assert_eq!(
            (t.active(), t.stats.late_packets, t.stats.created),
            (1, 1, 2)
        );
    }

    /// A reset lingers `tcp_close_linger` after the last packet: packets
    /// racing it still count, later ones are absorbed, a new SYN is a new
    /// connection.
    #[test]
    fn reset_lingers_then_absorbs_then_reuses() {
        let mut t = FlowTable::new(FlowSettings::default(), 1);
        let mut p = handshake();
        p.push(tcp(10, true, RST | ACK, 101, 501));
        p.push(tcp(200, false, ACK, 501, 101)); // crossed the RST
        p.push(tcp(201, true, RST, 101, 0));
        assert!(run(&mut t, &p).is_empty());
        // 250 ms after the last packet (201 ms), on the next packet time.
        let mut out = Vec::new();
        t.advance(tcp(450, true, 0, 0, 0).ts, &mut out);
        assert!(out.is_empty(), "written before its linger ended");
        t.advance(tcp(452, true, 0, 0, 0).ts, &mut out);
        assert_eq!(
            out.iter().map(flow_packets).collect::<Vec<_>>(),
            [(4, 2, "closed")]
        );
        assert!(run(&mut t, &[tcp(900, false, RST, 501, 0)]).is_empty());
        assert_eq!((t.active(), t.stats.late_packets), (0, 1));
        assert!(run(&mut t, &[tcp(1_000, true, SYN, 9_000, 0)]).is_empty());
        assert_eq!((t.active(), t.stats.created), (1, 2));
    }

    /// A packet after the linger, before any advance, ends the flow itself
    /// (the packet's own time decides), and is absorbed.
    #[test]
    fn late_packet_ends_the_lingering_flow_by_its_own_time() {
        let mut t = FlowTable::new(FlowSettings::default(), 1);
        let mut p = handshake();
        p.push(tcp(10, true, RST | ACK, 101, 501));
        p.push(tcp(2_000, false, ACK, 501, 101));
        let out = run(&mut t, &p);
        assert_eq!(
            out.iter().map(flow_packets).collect::<Vec<_>>(),
            [(3, 1, "closed")]
        );
        assert_eq!((t.active(), t.stats.late_packets), (0, 1));
    }

    /// A half-open flow holds no parser or reassembly state; `flow.memcap`
    /// evicts (and counts) once the flows' memory reaches it.
    #[test]
    fn half_open_flows_are_light_and_the_memcap_evicts() {
        let settings = FlowSettings {
            memcap: 10 * FLOW_BASE_BYTES,
            ..FlowSettings::default()
        };
        let mut t = FlowTable::new(settings, 1);
        let mut out = Vec::new();
        for i in 0..15u16 {
            let mut p = tcp(u64::from(i), true, SYN, 100, 0);
            p.key.sport = 1000 + i;
            t.process(&p, &[], &mut out);
        }
        assert_eq!(t.active(), 10);
        assert_eq!(
            t.mem,
            10 * FLOW_BASE_BYTES,
            "a SYN-only flow costs its base alone"
        );
        assert_eq!(
            (
                t.stats.evicted_memcap,
                t.stats.ended[EndReason::Evicted as usize]
            ),
            (5, 5)
        );
        assert_eq!(out.len(), 5);
        assert!(
            t.flows
                .iter()
                .all(|f| f.app.is_none() && f.streams.iter().all(Option::is_none))
        );
        // Payload brings parser state, counted; over the cap again, the
        // flow nearest its timeout goes.
        let mut data = tcp(20, true, ACK | 0x08, 101, 0);
        data.key.sport = 1014;
        data.payload_wire_len = 5;
        t.process(&data, b"hello", &mut out);
        assert_eq!(t.stats.evicted_memcap, 6);
        assert!(t.mem <= t.memcap);
        let mut t = FlowTable::new(FlowSettings::default(), 1);
        t.process(&data, b"hello", &mut out);
        let parsers = std::mem::size_of::<AppState>() + 256 + std::mem::size_of::<Stream>();
        assert_eq!(
            t.mem,
            FLOW_BASE_BYTES + parsers,
            "the sample and reassembler are counted"
        );
        t.drain(tcp(30, true, 0, 0, 0).ts, &mut out);
        assert_eq!(t.mem, 0);
    }

    /// The closed connections remembered for their trailing packets are
    /// capped at `max_flows`; those forgotten early are counted.
    #[test]
    fn closed_connections_remembered_are_capped_and_counted() {
        let settings = FlowSettings {
            max_flows: 2,
            ..FlowSettings::default()
        };
        let mut t = FlowTable::new(settings, 1);
        let mut out = Vec::new();
        // Three connections, each reset and written (after its 250 ms
        // linger) before the next starts.
        for i in 0..3u16 {
            for mut p in [
                tcp(u64::from(i) * 500, true, SYN, 100, 0),
                tcp(u64::from(i) * 500 + 1, true, RST, 101, 0),
            ] {
                p.key.sport = 2000 + i;
                t.process(&p, &[], &mut out);
            }
        }
        t.advance(tcp(1_400, true, 0, 0, 0).ts, &mut out);
        assert_eq!(out.len(), 3, "three connections written");
        assert_eq!(t.stats.ended[EndReason::Closed as usize], 3);
        assert_eq!((t.closed_order.len(), t.stats.closed_over_cap), (2, 1));
    }

    /// A flow's `ended` time is its own (last packet plus timeout), not
    /// the time the wheel noticed: the same whether the table advances
    /// just past the timeout or long after (a later block). The oldest
    /// open start is tracked as flows come and go.
    #[test]
    fn a_flow_ends_at_its_own_time_and_the_oldest_open_start_is_known() {
        let s = FlowSettings::default();
        let ended = |advance_to_ms: u64| {
            let mut t = FlowTable::new(s, 1);
            assert_eq!(t.oldest_open(), None);
            run(&mut t, &handshake());
            assert_eq!(t.oldest_open(), Some(tcp(0, true, 0, 0, 0).ts));
            let mut out = Vec::new();
            t.advance(tcp(advance_to_ms, true, 0, 0, 0).ts, &mut out);
            assert_eq!(t.oldest_open(), None);
            let Some(Record::Flow(f)) = out.pop() else {
                panic!("no flow record")
            };
            (f.end_reason, f.ended)
        };
        let idle_ms = s.tcp_idle / MS;
        let want = ("timeout", tcp(2 + idle_ms, true, 0, 0, 0).ts);
        assert_eq!(ended(2 + idle_ms + 1), want);
        assert_eq!(ended(2 + idle_ms + 5_000), want);
        assert_eq!(ended(2 + 3 * idle_ms), want);
        // Two flows: the oldest start moves on when the older one closes.
        let mut t = FlowTable::new(s, 1);
        run(&mut t, &handshake());
        let mut other = tcp(50, true, SYN, 7, 0);
        other.key.sport = 40001;
        run(&mut t, &[other]);
        assert_eq!(t.oldest_open(), Some(tcp(0, true, 0, 0, 0).ts));
        let out = run(
            &mut t,
            &[
                tcp(60, true, FIN | ACK, 101, 501),
                tcp(61, false, FIN | ACK, 501, 102),
                tcp(62, true, ACK, 102, 502),
            ],
        );
        let Some(Record::Flow(f)) = out.last() else {
            panic!("no flow record")
        };
        assert_eq!(f.ended, tcp(62, true, 0, 0, 0).ts, "closed at the last ACK");
        assert_eq!(t.oldest_open(), Some(other.ts));
        let mut out = Vec::new();
        t.drain(tcp(100, true, 0, 0, 0).ts, &mut out);
        assert_eq!(t.oldest_open(), None);
    }
}
