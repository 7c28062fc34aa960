//! Per-packet costs of the hot path, on real captures from `fixtures/`:
//! decode (link → IP → TCP/UDP) and flow update (table lookup, TCP state,
//! reassembly while the parsers want bytes, first-payload features).
//! Run: `cargo bench --bench pipeline`.

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
        let p = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures")
            .join(n);
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

criterion_group!(benches, bench);
criterion_main!(benches);
