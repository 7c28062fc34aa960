//! QUIC past an inspecting proxy (issue 18, items 4 and 5) against tshark:
//! the capture of `fixtures/make-quicbypass.sh` (curl through mitmproxy,
//! aioquic's client and server over UDP) and `fixtures/quicbypass/truth.json`,
//! what tshark reads in it (QUIC packet types per side, the chains that
//! name mitmproxy).

mod common;
use common::*;
use serde_json::Value;

fn truth() -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixture("quicbypass/truth.json")).unwrap())
        .unwrap()
}

fn run() -> Vec<Value> {
    replay_with_config(
        &[&fixture("quicbypass/quicbypass.pcap")],
        1,
        &fixture("quicbypass/config.toml"),
    )
}

fn has(types: &Value, t: u64) -> bool {
    types.as_array().unwrap().iter().any(|v| v == t)
}

/// The QUIC outcomes follow the packet types tshark reads; the TCP
/// sessions through the proxy are inspected where tshark sees its CA.
#[test]
fn outcomes_and_inspection_match_tshark() {
    let recs = run();
    let tls = of_type(&recs, "tls");
    let t = truth();
    let quic = t["quic"].as_array().unwrap();
    assert_eq!(quic.len(), 3);
    let mut established = 0;
    for q in quic {
        let r = tls
            .iter()
            .find(|r| r["proto"] == "udp" && r["src_port"] == q["client_port"])
            .unwrap_or_else(|| panic!("no tls record for {q}"));
        assert_eq!(r["sni"], q["sni"], "{q}");
        let (c, s) = (&q["types"]["client"], &q["types"]["server"]);
        // Handshake packets (type 2) from both sides, then client 1-RTT.
        if has(c, 2) && has(s, 2) && q["client_1rtt_after_handshake"] == true {
            assert_eq!(r["outcome"], "established", "{q}");
            established += 1;
        } else {
            assert!(s.as_array().unwrap().is_empty(), "{q}");
            // The capture ended: the flow did not time out.
            assert_eq!(r["outcome"], "incomplete", "{q}");
        }
    }
    assert_eq!(established, 2);
    let tcp: Vec<_> = tls.iter().filter(|r| r["proto"] == "tcp").collect();
    let chains = t["tcp"].as_array().unwrap();
    assert_eq!(tcp.len(), chains.len());
    for c in chains {
        assert_eq!(c["mitmproxy_chain"], true);
    }
    assert!(tcp.iter().all(|r| r["inspected"] == true), "{tcp:?}");
}

/// The device whose TCP is inspected completed QUIC with video.lab.test:
/// one `destination_bypass` with `via: "quic"`. The other device (no
/// inspected TCP) and the QUIC handshake nobody answered make none, and
/// no QUIC session is an `opaque_encrypted_channel`.
#[test]
fn completed_quic_of_an_inspected_device_is_a_bypass() {
    let recs = run();
    let ds = of_type(&recs, "detection");
    let bypass: Vec<_> = ds
        .iter()
        .filter(|d| d["pattern"] == "destination_bypass")
        .collect();
    assert_eq!(bypass.len(), 1, "{bypass:?}");
    let d = bypass[0];
    assert_eq!(d["evidence"]["via"], "quic", "{d}");
    assert_eq!(d["evidence"]["sessions"], 1, "{d}");
    assert_eq!(d["evidence"]["documented"], false, "{d}");
    assert_eq!(d["device"]["ip"], "192.0.2.50", "{d}");
    assert_eq!(d["destination"]["name"], "video.lab.test", "{d}");
    assert!(
        ds.iter()
            .all(|d| d["pattern"] != "opaque_encrypted_channel"),
        "{ds:?}"
    );
}

/// With video.lab.test on the documented bypass list the detection is the
/// governance record: `documented`, `documented_bypass` 10 points.
#[test]
fn documented_quic_bypass() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        fixture("quicbypass/inspection-ca.pem"),
        dir.path().join("inspection-ca.pem"),
    )
    .unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(
        &cfg,
        "[inspection]\nca_files = [\"inspection-ca.pem\"]\n\
         [detections]\nbypass_domains = [\"video.lab.test\"]\n",
    )
    .unwrap();
    let recs = replay_with_config(&[&fixture("quicbypass/quicbypass.pcap")], 1, &cfg);
    let ds = of_type(&recs, "detection");
    let d = ds
        .iter()
        .find(|d| d["pattern"] == "destination_bypass")
        .expect("a destination_bypass");
    assert_eq!(d["evidence"]["documented"], true, "{d}");
    assert_eq!(d["evidence"]["via"], "quic", "{d}");
    assert_eq!(d["score"], 10, "{d}");
}
