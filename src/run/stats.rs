//! Stats assembly, the same for replay and capture: the counters of the
//! decoder, fragment table and flow tables in one `stats` record, and the
//! `coverage` + `stats` pair the correlator writes (at the end of a replay,
//! every stats interval of a capture).

use crate::correlate::Correlator;
use crate::decode::Skip;
use crate::flow::table::TableStats;
use crate::record::{Record, StatsRecord};
use crate::time::Timestamp;
use std::collections::BTreeMap;

/// A stats record holding the decode, fragment and flow-table counters
/// (the packet counts, files and the correlator's counts are filled in by
/// the caller).
pub fn counters(
    d: &crate::decode::DecodeStats,
    fr: &crate::decode::defrag::DefragStats,
    table: &TableStats,
    now: Timestamp,
) -> StatsRecord {
    let mut skipped = BTreeMap::new();
    for s in Skip::ALL {
        skipped.insert(s.name(), d.skipped[s as usize]);
    }
    let tunnels = crate::decode::tunnel::Kind::ALL
        .iter()
        .map(|k| (k.name(), d.tunnels[*k as usize]))
        .collect();
    let fragments = BTreeMap::from([
        ("reassembled", d.fragments_reassembled),
        ("timed_out", fr.timed_out),
        ("dropped_cap", fr.dropped_cap),
        ("dropped_malformed", fr.dropped_malformed),
    ]);
    let flows = BTreeMap::from([
        ("created", table.created),
        ("ended_closed", table.ended[0]),
        ("ended_timeout", table.ended[1]),
        ("ended_reused", table.ended[2]),
        ("evicted", table.ended[3]),
        ("ended_end_of_input", table.ended[4]),
        ("active_max", table.active_max),
        ("late_packets", table.late_packets),
        ("evicted_memcap", table.evicted_memcap),
        ("closed_over_cap", table.closed_over_cap),
    ]);
    let reassembly = BTreeMap::from([
        ("gaps", table.reassembly_gaps),
        ("missed_bytes", table.reassembly_missed_bytes),
        ("stopped_parsers_done", table.reassembly_stopped),
    ]);
    StatsRecord {
        kind: "stats",
        ts: now,
        skipped,
        tunnels,
        fragments,
        flows,
        reassembly,
        drops: BTreeMap::from([("internal", 0)]),
        ..StatsRecord::default()
    }
}

/// The last records of a replay: the detections still open, coverage, then
/// stats (which counts it).
pub fn finish(corr: &mut Correlator, stats: &mut StatsRecord) {
    corr.finish_detections();
    totals(corr, stats);
}

/// Writes a coverage record and the completed stats record (which counts it).
pub fn totals(corr: &mut Correlator, stats: &mut StatsRecord) {
    push_coverage(corr, stats);
    push_stats(corr, stats);
}

/// The coverage record [`totals`] writes first.
pub fn push_coverage(corr: &mut Correlator, stats: &StatsRecord) {
    let coverage = corr.coverage(stats);
    corr.push([Record::Coverage(Box::new(coverage))]);
}

/// The stats record [`totals`] ends with, completed with the correlator's
/// counts.
pub fn push_stats(corr: &mut Correlator, stats: &mut StatsRecord) {
    corr.fill_stats(stats);
    corr.push([Record::Stats(Box::new(stats.clone()))]);
}
