//! Detections: AN1726 (apps that reject enterprise TLS inspection or pin)
//! and AN1717 (opaque application-layer encrypted channels in the
//! background).
//!
//! The correlator hands every finished connection — its `flow` record
//! joined with its `tls` record, after the device was resolved — to the
//! [`Detector`] as a [`Session`], in an order that does not depend on the
//! number of workers. Sessions are gathered per pattern and key
//! (device, JA4, destination …) into windows that open with the key's first
//! session and close `window_s` later in packet time; a closed window is
//! evaluated once and gives at most one `detection` record, which carries
//! its evidence, score parts, context and limits. Open windows are
//! evaluated at the end of the input. Every table has a cap and a counter.

pub mod admit;
pub mod baseline;
pub mod context;
pub mod evidence;
pub mod fet;
pub mod names;
pub mod patterns;
pub mod proxy;
pub mod rita;

use crate::app::features::PayloadFeatures;
use crate::app::tls::summary::Outcome;
use crate::record::{DeviceObject, FlowRecord, TlsRecord};
use crate::time::{NANOS_PER_SEC, Nanos, Timestamp};
use hashbrown::{HashMap, HashSet};
use names::{Cidr, DomainPattern};
use std::collections::{BTreeMap, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;

/// Thresholds and lists (the `[detections]` and `[inspection]` config).
#[derive(Clone, Debug)]
pub struct DetectSettings {
    pub enabled: bool,
    pub window: Nanos,
    pub rejection_min_handshakes: u32,
    pub bypass_domains: Vec<DomainPattern>,
    pub bypass_min_sessions: u32,
    /// Completed QUIC sessions that make a `destination_bypass` (`via: quic`).
    pub bypass_min_quic_sessions: u32,
    pub bypass_min_inspected_elsewhere: u32,
    pub persistent_min_duration: Nanos,
    pub beacon_min_connections: u32,
    pub beacon_min_score: f64,
    pub background_quiet: Nanos,
    pub opaque_min_payload_bytes: u32,
    pub opaque_min_entropy_ratio: f64,
    pub os_channel_ports: Vec<u16>,
    pub os_channel_cidrs: Vec<Cidr>,
    pub os_channel_domains: Vec<DomainPattern>,
    pub proxy_addresses: Vec<Cidr>,
    pub proxy_ja3s: Vec<String>,
    pub proxy_learn_destinations: u32,
    /// Registrable domains a non-public CA must sign for to be learnt as an
    /// inspection CA (0: never learn).
    pub learn_ca_domains: usize,
    /// CAs trusted as public besides Mozilla's (subject, key id), from
    /// `inspection.public_ca_files`: never learnt as inspection CAs.
    pub public_cas: Vec<(String, Option<String>)>,
    /// Some inspection CA is configured (else nothing can be seen inspected
    /// and no bypass can be told).
    pub inspection_configured: bool,
    pub min_score: u8,
    pub max_keys: usize,
    pub max_sessions_per_key: usize,
    pub max_flow_ids: usize,
}

impl Default for DetectSettings {
    fn default() -> Self {
        let domains = |l: &[&str]| {
            l.iter()
                .map(|d| DomainPattern::parse(d).expect("valid"))
                .collect()
        };
        DetectSettings {
            enabled: true,
            window: 3600 * NANOS_PER_SEC,
            rejection_min_handshakes: 3,
            bypass_domains: Vec::new(),
            bypass_min_sessions: 3,
            bypass_min_quic_sessions: 1,
            bypass_min_inspected_elsewhere: 3,
            persistent_min_duration: 600 * NANOS_PER_SEC,
            beacon_min_connections: 6,
            beacon_min_score: 0.8,
            background_quiet: 60 * NANOS_PER_SEC,
            opaque_min_payload_bytes: 32,
            opaque_min_entropy_ratio: 0.9,
            os_channel_ports: vec![5223],
            os_channel_cidrs: vec![Cidr::parse("17.0.0.0/8").expect("valid")],
            os_channel_domains: domains(&["*.push.apple.com", "*.push-apple.com.akadns.net"]),
            proxy_addresses: Vec::new(),
            proxy_ja3s: Vec::new(),
            proxy_learn_destinations: 5,
            learn_ca_domains: 5,
            public_cas: Vec::new(),
            inspection_configured: false,
            min_score: 0,
            max_keys: 100_000,
            max_sessions_per_key: 512,
            max_flow_ids: 64,
        }
    }
}

/// The connection's 5-tuple and VLANs (also what `--evidence` looks for).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Tuple {
    pub src_ip: IpAddr,
    pub src_port: u16,
    pub dst_ip: IpAddr,
    pub dst_port: u16,
    pub proto: &'static str,
    pub vlan: Vec<u16>,
}

/// What the TLS record says, for the detections (serde: fleet mode sends
/// it to `correlate`, `fleet/wire.rs`).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct TlsFacts {
    /// Lower case, without a final dot: the record's own when it is so.
    pub sni: Option<Arc<str>>,
    /// Host of the HTTP CONNECT that opened the tunnel (explicit proxy).
    pub connect_host: Option<String>,
    /// Shared with the `tls` record (no copy per session).
    pub ja4: Option<Arc<str>>,
    pub ja3s: Option<Arc<str>>,
    pub outcome: Outcome,
    /// Descriptions of the client's cleartext alerts.
    pub client_alerts: Vec<u8>,
    /// The client's alert was protected (TLS 1.3): its description is hidden.
    pub client_alert_hidden: bool,
    pub inspected: Option<bool>,
    pub inspection_ca: Option<String>,
    /// The chain's CA is learnt, not configured.
    pub inspection_learnt: bool,
    /// The chain's CA when it is outside the public roots (a key into
    /// [`Detector::learner`]): learnt later, it still tells.
    pub private_ca: Option<u64>,
    pub ech: bool,
}

/// One finished connection: its flow record joined with its TLS record.
#[derive(Clone, Debug)]
pub struct Session {
    pub ts: Timestamp,
    pub end_ts: Timestamp,
    /// When it enters the detector: [`admit::order_time`].
    pub order: Timestamp,
    pub flow_id: crate::record::FlowId,
    pub community_id: Arc<str>,
    pub tuple: Tuple,
    pub device: DeviceObject,
    pub limits: crate::record::Limits,
    pub service: Option<&'static str>,
    pub orig_payload: u64,
    pub resp_payload: u64,
    pub first_payload: [Option<PayloadFeatures>; 2],
    pub tls: Option<TlsFacts>,
    /// The name the device resolved the server address to (passive DNS).
    pub dns_name: Option<std::sync::Arc<str>>,
    /// The inspecting proxy's log entry joined to it (`--proxy-log`).
    pub proxy: Option<crate::correlate::proxylog::ProxyCite>,
}

/// A destination name as keys use it: lower case, no trailing dot.
pub fn normal_name(n: &str) -> String {
    n.trim_end_matches('.').to_ascii_lowercase()
}

/// The host of a CONNECT target (`host:port`, `[v6]:port`), as a name.
pub fn connect_host(target: &str) -> String {
    let host = match target.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => target,
    };
    normal_name(host.trim_start_matches('[').trim_end_matches(']'))
}

/// How detections and baselines key a destination: the SNI, else the
/// CONNECT host, else `ip:port` (`[v6]:port`). Both must agree, or a
/// baseline would never be found.
pub fn destination_key(name: Option<&str>, ip: IpAddr, port: u16) -> String {
    let mut k = String::with_capacity(48);
    push_destination_key(&mut k, name, ip, port);
    k
}

/// Appends [`destination_key`] to `k`.
fn push_destination_key(k: &mut String, name: Option<&str>, ip: IpAddr, port: u16) {
    if let Some(n) = name {
        k.push_str(n);
        return;
    }
    if ip.is_ipv6() {
        k.push('[');
        push_ip(k, ip);
        k.push(']');
    } else {
        push_ip(k, ip);
    }
    k.push(':');
    k.push_str(itoa::Buffer::new().format(port));
}

/// An address as `Display` writes it; IPv4 without the formatting
/// machinery (every session makes keys from addresses).
fn push_ip(k: &mut String, ip: IpAddr) {
    match ip {
        IpAddr::V4(a) => {
            for (i, o) in a.octets().into_iter().enumerate() {
                if i > 0 {
                    k.push('.');
                }
                k.push_str(itoa::Buffer::new().format(o));
            }
        }
        IpAddr::V6(a) => {
            use std::fmt::Write;
            let _ = write!(k, "{a}");
        }
    }
}

impl TlsFacts {
    pub fn new(t: &TlsRecord) -> TlsFacts {
        TlsFacts {
            sni: t.sni.as_ref().map(|s| {
                if s.ends_with('.') || s.bytes().any(|b| b.is_ascii_uppercase()) {
                    Arc::from(s.trim_end_matches('.').to_ascii_lowercase())
                } else {
                    Arc::clone(s)
                }
            }),
            connect_host: t.proxy_connect.as_ref().map(|c| {
                let host = match c.rsplit_once(':') {
                    Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => h,
                    _ => c.as_str(),
                };
                host.trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_ascii_lowercase()
            }),
            ja4: t.ja4.clone(),
            ja3s: t.ja3s.clone(),
            outcome: t.outcome,
            client_alerts: t
                .alerts
                .iter()
                .filter(|a| a.from == "client")
                .filter_map(|a| a.description)
                .collect(),
            client_alert_hidden: t
                .alerts
                .iter()
                .any(|a| a.from == "client" && a.description.is_none()),
            inspected: t.inspected,
            inspection_ca: t.inspection_ca.clone(),
            inspection_learnt: t.inspection_source == Some("learnt"),
            private_ca: None,
            ech: t.ech,
        }
    }
}

impl Session {
    /// `tls`: the facts of the flow's TLS record and that record's limits.
    pub fn new(f: &FlowRecord, tls: Option<(TlsFacts, crate::record::Limits)>) -> Session {
        let mut limits = f.limits.clone();
        let tls = tls.map(|(t, l)| {
            for l in l {
                crate::record::add_limit(&mut limits, l);
            }
            t
        });
        Session {
            ts: f.ts,
            end_ts: f.end_ts,
            order: admit::order_time(f.ts, f.ended),
            flow_id: f.flow_id,
            community_id: f.community_id.clone(),
            tuple: Tuple {
                src_ip: f.src_ip,
                src_port: f.src_port,
                dst_ip: f.dst_ip,
                dst_port: f.dst_port,
                proto: f.proto,
                vlan: f.vlan.clone(),
            },
            device: f.device.clone(),
            limits,
            service: f.service,
            orig_payload: f.orig.payload_bytes,
            resp_payload: f.resp.payload_bytes,
            first_payload: [f.orig.first_payload, f.resp.first_payload],
            tls,
            dns_name: f.destination.name.clone(),
            proxy: None,
        }
    }

    /// The name a detection shows, and where it came from: the SNI, else
    /// the CONNECT host, else the device's own DNS lookup of the address.
    pub fn shown_name(&self) -> Option<(&str, &'static str)> {
        let t = self.tls.as_ref();
        t.and_then(|t| t.sni.as_deref().map(|n| (n, "sni")))
            .or_else(|| t.and_then(|t| t.connect_host.as_deref().map(|n| (n, "connect"))))
            .or_else(|| self.dns_name.as_deref().map(|n| (n, "dns")))
    }

    /// The destination's name: the SNI, else the CONNECT host.
    pub fn name(&self) -> Option<&str> {
        let t = self.tls.as_ref()?;
        t.sni.as_deref().or(t.connect_host.as_deref())
    }

    /// Appends how detections name the device (its MAC, else its
    /// address) to `k`.
    fn push_device_key(&self, k: &mut String) {
        match self.device.info.as_ref().and_then(|i| i.mac) {
            Some(m) => m.push_to(k),
            None => {
                k.push_str("ip:");
                push_ip(k, self.device.ip.unwrap_or(self.tuple.src_ip));
            }
        }
    }

    /// Appends the destination's key ([`destination_key`] of its name) to `k`.
    fn push_dest_key(&self, k: &mut String) {
        push_destination_key(k, self.name(), self.tuple.dst_ip, self.tuple.dst_port);
    }

    pub fn duration(&self) -> Nanos {
        self.end_ts.since(self.ts)
    }
}

/// The patterns, in the order their detections are named.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Pattern {
    RepeatedHandshakeRejection,
    DestinationBypass,
    OpaquePersistentSession,
    BackgroundTransmission,
    OpaqueEncryptedChannel,
}

impl Pattern {
    pub fn name(self) -> &'static str {
        match self {
            Pattern::RepeatedHandshakeRejection => "repeated_handshake_rejection",
            Pattern::DestinationBypass => "destination_bypass",
            Pattern::OpaquePersistentSession => "opaque_persistent_session",
            Pattern::BackgroundTransmission => "background_transmission",
            Pattern::OpaqueEncryptedChannel => "opaque_encrypted_channel",
        }
    }

    pub fn analytic(self) -> &'static str {
        match self {
            Pattern::BackgroundTransmission | Pattern::OpaqueEncryptedChannel => "AN1717",
            _ => "AN1726",
        }
    }
}

/// Was the session inspected, and how is that known?
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Inspection {
    /// The chain holds (or was issued by) a configured inspection CA.
    Ca,
    /// Chain hidden; the server address is a configured proxy address.
    ProxyAddress,
    /// Chain hidden; the ServerHello fingerprint (JA3S) is the proxy's.
    ProxyFingerprint,
    /// The chain's CA was learnt as an inspection CA (no configuration).
    LearntCa,
    /// The chain was seen and no inspection CA is in it.
    NotInspected,
    /// The chain was hidden (TLS 1.3) and nothing else tells.
    Unknown,
    /// Chain hidden; the proxy's own log says it intercepted the session.
    ProxyLog,
}

impl Inspection {
    pub fn name(self) -> &'static str {
        match self {
            Inspection::Ca => "inspection_ca",
            Inspection::ProxyAddress => "proxy_address",
            Inspection::ProxyFingerprint => "proxy_fingerprint",
            Inspection::LearntCa => "learnt_ca",
            Inspection::NotInspected => "not_inspected",
            Inspection::Unknown => "unknown",
            Inspection::ProxyLog => "proxy_log",
        }
    }

    pub fn inspected(self) -> bool {
        matches!(
            self,
            Inspection::Ca
                | Inspection::ProxyAddress
                | Inspection::ProxyFingerprint
                | Inspection::LearntCa
                | Inspection::ProxyLog
        )
    }
}

/// One session inside a window.
#[derive(Clone, Debug)]
pub struct Entry {
    pub ts: Timestamp,
    pub end_ts: Timestamp,
    pub flow_id: crate::record::FlowId,
    pub community_id: Arc<str>,
    pub tuple: Tuple,
    pub outcome: Option<Outcome>,
    pub client_alerts: Vec<u8>,
    pub client_alert_hidden: bool,
    /// Inspection as known when the session ended (a proxy fingerprint
    /// learned later is applied when the window is evaluated).
    pub inspection: Option<Inspection>,
    /// Only for a hidden chain of unknown inspection (a proxy fingerprint
    /// learnt later may still tell).
    pub ja3s: Option<Arc<str>>,
    /// Only for a chain of a non-public CA not (yet) learnt.
    pub private_ca: Option<u64>,
    pub orig_payload: u64,
    pub resp_payload: u64,
    pub first_payload: [Option<PayloadFeatures>; 2],
    /// The proxy's log entry joined to the session.
    pub proxy: Option<crate::correlate::proxylog::ProxyCite>,
}

/// A key's open window.
#[derive(Clone)]
pub struct Window {
    pub id: u64,
    pub pattern: Pattern,
    pub key: String,
    pub start: Timestamp,
    pub device: DeviceObject,
    pub device_key: String,
    pub dest_key: String,
    pub name: Option<String>,
    /// `sni`, `connect` or `dns`.
    pub name_source: Option<&'static str>,
    pub sni: Option<Arc<str>>,
    pub dst: (IpAddr, u16),
    pub via_proxy: bool,
    pub ja4: Option<Arc<str>>,
    pub entries: Vec<Entry>,
    /// Sessions in the window (also those past the entry cap).
    pub sessions: u64,
    pub limits: crate::record::Limits,
    /// Live: the last `open` detection written for it (when, and the
    /// sessions it counted), and whether an update waits in `open_due`.
    pub open: Option<(Timestamp, u64)>,
    pub open_due: bool,
}

/// Live: an open detection is updated at most this often while its
/// evidence grows.
pub const OPEN_UPDATE: Nanos = 60 * NANOS_PER_SEC;

/// What `--evidence` must cut out of the input for one detection.
#[derive(Clone, Debug)]
pub struct EvidenceWant {
    pub file: String,
    pub flows: Vec<(Tuple, Timestamp, Timestamp)>,
}

/// Most recent connection starts remembered per device (for the inferred
/// background state).
const ACTIVITY_PER_DEVICE: usize = 256;
/// Most destinations remembered per device or per (device, JA4).
const DESTS_PER_DEVICE: usize = 256;

pub struct Detector {
    pub s: Arc<DetectSettings>,
    pub apps: context::Apps,
    pub baseline: Option<Arc<baseline::Baseline>>,
    windows: HashMap<(Pattern, String), Window>,
    deadlines: BTreeMap<(Timestamp, u64), (Pattern, String)>,
    next_id: u64,
    /// (device, JA4) → destinations it completed handshakes with.
    established: HashMap<u64, HashSet<u64>>,
    /// device → destination → inspected sessions.
    inspected: HashMap<u64, HashMap<u64, u32>>,
    /// device → recent (connection start, destination hash).
    activity: HashMap<String, VecDeque<(Timestamp, u64)>>,
    /// JA3S → destinations whose chain showed an inspection CA with it.
    ja3s_seen: HashMap<String, HashSet<u64>>,
    /// TLS 1.3 JA3S (chain hidden) → destinations of devices whose other
    /// sessions were inspected: the transparent proxy answers them all
    /// with one ServerHello shape.
    ja3s13_seen: HashMap<String, HashSet<u64>>,
    /// Inspection CAs learnt from the chains (the correlator feeds it).
    pub learner: crate::correlate::inspection::Learner,
    /// On its own thread (`run::detector`): the keys of the CAs the
    /// correlator's learner had learnt at this point of the stream, used
    /// in place of `learner`.
    pub learnt_keys: Option<Vec<u64>>,
    /// Fleet mode: proxy fingerprints (TLS 1.3?, JA3S) whose destinations
    /// grew since [`Detector::take_proxy_changes`]; `None`: not tracked.
    proxy_changes: Option<HashSet<(bool, String)>>,
    pub counters: crate::record::Counts,
    /// The device's and the destination's key of the session being added,
    /// kept between sessions (no allocation per session).
    dev_key: String,
    dest_key: String,
    /// `--evidence`: detections' flows to cut out after the replay.
    pub evidence: bool,
    pub wants: Vec<EvidenceWant>,
    /// Scratch for [`sort_sessions`], kept between chunks.
    order: Vec<u32>,
    /// Sessions waiting for their turn (see [`admit`]), and a reused
    /// buffer for the ones let in.
    admit: admit::Admission,
    ready: Vec<Session>,
    /// Sensor mode: a window that reaches its threshold writes an `open`
    /// detection at once and updates it (replay writes closed ones only).
    pub live: bool,
    /// Live: windows whose `open` detection is due an update, by when.
    open_due: BTreeMap<(Timestamp, u64), (Pattern, String)>,
    /// Live: `open` detections written while sessions were added.
    opened: Vec<crate::record::DetectionRecord>,
    /// Scratch for the key of the window a session joins.
    key: String,
}

/// Ports of the infrastructure a device talks to on its own, whatever its
/// user does: DNS, DHCP, NTP, DHCPv6, DNS over TLS/QUIC, SSDP, mDNS, LLMNR.
const INFRASTRUCTURE_PORTS: [u16; 10] = [53, 67, 68, 123, 546, 547, 853, 1900, 5353, 5355];

/// Traffic no user action makes: name resolution, address configuration,
/// time, discovery, multicast and broadcast, and what is neither TCP nor
/// UDP (ICMP). It neither counts as the device being in use (the inferred
/// background state) nor is a background transmission.
fn infrastructure(s: &Session) -> bool {
    matches!(
        s.service,
        Some("dns" | "dhcp" | "dhcpv6" | "ntp" | "dot" | "doq")
    ) || s.tuple.proto == "other"
        || INFRASTRUCTURE_PORTS.contains(&s.tuple.dst_port)
        || match s.tuple.dst_ip {
            IpAddr::V4(a) => a.is_multicast() || a.is_broadcast(),
            IpAddr::V6(a) => a.is_multicast(),
        }
}

/// A QUIC session: UDP with a `tls` record (its hellos were in the Initials).
pub fn is_quic(proto: &str, tls: bool) -> bool {
    proto == "udp" && tls
}

/// The TLS handshake failed: no application data passed.
fn failed_handshake(s: &Session) -> bool {
    s.tls
        .as_ref()
        .is_some_and(|t| !matches!(t.outcome, Outcome::Established | Outcome::Incomplete))
}

/// A session as its window keeps it.
fn entry(s: &Session, inspection: Option<Inspection>) -> Entry {
    let t = s.tls.as_ref();
    Entry {
        ts: s.ts,
        end_ts: s.end_ts,
        flow_id: s.flow_id,
        community_id: s.community_id.clone(),
        tuple: s.tuple.clone(),
        outcome: t.map(|t| t.outcome),
        client_alerts: t.map(|t| t.client_alerts.clone()).unwrap_or_default(),
        client_alert_hidden: t.is_some_and(|t| t.client_alert_hidden),
        inspection,
        ja3s: t
            .filter(|_| inspection == Some(Inspection::Unknown))
            .and_then(|t| t.ja3s.clone()),
        private_ca: t
            .filter(|_| inspection == Some(Inspection::NotInspected))
            .and_then(|t| t.private_ca),
        orig_payload: s.orig_payload,
        resp_payload: s.resp_payload,
        first_payload: s.first_payload,
        proxy: s.proxy.clone(),
    }
}

/// Sorts sessions by (order time, flow id), stably, without moving a session
/// more than once: the sort runs on indices, then the permutation is applied
/// by swaps along its cycles. Sorting the sessions themselves moved each
/// several hundred bytes many times, and the stable sort's scratch buffer of
/// sessions was megabytes of fresh pages per chunk.
fn sort_sessions(sessions: &mut [Session], order: &mut Vec<u32>) {
    order.clear();
    order.extend(0..sessions.len() as u32);
    order.sort_by(|&a, &b| {
        let (a, b) = (&sessions[a as usize], &sessions[b as usize]);
        (a.order, &a.flow_id).cmp(&(b.order, &b.flow_id))
    });
    // Position j takes the session at order[j]; a visited position is
    // marked by order[j] == j.
    for i in 0..order.len() {
        let mut j = i;
        loop {
            let k = order[j] as usize;
            order[j] = j as u32;
            if k == i {
                break;
            }
            sessions.swap(j, k);
            j = k;
        }
    }
}

/// Fleet mode: notes a proxy fingerprint that changed.
fn note_change(changes: &mut Option<HashSet<(bool, String)>>, tls13: bool, ja3s: &str) {
    if let Some(ch) = changes {
        ch.insert((tls13, ja3s.to_string()));
    }
}

/// A window's key, its parts joined by spaces, written into `k`.
fn key_of(k: &mut String, parts: &[&str]) {
    k.clear();
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            k.push(' ');
        }
        k.push_str(p);
    }
}

/// A window's key as a lookup borrows it: hashes as `(Pattern, String)`
/// does (a tuple hashes its fields in turn, a `String` as its `str`), so
/// a session that joins an open window allocates no key.
#[derive(Hash)]
struct KeyRef<'a>(Pattern, &'a str);

impl hashbrown::Equivalent<(Pattern, String)> for KeyRef<'_> {
    fn equivalent(&self, k: &(Pattern, String)) -> bool {
        self.0 == k.0 && self.1 == k.1
    }
}

/// A hasher with fixed keys: the same bytes hash the same in every run
/// (foldhash: SipHash, the standard library's, was a few per cent of the
/// detector's and the correlator's time).
pub(crate) fn fixed_hasher() -> foldhash::fast::FoldHasher<'static> {
    use std::hash::BuildHasher;
    foldhash::fast::FixedState::with_seed(0x626c_696e_6473_706f).build_hasher()
}

fn hash_str(s: &str) -> u64 {
    use std::hash::Hasher;
    let mut h = fixed_hasher();
    h.write(s.as_bytes());
    h.finish()
}

fn hash_pair(a: &str, b: &str) -> u64 {
    hash_str(a)
        ^ hash_str(b)
            .rotate_left(17)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

impl Detector {
    pub fn new(
        s: Arc<DetectSettings>,
        apps: context::Apps,
        baseline: Option<Arc<baseline::Baseline>>,
        evidence: bool,
    ) -> Self {
        let learn_ca_domains = s.learn_ca_domains;
        let public_cas = s.public_cas.clone();
        Detector {
            s,
            apps,
            baseline,
            windows: HashMap::new(),
            deadlines: BTreeMap::new(),
            next_id: 0,
            established: HashMap::new(),
            inspected: HashMap::new(),
            activity: HashMap::new(),
            ja3s_seen: HashMap::new(),
            ja3s13_seen: HashMap::new(),
            learner: crate::correlate::inspection::Learner::new(learn_ca_domains, public_cas),
            learnt_keys: None,
            proxy_changes: None,
            counters: Default::default(),
            dev_key: String::new(),
            dest_key: String::new(),
            evidence,
            wants: Vec::new(),
            order: Vec::new(),
            admit: admit::Admission::default(),
            ready: Vec::new(),
            live: false,
            open_due: BTreeMap::new(),
            opened: Vec::new(),
            key: String::new(),
        }
    }

    fn count(&mut self, k: &'static str) {
        *self.counters.entry(k).or_default() += 1;
    }

    /// Inspection state of a TLS session as far as the session itself tells.
    fn inspection_of(&self, s: &Session, t: &TlsFacts) -> Inspection {
        match t.inspected {
            Some(true) if t.inspection_learnt => Inspection::LearntCa,
            Some(true) => Inspection::Ca,
            Some(false) => Inspection::NotInspected,
            None if self
                .s
                .proxy_addresses
                .iter()
                .any(|c| c.contains(s.tuple.dst_ip)) =>
            {
                Inspection::ProxyAddress
            }
            None if t.ja3s.as_ref().is_some_and(|j| self.proxy_ja3s(j)) => {
                Inspection::ProxyFingerprint
            }
            None if s
                .proxy
                .as_ref()
                .is_some_and(|p| p.intercepted == Some(true)) =>
            {
                Inspection::ProxyLog
            }
            None => Inspection::Unknown,
        }
    }

    /// Is this JA3S the inspection proxy's (configured, or learned from
    /// chains with an inspection CA across enough destinations)?
    pub fn proxy_ja3s(&self, ja3s: &str) -> bool {
        let learnt = |m: &HashMap<String, HashSet<u64>>| {
            m.get(ja3s)
                .is_some_and(|d| d.len() as u32 >= self.s.proxy_learn_destinations)
        };
        self.s.proxy_ja3s.iter().any(|j| j == ja3s)
            || learnt(&self.ja3s_seen)
            || learnt(&self.ja3s13_seen)
    }

    /// Fleet mode (`fleet/state.rs`): from now on, note the proxy
    /// fingerprints and CA candidates that change.
    pub fn track_changes(&mut self) {
        self.track_proxy_changes();
        self.learner.track_changes();
    }

    /// The proxy fingerprints' part of [`Detector::track_changes`].
    pub fn track_proxy_changes(&mut self) {
        self.proxy_changes.get_or_insert_with(Default::default);
    }

    /// The proxy fingerprints whose destinations grew since the last call:
    /// (TLS 1.3?, JA3S, destination hashes).
    pub fn take_proxy_changes(&mut self) -> Vec<(bool, String, Vec<u64>)> {
        let Some(ch) = &mut self.proxy_changes else {
            return Vec::new();
        };
        let keys: Vec<_> = ch.drain().collect();
        keys.into_iter()
            .filter_map(|(tls13, j)| {
                let m = if tls13 {
                    &self.ja3s13_seen
                } else {
                    &self.ja3s_seen
                };
                let d = m.get(&j)?;
                Some((tls13, j, d.iter().copied().collect()))
            })
            .collect()
    }

    /// What the fleet saw of a proxy fingerprint: its destinations join
    /// this detector's (at most as many as a sensor keeps, within
    /// `detections.max_keys` fingerprints).
    pub fn seed_proxy(&mut self, tls13: bool, ja3s: &str, dests: &[u64]) {
        let max_keys = self.s.max_keys;
        let m = if tls13 {
            &mut self.ja3s13_seen
        } else {
            &mut self.ja3s_seen
        };
        if !m.contains_key(ja3s) && m.len() >= max_keys {
            return;
        }
        let set = m.entry(ja3s.to_string()).or_default();
        for &d in dests {
            if set.len() >= DESTS_PER_DEVICE {
                break;
            }
            set.insert(d);
        }
    }

    /// Was the session's chain signed by a CA learnt since it ended?
    pub fn learnt_ca(&self, key: Option<u64>) -> bool {
        key.is_some_and(|k| match &self.learnt_keys {
            Some(keys) => keys.binary_search(&k).is_ok(),
            None => self.learner.is_learnt(k),
        })
    }

    /// Is this an OS-level channel (Apple push by default)?
    fn os_channel(&self, s: &Session) -> bool {
        let t = &s.tuple;
        self.s.os_channel_ports.contains(&t.dst_port)
            || (t.dst_port == 443 && self.s.os_channel_cidrs.iter().any(|c| c.contains(t.dst_ip)))
            || s.name()
                .is_some_and(|n| names::any_matches(&self.s.os_channel_domains, n))
    }

    /// Holds one chunk's sessions until [`Detector::release`] lets them
    /// in, in the order [`admit`] describes; returns the detections of the
    /// windows closed by sessions that entered at once (late, or pushed
    /// out of a full buffer). `sessions` is left empty.
    pub fn hold(&mut self, sessions: &mut Vec<Session>) -> Vec<crate::record::DetectionRecord> {
        if !self.s.enabled {
            sessions.clear();
            return Vec::new();
        }
        // A connection that carried no payload and no TLS enters no window
        // and marks no activity (see `add`): it is counted, never held, so
        // a SYN flood or a scan does not fill the buffer.
        let mut os_channel = 0;
        sessions.retain(|s| {
            let inert = s.tls.is_none() && s.orig_payload + s.resp_payload == 0;
            os_channel += u64::from(inert && self.os_channel(s));
            !inert
        });
        if os_channel > 0 {
            *self.counters.entry("os_channel_sessions").or_default() += os_channel;
        }
        let mut now = std::mem::take(&mut self.ready);
        self.admit.hold(sessions, &mut now);
        for (k, n) in [
            ("order_held_over_cap", self.admit.over_cap),
            ("order_late", self.admit.late),
        ] {
            if n > 0 {
                self.counters.insert(k, n);
            }
        }
        let out = self.push(&mut now);
        self.ready = now;
        out
    }

    /// Lets in the held sessions whose order time is before `horizon`
    /// ([`admit::horizon`]: no session still to come is earlier).
    /// They come out of the buffer in the order [`Detector::push`] sorts
    /// sessions in, and each enters from its slot in the buffer: a session
    /// is several hundred bytes, and moving it out through a list cost the
    /// detector a fifth of its time.
    pub fn release(&mut self, horizon: Timestamp) -> Vec<crate::record::DetectionRecord> {
        let mut out = Vec::new();
        // Out of `self` while its sessions enter (they do not touch it).
        let mut admit = std::mem::replace(&mut self.admit, admit::Admission::new(1));
        while let Some(slot) = admit.first_before(horizon) {
            if let Some(s) = admit.session(slot).filter(|_| self.s.enabled) {
                self.enter_session(s, &mut out);
            }
            admit.done(slot);
        }
        admit.passed(horizon);
        self.admit = admit;
        out
    }

    /// Sessions held for their turn.
    pub fn held(&self) -> usize {
        self.admit.len()
    }

    /// Adds sessions now (any order: they are sorted here by order time
    /// and flow id) and returns the detections of the windows they closed.
    /// `sessions` is left empty, its capacity kept for the next chunk.
    pub fn push(&mut self, sessions: &mut Vec<Session>) -> Vec<crate::record::DetectionRecord> {
        if !self.s.enabled {
            sessions.clear();
            return Vec::new();
        }
        sort_sessions(sessions, &mut self.order);
        let mut out = Vec::new();
        for s in sessions.iter() {
            self.enter_session(s, &mut out);
        }
        sessions.clear();
        out
    }

    /// One session in its turn: the windows whose time has passed close
    /// before it is added.
    fn enter_session(&mut self, s: &Session, out: &mut Vec<crate::record::DetectionRecord>) {
        self.close_until(s.order, out);
        self.add(s);
        out.append(&mut self.opened);
    }

    /// Live: writes the `open` detections whose update is due by `now`.
    pub fn advance_open(&mut self, now: Timestamp) -> Vec<crate::record::DetectionRecord> {
        while let Some((&(due, _), _)) = self.open_due.first_key_value() {
            if due > now {
                break;
            }
            let Some((_, key)) = self.open_due.pop_first() else {
                break;
            };
            if let Some(w) = self.windows.get_mut(&key) {
                w.open_due = false;
                self.write_open(&key, now);
            }
        }
        std::mem::take(&mut self.opened)
    }

    /// Live: a session joined window `key` at `now`. Until the window has
    /// fired it is evaluated at once (a copy of it: the window stays
    /// open); after that at most every [`OPEN_UPDATE`].
    fn touch_open(&mut self, key: &(Pattern, String), now: Timestamp) {
        let Some(w) = self.windows.get_mut(key) else {
            return;
        };
        match w.open {
            Some((at, _)) if now.since(at) < OPEN_UPDATE => {
                if !w.open_due {
                    w.open_due = true;
                    let due = Timestamp(at.0.saturating_add(OPEN_UPDATE));
                    self.open_due.insert((due, w.id), key.clone());
                }
            }
            _ => self.write_open(key, now),
        }
    }

    /// Evaluates a copy of window `key`; an `open` detection if it fires
    /// and has grown since the last one.
    fn write_open(&mut self, key: &(Pattern, String), now: Timestamp) {
        let Some(w) = self.windows.get(key) else {
            return;
        };
        let sessions = w.sessions;
        if w.open.is_some_and(|(_, n)| n == sessions) {
            return;
        }
        let copy = w.clone();
        if let Some(mut d) = patterns::evaluate(self, copy, false) {
            d.status = "open";
            self.opened.push(d);
            if let Some(w) = self.windows.get_mut(key) {
                w.open = Some((now, sessions));
            }
        }
    }

    /// Evaluates the windows that closed before `now` (live capture, where
    /// the wall clock moves on without sessions), and no later than the
    /// sessions let in: a held session may still join them.
    pub fn advance(&mut self, now: Timestamp) -> Vec<crate::record::DetectionRecord> {
        let mut out = Vec::new();
        if self.s.enabled {
            self.close_until(now.min(self.admit.floor()), &mut out);
        }
        out
    }

    /// Lets in every held session, then evaluates every open window (end
    /// of input), in a fixed order.
    pub fn finish(&mut self) -> Vec<crate::record::DetectionRecord> {
        let mut out = self.release(Timestamp(u64::MAX));
        self.close_until(Timestamp(u64::MAX), &mut out);
        out
    }

    fn close_until(&mut self, now: Timestamp, out: &mut Vec<crate::record::DetectionRecord>) {
        while let Some((&(deadline, _), _)) = self.deadlines.first_key_value() {
            if deadline > now && now != Timestamp(u64::MAX) {
                break;
            }
            let Some((_, key)) = self.deadlines.pop_first() else {
                break;
            };
            if let Some(w) = self.windows.remove(&key) {
                if w.open_due {
                    self.open_due.remove(&(
                        Timestamp(w.open.map_or(0, |(at, _)| at.0).saturating_add(OPEN_UPDATE)),
                        w.id,
                    ));
                }
                if let Some(d) = patterns::evaluate(self, w, true) {
                    out.push(d);
                }
            }
        }
    }

    /// Takes a session into its windows, its device's and destination's
    /// keys made in buffers kept from session to session.
    fn add(&mut self, s: &Session) {
        let (mut dev, mut dest) = (
            std::mem::take(&mut self.dev_key),
            std::mem::take(&mut self.dest_key),
        );
        dev.clear();
        dest.clear();
        s.push_device_key(&mut dev);
        s.push_dest_key(&mut dest);
        self.add_keyed(s, &dev, &dest);
        (self.dev_key, self.dest_key) = (dev, dest);
    }

    fn add_keyed(&mut self, s: &Session, dev: &str, dest: &str) {
        let dest_hash = hash_str(dest);
        let infrastructure = infrastructure(s);
        // A connection that carried no payload transmitted nothing (a SYN
        // flood would otherwise open a window per spoofed source); one
        // whose handshake failed carried no application data.
        let transmitted = s.orig_payload + s.resp_payload > 0 && !failed_handshake(s);
        let os_channel = self.os_channel(s);
        // Device activity, for the inferred background state: only what a
        // user's action makes (see `infrastructure`).
        if !(infrastructure || os_channel || !transmitted) {
            let full = self.activity.len() >= self.s.max_keys;
            match self.activity.get_mut(dev) {
                Some(a) => {
                    let forgot = a.len() == ACTIVITY_PER_DEVICE;
                    if forgot {
                        a.pop_front();
                    }
                    a.push_back((s.ts, dest_hash));
                    if forgot {
                        self.count("activity_forgotten");
                    }
                }
                None if !full => {
                    self.activity
                        .insert(dev.to_string(), VecDeque::from([(s.ts, dest_hash)]));
                }
                None => self.count("activity_devices_over_cap"),
            }
        }
        if os_channel {
            self.count("os_channel_sessions");
            return;
        }
        let mut inspection = None;
        if let Some(t) = &s.tls {
            let i = self.inspection_of(s, t);
            inspection = Some(i);
            let ja4 = t.ja4.as_deref().unwrap_or_default();
            // Device-level facts are kept by hash (no allocation per
            // session), at most `max_keys` devices and 256 destinations each.
            let max_keys = self.s.max_keys;
            let full = |n: usize| n >= max_keys;
            if t.outcome == Outcome::Established {
                let k = hash_pair(dev, ja4);
                let n = self.established.len();
                match self.established.get_mut(&k) {
                    Some(e) if e.len() < DESTS_PER_DEVICE => {
                        e.insert(dest_hash);
                    }
                    Some(_) => {}
                    None if !full(n) => {
                        self.established.insert(k, HashSet::from_iter([dest_hash]));
                    }
                    None => self.count("devices_over_cap"),
                }
            }
            if i.inspected() {
                let k = hash_str(dev);
                let n = self.inspected.len();
                match self.inspected.get_mut(&k) {
                    Some(m) => {
                        if let Some(c) = m.get_mut(&dest_hash) {
                            *c += 1;
                        } else if m.len() < DESTS_PER_DEVICE {
                            m.insert(dest_hash, 1);
                        }
                    }
                    None if !full(n) => {
                        self.inspected
                            .insert(k, HashMap::from_iter([(dest_hash, 1)]));
                    }
                    None => self.count("devices_over_cap"),
                }
            }
            // The proxy's ServerHello fingerprints: TLS 1.2 JA3S seen with
            // an inspection CA's chain; TLS 1.3 JA3S (chain hidden) of a
            // device whose other sessions were inspected — over TCP: QUIC
            // servers answer past a TCP proxy.
            let quic = is_quic(s.tuple.proto, true);
            let (seen, tls13) = match i {
                Inspection::Ca | Inspection::LearntCa => (Some(&mut self.ja3s_seen), false),
                Inspection::Unknown if !quic && self.inspected.contains_key(&hash_str(dev)) => {
                    (Some(&mut self.ja3s13_seen), true)
                }
                _ => (None, false),
            };
            if let (Some(seen), Some(j), Some(name)) = (seen, &t.ja3s, s.name()) {
                let n = seen.len();
                let over = match seen.get_mut(&**j) {
                    Some(set) => {
                        if set.len() < DESTS_PER_DEVICE && set.insert(hash_str(name)) {
                            note_change(&mut self.proxy_changes, tls13, j);
                        }
                        false
                    }
                    None if !full(n) => {
                        seen.insert(j.to_string(), HashSet::from_iter([hash_str(name)]));
                        note_change(&mut self.proxy_changes, tls13, j);
                        false
                    }
                    None => true,
                };
                if over {
                    self.count("devices_over_cap");
                }
            }
            if matches!(
                t.outcome,
                Outcome::ClientRejected
                    | Outcome::ClientEncryptedAlert
                    | Outcome::ClientAborted
                    | Outcome::ClientClosedAfterHandshake
            ) {
                self.enter(
                    Pattern::RepeatedHandshakeRejection,
                    &[dev, ja4, dest],
                    s,
                    inspection,
                    (dev, dest),
                );
            }
            // Only sessions seen uninspected can make a bypass; the
            // inspected ones to the same destination are counted per device.
            // A completed QUIC session did not pass the TCP proxy: a
            // bypass when the device's TCP sessions are inspected (asked
            // when the window closes). A proxy that answered it (its address
            // or fingerprint) inspected it.
            let quic_uninspected =
                quic && matches!(i, Inspection::Unknown | Inspection::NotInspected);
            if t.outcome == Outcome::Established
                && (i == Inspection::NotInspected || quic_uninspected)
                && s.name().is_some()
                // Inspection configured, or learnt (later, perhaps: the
                // window asks for sessions inspected elsewhere when it closes).
                && (self.s.inspection_configured || self.s.learn_ca_domains > 0)
            {
                self.enter(
                    Pattern::DestinationBypass,
                    &[dev, dest],
                    s,
                    inspection,
                    (dev, dest),
                );
            }
            if t.outcome == Outcome::Established
                && s.duration() >= self.s.persistent_min_duration
                && !i.inspected()
            {
                self.enter(
                    Pattern::OpaquePersistentSession,
                    &[dev, ja4, dest],
                    s,
                    inspection,
                    (dev, dest),
                );
            }
        }
        // Retries of a failing handshake are not a beacon.
        if !infrastructure && transmitted {
            self.enter(
                Pattern::BackgroundTransmission,
                &[dev, dest],
                s,
                inspection,
                (dev, dest),
            );
        }
        // QUIC is a known protocol (its hellos were read), never opaque.
        if s.service.is_none()
            && !is_quic(s.tuple.proto, s.tls.is_some())
            && let Some(f) = &s.first_payload[0]
        {
            match fet::exemption(
                f,
                s.service,
                self.s.opaque_min_payload_bytes,
                self.s.opaque_min_entropy_ratio,
            ) {
                None => {
                    self.enter(
                        Pattern::OpaqueEncryptedChannel,
                        &[dev, dest],
                        s,
                        inspection,
                        (dev, dest),
                    );
                }
                Some(rule) => self.count(rule.counter()),
            }
        }
    }

    /// Adds the session to its window, opening one if needed.
    /// `dev` and `dest`: the session's device and destination keys.
    fn enter(
        &mut self,
        p: Pattern,
        parts: &[&str],
        s: &Session,
        inspection: Option<Inspection>,
        (dev, dest): (&str, &str),
    ) {
        let mut key = std::mem::take(&mut self.key);
        key_of(&mut key, parts);
        self.join(p, &key, s, inspection, (dev, dest));
        self.key = key;
    }

    fn join(
        &mut self,
        p: Pattern,
        key: &str,
        s: &Session,
        inspection: Option<Inspection>,
        (dev, dest): (&str, &str),
    ) {
        let live = self.live.then(|| (p, key.to_string()));
        let open = self.windows.len();
        let w = match self.windows.entry_ref(&KeyRef(p, key)) {
            hashbrown::hash_map::EntryRef::Occupied(o) => o.into_mut(),
            hashbrown::hash_map::EntryRef::Vacant(v) => {
                if open >= self.s.max_keys {
                    *self.counters.entry("keys_over_cap").or_default() += 1;
                    return;
                }
                let id = self.next_id;
                self.next_id += 1;
                let start = s.ts;
                // It closes `window` after the session that opened it entered.
                self.deadlines.insert(
                    (Timestamp(s.order.0.saturating_add(self.s.window)), id),
                    (p, key.to_string()),
                );
                let t = s.tls.as_ref();
                let key = key.to_string();
                v.insert_with_key(
                    (p, key.clone()),
                    Window {
                        id,
                        pattern: p,
                        key,
                        start,
                        device: s.device.clone(),
                        device_key: dev.to_string(),
                        dest_key: dest.to_string(),
                        name: s.shown_name().map(|(n, _)| n.to_string()),
                        name_source: s.shown_name().map(|(_, how)| how),
                        sni: t.and_then(|t| t.sni.clone()),
                        dst: (s.tuple.dst_ip, s.tuple.dst_port),
                        via_proxy: t.is_some_and(|t| t.connect_host.is_some()),
                        ja4: t.and_then(|t| t.ja4.clone()),
                        // Most windows hold one session.
                        entries: Vec::with_capacity(1),
                        sessions: 0,
                        limits: Default::default(),
                        open: None,
                        open_due: false,
                    },
                )
            }
        };
        let cap = self.s.max_sessions_per_key;
        w.sessions += 1;
        for &l in &s.limits {
            crate::record::add_limit(&mut w.limits, l);
        }
        if w.entries.len() >= cap {
            *self.counters.entry("sessions_over_key_cap").or_default() += 1;
        } else {
            w.entries.push(entry(s, inspection));
        }
        if let Some(k) = live {
            self.touch_open(&k, s.ts);
        }
    }

    /// Windows open now.
    pub fn open_windows(&self) -> usize {
        self.windows.len()
    }

    /// Destinations other than `dest` the device + JA4 completed handshakes with.
    pub fn completed_elsewhere(&self, dev: &str, ja4: &str, dest: &str) -> usize {
        let h = hash_str(dest);
        self.established
            .get(&hash_pair(dev, ja4))
            .map_or(0, |d| d.iter().filter(|x| **x != h).count())
    }

    /// Inspected sessions of the device to `dest`.
    pub fn inspected_to(&self, dev: &str, dest: &str) -> u32 {
        self.inspected
            .get(&hash_str(dev))
            .and_then(|m| m.get(&hash_str(dest)).copied())
            .unwrap_or(0)
    }

    /// Inspected sessions of the device, to any destination.
    pub fn inspected_any(&self, dev: &str) -> u32 {
        self.inspected
            .get(&hash_str(dev))
            .map_or(0, |m| m.values().sum())
    }

    /// Inspected sessions of the device to destinations other than `dest`.
    pub fn inspected_elsewhere(&self, dev: &str, dest: &str) -> u32 {
        let h = hash_str(dest);
        self.inspected.get(&hash_str(dev)).map_or(0, |m| {
            m.iter().filter(|(d, _)| **d != h).map(|(_, c)| *c).sum()
        })
    }

    /// Did the device start a connection to another destination within
    /// `background_quiet` before `ts`?
    pub fn busy_before(&self, dev: &str, dest: &str, ts: Timestamp) -> bool {
        let h = hash_str(dest);
        let from = Timestamp(ts.0.saturating_sub(self.s.background_quiet));
        self.activity
            .get(dev)
            .is_some_and(|a| a.iter().any(|(t, d)| *d != h && *t >= from && *t < ts))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn destination_keys() {
        assert_eq!(normal_name("API.Pinned.Example."), "api.pinned.example");
        assert_eq!(connect_host("Mail.Corp.Example:443"), "mail.corp.example");
        assert_eq!(connect_host("[2001:db8::1]:443"), "2001:db8::1");
        assert_eq!(connect_host("host.example"), "host.example");
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        assert_eq!(destination_key(None, v6, 8443), "[2001:db8::1]:8443");
        assert_eq!(
            destination_key(None, "10.0.0.1".parse().unwrap(), 80),
            "10.0.0.1:80"
        );
        assert_eq!(destination_key(Some("a.example"), v6, 1), "a.example");
    }

    #[test]
    fn sessions_sort_by_start_then_flow_id_stably() {
        let session = |ts: u64, id: u64, port: u16| Session {
            ts: Timestamp(ts),
            end_ts: Timestamp(ts),
            order: Timestamp(ts),
            community_id: "".into(),
            flow_id: crate::record::FlowId(id),
            tuple: Tuple {
                src_ip: "10.0.0.1".parse().unwrap(),
                src_port: port,
                dst_ip: "10.0.0.2".parse().unwrap(),
                dst_port: 443,
                proto: "tcp",
                vlan: Vec::new(),
            },
            device: DeviceObject::default(),
            limits: Default::default(),
            dns_name: None,
            service: None,
            orig_payload: 0,
            resp_payload: 0,
            first_payload: [None, None],
            proxy: None,
            tls: None,
        };
        // Every length up to 40, in a scrambled order with repeated keys
        // (told apart by port, which the sort does not look at).
        let mut order = Vec::new();
        for n in 0..40u64 {
            let mut v: Vec<Session> = (0..n)
                .map(|i| {
                    let x = (i * 7919 + n * 31) % 13;
                    session(x / 3, x % 3, i as u16)
                })
                .collect();
            let mut want = v.clone();
            want.sort_by(|a, b| (a.ts, &a.flow_id).cmp(&(b.ts, &b.flow_id)));
            sort_sessions(&mut v, &mut order);
            let got: Vec<_> = v
                .iter()
                .map(|s| (s.ts, &s.flow_id, s.tuple.src_port))
                .collect();
            let want: Vec<_> = want
                .iter()
                .map(|s| (s.ts, &s.flow_id, s.tuple.src_port))
                .collect();
            assert_eq!(got, want, "n = {n}");
        }
    }

    /// A session of device 10.0.0.9 at `secs` to `ip:port`, as the
    /// correlator would build it.
    pub(crate) fn to(
        secs: u64,
        ip: &str,
        port: u16,
        proto: &'static str,
        tls: Option<Outcome>,
    ) -> Session {
        Session {
            ts: Timestamp(secs * NANOS_PER_SEC),
            end_ts: Timestamp(secs * NANOS_PER_SEC + 1),
            order: Timestamp(secs * NANOS_PER_SEC),
            flow_id: crate::record::FlowId(secs),
            community_id: "".into(),
            tuple: Tuple {
                src_ip: "10.0.0.9".parse().unwrap(),
                src_port: 40000,
                dst_ip: ip.parse().unwrap(),
                dst_port: port,
                proto,
                vlan: Vec::new(),
            },
            device: DeviceObject::default(),
            limits: Default::default(),
            service: (port == 53).then_some("dns"),
            dns_name: None,
            orig_payload: 100,
            resp_payload: 100,
            first_payload: [None, None],
            proxy: None,
            tls: tls.map(|outcome| TlsFacts {
                sni: Some(format!("{ip}.example").into()),
                connect_host: None,
                ja4: Some("t13d".into()),
                ja3s: None,
                outcome,
                client_alerts: Vec::new(),
                client_alert_hidden: false,
                inspected: None,
                inspection_ca: None,
                inspection_learnt: false,
                private_ca: None,
                ech: false,
            }),
        }
    }

    fn detector() -> Detector {
        Detector::new(
            Arc::new(DetectSettings::default()),
            context::Apps::new(Vec::new(), &[]),
            None,
            false,
        )
    }

    /// A device whose TCP is inspected completes a QUIC session: that
    /// destination passed the proxy by (`via: quic`), even though the
    /// device's TCP to it is inspected. Controls: no inspected TCP, a QUIC
    /// handshake that did not complete, a QUIC session a proxy answered.
    #[test]
    fn completed_quic_of_an_inspected_device_is_a_bypass() {
        let tcp_inspected = |secs: u64, ip: &str| {
            let mut s = to(secs, ip, 443, "tcp", Some(Outcome::Established));
            s.tls.as_mut().unwrap().inspected = Some(true);
            s
        };
        let quic = |secs: u64, outcome: Outcome| {
            let mut s = to(secs, "10.0.0.50", 443, "udp", Some(outcome));
            s.service = Some("quic");
            s.tls.as_mut().unwrap().ja3s = Some("771,4865,43-51".into());
            s
        };
        let run = |inspected_tcp: bool, q: Session, proxy: bool| {
            let mut settings = DetectSettings {
                inspection_configured: true,
                ..DetectSettings::default()
            };
            if proxy {
                settings.proxy_addresses = vec![Cidr::parse("10.0.0.50/32").unwrap()];
            }
            let mut d = Detector::new(
                Arc::new(settings),
                context::Apps::new(Vec::new(), &[]),
                None,
                false,
            );
            if inspected_tcp {
                for (i, ip) in ["10.0.0.20", "10.0.0.21", "10.0.0.22", "10.0.0.50"]
                    .iter()
                    .enumerate()
                {
                    d.add(&tcp_inspected(10 + i as u64, ip));
                }
            }
            d.add(&q);
            // A QUIC server's ServerHello is no proxy fingerprint.
            assert!(d.ja3s13_seen.is_empty());
            let opaque = d
                .windows
                .keys()
                .any(|(p, _)| *p == Pattern::OpaqueEncryptedChannel);
            let out: Vec<_> = d
                .finish()
                .into_iter()
                .filter(|r| r.pattern == "destination_bypass")
                .map(|r| serde_json::to_value(&r.evidence).unwrap())
                .collect();
            (out, opaque)
        };
        let (found, opaque) = run(true, quic(20, Outcome::Established), false);
        assert!(!opaque);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0]["via"], "quic");
        assert_eq!(found[0]["sessions"], 1);
        assert_eq!(found[0]["inspection"]["unknown"], 1);
        assert!(
            run(false, quic(20, Outcome::Established), false)
                .0
                .is_empty()
        );
        assert!(
            run(true, quic(20, Outcome::ClientAborted), false)
                .0
                .is_empty()
        );
        assert!(run(true, quic(20, Outcome::Established), true).0.is_empty());
    }

    /// QUIC is never an opaque channel: its Initial looks random but its
    /// hellos were read. The same payload over UDP without them is.
    #[test]
    fn quic_is_never_an_opaque_channel() {
        let random = crate::app::features::PayloadFeatures {
            len: 1200,
            entropy: 7.8,
            popcount: 4.0,
            printable_frac: 0.37,
            printable_prefix: 0,
            printable_run: 4,
        };
        let opaque = |tls: Option<Outcome>| {
            let mut d = detector();
            let mut s = to(10, "10.0.0.50", 4433, "udp", tls);
            s.first_payload[0] = Some(random);
            d.add(&s);
            d.windows
                .keys()
                .any(|(p, _)| *p == Pattern::OpaqueEncryptedChannel)
        };
        assert!(opaque(None));
        assert!(!opaque(Some(Outcome::Established)));
    }

    #[test]
    fn only_user_driven_sessions_make_a_device_busy() {
        let dev = "ip:10.0.0.9";
        let beacon = "beacon.example";
        let at = Timestamp(100 * NANOS_PER_SEC);
        let busy = |sessions: Vec<Session>| {
            let mut d = detector();
            for s in sessions {
                d.add(&s);
            }
            d.busy_before(dev, beacon, at)
        };
        // The lookup before a beacon, time, discovery, multicast, ICMP and
        // a failing handshake are not the device in use...
        assert!(!busy(vec![
            to(95, "10.0.0.1", 53, "udp", None),
            to(96, "10.0.0.1", 123, "udp", None),
            to(96, "239.255.255.250", 1900, "udp", None),
            to(97, "224.0.0.251", 5353, "udp", None),
            to(97, "10.0.0.1", 0, "other", None),
            to(98, "10.0.0.5", 443, "tcp", Some(Outcome::ClientRejected)),
        ]));
        // ... a completed TLS session to another destination is.
        assert!(busy(vec![to(
            98,
            "10.0.0.5",
            443,
            "tcp",
            Some(Outcome::Established)
        )]));
        // Outside the quiet period it no longer counts.
        assert!(!busy(vec![to(
            30,
            "10.0.0.5",
            443,
            "tcp",
            Some(Outcome::Established)
        )]));
    }

    #[test]
    fn retries_of_a_failing_handshake_open_no_background_window() {
        let mut d = detector();
        for i in 0..10 {
            d.add(&to(
                10 + 60 * i,
                "10.0.0.5",
                443,
                "tcp",
                Some(Outcome::ClientRejected),
            ));
            d.add(&to(
                20 + 60 * i,
                "10.0.0.6",
                443,
                "tcp",
                Some(Outcome::Established),
            ));
        }
        let background: Vec<_> = d
            .windows
            .keys()
            .filter(|(p, _)| *p == Pattern::BackgroundTransmission)
            .map(|(_, k)| k.clone())
            .collect();
        assert_eq!(background, ["ip:10.0.0.9 10.0.0.6.example"]);
    }

    #[test]
    fn live_windows_write_open_detections_at_the_threshold_then_closed() {
        let beacons = |d: &mut Detector, from: u64, to_: u64| {
            let mut v: Vec<Session> = (from..to_)
                .map(|i| {
                    to(
                        100 + 30 * i,
                        "10.0.0.6",
                        443,
                        "tcp",
                        Some(Outcome::Established),
                    )
                })
                .collect();
            d.push(&mut v)
        };
        // Replay: closed detections only, at the window's end.
        let mut replay = detector();
        assert!(beacons(&mut replay, 0, 12).is_empty());
        let closed = replay.finish();
        assert_eq!(closed.len(), 1);
        assert_eq!(closed[0].status, "closed");

        let mut live = detector();
        live.live = true;
        // Below `beacon_min_connections` (6): nothing yet.
        assert!(beacons(&mut live, 0, 5).is_empty());
        // The sixth beacon (t = 250 s) makes the threshold: open at once.
        let open = beacons(&mut live, 5, 6);
        assert_eq!(open.len(), 1);
        assert_eq!((open[0].status, open[0].flow_ids.len()), ("open", 6));
        // More evidence within the minute waits for the minute.
        assert!(beacons(&mut live, 6, 7).is_empty());
        let t = |s: u64| Timestamp(s * NANOS_PER_SEC);
        assert!(live.advance_open(t(309)).is_empty());
        let update = live.advance_open(t(310));
        assert_eq!((update[0].status, update[0].flow_ids.len()), ("open", 7));
        // No new evidence: no update.
        assert!(live.advance_open(t(1000)).is_empty());
        // The window ends: closed, with the same id — once no session held
        // for its turn can still join it (the horizon has passed its end).
        assert!(live.advance(t(100 + 3600)).is_empty());
        assert!(live.release(t(100 + 3600)).is_empty());
        let closed = live.advance(t(100 + 3600));
        assert_eq!(closed.len(), 1);
        assert_eq!(closed[0].status, "closed");
        assert_eq!(closed[0].detection_id, open[0].detection_id);
        assert_eq!(live.counters.get("background_transmission"), Some(&1));
    }

    /// A rejected handshake of `secs` .. `ended` s (its flow's end).
    fn rejected(secs: u64, ended: u64) -> Session {
        let mut s = to(secs, "10.0.0.7", 443, "tcp", Some(Outcome::ClientRejected));
        s.end_ts = Timestamp(ended * NANOS_PER_SEC);
        s.order = admit::order_time(s.ts, s.end_ts);
        s
    }

    /// Feeds sessions as the run stages do: chunk by chunk, each chunk's
    /// sessions those whose flows ended in it, then the horizon the
    /// workers would report after it (the oldest start among the flows
    /// still open, the chunk's last end as packet time).
    fn feed(chunks: &[Vec<Session>]) -> Vec<String> {
        let mut d = detector();
        let mut out = Vec::new();
        for (i, c) in chunks.iter().enumerate() {
            let now = c.iter().map(|s| s.end_ts).max().unwrap();
            let open = chunks[i + 1..]
                .iter()
                .flatten()
                .map(|s| s.ts)
                .filter(|t| *t <= now)
                .min();
            out.extend(d.hold(&mut c.clone()));
            out.extend(d.release(admit::horizon(now, open)));
        }
        out.extend(d.finish());
        out.iter()
            .map(|d| serde_json::to_string(d).unwrap())
            .collect()
    }

    /// Issue 20: a long session's record comes when its flow ends, after
    /// sessions that started later. Where the capture blocks split decides
    /// which of them come in one chunk; the detections must not change.
    /// Rejections at 3000 .. 4000 s, and one from 50 s that lasted until
    /// 3850 s (it enters at 3820 s, `LEAD` before its end).
    #[test]
    fn a_long_session_after_later_short_ones_gives_the_same_windows_whatever_the_chunks() {
        let l = rejected(50, 3850);
        let r: Vec<Session> = [3000, 3100, 3200, 3800, 3900, 4000]
            .into_iter()
            .map(|t| rejected(t, t + 1))
            .collect();
        // In the order the flows ended.
        let ended = [
            r[0].clone(),
            r[1].clone(),
            r[2].clone(),
            r[3].clone(),
            l.clone(),
            r[4].clone(),
            r[5].clone(),
        ];
        let one_each: Vec<Vec<Session>> = ended.iter().map(|s| vec![s.clone()]).collect();
        let all_in_one = vec![ended.to_vec()];
        let three = vec![
            ended[..2].to_vec(),
            ended[2..5].to_vec(),
            ended[5..].to_vec(),
        ];
        let want = feed(&one_each);
        assert_eq!(feed(&all_in_one), want);
        assert_eq!(feed(&three), want);
        // One window, from the first rejection, with all seven.
        assert_eq!(want.len(), 1, "{want:#?}");
        let d: serde_json::Value = serde_json::from_str(&want[0]).unwrap();
        assert_eq!(d["pattern"], "repeated_handshake_rejection");
        assert_eq!(d["flow_ids"].as_array().unwrap().len(), 7);

        // The old way — each session entering at its start as its chunk
        // came — gave one window in one chunking and two in the other.
        let old = |chunks: &[Vec<Session>]| {
            let mut d = detector();
            let mut n = 0;
            for c in chunks {
                let mut c: Vec<Session> = c
                    .iter()
                    .cloned()
                    .map(|mut s| {
                        s.order = s.ts;
                        s
                    })
                    .collect();
                n += d.push(&mut c).len();
            }
            n + d.finish().len()
        };
        assert_eq!((old(&one_each), old(&all_in_one)), (1, 2));
    }

    /// Many long flows open at once hold the horizon back: the held
    /// sessions stay under the cap, the earliest enter early, counted; a
    /// session that comes after those with an earlier order time enters
    /// at once, counted too. Nothing is lost.
    #[test]
    fn a_flood_of_held_sessions_stays_capped_and_counted() {
        let mut d = detector();
        d.admit = admit::Admission::new(100);
        let mut v: Vec<Session> = (0..1000u64)
            .map(|i| rejected(10_000 + i, 10_000 + i + 1))
            .collect();
        d.hold(&mut v);
        // The horizon stays at the oldest open start (a flow from 0 s).
        d.release(Timestamp(0));
        assert_eq!(d.held(), 100);
        assert_eq!(d.counters.get("order_held_over_cap"), Some(&900));
        d.hold(&mut vec![rejected(5_000, 5_001)]);
        assert_eq!(d.counters.get("order_late"), Some(&1));
        assert_eq!(d.held(), 100);
        // Connections with neither payload nor TLS (a SYN flood, a scan)
        // enter no window: they are not held at all.
        let mut syns: Vec<Session> = (0..1000u64)
            .map(|i| {
                let mut s = to(20_000 + i, "10.0.0.8", 443, "tcp", None);
                (s.orig_payload, s.resp_payload) = (0, 0);
                s
            })
            .collect();
        d.hold(&mut syns);
        assert_eq!(d.held(), 100);
        assert_eq!(d.counters.get("order_held_over_cap"), Some(&900));
        let found = d.finish();
        assert_eq!(d.held(), 0);
        let sessions: usize = found.iter().map(|f| f.flow_ids.len()).sum();
        assert!(sessions > 0);
        assert_eq!(
            d.counters.get("repeated_handshake_rejection"),
            Some(&(found.len() as u64))
        );
    }
}
