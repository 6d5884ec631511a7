//! Integration tests on real SQLite files in temporary directories, and on the built
//! binary. One test binary, one module per area.

#[path = "../../benches/workloads/data.rs"]
#[allow(dead_code)]
mod workload;

mod agent;
mod bad_input;
mod cli;
mod common;
mod connect;
mod context;
mod crash;
mod engines;
mod faults;
mod fleet;
mod fuzz_corpus;
mod hardening;
mod http;
mod interrupted;
mod llm;
mod load;
mod mcp;
mod open;
mod pg_engine;
mod pgbouncer;
mod postgres;
mod readme;
mod recall;
mod report;
mod responses;
mod retention;
mod sql;
mod tls;
mod tools;
mod transfer;
mod zz_report;
