//! Every TCP ClientHello, ServerHello and alert in the third-party captures
//! against `fixtures/shared/expected/` (tshark 4.4 and the JA4 reference
//! implementations): SNI, ALPN, versions, JA3, JA4, cipher, JA3S, alert
//! direction and description.

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

fn expected(cap: &std::path::Path) -> Vec<Value> {
    let name = cap.file_name().unwrap().to_string_lossy();
    let p = fixture(&format!("shared/expected/{name}.jsonl"));
    std::fs::read_to_string(&p)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn hellos_and_alerts_match_tshark_and_ja4_reference() {
    let (mut hellos, mut servers, mut alerts) = (0, 0, 0);
    for cap in all_captures()
        .into_iter()
        .filter(|p| p.parent().unwrap().ends_with("shared"))
    {
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
            let got = r["alerts"].as_array().unwrap();
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
