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

/// The cluster and a temp dir, or `None` (SKIPPED) without the tools.
fn start() -> Option<(Cluster, tempfile::TempDir)> {
    if !have_nats() || !have_wireshark_tools() {
        return None;
    }
    Some((Cluster::start(), tempfile::tempdir().unwrap()))
}

/// `whole` cut at `cut` (epoch seconds) into what came before and after (editcap).
fn cut_in_two(whole: &Path, cut: &str, before: &Path, after: &Path) {
    for (flag, out) in [("-B", before), ("-A", after)] {
        run_ok(
            Command::new("editcap")
                .args([flag, cut])
                .arg(whole)
                .arg(out),
        );
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
    let Some((cluster, dir)) = start() else {
        return;
    };
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
    cut_in_two(&whole, cut, &a, &late);
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
    // Site B publishes plain JSON Lines, site A zstd bodies (the default):
    // one correlate reads both.
    let cfg_b = config(
        d,
        "b.toml",
        threshold,
        &format!("[sensor]\nname = \"site-b\"\n{fleet}zstd_level = 0\n"),
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
    // The sightings bucket: the roaming phone (its MAC from tshark, its
    // serial from the MDM export) seen by both sensors, each last at or
    // after its half's last pinned attempt (a flow starts a few
    // milliseconds before its ClientHello) and the cut between them.
    let mac = pinning_mac(&whole);
    let mdm: Value =
        serde_json::from_slice(&std::fs::read(fixture("detect/mdm.json")).unwrap()).unwrap();
    let phone = mdm["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["wifi_mac"] == mac.as_str())
        .expect("the pinning device is in the MDM export");
    let key = format!("serial:{}", phone["serial"].as_str().unwrap());
    let sightings = bucket(&cluster.url(0), "ROAM_sightings");
    let seen = sightings
        .values()
        .find(|v| v["device"] == key.as_str())
        .unwrap_or_else(|| panic!("no sighting of {key}: {sightings:?}"));
    let at = |s: &str| seen["sensors"][s].as_u64().unwrap() as f64 / 1e9;
    let cut_s: f64 = cut.parse().unwrap();
    let (last_a, last_b) = (
        *pinned_hello_times(&a).last().unwrap(),
        *pinned_hello_times(&b).last().unwrap(),
    );
    assert!(
        at("site-a") >= last_a - 1.0 && at("site-a") < cut_s,
        "{seen} vs {last_a} {cut_s}"
    );
    assert!(at("site-b") >= last_b - 1.0, "{seen} vs {last_b}");
    assert_eq!(seen["sensors"].as_object().unwrap().len(), 2, "{seen}");
    assert!(fleet_stats(&recs)["state_written"].as_u64().unwrap() > 0);

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

/// Runs `f` on a runtime of its own (the client's calls are async).
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// The source MAC of the pinning app's ClientHellos (tshark).
fn pinning_mac(pcap: &Path) -> String {
    let out = run_ok(Command::new("tshark").args([
        "-r",
        pcap.to_str().unwrap(),
        "-Y",
        "tls.handshake.type == 1 && tls.handshake.extensions_server_name == \"api.pinned.example\"",
        "-T",
        "fields",
        "-e",
        "eth.src",
    ]));
    let macs: std::collections::BTreeSet<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(macs.len(), 1, "{macs:?}");
    macs.into_iter().next().unwrap()
}

/// Every value of a key-value bucket (parsed JSON), by key, read with the
/// client the sensors use.
fn bucket(url: &str, name: &str) -> BTreeMap<String, Value> {
    use futures_util::StreamExt;
    block_on(async {
        let client = async_nats::connect(url).await.unwrap();
        let js = async_nats::jetstream::new(client);
        let kv = js.get_key_value(name).await.unwrap();
        let mut keys = kv.keys().await.unwrap();
        let mut out = BTreeMap::new();
        while let Some(k) = keys.next().await {
            let k = k.unwrap();
            let v = kv.get(&k).await.unwrap().unwrap();
            out.insert(k, serde_json::from_slice(&v).unwrap());
        }
        out
    })
}

/// The proxy's leaf certificates in a capture (tshark): when each was
/// sent, its DNS names and its authority key identifier.
fn proxy_leaves(pcap: &Path) -> Vec<(f64, String, String)> {
    let out = run_ok(Command::new("tshark").args([
        "-r",
        pcap.to_str().unwrap(),
        "-Y",
        "tls.handshake.type == 11 && x509sat.uTF8String == \"mitmproxy\"",
        "-T",
        "fields",
        "-e",
        "frame.time_epoch",
        "-e",
        "x509ce.dNSName",
        "-e",
        "x509ce.keyIdentifier",
    ]));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (f[0].parse().unwrap(), f[1].to_string(), f[2].to_string())
        })
        .collect()
}

/// A leaf's registrable domain: every proxied name in the scenario is one
/// host label under it (`cdn.example-e.de`, `api.example-d.co.uk`).
fn registrable(name: &str) -> String {
    name.split_once('.').unwrap().1.to_string()
}

/// Fleet state: the scenario without any configured inspection CA, cut by
/// time right after the proxy's leaf for its fifth registrable domain
/// (tshark): site A learns the proxy's CA alone (threshold 5), site B's
/// half holds leaves for only three domains and does not. With the
/// fleet's bucket, site B's replay treats the CA as learnt from its first
/// proxied session on; without it, it never does.
#[test]
fn a_ca_learnt_at_one_site_is_learnt_at_the_other() {
    let Some((cluster, dir)) = start() else {
        return;
    };
    let d = dir.path();
    let whole = fixture("detect/scenario.pcap");
    let leaves = proxy_leaves(&whole);
    // Registrable domains in the order the proxy's leaves named them.
    let mut order: Vec<String> = Vec::new();
    let mut fifth = None;
    for (i, (_, name, _)) in leaves.iter().enumerate() {
        let r = registrable(name);
        if !order.contains(&r) {
            order.push(r);
            if order.len() == 5 {
                fifth = Some(i);
            }
        }
    }
    let fifth = fifth.expect("the proxy minted leaves for five domains");
    let cut = format!("{:.6}", (leaves[fifth].0 + leaves[fifth + 1].0) / 2.0);
    let (a, b) = (d.join("a.pcap"), d.join("b.pcap"));
    cut_in_two(&whole, &cut, &a, &b);
    let domains = |p: &Path| {
        proxy_leaves(p)
            .iter()
            .map(|(_, n, _)| registrable(n))
            .collect::<std::collections::BTreeSet<_>>()
    };
    let (da, db) = (domains(&a), domains(&b));
    assert_eq!(da.len(), 5, "{da:?}");
    assert!(
        db.len() < 5,
        "site B alone stays under the threshold: {db:?}"
    );
    let b_leaves = proxy_leaves(&b).len();
    assert!(b_leaves > 0);

    // The scenario's config without its [inspection] section.
    let text = std::fs::read_to_string(fixture("detect/config.toml")).unwrap();
    let mut kept = Vec::new();
    let mut skip = false;
    for l in text.lines() {
        if l.starts_with('[') {
            skip = l == "[inspection]";
        }
        if !skip {
            kept.push(l);
        }
    }
    let base = kept.join("\n");
    let fleet = "[fleet]\nstream = \"STATE\"\nsubject = \"state\"\npartitions = 4\n";
    let cfg = |name: &str, sensor: &str| {
        let p = d.join(name);
        std::fs::write(
            &p,
            format!("{base}\n[sensor]\nname = \"{sensor}\"\n{fleet}"),
        )
        .unwrap();
        p
    };
    let replay = |cfg: &Path, pcap: &Path, publish: Option<String>| {
        let out = pcap.with_extension(if publish.is_some() {
            "fleet.jsonl"
        } else {
            "jsonl"
        });
        let mut c = bin();
        c.arg("replay").arg("-c").arg(cfg).args(inputs());
        if let Some(u) = publish {
            c.args(["--publish", &u]);
        }
        run_ok(c.arg("-o").arg(&out).arg(pcap));
        read(&out)
    };
    let learnt_tls = |recs: &[Value]| {
        of_type(recs, "tls")
            .into_iter()
            .filter(|t| t["inspection_source"] == "learnt")
            .count()
    };
    let learnt_cas = |recs: &[Value]| {
        of_type(recs, "coverage").last().unwrap()["learnt_inspection_cas"]
            .as_array()
            .unwrap()
            .len()
    };
    let (cfg_a, cfg_b) = (cfg("a.toml", "site-a"), cfg("b.toml", "site-b"));

    // Site B alone: never learnt.
    let alone = replay(&cfg_b, &b, None);
    assert_eq!((learnt_tls(&alone), learnt_cas(&alone)), (0, 0));

    // Site A learns it, and puts it in the bucket.
    let at_a = replay(&cfg_a, &a, Some(cluster.url(0)));
    assert_eq!(learnt_cas(&at_a), 1);
    // (Its stats record was written before the last write: the bucket tells.)
    let cas = bucket(&cluster.url(1), "STATE_inspection_cas");
    assert_eq!(cas.len(), 1, "{cas:?}");
    let v = cas.values().next().unwrap();
    // tshark: the leaves' issuer is O=mitmproxy, CN=mitmproxy, and every
    // one names the CA's key identifier.
    let subject = v["subject"].as_str().unwrap();
    assert!(
        subject.contains("CN=mitmproxy") && subject.contains("O=mitmproxy"),
        "{v}"
    );
    let key_ids: std::collections::BTreeSet<&str> =
        leaves.iter().map(|(_, _, k)| k.as_str()).collect();
    assert_eq!(key_ids.len(), 1, "{key_ids:?}");
    assert_eq!(v["key_id"], *key_ids.first().unwrap());
    let got: std::collections::BTreeSet<String> = v["domains"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap().to_string())
        .collect();
    assert_eq!(got, da);
    assert_eq!(v["sensors"], serde_json::json!(["site-a"]));
    // Learnt at the fifth domain's leaf (packet time, tshark).
    let learnt = v["learnt"].as_u64().unwrap() as f64 / 1e9;
    assert!((learnt - leaves[fifth].0).abs() < 0.5, "{v}");

    // Site B with the fleet: every proxied session reads as inspected by
    // the learnt CA, from the first on.
    let at_b = replay(&cfg_b, &b, Some(cluster.url(2)));
    assert_eq!(learnt_tls(&at_b), b_leaves);
    assert!(
        of_type(&at_b, "tls")
            .iter()
            .filter(|t| t["inspection_source"] == "learnt")
            .all(|t| t["inspection_ca"] == subject && t["inspected"] == true)
    );
    assert_eq!(learnt_cas(&at_b), 1);
    let st = fleet_stats(&at_b);
    assert!(st["state_seeded"].as_u64().unwrap() >= 1, "{st}");
    assert_eq!(st["state_errors"], 0, "{st}");
}

/// Every message of a stream, read back with the client the sensors use.
/// A stream's messages (subject, JSON Lines body), its leader, and how
/// many of the messages were zstd-compressed.
type StreamRead = (Vec<(String, Vec<u8>)>, Option<String>, usize);

fn stream_messages(url: &str, stream: &str) -> StreamRead {
    block_on(async {
        let client = async_nats::connect(url).await.unwrap();
        let js = async_nats::jetstream::new(client);
        let mut s = js.get_stream(stream).await.unwrap();
        let info = s.info().await.unwrap().clone();
        let leader = info.cluster.and_then(|c| c.leader);
        let mut out = Vec::new();
        let mut packed = 0;
        for seq in info.state.first_sequence..=info.state.last_sequence {
            let m = s.get_raw_message(seq).await.unwrap();
            // Publishers compress with zstd by default (fleet.zstd_level),
            // and say so in a header; the body is JSON Lines under it.
            let body = match m.headers.get("Content-Encoding").map(|v| v.as_str()) {
                Some("zstd") => {
                    let plain = zstd::bulk::decompress(&m.payload, 512 << 10).unwrap();
                    assert!(
                        m.payload.len() < plain.len(),
                        "a zstd body larger than its JSON Lines: {} of {}",
                        m.payload.len(),
                        plain.len()
                    );
                    packed += 1;
                    plain
                }
                None => m.payload.to_vec(),
                Some(other) => panic!("message {seq}: Content-Encoding {other}"),
            };
            out.push((m.subject.to_string(), body));
        }
        (out, leader, packed)
    })
}

fn stream_leader(url: &str, stream: &str) -> Option<String> {
    block_on(async {
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
    let (msgs, _, packed) = stream_messages(&cluster.url(alive), "FAULT");
    // Batches of 16 records shrink under zstd and are sent compressed (a
    // lone small record that would not shrink goes plain).
    assert!(
        packed * 2 > msgs.len(),
        "{packed} of {} compressed",
        msgs.len()
    );
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

/// A baseline built at one site (`baseline build --publish`) is in the
/// fleet's baselines bucket, and a sensor without a baseline of its own
/// that publishes to the fleet uses it: the long-lived session it explains
/// is not reported, as with the baseline file given; without either it is
/// reported with `no_baseline`.
#[test]
fn a_baseline_built_at_one_site_is_the_fleets() {
    let Some((cluster, dir)) = start() else {
        return;
    };
    let d = dir.path();
    let f = fixture("local/long-lived-periodic.pcap");
    let conf = |site: &str| {
        let p = d.join(format!("{site}.toml"));
        std::fs::write(
            &p,
            format!(
                "[detections]\npersistent_min_duration_s = 5\n[sensor]\nname = \"{site}\"\n[fleet]\nreplicas = 3\n"
            ),
        )
        .unwrap();
        p
    };
    let (cfg_a, cfg_b) = (conf("site-a"), conf("site-b"));
    let replay = |cfg: &Path, extra: &[&str], name: &str| -> (Vec<Value>, String) {
        let out = d.join(name);
        let run = run_ok(
            bin()
                .arg("replay")
                .arg("-c")
                .arg(cfg)
                .args(extra)
                .arg("-o")
                .arg(&out)
                .arg(&f),
        );
        (
            read(&out),
            String::from_utf8_lossy(&run.stderr).into_owned(),
        )
    };
    let persistent = |recs: &[Value]| -> Vec<Value> {
        recs.iter()
            .filter(|r| r["type"] == "detection" && r["pattern"] == "opaque_persistent_session")
            .cloned()
            .collect()
    };
    let explained = |recs: &[Value]| {
        recs.iter()
            .find(|r| r["type"] == "stats")
            .map(|s| s["detections"]["persistent_explained_by_baseline"].clone())
            .unwrap()
    };

    // Site B alone: the session is reported, with no baseline.
    let (alone, _) = replay(&cfg_b, &[], "alone.jsonl");
    let reported = persistent(&alone);
    assert_eq!(reported.len(), 1);
    assert!(
        reported[0]["limits"]
            .as_array()
            .unwrap()
            .contains(&"no_baseline".into())
    );
    let ja4 = reported[0]["ja4"].clone();

    // Site A's records, three times over: three sessions explain it.
    let (_, _) = replay(&cfg_a, &[], "records.jsonl");
    let r = d.join("records.jsonl");
    let r = r.to_str().unwrap();
    let file = d.join("fleet.baseline");
    let built = run_ok(
        bin()
            .args(["baseline", "build", r, r, r, "-o"])
            .arg(&file)
            .arg("-c")
            .arg(&cfg_a)
            .args(["--publish", &cluster.url(0)]),
    );
    let said = String::from_utf8_lossy(&built.stderr);
    assert!(said.contains("written as \"site-a\""), "{said}");

    // The bucket has the entry under site-a, built just now.
    let entries = bucket(&cluster.url(1), "BLINDSPOT_baselines");
    let value = entries
        .values()
        .find(|v| v["ja4"] == ja4)
        .expect("the session's JA4 is in the bucket");
    assert_eq!(value["sensors"].as_object().unwrap().len(), 1);
    let mine = &value["sensors"]["site-a"];
    assert_eq!(mine["entry"]["sessions"], 3);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let at = mine["built"].as_u64().unwrap();
    assert!(
        at <= now && now - at < 600_000_000_000,
        "built {at}, now {now}"
    );

    // The file explains the session; so does the fleet's bucket at site B.
    let (with_file, _) = replay(
        &cfg_b,
        &["--baseline", file.to_str().unwrap()],
        "file.jsonl",
    );
    assert!(persistent(&with_file).is_empty());
    assert_eq!(explained(&with_file), 1);
    let (with_fleet, said) = replay(&cfg_b, &["--publish", &cluster.url(2)], "fleet.jsonl");
    assert!(said.contains("from the fleet's baselines bucket"), "{said}");
    assert!(
        persistent(&with_fleet).is_empty(),
        "explained by the fleet's baseline"
    );
    assert_eq!(explained(&with_fleet), 1);
    drop(cluster);
}
