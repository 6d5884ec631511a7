//! `agentstore memory`: an agent's memory entries.

use std::io::{self, Write};
use std::time::Duration;

use agentstore::{Error, ForgetTarget, ListOrder, Prune, Role, SearchOptions};
use clap::{Subcommand, ValueEnum};
use serde_json::{json, to_value};

use crate::cli::Context;
use crate::cli::output::{self, JsonArray, Output, Reply};
use crate::cli::parse;
use crate::cli::table::TableWriter;

/// `memory` subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Add an entry (with the agent's retention: cleanup, cap, byte budget) and print
    /// its id. The agent is created on first use.
    #[command(
        after_help = "Example:\n  agentstore memory add --agent bot --importance 0.9 'the user prefers metric units'"
    )]
    Add(AddArgs),
    /// List an agent's entries, newest or most important first.
    #[command(
        after_help = "Examples:\n  agentstore memory list --agent bot --limit 20\n  agentstore --json memory list --agent bot --order importance"
    )]
    List(ListArgs),
    /// Show an agent's memory stats: entries, size, average importance, utilisation of
    /// the byte budget, age of the oldest entry and the span of time covered.
    #[command(after_help = "Example:\n  agentstore memory stats --agent bot")]
    Stats(AgentArg),
    /// Print the compressed context the agent would put in a prompt: entries ranked by
    /// 0.7 importance + 0.3 recency (the agent's weights), plus relevance to --query
    /// when given, packed greedily into the character budget, shown in chronological
    /// order, with a note of how many were left out.
    #[command(
        after_help = "Examples:\n  agentstore memory context --agent bot --max-chars 1000\n  agentstore memory context --agent bot --query 'what units does the user like?'"
    )]
    Context(ContextArgs),
    /// Full-text search of an agent's entries, best first (BM25): plain words match
    /// any of them (entries with more of them, and rarer ones, rank higher), `retr*`
    /// matches a prefix, `"rate limit"` a phrase; case and accents are ignored. Each
    /// hit shows a snippet with the matches between [ and ].
    #[command(
        after_help = "Examples:\n  agentstore memory search --agent bot 'metric units'\n  agentstore --json memory search --agent bot --role user --limit 5 'retr*'"
    )]
    Search(SearchArgs),
    /// Print one entry by id.
    #[command(after_help = "Example:\n  agentstore memory get --agent bot 42")]
    Get(GetArgs),
    /// Change one entry's importance (its id, text and creation time stay).
    #[command(after_help = "Example:\n  agentstore memory rate --agent bot 42 --importance 0.9")]
    Rate(RateArgs),
    /// Remove entries for good, by id or every entry matching all words of a query;
    /// --dry-run lists exactly what would go. The text is scrubbed from the file and
    /// its WAL (see `agentstore forget` for caches as well).
    #[command(
        override_usage = "agentstore memory forget --agent <AGENT> (<ID>... | --matching <QUERY>) [--dry-run]",
        after_help = "Examples:\n  agentstore memory forget --agent bot 41 42\n  agentstore memory forget --agent bot --matching 'home address' --dry-run"
    )]
    Forget(ForgetArgs),
    /// Rebuild the full-text search index of memory from the entries (what `check
    /// --repair` does).
    #[command(after_help = "Example:\n  agentstore memory reindex")]
    Reindex,
    /// Remove entries by one rule; --dry-run reports what would go without deleting.
    #[command(
        override_usage = "agentstore memory prune --agent <AGENT> <RULE> [--dry-run]\n       \
            (RULE: --keep-fraction F | --min-importance I | --older-than AGE | --max-bytes N)",
        after_help = "Examples:
  agentstore memory prune --agent bot --older-than 30d --dry-run
  agentstore memory prune --agent bot --min-importance 0.3
  agentstore memory prune --agent bot --keep-fraction 0.5
  agentstore memory prune --agent bot --max-bytes 1048576"
    )]
    Prune(PruneArgs),
}

/// The agent to act on.
#[derive(Debug, clap::Args)]
pub struct AgentArg {
    /// The agent's name.
    #[arg(long)]
    pub agent: String,
}

/// `memory add`.
#[derive(Debug, clap::Args)]
pub struct AddArgs {
    #[command(flatten)]
    pub agent: AgentArg,
    /// Importance, a number between 0 and 1.
    #[arg(long, default_value = "0.5", value_parser = parse::unit_interval, allow_hyphen_values = true)]
    pub importance: f64,
    /// Who said it.
    #[arg(long, value_enum, default_value = "note")]
    pub role: RoleArg,
    /// The entry's text; `-` reads it from standard input (one trailing newline is
    /// dropped).
    pub text: String,
}

/// Who said an entry, as flags spell it.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum RoleArg {
    /// The user's message.
    User,
    /// The agent's reply.
    Assistant,
    /// A system instruction.
    System,
    /// A tool's output.
    Tool,
    /// A fact or note.
    Note,
}

impl From<RoleArg> for Role {
    fn from(r: RoleArg) -> Role {
        match r {
            RoleArg::User => Role::User,
            RoleArg::Assistant => Role::Assistant,
            RoleArg::System => Role::System,
            RoleArg::Tool => Role::Tool,
            RoleArg::Note => Role::Note,
        }
    }
}

/// `memory search`.
#[derive(Debug, clap::Args)]
pub struct SearchArgs {
    #[command(flatten)]
    pub agent: AgentArg,
    /// At most this many hits.
    #[arg(long, default_value = "10", value_parser = parse::positive, allow_negative_numbers = true)]
    pub limit: u64,
    /// Only entries of this role.
    #[arg(long, value_enum)]
    pub role: Option<RoleArg>,
    /// Only entries added within this long (e.g. 90m, 12h, 7d).
    #[arg(long, value_parser = parse::duration, allow_hyphen_values = true)]
    pub since: Option<Duration>,
    /// What to look for.
    pub query: String,
}

/// `memory get`.
#[derive(Debug, clap::Args)]
pub struct GetArgs {
    #[command(flatten)]
    pub agent: AgentArg,
    /// The entry's id.
    #[arg(value_parser = parse::positive_id)]
    pub id: i64,
}

/// `memory rate`.
#[derive(Debug, clap::Args)]
pub struct RateArgs {
    #[command(flatten)]
    pub agent: AgentArg,
    /// The entry's id.
    #[arg(value_parser = parse::positive_id)]
    pub id: i64,
    /// The new importance, a number between 0 and 1.
    #[arg(long, value_parser = parse::unit_interval, allow_hyphen_values = true)]
    pub importance: f64,
}

/// `memory forget`: ids, or --matching.
#[derive(Debug, clap::Args)]
#[group(id = "what", required = true, multiple = false)]
pub struct ForgetArgs {
    #[command(flatten)]
    pub agent: AgentArg,
    /// The ids of the entries to remove.
    #[arg(group = "what", value_parser = parse::positive_id)]
    pub ids: Vec<i64>,
    /// Remove every entry that has all of these words (prefixes `retr*` and phrases
    /// `"rate limit"` too), as search reads them.
    #[arg(long, group = "what")]
    pub matching: Option<String>,
    /// List what would be removed, and remove nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// Orders for `memory list`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Order {
    /// Newest first.
    Time,
    /// Most important first.
    Importance,
}

/// `memory list`.
#[derive(Debug, clap::Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub agent: AgentArg,
    /// At most this many entries.
    #[arg(long, default_value = "50", value_parser = parse::positive, allow_negative_numbers = true)]
    pub limit: u64,
    /// Sort order.
    #[arg(long, value_enum, default_value = "time")]
    pub order: Order,
}

/// `memory context`.
#[derive(Debug, clap::Args)]
pub struct ContextArgs {
    #[command(flatten)]
    pub agent: AgentArg,
    /// Character budget for the entries.
    #[arg(long, default_value = "2000", value_parser = parse::positive, allow_negative_numbers = true)]
    pub max_chars: u64,
    /// Rank for relevance to this text too (as the agent does with each message).
    #[arg(long)]
    pub query: Option<String>,
}

/// `memory prune`: exactly one rule.
#[derive(Debug, clap::Args)]
#[group(id = "rule", required = true, multiple = false)]
pub struct PruneArgs {
    #[command(flatten)]
    pub agent: AgentArg,
    /// Keep this share of entries (the most important, newest among equals).
    #[arg(long, group = "rule", value_parser = parse::unit_interval, allow_hyphen_values = true)]
    pub keep_fraction: Option<f64>,
    /// Remove entries whose importance is below this.
    #[arg(long, group = "rule", value_parser = parse::unit_interval, allow_hyphen_values = true)]
    pub min_importance: Option<f64>,
    /// Remove entries older than this (e.g. 90m, 12h, 7d).
    #[arg(long, group = "rule", value_parser = parse::duration, allow_hyphen_values = true)]
    pub older_than: Option<Duration>,
    /// Remove the least important entries until the content is at most this many bytes.
    #[arg(long, group = "rule", value_parser = parse::count, allow_negative_numbers = true)]
    pub max_bytes: Option<u64>,
    /// Report what would be removed, and remove nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// Runs a `memory` subcommand.
pub fn run(ctx: &Context, cmd: Command) -> anyhow::Result<Reply> {
    match cmd {
        Command::Add(a) => {
            let text = if a.text == "-" {
                // Room for the trailing newline that `echo` adds.
                let mut text =
                    parse::stdin_text("the entry's text", agentstore::MAX_CONTENT_BYTES + 2)?;
                if text.ends_with('\n') {
                    text.pop();
                    if text.ends_with('\r') {
                        text.pop();
                    }
                }
                text
            } else {
                a.text
            };
            let store = ctx.open_for_write()?;
            let agent = store.agent(&a.agent.agent)?;
            let id = store
                .memory(&agent)
                .add_as(a.role.into(), &text, a.importance)?;
            Ok(Output::Text {
                text: id.to_string(),
                json: json!({ "id": id, "agent": agent.name }),
            }
            .into())
        }
        Command::List(a) => {
            let store = ctx.open_existing()?;
            let agent = store.existing_agent(&a.agent.agent)?;
            let order = match a.order {
                Order::Time => ListOrder::Time,
                Order::Importance => ListOrder::Importance,
            };
            // Streamed: a large --limit never holds more than one entry.
            let stdout = io::stdout();
            let mut out = io::BufWriter::new(stdout.lock());
            let write_error = |source| agentstore::Error::Io {
                context: "write the list".into(),
                source,
            };
            if ctx.json {
                let mut array = JsonArray::new(&mut out)?;
                store
                    .memory(&agent)
                    .list_each(order, a.limit, |e| array.item(&e).map_err(write_error))?;
                array.finish()?;
            } else {
                let header: Vec<String> = [
                    "id",
                    "created (UTC)",
                    "role",
                    "importance",
                    "size",
                    "content",
                ]
                .map(String::from)
                .to_vec();
                let mut table = TableWriter::new(&mut out, Some(&header), ctx.width);
                store.memory(&agent).list_each(order, a.limit, |e| {
                    table
                        .row(&[
                            e.id.to_string(),
                            output::utc(e.created_at),
                            e.role.to_string(),
                            format!("{:.3}", e.importance),
                            output::bytes(e.size_bytes),
                            output::snippet(&e.content, 60),
                        ])
                        .map_err(write_error)
                })?;
                table.finish()?;
            }
            out.flush()?;
            Ok(Output::Done.into())
        }
        Command::Stats(a) => {
            let store = ctx.open_existing()?;
            let agent = store.existing_agent(&a.agent)?;
            let s = store.memory(&agent).stats()?;
            let mut fields = vec![
                ("total_entries".to_string(), s.total_entries.to_string()),
                (
                    "total_memory_mb".to_string(),
                    format!(
                        "{:.4} ({})",
                        s.total_memory_mb,
                        output::bytes(agent.memory_bytes)
                    ),
                ),
            ];
            let hours = |h: f64| output::duration_micros((h * 3_600_000_000.0) as i64);
            if let (Some(avg), Some(util), Some(age), Some(span)) = (
                s.avg_importance_score,
                s.memory_utilization_pct,
                s.oldest_entry_age_hours,
                s.memory_span_hours,
            ) {
                fields.push(("avg_importance_score".into(), format!("{avg:.3}")));
                fields.push(("memory_utilization_pct".into(), format!("{util:.2}%")));
                fields.push((
                    "oldest_entry_age_hours".into(),
                    format!("{age:.3} ({})", hours(age)),
                ));
                fields.push((
                    "memory_span_hours".into(),
                    format!("{span:.3} ({})", hours(span)),
                ));
            }
            Ok(Output::Fields {
                fields,
                json: to_value(&s)?,
            }
            .into())
        }
        Command::Context(a) => {
            let store = ctx.open_existing()?;
            let agent = store.existing_agent(&a.agent.agent)?;
            let memory = store.memory(&agent);
            let c = match &a.query {
                Some(q) => memory.context_for(q, a.max_chars)?,
                None => memory.context(a.max_chars)?,
            };
            Ok(Output::Text {
                text: c.text.clone(),
                json: to_value(&c)?,
            }
            .into())
        }
        Command::Search(a) => {
            let store = ctx.open_existing()?;
            let agent = store.existing_agent(&a.agent.agent)?;
            let mut options = SearchOptions::default().with_limit(a.limit);
            if let Some(r) = a.role {
                options = options.with_role(r.into());
            }
            if let Some(d) = a.since {
                options = options.with_since(
                    store
                        .now_micros()
                        .saturating_sub(i64::try_from(d.as_micros()).unwrap_or(i64::MAX)),
                );
            }
            let hits = store.memory(&agent).search(&a.query, &options)?;
            let rows: Vec<Vec<String>> = hits
                .iter()
                .map(|h| {
                    vec![
                        h.id.to_string(),
                        score_text(h.score),
                        h.role.to_string(),
                        format!("{:.3}", h.importance),
                        output::utc(h.created_at),
                        output::snippet(&h.snippet, 80),
                    ]
                })
                .collect();
            let text = if rows.is_empty() {
                "no entry matches".to_string()
            } else {
                let header: Vec<String> = [
                    "id",
                    "score",
                    "role",
                    "importance",
                    "created (UTC)",
                    "snippet",
                ]
                .map(String::from)
                .to_vec();
                crate::cli::table::render(Some(&header), &rows, ctx.width)
            };
            Ok(Output::Text {
                text,
                json: to_value(&hits)?,
            }
            .into())
        }
        Command::Get(a) => {
            let store = ctx.open_existing()?;
            let agent = store.existing_agent(&a.agent.agent)?;
            let e = store
                .memory(&agent)
                .get(a.id)?
                .ok_or_else(|| no_entry(&agent.name, a.id))?;
            Ok(Output::Fields {
                fields: entry_fields(&e),
                json: to_value(&e)?,
            }
            .into())
        }
        Command::Rate(a) => {
            let store = ctx.open_for_write()?;
            let agent = store.existing_agent(&a.agent.agent)?;
            let e = store
                .memory(&agent)
                .rate(a.id, a.importance)?
                .ok_or_else(|| no_entry(&agent.name, a.id))?;
            Ok(Output::Fields {
                fields: entry_fields(&e),
                json: to_value(&e)?,
            }
            .into())
        }
        Command::Forget(a) => {
            let store = ctx.open_for_write()?;
            let agent = store.existing_agent(&a.agent.agent)?;
            let target = match a.matching {
                Some(q) => ForgetTarget::Matching(q),
                None => ForgetTarget::Ids(a.ids),
            };
            let report = store.memory(&agent).forget(&target, a.dry_run)?;
            Ok(Output::Text {
                text: forget_text(&report),
                json: to_value(&report)?,
            }
            .into())
        }
        Command::Reindex => {
            let store = ctx.open_for_write()?;
            let n = store.reindex_memory()?;
            Ok(Output::Text {
                text: format!("rebuilt the memory search index: {n} entries"),
                json: json!({ "indexed_entries": n }),
            }
            .into())
        }
        Command::Prune(a) => {
            let rule = match (a.keep_fraction, a.min_importance, a.older_than, a.max_bytes) {
                (Some(f), ..) => Prune::KeepFraction(f),
                (_, Some(x), ..) => Prune::MinImportance(x),
                (_, _, Some(d), _) => Prune::OlderThan(d),
                (.., Some(b)) => Prune::MaxBytes(b),
                _ => unreachable!("clap requires exactly one rule"),
            };
            let store = ctx.open_existing()?;
            let agent = store.existing_agent(&a.agent.agent)?;
            let report = store.memory(&agent).prune(rule, a.dry_run)?;
            let verb = if a.dry_run { "would remove" } else { "removed" };
            let mut text = format!(
                "{verb} {} entries ({})",
                report.removed_entries,
                output::bytes(report.removed_bytes)
            );
            if report.batches > 1 {
                text += &format!(" in {} batches", report.batches);
            }
            if report.resumed {
                text += ", finishing the same prune that was interrupted earlier";
            }
            Ok(Output::Text {
                text,
                json: to_value(report)?,
            }
            .into())
        }
    }
}

/// The error for an id the agent does not have (exit 2, as any bad argument).
fn no_entry(agent: &str, id: i64) -> Error {
    Error::InvalidArgument(format!("agent '{agent}' has no memory entry {id}"))
}

/// One entry as `Output::Fields`.
fn entry_fields(e: &agentstore::MemoryEntry) -> Vec<(String, String)> {
    vec![
        ("id".into(), e.id.to_string()),
        ("role".into(), e.role.to_string()),
        ("importance".into(), format!("{:.3}", e.importance)),
        ("created (UTC)".into(), output::utc(e.created_at)),
        ("size".into(), output::bytes(e.size_bytes)),
        ("content".into(), e.content.clone()),
    ]
}

/// The line a forget adds when another process kept it from emptying the WAL.
pub const WAL_NOTE: &str = "\nnote: another process kept the WAL from being truncated; the text stays in it until the next checkpoint";

/// What a forget did (or would do), one line per entry after the summary.
pub fn forget_text(report: &agentstore::ForgetReport) -> String {
    let verb = if report.dry_run {
        "would forget"
    } else {
        "forgot"
    };
    let mut text = format!("{verb} {} entries", report.entries.len());
    for e in &report.entries {
        text += &format!(
            "\n  {} [{}] {}",
            e.id,
            e.role,
            output::snippet(&e.content, 70)
        );
    }
    if !report.dry_run && !report.entries.is_empty() && !report.scrubbed {
        text += WAL_NOTE;
    }
    text
}

/// A search score, readable at any size (BM25 of a word in nearly every entry is tiny).
fn score_text(score: f64) -> String {
    if score == 0.0 || score.abs() >= 0.001 {
        format!("{score:.3}")
    } else {
        format!("{score:.1e}")
    }
}
