//! Replays every fuzz seed (`fuzz/seeds/TARGET/`) and every input that once
//! crashed a fuzzer (`fuzz/regressions/TARGET/`) through the same
//! `blindspot::fuzzing` function the fuzz target calls, on the stable
//! toolchain, on every `cargo test`. See fuzz/README.md.
//!
//! A folder whose name is no target, or an empty one, fails the test: a
//! renamed target must not leave its inputs silently untested.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The fuzz targets, by folder name.
fn target(name: &str) -> Option<fn(&[u8])> {
    use blindspot::fuzzing as f;
    Some(match name {
        "decode" => f::decode,
        "decode_deferred" => f::decode_deferred,
        "tunnel" => f::tunnel,
        "capture_file" => f::capture_file,
        "flow_table" => f::flow_table,
        "device_evidence" => f::device_evidence,
        "tls_stream" => f::tls_stream,
        "tls_upgrade" => f::tls_upgrade,
        "quic" => f::quic,
        "certificate" => f::certificate,
        "dhcp4" => f::dhcp4,
        "dhcp6" => f::dhcp6,
        "dns" => f::dns,
        "leases" => f::leases,
        "radius" => f::radius,
        "mdm" => f::mdm,
        "catalog" => f::catalog,
        "app_events" => f::app_events,
        "proxy_log" => f::proxy_log,
        "config" => f::config,
        "baseline" => f::baseline,
        "fleet_message" => f::fleet_message,
        #[cfg(feature = "fleet")]
        "fleet_state" => f::fleet_state,
        _ => return None,
    })
}

/// Replays the files of each `ROOT/TARGET/` folder; returns the count per target.
fn replay(root: &Path) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root)
        .unwrap_or_else(|e| panic!("{}: {e}", root.display()))
        .map(|e| e.expect("a folder entry").path())
        .collect();
    dirs.sort();
    for dir in dirs {
        let name = dir
            .file_name()
            .and_then(|n| n.to_str())
            .expect("a UTF-8 folder name")
            .to_string();
        let run = target(&name)
            .unwrap_or_else(|| panic!("{}: no fuzz target is called {name:?}", dir.display()));
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.expect("a folder entry").path())
            .collect();
        files.sort();
        assert!(!files.is_empty(), "{}: no inputs to replay", dir.display());
        for file in &files {
            let data = std::fs::read(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            // A panic names the file that caused it.
            let r = std::panic::catch_unwind(|| run(&data));
            assert!(r.is_ok(), "{}: the fuzz target panicked", file.display());
        }
        counts.insert(name, files.len());
    }
    counts
}

fn fuzz_dir(sub: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz").join(sub)
}

#[test]
fn seeds_replay_without_a_finding() {
    let counts = replay(&fuzz_dir("seeds"));
    for (t, n) in &counts {
        println!("seeds       {t:16} {n:3} files");
    }
    // Every target has seeds.
    for t in counts.keys() {
        assert!(target(t).is_some());
    }
    // ... and every target of fuzz/fuzz_targets has its seed folder.
    let mut targets: Vec<String> = std::fs::read_dir(fuzz_dir("fuzz_targets"))
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().to_string_lossy().to_string();
            name.strip_suffix(".rs").map(str::to_string)
        })
        .collect();
    targets.sort();
    assert_eq!(counts.keys().cloned().collect::<Vec<_>>(), targets);
}

#[test]
fn regressions_stay_fixed() {
    let counts = replay(&fuzz_dir("regressions"));
    assert!(!counts.is_empty(), "no regression folders");
    for (t, n) in &counts {
        println!("regressions {t:16} {n:3} files");
    }
}
