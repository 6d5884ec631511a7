//! `check`: the file's health in one report: SQLite's integrity and foreign-key checks,
//! the schema marks, row counts, and whether the trigger-kept counters equal the
//! real counts.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{APPLICATION_ID, SCHEMA_VERSION, Store};
use crate::error::{Result, SqlContext};

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
}

const TABLES: [&str; 3] = ["agents", "memory_counters", "memory_entries"];

impl Store {
    /// Checks the whole file. Reads only; runs in one snapshot.
    ///
    /// # Errors
    /// SQLite errors that prevent the check from running at all.
    pub fn check(&self) -> Result<CheckReport> {
        self.snapshot(|c| {
            let mut problems = Vec::new();

            const INTEGRITY: &str = "PRAGMA integrity_check";
            let mut stmt = c.prepare(INTEGRITY).sql(INTEGRITY)?;
            let integrity = stmt
                .query_map([], |r| r.get::<_, String>(0))
                .sql(INTEGRITY)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .sql(INTEGRITY)?;
            if integrity != ["ok"] {
                problems.extend(integrity.iter().map(|l| format!("integrity: {l}")));
            }

            const FK: &str = "SELECT count(*) FROM pragma_foreign_key_check";
            let foreign_key_violations: u64 = c.query_row(FK, [], |r| r.get(0)).sql(FK)?;
            if foreign_key_violations > 0 {
                problems.push(format!(
                    "{foreign_key_violations} rows refer to missing parents"
                ));
            }

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

            let mut row_counts = BTreeMap::new();
            for table in TABLES {
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

            Ok(CheckReport {
                ok: problems.is_empty(),
                integrity,
                foreign_key_violations,
                schema_version,
                journal_mode,
                row_counts,
                problems,
            })
        })
    }
}
