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
//! Time: a forwarded packet can be a little older than its owner's table
//! clock (a poll of the sender's rings plus the owner's inbox wait). The
//! table takes a packet older than its clock as it is (a flow's `last` is a
//! maximum; the wheel does not go back), so only a flow whose timeout ran
//! out within that delay is affected. The owner's tick reports a detection
//! horizon no later than the other workers' published clocks
//! ([`Clocks`]), read before its inbox is drained, so the correlator does
//! not admit sessions past a forwarded packet still in flight. (Device
//! evidence goes with the tick of the worker that decoded it, as before.)
//!
//! [`FlowKey::symmetric_hash`]: crate::flow::key::FlowKey::symmetric_hash

use crate::decode::{self, Packet, PayloadRef};
use crate::time::Timestamp;
use crossbeam_channel::{Receiver, Sender, TrySendError, bounded};
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

/// Packets for one worker, their payloads in one buffer.
#[derive(Default)]
pub struct Batch {
    /// Each packet's `payload` is a range of `bytes`.
    pkts: Vec<Packet>,
    bytes: Vec<u8>,
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
            pending: (0..workers).map(|_| Batch::default()).collect(),
            clocks: Arc::clone(&clocks),
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

    /// The worker that owns `p`'s flow, when that is another worker: only
    /// for packets that came through a tunnel.
    #[inline]
    pub fn owner(&self, p: &Packet) -> Option<usize> {
        if p.key.tunnel == 0 || self.n == 0 {
            return None;
        }
        let w = (p.key.symmetric_hash() % self.n) as usize;
        (w != self.me).then_some(w)
    }

    /// Queues `p` (its payload copied) for worker `to`.
    pub fn push(&mut self, to: usize, p: &Packet, payload: &[u8]) {
        let Some(b) = self.pending.get_mut(to) else {
            return;
        };
        let mut q = *p;
        q.payload = PayloadRef {
            offset: b.bytes.len() as u32,
            len: payload.len() as u32,
            in_extra: false,
        };
        b.bytes.extend_from_slice(payload);
        b.pkts.push(q);
        if b.pkts.len() >= BATCH_PACKETS || b.bytes.len() >= BATCH_BYTES {
            self.send(to);
        }
    }

    /// Sends every pending batch.
    pub fn flush(&mut self) {
        for to in 0..self.pending.len() {
            if !self.pending[to].pkts.is_empty() {
                self.send(to);
            }
        }
    }

    fn send(&mut self, to: usize) {
        let b = std::mem::take(&mut self.pending[to]);
        let k = b.pkts.len() as u64;
        match self.txs[to].try_send(b) {
            Ok(()) => self.stats.forwarded += k,
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => self.stats.dropped += k,
        }
    }

    /// Hands every packet in the inbox to `f`, with its payload.
    pub fn drain(&mut self, mut f: impl FnMut(&Packet, &[u8])) {
        while let Ok(b) = self.rx.try_recv() {
            self.stats.received += b.pkts.len() as u64;
            for p in &b.pkts {
                f(p, decode::payload(p, &b.bytes, &[]));
            }
        }
    }

    /// Publishes this worker's packet time `now` (call after [`flush`]).
    ///
    /// [`flush`]: Forwarder::flush
    pub fn publish(&self, now: Timestamp) {
        if self.enabled() {
            self.clocks.publish(self.me, now);
        }
    }

    /// The time no packet still to be forwarded to this worker precedes;
    /// read it before the last [`drain`] of a tick. `MAX` when off.
    ///
    /// [`drain`]: Forwarder::drain
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
                assert_eq!(f.owner(&p), (owner != f.me).then_some(owner));
            }
        }
        // Off: nothing moves.
        let off = mesh(4, false);
        assert!((40000..40064).all(|s| off.iter().all(|f| f.owner(&packet(7, s)).is_none())));
        assert!(mesh(1, true)[0].owner(&packet(7, 1)).is_none());
    }

    #[test]
    fn payloads_travel_with_their_packets_and_a_full_inbox_drops_and_counts() {
        let mut fw = mesh(2, true);
        let (a, b) = fw.split_at_mut(1);
        let (a, b) = (&mut a[0], &mut b[0]);
        let mut p = packet(7, 1);
        p.seq = 1;
        a.push(1, &p, b"hello");
        p.seq = 2;
        a.push(1, &p, b"");
        p.seq = 3;
        a.push(1, &p, b"world!");
        a.flush();
        let mut got = Vec::new();
        b.drain(|p, pl| got.push((p.seq, pl.to_vec())));
        assert_eq!(
            got,
            vec![(1, b"hello".to_vec()), (2, vec![]), (3, b"world!".to_vec())]
        );
        assert_eq!(a.stats.forwarded, 3);
        assert_eq!(b.stats.received, 3);
        // Fill the inbox, then one more batch: dropped, counted, not blocked.
        for _ in 0..INBOX_BATCHES {
            a.push(1, &p, b"x");
            a.flush();
        }
        a.push(1, &p, b"x");
        a.push(1, &p, b"y");
        a.flush();
        assert_eq!(a.stats.dropped, 2);
        assert_eq!(a.stats.forwarded, 3 + INBOX_BATCHES as u64);
        // A batch is sent when full, without a flush.
        let mut n = 0;
        b.drain(|_, _| n += 1);
        for _ in 0..BATCH_PACKETS {
            a.push(1, &p, b"z");
        }
        b.drain(|_, _| n += 1);
        assert_eq!(n, INBOX_BATCHES + BATCH_PACKETS);
    }

    #[test]
    fn the_earliest_clock_bounds_a_tick() {
        let fw = mesh(3, true);
        fw[0].publish(Timestamp(30));
        fw[1].publish(Timestamp(10));
        fw[2].publish(Timestamp(20));
        assert_eq!(fw[0].earliest(), Timestamp(10));
        assert_eq!(mesh(1, true)[0].earliest(), Timestamp(u64::MAX));
    }
}
