//! Fuzz target: see `fuzz/checks/canonical_json.rs` for what it asserts.
#![no_main]

#[path = "../checks/canonical_json.rs"]
mod check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| check::check(data));
