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

pub mod hello;

use crate::flow::key::Direction;
use crate::time::Timestamp;
use hello::{ClientHello, ServerHello};
use serde::Serialize;

/// Handshake bytes buffered per direction (a ClientHello with a post-quantum
/// key share is ~1.8 KiB; certificate chains reach tens of KiB).
pub const MAX_HANDSHAKE: usize = 64 << 10;
/// Largest record length accepted (2^14 plus the 2048 bytes of expansion
/// TLS 1.2 allows); anything longer means this is not TLS.
pub const MAX_RECORD: usize = (1 << 14) + 2048;
const MAX_HELLOS: usize = 4;
const MAX_ALERTS: usize = 16;

pub const CT_CCS: u8 = 20;
pub const CT_ALERT: u8 = 21;
pub const CT_HANDSHAKE: u8 = 22;
pub const CT_APP_DATA: u8 = 23;

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Alert {
    /// `client` or `server`.
    pub from: &'static str,
    pub ts: Timestamp,
    /// Record length (2 for a cleartext alert; the protected size otherwise).
    pub record_length: u16,
    pub encrypted: bool,
    pub level: Option<u8>,
    pub description: Option<u8>,
}

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
    first_app_len: Option<u16>,
    records: u32,
    first_ts: Option<Timestamp>,
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
    pub handshake_overflow: bool,
    pub malformed: bool,
}

impl TlsState {
    /// Do the first client bytes look like TLS? (record type 20–23, major version 3)
    pub fn probe(first: &[u8]) -> bool {
        matches!(first, [20..=23, 3, ..]) || matches!(first, [20..=23])
    }

    /// TLS wants the stream of both directions until it stops looking like TLS.
    pub fn wants(&self) -> bool {
        !self.not_tls
    }

    /// TLS 1.3 (or later) was chosen: after the ServerHello everything is protected.
    fn tls13(&self) -> bool {
        self.server_hellos
            .last()
            .is_some_and(|(_, s)| s.version >= 0x0304 && !s.hello_retry_request)
    }

    pub fn feed(&mut self, d: Direction, mut data: &[u8], ts: Timestamp) {
        let i = d.index();
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
                    if s.records == 0 && i == 0 && h[0] & 0x80 != 0 && h[2] == 1 {
                        self.sslv2_hello = true;
                    }
                    if s.records == 0 {
                        self.not_tls = true;
                    } else {
                        self.malformed = true;
                        self.not_tls = true;
                    }
                    return;
                }
                s.rtype = h[0];
                s.rversion = u16::from_be_bytes([h[1], h[2]]);
                s.rlen = len;
                s.remaining = len;
                s.records += 1;
                s.first_ts.get_or_insert(ts);
                s.alert.clear();
                if s.rtype == CT_APP_DATA {
                    s.app_records += 1;
                    if s.first_app_len.is_none() {
                        s.first_app_len = Some(len as u16);
                    }
                }
                // TLS 1.3 sends ChangeCipherSpec only for middlebox
                // compatibility (a second ClientHello may follow it): there,
                // protection starts at the ServerHello instead.
                if s.rtype == CT_CCS && !tls13_started {
                    s.ccs = true;
                }
                if len == 0 {
                    continue;
                }
            }
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
                    self.drain_handshake(i, rv, ts);
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
                                level,
                                description,
                            });
                        }
                    }
                }
                _ => {}
            }
        }
    }

    /// Takes whole handshake messages out of side `i`'s buffer.
    fn drain_handshake(&mut self, i: usize, record_version: u16, ts: Timestamp) {
        loop {
            let hs = &self.side[i].hs;
            if hs.len() < 4 {
                return;
            }
            let mlen = ((hs[1] as usize) << 16) | ((hs[2] as usize) << 8) | hs[3] as usize;
            if mlen > MAX_HANDSHAKE {
                self.malformed = true;
                self.side[i].hs.clear();
                return;
            }
            if hs.len() < 4 + mlen {
                return;
            }
            let msg: Vec<u8> = self.side[i].hs.drain(..4 + mlen).collect();
            match (i, msg[0]) {
                (0, 1) if self.client_hellos.len() < MAX_HELLOS => {
                    match ClientHello::parse(&msg, record_version) {
                        Some(h) => self.client_hellos.push((ts, h)),
                        None => self.malformed = true,
                    }
                }
                (1, 2) if self.server_hellos.len() < MAX_HELLOS => match ServerHello::parse(&msg) {
                    Some(h) => {
                        self.server_hellos.push((ts, h));
                        if self.tls13() {
                            // Everything after the ServerHello is protected.
                            self.side[1].ccs = true;
                            self.side[1].hs.clear();
                            return;
                        }
                    }
                    None => self.malformed = true,
                },
                _ => {}
            }
        }
    }

    /// Time of the first TLS record header seen in either direction.
    pub fn first_record(&self) -> Option<Timestamp> {
        self.side.iter().filter_map(|s| s.first_ts).min()
    }

    pub fn app_records(&self, d: Direction) -> u32 {
        self.side[d.index()].app_records
    }

    pub fn first_app_len(&self, d: Direction) -> Option<u16> {
        self.side[d.index()].first_app_len
    }
}
