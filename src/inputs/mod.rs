//! Device and app knowledge that does not come off the wire: DHCP lease
//! files, RADIUS accounting, MDM inventory, the app catalog and app
//! lifecycle events. Each adapter reads one file into owned values; the
//! correlator alone uses them.
//!
//! Every loader sniffs the file's shape, skips a malformed entry with a
//! [`LoadError`] naming the file and line (so the caller can continue when
//! told to), and fails outright only when the file cannot be read or is
//! none of the shapes it knows.

pub mod app_events;
pub mod bypass;
pub mod catalog;
mod jsondoc;
pub mod leases;
pub mod mdm;
pub mod proxylog;
pub mod radius;

use std::fmt;
use std::path::Path;

/// Largest input file read (inventories and lease files are text; a larger
/// one is refused rather than read into memory).
pub const MAX_INPUT_BYTES: u64 = 512 << 20;

const INPUT_BOUND: crate::bounded::Bound = crate::bounded::Bound {
    limit: MAX_INPUT_BYTES,
    what: "an input file (lease file, RADIUS detail, inventory, catalog or app events)",
    fix: "split it, or export only the recent part",
};

/// A problem in an input file, printed as `FILE:LINE: message` (or
/// `FILE: message` when no line applies).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadError {
    pub file: String,
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(l) => write!(f, "{}:{}: {}", self.file, l, self.message),
            None => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

impl std::error::Error for LoadError {}

/// What a loader read: the good entries, and one error per entry it skipped.
#[derive(Clone, Debug, PartialEq)]
pub struct Loaded<T> {
    pub items: Vec<T>,
    pub errors: Vec<LoadError>,
    /// What was ignored without losing an entry (an unknown key, once per
    /// key per file): printed, never fatal.
    pub warnings: Vec<LoadError>,
}

impl<T> Default for Loaded<T> {
    fn default() -> Self {
        Loaded {
            items: Vec::new(),
            errors: Vec::new(),
            warnings: Vec::new(),
        }
    }
}

/// Reads a whole input file as UTF-8 text, with the size cap (a device or
/// FIFO is refused, see [`crate::bounded`]).
pub fn read_text(path: &Path) -> Result<String, LoadError> {
    let err = |message: String| LoadError {
        file: path.display().to_string(),
        line: None,
        message,
    };
    let bytes = crate::bounded::read_file(path, &INPUT_BOUND).map_err(|e| {
        // The message starts with the path, which LoadError prints itself.
        let prefix = format!("{}: ", path.display());
        err(e.strip_prefix(&prefix).unwrap_or(&e).to_string())
    })?;
    String::from_utf8(bytes).map_err(|e| {
        err(format!(
            "not UTF-8 text (bad byte at offset {})",
            e.utf8_error().valid_up_to()
        ))
    })
}

/// `aa:bb:cc:dd:ee:ff`, `AA-BB-CC-DD-EE-FF`, `aabb.ccdd.eeff` or
/// `aabbccddeeff` (RADIUS, Jamf and Intune each write MACs their own way).
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let hex: Vec<u8> = s
        .trim()
        .bytes()
        .filter(|b| !matches!(b, b':' | b'-' | b'.'))
        .collect();
    if hex.len() != 12 {
        return None;
    }
    let mut m = [0u8; 6];
    for (i, pair) in hex.chunks(2).enumerate() {
        let s = std::str::from_utf8(pair).ok()?;
        m[i] = u8::from_str_radix(s, 16).ok()?;
    }
    Some(m)
}

/// A locally administered MAC (second hex digit 2, 6, A or E): iOS's
/// private per-network Wi-Fi address.
pub fn is_private_mac(m: [u8; 6]) -> bool {
    m[0] & 0x02 != 0
}

/// Byte flips, insertions and cuts of an example file, 300 of them from a
/// fixed xorshift sequence, each handed to `check` (the loaders' tests: no
/// panic on any of them).
#[cfg(test)]
pub(crate) fn for_each_mutation(original: &str, mut check: impl FnMut(&str)) {
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for _ in 0..300 {
        let mut b = original.as_bytes().to_vec();
        for _ in 0..1 + next() % 4 {
            let at = (next() % b.len() as u64) as usize;
            match next() % 3 {
                0 => b[at] = b"{}[]\":,0\\ae"[(next() % 11) as usize],
                1 => b.insert(at, b"{[\"\\"[(next() % 4) as usize]),
                _ => b.truncate(at),
            }
            if b.is_empty() {
                break;
            }
        }
        check(&String::from_utf8_lossy(&b));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_in_every_vendor_spelling() {
        let want = Some([0xaa, 0xbb, 0xcc, 0x0d, 0xee, 0xff]);
        for s in [
            "aa:bb:cc:0d:ee:ff",
            "AA-BB-CC-0D-EE-FF",
            "aabb.cc0d.eeff",
            "AABBCC0DEEFF",
        ] {
            assert_eq!(parse_mac(s), want, "{s}");
        }
        for s in [
            "",
            "aa:bb:cc:dd:ee",
            "zz:bb:cc:dd:ee:ff",
            "aa:bb:cc:dd:ee:ff:00",
        ] {
            assert_eq!(parse_mac(s), None, "{s}");
        }
        assert!(is_private_mac([0x02, 0, 0, 0, 0, 0]));
        assert!(is_private_mac([0xde, 0, 0, 0, 0, 0]));
        assert!(!is_private_mac([0x08, 0, 0x27, 0, 0, 0]));
    }
}
