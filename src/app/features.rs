//! First-payload features, the inputs of AN1717's `opaque_encrypted_channel`.
//!
//! Computed over the first `first_payload_bytes` bytes of each direction (the
//! in-order TCP stream, or the first UDP datagrams). The tests follow the
//! exemptions published for fully-encrypted traffic detection (Wu et al.,
//! "How the Great Firewall of China Detects and Blocks Fully Encrypted
//! Traffic", USENIX Security 2023): a random byte stream has a mean of about
//! 4 set bits per byte, few printable bytes and no long printable run.

use serde::{Deserialize, Serialize};

/// (Deserialize: fleet mode reads them back from the stream, `fleet/wire.rs`.)
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct PayloadFeatures {
    /// Bytes the features were computed over.
    pub len: u32,
    /// Shannon entropy, bits per byte (0–8).
    pub entropy: f64,
    /// Mean number of set bits per byte (0–8; random data ≈ 4).
    pub popcount: f64,
    /// Share of bytes in printable ASCII 0x20–0x7e (0–1).
    pub printable_frac: f64,
    /// Leading bytes that are printable ASCII.
    pub printable_prefix: u32,
    /// Longest run of consecutive printable ASCII bytes.
    pub printable_run: u32,
}

/// Set bits of each byte value (the baseline x86-64 target has no popcnt
/// instruction, and a bit-trick count per histogram bin was the largest
/// single cost here).
const POPCOUNT: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = (i as u8).count_ones() as u8;
        i += 1;
    }
    t
};

fn printable(b: u8) -> bool {
    (0x20..=0x7e).contains(&b)
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// `c · log2(c)` for the counts a default-sized sample can have, computed
/// once: entropy = log2(n) − Σ c·log2(c) / n needs no logarithm per flow.
fn clog2c_table() -> &'static [f64] {
    static TABLE: std::sync::OnceLock<Vec<f64>> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| (0..=4096u32).map(clog2c_exact).collect())
}

fn clog2c_exact(c: u32) -> f64 {
    if c == 0 {
        0.0
    } else {
        c as f64 * (c as f64).log2()
    }
}

pub fn features(data: &[u8]) -> Option<PayloadFeatures> {
    if data.is_empty() {
        return None;
    }
    let (printable_prefix, printable_run) = printable_runs(data);
    let Sums {
        bits,
        printable: printable_n,
        clog2c,
    } = histogram_sums(data);
    let n = data.len() as f64;
    let entropy = n.log2() - clog2c / n;
    Some(PayloadFeatures {
        len: data.len() as u32,
        entropy: round3(entropy.max(0.0)),
        popcount: round3(bits as f64 / n),
        printable_frac: round3(printable_n as f64 / n),
        printable_prefix,
        printable_run,
    })
}

/// What the byte counts add up to.
struct Sums {
    /// Set bits over all bytes.
    bits: u64,
    /// Printable bytes.
    printable: u64,
    /// Σ c·log₂c over the byte values' counts c.
    clog2c: f64,
}

/// Counts the bytes, then sums over the 256 counts in one pass. Four
/// interleaved 16-bit tables per 64 KiB piece break the store-to-load
/// chains of repeated bytes and stay small to clear. The float sum is four
/// local accumulators: one long chain of dependent additions (or an array
/// the compiler keeps in memory) is slower than the lookups it adds up.
fn histogram_sums(data: &[u8]) -> Sums {
    let table = clog2c_table();
    let mut hist = [0u32; 256];
    for piece in data.chunks(1 << 16) {
        let mut h4 = [[0u16; 256]; 4];
        let mut quads = piece.chunks_exact(4);
        for q in &mut quads {
            h4[0][q[0] as usize] += 1;
            h4[1][q[1] as usize] += 1;
            h4[2][q[2] as usize] += 1;
            h4[3][q[3] as usize] += 1;
        }
        for &b in quads.remainder() {
            h4[0][b as usize] += 1;
        }
        for (i, h) in hist.iter_mut().enumerate() {
            *h += u32::from(h4[0][i])
                + u32::from(h4[1][i])
                + u32::from(h4[2][i])
                + u32::from(h4[3][i]);
        }
    }
    // Counts fit the table when the sample does; the exact c·log₂c (a
    // function call, which makes the compiler keep the sums in memory)
    // only for larger configured samples.
    let (bits, clog2c) = if data.len() < table.len() {
        bin_sums(&hist, |c| table[c as usize])
    } else {
        bin_sums(&hist, clog2c_exact)
    };
    Sums {
        bits,
        printable: hist[0x20..=0x7e].iter().map(|&c| u64::from(c)).sum(),
        clog2c,
    }
}

/// Σ c·popcount(byte) and Σ f(c) over the 256 counts, the float sum in
/// four local accumulators.
#[inline(always)]
fn bin_sums(hist: &[u32; 256], f: impl Fn(u32) -> f64) -> (u64, f64) {
    let mut bits = 0u64;
    let (mut a0, mut a1, mut a2, mut a3) = (0f64, 0f64, 0f64, 0f64);
    for (i, c) in hist.chunks_exact(4).enumerate() {
        let b = 4 * i;
        bits += u64::from(c[0]) * u64::from(POPCOUNT[b])
            + u64::from(c[1]) * u64::from(POPCOUNT[b + 1])
            + u64::from(c[2]) * u64::from(POPCOUNT[b + 2])
            + u64::from(c[3]) * u64::from(POPCOUNT[b + 3]);
        a0 += f(c[0]);
        a1 += f(c[1]);
        a2 += f(c[2]);
        a3 += f(c[3]);
    }
    (bits, (a0 + a1) + (a2 + a3))
}

/// Bit `i` set when byte `i` of the block (at most 64 bytes) is printable.
fn printable_mask(block: &[u8]) -> u64 {
    let mut words = block.chunks_exact(8);
    let mut m = 0u64;
    for (k, w) in (&mut words).enumerate() {
        let mut b = [0u8; 8];
        b.copy_from_slice(w);
        m |= printable8(u64::from_le_bytes(b)) << (8 * k);
    }
    let done = block.len() - words.remainder().len();
    for (i, &x) in words.remainder().iter().enumerate() {
        m |= u64::from(printable(x)) << (done + i);
    }
    m
}

/// Eight bytes at once (SWAR): bit `i` of the result is set when byte `i`
/// (little-endian) is in 0x20..=0x7e.
fn printable8(w: u64) -> u64 {
    const HI: u64 = 0x8080_8080_8080_8080;
    let lo7 = w | HI; // each byte's low 7 bits, with a guard bit against borrows
    let ge_20 = lo7.wrapping_sub(0x2020_2020_2020_2020); // high bit: low7 >= 0x20
    let eq_7f = lo7.wrapping_sub(0x7f7f_7f7f_7f7f_7f7f); // high bit: low7 == 0x7f
    let p = ge_20 & !eq_7f & !w & HI; // and the byte's own high bit clear
    // Gather the eight high bits into the top byte: bit 8i+7 lands on 56+i.
    ((p >> 7).wrapping_mul(0x0102_0408_1020_4080)) >> 56
}

/// Leading printable bytes and the longest printable run, 64 bytes at a
/// time from each block's mask: a run is inside one block, or carried from
/// the blocks before into this one's leading bits.
fn printable_runs(data: &[u8]) -> (u32, u32) {
    let mut prefix = None;
    let mut run = 0u32; // the run that reaches the end of the blocks so far
    let mut best = 0u32;
    for (k, block) in data.chunks(64).enumerate() {
        let m = printable_mask(block);
        let len = block.len() as u32;
        // Bits past `len` are clear, so `lead` <= `len`.
        let lead = m.trailing_ones();
        if lead == len {
            run += len;
            best = best.max(run);
            continue;
        }
        if prefix.is_none() {
            prefix = Some(k as u32 * 64 + lead);
        }
        best = best.max(run + lead);
        // The longest run of set bits: r rounds of `x &= x >> 1` clear it.
        if m.count_ones() > best {
            let (mut x, mut r) = (m, 0);
            while x != 0 {
                x &= x >> 1;
                r += 1;
            }
            best = best.max(r);
        }
        // The run reaching the block's last byte goes on into the next.
        run = (m << (64 - len)).leading_ones();
    }
    (prefix.unwrap_or(data.len() as u32), best)
}

/// Collects the first `cap` bytes of one direction.
#[derive(Clone, Debug, Default)]
pub struct Sampler {
    buf: Vec<u8>,
    cap: usize,
    done: bool,
}

impl Sampler {
    pub fn new(cap: usize) -> Self {
        Sampler {
            buf: Vec::new(),
            cap,
            done: cap == 0,
        }
    }

    pub fn wants(&self) -> bool {
        !self.done
    }

    /// Bytes held on the heap.
    pub fn heap_bytes(&self) -> usize {
        self.buf.capacity()
    }

    pub fn feed(&mut self, data: &[u8]) {
        if self.done {
            return;
        }
        let take = (self.cap - self.buf.len()).min(data.len());
        if self.buf.capacity() == 0 {
            // One allocation for the whole sample.
            self.buf
                .reserve_exact(self.cap.min(data.len().max(256)).max(take));
        }
        self.buf.extend_from_slice(&data[..take]);
        if self.buf.len() >= self.cap {
            self.done = true;
        }
    }

    /// A gap before any byte was sampled leaves nothing to measure; a gap
    /// later ends the sample (the bytes after it are not "first" bytes).
    pub fn gap(&mut self) {
        self.done = true;
    }

    /// The bytes sampled so far.
    pub fn bytes(&self) -> &[u8] {
        &self.buf
    }

    pub fn features(&self) -> Option<PayloadFeatures> {
        features(&self.buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_and_random_look_different() {
        let text = features(b"GET / HTTP/1.1\r\nHost: example.org\r\n\r\n").unwrap();
        assert_eq!(text.printable_prefix, 14);
        assert!(text.printable_frac > 0.8);
        assert!(text.entropy < 5.0);
        // A fixed pseudo-random sequence (xorshift), 1024 bytes.
        let mut x = 0x1234_5678u32;
        let rnd: Vec<u8> = (0..1024)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        let r = features(&rnd).unwrap();
        assert!(r.entropy > 7.7, "{r:?}");
        assert!((3.4..=4.6).contains(&r.popcount), "{r:?}");
        assert!(r.printable_frac < 0.5);
    }

    #[test]
    fn exact_values_on_small_inputs() {
        let f = features(&[0x00, 0xff, 0x00, 0xff]).unwrap();
        assert_eq!(
            (f.entropy, f.popcount, f.printable_frac, f.printable_prefix),
            (1.0, 4.0, 0.0, 0)
        );
        let f = features(b"aaaa").unwrap();
        assert_eq!(
            (f.entropy, f.printable_frac, f.printable_run),
            (0.0, 1.0, 4)
        );
        assert!(features(&[]).is_none());
    }

    /// The plain definitions, byte by byte.
    fn reference(data: &[u8]) -> PayloadFeatures {
        let n = data.len() as f64;
        let mut hist = [0u64; 256];
        for &b in data {
            hist[b as usize] += 1;
        }
        let entropy: f64 = hist
            .iter()
            .filter(|c| **c > 0)
            .map(|&c| {
                let p = c as f64 / n;
                -p * p.log2()
            })
            .sum();
        let (mut run, mut best) = (0u32, 0u32);
        for &b in data {
            run = if printable(b) { run + 1 } else { 0 };
            best = best.max(run);
        }
        PayloadFeatures {
            len: data.len() as u32,
            entropy: round3(entropy.max(0.0)),
            popcount: round3(data.iter().map(|b| b.count_ones() as f64).sum::<f64>() / n),
            printable_frac: round3(data.iter().filter(|b| printable(**b)).count() as f64 / n),
            printable_prefix: data.iter().take_while(|b| printable(**b)).count() as u32,
            printable_run: best,
        }
    }

    #[test]
    fn equals_the_plain_definitions() {
        // Lengths around the 64-byte blocks and the 64 KiB pieces; byte
        // mixes from all-printable to random; runs across block edges.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let lens = [
            1, 2, 63, 64, 65, 127, 128, 129, 200, 1023, 1024, 4096, 65_535, 65_536, 70_001,
        ];
        for (i, &len) in lens.iter().enumerate() {
            for mix in 0..4u64 {
                let data: Vec<u8> = (0..len)
                    .map(|_| {
                        let r = next();
                        match mix {
                            0 => b'a' + (r % 26) as u8,
                            1 if r % 97 == 0 => b'\n',
                            1 => b' ' + (r % 95) as u8,
                            2 => r as u8,
                            _ if (r >> 8) % 5 == 0 => (r % 32) as u8,
                            _ => b'A' + (r % 40) as u8,
                        }
                    })
                    .collect();
                let got = features(&data).unwrap();
                let want = reference(&data);
                assert_eq!(got.len, want.len, "len {len} mix {mix} case {i}");
                assert_eq!(
                    (
                        got.popcount,
                        got.printable_frac,
                        got.printable_prefix,
                        got.printable_run
                    ),
                    (
                        want.popcount,
                        want.printable_frac,
                        want.printable_prefix,
                        want.printable_run
                    ),
                    "len {len} mix {mix}"
                );
                assert!(
                    (got.entropy - want.entropy).abs() <= 0.0011,
                    "len {len} mix {mix}: {got:?} {want:?}"
                );
            }
        }
    }

    #[test]
    fn eight_bytes_at_once() {
        for b in 0..=255u8 {
            for pos in 0..8 {
                let mut w = [b'a'; 8];
                w[pos] = b;
                let want = 0xff & !(u64::from(!printable(b)) << pos);
                assert_eq!(
                    printable8(u64::from_le_bytes(w)),
                    want,
                    "byte {b:#x} at {pos}"
                );
            }
        }
    }

    #[test]
    fn sampler_stops_at_cap() {
        let mut s = Sampler::new(5);
        s.feed(b"abc");
        assert!(s.wants());
        s.feed(b"defgh");
        assert!(!s.wants());
        assert_eq!(s.features().unwrap().len, 5);
    }
}
