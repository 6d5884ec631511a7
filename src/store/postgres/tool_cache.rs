//! The tool cache on PostgreSQL, as on SQLite: lookups that never return an expired
//! row, atomic upserts (`ON CONFLICT`), expiry in bounded batches over the expiry
//! index, purges and listings; per-agent counters added to, never overwritten.

use postgres::Client;
use postgres::types::{ToSql, Type};
use serde_json::Value;

use super::{Postgres, args, exec, get, opt_row, refuse_nul, row, rows};
use crate::error::Result;
use crate::store::engine::ToolOps;
use crate::store::tool_cache::hex;
use crate::store::{CacheFilter, CacheKey, CachedToolResult, ToolCounts};

/// Expired rows removed, at most, by each store of a new result (as on SQLite).
const EXPIRE_BATCH_ON_WRITE: i64 = 32;

/// Parameters built at run time, each with its type.
type Owned = Vec<(Box<dyn ToSql + Sync>, Type)>;

/// A filter's WHERE clause (fixed fragments, values bound from `$first` on) and its
/// values.
fn clause(filter: &CacheFilter, now: i64) -> (String, Owned) {
    let mut terms = Vec::new();
    let mut values: Owned = Vec::new();
    if let Some(scope) = &filter.scope {
        values.push((Box::new(scope.clone()), Type::TEXT));
        terms.push(format!("scope = ${}", values.len()));
    }
    if let Some(tool) = &filter.tool {
        values.push((Box::new(tool.clone()), Type::TEXT));
        terms.push(format!("tool = ${}", values.len()));
    }
    if filter.expired_only {
        values.push((Box::new(now), Type::INT8));
        terms.push(format!("expires_at <= ${}", values.len()));
    }
    let clause = if terms.is_empty() {
        "true".to_string()
    } else {
        terms.join(" AND ")
    };
    (clause, values)
}

/// The values of [`clause`] as `query_typed` takes them.
fn bound(values: &[(Box<dyn ToSql + Sync>, Type)]) -> Vec<(&(dyn ToSql + Sync), Type)> {
    values
        .iter()
        .map(|(v, t)| (v.as_ref(), t.clone()))
        .collect()
}

const GET: &str = "SELECT result FROM tool_cache WHERE key = $1 AND expires_at > $2";

fn get_on(c: &mut Client, key: &CacheKey, now: i64) -> Result<Option<String>> {
    let key: &[u8] = &key.0;
    opt_row(c, GET, args![key, now])?
        .map(|r| get(&r, 0, GET))
        .transpose()
}

/// Stores a result under `key`, replacing the row with that key: one atomic upsert.
#[allow(clippy::too_many_arguments)]
pub(super) fn upsert(
    c: &mut Client,
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
         VALUES ($1, $2, $3, $4, $5, $6, $7) \
         ON CONFLICT (key) DO UPDATE SET result = excluded.result, \
         created_at = excluded.created_at, expires_at = excluded.expires_at";
    let key: &[u8] = &key.0;
    exec(
        c,
        UPSERT,
        args![
            key,
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

/// Adds counter deltas, one upsert per (agent, tool): processes add, never overwrite.
pub(super) fn add_counts_on(c: &mut Client, deltas: &[(i64, String, ToolCounts)]) -> Result<()> {
    const UPSERT: &str = "INSERT INTO tool_counters AS t \
         (agent_id, tool, total_calls, cache_hits, errors, total_time) \
         SELECT * FROM unnest($1::int8[], $2::text[], $3::int8[], $4::int8[], $5::int8[], $6::float8[]) \
         ON CONFLICT (agent_id, tool) DO UPDATE SET \
         total_calls = t.total_calls + excluded.total_calls, \
         cache_hits = t.cache_hits + excluded.cache_hits, \
         errors = t.errors + excluded.errors, \
         total_time = t.total_time + excluded.total_time";
    if deltas.is_empty() {
        return Ok(());
    }
    // One row per (agent, tool): an upsert may not touch a row twice.
    let mut merged: Vec<(i64, String, ToolCounts)> = Vec::new();
    for (agent, tool, d) in deltas {
        match merged.iter_mut().find(|m| m.0 == *agent && m.1 == *tool) {
            Some(m) => {
                m.2.total_calls += d.total_calls;
                m.2.cache_hits += d.cache_hits;
                m.2.errors += d.errors;
                m.2.total_time += d.total_time;
            }
            None => merged.push((*agent, tool.clone(), *d)),
        }
    }
    let agents: Vec<i64> = merged.iter().map(|m| m.0).collect();
    let tools: Vec<&str> = merged.iter().map(|m| m.1.as_str()).collect();
    let calls: Vec<i64> = merged.iter().map(|m| m.2.total_calls as i64).collect();
    let hits: Vec<i64> = merged.iter().map(|m| m.2.cache_hits as i64).collect();
    let errors: Vec<i64> = merged.iter().map(|m| m.2.errors as i64).collect();
    let time: Vec<f64> = merged.iter().map(|m| m.2.total_time).collect();
    super::exec(
        c,
        UPSERT,
        &[
            (&agents, Type::INT8_ARRAY),
            (&tools, Type::TEXT_ARRAY),
            (&calls, Type::INT8_ARRAY),
            (&hits, Type::INT8_ARRAY),
            (&errors, Type::INT8_ARRAY),
            (&time, Type::FLOAT8_ARRAY),
        ],
    )?;
    Ok(())
}

/// The one decoder of a [`CachedToolResult`], from `key, scope, tool, params, result,
/// created_at, expires_at`.
pub(super) fn result_from_row(r: &postgres::Row, sql: &str) -> Result<CachedToolResult> {
    let key: Vec<u8> = get(r, 0, sql)?;
    let params: String = get(r, 3, sql)?;
    let result: String = get(r, 4, sql)?;
    Ok(CachedToolResult {
        key: hex(&key),
        scope: get(r, 1, sql)?,
        tool: get(r, 2, sql)?,
        params: serde_json::from_str(&params).unwrap_or(Value::String(params)),
        result: serde_json::from_str(&result).unwrap_or(Value::String(result)),
        created_at: get(r, 5, sql)?,
        expires_at: get(r, 6, sql)?,
    })
}

fn counts(r: &postgres::Row, first: usize, sql: &str) -> Result<ToolCounts> {
    Ok(ToolCounts {
        total_calls: get::<i64>(r, first, sql)?.max(0) as u64,
        cache_hits: get::<i64>(r, first + 1, sql)?.max(0) as u64,
        errors: get::<i64>(r, first + 2, sql)?.max(0) as u64,
        total_time: get(r, first + 3, sql)?,
    })
}

impl ToolOps for Postgres {
    fn tool_get(&self, key: &CacheKey, now: i64) -> Result<Option<String>> {
        self.read_one(|c| get_on(c, key, now))
    }

    fn tool_try_get(&self, _key: &CacheKey, _now: i64) -> Option<Result<Option<String>>> {
        // A server round trip is never "without waiting": the caller goes off-thread.
        None
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
        for (what, text) in [
            ("the scope", scope),
            ("the tool name", tool),
            ("the params", canonical_params),
            ("the result", result),
        ] {
            refuse_nul(what, text)?;
        }
        // One autocommit statement (the schema's `tool_cache_put`): a bounded batch of
        // other expired rows removed over the expiry index, the upsert, and the
        // holder's lease on the key given up.
        const PUT: &str = "SELECT tool_cache_put($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)";
        let timeout = self.lock_timeout_ms();
        let key: &[u8] = &key.0;
        self.write_one(|c| {
            exec(
                c,
                PUT,
                args![
                    key,
                    scope,
                    tool,
                    canonical_params,
                    result,
                    now,
                    expires_at,
                    timeout,
                    EXPIRE_BATCH_ON_WRITE,
                    lease_holder
                ],
            )?;
            Ok(())
        })
    }

    fn tool_count(&self, filter: &CacheFilter, now: i64) -> Result<u64> {
        let (clause, values) = clause(filter, now);
        let sql = format!("SELECT count(*) FROM tool_cache WHERE {clause}");
        let n: i64 = self.read(|c| get(&row(c, &sql, &bound(&values))?, 0, &sql))?;
        Ok(n as u64)
    }

    fn tool_purge_batch(&self, filter: &CacheFilter, now: i64, rows: i64) -> Result<u64> {
        let (clause, mut values) = clause(filter, now);
        values.push((Box::new(rows), Type::INT8));
        let sql = format!(
            "DELETE FROM tool_cache WHERE key IN \
             (SELECT key FROM tool_cache WHERE {clause} LIMIT ${} FOR UPDATE SKIP LOCKED)",
            values.len()
        );
        self.write(|c| exec(c, &sql, &bound(&values)))
    }

    fn tool_known(&self, tool: &str) -> Result<bool> {
        const KNOWN: &str = "SELECT EXISTS (SELECT 1 FROM tool_counters WHERE tool = $1)
                                 OR EXISTS (SELECT 1 FROM tool_cache WHERE tool = $1)";
        self.read_one(|c| get(&row(c, KNOWN, args![tool])?, 0, KNOWN))
    }

    fn tool_list(
        &self,
        filter: &CacheFilter,
        now: i64,
        limit: u64,
    ) -> Result<Vec<CachedToolResult>> {
        let (clause, mut values) = clause(filter, now);
        values.push((
            Box::new(i64::try_from(limit).unwrap_or(i64::MAX)),
            Type::INT8,
        ));
        let sql = format!(
            "SELECT key, scope, tool, params, result, created_at, expires_at FROM tool_cache \
             WHERE {clause} ORDER BY created_at DESC, key LIMIT ${}",
            values.len()
        );
        self.read(|c| {
            rows(c, &sql, &bound(&values))?
                .iter()
                .map(|r| result_from_row(r, &sql))
                .collect()
        })
    }

    fn tool_add_counts(&self, deltas: &[(i64, String, ToolCounts)]) -> Result<()> {
        for (_, tool, _) in deltas {
            refuse_nul("the tool name", tool)?;
        }
        self.write(|c| add_counts_on(c, deltas))
    }

    fn tool_counters(
        &self,
        agent_id: i64,
        scope: &str,
    ) -> Result<(Vec<(String, ToolCounts)>, u64)> {
        const COUNTERS: &str = "SELECT tool, total_calls, cache_hits, errors, total_time \
             FROM tool_counters WHERE agent_id = $1 ORDER BY tool COLLATE \"C\"";
        const SIZE: &str = "SELECT count(*) FROM tool_cache WHERE scope = $1";
        self.read(|c| {
            let counters = rows(c, COUNTERS, args![agent_id])?
                .iter()
                .map(|r| Ok((get::<String>(r, 0, COUNTERS)?, counts(r, 1, COUNTERS)?)))
                .collect::<Result<Vec<_>>>()?;
            let size: i64 = get(&row(c, SIZE, args![scope])?, 0, SIZE)?;
            Ok((counters, size as u64))
        })
    }
}
