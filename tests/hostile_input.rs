//! Packets are written by attackers. Without a fuzzer, on every test run:
//! real frames from the fixtures mutated at random, pure random frames on
//! every link type, every fixture truncated at many offsets and with bytes
//! flipped. Nothing may panic, the flow table may not pass its cap, and the
//! file reader must always end.

mod common;
use blindspot::capture::pcap_file::CaptureReader;
use blindspot::capture::{Chunk, FrameRef};
use blindspot::correlate::Correlator;
use blindspot::correlate::devices::Devices;
use blindspot::decode::{self, Decoder};
use blindspot::detect::context::Apps;
use blindspot::detect::{DetectSettings, Detector};
use blindspot::flow::FlowSettings;
use blindspot::flow::key::SplitMix;
use blindspot::flow::table::FlowTable;
use blindspot::time::Timestamp;
use common::*;
use std::sync::Arc;

fn read_chunks(bytes: Vec<u8>, chunk: usize) -> (Vec<Chunk>, bool) {
    let mut r = match CaptureReader::from_reader("t".into(), Box::new(std::io::Cursor::new(bytes)))
    {
        Ok(r) => r.with_chunk_size(chunk),
        Err(_) => return (Vec::new(), true),
    };
    let mut v = Vec::new();
    for _ in 0..100_000 {
        match r.next_chunk() {
            Ok(Some(c)) => v.push(c),
            Ok(None) => return (v, false),
            Err(_) => return (v, true),
        }
    }
    panic!("reader did not end");
}

#[test]
fn mutated_real_frames_never_panic_and_the_table_stays_capped() {
    let mut rng = SplitMix(42);
    let settings = FlowSettings {
        max_flows: 16,
        ..FlowSettings::default()
    };
    let mut table = FlowTable::new(settings, 1);
    let mut dec = Decoder::default();
    let mut out = Vec::new();
    let mut packets = 0;
    for cap in all_captures() {
        let (chunks, _) = read_chunks(std::fs::read(&cap).unwrap(), 1 << 20);
        for c in &chunks {
            for f in &c.frames {
                let orig = c.frame_bytes(f);
                for _ in 0..8 {
                    let mut m = orig.to_vec();
                    match rng.below(4) {
                        0 => {
                            for _ in 0..1 + rng.below(6) {
                                let i = rng.below(m.len());
                                if let Some(b) = m.get_mut(i) {
                                    *b = rng.next_u64() as u8;
                                }
                            }
                        }
                        1 => m.truncate(rng.below(m.len() + 1)),
                        2 => {
                            // Lengths and offsets live in the first 80 bytes.
                            let i = rng.below(m.len().min(80));
                            if let Some(b) = m.get_mut(i) {
                                *b = [0, 0xff, 0x7f, 0x80, 1][rng.below(5)];
                            }
                        }
                        _ => m.extend((0..rng.below(64)).map(|_| rng.next_u64() as u8)),
                    }
                    let frame = FrameRef {
                        ts: Timestamp(f.ts.0 + rng.below(1000) as u64),
                        offset: 0,
                        caplen: m.len() as u32,
                        wire_len: f.wire_len,
                        linktype: f.linktype,
                    };
                    let mut extra = Vec::new();
                    if let Some(p) = dec.decode(&m, &frame, &mut extra) {
                        table.process(&p, decode::payload(&p, &m, &extra), &mut out);
                        assert!(table.active() <= 16);
                        packets += 1;
                    }
                }
            }
        }
    }
    table.drain(Timestamp(u64::MAX / 2), &mut out);
    assert!(packets > 10_000, "only {packets} mutated packets decoded");
    assert!(!out.is_empty());

    // The records of hostile packets through the correlator and the
    // detections, with tiny caps: no panic, the tables stay capped.
    let settings = DetectSettings {
        max_keys: 8,
        max_sessions_per_key: 4,
        rejection_min_handshakes: 1,
        beacon_min_connections: 3,
        bypass_min_sessions: 1,
        bypass_min_inspected_elsewhere: 1,
        persistent_min_duration: 1,
        ..DetectSettings::default()
    };
    let det = Detector::new(Arc::new(settings), Apps::default(), None, true);
    let mut corr = Correlator::new(Arc::default(), Devices::default(), det);
    for chunk in out.chunks(97) {
        corr.push(chunk.to_vec());
        assert!(corr.detector.open_windows() <= 8);
        let _ = corr.take();
    }
    corr.finish_detections();
    assert_eq!(corr.detector.open_windows(), 0);
    assert!(corr.detector.counters["keys_over_cap"] > 0);
}

#[test]
fn random_bytes_on_every_link_type_never_panic() {
    let mut rng = SplitMix(7);
    let mut dec = Decoder::default();
    let lts = [0u16, 1, 12, 14, 101, 108, 113, 228, 229, 276, 999];
    for i in 0..200_000 {
        let len = rng.below(120);
        let mut m: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
        // Make many of them look like IP so the deeper layers are reached.
        if len > 20 && i % 2 == 0 {
            m[0] = 0x45;
        }
        let frame = FrameRef {
            ts: Timestamp(i),
            offset: 0,
            caplen: len as u32,
            wire_len: len as u32,
            linktype: lts[i as usize % lts.len()],
        };
        let mut extra = Vec::new();
        let _ = dec.decode(&m, &frame, &mut extra);
    }
}

#[test]
fn truncated_and_corrupted_files_always_end() {
    let mut rng = SplitMix(99);
    for cap in all_captures() {
        let bytes = std::fs::read(&cap).unwrap();
        for _ in 0..12 {
            let mut b = bytes.clone();
            b.truncate(rng.below(bytes.len() + 1));
            let (_, _) = read_chunks(b, 64 + rng.below(5000));
        }
        for _ in 0..12 {
            let mut b = bytes.clone();
            for _ in 0..1 + rng.below(8) {
                let i = rng.below(b.len());
                b[i] = rng.next_u64() as u8;
            }
            let (_, _) = read_chunks(b, 4096);
        }
    }
}

/// DHCPv4, DHCPv6, ARP and NDP bytes written by an attacker, then their
/// evidence into a small device history: no panic, and the tables keep to
/// their caps.
#[test]
fn hostile_device_evidence_never_panics_and_the_history_stays_capped() {
    use blindspot::app::{dhcp, dhcp6, evidence};
    use blindspot::correlate::devices::{DeviceInputs, DeviceLimits, Devices};
    let mut rng = SplitMix(1717);
    let limits = DeviceLimits {
        max_ips: 16,
        max_bindings_per_ip: 4,
        max_macs: 16,
    };
    let mut devices = Devices::new(limits, DeviceInputs::default());
    let mut out = Vec::new();
    for i in 0..100_000u64 {
        let len = rng.below(400);
        let mut m: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
        match i % 4 {
            // DHCPv4: BOOTREPLY, Ethernet, magic cookie, an ACK option.
            0 if len > 244 => {
                m[0] = 2;
                m[1] = 1;
                m[2] = 6;
                m[236..240].copy_from_slice(&[99, 130, 83, 99]);
                m[240..243].copy_from_slice(&[53, 1, 5]);
            }
            // DHCPv6 REPLY with a DUID-LL client id up front.
            1 if len > 20 => {
                m[0] = 7;
                m[4..18].copy_from_slice(&[
                    0,
                    1,
                    0,
                    10,
                    0,
                    3,
                    0,
                    1,
                    2,
                    0,
                    0,
                    0,
                    0,
                    rng.below(8) as u8,
                ]);
            }
            // ARP reply header.
            2 if len > 28 => m[..8].copy_from_slice(&[0, 1, 8, 0, 6, 4, 0, 2]),
            // Neighbour advertisement.
            3 if len > 24 => m[0] = 136,
            _ => {}
        }
        let ts = Timestamp(i * 1_000_000);
        if let Some(d) = dhcp::parse(&m) {
            evidence::from_dhcp4(&d, ts, &mut out);
        }
        if let Some(d) = dhcp6::parse(&m) {
            evidence::from_dhcp6(&d, ts, Some([2, 0, 0, 0, 0, 1]), &mut out);
        }
        evidence::from_arp(&m, ts, &mut out);
        evidence::from_ndp(&m, "fe80::1".parse().unwrap(), ts, &mut out);
        for e in out.drain(..) {
            let _ = devices.apply(&e);
        }
    }
    let c = &devices.counters;
    let total: u64 = [
        "evidence_dhcp",
        "evidence_dhcpv6",
        "evidence_arp",
        "evidence_ndp",
    ]
    .iter()
    .map(|k| c.get(k).copied().unwrap_or(0))
    .sum();
    assert!(
        total > 10_000,
        "the generator must reach the history: {c:?}"
    );
    assert!(c.get("ips_over_cap").copied().unwrap_or(0) > 0, "{c:?}");
}

/// Issue 15's reproducer: among a real dhclient/dnsmasq exchange
/// (`fixtures/make-hostile.sh`), one DHCPDISCOVER whose `hlen` is 17 used to
/// panic dhcproto and kill the replay with no record. Now every message
/// gives its record, the hostile one without a client MAC, whatever the
/// worker count, and the run exits 0.
#[test]
fn issue_15_a_dhcp_hlen_of_17_is_one_record_not_a_crash() {
    let cap = fixture("hostile/dhcp-hlen17.pcap");
    for workers in ["0", "2"] {
        let out = blindspot(&["replay", cap.to_str().unwrap(), "--workers", workers]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let recs = parse_lines(&out.stdout);
        let mut dhcp: Vec<&serde_json::Value> = of_type(&recs, "dhcp");
        dhcp.sort_by_key(|r| r["ts"].as_str().unwrap().to_string());
        let seen: Vec<(&str, Option<&str>)> = dhcp
            .iter()
            .map(|r| {
                (
                    r["message_type"].as_str().unwrap(),
                    r["client_mac"].as_str(),
                )
            })
            .collect();
        let mac = Some("02:00:5e:10:00:11");
        assert_eq!(
            seen,
            [
                ("DISCOVER", mac),
                ("OFFER", mac),
                ("REQUEST", mac),
                ("ACK", mac),
                ("DISCOVER", None), // hlen 17: no 6-byte MAC to report
                ("RELEASE", mac),
            ]
        );
        assert_eq!(of_type(&recs, "stats")[0]["records"]["dhcp"], 6);
    }
}

/// Issue 19.2: a hostile SMTP server (`fixtures/make-starttls.sh`,
/// `hostile-smtp.pcap`) with a greeting that never ends, and one that
/// answers STARTTLS with continuation lines only while the client sends its
/// ClientHello: each flow stops at the prelude cap (`upgrade_prelude_cap`
/// in its `limits`, counted in `stats.tls`), nothing is read as TLS, and
/// the flow is still SMTP.
#[test]
fn an_endless_smtp_greeting_or_reply_stops_at_the_prelude_cap() {
    let cap = fixture("starttls/hostile-smtp.pcap");
    let recs = replay(&[&cap], 2);
    assert!(of_type(&recs, "tls").is_empty());
    let flows = of_type(&recs, "flow");
    assert_eq!(flows.len(), 2);
    for f in &flows {
        assert_eq!(f["service"], "smtp");
        assert_eq!(f["limits"][0], "upgrade_prelude_cap");
        // The server sent more than the cap: the cap, not the end, stopped it.
        let sent = f["resp"]["payload_bytes"].as_u64().unwrap() as usize;
        assert!(sent > blindspot::app::tls::upgrade::MAX_PRELUDE, "{sent}");
    }
    assert_eq!(of_type(&recs, "stats")[0]["tls"]["upgrade_prelude_cap"], 2);
}

/// The same, fed straight to the TLS parser a line at a time for 1 MiB:
/// it holds at most the cap, stops wanting the stream, and never turns to TLS.
#[test]
fn a_never_agreeing_server_stays_bounded() {
    use blindspot::app::tls::{TlsCtx, TlsState, upgrade};
    use blindspot::flow::key::Direction;
    let mut ctx = TlsCtx::default();
    let mut t = TlsState::new(TlsState::prelude_kind(b"220-", 1, 25));
    t.feed(Direction::ToClient, b"220 mx\r\n", Timestamp(1), &mut ctx);
    t.feed(
        Direction::ToServer,
        b"EHLO c\r\nSTARTTLS\r\n",
        Timestamp(2),
        &mut ctx,
    );
    let hello = [22, 3, 1, 0, 200];
    t.feed(Direction::ToServer, &hello, Timestamp(3), &mut ctx);
    let mut fed = 0;
    while fed < 1 << 20 && t.wants() {
        t.feed(
            Direction::ToClient,
            b"220-not yet\r\n",
            Timestamp(4),
            &mut ctx,
        );
        fed += 13;
        assert!(t.heap_bytes() < 2 * upgrade::MAX_PRELUDE + 4096);
    }
    assert!(!t.wants(), "still reading after {fed} bytes");
    assert!(fed <= upgrade::MAX_PRELUDE + 13);
    assert_eq!(t.prelude_stop, Some(upgrade::Stop::Cap));
    assert!(!t.recognised() && t.upgrade().is_none());
}
