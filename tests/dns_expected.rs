//! `dns` records against tshark, and names for connections without SNI, on
//! `fixtures/dns/dns-names.pcap` (made by `fixtures/make-dns.sh`: dnsmasq
//! answering dig over UDP and TCP, a truncated answer retried over TCP, a
//! DoT client, a DoH-style TLS connection, opaque TCP connections). The
//! truth is `fixtures/dns/truth.tsv`: tshark's fields of every DNS message.

mod common;
use common::*;
use serde_json::Value;
use std::collections::BTreeMap;

/// One DNS message as tshark decoded it.
#[derive(Debug)]
struct Msg {
    client: (String, u64),
    tcp: bool,
    id: u64,
    response: bool,
    name: String,
    qtype: u64,
    rcode: Option<u64>,
    flags: [bool; 4],
    answers: u64,
    a: Vec<String>,
    aaaa: Vec<String>,
    cname: Vec<String>,
    txt: Vec<String>,
    ttls: Vec<u64>,
}

fn truth() -> Vec<Msg> {
    let path = fixture("dns/truth.tsv");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut lines = text.lines().filter(|l| !l.starts_with('#'));
    let head: Vec<&str> = lines.next().expect("a header line").split('\t').collect();
    let mut v = Vec::new();
    for l in lines.filter(|l| !l.is_empty()) {
        let f: BTreeMap<&str, &str> = head.iter().copied().zip(l.split('\t')).collect();
        let list = |k: &str| -> Vec<String> {
            f[k].split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        };
        let flag = |k: &str| f[k] == "1";
        let num = |k: &str| -> u64 {
            let s = f[k];
            match s.strip_prefix("0x") {
                Some(h) => u64::from_str_radix(h, 16).unwrap(),
                None => s.parse().unwrap_or_else(|_| panic!("{k}: {s:?}")),
            }
        };
        let tcp = !f["tcp.srcport"].is_empty();
        let response = flag("dns.flags.response");
        let (sport, dport) = if tcp {
            ("tcp.srcport", "tcp.dstport")
        } else {
            ("udp.srcport", "udp.dstport")
        };
        let client = if response {
            (f["ip.dst"].to_string(), num(dport))
        } else {
            (f["ip.src"].to_string(), num(sport))
        };
        v.push(Msg {
            client,
            tcp,
            id: num("dns.id"),
            response,
            name: f["dns.qry.name"].to_string(),
            qtype: num("dns.qry.type"),
            rcode: response.then(|| num("dns.flags.rcode")),
            flags: [
                flag("dns.flags.authoritative"),
                flag("dns.flags.truncated"),
                flag("dns.flags.recdesired"),
                flag("dns.flags.recavail"),
            ],
            answers: num("dns.count.answers"),
            a: list("dns.a"),
            aaaa: list("dns.aaaa"),
            cname: list("dns.cname"),
            txt: list("dns.txt"),
            ttls: list("dns.resp.ttl")
                .iter()
                .map(|t| t.parse().unwrap())
                .collect(),
        });
    }
    v
}

fn records() -> Vec<Value> {
    replay(&[&fixture("dns/dns-names.pcap")], 2)
}

/// The data of our answers of one type, in order.
fn data(r: &Value, t: &str) -> Vec<String> {
    r["answers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["type_name"] == t)
        .map(|a| a["data"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn dns_records_equal_tshark_messages() {
    let recs = records();
    let dns = of_type(&recs, "dns");
    let msgs = truth();
    // One record per transaction: every query tshark saw is answered here,
    // so records = queries = responses.
    let queries: Vec<&Msg> = msgs.iter().filter(|m| !m.response).collect();
    let responses: Vec<&Msg> = msgs.iter().filter(|m| m.response).collect();
    assert_eq!(queries.len(), responses.len());
    assert_eq!(dns.len(), queries.len(), "one record per transaction");
    assert!(dns.len() >= 9, "the fixture has at least 9 transactions");
    for q in &queries {
        let r = dns
            .iter()
            .find(|r| {
                r["trans_id"] == q.id
                    && r["src_ip"] == q.client.0.as_str()
                    && r["src_port"] == q.client.1
            })
            .unwrap_or_else(|| panic!("no record for query {q:?}"));
        assert_eq!(r["proto"], if q.tcp { "tcp" } else { "udp" });
        assert_eq!(r["query"], q.name.as_str());
        assert_eq!(r["qtype"], q.qtype);
        assert_eq!(r["qclass"], 1);
        assert_eq!(r["rd"], q.flags[2]);
        assert_eq!(r["malformed"], false);
    }
    let mut checked = BTreeMap::<&str, usize>::new();
    for m in &responses {
        let r = dns
            .iter()
            .find(|r| {
                r["trans_id"] == m.id
                    && r["src_ip"] == m.client.0.as_str()
                    && r["src_port"] == m.client.1
            })
            .unwrap_or_else(|| panic!("no record for response {m:?}"));
        let what = format!("response {} {}", m.id, m.name);
        assert_eq!(r["query"], m.name.as_str(), "{what}");
        assert_eq!(r["rcode"], m.rcode.unwrap(), "{what}");
        let flags = [&r["aa"], &r["tc"], &r["rd"], &r["ra"]];
        assert_eq!(flags, m.flags.map(Value::Bool).each_ref(), "{what}");
        assert!(r["rtt"].as_f64().unwrap() > 0.0, "{what}");
        let kept = r["answers"].as_array().unwrap().len() as u64;
        assert_eq!(
            kept + r["answers_more"].as_u64().unwrap(),
            m.answers,
            "{what}"
        );
        // Answers beyond the cap are counted, not kept: compare what is kept.
        let n = kept as usize;
        let take = |v: &[String]| v.iter().take(n).cloned().collect::<Vec<_>>();
        assert_eq!(data(r, "A"), take(&m.a), "{what}");
        assert_eq!(data(r, "AAAA"), take(&m.aaaa), "{what}");
        assert_eq!(data(r, "CNAME"), take(&m.cname), "{what}");
        assert_eq!(data(r, "TXT"), take(&m.txt), "{what}");
        let ttls: Vec<u64> = r["answers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["ttl"].as_u64().unwrap())
            .collect();
        assert_eq!(ttls, m.ttls[..n], "{what}");
        let rcode_name = r["rcode_name"].as_str().unwrap();
        *checked.entry(rcode_name).or_default() += 1;
        if m.flags[1] {
            *checked.entry("truncated").or_default() += 1;
        }
        if m.tcp {
            *checked.entry("tcp").or_default() += 1;
        }
    }
    // What the fixture covers, so a regenerated capture cannot lose it.
    assert!(
        checked["NXDOMAIN"] >= 1 && checked["NOERROR"] >= 6,
        "{checked:?}"
    );
    assert!(
        checked["truncated"] >= 1 && checked["tcp"] >= 2,
        "{checked:?}"
    );
    let types: Vec<&str> = dns
        .iter()
        .filter_map(|r| r["qtype_name"].as_str())
        .collect();
    for t in ["A", "AAAA", "TXT"] {
        assert!(types.contains(&t), "no {t} query");
    }
}

#[test]
fn connections_without_sni_carry_the_name_the_client_resolved() {
    let recs = records();
    let flows = of_type(&recs, "flow");
    let to = |ip: &str| -> Vec<&&Value> { flows.iter().filter(|f| f["dst_ip"] == ip).collect() };
    // The opaque channel to the address dig resolved: named, by DNS.
    let named = to("198.51.100.20");
    assert_eq!(named.len(), 1);
    assert_eq!(named[0]["service"], Value::Null);
    assert_eq!(named[0]["destination"]["name"], "opaque.blindspot.test");
    assert_eq!(named[0]["destination"]["name_source"], "dns");
    // The same kind of connection to an address nobody resolved: no name.
    let unnamed = to("198.51.100.21");
    assert_eq!(unnamed.len(), 1);
    assert_eq!(unnamed[0]["destination"]["name"], Value::Null);
    assert_eq!(unnamed[0]["destination"]["name_source"], Value::Null);
    // web.blindspot.test was resolved but never connected to; the resolver
    // itself was never resolved: its flows have no name.
    for f in to("192.0.2.1") {
        assert_eq!(f["destination"]["name"], Value::Null, "{f}");
    }
    let stats = of_type(&recs, "stats");
    assert_eq!(stats[0]["dns"]["flows_named"], 1);
    assert_eq!(stats[0]["dns"]["transactions"], of_type(&recs, "dns").len());
}

#[test]
fn encrypted_dns_is_named_and_counted_as_a_blind_spot() {
    let recs = records();
    let flows = of_type(&recs, "flow");
    let service = |port: u64| -> Vec<&Value> {
        flows
            .iter()
            .filter(|f| f["dst_port"] == port && f["proto"] == "tcp")
            .map(|f| &f["service"])
            .collect()
    };
    assert_eq!(service(853), [&Value::from("dot")]);
    assert_eq!(service(443), [&Value::from("doh")]);
    let cov = of_type(&recs, "coverage");
    assert_eq!(cov[0]["encrypted_dns"]["dot"], 1);
    assert_eq!(cov[0]["encrypted_dns"]["doh"], 1);
    assert_eq!(
        cov[0]["dns_transactions"],
        of_type(&recs, "dns").len(),
        "clear DNS transactions"
    );
}
