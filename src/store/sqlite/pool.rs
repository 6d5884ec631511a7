//! The connection pool: r2d2 over r2d2_sqlite, with one addition. r2d2 opens
//! connections on its own worker threads, and a worker can still hold the pool for a
//! moment after handing a connection over; a process that exits in that moment never
//! closes its idle connections, and SQLite then leaves the -wal and -shm files behind.
//! Each pooled connection here carries a guard that counts it, so dropping a store
//! waits (briefly, bounded) until every one of its connections is really closed.

use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use std::path::Path;

use r2d2::{ManageConnection, Pool};
use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::{Connection, OpenFlags};

use super::connection::{ConnectionSettings, configure};
use crate::error::Result;

/// The pool of an opened, identified file: every connection configured by
/// [`configure`], opened on first use, and counted.
pub(crate) fn build(
    path: &Path,
    settings: ConnectionSettings,
    max_size: u32,
) -> Result<(Pool<Manager>, Arc<AtomicUsize>)> {
    let sqlite = SqliteConnectionManager::file(path)
        .with_flags(OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .with_init(move |c| configure(c, settings));
    let manager = Manager::new(sqlite);
    let live = manager.live();
    let pool = Pool::builder()
        .max_size(max_size.max(1))
        // Connections are opened when first needed: a command that reads once opens
        // one, and nothing is left opening in the background when it exits.
        .min_idle(Some(0))
        // A local SQLite connection does not go stale; the default check-out test ran
        // `SELECT 1` before every call.
        .test_on_check_out(false)
        .connection_timeout(settings.busy_timeout + Duration::from_secs(5))
        .build(manager)
        .map_err(|e| crate::error::Error::Pool(Box::new(e)))?;
    Ok((pool, live))
}

/// A pooled SQLite connection that is counted while it is open.
#[derive(Debug)]
pub(crate) struct Counted {
    /// Always `Some` until dropped.
    conn: Option<Connection>,
    live: Arc<AtomicUsize>,
}

impl Counted {
    fn get(&self) -> &Connection {
        self.conn.as_ref().expect("connection present until drop")
    }
}

impl Deref for Counted {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        self.get()
    }
}

impl DerefMut for Counted {
    fn deref_mut(&mut self) -> &mut Connection {
        self.conn.as_mut().expect("connection present until drop")
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        // Close first, then stop counting: the waiter must not return before the close.
        drop(self.conn.take());
        self.live.fetch_sub(1, Ordering::SeqCst);
    }
}

/// r2d2_sqlite's manager, counting the connections it opens.
#[derive(Debug)]
pub(crate) struct Manager {
    inner: SqliteConnectionManager,
    live: Arc<AtomicUsize>,
}

impl Manager {
    pub(crate) fn new(inner: SqliteConnectionManager) -> Self {
        Manager {
            inner,
            live: Arc::default(),
        }
    }

    /// The shared count of open connections.
    pub(crate) fn live(&self) -> Arc<AtomicUsize> {
        Arc::clone(&self.live)
    }
}

impl ManageConnection for Manager {
    type Connection = Counted;
    type Error = rusqlite::Error;

    fn connect(&self) -> Result<Counted, rusqlite::Error> {
        let conn = self.inner.connect()?;
        self.live.fetch_add(1, Ordering::SeqCst);
        Ok(Counted {
            conn: Some(conn),
            live: Arc::clone(&self.live),
        })
    }

    fn is_valid(&self, conn: &mut Counted) -> Result<(), rusqlite::Error> {
        self.inner.is_valid(conn)
    }

    fn has_broken(&self, conn: &mut Counted) -> bool {
        self.inner.has_broken(conn)
    }
}

/// Waits until no connection counted by `live` is open, or `limit` has passed.
pub(crate) fn wait_closed(live: &AtomicUsize, limit: Duration) {
    let deadline = Instant::now() + limit;
    while live.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_micros(200));
    }
}
