//! `agentstore agents`: the agents in the file.

use clap::Subcommand;
use serde_json::to_value;

use crate::cli::Context;
use crate::cli::output::{self, Reply};

/// `agents` subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// List every agent with its entry count, memory size and message count.
    #[command(after_help = "Example:\n  agentstore agents list\n  agentstore --json agents list")]
    List,
}

/// Runs an `agents` subcommand.
pub fn run(ctx: &Context, cmd: Command) -> anyhow::Result<Reply> {
    match cmd {
        Command::List => {
            let store = ctx.open_existing()?;
            let agents = store.agents()?;
            let now = store.now_micros();
            let rows = agents
                .iter()
                .map(|a| {
                    vec![
                        a.name.clone(),
                        a.memory_entries.to_string(),
                        output::bytes(a.memory_bytes),
                        a.message_count.to_string(),
                        format!("{} ago", output::duration_micros(now - a.created_at)),
                    ]
                })
                .collect();
            Ok(output::rows(
                &["agent", "entries", "memory", "messages", "created"],
                rows,
                to_value(&agents)?,
            ))
        }
    }
}
