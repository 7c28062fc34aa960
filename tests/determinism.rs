//! The same input gives the same set of records whatever the worker count
//! (DESIGN.md "Deterministic replay"). Proven on every committed fixture,
//! and on all of them replayed as one timeline.

mod common;
use common::*;
use std::collections::BTreeSet;

fn flow_set(records: &[serde_json::Value]) -> BTreeSet<String> {
    records
        .iter()
        .filter(|r| r["type"] != "stats")
        .map(|r| r.to_string())
        .collect()
}

#[test]
fn same_records_with_0_1_2_3_4_and_8_workers_on_every_fixture() {
    for cap in all_captures() {
        let one = flow_set(&replay(&[&cap], 1));
        for w in [0, 2, 3, 4, 8] {
            let other = flow_set(&replay(&[&cap], w));
            assert_eq!(
                one,
                other,
                "{}: --workers 1 and --workers {w} differ",
                cap.display()
            );
        }
    }
}

#[test]
fn same_records_on_all_fixtures_as_one_timeline() {
    let caps = all_captures();
    let refs: Vec<&std::path::Path> = caps.iter().map(|p| p.as_path()).collect();
    let one = replay(&refs, 1);
    let two = replay(&refs, 2);
    assert_eq!(flow_set(&one), flow_set(&two));
    // The stats agree on everything that does not depend on the split.
    let s1 = of_type(&one, "stats")[0];
    let s2 = of_type(&two, "stats")[0];
    for k in [
        "packets",
        "bytes",
        "skipped",
        "fragments",
        "reassembly",
        "files",
        "records",
    ] {
        assert_eq!(s1[k], s2[k], "stats.{k}");
    }
    assert_eq!(s1["flows"]["created"], s2["flows"]["created"]);
}
