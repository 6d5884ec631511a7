//! Ctrl-C and `kill` during `chat` and `demo`: the agent's batched counters and log
//! rows are written before the process exits, with the shell's codes for the signal
//! (130 for SIGINT, 143 for SIGTERM).

use agentstore::agent::Agent;
use tokio::signal::unix::{SignalKind, signal};

/// The longest the flush on a signal may take before the process exits anyway.
const FLUSH_LIMIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Watches for SIGINT and SIGTERM on `rt` for as long as it runs: on either, flushes
/// `agent` and exits. The main thread may be blocked reading stdin meanwhile; the
/// watcher runs on a worker thread of its own.
///
/// # Errors
/// When the signal handlers cannot be installed.
pub fn flush_on_signal(rt: &tokio::runtime::Runtime, agent: Agent) -> std::io::Result<()> {
    let _guard = rt.enter();
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    rt.spawn(async move {
        let (code, name) = tokio::select! {
            _ = interrupt.recv() => (130, "interrupted"),
            _ = terminate.recv() => (143, "terminated"),
        };
        let flushed = tokio::time::timeout(FLUSH_LIMIT, agent.flush()).await;
        match flushed {
            Ok(Ok(())) => eprintln!("agentstore: {name}; the counters and log rows were written"),
            Ok(Err(e)) => eprintln!("agentstore: {name}; writing the counters failed: {e}"),
            Err(_) => eprintln!(
                "agentstore: {name}; writing the counters took over {}s, exiting without them",
                FLUSH_LIMIT.as_secs()
            ),
        }
        std::process::exit(code);
    });
    Ok(())
}
