//! `agentstore mcp`: serve an agent's memory to MCP clients.

use std::io::Read;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use rmcp::ServiceExt;

use agentstore::{AgentRecord, Store};

use crate::cli::Context;
use crate::cli::cmd::llm::runtime;
use crate::cli::mcp::{MemoryServer, Scope, Tools, http};
use crate::cli::output::{Output, Reply};
use crate::cli::parse;

/// The shortest token `--token-file` may hold.
const MIN_TOKEN_CHARS: usize = 16;

/// `mcp`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Tools: remember, recall, context, list_memories, get_memory, \
rate_memory, forget, memory_stats. Resources: agentstore://agents/<agent>/stats and \
agentstore://agents/<agent>/memories/<id>.

Examples:
  agentstore --db ~/.agentstore/memory.db mcp --agent claude
  agentstore mcp --agent bot --http 127.0.0.1:8765 --token-file ~/.agentstore/token
  agentstore mcp --any-agent"
)]
pub struct Args {
    /// The agent whose memory the tools reach (created on first use). A model cannot
    /// reach another agent's memory.
    #[arg(
        long,
        required_unless_present = "any_agent",
        conflicts_with = "any_agent"
    )]
    pub agent: Option<String>,
    /// Serve every agent of the database: each tool then takes an `agent` argument.
    #[arg(long)]
    pub any_agent: bool,
    /// Set the agent's cap on entries (stored with the agent; default for a new one:
    /// 1000, the original design's), beyond which the oldest go.
    #[arg(long, value_name = "N", conflicts_with = "any_agent", value_parser = parse::positive, allow_negative_numbers = true)]
    pub max_entries: Option<u64>,
    /// Set the agent's byte budget in MiB (stored with the agent; default 10): past
    /// it, an emergency cleanup drops the least important entries.
    #[arg(
        long,
        value_name = "MIB",
        conflicts_with = "any_agent",
        allow_negative_numbers = true
    )]
    pub max_memory_mb: Option<f64>,
    /// Set how often the agent's regular cleanup runs, every N entries added (stored
    /// with the agent; default 100, keeping the 70% that rank highest); 0 turns it
    /// off, so memory keeps everything up to the cap and the budget.
    #[arg(long, value_name = "N", conflicts_with = "any_agent")]
    pub cleanup_interval: Option<u64>,
    /// Serve the streamable HTTP transport as well, at http://ADDR/mcp (a port alone
    /// means 127.0.0.1:PORT; port 0 picks a free one). Every request needs the bearer
    /// token; the address it listens on is printed to stderr.
    #[arg(long, value_name = "ADDR", value_parser = parse_addr)]
    pub http: Option<SocketAddr>,
    /// A file holding the bearer token for --http (at least 16 characters; surrounding
    /// whitespace is ignored). Without it, a random token is generated and printed to
    /// stderr at start.
    #[arg(long, value_name = "PATH", requires = "http")]
    pub token_file: Option<PathBuf>,
    /// A `Host` header value to accept besides the loopback names (for a server
    /// listening beyond loopback, behind a name); repeatable.
    #[arg(long, value_name = "HOST", requires = "http")]
    pub allow_host: Vec<String>,
    /// A browser `Origin` to accept besides loopback ones (`scheme://host[:port]`);
    /// repeatable.
    #[arg(long, value_name = "ORIGIN", requires = "http")]
    pub allow_origin: Vec<String>,
}

fn parse_addr(text: &str) -> Result<SocketAddr, String> {
    if let Ok(port) = text.parse::<u16>() {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    text.parse::<SocketAddr>().map_err(|_| {
        format!("{text:?} is not an address to listen on (e.g. 127.0.0.1:8765, or a port)")
    })
}

/// The bearer token: read from `path`, or 32 random bytes in hex.
fn token(path: Option<&PathBuf>) -> anyhow::Result<(String, bool)> {
    if let Some(path) = path {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the token file {}", path.display()))?;
        let token = text.trim().to_string();
        if token.chars().count() < MIN_TOKEN_CHARS || token.chars().any(char::is_whitespace) {
            anyhow::bail!(
                "the token file {} must hold one token of at least {MIN_TOKEN_CHARS} \
                 characters, without spaces",
                path.display()
            );
        }
        return Ok((token, false));
    }
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("cannot generate a token (no /dev/urandom); give one with --token-file")?;
    Ok((bytes.iter().map(|b| format!("{b:02x}")).collect(), true))
}

/// The agent, created if new, with the retention flags applied to its settings.
fn retention(store: &Store, name: &str, args: &Args) -> anyhow::Result<AgentRecord> {
    let agent = store.agent(name)?;
    if args.max_entries.is_none() && args.max_memory_mb.is_none() && args.cleanup_interval.is_none()
    {
        return Ok(agent);
    }
    let mut settings = agent.settings;
    if let Some(n) = args.max_entries {
        settings = settings.with_max_entries(n);
    }
    if let Some(mb) = args.max_memory_mb {
        settings = settings.with_max_memory_mb(mb);
    }
    if let Some(n) = args.cleanup_interval {
        settings = settings.with_cleanup_interval(n);
    }
    store.set_memory_settings(name, &settings)?;
    Ok(store.existing_agent(name)?)
}

/// Runs `mcp` until the client closes stdin (or, with --http, until SIGINT or
/// SIGTERM). Nothing but protocol messages goes to stdout.
pub fn run(ctx: &Context, args: Args) -> anyhow::Result<Reply> {
    let store = ctx.open_for_write()?;
    let scope = match &args.agent {
        Some(name) if !args.any_agent => Scope::Fixed(retention(&store, name, &args)?),
        _ => Scope::Any,
    };
    let whose = match &scope {
        Scope::Fixed(agent) => format!("agent {:?}", agent.name),
        Scope::Any => "every agent".to_string(),
    };
    let server = MemoryServer::new(Tools { store, scope });
    let rt = runtime()?;
    rt.block_on(async move {
        if let Some(addr) = args.http {
            let (token, generated) = token(args.token_file.as_ref())?;
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr}"))?;
            let bound = listener.local_addr()?;
            eprintln!(
                "agentstore mcp: serving {whose} over HTTP at http://{bound}{}",
                http::PATH
            );
            if generated {
                eprintln!("agentstore mcp: bearer token: {token}");
            }
            let access = http::Access {
                token,
                extra_hosts: args.allow_host,
                extra_origins: args.allow_origin,
            };
            tokio::spawn(http::serve(listener, server.clone(), access));
        }
        serve_stdio(server, &whose).await;
        if args.http.is_some() {
            wait_for_signal().await?;
        }
        anyhow::Ok(())
    })?;
    Ok(Output::Done.into())
}

/// Serves one session on stdin/stdout until the client closes it.
async fn serve_stdio(server: MemoryServer, whose: &str) {
    match server.serve(rmcp::transport::stdio()).await {
        Ok(running) => {
            eprintln!("agentstore mcp: serving {whose} on stdio");
            if let Err(e) = running.waiting().await {
                eprintln!("agentstore mcp: the stdio session ended: {e}");
            }
        }
        // A client that closed stdin before initializing (or a terminal at EOF).
        Err(e) => eprintln!("agentstore mcp: no stdio session: {e}"),
    }
}

async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    tokio::select! {
        _ = interrupt.recv() => {},
        _ = terminate.recv() => {},
    }
    eprintln!("agentstore mcp: stopped");
    Ok(())
}
