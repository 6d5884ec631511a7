//! `agentstore export` and `agentstore import`: an agent's whole state as JSON Lines.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, IsTerminal, Write};
use std::path::PathBuf;

use anyhow::Context as _;
use indicatif::{ProgressBar, ProgressStyle};

use crate::cli::Context;
use crate::cli::outfile::Target;
use crate::cli::output::{self, Output, Reply};

/// `export`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  agentstore export > backup.jsonl
  agentstore export --agent bot --output bot.jsonl
  agentstore --db new.db import bot.jsonl")]
pub struct ExportArgs {
    /// Only this agent (with the cached tool results of its scope); all by default.
    #[arg(long)]
    pub agent: Option<String>,
    /// Write to this file instead of stdout, and print a summary. A regular file is
    /// replaced only once the export is complete and keeps its mode (a new one is
    /// owner-only, 0600); a symlink is followed; a device or FIFO is written to, never
    /// replaced; a directory is refused. `-` is stdout.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
}

/// `import`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  agentstore import backup.jsonl
  agentstore import bot.jsonl --agent bot-copy
  gunzip -c backup.jsonl.gz | agentstore import -")]
pub struct ImportArgs {
    /// The export to read (`-` reads stdin).
    pub file: PathBuf,
    /// Import the file's one agent under this name (its own tool scope follows).
    #[arg(long)]
    pub agent: Option<String>,
}

/// `copy`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  agentstore --db agent.db copy --to postgres://bob@db.example/agents?schema=team_a
  agentstore --db postgres://bob@db.example/agents copy --to backup.db --agent bot")]
pub struct CopyArgs {
    /// The database to copy into: an SQLite file path (created if missing) or a
    /// PostgreSQL URL; `--db` is the one copied from.
    #[arg(long, value_name = "PATH|URL")]
    pub to: String,
    /// Only this agent (with the cached tool results of its scope); all by default.
    #[arg(long)]
    pub agent: Option<String>,
}

/// Runs `copy`: the export of `--db` (from one snapshot, spooled to an owner-only
/// temporary file, so memory stays bounded) imported into `--to` in one transaction,
/// all of it or nothing. Importing an agent the target already has is refused, as
/// `import` refuses it.
pub fn run_copy(ctx: &Context, args: CopyArgs) -> anyhow::Result<Reply> {
    let target = agentstore::Location::parse(&args.to)?;
    if target == ctx.location {
        anyhow::bail!("--to names the database --db names; copy into another one");
    }
    let source = ctx.open_existing()?;
    let mut spool = tempfile::tempfile().context("cannot create a temporary file")?;
    {
        let mut out = BufWriter::new(&mut spool);
        source.export(args.agent.as_deref(), &mut out)?;
        out.flush()?;
    }
    drop(source);
    use std::io::Seek;
    spool.rewind()?;
    let store = agentstore::Store::open_at(
        target,
        agentstore::StoreOptions::default()
            .with_busy_timeout(ctx.busy_timeout)
            .with_migrate(ctx.migrate),
    )?;
    let mut reader = BufReader::new(spool);
    let report = store.import(&mut reader, None)?;
    Ok(output::report(&report)?)
}

/// A progress bar on stderr when it is a terminal; hidden otherwise.
fn progress(len: Option<u64>, what: &str) -> ProgressBar {
    if !io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = match len {
        Some(n) => ProgressBar::new(n).with_style(
            ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes} {eta}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        ),
        None => ProgressBar::new_spinner().with_style(
            ProgressStyle::with_template("{spinner} {msg} {bytes}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        ),
    };
    bar.with_message(what.to_string())
}

/// Runs `export`.
pub fn run_export(ctx: &Context, args: ExportArgs) -> anyhow::Result<Reply> {
    // Where the export goes is settled before the database is read.
    let target = match &args.output {
        Some(path) => Target::of(path)?,
        None => Target::Stdout,
    };
    let store = ctx.open_existing()?;
    if let Target::Stdout = target {
        let stdout = io::stdout();
        let mut out = BufWriter::new(stdout.lock());
        store.export(args.agent.as_deref(), &mut out)?;
        out.flush()?;
        return Ok(Output::Done.into());
    }
    let mut output = target.open()?;
    let bar = progress(None, "exporting");
    let report = {
        let mut out = BufWriter::new(bar.wrap_write(output.writer()));
        let report = store.export(args.agent.as_deref(), &mut out);
        let flushed = out.flush();
        drop(out);
        bar.finish_and_clear();
        let report = report?;
        flushed?;
        report
    };
    output.commit()?;
    Ok(output::report(&report)?)
}

/// Runs `import`.
pub fn run_import(ctx: &Context, args: ImportArgs) -> anyhow::Result<Reply> {
    // Read the file's start before the database is opened (or created).
    let (mut input, len): (Box<dyn io::BufRead>, Option<u64>) = if args.file.as_os_str() == "-" {
        (Box::new(BufReader::new(io::stdin())), None)
    } else {
        let file = File::open(&args.file)
            .with_context(|| format!("cannot open {}", args.file.display()))?;
        if file.metadata()?.is_dir() {
            anyhow::bail!("{} is a directory, not an export file", args.file.display());
        }
        let len = file.metadata()?.len();
        (Box::new(BufReader::new(file)), Some(len))
    };
    let store = ctx.open_for_write()?;
    let bar = progress(len, "importing");
    let mut reader = BufReader::new(bar.wrap_read(&mut input));
    let report = store.import(&mut reader, args.agent.as_deref());
    bar.finish_and_clear();
    let report = report?;
    Ok(output::report(&report)?)
}
