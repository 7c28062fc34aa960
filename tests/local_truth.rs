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
    assert_eq!(t["outcome"], "established");
    // Zeek's letters: hello, hello, certificate, key exchange, hello done,
    // client key exchange, CCS, Finished, CCS, Finished, data, data, alert.
    assert_eq!(t["history"], "CsxknGIFifDdL");
    assert_eq!(t["client_app_records"], 1);
    assert_eq!(t["server_app_records"], 1);
    let tm = &t["timing"];
    let (a, b) = (
        tm["client_hello_to_server_hello_us"].as_u64().unwrap(),
        tm["handshake_us"].as_u64().unwrap(),
    );
    assert!(a > 0 && a < b, "{tm}");
    // Without an inspection CA configured the chain is visible and not inspected.
    assert_eq!(t["inspected"], false);
    assert_eq!(t["cert"]["chain_length"], 1);
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
    assert_eq!(t["outcome"], "client_rejected");
    assert_eq!(t["history"], "CsxknL");
}

#[test]
fn tls13_client_rejecting_the_ca_sends_a_19_byte_protected_record() {
    let (recs, truth) = run("tls13-client-rejects-unknown-ca.pcap");
    let t = one(&recs, "tls");
    assert_eq!(t["version"], "TLS 1.3");
    assert_eq!(t["sni"], truth["sni"]);
    assert_eq!(t["outcome"], "client_encrypted_alert");
    assert_eq!(
        t["client_response_len"],
        truth["client_first_encrypted_record_length"]
    );
    assert_eq!(t["client_app_records"], 0);
    // The alert is inside the protected record: inferred from its size.
    let a = &t["alerts"].as_array().unwrap()[..];
    assert_eq!(a.len(), 1, "{a:?}");
    assert_eq!(a[0]["from"], "client");
    assert_eq!(a[0]["inferred"], true);
    assert_eq!(a[0]["encrypted"], true);
    assert_eq!(a[0]["record_length"], 19);
    assert!(a[0]["description"].is_null());
    // ClientHello, ServerHello, the server's protected flight, the client's
    // compatibility ChangeCipherSpec, then its alert.
    assert_eq!(t["history"], "CsidIL");
    assert_eq!(t["inspected"], serde_json::Value::Null);
    // The lab client's MAC is locally administered and no inventory was given.
    assert_eq!(
        t["limits"],
        serde_json::json!(["tls13_certificate_hidden", "private_mac_unmapped"])
    );
    assert_eq!(t["device"]["mac_source"], "arp");
    assert_eq!(t["device"]["mac_private"], true);
    let tm = &t["timing"];
    assert!(tm["handshake_us"].is_null());
    assert!(tm["server_flight_to_client_us"].as_u64().unwrap() > 0);
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
    // The truth: the client resets about 0.3 s after the server's flight.
    assert_eq!(t["outcome"], "client_aborted");
    assert_eq!(t["history"], "Csid");
    let after = t["timing"]["server_flight_to_client_us"].as_u64().unwrap();
    assert!((250_000..1_000_000).contains(&after), "{after}");
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
    // Finished, 12 writes, close_notify: the writes are the application data.
    assert_eq!(t["client_app_records"], 12);
    assert_eq!(t["outcome"], "established");
    assert_eq!(t["client_response_len"], 69);
    // Both close_notify records (19 bytes, before each side's FIN) are inferred.
    let alerts = t["alerts"].as_array().unwrap();
    assert_eq!(alerts.len(), 2, "{alerts:?}");
    assert!(
        alerts
            .iter()
            .all(|a| a["inferred"] == true && a["record_length"] == 19)
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

#[test]
fn tls13_download_is_established_with_its_finished_size() {
    let (recs, truth) = run("tls13-curl-nginx-download.pcap");
    let t = one(&recs, "tls");
    assert_eq!(t["outcome"], "established");
    assert_eq!(
        t["client_response_len"],
        truth["client_first_encrypted_record_length"]
    );
    assert_eq!(t["client_app_records"], 1, "one GET");
    assert!(
        t["server_app_records"].as_u64().unwrap() >= 96,
        "1.5 MiB in 16 KiB records"
    );
    assert!(t["history"].as_str().unwrap().starts_with("CsidIF"));
}

#[test]
fn tls13_openssl_client_sends_its_rejection_in_cleartext() {
    let (recs, truth) = run("tls13-openssl-client-rejects-unknown-ca-cleartext-alert.pcap");
    let t = one(&recs, "tls");
    assert_eq!(t["outcome"], "client_rejected");
    let a = &t["alerts"][0];
    assert_eq!(a["description"], truth["alerts"][0]["code"]);
    assert_eq!(a["encrypted"], false);
    assert_eq!(a["inferred"], false);
}

#[test]
fn tls_through_a_connect_proxy_is_followed_into_the_tunnel() {
    let (recs, truth) = run("tls12-curl-via-connect-proxy.pcap");
    let t = one(&recs, "tls");
    assert_eq!(t["proxy_connect"], truth["http"]["uri"]);
    assert_eq!(t["dst_port"], truth["server"]["port"]);
    assert_eq!(t["sni"], truth["sni"]);
    assert_eq!(t["version"], truth["tls_version"]);
    assert_eq!(t["outcome"], "established");
    assert_eq!(t["alerts"][0]["record_length"], 26);
    let stats = one(&recs, "stats");
    assert_eq!(stats["tls"]["connect_tunnels"], 1);
}

/// The leaf as openssl reads it from the lab PKI's files.
#[test]
fn certificate_fields_match_openssl_and_inspection_follows_the_config() {
    let pem = fixture("local/certs/origin.pem");
    let openssl = |args: &[&str]| {
        let o = std::process::Command::new("openssl")
            .args(["x509", "-noout", "-in", pem.to_str().unwrap()])
            .args(args)
            .output();
        o.ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let (recs, truth) = run("tls12-curl-nginx.pcap");
    let c = &one(&recs, "tls")["cert"];
    assert_eq!(c["san"], serde_json::json!([truth["sni"]]));
    assert_eq!(c["subject"], "O=blindspot lab, CN=origin.lab.test");
    assert_eq!(c["issuer"], "O=blindspot lab, CN=blindspot-lab-ca");
    if let Some(fp) = openssl(&["-fingerprint", "-sha256"]) {
        let fp = fp
            .split('=')
            .nth(1)
            .unwrap()
            .replace(':', "")
            .to_lowercase();
        assert_eq!(c["sha256"], fp);
        let serial = openssl(&["-serial"]).unwrap();
        assert_eq!(c["serial"], serial.trim_start_matches("serial="));
    } else {
        eprintln!("openssl not found: fingerprint checked only by the shared captures");
    }

    // An inspection CA named by PEM file (issuer + key id), by certificate
    // hash, and an unrelated one.
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(fixture("local/certs/lab-ca.pem"), dir.path().join("ca.pem")).unwrap();
    let run_with = |toml: &str| {
        let cfg = dir.path().join("c.toml");
        std::fs::write(&cfg, toml).unwrap();
        let recs = replay_with_config(&[&fixture("local/tls12-curl-nginx.pcap")], 1, &cfg);
        let t = of_type(&recs, "tls")[0].clone();
        (t["inspected"].clone(), t["inspection_ca"].clone())
    };
    let (i, ca) = run_with("[inspection]\nca_files = [\"ca.pem\"]\n");
    assert_eq!(i, true);
    assert_eq!(ca, "O=blindspot lab, CN=blindspot-lab-ca");
    let leaf = c["sha256"].as_str().unwrap();
    let (i, _) = run_with(&format!("[inspection]\nca_sha256 = [\"{leaf}\"]\n"));
    assert_eq!(i, true);
    std::fs::copy(
        fixture("local/certs/other-ca.pem"),
        dir.path().join("ca.pem"),
    )
    .unwrap();
    let (i, ca) = run_with("[inspection]\nca_files = [\"ca.pem\"]\n");
    assert_eq!(i, false);
    assert!(ca.is_null());
}
