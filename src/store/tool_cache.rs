//! The tool-result cache (`tool_cache`) and the tool call counters (`tool_counters`):
//! cache keys, lookups that never return an expired row, atomic upserts, expiry in
//! bounded batches over the expiry index, purges, listings and the per-agent stats.
//! The async execution layer (single-flight, parallel calls, batched counters) is in
//! `agent::tools`; this module is plain synchronous SQL.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, OptionalExtension, params, params_from_iter};
use serde::Serialize;
use serde_json::Value;

use super::{AgentRecord, BatchSizer, MAX_CONTENT_BYTES, Store};
use crate::clock::serialize_micros;
use crate::error::{Error, Result, SqlContext};

/// Bumped whenever the bytes hashed into a key change, so old rows can never be
/// mistaken for new ones (they simply stop matching and expire).
const KEY_FORMAT: &[u8] = b"agentstore tool key v1\0";

/// The default time to live of a cached result: one hour, as the original.
pub const DEFAULT_TOOL_TTL: Duration = Duration::from_secs(3600);

/// Expired rows removed, at most, by each store of a new result: enough to keep up
/// with any insert rate (each insert adds one row), small enough to be invisible in
/// the insert's latency.
const EXPIRE_BATCH_ON_WRITE: i64 = 32;

/// Rows removed per transaction by an on-demand purge, so a large purge never holds
/// the write lock for long while agents keep writing.
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
fn hex(bytes: &[u8]) -> String {
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

impl CacheFilter {
    /// The WHERE clause (fixed fragments; values bound) and its values.
    fn clause(&self, now: i64) -> (String, Vec<SqlValue>) {
        let mut terms = Vec::new();
        let mut values = Vec::new();
        if let Some(scope) = &self.scope {
            values.push(SqlValue::Text(scope.clone()));
            terms.push(format!("scope = ?{}", values.len()));
        }
        if let Some(tool) = &self.tool {
            values.push(SqlValue::Text(tool.clone()));
            terms.push(format!("tool = ?{}", values.len()));
        }
        if self.expired_only {
            values.push(SqlValue::Integer(now));
            terms.push(format!("expires_at <= ?{}", values.len()));
        }
        let clause = if terms.is_empty() {
            "1".to_string()
        } else {
            terms.join(" AND ")
        };
        (clause, values)
    }
}

/// The tool cache and counters of one store. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ToolCache {
    store: Store,
}

impl Store {
    /// The tool-result cache and tool counters in this file.
    pub fn tool_cache(&self) -> ToolCache {
        ToolCache {
            store: self.clone(),
        }
    }
}

const GET: &str = "SELECT result FROM tool_cache WHERE key = ?1 AND expires_at > ?2";

fn get_on(c: &Connection, key: &CacheKey, now: i64) -> Result<Option<String>> {
    c.prepare_cached(GET)
        .and_then(|mut s| {
            s.query_row(params![&key.0[..], now], |r| r.get(0))
                .optional()
        })
        .sql(GET)
}

fn parse_result(text: &str) -> Result<Value> {
    serde_json::from_str(text).map_err(|e| Error::Sql {
        statement: GET.to_string(),
        source: format!("a cached tool result is not valid JSON: {e}").into(),
    })
}

impl ToolCache {
    /// The store this cache lives in.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The unexpired result stored under `key`, if any. A read: it never opens a write
    /// transaction.
    ///
    /// # Errors
    /// SQLite errors; a stored result that is not JSON.
    pub fn get(&self, key: &CacheKey) -> Result<Option<Value>> {
        let now = self.store.now_micros();
        let text = self.store.read(|c| get_on(c, key, now))?;
        text.as_deref().map(parse_result).transpose()
    }

    /// [`ToolCache::get`] only if a pooled connection is idle right now; `None` when
    /// it would have to wait for one (so an async caller can move to a blocking
    /// thread instead of blocking its worker).
    ///
    /// # Errors
    /// As [`ToolCache::get`].
    pub fn try_get(&self, key: &CacheKey) -> Option<Result<Option<Value>>> {
        let now = self.store.now_micros();
        let text = self.store.try_read(|c| get_on(c, key, now))?;
        Some(text.and_then(|t| t.as_deref().map(parse_result).transpose()))
    }

    /// Stores `result` under `key` for `ttl`, replacing any row with that key, in one
    /// atomic upsert (two processes storing the same key at once both succeed). The
    /// same transaction removes up to 32 expired rows, oldest expiry first, so the
    /// table cannot grow without bound. Returns false, storing nothing, for a result
    /// over 1 MiB as JSON (too large to be worth caching).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an empty tool name; SQLite errors
    /// ([`Error::DiskFull`], ...), in which case nothing was stored.
    pub fn put(
        &self,
        key: &CacheKey,
        scope: &str,
        tool: &str,
        canonical_params: &str,
        result: &Value,
        ttl: Duration,
    ) -> Result<bool> {
        if tool.is_empty() {
            return Err(Error::invalid("a tool name must not be empty"));
        }
        const UPSERT: &str = "INSERT INTO tool_cache \
             (key, scope, tool, params, result, created_at, expires_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) \
             ON CONFLICT (key) DO UPDATE SET result = excluded.result, \
             created_at = excluded.created_at, expires_at = excluded.expires_at";
        let result = result.to_string();
        if result.len() > MAX_CONTENT_BYTES {
            return Ok(false);
        }
        let now = self.store.now_micros();
        let expires = now.saturating_add(duration_micros(ttl));
        self.store.write(|tx| {
            tx.prepare_cached(UPSERT)
                .and_then(|mut s| {
                    s.execute(params![
                        &key.0[..],
                        scope,
                        tool,
                        canonical_params,
                        result,
                        now,
                        expires
                    ])
                })
                .sql(UPSERT)?;
            expire_batch(tx, now, EXPIRE_BATCH_ON_WRITE)?;
            Ok(true)
        })
    }

    /// Removes every expired row, in batches of 2,000 per transaction. Returns how
    /// many were removed.
    ///
    /// # Errors
    /// SQLite errors; the batches before the error stay removed.
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
    /// predicate). Runs in batches of 2,000 rows per transaction, so agents writing
    /// to the file wait at most one batch; an interrupted purge leaves whole batches
    /// and a rerun finishes it.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn purge(&self, filter: &CacheFilter, dry_run: bool) -> Result<PurgeReport> {
        let now = self.store.now_micros();
        let (clause, mut values) = filter.clause(now);
        if dry_run {
            let sql = format!("SELECT count(*) FROM tool_cache WHERE {clause}");
            let n: i64 = self.store.read(|c| {
                c.query_row(&sql, params_from_iter(values.iter()), |r| r.get(0))
                    .sql(&sql)
            })?;
            return Ok(PurgeReport {
                removed: n as u64,
                dry_run: true,
            });
        }
        // Batches: each is all-or-nothing, none holds the write lock long (see
        // BatchSizer), and a purge killed between two batches is finished by running it
        // again (its filter picks the same rows).
        values.push(SqlValue::Integer(0));
        let sql = format!(
            "DELETE FROM tool_cache WHERE key IN \
             (SELECT key FROM tool_cache WHERE {clause} LIMIT ?{})",
            values.len()
        );
        let mut sizer = BatchSizer::new(&self.store);
        let mut removed = 0u64;
        loop {
            let rows = sizer.rows();
            *values.last_mut().expect("the limit") = SqlValue::Integer(rows);
            let started = Instant::now();
            let n = self.store.write_bulk(|tx| {
                tx.prepare_cached(&sql)
                    .and_then(|mut s| s.execute(params_from_iter(values.iter())))
                    .sql(&sql)
            })?;
            removed += n as u64;
            if (n as i64) < rows {
                return Ok(PurgeReport {
                    removed,
                    dry_run: false,
                });
            }
            sizer.next(started.elapsed());
        }
    }

    /// Whether `tool` has counters or cached results (in any scope).
    ///
    /// # Errors
    /// SQLite errors.
    pub fn knows_tool(&self, tool: &str) -> Result<bool> {
        const KNOWN: &str = "SELECT EXISTS (SELECT 1 FROM tool_counters WHERE tool = ?1)
                                 OR EXISTS (SELECT 1 FROM tool_cache WHERE tool = ?1)";
        self.store
            .read(|c| c.query_row(KNOWN, [tool], |r| r.get(0)).sql(KNOWN))
    }

    /// The cached results `filter` covers, newest first, at most `limit`.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn list(&self, filter: &CacheFilter, limit: u64) -> Result<Vec<CachedToolResult>> {
        let now = self.store.now_micros();
        let (clause, mut values) = filter.clause(now);
        values.push(SqlValue::Integer(i64::try_from(limit).unwrap_or(i64::MAX)));
        let sql = format!(
            "SELECT key, scope, tool, params, result, created_at, expires_at FROM tool_cache \
             WHERE {clause} ORDER BY created_at DESC, key LIMIT ?{}",
            values.len()
        );
        self.store.read(|c| {
            let mut stmt = c.prepare(&sql).sql(&sql)?;
            let rows = stmt
                .query_map(params_from_iter(values.iter()), |r| {
                    let key: Vec<u8> = r.get(0)?;
                    let params: String = r.get(3)?;
                    let result: String = r.get(4)?;
                    Ok(CachedToolResult {
                        key: hex(&key),
                        scope: r.get(1)?,
                        tool: r.get(2)?,
                        params: serde_json::from_str(&params).unwrap_or(Value::String(params)),
                        result: serde_json::from_str(&result).unwrap_or(Value::String(result)),
                        created_at: r.get(5)?,
                        expires_at: r.get(6)?,
                    })
                })
                .sql(&sql)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().sql(&sql)
        })
    }

    /// Adds counter deltas, one upsert per (agent, tool), in one transaction.
    ///
    /// # Errors
    /// SQLite errors, in which case nothing was added.
    pub fn add_counts(&self, deltas: &[(i64, String, ToolCounts)]) -> Result<()> {
        if deltas.is_empty() {
            return Ok(());
        }
        self.store.write(|tx| add_counts_on(tx, deltas))
    }

    /// An agent's tool stats, from `tool_counters` (what has been flushed) and the
    /// size of its scope's cache, read in one snapshot.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn stats(&self, agent: &AgentRecord) -> Result<ToolStats> {
        const COUNTERS: &str = "SELECT tool, total_calls, cache_hits, errors, total_time \
             FROM tool_counters WHERE agent_id = ?1 ORDER BY tool";
        const SIZE: &str = "SELECT count(*) FROM tool_cache WHERE scope = ?1";
        let (rows, size) = self.store.snapshot(|c| {
            let mut stmt = c.prepare_cached(COUNTERS).sql(COUNTERS)?;
            let rows = stmt
                .query_map([agent.id], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        ToolCounts {
                            total_calls: r.get(1)?,
                            cache_hits: r.get(2)?,
                            errors: r.get(3)?,
                            total_time: r.get(4)?,
                        },
                    ))
                })
                .sql(COUNTERS)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .sql(COUNTERS)?;
            let size: i64 = c
                .prepare_cached(SIZE)
                .and_then(|mut s| s.query_row([&agent.tool_scope], |r| r.get(0)))
                .sql(SIZE)?;
            Ok((rows, size))
        })?;
        Ok(tool_stats(agent, rows, size as u64))
    }
}

/// Builds the stats document from per-tool totals.
pub(crate) fn tool_stats(
    agent: &AgentRecord,
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
        agent: agent.name.clone(),
        scope: agent.tool_scope.clone(),
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

/// Removes up to `limit` expired rows, the oldest expiry first: one DELETE over the
/// expiry index, run only when the earliest expiry has passed (a one-row index
/// probe; the DELETE itself costs ~20 µs even when it finds nothing, which was a
/// third of a miss+store).
fn expire_batch(tx: &Connection, now: i64, limit: i64) -> Result<usize> {
    const EARLIEST: &str = "SELECT min(expires_at) FROM tool_cache";
    const EXPIRE: &str = "DELETE FROM tool_cache WHERE key IN \
         (SELECT key FROM tool_cache WHERE expires_at <= ?1 ORDER BY expires_at LIMIT ?2)";
    let earliest: Option<i64> = tx
        .prepare_cached(EARLIEST)
        .and_then(|mut s| s.query_row([], |r| r.get(0)))
        .sql(EARLIEST)?;
    if earliest.is_none_or(|e| e > now) {
        return Ok(0);
    }
    tx.prepare_cached(EXPIRE)
        .and_then(|mut s| s.execute(params![now, limit]))
        .sql(EXPIRE)
}

fn duration_micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

/// Stores one imported result in the caller's transaction (see `store::transfer`),
/// replacing a row with the same key (recomputed from the canonical params).
pub(crate) fn restore_result(
    tx: &Connection,
    scope: &str,
    tool: &str,
    params: &Value,
    result: &Value,
    created_at: i64,
    expires_at: i64,
) -> Result<()> {
    if tool.is_empty() {
        return Err(Error::invalid("a tool name must not be empty"));
    }
    let canonical = canonical_json(params)?;
    let result = result.to_string();
    if result.len() > MAX_CONTENT_BYTES {
        return Err(Error::invalid(format!(
            "a tool result is {} bytes; the most the cache holds is {MAX_CONTENT_BYTES}",
            result.len()
        )));
    }
    let key = CacheKey::from_canonical(scope, tool, &canonical);
    const UPSERT: &str = "INSERT OR REPLACE INTO tool_cache \
         (key, scope, tool, params, result, created_at, expires_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";
    tx.prepare_cached(UPSERT)
        .and_then(|mut s| {
            s.execute(params![
                &key.0[..],
                scope,
                tool,
                canonical,
                result,
                created_at,
                expires_at
            ])
        })
        .sql(UPSERT)?;
    Ok(())
}

/// Adds imported counters to an agent's, in the caller's transaction.
pub(crate) fn restore_counts(
    tx: &Connection,
    agent_id: i64,
    tool: &str,
    counts: &ToolCounts,
) -> Result<()> {
    if !(counts.total_time.is_finite() && counts.total_time >= 0.0) {
        return Err(Error::invalid(format!(
            "total_time must be a finite number of seconds >= 0, got {}",
            counts.total_time
        )));
    }
    for v in [counts.total_calls, counts.cache_hits, counts.errors] {
        if i64::try_from(v).is_err() {
            return Err(Error::invalid(format!("a counter of {v} is too large")));
        }
    }
    add_counts_on(tx, &[(agent_id, tool.to_string(), *counts)])
}

/// Adds counter deltas (each within i64), one upsert per (agent, tool), in the
/// caller's transaction: processes add, never overwrite.
fn add_counts_on(tx: &Connection, deltas: &[(i64, String, ToolCounts)]) -> Result<()> {
    const UPSERT: &str = "INSERT INTO tool_counters \
         (agent_id, tool, total_calls, cache_hits, errors, total_time) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
         ON CONFLICT (agent_id, tool) DO UPDATE SET \
         total_calls = total_calls + excluded.total_calls, \
         cache_hits = cache_hits + excluded.cache_hits, \
         errors = errors + excluded.errors, \
         total_time = total_time + excluded.total_time";
    let mut stmt = tx.prepare_cached(UPSERT).sql(UPSERT)?;
    for (agent_id, tool, d) in deltas {
        stmt.execute(params![
            agent_id,
            tool,
            d.total_calls as i64,
            d.cache_hits as i64,
            d.errors as i64,
            d.total_time
        ])
        .sql(UPSERT)?;
    }
    Ok(())
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
