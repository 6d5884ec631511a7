//! Lookups on SQLite: the exact one by message hash, and the fuzzy one over the
//! inverted word index `response_words`, which gives the same answer as comparing
//! every cached message, in steps: the query's words and the fewest a match must
//! share; their postings, rarest first; the shared counts of the candidates they bring
//! in (common words probed for the few survivors instead of read in full); the rows
//! not yet indexed; the first candidate the guard lets through.

use std::collections::HashMap;

use rusqlite::{Connection, OptionalExtension, params};

use super::super::stmt::{SqlContext, opt_row};
use crate::error::Result;
use crate::store::responses::{message_hash, through_guard};
use crate::store::words::{FuzzyQuery as Query, jaccard, shared_words, word_set};
use crate::store::{CacheMatch, FuzzyOptions, Lookup, Outcome};

const EXACT: &str =
    "SELECT id, message, response FROM response_cache WHERE agent_id = ?1 AND message_hash = ?2";

/// The exact match: same hash, and the same text (a hash collision is no match).
pub(super) fn exact(c: &Connection, agent_id: i64, message: &str) -> Result<Option<CacheMatch>> {
    let hash = message_hash(message);
    let row: Option<(i64, String, String)> =
        opt_row(c, EXACT, params![agent_id, &hash[..]], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?;
    Ok(row
        .filter(|(_, cached, _)| cached == message)
        .map(|(id, message, response)| CacheMatch {
            id,
            kind: Outcome::Exact,
            similarity: 1.0,
            message,
            response,
        }))
}

/// The exact match, else (or with `fuzzy_only`, only) the fuzzy one.
pub(super) fn lookup(
    c: &Connection,
    agent_id: i64,
    message: &str,
    options: FuzzyOptions,
    fuzzy_only: bool,
) -> Result<Lookup> {
    if !fuzzy_only {
        if let Some(hit) = exact(c, agent_id, message)? {
            return Ok(Lookup {
                found: Some(hit),
                no_match: None,
            });
        }
    }
    fuzzy(c, agent_id, message, options)
}

/// For one query word, the postings of messages whose word count is within the
/// length bounds; how many there are; and whether one message has the word.
const POSTINGS: &str = "SELECT response_id, word_count FROM response_words \
     WHERE agent_id = ?1 AND word = ?2 AND word_count BETWEEN ?3 AND ?4";
const POSTINGS_COUNT: &str = "SELECT count(*) FROM response_words \
     WHERE agent_id = ?1 AND word = ?2 AND word_count BETWEEN ?3 AND ?4";
const HAS_WORD: &str = "SELECT EXISTS (SELECT 1 FROM response_words \
     WHERE agent_id = ?1 AND word = ?2 AND word_count = ?3 AND response_id = ?4)";

const BY_ID: &str = "SELECT message, response FROM response_cache WHERE id = ?1 AND agent_id = ?2";
const WAITING_ROWS: &str = "SELECT id, message FROM response_cache INDEXED BY response_cache_unindexed \
     WHERE agent_id = ?1 AND indexed = 0";

/// Reading one posting costs about a sixth of probing the index for one message
/// (measured: ~0.15 µs against ~1 µs); below that ratio, probing survivors wins.
const PROBE_COST_IN_POSTINGS: u64 = 6;

/// The query's words with their posting counts, rarest first.
fn rarest_first<'q>(
    c: &Connection,
    agent_id: i64,
    query: &'q Query,
) -> Result<Vec<(u64, &'q String)>> {
    let mut count = c.prepare_cached(POSTINGS_COUNT).sql(POSTINGS_COUNT)?;
    let mut order = Vec::with_capacity(query.len());
    for w in &query.words {
        let n: i64 = count
            .query_row(params![agent_id, w, query.lo, query.hi], |r| r.get(0))
            .sql(POSTINGS_COUNT)?;
        order.push((n as u64, w));
    }
    order.sort_unstable();
    Ok(order)
}

/// The candidates' shared word counts: `id -> (shared, word count)`. A match misses
/// at most `q - fewest` query words, so it has one of the first `q - fewest + 1`
/// (rarest) of them: only those postings bring in a candidate; later words only count
/// for the candidates already found, and a candidate that can no longer reach the
/// words it needs is dropped. A common word ("the") is probed for each survivor
/// instead of read in full when that is cheaper.
fn shared_counts(
    c: &Connection,
    agent_id: i64,
    query: &Query,
    order: &[(u64, &String)],
) -> Result<HashMap<i64, (usize, usize)>> {
    let admitting = query.len() - query.fewest + 1;
    let mut shared: HashMap<i64, (usize, usize)> = HashMap::new();
    let mut scan = c.prepare_cached(POSTINGS).sql(POSTINGS)?;
    let mut probe = c.prepare_cached(HAS_WORD).sql(HAS_WORD)?;
    for (j, (postings, w)) in order.iter().enumerate() {
        if j >= admitting && (shared.len() as u64) * PROBE_COST_IN_POSTINGS < *postings {
            for (id, (n, count)) in shared.iter_mut() {
                let has: bool = probe
                    .query_row(params![agent_id, w, *count as i64, id], |r| r.get(0))
                    .sql(HAS_WORD)?;
                *n += usize::from(has);
            }
        } else if *postings > 0 {
            let mut rows = scan
                .query(params![agent_id, w, query.lo, query.hi])
                .sql(POSTINGS)?;
            while let Some(r) = rows.next().sql(POSTINGS)? {
                let id: i64 = r.get(0).sql(POSTINGS)?;
                let count: i64 = r.get(1).sql(POSTINGS)?;
                if j < admitting {
                    shared.entry(id).or_insert((0, count as usize)).0 += 1;
                } else if let Some(e) = shared.get_mut(&id) {
                    e.0 += 1;
                }
            }
        }
        let left = query.len() - j - 1;
        shared.retain(|_, (n, count)| query.can_reach(*count, *n, left));
    }
    Ok(shared)
}

/// The rows not in the word index yet, compared one by one: `(similarity, id)` of
/// those above the threshold.
fn waiting_candidates(c: &Connection, agent_id: i64, query: &Query) -> Result<Vec<(f64, i64)>> {
    let mut found = Vec::new();
    let mut waiting = c.prepare_cached(WAITING_ROWS).sql(WAITING_ROWS)?;
    let mut rows = waiting.query([agent_id]).sql(WAITING_ROWS)?;
    while let Some(r) = rows.next().sql(WAITING_ROWS)? {
        let id: i64 = r.get(0).sql(WAITING_ROWS)?;
        let message: String = r.get(1).sql(WAITING_ROWS)?;
        let cached = word_set(&message);
        let similarity = jaccard(
            query.len(),
            cached.len(),
            shared_words(&query.words, &cached),
        );
        if similarity > query.threshold {
            found.push((similarity, id));
        }
    }
    Ok(found)
}

/// The best candidate the guard lets through; else, if the guard blocked one, why.
/// The brute-force scan keeps the first message of the highest similarity: the same
/// as the best similarity, then the smallest id.
fn first_unguarded(
    c: &Connection,
    agent_id: i64,
    message: &str,
    mut candidates: Vec<(f64, i64)>,
    options: FuzzyOptions,
) -> Result<Lookup> {
    candidates.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    let mut by_id = c.prepare_cached(BY_ID).sql(BY_ID)?;
    let mut guarded = None;
    for (similarity, id) in candidates {
        let Some((cached, response)) = by_id
            .query_row(params![id, agent_id], |r| {
                Ok((r.get::<_, String>(0)?, r.get(1)?))
            })
            .optional()
            .sql(BY_ID)?
        else {
            continue; // a posting whose row was deleted outside agentstore
        };
        let candidate = CacheMatch {
            id,
            kind: Outcome::Fuzzy,
            similarity,
            message: cached,
            response,
        };
        if let Some(found) = through_guard(message, options, candidate, &mut guarded) {
            return Ok(found);
        }
    }
    Ok(Lookup {
        found: None,
        no_match: guarded,
    })
}

/// The fuzzy lookup (see the module docs).
fn fuzzy(c: &Connection, agent_id: i64, message: &str, options: FuzzyOptions) -> Result<Lookup> {
    let query = match Query::new(message, options.threshold) {
        Ok(query) => query,
        Err(no_match) => {
            return Ok(Lookup {
                found: None,
                no_match,
            });
        }
    };
    let order = rarest_first(c, agent_id, &query)?;
    let shared = shared_counts(c, agent_id, &query, &order)?;
    let mut candidates: Vec<(f64, i64)> = shared
        .into_iter()
        .filter_map(|(id, (n, count))| {
            let similarity = jaccard(query.len(), count, n);
            (similarity > query.threshold).then_some((similarity, id))
        })
        .collect();
    candidates.extend(waiting_candidates(c, agent_id, &query)?);
    first_unguarded(c, agent_id, message, candidates, options)
}

#[cfg(test)]
mod tests {
    use crate::store::words::{jaccard, words_needed};

    proptest::proptest! {
        /// The binary search agrees with the scan it replaced.
        #[test]
        fn words_needed_matches_a_scan(q in 0usize..400, c in 0usize..400, t in 0.0f64..1.0) {
            let scan = (1..=q.min(c)).find(|&i| jaccard(q, c, i) > t);
            proptest::prop_assert_eq!(words_needed(q, c, t), scan);
        }
    }
}
