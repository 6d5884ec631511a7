//! The README's tools snippet, as a program CI builds (see `readme_store.rs`).

// README begin
use std::time::Duration;

use agentstore::agent::{
    ParallelOptions, Tool, ToolConfig, ToolError, ToolRegistry, ToolRequest, Tools,
};
use agentstore::{Store, StoreOptions};
use serde_json::{Value, json};
// README end

// README begin
struct Weather;

#[async_trait::async_trait]
impl Tool for Weather {
    fn name(&self) -> &str {
        "weather"
    }
    // cacheable() defaults to true; ttl() to None (the executor's default, 1 hour)
    async fn execute(&self, params: Value) -> Result<Value, ToolError> {
        Ok(json!({ "city": params["city"], "celsius": 21 }))
    }
}
// README end

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> agentstore::Result<()> {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = Store::open(dir.path().join("agent.db"), StoreOptions::default())?;
    // README begin
    let agent = store.agent("bot")?;
    let registry = ToolRegistry::new().with(Weather);
    let tools = Tools::open(&store, &agent, registry, ToolConfig::default())?; // sync: reads the scope
    let ran = tools
        .execute_tool_cached("weather", json!({"city": "Oslo"}))
        .await?; // runs
    let v = tools
        .execute_tool_cached("weather", json!({"city": "Oslo"}))
        .await?; // a hit: a read
    let limits = ParallelOptions::default()
        .with_max_concurrency(Some(8))
        .with_timeout(Some(Duration::from_secs(5)));
    let requests = vec![ToolRequest::new("weather", json!({"city": "Rome"})); 3]; // runs once
    let outcomes = tools.execute_tools_parallel_with(requests, limits).await; // in request order
    let stats = tools.stats().await?; // flushes, then reads
    tools.close().await?; // flush counters
    // README end
    assert_eq!(v, ran);
    assert_eq!(outcomes.len(), 3);
    assert_eq!(stats.total_tool_calls, 5);
    Ok(())
}
