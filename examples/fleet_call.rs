//! One slow call in its own process, for the tests of single-flight across processes:
//! `fleet_call DB tool|message AGENT LOG SLEEP_MS LEASE_MS` makes the cacheable call
//! `slow {"q": 1}` (or answers the new message "what is the tide today"), where the
//! execution appends a line to LOG and sleeps SLEEP_MS; prints the result and its
//! outcome as JSON. DB is a path or a `postgres://` URL.

use std::io::Write;
use std::time::Duration;

use agentstore::agent::{
    GenerationError, Responder, ResponseConfig, Tool, ToolConfig, ToolError, ToolRegistry, Tools,
    generator_fn,
};
use agentstore::{Store, StoreOptions};
use serde_json::{Value, json};

/// Appends one line to the log: an execution happened, in this process.
fn executed(log: &str) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("the executions log");
    writeln!(f, "{}", std::process::id()).expect("append");
}

struct Slow {
    log: String,
    sleep: Duration,
}

#[async_trait::async_trait]
impl Tool for Slow {
    fn name(&self) -> &str {
        "slow"
    }
    async fn execute(&self, params: Value) -> Result<Value, ToolError> {
        executed(&self.log);
        tokio::time::sleep(self.sleep).await;
        Ok(json!({ "answer": params["q"], "by": std::process::id() }))
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, db, mode, agent, log, sleep_ms, lease_ms] = args.as_slice() else {
        return Err("usage: fleet_call DB tool|message AGENT LOG SLEEP_MS LEASE_MS".into());
    };
    let sleep = Duration::from_millis(sleep_ms.parse()?);
    let lease = Duration::from_millis(lease_ms.parse()?);
    let store = Store::connect(db, StoreOptions::default())?;
    let agent = store.agent(agent)?;
    if mode == "tool" {
        let registry = ToolRegistry::new().with(Slow {
            log: log.clone(),
            sleep,
        });
        let tools = Tools::open(
            &store,
            &agent,
            registry,
            ToolConfig::default().with_lease(lease),
        )?;
        let result = tools.execute_tool_cached("slow", json!({ "q": 1 })).await?;
        tools.close().await?;
        // A hit: another process ran it.
        let hit = result["by"] != json!(std::process::id());
        println!("{}", json!({ "result": result, "hit": hit }));
    } else {
        let log = log.clone();
        let generator = generator_fn(move |message: String| {
            let log = log.clone();
            async move {
                executed(&log);
                tokio::time::sleep(sleep).await;
                Ok::<_, GenerationError>(format!("the answer to {message}"))
            }
        });
        let config = ResponseConfig::default().with_lease(lease);
        let responder = Responder::new(&store, &agent, generator, config)?;
        let reply = responder.process_message("what is the tide today").await?;
        responder.settle().await;
        responder.close().await?;
        println!(
            "{}",
            json!({ "response": reply.response, "outcome": reply.outcome.as_str() })
        );
    }
    Ok(())
}
