//! A writer for the crash tests (`tests/integration/crash.rs`): in a loop, adds memory
//! entries to one agent (single adds and batches), stores tool results, stores
//! responses (every 128th of which indexes the waiting ones) and logs responses, and
//! prints each write only after the call that stored it has returned Ok:
//!
//! ```text
//! m<TAB>entry id<TAB>content
//! t<TAB>cache key (hex)<TAB>result JSON
//! r<TAB>row id<TAB>message<TAB>response
//! l<TAB>logged time (µs)
//! ```
//!
//! The test kills it with SIGKILL at a random moment and checks that every printed
//! write is there.
//!
//! With a third argument it stops after that many rounds and exits 0 (the load test
//! runs it that way); a fourth sets the busy timeout in milliseconds (default 5000).
//!
//! ```text
//! cargo run --example crash_writer -- DB AGENT [ROUNDS [BUSY_TIMEOUT_MS]]
//! ```

use std::io::Write;
use std::time::Duration;

use agentstore::{LoggedResponse, MemorySettings, Outcome, Store, StoreOptions};
use serde_json::json;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(db), Some(agent)) = (args.next(), args.next()) else {
        eprintln!("usage: crash_writer DB AGENT [ROUNDS [BUSY_TIMEOUT_MS]]");
        std::process::exit(2);
    };
    let rounds: u64 = match args.next() {
        Some(n) => n.parse()?,
        None => u64::MAX,
    };
    let busy_timeout = match args.next() {
        Some(ms) => Duration::from_millis(ms.parse()?),
        None => StoreOptions::default().sqlite.busy_timeout,
    };
    let options = StoreOptions::default().with_busy_timeout(busy_timeout);
    let store = Store::open(&db, options)?;
    let record = store.agent(&agent)?;
    // No retention: every acknowledged entry must still be there after the kill.
    // The regular cleanup still runs through its code path but keeps everything.
    let settings = MemorySettings::default()
        .with_max_entries(u64::MAX >> 1)
        .with_max_memory_mb(1024.0)
        .with_keep_fraction(1.0)
        .with_cleanup_interval(7);
    store.set_memory_settings(&agent, &settings)?;
    let memory = store.memory(&record);
    let tools = store.tool_cache(&record);
    let responses = store.response_cache(&record);
    let stdout = std::io::stdout();
    // Distinct log times across runs of this writer: its pid and a counter.
    let pid = i64::from(std::process::id());
    for round in 0..rounds {
        let base = format!("{agent}-{pid}-{round}");
        match round % 5 {
            0 => {
                let content = format!("{base} single ünïcode");
                let id = memory.add(&content, (round % 11) as f64 / 10.0)?;
                writeln!(stdout.lock(), "m\t{id}\t{content}")?;
            }
            1 => {
                let batch: Vec<(String, f64)> = (0..5)
                    .map(|k| (format!("{base}-{k} batch"), (k as f64) / 5.0))
                    .collect();
                let ids = memory.add_many(&batch)?;
                let mut out = stdout.lock();
                for (id, (content, _)) in ids.iter().zip(&batch) {
                    writeln!(out, "m\t{id}\t{content}")?;
                }
            }
            2 => {
                let params = json!({ "q": base, "n": round });
                let key = tools.key("lookup", &params)?;
                let result = json!({ "answer": format!("result of {base}") });
                tools.put("lookup", &params, &result, Duration::from_secs(3600))?;
                writeln!(stdout.lock(), "t\t{}\t{result}", key.to_hex())?;
            }
            3 => {
                let message = format!("what is the state of {base} right now");
                let response = format!("the state of {base} is fine");
                let id = responses.put(&message, &response)?;
                writeln!(stdout.lock(), "r\t{id}\t{message}\t{response}")?;
            }
            _ => {
                let at = pid * 1_000_000_000 + round as i64;
                let row = LoggedResponse {
                    at,
                    duration: (round % 17) as f64 / 10.0,
                    outcome: Outcome::Generated,
                };
                responses.record(&[], &[row], 100_000)?;
                writeln!(stdout.lock(), "l\t{at}")?;
            }
        }
    }
    Ok(())
}
