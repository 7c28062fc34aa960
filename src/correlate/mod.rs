//! The correlator: the single owner of cross-flow state.
//!
//! Workers send it their finished records; it is the one place where device
//! state (DHCP, leases, MDM) will be joined onto records, so it runs on one
//! thread. Today it counts records by type and serialises them into blocks of
//! JSON Lines for the sink.

pub mod inputs;
pub mod inspection;

use crate::record::Record;
use inspection::Inspection;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Serialised lines are handed to the sink in blocks of about this size.
pub const BLOCK_BYTES: usize = 256 << 10;

#[derive(Default)]
pub struct Correlator {
    block: Vec<u8>,
    inspection: Arc<Inspection>,
    pub counts: BTreeMap<&'static str, u64>,
    /// TLS sessions by outcome and TLS counters, for the stats record.
    pub tls: BTreeMap<&'static str, u64>,
}

impl Correlator {
    pub fn new(inspection: Arc<Inspection>) -> Self {
        Correlator {
            block: Vec::with_capacity(BLOCK_BYTES + 4096),
            inspection,
            counts: BTreeMap::new(),
            tls: BTreeMap::new(),
        }
    }

    /// Adds records to the pending block.
    pub fn push(&mut self, records: impl IntoIterator<Item = Record>) {
        for mut r in records {
            if let Record::Tls(t) = &mut r {
                if let Some(chain) = &t.cert
                    && let Some(ca) = self.inspection.matches(chain)
                {
                    t.inspected = Some(true);
                    t.inspection_ca = Some(ca.name.clone());
                }
                let mut count = |k: &'static str, yes: bool| {
                    if yes {
                        *self.tls.entry(k).or_default() += 1;
                    }
                };
                count(t.outcome.name(), true);
                count("sslv2_hellos", t.sslv2_hello);
                count("handshake_overflow", t.handshake_overflow);
                count("connect_tunnels", t.proxy_connect.is_some());
                count("inspected", t.inspected == Some(true));
                count("certificate_hidden", t.inspected.is_none());
                count("ech", t.ech);
            }
            *self.counts.entry(r.kind()).or_default() += 1;
            r.write_json(&mut self.block);
        }
    }

    /// The pending block, once it has reached [`BLOCK_BYTES`].
    pub fn full_block(&mut self) -> Option<Vec<u8>> {
        (self.block.len() >= BLOCK_BYTES).then(|| self.take())
    }

    /// Whatever is buffered, even a partial block.
    pub fn take(&mut self) -> Vec<u8> {
        std::mem::replace(&mut self.block, Vec::with_capacity(BLOCK_BYTES + 4096))
    }

    /// Completes a stats record with the record counts (itself included)
    /// and the TLS counters.
    pub fn fill_stats(&self, stats: &mut crate::record::StatsRecord) {
        stats.records = self.counts.clone();
        *stats.records.entry("stats").or_default() += 1;
        stats.tls = self.tls.clone();
    }

    pub fn has_pending(&self) -> bool {
        !self.block.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::StatsRecord;

    /// Regression: a push that filled a block once handed the block back
    /// through its return value, and callers that ignored it lost records.
    #[test]
    fn no_record_is_lost_across_block_boundaries() {
        let mut c = Correlator::new(Arc::default());
        let mut written = Vec::new();
        let rec = || {
            Record::Stats(Box::new(StatsRecord {
                kind: "stats",
                ..StatsRecord::default()
            }))
        };
        for _ in 0..3000 {
            c.push([rec()]);
            if let Some(b) = c.full_block() {
                written.extend_from_slice(&b);
            }
        }
        c.push([rec()]);
        written.extend_from_slice(&c.take());
        assert_eq!(written.iter().filter(|b| **b == b'\n').count(), 3001);
        assert_eq!(c.counts["stats"], 3001);
    }
}
