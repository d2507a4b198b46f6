//! Fuzz target: api_bodies; the checks live in `fuzz/oracles/api_bodies.rs`.
#![no_main]

include!("../oracles/api_bodies.rs");

libfuzzer_sys::fuzz_target!(|data: &[u8]| check(data));
