//! Entry points for the fuzzers in `fuzz/` and for the replay of their seeds
//! and regressions in `tests/fuzz_regressions.rs`.
//!
//! One function per target, taking the fuzzer's bytes. Each holds the whole
//! body of its target, the property checks included: any panic here (a
//! parser's, or a failed `assert!` on a cap) is a finding. The fuzz targets
//! are one-line calls, so `cargo test` on the stable toolchain replays
//! exactly what the fuzzers ran. See `fuzz/README.md` for the input shape of
//! each target.
//!
//! Not part of the sensor's API: the module is hidden from the docs and may
//! change with the fuzzers.

use crate::app::tls::hello::{is_grease, version_name};
use crate::app::tls::{self, TlsCtx, TlsState};
use crate::app::{AppState, dhcp, dhcp6, evidence};
use crate::capture::FrameRef;
use crate::capture::pcap_file::CaptureReader;
use crate::correlate::devices::{DeviceInputs, DeviceLimits, Devices};
use crate::decode::{self, Decoder};
use crate::flow::FlowSettings;
use crate::flow::key::Direction;
use crate::flow::reassembly::StreamEvent;
use crate::flow::table::FlowTable;
use crate::inputs::{self, LoadError, Loaded};
use crate::time::Timestamp;

/// Small device tables, so that the fuzzer reaches their caps.
const SMALL_DEVICES: DeviceLimits = DeviceLimits {
    max_ips: 4,
    max_bindings_per_ip: 2,
    max_macs: 4,
};

/// Flows held by the fuzzed flow table.
const FLOW_CAP: usize = 8;

/// One frame of any link type: `[link type, u16 little-endian][frame]`
/// (the link type is taken modulo 300). Decode must not panic.
pub fn decode(data: &[u8]) {
    if data.len() < 2 {
        return;
    }
    let linktype = u16::from_le_bytes([data[0], data[1]]) % 300;
    let frame = FrameRef {
        ts: Timestamp(1),
        offset: 2,
        caplen: (data.len() - 2) as u32,
        wire_len: data.len() as u32,
        linktype,
    };
    let mut d = Decoder::default();
    let mut extra = Vec::new();
    if let Some(p) = d.decode(data, &frame, &mut extra) {
        let _ = decode::payload(&p, data, &extra);
    }
}

/// A whole capture file (pcap, pcapng, compressed, or garbage): the reader
/// ends with records or an error, never a panic or a hang.
pub fn capture_file(data: &[u8]) {
    let Ok(r) =
        CaptureReader::from_reader("fuzz".into(), Box::new(std::io::Cursor::new(data.to_vec())))
    else {
        return;
    };
    let mut r = r.with_chunk_size(97);
    for _ in 0..10_000 {
        match r.next_chunk() {
            Ok(Some(c)) => {
                for f in &c.frames {
                    let _ = c.frame_bytes(f);
                }
            }
            _ => break,
        }
    }
}

/// Ethernet frames through one flow table holding at most [`FLOW_CAP`]
/// flows. Records: `[frame length, u16 big-endian][time step, u8, in 0.1 s][frame]`
/// (the length is clamped to what is left). No panic, the cap holds, and
/// every record the table writes serialises.
pub fn flow_table(data: &[u8]) {
    let settings = FlowSettings {
        max_flows: FLOW_CAP,
        ..FlowSettings::default()
    };
    let mut table = FlowTable::new(settings, 1);
    let mut d = Decoder::default();
    let mut out = Vec::new();
    let mut extra = Vec::new();
    let mut t = 0u64;
    let mut rest = data;
    while rest.len() > 3 {
        let len = (u16::from_be_bytes([rest[0], rest[1]]) as usize).min(rest.len() - 3);
        t += rest[2] as u64 * 100_000_000;
        let frame = FrameRef {
            ts: Timestamp(t),
            offset: 3,
            caplen: len as u32,
            wire_len: len as u32,
            linktype: 1,
        };
        if let Some(p) = d.decode(rest, &frame, &mut extra) {
            table.process(&p, decode::payload(&p, rest, &extra), &mut out);
            assert!(table.active() <= FLOW_CAP, "flow table over its cap");
        }
        rest = &rest[3 + len..];
    }
    table.drain(Timestamp(t), &mut out);
    assert_eq!(table.active(), 0, "flows left after the drain");
    for r in &out {
        serde_json::to_string(r).expect("a record serialises");
    }
    // Every output form writes one valid JSON object a record, whatever
    // the packets said.
    let obs = crate::output::observer::Observer::new(Some("fuzz"), &[]);
    for form in [
        crate::output::Format::Jsonl,
        crate::output::Format::Ocsf,
        crate::output::Format::Ecs,
        crate::output::Format::Eve,
    ] {
        let mut enc = crate::output::Encoding::new(form, &obs);
        let bytes = enc.encode(&out);
        let lines = bytes.split(|&b| b == b'\n').filter(|l| !l.is_empty());
        let mut n = 0;
        for l in lines {
            let v: serde_json::Value = serde_json::from_slice(l).expect("a form writes JSON");
            assert!(v.is_object(), "a form writes objects");
            n += 1;
        }
        assert_eq!(n, out.len(), "one line a record in {}", form.name());
    }
}

/// The same bytes as DHCPv4, DHCPv6, ARP and ICMPv6 (NDP) payloads, then
/// their evidence into a small device history: no panic, the caps hold.
pub fn device_evidence(data: &[u8]) {
    let mut out = Vec::new();
    let ts = Timestamp::from_secs(1);
    if let Some(d) = dhcp::parse(data) {
        evidence::from_dhcp4(&d, ts, &mut out);
    }
    if let Some(d) = dhcp6::parse(data) {
        evidence::from_dhcp6(&d, ts, Some([2, 0, 0, 0, 0, 1]), &mut out);
    }
    evidence::from_arp(data, ts, &mut out);
    evidence::from_ndp(data, "fe80::1".parse().expect("an address"), ts, &mut out);
    apply_evidence(&out);
}

fn apply_evidence(out: &[evidence::Evidence]) {
    let mut devices = Devices::new(SMALL_DEVICES, DeviceInputs::default());
    for e in out {
        let _ = devices.apply(e);
    }
    let c = devices.coverage();
    serde_json::to_string(&c).expect("coverage serialises");
}

/// One DHCPv4 payload (UDP 67/68): the parser's caps hold, the record part
/// serialises, and its evidence goes into a small device history.
pub fn dhcp4(data: &[u8]) {
    let Some(d) = dhcp::parse(data) else { return };
    // The parser's caps (MAX_OPTIONS and MAX_TEXT in app/dhcp.rs).
    assert!(d.options.len() <= 64, "options over the cap");
    for s in [&d.hostname, &d.vendor_class].into_iter().flatten() {
        assert!(s.chars().count() <= 255, "text over the cap");
    }
    serde_json::to_string(&d).expect("a DHCP record serialises");
    let mut out = Vec::new();
    evidence::from_dhcp4(&d, Timestamp::from_secs(1), &mut out);
    apply_evidence(&out);
}

/// One DHCPv6 payload (UDP 546/547): as [`dhcp4`], with the link-layer
/// source address of the packet as the fallback MAC.
pub fn dhcp6(data: &[u8]) {
    let Some(d) = dhcp6::parse(data) else { return };
    // The parser's caps (MAX_ADDRESSES and MAX_DUID in app/dhcp6.rs).
    assert!(d.ia_addresses.len() <= 16, "addresses over the cap");
    assert!(
        d.client_duid.as_ref().is_none_or(|h| h.len() <= 2 * 130),
        "DUID over the cap"
    );
    serde_json::to_string(&d).expect("a DHCPv6 record serialises");
    let mut out = Vec::new();
    evidence::from_dhcp6(
        &d,
        Timestamp::from_secs(1),
        Some([2, 0, 0, 0, 0, 1]),
        &mut out,
    );
    evidence::from_dhcp6(&d, Timestamp::from_secs(2), None, &mut out);
    apply_evidence(&out);
}

/// Chunks of a TCP connection's two byte streams, through the flow's
/// application state as the flow table feeds it (probe on the first bytes,
/// then the TLS record/handshake/alert state machine), then the fields of
/// the `tls` record built as `flow::table` builds them (hellos, JA3/JA4,
/// certificate chain, outcome summary).
///
/// Input: chunks of `[control u8][length u16 big-endian][bytes]`, the
/// length clamped to what is left. Control bits: 0 direction (0 client to
/// server, 1 server to client); 1 a gap of `length` bytes instead of data;
/// 2 the direction closes after this chunk, 3 with a RST; bits 4-7 the time
/// step before the chunk, in milliseconds.
pub fn tls_stream(data: &[u8]) {
    let mut app = AppState::new(64, true);
    let mut ctx = TlsCtx::default();
    let mut t = Timestamp(1_000_000_000);
    let mut rest = data;
    while rest.len() >= 3 {
        let c = rest[0];
        let len = (u16::from_be_bytes([rest[1], rest[2]]) as usize).min(rest.len() - 3);
        let bytes = &rest[3..3 + len];
        rest = &rest[3 + len..];
        t = Timestamp(t.0 + (c >> 4) as u64 * 1_000_000);
        let d = if c & 1 == 0 {
            Direction::ToServer
        } else {
            Direction::ToClient
        };
        if app.wants(d) {
            let ev = if c & 2 != 0 {
                StreamEvent::Gap(len as u64)
            } else {
                StreamEvent::Data(bytes)
            };
            app.on_stream(d, ev, t, &mut ctx);
        }
        if c & 4 != 0 {
            app.on_close(d, c & 8 != 0, t);
        }
    }
    let _ = app.payload_features(Direction::ToServer);
    let _ = app.payload_features(Direction::ToClient);
    let _ = app.service(true, 50_000, 443);
    if let Some(t) = app.tls() {
        tls_fields(t, &mut ctx, false);
        tls_fields(t, &mut ctx, true);
    }
}

/// Everything the `tls` record is built from a connection's TLS state
/// (`app::tls::record`), serialised, with the state's caps checked.
fn tls_fields(t: &TlsState, ctx: &mut TlsCtx, timed_out: bool) {
    assert!(
        t.client_hellos.len() <= tls::MAX_HELLOS,
        "hellos over the cap"
    );
    assert!(
        t.server_hellos.len() <= tls::MAX_HELLOS,
        "hellos over the cap"
    );
    assert!(t.alerts.len() <= tls::MAX_ALERTS, "alerts over the cap");
    // One close event per side may follow a full history.
    assert!(t.events.len() <= tls::MAX_EVENTS + 2, "events over the cap");
    let _ = (t.recognised(), t.first_record(), t.proxy_connect());
    // The record the flow table writes, built by the same function.
    let key = crate::flow::key::FlowKey::default();
    let id = crate::record::FlowId(0);
    if let Some(rec) = tls::record::record(t, ctx, &key, id, "1:", timed_out) {
        crate::record::Record::Tls(Box::new(rec)).write_json(&mut Vec::new());
    }
    for (_, ch) in &t.client_hellos {
        let fp = ch.fingerprints(&mut ctx.fingerprints);
        let versions: Vec<String> = ch
            .supported_versions
            .iter()
            .filter(|v| !is_grease(**v))
            .map(|v| version_name(*v))
            .collect();
        let _ = (
            version_name(ch.max_version()),
            versions,
            &fp.ja4,
            ch.ja4('q'),
        );
    }
    for (_, sh) in &t.server_hellos {
        let _ = (
            version_name(sh.version),
            format!("0x{:04x}", sh.cipher),
            sh.ja3s(),
            sh.ja3s_string(),
        );
    }
    if let Some(chain) = &t.certs {
        check_chain(chain);
    }
}

/// The body of a Certificate handshake message (after its 4-byte header),
/// parsed into the chain the `tls` record carries, directly and through the
/// worker's cache: the chain's caps hold and it serialises.
pub fn certificate(data: &[u8]) {
    let parsed = tls::cert::Chain::parse(data);
    if let Some(c) = &parsed {
        check_chain(c);
    }
    let mut cache = tls::BoundedCache::default();
    let cached = tls::cert::cached_chain(&mut cache, data);
    assert_eq!(
        cached.as_deref(),
        parsed.as_ref(),
        "the cache gives what parsing gives"
    );
}

fn check_chain(c: &tls::cert::Chain) {
    use tls::cert::{MAX_CERTS, MAX_SANS};
    assert!(c.chain.len() < MAX_CERTS, "chain over the cap");
    assert!(c.san.len() <= MAX_SANS, "SANs over the cap");
    assert!(c.unparsed <= c.chain_length, "more unparsed than read");
    for i in c.all() {
        for s in [&i.subject, &i.issuer].into_iter().flatten() {
            assert!(s.len() <= 256, "name over the cap");
        }
    }
    serde_json::to_string(c).expect("a chain serialises");
}

/// UTF-8 text, as the file loaders read it (they refuse anything else).
fn text(data: &[u8]) -> Option<&str> {
    std::str::from_utf8(data).ok()
}

/// A loader's result: the error list stays within its cap (one line per
/// entry up to `MAX_ERRORS`, then one that counts the rest).
fn check_loaded<T>(r: &Result<Loaded<T>, LoadError>) {
    if let Ok(l) = r {
        assert!(
            l.errors.len() <= inputs::leases::MAX_ERRORS + 1,
            "errors over the cap"
        );
        for e in &l.errors {
            let _ = e.to_string();
        }
    }
}

/// A DHCP lease file (ISC dhcpd, Kea CSV v4/v6 or dnsmasq; the loader sniffs
/// which), then the leases into the device tables.
pub fn leases(data: &[u8]) {
    let Some(s) = text(data) else { return };
    let r = inputs::leases::parse_str(s, "fuzz.leases");
    check_loaded(&r);
    if let Ok(l) = r {
        let inputs = DeviceInputs {
            leases: l.items,
            ..DeviceInputs::default()
        };
        let _ = Devices::new(SMALL_DEVICES, inputs).coverage();
    }
}

/// A FreeRADIUS accounting detail file, then the sessions into the device tables.
pub fn radius(data: &[u8]) {
    let Some(s) = text(data) else { return };
    let r = inputs::radius::parse_str(s, "fuzz.detail");
    check_loaded(&r);
    if let Ok(l) = r {
        let inputs = DeviceInputs {
            radius: l.items,
            ..DeviceInputs::default()
        };
        let _ = Devices::new(SMALL_DEVICES, inputs).coverage();
    }
}

/// An MDM inventory export (blindspot's own shape, Jamf Pro, Jamf Classic,
/// Intune), then the devices into the device tables.
pub fn mdm(data: &[u8]) {
    let Some(s) = text(data) else { return };
    let r = inputs::mdm::parse_str(s, "fuzz.json");
    check_loaded(&r);
    if let Ok(l) = r {
        let inputs = DeviceInputs {
            mdm: l.items,
            ..DeviceInputs::default()
        };
        let _ = Devices::new(SMALL_DEVICES, inputs).coverage();
    }
}

/// An app catalog (blindspot's own shape or a MobSF report).
pub fn catalog(data: &[u8]) {
    let Some(s) = text(data) else { return };
    check_loaded(&inputs::catalog::parse_str(s, "fuzz.json"));
}

/// App lifecycle events, JSON Lines.
pub fn app_events(data: &[u8]) {
    let Some(s) = text(data) else { return };
    let r = inputs::app_events::parse_str(s, "fuzz.jsonl");
    check_loaded(&r);
    if let Ok(l) = r {
        assert!(
            l.items.windows(2).all(|w| w[0].ts <= w[1].ts),
            "events out of time order"
        );
    }
}

/// The TOML configuration, as `blindspot config check` reads it: parse,
/// then validate. The inspection CA files it names are not read (the
/// fuzzer must not open the host's files); everything else is checked.
pub fn config(data: &[u8]) {
    let Some(s) = text(data) else { return };
    let Ok(mut raw) = crate::config::RawConfig::parse(s, "fuzz.toml") else {
        return;
    };
    raw.inspection.ca_files.clear();
    if let Err(e) = raw.validate() {
        let _ = e.to_string();
    }
}

/// A baseline file (zstd-compressed JSON) as `--baseline` loads it.
pub fn baseline(data: &[u8]) {
    if let Ok(b) = crate::detect::baseline::Baseline::from_bytes(data, "fuzz.baseline") {
        let _ = b.len();
    }
}
