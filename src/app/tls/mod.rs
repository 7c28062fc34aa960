//! TLS over any TCP port: record framing, handshake defragmentation, hellos,
//! alerts.
//!
//! The parser reads record headers of both directions from the reassembled
//! stream. Handshake records are defragmented (across records and TCP
//! segments) into a buffer capped at [`MAX_HANDSHAKE`] bytes per direction
//! (overflow is counted in `handshake_overflow`); ClientHello and ServerHello
//! are parsed from it. After a direction's ChangeCipherSpec, or for TLS 1.3
//! once the ServerHello is seen, its records are only counted by type and
//! length, never buffered: that is what the outcome rules need, and the
//! closing alerts (close_notify, or a fatal one) come last. Walking record
//! headers copies nothing (in-order segments pass straight through the
//! reassembler), so it continues for the life of the connection, unless the
//! bytes stop looking like TLS records.

pub mod cert;
pub mod hello;
pub mod record;
pub mod summary;
pub mod upgrade;

use crate::app::parser::{Cx, End, Parser, Registration, Transport};
use crate::flow::key::Direction;
use crate::flow::reassembly::StreamEvent;
use crate::time::Timestamp;
use hello::{ClientHello, ServerHello};
use serde::Serialize;

/// Handshake bytes buffered per direction (a ClientHello with a post-quantum
/// key share is ~1.8 KiB; certificate chains reach tens of KiB).
pub const MAX_HANDSHAKE: usize = 64 << 10;
/// Largest record length accepted (2^14 plus the 2048 bytes of expansion
/// TLS 1.2 allows); anything longer means this is not TLS.
pub const MAX_RECORD: usize = (1 << 14) + 2048;
/// Hellos kept per side (a HelloRetryRequest makes two); the rest are dropped.
pub const MAX_HELLOS: usize = 4;
/// Alerts kept per connection.
pub const MAX_ALERTS: usize = 16;

pub const CT_CCS: u8 = 20;
pub const CT_ALERT: u8 = 21;
pub const CT_HANDSHAKE: u8 = 22;
pub const CT_APP_DATA: u8 = 23;
/// Not a TLS content type: the body of an SSLv2-compatible hello, skipped.
const SSLV2_HELLO: u8 = 0x80;

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Alert {
    /// `client` or `server`.
    pub from: &'static str,
    pub ts: Timestamp,
    /// Record length (2 for a cleartext alert; the protected size otherwise).
    pub record_length: u16,
    pub encrypted: bool,
    /// True when no alert record was seen and the alert is inferred from a
    /// protected TLS 1.3 record's size (see the README's outcome rules).
    pub inferred: bool,
    pub level: Option<u8>,
    pub description: Option<u8>,
    /// The IANA name of `description` (`handshake_failure`, `unknown_ca`, ...).
    pub description_name: Option<&'static str>,
}

/// What one record (or handshake message) was, for the outcome rules and
/// the history string.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ev {
    /// A cleartext handshake message of this type.
    Hs(u8),
    /// A ServerHello that is a HelloRetryRequest.
    Hrr,
    /// A handshake record after the sender's ChangeCipherSpec (TLS <= 1.2:
    /// its Finished).
    ProtectedHs,
    Ccs,
    /// An alert record (content type 21). `fatal` is level 2 when readable.
    Alert {
        encrypted: bool,
        fatal: bool,
    },
    /// A run of consecutive application_data records from one side.
    Data {
        first_len: u16,
        count: u32,
    },
    Heartbeat,
    /// The sender's first TCP FIN or RST.
    Close {
        rst: bool,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event {
    /// 0 client, 1 server.
    pub from: u8,
    pub ts: Timestamp,
    pub ev: Ev,
}

/// Events kept per connection. A handshake takes about 15; after the cap
/// only counters move (`events_truncated`), which the outcome rules allow
/// for: they are decided by the first events.
pub const MAX_EVENTS: usize = 48;

#[derive(Debug, Default)]
struct Side {
    hdr: [u8; 5],
    hdr_len: usize,
    /// Payload bytes left in the current record.
    remaining: usize,
    rtype: u8,
    rversion: u16,
    rlen: usize,
    hs: Vec<u8>,
    alert: Vec<u8>,
    ccs: bool,
    app_records: u32,
    last_app: Option<(u16, Timestamp)>,
    records: u32,
    first_ts: Option<Timestamp>,
    closed: bool,
}

impl TlsState {
    /// What the outcome rules need besides the events (`summary`);
    /// `timed_out` when the flow ended by its idle timeout.
    pub fn facts(&self, timed_out: bool) -> summary::Facts {
        summary::Facts {
            tls13: self.tls13(),
            app_records: [
                self.app_records(Direction::ToServer),
                self.app_records(Direction::ToClient),
            ],
            last_app: [
                self.last_app(Direction::ToServer),
                self.last_app(Direction::ToClient),
            ],
            timed_out,
        }
    }

    /// Bytes this state holds on the heap, about (for `flow.memcap`).
    pub fn heap_bytes(&self) -> usize {
        use std::mem::size_of;
        let sides: usize = self
            .side
            .iter()
            .map(|s| s.hs.capacity() + s.alert.capacity())
            .sum();
        let connect = self
            .prelude
            .as_ref()
            .map_or(0, |p| size_of::<upgrade::Prelude>() + p.heap_bytes());
        size_of::<TlsState>()
            + sides
            + connect
            + self.client_hellos.capacity() * size_of::<(Timestamp, ClientHello)>()
            + self.server_hellos.capacity() * size_of::<(Timestamp, ServerHello)>()
            + self.alerts.capacity() * size_of::<Alert>()
            + self.events.capacity() * size_of::<Event>()
    }
}

/// Per-connection TLS state.
#[derive(Debug, Default)]
pub struct TlsState {
    side: [Side; 2],
    /// The first bytes were not a TLS record: give up.
    pub not_tls: bool,
    pub sslv2_hello: bool,
    pub client_hellos: Vec<(Timestamp, ClientHello)>,
    pub server_hellos: Vec<(Timestamp, ServerHello)>,
    pub alerts: Vec<Alert>,
    pub events: Vec<Event>,
    pub events_truncated: bool,
    /// The server's certificate chain (TLS <= 1.2, or any cleartext one).
    pub certs: Option<std::sync::Arc<cert::Chain>>,
    pub handshake_overflow: bool,
    pub malformed: bool,
    /// A plaintext start in front of the TLS (STARTTLS and the like, a
    /// SOCKS or HTTP CONNECT tunnel): `upgrade.rs`.
    pub prelude: Option<Box<upgrade::Prelude>>,
    /// Why the prelude ended without TLS.
    pub prelude_stop: Option<upgrade::Stop>,
    /// When the first packet of a handshake carried another way (QUIC) was
    /// seen: the record's time when no hello was read.
    pub first_seen: Option<Timestamp>,
}

impl TlsState {
    /// Do the first client bytes look like TLS? (record type 20–23, major
    /// version 3), or an SSLv2-compatible ClientHello (RFC 6101 appendix E:
    /// 2-byte header with the top bit set, message type 1, version 3.x).
    pub fn probe(first: &[u8]) -> bool {
        matches!(first, [20..=23, 3, ..]) || matches!(first, [20..=23]) || is_sslv2_hello(first)
    }

    /// The plaintext prelude to read first, if the flow's first payload
    /// (from the client: `dir` 0) or the server's port says one.
    pub fn prelude_kind(
        first: &[u8],
        dir: usize,
        server_port: u16,
    ) -> Option<(upgrade::Kind, u16)> {
        if Self::probe(first) {
            return None;
        }
        upgrade::Kind::probe(first, dir, server_port).map(|k| (k, server_port))
    }

    /// State for a stream whose first bytes passed [`TlsState::probe`] or
    /// named a prelude.
    pub fn new(prelude: Option<(upgrade::Kind, u16)>) -> Self {
        TlsState {
            prelude: prelude.map(|(k, port)| Box::new(upgrade::Prelude::new(k, port))),
            ..TlsState::default()
        }
    }

    /// What came before the TLS (`smtp`, `socks5`, `http_connect`, ...),
    /// once the server agreed.
    pub fn upgrade(&self) -> Option<&'static str> {
        self.prelude
            .as_ref()
            .filter(|p| p.upgraded())
            .map(|p| p.name())
    }

    /// `host:port` of the CONNECT (HTTP or SOCKS) that opened the tunnel,
    /// once it succeeded.
    pub fn proxy_connect(&self) -> Option<&str> {
        self.prelude
            .as_ref()
            .filter(|p| p.upgraded())
            .and_then(|p| p.target.as_deref())
    }

    /// TLS wants the stream of both directions until it stops looking like TLS.
    pub fn wants(&self) -> bool {
        !self.not_tls
    }

    /// TLS 1.3 (or later) was chosen: after the ServerHello everything is protected.
    pub fn tls13(&self) -> bool {
        self.server_hellos
            .last()
            .is_some_and(|(_, s)| s.version >= 0x0304 && !s.hello_retry_request)
    }

    fn push_event(&mut self, from: usize, ts: Timestamp, ev: Ev) {
        let from = from as u8;
        // Consecutive application_data records from one side are one event.
        if let (
            Ev::Data { .. },
            Some(Event {
                from: f,
                ev: Ev::Data { count, .. },
                ..
            }),
        ) = (ev, self.events.last_mut())
            && *f == from
        {
            *count += 1;
            return;
        }
        if self.events.len() < MAX_EVENTS || matches!(ev, Ev::Close { .. }) {
            self.events.push(Event { from, ts, ev });
        } else {
            self.events_truncated = true;
        }
    }

    /// The side's first FIN or RST (called after that packet's payload was fed).
    pub fn on_close(&mut self, d: Direction, rst: bool, ts: Timestamp) {
        let i = d.index();
        if !self.side[i].closed {
            self.side[i].closed = true;
            self.push_event(i, ts, Ev::Close { rst });
        }
    }

    pub fn feed(&mut self, d: Direction, data: &[u8], ts: Timestamp, ctx: &mut TlsCtx) {
        let i = d.index();
        let Some(p) = self.prelude.as_mut().filter(|p| !p.passing(i)) else {
            return self.records(i, data, ts, ctx);
        };
        if let Err(stop) = p.feed(i, data) {
            p.free();
            self.prelude_stop = Some(stop);
            self.not_tls = true;
            return;
        }
        // The client's bytes first: its hello precedes the server's.
        let rest = [p.take(0), p.take(1)];
        for (j, b) in rest.into_iter().enumerate() {
            if let Some(b) = b {
                self.records(j, &b, ts, ctx);
            }
        }
    }

    /// TLS records of direction `i`.
    fn records(&mut self, i: usize, mut data: &[u8], ts: Timestamp, ctx: &mut TlsCtx) {
        while !data.is_empty() && !self.not_tls {
            let tls13_started = self.server_hellos.iter().any(|(_, h)| h.version >= 0x0304);
            let s = &mut self.side[i];
            if s.remaining == 0 {
                // Collect the 5-byte record header.
                let take = (5 - s.hdr_len).min(data.len());
                s.hdr[s.hdr_len..s.hdr_len + take].copy_from_slice(&data[..take]);
                s.hdr_len += take;
                data = &data[take..];
                if s.hdr_len < 5 {
                    return;
                }
                s.hdr_len = 0;
                let h = s.hdr;
                let len = u16::from_be_bytes([h[3], h[4]]) as usize;
                if !(CT_CCS..=24).contains(&h[0]) || h[1] != 3 || len > MAX_RECORD {
                    if s.records == 0 && i == 0 && is_sslv2_hello(&h) {
                        // RFC 6101 E.1: the hello is the client's first and
                        // only SSLv2 record; TLS records follow it (the
                        // server answers with a TLS ServerHello). Skipped,
                        // not parsed: its body is the 2-byte length's.
                        let body = (usize::from(h[0] & 0x7f) << 8) | usize::from(h[1]);
                        self.sslv2_hello = true;
                        s.first_ts = Some(ts);
                        s.records += 1;
                        s.rtype = SSLV2_HELLO;
                        s.remaining = body.saturating_sub(3);
                        self.push_event(i, ts, Ev::Hs(1));
                        continue;
                    }
                    if s.records != 0 {
                        self.malformed = true;
                    }
                    self.not_tls = true;
                    return;
                }
                s.rtype = h[0];
                s.rversion = u16::from_be_bytes([h[1], h[2]]);
                s.rlen = len;
                s.remaining = len;
                s.records += 1;
                s.first_ts.get_or_insert(ts);
                s.alert.clear();
                let protected = s.ccs;
                // TLS 1.3 sends ChangeCipherSpec only for middlebox
                // compatibility (a second ClientHello may follow it): there,
                // protection starts at the ServerHello instead.
                if s.rtype == CT_CCS && !tls13_started {
                    s.ccs = true;
                }
                match h[0] {
                    CT_APP_DATA => {
                        s.app_records += 1;
                        s.last_app = Some((len as u16, ts));
                        self.push_event(
                            i,
                            ts,
                            Ev::Data {
                                first_len: len as u16,
                                count: 1,
                            },
                        );
                    }
                    CT_CCS => self.push_event(i, ts, Ev::Ccs),
                    CT_HANDSHAKE if protected => self.push_event(i, ts, Ev::ProtectedHs),
                    24 => self.push_event(i, ts, Ev::Heartbeat),
                    _ => {}
                }
                if len == 0 {
                    continue;
                }
            }
            let s = &mut self.side[i];
            let take = s.remaining.min(data.len());
            let body = &data[..take];
            data = &data[take..];
            s.remaining -= take;
            let protected = s.ccs;
            match s.rtype {
                CT_HANDSHAKE if !protected => {
                    if s.hs.len() + body.len() > MAX_HANDSHAKE {
                        self.handshake_overflow = true;
                        let room = MAX_HANDSHAKE - s.hs.len();
                        s.hs.extend_from_slice(&body[..room]);
                    } else {
                        s.hs.extend_from_slice(body);
                    }
                    let rv = s.rversion;
                    self.drain_handshake(i, rv, ts, ctx);
                }
                CT_ALERT => {
                    if s.alert.len() < 2 {
                        let room = (2 - s.alert.len()).min(body.len());
                        s.alert.extend_from_slice(&body[..room]);
                    }
                    if s.remaining == 0 {
                        let encrypted = s.ccs || s.rlen != 2;
                        let (level, description) = if !encrypted && s.alert.len() == 2 {
                            (Some(s.alert[0]), Some(s.alert[1]))
                        } else {
                            (None, None)
                        };
                        let rlen = s.rlen as u16;
                        if self.alerts.len() < MAX_ALERTS {
                            self.alerts.push(Alert {
                                from: if i == 0 { "client" } else { "server" },
                                ts,
                                record_length: rlen,
                                encrypted,
                                inferred: false,
                                level,
                                description,
                                description_name: description.and_then(crate::output::names::alert),
                            });
                        }
                        self.push_event(
                            i,
                            ts,
                            Ev::Alert {
                                encrypted,
                                fatal: level == Some(2),
                            },
                        );
                    }
                }
                _ => {}
            }
        }
    }

    /// Takes whole handshake messages out of side `i`'s buffer (parsed in
    /// place: the buffer is cut once, after the last whole message).
    fn drain_handshake(&mut self, i: usize, record_version: u16, ts: Timestamp, ctx: &mut TlsCtx) {
        let mut hs = std::mem::take(&mut self.side[i].hs);
        let mut at = 0;
        while let Some(h) = hs.get(at..at + 4) {
            let mlen = ((h[1] as usize) << 16) | ((h[2] as usize) << 8) | h[3] as usize;
            if mlen > MAX_HANDSHAKE {
                self.malformed = true;
                at = hs.len();
                break;
            }
            let Some(msg) = hs.get(at..at + 4 + mlen) else {
                break;
            };
            at += 4 + mlen;
            let ev = if i == 1 && msg[0] == 2 && msg.get(6..38) == Some(&hello::HRR_RANDOM[..]) {
                Ev::Hrr
            } else {
                Ev::Hs(msg[0])
            };
            self.push_event(i, ts, ev);
            match (i, msg[0]) {
                (1, 11) if self.certs.is_none() => {
                    self.certs = cert::cached_chain(&mut ctx.certs, &msg[4..])
                }
                (0, 1) if self.client_hellos.len() < MAX_HELLOS => {
                    match ClientHello::parse(msg, record_version) {
                        Some(h) => self.client_hellos.push((ts, h)),
                        None => self.malformed = true,
                    }
                }
                (1, 2) if self.server_hellos.len() < MAX_HELLOS => match ServerHello::parse(msg) {
                    Some(h) => {
                        self.server_hellos.push((ts, h));
                        if self.tls13() {
                            // Everything after the ServerHello is protected.
                            self.side[1].ccs = true;
                            at = hs.len();
                            break;
                        }
                    }
                    None => self.malformed = true,
                },
                _ => {}
            }
        }
        hs.drain(..at);
        self.side[i].hs = hs;
    }

    /// Time of the first TLS record header seen in either direction.
    /// A TLS record (or SSLv2 hello) was seen: the flow speaks TLS.
    pub fn recognised(&self) -> bool {
        !self.client_hellos.is_empty() || self.first_record().is_some()
    }

    pub fn first_record(&self) -> Option<Timestamp> {
        self.side
            .iter()
            .filter_map(|s| s.first_ts)
            .chain(self.first_seen)
            .min()
    }

    pub fn app_records(&self, d: Direction) -> u32 {
        self.side[d.index()].app_records
    }

    /// Length and time of the side's last application_data record.
    pub fn last_app(&self, d: Direction) -> Option<(u16, Timestamp)> {
        self.side[d.index()].last_app
    }
}

/// TLS's entry in the parser registry: any TCP flow whose first bytes
/// (either direction) look like a TLS record or an SSLv2-compatible hello,
/// or name a plaintext prelude (`upgrade.rs`: by content, else by the
/// server's port); switched off by `tls.enabled = false`.
pub const PARSER: Registration = Registration {
    name: "tls",
    transport: Transport::Tcp,
    enabled: |s| s.tls,
    probe: |p| TlsState::probe(p.first) || probe_prelude(p).is_some(),
    new: |p| Box::new(TlsState::new(probe_prelude(p))),
};

fn probe_prelude(p: &crate::app::parser::Probe<'_>) -> Option<(upgrade::Kind, u16)> {
    let (dir, server_port) = match p.dir {
        Direction::ToServer => (0, p.dport),
        Direction::ToClient => (1, p.sport),
    };
    TlsState::prelude_kind(p.first, dir, server_port)
}

impl Parser for TlsState {
    fn feed(&mut self, d: Direction, ev: StreamEvent<'_>, cx: &mut Cx<'_>) {
        match ev {
            StreamEvent::Data(b) => TlsState::feed(self, d, b, cx.ts, &mut cx.shared.tls),
            // A gap in a handshake cannot be bridged: stop parsing.
            StreamEvent::Gap(_) => self.not_tls = true,
        }
    }

    fn wants(&self, _d: Direction) -> bool {
        TlsState::wants(self)
    }

    fn on_close(&mut self, d: Direction, rst: bool, ts: Timestamp) {
        TlsState::on_close(self, d, rst, ts)
    }

    fn heap_bytes(&self) -> usize {
        TlsState::heap_bytes(self)
    }

    fn service(&self) -> Option<&'static str> {
        if self.recognised() {
            return Some("ssl");
        }
        // A plaintext start the prelude recognised that led to no TLS.
        self.prelude
            .as_ref()
            .filter(|p| p.recognised)
            .map(|p| p.service())
    }

    fn limit(&self) -> Option<&'static str> {
        (self.prelude_stop == Some(upgrade::Stop::Cap)).then_some("upgrade_prelude_cap")
    }

    fn finish(&mut self, end: &mut End<'_>) {
        if let Some(rec) = record::record(
            self,
            &mut end.shared.tls,
            end.key,
            end.flow_id,
            end.community_id,
            end.timed_out,
        ) {
            end.out.push(crate::record::Record::Tls(Box::new(rec)));
        }
    }
}

/// Per-worker state shared by the connections' TLS parsers.
#[derive(Debug, Default)]
pub struct TlsCtx {
    pub certs: BoundedCache<[u8; 32], Option<std::sync::Arc<cert::Chain>>>,
    pub fingerprints: BoundedCache<Vec<u16>, std::sync::Arc<hello::Fingerprints>>,
}

/// A per-worker memo of a pure computation, keyed by all of its inputs (so a
/// hit is exactly what computing again would give and output does not
/// depend on it). At [`BoundedCache::CAP`] entries it starts over;
/// `resets` counts that.
#[derive(Debug)]
pub struct BoundedCache<K, V> {
    map: hashbrown::HashMap<K, V>,
    pub resets: u64,
}

impl<K, V> Default for BoundedCache<K, V> {
    fn default() -> Self {
        BoundedCache {
            map: hashbrown::HashMap::new(),
            resets: 0,
        }
    }
}

impl<K: std::hash::Hash + Eq, V: Clone> BoundedCache<K, V> {
    pub const CAP: usize = 4096;

    pub fn get_or_insert_with(&mut self, key: K, make: impl FnOnce() -> V) -> V {
        if let Some(v) = self.map.get(&key) {
            return v.clone();
        }
        if self.map.len() >= Self::CAP {
            self.map.clear();
            self.resets += 1;
        }
        let v = make();
        self.map.insert(key, v.clone());
        v
    }
}

/// An SSLv2-compatible ClientHello header: 2-byte length with the top bit
/// set, message type 1 (CLIENT-HELLO), version major 3 (or 2).
fn is_sslv2_hello(b: &[u8]) -> bool {
    matches!(b, [h, _, 1, 2..=3, ..] if h & 0x80 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bytes of `h`, hex.
    pub(crate) fn unhex(h: &str) -> Vec<u8> {
        (0..h.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&h[i..i + 2], 16).unwrap())
            .collect()
    }

    /// An SSLv2-compatible CLIENT-HELLO (RFC 6101 appendix E.1: 2-byte
    /// header with the top bit set, msg type 1, version 3.3) is skipped and
    /// the TLS ServerHello that answers it is read (issue 19.3). The bytes
    /// are tlslite-ng's hello and OpenSSL 3.0's ServerHello record from
    /// `fixtures/tcpedge/sslv2-hello-tlslite-openssl.pcap` (frames 4 and 6);
    /// tshark gives that ServerHello the JA3S string `771,47,65281`.
    #[test]
    fn server_hello_after_sslv2_compatible_hello_is_read() {
        let hello = unhex(
            "8025010303000c0000001000002f00003500009c0000ff\
             8085b0db599a41857854ccd426231a41",
        );
        let server_hello = unhex(
            "16030300510200004d0303f82c74688b25f1cb23943c3e95211b827ef2332704\
             562421444f574e47524401200006632b8c27c82dca415b21c0623c0e06e666c6\
             56f259037cec747bd454ff45002f000005ff01000100",
        );
        assert!(TlsState::probe(&hello));
        let mut ctx = TlsCtx::default();
        let mut t = TlsState::new(None);
        // In pieces: the skip survives a hello split across segments.
        t.feed(Direction::ToServer, &hello[..3], Timestamp(1), &mut ctx);
        t.feed(Direction::ToServer, &hello[3..], Timestamp(1), &mut ctx);
        assert!(t.sslv2_hello);
        assert!(t.wants());
        assert_eq!(t.first_record(), Some(Timestamp(1)));
        t.feed(Direction::ToClient, &server_hello, Timestamp(2), &mut ctx);
        assert!(!t.malformed && t.wants());
        let (_, sh) = &t.server_hellos[0];
        assert_eq!((sh.version, sh.cipher), (0x0303, 0x002f));
        assert_eq!(sh.ja3s_string(), "771,47,65281");
        assert_eq!(t.events[0].ev, Ev::Hs(1));
    }

    /// A CONNECT refused by the proxy is not followed.
    #[test]
    fn refused_connect_is_not_tls() {
        let mut ctx = TlsCtx::default();
        let req = b"CONNECT example.org:443 HTTP/1.1\r\nHost: example.org:443\r\n\r\n";
        let mut t = TlsState::new(TlsState::prelude_kind(req, 0, 3128));
        t.feed(Direction::ToServer, req, Timestamp(1), &mut ctx);
        assert!(t.wants());
        t.feed(
            Direction::ToClient,
            b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n",
            Timestamp(2),
            &mut ctx,
        );
        assert!(!t.wants());
        assert_eq!(t.proxy_connect(), None);
    }
}
