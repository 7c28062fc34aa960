//! Any bytes as a capture file: the reader must end with records or an error, never panic or hang.
#![no_main]
use blindspot::capture::pcap_file::CaptureReader;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(r) = CaptureReader::from_reader("fuzz".into(), Box::new(std::io::Cursor::new(data.to_vec()))) else { return };
    let mut r = r.with_chunk_size(97);
    for _ in 0..10_000 {
        match r.next_chunk() {
            Ok(Some(c)) => {
                for f in &c.frames {
                    let _ = c.frame_bytes(f);
                }
            }
            _ => break,
        }
    }
});
