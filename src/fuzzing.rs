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

use crate::app::parser::{Cx, ParserSet, Shared, Transport};
use crate::app::tls::hello::{is_grease, version_name};
use crate::app::tls::{self, TlsCtx, TlsState};
use crate::app::{AppState, dhcp, dhcp6, dns, evidence};
use crate::capture::FrameRef;
use crate::capture::pcap_file::CaptureReader;
use crate::correlate::devices::{DeviceInputs, DeviceLimits, Devices};
use crate::decode::{self, Decoder};
use crate::flow::FlowSettings;
use crate::flow::key::{Direction, FlowKey};
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

/// Replay's decoders hand fragments on (`Decoder::defer_fragments`) and the
/// workers reassemble them (`Decoder::reassemble`): on any sequence of
/// frames that must give exactly the packets, payloads and counters of one
/// decoder that reassembles inline. Input: two bytes of link type, then
/// frames as `[len: u16 le][bytes]` (at most 64).
pub fn decode_deferred(data: &[u8]) {
    if data.len() < 2 {
        return;
    }
    let linktype = u16::from_le_bytes([data[0], data[1]]) % 300;
    let mut frames = Vec::new();
    let mut at = 2usize;
    while frames.len() < 64 && at + 2 <= data.len() {
        let len = u16::from_le_bytes([data[at], data[at + 1]]) as usize;
        let start = at + 2;
        let end = start.saturating_add(len).min(data.len());
        frames.push(FrameRef {
            ts: Timestamp(1 + frames.len() as u64),
            offset: start as u32,
            caplen: (end - start) as u32,
            wire_len: (end - start) as u32,
            linktype,
        });
        at = end;
    }
    let seen = |p: &crate::decode::Packet, extra: &[u8]| {
        (
            p.ts,
            p.key,
            p.wire_len,
            p.payload_wire_len,
            decode::payload(p, data, extra).to_vec(),
        )
    };
    let mut inline = Decoder::default();
    let mut extra = Vec::new();
    let mut want = Vec::new();
    for f in &frames {
        if let Some(p) = inline.decode(data, f, &mut extra) {
            want.push(seen(&p, &extra));
        }
    }
    let mut first = Decoder {
        defer_fragments: true,
        ..Decoder::default()
    };
    let mut later = Decoder::default();
    let (mut unused, mut extra2) = (Vec::new(), Vec::new());
    let mut got = Vec::new();
    for f in &frames {
        let before = first.deferred.len();
        if let Some(p) = first.decode(data, f, &mut unused) {
            got.push(seen(&p, &[]));
        }
        for d in &first.deferred[before..] {
            if let Some(p) = later.reassemble(d, data, &mut extra2) {
                got.push(seen(&p, &extra2));
            }
        }
    }
    assert_eq!(want, got);
    assert!(unused.is_empty());
    let mut stats = first.stats.clone();
    stats.merge(&later.stats);
    assert_eq!(stats.skipped, inline.stats.skipped);
    assert_eq!(
        stats.fragments_reassembled,
        inline.stats.fragments_reassembled
    );
}

/// One tunnel payload: `[carrier][bytes]`, the carrier (modulo 11) picks
/// what the bytes follow: IPv4 protocol 47 (GRE), 4 (IPIP) or 41 (6in4);
/// UDP to 4789, 6081, 2152 or 5247; EtherType 0x8847, 0x8864 or 0x8909;
/// IPv6 protocol 47. Decode must not panic, peel at most
/// `tunnel::MAX_DEPTH` layers and keep the payload inside the frame.
pub fn tunnel(data: &[u8]) {
    use crate::decode::tunnel::MAX_DEPTH;
    let Some((&carrier, body)) = data.split_first() else {
        return;
    };
    let eth = |et: u16| {
        let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1];
        f.extend_from_slice(&et.to_be_bytes());
        f
    };
    let ipv4 = |proto: u8, len: usize| {
        let mut f = eth(0x0800);
        let total = (20 + len).min(0xffff) as u16;
        f.extend_from_slice(&[0x45, 0, 0, 0, 0, 0, 0, 0, 64, proto, 0, 0]);
        f[16..18].copy_from_slice(&total.to_be_bytes());
        f.extend_from_slice(&[10, 0, 0, 1, 10, 0, 0, 2]);
        f
    };
    let udp4 = |dport: u16, len: usize| {
        let mut f = ipv4(17, len + 8);
        f.extend_from_slice(&[0xc3, 0x50]);
        f.extend_from_slice(&dport.to_be_bytes());
        f.extend_from_slice(&((len + 8).min(0xffff) as u16).to_be_bytes());
        f.extend_from_slice(&[0, 0]);
        f
    };
    let mut frame = match carrier % 11 {
        0 => ipv4(47, body.len()),
        1 => ipv4(4, body.len()),
        2 => ipv4(41, body.len()),
        3 => udp4(4789, body.len()),
        4 => udp4(6081, body.len()),
        5 => udp4(2152, body.len()),
        6 => udp4(5247, body.len()),
        7 => eth(0x8847),
        8 => eth(0x8864),
        9 => eth(0x8909),
        _ => {
            let mut f = eth(0x86dd);
            f.extend_from_slice(&[0x60, 0, 0, 0]);
            f.extend_from_slice(&(body.len().min(0xffff) as u16).to_be_bytes());
            f.extend_from_slice(&[47, 64]);
            f.extend_from_slice(&[0xfd; 32]);
            f
        }
    };
    frame.extend_from_slice(body);
    let fr = FrameRef {
        ts: Timestamp(1),
        offset: 0,
        caplen: frame.len() as u32,
        wire_len: frame.len() as u32,
        linktype: crate::capture::linktype::ETHERNET,
    };
    let mut d = Decoder::default();
    let mut extra = Vec::new();
    if let Some(p) = d.decode(&frame, &fr, &mut extra) {
        assert!(p.encap.layers().len() <= MAX_DEPTH);
        assert_eq!(p.encap.is_empty(), p.key.tunnel == 0);
        let src = if p.payload.in_extra { &extra } else { &frame };
        assert!(p.payload.offset as usize + p.payload.len as usize <= src.len());
    }
}

/// A whole capture file (pcap, pcapng, compressed, or garbage): the reader
/// ends with records or an error, never a panic or a hang; and the same
/// file read by two loader threads (replay's way with a plain file) gives
/// the same frames and the same error as read in order.
pub fn capture_file(data: &[u8]) {
    let Ok(r) =
        CaptureReader::from_reader("fuzz".into(), Box::new(std::io::Cursor::new(data.to_vec())))
    else {
        return;
    };
    let in_order = read_frames(r.with_chunk_size(97));
    let path = std::env::temp_dir().join(format!(
        "blindspot-fuzz-capture-{}-{:?}.pcap",
        std::process::id(),
        std::thread::current().id()
    ));
    if std::fs::write(&path, data).is_err() {
        return;
    }
    let loaded = CaptureReader::open_loaded(&path, 2).map(|r| read_frames(r.with_chunk_size(97)));
    let _ = std::fs::remove_file(&path);
    if let Ok(loaded) = loaded {
        assert!(loaded == in_order, "loaders and the in-order read differ");
    }
}

/// Every frame (time, bytes, length on the wire) and the error that ended
/// the reading, as text; at most 10 000 blocks.
type ReadFrames = (Vec<(u64, Vec<u8>, u32)>, Option<String>);

fn read_frames(mut r: CaptureReader) -> ReadFrames {
    let mut frames = Vec::new();
    for _ in 0..10_000 {
        match r.next_chunk() {
            Ok(Some(c)) => {
                for f in &c.frames {
                    frames.push((f.ts.0, c.frame_bytes(f).to_vec(), f.wire_len));
                }
            }
            Ok(None) => return (frames, None),
            Err(e) => return (frames, Some(e.to_string())),
        }
    }
    (frames, None)
}

/// Ethernet frames through one flow table holding at most [`FLOW_CAP`]
/// flows. Records: `[frame length, u16 big-endian][time step, u8, in 0.1 s][frame]`
/// (the length is clamped to what is left). No panic, the cap holds, the
/// index of open flows by start follows the table, and every record the
/// table writes serialises.
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
            // The index of open flows by start follows the table.
            assert_eq!(table.oldest_open().is_some(), table.active() > 0);
        }
        rest = &rest[3 + len..];
    }
    table.drain(Timestamp(t), &mut out);
    assert_eq!(table.active(), 0, "flows left after the drain");
    assert_eq!(
        table.oldest_open(),
        None,
        "open starts left after the drain"
    );
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

/// The `[control u8][length u16 big-endian][bytes]` chunks of a stream
/// input (the length clamped to what is left): the control byte, the
/// direction of its bit 0 (0 client to server), the bytes, and what a
/// stream parser is fed: the bytes, or with bit 1 a gap of their length.
fn chunks(mut rest: &[u8]) -> impl Iterator<Item = (u8, Direction, &[u8], StreamEvent<'_>)> {
    std::iter::from_fn(move || {
        let (&c, tail) = rest.split_first()?;
        let (len, tail) = tail.split_first_chunk::<2>()?;
        let len = (u16::from_be_bytes(*len) as usize).min(tail.len());
        let (bytes, tail) = tail.split_at(len);
        rest = tail;
        let d = if c & 1 == 0 {
            Direction::ToServer
        } else {
            Direction::ToClient
        };
        let ev = if c & 2 != 0 {
            StreamEvent::Gap(len as u64)
        } else {
            StreamEvent::Data(bytes)
        };
        Some((c, d, bytes, ev))
    })
}

/// What the flow table hands a parser with stream bytes at `t`.
fn stream_cx<'a>(
    t: Timestamp,
    key: &'a FlowKey,
    shared: &'a mut Shared,
    out: &'a mut Vec<crate::record::Record>,
) -> Cx<'a> {
    Cx {
        ts: t,
        packet: None,
        key,
        start: Timestamp(1_000_000_000),
        shared,
        out,
    }
}

/// DNS messages of one flow through the DNS parser, then the correlator's
/// passive-DNS map: the caps hold and every record serialises.
///
/// Input: the first byte's bit 0 picks the transport (0 UDP: each chunk a
/// datagram; 1 TCP: each chunk stream bytes, framed by the parser); then
/// chunks of `[control u8][length u16 big-endian][bytes]`, the length
/// clamped to what is left. Control bits: 0 direction (0 client to
/// server); 1 a gap instead of data (TCP); bits 4-7 the time step, seconds.
pub fn dns(data: &[u8]) {
    use crate::app::parser::Parser;
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let tcp = first & 1 == 1;
    let key = FlowKey {
        src: crate::flow::key::Addr::v4([192, 0, 2, 10]),
        dst: crate::flow::key::Addr::v4([192, 0, 2, 1]),
        sport: 40_000,
        dport: 53,
        proto: if tcp { 6 } else { 17 },
        ..FlowKey::default()
    };
    let mut st = dns::DnsState::new(if tcp { Transport::Tcp } else { Transport::Udp });
    let mut shared = Shared::default();
    let mut out = Vec::new();
    let mut t = Timestamp(1_000_000_000);
    for (c, d, bytes, ev) in chunks(rest) {
        t = Timestamp(t.0 + (c >> 4) as u64 * 1_000_000_000);
        if !tcp {
            st.datagram(d, bytes, t, &key, &mut out);
        } else if st.wants(d) {
            st.feed(d, ev, &mut stream_cx(t, &key, &mut shared, &mut out));
        }
        let (pending, partial) = st.held();
        assert!(pending <= dns::MAX_OUTSTANDING, "queries over the cap");
        assert!(partial <= 2 + 65_535, "a cut message over the largest");
    }
    let community_id = "".into();
    let mut end = crate::app::parser::End {
        key: &key,
        flow_id: crate::record::FlowId(1),
        community_id: &community_id,
        timed_out: false,
        shared: &mut shared,
        out: &mut out,
    };
    st.finish(&mut end);
    let mut names = crate::correlate::names::Names::with_cap(4);
    for r in &out {
        let crate::record::Record::Dns(d) = r else {
            panic!("the DNS parser wrote a {} record", r.kind());
        };
        assert!(d.answers.len() <= dns::MAX_ANSWERS, "answers over the cap");
        for s in d.query.iter().chain(d.answers.iter().map(|a| &a.name)) {
            assert!(s.len() <= dns::MAX_TEXT, "a name over the cap");
        }
        let mut line = Vec::new();
        r.write_json(&mut line);
        let asker = crate::correlate::names::Asker::Ip(d.src_ip);
        names.learn(d, asker);
    }
    assert!(names.entries() <= 4, "passive-DNS map over its cap");
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
    tls_stream_to(data, 443);
}

/// TLS after a plaintext start (`app::tls::upgrade`): the first byte picks
/// the server's port among those that choose a prelude by port; the rest
/// is [`tls_stream`]'s input.
pub fn tls_upgrade(data: &[u8]) {
    const PORTS: [u16; 12] = [21, 24, 25, 110, 143, 389, 587, 1080, 3306, 5222, 5432, 8080];
    let Some((pick, rest)) = data.split_first() else {
        return;
    };
    tls_stream_to(rest, PORTS[usize::from(*pick) % PORTS.len()]);
}

fn tls_stream_to(data: &[u8], dport: u16) {
    let key = FlowKey {
        sport: 50_000,
        dport,
        proto: 6,
        ..FlowKey::default()
    };
    let enabled = ParserSet::enabled(&FlowSettings::default(), Transport::Tcp);
    let mut app = AppState::new(64, enabled);
    let mut shared = Shared::default();
    let mut out = Vec::new();
    let mut t = Timestamp(1_000_000_000);
    for (c, d, _, ev) in chunks(data) {
        t = Timestamp(t.0 + (c >> 4) as u64 * 1_000_000);
        if app.wants(d) {
            app.on_stream(d, ev, &mut stream_cx(t, &key, &mut shared, &mut out));
        }
        if c & 4 != 0 {
            app.on_close(d, c & 8 != 0, t);
        }
    }
    let _ = app.payload_features(Direction::ToServer);
    let _ = app.payload_features(Direction::ToClient);
    let _ = app.service(true, 50_000, dport);
    let _ = app.limits();
    if let Some(t) = app.parser::<TlsState>() {
        tls_fields(t, &mut shared.tls, false);
        tls_fields(t, &mut shared.tls, true);
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
    let _ = (
        t.recognised(),
        t.first_record(),
        t.proxy_connect(),
        t.upgrade(),
    );
    if let Some(p) = &t.prelude {
        assert!(
            p.heap_bytes() <= 2 * tls::upgrade::MAX_PRELUDE + 1024,
            "prelude over the cap"
        );
    }
    // The record the flow table writes, built by the same function.
    let key = crate::flow::key::FlowKey::default();
    let id = crate::record::FlowId(0);
    if let Some(rec) = tls::record::record(t, ctx, &key, id, &"1:".into(), timed_out) {
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

/// An inspecting proxy's log (any of the six products), then the join
/// index built from its entries.
pub fn proxy_log(data: &[u8]) {
    let Some(s) = text(data) else { return };
    let r = inputs::proxylog::parse_str(s, "fuzz.log");
    check_loaded(&r);
    if let Ok(l) = r {
        assert!(
            l.items.windows(2).all(|w| w[0].ts <= w[1].ts),
            "entries out of time order"
        );
        assert!(
            l.items.iter().all(|e| e.ts <= e.end_ts),
            "entry ends before it starts"
        );
        let ix = crate::correlate::proxylog::ProxyIndex::new(std::sync::Arc::new(l.items));
        assert_eq!(ix.counters[2].1, 0);
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

/// QUIC datagrams of one UDP flow, fed as the flow table feeds them, then
/// the `tls` record built and serialised; the QUIC state stays within its
/// caps.
///
/// Input: chunks of `[control u8][length u16 big-endian][bytes]`, the
/// length clamped to what is left. Control bits: 0 direction (0 client to
/// server); 1 the bytes are an Initial's plaintext frames, sealed here into
/// a valid Initial (v1, or v2 with bit 2) for DCID `8394c8f03e515708` with
/// packet number bits 4-7 (so the fuzzer reaches the frame walk, CRYPTO
/// reassembly and hello parsing past the AEAD); else the bytes are the
/// datagram as is.
pub fn quic(data: &[u8]) {
    use crate::app::quic::{self, frames, initial};
    const DCID: [u8; 8] = [0x83, 0x94, 0xc8, 0xf0, 0x3e, 0x51, 0x57, 0x08];
    let key = FlowKey {
        sport: 50_000,
        dport: 443,
        proto: 17,
        ..FlowKey::default()
    };
    let enabled = ParserSet::enabled(&FlowSettings::default(), Transport::Udp);
    let mut app = AppState::new(64, enabled);
    let mut shared = Shared::default();
    let mut out = Vec::new();
    let mut t = Timestamp(1_000_000_000);
    let mut rest = data;
    while rest.len() >= 3 {
        let c = rest[0];
        let len = (u16::from_be_bytes([rest[1], rest[2]]) as usize).min(rest.len() - 3);
        let bytes = &rest[3..3 + len];
        rest = &rest[3 + len..];
        t = Timestamp(t.0 + 1_000_000);
        let d = if c & 1 == 0 {
            Direction::ToServer
        } else {
            Direction::ToClient
        };
        let sealed;
        let datagram = if c & 2 != 0 {
            let v = initial::Version::of(if c & 4 != 0 {
                initial::VERSION_2
            } else {
                initial::VERSION_1
            })
            .expect("a known version");
            let keys = initial::Keys::initial(v, &DCID);
            let (dcid, scid): (&[u8], &[u8]) = if c & 1 == 0 {
                (&DCID, &[1, 2, 3, 4])
            } else {
                (&[1, 2, 3, 4], &[5, 6, 7, 8])
            };
            let pn = u64::from(c >> 4);
            let h = initial::initial_header(v, dcid, scid, pn, 2, bytes.len());
            sealed = initial::seal(&keys[d.index()], &h, pn, 2, bytes);
            &sealed[..]
        } else {
            bytes
        };
        if app.wants(d) {
            let mut cx = Cx {
                ts: t,
                packet: None,
                key: &key,
                start: Timestamp(1_000_000_000),
                shared: &mut shared,
                out: &mut out,
            };
            app.on_stream(d, StreamEvent::Data(datagram), &mut cx);
        }
    }
    let _ = app.service(false, 50_000, 443);
    let ctx = &mut shared.tls;
    if let Some(q) = app.parser::<quic::QuicState>() {
        assert!(
            q.heap_bytes() <= 2 * (frames::MAX_CRYPTO + 64 * frames::MAX_RANGES) + (16 << 10),
            "QUIC state over its caps"
        );
        for timed_out in [false, true] {
            if let Some(rec) = quic::record(
                q,
                ctx,
                &key,
                crate::record::FlowId(0),
                &"1:".into(),
                timed_out,
            ) {
                crate::record::Record::Tls(Box::new(rec)).write_json(&mut Vec::new());
            }
        }
    }
}

/// A fleet message body as `blindspot correlate` reads it from the stream
/// (JSON Lines of session, device, coverage and stats envelopes): the
/// sessions read back, go on the wire again and read back the same count,
/// then run through a detector with small caps.
pub fn fleet_message(data: &[u8]) {
    use crate::fleet::wire;
    // The same bytes as a `Content-Encoding: zstd` body: capped at what a
    // message may hold, whatever the frame claims.
    if let Some(plain) = wire::body(data, Some(wire::ZSTD)) {
        assert!(plain.len() <= wire::MAX_BODY);
        let mut bad = 0;
        let _ = wire::read_sessions(&plain, &|_| None, &mut bad);
    }
    let mut bad = 0;
    let sessions = wire::read_sessions(data, &|_| None, &mut bad);
    let mut out = Vec::new();
    for s in &sessions {
        wire::push_session(&mut out, s);
    }
    let mut bad_again = 0;
    let mut again = wire::read_sessions(&out, &|_| None, &mut bad_again);
    assert_eq!((again.len(), bad_again), (sessions.len(), 0));
    let settings = crate::detect::DetectSettings {
        max_keys: 8,
        max_sessions_per_key: 8,
        max_flow_ids: 4,
        ..crate::detect::DetectSettings::default()
    };
    let mut d = crate::detect::Detector::new(
        std::sync::Arc::new(settings),
        crate::detect::context::Apps::new(Vec::new(), &[]),
        None,
        false,
    );
    for r in d.push(&mut again).into_iter().chain(d.finish()) {
        let _ = serde_json::to_vec(&r).expect("a detection serialises");
    }
}

/// Fuzz body: two fleet-state values (`fleet/state.rs`) from the key-value
/// buckets, one per line, read as each kind of value. Each parses within
/// its caps or is refused; the merge of two is the same either way round,
/// and merging again changes nothing; a merged value serialises within
/// the bucket's value size when its parts did. The input as a key stays in
/// the KV key alphabet.
#[cfg(feature = "fleet")]
pub fn fleet_state(data: &[u8]) {
    use crate::fleet::state::{self, BaselineValue, CaValue, Merge, ProxyValue, Sighting};
    /// `same` gives the second value the first one's key fields (subject,
    /// JA3S, device): the buckets merge the values of one key only.
    fn check<V: Merge + std::fmt::Debug>(
        a: &[u8],
        b: &[u8],
        caps: fn(&V) -> bool,
        same: fn(&mut V, &V),
    ) {
        let (Some(x), y) = (state::parse::<V>(a), state::parse::<V>(b)) else {
            return;
        };
        assert!(caps(&x), "{x:?}");
        let mut again = x.clone();
        again.merge(&x);
        assert_eq!(again, x, "merge is idempotent");
        let Some(mut y) = y else {
            return;
        };
        same(&mut y, &x);
        let (mut xy, mut yx) = (x.clone(), y.clone());
        xy.merge(&y);
        yx.merge(&x);
        assert_eq!(xy, yx, "merge is commutative");
        let _ = serde_json::to_vec(&xy).expect("a value serialises");
        assert!(caps(&xy), "{xy:?}");
        let mut xyy = xy.clone();
        xyy.merge(&y);
        assert_eq!(xyy, xy, "merging again changes nothing");
    }
    let (a, b) = match data.iter().position(|&c| c == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    check::<CaValue>(
        a,
        b,
        |v| v.domains.len() <= state::MAX_DOMAINS && v.sensors.len() <= state::MAX_SENSORS,
        |y, x| {
            y.subject.clone_from(&x.subject);
            y.key_id.clone_from(&x.key_id);
        },
    );
    check::<ProxyValue>(
        a,
        b,
        |v| {
            v.destinations.len() <= state::MAX_DESTINATIONS && v.sensors.len() <= state::MAX_SENSORS
        },
        |y, x| {
            y.ja3s.clone_from(&x.ja3s);
            y.tls13 = x.tls13;
        },
    );
    check::<Sighting>(
        a,
        b,
        |v| v.sensors.len() <= state::MAX_SENSORS,
        |y, x| y.device.clone_from(&x.device),
    );
    check::<BaselineValue>(
        a,
        b,
        |v| v.sensors.len() <= state::MAX_SENSORS,
        |y, x| {
            y.ja4.clone_from(&x.ja4);
            y.destination.clone_from(&x.destination);
        },
    );
    if let Some(v) = state::parse::<BaselineValue>(a) {
        let e = v.combined();
        assert_eq!(
            e.sessions,
            v.sensors
                .values()
                .fold(0u64, |n, b| n.saturating_add(b.entry.sessions))
        );
    }
    let key = state::kv_key(&String::from_utf8_lossy(data));
    assert!(
        !key.is_empty()
            && key.len() <= 600
            && key
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || b"-_/=".contains(&c)),
        "{key}"
    );
}
