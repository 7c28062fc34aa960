//! Any bytes as a frame of any link type: decode must not panic.
//! Seed corpus: frames of the captures in `fixtures/` (see fuzz/README.md).
#![no_main]
use blindspot::capture::FrameRef;
use blindspot::decode::Decoder;
use blindspot::time::Timestamp;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let linktype = u16::from_le_bytes([data[0], data[1]]) % 300;
    let frame = FrameRef { ts: Timestamp(1), offset: 2, caplen: (data.len() - 2) as u32, wire_len: data.len() as u32, linktype };
    let mut d = Decoder::default();
    let mut extra = Vec::new();
    let _ = d.decode(data, &frame, &mut extra);
});
