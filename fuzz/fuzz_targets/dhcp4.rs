//! See `blindspot::fuzzing::dhcp4` for the input shape and the checks.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| blindspot::fuzzing::dhcp4(data));
