//! The command line: exit statuses, error lines, outputs.

mod common;
use common::*;

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

#[test]
fn truncated_capture_gives_records_warning_with_offset_and_status_3() {
    let src = std::fs::read(shared_file!("zeek-tls12-expired-cert.pcap")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cut = dir.path().join("cut.pcap");
    // Cut in the middle of a record, well into the file.
    let at = src.len() - 500;
    std::fs::write(&cut, &src[..at]).unwrap();
    let o = blindspot(&["replay", cut.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("cut.pcap") && err.contains("truncated at byte offset"),
        "{err}"
    );
    let recs = parse_lines(&o.stdout);
    assert_eq!(
        of_type(&recs, "flow").len(),
        2,
        "records up to the cut are written"
    );
    let stats = of_type(&recs, "stats")[0];
    assert!(
        stats["files"][0]["error"]
            .as_str()
            .unwrap()
            .contains("truncated")
    );
}

#[test]
fn unusable_input_is_one_line_and_status_1() {
    let dir = tempfile::tempdir().unwrap();
    let txt = dir.path().join("notes.txt");
    std::fs::write(&txt, "this is not a capture file at all, it is text\n").unwrap();
    let o = blindspot(&["replay", txt.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("notes.txt") && err.contains("not a pcap or pcapng file"),
        "{err}"
    );
    let o = blindspot(&["replay", "/nonexistent/file.pcap"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("/nonexistent/file.pcap"));
}

#[test]
fn zstd_output_is_framed_and_readable() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("flows.jsonl.zst");
    let cap = shared_file!("ndpi-signal-dhcp-and-tls.pcap");
    let o = blindspot(&["replay", cap.to_str().unwrap(), "-o", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let bytes = std::fs::read(&out).unwrap();
    assert_eq!(&bytes[..4], &[0x28, 0xb5, 0x2f, 0xfd], "zstd magic");
    let plain = zstd::decode_all(&bytes[..]).unwrap();
    let recs = parse_lines(&plain);
    let direct = replay(&[&cap], 2);
    assert_eq!(recs.len(), direct.len());
    assert!(of_type(&recs, "flow").len() >= 15);
}

#[test]
fn plain_file_output_and_compressed_input() {
    let dir = tempfile::tempdir().unwrap();
    let cap = shared_file!("zeek-tls12-expired-cert.pcap");
    let gz = dir.path().join("in.pcap.gz");
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut enc, &std::fs::read(&cap).unwrap()).unwrap();
    std::fs::write(&gz, enc.finish().unwrap()).unwrap();
    let out = dir.path().join("out.jsonl");
    let o = blindspot(&["replay", gz.to_str().unwrap(), "-o", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let from_gz = parse_lines(&std::fs::read(&out).unwrap());
    let direct = replay(&[&cap], 2);
    assert_eq!(of_type(&from_gz, "flow"), of_type(&direct, "flow"));
}

#[test]
fn config_check_names_key_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[flow]\nmax_flows = 1000\nudp_idle = 3\n").unwrap();
    let o = blindspot(&["config", "check", bad.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.contains("bad.toml:3") && err.contains("udp_idle"),
        "{err}"
    );
    let good = dir.path().join("good.toml");
    std::fs::write(
        &good,
        "[pipeline]\nworkers = 1\n[flow]\nudp_idle_timeout_s = 30\n",
    )
    .unwrap();
    let o = blindspot(&["config", "check", good.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    // A bad config stops replay before any output.
    let cap = shared_file!("foxio-dhcp-dora.pcapng");
    let o = blindspot(&["replay", "-c", bad.to_str().unwrap(), cap.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(o.stdout.is_empty());
}

#[test]
fn help_explains_each_option_with_its_default() {
    let o = blindspot(&["replay", "--help"]);
    let h = String::from_utf8_lossy(&o.stdout);
    for needle in [
        "--output",
        "--workers",
        "--config",
        "default",
        ".zst",
        "Exit status",
    ] {
        assert!(h.contains(needle), "help lacks {needle}: {h}");
    }
}

#[test]
fn several_files_are_one_timeline() {
    let a = shared_file!("zeek-tls12-expired-cert.pcap");
    let b = shared_file!("foxio-dhcp-dora.pcapng");
    let both = replay(&[&a, &b], 2);
    let stats = of_type(&both, "stats");
    assert_eq!(stats.len(), 1);
    assert_eq!(stats[0]["files"].as_array().unwrap().len(), 2);
    let sep = of_type(&replay(&[&a], 2), "flow").len() + of_type(&replay(&[&b], 2), "flow").len();
    assert_eq!(of_type(&both, "flow").len(), sep);
}

#[test]
fn replay_shows_progress_on_a_terminal_and_nothing_when_piped() {
    let file = common::fixture("local/tls13-curl-nginx-download.pcap");
    let cmd = format!(
        "{} replay {} -o /dev/null",
        env!("CARGO_BIN_EXE_blindspot"),
        file.display()
    );
    // `script` runs the command on a pseudo-terminal.
    let Ok(out) = std::process::Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .output()
    else {
        eprintln!("SKIPPED: script (util-linux) is not installed");
        return;
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let size = std::fs::metadata(&file).unwrap().len();
    assert!(out.status.success(), "{text}");
    // The first block draws at once: "X of 1.6 MiB (P%), N packets, ...",
    // whatever the block size: some of the file's 1601 packets, and a share
    // that is X of the file's size.
    let total = format!("{:.1} MiB", size as f64 / 1048576.0);
    let line = text
        .split('\r')
        .find(|l| l.starts_with("blindspot: ") && l.contains(" packets, "))
        .unwrap_or_else(|| panic!("no progress line in {text:?}"));
    let (read, rest) = line["blindspot: ".len()..]
        .split_once(&format!(" of {total} ("))
        .unwrap_or_else(|| panic!("{line:?}"));
    let (pct, rest) = rest.split_once("%), ").unwrap();
    let packets: u64 = rest.split_once(" packets, ").unwrap().0.parse().unwrap();
    assert!((1..=1601).contains(&packets), "{line:?}");
    let (num, unit) = read.split_once(' ').unwrap();
    let read = num.parse::<f64>().unwrap()
        * match unit {
            "KiB" => 1024.0,
            "MiB" => 1048576.0,
            other => panic!("unit {other} in {line:?}"),
        };
    let want = (read * 100.0 / size as f64).min(100.0);
    // The amount is shown to a tenth of its unit: up to half of that off.
    let shown = 0.05 * if unit == "MiB" { 1048576.0 } else { 1024.0 } * 100.0 / size as f64;
    assert!(
        (pct.parse::<f64>().unwrap() - want).abs() <= 1.0 + shown,
        "{line:?}"
    );
    assert!(text.contains("ETA 0:00"), "{text:?}");
    // Piped: stderr stays empty.
    let piped = common::blindspot(&["replay", file.to_str().unwrap(), "-o", "/dev/null"]);
    assert!(piped.status.success());
    assert!(
        piped.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&piped.stderr)
    );
}

#[test]
fn capture_on_a_missing_interface_is_one_line_and_status_1() {
    let out = common::blindspot(&["capture", "-i", "no-such-if0", "-o", "-"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        err.trim(),
        "blindspot: interface no-such-if0 does not exist (see `ip link`)"
    );
    // --filter needs libpcap; without the feature the error says how to get it.
    if !cfg!(feature = "libpcap") {
        let out = common::blindspot(&["capture", "-i", "lo", "--filter", "tcp"]);
        assert_eq!(out.status.code(), Some(1));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("--features libpcap"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Issue 15: a panic in replay (made on purpose by a debug-build hook on
/// the first packet) ends the run at once with one line naming the thread
/// and a non-zero status, never a partial output that looks whole: on a
/// worker thread, and with `--workers 0` on the main thread.
#[test]
fn a_panic_in_replay_is_one_line_naming_the_thread_and_a_failure() {
    let file = common::fixture("local/tls12-curl-nginx.pcap");
    for (workers, thread) in [("2", "worker-"), ("0", "main")] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_blindspot"))
            .args(["replay", file.to_str().unwrap(), "--workers", workers])
            .env("BLINDSPOT_TEST_PANIC", "1")
            .output()
            .unwrap();
        assert!(!out.status.success());
        #[cfg(unix)]
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&out.status),
            Some(6),
            "aborted (SIGABRT)"
        );
        let err = String::from_utf8_lossy(&out.stderr);
        let lines: Vec<&str> = err.lines().collect();
        assert_eq!(lines.len(), 1, "{err}");
        assert!(
            lines[0].starts_with(&format!("blindspot: fatal: thread '{thread}")),
            "{err}"
        );
        assert!(lines[0].contains("panicked at src/flow/table.rs:"), "{err}");
        assert!(
            !String::from_utf8_lossy(&out.stdout).contains("\"type\":\"stats\""),
            "no stats record: the output must not look whole"
        );
    }
}

#[test]
fn input_and_baseline_files_that_are_devices_or_fifos_are_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("leases.fifo");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let cap = shared_file!("foxio-dhcp-dora.pcapng");
    let cap = cap.to_str().unwrap();
    let what = "an input file (lease file, RADIUS detail, inventory, catalog or app events)";
    for (file, kind) in [
        ("/dev/zero", "a character device"),
        (fifo.to_str().unwrap(), "a FIFO"),
    ] {
        let o = blindspot(&["replay", "--leases", file, cap]);
        assert_eq!(o.status.code(), Some(1));
        assert_eq!(
            stderr(&o).lines().next().unwrap(),
            format!("blindspot: error: {file}: {kind}, not a regular file: give {what}")
        );
        assert!(o.stdout.is_empty());
    }
    let o = blindspot(&["replay", "--baseline", "/dev/zero", cap]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr(&o),
        "blindspot: /dev/zero: a character device, not a regular file: give a baseline file\n"
    );
}

/// `bytes` compressed with gzip and with zstd, with their file extensions.
fn compressed(bytes: &[u8]) -> [(&'static str, &'static str, Vec<u8>); 2] {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, bytes).unwrap();
    let zst = zstd::encode_all(bytes, 3).unwrap();
    [("gz", "gzip", gz.finish().unwrap()), ("zst", "zstd", zst)]
}

/// The records but the stats one (which names the file and its error).
fn without_stats(recs: &[serde_json::Value]) -> Vec<&serde_json::Value> {
    recs.iter().filter(|r| r["type"] != "stats").collect()
}

#[test]
fn a_cut_compressed_capture_gives_the_records_up_to_the_cut_and_status_3() {
    let cap = fixture("local/tls13-curl-nginx-download.pcap");
    let plain = std::fs::read(&cap).unwrap();
    let whole = replay(&[&cap], 2);
    let dir = tempfile::tempdir().unwrap();
    for (ext, kind, bytes) in compressed(&plain) {
        for percent in [50u64, 90] {
            let cut = dir.path().join(format!("cut{percent}.pcap.{ext}"));
            std::fs::write(&cut, &bytes[..bytes.len() * percent as usize / 100]).unwrap();
            let o = blindspot(&["replay", cut.to_str().unwrap()]);
            let err = stderr(&o);
            assert_eq!(o.status.code(), Some(3), "{err}");
            // One warning naming the file and the offset, said to be in the
            // decompressed stream, and the decompressor's reason.
            let head = format!(
                "blindspot: warning: {}: truncated at byte offset ",
                cut.display()
            );
            assert_eq!(err.lines().count(), 1, "{err}");
            let rest = err.strip_prefix(&head).unwrap_or_else(|| panic!("{err}"));
            let (offset, rest) = rest.split_once(' ').unwrap();
            let offset: usize = offset.parse().unwrap();
            let rest = rest
                .strip_prefix(&format!("of the decompressed stream ({kind} data: "))
                .unwrap_or_else(|| panic!("{err}"));
            let (_, rest) = rest
                .split_once("): the last record is incomplete (")
                .unwrap_or_else(|| panic!("{err}"));
            let (partial, rest) = rest.split_once(' ').unwrap();
            let partial: usize = partial.parse().unwrap();
            assert_eq!(rest, "bytes); records before it were processed\n", "{err}");
            let recs = parse_lines(&o.stdout);
            let stats = of_type(&recs, "stats")[0];
            let error = stats["files"][0]["error"].as_str().unwrap();
            assert!(error.contains("of the decompressed stream"), "{error}");
            // Exactly the records of the plain capture cut where the
            // decompressed stream ends.
            let plain_cut = dir.path().join("plain-cut.pcap");
            std::fs::write(&plain_cut, &plain[..offset + partial]).unwrap();
            let p = blindspot(&["replay", plain_cut.to_str().unwrap()]);
            assert_eq!(p.status.code(), Some(3), "{}", stderr(&p));
            assert!(
                stderr(&p).contains(&format!(
                    "truncated at byte offset {offset}: the last record is incomplete ({partial} bytes)"
                )),
                "{}",
                stderr(&p)
            );
            let from_plain = parse_lines(&p.stdout);
            assert_eq!(without_stats(&recs), without_stats(&from_plain));
            assert_eq!(
                stats["packets"],
                of_type(&from_plain, "stats")[0]["packets"]
            );
            // A prefix of the whole file's records: the same devices and
            // connections (same flow ids and starts), in the same order, the
            // cut one ended early.
            let types = |r: &[serde_json::Value]| -> Vec<String> {
                r.iter().map(|x| x["type"].to_string()).collect()
            };
            assert_eq!(types(&recs), types(&whole), "{ext} {percent}%");
            for (a, b) in recs.iter().zip(&whole) {
                match a["type"].as_str().unwrap() {
                    "device" => assert_eq!(a, b),
                    "tls" | "flow" => {
                        for k in ["flow_id", "community_id", "ts", "src_ip", "dst_ip"] {
                            assert_eq!(a[k], b[k], "{k}");
                        }
                    }
                    _ => {}
                }
            }
            let packets = |r: &[serde_json::Value]| of_type(r, "stats")[0]["packets"].as_u64();
            assert!(packets(&recs) < packets(&whole));
            assert!(packets(&recs).unwrap() * 100 > packets(&whole).unwrap() * (percent - 30));
        }
    }
}

#[test]
fn short_and_empty_captures_are_named_with_their_status() {
    let dir = tempfile::tempdir().unwrap();
    let run = |name: &str, bytes: &[u8]| {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        let o = blindspot(&["replay", path.to_str().unwrap()]);
        (o.status.code(), stderr(&o), path.display().to_string())
    };
    // The start of every capture magic, cut anywhere before byte 24: truncated.
    let header = std::fs::read(fixture("local/tls13-curl-nginx-download.pcap")).unwrap();
    let pcapng = std::fs::read(shared_file!("foxio-dhcp-dora.pcapng")).unwrap();
    assert_eq!(&header[..4], [0xd4, 0xc3, 0xb2, 0xa1]);
    assert_eq!(&pcapng[..4], [0x0a, 0x0d, 0x0d, 0x0a]);
    let magics: [&[u8]; 3] = [
        &[0xa1, 0xb2, 0xc3, 0xd4],
        &[0x4d, 0x3c, 0xb2, 0xa1],
        &[0xa1, 0xb2, 0x3c, 0x4d],
    ];
    let mut heads: Vec<Vec<u8>> = vec![header[..24].to_vec(), pcapng[..24].to_vec()];
    heads.extend(magics.iter().map(|m| [m, &header[4..24]].concat()));
    for head in &heads {
        for n in [1, 2, 3, 4, 5, 12, 23] {
            let (code, err, path) = run("short.pcap", &head[..n]);
            assert_eq!(
                err,
                format!(
                    "blindspot: warning: {path}: truncated at byte offset 0: the file header is incomplete ({n} bytes); no record could be read\n"
                ),
                "{:02x?}",
                &head[..n]
            );
            assert_eq!(code, Some(3), "{err}");
        }
    }
    // The same, compressed: the decompressed stream is short.
    let zst = zstd::encode_all(&header[..10], 3).unwrap();
    let (code, err, path) = run("short.pcap.zst", &zst);
    assert_eq!(
        err,
        format!(
            "blindspot: warning: {path}: truncated at byte offset 0: the file header is incomplete (10 bytes); no record could be read\n"
        )
    );
    assert_eq!(code, Some(3));
    // Garbage stays garbage, however short.
    for (bytes, first) in [
        (&b"x"[..], "78000000"),
        (b"\xd4\xc3\xb2\xa2", "d4c3b2a2"),
        (b"GIF89a", "47494638"),
    ] {
        let (code, err, path) = run("junk.pcap", bytes);
        assert_eq!(
            err,
            format!(
                "blindspot: error: {path}: not a pcap or pcapng file (first bytes {first}); give a capture written by tcpdump, tshark or dumpcap, optionally .gz or .zst\n"
            )
        );
        assert_eq!(code, Some(1));
    }
    // Empty: named, and no usable input.
    let (code, err, path) = run("empty.pcap", b"");
    assert_eq!(
        err,
        format!("blindspot: error: {path}: empty capture file\n")
    );
    assert_eq!(code, Some(1));
    let (code, err, path) = run("empty.pcap.gz", &compressed(b"")[0].2);
    assert_eq!(
        err,
        format!("blindspot: error: {path}: empty capture file\n")
    );
    assert_eq!(code, Some(1));
}
