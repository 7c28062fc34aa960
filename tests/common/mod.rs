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

/// The third-party captures (with their `expected/` answers and `keys/`):
/// `../shared/pcaps/` beside the checkout, which CI always has. They come
/// from other projects and are never copied into this repository.
pub fn shared_dir() -> Option<PathBuf> {
    let d = root().parent()?.join("shared").join("pcaps");
    d.is_dir().then_some(d)
}

/// A file of `../shared/pcaps/`; `None`, with a line saying what is not
/// checked, where that folder is absent.
pub fn shared(rel: &str, what: &str) -> Option<PathBuf> {
    match shared_dir() {
        Some(d) => Some(d.join(rel)),
        None => {
            eprintln!(
                "SKIPPED {what}: ../shared/pcaps is absent (third-party captures are read from there, never from the repository)"
            );
            None
        }
    }
}

/// Whether `p` is one of the third-party captures.
pub fn is_shared(p: &Path) -> bool {
    shared_dir().is_some_and(|d| p.parent() == Some(d.as_path()))
}

/// A JSON Lines fixture (a truth file), one value per line.
pub fn jsonl(rel: &str) -> Vec<Value> {
    read_jsonl(&fixture(rel))
}

/// A JSON Lines file, one value per line.
pub fn read_jsonl(p: &Path) -> Vec<Value> {
    std::fs::read_to_string(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A record's connection: source address and port, destination address and port.
pub type Tuple = (String, u64, String, u64);

pub fn tuple(v: &Value) -> Tuple {
    (
        v["src_ip"].as_str().unwrap().to_string(),
        v["src_port"].as_u64().unwrap(),
        v["dst_ip"].as_str().unwrap().to_string(),
        v["dst_port"].as_u64().unwrap(),
    )
}

/// Every capture: the third-party ones in `../shared/pcaps` (when present:
/// a line says which are skipped otherwise) and the project's own under
/// `fixtures/local`, `devices`, `detect`, `tcpedge`, `starttls`, `dns`, `tunnels`, `quic`, `posthandshake` and `quicbypass`, sorted.
pub fn all_captures() -> Vec<PathBuf> {
    let mut dirs = vec![
        fixture("detect"),
        fixture("devices"),
        fixture("dns"),
        fixture("fragments"),
        fixture("local"),
        fixture("posthandshake"),
        fixture("quic"),
        fixture("quicbypass"),
        fixture("starttls"),
        fixture("tcpedge"),
        fixture("tunnels"),
    ];
    match shared_dir() {
        Some(d) => dirs.push(d),
        None => eprintln!(
            "SKIPPED the third-party captures: ../shared/pcaps is absent, only the project's own are checked"
        ),
    }
    let mut v = Vec::new();
    for d in &dirs {
        let mut here = Vec::new();
        for e in std::fs::read_dir(d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            if name.ends_with(".pcap") || name.ends_with(".pcapng") {
                here.push(p);
            }
        }
        here.sort();
        v.extend(here);
    }
    let want = if shared_dir().is_some() { 30 } else { 10 };
    assert!(v.len() >= want, "fixtures missing: found {}", v.len());
    v
}

/// The detection scenario's input files (fixtures/detect): its config, MDM
/// inventory, app catalog and app events, as replay arguments.
#[allow(dead_code)]
pub fn scenario_inputs() -> Vec<String> {
    let f = |n: &str| fixture(&format!("detect/{n}")).display().to_string();
    vec![
        "--config".into(),
        f("config.toml"),
        "--mdm".into(),
        f("mdm.json"),
        "--apps".into(),
        f("catalog.json"),
        "--app-events".into(),
        f("app-events.jsonl"),
    ]
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

/// `shared_file!("name")`: a file of `../shared/pcaps`, or, where that
/// folder is absent, a SKIPPED line and a return from the test.
#[allow(unused_macros)]
macro_rules! shared_file {
    ($rel:expr) => {
        match $crate::common::shared(&$rel, module_path!()) {
            Some(p) => p,
            None => return,
        }
    };
}
#[allow(unused_imports)]
pub(crate) use shared_file;

/// (pattern, destination name) of every detection, sorted.
pub fn findings(recs: &[Value]) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = of_type(recs, "detection")
        .iter()
        .map(|d| {
            let dest = &d["destination"];
            let name = match dest["name"].as_str() {
                Some(n) => n.to_string(),
                None => format!("{}:{}", dest["ip"].as_str().unwrap(), dest["port"]),
            };
            (d["pattern"].as_str().unwrap().to_string(), name)
        })
        .collect();
    v.sort();
    v
}

/// A copy of the scenario config `config` in `dir` without its
/// `[inspection]` section: nothing about inspection configured, CA learning
/// at its default threshold. Returns the new config's path.
#[allow(dead_code)]
pub fn without_inspection_config(config: &Path, dir: &Path) -> PathBuf {
    let mut keep = true;
    let mut text = String::new();
    for l in std::fs::read_to_string(config).unwrap().lines() {
        if l.starts_with('[') {
            keep = l != "[inspection]";
        }
        if keep {
            text.push_str(l);
            text.push('\n');
        }
    }
    assert!(
        !text
            .lines()
            .any(|l| !l.starts_with('#') && l.contains("inspection")),
        "{text}"
    );
    let out = dir.join("site.toml");
    std::fs::write(&out, text).unwrap();
    out
}

/// Runs a command quietly: whether it ran and exited 0.
pub fn sh(args: &[&str]) -> bool {
    std::process::Command::new(args[0])
        .args(&args[1..])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Whether the test runs as root (the live tests need namespaces and
/// AF_PACKET).
pub fn is_root() -> bool {
    // /proc/self/status: "Uid:\treal\teffective\t..."
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}

/// `blindspot capture` running (in a namespace), ready: its start line read.
pub struct Sensor {
    pub child: std::process::Child,
    stderr: Vec<String>,
    stderr_thread: Option<std::thread::JoinHandle<Vec<String>>>,
}

impl Sensor {
    /// Starts `cmd` (the binary with `capture` and its arguments) and waits
    /// for its start line.
    pub fn spawn(mut cmd: Command) -> Sensor {
        use std::io::BufRead;
        let mut child = cmd
            .stderr(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("start blindspot capture");
        let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
        let first = lines.next().and_then(Result::ok).unwrap_or_default();
        assert!(
            first.contains("capturing on"),
            "capture did not start: {first}"
        );
        // The rest of stderr is read after exit.
        let rest = std::thread::spawn(move || lines.map_while(Result::ok).collect::<Vec<_>>());
        Sensor {
            child,
            stderr: vec![first],
            stderr_thread: Some(rest),
        }
    }

    /// The stderr lines after the start line, once the process has ended.
    pub fn rest_of_stderr(&mut self) -> Vec<String> {
        self.stderr_thread
            .take()
            .map(|t| t.join().unwrap())
            .unwrap_or_default()
    }

    /// SIGTERM, then wait for the drain; its stderr lines.
    pub fn stop(mut self) -> Vec<String> {
        let pid = self.child.id().to_string();
        assert!(sh(&["kill", "-TERM", &pid]));
        let status = self.child.wait().expect("wait for capture");
        let mut err = std::mem::take(&mut self.stderr);
        err.extend(self.rest_of_stderr());
        assert!(status.success(), "capture failed: {status}: {err:?}");
        err
    }
}
