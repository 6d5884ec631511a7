//! The README's responses snippet, as a program CI builds (see `readme_store.rs`).

// README begin
use agentstore::agent::{GenerationError, Responder, ResponseConfig, generator_fn};
use agentstore::{Outcome, Store, StoreOptions};
// README end

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> agentstore::Result<()> {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = Store::open(dir.path().join("agent.db"), StoreOptions::default())?;
    let agent = store.agent("assistant")?;
    // README begin
    let llm = generator_fn(|message: String| async move {
        Ok::<_, GenerationError>(format!("an answer to {message}")) // an LLM call, in the agent
    });
    let responder = Responder::new(&store, &agent, llm, ResponseConfig::default())?;
    let reply = responder
        .process_message("what is the capital of France?")
        .await?;
    // reply.response, reply.response_time (s), reply.outcome: Exact | Fuzzy | Generated | Fallback
    let stats = responder.response_time_stats().await?; // {"no_data": true} or the figures
    let tuned = responder.optimize_performance().await?; // new target stored in the agent's row
    responder.close().await?; // flush hits and log rows
    // README end
    assert_eq!(reply.outcome, Outcome::Generated);
    assert!(matches!(stats, agentstore::ResponseTimeStats::Data(_)));
    assert!(tuned.new_target > 0.0);
    Ok(())
}
