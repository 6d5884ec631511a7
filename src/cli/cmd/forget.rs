//! `agentstore forget`: remove what matches a query from everything an agent keeps.

use serde_json::to_value;

use crate::cli::Context;
use crate::cli::output::{self, Output, Reply};

/// Remove, for good, an agent's memory entries that match every word of QUERY, its
/// cached responses whose message or response contains them, and the cached tool
/// results of its tool scope whose params or result contain them (case-insensitive).
/// The text is scrubbed from the file and its WAL before this returns. --dry-run
/// lists exactly what would go.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  agentstore forget --agent bot --matching '221B Baker Street' --dry-run
  agentstore forget --agent bot --matching 'home address'")]
pub struct Args {
    /// The agent's name.
    #[arg(long)]
    pub agent: String,
    /// What to forget: words (all must be present), `prefix*`, `"a phrase"`.
    #[arg(long)]
    pub matching: String,
    /// List what would be removed, and remove nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// Runs `forget`.
pub fn run(ctx: &Context, a: Args) -> anyhow::Result<Reply> {
    let store = ctx.open_for_write()?;
    let agent = store.existing_agent(&a.agent)?;
    let report = store.forget_everywhere(&agent, &a.matching, a.dry_run)?;
    let verb = if report.dry_run {
        "would forget"
    } else {
        "forgot"
    };
    let mut text = format!(
        "{verb} {} memory entries, {} cached responses, {} cached tool results",
        report.memory_entries.len(),
        report.responses.len(),
        report.tool_results.len()
    );
    for e in &report.memory_entries {
        text += &format!(
            "\n  memory {} [{}] {}",
            e.id,
            e.role,
            output::snippet(&e.content, 60)
        );
    }
    for r in &report.responses {
        text += &format!("\n  response {} {}", r.id, output::snippet(&r.message, 60));
    }
    for t in &report.tool_results {
        text += &format!(
            "\n  tool result {} {}",
            t.tool,
            output::snippet(&t.params.to_string(), 60)
        );
    }
    let removed = report.memory_entries.len() + report.responses.len() + report.tool_results.len();
    if !report.dry_run && removed > 0 && !report.scrubbed {
        text += crate::cli::cmd::memory::WAL_NOTE;
    }
    Ok(Output::Text {
        text,
        json: to_value(&report)?,
    }
    .into())
}
