//! Any sequence of packets (decoded from fuzz bytes) through one flow table:
//! no panic, and the table never holds more than its cap.
#![no_main]
use blindspot::capture::FrameRef;
use blindspot::decode::{self, Decoder};
use blindspot::flow::FlowSettings;
use blindspot::flow::table::FlowTable;
use blindspot::time::Timestamp;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let settings = FlowSettings { max_flows: 8, ..FlowSettings::default() };
    let mut table = FlowTable::new(settings, 1);
    let mut d = Decoder::default();
    let mut out = Vec::new();
    let mut extra = Vec::new();
    let mut t = 0u64;
    // Records: [len u8][time step u8][frame bytes (Ethernet)]
    let mut rest = data;
    while rest.len() > 2 {
        let len = (rest[0] as usize).min(rest.len() - 2);
        t += rest[1] as u64 * 100_000_000;
        let frame = FrameRef { ts: Timestamp(t), offset: 2, caplen: len as u32, wire_len: len as u32, linktype: 1 };
        if let Some(p) = d.decode(rest, &frame, &mut extra) {
            table.process(&p, decode::payload(&p, rest, &extra), &mut out);
            assert!(table.active() <= 8);
        }
        rest = &rest[2 + len..];
    }
    table.drain(Timestamp(t), &mut out);
});
