//! See `blindspot::fuzzing::capture_file` for the input shape and the checks.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| blindspot::fuzzing::capture_file(data));
