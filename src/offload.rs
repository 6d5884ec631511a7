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
/// does, which panics inside a runtime's context): on a multi-threaded runtime's
/// worker inside `block_in_place`, which moves the worker's other tasks away and
/// leaves the runtime's context; on a current-thread runtime's thread (which cannot be
/// left, and where `block_in_place` is not allowed) on a helper thread while this one
/// waits (a thread start per call, tens of µs), so that a store called straight from
/// `#[tokio::main(flavor = "current_thread")]` works instead of aborting the process;
/// outside a runtime right here.
#[cfg_attr(not(feature = "postgres"), allow(dead_code))]
pub(crate) fn off_runtime<T>(f: impl FnOnce() -> crate::Result<T>) -> crate::Result<T> {
    if ON_BLOCKING_THREAD.with(std::cell::Cell::get) {
        return f(); // a blocking-pool thread: it may block, and drives no tasks
    }
    match Handle::try_current() {
        Ok(rt) if rt.runtime_flavor() == RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        Ok(_) => on_helper_thread(f),
        Err(_) => f(),
    }
}

thread_local! {
    /// Set while this thread runs a task of a runtime's blocking pool (see
    /// [`as_blocking`]).
    static ON_BLOCKING_THREAD: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// `rt.spawn_blocking(f)`, the one way the crate sends work to a blocking pool: `f`
/// runs marked (see [`as_blocking`]), so that a database call in it runs right there.
pub(crate) fn spawn_blocking<T: Send + 'static>(
    rt: &Handle,
    f: impl FnOnce() -> T + Send + 'static,
) -> tokio::task::JoinHandle<T> {
    rt.spawn_blocking(|| as_blocking(f))
}

/// Runs `f`, which runs on a runtime's blocking pool, marked as such: a database call
/// in it then runs right here. Such a thread has the runtime's handle but drives no
/// tasks, so the `postgres` client may block on it; a helper thread per call (what a
/// current-thread runtime's own thread needs) would only cost a thread start.
fn as_blocking<T>(f: impl FnOnce() -> T) -> T {
    let before = ON_BLOCKING_THREAD.with(|b| b.replace(true));
    let out = f();
    ON_BLOCKING_THREAD.with(|b| b.set(before));
    out
}

/// Moves a value to the helper thread of [`on_helper_thread`] and back.
struct Handover<T>(T);

// SAFETY: a `Handover` only crosses to a scoped helper thread and back while the
// thread that made it is blocked waiting for that helper, so what it holds is never
// used by two threads at once, and everything it borrows outlives the helper. The
// values that are not `Send` in this crate's calls are sinks and callbacks borrowed
// for the call (`&mut dyn FnMut`, an output writer, a `Cell` flag): none is tied to
// its thread (no guard is released and no thread-local is read through them).
unsafe impl<T> Send for Handover<T> {}

/// Runs `f` on a scoped helper thread while this thread waits; a panic in `f` goes on
/// unwinding here.
fn on_helper_thread<T>(f: impl FnOnce() -> crate::Result<T>) -> crate::Result<T> {
    let f = Handover(f);
    std::thread::scope(|s| {
        let helper = std::thread::Builder::new()
            .name("agentstore-io".into())
            .spawn_scoped(s, move || {
                let f = f;
                Handover((f.0)())
            })
            .map_err(|source| crate::Error::Io {
                context: "cannot start a thread for a database call".into(),
                source,
            })?;
        match helper.join() {
            Ok(result) => result.0,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}
