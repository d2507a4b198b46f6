//! Fuzz target: settlement_file; the checks live in `fuzz/oracles/settlement_file.rs`.
#![no_main]

include!("../oracles/settlement_file.rs");

libfuzzer_sys::fuzz_target!(|data: &[u8]| check(data));
