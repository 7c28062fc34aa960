//! Post-handshake rejection (issue 18, item 6) against tshark: the capture
//! of `fixtures/make-posthandshake.sh` (Python's ssl client completing TLS
//! 1.2 and 1.3 handshakes with openssl s_server, then sending only
//! close_notify and closing; two controls that send a request) and
//! `fixtures/posthandshake/truth.json`, what tshark reads in it with the
//! key log (the client's records after its Finished, by content type).

mod common;
use common::*;
use serde_json::Value;

fn truth() -> Vec<Value> {
    let t: Value = serde_json::from_str(
        &std::fs::read_to_string(fixture("posthandshake/truth.json")).unwrap(),
    )
    .unwrap();
    t["streams"].as_array().unwrap().clone()
}

fn run() -> Vec<Value> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(fixture("local/certs/lab-ca.pem"), dir.path().join("ca.pem")).unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(
        &cfg,
        "[inspection]\nca_files = [\"ca.pem\"]\n[detections]\nrejection_min_handshakes = 3\n",
    )
    .unwrap();
    replay_with_config(&[&fixture("posthandshake/posthandshake.pcap")], 1, &cfg)
}

/// Each session's outcome follows from what tshark decrypts: a completed
/// handshake and then only an alert from the client is
/// `client_closed_after_handshake`; application data is `established`.
#[test]
fn outcomes_follow_the_clients_records_after_finished() {
    let recs = run();
    let tls = of_type(&recs, "tls");
    let truth = truth();
    assert_eq!(truth.len(), 8);
    let mut closed = [0; 2];
    for t in &truth {
        let r = tls
            .iter()
            .find(|r| r["src_port"] == t["client_port"])
            .unwrap_or_else(|| panic!("no tls record for {t}"));
        assert_eq!(r["version"], t["version"], "{t}");
        assert_eq!(t["finished"], true);
        let after: Vec<u64> = t["client_after_finished"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .collect();
        if after == [21] {
            assert_eq!(r["outcome"], "client_closed_after_handshake", "{t}");
            assert_eq!(r["client_app_records"], 0, "{t}");
            closed[usize::from(t["version"] == "TLS 1.3")] += 1;
        } else {
            assert!(after.contains(&23), "{t}");
            assert_eq!(r["outcome"], "established", "{t}");
        }
        if t["version"] == "TLS 1.2" {
            assert_eq!(r["inspected"], true, "{t}");
        }
    }
    assert_eq!(closed, [3, 3]);
}

/// Three such sessions per JA4 make a `repeated_handshake_rejection`, with
/// the lower weight of post-handshake closes (`rejections` 15, not 30).
#[test]
fn three_closes_after_handshake_make_a_rejection_detection() {
    let recs = run();
    let ds: Vec<&Value> = of_type(&recs, "detection")
        .into_iter()
        .filter(|d| d["pattern"] == "repeated_handshake_rejection")
        .collect();
    assert_eq!(ds.len(), 2, "{ds:?}");
    for d in ds {
        let e = &d["evidence"];
        assert_eq!(e["handshakes"], 3, "{d}");
        assert_eq!(e["outcomes"]["client_closed_after_handshake"], 3, "{d}");
        let rejections = d["score_parts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["part"] == "rejections")
            .unwrap_or_else(|| panic!("{d}"));
        assert_eq!(rejections["points"], 15, "{d}");
    }
}
