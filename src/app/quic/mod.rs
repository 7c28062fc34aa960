//! QUIC: the TLS handshake inside Initial packets (RFC 9000, 9001, 9369).
//!
//! A UDP flow whose first datagram has a long header gets a [`QuicState`].
//! The client's first Initial names the Destination Connection ID both
//! directions' Initial keys come from (RFC 9001 §5.2); they are kept when
//! the client switches to the server's connection ID after the server's
//! first Initial, and derived again only when a client Initial fails to
//! open with them and carries another DCID (after a Retry). Each datagram's
//! coalesced packets are walked; Initials are decrypted, their CRYPTO
//! frames reassembled ([`frames::Crypto`]) and the ClientHello and
//! ServerHello parsed by the TCP path's own parser (`app::tls::hello`), so
//! the `tls` record, JA3 and JA4 are built the same way (JA4's first letter
//! is `q`).
//!
//! Work stops per direction once its hello is parsed (the client side also
//! waits for its first 1-RTT packet after the ServerHello, which says the
//! handshake completed), or when the flow clearly cannot be read: unknown
//! version, no client Initial, [`MAX_FAILURES`] packets that do not open,
//! or more than [`MAX_DATAGRAMS`] datagrams without an answer.

pub mod frames;
pub mod initial;

use crate::app::parser::{Cx, End, Parser, Registration, Transport};
use crate::app::tls::hello::{ClientHello, ServerHello};
use crate::app::tls::{Alert, Ev, Event, TlsCtx, TlsState};
use crate::flow::key::{Direction, FlowKey};
use crate::flow::reassembly::StreamEvent;
use crate::record::{QuicInfo, TlsRecord};
use crate::time::Timestamp;
use frames::{Crypto, Frame};
use initial::{Keys, PacketType, Version};

/// Datagrams looked at per flow before giving up on a handshake that does
/// not complete.
pub const MAX_DATAGRAMS: u32 = 64;
/// Initial packets that fail to open before the flow is given up.
pub const MAX_FAILURES: u32 = 8;
/// Times the client's Initial keys are derived again from a new DCID (Retry).
pub const MAX_REKEYS: u32 = 2;

/// Why a QUIC session's hello was not read (the `quic.not_parsed` field
/// and the coverage record's reasons).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotParsed {
    /// A version whose Initial protection is not known.
    UnknownVersion,
    /// The flow's first long-header packet was not the client's Initial.
    ClientInitialNotSeen,
    /// No client Initial opened with the keys of its DCID.
    DecryptionFailed,
    /// Initials opened, but the ClientHello's bytes never all arrived.
    CryptoIncomplete,
    /// The CRYPTO stream went past [`frames::MAX_CRYPTO`] or [`frames::MAX_RANGES`].
    CryptoOverflow,
    /// The frames or the ClientHello did not parse.
    Malformed,
}

impl NotParsed {
    pub fn name(self) -> &'static str {
        match self {
            NotParsed::UnknownVersion => "unknown_version",
            NotParsed::ClientInitialNotSeen => "client_initial_not_seen",
            NotParsed::DecryptionFailed => "decryption_failed",
            NotParsed::CryptoIncomplete => "crypto_incomplete",
            NotParsed::CryptoOverflow => "crypto_overflow",
            NotParsed::Malformed => "malformed",
        }
    }
}

/// A connection ID (at most 20 bytes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Cid {
    len: u8,
    b: [u8; initial::MAX_CID],
}

impl Cid {
    fn new(c: &[u8]) -> Cid {
        let mut b = [0; initial::MAX_CID];
        let len = c.len().min(b.len());
        b[..len].copy_from_slice(&c[..len]);
        Cid { len: len as u8, b }
    }
    fn get(&self) -> &[u8] {
        &self.b[..self.len as usize]
    }
}

/// The Initial keys of one version for the client's original DCID: both
/// sides' secrets, and each side's keys made when its first Initial comes
/// (a server that never answers costs no server keys).
#[derive(Debug)]
struct KeySet {
    version: Version,
    secrets: [[u8; 32]; 2],
    keys: [Option<Keys>; 2],
}

impl KeySet {
    fn new(version: Version, dcid: &[u8]) -> Box<KeySet> {
        Box::new(KeySet {
            version,
            secrets: initial::initial_secrets(version, dcid),
            keys: [None, None],
        })
    }

    /// Side `i`'s keys (0 client, 1 server).
    fn side(&mut self, i: usize) -> &Keys {
        let (secret, v2) = (&self.secrets[i & 1], self.version.v2());
        self.keys[i & 1].get_or_insert_with(|| Keys::from_secret(secret, v2))
    }
}

/// Per-flow QUIC state.
#[derive(Debug, Default)]
pub struct QuicState {
    /// The version of the client's first long-header packet.
    version: Option<u32>,
    /// The DCID of the client's first Initial: the Initial keys' input.
    original_dcid: Option<Cid>,
    /// Source connection IDs: the client's, the server's.
    cid: [Option<Cid>; 2],
    keys: Option<Box<KeySet>>,
    /// Keys for a server Initial in another version (compatible version
    /// negotiation, RFC 9368), same DCID.
    other_keys: Option<Box<KeySet>>,
    largest_pn: [Option<u64>; 2],
    crypto: [Crypto; 2],
    client_hello: Option<(Timestamp, ClientHello)>,
    server_hello: Option<(Timestamp, ServerHello)>,
    /// Handshake packets seen per side (their contents are not read).
    handshake: [u32; 2],
    /// The client's first 1-RTT packet after its own Handshake packets.
    client_1rtt: Option<Timestamp>,
    /// A CONNECTION_CLOSE in an Initial: who sent it, when, its code.
    close: Option<(usize, Timestamp, u64)>,
    first_ts: Option<Timestamp>,
    datagrams: u32,
    initials: [u32; 2],
    failures: u32,
    rekeys: u32,
    retry: bool,
    /// Set when a direction can give nothing more.
    gave_up: Option<NotParsed>,
    malformed: bool,
}

impl QuicState {
    /// Does a flow's first datagram start with a QUIC long header (the
    /// header form and fixed bits set, a non-zero version, known or not)?
    pub fn probe(datagram: &[u8]) -> bool {
        datagram.len() >= 7 && datagram[0] & 0xc0 == 0xc0 && datagram[1..5] != [0, 0, 0, 0]
    }

    /// Does the parser still want direction `d`'s datagrams?
    pub fn wants(&self, d: Direction) -> bool {
        if self.gave_up.is_some() || self.close.is_some() || self.datagrams >= MAX_DATAGRAMS {
            return false;
        }
        match d {
            Direction::ToServer => {
                self.client_hello.is_none()
                    || (self.server_hello.is_some() && self.client_1rtt.is_none())
            }
            // The server's Handshake flight (usually in the ServerHello's
            // datagram) tells the client went silent after it.
            Direction::ToClient => self.server_hello.is_none() || self.handshake[1] == 0,
        }
    }

    pub fn heap_bytes(&self) -> usize {
        use std::mem::size_of;
        let hello = self.client_hello.as_ref().map_or(0, |(_, h)| {
            2 * (h.ciphers.capacity()
                + h.extensions.capacity()
                + h.supported_groups.capacity()
                + h.supported_versions.capacity()
                + h.signature_algorithms.capacity()
                + h.key_share_groups.capacity())
                + 8 * h.quic_transport_parameters.capacity()
                + h.alpn.iter().map(|a| a.capacity() + 24).sum::<usize>()
                + h.sni.as_ref().map_or(0, String::capacity)
                + h.session_id.capacity()
        });
        self.crypto.iter().map(Crypto::heap_bytes).sum::<usize>()
            + hello
            + self.keys.as_ref().map_or(0, |_| size_of::<KeySet>())
            + self.other_keys.as_ref().map_or(0, |_| size_of::<KeySet>())
    }

    /// One datagram's payload from direction `d` (client to server is
    /// `ToServer`: the flow's first sender is taken as the client).
    pub fn feed(&mut self, d: Direction, datagram: &[u8], ts: Timestamp) {
        if !self.wants(d) {
            return;
        }
        self.datagrams += 1;
        self.first_ts.get_or_insert(ts);
        let i = d.index();
        let mut rest = datagram;
        while let Some(&first) = rest.first() {
            if first & 0x80 == 0 {
                // A short header (1-RTT) fills the rest of the datagram.
                if i == 0 && self.server_hello.is_some() && self.handshake[0] > 0 {
                    self.client_1rtt.get_or_insert(ts);
                }
                return;
            }
            let Some(v) = rest.get(1..5) else { return };
            let number = u32::from_be_bytes([v[0], v[1], v[2], v[3]]);
            if number == 0 {
                return; // Version Negotiation
            }
            let Some(version) = Version::of(number) else {
                if self.keys.is_none() {
                    self.gave_up = Some(NotParsed::UnknownVersion);
                }
                return;
            };
            let h = match initial::parse_long(rest, version) {
                Ok(h) => h,
                Err(_) => {
                    self.malformed = true;
                    return;
                }
            };
            let end = h.end;
            match h.kind {
                PacketType::Initial => self.initial(i, version, &rest[..end], &h, ts),
                PacketType::Handshake if self.keys.is_some() => {
                    self.handshake[i] = self.handshake[i].saturating_add(1);
                }
                PacketType::Retry => {
                    if i == 1 {
                        self.on_retry(version, h.scid);
                    }
                    return;
                }
                _ if self.keys.is_none() && self.version.is_none() => {
                    self.version = Some(number);
                    self.gave_up = Some(NotParsed::ClientInitialNotSeen);
                }
                _ => {}
            }
            if self.gave_up.is_some() {
                return;
            }
            rest = &rest[end..];
        }
    }

    fn initial(
        &mut self,
        i: usize,
        version: Version,
        pkt: &[u8],
        h: &initial::LongHeader<'_>,
        ts: Timestamp,
    ) {
        if self.keys.is_none() {
            if i == 1 || self.version.is_some() {
                self.version.get_or_insert(version.number);
                self.gave_up = Some(NotParsed::ClientInitialNotSeen);
                return;
            }
            self.version = Some(version.number);
            self.original_dcid = Some(Cid::new(h.dcid));
            self.keys = Some(KeySet::new(version, h.dcid));
        }
        if self.cid[i].is_none() {
            self.cid[i] = Some(Cid::new(h.scid));
        }
        // Once this side's hello is parsed, its Initials carry only ACKs.
        let done = if i == 0 {
            self.client_hello.is_some()
        } else {
            self.server_hello.is_some()
        };
        if done {
            return;
        }
        let mut buf = pkt.to_vec();
        let mut opened = self.open(i, version, &mut buf, h.pn_offset);
        if opened.is_none()
            && i == 0
            && self.rekeys < MAX_REKEYS
            && self.original_dcid.is_some_and(|c| c.get() != h.dcid)
        {
            // After a Retry the client derives its keys from the new DCID.
            self.rekeys += 1;
            let mut keys = KeySet::new(version, h.dcid);
            buf.copy_from_slice(pkt);
            if let Ok(o) = initial::open(keys.side(0), &mut buf, h.pn_offset, None) {
                self.original_dcid = Some(Cid::new(h.dcid));
                self.keys = Some(keys);
                self.crypto = Default::default();
                self.largest_pn = [None; 2];
                opened = Some(o);
            } else {
                buf.copy_from_slice(pkt);
            }
        }
        let Some(o) = opened else {
            self.failures += 1;
            if self.failures >= MAX_FAILURES {
                self.gave_up = Some(NotParsed::DecryptionFailed);
            }
            return;
        };
        self.initials[i] += 1;
        let l = &mut self.largest_pn[i];
        *l = Some(l.map_or(o.pn, |x| x.max(o.pn)));
        let crypto = &mut self.crypto[i];
        let mut close = None;
        let walked = frames::walk(&buf[o.payload], |f| match f {
            Frame::Crypto { offset, data } => crypto.add(offset, data),
            Frame::Close { code, .. } => close = Some(code),
            Frame::Other => {}
        });
        if walked.is_err() {
            self.malformed = true;
        }
        if let Some(code) = close {
            self.close = Some((i, ts, code));
        }
        self.parse_hello(i, ts);
    }

    /// A Retry: the client's next Initials go to the Retry's SCID, and both
    /// sides' Initial keys come from it (RFC 9001 §5.2). A hello already
    /// read is kept (the client sends the same one again). A client takes one Retry per connection (RFC 9000 §17.2.5.2): later
    /// ones are ignored.
    fn on_retry(&mut self, version: Version, scid: &[u8]) {
        if std::mem::replace(&mut self.retry, true)
            || self.keys.is_none()
            || self.rekeys >= MAX_REKEYS
            || self.original_dcid.is_some_and(|c| c.get() == scid)
        {
            return;
        }
        self.rekeys += 1;
        self.original_dcid = Some(Cid::new(scid));
        self.keys = Some(KeySet::new(version, scid));
        self.other_keys = None;
        self.largest_pn = [None; 2];
        if self.client_hello.is_none() {
            self.crypto[0] = Crypto::default();
        }
    }

    /// Opens an Initial of side `i` with the keys of its version.
    fn open(
        &mut self,
        i: usize,
        version: Version,
        buf: &mut [u8],
        pn_offset: usize,
    ) -> Option<initial::Opened> {
        let dcid = self.original_dcid?;
        let slot = if self.keys.as_ref()?.version == version {
            &mut self.keys
        } else {
            if self
                .other_keys
                .as_ref()
                .is_none_or(|k| k.version != version)
            {
                self.other_keys = Some(KeySet::new(version, dcid.get()));
            }
            &mut self.other_keys
        };
        let keys = slot.as_mut()?.side(i);
        initial::open(keys, buf, pn_offset, self.largest_pn[i]).ok()
    }

    /// Parses side `i`'s hello once its CRYPTO bytes are all there.
    fn parse_hello(&mut self, i: usize, ts: Timestamp) {
        let c = &mut self.crypto[i];
        let b = c.contiguous();
        let Some(h) = b.get(..4) else { return };
        let len = ((h[1] as usize) << 16) | ((h[2] as usize) << 8) | h[3] as usize;
        if 4 + len > frames::MAX_CRYPTO {
            c.overflow = true;
            return;
        }
        let Some(msg) = b.get(..4 + len) else { return };
        match (i, msg[0]) {
            (0, 1) => match ClientHello::parse(msg, 0) {
                Some(h) => self.client_hello = Some((ts, h)),
                None => self.malformed = true,
            },
            (1, 2) => match ServerHello::parse(msg) {
                Some(h) => self.server_hello = Some((ts, h)),
                None => self.malformed = true,
            },
            _ => self.malformed = true,
        }
        if self.malformed {
            self.gave_up.get_or_insert(NotParsed::Malformed);
        }
        self.crypto[i].release();
    }

    /// Why the ClientHello was not read; `None` when it was.
    pub fn not_parsed(&self) -> Option<NotParsed> {
        if self.client_hello.is_some() {
            return None;
        }
        Some(if let Some(r) = self.gave_up {
            r
        } else if self.crypto[0].overflow {
            NotParsed::CryptoOverflow
        } else if self.malformed {
            NotParsed::Malformed
        } else if self.keys.is_none() {
            NotParsed::ClientInitialNotSeen
        } else if self.initials[0] == 0 {
            NotParsed::DecryptionFailed
        } else {
            NotParsed::CryptoIncomplete
        })
    }

    pub fn client_hello(&self) -> Option<&ClientHello> {
        self.client_hello.as_ref().map(|(_, h)| h)
    }

    pub fn server_hello(&self) -> Option<&ServerHello> {
        self.server_hello.as_ref().map(|(_, h)| h)
    }

    /// The hellos in the TCP path's form, for its record builder.
    fn tls_state(&self) -> TlsState {
        let mut t = TlsState::default();
        t.first_seen = self.first_ts;
        if let Some((ts, h)) = &self.client_hello {
            t.client_hellos.push((*ts, h.clone()));
            t.events.push(Event {
                from: 0,
                ts: *ts,
                ev: Ev::Hs(1),
            });
        }
        if let Some((ts, h)) = &self.server_hello {
            t.server_hellos.push((*ts, h.clone()));
            t.events.push(Event {
                from: 1,
                ts: *ts,
                ev: Ev::Hs(2),
            });
        }
        t.events.sort_by_key(|e| e.ts);
        if let Some((i, ts, code)) = self.close {
            // A crypto error (0x0100 + alert, RFC 9001 §4.8) is a TLS alert
            // (`then`, not `then_some`: the subtraction only in range).
            let alert = (0x100..0x200).contains(&code).then(|| (code - 0x100) as u8);
            t.alerts.push(Alert {
                from: if i == 0 { "client" } else { "server" },
                ts,
                record_length: 0,
                encrypted: false,
                inferred: false,
                level: alert.map(|_| 2),
                description: alert,
                description_name: alert.and_then(crate::output::names::alert),
            });
        }
        t
    }

    /// The QUIC outcome rules (the README's): a CONNECTION_CLOSE in an
    /// Initial rejects; Handshake packets from both sides, then the
    /// client's 1-RTT packet, complete the handshake; a client silent after
    /// the server's Handshake flight until the flow timed out aborted.
    pub(crate) fn outcome(&self, timed_out: bool) -> crate::app::tls::summary::Outcome {
        use crate::app::tls::summary::Outcome;
        let [client_hs, server_hs] = self.handshake.map(|n| n > 0);
        match (self.close, &self.client_hello, &self.server_hello) {
            (Some((0, ..)), Some(_), _) => Outcome::ClientRejected,
            (Some(_), Some(_), _) => Outcome::ServerRejected,
            (None, Some(_), Some(_)) if server_hs && self.client_1rtt.is_some() => {
                Outcome::Established
            }
            (None, Some(_), Some(_)) if server_hs && !client_hs && timed_out => {
                Outcome::ClientAborted
            }
            (None, Some(_), None) if timed_out => Outcome::NoServerHello,
            _ => Outcome::Incomplete,
        }
    }
}

fn hex(c: &Option<Cid>) -> Option<String> {
    c.as_ref().map(|c| crate::record::hex(c.get()))
}

/// QUIC's entry in the parser registry: a UDP flow whose first datagram
/// has a long header, on any port; on with TLS (`tls.enabled`).
pub const PARSER: Registration = Registration {
    name: "quic",
    transport: Transport::Udp,
    enabled: |s| s.tls,
    probe: |p| QuicState::probe(p.first),
    new: |_| Box::<QuicState>::default(),
};

impl Parser for QuicState {
    fn feed(&mut self, d: Direction, ev: StreamEvent<'_>, cx: &mut Cx<'_>) {
        if let StreamEvent::Data(b) = ev {
            QuicState::feed(self, d, b, cx.ts);
        }
    }

    fn wants(&self, d: Direction) -> bool {
        QuicState::wants(self, d)
    }

    fn heap_bytes(&self) -> usize {
        std::mem::size_of::<QuicState>() + QuicState::heap_bytes(self)
    }

    fn finish(&mut self, end: &mut End<'_>) {
        if let Some(rec) = record(
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

/// The `tls` record of a QUIC flow: the TCP path's record with `proto`
/// `udp`, JA4 starting with `q`, the QUIC outcome and the `quic` object.
/// `None` for a flow whose version is unknown and whose hello was not read
/// (not known to be QUIC).
pub fn record(
    q: &QuicState,
    ctx: &mut TlsCtx,
    k: &FlowKey,
    flow_id: crate::record::FlowId,
    community_id: &std::sync::Arc<str>,
    timed_out: bool,
) -> Option<TlsRecord> {
    let not_parsed = q.not_parsed();
    let version = q.version?;
    if Version::of(version).is_none() && not_parsed.is_some() {
        return None;
    }
    let t = q.tls_state();
    let mut r = crate::app::tls::record::record(&t, ctx, k, flow_id, community_id, timed_out)?;
    r.proto = "udp";
    // JA4's first letter is the transport: `q`.
    if let Some(j) = &mut r.ja4 {
        let mut s = j.to_string();
        s.replace_range(..1, "q");
        *j = s.into();
    }
    if let Some(s) = &mut r.ja4_r {
        s.replace_range(..1, "q");
    }
    r.outcome = q.outcome(timed_out);
    r.timing.handshake_us = match (&q.client_hello, q.client_1rtt) {
        (Some((a, _)), Some(b)) => Some(b.since(*a) / 1_000),
        _ => None,
    };
    r.timing.server_flight_to_client_us = None;
    r.client_response_len = None;
    if not_parsed.is_some() {
        r.limits.retain(|l| *l != "handshake_not_seen");
        r.limits.push("quic_hello_not_parsed");
    }
    r.quic = Some(QuicInfo {
        version: format!("0x{version:08x}"),
        version_name: Version::of(version).map(|v| v.name),
        original_dcid: hex(&q.original_dcid),
        client_cid: hex(&q.cid[0]),
        server_cid: hex(&q.cid[1]),
        client_transport_parameters: q
            .client_hello()
            .map(|h| h.quic_transport_parameters.clone())
            .unwrap_or_default(),
        client_initials: q.initials[0],
        server_initials: q.initials[1],
        retry: q.retry,
        decrypt_failures: q.failures,
        not_parsed: not_parsed.map(NotParsed::name),
    });
    Some(r)
}

#[cfg(test)]
mod tests;
