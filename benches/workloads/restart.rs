//! W10 restart: a fresh process opens a store left by an earlier one (100,000 cached
//! responses, W7's data, plus memory, tool results with their expiry times and a
//! response log) and does one lookup. The bench binary runs itself as the child
//! (`--w10-child KIND DB`), so the timed process is a real new process; the child
//! times open + first lookup itself and the parent times spawn to exit.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::data::{SplitMix64, prompt_pairs};
use agentstore::agent::{Agent, AgentConfig, SimulatedClient};
use agentstore::{LoggedResponse, Outcome, ResponseTimeStats, Store, StoreOptions};
use rusqlite::{Connection, OpenFlags, OptionalExtension};
use serde_json::{Value, json};

use crate::harness::{Bench, summarize};

/// The first W7 hit prompt (seed 702 over the pairs of seed 701).
fn probe(pairs: &[(String, String)]) -> &(String, String) {
    let mut seed = SplitMix64::new(702);
    &pairs[seed.below(pairs.len() as u64) as usize]
}

/// The child: `KIND` is `store` (Store::open + exact lookup; `survival` also reports
/// what it found, untimed), `agent` (a tokio runtime,
/// Agent::open and process_message, a cache hit) or `bare` (rusqlite open + the same
/// primary-key read). Prints one JSON line.
pub fn child(kind: &str, db: &str, prompt: &str) {
    let t = Instant::now();
    let (response, survival) = match kind {
        "store" | "survival" => {
            let store = open(db);
            let agent = store.existing_agent("bench").expect("agent");
            let hit = store
                .response_cache(&agent)
                .lookup_exact(prompt)
                .expect("lookup")
                .expect("hit");
            let elapsed = t.elapsed();
            let survived = match kind {
                "survival" => survival(&store),
                _ => Value::Null,
            };
            (hit.response, Some((elapsed, survived)))
        }
        "agent" => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            let store = open(db);
            let reply = rt.block_on(async {
                let config = AgentConfig::new(SimulatedClient::instant(1));
                let agent = Agent::open(&store, "bench", config).await.expect("agent");
                agent
                    .responder()
                    .process_message(prompt)
                    .await
                    .expect("hit")
            });
            assert_eq!(reply.outcome, Outcome::Exact);
            (reply.response, Some((t.elapsed(), Value::Null)))
        }
        "bare_pg" => {
            // `db` is the server's URL and `?schema=NAME`.
            let (url, schema) = db.split_once("?schema=").expect("a schema");
            let schema = schema.split('&').next().expect("a schema");
            let mut c = postgres::Client::connect(url, postgres::NoTls).expect("bare connect");
            let select = c
                .prepare(&format!(
                    "SELECT response FROM {schema}.response_cache \
                     WHERE agent_id = 1 AND message_hash = $1"
                ))
                .expect("prepare");
            let hash = blake3::hash(prompt.as_bytes());
            let row = c
                .query_one(&select, &[&&hash.as_bytes()[..]])
                .expect("bare hit");
            (row.get(0), Some((t.elapsed(), Value::Null)))
        }
        _ => {
            let c = Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_WRITE)
                .expect("bare open");
            c.pragma_update(None, "journal_mode", "wal").expect("wal");
            let hash = blake3::hash(prompt.as_bytes());
            let response: String = c
                .query_row(
                    "SELECT response FROM response_cache WHERE agent_id = 1 AND message_hash = ?1",
                    [&hash.as_bytes()[..]],
                    |r| r.get(0),
                )
                .optional()
                .expect("bare lookup")
                .expect("bare hit");
            (response, Some((t.elapsed(), Value::Null)))
        }
    };
    let (elapsed, survival) = survival.expect("timed");
    println!(
        "{}",
        json!({
            "open_lookup_us": elapsed.as_secs_f64() * 1e6,
            "response_len": response.len(),
            "survival": survival,
        })
    );
}

/// The existing store at `db`: a path, or a `postgres://` URL.
fn open(db: &str) -> Store {
    if db.starts_with("postgres") {
        Store::connect(db, StoreOptions::existing()).expect("connect")
    } else {
        Store::open(db, StoreOptions::existing()).expect("open")
    }
}

/// What a new process finds in the store.
fn survival(store: &Store) -> Value {
    let agent = store.existing_agent("bench").expect("agent");
    let tools = store.tool_cache(&agent).stats().expect("tool stats");
    let listed = store
        .tool_results()
        .list(
            &agentstore::CacheFilter {
                scope: Some(agent.tool_scope.clone()),
                ..Default::default()
            },
            1,
        )
        .expect("list");
    let logged = match store.response_cache(&agent).time_stats().expect("stats") {
        ResponseTimeStats::Data(f) => f.total_responses,
        ResponseTimeStats::NoData => 0,
    };
    json!({
        "memory_entries": agent.memory_entries,
        "tool_cache_entries": tools.cache_size,
        "tool_result_expires_at": listed.first().map(|r| r.expires_at),
        "response_cache_entries": store.response_cache(&agent).entries().expect("entries"),
        "logged_responses": logged,
        "target_response_time": agent.target_response_time,
    })
}

fn run_child(kind: &str, db: &str, prompt: &str) -> (f64, Value) {
    let exe = std::env::current_exe().expect("bench binary");
    let t = Instant::now();
    let out = Command::new(exe)
        .args(["--w10-child", kind])
        .arg(db)
        .arg(prompt)
        .output()
        .expect("spawn child");
    let wall_us = t.elapsed().as_secs_f64() * 1e6;
    assert!(
        out.status.success(),
        "child failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line: Value = serde_json::from_slice(&out.stdout).expect("child JSON");
    (wall_us, line)
}

pub fn w10(b: &mut Bench) {
    let path = b.db_path();
    let store = Store::open(&path, StoreOptions::default()).expect("open");
    measure(b, store, path.to_str().expect("a UTF-8 path"), "bare");
}

/// W10 on the store at `db` (left empty by `store`, which is dropped once loaded):
/// `bare` is the child kind of the bare baseline (`bare` or `bare_pg`).
pub fn measure(b: &mut Bench, store: Store, db: &str, bare: &str) {
    let r = if b.config.quick { 10_000 } else { 100_000 };
    let procs = 7;
    let pairs = prompt_pairs(701, r, &b.vocab);
    let start_micros;
    {
        let agent = store.agent("bench").expect("agent");
        for chunk in pairs.chunks(10_000) {
            store
                .response_cache(&agent)
                .put_many(chunk)
                .expect("preload");
        }
        let memory = store.memory(&agent);
        let items: Vec<(String, f64)> = (0..500)
            .map(|i| (format!("remembered fact {i}"), (i % 10) as f64 / 10.0))
            .collect();
        memory.add_many(&items).expect("memory");
        let tools = store.tool_cache(&agent);
        for i in 0..100 {
            let params = json!({ "q": format!("query {i}") });
            tools
                .put(
                    "search",
                    &params,
                    &json!({"hits": i}),
                    Duration::from_secs(3600),
                )
                .expect("tool put");
        }
        start_micros = store.now_micros();
        let log: Vec<LoggedResponse> = (0..1000)
            .map(|i| LoggedResponse {
                at: start_micros + i,
                duration: 0.001 * (i % 50) as f64,
                outcome: Outcome::Exact,
            })
            .collect();
        store
            .response_cache(&agent)
            .record(&[], &log, 100_000)
            .expect("log");
        store.checkpoint().expect("checkpoint");
        drop(store);
    }
    let (prompt, expected) = probe(&pairs);
    let p = json!({ "R": r });
    let mut ratios = serde_json::Map::new();
    let survival;
    let mut medians = std::collections::HashMap::new();
    let pg = bare == "bare_pg";
    let suffix = if pg { "_pg" } else { "" };
    for (kind, peer, case) in [
        ("store", "agentstore", "open_and_first_lookup"),
        ("agent", "agentstore", "runtime_agent_open_and_first_hit"),
        (bare, "bare_sqlite", "open_and_pk_lookup"),
    ] {
        let peer = match (pg, peer) {
            (true, "agentstore") => "agentstore_pg",
            (true, _) => "bare_postgres",
            _ => peer,
        };
        let case = format!("{case}{suffix}");
        let case = case.as_str();
        run_child(kind, db, prompt); // warm-up process
        let (mut inside, mut wall) = (Vec::new(), Vec::new());
        for _ in 0..procs {
            let (w, line) = run_child(kind, db, prompt);
            assert_eq!(line["response_len"], expected.len());
            inside.push(line["open_lookup_us"].as_f64().expect("timed"));
            wall.push(w);
        }
        let wall_summary = summarize(&wall);
        medians.insert(
            kind,
            (
                crate::harness::median(&inside),
                crate::harness::median(&wall),
            ),
        );
        b.row(
            "W10_restart",
            peer,
            case,
            p.clone(),
            summarize(&inside),
            json!({ "process_wall_us": wall_summary, "processes": procs }),
        );
    }
    let (_, line) = run_child("survival", db, prompt);
    survival = line["survival"].clone();
    let (store_in, store_wall) = medians["store"];
    let (bare_in, bare_wall) = medians[bare];
    ratios.insert("open_lookup_vs_bare".into(), json!(store_in / bare_in));
    ratios.insert("process_vs_bare".into(), json!(store_wall / bare_wall));
    let checked = pairs.len().min(100);
    b.summary(
        if pg { "PG_W10_restart" } else { "W10_restart" },
        json!({
            "R": r,
            "open_lookup_median_us": store_in,
            "process_median_us": store_wall,
            "agent_open_first_hit_median_us": medians["agent"].0,
            "targets": { "open_lookup_us": 2000, "process_us": 10000 },
            "ratios": ratios,
            "survived": survival,
            "known_prompts_checked": checked,
        }),
    );
}
