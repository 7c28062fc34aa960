//! Hostile and mistaken configs: every problem listed in line order, files
//! read with a bound (no hang on a device or FIFO), `capture.user` never
//! root, and the README's table agreeing with the code on every numeric
//! key's range.

mod common;
use common::*;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Runs blindspot; a run still going after a minute is killed and fails the
/// test (a guard against a hang, not a timing assertion).
fn run_guarded(args: &[&str]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_blindspot"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run blindspot");
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(60) {
            child.kill().unwrap();
            panic!("blindspot {args:?} did not end: it blocks or reads for ever");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child.wait_with_output().unwrap()
}

fn check(config: &Path) -> (Option<i32>, String) {
    let o = run_guarded(&["config", "check", config.to_str().unwrap()]);
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stderr).to_string(),
    )
}

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn three_bad_keys_are_all_listed_in_line_order() {
    let dir = tempfile::tempdir().unwrap();
    // Validated pipeline first, then output, then detections: the reverse
    // of the order they stand in.
    let c = write(
        dir.path(),
        "three.toml",
        "# three mistakes\n[detections]\nmin_score = 101\nwindow_s = 600\n\n[output]\nzstd_level = 0\n\n[flow]\nmax_flows = 1000\n[pipeline]\nworkers = 100\n",
    );
    let (code, err) = check(&c);
    assert_eq!(code, Some(1));
    let p = c.display();
    assert_eq!(
        err,
        format!(
            "blindspot: {p}:3: detections.min_score = 101 is out of range: use a value from 0 to 100\n\
             blindspot: {p}:7: output.zstd_level = 0 is out of range: use a value from 1 to 19\n\
             blindspot: {p}:12: pipeline.workers = 100 is out of range: use a value from 0 to 64\n"
        )
    );
}

#[test]
fn dev_zero_as_a_ca_file_is_refused_without_reading_it() {
    let dir = tempfile::tempdir().unwrap();
    let c = write(
        dir.path(),
        "zero.toml",
        "[inspection]\nca_files = [\"/dev/zero\"]\n",
    );
    let (code, err) = check(&c);
    assert_eq!(code, Some(1));
    assert_eq!(
        err,
        format!(
            "blindspot: {}:2: inspection.ca_files[0] = \"/dev/zero\": /dev/zero: a character device, not a regular file: give a PEM file of inspection CA certificates\n",
            c.display()
        )
    );
}

#[test]
fn a_fifo_as_a_ca_file_is_refused_without_waiting_for_a_writer() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("ca.pem");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    // Relative to the config file's folder.
    let c = write(
        dir.path(),
        "fifo.toml",
        "[inspection]\n\nca_files = [\"ca.pem\"]\n",
    );
    let (code, err) = check(&c);
    assert_eq!(code, Some(1));
    assert_eq!(
        err,
        format!(
            "blindspot: {}:3: inspection.ca_files[0] = \"ca.pem\": {}: a FIFO, not a regular file: give a PEM file of inspection CA certificates\n",
            c.display(),
            fifo.display()
        )
    );
}

#[test]
fn a_ca_file_over_one_mib_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.pem");
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    while pem.len() < 2 << 20 {
        pem.push_str(&"A".repeat(64));
        pem.push('\n');
    }
    std::fs::write(&big, pem).unwrap();
    let c = write(
        dir.path(),
        "big.toml",
        "[inspection]\nca_files = [\"big.pem\"]\n",
    );
    let (code, err) = check(&c);
    assert_eq!(code, Some(1));
    assert_eq!(
        err,
        format!(
            "blindspot: {}:2: inspection.ca_files[0] = \"big.pem\": {}: larger than the 1 MiB limit for a PEM file of inspection CA certificates: give a file with only those CA certificates\n",
            c.display(),
            big.display()
        )
    );
}

#[test]
fn the_config_file_itself_must_be_a_regular_file() {
    let (code, err) = check(Path::new("/dev/zero"));
    assert_eq!(code, Some(1));
    assert_eq!(
        err,
        "blindspot: /dev/zero: a character device, not a regular file: give a TOML config file\n"
    );
}

#[test]
fn capture_user_must_be_a_non_root_user() {
    let dir = tempfile::tempdir().unwrap();
    let empty = write(dir.path(), "empty.toml", "[capture]\nuser = \"\"\n");
    let (code, err) = check(&empty);
    assert_eq!(code, Some(1));
    assert_eq!(
        err,
        format!(
            "blindspot: {}:2: capture.user = \"\" is empty: name a non-root user (such as blindspot), or leave it out\n",
            empty.display()
        )
    );
    let root = write(
        dir.path(),
        "root.toml",
        "[output]\nprefix = \"edge\"\n[capture]\nuser = \"root\"\n",
    );
    let (code, err) = check(&root);
    assert_eq!(code, Some(1));
    assert_eq!(
        err,
        format!(
            "blindspot: {}:4: capture.user = \"root\" is uid 0: the sensor would stay root; name a non-root user (such as blindspot)\n",
            root.display()
        )
    );
    // The command line's --user gets the same check, before any interface
    // is opened.
    for (user, why) in [
        (
            "",
            "is empty: name a non-root user (such as blindspot), or leave it out",
        ),
        (
            "root",
            "is uid 0: the sensor would stay root; name a non-root user (such as blindspot)",
        ),
    ] {
        let o = run_guarded(&["capture", "-i", "lo", "--user", user, "--duration", "1"]);
        assert_eq!(o.status.code(), Some(1));
        assert_eq!(
            String::from_utf8_lossy(&o.stderr),
            format!("blindspot: --user {user:?} {why}\n")
        );
    }
}

/// A pcap of one UDP datagram (32 bytes: header and 24 payload bytes) sent
/// in two IPv4 fragments of 16 bytes.
fn fragmented_udp_pcap() -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&[0; 8]);
    out.extend_from_slice(&65_535u32.to_le_bytes());
    out.extend_from_slice(&1u32.to_le_bytes()); // Ethernet
    let mut udp = Vec::new();
    udp.extend_from_slice(&40_000u16.to_be_bytes());
    udp.extend_from_slice(&9_999u16.to_be_bytes());
    udp.extend_from_slice(&32u16.to_be_bytes());
    udp.extend_from_slice(&0u16.to_be_bytes()); // no checksum
    udp.extend((0u8..24).map(|i| i.wrapping_mul(37)));
    for (i, part) in udp.chunks(16).enumerate() {
        let more = i == 0;
        let offset_units = (i * 16 / 8) as u16;
        let mut ip = vec![0x45, 0];
        ip.extend_from_slice(&(20 + part.len() as u16).to_be_bytes());
        ip.extend_from_slice(&0x1234u16.to_be_bytes());
        ip.extend_from_slice(&(offset_units | if more { 0x2000 } else { 0 }).to_be_bytes());
        ip.extend_from_slice(&[64, 17, 0, 0, 192, 0, 2, 1, 192, 0, 2, 2]);
        let sum = ip
            .chunks(2)
            .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
            .sum::<u32>();
        let sum = (sum & 0xffff) + (sum >> 16);
        let sum = !(((sum & 0xffff) + (sum >> 16)) as u16);
        ip[10..12].copy_from_slice(&sum.to_be_bytes());
        let mut frame = vec![0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1, 0x08, 0x00];
        frame.extend_from_slice(&ip);
        frame.extend_from_slice(part);
        out.extend_from_slice(&(1_700_000_000u32 + i as u32).to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        out.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        out.extend_from_slice(&frame);
    }
    out
}

#[test]
fn fragments_max_datagrams_zero_counts_and_drops_every_fragment() {
    let dir = tempfile::tempdir().unwrap();
    let cap = dir.path().join("frag.pcap");
    std::fs::write(&cap, fragmented_udp_pcap()).unwrap();
    let fragments = |recs: &[serde_json::Value]| {
        let stats = of_type(recs, "stats")[0];
        (
            stats["fragments"]["reassembled"].as_u64().unwrap(),
            stats["fragments"]["dropped_cap"].as_u64().unwrap(),
            of_type(recs, "flow").len(),
        )
    };
    // Default: the datagram is put together and makes a flow.
    assert_eq!(fragments(&replay(&[&cap], 0)), (1, 0, 1));
    let zero = write(dir.path(), "zero.toml", "[fragments]\nmax_datagrams = 0\n");
    let (code, err) = check(&zero);
    assert_eq!((code, err.as_str()), (Some(0), ""));
    for workers in [0, 2] {
        let recs = replay_with_config(&[&cap], workers, &zero);
        assert_eq!(fragments(&recs), (0, 2, 0), "workers {workers}");
    }
    // No reassembly is said with max_datagrams; a zero byte cap is refused.
    let bytes = write(dir.path(), "bytes.toml", "[fragments]\nmax_bytes = 0\n");
    let (code, err) = check(&bytes);
    assert_eq!(code, Some(1));
    assert_eq!(
        err,
        format!(
            "blindspot: {}:2: fragments.max_bytes = 0 is out of range: use a value from 1 to 1073741824\n",
            bytes.display()
        )
    );
}

/// `(A–B` in a README row: the range of a numeric key.
fn readme_range(meaning: &str) -> Option<(f64, f64)> {
    let mut rest = meaning;
    while let Some(at) = rest.find(['(', ' ']) {
        rest = &rest[at + 1..];
        let (lo, tail) = rest.split_once('–')?;
        let hi: String = tail
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '.')
            .collect();
        if let (Ok(lo), Ok(hi)) = (lo.parse::<f64>(), hi.parse::<f64>()) {
            return Some((lo, hi));
        }
    }
    None
}

/// The numeric keys of the defaults (numbers, and lists of numbers), by
/// dotted name, with whether they are floats and lists.
fn numeric_keys() -> Vec<(String, bool, bool)> {
    let v = serde_json::to_value(blindspot::config::RawConfig::default()).unwrap();
    let mut keys = Vec::new();
    for (section, table) in v.as_object().unwrap() {
        for (key, value) in table.as_object().unwrap() {
            let (n, list) = match value {
                serde_json::Value::Array(a) => match a.first() {
                    Some(n @ serde_json::Value::Number(_)) => (n, true),
                    _ => continue,
                },
                n @ serde_json::Value::Number(_) => (n, false),
                _ => continue,
            };
            keys.push((format!("{section}.{key}"), n.is_f64(), list));
        }
    }
    keys
}

#[test]
fn the_readme_gives_every_numeric_key_the_range_the_code_enforces() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let table = readme
        .split("## Configuration")
        .nth(1)
        .unwrap()
        .split("\n## ")
        .next()
        .unwrap();
    let keys = numeric_keys();
    assert!(keys.len() >= 40, "{keys:?}");
    for (key, float, list) in keys {
        let row = table
            .lines()
            .find(|l| l.starts_with(&format!("| `{key}` |")))
            .unwrap_or_else(|| panic!("README's Configuration table has no row for {key}"));
        let meaning = row.split(" | ").nth(2).unwrap();
        let (lo, hi) = readme_range(meaning)
            .unwrap_or_else(|| panic!("README row for {key} gives no range (A–B): {row}"));
        if lo == 0.0 {
            assert!(
                meaning.contains("0 = "),
                "README row for {key} allows 0 but does not say what it means: {row}"
            );
        }
        let (section, name) = key.split_once('.').unwrap();
        // A ring of the most blocks needs the smallest blocks.
        let companion = if key == "capture.ring_blocks" {
            "ring_block_size = 131072\n"
        } else {
            ""
        };
        let value = |x: f64| {
            let v = if float {
                format!("{x:.1}")
            } else {
                format!("{}", x as i64)
            };
            if list { format!("[{v}]") } else { v }
        };
        let outcome = |x: f64| {
            let text = format!("[{section}]\n{companion}{name} = {}\n", value(x));
            blindspot::config::RawConfig::parse(&text, "t.toml")
                .and_then(|r| r.validate())
                .map(|_| ())
                .map_err(|e| e.to_string())
        };
        for x in [lo, hi] {
            assert_eq!(
                outcome(x),
                Ok(()),
                "{key} = {x}: README says it is in range"
            );
        }
        let step = if float { 0.5 } else { 1.0 };
        let below = (lo > 0.0 || float).then_some(lo - step);
        let line = if companion.is_empty() { 2 } else { 3 };
        for x in below.into_iter().chain([hi + step]) {
            let e = outcome(x).expect_err(&format!("{key} = {x} is outside the README's range"));
            assert!(
                e.starts_with(&format!("t.toml:{line}: ")) && e.lines().count() == 1,
                "{key} = {x}: {e}"
            );
        }
    }
}
