//! `agentstore responses`: an agent's response cache and response-time log.

use std::time::Duration;

use agentstore::agent::ResponseConfig;
use agentstore::{FuzzyOptions, NoMatch, ResponseOrder, ResponsePurge, ResponseTimeStats};
use clap::{Subcommand, ValueEnum};
use serde_json::{json, to_value};

use crate::cli::Context;
use crate::cli::cmd::memory::AgentArg;
use crate::cli::output::{self, Output, Reply};
use crate::cli::parse;

/// `responses` subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Response-time stats over the agent's log: count, average, min, max, p50, p90,
    /// p95 (nearest rank: the value at index floor(n*q) of the sorted times), how many
    /// were under the target and the achievement rate, and the cached entries. Hits
    /// and log rows reach the file in batches (at least once a second while the agent
    /// is busy), so a running agent's last second may not be counted yet.
    #[command(after_help = "Example:\n  agentstore --json responses stats --agent bot")]
    Stats(AgentArg),
    /// List cached responses, most recently used (or most hit) first.
    #[command(after_help = "Examples:
  agentstore responses list --agent bot --limit 20
  agentstore responses list --agent bot --order hits")]
    List(ListArgs),
    /// Show what the cache would answer to MESSAGE (an exact or a fuzzy match, with
    /// the similarity of the cached message), without generating anything. Exits 0
    /// whether or not there is a match.
    #[command(after_help = "Examples:
  agentstore responses lookup --agent bot 'what is the capital of France'
  agentstore --json responses lookup --agent bot --threshold 0.5 'capital of france?'")]
    Lookup(LookupArgs),
    /// Tune the agent's response time target as the original did (above 90% of
    /// responses under target: x0.9; below 50%: x1.2) and cap the cache (over 1,000
    /// entries, keep the 500 most recently used).
    #[command(after_help = "Example:\n  agentstore responses optimize --agent bot")]
    Optimize(AgentArg),
    /// Remove cached responses by one rule; --dry-run counts what would go.
    #[command(
        override_usage = "agentstore responses purge --agent <AGENT> <--all | --older-than AGE | --keep N> [--dry-run]",
        after_help = "Examples:
  agentstore responses purge --agent bot --older-than 30d --dry-run
  agentstore responses purge --agent bot --keep 500
  agentstore responses purge --agent bot --all"
    )]
    Purge(PurgeArgs),
}

/// Orders for `responses list`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Order {
    /// Most recently used (stored or hit) first.
    Recent,
    /// Most hits first.
    Hits,
}

/// `responses list`.
#[derive(Debug, clap::Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub agent: AgentArg,
    /// At most this many rows.
    #[arg(long, default_value = "50", value_parser = parse::positive, allow_negative_numbers = true)]
    pub limit: u64,
    /// Sort order.
    #[arg(long, value_enum, default_value = "recent")]
    pub order: Order,
}

/// `responses lookup`.
#[derive(Debug, clap::Args)]
pub struct LookupArgs {
    #[command(flatten)]
    pub agent: AgentArg,
    /// Fuzzy matches need a similarity strictly above this.
    #[arg(long, default_value = "0.7", value_parser = parse::unit_interval, allow_hyphen_values = true)]
    pub threshold: f64,
    /// Allow fuzzy matches that differ by a negation or a number.
    #[arg(long)]
    pub no_guard: bool,
    /// The message, as the agent would receive it.
    pub message: String,
}

/// `responses purge`: exactly one rule.
#[derive(Debug, clap::Args)]
#[group(id = "rule", required = true, multiple = false)]
pub struct PurgeArgs {
    #[command(flatten)]
    pub agent: AgentArg,
    /// Remove every cached response of the agent.
    #[arg(long, group = "rule")]
    pub all: bool,
    /// Remove those stored longer ago than this (e.g. 12h, 30d).
    #[arg(long, group = "rule", value_parser = parse::duration, allow_hyphen_values = true)]
    pub older_than: Option<Duration>,
    /// Keep the N most recently used, remove the rest.
    #[arg(long, group = "rule", value_parser = parse::count, allow_negative_numbers = true)]
    pub keep: Option<u64>,
    /// Count what would be removed, and remove nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// Runs a `responses` subcommand.
pub fn run(ctx: &Context, cmd: Command) -> anyhow::Result<Reply> {
    match cmd {
        Command::Stats(a) => {
            let store = ctx.open_existing()?;
            let agent = store.existing_agent(&a.agent)?;
            let stats = store.response_cache(&agent).time_stats()?;
            let fields = match &stats {
                ResponseTimeStats::NoData => {
                    vec![("no_data".to_string(), "true".to_string())]
                }
                ResponseTimeStats::Data(s) => vec![
                    ("total_responses".into(), s.total_responses.to_string()),
                    (
                        "avg_response_time".into(),
                        output::seconds(s.avg_response_time),
                    ),
                    (
                        "min_response_time".into(),
                        output::seconds(s.min_response_time),
                    ),
                    (
                        "max_response_time".into(),
                        output::seconds(s.max_response_time),
                    ),
                    (
                        "p50_response_time".into(),
                        output::seconds(s.p50_response_time),
                    ),
                    (
                        "p90_response_time".into(),
                        output::seconds(s.p90_response_time),
                    ),
                    (
                        "p95_response_time".into(),
                        output::seconds(s.p95_response_time),
                    ),
                    (
                        "responses_under_target".into(),
                        s.responses_under_target.to_string(),
                    ),
                    (
                        "target_achievement_rate".into(),
                        format!("{:.1}%", s.target_achievement_rate),
                    ),
                    (
                        "target_response_time".into(),
                        output::seconds(s.target_response_time),
                    ),
                    ("cache_entries".into(), s.cache_entries.to_string()),
                ],
            };
            Ok(Output::Fields {
                fields,
                json: to_value(&stats)?,
            }
            .into())
        }
        Command::List(a) => {
            let store = ctx.open_existing()?;
            let agent = store.existing_agent(&a.agent.agent)?;
            let order = match a.order {
                Order::Recent => ResponseOrder::Recent,
                Order::Hits => ResponseOrder::Hits,
            };
            let found = store.response_cache(&agent).list(order, a.limit)?;
            let rows = found
                .iter()
                .map(|r| {
                    vec![
                        r.id.to_string(),
                        r.hits.to_string(),
                        output::utc(r.last_used_at),
                        output::snippet(&r.message, 40),
                        output::snippet(&r.response, 40),
                    ]
                })
                .collect();
            Ok(output::rows(
                &["id", "hits", "last used (UTC)", "message", "response"],
                rows,
                to_value(&found)?,
            ))
        }
        Command::Lookup(a) => {
            let store = ctx.open_existing()?;
            let agent = store.existing_agent(&a.agent.agent)?;
            let options = FuzzyOptions::default()
                .with_threshold(a.threshold)
                .with_negation_guard(!a.no_guard);
            let lookup = store
                .response_cache(&agent)
                .lookup_explained(&a.message, options)?;
            let (text, json) = match &lookup.found {
                Some(m) => (
                    format!(
                        "{} match (similarity {:.3}) with #{}: {}\n{}",
                        m.kind.as_str(),
                        m.similarity,
                        m.id,
                        output::snippet(&m.message, 80),
                        m.response
                    ),
                    json!({
                        "match": m.kind, "similarity": m.similarity, "id": m.id,
                        "message": m.message, "response": m.response,
                    }),
                ),
                None => {
                    let why = match &lookup.no_match {
                        Some(NoMatch::Guarded {
                            id,
                            similarity,
                            message,
                        }) => format!(
                            " (the negation guard blocked #{id}, similarity {similarity:.3}: {}; \
                             the two differ by a negation or a number; --no-guard lifts it)",
                            output::snippet(message, 60)
                        ),
                        Some(NoMatch::TooManyWords { words, limit }) => format!(
                            " (the message has {words} distinct words; the fuzzy lookup \
                             compares messages of at most {limit}, so only an exact match counts)"
                        ),
                        None => String::new(),
                    };
                    (
                        format!("no match{why}: the agent would generate a response"),
                        json!({ "match": null, "no_match": lookup.no_match }),
                    )
                }
            };
            Ok(Output::Text { text, json }.into())
        }
        Command::Optimize(a) => {
            let store = ctx.open_existing()?;
            let agent = store.existing_agent(&a.agent)?;
            let defaults = ResponseConfig::default();
            let o = store
                .response_cache(&agent)
                .optimize(defaults.max_cache_entries, defaults.keep_on_cap)?;
            let rate = o
                .achievement_rate
                .map_or("no data".to_string(), |r| format!("{r:.1}% under target"));
            Ok(Output::Text {
                text: format!(
                    "target {} -> {} ({rate}); removed {} cached responses, {} left",
                    output::seconds(o.old_target),
                    output::seconds(o.new_target),
                    o.removed_entries,
                    o.cache_entries
                ),
                json: to_value(&o)?,
            }
            .into())
        }
        Command::Purge(a) => {
            let rule = match (a.all, a.older_than, a.keep) {
                (true, ..) => ResponsePurge::All,
                (_, Some(d), _) => ResponsePurge::OlderThan(d),
                (.., Some(n)) => ResponsePurge::Keep(n),
                _ => unreachable!("clap requires exactly one rule"),
            };
            let store = ctx.open_existing()?;
            let agent = store.existing_agent(&a.agent.agent)?;
            let report = store.response_cache(&agent).purge(rule, a.dry_run)?;
            let verb = if a.dry_run { "would remove" } else { "removed" };
            Ok(Output::Text {
                text: format!("{verb} {} cached responses", report.removed),
                json: to_value(report)?,
            }
            .into())
        }
    }
}
