//! First-payload features, the inputs of AN1717's `opaque_encrypted_channel`.
//!
//! Computed over the first `first_payload_bytes` bytes of each direction (the
//! in-order TCP stream, or the first UDP datagrams). The tests follow the
//! exemptions published for fully-encrypted traffic detection (Wu et al.,
//! "How the Great Firewall of China Detects and Blocks Fully Encrypted
//! Traffic", USENIX Security 2023): a random byte stream has a mean of about
//! 4 set bits per byte, few printable bytes and no long printable run.

use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
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

fn printable(b: u8) -> bool {
    (0x20..=0x7e).contains(&b)
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// `c · log2(c)` for the counts a default-sized sample can have, computed
/// once: entropy = log2(n) − Σ c·log2(c) / n needs no logarithm per flow.
fn clog2c(c: u32) -> f64 {
    static TABLE: std::sync::OnceLock<Vec<f64>> = std::sync::OnceLock::new();
    let t = TABLE.get_or_init(|| {
        (0..=4096u32)
            .map(|c| {
                if c == 0 {
                    0.0
                } else {
                    c as f64 * (c as f64).log2()
                }
            })
            .collect()
    });
    match t.get(c as usize) {
        Some(v) => *v,
        None => c as f64 * (c as f64).log2(),
    }
}

pub fn features(data: &[u8]) -> Option<PayloadFeatures> {
    if data.is_empty() {
        return None;
    }
    // Four interleaved histograms break the store-to-load chains of
    // repeated bytes; the longest printable run is kept branch-free.
    let mut h4 = [[0u32; 256]; 4];
    let mut run = 0u32;
    let mut best_run = 0u32;
    let mut quads = data.chunks_exact(4);
    for q in &mut quads {
        for (k, &b) in q.iter().enumerate() {
            h4[k][b as usize] += 1;
            run = (run + 1) * printable(b) as u32;
            best_run = best_run.max(run);
        }
    }
    for &b in quads.remainder() {
        h4[0][b as usize] += 1;
        run = (run + 1) * printable(b) as u32;
        best_run = best_run.max(run);
    }
    let mut hist = [0u32; 256];
    for (i, h) in hist.iter_mut().enumerate() {
        *h = h4[0][i] + h4[1][i] + h4[2][i] + h4[3][i];
    }
    let mut bits = 0u64;
    let mut printable_n = 0u32;
    for (v, c) in hist.iter().enumerate() {
        bits += (v as u8).count_ones() as u64 * *c as u64;
        if printable(v as u8) {
            printable_n += c;
        }
    }
    let n = data.len() as f64;
    let sum: f64 = hist.iter().map(|c| clog2c(*c)).sum();
    let entropy = n.log2() - sum / n;
    Some(PayloadFeatures {
        len: data.len() as u32,
        entropy: round3(entropy.max(0.0)),
        popcount: round3(bits as f64 / n),
        printable_frac: round3(printable_n as f64 / n),
        printable_prefix: data.iter().take_while(|b| printable(**b)).count() as u32,
        printable_run: best_run,
    })
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
