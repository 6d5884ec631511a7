//! Where blocking work goes when it is started from code that may run on an async
//! worker thread and must be done when it returns (a `Drop`: the store's pool
//! closing, a handle's last flush).

use tokio::runtime::{Handle, RuntimeFlavor};

/// Runs `f` to completion without doing its blocking I/O on an async worker thread:
/// on a multi-threaded runtime `block_in_place` first moves the worker's other tasks
/// to another worker; on a current-thread runtime (which has no other worker) `f`
/// runs on a helper thread while this one waits, so what a drop writes is written
/// when the drop returns; outside a runtime it runs here.
pub(crate) fn finish_off_worker(f: impl FnOnce() + Send) {
    match Handle::try_current() {
        Ok(rt) if rt.runtime_flavor() == RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        Ok(_) => std::thread::scope(|s| {
            // A panic in `f` stays on the helper thread: a drop must not unwind.
            let _ = std::thread::Builder::new()
                .name("agentstore-close".into())
                .spawn_scoped(s, f)
                .map(|h| h.join());
        }),
        Err(_) => f(),
    }
}

/// Runs `f` where it may block on a runtime of its own (as the `postgres` client
/// does): on a multi-threaded runtime's worker inside `block_in_place`, which moves
/// the worker's other tasks away and leaves the runtime's context; anywhere else right
/// here. (A current-thread runtime's own thread cannot be left: code there must call
/// the store inside `spawn_blocking`, as the agent layer does.)
#[cfg_attr(not(feature = "postgres"), allow(dead_code))]
pub(crate) fn off_runtime<T>(f: impl FnOnce() -> T) -> T {
    match Handle::try_current() {
        Ok(rt) if rt.runtime_flavor() == RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}
