//! `Memory::prune` in batches. A prune first turns its rule into a plan: the last
//! entry it removes in one of the two orders entries are kept in (cleanup order
//! `(importance, created_at, id)` over the primary key, or time order `(created_at,
//! id)` over the time index) and the agent's message number, so entries added while it
//! runs are never touched. The plan is stored in `memory_prunes` in the transaction of
//! the first batch and deleted in the transaction of the last, and each batch removes
//! the lowest entries up to the plan's bound. A prune killed between two batches leaves
//! its plan behind; the same prune run again finishes that plan (instead of applying a
//! relative rule such as `--keep-fraction` to what is left), and a different prune
//! replaces it.

use std::fmt;
use std::time::Instant;

use rusqlite::{Connection, OptionalExtension, params};

use super::memory::{Prune, PruneReport};
use super::{BatchSizer, Store};
use crate::error::{Error, Result, SqlContext};

/// The bound of a plan: the last entry it removes, in its order.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Bound {
    /// `(importance, created_at, id)`, the primary key's order.
    Cleanup(f64, i64, i64),
    /// `(created_at, id)`, the time index's order.
    Time(i64, i64),
}

/// A prune's plan, as stored in `memory_prunes`.
#[derive(Debug, Clone, PartialEq)]
struct Plan {
    rule: String,
    bound: Bound,
    /// The agent's message number when the plan was made; no later entry is removed.
    max_id: i64,
}

impl fmt::Display for Prune {
    /// The rule as the CLI spells it, which is how an interrupted prune is recognised.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Prune::KeepFraction(x) => write!(f, "keep-fraction {x}"),
            Prune::MinImportance(x) => write!(f, "min-importance {x}"),
            Prune::OlderThan(d) => write!(f, "older-than {}", humantime::format_duration(*d)),
            Prune::MaxBytes(n) => write!(f, "max-bytes {n}"),
        }
    }
}

// Each statement comes in the two orders; `?1` is the agent throughout.
const CLEANUP_COUNT: &str = "SELECT count(*), coalesce(sum(size_bytes), 0) FROM memory_entries
     WHERE agent_id = ?1 AND (importance, created_at, id) <= (?2, ?3, ?4) AND id <= ?5";
const TIME_COUNT: &str = "SELECT count(*), coalesce(sum(size_bytes), 0) FROM memory_entries
     WHERE agent_id = ?1 AND (created_at, id) <= (?3, ?4) AND id <= ?5";
// The last entry of the next batch: the ?6-th lowest still inside the plan.
const CLEANUP_BATCH_END: &str = "SELECT importance, created_at, id FROM memory_entries
     WHERE agent_id = ?1 AND (importance, created_at, id) <= (?2, ?3, ?4) AND id <= ?5
     ORDER BY importance, created_at, id LIMIT 1 OFFSET ?6 - 1";
const TIME_BATCH_END: &str = "SELECT NULL, created_at, id FROM memory_entries
     WHERE agent_id = ?1 AND (created_at, id) <= (?3, ?4) AND id <= ?5
     ORDER BY created_at, id LIMIT 1 OFFSET ?6 - 1";
const CLEANUP_DELETE: &str = "DELETE FROM memory_entries
     WHERE agent_id = ?1 AND (importance, created_at, id) <= (?2, ?3, ?4) AND id <= ?5
     RETURNING size_bytes";
const TIME_DELETE: &str = "DELETE FROM memory_entries
     WHERE agent_id = ?1 AND (created_at, id) <= (?3, ?4) AND id <= ?5
     RETURNING size_bytes";

impl Bound {
    /// A bound from its columns: no importance means time order.
    fn from_columns(importance: Option<f64>, created_at: i64, id: i64) -> Bound {
        match importance {
            Some(i) => Bound::Cleanup(i, created_at, id),
            None => Bound::Time(created_at, id),
        }
    }

    /// The bound as `?2, ?3, ?4` (`?2` is NULL in time order).
    fn values(self) -> (Option<f64>, i64, i64) {
        match self {
            Bound::Cleanup(i, c, id) => (Some(i), c, id),
            Bound::Time(c, id) => (None, c, id),
        }
    }

    fn pick(self, cleanup: &'static str, time: &'static str) -> &'static str {
        match self {
            Bound::Cleanup(..) => cleanup,
            Bound::Time(..) => time,
        }
    }
}

/// Runs `rule` over `agent_id`'s memory (see the module docs).
pub(crate) fn prune(
    store: &Store,
    agent_id: i64,
    rule: Prune,
    dry_run: bool,
) -> Result<PruneReport> {
    validate(rule)?;
    let now = store.now_micros();
    let label = rule.to_string();
    let mut report = PruneReport {
        removed_entries: 0,
        removed_bytes: 0,
        dry_run,
        batches: 0,
        resumed: false,
    };
    if dry_run {
        return store.snapshot(|c| {
            let (plan, resumed, _) = choose(c, agent_id, rule, &label, now)?;
            report.resumed = resumed;
            if let Some(plan) = plan {
                (report.removed_entries, report.removed_bytes) = count(c, agent_id, &plan)?;
            }
            Ok(report)
        });
    }
    // The plan is made from a snapshot, outside the write lock: finding the bound can
    // read many rows. Entries deleted meanwhile are simply not there to delete again.
    let (plan, resumed, other) = store.snapshot(|c| choose(c, agent_id, rule, &label, now))?;
    report.resumed = resumed;
    let Some(plan) = plan else {
        // Nothing to remove: this prune is complete, and replaces an interrupted one.
        if other {
            store.write(|tx| forget(tx, agent_id))?;
        }
        return Ok(report);
    };
    let mut sizer = BatchSizer::new(store);
    loop {
        let started = Instant::now();
        let rows = sizer.rows();
        let first = report.batches == 0;
        let step = store.write_bulk(|tx| {
            let plan = if first && !resumed {
                save(tx, agent_id, &plan, now)?;
                Some(plan.clone())
            } else {
                // Read back every time: another process may have finished the plan.
                stored(tx, agent_id)?
            };
            plan.map(|p| batch(tx, agent_id, &p, rows)).transpose()
        })?;
        let Some((entries, bytes, done)) = step else {
            return Ok(report);
        };
        report.batches += 1;
        report.removed_entries += entries;
        report.removed_bytes += bytes;
        if done {
            return Ok(report);
        }
        sizer.next(started.elapsed());
    }
}

/// The entries and bytes `plan` has left to remove.
fn count(c: &Connection, agent_id: i64, plan: &Plan) -> Result<(u64, u64)> {
    let sql = plan.bound.pick(CLEANUP_COUNT, TIME_COUNT);
    let (i, created_at, id) = plan.bound.values();
    let (n, bytes): (i64, i64) = c
        .prepare_cached(sql)
        .and_then(|mut s| {
            s.query_row(params![agent_id, i, created_at, id, plan.max_id], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
        })
        .sql(sql)?;
    Ok((n as u64, bytes as u64))
}

/// Reads `(importance or NULL, created_at, id)`, the columns every key query returns.
fn key_columns(r: &rusqlite::Row<'_>) -> rusqlite::Result<(Option<f64>, i64, i64)> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
}

fn validate(rule: Prune) -> Result<()> {
    match rule {
        Prune::KeepFraction(f) => super::agents::check_unit("keep fraction", f),
        Prune::MinImportance(x) => super::memory::validate_importance(x),
        Prune::OlderThan(_) | Prune::MaxBytes(_) => Ok(()),
    }
}

/// The plan to run: the stored one when it is this rule's (an interrupted run of the
/// same prune; then `.1` is true), otherwise a new one for `rule` (`None` when it
/// removes nothing; `.2` tells whether an interrupted prune of another rule is stored).
fn choose(
    c: &Connection,
    agent_id: i64,
    rule: Prune,
    label: &str,
    now: i64,
) -> Result<(Option<Plan>, bool, bool)> {
    match stored(c, agent_id)? {
        Some(p) if p.rule == label => Ok((Some(p), true, false)),
        other => Ok((plan(c, agent_id, rule, label, now)?, false, other.is_some())),
    }
}

/// A new plan for `rule` over the entries there are now.
fn plan(c: &Connection, agent_id: i64, rule: Prune, label: &str, now: i64) -> Result<Option<Plan>> {
    const NTH_LOWEST: &str = super::memory::nth_lowest!();
    const FREES: &str = super::memory::freeing!();
    // The highest entry below an importance.
    const BELOW: &str = "SELECT importance, created_at, id FROM memory_entries
         WHERE agent_id = ?1 AND importance < ?2
         ORDER BY importance DESC, created_at DESC, id DESC LIMIT 1";
    // The newest entry created before a time.
    const BEFORE: &str = "SELECT NULL, created_at, id FROM memory_entries
         WHERE agent_id = ?1 AND created_at < ?2 ORDER BY created_at DESC, id DESC LIMIT 1";
    const COUNTERS: &str =
        "SELECT entries, bytes, message_count FROM memory_counters WHERE agent_id = ?1";

    let (entries, bytes, max_id): (i64, i64, i64) = c
        .prepare_cached(COUNTERS)
        .and_then(|mut s| s.query_row([agent_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))))
        .sql(COUNTERS)?;
    let (sql, value): (&str, rusqlite::types::Value) = match rule {
        Prune::KeepFraction(f) => {
            let doomed = entries - (entries as f64 * f).floor() as i64;
            if doomed <= 0 {
                return Ok(None);
            }
            (NTH_LOWEST, doomed.into())
        }
        Prune::MinImportance(x) => (BELOW, x.into()),
        Prune::OlderThan(d) => {
            let cutoff = i64::try_from(d.as_micros())
                .ok()
                .and_then(|d| now.checked_sub(d))
                .ok_or_else(|| {
                    Error::invalid(format!(
                        "duration {} reaches before 1970",
                        humantime::format_duration(d)
                    ))
                })?;
            (BEFORE, cutoff.into())
        }
        Prune::MaxBytes(max) => {
            let excess = bytes.saturating_sub(i64::try_from(max).unwrap_or(i64::MAX));
            if excess <= 0 {
                return Ok(None);
            }
            (FREES, excess.into())
        }
    };
    let last = c
        .prepare_cached(sql)
        .and_then(|mut s| {
            s.query_row(params![agent_id, value], key_columns)
                .optional()
        })
        .sql(sql)?;
    Ok(last.map(|(importance, created_at, id)| Plan {
        rule: label.to_string(),
        bound: Bound::from_columns(importance, created_at, id),
        max_id,
    }))
}

/// Removes the next `rows` entries of `plan`; returns (entries, bytes, whether the plan
/// is complete). The transaction of the last batch also deletes the stored plan.
fn batch(tx: &Connection, agent_id: i64, plan: &Plan, rows: i64) -> Result<(u64, u64, bool)> {
    let (i, c, id) = plan.bound.values();
    let end_sql = plan.bound.pick(CLEANUP_BATCH_END, TIME_BATCH_END);
    let end = tx
        .prepare_cached(end_sql)
        .and_then(|mut s| {
            s.query_row(params![agent_id, i, c, id, plan.max_id, rows], key_columns)
                .optional()
        })
        .sql(end_sql)?;
    // Fewer than `rows` entries left: this batch is the rest of the plan.
    let upto = end.map_or(plan.bound, |(i, c, id)| Bound::from_columns(i, c, id));
    let done = upto == plan.bound;
    let (i, c, id) = upto.values();
    let delete = plan.bound.pick(CLEANUP_DELETE, TIME_DELETE);
    let (mut entries, mut bytes) = (0u64, 0u64);
    {
        let mut stmt = tx.prepare_cached(delete).sql(delete)?;
        let mut sizes = stmt
            .query(params![agent_id, i, c, id, plan.max_id])
            .sql(delete)?;
        while let Some(row) = sizes.next().sql(delete)? {
            entries += 1;
            bytes += row.get::<_, i64>(0).sql(delete)? as u64;
        }
    }
    if done {
        forget(tx, agent_id)?;
    }
    Ok((entries, bytes, done))
}

fn stored(c: &Connection, agent_id: i64) -> Result<Option<Plan>> {
    const GET: &str = "SELECT rule, importance, created_at, id, max_id FROM memory_prunes
         WHERE agent_id = ?1";
    c.prepare_cached(GET)
        .and_then(|mut s| {
            s.query_row([agent_id], |r| {
                Ok(Plan {
                    rule: r.get(0)?,
                    bound: Bound::from_columns(r.get(1)?, r.get(2)?, r.get(3)?),
                    max_id: r.get(4)?,
                })
            })
            .optional()
        })
        .sql(GET)
}

fn save(tx: &Connection, agent_id: i64, plan: &Plan, now: i64) -> Result<()> {
    const PUT: &str = "INSERT OR REPLACE INTO memory_prunes
         (agent_id, rule, importance, created_at, id, max_id, started_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";
    let (i, c, id) = plan.bound.values();
    tx.prepare_cached(PUT)
        .and_then(|mut s| s.execute(params![agent_id, plan.rule, i, c, id, plan.max_id, now]))
        .sql(PUT)?;
    Ok(())
}

fn forget(tx: &Connection, agent_id: i64) -> Result<()> {
    const DROP: &str = "DELETE FROM memory_prunes WHERE agent_id = ?1";
    tx.prepare_cached(DROP)
        .and_then(|mut s| s.execute([agent_id]))
        .sql(DROP)?;
    Ok(())
}
