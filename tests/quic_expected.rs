//! QUIC handshakes against independent truth.
//!
//! - The third-party captures' QUIC hellos against `../shared/pcaps/expected/`
//!   (tshark 4.4 and `ja4plus`): SNI, ALPN, JA3, JA4, versions; the
//!   ServerHello's version, cipher and JA3S.
//! - The project's own aioquic captures (`fixtures/quic/`, made by
//!   `fixtures/make-quic.sh`) against `fixtures/quic/truth.json`, which tshark
//!   wrote with the keys the stacks logged: SNI, ALPN, JA3, JA4, versions,
//!   cipher, connection IDs, transport parameters.

mod common;
use common::*;
use serde_json::Value;
use std::collections::HashMap;

type Tuple = (String, u64, String, u64);

fn tuple(v: &Value) -> Tuple {
    (
        v["src_ip"].as_str().unwrap().to_string(),
        v["src_port"].as_u64().unwrap(),
        v["dst_ip"].as_str().unwrap().to_string(),
        v["dst_port"].as_u64().unwrap(),
    )
}

fn read_jsonl(p: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Our QUIC `tls` records by 4-tuple.
fn quic_records(recs: &[Value]) -> HashMap<Tuple, &Value> {
    of_type(recs, "tls")
        .into_iter()
        .filter(|r| r["proto"] == "udp")
        .map(|r| (tuple(r), r))
        .collect()
}

#[test]
fn shared_quic_hellos_match_tshark_and_ja4plus() {
    shared_file!("");
    let (mut clients, mut servers) = (0, 0);
    for cap in all_captures().into_iter().filter(|p| is_shared(p)) {
        let name = cap.file_name().unwrap().to_string_lossy().to_string();
        let exp = read_jsonl(&cap.with_file_name(format!("expected/{name}.jsonl")));
        if !exp.iter().any(|e| e["transport"] == "quic") {
            continue;
        }
        let recs = replay(&[&cap], 2);
        let ours = quic_records(&recs);
        let n_quic = exp
            .iter()
            .filter(|e| e["kind"] == "client_hello" && e["transport"] == "quic")
            .count();
        assert_eq!(ours.len(), n_quic, "{name}: one tls record per QUIC hello");
        for e in exp.iter().filter(|e| e["transport"] == "quic") {
            if e["kind"] == "client_hello" {
                let t = tuple(e);
                let r = ours
                    .get(&t)
                    .unwrap_or_else(|| panic!("{name}: no QUIC tls record for {t:?}"));
                for (o, x) in [
                    ("sni", "sni"),
                    ("alpn", "alpn"),
                    ("ja3", "ja3"),
                    ("ja3_string", "ja3_string"),
                    ("ja4", "ja4"),
                    ("ja4_r", "ja4_r"),
                    ("client_max_version", "tls_version"),
                ] {
                    assert_eq!(r[o], e[x], "{name} {t:?}: {o}");
                }
                assert_eq!(r["quic"]["not_parsed"], Value::Null);
                assert!(r["ja4"].as_str().unwrap().starts_with('q'));
                clients += 1;
            } else if e["kind"] == "server_hello" {
                let (s, sp, d, dp) = tuple(e);
                let r = ours[&(d, dp, s, sp)];
                assert_eq!(r["version"], e["tls_version"], "{name}: version");
                assert_eq!(r["cipher"], e["cipher"], "{name}: cipher");
                assert_eq!(r["ja3s"], e["ja3s"], "{name}: ja3s");
                assert_eq!(r["alpn_selected"], e["alpn"], "{name}: alpn");
                servers += 1;
            }
        }
        // The flow record still names the protocol QUIC.
        for f in of_type(&recs, "flow") {
            if ours.contains_key(&tuple(f)) {
                assert_eq!(f["service"], "quic", "{name}");
            }
        }
    }
    // ../shared/pcaps/README.md: 21 QUIC ClientHellos, one answered.
    assert_eq!((clients, servers), (21, 1));
}
