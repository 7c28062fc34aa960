//! TLS after a plaintext start (issue 19.2) against tshark: the captures of
//! `fixtures/make-starttls.sh` (OpenSSL's s_client -starttls and curl
//! against dovecot, vsftpd, prosody, slapd, PostgreSQL, MariaDB, dante and
//! OpenSSH's SOCKS) and `fixtures/starttls/truth.jsonl`, what tshark reads
//! in them (`fixtures/starttls-truth.py`): tshark follows each upgrade
//! itself, and sees no TLS where the server refused.

mod common;
use common::*;
use serde_json::Value;

fn truth() -> Vec<Value> {
    jsonl("starttls/truth.jsonl")
}

fn from_port<'a>(recs: &'a [Value], kind: &str, port: &Value) -> Option<&'a Value> {
    of_type(recs, kind)
        .into_iter()
        .find(|r| r["src_port"] == *port)
}

/// Every session tshark saw TLS in has one `tls` record saying what came
/// before (`upgrade`: tshark's protocol before the TLS) with tshark's SNI,
/// JA3, version, cipher, JA3S and its string, and the SOCKS target as
/// `proxy_connect`; the flow's `service` is `ssl`.
#[test]
fn every_upgrade_tshark_follows_is_read() {
    let t = truth();
    let recs = replay(&[&fixture("starttls/starttls.pcap")], 2);
    let upgraded: Vec<&Value> = t.iter().filter(|s| s["tls"] == true).collect();
    // Every protocol of the issue, and refusals, are in the capture.
    let mut kinds: Vec<&str> = upgraded
        .iter()
        .map(|s| s["plain"].as_str().unwrap())
        .collect();
    kinds.sort_unstable();
    kinds.dedup();
    assert_eq!(
        kinds,
        [
            "ftp", "imap", "ldap", "lmtp", "mysql", "pop3", "postgres", "smtp", "socks4", "socks5",
            "xmpp"
        ]
    );
    assert_eq!(of_type(&recs, "tls").len(), upgraded.len(), "tls records");
    for s in &upgraded {
        let port = &s["client_port"];
        let r = from_port(&recs, "tls", port).unwrap_or_else(|| panic!("no tls record for {s}"));
        let what = format!("{} (client port {port})", s["plain"]);
        assert_eq!(r["upgrade"], s["plain"], "{what}: upgrade");
        assert_eq!(
            r["proxy_connect"], s["socks_target"],
            "{what}: proxy_connect"
        );
        for f in ["sni", "ja3", "version", "cipher", "ja3s", "ja3s_string"] {
            assert_eq!(r[f], s[f], "{what}: {f}");
        }
        assert!(!r["sni"].is_null() && !r["ja3s"].is_null(), "{what}");
        let flow = from_port(&recs, "flow", port).unwrap();
        assert_eq!(flow["service"], "ssl", "{what}: service");
    }
    let stats = &of_type(&recs, "stats")[0]["tls"];
    assert_eq!(stats["upgraded"], upgraded.len());
    let socks = upgraded
        .iter()
        .filter(|s| !s["socks_target"].is_null())
        .count();
    assert_eq!(stats["connect_tunnels"], socks);
}

/// Where the server refused (SMTP without TLS, PostgreSQL `N`, a SOCKS4a
/// request dante rejects, a SOCKS5 CONNECT to a closed port) tshark sees no
/// TLS, and neither do we, even where s_client sent its ClientHello
/// anyway; the flow keeps the plaintext protocol's `service`.
#[test]
fn a_refused_upgrade_is_no_tls() {
    let t = truth();
    let recs = replay(&[&fixture("starttls/starttls.pcap")], 0);
    let refused: Vec<&Value> = t.iter().filter(|s| s["tls"] == false).collect();
    assert_eq!(refused.len(), 4, "refusals in the capture");
    for s in refused {
        let port = &s["client_port"];
        assert!(from_port(&recs, "tls", port).is_none(), "{s}: a tls record");
        let service = match s["plain"].as_str().unwrap() {
            "postgres" => "postgresql",
            "socks4" | "socks5" => "socks",
            p => p,
        };
        let flow = from_port(&recs, "flow", port).unwrap();
        assert_eq!(flow["service"], service, "{s}: service");
        assert_eq!(flow["limits"], serde_json::json!(["device_unknown"]), "{s}");
    }
}
