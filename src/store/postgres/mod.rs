//! The PostgreSQL engine: a shared server, an r2d2 pool of `postgres` clients, and
//! one module per table group implementing that group's operations of the seam
//! (`store::engine`). Nothing outside this folder names the `postgres` crate.
//!
//! Every statement is an unnamed, typed one (`query_typed`: parse, bind and execute
//! in one round trip, no prepared statement that outlives it), and every transaction
//! sets what it needs with `SET LOCAL` in the same round trip as its `BEGIN`, so a
//! transaction-mode pooler such as PgBouncer works: no session state is relied on.
//! Concurrency is per agent: an operation that reads, then writes an agent's rows
//! first locks that agent's counter row (`UPDATE memory_counters ... RETURNING`), so
//! two agents' writers never wait for each other.
//!
//! A `postgres::Client` runs a small runtime of its own: it must not be called, or
//! dropped, on a tokio worker thread. The store's callers (the agent layer) run every
//! store call off the workers, because [`Engine::reads_inline`] says no here.

mod admin;
mod agents;
mod lease;
mod memory;
mod migrate;
mod pool;
mod prepared;
mod prune;
mod qualify;
mod report;
mod responses;
mod sql;
mod tool_cache;
mod transfer;

use std::path::Path;
use std::time::Duration;

use postgres::types::{ToSql, Type};
use postgres::{Client, Row};

use super::engine::Engine;
use super::{PostgresUrl, StoreOptions};
use crate::error::{DbErrorKind, Error, Result, short_statement};

/// An open PostgreSQL database, as the store's engine.
pub(crate) struct Postgres {
    /// `None` only while being dropped.
    pool: Option<r2d2::Pool<pool::Manager>>,
    /// `postgres://host:port/dbname?schema=...` (no user, no password): two stores
    /// on one database and schema have the same.
    identity: String,
    /// `SET LOCAL` statements every transaction starts with (search path, lock
    /// timeout), sent with its `BEGIN`.
    preamble: String,
    lock_timeout: Duration,
    /// The lock timeout in milliseconds, as text: the parameter of the schema's
    /// functions that write alone in autocommit and set it themselves.
    lock_timeout_ms: String,
    /// The schema that holds agentstore's tables (a plain identifier).
    schema: String,
    /// Qualifies statements with the schema (set once the schema is known).
    qualifier: Option<std::sync::Arc<qualify::Qualifier>>,
    /// The pool's generation (see `pool::Manager`), bumped when a connection is lost.
    generation: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

/// A value with the PostgreSQL type it binds as (for `query_typed`).
pub(crate) trait Arg: ToSql + Sync {
    /// The parameter's type.
    const TYPE: Type;
}

impl Arg for i64 {
    const TYPE: Type = Type::INT8;
}
impl Arg for f64 {
    const TYPE: Type = Type::FLOAT8;
}
impl Arg for bool {
    const TYPE: Type = Type::BOOL;
}
impl Arg for &str {
    const TYPE: Type = Type::TEXT;
}
impl Arg for String {
    const TYPE: Type = Type::TEXT;
}
impl Arg for &[u8] {
    const TYPE: Type = Type::BYTEA;
}
impl Arg for Vec<u8> {
    const TYPE: Type = Type::BYTEA;
}
impl Arg for Option<i64> {
    const TYPE: Type = Type::INT8;
}
impl Arg for Option<f64> {
    const TYPE: Type = Type::FLOAT8;
}
impl Arg for Option<&str> {
    const TYPE: Type = Type::TEXT;
}
impl Arg for Option<String> {
    const TYPE: Type = Type::TEXT;
}
impl Arg for Vec<i64> {
    const TYPE: Type = Type::INT8_ARRAY;
}

/// The type of an argument, for [`args!`].
pub(crate) fn type_of<T: Arg>(_: &T) -> Type {
    T::TYPE
}

/// Typed parameters for `query_typed`: `args![a, b]`.
macro_rules! args {
    ($($a:expr),* $(,)?) => {
        &[$((&$a as &(dyn postgres::types::ToSql + Sync), $crate::store::postgres::type_of(&$a))),*]
    };
}
pub(crate) use args;

/// Parameters as `query_typed` takes them.
pub(crate) type Args<'a> = &'a [(&'a (dyn ToSql + Sync), Type)];

/// A driver error as the store reports it, classified, with its statement.
pub(crate) fn wrap(source: postgres::Error, statement: &str) -> Error {
    use postgres::error::SqlState;
    let kind = match source.code() {
        Some(c)
            if *c == SqlState::T_R_SERIALIZATION_FAILURE
                || *c == SqlState::T_R_DEADLOCK_DETECTED
                || *c == SqlState::LOCK_NOT_AVAILABLE
                || *c == SqlState::QUERY_CANCELED =>
        {
            DbErrorKind::Busy
        }
        Some(c) if c.code().starts_with("23") => DbErrorKind::Constraint,
        Some(c) if *c == SqlState::DATA_CORRUPTED || *c == SqlState::INDEX_CORRUPTED => {
            DbErrorKind::Damaged
        }
        Some(c) if *c == SqlState::DISK_FULL => return Error::DiskFull,
        Some(c) if *c == SqlState::READ_ONLY_SQL_TRANSACTION => return Error::ReadOnlyDatabase,
        _ => DbErrorKind::Other,
    };
    Error::Sql {
        kind,
        statement: short_statement(statement),
        source: Box::new(Driver(source)),
    }
}

/// A driver error shown with the server's own words (the driver's `Display` of a
/// server error is only "db error").
#[derive(Debug)]
pub(crate) struct Driver(pub(crate) postgres::Error);

impl std::fmt::Display for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0.as_db_error() {
            Some(db) => write!(f, "{}", db.message()),
            None => write!(f, "{}", self.0),
        }
    }
}

impl std::error::Error for Driver {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

/// Attaches the failing statement to a driver error.
pub(crate) trait PgContext<T> {
    /// Wraps the error with the statement that raised it.
    fn sql(self, statement: &str) -> Result<T>;
}

impl<T> PgContext<T> for std::result::Result<T, postgres::Error> {
    fn sql(self, statement: &str) -> Result<T> {
        self.map_err(|e| wrap(e, statement))
    }
}

/// Runs `sql` once; the rows it changed. Every statement of the engine goes through
/// these helpers, which qualify agentstore's names with the store's schema.
pub(crate) fn exec(c: &mut Client, sql: &str, args: Args<'_>) -> Result<u64> {
    let q = qualify::qualified(sql);
    match prepared::statement(c, &q, args) {
        None => c.execute_typed(&q, args).sql(sql),
        Some(s) => {
            let run = s.and_then(|s| c.execute(&s, &prepared::values(args)));
            run.inspect_err(|_| prepared::forget(&q)).sql(sql)
        }
    }
}

/// Every row `sql` returns.
pub(crate) fn rows(c: &mut Client, sql: &str, args: Args<'_>) -> Result<Vec<Row>> {
    let q = qualify::qualified(sql);
    match prepared::statement(c, &q, args) {
        None => c.query_typed(&q, args).sql(sql),
        Some(s) => {
            let run = s.and_then(|s| c.query(&s, &prepared::values(args)));
            run.inspect_err(|_| prepared::forget(&q)).sql(sql)
        }
    }
}

/// The rows `sql` returns, streamed.
pub(crate) fn stream<'c>(
    c: &'c mut Client,
    sql: &str,
    args: Args<'_>,
) -> Result<postgres::RowIter<'c>> {
    c.query_typed_raw(
        &qualify::qualified(sql),
        args.iter().map(|(v, t)| (*v, t.clone())),
    )
    .sql(sql)
}

/// The row `sql` returns, if any.
pub(crate) fn opt_row(c: &mut Client, sql: &str, args: Args<'_>) -> Result<Option<Row>> {
    Ok(rows(c, sql, args)?.into_iter().next())
}

/// The one row `sql` returns.
pub(crate) fn row(c: &mut Client, sql: &str, args: Args<'_>) -> Result<Row> {
    opt_row(c, sql, args)?.ok_or_else(|| Error::Sql {
        kind: DbErrorKind::Other,
        statement: short_statement(sql),
        source: "the statement returned no row".into(),
    })
}

/// Column `i` of `r`, decoded.
pub(crate) fn get<'a, T: postgres::types::FromSql<'a>>(
    r: &'a Row,
    i: usize,
    sql: &str,
) -> Result<T> {
    r.try_get(i).sql(sql)
}

/// `name` as a quoted SQL identifier.
pub(crate) fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Refuses text PostgreSQL cannot hold: a NUL byte (SQLite stores it). Called before
/// anything is written, so nothing partial is stored.
pub(crate) fn refuse_nul(what: &str, text: &str) -> Result<()> {
    match text.find('\0') {
        Some(at) => Err(Error::invalid(format!(
            "{what} holds a NUL byte (at byte {at}), which PostgreSQL text cannot store; \
             remove it (SQLite databases store it)"
        ))),
        None => Ok(()),
    }
}

/// Whether a driver error means the connection is gone (a server restart, a dropped
/// socket): the operation may be retried on a fresh connection.
fn connection_lost(e: &Error) -> bool {
    let Error::Sql { source, .. } = e else {
        return false;
    };
    match source.downcast_ref::<Driver>().map(|d| &d.0) {
        Some(pe) => {
            pe.is_closed()
                || pe.code().is_some_and(|c| {
                    c.code().starts_with("08")
                        || *c == postgres::error::SqlState::ADMIN_SHUTDOWN
                        || *c == postgres::error::SqlState::CRASH_SHUTDOWN
                        || *c == postgres::error::SqlState::CANNOT_CONNECT_NOW
                })
                || std::error::Error::source(pe)
                    .is_some_and(|s| s.downcast_ref::<std::io::Error>().is_some())
        }
        None => false,
    }
}

impl Postgres {
    /// Connects to `url`, checks (or, when allowed, creates or upgrades) the schema;
    /// see `Store::connect`.
    pub(crate) fn open(url: &PostgresUrl, options: &StoreOptions) -> Result<Postgres> {
        crate::offload::off_runtime(|| Self::open_here(url, options))
    }

    fn open_here(url: &PostgresUrl, options: &StoreOptions) -> Result<Postgres> {
        let config = pool::config(url, options.postgres.connect_timeout)?;
        // One connection first, so that a wrong address, user or password is reported
        // now, with the server's own words (the pool would only time out); it becomes
        // the pool's first connection.
        let connector = pool::Connector::for_url(url)?;
        let first = connector
            .connect(&config)
            .map_err(|e| pool::cannot_connect(url, &e))?;
        let prepare = options.postgres.prepared_statements || url.prepare();
        let manager = pool::Manager::new(config.clone(), connector, prepare, first);
        let generation = manager.generation();
        let pool = r2d2::Pool::builder()
            .max_size(options.postgres.pool_size.max(1))
            .min_idle(Some(0))
            .connection_timeout(options.postgres.connect_timeout)
            .test_on_check_out(true)
            .error_handler(Box::new(r2d2::NopErrorHandler))
            .build(manager)
            .map_err(|e| pool::unreachable(url, e))?;
        let schema = url.schema().map(str::to_string);
        let mut preamble = String::new();
        if let Some(schema) = &schema {
            // The name is checked to be a plain identifier (PostgresUrl::parse).
            preamble.push_str(&format!("SET LOCAL search_path TO {schema}, pg_catalog; "));
        }
        let lock_ms = options
            .postgres
            .lock_timeout
            .as_millis()
            .clamp(1, i32::MAX as u128);
        preamble.push_str(&format!("SET LOCAL lock_timeout = {lock_ms}; "));
        let mut engine = Postgres {
            pool: Some(pool),
            identity: String::new(),
            preamble,
            lock_timeout: options.postgres.lock_timeout,
            lock_timeout_ms: lock_ms.to_string(),
            schema: String::new(),
            qualifier: None,
            generation,
        };
        let (identity, schema) = migrate::open(&engine, url, schema.as_deref(), options)?;
        engine.qualifier = Some(std::sync::Arc::new(qualify::Qualifier::new(&ident(
            &schema,
        ))));
        engine.identity = identity;
        engine.schema = schema;
        Ok(engine)
    }

    fn connection(&self) -> Result<r2d2::PooledConnection<pool::Manager>> {
        let pool = self.pool.as_ref().expect("the pool lives until drop");
        pool.get().map_err(|e| {
            Error::Pool(
                format!(
                    "no connection to the PostgreSQL server {}: {e}",
                    self.identity
                )
                .into(),
            )
        })
    }

    /// Runs `f` in a transaction begun with `begin` and the preamble; commits when `f`
    /// returns Ok, rolls back otherwise.
    fn transaction<T>(
        &self,
        begin: &str,
        f: &mut dyn FnMut(&mut Client) -> Result<T>,
    ) -> Result<T> {
        crate::offload::off_runtime(|| self.transaction_here(begin, f))
    }

    fn transaction_here<T>(
        &self,
        begin: &str,
        f: &mut dyn FnMut(&mut Client) -> Result<T>,
    ) -> Result<T> {
        let mut conn = self.connection()?;
        let mut statements = conn.take_statements();
        let client = conn.client();
        let start = format!("{begin}; {}", self.preamble);
        let mut run = |client: &mut Client| self.in_scope(&mut statements, client, f);
        client.batch_execute(&start).sql("BEGIN")?;
        let outcome = match run(client) {
            Ok(value) => client.batch_execute("COMMIT").sql("COMMIT").map(|()| value),
            Err(e) => {
                // A rollback that fails has lost its connection, which the pool then
                // finds closed and drops.
                let _ = client.batch_execute("ROLLBACK");
                Err(e)
            }
        };
        conn.put_statements(statements);
        outcome
    }

    /// After a lost connection: every pooled connection is checked before its next use.
    fn lost(&self) {
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }

    /// Runs one statement outside any transaction (VACUUM), with nothing else in its
    /// round trip.
    fn outside_transaction(&self, statement: &str) -> Result<()> {
        crate::offload::off_runtime(|| {
            let mut conn = self.connection()?;
            conn.client().batch_execute(statement).sql(statement)
        })
    }

    /// Runs `f`, one statement, outside a transaction (autocommit: one round trip; the
    /// statement is its own snapshot). Retried once on a fresh connection when the
    /// connection was lost.
    pub(crate) fn read_one<T>(&self, mut f: impl FnMut(&mut Client) -> Result<T>) -> Result<T> {
        let mut once = || self.autocommit(&mut f);
        match once() {
            Err(e) if connection_lost(&e) => {
                self.lost();
                once()
            }
            other => other,
        }
    }

    /// Runs `f` in a read-only snapshot (one consistent view for all its statements).
    /// A read that failed because the connection was lost is retried once on a fresh
    /// connection.
    pub(crate) fn read<T>(&self, mut f: impl FnMut(&mut Client) -> Result<T>) -> Result<T> {
        const BEGIN: &str = "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY";
        match self.transaction(BEGIN, &mut f) {
            Err(e) if connection_lost(&e) => {
                self.lost();
                self.transaction(BEGIN, &mut f)
            }
            other => other,
        }
    }

    /// Runs `f` in a write transaction (read committed: each statement sees what is
    /// committed when it starts; row locks order concurrent writers of one agent).
    /// A write is never retried: one whose connection was lost may have committed or
    /// not, and says so.
    pub(crate) fn write<T>(&self, mut f: impl FnMut(&mut Client) -> Result<T>) -> Result<T> {
        let result = self.transaction("BEGIN ISOLATION LEVEL READ COMMITTED", &mut f);
        self.write_result(result)
    }

    /// Runs `f`, one statement that writes, outside a transaction (autocommit: the
    /// statement is its own transaction, one round trip). Never retried, as
    /// [`Postgres::write`]. The statement sets its own lock timeout (it calls one
    /// of the schema's functions, schema-postgres-functions.sql, which sets it
    /// first): there is no preamble.
    pub(crate) fn write_one<T>(&self, mut f: impl FnMut(&mut Client) -> Result<T>) -> Result<T> {
        let result = self.autocommit(&mut f);
        self.write_result(result)
    }

    /// Runs `f` on a pooled connection outside a transaction, off the async workers,
    /// with the store's qualifier and the connection's prepared statements current.
    fn autocommit<T>(&self, f: &mut dyn FnMut(&mut Client) -> Result<T>) -> Result<T> {
        crate::offload::off_runtime(|| {
            let mut conn = self.connection()?;
            let mut statements = conn.take_statements();
            let out = self.in_scope(&mut statements, conn.client(), f);
            conn.put_statements(statements);
            out
        })
    }

    /// Runs `f` on `client` with the qualifier and `statements` current.
    fn in_scope<T>(
        &self,
        statements: &mut Option<prepared::Statements>,
        client: &mut Client,
        f: &mut dyn FnMut(&mut Client) -> Result<T>,
    ) -> Result<T> {
        prepared::with(statements, || match &self.qualifier {
            Some(q) => qualify::with(q, || f(client)),
            None => f(client),
        })
    }

    /// The lock timeout of writes, in milliseconds, as text for `set_config` (a
    /// parameter of the schema's functions that write in autocommit).
    pub(crate) fn lock_timeout_ms(&self) -> &str {
        &self.lock_timeout_ms
    }

    /// A write's outcome; a lost connection is said to leave the write undecided.
    fn write_result<T>(&self, result: Result<T>) -> Result<T> {
        result.map_err(|e| {
            if connection_lost(&e) {
                self.lost();
                Error::Sql {
                    kind: DbErrorKind::Other,
                    statement: e.statement().unwrap_or("COMMIT").to_string(),
                    source: format!(
                        "the connection to the server was lost during a write, which \
                             was rolled back unless it had reached COMMIT; check and \
                             retry ({e})"
                    )
                    .into(),
                }
            } else {
                e
            }
        })
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // Closing a client blocks on the driver's runtime: never on an async worker.
        if let Some(pool) = self.pool.take() {
            crate::offload::finish_off_worker(move || drop(pool));
        }
    }
}

impl Engine for Postgres {
    fn identity(&self) -> &str {
        &self.identity
    }

    fn reads_inline(&self) -> bool {
        false
    }

    fn busy_timeout(&self) -> Duration {
        self.lock_timeout
    }

    fn sqlite_path(&self) -> Option<&Path> {
        None
    }
}
