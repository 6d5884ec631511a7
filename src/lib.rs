//! agentstore keeps a long-lived LLM agent's state in one SQLite file, so the agent
//! can be killed, restarted, inspected and pruned without losing what it knew.
//!
//! The [`Store`] is plain synchronous Rust. It holds an engine behind a crate-private
//! seam of whole operations (an add with its cleanup, a lookup, one prune batch, an
//! import), so that the engine can be an embedded file or, later, a server. Today's
//! engine is SQLite: a pool of connections in WAL mode (`synchronous=NORMAL` by
//! default, a busy timeout, `BEGIN IMMEDIATE` for every write). `schema.sql` at the
//! repository root is its schema, embedded in the crate; its views are a public
//! interface for any SQLite client. [`Store::open`] takes a file path and
//! [`Store::connect`] a location (`agent.db`, `sqlite:agent.db`).
//!
//! Per agent the store keeps memory entries ([`Memory`]), cached tool results and
//! tool counters ([`ToolCache`]), and cached responses with the response-time log
//! ([`ResponseCache`]); each handle is bound to its agent. The async layer in [`agent`]
//! runs tools with caching, single-flight and parallel batches ([`agent::Tools`]) and
//! answers messages from the response cache or a generator under a target time
//! ([`agent::Responder`]); it keeps hot paths free of writes by counting in memory and
//! flushing in batches, and runs store calls off its async workers unless the store
//! says a read may run inline ([`Store::reads_inline`]).
//!
//! Features: `cli` (default) builds the `agentstore` binary; `openai` (default, and
//! part of `cli`) adds `agent::OpenAiClient`. A library user who embeds the store
//! can use `default-features = false`.
//!
//! ```
//! use agentstore::{Store, StoreOptions};
//!
//! # fn main() -> agentstore::Result<()> {
//! let dir = tempfile::tempdir().unwrap();
//! let store = Store::open(dir.path().join("agent.db"), StoreOptions::default())?;
//! let agent = store.agent("assistant")?; // created on first use
//! let memory = store.memory(&agent);
//! memory.add("the user prefers metric units", 0.9)?;
//! memory.add("small talk about the weather", 0.2)?;
//! assert_eq!(memory.stats()?.total_entries, 2);
//! let context = memory.context(2000)?;
//! assert!(context.text.starts_with("the user prefers metric units"));
//! # Ok(())
//! # }
//! ```

#![warn(missing_docs)]

pub mod agent;
pub mod clock;
mod error;
mod offload;
mod rng;
mod store;

pub use clock::{Clock, ManualClock, SystemClock};
pub use error::{DbErrorKind, Error, ErrorKind, Result, clip};
pub use store::{
    APPLICATION_ID, AgentRecord, CONTEXT_MATCHES, CacheFilter, CacheKey, CacheMatch,
    CachedResponse, CachedToolResult, CheckReport, CompactReport, CompressedContext, ContextEntry,
    DEFAULT_TOOL_TTL, EXPORT_FORMAT, EXPORT_VERSION, ExportReport, ForgetEverywhereReport,
    ForgetReport, ForgetTarget, FuzzyOptions, ImportReport, ListOrder, Location, LoggedResponse,
    Lookup, MAX_CONTENT_BYTES, MAX_FUZZY_WORDS, MAX_IMPORT_LINE, MAX_NAME_CHARS, MAX_PARAMS_DEPTH,
    MAX_QUERY_BYTES, MAX_QUERY_TERMS, Memory, MemoryEntry, MemorySettings, MemoryStats, NewEntry,
    NoMatch, Optimization, Outcome, POSTGRES_SCHEMA_VERSION, PageUse, PostgresOptions, PostgresUrl,
    Prune, PruneReport, PurgeReport, QueryResult, QuerySink, ResponseCache, ResponseOrder,
    ResponsePurge, ResponsePurgeReport, ResponseTimeStats, Role, SCHEMA_SQL, SCHEMA_VERSION,
    SearchHit, SearchOptions, SqliteOptions, StatsView, Store, StoreOptions, Synchronous,
    TimeFigures, TlsMode, ToolCache, ToolCallStats, ToolCounts, ToolResults, ToolStats, Tuning,
    canonical_json, query_read_only, query_read_only_with, report, words,
};

#[cfg(test)]
mod tests {
    /// The async layer shares one store across tasks and threads.
    #[test]
    fn the_store_can_be_shared_across_threads() {
        fn shared<T: Send + Sync + Clone + 'static>() {}
        shared::<crate::Store>();
        shared::<crate::Memory>();
    }
}
