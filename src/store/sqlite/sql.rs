//! The read-only query entry point behind `agentstore sql`. A read-only open is not
//! enough on its own (`VACUUM INTO` writes a new file even then, and `ATTACH` can create
//! one), so five locks are layered: a read-only connection with `query_only`, an
//! authorizer that allows only reads, functions other than `load_extension` and
//! read-only pragmas, a limit of zero attached databases, SQLite's own verdict that the
//! statement is read-only, and one statement at a time. A progress handler interrupts a
//! query that runs past its time limit.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rusqlite::hooks::{AuthAction, AuthContext, Authorization};
use rusqlite::limits::Limit;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, ErrorCode};
use serde_json::Value;

use super::Sqlite;
use super::connection::{
    Identity, has_sidecars, identify, open_raw, refuse_unusable_path, tidy_sidecars,
};
use super::stmt::SqlContext;
use crate::error::{Error, Result};
use crate::store::{QueryResult, QuerySink, StatsView};

/// Pragmas that only read. Those marked with `true` take an argument that names
/// something (a table, an index, a row limit) rather than setting a value.
const READ_PRAGMAS: &[(&str, bool)] = &[
    ("application_id", false),
    ("auto_vacuum", false),
    ("collation_list", false),
    ("compile_options", false),
    ("data_version", false),
    ("database_list", false),
    ("encoding", false),
    ("foreign_key_check", true),
    ("foreign_key_list", true),
    ("foreign_keys", false),
    ("freelist_count", false),
    ("function_list", false),
    ("index_info", true),
    ("index_list", true),
    ("index_xinfo", true),
    ("integrity_check", true),
    ("journal_mode", false),
    ("module_list", false),
    ("page_count", false),
    ("page_size", false),
    ("pragma_list", false),
    ("quick_check", true),
    ("schema_version", false),
    ("table_info", true),
    ("table_list", true),
    ("table_xinfo", true),
    ("user_version", false),
];

fn authorize(ctx: &AuthContext<'_>) -> std::result::Result<(), String> {
    match ctx.action {
        AuthAction::Select | AuthAction::Read { .. } | AuthAction::Recursive => Ok(()),
        AuthAction::Function { function_name } => {
            if function_name.eq_ignore_ascii_case("load_extension") {
                Err("load_extension() is not allowed".into())
            } else {
                Ok(())
            }
        }
        AuthAction::Pragma {
            pragma_name,
            pragma_value,
        } => {
            let name = pragma_name.to_ascii_lowercase();
            match READ_PRAGMAS.iter().find(|(p, _)| *p == name) {
                Some((_, true)) => Ok(()),
                Some((_, false)) if pragma_value.is_none() => Ok(()),
                _ => Err(match pragma_value {
                    Some(v) => format!("PRAGMA {pragma_name} = {v} is not a read-only pragma"),
                    None => format!("PRAGMA {pragma_name} is not a read-only pragma"),
                }),
            }
        }
        AuthAction::Attach { filename } => Err(format!("ATTACH '{filename}' is not allowed")),
        // Statements that write SQLite's own tables: name the statement, not the
        // INSERT it does inside.
        AuthAction::Analyze { .. } => {
            Err("ANALYZE (it writes the statistics tables) is not allowed".into())
        }
        AuthAction::Insert { table_name }
        | AuthAction::Update { table_name, .. }
        | AuthAction::Delete { table_name }
            if table_name.starts_with("sqlite_") =>
        {
            Err(match table_name {
                t if t.starts_with("sqlite_stat") => {
                    "ANALYZE (it writes the statistics tables) is not allowed".to_string()
                }
                t if t.starts_with("sqlite_temp") => {
                    "creating or dropping temporary objects (CREATE TEMP ...) is not allowed"
                        .to_string()
                }
                _ => "schema change (DDL) is not allowed".to_string(),
            })
        }
        other => Err(format!("{} is not allowed", describe(&other))),
    }
}

fn describe(action: &AuthAction<'_>) -> String {
    let debug = format!("{action:?}");
    let kind = debug
        .split([' ', '{', '('])
        .next()
        .unwrap_or("this statement");
    match kind {
        "Insert" => "INSERT".into(),
        "Update" => "UPDATE".into(),
        "Delete" => "DELETE".into(),
        "Transaction" | "Savepoint" => "transaction control".into(),
        k if k.starts_with("CreateTemp") || k.starts_with("DropTemp") => {
            "creating or dropping temporary objects (CREATE TEMP ...)".into()
        }
        k if k.starts_with("Create") || k.starts_with("Drop") || k == "AlterTable" => {
            "schema change (DDL)".into()
        }
        k => format!("{k} (a write)"),
    }
}

/// Runs one read-only query against the database at `path`, handing the column names
/// to `sink` once and then each row as SQLite produces it, so memory is bounded by a
/// row, not the result. `timeout` bounds the whole run, the time the sink takes
/// included: past it the query stops with [`Error::QueryTimeout`], after
/// the rows already handed over. Returns the number of rows.
///
/// # Errors
/// [`Error::NotReadOnly`] for anything that could write or is not one statement,
/// [`Error::QueryTimeout`] when it runs past `timeout`, [`Error::NotFound`] and the
/// identity errors of [`super::Store::open`], the query's own SQLite error, or
/// [`Error::Io`] when the sink fails (a closed pipe, say).
pub(crate) fn query_read_only_with(
    path: &Path,
    sql: &str,
    timeout: Duration,
    sink: &mut dyn QuerySink,
) -> Result<u64> {
    if sql.trim().is_empty() {
        return Err(Error::invalid("the query is empty"));
    }
    if sql.len() > MAX_QUERY_BYTES {
        return Err(Error::invalid(format!(
            "the query is {} bytes; the most `sql` accepts is {MAX_QUERY_BYTES}",
            sql.len()
        )));
    }
    refuse_unusable_path(path)?;
    if !path.exists() {
        return Err(Error::NotFound(path.to_path_buf()));
    }
    let first = sql.split_whitespace().next().unwrap_or_default();
    if first.trim_end_matches(';').eq_ignore_ascii_case("analyze") {
        return Err(Error::NotReadOnly(
            "ANALYZE (it writes the statistics tables) is not allowed; `sql` runs read-only queries"
                .into(),
        ));
    }
    let sql = &read_pragma_as_select(sql);
    let had_sidecars = has_sidecars(path);
    let result = run_query(path, sql, timeout, sink);
    if !had_sidecars {
        tidy_sidecars(path);
    }
    result
}

fn run_query(path: &Path, sql: &str, timeout: Duration, sink: &mut dyn QuerySink) -> Result<u64> {
    let deadline = Instant::now() + timeout;
    let conn = open_raw(path, true)?;
    conn.busy_timeout(Duration::from_secs(5))
        .sql("busy_timeout")?;
    if identify(&conn, path)? == Identity::Empty {
        return Err(Error::NotFound(path.to_path_buf()));
    }
    lock_down(&conn)?;

    let denied: Arc<Mutex<Option<String>>> = Arc::default();
    let slot = Arc::clone(&denied);
    conn.authorizer(Some(move |ctx: AuthContext<'_>| match authorize(&ctx) {
        Ok(()) => Authorization::Allow,
        Err(why) => {
            if let Ok(mut s) = slot.lock() {
                s.get_or_insert(why);
            }
            Authorization::Deny
        }
    }))
    .sql("authorizer")?;

    let refused = |e: rusqlite::Error| -> Error {
        if let Some(why) = denied.lock().ok().and_then(|mut s| s.take()) {
            return Error::NotReadOnly(format!("{why}; `sql` runs read-only queries"));
        }
        match e {
            rusqlite::Error::MultipleStatement => {
                Error::NotReadOnly("more than one statement; `sql` runs one query at a time".into())
            }
            e if e.sqlite_error_code() == Some(ErrorCode::OperationInterrupted) => {
                Error::QueryTimeout(timeout)
            }
            e if e.sqlite_error_code() == Some(ErrorCode::ReadOnly) => Error::NotReadOnly(
                "the statement tried to write; `sql` runs read-only queries".into(),
            ),
            e => super::stmt::wrap(e, sql),
        }
    };

    // A query SQLite cannot compile (a typo, an unknown table or function) is the
    // caller's bad input; other failures (a damaged file) stay SQLite errors.
    let mut stmt = conn.prepare(sql).map_err(|e| {
        let compile = matches!(e, rusqlite::Error::SqlInputError { .. })
            || e.sqlite_error_code() == Some(ErrorCode::Unknown);
        if compile && denied.lock().is_ok_and(|s| s.is_none()) {
            Error::InvalidArgument(format!("the query is not valid here: {e}"))
        } else {
            refused(e)
        }
    })?;
    if !stmt.readonly() {
        return Err(Error::NotReadOnly(
            "SQLite reports that this statement can write; `sql` runs read-only queries".into(),
        ));
    }
    let columns: Vec<String> = stmt.column_names().into_iter().map(String::from).collect();
    let write_error = |source| Error::Io {
        context: "write the query's rows".into(),
        source,
    };
    sink.columns(&columns).map_err(write_error)?;

    conn.progress_handler(10_000, Some(move || Instant::now() >= deadline))
        .sql("progress_handler")?;

    let mut rows = stmt.query([]).map_err(refused)?;
    let mut count = 0u64;
    while let Some(row) = rows.next().map_err(refused)? {
        sink.row(row_values(row, columns.len()).map_err(refused)?)
            .map_err(write_error)?;
        count += 1;
        if Instant::now() >= deadline {
            return Err(Error::QueryTimeout(timeout));
        }
    }
    Ok(count)
}

/// `PRAGMA name` (no value, no schema) for a read-only pragma, as the equivalent
/// `SELECT * FROM pragma_name`: SQLite calls a bare `PRAGMA journal_mode` a possible
/// write, since the same pragma with a value sets the mode, though reading it is
/// harmless. Anything else is returned as it was.
fn read_pragma_as_select(sql: &str) -> String {
    let text = sql.trim().trim_end_matches(';').trim_end();
    let mut words = text.split_whitespace();
    if let (Some(first), Some(name), None) = (words.next(), words.next(), words.next())
        && first.eq_ignore_ascii_case("pragma")
        && READ_PRAGMAS
            .iter()
            .any(|(p, arg)| !arg && p.eq_ignore_ascii_case(name))
    {
        return format!("SELECT * FROM pragma_{}", name.to_ascii_lowercase());
    }
    sql.to_string()
}

/// The longest query text `sql` accepts.
pub const MAX_QUERY_BYTES: usize = 1 << 20;

/// The connection-level locks: no writes, no attached databases, and SQLite's limits
/// on one statement's text and one value.
fn lock_down(conn: &Connection) -> Result<()> {
    conn.pragma_update(None, "query_only", true)
        .sql("PRAGMA query_only")?;
    conn.set_limit(Limit::SQLITE_LIMIT_ATTACHED, 0)
        .sql("SQLITE_LIMIT_ATTACHED")?;
    conn.set_limit(Limit::SQLITE_LIMIT_SQL_LENGTH, MAX_QUERY_BYTES as i32)
        .sql("SQLITE_LIMIT_SQL_LENGTH")?;
    conn.set_limit(Limit::SQLITE_LIMIT_LENGTH, 64 << 20)
        .sql("SQLITE_LIMIT_LENGTH")?;
    Ok(())
}

/// The first `n` columns of a row as JSON values.
fn row_values(row: &rusqlite::Row<'_>, n: usize) -> rusqlite::Result<Vec<Value>> {
    (0..n).map(|i| row.get_ref(i).map(to_json)).collect()
}

fn to_json(v: ValueRef<'_>) -> Value {
    match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::from(i),
        ValueRef::Real(f) => serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number),
        ValueRef::Text(t) => Value::String(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => {
            const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
            let mut text = String::with_capacity(2 * b.len() + 3);
            text.push_str("X'");
            for x in b {
                text.push(char::from(DIGITS[usize::from(x >> 4)]));
                text.push(char::from(DIGITS[usize::from(x & 15)]));
            }
            text.push('\'');
            Value::String(text)
        }
    }
}

impl Sqlite {
    /// The rows of `view`, for one agent or all (by agent name, then tool).
    ///
    /// # Errors
    /// SQLite errors.
    pub(super) fn view_rows(&self, view: StatsView, agent: Option<&str>) -> Result<QueryResult> {
        let sql = match view {
            StatsView::Memory => {
                "SELECT * FROM memory_stats WHERE ?1 IS NULL OR agent = ?1 ORDER BY agent"
            }
            StatsView::Tools => {
                "SELECT * FROM tool_stats WHERE ?1 IS NULL OR agent = ?1 ORDER BY agent, tool"
            }
            StatsView::Responses => {
                "SELECT * FROM response_stats WHERE ?1 IS NULL OR agent = ?1 ORDER BY agent"
            }
        };
        self.read(|c| {
            let mut stmt = c.prepare_cached(sql).sql(sql)?;
            let columns: Vec<String> = stmt.column_names().into_iter().map(String::from).collect();
            let mut rows = stmt.query([agent]).sql(sql)?;
            let mut out = Vec::new();
            while let Some(row) = rows.next().sql(sql)? {
                out.push(row_values(row, columns.len()).sql(sql)?);
            }
            Ok(QueryResult { columns, rows: out })
        })
    }
}
