#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| connectivity_operator::fuzzing::quantities(data));
