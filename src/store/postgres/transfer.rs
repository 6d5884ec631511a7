//! Export and import on PostgreSQL: the records of an export read from one snapshot
//! in the same order as on SQLite (names and tools in byte order, `COLLATE "C"`), so
//! an export is byte for byte the same whichever engine it came from; an import's
//! writes in one transaction, refusing before anything is written what PostgreSQL
//! cannot hold (a NUL byte).

use postgres::Client;
use postgres::fallible_iterator::FallibleIterator;
use postgres::types::{ToSql, Type};
use serde_json::Value;

use super::agents::find_agent;
use super::memory::restore_entry;
use super::responses::{insert_log, restore_response};
use super::tool_cache::{add_counts_on, upsert};
use super::{Postgres, args, exec, get, refuse_nul, row, rows};
use crate::error::{Error, Result};
use crate::store::agents::RestoredAgent;
use crate::store::tool_cache::restored_result;
use crate::store::transfer::{ImportSink, Record, RestoredResponse};
use crate::store::{AgentRecord, ImportReport, LoggedResponse, MemorySettings, Role, ToolCounts};

const AGENTS: &str = "SELECT a.id, a.name, a.created_at, c.message_count, a.tool_scope, \
     a.target_response_time, a.max_memory_mb, a.max_entries, a.cleanup_interval, \
     a.keep_fraction, a.importance_threshold, a.importance_weight, a.recency_weight, \
     a.relevance_weight, a.low_water, coalesce(a.tool_scope, a.name) AS scope \
     FROM agents a JOIN memory_counters c ON c.agent_id = a.id \
     WHERE $1::text IS NULL OR a.name = $1 ORDER BY a.name COLLATE \"C\"";
const MEMORY: &str = "SELECT id, created_at, importance, role, content FROM memory_entries \
     WHERE agent_id = $1 ORDER BY created_at, id";
const COUNTERS: &str = "SELECT tool, total_calls, cache_hits, errors, total_time \
     FROM tool_counters WHERE agent_id = $1 ORDER BY tool COLLATE \"C\"";
const RESPONSES: &str = "SELECT created_at, last_used_at, hits, message, response \
     FROM response_cache WHERE agent_id = $1 ORDER BY id";
const LOG: &str = "SELECT at, duration, outcome FROM response_log WHERE agent_id = $1 ORDER BY id";
const TOOL_CACHE: &str = "SELECT scope, tool, created_at, expires_at, params, result \
     FROM tool_cache WHERE $1::text[] IS NULL OR scope = ANY($1) \
     ORDER BY scope COLLATE \"C\", tool COLLATE \"C\", key";

/// Hands each row of `sql` to `each`, streamed (one row held at a time).
fn each_row(
    c: &mut Client,
    sql: &str,
    params: &[(&(dyn ToSql + Sync), Type)],
    mut each: impl FnMut(&postgres::Row) -> Result<()>,
) -> Result<()> {
    let mut it = super::stream(c, sql, params)?;
    while let Some(r) = it.next().map_err(|e| super::wrap(e, sql))? {
        each(&r)?;
    }
    Ok(())
}

fn json_column(r: &postgres::Row, i: usize, sql: &str) -> Result<Value> {
    let text: String = get(r, i, sql)?;
    serde_json::from_str(&text).map_err(|e| Error::Sql {
        kind: crate::DbErrorKind::Other,
        statement: sql.to_string(),
        source: Box::new(e),
    })
}

fn export_on(
    c: &mut Client,
    agent: Option<&str>,
    emit: &mut dyn FnMut(Record) -> Result<()>,
) -> Result<()> {
    let count = |r: &postgres::Row, i: usize, sql: &str| -> Result<u64> {
        Ok(get::<i64>(r, i, sql)?.max(0) as u64)
    };
    let agents: Vec<(i64, Record, String)> = rows(c, AGENTS, args![agent])?
        .iter()
        .map(|r| {
            let record = Record::Agent {
                name: get(r, 1, AGENTS)?,
                created_at: get(r, 2, AGENTS)?,
                message_count: count(r, 3, AGENTS)?,
                tool_scope: get(r, 4, AGENTS)?,
                target_response_time: get(r, 5, AGENTS)?,
                settings: MemorySettings {
                    max_memory_mb: get(r, 6, AGENTS)?,
                    max_entries: count(r, 7, AGENTS)?,
                    cleanup_interval: count(r, 8, AGENTS)?,
                    keep_fraction: get(r, 9, AGENTS)?,
                    importance_threshold: get(r, 10, AGENTS)?,
                    importance_weight: get(r, 11, AGENTS)?,
                    recency_weight: get(r, 12, AGENTS)?,
                    relevance_weight: get(r, 13, AGENTS)?,
                    low_water: get(r, 14, AGENTS)?,
                },
            };
            Ok((get(r, 0, AGENTS)?, record, get(r, 15, AGENTS)?))
        })
        .collect::<Result<_>>()?;
    for (id, record, _) in &agents {
        let Record::Agent { name, .. } = record else {
            unreachable!("built above")
        };
        emit(record.clone())?;
        each_row(c, MEMORY, args![*id], |r| {
            let role: &str = get(r, 3, MEMORY)?;
            emit(Record::Memory {
                agent: name.clone(),
                id: get(r, 0, MEMORY)?,
                created_at: get(r, 1, MEMORY)?,
                importance: get(r, 2, MEMORY)?,
                role: role.parse()?,
                content: get(r, 4, MEMORY)?,
            })
        })?;
        each_row(c, COUNTERS, args![*id], |r| {
            emit(Record::ToolCounters {
                agent: name.clone(),
                tool: get(r, 0, COUNTERS)?,
                total_calls: count(r, 1, COUNTERS)?,
                cache_hits: count(r, 2, COUNTERS)?,
                errors: count(r, 3, COUNTERS)?,
                total_time: get(r, 4, COUNTERS)?,
            })
        })?;
        each_row(c, RESPONSES, args![*id], |r| {
            emit(Record::Response {
                agent: name.clone(),
                created_at: get(r, 0, RESPONSES)?,
                last_used_at: get(r, 1, RESPONSES)?,
                hits: count(r, 2, RESPONSES)?,
                message: get(r, 3, RESPONSES)?,
                response: get(r, 4, RESPONSES)?,
            })
        })?;
        each_row(c, LOG, args![*id], |r| {
            let outcome: String = get(r, 2, LOG)?;
            let outcome =
                serde_json::from_value(Value::String(outcome)).map_err(|e| Error::Sql {
                    kind: crate::DbErrorKind::Other,
                    statement: LOG.to_string(),
                    source: Box::new(e),
                })?;
            emit(Record::ResponseLog {
                agent: name.clone(),
                at: get(r, 0, LOG)?,
                duration: get(r, 1, LOG)?,
                outcome,
            })
        })?;
    }
    // One agent: its scope's results; all agents: every result, whatever scope.
    let scopes: Option<Vec<String>> =
        agent.map(|_| agents.iter().map(|(_, _, scope)| scope.clone()).collect());
    each_row(c, TOOL_CACHE, &[(&scopes, Type::TEXT_ARRAY)], |r| {
        emit(Record::ToolCache {
            scope: get(r, 0, TOOL_CACHE)?,
            tool: get(r, 1, TOOL_CACHE)?,
            created_at: get(r, 2, TOOL_CACHE)?,
            expires_at: get(r, 3, TOOL_CACHE)?,
            params: json_column(r, 4, TOOL_CACHE)?,
            result: json_column(r, 5, TOOL_CACHE)?,
        })
    })
}

/// An import's writes, in the caller's transaction.
struct Restore<'c>(&'c mut Client);

impl ImportSink for Restore<'_> {
    fn find_agent(&mut self, name: &str) -> Result<Option<AgentRecord>> {
        refuse_nul("the agent name", name)?;
        find_agent(self.0, name)
    }

    fn restore_agent(&mut self, a: &RestoredAgent<'_>) -> Result<i64> {
        let message_count = a.validate()?;
        refuse_nul("the agent name", a.name)?;
        if let Some(scope) = a.tool_scope {
            refuse_nul("the tool scope", scope)?;
        }
        const INSERT: &str = "INSERT INTO agents (name, created_at, max_memory_mb, max_entries, \
             cleanup_interval, keep_fraction, importance_threshold, importance_weight, \
             recency_weight, low_water, tool_scope, target_response_time, relevance_weight) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) RETURNING id";
        const COUNT: &str = "UPDATE memory_counters SET message_count = $2 WHERE agent_id = $1";
        let s = a.settings;
        let r = row(
            self.0,
            INSERT,
            args![
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
        )?;
        let id: i64 = get(&r, 0, INSERT)?;
        exec(self.0, COUNT, args![id, message_count])?;
        Ok(id)
    }

    fn restore_entry(
        &mut self,
        agent_id: i64,
        id: Option<i64>,
        entry: (Role, &str, f64),
        created_at: i64,
    ) -> Result<()> {
        const BUMP: &str = "UPDATE memory_counters SET message_count = message_count + 1
             WHERE agent_id = $1 RETURNING message_count";
        let id = match id {
            Some(id) => id,
            None => get(&row(self.0, BUMP, args![agent_id])?, 0, BUMP)?,
        };
        restore_entry(self.0, agent_id, id, entry, created_at)
    }

    fn restore_counts(&mut self, agent_id: i64, tool: &str, counts: &ToolCounts) -> Result<()> {
        refuse_nul("the tool name", tool)?;
        add_counts_on(self.0, &[(agent_id, tool.to_string(), *counts)])
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
        let (key, canonical, result) = restored_result(scope, tool, params, result)?;
        for (what, text) in [
            ("the scope", scope),
            ("the tool name", tool),
            ("the params", canonical.as_str()),
            ("the result", result.as_str()),
        ] {
            refuse_nul(what, text)?;
        }
        upsert(
            self.0, &key, scope, tool, &canonical, &result, created_at, expires_at,
        )
    }
}

impl Postgres {
    pub(super) fn export_records(
        &self,
        agent: Option<&str>,
        emit: &mut dyn FnMut(Record) -> Result<()>,
    ) -> Result<()> {
        // A lost connection is retried on a fresh one only while nothing was emitted:
        // records already handed over cannot be taken back.
        let emitted = std::cell::Cell::new(false);
        let mut counting = |r: Record| {
            emitted.set(true);
            emit(r)
        };
        self.read(|c| {
            if emitted.get() {
                return Err(Error::Sql {
                    kind: crate::DbErrorKind::Other,
                    statement: "export".into(),
                    source: "the connection to the server was lost during the export".into(),
                });
            }
            export_on(c, agent, &mut counting)
        })
    }

    pub(super) fn import_records(
        &self,
        run: &mut dyn FnMut(&mut dyn ImportSink) -> Result<ImportReport>,
    ) -> Result<ImportReport> {
        self.write(|c| run(&mut Restore(c)))
    }
}
