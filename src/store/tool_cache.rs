//! The tool-result cache and the tool counters: cache keys (blake3 over the scope, the
//! tool and the canonical JSON of the params), the records, and the two handles:
//! [`ToolCache`], bound to one agent (its scope's results and its counters), and
//! [`ToolResults`], every scope's results for the operator. The async execution layer
//! (single-flight, parallel calls, batched counters) is in `agent::tools`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

use super::{AgentRecord, MAX_CONTENT_BYTES, Store, batch};
use crate::clock::serialize_micros;
use crate::error::{Error, Result};

/// Bumped whenever the bytes hashed into a key change, so old rows can never be
/// mistaken for new ones (they simply stop matching and expire).
const KEY_FORMAT: &[u8] = b"agentstore tool key v1\0";

/// The default time to live of a cached result: one hour, as the original.
pub const DEFAULT_TOOL_TTL: Duration = Duration::from_secs(3600);

/// A tool cache key: blake3 over the key-format version, the scope, the tool name and
/// the canonical JSON of the params.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CacheKey(pub [u8; 32]);

impl CacheKey {
    /// The key of a call. Scope and tool are length-prefixed so that no two different
    /// (scope, tool, params) can hash the same bytes.
    ///
    /// # Errors
    /// As [`canonical_json`].
    pub fn new(scope: &str, tool: &str, params: &Value) -> Result<CacheKey> {
        Ok(CacheKey::from_canonical(
            scope,
            tool,
            &canonical_json(params)?,
        ))
    }

    /// The key of a call whose params are already in canonical JSON.
    pub fn from_canonical(scope: &str, tool: &str, canonical_params: &str) -> CacheKey {
        let mut h = blake3::Hasher::new();
        h.update(KEY_FORMAT);
        for part in [scope, tool] {
            h.update(&(part.len() as u64).to_le_bytes());
            h.update(part.as_bytes());
        }
        h.update(canonical_params.as_bytes());
        CacheKey(*h.finalize().as_bytes())
    }

    /// The key in lowercase hex.
    pub fn to_hex(&self) -> String {
        hex(&self.0)
    }
}

/// Bytes in lowercase hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(2 * bytes.len());
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Deepest nesting of arrays and objects accepted in tool params (serde_json's own
/// parser stops at 128 too); deeper values are refused rather than recursed into.
pub const MAX_PARAMS_DEPTH: usize = 128;

/// `value` as canonical JSON: object keys sorted (by their UTF-8 bytes) at every
/// depth, no whitespace, array order kept; strings and numbers as serde_json writes
/// them. Equal params give equal text whatever order their keys came in.
///
/// # Errors
/// [`Error::InvalidArgument`] when the value is nested deeper than
/// [`MAX_PARAMS_DEPTH`] or its canonical text is over 1 MiB.
pub fn canonical_json(value: &Value) -> Result<String> {
    let mut out = String::with_capacity(256);
    write_canonical(value, &mut out, 0)?;
    if out.len() > MAX_CONTENT_BYTES {
        return Err(Error::invalid(format!(
            "tool params are {} bytes as JSON; the limit is {MAX_CONTENT_BYTES}",
            out.len()
        )));
    }
    Ok(out)
}

fn write_canonical(value: &Value, out: &mut String, depth: usize) -> Result<()> {
    if depth > MAX_PARAMS_DEPTH {
        return Err(Error::invalid(format!(
            "tool params are nested deeper than {MAX_PARAMS_DEPTH} levels"
        )));
    }
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_scalar(&Value::String(k.clone()), out);
                out.push(':');
                write_canonical(v, out, depth + 1)?;
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(v, out, depth + 1)?;
            }
            out.push(']');
        }
        scalar => write_scalar(scalar, out),
    }
    Ok(())
}

fn write_scalar(value: &Value, out: &mut String) {
    // Serialising a scalar into a String cannot fail.
    if let Ok(text) = serde_json::to_string(value) {
        out.push_str(&text);
    }
}

/// Counter deltas (or totals) for one agent and tool.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct ToolCounts {
    /// Calls, hits included.
    pub total_calls: u64,
    /// Calls answered from the cache (or by an identical call in flight).
    pub cache_hits: u64,
    /// Calls that returned an error.
    pub errors: u64,
    /// Seconds spent in calls.
    pub total_time: f64,
}

impl ToolCounts {
    /// Adds `other` to these counts.
    pub fn add(&mut self, other: &ToolCounts) {
        self.total_calls += other.total_calls;
        self.cache_hits += other.cache_hits;
        self.errors += other.errors;
        self.total_time += other.total_time;
    }
}

/// One tool's stats, as the original's `execution_stats[tool]` plus errors.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ToolCallStats {
    /// Calls, hits included.
    pub total_calls: u64,
    /// Calls answered without running the tool.
    pub cache_hits: u64,
    /// Calls that returned an error.
    pub errors: u64,
    /// Seconds spent in calls.
    pub total_time: f64,
    /// `total_time / total_calls`.
    pub avg_time: f64,
}

/// An agent's tool stats: the original design's `get_performance_stats()` keys, with
/// the agent and its cache scope.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ToolStats {
    /// The agent.
    pub agent: String,
    /// Its cache scope.
    pub scope: String,
    /// Calls over all tools.
    pub total_tool_calls: u64,
    /// Hits over all tools.
    pub total_cache_hits: u64,
    /// Hits as a percentage of calls (0 without calls).
    pub cache_hit_rate_pct: f64,
    /// Per tool, by name.
    pub tool_stats: BTreeMap<String, ToolCallStats>,
    /// Rows in the scope's cache (expired ones not yet removed included, as the
    /// original's `len(tool_cache)`).
    pub cache_size: u64,
}

/// A cached result as listed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CachedToolResult {
    /// The key in hex.
    pub key: String,
    /// The scope it belongs to.
    pub scope: String,
    /// The tool.
    pub tool: String,
    /// The params, canonical JSON.
    pub params: Value,
    /// The result.
    pub result: Value,
    /// When it was stored.
    #[serde(serialize_with = "serialize_micros")]
    pub created_at: i64,
    /// When it stops being returned.
    #[serde(serialize_with = "serialize_micros")]
    pub expires_at: i64,
}

/// Which cached results a listing or a purge covers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CacheFilter {
    /// Only this scope.
    pub scope: Option<String>,
    /// Only this tool.
    pub tool: Option<String>,
    /// Only rows whose expiry has passed.
    pub expired_only: bool,
}

/// What a purge removed (or, as a dry run, would remove).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PurgeReport {
    /// Rows removed (or that would be).
    pub removed: u64,
    /// True when nothing was removed because it was a dry run.
    pub dry_run: bool,
}

/// One agent's tool cache: the results of its scope, and its counters. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ToolCache {
    store: Store,
    agent_id: i64,
    agent: String,
    scope: String,
}

/// Every scope's cached results, for listing and purging. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ToolResults {
    store: Store,
}

impl Store {
    /// The tool cache of `agent`: its scope's results and its counters.
    pub fn tool_cache(&self, agent: &AgentRecord) -> ToolCache {
        ToolCache {
            store: self.clone(),
            agent_id: agent.id,
            agent: agent.name.clone(),
            scope: agent.tool_scope.clone(),
        }
    }

    /// Every scope's cached tool results.
    pub fn tool_results(&self) -> ToolResults {
        ToolResults {
            store: self.clone(),
        }
    }
}

fn parse_result(text: &str) -> Result<Value> {
    serde_json::from_str(text).map_err(|e| Error::Sql {
        kind: crate::error::DbErrorKind::Other,
        statement: "read a cached tool result".to_string(),
        source: format!("a cached tool result is not valid JSON: {e}").into(),
    })
}

/// A tool call as [`ToolCache::call`] keys it.
#[derive(Debug, Clone)]
pub(crate) struct Call {
    pub key: CacheKey,
    tool: String,
    canonical: String,
}

/// Checks a tool name before it reaches the database.
/// An imported result as both engines store it, checked: its key, its canonical
/// params and its text.
pub(crate) fn restored_result(
    scope: &str,
    tool: &str,
    params: &Value,
    result: &Value,
) -> Result<(CacheKey, String, String)> {
    validate_tool(tool)?;
    let canonical = canonical_json(params)?;
    let result = result.to_string();
    if result.len() > MAX_CONTENT_BYTES {
        return Err(Error::invalid(format!(
            "a tool result is {} bytes; the most the cache holds is {MAX_CONTENT_BYTES}",
            result.len()
        )));
    }
    let key = CacheKey::from_canonical(scope, tool, &canonical);
    Ok((key, canonical, result))
}

pub(crate) fn validate_tool(tool: &str) -> Result<()> {
    if tool.is_empty() {
        return Err(Error::invalid("a tool name must not be empty"));
    }
    Ok(())
}

impl ToolCache {
    /// The store this cache lives in.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The cache scope (the agent's own name unless it shares another's).
    pub fn scope(&self) -> &str {
        &self.scope
    }

    /// The key of a call of `tool` with `params` in this scope.
    ///
    /// # Errors
    /// As [`canonical_json`].
    pub fn key(&self, tool: &str, params: &Value) -> Result<CacheKey> {
        CacheKey::new(&self.scope, tool, params)
    }

    /// The unexpired result of `tool` called with `params`, if any. A read: it never
    /// opens a write transaction.
    ///
    /// # Errors
    /// As [`canonical_json`]; database errors; a stored result that is not JSON.
    pub fn get(&self, tool: &str, params: &Value) -> Result<Option<Value>> {
        self.get_key(&self.key(tool, params)?)
    }

    /// The unexpired result stored under `key` (from [`ToolCache::key`]).
    ///
    /// # Errors
    /// Database errors; a stored result that is not JSON.
    pub fn get_key(&self, key: &CacheKey) -> Result<Option<Value>> {
        let now = self.store.now_micros();
        let text = self.store.engine().tool_get(key, now)?;
        text.as_deref().map(parse_result).transpose()
    }

    /// [`ToolCache::get_key`] only if it can run without waiting for a connection;
    /// `None` when it would have to wait (so an async caller can move to a blocking
    /// thread instead of blocking its worker).
    pub(crate) fn try_get_key(&self, key: &CacheKey) -> Option<Result<Option<Value>>> {
        let now = self.store.now_micros();
        let text = self.store.engine().tool_try_get(key, now)?;
        Some(text.and_then(|t| t.as_deref().map(parse_result).transpose()))
    }

    /// Stores `result` of `tool` called with `params` for `ttl`, under the key this
    /// cache derives from its scope, the tool and the params, replacing any row with
    /// that key, in one atomic upsert (two processes storing the same key at once both
    /// succeed). The same transaction removes up to 32 expired rows, oldest expiry
    /// first, so the table cannot grow without bound. Returns false, storing nothing,
    /// for a result over 1 MiB as JSON (too large to be worth caching).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an empty tool name or params that
    /// [`canonical_json`] refuses; database errors ([`Error::DiskFull`], ...), in
    /// which case nothing was stored.
    pub fn put(&self, tool: &str, params: &Value, result: &Value, ttl: Duration) -> Result<bool> {
        self.put_call(&self.call(tool, params)?, result, ttl, None)
    }

    /// A call of `tool` with `params` in this scope: its canonical params and the key
    /// derived from them, computed once for a lookup and the store that may follow.
    pub(crate) fn call(&self, tool: &str, params: &Value) -> Result<Call> {
        validate_tool(tool)?;
        let canonical = canonical_json(params)?;
        Ok(Call {
            key: CacheKey::from_canonical(&self.scope, tool, &canonical),
            tool: tool.to_string(),
            canonical,
        })
    }

    /// [`ToolCache::put`] of a call made by [`ToolCache::call`] (so the key is always
    /// the one derived from the params); with `lease_holder`, that holder's lease on
    /// the key is given up in the same write when the result is stored.
    pub(crate) fn put_call(
        &self,
        call: &Call,
        result: &Value,
        ttl: Duration,
        lease_holder: Option<&str>,
    ) -> Result<bool> {
        let result = result.to_string();
        if result.len() > MAX_CONTENT_BYTES {
            return Ok(false);
        }
        let now = self.store.now_micros();
        let expires = now.saturating_add(crate::clock::duration_micros(ttl));
        self.store.engine().tool_put(
            &call.key,
            &self.scope,
            &call.tool,
            &call.canonical,
            &result,
            now,
            expires,
            lease_holder,
        )?;
        Ok(true)
    }

    /// Adds counter deltas of this agent's tools, one upsert per tool, in one
    /// transaction: processes add, never overwrite.
    ///
    /// # Errors
    /// Database errors, in which case nothing was added.
    pub fn add_counts(&self, deltas: &[(String, ToolCounts)]) -> Result<()> {
        if deltas.is_empty() {
            return Ok(());
        }
        let rows: Vec<(i64, String, ToolCounts)> = deltas
            .iter()
            .map(|(tool, c)| (self.agent_id, tool.clone(), *c))
            .collect();
        self.store.engine().tool_add_counts(&rows)
    }

    /// The agent's tool stats, from its counters (what has been flushed) and the size
    /// of its scope's cache, read in one snapshot.
    ///
    /// # Errors
    /// Database errors.
    pub fn stats(&self) -> Result<ToolStats> {
        let (rows, size) = self
            .store
            .engine()
            .tool_counters(self.agent_id, &self.scope)?;
        Ok(tool_stats(&self.agent, &self.scope, rows, size))
    }
}

impl ToolResults {
    /// Removes every expired row. Returns how many were removed.
    ///
    /// # Errors
    /// Database errors; the batches before the error stay removed.
    pub fn remove_expired(&self) -> Result<u64> {
        self.purge(
            &CacheFilter {
                expired_only: true,
                ..CacheFilter::default()
            },
            false,
        )
        .map(|r| r.removed)
    }

    /// Removes the rows `filter` covers (a dry run counts them with the same
    /// predicate). Runs in batches, each a short transaction, so agents writing to the
    /// database wait at most one batch; an interrupted purge leaves whole batches and
    /// a rerun finishes it (its filter picks the same rows).
    ///
    /// # Errors
    /// Database errors.
    pub fn purge(&self, filter: &CacheFilter, dry_run: bool) -> Result<PurgeReport> {
        let engine = self.store.engine();
        let now = self.store.now_micros();
        if dry_run {
            return Ok(PurgeReport {
                removed: engine.tool_count(filter, now)?,
                dry_run: true,
            });
        }
        let done = batch::in_batches(engine.busy_timeout(), |rows| {
            Ok(batch::removed(
                engine.tool_purge_batch(filter, now, rows)?,
                rows,
            ))
        })?;
        Ok(PurgeReport {
            removed: done.rows,
            dry_run: false,
        })
    }

    /// Whether `tool` has counters or cached results (in any scope).
    ///
    /// # Errors
    /// Database errors.
    pub fn knows_tool(&self, tool: &str) -> Result<bool> {
        self.store.engine().tool_known(tool)
    }

    /// The cached results `filter` covers, newest first, at most `limit`.
    ///
    /// # Errors
    /// Database errors.
    pub fn list(&self, filter: &CacheFilter, limit: u64) -> Result<Vec<CachedToolResult>> {
        let now = self.store.now_micros();
        self.store.engine().tool_list(filter, now, limit)
    }
}

/// Builds the stats document from per-tool totals.
pub(crate) fn tool_stats(
    agent: &str,
    scope: &str,
    rows: impl IntoIterator<Item = (String, ToolCounts)>,
    cache_size: u64,
) -> ToolStats {
    let mut total = ToolCounts::default();
    let mut per_tool = BTreeMap::new();
    for (tool, c) in rows {
        total.add(&c);
        let avg_time = if c.total_calls > 0 {
            c.total_time / c.total_calls as f64
        } else {
            0.0
        };
        per_tool.insert(
            tool,
            ToolCallStats {
                total_calls: c.total_calls,
                cache_hits: c.cache_hits,
                errors: c.errors,
                total_time: c.total_time,
                avg_time,
            },
        );
    }
    ToolStats {
        agent: agent.to_string(),
        scope: scope.to_string(),
        total_tool_calls: total.total_calls,
        total_cache_hits: total.cache_hits,
        cache_hit_rate_pct: if total.total_calls > 0 {
            total.cache_hits as f64 * 100.0 / total.total_calls as f64
        } else {
            0.0
        },
        tool_stats: per_tool,
        cache_size,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn canonical_json_sorts_keys_at_every_depth_and_keeps_array_order() {
        let v = json!({"b": [3, {"z": 1, "a": "x y"}], "a": {"d": null, "c": 1.5}});
        assert_eq!(
            canonical_json(&v).unwrap(),
            r#"{"a":{"c":1.5,"d":null},"b":[3,{"a":"x y","z":1}]}"#
        );
    }

    #[test]
    fn keys_separate_scope_tool_and_params() {
        let p = json!({"q": 1});
        let key = |s: &str, t: &str, p: &Value| CacheKey::new(s, t, p).unwrap();
        let k = key("a", "bc", &p);
        assert_ne!(k, key("ab", "c", &p));
        assert_ne!(k, key("b", "bc", &p));
        assert_ne!(k, key("a", "bc", &json!({"q": 2})));
        assert_eq!(k, key("a", "bc", &json!({"q": 1})));
        assert_eq!(k.to_hex().len(), 64);
    }

    #[test]
    fn deep_and_huge_params_are_refused_without_recursing() {
        let mut deep = json!(1);
        for _ in 0..1_000 {
            deep = json!([deep]);
        }
        let err = canonical_json(&deep).unwrap_err();
        assert_eq!(
            err.to_string(),
            "tool params are nested deeper than 128 levels"
        );
        let mut ok = json!(1);
        for _ in 0..MAX_PARAMS_DEPTH {
            ok = json!([ok]);
        }
        assert!(canonical_json(&ok).is_ok());
        let huge = json!({ "q": "x".repeat(2 << 20) });
        assert!(
            canonical_json(&huge)
                .unwrap_err()
                .to_string()
                .contains("the limit is 1048576")
        );
    }
}
