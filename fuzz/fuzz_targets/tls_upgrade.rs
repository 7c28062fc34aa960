//! See `blindspot::fuzzing::tls_upgrade` for the input shape and the checks.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| blindspot::fuzzing::tls_upgrade(data));
