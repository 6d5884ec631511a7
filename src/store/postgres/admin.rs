//! Administration on PostgreSQL: `check` (the schema version, row counts, the
//! trigger-kept counters against real counts, the ranges every row keeps, the word
//! index), the stats views, space (`compact` is a VACUUM of agentstore's tables),
//! and `forget` across memory and both caches.

use std::collections::BTreeMap;
use std::time::Duration;

use postgres::Client;
use postgres::types::Type;
use serde_json::Value;

use super::{Postgres, args, exec, get, row, rows};
use crate::error::Result;
use crate::store::engine::AdminOps;
use crate::store::forget::Needles;
use crate::store::memory::{Forget, Query};
use crate::store::transfer::{ImportSink, Record};
use crate::store::{
    CheckReport, CompactReport, ForgetEverywhereReport, ImportReport, POSTGRES_SCHEMA_VERSION,
    PageUse, QueryResult, QuerySink, StatsView,
};

/// agentstore's tables, counted by `check`.
const TABLES: [&str; 12] = [
    "agents",
    "memory_counters",
    "memory_entries",
    "memory_prunes",
    "tool_cache",
    "tool_counters",
    "response_cache",
    "response_words",
    "response_log",
    "response_time_buckets",
    "leases",
    "agentstore_schema",
];

/// PostgreSQL's page size, for [`PageUse`].
const PAGE: u64 = 8192;

/// The ranges and relations every row keeps (as the SQLite engine's check): each
/// query returns at most a few `(name, detail)` rows.
const CHECKS: &[&str] = &[
    "SELECT 'agent ' || quote_literal(a.name), 'memory entry id ' || m.id || ' is below 1'
       FROM memory_entries m JOIN agents a ON a.id = m.agent_id WHERE m.id < 1 LIMIT 5",
    "SELECT 'agent ' || quote_literal(a.name), 'message counter ' || c.message_count || ' is out of range'
       FROM memory_counters c JOIN agents a ON a.id = c.agent_id
      WHERE c.message_count < 0 OR c.message_count > 9007199254740992 LIMIT 5",
    "SELECT 'agent ' || quote_literal(a.name), 'tool ' || quote_literal(t.tool) || ': ' ||
            CASE WHEN t.cache_hits > t.total_calls THEN 'more cache hits than calls'
                 WHEN t.errors > t.total_calls THEN 'more errors than calls'
                 WHEN t.total_calls > 9007199254740992 THEN 'a call count out of range'
                 ELSE 'total time out of range' END
       FROM tool_counters t JOIN agents a ON a.id = t.agent_id
      WHERE t.cache_hits > t.total_calls OR t.errors > t.total_calls
         OR t.total_calls > 9007199254740992 OR t.total_time > 3.16224e11 LIMIT 5",
    "SELECT 'agent ' || quote_literal(a.name), 'cached response #' || r.id || ': ' ||
            CASE WHEN r.message = '' THEN 'an empty message'
                 WHEN r.response = '' THEN 'an empty response'
                 WHEN r.last_used_at < r.created_at THEN 'last used before it was created'
                 ELSE 'a hit count out of range' END
       FROM response_cache r JOIN agents a ON a.id = r.agent_id
      WHERE r.message = '' OR r.response = '' OR r.last_used_at < r.created_at
         OR r.hits > 9007199254740992 LIMIT 5",
    "SELECT 'agent ' || quote_literal(a.name), 'response log row ' || l.id || ': a time of ' || l.duration || ' s is out of range'
       FROM response_log l JOIN agents a ON a.id = l.agent_id
      WHERE NOT (l.duration BETWEEN 0 AND 31622400) LIMIT 5",
    "SELECT 'agent ' || quote_literal(a.name), 'target response time ' || a.target_response_time || ' s is out of range'
       FROM agents a WHERE NOT (a.target_response_time BETWEEN 1e-6 AND 31622400) LIMIT 5",
    "SELECT 'tool scope ' || quote_literal(t.scope), 'cached result of ' || quote_literal(t.tool) || ' expires before it was created'
       FROM tool_cache t WHERE t.expires_at < t.created_at LIMIT 5",
];

fn check_on(c: &mut Client) -> Result<CheckReport> {
    let mut report = CheckReport {
        ok: false,
        // The server checks its own pages (checksums, WAL replay); agentstore checks
        // what it keeps.
        integrity: vec!["ok".to_string()],
        foreign_key_violations: 0,
        schema_version: 0,
        journal_mode: "postgresql".to_string(),
        row_counts: BTreeMap::new(),
        problems: Vec::new(),
        notes: Vec::new(),
        pages: None,
    };
    const VERSION: &str = "SELECT version::int8 FROM agentstore_schema";
    report.schema_version = get(&row(c, VERSION, args![])?, 0, VERSION)?;
    if report.schema_version != POSTGRES_SCHEMA_VERSION {
        report.problems.push(format!(
            "schema version {}, expected {POSTGRES_SCHEMA_VERSION}",
            report.schema_version
        ));
    }
    // The functions of the hot writes, in the schema that holds the version table.
    const FUNCTIONS: &str = "SELECT f FROM unnest($1::text[]) AS f WHERE NOT EXISTS (
        SELECT 1 FROM pg_proc p JOIN pg_class t ON t.relnamespace = p.pronamespace
         WHERE t.oid = (SELECT tableoid FROM agentstore_schema LIMIT 1) AND p.proname = f)
      ORDER BY f";
    let wanted = super::migrate::functions();
    for r in rows(
        c,
        FUNCTIONS,
        &[(&wanted, postgres::types::Type::TEXT_ARRAY)],
    )? {
        let missing: String = get(&r, 0, FUNCTIONS)?;
        report.problems.push(format!(
            "function {missing} is missing (schema-postgres-functions.sql applies it again)"
        ));
    }
    for table in TABLES {
        let sql = format!("SELECT count(*) FROM {table}");
        let n: i64 = get(&row(c, &sql, args![])?, 0, &sql)?;
        report.row_counts.insert(table.to_string(), n as u64);
    }
    const PRUNES: &str = "SELECT a.name, p.rule FROM memory_prunes p
         JOIN agents a ON a.id = p.agent_id ORDER BY a.name COLLATE \"C\"";
    for r in rows(c, PRUNES, args![])? {
        let (agent, rule): (String, String) = (get(&r, 0, PRUNES)?, get(&r, 1, PRUNES)?);
        report.notes.push(format!(
            "agent '{agent}': `memory prune --{rule}` was interrupted; run it again to finish it"
        ));
    }
    const COUNTERS: &str = "SELECT a.name, c.entries, c.bytes, c.importance_sum, c.message_count,
            count(m.id), coalesce(sum(m.size_bytes), 0)::int8,
            coalesce(sum(m.importance), 0.0), coalesce(max(m.id), 0)
       FROM agents a JOIN memory_counters c ON c.agent_id = a.id
            LEFT JOIN memory_entries m ON m.agent_id = a.id
      GROUP BY a.id, c.agent_id ORDER BY a.name COLLATE \"C\"";
    for r in rows(c, COUNTERS, args![])? {
        let name: String = get(&r, 0, COUNTERS)?;
        let kept: (i64, i64, f64, i64) = (
            get(&r, 1, COUNTERS)?,
            get(&r, 2, COUNTERS)?,
            get(&r, 3, COUNTERS)?,
            get(&r, 4, COUNTERS)?,
        );
        let real: (i64, i64, f64, i64) = (
            get(&r, 5, COUNTERS)?,
            get(&r, 6, COUNTERS)?,
            get(&r, 7, COUNTERS)?,
            get(&r, 8, COUNTERS)?,
        );
        let problems = &mut report.problems;
        crate::store::invariants::counter_problems(&name, kept, real, problems);
    }
    const BUCKETS: &str = "SELECT a.name,
            (SELECT coalesce(sum(responses), 0)::int8 FROM response_time_buckets b WHERE b.agent_id = a.id),
            (SELECT count(*) FROM response_log l WHERE l.agent_id = a.id AND l.outcome <> 'error')
       FROM agents a ORDER BY a.name COLLATE \"C\"";
    for r in rows(c, BUCKETS, args![])? {
        let (name, kept, real): (String, i64, i64) = (
            get(&r, 0, BUCKETS)?,
            get(&r, 1, BUCKETS)?,
            get(&r, 2, BUCKETS)?,
        );
        if kept != real {
            report.problems.push(format!(
                "agent '{name}': response time buckets count {kept} responses, the log has {real}"
            ));
        }
    }
    for sql in CHECKS {
        for r in rows(c, sql, args![])? {
            let (name, detail): (String, String) = (get(&r, 0, sql)?, get(&r, 1, sql)?);
            report.problems.push(format!("{name}: {detail}"));
        }
    }
    const POSTINGS: &str = "SELECT (SELECT count(*) FROM response_words),
            (SELECT coalesce(sum(word_count), 0)::int8 FROM response_cache WHERE indexed)";
    let r = row(c, POSTINGS, args![])?;
    let (postings, words): (i64, i64) = (get(&r, 0, POSTINGS)?, get(&r, 1, POSTINGS)?);
    if postings != words {
        report.problems.push(format!(
            "the response word index has {postings} postings for {words} words of cached messages"
        ));
    }
    report.pages = Some(pages_on(c)?);
    report.ok = report.problems.is_empty();
    Ok(report)
}

/// The space agentstore's tables and indexes take, in pages, and the free space in
/// them that PostgreSQL's free space map knows of is not measured (a VACUUM reuses it).
fn pages_on(c: &mut Client) -> Result<PageUse> {
    const SIZE: &str = "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::int8
        FROM pg_class c WHERE c.relnamespace = current_schema()::regnamespace
         AND c.relkind = 'r'";
    let bytes: i64 = get(&row(c, SIZE, args![])?, 0, SIZE)?;
    Ok(PageUse {
        pages: bytes.max(0) as u64 / PAGE,
        free_pages: 0,
        page_size: PAGE,
    })
}

/// A column of a view row as JSON, by its type.
fn value(r: &postgres::Row, i: usize, sql: &str) -> Result<Value> {
    let ty = r.columns()[i].type_().clone();
    Ok(match ty {
        Type::INT8 => get::<Option<i64>>(r, i, sql)?.map_or(Value::Null, Value::from),
        Type::INT4 => get::<Option<i32>>(r, i, sql)?.map_or(Value::Null, Value::from),
        Type::INT2 => get::<Option<i16>>(r, i, sql)?.map_or(Value::Null, Value::from),
        Type::FLOAT8 => get::<Option<f64>>(r, i, sql)?.map_or(Value::Null, Value::from),
        Type::FLOAT4 => get::<Option<f32>>(r, i, sql)?.map_or(Value::Null, Value::from),
        Type::BOOL => get::<Option<bool>>(r, i, sql)?.map_or(Value::Null, Value::from),
        Type::BYTEA => get::<Option<Vec<u8>>>(r, i, sql)?.map_or(Value::Null, |b| {
            Value::from(format!(
                "X'{}'",
                crate::store::tool_cache::hex(&b).to_uppercase()
            ))
        }),
        _ => get::<Option<String>>(r, i, sql)?.map_or(Value::Null, Value::from),
    })
}

fn forget_on(
    c: &mut Client,
    agent_id: i64,
    scope: &str,
    query: &Query,
    needles: &Needles,
    dry_run: bool,
) -> Result<ForgetEverywhereReport> {
    const RESPONSES: &str = "SELECT id, message, response, hits, created_at, last_used_at
        FROM response_cache WHERE agent_id = $1 ORDER BY id";
    const TOOLS: &str = "SELECT key, scope, tool, params, result, created_at, expires_at
        FROM tool_cache WHERE scope = $1 ORDER BY tool COLLATE \"C\", created_at, key";
    const DELETE_ENTRIES: &str = "DELETE FROM memory_entries WHERE agent_id = $1 AND id = ANY($2)";
    const DELETE_TOOLS: &str = "DELETE FROM tool_cache WHERE key = ANY($1)";
    let memory = super::memory::doomed(c, agent_id, &Forget::Matching(query.clone()))?;
    let responses = rows(c, RESPONSES, args![agent_id])?
        .iter()
        .map(|r| super::responses::response_from_row(r, RESPONSES))
        .collect::<Result<Vec<_>>>()?
        .into_iter()
        .filter(|r| needles.all_in(&r.message) || needles.all_in(&r.response))
        .collect::<Vec<_>>();
    let mut keys: Vec<Vec<u8>> = Vec::new();
    let mut tools = Vec::new();
    for r in rows(c, TOOLS, args![scope])? {
        let params: String = get(&r, 3, TOOLS)?;
        let result: String = get(&r, 4, TOOLS)?;
        if needles.all_in(&params) || needles.all_in(&result) {
            keys.push(get(&r, 0, TOOLS)?);
            tools.push(super::tool_cache::result_from_row(&r, TOOLS)?);
        }
    }
    if !dry_run {
        let ids: Vec<i64> = memory.iter().map(|e| e.id).collect();
        if !ids.is_empty() {
            exec(c, DELETE_ENTRIES, args![agent_id, ids])?;
        }
        let response_ids: Vec<i64> = responses.iter().map(|r| r.id).collect();
        super::responses::delete_rows(c, agent_id, &response_ids)?;
        if !keys.is_empty() {
            super::exec(c, DELETE_TOOLS, &[(&keys, Type::BYTEA_ARRAY)])?;
        }
    }
    Ok(ForgetEverywhereReport {
        memory_entries: memory,
        responses,
        tool_results: tools,
        dry_run,
        // PostgreSQL keeps deleted rows' bytes until VACUUM, and in its WAL.
        scrubbed: false,
    })
}

impl AdminOps for Postgres {
    fn check(&self) -> Result<CheckReport> {
        self.read(check_on)
    }

    fn export(
        &self,
        agent: Option<&str>,
        emit: &mut dyn FnMut(Record) -> Result<()>,
    ) -> Result<()> {
        self.export_records(agent, emit)
    }

    fn import(
        &self,
        run: &mut dyn FnMut(&mut dyn ImportSink) -> Result<ImportReport>,
    ) -> Result<ImportReport> {
        self.import_records(run)
    }

    fn view(&self, view: StatsView, agent: Option<&str>) -> Result<QueryResult> {
        let sql = match view {
            StatsView::Memory => {
                "SELECT * FROM memory_stats WHERE $1::text IS NULL OR agent = $1 ORDER BY agent COLLATE \"C\""
            }
            StatsView::Tools => {
                "SELECT * FROM tool_stats WHERE $1::text IS NULL OR agent = $1 ORDER BY agent COLLATE \"C\", tool COLLATE \"C\""
            }
            StatsView::Responses => {
                "SELECT * FROM response_stats WHERE $1::text IS NULL OR agent = $1 ORDER BY agent COLLATE \"C\""
            }
        };
        self.read(|c| {
            let found = rows(c, sql, args![agent])?;
            let columns: Vec<String> = match found.first() {
                Some(r) => r.columns().iter().map(|c| c.name().to_string()).collect(),
                None => {
                    let qualified = super::qualify::qualified(sql);
                    let stmt = c
                        .prepare_typed(&qualified, &[Type::TEXT])
                        .map_err(|e| super::wrap(e, sql))?;
                    stmt.columns()
                        .iter()
                        .map(|c| c.name().to_string())
                        .collect()
                }
            };
            let rows = found
                .iter()
                .map(|r| (0..columns.len()).map(|i| value(r, i, sql)).collect())
                .collect::<Result<Vec<Vec<Value>>>>()?;
            Ok(QueryResult { columns, rows })
        })
    }

    fn page_use(&self) -> Result<PageUse> {
        self.read(pages_on)
    }

    fn compact(&self, full: bool) -> Result<CompactReport> {
        let before = self.page_use()?;
        // VACUUM cannot run inside a transaction: one statement per table, each
        // naming the schema (no session state is changed).
        let schema = super::ident(&self.schema);
        let verb = if full {
            "VACUUM (FULL, ANALYZE)"
        } else {
            "VACUUM (ANALYZE)"
        };
        for table in TABLES {
            self.outside_transaction(&format!("{verb} {schema}.{table}"))?;
        }
        let after = self.page_use()?;
        Ok(CompactReport {
            mode: if full { "full" } else { "incremental" },
            bytes_reclaimed: before.pages.saturating_sub(after.pages) * PAGE,
            before,
            after,
            incremental_vacuum: false,
            note: Some(
                "on PostgreSQL, compact runs VACUUM (with --full, VACUUM FULL, which locks \
                 each table while it rewrites it); autovacuum does the same on its own"
                    .to_string(),
            ),
        })
    }

    fn checkpoint(&self) -> Result<()> {
        Ok(())
    }

    fn reindex(&self) -> Result<u64> {
        // The search vector is a generated column: PostgreSQL keeps it and its index.
        const COUNT: &str = "SELECT count(*) FROM memory_entries";
        self.read(|c| Ok(get::<i64>(&row(c, COUNT, args![])?, 0, COUNT)? as u64))
    }

    fn forget_everywhere(
        &self,
        agent_id: i64,
        scope: &str,
        query: &Query,
        needles: &Needles,
        dry_run: bool,
    ) -> Result<ForgetEverywhereReport> {
        if dry_run {
            self.read(|c| forget_on(c, agent_id, scope, query, needles, true))
        } else {
            self.write(|c| forget_on(c, agent_id, scope, query, needles, false))
        }
    }

    fn query_read_only(
        &self,
        sql: &str,
        timeout: Duration,
        sink: &mut dyn QuerySink,
    ) -> Result<u64> {
        self.query_sandboxed(sql, timeout, sink)
    }
}
