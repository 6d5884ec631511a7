//! The response cache and its log on PostgreSQL. A store indexes its message's words
//! at once (one INSERT of all its postings), so no row waits for the index. The fuzzy
//! lookup is one aggregate over the postings of the query's words (the candidates
//! whose word counts can match, with their shared counts, pruned by the fewest shared
//! words a match needs) and one read of the best candidates: the same answer as
//! comparing every cached message. The percentiles are exact: the duration buckets
//! locate each one, and one statement walks to all five inside their buckets.

use postgres::Client;
use postgres::types::Type;

use super::{Postgres, args, exec, get, opt_row, refuse_nul, row, rows};
use crate::error::{Error, Result};
use crate::store::engine::ResponseOps;
use crate::store::responses::{
    TuneRule, check_size, message_hash, older_than, through_guard, time_bucket, tuning,
};
use crate::store::words::{FuzzyQuery, jaccard, word_set};
use crate::store::{
    CacheMatch, CachedResponse, FuzzyOptions, LoggedResponse, Lookup, NoMatch, Outcome,
    ResponseOrder, ResponsePurge, ResponseTimeStats, TimeFigures, Tuning,
};

/// Log rows deleted, at most, by each log write that finds the log over its retention.
const LOG_TRIM_BATCH: i64 = 5000;

/// Candidates a fuzzy lookup reads in its first round (the best first), and in each
/// later one, which only a guard that blocked a whole round needs.
const FIRST_ROUND: i64 = 16;
const LATER_ROUND: i64 = 256;

const EXACT: &str =
    "SELECT id, message, response FROM response_cache WHERE agent_id = $1 AND message_hash = $2";

fn exact(c: &mut Client, agent_id: i64, message: &str) -> Result<Option<CacheMatch>> {
    let hash = message_hash(message);
    let hash: &[u8] = &hash;
    let Some(r) = opt_row(c, EXACT, args![agent_id, hash])? else {
        return Ok(None);
    };
    let cached: String = get(&r, 1, EXACT)?;
    if cached != message {
        return Ok(None);
    }
    Ok(Some(CacheMatch {
        id: get(&r, 0, EXACT)?,
        kind: Outcome::Exact,
        similarity: 1.0,
        message: cached,
        response: get(&r, 2, EXACT)?,
    }))
}

/// What one round of a fuzzy lookup found: the answer, or only candidates the guard
/// blocked (the first of them, and whether the round was full: more may follow).
enum Round {
    Found(Lookup),
    Blocked { first: Option<NoMatch>, more: bool },
}

/// One round of the fuzzy lookup, one statement: the candidates above the threshold
/// at `offset..offset + limit` by similarity then id (the scan's order), with their
/// texts, walked through the guard. The postings are read one index range per query
/// word (a lateral subquery kept apart by OFFSET 0), so that the plan does not depend
/// on statistics: on a table bulk-loaded and not yet analyzed, `word = ANY(...)` was
/// planned as a filter over every posting of the agent (22 ms instead of 0.2 at 10k
/// cached). The similarity is computed as `words::jaccard` does (one float8 division
/// of the same integers: the same bits), so the order and the threshold are the
/// scan's.
fn fuzzy_round(
    c: &mut Client,
    agent_id: i64,
    message: &str,
    query: &FuzzyQuery,
    options: FuzzyOptions,
    offset: i64,
    limit: i64,
) -> Result<Round> {
    const ROUND: &str = "WITH shared AS (
            SELECT w.response_id, w.word_count, count(*) AS n
              FROM unnest($2::text[]) AS q (word) CROSS JOIN LATERAL (
                  SELECT response_id, word_count FROM response_words
                   WHERE agent_id = $1 AND word = q.word AND word_count BETWEEN $3 AND $4
                   OFFSET 0) AS w
             GROUP BY w.response_id, w.word_count HAVING count(*) >= $5),
        scored AS (
            SELECT response_id, word_count, n,
                   n::float8 / ($6 + word_count - n)::float8 AS similarity
              FROM shared)
        SELECT s.response_id, s.word_count, s.n, r.message, r.response
          FROM scored s JOIN response_cache r ON r.agent_id = $1 AND r.id = s.response_id
         WHERE s.similarity > $7
         ORDER BY s.similarity DESC, s.response_id
         LIMIT $8 OFFSET $9";
    let q = query.len();
    let found = rows(
        c,
        ROUND,
        &[
            (&agent_id, Type::INT8),
            (&query.words, Type::TEXT_ARRAY),
            (&query.lo, Type::INT8),
            (&query.hi, Type::INT8),
            (&(query.fewest as i64), Type::INT8),
            (&(q as i64), Type::INT8),
            (&query.threshold, Type::FLOAT8),
            (&limit, Type::INT8),
            (&offset, Type::INT8),
        ],
    )?;
    let mut guarded = None;
    for r in &found {
        let count: i64 = get(r, 1, ROUND)?;
        let shared: i64 = get(r, 2, ROUND)?;
        let candidate = CacheMatch {
            id: get(r, 0, ROUND)?,
            kind: Outcome::Fuzzy,
            similarity: jaccard(q, count as usize, shared as usize),
            message: get(r, 3, ROUND)?,
            response: get(r, 4, ROUND)?,
        };
        if let Some(found) = through_guard(message, options, candidate, &mut guarded) {
            return Ok(Round::Found(found));
        }
    }
    Ok(Round::Blocked {
        first: guarded,
        more: found.len() as i64 == limit,
    })
}

/// Stores one pair and its postings (replacing the response of a message the agent
/// has) with one statement; returns its id. `timeout` is the lock timeout the
/// statement sets itself (the schema's `response_cache_put`), so that it can run
/// alone in autocommit: one round trip.
fn put_on(
    c: &mut Client,
    agent_id: i64,
    message: &str,
    response: &str,
    now: i64,
    timeout: &str,
    lease: Option<(&[u8; 32], &str)>,
) -> Result<i64> {
    const PUT: &str = "SELECT response_cache_put($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)";
    refuse_nul("the message", message)?;
    refuse_nul("the response", response)?;
    let words = word_set(message);
    let hash = message_hash(message);
    let hash: &[u8] = &hash;
    let count = words.len() as i64;
    let (lease_key, holder): (Option<&[u8]>, Option<&str>) = match lease {
        Some((key, holder)) => (Some(&key[..]), Some(holder)),
        None => (None, None),
    };
    let r = row(
        c,
        PUT,
        &[
            (&agent_id, Type::INT8),
            (&hash, Type::BYTEA),
            (&message, Type::TEXT),
            (&response, Type::TEXT),
            (&count, Type::INT8),
            (&now, Type::INT8),
            (&timeout, Type::TEXT),
            (&words, Type::TEXT_ARRAY),
            (&lease_key, Type::BYTEA),
            (&holder, Type::TEXT),
        ],
    )?;
    get(&r, 0, PUT)
}

/// The postings of one row, in one statement.
fn index_row(c: &mut Client, agent_id: i64, id: i64, words: &[String]) -> Result<()> {
    const POSTINGS: &str = "INSERT INTO response_words (agent_id, word, word_count, response_id)
         SELECT $1, w, $3, $4 FROM unnest($2::text[]) w ON CONFLICT DO NOTHING";
    if words.is_empty() {
        return Ok(());
    }
    super::exec(
        c,
        POSTINGS,
        &[
            (&agent_id, Type::INT8),
            (&words, Type::TEXT_ARRAY),
            (&(words.len() as i64), Type::INT8),
            (&id, Type::INT8),
        ],
    )?;
    Ok(())
}

/// Deletes cached rows and their postings.
pub(super) fn delete_rows(c: &mut Client, agent_id: i64, ids: &[i64]) -> Result<()> {
    const POSTINGS: &str =
        "DELETE FROM response_words WHERE agent_id = $1 AND response_id = ANY($2)";
    const ROWS: &str = "DELETE FROM response_cache WHERE agent_id = $1 AND id = ANY($2)";
    if ids.is_empty() {
        return Ok(());
    }
    let ids = ids.to_vec();
    exec(c, POSTINGS, args![agent_id, ids.clone()])?;
    exec(c, ROWS, args![agent_id, ids])?;
    Ok(())
}

/// Stores one imported response (a message the agent has keeps its own response);
/// whether it was added.
pub(super) fn restore_response(
    c: &mut Client,
    agent_id: i64,
    r: &crate::store::transfer::RestoredResponse<'_>,
) -> Result<bool> {
    check_size("message", r.message)?;
    check_size("response", r.response)?;
    refuse_nul("the message", r.message)?;
    refuse_nul("the response", r.response)?;
    let hits = i64::try_from(r.hits)
        .map_err(|_| Error::invalid(format!("hits {} is too large", r.hits)))?;
    const INSERT: &str = "INSERT INTO response_cache (agent_id, message_hash, message, response, \
         word_count, created_at, last_used_at, hits, indexed) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, true) \
         ON CONFLICT (agent_id, message_hash) DO NOTHING RETURNING id";
    let words = word_set(r.message);
    let hash = message_hash(r.message);
    let hash: &[u8] = &hash;
    let added = opt_row(
        c,
        INSERT,
        args![
            agent_id,
            hash,
            r.message,
            r.response,
            words.len() as i64,
            r.created_at,
            r.last_used_at,
            hits
        ],
    )?;
    match added {
        Some(row) => {
            index_row(c, agent_id, get(&row, 0, INSERT)?, &words)?;
            Ok(true)
        }
        None => Ok(false),
    }
}

/// Appends log rows in one statement (their duration buckets follow by trigger).
pub(super) fn insert_log(c: &mut Client, agent_id: i64, log: &[LoggedResponse]) -> Result<()> {
    const INSERT: &str = "INSERT INTO response_log (agent_id, at, duration, bucket, outcome)
         SELECT $1, a, d, b, o FROM unnest($2::int8[], $3::float8[], $4::int8[], $5::text[])
             WITH ORDINALITY AS u(a, d, b, o, n) ORDER BY n";
    if log.is_empty() {
        return Ok(());
    }
    let at: Vec<i64> = log.iter().map(|r| r.at).collect();
    let duration: Vec<f64> = log.iter().map(|r| r.duration).collect();
    let bucket: Vec<i64> = log.iter().map(|r| time_bucket(r.duration)).collect();
    let outcome: Vec<&str> = log.iter().map(|r| r.outcome.as_str()).collect();
    super::exec(
        c,
        INSERT,
        &[
            (&agent_id, Type::INT8),
            (&at, Type::INT8_ARRAY),
            (&duration, Type::FLOAT8_ARRAY),
            (&bucket, Type::INT8_ARRAY),
            (&outcome, Type::TEXT_ARRAY),
        ],
    )?;
    Ok(())
}

fn record_on(
    c: &mut Client,
    agent_id: i64,
    hits: &[(i64, u64, i64)],
    log: &[LoggedResponse],
    keep: u64,
) -> Result<()> {
    const HITS: &str = "UPDATE response_cache r SET hits = r.hits + h.n,
             last_used_at = greatest(r.last_used_at, h.at)
        FROM (SELECT id, sum(n)::int8 AS n, max(at) AS at
                FROM unnest($1::int8[], $2::int8[], $3::int8[]) AS u(id, n, at) GROUP BY id) h
       WHERE r.id = h.id";
    const CUTOFF: &str = "SELECT id FROM response_log WHERE agent_id = $1 \
         ORDER BY id DESC LIMIT 1 OFFSET $2";
    const TRIM: &str = "DELETE FROM response_log WHERE id IN (SELECT id FROM response_log \
         WHERE agent_id = $1 AND id <= $2 ORDER BY id LIMIT $3)";
    if !hits.is_empty() {
        let ids: Vec<i64> = hits.iter().map(|h| h.0).collect();
        let n: Vec<i64> = hits.iter().map(|h| h.1 as i64).collect();
        let at: Vec<i64> = hits.iter().map(|h| h.2).collect();
        super::exec(
            c,
            HITS,
            &[
                (&ids, Type::INT8_ARRAY),
                (&n, Type::INT8_ARRAY),
                (&at, Type::INT8_ARRAY),
            ],
        )?;
    }
    if log.is_empty() {
        return Ok(());
    }
    insert_log(c, agent_id, log)?;
    let keep = i64::try_from(keep).unwrap_or(i64::MAX);
    if let Some(r) = opt_row(c, CUTOFF, args![agent_id, keep])? {
        let cutoff: i64 = get(&r, 0, CUTOFF)?;
        exec(c, TRIM, args![agent_id, cutoff, LOG_TRIM_BATCH])?;
    }
    Ok(())
}

fn target_on(c: &mut Client, agent_id: i64) -> Result<f64> {
    const TARGET: &str = "SELECT target_response_time FROM agents WHERE id = $1";
    get(&row(c, TARGET, args![agent_id])?, 0, TARGET)
}

fn entries_on(c: &mut Client, agent_id: i64) -> Result<u64> {
    const COUNT: &str = "SELECT count(*) FROM response_cache WHERE agent_id = $1";
    Ok(get::<i64>(&row(c, COUNT, args![agent_id])?, 0, COUNT)? as u64)
}

/// The response-time stats: the buckets (with the target and the cache size) in one
/// statement, the five order statistics and the count under the target in another.
fn time_stats_on(c: &mut Client, agent_id: i64) -> Result<ResponseTimeStats> {
    const BUCKETS: &str = "SELECT bucket, responses, total_time FROM response_time_buckets \
         WHERE agent_id = $1 AND responses > 0 ORDER BY bucket";
    // For each (bucket, offset, from the top), the duration there.
    const NTH: &str = "SELECT CASE WHEN t.down
            THEN (SELECT duration FROM response_log WHERE agent_id = $1 AND bucket = t.b
                    AND outcome <> 'error' ORDER BY duration DESC LIMIT 1 OFFSET t.o)
            ELSE (SELECT duration FROM response_log WHERE agent_id = $1 AND bucket = t.b
                    AND outcome <> 'error' ORDER BY duration LIMIT 1 OFFSET t.o) END,
            (SELECT count(*) FROM response_log WHERE agent_id = $1 AND bucket = $5
                    AND outcome <> 'error' AND duration < $6)
          FROM unnest($2::int8[], $3::int8[], $4::bool[]) WITH ORDINALITY AS t(b, o, down, n)
         ORDER BY t.n";
    let buckets: Vec<(i64, u64, f64)> = rows(c, BUCKETS, args![agent_id])?
        .iter()
        .map(|r| {
            Ok((
                get(r, 0, BUCKETS)?,
                get::<i64>(r, 1, BUCKETS)?.max(0) as u64,
                get(r, 2, BUCKETS)?,
            ))
        })
        .collect::<Result<_>>()?;
    let n: u64 = buckets.iter().map(|b| b.1).sum();
    if n == 0 {
        return Ok(ResponseTimeStats::NoData);
    }
    let sum: f64 = buckets.iter().map(|b| b.2).sum();
    let target = target_on(c, agent_id)?;
    let target_bucket = time_bucket(target);
    // Where each order statistic lies: its bucket, and the offset from the nearer end.
    let locate = |k: u64| -> Option<(i64, i64, bool)> {
        let mut before = 0;
        for &(bucket, size, _) in &buckets {
            if k < before + size {
                let at = k - before;
                return Some(if at < size / 2 {
                    (bucket, at as i64, false)
                } else {
                    (bucket, (size - 1 - at) as i64, true)
                });
            }
            before += size;
        }
        None
    };
    let ks = [
        0,
        n - 1,
        n / 2,
        ((n as f64 * 0.9) as u64).min(n - 1),
        ((n as f64 * 0.95) as u64).min(n - 1),
    ];
    let spots: Vec<(i64, i64, bool)> = ks.iter().filter_map(|&k| locate(k)).collect();
    let damaged = || Error::Sql {
        kind: crate::DbErrorKind::Damaged,
        statement: "response stats".into(),
        source: "response_time_buckets disagrees with response_log".into(),
    };
    if spots.len() != ks.len() {
        return Err(damaged());
    }
    let b: Vec<i64> = spots.iter().map(|s| s.0).collect();
    let o: Vec<i64> = spots.iter().map(|s| s.1).collect();
    let down: Vec<bool> = spots.iter().map(|s| s.2).collect();
    let found = super::rows(
        c,
        NTH,
        &[
            (&agent_id, Type::INT8),
            (&b, Type::INT8_ARRAY),
            (&o, Type::INT8_ARRAY),
            (&down, Type::BOOL_ARRAY),
            (&target_bucket, Type::INT8),
            (&target, Type::FLOAT8),
        ],
    )?;
    let values: Vec<f64> = found
        .iter()
        .map(|r| get::<Option<f64>>(r, 0, NTH)?.ok_or_else(damaged))
        .collect::<Result<_>>()?;
    let inside: i64 = found.first().map_or(Ok(0), |r| get(r, 1, NTH))?;
    let mut under: u64 = buckets
        .iter()
        .filter(|b| b.0 < target_bucket)
        .map(|b| b.1)
        .sum();
    if buckets.iter().any(|b| b.0 == target_bucket) {
        under += inside as u64;
    }
    Ok(ResponseTimeStats::Data(TimeFigures {
        total_responses: n,
        avg_response_time: sum / n as f64,
        min_response_time: values[0],
        max_response_time: values[1],
        p50_response_time: values[2],
        p90_response_time: values[3],
        p95_response_time: values[4],
        responses_under_target: under,
        target_achievement_rate: under as f64 / n as f64 * 100.0,
        cache_entries: entries_on(c, agent_id)?,
        target_response_time: target,
    }))
}

fn tune_on(c: &mut Client, agent_id: i64, rule: TuneRule) -> Result<Tuning> {
    const LOCK: &str = "SELECT target_response_time FROM agents WHERE id = $1 FOR UPDATE";
    const SET: &str = "UPDATE agents SET target_response_time = $2 WHERE id = $1";
    // The agent's row lock orders tunings from many hosts: each reads the target the
    // previous one wrote.
    let target: f64 = get(&row(c, LOCK, args![agent_id])?, 0, LOCK)?;
    let tuned = tuning(&time_stats_on(c, agent_id)?, target, rule);
    if tuned.new_target != tuned.old_target {
        exec(c, SET, args![agent_id, tuned.new_target])?;
    }
    Ok(tuned)
}

pub(super) fn response_from_row(r: &postgres::Row, sql: &str) -> Result<CachedResponse> {
    Ok(CachedResponse {
        id: get(r, 0, sql)?,
        message: get(r, 1, sql)?,
        response: get(r, 2, sql)?,
        hits: get::<i64>(r, 3, sql)?.max(0) as u64,
        created_at: get(r, 4, sql)?,
        last_used_at: get(r, 5, sql)?,
    })
}

impl ResponseOps for Postgres {
    fn response_exact(&self, agent_id: i64, message: &str) -> Result<Option<CacheMatch>> {
        self.read_one(|c| exact(c, agent_id, message))
    }

    fn response_try_exact(
        &self,
        _agent_id: i64,
        _message: &str,
    ) -> Option<Result<Option<CacheMatch>>> {
        None
    }

    fn response_lookup(
        &self,
        agent_id: i64,
        message: &str,
        options: FuzzyOptions,
        fuzzy_only: bool,
    ) -> Result<Lookup> {
        // The exact lookup alone first (one round trip).
        if !fuzzy_only && let Some(hit) = self.read_one(|c| exact(c, agent_id, message))? {
            return Ok(Lookup {
                found: Some(hit),
                no_match: None,
            });
        }
        let query = match FuzzyQuery::new(message, options.threshold) {
            Ok(query) => query,
            Err(no_match) => {
                return Ok(Lookup {
                    found: None,
                    no_match,
                });
            }
        };
        // Nearly every lookup ends with its first round, one statement in autocommit;
        // only a guard that blocked all of it reads on, in one snapshot.
        let round = |c: &mut Client, offset, limit| {
            fuzzy_round(c, agent_id, message, &query, options, offset, limit)
        };
        let (first, more) = match self.read_one(|c| round(c, 0, FIRST_ROUND))? {
            Round::Found(found) => return Ok(found),
            Round::Blocked { first, more } => (first, more),
        };
        if more {
            let later = self.read(|c| {
                let mut offset = FIRST_ROUND;
                loop {
                    match round(c, offset, LATER_ROUND)? {
                        Round::Found(found) => return Ok(Some(found)),
                        Round::Blocked { more: true, .. } => offset += LATER_ROUND,
                        Round::Blocked { more: false, .. } => return Ok(None),
                    }
                }
            })?;
            if let Some(found) = later {
                return Ok(found);
            }
        }
        Ok(Lookup {
            found: None,
            no_match: first,
        })
    }

    fn response_put(
        &self,
        agent_id: i64,
        message: &str,
        response: &str,
        now: i64,
        lease: Option<(&[u8; 32], &str)>,
    ) -> Result<i64> {
        let timeout = self.lock_timeout_ms();
        self.write_one(|c| put_on(c, agent_id, message, response, now, timeout, lease))
    }

    fn response_put_many(&self, agent_id: i64, pairs: &[(&str, &str)], now: i64) -> Result<()> {
        let timeout = self.lock_timeout_ms();
        self.write(|c| {
            for (m, r) in pairs {
                put_on(c, agent_id, m, r, now, timeout, None)?;
            }
            Ok(())
        })
    }

    fn response_index_pending(&self) -> Result<u64> {
        // Every store indexes its row at once.
        Ok(0)
    }

    fn response_record(
        &self,
        agent_id: i64,
        hits: &[(i64, u64, i64)],
        log: &[LoggedResponse],
        keep: u64,
    ) -> Result<()> {
        self.write(|c| record_on(c, agent_id, hits, log, keep))
    }

    fn response_time_stats(&self, agent_id: i64) -> Result<ResponseTimeStats> {
        self.read(|c| time_stats_on(c, agent_id))
    }

    fn response_tune(&self, agent_id: i64, rule: TuneRule) -> Result<Tuning> {
        self.write(|c| tune_on(c, agent_id, rule))
    }

    fn response_entries(&self, agent_id: i64) -> Result<u64> {
        self.read_one(|c| entries_on(c, agent_id))
    }

    fn response_purge_count(&self, agent_id: i64, rule: ResponsePurge, now: i64) -> Result<u64> {
        const COUNT_ALL: &str = "SELECT count(*) FROM response_cache WHERE agent_id = $1";
        const COUNT_OLDER: &str =
            "SELECT count(*) FROM response_cache WHERE agent_id = $1 AND created_at < $2";
        let n: i64 = self.read(|c| match rule {
            ResponsePurge::All => get(&row(c, COUNT_ALL, args![agent_id])?, 0, COUNT_ALL),
            ResponsePurge::OlderThan(d) => {
                let cutoff = older_than(d, now);
                get(
                    &row(c, COUNT_OLDER, args![agent_id, cutoff])?,
                    0,
                    COUNT_OLDER,
                )
            }
            ResponsePurge::Keep(k) => {
                let total: i64 = get(&row(c, COUNT_ALL, args![agent_id])?, 0, COUNT_ALL)?;
                Ok((total - i64::try_from(k).unwrap_or(i64::MAX)).max(0))
            }
        })?;
        Ok(n as u64)
    }

    fn response_purge_batch(
        &self,
        agent_id: i64,
        rule: ResponsePurge,
        now: i64,
        batch: i64,
    ) -> Result<u64> {
        const OLDER: &str = "SELECT id FROM response_cache \
             WHERE agent_id = $1 AND created_at < $2 ORDER BY id LIMIT $3";
        const BEYOND: &str = "SELECT id FROM response_cache WHERE agent_id = $1 \
             ORDER BY last_used_at DESC, id DESC LIMIT $3 OFFSET $2";
        let (sql, second) = match rule {
            ResponsePurge::OlderThan(d) => (OLDER, older_than(d, now)),
            ResponsePurge::Keep(k) => (BEYOND, i64::try_from(k).unwrap_or(i64::MAX)),
            ResponsePurge::All => (OLDER, i64::MAX),
        };
        self.write(|c| {
            let victims: Vec<i64> = rows(c, sql, args![agent_id, second, batch])?
                .iter()
                .map(|r| get(r, 0, sql))
                .collect::<Result<_>>()?;
            delete_rows(c, agent_id, &victims)?;
            Ok(victims.len() as u64)
        })
    }

    fn response_list(
        &self,
        agent_id: i64,
        order: ResponseOrder,
        limit: u64,
    ) -> Result<Vec<CachedResponse>> {
        const RECENT: &str = "SELECT id, message, response, hits, created_at, last_used_at \
             FROM response_cache WHERE agent_id = $1 \
             ORDER BY last_used_at DESC, id DESC LIMIT $2";
        const HITS: &str = "SELECT id, message, response, hits, created_at, last_used_at \
             FROM response_cache WHERE agent_id = $1 \
             ORDER BY hits DESC, last_used_at DESC, id DESC LIMIT $2";
        let sql = match order {
            ResponseOrder::Recent => RECENT,
            ResponseOrder::Hits => HITS,
        };
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(|c| {
            rows(c, sql, args![agent_id, limit])?
                .iter()
                .map(|r| response_from_row(r, sql))
                .collect()
        })
    }

    fn response_target(&self, agent_id: i64) -> Result<f64> {
        self.read_one(|c| target_on(c, agent_id))
    }
}
