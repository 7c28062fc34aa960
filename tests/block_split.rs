//! Detection windows do not depend on where capture blocks split (issue
//! 20): the detection scenarios replayed in blocks of 4 KiB, 64 KiB and
//! the default 512 KiB, with 0, 1 and 3 workers, give the same detection
//! records. `BLINDSPOT_REPLAY_BLOCK` is the replay's undocumented block
//! size knob.
//!
//! The scenarios last about a minute, shorter than the shortest window
//! (`window_s` 60), so on their own no window closes before the end. The
//! last test also replays the mitmproxy scenario followed by itself 70 s
//! later (its packets as recorded, the copy's timestamps moved on), with
//! 90 s windows: windows then close while the first copy's long session
//! (sync.example) is still open, and before sessions entered the detector
//! in a fixed order, the 512 KiB replay wrote one detection fewer than the
//! 4 KiB and 64 KiB ones.

mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The detection records of a replay with `workers` in blocks of `block`
/// bytes (none: the default), sorted.
fn detections(
    files: &[&Path],
    workers: usize,
    block: Option<usize>,
    inputs: &[String],
) -> Vec<String> {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_blindspot"));
    cmd.args(["replay", "-w", &workers.to_string()])
        .args(inputs)
        .args(files);
    match block {
        Some(b) => cmd.env("BLINDSPOT_REPLAY_BLOCK", b.to_string()),
        None => cmd.env_remove("BLINDSPOT_REPLAY_BLOCK"),
    };
    let out = cmd.output().expect("run blindspot");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut v: Vec<String> = of_type(&parse_lines(&out.stdout), "detection")
        .iter()
        .map(|d| d.to_string())
        .collect();
    v.sort();
    v
}

/// Every block size and worker count gives what 1 worker in 512 KiB
/// blocks gives; returns that.
fn same_everywhere(files: &[&Path], inputs: &[String]) -> Vec<String> {
    let want = detections(files, 1, None, inputs);
    for block in [Some(4 << 10), Some(64 << 10), None] {
        for workers in [0, 1, 3] {
            let got = detections(files, workers, block, inputs);
            assert_eq!(
                got, want,
                "{files:?}: block {block:?} with {workers} workers differs from the default"
            );
        }
    }
    want
}

fn squid_inputs() -> Vec<String> {
    let f = |n: &str| fixture(&format!("detect/squid/{n}")).display().to_string();
    [
        "--config",
        &f("config.toml"),
        "--mdm",
        &f("mdm.json"),
        "--apps",
        &f("catalog.json"),
        "--proxy-log",
        &f("access.log"),
    ]
    .map(String::from)
    .to_vec()
}

#[test]
fn the_mitmproxy_scenario_gives_the_same_detections_whatever_the_block_size() {
    let found = same_everywhere(&[&fixture("detect/scenario.pcap")], &scenario_inputs());
    assert_eq!(found.len(), 7, "the scenario's seven findings");
}

#[test]
fn the_squid_scenario_gives_the_same_detections_whatever_the_block_size() {
    let found = same_everywhere(&[&fixture("detect/squid/scenario.pcap")], &squid_inputs());
    assert!(!found.is_empty());
}

/// Reads a little-endian microsecond pcap: its header and its records
/// (timestamp in µs, the record's bytes after the timestamp).
fn read_pcap(p: &Path) -> (Vec<u8>, Vec<(u64, Vec<u8>)>) {
    let b = std::fs::read(p).unwrap();
    assert_eq!(
        &b[..4],
        &[0xd4, 0xc3, 0xb2, 0xa1],
        "a little-endian µs pcap"
    );
    let u32_at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().unwrap());
    let mut recs = Vec::new();
    let mut i = 24;
    while i + 16 <= b.len() {
        let ts = u64::from(u32_at(i)) * 1_000_000 + u64::from(u32_at(i + 4));
        let len = u32_at(i + 8) as usize;
        recs.push((ts, b[i + 8..i + 16 + len].to_vec()));
        i += 16 + len;
    }
    assert_eq!(i, b.len());
    (b[..24].to_vec(), recs)
}

/// `src` followed by a copy of itself `shift_s` later, merged by time
/// (as mergecap would), written to `dst`.
fn with_itself_later(src: &Path, shift_s: u64, dst: &Path) {
    let (header, recs) = read_pcap(src);
    let later = recs
        .iter()
        .map(|(ts, r)| (ts + shift_s * 1_000_000, r.clone()));
    let mut all: Vec<(u64, Vec<u8>)> = recs.iter().cloned().chain(later).collect();
    all.sort_by_key(|(ts, _)| *ts);
    let mut out = header;
    for (ts, r) in all {
        out.extend_from_slice(&((ts / 1_000_000) as u32).to_le_bytes());
        out.extend_from_slice(&((ts % 1_000_000) as u32).to_le_bytes());
        out.extend_from_slice(&r);
    }
    std::fs::write(dst, out).unwrap();
}

#[test]
fn windows_that_close_while_a_long_session_is_open_do_not_depend_on_the_block_size() {
    let dir = tempfile::tempdir().unwrap();
    let pcap: PathBuf = dir.path().join("twice.pcap");
    with_itself_later(&fixture("detect/scenario.pcap"), 70, &pcap);
    // The scenario's config with 90 s windows.
    let config = dir.path().join("config.toml");
    let text = std::fs::read_to_string(fixture("detect/config.toml"))
        .unwrap()
        .replace("window_s = 3600", "window_s = 90");
    assert!(text.contains("window_s = 90"));
    std::fs::write(&config, text).unwrap();
    std::fs::copy(
        fixture("detect/inspection-ca.pem"),
        dir.path().join("inspection-ca.pem"),
    )
    .unwrap();
    let mut inputs = scenario_inputs();
    inputs[1] = config.display().to_string();
    let found = same_everywhere(&[&pcap], &inputs);
    // The copy's persistent session to sync.example starts 70 s after
    // the first one, within the first one's 90 s window: one detection
    // with both connections.
    let sync: Vec<serde_json::Value> = found
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .filter(|d: &serde_json::Value| {
            d["pattern"] == "opaque_persistent_session"
                && d["destination"]["name"] == "sync.example"
        })
        .collect();
    assert_eq!(sync.len(), 1, "{found:#?}");
    assert_eq!(sync[0]["flow_ids"].as_array().unwrap().len(), 2);
}

/// With nothing about inspection configured the scenarios' proxies' CAs
/// are learnt from the wire mid-replay: when, and so what the detections
/// read as inspected, does not depend on the block size or worker count.
#[test]
fn learnt_inspection_cas_give_the_same_detections_whatever_the_block_size() {
    let mitm = (
        scenario_inputs(),
        "detect/config.toml",
        "detect/scenario.pcap",
    );
    let squid = (
        squid_inputs(),
        "detect/squid/config.toml",
        "detect/squid/scenario.pcap",
    );
    for (mut inputs, config, pcap) in [mitm, squid] {
        let dir = tempfile::tempdir().unwrap();
        inputs[1] = without_inspection_config(&fixture(config), dir.path())
            .display()
            .to_string();
        let found = same_everywhere(&[&fixture(pcap)], &inputs);
        assert!(found.iter().any(|d| d.contains("\"learnt_ca\"")), "{pcap}");
    }
}
