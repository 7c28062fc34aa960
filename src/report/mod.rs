//! `blindspot report RECORDS...`: one page a person reads, from the records
//! of a case (`replay`) or a day of sensor output (`capture`): detections by
//! severity with their evidence and limits, per device and per app tables,
//! a timeline of each beacon and of each rejection series, the coverage
//! record's blind spots, and the inspection state of destinations.
//!
//! [`Summary::read`] streams the record files once (through
//! [`crate::detect::baseline::for_each_record`]) into bounded tables;
//! `html` writes one self-contained page (inline SVG from `svg`, no
//! script, no external resource), `markdown` the same tables for a
//! terminal. Every string in a record came from the wire: each writer
//! escapes it for its own output.

pub mod html;
pub mod markdown;
pub mod svg;

use hashbrown::HashMap;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Detections kept (distinct `detection_id`s; the latest record of an id
/// wins, as a SIEM keeps it); more are counted in `Summary::over_cap`.
pub const MAX_DETECTIONS: usize = 10_000;
/// Devices, apps and destinations tracked each; more are counted.
pub const MAX_KEYS: usize = 100_000;
/// Rejected handshakes remembered (flow id → time, outcome) to draw the
/// rejection series; more are counted.
pub const MAX_HANDSHAKES: usize = 1_000_000;
/// Rows shown per table (the rest is counted under the table).
pub const MAX_ROWS: usize = 500;
/// Charts drawn per kind (beacons, rejection series).
pub const MAX_CHARTS: usize = 100;
/// Points drawn per chart (the first ones in time).
pub const MAX_POINTS: usize = 1_000;

/// TLS outcomes a `repeated_handshake_rejection` counts.
const REJECTIONS: [&str; 3] = [
    "client_rejected",
    "client_encrypted_alert",
    "client_aborted",
];

#[derive(Debug, Default, Clone)]
pub struct DeviceRow {
    pub label: String,
    pub mac: String,
    pub ip: String,
    pub model: String,
    pub flows: u64,
    pub tls: u64,
    pub rejected: u64,
    pub detections: u64,
    pub high: u64,
}

#[derive(Debug, Default, Clone)]
pub struct AppRow {
    pub name: String,
    pub detections: u64,
    pub high: u64,
    pub patterns: BTreeMap<String, u64>,
}

#[derive(Debug, Default, Clone)]
pub struct DestinationRow {
    pub sessions: u64,
    pub inspected: u64,
    pub not_inspected: u64,
    pub hidden: u64,
    pub rejected: u64,
}

/// What the tables left out, by cap.
#[derive(Debug, Default, Clone)]
pub struct OverCap {
    pub detections: u64,
    pub devices: u64,
    pub apps: u64,
    pub destinations: u64,
    pub handshakes: u64,
}

/// One point of a timeline: seconds since the series' first, and a value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    pub t: f64,
    pub y: f64,
}

/// A chart's series: its points (at most [`MAX_POINTS`]) and how many
/// there were.
#[derive(Debug, Clone, Default)]
pub struct Series {
    pub start: String,
    pub points: Vec<Point>,
    pub total: usize,
}

#[derive(Debug, Default)]
pub struct Summary {
    pub files: Vec<String>,
    pub records: u64,
    pub bad_lines: u64,
    pub by_type: BTreeMap<String, u64>,
    /// By `detection_id`, in the order first seen.
    pub detections: Vec<Value>,
    detection_index: HashMap<String, usize>,
    /// The last `coverage` record.
    pub coverage: Option<Value>,
    pub devices: BTreeMap<String, DeviceRow>,
    pub apps: BTreeMap<String, AppRow>,
    pub destinations: BTreeMap<String, DestinationRow>,
    /// flow id → (time in seconds, outcome) of rejected handshakes.
    handshakes: HashMap<String, (f64, String)>,
    pub over_cap: OverCap,
}

fn s<'a>(v: &'a Value, k: &str) -> Option<&'a str> {
    v.get(k).and_then(Value::as_str)
}

/// Seconds since 1970 of an RFC 3339 time in a record.
pub fn secs(v: Option<&str>) -> Option<f64> {
    let t = crate::time::Timestamp::parse_rfc3339(v?)?;
    Some(t.as_nanos() as f64 / 1e9)
}

/// The device's key (MAC, else IP) and a row to start it with.
fn device_of(v: &Value) -> Option<(String, DeviceRow)> {
    let d = v.get("device")?;
    let mac = s(d, "mac").unwrap_or("");
    let ip = s(d, "ip").unwrap_or("");
    let key = if mac.is_empty() { ip } else { mac };
    if key.is_empty() {
        return None;
    }
    let label = s(d, "name")
        .or_else(|| s(d, "hostname"))
        .or_else(|| s(d, "serial"))
        .unwrap_or("");
    Some((
        key.to_string(),
        DeviceRow {
            label: label.to_string(),
            mac: mac.to_string(),
            ip: ip.to_string(),
            model: [s(d, "model"), s(d, "os")]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(", "),
            ..DeviceRow::default()
        },
    ))
}

/// The row of `key` in `map`, made when there is room (else `over` counts).
fn row<'a, T: Clone>(
    map: &'a mut BTreeMap<String, T>,
    key: String,
    new: T,
    over: &mut u64,
) -> Option<&'a mut T> {
    if !map.contains_key(&key) && map.len() >= MAX_KEYS {
        *over += 1;
        return None;
    }
    Some(map.entry(key).or_insert(new))
}

/// The name a TLS session went to: SNI, else the CONNECT host, else address
/// and port.
fn tls_destination(v: &Value) -> String {
    if let Some(n) = s(v, "sni").or_else(|| s(v, "proxy_connect")) {
        return n.to_string();
    }
    let port = v.get("dst_port").and_then(Value::as_u64).unwrap_or(0);
    format!("{}:{port}", s(v, "dst_ip").unwrap_or("?"))
}

/// A detection's destination: its name, else address and port.
pub fn detection_destination(d: &Value) -> String {
    let dest = d.get("destination").unwrap_or(&Value::Null);
    match s(dest, "name") {
        Some(n) => n.to_string(),
        None => format!(
            "{}:{}",
            s(dest, "ip").unwrap_or("?"),
            dest.get("port").and_then(Value::as_u64).unwrap_or(0)
        ),
    }
}

/// The order of the detections table: severity, then score, then time.
fn severity_rank(d: &Value) -> u8 {
    match s(d, "severity") {
        Some("high") => 0,
        Some("medium") => 1,
        Some("low") => 2,
        _ => 3,
    }
}

impl Summary {
    /// Reads record files (JSON Lines, plain, .zst or .gz) in order.
    pub fn read(files: &[PathBuf]) -> Result<Summary, String> {
        let mut sum = Summary {
            files: files.iter().map(|f| f.display().to_string()).collect(),
            ..Summary::default()
        };
        let counts = crate::detect::baseline::for_each_record(files, |v| sum.add(v))?;
        sum.records = counts.records;
        sum.bad_lines = counts.bad_lines;
        sum.finish();
        Ok(sum)
    }

    /// Takes one record.
    pub fn add(&mut self, v: &Value) {
        let kind = s(v, "type").unwrap_or("(none)");
        // Types are a handful; a hostile file's odd ones share one key.
        let known = [
            "flow",
            "tls",
            "dhcp",
            "dns",
            "device",
            "coverage",
            "detection",
            "stats",
        ];
        let k = if known.contains(&kind) { kind } else { "other" };
        *self.by_type.entry(k.to_string()).or_default() += 1;
        match kind {
            "flow" => {
                if let Some((key, new)) = device_of(v)
                    && let Some(r) = row(&mut self.devices, key, new, &mut self.over_cap.devices)
                {
                    r.flows += 1;
                }
            }
            "tls" => self.add_tls(v),
            "coverage" => self.coverage = Some(v.clone()),
            "detection" => self.add_detection(v),
            _ => {}
        }
    }

    fn add_tls(&mut self, v: &Value) {
        let outcome = s(v, "outcome").unwrap_or("");
        let rejected = REJECTIONS.contains(&outcome);
        if let Some((key, new)) = device_of(v)
            && let Some(r) = row(&mut self.devices, key, new, &mut self.over_cap.devices)
        {
            r.tls += 1;
            r.rejected += u64::from(rejected);
        }
        if let Some(r) = row(
            &mut self.destinations,
            tls_destination(v),
            DestinationRow::default(),
            &mut self.over_cap.destinations,
        ) {
            r.sessions += 1;
            match v.get("inspected").and_then(Value::as_bool) {
                Some(true) => r.inspected += 1,
                Some(false) => r.not_inspected += 1,
                None => r.hidden += 1,
            }
            r.rejected += u64::from(rejected);
        }
        if rejected && let (Some(id), Some(t)) = (s(v, "flow_id"), secs(s(v, "ts"))) {
            if self.handshakes.len() >= MAX_HANDSHAKES {
                self.over_cap.handshakes += 1;
            } else {
                self.handshakes
                    .insert(id.to_string(), (t, outcome.to_string()));
            }
        }
    }

    fn add_detection(&mut self, v: &Value) {
        let id = s(v, "detection_id").unwrap_or("").to_string();
        if let Some(&i) = self.detection_index.get(&id) {
            // A later record of the same finding (sensor mode's updates).
            self.detections[i] = v.clone();
            return;
        }
        if self.detections.len() >= MAX_DETECTIONS {
            self.over_cap.detections += 1;
            return;
        }
        self.detection_index.insert(id, self.detections.len());
        self.detections.push(v.clone());
    }

    /// Sorts the detections and counts them per device and app.
    fn finish(&mut self) {
        self.detections.sort_by(|a, b| {
            let score = |d: &Value| d.get("score").and_then(Value::as_u64).unwrap_or(0);
            severity_rank(a)
                .cmp(&severity_rank(b))
                .then(score(b).cmp(&score(a)))
                .then(s(a, "ts").cmp(&s(b, "ts")))
                .then(s(a, "detection_id").cmp(&s(b, "detection_id")))
        });
        self.detection_index.clear();
        for d in &self.detections {
            let high = u64::from(s(d, "severity") == Some("high"));
            if let Some((key, new)) = device_of(d)
                && let Some(r) = row(&mut self.devices, key, new, &mut self.over_cap.devices)
            {
                r.detections += 1;
                r.high += high;
            }
            let app = d.get("app").unwrap_or(&Value::Null);
            if let Some(bundle) = s(app, "bundle_id") {
                let new = AppRow {
                    name: s(app, "name").unwrap_or("").to_string(),
                    ..AppRow::default()
                };
                if let Some(r) = row(
                    &mut self.apps,
                    bundle.to_string(),
                    new,
                    &mut self.over_cap.apps,
                ) {
                    r.detections += 1;
                    r.high += high;
                    *r.patterns
                        .entry(s(d, "pattern").unwrap_or("").to_string())
                        .or_default() += 1;
                }
            }
        }
    }

    /// A `background_transmission`'s connections: their times (from the
    /// evidence's `first` and `intervals_s`) and the bytes the client sent
    /// (`sizes`).
    pub fn beacon(d: &Value) -> Series {
        let ev = d.get("evidence").unwrap_or(&Value::Null);
        let nums = |k: &str| -> Vec<f64> {
            ev.get(k)
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_f64).collect())
                .unwrap_or_default()
        };
        let (intervals, sizes) = (nums("intervals_s"), nums("sizes"));
        let mut t = 0.0;
        let mut points = Vec::new();
        for (i, y) in sizes.iter().enumerate() {
            if i > 0 {
                t += intervals.get(i - 1).copied().unwrap_or(0.0).max(0.0);
            }
            if points.len() < MAX_POINTS && t.is_finite() && y.is_finite() {
                points.push(Point { t, y: *y });
            }
        }
        Series {
            start: s(ev, "first").unwrap_or("").to_string(),
            points,
            total: sizes.len(),
        }
    }

    /// A `repeated_handshake_rejection`'s handshakes: the `tls` records of
    /// its flow ids (y: 1 for an alert or reject, 0.5 for an abort).
    pub fn rejections(&self, d: &Value) -> Series {
        let mut hs: Vec<(f64, &str)> = d
            .get("flow_ids")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|id| self.handshakes.get(id.as_str()?))
            .map(|(t, o)| (*t, o.as_str()))
            .collect();
        hs.sort_by(|a, b| a.0.total_cmp(&b.0));
        let t0 = hs.first().map(|h| h.0).unwrap_or(0.0);
        let total = d
            .get("evidence")
            .and_then(|e| e.get("handshakes"))
            .and_then(Value::as_u64)
            .unwrap_or(hs.len() as u64) as usize;
        Series {
            start: d
                .get("evidence")
                .and_then(|e| s(e, "first"))
                .unwrap_or("")
                .to_string(),
            points: hs
                .iter()
                .take(MAX_POINTS)
                .map(|(t, o)| Point {
                    t: t - t0,
                    y: if *o == "client_aborted" { 0.5 } else { 1.0 },
                })
                .collect(),
            total: total.max(hs.len()),
        }
    }

    /// Destinations by sessions, most first, at most [`MAX_ROWS`].
    pub fn top_destinations(&self) -> Vec<(&String, &DestinationRow)> {
        let mut v: Vec<_> = self.destinations.iter().collect();
        v.sort_by(|a, b| b.1.sessions.cmp(&a.1.sessions).then(a.0.cmp(b.0)));
        v.truncate(MAX_ROWS);
        v
    }

    /// Devices by detections, then TLS sessions, at most [`MAX_ROWS`].
    pub fn top_devices(&self) -> Vec<(&String, &DeviceRow)> {
        let mut v: Vec<_> = self.devices.iter().collect();
        v.sort_by(|a, b| {
            (b.1.high, b.1.detections, b.1.tls)
                .cmp(&(a.1.high, a.1.detections, a.1.tls))
                .then(a.0.cmp(b.0))
        });
        v.truncate(MAX_ROWS);
        v
    }

    /// Apps by detections, at most [`MAX_ROWS`].
    pub fn top_apps(&self) -> Vec<(&String, &AppRow)> {
        let mut v: Vec<_> = self.apps.iter().collect();
        v.sort_by(|a, b| {
            (b.1.high, b.1.detections)
                .cmp(&(a.1.high, a.1.detections))
                .then(a.0.cmp(b.0))
        });
        v.truncate(MAX_ROWS);
        v
    }

    /// The coverage record's shares: (name, count, of).
    pub fn coverage_shares(&self) -> Vec<(String, u64, u64)> {
        let Some(c) = &self.coverage else {
            return Vec::new();
        };
        let share = |k: &str| {
            let o = c.get(k)?;
            Some((
                k.to_string(),
                o.get("count")?.as_u64()?,
                o.get("of")?.as_u64()?,
            ))
        };
        let mut v: Vec<_> = [
            "tls_certificate_hidden",
            "tls_ech",
            "quic",
            "flows_without_device",
        ]
        .iter()
        .filter_map(|k| share(k))
        .collect();
        if let Some(d) = c.get("devices") {
            let n = |k: &str| d.get(k).and_then(Value::as_u64).unwrap_or(0);
            v.push(("macs_without_mdm".into(), n("macs_without_mdm"), n("macs")));
            v.push((
                "private_macs_unmapped".into(),
                n("private_macs_unmapped"),
                n("private_macs"),
            ));
            v.push((
                "mdm_devices_not_seen".into(),
                n("mdm_devices_not_seen"),
                n("mdm_devices"),
            ));
        }
        v
    }

    /// A safe element id from a record's detection id.
    pub fn element_id(d: &Value) -> String {
        s(d, "detection_id")
            .unwrap_or("")
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .take(32)
            .collect()
    }
}

/// A table as both writers show it.
#[derive(Debug, Default)]
pub struct Table {
    pub id: &'static str,
    pub title: &'static str,
    pub head: Vec<&'static str>,
    /// Each row's element id (HTML) and cells (plain text: the writer
    /// escapes them).
    pub rows: Vec<(Option<String>, Vec<String>)>,
    /// Rows past [`MAX_ROWS`] (or past a cap while reading) not shown.
    pub left_out: u64,
}

/// A value as short text: strings bare, arrays with their first 12 items,
/// the whole cut at 400 characters.
pub fn short(v: &Value) -> String {
    fn walk(v: &Value, o: &mut String) {
        match v {
            Value::String(x) => o.push_str(x),
            Value::Array(a) => {
                o.push('[');
                for (i, x) in a.iter().take(12).enumerate() {
                    if i > 0 {
                        o.push_str(", ");
                    }
                    walk(x, o);
                }
                if a.len() > 12 {
                    o.push_str(&format!(", … {} more", a.len() - 12));
                }
                o.push(']');
            }
            Value::Object(m) => {
                o.push('{');
                for (i, (k, x)) in m.iter().enumerate() {
                    if i > 0 {
                        o.push_str(", ");
                    }
                    o.push_str(k);
                    o.push_str(": ");
                    walk(x, o);
                    if o.len() > 2000 {
                        break;
                    }
                }
                o.push('}');
            }
            other => o.push_str(&other.to_string()),
        }
    }
    let mut o = String::new();
    walk(v, &mut o);
    if o.chars().count() > 400 {
        o = o.chars().take(399).collect::<String>() + "…";
    }
    o
}

impl Summary {
    /// The detections, devices, apps and destinations tables.
    pub fn tables(&self) -> Vec<Table> {
        let g = |d: &Value, k: &str| d.get(k).map(short).unwrap_or_default();
        let detections = Table {
            id: "detections",
            title: "Detections by severity",
            head: vec![
                "severity",
                "score",
                "visibility",
                "pattern",
                "device",
                "app",
                "destination",
                "first",
                "evidence",
                "limits",
                "recommended action",
            ],
            rows: self
                .detections
                .iter()
                .take(MAX_ROWS)
                .map(|d| {
                    let dev = device_of(d)
                        .map(|(k, r)| {
                            if r.label.is_empty() {
                                k
                            } else {
                                format!("{} ({k})", r.label)
                            }
                        })
                        .unwrap_or_default();
                    let app = d.get("app").unwrap_or(&Value::Null);
                    let app = s(app, "bundle_id").unwrap_or("").to_string();
                    (
                        Some(format!("det-{}", Self::element_id(d))),
                        vec![
                            g(d, "severity"),
                            g(d, "score"),
                            g(d, "visibility"),
                            g(d, "pattern"),
                            dev,
                            app,
                            detection_destination(d),
                            g(d, "ts"),
                            g(d, "evidence"),
                            g(d, "limits"),
                            g(d, "recommended_action"),
                        ],
                    )
                })
                .collect(),
            left_out: self.detections.len().saturating_sub(MAX_ROWS) as u64
                + self.over_cap.detections,
        };
        let devices = Table {
            id: "devices",
            title: "Devices",
            head: vec![
                "device",
                "MAC",
                "IP",
                "model",
                "flows",
                "TLS sessions",
                "rejected",
                "detections",
                "high",
            ],
            rows: self
                .top_devices()
                .into_iter()
                .map(|(_, r)| {
                    (
                        None,
                        vec![
                            r.label.clone(),
                            r.mac.clone(),
                            r.ip.clone(),
                            r.model.clone(),
                            r.flows.to_string(),
                            r.tls.to_string(),
                            r.rejected.to_string(),
                            r.detections.to_string(),
                            r.high.to_string(),
                        ],
                    )
                })
                .collect(),
            left_out: self.devices.len().saturating_sub(MAX_ROWS) as u64 + self.over_cap.devices,
        };
        let apps = Table {
            id: "apps",
            title: "Apps (the detections' candidate apps)",
            head: vec!["bundle ID", "name", "detections", "high", "patterns"],
            rows: self
                .top_apps()
                .into_iter()
                .map(|(k, r)| {
                    let p: Vec<String> =
                        r.patterns.iter().map(|(p, n)| format!("{p} {n}")).collect();
                    (
                        None,
                        vec![
                            k.clone(),
                            r.name.clone(),
                            r.detections.to_string(),
                            r.high.to_string(),
                            p.join(", "),
                        ],
                    )
                })
                .collect(),
            left_out: self.apps.len().saturating_sub(MAX_ROWS) as u64 + self.over_cap.apps,
        };
        let destinations = Table {
            id: "destinations",
            title: "Inspection state of destinations (TLS sessions)",
            head: vec![
                "destination",
                "sessions",
                "inspected",
                "not inspected",
                "hidden (chain not seen)",
                "rejected by the client",
            ],
            rows: self
                .top_destinations()
                .into_iter()
                .map(|(k, r)| {
                    (
                        None,
                        vec![
                            k.clone(),
                            r.sessions.to_string(),
                            r.inspected.to_string(),
                            r.not_inspected.to_string(),
                            r.hidden.to_string(),
                            r.rejected.to_string(),
                        ],
                    )
                })
                .collect(),
            left_out: self.destinations.len().saturating_sub(MAX_ROWS) as u64
                + self.over_cap.destinations,
        };
        vec![detections, devices, apps, destinations]
    }

    /// The charts' series: (element id, title, series, value name) for
    /// each beacon, then each rejection series, at most [`MAX_CHARTS`] each.
    pub fn charts(&self) -> Vec<(String, String, Series, &'static str)> {
        let of = |p: &'static str| {
            self.detections
                .iter()
                .filter(move |d| s(d, "pattern") == Some(p))
        };
        let mut v = Vec::new();
        for d in of("background_transmission").take(MAX_CHARTS) {
            v.push((
                format!("beacon-{}", Self::element_id(d)),
                format!("Beacon to {}", detection_destination(d)),
                Self::beacon(d),
                "bytes sent",
            ));
        }
        for d in of("repeated_handshake_rejection").take(MAX_CHARTS) {
            v.push((
                format!("rejections-{}", Self::element_id(d)),
                format!("Rejected handshakes to {}", detection_destination(d)),
                self.rejections(d),
                "rejected",
            ));
        }
        v
    }
}
