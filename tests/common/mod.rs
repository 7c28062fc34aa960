//! Shared helpers for the integration tests: run the real binary on the
//! committed fixtures and read its JSON Lines back.
#![allow(dead_code)]

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn fixture(rel: &str) -> PathBuf {
    root().join("fixtures").join(rel)
}

/// Every capture under `fixtures/shared`, `local`, `devices` and `detect`, sorted.
pub fn all_captures() -> Vec<PathBuf> {
    let mut v = Vec::new();
    for dir in ["shared", "local", "devices", "detect"] {
        let d = fixture(dir);
        for e in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            if name.ends_with(".pcap") || name.ends_with(".pcapng") {
                v.push(p);
            }
        }
    }
    v.sort();
    assert!(v.len() >= 30, "fixtures missing: found {}", v.len());
    v
}

pub fn blindspot(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_blindspot"))
        .args(args)
        .output()
        .expect("run blindspot")
}

/// Replays files with `workers` and returns the records.
pub fn replay(files: &[&Path], workers: usize) -> Vec<Value> {
    replay_args(files, workers, &[])
}

/// Replays files with a config file.
pub fn replay_with_config(files: &[&Path], workers: usize, config: &Path) -> Vec<Value> {
    replay_args(files, workers, &["--config", config.to_str().unwrap()])
}

pub fn replay_args(files: &[&Path], workers: usize, extra: &[&str]) -> Vec<Value> {
    let mut args = vec!["replay".to_string(), "-w".into(), workers.to_string()];
    args.extend(extra.iter().map(|s| s.to_string()));
    args.extend(files.iter().map(|p| p.display().to_string()));
    let out = Command::new(env!("CARGO_BIN_EXE_blindspot"))
        .args(&args)
        .output()
        .expect("run blindspot");
    assert!(
        out.status.success(),
        "blindspot {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    parse_lines(&out.stdout)
}

pub fn parse_lines(bytes: &[u8]) -> Vec<Value> {
    std::str::from_utf8(bytes)
        .expect("utf-8 output")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l}: {e}")))
        .collect()
}

pub fn of_type<'a>(records: &'a [Value], t: &str) -> Vec<&'a Value> {
    records.iter().filter(|r| r["type"] == t).collect()
}
