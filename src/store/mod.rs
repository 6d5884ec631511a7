//! The synchronous core: [`Store`] owns the connection pool, the clock and the file's
//! identity; one module per table group owns that group's SQL.

mod agents;
mod check;
mod checkpoint;
mod compact;
mod connection;
mod invariants;
mod memory;
mod migrate;
mod pool;
mod prune;
mod response_cache;
mod sql;
mod tool_cache;
mod transfer;
pub mod words;

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use r2d2::{Pool, PooledConnection};
use rusqlite::Connection;

pub use agents::{AgentRecord, MAX_NAME_CHARS, MemorySettings};
pub use check::CheckReport;
pub use compact::{CompactReport, PageUse};
pub use connection::{APPLICATION_ID, MAX_CONTENT_BYTES, SCHEMA_VERSION, Synchronous};
pub use memory::{
    CompressedContext, ListOrder, Memory, MemoryEntry, MemoryStats, NewEntry, Prune, PruneReport,
};
pub use migrate::SCHEMA_SQL;
pub use response_cache::{
    CacheMatch, CachedResponse, FuzzyOptions, LoggedResponse, Lookup, MAX_FUZZY_WORDS, NoMatch,
    Outcome, ResponseCache, ResponseOrder, ResponsePurge, ResponsePurgeReport, ResponseTimeStats,
    TimeFigures, Tuning,
};
pub use sql::{QueryResult, QuerySink, StatsView, query_read_only, query_read_only_with};
pub use tool_cache::{
    CacheFilter, CacheKey, CachedToolResult, DEFAULT_TOOL_TTL, MAX_PARAMS_DEPTH, PurgeReport,
    ToolCache, ToolCallStats, ToolCounts, ToolStats, canonical_json,
};
pub use transfer::{EXPORT_FORMAT, EXPORT_VERSION, ExportReport, ImportReport, MAX_IMPORT_LINE};

use crate::clock::{Clock, SystemClock};
use crate::error::{Error, Result, SqlContext};
use connection::{ConnectionSettings, Identity};

/// How to open a [`Store`].
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Create the file (owner-only permissions) and its schema if it does not exist.
    /// Commands that only read set this to `false`, so they never create a file.
    pub create: bool,
    /// Commit durability; see [`Synchronous`].
    pub synchronous: Synchronous,
    /// How long a statement waits for another process's lock before failing.
    pub busy_timeout: Duration,
    /// Most pooled connections at once.
    pub pool_size: u32,
    /// Where time comes from.
    pub clock: Arc<dyn Clock>,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            create: true,
            synchronous: Synchronous::Normal,
            busy_timeout: Duration::from_secs(5),
            pool_size: 8,
            clock: Arc::new(SystemClock),
        }
    }
}

impl StoreOptions {
    /// Options for a command that only reads: the file must already exist.
    pub fn existing() -> Self {
        StoreOptions {
            create: false,
            ..Self::default()
        }
    }

    /// These options with another clock.
    pub fn with_clock(mut self, clock: impl Clock + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }
}

/// An open agentstore database. Cheap to clone; clones share the pool.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    /// `None` only while being dropped.
    pool: Option<Pool<pool::Manager>>,
    /// Open pooled connections, for waiting until all are closed on drop.
    live: Arc<AtomicUsize>,
    clock: Arc<dyn Clock>,
    path: PathBuf,
    settings: ConnectionSettings,
    /// Started by the first write; stopped and joined when the last clone is dropped.
    checkpointer: OnceLock<Option<checkpoint::Checkpointer>>,
    /// Serialises this process's write transactions. Without it, concurrent writers
    /// meet in SQLite's busy handler, which sleeps 1, 2, 5, 10... ms between retries:
    /// W6's 24 concurrent stores took 31 ms instead of 12. Other processes are still
    /// kept out by SQLite's lock and the busy timeout.
    write_lock: Mutex<()>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Close every pooled connection before returning, so that the last close can
        // checkpoint and remove the -wal and -shm files (see pool.rs).
        drop(self.pool.take());
        pool::wait_closed(&self.live, Duration::from_secs(2));
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.inner.path)
            .finish()
    }
}

impl Store {
    /// Opens (or, with `options.create`, creates) the database at `path`.
    ///
    /// The file's identity is checked before anything can write to it: a file that is
    /// not SQLite, a damaged one, an SQLite database of another application (or with
    /// our marks but not our tables), or one written by a newer agentstore is refused
    /// and left byte-for-byte untouched. An older agentstore file is migrated in one
    /// transaction.
    ///
    /// # Errors
    /// [`Error::NotFound`], [`Error::NotADatabase`], [`Error::Corrupt`],
    /// [`Error::ForeignDatabase`], [`Error::TooNew`], or an I/O or SQLite error.
    pub fn open(path: impl AsRef<Path>, options: StoreOptions) -> Result<Store> {
        let path = path.as_ref().to_path_buf();
        connection::refuse_unusable_path(&path)?;
        if !path.exists() {
            if !options.create {
                return Err(Error::NotFound(path));
            }
            connection::create_private_file(&path)?;
        }
        let settings = ConnectionSettings {
            busy_timeout: options.busy_timeout,
            synchronous: options.synchronous,
        };

        {
            let mut conn = connection::open_raw(&path, false)?;
            conn.busy_timeout(options.busy_timeout)
                .sql("busy_timeout")?;
            match connection::identify(&conn, &path)? {
                Identity::Ours { version } if version == SCHEMA_VERSION => {}
                // An empty file holds no agentstore data; a reader must not initialise it.
                Identity::Empty if !options.create => return Err(Error::NotFound(path)),
                // Switching a new file to WAL needs an exclusive lock, and SQLite answers
                // "busy" at once, without the busy handler, while another process is
                // initialising the same file.
                _ => connection::retry_while_busy(options.busy_timeout, || {
                    connection::configure(&conn, settings).sql("configure connection")?;
                    migrate::migrate(&mut conn, &path)
                })?,
            }
        }
        let (pool, live) = pool::build(&path, settings, options.pool_size)?;
        Ok(Store {
            inner: Arc::new(Inner {
                pool: Some(pool),
                live,
                clock: options.clock,
                path,
                settings,
                checkpointer: OnceLock::new(),
                write_lock: Mutex::new(()),
            }),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The current time of the store's clock, in microseconds since the epoch.
    pub fn now_micros(&self) -> i64 {
        self.inner.clock.now_micros()
    }

    /// Copies the whole WAL into the database file and truncates the WAL, waiting (up
    /// to the busy timeout) for other connections. Checkpoints normally run in the
    /// background; call this before copying the file or timing something else.
    ///
    /// # Errors
    /// SQLite errors, e.g. busy when another process holds the file past the timeout.
    pub fn checkpoint(&self) -> Result<()> {
        const SQL: &str = "PRAGMA wal_checkpoint(TRUNCATE)";
        // Another checkpoint in progress (the background one) makes this one report
        // "busy" at once rather than wait.
        connection::retry_while_busy(self.inner.settings.busy_timeout, || {
            let busy: i64 = self.read(|c| c.query_row(SQL, [], |r| r.get(0)).sql(SQL))?;
            match busy {
                0 => Ok(()),
                _ => Err(connection::busy_error(SQL)),
            }
        })
    }

    fn conn(&self) -> Result<PooledConnection<pool::Manager>> {
        match &self.inner.pool {
            Some(p) => Ok(p.get()?),
            None => unreachable!("the pool is only taken while the store is dropped"),
        }
    }

    /// Runs `f` on a pooled connection, outside any transaction (for single statements).
    pub(crate) fn read<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let conn = self.conn()?;
        f(&conn)
    }

    /// [`Store::read`] only if a pooled connection is idle now: `None` instead of
    /// waiting for one. For async callers, which must not block their worker thread.
    pub(crate) fn try_read<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T>,
    ) -> Option<Result<T>> {
        let conn = self.inner.pool.as_ref()?.try_get()?;
        Some(f(&conn))
    }

    /// Runs `f` in a read transaction: every statement sees the same snapshot.
    pub(crate) fn snapshot<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let conn = self.conn()?;
        conn.execute_batch("BEGIN").sql("BEGIN")?;
        let out = f(&conn);
        // Nothing was written, so ending the transaction cannot lose anything; after
        // an error SQLite may already have ended it, or refuse COMMIT on a damaged
        // file. Either way the connection goes back to the pool in autocommit mode.
        if !conn.is_autocommit() && conn.execute_batch("COMMIT").is_err() {
            let _ = conn.execute_batch("ROLLBACK");
        }
        out
    }

    /// Runs `f` in a write transaction that takes the write lock up front
    /// (`BEGIN IMMEDIATE`): in WAL mode a deferred transaction that reads and then
    /// writes can fail with SQLITE_BUSY whatever the busy timeout. Commits when `f`
    /// returns Ok, rolls back otherwise. A commit that takes the WAL past
    /// [`checkpoint::AUTO_PAGES`] checkpoints what the background thread has not yet
    /// copied (see checkpoint.rs).
    pub(crate) fn write<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let _turn = self.write_turn();
        let conn = self.conn()?;
        let out = WriteTx::run(&conn, self.inner.settings.busy_timeout, f)?;
        self.after_commit();
        Ok(out)
    }

    /// This process's turn to write (see `Inner::write_lock`). A writer that panicked
    /// rolled back (WriteTx), so the lock is usable after a panic.
    fn write_turn(&self) -> MutexGuard<'_, ()> {
        self.inner
            .write_lock
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Wakes the background checkpoint, started by the first write.
    fn after_commit(&self) {
        let inner = &*self.inner;
        if let Some(c) = inner
            .checkpointer
            .get_or_init(|| checkpoint::Checkpointer::start(&inner.path, inner.settings))
        {
            c.note_write();
        }
    }

    /// [`Store::write`] for a transaction that may write many pages (a cleanup, a
    /// prune, a batch): its commit does not checkpoint; the background thread copies
    /// the WAL right after, so the caller does not wait for that copy and its fsyncs.
    pub(crate) fn write_bulk<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        const OFF: &str = "PRAGMA wal_autocheckpoint = 0";
        let _turn = self.write_turn();
        let conn = self.conn()?;
        conn.execute_batch(OFF).sql(OFF)?;
        let done = WriteTx::run(&conn, self.inner.settings.busy_timeout, f);
        let restored = checkpoint::restore_auto(&conn);
        let out = done?;
        restored?;
        self.after_commit();
        Ok(out)
    }
}

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

    pub(crate) fn new(store: &Store) -> Self {
        BatchSizer {
            rows: Self::FIRST,
            budget: store.inner.settings.busy_timeout / 8,
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

/// How long SQLite's busy handler may wait inside one attempt to take the write lock
/// before [`WriteTx::begin`] tries again.
const LOCK_POLL: Duration = Duration::from_millis(10);

/// A `BEGIN IMMEDIATE` transaction on a pooled connection, rolled back on drop unless
/// committed, so an error or a panic in the middle returns the connection to the pool
/// in autocommit mode with no lock held. BEGIN and COMMIT are cached statements
/// (rusqlite's `Transaction` parses them on every call).
struct WriteTx<'c> {
    conn: &'c Connection,
    done: bool,
}

impl<'c> WriteTx<'c> {
    /// Runs `f` inside the transaction; commits when it returns Ok.
    fn run<T>(
        conn: &'c Connection,
        busy_timeout: Duration,
        f: impl FnOnce(&Connection) -> Result<T>,
    ) -> Result<T> {
        let tx = WriteTx::begin(conn, busy_timeout)?;
        let out = f(conn)?;
        tx.commit()?;
        Ok(out)
    }

    /// Takes the write lock, waiting up to `busy_timeout` for other processes. SQLite's
    /// own busy handler sleeps longer and longer between polls (up to 100 ms), so
    /// against writers that commit back to back it keeps missing the short gaps between
    /// their transactions; here it polls in slices of [`LOCK_POLL`] instead, which finds
    /// a gap within a few milliseconds.
    fn begin(conn: &'c Connection, busy_timeout: Duration) -> Result<Self> {
        const BEGIN: &str = "BEGIN IMMEDIATE";
        let deadline = Instant::now() + busy_timeout;
        conn.busy_timeout(LOCK_POLL.min(busy_timeout))
            .sql("busy_timeout")?;
        let began = loop {
            match conn.prepare_cached(BEGIN).and_then(|mut s| s.execute([])) {
                Err(e)
                    if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy)
                        && Instant::now() < deadline => {}
                other => break other,
            }
        };
        // Statements inside the transaction keep the whole timeout (a checkpoint or a
        // reader's recovery can still make them wait).
        let restored = conn.busy_timeout(busy_timeout);
        began.sql(BEGIN)?;
        // From here the guard rolls back if anything fails.
        let tx = WriteTx { conn, done: false };
        restored.sql("busy_timeout")?;
        Ok(tx)
    }

    fn commit(mut self) -> Result<()> {
        const COMMIT: &str = "COMMIT";
        self.conn
            .prepare_cached(COMMIT)
            .and_then(|mut s| s.execute([]))
            .sql(COMMIT)?;
        self.done = true;
        Ok(())
    }
}

impl Drop for WriteTx<'_> {
    fn drop(&mut self) {
        if !self.done && !self.conn.is_autocommit() {
            let _ = self.conn.execute_batch("ROLLBACK");
        }
    }
}
