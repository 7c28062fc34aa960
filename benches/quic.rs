//! Per-handshake cost of reading QUIC, against TLS over TCP reading the
//! same hellos. Run: `cargo bench --bench quic`.
//!
//! `quic/*`: RFC 9001 A.2's 1200-byte client Initial and A.3's server
//! Initial: deriving both directions' Initial keys from a DCID; header
//! protection and AES-GCM of the client Initial; both Initials through
//! `QuicState` (keys, header protection, AEAD, frame walk, CRYPTO
//! reassembly, ClientHello and ServerHello parse).
//!
//! `handshake/*`: QUIC against TLS per handshake, on the sessions of
//! `fixtures/quic/aioquic.pcap` (aioquic and Chromium clients, an aioquic
//! server) whose two hellos were both read. The TLS side is what the same
//! handshake costs over TCP: the session's own ClientHello and ServerHello
//! messages (taken out of its Initials once, before timing), so the two
//! sides differ only by the transport:
//!
//! - `hellos_tls`: ClientHello and ServerHello parse, JA3, JA4 (`t`), JA3S.
//! - `hellos_quic`: every datagram of the session into a fresh `QuicState`
//!   (which stops reading once both hellos are parsed), then the same JA3,
//!   JA4 (`q`) and JA3S of the hellos it parsed.
//! - `record_tls`: each hello in one TLS handshake record, as a TCP stream
//!   carries it, into a fresh `TlsState` (record framing, handshake
//!   defragmentation, the hellos), then the `tls` record
//!   (`app::tls::record::record`: JA3/JA4/JA3S, outcome, history, names).
//! - `record_quic`: the datagrams into a fresh `QuicState`, then its `tls`
//!   record (`app::quic::record`).
//!
//! Both record sides use a fresh `TlsCtx`, so no fingerprint comes from
//! the worker's cache. Throughput is in handshakes.
//!
//! Times are the bench thread's CPU time ([`ThreadCpu`]), not wall time:
//! on the shared development machine wall time also counts the time the
//! scheduler gives to other processes.

use blindspot::app::quic::frames::{self, Crypto, Frame};
use blindspot::app::quic::initial::{self, Keys, PacketType, VERSION_1, Version};
use blindspot::app::quic::{self as quic, QuicState};
use blindspot::app::tls::hello::{ClientHello, ServerHello};
use blindspot::app::tls::{TlsCtx, TlsState};
use blindspot::capture::pcap_file::CaptureReader;
use blindspot::decode::{self, Decoder};
use blindspot::flow::key::{Direction, FlowKey};
use blindspot::record::FlowId;
use blindspot::time::Timestamp;
use criterion::measurement::{Measurement, ValueFormatter, WallTime};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use nix::time::{ClockId, clock_gettime};
use std::hint::black_box;
use std::path::Path;

fn unhex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

/// The calling thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`), in
/// nanoseconds, as a criterion measurement.
struct ThreadCpu;

fn thread_cpu_ns() -> u64 {
    let t = clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID).expect("a thread CPU clock");
    t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64
}

impl Measurement for ThreadCpu {
    type Intermediate = u64;
    type Value = u64;
    fn start(&self) -> u64 {
        thread_cpu_ns()
    }
    fn end(&self, start: u64) -> u64 {
        thread_cpu_ns().saturating_sub(start)
    }
    fn add(&self, a: &u64, b: &u64) -> u64 {
        a + b
    }
    fn zero(&self) -> u64 {
        0
    }
    fn to_f64(&self, v: &u64) -> f64 {
        *v as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        // Nanoseconds, like wall time.
        static NS: WallTime = WallTime;
        NS.formatter()
    }
}

fn bench(c: &mut Criterion<ThreadCpu>) {
    let client = unhex(include_str!(
        "../src/app/quic/testdata/rfc9001-a2-client-initial.hex"
    ));
    let server = unhex(include_str!(
        "../src/app/quic/testdata/rfc9001-a3-server-initial.hex"
    ));
    let v = Version::of(VERSION_1).unwrap();
    let dcid = unhex("8394c8f03e515708");
    let mut g = c.benchmark_group("quic");
    g.throughput(Throughput::Elements(1));
    g.bench_function("initial_keys", |b| {
        b.iter(|| Keys::initial(v, black_box(&dcid)))
    });
    let keys = Keys::initial(v, &dcid);
    let h = initial::parse_long(&client, v).unwrap();
    g.bench_function("open_client_initial", |b| {
        let mut buf = client.clone();
        b.iter(|| {
            buf.copy_from_slice(&client);
            initial::open(&keys[0], black_box(&mut buf), h.pn_offset, None).unwrap()
        })
    });
    g.throughput(Throughput::Elements(2));
    g.bench_function("handshake_client_and_server_initial", |b| {
        b.iter(|| {
            let mut q = QuicState::default();
            q.feed(Direction::ToServer, black_box(&client), Timestamp(1));
            q.feed(Direction::ToClient, black_box(&server), Timestamp(2));
            assert!(q.server_hello().is_some());
            q
        })
    });
    g.finish();
}

/// One QUIC session of the fixture: its datagrams in capture order, and
/// the hello messages its Initials carry.
struct Session {
    key: FlowKey,
    datagrams: Vec<(Direction, Timestamp, Vec<u8>)>,
    client_hello: Vec<u8>,
    server_hello: Vec<u8>,
}

/// The fixture's UDP sessions whose ClientHello and ServerHello both come
/// out of their Initials.
fn sessions() -> Vec<Session> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/quic/aioquic.pcap");
    let mut r = CaptureReader::open(&p).expect("the QUIC fixture");
    let mut d = Decoder::default();
    let mut extra = Vec::new();
    let mut flows: Vec<Session> = Vec::new();
    while let Ok(Some(c)) = r.next_chunk() {
        for f in &c.frames {
            let Some(p) = d.decode(&c.data, f, &mut extra) else {
                continue;
            };
            if p.key.proto != 17 {
                continue;
            }
            let b = decode::payload(&p, &c.data, &extra).to_vec();
            let reversed = p.key.reversed();
            if let Some(s) = flows.iter_mut().find(|s| s.key == p.key) {
                s.datagrams.push((Direction::ToServer, p.ts, b));
            } else if let Some(s) = flows.iter_mut().find(|s| s.key == reversed) {
                s.datagrams.push((Direction::ToClient, p.ts, b));
            } else if QuicState::probe(&b) {
                flows.push(Session {
                    key: p.key,
                    datagrams: vec![(Direction::ToServer, p.ts, b)],
                    client_hello: Vec::new(),
                    server_hello: Vec::new(),
                });
            }
        }
        extra.clear();
    }
    flows.retain_mut(|s| {
        let [ch, sh] = crypto_streams(&s.datagrams);
        s.client_hello = first_message(&ch, 1);
        s.server_hello = first_message(&sh, 2);
        !s.client_hello.is_empty() && !s.server_hello.is_empty()
    });
    flows
}

/// Both directions' CRYPTO streams of a session's Initials, with the keys
/// of the client's first Initial's DCID (a session with a Retry yields
/// nothing for the server and is left out).
fn crypto_streams(datagrams: &[(Direction, Timestamp, Vec<u8>)]) -> [Vec<u8>; 2] {
    let mut keys: Option<[Keys; 2]> = None;
    let mut crypto = [Crypto::default(), Crypto::default()];
    for (d, _, dg) in datagrams {
        let mut rest = &dg[..];
        while rest.len() > 5 && rest[0] & 0x80 != 0 {
            let Some(v) = Version::of(u32::from_be_bytes([rest[1], rest[2], rest[3], rest[4]]))
            else {
                break;
            };
            let Ok(h) = initial::parse_long(rest, v) else {
                break;
            };
            if h.kind == PacketType::Initial {
                let k = keys.get_or_insert_with(|| Keys::initial(v, h.dcid));
                let mut buf = rest[..h.end].to_vec();
                if let Ok(o) = initial::open(&k[d.index()], &mut buf, h.pn_offset, None) {
                    let c = &mut crypto[d.index()];
                    let _ = frames::walk(&buf[o.payload], |f| {
                        if let Frame::Crypto { offset, data } = f {
                            c.add(offset, data)
                        }
                    });
                }
            }
            if h.kind == PacketType::Retry {
                break;
            }
            rest = &rest[h.end..];
        }
    }
    crypto.map(|c| c.contiguous().to_vec())
}

/// The first handshake message of a stream if it is of type `t` and whole.
fn first_message(b: &[u8], t: u8) -> Vec<u8> {
    match b {
        [m, l0, l1, l2, ..] if *m == t => {
            let len = 4 + ((*l0 as usize) << 16 | (*l1 as usize) << 8 | *l2 as usize);
            b.get(..len).map(<[u8]>::to_vec).unwrap_or_default()
        }
        _ => Vec::new(),
    }
}

/// A handshake message in one TLS record, as TCP carries it.
fn tls_record(msg: &[u8], version: u16) -> Vec<u8> {
    let mut r = vec![22];
    r.extend_from_slice(&version.to_be_bytes());
    r.extend_from_slice(&(msg.len() as u16).to_be_bytes());
    r.extend_from_slice(msg);
    r
}

fn fingerprints(c: &ClientHello, s: &ServerHello, t: char) -> usize {
    c.ja3().len() + c.ja4(t).0.len() + s.ja3s().len()
}

fn quic_state(s: &Session) -> QuicState {
    let mut q = QuicState::default();
    for (d, ts, b) in &s.datagrams {
        q.feed(*d, black_box(b), *ts);
    }
    q
}

fn bench_handshake(c: &mut Criterion<ThreadCpu>) {
    let sessions = sessions();
    assert!(sessions.len() >= 5, "{} QUIC sessions", sessions.len());
    // Both sides read the same hellos.
    for s in &sessions {
        let q = quic_state(s);
        assert_eq!(
            q.client_hello(),
            ClientHello::parse(&s.client_hello, 0).as_ref()
        );
        assert_eq!(
            q.server_hello(),
            ServerHello::parse(&s.server_hello).as_ref()
        );
    }
    let records: Vec<[Vec<u8>; 2]> = sessions
        .iter()
        .map(|s| {
            [
                tls_record(&s.client_hello, 0x0301),
                tls_record(&s.server_hello, 0x0303),
            ]
        })
        .collect();
    let mut g = c.benchmark_group("handshake");
    g.throughput(Throughput::Elements(sessions.len() as u64));
    g.bench_function("hellos_tls", |b| {
        b.iter(|| {
            let mut n = 0;
            for s in &sessions {
                let ch = ClientHello::parse(black_box(&s.client_hello), 0x0301).unwrap();
                let sh = ServerHello::parse(black_box(&s.server_hello)).unwrap();
                n += fingerprints(&ch, &sh, 't');
            }
            n
        })
    });
    g.bench_function("hellos_quic", |b| {
        b.iter(|| {
            let mut n = 0;
            for s in &sessions {
                let q = quic_state(s);
                n += fingerprints(q.client_hello().unwrap(), q.server_hello().unwrap(), 'q');
            }
            n
        })
    });
    // The flow table hands both the flow's community id, made once.
    let cid: std::sync::Arc<str> = "1:".into();
    g.bench_function("record_tls", |b| {
        b.iter(|| {
            let mut n = 0;
            for (s, [ch, sh]) in sessions.iter().zip(&records) {
                let mut ctx = TlsCtx::default();
                let mut t = TlsState::new(None);
                t.feed(
                    Direction::ToServer,
                    black_box(ch),
                    s.datagrams[0].1,
                    &mut ctx,
                );
                t.feed(
                    Direction::ToClient,
                    black_box(sh),
                    s.datagrams[1].1,
                    &mut ctx,
                );
                let r = blindspot::app::tls::record::record(
                    &t,
                    &mut ctx,
                    &s.key,
                    FlowId(1),
                    &cid,
                    false,
                );
                n += r.unwrap().ja3s.unwrap().len();
            }
            n
        })
    });
    g.bench_function("record_quic", |b| {
        b.iter(|| {
            let mut n = 0;
            for s in &sessions {
                let mut ctx = TlsCtx::default();
                let q = quic_state(s);
                let r = quic::record(&q, &mut ctx, &s.key, FlowId(1), &cid, false);
                n += r.unwrap().ja3s.unwrap().len();
            }
            n
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().with_measurement(ThreadCpu);
    targets = bench, bench_handshake
}
criterion_main!(benches);
