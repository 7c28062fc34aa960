//! Kafka export (issue 22 item 4), `--publish kafka://…`.
//!
//! With the `kafka` feature, against a real Kafka-protocol broker: the one
//! at `BLINDSPOT_KAFKA_BOOTSTRAP` (HOST:PORT, any Kafka broker already
//! running), else a `tansu` broker this test starts on loopback with
//! in-memory storage (the binary at `BLINDSPOT_KAFKA_BROKER_BIN`, else
//! `tansu` on PATH); SKIPPED when there is neither. The detection scenario
//! is replayed with `--publish kafka://…` and a file output, and the topics
//! are read back with librdkafka's consumer: one message per session (the
//! file's flow records) and per device, coverage and stats record, each
//! keyed by its device key (or the sensor), its value the record the file
//! has, each device's sessions in the file's order.
//!
//! With the feature and no broker: a replay whose brokers are down
//! finishes, writes its file and counts every record as failed or dropped.
//! Without the feature: `--publish kafka://…` is refused with one line.

mod common;
use common::*;
use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_blindspot"))
}

#[cfg(not(feature = "kafka"))]
#[test]
fn without_the_feature_kafka_is_refused_in_one_line() {
    let out = bin()
        .args(["replay", "--publish", "kafka://127.0.0.1:9092", "-o", "-"])
        .arg(fixture("detect/scenario.pcap"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("without the `kafka` feature"), "{err}");
}

#[cfg(feature = "kafka")]
mod with_kafka {
    use super::*;
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::config::ClientConfig;
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::{Headers, Message};
    use rdkafka::{Offset, TopicPartitionList};
    use serde_json::Value;
    use std::collections::BTreeMap;
    use std::net::{TcpListener, TcpStream};
    use std::path::{Path, PathBuf};
    use std::process::{Child, Stdio};
    use std::time::{Duration, Instant};

    /// A broker this test started (killed on drop), or one named by the environment.
    struct Broker {
        child: Option<Child>,
        bootstrap: String,
    }

    impl Drop for Broker {
        fn drop(&mut self) {
            if let Some(c) = &mut self.child {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }

    fn on_path(name: &str) -> Option<PathBuf> {
        std::env::var_os("PATH").and_then(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join(name))
                .find(|f| f.is_file())
        })
    }

    fn broker() -> Option<Broker> {
        if let Ok(b) = std::env::var("BLINDSPOT_KAFKA_BOOTSTRAP") {
            return Some(Broker {
                child: None,
                bootstrap: b,
            });
        }
        let Some(bin) = std::env::var_os("BLINDSPOT_KAFKA_BROKER_BIN")
            .map(PathBuf::from)
            .or_else(|| on_path("tansu"))
        else {
            eprintln!(
                "SKIPPED: no Kafka-protocol broker (set BLINDSPOT_KAFKA_BOOTSTRAP=HOST:PORT, or install tansu: cargo install tansu --no-default-features --features dynostore)"
            );
            return None;
        };
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("tcp://127.0.0.1:{port}");
        let child = Command::new(&bin)
            .args(["broker", "--listener-url", &url])
            .args(["--advertised-listener-url", &url])
            .args(["--storage-engine", "memory://tansu/"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let b = Broker {
            child: Some(child),
            bootstrap: format!("127.0.0.1:{port}"),
        };
        let t = Instant::now();
        while TcpStream::connect(&b.bootstrap).is_err() {
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "{} did not listen",
                bin.display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(b)
    }

    /// The test topics' partitions.
    const PARTITIONS: i32 = 4;

    /// Drives a future to its end on this thread (librdkafka's admin
    /// client answers from its own thread).
    fn wait<F: std::future::Future>(f: F) -> F::Output {
        let mut f = std::pin::pin!(f);
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        let t = Instant::now();
        loop {
            if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) {
                return v;
            }
            assert!(t.elapsed() < Duration::from_secs(60), "no answer");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn create_topics(bootstrap: &str, topics: &[&str]) {
        let admin: AdminClient<_> = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .create()
            .unwrap();
        let new: Vec<NewTopic> = topics
            .iter()
            .map(|t| NewTopic::new(t, PARTITIONS, TopicReplication::Fixed(1)))
            .collect();
        let res = wait(admin.create_topics(&new, &AdminOptions::new())).unwrap();
        for r in res {
            r.unwrap_or_else(|(t, e)| panic!("create topic {t}: {e}"));
        }
    }

    /// One message as read back: topic, key, headers, value.
    struct Got {
        topic: String,
        key: String,
        headers: BTreeMap<String, String>,
        value: Value,
    }

    /// Reads `want` messages from `topics` (from their start), or panics
    /// after a minute without them.
    fn consume(bootstrap: &str, topics: &[&str], want: usize) -> Vec<Got> {
        let c: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("group.id", "blindspot-test")
            .set("enable.auto.commit", "false")
            .create()
            .unwrap();
        // Every partition from its start, without a consumer group.
        let mut tpl = TopicPartitionList::new();
        for t in topics {
            for p in 0..PARTITIONS {
                tpl.add_partition_offset(t, p, Offset::Beginning).unwrap();
            }
        }
        c.assign(&tpl).unwrap();
        let mut got = Vec::new();
        let t = Instant::now();
        while got.len() < want && t.elapsed() < Duration::from_secs(60) {
            let Some(m) = c.poll(Duration::from_millis(200)) else {
                continue;
            };
            let m = m.unwrap();
            let text =
                |b: Option<&[u8]>| String::from_utf8(b.unwrap_or_default().to_vec()).unwrap();
            let headers = m
                .headers()
                .map(|h| {
                    (0..h.count())
                        .map(|i| {
                            let x = h.get(i);
                            (x.key.to_string(), text(x.value))
                        })
                        .collect()
                })
                .unwrap_or_default();
            got.push(Got {
                topic: m.topic().to_string(),
                key: text(m.key()),
                headers,
                value: serde_json::from_slice(m.payload().unwrap()).unwrap(),
            });
        }
        // A moment more: nothing past what the replay wrote.
        if got.len() == want
            && let Some(Ok(m)) = c.poll(Duration::from_secs(2))
        {
            panic!(
                "a message past the {want} expected: {:?}",
                m.payload_view::<str>()
            );
        }
        got
    }

    /// The device key the producer keys a flow's session by: the MDM
    /// serial, else the MAC, else the address (the fleet's partition key).
    fn flow_key(f: &Value) -> String {
        let d = &f["device"];
        match (d["serial"].as_str(), d["mac"].as_str()) {
            (Some(s), _) => format!("serial:{s}"),
            (None, Some(m)) => format!("mac:{m}"),
            _ => format!("ip:{}", d["ip"].as_str().or(f["src_ip"].as_str()).unwrap()),
        }
    }

    fn replay(cfg_extra: &str, dir: &Path, publish: &str, out: &Path) -> std::process::Output {
        let cfg = dir.join("k.toml");
        let text = std::fs::read_to_string(fixture("detect/config.toml"))
            .unwrap()
            .replace(
                "\"inspection-ca.pem\"",
                &format!(
                    "{:?}",
                    fixture("detect/inspection-ca.pem").display().to_string()
                ),
            );
        std::fs::write(&cfg, format!("{text}\n{cfg_extra}\n")).unwrap();
        let mut args = scenario_inputs();
        args[1] = cfg.display().to_string();
        bin()
            .arg("replay")
            .args(&args)
            .args(["--publish", publish, "-o"])
            .arg(out)
            .arg(fixture("detect/scenario.pcap"))
            .output()
            .unwrap()
    }

    #[test]
    fn every_record_reaches_its_topic_keyed_by_its_device() {
        let Some(b) = broker() else {
            return;
        };
        // Names of this run's own (a broker from the environment may have
        // older ones).
        let tag = format!(
            "{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis()
        );
        let (sessions_topic, records_topic) =
            (&*format!("t{tag}.sessions"), &*format!("t{tag}.records"));
        create_topics(&b.bootstrap, &[sessions_topic, records_topic]);
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out.jsonl");
        let started = Instant::now();
        let run = replay(
            &format!(
                "[sensor]\nname = \"site-a\"\n[kafka]\nsessions_topic = \"{sessions_topic}\"\nrecords_topic = \"{records_topic}\"\n"
            ),
            dir.path(),
            &format!("kafka://{}", b.bootstrap),
            &out,
        );
        let took = started.elapsed();
        let err = String::from_utf8_lossy(&run.stderr);
        assert!(run.status.success(), "{err}");
        let recs = parse_lines(&std::fs::read(&out).unwrap());
        let flows = of_type(&recs, "flow");
        let others: Vec<&Value> = recs
            .iter()
            .filter(|r| ["device", "coverage", "stats"].contains(&r["type"].as_str().unwrap()))
            .collect();
        assert!(flows.len() >= 20, "{} flows", flows.len());
        let want = flows.len() + others.len();
        // "delivered N records (P produced, F failed, D dropped)"
        let line = err
            .lines()
            .find(|l| l.contains("kafka: delivered"))
            .unwrap_or_else(|| panic!("no summary: {err}"));
        assert_eq!(
            line,
            format!(
                "blindspot: kafka: delivered {want} records ({want} produced, 0 failed, 0 dropped)"
            )
        );

        let got = consume(&b.bootstrap, &[sessions_topic, records_topic], want);
        eprintln!(
            "kafka export: {} messages ({} sessions, {} records) in {:.2} s of replay",
            got.len(),
            flows.len(),
            others.len(),
            took.as_secs_f64()
        );
        assert_eq!(got.len(), want);
        for g in &got {
            assert_eq!(g.headers["sensor"], "site-a");
            assert_eq!(g.headers["kind"], g.value["kind"].as_str().unwrap());
        }

        // Sessions: one per flow record, keyed by its device, each device's
        // in the file's order (a key is one partition).
        let mut want_by_key: BTreeMap<String, Vec<Value>> = BTreeMap::new();
        for f in &flows {
            let tuple =
                ["src_ip", "src_port", "dst_ip", "dst_port", "community_id"].map(|k| f[k].clone());
            want_by_key
                .entry(flow_key(f))
                .or_default()
                .push(serde_json::json!([f["flow_id"], tuple]));
        }
        let mut got_by_key: BTreeMap<String, Vec<Value>> = BTreeMap::new();
        for g in got.iter().filter(|g| g.topic == sessions_topic) {
            assert_eq!(g.value["kind"], "session");
            let s = &g.value["session"];
            let tuple =
                ["src_ip", "src_port", "dst_ip", "dst_port", "community_id"].map(|k| s[k].clone());
            got_by_key
                .entry(g.key.clone())
                .or_default()
                .push(serde_json::json!([
                    format!("{:016x}", s["flow_id"].as_u64().unwrap()),
                    tuple
                ]));
        }
        assert!(want_by_key.len() >= 2, "{:?}", want_by_key.keys());
        assert!(
            want_by_key.keys().any(|k| k.starts_with("serial:")),
            "the scenario's MDM device is keyed by its serial: {:?}",
            want_by_key.keys()
        );
        assert_eq!(got_by_key, want_by_key);

        // Device, coverage and stats records: the file's records (less
        // `observer`), device ones keyed by their device, the others by the
        // sensor.
        let mut got_records: Vec<(String, Value)> = got
            .iter()
            .filter(|g| g.topic == records_topic)
            .map(|g| {
                assert_eq!(g.value["kind"], g.value["record"]["type"]);
                (g.key.clone(), g.value["record"].clone())
            })
            .collect();
        let mut want_records: Vec<(String, Value)> = others
            .iter()
            .map(|r| {
                let key = match (r["type"].as_str(), r["device"]["serial"].as_str()) {
                    (Some("device"), Some(s)) => format!("serial:{s}"),
                    (Some("device"), None) => format!("mac:{}", r["mac"].as_str().unwrap()),
                    _ => "site-a".to_string(),
                };
                // The wire form is the record without the writer's
                // `observer` (the `sensor` header says who).
                let mut r = (*r).clone();
                r.as_object_mut().unwrap().remove("observer");
                (key, r)
            })
            .collect();
        let order =
            |v: &mut Vec<(String, Value)>| v.sort_by_key(|(k, r)| (k.clone(), r.to_string()));
        order(&mut got_records);
        order(&mut want_records);
        assert_eq!(got_records, want_records);
        // The stats record (in the file and in Kafka) carries the counters.
        let stats = of_type(&recs, "stats");
        assert!(
            stats.iter().all(|s| s["kafka"]["produced"].is_u64()),
            "{stats:?}"
        );
    }

    #[test]
    fn brokers_down_neither_block_nor_fail_the_replay() {
        // Nothing listens on a port just bound and closed.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out.jsonl");
        let run = replay(
            "[kafka]\nmessage_timeout_s = 1\ndrain_timeout_s = 2\n",
            dir.path(),
            &format!("kafka://127.0.0.1:{port}"),
            &out,
        );
        let err = String::from_utf8_lossy(&run.stderr);
        assert!(run.status.success(), "{err}");
        let recs = parse_lines(&std::fs::read(&out).unwrap());
        let want = of_type(&recs, "flow").len()
            + recs
                .iter()
                .filter(|r| ["device", "coverage", "stats"].contains(&r["type"].as_str().unwrap()))
                .count();
        let line = err
            .lines()
            .find(|l| l.contains("kafka: delivered"))
            .unwrap_or_else(|| panic!("no summary: {err}"));
        let n: Vec<usize> = line
            .split(|c: char| !c.is_ascii_digit())
            .filter_map(|w| w.parse().ok())
            .collect();
        // delivered, produced, failed, dropped
        assert_eq!(n[0], 0, "{line}");
        assert_eq!(n[2] + n[3], want, "every record failed or dropped: {line}");
        // The first connection error is said once.
        assert!(err.contains("blindspot: kafka: "), "{err}");
        let stats = of_type(&recs, "stats");
        assert_eq!(stats.last().unwrap()["kafka"]["delivered"], 0);
    }
}
