//! FreeRADIUS `detail` accounting files: Calling-Station-Id MAC → the
//! identity that authenticated, with session start/stop times.
//!
//! # Format
//!
//! Entries are separated by blank lines. Each starts with an unindented date
//! line in `ctime` form (`Fri Nov 21 10:00:00 2026`, the `detail` module's
//! default `header = "%t"`), then one indented `Attribute = value` line per
//! attribute; string values are double-quoted with `\"`, `\\` and `\ooo`
//! (octal) escapes. The first line that is not blank must be such a date
//! line, else the file is an `Err`; an empty file holds no sessions.
//!
//! # What is read
//!
//! - `Acct-Status-Type`: `Start`, `Interim-Update` (or `Alive`) and `Stop`
//!   (or their numbers 1, 3, 2) make sessions; any other type
//!   (`Accounting-On`, `Accounting-Off`, `Failed`, …) is not about a station
//!   and is passed over without an error.
//! - `Calling-Station-Id`: the station's MAC, in any spelling
//!   [`parse_mac`] knows (APs write `AA-BB-CC-DD-EE-FF`).
//! - `User-Name` (the first one seen in a session), `Acct-Session-Id`,
//!   `Framed-IP-Address` (the latest one seen).
//! - The event time: `Event-Timestamp` (FreeRADIUS writes it as
//!   `"Nov 21 2026 10:00:00 UTC"` in the server's time zone; UTC, GMT, common
//!   zone abbreviations and numeric offsets are understood, and a plain number
//!   of seconds too), else `Timestamp` (when FreeRADIUS received the packet,
//!   seconds since the epoch) less `Acct-Delay-Time`, else the entry's date
//!   line, taken as UTC (the `%t` header is in the server's local time, which
//!   the file does not name: run FreeRADIUS with `TZ=UTC`).
//!
//! # Sessions
//!
//! Entries are joined by (Acct-Session-Id, MAC) into one [`RadiusSession`],
//! in the order sessions first appear. A Start sets the start, a Stop the
//! stop; a repeated Start or Stop with the same time (a retransmission) is
//! ignored, while a Start after the session already started, or any entry
//! after its Stop, begins a new session (session IDs are reused after a NAS
//! restarts). A Stop or Interim-Update without a Start gives a session whose
//! start is `None`.
//!
//! # Errors
//!
//! An entry is skipped with a [`LoadError`] at its date line when an
//! attribute line is not `Attribute = value`, a quoted value is not closed,
//! the date line is not a date, `Acct-Status-Type` or `Calling-Station-Id`
//! is missing, the MAC, IP or a time cannot be read. A session none of whose
//! entries names a `User-Name` is skipped with an error at its first entry.
//! After [`MAX_ERRORS`](super::leases::MAX_ERRORS) errors the rest are counted in one last error. Work is
//! linear in the file size.

use super::leases::{Errors, shown};
use super::{LoadError, Loaded, parse_mac, read_text};
use crate::time::Timestamp;
use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;

/// One accounting session, from its Start (and Stop, when seen).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RadiusSession {
    /// Calling-Station-Id: the station's MAC.
    pub mac: [u8; 6],
    /// User-Name as authenticated (with EAP-TLS often the device certificate's name).
    pub identity: String,
    pub start: Option<Timestamp>,
    pub stop: Option<Timestamp>,
    pub framed_ip: Option<IpAddr>,
    pub session_id: Option<String>,
}

/// Reads a FreeRADIUS detail file (see the module documentation).
pub fn load(path: &Path) -> Result<Loaded<RadiusSession>, LoadError> {
    let text = read_text(path)?;
    parse_str(&text, &path.display().to_string())
}

/// Parses the text of a detail file; `file` names it in errors.
pub fn parse_str(text: &str, file: &str) -> Result<Loaded<RadiusSession>, LoadError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut errs = Errors::new(file);
    let mut sessions = Sessions::default();
    let mut cur: Option<Entry> = None;
    let mut seen_any = false;
    for (i, raw) in text.lines().enumerate() {
        let line_no = i + 1;
        let line = raw.trim_end_matches('\r');
        if line.trim().is_empty() {
            if let Some(e) = cur.take() {
                finish(e, &mut sessions, &mut errs);
            }
            continue;
        }
        let indented = line.starts_with([' ', '\t']);
        if !indented {
            if let Some(e) = cur.take() {
                finish(e, &mut sessions, &mut errs);
            }
            let date = ctime(line.trim());
            if !seen_any && date.is_none() {
                return Err(LoadError {
                    file: file.to_string(),
                    line: Some(line_no),
                    message: format!(
                        "not a FreeRADIUS detail file: {} is not a date line (expected entries \
                         starting with a line like `Fri Nov 21 10:00:00 2026`, followed by \
                         tab-indented `Attribute = value` lines)",
                        shown(line.trim())
                    ),
                });
            }
            seen_any = true;
            let mut e = Entry::new(line_no, date);
            if date.is_none() {
                e.bad = Some(format!(
                    "{} is not a date line: expected a line like `Fri Nov 21 10:00:00 2026` \
                     before the attributes",
                    shown(line.trim())
                ));
            }
            cur = Some(e);
            continue;
        }
        if !seen_any {
            return Err(LoadError {
                file: file.to_string(),
                line: Some(line_no),
                message: "not a FreeRADIUS detail file: an indented attribute line comes before \
                          any date line (expected entries starting with a line like `Fri Nov 21 \
                          10:00:00 2026`)"
                    .to_string(),
            });
        }
        match cur.as_mut() {
            Some(e) => e.attribute(line.trim(), line_no),
            None => errs.push(
                line_no,
                format!(
                    "attribute line {} after a blank line: expected a date line to start a new \
                     entry",
                    shown(line.trim())
                ),
            ),
        }
    }
    if let Some(e) = cur.take() {
        finish(e, &mut sessions, &mut errs);
    }
    let mut items = Vec::with_capacity(sessions.list.len());
    for (s, line) in sessions.list {
        match s.identity {
            Some(identity) => items.push(RadiusSession {
                mac: s.mac,
                identity,
                start: s.start,
                stop: s.stop,
                framed_ip: s.framed_ip,
                session_id: s.session_id,
            }),
            None => errs.push(
                line,
                format!(
                    "session {} of {}: no entry names a User-Name (expected `User-Name = \"…\"`)",
                    s.session_id
                        .as_deref()
                        .map(shown)
                        .unwrap_or_else(|| "(no Acct-Session-Id)".into()),
                    mac_str(s.mac)
                ),
            ),
        }
    }
    Ok(Loaded {
        items,
        errors: errs.finish(),
        warnings: Vec::new(),
    })
}

fn mac_str(m: [u8; 6]) -> String {
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        m[0], m[1], m[2], m[3], m[4], m[5]
    )
}

/// The attributes of one entry that matter, as written.
struct Entry {
    line: usize,
    date: Option<Timestamp>,
    bad: Option<String>,
    status: Option<String>,
    calling: Option<String>,
    user: Option<String>,
    session: Option<String>,
    framed: Option<String>,
    event_ts: Option<String>,
    timestamp: Option<String>,
    delay: Option<String>,
}

impl Entry {
    fn new(line: usize, date: Option<Timestamp>) -> Self {
        Entry {
            line,
            date,
            bad: None,
            status: None,
            calling: None,
            user: None,
            session: None,
            framed: None,
            event_ts: None,
            timestamp: None,
            delay: None,
        }
    }

    fn attribute(&mut self, line: &str, line_no: usize) {
        if self.bad.is_some() {
            return;
        }
        let Some((name, value)) = line.split_once(" = ").or_else(|| line.split_once('=')) else {
            self.bad = Some(format!(
                "line {line_no}: {} is not an attribute: expected `Attribute = value`",
                shown(line)
            ));
            return;
        };
        let name = name.trim();
        let slot = match name {
            "Acct-Status-Type" => &mut self.status,
            "Calling-Station-Id" => &mut self.calling,
            "User-Name" => &mut self.user,
            "Acct-Session-Id" => &mut self.session,
            "Framed-IP-Address" => &mut self.framed,
            "Event-Timestamp" => &mut self.event_ts,
            "Timestamp" => &mut self.timestamp,
            "Acct-Delay-Time" => &mut self.delay,
            _ => return,
        };
        match unquote(value.trim()) {
            Some(v) => *slot = Some(v),
            None => {
                self.bad = Some(format!(
                    "line {line_no}: the value of {name} has no closing '\"' (expected \
                     `{name} = \"…\"` on one line)"
                ))
            }
        }
    }
}

/// A value as written: a quoted string with its escapes undone, else as is.
fn unquote(v: &str) -> Option<String> {
    let Some(body) = v.strip_prefix('"') else {
        return Some(v.to_string());
    };
    let b = body.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        i += 1;
        match c {
            b'"' => {
                return Some(String::from_utf8_lossy(&out).into_owned());
            }
            b'\\' => {
                let e = *b.get(i)?;
                i += 1;
                match e {
                    b'0'..=b'7' => {
                        let mut n = u32::from(e - b'0');
                        for _ in 0..2 {
                            match b.get(i) {
                                Some(&d @ b'0'..=b'7') => {
                                    n = n * 8 + u32::from(d - b'0');
                                    i += 1;
                                }
                                _ => break,
                            }
                        }
                        out.push((n & 0xff) as u8);
                    }
                    b'n' => out.push(b'\n'),
                    b'r' => out.push(b'\r'),
                    b't' => out.push(b'\t'),
                    other => out.push(other),
                }
            }
            _ => out.push(c),
        }
    }
    None
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Status {
    Start,
    Interim,
    Stop,
}

/// One entry, read: `Ok(None)` when it is not about a station.
struct Event {
    status: Status,
    mac: [u8; 6],
    at: Timestamp,
    user: Option<String>,
    session: Option<String>,
    framed: Option<IpAddr>,
}

fn event(e: Entry) -> Result<Option<Event>, String> {
    if let Some(m) = e.bad {
        return Err(m);
    }
    let status = match e.status.as_deref() {
        None => {
            return Err("no Acct-Status-Type (expected Start, Interim-Update or Stop)".to_string());
        }
        Some("Start" | "1") => Status::Start,
        Some("Stop" | "2") => Status::Stop,
        Some("Interim-Update" | "Alive" | "3") => Status::Interim,
        Some(_) => return Ok(None),
    };
    let Some(calling) = e.calling else {
        return Err("no Calling-Station-Id (expected the station's MAC address)".to_string());
    };
    let mac = parse_mac(&calling).ok_or_else(|| {
        format!(
            "Calling-Station-Id {}: expected a MAC address like AA-BB-CC-DD-EE-FF",
            shown(&calling)
        )
    })?;
    let at = if let Some(t) = e.event_ts {
        event_timestamp(&t).ok_or_else(|| {
            format!(
                "Event-Timestamp {}: expected a time like \"Nov 21 2026 10:00:00 UTC\" or seconds \
                 since the epoch",
                shown(&t)
            )
        })?
    } else if let Some(t) = e.timestamp {
        let secs = t
            .parse::<u64>()
            .map_err(|_| format!("Timestamp {}: expected seconds since the epoch", shown(&t)))?;
        let delay = match e.delay {
            Some(d) => d.parse::<u64>().map_err(|_| {
                format!(
                    "Acct-Delay-Time {}: expected a number of seconds",
                    shown(&d)
                )
            })?,
            None => 0,
        };
        Timestamp::from_secs(secs.saturating_sub(delay))
    } else {
        // the entry was only made when the date line read as a date
        e.date.ok_or("no time: the date line is not a date")?
    };
    let framed = match e.framed {
        Some(f) => Some(
            f.parse::<IpAddr>()
                .map_err(|_| format!("Framed-IP-Address {}: expected an IP address", shown(&f)))?,
        ),
        None => None,
    };
    Ok(Some(Event {
        status,
        mac,
        at,
        user: e.user.filter(|u| !u.is_empty()),
        session: e.session.filter(|s| !s.is_empty()),
        framed,
    }))
}

struct Partial {
    mac: [u8; 6],
    identity: Option<String>,
    start: Option<Timestamp>,
    stop: Option<Timestamp>,
    framed_ip: Option<IpAddr>,
    session_id: Option<String>,
}

/// Sessions in the order they first appear (with the line of their first
/// entry), and the latest one per (session ID, MAC).
#[derive(Default)]
struct Sessions {
    list: Vec<(Partial, usize)>,
    open: HashMap<(Option<String>, [u8; 6]), usize>,
}

fn finish(e: Entry, sessions: &mut Sessions, errs: &mut Errors<'_>) {
    let line = e.line;
    match event(e) {
        Ok(Some(ev)) => sessions.apply(ev, line),
        Ok(None) => {}
        Err(m) => errs.push(line, m),
    }
}

impl Sessions {
    fn apply(&mut self, ev: Event, line: usize) {
        let key = (ev.session.clone(), ev.mac);
        let idx = self.open.get(&key).copied().filter(|&i| {
            let s = &self.list[i].0;
            match ev.status {
                // a retransmitted Start, or the Start after an early Interim
                Status::Start => s.start == Some(ev.at) || (s.start.is_none() && s.stop.is_none()),
                Status::Interim => s.stop.is_none(),
                Status::Stop => s.stop.is_none() || s.stop == Some(ev.at),
            }
        });
        let i = match idx {
            Some(i) => i,
            None => {
                self.list.push((
                    Partial {
                        mac: ev.mac,
                        identity: None,
                        start: None,
                        stop: None,
                        framed_ip: None,
                        session_id: ev.session,
                    },
                    line,
                ));
                let i = self.list.len() - 1;
                self.open.insert(key, i);
                i
            }
        };
        let s = &mut self.list[i].0;
        match ev.status {
            Status::Start => s.start = Some(ev.at),
            Status::Stop => s.stop = Some(ev.at),
            Status::Interim => {}
        }
        if s.identity.is_none() {
            s.identity = ev.user;
        }
        if ev.framed.is_some() {
            s.framed_ip = ev.framed;
        }
    }
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

fn month(s: &str) -> Option<u32> {
    MONTHS.iter().position(|m| *m == s).map(|i| i as u32 + 1)
}

fn small(s: &str, max_len: usize) -> Option<u32> {
    if s.is_empty() || s.len() > max_len || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn hms(s: &str) -> Option<(u32, u32, u32)> {
    let mut p = s.split(':');
    let h = small(p.next()?, 2)?;
    let m = small(p.next()?, 2)?;
    let sec = small(p.next()?, 2)?;
    p.next().is_none().then_some((h, m, sec))
}

/// `Fri Nov 21 10:00:00 2026` (the weekday is not checked), taken as UTC.
fn ctime(s: &str) -> Option<Timestamp> {
    let mut f = s.split_whitespace();
    let _wd = f
        .next()
        .filter(|w| w.len() == 3 && w.bytes().all(|b| b.is_ascii_alphabetic()))?;
    let mo = month(f.next()?)?;
    let d = small(f.next()?, 2)?;
    let (h, mi, sec) = hms(f.next()?)?;
    let y = small(f.next()?, 4)?;
    if f.next().is_some() {
        return None;
    }
    Timestamp::from_civil(i64::from(y), mo, d, h, mi, sec)
}

/// Offsets east of UTC, in minutes, of the zone names FreeRADIUS may print
/// (`%Z`). Ambiguous names (IST, …) are not here.
const ZONES: &[(&str, i64)] = &[
    ("UTC", 0),
    ("GMT", 0),
    ("UT", 0),
    ("Z", 0),
    ("WET", 0),
    ("WEST", 60),
    ("BST", 60),
    ("CET", 60),
    ("CEST", 120),
    ("MET", 60),
    ("MEST", 120),
    ("EET", 120),
    ("EEST", 180),
    ("MSK", 180),
    ("EST", -300),
    ("EDT", -240),
    ("CST", -360),
    ("CDT", -300),
    ("MST", -420),
    ("MDT", -360),
    ("PST", -480),
    ("PDT", -420),
    ("AKST", -540),
    ("AKDT", -480),
    ("HST", -600),
    ("JST", 540),
    ("KST", 540),
    ("HKT", 480),
    ("SGT", 480),
    ("AWST", 480),
    ("ACST", 570),
    ("ACDT", 630),
    ("AEST", 600),
    ("AEDT", 660),
    ("NZST", 720),
    ("NZDT", 780),
];

/// `+0100`, `-05:30`, `+05`: minutes east of UTC.
fn numeric_offset(z: &str) -> Option<i64> {
    let sign = match z.as_bytes().first()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let digits: String = z[1..].chars().filter(|c| *c != ':').collect();
    let (h, m) = match digits.len() {
        2 => (small(&digits, 2)?, 0),
        4 => (small(&digits[..2], 2)?, small(&digits[2..], 2)?),
        _ => return None,
    };
    if h > 14 || m > 59 {
        return None;
    }
    Some(sign * (i64::from(h) * 60 + i64::from(m)))
}

/// `Nov 21 2026 10:00:00 UTC` (FreeRADIUS's `%b %e %Y %H:%M:%S %Z`), or a
/// number of seconds since the epoch.
fn event_timestamp(s: &str) -> Option<Timestamp> {
    let s = s.trim();
    if !s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse().ok().map(Timestamp::from_secs);
    }
    let mut f = s.split_whitespace();
    let mo = month(f.next()?)?;
    let d = small(f.next()?, 2)?;
    let y = small(f.next()?, 4)?;
    let (h, mi, sec) = hms(f.next()?)?;
    let offset = match f.next() {
        None => 0,
        Some(z) => ZONES
            .iter()
            .find(|(n, _)| *n == z)
            .map(|(_, o)| *o)
            .or_else(|| numeric_offset(z))?,
    };
    if f.next().is_some() {
        return None;
    }
    let local = Timestamp::from_civil(i64::from(y), mo, d, h, mi, sec)?;
    let secs = i64::try_from(local.as_secs()).ok()? - offset * 60;
    u64::try_from(secs).ok().map(Timestamp::from_secs)
}

#[cfg(test)]
mod tests {
    use super::super::leases::MAX_ERRORS;
    use super::*;

    fn parse(s: &str) -> Loaded<RadiusSession> {
        parse_str(s, "t.detail").expect("a detail file")
    }

    fn ts(y: i64, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> Option<Timestamp> {
        Timestamp::from_civil(y, mo, d, h, mi, s)
    }

    const MAC_A: [u8; 6] = [0x02, 0x00, 0x5e, 0x10, 0x0a, 0x0a];

    #[test]
    fn start_interim_stop_make_one_session() {
        let l = parse(
            "Fri Nov 20 10:00:05 2026\n\
             \tAcct-Session-Id = \"S1\"\n\
             \tCalling-Station-Id = \"02-00-5E-10-0A-0A\"\n\
             \tAcct-Status-Type = Start\n\
             \tUser-Name = \"host/iPhone-F2LXK0AAHG7F\"\n\
             \tEvent-Timestamp = \"Nov 20 2026 10:00:00 UTC\"\n\
             \tTimestamp = 1795168805\n\
             \n\
             Fri Nov 20 10:10:05 2026\n\
             \tAcct-Session-Id = \"S1\"\n\
             \tCalling-Station-Id = \"02-00-5E-10-0A-0A\"\n\
             \tAcct-Status-Type = Interim-Update\n\
             \tFramed-IP-Address = 192.0.2.50\n\
             \tEvent-Timestamp = \"Nov 20 2026 10:10:00 UTC\"\n\
             \n\
             Fri Nov 20 10:30:05 2026\n\
             \tAcct-Session-Id = \"S1\"\n\
             \tCalling-Station-Id = \"02-00-5E-10-0A-0A\"\n\
             \tAcct-Status-Type = Stop\n\
             \tUser-Name = \"someone-else\"\n\
             \tEvent-Timestamp = \"Nov 20 2026 11:30:00 CET\"\n",
        );
        assert_eq!(l.errors, vec![]);
        assert_eq!(
            l.items,
            vec![RadiusSession {
                mac: MAC_A,
                identity: "host/iPhone-F2LXK0AAHG7F".into(),
                start: ts(2026, 11, 20, 10, 0, 0),
                stop: ts(2026, 11, 20, 10, 30, 0),
                framed_ip: Some("192.0.2.50".parse().unwrap()),
                session_id: Some("S1".into()),
            }]
        );
    }

    #[test]
    fn time_falls_back_to_timestamp_then_date_line() {
        let l = parse(
            "Fri Nov 20 10:00:05 2026\n\
             \tAcct-Session-Id = \"S1\"\n\
             \tCalling-Station-Id = \"aabb.cc00.0001\"\n\
             \tAcct-Status-Type = Start\n\
             \tUser-Name = \"u1\"\n\
             \tTimestamp = 1795168805\n\
             \tAcct-Delay-Time = 5\n\
             \n\
             Fri Nov 20 10:00:09 2026\n\
             \tAcct-Session-Id = \"S2\"\n\
             \tCalling-Station-Id = \"aabbcc000002\"\n\
             \tAcct-Status-Type = 1\n\
             \tUser-Name = \"u2\"\n",
        );
        assert_eq!(l.errors, vec![]);
        assert_eq!(l.items.len(), 2);
        assert_eq!(l.items[0].start, Some(Timestamp::from_secs(1795168800)));
        assert_eq!(l.items[0].mac, [0xaa, 0xbb, 0xcc, 0, 0, 1]);
        assert_eq!(l.items[1].start, ts(2026, 11, 20, 10, 0, 9));
        assert_eq!(l.items[1].stop, None);
    }

    #[test]
    fn stop_without_start_and_session_reuse() {
        let entry = |date: &str, status: &str, et: &str| {
            format!(
                "{date}\n\tAcct-Session-Id = \"X\"\n\tCalling-Station-Id = \"02-00-5E-10-0A-0A\"\n\
                 \tAcct-Status-Type = {status}\n\tUser-Name = \"u\"\n\tEvent-Timestamp = {et}\n\n"
            )
        };
        let d = "Fri Nov 20 10:00:00 2026";
        let text = [
            entry(d, "Stop", "1000"),
            entry(d, "Stop", "1000"), // retransmitted: same session
            entry(d, "Start", "2000"),
            entry(d, "Start", "2000"), // retransmitted
            entry(d, "Start", "3000"), // ID reused: a new session
            entry(d, "Stop", "3500"),
            entry(d, "Accounting-On", "4000"), // not about a station
        ]
        .concat();
        let l = parse(&text);
        assert_eq!(l.errors, vec![]);
        let times: Vec<_> = l
            .items
            .iter()
            .map(|s| (s.start.map(|t| t.as_secs()), s.stop.map(|t| t.as_secs())))
            .collect();
        assert_eq!(
            times,
            vec![
                (None, Some(1000)),
                (Some(2000), None),
                (Some(3000), Some(3500))
            ]
        );
    }

    #[test]
    fn malformed_entries_are_skipped_with_their_line() {
        let l = parse(
            "Fri Nov 20 10:00:00 2026\n\
             \tAcct-Status-Type = Start\n\
             \tCalling-Station-Id = \"not-a-mac\"\n\
             \tUser-Name = \"u\"\n\
             \n\
             Fri Nov 20 10:00:00 2026\n\
             \tAcct-Status-Type = Start\n\
             \tUser-Name = \"u\"\n\
             \n\
             Fri Nov 20 10:00:00 2026\n\
             \tthis line has no equals sign\n\
             \n\
             Fri Nov 20 10:00:00 2026\n\
             \tAcct-Status-Type = Start\n\
             \tCalling-Station-Id = \"02-00-5E-10-0A-0A\"\n\
             \tUser-Name = \"unterminated\n\
             \n\
             Fri Nov 20 10:00:00 2026\n\
             \tAcct-Status-Type = Start\n\
             \tCalling-Station-Id = \"02-00-5E-10-0A-0A\"\n\
             \tUser-Name = \"u\"\n\
             \tEvent-Timestamp = \"Nov 20 2026 10:00:00 XYZ\"\n\
             \n\
             Not a date\n\
             \tAcct-Status-Type = Start\n\
             \n\
             Fri Nov 20 10:00:00 2026\n\
             \tAcct-Status-Type = Start\n\
             \tCalling-Station-Id = \"02-00-5E-10-0A-0A\"\n\
             \tFramed-IP-Address = 192.0.2.300\n\
             \n\
             Fri Nov 20 10:00:00 2026\n\
             \tAcct-Status-Type = Stop\n\
             \tAcct-Session-Id = \"nobody\"\n\
             \tCalling-Station-Id = \"02-00-5E-10-0A-0A\"\n",
        );
        assert!(l.items.is_empty(), "{:?}", l.items);
        let got: Vec<(Option<usize>, &str)> = l
            .errors
            .iter()
            .map(|e| (e.line, e.message.as_str()))
            .collect();
        let want_lines = [1, 6, 10, 13, 18, 24, 27, 32];
        assert_eq!(
            got.iter().map(|g| g.0).collect::<Vec<_>>(),
            want_lines.iter().map(|&l| Some(l)).collect::<Vec<_>>(),
            "{got:#?}"
        );
        assert!(
            got[0].1.contains("Calling-Station-Id 'not-a-mac'"),
            "{}",
            got[0].1
        );
        assert!(got[1].1.contains("no Calling-Station-Id"), "{}", got[1].1);
        assert!(
            got[2].1.contains("expected `Attribute = value`"),
            "{}",
            got[2].1
        );
        assert!(got[3].1.contains("no closing"), "{}", got[3].1);
        assert!(got[4].1.contains("Event-Timestamp"), "{}", got[4].1);
        assert!(got[5].1.contains("not a date line"), "{}", got[5].1);
        assert!(got[6].1.contains("Framed-IP-Address"), "{}", got[6].1);
        assert!(
            got[7].1.contains("no entry names a User-Name"),
            "{}",
            got[7].1
        );
        assert_eq!(
            l.errors[0].to_string(),
            format!("t.detail:1: {}", l.errors[0].message)
        );
    }

    #[test]
    fn not_a_detail_file_is_an_error() {
        for text in ["lease 192.0.2.1 {\n}\n", "\tUser-Name = \"x\"\n", "{}"] {
            let e = parse_str(text, "x").unwrap_err();
            assert_eq!(e.file, "x");
            assert_eq!(e.line, Some(1), "{text:?}");
            assert!(
                e.message.contains("not a FreeRADIUS detail file"),
                "{}",
                e.message
            );
        }
        let l = parse("\n\n");
        assert!(l.items.is_empty() && l.errors.is_empty());
    }

    #[test]
    fn times_in_every_form() {
        fn t(s: &str) -> Option<u64> {
            event_timestamp(s).map(|t| t.as_secs())
        }
        let utc = Timestamp::from_civil(2026, 11, 21, 10, 0, 0)
            .unwrap()
            .as_secs();
        assert_eq!(t("Nov 21 2026 10:00:00 UTC"), Some(utc));
        assert_eq!(t("Nov 21 2026 10:00:00 GMT"), Some(utc));
        assert_eq!(t("Nov 21 2026 10:00:00"), Some(utc));
        assert_eq!(t("Nov 21 2026 11:00:00 CET"), Some(utc));
        assert_eq!(t("Nov 21 2026 05:00:00 EST"), Some(utc));
        assert_eq!(t("Nov 21 2026 15:30:00 +05:30"), Some(utc));
        assert_eq!(t("Nov 21 2026 15:30:00 +0530"), Some(utc));
        assert_eq!(t("Nov 21 2026 00:00:00 -10"), Some(utc));
        assert_eq!(t(&utc.to_string()), Some(utc));
        assert_eq!(
            t("Nov  1 2026 10:00:00 UTC"),
            Timestamp::from_civil(2026, 11, 1, 10, 0, 0).map(|t| t.as_secs())
        );
        for bad in [
            "",
            "Foo 21 2026 10:00:00 UTC",
            "Nov 32 2026 10:00:00 UTC",
            "Nov 21 2026 24:00:00 UTC",
            "Nov 21 2026 10:00 UTC",
            "Nov 21 2026 10:00:00 IST",
            "Nov 21 2026 10:00:00 UTC extra",
            "Jan 1 1970 00:00:00 +01:00",
            "99999999999999999999999",
        ] {
            assert_eq!(t(bad), None, "{bad:?}");
        }
        assert_eq!(
            ctime("Sat Nov 21 07:03:29 2026"),
            Timestamp::from_civil(2026, 11, 21, 7, 3, 29)
        );
        assert_eq!(ctime("Sat Nov 21 07:03:29"), None);
        assert_eq!(ctime("Sat Nov 21 07:03:29 2026 x"), None);
    }

    #[test]
    fn quoted_values_unescape() {
        assert_eq!(unquote("\"a\\\"b\\\\c\\101\"").as_deref(), Some("a\"b\\cA"));
        assert_eq!(unquote("plain").as_deref(), Some("plain"));
        assert_eq!(unquote("\"open"), None);
        assert_eq!(unquote("\"ends in backslash\\"), None);
    }

    #[test]
    fn hostile_input_does_not_panic() {
        let mut inputs: Vec<String> = vec![
            "Fri Nov 20 10:00:00 2026\n\t=\n\t = \n\t\"\n\t\\\n".into(),
            "Fri Nov 20 10:00:00 2026\n\tEvent-Timestamp = \"\u{e9}\u{e9}\u{e9} 99 99999 99:99:99 +99:99\"\n\tAcct-Status-Type = Start\n\tCalling-Station-Id = 02:00:5e:10:0a:0a\n".into(),
            "Fri Nov 20 10:00:00 2026\r\n\tAcct-Status-Type = Stop\r\n\tCalling-Station-Id = 02:00:5e:10:0a:0a\r\n\tUser-Name = u\r\n\tTimestamp = 18446744073709551615\r\n\tAcct-Delay-Time = 99999999999999999999\r\n".into(),
        ];
        // many entries, many errors: the list is capped
        let mut big = String::new();
        for _ in 0..(MAX_ERRORS + 50) {
            big.push_str("Fri Nov 20 10:00:00 2026\n\tbroken\n\n");
        }
        inputs.push(big);
        for s in &inputs {
            let _ = parse_str(s, "h");
        }
        let l = parse(&inputs[3]);
        assert_eq!(l.errors.len(), MAX_ERRORS + 1);
        assert!(
            l.errors[MAX_ERRORS].message.starts_with("50 more"),
            "{}",
            l.errors[MAX_ERRORS]
        );
        // every byte value after a valid first entry
        let mut bytes = b"Fri Nov 20 10:00:00 2026\n\t".to_vec();
        bytes.extend((0u8..=255).cycle().take(4096));
        let _ = parse_str(&String::from_utf8_lossy(&bytes), "h");
    }
}
