//! Prune plans and batches on PostgreSQL, as on SQLite (see `store::memory::prune`):
//! each statement in the plan's two orders, the plan stored in `memory_prunes`.

use postgres::Client;

use super::memory::{FREEING, NTH_LOWEST};
use super::{args, exec, get, opt_row, row};
use crate::error::Result;
use crate::store::Prune;
use crate::store::memory::prune::{Bound, keep_fraction_deletes, older_than_cutoff};
use crate::store::memory::{PrunePlan, PruneStart};

// $1 is the agent throughout; $2..$4 the bound (importance unused in time order).
const CLEANUP_COUNT: &str =
    "SELECT count(*), coalesce(sum(size_bytes), 0)::int8 FROM memory_entries
     WHERE agent_id = $1 AND (importance, created_at, id) <= ($2, $3, $4) AND id <= $5";
const TIME_COUNT: &str = "SELECT count(*), coalesce(sum(size_bytes), 0)::int8 FROM memory_entries
     WHERE agent_id = $1 AND $2::float8 IS NULL AND (created_at, id) <= ($3, $4) AND id <= $5";
const CLEANUP_BATCH_END: &str = "SELECT importance, created_at, id FROM memory_entries
     WHERE agent_id = $1 AND (importance, created_at, id) <= ($2, $3, $4) AND id <= $5
     ORDER BY importance, created_at, id LIMIT 1 OFFSET $6 - 1";
const TIME_BATCH_END: &str = "SELECT NULL::float8, created_at, id FROM memory_entries
     WHERE agent_id = $1 AND $2::float8 IS NULL AND (created_at, id) <= ($3, $4) AND id <= $5
     ORDER BY created_at, id LIMIT 1 OFFSET $6 - 1";
const CLEANUP_DELETE: &str = "WITH gone AS (DELETE FROM memory_entries
     WHERE agent_id = $1 AND (importance, created_at, id) <= ($2, $3, $4) AND id <= $5
     RETURNING size_bytes) SELECT count(*), coalesce(sum(size_bytes), 0)::int8 FROM gone";
const TIME_DELETE: &str = "WITH gone AS (DELETE FROM memory_entries
     WHERE agent_id = $1 AND $2::float8 IS NULL AND (created_at, id) <= ($3, $4) AND id <= $5
     RETURNING size_bytes) SELECT count(*), coalesce(sum(size_bytes), 0)::int8 FROM gone";

fn pick(bound: Bound, cleanup: &'static str, time: &'static str) -> &'static str {
    match bound {
        Bound::Cleanup(..) => cleanup,
        Bound::Time(..) => time,
    }
}

/// The plan to run: the stored one when it is this rule's, else a new one.
pub(super) fn start(
    c: &mut Client,
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
    if count && let Some(plan) = &start.plan {
        let sql = pick(plan.bound, CLEANUP_COUNT, TIME_COUNT);
        let (i, created_at, id) = plan.bound.values();
        let r = row(c, sql, args![agent_id, i, created_at, id, plan.max_id])?;
        let (n, bytes): (i64, i64) = (get(&r, 0, sql)?, get(&r, 1, sql)?);
        start.left = (n as u64, bytes as u64);
    }
    Ok(start)
}

/// `(importance or NULL, created_at, id)`, the columns every key query returns.
fn key_columns(r: &postgres::Row, sql: &str) -> Result<(Option<f64>, i64, i64)> {
    Ok((get(r, 0, sql)?, get(r, 1, sql)?, get(r, 2, sql)?))
}

fn plan(
    c: &mut Client,
    agent_id: i64,
    rule: Prune,
    key: &str,
    now: i64,
) -> Result<Option<PrunePlan>> {
    const BELOW: &str = "SELECT importance, created_at, id FROM memory_entries
         WHERE agent_id = $1 AND importance < $2
         ORDER BY importance DESC, created_at DESC, id DESC LIMIT 1";
    const BEFORE: &str = "SELECT NULL::float8, created_at, id FROM memory_entries
         WHERE agent_id = $1 AND created_at < $2 ORDER BY created_at DESC, id DESC LIMIT 1";
    const COUNTERS: &str =
        "SELECT entries, bytes, message_count FROM memory_counters WHERE agent_id = $1";
    let r = row(c, COUNTERS, args![agent_id])?;
    let (entries, bytes, max_id): (i64, i64, i64) = (
        get(&r, 0, COUNTERS)?,
        get(&r, 1, COUNTERS)?,
        get(&r, 2, COUNTERS)?,
    );
    let last = match rule {
        Prune::KeepFraction(f) => {
            let doomed = keep_fraction_deletes(entries, f);
            if doomed <= 0 {
                return Ok(None);
            }
            opt_row(c, NTH_LOWEST, args![agent_id, doomed])?
                .map(|r| key_columns(&r, NTH_LOWEST))
                .transpose()?
        }
        Prune::MinImportance(x) => opt_row(c, BELOW, args![agent_id, x])?
            .map(|r| key_columns(&r, BELOW))
            .transpose()?,
        Prune::OlderThan(d) => {
            let cutoff = older_than_cutoff(d, now)?;
            opt_row(c, BEFORE, args![agent_id, cutoff])?
                .map(|r| key_columns(&r, BEFORE))
                .transpose()?
        }
        Prune::MaxBytes(max) => {
            let excess = bytes.saturating_sub(i64::try_from(max).unwrap_or(i64::MAX));
            if excess <= 0 {
                return Ok(None);
            }
            opt_row(c, FREEING, args![agent_id, excess])?
                .map(|r| key_columns(&r, FREEING))
                .transpose()?
        }
    };
    Ok(last.map(|(importance, created_at, id)| PrunePlan {
        rule: key.to_string(),
        bound: Bound::from_columns(importance, created_at, id),
        max_id,
    }))
}

/// One batch (see the SQLite engine's): the plan saved or read back, the next `rows`
/// entries removed; the last batch deletes the stored plan.
pub(super) fn batch(
    c: &mut Client,
    agent_id: i64,
    first: Option<&PrunePlan>,
    now: i64,
    rows: i64,
) -> Result<Option<(u64, u64, bool)>> {
    let plan = match first {
        Some(plan) => {
            save(c, agent_id, plan, now)?;
            plan.clone()
        }
        None => match stored(c, agent_id)? {
            Some(plan) => plan,
            None => return Ok(None),
        },
    };
    let (i, cr, id) = plan.bound.values();
    let end_sql = pick(plan.bound, CLEANUP_BATCH_END, TIME_BATCH_END);
    let end = opt_row(c, end_sql, args![agent_id, i, cr, id, plan.max_id, rows])?
        .map(|r| key_columns(&r, end_sql))
        .transpose()?;
    let upto = end.map_or(plan.bound, |(i, c, id)| Bound::from_columns(i, c, id));
    let done = upto == plan.bound;
    let (i, cr, id) = upto.values();
    let delete = pick(plan.bound, CLEANUP_DELETE, TIME_DELETE);
    let r = row(c, delete, args![agent_id, i, cr, id, plan.max_id])?;
    let (entries, bytes): (i64, i64) = (get(&r, 0, delete)?, get(&r, 1, delete)?);
    if done {
        forget(c, agent_id)?;
    }
    Ok(Some((entries as u64, bytes as u64, done)))
}

fn stored(c: &mut Client, agent_id: i64) -> Result<Option<PrunePlan>> {
    const GET: &str = "SELECT rule, importance, created_at, id, max_id FROM memory_prunes
         WHERE agent_id = $1";
    opt_row(c, GET, args![agent_id])?
        .map(|r| {
            Ok(PrunePlan {
                rule: get(&r, 0, GET)?,
                bound: Bound::from_columns(get(&r, 1, GET)?, get(&r, 2, GET)?, get(&r, 3, GET)?),
                max_id: get(&r, 4, GET)?,
            })
        })
        .transpose()
}

fn save(c: &mut Client, agent_id: i64, plan: &PrunePlan, now: i64) -> Result<()> {
    const PUT: &str = "INSERT INTO memory_prunes
         (agent_id, rule, importance, created_at, id, max_id, started_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (agent_id) DO UPDATE SET rule = excluded.rule,
            importance = excluded.importance, created_at = excluded.created_at,
            id = excluded.id, max_id = excluded.max_id, started_at = excluded.started_at";
    let (i, cr, id) = plan.bound.values();
    exec(
        c,
        PUT,
        args![agent_id, plan.rule.as_str(), i, cr, id, plan.max_id, now],
    )?;
    Ok(())
}

pub(super) fn forget(c: &mut Client, agent_id: i64) -> Result<()> {
    const DROP: &str = "DELETE FROM memory_prunes WHERE agent_id = $1";
    exec(c, DROP, args![agent_id])?;
    Ok(())
}
