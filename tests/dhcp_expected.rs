//! DHCPv4 messages against independent truth: every DHCPv4 message of the
//! shared captures against tshark's values (`../shared/pcaps/expected/`),
//! and the dnsmasq/dhclient capture against its `truth.json` entry.

mod common;
use common::*;
use serde_json::Value;

#[test]
fn every_dhcpv4_message_matches_tshark() {
    shared_file!("");
    let mut compared = 0;
    for cap in all_captures().into_iter().filter(|p| is_shared(p)) {
        let name = cap.file_name().unwrap().to_string_lossy().to_string();
        let exp: Vec<Value> = read_jsonl(&cap.with_file_name(format!("expected/{name}.jsonl")))
            .into_iter()
            .filter(|v| v["kind"] == "dhcp" && v["dhcp_version"] == 4)
            .collect();
        if exp.is_empty() {
            continue;
        }
        let recs = replay(&[&cap], 2);
        let ours = of_type(&recs, "dhcp");
        assert_eq!(ours.len(), exp.len(), "{name}: DHCPv4 message count");
        for e in &exp {
            let r = ours
                .iter()
                .find(|r| r["ts"] == e["ts"] && r["xid"] == e["xid"])
                .unwrap_or_else(|| {
                    panic!("{name}: no dhcp record at {} xid {}", e["ts"], e["xid"])
                });
            for (o, x) in [
                ("message_type", "dhcp_type"),
                ("message_type_code", "dhcp_type_code"),
                ("op", "op"),
                ("hw_type", "hw_type"),
                ("client_mac", "client_mac"),
                ("client_ip", "client_ip"),
                ("your_ip", "your_ip"),
                ("server_ip", "server_ip"),
                ("relay_ip", "relay_ip"),
                ("requested_ip", "requested_ip"),
                ("hostname", "hostname"),
                ("client_id", "client_id"),
                ("param_list", "param_list"),
                ("lease_s", "lease_s"),
                ("server_id", "server_id"),
                ("vendor_class", "vendor_class"),
                ("options", "options"),
                ("src_ip", "src_ip"),
                ("dst_ip", "dst_ip"),
                ("src_mac", "src_mac"),
                ("dst_mac", "dst_mac"),
                ("vlan", "vlan_ids"),
            ] {
                assert_eq!(r[o], e[x], "{name} {} {}: {o}", e["ts"], e["dhcp_type"]);
            }
            compared += 1;
        }
    }
    assert!(compared >= 17, "compared {compared} DHCPv4 messages");
}

#[test]
fn dnsmasq_and_dhclient_exchange_matches_its_truth() {
    let cap = fixture("local/dhcp-dnsmasq-dhclient.pcap");
    let truth: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("local/truth.json")).unwrap())
            .unwrap();
    let t = &truth["dhcp-dnsmasq-dhclient.pcap"]["dhcp"];
    let recs = replay(&[&cap], 1);
    let mut msgs: Vec<&Value> = of_type(&recs, "dhcp");
    msgs.sort_by_key(|r| r["ts"].as_str().unwrap().to_string());
    let types: Vec<&Value> = msgs.iter().map(|r| &r["message_type"]).collect();
    assert_eq!(
        types,
        t["messages"].as_array().unwrap().iter().collect::<Vec<_>>()
    );
    assert!(msgs.iter().all(|r| r["client_mac"] == t["client_mac"]));
    let ack = msgs.iter().find(|r| r["message_type"] == "ACK").unwrap();
    assert_eq!(ack["your_ip"], t["assigned_ip"]);
    assert_eq!(ack["lease_s"], t["lease_time_s"]);
    assert_eq!(ack["server_id"], t["server_ip"]);
    assert_eq!(ack["src_mac"], t["server_mac"]);
    let req = msgs
        .iter()
        .find(|r| r["message_type"] == "REQUEST")
        .unwrap();
    assert_eq!(req["hostname"], t["hostname"]);
    assert_eq!(req["requested_ip"], t["assigned_ip"]);
    // dhclient asks for these, in this order (its dhclient.conf in make-local.sh).
    assert_eq!(
        req["param_list"],
        serde_json::json!([1, 28, 2, 3, 15, 6, 12, 26])
    );
    let rel = msgs
        .iter()
        .find(|r| r["message_type"] == "RELEASE")
        .unwrap();
    assert_eq!(rel["client_ip"], t["released_ip"]);
}
