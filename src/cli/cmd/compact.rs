//! `agentstore compact`: give free pages back to the file system.

use serde_json::to_value;

use crate::cli::Context;
use crate::cli::output::{self, Output, Reply};

/// Give the file's free pages back to the file system (a prune or purge frees pages
/// inside the file, but the file does not shrink by itself). By default it works in
/// short write transactions, so agents keep running meanwhile; that needs a file
/// created with incremental vacuum, as every file this version creates is. --full runs
/// VACUUM instead: it rewrites the whole file (needing its size again in free disk),
/// blocks writers until it is done, and turns incremental vacuum on for older files.
/// `agentstore check` reports the free fraction.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  agentstore memory prune --agent bot --keep-fraction 0.5 && agentstore compact
  agentstore compact --full")]
pub struct Args {
    /// Rewrite the whole file with VACUUM (blocks writers while it runs).
    #[arg(long)]
    pub full: bool,
}

/// Runs `compact`.
pub fn run(ctx: &Context, args: Args) -> anyhow::Result<Reply> {
    let store = ctx.open_existing()?;
    let r = store.compact(args.full)?;
    let pages = |p: &agentstore::PageUse| {
        format!(
            "{} pages ({}), {} free ({:.0}%)",
            p.pages,
            output::bytes(p.pages * p.page_size),
            p.free_pages,
            p.free_fraction() * 100.0
        )
    };
    let mut text = format!(
        "{} compaction: reclaimed {}\nbefore: {}\nafter:  {}",
        r.mode,
        output::bytes(r.bytes_reclaimed),
        pages(&r.before),
        pages(&r.after)
    );
    if let Some(note) = &r.note {
        text.push_str(&format!("\nnote: {note}"));
    }
    Ok(Output::Text {
        text,
        json: to_value(&r)?,
    }
    .into())
}
