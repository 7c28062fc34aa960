//! See `blindspot::fuzzing::tunnel` for the input shape and the checks.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| blindspot::fuzzing::tunnel(data));
