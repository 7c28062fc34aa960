//! Device state, owned by the correlator: a time-aware history of which MAC
//! held which IP (from DHCP, DHCPv6, ARP and NDP on the wire, and lease
//! files), and which managed device a MAC is (MDM Wi-Fi MAC, or a RADIUS
//! session whose identity names the device).
//!
//! An address resolves by the record's own time against that history, not
//! "latest wins": the binding that started last at or before that time
//! holds, unless it was a release or its lease had ended. Evidence only
//! ever speaks from its own time on. The pipeline applies evidence and
//! resolves records in chunk order, so the answer does not depend on the
//! number of workers.

use crate::app::evidence::{Action, Evidence};
use crate::inputs::{self, leases::Lease, mdm::MdmDevice, radius::RadiusSession};
use crate::record::{DeviceInfo, DeviceObject, DeviceRecord, Mac};
use crate::time::Timestamp;
use hashbrown::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

/// Bounds of the device tables; each overflow has a counter in `stats.devices`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceLimits {
    /// Addresses with a history.
    pub max_ips: usize,
    /// Bindings kept per address (the oldest goes first).
    pub max_bindings_per_ip: usize,
    /// MACs remembered (host names, first-seen).
    pub max_macs: usize,
}

impl Default for DeviceLimits {
    fn default() -> Self {
        DeviceLimits {
            max_ips: 1 << 18,
            max_bindings_per_ip: 64,
            max_macs: 1 << 18,
        }
    }
}

/// `mac` held the address from `start` until `until` (`None`: open); a
/// release is a binding with no MAC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Binding {
    start: Timestamp,
    until: Option<Timestamp>,
    mac: Option<[u8; 6]>,
    source: &'static str,
}

#[derive(Clone, Debug, Default)]
struct MacState {
    hostname: Option<String>,
    /// Bumped on each host name change: cached descriptions carry it in
    /// their key, so a stale one is never found again.
    generation: u32,
}

/// RADIUS sessions of one MAC, each with the MDM device its identity names.
#[derive(Clone, Debug)]
struct Session {
    start: Option<Timestamp>,
    stop: Option<Timestamp>,
    identity: String,
    mdm: Option<usize>,
}

/// Device inputs loaded from files (see [`crate::inputs`]).
#[derive(Clone, Debug, Default)]
pub struct DeviceInputs {
    pub leases: Vec<Lease>,
    pub radius: Vec<RadiusSession>,
    pub mdm: Vec<MdmDevice>,
    /// App catalog and lifecycle events: kept for the detections.
    pub apps: Vec<crate::inputs::catalog::AppProfile>,
    pub app_events: Vec<crate::inputs::app_events::AppEvent>,
    /// Inspecting proxies' log entries, sorted by start (`--proxy-log`);
    /// shared, not copied, by whoever clones the inputs.
    pub proxy_log: std::sync::Arc<Vec<crate::inputs::proxylog::ProxyEntry>>,
}

/// See [`Devices::coverage`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct DeviceCoverage {
    pub macs: u64,
    pub private_macs: u64,
    pub private_macs_unmapped: u64,
    pub macs_without_mdm: u64,
    pub mdm_devices: u64,
    pub mdm_devices_not_seen: u64,
}

#[derive(Default)]
pub struct Devices {
    limits: DeviceLimits,
    by_ip: HashMap<IpAddr, Vec<Binding>>,
    macs: HashMap<[u8; 6], MacState>,
    mdm: Vec<Arc<MdmDevice>>,
    mdm_by_mac: HashMap<[u8; 6], usize>,
    sessions: HashMap<[u8; 6], Vec<Session>>,
    /// Device descriptions by (MAC, RADIUS session + 1 or 0, host name
    /// generation); cleared when it grows past `max_macs` (a host name
    /// change costs O(1), however often a hostile client renames itself).
    cache: HashMap<([u8; 6], usize, u32), Arc<DeviceInfo>>,
    /// MACs behind traffic records, and whether an MDM record was ever tied
    /// to them (for the coverage record).
    seen: HashMap<[u8; 6], bool>,
    /// MDM records tied to some traffic.
    mdm_seen: Vec<bool>,
    pub counters: crate::record::Counts,
}

/// The MDM device whose serial or UDID appears in a RADIUS identity
/// (EAP-TLS identities are usually built from one of them:
/// `host/F2LXK0AAHG7F`, `00008110-...@corp.example`).
fn device_named_by(identity: &str, mdm: &[MdmDevice]) -> Option<usize> {
    let id = identity.to_ascii_uppercase();
    let tokens: Vec<&str> = id
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .filter(|t| t.len() >= 8)
        .collect();
    mdm.iter().position(|d| {
        [&d.serial, &d.udid].into_iter().flatten().any(|k| {
            let k = k.to_ascii_uppercase();
            k.len() >= 8 && tokens.iter().any(|t| *t == k)
        })
    })
}

impl Devices {
    pub fn new(limits: DeviceLimits, inputs: DeviceInputs) -> Self {
        let mut d = Devices {
            limits,
            ..Devices::default()
        };
        for (i, m) in inputs.mdm.iter().enumerate() {
            if let Some(mac) = m.wifi_mac {
                d.mdm_by_mac.entry(mac).or_insert(i);
            }
        }
        for s in inputs.radius {
            let mdm = device_named_by(&s.identity, &inputs.mdm);
            d.sessions.entry(s.mac).or_default().push(Session {
                start: s.start,
                stop: s.stop,
                identity: s.identity,
                mdm,
            });
        }
        for v in d.sessions.values_mut() {
            v.sort_by_key(|s| s.start);
        }
        d.mdm_seen = vec![false; inputs.mdm.len()];
        d.mdm = inputs.mdm.into_iter().map(Arc::new).collect();
        for l in inputs.leases {
            let Some(mac) = l.mac else {
                d.count("lease_without_mac");
                continue;
            };
            d.bind(
                l.ip,
                Binding {
                    start: l.start.unwrap_or(Timestamp::ZERO),
                    until: l.end,
                    mac: Some(mac),
                    source: "lease_file",
                },
            );
            if let Some(h) = l.hostname {
                d.set_hostname(mac, h);
            }
            d.count("lease_file_bindings");
        }
        d
    }

    fn count(&mut self, k: &'static str) {
        *self.counters.entry(k).or_default() += 1;
    }

    /// Adds a binding in start order (evidence arrives in time order, so
    /// this is almost always a push).
    /// Sensor SIGHUP: the MDM records and RADIUS sessions are replaced by
    /// those of `inputs`; its lease files' bindings and host names join
    /// what the wire has taught (which stays).
    pub fn reload(&mut self, inputs: DeviceInputs) {
        let fresh = Devices::new(self.limits, inputs);
        self.mdm = fresh.mdm;
        self.mdm_by_mac = fresh.mdm_by_mac;
        self.mdm_seen = fresh.mdm_seen;
        self.sessions = fresh.sessions;
        self.cache.clear();
        for (ip, bindings) in fresh.by_ip {
            for b in bindings {
                self.bind(ip, b);
            }
        }
        for (mac, st) in fresh.macs {
            if let Some(h) = st.hostname {
                self.set_hostname(mac, h);
            }
        }
        self.count("reloads");
    }

    fn bind(&mut self, ip: IpAddr, b: Binding) -> bool {
        if !self.by_ip.contains_key(&ip) && self.by_ip.len() >= self.limits.max_ips {
            self.count("ips_over_cap");
            return false;
        }
        let v = self.by_ip.entry(ip).or_default();
        let at = v.partition_point(|x| x.start <= b.start);
        v.insert(at, b);
        if v.len() > self.limits.max_bindings_per_ip {
            v.remove(0);
            self.count("bindings_over_cap");
        }
        true
    }

    fn set_hostname(&mut self, mac: [u8; 6], h: String) {
        if !self.macs.contains_key(&mac) && self.macs.len() >= self.limits.max_macs {
            self.count("macs_over_cap");
            return;
        }
        let st = self.macs.entry(mac).or_default();
        if st.hostname.as_deref() != Some(h.as_str()) {
            st.hostname = Some(h);
            st.generation = st.generation.wrapping_add(1);
        }
    }

    /// Who held `ip` at `ts`, and the evidence that said so.
    pub fn holder(&self, ip: IpAddr, ts: Timestamp) -> Option<([u8; 6], &'static str)> {
        let v = self.by_ip.get(&ip)?;
        let at = v.partition_point(|x| x.start <= ts);
        let b = v.get(at.checked_sub(1)?)?;
        if b.until.is_some_and(|u| u < ts) {
            return None;
        }
        Some((b.mac?, b.source))
    }

    /// Applies one piece of wire evidence; returns the `device` record it
    /// gives rise to, if any (a MAC seen for the first time, an address
    /// changing hands, a release).
    pub fn apply(&mut self, e: &Evidence) -> Option<DeviceRecord> {
        self.count(match e.source {
            "dhcp" => "evidence_dhcp",
            "dhcpv6" => "evidence_dhcpv6",
            "arp" => "evidence_arp",
            _ => "evidence_ndp",
        });
        let first = !self.macs.contains_key(&e.mac);
        if first {
            if self.macs.len() >= self.limits.max_macs {
                self.count("macs_over_cap");
            } else {
                self.macs.insert(e.mac, MacState::default());
            }
        }
        let (event, ip, until, previous) = match &e.action {
            Action::Name(h) => {
                self.set_hostname(e.mac, h.clone());
                if !first {
                    return None;
                }
                ("first_seen", None, None, None)
            }
            Action::Bind { ip, until } => {
                let before = self.holder(*ip, e.ts);
                let same = before.is_some_and(|(m, _)| m == e.mac);
                // An ARP/NDP refresh of a binding that holds adds nothing.
                if same && matches!(e.source, "arp" | "ndp") {
                    return first
                        .then(|| self.device_record(e, "first_seen", Some(*ip), None, None));
                }
                self.bind(
                    *ip,
                    Binding {
                        start: e.ts,
                        until: *until,
                        mac: Some(e.mac),
                        source: e.source,
                    },
                );
                if same && !first {
                    return None;
                }
                let prev = before.map(|(m, _)| m).filter(|m| *m != e.mac);
                (
                    if first { "first_seen" } else { "lease" },
                    Some(*ip),
                    *until,
                    prev,
                )
            }
            Action::Release { ip } => {
                // Only the holder can give an address back.
                if self.holder(*ip, e.ts).is_none_or(|(m, _)| m != e.mac) {
                    return None;
                }
                self.bind(
                    *ip,
                    Binding {
                        start: e.ts,
                        until: None,
                        mac: None,
                        source: e.source,
                    },
                );
                ("release", Some(*ip), None, None)
            }
        };
        let mut r = self.device_record(e, event, ip, until, previous);
        if event == "release" {
            r.lease_end = Some(e.ts);
            r.lease_start = None;
        }
        Some(r)
    }

    fn device_record(
        &mut self,
        e: &Evidence,
        event: &'static str,
        ip: Option<IpAddr>,
        until: Option<Timestamp>,
        previous: Option<[u8; 6]>,
    ) -> DeviceRecord {
        let mut limits = crate::record::Limits::new();
        let info = self.describe(e.mac, e.ts, &mut limits, false);
        DeviceRecord {
            kind: "device",
            ts: e.ts,
            event,
            ip,
            mac: Mac(e.mac),
            lease_start: ip.map(|_| e.ts),
            lease_end: until,
            source: e.source,
            previous_mac: previous.map(Mac),
            device: DeviceObject {
                ip,
                mac_source: ip.map(|_| e.source),
                info: Some(info),
            },
            limits,
        }
    }

    /// The description of MAC `mac` at `ts`, with the limits that apply;
    /// `traffic`: for a traffic record (counted for coverage).
    fn describe(
        &mut self,
        mac: [u8; 6],
        ts: Timestamp,
        limits: &mut crate::record::Limits,
        traffic: bool,
    ) -> Arc<DeviceInfo> {
        let session = self.sessions.get(&mac).and_then(|v| {
            v.iter()
                .rposition(|s| s.start.is_none_or(|t| t <= ts) && s.stop.is_none_or(|t| t >= ts))
        });
        let by_mac = self.mdm_by_mac.get(&mac).copied();
        let by_radius = session.and_then(|i| self.sessions[&mac][i].mdm);
        if traffic {
            let tied = by_mac.or(by_radius);
            if let Some(i) = tied {
                self.mdm_seen[i] = true;
            }
            if let Some(t) = self.seen.get_mut(&mac) {
                *t |= tied.is_some();
            } else if self.seen.len() < self.limits.max_macs {
                self.seen.insert(mac, tied.is_some());
            } else {
                self.count("coverage_macs_over_cap");
            }
        }
        if by_mac.is_none() && by_radius.is_none() {
            if inputs::is_private_mac(mac) {
                limits.push("private_mac_unmapped");
            } else if !self.mdm.is_empty() {
                limits.push("no_mdm_record");
            }
        }
        let generation = self.macs.get(&mac).map_or(0, |m| m.generation);
        let key = (mac, session.map_or(0, |i| i + 1), generation);
        if let Some(i) = self.cache.get(&key) {
            return Arc::clone(i);
        }
        if self.cache.len() >= self.limits.max_macs {
            self.cache.clear();
            self.count("device_cache_cleared");
        }
        let info = DeviceInfo {
            mac: Some(Mac(mac)),
            mac_private: Some(inputs::is_private_mac(mac)),
            hostname: self.macs.get(&mac).and_then(|m| m.hostname.clone()),
            identity: session.map(|i| self.sessions[&mac][i].identity.clone()),
            mdm: by_mac
                .map(|i| (i, "wifi_mac"))
                .or(by_radius.map(|i| (i, "radius_identity")))
                .map(|(i, how)| (Arc::clone(&self.mdm[i]), how)),
        };
        let info = Arc::new(info);
        self.cache.insert(key, Arc::clone(&info));
        info
    }

    /// The device behind `ip` at `ts`; `None` when no evidence ties the
    /// address to a MAC then.
    pub fn resolve(
        &mut self,
        ip: IpAddr,
        ts: Timestamp,
        limits: &mut crate::record::Limits,
    ) -> Option<DeviceObject> {
        let (mac, source) = self.holder(ip, ts)?;
        let info = self.describe(mac, ts, limits, true);
        Some(DeviceObject {
            ip: Some(ip),
            mac_source: Some(source),
            info: Some(info),
        })
    }

    /// The device for a record about a connection: the client's address,
    /// else the server's; with `device_unknown` in `limits` when neither
    /// is tied to a MAC.
    pub fn for_connection(
        &mut self,
        client: IpAddr,
        server: IpAddr,
        ts: Timestamp,
        limits: &mut crate::record::Limits,
    ) -> DeviceObject {
        if let Some(d) = self
            .resolve(client, ts, limits)
            .or_else(|| self.resolve(server, ts, limits))
        {
            return d;
        }
        limits.push("device_unknown");
        self.count("records_without_device");
        DeviceObject {
            ip: Some(client),
            ..DeviceObject::default()
        }
    }

    /// The device a DHCP message is about: its own client MAC.
    pub fn for_mac(
        &mut self,
        mac: [u8; 6],
        ip: Option<IpAddr>,
        ts: Timestamp,
        limits: &mut crate::record::Limits,
    ) -> DeviceObject {
        let info = self.describe(mac, ts, limits, true);
        DeviceObject {
            ip,
            mac_source: Some("frame"),
            info: Some(info),
        }
    }

    /// Device blind spots for the coverage record: MACs behind traffic,
    /// how many are private, private and tied to nothing, without an MDM
    /// record; MDM records no traffic was tied to.
    pub fn coverage(&self) -> DeviceCoverage {
        let mut c = DeviceCoverage {
            macs: self.seen.len() as u64,
            mdm_devices: self.mdm.len() as u64,
            mdm_devices_not_seen: self.mdm_seen.iter().filter(|s| !**s).count() as u64,
            ..DeviceCoverage::default()
        };
        for (mac, tied) in &self.seen {
            let private = inputs::is_private_mac(*mac);
            c.private_macs += u64::from(private);
            c.private_macs_unmapped += u64::from(private && !tied);
            c.macs_without_mdm += u64::from(!tied);
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: [u8; 6] = [0x00, 0x1c, 0xb3, 0x09, 0x85, 0x15];
    const B: [u8; 6] = [0x02, 0x00, 0x5e, 0x10, 0x00, 0x02];

    fn ev(t: u64, mac: [u8; 6], action: Action, source: &'static str) -> Evidence {
        Evidence {
            ts: Timestamp::from_secs(t),
            mac,
            action,
            source,
        }
    }

    fn mac_at(d: &mut Devices, ip: &str, t: u64) -> Option<String> {
        let mut l = crate::record::Limits::new();
        d.resolve(ip.parse().unwrap(), Timestamp::from_secs(t), &mut l)
            .and_then(|o| o.info?.mac.map(|m| m.to_string()))
    }

    #[test]
    fn an_address_moves_between_devices_by_time() {
        let mut d = Devices::new(DeviceLimits::default(), DeviceInputs::default());
        let ip: IpAddr = "192.0.2.50".parse().unwrap();
        let until = |t| Some(Timestamp::from_secs(t));
        let r = d
            .apply(&ev(
                100,
                A,
                Action::Bind {
                    ip,
                    until: until(400),
                },
                "dhcp",
            ))
            .unwrap();
        assert_eq!(
            (r.event, r.previous_mac.map(|m| m.to_string()).as_deref()),
            ("first_seen", None)
        );
        let r = d
            .apply(&ev(200, A, Action::Release { ip }, "dhcp"))
            .unwrap();
        assert_eq!(r.event, "release");
        let r = d
            .apply(&ev(
                300,
                B,
                Action::Bind {
                    ip,
                    until: until(900),
                },
                "dhcp",
            ))
            .unwrap();
        assert_eq!(r.event, "first_seen");
        assert_eq!(mac_at(&mut d, "192.0.2.50", 99), None);
        assert_eq!(
            mac_at(&mut d, "192.0.2.50", 150).as_deref(),
            Some("00:1c:b3:09:85:15")
        );
        assert_eq!(mac_at(&mut d, "192.0.2.50", 250), None);
        assert_eq!(
            mac_at(&mut d, "192.0.2.50", 350).as_deref(),
            Some("02:00:5e:10:00:02")
        );
        assert_eq!(mac_at(&mut d, "192.0.2.50", 901), None, "lease ended");
        // A releases again: not the holder, nothing changes.
        assert!(
            d.apply(&ev(400, A, Action::Release { ip }, "dhcp"))
                .is_none()
        );
        assert_eq!(
            mac_at(&mut d, "192.0.2.50", 450).as_deref(),
            Some("02:00:5e:10:00:02")
        );
        // A takes it over by ARP: a lease change naming the previous MAC.
        let r = d
            .apply(&ev(500, A, Action::Bind { ip, until: None }, "arp"))
            .unwrap();
        assert_eq!(
            (r.event, r.previous_mac.map(|m| m.to_string()).as_deref()),
            ("lease", Some("02:00:5e:10:00:02"))
        );
        // An ARP refresh of the same binding adds nothing.
        assert!(
            d.apply(&ev(600, A, Action::Bind { ip, until: None }, "arp"))
                .is_none()
        );
        assert_eq!(
            mac_at(&mut d, "192.0.2.50", 10_000).as_deref(),
            Some("00:1c:b3:09:85:15")
        );
    }

    #[test]
    fn lease_files_bind_by_their_own_intervals() {
        let ip: IpAddr = "192.0.2.60".parse().unwrap();
        let lease = |mac, start: Option<u64>, end: Option<u64>, source| Lease {
            ip,
            mac: Some(mac),
            start: start.map(Timestamp::from_secs),
            end: end.map(Timestamp::from_secs),
            hostname: None,
            client_id: None,
            source,
        };
        // Out of order in the file: B's later lease first.
        let leases = vec![
            lease(B, Some(2000), Some(3000), "isc_dhcpd"),
            lease(A, Some(1000), Some(1500), "isc_dhcpd"),
        ];
        let mut d = Devices::new(
            DeviceLimits::default(),
            DeviceInputs {
                leases,
                ..DeviceInputs::default()
            },
        );
        assert_eq!(mac_at(&mut d, "192.0.2.60", 999), None);
        assert_eq!(
            mac_at(&mut d, "192.0.2.60", 1200).as_deref(),
            Some("00:1c:b3:09:85:15")
        );
        assert_eq!(mac_at(&mut d, "192.0.2.60", 1600), None, "A's lease ended");
        assert_eq!(
            mac_at(&mut d, "192.0.2.60", 2500).as_deref(),
            Some("02:00:5e:10:00:02")
        );
        let mut l = crate::record::Limits::new();
        let o = d.resolve(ip, Timestamp::from_secs(2500), &mut l).unwrap();
        assert_eq!(o.mac_source, Some("lease_file"));
        // dnsmasq records no start: the lease holds from the beginning.
        let leases = vec![lease(A, None, Some(100), "dnsmasq")];
        let mut d = Devices::new(
            DeviceLimits::default(),
            DeviceInputs {
                leases,
                ..DeviceInputs::default()
            },
        );
        assert_eq!(
            mac_at(&mut d, "192.0.2.60", 0).as_deref(),
            Some("00:1c:b3:09:85:15")
        );
        assert_eq!(mac_at(&mut d, "192.0.2.60", 101), None);
    }

    #[test]
    fn a_new_host_name_shows_on_later_records() {
        let mut d = Devices::new(DeviceLimits::default(), DeviceInputs::default());
        let ip: IpAddr = "192.0.2.53".parse().unwrap();
        d.apply(&ev(1, A, Action::Bind { ip, until: None }, "arp"));
        let host = |d: &mut Devices| {
            let mut l = crate::record::Limits::new();
            d.resolve(ip, Timestamp::from_secs(9), &mut l)
                .unwrap()
                .info
                .unwrap()
                .hostname
                .clone()
        };
        assert_eq!(host(&mut d), None);
        for name in ["iphone-a", "iphone-b", "iphone-a"] {
            d.apply(&ev(2, A, Action::Name(name.into()), "dhcp"));
            assert_eq!(host(&mut d).as_deref(), Some(name));
        }
    }

    #[test]
    fn private_macs_are_never_guessed() {
        let mut d = Devices::new(DeviceLimits::default(), DeviceInputs::default());
        let ip: IpAddr = "192.0.2.51".parse().unwrap();
        d.apply(&ev(1, B, Action::Bind { ip, until: None }, "arp"));
        let mut l = crate::record::Limits::new();
        let o = d.resolve(ip, Timestamp::from_secs(2), &mut l).unwrap();
        assert_eq!(l.as_slice(), ["private_mac_unmapped"]);
        let info = o.info.unwrap();
        assert_eq!((info.mac_private, info.mdm.is_none()), (Some(true), true));
    }

    #[test]
    fn radius_identity_ties_a_private_mac_to_its_device() {
        let mdm = vec![MdmDevice {
            serial: Some("F2LXK0AAHG7F".into()),
            name: Some("Ana's iPhone".into()),
            supervised: Some(true),
            ..MdmDevice::default()
        }];
        let radius = vec![RadiusSession {
            mac: B,
            identity: "host/f2lxk0aahg7f".into(),
            start: Some(Timestamp::from_secs(10)),
            stop: Some(Timestamp::from_secs(20)),
            framed_ip: None,
            session_id: None,
        }];
        let mut d = Devices::new(
            DeviceLimits::default(),
            DeviceInputs {
                radius,
                mdm,
                ..DeviceInputs::default()
            },
        );
        let ip: IpAddr = "192.0.2.52".parse().unwrap();
        d.apply(&ev(5, B, Action::Bind { ip, until: None }, "arp"));
        let mut l = crate::record::Limits::new();
        let o = d.resolve(ip, Timestamp::from_secs(15), &mut l).unwrap();
        let info = o.info.unwrap();
        assert!(l.is_empty(), "{l:?}");
        let (m, how) = info.mdm.as_ref().unwrap();
        assert_eq!(m.serial.as_deref(), Some("F2LXK0AAHG7F"));
        assert_eq!(*how, "radius_identity");
        assert_eq!(info.identity.as_deref(), Some("host/f2lxk0aahg7f"));
        // Outside the session the MAC is unmapped again.
        let mut l = crate::record::Limits::new();
        let o = d.resolve(ip, Timestamp::from_secs(25), &mut l).unwrap();
        assert!(o.info.unwrap().mdm.is_none());
        assert_eq!(l.as_slice(), ["private_mac_unmapped"]);
    }

    #[test]
    fn tables_are_capped_and_count_what_they_refuse() {
        let limits = DeviceLimits {
            max_ips: 2,
            max_bindings_per_ip: 3,
            max_macs: 4,
        };
        let mut d = Devices::new(limits, DeviceInputs::default());
        for i in 0..10u8 {
            let ip = IpAddr::from([192, 0, 2, i]);
            d.apply(&ev(
                u64::from(i),
                [0, 0, 0, 0, 0, i + 1],
                Action::Bind { ip, until: None },
                "arp",
            ));
        }
        let ip: IpAddr = "192.0.2.0".parse().unwrap();
        for t in 0..10u8 {
            d.apply(&ev(
                100 + u64::from(t),
                [0, 0, 0, 0, 1, t],
                Action::Bind { ip, until: None },
                "arp",
            ));
        }
        assert_eq!(d.by_ip.len(), 2);
        assert!(d.by_ip.values().all(|v| v.len() <= 3));
        assert!(d.macs.len() <= 4);
        assert_eq!(d.counters["ips_over_cap"], 8);
        assert!(d.counters["bindings_over_cap"] >= 7);
        assert!(d.counters["macs_over_cap"] > 0);
    }
}
