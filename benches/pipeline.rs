//! Per-packet costs of the hot path, on real captures from `fixtures/`:
//! decode (link → IP → TCP/UDP) and flow update (table lookup, TCP state,
//! reassembly while the parsers want bytes, first-payload features).
//! TLS: ClientHello parse + JA3 + JA4 on every ClientHello of the shared
//! captures.
//! Per connection: first-payload features over 1 KiB samples.
//! Output forms: the flow and TLS records of the mix encoded as JSON Lines,
//! OCSF, ECS and EVE (the sink's encoding stage alone).
//! Run: `cargo bench --bench pipeline`.

use blindspot::app::tls::hello::ClientHello;
use blindspot::capture::Chunk;
use blindspot::capture::pcap_file::CaptureReader;
use blindspot::decode::{self, Decoder, Packet};
use blindspot::flow::FlowSettings;
use blindspot::flow::table::FlowTable;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use std::path::Path;

fn load(names: &[&str]) -> Vec<Chunk> {
    let mut chunks = Vec::new();
    for n in names {
        // `shared/` names the third-party captures beside the checkout.
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let p = match n.strip_prefix("shared/") {
            Some(rest) => root.join("../shared/pcaps").join(rest),
            None => root.join("fixtures").join(n),
        };
        let mut r = CaptureReader::open(&p).expect("fixture");
        while let Ok(Some(c)) = r.next_chunk() {
            chunks.push(c);
        }
    }
    chunks
}

const MIX: &[&str] = &[
    "shared/ndpi-signal-dhcp-and-tls.pcap",
    "shared/foxio-latest-browsers.pcapng",
    "local/tls13-curl-nginx-download.pcap",
    "local/plain-tcp-random.pcap",
];

fn bench(c: &mut Criterion) {
    let chunks = load(MIX);
    let frames: u64 = chunks.iter().map(|c| c.frames.len() as u64).sum();
    let mut g = c.benchmark_group("per_packet");
    g.throughput(Throughput::Elements(frames));
    g.bench_function("decode", |b| {
        let mut d = Decoder::default();
        let mut extra = Vec::new();
        b.iter(|| {
            let mut n = 0u32;
            for c in &chunks {
                for f in &c.frames {
                    if let Some(p) = d.decode(&c.data, f, &mut extra) {
                        n = n.wrapping_add(p.key.sport as u32);
                    }
                }
                extra.clear();
            }
            black_box(n)
        })
    });
    // Pre-decoded packets, with their chunk, for the flow stage alone.
    let mut d = Decoder::default();
    let mut decoded: Vec<(usize, Packet)> = Vec::new();
    let mut extra = Vec::new();
    for (i, c) in chunks.iter().enumerate() {
        for f in &c.frames {
            if let Some(p) = d.decode(&c.data, f, &mut extra) {
                decoded.push((i, p));
            }
        }
    }
    g.bench_function("flow_update", |b| {
        b.iter_batched(
            || FlowTable::new(FlowSettings::default(), 1),
            |mut table| {
                let mut out = Vec::new();
                for (i, p) in &decoded {
                    table.process(p, decode::payload(p, &chunks[*i].data, &extra), &mut out);
                }
                black_box(out.len())
            },
            BatchSize::LargeInput,
        )
    });
    g.bench_function("symmetric_hash", |b| {
        b.iter(|| {
            decoded
                .iter()
                .fold(0u64, |a, (_, p)| a ^ p.key.symmetric_hash())
        })
    });
    g.finish();
}

/// Every ClientHello of the fixtures that fits in one TCP segment, as a
/// handshake message (4-byte header + body) with its record version.
fn client_hellos() -> Vec<(Vec<u8>, u16)> {
    let chunks = load(&[
        "shared/foxio-tls-sni-many-hellos.pcapng",
        "shared/foxio-latest-browsers.pcapng",
        "shared/ndpi-signal-dhcp-and-tls.pcap",
        "shared/zeek-tls13-chrome125-x25519-kyber.pcap",
        "shared/ndpi-vlan-many-cipher-suites.pcap",
    ]);
    let mut d = Decoder::default();
    let mut extra = Vec::new();
    let mut out = Vec::new();
    for c in &chunks {
        for f in &c.frames {
            let Some(p) = d.decode(&c.data, f, &mut extra) else {
                continue;
            };
            let b = decode::payload(&p, &c.data, &extra);
            if let [22, 3, v, l0, l1, 1, rest @ ..] = b {
                let len = u16::from_be_bytes([*l0, *l1]) as usize;
                if rest.len() + 1 >= len {
                    out.push((b[5..5 + len].to_vec(), u16::from_be_bytes([3, *v])));
                }
            }
        }
    }
    out
}

fn bench_tls(c: &mut Criterion) {
    let hellos = client_hellos();
    assert!(hellos.len() >= 50, "found {} ClientHellos", hellos.len());
    let mut g = c.benchmark_group("tls");
    g.throughput(Throughput::Elements(hellos.len() as u64));
    g.bench_function("client_hello_parse_ja3_ja4", |b| {
        b.iter(|| {
            let mut n = 0usize;
            for (msg, rv) in &hellos {
                let h = ClientHello::parse(msg, *rv).expect("a ClientHello");
                n += h.ja3().len() + h.ja4('t').0.len();
            }
            black_box(n)
        })
    });
    g.bench_function("client_hello_parse", |b| {
        b.iter(|| {
            hellos
                .iter()
                .filter_map(|(m, rv)| ClientHello::parse(m, *rv))
                .count()
        })
    });
    g.finish();
}

/// First-payload features (the flow record's `first_payload`) over 1 KiB
/// samples of real capture bytes: headers, TLS records, random payload.
fn bench_features(c: &mut Criterion) {
    let chunks = load(MIX);
    let bytes: Vec<u8> = chunks
        .iter()
        .flat_map(|c| c.frames.iter().flat_map(|f| c.frame_bytes(f)))
        .copied()
        .collect();
    let samples: Vec<&[u8]> = bytes.chunks_exact(1024).step_by(7).take(256).collect();
    let mut g = c.benchmark_group("per_connection");
    g.throughput(Throughput::Elements(samples.len() as u64));
    g.bench_function("first_payload_features_1k", |b| {
        b.iter(|| {
            samples
                .iter()
                .filter_map(|s| blindspot::app::features::features(s))
                .map(|f| f.printable_run)
                .sum::<u32>()
        })
    });
    g.finish();
}

fn bench_forms(c: &mut Criterion) {
    use blindspot::output::{Encoding, Format, observer::Observer};
    let chunks = load(MIX);
    let mut d = Decoder::default();
    let mut table = FlowTable::new(FlowSettings::default(), 1);
    let mut records = Vec::new();
    let mut extra = Vec::new();
    for c in &chunks {
        for f in &c.frames {
            if let Some(p) = d.decode(&c.data, f, &mut extra) {
                table.process(&p, decode::payload(&p, &c.data, &extra), &mut records);
            }
        }
    }
    let end = blindspot::time::Timestamp(u64::MAX / 2);
    table.drain_batches(end, 4096, &mut Vec::new(), |r| records.append(r));
    let obs = Observer::new(Some("bench"), &["eth1".to_string()]);
    let mut g = c.benchmark_group("output_forms");
    g.throughput(Throughput::Elements(records.len() as u64));
    for form in [Format::Jsonl, Format::Ocsf, Format::Ecs, Format::Eve] {
        let mut enc = Encoding::new(form, &obs);
        g.bench_function(form.name(), |b| {
            b.iter(|| black_box(enc.encode(&records).len()))
        });
    }
}

criterion_group!(benches, bench, bench_tls, bench_features, bench_forms);
criterion_main!(benches);
