//! Devices on records: the time-aware IP → MAC history from the wire, MDM
//! matching, private MACs, and DHCPv6 against tshark.

mod common;
use common::*;
use serde_json::Value;

fn truth() -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixture("devices/truth.json")).unwrap()).unwrap()
}

/// dnsmasq gives 192.0.2.150 to phone A, A releases it, then dnsmasq gives
/// it to phone B: each phone's HTTP flow is on the phone that held the
/// address then, whatever the worker count.
#[test]
fn an_address_that_moves_between_phones_maps_each_flow_to_its_holder() {
    let t = &truth()["address-moves.pcap"];
    let cap = fixture("devices/address-moves.pcap");
    let mdm = fixture("inventory/mdm-blindspot.json");
    let mut seen = Vec::new();
    for workers in [0, 1, 2] {
        let recs = replay_args(&[&cap], workers, &["--mdm", mdm.to_str().unwrap()]);
        let mut flows: Vec<&Value> = of_type(&recs, "flow")
            .into_iter()
            .filter(|f| f["dst_port"] == 8080 && f["src_ip"] == t["ip"])
            .collect();
        flows.sort_by_key(|f| f["ts"].as_str().unwrap().to_string());
        let phones = t["phones"].as_array().unwrap();
        assert_eq!(flows.len(), phones.len(), "workers {workers}");
        for (f, p) in flows.iter().zip(phones) {
            let d = &f["device"];
            assert_eq!(d["ip"], t["ip"]);
            assert_eq!(d["mac"], p["mac"], "{} workers {workers}", p["uri"]);
            assert_eq!(d["mac_source"], "dhcp");
            assert_eq!(d["hostname"], p["hostname"]);
            assert_eq!(d["mac_private"], p["private"]);
            assert_eq!(d["serial"], p["mdm_serial"]);
            if p["private"] == true {
                assert_eq!(f["limits"], serde_json::json!(["private_mac_unmapped"]));
                assert!(d["mdm_match"].is_null());
            } else {
                assert_eq!(f["limits"], serde_json::json!([]));
                assert_eq!(d["mdm_match"], "wifi_mac");
                assert_eq!(d["supervised"], true);
                assert_eq!(d["name"], "Front Desk iPhone");
            }
        }
        // Device records: each phone leases the address and releases it, in
        // that order; B's lease names no previous holder (A released first).
        let mut dev: Vec<(String, String, String)> = of_type(&recs, "device")
            .into_iter()
            .filter(|r| r["ip"] == t["ip"])
            .map(|r| {
                (
                    r["ts"].as_str().unwrap().to_string(),
                    r["event"].as_str().unwrap().to_string(),
                    r["mac"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        dev.sort();
        let events: Vec<(&str, &str)> = dev
            .iter()
            .map(|(_, e, m)| (e.as_str(), m.as_str()))
            .collect();
        let (a, b) = (
            phones[0]["mac"].as_str().unwrap(),
            phones[1]["mac"].as_str().unwrap(),
        );
        assert_eq!(
            events,
            [("lease", a), ("release", a), ("lease", b), ("release", b)]
        );
        let mut lines: Vec<String> = recs.iter().map(|r| r.to_string()).collect();
        lines.sort();
        seen.push(lines);
    }
    assert!(
        seen.windows(2).all(|w| w[0] == w[1]),
        "records differ by worker count"
    );
}

/// Without any inventory a private MAC is reported as such, never guessed,
/// and a flow from an address nothing binds says `device_unknown`.
#[test]
fn unmapped_devices_are_named_as_limits() {
    let recs = replay(&[&fixture("devices/address-moves.pcap")], 1);
    let flows = of_type(&recs, "flow");
    let b = flows
        .iter()
        .find(|f| f["dst_port"] == 8080 && f["device"]["mac_private"] == true)
        .unwrap();
    assert_eq!(b["limits"], serde_json::json!(["private_mac_unmapped"]));
    let a = flows
        .iter()
        .find(|f| f["dst_port"] == 8080 && f["device"]["mac_private"] == false)
        .unwrap();
    assert_eq!(
        a["limits"],
        serde_json::json!([]),
        "no MDM given: no no_mdm_record"
    );
    // The broadcast DISCOVER's flow (0.0.0.0 → 255.255.255.255) has no device.
    let d = flows.iter().find(|f| f["src_ip"] == "0.0.0.0").unwrap();
    assert_eq!(d["limits"], serde_json::json!(["device_unknown"]));
    assert!(d["device"]["mac"].is_null());
    let stats = of_type(&recs, "stats")[0];
    assert!(stats["devices"]["evidence_dhcp"].as_u64().unwrap() >= 4);
    assert!(stats["devices"]["evidence_arp"].as_u64().unwrap() >= 1);
    assert!(stats["devices"]["records_without_device"].as_u64().unwrap() >= 1);
}

#[test]
fn every_dhcpv6_message_matches_tshark() {
    let name = "foxio-dhcpv6.pcap";
    let exp: Vec<Value> = read_jsonl(&shared_file!(format!("expected/{name}.jsonl")))
        .into_iter()
        .filter(|v| v["kind"] == "dhcp" && v["dhcp_version"] == 6)
        .collect();
    assert_eq!(exp.len(), 6);
    let recs = replay(&[&shared_file!(format!("{name}"))], 2);
    let ours = of_type(&recs, "dhcp");
    assert_eq!(ours.len(), exp.len());
    for e in &exp {
        let r = ours
            .iter()
            .find(|r| r["ts"] == e["ts"] && r["xid"] == e["xid"])
            .unwrap_or_else(|| panic!("no dhcp record at {} xid {}", e["ts"], e["xid"]));
        assert_eq!(r["dhcp_version"], 6);
        for (o, x) in [
            ("message_type", "dhcp_type"),
            ("message_type_code", "dhcp_type_code"),
            ("client_duid", "client_duid"),
            ("client_mac", "client_mac"),
            ("hostname", "hostname"),
            ("src_ip", "src_ip"),
            ("dst_ip", "dst_ip"),
            ("src_mac", "src_mac"),
            ("dst_mac", "dst_mac"),
            ("vlan", "vlan_ids"),
        ] {
            assert_eq!(r[o], e[x], "{} {}: {o}", e["ts"], e["dhcp_type"]);
        }
        let ips: Vec<&Value> = r["ia_addresses"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| &a["ip"])
            .collect();
        let want: Vec<&Value> = e["ia_addresses"].as_array().unwrap().iter().collect();
        assert_eq!(ips, want);
        // The device is the client the DUID names.
        assert_eq!(r["device"]["mac"], e["client_mac"]);
    }
}

/// A malformed inventory entry stops the run with one line per entry naming
/// the file and line; with `--keep-going` the run goes on without it.
#[test]
fn malformed_inventory_names_file_and_line_and_keep_going_continues() {
    let cap = fixture("devices/address-moves.pcap");
    let bad = fixture("inventory/mdm-blindspot-bad.json");
    let (cap_s, bad_s) = (cap.to_str().unwrap(), bad.to_str().unwrap());
    let out = blindspot(&["replay", "--mdm", bad_s, cap_s]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty(), "no records when stopped");
    let err = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = err.lines().collect();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("blindspot: error: ") && l.contains(&format!("{bad_s}:7: "))),
        "{err}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains(&format!("{bad_s}:11: ")) && l.contains("wifi_addr")),
        "{err}"
    );
    assert!(lines.last().unwrap().contains("--keep-going"), "{err}");
    assert!(!err.contains("panicked") && !err.contains("RUST_BACKTRACE"));

    let out = blindspot(&["replay", "--keep-going", "--mdm", bad_s, cap_s]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("warning (skipped): {bad_s}:7: ")),
        "{err}"
    );
    let recs = parse_lines(&out.stdout);
    assert!(!of_type(&recs, "flow").is_empty());

    // A file that is not there, or in no known shape, is one line too.
    let out = blindspot(&["replay", "--leases", "/nonexistent/dhcpd.leases", cap_s]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("blindspot: error: /nonexistent/dhcpd.leases: "),
        "{err}"
    );
}

/// The coverage record counts the blind spots of a run. Truth: tshark's
/// summaries of the two shared captures (one TCP ClientHello each; one
/// QUIC ClientHello, which is read; the ECH capture's hello offers ECH; all
/// three sessions negotiate TLS 1.3) and the address-moves capture (two phones, one of
/// them on a private MAC, one of them in the MDM inventory of four).
#[test]
fn coverage_counts_the_blind_spots() {
    let shared = shared_file!("");
    let summary = |name: &str| -> Value {
        let text = std::fs::read_to_string(shared.join(format!("expected/{name}.jsonl"))).unwrap();
        serde_json::from_str(text.lines().next().unwrap()).unwrap()
    };
    let (ech, quic) = (
        summary("ndpi-tls13-ech-ipv6.pcapng"),
        summary("foxio-chrome-cloudflare-quic-ipv6.pcapng"),
    );
    let tcp_hellos =
        ech["client_hellos_tcp"].as_u64().unwrap() + quic["client_hellos_tcp"].as_u64().unwrap();
    let quic_hellos = quic["client_hellos_quic"].as_u64().unwrap();
    let mdm = fixture("inventory/mdm-blindspot.json");
    let recs = replay_args(
        &[
            &fixture("devices/address-moves.pcap"),
            &shared_file!("ndpi-tls13-ech-ipv6.pcapng"),
            &shared_file!("foxio-chrome-cloudflare-quic-ipv6.pcapng"),
        ],
        2,
        &["--mdm", mdm.to_str().unwrap()],
    );
    let c = of_type(&recs, "coverage");
    assert_eq!(c.len(), 1);
    let c = c[0];
    // The QUIC handshake is read: a TLS session, none left blind.
    assert_eq!(c["tls_sessions"], tcp_hellos + quic_hellos);
    assert_eq!(
        c["tls_certificate_hidden"]["count"],
        tcp_hellos + quic_hellos
    );
    assert_eq!(c["tls_ech"]["count"], 1);
    assert_eq!(c["quic"]["count"], 0);
    assert_eq!(c["quic"]["of"], quic_hellos + tcp_hellos);
    assert_eq!(c["quic_sessions"]["sessions"], quic_hellos);
    assert_eq!(c["quic_sessions"]["parsed"], quic_hellos);
    let flows = of_type(&recs, "flow");
    let without: usize = flows
        .iter()
        .filter(|f| f["device"]["mac"].is_null())
        .count();
    assert_eq!(c["flows_without_device"]["count"], without as u64);
    assert_eq!(c["flows_without_device"]["of"], flows.len() as u64);
    let d = &c["devices"];
    assert_eq!(d["private_macs"], 1);
    assert_eq!(d["private_macs_unmapped"], 1);
    assert_eq!(d["mdm_devices"], 4);
    assert_eq!(d["mdm_devices_not_seen"], 3);
    assert_eq!(c["capture_drops"], 0);
    assert_eq!(c["damaged_inputs"], 0);
}
