//! The captures made by `fixtures/make-local.sh` against their known truth
//! (`fixtures/local/truth.json`, checked with tshark when they were made).

mod common;
use common::*;
use serde_json::Value;

fn run(name: &str) -> (Vec<Value>, Value) {
    let cap = fixture(&format!("local/{name}"));
    let recs = replay(&[&cap], 2);
    let truth: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("local/truth.json")).unwrap())
            .unwrap();
    (recs, truth[name].clone())
}

fn one<'a>(recs: &'a [Value], t: &str) -> &'a Value {
    let v = of_type(recs, t);
    assert_eq!(v.len(), 1, "expected one {t} record, got {}", v.len());
    v[0]
}

#[test]
fn tls12_download_is_a_normal_connection() {
    let (recs, truth) = run("tls12-curl-nginx.pcap");
    let f = one(&recs, "flow");
    let t = one(&recs, "tls");
    assert_eq!(f["state"], "SF");
    assert_eq!(f["src_ip"], truth["client"]["ip"]);
    assert_eq!(f["src_mac"], truth["client"]["mac"]);
    assert_eq!(f["dst_port"], 443);
    assert_eq!(t["sni"], truth["sni"]);
    assert_eq!(t["version"], truth["tls_version"]);
    assert_eq!(t["cipher"], "0xc02c");
    let a = &t["alerts"][0];
    assert_eq!(
        (
            a["from"].as_str(),
            a["encrypted"].as_bool(),
            a["record_length"].as_u64()
        ),
        (Some("client"), Some(true), Some(26))
    );
}

#[test]
fn tls12_client_rejecting_the_ca_sends_cleartext_unknown_ca() {
    let (recs, _) = run("tls12-client-rejects-unknown-ca.pcap");
    let t = one(&recs, "tls");
    let a = &t["alerts"][0];
    assert_eq!(a["from"], "client");
    assert_eq!(a["encrypted"], false);
    assert_eq!(a["level"], 2);
    assert_eq!(a["description"], 48);
    assert_eq!(t["client_app_records"], 0);
}

#[test]
fn tls13_client_rejecting_the_ca_sends_a_19_byte_protected_record() {
    let (recs, truth) = run("tls13-client-rejects-unknown-ca.pcap");
    let t = one(&recs, "tls");
    assert_eq!(t["version"], "TLS 1.3");
    assert_eq!(t["sni"], truth["sni"]);
    assert_eq!(t["client_first_app_record_len"], 19);
    assert_eq!(t["client_app_records"], 1);
    assert!(
        t["alerts"].as_array().unwrap().is_empty(),
        "the alert is inside the protected record"
    );
}

#[test]
fn reset_mid_handshake_is_rsto_without_alert() {
    let (recs, _) = run("tcp-reset-mid-handshake.pcap");
    let f = one(&recs, "flow");
    let t = one(&recs, "tls");
    assert_eq!(f["state"], "RSTO");
    assert!(f["history"].as_str().unwrap().contains('R'));
    assert!(t["alerts"].as_array().unwrap().is_empty());
    assert_eq!(t["version"], "TLS 1.3");
    assert_eq!(t["client_app_records"], 0);
}

#[test]
fn random_payload_flow_looks_fully_encrypted_and_is_not_tls() {
    let (recs, _) = run("plain-tcp-random.pcap");
    let f = one(&recs, "flow");
    assert!(of_type(&recs, "tls").is_empty());
    assert_eq!(f["state"], "SF");
    assert_eq!(f["orig"]["payload_bytes"], 32768);
    assert_eq!(f["resp"]["payload_bytes"], 8192);
    for d in ["orig", "resp"] {
        let fp = &f[d]["first_payload"];
        assert_eq!(fp["len"], 1024);
        assert!(fp["entropy"].as_f64().unwrap() > 7.7, "{fp}");
        let pc = fp["popcount"].as_f64().unwrap();
        assert!((3.4..=4.6).contains(&pc), "{fp}");
        assert!(fp["printable_frac"].as_f64().unwrap() < 0.5);
        assert!(fp["printable_run"].as_u64().unwrap() < 20);
    }
}

#[test]
fn long_lived_connection_with_periodic_writes() {
    let (recs, _) = run("long-lived-periodic.pcap");
    let f = one(&recs, "flow");
    let t = one(&recs, "tls");
    assert!(f["duration"].as_f64().unwrap() >= 11.0, "{}", f["duration"]);
    assert_eq!(f["dst_port"], 8443);
    // Finished + 12 writes + close_notify, all protected records.
    assert!(
        t["client_app_records"].as_u64().unwrap() >= 13,
        "{}",
        t["client_app_records"]
    );
    assert!(f["rtt_syn_synack_us"].is_u64());
}

#[test]
fn dhcp_exchange_is_one_udp_flow_per_tuple() {
    let (recs, truth) = run("dhcp-dnsmasq-dhclient.pcap");
    let flows = of_type(&recs, "flow");
    assert!(flows.iter().all(|f| f["proto"] == "udp"));
    assert!(
        flows
            .iter()
            .any(|f| f["src_port"] == 68 && f["dst_port"] == 67)
    );
    let stats = one(&recs, "stats");
    assert!(stats["skipped"]["arp"].as_u64().unwrap() >= 1);
    let _ = truth;
}
