//! The join of inspecting proxies' log entries (`--proxy-log`) to wire
//! sessions. An entry joins a session when
//!
//! 1. its Community ID is the session's (where the log has one), or
//! 2. its client address and port are the session's, or
//! 3. (logs without a client port) its client address is the session's and
//!    its server address or SNI is the session's server or name,
//!
//! and its time span, widened by [`TOLERANCE`] each side, overlaps the
//! session's. Several entries may describe one session (Squid writes the
//! CONNECT it makes up for an intercepted connection and then the tunnel);
//! the verdict that says most wins ([`Verdict::weight`]) and the first entry
//! with it is cited. The index holds at most [`MAX_ENTRIES`] entries; each
//! lookup walks at most [`MAX_WALK`] candidates, so a flood of entries for
//! one address costs a bounded time per session.

use crate::detect::Session;
use crate::inputs::proxylog::{ProxyEntry, Verdict};
use crate::time::{NANOS_PER_SEC, Nanos};
use hashbrown::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

/// Clock difference allowed between the proxy's log and packet time.
pub const TOLERANCE: Nanos = 2 * NANOS_PER_SEC;
/// Entries indexed; the rest are counted in `stats.detections.proxy_log_entries_over_cap`.
pub const MAX_ENTRIES: usize = 4_000_000;
/// Candidates looked at per key and session.
const MAX_WALK: usize = 64;

/// What a session's detections cite of the proxy's log.
#[derive(Clone, Debug, PartialEq)]
pub struct ProxyCite {
    pub verdict: Verdict,
    /// Did the proxy intercept TLS (`Some(false)`: it passed it through)?
    pub intercepted: Option<bool>,
    pub reason: String,
    pub source: &'static str,
    pub file: Arc<str>,
    pub line: u32,
    /// Entries joined to the session.
    pub entries: u32,
}

#[derive(Default)]
pub struct ProxyIndex {
    entries: Arc<Vec<ProxyEntry>>,
    /// Indices by key, each list in start order (the entries are sorted).
    by_port: HashMap<(IpAddr, u16), Vec<u32>>,
    by_cid: HashMap<String, Vec<u32>>,
    by_client: HashMap<IpAddr, Vec<u32>>,
    joined: Vec<bool>,
    /// `proxy_log_entries`, `proxy_log_entries_over_cap`,
    /// `proxy_log_entries_joined`, `proxy_log_sessions_joined`.
    pub counters: [(&'static str, u64); 4],
}

impl ProxyIndex {
    /// `entries` sorted by start (as the loader returns them).
    pub fn new(entries: Arc<Vec<ProxyEntry>>) -> ProxyIndex {
        let mut ix = ProxyIndex {
            counters: [
                ("proxy_log_entries", 0),
                ("proxy_log_entries_over_cap", 0),
                ("proxy_log_entries_joined", 0),
                ("proxy_log_sessions_joined", 0),
            ],
            ..ProxyIndex::default()
        };
        let n = entries.len().min(MAX_ENTRIES);
        ix.counters[0].1 = n as u64;
        ix.counters[1].1 = (entries.len() - n) as u64;
        for (i, e) in entries.iter().take(n).enumerate() {
            let i = i as u32;
            if let Some(c) = &e.community_id {
                ix.by_cid.entry(c.clone()).or_default().push(i);
            }
            match e.client_port {
                Some(p) => ix.by_port.entry((e.client_ip, p)).or_default().push(i),
                None => ix.by_client.entry(e.client_ip).or_default().push(i),
            }
        }
        ix.joined = vec![false; n];
        ix.entries = entries;
        ix
    }

    pub fn is_empty(&self) -> bool {
        self.joined.is_empty()
    }

    /// The proxy's word on a session, if an entry joins it.
    pub fn lookup(&mut self, s: &Session) -> Option<ProxyCite> {
        if self.is_empty() {
            return None;
        }
        let lo = s.ts.0.saturating_sub(TOLERANCE);
        let hi = s.end_ts.0.saturating_add(TOLERANCE);
        let mut found: Vec<u32> = Vec::new();
        let entries = &self.entries;
        // The indices in `list` whose span overlaps [lo, hi]: from the
        // last that starts by `hi`, back at most MAX_WALK.
        let mut walk = |list: Option<&Vec<u32>>, extra: &dyn Fn(&ProxyEntry) -> bool| {
            let Some(list) = list else { return };
            let end = list.partition_point(|&i| entries[i as usize].ts.0 <= hi);
            for &i in list[..end].iter().rev().take(MAX_WALK) {
                let e = &entries[i as usize];
                if e.end_ts.0 >= lo && extra(e) && !found.contains(&i) {
                    found.push(i);
                }
            }
        };
        let name = s.name();
        walk(self.by_cid.get(&*s.community_id), &|_| true);
        walk(
            self.by_port.get(&(s.tuple.src_ip, s.tuple.src_port)),
            &|_| true,
        );
        walk(self.by_client.get(&s.tuple.src_ip), &|e| {
            e.server_ip == Some(s.tuple.dst_ip) || (e.sni.is_some() && e.sni.as_deref() == name)
        });
        if found.is_empty() {
            return None;
        }
        found.sort_unstable();
        let best = found
            .iter()
            .copied()
            .max_by_key(|&i| (entries[i as usize].verdict.weight(), std::cmp::Reverse(i)))?;
        for &i in &found {
            if !std::mem::replace(&mut self.joined[i as usize], true) {
                self.counters[2].1 += 1;
            }
        }
        self.counters[3].1 += 1;
        let e = &self.entries[best as usize];
        Some(ProxyCite {
            verdict: e.verdict,
            intercepted: e.intercepted,
            reason: e.reason.clone(),
            source: e.source,
            file: Arc::clone(&e.file),
            line: e.line,
            entries: found.len() as u32,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inputs::proxylog::parse_str;
    use crate::time::Timestamp;

    /// A session of 10.0.0.5:`port` to `dst`:443 from `ts` s to 1 s later.
    fn session(ts: u64, port: u16, dst: &str) -> Session {
        Session {
            ts: Timestamp(ts * NANOS_PER_SEC),
            end_ts: Timestamp((ts + 1) * NANOS_PER_SEC),
            order: Timestamp(ts * NANOS_PER_SEC),
            flow_id: crate::record::FlowId(ts),
            community_id: "".into(),
            tuple: crate::detect::Tuple {
                src_ip: "10.0.0.5".parse().unwrap(),
                src_port: port,
                dst_ip: dst.parse().unwrap(),
                dst_port: 443,
                proto: "tcp",
                vlan: Vec::new(),
            },
            device: Default::default(),
            limits: Default::default(),
            service: None,
            orig_payload: 100,
            resp_payload: 100,
            first_payload: [None, None],
            tls: None,
            proxy: None,
            dns_name: None,
        }
    }

    #[test]
    fn joins_by_port_and_time_and_by_server_without_port() {
        let squid = "\
100.500 10 10.0.0.5:4000 10.0.1.1:443 NONE_NONE/000 CONNECT 10.0.1.1:443 splice a.example - -/-
100.600 20 10.0.0.5:4000 10.0.1.1:443 TCP_TUNNEL/200 CONNECT a.example:443 splice a.example - -/-
200.000 10 10.0.0.5:4000 10.0.1.1:443 NONE_NONE/000 CONNECT 10.0.1.1:443 bump a.example - ERR_SECURE_ACCEPT_FAIL/SQUID_TLS_ERR_ACCEPT+TLS_LIB_ERR=A000418
";
        let l = parse_str(squid, "sq.log").unwrap();
        assert!(l.errors.is_empty(), "{:?}", l.errors);
        let mut ix = ProxyIndex::new(Arc::new(l.items));
        // Port 4000 at 100 s: both splice lines, cited as not inspected.
        let c = ix.lookup(&session(100, 4000, "10.0.1.1")).unwrap();
        assert_eq!(c.verdict, Verdict::NotInspected);
        assert_eq!((c.line, c.entries), (1, 2));
        // The same port reused at 200 s: the rejection.
        let c = ix.lookup(&session(200, 4000, "10.0.1.1")).unwrap();
        assert_eq!(c.verdict, Verdict::ClientRejected);
        // Another port, or a time out of tolerance: nothing.
        assert!(ix.lookup(&session(100, 4001, "10.0.1.1")).is_none());
        assert!(ix.lookup(&session(150, 4000, "10.0.1.1")).is_none());
        assert_eq!(ix.counters[2], ("proxy_log_entries_joined", 3));
        assert_eq!(ix.counters[3], ("proxy_log_sessions_joined", 2));

        // Zscaler writes no client port: client address + server address.
        let zs = r#"{"datetime": "1970-01-01 00:01:40", "clientip": "10.0.0.5", "serverip": "10.0.1.2", "hostname": "b.example", "ssldecrypted": "No", "action": "Allowed", "reason": "SSL bypass rule"}"#;
        let l = parse_str(zs, "zs.json").unwrap();
        let mut ix = ProxyIndex::new(Arc::new(l.items));
        assert_eq!(
            ix.lookup(&session(100, 5000, "10.0.1.2")).map(|c| c.reason),
            Some("not inspected: SSL bypass rule".to_string())
        );
        assert!(ix.lookup(&session(100, 5000, "10.0.1.3")).is_none());
    }
}
