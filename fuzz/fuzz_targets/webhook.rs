//! Fuzz target: webhook; the checks live in `fuzz/oracles/webhook.rs`.
#![no_main]

include!("../oracles/webhook.rs");

libfuzzer_sys::fuzz_target!(|data: &[u8]| check(data));
