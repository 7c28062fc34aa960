//! `--evidence DIR`: for each detection, a pcap of the first packets of
//! the flows behind it, cut out of the input in a second pass once the
//! replay is done (the detection record names the file before it exists).
//! Bounded: at most `max_packets_per_flow` frames per flow and
//! `max_file_bytes` per file; what is left out is counted.

use super::{EvidenceWant, Tuple};
use crate::capture::pcap_file::{CaptureReader, pcap_header, pcap_record_header};
use crate::decode::Decoder;
use crate::decode::defrag::DefragLimits;
use crate::flow::key::{Addr, FlowKey};
use crate::time::Timestamp;
use hashbrown::HashMap;
use std::path::{Path, PathBuf};

#[derive(Clone, Copy, Debug)]
pub struct EvidenceLimits {
    pub max_packets_per_flow: u32,
    pub max_file_bytes: usize,
}

impl Default for EvidenceLimits {
    fn default() -> Self {
        EvidenceLimits {
            max_packets_per_flow: 32,
            max_file_bytes: 16 << 20,
        }
    }
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct EvidenceReport {
    pub files: u64,
    pub packets: u64,
    pub packets_over_cap: u64,
    pub other_link_type: u64,
}

fn proto_num(p: &str) -> u8 {
    match p {
        "tcp" => 6,
        "udp" => 17,
        _ => 0,
    }
}

/// Canonical (address, port) pairs and protocol: the VLANs are compared apart.
fn canonical(t: &Tuple) -> FlowKey {
    FlowKey {
        src: Addr::from(t.src_ip),
        dst: Addr::from(t.dst_ip),
        sport: t.src_port,
        dport: t.dst_port,
        proto: proto_num(t.proto),
        vlan: [0, 0],
        tunnel: 0,
    }
    .canonical()
    .0
}

/// One flow of one detection: (want, VLANs, start, end, frames cut).
type Slot = (usize, Vec<u16>, Timestamp, Timestamp, u32);

struct Out {
    linktype: Option<u16>,
    bytes: Vec<u8>,
}

/// Writes one pcap per want into `dir` (created if needed).
pub fn write(
    inputs: &[PathBuf],
    dir: &Path,
    wants: &[EvidenceWant],
    limits: EvidenceLimits,
    defrag: DefragLimits,
) -> Result<EvidenceReport, String> {
    let mut rep = EvidenceReport::default();
    if wants.is_empty() {
        return Ok(rep);
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: cannot create: {e}", dir.display()))?;
    // key → (want, flow) slots with their time range and packet count.
    let mut slots: HashMap<FlowKey, Vec<Slot>> = HashMap::new();
    for (i, w) in wants.iter().enumerate() {
        for (t, start, end) in &w.flows {
            slots
                .entry(canonical(t))
                .or_default()
                .push((i, t.vlan.clone(), *start, *end, 0));
        }
    }
    let mut outs: Vec<Out> = wants
        .iter()
        .map(|_| Out {
            linktype: None,
            bytes: Vec::new(),
        })
        .collect();
    let mut dec = Decoder::new(defrag);
    let mut extra = Vec::new();
    for path in inputs {
        // Damaged inputs were reported by the replay; cut what can be read.
        let Ok(mut r) = CaptureReader::open(path) else {
            continue;
        };
        while let Ok(Some(chunk)) = r.next_chunk() {
            // Device evidence is not wanted in this pass.
            dec.evidence.clear();
            for f in &chunk.frames {
                extra.clear();
                let Some(p) = dec.decode(&chunk.data, f, &mut extra) else {
                    continue;
                };
                let mut k = p.key;
                let vlan: Vec<u16> = k.vlan.iter().copied().filter(|v| *v != 0).collect();
                k.vlan = [0, 0];
                // Detections name the inner tuple: a tunnelled flow's
                // frames are cut with their encapsulation.
                k.tunnel = 0;
                let Some(list) = slots.get_mut(&k.canonical().0) else {
                    continue;
                };
                for (w, v, start, end, n) in list.iter_mut() {
                    if *v != vlan || p.ts < *start || p.ts > *end {
                        continue;
                    }
                    if *n >= limits.max_packets_per_flow {
                        rep.packets_over_cap += 1;
                        continue;
                    }
                    let o = &mut outs[*w];
                    if *o.linktype.get_or_insert(f.linktype) != f.linktype {
                        rep.other_link_type += 1;
                        continue;
                    }
                    let frame = chunk.frame_bytes(f);
                    if o.bytes.len() + frame.len() + 16 > limits.max_file_bytes {
                        rep.packets_over_cap += 1;
                        continue;
                    }
                    *n += 1;
                    rep.packets += 1;
                    o.bytes.extend_from_slice(&pcap_record_header(
                        true,
                        p.ts.as_nanos(),
                        frame.len() as u32,
                        f.wire_len,
                    ));
                    o.bytes.extend_from_slice(frame);
                }
            }
            r.recycle(chunk);
        }
    }
    for (w, o) in wants.iter().zip(outs) {
        // pcap with nanosecond timestamps.
        let mut file = Vec::with_capacity(24 + o.bytes.len());
        file.extend_from_slice(&pcap_header(true, u32::from(o.linktype.unwrap_or(1))));
        file.extend_from_slice(&o.bytes);
        let path = dir.join(&w.file);
        std::fs::write(&path, file)
            .map_err(|e| format!("{}: cannot write: {e}", path.display()))?;
        rep.files += 1;
    }
    Ok(rep)
}
