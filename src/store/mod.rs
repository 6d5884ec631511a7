//! The synchronous core. [`Store`] holds an engine (`engine::Engine`) and the clock;
//! the handles ([`Memory`], [`ToolCache`], [`ResponseCache`]) validate, then make one
//! operation call on the engine. What does not depend on the engine (record types,
//! validation, keys, words, retention and batching arithmetic, the export format) lives
//! here, once; the SQLite engine is in `sqlite/`.

mod admin;
mod agents;
mod batch;
mod engine;
mod forget;
mod invariants;
mod lease;
mod memory;
mod pg_url;
#[cfg(feature = "postgres")]
mod postgres;
pub mod report;
mod responses;
mod sqlite;
mod tool_cache;
mod transfer;
pub mod words;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use admin::{
    CheckReport, CompactReport, PageUse, QueryResult, QuerySink, StatsView, query_read_only,
    query_read_only_with,
};
pub use agents::{AgentRecord, MAX_NAME_CHARS, MemorySettings};
pub use forget::ForgetEverywhereReport;
pub use memory::{
    CONTEXT_MATCHES, CompressedContext, ContextEntry, ForgetReport, ForgetTarget, ListOrder,
    MAX_QUERY_BYTES, MAX_QUERY_TERMS, Memory, MemoryEntry, MemoryStats, NewEntry, Prune,
    PruneReport, Role, SearchHit, SearchOptions,
};
pub use pg_url::{PostgresUrl, TlsMode};
pub use responses::{
    CacheMatch, CachedResponse, FuzzyOptions, LoggedResponse, Lookup, MAX_FUZZY_WORDS, NoMatch,
    Optimization, Outcome, ResponseCache, ResponseOrder, ResponsePurge, ResponsePurgeReport,
    ResponseTimeStats, TimeFigures, Tuning,
};
pub use sqlite::{APPLICATION_ID, SCHEMA_SQL, SCHEMA_VERSION};

/// The schema version the PostgreSQL engine writes and reads (`agentstore_schema`):
/// up to 5 the numbering is SQLite's; 6 is SQLite's 5 plus the server-side functions
/// of the hot writes (`schema-postgres-functions.sql`). Older schemas from 4 on are
/// upgraded in one transaction.
pub const POSTGRES_SCHEMA_VERSION: i64 = 6;
pub use tool_cache::{
    CacheFilter, CacheKey, CachedToolResult, DEFAULT_TOOL_TTL, MAX_PARAMS_DEPTH, PurgeReport,
    ToolCache, ToolCallStats, ToolCounts, ToolResults, ToolStats, canonical_json,
};
pub use transfer::{EXPORT_FORMAT, EXPORT_VERSION, ExportReport, ImportReport, MAX_IMPORT_LINE};

use crate::clock::{Clock, SystemClock};
use crate::error::{Error, Result};
use engine::Engine;

/// Longest content (in UTF-8 bytes) accepted for one entry, message, response or tool
/// result; larger input is refused before it reaches the database.
pub const MAX_CONTENT_BYTES: usize = 1 << 20;

/// Durability of a commit on SQLite (`PRAGMA synchronous`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Synchronous {
    /// Survives a crash of the process; the last commits may be lost on power loss.
    #[default]
    Normal,
    /// Survives power loss too, at the cost of an fsync per commit.
    Full,
}

/// Settings of the SQLite engine (see [`StoreOptions::sqlite`]).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SqliteOptions {
    /// Commit durability; see [`Synchronous`].
    pub synchronous: Synchronous,
    /// How long a statement waits for another process's lock before failing.
    pub busy_timeout: Duration,
    /// Most pooled connections at once.
    pub pool_size: u32,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions {
            synchronous: Synchronous::Normal,
            busy_timeout: Duration::from_secs(5),
            pool_size: 8,
        }
    }
}

impl SqliteOptions {
    /// These options with another durability.
    pub fn with_synchronous(mut self, synchronous: Synchronous) -> Self {
        self.synchronous = synchronous;
        self
    }

    /// These options with another busy timeout.
    pub fn with_busy_timeout(mut self, busy_timeout: Duration) -> Self {
        self.busy_timeout = busy_timeout;
        self
    }

    /// These options with another pool size (at least 1).
    pub fn with_pool_size(mut self, pool_size: u32) -> Self {
        self.pool_size = pool_size.max(1);
        self
    }
}

/// How to open a [`Store`]. Build one from [`StoreOptions::default`] (or
/// [`StoreOptions::existing`]) and the `with_*` setters.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct StoreOptions {
    /// Create the database (a file with owner-only permissions) and its schema if it
    /// does not exist. Commands that only read set this to `false`, so they never
    /// create one.
    pub create: bool,
    /// Where time comes from.
    pub clock: Arc<dyn Clock>,
    /// Settings that only the SQLite engine has.
    pub sqlite: SqliteOptions,
    /// Settings that only the PostgreSQL engine has.
    pub postgres: PostgresOptions,
    /// Whether opening may create or upgrade the schema (default true). A shared
    /// server whose operators migrate by hand sets this to false: a database without
    /// agentstore's schema, or with an older one, is then refused untouched (create
    /// it with `agentstore init`, which always may).
    pub migrate: bool,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            create: true,
            clock: Arc::new(SystemClock),
            sqlite: SqliteOptions::default(),
            postgres: PostgresOptions::default(),
            migrate: true,
        }
    }
}

impl StoreOptions {
    /// Options for a command that only reads: the database must already exist.
    pub fn existing() -> Self {
        StoreOptions {
            create: false,
            ..Self::default()
        }
    }

    /// These options, creating the database or not.
    pub fn with_create(mut self, create: bool) -> Self {
        self.create = create;
        self
    }

    /// These options with another clock.
    pub fn with_clock(mut self, clock: impl Clock + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// These options with other SQLite settings.
    pub fn with_sqlite(mut self, sqlite: SqliteOptions) -> Self {
        self.sqlite = sqlite;
        self
    }

    /// These options with another busy timeout: SQLite's (see [`SqliteOptions`]) and
    /// PostgreSQL's lock timeout (see [`PostgresOptions`]).
    pub fn with_busy_timeout(mut self, busy_timeout: Duration) -> Self {
        self.sqlite = self.sqlite.with_busy_timeout(busy_timeout);
        self.postgres = self.postgres.with_lock_timeout(busy_timeout);
        self
    }

    /// These options with other PostgreSQL settings.
    pub fn with_postgres(mut self, postgres: PostgresOptions) -> Self {
        self.postgres = postgres;
        self
    }

    /// These options, allowing automatic creation and upgrade of the schema or not.
    pub fn with_migrate(mut self, migrate: bool) -> Self {
        self.migrate = migrate;
        self
    }

    /// These options with another SQLite pool size (see [`SqliteOptions`]).
    pub fn with_pool_size(mut self, pool_size: u32) -> Self {
        self.sqlite = self.sqlite.with_pool_size(pool_size);
        self
    }

    /// These options with a shared clock.
    pub fn with_shared_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// These options with another SQLite durability (see [`SqliteOptions`]).
    pub fn with_synchronous(mut self, synchronous: Synchronous) -> Self {
        self.sqlite = self.sqlite.with_synchronous(synchronous);
        self
    }
}

/// Settings of the PostgreSQL engine.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct PostgresOptions {
    /// Connections in the pool (default 4).
    pub pool_size: u32,
    /// How long to wait for a connection to the server (default 10 s).
    pub connect_timeout: Duration,
    /// How long a statement waits for another transaction's row lock before failing as
    /// busy (PostgreSQL's `lock_timeout`; default 5 s, as SQLite's busy timeout).
    pub lock_timeout: Duration,
    /// Whether each connection keeps the statements it prepared (default false; the
    /// URL's `prepare=true` also turns it on). A hot read is then bound and run
    /// without being parsed and planned again; only for a direct connection or a
    /// session-mode pooler: a prepared statement outlives its transaction, which a
    /// transaction-mode pooler such as PgBouncer (before 1.21) does not allow.
    pub prepared_statements: bool,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        PostgresOptions {
            pool_size: 4,
            connect_timeout: Duration::from_secs(10),
            lock_timeout: Duration::from_secs(5),
            prepared_statements: false,
        }
    }
}

impl PostgresOptions {
    /// These options with another pool size (at least 1).
    pub fn with_pool_size(mut self, pool_size: u32) -> Self {
        self.pool_size = pool_size.max(1);
        self
    }

    /// These options with another connect timeout.
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// These options with another lock timeout.
    pub fn with_lock_timeout(mut self, timeout: Duration) -> Self {
        self.lock_timeout = timeout;
        self
    }

    /// These options with prepared statements kept per connection, or not (see
    /// [`PostgresOptions::prepared_statements`]).
    pub fn with_prepared_statements(mut self, prepared: bool) -> Self {
        self.prepared_statements = prepared;
        self
    }
}

/// Where a store is, as `--db` and [`Store::connect`] take it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Location {
    /// An SQLite file: a plain path, or `sqlite:PATH`.
    Sqlite(PathBuf),
    /// A PostgreSQL database: `postgres://user@host:port/dbname[?schema=NAME]`.
    Postgres(PostgresUrl),
}

impl Location {
    /// Reads a location: `sqlite:PATH` or a plain path is an SQLite file;
    /// `postgres://...` (or `postgresql://`) a PostgreSQL database. A URL of an engine
    /// this build does not have is refused by name.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an empty location or an unsupported scheme.
    pub fn parse(location: &str) -> Result<Location> {
        if location.is_empty() {
            return Err(Error::invalid(
                "the database location is empty; give a file path (or sqlite:PATH)",
            ));
        }
        if let Some(path) = location.strip_prefix("sqlite:") {
            let path = path.strip_prefix("//").unwrap_or(path);
            if path.is_empty() {
                return Err(Error::invalid(
                    "sqlite: needs a file path, as in sqlite:agent.db",
                ));
            }
            return Ok(Location::Sqlite(PathBuf::from(path)));
        }
        if let Some((scheme, _)) = location.split_once("://") {
            if cfg!(feature = "postgres") && matches!(scheme, "postgres" | "postgresql") {
                return Ok(Location::Postgres(PostgresUrl::parse(location)?));
            }
            if !scheme.is_empty()
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
            {
                return Err(Error::invalid(format!(
                    "{scheme}:// databases are not supported by this build; give an SQLite file path (or sqlite:PATH)"
                )));
            }
        }
        Ok(Location::Sqlite(PathBuf::from(location)))
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Sqlite(path) => write!(f, "{}", path.display()),
            Location::Postgres(url) => write!(f, "{url}"),
        }
    }
}

/// An open agentstore database. Cheap to clone; clones share the engine.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    /// `None` only while being dropped.
    engine: Option<Box<dyn Engine>>,
    clock: Arc<dyn Clock>,
    location: Location,
}

impl Drop for Inner {
    /// Closing an engine waits for its connections (bounded): never on an async worker.
    fn drop(&mut self) {
        if let Some(engine) = self.engine.take() {
            crate::offload::finish_off_worker(move || drop(engine));
        }
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("location", &self.inner.location)
            .finish()
    }
}

impl Store {
    /// Opens (or, with `options.create`, creates) the SQLite database at `path`.
    ///
    /// The file's identity is checked before anything can write to it: a file that is
    /// not SQLite, a damaged one, an SQLite database of another application (or with
    /// our marks but not our tables), or one written by a newer agentstore is refused
    /// and left byte-for-byte untouched. An older agentstore file is migrated in one
    /// transaction.
    ///
    /// # Errors
    /// [`Error::NotFound`], [`Error::NotADatabase`], [`Error::Corrupt`],
    /// [`Error::ForeignDatabase`], [`Error::TooNew`], or an I/O or database error.
    pub fn open(path: impl AsRef<Path>, options: StoreOptions) -> Result<Store> {
        Self::open_at(Location::Sqlite(path.as_ref().to_path_buf()), options)
    }

    /// Opens the store at `location`: a plain path or `sqlite:PATH` (an SQLite file,
    /// as [`Store::open`]).
    ///
    /// ```
    /// # fn main() -> agentstore::Result<()> {
    /// let dir = tempfile::tempdir().unwrap();
    /// let location = format!("sqlite:{}", dir.path().join("agent.db").display());
    /// let store = agentstore::Store::connect(&location, agentstore::StoreOptions::default())?;
    /// assert_eq!(store.agents()?.len(), 0);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a location that names no supported engine; then
    /// as [`Store::open`].
    pub fn connect(location: &str, options: StoreOptions) -> Result<Store> {
        Self::open_at(Location::parse(location)?, options)
    }

    /// [`Store::connect`] to a location already read by [`Location::parse`].
    ///
    /// # Errors
    /// As [`Store::open`].
    pub fn open_at(location: Location, options: StoreOptions) -> Result<Store> {
        let engine: Box<dyn Engine> = match &location {
            Location::Sqlite(path) => {
                Box::new(sqlite::Sqlite::open(path, options.create, &options.sqlite)?)
            }
            #[cfg(feature = "postgres")]
            Location::Postgres(url) => Box::new(postgres::Postgres::open(url, &options)?),
            #[cfg(not(feature = "postgres"))]
            Location::Postgres(_) => {
                return Err(Error::invalid(
                    "postgres:// databases are not supported by this build (feature `postgres`)",
                ));
            }
        };
        Ok(Store {
            inner: Arc::new(Inner {
                engine: Some(engine),
                clock: options.clock,
                location,
            }),
        })
    }

    /// Where the store is.
    pub fn location(&self) -> &Location {
        &self.inner.location
    }

    /// The SQLite file, for a store on SQLite.
    pub fn sqlite_path(&self) -> Option<&Path> {
        self.engine().sqlite_path()
    }

    /// Names the database: stores opened on the same database have the same identity.
    pub fn identity(&self) -> &str {
        self.engine().identity()
    }

    /// Whether a read of this store is cheap enough to run inline on an async worker
    /// thread (true for SQLite's microsecond reads); the agent layer asks this
    /// instead of assuming it.
    pub fn reads_inline(&self) -> bool {
        self.engine().reads_inline()
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
    /// Database errors, e.g. busy when another process holds the file past the timeout.
    pub fn checkpoint(&self) -> Result<()> {
        self.engine().checkpoint()
    }

    pub(crate) fn engine(&self) -> &dyn Engine {
        match &self.inner.engine {
            Some(engine) => engine.as_ref(),
            None => unreachable!("the engine is only taken while the store is dropped"),
        }
    }
}
