//! `agentstore export` and `agentstore import`: an agent's whole state as JSON Lines.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, IsTerminal};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use indicatif::{ProgressBar, ProgressStyle};

use crate::cli::Context;
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
    /// Write to this file (created or replaced only once the export is complete)
    /// instead of stdout; a summary is printed.
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
    let store = ctx.open_for_read()?;
    let Some(path) = args.output else {
        let stdout = io::stdout();
        let mut out = BufWriter::new(stdout.lock());
        store.export(args.agent.as_deref(), &mut out)?;
        return Ok(Output::Done.into());
    };
    let partial = partial_path(&path);
    let bar = progress(None, "exporting");
    let written = (|| -> anyhow::Result<_> {
        let file = File::create(&partial)
            .with_context(|| format!("cannot create {}", partial.display()))?;
        let handle = file.try_clone()?;
        let mut out = BufWriter::new(bar.wrap_write(file));
        let report = store.export(args.agent.as_deref(), &mut out)?;
        drop(out);
        handle.sync_all()?;
        std::fs::rename(&partial, &path).with_context(|| {
            format!("cannot rename {} to {}", partial.display(), path.display())
        })?;
        Ok(report)
    })();
    bar.finish_and_clear();
    let report = written.inspect_err(|_| {
        let _ = std::fs::remove_file(&partial);
    })?;
    Ok(output::report(&report)?)
}

/// `FILE.partial` beside `path`: the export goes there first.
fn partial_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".partial");
    path.with_file_name(name)
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
