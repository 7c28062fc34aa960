//! DHCP lease files: ISC dhcpd `dhcpd.leases`, Kea memfile CSV (v4 and v6),
//! dnsmasq `dnsmasq.leases`. The format is sniffed from the content.
//!
//! # How the format is told
//!
//! The first line that is neither blank nor a `#` comment decides:
//!
//! | first line                                   | format |
//! |----------------------------------------------|--------|
//! | `address,hwaddr,…`                           | Kea DHCPv4 memfile |
//! | `address,duid,…`                             | Kea DHCPv6 memfile |
//! | `lease`, `authoring-byte-order`, `server-duid`, `failover`, `ia-na`, `ia-ta`, `ia-pd`, `db-time-format`, `host`, `group`, `class`, `subclass` statement | ISC dhcpd |
//! | `duid …`, or a number followed by at least three fields | dnsmasq |
//!
//! A file with no such line (empty, or comments only) holds no leases; any
//! other first line is an `Err` naming the formats accepted.
//!
//! # One lease per binding, in file order
//!
//! Lease files are append logs: a server writes a new entry whenever a
//! binding changes (and renewals start new bindings). Every entry that a
//! client holds becomes its own [`Lease`], in file order; the caller sorts.
//! Two rules keep one binding from turning into several overlapping leases:
//!
//! - A later entry for the same address, the same client (MAC, else client
//!   identifier / DUID) and the same start *supersedes* the earlier lease: its
//!   end (and a host name or client identifier the earlier one lacked) replace
//!   the earlier ones.
//! - An entry that records the end of a binding without being a lease itself
//!   (ISC `binding state free` after a DHCPRELEASE, a Kea row with a valid
//!   lifetime of 0) *closes* the same client's latest lease for the address
//!   when its time lies inside that lease: dhcpd writes the release time as
//!   `ends`, so a released lease ends when the client let it go.
//!
//! # ISC dhcpd (`dhcpd.leases(5)`)
//!
//! `lease IP { … }` blocks. Times are UTC: `starts W YYYY/MM/DD HH:MM:SS;`,
//! `starts epoch N;` (written with `db-time-format local;`, a comment with the
//! local time follows) or `never`. Read: `starts`, `ends`, `hardware
//! ethernet`, `binding state`, `uid` (a quoted string with octal escapes, or
//! colon-separated hex), `client-hostname`. A lease in `binding state`
//! `active`, `expired` or `released` was held by a client; `free`, `backup`,
//! `abandoned` and `reset` leases are not (no error), but close the client's
//! lease as described above. A lease block with no `binding state` (dhcpd 2)
//! counts as held. DHCPv6 `ia-na` and `ia-ta` blocks (from `dhcpd -6`) give one
//! lease per `iaaddr` (start: the block's `cltt`; DUID from the block's
//! identifier, after the 4-byte IAID); `ia-pd` prefixes are not addresses and
//! are skipped.
//!
//! # Kea memfile CSV
//!
//! Columns are found by name in the header row, so Kea 1.x to 2.6 files (with
//! or without `state`, `user_context`, `hwtype`, `hwaddr_source`, `pool_id`)
//! load. start = `expire` − `valid_lifetime`, end = `expire` (none when the
//! lifetime is 0xffffffff, Kea's "infinite"). `state`:
//!
//! | state | meaning              | kept |
//! |-------|----------------------|------|
//! | 0     | assigned             | yes |
//! | 1     | declined (address conflict, no client holds it) | no |
//! | 2     | expired-reclaimed    | yes, when it still names a client: the binding it records did exist until `expire` |
//! | 3     | released (newer Kea) | yes, when it still names a client |
//!
//! A row with `valid_lifetime` 0 is how Kea records a deleted (released)
//! lease: it is not a lease, it closes one (Kea 2.2 keeps the original
//! `expire` in it, so the release time is not in the file and the earlier
//! lease keeps its end). DHCPv6 prefix delegations (`lease_type` 2) are
//! skipped. The MAC is the `hwaddr` column when set (Kea takes it from the
//! DUID, the link-local address or relay options), else the one in a DUID-LLT
//! or DUID-LL. Host names have Kea's `&#xHH` escapes undone.
//!
//! # dnsmasq
//!
//! `EXPIRY MAC IP HOSTNAME CLIENT-ID` lines (DHCPv4) and, after the server's
//! `duid DUID` line, `EXPIRY IAID IPV6 HOSTNAME DUID` lines (DHCPv6; the IAID
//! may carry a `T` prefix for a temporary address). EXPIRY 0 means an infinite
//! lease; `*` means no host name / client identifier. dnsmasq records no
//! start. A DHCPv4 hardware address written with a type prefix (`TT-…`, for
//! a non-Ethernet or empty address) gives no MAC; a DHCPv6 lease's MAC is the
//! one in a DUID-LLT or DUID-LL with hardware type 1 (Ethernet), else none.
//! A released lease is gone from the file (dnsmasq rewrites it).
//!
//! # Common to all
//!
//! Host names lose one trailing `.` (Kea's DHCPv6 FQDNs), and an empty one is
//! none. Client identifiers and DUIDs are lower-case hex without separators.
//! A malformed entry (bad IP, bad MAC, bad time, wrong column count, an
//! unterminated block or string) is skipped with one [`LoadError`] at the
//! line where the entry starts; after [`MAX_ERRORS`] of them the rest are
//! counted in one last error. Work is linear in the file size.

use super::{LoadError, Loaded, parse_mac, read_text};
use crate::app::dhcp6::duid_mac;
use crate::time::Timestamp;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

/// One lease: `ip` held by `mac` from `start` to `end`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    pub ip: IpAddr,
    /// `None` for a DHCPv6 lease whose DUID carries no link-layer address
    /// (or an entry that records no Ethernet address at all).
    pub mac: Option<[u8; 6]>,
    /// `None` when the file does not say (dnsmasq records only the expiry).
    pub start: Option<Timestamp>,
    /// `None` for an infinite lease.
    pub end: Option<Timestamp>,
    pub hostname: Option<String>,
    /// Client identifier / DUID as lower-case hex, when recorded.
    pub client_id: Option<String>,
    /// `"isc_dhcpd"`, `"kea"` or `"dnsmasq"`.
    pub source: &'static str,
}

/// Malformed entries reported one by one; the rest are counted in one last
/// error (a hostile file must not turn into millions of error values).
pub const MAX_ERRORS: usize = 1000;

/// Reads a lease file (see the module documentation for the formats).
pub fn load(path: &Path) -> Result<Loaded<Lease>, LoadError> {
    let text = read_text(path)?;
    parse_str(&text, &path.display().to_string())
}

/// Parses the text of a lease file; `file` names it in errors.
pub fn parse_str(text: &str, file: &str) -> Result<Loaded<Lease>, LoadError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut errs = Errors::new(file);
    let mut out = Out::default();
    match sniff(text) {
        Sniffed::Empty => {}
        Sniffed::Isc => isc::parse(text, &mut out, &mut errs),
        Sniffed::Kea(v6) => kea::parse(text, v6, &mut out, &mut errs)?,
        Sniffed::Dnsmasq => dnsmasq::parse(text, &mut out, &mut errs),
        Sniffed::Unknown(line) => {
            return Err(LoadError {
                file: file.to_string(),
                line: Some(line),
                message: "not a lease file: expected ISC dhcpd `lease IP { … }` blocks, a Kea \
                          memfile CSV header (`address,hwaddr,…` or `address,duid,…`) or dnsmasq \
                          `EXPIRY MAC IP HOSTNAME CLIENT-ID` lines"
                    .to_string(),
            });
        }
    }
    Ok(Loaded {
        items: out.items,
        errors: errs.finish(),
        warnings: Vec::new(),
    })
}

enum Sniffed {
    Empty,
    Isc,
    /// `true` for DHCPv6.
    Kea(bool),
    Dnsmasq,
    Unknown(usize),
}

const ISC_TOP: &[&str] = &[
    "lease",
    "authoring-byte-order",
    "server-duid",
    "failover",
    "ia-na",
    "ia-ta",
    "ia-pd",
    "db-time-format",
    "host",
    "group",
    "class",
    "subclass",
];

fn sniff(text: &str) -> Sniffed {
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line.starts_with("address,hwaddr") {
            return Sniffed::Kea(false);
        }
        if line.starts_with("address,duid") {
            return Sniffed::Kea(true);
        }
        let first = line
            .split(|c: char| c.is_whitespace() || c == ';' || c == '{')
            .next()
            .unwrap_or("");
        if ISC_TOP.contains(&first) {
            return Sniffed::Isc;
        }
        let mut f = line.split_whitespace();
        let f0 = f.next().unwrap_or("");
        if f0 == "duid" || (f0.bytes().all(|b| b.is_ascii_digit()) && f.count() >= 3) {
            return Sniffed::Dnsmasq;
        }
        return Sniffed::Unknown(i + 1);
    }
    Sniffed::Empty
}

/// Errors for skipped entries, capped at [`MAX_ERRORS`] (every input
/// reader lists its skipped entries through one).
pub(super) struct Errors<'f> {
    pub(super) file: &'f str,
    list: Vec<LoadError>,
    dropped: usize,
    /// Unknown keys, each warned about once per file.
    warnings: Vec<LoadError>,
    warned: std::collections::HashSet<String>,
}

impl<'f> Errors<'f> {
    pub(super) fn new(file: &'f str) -> Self {
        Errors {
            file,
            list: Vec::new(),
            dropped: 0,
            warnings: Vec::new(),
            warned: std::collections::HashSet::new(),
        }
    }

    /// An unknown key `key` in `place` ("an app", "the top level"),
    /// first seen at `line`: one warning per key and place per file; the
    /// entry still loads.
    pub(super) fn unknown_key(&mut self, line: usize, place: &str, key: &str) {
        if self.warned.len() >= MAX_ERRORS || !self.warned.insert(format!("{place}\0{key}")) {
            return;
        }
        self.warnings.push(LoadError {
            file: self.file.to_string(),
            line: Some(line),
            message: format!(
                "unknown key {} in {place} ignored (warned once per file)",
                super::jsondoc::shown(key)
            ),
        });
    }

    /// The warnings so far.
    pub(super) fn take_warnings(&mut self) -> Vec<LoadError> {
        std::mem::take(&mut self.warnings)
    }

    pub(super) fn push(&mut self, line: usize, message: String) {
        if self.list.len() >= MAX_ERRORS {
            self.dropped += 1;
            return;
        }
        self.list.push(LoadError {
            file: self.file.to_string(),
            line: Some(line),
            message,
        });
    }

    pub(super) fn finish(mut self) -> Vec<LoadError> {
        if self.dropped > 0 {
            self.list.push(LoadError {
                file: self.file.to_string(),
                line: None,
                message: format!(
                    "{} more malformed entries skipped (only the first {MAX_ERRORS} are listed)",
                    self.dropped
                ),
            });
        }
        self.list
    }
}

/// The leases read so far, with the latest one per address for the
/// supersede / close rules.
#[derive(Default)]
struct Out {
    items: Vec<Lease>,
    last: HashMap<IpAddr, usize>,
}

/// The client of a lease: its MAC, else its client identifier / DUID.
fn same_client(a_mac: Option<[u8; 6]>, a_id: Option<&str>, b: &Lease) -> bool {
    match (a_mac, b.mac) {
        (Some(x), Some(y)) => x == y,
        (None, None) => a_id.is_some() && a_id == b.client_id.as_deref(),
        _ => false,
    }
}

impl Out {
    fn add(&mut self, l: Lease) {
        if let Some(&i) = self.last.get(&l.ip) {
            let p = &mut self.items[i];
            if p.start == l.start && same_client(l.mac, l.client_id.as_deref(), p) {
                p.end = l.end;
                if l.hostname.is_some() {
                    p.hostname = l.hostname;
                }
                if l.client_id.is_some() {
                    p.client_id = l.client_id;
                }
                return;
            }
        }
        self.last.insert(l.ip, self.items.len());
        self.items.push(l);
    }

    /// `ip` stopped being held by this client at `at`: ends its latest lease
    /// there when `at` lies inside it (at its very start too when
    /// `from_start`: dhcpd's release in the second of the binding; not for
    /// Kea, whose deleted rows carry the lease's own start).
    fn close(
        &mut self,
        ip: IpAddr,
        mac: Option<[u8; 6]>,
        id: Option<&str>,
        at: Timestamp,
        from_start: bool,
    ) {
        let Some(&i) = self.last.get(&ip) else {
            return;
        };
        let p = &mut self.items[i];
        if !same_client(mac, id, p) {
            return;
        }
        let after_start = p.start.is_none_or(|s| at > s || (from_start && at == s));
        let before_end = p.end.is_none_or(|e| at < e);
        if after_start && before_end {
            p.end = Some(at);
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    const D: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(D[(b >> 4) as usize] as char);
        s.push(D[(b & 15) as usize] as char);
    }
    s
}

/// `00:01:0a` (one or two hex digits per octet) to bytes.
fn colon_hex(s: &str) -> Option<Vec<u8>> {
    if s.is_empty() {
        return None;
    }
    s.split(':')
        .map(|o| {
            if (1..=2).contains(&o.len()) && o.bytes().all(|b| b.is_ascii_hexdigit()) {
                u8::from_str_radix(o, 16).ok()
            } else {
                None
            }
        })
        .collect()
}

/// A host name as recorded: one trailing dot dropped, empty = none.
fn host(s: &str) -> Option<String> {
    let s = s.strip_suffix('.').unwrap_or(s);
    (!s.is_empty()).then(|| s.to_string())
}

/// Shortens a value quoted in an error message (hostile files have long lines).
pub(super) fn shown(s: &str) -> String {
    const MAX: usize = 60;
    if s.chars().count() <= MAX {
        format!("'{s}'")
    } else {
        let cut: String = s.chars().take(MAX).collect();
        format!("'{cut}…'")
    }
}

mod dnsmasq;
mod isc;
mod kea;

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Loaded<Lease> {
        parse_str(s, "t.leases").expect("a lease file")
    }

    fn at(y: i64, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> Option<Timestamp> {
        Timestamp::from_civil(y, mo, d, h, mi, s)
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    const A: [u8; 6] = [0x02, 0x00, 0x5e, 0x10, 0x0a, 0x0a];
    const B: [u8; 6] = [0x00, 0x00, 0x5e, 0x00, 0x53, 0x0b];

    fn lines(l: &Loaded<Lease>) -> Vec<Option<usize>> {
        l.errors.iter().map(|e| e.line).collect()
    }

    const ISC: &str = r#"# The format of this file is documented in the dhcpd.leases(5) manual page.
authoring-byte-order little-endian;
server-duid "\000\001\000\0012\223\376\000\002\000^\020\002\001";
failover peer "dhcp-failover" state {
  my state normal at 6 2026/11/21 07:00:00;
}
lease 192.0.2.51 {
  starts 6 2026/11/21 07:03:34;
  ends 6 2026/11/21 08:03:34;
  binding state active;
  next binding state free;
  hardware ethernet 02:00:5e:10:0a:0a;
  uid "\001\002\000^\020\012\012";
  client-hostname "iPhone-lab-A";
  on expiry { set x = "y"; }
}
lease 192.0.2.51 {
  starts 6 2026/11/21 07:03:34;
  ends 6 2026/11/21 07:03:36;
  tstp 6 2026/11/21 07:03:36;
  binding state free;
  hardware ethernet 02:00:5e:10:0a:0a;
}
lease 192.0.2.51 {
  starts epoch 1795244618; # Sat Nov 21 07:03:38 2026
  ends never;
  binding state active;
  hardware ethernet 00:00:5e:00:53:0b;
  uid 01:00:00:5e:00:53:0b;
}
lease 192.0.2.52 {
  starts 6 2026/11/21 07:00:00;
  ends 6 2026/11/21 08:00:00;
  binding state free;
}
lease 192.0.2.53 {
  starts 6 2026/11/21 07:00:00;
  ends 6 2026/11/21 08:00:00;
  binding state abandoned;
  hardware ethernet 00:00:5e:00:53:0b;
}
"#;

    #[test]
    fn isc_released_lease_ends_at_the_release() {
        let l = parse(ISC);
        assert_eq!(l.errors, vec![]);
        assert_eq!(
            l.items,
            vec![
                Lease {
                    ip: ip("192.0.2.51"),
                    mac: Some(A),
                    start: at(2026, 11, 21, 7, 3, 34),
                    end: at(2026, 11, 21, 7, 3, 36),
                    hostname: Some("iPhone-lab-A".into()),
                    client_id: Some("0102005e100a0a".into()),
                    source: "isc_dhcpd",
                },
                Lease {
                    ip: ip("192.0.2.51"),
                    mac: Some(B),
                    start: Some(Timestamp::from_secs(1795244618)),
                    end: None,
                    hostname: None,
                    client_id: Some("0100005e00530b".into()),
                    source: "isc_dhcpd",
                },
            ]
        );
    }

    #[test]
    fn isc_renewal_is_its_own_lease_and_a_rewrite_supersedes() {
        let block = |starts: &str, ends: &str, state: &str| {
            format!(
                "lease 192.0.2.9 {{\n  starts 1 {starts};\n  ends 1 {ends};\n  binding state \
                 {state};\n  hardware ethernet 02:00:5e:10:0a:0a;\n}}\n"
            )
        };
        let text = [
            block("2026/11/16 10:00:00", "2026/11/16 11:00:00", "active"),
            block("2026/11/16 10:00:00", "2026/11/16 11:00:00", "active"), // rewritten
            block("2026/11/16 10:30:00", "2026/11/16 11:30:00", "active"), // renewed
            block("2026/11/16 10:30:00", "2026/11/16 11:30:00", "expired"),
        ]
        .concat();
        let l = parse(&text);
        assert_eq!(l.errors, vec![]);
        let got: Vec<_> = l.items.iter().map(|x| (x.start, x.end)).collect();
        assert_eq!(
            got,
            vec![
                (at(2026, 11, 16, 10, 0, 0), at(2026, 11, 16, 11, 0, 0)),
                (at(2026, 11, 16, 10, 30, 0), at(2026, 11, 16, 11, 30, 0)),
            ]
        );
    }

    #[test]
    fn isc_malformed_entries_name_their_line() {
        let text = "\
lease 192.0.2.300 {
  starts 6 2026/11/21 07:00:00;
  ends 6 2026/11/21 08:00:00;
}
lease 192.0.2.2 {
  hardware ethernet 02:00:5e:10:0a;
  ends 6 2026/11/21 08:00:00;
}
lease 192.0.2.3 {
  starts 6 2026/13/21 07:00:00;
  ends 6 2026/11/21 08:00:00;
}
lease 192.0.2.4 {
  ends 6 2026/11/21 08:00:00;
  binding state sideways;
}
lease 192.0.2.5 {
  client-hostname \"no end;
  ends 6 2026/11/21 08:00:00;
}
lease 192.0.2.6 {
  starts 6 2026/11/21 07:00:00;
lease 192.0.2.7 {
  starts 6 2026/11/21 07:00:00;
  ends 6 2026/11/21 08:00:00;
  hardware ethernet 00:00:5e:00:53:0b;
}
lease 192.0.2.8 {
  starts 6 2026/11/21 07:00:00;
  binding state active;
}
lease 192.0.2.11 {
  hardware ethernet;
  ends 6 2026/11/21 08:00:00;
}
lease 192.0.2.10 {
  ends 6 2026/11/21 08:00:00;
";
        let l = parse(text);
        assert_eq!(
            lines(&l),
            [1, 5, 9, 13, 17, 21, 28, 32, 36].map(Some).to_vec(),
            "{:#?}",
            l.errors
        );
        let m: Vec<&str> = l.errors.iter().map(|e| e.message.as_str()).collect();
        let want: [&[&str]; 9] = [
            &["'192.0.2.300': not an IPv4 address"],
            &["hardware ethernet '02:00:5e:10:0a'", "on line 6"],
            &["`starts` time '6 2026/13/21 07:00:00'"],
            &["binding state 'sideways'"],
            &["no closing '\"'"],
            &["lease 192.0.2.6 has no closing '}' before the next"],
            &["no `ends`"],
            &["expected `hardware ethernet MAC;`"],
            &["before the end of the file"],
        ];
        for (msg, parts) in m.iter().zip(want) {
            for part in parts {
                assert!(msg.contains(part), "{msg} lacks {part}");
            }
        }
        // the lease after the unterminated one is still read
        assert_eq!(l.items.len(), 1);
        assert_eq!(l.items[0].ip, ip("192.0.2.7"));
        assert_eq!(l.items[0].mac, Some(B));
        assert_eq!(
            l.errors[0].to_string(),
            format!("t.leases:1: {}", l.errors[0].message)
        );
    }

    #[test]
    fn isc_dhcpv6_ia_na() {
        let text = r#"server-duid "\000\001\000\001";
ia-na "\001\002\003\004\000\001\000\001\062\223\376\322\002\000^\020\012\012" {
  cltt 6 2026/11/21 07:03:48;
  iaaddr 2001:db8::100 {
    binding state active;
    preferred-life 2400;
    max-life 3600;
    ends 6 2026/11/21 08:03:48;
  }
}
ia-na "\001\002\003\004\000\002\000\000\176\331lab-c" {
  cltt 6 2026/11/21 07:03:50;
  iaaddr 2001:db8::101 {
    binding state active;
    ends 6 2026/11/21 08:03:50;
  }
}
ia-pd "\001\002\003\004\000\003\000\001\002\000^\020\012\012" {
  cltt 6 2026/11/21 07:03:48;
  iaprefix 2001:db8:1::/64 {
    binding state active;
    ends 6 2026/11/21 08:03:48;
  }
}
"#;
        let l = parse(text);
        assert_eq!(l.errors, vec![]);
        assert_eq!(
            l.items,
            vec![
                Lease {
                    ip: ip("2001:db8::100"),
                    mac: Some(A),
                    start: at(2026, 11, 21, 7, 3, 48),
                    end: at(2026, 11, 21, 8, 3, 48),
                    hostname: None,
                    client_id: Some("000100013293fed202005e100a0a".into()),
                    source: "isc_dhcpd",
                },
                Lease {
                    ip: ip("2001:db8::101"),
                    mac: None,
                    start: at(2026, 11, 21, 7, 3, 50),
                    end: at(2026, 11, 21, 8, 3, 50),
                    hostname: None,
                    client_id: Some("000200007ed96c61622d63".into()),
                    source: "isc_dhcpd",
                },
            ]
        );
    }

    const KEA4_HEADER: &str = "address,hwaddr,client_id,valid_lifetime,expire,subnet_id,fqdn_fwd,fqdn_rev,hostname,state,user_context\n";

    #[test]
    fn kea4_rows_states_and_tombstones() {
        let text = format!(
            "{KEA4_HEADER}\
192.0.2.61,02:00:5e:10:0a:0a,01:02:00:5e:10:0a:0a,3600,1795248221,1,0,0,iphone&#x2clab-a.,0,\n\
192.0.2.61,02:00:5e:10:0a:0a,01:02:00:5e:10:0a:0a,0,1795244621,1,0,0,iphone-lab-a,0,\n\
192.0.2.61,00:00:5e:00:53:0b,,3600,1795248224,1,0,0,,0,\n\
192.0.2.61,00:00:5e:00:53:0b,,3600,1795248224,1,0,0,macbook,2,\n\
192.0.2.62,,,3600,1795248224,1,0,0,,1,\n\
192.0.2.63,,,3600,1795248224,1,0,0,,2,\n\
192.0.2.64,00:00:5e:00:53:0b,,4294967295,6090215519,1,0,0,,0,{{ \"a\": 1 }}\n"
        );
        let l = parse(&text);
        assert_eq!(l.errors, vec![]);
        assert_eq!(
            l.items,
            vec![
                Lease {
                    ip: ip("192.0.2.61"),
                    mac: Some(A),
                    start: Some(Timestamp::from_secs(1795244621)),
                    end: Some(Timestamp::from_secs(1795248221)),
                    hostname: Some("iphone,lab-a".into()),
                    client_id: Some("0102005e100a0a".into()),
                    source: "kea",
                },
                Lease {
                    ip: ip("192.0.2.61"),
                    mac: Some(B),
                    start: Some(Timestamp::from_secs(1795244624)),
                    end: Some(Timestamp::from_secs(1795248224)),
                    hostname: Some("macbook".into()),
                    client_id: None,
                    source: "kea",
                },
                Lease {
                    ip: ip("192.0.2.64"),
                    mac: Some(B),
                    start: Some(Timestamp::from_secs(6090215519 - 4294967295)),
                    end: None,
                    hostname: None,
                    client_id: None,
                    source: "kea",
                },
            ]
        );
    }

    #[test]
    fn kea_zero_lifetime_row_closes_a_lease_it_falls_inside() {
        // a Kea that stamps the release time into the deleted row
        let text = format!(
            "{KEA4_HEADER}\
192.0.2.61,02:00:5e:10:0a:0a,,3600,5000,1,0,0,,0,\n\
192.0.2.61,02:00:5e:10:0a:0a,,0,1500,1,0,0,,0,\n\
192.0.2.61,00:00:5e:00:53:0b,,0,1600,1,0,0,,0,\n"
        );
        let l = parse(&text);
        assert_eq!(l.errors, vec![]);
        assert_eq!(l.items.len(), 1);
        assert_eq!(l.items[0].start, Some(Timestamp::from_secs(1400)));
        assert_eq!(l.items[0].end, Some(Timestamp::from_secs(1500)));
    }

    #[test]
    fn kea_malformed_rows_name_their_line() {
        let text = format!(
            "{KEA4_HEADER}\
192.0.2.61,02:00:5e:10:0a:0a,,3600,1795248221,1,0,0,,0\n\
192.0.2.300,02:00:5e:10:0a:0a,,3600,1795248221,1,0,0,,0,\n\
192.0.2.61,02:00:5e:10:0a,,3600,1795248221,1,0,0,,0,\n\
192.0.2.61,02:00:5e:10:0a:0a,,3600,soon,1,0,0,,0,\n\
192.0.2.61,02:00:5e:10:0a:0a,,3600,100,1,0,0,,0,\n\
192.0.2.61,02:00:5e:10:0a:0a,,3600,1795248221,1,0,0,,9,\n\
192.0.2.61,02:00:5e:10:0a:0a,zz,3600,1795248221,1,0,0,,0,\n\
\n\
192.0.2.61,02:00:5e:10:0a:0a,,3600,1795248221,1,0,0,,0,\n"
        );
        let l = parse(&text);
        assert_eq!(
            lines(&l),
            [2, 3, 4, 5, 6, 7, 8].map(Some).to_vec(),
            "{:#?}",
            l.errors
        );
        let m: Vec<&str> = l.errors.iter().map(|e| e.message.as_str()).collect();
        assert!(m[0].starts_with("10 columns, expected 11"), "{}", m[0]);
        assert!(m[1].contains("address '192.0.2.300'"), "{}", m[1]);
        assert!(m[2].contains("hwaddr"), "{}", m[2]);
        assert!(m[3].contains("expire 'soon'"), "{}", m[3]);
        assert!(m[4].contains("before valid_lifetime"), "{}", m[4]);
        assert!(m[5].contains("state 9"), "{}", m[5]);
        assert!(m[6].contains("client_id 'zz'"), "{}", m[6]);
        assert_eq!(l.items.len(), 1);

        let e = parse_str("address,hwaddr,client_id,expire\n", "k.csv").unwrap_err();
        assert_eq!((e.file.as_str(), e.line), ("k.csv", Some(1)));
        assert!(
            e.message.contains("no `valid_lifetime` column"),
            "{}",
            e.message
        );
    }

    #[test]
    fn kea6_mac_from_hwaddr_else_duid_and_no_prefixes() {
        let text = "\
address,duid,valid_lifetime,expire,subnet_id,pref_lifetime,lease_type,iaid,prefix_len,fqdn_fwd,fqdn_rev,hostname,hwaddr,state,user_context,hwtype,hwaddr_source
2001:db8::100,00:01:00:01:32:93:fe:d2:02:00:5e:10:0a:0a,3600,1795248228,1,2400,0,1,128,0,0,iphone-lab-a.,,0,,,
2001:db8::102,00:02:00:00:7e:d9:6c:61:62:2d:63,3600,1795248234,1,2400,0,2,128,0,0,,00:00:5e:00:53:0b,0,,1,4
2001:db8::103,00:02:00:00:7e:d9:6c:61:62:2d:64,3600,1795248234,1,2400,0,3,128,0,0,,,0,,,
2001:db8:1::,00:02:00:00:7e:d9:6c:61:62:2d:63,3600,1795248234,1,2400,2,2,64,0,0,,,0,,,
192.0.2.1,00:02:00:00:7e:d9:6c:61:62:2d:63,3600,1795248234,1,2400,0,2,128,0,0,,,0,,,
";
        let l = parse(text);
        assert_eq!(lines(&l), vec![Some(6)], "{:#?}", l.errors);
        let got: Vec<_> = l
            .items
            .iter()
            .map(|x| (x.ip.to_string(), x.mac, x.hostname.clone()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("2001:db8::100".into(), Some(A), Some("iphone-lab-a".into())),
                ("2001:db8::102".into(), Some(B), None),
                ("2001:db8::103".into(), None, None),
            ]
        );
        assert_eq!(
            l.items[2].client_id.as_deref(),
            Some("000200007ed96c61622d64")
        );
    }

    #[test]
    fn dnsmasq_v4_and_v6() {
        let text = "\
1795248244 00:00:5e:00:53:0b 192.0.2.70 macbook-lab-b *
0 02:00:5e:10:0a:0a 192.0.2.71 * 01:02:00:5e:10:0a:0a
1795248244 20-01:02:03 192.0.2.72 ib-host *
1795248244 01- 192.0.2.73 * 01:aa
duid 00:01:00:01:32:93:fe:dd:02:00:5e:10:02:01
1795248250 1577079564 2001:db8::2fa ipad-lab-c 00:02:00:00:7e:d9:6c:61:62:2d:63
1795248249 T1577079563 2001:db8::2a9 * 00:03:00:01:00:00:5e:00:53:0b
1795248247 1578109450 2001:db8::205 iphone-lab-a 00:01:00:01:32:93:fe:e6:02:00:5e:10:0a:0a
";
        let l = parse(text);
        assert_eq!(l.errors, vec![]);
        let got: Vec<_> = l
            .items
            .iter()
            .map(|x| {
                (
                    x.ip.to_string(),
                    x.mac,
                    x.end.map(|t| t.as_secs()),
                    x.hostname.clone(),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    "192.0.2.70".into(),
                    Some(B),
                    Some(1795248244),
                    Some("macbook-lab-b".into())
                ),
                ("192.0.2.71".into(), Some(A), None, None),
                (
                    "192.0.2.72".into(),
                    None,
                    Some(1795248244),
                    Some("ib-host".into())
                ),
                ("192.0.2.73".into(), None, Some(1795248244), None),
                (
                    "2001:db8::2fa".into(),
                    None,
                    Some(1795248250),
                    Some("ipad-lab-c".into())
                ),
                ("2001:db8::2a9".into(), Some(B), Some(1795248249), None),
                (
                    "2001:db8::205".into(),
                    Some(A),
                    Some(1795248247),
                    Some("iphone-lab-a".into())
                ),
            ]
        );
        assert!(
            l.items
                .iter()
                .all(|x| x.start.is_none() && x.source == "dnsmasq")
        );
        assert_eq!(l.items[1].client_id.as_deref(), Some("0102005e100a0a"));
        assert_eq!(
            l.items[4].client_id.as_deref(),
            Some("000200007ed96c61622d63")
        );
    }

    #[test]
    fn dnsmasq_malformed_lines() {
        let text = "\
1795248244 00:00:5e:00:53:0b 192.0.2.70 macbook-lab-b *
1795248244 00:00:5e:00:53:0b 192.0.2.70 macbook-lab-b
1795248244 00:00:5e:00:53 192.0.2.70 h *
1795248244 00:00:5e:00:53:0b 192.0.2.700 h *
-5 00:00:5e:00:53:0b 192.0.2.70 h *
1795248244 00:00:5e:00:53:0b 192.0.2.70 h 01:xyz
1795248250 iaid 2001:db8::2fa h 00:02
1795248250 1 2001:db8::2fa h 00:0g
1795248244 00:00:5e:00:53:0b 192.0.2.70 h * extra
";
        let l = parse(text);
        assert_eq!(
            lines(&l),
            (2..=9).map(Some).collect::<Vec<_>>(),
            "{:#?}",
            l.errors
        );
        assert!(l.errors[0].message.starts_with("4 fields, expected 5"));
        assert!(l.errors[1].message.contains("MAC '00:00:5e:00:53'"));
        assert!(l.errors[2].message.contains("address '192.0.2.700'"));
        assert!(l.errors[3].message.contains("expiry '-5'"));
        assert!(l.errors[4].message.contains("client-id '01:xyz'"));
        assert!(l.errors[5].message.contains("IAID 'iaid'"));
        assert!(l.errors[6].message.contains("DUID '00:0g'"));
        assert!(l.errors[7].message.starts_with("6 fields"));
        assert_eq!(l.items.len(), 1);
    }

    #[test]
    fn sniffing() {
        let e = parse_str("\n# a comment\nhello world\n", "x.txt").unwrap_err();
        assert_eq!((e.file.as_str(), e.line), ("x.txt", Some(3)));
        assert!(e.message.starts_with("not a lease file"), "{}", e.message);
        assert!(e.to_string().starts_with("x.txt:3: not a lease file"));
        for empty in ["", "\n\n", "# only a comment\n", "\u{feff}"] {
            let l = parse(empty);
            assert!(l.items.is_empty() && l.errors.is_empty(), "{empty:?}");
        }
        // a file that is none of them at all
        assert!(parse_str("{\"devices\": []}", "x").is_err());
        assert!(parse_str("address,mac\n", "x").is_err());
    }

    #[test]
    fn duid_macs() {
        assert_eq!(
            duid_mac(&[0, 1, 0, 1, 9, 9, 9, 9, 2, 0, 0x5e, 0x10, 0x0a, 0x0a]),
            Some(A)
        );
        assert_eq!(
            duid_mac(&[0, 3, 0, 1, 2, 0, 0x5e, 0x10, 0x0a, 0x0a]),
            Some(A)
        );
        assert_eq!(duid_mac(&[0, 3, 0, 6, 2, 0, 0x5e, 0x10, 0x0a, 0x0a]), None); // not Ethernet
        assert_eq!(duid_mac(&[0, 3, 0, 1, 2, 0, 0x5e]), None);
        assert_eq!(duid_mac(&[0, 2, 0, 0, 0x7e, 0xd9, 1, 2, 3, 4, 5, 6]), None);
        assert_eq!(duid_mac(&[]), None);
    }

    #[test]
    fn hostile_input_does_not_panic() {
        let mut inputs: Vec<String> = vec![
            "lease".into(),
            "lease {".into(),
            "lease 1.2.3.4".into(),
            "lease 1.2.3.4 {".into(),
            "lease 1.2.3.4 { starts".into(),
            "lease 1.2.3.4 { starts 6 2026/11/21".into(),
            "lease 1.2.3.4 { ends 9 9999999/99/99 99:99:99; }".into(),
            "lease 1.2.3.4 { ends epoch 99999999999999999999; }".into(),
            "lease 1.2.3.4 { ends epoch 18446744073709551615; binding state active; }".into(),
            "lease 1.2.3.4 { \"\\".into(),
            "lease 1.2.3.4 { uid \"\\777\\7\"; ends never; }".into(),
            "lease 1.2.3.4 { } } } ; ; {".into(),
            "ia-na { iaaddr { } }".into(),
            "ia-na \"\" { iaaddr :: { ends never; } }".into(),
            "ia-na \"\\001\" { iaaddr zz { ends never; } iaaddr ::1 { ends never; } }".into(),
            "duid\n1 2 3 4 5\n".into(),
            "1 2 3\n0 0 0 0 0\n".into(),
            "address,duid\n,,,,\n".into(),
            "address,hwaddr,valid_lifetime,expire\n1.2.3.4,,18446744073709551615,0\n".into(),
            "address,hwaddr,valid_lifetime,expire\n\u{e9},\u{e9},\u{e9},\u{e9}\n".into(),
            "server-duid \u{e9}\u{e9}\u{e9} { \u{e9} }".into(),
        ];
        // deep nesting and long statements stay linear
        inputs.push(format!(
            "lease 1.2.3.4 {{ {} ends never; }}",
            "{".repeat(100_000)
        ));
        inputs.push(format!(
            "lease 1.2.3.4 {{ starts {} ; ends never; }}",
            "x ".repeat(100_000)
        ));
        inputs.push(format!("{KEA4_HEADER}{}\n", ",".repeat(200_000)));
        let mut many = String::from("1 00:00:5e:00:53:0b 192.0.2.70 h *\n");
        for _ in 0..(MAX_ERRORS + 7) {
            many.push_str("x\n");
        }
        inputs.push(many);
        let mut bytes = b"lease 192.0.2.1 {\n".to_vec();
        bytes.extend((0u8..=255).cycle().take(8192));
        inputs.push(String::from_utf8_lossy(&bytes).into_owned());
        for s in &inputs {
            let _ = parse_str(s, "h");
        }
        let l = parse(&inputs[inputs.len() - 2]);
        assert_eq!(l.items.len(), 1);
        assert_eq!(l.errors.len(), MAX_ERRORS + 1);
        assert!(l.errors[MAX_ERRORS].message.starts_with("7 more"));
        let l = parse(&inputs[inputs.len() - 3]);
        assert!(
            l.errors[0].message.starts_with("200001 columns"),
            "{}",
            l.errors[0].message
        );
    }
}
