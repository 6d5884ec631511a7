//! `check`: the file's health in one report: SQLite's integrity and foreign-key checks,
//! the schema marks, row counts, and whether the trigger-kept counters equal the
//! real counts.

use std::collections::BTreeMap;

use serde::Serialize;

use super::connection::KNOWN_TABLES;
use super::{APPLICATION_ID, SCHEMA_VERSION, Store};
use rusqlite::Connection;

use crate::error::{Error, Result, SqlContext};

/// What `check` found. `problems` is empty when all is well.
#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    /// True when no problem was found.
    pub ok: bool,
    /// `PRAGMA integrity_check` output (`["ok"]` when healthy).
    pub integrity: Vec<String>,
    /// Rows reported by `PRAGMA foreign_key_check`.
    pub foreign_key_violations: u64,
    /// `PRAGMA user_version`.
    pub schema_version: i64,
    /// `PRAGMA journal_mode`.
    pub journal_mode: String,
    /// Rows per table.
    pub row_counts: BTreeMap<String, u64>,
    /// Every problem, one line each.
    pub problems: Vec<String>,
    /// Things worth knowing that are not problems (an interrupted prune), one line each.
    pub notes: Vec<String>,
    /// Pages in the file, and how many are free (space `compact` can give back).
    pub pages: Option<super::PageUse>,
}

/// A free fraction above this gets a note suggesting `agentstore compact`.
const FREE_NOTE_FRACTION: f64 = 0.25;

impl Store {
    /// Checks the whole file. Reads only; runs in one snapshot. A file so damaged that
    /// SQLite cannot finish a step is a problem in the report, not an error.
    ///
    /// # Errors
    /// SQLite errors, other than damage, that prevent the check from running.
    pub fn check(&self) -> Result<CheckReport> {
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
        if kept.0 != real.0 {
            problems.push(format!(
                "agent '{name}': counter says {} entries, table has {}",
                kept.0, real.0
            ));
        }
        if kept.1 != real.1 {
            problems.push(format!(
                "agent '{name}': counter says {} bytes, table has {}",
                kept.1, real.1
            ));
        }
        if (kept.2 - real.2).abs() > 1e-6 * real.2.abs().max(1.0) {
            problems.push(format!(
                "agent '{name}': importance sum counter {} differs from {}",
                kept.2, real.2
            ));
        }
        if kept.3 < real.3 {
            problems.push(format!(
                "agent '{name}': message counter {} is below the highest entry id {}",
                kept.3, real.3
            ));
        }
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

    let pages = super::PageUse::read(c)?;
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
    for (_, sql) in super::invariants::CHECKS {
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

    Ok(())
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
