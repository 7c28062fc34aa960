//! See `blindspot::fuzzing::flow_table` for the input shape and the checks.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| blindspot::fuzzing::flow_table(data));
