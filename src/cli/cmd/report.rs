//! `agentstore report`: one self-contained HTML page with an agent's charts (or every
//! agent's), or, with `--json`, the data it is drawn from.

use std::io::{self, Write};
use std::path::PathBuf;

use crate::cli::Context;
use crate::cli::html;
use crate::cli::outfile::Target;
use crate::cli::output::{Output, Reply};

/// `report`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "The page needs no server and loads nothing from elsewhere: open it from disk, \
attach it to a ticket, or regenerate it from cron. With --json, the data it is drawn from is printed \
instead (see the README for its keys).

Examples:
  agentstore report
  agentstore report --agent bot --output bot.html
  agentstore report --output - > report.html
  agentstore --json report --agent bot"
)]
pub struct Args {
    /// Only this agent; every agent by default.
    #[arg(long)]
    pub agent: Option<String>,
    /// Where the page goes (default `agentstore-report.html`; `-` is standard output).
    /// The same rules as `export --output`: a regular file is replaced only once the
    /// page is complete and keeps its mode (a new one is owner-only, 0600); a symlink
    /// is followed; a device or FIFO is written to; a directory is refused.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
}

/// The default output file.
pub const DEFAULT_OUTPUT: &str = "agentstore-report.html";

/// Runs `report`.
pub fn run(ctx: &Context, args: Args) -> anyhow::Result<Reply> {
    // Where the page goes is settled before the database is read (not for --json).
    let target = match (&args.output, ctx.json) {
        (_, true) => None,
        (Some(path), false) => Some(Target::of(path)?),
        (None, false) => Some(Target::of(&PathBuf::from(DEFAULT_OUTPUT))?),
    };
    let store = ctx.open_existing()?;
    let report = store.report(args.agent.as_deref())?;
    let Some(target) = target else {
        let json = serde_json::to_value(&report)?;
        return Ok(Output::Text {
            text: json.to_string(),
            json,
        }
        .into());
    };
    let page = html::page(&report, &ctx.location.to_string());
    if let Target::Stdout = target {
        let mut out = io::stdout().lock();
        out.write_all(page.as_bytes())?;
        out.flush()?;
        return Ok(Output::Done.into());
    }
    let path = match &target {
        Target::Replace { path, .. } | Target::Through(path) => path.display().to_string(),
        Target::Stdout => unreachable!("handled above"),
    };
    let mut output = target.open()?;
    output.writer().write_all(page.as_bytes())?;
    output.commit()?;
    let agents = report.agents.len();
    Ok(Output::Text {
        text: format!(
            "wrote {path}: {agents} agent{}, {} bytes",
            if agents == 1 { "" } else { "s" },
            page.len()
        ),
        json: serde_json::json!({ "path": path, "agents": agents, "bytes": page.len() }),
    }
    .into())
}
