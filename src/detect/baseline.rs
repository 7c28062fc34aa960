//! Baselines: what is normal per client fingerprint (JA4) and destination,
//! learnt from earlier `tls` and `flow` records by `blindspot baseline
//! build`, written as zstd-compressed JSON, read by `replay --baseline`.
//!
//! An entry keeps the sessions' inspection states, outcome mix, and the
//! spread of durations and payload sizes. It explains a long uninspected
//! session when the key was seen at least [`MIN_SESSIONS`] times, mostly
//! uninspected, and the session is no longer than 1.25 × the longest one
//! seen; it lowers a rejection detection's score when most of the key's
//! baseline sessions were rejections too.

use hashbrown::HashMap;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

/// Sessions a key needs before its baseline explains anything.
pub const MIN_SESSIONS: u64 = 3;
/// Most keys learnt; more are counted and left out.
pub const MAX_KEYS: usize = 1_000_000;
/// Samples kept per key for the quantiles.
const MAX_SAMPLES: usize = 4096;
/// TLS records waiting for their flow record.
const MAX_PENDING: usize = 1_000_000;
const FORMAT: u32 = 1;
/// Largest baseline file read (zstd-compressed; at [`MAX_KEYS`] keys one is
/// well under this).
pub const MAX_FILE_BYTES: u64 = 256 << 20;
/// Largest baseline once decompressed.
pub const MAX_JSON_BYTES: u64 = 1 << 30;
/// Longest record line `baseline build` reads (records are a few KiB).
const MAX_LINE_BYTES: u64 = 16 << 20;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Spread {
    pub p50: f64,
    pub p95: f64,
    pub max: f64,
}

impl Spread {
    fn of(v: &mut [f64]) -> Spread {
        if v.is_empty() {
            return Spread::default();
        }
        v.sort_by(f64::total_cmp);
        let at = |q: f64| v[((q * (v.len() - 1) as f64).round() as usize).min(v.len() - 1)];
        Spread {
            p50: at(0.5),
            p95: at(0.95),
            max: v[v.len() - 1],
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    pub ja4: String,
    pub destination: String,
    pub sessions: u64,
    /// `inspected`, `not_inspected`, `hidden` (chain not seen).
    pub inspection: BTreeMap<String, u64>,
    pub outcomes: BTreeMap<String, u64>,
    pub duration_s: Spread,
    pub payload_bytes: Spread,
}

impl Entry {
    pub fn rejection_share(&self) -> f64 {
        let r: u64 = [
            "client_rejected",
            "client_encrypted_alert",
            "client_aborted",
            "client_closed_after_handshake",
        ]
        .iter()
        .filter_map(|k| self.outcomes.get(*k))
        .sum();
        r as f64 / self.sessions.max(1) as f64
    }

    /// Does this entry explain an uninspected session of `duration` ns?
    pub fn explains_duration(&self, duration: u64) -> bool {
        let inspected = self.inspection.get("inspected").copied().unwrap_or(0);
        self.sessions >= MIN_SESSIONS
            && (inspected as f64) < 0.5 * self.sessions as f64
            && crate::time::nanos_to_secs_f64(duration) <= 1.25 * self.duration_s.max
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    blindspot_baseline: u32,
    entries: Vec<Entry>,
}

#[derive(Debug, Default)]
pub struct Baseline {
    entries: HashMap<(String, String), Entry>,
}

/// What `baseline build` read.
#[derive(Debug, Default)]
pub struct BuildReport {
    pub records: u64,
    pub sessions: u64,
    pub keys: usize,
    pub keys_over_cap: u64,
    pub pending_over_cap: u64,
    pub bad_lines: u64,
}

fn open(path: &Path) -> Result<Box<dyn BufRead>, String> {
    let f =
        std::fs::File::open(path).map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
    let r = crate::capture::pcap_file::decompressed(Box::new(f))
        .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
    Ok(Box::new(BufReader::with_capacity(256 << 10, r)))
}

/// What [`for_each_record`] read.
#[derive(Debug, Default, Clone, Copy)]
pub struct ReadCounts {
    /// Lines that were JSON.
    pub records: u64,
    /// Lines that were not (skipped).
    pub bad_lines: u64,
}

/// Reads record files written by `blindspot replay` or `capture` (JSON
/// Lines, plain, .zst or .gz) in order, one parsed line at a time, each
/// line bounded by 16 MiB: `baseline build` and `report` read through it.
pub fn for_each_record(
    files: &[std::path::PathBuf],
    mut each: impl FnMut(&serde_json::Value),
) -> Result<ReadCounts, String> {
    let mut counts = ReadCounts::default();
    for path in files {
        let mut r = open(path)?;
        let mut line = String::new();
        let mut n = 0u64;
        loop {
            line.clear();
            n += 1;
            // A line is read with a bound: a file with no newline (or
            // /dev/zero) is refused, not held in memory whole.
            match r.by_ref().take(MAX_LINE_BYTES + 1).read_line(&mut line) {
                Ok(0) => break,
                Ok(k) if k as u64 > MAX_LINE_BYTES => {
                    return Err(format!(
                        "{}:{n}: a line longer than {}: not a records file from `blindspot replay`",
                        path.display(),
                        crate::bounded::human(MAX_LINE_BYTES)
                    ));
                }
                Ok(_) => {}
                Err(e) => return Err(format!("{}:{n}: cannot read: {e}", path.display())),
            }
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str::<serde_json::Value>(&line) {
                Ok(v) => {
                    counts.records += 1;
                    each(&v);
                }
                Err(_) => counts.bad_lines += 1,
            }
        }
    }
    Ok(counts)
}

impl Baseline {
    /// A baseline of these entries (at most [`MAX_KEYS`]; a later entry
    /// of the same JA4 and destination replaces an earlier one).
    pub fn from_entries(entries: impl IntoIterator<Item = Entry>) -> Baseline {
        let mut b = Baseline::default();
        for e in entries {
            if b.entries.len() >= MAX_KEYS {
                break;
            }
            b.entries.insert((e.ja4.clone(), e.destination.clone()), e);
        }
        b
    }

    /// Every entry, in no particular order.
    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.entries.values()
    }

    pub fn get(&self, ja4: &str, dest: &str) -> Option<&Entry> {
        self.entries.get(&(ja4.to_string(), dest.to_string()))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Learns from record files (JSON Lines, plain, .zst or .gz).
    pub fn build(files: &[std::path::PathBuf]) -> Result<(Baseline, BuildReport), String> {
        struct Acc {
            entry: Entry,
            durations: Vec<f64>,
            bytes: Vec<f64>,
        }
        let mut rep = BuildReport::default();
        let mut acc: HashMap<(String, String), Acc> = HashMap::new();
        // flow_id → (ja4, destination, outcome, inspection state)
        let mut pending: HashMap<String, (String, String, String, &'static str)> = HashMap::new();
        let read = for_each_record(files, |v| {
            let s = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_string);
            match v.get("type").and_then(|t| t.as_str()) {
                Some("tls") => {
                    let (Some(id), Some(outcome)) = (s("flow_id"), s("outcome")) else {
                        return;
                    };
                    // Keyed exactly as the detector keys a session.
                    let name = s("sni")
                        .map(|n| super::normal_name(&n))
                        .or_else(|| s("proxy_connect").map(|c| super::connect_host(&c)));
                    let ip = s("dst_ip")
                        .and_then(|i| i.parse().ok())
                        .unwrap_or(std::net::IpAddr::from([0, 0, 0, 0]));
                    let port = v.get("dst_port").and_then(|p| p.as_u64()).unwrap_or(0) as u16;
                    let dest = super::destination_key(name.as_deref(), ip, port);
                    let insp = match v.get("inspected").and_then(|x| x.as_bool()) {
                        Some(true) => "inspected",
                        Some(false) => "not_inspected",
                        None => "hidden",
                    };
                    if pending.len() >= MAX_PENDING {
                        rep.pending_over_cap += 1;
                        return;
                    }
                    pending.insert(id, (s("ja4").unwrap_or_default(), dest, outcome, insp));
                }
                Some("flow") => {
                    let Some((ja4, dest, outcome, insp)) =
                        s("flow_id").and_then(|id| pending.remove(&id))
                    else {
                        return;
                    };
                    let dur = v.get("duration").and_then(|d| d.as_f64()).unwrap_or(0.0);
                    let bytes = ["orig", "resp"]
                        .iter()
                        .filter_map(|k| v.get(*k)?.get("payload_bytes")?.as_u64())
                        .sum::<u64>() as f64;
                    let key = (ja4.clone(), dest.clone());
                    if !acc.contains_key(&key) && acc.len() >= MAX_KEYS {
                        rep.keys_over_cap += 1;
                        return;
                    }
                    let a = acc.entry(key).or_insert_with(|| Acc {
                        entry: Entry {
                            ja4,
                            destination: dest,
                            ..Entry::default()
                        },
                        durations: Vec::new(),
                        bytes: Vec::new(),
                    });
                    rep.sessions += 1;
                    a.entry.sessions += 1;
                    *a.entry.inspection.entry(insp.to_string()).or_default() += 1;
                    *a.entry.outcomes.entry(outcome).or_default() += 1;
                    if a.durations.len() < MAX_SAMPLES {
                        a.durations.push(dur);
                        a.bytes.push(bytes);
                    }
                }
                _ => {}
            }
        })?;
        rep.records = read.records;
        rep.bad_lines = read.bad_lines;
        let mut b = Baseline::default();
        for (k, mut a) in acc {
            a.entry.duration_s = Spread::of(&mut a.durations);
            a.entry.payload_bytes = Spread::of(&mut a.bytes);
            b.entries.insert(k, a.entry);
        }
        rep.keys = b.entries.len();
        Ok((b, rep))
    }

    /// zstd-compressed JSON, entries sorted (the same input gives the same file).
    pub fn write(&self, path: &Path) -> Result<(), String> {
        let mut entries: Vec<Entry> = self.entries.values().cloned().collect();
        entries.sort_by(|a, b| (&a.ja4, &a.destination).cmp(&(&b.ja4, &b.destination)));
        let json = serde_json::to_vec(&File {
            blindspot_baseline: FORMAT,
            entries,
        })
        .map_err(|e| e.to_string())?;
        let z = zstd::encode_all(&json[..], 9).map_err(|e| e.to_string())?;
        std::fs::write(path, z).map_err(|e| format!("{}: cannot write: {e}", path.display()))
    }

    /// Reads a baseline file: at most [`MAX_FILE_BYTES`] compressed and
    /// [`MAX_JSON_BYTES`] once decompressed.
    pub fn load(path: &Path) -> Result<Baseline, String> {
        let place = path.display();
        let raw = crate::bounded::read_file(
            path,
            &crate::bounded::Bound {
                limit: MAX_FILE_BYTES,
                what: "a baseline file",
                fix: "build it from fewer records with `blindspot baseline build`",
            },
        )?;
        Self::from_bytes(&raw, &place.to_string())
    }

    /// A baseline file's bytes; `place` names the file in errors.
    pub fn from_bytes(raw: &[u8], place: &str) -> Result<Baseline, String> {
        let mut json = Vec::new();
        zstd::stream::read::Decoder::new(raw)
            .and_then(|mut d| d.by_ref().take(MAX_JSON_BYTES + 1).read_to_end(&mut json))
            .map_err(|e| {
                format!("{place}: not a baseline file (zstd: {e}); make one with `blindspot baseline build`")
            })?;
        if json.len() as u64 > MAX_JSON_BYTES {
            return Err(format!(
                "{place}: decompresses to more than the {} limit for a baseline: build it from fewer records with `blindspot baseline build`",
                crate::bounded::human(MAX_JSON_BYTES)
            ));
        }
        let f: File = serde_json::from_slice(&json).map_err(|e| {
            format!("{place}: not a baseline file ({e}); make one with `blindspot baseline build`")
        })?;
        if f.blindspot_baseline != FORMAT {
            return Err(format!(
                "{place}: baseline format {} is not {FORMAT}: build it again with this blindspot",
                f.blindspot_baseline
            ));
        }
        let mut b = Baseline::default();
        for e in f.entries {
            b.entries.insert((e.ja4.clone(), e.destination.clone()), e);
        }
        Ok(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_and_explanations() {
        let e = Entry {
            sessions: 4,
            inspection: BTreeMap::from([("not_inspected".into(), 4)]),
            outcomes: BTreeMap::from([("established".into(), 3), ("client_rejected".into(), 1)]),
            duration_s: Spread::of(&mut [10.0, 20.0, 40.0, 30.0]),
            ..Entry::default()
        };
        assert_eq!(
            e.duration_s,
            Spread {
                p50: 30.0,
                p95: 40.0,
                max: 40.0
            }
        );
        assert_eq!(e.rejection_share(), 0.25);
        assert!(e.explains_duration(50 * crate::time::NANOS_PER_SEC));
        assert!(!e.explains_duration(51 * crate::time::NANOS_PER_SEC));
        let inspected = Entry {
            inspection: BTreeMap::from([("inspected".into(), 4)]),
            ..e.clone()
        };
        assert!(!inspected.explains_duration(crate::time::NANOS_PER_SEC));
    }
}
