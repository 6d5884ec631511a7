//! `forget` across an agent's state on SQLite: its matching memory entries (through
//! the search index), and its cached responses and its scope's tool results that
//! contain the query's words (a scan of the agent's rows; an operator's command, not
//! a hot path).

use rusqlite::{Connection, params};

use super::Sqlite;
use super::recall;
use super::stmt::{SqlContext, exec, rows};
use crate::error::Result;
use crate::store::forget::Needles;
use crate::store::memory::{Forget, Query};
use crate::store::{CachedResponse, CachedToolResult, ForgetEverywhereReport, MemoryEntry};

/// Everything a forget removes, found in one transaction.
struct Doomed {
    memory: Vec<MemoryEntry>,
    responses: Vec<CachedResponse>,
    tools: Vec<(Vec<u8>, CachedToolResult)>,
}

fn doomed(
    c: &Connection,
    agent_id: i64,
    scope: &str,
    query: &Query,
    needles: &Needles,
) -> Result<Doomed> {
    const RESPONSES: &str = "SELECT id, message, response, hits, created_at, last_used_at
        FROM response_cache WHERE agent_id = ?1 ORDER BY id";
    const TOOLS: &str = "SELECT key, scope, tool, params, result, created_at, expires_at
        FROM tool_cache WHERE scope = ?1 ORDER BY tool, created_at, key";
    let memory = recall::doomed(c, agent_id, &Forget::Matching(query.clone()))?;
    let responses = rows(
        c,
        RESPONSES,
        [agent_id],
        super::responses::response_from_row,
    )?
    .into_iter()
    .filter(|r| needles.all_in(&r.message) || needles.all_in(&r.response))
    .collect();
    let tools = rows(c, TOOLS, [scope], |r| {
        let params: String = r.get(3)?;
        let result: String = r.get(4)?;
        let hit = needles.all_in(&params) || needles.all_in(&result);
        Ok(hit
            .then(|| Ok::<_, rusqlite::Error>((r.get(0)?, super::tool_cache::result_from_row(r)?))))
    })?
    .into_iter()
    .flatten()
    .collect::<rusqlite::Result<Vec<_>>>()
    .sql(TOOLS)?;
    Ok(Doomed {
        memory,
        responses,
        tools,
    })
}

impl Sqlite {
    pub(super) fn forget_all(
        &self,
        agent_id: i64,
        scope: &str,
        query: &Query,
        needles: &Needles,
        dry_run: bool,
    ) -> Result<ForgetEverywhereReport> {
        const TOOL: &str = "DELETE FROM tool_cache WHERE key = ?1";
        let report = |d: Doomed, scrubbed: bool| ForgetEverywhereReport {
            memory_entries: d.memory,
            responses: d.responses,
            tool_results: d.tools.into_iter().map(|(_, t)| t).collect(),
            dry_run,
            scrubbed,
        };
        if dry_run {
            self.sync_search_for_read()?;
            let d = self.snapshot(|c| doomed(c, agent_id, scope, query, needles))?;
            return Ok(report(d, false));
        }
        let (d, scrubbed) = self.write_forgetting(|tx| {
            recall::sync_search(tx)?;
            let d = doomed(tx, agent_id, scope, query, needles)?;
            let ids: Vec<i64> = d.memory.iter().map(|e| e.id).collect();
            if !ids.is_empty() {
                recall::forget(tx, agent_id, &Forget::Ids(&ids))?;
            }
            let victims: Vec<(i64, String)> = d
                .responses
                .iter()
                .map(|r| (r.id, r.message.clone()))
                .collect();
            super::responses::delete_rows(tx, agent_id, &victims)?;
            for (key, _) in &d.tools {
                exec(tx, TOOL, params![key])?;
            }
            Ok(d)
        })?;
        Ok(report(d, scrubbed))
    }
}
