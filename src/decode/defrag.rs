//! Bounded IPv4/IPv6 fragment reassembly.
//!
//! Fragments are held per (src, dst, protocol, id) until the datagram is
//! whole, its time runs out, or a cap is hit. Caps: datagrams in progress,
//! bytes held in all, and the largest datagram (64 KiB, the IP maximum).
//! Overlapping fragments keep the bytes seen first (the policy of most
//! stacks, and the same as our TCP reassembly). Every fragment that cannot be
//! used is counted; nothing grows without bound.

use crate::flow::key::FlowKey;
use crate::time::{NANOS_PER_SEC, Nanos, Timestamp};
use hashbrown::HashMap;
use std::collections::VecDeque;

/// Largest reassembled datagram payload.
pub const MAX_DATAGRAM: usize = 65_535;

#[derive(Clone, Copy, Debug)]
pub struct DefragLimits {
    /// Datagrams being reassembled at once (default 1024). 0: no
    /// reassembly; every fragment is counted in `dropped_cap` and dropped.
    pub max_datagrams: usize,
    /// Bytes held in all (default 8 MiB).
    pub max_bytes: usize,
    /// Packet time after the first fragment when an incomplete datagram is dropped (default 30 s, as Linux `ipfrag_time`).
    pub timeout: Nanos,
}

impl Default for DefragLimits {
    fn default() -> Self {
        DefragLimits {
            max_datagrams: 1024,
            max_bytes: 8 << 20,
            timeout: 30 * NANOS_PER_SEC,
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub struct Fragment {
    pub id: u32,
    pub offset: usize,
    pub more: bool,
}

#[derive(Debug)]
pub enum AddResult {
    Held,
    Dropped,
    /// The whole transport segment and the summed wire length of its frames.
    Complete {
        data: Vec<u8>,
        wire_len: u32,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Key {
    src: crate::flow::key::Addr,
    dst: crate::flow::key::Addr,
    proto: u8,
    id: u32,
}

struct Partial {
    first: Timestamp,
    data: Vec<u8>,
    /// Received ranges, sorted, merged.
    have: Vec<(usize, usize)>,
    total: Option<usize>,
    wire_len: u32,
}

#[derive(Clone, Debug, Default)]
pub struct DefragStats {
    pub timed_out: u64,
    pub dropped_cap: u64,
    pub dropped_malformed: u64,
}

impl DefragStats {
    pub fn merge(&mut self, o: &DefragStats) {
        self.timed_out += o.timed_out;
        self.dropped_cap += o.dropped_cap;
        self.dropped_malformed += o.dropped_malformed;
    }
}

pub struct Defrag {
    limits: DefragLimits,
    partial: HashMap<Key, Partial>,
    order: VecDeque<(Timestamp, Key)>,
    held_bytes: usize,
    pub stats: DefragStats,
}

impl Defrag {
    pub fn new(limits: DefragLimits) -> Self {
        Defrag {
            limits,
            partial: HashMap::new(),
            order: VecDeque::new(),
            held_bytes: 0,
            stats: DefragStats::default(),
        }
    }

    pub fn in_progress(&self) -> usize {
        self.partial.len()
    }

    fn expire(&mut self, now: Timestamp) {
        while let Some((t, k)) = self.order.front().copied() {
            if now.since(t) <= self.limits.timeout {
                break;
            }
            self.order.pop_front();
            if let Some(p) = self.partial.get(&k)
                && p.first == t
            {
                let p = self.partial.remove(&k).expect("present");
                self.held_bytes -= p.data.len();
                self.stats.timed_out += 1;
            }
        }
    }

    pub fn add(
        &mut self,
        flow: FlowKey,
        frag: Fragment,
        bytes: &[u8],
        ts: Timestamp,
        wire_len: u32,
    ) -> AddResult {
        self.expire(ts);
        if self.limits.max_datagrams == 0 {
            self.stats.dropped_cap += 1;
            return AddResult::Dropped;
        }
        let end = frag.offset.saturating_add(bytes.len());
        if end > MAX_DATAGRAM || (frag.more && !bytes.len().is_multiple_of(8)) {
            self.stats.dropped_malformed += 1;
            return AddResult::Dropped;
        }
        let key = Key {
            src: flow.src,
            dst: flow.dst,
            proto: flow.proto,
            id: frag.id,
        };
        if !self.partial.contains_key(&key) {
            if self.partial.len() >= self.limits.max_datagrams {
                self.stats.dropped_cap += 1;
                return AddResult::Dropped;
            }
            self.partial.insert(
                key,
                Partial {
                    first: ts,
                    data: Vec::new(),
                    have: Vec::new(),
                    total: None,
                    wire_len: 0,
                },
            );
            self.order.push_back((ts, key));
        }
        let p = self.partial.get_mut(&key).expect("inserted above");
        let grow = end.saturating_sub(p.data.len());
        if self.held_bytes + grow > self.limits.max_bytes {
            self.stats.dropped_cap += 1;
            return AddResult::Dropped;
        }
        if !frag.more {
            if p.total.is_some_and(|t| t != end) {
                self.stats.dropped_malformed += 1;
                return AddResult::Dropped;
            }
            p.total = Some(end);
        }
        if grow > 0 {
            p.data.resize(end, 0);
            self.held_bytes += grow;
        }
        // First seen wins: copy only into the holes.
        let mut cursor = frag.offset;
        let mut holes = Vec::new();
        for &(s, e) in &p.have {
            if e <= cursor {
                continue;
            }
            if s >= end {
                break;
            }
            if s > cursor {
                holes.push((cursor, s.min(end)));
            }
            cursor = cursor.max(e);
        }
        if cursor < end {
            holes.push((cursor, end));
        }
        for (s, e) in holes {
            p.data[s..e].copy_from_slice(&bytes[s - frag.offset..e - frag.offset]);
            p.have.push((s, e));
        }
        p.have.sort_unstable();
        let mut merged: Vec<(usize, usize)> = Vec::with_capacity(p.have.len());
        for &(s, e) in &p.have {
            match merged.last_mut() {
                Some(last) if s <= last.1 => last.1 = last.1.max(e),
                _ => merged.push((s, e)),
            }
        }
        p.have = merged;
        p.wire_len = p.wire_len.saturating_add(wire_len);
        // Too many separate pieces is an attack, not a network.
        if p.have.len() > 64 {
            let p = self.partial.remove(&key).expect("present");
            self.held_bytes -= p.data.len();
            self.stats.dropped_malformed += 1;
            return AddResult::Dropped;
        }
        let complete = matches!(p.total, Some(t) if p.have.len() == 1 && p.have[0] == (0, t));
        if complete {
            let p = self.partial.remove(&key).expect("present");
            self.held_bytes -= p.data.len();
            let mut data = p.data;
            data.truncate(p.total.unwrap_or(0));
            return AddResult::Complete {
                data,
                wire_len: p.wire_len,
            };
        }
        AddResult::Held
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::key::Addr;

    fn key() -> FlowKey {
        FlowKey {
            src: Addr::v4([192, 0, 2, 1]),
            dst: Addr::v4([192, 0, 2, 2]),
            proto: 17,
            ..FlowKey::default()
        }
    }

    #[test]
    fn out_of_order_and_overlapping_fragments_reassemble_first_seen_wins() {
        let mut d = Defrag::new(DefragLimits::default());
        let data: Vec<u8> = (0..40u8).collect();
        let t = Timestamp::from_secs(1);
        assert!(matches!(
            d.add(
                key(),
                Fragment {
                    id: 7,
                    offset: 24,
                    more: false
                },
                &data[24..],
                t,
                50
            ),
            AddResult::Held
        ));
        // Overlap with different bytes: the first-seen bytes 8..16 must win.
        assert!(matches!(
            d.add(
                key(),
                Fragment {
                    id: 7,
                    offset: 8,
                    more: true
                },
                &data[8..24],
                t,
                50
            ),
            AddResult::Held
        ));
        let bogus = [0xffu8; 16];
        assert!(matches!(
            d.add(
                key(),
                Fragment {
                    id: 7,
                    offset: 8,
                    more: true
                },
                &bogus,
                t,
                50
            ),
            AddResult::Held
        ));
        match d.add(
            key(),
            Fragment {
                id: 7,
                offset: 0,
                more: true,
            },
            &data[..8],
            t,
            50,
        ) {
            AddResult::Complete {
                data: got,
                wire_len,
            } => {
                assert_eq!(got, data);
                assert_eq!(wire_len, 200);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(d.in_progress(), 0);
    }

    #[test]
    fn no_datagrams_means_no_reassembly() {
        let mut d = Defrag::new(DefragLimits {
            max_datagrams: 0,
            ..DefragLimits::default()
        });
        let t = Timestamp::from_secs(1);
        for (offset, more) in [(0, true), (8, false)] {
            let r = d.add(
                key(),
                Fragment {
                    id: 1,
                    offset,
                    more,
                },
                &[0u8; 8],
                t,
                10,
            );
            assert!(matches!(r, AddResult::Dropped), "{r:?}");
        }
        assert_eq!(d.stats.dropped_cap, 2);
        assert_eq!(d.stats.dropped_malformed, 0);
        assert_eq!(d.in_progress(), 0);
    }

    #[test]
    fn caps_and_timeouts_are_counted() {
        let limits = DefragLimits {
            max_datagrams: 2,
            max_bytes: 1 << 20,
            timeout: NANOS_PER_SEC,
        };
        let mut d = Defrag::new(limits);
        let t = Timestamp::from_secs(1);
        for id in 0..3 {
            d.add(
                key(),
                Fragment {
                    id,
                    offset: 0,
                    more: true,
                },
                &[0u8; 8],
                t,
                10,
            );
        }
        assert_eq!(d.stats.dropped_cap, 1);
        d.add(
            key(),
            Fragment {
                id: 9,
                offset: 0,
                more: true,
            },
            &[0u8; 8],
            Timestamp::from_secs(5),
            10,
        );
        assert_eq!(d.stats.timed_out, 2);
        assert_eq!(d.in_progress(), 1);
        // Past the IP maximum.
        assert!(matches!(
            d.add(
                key(),
                Fragment {
                    id: 1,
                    offset: 65_528,
                    more: false
                },
                &[0u8; 16],
                t,
                10
            ),
            AddResult::Dropped
        ));
    }
}
