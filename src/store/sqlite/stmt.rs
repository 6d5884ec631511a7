//! The statement helpers every table group uses: run a cached statement once and
//! attach it to the error, and the engine's classification of SQLite's errors.

use rusqlite::{Connection, ErrorCode, OptionalExtension, Params, Row};

use crate::error::{DbErrorKind, Error, Result, short_statement};

/// Attaches the failing statement to an SQLite error, classified.
pub(crate) trait SqlContext<T> {
    /// Wraps the error with the statement (or step name) that raised it.
    fn sql(self, statement: &str) -> Result<T>;
}

impl<T> SqlContext<T> for std::result::Result<T, rusqlite::Error> {
    fn sql(self, statement: &str) -> Result<T> {
        self.map_err(|source| wrap(source, statement))
    }
}

/// An SQLite error as the store reports it: disk full and read-only as their own
/// variants, everything else classified, with its statement.
pub(crate) fn wrap(source: rusqlite::Error, statement: &str) -> Error {
    match source.sqlite_error_code() {
        Some(ErrorCode::DiskFull) => Error::DiskFull,
        Some(ErrorCode::ReadOnly) => Error::ReadOnlyDatabase,
        code => Error::Sql {
            kind: classify(code),
            statement: short_statement(statement),
            source: Box::new(source),
        },
    }
}

fn classify(code: Option<ErrorCode>) -> DbErrorKind {
    match code {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => DbErrorKind::Busy,
        Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase) => DbErrorKind::Damaged,
        Some(ErrorCode::ConstraintViolation) => DbErrorKind::Constraint,
        _ => DbErrorKind::Other,
    }
}

/// Runs the cached statement `sql` once; returns the rows it changed.
pub(crate) fn exec(c: &Connection, sql: &str, params: impl Params) -> Result<usize> {
    c.prepare_cached(sql)
        .and_then(|mut s| s.execute(params))
        .sql(sql)
}

/// The one row the cached statement `sql` returns, decoded by `f`.
pub(crate) fn row<T>(
    c: &Connection,
    sql: &str,
    params: impl Params,
    f: impl FnOnce(&Row<'_>) -> rusqlite::Result<T>,
) -> Result<T> {
    c.prepare_cached(sql)
        .and_then(|mut s| s.query_row(params, f))
        .sql(sql)
}

/// The row the cached statement `sql` returns, if any, decoded by `f`.
pub(crate) fn opt_row<T>(
    c: &Connection,
    sql: &str,
    params: impl Params,
    f: impl FnOnce(&Row<'_>) -> rusqlite::Result<T>,
) -> Result<Option<T>> {
    c.prepare_cached(sql)
        .and_then(|mut s| s.query_row(params, f).optional())
        .sql(sql)
}

/// Every row the cached statement `sql` returns, decoded by `f`.
pub(crate) fn rows<T>(
    c: &Connection,
    sql: &str,
    params: impl Params,
    f: impl FnMut(&Row<'_>) -> rusqlite::Result<T>,
) -> Result<Vec<T>> {
    let mut stmt = c.prepare_cached(sql).sql(sql)?;
    let rows = stmt.query_map(params, f).sql(sql)?;
    rows.collect::<rusqlite::Result<Vec<T>>>().sql(sql)
}

/// Hands each row of the cached statement `sql`, decoded by `decode`, to `each`; an
/// error from `each` stops the walk and is returned. Holds one row at a time.
pub(crate) fn each_row<T>(
    c: &Connection,
    sql: &str,
    params: impl Params,
    decode: impl Fn(&Row<'_>) -> rusqlite::Result<T>,
    mut each: impl FnMut(T) -> Result<()>,
) -> Result<()> {
    let mut stmt = c.prepare_cached(sql).sql(sql)?;
    let mut rows = stmt.query(params).sql(sql)?;
    while let Some(r) = rows.next().sql(sql)? {
        each(decode(r).sql(sql)?)?;
    }
    Ok(())
}
