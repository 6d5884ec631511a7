//! Agents on SQLite: one row each in `agents`, holding the agent's settings, and the
//! counters the memory triggers keep in `memory_counters`.

use rusqlite::{Connection, Row, params};

use super::Sqlite;
use super::stmt::{exec, opt_row, row, rows};
use crate::error::Result;
use crate::store::agents::RestoredAgent;
use crate::store::engine::AgentOps;
use crate::store::{AgentRecord, MemorySettings};

/// The columns of an [`AgentRecord`], from `agents a JOIN memory_counters c`.
const AGENT_COLUMNS: &str = "a.id, a.name, a.created_at, c.message_count, c.entries, c.bytes, \
     a.max_memory_mb, a.max_entries, a.cleanup_interval, a.keep_fraction, \
     a.importance_threshold, a.importance_weight, a.recency_weight, a.relevance_weight, \
     a.low_water, coalesce(a.tool_scope, a.name) AS scope, a.target_response_time \
     FROM agents a JOIN memory_counters c ON c.agent_id = a.id";

/// The one decoder of the memory settings, by the `agents` column names.
pub(super) fn settings_from_row(r: &Row<'_>) -> rusqlite::Result<MemorySettings> {
    Ok(MemorySettings {
        max_memory_mb: r.get("max_memory_mb")?,
        max_entries: r.get("max_entries")?,
        cleanup_interval: r.get("cleanup_interval")?,
        keep_fraction: r.get("keep_fraction")?,
        importance_threshold: r.get("importance_threshold")?,
        importance_weight: r.get("importance_weight")?,
        recency_weight: r.get("recency_weight")?,
        relevance_weight: r.get("relevance_weight")?,
        low_water: r.get("low_water")?,
    })
}

/// The one decoder of an [`AgentRecord`], from [`AGENT_COLUMNS`].
fn agent_from_row(r: &Row<'_>) -> rusqlite::Result<AgentRecord> {
    Ok(AgentRecord {
        id: r.get("id")?,
        name: r.get("name")?,
        created_at: r.get("created_at")?,
        message_count: r.get("message_count")?,
        memory_entries: r.get("entries")?,
        memory_bytes: r.get("bytes")?,
        settings: settings_from_row(r)?,
        tool_scope: r.get("scope")?,
        target_response_time: r.get("target_response_time")?,
    })
}

/// The agent called `name`, on `c` (in the caller's transaction, if any).
pub(super) fn find_agent(c: &Connection, name: &str) -> Result<Option<AgentRecord>> {
    let sql = format!("SELECT {AGENT_COLUMNS} WHERE a.name = ?1");
    opt_row(c, &sql, [name], agent_from_row)
}

impl AgentOps for Sqlite {
    fn find_agent(&self, name: &str) -> Result<Option<AgentRecord>> {
        self.read(|c| find_agent(c, name))
    }

    fn create_agent(&self, name: &str, now: i64) -> Result<AgentRecord> {
        const INSERT: &str =
            "INSERT INTO agents (name, created_at) VALUES (?1, ?2) ON CONFLICT (name) DO NOTHING";
        self.write(|tx| {
            exec(tx, INSERT, params![name, now])?;
            find_agent(tx, name)?.ok_or_else(|| crate::error::Error::UnknownAgent(name.to_string()))
        })
    }

    fn agents(&self) -> Result<Vec<AgentRecord>> {
        let sql = format!("SELECT {AGENT_COLUMNS} ORDER BY a.name");
        self.read(|c| rows(c, &sql, [], agent_from_row))
    }

    fn set_memory_settings(&self, name: &str, s: &MemorySettings) -> Result<bool> {
        const UPDATE: &str = "UPDATE agents SET max_memory_mb = ?2, max_entries = ?3, \
             cleanup_interval = ?4, keep_fraction = ?5, importance_threshold = ?6, \
             importance_weight = ?7, recency_weight = ?8, low_water = ?9, \
             relevance_weight = ?10 WHERE name = ?1";
        let changed = self.write(|tx| {
            exec(
                tx,
                UPDATE,
                params![
                    name,
                    s.max_memory_mb,
                    s.max_entries as i64,
                    s.cleanup_interval as i64,
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
        const UPDATE: &str = "UPDATE agents SET tool_scope = ?2 WHERE name = ?1";
        Ok(self.write(|tx| exec(tx, UPDATE, params![name, scope]))? > 0)
    }

    fn set_target(&self, name: &str, seconds: f64) -> Result<bool> {
        const UPDATE: &str = "UPDATE agents SET target_response_time = ?2 WHERE name = ?1";
        Ok(self.write(|tx| exec(tx, UPDATE, params![name, seconds]))? > 0)
    }
}

/// Inserts a new agent with its settings and message counter, in the caller's
/// transaction; returns its id.
pub(super) fn restore_agent(tx: &Connection, a: &RestoredAgent<'_>) -> Result<i64> {
    let message_count = a.validate()?;
    const INSERT: &str = "INSERT INTO agents (name, created_at, max_memory_mb, max_entries, \
         cleanup_interval, keep_fraction, importance_threshold, importance_weight, \
         recency_weight, low_water, tool_scope, target_response_time, relevance_weight) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13) RETURNING id";
    const COUNT: &str = "UPDATE memory_counters SET message_count = ?2 WHERE agent_id = ?1";
    let s = a.settings;
    let id: i64 = row(
        tx,
        INSERT,
        params![
            a.name,
            a.created_at,
            s.max_memory_mb,
            s.max_entries as i64,
            s.cleanup_interval as i64,
            s.keep_fraction,
            s.importance_threshold,
            s.importance_weight,
            s.recency_weight,
            s.low_water,
            a.tool_scope,
            a.target_response_time,
            s.relevance_weight
        ],
        |r| r.get(0),
    )?;
    exec(tx, COUNT, params![id, message_count])?;
    Ok(id)
}
