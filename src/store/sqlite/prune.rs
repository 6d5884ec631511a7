//! Prune plans and batches on SQLite: each statement comes in the two orders a plan
//! can have (cleanup order over the primary key, time order over the time index), and
//! the plan is stored in `memory_prunes` (see `store::memory::prune`).

use rusqlite::{Connection, params};

use super::stmt::{SqlContext, exec, opt_row, row};
use crate::error::Result;
use crate::store::Prune;
use crate::store::memory::prune::{Bound, keep_fraction_deletes, older_than_cutoff};
use crate::store::memory::{PrunePlan, PruneStart};

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

/// One of the two statements, by the bound's order.
fn pick(bound: Bound, cleanup: &'static str, time: &'static str) -> &'static str {
    match bound {
        Bound::Cleanup(..) => cleanup,
        Bound::Time(..) => time,
    }
}

/// The plan to run: the stored one when it is this rule's (an interrupted run of the
/// same prune), otherwise a new one for `rule`; with `count`, what it has left.
pub(super) fn start(
    c: &Connection,
    agent_id: i64,
    rule: Prune,
    key: &str,
    now: i64,
    count: bool,
) -> Result<PruneStart> {
    let mut start = match stored(c, agent_id)? {
        Some(p) if p.rule == key => PruneStart {
            plan: Some(p),
            resumed: true,
            other: false,
            left: (0, 0),
        },
        other => PruneStart {
            plan: plan(c, agent_id, rule, key, now)?,
            resumed: false,
            other: other.is_some(),
            left: (0, 0),
        },
    };
    if count {
        if let Some(plan) = &start.plan {
            start.left = left(c, agent_id, plan)?;
        }
    }
    Ok(start)
}

/// The entries and bytes `plan` has left to remove.
fn left(c: &Connection, agent_id: i64, plan: &PrunePlan) -> Result<(u64, u64)> {
    let sql = pick(plan.bound, CLEANUP_COUNT, TIME_COUNT);
    let (i, created_at, id) = plan.bound.values();
    let (n, bytes): (i64, i64) = row(
        c,
        sql,
        params![agent_id, i, created_at, id, plan.max_id],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    Ok((n as u64, bytes as u64))
}

/// Reads `(importance or NULL, created_at, id)`, the columns every key query returns.
fn key_columns(r: &rusqlite::Row<'_>) -> rusqlite::Result<(Option<f64>, i64, i64)> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
}

/// A new plan for `rule` over the entries there are now.
fn plan(
    c: &Connection,
    agent_id: i64,
    rule: Prune,
    key: &str,
    now: i64,
) -> Result<Option<PrunePlan>> {
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

    let (entries, bytes, max_id): (i64, i64, i64) = row(c, COUNTERS, [agent_id], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
    })?;
    let (sql, value): (&str, rusqlite::types::Value) = match rule {
        Prune::KeepFraction(f) => {
            let doomed = keep_fraction_deletes(entries, f);
            if doomed <= 0 {
                return Ok(None);
            }
            (NTH_LOWEST, doomed.into())
        }
        Prune::MinImportance(x) => (BELOW, x.into()),
        Prune::OlderThan(d) => (BEFORE, older_than_cutoff(d, now)?.into()),
        Prune::MaxBytes(max) => {
            let excess = bytes.saturating_sub(i64::try_from(max).unwrap_or(i64::MAX));
            if excess <= 0 {
                return Ok(None);
            }
            (FREES, excess.into())
        }
    };
    let last = opt_row(c, sql, params![agent_id, value], key_columns)?;
    Ok(last.map(|(importance, created_at, id)| PrunePlan {
        rule: key.to_string(),
        bound: Bound::from_columns(importance, created_at, id),
        max_id,
    }))
}

/// One batch: saves `first` (or reads the stored plan back), then removes the next
/// `rows` entries of the plan; (entries, bytes, whether the plan is complete). The
/// transaction of the last batch also deletes the stored plan.
pub(super) fn batch(
    tx: &Connection,
    agent_id: i64,
    first: Option<&PrunePlan>,
    now: i64,
    rows: i64,
) -> Result<Option<(u64, u64, bool)>> {
    let plan = match first {
        Some(plan) => {
            save(tx, agent_id, plan, now)?;
            plan.clone()
        }
        None => match stored(tx, agent_id)? {
            Some(plan) => plan,
            None => return Ok(None),
        },
    };
    let (i, c, id) = plan.bound.values();
    let end_sql = pick(plan.bound, CLEANUP_BATCH_END, TIME_BATCH_END);
    let end = opt_row(
        tx,
        end_sql,
        params![agent_id, i, c, id, plan.max_id, rows],
        key_columns,
    )?;
    // Fewer than `rows` entries left: this batch is the rest of the plan.
    let upto = end.map_or(plan.bound, |(i, c, id)| Bound::from_columns(i, c, id));
    let done = upto == plan.bound;
    let (i, c, id) = upto.values();
    let delete = pick(plan.bound, CLEANUP_DELETE, TIME_DELETE);
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
    Ok(Some((entries, bytes, done)))
}

fn stored(c: &Connection, agent_id: i64) -> Result<Option<PrunePlan>> {
    const GET: &str = "SELECT rule, importance, created_at, id, max_id FROM memory_prunes
         WHERE agent_id = ?1";
    opt_row(c, GET, [agent_id], |r| {
        Ok(PrunePlan {
            rule: r.get(0)?,
            bound: Bound::from_columns(r.get(1)?, r.get(2)?, r.get(3)?),
            max_id: r.get(4)?,
        })
    })
}

fn save(tx: &Connection, agent_id: i64, plan: &PrunePlan, now: i64) -> Result<()> {
    const PUT: &str = "INSERT OR REPLACE INTO memory_prunes
         (agent_id, rule, importance, created_at, id, max_id, started_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";
    let (i, c, id) = plan.bound.values();
    exec(
        tx,
        PUT,
        params![agent_id, plan.rule, i, c, id, plan.max_id, now],
    )?;
    Ok(())
}

pub(super) fn forget(tx: &Connection, agent_id: i64) -> Result<()> {
    const DROP: &str = "DELETE FROM memory_prunes WHERE agent_id = ?1";
    exec(tx, DROP, [agent_id])?;
    Ok(())
}
