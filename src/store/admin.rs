//! Administration: the health check, the stats views, read-only queries, and the
//! database's space. The reports and the `Store` methods; each is one engine call.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

use super::Store;
#[cfg(doc)]
use crate::error::Error;
use crate::error::Result;

/// What `check` found. `problems` is empty when all is well.
#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    /// True when no problem was found.
    pub ok: bool,
    /// `PRAGMA integrity_check` output (`["ok"]` when healthy).
    pub integrity: Vec<String>,
    /// Rows reported by `PRAGMA foreign_key_check`.
    pub foreign_key_violations: u64,
    /// `PRAGMA user_version`.
    pub schema_version: i64,
    /// `PRAGMA journal_mode`.
    pub journal_mode: String,
    /// Rows per table.
    pub row_counts: BTreeMap<String, u64>,
    /// Every problem, one line each.
    pub problems: Vec<String>,
    /// Things worth knowing that are not problems (an interrupted prune), one line each.
    pub notes: Vec<String>,
    /// Pages in the file, and how many are free (space `compact` can give back).
    pub pages: Option<PageUse>,
}

/// Rows of a read-only query.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QueryResult {
    /// Column names, in order.
    pub columns: Vec<String>,
    /// Rows; each value is JSON: null, integer, real, text, or a BLOB as `X'..'` hex.
    pub rows: Vec<Vec<Value>>,
}

/// Where [`query_read_only_with`] hands a query's result, a row at a time.
pub trait QuerySink {
    /// The column names, once, before any row.
    ///
    /// # Errors
    /// Any I/O error; it stops the query.
    fn columns(&mut self, names: &[String]) -> std::io::Result<()>;

    /// One row, as JSON values in column order.
    ///
    /// # Errors
    /// Any I/O error; it stops the query.
    fn row(&mut self, values: Vec<Value>) -> std::io::Result<()>;
}

/// Collecting: every row is kept.
impl QuerySink for QueryResult {
    fn columns(&mut self, names: &[String]) -> std::io::Result<()> {
        self.columns = names.to_vec();
        Ok(())
    }

    fn row(&mut self, values: Vec<Value>) -> std::io::Result<()> {
        self.rows.push(values);
        Ok(())
    }
}

/// The SQL views that `agentstore stats` shows (each is also a public interface for
/// any SQLite client).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatsView {
    /// `memory_stats`: one row per agent.
    Memory,
    /// `tool_stats`: one row per agent and tool.
    Tools,
    /// `response_stats`: one row per agent.
    Responses,
}

impl StatsView {
    /// The view's name in the schema.
    pub fn name(self) -> &'static str {
        match self {
            StatsView::Memory => "memory_stats",
            StatsView::Tools => "tool_stats",
            StatsView::Responses => "response_stats",
        }
    }
}

/// How the file's pages are used.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct PageUse {
    /// Pages in the file.
    pub pages: u64,
    /// Of them, free (on the freelist).
    pub free_pages: u64,
    /// The page size in bytes.
    pub page_size: u64,
}

impl PageUse {
    /// Free pages as a fraction of all pages (0 for an empty file).
    pub fn free_fraction(&self) -> f64 {
        if self.pages == 0 {
            0.0
        } else {
            self.free_pages as f64 / self.pages as f64
        }
    }
}

/// What a compaction did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CompactReport {
    /// `incremental` or `full`.
    pub mode: &'static str,
    /// Pages before and after.
    pub before: PageUse,
    /// See `before`.
    pub after: PageUse,
    /// Bytes given back to the file system (the file's size change).
    pub bytes_reclaimed: u64,
    /// True when the file uses incremental vacuum (after a full one, it does).
    pub incremental_vacuum: bool,
    /// What the operator may want to know (an older file without incremental vacuum).
    pub note: Option<String>,
}

impl Store {
    /// Checks the whole database. Reads only; runs in one snapshot. A file so damaged
    /// that the engine cannot finish a step is a problem in the report, not an error.
    ///
    /// # Errors
    /// Database errors, other than damage, that prevent the check from running.
    pub fn check(&self) -> Result<CheckReport> {
        self.engine().check()
    }

    /// Rebuilds the memory search index from the memory entries, in one transaction.
    /// Returns the number of entries indexed. `check` reports an index that does not
    /// match the entries; this repairs it.
    ///
    /// # Errors
    /// Database errors.
    pub fn reindex_memory(&self) -> Result<u64> {
        self.engine().reindex()
    }

    /// The rows of `view`, for one agent or all (by agent name, then tool).
    ///
    /// # Errors
    /// Database errors.
    pub fn view(&self, view: StatsView, agent: Option<&str>) -> Result<QueryResult> {
        self.engine().view(view, agent)
    }

    /// How the database's pages are used now.
    ///
    /// # Errors
    /// Database errors.
    pub fn page_use(&self) -> Result<PageUse> {
        self.engine().page_use()
    }

    /// Gives free pages back to the file system. Incremental (the default) works in
    /// short write transactions, so agents keep writing meanwhile; on SQLite it needs
    /// a file created with incremental vacuum (every file this version creates).
    /// `full` runs `VACUUM`: it rewrites the file (needing as much free disk again),
    /// holds the write lock throughout, and turns incremental vacuum on for next time.
    ///
    /// # Errors
    /// Database errors; busy when another process holds the write lock past the busy
    /// timeout.
    pub fn compact(&self, full: bool) -> Result<CompactReport> {
        self.engine().compact(full)
    }

    /// One read-only statement against this store, in the engine's sandbox (see
    /// [`query_read_only_with`]).
    ///
    /// # Errors
    /// As [`query_read_only_with`].
    pub fn query_read_only(
        &self,
        sql: &str,
        timeout: Duration,
        sink: &mut dyn QuerySink,
    ) -> Result<u64> {
        self.engine().query_read_only(sql, timeout, sink)
    }
}

/// Runs one read-only query against the database at `path` and collects its rows.
/// Prefer [`query_read_only_with`] for results of unknown size: it holds one row at a
/// time.
///
/// # Errors
/// As [`query_read_only_with`].
pub fn query_read_only(path: &Path, sql: &str, timeout: Duration) -> Result<QueryResult> {
    let mut result = QueryResult {
        columns: Vec::new(),
        rows: Vec::new(),
    };
    query_read_only_with(path, sql, timeout, &mut result)?;
    Ok(result)
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
/// identity errors of [`Store::open`], the query's own SQLite error, or
/// [`Error::Io`] when the sink fails (a closed pipe, say).
pub fn query_read_only_with(
    path: &Path,
    sql: &str,
    timeout: Duration,
    sink: &mut dyn QuerySink,
) -> Result<u64> {
    super::sqlite::query_read_only_with(path, sql, timeout, sink)
}
