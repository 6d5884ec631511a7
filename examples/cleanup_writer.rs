//! A writer for the crash tests (`tests/integration/interrupted.rs`): adds memory
//! entries one at a time to an agent whose retention runs often (a regular cleanup
//! every 10 messages keeping half, at most 300 entries, a 32 KiB budget), so that many
//! adds delete rows in the same transaction. Entry `n` (counting from START) is
//! `support/cleanup.rs`'s `entry(n)`; the id of each add is printed after the call
//! returned. The test kills it with SIGKILL and replays the adds on a model.
//!
//! ```text
//! cargo run --example cleanup_writer -- DB AGENT START
//! ```

use std::io::Write;

use agentstore::{Store, StoreOptions};

#[path = "support/cleanup.rs"]
mod cleanup;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [db, agent, start] = args.as_slice() else {
        eprintln!("usage: cleanup_writer DB AGENT START");
        std::process::exit(2);
    };
    let start: u64 = start.parse()?;
    let store = Store::open(db, StoreOptions::default())?;
    let record = store.agent(agent)?;
    store.set_memory_settings(agent, &cleanup::settings())?;
    let memory = store.memory(&record);
    let stdout = std::io::stdout();
    for n in start.. {
        let (content, importance) = cleanup::entry(n);
        let id = memory.add(&content, importance)?;
        writeln!(stdout.lock(), "{id}")?;
    }
    Ok(())
}
