//! Fills a database for measuring `agentstore report` at size: one agent with N memory
//! entries (no retention), N logged responses and N/100 cached responses and tool
//! results. `cargo run --release --example report_load -- big.db 100000`, then
//! `/usr/bin/time -v agentstore --db big.db report --output big.html`.

use std::time::Duration;

use agentstore::{LoggedResponse, MemorySettings, Outcome, Store, StoreOptions};
use serde_json::json;

fn main() -> agentstore::Result<()> {
    let mut args = std::env::args().skip(1);
    let path = args.next().unwrap_or_else(|| "report-load.db".into());
    let n: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(100_000);
    let store = Store::open(&path, StoreOptions::default())?;
    let agent = store.agent("big")?;
    store.set_memory_settings(
        "big",
        &MemorySettings::default()
            .with_max_entries(u64::MAX >> 2)
            .with_max_memory_mb(1e6)
            .with_cleanup_interval(0),
    )?;
    let memory = store.memory(&agent);
    for chunk in (0..n).collect::<Vec<_>>().chunks(10_000) {
        let items: Vec<(String, f64)> = chunk
            .iter()
            .map(|i| {
                (
                    format!("entry {i} about topic {}", i % 97),
                    (i % 101) as f64 / 100.0,
                )
            })
            .collect();
        memory.add_many(&items)?;
    }
    let now = store.now_micros();
    let outcomes = [
        Outcome::Exact,
        Outcome::Fuzzy,
        Outcome::Generated,
        Outcome::Fallback,
    ];
    let responses = store.response_cache(&agent);
    for chunk in (0..n).collect::<Vec<_>>().chunks(10_000) {
        let rows: Vec<LoggedResponse> = chunk
            .iter()
            .map(|&i| LoggedResponse {
                at: now - (n - i) as i64 * 1_000_000,
                duration: 0.0001 * (1 + i % 30_000) as f64,
                outcome: outcomes[i % 4],
            })
            .collect();
        responses.log(&rows, u64::MAX)?;
    }
    let pairs: Vec<(String, String)> = (0..n / 100)
        .map(|i| (format!("question {i}"), format!("answer {i}")))
        .collect();
    responses.put_many(&pairs)?;
    let tools = store.tool_cache(&agent);
    for i in 0..n / 100 {
        tools.put(
            "search",
            &json!({ "q": i }),
            &json!(i),
            Duration::from_secs(60 * i as u64),
        )?;
    }
    println!("filled {path}: {n} entries, {n} log rows");
    Ok(())
}
