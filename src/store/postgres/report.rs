//! The report's aggregates on PostgreSQL, as on SQLite: every figure a GROUP BY over
//! bins, read from one snapshot (integer bins by integer division, as SQLite's CAST
//! truncates).

use super::{Postgres, args, get, opt_row, row, rows};
use crate::error::Result;
use crate::store::AgentRecord;
use crate::store::engine::ReportOps;
use crate::store::report::{AGE_BINS, Aggregates, EXPIRY_HORIZONS, IMPORTANCE_BINS, TIME_BINS};

impl ReportOps for Postgres {
    fn report_aggregates(&self, agent: &AgentRecord, now: i64, doomed: i64) -> Result<Aggregates> {
        const IMPORTANCE: &str = "SELECT least(floor(importance * $2)::int8, $2 - 1) AS b, count(*)
            FROM memory_entries WHERE agent_id = $1 GROUP BY b";
        const OLDEST: &str = "SELECT min(created_at) FROM memory_entries WHERE agent_id = $1";
        const BOUND: &str = "SELECT importance, created_at, id FROM memory_entries
            WHERE agent_id = $1 ORDER BY importance, created_at, id LIMIT 1 OFFSET $2 - 1";
        const CELLS: &str = "SELECT least(($2 - created_at) * $3 / ($4 + 1), $3 - 1) AS a,
                least(floor(importance * $5)::int8, $5 - 1) AS i, count(*),
                count(*) FILTER (WHERE (importance, created_at, id) <= ($6, $7, $8))
            FROM memory_entries WHERE agent_id = $1 GROUP BY a, i";
        const DURATIONS: &str = "SELECT bucket, responses FROM response_time_buckets
            WHERE agent_id = $1 AND responses > 0 ORDER BY bucket";
        const SPAN: &str = "SELECT min(at), max(at) FROM response_log WHERE agent_id = $1";
        const OUTCOMES: &str = "SELECT least((at - $2) * $4 / ($3 - $2 + 1), $4 - 1) AS b,
                outcome, count(*)
            FROM response_log WHERE agent_id = $1 GROUP BY b, outcome";
        let id = agent.id;
        let expiries = expiries_sql();
        self.read(|c| {
            let mut agg = Aggregates {
                importance: vec![0; IMPORTANCE_BINS],
                expiries: vec![0; EXPIRY_HORIZONS.len() + 2],
                ..Aggregates::default()
            };
            let n = |r: &postgres::Row, i: usize, sql: &str| -> Result<u64> {
                Ok(get::<i64>(r, i, sql)?.max(0) as u64)
            };
            for r in rows(c, IMPORTANCE, args![id, IMPORTANCE_BINS as i64])? {
                let b: i64 = get(&r, 0, IMPORTANCE)?;
                if let Some(slot) = agg.importance.get_mut(b.max(0) as usize) {
                    *slot += n(&r, 1, IMPORTANCE)?;
                }
            }
            agg.oldest = get(&row(c, OLDEST, args![id])?, 0, OLDEST)?;
            if let Some(oldest) = agg.oldest {
                let bound = match doomed {
                    0 => None,
                    d => opt_row(c, BOUND, args![id, d])?
                        .map(|r| -> Result<(f64, i64, i64)> {
                            Ok((get(&r, 0, BOUND)?, get(&r, 1, BOUND)?, get(&r, 2, BOUND)?))
                        })
                        .transpose()?,
                };
                let (bi, bc, bid) = match bound {
                    Some((i, c, id)) => (Some(i), Some(c), Some(id)),
                    None => (None, None, None),
                };
                let span = (now - oldest).max(0);
                agg.cells = rows(
                    c,
                    CELLS,
                    args![
                        id,
                        now,
                        AGE_BINS as i64,
                        span,
                        IMPORTANCE_BINS as i64,
                        bi,
                        bc,
                        bid
                    ],
                )?
                .iter()
                .map(|r| {
                    Ok((
                        get::<i64>(r, 0, CELLS)?.max(0) as u32,
                        get::<i64>(r, 1, CELLS)?.max(0) as u32,
                        n(r, 2, CELLS)?,
                        n(r, 3, CELLS)?,
                    ))
                })
                .collect::<Result<_>>()?;
            }
            agg.durations = rows(c, DURATIONS, args![id])?
                .iter()
                .map(|r| {
                    let bucket: i64 = get(r, 0, DURATIONS)?;
                    Ok((f64::from_bits((bucket as u64) << 48), n(r, 1, DURATIONS)?))
                })
                .collect::<Result<_>>()?;
            let r = row(c, SPAN, args![id])?;
            let span: (Option<i64>, Option<i64>) = (get(&r, 0, SPAN)?, get(&r, 1, SPAN)?);
            if let (Some(first), Some(last)) = span {
                agg.log_span = Some((first, last));
                agg.outcomes = rows(c, OUTCOMES, args![id, first, last, TIME_BINS as i64])?
                    .iter()
                    .map(|r| {
                        Ok((
                            get::<i64>(r, 0, OUTCOMES)?.max(0) as u32,
                            get(r, 1, OUTCOMES)?,
                            n(r, 2, OUTCOMES)?,
                        ))
                    })
                    .collect::<Result<_>>()?;
            }
            for r in rows(c, &expiries, args![agent.tool_scope.as_str(), now])? {
                let b: i64 = get(&r, 0, &expiries)?;
                if let Some(slot) = agg.expiries.get_mut(b.max(0) as usize) {
                    *slot += n(&r, 1, &expiries)?;
                }
            }
            Ok(agg)
        })
    }
}

/// The scope $1's rows by expiry at $2 (see the SQLite engine's).
fn expiries_sql() -> String {
    let whens: String = EXPIRY_HORIZONS
        .iter()
        .enumerate()
        .map(|(i, (_, secs))| {
            format!(
                " WHEN expires_at <= $2 + {} THEN {}",
                secs * 1_000_000,
                i + 1
            )
        })
        .collect();
    format!(
        "SELECT (CASE WHEN expires_at <= $2 THEN 0{whens} ELSE {} END)::int8 AS b, count(*) \
         FROM tool_cache WHERE scope = $1 GROUP BY b",
        EXPIRY_HORIZONS.len() + 1
    )
}
