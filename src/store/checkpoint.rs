//! WAL checkpoints off the caller's thread. SQLite's automatic checkpoint runs inside
//! the commit that crosses the threshold, so that one call pays for copying the WAL
//! into the database and the fsyncs: measured on a 100,000-entry cleanup, about 35 ms
//! of its 130 ms. A store that writes starts one thread that runs a PASSIVE checkpoint
//! shortly after writes (at most every 100 ms); each connection keeps SQLite's own
//! automatic checkpoint at a higher threshold as a backstop, so the WAL stays bounded
//! even if this thread falls behind.

use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use super::connection::{ConnectionSettings, configure};

/// Pages in the WAL at which a committing connection checkpoints by itself (40 MiB of
/// 4 KiB pages): only reached when the background checkpoint cannot keep up.
pub(crate) const BACKSTOP_PAGES: i64 = 10_000;

/// Shortest time between two background checkpoints.
const PERIOD: Duration = Duration::from_millis(100);

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
    /// cannot be opened; SQLite's backstop checkpoint then does the work.
    pub(crate) fn start(path: &Path, settings: ConnectionSettings) -> Option<Checkpointer> {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).ok()?;
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
        // PASSIVE never waits for readers or writers; a busy WAL is simply retried
        // after the next write.
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
