//! `agentstore tools`: tool call stats and the tool-result cache.

use agentstore::{CacheFilter, Error, MAX_CONTENT_BYTES, Store, ToolStats, canonical_json};
use clap::Subcommand;
use serde_json::{Value, json, to_value};

use crate::cli::Context;
use crate::cli::output::{self, Output, Reply};
use crate::cli::parse;

/// `tools` subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show tool call stats per agent and tool: calls, cache hits, hit rate, errors,
    /// average and total time, and the size of the agent's cache scope. Counters reach
    /// the file in batches (at least once a second while an agent is busy, and when it
    /// shuts down), so a running agent's last second may not be counted yet.
    #[command(
        after_help = "Examples:\n  agentstore tools stats\n  agentstore --json tools stats --agent bot"
    )]
    Stats(StatsArgs),
    /// List or purge cached tool results.
    #[command(
        subcommand,
        after_help = "Examples:
  agentstore tools cache list --agent bot
  agentstore tools cache lookup --agent bot --tool calculator --params '{\"expression\": \"2 ^ 10\"}'
  agentstore tools cache purge --expired"
    )]
    Cache(CacheCommand),
}

/// `tools cache` subcommands.
#[derive(Debug, Subcommand)]
pub enum CacheCommand {
    /// List cached results, newest first: key prefix, tool, params, age and time to
    /// expiry (expired rows not yet removed show as expired).
    #[command(after_help = "Examples:
  agentstore tools cache list --agent bot --limit 20
  agentstore --json tools cache list --tool lookup")]
    List(ListArgs),
    /// Remove cached results: the expired ones (the default) or all, optionally only
    /// of one tool or one agent's scope. --dry-run counts what would go.
    #[command(after_help = "Examples:
  agentstore tools cache purge --expired
  agentstore tools cache purge --all --tool web_lookup --dry-run
  agentstore tools cache purge --all --agent bot")]
    Purge(PurgeArgs),
    /// Look up the cached result of one call: the tool and its params as JSON, in the
    /// agent's cache scope. Params are canonicalised as the agent does (object keys
    /// sorted), so `{"b":1,"a":2}` finds what `{"a":2,"b":1}` stored.
    #[command(after_help = r#"Examples:
  agentstore tools cache lookup --agent bot --tool calculator --params '{"expression":"2+2"}'
  echo '{"q":"rust"}' | agentstore --json tools cache lookup --agent bot --tool search --params -"#)]
    Lookup(LookupArgs),
}

/// `tools cache lookup`.
#[derive(Debug, clap::Args)]
pub struct LookupArgs {
    /// The agent whose cache scope to look in.
    #[arg(long)]
    pub agent: String,
    /// The tool.
    #[arg(long)]
    pub tool: String,
    /// The params as JSON text, or `-` to read them from standard input (at most 1 MiB).
    #[arg(long, allow_hyphen_values = true)]
    pub params: String,
}

/// `tools stats`.
#[derive(Debug, clap::Args)]
pub struct StatsArgs {
    /// Only this agent (default: every agent with tool calls or a cache).
    #[arg(long)]
    pub agent: Option<String>,
}

/// Which rows: an agent's scope and a tool.
#[derive(Debug, clap::Args)]
pub struct Filter {
    /// Only the cache scope of this agent (its name, unless it shares another scope).
    #[arg(long)]
    pub agent: Option<String>,
    /// Only results of this tool.
    #[arg(long)]
    pub tool: Option<String>,
}

/// `tools cache list`.
#[derive(Debug, clap::Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub filter: Filter,
    /// At most this many rows.
    #[arg(long, default_value = "50", value_parser = parse::positive, allow_negative_numbers = true)]
    pub limit: u64,
}

/// `tools cache purge`.
#[derive(Debug, clap::Args)]
pub struct PurgeArgs {
    #[command(flatten)]
    pub filter: Filter,
    /// Remove only results whose expiry has passed (the default).
    #[arg(long, conflicts_with = "all")]
    pub expired: bool,
    /// Remove results whether expired or not.
    #[arg(long)]
    pub all: bool,
    /// Count what would be removed, and remove nothing.
    #[arg(long)]
    pub dry_run: bool,
}

impl Filter {
    /// The library filter: `--agent` becomes that agent's scope.
    fn resolve(&self, store: &Store, expired_only: bool) -> anyhow::Result<CacheFilter> {
        let scope = match &self.agent {
            Some(name) => Some(store.existing_agent(name)?.tool_scope),
            None => None,
        };
        if let Some(tool) = &self.tool {
            known_tool(store, tool)?;
        }
        Ok(CacheFilter {
            scope,
            tool: self.tool.clone(),
            expired_only,
        })
    }
}

/// Runs a `tools` subcommand.
pub fn run(ctx: &Context, cmd: Command) -> anyhow::Result<Reply> {
    match cmd {
        Command::Stats(a) => stats(ctx, a),
        Command::Cache(CacheCommand::List(a)) => list(ctx, a),
        Command::Cache(CacheCommand::Purge(a)) => purge(ctx, a),
        Command::Cache(CacheCommand::Lookup(a)) => lookup(ctx, a),
    }
}

/// Reads `--params`: the argument, or stdin for `-`; refuses more than the cache's
/// limit before parsing, and anything that is not exactly one JSON value.
fn read_params(arg: &str) -> anyhow::Result<Value> {
    let text = if arg == "-" {
        parse::stdin_text("--params", MAX_CONTENT_BYTES)?
    } else {
        arg.to_string()
    };
    if text.len() > MAX_CONTENT_BYTES {
        return Err(Error::InvalidArgument(format!(
            "--params is over {MAX_CONTENT_BYTES} bytes, the most a cached call's params can be"
        ))
        .into());
    }
    serde_json::from_str(&text)
        .map_err(|e| Error::InvalidArgument(format!("--params is not one JSON value: {e}")).into())
}

fn lookup(ctx: &Context, a: LookupArgs) -> anyhow::Result<Reply> {
    let params = read_params(&a.params)?;
    canonical_json(&params)?;
    let store = ctx.open_existing()?;
    let cache = store.tool_cache(&store.existing_agent(&a.agent)?);
    let scope = cache.scope().to_string();
    known_tool(&store, &a.tool)?;
    let key = cache.key(&a.tool, &params)?;
    let found = cache.get_key(&key)?;
    let text = match &found {
        Some(result) => result.to_string(),
        None => "not cached (or expired): the agent would run the tool".to_string(),
    };
    let json = json!({
        "key": key.to_hex(), "scope": scope, "tool": a.tool,
        "found": found.is_some(), "result": found,
    });
    Ok(Output::Text { text, json }.into())
}

/// Fails unless `tool` appears in the tool stats or the cache: a misspelt name gets an
/// error, not an empty answer.
fn known_tool(store: &Store, tool: &str) -> anyhow::Result<()> {
    if store.tool_results().knows_tool(tool)? {
        Ok(())
    } else {
        anyhow::bail!(
            "no tool named '{tool}' in the tool stats or the cache (see `agentstore tools stats`)"
        )
    }
}

fn stats(ctx: &Context, a: StatsArgs) -> anyhow::Result<Reply> {
    let store = ctx.open_existing()?;
    let all: Vec<ToolStats> = match &a.agent {
        Some(name) => vec![store.tool_cache(&store.existing_agent(name)?).stats()?],
        None => store
            .agents()?
            .iter()
            .map(|agent| store.tool_cache(agent).stats())
            .filter(|s| {
                s.as_ref()
                    .map_or(true, |s| s.total_tool_calls > 0 || s.cache_size > 0)
            })
            .collect::<agentstore::Result<_>>()?,
    };
    let mut rows = Vec::new();
    for s in &all {
        for (tool, t) in &s.tool_stats {
            rows.push(vec![
                s.agent.clone(),
                tool.clone(),
                t.total_calls.to_string(),
                t.cache_hits.to_string(),
                percent(t.cache_hits, t.total_calls),
                t.errors.to_string(),
                output::seconds(t.avg_time),
                output::seconds(t.total_time),
                String::new(),
            ]);
        }
        rows.push(vec![
            s.agent.clone(),
            "(all tools)".to_string(),
            s.total_tool_calls.to_string(),
            s.total_cache_hits.to_string(),
            format!("{:.1}%", s.cache_hit_rate_pct),
            s.tool_stats
                .values()
                .map(|t| t.errors)
                .sum::<u64>()
                .to_string(),
            String::new(),
            output::seconds(s.tool_stats.values().map(|t| t.total_time).sum()),
            format!("{} ({})", s.cache_size, s.scope),
        ]);
    }
    let json = match (&a.agent, all.as_slice()) {
        (Some(_), [one]) => to_value(one)?,
        _ => to_value(&all)?,
    };
    Ok(output::rows(
        &[
            "agent",
            "tool",
            "calls",
            "hits",
            "hit rate",
            "errors",
            "avg time",
            "total time",
            "cached (scope)",
        ],
        rows,
        json,
    ))
}

fn percent(part: u64, whole: u64) -> String {
    if whole == 0 {
        "-".to_string()
    } else {
        format!("{:.1}%", part as f64 * 100.0 / whole as f64)
    }
}

fn list(ctx: &Context, a: ListArgs) -> anyhow::Result<Reply> {
    let store = ctx.open_existing()?;
    let filter = a.filter.resolve(&store, false)?;
    let found = store.tool_results().list(&filter, a.limit)?;
    let now = store.now_micros();
    let rows = found
        .iter()
        .map(|r| {
            let left = r.expires_at - now;
            vec![
                r.key[..12].to_string(),
                r.scope.clone(),
                r.tool.clone(),
                output::snippet(&r.params.to_string(), 50),
                output::duration_micros(now - r.created_at),
                if left > 0 {
                    output::duration_micros(left)
                } else {
                    "expired".to_string()
                },
                output::utc(r.expires_at),
            ]
        })
        .collect();
    Ok(output::rows(
        &[
            "key",
            "scope",
            "tool",
            "params",
            "age",
            "expires in",
            "expires (UTC)",
        ],
        rows,
        to_value(&found)?,
    ))
}

fn purge(ctx: &Context, a: PurgeArgs) -> anyhow::Result<Reply> {
    let store = ctx.open_existing()?;
    let filter = a.filter.resolve(&store, !a.all)?;
    let report = store.tool_results().purge(&filter, a.dry_run)?;
    let verb = if a.dry_run { "would remove" } else { "removed" };
    let which = if a.all { "" } else { "expired " };
    Ok(Output::Text {
        text: format!("{verb} {} {which}cached results", report.removed),
        json: to_value(report)?,
    }
    .into())
}
