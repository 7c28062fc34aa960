//! How a TLS connection's handshake ended: `outcome`, the `history` string
//! and the handshake timings, decided from the connection's event list once
//! the flow ends. The README states each rule; the order below is the order
//! of precedence.

use super::{Alert, Ev, Event};
use crate::time::Timestamp;
use serde::Serialize;

/// Smallest TLS 1.3 record that can carry a client Finished: 4-byte message
/// header + 32-byte verify_data (SHA-256 suites) + 1 content-type byte +
/// 16-byte AEAD tag. A SHA-384 suite gives 69.
pub const MIN_FINISHED_RECORD: u16 = 53;
/// A protected alert: 2 bytes + content type + 16-byte tag.
pub const ALERT_RECORD: u16 = 19;
/// Longest history string; beyond it letters are dropped.
pub const MAX_HISTORY: usize = 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Established,
    ClientRejected,
    ServerRejected,
    ClientAborted,
    ClientEncryptedAlert,
    ClientClosedAfterHandshake,
    ServerAborted,
    NoServerHello,
    Incomplete,
}

impl Outcome {
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Established => "established",
            Outcome::ClientRejected => "client_rejected",
            Outcome::ServerRejected => "server_rejected",
            Outcome::ClientAborted => "client_aborted",
            Outcome::ClientEncryptedAlert => "client_encrypted_alert",
            Outcome::ClientClosedAfterHandshake => "client_closed_after_handshake",
            Outcome::ServerAborted => "server_aborted",
            Outcome::NoServerHello => "no_server_hello",
            Outcome::Incomplete => "incomplete",
        }
    }
}

impl Serialize for Outcome {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl Outcome {
    pub const ALL: [Outcome; 9] = [
        Outcome::Established,
        Outcome::ClientRejected,
        Outcome::ServerRejected,
        Outcome::ClientAborted,
        Outcome::ClientEncryptedAlert,
        Outcome::ClientClosedAfterHandshake,
        Outcome::ServerAborted,
        Outcome::NoServerHello,
        Outcome::Incomplete,
    ];
}

/// By name (fleet mode reads sessions back from the stream).
impl<'de> serde::Deserialize<'de> for Outcome {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Outcome::ALL
            .into_iter()
            .find(|o| o.name() == name)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown TLS outcome {name:?}")))
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Timing {
    /// ClientHello → ServerHello (the first one; a HelloRetryRequest counts).
    pub client_hello_to_server_hello_us: Option<u64>,
    /// ClientHello → handshake complete (see the README for what marks it).
    pub handshake_us: Option<u64>,
    /// The server's last handshake flight → the client's reaction to it
    /// (its Finished or key exchange, its alert, or its FIN/RST).
    pub server_flight_to_client_us: Option<u64>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Summary {
    pub outcome: Outcome,
    pub history: String,
    pub timing: Timing,
    /// TLS 1.3: length of the client's first protected record after the
    /// server's flight (53 / 69 = Finished, 19 = alert).
    pub client_response_len: Option<u16>,
    /// Protected application-data records after the handshake, per side.
    pub app_records: [u32; 2],
    /// Alerts inferred from protected TLS 1.3 record sizes.
    pub inferred_alerts: Vec<Alert>,
    /// The handshake itself was not seen (flow picked up mid-stream).
    pub handshake_not_seen: bool,
}

/// Inputs besides the events.
pub struct Facts {
    pub tls13: bool,
    /// application_data records per side, over the whole connection.
    pub app_records: [u32; 2],
    /// Each side's last application_data record (length, time).
    pub last_app: [Option<(u16, Timestamp)>; 2],
    /// The flow ended by its idle timeout (not by the end of the input).
    pub timed_out: bool,
}

fn is(e: &Event, from: u8, ev: Ev) -> bool {
    e.from == from && e.ev == ev
}

fn us(a: Timestamp, b: Timestamp) -> u64 {
    b.since(a) / 1_000
}

pub fn summarize(events: &[Event], f: &Facts) -> Summary {
    let pos = |p: &dyn Fn(&Event) -> bool, from: usize| {
        events[from.min(events.len())..]
            .iter()
            .position(p)
            .map(|i| i + from)
    };
    let ch = pos(&|e| is(e, 0, Ev::Hs(1)), 0);
    let first_sh = pos(&|e| e.from == 1 && matches!(e.ev, Ev::Hs(2) | Ev::Hrr), 0);
    let sh = pos(&|e| is(e, 1, Ev::Hs(2)), 0);
    let close = |side: u8| pos(&|e| e.from == side && matches!(e.ev, Ev::Close { .. }), 0);
    let closes = [close(0), close(1)];
    let (cclose, sclose) = (closes[0], closes[1]);

    // Where the server's flight ends, what the client answered, and where
    // the handshake completed.
    let mut flight_end = None;
    let mut response = None;
    let mut done = None;
    let mut client_response_len = None;
    let mut response_is_alert = false;
    if let Some(sh) = sh {
        if f.tls13 {
            response = pos(&|e| e.from == 0 && e.ev != Ev::Ccs, sh + 1);
            let limit = response.unwrap_or(events.len());
            flight_end = events[sh..limit]
                .iter()
                .rposition(|e| e.from == 1 && !matches!(e.ev, Ev::Close { .. }))
                .map(|i| i + sh);
            if let Some(r) = response
                && let Ev::Data { first_len, count } = events[r].ev
            {
                client_response_len = Some(first_len);
                // Alert-sized, and nothing else from the client: an alert.
                // Anything more is its flight (a Certificate of 25 bytes or
                // more, then CertificateVerify and Finished).
                let more_data = count > 1
                    || events[r + 1..]
                        .iter()
                        .any(|e| e.from == 0 && matches!(e.ev, Ev::Data { .. }));
                if first_len >= MIN_FINISHED_RECORD || more_data {
                    done = Some(r);
                } else {
                    response_is_alert = true;
                }
            }
        } else {
            flight_end = pos(&|e| is(e, 1, Ev::Hs(14)), sh).or_else(|| {
                // Abbreviated handshake: the server's Finished ends its flight.
                let ccs = pos(&|e| is(e, 1, Ev::Ccs), sh)?;
                pos(&|e| is(e, 1, Ev::ProtectedHs), ccs)
            });
            if let Some(fe) = flight_end {
                response = pos(&|e| e.from == 0, fe + 1);
            }
            let fin = |side: u8| {
                let ccs = pos(&|e| is(e, side, Ev::Ccs), sh)?;
                Some(pos(&|e| is(e, side, Ev::ProtectedHs), ccs).unwrap_or(ccs))
            };
            if let (Some(a), Some(b)) = (fin(0), fin(1)) {
                done = Some(a.max(b));
            }
        }
    }

    let rejecting_alert = events[..done.unwrap_or(events.len())]
        .iter()
        .find(|e| matches!(e.ev, Ev::Alert { encrypted, fatal } if encrypted || fatal));
    let first_close = match (cclose, sclose) {
        (Some(c), Some(s)) => Some(if c < s { 0 } else { 1 }),
        (Some(_), None) => Some(0),
        (None, Some(_)) => Some(1),
        (None, None) => None,
    };

    // TLS 1.3: the server answers the client's flight with one alert-sized
    // record and nothing else, before any client application data: it
    // rejected the client (a missing or refused client certificate).
    let mut server_late_alert = None;
    if f.tls13
        && let Some(d) = done
        && let Some(sd) = pos(&|e| e.from == 1 && matches!(e.ev, Ev::Data { .. }), d + 1)
    {
        // Records in the client's flight: Finished alone, or Certificate,
        // CertificateVerify and Finished.
        let flight = if client_response_len >= Some(MIN_FINISHED_RECORD) {
            1
        } else {
            3
        };
        let client_data = matches!(events[d].ev, Ev::Data { count, .. } if count > flight)
            || events[d + 1..sd]
                .iter()
                .any(|e| e.from == 0 && matches!(e.ev, Ev::Data { .. }));
        let server_more = events[sd + 1..]
            .iter()
            .any(|e| e.from == 1 && matches!(e.ev, Ev::Data { .. }));
        let alert_sized = events[sd].ev
            == Ev::Data {
                first_len: ALERT_RECORD,
                count: 1,
            };
        if alert_sized && !server_more && !client_data {
            server_late_alert = Some(sd);
        }
    }

    let closed_after_handshake =
        done.is_some_and(|d| client_closed_after_handshake(events, f, d, client_response_len));

    let outcome = if ch.is_none() {
        if f.app_records[0] > 0 && f.app_records[1] > 0 {
            Outcome::Established
        } else {
            Outcome::Incomplete
        }
    } else if let Some(a) = rejecting_alert {
        if a.from == 0 {
            Outcome::ClientRejected
        } else {
            Outcome::ServerRejected
        }
    } else if response_is_alert {
        Outcome::ClientEncryptedAlert
    } else if server_late_alert.is_some() {
        Outcome::ServerRejected
    } else if closed_after_handshake {
        Outcome::ClientClosedAfterHandshake
    } else if done.is_some() {
        Outcome::Established
    } else if first_sh.is_none() {
        match first_close {
            Some(1) => Outcome::ServerAborted,
            Some(_) => Outcome::NoServerHello,
            None if f.timed_out => Outcome::NoServerHello,
            None => Outcome::Incomplete,
        }
    } else {
        match first_close {
            Some(0) => Outcome::ClientAborted,
            Some(_) => Outcome::ServerAborted,
            None => Outcome::Incomplete,
        }
    };

    // Application data after the handshake: TLS <= 1.2 counts every
    // application_data record; TLS 1.3 leaves out the protected handshake
    // (the records up to the client's Finished) and a last alert-sized
    // record before a close (the encrypted close_notify).
    let mut app = f.app_records;
    if f.tls13 {
        for (side, n) in app.iter_mut().enumerate() {
            let before: u32 = events[..done.map_or(events.len(), |d| d + 1)]
                .iter()
                .filter(|e| e.from as usize == side)
                .map(|e| match e.ev {
                    Ev::Data { count, .. } => count,
                    _ => 0,
                })
                .sum();
            *n = n.saturating_sub(before);
            let closed = closes[side].is_some();
            if closed && *n > 0 && f.last_app[side].is_some_and(|(len, _)| len == ALERT_RECORD) {
                *n -= 1;
            }
        }
        if done.is_none() {
            app = [0, 0];
        }
    }

    // Alerts that only the record sizes show (TLS 1.3).
    let mut inferred_alerts = Vec::new();
    if f.tls13 {
        let mk = |side: usize, len: u16, ts: Timestamp| Alert {
            from: if side == 0 { "client" } else { "server" },
            ts,
            record_length: len,
            encrypted: true,
            inferred: true,
            level: None,
            description: None,
            description_name: None,
        };
        if response_is_alert && let Some(r) = response {
            inferred_alerts.push(mk(0, events[r].ev_len(), events[r].ts));
        } else if let Some(sd) = server_late_alert {
            inferred_alerts.push(mk(1, ALERT_RECORD, events[sd].ts));
        } else if done.is_some() {
            for (side, (last, close)) in f.last_app.iter().zip(closes).enumerate() {
                if let Some((len, ts)) = *last
                    && close.is_some()
                    && len == ALERT_RECORD
                {
                    inferred_alerts.push(mk(side, len, ts));
                }
            }
        }
    }

    let ts = |i: Option<usize>| i.map(|i| events[i].ts);
    let timing = Timing {
        client_hello_to_server_hello_us: ts(ch).zip(ts(first_sh)).map(|(a, b)| us(a, b)),
        handshake_us: ts(ch).zip(ts(done)).map(|(a, b)| us(a, b)),
        server_flight_to_client_us: ts(flight_end)
            .zip(ts(response.or(cclose.filter(|c| Some(*c) > flight_end))))
            .map(|(a, b)| us(a, b)),
    };

    Summary {
        outcome,
        history: history(events, f.tls13, response, response_is_alert),
        timing,
        client_response_len,
        app_records: app,
        inferred_alerts,
        handshake_not_seen: ch.is_none(),
    }
}

/// The client completed the handshake (`done`: the event that completed
/// it), then sent one alert and no application data, and closed; its alert
/// came before any close (alert or FIN/RST) of the server. TLS <= 1.2: an
/// alert record after the handshake, no server application data before it.
/// TLS 1.3: one 19-byte record after the client's flight (the server's
/// NewSessionTickets may come before it).
fn client_closed_after_handshake(
    events: &[Event],
    f: &Facts,
    done: usize,
    client_response_len: Option<u16>,
) -> bool {
    let cclose = events
        .iter()
        .position(|e| e.from == 0 && matches!(e.ev, Ev::Close { .. }));
    let Some(cclose) = cclose else { return false };
    let server_close = |after: usize| {
        events[after..]
            .iter()
            .position(|e| e.from == 1 && matches!(e.ev, Ev::Close { .. } | Ev::Alert { .. }))
            .map(|i| i + after)
    };
    if !f.tls13 {
        let after = &events[done + 1..];
        let Some(a) = after
            .iter()
            .position(|e| e.from == 0 && matches!(e.ev, Ev::Alert { .. }))
            .map(|i| i + done + 1)
        else {
            return false;
        };
        let data_before = events[done + 1..a]
            .iter()
            .any(|e| matches!(e.ev, Ev::Data { .. }));
        return f.app_records[0] == 0
            && !data_before
            && a < cclose
            && server_close(done + 1).is_none_or(|s| s > a);
    }
    // Records of the client's flight: Finished alone, or Certificate,
    // CertificateVerify and Finished.
    let flight = if client_response_len >= Some(MIN_FINISHED_RECORD) {
        1
    } else {
        3
    };
    let early: u32 = events[..done]
        .iter()
        .filter(|e| e.from == 0)
        .map(|e| match e.ev {
            Ev::Data { count, .. } => count,
            _ => 0,
        })
        .sum();
    let Some((ALERT_RECORD, alert_ts)) = f.last_app[0] else {
        return false;
    };
    let server_closed_first = events
        .iter()
        .any(|e| e.from == 1 && matches!(e.ev, Ev::Close { .. }) && e.ts < alert_ts)
        || f.last_app[1].is_some_and(|(len, ts)| {
            len == ALERT_RECORD && ts < alert_ts && server_close(0).is_some()
        });
    f.app_records[0].checked_sub(early + flight) == Some(1)
        && events[cclose].ts >= alert_ts
        && !server_closed_first
}

impl Event {
    fn ev_len(&self) -> u16 {
        match self.ev {
            Ev::Data { first_len, .. } => first_len,
            _ => 0,
        }
    }
}

/// Zeek's `ssl_history` letters for handshake message types.
fn hs_letter(t: u8) -> u8 {
    match t {
        0 => b'h',
        1 => b'c',
        2 => b's',
        3 => b'v',
        4 => b't',
        5 => b'e',
        8 => b'o',
        11 => b'x',
        12 => b'k',
        13 => b'r',
        14 => b'n',
        15 => b'y',
        16 => b'g',
        20 => b'f',
        21 => b'w',
        22 => b'u',
        23 => b'a',
        24 => b'p',
        254 => b'm',
        _ => b'z',
    }
}

fn history(events: &[Event], tls13: bool, response: Option<usize>, alert: bool) -> String {
    let mut h = String::with_capacity(24);
    for (i, e) in events.iter().enumerate() {
        let letter = match e.ev {
            Ev::Hs(t) => hs_letter(t),
            Ev::Hrr => b'j',
            Ev::ProtectedHs => b'f',
            Ev::Ccs => b'i',
            Ev::Alert { .. } => b'l',
            Ev::Data { .. } if tls13 && Some(i) == response => {
                if alert {
                    b'l'
                } else {
                    b'f'
                }
            }
            Ev::Data { .. } => b'd',
            Ev::Heartbeat => b'b',
            Ev::Close { .. } => continue,
        };
        if h.len() >= MAX_HISTORY {
            break;
        }
        h.push(if e.from == 0 {
            letter.to_ascii_uppercase()
        } else {
            letter
        } as char);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(from: u8, ms: u64, ev: Ev) -> Event {
        Event {
            from,
            ts: Timestamp(ms * 1_000_000),
            ev,
        }
    }

    fn data(len: u16, count: u32) -> Ev {
        Ev::Data {
            first_len: len,
            count,
        }
    }

    fn facts(tls13: bool, timed_out: bool) -> Facts {
        Facts {
            tls13,
            app_records: [0, 0],
            last_app: [None, None],
            timed_out,
        }
    }

    /// A client hello nobody answered: `no_server_hello` when the flow timed
    /// out or the client gave up, `incomplete` when the capture just ended.
    #[test]
    fn unanswered_hello() {
        let e = [ev(0, 0, Ev::Hs(1))];
        assert_eq!(
            summarize(&e, &facts(false, true)).outcome,
            Outcome::NoServerHello
        );
        assert_eq!(
            summarize(&e, &facts(false, false)).outcome,
            Outcome::Incomplete
        );
        let e = [ev(0, 0, Ev::Hs(1)), ev(0, 5, Ev::Close { rst: false })];
        assert_eq!(
            summarize(&e, &facts(false, false)).outcome,
            Outcome::NoServerHello
        );
        let e = [ev(0, 0, Ev::Hs(1)), ev(1, 5, Ev::Close { rst: true })];
        assert_eq!(
            summarize(&e, &facts(false, false)).outcome,
            Outcome::ServerAborted
        );
    }

    /// A padded alert (up to 52 bytes) is still an alert; a 53-byte record
    /// is a Finished.
    #[test]
    fn tls13_response_size_rule() {
        let run = |len| {
            let e = [
                ev(0, 0, Ev::Hs(1)),
                ev(1, 1, Ev::Hs(2)),
                ev(1, 1, data(1200, 1)),
                ev(0, 2, Ev::Ccs),
                ev(0, 2, data(len, 1)),
                ev(0, 2, Ev::Close { rst: false }),
            ];
            summarize(&e, &facts(true, false))
        };
        assert_eq!(run(19).outcome, Outcome::ClientEncryptedAlert);
        assert_eq!(run(52).outcome, Outcome::ClientEncryptedAlert);
        assert_eq!(run(53).outcome, Outcome::Established);
        assert_eq!(run(19).history, "CsdIL");
        assert_eq!(run(69).history, "CsdIF");
        assert_eq!(run(19).timing.server_flight_to_client_us, Some(1000));
    }

    /// A 19-byte server record after the client's request is a close, not a
    /// rejection.
    #[test]
    fn server_close_after_client_data_is_not_a_rejection() {
        let e = [
            ev(0, 0, Ev::Hs(1)),
            ev(1, 1, Ev::Hs(2)),
            ev(1, 1, data(1200, 1)),
            ev(0, 2, data(53, 2)),
            ev(1, 3, data(19, 1)),
            ev(1, 3, Ev::Close { rst: false }),
        ];
        assert_eq!(
            summarize(&e, &facts(true, false)).outcome,
            Outcome::Established
        );
    }

    fn tls12(client_tail: &[Event], server_tail: &[Event]) -> Vec<Event> {
        let mut e = vec![
            ev(0, 0, Ev::Hs(1)),
            ev(1, 1, Ev::Hs(2)),
            ev(1, 1, Ev::Hs(11)),
            ev(1, 1, Ev::Hs(14)),
            ev(0, 2, Ev::Hs(16)),
            ev(0, 2, Ev::Ccs),
            ev(0, 2, Ev::ProtectedHs),
            ev(1, 3, Ev::Ccs),
            ev(1, 3, Ev::ProtectedHs),
        ];
        e.extend_from_slice(client_tail);
        e.extend_from_slice(server_tail);
        e.sort_by_key(|e| e.ts);
        e
    }

    /// TLS 1.2: a completed handshake, then only the client's encrypted
    /// alert and its close: `client_closed_after_handshake`. Not when the
    /// server closed first, nor after application data.
    #[test]
    fn tls12_alert_after_handshake() {
        let alert = Ev::Alert {
            encrypted: true,
            fatal: false,
        };
        let fin = Ev::Close { rst: false };
        let client = [ev(0, 4, alert), ev(0, 6, fin)];
        let server = [ev(1, 5, alert), ev(1, 5, fin)];
        let e = tls12(&client, &server);
        let f = facts(false, false);
        let out = summarize(&e, &f).outcome;
        assert_eq!(out, Outcome::ClientClosedAfterHandshake);
        // The server's close_notify came first: an ordinary close.
        let server_first = [ev(1, 3, alert), ev(1, 3, fin)];
        let e = tls12(&client, &server_first);
        assert_eq!(summarize(&e, &f).outcome, Outcome::Established);
        // The client sent a request before its alert.
        let e = tls12(
            &[ev(0, 3, data(100, 1)), ev(0, 4, alert), ev(0, 6, fin)],
            &server,
        );
        let mut f = facts(false, false);
        f.app_records = [1, 0];
        assert_eq!(summarize(&e, &f).outcome, Outcome::Established);
        // No close from the client (capture ended): not this outcome.
        let e = tls12(&client[..1], &[]);
        assert_eq!(
            summarize(&e, &facts(false, false)).outcome,
            Outcome::Established
        );
    }

    /// TLS 1.3: the client's Finished, then one 19-byte record (its alert,
    /// after the server's tickets) and its close.
    #[test]
    fn tls13_alert_after_finished() {
        let run = |client_data: Ev, app: [u32; 2], last: [Option<(u16, Timestamp)>; 2]| {
            let e = [
                ev(0, 0, Ev::Hs(1)),
                ev(1, 1, Ev::Hs(2)),
                ev(1, 1, data(1200, 1)),
                ev(0, 2, Ev::Ccs),
                ev(0, 2, client_data),
                ev(1, 3, data(250, 2)),
                ev(0, 4, data(19, 1)),
                ev(1, 5, data(19, 1)),
                ev(1, 5, Ev::Close { rst: false }),
                ev(0, 6, Ev::Close { rst: false }),
            ];
            let mut f = facts(true, false);
            f.app_records = app;
            f.last_app = last;
            summarize(&e, &f)
        };
        let at = |ms: u64| Some((19, Timestamp(ms * 1_000_000)));
        let s = run(data(53, 1), [2, 4], [at(4), at(5)]);
        assert_eq!(s.outcome, Outcome::ClientClosedAfterHandshake);
        assert_eq!(s.app_records[0], 0);
        assert!(s.inferred_alerts.iter().any(|a| a.from == "client"));
        // Finished, a request, then the alert: established.
        let s = run(data(53, 2), [3, 4], [at(4), at(5)]);
        assert_eq!(s.outcome, Outcome::Established);
        // The server's close_notify came before the client's.
        let s = run(data(53, 1), [2, 4], [at(4), at(3)]);
        assert_eq!(s.outcome, Outcome::Established);
    }
}
