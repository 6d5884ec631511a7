//! The response log on SQLite: `response_log` rows with their duration buckets
//! (`response_time_buckets`, trigger-kept), batched hits, the retention trim, exact
//! percentiles from the buckets, and the target's tuning.

use rusqlite::{Connection, params};

use super::super::stmt::{SqlContext, exec, opt_row, row, rows};
use crate::error::{Error, Result};
use crate::store::responses::{TuneRule, time_bucket, tuning};
use crate::store::{LoggedResponse, ResponseTimeStats, TimeFigures, Tuning};

/// Log rows deleted, at most, by each log write that finds the log over its retention.
const LOG_TRIM_BATCH: i64 = 5000;

pub(super) fn hits_on(tx: &Connection, hits: &[(i64, u64, i64)]) -> Result<()> {
    const HIT: &str = "UPDATE response_cache SET hits = hits + ?2, \
         last_used_at = max(last_used_at, ?3) WHERE id = ?1";
    let mut stmt = tx.prepare_cached(HIT).sql(HIT)?;
    for (id, n, at) in hits {
        stmt.execute(params![id, *n as i64, at]).sql(HIT)?;
    }
    Ok(())
}

/// Appends log rows (their duration buckets follow by trigger).
pub(in crate::store::sqlite) fn insert_log(
    tx: &Connection,
    agent_id: i64,
    rows: &[LoggedResponse],
) -> Result<()> {
    const INSERT: &str = "INSERT INTO response_log (agent_id, at, duration, bucket, outcome) \
         VALUES (?1, ?2, ?3, ?4, ?5)";
    let mut insert = tx.prepare_cached(INSERT).sql(INSERT)?;
    for r in rows {
        insert
            .execute(params![
                agent_id,
                r.at,
                r.duration,
                time_bucket(r.duration),
                r.outcome.as_str()
            ])
            .sql(INSERT)?;
    }
    Ok(())
}

/// Appends log rows, then trims the agent's log to its most recent `keep` rows.
pub(super) fn log_on(
    tx: &Connection,
    agent_id: i64,
    rows: &[LoggedResponse],
    keep: u64,
) -> Result<()> {
    const CUTOFF: &str = "SELECT id FROM response_log WHERE agent_id = ?1 \
         ORDER BY id DESC LIMIT 1 OFFSET ?2";
    const TRIM: &str = "DELETE FROM response_log WHERE id IN (SELECT id FROM response_log \
         WHERE agent_id = ?1 AND id <= ?2 ORDER BY id LIMIT ?3)";
    if rows.is_empty() {
        return Ok(());
    }
    let keep = i64::try_from(keep).unwrap_or(i64::MAX);
    insert_log(tx, agent_id, rows)?;
    let cutoff: Option<i64> = opt_row(tx, CUTOFF, params![agent_id, keep], |r| r.get(0))?;
    if let Some(cutoff) = cutoff {
        exec(tx, TRIM, params![agent_id, cutoff, LOG_TRIM_BATCH])?;
    }
    Ok(())
}

pub(super) fn target_on(c: &Connection, agent_id: i64) -> Result<f64> {
    const TARGET: &str = "SELECT target_response_time FROM agents WHERE id = ?1";
    row(c, TARGET, [agent_id], |r| r.get(0))
}

pub(super) fn entries_on(c: &Connection, agent_id: i64) -> Result<u64> {
    const COUNT: &str = "SELECT count(*) FROM response_cache WHERE agent_id = ?1";
    row(c, COUNT, [agent_id], |r| r.get::<_, i64>(0)).map(|n| n as u64)
}

/// The response-time stats, in SQL: one aggregate pass over the duration buckets, and
/// each percentile a walk from the nearer end of its bucket.
pub(super) fn time_stats_on(c: &Connection, agent_id: i64) -> Result<ResponseTimeStats> {
    const BUCKETS: &str = "SELECT bucket, responses, total_time FROM response_time_buckets \
         WHERE agent_id = ?1 AND responses > 0 ORDER BY bucket";
    const NTH_UP: &str = "SELECT duration FROM response_log \
         WHERE agent_id = ?1 AND bucket = ?2 AND outcome <> 'error' \
         ORDER BY duration LIMIT 1 OFFSET ?3";
    const NTH_DOWN: &str = "SELECT duration FROM response_log \
         WHERE agent_id = ?1 AND bucket = ?2 AND outcome <> 'error' \
         ORDER BY duration DESC LIMIT 1 OFFSET ?3";
    const BELOW: &str = "SELECT count(*) FROM response_log \
         WHERE agent_id = ?1 AND bucket = ?2 AND outcome <> 'error' AND duration < ?3";
    let buckets: Vec<(i64, u64, f64)> = rows(c, BUCKETS, [agent_id], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
    })?;
    let n: u64 = buckets.iter().map(|b| b.1).sum();
    if n == 0 {
        return Ok(ResponseTimeStats::NoData);
    }
    let sum: f64 = buckets.iter().map(|b| b.2).sum();
    // The value at index k of the sorted times: find its bucket from the counts, then
    // walk inside the bucket from its nearer end.
    let nth = |k: u64| -> Result<f64> {
        let mut before = 0;
        for &(bucket, size, _) in &buckets {
            if k < before + size {
                let at = k - before;
                let (sql, offset) = if at < size / 2 {
                    (NTH_UP, at)
                } else {
                    (NTH_DOWN, size - 1 - at)
                };
                return row(c, sql, params![agent_id, bucket, offset as i64], |r| {
                    r.get(0)
                });
            }
            before += size;
        }
        Err(Error::Corrupt {
            path: c.path().map(Into::into).unwrap_or_default(),
            detail: "response_time_buckets disagrees with response_log".into(),
        })
    };
    let target = target_on(c, agent_id)?;
    let target_bucket = time_bucket(target);
    let mut under: u64 = buckets
        .iter()
        .filter(|b| b.0 < target_bucket)
        .map(|b| b.1)
        .sum();
    if buckets.iter().any(|b| b.0 == target_bucket) {
        let inside: i64 = row(c, BELOW, params![agent_id, target_bucket, target], |r| {
            r.get(0)
        })?;
        under += inside as u64;
    }
    Ok(ResponseTimeStats::Data(TimeFigures {
        total_responses: n,
        avg_response_time: sum / n as f64,
        min_response_time: nth(0)?,
        max_response_time: nth(n - 1)?,
        p50_response_time: nth(n / 2)?,
        p90_response_time: nth(((n as f64 * 0.9) as u64).min(n - 1))?,
        p95_response_time: nth(((n as f64 * 0.95) as u64).min(n - 1))?,
        responses_under_target: under,
        target_achievement_rate: under as f64 / n as f64 * 100.0,
        cache_entries: entries_on(c, agent_id)?,
        target_response_time: target,
    }))
}

/// Tunes the target by `rule` in the caller's transaction.
pub(super) fn tune_on(tx: &Connection, agent_id: i64, rule: TuneRule) -> Result<Tuning> {
    const SET: &str = "UPDATE agents SET target_response_time = ?2 WHERE id = ?1";
    let stats = time_stats_on(tx, agent_id)?;
    let target = match &stats {
        ResponseTimeStats::Data(s) => s.target_response_time,
        ResponseTimeStats::NoData => target_on(tx, agent_id)?,
    };
    let tuned = tuning(&stats, target, rule);
    if tuned.new_target != tuned.old_target {
        exec(tx, SET, params![agent_id, tuned.new_target])?;
    }
    Ok(tuned)
}
