//! The README's agent snippet, as a program CI builds (see `readme_store.rs`). It
//! talks to an OpenAI-compatible server when `AGENTSTORE_LLM_BASE_URL` is set, and to
//! the offline simulated client otherwise.

// README begin
use std::sync::Arc;

use agentstore::agent::{
    Agent, AgentConfig, Importance, LlmClient, OpenAiClient, OpenAiConfig, SimulatedClient, Tool,
    ToolError,
};
use agentstore::{ListOrder, Prune, Store, StoreOptions};
use serde_json::{Value, json};
// README end

struct Weather;

#[async_trait::async_trait]
impl Tool for Weather {
    fn name(&self) -> &str {
        "weather"
    }
    async fn execute(&self, params: Value) -> Result<Value, ToolError> {
        Ok(json!({ "city": params["city"], "celsius": 21 }))
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> agentstore::Result<()> {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = Store::open(dir.path().join("agent.db"), StoreOptions::default())?;
    let online = std::env::var_os(OpenAiConfig::ENV_BASE_URL).is_some();
    // README begin
    let llm: Arc<dyn LlmClient> = match online {
        true => Arc::new(OpenAiClient::new(OpenAiConfig::from_env())?), // LlmError converts
        false => Arc::new(SimulatedClient::instant(42)),                // offline
    };
    let config = AgentConfig::with_llm(llm)
        .tool(Weather)
        .with_context_chars(4000); // + with_tool_config, with_responses, with_memory, ...
    let agent = Agent::open(&store, "assistant", config).await?;

    let reply = agent
        .process_message("what's the weather in Paris?")
        .await?;
    println!(
        "{} ({:.3}s, {:?})",
        reply.response, reply.response_time, reply.outcome
    );
    agent
        .process_message_with("remember: I like rain", Importance::new(0.9, 0.4))
        .await?;
    agent.remember("the user lives in Paris", 0.8).await?;
    let weather = agent
        .execute_tool("weather", json!({"city": "Paris"}))
        .await?;
    let entries = agent.memories(ListOrder::Importance, 10).await?; // no spawn_blocking
    let pruned = agent.prune_memory(Prune::MinImportance(0.1), true).await?;
    let stats = agent.stats().await?; // memory + tools + responses, serde-serialisable
    agent.close().await?; // waits for background generations, flushes counters
    // README end
    assert_eq!(weather["celsius"], 21);
    assert_eq!(entries.len(), 5);
    assert!(pruned.dry_run);
    assert_eq!(stats.memory.total_entries, 5);
    Ok(())
}
