//! QUIC handshakes against independent truth.
//!
//! - The third-party captures' QUIC hellos against `../shared/pcaps/expected/`
//!   (tshark 4.4 and `ja4plus`): SNI, ALPN, JA3, JA4, versions; the
//!   ServerHello's version, cipher and JA3S.
//! - The project's own aioquic and Chromium capture (`fixtures/quic/`, made
//!   by `fixtures/make-quic.sh`) against `fixtures/quic/truth.json`, which tshark
//!   wrote with the keys the stacks logged: SNI, ALPN, JA3, JA4, versions,
//!   cipher, connection IDs, transport parameters.

mod common;
use common::*;
use serde_json::Value;
use std::collections::HashMap;

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

/// aioquic's handshakes (v1, v2, a Retry with a ClientHello over three
/// Initials, a refused ALPN) and Chromium's (an ML-KEM key share over two
/// Initials, CRYPTO frames shuffled) against tshark and ja4plus.
#[test]
fn aioquic_handshakes_match_tshark() {
    let cap = fixture("quic/aioquic.pcap");
    let truth: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("quic/truth.json")).unwrap())
            .unwrap();
    let sessions = truth["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 7);
    let recs = replay(&[&cap], 2);
    let ours = quic_records(&recs);
    assert_eq!(ours.len(), sessions.len());
    let (mut ja4_checked, mut retries, mut closes, mut mlkem) = (0, 0, 0, 0);
    for s in sessions {
        let ch = &s["client_hello"];
        let t = tuple(ch);
        let r = ours
            .get(&t)
            .unwrap_or_else(|| panic!("no record for {t:?}"));
        let q = &r["quic"];
        for (o, x) in [
            ("sni", "sni"),
            ("alpn", "alpn"),
            ("ja3", "ja3"),
            ("ja3_string", "ja3_string"),
            ("client_versions", "supported_versions"),
        ] {
            assert_eq!(r[o], ch[x], "{t:?}: {o}");
        }
        if !ch["ja4"].is_null() {
            assert_eq!(r["ja4"], ch["ja4"], "{t:?}: ja4");
            assert_eq!(r["ja4_r"], ch["ja4_r"], "{t:?}: ja4_r");
            ja4_checked += 1;
        }
        assert_eq!(q["version"], ch["version"], "{t:?}");
        assert_eq!(q["original_dcid"], s["original_dcid"], "{t:?}");
        assert_eq!(q["client_cid"], ch["scid"], "{t:?}");
        assert_eq!(q["server_cid"], s["server_scid"], "{t:?}");
        assert_eq!(
            q["client_transport_parameters"], ch["transport_parameters"],
            "{t:?}"
        );
        assert_eq!(q["retry"], s["retry"], "{t:?}");
        assert_eq!(q["not_parsed"], Value::Null, "{t:?}");
        retries += usize::from(s["retry"] == true);
        // X25519MLKEM768 (0x11ec = 4588) among the groups: Chromium's
        // ClientHello, which needs more than one Initial.
        let groups = ch["ja3_string"]
            .as_str()
            .unwrap()
            .split(',')
            .nth(3)
            .unwrap();
        if groups.split('-').any(|g| g == "4588") {
            assert!(s["client_crypto_datagrams"].as_u64().unwrap() >= 2, "{t:?}");
            assert!(q["client_initials"].as_u64().unwrap() >= 2, "{t:?}");
            assert_eq!(r["ech"], true, "{t:?}: Chromium's GREASE ECH");
            mlkem += 1;
        }
        let sh = &s["server_hello"];
        if sh.is_null() {
            assert_eq!(r["version"], Value::Null);
        } else {
            assert_eq!(r["cipher"], sh["cipher"], "{t:?}");
            assert_eq!(r["version"], sh["version"], "{t:?}");
            assert_eq!(r["ja3s"], sh["ja3s"], "{t:?}");
            assert_eq!(r["ja3s_string"], sh["ja3s_string"], "{t:?}");
        }
        // A crypto error in the server's Initial: 0x100 + the TLS alert.
        if let Some(code) = s["close_error_codes"].as_array().unwrap().first() {
            let alert = code.as_u64().unwrap() - 0x100;
            assert_eq!(r["outcome"], "server_rejected", "{t:?}");
            assert_eq!(r["alerts"][0]["from"], "server");
            assert_eq!(r["alerts"][0]["description"], alert);
            closes += 1;
        } else {
            assert_eq!(r["outcome"], "established", "{t:?}");
        }
    }
    // ja4plus reads no v2 Initial; the v2 session's client has the first
    // (v1) session's configuration, so its JA4 is ja4plus's value there.
    assert_eq!((ja4_checked, retries, closes, mlkem), (6, 1, 1, 3));
    let v2 = ours
        .values()
        .find(|r| r["quic"]["version"] == "0x6b3343cf")
        .unwrap();
    assert_eq!(sessions[0]["client_hello"]["version"], "0x00000001");
    assert_eq!(v2["ja4"], sessions[0]["client_hello"]["ja4"]);
    // The coverage record: seven QUIC sessions, all read.
    let c = of_type(&recs, "coverage")[0];
    assert_eq!(c["quic_sessions"]["sessions"], 7);
    assert_eq!(c["quic_sessions"]["parsed"], 7);
    assert_eq!(c["quic"]["count"], 0);
}
