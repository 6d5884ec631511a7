//! The seam between the store and its engines: crate-private traits, one per table
//! group, whose methods are whole operations, each with its transaction inside. A
//! handle (`Memory`, `ToolCache`, ...) validates its arguments, then makes one call
//! here; SQL never crosses this line, so an engine on a server can do each operation
//! in one or two round trips.

use std::path::Path;
use std::time::Duration;

use super::forget::{ForgetEverywhereReport, Needles};
use super::memory::{Forget, PrunePlan, PruneStart, Query};
use super::report::Aggregates;
use super::responses::{ResponsePurge, TuneRule};
use super::transfer::{ImportSink, Record};
use super::{
    AgentRecord, CacheFilter, CacheKey, CacheMatch, CachedResponse, CachedToolResult, CheckReport,
    CompactReport, CompressedContext, ForgetReport, FuzzyOptions, ImportReport, ListOrder,
    LoggedResponse, Lookup, MemoryEntry, MemorySettings, MemoryStats, NewEntry, PageUse, Prune,
    QueryResult, QuerySink, ResponseOrder, ResponseTimeStats, Role, SearchHit, SearchOptions,
    StatsView, ToolCounts, Tuning,
};
use crate::error::Result;

/// Everything an engine is: the five table groups, and what the layers above ask of
/// the engine itself.
pub(crate) trait Engine:
    AgentOps
    + MemoryOps
    + ToolOps
    + ResponseOps
    + AdminOps
    + ReportOps
    + LeaseOps
    + Send
    + Sync
    + 'static
{
    /// Names the database: two stores with the same identity share one database (the
    /// single-flight of tool calls is keyed by it).
    fn identity(&self) -> &str;

    /// Whether a read is cheap enough to run inline on an async worker thread.
    fn reads_inline(&self) -> bool;

    /// How long an operation waits for another connection's lock.
    fn busy_timeout(&self) -> Duration;

    /// The database file, for an engine that is one.
    fn sqlite_path(&self) -> Option<&Path>;
}

/// Agents and their settings.
pub(crate) trait AgentOps {
    /// The agent called `name`, if it exists.
    fn find_agent(&self, name: &str) -> Result<Option<AgentRecord>>;
    /// The agent called `name`, created (at `now`, with default settings) if absent.
    fn create_agent(&self, name: &str, now: i64) -> Result<AgentRecord>;
    /// Every agent, by name.
    fn agents(&self) -> Result<Vec<AgentRecord>>;
    /// Replaces an agent's memory settings; false when there is no such agent.
    fn set_memory_settings(&self, name: &str, settings: &MemorySettings) -> Result<bool>;
    /// Sets (or, `None`, clears) an agent's tool scope; false when there is no such agent.
    fn set_tool_scope(&self, name: &str, scope: Option<&str>) -> Result<bool>;
    /// Sets an agent's response time target; false when there is no such agent.
    fn set_target(&self, name: &str, seconds: f64) -> Result<bool>;
}

/// Memory entries.
pub(crate) trait MemoryOps {
    /// Adds validated entries with the agent's retention, in one transaction (`bulk`:
    /// one that may write many pages); returns their ids.
    fn memory_add(
        &self,
        agent_id: i64,
        items: &[(Role, &str, f64)],
        now: i64,
        bulk: bool,
    ) -> Result<Vec<i64>>;
    /// Restores validated entries as given, without retention, in one transaction.
    fn memory_restore(&self, agent_id: i64, entries: &[NewEntry]) -> Result<u64>;
    /// The regular cleanup, now.
    fn memory_cleanup(&self, agent_id: i64) -> Result<u64>;
    /// The original's stats (ages from `now`).
    fn memory_stats(&self, agent_id: i64, now: i64) -> Result<MemoryStats>;
    /// Up to `limit` entries in `order`, one at a time.
    fn memory_list(
        &self,
        agent_id: i64,
        order: ListOrder,
        limit: u64,
        each: &mut dyn FnMut(MemoryEntry) -> Result<()>,
    ) -> Result<()>;
    /// The compressed context, scored for relevance to `query` if given, from one
    /// snapshot.
    fn memory_context(
        &self,
        agent_id: i64,
        max_chars: u64,
        query: Option<&Query>,
    ) -> Result<CompressedContext>;
    /// One entry by id.
    fn memory_get(&self, agent_id: i64, id: i64) -> Result<Option<MemoryEntry>>;
    /// The best matches of a query with terms, best first.
    fn memory_search(
        &self,
        agent_id: i64,
        query: &Query,
        options: &SearchOptions,
    ) -> Result<Vec<SearchHit>>;
    /// Sets one entry's importance; the entry as it now is.
    fn memory_rate(&self, agent_id: i64, id: i64, importance: f64) -> Result<Option<MemoryEntry>>;
    /// Removes (or lists, `dry_run`) entries for good, in one transaction, scrubbing
    /// what the engine can of the removed text from its files.
    fn memory_forget(
        &self,
        agent_id: i64,
        target: &Forget<'_>,
        dry_run: bool,
    ) -> Result<ForgetReport>;
    /// The plan a prune runs (the stored one when `key` names it), read from one
    /// snapshot; with `count`, also what it has left to remove.
    fn prune_start(
        &self,
        agent_id: i64,
        rule: Prune,
        key: &str,
        now: i64,
        count: bool,
    ) -> Result<PruneStart>;
    /// Deletes the stored plan of an interrupted prune.
    fn prune_forget(&self, agent_id: i64) -> Result<()>;
    /// One batch of a prune, in one transaction: saves `first` as the stored plan (the
    /// first batch of a new prune) or reads the stored one back, then removes up to
    /// `rows` entries of it. `None` when no plan is stored any more; else (entries,
    /// bytes, whether the plan is complete).
    fn prune_batch(
        &self,
        agent_id: i64,
        first: Option<&PrunePlan>,
        now: i64,
        rows: i64,
    ) -> Result<Option<(u64, u64, bool)>>;
}

/// The tool-result cache and the tool counters.
pub(crate) trait ToolOps {
    /// The unexpired result text under `key`.
    fn tool_get(&self, key: &CacheKey, now: i64) -> Result<Option<String>>;
    /// [`ToolOps::tool_get`] only if it can run without waiting for a connection.
    fn tool_try_get(&self, key: &CacheKey, now: i64) -> Option<Result<Option<String>>>;
    /// Upserts one result and expires a few old ones, in one transaction.
    #[allow(clippy::too_many_arguments)]
    fn tool_put(
        &self,
        key: &CacheKey,
        scope: &str,
        tool: &str,
        canonical_params: &str,
        result: &str,
        now: i64,
        expires_at: i64,
        lease_holder: Option<&str>,
    ) -> Result<()>;
    /// Rows `filter` covers.
    fn tool_count(&self, filter: &CacheFilter, now: i64) -> Result<u64>;
    /// Removes up to `rows` rows `filter` covers, in one transaction.
    fn tool_purge_batch(&self, filter: &CacheFilter, now: i64, rows: i64) -> Result<u64>;
    /// Whether `tool` has counters or cached results.
    fn tool_known(&self, tool: &str) -> Result<bool>;
    /// Cached results `filter` covers, newest first.
    fn tool_list(
        &self,
        filter: &CacheFilter,
        now: i64,
        limit: u64,
    ) -> Result<Vec<CachedToolResult>>;
    /// Adds counter deltas per (agent, tool), in one transaction.
    fn tool_add_counts(&self, deltas: &[(i64, String, ToolCounts)]) -> Result<()>;
    /// An agent's counters per tool and the size of its scope's cache, one snapshot.
    fn tool_counters(&self, agent_id: i64, scope: &str)
    -> Result<(Vec<(String, ToolCounts)>, u64)>;
}

/// Cached responses and the response log.
pub(crate) trait ResponseOps {
    /// The cached response to exactly `message`.
    fn response_exact(&self, agent_id: i64, message: &str) -> Result<Option<CacheMatch>>;
    /// [`ResponseOps::response_exact`] only if it can run without waiting.
    fn response_try_exact(
        &self,
        agent_id: i64,
        message: &str,
    ) -> Option<Result<Option<CacheMatch>>>;
    /// The exact match (unless `fuzzy_only`), else the fuzzy one, from one snapshot.
    fn response_lookup(
        &self,
        agent_id: i64,
        message: &str,
        options: FuzzyOptions,
        fuzzy_only: bool,
    ) -> Result<Lookup>;
    /// Stores one pair (indexing the agent's waiting rows when too many wait).
    fn response_put(
        &self,
        agent_id: i64,
        message: &str,
        response: &str,
        now: i64,
        lease: Option<(&[u8; 32], &str)>,
    ) -> Result<i64>;
    /// Stores many pairs and indexes them, in one transaction.
    fn response_put_many(&self, agent_id: i64, pairs: &[(&str, &str)], now: i64) -> Result<()>;
    /// Indexes every waiting row, in batches.
    fn response_index_pending(&self) -> Result<u64>;
    /// Batched hits and log rows, then the log trim, in one transaction.
    fn response_record(
        &self,
        agent_id: i64,
        hits: &[(i64, u64, i64)],
        rows: &[LoggedResponse],
        keep: u64,
    ) -> Result<()>;
    /// The response-time stats, from one snapshot.
    fn response_time_stats(&self, agent_id: i64) -> Result<ResponseTimeStats>;
    /// Tunes the target by `rule`, in one transaction.
    fn response_tune(&self, agent_id: i64, rule: TuneRule) -> Result<Tuning>;
    /// Cached responses of the agent.
    fn response_entries(&self, agent_id: i64) -> Result<u64>;
    /// What a purge by `rule` would remove.
    fn response_purge_count(&self, agent_id: i64, rule: ResponsePurge, now: i64) -> Result<u64>;
    /// Removes up to `rows` cached responses by `rule`, in one transaction.
    fn response_purge_batch(
        &self,
        agent_id: i64,
        rule: ResponsePurge,
        now: i64,
        rows: i64,
    ) -> Result<u64>;
    /// Cached responses in `order`.
    fn response_list(
        &self,
        agent_id: i64,
        order: ResponseOrder,
        limit: u64,
    ) -> Result<Vec<CachedResponse>>;
    /// The agent's response time target.
    fn response_target(&self, agent_id: i64) -> Result<f64>;
}

/// Administration: check, export and import, views, read-only queries, space.
pub(crate) trait AdminOps {
    /// The health report, from one snapshot.
    fn check(&self) -> Result<CheckReport>;
    /// Every record of `agent` (or of all agents), from one snapshot, in export order.
    fn export(&self, agent: Option<&str>, emit: &mut dyn FnMut(Record) -> Result<()>)
    -> Result<()>;
    /// Runs `run` in one transaction, writing through the sink it is given:
    /// committed when it returns Ok, rolled back otherwise.
    fn import(
        &self,
        run: &mut dyn FnMut(&mut dyn ImportSink) -> Result<ImportReport>,
    ) -> Result<ImportReport>;
    /// A stats view's rows.
    fn view(&self, view: StatsView, agent: Option<&str>) -> Result<QueryResult>;
    /// How the database's pages are used.
    fn page_use(&self) -> Result<PageUse>;
    /// Gives free space back.
    fn compact(&self, full: bool) -> Result<CompactReport>;
    /// Copies the log into the database (a no-op where there is none).
    fn checkpoint(&self) -> Result<()>;
    /// Rebuilds the memory search index from the entries; the entries indexed.
    fn reindex(&self) -> Result<u64>;
    /// Removes (or lists, `dry_run`) what matches `query` in an agent's memory, and
    /// what contains `needles` in its cached responses and its scope's tool results,
    /// in one transaction, scrubbing the files as `memory_forget` does.
    fn forget_everywhere(
        &self,
        agent_id: i64,
        scope: &str,
        query: &Query,
        needles: &Needles,
        dry_run: bool,
    ) -> Result<ForgetEverywhereReport>;
    /// One read-only statement in the engine's sandbox; the rows it handed over.
    fn query_read_only(
        &self,
        sql: &str,
        timeout: Duration,
        sink: &mut dyn QuerySink,
    ) -> Result<u64>;
}

/// Leases of calls in progress (`leases`), for single-flight across processes. Each
/// is one short write transaction: no lease is held inside a transaction.
pub(crate) trait LeaseOps {
    /// Takes the lease on `key` for `holder` until `until`, if it is free, expired
    /// (at `now`) or already `holder`'s; `None` when taken, else when the other
    /// holder's lease expires.
    fn lease_take(&self, key: &[u8; 32], holder: &str, now: i64, until: i64)
    -> Result<Option<i64>>;
    /// Extends `holder`'s lease on `key` to `until`; false when it is not `holder`'s
    /// any more.
    fn lease_renew(&self, key: &[u8; 32], holder: &str, until: i64) -> Result<bool>;
    /// Gives `holder`'s lease on `key` up.
    fn lease_release(&self, key: &[u8; 32], holder: &str) -> Result<()>;
}

/// The report's aggregates (`agentstore report`), over every table group of an agent.
pub(crate) trait ReportOps {
    /// The chart data of `agent` at `now`, from one snapshot; `doomed` is how many
    /// entries the next regular cleanup removes (they are counted per cell).
    fn report_aggregates(&self, agent: &AgentRecord, now: i64, doomed: i64) -> Result<Aggregates>;
}
