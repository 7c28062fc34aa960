//! Does a first payload look fully encrypted? The exemption rules Wu et al.
//! measured the Great Firewall applying to fully encrypted traffic ("How
//! the Great Firewall of China Detects and Blocks Fully Encrypted
//! Traffic", USENIX Security 2023, §4), applied to the client's first
//! payload bytes, plus an entropy test. Random-looking bytes pass every
//! rule; text, headers and known protocols are exempted by one of them.
//!
//! | rule | exempt when |
//! |---|---|
//! | Ex1 | mean set bits per byte ≤ 3.4 or ≥ 4.6 (random data ≈ 4) |
//! | Ex2 | the first 6 bytes are all printable ASCII |
//! | Ex3 | more than 50 % of the bytes are printable ASCII |
//! | Ex4 | a run of more than 20 printable ASCII bytes |
//! | Ex5 | a known protocol was recognised (the flow's `service`) |
//! | entropy | Shannon entropy below `ratio` × the most the sample length allows, min(8, log2 n) bits/byte |

use crate::app::features::PayloadFeatures;

/// Why a sample is not fully encrypted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exemption {
    KnownProtocol,
    TooShort,
    Popcount,
    PrintablePrefix,
    PrintableShare,
    PrintableRun,
    Entropy,
}

impl Exemption {
    /// The rule's name (README).
    pub fn name(self) -> &'static str {
        self.names().0
    }

    /// Its counter in `stats.detections`.
    pub fn counter(self) -> &'static str {
        self.names().1
    }

    fn names(self) -> (&'static str, &'static str) {
        match self {
            Exemption::KnownProtocol => ("known_protocol", "opaque_exempt_known_protocol"),
            Exemption::TooShort => ("too_short", "opaque_exempt_too_short"),
            Exemption::Popcount => ("popcount", "opaque_exempt_popcount"),
            Exemption::PrintablePrefix => ("printable_prefix", "opaque_exempt_printable_prefix"),
            Exemption::PrintableShare => ("printable_share", "opaque_exempt_printable_share"),
            Exemption::PrintableRun => ("printable_run", "opaque_exempt_printable_run"),
            Exemption::Entropy => ("entropy", "opaque_exempt_entropy"),
        }
    }
}

/// The first rule that exempts the sample, or `None` when it looks fully
/// encrypted.
pub fn exemption(
    f: &PayloadFeatures,
    service: Option<&str>,
    min_bytes: u32,
    entropy_ratio: f64,
) -> Option<Exemption> {
    let max = (f.len as f64).log2().min(8.0);
    let rules = [
        (service.is_some(), Exemption::KnownProtocol),
        (f.len < min_bytes, Exemption::TooShort),
        (f.popcount <= 3.4 || f.popcount >= 4.6, Exemption::Popcount),
        (f.printable_prefix >= 6, Exemption::PrintablePrefix),
        (f.printable_frac > 0.5, Exemption::PrintableShare),
        (f.printable_run > 20, Exemption::PrintableRun),
        (f.entropy < entropy_ratio * max, Exemption::Entropy),
    ];
    rules.iter().find(|(hit, _)| *hit).map(|(_, e)| *e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::features::features;

    fn exemption(
        f: &PayloadFeatures,
        service: Option<&str>,
        min: u32,
        ratio: f64,
    ) -> Option<&'static str> {
        super::exemption(f, service, min, ratio).map(Exemption::name)
    }

    fn random(n: usize) -> Vec<u8> {
        let mut x = 0x9e37_79b9u32;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                (x >> 11) as u8
            })
            .collect()
    }

    #[test]
    fn random_bytes_pass_every_rule() {
        for n in [64, 600, 1024] {
            let f = features(&random(n)).unwrap();
            assert_eq!(exemption(&f, None, 32, 0.9), None, "{n}: {f:?}");
        }
    }

    #[test]
    fn each_rule_exempts() {
        let f = |b: &[u8]| features(b).unwrap();
        let r = random(600);
        assert_eq!(
            exemption(&f(&r), Some("ssl"), 32, 0.9),
            Some("known_protocol")
        );
        assert_eq!(exemption(&f(&r[..16]), None, 32, 0.9), Some("too_short"));
        assert_eq!(exemption(&f(&[0u8; 100]), None, 32, 0.9), Some("popcount"));
        let mut p = r.clone();
        p[..6].copy_from_slice(b"HELLO!");
        assert_eq!(exemption(&f(&p), None, 32, 0.9), Some("printable_prefix"));
        let mut run = r.clone();
        run[100..125].copy_from_slice(b"abcdefghijklmnopqrstuvwxy");
        assert_eq!(exemption(&f(&run), None, 32, 0.9), Some("printable_run"));
        // Bytes with 4 bits set, few distinct values: balanced popcount,
        // nothing printable in a row, but low entropy.
        let low: Vec<u8> = (0..600).map(|i| [0x0f, 0xf0, 0x3c][i % 3]).collect();
        assert_eq!(exemption(&f(&low), None, 32, 0.9), Some("entropy"));
        let text = b"The quick brown fox jumps over the lazy dog, again and again.";
        assert_eq!(exemption(&f(text), None, 32, 0.9), Some("printable_prefix"));
    }
}
