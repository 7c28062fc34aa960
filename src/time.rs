//! Packet time.
//!
//! Every timeout in blindspot is driven by the time stamped on packets, never
//! by the wall clock, so a replay gives the same records every time it runs
//! (STYLE habit 10). `Timestamp` is nanoseconds since the Unix epoch; records
//! print it as RFC 3339 UTC with microseconds.

use std::fmt;

/// Nanoseconds since 1970-01-01T00:00:00Z, as stamped on a packet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub u64);

/// A span of packet time in nanoseconds.
pub type Nanos = u64;

pub const NANOS_PER_SEC: u64 = 1_000_000_000;

impl Timestamp {
    pub const ZERO: Timestamp = Timestamp(0);

    /// Seconds plus a fraction given in `units_per_sec` (1e6 for µs pcap,
    /// 1e9 for ns pcap, any power of ten or two for pcapng). Saturates
    /// instead of overflowing on hostile headers.
    pub fn from_units(secs: u64, frac: u64, units_per_sec: u64) -> Self {
        let units_per_sec = units_per_sec.max(1);
        let frac_ns = if units_per_sec == NANOS_PER_SEC {
            frac
        } else {
            ((frac as u128 * NANOS_PER_SEC as u128) / units_per_sec as u128) as u64
        };
        Timestamp(secs.saturating_mul(NANOS_PER_SEC).saturating_add(frac_ns))
    }

    /// From a count of `units_per_sec` ticks since the epoch (pcapng's 64-bit stamps).
    pub fn from_ticks(ticks: u64, units_per_sec: u64) -> Self {
        let u = units_per_sec.max(1);
        Self::from_units(ticks / u, ticks % u, u)
    }

    pub fn from_secs(secs: u64) -> Self {
        Timestamp(secs.saturating_mul(NANOS_PER_SEC))
    }

    pub fn as_nanos(self) -> u64 {
        self.0
    }

    pub fn as_micros(self) -> u64 {
        self.0 / 1_000
    }

    pub fn as_secs(self) -> u64 {
        self.0 / NANOS_PER_SEC
    }

    /// `self - earlier`, zero if `earlier` is later (clocks in captures go backwards).
    pub fn since(self, earlier: Timestamp) -> Nanos {
        self.0.saturating_sub(earlier.0)
    }

    pub fn plus(self, d: Nanos) -> Timestamp {
        Timestamp(self.0.saturating_add(d))
    }

    /// The wall clock (live capture: timeouts follow it).
    pub fn now() -> Timestamp {
        let d = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Timestamp(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
    }

    /// `20261121T101500Z`: UTC to the second, for file names.
    pub fn compact(self) -> String {
        let full = self.to_string();
        let (date, time) = full.split_once('T').unwrap_or((&full, ""));
        let hms: String = time.chars().take(8).filter(|c| *c != ':').collect();
        format!("{}T{hms}Z", date.replace('-', ""))
    }
}

impl Timestamp {
    /// RFC 3339, UTC, microseconds: `2024-05-01T12:34:56.123456Z`, into a
    /// fixed buffer without the formatting machinery (every record carries
    /// two or more of these).
    fn rfc3339(self) -> [u8; 27] {
        /// "00" to "99": two digits per lookup instead of a division each.
        const PAIRS: [[u8; 2]; 100] = {
            let mut t = [[0u8; 2]; 100];
            let mut i = 0;
            while i < 100 {
                t[i] = [b'0' + (i / 10) as u8, b'0' + (i % 10) as u8];
                i += 1;
            }
            t
        };
        fn put2(b: &mut [u8], at: usize, v: u64) {
            b[at..at + 2].copy_from_slice(&PAIRS[(v % 100) as usize]);
        }
        let secs = self.as_secs();
        let rem = secs % 86_400;
        // u64 nanoseconds end in 2554: the year has four digits.
        let (y, m, d) = civil_from_days((secs / 86_400) as i64);
        let y = y as u64;
        let micros = (self.0 % NANOS_PER_SEC) / 1_000;
        let mut b = *b"0000-00-00T00:00:00.000000Z";
        put2(&mut b, 0, y / 100);
        put2(&mut b, 2, y);
        put2(&mut b, 5, u64::from(m));
        put2(&mut b, 8, u64::from(d));
        put2(&mut b, 11, rem / 3600);
        put2(&mut b, 14, (rem / 60) % 60);
        put2(&mut b, 17, rem % 60);
        put2(&mut b, 20, micros / 10_000);
        put2(&mut b, 22, micros / 100);
        put2(&mut b, 24, micros);
        b
    }
}

impl fmt::Display for Timestamp {
    /// RFC 3339, UTC, microseconds: `2024-05-01T12:34:56.123456Z`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(std::str::from_utf8(&self.rfc3339()).map_err(|_| fmt::Error)?)
    }
}

impl serde::Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let b = self.rfc3339();
        s.serialize_str(std::str::from_utf8(&b).map_err(serde::ser::Error::custom)?)
    }
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian
/// calendar (Howard Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// (year, month, day) to days since 1970-01-01 (Howard Hinnant's `days_from_civil`).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if m > 2 { m - 3 } else { m + 9 } as i64;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

impl Timestamp {
    /// A UTC civil time; `None` when a field is out of range or before 1970.
    pub fn from_civil(y: i64, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> Option<Timestamp> {
        if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 {
            return None;
        }
        let days = days_from_civil(y, mo, d);
        let secs = days.checked_mul(86_400)? + (h * 3600 + mi * 60 + s) as i64;
        u64::try_from(secs).ok().map(Timestamp::from_secs)
    }

    /// RFC 3339 / ISO 8601 date-time: `2026-11-21T10:00:00Z`,
    /// `2026-11-21 10:00:00.25+01:00`, fraction and offset optional
    /// (no offset = UTC). `None` when it is not one.
    pub fn parse_rfc3339(s: &str) -> Option<Timestamp> {
        let b = s.trim().as_bytes();
        let num = |r: std::ops::Range<usize>| -> Option<u32> {
            let t = b.get(r)?;
            if t.iter().all(u8::is_ascii_digit) {
                std::str::from_utf8(t).ok()?.parse().ok()
            } else {
                None
            }
        };
        if b.len() < 19
            || b[4] != b'-'
            || b[7] != b'-'
            || !matches!(b[10], b'T' | b't' | b' ')
            || b[13] != b':'
            || b[16] != b':'
        {
            return None;
        }
        let t = Timestamp::from_civil(
            num(0..4)? as i64,
            num(5..7)?,
            num(8..10)?,
            num(11..13)?,
            num(14..16)?,
            num(17..19)?,
        )?;
        let mut i = 19;
        let mut frac_ns = 0u64;
        if b.get(i) == Some(&b'.') {
            i += 1;
            let start = i;
            while b.get(i).is_some_and(u8::is_ascii_digit) {
                if i - start < 9 {
                    frac_ns = frac_ns * 10 + u64::from(b[i] - b'0');
                }
                i += 1;
            }
            if i == start {
                return None;
            }
            for _ in (i - start).min(9)..9 {
                frac_ns *= 10;
            }
        }
        let t = t.plus(frac_ns);
        match b.get(i..)? {
            [] | [b'Z' | b'z'] => Some(t),
            [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
                let digits = [*h1, *h2, *m1, *m2];
                if !digits.iter().all(u8::is_ascii_digit) {
                    return None;
                }
                let off = (u64::from(h1 - b'0') * 10 + u64::from(h2 - b'0')) * 3600
                    + (u64::from(m1 - b'0') * 10 + u64::from(m2 - b'0')) * 60;
                let off = off * NANOS_PER_SEC;
                // Local time minus a positive offset is UTC.
                if *sign == b'+' {
                    t.0.checked_sub(off).map(Timestamp)
                } else {
                    Some(t.plus(off))
                }
            }
            _ => None,
        }
    }
}

/// Seconds with microsecond precision, for `duration` fields.
/// Unix seconds (negative before 1970, as certificates may say) as RFC
/// 3339 UTC to the second: `2025-01-31T00:00:00Z`. Certificate validity
/// reaches past what [`Timestamp`] holds (year 9999 is common), so this
/// takes the seconds themselves; years outside 0..=9999 are clamped to
/// their four digits' range.
pub fn rfc3339_secs(secs: i64) -> String {
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let rem = secs.rem_euclid(86_400);
    let y = y.clamp(0, 9999);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

pub fn nanos_to_secs_f64(n: Nanos) -> f64 {
    (n / 1_000) as f64 / 1e6
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificate_seconds_as_rfc3339() {
        // `date -u -d @N +%FT%TZ` gives these (the last is X.509's largest
        // GeneralizedTime, 99991231235959Z).
        assert_eq!(rfc3339_secs(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_secs(-1), "1969-12-31T23:59:59Z");
        assert_eq!(rfc3339_secs(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339_secs(253_402_300_799), "9999-12-31T23:59:59Z");
    }

    #[test]
    fn compact_names_the_second() {
        let t = Timestamp::from_civil(2026, 11, 21, 10, 15, 7)
            .unwrap()
            .plus(123);
        assert_eq!(t.compact(), "20261121T101507Z");
    }

    #[test]
    fn formats_rfc3339_micros() {
        // 2019-07-24T15:43:18.123456Z, checked with `date -u -d @1563982998`.
        let t = Timestamp::from_units(1_563_982_998, 123_456, 1_000_000);
        assert_eq!(t.to_string(), "2019-07-24T15:43:18.123456Z");
        assert_eq!(Timestamp(0).to_string(), "1970-01-01T00:00:00.000000Z");
        // Leap day.
        assert_eq!(
            Timestamp::from_secs(951_782_400).to_string(),
            "2000-02-29T00:00:00.000000Z"
        );
        // The last instant a u64 of nanoseconds holds: still four year digits.
        assert_eq!(
            Timestamp(u64::MAX).to_string(),
            "2554-07-21T23:34:33.709551Z"
        );
        assert_eq!(
            serde_json::to_string(&Timestamp::from_secs(86_399)).unwrap(),
            "\"1970-01-01T23:59:59.000000Z\""
        );
    }

    #[test]
    fn every_digit_position_matches_format() {
        // Instants spread over the whole u64 range, each digit written by
        // lookup checked against `format!`'s padding. The step moves the
        // date by about 11.6 days, the time of day by 3 s and the
        // microseconds by 123 456, so every digit position takes every value.
        let mut t = 0u64;
        while let Some(next) = t.checked_add(1_000_003_123_456_789) {
            let ts = Timestamp(t);
            let secs = ts.as_secs();
            let (y, m, d) = civil_from_days((secs / 86_400) as i64);
            let r = secs % 86_400;
            let want = format!(
                "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:06}Z",
                r / 3600,
                r / 60 % 60,
                r % 60,
                t % NANOS_PER_SEC / 1000
            );
            assert_eq!(ts.to_string(), want);
            assert_eq!(
                Timestamp::parse_rfc3339(&want).map(|p| p.as_nanos()),
                Some(t - t % 1000),
                "{want}"
            );
            t = next;
        }
    }

    #[test]
    fn nanosecond_resolution_is_kept_until_printing() {
        let t = Timestamp::from_units(10, 999_999_999, NANOS_PER_SEC);
        assert_eq!(t.as_nanos(), 10_999_999_999);
        assert_eq!(t.to_string(), "1970-01-01T00:00:10.999999Z");
        assert_eq!(
            Timestamp::from_ticks(1_500, 1_000).as_nanos(),
            1_500_000_000
        );
    }

    #[test]
    fn parses_rfc3339() {
        let t = Timestamp::parse_rfc3339("2019-07-24T15:43:18.123456Z").unwrap();
        assert_eq!(t, Timestamp::from_units(1_563_982_998, 123_456, 1_000_000));
        assert_eq!(
            Timestamp::parse_rfc3339("2019-07-24 17:43:18+02:00"),
            Some(Timestamp::from_secs(1_563_982_998))
        );
        assert_eq!(
            Timestamp::parse_rfc3339("2019-07-24T15:43:18"),
            Some(Timestamp::from_secs(1_563_982_998))
        );
        assert_eq!(
            Timestamp::parse_rfc3339("2000-02-29T00:00:00Z"),
            Some(Timestamp::from_secs(951_782_400))
        );
        for bad in [
            "",
            "2019-13-01T00:00:00Z",
            "2019-07-24T15:43:18.Z",
            "2019-07-24T15:43:18+2",
            "1969-12-31T23:59:59Z",
            "2019-07-24T15:43:18Zjunk",
        ] {
            assert_eq!(Timestamp::parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn hostile_values_saturate() {
        let t = Timestamp::from_units(u64::MAX, u64::MAX, 1);
        assert_eq!(t.0, u64::MAX);
        assert_eq!(Timestamp(5).since(Timestamp(9)), 0);
    }
}
