//! Fleet mode (issue 22) against a real 3-node NATS JetStream cluster on
//! loopback (Debian's `nats-server`, configs written to a temp dir, R3
//! streams); every test says SKIPPED and returns where `nats-server` is
//! absent.
//!
//! - Roaming: the detection scenario cut in two by time with editcap, between
//!   the pinning app's third and fourth attempt (the
//!   device's DHCP exchange, taken out with tshark, starts the second half,
//!   as a phone joining another site would), each half replayed by its own
//!   sensor with `--publish`, and a rejection threshold (4) that the pinning
//!   app's five TLS 1.3 rejections reach only together (tshark counts them
//!   in each half). `correlate` writes the same detections as one replay of
//!   the whole capture, the roaming one with both sensors as observers; two
//!   processes splitting the partitions write the same as one; a consumer
//!   stopped (SIGTERM) after site A published and started again after
//!   site B did writes the same too; a finished consumer's restart reads
//!   nothing again.
//! - Fault: two sensors publish while the stream's leader is killed with
//!   SIGKILL; every record they acknowledged is in the stream exactly once,
//!   and each device's sessions are in the order the sensor wrote them.
#![cfg(feature = "fleet")]

mod common;
use common::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn have_nats() -> bool {
    let ok = Command::new("nats-server")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("SKIPPED: nats-server is not installed (apt-get install nats-server)");
    }
    ok
}

fn have_wireshark_tools() -> bool {
    let ok = ["tshark", "editcap", "mergecap"].iter().all(|t| {
        Command::new(t)
            .arg("-v")
            .output()
            .is_ok_and(|o| o.status.success())
    });
    if !ok {
        eprintln!("SKIPPED: tshark, editcap or mergecap missing (apt-get install tshark)");
    }
    ok
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Three nats-server processes with JetStream, routed to each other.
struct Cluster {
    dir: tempfile::TempDir,
    nodes: Vec<Option<Child>>,
    ports: Vec<u16>,
}

impl Cluster {
    fn start() -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let routes: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let route_list = routes
            .iter()
            .map(|p| format!("nats-route://127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(", ");
        let mut nodes = Vec::new();
        for i in 0..3 {
            let store = dir.path().join(format!("store{i}"));
            let conf = dir.path().join(format!("n{i}.conf"));
            std::fs::write(
                &conf,
                format!(
                    "server_name: n{i}\nlisten: 127.0.0.1:{}\njetstream {{ store_dir: \"{}\", max_memory_store: 64MB, max_file_store: 1GB }}\ncluster {{ name: fleet-test, listen: 127.0.0.1:{}, routes: [{route_list}] }}\n",
                    ports[i],
                    store.display(),
                    routes[i]
                ),
            )
            .unwrap();
            let log = std::fs::File::create(dir.path().join(format!("n{i}.log"))).unwrap();
            let child = Command::new("nats-server")
                .arg("-c")
                .arg(&conf)
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("start nats-server");
            nodes.push(Some(child));
        }
        let c = Cluster { dir, nodes, ports };
        // Ready when every node is up and the cluster has a JetStream
        // metadata leader (the leader logs it).
        let t0 = Instant::now();
        while !((0..3).all(|i| c.log(i).contains("Server is ready"))
            && (0..3).any(|i| c.log(i).contains("new metadata leader")))
        {
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "the cluster did not elect a JetStream leader in 30 s: {}",
                c.log(0)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        c
    }

    fn log(&self, i: usize) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("n{i}.log"))).unwrap_or_default()
    }

    fn url(&self, i: usize) -> String {
        format!("nats://127.0.0.1:{}", self.ports[i])
    }

    fn urls(&self) -> String {
        (0..3).map(|i| self.url(i)).collect::<Vec<_>>().join(",")
    }

    fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].take() {
            // Child::kill sends SIGKILL.
            c.kill().unwrap();
            let _ = c.wait();
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..3 {
            self.kill(i);
        }
    }
}

fn run_ok(cmd: &mut Command) -> std::process::Output {
    let out = cmd.output().expect("run");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_blindspot"))
}

/// The scenario's config with `extra` appended (paths made absolute).
fn config(dir: &Path, name: &str, threshold: u32, extra: &str) -> PathBuf {
    let text = std::fs::read_to_string(fixture("detect/config.toml"))
        .unwrap()
        .replace(
            "rejection_min_handshakes = 3",
            &format!("rejection_min_handshakes = {threshold}"),
        )
        .replace(
            "\"inspection-ca.pem\"",
            &format!(
                "{:?}",
                fixture("detect/inspection-ca.pem").display().to_string()
            ),
        );
    let p = dir.join(name);
    std::fs::write(&p, format!("{text}\n{extra}\n")).unwrap();
    p
}

/// The scenario's input files, without its config.
fn inputs() -> Vec<String> {
    scenario_inputs().split_off(2)
}

fn read(p: &Path) -> Vec<Value> {
    parse_lines(&std::fs::read(p).unwrap())
}

/// Detections by id, without the writer's `observer` and `observers`.
fn detections(recs: &[Value]) -> BTreeMap<String, Value> {
    of_type(recs, "detection")
        .into_iter()
        .map(|d| {
            let mut d = d.clone();
            let o = d.as_object_mut().unwrap();
            o.remove("observer");
            o.remove("observers");
            (o["detection_id"].as_str().unwrap().to_string(), d)
        })
        .collect()
}

/// Panics with the ids and fields that differ (not the whole records).
fn assert_same(got: &BTreeMap<String, Value>, want: &BTreeMap<String, Value>, what: &str) {
    let mut diff = Vec::new();
    for id in want.keys().chain(got.keys()) {
        match (got.get(id), want.get(id)) {
            (Some(g), Some(w)) => {
                for (k, wv) in w.as_object().unwrap() {
                    if g.get(k) != Some(wv) {
                        let g = g.get(k).map_or("absent".into(), |v| v.to_string());
                        diff.push(format!(
                            "{id}.{k}: {g:.200} instead of {:.200}",
                            wv.to_string()
                        ));
                    }
                }
            }
            (None, Some(w)) => diff.push(format!("{id} missing ({})", w["pattern"])),
            (Some(g), None) => diff.push(format!("{id} extra ({})", g["pattern"])),
            (None, None) => {}
        }
    }
    diff.dedup();
    assert!(diff.is_empty(), "{what}:\n{}", diff.join("\n"));
}

fn observers(recs: &[Value]) -> BTreeMap<String, Vec<String>> {
    of_type(recs, "detection")
        .into_iter()
        .map(|d| {
            let o = d["observers"]
                .as_array()
                .map(|a| a.iter().map(|s| s.as_str().unwrap().to_string()).collect())
                .unwrap_or_default();
            (d["detection_id"].as_str().unwrap().to_string(), o)
        })
        .collect()
}

/// TLS ClientHellos to api.pinned.example in a capture, counted by tshark.
fn pinned_hellos(pcap: &Path) -> usize {
    pinned_hello_times(pcap).len()
}

/// When the pinning app's TLS 1.3 ClientHellos were sent (epoch seconds, tshark).
fn pinned_hello_times(pcap: &Path) -> Vec<f64> {
    let out = run_ok(Command::new("tshark").args([
        "-r",
        pcap.to_str().unwrap(),
        "-Y",
        "tls.handshake.type == 1 && tls.handshake.extensions_server_name == \"api.pinned.example\" && tls.handshake.extensions.supported_version == 0x0304",
        "-T",
        "fields",
        "-e",
        "frame.time_epoch",
    ]));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim().parse().unwrap())
        .collect()
}

fn fleet_stats(recs: &[Value]) -> Value {
    of_type(recs, "stats").last().unwrap()["fleet"].clone()
}

fn correlate(cfg: &Path, from: &str, share: &str, out: &Path) -> Command {
    let mut c = bin();
    c.arg("correlate")
        .arg("-c")
        .arg(cfg)
        .args(inputs())
        .args([
            "--from",
            from,
            "--partitions",
            share,
            "--until-idle",
            "1.5",
            "-o",
        ])
        .arg(out);
    c
}

#[test]
fn a_roaming_device_is_one_finding_with_both_sensors() {
    if !have_nats() || !have_wireshark_tools() {
        return;
    }
    let cluster = Cluster::start();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let whole = fixture("detect/scenario.pcap");
    // Cut between the pinning app's third and fourth attempt (tshark's times).
    let times = pinned_hello_times(&whole);
    assert_eq!(times.len(), 5, "{times:?}");
    let cut = format!("{:.6}", (times[2] + times[3]) / 2.0);
    let cut = cut.as_str();
    let (a, late, ids, b) = (
        d.join("a.pcap"),
        d.join("late.pcap"),
        d.join("ids.pcap"),
        d.join("b.pcap"),
    );
    run_ok(
        Command::new("editcap")
            .arg("-B")
            .arg(cut)
            .arg(&whole)
            .arg(&a),
    );
    run_ok(
        Command::new("editcap")
            .arg("-A")
            .arg(cut)
            .arg(&whole)
            .arg(&late),
    );
    run_ok(
        Command::new("tshark")
            .arg("-r")
            .arg(&whole)
            .args(["-Y", "dhcp", "-w"])
            .arg(&ids),
    );
    run_ok(
        Command::new("mergecap")
            .arg("-w")
            .arg(&b)
            .arg(&ids)
            .arg(&late),
    );
    // The pinning app's TLS 1.3 attempts: 5 in all, 3 at site A, 2 at site B.
    let (na, nb) = (pinned_hellos(&a), pinned_hellos(&b));
    assert_eq!((pinned_hellos(&whole), na, nb), (5, 3, 2));
    let threshold = 4;
    assert!(na < threshold as usize && nb < threshold as usize);

    let fleet = "[fleet]\nstream = \"ROAM\"\nsubject = \"roam\"\npartitions = 8\n";
    let one = config(d, "whole.toml", threshold, "");
    let cfg_a = config(
        d,
        "a.toml",
        threshold,
        &format!("[sensor]\nname = \"site-a\"\n{fleet}"),
    );
    let cfg_b = config(
        d,
        "b.toml",
        threshold,
        &format!("[sensor]\nname = \"site-b\"\n{fleet}"),
    );
    let cfg_c = config(d, "c.toml", threshold, fleet);

    let whole_out = d.join("whole.jsonl");
    run_ok(
        bin()
            .arg("replay")
            .arg("-c")
            .arg(&one)
            .args(inputs())
            .arg("-o")
            .arg(&whole_out)
            .arg(&whole),
    );
    let want = detections(&read(&whole_out));
    // A consumer that runs while only site A has published, and is
    // stopped (SIGTERM) before site B publishes: with a 5 s reorder delay
    // it applies most of site A's sessions, but their windows are still
    // open, so it acknowledges none of them and gives them back.
    let cfg_r = config(
        d,
        "r.toml",
        threshold,
        &format!("{fleet}durable = \"restart\"\nreorder_s = 5\n"),
    );
    let mut early: Option<(Child, PathBuf)> = None;
    let mut roaming = None;
    for (pcap, cfg, url) in [(&a, &cfg_a, cluster.url(0)), (&b, &cfg_b, cluster.url(1))] {
        if let Some((child, out)) = early.take() {
            let mut child = child;
            std::thread::sleep(Duration::from_secs(3));
            run_ok(Command::new("kill").args(["-TERM", &child.id().to_string()]));
            assert!(child.wait().unwrap().success());
            let recs = read(&out);
            assert!(detections(&recs).is_empty());
            let st = fleet_stats(&recs);
            assert!(st["sessions"].as_u64().unwrap() > 0, "{st}");
            // Every message with sessions is held (a message of device
            // records only is acknowledged at once).
            assert!(st["given_back"].as_u64().unwrap() > 0, "{st}");
        }
        let out = pcap.with_extension("jsonl");
        run_ok(
            bin()
                .arg("replay")
                .arg("-c")
                .arg(cfg)
                .args(inputs())
                .args(["--publish", &url, "-o"])
                .arg(&out)
                .arg(pcap),
        );
        let recs = read(&out);
        // The local output is written as without --publish.
        assert!(!of_type(&recs, "flow").is_empty());
        let st = fleet_stats(&recs);
        assert_eq!(st["dropped"], 0, "{st}");
        let got = detections(&recs);
        // The rejection only both sites together see is in neither half.
        let missing: Vec<&String> = want.keys().filter(|k| !got.contains_key(*k)).collect();
        if pcap == &a {
            let out = d.join("early.jsonl");
            let mut c = bin();
            c.arg("correlate")
                .arg("-c")
                .arg(&cfg_r)
                .args(inputs())
                .args(["--from", &cluster.url(2), "-o"])
                .arg(&out);
            early = Some((c.spawn().unwrap(), out));
        }
        if pcap == &b {
            roaming = match missing.as_slice() {
                [one] => Some((*one).clone()),
                other => panic!("site B alone should miss exactly one detection: {other:?}"),
            };
        }
    }
    let roaming = roaming.unwrap();
    assert_eq!(want[&roaming]["pattern"], "repeated_handshake_rejection");
    assert_eq!(want[&roaming]["evidence"]["handshakes"], 5);

    // One consumer for all partitions.
    let all = d.join("all.jsonl");
    run_ok(&mut correlate(&cfg_c, &cluster.url(2), "0/1", &all));
    let recs = read(&all);
    assert_same(
        &detections(&recs),
        &want,
        "correlate vs one replay of the whole capture",
    );
    let obs = observers(&recs);
    assert_eq!(obs[&roaming], ["site-a", "site-b"]);
    assert!(obs.values().all(|o| !o.is_empty()));

    // Two consumers (another durable name) splitting the partitions.
    let cfg_split = config(
        d,
        "split.toml",
        threshold,
        &format!("{fleet}durable = \"split\"\n"),
    );
    let (p0, p1) = (d.join("p0.jsonl"), d.join("p1.jsonl"));
    let mut c0 = correlate(&cfg_split, &cluster.urls(), "0/2", &p0)
        .spawn()
        .unwrap();
    let mut c1 = correlate(&cfg_split, &cluster.urls(), "1/2", &p1)
        .spawn()
        .unwrap();
    assert!(c0.wait().unwrap().success() && c1.wait().unwrap().success());
    let mut both = detections(&read(&p0));
    both.extend(detections(&read(&p1)));
    assert_same(&both, &want, "two correlate processes vs one");

    // The stopped consumer, run again: it gets site A's sessions again and
    // writes what one consumer that never stopped wrote.
    let resumed = d.join("resumed.jsonl");
    run_ok(&mut correlate(&cfg_r, &cluster.url(1), "0/1", &resumed));
    assert_same(
        &detections(&read(&resumed)),
        &want,
        "a consumer stopped and resumed",
    );

    // A restart of the first consumer: everything was acknowledged.
    let again = d.join("again.jsonl");
    run_ok(&mut correlate(&cfg_c, &cluster.url(0), "0/1", &again));
    let recs = read(&again);
    assert!(detections(&recs).is_empty());
    assert_eq!(fleet_stats(&recs)["messages"], 0, "{}", fleet_stats(&recs));
}

/// Every message of a stream, read back with the client the sensors use.
fn stream_messages(url: &str, stream: &str) -> (Vec<(String, Vec<u8>)>, Option<String>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let client = async_nats::connect(url).await.unwrap();
        let js = async_nats::jetstream::new(client);
        let mut s = js.get_stream(stream).await.unwrap();
        let info = s.info().await.unwrap().clone();
        let leader = info.cluster.and_then(|c| c.leader);
        let mut out = Vec::new();
        for seq in info.state.first_sequence..=info.state.last_sequence {
            let m = s.get_raw_message(seq).await.unwrap();
            out.push((m.subject.to_string(), m.payload.to_vec()));
        }
        (out, leader)
    })
}

fn stream_leader(url: &str, stream: &str) -> Option<String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let client = async_nats::connect(url).await.ok()?;
        let js = async_nats::jetstream::new(client);
        let mut s = js.get_stream(stream).await.ok()?;
        s.info().await.ok()?.cluster.clone()?.leader
    })
}

#[test]
fn a_node_killed_mid_publish_loses_and_repeats_nothing() {
    if !have_nats() || !have_wireshark_tools() {
        return;
    }
    let mut cluster = Cluster::start();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // A longer timeline: the scenario 120 times, each copy 100 s after the
    // last (editcap -t), one capture (mergecap -a).
    let whole = fixture("detect/scenario.pcap");
    let mut copies = Vec::new();
    for i in 0..120 {
        let p = d.join(format!("c{i}.pcap"));
        run_ok(
            Command::new("editcap")
                .args(["-t", &(i * 100).to_string()])
                .arg(&whole)
                .arg(&p),
        );
        copies.push(p);
    }
    let long = d.join("long.pcap");
    run_ok(
        Command::new("mergecap")
            .arg("-a")
            .arg("-w")
            .arg(&long)
            .args(&copies),
    );

    let fleet = "[fleet]\nstream = \"FAULT\"\nsubject = \"fault\"\npartitions = 8\nbatch_records = 16\nack_timeout_s = 2\ndrain_timeout_s = 60\n";
    // The stream exists (and has a leader) before the sensors start.
    let first = config(
        d,
        "s0.toml",
        3,
        &format!("[sensor]\nname = \"s0\"\n{fleet}"),
    );
    run_ok(
        bin()
            .arg("replay")
            .arg("-c")
            .arg(&first)
            .args(["--publish", &cluster.urls(), "-o"])
            .arg(d.join("warm.jsonl"))
            .arg(&whole),
    );
    let leader = stream_leader(&cluster.url(0), "FAULT").expect("the stream has a leader");
    let victim: usize = leader.trim_start_matches('n').parse().unwrap();

    let mut sensors = Vec::new();
    for name in ["s1", "s2"] {
        let cfg = config(
            d,
            &format!("{name}.toml"),
            3,
            &format!("[sensor]\nname = \"{name}\"\n{fleet}"),
        );
        let out = d.join(format!("{name}.jsonl"));
        let child = bin()
            .arg("replay")
            .arg("-c")
            .arg(&cfg)
            .args(["-w", "2", "--publish", &cluster.urls(), "-o"])
            .arg(&out)
            .arg(&long)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        sensors.push((name, out, child));
    }
    std::thread::sleep(Duration::from_millis(400));
    cluster.kill(victim);
    let alive = (0..3).find(|&i| i != victim).unwrap();
    let mut published = BTreeMap::new();
    for (name, _, child) in &mut sensors {
        let (status, err) = child.wait_with_output_ref();
        assert!(status.success(), "sensor {name}: {err}");
        // "published N records in M messages (R resent, U ..., D dropped)"
        let line = err
            .lines()
            .find(|l| l.contains("fleet: published"))
            .unwrap_or_else(|| panic!("sensor {name}: no summary: {err}"));
        let nums: Vec<u64> = line
            .split(|c: char| !c.is_ascii_digit())
            .filter_map(|w| w.parse().ok())
            .collect();
        assert_eq!(nums.len(), 5, "{line}");
        assert_eq!(nums[4], 0, "sensor {name} dropped records: {line}");
        eprintln!("{name}: {line}");
        published.insert(name.to_string(), nums[0]);
    }
    let (msgs, _) = stream_messages(&cluster.url(alive), "FAULT");
    // Per sensor and device key: the flow ids in stream order.
    let mut seen: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for (subject, body) in &msgs {
        let sensor = subject.rsplit('.').next().unwrap().to_string();
        for line in body.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let v: Value = serde_json::from_slice(line).unwrap();
            if v["kind"] == "session" {
                let s = &v["session"];
                // The publisher's partition key: serial, else MAC, else address.
                let info = &s["device"]["info"];
                let dev = match (info["mdm"]["serial"].as_str(), info["mac"].as_array()) {
                    (Some(serial), _) => serial.to_string(),
                    (None, Some(mac)) => mac
                        .iter()
                        .map(|b| format!("{:02x}", b.as_u64().unwrap()))
                        .collect::<Vec<_>>()
                        .join(":"),
                    _ => s["device"]["ip"]
                        .as_str()
                        .or(s["src_ip"].as_str())
                        .unwrap()
                        .to_string(),
                };
                seen.entry((sensor.clone(), dev))
                    .or_default()
                    .push(format!("{:016x}", s["flow_id"].as_u64().unwrap()));
            }
        }
    }
    for (name, out, _) in &sensors {
        let recs = read(out);
        // Per device, the flow records the sensor wrote, in its order.
        let mut want: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for f in of_type(&recs, "flow") {
            let d = &f["device"];
            let dev = d["serial"]
                .as_str()
                .or(d["mac"].as_str())
                .or(d["ip"].as_str())
                .or(f["src_ip"].as_str())
                .unwrap()
                .to_string();
            want.entry(dev)
                .or_default()
                .push(f["flow_id"].as_str().unwrap().to_string());
        }
        let sessions: usize = want.values().map(Vec::len).sum();
        assert!(sessions > 4000, "{name}: {sessions} sessions");
        for (dev, flows) in &want {
            let got = seen
                .get(&(name.to_string(), dev.clone()))
                .cloned()
                .unwrap_or_default();
            assert_eq!(
                got.len(),
                flows.len(),
                "{name} {dev}: sessions in the stream"
            );
            assert!(&got == flows, "{name} {dev}: order or content differs");
        }
        // Every record acknowledged is in the stream: the sessions, and
        // the device, coverage and stats records.
        let others = recs
            .iter()
            .filter(|r| ["device", "coverage", "stats"].contains(&r["type"].as_str().unwrap()))
            .count();
        assert_eq!(published[*name], (sessions + others) as u64, "{name}");
    }
    // And `correlate` (on the nodes left) applies each session once.
    let cfg = config(d, "c.toml", 3, fleet);
    let out = d.join("c.jsonl");
    let mut c = correlate(&cfg, &cluster.url(alive), "0/1", &out);
    run_ok(&mut c);
    let sessions: usize = ["warm", "s1", "s2"]
        .iter()
        .map(|n| of_type(&read(&d.join(format!("{n}.jsonl"))), "flow").len())
        .sum();
    assert_eq!(fleet_stats(&read(&out))["sessions"], sessions as u64);
}

trait WaitRef {
    fn wait_with_output_ref(&mut self) -> (std::process::ExitStatus, String);
}

impl WaitRef for Child {
    fn wait_with_output_ref(&mut self) -> (std::process::ExitStatus, String) {
        use std::io::Read;
        let mut err = String::new();
        if let Some(e) = self.stderr.as_mut() {
            let _ = e.read_to_string(&mut err);
        }
        (self.wait().unwrap(), err)
    }
}
