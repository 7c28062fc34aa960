//! The order in which sessions enter the detector.
//!
//! Workers write a connection's session when the flow ends, so a long
//! connection's session reaches the correlator after the sessions of
//! shorter ones that started later, and how much later depends on where
//! capture blocks split and on the flow timeouts. Windows open with a key's
//! first session and close `window_s` after it, so the order must not
//! depend on that: each session gets an *order time*
//!
//! ```text
//! k = max(start, ended - LEAD)
//! ```
//!
//! (`ended`: [`FlowRecord::ended`](crate::record::FlowRecord::ended), the
//! packet time the flow ended at), and sessions enter in `(k, flow id)`
//! order: a session enters at its start, or [`LEAD`] before its end for
//! longer connections. [`Admission`] holds the sessions that came in until
//! no session with a smaller `k` can still come: the *horizon* the run
//! stages pass in ([`horizon`]) is the smallest `k` a session not yet seen
//! can have — a flow still open started at or after the oldest open start
//! its worker reports, and ends at or after the packet time now (less the
//! timer wheel's second), so its `k` is at least
//! `max(oldest open start, now - LEAD - SLACK)`. At the end of the input
//! everything is released.
//!
//! The held sessions are capped ([`HELD_CAP`]). A full buffer lets its
//! earliest session in before the horizon (`order_held_over_cap`); a
//! session that comes with a `k` below what was let in already (packet
//! times that go backwards, or after an early release) enters at once
//! (`order_late`). Both are counted in the `stats` record's `detections`.

use super::Session;
use crate::record::FlowId;
use crate::time::{NANOS_PER_SEC, Nanos, Timestamp};
use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// How long before its end a long connection's session enters (30 s): a
/// live detection waits at most about this long for the sessions that
/// could come before it.
pub const LEAD: Nanos = 30 * NANOS_PER_SEC;

/// A flow's timeout is noticed by a one-second timer wheel: an open flow
/// may be up to a second past its end.
pub const SLACK: Nanos = 2 * NANOS_PER_SEC;

/// Sessions held at most (about 1 KiB each, so some 64 MiB): at 2,000
/// connections with payload a second, the half minute [`LEAD`] holds fits.
pub const HELD_CAP: usize = 65_536;

/// A session's order time: its start, or [`LEAD`] before its end.
pub fn order_time(start: Timestamp, ended: Timestamp) -> Timestamp {
    start.max(Timestamp(ended.0.saturating_sub(LEAD)))
}

/// The smallest order time a session not yet seen can have, when packet
/// time has reached `now` and the oldest flow still open started at
/// `oldest_open` (none: no flow is open).
pub fn horizon(now: Timestamp, oldest_open: Option<Timestamp>) -> Timestamp {
    let open = oldest_open.map_or(now, |o| o.min(now));
    open.max(Timestamp(now.0.saturating_sub(LEAD + SLACK)))
}

/// The sessions waiting for the horizon, in `(k, flow id)` order.
pub struct Admission {
    /// The held sessions' order keys, smallest first, each with the slot
    /// of `slots` that holds the session: a session is moved in and out
    /// once, with no allocation of its own (a B-tree of boxed sessions
    /// allocated one box per session, 616 bytes).
    heap: BinaryHeap<Reverse<(Key, u32)>>,
    slots: Vec<Option<Session>>,
    /// Slots free for reuse.
    free: Vec<u32>,
    /// Tells apart sessions of equal `k` and flow id (the same flow's
    /// tuple reused in the same nanosecond).
    seq: u64,
    /// Every session with a smaller `k` has entered.
    floor: Timestamp,
    cap: usize,
    pub over_cap: u64,
    pub late: u64,
}

/// `(k, flow id, arrival)`: unique, so the order is total.
type Key = (Timestamp, FlowId, u64);

impl Default for Admission {
    fn default() -> Self {
        Admission::new(HELD_CAP)
    }
}

impl Admission {
    pub fn new(cap: usize) -> Self {
        Admission {
            heap: BinaryHeap::new(),
            slots: Vec::new(),
            free: Vec::new(),
            seq: 0,
            floor: Timestamp::ZERO,
            cap: cap.max(1),
            over_cap: 0,
            late: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// Every session with a smaller order time has entered.
    pub fn floor(&self) -> Timestamp {
        self.floor
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// The first held session, out of the buffer.
    fn pop(&mut self) -> Option<(Key, Session)> {
        let Reverse((key, slot)) = self.heap.pop()?;
        let s = self.slots.get_mut(slot as usize)?.take()?;
        self.free.push(slot);
        Some((key, s))
    }

    /// Holds `sessions`; those that must enter at once (late, or pushed out
    /// of a full buffer) go to `now`, in order.
    pub fn hold(&mut self, sessions: &mut Vec<Session>, now: &mut Vec<Session>) {
        for s in sessions.drain(..) {
            if s.order < self.floor {
                self.late += 1;
                now.push(s);
                continue;
            }
            self.seq += 1;
            let key = (s.order, s.flow_id, self.seq);
            // At most `cap + 1` slots: one is freed below once past the cap.
            let slot = match self.free.pop() {
                Some(i) => {
                    self.slots[i as usize] = Some(s);
                    i
                }
                None => {
                    self.slots.push(Some(s));
                    (self.slots.len() - 1) as u32
                }
            };
            self.heap.push(Reverse((key, slot)));
            if self.heap.len() > self.cap
                && let Some(((k, _, _), first)) = self.pop()
            {
                self.over_cap += 1;
                self.floor = self.floor.max(k);
                now.push(first);
            }
        }
    }

    /// The slot of the first held session when its `k` is below `horizon`
    /// (`Timestamp(u64::MAX)`: any), out of the order: the session stays in
    /// its slot, to be read there ([`Admission::session`]) until
    /// [`Admission::done`]; [`Admission::passed`] follows the last.
    pub fn first_before(&mut self, horizon: Timestamp) -> Option<u32> {
        let Reverse(((k, _, _), slot)) = self.heap.peek()?;
        if *k >= horizon && horizon != Timestamp(u64::MAX) {
            return None;
        }
        let slot = *slot;
        self.heap.pop();
        Some(slot)
    }

    pub fn session(&self, slot: u32) -> Option<&Session> {
        self.slots.get(slot as usize)?.as_ref()
    }

    /// Drops the session of `slot` where it is, and frees the slot.
    pub fn done(&mut self, slot: u32) {
        if let Some(s) = self.slots.get_mut(slot as usize) {
            *s = None;
            self.free.push(slot);
        }
    }

    /// Every session below `horizon` has been released.
    pub fn passed(&mut self, horizon: Timestamp) {
        self.floor = self.floor.max(horizon);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = NANOS_PER_SEC;

    #[test]
    fn order_time_is_the_start_or_lead_before_the_end() {
        let t = |s: u64| Timestamp(s * S);
        assert_eq!(order_time(t(100), t(101)), t(100), "short: its start");
        assert_eq!(order_time(t(100), t(130)), t(100), "exactly LEAD long");
        assert_eq!(
            order_time(t(100), t(1000)),
            t(970),
            "long: LEAD before its end"
        );
        assert_eq!(order_time(t(5), Timestamp::ZERO), t(5), "no end known");
    }

    #[test]
    fn the_horizon_is_the_oldest_open_start_or_lead_and_slack_before_now() {
        let t = |s: u64| Timestamp(s * S);
        // Nothing open: sessions still to come start at or after now.
        assert_eq!(horizon(t(1000), None), t(1000));
        // A flow open from 990 s: its session may enter at 990 s.
        assert_eq!(horizon(t(1000), Some(t(990))), t(990));
        // One open from long ago ends at or after now: LEAD + SLACK back.
        assert_eq!(horizon(t(1000), Some(t(10))), t(968));
        assert_eq!(horizon(t(10), Some(t(10))), t(10));
        // Early in packet time nothing wraps below zero.
        assert_eq!(horizon(t(10), Some(t(0))), t(0));
    }

    #[test]
    fn release_goes_in_order_time_then_flow_id_order_below_the_horizon() {
        let mut a = Admission::new(10);
        let session = |order: u64, id: u64| {
            let mut s = crate::detect::tests::to(1, "10.0.0.2", 443, "tcp", None);
            s.order = Timestamp(order * S);
            s.flow_id = FlowId(id);
            s
        };
        let mut v = vec![session(5, 2), session(3, 9), session(5, 1), session(9, 0)];
        let mut now = Vec::new();
        a.hold(&mut v, &mut now);
        assert!(now.is_empty() && v.is_empty());
        // As `Detector::release` takes them: read in their slots.
        let release = |a: &mut Admission, horizon: Timestamp, out: &mut Vec<u64>| {
            while let Some(slot) = a.first_before(horizon) {
                out.push(a.session(slot).expect("a held session").flow_id.0);
                a.done(slot);
            }
            a.passed(horizon);
        };
        let mut out = Vec::new();
        release(&mut a, Timestamp(5 * S), &mut out);
        assert_eq!(out, [9]);
        release(&mut a, Timestamp(6 * S), &mut out);
        assert_eq!(out, [9, 1, 2]);
        // Below the floor: enters at once, counted.
        a.hold(&mut vec![session(4, 7)], &mut now);
        assert_eq!((now.len(), a.late, a.len()), (1, 1, 1));
        release(&mut a, Timestamp(u64::MAX), &mut out);
        assert_eq!(out.len(), 4);
        assert!(a.is_empty());
    }
}
