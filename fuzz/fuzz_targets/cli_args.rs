//! Fuzz target: any argument list (the input split at NUL bytes) parses, or fails
//! with an error that renders as text; clap never panics on it.
#![no_main]

#[allow(dead_code, unused_imports)]
#[path = "../../src/cli/mod.rs"]
mod cli;
#[allow(dead_code)]
#[path = "../../src/rng.rs"]
mod rng;

use clap::Parser;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let args = data
        .split(|b| *b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned());
    let argv = std::iter::once("agentstore".to_string()).chain(args);
    if let Err(e) = cli::Cli::try_parse_from(argv) {
        let _ = e.render().to_string();
    }
});
