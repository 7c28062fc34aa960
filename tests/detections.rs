//! Detections on real captures: what fires, with which values, and what
//! must not fire. The scenario capture (fixtures/detect, made by
//! make-detect.sh with mitmproxy, nginx, curl and openssl) is tested in
//! tests/detect_scenario.rs.

mod common;
use common::*;
use serde_json::Value;
use std::path::Path;

fn tmp(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("blindspot-det-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// With the defaults, the only detection in the whole public and local
/// corpus is the one plain TCP flow of random bytes: TLS (also mid-stream
/// and through a proxy), QUIC (also picked up after its handshake), DHCP,
/// HTTP and the long-lived session make none.
#[test]
fn defaults_find_only_the_random_channel_in_the_corpus() {
    let mut found = Vec::new();
    let corpus = all_captures().into_iter().filter(|f| {
        let dir = f.parent().unwrap().file_name().unwrap();
        is_shared(f) || dir == "local"
    });
    for f in corpus {
        for d in of_type(&replay(&[&f], 1), "detection") {
            found.push((
                f.file_name().unwrap().to_string_lossy().to_string(),
                d["pattern"].as_str().unwrap().to_string(),
            ));
        }
    }
    assert_eq!(
        found,
        vec![(
            "plain-tcp-random.pcap".to_string(),
            "opaque_encrypted_channel".to_string()
        )]
    );
}

#[test]
fn random_bytes_make_an_opaque_channel_with_its_evidence() {
    let f = fixture("local/plain-tcp-random.pcap");
    let recs = replay(&[&f], 2);
    let flow = of_type(&recs, "flow")[0];
    let det = of_type(&recs, "detection");
    assert_eq!(det.len(), 1);
    let d = det[0];
    // Known truth (fixtures/local/truth.json): Python sockets, port 9000,
    // 32768 random bytes from the client and 8192 back.
    assert_eq!(d["analytic"], "AN1717");
    assert_eq!(d["destination"]["ip"], "192.0.2.1");
    assert_eq!(d["destination"]["port"], 9000);
    assert_eq!(d["destination"]["name"], Value::Null);
    assert_eq!(d["device"]["mac"], "02:00:5e:10:01:0a");
    assert_eq!(d["evidence"]["flows"], 1);
    assert_eq!(d["evidence"]["payload_bytes"], 32768 + 8192);
    assert_eq!(d["evidence"]["both_directions"], true);
    assert_eq!(
        d["evidence"]["client_first_payload"],
        flow["orig"]["first_payload"]
    );
    assert_eq!(flow["service"], Value::Null);
    assert_eq!(d["flow_ids"], serde_json::json!([flow["flow_id"]]));
    // 40 + both directions 10 + no repeat 0 + unexplained 5.
    let parts: Vec<(&str, i64)> = d["score_parts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["part"].as_str().unwrap(), p["points"].as_i64().unwrap()))
        .collect();
    assert_eq!(
        parts,
        vec![
            ("fully_encrypted_first_payload", 40),
            ("both_directions", 10),
            ("repeated", 0),
            ("unexplained", 5)
        ]
    );
    assert_eq!(d["score"], 55);
    // A private MAC no RADIUS or MDM record ties to a device, and no catalog.
    assert_eq!(
        d["limits"],
        serde_json::json!(["no_app_identity", "private_mac_unmapped"])
    );
    assert_eq!(d["visibility"], "low");
    let stats = of_type(&recs, "stats")[0];
    assert_eq!(stats["records"]["detection"], 1);
    assert_eq!(stats["detections"]["opaque_encrypted_channel"], 1);
}

/// `--evidence` writes the pcap the record names, holding the first
/// packets of the flow: replayed, it is the same connection, cut.
#[test]
fn evidence_pcap_holds_the_first_packets_of_the_flow() {
    let dir = tmp("evidence");
    let cfg = dir.join("c.toml");
    std::fs::write(&cfg, "[evidence]\nmax_packets_per_flow = 5\n").unwrap();
    let f = fixture("local/plain-tcp-random.pcap");
    let recs = replay_args(
        &[&f],
        1,
        &[
            "--config",
            cfg.to_str().unwrap(),
            "--evidence",
            dir.to_str().unwrap(),
        ],
    );
    let d = of_type(&recs, "detection")[0];
    let name = d["evidence_file"].as_str().unwrap();
    assert_eq!(
        name,
        format!(
            "opaque_encrypted_channel-{}.pcap",
            d["detection_id"].as_str().unwrap()
        )
    );
    let pcap = dir.join(name);
    let again = replay(&[&pcap], 1);
    let flow = of_type(&recs, "flow")[0];
    let cut = of_type(&again, "flow");
    assert_eq!(cut.len(), 1);
    assert_eq!(cut[0]["community_id"], flow["community_id"]);
    assert_eq!(cut[0]["ts"], flow["ts"]);
    let packets =
        cut[0]["orig"]["packets"].as_u64().unwrap() + cut[0]["resp"]["packets"].as_u64().unwrap();
    assert_eq!(packets, 5);
    // The first five frames: the handshake's three, then the first data.
    assert_eq!(cut[0]["history"].as_str().unwrap().get(..3), Some("ShA"));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// An attacker who sends a new SNI on every connection cannot grow the
/// detection tables: past `max_keys` the windows are counted, not kept.
#[test]
fn detection_tables_are_capped_and_counted() {
    let dir = tmp("caps");
    let cfg = dir.join("c.toml");
    std::fs::write(
        &cfg,
        "[detections]\nmax_keys = 2\nrejection_min_handshakes = 1\n",
    )
    .unwrap();
    let f = shared_file!("foxio-tls-sni-many-hellos.pcapng");
    let recs = replay_with_config(&[&f], 1, &cfg);
    let stats = of_type(&recs, "stats")[0];
    // Each destination wants a background_transmission window (one per
    // SNI; a name reached over TCP and over QUIC is one): two are kept,
    // the rest counted.
    let names: std::collections::BTreeSet<&str> = of_type(&recs, "tls")
        .iter()
        .filter_map(|t| t["sni"].as_str())
        .collect();
    let names = names.len() as u64;
    let over = stats["detections"]["keys_over_cap"].as_u64().unwrap();
    assert!(names > 10, "{names}");
    assert!(over >= names - 2, "{over} of {names}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A baseline built from earlier records explains a long uninspected
/// session it has seen often enough; without it the session is reported
/// with the limit `no_baseline`.
#[test]
fn baseline_explains_a_known_long_session() {
    let dir = tmp("baseline");
    let cfg = dir.join("c.toml");
    std::fs::write(&cfg, "[detections]\npersistent_min_duration_s = 5\n").unwrap();
    let f = fixture("local/long-lived-periodic.pcap");
    let records = dir.join("records.jsonl.zst");
    let out = blindspot(&[
        "replay",
        "--config",
        cfg.to_str().unwrap(),
        "-o",
        records.to_str().unwrap(),
        f.to_str().unwrap(),
    ]);
    assert!(out.status.success());
    let before = replay_with_config(&[&f], 1, &cfg);
    let persistent: Vec<&Value> = of_type(&before, "detection")
        .into_iter()
        .filter(|d| d["pattern"] == "opaque_persistent_session")
        .collect();
    assert_eq!(persistent.len(), 1);
    assert!(
        persistent[0]["limits"]
            .as_array()
            .unwrap()
            .contains(&"no_baseline".into())
    );

    // One session is not enough to explain anything ...
    let once = dir.join("once.baseline");
    let r = records.to_str().unwrap();
    assert!(
        blindspot(&["baseline", "build", r, "-o", once.to_str().unwrap()])
            .status
            .success()
    );
    let with_once = replay_args(
        &[&f],
        1,
        &[
            "--config",
            cfg.to_str().unwrap(),
            "--baseline",
            once.to_str().unwrap(),
        ],
    );
    let d: Vec<&Value> = of_type(&with_once, "detection")
        .into_iter()
        .filter(|d| d["pattern"] == "opaque_persistent_session")
        .collect();
    assert_eq!(d.len(), 1);
    let b = &d[0]["context"]["baseline"];
    assert_eq!(b["sessions"], 1);
    assert_eq!(b["ja4"], d[0]["ja4"]);
    assert!(
        d[0]["score_parts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["part"] == "longer_than_baseline")
    );

    // ... three are: the detection goes, and is counted.
    let thrice = dir.join("thrice.baseline");
    assert!(
        blindspot(&["baseline", "build", r, r, r, "-o", thrice.to_str().unwrap()])
            .status
            .success()
    );
    let with = replay_args(
        &[&f],
        1,
        &[
            "--config",
            cfg.to_str().unwrap(),
            "--baseline",
            thrice.to_str().unwrap(),
        ],
    );
    assert!(
        of_type(&with, "detection")
            .iter()
            .all(|d| d["pattern"] != "opaque_persistent_session")
    );
    assert_eq!(
        of_type(&with, "stats")[0]["detections"]["persistent_explained_by_baseline"],
        1
    );

    // The same records give the same file.
    let again = dir.join("again.baseline");
    assert!(
        blindspot(&["baseline", "build", r, r, r, "-o", again.to_str().unwrap()])
            .status
            .success()
    );
    assert_eq!(
        std::fs::read(&thrice).unwrap(),
        std::fs::read(&again).unwrap()
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_bad_baseline_file_is_a_clear_error() {
    let dir = tmp("badbase");
    let bad = dir.join("x.baseline");
    std::fs::write(&bad, b"not zstd").unwrap();
    let f = fixture("local/plain-tcp-random.pcap");
    let out = blindspot(&[
        "replay",
        "--baseline",
        bad.to_str().unwrap(),
        f.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("x.baseline: not a baseline file"), "{err}");
    assert!(err.contains("blindspot baseline build"), "{err}");
    assert!(out.stdout.is_empty());
    let _ = Path::new(&dir);
    std::fs::remove_dir_all(&dir).unwrap();
}
