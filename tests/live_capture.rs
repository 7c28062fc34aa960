//! Sensor mode on real interfaces: a veth pair in a network namespace this
//! test creates, the fixtures sent onto one end by `tcpreplay`, and
//! `blindspot capture` on the other end.
//!
//! Needs root (namespaces, AF_PACKET), `ip` and `tcpreplay`; where any is
//! missing each test says so and passes without checking anything.

mod common;

use common::{Sensor, is_root as nix_is_root, sh};

use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A namespace holding a veth pair `a` (sent onto) and `b` (captured),
/// removed on drop.
struct Veth {
    ns: String,
    a: String,
    b: String,
}

impl Veth {
    fn new(tag: &str) -> Option<Veth> {
        let skip = |why: &str| {
            eprintln!("SKIPPED live capture test ({tag}): {why}");
            None
        };
        if !nix_is_root() {
            return skip("not root (network namespaces and AF_PACKET need it)");
        }
        if !sh(&["tcpreplay", "--version"]) {
            return skip("tcpreplay is not installed (apt-get install tcpreplay)");
        }
        let id = std::process::id() % 100_000;
        let v = Veth {
            ns: format!("bs{tag}{id}"),
            a: format!("bsa{id}"),
            b: format!("bsb{id}"),
        };
        if !sh(&["ip", "netns", "add", &v.ns]) {
            return skip("cannot create a network namespace (ip netns add failed)");
        }
        let ok = v.exec(&[
            "ip", "link", "add", &v.a, "type", "veth", "peer", "name", &v.b,
        ]) && [&v.a, &v.b].iter().all(|i| {
            // No IPv6: the kernel would send its own router and neighbour
            // solicitations, which are not in the fixtures.
            v.exec(&[
                "sysctl",
                "-qw",
                &format!("net.ipv6.conf.{i}.disable_ipv6=1"),
            ]) && v.exec(&["ip", "link", "set", i, "mtu", "65535", "up"])
        });
        if !ok {
            return skip("cannot create a veth pair in the namespace");
        }
        Some(v)
    }

    fn exec(&self, args: &[&str]) -> bool {
        let mut full = vec!["ip", "netns", "exec", &self.ns];
        full.extend_from_slice(args);
        sh(&full)
    }

    fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns, program]);
        c
    }
}

impl Drop for Veth {
    fn drop(&mut self) {
        sh(&["ip", "netns", "del", &self.ns]);
    }
}

/// `blindspot capture -i b` in the namespace, ready (its start line read).
fn start_sensor(v: &Veth, args: &[&str]) -> Sensor {
    start_sensor_with_env(v, args, &[])
}

fn start_sensor_with_env(v: &Veth, args: &[&str], env: &[(&str, &str)]) -> Sensor {
    let mut cmd = v.command(env!("CARGO_BIN_EXE_blindspot"));
    cmd.args(["capture", "-i", &v.b])
        .args(args)
        .envs(env.iter().copied());
    Sensor::spawn(cmd)
}

fn tcpreplay(v: &Veth, rate: &[&str], files: &[PathBuf]) -> String {
    let out = v
        .command("tcpreplay")
        .args(["-i", &v.a])
        .args(rate)
        .args(files)
        .output()
        .expect("run tcpreplay");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "tcpreplay failed: {text}");
    text
}

/// The fixtures tcpreplay can send: Ethernet captures (one is BSD loopback).
/// The VXLAN captures of `fixtures/tunnels/` are among them: the kernel's
/// fanout hashes their outer UDP header, whose source port VXLAN picks per
/// direction, and the workers hand the packets to the worker of the inner
/// flow (`sensor/forward.rs`), so the records are replay's. Not
/// `fixtures/fragments/`: the sensor's
/// fanout group defragments (`PACKET_FANOUT_FLAG_DEFRAG`, so that every
/// fragment reaches its flow's worker), so a ring delivers one whole
/// datagram where the file holds its fragments, and the frame and byte
/// counts differ by design.
fn ethernet_fixtures() -> Vec<PathBuf> {
    common::all_captures()
        .into_iter()
        .filter(|p| !p.to_string_lossy().contains("foxio-tls-alpn-h2-ipv6"))
        .filter(|p| !p.to_string_lossy().contains("/fragments/"))
        .collect()
}

fn read_records(path: &Path) -> Vec<Value> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    common::parse_lines(&bytes)
}

/// Fields that depend on when packets arrive (tcpreplay sends at its own
/// rate) or on what the device tables learnt from earlier files.
fn timeless(v: &Value) -> Value {
    const DROP: &[&str] = &[
        "ts",
        "end_ts",
        "duration",
        "flow_id",
        "timing",
        "end_reason",
        "device",
        "limits",
        "lease_start",
        "lease_end",
        // The sensor names its interfaces; a replay has none.
        "observer",
    ];
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| {
                    !DROP.contains(&k.as_str()) && !k.starts_with("rtt") && !k.ends_with("_ms")
                })
                .map(|(k, x)| (k.clone(), timeless(x)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(timeless).collect()),
        x => x.clone(),
    }
}

fn multiset(records: &[Value], keep: impl Fn(&Value) -> bool) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for r in records.iter().filter(|r| keep(r)) {
        *m.entry(timeless(r).to_string()).or_insert(0) += 1;
    }
    m
}

fn connection_records(r: &Value) -> bool {
    matches!(r["type"].as_str(), Some("flow" | "tls" | "dhcp"))
}

#[test]
fn capture_on_a_veth_gives_the_records_of_replay() {
    let Some(v) = Veth::new("eq") else { return };
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("live.jsonl");
    let wire = dir.path().join("wire.pcap");
    // tcpdump records what crossed the wire, with the same kernel timestamps.
    let mut tcpdump = v
        .command("tcpdump")
        .args(["-i", &v.b, "-U", "-n", "--time-stamp-precision=nano", "-w"])
        .arg(&wire)
        .stderr(Stdio::null())
        .spawn()
        .expect("run tcpdump");
    // No CA learning: when a CA is learnt depends on the order in which
    // connections end, which tcpreplay's fixed rate changes (the detect
    // scenario's proxy CA is learnt from its browsing), and so would which
    // tls records say `inspection_source: learnt`.
    let cfg = dir.path().join("no-learning.toml");
    std::fs::write(&cfg, "[inspection]\nlearn_ca_domains = 0\n").unwrap();
    let sensor = start_sensor(
        &v,
        &["-o", live.to_str().unwrap(), "-c", cfg.to_str().unwrap()],
    );
    std::thread::sleep(Duration::from_millis(500));
    let files = ethernet_fixtures();
    tcpreplay(&v, &["--pps", "5000"], &files);
    std::thread::sleep(Duration::from_millis(500));
    let err = sensor.stop();
    // libpcap hands tcpdump a ring block after its 1 s timeout: let the
    // last one come before stopping it, or the wire's tail is missing.
    std::thread::sleep(Duration::from_millis(1200));
    sh(&["kill", "-TERM", &tcpdump.id().to_string()]);
    let _ = tcpdump.wait();
    let captured = read_records(&live);
    let stats = captured
        .iter()
        .rfind(|r| r["type"] == "stats")
        .expect("stats record");
    assert_eq!(stats["drops"]["kernel"], 0, "{err:?}");
    assert_eq!(stats["drops"]["internal"], 0);
    // Every record names the sensor and the interface it captured on.
    for r in &captured {
        assert_eq!(r["observer"]["interfaces"], serde_json::json!([v.b]), "{r}");
    }

    // 1. Against replay of the fixtures, one at a time: every record of a
    //    connection whose 5-tuple is used once. (A 5-tuple used by several
    //    connections — DHCP's 0.0.0.0:68 → 255.255.255.255:67 in many files —
    //    is split or joined by the idle timeouts, which depend on the gaps
    //    between packets that tcpreplay's fixed rate changes.)
    let mut replayed = Vec::new();
    for f in &files {
        replayed.extend(common::replay_with_config(&[f.as_path()], 1, &cfg));
    }
    let mut uses: BTreeMap<String, usize> = BTreeMap::new();
    for r in replayed.iter().chain(captured.iter()) {
        if r["type"] == "flow" {
            *uses.entry(r["community_id"].to_string()).or_insert(0) += 1;
        }
    }
    let once =
        |r: &Value| connection_records(r) && uses.get(&r["community_id"].to_string()) == Some(&2);
    let want = multiset(&replayed, once);
    let got = multiset(&captured, once);
    let total = replayed.iter().filter(|r| r["type"] == "flow").count();
    let compared = replayed
        .iter()
        .filter(|r| r["type"] == "flow" && once(r))
        .count();
    assert!(
        compared * 10 >= total * 8,
        "only {compared} of {total} flows compared"
    );
    for (k, n) in &want {
        assert_eq!(
            got.get(k),
            Some(n),
            "replay record missing from capture: {k}"
        );
    }
    assert_eq!(want, got);

    // 2. Against replay of what tcpdump recorded on the same interface: the
    //    same packets with the same timestamps give the same records, times
    //    included (only the end reason depends on when the sensor stopped).
    let wire_records = common::replay_with_config(&[wire.as_path()], 2, &cfg);
    let exact = |v: &Value| {
        let mut v = v.clone();
        if let Some(m) = v.as_object_mut() {
            m.remove("end_reason");
            // The sensor names its interface; a replay has none.
            m.remove("observer");
        }
        v.to_string()
    };
    let mut a: Vec<String> = wire_records
        .iter()
        .filter(|r| matches!(r["type"].as_str(), Some("flow" | "tls" | "dhcp" | "device")))
        .map(exact)
        .collect();
    let mut b: Vec<String> = captured
        .iter()
        .filter(|r| matches!(r["type"].as_str(), Some("flow" | "tls" | "dhcp" | "device")))
        .map(exact)
        .collect();
    a.sort();
    b.sort();
    let only_a: Vec<&String> = a.iter().filter(|x| !b.contains(x)).collect();
    let only_b: Vec<&String> = b.iter().filter(|x| !a.contains(x)).collect();
    assert!(
        only_a.is_empty() && only_b.is_empty(),
        "only in replay of the wire: {only_a:#?}\nonly in capture: {only_b:#?}"
    );
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x, y);
    }
    assert_eq!(
        stats["packets"],
        wire_records.iter().rfind(|r| r["type"] == "stats").unwrap()["packets"]
    );
}

/// Peak resident memory of a process, KiB.
fn vm_hwm(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

#[test]
fn a_flood_reports_its_drops_and_memory_stays_bounded() {
    let Some(v) = Veth::new("fl") else { return };
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("live.jsonl");
    let cfg = dir.path().join("small.toml");
    // Small rings (2 × 128 KiB per worker) and a small flow table.
    std::fs::write(
        &cfg,
        "[capture]\nring_block_size = 131072\nring_blocks = 2\nblock_timeout_ms = 10\nstats_interval_s = 1\n[flow]\nmax_flows = 2000\n",
    )
    .unwrap();
    let sensor = start_sensor(
        &v,
        &[
            "-o",
            live.to_str().unwrap(),
            "-c",
            cfg.to_str().unwrap(),
            "-w",
            "2",
        ],
    );
    let pid = sensor.child.id();
    let big = common::fixture("local/tls13-curl-nginx-download.pcap");
    let started = Instant::now();
    let out = tcpreplay(
        &v,
        &["--topspeed", "--loop", "200", "--duration", "8"],
        &[big],
    );
    let flood_s = started.elapsed();
    std::thread::sleep(Duration::from_millis(300));
    let peak_kib = vm_hwm(pid);
    let err = sensor.stop();
    // "Actual: 320200 packets (…) sent in …"
    let sent: u64 = out
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("Actual: ")?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no packet count in tcpreplay's output: {out}"));
    let records = read_records(&live);
    let all_stats: Vec<&Value> = records.iter().filter(|r| r["type"] == "stats").collect();
    assert!(
        all_stats.len() >= 2,
        "a stats record every second: {}",
        all_stats.len()
    );
    let last = all_stats.last().unwrap();
    let rings = last["capture"].as_array().unwrap();
    let ring_packets: u64 = rings.iter().map(|r| r["packets"].as_u64().unwrap()).sum();
    let kernel_drops: u64 = rings.iter().map(|r| r["drops"].as_u64().unwrap()).sum();
    eprintln!(
        "flood: {sent} sent in {flood_s:?}, ring saw {ring_packets}, kernel dropped {kernel_drops}, processed {}, peak RSS {} MiB; {err:?}",
        last["packets"],
        peak_kib >> 10
    );
    // Every packet sent reached a ring (the kernel's count includes drops),
    // and what the rings dropped is what blindspot did not process.
    assert_eq!(ring_packets, sent);
    assert!(
        kernel_drops > 0,
        "a 256 KiB ring at top speed must drop: {last}"
    );
    assert_eq!(last["drops"]["kernel"].as_u64(), Some(kernel_drops));
    assert_eq!(last["packets"].as_u64().unwrap() + kernel_drops, sent);
    // The stopping message says so too.
    assert!(
        err.iter()
            .any(|l| l.contains(&format!("kernel {kernel_drops}"))),
        "{err:?}"
    );
    // Memory: rings (2 workers × 128 KiB) and 2000 flows are small; the
    // process stays far below 200 MiB however long the flood.
    assert!(peak_kib < 200 << 10, "peak RSS {peak_kib} KiB");
    let flows = &last["flows"];
    assert!(flows["active_max"].as_u64().unwrap() <= 2000 + 2);
}

/// A `/proc/PID/status` field.
fn status_field(pid: u32, key: &str) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(key).map(|v| v.trim().to_string()))
        .unwrap_or_default()
}

fn assert_unprivileged(pid: u32, uid: &str) {
    assert_eq!(
        status_field(pid, "Uid:")
            .split_whitespace()
            .collect::<Vec<_>>(),
        [uid; 4]
    );
    for set in ["CapInh:", "CapPrm:", "CapEff:", "CapAmb:"] {
        assert_eq!(
            status_field(pid, set),
            "0000000000000000",
            "{set} of the sensor"
        );
    }
    assert_eq!(status_field(pid, "NoNewPrivs:"), "1");
}

#[test]
fn root_start_drops_to_the_user_and_every_capability() {
    let Some(v) = Veth::new("pu") else { return };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    // The output folder belongs to the user the sensor becomes.
    assert!(sh(&["chown", "nobody", out.to_str().unwrap()]));
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let sensor = start_sensor(&v, &["--user", "nobody", "-o", out.to_str().unwrap()]);
    let pid = sensor.child.id();
    // Every thread, not just the main one.
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let tid: u32 = task.unwrap().file_name().to_string_lossy().parse().unwrap();
        assert_unprivileged(tid, "65534");
    }
    tcpreplay(
        &v,
        &["--pps", "5000"],
        &[common::fixture("local/tls12-curl-nginx.pcap")],
    );
    std::thread::sleep(Duration::from_millis(300));
    sensor.stop();
    let files: Vec<PathBuf> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let text = zstd::decode_all(std::fs::File::open(&files[0]).unwrap()).unwrap();
    let recs = common::parse_lines(&text);
    assert_eq!(common::of_type(&recs, "tls")[0]["outcome"], "established");
}

#[test]
fn an_unprivileged_start_with_ambient_capabilities_drops_them() {
    // What the systemd unit does: a non-root user with CAP_NET_RAW alone as
    // an ambient capability, no_new_privs set. Promiscuous mode needs no
    // more: it is a packet-socket membership (PACKET_MR_PROMISC), which the
    // kernel counts and undoes when the socket closes.
    let Some(v) = Veth::new("pa") else { return };
    if !sh(&["setpriv", "--version"]) {
        eprintln!("SKIPPED: setpriv (util-linux) is not installed");
        return;
    }
    let mut child = v
        .command("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all,+net_raw",
            "--ambient-caps=+net_raw",
            "--bounding-set=-all,+net_raw",
            "--no-new-privs",
            env!("CARGO_BIN_EXE_blindspot"),
            "capture",
            "-i",
            &v.b,
            "--promiscuous",
            "-o",
            "-",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let first = lines.next().and_then(Result::ok).unwrap_or_default();
    assert!(
        first.contains("uid 65534") && first.contains("no capabilities"),
        "{first}"
    );
    assert_unprivileged(child.id(), "65534");
    // IFF_PROMISC (0x100) while the sensor runs, and not after.
    let flags = || {
        let out = v
            .command("cat")
            .arg(format!("/sys/class/net/{}/flags", v.b))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        u32::from_str_radix(text.trim().trim_start_matches("0x"), 16).unwrap()
    };
    assert_ne!(flags() & 0x100, 0, "promiscuous with CAP_NET_RAW alone");
    sh(&["kill", "-TERM", &child.id().to_string()]);
    assert!(child.wait().unwrap().success());
    assert_eq!(flags() & 0x100, 0, "promiscuous mode ends with the sensor");
}

#[test]
fn sighup_starts_a_new_file_and_nothing_is_lost() {
    let Some(v) = Veth::new("hu") else { return };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out/");
    let sensor = start_sensor(&v, &["-o", out.to_str().unwrap()]);
    let files = [
        common::fixture("local/tls12-curl-nginx.pcap"),
        common::fixture("local/tls13-curl-nginx-download.pcap"),
    ];
    tcpreplay(&v, &["--pps", "5000"], &files[..1]);
    std::thread::sleep(Duration::from_millis(1500));
    assert!(sh(&["kill", "-HUP", &sensor.child.id().to_string()]));
    std::thread::sleep(Duration::from_millis(500));
    tcpreplay(&v, &["--pps", "5000"], &files[1..]);
    std::thread::sleep(Duration::from_millis(300));
    let err = sensor.stop();
    assert!(
        err.iter().any(|l| l.contains("SIGHUP: output reopened")),
        "{err:?}"
    );
    let mut names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names.len(), 2, "{names:?}");
    let mut recs = Vec::new();
    for n in &names {
        assert!(
            n.starts_with("blindspot-") && n.ends_with(".jsonl.zst"),
            "{n}"
        );
        recs.extend(common::parse_lines(
            &zstd::decode_all(std::fs::File::open(out.join(n)).unwrap()).unwrap(),
        ));
    }
    // Both connections, once each, across the two files.
    assert_eq!(common::of_type(&recs, "tls").len(), 2);
    let stats = recs.iter().rfind(|r| r["type"] == "stats").unwrap();
    assert_eq!(stats["output"]["reopens"], 1);
    assert_eq!(stats["records"]["tls"], 2);
}

/// The files of an output folder, sorted (by name: time opened, then number).
fn folder_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

/// The last stats record's `output.bytes` counts every byte of the output
/// before it: what is on disk is that, then one last write (`tail`, a
/// zstd frame or a plain line) holding the stats record alone.
fn check_output_bytes(files: &[PathBuf], stats: &Value, zst: bool) {
    let bytes = stats["output"]["bytes"].as_u64().unwrap();
    let mut all = Vec::new();
    for f in files {
        all.extend(std::fs::read(f).unwrap());
    }
    assert!(bytes < all.len() as u64, "{bytes} of {}", all.len());
    let tail = &all[bytes as usize..];
    let tail = if zst {
        zstd::decode_all(tail).expect("the last write is one whole zstd frame")
    } else {
        tail.to_vec()
    };
    let lines = common::parse_lines(&tail);
    assert_eq!(lines.len(), 1, "{}", String::from_utf8_lossy(&tail));
    assert_eq!(&lines[0], stats);
    // Nothing held, nothing queued, when it was made.
    assert_eq!(stats["output"]["pending_bytes"], 0);
    assert_eq!(stats["output"]["queued_blocks"], 0);
}

/// `zstd -t` accepts every file, and `zstdcat` reads them all as one stream.
fn check_zstd_files(files: &[PathBuf]) -> Vec<Value> {
    let mut recs = Vec::new();
    for f in files {
        assert!(std::fs::metadata(f).unwrap().len() > 0, "{}", f.display());
        recs.extend(common::parse_lines(
            &zstd::decode_all(std::fs::File::open(f).unwrap())
                .unwrap_or_else(|e| panic!("{}: {e}", f.display())),
        ));
    }
    if sh(&["zstd", "--version"]) {
        for f in files {
            let out = Command::new("zstd").arg("-qt").arg(f).output().unwrap();
            assert!(
                out.status.success(),
                "zstd -t {}: {}",
                f.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let out = Command::new("zstdcat").args(files).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(common::parse_lines(&out.stdout), recs);
    } else {
        eprintln!("zstd is not installed: files checked with the zstd crate only");
    }
    recs
}

#[test]
fn sighups_with_nothing_written_leave_no_invalid_file() {
    let Some(v) = Veth::new("hz") else { return };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out/");
    let sensor = start_sensor(&v, &["-o", out.to_str().unwrap()]);
    // No traffic: the file begun at start is still empty at each SIGHUP.
    for _ in 0..2 {
        std::thread::sleep(Duration::from_millis(400));
        assert!(sh(&["kill", "-HUP", &sensor.child.id().to_string()]));
    }
    std::thread::sleep(Duration::from_millis(400));
    let err = sensor.stop();
    let files = folder_files(&out);
    let recs = check_zstd_files(&files);
    // One file (no empty ones before it), ending with the stats record.
    assert_eq!(files.len(), 1, "{files:?} {err:?}");
    let stats = recs.last().unwrap();
    assert_eq!(stats["type"], "stats");
    assert_eq!(stats["output"]["reopens"], 2);
    check_output_bytes(&files, stats, true);
}

#[test]
fn a_full_disk_is_reported_and_retried_without_losing_records() {
    let Some(v) = Veth::new("df") else { return };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("small");
    std::fs::create_dir(&out).unwrap();
    if !sh(&[
        "mount",
        "-t",
        "tmpfs",
        "-o",
        "size=16k",
        "tmpfs",
        out.to_str().unwrap(),
    ]) {
        eprintln!("SKIPPED: cannot mount a tmpfs");
        return;
    }
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            sh(&["umount", "-l", self.0.to_str().unwrap()]);
        }
    }
    let _guard = Unmount(out.clone());
    let sensor = start_sensor(&v, &["--plain", "-o", &format!("{}/", out.display())]);
    // Far more than 16 KiB of plain records.
    tcpreplay(&v, &["--pps", "5000"], &ethernet_fixtures());
    std::thread::sleep(Duration::from_millis(2500));
    // The operator frees space; the sink writes what it held.
    assert!(sh(&[
        "mount",
        "-o",
        "remount,size=64m",
        out.to_str().unwrap()
    ]));
    std::thread::sleep(Duration::from_millis(1500));
    let err = sensor.stop();
    assert!(
        err.iter().any(|l| l.contains("No space left on device")),
        "{err:?}"
    );
    assert!(err.iter().any(|l| l.contains("again after")), "{err:?}");
    let files = folder_files(&out);
    let mut recs = Vec::new();
    for f in &files {
        recs.extend(read_records(f));
    }
    let stats = recs.last().unwrap();
    assert_eq!(stats["type"], "stats");
    // Each failed write counted (retried every second while the disk was
    // full), and the bytes counted are those on disk.
    let errors = stats["output"]["write_errors"].as_u64().unwrap();
    assert!((1..=10).contains(&errors), "{errors}");
    check_output_bytes(&files, stats, false);
    // Every record counted was written, whole (each line parsed above).
    for kind in ["flow", "tls", "dhcp"] {
        assert_eq!(
            common::of_type(&recs, kind).len() as u64,
            stats["records"][kind].as_u64().unwrap(),
            "{kind}"
        );
    }
    assert_eq!(stats["drops"]["internal"], 0);
}

/// Issue 15: a panic on a worker (here made on purpose by a debug-build
/// hook on the first packet) ends the whole sensor within a second, with a
/// non-zero status and one line naming the thread, so that systemd restarts
/// it; before, the worker died alone and the sensor ran on blind.
#[test]
fn a_worker_panic_ends_the_sensor_at_once() {
    let Some(v) = Veth::new("pn") else { return };
    let mut sensor = start_sensor_with_env(&v, &[], &[("BLINDSPOT_TEST_PANIC", "1")]);
    tcpreplay(
        &v,
        &["--pps", "100"],
        &[common::fixture("local/tls12-curl-nginx.pcap")],
    );
    let sent = Instant::now();
    let status = loop {
        if let Some(s) = sensor.child.try_wait().unwrap() {
            break s;
        }
        assert!(
            sent.elapsed() < Duration::from_secs(1),
            "the sensor still runs a second after its worker panicked"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    let err = sensor.rest_of_stderr();
    assert!(!status.success(), "{status}");
    let fatal: Vec<&String> = err.iter().filter(|l| l.contains("fatal")).collect();
    assert_eq!(fatal.len(), 1, "{err:?}");
    assert!(
        fatal[0].starts_with("blindspot: fatal: thread 'worker-0' panicked at src/flow/table.rs:"),
        "{}",
        fatal[0]
    );
    assert!(fatal[0].contains("BLINDSPOT_TEST_PANIC"), "{}", fatal[0]);
}

/// Issue 15's reproducer sent live: the DHCPDISCOVER with `hlen` 17 among
/// a real DHCP exchange, then a TLS connection. The sensor keeps writing
/// records (it used to lose its worker and write nothing, not even stats,
/// and exit 0): every DHCP message and the later TLS connection are there,
/// and it stops cleanly.
#[test]
fn a_dhcp_hlen_of_17_leaves_the_sensor_writing() {
    let Some(v) = Veth::new("hl") else { return };
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("live.jsonl");
    let sensor = start_sensor(&v, &["-o", live.to_str().unwrap()]);
    tcpreplay(
        &v,
        &["--pps", "1000"],
        &[common::fixture("hostile/dhcp-hlen17.pcap")],
    );
    std::thread::sleep(Duration::from_millis(300));
    tcpreplay(
        &v,
        &["--pps", "1000"],
        &[common::fixture("local/tls12-curl-nginx.pcap")],
    );
    std::thread::sleep(Duration::from_millis(500));
    sensor.stop();
    let recs = read_records(&live);
    let dhcp = common::of_type(&recs, "dhcp");
    assert_eq!(dhcp.len(), 6, "every DHCP message, the hostile one too");
    assert_eq!(
        dhcp.iter().filter(|r| r["client_mac"].is_null()).count(),
        1,
        "the hlen-17 DISCOVER, without a MAC"
    );
    assert_eq!(
        common::of_type(&recs, "tls").len(),
        1,
        "traffic after it is still seen"
    );
    let stats = recs.iter().rfind(|r| r["type"] == "stats").unwrap();
    assert_eq!(stats["records"]["dhcp"], 6);
}

/// `capture -o - | head -1`: once the reader of standard output has gone,
/// the sensor stops as on SIGTERM, exit 0, with no error line.
#[test]
fn a_closed_standard_output_stops_the_sensor_quietly() {
    let Some(v) = Veth::new("bp") else { return };
    let mut child = v
        .command(env!("CARGO_BIN_EXE_blindspot"))
        .args(["capture", "-i", &v.b, "-o", "-"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap()).lines();
    let first = err.next().and_then(Result::ok).unwrap_or_default();
    assert!(first.contains("capturing on"), "{first}");
    tcpreplay(
        &v,
        &["--pps", "1000"],
        &[common::fixture("local/tls12-curl-nginx.pcap")],
    );
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert!(line.starts_with('{'), "{line}");
    drop(out); // as `head -1` does
    // No more traffic: the sensor has nothing to write, and finds its reader
    // gone all the same (as `tail -f` does), within its drain time.
    let started = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "still running 30 s after its reader left"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let rest: Vec<String> = err.map_while(Result::ok).collect();
    assert!(status.success(), "{status}: {rest:?}");
    assert!(
        !rest
            .iter()
            .any(|l| l.contains("cannot write") || l.contains("error")),
        "{rest:?}"
    );
}

/// Reads the records of a zstd file cut anywhere (a sensor killed while
/// writing): every whole frame's lines.
fn read_cut_zstd(path: &Path) -> Vec<Value> {
    use std::io::Read;
    let f = std::fs::File::open(path).unwrap();
    let mut d = zstd::stream::read::Decoder::new(f).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 1 << 16];
    while let Ok(n) = d.read(&mut buf) {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    // A line cut by the kill is not a record.
    let end = out.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    common::parse_lines(&out[..end])
}

/// Issue 15: `kill -9` of a sensor under steady traffic loses at most the
/// last second of finished connections. Connections (a real curl/nginx TLS
/// exchange, its addresses made unique per loop by tcpreplay) are sent
/// steadily while tcpdump records them; the sensor is killed mid-stream. A
/// replay of tcpdump's capture says which connections had closed (their
/// last packet) more than a second before the kill: each has its flow
/// record on disk.
#[test]
fn kill_9_under_load_loses_at_most_the_last_second() {
    let Some(v) = Veth::new("k9") else { return };
    if !sh(&["tcpdump", "--version"]) {
        eprintln!("SKIPPED kill -9 test: tcpdump is not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out/");
    let pcap = dir.path().join("sent.pcap");
    let mut dump = v
        .command("tcpdump")
        .args([
            "-i",
            &v.b,
            "-w",
            pcap.to_str().unwrap(),
            "-U",
            "--immediate-mode",
            "-n",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut sensor = start_sensor(&v, &["-o", out.to_str().unwrap()]);
    std::thread::sleep(Duration::from_millis(500));
    // About 60 connections a second, for about 6 seconds.
    let mut replay = v
        .command("tcpreplay")
        .args(["-i", &v.a, "--pps", "900", "--loop", "400", "--unique-ip"])
        .arg(common::fixture("local/tls12-curl-nginx.pcap"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(4));
    let killed_at = blindspot::time::Timestamp::now();
    sensor.child.kill().unwrap(); // SIGKILL
    sensor.child.wait().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let _ = replay.kill();
    let _ = replay.wait();
    std::thread::sleep(Duration::from_millis(300));
    assert!(sh(&["kill", "-INT", &dump.id().to_string()]));
    dump.wait().unwrap();

    let mut on_disk = Vec::new();
    for e in std::fs::read_dir(&out).unwrap() {
        on_disk.extend(read_cut_zstd(&e.unwrap().path()));
    }
    let tuple = |r: &Value| {
        format!(
            "{}:{}-{}:{}",
            r["src_ip"], r["src_port"], r["dst_ip"], r["dst_port"]
        )
    };
    let written: std::collections::BTreeSet<String> = common::of_type(&on_disk, "flow")
        .into_iter()
        .map(tuple)
        .collect();
    let truth = common::replay(&[pcap.as_path()], 1);
    let second = 1_000_000_000;
    let mut due = 0;
    let mut lost = Vec::new();
    for f in common::of_type(&truth, "flow") {
        let end = blindspot::time::Timestamp::parse_rfc3339(f["end_ts"].as_str().unwrap()).unwrap();
        if f["end_reason"] == "closed" && end.0 + second < killed_at.0 {
            due += 1;
            if !written.contains(&tuple(f)) {
                lost.push(format!(
                    "{} ended {:.3} s before the kill",
                    tuple(f),
                    (killed_at.0 - end.0) as f64 / 1e9
                ));
            }
        }
    }
    assert!(
        due >= 100,
        "only {due} connections closed before the kill: too little traffic to judge"
    );
    assert!(
        lost.is_empty(),
        "{} of {due} closed connections lost: {lost:?}",
        lost.len()
    );
}

#[cfg(feature = "libpcap")]
#[test]
fn libpcap_capture_applies_the_bpf_filter() {
    let Some(v) = Veth::new("lp") else { return };
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("live.jsonl");
    let sensor = start_sensor(&v, &["--filter", "tcp", "-o", live.to_str().unwrap()]);
    let files = [
        common::fixture("local/dhcp-dnsmasq-dhclient.pcap"),
        common::fixture("local/tls12-curl-nginx.pcap"),
    ];
    tcpreplay(&v, &["--pps", "5000"], &files);
    std::thread::sleep(Duration::from_millis(500));
    sensor.stop();
    let captured = read_records(&live);
    // The filter let only TCP through: the DHCP exchange is not there, the
    // TLS connection is, with the records replay gives.
    assert!(common::of_type(&captured, "dhcp").is_empty());
    assert!(
        common::of_type(&captured, "flow")
            .iter()
            .all(|f| f["proto"] == "tcp")
    );
    let want = multiset(
        &common::replay(&[files[1].as_path()], 1),
        connection_records,
    );
    assert_eq!(multiset(&captured, connection_records), want);
    let stats = captured.iter().rfind(|r| r["type"] == "stats").unwrap();
    assert_eq!(stats["capture"][0]["drops"], 0);
}

/// Sensor mode writes a detection when its window reaches its threshold
/// (`status: open`), not when the window closes an hour later: the detect
/// scenario sent at ten times its speed, the pinning app's first `open`
/// detection must be on the output within 60 s of the session that made
/// the threshold (its `end_ts`), and the drain at SIGTERM closes it.
#[test]
fn a_detection_is_written_within_a_minute_of_its_threshold() {
    let Some(v) = Veth::new("op") else { return };
    let d = |f: &str| common::fixture(&format!("detect/{f}"));
    let mut child = v
        .command(env!("CARGO_BIN_EXE_blindspot"))
        .args(["capture", "-i", &v.b, "-o", "-", "-w", "2"])
        .arg("-c")
        .arg(d("config.toml"))
        .arg("--mdm")
        .arg(d("mdm.json"))
        .arg("--apps")
        .arg(d("catalog.json"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start blindspot capture");
    let mut err = BufReader::new(child.stderr.take().unwrap()).lines();
    let first = err.next().and_then(Result::ok).unwrap_or_default();
    assert!(
        first.contains("capturing on"),
        "capture did not start: {first}"
    );
    // Each output line with the wall-clock time it arrived.
    let (tx, rx) = std::sync::mpsc::channel::<(std::time::SystemTime, Value)>();
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str::<Value>(&line) {
                let _ = tx.send((std::time::SystemTime::now(), v));
            }
        }
    });
    tcpreplay(&v, &["--multiplier", "10"], &[d("scenario.pcap")]);
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut records = Vec::new();
    let opened = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok((at, r)) => {
                let hit = r["type"] == "detection"
                    && r["status"] == "open"
                    && r["pattern"] == "repeated_handshake_rejection";
                records.push(r.clone());
                if hit {
                    break Some((at, r));
                }
            }
            Err(_) => break None,
        }
    };
    let (at, open) = opened.unwrap_or_else(|| {
        panic!(
            "no open repeated_handshake_rejection detection within 90 s; got {:?}",
            records
                .iter()
                .map(|r| r["type"].clone())
                .collect::<Vec<_>>()
        )
    });
    let end_ts = chrono_like_secs(open["end_ts"].as_str().unwrap());
    let arrived = at
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        arrived - end_ts <= 60.0,
        "open detection {:.1} s after the session that made its threshold",
        arrived - end_ts
    );
    assert_eq!(open["destination"]["name"], "api.pinned.example");
    assert!(open["flow_ids"].as_array().unwrap().len() >= 3);
    // SIGTERM closes every window: the same detection, closed.
    assert!(sh(&["kill", "-TERM", &child.id().to_string()]));
    assert!(child.wait().unwrap().success());
    reader.join().unwrap();
    records.extend(rx.try_iter().map(|(_, r)| r));
    let closed: Vec<&Value> = records
        .iter()
        .filter(|r| r["type"] == "detection" && r["detection_id"] == open["detection_id"])
        .filter(|r| r["status"] == "closed")
        .collect();
    assert_eq!(closed.len(), 1, "the open detection is closed at the drain");
}

/// Seconds since the epoch of an RFC 3339 UTC time as the records write it
/// (`2026-11-21T07:29:35.273897Z`).
fn chrono_like_secs(t: &str) -> f64 {
    let (date, time) = t.trim_end_matches('Z').split_once('T').unwrap();
    let d: Vec<i64> = date.split('-').map(|x| x.parse().unwrap()).collect();
    let (y, m, day) = (d[0], d[1], d[2]);
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let hms: Vec<f64> = time.split(':').map(|x| x.parse().unwrap()).collect();
    days as f64 * 86_400.0 + hms[0] * 3600.0 + hms[1] * 60.0 + hms[2]
}

/// SIGHUP reloads the config and its `[inputs]`: a config that does not
/// load keeps the running one (said on stderr); one that does replaces the
/// MDM inventory, and the detections name the phone from the new file.
#[test]
fn sighup_reloads_inputs_and_keeps_the_old_ones_when_the_new_do_not_load() {
    let Some(v) = Veth::new("rl") else { return };
    let dir = tempfile::tempdir().unwrap();
    let d = |f: &str| common::fixture(&format!("detect/{f}"));
    std::fs::copy(d("inspection-ca.pem"), dir.path().join("inspection-ca.pem")).unwrap();
    let base = std::fs::read_to_string(d("config.toml")).unwrap();
    let cfg = dir.path().join("site.toml");
    let mdm = dir.path().join("mdm.json");
    let good = format!("{base}\n[inputs]\nmdm = [\"mdm.json\"]\n");
    std::fs::write(&cfg, &good).unwrap();
    // At start the inventory does not know the phone.
    std::fs::write(&mdm, "{\"devices\": []}").unwrap();
    let out = dir.path().join("out.jsonl");
    let sensor = start_sensor(
        &v,
        &["-o", out.to_str().unwrap(), "-c", cfg.to_str().unwrap()],
    );
    let hup = |s: &Sensor| {
        assert!(sh(&["kill", "-HUP", &s.child.id().to_string()]));
        std::thread::sleep(Duration::from_millis(600));
    };
    // A broken config: refused, the running one stays.
    std::fs::write(&cfg, format!("{good}\n[detections]\nwindow_s = 0\n")).unwrap();
    hup(&sensor);
    // The fixed config and the real inventory: taken.
    std::fs::write(&cfg, &good).unwrap();
    std::fs::copy(d("mdm.json"), &mdm).unwrap();
    hup(&sensor);
    tcpreplay(&v, &["--multiplier", "10"], &[d("scenario.pcap")]);
    std::thread::sleep(Duration::from_secs(2));
    let err = sensor.stop();
    let said = |s: &str| err.iter().any(|l| l.contains(s));
    assert!(said("did not load; keeping the running ones"), "{err:#?}");
    assert!(
        said("SIGHUP: inputs, [inspection] and [detections] reloaded"),
        "{err:#?}"
    );
    let recs = read_records(&out);
    let det = common::of_type(&recs, "detection");
    assert!(!det.is_empty());
    for x in det {
        assert_eq!(x["device"]["serial"], "F2LXK0DETECT", "{x}");
    }
}
