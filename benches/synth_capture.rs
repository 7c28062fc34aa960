//! Builds a large capture for the throughput benchmark from the real
//! fixtures: every Ethernet frame of the given captures, copied as many
//! times as needed, each copy with its IPv4/IPv6 addresses rewritten (so its
//! flows stay distinct from the other copies') and its times shifted to
//! follow the previous copy (one monotonic timeline, so flows expire as they
//! would on a long capture).
//!
//! With `--vxlan` first, every frame is wrapped in VXLAN (outer Ethernet,
//! IPv4 198.51.100.1 -> .2, UDP to 4789, VNI = copy number): the tunnelled
//! twin of the same traffic, for the cost of decapsulation.
//!
//! `cargo run --release --example synth_capture -- [--vxlan] OUT.pcap MIN_BYTES FILE...`

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

/// The frame in VXLAN over IPv4/UDP, as a kernel `vxlan` device sends it
/// (source port from the inner frame, so each inner flow keeps one).
fn vxlan(inner: &[u8], vni: u32, out: &mut Vec<u8>) {
    let ip_len = (20 + 8 + 8 + inner.len()) as u16;
    let sport = 49152
        | (inner
            .iter()
            .take(64)
            .fold(0u16, |h, b| h.rotate_left(5) ^ *b as u16)
            & 0x3fff);
    out.clear();
    out.extend_from_slice(&[2, 0, 0x5e, 0x33, 0, 2, 2, 0, 0x5e, 0x33, 0, 1, 8, 0]);
    out.extend_from_slice(&[0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0]);
    out[16..18].copy_from_slice(&ip_len.to_be_bytes());
    out.extend_from_slice(&[198, 51, 100, 1, 198, 51, 100, 2]);
    let mut sum: u32 = out[14..34]
        .chunks(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]) as u32)
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    out[24..26].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    out.extend_from_slice(&sport.to_be_bytes());
    out.extend_from_slice(&4789u16.to_be_bytes());
    out.extend_from_slice(&(ip_len - 20).to_be_bytes());
    out.extend_from_slice(&[0, 0, 8, 0, 0, 0]);
    out.extend_from_slice(&(vni << 8).to_be_bytes());
    out.extend_from_slice(inner);
}

fn main() {
    let mut args: Vec<String> = std::env::args().collect();
    let wrap = args.get(1).is_some_and(|a| a == "--vxlan");
    if wrap {
        args.remove(1);
    }
    if args.len() < 4 {
        eprintln!("usage: synth_capture [--vxlan] OUT.pcap MIN_BYTES FILE...");
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
    let mut wrapped = Vec::new();
    for c in 0..copies {
        let shift = start_ns + c * (span_ns + 1_000_000_000);
        for f in &frames {
            data.clear();
            data.extend_from_slice(&f.data);
            rewrite(&mut data, c as u32 + 1);
            let t = shift + f.rel_ns;
            let (bytes, wire_len) = if wrap {
                vxlan(&data, (c as u32 + 1) & 0xff_ffff, &mut wrapped);
                (&wrapped, f.wire_len + 50)
            } else {
                (&data, f.wire_len)
            };
            w.write_all(&pcap_record_header(false, t, bytes.len() as u32, wire_len))
                .unwrap();
            w.write_all(bytes).unwrap();
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
