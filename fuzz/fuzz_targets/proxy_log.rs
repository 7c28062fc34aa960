//! See `blindspot::fuzzing::proxy_log` for the input shape and the checks.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| blindspot::fuzzing::proxy_log(data));
