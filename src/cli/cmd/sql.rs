//! `agentstore sql`: one read-only query.

use std::time::Duration;

use serde_json::Value;

use crate::cli::Context;
use crate::cli::output::{self, Output, Reply};
use crate::cli::parse;

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

/// Runs `sql`.
pub fn run(ctx: &Context, args: Args) -> anyhow::Result<Reply> {
    let result = agentstore::query_read_only(&ctx.db, &args.query, args.timeout)?;
    let json = output::objects(&result.columns, &result.rows);
    let rows = result
        .rows
        .iter()
        .map(|row| row.iter().map(cell).collect())
        .collect();
    Ok(Output::Rows {
        header: result.columns.clone(),
        rows,
        json,
    }
    .into())
}

fn cell(v: &Value) -> String {
    match v {
        Value::Null => "NULL".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}
