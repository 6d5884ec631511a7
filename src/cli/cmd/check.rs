//! `agentstore check`: the file's health.

use serde_json::to_value;

use crate::cli::Context;
use crate::cli::output::{Output, Reply};
use crate::cli::table;

/// Run SQLite's integrity and foreign-key checks, read the schema version, count rows,
/// and compare the trigger-kept counters with the real counts. Exits 0 when all is
/// well, 3 when a problem was found (each listed), 1 when the file cannot be checked.
#[derive(Debug, clap::Args)]
#[command(after_help = "Example:\n  agentstore check && echo healthy")]
pub struct Args {}

/// Runs `check`.
pub fn run(ctx: &Context, _args: Args) -> anyhow::Result<Reply> {
    let store = ctx.open_existing()?;
    let report = store.check()?;
    let mut fields = vec![
        ("integrity".to_string(), report.integrity.join("; ")),
        (
            "foreign key violations".to_string(),
            report.foreign_key_violations.to_string(),
        ),
        (
            "schema version".to_string(),
            report.schema_version.to_string(),
        ),
        ("journal mode".to_string(), report.journal_mode.clone()),
    ];
    if let Some(p) = &report.pages {
        fields.push((
            "free pages".to_string(),
            format!(
                "{} of {} ({:.1}%)",
                p.free_pages,
                p.pages,
                p.free_fraction() * 100.0
            ),
        ));
    }
    for (table, n) in &report.row_counts {
        fields.push((format!("rows in {table}"), n.to_string()));
    }
    if report.ok {
        fields.push(("problems".to_string(), "none".to_string()));
    }
    let rows: Vec<Vec<String>> = fields.into_iter().map(|(k, v)| vec![k, v]).collect();
    let mut text = table::render(None, &rows, ctx.width);
    // Problems and notes below the table, each a whole line: they are what to act on.
    for p in &report.problems {
        text.push_str(&format!("\nproblem: {p}"));
    }
    for n in &report.notes {
        text.push_str(&format!("\nnote: {n}"));
    }
    Ok(Reply {
        problems: !report.ok,
        output: Output::Text {
            text,
            json: to_value(&report)?,
        },
    })
}
