//! `agentstore sql`: one read-only query.

use std::io::{self, Write};
use std::time::Duration;

use agentstore::QuerySink;
use serde_json::Value;

use crate::cli::Context;
use crate::cli::output::{JsonArray, Output, Reply};
use crate::cli::parse;
use crate::cli::table::TableWriter;

/// Run one read-only SQL query and print its rows (a table, or with --json an array of
/// objects). Any statement that could write (INSERT, UPDATE, DELETE, DDL, ATTACH,
/// VACUUM INTO, transaction control, pragmas that set values, load_extension) is
/// refused and the file is left unchanged. Only one statement is accepted. The views
/// (e.g. memory_stats) are a stable interface; see the README.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  agentstore sql 'SELECT * FROM memory_stats'
  agentstore --json sql 'SELECT id, importance FROM memory_entries ORDER BY importance DESC LIMIT 5'")]
pub struct Args {
    /// The query.
    pub query: String,

    /// Interrupt the query after this long (e.g. 500ms, 30s, 2m).
    #[arg(long, default_value = "30s", value_parser = parse::duration, allow_hyphen_values = true)]
    pub timeout: Duration,
}

/// Runs the query on the engine `--db` names: an SQLite file opened read-only for
/// it alone, or a server's read-only transaction.
fn query(
    ctx: &Context,
    sql: &str,
    timeout: std::time::Duration,
    sink: &mut dyn agentstore::QuerySink,
) -> agentstore::Result<u64> {
    match &ctx.location {
        agentstore::Location::Sqlite(path) => {
            agentstore::query_read_only_with(path, sql, timeout, sink)
        }
        _ => ctx.open_existing()?.query_read_only(sql, timeout, sink),
    }
}

/// Runs `sql`: rows are written as SQLite produces them, so memory is bounded by a
/// row (and the table's first rows, which set its column widths). With `--json` the
/// array is written one object per line; when the query fails part way (its timeout,
/// a closed pipe) the array is left unclosed, so no parser takes it for the whole
/// result, and the error goes to stderr.
pub fn run(ctx: &Context, args: Args) -> anyhow::Result<Reply> {
    let stdout = io::stdout();
    let out = io::BufWriter::new(stdout.lock());
    if ctx.json {
        let mut sink = JsonSink {
            array: JsonArray::new(out)?,
            names: Vec::new(),
        };
        query(ctx, &args.query, args.timeout, &mut sink)?;
        sink.array.finish()?;
    } else {
        let mut sink = TableSink {
            out: Some(out),
            width: ctx.width,
            table: None,
            cells: Vec::new(),
        };
        let result = query(ctx, &args.query, args.timeout, &mut sink);
        // What was read is shown before the error that stopped the rest (but an error
        // before any row is not preceded by "(no rows)").
        if let Some(t) = sink.table.take()
            && (result.is_ok() || t.rows() > 0)
        {
            t.finish()?.flush()?;
        }
        result?;
    }
    Ok(Output::Done.into())
}

/// `--json`: an array written one object per line.
struct JsonSink<W: Write> {
    array: JsonArray<W>,
    names: Vec<String>,
}

impl<W: Write> QuerySink for JsonSink<W> {
    fn columns(&mut self, names: &[String]) -> io::Result<()> {
        self.names = names.to_vec();
        Ok(())
    }

    fn row(&mut self, values: Vec<Value>) -> io::Result<()> {
        let object: serde_json::Map<String, Value> =
            self.names.iter().cloned().zip(values).collect();
        self.array.item(&object)
    }
}

/// A table written as rows arrive.
struct TableSink<W: Write> {
    out: Option<W>,
    width: Option<usize>,
    table: Option<TableWriter<W>>,
    cells: Vec<String>,
}

impl<W: Write> QuerySink for TableSink<W> {
    fn columns(&mut self, names: &[String]) -> io::Result<()> {
        if let Some(out) = self.out.take() {
            self.table = Some(TableWriter::new(out, Some(names), self.width));
        }
        Ok(())
    }

    fn row(&mut self, values: Vec<Value>) -> io::Result<()> {
        self.cells.clear();
        self.cells.extend(values.iter().map(cell));
        match self.table.as_mut() {
            Some(t) => t.row(&self.cells),
            None => Ok(()),
        }
    }
}

fn cell(v: &Value) -> String {
    match v {
        Value::Null => "NULL".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}
