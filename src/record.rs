//! Output records. The README's schema section documents every field; a
//! change here changes it in the same commit.

use crate::app::features::PayloadFeatures;
use crate::time::Timestamp;
use serde::Serialize;
use std::collections::BTreeMap;
use std::net::IpAddr;

/// Counters by name, on the serial threads' hot paths (the correlator's
/// and the detector's): hashing a name costs less than the string
/// comparisons of a `BTreeMap` lookup, which were a fifth of the
/// correlator's time. A stats record takes them in name order ([`sorted`]).
pub type Counts = hashbrown::HashMap<&'static str, u64, foldhash::fast::FixedState>;

/// `counts` in name order, as a stats record holds them.
pub fn sorted(counts: &Counts) -> BTreeMap<&'static str, u64> {
    counts.iter().map(|(k, n)| (*k, *n)).collect()
}

/// What could not be observed of a record (see the README): one or two
/// names inline, so the records of a site whose devices are unknown
/// (`device_unknown` on every connection) allocate nothing for them. A
/// `Vec` was half of the correlator's allocations, freed on other threads.
pub type Limits = smallvec::SmallVec<[&'static str; 2]>;

/// Adds `l` to `limits` unless it is there: each name once.
pub fn add_limit(limits: &mut Limits, l: &'static str) {
    if !limits.contains(&l) {
        limits.push(l);
    }
}

/// A detection's evidence: one typed shape per pattern (README,
/// "Detections"). Fields in alphabetical order, as the record has always
/// written them.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum DetectionEvidence {
    /// `repeated_handshake_rejection`.
    Rejection {
        client_alerts: Vec<u8>,
        completed_elsewhere: usize,
        first: Timestamp,
        handshakes: u64,
        inspection: BTreeMap<&'static str, u64>,
        interval_madm_s: Option<f64>,
        interval_median_s: Option<f64>,
        last: Timestamp,
        outcomes: BTreeMap<&'static str, u64>,
    },
    /// `destination_bypass`.
    Bypass {
        documented: bool,
        first: Timestamp,
        inspected_elsewhere: u32,
        inspection: BTreeMap<&'static str, u64>,
        last: Timestamp,
        sessions: u64,
        /// `tcp` (uninspected TLS over TCP), `quic` (completed QUIC
        /// sessions of a device whose TCP is inspected) or `tcp_and_quic`.
        via: &'static str,
    },
    /// `opaque_persistent_session`.
    Persistent {
        first: Timestamp,
        inspection: BTreeMap<&'static str, u64>,
        last: Timestamp,
        longest_s: f64,
        min_duration_s: u64,
        payload_bytes: u64,
        sessions: u64,
    },
    /// `background_transmission`.
    Background {
        background_connections: usize,
        connections: u64,
        first: Timestamp,
        intervals_s: Vec<f64>,
        last: Timestamp,
        longest_background_s: f64,
        mode: &'static str,
        regularity: Option<crate::detect::rita::BeaconScore>,
        sizes: Vec<u64>,
    },
    /// `opaque_encrypted_channel`.
    Opaque {
        both_directions: bool,
        client_first_payload: Option<PayloadFeatures>,
        first: Timestamp,
        flows: u64,
        last: Timestamp,
        payload_bytes: u64,
        server_first_payload: Option<PayloadFeatures>,
    },
}

/// One direction of a flow.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct EndpointRecord {
    /// Packets sent.
    pub packets: u64,
    /// Frame bytes on the wire (link header included), as tshark counts.
    pub bytes: u64,
    /// IP bytes (IP header + payload), as Zeek's `orig_ip_bytes`.
    pub ip_bytes: u64,
    /// Transport payload bytes, retransmissions included.
    pub payload_bytes: u64,
    /// Stream bytes skipped as gaps by reassembly (only while it ran).
    pub missed_bytes: u64,
    /// First-payload features; `null` when no payload was sent or sampled.
    pub first_payload: Option<PayloadFeatures>,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct FlowRecord {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub ts: Timestamp,
    pub end_ts: Timestamp,
    /// Not written: the packet time the flow ended at — its last packet
    /// plus the linger after a close or the idle timeout, the packet that
    /// reused its ports, or the end of the input. Unlike the time the
    /// record was made, it does not depend on where blocks split; the
    /// detector orders sessions by it (`detect::admit`).
    #[serde(skip)]
    pub ended: Timestamp,
    pub flow_id: FlowId,
    /// Shared (the flow's session and its windows keep it too).
    pub community_id: std::sync::Arc<str>,
    pub src_ip: IpAddr,
    pub src_port: u16,
    pub dst_ip: IpAddr,
    pub dst_port: u16,
    pub proto: &'static str,
    /// The protocol recognised (Zeek's conn.log `service` names: `ssl`,
    /// `http`, `dns`, `quic`, ...); `null` when none was.
    pub service: Option<&'static str>,
    pub vlan: Vec<u16>,
    pub src_mac: Option<Mac>,
    pub dst_mac: Option<Mac>,
    pub duration: f64,
    pub state: &'static str,
    pub history: String,
    pub end_reason: &'static str,
    pub rtt_syn_synack_us: Option<u64>,
    pub rtt_synack_ack_us: Option<u64>,
    pub orig: EndpointRecord,
    pub resp: EndpointRecord,
    /// The name the client resolved the server address to before the flow
    /// (passive DNS); nulls when none.
    pub destination: FlowDestination,
    /// The device behind the client (else the server) address at `ts`.
    pub device: DeviceObject,
    /// What could not be observed (see the README).
    pub limits: crate::record::Limits,
    /// The tunnels the flow's first packet came through; absent when none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encap: Option<EncapRecord>,
}

/// A flow's encapsulation, outermost layer first (`decode/tunnel.rs`).
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct EncapRecord {
    /// The outermost IP header that carried a tunnel, as on the flow's
    /// first packet; `null` when every layer rode below IP (MPLS, PPPoE).
    pub outer_src_ip: Option<IpAddr>,
    pub outer_dst_ip: Option<IpAddr>,
    pub layers: Vec<EncapLayerRecord>,
}

/// One encapsulation layer: its name and the id its header carries (one of
/// the optional fields, by layer; absent when the header has none).
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct EncapLayerRecord {
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// GRE key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<u32>,
    /// ERSPAN session id, PPPoE session id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_id: Option<u32>,
    /// VXLAN or Geneve network identifier.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vni: Option<u32>,
    /// MPLS bottom-of-stack label.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<u32>,
    /// GTP-U tunnel endpoint id (of the first packet's direction).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub teid: Option<u32>,
    /// Cisco MetaData security group tag.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sgt: Option<u32>,
}

/// A flow's destination name and where it came from.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct FlowDestination {
    pub name: Option<std::sync::Arc<str>>,
    /// `dns`: the client's own lookup of the server address.
    pub name_source: Option<&'static str>,
}

/// Counters for one input file.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct FileStats {
    pub file: String,
    pub frames: u64,
    pub bytes: u64,
    /// `null`, or why reading stopped early (truncated, corrupt, read error).
    pub error: Option<String>,
}

/// End-of-run (replay) or interval (live) counters. Nothing is dropped
/// silently: every cap has its counter here.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct StatsRecord {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub ts: Timestamp,
    pub packets: u64,
    pub bytes: u64,
    /// Frames that did not become flow packets, by reason.
    pub skipped: BTreeMap<&'static str, u64>,
    /// Encapsulation layers decoded, by type (`decode/tunnel.rs`).
    pub tunnels: BTreeMap<&'static str, u64>,
    pub fragments: BTreeMap<&'static str, u64>,
    pub flows: BTreeMap<&'static str, u64>,
    pub reassembly: BTreeMap<&'static str, u64>,
    /// Packets or records lost inside the sensor, by queue (always 0 in replay, which waits instead).
    pub drops: BTreeMap<&'static str, u64>,
    pub files: Vec<FileStats>,
    pub records: BTreeMap<&'static str, u64>,
    /// TLS sessions by outcome, and TLS counters (`sslv2_hellos`,
    /// `handshake_overflow`, `connect_tunnels`, `inspected`, ...).
    pub tls: BTreeMap<&'static str, u64>,
    /// Device evidence by source, lease-file bindings, records without a
    /// device, and what the device tables refused at their caps.
    pub devices: BTreeMap<&'static str, u64>,
    /// Detections by pattern, OS-channel sessions left unscored, why flows
    /// were not opaque (`opaque_exempt_*`), and what the detection tables
    /// refused at their caps.
    pub detections: BTreeMap<&'static str, u64>,
    /// DNS transactions, unanswered and malformed ones, and the passive-DNS
    /// map: answers learnt, flows named, entries expired or refused at its cap.
    pub dns: BTreeMap<&'static str, u64>,
    /// Live capture: each ring's kernel counters (absent in replay).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub capture: Vec<crate::capture::live::RingStats>,
    /// Live capture: each worker's hand-off to the correlator (absent in replay).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub queues: Vec<QueueStats>,
    /// Live capture: what the output did (absent in replay).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub output: BTreeMap<&'static str, u64>,
    /// Fleet mode (`--publish`): the publisher's counters (absent without it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fleet: Option<BTreeMap<&'static str, u64>>,
    /// Kafka export (`--publish kafka://`): the producer's counters (absent without it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kafka: Option<BTreeMap<&'static str, u64>>,
}

/// A worker's queue to the correlator (live capture).
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct QueueStats {
    pub queue: String,
    /// Records (and device evidence) dropped because the backlog was full.
    pub dropped: u64,
    /// The most records the backlog held.
    pub backlog_max: u64,
    /// Tunnelled packets this worker handed to the worker owning their
    /// inner flow (`sensor/forward.rs`).
    pub forwarded: u64,
    /// Of those, dropped because the owner's inbox was full.
    pub forward_dropped: u64,
    /// Tunnelled packets other workers handed to this one.
    pub forward_received: u64,
    /// Tunnelled packets processed before their turn in time order
    /// because the worker held too many.
    pub forward_held_over_cap: u64,
}

/// One per TLS connection (a TCP flow whose client spoke TLS first).
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct TlsRecord {
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Time of the (first) ClientHello, else of the first TLS record seen.
    pub ts: Timestamp,
    pub flow_id: FlowId,
    /// Shared (the flow's session and its windows keep it too).
    pub community_id: std::sync::Arc<str>,
    pub src_ip: IpAddr,
    pub src_port: u16,
    pub dst_ip: IpAddr,
    pub dst_port: u16,
    pub proto: &'static str,
    /// Shared with the session the detector gets (no copy per record).
    pub sni: Option<std::sync::Arc<str>>,
    /// ALPN protocols offered, in order.
    pub alpn: Vec<String>,
    /// supported_versions offered (GREASE left out), by name.
    pub client_versions: Vec<String>,
    /// Highest version offered; null when no ClientHello was seen (flow picked up mid-stream).
    pub client_max_version: Option<String>,
    /// Negotiated version (ServerHello supported_versions, else legacy); null without a ServerHello.
    pub version: Option<String>,
    /// Chosen cipher suite, `0x` + 4 hex digits.
    pub cipher: Option<String>,
    /// Its IANA name (`TLS_AES_128_GCM_SHA256`); null when unassigned.
    pub cipher_name: Option<&'static str>,
    pub alpn_selected: Option<String>,
    pub ja3: Option<String>,
    pub ja3_string: Option<String>,
    /// Shared with the detector's session (`detect::TlsFacts`).
    pub ja4: Option<std::sync::Arc<str>>,
    pub ja4_r: Option<String>,
    pub ja3s: Option<std::sync::Arc<str>>,
    pub ja3s_string: Option<String>,
    pub ech: bool,
    pub hrr: bool,
    /// Session resumption: TLS <= 1.2 session ID echoed or ticket accepted
    /// (client ChangeCipherSpec without a key exchange); TLS 1.3 server
    /// accepted a pre-shared key.
    pub resumed: bool,
    pub client_hellos: u32,
    pub server_hellos: u32,
    /// Server certificate chain (TLS <= 1.2); `null` when not seen.
    pub cert: Option<std::sync::Arc<crate::app::tls::cert::Chain>>,
    /// Whether a configured inspection CA is in (or issued) the chain; `null`
    /// when the chain could not be seen.
    pub inspected: Option<bool>,
    /// The inspection CA that matched: its name in the config, or the
    /// subject of a learnt one.
    pub inspection_ca: Option<String>,
    /// `configured` or `learnt` (README, "Inspection CAs learnt"); `null`
    /// when not inspected.
    pub inspection_source: Option<&'static str>,
    pub outcome: crate::app::tls::summary::Outcome,
    pub history: String,
    pub timing: crate::app::tls::summary::Timing,
    pub alerts: Vec<crate::app::tls::Alert>,
    /// TLS 1.3: length of the client's first protected record after the server's flight.
    pub client_response_len: Option<u16>,
    /// application_data records after the handshake, per side.
    pub client_app_records: u32,
    pub server_app_records: u32,
    /// What the flow spoke before its TLS, once the server agreed to the
    /// upgrade: `smtp`, `lmtp`, `imap`, `pop3`, `ftp`, `xmpp`, `ldap`,
    /// `postgres`, `mysql`, `socks4`, `socks5`, `http_connect`.
    pub upgrade: Option<&'static str>,
    /// `host:port` the proxy was asked for by the HTTP CONNECT or SOCKS
    /// request that opened the tunnel (explicit proxy), if any.
    pub proxy_connect: Option<String>,
    pub sslv2_hello: bool,
    pub handshake_overflow: bool,
    /// QUIC sessions (`proto` `udp`): what the Initial packets showed; null over TCP.
    pub quic: Option<QuicInfo>,
    /// The device behind the client (else the server) address at `ts`.
    pub device: DeviceObject,
    /// What could not be observed (see the README).
    pub limits: crate::record::Limits,
}

/// The QUIC part of a `tls` record (see the README).
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct QuicInfo {
    /// The client's version, `0x` + 8 hex digits.
    pub version: String,
    /// `1`, `2`, `draft-29`, `mvfst-draft-27`, ...; null for an unknown version.
    pub version_name: Option<&'static str>,
    /// The DCID of the client's first Initial (the Initial keys' input), hex.
    pub original_dcid: Option<String>,
    /// The source connection IDs of the client's and the server's first Initial, hex.
    pub client_cid: Option<String>,
    pub server_cid: Option<String>,
    /// The ids of the client's transport parameters, in order.
    pub client_transport_parameters: Vec<u64>,
    /// Initial packets decrypted per side.
    pub client_initials: u32,
    pub server_initials: u32,
    /// The server sent a Retry.
    pub retry: bool,
    /// Initial packets that did not open.
    pub decrypt_failures: u32,
    /// Why the ClientHello was not read; null when it was.
    pub not_parsed: Option<&'static str>,
}

/// One per DHCPv4 message.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct DhcpRecord {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub ts: Timestamp,
    /// The UDP flow the message belongs to.
    pub flow_id: FlowId,
    pub src_ip: IpAddr,
    pub src_port: u16,
    pub dst_ip: IpAddr,
    pub dst_port: u16,
    pub src_mac: Option<Mac>,
    pub dst_mac: Option<Mac>,
    pub vlan: Vec<u16>,
    /// 4 or 6.
    pub dhcp_version: u8,
    #[serde(flatten)]
    pub dhcp: DhcpBody,
    /// The client the message is about (its MAC from chaddr or the DUID).
    pub device: DeviceObject,
    pub limits: crate::record::Limits,
}

/// One per DNS transaction (a query and its answer, or either alone), as
/// Zeek's dns.log.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct DnsRecord {
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Time of the query (of the answer when no query was seen).
    pub ts: Timestamp,
    pub flow_id: FlowId,
    /// The client (sender of the query) and the server.
    pub src_ip: IpAddr,
    pub src_port: u16,
    pub dst_ip: IpAddr,
    pub dst_port: u16,
    pub proto: &'static str,
    pub vlan: Vec<u16>,
    pub trans_id: u16,
    /// Seconds from query to answer; `null` without both.
    pub rtt: Option<f64>,
    pub query: Option<String>,
    pub qclass: Option<u16>,
    pub qclass_name: Option<&'static str>,
    pub qtype: Option<u16>,
    pub qtype_name: Option<&'static str>,
    pub opcode: u8,
    /// The answer's response code; `null` when no answer was seen.
    pub rcode: Option<u8>,
    pub rcode_name: Option<&'static str>,
    pub aa: bool,
    pub tc: bool,
    pub rd: bool,
    pub ra: bool,
    pub z: u8,
    /// The server answered REFUSED.
    pub rejected: bool,
    pub answers: Vec<crate::app::dns::DnsAnswer>,
    pub answers_more: u32,
    /// A message's header was read but its body did not decode.
    pub malformed: bool,
    /// Packet time of the answer (for the passive-DNS map; not written).
    #[serde(skip)]
    pub answered_at: Option<Timestamp>,
    /// The correlator learnt it already (sensor mode learns ahead; not written).
    #[serde(skip)]
    pub learned: bool,
    pub device: DeviceObject,
    pub limits: crate::record::Limits,
}

/// The version-specific part of a `dhcp` record.
#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(untagged)]
pub enum DhcpBody {
    V4(crate::app::dhcp::DhcpInfo),
    V6(crate::app::dhcp6::Dhcp6Info),
}

/// What is known of a device: its MAC and where that came from, and from
/// MDM / RADIUS who it is. Shared between the records of one device.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DeviceInfo {
    pub mac: Option<Mac>,
    /// Locally administered (iOS private Wi-Fi address).
    pub mac_private: Option<bool>,
    pub hostname: Option<String>,
    /// RADIUS User-Name of the 802.1X session the MAC was in.
    pub identity: Option<String>,
    /// The MDM record tied to the MAC, and how: `wifi_mac` or `radius_identity`.
    pub mdm: Option<(std::sync::Arc<crate::inputs::mdm::MdmDevice>, &'static str)>,
}

/// The `device` object on records: `null` fields where unknown.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DeviceObject {
    pub ip: Option<IpAddr>,
    /// Evidence that tied `ip` to the MAC: `dhcp`, `dhcpv6`, `arp`, `ndp`,
    /// `lease_file`, or `frame` on DHCP records (the message's own chaddr/DUID).
    pub mac_source: Option<&'static str>,
    pub info: Option<std::sync::Arc<DeviceInfo>>,
}

impl Serialize for DeviceObject {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let none = DeviceInfo::default();
        let i = self.info.as_deref().unwrap_or(&none);
        let m = i.mdm.as_ref().map(|(m, _)| &**m);
        let mut st = s.serialize_struct("device", 16)?;
        st.serialize_field("ip", &self.ip)?;
        st.serialize_field("mac", &i.mac)?;
        st.serialize_field("mac_private", &i.mac_private)?;
        st.serialize_field("mac_source", &self.mac_source)?;
        st.serialize_field("hostname", &i.hostname)?;
        st.serialize_field("identity", &i.identity)?;
        st.serialize_field("serial", &m.and_then(|m| m.serial.as_ref()))?;
        st.serialize_field("udid", &m.and_then(|m| m.udid.as_ref()))?;
        st.serialize_field("name", &m.and_then(|m| m.name.as_ref()))?;
        st.serialize_field("model", &m.and_then(|m| m.model.as_ref()))?;
        st.serialize_field("os", &m.and_then(|m| m.os.as_ref()))?;
        st.serialize_field("supervised", &m.and_then(|m| m.supervised))?;
        st.serialize_field("managed", &m.and_then(|m| m.managed))?;
        st.serialize_field("ownership", &m.and_then(|m| m.ownership.as_ref()))?;
        st.serialize_field("mdm_match", &i.mdm.as_ref().map(|(_, how)| *how))?;
        st.end()
    }
}

/// A device seen for the first time, or an address changing hands.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct DeviceRecord {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub ts: Timestamp,
    /// `first_seen`, `lease` (the address is now this MAC's) or `release`.
    pub event: &'static str,
    pub ip: Option<IpAddr>,
    pub mac: Mac,
    pub lease_start: Option<Timestamp>,
    /// `null`: open (ARP/NDP, or an infinite lease).
    pub lease_end: Option<Timestamp>,
    /// `dhcp`, `dhcpv6`, `arp`, `ndp`.
    pub source: &'static str,
    /// The MAC that held `ip` just before, when it moved between devices.
    pub previous_mac: Option<Mac>,
    pub device: DeviceObject,
    pub limits: crate::record::Limits,
}

/// `count` of `of`, and the share (null when `of` is 0).
#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq)]
pub struct Share {
    pub count: u64,
    pub of: u64,
    pub share: Option<f64>,
}

impl Share {
    pub fn new(count: u64, of: u64) -> Share {
        Share {
            count,
            of,
            share: (of > 0).then(|| (count as f64 / of as f64 * 10_000.0).round() / 10_000.0),
        }
    }
}

/// The blind spots of a run: what blindspot could not see, in numbers.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct CoverageRecord {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub ts: Timestamp,
    pub tls_sessions: u64,
    /// TLS sessions whose certificate chain was encrypted (TLS 1.3).
    pub tls_certificate_hidden: Share,
    /// TLS sessions offering Encrypted Client Hello (SNI hidden).
    pub tls_ech: Share,
    /// QUIC sessions whose ClientHello was not read, of those and the TLS
    /// sessions (TCP and QUIC) together.
    pub quic: Share,
    /// DNS transactions seen in clear.
    pub dns_transactions: u64,
    /// Encrypted-DNS flows (their names are hidden): `dot`, `doh`, `doq`.
    pub encrypted_dns: BTreeMap<&'static str, u64>,
    pub quic_sessions: QuicCoverage,
    /// Flow records whose addresses no evidence tied to a MAC.
    pub flows_without_device: Share,
    /// Inspection CAs learnt from the wire, in the order first seen.
    pub learnt_inspection_cas: Vec<LearntCa>,
    pub devices: crate::correlate::devices::DeviceCoverage,
    /// Packets lost before blindspot saw them or inside it (kernel + internal drops).
    pub capture_drops: u64,
    /// Input files cut short or damaged.
    pub damaged_inputs: u64,
}

/// An inspection CA learnt from the wire (coverage record).
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct LearntCa {
    pub subject: String,
    /// SHA-256 of the CA certificate, when a chain carried it.
    pub sha256: Option<String>,
    pub key_id: Option<String>,
    pub first_seen: Timestamp,
    pub learnt: Timestamp,
    /// Registrable domains of the leaves it signed (the first 64).
    pub domains: Vec<String>,
}

/// QUIC sessions (flows with service `quic`): how many had their
/// ClientHello read, and why the others did not.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct QuicCoverage {
    pub sessions: u64,
    pub parsed: u64,
    /// By reason: the `quic.not_parsed` values of `tls` records, and
    /// `handshake_not_seen` for sessions that showed no long header.
    pub not_parsed: BTreeMap<&'static str, u64>,
}

/// One part of a detection's score.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct ScorePart {
    pub part: &'static str,
    pub points: i32,
}

/// The candidate app behind a detection, and how it was derived.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct AppRef {
    pub bundle_id: String,
    pub name: Option<String>,
    /// `catalog_pinned_domain`, `catalog_domain`, `app_events` or `ja4_history`.
    pub derived_from: &'static str,
}

/// Where the detected sessions went.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Destination {
    /// SNI, else the host of the proxy CONNECT, else the name the device
    /// resolved the address to; `null` for unnamed flows.
    pub name: Option<String>,
    /// `sni`, `connect` or `dns`; `null` with no name.
    pub name_source: Option<&'static str>,
    pub sni: Option<String>,
    /// The server address the device talked to (the proxy's, via a proxy).
    pub ip: IpAddr,
    pub port: u16,
    /// Reached through an explicit proxy (HTTP CONNECT).
    pub via_proxy: bool,
}

/// What changes the reading of a detection (see the README).
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct DetectionContext {
    pub supervised: Option<bool>,
    pub managed: Option<bool>,
    /// `observed` (app events), `inferred` (the device went quiet),
    /// `foreground`, or `null` when the pattern does not ask.
    pub background: Option<&'static str>,
    pub background_modes: Vec<String>,
    pub entitlements: Vec<String>,
    /// The destination is in the candidate app's NSPinnedDomains; `null`
    /// without a candidate app or destination name.
    pub pinned_by_design: Option<bool>,
    /// The destination is on the documented bypass list.
    pub bypass_documented: bool,
    /// `pinning_by_design`, `risk_accepted` or `unexplained`.
    pub reading: &'static str,
    /// What the baseline knows of this JA4 and destination (`--baseline`).
    pub baseline: Option<serde_json::Value>,
}

/// A finding of AN1726 or AN1717: one per pattern, key and window.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct DetectionRecord {
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// `closed` (the window ended; replay writes only these) or `open`
    /// (capture: the window reached its threshold and is still open).
    pub status: &'static str,
    /// First and last session time in the window.
    pub ts: Timestamp,
    pub end_ts: Timestamp,
    /// Stable for the same pattern, key and window start.
    pub detection_id: String,
    pub analytic: &'static str,
    pub pattern: &'static str,
    pub score: u8,
    pub score_parts: Vec<ScorePart>,
    /// `high`, `medium`, `low`: from the score (README, "Severity").
    pub severity: &'static str,
    /// How much of the picture the sensor saw (not the finding's likelihood).
    pub visibility: &'static str,
    /// One line: what an analyst does next.
    pub recommended_action: String,
    pub device: DeviceObject,
    pub app: Option<AppRef>,
    pub destination: Destination,
    pub ja4: Option<String>,
    pub window_start: Timestamp,
    pub window_s: u64,
    pub evidence: DetectionEvidence,
    pub context: DetectionContext,
    pub limits: crate::record::Limits,
    /// Flows behind the detection (the first `max_flow_ids`).
    pub flow_ids: Vec<FlowId>,
    /// The same flows' Community IDs, in the same order.
    pub community_ids: Vec<String>,
    pub flow_ids_total: u64,
    /// The pcap `--evidence` writes for it (in that folder).
    pub evidence_file: Option<String>,
    /// What the inspecting proxy's own log says of these sessions
    /// (`--proxy-log`); null without one, or when no entry joined.
    pub proxy_evidence: Option<ProxyEvidence>,
    /// `blindspot correlate`: the sensors that saw the flows in `flow_ids`
    /// (absent from a sensor's own detections).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub observers: Vec<String>,
}

/// A detection's citation of the proxy's log (README, "Proxy logs").
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ProxyEvidence {
    /// The product whose log it is (`squid`, `mitmproxy`, `panos`, ...).
    pub source: &'static str,
    /// Sessions of the detection joined to a log entry.
    pub sessions: u64,
    /// Those sessions by the proxy's verdict.
    pub verdicts: BTreeMap<&'static str, u64>,
    /// The proxy's distinct reasons (at most 8).
    pub reasons: Vec<String>,
    /// Every verdict that bears on the pattern agrees with the wire.
    pub agrees: bool,
    /// Sessions whose verdict contradicts the wire's reading.
    pub disagreements: u64,
    /// The entries behind the first `max_flow_ids` joined sessions.
    pub cited: Vec<ProxyCitation>,
}

/// One joined session: its flow and the log line that speaks for it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ProxyCitation {
    pub flow_id: FlowId,
    pub file: String,
    pub line: u32,
    pub verdict: &'static str,
    pub reason: String,
}

/// Serialises as the record itself (untagged: each record carries its own
/// `type` field).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Record {
    Flow(Box<FlowRecord>),
    Tls(Box<TlsRecord>),
    Dhcp(Box<DhcpRecord>),
    Dns(Box<DnsRecord>),
    Device(Box<DeviceRecord>),
    Coverage(Box<CoverageRecord>),
    Detection(Box<DetectionRecord>),
    Stats(Box<StatsRecord>),
}

impl Record {
    pub fn kind(&self) -> &'static str {
        match self {
            Record::Flow(_) => "flow",
            Record::Tls(_) => "tls",
            Record::Dhcp(_) => "dhcp",
            Record::Dns(_) => "dns",
            Record::Device(_) => "device",
            Record::Coverage(_) => "coverage",
            Record::Detection(_) => "detection",
            Record::Stats(_) => "stats",
        }
    }

    /// Appends the record as one JSON line.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        let start = out.len();
        let r = crate::output::json::write(out, self);
        // These plain structs have string keys only: writing cannot fail.
        debug_assert!(r.is_ok());
        // Debug builds (every test run) check each record against serde_json.
        debug_assert_eq!(
            String::from_utf8_lossy(out.get(start..).unwrap_or_default()),
            String::from_utf8_lossy(&serde_json::to_vec(self).unwrap_or_default()),
            "output::json and serde_json differ"
        );
        out.push(b'\n');
    }
}

pub const HEX: &[u8; 16] = b"0123456789abcdef";

/// Lower-case hex of bytes, two digits each.
pub fn hex(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len() * 2);
    for x in b {
        s.push(HEX[(x >> 4) as usize] as char);
        s.push(HEX[(x & 15) as usize] as char);
    }
    s
}

/// A MAC address: bytes through the pipeline, `aa:bb:cc:dd:ee:ff` in the
/// records.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Mac(pub [u8; 6]);

impl Mac {
    /// Appends `aa:bb:cc:dd:ee:ff` to `s`, without the formatting machinery.
    pub fn push_to(self, s: &mut String) {
        s.push_str(std::str::from_utf8(&self.text()).unwrap_or_default());
    }

    fn text(self) -> [u8; 17] {
        let mut t = [b':'; 17];
        for (i, b) in self.0.iter().enumerate() {
            t[i * 3] = HEX[(b >> 4) as usize];
            t[i * 3 + 1] = HEX[(b & 15) as usize];
        }
        t
    }
}

impl std::fmt::Display for Mac {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(std::str::from_utf8(&self.text()).unwrap_or_default())
    }
}

impl Serialize for Mac {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(std::str::from_utf8(&self.text()).unwrap_or_default())
    }
}

/// A flow's id: a number inside the pipeline, 16 lower-case hex digits in
/// the records (their text orders as the number does).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FlowId(pub u64);

impl FlowId {
    fn digits(self) -> [u8; 16] {
        let mut d = [0u8; 16];
        for (i, c) in d.iter_mut().enumerate() {
            *c = HEX[((self.0 >> ((15 - i) * 4)) & 15) as usize];
        }
        d
    }
}

impl std::fmt::Display for FlowId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let d = self.digits();
        f.write_str(std::str::from_utf8(&d).unwrap_or_default())
    }
}

impl Serialize for FlowId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let d = self.digits();
        s.serialize_str(std::str::from_utf8(&d).unwrap_or_default())
    }
}

/// 16 lower-case hex digits.
pub fn hex_u64(v: u64) -> String {
    (0..16)
        .rev()
        .map(|i| HEX[((v >> (i * 4)) & 15) as usize] as char)
        .collect()
}
