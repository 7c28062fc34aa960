//! TCP, TLS and DHCP edge cases (issue 19) against tshark: the captures of
//! `fixtures/make-tcpedge.sh` (real curl, OpenSSL, Python ssl, tlslite-ng,
//! ISC dhclient, busybox udhcpc and dnsmasq) and `fixtures/tcpedge/truth.jsonl`,
//! what tshark reads in them (`fixtures/tcpedge-truth.py`). Their flows are
//! also in the conversation-table test (`tshark_conversations.rs`).

mod common;
use common::*;
use serde_json::Value;

fn truth() -> Vec<Value> {
    jsonl("tcpedge/truth.jsonl")
}

fn of_file<'a>(t: &'a [Value], file: &str, kind: &str) -> Vec<&'a Value> {
    t.iter()
        .filter(|v| v["file"] == file && v["kind"] == kind)
        .collect()
}

/// The `tls` record of the connection from `client_port`.
fn tls_of<'a>(recs: &'a [Value], file: &str, client_port: &Value) -> &'a Value {
    of_type(recs, "tls")
        .into_iter()
        .find(|r| r["src_port"] == *client_port)
        .unwrap_or_else(|| panic!("{file}: no tls record from client port {client_port}"))
}

/// Every ClientHello and ServerHello tshark reads, in each TLS capture,
/// against our `tls` records: SNI and JA3, version (draft names included),
/// cipher, JA3S and its string.
fn hellos_match(file: &str) -> Vec<Value> {
    let t = truth();
    let recs = replay(&[&fixture(&format!("tcpedge/{file}"))], 2);
    let (chs, shs) = (
        of_file(&t, file, "client_hello"),
        of_file(&t, file, "server_hello"),
    );
    assert!(
        !chs.is_empty() && !shs.is_empty(),
        "{file}: truth has no hellos"
    );
    assert_eq!(
        of_type(&recs, "tls").len(),
        chs.len(),
        "{file}: tls records"
    );
    for ch in &chs {
        let r = tls_of(&recs, file, &ch["client_port"]);
        assert_eq!(r["sslv2_hello"], ch["sslv2_record"], "{file}: sslv2_hello");
        assert_eq!(r["sni"], ch["sni"], "{file}: sni");
        assert_eq!(r["ja3"], ch["ja3"], "{file}: ja3");
    }
    for sh in &shs {
        let r = tls_of(&recs, file, &sh["client_port"]);
        for (o, x) in [
            ("version", "version"),
            ("cipher", "cipher"),
            ("ja3s", "ja3s"),
            ("ja3s_string", "ja3s_string"),
        ] {
            assert_eq!(r[o], sh[x], "{file} client port {}: {o}", sh["client_port"]);
        }
    }
    t.into_iter().filter(|v| v["file"] == file).collect()
}

/// Issue 19.3: curl's second connection carries its ClientHello on the SYN
/// (TCP Fast Open); its first byte was lost, and the hello with it.
#[test]
fn client_hello_on_a_fast_open_syn_is_read() {
    let t = hellos_match("tcp-fast-open-curl.pcap");
    let in_syn = t
        .iter()
        .filter(|v| v["kind"] == "client_hello" && v["in_syn"] == true)
        .count();
    assert_eq!(in_syn, 1, "the capture has one ClientHello on a SYN");
}

/// Issue 19.3: two SYN-ACKs with different ISNs (the server restarted); the
/// client acknowledges the second, whose stream carries the ServerHello.
#[test]
fn the_syn_ack_the_client_acknowledges_starts_the_server_stream() {
    let t = hellos_match("syn-ack-restarted-server.pcap");
    let isns: Vec<u64> = t
        .iter()
        .filter(|v| v["kind"] == "syn_ack")
        .map(|v| v["seq"].as_u64().unwrap())
        .collect();
    let acked = t.iter().find(|v| v["kind"] == "client_ack").unwrap()["ack"]
        .as_u64()
        .unwrap()
        - 1;
    assert_eq!(isns.len(), 2);
    assert_ne!(isns[0], isns[1]);
    assert_eq!(acked, isns[1], "the client acknowledges the later SYN-ACK");
}

/// Issue 19.3: an SSLv2-compatible ClientHello, then a TLS ServerHello.
#[test]
fn server_hello_after_an_sslv2_hello_is_read() {
    let t = hellos_match("sslv2-hello-tlslite-openssl.pcap");
    assert!(
        t.iter()
            .any(|v| v["kind"] == "client_hello" && v["sslv2_record"] == true)
    );
}

/// Issue 19.4: a TLS 1.3 draft 26 handshake (tlslite-ng): the draft's name,
/// cipher and JA3S as tshark gives them.
#[test]
fn tls13_draft_server_hello_is_named_and_fingerprinted() {
    let t = hellos_match("tls13-draft26-tlslite.pcap");
    assert!(t.iter().any(|v| v["version"] == "TLS 1.3 draft 26"));
}

/// Every DHCP message of a capture against tshark's fields.
fn dhcp_matches(file: &str) -> Vec<Value> {
    let t = truth();
    let exp = of_file(&t, file, "dhcp");
    let recs = replay(&[&fixture(&format!("tcpedge/{file}"))], 1);
    let mut ours = of_type(&recs, "dhcp");
    ours.sort_by_key(|r| r["ts"].as_str().unwrap().to_string());
    assert_eq!(ours.len(), exp.len(), "{file}: DHCP messages");
    for (r, e) in ours.iter().zip(&exp) {
        for k in [
            "message_type_code",
            "xid",
            "client_mac",
            "hostname",
            "param_list",
            "vendor_class",
            "requested_ip",
            "lease_s",
            "server_id",
            "options",
        ] {
            assert_eq!(r[k], e[k], "{file} frame {}: {k}", e["frame"]);
        }
    }
    exp.into_iter().cloned().collect()
}

/// Issue 19.5: dhclient sends a Client FQDN (81) in the ASCII encoding before
/// its parameter list and vendor class; those were lost.
#[test]
fn options_after_a_client_fqdn_are_kept() {
    let exp = dhcp_matches("dhcp-fqdn-dhclient.pcap");
    let discover = &exp[0];
    assert_eq!(discover["fqdn_encoded"], false);
    let opts: Vec<u64> = discover["options"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    let at = |c| opts.iter().position(|o| *o == c).unwrap();
    assert!(
        at(81) < at(55) && at(81) < at(60),
        "81 comes first: {opts:?}"
    );
    assert!(discover["param_list"].is_array() && discover["vendor_class"].is_string());
}

/// Issue 19.5: udhcpc sends host name `nas1` with its NUL terminator; tshark
/// (and Zeek) drop it.
#[test]
fn trailing_nul_of_a_host_name_is_dropped() {
    let exp = dhcp_matches("dhcp-nul-hostname-udhcpc.pcap");
    assert!(exp.iter().any(|e| e["hostname"] == "nas1"));
    // The wire has option 12 of 5 bytes: `nas1` and the NUL.
    let raw = std::fs::read(fixture("tcpedge/dhcp-nul-hostname-udhcpc.pcap")).unwrap();
    assert!(raw.windows(7).any(|w| w == b"\x0c\x05nas1\0"));
}
