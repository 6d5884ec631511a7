//! `check`: the file's health in one report: SQLite's integrity and foreign-key checks,
//! the schema marks, row counts, and whether the trigger-kept counters equal the
//! real counts.

use std::collections::BTreeMap;

use rusqlite::Connection;

use super::connection::KNOWN_TABLES;
use super::stmt::SqlContext;
use super::{APPLICATION_ID, SCHEMA_VERSION, Sqlite};
use crate::error::{Error, Result};
use crate::store::CheckReport;

/// A free fraction above this gets a note suggesting `agentstore compact`.
const FREE_NOTE_FRACTION: f64 = 0.25;

impl Sqlite {
    /// Checks the whole file. Reads only; runs in one snapshot. A file so damaged that
    /// SQLite cannot finish a step is a problem in the report, not an error.
    ///
    /// # Errors
    /// SQLite errors, other than damage, that prevent the check from running.
    pub(super) fn check_report(&self) -> Result<CheckReport> {
        self.snapshot(|c| {
            let mut report = CheckReport {
                ok: false,
                integrity: Vec::new(),
                foreign_key_violations: 0,
                schema_version: 0,
                journal_mode: String::new(),
                row_counts: BTreeMap::new(),
                problems: Vec::new(),
                notes: Vec::new(),
                pages: None,
            };
            let damage = |e: Error, report: &mut CheckReport| -> Result<()> {
                if e.is_damage() {
                    report.problems.push(format!("the file is damaged: {e}"));
                    Ok(())
                } else {
                    Err(e)
                }
            };
            if let Err(e) = marks(c, &mut report) {
                damage(e, &mut report)?;
            }
            match integrity(c) {
                Ok(lines) => {
                    if lines != ["ok"] {
                        let found = lines.iter().map(|l| format!("integrity: {l}"));
                        report.problems.extend(found);
                    }
                    report.integrity = lines;
                    if let Err(e) = details(c, &mut report) {
                        damage(e, &mut report)?;
                    }
                }
                Err(e) => {
                    report.integrity = vec![e.to_string()];
                    damage(e, &mut report)?;
                }
            }
            report.ok = report.problems.is_empty();
            Ok(report)
        })
    }
}

fn integrity(c: &Connection) -> Result<Vec<String>> {
    const INTEGRITY: &str = "PRAGMA integrity_check";
    let mut stmt = c.prepare(INTEGRITY).sql(INTEGRITY)?;
    let lines = stmt
        .query_map([], |r| r.get::<_, String>(0))
        .sql(INTEGRITY)?
        .collect::<rusqlite::Result<Vec<_>>>()
        .sql(INTEGRITY)?;
    Ok(lines)
}

/// Everything after the integrity check, written into `report`.
fn details(c: &Connection, report: &mut CheckReport) -> Result<()> {
    let problems = &mut report.problems;
    const FK: &str = "SELECT count(*) FROM pragma_foreign_key_check";
    report.foreign_key_violations = c.query_row(FK, [], |r| r.get(0)).sql(FK)?;
    let foreign_key_violations = report.foreign_key_violations;
    if foreign_key_violations > 0 {
        problems.push(format!(
            "{foreign_key_violations} rows refer to missing parents"
        ));
    }

    // A prune killed between its batches: not damage (each batch was whole), but the
    // operator should finish it.
    const PRUNES: &str = "SELECT a.name, p.rule FROM memory_prunes p
         JOIN agents a ON a.id = p.agent_id ORDER BY a.name";
    let mut stmt = c.prepare(PRUNES).sql(PRUNES)?;
    let pending = stmt
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
        .sql(PRUNES)?;
    for row in pending {
        let (agent, rule) = row.sql(PRUNES)?;
        report.notes.push(format!(
            "agent '{agent}': `memory prune --{rule}` was interrupted; run it again to finish it"
        ));
    }

    let row_counts = &mut report.row_counts;
    for table in KNOWN_TABLES {
        let sql = format!("SELECT count(*) FROM {table}");
        let n: u64 = c.query_row(&sql, [], |r| r.get(0)).sql(&sql)?;
        row_counts.insert(table.to_string(), n);
    }

    // Counters against the real counts. The importance sum is a float kept by
    // adding and subtracting, so it is compared with a tolerance.
    const COUNTERS: &str = "SELECT a.name, c.entries, c.bytes,
            c.importance_sum, c.message_count,
            count(m.id), coalesce(sum(m.size_bytes), 0),
            coalesce(sum(m.importance), 0.0), coalesce(max(m.id), 0)
       FROM agents a JOIN memory_counters c ON c.agent_id = a.id
            LEFT JOIN memory_entries m ON m.agent_id = a.id
      GROUP BY a.id ORDER BY a.name";
    let mut stmt = c.prepare(COUNTERS).sql(COUNTERS)?;
    let mut rows = stmt.query([]).sql(COUNTERS)?;
    while let Some(r) = rows.next().sql(COUNTERS)? {
        let name: String = r.get(0).sql(COUNTERS)?;
        let kept: (i64, i64, f64, i64) = (
            r.get(1).sql(COUNTERS)?,
            r.get(2).sql(COUNTERS)?,
            r.get(3).sql(COUNTERS)?,
            r.get(4).sql(COUNTERS)?,
        );
        let real: (i64, i64, f64, i64) = (
            r.get(5).sql(COUNTERS)?,
            r.get(6).sql(COUNTERS)?,
            r.get(7).sql(COUNTERS)?,
            r.get(8).sql(COUNTERS)?,
        );
        crate::store::invariants::counter_problems(&name, kept, real, problems);
    }

    // Entry ids are message numbers, unique per agent by construction; the
    // clustered key does not enforce it, so look.
    const DUPLICATES: &str = "SELECT a.name, m.id, count(*) FROM memory_entries m
         JOIN agents a ON a.id = m.agent_id
        GROUP BY m.agent_id, m.id HAVING count(*) > 1 LIMIT 10";
    let mut stmt = c.prepare(DUPLICATES).sql(DUPLICATES)?;
    let mut rows = stmt.query([]).sql(DUPLICATES)?;
    while let Some(r) = rows.next().sql(DUPLICATES)? {
        let (name, id, n): (String, i64, i64) = (
            r.get(0).sql(DUPLICATES)?,
            r.get(1).sql(DUPLICATES)?,
            r.get(2).sql(DUPLICATES)?,
        );
        problems.push(format!("agent '{name}': entry id {id} appears {n} times"));
    }

    // The response-time buckets against the log they summarise.
    const BUCKETS: &str = "SELECT a.name,
            (SELECT coalesce(sum(responses), 0) FROM response_time_buckets b WHERE b.agent_id = a.id),
            (SELECT count(*) FROM response_log l WHERE l.agent_id = a.id AND l.outcome <> 'error')
       FROM agents a ORDER BY a.name";
    let mut stmt = c.prepare(BUCKETS).sql(BUCKETS)?;
    let mut rows = stmt.query([]).sql(BUCKETS)?;
    while let Some(r) = rows.next().sql(BUCKETS)? {
        let (name, kept, real): (String, i64, i64) = (
            r.get(0).sql(BUCKETS)?,
            r.get(1).sql(BUCKETS)?,
            r.get(2).sql(BUCKETS)?,
        );
        if kept != real {
            problems.push(format!(
                "agent '{name}': response time buckets count {kept} responses, the log has {real}"
            ));
        }
    }

    let pages = super::compact::page_use(c)?;
    if pages.free_fraction() > FREE_NOTE_FRACTION {
        report.notes.push(format!(
            "{:.0}% of the file's pages are free ({} of {}); `agentstore compact` gives them back",
            pages.free_fraction() * 100.0,
            pages.free_pages,
            pages.pages
        ));
    }
    report.pages = Some(pages);
    let problems = &mut report.problems;

    // Ranges and relations every row keeps (an import refuses the same).
    for (_, sql) in CHECKS {
        let mut stmt = c.prepare(sql).sql(sql)?;
        let mut rows = stmt.query([]).sql(sql)?;
        while let Some(r) = rows.next().sql(sql)? {
            let (name, detail): (String, String) = (r.get(0).sql(sql)?, r.get(1).sql(sql)?);
            problems.push(format!("{name}: {detail}"));
        }
    }

    // The fuzzy word index: one posting per distinct word of each indexed message.
    const POSTINGS: &str = "SELECT (SELECT count(*) FROM response_words),
            (SELECT coalesce(sum(word_count), 0) FROM response_cache WHERE indexed = 1)";
    let (postings, words): (i64, i64) = c
        .query_row(POSTINGS, [], |r| Ok((r.get(0)?, r.get(1)?)))
        .sql(POSTINGS)?;
    if postings != words {
        problems.push(format!(
            "the response word index has {postings} postings for {words} words of cached messages"
        ));
    }

    // The memory search index against the entries: every entry indexed once (one
    // docsize row per indexed document, by rowid), nothing else indexed.
    // Entries waiting in memory_unindexed count as indexed, and indexed entries
    // waiting in memory_deindex as gone (see schema.sql).
    const SEARCH: &str = "SELECT
            (SELECT count(*) FROM memory_entries m
              WHERE NOT EXISTS (SELECT 1 FROM memory_search_docsize d WHERE d.id = m.doc)
                AND NOT EXISTS (SELECT 1 FROM memory_unindexed u WHERE u.doc = m.doc)),
            (SELECT count(*) FROM memory_search_docsize d
              WHERE NOT EXISTS (SELECT 1 FROM memory_entries m WHERE m.doc = d.id)
                AND NOT EXISTS (SELECT 1 FROM memory_deindex x WHERE x.doc = d.id))
          + (SELECT count(*) FROM memory_unindexed u
              WHERE NOT EXISTS (SELECT 1 FROM memory_entries m WHERE m.doc = u.doc))";
    let (missing, extra): (i64, i64) = c
        .query_row(SEARCH, [], |r| Ok((r.get(0)?, r.get(1)?)))
        .sql(SEARCH)?;
    if missing > 0 {
        problems.push(format!(
            "the memory search index lacks {missing} entries (`agentstore check --repair` rebuilds it)"
        ));
    }
    if extra > 0 {
        problems.push(format!(
            "the memory search index holds {extra} entries that are not in memory \
             (`agentstore check --repair` rebuilds it)"
        ));
    }

    Ok(())
}

impl Sqlite {
    /// Rebuilds the memory search index from the entries, in one transaction.
    pub(super) fn reindex(&self) -> Result<u64> {
        const REBUILD: &str = "INSERT INTO memory_search (memory_search) VALUES ('rebuild')";
        const COUNT: &str = "SELECT count(*) FROM memory_entries";
        self.write_bulk(|tx| {
            super::stmt::exec(tx, "DELETE FROM memory_deindex", [])?;
            super::stmt::exec(tx, "DELETE FROM memory_unindexed", [])?;
            super::stmt::exec(tx, REBUILD, [])?;
            super::stmt::row(tx, COUNT, [], |r| r.get(0))
        })
    }
}

/// The schema marks, from the file header: readable even when other pages are damaged.
fn marks(c: &Connection, report: &mut CheckReport) -> Result<()> {
    let problems = &mut report.problems;
    const MARKS: &str = "SELECT (SELECT user_version FROM pragma_user_version), \
         (SELECT application_id FROM pragma_application_id), \
         (SELECT journal_mode FROM pragma_journal_mode)";
    let (schema_version, app_id, journal_mode): (i64, i32, String) = c
        .query_row(MARKS, [], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .sql(MARKS)?;
    if schema_version != SCHEMA_VERSION {
        problems.push(format!(
            "schema version {schema_version}, expected {SCHEMA_VERSION}"
        ));
    }
    if app_id != APPLICATION_ID {
        problems.push(format!(
            "application_id {app_id:#x}, expected {APPLICATION_ID:#x}"
        ));
    }

    report.schema_version = schema_version;
    report.journal_mode = journal_mode;
    Ok(())
}

/// The part of `check` that looks for rows outside these ranges: one query per
/// relation, each naming the agent (or scope) and what is wrong. Each returns at most
/// a few rows of `(name, detail)`.
const CHECKS: &[(&str, &str)] = &[
    (
        "memory entry ids below 1",
        "SELECT 'agent ' || quote(a.name), 'memory entry id ' || m.id || ' is below 1' FROM memory_entries m
           JOIN agents a ON a.id = m.agent_id WHERE m.id < 1 LIMIT 5",
    ),
    (
        "message counters out of range",
        "SELECT 'agent ' || quote(a.name), 'message counter ' || c.message_count || ' is out of range'
           FROM memory_counters c JOIN agents a ON a.id = c.agent_id
          WHERE c.message_count < 0 OR c.message_count > 9007199254740992 LIMIT 5",
    ),
    (
        "tool counters",
        "SELECT 'agent ' || quote(a.name), 'tool ' || quote(t.tool) || ': ' ||
                CASE WHEN t.cache_hits > t.total_calls THEN 'more cache hits than calls'
                     WHEN t.errors > t.total_calls THEN 'more errors than calls'
                     WHEN t.total_calls > 9007199254740992 THEN 'a call count out of range'
                     ELSE 'total time out of range' END
           FROM tool_counters t JOIN agents a ON a.id = t.agent_id
          WHERE t.cache_hits > t.total_calls OR t.errors > t.total_calls
             OR t.total_calls > 9007199254740992 OR t.total_time > 3.16224e11 LIMIT 5",
    ),
    (
        "cached responses",
        "SELECT 'agent ' || quote(a.name), 'cached response #' || r.id || ': ' ||
                CASE WHEN r.message = '' THEN 'an empty message'
                     WHEN r.response = '' THEN 'an empty response'
                     WHEN r.last_used_at < r.created_at THEN 'last used before it was created'
                     ELSE 'a hit count out of range' END
           FROM response_cache r JOIN agents a ON a.id = r.agent_id
          WHERE r.message = '' OR r.response = '' OR r.last_used_at < r.created_at
             OR r.hits > 9007199254740992 LIMIT 5",
    ),
    (
        "response times",
        "SELECT 'agent ' || quote(a.name), 'response log row ' || l.id || ': a time of ' || l.duration || ' s is out of range'
           FROM response_log l JOIN agents a ON a.id = l.agent_id
          WHERE NOT (l.duration BETWEEN 0 AND 31622400) LIMIT 5",
    ),
    (
        "target response times",
        "SELECT 'agent ' || quote(a.name), 'target response time ' || a.target_response_time || ' s is out of range'
           FROM agents a WHERE NOT (a.target_response_time BETWEEN 1e-6 AND 31622400) LIMIT 5",
    ),
    (
        "cached tool results",
        "SELECT 'tool scope ' || quote(t.scope), 'cached result of ' || quote(t.tool) || ' expires before it was created'
           FROM tool_cache t WHERE t.expires_at < t.created_at LIMIT 5",
    ),
];

#[cfg(test)]
mod tests {
    use super::CHECKS;
    use crate::store::invariants::{MAX_COUNT, MAX_RESPONSE_SECONDS, MAX_TOTAL_SECONDS};

    /// The SQL spells the limits out; they must be these constants.
    #[test]
    fn the_checks_use_the_constants() {
        let all: String = CHECKS.iter().map(|(_, sql)| *sql).collect();
        assert!(all.contains(&MAX_COUNT.to_string()));
        assert!(all.contains(&format!("{}", MAX_RESPONSE_SECONDS as u64)));
        assert!(all.contains(&format!("{MAX_TOTAL_SECONDS:e}")));
    }
}
