//! Packets are written by attackers. Without a fuzzer, on every test run:
//! real frames from the fixtures mutated at random, pure random frames on
//! every link type, every fixture truncated at many offsets and with bytes
//! flipped. Nothing may panic, the flow table may not pass its cap, and the
//! file reader must always end.

mod common;
use blindspot::capture::pcap_file::CaptureReader;
use blindspot::capture::{Chunk, FrameRef};
use blindspot::decode::{self, Decoder};
use blindspot::flow::FlowSettings;
use blindspot::flow::table::FlowTable;
use blindspot::time::Timestamp;
use common::*;

struct SplitMix(u64);
impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

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
                                    *b = rng.next() as u8;
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
                        _ => m.extend((0..rng.below(64)).map(|_| rng.next() as u8)),
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
}

#[test]
fn random_bytes_on_every_link_type_never_panic() {
    let mut rng = SplitMix(7);
    let mut dec = Decoder::default();
    let lts = [0u16, 1, 12, 14, 101, 108, 113, 228, 229, 276, 999];
    for i in 0..200_000 {
        let len = rng.below(120);
        let mut m: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
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
                b[i] = rng.next() as u8;
            }
            let (_, _) = read_chunks(b, 4096);
        }
    }
}
