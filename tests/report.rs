//! `blindspot report`: the detection scenario (fixtures/detect) replayed to
//! records, rendered to HTML and Markdown, and checked against the records
//! and the scenario's truth (tshark's times and counts, truth.json): one
//! row per detection, one chart per beacon and rejection series with as
//! many points as the truth has connections, the coverage chart; no
//! script and no external resource. Where Debian's `chromium` is
//! installed, the page is rendered headless to a PNG and its DOM dump
//! checked for the same ids.

mod common;
use common::*;
use serde_json::Value;
use std::path::Path;
use std::process::Command;

fn blindspot(args: &[&str]) -> std::process::Output {
    let out = Command::new(env!("CARGO_BIN_EXE_blindspot"))
        .args(args)
        .output()
        .expect("run blindspot");
    assert!(
        out.status.success(),
        "blindspot {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The scenario's records, written by `replay` to `dir/records.jsonl.zst`.
fn records(dir: &Path) -> (std::path::PathBuf, Vec<Value>) {
    let f = |n: &str| fixture(&format!("detect/{n}")).display().to_string();
    let path = dir.join("records.jsonl.zst");
    let (cfg, mdm, apps, ev) = (
        f("config.toml"),
        f("mdm.json"),
        f("catalog.json"),
        f("app-events.jsonl"),
    );
    let pcap = f("scenario.pcap");
    blindspot(&[
        "replay",
        "--config",
        &cfg,
        "--mdm",
        &mdm,
        "--apps",
        &apps,
        "--app-events",
        &ev,
        "-o",
        path.to_str().unwrap(),
        &pcap,
    ]);
    let text = zstd::decode_all(std::fs::File::open(&path).unwrap()).unwrap();
    (path, parse_lines(&text))
}

fn truth_action(group: &str) -> Value {
    let t: Value =
        serde_json::from_slice(&std::fs::read(fixture("detect/truth.json")).unwrap()).unwrap();
    t["actions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["group"] == group)
        .unwrap()
        .clone()
}

/// The `<svg id="ID" ...>...</svg>` element of the page.
fn svg<'a>(html: &'a str, id: &str) -> &'a str {
    let start = html
        .find(&format!(r#"<svg id="{id}""#))
        .unwrap_or_else(|| panic!("no svg {id}"));
    let end = start + html[start..].find("</svg>").unwrap();
    &html[start..end]
}

#[test]
fn html_report_of_the_scenario() {
    let dir = tempfile::tempdir().unwrap();
    let (recs_path, recs) = records(dir.path());
    let page = dir.path().join("report.html");
    blindspot(&[
        "report",
        recs_path.to_str().unwrap(),
        "-o",
        page.to_str().unwrap(),
    ]);
    let html = std::fs::read_to_string(&page).unwrap();

    let dets = of_type(&recs, "detection");
    assert_eq!(dets.len(), 7);
    // One row per detection, high severity first.
    assert_eq!(html.matches(r#"<tr id="det-"#).count(), dets.len());
    for d in &dets {
        let id = d["detection_id"].as_str().unwrap();
        assert!(html.contains(&format!(
            r#"<tr id="det-{id}" class="{}">"#,
            d["severity"].as_str().unwrap()
        )));
    }
    let pos = |sev: &str| html.find(&format!(r#"class="{sev}">"#));
    if let (Some(h), Some(l)) = (pos("high"), pos("low")) {
        assert!(h < l, "high before low");
    }

    // The beacon: one point per background connection tshark saw, over
    // the span of their start times.
    let beacon = dets
        .iter()
        .find(|d| d["pattern"] == "background_transmission")
        .unwrap();
    let b = svg(
        &html,
        &format!("beacon-{}", beacon["detection_id"].as_str().unwrap()),
    );
    let truth = truth_action("beacon-background");
    let starts: Vec<f64> = truth["start_times"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_f64().unwrap())
        .collect();
    assert_eq!(b.matches("<circle").count(), starts.len(), "{b}");
    let span = starts.last().unwrap() - starts[0];
    let drawn: f64 = b
        .split("<text")
        .find_map(|t| {
            let v = t.split('>').nth(1)?.strip_suffix(" s</text")?;
            (v != "0").then(|| v.parse().ok())?
        })
        .expect("span label");
    assert!((drawn - span).abs() < 0.5, "span {drawn} vs tshark {span}");

    // Each rejection series: as many points as handshakes the truth has
    // (5 TLS 1.3 encrypted alerts, 4 TLS 1.2 unknown_ca).
    let mut counts: Vec<usize> = dets
        .iter()
        .filter(|d| d["pattern"] == "repeated_handshake_rejection")
        .map(|d| {
            svg(
                &html,
                &format!("rejections-{}", d["detection_id"].as_str().unwrap()),
            )
            .matches("<circle")
            .count()
        })
        .collect();
    counts.sort();
    let want = |g: &str| truth_action(g)["count"].as_u64().unwrap() as usize;
    assert_eq!(counts, vec![want("pinned-tls12"), want("pinned-tls13")]);

    // The coverage chart: one bar per share, with the record's numbers.
    let cov = of_type(&recs, "coverage")[0];
    let c = svg(&html, "coverage-chart");
    let hidden = &cov["tls_certificate_hidden"];
    assert!(c.contains(&format!("{} of {} (", hidden["count"], hidden["of"])));
    // Destinations' inspection state, devices, apps.
    for id in ["destinations", "devices", "apps"] {
        assert!(html.contains(&format!(r#"<table id="{id}">"#)), "{id}");
    }
    assert!(html.contains("<td>api.pinned.example</td>"));
    assert!(html.contains("<td>com.example.pinned</td>"));

    // Self-contained: no script, no resource fetched.
    let lower = html.to_lowercase();
    for bad in [
        "<script", " src=", " href=", "url(", "://", "@import", "<link", "<iframe",
    ] {
        assert!(!lower.contains(bad), "{bad} in the page");
    }

    chromium(&page, &dets);

    // Markdown on stdout: the same rows.
    let md = String::from_utf8(blindspot(&["report", recs_path.to_str().unwrap()]).stdout).unwrap();
    let rows = md
        .lines()
        .skip_while(|l| !l.starts_with("## Detections"))
        .skip(4)
        .take_while(|l| l.starts_with('|'))
        .count();
    assert_eq!(rows, dets.len(), "{md}");
    assert!(md.contains("| tls_certificate_hidden |"));
}

/// Headless Chromium: the DOM dump holds every id, and a PNG is drawn
/// (kept as target/report-scenario.png to look at).
fn chromium(page: &Path, dets: &[&Value]) {
    let Ok(v) = Command::new("chromium").arg("--version").output() else {
        eprintln!(
            "SKIPPED the Chromium rendering: `chromium` is not installed (apt-get install chromium)"
        );
        return;
    };
    eprintln!("{}", String::from_utf8_lossy(&v.stdout).trim());
    let url = format!("file://{}", page.display());
    let common = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
    ];
    let dom = Command::new("chromium")
        .args(common)
        .arg("--dump-dom")
        .arg(&url)
        .output()
        .unwrap();
    let dom = String::from_utf8_lossy(&dom.stdout);
    for d in dets {
        let id = d["detection_id"].as_str().unwrap();
        assert!(
            dom.contains(&format!("id=\"det-{id}\"")),
            "det-{id} not in the DOM"
        );
    }
    assert!(dom.contains("id=\"coverage-chart\""));
    assert_eq!(
        dom.matches("<svg").count(),
        4,
        "beacon, 2 rejection series, coverage"
    );
    let png = common::root().join("target").join("report-scenario.png");
    let _ = std::fs::remove_file(&png);
    let out = Command::new("chromium")
        .args(common)
        .arg(format!("--screenshot={}", png.display()))
        .arg("--window-size=1400,2600")
        .arg(&url)
        .output()
        .unwrap();
    let bytes = std::fs::read(&png).unwrap_or_else(|e| {
        panic!(
            "no screenshot ({e}): {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert!(bytes.starts_with(b"\x89PNG") && bytes.len() > 10_000);
    eprintln!("the page as Chromium draws it: {}", png.display());
}
