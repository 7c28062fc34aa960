//! The output forms (issue 21): `--format ocsf|ecs|eve` against other
//! projects' schemas, the readable values and the observer in JSON Lines,
//! gzip output.

mod common;

use common::*;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

fn replay_form(files: &[&Path], form: &str, extra: &[String]) -> Vec<Value> {
    let mut args: Vec<&str> = vec!["--format", form];
    args.extend(extra.iter().map(String::as_str));
    replay_args(files, 2, &args)
}

/// Dotted names of every leaf (arrays of scalars are one leaf).
fn leaves(v: &Value, prefix: &str, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                let name = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                leaves(x, &name, out);
            }
        }
        Value::Array(a) if a.iter().any(Value::is_object) => {
            for x in a {
                leaves(x, prefix, out);
            }
        }
        _ => {
            out.insert(prefix.to_string());
        }
    }
}

#[test]
fn ecs_field_names_are_ecs_or_documented_custom() {
    let list = std::fs::read_to_string(root().join("tests/schemas/ecs-fields.txt")).unwrap();
    let ecs: BTreeSet<&str> = list
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let mut seen = BTreeSet::new();
    let mut kinds = BTreeSet::new();
    let scenario = fixture("detect/scenario.pcap");
    let mut runs: Vec<(Vec<PathBuf>, Vec<String>)> = vec![(vec![scenario], scenario_inputs())];
    for c in all_captures() {
        runs.push((vec![c], vec![]));
    }
    for (files, extra) in &runs {
        let refs: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
        for doc in replay_form(&refs, "ecs", extra) {
            kinds.insert(doc["event"]["dataset"].as_str().unwrap().to_string());
            assert_eq!(doc["ecs"]["version"], "8.17.0");
            assert_eq!(doc["observer"]["product"], "blindspot");
            leaves(&doc, "", &mut seen);
        }
    }
    let bad: Vec<&String> = seen
        .iter()
        .filter(|f| {
            !ecs.contains(f.as_str())
                && f.as_str() != "tls.client.ja4"
                && !f.starts_with("blindspot.")
        })
        .collect();
    assert!(
        bad.is_empty(),
        "not ECS 8.17 and not documented custom: {bad:?}"
    );
    for k in [
        "flow",
        "tls",
        "dhcp",
        "dns",
        "device",
        "detection",
        "coverage",
        "stats",
    ] {
        assert!(
            kinds.contains(&format!("blindspot.{k}")),
            "no {k} document: {kinds:?}"
        );
    }
    // Every kept ECS name is used (a stale list would hide a rename). Some
    // names only the third-party captures make (802.1Q tags), so the check
    // needs them.
    if shared_dir().is_some() {
        let unused: Vec<&&str> = ecs.iter().filter(|f| !seen.contains(**f)).collect();
        assert!(unused.is_empty(), "listed but never written: {unused:?}");
    } else {
        eprintln!(
            "SKIPPED the check that every listed ECS name is written: ../shared/pcaps is absent (network.vlan.id comes from a tagged third-party capture)"
        );
    }
}

/// OCSF and EVE against their schemas (tests/schemas/check-forms.py: the
/// OCSF class schemas of the PyPI package ocsf-json-schema, Suricata
/// 8.0.6's EVE schema from ../shared/schemas). Needs a Python with
/// ocsf-json-schema and jsonschema: $BLINDSPOT_PYTHON, else python3;
/// without them the test says SKIPPED (`.ci/run` installs them).
#[test]
fn ocsf_and_eve_validate_against_their_schemas() {
    let python = std::env::var("BLINDSPOT_PYTHON").unwrap_or_else(|_| "python3".into());
    let has = Command::new(&python)
        .args(["-c", "import ocsf_json_schema, jsonschema"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has {
        eprintln!(
            "SKIPPED OCSF/EVE schema validation: {python} lacks ocsf-json-schema and jsonschema (pip install them, or set BLINDSPOT_PYTHON)"
        );
        return;
    }
    if shared_dir().is_none() {
        eprintln!(
            "SKIPPED EVE/OCSF schema validation: ../shared (Suricata's EVE schema) is absent"
        );
        return;
    }
    let out = Command::new(&python)
        .arg(root().join("tests/schemas/check-forms.py"))
        .arg(env!("CARGO_BIN_EXE_blindspot"))
        .output()
        .expect("run check-forms.py");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{text}");
    for class in [
        "network_activity",
        "dhcp_activity",
        "detection_finding",
        "inventory_info",
        "base_event",
    ] {
        assert!(text.contains(class), "no {class} event checked: {text}");
    }
    for t in ["flow ", "tls ", "dhcp ", "alert ", "stats "] {
        assert!(text.contains(t), "no EVE {t}event checked: {text}");
    }
}

/// Each form says the same about the same connection: the EVE flow and
/// tls events and the OCSF events of one fixture against the JSON Lines
/// records (the tuple, counts, JA4, SNI, cipher).
#[test]
fn forms_agree_with_json_lines() {
    let pcap = fixture("local/tls12-curl-nginx.pcap");
    let jl = replay(&[&pcap], 1);
    let eve = replay_form(&[&pcap], "eve", &[]);
    let ocsf = replay_form(&[&pcap], "ocsf", &[]);
    let tls = of_type(&jl, "tls")[0];
    let flow = of_type(&jl, "flow")[0];
    let etls = eve.iter().find(|e| e["event_type"] == "tls").unwrap();
    let eflow = eve.iter().find(|e| e["event_type"] == "flow").unwrap();
    assert_eq!(etls["tls"]["ja4"], tls["ja4"]);
    assert_eq!(etls["tls"]["sni"], tls["sni"]);
    assert_eq!(etls["src_ip"], tls["src_ip"]);
    assert_eq!(etls["dest_port"], tls["dst_port"]);
    assert_eq!(etls["blindspot"]["flow_id"], tls["flow_id"]);
    assert_eq!(
        eflow["flow_id"], etls["flow_id"],
        "one connection, one EVE flow_id"
    );
    assert_eq!(eflow["flow"]["pkts_toserver"], flow["orig"]["packets"]);
    assert_eq!(eflow["flow"]["bytes_toclient"], flow["resp"]["bytes"]);
    let code =
        u64::from_str_radix(tls["cipher"].as_str().unwrap().trim_start_matches("0x"), 16).unwrap();
    assert_eq!(etls["tls"]["server_handshake"]["cipher"], code);
    let otls = ocsf.iter().find(|e| e["tls"].is_object()).unwrap();
    assert_eq!(otls["class_uid"], 4001);
    assert_eq!(otls["tls"]["sni"], tls["sni"]);
    assert_eq!(otls["tls"]["cipher"], tls["cipher_name"]);
    assert_eq!(otls["ja4_fingerprint_list"][0]["value"], tls["ja4"]);
    assert_eq!(otls["connection_info"]["uid"], tls["flow_id"]);
    assert_eq!(otls["metadata"]["version"], "1.8.0");
}

/// Readable values in JSON Lines: the cipher's IANA name, the alert's, the
/// certificate validity in RFC 3339, and the observer on every record.
#[test]
fn json_lines_carry_readable_values_and_the_observer() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, "[sensor]\nname = \"edge-7\"\n").unwrap();
    let recs = replay_with_config(
        &[
            &fixture("local/tls12-curl-nginx.pcap"),
            &fixture("local/tls12-client-rejects-unknown-ca.pcap"),
        ],
        1,
        &cfg,
    );
    for r in &recs {
        let o = &r["observer"];
        assert_eq!(o["name"], "edge-7", "{r}");
        assert_eq!(o["product"], "blindspot");
        assert_eq!(o["version"], env!("CARGO_PKG_VERSION"));
        assert!(o["hostname"].as_str().is_some_and(|h| !h.is_empty()));
        assert_eq!(o["interfaces"], serde_json::json!([]));
    }
    let tls = of_type(&recs, "tls");
    // The fixtures' servers (nginx, openssl s_server) chose these suites:
    // tshark names them in fixtures/local/truth.json's provenance; the
    // names are IANA's for the codes.
    for t in &tls {
        let (code, name) = (
            t["cipher"].as_str().unwrap(),
            t["cipher_name"].as_str().unwrap(),
        );
        let want = match code {
            "0xc030" => "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
            "0xc02f" => "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
            "0xc02c" => "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
            "0xc02b" => "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
            other => panic!("unexpected suite {other}"),
        };
        assert_eq!(name, want);
        if let Some(c) = t["cert"].as_object() {
            let nb = c["not_before"].as_i64().unwrap();
            let out = Command::new("date")
                .args(["-u", "-d", &format!("@{nb}"), "+%Y-%m-%dT%H:%M:%SZ"])
                .output()
                .unwrap();
            assert_eq!(
                c["not_before_rfc3339"].as_str().unwrap(),
                String::from_utf8_lossy(&out.stdout).trim(),
                "date(1) formats the same second"
            );
            assert!(c["not_after_rfc3339"].as_str().unwrap().ends_with('Z'));
        }
    }
    // The client rejected the test CA with a fatal unknown_ca(48) alert
    // (RFC 8446 section 6.2), as the capture's name says.
    let rejected = tls
        .iter()
        .find(|t| t["outcome"] == "client_rejected")
        .expect("the rejected handshake");
    let alert = &rejected["alerts"][0];
    assert_eq!(alert["description"], 48);
    assert_eq!(alert["description_name"], "unknown_ca");
}

/// `-o x.gz` writes gzip that gzip(1) reads back to the plain output;
/// `output.format` in the config picks the form; capture refuses `.gz`.
#[test]
fn gzip_output_and_the_format_key() {
    let dir = tempfile::tempdir().unwrap();
    let pcap = fixture("local/tls12-curl-nginx.pcap");
    let gz = dir.path().join("out.jsonl.gz");
    let plain = dir.path().join("out.jsonl");
    for o in [&gz, &plain] {
        let out = blindspot(&[
            "replay",
            "-w",
            "1",
            "-o",
            o.to_str().unwrap(),
            pcap.to_str().unwrap(),
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let unzipped = Command::new("gzip").arg("-dc").arg(&gz).output().unwrap();
    assert!(unzipped.status.success());
    assert_eq!(unzipped.stdout, std::fs::read(&plain).unwrap());
    assert_ne!(std::fs::read(&gz).unwrap(), std::fs::read(&plain).unwrap());

    let cfg = dir.path().join("eve.toml");
    std::fs::write(&cfg, "[output]\nformat = \"eve\"\n").unwrap();
    let eve = replay_with_config(&[&pcap], 1, &cfg);
    assert!(
        eve.iter()
            .all(|e| e["event_type"].is_string() && e["type"].is_null())
    );
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[output]\nformat = \"cef\"\n").unwrap();
    let out = blindspot(&["config", "check", bad.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("expected one of `jsonl`, `ocsf`, `ecs`, `eve`")
    );

    let out = blindspot(&[
        "capture",
        "-i",
        "lo",
        "-o",
        gz.to_str().unwrap(),
        "--duration",
        "1",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("gzip"), "{err}");
}

/// DNS in every form says what the `dns` records say: per transaction the
/// query name, the response code and the answers' data, the same in OCSF
/// DNS Activity (4003), EVE `dns` (v3) and ECS `dns.*`.
#[test]
fn dns_transactions_agree_across_forms() {
    let cap = fixture("dns/dns-names.pcap");
    let files = [cap.as_path()];
    let key = |q: Option<&str>, rcode: Option<&str>, data: Vec<String>| {
        let mut data = data;
        data.sort();
        format!(
            "{} {} {}",
            q.unwrap_or("-"),
            rcode.unwrap_or("-"),
            data.join(",")
        )
    };
    let strs = |v: &Value, k: &str| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x[k].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut sets: Vec<(&str, Vec<String>)> = Vec::new();
    let mut jl: Vec<String> = of_type(&replay_form(&files, "jsonl", &[]), "dns")
        .iter()
        .map(|d| {
            key(
                d["query"].as_str(),
                d["rcode_name"].as_str(),
                strs(&d["answers"], "data"),
            )
        })
        .collect();
    jl.sort();
    assert!(jl.len() >= 9, "{jl:?}");
    let mut ocsf: Vec<String> = replay_form(&files, "ocsf", &[])
        .iter()
        .filter(|e| e["class_uid"] == 4003)
        .map(|e| {
            key(
                e["query"]["hostname"].as_str(),
                e["rcode"].as_str(),
                strs(&e["answers"], "rdata")
                    .into_iter()
                    .filter(|s| !s.is_empty())
                    .collect(),
            )
        })
        .collect();
    ocsf.sort();
    sets.push(("ocsf", ocsf));
    let mut eve: Vec<String> = replay_form(&files, "eve", &[])
        .iter()
        .filter(|e| e["event_type"] == "dns")
        .map(|e| {
            let q = e["dns"]["queries"][0]["rrname"].as_str();
            key(
                q,
                e["dns"]["rcode"].as_str(),
                strs(&e["dns"]["answers"], "rdata"),
            )
        })
        .collect();
    eve.sort();
    sets.push(("eve", eve));
    let mut ecs: Vec<String> = replay_form(&files, "ecs", &[])
        .iter()
        .filter(|e| e["event"]["dataset"] == "blindspot.dns")
        .map(|e| {
            key(
                e["dns"]["question"]["name"].as_str(),
                e["dns"]["response_code"].as_str(),
                strs(&e["dns"]["answers"], "data"),
            )
        })
        .collect();
    ecs.sort();
    sets.push(("ecs", ecs));
    for (form, got) in sets {
        assert_eq!(got, jl, "{form}");
    }
}
