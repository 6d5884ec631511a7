//! The library's one error type. Messages are lowercase, name the bad value and say
//! what to do; the CLI prints them once and picks the exit code from [`Error::kind`].

use std::path::PathBuf;
use std::time::Duration;

/// A `Result` whose error defaults to [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything the store can refuse or fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An importance outside `[0, 1]`, or NaN / infinite.
    #[error("importance must be a finite number between 0 and 1, got {0}")]
    InvalidImportance(f64),

    /// Any other argument that is out of range or malformed.
    #[error("{0}")]
    InvalidArgument(String),

    /// A read asked for an agent that does not exist.
    #[error("no agent named '{}' (see `agentstore agents list`)", clip(.0))]
    UnknownAgent(String),

    /// A read-only open found no file.
    #[error("no agentstore database at {} (create one with `agentstore init`)", .0.display())]
    NotFound(PathBuf),

    /// The file is not an SQLite database at all. It was left untouched.
    #[error("{} is not an SQLite database; agentstore left it untouched", .0.display())]
    NotADatabase(PathBuf),

    /// The file is an SQLite database that SQLite reports as damaged (truncated, a bad
    /// page). It was left untouched.
    #[error(
        "{} is a damaged SQLite database ({detail}); agentstore left it untouched: restore a backup, or try `sqlite3 {} .recover`",
        path.display(), path.display()
    )]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// SQLite's words.
        detail: String,
    },

    /// The file is an SQLite database of some other application. It was left untouched.
    #[error(
        "{} is an SQLite database of another application ({detail}); agentstore left it untouched",
        path.display()
    )]
    ForeignDatabase {
        /// The file.
        path: PathBuf,
        /// What gave it away.
        detail: String,
    },

    /// A PostgreSQL schema holds tables agentstore did not make, or lacks agentstore's
    /// and may not be given them. It was left untouched.
    #[error("{location}: {detail}; agentstore left it untouched")]
    SchemaRefused {
        /// The database and schema (password blanked).
        location: String,
        /// What is wrong, and what to do.
        detail: String,
    },

    /// The engine does not do this operation yet.
    #[error(
        "{0} is not supported on PostgreSQL yet (the engine is being completed); use an SQLite database for it"
    )]
    Unsupported(&'static str),

    /// The file was written by a newer agentstore. It was left untouched.
    #[error(
        "{} was written by a newer agentstore (schema {found}, this build knows {known}); upgrade agentstore",
        path.display()
    )]
    TooNew {
        /// The file.
        path: PathBuf,
        /// The file's `user_version`.
        found: i64,
        /// The newest schema this build knows.
        known: i64,
    },

    /// The read-only `sql` entry point refused a statement.
    #[error("refused: {0}")]
    NotReadOnly(String),

    /// A read-only query ran past its time limit and was interrupted.
    #[error("query interrupted after {}: it ran past the time limit (raise it with --timeout)", humanize(.0))]
    QueryTimeout(Duration),

    /// The disk (or the file system's quota) is full. Nothing partial was stored.
    #[error("disk full: the write was not stored; free some space and retry")]
    DiskFull,

    /// The file (or its directory) cannot be written by this process. Nothing was
    /// written.
    #[error(
        "the database is read-only for this process (check the permissions of the file and its directory): nothing was written"
    )]
    ReadOnlyDatabase,

    /// A WAL-mode file whose `-shm` file is missing, in a directory this process
    /// cannot write (a read-only mount): SQLite cannot read it there.
    #[error(
        "{} is in WAL mode and its -shm file is missing, in a directory that cannot be written (a read-only mount?): SQLite cannot read it there; copy the file to a writable directory, or run any agentstore command on it once where it is writable",
        .0.display()
    )]
    WalUnreadable(PathBuf),

    /// A database error, with the statement that raised it. The message shows only the
    /// database's words; [`Error::statement`] gives the statement, for debug output.
    /// The source is boxed so that the public API names no SQLite type (a second
    /// backend is an addition).
    #[error("database error: {source}")]
    Sql {
        /// What kind of failure the engine reported.
        kind: DbErrorKind,
        /// The statement (or the step) that failed.
        statement: String,
        /// The database's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },

    /// A tool call named a tool that is not registered.
    #[error("no tool named '{name}' is registered (registered: {registered})")]
    UnknownTool {
        /// The name asked for.
        name: String,
        /// The registered names, comma-separated.
        registered: String,
    },

    /// A tool returned an error. Nothing was cached.
    #[error("tool '{tool}' failed: {message}")]
    ToolFailed {
        /// The tool.
        tool: String,
        /// What it said.
        message: String,
    },

    /// A tool panicked. The panic was contained to its call; nothing was cached.
    #[error("tool '{tool}' panicked: {message}")]
    ToolPanicked {
        /// The tool.
        tool: String,
        /// The panic message.
        message: String,
    },

    /// A tool call ran past its time limit and was cancelled. Nothing was cached.
    #[error("tool '{tool}' timed out after {}", humanize(.timeout))]
    ToolTimedOut {
        /// The tool.
        tool: String,
        /// The limit.
        timeout: Duration,
    },

    /// The response generator failed. Nothing was cached. The generator's error is
    /// kept whole: an LLM client's error says its HTTP status and whether retrying
    /// may help ([`GenerationError::llm`](crate::agent::GenerationError::llm)).
    #[error("generating a response failed: {0}")]
    GenerationFailed(#[source] crate::agent::GenerationError),

    /// An LLM client could not be set up or failed outside a generation.
    #[error("{0}")]
    Llm(#[from] crate::agent::LlmError),

    /// No pooled connection could be had in time.
    #[error("could not get a database connection: {0}")]
    Pool(#[source] Box<dyn std::error::Error + Send + Sync + 'static>),

    /// A file system error outside SQLite.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// How the engine classified a database error ([`Error::Sql`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DbErrorKind {
    /// Another connection held a lock past the busy timeout.
    Busy,
    /// The database reported damage (a corrupt page, not a database).
    Damaged,
    /// A constraint (unique, foreign key, check) refused the write.
    Constraint,
    /// Anything else.
    Other,
}

/// How an [`Error`] should be treated by a caller that maps errors to exit codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The caller passed an invalid value (CLI exit code 2).
    InvalidInput,
    /// Something failed at run time (CLI exit code 1).
    Runtime,
}

impl Error {
    /// Whether this is the caller's bad input or a runtime failure.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::InvalidImportance(_)
            | Error::InvalidArgument(_)
            | Error::NotReadOnly(_)
            | Error::UnknownTool { .. } => ErrorKind::InvalidInput,
            _ => ErrorKind::Runtime,
        }
    }

    /// The statement (or step) behind a database error, for debug output (`-v`); the
    /// message itself never shows SQL.
    pub fn statement(&self) -> Option<&str> {
        match self {
            Error::Sql { statement, .. } => Some(statement),
            _ => None,
        }
    }

    /// True when the file is damaged: not a database, or corrupt.
    pub fn is_damage(&self) -> bool {
        match self {
            Error::NotADatabase(_) | Error::Corrupt { .. } => true,
            Error::Sql { kind, .. } => *kind == DbErrorKind::Damaged,
            _ => false,
        }
    }

    /// True when the database was busy or locked by another connection.
    pub fn is_busy(&self) -> bool {
        matches!(
            self,
            Error::Sql {
                kind: DbErrorKind::Busy,
                ..
            }
        )
    }

    /// The engine's classification of a database error.
    pub fn db_kind(&self) -> Option<DbErrorKind> {
        match self {
            Error::Sql { kind, .. } => Some(*kind),
            _ => None,
        }
    }

    pub(crate) fn invalid(msg: impl Into<String>) -> Self {
        Error::InvalidArgument(msg.into())
    }
}

fn humanize(d: &Duration) -> String {
    crate::clock::format_duration(*d)
}

/// The statement on one line, cut to a readable length.
pub(crate) fn short_statement(sql: &str) -> String {
    let one_line = sql.split_whitespace().collect::<Vec<_>>().join(" ");
    match one_line.char_indices().nth(120) {
        Some((cut, _)) => format!("{}…", &one_line[..cut]),
        None => one_line,
    }
}

/// The longest run of a user's value that an error message repeats.
pub(crate) const ECHO_CHARS: usize = 200;

/// A user's value as an error message repeats it: at most 200 characters, with `…`
/// and the full length when cut, control characters shown as spaces. The library's
/// errors use it; so does the CLI for the values clap quotes.
pub fn clip(value: &str) -> String {
    let one_line: String = value
        .chars()
        .take(ECHO_CHARS + 1)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    match one_line.char_indices().nth(ECHO_CHARS) {
        Some((cut, _)) => format!(
            "{}… ({} characters)",
            &one_line[..cut],
            value.chars().count()
        ),
        None => one_line,
    }
}
