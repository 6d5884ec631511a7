//! What the async layer shares: running blocking store code from async code, and
//! [`Batch`], the in-memory accumulator that keeps writes off the hot path (tool
//! counters, response hits and the response log) and flushes them to the file at
//! least once per interval while calls come in, and on demand.

use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::error::Result;

/// Locks `m`; the guarded data stays consistent even if a holder panicked (every
/// critical section here is a few field updates).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs blocking store code from async code without stalling other tasks. On a
/// multi-threaded runtime `block_in_place` hands this worker's other tasks to another
/// worker and runs `f` here, without a thread switch (W5 miss+store: 88 µs through
/// `spawn_blocking`, 47 µs this way); on a current-thread runtime (where that is not
/// allowed) `f` goes to the blocking pool; outside a runtime it just runs.
pub(crate) async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(rt) if rt.runtime_flavor() == RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        Ok(rt) => match crate::offload::spawn_blocking(&rt, f).await {
            Ok(v) => v,
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        },
        Err(_) => f(),
    }
}

/// Runs `f` on the blocking pool without waiting for it (here, outside a runtime).
pub(crate) fn detach_blocking(f: impl FnOnce() + Send + 'static) {
    match tokio::runtime::Handle::try_current() {
        Ok(rt) => {
            crate::offload::spawn_blocking(&rt, f);
        }
        Err(_) => f(),
    }
}

/// Something that writes its batched data to the store (a blocking call).
pub(crate) trait Flush: Send + Sync + 'static {
    /// Writes what is pending.
    fn flush(&self) -> Result<()>;
}

/// Starts a flush on the blocking pool without waiting for it; an error leaves the
/// data pending for the next flush.
pub(crate) fn flush_later<F: Flush>(owner: &std::sync::Arc<F>) {
    let owner = owner.clone();
    detach_blocking(move || {
        let _ = owner.flush();
    });
}

/// Acts on what [`Batch::add`] said: flushes now, or arms the timer that flushes
/// after `delay` when no further call comes to do it. The timer holds only a weak
/// reference: an owner dropped meanwhile has flushed on its own drop.
pub(crate) fn flush_when<F: Flush>(owner: &std::sync::Arc<F>, due: Due) {
    match due {
        Due::Now => flush_later(owner),
        Due::After(delay) => {
            let weak = std::sync::Arc::downgrade(owner);
            let fire = move || {
                if let Some(owner) = weak.upgrade() {
                    let _ = owner.flush();
                }
            };
            match tokio::runtime::Handle::try_current() {
                Ok(rt) => {
                    rt.spawn(async move {
                        tokio::time::sleep(delay).await;
                        crate::offload::spawn_blocking(&tokio::runtime::Handle::current(), fire);
                    });
                }
                Err(_) => {
                    std::thread::spawn(move || {
                        std::thread::sleep(delay);
                        fire();
                    });
                }
            }
        }
        Due::No => {}
    }
}

/// When the data just added should be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Due {
    /// Now: the interval has passed (the caller starts the flush).
    Now,
    /// After this delay, unless calls keep coming: the caller arms a timer, so
    /// counters never wait for a next call that may not come (a crash loses at most
    /// one interval).
    After(Duration),
    /// A flush or a timer is already on its way.
    No,
}

/// Flushes from async code and waits for it.
pub(crate) async fn flush_now<F: Flush>(owner: &std::sync::Arc<F>) -> Result<()> {
    let owner = owner.clone();
    blocking(move || owner.flush()).await
}

/// Data accumulated in memory until the next flush.
pub(crate) trait Pending: Default + Send {
    /// Nothing to write.
    fn is_empty(&self) -> bool;
    /// Takes back `unwritten` (taken by a flush that failed) into what came since.
    fn merge(&mut self, unwritten: Self);
}

/// An accumulator with a flush interval.
pub(crate) struct Batch<T> {
    state: Mutex<State<T>>,
    /// Held for a whole flush, so a flush on demand returns only after a background
    /// flush in progress has written its share too.
    turn: Mutex<()>,
    interval: Duration,
}

struct State<T> {
    data: T,
    last_flush: Instant,
    flushing: bool,
    /// A timer will flush: no other is armed until a flush ends.
    timer: bool,
}

impl<T: Pending> Batch<T> {
    pub(crate) fn new(interval: Duration) -> Self {
        Batch {
            state: Mutex::new(State {
                data: T::default(),
                last_flush: Instant::now(),
                flushing: false,
                timer: false,
            }),
            turn: Mutex::new(()),
            interval,
        }
    }

    /// Adds to the pending data and says when to write it: [`Due::Now`] when the
    /// interval has passed and no flush is running (the caller starts one, and no
    /// other caller will until it ends); [`Due::After`] when no flush or timer is on
    /// its way (the caller arms a timer); else [`Due::No`].
    pub(crate) fn add(&self, f: impl FnOnce(&mut T)) -> Due {
        let mut s = lock(&self.state);
        f(&mut s.data);
        if s.flushing {
            return Due::No;
        }
        let since = s.last_flush.elapsed();
        if since >= self.interval {
            s.flushing = true;
            return Due::Now;
        }
        if s.timer {
            return Due::No;
        }
        s.timer = true;
        Due::After(self.interval - since)
    }

    /// Takes what is pending, for a last write elsewhere (an owner being dropped).
    pub(crate) fn take(&self) -> T {
        std::mem::take(&mut lock(&self.state).data)
    }

    /// Writes what is pending with `write`. On an error the data is kept for the next
    /// flush: nothing counted is dropped because a write failed.
    pub(crate) fn flush(&self, write: impl FnOnce(&T) -> Result<()>) -> Result<()> {
        let _turn = lock(&self.turn);
        let taken = std::mem::take(&mut lock(&self.state).data);
        let out = if taken.is_empty() {
            Ok(())
        } else {
            write(&taken)
        };
        let mut s = lock(&self.state);
        if out.is_err() {
            s.data.merge(taken);
        }
        s.flushing = false;
        s.timer = false;
        s.last_flush = Instant::now();
        out
    }
}
