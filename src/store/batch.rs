//! Long deletes in batches: one policy for every prune and purge, so none holds the
//! write lock long while agents keep writing.

use std::time::{Duration, Instant};

use crate::error::Result;

/// Sizes the write transactions of a long delete (a prune, a purge) so that none holds
/// the write lock for more than an eighth of the busy timeout: half of what the
/// reliability promise allows (a quarter), so that other writers, agents included,
/// wait far less than their busy timeout. Starts small, doubles while batches are
/// quick, halves when one was slow, and leaves a gap between batches. The time
/// measured includes waiting for the lock, which only makes batches smaller.
pub(crate) struct BatchSizer {
    rows: i64,
    budget: Duration,
}

impl BatchSizer {
    const FIRST: i64 = 64;
    const MIN: i64 = 16;
    const MAX: i64 = 50_000;

    /// A sizer for an engine whose writers wait up to `busy_timeout`.
    pub(crate) fn new(busy_timeout: Duration) -> Self {
        BatchSizer {
            rows: Self::FIRST,
            budget: busy_timeout / 8,
        }
    }

    /// Rows for the next batch.
    pub(crate) fn rows(&self) -> i64 {
        self.rows
    }

    /// Records how long the last batch took, then, before the next one, leaves the
    /// write lock free for as long. SQLite's busy handler is not a queue: a waiting
    /// writer sleeps and polls, and back-to-back batches would leave it only a moment
    /// between two of them; with equal gaps half of its polls find the lock free.
    pub(crate) fn next(&mut self, elapsed: Duration) {
        if elapsed > self.budget {
            self.rows = (self.rows / 2).max(Self::MIN);
        } else if elapsed < self.budget / 4 {
            self.rows = (self.rows * 2).min(Self::MAX);
        }
        std::thread::sleep(elapsed.min(self.budget));
    }
}

/// What [`in_batches`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Batches {
    /// Rows removed over all batches.
    pub rows: u64,
    /// Batches that ran.
    pub batches: u64,
}

/// Runs `batch(rows)` (one transaction that removes up to `rows` rows and says how
/// many it removed, and whether that was the last) until a batch says so, sized by a
/// [`BatchSizer`]. Each batch is all-or-nothing; a run killed between two batches is
/// finished by running it again.
pub(crate) fn in_batches(
    busy_timeout: Duration,
    mut batch: impl FnMut(i64) -> Result<Option<(u64, bool)>>,
) -> Result<Batches> {
    let mut sizer = BatchSizer::new(busy_timeout);
    let mut done = Batches::default();
    loop {
        let started = Instant::now();
        let rows = sizer.rows();
        let Some((removed, last)) = batch(rows)? else {
            return Ok(done);
        };
        done.rows += removed;
        done.batches += 1;
        if last {
            return Ok(done);
        }
        sizer.next(started.elapsed());
    }
}

/// A batch's answer for a delete whose end is "fewer than `rows` rows were left".
pub(crate) fn removed(n: u64, rows: i64) -> Option<(u64, bool)> {
    Some((n, (n as i64) < rows))
}
