//! The frames of a decrypted Initial packet, and CRYPTO reassembly.
//!
//! An Initial carries PADDING, PING, ACK, CRYPTO and CONNECTION_CLOSE
//! frames (RFC 9000 §12.4). A ClientHello with a post-quantum key share
//! (ML-KEM, ~1.2 KiB) does not fit one Initial: Chrome splits it over two
//! or more, with its CRYPTO frames out of order and shuffled among PING and
//! PADDING frames. [`Crypto`] puts them back by offset into a buffer capped
//! at [`MAX_CRYPTO`] bytes with at most [`MAX_RANGES`] separate pieces;
//! what does not fit is dropped and `overflow` says so.

use super::initial::varint;

/// CRYPTO bytes kept per direction: the Initial space carries only the
/// ClientHello (~2 KiB with ML-KEM, a little more with many extensions) or
/// the ServerHello.
pub const MAX_CRYPTO: usize = 16 << 10;
/// Separate pieces (holes + 1) kept while reassembling.
pub const MAX_RANGES: usize = 32;

/// One frame of an Initial, as far as the sensor cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    Crypto {
        offset: u64,
        data: &'a [u8],
    },
    /// CONNECTION_CLOSE (0x1c transport, 0x1d application): its error code.
    Close {
        code: u64,
        app: bool,
    },
    /// PADDING, PING or ACK.
    Other,
}

/// A frame type that is not allowed in an Initial, or a frame cut short.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Malformed;

/// Calls `f` for each frame of a decrypted payload, in order.
pub fn walk<'a>(mut b: &'a [u8], mut f: impl FnMut(Frame<'a>)) -> Result<(), Malformed> {
    let next = |b: &mut &'a [u8]| -> Result<u64, Malformed> {
        let (v, l) = varint(b).ok_or(Malformed)?;
        *b = &b[l..];
        Ok(v)
    };
    while let Some(&t) = b.first() {
        if t == 0 {
            // A run of PADDING is one frame to the caller (most of a
            // 1200-byte Initial: scanned 16 bytes at a time).
            let words = b
                .chunks_exact(16)
                .take_while(|c| u128::from_ne_bytes((*c).try_into().unwrap_or([1; 16])) == 0)
                .count();
            let n = 16 * words
                + b[16 * words..]
                    .iter()
                    .position(|x| *x != 0)
                    .unwrap_or(b.len() - 16 * words);
            b = &b[n..];
            f(Frame::Other);
            continue;
        }
        let t = next(&mut b)?;
        match t {
            0x01 => f(Frame::Other),
            0x02 | 0x03 => {
                let _largest = next(&mut b)?;
                let _delay = next(&mut b)?;
                let ranges = next(&mut b)?;
                let _first = next(&mut b)?;
                // Each range is two varints of at least a byte.
                if ranges > b.len() as u64 / 2 {
                    return Err(Malformed);
                }
                for _ in 0..2 * ranges + if t == 0x03 { 3 } else { 0 } {
                    next(&mut b)?;
                }
                f(Frame::Other);
            }
            0x06 => {
                let offset = next(&mut b)?;
                let len = next(&mut b)?;
                let len = usize::try_from(len).map_err(|_| Malformed)?;
                let data = b.get(..len).ok_or(Malformed)?;
                b = &b[len..];
                f(Frame::Crypto { offset, data });
            }
            0x1c | 0x1d => {
                let code = next(&mut b)?;
                if t == 0x1c {
                    next(&mut b)?; // the frame type that caused it
                }
                let len = usize::try_from(next(&mut b)?).map_err(|_| Malformed)?;
                b = b.get(len..).ok_or(Malformed)?;
                f(Frame::Close {
                    code,
                    app: t == 0x1d,
                });
            }
            _ => return Err(Malformed),
        }
    }
    Ok(())
}

/// One direction's CRYPTO stream, reassembled by offset.
#[derive(Debug, Default)]
pub struct Crypto {
    buf: Vec<u8>,
    /// Filled pieces `[start, end)`, sorted, merged, none touching.
    ranges: Vec<(u32, u32)>,
    /// Bytes beyond [`MAX_CRYPTO`], or more than [`MAX_RANGES`] pieces, were dropped.
    pub overflow: bool,
}

impl Crypto {
    /// Adds the bytes of one CRYPTO frame (a retransmission overwrites the
    /// same bytes).
    pub fn add(&mut self, offset: u64, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        let Some(end) = offset.checked_add(data.len() as u64) else {
            self.overflow = true;
            return;
        };
        if end > MAX_CRYPTO as u64 {
            self.overflow = true;
            return;
        }
        let (start, end) = (offset as u32, end as u32);
        // Merge with every piece it overlaps or touches.
        let first = self.ranges.partition_point(|r| r.1 < start);
        let last = self.ranges.partition_point(|r| r.0 <= end);
        let merged = if first < last {
            (
                start.min(self.ranges[first].0),
                end.max(self.ranges[last - 1].1),
            )
        } else {
            (start, end)
        };
        if first == last && self.ranges.len() >= MAX_RANGES {
            self.overflow = true;
            return;
        }
        if self.buf.len() < end as usize {
            self.buf.resize(end as usize, 0);
        }
        self.buf[start as usize..end as usize].copy_from_slice(data);
        self.ranges.splice(first..last, [merged]);
    }

    /// The bytes from offset 0 with no hole.
    pub fn contiguous(&self) -> &[u8] {
        match self.ranges.first() {
            Some(&(0, end)) => &self.buf[..end as usize],
            _ => &[],
        }
    }

    pub fn heap_bytes(&self) -> usize {
        self.buf.capacity() + self.ranges.capacity() * std::mem::size_of::<(u32, u32)>()
    }

    /// Frees the buffer (the hello it held was parsed).
    pub fn release(&mut self) {
        self.buf = Vec::new();
        self.ranges = Vec::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Against a byte map: random pieces in random order give the same
    /// contiguous prefix as marking each byte.
    #[test]
    fn reassembly_matches_a_byte_map() {
        let data: Vec<u8> = (0..3000u32).map(|i| (i * 7 + 3) as u8).collect();
        let mut seed = 0x9e3779b97f4a7c15u64;
        let mut rnd = |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        for _ in 0..200 {
            let mut c = Crypto::default();
            let mut have = vec![false; data.len()];
            for _ in 0..rnd(40) + 1 {
                let s = rnd(data.len());
                let e = (s + rnd(400) + 1).min(data.len());
                c.add(s as u64, &data[s..e]);
                if !c.overflow {
                    have[s..e].iter_mut().for_each(|h| *h = true);
                }
                let n = have.iter().position(|h| !h).unwrap_or(have.len());
                if !c.overflow {
                    assert_eq!(c.contiguous(), &data[..n]);
                }
                assert!(c.ranges.len() <= MAX_RANGES);
                assert!(c.ranges.windows(2).all(|w| w[0].1 < w[1].0));
            }
        }
    }

    #[test]
    fn caps_hold() {
        let mut c = Crypto::default();
        c.add(MAX_CRYPTO as u64 - 1, &[1, 2]);
        assert!(c.overflow && c.contiguous().is_empty());
        let mut c = Crypto::default();
        c.add(u64::MAX, &[1]);
        assert!(c.overflow);
        let mut c = Crypto::default();
        for i in 0..MAX_RANGES as u64 + 5 {
            c.add(1 + i * 3, &[1]);
        }
        assert!(c.overflow);
        assert_eq!(c.ranges.len(), MAX_RANGES);
    }

    #[test]
    fn frames_are_walked() {
        // PADDING, PING, CRYPTO(off 5, "ab"), ACK(ECN) with one range, CLOSE.
        let p = [
            0, 0, 1, 6, 5, 2, b'a', b'b', 3, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0x1c, 0x41, 0x78, 6, 0,
        ];
        let mut got = Vec::new();
        walk(&p, |f| got.push(f)).unwrap();
        assert_eq!(
            got,
            [
                Frame::Other,
                Frame::Other,
                Frame::Crypto {
                    offset: 5,
                    data: b"ab"
                },
                Frame::Other,
                Frame::Close {
                    code: 0x178,
                    app: false
                }
            ]
        );
        assert_eq!(walk(&[0x08, 0], |_| ()), Err(Malformed));
        assert_eq!(walk(&[0x06, 0, 9, 1], |_| ()), Err(Malformed));
        assert_eq!(walk(&[0x02, 0, 0, 0x3f, 0], |_| ()), Err(Malformed));
    }
}
