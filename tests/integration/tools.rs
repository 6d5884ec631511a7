//! The tool layer: TTL with an injected clock, canonical keys, persistence across
//! reopening and processes, single-flight, parallel batches, stats, and the CLI.

use std::process::Command as StdCommand;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use agentstore::agent::{
    ParallelOptions, Tool, ToolConfig, ToolError, ToolRegistry, ToolRequest, Tools,
};
use agentstore::{CacheFilter, CacheKey, Error, Store, StoreOptions, canonical_json};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

use crate::common::{TempDb, TestResult, example_binary};
use crate::engines::{Db, engines, engines_async};

/// A tool that counts its executions and the most that ran at once, optionally
/// sleeping, and echoes its params.
#[derive(Clone)]
struct Probe {
    name: String,
    cacheable: bool,
    ttl: Option<Duration>,
    sleep: Duration,
    runs: Arc<AtomicUsize>,
    running: Arc<AtomicUsize>,
    most_at_once: Arc<AtomicUsize>,
    /// Stay running until this many run at once (or 10 s pass): proves overlap
    /// without depending on how fast the machine is.
    rendezvous: usize,
}

impl Probe {
    fn new(name: &str) -> Probe {
        Probe {
            name: name.to_string(),
            cacheable: true,
            ttl: None,
            sleep: Duration::ZERO,
            runs: Arc::default(),
            running: Arc::default(),
            most_at_once: Arc::default(),
            rendezvous: 0,
        }
    }
    fn sleeping(mut self, d: Duration) -> Probe {
        self.sleep = d;
        self
    }
    fn runs(&self) -> usize {
        self.runs.load(Ordering::SeqCst)
    }
}

#[async_trait::async_trait]
impl Tool for Probe {
    fn name(&self) -> &str {
        &self.name
    }
    fn cacheable(&self) -> bool {
        self.cacheable
    }
    fn ttl(&self) -> Option<Duration> {
        self.ttl
    }
    async fn execute(&self, params: Value) -> Result<Value, ToolError> {
        self.runs.fetch_add(1, Ordering::SeqCst);
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.most_at_once.fetch_max(now, Ordering::SeqCst);
        if !self.sleep.is_zero() {
            tokio::time::sleep(self.sleep).await;
        }
        for _ in 0..10_000 {
            if self.most_at_once.load(Ordering::SeqCst) >= self.rendezvous {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        self.running.fetch_sub(1, Ordering::SeqCst);
        Ok(json!({ "echo": params }))
    }
}

struct Failing;

#[async_trait::async_trait]
impl Tool for Failing {
    fn name(&self) -> &str {
        "failing"
    }
    async fn execute(&self, _: Value) -> Result<Value, ToolError> {
        Err(ToolError::Failed("the service said no".into()))
    }
}

struct Panicking;

#[async_trait::async_trait]
impl Tool for Panicking {
    fn name(&self) -> &str {
        "panicking"
    }
    async fn execute(&self, _: Value) -> Result<Value, ToolError> {
        panic!("a bug in the tool")
    }
}

fn tools_for(store: &Store, agent: &str, registry: ToolRegistry) -> Tools {
    let agent = store.agent(agent).expect("agent");
    Tools::open(store, &agent, registry, ToolConfig::default()).expect("tools")
}

fn cached_rows(store: &Store) -> usize {
    store
        .tool_results()
        .list(&CacheFilter::default(), 1_000_000)
        .expect("list")
        .len()
}

const T0: i64 = 1_767_225_600_000_000; // 2026-01-01T00:00:00Z

engines_async! {
    async fn a_result_is_a_hit_until_its_ttl_passes_then_a_miss(db: &Db) -> TestResult {
        let (store, clock) = db.open_at(T0);
        let probe = Probe::new("lookup");
        let tools = tools_for(&store, "bot", ToolRegistry::new().with(probe.clone()));
        let p = json!({"query": "weather", "top_k": 3});

        let first = tools.execute_tool_cached("lookup", p.clone()).await?;
        assert_eq!(first, json!({"echo": p}));
        // The store of the result gave up the call's lease, in the same write.
        assert_eq!(db.sql("SELECT count(*) AS n FROM leases")[0]["n"], 0);
        clock.advance(Duration::from_secs(3599));
        assert_eq!(tools.execute_tool_cached("lookup", p.clone()).await?, first);
        assert_eq!(probe.runs(), 1, "a hit before expiry runs nothing");
        clock.advance(Duration::from_secs(2));
        tools.execute_tool_cached("lookup", p.clone()).await?;
        assert_eq!(probe.runs(), 2, "after expiry the tool runs again");
        // The rerun stored a fresh expiry.
        clock.advance(Duration::from_secs(3000));
        tools.execute_tool_cached("lookup", p).await?;
        assert_eq!(probe.runs(), 2);
        Ok(())
    }
}

engines_async! {
    async fn a_tool_ttl_overrides_the_default(db: &Db) -> TestResult {
        let (store, clock) = db.open_at(T0);
        let mut probe = Probe::new("quote");
        probe.ttl = Some(Duration::from_secs(60));
        let tools = tools_for(&store, "bot", ToolRegistry::new().with(probe.clone()));
        tools
            .execute_tool_cached("quote", json!({"s": "X"}))
            .await?;
        clock.advance(Duration::from_secs(59));
        tools
            .execute_tool_cached("quote", json!({"s": "X"}))
            .await?;
        assert_eq!(probe.runs(), 1);
        clock.advance(Duration::from_secs(1));
        tools
            .execute_tool_cached("quote", json!({"s": "X"}))
            .await?;
        assert_eq!(
            probe.runs(),
            2,
            "expiry is exclusive: at the expiry time it is gone"
        );
        Ok(())
    }
}

engines! {
    fn purge_removes_exactly_the_expired_rows(db: &Db) -> TestResult {
        let (store, clock) = db.open_at(T0);
        let cache = store.tool_cache(&store.agent("bot")?);
        let results = store.tool_results();
        let put =
            |i: i64, ttl: u64| cache.put("t", &json!({ "i": i }), &json!(i), Duration::from_secs(ttl));
        for i in 0..10 {
            put(i, 100 + 10 * i as u64)?; // expiries T0+100s .. T0+190s
        }
        clock.advance(Duration::from_secs(145)); // 100..140 have passed: 5 rows
        let expired = CacheFilter {
            expired_only: true,
            ..CacheFilter::default()
        };
        assert_eq!(results.purge(&expired, true)?.removed, 5);
        assert_eq!(cached_rows(&store), 10, "a dry run removes nothing");
        assert_eq!(results.purge(&expired, false)?.removed, 5);
        let left: Vec<Value> = results
            .list(&CacheFilter::default(), 100)?
            .into_iter()
            .map(|r| r.result)
            .collect();
        let mut left: Vec<i64> = left.iter().filter_map(Value::as_i64).collect();
        left.sort_unstable();
        assert_eq!(left, vec![5, 6, 7, 8, 9]);
        for i in 5..10 {
            let p = json!({ "i": i });
            assert_eq!(
                cache.get_key(&CacheKey::new("bot", "t", &p)?)?,
                Some(json!(i))
            );
            assert_eq!(cache.get("t", &p)?, Some(json!(i)));
        }
        Ok(())
    }
}

engines! {
    fn normal_writes_remove_expired_rows_in_bounded_batches(db: &Db) -> TestResult {
        let (store, clock) = db.open_at(T0);
        let cache = store.tool_cache(&store.agent("s")?);
        let put = |i: i64| cache.put("t", &json!({ "i": i }), &json!(i), Duration::from_secs(1));
        for i in 0..100 {
            put(i)?;
        }
        clock.advance(Duration::from_secs(2));
        put(1000)?;
        assert_eq!(
            cached_rows(&store),
            100 - 32 + 1,
            "one write removes at most 32"
        );
        for i in 1001..1004 {
            put(i)?;
        }
        assert_eq!(cached_rows(&store), 4, "only the live rows are left");
        Ok(())
    }
}

/// Arbitrary JSON without floats (whose text forms are checked by serde_json).
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        "[a-z é\"\\\\]{0,8}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 40, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map("[a-zA-Z_é]{0,6}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// The same value with every object's keys inserted in reverse order.
fn reversed(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut out = Map::new();
            for (k, v) in m.iter().rev() {
                out.insert(k.clone(), reversed(v));
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(reversed).collect()),
        other => other.clone(),
    }
}

proptest! {
    #[test]
    fn the_same_params_in_any_key_order_give_the_same_key(v in json_value()) {
        let r = reversed(&v);
        prop_assert_eq!(canonical_json(&v).unwrap(), canonical_json(&r).unwrap());
        prop_assert_eq!(CacheKey::new("s", "t", &v).unwrap(), CacheKey::new("s", "t", &r).unwrap());
        // The canonical text is JSON for the same value.
        let back: Value = serde_json::from_str(&canonical_json(&v).unwrap()).unwrap();
        prop_assert_eq!(back, v);
    }

    #[test]
    fn different_params_give_different_keys(a in json_value(), b in json_value()) {
        prop_assume!(a != b);
        prop_assert_ne!(CacheKey::new("s", "t", &a).unwrap(), CacheKey::new("s", "t", &b).unwrap());
    }
}

engines_async! {
    async fn the_cache_and_the_stats_survive_closing_and_reopening(db: &Db) -> TestResult {
        let probe = Probe::new("lookup");
        {
            let store = db.open(StoreOptions::default())?;
            let tools = tools_for(&store, "bot", ToolRegistry::new().with(probe.clone()));
            tools.execute_tool_cached("lookup", json!({"q": 1})).await?;
            tools.execute_tool_cached("lookup", json!({"q": 1})).await?;
            tools.execute_tool_cached("lookup", json!({"q": 2})).await?;
            tools.close().await?;
        }
        let store = db.open(StoreOptions::default())?;
        let tools = tools_for(&store, "bot", ToolRegistry::new().with(probe.clone()));
        tools.execute_tool_cached("lookup", json!({"q": 2})).await?;
        assert_eq!(
            probe.runs(),
            2,
            "the result cached before the restart is a hit"
        );
        let stats = tools.stats().await?;
        assert_eq!(stats.total_tool_calls, 4);
        assert_eq!(stats.total_cache_hits, 2);
        assert_eq!(stats.cache_hit_rate_pct, 50.0);
        assert_eq!(stats.cache_size, 2);
        let lookup = &stats.tool_stats["lookup"];
        assert_eq!(
            (lookup.total_calls, lookup.cache_hits, lookup.errors),
            (4, 2, 0)
        );
        assert!(lookup.total_time > 0.0);
        assert!((lookup.avg_time - lookup.total_time / 4.0).abs() < 1e-12);
        Ok(())
    }
}

#[tokio::test]
async fn dropping_the_executor_flushes_its_counters() -> TestResult {
    let db = TempDb::new();
    let store = Store::open(&db.path, StoreOptions::default())?;
    {
        let tools = tools_for(&store, "bot", ToolRegistry::new().with(Failing));
        for _ in 0..3 {
            assert!(
                tools
                    .execute_tool_cached("failing", json!({}))
                    .await
                    .is_err()
            );
        }
    }
    let c = rusqlite::Connection::open(&db.path)?;
    let (calls, errors, hits): (i64, i64, i64) = c.query_row(
        "SELECT total_calls, errors, cache_hits FROM tool_stats WHERE agent = 'bot' AND tool = 'failing'",
        [],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    assert_eq!((calls, errors, hits), (3, 3, 0));
    assert_eq!(cached_rows(&store), 0, "an error is never cached");
    Ok(())
}

engines_async! {
    async fn errors_are_returned_counted_and_never_cached(db: &Db) -> TestResult {
        let store = db.open(StoreOptions::default())?;
        let tools = tools_for(&store, "bot", ToolRegistry::new().with(Failing));
        let err = tools
            .execute_tool_cached("failing", json!({"a": 1}))
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "tool 'failing' failed: the service said no"
        );
        let stats = tools.stats().await?;
        assert_eq!(stats.tool_stats["failing"].errors, 1);
        assert_eq!(stats.cache_size, 0);

        let err = tools
            .execute_tool_cached("nope", json!({}))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::UnknownTool { .. }));
        assert_eq!(
            err.to_string(),
            "no tool named 'nope' is registered (registered: failing)"
        );
        Ok(())
    }
}

engines_async! {
    async fn side_effect_tools_are_never_cached(db: &Db) -> TestResult {
        let store = db.open(StoreOptions::default())?;
        let clock_tool = Probe::new("current_time");
        let mut writer = Probe::new("append_note");
        writer.cacheable = false;
        let tools = tools_for(
            &store,
            "bot",
            ToolRegistry::new()
                .with(clock_tool.clone())
                .with(writer.clone()),
        );
        for _ in 0..3 {
            tools.execute_tool_cached("current_time", json!({})).await?;
            tools
                .execute_tool_cached("append_note", json!({"n": 1}))
                .await?;
        }
        assert_eq!((clock_tool.runs(), writer.runs()), (3, 3));
        assert_eq!(cached_rows(&store), 0);
        let stats = tools.stats().await?;
        assert_eq!(stats.total_tool_calls, 6);
        assert_eq!(stats.total_cache_hits, 0);

        // The never-cached set is configurable.
        let agent = store.agent("other")?;
        let config = ToolConfig::default().with_never_cache(Default::default());
        let clock_tool = Probe::new("current_time");
        let tools = Tools::open(
            &store,
            &agent,
            ToolRegistry::new().with(clock_tool.clone()),
            config,
        )?;
        tools.execute_tool_cached("current_time", json!({})).await?;
        tools.execute_tool_cached("current_time", json!({})).await?;
        assert_eq!(clock_tool.runs(), 1);
        Ok(())
    }
}

engines_async! {
    #[multi_thread]
    async fn parallel_outcomes_come_in_request_order_and_failures_stay_contained(db: &Db) -> TestResult {
        let store = db.open(StoreOptions::default())?;
        let probe = Probe::new("echo");
        let tools = tools_for(
            &store,
            "bot",
            ToolRegistry::new()
                .with(probe.clone())
                .with(Failing)
                .with(Panicking),
        );
        let requests = vec![
            ToolRequest::new("echo", json!({"n": 0})),
            ToolRequest::new("failing", json!({})),
            ToolRequest::new("echo", json!({"n": 2})),
            ToolRequest::new("panicking", json!({})),
            ToolRequest::new("missing", json!({})),
            ToolRequest::new("echo", json!({"n": 5})),
        ];
        let outcomes = tools.execute_tools_parallel(requests).await;
        let tools_named: Vec<&str> = outcomes.iter().map(|o| o.tool.as_str()).collect();
        assert_eq!(
            tools_named,
            ["echo", "failing", "echo", "panicking", "missing", "echo"]
        );
        for (i, n) in [(0, 0), (2, 2), (5, 5)] {
            assert_eq!(
                outcomes[i].result.as_ref().unwrap(),
                &json!({"echo": {"n": n}})
            );
        }
        assert!(matches!(outcomes[1].result, Err(Error::ToolFailed { .. })));
        match &outcomes[3].result {
            Err(Error::ToolPanicked { message, .. }) => assert_eq!(message, "a bug in the tool"),
            other => panic!("expected a contained panic, got {other:?}"),
        }
        assert!(matches!(outcomes[4].result, Err(Error::UnknownTool { .. })));
        // The original's shape.
        let doc = serde_json::to_value(&outcomes)?;
        assert_eq!(
            doc[0],
            json!({"success": true, "result": {"echo": {"n": 0}}, "tool": "echo"})
        );
        assert_eq!(doc[1]["success"], false);
        assert_eq!(
            doc[1]["error"],
            "tool 'failing' failed: the service said no"
        );
        // The executor still works after a panic.
        assert!(
            tools
                .execute_tool_cached("echo", json!({"n": 9}))
                .await
                .is_ok()
        );
        Ok(())
    }
}

/// W6's batch: 24 distinct requests, then the first 8 again.
fn w6_requests() -> Vec<ToolRequest> {
    (0..24)
        .chain(0..8)
        .map(|i| ToolRequest::new("slow_lookup", json!({"id": i, "query": format!("q{i}")})))
        .collect()
}

engines_async! {
    #[multi_thread]
    async fn a_parallel_batch_runs_at_once_and_duplicates_run_once(db: &Db) -> TestResult {
        let store = db.open(StoreOptions::default())?;
        let mut probe = Probe::new("slow_lookup").sleeping(Duration::from_millis(10));
        probe.rendezvous = 24;
        let tools = tools_for(&store, "bot", ToolRegistry::new().with(probe.clone()));

        let outcomes = tools.execute_tools_parallel(w6_requests()).await;
        assert_eq!(
            probe.runs(),
            24,
            "the 8 duplicates joined the calls in flight"
        );
        assert_eq!(
            probe.most_at_once.load(Ordering::SeqCst),
            24,
            "all distinct requests ran at the same time"
        );
        for (o, r) in outcomes.iter().zip(w6_requests()) {
            assert_eq!(o.result.as_ref().unwrap(), &json!({"echo": r.params}));
        }
        let warm = tools.execute_tools_parallel(w6_requests()).await;
        assert!(warm.iter().all(|o| o.result.is_ok()));
        assert_eq!(probe.runs(), 24, "the warm batch is all hits");
        let stats = tools.stats().await?;
        assert_eq!(stats.total_tool_calls, 64);
        assert_eq!(stats.total_cache_hits, 8 + 32);
        assert_eq!(stats.cache_size, 24);
        Ok(())
    }
}

engines_async! {
    #[multi_thread]
    async fn a_concurrency_limit_and_a_timeout_apply_per_request(db: &Db) -> TestResult {
        let store = db.open(StoreOptions::default())?;
        let probe = Probe::new("slow_lookup").sleeping(Duration::from_millis(5));
        let stuck = Probe::new("stuck").sleeping(Duration::from_secs(600));
        let tools = tools_for(
            &store,
            "bot",
            ToolRegistry::new().with(probe.clone()).with(stuck.clone()),
        );
        let options = ParallelOptions::default()
            .with_max_concurrency(Some(4))
            .with_timeout(Some(Duration::from_millis(200)));
        let mut requests = w6_requests();
        requests.insert(3, ToolRequest::new("stuck", json!({})));
        let outcomes = tools.execute_tools_parallel_with(requests, options).await;
        assert_eq!(outcomes.len(), 33);
        assert!(probe.most_at_once.load(Ordering::SeqCst) <= 4);
        match &outcomes[3].result {
            Err(Error::ToolTimedOut { tool, timeout }) => {
                assert_eq!(
                    (tool.as_str(), *timeout),
                    ("stuck", Duration::from_millis(200))
                );
            }
            other => panic!("expected a timeout, got {other:?}"),
        }
        let ok = outcomes.iter().filter(|o| o.result.is_ok()).count();
        assert_eq!(ok, 32, "only the stuck request failed");
        assert_eq!(cached_rows(&store), 24);
        let stats = tools.stats().await?;
        assert_eq!(stats.tool_stats["stuck"].errors, 1);
        Ok(())
    }
}

engines_async! {
    #[multi_thread]
    async fn concurrent_callers_sharing_a_scope_run_a_call_once(db: &Db) -> TestResult {
        let store = db.open(StoreOptions::default())?;
        let probe = Probe::new("slow_lookup").sleeping(Duration::from_millis(50));
        let registry = ToolRegistry::new().with(probe.clone());
        let shared = ToolConfig::default().with_scope(Some("team".into()));
        let a = Tools::open(&store, &store.agent("a")?, registry.clone(), shared.clone())?;
        let b = Tools::open(&store, &store.agent("b")?, registry, shared)?;
        assert_eq!(store.existing_agent("b")?.tool_scope, "team");
        let p = json!({"id": 1});
        let (ra, rb) = tokio::join!(
            a.execute_tool_cached("slow_lookup", p.clone()),
            b.execute_tool_cached("slow_lookup", p.clone())
        );
        assert_eq!(ra?, rb?);
        assert_eq!(probe.runs(), 1);
        // And afterwards, one agent's result is the other's hit.
        a.execute_tool_cached("slow_lookup", json!({"id": 2}))
            .await?;
        b.execute_tool_cached("slow_lookup", json!({"id": 2}))
            .await?;
        assert_eq!(probe.runs(), 2);
        let sb = b.stats().await?;
        assert_eq!((sb.total_tool_calls, sb.total_cache_hits), (2, 2));
        assert_eq!(sb.scope, "team");
        Ok(())
    }
}

#[tokio::test]
async fn a_hit_needs_no_write_lock() -> TestResult {
    let db = TempDb::new();
    let options = StoreOptions::default().with_busy_timeout(Duration::from_millis(100));
    let store = Store::open(&db.path, options)?;
    let probe = Probe::new("lookup");
    let tools = tools_for(&store, "bot", ToolRegistry::new().with(probe.clone()));
    tools.execute_tool_cached("lookup", json!({"q": 1})).await?;

    // Another process holds the write lock.
    let other = rusqlite::Connection::open(&db.path)?;
    other.execute_batch("BEGIN IMMEDIATE")?;
    for _ in 0..100 {
        tools.execute_tool_cached("lookup", json!({"q": 1})).await?;
    }
    let miss = tools.execute_tool_cached("lookup", json!({"q": 2})).await;
    assert!(
        miss.as_ref().is_err_and(Error::is_busy),
        "a miss must store, and waits for the lock: {miss:?}"
    );
    other.execute_batch("ROLLBACK")?;
    // The miss waited for the lock to take the call's lease, and gave up before
    // running the tool (its result could not have been stored either).
    assert_eq!(probe.runs(), 1);
    Ok(())
}

fn run_tool_call(db: &Db, agent: &str, n: i64) -> Value {
    let out = StdCommand::new(example_binary("tool_call"))
        .arg(db.location())
        .arg(agent)
        .arg(n.to_string())
        .output()
        .expect("run tool_call");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON line")
}

/// `processes` runs of `tool_call DB bot N` started together; their JSON lines.
fn tool_calls_at_once(db: &Db, n: i64, processes: usize) -> Vec<Value> {
    let children: Vec<_> = (0..processes)
        .map(|_| {
            StdCommand::new(example_binary("tool_call"))
                .arg(db.location())
                .arg("bot")
                .arg(n.to_string())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("spawn tool_call")
        })
        .collect();
    children
        .into_iter()
        .map(|child| {
            let out = child.wait_with_output().expect("wait");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            serde_json::from_slice(&out.stdout).expect("JSON line")
        })
        .collect()
}

engines! {
    fn a_result_cached_by_one_process_is_a_hit_for_another(db: &Db) -> TestResult {
        let first = run_tool_call(db, "bot", 7);
        assert_eq!(first, json!({"result": {"square": 49}, "executed": true}));
        let second = run_tool_call(db, "bot", 7);
        assert_eq!(second, json!({"result": {"square": 49}, "executed": false}));
        // An operator finds the same result with the same params, however spaced.
        let lookup = |params: &str| {
            db.json(&[
                    "tools", "cache", "lookup", "--agent", "bot", "--tool", "square", "--params",
                    params,
                ],
            )
        };
        let found = lookup("{ \"n\" :7 }");
        assert_eq!(found["found"], true);
        assert_eq!(found["result"], json!({"square": 49}));
        let missing = lookup("{\"n\": 8}");
        assert_eq!(
            (missing["found"].clone(), missing["result"].clone()),
            (json!(false), Value::Null)
        );

        // Eight processes missing the same key at once: all succeed (one upsert each).
        for v in tool_calls_at_once(db, 12, 8) {
            assert_eq!(v["result"], json!({"square": 144}));
        }
        let stats = db.json(&["tools", "stats", "--agent", "bot"]);
        assert_eq!(stats["total_tool_calls"], 10);
        assert_eq!(stats["cache_size"], 2);
        let hits_before = stats["total_cache_hits"].as_u64().expect("hits");

        // Eight processes hitting one cached key at once: the hit counter is a
        // read-modify-write shared by all of them, and loses none of the eight.
        for v in tool_calls_at_once(db, 7, 8) {
            assert_eq!(v, json!({"result": {"square": 49}, "executed": false}));
        }
        let stats = db.json(&["tools", "stats", "--agent", "bot"]);
        assert_eq!(stats["total_tool_calls"], 18);
        assert_eq!(
            stats["total_cache_hits"].as_u64().expect("hits"),
            hits_before + 8
        );
        let report = db.json(&["check"]);
        assert_eq!(report["ok"], true, "{report}");
        Ok(())
    }
}

/// One live row, then three stored an hour and a half ago with a one-hour TTL (in
/// that order: a write removes expired rows), and some counters.
fn old_rows(db: &Db) -> TestResult {
    let store = db.open(StoreOptions::default())?;
    let agent = store.agent("bot")?;
    store.agent("idle")?;
    let cache = store.tool_cache(&agent);
    let put = |cache: &agentstore::ToolCache, tool: &str, i: i64| {
        cache.put(
            tool,
            &json!({ "i": i }),
            &json!(i),
            Duration::from_secs(3600),
        )
    };
    put(&cache, "lookup", 4)?;
    cache.add_counts(&[(
        "lookup".into(),
        agentstore::ToolCounts {
            total_calls: 10,
            cache_hits: 4,
            errors: 1,
            total_time: 0.5,
        },
    )])?;
    drop(store);
    let now = chrono::Utc::now().timestamp_micros();
    let (store, _) = db.open_at(now - 5_400_000_000);
    let cache = store.tool_cache(&store.existing_agent("bot")?);
    for (tool, i) in [("lookup", 1), ("lookup", 2), ("calc", 3)] {
        put(&cache, tool, i)?;
    }
    Ok(())
}

engines! {
    fn the_cli_shows_stats_and_lists_the_cache(db: &Db) -> TestResult {
        old_rows(db)?;
        let v = db.json(&["tools", "stats", "--agent", "bot"]);
        assert_eq!(v["total_tool_calls"], 10);
        assert_eq!(v["total_cache_hits"], 4);
        assert_eq!(v["cache_hit_rate_pct"], 40.0);
        assert_eq!(v["cache_size"], 4);
        assert_eq!(v["tool_stats"]["lookup"]["avg_time"], 0.05);
        assert_eq!(v["tool_stats"]["lookup"]["errors"], 1);
        let all = db.json(&["tools", "stats"]);
        assert_eq!(
            all.as_array().map(Vec::len),
            Some(1),
            "the idle agent is left out"
        );
        let table = db.cli().args(["tools", "stats"]).assert().success();
        let text = String::from_utf8(table.get_output().stdout.clone())?;
        assert!(text.contains("lookup") && text.contains("40.0%"), "{text}");

        let listed = db.json(&[
                "tools", "cache", "list", "--agent", "bot", "--tool", "lookup",
            ],
        );
        let listed = listed.as_array().unwrap();
        assert_eq!(listed.len(), 3);
        assert_eq!(listed[0]["result"], 4, "newest first");
        assert_eq!(listed[0]["params"], json!({"i": 4}));
        let mut older: Vec<i64> = listed[1..]
            .iter()
            .filter_map(|r| r["result"].as_i64())
            .collect();
        older.sort_unstable();
        assert_eq!(older, [1, 2]);
        assert_eq!(listed[0]["key"].as_str().map(str::len), Some(64));
        let limited = db.json(&["tools", "cache", "list", "--limit", "2"]);
        assert_eq!(limited.as_array().map(Vec::len), Some(2));
        let table = db.cli()
            .args(["tools", "cache", "list"])
            .assert()
            .success();
        let text = String::from_utf8(table.get_output().stdout.clone())?;
        assert!(text.contains("expired") && text.contains("59m"), "{text}");
        Ok(())
    }
}

engines! {
    fn the_cli_purges_expired_or_all_rows_with_a_dry_run_first(db: &Db) -> TestResult {
        old_rows(db)?;
        let dry = db.json(&["tools", "cache", "purge", "--dry-run"]);
        assert_eq!(dry, json!({"removed": 3, "dry_run": true}));
        let dry = db.json(&[
                "tools",
                "cache",
                "purge",
                "--expired",
                "--tool",
                "calc",
                "--dry-run",
            ],
        );
        assert_eq!(dry["removed"], 1);
        let before = db.snapshot();
        db.cli()
            .args(["tools", "cache", "purge", "--all", "--dry-run"])
            .assert()
            .success()
            .stdout("would remove 4 cached results\n");
        assert_eq!(db.snapshot(), before, "a dry run changes nothing");

        let done = db.json(&["tools", "cache", "purge", "--agent", "bot"]);
        assert_eq!(done, json!({"removed": 3, "dry_run": false}));
        let left = db.json(&["tools", "cache", "list"]);
        assert_eq!(left.as_array().map(Vec::len), Some(1));
        db.cli()
            .args(["tools", "cache", "purge", "--all"])
            .assert()
            .success()
            .stdout("removed 1 cached results\n");

        db.cli()
            .args(["tools", "cache", "purge", "--all", "--expired"])
            .assert()
            .code(2);
        db.cli()
            .args(["tools", "cache", "list", "--agent", "ghost"])
            .assert()
            .code(1)
            .stderr(predicates::str::contains("no agent named 'ghost'"));
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_reach_the_file_while_calls_keep_coming_without_a_close() -> TestResult {
    let db = TempDb::new();
    let store = Store::open(&db.path, StoreOptions::default())?;
    let agent = store.agent("bot")?;
    let config = ToolConfig::default().with_flush_interval(Duration::from_millis(20));
    let tools = Tools::open(
        &store,
        &agent,
        ToolRegistry::new().with(Probe::new("echo")),
        config,
    )?;
    let flushed = || -> rusqlite::Result<i64> {
        rusqlite::Connection::open(&db.path)?.query_row(
            "SELECT coalesce(sum(total_calls), 0) FROM tool_counters",
            [],
            |r| r.get(0),
        )
    };
    // Keep calling (as a busy agent does) until a flush has written some counters;
    // the executor is neither closed nor dropped.
    let mut calls = 0;
    while flushed()? == 0 {
        assert!(calls < 10_000, "no flush after {calls} calls");
        tools
            .execute_tool_cached("echo", json!({"n": calls % 5}))
            .await?;
        calls += 1;
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let written = flushed()?;
    assert!(written >= 1 && written <= calls, "{written} of {calls}");
    tools.close().await?;
    assert_eq!(flushed()?, calls, "close writes the rest");
    Ok(())
}

/// Returns a result of `bytes` bytes.
struct Big(usize);

#[async_trait::async_trait]
impl Tool for Big {
    fn name(&self) -> &str {
        "big"
    }
    async fn execute(&self, _: Value) -> Result<Value, ToolError> {
        Ok(json!({ "blob": "x".repeat(self.0) }))
    }
}

engines_async! {
    async fn deep_or_huge_params_are_refused_and_huge_results_are_not_cached(db: &Db) -> TestResult {
        let store = db.open(StoreOptions::default())?;
        let probe = Probe::new("echo");
        let tools = tools_for(
            &store,
            "bot",
            ToolRegistry::new().with(probe.clone()).with(Big(2 << 20)),
        );
        // (A 10,000-level value cannot even be dropped on a test thread's stack: serde_json
        // drops recursively. JSON text that deep is refused by its parser at 128.)
        let mut deep = json!("bottom");
        for _ in 0..1_000 {
            deep = json!({ "x": deep });
        }
        let err = tools.execute_tool_cached("echo", deep).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "tool params are nested deeper than 128 levels"
        );
        assert_eq!(err.kind(), agentstore::ErrorKind::InvalidInput);
        let err = tools
            .execute_tool_cached("echo", json!({ "q": "y".repeat(10 << 20) }))
            .await
            .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("tool params are 10485768 bytes as JSON; the limit is 1048576"),
            "{err}"
        );
        assert_eq!(probe.runs(), 0, "refused before the tool ran");

        let big = tools.execute_tool_cached("big", json!({})).await?;
        assert_eq!(big["blob"].as_str().map(str::len), Some(2 << 20));
        assert_eq!(
            cached_rows(&store),
            0,
            "a result over 1 MiB is returned, not cached"
        );
        let stats = tools.stats().await?;
        assert_eq!(stats.tool_stats["echo"].errors, 2);
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_timed_out_in_flight_is_run_again_by_the_next_caller() -> TestResult {
    let db = TempDb::new();
    let store = Store::open(&db.path, StoreOptions::default())?;
    let probe = Probe::new("slow_lookup").sleeping(Duration::from_millis(100));
    let tools = tools_for(&store, "bot", ToolRegistry::new().with(probe.clone()));
    let options = ParallelOptions::default()
        .with_max_concurrency(None)
        .with_timeout(Some(Duration::from_millis(10)));
    let request = vec![ToolRequest::new("slow_lookup", json!({"id": 1}))];
    let out = tools.execute_tools_parallel_with(request, options).await;
    assert!(matches!(out[0].result, Err(Error::ToolTimedOut { .. })));
    // The cancelled flight left nothing behind: the next call runs the tool itself
    // and stores its result.
    let v = tools
        .execute_tool_cached("slow_lookup", json!({"id": 1}))
        .await?;
    assert_eq!(v, json!({"echo": {"id": 1}}));
    assert_eq!(probe.runs(), 2);
    assert_eq!(cached_rows(&store), 1);
    Ok(())
}
