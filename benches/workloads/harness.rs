//! Measurement rules (section 2 of WORKLOADS.md), the argument parser and the row
//! collector.

use std::path::PathBuf;
use std::time::Instant;

use serde_json::{Value, json};

// ---------------------------------------------------------------- measurement rules

/// Per-op samples in µs and their summary (median, nearest-rank p95/p99, ...).
pub fn summarize(samples: &[f64]) -> Value {
    let mut s = samples.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    let rank = |p: f64| s[((p * n as f64).ceil() as usize).clamp(1, n) - 1];
    let median = if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    };
    let sum: f64 = s.iter().sum();
    json!({
        "n": n,
        "median_us": median,
        "p95_us": rank(0.95),
        "p99_us": rank(0.99),
        "mean_us": sum / n as f64,
        "min_us": s[0],
        "max_us": s[n - 1],
        "ops_per_s": n as f64 / (sum / 1e6),
    })
}

/// Times `op` once per item, one clock read before and one after each call.
pub fn per_op<T>(items: &[T], mut op: impl FnMut(&T)) -> Vec<f64> {
    items
        .iter()
        .map(|item| {
            let t = Instant::now();
            op(item);
            t.elapsed().as_nanos() as f64 / 1000.0
        })
        .collect()
}

/// Times `op` `reps` times after `warmups` untimed calls.
pub fn reps(warmups: usize, reps: usize, mut op: impl FnMut()) -> Vec<f64> {
    for _ in 0..warmups {
        op();
    }
    (0..reps)
        .map(|_| {
            let t = Instant::now();
            op();
            t.elapsed().as_nanos() as f64 / 1000.0
        })
        .collect()
}

pub fn median(samples: &[f64]) -> f64 {
    summarize(samples)["median_us"].as_f64().unwrap_or(f64::NAN)
}

// ---------------------------------------------------------------- harness

pub struct Config {
    pub workloads: Vec<String>,
    pub quick: bool,
    pub out: Option<PathBuf>,
    pub keep_tmp: bool,
    /// `--engine postgres`: run the PostgreSQL workloads too.
    pub postgres: bool,
    /// `--pg-prepared`: the PostgreSQL stores keep prepared statements.
    pub pg_prepared: bool,
}

pub fn parse_args() -> Config {
    let mut c = Config {
        workloads: Vec::new(),
        quick: false,
        out: None,
        keep_tmp: false,
        postgres: false,
        pg_prepared: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--workload" | "-w" => {
                if let Some(w) = args.next() {
                    c.workloads
                        .extend(w.split(',').map(|s| s.trim().to_ascii_uppercase()));
                }
            }
            "--quick" => c.quick = true,
            "--keep-tmp" => c.keep_tmp = true,
            "--out" => c.out = args.next().map(PathBuf::from),
            "--engine" => c.postgres = args.next().is_some_and(|e| e == "postgres"),
            "--pg-prepared" => c.pg_prepared = true,
            "--help" | "-h" => {
                println!(
                    "workloads [--workload W1[,W2..]] [--quick] [--out FILE] [--keep-tmp] [--engine postgres [--pg-prepared]]"
                );
                std::process::exit(0);
            }
            // `cargo bench` passes --bench; anything else unknown is ignored too.
            _ => {}
        }
    }
    c
}

pub struct Bench {
    pub config: Config,
    pub rows: serde_json::Map<String, Value>,
    pub tmp: tempfile::TempDir,
    pub vocab: Vec<String>,
    pub next_db: usize,
}

impl Bench {
    pub fn wants(&self, w: &str) -> bool {
        self.config.workloads.is_empty() || self.config.workloads.iter().any(|x| x == w)
    }

    pub fn db_path(&mut self) -> PathBuf {
        self.next_db += 1;
        self.tmp.path().join(format!("db{}.sqlite", self.next_db))
    }

    pub fn row(
        &mut self,
        workload: &str,
        peer: &str,
        case: &str,
        params: Value,
        latency: Value,
        extra: Value,
    ) {
        let mut row = json!({
            "peer": peer, "case": case, "params": params, "status": "ok", "latency_us": latency,
        });
        if let (Some(r), Some(e)) = (row.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                r.insert(k.clone(), v.clone());
            }
        }
        let median = row["latency_us"]["median_us"].as_f64().unwrap_or(f64::NAN);
        let ops = row["latency_us"]["ops_per_s"].as_f64().unwrap_or(f64::NAN);
        println!(
            "{workload:<20} {peer:<12} {case:<28} {:<16} median {:>12.2} µs  {:>12.0} ops/s  {}",
            row["params"].to_string(),
            median,
            ops,
            extra
        );
        self.rows
            .entry(workload.to_string())
            .or_insert_with(|| json!({ "rows": [] }))["rows"]
            .as_array_mut()
            .expect("rows")
            .push(row);
    }

    pub fn summary(&mut self, workload: &str, summary: Value) {
        println!("{workload:<20} summary: {summary}");
        if let Some(w) = self.rows.get_mut(workload) {
            w["summary"] = summary;
        }
    }
}

/// A throughput-only row: `n` ops in `secs` seconds, as the latency block would say.
pub fn throughput(n: usize, secs: f64) -> Value {
    json!({ "n": n, "median_us": secs * 1e6 / n as f64, "ops_per_s": n as f64 / secs })
}
