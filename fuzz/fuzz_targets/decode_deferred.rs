//! See `blindspot::fuzzing::decode_deferred` for the input shape and the checks.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| blindspot::fuzzing::decode_deferred(data));
