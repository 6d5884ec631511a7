//! `agentstore demo`: the original tutorial's scenario end to end on a real file, so
//! that a second run shows what survived the first: memory filled past its cleanup
//! interval and byte budget, a parallel batch of tool calls with duplicates, a stream
//! of messages with exact and near repeats answered under a target time, and the
//! auto-tuning of that target.

use std::io::{self, IsTerminal, Write};
use std::time::Instant;

use crate::rng::SplitMix64;
use agentstore::agent::{Agent, AgentConfig, AgentStats, Optimization, ToolRequest};
use agentstore::{MemorySettings, Outcome, Store};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use serde_json::{Value, json};

use crate::cli::Context;
use crate::cli::cmd::demo_tools::{Calculator, Clock, SlowLookup, WordCounter};
use crate::cli::cmd::llm::{LlmArgs, runtime};
use crate::cli::output::stats_text;
use crate::cli::output::{self, Output, Reply};
use crate::cli::{parse, signals};

/// `demo`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Run it twice: the second run starts from what the first one stored.

Examples:
  agentstore demo
  agentstore --db /tmp/demo.db demo --messages 100 --seed 7
  agentstore --json demo > demo-stats.json"
)]
pub struct Args {
    /// The agent the demo uses (its memory settings are set to the demo's small
    /// budget: 256 KiB, 400 entries, cleanup every 50 messages).
    #[arg(long, default_value = "demo")]
    pub agent: String,
    /// How many messages the response phase sends (at most 100000; the table shows
    /// the first 40).
    #[arg(long, default_value = "40", value_parser = demo_messages, allow_negative_numbers = true)]
    pub messages: u64,
    /// Seed of the message stream, the memory contents and the simulated client.
    #[arg(long, default_value = "42")]
    pub seed: u64,
    #[command(flatten)]
    pub llm: LlmArgs,
}

/// The most messages `--messages` takes: the phase keeps a few counters and the
/// first [`SHOWN_ROWS`] rows, whatever the count, but each message takes real time.
const MAX_MESSAGES: u64 = 100_000;

/// The reply rows the demo's table shows.
const SHOWN_ROWS: usize = 40;

/// Earlier messages kept for repeats: the stream draws its repeats from these.
const REMEMBERED: usize = 256;

fn demo_messages(s: &str) -> Result<u64, String> {
    match parse::positive(s)? {
        n if n > MAX_MESSAGES => Err(format!("too many; the demo sends at most {MAX_MESSAGES}")),
        n => Ok(n),
    }
}

/// The demo agent's memory settings: small, so that a run passes the cleanup interval
/// and the byte budget in a second.
fn demo_memory() -> MemorySettings {
    MemorySettings::default()
        .with_max_memory_mb(0.25)
        .with_max_entries(400)
        .with_cleanup_interval(50)
}

/// Memory entries the memory phase adds.
const MEMORY_ADDS: usize = 600;

/// What the file held when the demo started.
#[derive(Debug, Default, Serialize)]
struct Found {
    memory_entries: u64,
    cached_tool_results: u64,
    cached_responses: u64,
    logged_responses: u64,
}

#[derive(Debug, Serialize)]
struct MemoryPhase {
    added: usize,
    entries_after: u64,
    memory_mb_after: f64,
    removed_by_cleanup: u64,
}

#[derive(Debug, Serialize)]
struct ToolPhase {
    requests: usize,
    succeeded: usize,
    cache_hits: u64,
    cache_hit_rate_pct: f64,
    seconds: f64,
}

#[derive(Debug, Serialize)]
struct ResponsePhase {
    messages: u64,
    exact: u64,
    fuzzy: u64,
    generated: u64,
    fallback: u64,
    errors: u64,
    cache_hit_rate_pct: f64,
    seconds: f64,
}

/// The `--json` document.
#[derive(Debug, Serialize)]
struct DemoReport {
    agent: String,
    database: String,
    llm: String,
    previous_run: Option<Found>,
    memory_phase: MemoryPhase,
    tool_phase: ToolPhase,
    response_phase: ResponsePhase,
    optimization: Optimization,
    stats: AgentStats,
}

/// Prints a phase's text unless `--json`.
struct Printer {
    quiet: bool,
}

impl Printer {
    fn say(&self, text: impl AsRef<str>) -> io::Result<()> {
        if self.quiet {
            return Ok(());
        }
        let stdout = io::stdout();
        let mut out = stdout.lock();
        writeln!(out, "{}", text.as_ref())?;
        out.flush()
    }
}

/// A bar on stderr for a phase of `len` steps, only on a terminal.
fn bar(len: u64, what: &str) -> ProgressBar {
    if !io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    ProgressBar::new(len)
        .with_style(
            ProgressStyle::with_template("{msg:>12} [{bar:30}] {pos}/{len}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        )
        .with_message(what.to_string())
}

/// Runs `demo`.
pub fn run(ctx: &Context, args: Args) -> anyhow::Result<Reply> {
    let p = Printer { quiet: ctx.json };
    let store = ctx.open_for_write()?;
    let found = previous_state(&store, &args.agent)?;
    let llm = args.llm.client(args.seed)?;
    let config = AgentConfig::with_llm(llm)
        .with_memory(demo_memory())
        .tool(Calculator)
        .tool(WordCounter)
        .tool(SlowLookup)
        .tool(Clock);
    let rt = runtime()?;
    let agent = rt.block_on(Agent::open(&store, &args.agent, config))?;
    signals::flush_on_signal(&rt, agent.clone())?;

    p.say(format!(
        "agentstore demo: agent {:?} in {} with the {} client",
        agent.name(),
        ctx.db.display(),
        agent.llm().describe()
    ))?;
    match &found {
        Some(f) => p.say(format!(
            "Found from a previous run: {} memory entries, {} cached tool results, {} cached responses, {} logged responses.",
            f.memory_entries, f.cached_tool_results, f.cached_responses, f.logged_responses
        ))?,
        None => p.say("No previous run found: starting with an empty agent.")?,
    }

    let memory_phase = rt.block_on(memory_phase(&agent, args.seed))?;
    p.say(format!(
        "\n1. Memory: added {} entries (cleanup every {} messages, budget {}); {} removed by cleanups, {} kept ({:.3} MB).",
        memory_phase.added,
        demo_memory().cleanup_interval,
        output::bytes((demo_memory().max_memory_mb * 1048576.0) as u64),
        memory_phase.removed_by_cleanup,
        memory_phase.entries_after,
        memory_phase.memory_mb_after
    ))?;

    let (tool_phase, tool_rows) = rt.block_on(tool_phase(&agent))?;
    p.say(format!(
        "\n2. Tools: {} requests in parallel (duplicates included) in {}; {} answered from the cache ({:.0}%).",
        tool_phase.requests,
        output::seconds(tool_phase.seconds),
        tool_phase.cache_hits,
        tool_phase.cache_hit_rate_pct
    ))?;
    if !ctx.json {
        output::rows(&["tool", "params", "outcome"], tool_rows, Value::Null)
            .output
            .print(false, ctx.width)?;
    }

    let (response_phase, reply_rows) =
        rt.block_on(response_phase(&agent, args.messages, args.seed, ctx.json))?;
    p.say(format!(
        "\n3. Responses: {} messages in {}: {} exact, {} fuzzy, {} generated, {} fallback, {} failed; {:.0}% from the cache.",
        response_phase.messages,
        output::seconds(response_phase.seconds),
        response_phase.exact,
        response_phase.fuzzy,
        response_phase.generated,
        response_phase.fallback,
        response_phase.errors,
        response_phase.cache_hit_rate_pct
    ))?;
    if !ctx.json {
        output::rows(
            &["#", "message", "outcome", "time"],
            reply_rows,
            Value::Null,
        )
        .output
        .print(false, ctx.width)?;
    }

    // Generations that missed the target finish (and are cached) before the report.
    let settled = rt.block_on(agent.responder().settle());
    let optimization = rt.block_on(agent.optimize_performance())?;
    p.say(format!(
        "\n4. Optimize: {} background generations finished; target {} -> {} (achievement {}); {} cached responses.",
        settled,
        output::seconds(optimization.old_target),
        output::seconds(optimization.new_target),
        optimization
            .achievement_rate
            .map_or("-".to_string(), |r| format!("{r:.1}%")),
        optimization.cache_entries
    ))?;

    let stats = rt.block_on(agent.stats())?;
    p.say(format!(
        "\n5. Stats of agent {:?}:\n{}",
        agent.name(),
        stats_text(&stats)
    ))?;
    rt.block_on(agent.close())?;
    p.say(format!(
        "\nRun it again: the next run starts from this file. Query it: agentstore --db {} stats",
        ctx.db.display()
    ))?;

    let report = DemoReport {
        agent: args.agent,
        database: ctx.db.display().to_string(),
        llm: stats.llm.clone(),
        previous_run: found,
        memory_phase,
        tool_phase,
        response_phase,
        optimization,
        stats,
    };
    Ok(Output::Text {
        text: String::new(),
        json: serde_json::to_value(&report)?,
    }
    .into())
}

/// What a previous run left: nothing when the agent does not exist yet.
fn previous_state(store: &Store, agent: &str) -> anyhow::Result<Option<Found>> {
    let Ok(record) = store.existing_agent(agent) else {
        return Ok(None);
    };
    let tools = store.tool_cache(&record).stats()?;
    let responses = store.response_cache(&record);
    let logged = match responses.time_stats()? {
        agentstore::ResponseTimeStats::Data(f) => f.total_responses,
        _ => 0,
    };
    Ok(Some(Found {
        memory_entries: record.memory_entries,
        cached_tool_results: tools.cache_size,
        cached_responses: responses.entries()?,
        logged_responses: logged,
    }))
}

/// Topics of the demo's memory entries and messages.
const TOPICS: [&str; 12] = [
    "sqlite write-ahead logging",
    "rust async runtimes",
    "prompt caching",
    "tool calling",
    "memory compaction",
    "vector search",
    "rate limits",
    "token budgets",
    "retry policies",
    "structured output",
    "agent evaluation",
    "context windows",
];

/// Message templates; `{}` is a topic. Short, so that the same template about two
/// topics stays under the 0.7 similarity of a fuzzy match (the original's word-set
/// Jaccard cannot tell topics apart when the shared words dominate).
const TEMPLATES: [&str; 4] = [
    "what is {} and why",
    "how do I start with {}",
    "explain {} simply",
    "common mistakes with {}",
];

async fn memory_phase(agent: &Agent, seed: u64) -> anyhow::Result<MemoryPhase> {
    let before = agent.record().memory_entries;
    let mut rng = SplitMix64::new(seed ^ 0x6d656d6f7279);
    let bar = bar(MEMORY_ADDS as u64, "memory");
    for i in 0..MEMORY_ADDS {
        let topic = TOPICS[rng.below(TOPICS.len() as u64) as usize];
        // 1 to 4 KiB: the cleanups every 50 messages keep about 150 entries, which
        // is more than the 256 KiB budget, so the emergency cleanup runs too.
        let filler = "detail ".repeat(146 + rng.below(440) as usize);
        let content = format!("note {i} about {topic}: {filler}");
        let importance = (rng.unit() * 100.0).round() / 100.0;
        agent.remember(&content, importance).await?;
        bar.inc(1);
    }
    bar.finish_and_clear();
    let stats = agent.stats().await?.memory;
    Ok(MemoryPhase {
        added: MEMORY_ADDS,
        entries_after: stats.total_entries,
        memory_mb_after: stats.total_memory_mb,
        removed_by_cleanup: (before + MEMORY_ADDS as u64).saturating_sub(stats.total_entries),
    })
}

async fn tool_phase(agent: &Agent) -> anyhow::Result<(ToolPhase, Vec<Vec<String>>)> {
    let requests: Vec<ToolRequest> = [
        ("calculator", json!({"expression": "12 * 7"})),
        ("calculator", json!({"expression": "144 / 12"})),
        ("calculator", json!({"expression": "12 * 7"})),
        (
            "word_counter",
            json!({"text": "the quick brown fox jumps over the lazy dog"}),
        ),
        ("word_counter", json!({"text": "agents that remember"})),
        ("lookup", json!({"topic": "sqlite"})),
        ("lookup", json!({"topic": "tokio"})),
        ("lookup", json!({"topic": "sqlite"})),
        ("current_time", json!({})),
        ("calculator", json!({"expression": "2 ^ 10"})),
        (
            "word_counter",
            json!({"text": "the quick brown fox jumps over the lazy dog"}),
        ),
        ("lookup", json!({"topic": "blake3"})),
    ]
    .into_iter()
    .map(|(tool, params)| ToolRequest::new(tool, params))
    .collect();
    // This run's own calls: the stored counters also count any other process's.
    let before = agent.tools().session_counts();
    let start = Instant::now();
    let outcomes = agent.execute_tools_parallel(requests.clone()).await;
    let seconds = start.elapsed().as_secs_f64();
    let after = agent.tools().session_counts();
    let rows = requests
        .iter()
        .zip(&outcomes)
        .map(|(r, o)| {
            let outcome = match &o.result {
                Ok(v) => output::snippet(&v.to_string(), 60),
                Err(e) => format!("error: {e}"),
            };
            vec![
                r.tool.clone(),
                output::snippet(&r.params.to_string(), 50),
                outcome,
            ]
        })
        .collect();
    let calls = after.total_calls - before.total_calls;
    let hits = after.cache_hits - before.cache_hits;
    Ok((
        ToolPhase {
            requests: outcomes.len(),
            succeeded: outcomes.iter().filter(|o| o.result.is_ok()).count(),
            cache_hits: hits,
            cache_hit_rate_pct: if calls > 0 {
                hits as f64 * 100.0 / calls as f64
            } else {
                0.0
            },
            seconds,
        },
        rows,
    ))
}

/// The message stream of a seed: new questions, exact repeats and near repeats
/// (a word added or the case changed), in a fixed order.
/// Generated as it is consumed: memory stays bounded by [`REMEMBERED`] messages.
fn messages(n: u64, seed: u64) -> impl Iterator<Item = String> {
    let mut rng = SplitMix64::new(seed);
    let mut asked: Vec<String> = Vec::new();
    (0..n).map(move |i| {
        let r = rng.unit();
        if asked.is_empty() || i < 4 || r < 0.4 {
            let topic = TOPICS[rng.below(TOPICS.len() as u64) as usize];
            let template = TEMPLATES[rng.below(TEMPLATES.len() as u64) as usize];
            let m = template.replace("{}", topic);
            if asked.len() < REMEMBERED {
                asked.push(m.clone());
            } else {
                let slot = rng.below(REMEMBERED as u64) as usize;
                asked[slot] = m.clone();
            }
            m
        } else {
            let earlier = asked[rng.below(asked.len() as u64) as usize].clone();
            if r < 0.7 {
                earlier
            } else if r < 0.85 {
                format!("{earlier} please")
            } else {
                let mut m = earlier;
                if let Some(first) = m.get_mut(0..1) {
                    first.make_ascii_uppercase();
                }
                m
            }
        }
    })
}

async fn response_phase(
    agent: &Agent,
    n: u64,
    seed: u64,
    quiet: bool,
) -> anyhow::Result<(ResponsePhase, Vec<Vec<String>>)> {
    let mut phase = ResponsePhase {
        messages: n,
        exact: 0,
        fuzzy: 0,
        generated: 0,
        fallback: 0,
        errors: 0,
        cache_hit_rate_pct: 0.0,
        seconds: 0.0,
    };
    let bar = if quiet {
        ProgressBar::hidden()
    } else {
        bar(n, "messages")
    };
    let start = Instant::now();
    let mut rows = Vec::new();
    for (i, message) in messages(n, seed).enumerate() {
        let (outcome, time) = match agent.process_message(&message).await {
            Ok(reply) => {
                match reply.outcome {
                    Outcome::Exact => phase.exact += 1,
                    Outcome::Fuzzy => phase.fuzzy += 1,
                    Outcome::Generated => phase.generated += 1,
                    Outcome::Fallback => phase.fallback += 1,
                    Outcome::Error => phase.errors += 1,
                }
                (
                    reply.outcome.as_str().to_string(),
                    output::seconds(reply.response_time),
                )
            }
            Err(e) => {
                phase.errors += 1;
                (
                    format!("error: {}", output::snippet(&e.to_string(), 60)),
                    "-".into(),
                )
            }
        };
        if rows.len() < SHOWN_ROWS {
            rows.push(vec![
                (i + 1).to_string(),
                output::snippet(&message, 50),
                outcome,
                time,
            ]);
        } else if rows.len() == SHOWN_ROWS && n as usize > SHOWN_ROWS {
            let more = n as usize - SHOWN_ROWS;
            rows.push(vec![
                "…".into(),
                format!("({more} more not shown)"),
                String::new(),
                String::new(),
            ]);
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    phase.seconds = start.elapsed().as_secs_f64();
    phase.cache_hit_rate_pct = (phase.exact + phase.fuzzy) as f64 * 100.0 / n as f64;
    Ok((phase, rows))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_stream_has_repeats_and_near_repeats() {
        let m: Vec<String> = messages(40, 42).collect();
        assert_eq!(m, messages(40, 42).collect::<Vec<_>>(), "deterministic");
        let distinct: std::collections::HashSet<&String> = m.iter().collect();
        assert!(distinct.len() < m.len(), "exact repeats");
        assert!(m.iter().any(|x| x.ends_with(" please")), "near repeats");
    }

    #[test]
    fn a_long_stream_remembers_a_bounded_number_of_messages() {
        let m: Vec<String> = messages(5000, 7).collect();
        assert_eq!(m.len(), 5000);
        assert!(
            demo_messages("1000000000")
                .unwrap_err()
                .contains("at most 100000")
        );
        assert_eq!(demo_messages("100000"), Ok(100_000));
    }
}
