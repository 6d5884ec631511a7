//! Agents on PostgreSQL: one row each in `agents`, holding the agent's settings, and
//! the counters the statement-level triggers keep in `memory_counters`.

use postgres::{Client, Row};

use super::{Postgres, args, exec, get, opt_row, refuse_nul, rows};
use crate::error::{Error, Result};
use crate::store::engine::AgentOps;
use crate::store::{AgentRecord, MemorySettings};

/// The columns of an [`AgentRecord`], from `agents a JOIN memory_counters c`.
const AGENT_COLUMNS: &str = "a.id, a.name, a.created_at, c.message_count, c.entries, c.bytes, \
     a.max_memory_mb, a.max_entries, a.cleanup_interval, a.keep_fraction, \
     a.importance_threshold, a.importance_weight, a.recency_weight, a.relevance_weight, \
     a.low_water, coalesce(a.tool_scope, a.name) AS scope, a.target_response_time \
     FROM agents a JOIN memory_counters c ON c.agent_id = a.id";

/// The one decoder of an [`AgentRecord`], from [`AGENT_COLUMNS`].
fn agent_from_row(r: &Row, sql: &str) -> Result<AgentRecord> {
    let count = |i: usize| -> Result<u64> { Ok(get::<i64>(r, i, sql)?.max(0) as u64) };
    Ok(AgentRecord {
        id: get(r, 0, sql)?,
        name: get(r, 1, sql)?,
        created_at: get(r, 2, sql)?,
        message_count: count(3)?,
        memory_entries: count(4)?,
        memory_bytes: count(5)?,
        settings: MemorySettings {
            max_memory_mb: get(r, 6, sql)?,
            max_entries: count(7)?,
            cleanup_interval: count(8)?,
            keep_fraction: get(r, 9, sql)?,
            importance_threshold: get(r, 10, sql)?,
            importance_weight: get(r, 11, sql)?,
            recency_weight: get(r, 12, sql)?,
            relevance_weight: get(r, 13, sql)?,
            low_water: get(r, 14, sql)?,
        },
        tool_scope: get(r, 15, sql)?,
        target_response_time: get(r, 16, sql)?,
    })
}

/// The agent called `name`, on `c` (in the caller's transaction).
pub(super) fn find_agent(c: &mut Client, name: &str) -> Result<Option<AgentRecord>> {
    let sql = format!("SELECT {AGENT_COLUMNS} WHERE a.name = $1");
    opt_row(c, &sql, args![name])?
        .map(|r| agent_from_row(&r, &sql))
        .transpose()
}

impl AgentOps for Postgres {
    fn find_agent(&self, name: &str) -> Result<Option<AgentRecord>> {
        refuse_nul("the agent name", name)?;
        self.read_one(|c| find_agent(c, name))
    }

    fn create_agent(&self, name: &str, now: i64) -> Result<AgentRecord> {
        const INSERT: &str =
            "INSERT INTO agents (name, created_at) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING";
        refuse_nul("the agent name", name)?;
        self.write(|c| {
            exec(c, INSERT, args![name, now])?;
            find_agent(c, name)?.ok_or_else(|| Error::UnknownAgent(name.to_string()))
        })
    }

    fn agents(&self) -> Result<Vec<AgentRecord>> {
        let sql = format!("SELECT {AGENT_COLUMNS} ORDER BY a.name COLLATE \"C\"");
        self.read(|c| {
            rows(c, &sql, args![])?
                .iter()
                .map(|r| agent_from_row(r, &sql))
                .collect()
        })
    }

    fn set_memory_settings(&self, name: &str, s: &MemorySettings) -> Result<bool> {
        const UPDATE: &str = "UPDATE agents SET max_memory_mb = $2, max_entries = $3, \
             cleanup_interval = $4, keep_fraction = $5, importance_threshold = $6, \
             importance_weight = $7, recency_weight = $8, low_water = $9, \
             relevance_weight = $10 WHERE name = $1 RETURNING id";
        let (max_entries, interval) = (s.max_entries as i64, s.cleanup_interval as i64);
        let changed = self.write(|c| {
            exec(
                c,
                UPDATE,
                args![
                    name,
                    s.max_memory_mb,
                    max_entries,
                    interval,
                    s.keep_fraction,
                    s.importance_threshold,
                    s.importance_weight,
                    s.recency_weight,
                    s.low_water,
                    s.relevance_weight
                ],
            )
        })?;
        Ok(changed > 0)
    }

    fn set_tool_scope(&self, name: &str, scope: Option<&str>) -> Result<bool> {
        const UPDATE: &str = "UPDATE agents SET tool_scope = $2 WHERE name = $1 RETURNING id";
        if let Some(scope) = scope {
            refuse_nul("the tool scope", scope)?;
        }
        Ok(self.write(|c| exec(c, UPDATE, args![name, scope]))? > 0)
    }

    fn set_target(&self, name: &str, seconds: f64) -> Result<bool> {
        const UPDATE: &str =
            "UPDATE agents SET target_response_time = $2 WHERE name = $1 RETURNING id";
        Ok(self.write(|c| exec(c, UPDATE, args![name, seconds]))? > 0)
    }
}
