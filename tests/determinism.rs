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

/// Replay's decoders hand IP fragments on to the flow workers, which
/// reassemble them: with chunk boundaries inside the fragment trains (a
/// chunk of 200 or 1600 bytes holds one or two frames) and any worker
/// count, the records are the same, and each reassembled datagram's payload
/// is what tshark says its UDP length carried.
#[test]
fn fragments_reassemble_the_same_at_any_chunk_size_and_worker_count() {
    let cap = fixture("fragments").join("udp-fragments.pcap");
    let run = |block: Option<&str>, workers: usize| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_blindspot"));
        cmd.args(["replay", "-o", "-", "-w", &workers.to_string()])
            .arg(&cap);
        if let Some(b) = block {
            cmd.env("BLINDSPOT_REPLAY_BLOCK", b);
        }
        let out = cmd.output().expect("run blindspot");
        assert!(out.status.success());
        parse_lines(&out.stdout)
    };
    let base = run(None, 1);
    for block in [Some("200"), Some("1600"), None] {
        for w in [0, 1, 3] {
            let other = run(block, w);
            assert_eq!(
                flow_set(&base),
                flow_set(&other),
                "chunk {block:?}, --workers {w}"
            );
            let stats = of_type(&other, "stats")[0];
            assert_eq!(
                stats["fragments"]["reassembled"], 6,
                "chunk {block:?}, --workers {w}"
            );
        }
    }
    // tshark's reassembled UDP datagrams: payload = udp.length - 8, per direction.
    let truth = std::fs::read_to_string(fixture("fragments").join("truth.tsv")).unwrap();
    let flows = of_type(&base, "flow");
    let mut checked = 0;
    for line in truth.lines().skip(1) {
        let f: Vec<&str> = line.split('\t').collect();
        let (src, sport, dport, len) = (
            if f[1].is_empty() { f[2] } else { f[1] },
            f[5].parse::<u64>().unwrap(),
            f[6].parse::<u64>().unwrap(),
            f[7].parse::<u64>().unwrap(),
        );
        let flow = flows
            .iter()
            .find(|r| {
                (r["src_port"] == sport && r["dst_port"] == dport)
                    || (r["src_port"] == dport && r["dst_port"] == sport)
            })
            .unwrap_or_else(|| panic!("no flow for {line}"));
        let side = if flow["src_ip"] == src {
            "orig"
        } else {
            "resp"
        };
        assert_eq!(flow[side]["payload_bytes"], len - 8, "{line}");
        checked += 1;
    }
    assert_eq!(checked, 8);
}
