//! The correlator: the single owner of cross-flow state.
//!
//! Workers send it their finished records; it is the one place where device
//! state (DHCP, leases, MDM) will be joined onto records, so it runs on one
//! thread. Today it counts records by type and serialises them into blocks of
//! JSON Lines for the sink.

use crate::record::Record;
use std::collections::BTreeMap;

/// Serialised lines are handed to the sink in blocks of about this size.
pub const BLOCK_BYTES: usize = 256 << 10;

#[derive(Default)]
pub struct Correlator {
    block: Vec<u8>,
    pub counts: BTreeMap<&'static str, u64>,
}

impl Correlator {
    pub fn new() -> Self {
        Correlator {
            block: Vec::with_capacity(BLOCK_BYTES + 4096),
            counts: BTreeMap::new(),
        }
    }

    /// Adds records; returns a full block when one is ready.
    pub fn push(&mut self, records: impl IntoIterator<Item = Record>) -> Option<Vec<u8>> {
        for r in records {
            *self.counts.entry(r.kind()).or_default() += 1;
            r.write_json(&mut self.block);
        }
        if self.block.len() >= BLOCK_BYTES {
            return Some(self.take());
        }
        None
    }

    /// Whatever is buffered, even a partial block.
    pub fn take(&mut self) -> Vec<u8> {
        std::mem::replace(&mut self.block, Vec::with_capacity(BLOCK_BYTES + 4096))
    }

    pub fn has_pending(&self) -> bool {
        !self.block.is_empty()
    }
}
