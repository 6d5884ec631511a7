//! The tool cache on SQLite: `tool_cache` (lookups that never return an expired row,
//! atomic upserts, expiry in bounded batches over the expiry index, purges, listings)
//! and `tool_counters` (per agent and tool, added to, never overwritten).

use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, params, params_from_iter};
use serde_json::Value;

use super::Sqlite;
use super::stmt::{SqlContext, exec, opt_row, row, rows};
use crate::error::Result;
use crate::store::engine::ToolOps;
use crate::store::tool_cache::{hex, restored_result};
use crate::store::{CacheFilter, CacheKey, CachedToolResult, ToolCounts};

/// Expired rows removed, at most, by each store of a new result: enough to keep up
/// with any insert rate (each insert adds one row), small enough to be invisible in
/// the insert's latency.
const EXPIRE_BATCH_ON_WRITE: i64 = 32;

/// The WHERE clause of a filter (fixed fragments; values bound) and its values.
fn clause(filter: &CacheFilter, now: i64) -> (String, Vec<SqlValue>) {
    let mut terms = Vec::new();
    let mut values = Vec::new();
    if let Some(scope) = &filter.scope {
        values.push(SqlValue::Text(scope.clone()));
        terms.push(format!("scope = ?{}", values.len()));
    }
    if let Some(tool) = &filter.tool {
        values.push(SqlValue::Text(tool.clone()));
        terms.push(format!("tool = ?{}", values.len()));
    }
    if filter.expired_only {
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

const GET: &str = "SELECT result FROM tool_cache WHERE key = ?1 AND expires_at > ?2";

fn get_on(c: &Connection, key: &CacheKey, now: i64) -> Result<Option<String>> {
    opt_row(c, GET, params![&key.0[..], now], |r| r.get(0))
}

/// The one decoder of a [`CachedToolResult`], from `key, scope, tool, params,
/// result, created_at, expires_at`.
pub(super) fn result_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<CachedToolResult> {
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
}

/// The one decoder of [`ToolCounts`], from `total_calls, cache_hits, errors,
/// total_time` starting at column `first`.
pub(super) fn counts_from_row(r: &rusqlite::Row<'_>, first: usize) -> rusqlite::Result<ToolCounts> {
    Ok(ToolCounts {
        total_calls: r.get(first)?,
        cache_hits: r.get(first + 1)?,
        errors: r.get(first + 2)?,
        total_time: r.get(first + 3)?,
    })
}

impl ToolOps for Sqlite {
    fn tool_get(&self, key: &CacheKey, now: i64) -> Result<Option<String>> {
        self.read(|c| get_on(c, key, now))
    }

    fn tool_try_get(&self, key: &CacheKey, now: i64) -> Option<Result<Option<String>>> {
        self.try_read(|c| get_on(c, key, now))
    }

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
    ) -> Result<()> {
        self.write(|tx| {
            upsert(
                tx,
                key,
                scope,
                tool,
                canonical_params,
                result,
                now,
                expires_at,
            )?;
            expire_batch(tx, now, EXPIRE_BATCH_ON_WRITE)?;
            if let Some(holder) = lease_holder {
                super::lease::release_on(tx, &key.0, holder)?;
            }
            Ok(())
        })
    }

    fn tool_count(&self, filter: &CacheFilter, now: i64) -> Result<u64> {
        let (clause, values) = clause(filter, now);
        let sql = format!("SELECT count(*) FROM tool_cache WHERE {clause}");
        let n: i64 = self.read(|c| row(c, &sql, params_from_iter(values.iter()), |r| r.get(0)))?;
        Ok(n as u64)
    }

    fn tool_purge_batch(&self, filter: &CacheFilter, now: i64, rows: i64) -> Result<u64> {
        let (clause, mut values) = clause(filter, now);
        values.push(SqlValue::Integer(rows));
        let sql = format!(
            "DELETE FROM tool_cache WHERE key IN \
             (SELECT key FROM tool_cache WHERE {clause} LIMIT ?{})",
            values.len()
        );
        let n = self.write_bulk(|tx| exec(tx, &sql, params_from_iter(values.iter())))?;
        Ok(n as u64)
    }

    fn tool_known(&self, tool: &str) -> Result<bool> {
        const KNOWN: &str = "SELECT EXISTS (SELECT 1 FROM tool_counters WHERE tool = ?1)
                                 OR EXISTS (SELECT 1 FROM tool_cache WHERE tool = ?1)";
        self.read(|c| row(c, KNOWN, [tool], |r| r.get(0)))
    }

    fn tool_list(
        &self,
        filter: &CacheFilter,
        now: i64,
        limit: u64,
    ) -> Result<Vec<CachedToolResult>> {
        let (clause, mut values) = clause(filter, now);
        values.push(SqlValue::Integer(i64::try_from(limit).unwrap_or(i64::MAX)));
        let sql = format!(
            "SELECT key, scope, tool, params, result, created_at, expires_at FROM tool_cache \
             WHERE {clause} ORDER BY created_at DESC, key LIMIT ?{}",
            values.len()
        );
        self.read(|c| rows(c, &sql, params_from_iter(values.iter()), result_from_row))
    }

    fn tool_add_counts(&self, deltas: &[(i64, String, ToolCounts)]) -> Result<()> {
        self.write(|tx| add_counts_on(tx, deltas))
    }

    fn tool_counters(
        &self,
        agent_id: i64,
        scope: &str,
    ) -> Result<(Vec<(String, ToolCounts)>, u64)> {
        const COUNTERS: &str = "SELECT tool, total_calls, cache_hits, errors, total_time \
             FROM tool_counters WHERE agent_id = ?1 ORDER BY tool";
        const SIZE: &str = "SELECT count(*) FROM tool_cache WHERE scope = ?1";
        self.snapshot(|c| {
            let counters = rows(c, COUNTERS, [agent_id], |r| {
                Ok((r.get::<_, String>(0)?, counts_from_row(r, 1)?))
            })?;
            let size: i64 = row(c, SIZE, [scope], |r| r.get(0))?;
            Ok((counters, size as u64))
        })
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
    let earliest: Option<i64> = row(tx, EARLIEST, [], |r| r.get(0))?;
    if earliest.is_none_or(|e| e > now) {
        return Ok(0);
    }
    exec(tx, EXPIRE, params![now, limit])
}

/// Stores a result under `key`, replacing the row with that key: one atomic upsert
/// (two processes storing the same key at once both succeed).
#[allow(clippy::too_many_arguments)]
fn upsert(
    tx: &Connection,
    key: &CacheKey,
    scope: &str,
    tool: &str,
    canonical_params: &str,
    result: &str,
    created_at: i64,
    expires_at: i64,
) -> Result<()> {
    const UPSERT: &str = "INSERT INTO tool_cache \
         (key, scope, tool, params, result, created_at, expires_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) \
         ON CONFLICT (key) DO UPDATE SET result = excluded.result, \
         created_at = excluded.created_at, expires_at = excluded.expires_at";
    exec(
        tx,
        UPSERT,
        params![
            &key.0[..],
            scope,
            tool,
            canonical_params,
            result,
            created_at,
            expires_at
        ],
    )?;
    Ok(())
}

/// Stores one imported result in the caller's transaction (see `store::transfer`),
/// replacing a row with the same key (recomputed from the canonical params).
pub(super) fn restore_result(
    tx: &Connection,
    scope: &str,
    tool: &str,
    params: &Value,
    result: &Value,
    created_at: i64,
    expires_at: i64,
) -> Result<()> {
    let (key, canonical, result) = restored_result(scope, tool, params, result)?;
    upsert(
        tx, &key, scope, tool, &canonical, &result, created_at, expires_at,
    )?;
    Ok(())
}

/// Adds imported counters to an agent's, in the caller's transaction.
pub(super) fn restore_counts(
    tx: &Connection,
    agent_id: i64,
    tool: &str,
    counts: &ToolCounts,
) -> Result<()> {
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
