//! Names for connections without SNI: a bounded per-device passive-DNS map
//! (answer address → the name the device asked for), fed from `dns`
//! records, and the names of encrypted-DNS flows (DoT, DoQ, DoH), which
//! are a blind spot of their own.
//!
//! An answer of a transaction on port 53 names each A/AAAA address it
//! holds with the query's name (the name the device asked for, not the end
//! of a CNAME chain) from the answer's packet time for its TTL, held at
//! least [`MIN_HOLD`] and at most [`MAX_HOLD`]. A flow record gets that
//! name (`destination.name`, `name_source: "dns"`) when the flow's client
//! — its MAC where evidence ties the address to one, else its address —
//! had the server address named before the flow started and the name was
//! still held then.
//!
//! Determinism: the correlator sees the records of one input chunk
//! together, in an order that may differ with the worker count; it applies
//! the chunk's answers first, sorted by answer time, flow id and
//! transaction id, and only then names the chunk's flows, each by the
//! answers that came before its start. A flow record is written at the
//! flow's end, so the answers that preceded its start are in its chunk or
//! an earlier one. In sensor mode the workers' ticks are released by a
//! packet-time watermark instead of chunks; there every answer up to the
//! watermark, in ticks released or still held, is learnt (sorted the same
//! way) before the released ticks' flows are named
//! (`Correlator::learn_dns_until`). What this misses: answers written at the end of input
//! (a TCP answer whose bytes only reassembled then) for flows also drained
//! then, and names whose answer came in a later chunk than the flow's end.
//!
//! Caps: [`NAMES_PER_ADDRESS`] names per device and address (the newest
//! kept) and `max_entries` (device, address) pairs in all; at the cap the
//! map first drops what has expired, then refuses new pairs
//! (`stats.dns.pdns_over_cap`).

use crate::record::{DnsRecord, FlowRecord, TlsRecord};
use crate::time::{NANOS_PER_SEC, Timestamp};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

/// An answer names its addresses at least this long (a TTL of 0 or a few
/// seconds still precedes the connection it was asked for).
pub const MIN_HOLD: u64 = 60 * NANOS_PER_SEC;
/// ... and at most this long, whatever the TTL.
pub const MAX_HOLD: u64 = 24 * 3600 * NANOS_PER_SEC;
/// Names kept per device and address (CDN addresses serve many names).
pub const NAMES_PER_ADDRESS: usize = 4;
/// (device, address) pairs held by default.
pub const MAX_ENTRIES: usize = 200_000;

/// Well-known DNS-over-HTTPS resolvers: their service names (TLS SNI) ...
pub const DOH_NAMES: &[&str] = &[
    "cloudflare-dns.com",
    "mozilla.cloudflare-dns.com",
    "one.one.one.one",
    "1dot1dot1dot1.cloudflare-dns.com",
    "dns.google",
    "dns.google.com",
    "dns.quad9.net",
    "dns9.quad9.net",
    "dns10.quad9.net",
    "dns11.quad9.net",
    "doh.opendns.com",
    "doh.familyshield.opendns.com",
    "dns.adguard-dns.com",
    "dns.adguard.com",
    "doh.cleanbrowsing.org",
    "dns.nextdns.io",
    "doh.mullvad.net",
    "dns.alidns.com",
    "doh.pub",
];

/// ... and their anycast addresses (TCP or UDP 443 to them is DoH).
pub const DOH_ADDRESSES: &[&str] = &[
    "1.1.1.1",
    "1.0.0.1",
    "2606:4700:4700::1111",
    "2606:4700:4700::1001",
    "8.8.8.8",
    "8.8.4.4",
    "2001:4860:4860::8888",
    "2001:4860:4860::8844",
    "9.9.9.9",
    "149.112.112.112",
    "2620:fe::fe",
    "2620:fe::9",
    "208.67.222.222",
    "208.67.220.220",
    "94.140.14.14",
    "94.140.15.15",
];

/// Who asked: the MAC evidence tied the address to, else the address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Asker {
    Mac([u8; 6]),
    Ip(IpAddr),
}

#[derive(Clone, Debug)]
struct Held {
    name: Arc<str>,
    from: Timestamp,
    until: Timestamp,
}

/// The passive-DNS map and the encrypted-DNS counts.
#[derive(Debug)]
pub struct Names {
    map: hashbrown::HashMap<(Asker, IpAddr), Vec<Held>>,
    pub max_entries: usize,
    /// Packet time of the last sweep for expired entries (one per
    /// [`MIN_HOLD`] at most: a flood at the cap costs no scan per answer).
    swept: Option<Timestamp>,
    /// DoH flows waiting for their flow record (a `tls` record comes first).
    doh_pending: hashbrown::HashSet<crate::record::FlowId>,
    /// `stats.dns`: answers learnt, flows named, what the caps refused.
    pub counters: crate::record::Counts,
    /// Encrypted-DNS flows by service (`dot`, `doh`, `doq`).
    pub encrypted: BTreeMap<&'static str, u64>,
}

impl Default for Names {
    fn default() -> Self {
        Names::with_cap(MAX_ENTRIES)
    }
}

impl Names {
    /// A map holding at most `max_entries` (device, address) pairs.
    pub fn with_cap(max_entries: usize) -> Self {
        Names {
            map: hashbrown::HashMap::new(),
            max_entries,
            swept: None,
            doh_pending: hashbrown::HashSet::new(),
            counters: Default::default(),
            encrypted: BTreeMap::new(),
        }
    }
}

/// A name as the map keeps it: lower case, no trailing dot.
fn normal(n: &str) -> String {
    n.trim_end_matches('.').to_ascii_lowercase()
}

impl Names {
    fn count(&mut self, k: &'static str) {
        *self.counters.entry(k).or_default() += 1;
    }

    /// Counts a `dns` record, and learns its answer's addresses for `asker`.
    pub fn learn(&mut self, r: &DnsRecord, asker: Asker) {
        self.count("transactions");
        if r.rcode.is_none() {
            self.count("unanswered");
        }
        if r.malformed {
            self.count("malformed");
        }
        let (Some(at), Some(q)) = (r.answered_at, r.query.as_deref()) else {
            return;
        };
        // Only unicast DNS between a client and its resolver: mDNS and
        // LLMNR announce the sender's own names.
        if r.dst_port != 53 || r.rcode != Some(0) || q.is_empty() {
            return;
        }
        let name: Arc<str> = normal(q).into();
        for a in &r.answers {
            let Some(ip) = a
                .data
                .as_deref()
                .filter(|_| matches!(a.rtype, 1 | 28))
                .and_then(|d| d.parse::<IpAddr>().ok())
            else {
                continue;
            };
            let hold = (u64::from(a.ttl) * NANOS_PER_SEC).clamp(MIN_HOLD, MAX_HOLD);
            let held = Held {
                name: name.clone(),
                from: at,
                until: Timestamp(at.0.saturating_add(hold)),
            };
            self.insert((asker, ip), held);
        }
    }

    fn insert(&mut self, key: (Asker, IpAddr), h: Held) {
        if !self.map.contains_key(&key) && self.map.len() >= self.max_entries {
            let now = h.from;
            if self.swept.is_none_or(|t| now.since(t) >= MIN_HOLD) {
                self.swept = Some(now);
                let before = self.map.len();
                self.map.retain(|_, v| {
                    v.retain(|x| x.until >= now);
                    !v.is_empty()
                });
                *self.counters.entry("pdns_expired").or_default() +=
                    (before - self.map.len()) as u64;
            }
            if self.map.len() >= self.max_entries {
                self.count("pdns_over_cap");
                return;
            }
        }
        self.count("pdns_answers");
        let v = self.map.entry(key).or_default();
        match v.iter_mut().find(|x| x.name == h.name) {
            // Asked again: held on from the first answer while it lasted.
            Some(x) if x.until >= h.from => x.until = x.until.max(h.until),
            Some(x) => *x = h,
            None => {
                if v.len() >= NAMES_PER_ADDRESS {
                    // The oldest name gives way.
                    if let Some(i) = (0..v.len()).min_by_key(|&i| (v[i].from, v[i].until)) {
                        v.remove(i);
                    }
                }
                v.push(h);
            }
        }
    }

    /// The name `asker` resolved `server` to before `ts` and still held
    /// then: the latest such answer.
    pub fn lookup(&self, asker: Asker, server: IpAddr, ts: Timestamp) -> Option<Arc<str>> {
        self.map
            .get(&(asker, server))?
            .iter()
            .filter(|h| h.from <= ts && ts <= h.until)
            .max_by(|a, b| (a.from, &a.name).cmp(&(b.from, &b.name)))
            .map(|h| h.name.clone())
    }

    /// A `tls` record: remembers DoH flows (by SNI or address) for their flow record.
    pub fn tls(&mut self, t: &TlsRecord) {
        // Compared as `normal` would make it, without a copy per record.
        let doh_name = |s: &str| {
            let s = s.trim_end_matches('.');
            DOH_NAMES.iter().any(|n| n.eq_ignore_ascii_case(s))
        };
        if t.sni.as_deref().is_some_and(doh_name) || (t.dst_port == 443 && doh_address(t.dst_ip)) {
            self.doh_pending.insert(t.flow_id);
        }
    }

    /// The encrypted-DNS service of a flow record, if it is one: DoT (TCP
    /// 853 speaking TLS), DoQ (UDP 853 with payload), DoH (TLS or QUIC to a
    /// well-known resolver's name or address on 443).
    pub fn encrypted_service(&mut self, f: &FlowRecord) -> Option<&'static str> {
        let doh = (!self.doh_pending.is_empty() && self.doh_pending.remove(&f.flow_id))
            || (f.dst_port == 443 && doh_address(f.dst_ip) && f.service.is_some());
        let s = match (f.proto, f.dst_port, f.service) {
            ("tcp", 853, Some("ssl")) => "dot",
            ("udp", 853, _) if f.orig.payload_bytes > 0 => "doq",
            (_, _, Some("ssl" | "quic")) if doh => "doh",
            _ => return None,
        };
        *self.encrypted.entry(s).or_default() += 1;
        Some(s)
    }

    /// End of a chunk: DoH marks whose flow record never came (cannot
    /// happen: the two are written together) are dropped.
    pub fn end_chunk(&mut self) {
        self.doh_pending.clear();
    }

    pub fn entries(&self) -> usize {
        self.map.len()
    }
}

/// A well-known DoH resolver's address. The list is parsed once: this runs
/// for every flow and TLS record on the correlator's one thread.
fn doh_address(ip: IpAddr) -> bool {
    type Set = hashbrown::HashSet<IpAddr, foldhash::fast::FixedState>;
    static PARSED: std::sync::OnceLock<Set> = std::sync::OnceLock::new();
    PARSED
        .get_or_init(|| {
            DOH_ADDRESSES
                .iter()
                .filter_map(|a| a.parse().ok())
                .collect()
        })
        .contains(&ip)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_doh_address_parses_and_is_known() {
        for a in DOH_ADDRESSES {
            let ip: IpAddr = a.parse().expect(a);
            assert!(doh_address(ip), "{a}");
        }
        assert!(!doh_address("192.0.2.1".parse().unwrap()));
    }

    fn held(name: &str, from: u64, ttl: u64) -> Held {
        Held {
            name: name.into(),
            from: Timestamp(from * NANOS_PER_SEC),
            until: Timestamp((from + ttl.max(60)) * NANOS_PER_SEC),
        }
    }

    #[test]
    fn a_name_holds_from_its_answer_for_its_ttl() {
        let mut n = Names::default();
        let dev = Asker::Ip("192.0.2.10".parse().unwrap());
        let srv: IpAddr = "198.51.100.20".parse().unwrap();
        n.insert((dev, srv), held("a.example", 100, 300));
        let at = |n: &Names, s: u64| n.lookup(dev, srv, Timestamp(s * NANOS_PER_SEC));
        assert_eq!(at(&n, 99), None);
        assert_eq!(at(&n, 100).as_deref(), Some("a.example"));
        assert_eq!(at(&n, 400).as_deref(), Some("a.example"));
        assert_eq!(at(&n, 401), None);
        // Another device asked nothing.
        let other = Asker::Ip("192.0.2.11".parse().unwrap());
        assert_eq!(n.lookup(other, srv, Timestamp(150 * NANOS_PER_SEC)), None);
        // A later name for the address wins after its own answer only.
        n.insert((dev, srv), held("b.example", 200, 300));
        assert_eq!(at(&n, 150).as_deref(), Some("a.example"));
        assert_eq!(at(&n, 250).as_deref(), Some("b.example"));
    }

    #[test]
    fn the_map_is_capped_and_counts_what_it_refuses() {
        let mut n = Names::with_cap(3);
        let dev = Asker::Mac([2, 0, 0, 0, 0, 1]);
        for i in 0..5u8 {
            let srv = IpAddr::from([198, 51, 100, i]);
            n.insert((dev, srv), held("x.example", 10, 60));
        }
        assert_eq!(n.entries(), 3);
        assert_eq!(n.counters["pdns_over_cap"], 2);
        // Once the old ones expire, new pairs fit again.
        n.insert(
            (dev, IpAddr::from([198, 51, 100, 9])),
            held("y.example", 1000, 60),
        );
        assert_eq!(n.entries(), 1);
        assert_eq!(n.counters["pdns_expired"], 3);
        // Names per address are capped too, the oldest going first.
        let srv = IpAddr::from([198, 51, 100, 9]);
        for (i, name) in ["a", "b", "c", "d", "e"].iter().enumerate() {
            n.insert((dev, srv), held(name, 1001 + i as u64, 600));
        }
        assert_eq!(n.map[&(dev, srv)].len(), NAMES_PER_ADDRESS);
        assert!(n.map[&(dev, srv)].iter().all(|h| &*h.name != "y.example"));
    }
}
