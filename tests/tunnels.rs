//! Traffic inside tunnels (issue 19.1): the inner TLS handshake and flow of
//! each capture in `fixtures/tunnels/` (recorded on the outer link by
//! `make-tunnels.sh`, kernel VXLAN, and `make-tunnels-ovs.sh`, Open
//! vSwitch's userspace GRE, ERSPAN II/III, Geneve, GTP-U and MPLS) against
//! tshark's truth there, the layers the flow record names against the
//! layers tshark decoded, the tunnel keying (two VXLAN tunnels and two GRE
//! keys carrying the same inner 5-tuple at once), and every other
//! encapsulation the decoder reads, by re-wrapping the real inner frames of
//! a VXLAN capture in it.

mod common;
use common::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn tunnel_captures() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(fixture("tunnels"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "pcap"))
        .collect();
    v.sort();
    assert!(v.len() >= 3, "tunnel captures missing: {v:?}");
    v
}

/// Rows of a truth TSV (comment and header lines dropped), as maps.
fn tsv(name: &str) -> Vec<BTreeMap<String, String>> {
    let text = std::fs::read_to_string(fixture(name)).unwrap();
    let mut lines = text.lines().filter(|l| !l.starts_with('#'));
    let header: Vec<String> = lines
        .next()
        .unwrap()
        .split('\t')
        .map(String::from)
        .collect();
    lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            header
                .iter()
                .cloned()
                .zip(l.split('\t').map(String::from))
                .collect()
        })
        .collect()
}

/// The id of the innermost layer that carries one (VNI, GRE key, ERSPAN
/// session, TEID, MPLS label): truth's `tunnel` column; "-" when none.
fn tunnel_of(flow: &Value) -> String {
    let l = &flow["encap"]["layers"];
    assert!(l.is_array(), "flow without encap: {flow}");
    l.as_array()
        .unwrap()
        .iter()
        .rev()
        .find_map(|x| {
            ["vni", "key", "session_id", "teid", "label"]
                .iter()
                .find_map(|k| x.get(*k))
        })
        .map(|v| v.to_string())
        .unwrap_or_else(|| "-".into())
}

/// The layers the flow record must name, from tshark's `frame.protocols`
/// (up to the inner TCP) and the ERSPAN header version it read (1: type II,
/// 2: type III; none: type I, which has no header).
fn layers_from_tshark(row: &BTreeMap<String, String>) -> Vec<String> {
    let protos: Vec<&str> = row["protocols"].split(':').collect();
    let end = protos.iter().position(|p| *p == "tcp").unwrap();
    protos[..end]
        .iter()
        .filter_map(|p| match *p {
            "gre" | "vxlan" | "geneve" | "mpls" => Some(p.to_string()),
            "gtp" => Some("gtpu".into()),
            "erspan" => Some(match row["erspan_version"].as_str() {
                "" => "erspan1".into(),
                v => format!("erspan{}", v.parse::<u8>().unwrap() + 1),
            }),
            _ => None,
        })
        .collect()
}

#[test]
fn inner_flows_match_tshark_per_tunnel() {
    // tshark's per-packet fields counted per (VNI, inner endpoints): its
    // conversation table would join the two tunnels of vxlan-two-vnis.
    let truth = tsv("tunnels/conv-by-tunnel.tsv");
    let mut checked = 0;
    for cap in tunnel_captures() {
        let name = cap.file_name().unwrap().to_string_lossy().to_string();
        let mut want: Vec<String> = truth
            .iter()
            .filter(|r| r["capture"] == name)
            .map(|r| {
                format!(
                    "{} {}:{} {}:{} {}/{} {}/{}",
                    r["tunnel"],
                    r["a_ip"],
                    r["a_port"],
                    r["b_ip"],
                    r["b_port"],
                    r["frames_a_to_b"],
                    r["bytes_a_to_b"],
                    r["frames_b_to_a"],
                    r["bytes_b_to_a"]
                )
            })
            .collect();
        for workers in [0, 3] {
            let recs = replay(&[&cap], workers);
            let mut got: Vec<String> = of_type(&recs, "flow")
                .into_iter()
                .filter(|f| f["proto"] == "tcp")
                .map(|f| {
                    format!(
                        "{} {}:{} {}:{} {}/{} {}/{}",
                        tunnel_of(f),
                        f["src_ip"].as_str().unwrap(),
                        f["src_port"],
                        f["dst_ip"].as_str().unwrap(),
                        f["dst_port"],
                        f["orig"]["packets"],
                        f["orig"]["bytes"],
                        f["resp"]["packets"],
                        f["resp"]["bytes"]
                    )
                })
                .collect();
            got.sort();
            want.sort();
            assert_eq!(got, want, "{name} with {workers} workers");
        }
        checked += want.len();
    }
    assert!(checked >= 20, "only {checked} tunnelled conversations");
}

#[test]
fn tls_inside_tunnels_matches_tshark() {
    let truth = tsv("tunnels/truth.tsv");
    assert!(truth.len() >= 20);
    let mut checked = 0;
    for cap in tunnel_captures() {
        let name = cap.file_name().unwrap().to_string_lossy().to_string();
        let recs = replay(&[&cap], 2);
        let flows = of_type(&recs, "flow");
        let tls = of_type(&recs, "tls");
        let rows: Vec<_> = truth.iter().filter(|r| r["capture"] == name).collect();
        assert_eq!(tls.len(), rows.len(), "{name}: TLS records");
        for r in rows {
            let t = tls
                .iter()
                .find(|t| {
                    t["src_port"].as_u64().map(|p| p.to_string()).as_deref()
                        == Some(r["src_port"].as_str())
                        && flows
                            .iter()
                            .any(|f| f["flow_id"] == t["flow_id"] && tunnel_of(f) == r["tunnel"])
                })
                .unwrap_or_else(|| panic!("{name}: no TLS record for {r:?}"));
            assert_eq!(t["src_ip"].as_str().unwrap(), r["src_ip"], "{name}");
            assert_eq!(t["dst_ip"].as_str().unwrap(), r["dst_ip"], "{name}");
            assert_eq!(t["sni"].as_str().unwrap(), r["sni"], "{name}");
            assert_eq!(t["ja3"].as_str().unwrap(), r["ja3"], "{name}");
            let f = flows.iter().find(|f| f["flow_id"] == t["flow_id"]).unwrap();
            let e = &f["encap"];
            let outer = |k: &str| e[k].as_str().unwrap_or("-").to_string();
            assert_eq!(outer("outer_src_ip"), r["outer_src"], "{name}");
            assert_eq!(outer("outer_dst_ip"), r["outer_dst"], "{name}");
            // The layers tshark decoded, outermost first, by name.
            let names: Vec<&str> = e["layers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| l["type"].as_str().unwrap())
                .collect();
            assert_eq!(names, layers_from_tshark(r), "{name}");
            checked += 1;
        }
    }
    assert_eq!(checked, truth.len());
}

#[test]
fn two_tunnels_with_the_same_inner_tuple_stay_apart() {
    for (cap, ids) in [
        ("tunnels/vxlan-two-vnis.pcap", ["42", "43"]),
        ("tunnels/gre-two-keys.pcap", ["7", "8"]),
    ] {
        let recs = replay(&[&fixture(cap)], 2);
        let flows: Vec<_> = of_type(&recs, "flow")
            .into_iter()
            .filter(|f| f["proto"] == "tcp")
            .collect();
        assert_eq!(flows.len(), 2, "{cap}");
        let tuple = |f: &Value| {
            (
                f["src_ip"].clone(),
                f["src_port"].clone(),
                f["dst_ip"].clone(),
                f["dst_port"].clone(),
            )
        };
        assert_eq!(tuple(flows[0]), tuple(flows[1]), "{cap}");
        // Same inner tuple: the same Community ID (defined on it), two flow ids.
        assert_eq!(flows[0]["community_id"], flows[1]["community_id"], "{cap}");
        assert_ne!(flows[0]["flow_id"], flows[1]["flow_id"], "{cap}");
        let mut got = [tunnel_of(flows[0]), tunnel_of(flows[1])];
        got.sort();
        assert_eq!(got, ids, "{cap}");
    }
    // Untunnelled records do not gain the field.
    let plain = fixture("local/tls12-curl-nginx.pcap");
    for f in of_type(&replay(&[&plain], 0), "flow") {
        assert!(f.get("encap").is_none(), "{f}");
    }
}

// ---------------------------------------------------------------------------
// Every other encapsulation: the real inner Ethernet frames of vxlan4-tls
// wrapped in it. What stays true whatever the wrapping (the inner flow's
// packets, the TLS fingerprint) is taken from the VXLAN capture's tshark
// truth; what the wrapping adds is checked against the bytes written here.

const OUTER_A: [u8; 4] = [203, 0, 113, 1];
const OUTER_B: [u8; 4] = [203, 0, 113, 2];

fn ipv4(src: [u8; 4], dst: [u8; 4], proto: u8, payload: &[u8]) -> Vec<u8> {
    let len = (20 + payload.len()) as u16;
    let mut h = vec![0x45, 0, 0, 0, 0, 1, 0, 0, 64, proto, 0, 0];
    h[2..4].copy_from_slice(&len.to_be_bytes());
    h.extend_from_slice(&src);
    h.extend_from_slice(&dst);
    let mut sum: u32 = h
        .chunks(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]) as u32)
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    h[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    h.extend_from_slice(payload);
    h
}

fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut u = Vec::new();
    u.extend_from_slice(&sport.to_be_bytes());
    u.extend_from_slice(&dport.to_be_bytes());
    u.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(payload);
    u
}

fn eth(et: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![2, 0, 0x5e, 0x55, 0, 2, 2, 0, 0x5e, 0x55, 0, 1];
    f.extend_from_slice(&et.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

fn cat(a: &[u8], b: &[u8]) -> Vec<u8> {
    let mut v = a.to_vec();
    v.extend_from_slice(b);
    v
}

/// Wraps one inner Ethernet frame (`to_b`: sent from the client side) in
/// the named encapsulation; returns the outer Ethernet frame.
fn wrap(kind: &str, inner: &[u8], to_b: bool) -> Vec<u8> {
    let (a, b) = if to_b {
        (OUTER_A, OUTER_B)
    } else {
        (OUTER_B, OUTER_A)
    };
    let inner_ip = &inner[14..];
    let v4 = |proto, p: &[u8]| eth(0x0800, &ipv4(a, b, proto, p));
    match kind {
        "gre" => v4(47, &cat(&[0, 0, 0x08, 0], inner_ip)),
        "gretap" => v4(
            47,
            &cat(&[0x30, 0, 0x65, 0x58, 0, 0, 0, 7, 0, 0, 0, 1], inner),
        ),
        "erspan1" => v4(47, &cat(&[0, 0, 0x88, 0xbe], inner)),
        "erspan2" => v4(
            47,
            &cat(
                &[
                    0x10, 0, 0x88, 0xbe, 0, 0, 0, 1, 0x10, 0, 0x08, 0x7b, 0, 0, 0, 0,
                ],
                inner,
            ),
        ),
        "erspan3" => v4(
            47,
            &cat(
                &[
                    0x10, 0, 0x22, 0xeb, 0, 0, 0, 1, 0x20, 0, 0, 0x05, 0, 0, 0, 0, 0, 0, 0, 0,
                ],
                inner,
            ),
        ),
        "geneve" => v4(
            17,
            &udp(
                50000,
                6081,
                &cat(&[1, 0, 0x65, 0x58, 0, 0, 7, 0, 1, 2, 3, 4], inner),
            ),
        ),
        "gtpu" => v4(
            17,
            &udp(
                2152,
                2152,
                &cat(&gtp(inner_ip.len(), if to_b { 1 } else { 2 }), inner_ip),
            ),
        ),
        "capwap" => {
            let (s, d) = if to_b { (40000, 5247) } else { (5247, 40000) };
            v4(17, &udp(s, d, &cat(&[0, 0x10, 0, 0, 0, 0, 0, 0], inner)))
        }
        "ipip" => v4(4, inner_ip),
        "mpls" => eth(
            0x8847,
            &cat(&[0, 1, 0, 0x40, 0, 0x06, 0x41, 0xff], inner_ip),
        ),
        "mpls-pw" => eth(0x8847, &cat(&[0, 0x06, 0x41, 0xff, 0, 0, 0, 0], inner)),
        "pppoe" => {
            let mut h = vec![0x11, 0, 0, 0x42];
            h.extend_from_slice(&((inner_ip.len() + 2) as u16).to_be_bytes());
            h.extend_from_slice(&[0, 0x21]);
            eth(0x8864, &cat(&h, inner_ip))
        }
        "cmd" => eth(0x8909, &cat(&[1, 1, 0, 1, 0, 10, 0x08, 0], inner_ip)),
        // MPLS then GRE then ERSPAN II: three layers.
        "mpls-gre-erspan2" => {
            let w = wrap("erspan2", inner, to_b);
            eth(0x8847, &cat(&[0, 0x06, 0x41, 0xff], &w[14..]))
        }
        _ => unreachable!("{kind}"),
    }
}

fn gtp(len: usize, teid: u32) -> Vec<u8> {
    let mut h = vec![0x30, 0xff];
    h.extend_from_slice(&(len as u16).to_be_bytes());
    h.extend_from_slice(&teid.to_be_bytes());
    h
}

/// The inner Ethernet frames of a VXLAN capture (50 bytes of outer IPv4,
/// UDP and VXLAN peeled), with their times and whether they go A → B.
fn inner_frames(cap: &Path) -> Vec<(u32, u32, Vec<u8>, bool)> {
    let data = std::fs::read(cap).unwrap();
    assert_eq!(
        &data[..4],
        &[0xd4, 0xc3, 0xb2, 0xa1],
        "little-endian µs pcap"
    );
    let mut at = 24;
    let mut v = Vec::new();
    while at + 16 <= data.len() {
        let u = |i: usize| u32::from_le_bytes(data[at + i..at + i + 4].try_into().unwrap());
        let (sec, usec, cap_len) = (u(0), u(4), u(8) as usize);
        let f = &data[at + 16..at + 16 + cap_len];
        at += 16 + cap_len;
        let udp_vxlan =
            f.len() > 50 && f[12..14] == [8, 0] && f[23] == 17 && f[36..38] == [0x12, 0xb5];
        if udp_vxlan {
            v.push((sec, usec, f[50..].to_vec(), f[26..30] == [198, 51, 100, 1]));
        }
    }
    v
}

fn write_pcap(path: &Path, frames: &[(u32, u32, Vec<u8>)]) {
    let mut out = vec![0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    out.extend_from_slice(&65535u32.to_le_bytes());
    out.extend_from_slice(&1u32.to_le_bytes());
    for (s, us, f) in frames {
        out.extend_from_slice(&s.to_le_bytes());
        out.extend_from_slice(&us.to_le_bytes());
        out.extend_from_slice(&(f.len() as u32).to_le_bytes());
        out.extend_from_slice(&(f.len() as u32).to_le_bytes());
        out.extend_from_slice(f);
    }
    std::fs::write(path, out).unwrap();
}

#[test]
fn every_encapsulation_carries_the_same_inner_handshake() {
    let cap = fixture("tunnels/vxlan4-tls.pcap");
    let truth = tsv("tunnels/truth.tsv");
    let t = truth
        .iter()
        .find(|r| r["capture"] == "vxlan4-tls.pcap")
        .unwrap();
    let conv = tsv("tunnels/conv-by-tunnel.tsv");
    let c = conv
        .iter()
        .find(|r| r["capture"] == "vxlan4-tls.pcap")
        .unwrap();
    let frames = inner_frames(&cap);
    assert!(frames.len() > 20);
    let dir = std::env::temp_dir().join(format!("blindspot-tunnels-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // (wrapping, the layers it must show, the last layer's id field and value)
    type Case<'a> = (&'a str, &'a [&'a str], Option<(&'a str, u64)>);
    let cases: &[Case] = &[
        ("gre", &["gre"], None),
        ("gretap", &["gre"], Some(("key", 7))),
        ("erspan1", &["gre", "erspan1"], None),
        ("erspan2", &["gre", "erspan2"], Some(("session_id", 123))),
        ("erspan3", &["gre", "erspan3"], Some(("session_id", 5))),
        ("geneve", &["geneve"], Some(("vni", 7))),
        ("gtpu", &["gtpu"], Some(("teid", 1))),
        ("capwap", &["capwap"], None),
        ("ipip", &["ipip"], None),
        ("mpls", &["mpls"], Some(("label", 100))),
        ("mpls-pw", &["mpls"], Some(("label", 100))),
        ("pppoe", &["pppoe"], Some(("session_id", 0x42))),
        ("cmd", &["cmd"], Some(("sgt", 10))),
        (
            "mpls-gre-erspan2",
            &["mpls", "gre", "erspan2"],
            Some(("session_id", 123)),
        ),
    ];
    for (kind, layers, id) in cases {
        let wrapped: Vec<_> = frames
            .iter()
            .map(|(s, us, f, to_b)| (*s, *us, wrap(kind, f, *to_b)))
            .collect();
        let path = dir.join(format!("{kind}.pcap"));
        write_pcap(&path, &wrapped);
        let recs = replay(&[&path], 2);
        let flows: Vec<_> = of_type(&recs, "flow")
            .into_iter()
            .filter(|f| f["proto"] == "tcp")
            .collect();
        assert_eq!(flows.len(), 1, "{kind}: {flows:?}");
        let f = flows[0];
        assert_eq!(f["src_ip"].as_str().unwrap(), c["a_ip"], "{kind}");
        assert_eq!(f["src_port"].to_string(), c["a_port"], "{kind}");
        assert_eq!(
            f["orig"]["packets"].to_string(),
            c["frames_a_to_b"],
            "{kind}"
        );
        assert_eq!(
            f["resp"]["packets"].to_string(),
            c["frames_b_to_a"],
            "{kind}"
        );
        let names: Vec<&str> = f["encap"]["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["type"].as_str().unwrap())
            .collect();
        assert_eq!(&names, layers, "{kind}");
        if let Some((field, v)) = id {
            let last = f["encap"]["layers"].as_array().unwrap().last().unwrap();
            assert_eq!(last[*field].as_u64(), Some(*v), "{kind}: {last}");
        }
        let ip_carried = !matches!(*kind, "mpls" | "mpls-pw" | "pppoe" | "cmd");
        if ip_carried {
            assert_eq!(f["encap"]["outer_src_ip"], "203.0.113.1", "{kind}");
        }
        let tls = of_type(&recs, "tls");
        assert_eq!(tls.len(), 1, "{kind}");
        assert_eq!(tls[0]["sni"].as_str().unwrap(), t["sni"], "{kind}");
        assert_eq!(tls[0]["ja3"].as_str().unwrap(), t["ja3"], "{kind}");
        assert_eq!(tls[0]["outcome"], "established", "{kind}");
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn nesting_deeper_than_the_bound_is_counted() {
    let cap = fixture("tunnels/vxlan4-tls.pcap");
    let frames = inner_frames(&cap);
    // Five IP-in-IP layers around the inner packet: one more than the bound.
    let wrapped: Vec<_> = frames
        .iter()
        .map(|(s, us, f, _)| {
            let mut ip = f[14..].to_vec();
            for _ in 0..5 {
                ip = ipv4(OUTER_A, OUTER_B, 4, &ip);
            }
            (*s, *us, eth(0x0800, &ip))
        })
        .collect();
    let dir = std::env::temp_dir().join(format!("blindspot-deep-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("deep.pcap");
    write_pcap(&path, &wrapped);
    let recs = replay(&[&path], 0);
    let stats = of_type(&recs, "stats");
    let s = stats.last().unwrap();
    assert_eq!(
        s["skipped"]["tunnel_depth_exceeded"].as_u64(),
        Some(frames.len() as u64)
    );
    assert_eq!(s["tunnels"]["ipip"].as_u64(), Some(4 * frames.len() as u64));
    assert!(of_type(&recs, "flow").is_empty());
    std::fs::remove_dir_all(&dir).ok();
}
