//! Opening a database file: the identity check that runs before anything can write,
//! file creation with owner-only permissions, and the one function that configures
//! every pooled connection.

use std::fs::OpenOptions;
use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, OpenFlags};

use crate::error::{Error, Result};
use crate::store::Synchronous;

/// `PRAGMA application_id` of an agentstore file: "AGST" in ASCII.
pub const APPLICATION_ID: i32 = 0x4147_5354;

/// The schema version this build writes (`PRAGMA user_version`).
pub const SCHEMA_VERSION: i64 = 5;

/// The tables a file at [`SCHEMA_VERSION`] must have.
pub(crate) const KNOWN_TABLES: [&str; 14] = [
    "agents",
    "memory_counters",
    "memory_entries",
    "memory_search",
    "memory_unindexed",
    "memory_deindex",
    "memory_prunes",
    "tool_cache",
    "tool_counters",
    "response_cache",
    "response_words",
    "response_log",
    "response_time_buckets",
    "leases",
];

/// What a file turned out to be when it was opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Identity {
    /// A zero-byte file, or an SQLite database with no tables and no marks.
    Empty,
    /// An agentstore database at this schema version or an older one.
    Ours { version: i64 },
}

/// Creates `path` with owner-only permissions if it does not exist yet. SQLite gives
/// the -wal and -shm files the same permissions as the database file.
pub(crate) fn create_private_file(path: &Path) -> Result<()> {
    let mut opts = OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    match opts.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(source) => Err(Error::Io {
            context: format!("cannot create {}", path.display()),
            source,
        }),
    }
}

/// Opens a connection without creating anything and without any pragma that writes.
pub(crate) fn open_raw(path: &Path, read_only: bool) -> Result<Connection> {
    let access = if read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE
    };
    let flags = access | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    Connection::open_with_flags(path, flags)
        .map_err(|e| read_error(e, path, &format!("open {}", path.display())))
}

/// The -wal and -shm files beside a database.
fn sidecars(path: &Path) -> [std::path::PathBuf; 2] {
    ["-wal", "-shm"].map(|suffix| {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        p.into()
    })
}

/// Whether a -wal or -shm file sits beside the database now.
pub(crate) fn has_sidecars(path: &Path) -> bool {
    sidecars(path).iter().any(|p| p.exists())
}

/// A read-only connection cannot remove the -wal and -shm files it had to create, so
/// after one closes, a plain connection reads the header and closes: if it is the last
/// connection to the file, SQLite checkpoints (an empty WAL: nothing to copy) and
/// removes both; if another process has the file open, they stay, as they must.
pub(crate) fn tidy_sidecars(path: &Path) {
    if let Ok(conn) = open_raw(path, false) {
        let _ = conn.query_row("SELECT count(*) FROM sqlite_schema", [], |_| Ok(()));
        let _ = conn.close();
    }
}

/// Runs `f` again while it fails with "busy", until `timeout` has passed. For the few
/// places where SQLite reports busy at once instead of calling the busy handler.
pub(crate) fn retry_while_busy<T>(
    timeout: Duration,
    mut f: impl FnMut() -> Result<T>,
) -> Result<T> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        match f() {
            Err(e) if e.is_busy() && std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(2));
            }
            other => return other,
        }
    }
}

/// An SQLITE_BUSY error for `statement`.
pub(crate) fn busy_error(statement: &str) -> Error {
    super::stmt::wrap(
        rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
            Some("other connections kept it from completing in time".into()),
        ),
        statement,
    )
}

/// Reads the file's marks. Only reads: safe on a file that is not ours.
pub(crate) fn identify(conn: &Connection, path: &Path) -> Result<Identity> {
    const SQL: &str = "SELECT (SELECT application_id FROM pragma_application_id), \
                              (SELECT user_version FROM pragma_user_version), \
                              (SELECT count(*) FROM sqlite_schema), \
                              (SELECT group_concat(name, ' ') FROM sqlite_schema \
                                WHERE type = 'table')";
    let marks = conn.query_row(SQL, [], |r| {
        Ok((
            r.get::<_, i32>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, i64>(2)?,
            r.get::<_, Option<String>>(3)?.unwrap_or_default(),
        ))
    });
    let (app_id, version, objects, tables) = marks.map_err(|e| read_error(e, path, SQL))?;
    let foreign = |detail: String| Error::ForeignDatabase {
        path: path.to_path_buf(),
        detail,
    };
    match app_id {
        APPLICATION_ID if version > SCHEMA_VERSION => Err(Error::TooNew {
            path: path.to_path_buf(),
            found: version,
            known: SCHEMA_VERSION,
        }),
        APPLICATION_ID if version == SCHEMA_VERSION => {
            let present: Vec<&str> = tables.split(' ').collect();
            match KNOWN_TABLES.iter().find(|t| !present.contains(t)) {
                Some(missing) => Err(foreign(format!("agentstore marks, but no table {missing}"))),
                None => Ok(Identity::Ours { version }),
            }
        }
        APPLICATION_ID if version >= 1 => Ok(Identity::Ours { version }),
        APPLICATION_ID => Err(foreign(format!(
            "agentstore mark but schema version {version}"
        ))),
        0 if objects == 0 && version == 0 => Ok(Identity::Empty),
        0 => Err(foreign(format!(
            "{objects} schema objects, no agentstore application_id"
        ))),
        other => Err(foreign(format!("application_id {other:#x}"))),
    }
}

/// The error for a failed open or first read of `path`: not a database, damaged, or
/// the SQLite error of `statement`.
fn read_error(e: rusqlite::Error, path: &Path, statement: &str) -> Error {
    match e.sqlite_error_code() {
        Some(ErrorCode::NotADatabase) => Error::NotADatabase(path.to_path_buf()),
        Some(ErrorCode::DatabaseCorrupt) => Error::Corrupt {
            path: path.to_path_buf(),
            detail: e.to_string(),
        },
        Some(ErrorCode::CannotOpen | ErrorCode::ReadOnly) if wal_without_shm(path) => {
            Error::WalUnreadable(path.to_path_buf())
        }
        _ => super::stmt::wrap(e, statement),
    }
}

/// True when the file's header says WAL mode and its `-shm` file is missing: SQLite
/// must create that file to read, and cannot on a read-only mount.
fn wal_without_shm(path: &Path) -> bool {
    use std::io::Read as _;
    let mut header = [0u8; 20];
    let wal = std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut header))
        .is_ok_and(|()| header[18] == 2 && header[19] == 2);
    let [_, shm] = sidecars(path);
    wal && !shm.exists()
}

/// Refuses a path that must not be opened as a database file, before SQLite touches
/// it: a directory (a runtime failure, exit 1); a name SQLite reads as something other
/// than a file (`""`, `:memory:`, a `file:` URI); anything that exists but is not a
/// regular file, followed through symlinks (a device such as `/dev/null`, a FIFO, a
/// socket), where SQLite would fail late or create `-journal`, `-wal` and `-shm` files
/// beside it.
pub(crate) fn refuse_unusable_path(path: &Path) -> Result<()> {
    let text = path.to_string_lossy();
    if text.is_empty() {
        return Err(Error::invalid("the database path is empty"));
    }
    if text == ":memory:" || text.starts_with("file:") {
        return Err(Error::invalid(format!(
            "'{}' is a special name to SQLite, not a file; agentstore keeps its state in a file (write ./{} to mean a file of that name)",
            crate::error::clip(&text),
            crate::error::clip(&text)
        )));
    }
    let Ok(meta) = std::fs::metadata(path) else {
        return Ok(()); // absent (or unreadable: opening it says why)
    };
    if meta.is_dir() {
        return Err(Error::Io {
            context: format!("cannot open {}", path.display()),
            source: std::io::Error::new(
                std::io::ErrorKind::IsADirectory,
                "it is a directory, not a database file",
            ),
        });
    }
    if !meta.is_file() {
        return Err(Error::invalid(format!(
            "{} is {}, not a regular file; a database must be a regular file (or a path that does not exist yet)",
            path.display(),
            file_kind(&meta)
        )));
    }
    Ok(())
}

/// What a non-regular file is, in words.
pub(crate) fn file_kind(meta: &std::fs::Metadata) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        let t = meta.file_type();
        if t.is_char_device() {
            return "a character device";
        }
        if t.is_block_device() {
            return "a block device";
        }
        if t.is_fifo() {
            return "a FIFO (named pipe)";
        }
        if t.is_socket() {
            return "a socket";
        }
    }
    if meta.is_dir() {
        "a directory"
    } else {
        "not a regular file"
    }
}

/// Connection settings, shared by every pooled connection.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConnectionSettings {
    pub busy_timeout: Duration,
    pub synchronous: Synchronous,
}

/// Configures one connection. Runs on every pooled connection, and only after the
/// identity check has accepted the file (switching to WAL rewrites header bytes).
pub(crate) fn configure(conn: &Connection, s: ConnectionSettings) -> rusqlite::Result<()> {
    // Wait for another process's write lock instead of failing at once.
    conn.busy_timeout(s.busy_timeout)?;
    // A brand-new file (no page yet) gets incremental vacuum, so freed pages can be
    // given back to the file system while agents run (`agentstore compact`). SQLite
    // takes it only before the first page is written: before WAL mode is set.
    let pages: i64 = conn.query_row("PRAGMA page_count", [], |r| r.get(0))?;
    if pages == 0 {
        conn.execute_batch("PRAGMA auto_vacuum = INCREMENTAL")?;
    }
    // WAL: readers (the admin CLI) never block the agent's writes, and commits append.
    let _mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    // NORMAL: in WAL mode a commit survives a process crash without an fsync per commit;
    // FULL adds the fsync so it survives power loss too.
    let sync = match s.synchronous {
        Synchronous::Normal => "NORMAL",
        Synchronous::Full => "FULL",
    };
    conn.pragma_update(None, "synchronous", sync)?;
    // Agents own their entries: deleting an agent deletes its rows, and no orphan can appear.
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // After a checkpoint, truncate the WAL back to 64 MiB so one large cleanup does not
    // leave a large file behind for the life of the process.
    conn.pragma_update(None, "journal_size_limit", 64 * 1024 * 1024)?;
    // 16 MiB page cache per connection (default 2 MiB): a 100,000-entry agent is about
    // 25 MiB of pages, and cleanups and context walks touch a good part of it.
    conn.pragma_update(None, "cache_size", -16 * 1024)?;
    // Deleted content is overwritten with zeros wherever that costs no extra I/O (the
    // page is written anyway), so a row moved or deleted earlier leaves no copy in its
    // page for a later forget to miss; a forget turns it fully on (sqlite/mod.rs).
    conn.pragma_update(None, "secure_delete", "FAST")?;
    // Sorts and temporary b-trees in memory, never in a temp file beside the database.
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    // Our WAL hook in place of SQLite's automatic checkpoint: a commit that takes the
    // WAL past 1,000 pages checkpoints it, past 2,000 it waits for the log to start
    // over; bulk writes take it off for their commit (checkpoint.rs).
    super::checkpoint::install(conn);
    // The store has more hot statements than rusqlite's default cache of 16 holds.
    conn.set_prepared_statement_cache_capacity(64);
    // Backstop for the size checks done in Rust: no single value above 64 MiB, and
    // no statement text above 1 MiB (ours are a few hundred bytes).
    conn.set_limit(
        rusqlite::limits::Limit::SQLITE_LIMIT_LENGTH,
        64 * 1024 * 1024,
    )?;
    conn.set_limit(rusqlite::limits::Limit::SQLITE_LIMIT_SQL_LENGTH, 1 << 20)?;
    Ok(())
}
