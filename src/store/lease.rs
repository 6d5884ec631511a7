//! Leases of calls in progress (`leases`): what makes a cacheable tool call, or a new
//! message of one agent, run once across processes and hosts. The first caller takes
//! the lease for a while and renews it while it runs; others wait for its result, and
//! take the lease over once it has expired (its holder died). No lease is held inside
//! a transaction: each step is a short write of its own.

use std::time::Duration;

use super::Store;
use crate::clock::duration_micros;
use crate::error::Result;

impl Store {
    /// Takes the lease on `key` for `holder` for `duration` if it is free, expired or
    /// already `holder`'s: true when taken.
    pub(crate) fn lease_take(
        &self,
        key: &[u8; 32],
        holder: &str,
        duration: Duration,
    ) -> Result<bool> {
        let now = self.now_micros();
        let until = now.saturating_add(duration_micros(duration));
        Ok(self.engine().lease_take(key, holder, now, until)?.is_none())
    }

    /// Extends `holder`'s lease on `key` by `duration` from now; false when it is not
    /// `holder`'s any more.
    pub(crate) fn lease_renew(
        &self,
        key: &[u8; 32],
        holder: &str,
        duration: Duration,
    ) -> Result<bool> {
        let until = self.now_micros().saturating_add(duration_micros(duration));
        self.engine().lease_renew(key, holder, until)
    }

    /// Gives `holder`'s lease on `key` up.
    pub(crate) fn lease_release(&self, key: &[u8; 32], holder: &str) -> Result<()> {
        self.engine().lease_release(key, holder)
    }
}
