//! Per-Initial cost of reading QUIC handshakes: key derivation and
//! decryption of RFC 9001 A.2's 1200-byte client Initial, and a whole
//! client + server Initial exchange through `QuicState` (keys, header
//! protection, AEAD, frame walk, CRYPTO reassembly, ClientHello and
//! ServerHello parse). Run: `cargo bench --bench quic`.

use blindspot::app::quic::QuicState;
use blindspot::app::tls::hello::{ClientHello, ServerHello};
use blindspot::app::quic::initial::{self, Keys, VERSION_1, Version};
use blindspot::flow::key::Direction;
use blindspot::time::Timestamp;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;

fn unhex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

fn bench(c: &mut Criterion) {
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
    let ch = hello_message(&client, &keys[0], v);
    let sh = hello_message(&server, &keys[1], v);
    g.throughput(Throughput::Elements(1));
    g.bench_function("handshake_fingerprints", |b| {
        b.iter(|| {
            let mut q = QuicState::default();
            q.feed(Direction::ToServer, black_box(&client), Timestamp(1));
            q.feed(Direction::ToClient, black_box(&server), Timestamp(2));
            fingerprints(q.client_hello().unwrap(), q.server_hello().unwrap(), 'q')
        })
    });
    g.bench_function("tls_same_hellos_fingerprints", |b| {
        b.iter(|| {
            let c = ClientHello::parse(black_box(&ch), 0x0301).unwrap();
            let s = ServerHello::parse(black_box(&sh)).unwrap();
            fingerprints(&c, &s, 't')
        })
    });
    g.finish();
}

fn fingerprints(c: &ClientHello, s: &ServerHello, t: char) -> usize {
    c.ja3().len() + c.ja4(t).0.len() + s.ja3s().len()
}

fn hello_message(pkt: &[u8], k: &Keys, v: Version) -> Vec<u8> {
    let h = initial::parse_long(pkt, v).unwrap();
    let mut buf = pkt.to_vec();
    let o = initial::open(k, &mut buf, h.pn_offset, None).unwrap();
    let mut c = blindspot::app::quic::frames::Crypto::default();
    blindspot::app::quic::frames::walk(&buf[o.payload], |f| {
        if let blindspot::app::quic::frames::Frame::Crypto { offset, data } = f {
            c.add(offset, data)
        }
    })
    .unwrap();
    c.contiguous().to_vec()
}

criterion_group!(benches, bench);
criterion_main!(benches);
