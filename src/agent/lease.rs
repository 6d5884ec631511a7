//! Single-flight across processes: a lease on a call's key (see `store::lease`),
//! renewed while the call runs and given up when it ends, so that identical calls in
//! other processes (or hosts, on PostgreSQL) wait for its result instead of running it
//! too. A holder that dies stops renewing; its lease expires after at most one lease
//! duration and a waiter takes over.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::batch::blocking;
use crate::Store;
use crate::error::Result;

/// How long a lease lasts without a renewal (the longest a waiter waits for a holder
/// that died). The holder renews it every third of this.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(10);

/// The first and the longest wait between two looks at the result a waiter waits for.
const FIRST_POLL: Duration = Duration::from_millis(2);
const LONGEST_POLL: Duration = Duration::from_millis(50);

/// This process's name as a lease holder: unique across processes and hosts.
pub(crate) fn holder() -> &'static str {
    static HOLDER: OnceLock<String> = OnceLock::new();
    HOLDER.get_or_init(|| {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        format!("pid {} #{:016x}", std::process::id(), h.finish())
    })
}

/// A lease this process holds: renewed in the background, given up on drop (or by
/// the write that stores its call's result, see [`Lease::end`]).
pub(crate) struct Lease {
    store: Store,
    key: [u8; 32],
    renewer: Option<tokio::task::JoinHandle<()>>,
    /// Whether the drop still has to give it up.
    held: bool,
}

impl Lease {
    /// Takes the lease on `key` if it is free or expired; `None` when another holder
    /// has it.
    pub(crate) async fn take(
        store: &Store,
        key: [u8; 32],
        duration: Duration,
    ) -> Result<Option<Lease>> {
        let s = store.clone();
        if !blocking(move || s.lease_take(&key, holder(), duration)).await? {
            return Ok(None);
        }
        let s = store.clone();
        let renewer = tokio::spawn(async move {
            let every = (duration / 3).max(Duration::from_millis(10));
            loop {
                tokio::time::sleep(every).await;
                let s = s.clone();
                let renewed =
                    crate::offload::spawn_blocking(&tokio::runtime::Handle::current(), move || {
                        s.lease_renew(&key, holder(), duration)
                    })
                    .await;
                if !matches!(renewed, Ok(Ok(true))) {
                    // Lost (a store error, or taken over after expiring): the result is
                    // still stored when the call ends; a waiter may have run it too.
                    return;
                }
            }
        });
        Ok(Some(Lease {
            store: store.clone(),
            key,
            renewer: Some(renewer),
            held: true,
        }))
    }

    /// The key the lease is on.
    pub(crate) fn key(&self) -> [u8; 32] {
        self.key
    }

    /// Ends the lease: the renewals stop, and it is given up unless a store has
    /// already done it (`given_up_by_store`: the write of the call's result, with this
    /// process as the holder, succeeded).
    pub(crate) fn end(mut self, given_up_by_store: bool) {
        self.held = !given_up_by_store;
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(r) = self.renewer.take() {
            r.abort();
        }
        if !self.held {
            return;
        }
        let (store, key) = (self.store.clone(), self.key);
        let release = move || {
            // A release that fails leaves the lease to expire.
            let _ = store.lease_release(&key, holder());
        };
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => drop(crate::offload::spawn_blocking(&rt, release)),
            Err(_) => release(),
        }
    }
}

/// What [`once`] ended with.
pub(crate) enum Once<T, U> {
    /// This caller held the lease: what `run` returned.
    Ran(U),
    /// Another holder's result, found by `look`.
    Found(T),
    /// Still held by another at `deadline`.
    Waited,
}

/// Runs `run` under the lease on `key`, or, while another holder has it, waits for
/// the result `look` finds (polling with a growing delay) until `deadline`; takes the
/// lease over when it is given up or expires without a result. `run` gets the lease,
/// to keep it as long as its work lasts.
pub(crate) async fn once<T, U, L, LF, R, RF>(
    store: &Store,
    key: [u8; 32],
    duration: Duration,
    deadline: Option<Instant>,
    look: L,
    run: R,
) -> Result<Once<T, U>>
where
    L: Fn() -> LF,
    LF: std::future::Future<Output = Result<Option<T>>>,
    R: FnOnce(Lease) -> RF,
    RF: std::future::Future<Output = U>,
{
    let mut delay = FIRST_POLL;
    let mut waited = false;
    loop {
        if let Some(lease) = Lease::take(store, key, duration).await? {
            // After a wait, the holder before may have finished just now: its result
            // wins. (On the first take the caller has just looked and missed.)
            if waited && let Some(found) = look().await? {
                drop(lease);
                return Ok(Once::Found(found));
            }
            return Ok(Once::Ran(run(lease).await));
        }
        waited = true;
        let mut pause = delay;
        if let Some(deadline) = deadline {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(Once::Waited);
            }
            pause = pause.min(left);
        }
        tokio::time::sleep(pause).await;
        delay = (delay * 2).min(LONGEST_POLL);
        if let Some(found) = look().await? {
            return Ok(Once::Found(found));
        }
    }
}
