//! Builds a large capture for the throughput benchmark from the real
//! fixtures: every Ethernet frame of the given captures, copied as many
//! times as needed, each copy with its IPv4/IPv6 addresses rewritten (so its
//! flows stay distinct from the other copies') and its times shifted to
//! follow the previous copy (one monotonic timeline, so flows expire as they
//! would on a long capture).
//!
//! `cargo run --release --example synth_capture -- OUT.pcap MIN_BYTES FILE...`

use blindspot::capture::linktype;
use blindspot::capture::pcap_file::{CaptureReader, pcap_header, pcap_record_header};
use std::io::{BufWriter, Write};
use std::path::Path;

struct Frame {
    rel_ns: u64,
    wire_len: u32,
    data: Vec<u8>,
}

/// Offsets of the IP header in an Ethernet frame (after VLAN tags) and its version.
fn ip_offset(f: &[u8]) -> Option<(usize, u8)> {
    let mut off = 12;
    loop {
        let et = u16::from_be_bytes([*f.get(off)?, *f.get(off + 1)?]);
        match et {
            0x8100 | 0x88a8 => off += 4,
            0x0800 => return Some((off + 2, 4)),
            0x86dd => return Some((off + 2, 6)),
            _ => return None,
        }
    }
}

fn rewrite(data: &mut [u8], copy: u32) {
    let Some((ip, v)) = ip_offset(data) else {
        return;
    };
    let (a, b) = ((copy >> 8) as u8, copy as u8);
    let addrs: &[usize] = if v == 4 {
        &[ip + 12, ip + 16]
    } else {
        &[ip + 8, ip + 24]
    };
    for &at in addrs {
        // Keep the first octet (public/private class stays), vary the next two.
        if let Some(x) = data.get_mut(at + 1) {
            *x ^= a;
        }
        if let Some(x) = data.get_mut(at + 2) {
            *x ^= b;
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        eprintln!("usage: synth_capture OUT.pcap MIN_BYTES FILE...");
        std::process::exit(2);
    }
    let min_bytes: u64 = args[2].parse().expect("MIN_BYTES");
    let mut frames = Vec::new();
    let mut span_ns = 0u64;
    for file in &args[3..] {
        let mut r = CaptureReader::open(Path::new(file)).expect("open capture");
        let mut first = None;
        let base = span_ns;
        while let Ok(Some(chunk)) = r.next_chunk() {
            for f in &chunk.frames {
                if f.linktype != linktype::ETHERNET {
                    continue;
                }
                let t0 = *first.get_or_insert(f.ts.as_nanos());
                let rel = base + f.ts.as_nanos().saturating_sub(t0);
                span_ns = span_ns.max(rel);
                frames.push(Frame {
                    rel_ns: rel,
                    wire_len: f.wire_len,
                    data: chunk.frame_bytes(f).to_vec(),
                });
            }
        }
        span_ns += 1_000_000_000;
    }
    let per_copy: u64 = frames.iter().map(|f| 16 + f.data.len() as u64).sum();
    let copies = min_bytes.div_ceil(per_copy.max(1));
    let out = std::fs::File::create(&args[1]).expect("create output");
    let mut w = BufWriter::with_capacity(1 << 20, out);
    w.write_all(&pcap_header(false, 1)).unwrap();
    let start_ns = 1_700_000_000u64 * 1_000_000_000;
    let mut packets = 0u64;
    let mut data = Vec::new();
    for c in 0..copies {
        let shift = start_ns + c * (span_ns + 1_000_000_000);
        for f in &frames {
            data.clear();
            data.extend_from_slice(&f.data);
            rewrite(&mut data, c as u32 + 1);
            let t = shift + f.rel_ns;
            w.write_all(&pcap_record_header(false, t, data.len() as u32, f.wire_len))
                .unwrap();
            w.write_all(&data).unwrap();
            packets += 1;
        }
    }
    w.flush().unwrap();
    eprintln!(
        "{}: {copies} copies of {} frames, {packets} packets",
        args[1],
        frames.len()
    );
}
