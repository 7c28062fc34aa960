//! The example inventory files under `fixtures/inventory/` load with the
//! values written in them, and each malformed one is reported at the line
//! of its bad entry.

use blindspot::inputs::app_events::{self, AppLifecycle};
use blindspot::inputs::catalog::{self, AppProfile, PinnedDomain};
use blindspot::inputs::mdm::{self, MdmDevice};
use blindspot::inputs::{LoadError, is_private_mac};
use blindspot::time::Timestamp;
use std::path::PathBuf;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/inventory")
        .join(name)
}

fn device<'a>(all: &'a [MdmDevice], serial: &str) -> &'a MdmDevice {
    all.iter()
        .find(|d| d.serial.as_deref() == Some(serial))
        .unwrap_or_else(|| panic!("no device {serial}"))
}

fn app<'a>(all: &'a [AppProfile], bundle_id: &str) -> &'a AppProfile {
    all.iter()
        .find(|a| a.bundle_id == bundle_id)
        .unwrap_or_else(|| panic!("no app {bundle_id}"))
}

fn bundle_ids(d: &MdmDevice) -> Vec<&str> {
    d.apps.iter().map(|a| a.bundle_id.as_str()).collect()
}

const ANA_MAC: [u8; 6] = [0x02, 0x00, 0x5e, 0x10, 0x00, 0x01];
const DESK_MAC: [u8; 6] = [0x00, 0x1c, 0xb3, 0x09, 0x85, 0x15];
const CARLA_MAC: [u8; 6] = [0xa6, 0x4c, 0x1e, 0x77, 0x20, 0x9b];

/// The errors' text, checked to be `FILE:LINE: ...` for the given lines.
fn assert_lines(errors: &[LoadError], name: &str, lines: &[usize]) -> Vec<String> {
    let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert_eq!(errors.len(), lines.len(), "{shown:#?}");
    for (s, line) in shown.iter().zip(lines) {
        let want = format!("{name}:{line}: ");
        assert!(s.contains(&want), "{s:?} does not contain {want:?}");
    }
    shown
}

#[test]
fn mdm_blindspot_shape() {
    let got = mdm::load(&fixture("mdm-blindspot.json")).unwrap();
    assert_eq!(got.errors, []);
    assert_eq!(got.items.len(), 4);
    let ana = device(&got.items, "F2LXK0AAHG7F");
    assert_eq!(ana.source, "blindspot");
    assert_eq!(ana.udid.as_deref(), Some("00008110-001A2B3C4D5E801E"));
    assert_eq!(ana.name.as_deref(), Some("Ana's iPhone"));
    assert_eq!(ana.model.as_deref(), Some("iPhone15,2"));
    assert_eq!(ana.os.as_deref(), Some("iOS 17.5.1"));
    assert_eq!(ana.supervised, Some(true));
    assert_eq!(ana.managed, Some(true));
    assert_eq!(ana.ownership.as_deref(), Some("corporate"));
    assert_eq!(ana.wifi_mac, Some(ANA_MAC));
    assert!(is_private_mac(ANA_MAC));
    assert_eq!(
        bundle_ids(ana),
        ["com.example.bank", "com.example.voip", "com.example.notes"]
    );
    assert_eq!(
        ana.apps[0].associated_domains,
        ["applinks:bank.example", "webcredentials:bank.example"]
    );
    assert_eq!(ana.apps[0].version.as_deref(), Some("5.2.0"));

    let desk = device(&got.items, "DNQXK1ZZHG7G");
    assert_eq!(desk.wifi_mac, Some(DESK_MAC));
    assert!(!is_private_mac(DESK_MAC));
    let carla = device(&got.items, "C39ZK0RWN72J");
    assert_eq!(carla.supervised, Some(false));
    assert_eq!(carla.ownership.as_deref(), Some("personal"));
    assert_eq!(carla.udid, None);
    let ipad = device(&got.items, "DMPX93LLQ1GC");
    assert_eq!(ipad.wifi_mac, None);
    assert!(ipad.apps.is_empty());
}

#[test]
fn mdm_jamf_pro_api() {
    let got = mdm::load(&fixture("mdm-jamf.json")).unwrap();
    assert_eq!(got.errors, []);
    assert_eq!(got.items.len(), 4);
    assert!(got.items.iter().all(|d| d.source == "jamf"));
    let ana = device(&got.items, "F2LXK0AAHG7F");
    assert_eq!(ana.udid.as_deref(), Some("00008110-001A2B3C4D5E801E"));
    assert_eq!(ana.name.as_deref(), Some("Ana's iPhone"));
    assert_eq!(ana.model.as_deref(), Some("iPhone15,2"));
    assert_eq!(ana.os.as_deref(), Some("iOS 17.5.1"));
    assert_eq!(ana.supervised, Some(true));
    assert_eq!(ana.ownership.as_deref(), Some("corporate"));
    assert_eq!(ana.wifi_mac, Some(ANA_MAC));
    assert_eq!(
        bundle_ids(ana),
        [
            "com.example.bank",
            "com.example.voip",
            "com.jamf.selfservice"
        ]
    );
    assert_eq!(ana.apps[0].name.as_deref(), Some("Example Bank"));
    assert_eq!(ana.apps[0].version.as_deref(), Some("5.2.0"));
    assert_eq!(device(&got.items, "DNQXK1ZZHG7G").wifi_mac, Some(DESK_MAC));
    let carla = device(&got.items, "C39ZK0RWN72J");
    assert_eq!(carla.ownership.as_deref(), Some("personal"));
    assert_eq!(carla.supervised, Some(false));
    assert_eq!(carla.wifi_mac, Some(CARLA_MAC));
    assert!(is_private_mac(CARLA_MAC));
    let ipad = device(&got.items, "DMPX93LLQ1GC");
    assert_eq!(ipad.wifi_mac, None, "an empty MAC is not known");
    assert_eq!(ipad.model.as_deref(), Some("iPad13,18"));
}

#[test]
fn mdm_jamf_classic_api() {
    let got = mdm::load(&fixture("mdm-jamf-classic.json")).unwrap();
    assert_eq!(got.errors, []);
    assert_eq!(got.items.len(), 1);
    let d = &got.items[0];
    assert_eq!(d.source, "jamf");
    assert_eq!(d.serial.as_deref(), Some("DNQXK1ZZHG7G"));
    assert_eq!(d.udid.as_deref(), Some("00008101-000A1B2C3D4E001E"));
    assert_eq!(d.name.as_deref(), Some("Front Desk iPhone"));
    assert_eq!(d.model.as_deref(), Some("iPhone14,5"));
    assert_eq!(d.os.as_deref(), Some("iOS 17.4.1"));
    assert_eq!(d.supervised, Some(true));
    assert_eq!(d.managed, Some(true));
    assert_eq!(d.ownership.as_deref(), Some("corporate"));
    assert_eq!(d.wifi_mac, Some(DESK_MAC));
    assert_eq!(bundle_ids(d), ["com.example.voip", "com.jamf.selfservice"]);
    assert_eq!(d.apps[0].version.as_deref(), Some("3.1.4"));
}

#[test]
fn mdm_intune_graph() {
    let got = mdm::load(&fixture("mdm-intune.json")).unwrap();
    assert_eq!(got.errors, []);
    assert_eq!(got.items.len(), 4);
    assert!(
        got.items
            .iter()
            .all(|d| d.source == "intune" && d.apps.is_empty())
    );
    let ana = device(&got.items, "F2LXK0AAHG7F");
    assert_eq!(ana.udid.as_deref(), Some("00008110-001A2B3C4D5E801E"));
    assert_eq!(ana.name.as_deref(), Some("Ana's iPhone"));
    assert_eq!(ana.model.as_deref(), Some("iPhone 14 Pro"));
    assert_eq!(ana.os.as_deref(), Some("iOS 17.5.1"));
    assert_eq!(ana.supervised, Some(true));
    assert_eq!(ana.managed, Some(true));
    assert_eq!(ana.ownership.as_deref(), Some("corporate"));
    assert_eq!(ana.wifi_mac, Some(ANA_MAC));
    assert_eq!(device(&got.items, "DNQXK1ZZHG7G").wifi_mac, Some(DESK_MAC));
    let carla = device(&got.items, "C39ZK0RWN72J");
    assert_eq!(carla.ownership.as_deref(), Some("personal"));
    assert_eq!(carla.udid, None, "an empty UDID is not known");
    assert_eq!(carla.wifi_mac, Some(CARLA_MAC));
    let ipad = device(&got.items, "DMPX93LLQ1GC");
    assert_eq!(ipad.os.as_deref(), Some("iPadOS 17.5.1"));
    assert_eq!(ipad.wifi_mac, None);
}

#[test]
fn mdm_malformed_files_name_the_entry_line() {
    let got = mdm::load(&fixture("mdm-blindspot-bad.json")).unwrap();
    // An unknown key is a warning: the device still loads (without it).
    let serials: Vec<_> = got.items.iter().map(|d| d.serial.as_deref()).collect();
    assert_eq!(serials, [Some("F2LXK0AAHG7F"), Some("C39ZK0RWN72J")]);
    assert_eq!(got.items[1].wifi_mac, None);
    let shown = assert_lines(&got.errors, "mdm-blindspot-bad.json", &[7]);
    assert!(
        shown[0].contains("wifi_mac \"00:1c:b3:09:85\" is not a MAC address"),
        "{}",
        shown[0]
    );
    let warned = assert_lines(&got.warnings, "mdm-blindspot-bad.json", &[11]);
    assert!(
        warned[0].contains("unknown key \"wifi_addr\" in a device ignored"),
        "{}",
        warned[0]
    );

    let got = mdm::load(&fixture("mdm-jamf-bad.json")).unwrap();
    assert_eq!(got.items.len(), 1);
    let shown = assert_lines(&got.errors, "mdm-jamf-bad.json", &[19]);
    assert!(
        shown[0].contains("hardware.wifiMacAddress \"00:1C:B3:09:85:GG\""),
        "{}",
        shown[0]
    );

    let got = mdm::load(&fixture("mdm-intune-bad.json")).unwrap();
    assert_eq!(got.items.len(), 1);
    let shown = assert_lines(&got.errors, "mdm-intune-bad.json", &[15]);
    assert!(
        shown[0].contains("no serial number, UDID or Wi-Fi MAC"),
        "{}",
        shown[0]
    );
}

#[test]
fn catalog_blindspot_shape() {
    let got = catalog::load(&fixture("catalog-blindspot.json")).unwrap();
    assert_eq!(got.errors, []);
    assert_eq!(got.items.len(), 4);
    let bank = app(&got.items, "com.example.bank");
    assert_eq!(bank.source, "blindspot");
    assert_eq!(bank.name.as_deref(), Some("Example Bank"));
    assert_eq!(bank.version.as_deref(), Some("5.2.0"));
    assert_eq!(bank.background_modes, ["fetch", "remote-notification"]);
    assert!(bank.entitlements.iter().any(|e| e == "aps-environment"));
    assert_eq!(
        bank.pinned_domains,
        [
            PinnedDomain {
                domain: "api.bank.example".into(),
                include_subdomains: true
            },
            PinnedDomain {
                domain: "auth.bank.example".into(),
                include_subdomains: false
            },
        ]
    );
    assert!(bank.ats_exceptions.is_empty());
    assert_eq!(
        bank.domains,
        [
            "api.bank.example",
            "auth.bank.example",
            "*.cdn.bank.example"
        ]
    );
    let voip = app(&got.items, "com.example.voip");
    assert_eq!(
        voip.background_modes,
        ["voip", "audio", "remote-notification"]
    );
    assert_eq!(voip.ats_exceptions, ["legacy-sip.call.example"]);
    assert!(voip.pinned_domains.is_empty());
    let notes = app(&got.items, "com.example.notes");
    assert!(notes.background_modes.is_empty() && notes.pinned_domains.is_empty());
    let tunnel = app(&got.items, "com.example.tunnel");
    assert_eq!(
        tunnel.entitlements[0],
        "com.apple.developer.networking.networkextension"
    );
    assert_eq!(tunnel.ats_exceptions, ["NSAllowsArbitraryLoads"]);
}

#[test]
fn catalog_mobsf_reports() {
    let got = catalog::load(&fixture("catalog-mobsf.json")).unwrap();
    assert_eq!(got.errors, []);
    assert_eq!(got.items.len(), 2);
    let bank = app(&got.items, "com.example.bank");
    assert_eq!(bank.source, "mobsf");
    assert_eq!(bank.name.as_deref(), Some("Example Bank"));
    assert_eq!(bank.version.as_deref(), Some("5.2.0"));
    assert_eq!(bank.background_modes, ["fetch", "remote-notification"]);
    assert!(
        bank.entitlements.is_empty(),
        "MobSF does not extract entitlements"
    );
    assert_eq!(
        bank.pinned_domains,
        [
            PinnedDomain {
                domain: "api.bank.example".into(),
                include_subdomains: true
            },
            PinnedDomain {
                domain: "auth.bank.example".into(),
                include_subdomains: false
            },
        ]
    );
    assert!(bank.ats_exceptions.is_empty());
    assert_eq!(
        bank.domains,
        [
            "api.bank.example",
            "auth.bank.example",
            "firebaseinstallations.googleapis.com"
        ]
    );
    let voip = app(&got.items, "com.example.voip");
    assert_eq!(voip.version.as_deref(), Some("3.1.4"));
    assert_eq!(
        voip.background_modes,
        ["voip", "audio", "remote-notification"]
    );
    assert_eq!(voip.ats_exceptions, ["legacy-sip.call.example"]);
    assert!(voip.pinned_domains.is_empty());
    assert_eq!(
        voip.domains,
        ["api.call.example", "sip.call.example", "turn.call.example"]
    );
}

#[test]
fn catalog_malformed_files_name_the_entry_line() {
    let got = catalog::load(&fixture("catalog-blindspot-bad.json")).unwrap();
    assert_eq!(got.items.len(), 2);
    assert_eq!(got.errors, []);
    let shown = assert_lines(&got.warnings, "catalog-blindspot-bad.json", &[7]);
    assert!(
        shown[0].contains("unknown key \"backgroundModes\" in an app ignored"),
        "{}",
        shown[0]
    );

    let got = catalog::load(&fixture("catalog-mobsf-bad.json")).unwrap();
    assert_eq!(got.items.len(), 1);
    assert_eq!(got.items[0].bundle_id, "com.example.voip");
    let shown = assert_lines(&got.errors, "catalog-mobsf-bad.json", &[37]);
    assert!(shown[0].contains("no bundle_id"), "{}", shown[0]);
}

#[test]
fn app_events_sorted_by_time() {
    let got = app_events::load(&fixture("app-events.jsonl")).unwrap();
    assert_eq!(got.errors, []);
    let seen: Vec<(String, &str, &str, AppLifecycle)> = got
        .items
        .iter()
        .map(|e| {
            (
                e.ts.to_string(),
                e.device.as_str(),
                e.bundle_id.as_str(),
                e.state,
            )
        })
        .collect();
    use AppLifecycle::*;
    let want = [
        (
            "2026-11-21T09:57:00.000000Z",
            "00008101-000A1B2C3D4E001E",
            "com.example.voip",
            Background,
        ),
        (
            "2026-11-21T10:00:00.000000Z",
            "F2LXK0AAHG7F",
            "com.example.bank",
            Foreground,
        ),
        (
            "2026-11-21T10:02:30.000000Z",
            "F2LXK0AAHG7F",
            "com.example.bank",
            Background,
        ),
        (
            "2026-11-21T10:02:30.000000Z",
            "F2LXK0AAHG7F",
            "com.example.voip",
            Foreground,
        ),
        (
            "2026-11-21T10:02:30.500000Z",
            "F2LXK0AAHG7F",
            "com.example.bank",
            Suspended,
        ),
        (
            "2026-11-21T10:15:00.000000Z",
            "a6:4c:1e:77:20:9b",
            "com.example.bank",
            Foreground,
        ),
        (
            "2026-11-21T10:20:00.000000Z",
            "a6:4c:1e:77:20:9b",
            "com.example.bank",
            Background,
        ),
    ];
    let want: Vec<(String, &str, &str, AppLifecycle)> = want
        .iter()
        .map(|&(t, d, b, s)| (t.to_string(), d, b, s))
        .collect();
    assert_eq!(seen, want);
    assert_eq!(got.items[1].ts, Timestamp::from_secs(1_795_255_200));
}

#[test]
fn app_events_malformed_lines() {
    let got = app_events::load(&fixture("app-events-bad.jsonl")).unwrap();
    assert_eq!(got.items.len(), 2);
    let shown = assert_lines(&got.errors, "app-events-bad.jsonl", &[3, 4]);
    assert!(shown[0].contains("is not a time"), "{}", shown[0]);
    assert!(shown[1].contains("\"paused\""), "{}", shown[1]);
}

#[test]
fn missing_file_is_an_error_naming_it() {
    let path = fixture("no-such-file.json");
    for e in [
        mdm::load(&path).unwrap_err(),
        catalog::load(&path).unwrap_err(),
        app_events::load(&path).unwrap_err(),
    ] {
        assert!(
            e.to_string().contains("no-such-file.json: cannot read"),
            "{e}"
        );
    }
    // A file of another shape is refused, naming the shapes accepted.
    let e = mdm::load(&fixture("catalog-blindspot.json")).unwrap_err();
    assert!(e.message.contains("Intune"), "{e}");
    let e = catalog::load(&fixture("mdm-jamf.json")).unwrap_err();
    assert!(e.message.contains("MobSF"), "{e}");
    let e = app_events::load(&fixture("mdm-jamf.json")).unwrap_err();
    assert_eq!(e.line, Some(1), "{e}");
}
