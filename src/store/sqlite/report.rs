//! The report's aggregates on SQLite: every figure a GROUP BY over bins, so the data
//! a report reads back is a few hundred rows whatever the agent holds.

use rusqlite::params;

use super::Sqlite;
use super::stmt::{opt_row, row, rows};
use crate::error::Result;
use crate::store::AgentRecord;
use crate::store::engine::ReportOps;
use crate::store::report::{AGE_BINS, Aggregates, EXPIRY_HORIZONS, IMPORTANCE_BINS, TIME_BINS};

impl ReportOps for Sqlite {
    fn report_aggregates(&self, agent: &AgentRecord, now: i64, doomed: i64) -> Result<Aggregates> {
        // The histogram: importance 1.0 counts in the last bin.
        const IMPORTANCE: &str =
            "SELECT min(CAST(importance * ?2 AS INTEGER), ?2 - 1) AS b, count(*)
            FROM memory_entries WHERE agent_id = ?1 GROUP BY b";
        const OLDEST: &str = "SELECT min(created_at) FROM memory_entries WHERE agent_id = ?1";
        // The last entry the regular cleanup would remove, in its order.
        const BOUND: &str =
            "SELECT importance, created_at, id FROM memory_entries WHERE agent_id = ?1
            ORDER BY importance, created_at, id LIMIT 1 OFFSET ?2 - 1";
        // Age bins from 0 (newest) to the oldest entry; the doomed are at or below the
        // bound (NULL bound: none).
        const CELLS: &str =
            "SELECT min(CAST((?2 - created_at) * ?3 / (?4 + 1) AS INTEGER), ?3 - 1) AS a,
                min(CAST(importance * ?5 AS INTEGER), ?5 - 1) AS i, count(*),
                coalesce(sum((importance, created_at, id) <= (?6, ?7, ?8)), 0)
            FROM memory_entries WHERE agent_id = ?1 GROUP BY a, i";
        const DURATIONS: &str = "SELECT bucket, responses FROM response_time_buckets
            WHERE agent_id = ?1 AND responses > 0 ORDER BY bucket";
        const SPAN: &str = "SELECT min(at), max(at) FROM response_log WHERE agent_id = ?1";
        const OUTCOMES: &str =
            "SELECT min(CAST((at - ?2) * ?4 / (?3 - ?2 + 1) AS INTEGER), ?4 - 1) AS b,
                outcome, count(*)
            FROM response_log WHERE agent_id = ?1 GROUP BY b, outcome";
        let id = agent.id;
        self.snapshot(|c| {
            let mut agg = Aggregates {
                importance: vec![0; IMPORTANCE_BINS],
                expiries: vec![0; EXPIRY_HORIZONS.len() + 2],
                ..Aggregates::default()
            };
            for (b, n) in rows(c, IMPORTANCE, params![id, IMPORTANCE_BINS as i64], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, u64>(1)?))
            })? {
                if let Some(slot) = agg.importance.get_mut(b.max(0) as usize) {
                    *slot += n;
                }
            }
            agg.oldest = row(c, OLDEST, [id], |r| r.get(0))?;
            if let Some(oldest) = agg.oldest {
                let bound = match doomed {
                    0 => None,
                    n => opt_row(c, BOUND, params![id, n], |r| {
                        Ok((
                            r.get::<_, f64>(0)?,
                            r.get::<_, i64>(1)?,
                            r.get::<_, i64>(2)?,
                        ))
                    })?,
                };
                let (bi, bc, bid) = match bound {
                    Some((i, c, id)) => (Some(i), Some(c), Some(id)),
                    None => (None, None, None),
                };
                let span = (now - oldest).max(0);
                agg.cells = rows(
                    c,
                    CELLS,
                    params![
                        id,
                        now,
                        AGE_BINS as i64,
                        span,
                        IMPORTANCE_BINS as i64,
                        bi,
                        bc,
                        bid
                    ],
                    |r| {
                        Ok((
                            r.get::<_, i64>(0)?.max(0) as u32,
                            r.get::<_, i64>(1)?.max(0) as u32,
                            r.get(2)?,
                            r.get(3)?,
                        ))
                    },
                )?;
            }
            agg.durations = rows(c, DURATIONS, [id], |r| {
                let bucket: i64 = r.get(0)?;
                Ok((f64::from_bits((bucket as u64) << 48), r.get(1)?))
            })?;
            let span: (Option<i64>, Option<i64>) =
                row(c, SPAN, [id], |r| Ok((r.get(0)?, r.get(1)?)))?;
            if let (Some(first), Some(last)) = span {
                agg.log_span = Some((first, last));
                agg.outcomes = rows(
                    c,
                    OUTCOMES,
                    params![id, first, last, TIME_BINS as i64],
                    |r| Ok((r.get::<_, i64>(0)?.max(0) as u32, r.get(1)?, r.get(2)?)),
                )?;
            }
            for (b, n) in rows(c, &expiries_sql(), params![agent.tool_scope, now], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, u64>(1)?))
            })? {
                if let Some(slot) = agg.expiries.get_mut(b as usize) {
                    *slot += n;
                }
            }
            Ok(agg)
        })
    }
}

/// The scope ?1's rows by expiry at ?2: 0 expired, then one bucket per horizon of
/// [`EXPIRY_HORIZONS`] (the first that holds it), then later.
fn expiries_sql() -> String {
    let whens: String = EXPIRY_HORIZONS
        .iter()
        .enumerate()
        .map(|(i, (_, secs))| {
            format!(
                " WHEN expires_at <= ?2 + {} THEN {}",
                secs * 1_000_000,
                i + 1
            )
        })
        .collect();
    format!(
        "SELECT CASE WHEN expires_at <= ?2 THEN 0{whens} ELSE {} END AS b, count(*) \
         FROM tool_cache WHERE scope = ?1 GROUP BY b",
        EXPIRY_HORIZONS.len() + 1
    )
}
