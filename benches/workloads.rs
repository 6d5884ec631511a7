//! The workloads of `WORKLOADS.md` (W1 to W4 so far), each timed through agentstore's
//! public API and, in the same run, as a bare rusqlite baseline of the same operation
//! (peer `bare_sqlite`), so the figures hold as ratios on a noisy machine.
//!
//! ```text
//! cargo bench --bench workloads                      # everything
//! cargo bench --bench workloads -- --workload W2     # one workload (repeatable)
//! cargo bench --bench workloads -- --quick           # small N, few reps
//! cargo bench --bench workloads -- --out rows.json   # where the JSON goes
//! ```
//!
//! Rows follow section 4 of WORKLOADS.md (`peer`, `case`, `params`, `status`,
//! `latency_us`, extras) and are written to `results/agentstore-<UTC date>.json`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use agentstore::workload::{PRELOAD_EPOCH_MICROS, memory_pairs, vocab};
use agentstore::{NewEntry, Store, StoreOptions};
use rusqlite::{Connection, params};
use serde_json::{Value, json};

// ---------------------------------------------------------------- measurement rules

/// Per-op samples in µs and their summary (median, nearest-rank p95/p99, ...).
fn summarize(samples: &[f64]) -> Value {
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
fn per_op<T>(items: &[T], mut op: impl FnMut(&T)) -> Vec<f64> {
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
fn reps(warmups: usize, reps: usize, mut op: impl FnMut()) -> Vec<f64> {
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

fn median(samples: &[f64]) -> f64 {
    summarize(samples)["median_us"].as_f64().unwrap_or(f64::NAN)
}

// ---------------------------------------------------------------- harness

struct Config {
    workloads: Vec<String>,
    quick: bool,
    out: Option<PathBuf>,
    keep_tmp: bool,
}

fn parse_args() -> Config {
    let mut c = Config {
        workloads: Vec::new(),
        quick: false,
        out: None,
        keep_tmp: false,
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
            "--help" | "-h" => {
                println!("workloads [--workload W1[,W2..]] [--quick] [--out FILE] [--keep-tmp]");
                std::process::exit(0);
            }
            // `cargo bench` passes --bench; anything else unknown is ignored too.
            _ => {}
        }
    }
    c
}

struct Bench {
    config: Config,
    rows: serde_json::Map<String, Value>,
    tmp: tempfile::TempDir,
    vocab: Vec<String>,
    next_db: usize,
}

impl Bench {
    fn wants(&self, w: &str) -> bool {
        self.config.workloads.is_empty() || self.config.workloads.iter().any(|x| x == w)
    }

    fn db_path(&mut self) -> PathBuf {
        self.next_db += 1;
        self.tmp.path().join(format!("db{}.sqlite", self.next_db))
    }

    fn row(
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

    fn summary(&mut self, workload: &str, summary: Value) {
        println!("{workload:<20} summary: {summary}");
        if let Some(w) = self.rows.get_mut(workload) {
            w["summary"] = summary;
        }
    }
}

/// A throughput-only row: `n` ops in `secs` seconds, as the latency block would say.
fn throughput(n: usize, secs: f64) -> Value {
    json!({ "n": n, "median_us": secs * 1e6 / n as f64, "ops_per_s": n as f64 / secs })
}

// ---------------------------------------------------------------- stores under test

fn open_store(path: &Path) -> Store {
    Store::open(path, StoreOptions::default()).expect("open store")
}

/// A fresh store with one agent whose retention cannot interfere with preloading.
fn preloaded_store(path: &Path, pairs: &[(String, f64)]) -> (Store, agentstore::Memory) {
    let store = open_store(path);
    let agent = store.agent("bench").expect("agent");
    let entries: Vec<NewEntry> = pairs
        .iter()
        .enumerate()
        .map(|(i, (c, imp))| NewEntry {
            content: c.clone(),
            importance: *imp,
            created_at: PRELOAD_EPOCH_MICROS + i as i64 * 1_000_000,
        })
        .collect();
    let memory = store.memory(&agent);
    memory.import_entries(&entries).expect("preload");
    // Settle: the bare baseline's preload checkpoints inside its commit, ours in the
    // background; without this the timed call would share the disk with that copy.
    store.checkpoint().expect("checkpoint");
    (store, memory)
}

/// The bare baseline: the same row shape and indexes in a plain rowid table, with the
/// same pragmas (WAL, synchronous=NORMAL).
fn bare_db(path: &Path) -> Connection {
    let c = Connection::open(path).expect("bare open");
    c.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;
         CREATE TABLE m (id INTEGER PRIMARY KEY, agent_id INTEGER NOT NULL,
             importance REAL NOT NULL, created_at INTEGER NOT NULL,
             size_bytes INTEGER NOT NULL, content TEXT NOT NULL);
         CREATE INDEX m_rank ON m (agent_id, importance, created_at);
         CREATE INDEX m_time ON m (agent_id, created_at);",
    )
    .expect("bare schema");
    c
}

const BARE_INSERT: &str = "INSERT INTO m (agent_id, importance, created_at, size_bytes, content) \
                           VALUES (1, ?1, ?2, ?3, ?4)";

fn bare_insert(c: &Connection, content: &str, importance: f64, created: i64) {
    c.prepare_cached(BARE_INSERT)
        .and_then(|mut s| s.execute(params![importance, created, content.len() as i64, content]))
        .expect("bare insert");
}

fn bare_preloaded(path: &Path, pairs: &[(String, f64)]) -> Connection {
    let mut c = bare_db(path);
    let tx = c.transaction().expect("tx");
    for (i, (content, imp)) in pairs.iter().enumerate() {
        bare_insert(
            &tx,
            content,
            *imp,
            PRELOAD_EPOCH_MICROS + i as i64 * 1_000_000,
        );
    }
    tx.commit().expect("commit");
    c
}

// ---------------------------------------------------------------- W1 memory_add

fn w1(b: &mut Bench) {
    let sizes: &[usize] = if b.config.quick {
        &[10_000]
    } else {
        &[10_000, 100_000]
    };
    let all = memory_pairs(101, *sizes.iter().max().unwrap_or(&10_000), &b.vocab);
    let now = || chrono::Utc::now().timestamp_micros();

    // Warm-up: 2,000 adds on a throwaway agent, and as many bare inserts.
    let warm = open_store(&b.db_path());
    let wm = warm.memory(&warm.agent("warm").expect("agent"));
    let bare_warm = bare_db(&b.db_path());
    for (c, imp) in &all[..2000] {
        wm.add(c, *imp).expect("add");
        bare_insert(&bare_warm, c, *imp, now());
    }

    let mut ratios = serde_json::Map::new();
    for &n in sizes {
        let pairs = &all[..n];
        let p = json!({ "N": n });

        // (a) throughput, a transaction per add.
        let store = open_store(&b.db_path());
        let memory = store.memory(&store.agent("a").expect("agent"));
        let t = Instant::now();
        for (c, imp) in pairs {
            memory.add(c, *imp).expect("add");
        }
        let add_secs = t.elapsed().as_secs_f64();
        let entries = memory.stats().expect("stats").total_entries;
        b.row(
            "W1_memory_add",
            "agentstore",
            "add_throughput",
            p.clone(),
            throughput(n, add_secs),
            json!({ "throughput_per_s": n as f64 / add_secs, "entries_after": entries }),
        );

        let bare = bare_db(&b.db_path());
        let t = Instant::now();
        for (c, imp) in pairs {
            bare_insert(&bare, c, *imp, now());
        }
        let bare_secs = t.elapsed().as_secs_f64();
        b.row(
            "W1_memory_add",
            "bare_sqlite",
            "insert_throughput",
            p.clone(),
            throughput(n, bare_secs),
            json!({ "throughput_per_s": n as f64 / bare_secs }),
        );

        // (b) latency, per-op clock, a second fresh agent.
        let store = open_store(&b.db_path());
        let memory = store.memory(&store.agent("b").expect("agent"));
        let lat = per_op(pairs, |(c, imp)| {
            memory.add(c, *imp).expect("add");
        });
        b.row(
            "W1_memory_add",
            "agentstore",
            "add_latency",
            p.clone(),
            summarize(&lat),
            json!({}),
        );
        let bare = bare_db(&b.db_path());
        let bare_lat = per_op(pairs, |(c, imp)| bare_insert(&bare, c, *imp, now()));
        b.row(
            "W1_memory_add",
            "bare_sqlite",
            "insert_latency",
            p.clone(),
            summarize(&bare_lat),
            json!({}),
        );

        // add_many: all N in one transaction, against the same rows in one transaction.
        let store = open_store(&b.db_path());
        let memory = store.memory(&store.agent("c").expect("agent"));
        let t = Instant::now();
        memory.add_many(pairs).expect("add_many");
        let many_secs = t.elapsed().as_secs_f64();
        b.row(
            "W1_memory_add",
            "agentstore",
            "add_many_throughput",
            p.clone(),
            throughput(n, many_secs),
            json!({ "throughput_per_s": n as f64 / many_secs,
                      "entries_after": memory.stats().expect("stats").total_entries }),
        );
        let mut bare = bare_db(&b.db_path());
        let t = Instant::now();
        let tx = bare.transaction().expect("tx");
        for (c, imp) in pairs {
            bare_insert(&tx, c, *imp, now());
        }
        tx.commit().expect("commit");
        let batch_secs = t.elapsed().as_secs_f64();
        b.row(
            "W1_memory_add",
            "bare_sqlite",
            "insert_batched_throughput",
            p.clone(),
            throughput(n, batch_secs),
            json!({ "throughput_per_s": n as f64 / batch_secs }),
        );

        // Like for like: the same rows in one transaction with the original's cleanup
        // every 100 messages done as a plain DELETE (no triggers, no cap, no budget).
        let mut bare = bare_db(&b.db_path());
        let t = Instant::now();
        let tx = bare.transaction().expect("tx");
        let mut count = 0i64;
        for (i, (c, imp)) in pairs.iter().enumerate() {
            if (i + 1) % 100 == 0 {
                let keep = (count as f64 * 0.7).floor() as i64;
                if keep > 0 {
                    tx.prepare_cached(
                        "DELETE FROM m WHERE id IN (SELECT id FROM m WHERE agent_id = 1 \
                         ORDER BY importance, created_at, id LIMIT ?1)",
                    )
                    .and_then(|mut s| s.execute([count - keep]))
                    .expect("bare cleanup");
                    count = keep;
                }
            }
            bare_insert(&tx, c, *imp, now());
            count += 1;
        }
        tx.commit().expect("commit");
        let retained_secs = t.elapsed().as_secs_f64();
        b.row(
            "W1_memory_add",
            "bare_sqlite",
            "insert_batched_with_cleanup",
            p.clone(),
            throughput(n, retained_secs),
            json!({ "throughput_per_s": n as f64 / retained_secs, "entries_after": count }),
        );

        ratios.insert(
            format!("N={n}"),
            json!({
                "add_many_vs_bare_batched_with_cleanup_rate": retained_secs / many_secs,
                "add_vs_bare_insert_rate": bare_secs / add_secs,
                "add_latency_median_vs_bare": median(&lat) / median(&bare_lat),
                "add_many_vs_bare_batched_rate": batch_secs / many_secs,
            }),
        );
    }
    b.summary("W1_memory_add", Value::Object(ratios));
}

// ---------------------------------------------------------------- W2 memory_cleanup

fn w2(b: &mut Bench) {
    let sizes: &[usize] = if b.config.quick {
        &[10_000]
    } else {
        &[10_000, 100_000]
    };
    let (warmups, timed) = if b.config.quick { (1, 3) } else { (1, 7) };
    let all = memory_pairs(201, *sizes.iter().max().unwrap_or(&10_000), &b.vocab);
    let mut ratios = serde_json::Map::new();
    for &n in sizes {
        let pairs = &all[..n];
        let p = json!({ "N": n });
        let mut ours = Vec::new();
        let mut bare = Vec::new();
        let mut kept = 0;
        for rep in 0..warmups + timed {
            // Rebuilt before each rep, untimed.
            let path = b.db_path();
            let (_store, memory) = preloaded_store(&path, pairs);
            let t = Instant::now();
            memory.cleanup().expect("cleanup");
            let us = t.elapsed().as_nanos() as f64 / 1000.0;
            kept = memory.stats().expect("stats").total_entries;
            drop(memory);
            drop(_store);
            let _ = std::fs::remove_file(&path);

            let bpath = b.db_path();
            let c = bare_preloaded(&bpath, pairs);
            let keep = (n as f64 * 0.7).floor() as i64;
            let t = Instant::now();
            c.execute(
                "DELETE FROM m WHERE agent_id = 1 AND id NOT IN (SELECT id FROM m WHERE agent_id = 1 \
                 ORDER BY importance DESC, created_at DESC LIMIT ?1)",
                [keep],
            )
            .expect("bare delete");
            let bus = t.elapsed().as_nanos() as f64 / 1000.0;
            drop(c);
            let _ = std::fs::remove_file(&bpath);
            if rep >= warmups {
                ours.push(us);
                bare.push(bus);
            }
        }
        let per_s = |v: &[f64]| n as f64 / (median(v) / 1e6);
        b.row(
            "W2_memory_cleanup",
            "agentstore",
            "cleanup",
            p.clone(),
            summarize(&ours),
            json!({ "entries_after": kept, "throughput_entries_per_s": per_s(&ours) }),
        );
        b.row(
            "W2_memory_cleanup",
            "bare_sqlite",
            "delete_not_in_top",
            p.clone(),
            summarize(&bare),
            json!({ "throughput_entries_per_s": per_s(&bare) }),
        );
        ratios.insert(
            format!("N={n}"),
            json!({ "cleanup_median_vs_bare": median(&ours) / median(&bare) }),
        );
    }
    b.summary("W2_memory_cleanup", Value::Object(ratios));
}

// ---------------------------------------------------------------- W3 compressed_context

/// The reference: score every entry in Rust, sort, pack greedily (as the original).
fn reference_context(pairs: &[(String, f64)], max_chars: usize) -> Vec<usize> {
    let n = pairs.len() as i64;
    let span = (n - 1) * 1_000_000;
    let mut idx: Vec<usize> = (0..pairs.len()).collect();
    let score = |i: usize| {
        let rec = if span == 0 {
            1.0
        } else {
            1.0 - ((n - 1 - i as i64) * 1_000_000) as f64 / span as f64
        };
        0.7 * pairs[i].1 + 0.3 * rec
    };
    idx.sort_by(|&a, &b| score(b).total_cmp(&score(a)).then(b.cmp(&a)));
    let mut used = 0;
    let mut chosen = Vec::new();
    for i in idx {
        let len = pairs[i].0.chars().count();
        if used + len > max_chars {
            break;
        }
        used += len;
        chosen.push(i);
    }
    chosen.sort_unstable();
    chosen
}

fn w3(b: &mut Bench) {
    let sizes: &[usize] = if b.config.quick {
        &[1_000, 10_000]
    } else {
        &[1_000, 10_000, 100_000]
    };
    let all = memory_pairs(201, *sizes.iter().max().unwrap_or(&1_000), &b.vocab);
    let mut ratios = serde_json::Map::new();
    for &n in sizes {
        let pairs = &all[..n];
        let p = json!({ "N": n });
        let (_store, memory) = preloaded_store(&b.db_path(), pairs);
        let mut text = String::new();
        let ours = reps(2, 20, || text = memory.context(2000).expect("context").text);
        let want: Vec<&str> = reference_context(pairs, 2000)
            .iter()
            .map(|&i| pairs[i].0.as_str())
            .collect();
        let got: Vec<&str> = text.lines().filter(|l| !l.starts_with("[...")).collect();
        let same = got == want;
        assert!(
            same,
            "W3 N={n}: the packed entries differ from the reference"
        );
        b.row("W3_compressed_context", "agentstore", "context_2000", p.clone(), summarize(&ours),
              json!({ "entries_packed": got.len(), "context_chars": text.len(), "same_entries_as_reference": same }));

        // Bare: score every row in SQL and pack the top ones.
        let c = bare_preloaded(&b.db_path(), pairs);
        let span = ((n - 1) * 1_000_000) as f64;
        let newest = PRELOAD_EPOCH_MICROS + (n as i64 - 1) * 1_000_000;
        let bare = reps(2, 20, || {
            let mut stmt = c
                .prepare_cached(
                    "SELECT content FROM m WHERE agent_id = 1 ORDER BY \
                     0.7 * importance + 0.3 * (1.0 - (?1 - created_at) / ?2) DESC LIMIT 64",
                )
                .expect("prepare");
            let mut rows = stmt.query(params![newest, span]).expect("query");
            let mut used = 0;
            while let Some(r) = rows.next().expect("row") {
                let s: String = r.get(0).expect("content");
                if used + s.len() > 2000 {
                    break;
                }
                used += s.len();
            }
        });
        b.row(
            "W3_compressed_context",
            "bare_sqlite",
            "score_every_row",
            p.clone(),
            summarize(&bare),
            json!({}),
        );
        ratios.insert(format!("N={n}"), json!({ "context_median_us": median(&ours),
                                                "context_median_vs_bare": median(&ours) / median(&bare) }));
    }
    b.summary("W3_compressed_context", Value::Object(ratios));
}

// ---------------------------------------------------------------- W4 memory_stats

fn w4(b: &mut Bench) {
    let sizes: &[(usize, usize)] = if b.config.quick {
        &[(1_000, 50), (10_000, 20)]
    } else {
        &[(1_000, 200), (10_000, 50), (100_000, 15)]
    };
    let all = memory_pairs(
        201,
        sizes.iter().map(|s| s.0).max().unwrap_or(1_000),
        &b.vocab,
    );
    let mut ratios = serde_json::Map::new();
    for &(n, timed) in sizes {
        let pairs = &all[..n];
        let p = json!({ "N": n });
        let (_store, memory) = preloaded_store(&b.db_path(), pairs);
        let ours = reps(2, timed, || {
            memory.stats().expect("stats");
        });
        b.row(
            "W4_memory_stats",
            "agentstore",
            "stats",
            p.clone(),
            summarize(&ours),
            json!({}),
        );
        let c = bare_preloaded(&b.db_path(), pairs);
        let bare = reps(2, timed, || {
            c.prepare_cached(
                "SELECT count(*), sum(size_bytes), avg(importance), min(created_at), max(created_at) \
                 FROM m WHERE agent_id = 1",
            )
            .and_then(|mut s| s.query_row([], |r| r.get::<_, i64>(0)))
            .expect("bare stats");
        });
        b.row(
            "W4_memory_stats",
            "bare_sqlite",
            "aggregate_scan",
            p.clone(),
            summarize(&bare),
            json!({}),
        );
        ratios.insert(format!("N={n}"), json!({ "stats_median_us": median(&ours),
                                                "stats_median_vs_bare": median(&ours) / median(&bare) }));
    }
    b.summary("W4_memory_stats", Value::Object(ratios));
}

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
    let config = parse_args();
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
    let workloads: [(&str, Workload); 4] = [("W1", w1), ("W2", w2), ("W3", w3), ("W4", w4)];
    for (name, run) in workloads {
        if b.wants(name) {
            run(&mut b);
        }
    }
    let doc = json!({
        "schema": "peers-bench/1",
        "started_utc": started.to_rfc3339(),
        "total_runtime_s": clock.elapsed().as_secs_f64(),
        "config": { "quick": b.config.quick, "workloads": b.config.workloads },
        "seeds": { "W1": 101, "W2-W4": 201, "vocab": 1 },
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
