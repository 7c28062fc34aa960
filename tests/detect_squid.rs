//! The detection scenario behind the second inspecting proxy
//! (fixtures/detect/squid, recorded by make-detect-squid.sh: a phone behind
//! Squid 5.7 ssl-bump in transparent mode, a pinning client, a trusting
//! client, two spliced names, a tracker's beacon, plain HTTP; no app
//! events) against its truth (truth.json: tshark's view of every
//! connection, each Squid log line matched to its connection by client
//! port). With Squid's access log added, the findings are the same and each
//! cites the log line of its sessions.

mod common;
use common::*;
use serde_json::Value;
use std::path::PathBuf;

fn dir(n: &str) -> PathBuf {
    fixture(&format!("detect/squid/{n}"))
}

fn truth() -> Value {
    serde_json::from_slice(&std::fs::read(dir("truth.json")).unwrap()).unwrap()
}

fn inputs() -> Vec<String> {
    let f = |n: &str| dir(n).display().to_string();
    vec![
        "--config".into(),
        f("config.toml"),
        "--mdm".into(),
        f("mdm.json"),
        "--apps".into(),
        f("catalog.json"),
    ]
}

fn run(workers: usize, extra: &[String]) -> Vec<Value> {
    let args: Vec<&str> = extra.iter().map(String::as_str).collect();
    replay_args(&[&dir("scenario.pcap")], workers, &args)
}

fn with_log() -> Vec<String> {
    let mut a = inputs();
    a.push("--proxy-log".into());
    a.push(dir("access.log").display().to_string());
    a
}

fn want(t: &Value) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = t["expected_findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["pattern"].as_str().unwrap().to_string(),
                f["destination"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    v.sort();
    v
}

/// Squid's own line `n` (1-based), split as the documented logformat
/// writes it: (client ip:port, bump mode, err_code/detail).
fn squid_line(n: u64) -> (String, String, String) {
    let text = std::fs::read_to_string(dir("access.log")).unwrap();
    let line = text.lines().nth(n as usize - 1).unwrap();
    let f: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(f.len(), 11, "{line}");
    (f[2].to_string(), f[7].to_string(), f[10].to_string())
}

#[test]
fn every_finding_with_and_without_squids_log() {
    let t = truth();
    let without = run(2, &inputs());
    let with = run(2, &with_log());
    assert_eq!(findings(&without), want(&t));
    assert_eq!(findings(&with), want(&t));
    // Without the log no detection cites one.
    for d in of_type(&without, "detection") {
        assert!(d["proxy_evidence"].is_null(), "{d}");
    }
    let flows = of_type(&with, "flow");
    for d in of_type(&with, "detection") {
        assert_eq!(d["device"]["mac"], t["phone"]["mac"]);
        let pe = &d["proxy_evidence"];
        assert_eq!(pe["source"], "squid", "{d}");
        // Every session of the detection joined a line of the log.
        assert_eq!(pe["sessions"], d["flow_ids_total"], "{d}");
        assert_eq!(pe["agrees"], true, "{d}");
        assert_eq!(pe["disagreements"], 0);
        let name = d["destination"]["name"].as_str().unwrap();
        let expected = t["expected_findings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["pattern"] == d["pattern"] && f["destination"] == name)
            .unwrap();
        let verdict = expected["proxy_verdict"].as_str().unwrap();
        assert_eq!(pe["verdicts"].as_object().unwrap().len(), 1, "{pe}");
        assert_eq!(pe["verdicts"][verdict], d["flow_ids_total"], "{pe}");
        // Each cited line is Squid's line for that very connection: its
        // client ip:port is the flow's, its bump mode and error the verdict's.
        let cited = pe["cited"].as_array().unwrap();
        assert_eq!(cited.len() as u64, d["flow_ids_total"].as_u64().unwrap());
        for c in cited {
            let flow = flows
                .iter()
                .find(|f| f["flow_id"] == c["flow_id"])
                .unwrap_or_else(|| panic!("no flow {}", c["flow_id"]));
            let (client, bump, err) = squid_line(c["line"].as_u64().unwrap());
            assert_eq!(
                client,
                format!("{}:{}", flow["src_ip"].as_str().unwrap(), flow["src_port"])
            );
            assert!(c["file"].as_str().unwrap().ends_with("access.log"));
            match verdict {
                "client_rejected" => {
                    assert!(err.starts_with("ERR_SECURE_ACCEPT_FAIL/"), "{err}");
                    assert_eq!(
                        c["reason"],
                        "client rejected certificate: alert unknown_ca (48)"
                    );
                }
                "not_inspected" => assert_eq!(bump, "splice"),
                "inspected" => assert_eq!(bump, "bump"),
                v => panic!("verdict {v}"),
            }
        }
    }
}

/// Where the wire hid the handshake (TLS 1.3: no certificate to see the
/// inspection CA in), Squid's word that it bumped the session stands in,
/// and its verdict raises the score; the TLS 1.2 twin, whose chain shows
/// Squid's CA, scores the same with or without the log.
#[test]
fn the_proxy_raises_confidence_where_the_wire_is_blind() {
    let without = run(0, &inputs());
    let with = run(0, &with_log());
    let rejections = |recs: &[Value]| -> Vec<Value> {
        let mut v: Vec<Value> = of_type(recs, "detection")
            .into_iter()
            .filter(|d| d["pattern"] == "repeated_handshake_rejection")
            .cloned()
            .collect();
        v.sort_by_key(|d| d["ja4"].as_str().unwrap().to_string());
        v
    };
    let (a, b) = (rejections(&without), rejections(&with));
    assert_eq!(a.len(), 2);
    let parts = |d: &Value| -> Vec<String> {
        d["score_parts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["part"].as_str().unwrap().to_string())
            .collect()
    };
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x["ja4"], y["ja4"]);
        if x["ja4"].as_str().unwrap().starts_with("t13") {
            // TLS 1.3: inspection not confirmed on the wire ...
            assert_eq!(x["evidence"]["inspection"]["unknown"], 4, "{x}");
            assert!(
                x["limits"]
                    .as_array()
                    .unwrap()
                    .contains(&"inspection_not_confirmed".into())
            );
            // ... and told by Squid's log.
            assert_eq!(y["evidence"]["inspection"]["proxy_log"], 4, "{y}");
            assert!(parts(y).contains(&"inspected_per_proxy_log".to_string()));
            assert!(parts(y).contains(&"proxy_log_confirms".to_string()));
            assert!(
                !y["limits"]
                    .as_array()
                    .unwrap()
                    .contains(&"inspection_not_confirmed".into())
            );
            assert!(y["score"].as_u64() > x["score"].as_u64());
        } else {
            assert_eq!(x["evidence"]["inspection"]["inspection_ca"], 4);
            assert_eq!(x["score"], y["score"]);
            assert_eq!(parts(x), parts(y));
        }
    }
}

/// The pinning app's failing retries are no beacon, the plain-HTTP control
/// and the trusting app make nothing, and the beacon's background state is
/// inferred (the run has no app events).
#[test]
fn controls_stay_quiet_and_background_is_inferred() {
    let recs = run(2, &with_log());
    for d in of_type(&recs, "detection") {
        let name = d["destination"]["name"].as_str().unwrap_or("");
        if d["pattern"] == "background_transmission" {
            assert_eq!(name, "beacon.example");
            assert_eq!(d["context"]["background"], "inferred");
            assert!(
                d["limits"]
                    .as_array()
                    .unwrap()
                    .contains(&"background_state_inferred".into())
            );
        }
        assert_ne!(name, "mail.corp.example");
        assert_ne!(d["destination"]["ip"], "10.78.1.17");
    }
    // Every line of Squid's log joined a session (the HTTP control's too).
    let stats = of_type(&recs, "stats");
    let s = &stats.last().unwrap()["detections"];
    let lines = truth()["squid_lines"].as_u64().unwrap();
    assert_eq!(s["proxy_log_entries"].as_u64(), Some(lines));
    assert_eq!(s["proxy_log_entries_joined"].as_u64(), Some(lines));
    let connections: usize = truth()["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["connections"].as_array().unwrap().len())
        .sum();
    assert_eq!(
        s["proxy_log_sessions_joined"].as_u64(),
        Some(connections as u64)
    );
}

/// Malformed lines are reported with file and line, stop the run unless
/// --keep-going, and then are skipped; the config key reads the same file.
#[test]
fn malformed_lines_and_the_config_key() {
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("access.log");
    let mut text = std::fs::read_to_string(dir("access.log")).unwrap();
    text.push_str("1796413799.000 12 10.78.0.100:1 garbage\n");
    text.push_str("not even squid\n");
    std::fs::write(&log, &text).unwrap();
    let n = text.lines().count();
    let mut args: Vec<String> = vec!["replay".into()];
    args.extend(inputs());
    args.push("--proxy-log".into());
    args.push(log.display().to_string());
    args.push(dir("scenario.pcap").display().to_string());
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = blindspot(&a);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    for l in [n - 1, n] {
        assert!(
            err.contains(&format!("{}:{l}: not a squid entry", log.display())),
            "{err}"
        );
    }
    let mut a = a.clone();
    a.insert(1, "--keep-going");
    let out = blindspot(&a);
    assert!(out.status.success());
    let recs = parse_lines(&out.stdout);
    assert_eq!(findings(&recs), want(&truth()));
    assert!(
        of_type(&recs, "detection")
            .iter()
            .all(|d| d["proxy_evidence"]["source"] == "squid")
    );

    // inspection.proxy_logs, relative to the config file's folder.
    let cfg = std::fs::read_to_string(dir("config.toml"))
        .unwrap()
        .replace(
            "ca_files = [\"inspection-ca.pem\"]",
            &format!(
                "ca_files = [{:?}]\nproxy_logs = [\"access.log\"]",
                dir("inspection-ca.pem").display().to_string()
            ),
        );
    let cfg_path = tmp.path().join("config.toml");
    std::fs::write(&cfg_path, cfg).unwrap();
    std::fs::copy(dir("access.log"), &log).unwrap();
    let mut extra = inputs();
    extra[1] = cfg_path.display().to_string();
    let recs = run(1, &extra);
    assert_eq!(findings(&recs), want(&truth()));
    assert!(
        of_type(&recs, "detection")
            .iter()
            .all(|d| d["proxy_evidence"]["source"] == "squid")
    );
}

/// The same detections, citations included, whatever the worker count.
#[test]
fn deterministic_across_workers() {
    let key = |recs: &[Value]| -> Vec<String> {
        let mut v: Vec<String> = of_type(recs, "detection")
            .iter()
            .map(|d| d.to_string())
            .collect();
        v.sort();
        v
    };
    let zero = key(&run(0, &with_log()));
    assert_eq!(zero.len(), 5);
    assert_eq!(zero, key(&run(3, &with_log())));
}

/// Nothing about inspection configured: Squid's CA (which Squid sends
/// twice after the leaf) is learnt at the default threshold from the
/// leaves it minted — the phone browsed six sites besides mail and pinned,
/// eight registrable domains in the cleartext chains (truth.json, tshark) —
/// while the lab's test root, which signs only bank.example and
/// health.example here, is not; the findings are those of the configured
/// run, the TLS 1.2 rejections read as `learnt_ca`.
#[test]
fn squids_ca_is_learnt_without_configuration() {
    let tmp = tempfile::tempdir().unwrap();
    // No inspection configured at all: learnt at the default threshold (5)
    // from the eight registrable domains Squid minted leaves for.
    let cfg = without_inspection_config(&dir("config.toml"), tmp.path());
    let mut args = inputs();
    args[1] = cfg.display().to_string();
    let recs = run(1, &args);
    let cov = of_type(&recs, "coverage")[0];
    let learnt = cov["learnt_inspection_cas"].as_array().unwrap();
    assert_eq!(learnt.len(), 1, "{learnt:?}");
    assert!(
        learnt[0]["subject"]
            .as_str()
            .unwrap()
            .contains("Squid Inspection CA"),
        "{learnt:?}"
    );
    let t = truth();
    let minted = t["inspection_ca_leaf_domains"].as_array().unwrap();
    assert!(minted.len() >= 6, "{minted:?}");
    let domains = learnt[0]["domains"].as_array().unwrap();
    assert_eq!(domains.len(), 5, "learnt at its fifth domain: {domains:?}");
    assert!(domains.iter().all(|d| minted.contains(d)), "{domains:?}");
    assert_eq!(findings(&recs), findings(&run(1, &inputs())));
    assert!(
        of_type(&recs, "detection")
            .iter()
            .any(|d| d["evidence"]["inspection"]["learnt_ca"].as_u64().is_some())
    );
}
