//! Enrichment: which app is behind a destination, and was it in the
//! background? From the app catalog (`--apps`), the lifecycle events
//! (`--app-events`) and the JA4 fingerprints seen with an app before.
//! Enrichment raises or lowers a score; it never proves anything.

use super::names::is_under;
use crate::inputs::app_events::{AppEvent, AppLifecycle};
use crate::inputs::catalog::AppProfile;
use crate::record::DeviceObject;
use crate::time::Timestamp;
use hashbrown::HashMap;

/// How the candidate app was derived, strongest first.
pub const FROM_CATALOG_PINNED: &str = "catalog_pinned_domain";
pub const FROM_CATALOG_DOMAIN: &str = "catalog_domain";
pub const FROM_APP_EVENTS: &str = "app_events";
pub const FROM_JA4_HISTORY: &str = "ja4_history";

/// Most JA4 → app associations remembered (then new ones are not learned).
const MAX_JA4_APPS: usize = 65_536;

#[derive(Default)]
pub struct Apps {
    catalog: Vec<AppProfile>,
    /// Events by device identifier (lower case), in time order.
    events: HashMap<String, Vec<AppEvent>>,
    /// JA4 → the one app it was attributed to (None once two apps claimed it).
    ja4: HashMap<String, Option<usize>>,
    pub ja4_dropped: u64,
}

/// The candidate app of a detection.
#[derive(Clone, Debug)]
pub struct Candidate<'a> {
    pub app: &'a AppProfile,
    pub derived_from: &'static str,
}

/// The background state of the app at some time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Background {
    /// App events said foreground / background or suspended.
    Foreground,
    Observed,
    /// No events: the device's other traffic had gone quiet.
    Inferred,
    /// No events, and the device was busy with other destinations.
    NotInferred,
}

fn pinned(app: &AppProfile, name: &str) -> bool {
    app.pinned_domains
        .iter()
        .any(|p| name == p.domain || (p.include_subdomains && is_under(name, &p.domain)))
}

fn knows(app: &AppProfile, name: &str) -> bool {
    app.domains.iter().any(|d| match d.strip_prefix("*.") {
        Some(suffix) => is_under(name, suffix),
        None => name == d,
    })
}

/// Identifiers app events may name a device by: serial, UDID, Wi-Fi MAC.
fn device_ids(d: &DeviceObject) -> Vec<String> {
    let mut ids = Vec::new();
    if let Some(i) = &d.info {
        if let Some((m, _)) = &i.mdm {
            ids.extend(
                m.serial
                    .iter()
                    .chain(&m.udid)
                    .map(|s| s.to_ascii_lowercase()),
            );
        }
        ids.extend(i.mac.map(|m| m.to_string()));
    }
    ids
}

impl Apps {
    pub fn new(catalog: Vec<AppProfile>, events: &[AppEvent]) -> Self {
        let mut by_device: HashMap<String, Vec<AppEvent>> = HashMap::new();
        for e in events {
            let id = crate::inputs::parse_mac(&e.device)
                .map(|m| crate::record::Mac(m).to_string())
                .unwrap_or_else(|| e.device.to_ascii_lowercase());
            by_device.entry(id).or_default().push(e.clone());
        }
        for v in by_device.values_mut() {
            v.sort_by_key(|e| e.ts);
        }
        Apps {
            catalog,
            events: by_device,
            ja4: HashMap::new(),
            ja4_dropped: 0,
        }
    }

    pub fn has_events(&self) -> bool {
        !self.events.is_empty()
    }

    fn events_of(&self, d: &DeviceObject) -> Option<&[AppEvent]> {
        device_ids(d)
            .iter()
            .find_map(|id| self.events.get(id).map(Vec::as_slice))
    }

    /// The app's lifecycle state at `ts` (its last event at or before), if
    /// the events speak of it.
    pub fn state_at(&self, d: &DeviceObject, bundle: &str, ts: Timestamp) -> Option<AppLifecycle> {
        let ev = self.events_of(d)?;
        ev.iter()
            .rfind(|e| e.bundle_id == bundle && e.ts <= ts)
            .map(|e| e.state)
    }

    /// The app in the foreground at `ts`, by the events; else the app that
    /// most recently left it.
    fn active_app(&self, d: &DeviceObject, ts: Timestamp) -> Option<&str> {
        let ev = self.events_of(d)?;
        let past: Vec<&AppEvent> = ev.iter().filter(|e| e.ts <= ts).collect();
        let mut fg = past
            .iter()
            .rev()
            .find(|e| e.state == AppLifecycle::Foreground)?;
        // Still in the foreground unless a later event moved it out.
        if past.iter().any(|e| {
            e.bundle_id == fg.bundle_id && e.ts > fg.ts && e.state != AppLifecycle::Foreground
        }) {
            fg = past
                .iter()
                .rev()
                .find(|e| e.state != AppLifecycle::Foreground)?;
        }
        Some(fg.bundle_id.as_str())
    }

    fn index_of(&self, bundle: &str) -> Option<usize> {
        self.catalog.iter().position(|a| a.bundle_id == bundle)
    }

    /// Derives the candidate app for a destination name seen from a device
    /// with a JA4 at `ts`; remembers the JA4 for later derivations.
    pub fn candidate(
        &mut self,
        d: &DeviceObject,
        name: Option<&str>,
        ja4: Option<&str>,
        ts: Timestamp,
    ) -> Option<Candidate<'_>> {
        let installed: Option<Vec<&str>> = d
            .info
            .as_ref()
            .and_then(|i| i.mdm.as_ref())
            .filter(|(m, _)| !m.apps.is_empty())
            .map(|(m, _)| m.apps.iter().map(|a| a.bundle_id.as_str()).collect());
        let ok = |a: &AppProfile| {
            installed
                .as_ref()
                .is_none_or(|list| list.contains(&a.bundle_id.as_str()))
        };
        let mut found: Option<(usize, &'static str)> = None;
        if let Some(name) = name {
            let by = |f: fn(&AppProfile, &str) -> bool| -> Vec<usize> {
                (0..self.catalog.len())
                    .filter(|i| ok(&self.catalog[*i]) && f(&self.catalog[*i], name))
                    .collect()
            };
            for (hits, how) in [
                (by(pinned), FROM_CATALOG_PINNED),
                (by(knows), FROM_CATALOG_DOMAIN),
            ] {
                let pick = match hits.len() {
                    0 => None,
                    1 => Some(hits[0]),
                    // Several apps know the domain: the events pick one.
                    _ => self.active_app(d, ts).and_then(|b| {
                        hits.iter()
                            .copied()
                            .find(|i| self.catalog[*i].bundle_id == b)
                    }),
                };
                if let Some(i) = pick {
                    found = Some((i, how));
                    break;
                }
            }
        }
        if found.is_none()
            && let Some(i) = ja4.and_then(|j| self.ja4.get(j)).copied().flatten()
        {
            found = Some((i, FROM_JA4_HISTORY));
        }
        if found.is_none()
            && let Some(i) = self.active_app(d, ts).and_then(|b| self.index_of(b))
        {
            found = Some((i, FROM_APP_EVENTS));
        }
        let (i, how) = found?;
        if let Some(j) = ja4
            && how != FROM_JA4_HISTORY
        {
            let full = self.ja4.len() >= MAX_JA4_APPS;
            match self.ja4.get_mut(j) {
                Some(slot) if *slot != Some(i) => *slot = None,
                Some(_) => {}
                None if !full => {
                    self.ja4.insert(j.to_string(), Some(i));
                }
                None => self.ja4_dropped += 1,
            }
        }
        Some(Candidate {
            app: &self.catalog[i],
            derived_from: how,
        })
    }

    /// Is `name` in the app's NSPinnedDomains?
    pub fn pins(app: &AppProfile, name: &str) -> bool {
        pinned(app, name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inputs::catalog::PinnedDomain;
    use crate::inputs::mdm::MdmDevice;
    use crate::record::DeviceInfo;
    use std::sync::Arc;

    fn app(id: &str, domains: &[&str], pinned: &[&str]) -> AppProfile {
        AppProfile {
            bundle_id: id.into(),
            domains: domains.iter().map(|d| d.to_string()).collect(),
            pinned_domains: pinned
                .iter()
                .map(|d| PinnedDomain {
                    domain: d.to_string(),
                    include_subdomains: true,
                })
                .collect(),
            ..AppProfile::default()
        }
    }

    fn device(serial: &str) -> DeviceObject {
        let m = MdmDevice {
            serial: Some(serial.into()),
            ..MdmDevice::default()
        };
        DeviceObject {
            info: Some(Arc::new(DeviceInfo {
                mac: Some(crate::record::Mac([0xa4, 0x83, 0xe7, 0x4d, 0x00, 0x01])),
                mdm: Some((Arc::new(m), "wifi_mac")),
                ..DeviceInfo::default()
            })),
            ..DeviceObject::default()
        }
    }

    fn ev(s: u64, bundle: &str, state: AppLifecycle) -> AppEvent {
        AppEvent {
            ts: Timestamp(s * 1_000_000_000),
            device: "SERIAL1".into(),
            bundle_id: bundle.into(),
            state,
        }
    }

    #[test]
    fn candidate_app_derivations_in_order() {
        use AppLifecycle::*;
        let catalog = vec![
            app("com.a.pinned", &["api.a.example"], &["a.example"]),
            app("com.b.mail", &["mail.b.example", "*.shared.example"], &[]),
            app("com.c.other", &["*.shared.example"], &[]),
        ];
        let events = [
            ev(10, "com.b.mail", Foreground),
            ev(20, "com.b.mail", Background),
            ev(21, "com.c.other", Foreground),
        ];
        let mut apps = Apps::new(catalog, &events);
        let d = device("serial1");
        let t = |s: u64| Timestamp(s * 1_000_000_000);
        // NSPinnedDomains (with subdomains) beats known domains.
        let c = apps
            .candidate(&d, Some("api.a.example"), Some("JA4A"), t(5))
            .unwrap();
        assert_eq!(
            (c.app.bundle_id.as_str(), c.derived_from),
            ("com.a.pinned", FROM_CATALOG_PINNED)
        );
        assert!(Apps::pins(c.app, "x.a.example") && !Apps::pins(c.app, "b.example"));
        // Two apps know *.shared.example: the one in the foreground then wins.
        let c = apps
            .candidate(&d, Some("cdn.shared.example"), None, t(15))
            .unwrap();
        assert_eq!(c.app.bundle_id, "com.b.mail");
        let c = apps
            .candidate(&d, Some("cdn.shared.example"), None, t(25))
            .unwrap();
        assert_eq!(c.app.bundle_id, "com.c.other");
        // A JA4 attributed to one app names it for an unknown destination.
        let c = apps
            .candidate(&d, Some("unknown.example"), Some("JA4A"), t(30))
            .unwrap();
        assert_eq!(
            (c.app.bundle_id.as_str(), c.derived_from),
            ("com.a.pinned", FROM_JA4_HISTORY)
        );
        // Unknown name and JA4: the foreground app by the events.
        let c = apps.candidate(&d, None, None, t(12)).unwrap();
        assert_eq!(
            (c.app.bundle_id.as_str(), c.derived_from),
            ("com.b.mail", FROM_APP_EVENTS)
        );
        // Lifecycle state by the events (device named by serial, any case).
        assert_eq!(apps.state_at(&d, "com.b.mail", t(19)), Some(Foreground));
        assert_eq!(apps.state_at(&d, "com.b.mail", t(20)), Some(Background));
        assert_eq!(apps.state_at(&d, "com.b.mail", t(9)), None);
        // Another device: no events, no candidate without a catalog match.
        assert!(
            apps.candidate(&DeviceObject::default(), None, None, t(12))
                .is_none()
        );
    }

    #[test]
    fn a_ja4_claimed_by_two_apps_names_neither() {
        let catalog = vec![
            app("com.x", &["x.example"], &[]),
            app("com.y", &["y.example"], &[]),
        ];
        let mut apps = Apps::new(catalog, &[]);
        let d = DeviceObject::default();
        apps.candidate(&d, Some("x.example"), Some("J"), Timestamp(1));
        apps.candidate(&d, Some("y.example"), Some("J"), Timestamp(2));
        assert!(
            apps.candidate(&d, Some("z.example"), Some("J"), Timestamp(3))
                .is_none()
        );
    }
}
