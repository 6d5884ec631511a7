//! A writer for the crash tests (`tests/integration/crash.rs`): adds memory entries to
//! one agent in a loop, alternating single adds and batches, and prints each entry as
//! `id<TAB>content` only after the call that stored it has returned Ok. The test kills
//! it with SIGKILL at a random moment and checks that every printed entry is there.
//!
//! ```text
//! cargo run --example crash_writer -- DB AGENT
//! ```

use std::io::Write;

use agentstore::{MemorySettings, Store, StoreOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(db), Some(agent)) = (args.next(), args.next()) else {
        eprintln!("usage: crash_writer DB AGENT");
        std::process::exit(2);
    };
    let store = Store::open(&db, StoreOptions::default())?;
    let record = store.agent(&agent)?;
    // No retention: every acknowledged entry must still be there after the kill.
    // The regular cleanup still runs through its code path but keeps everything.
    let settings = MemorySettings {
        max_entries: u64::MAX >> 1,
        max_memory_mb: 1024.0,
        keep_fraction: 1.0,
        cleanup_interval: 7,
        ..MemorySettings::default()
    };
    store.set_memory_settings(&agent, &settings)?;
    let memory = store.memory(&record);
    let stdout = std::io::stdout();
    for round in 0u64.. {
        let base = format!("{agent}-{round}");
        if round % 2 == 0 {
            let content = format!("{base} single ünïcode");
            let id = memory.add(&content, (round % 11) as f64 / 10.0)?;
            writeln!(stdout.lock(), "{id}\t{content}")?;
        } else {
            let batch: Vec<(String, f64)> = (0..5)
                .map(|k| (format!("{base}-{k} batch"), (k as f64) / 5.0))
                .collect();
            let ids = memory.add_many(&batch)?;
            let mut out = stdout.lock();
            for (id, (content, _)) in ids.iter().zip(&batch) {
                writeln!(out, "{id}\t{content}")?;
            }
        }
    }
    Ok(())
}
