//! DNS over UDP and TCP (ports 53, 5353 mDNS, 5355 LLMNR), decoded with
//! `simple-dns`: one `dns` record per transaction, as Zeek's dns.log has
//! it — a query and its answer, paired inside the flow by transaction id
//! and question.
//!
//! A record is written when the answer arrives; a query still unanswered
//! is written at the flow's end, or when more than [`MAX_OUTSTANDING`]
//! queries wait (the oldest goes, with the limit
//! `dns_outstanding_over_cap`); an answer whose query was not seen (the
//! capture started later, or mDNS announcements) is written alone. Over
//! TCP each message has a two-byte length (RFC 1035 §4.2.2); a direction
//! with a gap stops being read. A message whose body does not decode
//! still gives its header's fields, marked `malformed`.
//!
//! Hostile input: the section counts are checked against the message's
//! length before `simple-dns` sees it (it reserves room for every counted
//! record), names are cut at [`MAX_TEXT`] bytes, answers kept at
//! [`MAX_ANSWERS`] per record (the rest counted in `answers_more`).

use crate::app::parser::{Cx, End, Parser, Registration, Transport};
use crate::flow::key::{Direction, FlowKey};
use crate::flow::reassembly::StreamEvent;
use crate::record::{DnsRecord, FlowId, Record};
use crate::time::Timestamp;
use serde::Serialize;
use simple_dns::rdata::RData;
use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Queries waiting for their answer, per flow.
pub const MAX_OUTSTANDING: usize = 64;
/// Answers kept per record; the rest are counted in `answers_more`.
pub const MAX_ANSWERS: usize = 32;
/// Longest name or answer text kept (bytes).
pub const MAX_TEXT: usize = 512;
/// Header length (RFC 1035 §4.1.1).
const HEADER: usize = 12;
/// The least bytes a question (root name, type, class) and a resource
/// record (root name, type, class, TTL, rdlength) take.
const MIN_QUESTION: usize = 5;
const MIN_RR: usize = 11;

/// DNS, mDNS and LLMNR ports, at either end.
pub fn on_ports(sport: u16, dport: u16) -> bool {
    [sport, dport].iter().any(|p| matches!(p, 53 | 5353 | 5355))
}

/// DNS over UDP: each datagram is one message.
pub const UDP: Registration = Registration {
    name: "dns",
    transport: Transport::Udp,
    enabled: |_| true,
    probe: |p| on_ports(p.sport, p.dport) && crate::app::service::dns_header(p.first),
    new: |_| Box::new(DnsState::new(Transport::Udp)),
};

/// DNS over TCP: messages framed by a two-byte length. A first segment
/// too short to show a header (a client that writes the length alone) is
/// claimed on the port.
pub const TCP: Registration = Registration {
    name: "dns-tcp",
    transport: Transport::Tcp,
    enabled: |_| true,
    probe: |p| {
        on_ports(p.sport, p.dport)
            && (p.first.len() < 2 + HEADER || crate::app::service::dns_header(&p.first[2..]))
    },
    new: |_| Box::new(DnsState::new(Transport::Tcp)),
};

/// One answer (resource record of the answer section).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DnsAnswer {
    pub name: String,
    /// The RR type's number and name (`A`, `AAAA`, `CNAME`, ...; `null` when unnamed here).
    #[serde(rename = "type")]
    pub rtype: u16,
    pub type_name: Option<&'static str>,
    pub ttl: u32,
    /// Presentation form for A, AAAA, CNAME, NS, PTR, MX, TXT, SRV, SOA,
    /// SVCB/HTTPS; `null` for the other types.
    pub data: Option<String>,
}

/// The first question of a message.
#[derive(Clone, Debug, PartialEq)]
pub struct Question {
    pub name: String,
    pub qtype: u16,
    pub qclass: u16,
}

/// The fixed header (RFC 1035 §4.1.1; Z as Zeek reads it: the three bits
/// Z, AD, CD of RFC 2535).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Header {
    pub id: u16,
    pub response: bool,
    pub opcode: u8,
    pub aa: bool,
    pub tc: bool,
    pub rd: bool,
    pub ra: bool,
    pub z: u8,
    pub rcode: u8,
    pub counts: [u16; 4],
}

impl Header {
    pub fn read(b: &[u8]) -> Option<Header> {
        let h: &[u8; HEADER] = b.get(..HEADER)?.try_into().ok()?;
        let n = |i: usize| u16::from_be_bytes([h[i], h[i + 1]]);
        Some(Header {
            id: n(0),
            response: h[2] & 0x80 != 0,
            opcode: (h[2] >> 3) & 0x0f,
            aa: h[2] & 0x04 != 0,
            tc: h[2] & 0x02 != 0,
            rd: h[2] & 0x01 != 0,
            ra: h[3] & 0x80 != 0,
            z: (h[3] >> 4) & 0x07,
            rcode: h[3] & 0x0f,
            counts: [n(4), n(6), n(8), n(10)],
        })
    }
}

/// One decoded message.
#[derive(Clone, Debug, PartialEq)]
pub struct Message {
    pub header: Header,
    pub question: Option<Question>,
    pub answers: Vec<DnsAnswer>,
    pub answers_more: u32,
    /// The header was read but the body did not decode.
    pub malformed: bool,
}

/// Text of a wire value, cut at [`MAX_TEXT`] bytes (on a char boundary).
fn cut(mut s: String) -> String {
    if s.len() > MAX_TEXT {
        let mut at = MAX_TEXT;
        while !s.is_char_boundary(at) {
            at -= 1;
        }
        s.truncate(at);
    }
    s
}

fn name(n: &simple_dns::Name<'_>) -> String {
    cut(n.to_string())
}

/// The presentation form of the answer types a record shows.
fn rdata_text(r: &RData<'_>) -> Option<String> {
    Some(cut(match r {
        RData::A(a) => Ipv4Addr::from(a.address).to_string(),
        RData::AAAA(a) => Ipv6Addr::from(a.address).to_string(),
        RData::CNAME(n) => n.0.to_string(),
        RData::NS(n) => n.0.to_string(),
        RData::PTR(n) => n.0.to_string(),
        RData::MX(m) => format!("{} {}", m.preference, m.exchange),
        RData::TXT(t) => String::try_from(t.clone()).ok()?,
        RData::SRV(s) => format!("{} {} {} {}", s.priority, s.weight, s.port, s.target),
        RData::SOA(s) => s.mname.to_string(),
        RData::SVCB(s) | RData::HTTPS(simple_dns::rdata::HTTPS(s)) => {
            format!("{} {}", s.priority, s.target)
        }
        _ => return None,
    }))
}

/// IANA names of the common RR types (and query types).
pub fn type_name(t: u16) -> Option<&'static str> {
    Some(match t {
        1 => "A",
        2 => "NS",
        5 => "CNAME",
        6 => "SOA",
        12 => "PTR",
        13 => "HINFO",
        15 => "MX",
        16 => "TXT",
        28 => "AAAA",
        33 => "SRV",
        35 => "NAPTR",
        39 => "DNAME",
        41 => "OPT",
        43 => "DS",
        46 => "RRSIG",
        47 => "NSEC",
        48 => "DNSKEY",
        50 => "NSEC3",
        64 => "SVCB",
        65 => "HTTPS",
        99 => "SPF",
        251 => "IXFR",
        252 => "AXFR",
        255 => "ANY",
        257 => "CAA",
        _ => return None,
    })
}

/// IANA names of the classes.
pub fn class_name(c: u16) -> Option<&'static str> {
    Some(match c {
        1 => "C_INTERNET",
        3 => "C_CHAOS",
        4 => "C_HESIOD",
        254 => "C_NONE",
        255 => "C_ANY",
        _ => return None,
    })
}

/// IANA names of the response codes (the header's four bits).
pub fn rcode_name(r: u8) -> Option<&'static str> {
    Some(match r {
        0 => "NOERROR",
        1 => "FORMERR",
        2 => "SERVFAIL",
        3 => "NXDOMAIN",
        4 => "NOTIMP",
        5 => "REFUSED",
        6 => "YXDOMAIN",
        7 => "YXRRSET",
        8 => "NXRRSET",
        9 => "NOTAUTH",
        10 => "NOTZONE",
        _ => return None,
    })
}

/// A DNS message from a UDP payload or a TCP frame; `None` when it is
/// shorter than a header.
pub fn parse(b: &[u8]) -> Option<Message> {
    let header = Header::read(b)?;
    let [qd, an, ns, ar] = header.counts.map(usize::from);
    let mut m = Message {
        header,
        question: None,
        answers: Vec::new(),
        answers_more: 0,
        malformed: true,
    };
    // simple-dns reserves room for every counted record before reading
    // one: counts the length cannot hold are refused first.
    if HEADER + MIN_QUESTION * qd + MIN_RR * (an + ns + ar) > b.len() {
        return Some(m);
    }
    let Ok(p) = simple_dns::Packet::parse(b) else {
        return Some(m);
    };
    m.malformed = false;
    m.question = p.questions.first().map(|q| Question {
        name: name(&q.qname),
        qtype: q.qtype.into(),
        // mDNS's unicast-response bit was taken off by the crate: put back.
        qclass: u16::from(q.qclass) | if q.unicast_response { 0x8000 } else { 0 },
    });
    for rr in &p.answers {
        if m.answers.len() >= MAX_ANSWERS {
            m.answers_more += 1;
            continue;
        }
        let rtype = u16::from(rr.rdata.type_code());
        m.answers.push(DnsAnswer {
            name: name(&rr.name),
            rtype,
            type_name: type_name(rtype),
            ttl: rr.ttl,
            data: rdata_text(&rr.rdata),
        });
    }
    Some(m)
}

/// A query waiting for its answer.
#[derive(Debug)]
struct Pending {
    ts: Timestamp,
    /// Client address and port, server address and port.
    ends: Ends,
    msg: Message,
}

/// Sender and receiver of a message.
#[derive(Clone, Copy, Debug)]
struct Ends {
    src: IpAddr,
    sport: u16,
    dst: IpAddr,
    dport: u16,
}

impl Ends {
    /// The ends of a message sent in direction `d` of the flow `key`.
    fn of(key: &FlowKey, d: Direction) -> Ends {
        let (a, b) = ((key.src.to_ip(), key.sport), (key.dst.to_ip(), key.dport));
        let ((src, sport), (dst, dport)) = match d {
            Direction::ToServer => (a, b),
            Direction::ToClient => (b, a),
        };
        Ends {
            src,
            sport,
            dst,
            dport,
        }
    }

    fn flip(self) -> Ends {
        Ends {
            src: self.dst,
            sport: self.dport,
            dst: self.src,
            dport: self.sport,
        }
    }
}

/// Where records go: the flow they belong to.
struct Flow<'a> {
    key: &'a FlowKey,
    flow_id: FlowId,
    out: &'a mut Vec<Record>,
}

/// One flow's DNS state.
#[derive(Debug)]
pub struct DnsState {
    transport: Transport,
    pending: VecDeque<Pending>,
    /// TCP: the bytes of a message not yet whole, per direction.
    partial: [Vec<u8>; 2],
    /// TCP: a direction had a gap (its framing is lost).
    stopped: [bool; 2],
}

impl DnsState {
    pub(crate) fn new(transport: Transport) -> Self {
        DnsState {
            transport,
            pending: VecDeque::new(),
            partial: [Vec::new(), Vec::new()],
            stopped: [false; 2],
        }
    }

    fn proto(&self) -> &'static str {
        match self.transport {
            Transport::Tcp => "tcp",
            Transport::Udp => "udp",
        }
    }

    /// A message of `ends.src` to `ends.dst` at `ts`.
    fn message(&mut self, b: &[u8], ts: Timestamp, ends: Ends, f: &mut Flow<'_>) {
        let Some(msg) = parse(b) else { return };
        if !msg.header.response {
            let dup = self
                .pending
                .iter()
                .any(|p| p.msg.header.id == msg.header.id && p.msg.question == msg.question);
            // A retransmission waits as the first copy did.
            if !dup {
                if self.pending.len() >= MAX_OUTSTANDING
                    && let Some(old) = self.pending.pop_front()
                {
                    let mut r = self.record(Some(old.msg), None, old.ts, old.ends, f);
                    r.limits.push("dns_outstanding_over_cap");
                    f.out.push(Record::Dns(Box::new(r)));
                }
                self.pending.push_back(Pending { ts, ends, msg });
            }
            return;
        }
        let at = self.pending.iter().position(|p| {
            p.msg.header.id == msg.header.id
                && (p.msg.question == msg.question
                    || p.msg.question.is_none()
                    || msg.question.is_none())
        });
        let r = match at.and_then(|i| self.pending.remove(i)) {
            Some(q) => self.record(Some(q.msg), Some((msg, ts)), q.ts, q.ends, f),
            None => self.record(None, Some((msg, ts)), ts, ends.flip(), f),
        };
        f.out.push(Record::Dns(Box::new(r)));
    }

    /// The record of a query and/or its answer; `ends` are the client's and
    /// the server's.
    fn record(
        &self,
        query: Option<Message>,
        answer: Option<(Message, Timestamp)>,
        ts: Timestamp,
        ends: Ends,
        f: &Flow<'_>,
    ) -> DnsRecord {
        let q = query.as_ref();
        let a = answer.as_ref().map(|(m, _)| m);
        let question = q
            .and_then(|m| m.question.clone())
            .or_else(|| a.and_then(|m| m.question.clone()));
        let h = a.or(q).map(|m| m.header).unwrap_or_default();
        let rcode = a.map(|m| m.header.rcode);
        let (answers, answers_more) = match answer {
            Some((ref m, _)) => (m.answers.clone(), m.answers_more),
            None => (Vec::new(), 0),
        };
        DnsRecord {
            kind: "dns",
            ts,
            flow_id: f.flow_id,
            src_ip: ends.src,
            src_port: ends.sport,
            dst_ip: ends.dst,
            dst_port: ends.dport,
            proto: self.proto(),
            vlan: f.key.vlan.iter().copied().filter(|v| *v != 0).collect(),
            trans_id: h.id,
            rtt: answer
                .as_ref()
                .filter(|_| q.is_some())
                .map(|(_, t)| t.since(ts) as f64 / 1e9),
            query: question.as_ref().map(|q| q.name.clone()),
            qclass: question.as_ref().map(|q| q.qclass),
            qclass_name: question
                .as_ref()
                .and_then(|q| class_name(q.qclass & 0x7fff)),
            qtype: question.as_ref().map(|q| q.qtype),
            qtype_name: question.as_ref().and_then(|q| type_name(q.qtype)),
            opcode: h.opcode,
            rcode,
            rcode_name: rcode.and_then(rcode_name),
            aa: a.is_some_and(|m| m.header.aa),
            tc: a.is_some_and(|m| m.header.tc),
            rd: q.or(a).is_some_and(|m| m.header.rd),
            ra: a.is_some_and(|m| m.header.ra),
            z: h.z,
            rejected: rcode == Some(5),
            answers,
            answers_more,
            malformed: q.is_some_and(|m| m.malformed) || a.is_some_and(|m| m.malformed),
            answered_at: answer.as_ref().map(|(_, t)| *t),
            learned: false,
            device: Default::default(),
            limits: Default::default(),
        }
    }

    /// TCP: the messages of stream bytes `b` of direction `d`. Whole
    /// messages are read straight from the segment; a message cut by a
    /// segment boundary is kept (at most 2 + 65 535 bytes) until whole.
    fn stream(&mut self, d: Direction, mut b: &[u8], ts: Timestamp, f: &mut Flow<'_>) {
        let ends = Ends::of(f.key, d);
        let i = d.index();
        let framed = |x: &[u8]| 2 + usize::from(u16::from_be_bytes([x[0], x[1]]));
        while !b.is_empty() {
            if self.partial[i].is_empty() {
                if b.len() >= 2 && b.len() >= framed(b) {
                    let n = framed(b);
                    self.message(&b[2..n], ts, ends, f);
                    b = &b[n..];
                    continue;
                }
                self.partial[i].extend_from_slice(b);
                return;
            }
            let buf = &mut self.partial[i];
            let want = if buf.len() < 2 { 2 } else { framed(buf) };
            let take = (want - buf.len()).min(b.len());
            buf.extend_from_slice(&b[..take]);
            b = &b[take..];
            if buf.len() >= 2 && buf.len() == framed(buf) {
                let whole = std::mem::take(buf);
                self.message(&whole[2..], ts, ends, f);
            }
        }
    }
}

impl DnsState {
    /// One datagram of direction `d` of the flow `key`, as [`Parser::feed`]
    /// hands it with its packet (the fuzzer's way in).
    pub(crate) fn datagram(
        &mut self,
        d: Direction,
        b: &[u8],
        ts: Timestamp,
        key: &FlowKey,
        out: &mut Vec<Record>,
    ) {
        let mut f = Flow {
            key,
            flow_id: FlowId(1),
            out,
        };
        self.message(b, ts, Ends::of(key, d), &mut f);
    }

    /// Queries waiting, and bytes held for cut TCP messages (for the fuzzer's checks).
    pub(crate) fn held(&self) -> (usize, usize) {
        (
            self.pending.len(),
            self.partial.iter().map(Vec::len).max().unwrap_or(0),
        )
    }
}

impl Parser for DnsState {
    fn feed(&mut self, d: Direction, ev: StreamEvent<'_>, cx: &mut Cx<'_>) {
        let mut f = Flow {
            key: cx.key,
            flow_id: cx.flow_id(),
            out: cx.out,
        };
        match (ev, self.transport, cx.packet) {
            (StreamEvent::Data(b), Transport::Udp, Some(p)) => {
                let ends = Ends {
                    src: p.key.src.to_ip(),
                    sport: p.key.sport,
                    dst: p.key.dst.to_ip(),
                    dport: p.key.dport,
                };
                self.message(b, cx.ts, ends, &mut f);
            }
            (StreamEvent::Data(b), Transport::Tcp, _) if !self.stopped[d.index()] => {
                self.stream(d, b, cx.ts, &mut f)
            }
            (StreamEvent::Gap(_), _, _) => {
                self.stopped[d.index()] = true;
                self.partial[d.index()] = Vec::new();
            }
            _ => {}
        }
    }

    fn wants(&self, d: Direction) -> bool {
        !self.stopped[d.index()]
    }

    fn heap_bytes(&self) -> usize {
        self.partial.iter().map(Vec::capacity).sum::<usize>()
            + self.pending.len() * (std::mem::size_of::<Pending>() + 64)
    }

    fn service(&self) -> Option<&'static str> {
        Some("dns")
    }

    fn finish(&mut self, end: &mut End<'_>) {
        let f = Flow {
            key: end.key,
            flow_id: end.flow_id,
            out: end.out,
        };
        while let Some(q) = self.pending.pop_front() {
            let r = self.record(Some(q.msg), None, q.ts, q.ends, &f);
            f.out.push(Record::Dns(Box::new(r)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A query for `a.example` type A, id 0x1234, RD.
    fn query() -> Vec<u8> {
        let mut b = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        b.extend_from_slice(b"\x01a\x07example\x00\x00\x01\x00\x01");
        b
    }

    fn answer() -> Vec<u8> {
        let mut b = query();
        b[2] = 0x81;
        b[3] = 0x80;
        b[7] = 1;
        // a.example (pointer to offset 12) A IN TTL 300 192.0.2.7
        b.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 1, 44, 0, 4, 192, 0, 2, 7]);
        b
    }

    #[test]
    fn a_query_and_its_answer_decode() {
        let q = parse(&query()).unwrap();
        assert!(!q.malformed && !q.header.response && q.header.rd);
        assert_eq!(q.question.as_ref().unwrap().name, "a.example");
        let a = parse(&answer()).unwrap();
        assert!(a.header.response && a.header.ra);
        assert_eq!(a.answers.len(), 1);
        assert_eq!(a.answers[0].data.as_deref(), Some("192.0.2.7"));
        assert_eq!(a.answers[0].ttl, 300);
        assert_eq!(a.answers[0].type_name, Some("A"));
    }

    #[test]
    fn counts_the_length_cannot_hold_are_malformed_not_read() {
        let mut b = answer();
        b[6] = 0xff;
        b[7] = 0xff;
        let m = parse(&b).unwrap();
        assert!(m.malformed);
        assert_eq!(m.header.id, 0x1234);
        assert!(parse(&b[..11]).is_none());
        // A compression pointer to itself.
        let mut l = query();
        l.truncate(12);
        l.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
        assert!(parse(&l).unwrap().malformed);
    }

    fn run(t: Transport, segs: &[(Direction, &[u8])]) -> Vec<DnsRecord> {
        let key = FlowKey {
            src: crate::flow::key::Addr::v4([10, 0, 0, 2]),
            dst: crate::flow::key::Addr::v4([10, 0, 0, 1]),
            sport: 40000,
            dport: 53,
            proto: 6,
            vlan: [0, 0],
            tunnel: 0,
        };
        let mut s = DnsState::new(t);
        let mut out = Vec::new();
        let mut f = Flow {
            key: &key,
            flow_id: FlowId(7),
            out: &mut out,
        };
        for (i, (d, b)) in segs.iter().enumerate() {
            s.stream(*d, b, Timestamp(i as u64 * 1000), &mut f);
        }
        while let Some(q) = s.pending.pop_front() {
            let r = s.record(Some(q.msg), None, q.ts, q.ends, &f);
            f.out.push(Record::Dns(Box::new(r)));
        }
        out.into_iter()
            .filter_map(|r| match r {
                Record::Dns(d) => Some(*d),
                _ => None,
            })
            .collect()
    }

    fn framed(m: &[u8]) -> Vec<u8> {
        let mut b = (m.len() as u16).to_be_bytes().to_vec();
        b.extend_from_slice(m);
        b
    }

    #[test]
    fn tcp_messages_are_framed_across_any_segmenting() {
        let (q, a) = (framed(&query()), framed(&answer()));
        for cut_q in 0..q.len() {
            for cut_a in [0, 1, 2, 5, a.len() - 1] {
                let segs = [
                    (Direction::ToServer, &q[..cut_q]),
                    (Direction::ToServer, &q[cut_q..]),
                    (Direction::ToClient, &a[..cut_a]),
                    (Direction::ToClient, &a[cut_a..]),
                ];
                let r = run(Transport::Tcp, &segs);
                assert_eq!(r.len(), 1, "cut {cut_q}/{cut_a}");
                assert_eq!(r[0].query.as_deref(), Some("a.example"));
                assert_eq!(r[0].rcode, Some(0));
                assert_eq!(r[0].src_ip.to_string(), "10.0.0.2");
                assert_eq!(r[0].answers[0].data.as_deref(), Some("192.0.2.7"));
                assert!(r[0].rtt.is_some());
            }
        }
    }

    #[test]
    fn unanswered_queries_are_written_and_capped() {
        let mut many = Vec::new();
        for id in 0..(MAX_OUTSTANDING as u16 + 3) {
            let mut q = query();
            q[..2].copy_from_slice(&id.to_be_bytes());
            many.extend_from_slice(&framed(&q));
        }
        let r = run(Transport::Tcp, &[(Direction::ToServer, &many)]);
        assert_eq!(r.len(), MAX_OUTSTANDING + 3);
        let over = r
            .iter()
            .filter(|r| r.limits.contains(&"dns_outstanding_over_cap"))
            .count();
        assert_eq!(over, 3);
        assert!(r.iter().all(|r| r.rcode.is_none() && r.rtt.is_none()));
    }
}
