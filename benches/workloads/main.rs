//! The workloads of `WORKLOADS.md`, each timed through agentstore's
//! public API and, in the same run, as a bare rusqlite baseline of the same operation
//! (peer `bare_sqlite`), so the figures hold as ratios on a noisy machine.
//!
//! ```text
//! cargo bench --bench workloads                      # everything
//! cargo bench --bench workloads -- --workload W2     # one workload (repeatable)
//! cargo bench --bench workloads -- --quick           # small N, few reps
//! cargo bench --bench workloads -- --out rows.json   # where the JSON goes
//! cargo bench --bench workloads -- --engine postgres # also PostgreSQL (and W11 on it)
//! cargo bench --bench workloads -- --engine postgres --pg-prepared  # with prepare=true
//! ```
//!
//! Rows follow section 4 of WORKLOADS.md (`peer`, `case`, `params`, `status`,
//! `latency_us`, extras) and are written to `results/agentstore-<UTC date>.json`.

mod data;
mod harness;
mod memory;
// Shared with the tests, which restart servers; the bench does not.
#[allow(dead_code)]
#[path = "../support/pg_cluster.rs"]
mod pg_cluster;
mod postgres;
mod responses;
mod restart;
mod tools;

use std::path::PathBuf;
use std::time::Instant;

use crate::data::vocab;
use serde_json::{Value, json};

use harness::{Bench, median, parse_args};
use memory::{w1, w2, w3, w4, w12};
use responses::{w7, w8, w9};
use tools::{w5, w6};

// ---------------------------------------------------------------- main

fn machine() -> Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_default();
    let pairs: Vec<f64> = (0..10_001)
        .map(|_| {
            let t = Instant::now();
            let e = t.elapsed();
            e.as_nanos() as f64
        })
        .collect();
    json!({
        "nproc": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "cpu_model": cpu,
        "sqlite_version": rusqlite::version(),
        "timer_pair_overhead_ns_median": median(&pairs),
        "loadavg": std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim(),
        "journal_mode": "wal",
        "synchronous": "NORMAL",
    })
}

fn main() {
    // W10 runs this binary again as its fresh process.
    let args: Vec<String> = std::env::args().collect();
    if let [_, flag, kind, db, prompt] = args.as_slice()
        && flag == "--w10-child"
    {
        restart::child(kind, db, prompt);
        return;
    }
    if let [_, flag, db, agent, m] = args.as_slice()
        && flag == "--w11-child"
    {
        postgres::w11_child(db, agent, m.parse().expect("a message count"));
        return;
    }
    let config = parse_args();
    postgres::PREPARED.store(config.pg_prepared, std::sync::atomic::Ordering::Relaxed);
    let started = chrono::Utc::now();
    let clock = Instant::now();
    let tmp = tempfile::Builder::new()
        .prefix("agentstore-bench")
        .tempdir_in(std::env::temp_dir())
        .expect("temp dir");
    let mut b = Bench {
        config,
        rows: serde_json::Map::new(),
        tmp,
        vocab: vocab(),
        next_db: 0,
    };
    let machine_start = machine();
    type Workload = fn(&mut Bench);
    let workloads: [(&str, Workload); 11] = [
        ("W1", w1),
        ("W2", w2),
        ("W3", w3),
        ("W4", w4),
        ("W5", w5),
        ("W6", w6),
        ("W7", w7),
        ("W8", w8),
        ("W9", w9),
        ("W10", restart::w10),
        ("W12", w12),
    ];
    for (name, run) in workloads {
        if b.wants(name) {
            run(&mut b);
        }
    }
    let mut pg = if b.config.postgres {
        match postgres::Pg::start() {
            Ok(pg) => Some(pg),
            Err(why) => {
                eprintln!("--engine postgres: {why}; set AGENTSTORE_BENCH_POSTGRES to a URL");
                std::process::exit(2);
            }
        }
    } else {
        None
    };
    if let Some(pg) = pg.as_mut() {
        if b.wants("W1") || b.wants("W3") || b.wants("W12") {
            postgres::memory(&mut b, pg);
        }
        if b.wants("W2") {
            postgres::cleanup(&mut b, pg);
        }
        if b.wants("W5") {
            postgres::tools(&mut b, pg);
        }
        if b.wants("W6") {
            postgres::parallel_tools(&mut b, pg);
        }
        if b.wants("W7") {
            postgres::responses(&mut b, pg);
        }
        if b.wants("W8") {
            postgres::fuzzy(&mut b, pg);
        }
        if b.wants("W4") || b.wants("W9") {
            postgres::stats(&mut b, pg);
        }
        if b.wants("W10") {
            let url = pg.url();
            let store = agentstore::Store::connect(&url, agentstore::StoreOptions::default())
                .expect("connect");
            restart::measure(&mut b, store, &url, "bare_pg");
        }
    }
    if b.config.workloads.iter().any(|w| w == "W11")
        || (b.config.workloads.is_empty() && pg.is_some())
    {
        postgres::w11(&mut b, pg.as_mut());
    }
    let doc = json!({
        "schema": "peers-bench/1",
        "started_utc": started.to_rfc3339(),
        "total_runtime_s": clock.elapsed().as_secs_f64(),
        "config": { "quick": b.config.quick, "workloads": b.config.workloads, "pg_prepared": b.config.pg_prepared },
        "seeds": { "W1": 101, "W2-W4": 201, "W5": [501, 502], "W7": [701, 702, 705], "W8": [801, 802, 803, 804], "W9": 901, "W10": [701, 702], "W12": [201, 1201], "vocab": 1 },
        "machine": machine_start,
        "loadavg_end": std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim(),
        "workloads": Value::Object(b.rows.clone()),
    });
    let out = b.config.out.clone().unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("results")
            .join(format!("agentstore-{}.json", started.format("%Y-%m-%d")))
    });
    if let Some(dir) = out.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    match std::fs::write(&out, serde_json::to_string_pretty(&doc).expect("json")) {
        Ok(()) => println!("rows written to {}", out.display()),
        Err(e) => eprintln!("could not write {}: {e}", out.display()),
    }
    if b.config.keep_tmp {
        let kept = b.tmp.keep();
        println!("databases kept in {}", kept.display());
    }
}
