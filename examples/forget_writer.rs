//! A process for the forget-after-kill test (`tests/integration/recall.rs`): adds
//! entries with a secret marker among filler, forgets every entry with the marker,
//! prints `forgotten` once the forget has returned, then keeps adding filler until
//! it is killed.
//!
//! ```text
//! cargo run --example forget_writer -- DB MARKER
//! ```

use std::io::Write;

use agentstore::{ForgetTarget, MemorySettings, Store, StoreOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(db), Some(marker)) = (args.next(), args.next()) else {
        eprintln!("usage: forget_writer DB MARKER");
        std::process::exit(2);
    };
    let store = Store::open(&db, StoreOptions::default())?;
    let agent = store.agent("bot")?;
    let roomy = MemorySettings::default()
        .with_cleanup_interval(0)
        .with_max_entries(1 << 40)
        .with_max_memory_mb(1024.0);
    store.set_memory_settings("bot", &roomy)?;
    let memory = store.memory(&agent);
    for i in 0..2000u64 {
        let text = match i % 400 {
            3 => format!("entry {i} holds {marker} among other words"),
            _ => format!(
                "entry {i} is filler about weather and tides {}",
                i * 7919 % 1000
            ),
        };
        memory.add(&text, 0.5)?;
    }
    let report = memory.forget(&ForgetTarget::Matching(marker), false)?;
    println!("forgotten {} {}", report.entries.len(), report.scrubbed);
    std::io::stdout().flush()?;
    for i in 0.. {
        memory.add(&format!("after the forget, filler {i}"), 0.5)?;
    }
    Ok(())
}
