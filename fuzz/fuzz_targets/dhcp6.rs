//! See `blindspot::fuzzing::dhcp6` for the input shape and the checks.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| blindspot::fuzzing::dhcp6(data));
