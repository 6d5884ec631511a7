//! What `cleanup_writer` writes, shared with the test that replays it on a model.

use agentstore::MemorySettings;

/// Retention that runs often: a regular cleanup every 10 messages keeping half, at
/// most 300 entries, a 32 KiB budget (the emergency cleanup).
pub fn settings() -> MemorySettings {
    MemorySettings::default()
        .with_max_entries(300)
        .with_max_memory_mb(0.03125)
        .with_cleanup_interval(10)
        .with_keep_fraction(0.5)
}

/// Entry `n`: its content and importance.
pub fn entry(n: u64) -> (String, f64) {
    (
        format!("entry {n} {}", "x".repeat((n % 300) as usize)),
        ((n * 37) % 101) as f64 / 100.0,
    )
}
