//! Evaluation of a closed window: does it make a detection, with which
//! evidence, score parts, context and limits? The README's "Detections"
//! section states every rule and every score part written here.

use super::context::{Apps, Background};
use super::{Detector, Entry, Inspection, Pattern, Window, is_quic, names, rita};
use crate::app::tls::summary::Outcome;
use crate::inputs::app_events::AppLifecycle;
use crate::record::DetectionEvidence;
use crate::record::{AppRef, Destination, DetectionContext, DetectionRecord, ScorePart, add_limit};
use crate::time::{NANOS_PER_SEC, Timestamp, nanos_to_secs_f64};
use std::collections::BTreeMap;

/// TLS alert descriptions about the peer's certificate (RFC 8446 §6.2):
/// bad_certificate, unsupported_certificate, certificate_revoked,
/// certificate_expired, certificate_unknown, unknown_ca.
const CERTIFICATE_ALERTS: [u8; 6] = [42, 43, 44, 45, 46, 48];

/// Limits that are inferences or missing inputs, by the blind spot they
/// come from. Each kind that touches the pattern lowers the visibility a step.
const HANDSHAKE_HIDDEN: [&str; 5] = [
    "tls13_certificate_hidden",
    "inspection_inferred",
    "inspection_not_confirmed",
    "alert_description_hidden",
    "sni_hidden_by_ech",
];
const DEVICE_UNKNOWN: [&str; 3] = ["no_mdm_record", "device_unknown", "private_mac_unmapped"];

/// `high`, `medium` or `low`: how many kinds of blind spot the pattern's
/// reading rests on (0, 1, more).
fn visibility(p: Pattern, limits: &[&str]) -> &'static str {
    let has = |set: &[&str]| limits.iter().any(|l| set.contains(l));
    let an1726 = p.analytic() == "AN1726";
    let kinds = [
        an1726 && has(&HANDSHAKE_HIDDEN),
        p == Pattern::BackgroundTransmission && has(&["background_state_inferred"]),
        has(&DEVICE_UNKNOWN),
        has(&["no_app_identity"]),
    ]
    .iter()
    .filter(|k| **k)
    .count();
    match kinds {
        0 => "high",
        1 => "medium",
        _ => "low",
    }
}

/// `high` (score 70 and above), `medium` (40 to 69) or `low`.
pub fn severity(score: u8) -> &'static str {
    match score {
        70.. => "high",
        40..=69 => "medium",
        _ => "low",
    }
}

/// How the recommended action names the device: its MDM name or host
/// name with the detection's device key.
fn device_label(d: &crate::record::DeviceObject, key: &str) -> String {
    let named = d.info.as_ref().and_then(|i| {
        let mdm = i.mdm.as_ref().and_then(|(m, _)| m.name.clone());
        mdm.or_else(|| i.hostname.clone())
    });
    match named {
        Some(n) => format!("{n} ({key})"),
        None => key.to_string(),
    }
}

/// One line for the analyst: what to do next, by pattern and reading.
fn recommended_action(p: Pattern, reading: &str, dest: &str, device: &str) -> String {
    match (p, reading) {
        (Pattern::RepeatedHandshakeRejection, "pinning_by_design") => format!(
            "The catalogued app on {device} pins {dest}: add {dest} to the inspection bypass list, or accept that it stays uninspected and record the exception"
        ),
        (Pattern::RepeatedHandshakeRejection, "risk_accepted") => format!(
            "{dest} is on the bypass list yet its sessions from {device} still reach the inspecting proxy and fail: fix the proxy's bypass rule"
        ),
        (Pattern::RepeatedHandshakeRejection, _) => format!(
            "Find the app on {device} that rejects the inspection certificate for {dest} (MDM app inventory); bypass it if sanctioned, else investigate it as pinning malware"
        ),
        (Pattern::DestinationBypass, _) => format!(
            "{device} reaches {dest} without inspection while its other TLS is inspected: enforce the proxy path for it, or document the bypass"
        ),
        (Pattern::OpaquePersistentSession, _) => format!(
            "Identify the app on {device} holding a long uninspected session to {dest}; block {dest} if no sanctioned app explains it"
        ),
        (Pattern::BackgroundTransmission, _) => format!(
            "Identify the app on {device} that sends to {dest} in the background on a schedule; compare it with the MDM app inventory and remove it if unsanctioned"
        ),
        (Pattern::OpaqueEncryptedChannel, _) => format!(
            "Identify the app on {device} sending encrypted non-TLS traffic to {dest}; block {dest} until an app explains it"
        ),
    }
}

struct Parts(Vec<ScorePart>);

impl Parts {
    fn add(&mut self, part: &'static str, points: i32) {
        self.0.push(ScorePart { part, points });
    }
    fn total(&self) -> u8 {
        self.0.iter().map(|p| p.points).sum::<i32>().clamp(0, 100) as u8
    }
}

/// `points` for each whole `per` in `n`, at most `max` (no overflow on
/// any count).
fn steps(n: u64, per: u64, points: i32, max: i32) -> i32 {
    let k = (n / per.max(1)).min(max as u64 / points.max(1) as u64 + 1) as i32;
    (k * points).min(max)
}

fn secs(t: Timestamp) -> f64 {
    nanos_to_secs_f64(t.0)
}

/// The entry's inspection state, with proxy fingerprints learned since.
fn inspection(d: &Detector, e: &Entry) -> Option<Inspection> {
    match e.inspection {
        Some(Inspection::Unknown) if e.ja3s.as_ref().is_some_and(|j| d.proxy_ja3s(j)) => {
            Some(Inspection::ProxyFingerprint)
        }
        Some(Inspection::NotInspected) if d.learnt_ca(e.private_ca) => Some(Inspection::LearntCa),
        i => i,
    }
}

fn inspection_counts(d: &Detector, entries: &[Entry]) -> BTreeMap<&'static str, u64> {
    let mut m = BTreeMap::new();
    for e in entries {
        if let Some(i) = inspection(d, e) {
            *m.entry(i.name()).or_default() += 1;
        }
    }
    m
}

/// A bypass window's sessions seen `not_inspected` over TCP, and its
/// completed QUIC sessions that no proxy answered.
fn bypass_counts(d: &Detector, entries: &[Entry]) -> (u64, u64) {
    let (mut tcp, mut quic) = (0, 0);
    for e in entries {
        let i = inspection(d, e);
        if is_quic(e.tuple.proto, e.outcome.is_some()) {
            quic += u64::from(matches!(
                i,
                Some(Inspection::Unknown | Inspection::NotInspected)
            ));
        } else {
            tcp += u64::from(i == Some(Inspection::NotInspected));
        }
    }
    (tcp, quic)
}

/// A cheap first look: can this window make a detection at all? (Most
/// windows hold one session of an ordinary connection; they need no context.)
fn may_fire(d: &Detector, w: &Window) -> bool {
    match w.pattern {
        Pattern::RepeatedHandshakeRejection => {
            w.sessions >= u64::from(d.s.rejection_min_handshakes)
        }
        Pattern::DestinationBypass => {
            let (tcp, quic) = bypass_counts(d, &w.entries);
            tcp >= u64::from(d.s.bypass_min_sessions)
                || quic >= u64::from(d.s.bypass_min_quic_sessions)
        }
        Pattern::BackgroundTransmission => {
            w.entries.len() as u64 >= u64::from(d.s.beacon_min_connections)
                || w.entries
                    .iter()
                    .any(|e| e.end_ts.since(e.ts) >= d.s.persistent_min_duration)
        }
        Pattern::OpaquePersistentSession | Pattern::OpaqueEncryptedChannel => true,
    }
}

/// Evaluates a closed window; `None` when it does not make a detection.
/// `closing`: the window ends (its detection is `closed`, counted and cut
/// out for `--evidence`); else a live look at a copy of an open window,
/// which leaves the detector's counters and evidence list as they are.
pub fn evaluate(d: &mut Detector, w: Window, closing: bool) -> Option<DetectionRecord> {
    if w.entries.is_empty() || !may_fire(d, &w) {
        return None;
    }
    let mut limits = w.limits.clone();
    let mut parts = Parts(Vec::new());
    let mdm = w
        .device
        .info
        .as_ref()
        .and_then(|i| i.mdm.as_ref())
        .map(|(m, _)| m.clone());
    // Device state is what the detection rests on: without an MDM record
    // (also when no inventory was given) that is a limit.
    if mdm.is_none() && !limits.iter().any(|l| DEVICE_UNKNOWN.contains(l)) {
        add_limit(&mut limits, "no_mdm_record");
    }
    let supervised = mdm.as_ref().and_then(|m| m.supervised);
    let managed = mdm.as_ref().and_then(|m| m.managed);
    let name = w.name.clone();
    let candidate = d
        .apps
        .candidate(&w.device, name.as_deref(), w.ja4.as_deref(), w.start)
        .map(|c| (c.app.clone(), c.derived_from));
    if candidate.is_none() {
        add_limit(&mut limits, "no_app_identity");
    }
    let pinned_by_design = match (&candidate, &name) {
        (Some((app, _)), Some(n)) => Some(Apps::pins(app, n)),
        _ => None,
    };
    let bypass_documented = name
        .as_deref()
        .is_some_and(|n| names::any_matches(&d.s.bypass_domains, n));
    let reading = if pinned_by_design == Some(true) {
        "pinning_by_design"
    } else if bypass_documented {
        "risk_accepted"
    } else {
        "unexplained"
    };
    let baseline = d
        .baseline
        .as_ref()
        .and_then(|b| b.get(w.ja4.as_deref().unwrap_or(""), &w.dest_key).cloned());
    let entries = &w.entries;
    let first = entries.iter().map(|e| e.ts).min().unwrap_or(w.start);
    let last = entries.iter().map(|e| e.end_ts).max().unwrap_or(w.start);
    let mut background: Option<&'static str> = None;

    let evidence = match w.pattern {
        Pattern::RepeatedHandshakeRejection => {
            let min = u64::from(d.s.rejection_min_handshakes);
            if w.sessions < min {
                return None;
            }
            // Closes right after a completed handshake weigh less than
            // rejections during it: clients also close idle connections so.
            let late = entries
                .iter()
                .filter(|e| e.outcome == Some(Outcome::ClientClosedAfterHandshake))
                .count() as u64;
            let base = if w.sessions.saturating_sub(late) >= min {
                30
            } else {
                15
            };
            parts.add("rejections", base + steps(w.sessions - min, 1, 5, 15));
            let insp = inspection_counts(d, entries);
            let count = |k: Inspection| insp.get(k.name()).copied().unwrap_or(0);
            if count(Inspection::Ca) > 0 {
                parts.add("inspected_by_ca", 20);
            } else if count(Inspection::LearntCa) > 0 {
                // The chain names the CA; that it inspects is learnt.
                parts.add("inspected_by_learnt_ca", 15);
                add_limit(&mut limits, "inspection_learnt");
            } else if count(Inspection::ProxyLog) > 0 {
                parts.add("inspected_per_proxy_log", 20);
            } else if count(Inspection::ProxyAddress) + count(Inspection::ProxyFingerprint) > 0 {
                parts.add("inspected_by_proxy", 15);
                add_limit(&mut limits, "inspection_inferred");
            } else if count(Inspection::NotInspected) > 0 {
                parts.add("not_under_inspection", -20);
            } else {
                add_limit(&mut limits, "inspection_not_confirmed");
            }
            let elsewhere =
                d.completed_elsewhere(&w.device_key, w.ja4.as_deref().unwrap_or(""), &w.dest_key);
            parts.add("completes_elsewhere", if elsewhere > 0 { 15 } else { -5 });
            let mut outcomes: BTreeMap<&str, u64> = BTreeMap::new();
            let mut alerts: Vec<u8> = Vec::new();
            let mut hidden = false;
            for e in entries {
                if let Some(o) = e.outcome {
                    *outcomes.entry(o.name()).or_default() += 1;
                }
                for a in &e.client_alerts {
                    if !alerts.contains(a) {
                        alerts.push(*a);
                    }
                }
                hidden |= e.client_alert_hidden;
            }
            alerts.sort_unstable();
            if alerts.iter().any(|a| CERTIFICATE_ALERTS.contains(a)) {
                parts.add("certificate_alerts", 10);
            } else if hidden {
                add_limit(&mut limits, "alert_description_hidden");
                if outcomes.contains_key(Outcome::ClientEncryptedAlert.name()) {
                    parts.add("alert_sized_record", 5);
                }
            }
            let times: Vec<f64> = entries.iter().map(|e| secs(e.ts)).collect();
            let sizes = vec![0u64; times.len()];
            let reg = rita::score(&times, &sizes);
            if let Some(r) = &reg
                && r.interval_median_s > 0.0
                && r.interval_madm_s <= 0.25 * r.interval_median_s
            {
                parts.add("regular_retries", 5);
            }
            if let Some(b) = &baseline
                && b.rejection_share() >= 0.5
            {
                parts.add("usual_for_baseline", -10);
            }
            DetectionEvidence::Rejection {
                handshakes: w.sessions,
                outcomes,
                client_alerts: alerts,
                inspection: insp,
                completed_elsewhere: elsewhere,
                interval_median_s: reg.as_ref().map(|r| r.interval_median_s),
                interval_madm_s: reg.as_ref().map(|r| r.interval_madm_s),
                first,
                last,
            }
        }
        Pattern::DestinationBypass => {
            let insp = inspection_counts(d, entries);
            let (not, quic) = bypass_counts(d, entries);
            let inspected = u64::from(d.inspected_to(&w.device_key, &w.dest_key));
            let elsewhere = d.inspected_elsewhere(&w.device_key, &w.dest_key);
            let min_elsewhere = d.s.bypass_min_inspected_elsewhere;
            let tcp_bypass = not >= u64::from(d.s.bypass_min_sessions)
                && inspected == 0
                && elsewhere >= min_elsewhere;
            // QUIC passes by a TCP proxy even where the device's TCP to
            // the same destination is inspected.
            let quic_bypass = quic >= u64::from(d.s.bypass_min_quic_sessions)
                && d.inspected_any(&w.device_key) >= min_elsewhere;
            let (via, past_min) = match (tcp_bypass, quic_bypass) {
                (false, false) => return None,
                (true, false) => ("tcp", not - u64::from(d.s.bypass_min_sessions)),
                (false, true) => ("quic", quic - u64::from(d.s.bypass_min_quic_sessions)),
                (true, true) => (
                    "tcp_and_quic",
                    not + quic - u64::from(d.s.bypass_min_sessions),
                ),
            };
            if bypass_documented {
                parts.add("documented_bypass", 10);
            } else {
                parts.add("consistently_uninspected", 40);
                parts.add("inspected_elsewhere", 20);
                parts.add("sessions", steps(past_min, 1, 5, 10));
            }
            DetectionEvidence::Bypass {
                sessions: w.sessions,
                inspection: insp,
                inspected_elsewhere: elsewhere,
                documented: bypass_documented,
                first,
                last,
                via,
            }
        }
        Pattern::OpaquePersistentSession => {
            if managed == Some(false) {
                if closing {
                    *d.counters.entry("persistent_unmanaged_device").or_default() += 1;
                }
                return None;
            }
            let longest = entries
                .iter()
                .map(|e| e.end_ts.since(e.ts))
                .max()
                .unwrap_or(0);
            let unexplained: Vec<&Entry> = entries
                .iter()
                .filter(|e| {
                    baseline
                        .as_ref()
                        .is_none_or(|b| !b.explains_duration(e.end_ts.since(e.ts)))
                })
                .collect();
            if unexplained.is_empty() {
                if closing {
                    *d.counters
                        .entry("persistent_explained_by_baseline")
                        .or_default() += 1;
                }
                return None;
            }
            let min = d.s.persistent_min_duration.max(1);
            parts.add(
                "long_lived",
                30 + steps((longest / min).saturating_sub(1), 1, 5, 20),
            );
            let insp = inspection_counts(d, entries);
            if insp.contains_key(Inspection::NotInspected.name()) {
                parts.add("uninspected", 15);
            } else {
                parts.add("inspection_unknown", 5);
                add_limit(&mut limits, "inspection_not_confirmed");
            }
            match (&d.baseline, &baseline) {
                (None, _) => add_limit(&mut limits, "no_baseline"),
                (Some(_), None) => parts.add("not_in_baseline", 15),
                (Some(_), Some(_)) => parts.add("longer_than_baseline", 10),
            }
            let bytes: u64 = entries
                .iter()
                .map(|e| e.orig_payload + e.resp_payload)
                .sum();
            DetectionEvidence::Persistent {
                sessions: w.sessions,
                longest_s: nanos_to_secs_f64(longest),
                min_duration_s: d.s.persistent_min_duration / NANOS_PER_SEC,
                payload_bytes: bytes,
                inspection: insp,
                first,
                last,
            }
        }
        Pattern::BackgroundTransmission => {
            let app = candidate.as_ref().map(|(a, _)| a.bundle_id.clone());
            let mut states = Vec::with_capacity(entries.len());
            for e in entries {
                let observed = app
                    .as_deref()
                    .and_then(|b| d.apps.state_at(&w.device, b, e.ts));
                states.push(match observed {
                    Some(AppLifecycle::Foreground) => Background::Foreground,
                    Some(_) => Background::Observed,
                    None if d.busy_before(&w.device_key, &w.dest_key, e.ts) => {
                        Background::NotInferred
                    }
                    None => Background::Inferred,
                });
            }
            let mut bg: Vec<&Entry> = entries
                .iter()
                .zip(&states)
                .filter(|(_, s)| matches!(s, Background::Observed | Background::Inferred))
                .map(|(e, _)| e)
                .collect();
            bg.sort_by(|a, b| (a.ts, &a.flow_id).cmp(&(b.ts, &b.flow_id)));
            let observed = states.contains(&Background::Observed);
            let times: Vec<f64> = bg.iter().map(|e| secs(e.ts)).collect();
            let sizes: Vec<u64> = bg.iter().map(|e| e.orig_payload).collect();
            let reg = rita::score(&times, &sizes);
            let longest_bg = bg.iter().map(|e| e.end_ts.since(e.ts)).max().unwrap_or(0);
            let periodic = bg.len() as u64 >= u64::from(d.s.beacon_min_connections)
                && reg
                    .as_ref()
                    .is_some_and(|r| r.score >= d.s.beacon_min_score);
            let sustained = longest_bg >= d.s.persistent_min_duration;
            if !periodic && !sustained {
                return None;
            }
            let regularity = reg.as_ref().map_or(0.0, |r| r.score);
            if periodic {
                parts.add("regularity", (40.0 * regularity).round() as i32);
            } else {
                parts.add("sustained", 25);
            }
            if observed {
                background = Some("observed");
                parts.add("background_observed", 25);
            } else {
                background = Some("inferred");
                parts.add("background_inferred", 10);
                add_limit(&mut limits, "background_state_inferred");
            }
            if periodic {
                let past = bg.len() as u64 - u64::from(d.s.beacon_min_connections);
                parts.add("connections", steps(past, 6, 5, 10));
            }
            const EXPLAINING: [&str; 6] = [
                "fetch",
                "remote-notification",
                "voip",
                "location",
                "audio",
                "processing",
            ];
            if let Some((a, _)) = &candidate {
                if a.background_modes
                    .iter()
                    .any(|m| EXPLAINING.contains(&m.as_str()))
                {
                    parts.add("declared_background_modes", -5);
                } else {
                    parts.add("no_background_mode", 10);
                }
            }
            DetectionEvidence::Background {
                connections: w.sessions,
                background_connections: bg.len(),
                mode: if periodic { "periodic" } else { "sustained" },
                longest_background_s: nanos_to_secs_f64(longest_bg),
                regularity: reg,
                intervals_s: times
                    .windows(2)
                    .map(|t| ((t[1] - t[0]) * 1000.0).round() / 1000.0)
                    .collect(),
                sizes,
                first,
                last,
            }
        }
        Pattern::OpaqueEncryptedChannel => {
            parts.add("fully_encrypted_first_payload", 40);
            let both = entries.iter().any(|e| {
                e.first_payload[1].as_ref().is_some_and(|f| {
                    super::fet::exemption(
                        f,
                        None,
                        d.s.opaque_min_payload_bytes,
                        d.s.opaque_min_entropy_ratio,
                    )
                    .is_none()
                })
            });
            if both {
                parts.add("both_directions", 10);
            }
            let bytes: u64 = entries
                .iter()
                .map(|e| e.orig_payload + e.resp_payload)
                .sum();
            if bytes >= 64 << 10 {
                parts.add("volume", 10);
            }
            parts.add("repeated", steps(w.sessions - 1, 1, 5, 10));
            let f = entries[0].first_payload[0];
            DetectionEvidence::Opaque {
                flows: w.sessions,
                payload_bytes: bytes,
                client_first_payload: f,
                server_first_payload: entries[0].first_payload[1],
                both_directions: both,
                first,
                last,
            }
        }
    };

    // The proxy's own log, where one was given and joined.
    let hidden =
        w.pattern.analytic() == "AN1726" && limits.iter().any(|l| HANDSHAKE_HIDDEN.contains(l));
    let proxy_evidence =
        super::proxy::evidence(w.pattern, entries, hidden, d.s.max_flow_ids).map(|(ev, part)| {
            if let Some((name, points)) = part {
                parts.add(name, points);
                if points < 0 {
                    add_limit(&mut limits, "proxy_log_disagrees");
                }
            }
            ev
        });
    // Context parts, the same for every pattern.
    match (supervised, managed) {
        (Some(true), Some(true)) => parts.add("supervised_managed_device", 5),
        (_, Some(false)) => parts.add("unmanaged_device", -15),
        _ => {}
    }
    if w.pattern != Pattern::DestinationBypass {
        match reading {
            "pinning_by_design" => parts.add("pinning_by_design", -10),
            "risk_accepted" => parts.add("documented_bypass", -20),
            _ => parts.add("unexplained", 5),
        }
    }
    let score = parts.total();
    if score < d.s.min_score {
        if closing {
            *d.counters.entry("below_min_score").or_default() += 1;
        }
        return None;
    }
    limits.sort_unstable();
    let visibility = visibility(w.pattern, &limits);
    let id = detection_id(w.pattern, &w.key, w.start);
    // The address most sessions went to (a name reached both through the
    // proxy and directly has both); ties go to the first seen.
    let mut counts: hashbrown::HashMap<(std::net::IpAddr, u16), usize> = hashbrown::HashMap::new();
    let (mut dst, mut best) = (w.dst, 0);
    for e in entries {
        let a = (e.tuple.dst_ip, e.tuple.dst_port);
        let n = counts.entry(a).or_default();
        *n += 1;
        if *n > best {
            (best, dst) = (*n, a);
        }
    }
    let flow_ids: Vec<crate::record::FlowId> = entries
        .iter()
        .take(d.s.max_flow_ids)
        .map(|e| e.flow_id)
        .collect();
    let community_ids: Vec<String> = entries
        .iter()
        .take(d.s.max_flow_ids)
        .map(|e| e.community_id.to_string())
        .collect();
    let evidence_file = d
        .evidence
        .then(|| format!("{}-{id}.pcap", w.pattern.name()));
    if let Some(f) = evidence_file.as_ref().filter(|_| closing) {
        d.wants.push(super::EvidenceWant {
            file: f.clone(),
            flows: entries
                .iter()
                .take(d.s.max_flow_ids)
                .map(|e| (e.tuple.clone(), e.ts, e.end_ts))
                .collect(),
        });
    }
    if closing {
        *d.counters.entry(w.pattern.name()).or_default() += 1;
    }
    let destination = match &name {
        Some(n) => n.clone(),
        None => super::destination_key(None, dst.0, dst.1),
    };
    let device = device_label(&w.device, &w.device_key);
    Some(DetectionRecord {
        kind: "detection",
        status: "closed",
        ts: first,
        end_ts: last,
        detection_id: id,
        analytic: w.pattern.analytic(),
        pattern: w.pattern.name(),
        score,
        score_parts: parts.0,
        severity: severity(score),
        visibility,
        recommended_action: recommended_action(w.pattern, reading, &destination, &device),
        device: w.device,
        app: candidate.as_ref().map(|(a, how)| AppRef {
            bundle_id: a.bundle_id.clone(),
            name: a.name.clone(),
            derived_from: how,
        }),
        destination: Destination {
            name,
            name_source: w.name_source,
            sni: w.sni.as_deref().map(str::to_string),
            ip: dst.0,
            port: dst.1,
            via_proxy: w.via_proxy && dst == w.dst,
        },
        ja4: w.ja4.as_deref().map(str::to_string),
        window_start: w.start,
        window_s: d.s.window / NANOS_PER_SEC,
        evidence,
        context: DetectionContext {
            supervised,
            managed,
            background,
            background_modes: candidate
                .as_ref()
                .map(|(a, _)| a.background_modes.clone())
                .unwrap_or_default(),
            entitlements: candidate
                .as_ref()
                .map(|(a, _)| a.entitlements.clone())
                .unwrap_or_default(),
            pinned_by_design,
            bypass_documented,
            reading,
            baseline: baseline.as_ref().map(|b| b.to_json()),
        },
        limits,
        flow_ids,
        community_ids,
        flow_ids_total: w.sessions,
        evidence_file,
        proxy_evidence,
        observers: Vec::new(),
    })
}

/// 16 hex digits, the same for the same pattern, key and window start.
fn detection_id(p: Pattern, key: &str, start: Timestamp) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(p.name().as_bytes());
    h.update([0]);
    h.update(key.as_bytes());
    h.update(start.0.to_be_bytes());
    crate::record::hex(&h.finalize()[..8])
}

#[cfg(test)]
mod tests {
    use super::steps;

    #[test]
    fn steps_are_capped_without_overflow() {
        assert_eq!(steps(0, 1, 5, 15), 0);
        assert_eq!(steps(2, 1, 5, 15), 10);
        assert_eq!(steps(9, 1, 5, 15), 15);
        assert_eq!(steps(11, 6, 5, 10), 5);
        assert_eq!(steps(u64::MAX, 1, 5, 20), 20);
    }
}
