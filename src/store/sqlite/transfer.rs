//! Export and import on SQLite: the records of an export read from one snapshot, and
//! an import's writes (`ImportSink`) in one bulk transaction.

use rusqlite::{Connection, Row};
use serde_json::Value;

use super::Sqlite;
use super::agents::{find_agent, restore_agent, settings_from_row};
use super::memory::restore_entry;
use super::responses::{insert_log, restore_response};
use super::stmt::{SqlContext, each_row};
use super::tool_cache::{counts_from_row, restore_counts, restore_result};
use crate::error::Result;
use crate::store::agents::RestoredAgent;
use crate::store::transfer::{ImportSink, Record, RestoredResponse};
use crate::store::{AgentRecord, ImportReport, LoggedResponse, Role, ToolCounts};

const AGENTS: &str = "SELECT a.id, a.name, a.created_at, c.message_count, a.tool_scope, \
     a.target_response_time, a.max_memory_mb, a.max_entries, a.cleanup_interval, \
     a.keep_fraction, a.importance_threshold, a.importance_weight, a.recency_weight, \
     a.relevance_weight, a.low_water, coalesce(a.tool_scope, a.name) AS scope \
     FROM agents a JOIN memory_counters c ON c.agent_id = a.id \
     WHERE ?1 IS NULL OR a.name = ?1 ORDER BY a.name";
const MEMORY: &str = "SELECT id, created_at, importance, role, content FROM memory_entries \
     WHERE agent_id = ?1 ORDER BY created_at, id";
const COUNTERS: &str = "SELECT tool, total_calls, cache_hits, errors, total_time \
     FROM tool_counters WHERE agent_id = ?1 ORDER BY tool";
const RESPONSES: &str = "SELECT created_at, last_used_at, hits, message, response \
     FROM response_cache WHERE agent_id = ?1 ORDER BY id";
const LOG: &str = "SELECT at, duration, outcome FROM response_log WHERE agent_id = ?1 ORDER BY id";
const TOOL_CACHE: &str = "SELECT scope, tool, created_at, expires_at, params, result \
     FROM tool_cache WHERE ?1 IS NULL OR scope IN (SELECT value FROM json_each(?1)) \
     ORDER BY scope, tool, key";

/// A JSON text column as a value (cached params and results are JSON by
/// construction).
fn json_column(r: &Row<'_>, i: usize) -> rusqlite::Result<Value> {
    let text: String = r.get(i)?;
    serde_json::from_str(&text).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, e.into())
    })
}

/// Every record of `agent` (or of all agents) from `c`, in export order.
fn export_on(
    c: &Connection,
    agent: Option<&str>,
    emit: &mut dyn FnMut(Record) -> Result<()>,
) -> Result<()> {
    let agents: Vec<(i64, Record, String)> = {
        let mut stmt = c.prepare(AGENTS).sql(AGENTS)?;
        let rows = stmt
            .query_map([agent], |r| {
                let record = Record::Agent {
                    name: r.get("name")?,
                    created_at: r.get("created_at")?,
                    message_count: r.get("message_count")?,
                    tool_scope: r.get("tool_scope")?,
                    target_response_time: r.get("target_response_time")?,
                    settings: settings_from_row(r)?,
                };
                Ok((r.get("id")?, record, r.get("scope")?))
            })
            .sql(AGENTS)?;
        rows.collect::<rusqlite::Result<_>>().sql(AGENTS)?
    };
    for (id, record, _) in &agents {
        let Record::Agent { name, .. } = record else {
            unreachable!("built above")
        };
        emit(record.clone())?;
        each_row(
            c,
            MEMORY,
            [id],
            |r| {
                Ok(Record::Memory {
                    agent: name.clone(),
                    id: r.get(0)?,
                    created_at: r.get(1)?,
                    importance: r.get(2)?,
                    role: super::memory::role_from(r, 3)?,
                    content: r.get(4)?,
                })
            },
            &mut *emit,
        )?;
        each_row(
            c,
            COUNTERS,
            [id],
            |r| {
                let counts = counts_from_row(r, 1)?;
                Ok(Record::ToolCounters {
                    agent: name.clone(),
                    tool: r.get(0)?,
                    total_calls: counts.total_calls,
                    cache_hits: counts.cache_hits,
                    errors: counts.errors,
                    total_time: counts.total_time,
                })
            },
            &mut *emit,
        )?;
        each_row(
            c,
            RESPONSES,
            [id],
            |r| {
                Ok(Record::Response {
                    agent: name.clone(),
                    created_at: r.get(0)?,
                    last_used_at: r.get(1)?,
                    hits: r.get(2)?,
                    message: r.get(3)?,
                    response: r.get(4)?,
                })
            },
            &mut *emit,
        )?;
        each_row(
            c,
            LOG,
            [id],
            |r| {
                let outcome: String = r.get(2)?;
                let outcome = serde_json::from_value(Value::String(outcome)).map_err(|e| {
                    rusqlite::Error::FromSqlConversionFailure(
                        2,
                        rusqlite::types::Type::Text,
                        e.into(),
                    )
                })?;
                Ok(Record::ResponseLog {
                    agent: name.clone(),
                    at: r.get(0)?,
                    duration: r.get(1)?,
                    outcome,
                })
            },
            &mut *emit,
        )?;
    }
    // One agent: its scope's results; all agents: every result, whatever scope.
    let scopes = agent.map(|_| {
        let scopes: Vec<&String> = agents.iter().map(|(_, _, scope)| scope).collect();
        serde_json::to_string(&scopes).expect("strings serialise")
    });
    each_row(
        c,
        TOOL_CACHE,
        [scopes],
        |r| {
            Ok(Record::ToolCache {
                scope: r.get(0)?,
                tool: r.get(1)?,
                created_at: r.get(2)?,
                expires_at: r.get(3)?,
                params: json_column(r, 4)?,
                result: json_column(r, 5)?,
            })
        },
        &mut *emit,
    )
}

/// An import's writes, in the caller's transaction.
struct Restore<'c>(&'c Connection);

impl ImportSink for Restore<'_> {
    fn find_agent(&mut self, name: &str) -> Result<Option<AgentRecord>> {
        find_agent(self.0, name)
    }

    fn restore_agent(&mut self, agent: &RestoredAgent<'_>) -> Result<i64> {
        restore_agent(self.0, agent)
    }

    fn restore_entry(
        &mut self,
        agent_id: i64,
        id: Option<i64>,
        entry: (Role, &str, f64),
        created_at: i64,
    ) -> Result<()> {
        restore_entry(self.0, agent_id, id, entry, created_at)
    }

    fn restore_counts(&mut self, agent_id: i64, tool: &str, counts: &ToolCounts) -> Result<()> {
        restore_counts(self.0, agent_id, tool, counts)
    }

    fn restore_response(&mut self, agent_id: i64, r: &RestoredResponse<'_>) -> Result<bool> {
        restore_response(self.0, agent_id, r)
    }

    fn restore_log(&mut self, agent_id: i64, row: &LoggedResponse) -> Result<()> {
        insert_log(self.0, agent_id, std::slice::from_ref(row))
    }

    fn restore_result(
        &mut self,
        scope: &str,
        tool: &str,
        params: &Value,
        result: &Value,
        created_at: i64,
        expires_at: i64,
    ) -> Result<()> {
        restore_result(self.0, scope, tool, params, result, created_at, expires_at)
    }
}

impl Sqlite {
    pub(super) fn export_records(
        &self,
        agent: Option<&str>,
        emit: &mut dyn FnMut(Record) -> Result<()>,
    ) -> Result<()> {
        self.snapshot(|c| export_on(c, agent, emit))
    }

    pub(super) fn import_records(
        &self,
        run: &mut dyn FnMut(&mut dyn ImportSink) -> Result<ImportReport>,
    ) -> Result<ImportReport> {
        self.write_bulk(|tx| run(&mut Restore(tx)))
    }
}
