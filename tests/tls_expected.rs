//! Every TCP ClientHello, ServerHello and alert in the third-party captures
//! against `../shared/pcaps/expected/` (tshark 4.4 and the JA4 reference
//! implementations): SNI, ALPN, versions, JA3, JA4, cipher, JA3S, alert
//! direction and description.

mod common;
use common::*;
use serde_json::Value;
use std::collections::HashMap;

fn expected(cap: &std::path::Path) -> Vec<Value> {
    let name = cap.file_name().unwrap().to_string_lossy();
    read_jsonl(&cap.with_file_name(format!("expected/{name}.jsonl")))
}

#[test]
fn hellos_and_alerts_match_tshark_and_ja4_reference() {
    shared_file!("");
    let (mut hellos, mut servers, mut alerts) = (0, 0, 0);
    for cap in all_captures().into_iter().filter(|p| is_shared(p)) {
        let exp = expected(&cap);
        let recs = replay(&[&cap], 2);
        let mut ours: HashMap<Tuple, Vec<&Value>> = HashMap::new();
        for r in of_type(&recs, "tls") {
            ours.entry(tuple(r)).or_default().push(r);
        }
        for v in ours.values_mut() {
            v.sort_by_key(|r| r["ts"].as_str().unwrap().to_string());
        }
        let mut seen: HashMap<Tuple, usize> = HashMap::new();
        let name = cap.display().to_string();
        for e in exp
            .iter()
            .filter(|e| e["kind"] == "client_hello" && e["transport"] == "tcp")
        {
            if e["hello_index_in_flow"] != 1 {
                continue; // the second hello after a HelloRetryRequest: counted below
            }
            let t = tuple(e);
            let n = seen.entry(t.clone()).or_default();
            let r = ours
                .get(&t)
                .and_then(|v| v.get(*n))
                .unwrap_or_else(|| panic!("{name}: no tls record for {t:?}"));
            *n += 1;
            for (ours_k, exp_k) in [
                ("sni", "sni"),
                ("alpn", "alpn"),
                ("ja3", "ja3"),
                ("ja3_string", "ja3_string"),
                ("ja4", "ja4"),
                ("ja4_r", "ja4_r"),
                ("client_max_version", "tls_version"),
                ("ech", "ech"),
            ] {
                assert_eq!(r[ours_k], e[exp_k], "{name} {t:?}: {ours_k}");
            }
            hellos += 1;
        }
        // The last real ServerHello of each flow.
        let mut last_sh: HashMap<Tuple, &Value> = HashMap::new();
        for e in exp
            .iter()
            .filter(|e| e["kind"] == "server_hello" && e["transport"] == "tcp")
        {
            let (s, sp, d, dp) = tuple(e);
            let t = (d, dp, s, sp);
            if e["hello_retry_request"] == true {
                let r = &ours[&t][0];
                assert_eq!(r["hrr"], true, "{name}: hrr");
                continue;
            }
            last_sh.insert(t, e);
        }
        for (t, e) in last_sh {
            let r = &ours
                .get(&t)
                .unwrap_or_else(|| panic!("{name}: no tls record for {t:?}"))[0];
            assert_eq!(r["version"], e["tls_version"], "{name} {t:?}: version");
            assert_eq!(r["cipher"], e["cipher"], "{name} {t:?}: cipher");
            assert_eq!(r["ja3s"], e["ja3s"], "{name} {t:?}: ja3s");
            assert_eq!(
                r["ja3s_string"], e["ja3s_string"],
                "{name} {t:?}: ja3s_string"
            );
            assert_eq!(r["alpn_selected"], e["alpn"], "{name} {t:?}: alpn");
            servers += 1;
        }
        // Alerts, per flow, in order.
        let mut exp_alerts: HashMap<Tuple, Vec<&Value>> = HashMap::new();
        for e in exp.iter().filter(|e| e["kind"] == "alert") {
            let t = tuple(e);
            let t = if e["alert_from"] == "client" {
                t
            } else {
                (t.2, t.3, t.0, t.1)
            };
            let t = if ours.contains_key(&t) {
                t
            } else {
                (t.2, t.3, t.0, t.1)
            };
            exp_alerts.entry(t).or_default().push(e);
        }
        for (t, es) in exp_alerts {
            let r = &ours
                .get(&t)
                .unwrap_or_else(|| panic!("{name}: no tls record for {t:?}"))[0];
            // Records tshark saw; inferred alerts (TLS 1.3 sizes) are ours alone.
            let got: Vec<&Value> = r["alerts"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|a| a["inferred"] == false)
                .collect();
            assert_eq!(got.len(), es.len(), "{name} {t:?}: alert count {got:?}");
            for (g, e) in got.iter().zip(es) {
                // tshark says "unknown" where it saw neither SYN nor ClientHello.
                if e["alert_from"] != "unknown" {
                    assert_eq!(g["from"], e["alert_from"], "{name}: alert direction");
                }
                assert_eq!(g["encrypted"], e["encrypted"], "{name}: alert encrypted");
                assert_eq!(g["level"], e["alert_level"], "{name}: alert level");
                assert_eq!(
                    g["description"], e["alert_description"],
                    "{name}: alert description"
                );
                assert_eq!(
                    g["record_length"], e["record_length"],
                    "{name}: alert record length"
                );
                alerts += 1;
            }
        }
    }
    assert!(
        hellos >= 95 && servers >= 20 && alerts >= 14,
        "compared {hellos} hellos, {servers} server hellos, {alerts} alerts"
    );
}

/// Every server certificate chain in the shared captures against
/// `fixtures/certs/expected.jsonl` (certificates cut out by tshark, read by
/// openssl; made by `fixtures/make-cert-truth.py`).
#[test]
fn certificate_chains_match_openssl() {
    let text = std::fs::read_to_string(fixture("certs/expected.jsonl")).unwrap();
    let mut by_file: HashMap<String, Vec<Value>> = HashMap::new();
    for l in text.lines() {
        let v: Value = serde_json::from_str(l).unwrap();
        by_file
            .entry(v["file"].as_str().unwrap().to_string())
            .or_default()
            .push(v);
    }
    let mut chains = 0;
    for (file, exp) in &by_file {
        let recs = replay(&[&shared_file!(format!("{file}"))], 1);
        for e in exp {
            let t = of_type(&recs, "tls")
                .into_iter()
                .find(|r| {
                    r["src_ip"] == e["client"][0]
                        && r["src_port"] == e["client"][1]
                        && r["dst_ip"] == e["server"][0]
                        && r["dst_port"] == e["server"][1]
                })
                .unwrap_or_else(|| panic!("{file}: no tls record for {}", e["client"]));
            let c = &t["cert"];
            let certs = e["certs"].as_array().unwrap();
            let leaf = &certs[0];
            let what = format!("{file} {}", e["client"]);
            assert_eq!(c["sha256"], leaf["sha256"], "{what}: sha256");
            assert_eq!(
                c["serial"]
                    .as_str()
                    .unwrap()
                    .to_lowercase()
                    .trim_start_matches('0'),
                leaf["serial"].as_str().unwrap().trim_start_matches('0'),
                "{what}: serial"
            );
            assert_eq!(c["not_before"], leaf["not_before"], "{what}: not_before");
            assert_eq!(c["not_after"], leaf["not_after"], "{what}: not_after");
            assert_eq!(c["chain_length"], certs.len(), "{what}: chain length");
            let chain: Vec<&Value> = c["chain"].as_array().unwrap().iter().collect();
            for (ours, theirs) in chain.iter().zip(&certs[1..]) {
                assert_eq!(ours["sha256"], theirs["sha256"], "{what}: chain sha256");
            }
            // openssl prints RFC 2253 (most specific first); x509-parser the
            // DER order: compare the sets of attributes.
            let attrs = |s: &str, sep: &str| {
                // Attribute names differ only for e-mail (openssl: emailAddress).
                let mut v: Vec<String> = s
                    .split(sep)
                    .map(|p| p.trim().replace("emailAddress=", "Email="))
                    .collect();
                v.sort();
                v
            };
            let (subj, exp_subj) = (
                c["subject"].as_str().unwrap(),
                leaf["subject"].as_str().unwrap(),
            );
            if !exp_subj.contains('\\') && !subj.contains('"') {
                assert_eq!(attrs(subj, ", "), attrs(exp_subj, ","), "{what}: subject");
            }
            let dns: Vec<&Value> = c["san"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|s| s.as_str().unwrap().parse::<std::net::IpAddr>().is_err())
                .collect();
            let exp_dns = leaf["san_dns"].as_array().unwrap();
            let kept = exp_dns.len().min(32);
            assert_eq!(dns.len(), kept, "{what}: SAN count");
            for (a, b) in dns.iter().zip(exp_dns) {
                assert_eq!(*a, b, "{what}: SAN");
            }
            assert_eq!(c["san_more"], exp_dns.len() - kept, "{what}: san_more");
            assert_eq!(t["inspected"], false, "{what}: no inspection CA configured");
            chains += 1;
        }
    }
    assert!(chains >= 20, "compared {chains} chains");
}

/// Outcomes of the shared captures whose endings their READMEs describe
/// (and tshark shows): rejections by either side, a cut capture, resets.
#[test]
fn outcomes_of_the_shared_captures() {
    for (file, outcome, history) in [
        (
            "local-tls12-openssl-client-unknown-ca.pcap",
            "client_rejected",
            "CsxknL",
        ),
        (
            "local-tls12-gnutls-client-bad-certificate.pcap",
            "client_rejected",
            "CsxknL",
        ),
        (
            "foxio-badcurveball-certificate-unknown.pcap",
            "client_rejected",
            "CsxknL",
        ),
        // The server's certificate_required alert is a 19-byte protected record.
        (
            "local-tls13-server-certificate-required.pcap",
            "server_rejected",
            "CsidIFd",
        ),
        (
            "zeek-tls12-server-handshake-failure.pcap",
            "server_rejected",
            "Cl",
        ),
        ("foxio-tls12-client-hello-only.pcap", "incomplete", "C"),
        // "ends in RST" from the client after the server's flight.
        (
            "ndpi-vlan-many-cipher-suites.pcap",
            "client_aborted",
            "Csxkn",
        ),
        // tshark: after its 69-byte Finished and the server's 517-byte
        // tickets the client sends one 19-byte record (close_notify) and
        // its FIN 0.77 s later, no application data.
        (
            "zeek-tls13-hello-retry-request.pcap",
            "client_closed_after_handshake",
            "CjiICsdFdD",
        ),
    ] {
        let recs = replay(&[&shared_file!(format!("{file}"))], 1);
        let t = of_type(&recs, "tls");
        assert_eq!(t.len(), 1, "{file}");
        assert_eq!(t[0]["outcome"], outcome, "{file}");
        assert_eq!(t[0]["history"], history, "{file}");
    }
}
