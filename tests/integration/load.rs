//! Load inside one process: many tokio tasks sharing one store (memory, tools,
//! responses) through a pool smaller than the number of tasks, and tasks aborted in
//! the middle of their writes.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use agentstore::agent::{
    GenerationError, Responder, ResponseConfig, Tool, ToolConfig, ToolError, ToolRegistry, Tools,
    generator_fn,
};
use agentstore::{Store, StoreOptions};
use serde_json::{Value, json};

use crate::common::{TempDb, TestResult};

struct Square;

#[async_trait::async_trait]
impl Tool for Square {
    fn name(&self) -> &str {
        "square"
    }
    async fn execute(&self, params: Value) -> Result<Value, ToolError> {
        let n = params["n"].as_i64().unwrap_or(0);
        tokio::task::yield_now().await;
        Ok(json!(n * n))
    }
}

fn small_pool(db: &TempDb) -> agentstore::Result<Store> {
    Store::open(&db.path, StoreOptions::default().with_pool_size(2))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_tasks_share_a_pool_of_two_without_deadlock_or_pool_timeout() -> TestResult {
    let db = TempDb::new();
    let store = small_pool(&db)?;
    let agent = store.agent("bot")?;
    let tools = Tools::open(
        &store,
        &agent,
        ToolRegistry::new().with(Square),
        ToolConfig::default(),
    )?;
    let echo =
        generator_fn(|m: String| async move { Ok::<_, GenerationError>(format!("re: {m}")) });
    let responder = Responder::new(&store, &agent, echo, ResponseConfig::default())?;
    let memory = store.memory(&agent);
    let done = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..64)
        .map(|t| {
            let (tools, responder, memory, done) = (
                tools.clone(),
                responder.clone(),
                memory.clone(),
                done.clone(),
            );
            tokio::spawn(async move {
                for i in 0..20 {
                    let n = (t * 7 + i) % 30;
                    assert_eq!(
                        tools
                            .execute_tool_cached("square", json!({ "n": n }))
                            .await?,
                        json!(n * n)
                    );
                    let reply = responder
                        .process_message(&format!("question {} of the day", n % 10))
                        .await?;
                    assert!(reply.response.starts_with("re: question"));
                    let m = memory.clone();
                    tokio::task::spawn_blocking(move || m.add(&format!("task {t} note {i}"), 0.5))
                        .await
                        .expect("join")?;
                    done.fetch_add(1, Ordering::SeqCst);
                }
                Ok::<_, agentstore::Error>(())
            })
        })
        .collect();
    let all = async {
        for t in tasks {
            t.await.expect("task panicked")?;
        }
        Ok::<_, agentstore::Error>(())
    };
    // A deadlock would hang here; a pool timeout would be an error above.
    tokio::time::timeout(Duration::from_secs(120), all)
        .await
        .expect("the tasks did not finish: deadlock")?;
    assert_eq!(done.load(Ordering::SeqCst), 64 * 20);
    let stats = tools.stats().await?;
    assert_eq!(stats.total_tool_calls, 64 * 20);
    assert_eq!(stats.cache_size, 30);
    responder.flush().await?;
    let report = store.check()?;
    assert!(report.ok, "{:?}", report.problems);
    assert_eq!(
        store.existing_agent("bot")?.message_count,
        64 * 20,
        "every add counted once"
    );
    assert_eq!(report.row_counts["response_cache"], 10);
    assert_eq!(report.row_counts["response_log"], 64 * 20);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tasks_aborted_mid_write_leave_the_pool_usable_and_no_lock_held() -> TestResult {
    let db = TempDb::new();
    let store = small_pool(&db)?;
    let agent = store.agent("bot")?;
    let slowish = generator_fn(|m: String| async move {
        tokio::task::yield_now().await;
        Ok::<_, GenerationError>(format!("re: {m}"))
    });
    let responder = Responder::new(&store, &agent, slowish, ResponseConfig::default())?;
    let memory = store.memory(&agent);
    for round in 0..10u64 {
        let tasks: Vec<_> = (0..16)
            .map(|t| {
                let (responder, memory) = (responder.clone(), memory.clone());
                tokio::spawn(async move {
                    for i in 0.. {
                        let _ = responder
                            .process_message(&format!("r{round} t{t} m{i}"))
                            .await;
                        let m = memory.clone();
                        let _ = tokio::task::spawn_blocking(move || {
                            let batch: Vec<(String, f64)> = (0..20)
                                .map(|k| (format!("r{round} t{t} m{i} k{k}"), 0.3))
                                .collect();
                            m.add_many(&batch)
                        })
                        .await;
                    }
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(5 + round * 3)).await;
        for t in &tasks {
            t.abort();
        }
        for t in tasks {
            let _ = t.await;
        }
    }
    // No lock is held: another connection takes the write lock at once.
    let other = rusqlite::Connection::open(&db.path)?;
    other.busy_timeout(Duration::from_millis(500))?;
    other.execute_batch("BEGIN IMMEDIATE; ROLLBACK;")?;
    // Every pooled connection is back in autocommit: writes through both work.
    for i in 0..4 {
        memory.add(&format!("after {i}"), 0.5)?;
        store
            .response_cache(&agent)
            .put(&format!("after {i}"), "ok")?;
    }
    responder.flush().await?;
    let report = store.check()?;
    assert!(report.ok, "{:?}", report.problems);
    Ok(())
}

/// The same through the composed `Agent`: 48 tasks sharing one agent (memory, tools,
/// responses, an offline LLM) on a pool of two connections; half are aborted in the
/// middle of their work, the rest finish, and every acknowledged message is there.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_tasks_share_one_agent_on_a_pool_of_two() -> TestResult {
    let _running = crate::zz_report::running();
    let db = TempDb::new();
    let store = small_pool(&db)?;
    let config =
        agentstore::agent::AgentConfig::new(agentstore::agent::SimulatedClient::instant(7))
            .tool(Square)
            // No retention, so every acknowledged fact must still be there at the end.
            .with_memory(
                agentstore::MemorySettings::default()
                    .with_max_entries(1 << 40)
                    .with_max_memory_mb(1024.0)
                    .with_keep_fraction(1.0),
            );
    let agent = Arc::new(agentstore::agent::Agent::open(&store, "bot", config).await?);
    let tasks: Vec<_> = (0..48u64)
        .map(|t| {
            let agent = agent.clone();
            tokio::spawn(async move {
                let mut acknowledged = Vec::new();
                for i in 0..30u64 {
                    let n = (t + i) % 12;
                    assert_eq!(
                        agent.execute_tool("square", json!({ "n": n })).await?,
                        json!(n * n)
                    );
                    agent
                        .process_message(&format!("task {t} asks question {i}"))
                        .await?;
                    acknowledged.push(agent.remember(&format!("task {t} fact {i}"), 0.9).await?);
                    agent.context(500).await?;
                }
                Ok::<_, agentstore::Error>(acknowledged)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(10)).await;
    let mut ids = Vec::new();
    let mut aborted = 0;
    for task in tasks.iter().skip(1).step_by(2) {
        task.abort();
    }
    for task in tasks {
        match tokio::time::timeout(Duration::from_secs(120), task)
            .await
            .expect("a task never finished: deadlock")
        {
            Ok(done) => ids.extend(done?),
            Err(e) if e.is_cancelled() => aborted += 1,
            Err(e) => panic!("task panicked: {e}"),
        }
    }
    assert!(
        ids.len() >= 24 * 30,
        "only {} facts acknowledged",
        ids.len()
    );
    agent.flush().await?;
    // No lock is held and the file is sound.
    let other = rusqlite::Connection::open(&db.path)?;
    other.busy_timeout(Duration::from_millis(500))?;
    other.execute_batch("BEGIN IMMEDIATE; ROLLBACK;")?;
    let report = store.check()?;
    assert!(report.ok, "{:?}", report.problems);
    let stored: std::collections::HashSet<i64> = store
        .memory(&store.existing_agent("bot")?)
        .list(agentstore::ListOrder::Time, u64::MAX)?
        .into_iter()
        .map(|e| e.id)
        .collect();
    for id in &ids {
        assert!(stored.contains(id), "acknowledged fact {id} is missing");
    }
    println!(
        "agent pool: 48 tasks on 2 connections, {aborted} aborted, {} facts checked",
        ids.len()
    );
    crate::zz_report::add(
        crate::zz_report::Count::AcknowledgedWrites,
        ids.len() as u64,
    );
    Ok(())
}
