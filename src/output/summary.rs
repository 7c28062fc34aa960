//! The end-of-run summary `replay` prints on standard error when that is a
//! terminal: records by type, detections by pattern and severity, and the
//! main blind spots (from the run's `coverage` record). Counted from the
//! records the sink writes, so it says what the output holds.

use crate::record::{CoverageRecord, Record, Share};
use std::collections::BTreeMap;

#[derive(Default)]
pub struct Tally {
    records: BTreeMap<&'static str, u64>,
    /// (pattern, severity) → detections.
    detections: BTreeMap<(&'static str, &'static str), u64>,
    coverage: Option<Box<CoverageRecord>>,
}

impl Tally {
    pub fn add(&mut self, batch: &[Record]) {
        for r in batch {
            *self.records.entry(r.kind()).or_default() += 1;
            match r {
                Record::Detection(d) => {
                    *self
                        .detections
                        .entry((d.pattern, super::severity(d.score)))
                        .or_default() += 1;
                }
                Record::Coverage(c) => self.coverage = Some(c.clone()),
                _ => {}
            }
        }
    }

    /// The summary's lines.
    pub fn lines(&self, output: &str) -> Vec<String> {
        let total: u64 = self.records.values().sum();
        let by_type = join(self.records.iter().map(|(k, n)| format!("{k} {n}")));
        let mut lines = vec![format!(
            "blindspot: {total} records to {output}{}",
            if by_type.is_empty() {
                String::new()
            } else {
                format!(": {by_type}")
            }
        )];
        if self.detections.is_empty() {
            lines.push("blindspot: detections: none".into());
        } else {
            lines.push(format!(
                "blindspot: detections: {}",
                join(
                    self.detections
                        .iter()
                        .map(|((p, sev), n)| format!("{p} ({sev}) {n}"))
                )
            ));
        }
        if let Some(c) = &self.coverage {
            let pct = |s: &Share| match s.share {
                Some(x) => format!("{:.1} % ({} of {})", x * 100.0, s.count, s.of),
                None => "n/a (none)".into(),
            };
            lines.push(format!(
                "blindspot: blind spots: TLS certificate hidden {}, ECH {}, QUIC {}, flows without a device {}",
                pct(&c.tls_certificate_hidden),
                pct(&c.tls_ech),
                pct(&c.quic),
                pct(&c.flows_without_device),
            ));
            lines.push(format!(
                "blindspot: devices: {} MACs, {} private of which {} unmapped, {} without an MDM record; capture drops {}, damaged inputs {}",
                c.devices.macs,
                c.devices.private_macs,
                c.devices.private_macs_unmapped,
                c.devices.macs_without_mdm,
                c.capture_drops,
                c.damaged_inputs
            ));
        }
        lines
    }

    pub fn print(&self, output: &str) {
        for l in self.lines(output) {
            eprintln!("{l}");
        }
    }
}

fn join(parts: impl Iterator<Item = String>) -> String {
    parts.collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::StatsRecord;

    #[test]
    fn counts_what_was_written() {
        let mut t = Tally::default();
        let stats = Record::Stats(Box::new(StatsRecord {
            kind: "stats",
            ..StatsRecord::default()
        }));
        t.add(&[stats.clone(), stats]);
        let l = t.lines("out.jsonl");
        assert_eq!(l[0], "blindspot: 2 records to out.jsonl: stats 2");
        assert_eq!(l[1], "blindspot: detections: none");
        assert_eq!(l.len(), 2, "no coverage record, no blind-spot line");
    }
}
