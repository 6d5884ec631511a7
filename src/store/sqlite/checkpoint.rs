//! WAL checkpoints. One background thread per store runs a PASSIVE checkpoint (it
//! never waits for readers or writers) shortly after every write, so most of the WAL
//! is copied into the database off the caller's thread. That alone cannot bound the
//! WAL under a steady writer: the log only starts over once a checkpoint has copied
//! everything, and a PASSIVE one running beside the writer never catches up. So small
//! commits keep SQLite's automatic checkpoint at [`AUTO_PAGES`]: the commit that
//! crosses it copies what the thread has not yet copied, and the log starts over.
//! A large transaction (a cleanup, a prune, a batch) commits with the automatic
//! checkpoint off, so it does not pay for copying everything it wrote, and the fsyncs,
//! inside its own commit (about 35 ms of a 100,000-entry cleanup); the thread copies it
//! right after.

use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::Connection;

use super::connection::{ConnectionSettings, configure, open_raw};
use super::stmt::SqlContext;
use crate::error::Result;

/// Pages in the WAL (4 MiB of 4 KiB pages) at which a commit checkpoints: SQLite's
/// default.
pub(crate) const AUTO_PAGES: i64 = 1_000;

/// Shortest time between two background checkpoints.
const PERIOD: Duration = Duration::from_millis(20);

/// Puts a connection's automatic checkpoint back after a bulk commit.
pub(crate) fn restore_auto(conn: &Connection) -> Result<()> {
    conn.pragma_update(None, "wal_autocheckpoint", AUTO_PAGES)
        .sql("PRAGMA wal_autocheckpoint")
}

#[derive(Default)]
struct Flags {
    dirty: bool,
    stop: bool,
}

/// The background checkpoint thread of one store; stopped and joined on drop.
pub(crate) struct Checkpointer {
    shared: Arc<(Mutex<Flags>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Starts the thread with its own connection. Returns `None` when that connection
    /// cannot be opened; the automatic checkpoint of the next small commit then does
    /// the work.
    pub(crate) fn start(path: &Path, settings: ConnectionSettings) -> Option<Checkpointer> {
        let conn = open_raw(path, false).ok()?;
        configure(&conn, settings).ok()?;
        let shared: Arc<(Mutex<Flags>, Condvar)> = Arc::default();
        let theirs = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("agentstore-checkpoint".into())
            .spawn(move || run(&conn, &theirs))
            .ok()?;
        Some(Checkpointer {
            shared,
            thread: Some(thread),
        })
    }

    /// Tells the thread that a transaction committed.
    pub(crate) fn note_write(&self) {
        let (lock, cvar) = &*self.shared;
        if let Ok(mut f) = lock.lock() {
            if !f.dirty {
                f.dirty = true;
                cvar.notify_one();
            }
        }
    }
}

fn run(conn: &Connection, shared: &(Mutex<Flags>, Condvar)) {
    let (lock, cvar) = shared;
    loop {
        {
            let Ok(mut f) = lock.lock() else { return };
            while !f.dirty && !f.stop {
                f = match cvar.wait(f) {
                    Ok(f) => f,
                    Err(_) => return,
                };
            }
            if f.stop {
                return;
            }
            f.dirty = false;
        }
        // PASSIVE never waits for readers or writers; what it cannot copy now, the
        // next commit past AUTO_PAGES copies.
        let _ = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
        let Ok(f) = lock.lock() else { return };
        let Ok((f, _)) = cvar.wait_timeout_while(f, PERIOD, |f| !f.stop) else {
            return;
        };
        if f.stop {
            return;
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        let (lock, cvar) = &*self.shared;
        if let Ok(mut f) = lock.lock() {
            f.stop = true;
            cvar.notify_one();
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
