//! One cached tool call in its own process, for the tests of a cache shared between
//! processes: `tool_call DB AGENT N` calls the tool `square` with `{"n": N}` and
//! prints `{"result": ..., "executed": true|false}` (whether this process ran it).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use agentstore::agent::{Tool, ToolConfig, ToolError, ToolRegistry, Tools};
use agentstore::{Store, StoreOptions};
use serde_json::{Value, json};

struct Square(Arc<AtomicBool>);

#[async_trait::async_trait]
impl Tool for Square {
    fn name(&self) -> &str {
        "square"
    }
    async fn execute(&self, params: Value) -> Result<Value, ToolError> {
        self.0.store(true, Ordering::SeqCst);
        let n = params["n"]
            .as_i64()
            .ok_or_else(|| ToolError::InvalidParams("n must be an integer".into()))?;
        Ok(json!({ "square": n * n }))
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, db, agent, n] = args.as_slice() else {
        return Err("usage: tool_call DB AGENT N (DB: a file or a postgres:// URL)".into());
    };
    let n: i64 = n.parse()?;
    let store = Store::connect(db, StoreOptions::default())?;
    let agent = store.agent(agent)?;
    let ran = Arc::new(AtomicBool::new(false));
    let registry = ToolRegistry::new().with(Square(ran.clone()));
    let tools = Tools::open(&store, &agent, registry, ToolConfig::default())?;
    let result = tools
        .execute_tool_cached("square", json!({ "n": n }))
        .await?;
    tools.close().await?;
    println!(
        "{}",
        json!({ "result": result, "executed": ran.load(Ordering::SeqCst) })
    );
    Ok(())
}
