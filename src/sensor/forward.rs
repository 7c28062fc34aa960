//! Tunnelled packets handed between the sensor's workers, so that both
//! directions of a connection inside a tunnel meet in one flow table.
//!
//! The kernel's fanout (`PACKET_FANOUT_HASH`) hashes what its flow dissector
//! reads: the inner 5-tuple for plain traffic and for the tunnels it
//! dissects itself (GRE, IP-in-IP), but the OUTER header of VXLAN, Geneve,
//! GTP-U and CAPWAP (UDP, whose source port each tunnel end picks for its
//! own direction) and of ERSPAN. So two directions of one inner connection
//! may reach two workers. A worker therefore sends every packet that came
//! through a tunnel (a flow key with a tunnel id) to the worker the
//! symmetric inner hash names, as replay does ([`FlowKey::symmetric_hash`]),
//! and keeps the rest: the kernel's symmetric hash has already put them
//! with their flow's other packets. Whether a flow is forwarded depends on
//! its key alone, so every packet of a flow has one owner. The untunnelled
//! path costs one compare (`tunnel == 0`).
//!
//! Forwarded packets go with their payload bytes, copied, in batches (one
//! pending batch per destination, sent when full and after every poll of
//! the rings), through one bounded channel per worker: a full inbox drops
//! the batch and counts it (`stats.queues[].forward_dropped`); nothing
//! waits. Inner IP fragments are reassembled by the worker that received
//! them (all fragments of a datagram come with the same outer header from
//! one tunnel end), and the whole datagram is forwarded.
//!
//! Order: the two directions of a connection now come from two rings, read
//! at different moments, and a flow's state (the handshake, who spoke
//! first, the TLS outcome) needs its packets in time order. So the owner
//! holds every tunnelled packet it keeps or receives (copied once, in
//! batches, one queue per worker that read them: each is in time order, as
//! a ring delivers) and merges the queues by time, up to when no worker can
//! still send an older one: each worker
//! publishes, after every poll, the time below which it will forward
//! nothing more ([`Clocks`]: its newest packet; or, when its rings were
//! empty, the wall clock less a ring block's timeout, the longest a packet
//! waits in an open block), and the owner feeds its table the held packets
//! up to the earliest of those times. A held packet waits about a ring
//! block's timeout at most (50 ms by default) while a worker is idle. The
//! hold is bounded ([`HELD_PACKETS`], [`HELD_BYTES`]); past that the oldest
//! goes to the table at once, counted (`forward_held_over_cap`). Its owner's
//! table may have moved on with untunnelled packets meanwhile: the table
//! takes a packet older than its clock as it is (a flow's `last` is a
//! maximum; the wheel does not go back), so only a tunnelled flow whose
//! timeout ran out within that delay is affected. The tick's detection
//! horizon is held to the same earliest time.
//!
//! [`FlowKey::symmetric_hash`]: crate::flow::key::FlowKey::symmetric_hash

use crate::decode::{self, Packet, PayloadRef};
use crate::time::Timestamp;
use crossbeam_channel::{Receiver, Sender, TrySendError, bounded};
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Batches one inbox holds: with [`BATCH_PACKETS`] and [`BATCH_BYTES`], at
/// most some 8,000 packets or 8 MiB of payload wait for a worker.
pub const INBOX_BATCHES: usize = 32;
/// Packets in one batch before it is sent.
pub const BATCH_PACKETS: usize = 256;
/// Payload bytes in one batch before it is sent (a batch may pass it by one
/// packet's payload, at most 64 KiB).
pub const BATCH_BYTES: usize = 256 << 10;

/// Tunnelled packets a worker holds for time order, at most; past it the
/// oldest is processed at once (`forward_held_over_cap`).
pub const HELD_PACKETS: usize = 65_536;
/// Payload bytes held at most.
pub const HELD_BYTES: usize = 32 << 20;

/// Packets for one worker, their payloads in one buffer.
#[derive(Default)]
pub struct Batch {
    /// The worker that read them.
    from: usize,
    /// Each packet's `payload` is a range of `bytes`.
    pkts: Vec<Packet>,
    bytes: Vec<u8>,
}

impl Batch {
    fn add(&mut self, p: &Packet, payload: &[u8]) {
        let mut q = *p;
        q.payload = PayloadRef {
            offset: self.bytes.len() as u32,
            len: payload.len() as u32,
            in_extra: false,
        };
        self.bytes.extend_from_slice(payload);
        self.pkts.push(q);
    }

    fn full(&self) -> bool {
        self.pkts.len() >= BATCH_PACKETS || self.bytes.len() >= BATCH_BYTES
    }
}

/// The held packets of one source worker, in the order it read them (its
/// rings deliver in time order): batches, the first one read from `at`.
#[derive(Default)]
struct Stream {
    batches: VecDeque<Batch>,
    at: usize,
}

impl Stream {
    fn head(&self) -> Option<&Packet> {
        self.batches.front().and_then(|b| b.pkts.get(self.at))
    }
}

/// A worker's forwarding counters since start.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ForwardStats {
    /// Packets handed to their owner.
    pub forwarded: u64,
    /// Packets dropped because the owner's inbox was full.
    pub dropped: u64,
    /// Packets other workers handed to this one.
    pub received: u64,
    /// Held packets processed before their turn because too many were held.
    pub held_over_cap: u64,
}

/// Each worker's packet time, published after it has sent what it
/// forwarded up to that time.
#[derive(Debug)]
pub struct Clocks(Vec<AtomicU64>);

impl Clocks {
    fn publish(&self, me: usize, now: Timestamp) {
        if let Some(c) = self.0.get(me) {
            c.store(now.0, Ordering::Release);
        }
    }

    /// The earliest published time: no packet forwarded after this read
    /// is older (as far as a ring delivers in time order).
    fn earliest(&self) -> Timestamp {
        Timestamp(
            self.0
                .iter()
                .map(|c| c.load(Ordering::Acquire))
                .min()
                .unwrap_or(u64::MAX),
        )
    }
}

/// One worker's end of the forwarding mesh.
pub struct Forwarder {
    me: usize,
    /// Workers in the mesh; 0 when forwarding is off (one worker, or the
    /// test knob), which makes [`Forwarder::owner`] always `None`.
    n: u64,
    txs: Vec<Sender<Batch>>,
    rx: Receiver<Batch>,
    pending: Vec<Batch>,
    clocks: Arc<Clocks>,
    /// Held packets by the worker that read them, merged by time.
    held: Vec<Stream>,
    held_packets: usize,
    held_bytes: usize,
    pub stats: ForwardStats,
}

/// The forwarders of `workers` workers; forwarding is off with one worker
/// or when `enabled` is false (each then keeps every packet it reads).
pub fn mesh(workers: usize, enabled: bool) -> Vec<Forwarder> {
    let on = enabled && workers > 1;
    let (txs, rxs): (Vec<_>, Vec<_>) = (0..workers)
        .map(|_| bounded::<Batch>(if on { INBOX_BATCHES } else { 0 }))
        .unzip();
    let clocks = Arc::new(Clocks((0..workers).map(|_| AtomicU64::new(0)).collect()));
    rxs.into_iter()
        .enumerate()
        .map(|(me, rx)| Forwarder {
            me,
            n: if on { workers as u64 } else { 0 },
            txs: txs.clone(),
            rx,
            pending: (0..workers)
                .map(|_| Batch {
                    from: me,
                    ..Batch::default()
                })
                .collect(),
            clocks: Arc::clone(&clocks),
            held: (0..workers).map(|_| Stream::default()).collect(),
            held_packets: 0,
            held_bytes: 0,
            stats: ForwardStats::default(),
        })
        .collect()
}

impl Forwarder {
    /// Whether this worker hands packets on (and so takes part in the
    /// stop barrier and the clocks).
    pub fn enabled(&self) -> bool {
        self.n > 1
    }

    /// The worker that owns `p`'s flow: `None` for packets that did not
    /// come through a tunnel (the kernel put them with their flow).
    #[inline]
    pub fn owner(&self, p: &Packet) -> Option<usize> {
        if p.key.tunnel == 0 || self.n == 0 {
            return None;
        }
        Some((p.key.symmetric_hash() % self.n) as usize)
    }

    /// Takes a tunnelled packet (`true`): sends it to its owner, or holds
    /// it here for time order. `false`: the caller processes it now.
    #[inline]
    pub fn route(&mut self, p: &Packet, payload: &[u8]) -> bool {
        match self.owner(p) {
            None => false,
            Some(w) if w == self.me => {
                let own = &mut self.held[w];
                if own.batches.back().is_none_or(Batch::full) {
                    own.batches.push_back(Batch::default());
                }
                if let Some(b) = own.batches.back_mut() {
                    b.add(p, payload);
                }
                self.held_packets += 1;
                self.held_bytes += payload.len();
                true
            }
            Some(w) => {
                if let Some(b) = self.pending.get_mut(w) {
                    b.add(p, payload);
                    if b.full() {
                        self.send(w);
                    }
                }
                true
            }
        }
    }

    fn send(&mut self, to: usize) {
        let b = std::mem::replace(
            &mut self.pending[to],
            Batch {
                from: self.me,
                ..Batch::default()
            },
        );
        let k = b.pkts.len() as u64;
        match self.txs[to].try_send(b) {
            Ok(()) => self.stats.forwarded += k,
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => self.stats.dropped += k,
        }
    }

    /// After a poll of the rings: sends every pending batch, publishes
    /// `progress` (nothing this worker forwards later is older), and takes
    /// in what the inbox holds.
    pub fn after_poll(&mut self, progress: Timestamp) {
        if !self.enabled() {
            return;
        }
        for to in 0..self.pending.len() {
            if !self.pending[to].pkts.is_empty() {
                self.send(to);
            }
        }
        self.clocks.publish(self.me, progress);
        self.take_inbox();
    }

    fn take_inbox(&mut self) {
        while let Ok(b) = self.rx.try_recv() {
            let n = b.pkts.len();
            if n == 0 {
                continue;
            }
            self.stats.received += n as u64;
            if let Some(s) = self.held.get_mut(b.from) {
                self.held_packets += n;
                self.held_bytes += b.bytes.len();
                s.batches.push_back(b);
            }
        }
    }

    /// Hands `f` the held packets no worker can still precede, merged in
    /// time order (and the oldest beyond the caps); with `all`, every one
    /// (at the end, once every worker has sent all it will).
    pub fn release(&mut self, all: bool, mut f: impl FnMut(&Packet, &[u8])) {
        if all {
            self.take_inbox();
        }
        if self.held_packets == 0 {
            return;
        }
        let safe = if all {
            Timestamp(u64::MAX)
        } else {
            self.earliest()
        };
        // The source whose next packet is the oldest (a few workers: a scan).
        while let Some((i, ts)) = self
            .held
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.head().map(|p| (i, p.ts)))
            .min_by_key(|&(i, ts)| (ts, i))
        {
            if ts > safe {
                if self.held_packets <= HELD_PACKETS && self.held_bytes <= HELD_BYTES {
                    break;
                }
                self.stats.held_over_cap += 1;
            }
            let s = &mut self.held[i];
            let Some(b) = s.batches.front() else { break };
            if let Some(p) = b.pkts.get(s.at) {
                f(p, decode::payload(p, &b.bytes, &[]));
            }
            s.at += 1;
            self.held_packets -= 1;
            if s.at >= b.pkts.len() {
                self.held_bytes -= b.bytes.len();
                s.batches.pop_front();
                s.at = 0;
            }
        }
    }

    /// The time no packet still to come to this worker's table through
    /// forwarding precedes. `MAX` when forwarding is off.
    pub fn earliest(&self) -> Timestamp {
        if self.enabled() {
            self.clocks.earliest()
        } else {
            Timestamp(u64::MAX)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::key::Addr;

    fn packet(tunnel: u64, sport: u16) -> Packet {
        let mut p = Packet::default();
        p.key.src = Addr::v4([10, 0, 0, 1]);
        p.key.dst = Addr::v4([10, 0, 0, 2]);
        p.key.sport = sport;
        p.key.dport = 443;
        p.key.proto = 6;
        p.key.tunnel = tunnel;
        p
    }

    /// A tunnelled packet that worker 0 of 2 hands to worker 1.
    fn for_worker_1(fw: &[Forwarder], ts: u64, seq: u32) -> Packet {
        let mut p = (40000..)
            .map(|s| packet(7, s))
            .find(|p| fw[0].owner(p) == Some(1))
            .unwrap();
        p.ts = Timestamp(ts);
        p.seq = seq;
        p
    }

    fn released(f: &mut Forwarder, all: bool) -> Vec<(u32, Vec<u8>)> {
        let mut got = Vec::new();
        f.release(all, |p, pl| got.push((p.seq, pl.to_vec())));
        got
    }

    #[test]
    fn only_tunnelled_packets_move_and_both_directions_agree() {
        let fw = mesh(4, true);
        for sport in 40000..40064 {
            let p = packet(0, sport);
            assert!(fw.iter().all(|f| f.owner(&p).is_none()));
            let p = packet(7, sport);
            let mut r = p;
            r.key = p.key.reversed();
            let owner = (p.key.symmetric_hash() % 4) as usize;
            for f in &fw {
                assert_eq!(f.owner(&p), f.owner(&r));
                assert_eq!(f.owner(&p), Some(owner));
            }
        }
        // Off: nothing moves.
        let mut off = mesh(4, false);
        assert!((40000..40064).all(|s| off.iter().all(|f| f.owner(&packet(7, s)).is_none())));
        assert!(!off[0].route(&packet(7, 1), b""));
        assert!(mesh(1, true)[0].owner(&packet(7, 1)).is_none());
        assert!(!mesh(2, true)[0].route(&packet(0, 1), b""));
    }

    #[test]
    fn packets_reach_the_table_in_time_order_once_no_worker_can_precede_them() {
        let mut fw = mesh(2, true);
        // Worker 1 holds its own packet at time 20; worker 0 forwards one
        // at time 10, read later.
        let own = for_worker_1(&fw, 20, 2);
        assert!(fw[1].route(&own, b"own"));
        fw[1].after_poll(Timestamp(20));
        assert!(
            released(&mut fw[1], false).is_empty(),
            "worker 0 published nothing yet"
        );
        let fwd = for_worker_1(&fw, 10, 1);
        assert!(fw[0].route(&fwd, b"forwarded"));
        fw[0].after_poll(Timestamp(15));
        fw[1].after_poll(Timestamp(20));
        assert_eq!(
            released(&mut fw[1], false),
            vec![(1, b"forwarded".to_vec())]
        );
        fw[0].after_poll(Timestamp(25));
        assert_eq!(released(&mut fw[1], false), vec![(2, b"own".to_vec())]);
        assert_eq!(fw[0].stats.forwarded, 1);
        assert_eq!(fw[1].stats.received, 1);
        // At the end everything goes, inbox included, in order.
        let (a, b) = (for_worker_1(&fw, 50, 4), for_worker_1(&fw, 40, 3));
        fw[1].route(&a, b"");
        fw[0].route(&b, b"");
        fw[0].after_poll(Timestamp(0));
        let got: Vec<u32> = released(&mut fw[1], true).iter().map(|x| x.0).collect();
        assert_eq!(got, vec![3, 4]);
    }

    #[test]
    fn a_full_inbox_drops_and_counts_and_a_full_hold_lets_the_oldest_go() {
        let mut fw = mesh(2, true);
        let p = for_worker_1(&fw, 1, 0);
        // A batch is sent when full, without waiting for the poll's end.
        for _ in 0..BATCH_PACKETS {
            fw[0].route(&p, b"z");
        }
        assert_eq!(fw[0].stats.forwarded, BATCH_PACKETS as u64);
        for _ in 1..INBOX_BATCHES {
            fw[0].route(&p, b"x");
            fw[0].after_poll(Timestamp(0));
        }
        fw[0].route(&p, b"x");
        fw[0].route(&p, b"y");
        fw[0].after_poll(Timestamp(0));
        assert_eq!(fw[0].stats.dropped, 2);
        // Nothing is safe (worker 1 published 0), but the cap holds.
        let mut f = fw.pop().unwrap();
        f.after_poll(Timestamp(0));
        assert_eq!(f.stats.received, (BATCH_PACKETS + INBOX_BATCHES - 1) as u64);
        for _ in 0..HELD_PACKETS {
            assert!(f.route(&p, b""));
        }
        let n = released(&mut f, false).len();
        assert_eq!(n, BATCH_PACKETS + INBOX_BATCHES - 1);
        assert_eq!(f.stats.held_over_cap, n as u64);
        assert_eq!(f.held_packets, HELD_PACKETS);
    }
}
