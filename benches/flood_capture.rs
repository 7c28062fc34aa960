//! Writes the hostile floods of the memory benchmark (`benches/floods.sh`)
//! as pcap files. Each is what one attacker on the segment can send; the
//! sensor must stay within its documented memory and count what it
//! refused. Addresses and ports come from a fixed-seed generator, so every
//! run writes the same bytes.
//!
//! `cargo run --release --example flood_capture -- KIND OUT.pcap COUNT`
//!
//! - `syn`: COUNT TCP SYNs from random sources to one server, 1 µs apart
//!   (a SYN flood; every one a new half-open flow).
//! - `frag`: COUNT first fragments of IPv4 datagrams that never complete.
//! - `macs`: COUNT neighbours announcing themselves, half by ARP and half by
//!   IPv6 neighbour solicitations, each from its own MAC and address.
//! - `hello1`: COUNT one-byte segments carrying real ClientHellos (the first
//!   one of `fixtures/local/tls13-curl-nginx-download.pcap`, made by curl),
//!   each connection's hello sent whole, a byte per segment, after its
//!   handshake.
//! - `conns`: COUNT short TCP connections from random sources, each a
//!   handshake, 16 bytes from the client and a reset: every one a session
//!   with payload, all within seconds of packet time, after one long
//!   connection that stays open: the detector holds them for their turn
//!   (`detect::admit`) up to its cap.

use blindspot::capture::FrameRef;
use blindspot::capture::pcap_file::{CaptureReader, pcap_header, pcap_record_header};
use blindspot::decode::{self, Decoder};
use blindspot::flow::key::SplitMix;
use std::io::{BufWriter, Write};
use std::path::Path;

const SERVER_MAC: [u8; 6] = [0x02, 0, 0x5e, 0, 0, 1];
const SERVER_V4: [u8; 4] = [192, 0, 2, 1];
const START_NS: u64 = 1_700_000_000 * 1_000_000_000;

struct Out {
    w: BufWriter<std::fs::File>,
    ns: u64,
}

impl Out {
    fn frame(&mut self, f: &[u8]) {
        self.ns += 1_000;
        let h = pcap_record_header(false, START_NS + self.ns, f.len() as u32, f.len() as u32);
        self.w.write_all(&h).unwrap();
        self.w.write_all(f).unwrap();
    }
}

fn ether(dst: [u8; 6], src: [u8; 6], ethertype: u16) -> Vec<u8> {
    let mut f = Vec::with_capacity(128);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f
}

/// The RFC 1071 checksum of `b`.
fn checksum(b: &[u8]) -> u16 {
    let mut sum = 0u32;
    for c in b.chunks(2) {
        sum += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn ipv4(f: &mut Vec<u8>, src: [u8; 4], dst: [u8; 4], proto: u8, id: u16, frag: u16, len: usize) {
    let start = f.len();
    let total = (20 + len) as u16;
    f.extend_from_slice(&[0x45, 0]);
    f.extend_from_slice(&total.to_be_bytes());
    f.extend_from_slice(&id.to_be_bytes());
    f.extend_from_slice(&frag.to_be_bytes());
    f.extend_from_slice(&[64, proto, 0, 0]);
    f.extend_from_slice(&src);
    f.extend_from_slice(&dst);
    let c = checksum(&f[start..]);
    f[start + 10..start + 12].copy_from_slice(&c.to_be_bytes());
}

/// An IPv4 TCP segment (no checksum: the sensor does not verify them).
#[allow(clippy::too_many_arguments)]
fn tcp(
    src: ([u8; 4], u16, [u8; 6]),
    dst: ([u8; 4], u16, [u8; 6]),
    flags: u8,
    seq: u32,
    ack: u32,
    payload: &[u8],
) -> Vec<u8> {
    let mut f = ether(dst.2, src.2, 0x0800);
    ipv4(&mut f, src.0, dst.0, 6, 1, 0x4000, 20 + payload.len());
    f.extend_from_slice(&src.1.to_be_bytes());
    f.extend_from_slice(&dst.1.to_be_bytes());
    f.extend_from_slice(&seq.to_be_bytes());
    f.extend_from_slice(&ack.to_be_bytes());
    f.extend_from_slice(&[0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
    f.extend_from_slice(payload);
    f
}

fn client(rng: &mut SplitMix) -> ([u8; 4], u16, [u8; 6]) {
    let r = rng.next_u64().to_be_bytes();
    let mac = [0x02, r[0], r[1], r[2], r[3], r[4]];
    (
        [10, r[5], r[6], r[7].max(1)],
        1024 + (rng.below(64_000) as u16),
        mac,
    )
}

/// The first ClientHello of a curl capture made by `fixtures/make-local.sh`.
fn real_client_hello() -> Vec<u8> {
    let p =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/local/tls13-curl-nginx-download.pcap");
    let mut r = CaptureReader::open(&p).expect("fixture");
    let mut d = Decoder::default();
    let mut extra = Vec::new();
    while let Ok(Some(c)) = r.next_chunk() {
        for f in &c.frames {
            let fr: &FrameRef = f;
            if let Some(p) = d.decode(&c.data, fr, &mut extra) {
                let b = decode::payload(&p, &c.data, &extra);
                if b.len() > 5 && b[0] == 0x16 && b[5] == 1 {
                    return b.to_vec();
                }
            }
        }
    }
    panic!("no ClientHello in {}", p.display());
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 4 {
        eprintln!("usage: flood_capture syn|frag|macs|hello1|conns OUT.pcap COUNT");
        std::process::exit(2);
    }
    let count: u64 = args[3].parse().expect("COUNT");
    let file = std::fs::File::create(&args[2]).expect("create output");
    let mut out = Out {
        w: BufWriter::with_capacity(1 << 20, file),
        ns: 0,
    };
    out.w.write_all(&pcap_header(false, 1)).unwrap();
    let mut rng = SplitMix(15);
    let server = |port| (SERVER_V4, port, SERVER_MAC);
    let mut written = 0u64;
    match args[1].as_str() {
        "syn" => {
            for _ in 0..count {
                let c = client(&mut rng);
                out.frame(&tcp(c, server(443), 0x02, rng.next_u64() as u32, 0, &[]));
            }
            written = count;
        }
        "conns" => {
            // One long connection stays open throughout: no session can
            // enter before its start until the end of the input.
            let long = client(&mut rng);
            out.frame(&tcp(long, server(443), 0x02, 1, 0, &[]));
            out.frame(&tcp(server(443), long, 0x12, 1, 2, &[]));
            out.frame(&tcp(long, server(443), 0x18, 2, 2, &[0x5a; 16]));
            written += 3;
            for _ in 0..count {
                let c = client(&mut rng);
                let s = server(443);
                let (cs, ss) = (rng.next_u64() as u32, rng.next_u64() as u32);
                let (c1, s1) = (cs.wrapping_add(1), ss.wrapping_add(1));
                out.frame(&tcp(c, s, 0x02, cs, 0, &[]));
                out.frame(&tcp(s, c, 0x12, ss, c1, &[]));
                out.frame(&tcp(c, s, 0x18, c1, s1, &[0x5a; 16]));
                out.frame(&tcp(c, s, 0x04, c1.wrapping_add(16), 0, &[]));
            }
            written += count * 4;
        }
        "frag" => {
            for i in 0..count {
                let c = client(&mut rng);
                let mut f = ether(SERVER_MAC, c.2, 0x0800);
                // UDP header + 16 bytes, more fragments follow (they never do).
                ipv4(&mut f, c.0, SERVER_V4, 17, i as u16, 0x2000, 24);
                f.extend_from_slice(&c.1.to_be_bytes());
                f.extend_from_slice(&53u16.to_be_bytes());
                f.extend_from_slice(&[0, 200, 0, 0]);
                f.extend_from_slice(&[0xab; 16]);
                out.frame(&f);
            }
            written = count;
        }
        "macs" => {
            for i in 0..count {
                let c = client(&mut rng);
                if i % 2 == 0 {
                    // ARP request: who has the server, tell c.
                    let mut f = ether([0xff; 6], c.2, 0x0806);
                    f.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
                    f.extend_from_slice(&c.2);
                    f.extend_from_slice(&c.0);
                    f.extend_from_slice(&[0; 6]);
                    f.extend_from_slice(&SERVER_V4);
                    out.frame(&f);
                } else {
                    // Neighbour solicitation from fe80::<random>, with its MAC.
                    let r = rng.next_u64().to_be_bytes();
                    let mut src = [0u8; 16];
                    src[0] = 0xfe;
                    src[1] = 0x80;
                    src[8..].copy_from_slice(&r);
                    let mut target = [0u8; 16];
                    target[..2].copy_from_slice(&[0xfe, 0x80]);
                    target[15] = 1;
                    let mut icmp = vec![135, 0, 0, 0, 0, 0, 0, 0];
                    icmp.extend_from_slice(&target);
                    icmp.extend_from_slice(&[1, 1]);
                    icmp.extend_from_slice(&c.2);
                    let mut f = ether([0x33, 0x33, 0xff, 0, 0, 1], c.2, 0x86dd);
                    f.extend_from_slice(&[0x60, 0, 0, 0]);
                    f.extend_from_slice(&(icmp.len() as u16).to_be_bytes());
                    f.extend_from_slice(&[58, 255]);
                    f.extend_from_slice(&src);
                    let mut dst = [0u8; 16];
                    dst[..2].copy_from_slice(&[0xff, 0x02]);
                    dst[11] = 1;
                    dst[12] = 0xff;
                    dst[15] = 1;
                    f.extend_from_slice(&dst);
                    f.extend_from_slice(&icmp);
                    out.frame(&f);
                }
            }
            written = count;
        }
        "hello1" => {
            let hello = real_client_hello();
            while written < count {
                let c = client(&mut rng);
                let s = server(443);
                out.frame(&tcp(c, s, 0x02, 1000, 0, &[]));
                out.frame(&tcp(s, c, 0x12, 5000, 1001, &[]));
                out.frame(&tcp(c, s, 0x10, 1001, 5001, &[]));
                for (i, b) in hello.iter().enumerate() {
                    out.frame(&tcp(c, s, 0x18, 1001 + i as u32, 5001, &[*b]));
                    written += 1;
                }
            }
        }
        other => {
            eprintln!("unknown flood {other}: use syn, frag, macs or hello1");
            std::process::exit(2);
        }
    }
    out.w.flush().unwrap();
    eprintln!("{}: {} {written}", args[2], args[1]);
}
