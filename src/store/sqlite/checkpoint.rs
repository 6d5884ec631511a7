//! WAL checkpoints. One background thread per store runs a PASSIVE checkpoint (it
//! never waits for readers or writers) shortly after every write, so most of the WAL
//! is copied into the database off the caller's thread. That alone cannot bound the
//! WAL under a steady writer: the log only starts over once a checkpoint has copied
//! everything, and a PASSIVE one running beside the writer never catches up. So every
//! connection has our WAL hook ([`install`]) in place of SQLite's automatic checkpoint:
//! the commit that takes the log past [`AUTO_PAGES`] runs a PASSIVE checkpoint (what
//! the thread has not yet copied; it returns at once when the thread is copying), and
//! the commit that takes it past [`HARD_PAGES`] runs a RESTART checkpoint, which waits
//! (up to the busy timeout) for the thread and for readers, so the log starts over.
//! That is the bound: about `HARD_PAGES` pages plus one transaction, whatever the load.
//! A large transaction (a cleanup, a prune, a batch) commits with the hook off, so it
//! does not pay for copying everything it wrote, and the fsyncs, inside its own commit
//! (about 35 ms of a 100,000-entry cleanup); the thread copies it right after.

use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::Connection;
use rusqlite::hooks::{CheckpointMode, Wal};

use super::connection::{ConnectionSettings, configure, open_raw};

/// Pages in the WAL (4 MiB of 4 KiB pages) at which a commit runs a PASSIVE
/// checkpoint: SQLite's default for its automatic checkpoint.
pub(crate) const AUTO_PAGES: i64 = 1_000;

/// Pages in the WAL (8 MiB) at which a commit waits for the log to start over.
pub(crate) const HARD_PAGES: i64 = 2 * AUTO_PAGES;

/// Shortest time between two background checkpoints.
const PERIOD: Duration = Duration::from_millis(20);

/// Puts our WAL hook on a connection: when it is configured, and after a bulk commit
/// ([`remove`]). Setting `PRAGMA wal_autocheckpoint` would replace it.
pub(crate) fn install(conn: &Connection) {
    conn.wal_hook(Some(after_commit));
}

/// Takes the hook off for one bulk commit: nothing checkpoints inside that commit.
pub(crate) fn remove(conn: &Connection) {
    conn.wal_hook(None);
}

/// Runs after every commit with the number of pages in the log. A checkpoint that
/// finds the database busy is no error of the commit (it has committed); the next
/// commit or the thread tries again.
fn after_commit(wal: &Wal, pages: std::ffi::c_int) -> rusqlite::Result<()> {
    let pages = i64::from(pages);
    if pages >= HARD_PAGES {
        restart(wal);
    } else if pages >= AUTO_PAGES {
        let _ = wal.checkpoint_v2(CheckpointMode::PASSIVE);
    }
    Ok(())
}

/// How long a commit past [`HARD_PAGES`] waits for the checkpoint lock.
const LOCK_WAIT: Duration = Duration::from_secs(2);

/// A RESTART checkpoint. It waits for readers and writers through the busy timeout,
/// but SQLite never waits for the checkpoint lock itself: while another checkpoint
/// (usually the thread's PASSIVE one) holds it, the call fails at once with BUSY. So
/// this tries again every millisecond, for at most [`LOCK_WAIT`].
fn restart(wal: &Wal) {
    let deadline = std::time::Instant::now() + LOCK_WAIT;
    loop {
        match wal.checkpoint_v2(CheckpointMode::RESTART) {
            Err(e) if is_busy(&e) && std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(1));
            }
            _ => return,
        }
    }
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
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
    /// cannot be opened; the hook of the next small commit then does the work.
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
        // hook of the next commit past AUTO_PAGES copies.
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
