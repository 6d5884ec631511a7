//! `agentstore chat`: a read-eval loop over an agent on stdin.

use std::io::{self, BufRead, IsTerminal, Write};

use agentstore::MAX_CONTENT_BYTES;
use agentstore::agent::{Agent, AgentConfig};

use crate::cli::output::stats_text;

use crate::cli::Context;
use crate::cli::cmd::llm::{LlmArgs, runtime};
use crate::cli::output::{self, Output, Reply};
use crate::cli::signals;

/// `chat`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Commands inside the loop: /stats, /context, /quit (or end of input).

Examples:
  agentstore chat --agent bot
  printf 'hello\\nhello\\n/stats\\n' | agentstore chat --agent bot --simulated-latency none
  AGENTSTORE_LLM_BASE_URL=http://127.0.0.1:11434/v1 agentstore chat --agent bot --llm openai --model llama3.2"
)]
pub struct Args {
    /// The agent to talk to (created on first use).
    #[arg(long)]
    pub agent: String,
    #[command(flatten)]
    pub llm: LlmArgs,
    /// Seed of the simulated client.
    #[arg(long, default_value = "42")]
    pub seed: u64,
}

/// Runs `chat`. Each reply goes to stdout, followed by its time and outcome (with
/// `--json`, one JSON object per reply); prompts go to stderr, only on a terminal. A
/// failed generation is reported on stderr and the loop goes on; the exit code is 1 if
/// any message failed.
pub fn run(ctx: &Context, args: Args) -> anyhow::Result<Reply> {
    let store = ctx.open_for_write()?;
    let llm = args.llm.client(args.seed)?;
    let rt = runtime()?;
    let agent = rt.block_on(Agent::open(&store, &args.agent, AgentConfig::with_llm(llm)))?;
    signals::flush_on_signal(&rt, agent.clone())?;
    let interactive = io::stdin().is_terminal();
    if interactive {
        eprintln!(
            "chatting with {} ({}); /stats, /context, /quit",
            agent.name(),
            agent.llm().describe()
        );
    }
    let mut failed = 0u64;
    let mut answered = 0u64;
    let stdin = io::stdin();
    let mut input = stdin.lock();
    let mut number = 0u64;
    loop {
        if interactive {
            eprint!("you> ");
            io::stderr().flush()?;
        }
        number += 1;
        let line = match read_line(&mut input)? {
            Line::End => break,
            Line::Text(line) => line,
            Line::Bad(why) => {
                failed += 1;
                eprintln!("agentstore: line {number} {why}; skipped");
                continue;
            }
        };
        let message = line.trim();
        match message {
            "" => continue,
            "/quit" | "/exit" => break,
            "/stats" => {
                let stats = rt.block_on(agent.stats())?;
                print_block(
                    ctx.json,
                    &serde_json::to_value(&stats)?,
                    &stats_text(&stats),
                )?;
            }
            "/context" => {
                let context = rt.block_on(agent.context(2000))?;
                let text = if context.text.is_empty() {
                    "(memory is empty)".to_string()
                } else {
                    context.text.clone()
                };
                print_block(ctx.json, &serde_json::to_value(&context)?, &text)?;
            }
            m if m.starts_with('/') => {
                eprintln!("agentstore: unknown command {m}; try /stats, /context or /quit");
            }
            m => match rt.block_on(agent.process_message(m)) {
                Ok(reply) => {
                    answered += 1;
                    let text = format!(
                        "{}\n  ({}, {})",
                        reply.response,
                        output::seconds(reply.response_time),
                        reply.outcome.as_str()
                    );
                    print_block(ctx.json, &serde_json::to_value(&reply)?, &text)?;
                }
                Err(e) => {
                    failed += 1;
                    eprintln!("agentstore: {e}");
                }
            },
        }
    }
    rt.block_on(agent.close())?;
    if failed > 0 {
        anyhow::bail!("{failed} of {} messages failed", failed + answered);
    }
    Ok(Output::Done.into())
}

/// One line of the chat's input.
enum Line {
    /// A line of text (without its newline).
    Text(String),
    /// A line that cannot be a message, and why.
    Bad(String),
    /// The end of input.
    End,
}

/// Reads one line, at most a message's size: a longer line is read to its end and
/// refused, a line that is not UTF-8 is refused, and neither stops the chat.
fn read_line(input: &mut impl BufRead) -> io::Result<Line> {
    use std::io::Read as _;
    let limit = MAX_CONTENT_BYTES as u64 + 2;
    let mut buf = Vec::new();
    let read = input.by_ref().take(limit).read_until(b'\n', &mut buf)?;
    if read == 0 {
        return Ok(Line::End);
    }
    if !buf.ends_with(b"\n") && read as u64 == limit {
        // Skip the rest of the line without keeping it.
        loop {
            let chunk = input.fill_buf()?;
            if chunk.is_empty() {
                break;
            }
            match chunk.iter().position(|b| *b == b'\n') {
                Some(i) => {
                    input.consume(i + 1);
                    break;
                }
                None => {
                    let n = chunk.len();
                    input.consume(n);
                }
            }
        }
        return Ok(Line::Bad(format!(
            "is over the limit of {MAX_CONTENT_BYTES} bytes for a message"
        )));
    }
    while buf.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        buf.pop();
    }
    match String::from_utf8(buf) {
        Ok(text) => Ok(Line::Text(text)),
        Err(e) => Ok(Line::Bad(format!(
            "is not UTF-8 (at byte {})",
            e.utf8_error().valid_up_to()
        ))),
    }
}

/// Prints one item: a JSON line with `--json`, else the text.
fn print_block(json: bool, value: &serde_json::Value, text: &str) -> io::Result<()> {
    let stdout = io::stdout();
    let mut out = stdout.lock();
    if json {
        writeln!(out, "{value}")?;
    } else {
        writeln!(out, "{text}")?;
    }
    out.flush()
}
