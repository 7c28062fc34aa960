//! See `blindspot::fuzzing::fleet_state` for the input shape and the checks.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| blindspot::fuzzing::fleet_state(data));
