//! The PostgreSQL engine against a real server (see `postgres.rs` for where it comes
//! from): memory behaves as on SQLite (random operation sequences run on both engines
//! and compared), schema creation by 16 processes at once, newer and foreign schemas
//! refused untouched, `--no-migrate`, NUL bytes refused before writing, concurrent
//! writers on several agents, and the CLI and the MCP server on a `postgres://` URL.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use agentstore::{
    Clock, ForgetTarget, ListOrder, ManualClock, MemorySettings, Prune, Role, SearchOptions, Store,
    StoreOptions,
};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

use crate::common::{TempDb, TestResult};
use crate::postgres::Server;

/// A fresh schema name per call, so each case starts from nothing.
fn schema() -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "t{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

fn pg_store(server: &Server, schema: &str, clock: &ManualClock) -> agentstore::Result<Store> {
    Store::connect(
        &format!("{}?schema={schema}", server.url()),
        StoreOptions::default().with_shared_clock(Arc::new(clock.clone()) as Arc<dyn Clock>),
    )
}

/// As [`pg_store`], with prepared statements kept per connection (`?prepare=true`)
/// every other call: both statement paths run every sequence.
fn pg_store_either(
    server: &Server,
    schema: &str,
    clock: &ManualClock,
) -> agentstore::Result<Store> {
    static N: AtomicUsize = AtomicUsize::new(0);
    let prepare = N.fetch_add(1, Ordering::SeqCst) % 2 == 1;
    Store::connect(
        &format!("{}?schema={schema}&prepare={prepare}", server.url()),
        StoreOptions::default().with_shared_clock(Arc::new(clock.clone()) as Arc<dyn Clock>),
    )
}

/// One operation of a random sequence.
#[derive(Debug, Clone)]
enum Op {
    Add(u8, usize, u8),
    AddMany(Vec<(u8, usize, u8)>),
    Rate(i64, u8),
    Forget(Vec<i64>),
    ForgetMatching(usize),
    Prune(u8, u8),
    Cleanup,
    Wait(u16),
}

const WORDS: [&str; 12] = [
    "tide", "harbor", "metric", "units", "rate", "limit", "paris", "otter", "heron", "kelp",
    "reef", "storm",
];

fn content(i: usize) -> String {
    // 2 to 5 words, deterministic from i; sizes vary so the byte budget bites.
    let n = 2 + i % 4;
    (0..n)
        .map(|k| WORDS[(i * 7 + k * 5) % WORDS.len()])
        .collect::<Vec<_>>()
        .join(" ")
        + &"!".repeat(i % 9)
}

fn role(r: u8) -> Role {
    Role::ALL[r as usize % Role::ALL.len()]
}

fn importance(i: u8) -> f64 {
    f64::from(i % 11) / 10.0
}

fn op() -> impl Strategy<Value = Op> {
    let item = (any::<u8>(), 0usize..200, any::<u8>());
    prop_oneof![
        6 => item.clone().prop_map(|(r, c, i)| Op::Add(r, c, i)),
        1 => proptest::collection::vec(item, 1..12).prop_map(Op::AddMany),
        1 => (1i64..60, any::<u8>()).prop_map(|(id, i)| Op::Rate(id, i)),
        1 => proptest::collection::vec(1i64..60, 1..3).prop_map(Op::Forget),
        1 => (0usize..WORDS.len()).prop_map(Op::ForgetMatching),
        1 => (0u8..4, any::<u8>()).prop_map(|(k, v)| Op::Prune(k, v)),
        1 => Just(Op::Cleanup),
        2 => (1u16..5000).prop_map(Op::Wait),
    ]
}

/// Applies `op` to one store's memory; what it returned, as text to compare.
fn apply(store: &Store, clock: &ManualClock, op: &Op) -> String {
    let agent = store.existing_agent("bot").expect("agent");
    let memory = store.memory(&agent);
    match op {
        Op::Add(r, c, i) => format!(
            "{:?}",
            memory.add_as(role(*r), &content(*c), importance(*i))
        ),
        Op::AddMany(items) => {
            let items: Vec<(Role, String, f64)> = items
                .iter()
                .map(|(r, c, i)| (role(*r), content(*c), importance(*i)))
                .collect();
            format!("{:?}", memory.add_many_as(&items))
        }
        Op::Rate(id, i) => format!("{:?}", memory.rate(*id, importance(*i))),
        Op::Forget(ids) => format!(
            "{:?}",
            memory
                .forget(&ForgetTarget::Ids(ids.clone()), false)
                .map(|r| r.entries)
                .map_err(|e| e.to_string())
        ),
        Op::ForgetMatching(w) => format!(
            "{:?}",
            memory
                .forget(&ForgetTarget::Matching(WORDS[*w].into()), false)
                .map(|r| r.entries)
        ),
        Op::Prune(kind, v) => {
            let rule = match kind {
                0 => Prune::KeepFraction(f64::from(*v % 11) / 10.0),
                1 => Prune::MinImportance(importance(*v)),
                2 => Prune::OlderThan(Duration::from_secs(u64::from(*v) * 10)),
                _ => Prune::MaxBytes(u64::from(*v) * 4),
            };
            format!(
                "{:?}",
                memory
                    .prune(rule, false)
                    .map(|r| (r.removed_entries, r.removed_bytes))
            )
        }
        Op::Cleanup => format!("{:?}", memory.cleanup()),
        Op::Wait(s) => {
            clock.advance(Duration::from_secs(u64::from(*s)));
            String::new()
        }
    }
}

/// Everything observable about the agent's memory, as text to compare.
fn observe(store: &Store) -> String {
    let agent = store.existing_agent("bot").expect("agent");
    let memory = store.memory(&agent);
    let mut out = format!(
        "messages {} entries {} bytes {}\n",
        agent.message_count, agent.memory_entries, agent.memory_bytes
    );
    out += &format!("{:?}\n", memory.list(ListOrder::Time, 1000).expect("list"));
    out += &format!(
        "{:?}\n",
        memory.list(ListOrder::Importance, 7).expect("list")
    );
    // The mean importance comes from a kept sum, whose last bits depend on the order
    // of the additions (per row on SQLite, per statement on PostgreSQL).
    let s = memory.stats().expect("stats");
    let round = |x: Option<f64>| x.map(|v| (v * 1e9).round() / 1e9);
    out += &format!(
        "{} {} {:?} {:?} {:?} {:?}\n",
        s.total_entries,
        s.total_memory_mb,
        round(s.avg_importance_score),
        round(s.memory_utilization_pct),
        s.oldest_entry_age_hours,
        s.memory_span_hours
    );
    for budget in [0, 10, 45, 200, 100_000] {
        out += &format!("{:?}\n", memory.context(budget).expect("context"));
    }
    for word in ["tide", "otter", "storm"] {
        // Which entries match (the scores are each engine's own: BM25, ts_rank).
        let mut ids: Vec<i64> = memory
            .search(word, &SearchOptions::default().with_limit(1000))
            .expect("search")
            .iter()
            .map(|h| h.id)
            .collect();
        ids.sort_unstable();
        out += &format!("{word}: {ids:?}\n");
    }
    out
}

#[test]
fn memory_on_postgres_behaves_as_on_sqlite() -> TestResult {
    let Some(server) = crate::postgres::server() else {
        return Ok(());
    };
    let settings = MemorySettings::default()
        .with_cleanup_interval(7)
        .with_max_entries(25)
        .with_max_memory_mb(400.0 / 1_048_576.0);
    side_by_side(&server, op(), Some(&settings), apply, observe)
}

/// Runs random sequences of `ops` on an SQLite store and a PostgreSQL one (one agent
/// `bot`, `settings` if given, one manual clock): every result of `apply`, and what
/// `observe` sees at the end, must be equal.
fn side_by_side<O: std::fmt::Debug>(
    server: &Server,
    ops: impl Strategy<Value = O>,
    settings: Option<&MemorySettings>,
    apply: fn(&Store, &ManualClock, &O) -> String,
    observe: fn(&Store) -> String,
) -> TestResult {
    let mut runner = TestRunner::new(Config {
        cases: 24,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&proptest::collection::vec(ops, 1..40), |ops| {
            let clock = ManualClock::new(1_700_000_000_000_000);
            let db = TempDb::new();
            let sqlite = Store::open(
                &db.path,
                StoreOptions::default()
                    .with_shared_clock(Arc::new(clock.clone()) as Arc<dyn Clock>),
            )
            .expect("sqlite");
            let pg = pg_store_either(server, &schema(), &clock).expect("postgres");
            for store in [&sqlite, &pg] {
                store.agent("bot").expect("agent");
                if let Some(settings) = settings {
                    store
                        .set_memory_settings("bot", settings)
                        .expect("settings");
                }
            }
            for op in &ops {
                let a = apply(&sqlite, &clock, op);
                let b = apply(&pg, &clock, op);
                prop_assert_eq!(a, b, "after {:?}", op);
            }
            prop_assert_eq!(observe(&sqlite), observe(&pg));
            Ok(())
        })
        .map_err(|e| format!("{e}"))?;
    Ok(())
}

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_agentstore")
}

#[test]
fn sixteen_processes_create_one_schema_at_once() -> TestResult {
    let Some(server) = crate::postgres::server() else {
        return Ok(());
    };
    let url = format!("{}?schema=fleet", server.url());
    let children: Vec<_> = (0..16)
        .map(|i| {
            Command::new(bin())
                .args([
                    "--db",
                    &url,
                    "memory",
                    "add",
                    "--agent",
                    &format!("a{}", i % 4),
                    "hello",
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn")
        })
        .collect();
    for child in children {
        let out = child.wait_with_output()?;
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let mut c = crate::postgres::client(&server);
    let versions: i64 = c
        .query_one("SELECT count(*) FROM fleet.agentstore_schema", &[])?
        .get(0);
    assert_eq!(versions, 1);
    let entries: i64 = c
        .query_one("SELECT count(*) FROM fleet.memory_entries", &[])?
        .get(0);
    assert_eq!(entries, 16);
    Ok(())
}

#[test]
fn foreign_newer_and_missing_schemas_are_refused_untouched() -> TestResult {
    let Some(server) = crate::postgres::server() else {
        return Ok(());
    };
    let mut c = crate::postgres::client(&server);
    c.batch_execute(
        "CREATE SCHEMA theirs; CREATE TABLE theirs.agents (x int);
         CREATE SCHEMA newer; CREATE TABLE newer.agentstore_schema (application text, version int);
         INSERT INTO newer.agentstore_schema VALUES ('agentstore', 99);",
    )?;
    let open = |schema: &str, options: StoreOptions| {
        Store::connect(&format!("{}?schema={schema}", server.url()), options)
    };
    let err = open("theirs", StoreOptions::default())
        .map(|_| ())
        .expect_err("refused");
    assert!(
        err.to_string().contains("not an agentstore schema"),
        "{err}"
    );
    let err = open("newer", StoreOptions::default())
        .map(|_| ())
        .expect_err("refused");
    assert!(err.to_string().contains("newer agentstore"), "{err}");
    // Untouched: still one table each, the version row as it was.
    let tables: i64 = c
        .query_one(
            "SELECT count(*) FROM pg_tables WHERE schemaname IN ('theirs', 'newer')",
            &[],
        )?
        .get(0);
    assert_eq!(tables, 2);
    // Without migration, a missing schema is refused and not created; `init` creates it.
    let err = open("manual", StoreOptions::default().with_migrate(false))
        .map(|_| ())
        .expect_err("refused");
    assert!(err.to_string().contains("agentstore init"), "{err}");
    let err = open("manual", StoreOptions::existing())
        .map(|_| ())
        .expect_err("refused");
    assert!(err.to_string().contains("no agentstore database"), "{err}");
    let exists: i64 = c
        .query_one(
            "SELECT count(*) FROM pg_namespace WHERE nspname = 'manual'",
            &[],
        )?
        .get(0);
    assert_eq!(exists, 0);
    let url = format!("{}?schema=manual", server.url());
    let out = Command::new(bin())
        .args([
            "--db",
            &url,
            "--no-migrate",
            "memory",
            "add",
            "--agent",
            "a",
            "x",
        ])
        .output()?;
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("agentstore init"));
    let out = Command::new(bin())
        .args(["--db", &url, "--no-migrate", "init"])
        .output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("created"));
    let out = Command::new(bin())
        .args(["--db", &url, "--no-migrate", "init"])
        .output()?;
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("checked"));
    open("manual", StoreOptions::default().with_migrate(false))?;
    Ok(())
}

/// The functions of schema 6, as `schema-postgres-functions.sql` creates them, sorted.
fn functions_of_the_file() -> Vec<String> {
    let mut names: Vec<String> = include_str!("../../schema-postgres-functions.sql")
        .lines()
        .filter_map(|l| l.strip_prefix("CREATE OR REPLACE FUNCTION "))
        .map(|rest| rest.split('(').next().unwrap_or("").trim().to_string())
        .collect();
    names.sort();
    names
}

#[test]
fn older_schemas_are_upgraded_in_one_step_or_refused_untouched() -> TestResult {
    let Some(server) = crate::postgres::server() else {
        return Ok(());
    };
    let mut c = crate::postgres::client(&server);
    let expected = functions_of_the_file();
    assert_eq!(expected.len(), 6, "{expected:?}");
    let functions = |c: &mut postgres::Client, schema: &str| -> Vec<String> {
        c.query(
            "SELECT p.proname::text FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
              WHERE n.nspname = $1 AND p.proname = ANY($2) ORDER BY 1",
            &[&schema, &expected],
        )
        .expect("functions")
        .iter()
        .map(|r| r.get(0))
        .collect()
    };
    let version = |c: &mut postgres::Client, schema: &str| -> i32 {
        c.query_one(
            &format!("SELECT version FROM {schema}.agentstore_schema"),
            &[],
        )
        .expect("version")
        .get(0)
    };
    // Schema 5 (as an earlier build made it: no functions) and schema 4 (no leases).
    let clock = ManualClock::new(1_700_000_000_000_000);
    for (schema, from) in [("v5", 5), ("v4", 4)] {
        let store = pg_store(&server, schema, &clock)?;
        store
            .memory(&store.agent("bot")?)
            .add("kept across the upgrade", 0.5)?;
        drop(store);
        let mut undo = format!("UPDATE {schema}.agentstore_schema SET version = {from};");
        for f in &expected {
            undo.push_str(&format!("DROP FUNCTION {schema}.{f};"));
        }
        if from == 4 {
            undo.push_str(&format!("DROP TABLE {schema}.leases;"));
        }
        c.batch_execute(&undo)?;
        assert!(functions(&mut c, schema).is_empty());
        if from == 5 {
            // `check` names a missing function (at the version that has them).
            c.batch_execute(&format!(
                "UPDATE {schema}.agentstore_schema SET version = 6"
            ))?;
            let store = pg_store(&server, schema, &clock)?;
            let problems = store.check()?.problems;
            assert!(
                problems
                    .iter()
                    .any(|p| p.contains("function tool_cache_put is missing")),
                "{problems:?}"
            );
            drop(store);
            c.batch_execute(&format!(
                "UPDATE {schema}.agentstore_schema SET version = 5"
            ))?;
        }

        // Without migration: refused, naming the version, and nothing changed.
        let url = format!("{}?schema={schema}", server.url());
        let err = Store::connect(&url, StoreOptions::default().with_migrate(false))
            .map(|_| ())
            .expect_err("refused");
        let text = err.to_string();
        assert!(text.contains(&format!("version {from}")), "{text}");
        assert!(text.contains("agentstore init"), "{text}");
        assert_eq!(version(&mut c, schema), from);
        assert!(functions(&mut c, schema).is_empty());

        // With it: upgraded, the entries kept, and every write works.
        let store = pg_store(&server, schema, &clock)?;
        assert_eq!(
            version(&mut c, schema) as i64,
            agentstore::POSTGRES_SCHEMA_VERSION
        );
        assert_eq!(functions(&mut c, schema), expected);
        let agent = store.existing_agent("bot")?;
        let memory = store.memory(&agent);
        assert_eq!(memory.list(ListOrder::Time, 10)?.len(), 1);
        memory.add("after", 0.5)?;
        assert_eq!(memory.stats()?.total_entries, 2);
        let report = store.check()?;
        assert!(report.problems.is_empty(), "{:?}", report.problems);
    }
    Ok(())
}

#[test]
fn nul_bytes_are_refused_before_anything_is_written() -> TestResult {
    let Some(server) = crate::postgres::server() else {
        return Ok(());
    };
    let clock = ManualClock::new(1_700_000_000_000_000);
    let store = pg_store(&server, "nul", &clock)?;
    let agent = store.agent("bot")?;
    let memory = store.memory(&agent);
    memory.add("fine", 0.5)?;
    let err = memory
        .add_many(&[("ok", 0.5), ("bad\0byte", 0.5)])
        .unwrap_err();
    assert_eq!(err.kind(), agentstore::ErrorKind::InvalidInput, "{err}");
    assert!(err.to_string().contains("NUL byte"), "{err}");
    assert!(store.agent("a\0b").is_err());
    let agent = store.existing_agent("bot")?;
    assert_eq!((agent.message_count, agent.memory_entries), (1, 1));
    Ok(())
}

#[test]
fn writers_of_many_agents_on_postgres_lose_nothing() -> TestResult {
    let Some(server) = crate::postgres::server() else {
        return Ok(());
    };
    let url = format!("{}?schema=writers", server.url());
    let store = Store::connect(&url, StoreOptions::default())?;
    for a in 0..4 {
        store.agent(&format!("a{a}"))?;
        store.set_memory_settings(
            &format!("a{a}"),
            &MemorySettings::default()
                .with_cleanup_interval(10)
                .with_max_entries(30),
        )?;
    }
    drop(store);
    // 8 threads, two per agent, each with its own store (its own pool).
    std::thread::scope(|s| {
        for t in 0..8 {
            let url = url.clone();
            s.spawn(move || {
                let store = Store::connect(&url, StoreOptions::default()).expect("store");
                let agent = store.existing_agent(&format!("a{}", t % 4)).expect("agent");
                let memory = store.memory(&agent);
                for i in 0..60 {
                    memory
                        .add(&format!("thread {t} entry {i}"), f64::from(i % 10) / 10.0)
                        .expect("add");
                }
            });
        }
    });
    let mut c = crate::postgres::client(&server);
    for r in c.query(
        "SELECT c.message_count, c.entries, c.bytes, count(m.id), coalesce(sum(m.size_bytes), 0)::int8
           FROM writers.memory_counters c LEFT JOIN writers.memory_entries m ON m.agent_id = c.agent_id
          GROUP BY c.agent_id, c.message_count, c.entries, c.bytes",
        &[],
    )? {
        let (messages, entries, bytes, real, real_bytes): (i64, i64, i64, i64, i64) =
            (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4));
        assert_eq!(messages, 120, "every add counted");
        assert_eq!((entries, bytes), (real, real_bytes), "counters equal the rows");
        assert!(entries <= 30);
    }
    // Message numbers are unique per agent: no two adds got the same one.
    let dupes: i64 = c
        .query_one(
            "SELECT count(*) FROM (SELECT agent_id, id FROM writers.memory_entries
              GROUP BY agent_id, id HAVING count(*) > 1) d",
            &[],
        )?
        .get(0);
    assert_eq!(dupes, 0);
    Ok(())
}

#[test]
fn the_cli_works_on_a_postgres_url() -> TestResult {
    let Some(server) = crate::postgres::server() else {
        return Ok(());
    };
    let url = format!("{}?schema=cli", server.url());
    let run = |args: &[&str]| {
        Command::new(bin())
            .arg("--db")
            .arg(&url)
            .args(args)
            .output()
            .expect("run")
    };
    for (text, importance) in [
        ("the user prefers metric units", "0.9"),
        ("tides at the harbor", "0.2"),
    ] {
        let out = run(&[
            "memory",
            "add",
            "--agent",
            "bot",
            "--importance",
            importance,
            text,
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = run(&["--json", "memory", "search", "--agent", "bot", "metric"]);
    let hits: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(hits[0]["content"], "the user prefers metric units");
    assert_eq!(hits[0]["snippet"], "the user prefers [metric] units");
    let out = run(&[
        "--json",
        "memory",
        "list",
        "--agent",
        "bot",
        "--order",
        "importance",
    ]);
    let list: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(list.as_array().map(Vec::len), Some(2));
    assert_eq!(list[0]["importance"], 0.9);
    let out = run(&[
        "memory",
        "prune",
        "--agent",
        "bot",
        "--min-importance",
        "0.5",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(&["--json", "memory", "stats", "--agent", "bot"]);
    let stats: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(stats["total_entries"], 1);
    let out = run(&["memory", "forget", "--agent", "bot", "--matching", "metric"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(&["--json", "agents", "list"]);
    let agents: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(agents[0]["name"], "bot");
    // sql reads, and refuses a write in one line, exit 2.
    let out = run(&["--json", "sql", "SELECT name FROM agents"]);
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(rows, serde_json::json!([{ "name": "bot" }]));
    let out = run(&["sql", "DELETE FROM agents"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.starts_with("agentstore: refused"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1);
    Ok(())
}

/// One operation on the response cache, the log or the tool cache.
#[derive(Debug, Clone)]
enum CacheOp {
    Put(usize, usize),
    PutMany(Vec<(usize, usize)>),
    Lookup(usize, bool),
    Hit(usize, u8),
    Log(Vec<(u16, u8)>, u16),
    Tune,
    Purge(u8, u8),
    ToolPut(u8, u8, u16),
    ToolGet(u8, u8),
    ToolCounts(u8, u8),
    ToolPurge(bool),
    Wait(u16),
}

/// Messages from a small vocabulary, so near repeats (fuzzy hits) and negations
/// (the guard) are common.
fn message(i: usize) -> String {
    const M: [&str; 14] = [
        "what is the capital of france",
        "what is the capital of spain",
        "tell me the capital of france please",
        "is the server running",
        "is the server not running",
        "how many units are in stock",
        "how many units are not in stock",
        "how many units are in the stock room",
        "deploy the service to production now",
        "deploy the service to staging now",
        "what time is it in paris",
        "what is the time in paris",
        "show me 3 results",
        "show me 4 results",
    ];
    M[i % M.len()].to_string()
}

fn cache_op() -> impl Strategy<Value = CacheOp> {
    prop_oneof![
        4 => (0usize..14, 0usize..5).prop_map(|(m, r)| CacheOp::Put(m, r)),
        1 => proptest::collection::vec((0usize..14, 0usize..5), 1..6).prop_map(CacheOp::PutMany),
        4 => (0usize..14, any::<bool>()).prop_map(|(m, g)| CacheOp::Lookup(m, g)),
        2 => (0usize..14, 1u8..4).prop_map(|(m, n)| CacheOp::Hit(m, n)),
        3 => (proptest::collection::vec((0u16..4000, 0u8..5), 1..30), 5u16..80)
            .prop_map(|(rows, keep)| CacheOp::Log(rows, keep)),
        1 => Just(CacheOp::Tune),
        1 => (0u8..3, 0u8..8).prop_map(|(k, v)| CacheOp::Purge(k, v)),
        3 => (0u8..3, 0u8..4, 1u16..600).prop_map(|(t, p, ttl)| CacheOp::ToolPut(t, p, ttl)),
        3 => (0u8..3, 0u8..4).prop_map(|(t, p)| CacheOp::ToolGet(t, p)),
        1 => (0u8..3, 0u8..5).prop_map(|(t, n)| CacheOp::ToolCounts(t, n)),
        1 => any::<bool>().prop_map(CacheOp::ToolPurge),
        2 => (1u16..400).prop_map(CacheOp::Wait),
    ]
}

/// A cached response without its id (ids are each engine's: PostgreSQL's sequence
/// skips the values of upserts that updated).
fn shown(m: Option<agentstore::CacheMatch>) -> String {
    match m {
        Some(m) => format!("{:?} {} {} {}", m.kind, m.similarity, m.message, m.response),
        None => "none".into(),
    }
}

fn apply_cache(store: &Store, clock: &ManualClock, op: &CacheOp) -> String {
    use agentstore::{FuzzyOptions, LoggedResponse, Outcome, ResponsePurge};
    let agent = store.existing_agent("bot").expect("agent");
    let responses = store.response_cache(&agent);
    let tools = store.tool_cache(&agent);
    let tool = |t: u8| ["calc", "search", "clock"][t as usize % 3];
    let params = |p: u8| serde_json::json!({ "q": p, "list": [p, "x"] });
    match op {
        CacheOp::Put(m, r) => {
            let id = responses.put(&message(*m), &format!("answer {r}"));
            format!("{:?}", id.map(|_| ()))
        }
        CacheOp::PutMany(pairs) => {
            let pairs: Vec<(String, String)> = pairs
                .iter()
                .map(|(m, r)| (message(*m), format!("answer {r}")))
                .collect();
            format!("{:?}", responses.put_many(&pairs))
        }
        CacheOp::Lookup(m, guard) => {
            let options = FuzzyOptions::default().with_negation_guard(*guard);
            let found = responses
                .lookup_explained(&message(*m), options)
                .expect("lookup");
            // Without the blocked row's id: ids are each engine's (see `shown`).
            let why = match found.no_match {
                Some(agentstore::NoMatch::Guarded {
                    similarity,
                    message,
                    ..
                }) => format!("guarded {similarity} {message}"),
                other => format!("{other:?}"),
            };
            format!("{} / {}", shown(found.found), why)
        }
        CacheOp::Hit(m, n) => {
            let Some(hit) = responses.lookup_exact(&message(*m)).expect("exact") else {
                return "no row".into();
            };
            let at = clock.now_micros();
            format!(
                "{:?}",
                responses.record(&[(hit.id, u64::from(*n), at)], &[], 1000)
            )
        }
        CacheOp::Log(rows, keep) => {
            let outcomes = [
                Outcome::Exact,
                Outcome::Fuzzy,
                Outcome::Generated,
                Outcome::Fallback,
                Outcome::Error,
            ];
            let rows: Vec<LoggedResponse> = rows
                .iter()
                .map(|(ms, o)| LoggedResponse {
                    at: clock.now_micros(),
                    duration: f64::from(*ms) / 1000.0,
                    outcome: outcomes[*o as usize % 5],
                })
                .collect();
            let logged = responses.log(&rows, u64::from(*keep));
            format!("{logged:?} {}", time_stats(&responses))
        }
        CacheOp::Tune => format!("{:?}", responses.tune_target()),
        CacheOp::Purge(kind, v) => {
            let rule = match kind {
                0 => ResponsePurge::Keep(u64::from(*v)),
                1 => ResponsePurge::OlderThan(Duration::from_secs(u64::from(*v) * 60)),
                _ => ResponsePurge::All,
            };
            format!("{:?}", responses.purge(rule, false))
        }
        CacheOp::ToolPut(t, p, ttl) => format!(
            "{:?}",
            tools.put(
                tool(*t),
                &params(*p),
                &serde_json::json!({ "result": p, "t": t }),
                Duration::from_secs(u64::from(*ttl))
            )
        ),
        CacheOp::ToolGet(t, p) => format!("{:?}", tools.get(tool(*t), &params(*p))),
        CacheOp::ToolCounts(t, n) => {
            let counts = agentstore::ToolCounts {
                total_calls: u64::from(*n) + 1,
                cache_hits: u64::from(*n),
                errors: u64::from(*n % 2),
                total_time: f64::from(*n) * 0.25,
            };
            format!("{:?}", tools.add_counts(&[(tool(*t).to_string(), counts)]))
        }
        CacheOp::ToolPurge(all) => {
            let filter = agentstore::CacheFilter {
                scope: None,
                tool: None,
                expired_only: !all,
            };
            format!("{:?}", store.tool_results().purge(&filter, false))
        }
        CacheOp::Wait(s) => {
            clock.advance(Duration::from_secs(u64::from(*s)));
            String::new()
        }
    }
}

/// The response-time stats with the mean rounded: it comes from kept sums whose last
/// bits depend on the order of the additions (per row on SQLite, per statement on
/// PostgreSQL). Everything else is exact on both.
fn time_stats(responses: &agentstore::ResponseCache) -> String {
    match responses.time_stats().expect("stats") {
        agentstore::ResponseTimeStats::Data(mut f) => {
            f.avg_response_time = (f.avg_response_time * 1e9).round() / 1e9;
            format!("{f:?}")
        }
        other => format!("{other:?}"),
    }
}

fn observe_caches(store: &Store) -> String {
    use agentstore::ResponseOrder;
    let agent = store.existing_agent("bot").expect("agent");
    let responses = store.response_cache(&agent);
    let mut out = String::new();
    for order in [ResponseOrder::Recent, ResponseOrder::Hits] {
        for r in responses.list(order, 100).expect("list") {
            out += &format!(
                "{} {} {} {} {}\n",
                r.message, r.response, r.hits, r.created_at, r.last_used_at
            );
        }
    }
    out += &format!("{}\n", time_stats(&responses));
    out += &format!("{:?}\n", responses.target().expect("target"));
    out += &format!(
        "{:?}\n",
        store.tool_cache(&agent).stats().expect("tool stats")
    );
    let filter = agentstore::CacheFilter {
        scope: None,
        tool: None,
        expired_only: false,
    };
    for r in store.tool_results().list(&filter, 100).expect("list") {
        out += &format!(
            "{} {} {} {} {}\n",
            r.key, r.tool, r.params, r.result, r.expires_at
        );
    }
    out
}

#[test]
fn caches_and_the_log_on_postgres_behave_as_on_sqlite() -> TestResult {
    let Some(server) = crate::postgres::server() else {
        return Ok(());
    };
    side_by_side(&server, cache_op(), None, apply_cache, observe_caches)
}

/// `a` and `b` are the same JSON, but for the last bits of floats: each engine's
/// `avg()` (and kept sums) add in their own order.
fn assert_close(a: &serde_json::Value, b: &serde_json::Value) {
    use serde_json::Value;
    match (a, b) {
        (Value::Number(x), Value::Number(y)) if x.is_f64() || y.is_f64() => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            assert!((x - y).abs() <= 1e-12 * x.abs().max(y.abs()), "{x} vs {y}");
        }
        (Value::Array(x), Value::Array(y)) => {
            assert_eq!(x.len(), y.len(), "{a} vs {b}");
            x.iter().zip(y).for_each(|(x, y)| assert_close(x, y));
        }
        (Value::Object(x), Value::Object(y)) => {
            assert_eq!(x.keys().collect::<Vec<_>>(), y.keys().collect::<Vec<_>>());
            x.values()
                .zip(y.values())
                .for_each(|(x, y)| assert_close(x, y));
        }
        _ => assert_eq!(a, b),
    }
}

fn agentstore_at(db: &str, args: &[&str]) -> std::process::Output {
    Command::new(bin())
        .arg("--db")
        .arg(db)
        .args(args)
        .output()
        .expect("run agentstore")
}

fn ok(out: std::process::Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

#[test]
fn the_demo_runs_twice_and_exports_move_between_engines_byte_for_byte() -> TestResult {
    let Some(server) = crate::postgres::server() else {
        return Ok(());
    };
    let pg = format!("{}?schema=demo", server.url());
    let first = ok(agentstore_at(&pg, &["demo", "--simulated-latency", "none"]));
    assert!(first.contains("5. Stats"), "{first}");
    let second = ok(agentstore_at(&pg, &["demo", "--simulated-latency", "none"]));
    assert!(second.contains("100% from the cache"), "{second}");
    ok(agentstore_at(&pg, &["check"]));
    // PostgreSQL -> SQLite -> PostgreSQL: the same bytes each time.
    let exported = ok(agentstore_at(&pg, &["export"]));
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("export.jsonl");
    std::fs::write(&file, &exported)?;
    let sqlite = dir.path().join("copy.db");
    let sqlite = sqlite.to_str().expect("utf-8");
    ok(agentstore_at(sqlite, &["import", file.to_str().unwrap()]));
    assert_eq!(ok(agentstore_at(sqlite, &["export"])), exported);
    let back = format!("{}?schema=back", server.url());
    ok(agentstore_at(&back, &["import", file.to_str().unwrap()]));
    assert_eq!(ok(agentstore_at(&back, &["export"])), exported);
    // The views have the same rows on both engines.
    let a: serde_json::Value =
        serde_json::from_str(&ok(agentstore_at(sqlite, &["--json", "stats"])))?;
    let b: serde_json::Value =
        serde_json::from_str(&ok(agentstore_at(&back, &["--json", "stats"])))?;
    assert_close(&a, &b);
    // The report's data, at one time on both engines, is the same.
    let clock = ManualClock::new(1_900_000_000_000_000);
    let shared =
        || StoreOptions::default().with_shared_clock(Arc::new(clock.clone()) as Arc<dyn Clock>);
    let on_sqlite = Store::open(std::path::Path::new(sqlite), shared())?;
    let on_pg = Store::connect(&back, shared())?;
    assert_close(
        &serde_json::to_value(on_sqlite.report(None)?)?,
        &serde_json::to_value(on_pg.report(None)?)?,
    );
    drop((on_sqlite, on_pg));
    // Forget across memory and both caches, then nothing of it is left.
    let dry = ok(agentstore_at(
        &back,
        &[
            "--json",
            "forget",
            "--agent",
            "demo",
            "--matching",
            "retry",
            "--dry-run",
        ],
    ));
    let dry: serde_json::Value = serde_json::from_str(&dry)?;
    let total = |v: &serde_json::Value| {
        ["memory_entries", "responses", "tool_results"]
            .iter()
            .map(|k| v[k].as_array().map_or(0, Vec::len))
            .sum::<usize>()
    };
    assert!(total(&dry) > 0, "{dry}");
    let done: serde_json::Value = serde_json::from_str(&ok(agentstore_at(
        &back,
        &["--json", "forget", "--agent", "demo", "--matching", "retry"],
    )))?;
    assert_eq!(total(&done), total(&dry));
    let again: serde_json::Value = serde_json::from_str(&ok(agentstore_at(
        &back,
        &[
            "--json",
            "forget",
            "--agent",
            "demo",
            "--matching",
            "retry",
            "--dry-run",
        ],
    )))?;
    assert_eq!(total(&again), 0);
    ok(agentstore_at(&back, &["check"]));
    Ok(())
}

#[test]
fn an_import_that_postgres_cannot_hold_is_refused_whole() -> TestResult {
    let Some(server) = crate::postgres::server() else {
        return Ok(());
    };
    let db = TempDb::new();
    let store = Store::open(&db.path, StoreOptions::default())?;
    let agent = store.agent("bot")?;
    store.memory(&agent).add("fine", 0.5)?;
    store.memory(&agent).add("a NUL \0 byte", 0.5)?;
    drop(store);
    let exported = ok(agentstore_at(db.path.to_str().unwrap(), &["export"]));
    let file = db.dir.path().join("export.jsonl");
    std::fs::write(&file, exported)?;
    let pg = format!("{}?schema=nul_import", server.url());
    let out = agentstore_at(&pg, &["import", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("NUL byte"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    let agents: serde_json::Value =
        serde_json::from_str(&ok(agentstore_at(&pg, &["--json", "agents", "list"])))?;
    assert_eq!(
        agents,
        serde_json::json!([]),
        "nothing of the import was kept"
    );
    Ok(())
}

#[test]
fn every_sql_trick_is_refused_on_postgres_and_changes_nothing() -> TestResult {
    let Some(server) = crate::postgres::server() else {
        return Ok(());
    };
    let pg = format!("{}?schema={}", server.url(), schema());
    ok(agentstore_at(
        &pg,
        &["memory", "add", "--agent", "bot", "a secret note"],
    ));
    let before = ok(agentstore_at(&pg, &["export"]));
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("stolen");
    let f = file.to_str().unwrap();
    let tricks = [
        format!("COPY agents TO '{f}'"),
        format!("COPY (SELECT * FROM memory_entries) TO PROGRAM 'cat > {f}'"),
        "COPY agents FROM STDIN".to_string(),
        "SET statement_timeout = 0".to_string(),
        "RESET ALL".to_string(),
        "SELECT set_config('search_path', 'public', false)".to_string(),
        "DO $$ BEGIN PERFORM pg_terminate_backend(pg_backend_pid()); END $$".to_string(),
        "CALL nothing()".to_string(),
        "LISTEN agentstore".to_string(),
        "NOTIFY agentstore, 'x'".to_string(),
        "SELECT pg_notify('agentstore', 'x')".to_string(),
        "SELECT lo_import('/etc/hostname')".to_string(),
        format!("SELECT lo_export(1, '{f}')"),
        "SELECT pg_read_file('/etc/hostname')".to_string(),
        "SELECT pg_catalog.pg_read_binary_file('/etc/hostname')".to_string(),
        "SELECT * FROM pg_ls_dir('.')".to_string(),
        "SELECT dblink_connect('host=127.0.0.1')".to_string(),
        "SELECT pg_advisory_lock(42)".to_string(),
        "SELECT pg_try_advisory_lock(42)".to_string(),
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity".to_string(),
        "SELECT pg_cancel_backend(pid) FROM pg_stat_activity".to_string(),
        "PREPARE TRANSACTION 'agentstore'".to_string(),
        "SELECT 1; SELECT 2".to_string(),
        "SELECT 1; DELETE FROM memory_entries".to_string(),
        "DELETE FROM memory_entries".to_string(),
        "UPDATE agents SET name = 'x'".to_string(),
        "CREATE TABLE stolen AS SELECT * FROM memory_entries".to_string(),
        "SELECT * INTO stolen FROM memory_entries".to_string(),
        "SELECT * FROM agents FOR UPDATE".to_string(),
        "WITH gone AS (DELETE FROM memory_entries RETURNING *) SELECT * FROM gone".to_string(),
        "SELECT nextval('agents_id_seq')".to_string(),
        "SELECT query_to_xml('DELETE FROM memory_entries RETURNING 1', true, true, '')".to_string(),
        "EXPLAIN ANALYZE DELETE FROM memory_entries".to_string(),
        "VACUUM".to_string(),
        "LOCK agents".to_string(),
        "SELECT lease_take('\\x00'::bytea, 'me', 1, 0, '100')".to_string(),
        "SELECT * FROM memory_add_fast(1, '{0.5}', '{x}', '{note}', '100', 1, 1, 9, 0)".to_string(),
    ];
    for trick in &tricks {
        let out = agentstore_at(&pg, &["sql", trick]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{trick}: {stderr}");
        assert!(
            stderr.starts_with("agentstore: refused"),
            "{trick}: {stderr}"
        );
        assert_eq!(stderr.lines().count(), 1, "{trick}: {stderr}");
    }
    // A query past its time limit stops (exit 1) and holds nothing.
    let out = agentstore_at(&pg, &["sql", "--timeout", "100ms", "SELECT pg_sleep(5)"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("time limit"));
    // Nothing changed: the same export, no file, no advisory lock, no other session hurt.
    assert_eq!(ok(agentstore_at(&pg, &["export"])), before);
    assert!(!file.exists());
    let mut c = crate::postgres::client(&server);
    let locks: i64 = c
        .query_one(
            // Only the tricks' key: other tests on the shared server take their own.
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' \
             AND classid = 0 AND objid = 42 AND objsubid = 1",
            &[],
        )?
        .get(0);
    assert_eq!(locks, 0);
    c.query_one("SELECT 1", &[])?;
    // A real query works, and its values come out typed.
    let rows: serde_json::Value = serde_json::from_str(&ok(agentstore_at(
        &pg,
        &[
            "--json",
            "sql",
            "SELECT agent, total_entries, 1.25::numeric AS n FROM memory_stats",
        ],
    )))?;
    assert_eq!(
        rows,
        serde_json::json!([{ "agent": "bot", "total_entries": 1, "n": "1.25" }])
    );
    Ok(())
}

#[test]
fn a_server_restart_mid_run_loses_nothing_acknowledged() -> TestResult {
    let Some(server) = crate::postgres::server() else {
        return Ok(());
    };
    let url = format!("{}?schema=restart", server.url());
    let store = Store::connect(
        &url,
        StoreOptions::default().with_postgres(
            agentstore::PostgresOptions::default().with_connect_timeout(Duration::from_secs(20)),
        ),
    )?;
    store.agent("bot")?;
    // Keep every entry: no cleanup may take an acknowledged one.
    store.set_memory_settings(
        "bot",
        &MemorySettings::default()
            .with_cleanup_interval(0)
            .with_max_entries(1_000_000),
    )?;
    let agent = store.existing_agent("bot")?;
    let stop = std::sync::atomic::AtomicBool::new(false);
    let (acked, failed, reads) = std::thread::scope(|s| {
        let writer = s.spawn(|| {
            let memory = store.memory(&agent);
            let (mut acked, mut failed) = (Vec::new(), 0u64);
            let mut i = 0u64;
            while !stop.load(Ordering::SeqCst) || i < 50 {
                match memory.add(&format!("entry {i}"), 0.5) {
                    Ok(id) => acked.push((id, format!("entry {i}"))),
                    Err(e) => {
                        failed += 1;
                        // A failed write says what happened, in one line.
                        assert!(!e.to_string().contains('\n'), "{e}");
                    }
                }
                i += 1;
                if i > 5000 {
                    break;
                }
            }
            (acked, failed)
        });
        let reader = s.spawn(|| {
            let memory = store.memory(&agent);
            let mut ok = 0u64;
            while !stop.load(Ordering::SeqCst) {
                if memory.stats().is_ok() {
                    ok += 1;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            ok
        });
        std::thread::sleep(Duration::from_millis(300));
        assert!(server.restart() || std::env::var_os("AGENTSTORE_TEST_POSTGRES").is_some());
        std::thread::sleep(Duration::from_millis(500));
        stop.store(true, Ordering::SeqCst);
        let (acked, failed) = writer.join().expect("writer");
        (acked, failed, reader.join().expect("reader"))
    });
    assert!(reads > 0);
    // The same store recovered: it writes and reads again without reopening.
    let memory = store.memory(&agent);
    memory.add("after the restart", 0.5)?;
    let stored = memory.list(ListOrder::Time, 100_000)?;
    for (id, content) in &acked {
        assert!(
            stored.iter().any(|e| e.id == *id && e.content == *content),
            "acknowledged entry {id} is missing"
        );
    }
    assert!(store.check()?.ok, "{:?}", store.check()?.problems);
    eprintln!(
        "restart: {} writes acknowledged, {failed} failed during the restart, {reads} reads",
        acked.len()
    );
    Ok(())
}

#[test]
fn writers_killed_with_sigkill_lose_nothing_acknowledged() -> TestResult {
    let Some(server) = crate::postgres::server() else {
        return Ok(());
    };
    let url = format!("{}?schema=killed", server.url());
    ok(agentstore_at(&url, &["init"]));
    let mut acked: Vec<(String, i64)> = Vec::new();
    for round in 0..12u64 {
        // A writer: one CLI process per add; killed at a moment that moves each round.
        let mut child = Command::new(bin())
            .args([
                "--db",
                &url,
                "memory",
                "add",
                "--agent",
                &format!("a{}", round % 3),
            ])
            .arg(format!("round {round}"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        std::thread::sleep(Duration::from_millis(round * 7 % 60));
        let _ = child.kill();
        let out = child.wait_with_output()?;
        if out.status.success() {
            let id: i64 = String::from_utf8_lossy(&out.stdout).trim().parse()?;
            acked.push((format!("a{}", round % 3), id));
        }
    }
    let store = Store::connect(&url, StoreOptions::existing())?;
    for (agent, id) in &acked {
        let agent = store.existing_agent(agent)?;
        assert!(store.memory(&agent).get(*id)?.is_some(), "entry {id} lost");
    }
    let report = store.check()?;
    assert!(report.ok, "{:?}", report.problems);
    Ok(())
}

#[test]
fn eight_processes_on_four_agents_and_on_one_write_read_and_prune_at_once() -> TestResult {
    let Some(server) = crate::postgres::server() else {
        return Ok(());
    };
    for (schema, agents) in [("four", 4), ("one", 1)] {
        let url = format!("{}?schema={schema}", server.url());
        ok(agentstore_at(&url, &["init"]));
        let script = format!(
            r#"for i in $(seq 1 15); do
                 "$BIN" --db "$URL" memory add --agent "a$((P % {agents}))" --importance 0.$((i % 10)) "process $P entry $i" >/dev/null || exit 1
                 "$BIN" --db "$URL" memory search --agent "a$((P % {agents}))" entry >/dev/null || exit 2
                 if [ $((i % 5)) = 0 ]; then
                   "$BIN" --db "$URL" memory prune --agent "a$((P % {agents}))" --min-importance 0.2 >/dev/null || exit 3
                 fi
               done"#
        );
        let children: Vec<_> = (0..8)
            .map(|p| {
                Command::new("bash")
                    .args(["-c", &script])
                    .env("BIN", bin())
                    .env("URL", &url)
                    .env("P", p.to_string())
                    .stderr(Stdio::piped())
                    .spawn()
                    .expect("spawn")
            })
            .collect();
        for child in children {
            let out = child.wait_with_output()?;
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let store = Store::connect(&url, StoreOptions::existing())?;
        let report = store.check()?;
        assert!(report.ok, "{:?}", report.problems);
        let total: u64 = store.agents()?.iter().map(|a| a.message_count).sum();
        assert_eq!(total, 8 * 15, "every add counted");
        for a in store.agents()? {
            // What a prune removed is below its bound: nothing under 0.2 survives a
            // prune unless it was added after the last one.
            let kept = store.memory(&a).list(ListOrder::Time, 1000)?;
            assert!(kept.len() as u64 <= a.message_count);
        }
    }
    Ok(())
}

#[test]
fn large_contexts_on_postgres_pick_what_sqlite_picks() -> TestResult {
    let Some(server) = crate::postgres::server() else {
        return Ok(());
    };
    let clock = ManualClock::new(1_700_000_000_000_000);
    let db = TempDb::new();
    let sqlite = Store::open(
        &db.path,
        StoreOptions::default().with_shared_clock(Arc::new(clock.clone()) as Arc<dyn Clock>),
    )?;
    let pg = pg_store(&server, &schema(), &clock)?;
    let mut rng = 7u64;
    let mut next = || {
        rng = rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        rng >> 33
    };
    let items: Vec<(String, f64)> = (0..3000)
        .map(|i| {
            (
                content(next() as usize % 500 + i),
                (next() % 1000) as f64 / 999.0,
            )
        })
        .collect();
    for store in [&sqlite, &pg] {
        store.agent("bot")?;
        store.set_memory_settings(
            "bot",
            &MemorySettings::default()
                .with_cleanup_interval(0)
                .with_max_entries(100_000)
                .with_max_memory_mb(100.0),
        )?;
    }
    for chunk in items.chunks(500) {
        for store in [&sqlite, &pg] {
            let memory = store.memory(&store.existing_agent("bot")?);
            memory.add_many(chunk)?;
        }
        clock.advance(Duration::from_secs(3600));
    }
    for budget in [1, 40, 300, 2000, 20_000, 10_000_000] {
        let a = sqlite
            .memory(&sqlite.existing_agent("bot")?)
            .context(budget)?;
        let b = pg.memory(&pg.existing_agent("bot")?).context(budget)?;
        assert_eq!(a, b, "budget {budget}");
    }
    Ok(())
}

#[test]
fn copy_moves_agents_between_engines_in_one_step() -> TestResult {
    let Some(server) = crate::postgres::server() else {
        return Ok(());
    };
    let dir = tempfile::tempdir()?;
    let a = dir.path().join("a.db");
    let a = a.to_str().unwrap();
    ok(agentstore_at(
        a,
        &["demo", "--messages", "12", "--simulated-latency", "none"],
    ));
    let exported = ok(agentstore_at(a, &["export"]));
    let pg = format!("{}?schema=copied", server.url());
    ok(agentstore_at(a, &["copy", "--to", &pg]));
    assert_eq!(ok(agentstore_at(&pg, &["export"])), exported);
    let b = dir.path().join("b.db");
    let b = b.to_str().unwrap();
    ok(agentstore_at(&pg, &["copy", "--to", b]));
    assert_eq!(ok(agentstore_at(b, &["export"])), exported);
    // Twice is refused whole, and into itself at once.
    let again = agentstore_at(a, &["copy", "--to", &pg]);
    assert!(!again.status.success());
    assert_eq!(String::from_utf8_lossy(&again.stderr).lines().count(), 1);
    assert_eq!(ok(agentstore_at(&pg, &["export"])), exported);
    let itself = agentstore_at(a, &["copy", "--to", a]);
    assert_eq!(itself.status.code(), Some(1));
    Ok(())
}

#[test]
fn an_add_behind_a_held_lock_gives_up_after_the_lock_timeout_and_changes_nothing() -> TestResult {
    let Some(server) = crate::postgres::server() else {
        return Ok(());
    };
    let schema = schema();
    let url = format!("{}?schema={schema}", server.url());
    let options = StoreOptions::default().with_postgres(
        agentstore::PostgresOptions::default().with_lock_timeout(Duration::from_millis(200)),
    );
    let store = Store::connect(&url, options)?;
    let agent = store.agent("bot")?;
    let memory = store.memory(&agent);
    memory.add("before", 0.5)?;
    // Another session holds the agent's counters row (an operator's open transaction).
    let mut holder = crate::postgres::client(&server);
    let mut tx = holder.transaction()?;
    tx.execute(
        &format!("SELECT 1 FROM {schema}.memory_counters WHERE agent_id = $1 FOR UPDATE"),
        &[&agent.id],
    )?;
    // The one-statement add (autocommit) and the batched one (a transaction) both stop
    // waiting, as busy, instead of waiting for the holder.
    let one = memory.add("blocked", 0.5).unwrap_err();
    assert!(one.is_busy(), "{one}");
    let many = memory.add_many(&[("a", 0.5), ("b", 0.5)]).unwrap_err();
    assert!(many.is_busy(), "{many}");
    tx.rollback()?;
    let agent = store.existing_agent("bot")?;
    assert_eq!((agent.message_count, agent.memory_entries), (1, 1));
    assert_eq!(memory.add("after", 0.5)?, 2, "no message number was taken");
    Ok(())
}
