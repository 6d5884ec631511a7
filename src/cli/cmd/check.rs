//! `agentstore check`: the file's health.

use serde_json::to_value;

use crate::cli::Context;
use crate::cli::output::{Output, Reply};
use crate::cli::table;

/// Run SQLite's integrity and foreign-key checks, read the schema version, count rows,
/// compare the trigger-kept counters with the real counts and the memory search index
/// with the entries. Exits 0 when all is well, 3 when a problem was found (each
/// listed), 1 when the file cannot be checked.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  agentstore check && echo healthy\n  agentstore check --repair"
)]
pub struct Args {
    /// Rebuild the memory search index from the entries first (what `memory
    /// reindex` does), then check.
    #[arg(long)]
    pub repair: bool,
}

/// Runs `check`.
pub fn run(ctx: &Context, args: Args) -> anyhow::Result<Reply> {
    let store = if args.repair {
        ctx.open_for_write()?
    } else {
        ctx.open_existing()?
    };
    let repaired = match args.repair {
        true => Some(store.reindex_memory()?),
        false => None,
    };
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
    if let Some(n) = repaired {
        fields.push((
            "repaired".to_string(),
            format!("rebuilt the memory search index ({n} entries)"),
        ));
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
            json: {
                let mut json = to_value(&report)?;
                if let Some(n) = repaired {
                    json["reindexed_entries"] = n.into();
                }
                json
            },
        },
    })
}
