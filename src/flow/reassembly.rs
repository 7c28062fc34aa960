//! Bounded TCP stream reassembly, one per direction.
//!
//! Hands the application parsers an in-order byte stream, and only while
//! they ask for one: when no parser wants more bytes the reassembler is
//! dropped and the flow is only counted.
//!
//! Policy (documented in the README):
//! - **First seen wins.** Bytes already delivered, or already queued out of
//!   order, are never replaced by a later segment that overlaps them with
//!   different content (the choice of most stacks, and of Suricata's default
//!   policy for Linux/BSD targets).
//! - **Sequence wrap** is handled by unwrapping 32-bit sequence numbers into
//!   64-bit stream offsets relative to the first byte.
//! - **Mid-stream pickup**: without a SYN the first payload segment defines
//!   offset 0.
//! - **Bounded**: at most `max_segments` out-of-order segments and
//!   `max_bytes` queued bytes per direction. When a bound is hit the hole is
//!   declared a gap: it is skipped, counted (`gaps`, `missed_bytes`) and the
//!   parser is told, so it can resynchronise or stop.

/// What the reassembler hands the parser.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamEvent<'a> {
    Data(&'a [u8]),
    /// `n` bytes that will never be seen.
    Gap(u64),
}

#[derive(Clone, Copy, Debug)]
pub struct ReassemblyLimits {
    /// Out-of-order segments queued per direction (default 32).
    pub max_segments: usize,
    /// Out-of-order bytes queued per direction (default 64 KiB).
    pub max_bytes: usize,
}

impl Default for ReassemblyLimits {
    fn default() -> Self {
        ReassemblyLimits {
            max_segments: 32,
            max_bytes: 64 << 10,
        }
    }
}

#[derive(Debug, Default)]
pub struct Reassembler {
    /// Sequence number of stream offset 0.
    base: Option<u32>,
    /// Next stream offset to deliver.
    next: u64,
    /// Out-of-order segments: (stream offset, bytes), sorted, not overlapping.
    ooo: Vec<(u64, Vec<u8>)>,
    ooo_bytes: usize,
    limits: ReassemblyLimits,
    pub gaps: u32,
    pub missed_bytes: u64,
    /// Bytes delivered to the parser.
    pub delivered: u64,
}

impl Reassembler {
    pub fn new(limits: ReassemblyLimits) -> Self {
        Reassembler {
            limits,
            ..Default::default()
        }
    }

    /// The SYN's sequence number: the stream starts one after it.
    pub fn set_isn(&mut self, isn: u32) {
        if self.base.is_none() {
            self.base = Some(isn.wrapping_add(1));
        }
    }

    /// The stream starts after another SYN after all (the peer
    /// acknowledged that one: `flow::isn`). Only before any byte was
    /// delivered, queued or skipped; false, and nothing changes, after.
    pub fn rebase(&mut self, isn: u32) -> bool {
        if self.delivered > 0 || !self.ooo.is_empty() || self.missed_bytes > 0 {
            return false;
        }
        self.base = Some(isn.wrapping_add(1));
        self.next = 0;
        true
    }

    pub fn has_base(&self) -> bool {
        self.base.is_some()
    }

    pub fn queued_bytes(&self) -> usize {
        self.ooo_bytes
    }

    /// 32-bit sequence → 64-bit stream offset: the signed 32-bit distance
    /// from the delivery point (RFC 1323 style comparison), so wrapping is free.
    fn offset_of(&self, seq: u32, base: u32) -> i64 {
        let cur = base.wrapping_add(self.next as u32);
        let d = seq.wrapping_sub(cur) as i32 as i64;
        (self.next as i64).saturating_add(d)
    }

    /// Adds a segment; calls `sink` with every byte range that became
    /// deliverable, in order.
    pub fn segment(&mut self, seq: u32, data: &[u8], sink: &mut dyn FnMut(StreamEvent<'_>)) {
        if data.is_empty() {
            return;
        }
        let base = *self.base.get_or_insert(seq);
        let start = self.offset_of(seq, base);
        let end = start.saturating_add(data.len() as i64);
        let next = self.next as i64;
        if end <= next {
            return; // all retransmitted
        }
        let (start, data) = if start < next {
            let skip = (next - start) as usize;
            (self.next, &data[skip..])
        } else {
            (start as u64, data)
        };
        if start == self.next {
            self.deliver(data, sink);
            self.drain(sink);
            return;
        }
        self.queue(start, data, sink);
    }

    fn deliver(&mut self, data: &[u8], sink: &mut dyn FnMut(StreamEvent<'_>)) {
        self.next += data.len() as u64;
        self.delivered += data.len() as u64;
        sink(StreamEvent::Data(data));
    }

    /// Delivers queued segments that are now contiguous.
    fn drain(&mut self, sink: &mut dyn FnMut(StreamEvent<'_>)) {
        while let Some((off, _)) = self.ooo.first() {
            if *off > self.next {
                break;
            }
            let (off, bytes) = self.ooo.remove(0);
            self.ooo_bytes -= bytes.len();
            let end = off + bytes.len() as u64;
            if end <= self.next {
                continue;
            }
            let skip = (self.next - off) as usize;
            self.deliver(&bytes[skip..], sink);
        }
    }

    /// Skips the hole before the first queued segment.
    fn skip_gap(&mut self, sink: &mut dyn FnMut(StreamEvent<'_>)) {
        if let Some((off, _)) = self.ooo.first() {
            if *off > self.next {
                let n = *off - self.next;
                self.gaps += 1;
                self.missed_bytes += n;
                self.next = *off;
                sink(StreamEvent::Gap(n));
            }
            self.drain(sink);
        }
    }

    fn queue(&mut self, start: u64, data: &[u8], sink: &mut dyn FnMut(StreamEvent<'_>)) {
        // First seen wins: keep only the parts not already queued.
        let end = start + data.len() as u64;
        let mut pieces: Vec<(u64, u64)> = Vec::new();
        let mut cursor = start;
        for (off, bytes) in &self.ooo {
            let (s, e) = (*off, *off + bytes.len() as u64);
            if e <= cursor {
                continue;
            }
            if s >= end {
                break;
            }
            if s > cursor {
                pieces.push((cursor, s));
            }
            cursor = cursor.max(e);
        }
        if cursor < end {
            pieces.push((cursor, end));
        }
        for (s, e) in pieces {
            let bytes = &data[(s - start) as usize..(e - start) as usize];
            while self.ooo.len() >= self.limits.max_segments
                || self.ooo_bytes + bytes.len() > self.limits.max_bytes
            {
                if self.ooo.is_empty() {
                    // A single segment larger than the queue: a gap up to it.
                    let n = s - self.next;
                    self.gaps += 1;
                    self.missed_bytes += n;
                    self.next = s;
                    sink(StreamEvent::Gap(n));
                    break;
                }
                self.skip_gap(sink);
            }
            if s < self.next {
                // Skipping a gap moved the delivery point past part of this piece.
                if e > self.next {
                    let skip = (self.next - s) as usize;
                    self.segment_at(self.next, &bytes[skip..], sink);
                }
                continue;
            }
            self.segment_at(s, bytes, sink);
        }
    }

    fn segment_at(&mut self, s: u64, bytes: &[u8], sink: &mut dyn FnMut(StreamEvent<'_>)) {
        if s == self.next {
            self.deliver(bytes, sink);
            self.drain(sink);
            return;
        }
        let pos = self.ooo.partition_point(|(o, _)| *o < s);
        self.ooo_bytes += bytes.len();
        self.ooo.insert(pos, (s, bytes.to_vec()));
    }

    /// At the end of the flow: deliver what is queued, declaring the holes.
    pub fn finish(&mut self, sink: &mut dyn FnMut(StreamEvent<'_>)) {
        while !self.ooo.is_empty() {
            self.skip_gap(sink);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::key::SplitMix;

    fn collect(r: &mut Reassembler, seq: u32, data: &[u8], out: &mut Vec<u8>, gaps: &mut u64) {
        r.segment(seq, data, &mut |e| match e {
            StreamEvent::Data(d) => out.extend_from_slice(d),
            StreamEvent::Gap(n) => *gaps += n,
        });
    }

    /// Reorders, duplicates and overlaps segments of a known stream (around
    /// a sequence-number wrap) and checks the delivered bytes against it.
    #[test]
    fn randomized_reorder_duplicate_overlap_matches_original() {
        for seed in 0..300u64 {
            let mut rng = SplitMix(seed);
            let len = 1 + rng.below(6000);
            let stream: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
            let isn = if seed % 3 == 0 {
                u32::MAX - rng.below(3000) as u32
            } else {
                rng.next_u64() as u32
            };
            // Cut into segments, some overlapping their neighbours.
            let mut segs: Vec<(usize, usize)> = Vec::new();
            let mut pos = 0;
            while pos < len {
                let n = 1 + rng.below(300);
                let back = if pos > 0 && rng.below(4) == 0 {
                    rng.below(pos.min(50))
                } else {
                    0
                };
                let s = pos - back;
                let e = (pos + n).min(len);
                segs.push((s, e));
                pos = e;
            }
            // Duplicates.
            for _ in 0..rng.below(8) {
                let i = rng.below(segs.len());
                segs.push(segs[i]);
            }
            // Local reordering (bounded distance, as on a real path).
            for i in 0..segs.len() {
                let j = (i + rng.below(6)).min(segs.len() - 1);
                segs.swap(i, j);
            }
            let mut r = Reassembler::new(ReassemblyLimits {
                max_segments: 1000,
                max_bytes: 1 << 20,
            });
            r.set_isn(isn);
            let (mut out, mut gaps) = (Vec::new(), 0);
            for (s, e) in &segs {
                let seq = isn.wrapping_add(1).wrapping_add(*s as u32);
                collect(&mut r, seq, &stream[*s..*e], &mut out, &mut gaps);
            }
            assert_eq!(gaps, 0, "seed {seed}");
            assert_eq!(out, stream, "seed {seed}");
            assert_eq!(r.queued_bytes(), 0);
        }
    }

    #[test]
    fn first_seen_wins_on_conflicting_overlap() {
        let mut r = Reassembler::new(ReassemblyLimits::default());
        r.set_isn(99);
        let (mut out, mut gaps) = (Vec::new(), 0);
        collect(&mut r, 104, b"EFGH", &mut out, &mut gaps); // queued
        collect(&mut r, 104, b"xxxxIJ", &mut out, &mut gaps); // overlaps the queued bytes
        collect(&mut r, 100, b"ABCD", &mut out, &mut gaps);
        collect(&mut r, 100, b"zzzzzzzzzzK", &mut out, &mut gaps); // retransmission with other bytes
        assert_eq!(out, b"ABCDEFGHIJK");
    }

    #[test]
    fn mid_stream_pickup_and_wrap() {
        let mut r = Reassembler::new(ReassemblyLimits::default());
        let (mut out, mut gaps) = (Vec::new(), 0);
        collect(&mut r, u32::MAX - 1, b"ab", &mut out, &mut gaps);
        collect(&mut r, 2, b"ef", &mut out, &mut gaps);
        collect(&mut r, 0, b"cd", &mut out, &mut gaps);
        assert_eq!(out, b"abcdef");
    }

    #[test]
    fn caps_turn_holes_into_counted_gaps() {
        let mut r = Reassembler::new(ReassemblyLimits {
            max_segments: 4,
            max_bytes: 1 << 20,
        });
        r.set_isn(0);
        let (mut out, mut gaps) = (Vec::new(), 0);
        // Byte 1..=10 never arrive; 12 later segments do.
        for i in 0..12u32 {
            collect(&mut r, 11 + i * 10, &[i as u8; 10], &mut out, &mut gaps);
            assert!(r.ooo.len() <= 4);
        }
        assert_eq!(gaps, 10);
        assert_eq!(r.gaps, 1);
        r.finish(&mut |_| {});
        assert_eq!(out.len() as u64 + r.queued_bytes() as u64, 120);
        // One segment bigger than the byte cap.
        let mut r = Reassembler::new(ReassemblyLimits {
            max_segments: 4,
            max_bytes: 16,
        });
        r.set_isn(0);
        let (mut out, mut gaps) = (Vec::new(), 0);
        collect(&mut r, 11, &[7u8; 100], &mut out, &mut gaps);
        assert_eq!((out.len(), gaps), (100, 10));
    }
}
