//! The lease files and the RADIUS detail file in `fixtures/leases/`, written
//! by real servers (`fixtures/make-leases.sh`), parse to exactly what
//! `fixtures/leases/truth.json` says (taken from each server's own view).

use blindspot::inputs::leases::{self, Lease};
use blindspot::inputs::radius::{self, RadiusSession};
use blindspot::time::Timestamp;
use serde_json::Value;
use std::net::IpAddr;
use std::path::PathBuf;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/leases")
}

fn truth() -> serde_json::Map<String, Value> {
    let p = dir().join("truth.json");
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    match serde_json::from_str(&text).expect("truth.json is JSON") {
        Value::Object(m) => m,
        other => panic!("truth.json is not an object: {other}"),
    }
}

fn opt_str(v: &Value, k: &str) -> Option<String> {
    match &v[k] {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => panic!("{k}: expected a string or null, got {other}"),
    }
}

fn opt_time(v: &Value, k: &str) -> Option<Timestamp> {
    opt_str(v, k).map(|s| Timestamp::parse_rfc3339(&s).unwrap_or_else(|| panic!("{k}: {s}")))
}

fn mac(s: &str) -> [u8; 6] {
    blindspot::inputs::parse_mac(s).unwrap_or_else(|| panic!("truth MAC {s}"))
}

fn want_lease(v: &Value) -> Lease {
    let source = match v["source"].as_str() {
        Some("isc_dhcpd") => "isc_dhcpd",
        Some("kea") => "kea",
        Some("dnsmasq") => "dnsmasq",
        other => panic!("source {other:?}"),
    };
    Lease {
        ip: v["ip"].as_str().unwrap().parse::<IpAddr>().unwrap(),
        mac: opt_str(v, "mac").map(|m| mac(&m)),
        start: opt_time(v, "start"),
        end: opt_time(v, "end"),
        hostname: opt_str(v, "hostname"),
        client_id: opt_str(v, "client_id"),
        source,
    }
}

fn want_session(v: &Value) -> RadiusSession {
    RadiusSession {
        mac: mac(v["mac"].as_str().unwrap()),
        identity: v["identity"].as_str().unwrap().to_string(),
        start: opt_time(v, "start"),
        stop: opt_time(v, "stop"),
        framed_ip: opt_str(v, "framed_ip").map(|s| s.parse().unwrap()),
        session_id: opt_str(v, "session_id"),
    }
}

fn sort_key(
    l: &Lease,
) -> (
    IpAddr,
    Option<Timestamp>,
    Option<Timestamp>,
    Option<[u8; 6]>,
) {
    (l.ip, l.start, l.end, l.mac)
}

/// Every file in the folder is covered by truth.json, and truth.json names
/// no file that is missing.
#[test]
fn every_fixture_has_a_truth() {
    let t = truth();
    let mut files: Vec<String> = std::fs::read_dir(dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !matches!(n.as_str(), "truth.json" | "README.md" | "VERSIONS.txt"))
        .collect();
    files.sort();
    let mut named: Vec<String> = t.keys().filter(|k| *k != "comment").cloned().collect();
    named.sort();
    assert_eq!(files, named);
    assert!(files.len() >= 6, "{files:?}");
}

#[test]
fn lease_files_parse_to_the_truth() {
    let t = truth();
    let mut checked = 0;
    for (name, want) in &t {
        if name == "comment" || name == "radius.detail" {
            continue;
        }
        let path = dir().join(name);
        let got = leases::load(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(got.errors, vec![], "{name}");
        let mut want: Vec<Lease> = want
            .as_array()
            .unwrap_or_else(|| panic!("{name}: truth is not a list"))
            .iter()
            .map(want_lease)
            .collect();
        assert!(!want.is_empty(), "{name}: empty truth");
        let mut got = got.items;
        got.sort_by_key(sort_key);
        want.sort_by_key(sort_key);
        assert_eq!(got, want, "{name}");
        checked += 1;
    }
    assert_eq!(checked, 5);
}

/// What the scenario in make-leases.sh must have left in the files, beyond
/// matching truth.json: a released lease that ends early, an address reused
/// by a second client, a private and a global MAC, DHCPv6 leases whose MAC
/// comes from the DUID (or is absent for a DUID-EN).
#[test]
fn the_scenarios_are_in_the_files() {
    let private = mac("02:00:5e:10:0a:0a");
    let global = mac("00:00:5e:00:53:0b");
    for name in ["dhcpd.leases", "dhcpd-epoch.leases"] {
        let l = leases::load(&dir().join(name)).unwrap().items;
        let a = l.iter().find(|x| x.mac == Some(private)).unwrap();
        let b = l.iter().find(|x| x.mac == Some(global)).unwrap();
        assert_eq!(a.ip, b.ip, "{name}: B reuses A's address");
        let (a_start, a_end) = (a.start.unwrap(), a.end.unwrap());
        assert!(
            a_end.since(a_start) < Timestamp::from_secs(60).as_nanos(),
            "{name}: A released early"
        );
        assert!(b.start.unwrap() >= a_end, "{name}: B after A's release");
        assert_eq!(b.end.unwrap().since(b.start.unwrap()), 3600 * 1_000_000_000);
        assert!(blindspot::inputs::is_private_mac(private));
        assert!(!blindspot::inputs::is_private_mac(global));
        assert_eq!(a.client_id.as_deref(), Some("0102005e100a0a"));
    }
    let k = leases::load(&dir().join("kea-leases4.csv")).unwrap().items;
    assert_eq!(k.len(), 3);
    assert!(
        k.iter()
            .all(|x| x.end.unwrap().since(x.start.unwrap()) == 3600 * 1_000_000_000)
    );
    let k6 = leases::load(&dir().join("kea-leases6.csv")).unwrap().items;
    assert!(k6.iter().all(|x| x.ip.is_ipv6() && x.mac.is_some()));
    let d = leases::load(&dir().join("dnsmasq.leases")).unwrap().items;
    let v6: Vec<&Lease> = d.iter().filter(|x| x.ip.is_ipv6()).collect();
    assert_eq!(v6.len(), 3);
    assert_eq!(
        v6.iter().filter(|x| x.mac.is_none()).count(),
        1,
        "the DUID-EN client"
    );
    assert!(d.iter().all(|x| x.start.is_none() && x.end.is_some()));
    assert!(
        !d.iter().any(|x| x.mac == Some(private) && x.ip.is_ipv4()),
        "A released its v4 lease"
    );
}

#[test]
fn radius_detail_parses_to_the_truth() {
    let t = truth();
    let got = radius::load(&dir().join("radius.detail")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(got.errors, vec![]);
    let want: Vec<RadiusSession> = t["radius.detail"]
        .as_array()
        .unwrap()
        .iter()
        .map(want_session)
        .collect();
    assert_eq!(want.len(), 3);
    assert_eq!(got.items, want);
    assert!(want.iter().any(|s| s.start.is_some() && s.stop.is_some()));
    assert!(want.iter().any(|s| s.start.is_some() && s.stop.is_none()));
    assert!(want.iter().any(|s| s.start.is_none() && s.stop.is_some()));
}

#[test]
fn malformed_files_name_file_and_line() {
    let tmp = tempfile::tempdir().unwrap();
    // a dhcpd file with a bad MAC in its second lease
    let good = std::fs::read_to_string(dir().join("dhcpd.leases")).unwrap();
    let bad = good.replacen(
        "hardware ethernet 02:00:5e:10:0a:0a;",
        "hardware ethernet 02:00:5e:zz:0a:0a;",
        1,
    );
    assert_ne!(good, bad);
    let p = tmp.path().join("dhcpd.leases");
    std::fs::write(&p, &bad).unwrap();
    let l = leases::load(&p).unwrap();
    let line = 1 + bad[..bad.find("02:00:5e:zz").unwrap()]
        .rfind("lease ")
        .map(|i| bad[..i].matches('\n').count())
        .unwrap();
    assert_eq!(l.errors.len(), 1, "{:?}", l.errors);
    let shown = l.errors[0].to_string();
    assert!(
        shown.starts_with(&format!(
            "{}:{line}: lease 192.0.2.51: `hardware ethernet '02:00:5e:zz:0a:0a'`",
            p.display()
        )),
        "{shown}"
    );
    assert!(shown.contains("expected a MAC address"), "{shown}");

    // a Kea row with a wrong column count
    let p = tmp.path().join("kea.csv");
    let kea = std::fs::read_to_string(dir().join("kea-leases4.csv")).unwrap();
    let mut rows: Vec<&str> = kea.lines().collect();
    let broken = format!("{},extra", rows[2]);
    rows[2] = &broken;
    std::fs::write(&p, rows.join("\n")).unwrap();
    let l = leases::load(&p).unwrap();
    assert_eq!(l.errors.len(), 1);
    assert!(
        l.errors[0]
            .to_string()
            .starts_with(&format!("{}:3: 12 columns, expected 11", p.display())),
        "{}",
        l.errors[0]
    );

    // a detail entry whose MAC is not one
    let p = tmp.path().join("radius.detail");
    let d = std::fs::read_to_string(dir().join("radius.detail")).unwrap();
    std::fs::write(&p, d.replacen("\"00-00-5E-00-53-0B\"", "\"00-00-5E\"", 1)).unwrap();
    let l = radius::load(&p).unwrap();
    assert_eq!(l.errors.len(), 1);
    assert!(
        l.errors[0]
            .to_string()
            .starts_with(&format!("{}:13: Calling-Station-Id", p.display())),
        "{}",
        l.errors[0]
    );
    assert_eq!(l.items.len(), 2);

    // not a lease file at all, and no file
    let p = tmp.path().join("notes.txt");
    std::fs::write(&p, "hello\n").unwrap();
    let e = leases::load(&p).unwrap_err();
    assert_eq!(e.to_string(), format!("{}:1: {}", p.display(), e.message));
    let e = radius::load(&tmp.path().join("missing")).unwrap_err();
    assert!(e.to_string().starts_with(&format!(
        "{}: cannot read",
        tmp.path().join("missing").display()
    )));
}
