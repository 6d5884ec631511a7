//! The SQLite engine: one file, an r2d2 pool of connections in WAL mode, a background
//! checkpoint, and one module per table group implementing that group's operations of
//! the seam (`store::engine`). Nothing outside this folder names rusqlite or r2d2.

mod agents;
mod check;
mod checkpoint;
mod compact;
mod connection;
mod forget;
mod lease;
mod memory;
mod migrate;
mod pool;
mod prune;
mod recall;
mod report;
mod responses;
mod sql;
mod stmt;
mod tool_cache;
mod transfer;

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use r2d2::{Pool, PooledConnection};
use rusqlite::Connection;

pub use connection::{APPLICATION_ID, SCHEMA_VERSION};
pub use migrate::SCHEMA_SQL;
pub(crate) use sql::query_read_only_with;

use super::SqliteOptions;
use super::engine::AdminOps;
use super::transfer::{ImportSink, Record};
use super::{CheckReport, CompactReport, ImportReport, PageUse, QueryResult, QuerySink, StatsView};
use crate::error::{Error, Result};
use connection::{ConnectionSettings, Identity};
use stmt::SqlContext;

/// An open SQLite database file, as the store's engine.
pub(crate) struct Sqlite {
    /// `None` only while being dropped.
    pool: Option<Pool<pool::Manager>>,
    /// Open pooled connections, for waiting until all are closed on drop.
    live: Arc<AtomicUsize>,
    path: PathBuf,
    /// `sqlite:` and the canonical path: two stores of one file have the same.
    identity: String,
    settings: ConnectionSettings,
    /// Started by the first write; stopped and joined when the engine is dropped.
    checkpointer: OnceLock<Option<checkpoint::Checkpointer>>,
    /// Serialises this process's write transactions. Without it, concurrent writers
    /// meet in SQLite's busy handler, which sleeps 1, 2, 5, 10... ms between retries:
    /// W6's 24 concurrent stores took 31 ms instead of 12. Other processes are still
    /// kept out by SQLite's lock and the busy timeout.
    write_lock: Mutex<()>,
}

impl Drop for Sqlite {
    fn drop(&mut self) {
        // Close every pooled connection before returning, so that the last close can
        // checkpoint and remove the -wal and -shm files (see pool.rs).
        drop(self.pool.take());
        pool::wait_closed(&self.live, Duration::from_secs(2));
    }
}

impl Sqlite {
    /// Opens (or, with `create`, creates) the database at `path`; see `Store::open`.
    pub(crate) fn open(path: &Path, create: bool, options: &SqliteOptions) -> Result<Sqlite> {
        let path = path.to_path_buf();
        connection::refuse_unusable_path(&path)?;
        if !path.exists() {
            if !create {
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
                Identity::Empty if !create => return Err(Error::NotFound(path)),
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
        let canonical = std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone());
        Ok(Sqlite {
            pool: Some(pool),
            live,
            identity: format!("sqlite:{}", canonical.display()),
            path,
            settings,
            checkpointer: OnceLock::new(),
            write_lock: Mutex::new(()),
        })
    }

    fn conn(&self) -> Result<PooledConnection<pool::Manager>> {
        match &self.pool {
            Some(p) => p.get().map_err(|e| Error::Pool(Box::new(e))),
            None => unreachable!("the pool is only taken while the engine is dropped"),
        }
    }

    /// Runs `f` on a pooled connection, outside any transaction (for single statements).
    fn read<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let conn = self.conn()?;
        f(&conn)
    }

    /// [`Sqlite::read`] only if a pooled connection is idle now: `None` instead of
    /// waiting for one. For async callers, which must not block their worker thread.
    fn try_read<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Option<Result<T>> {
        let conn = self.pool.as_ref()?.try_get()?;
        Some(f(&conn))
    }

    /// Runs `f` in a read transaction: every statement sees the same snapshot.
    fn snapshot<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
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
    /// copied, past [`checkpoint::HARD_PAGES`] it waits for the log to start over
    /// (see checkpoint.rs).
    fn write<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let _turn = self.write_turn();
        let conn = self.conn()?;
        let out = WriteTx::run(&conn, self.settings.busy_timeout, f)?;
        self.after_commit();
        Ok(out)
    }

    /// This process's turn to write (see `Sqlite::write_lock`). A writer that panicked
    /// rolled back (WriteTx), so the lock is usable after a panic.
    fn write_turn(&self) -> MutexGuard<'_, ()> {
        self.write_lock.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Wakes the background checkpoint, started by the first write.
    fn after_commit(&self) {
        if let Some(c) = self
            .checkpointer
            .get_or_init(|| checkpoint::Checkpointer::start(&self.path, self.settings))
        {
            c.note_write();
        }
    }

    /// [`Sqlite::write`] for a transaction that may write many pages (a cleanup, a
    /// prune, a batch): its commit does not checkpoint; the background thread copies
    /// the WAL right after, so the caller does not wait for that copy and its fsyncs.
    fn write_bulk<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let _turn = self.write_turn();
        let conn = self.conn()?;
        checkpoint::remove(&conn);
        let done = WriteTx::run(&conn, self.settings.busy_timeout, f);
        checkpoint::install(&conn);
        let out = done?;
        self.after_commit();
        Ok(out)
    }

    /// [`Sqlite::write`] or [`Sqlite::write_bulk`].
    fn write_as<T>(&self, bulk: bool, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        if bulk {
            self.write_bulk(f)
        } else {
            self.write(f)
        }
    }
}

impl Sqlite {
    /// [`Sqlite::write_bulk`] for a transaction that removes text for good (a forget):
    /// with `secure_delete` ON, so every page it frees or changes is overwritten with
    /// zeros where the text was, freelist pages included; then, when the file has
    /// incremental vacuum, the free pages are given back to the file system (older
    /// free pages may hold copies from before, when the text was moved); then the
    /// WAL, which still holds the old page images, is checkpointed and truncated.
    /// Returns `f`'s result and whether that last step finished (a reader in another
    /// process can keep it from doing so until the busy timeout).
    fn write_forgetting<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<(T, bool)> {
        const ON: &str = "PRAGMA secure_delete = ON";
        const FAST: &str = "PRAGMA secure_delete = FAST";
        const VACUUM: &str = "PRAGMA incremental_vacuum";
        const TRUNCATE: &str = "PRAGMA wal_checkpoint(TRUNCATE)";
        let out = {
            let _turn = self.write_turn();
            let conn = self.conn()?;
            conn.execute_batch(ON).sql(ON)?;
            let done = WriteTx::run(&conn, self.settings.busy_timeout, |c| {
                let out = f(c)?;
                let incremental: i64 = stmt::row(c, "PRAGMA auto_vacuum", [], |r| r.get(0))?;
                if incremental == 2 {
                    c.execute_batch(VACUUM).sql(VACUUM)?;
                }
                Ok(out)
            });
            let restored = conn.execute_batch(FAST).sql(FAST);
            let out = done?;
            restored?;
            out
        };
        let scrubbed = connection::retry_while_busy(self.settings.busy_timeout, || {
            let (busy, log, copied): (i64, i64, i64) = self
                .read(|c| stmt::row(c, TRUNCATE, [], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))))?;
            match busy {
                0 if log == copied => Ok(()),
                _ => Err(connection::busy_error(TRUNCATE)),
            }
        })
        .is_ok();
        Ok((out, scrubbed))
    }

    /// Indexes what waits for the memory search index (a write, only when something
    /// waits), so that a read of the index that follows sees every entry.
    fn sync_search_for_read(&self) -> Result<()> {
        if self.read(recall::search_pending)? {
            self.write(recall::sync_search)?;
        }
        Ok(())
    }

    /// Copies the whole WAL into the database file and truncates the WAL, waiting (up
    /// to the busy timeout) for other connections.
    fn checkpoint_now(&self) -> Result<()> {
        const SQL: &str = "PRAGMA wal_checkpoint(TRUNCATE)";
        // Another checkpoint in progress (the background one) makes this one report
        // "busy" at once rather than wait.
        connection::retry_while_busy(self.settings.busy_timeout, || {
            let busy: i64 = self.read(|c| stmt::row(c, SQL, [], |r| r.get(0)))?;
            match busy {
                0 => Ok(()),
                _ => Err(connection::busy_error(SQL)),
            }
        })
    }
}

impl AdminOps for Sqlite {
    fn check(&self) -> Result<CheckReport> {
        self.check_report()
    }

    fn export(
        &self,
        agent: Option<&str>,
        emit: &mut dyn FnMut(Record) -> Result<()>,
    ) -> Result<()> {
        self.export_records(agent, emit)
    }

    fn import(
        &self,
        run: &mut dyn FnMut(&mut dyn ImportSink) -> Result<ImportReport>,
    ) -> Result<ImportReport> {
        self.import_records(run)
    }

    fn view(&self, view: StatsView, agent: Option<&str>) -> Result<QueryResult> {
        self.view_rows(view, agent)
    }

    fn page_use(&self) -> Result<PageUse> {
        self.pages()
    }

    fn compact(&self, full: bool) -> Result<CompactReport> {
        self.compact_file(full)
    }

    fn checkpoint(&self) -> Result<()> {
        self.checkpoint_now()
    }

    fn reindex(&self) -> Result<u64> {
        self.reindex()
    }

    fn forget_everywhere(
        &self,
        agent_id: i64,
        scope: &str,
        query: &crate::store::memory::Query,
        needles: &crate::store::forget::Needles,
        dry_run: bool,
    ) -> Result<crate::store::ForgetEverywhereReport> {
        self.forget_all(agent_id, scope, query, needles, dry_run)
    }

    fn query_read_only(
        &self,
        sql: &str,
        timeout: Duration,
        sink: &mut dyn QuerySink,
    ) -> Result<u64> {
        sql::query_read_only_with(&self.path, sql, timeout, sink)
    }
}

impl super::engine::Engine for Sqlite {
    fn identity(&self) -> &str {
        &self.identity
    }

    /// A read is a few microseconds on a local file: an async caller may run it on its
    /// worker thread (when a pooled connection is idle; see the `try_` operations).
    fn reads_inline(&self) -> bool {
        true
    }

    fn busy_timeout(&self) -> Duration {
        self.settings.busy_timeout
    }

    fn sqlite_path(&self) -> Option<&Path> {
        Some(&self.path)
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
        // The memory search index's queues are emptied in the transaction that filled
        // them when due (see schema.sql).
        recall::sync_search_if_due(conn)?;
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
