//! The admin CLI, used by `main.rs` only (the library never depends on clap). Each
//! subcommand is a module with an `Args` struct, whose doc comments are its help, and a
//! `run` that returns data for [`output`] to render.

pub mod cmd;
pub mod html;
pub mod mcp;
pub mod outfile;
pub mod output;
pub mod parse;
pub mod signals;
pub mod table;

use std::path::PathBuf;
use std::process::ExitCode;

use agentstore::{ErrorKind, Location, Store, StoreOptions};
use clap::{Parser, Subcommand};

use output::Reply;

/// agentstore keeps a long-lived LLM agent's state (memory, cached tool results and
/// tool stats, cached responses and response times) in one SQLite file. This CLI inspects, queries and prunes that file, also
/// while the agent is running.
#[derive(Debug, Parser)]
#[command(name = "agentstore", version, max_term_width = 100)]
#[command(after_help = "Examples:
  agentstore demo
  agentstore chat --agent bot
  agentstore stats
  agentstore init
  agentstore memory add --agent bot --importance 0.9 'the user prefers metric units'
  agentstore --json memory stats --agent bot
  agentstore tools stats
  agentstore responses stats --agent bot
  agentstore sql 'SELECT * FROM memory_stats'")]
pub struct Cli {
    /// The database: an SQLite file path (or sqlite:PATH), or a PostgreSQL URL
    /// (postgres://user@host:port/dbname, `?schema=NAME` to keep deployments apart;
    /// the password may come from PGPASSWORD or ~/.pgpass, and is never printed).
    #[arg(
        long,
        global = true,
        env = "AGENTSTORE_DB",
        default_value = "agentstore.db"
    )]
    pub db: PathBuf,

    /// How long to wait for another process's write to finish before failing with
    /// "database is locked". A long prune or purge sizes its batches so that none holds
    /// the write lock for more than an eighth of this.
    #[arg(
        long,
        global = true,
        env = "AGENTSTORE_BUSY_TIMEOUT",
        default_value = "5s",
        value_parser = parse::busy_timeout,
        allow_hyphen_values = true
    )]
    pub busy_timeout: std::time::Duration,

    /// Never create or upgrade the schema automatically, for shared PostgreSQL servers
    /// whose operators migrate by hand: a database without agentstore's schema is
    /// refused (`agentstore init` still creates it). SQLite files always migrate.
    #[arg(long, global = true, env = "AGENTSTORE_NO_MIGRATE")]
    pub no_migrate: bool,

    /// Print one JSON document to stdout instead of a table or text.
    #[arg(long, global = true)]
    pub json: bool,

    /// On an error, also print what failed internally (the SQL statement behind a
    /// database error), for a bug report.
    #[arg(long, short, global = true)]
    pub verbose: bool,

    /// Do not cut table cells to fit the width. Tables otherwise fit the terminal, or
    /// COLUMNS when it is set, or 100 columns when stdout is not a terminal; a cut cell
    /// ends with "…" (--json always gives full values).
    #[arg(long, global = true)]
    pub wide: bool,

    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the original tutorial's scenario end to end on the file (memory past its
    /// cleanup interval and byte budget, cached parallel tools, a message stream with
    /// repeats answered under a target time, auto-tuning) and print each part's stats.
    /// Run it twice: the second run starts from what the first stored.
    Demo(cmd::demo::Args),
    /// Talk to an agent: one message per line on stdin; each reply is followed by its
    /// time and outcome. Works with piped input.
    Chat(cmd::chat::Args),
    /// Memory, tool and response stats (the SQL views memory_stats, tool_stats,
    /// response_stats), for one agent or all.
    Stats(cmd::stats::Args),
    /// Write agents' state as JSON Lines (a header line, then one record per row).
    Export(cmd::transfer::ExportArgs),
    /// Read an export in one transaction: all of it, or nothing at the first bad line.
    Import(cmd::transfer::ImportArgs),
    /// Copy agents' state into another database (SQLite or PostgreSQL) in one step:
    /// an export of this one, imported there in one transaction.
    Copy(cmd::transfer::CopyArgs),
    /// Create the database file (owner-only permissions) and its schema, or check an
    /// existing one.
    Init(cmd::init::Args),
    /// List agents.
    #[command(
        subcommand,
        after_help = "Examples:
  agentstore agents list
  agentstore --json agents list"
    )]
    Agents(cmd::agents::Command),
    /// Add, list, search, inspect, correct, forget and prune an agent's memory entries.
    #[command(
        subcommand,
        after_help = "Examples:
  agentstore memory add --agent bot --importance 0.9 'the user prefers metric units'
  agentstore memory list --agent bot --order importance --limit 10
  agentstore memory search --agent bot 'metric units'
  agentstore memory context --agent bot --max-chars 1000 --query 'which units?'
  agentstore memory rate --agent bot 42 --importance 0.2
  agentstore memory forget --agent bot --matching 'home address' --dry-run
  agentstore memory prune --agent bot --older-than 30d --dry-run"
    )]
    Memory(cmd::memory::Command),
    /// Forget what matches a query in an agent's memory, cached responses and cached
    /// tool results, scrubbed from the file.
    Forget(cmd::forget::Args),
    /// Tool call stats and the tool-result cache: list and purge cached results.
    #[command(
        subcommand,
        after_help = "Examples:
  agentstore tools stats --agent bot
  agentstore tools cache list --agent bot
  agentstore tools cache purge --expired"
    )]
    Tools(cmd::tools::Command),
    /// The response cache and response-time log: stats, list, lookup, optimize,
    /// purge.
    #[command(
        subcommand,
        after_help = "Examples:
  agentstore responses stats --agent bot
  agentstore responses lookup --agent bot 'what is the capital of France'
  agentstore responses purge --agent bot --keep 500"
    )]
    Responses(cmd::responses::Command),
    /// Run one read-only SQL query and print its rows.
    Sql(cmd::sql::Args),
    /// Check the file: integrity, schema version, row counts, the trigger-kept
    /// counters and the memory search index. Exits 3 when it finds a problem;
    /// --repair rebuilds the search index first.
    Check(cmd::check::Args),
    /// Give free pages back to the file system (after a prune or purge), while agents
    /// keep running; --full rewrites the file with VACUUM.
    Compact(cmd::compact::Args),
    /// Write one self-contained HTML page with an agent's charts (memory, responses,
    /// tools), or every agent's; --json prints the data it is drawn from.
    Report(cmd::report::Args),
    /// Serve an agent's memory to MCP clients (Claude Desktop and Code, Cursor, the
    /// OpenAI Agents SDK, ...) over stdio, and with --http over the streamable HTTP
    /// transport: tools to remember, recall, pack a context, list, rate and forget.
    Mcp(cmd::mcp::Args),
}

/// Runs the parsed command and renders its reply.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    // Every command reaches the store through `Location::parse`, as `Store::connect`.
    let location = match cli.db.to_str() {
        Some(text) => Location::parse(text)?,
        None => Location::Sqlite(cli.db.clone()),
    };
    let db = match &location {
        Location::Sqlite(path) => path.clone(),
        // Shown where a command names the database; no file is ever made of it.
        other => PathBuf::from(other.to_string()),
    };
    let ctx = Context {
        db,
        migrate: !cli.no_migrate,
        location,
        json: cli.json,
        width: table::width(cli.wide),
        busy_timeout: cli.busy_timeout,
    };
    let reply = match cli.command {
        Command::Demo(a) => cmd::demo::run(&ctx, a)?,
        Command::Chat(a) => cmd::chat::run(&ctx, a)?,
        Command::Stats(a) => cmd::stats::run(&ctx, a)?,
        Command::Export(a) => cmd::transfer::run_export(&ctx, a)?,
        Command::Import(a) => cmd::transfer::run_import(&ctx, a)?,
        Command::Copy(a) => cmd::transfer::run_copy(&ctx, a)?,
        Command::Init(a) => cmd::init::run(&ctx, a)?,
        Command::Agents(c) => cmd::agents::run(&ctx, c)?,
        Command::Memory(c) => cmd::memory::run(&ctx, c)?,
        Command::Tools(c) => cmd::tools::run(&ctx, c)?,
        Command::Responses(c) => cmd::responses::run(&ctx, c)?,
        Command::Sql(a) => cmd::sql::run(&ctx, a)?,
        Command::Check(a) => cmd::check::run(&ctx, a)?,
        Command::Forget(a) => cmd::forget::run(&ctx, a)?,
        Command::Compact(a) => cmd::compact::run(&ctx, a)?,
        Command::Report(a) => cmd::report::run(&ctx, a)?,
        Command::Mcp(a) => cmd::mcp::run(&ctx, a)?,
    };
    let Reply { output, problems } = reply;
    output.print(ctx.json, ctx.width)?;
    Ok(if problems {
        ExitCode::from(3)
    } else {
        ExitCode::SUCCESS
    })
}

/// What every command gets from the global flags.
#[derive(Debug)]
pub struct Context {
    /// `--db`, read.
    pub location: Location,
    /// The SQLite file `--db` names (for a server, its URL with the password blanked).
    pub db: PathBuf,
    /// Whether opening may create or upgrade the schema (not `--no-migrate`).
    pub migrate: bool,
    /// `--json`.
    pub json: bool,
    /// The width tables fit (none with `--wide`).
    pub width: Option<usize>,
    /// `--busy-timeout`.
    pub busy_timeout: std::time::Duration,
}

impl Context {
    /// Opens the store for a command that writes (creating the file if needed). An
    /// existing empty file is refused: SQLite would take it for a new database, and a
    /// file truncated to nothing would silently start over; `init` is the explicit way.
    /// A file another process has just created is empty for the few milliseconds it
    /// takes to write the schema, so an empty file gets a grace second to fill first.
    pub fn open_for_write(&self) -> anyhow::Result<Store> {
        if !matches!(self.location, Location::Sqlite(_)) {
            return Ok(Store::open_at(
                self.location.clone(),
                StoreOptions::default()
                    .with_busy_timeout(self.busy_timeout)
                    .with_migrate(self.migrate),
            )?);
        }
        let empty = || std::fs::metadata(&self.db).is_ok_and(|m| m.is_file() && m.len() == 0);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
        while empty() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        if empty() {
            anyhow::bail!(
                "{} is an empty file (0 bytes), not an agentstore database; \
                 run `agentstore init` to create one in it",
                self.db.display()
            );
        }
        self.open_for_init()
    }

    /// Opens the store for `init`: creates the file, or the schema in an empty file.
    pub fn open_for_init(&self) -> anyhow::Result<Store> {
        Ok(Store::open_at(
            self.location.clone(),
            StoreOptions::default().with_busy_timeout(self.busy_timeout),
        )?)
    }

    /// Opens a store that must exist already (never creates a file): for every
    /// command but `init` and the ones that add what they are given. Commands that
    /// then write (a prune, a purge, `responses optimize`) open it this way too.
    pub fn open_existing(&self) -> agentstore::Result<Store> {
        Store::open_at(
            self.location.clone(),
            StoreOptions::existing()
                .with_busy_timeout(self.busy_timeout)
                .with_migrate(self.migrate),
        )
    }
}

/// How an error is shown: the flags that change its line.
#[derive(Debug, Clone, Copy)]
pub struct ErrorStyle {
    /// `--verbose`: add the internal statement.
    pub verbose: bool,
    /// `--busy-timeout`, named when the database was locked.
    pub busy_timeout: std::time::Duration,
}

/// The one line printed for an error. The library's messages already name their
/// cause; other errors (I/O on stdout, JSON) get their causes appended. No SQL is
/// shown unless `--verbose`.
pub fn error_line(e: &anyhow::Error, style: ErrorStyle) -> String {
    let line = match e.downcast_ref::<agentstore::Error>() {
        // Damage found in the middle of a statement: say so, and what to run.
        Some(err @ agentstore::Error::Sql { .. }) if err.is_damage() => format!(
            "the database file is damaged ({err}); `agentstore check` reports what is wrong"
        ),
        Some(err) if err.is_busy() => format!(
            "the database is locked: another process held it for longer than the busy timeout \
             ({}); retry, or wait longer with --busy-timeout (e.g. --busy-timeout 30s)",
            humantime::format_duration(style.busy_timeout)
        ),
        Some(err) => err.to_string(),
        None => e
            .chain()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(": "),
    };
    let line = match e
        .downcast_ref::<agentstore::Error>()
        .and_then(|e| e.statement())
    {
        Some(statement) if style.verbose => format!("{line} (in `{statement}`)"),
        _ => line,
    };
    line.replace('\n', " ")
}

/// 2 for invalid input, 1 for everything else.
pub fn exit_code(e: &anyhow::Error) -> u8 {
    match e.downcast_ref::<agentstore::Error>() {
        Some(err) if err.kind() == ErrorKind::InvalidInput => 2,
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    /// Every leaf subcommand, as a user types it (`memory add`, `sql`, ...).
    fn leaf_commands(cmd: &clap::Command, prefix: &str, out: &mut Vec<String>) {
        for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
            let path = format!("{prefix}{} ", sub.get_name());
            if sub.has_subcommands() {
                leaf_commands(sub, &path, out);
            } else {
                out.push(path.trim_end().to_string());
            }
        }
    }

    #[test]
    fn every_subcommand_is_in_the_readme() {
        let readme = include_str!("../../README.md");
        let mut commands = Vec::new();
        leaf_commands(&Cli::command(), "", &mut commands);
        assert!(commands.len() >= 8, "{commands:?}");
        for c in commands {
            assert!(
                readme.contains(&format!("agentstore {c}")),
                "README.md does not show `agentstore {c}`"
            );
        }
    }

    use proptest::prelude::*;

    proptest! {
        /// Any argument list parses or fails with a usage error; none panics.
        #[test]
        fn the_parser_never_panics(args in proptest::collection::vec(
            prop_oneof![
                proptest::sample::select(vec![
                    "memory", "add", "list", "stats", "context", "prune", "agents", "sql",
                    "check", "init", "--agent", "--importance", "--limit", "--order",
                    "--keep-fraction", "--min-importance", "--older-than", "--max-bytes",
                    "--dry-run", "--max-chars", "--timeout", "--json", "--db", "--help",
                    "-", "--", "NaN", "inf", "-0", "1.5", "0.5", "0", "-1", "7x", "90m",
                    "time", "importance", "18446744073709551616", "demo", "chat",
                    "stats", "export", "import", "--messages", "--seed", "--llm", "openai",
                    "simulated", "--base-url", "--model", "--output", "--simulated-latency",
                ]).prop_map(String::from),
                "\\PC{0,12}",
            ],
            0..8,
        )) {
            let argv = std::iter::once("agentstore".to_string()).chain(args);
            let _ = Cli::try_parse_from(argv);
        }
    }

    /// The `cli_args` fuzz target's corpus (arguments split at NUL bytes) parses or
    /// fails cleanly, as the target checks.
    #[test]
    fn the_cli_args_fuzz_corpus_parses_or_fails_cleanly() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/cli_args");
        let mut n = 0;
        for entry in std::fs::read_dir(dir).expect("the cli_args corpus") {
            let data = std::fs::read(entry.expect("entry").path()).expect("read");
            let args = data
                .split(|b| *b == 0)
                .map(|a| String::from_utf8_lossy(a).into_owned());
            let argv = std::iter::once("agentstore".to_string()).chain(args);
            if let Err(e) = Cli::try_parse_from(argv) {
                let _ = e.render().to_string();
            }
            n += 1;
        }
        assert!(n > 0);
    }

    /// Every command with subcommands (`memory`, `tools cache`, ...), as typed.
    fn group_commands(cmd: &clap::Command, prefix: &str, out: &mut Vec<String>) {
        for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
            if sub.has_subcommands() {
                let path = format!("{prefix}{}", sub.get_name());
                group_commands(sub, &format!("{path} "), out);
                out.push(path);
            }
        }
    }

    #[test]
    fn group_commands_have_examples_and_every_help_fits_100_columns() {
        let mut groups = Vec::new();
        group_commands(&Cli::command(), "", &mut groups);
        let mut leaves = Vec::new();
        leaf_commands(&Cli::command(), "", &mut leaves);
        assert!(groups.contains(&"memory".to_string()), "{groups:?}");
        for c in groups.iter().chain(&leaves) {
            let mut cmd = Cli::command();
            let mut sub = &mut cmd;
            for word in c.split(' ') {
                sub = sub.find_subcommand_mut(word).expect("subcommand");
            }
            let help = sub.render_long_help().to_string();
            if groups.contains(c) {
                assert!(help.contains("Example"), "`{c} --help` has no example");
            }
            for line in help.lines() {
                assert!(line.chars().count() <= 100, "`{c} --help`: {line}");
            }
        }
    }

    #[test]
    fn every_subcommand_has_an_example_in_its_help() {
        let mut commands = Vec::new();
        leaf_commands(&Cli::command(), "", &mut commands);
        for c in commands {
            let mut cmd = Cli::command();
            let mut sub = &mut cmd;
            for word in c.split(' ') {
                sub = sub.find_subcommand_mut(word).expect("subcommand");
            }
            let help = sub.render_long_help().to_string();
            assert!(help.contains("Example"), "`{c} --help` has no example");
        }
    }
}
