//! Fuzz target: see `fuzz/checks/sql_gate.rs` for what it asserts.
#![no_main]

#[path = "../checks/sql_gate.rs"]
mod check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| check::check(data));
