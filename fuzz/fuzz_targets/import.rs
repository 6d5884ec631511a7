//! Fuzz target: see `fuzz/checks/import.rs` for what it asserts.
#![no_main]

#[path = "../checks/import.rs"]
mod check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| check::check(data));
