//! The response cache (`response_cache` and its word index `response_words`) and the
//! response log (`response_log`): exact lookups by message hash, fuzzy lookups over
//! the inverted word index that give the same answer as scanning every cached message,
//! stores, batched hit counts, the size cap, purges, and the response-time stats.

use std::collections::HashMap;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use super::words::{differ_in_meaning, jaccard, length_bounds, shared_words, word_set};
use super::{MAX_CONTENT_BYTES, Store};
use crate::clock::serialize_micros;
use crate::error::{Error, Result, SqlContext};

/// How a fuzzy lookup decides.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FuzzyOptions {
    /// A cached message matches when its similarity is strictly above this.
    pub threshold: f64,
    /// Refuse matches whose word sets differ by a negation or a number.
    pub negation_guard: bool,
}

impl Default for FuzzyOptions {
    fn default() -> Self {
        FuzzyOptions {
            threshold: 0.7,
            negation_guard: true,
        }
    }
}

impl FuzzyOptions {
    /// Checks the threshold.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] unless it is in `[0, 1]`.
    pub fn validate(&self) -> Result<()> {
        if self.threshold.is_finite() && (0.0..=1.0).contains(&self.threshold) {
            Ok(())
        } else {
            Err(Error::invalid(format!(
                "the similarity threshold must be between 0 and 1, got {}",
                self.threshold
            )))
        }
    }
}

/// How a response was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The same message was cached.
    Exact,
    /// A similar message was cached.
    Fuzzy,
    /// Generated within the target time.
    Generated,
    /// Generation ran past the target time; a fallback reply was given.
    Fallback,
    /// Generation failed (logged, never cached).
    Error,
}

impl Outcome {
    /// The name stored in `response_log.outcome`.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Exact => "exact",
            Outcome::Fuzzy => "fuzzy",
            Outcome::Generated => "generated",
            Outcome::Fallback => "fallback",
            Outcome::Error => "error",
        }
    }
}

/// A cache hit.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CacheMatch {
    /// The cached row's id.
    pub id: i64,
    /// Exact or fuzzy.
    pub kind: Outcome,
    /// The Jaccard similarity of the word sets (1.0 for an exact match).
    pub similarity: f64,
    /// The cached message.
    pub message: String,
    /// Its response.
    pub response: String,
}

/// Why a lookup that looked found nothing to return.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum NoMatch {
    /// A cached message was similar enough, but the negation guard blocked it: the
    /// two differ by a negation or a number.
    Guarded {
        /// The blocked row's id.
        id: i64,
        /// Its similarity.
        similarity: f64,
        /// The blocked cached message.
        message: String,
    },
    /// The message has more distinct words than the fuzzy lookup compares
    /// ([`MAX_FUZZY_WORDS`]); only the exact lookup ran.
    TooManyWords {
        /// The message's distinct words.
        words: usize,
        /// The limit.
        limit: usize,
    },
}

/// What a lookup found: a match, or none and, when it is not plain absence, why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Lookup {
    /// The match.
    pub found: Option<CacheMatch>,
    /// Why there is none although something came close, or why the fuzzy lookup was
    /// skipped.
    pub no_match: Option<NoMatch>,
}

/// The most distinct words a message may have for the fuzzy lookup to compare it;
/// a longer message gets the exact lookup only (a lookup stays a few milliseconds
/// whatever the message's size). Chat messages are far below it.
pub const MAX_FUZZY_WORDS: usize = 4096;

/// A cached response as listed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CachedResponse {
    /// Row id.
    pub id: i64,
    /// The message.
    pub message: String,
    /// The response.
    pub response: String,
    /// Times it answered a message (flushed hits).
    pub hits: u64,
    /// When it was stored.
    #[serde(serialize_with = "serialize_micros")]
    pub created_at: i64,
    /// When it was stored or last answered a message.
    #[serde(serialize_with = "serialize_micros")]
    pub last_used_at: i64,
}

/// One answered message, for the log.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoggedResponse {
    /// The agent.
    pub agent_id: i64,
    /// When it was answered, microseconds since the epoch.
    pub at: i64,
    /// How long it took, in seconds.
    pub duration: f64,
    /// How it was answered.
    pub outcome: Outcome,
}

/// The original design's `get_response_time_stats()`, computed in SQL over the log.
/// Times are in seconds. Serialises as `{"no_data": true}` when nothing is logged.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum ResponseTimeStats {
    /// No response logged.
    NoData {
        /// Always true.
        no_data: bool,
    },
    /// The figures.
    Data(TimeFigures),
}

/// The figures of [`ResponseTimeStats`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TimeFigures {
    /// Responses logged (generation errors not included).
    pub total_responses: u64,
    /// Mean time.
    pub avg_response_time: f64,
    /// Fastest.
    pub min_response_time: f64,
    /// Slowest.
    pub max_response_time: f64,
    /// `sorted[n / 2]`.
    pub p50_response_time: f64,
    /// `sorted[floor(n * 0.9)]`.
    pub p90_response_time: f64,
    /// `sorted[floor(n * 0.95)]`.
    pub p95_response_time: f64,
    /// Responses strictly faster than the target.
    pub responses_under_target: u64,
    /// `responses_under_target / total_responses * 100`.
    pub target_achievement_rate: f64,
    /// Cached responses of the agent now.
    pub cache_entries: u64,
    /// The agent's target time now.
    pub target_response_time: f64,
}

/// What [`ResponseCache::tune_target`] did.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Tuning {
    /// The target before, in seconds.
    pub old_target: f64,
    /// The target after.
    pub new_target: f64,
    /// The share of responses under the old target, in percent (None without data).
    pub achievement_rate: Option<f64>,
}

/// Which cached responses a purge removes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ResponsePurge {
    /// All of the agent's.
    All,
    /// Those stored longer ago than this.
    OlderThan(Duration),
    /// All but the most recently used `n`.
    Keep(u64),
}

/// Orders for [`ResponseCache::list`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseOrder {
    /// Most recently used first.
    Recent,
    /// Most hits first.
    Hits,
}

/// What a purge or a cap removed (or would).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ResponsePurgeReport {
    /// Cached responses removed (or that would be).
    pub removed: u64,
    /// True when nothing was removed because it was a dry run.
    pub dry_run: bool,
}

/// Cached responses deleted per transaction by a purge or a cap.
const DELETE_BATCH: usize = 2000;

/// Rows of one agent that may wait for the word index before a store indexes them
/// itself (a fuzzy lookup reads the waiting rows one by one).
const UNINDEXED_MAX: i64 = 128;

/// Rows indexed per transaction by [`ResponseCache::index_pending`].
const INDEX_BATCH: i64 = 2000;

/// Log rows deleted, at most, by each log write that finds the log over its retention.
const LOG_TRIM_BATCH: i64 = 5000;

/// The response cache and log of one store. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ResponseCache {
    store: Store,
}

impl Store {
    /// The response cache and response log in this file.
    pub fn response_cache(&self) -> ResponseCache {
        ResponseCache {
            store: self.clone(),
        }
    }
}

fn message_hash(message: &str) -> [u8; 32] {
    *blake3::hash(message.as_bytes()).as_bytes()
}

fn check_size(what: &str, text: &str) -> Result<()> {
    if text.is_empty() {
        return Err(Error::invalid(format!(
            "{what} is empty; the response cache keeps only messages and responses with text"
        )));
    }
    if text.len() > MAX_CONTENT_BYTES {
        return Err(Error::invalid(format!(
            "{what} is {} bytes; the limit is {MAX_CONTENT_BYTES}",
            text.len()
        )));
    }
    Ok(())
}

const EXACT: &str =
    "SELECT id, message, response FROM response_cache WHERE agent_id = ?1 AND message_hash = ?2";

fn exact_on(c: &Connection, agent_id: i64, message: &str) -> Result<Option<CacheMatch>> {
    let hash = message_hash(message);
    let row: Option<(i64, String, String)> = c
        .prepare_cached(EXACT)
        .and_then(|mut s| {
            s.query_row(params![agent_id, &hash[..]], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .optional()
        })
        .sql(EXACT)?;
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

/// The fewest shared words a message of `c` words needs to be strictly more similar
/// than `t` to a query of `q` words; `None` when no count reaches it. Similarity
/// grows with the shared count, so this is a binary search: O(log q), where a scan
/// from 1 made the lookup quadratic in a long message's length.
fn words_needed(q: usize, c: usize, t: f64) -> Option<usize> {
    let most = q.min(c);
    if most == 0 || jaccard(q, c, most) <= t {
        return None;
    }
    let (mut lo, mut hi) = (1, most);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if jaccard(q, c, mid) > t {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    Some(lo)
}

fn fuzzy_on(c: &Connection, agent_id: i64, message: &str, options: FuzzyOptions) -> Result<Lookup> {
    let none = |no_match| Lookup {
        found: None,
        no_match,
    };
    let words = word_set(message);
    if words.is_empty() {
        return Ok(none(None));
    }
    if words.len() > MAX_FUZZY_WORDS {
        return Ok(none(Some(NoMatch::TooManyWords {
            words: words.len(),
            limit: MAX_FUZZY_WORDS,
        })));
    }
    let (q, t) = (words.len(), options.threshold);
    let (lo, hi) = length_bounds(q, t);
    // Need grows with the message's length, so the shortest feasible length needs the
    // fewest shared words.
    let Some(fewest) = (lo.max(1) as usize..=q.max(lo as usize) * 2 + 1)
        .find_map(|count| words_needed(q, count, t))
    else {
        return Ok(none(None));
    };

    // Rarest words first. A match misses at most q - fewest query words, so it has
    // one of the first q - fewest + 1 of them: only those postings can bring in a new
    // candidate; later words only count for the candidates already found, and once a
    // candidate cannot reach the words it needs it is dropped. Common words ("the")
    // are then probed for a few survivors instead of read in full.
    let mut order: Vec<(u64, &String)> = Vec::with_capacity(q);
    {
        let mut count = c.prepare_cached(POSTINGS_COUNT).sql(POSTINGS_COUNT)?;
        for w in &words {
            let n: i64 = count
                .query_row(params![agent_id, w, lo, hi], |r| r.get(0))
                .sql(POSTINGS_COUNT)?;
            order.push((n as u64, w));
        }
    }
    order.sort_unstable();
    let admitting = q - fewest + 1;
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
            let mut rows = scan.query(params![agent_id, w, lo, hi]).sql(POSTINGS)?;
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
        let left = q - j - 1;
        shared.retain(|_, (n, count)| {
            words_needed(q, *count, t).is_some_and(|need| *n + left >= need)
        });
    }
    let mut candidates: Vec<(f64, i64)> = shared
        .into_iter()
        .filter_map(|(id, (n, count))| {
            let similarity = jaccard(q, count, n);
            (similarity > t).then_some((similarity, id))
        })
        .collect();
    // The rows not in the word index yet, compared one by one.
    let mut waiting = c.prepare_cached(WAITING_ROWS).sql(WAITING_ROWS)?;
    let mut rows = waiting.query([agent_id]).sql(WAITING_ROWS)?;
    while let Some(r) = rows.next().sql(WAITING_ROWS)? {
        let id: i64 = r.get(0).sql(WAITING_ROWS)?;
        let message: String = r.get(1).sql(WAITING_ROWS)?;
        let cached = word_set(&message);
        let similarity = jaccard(q, cached.len(), shared_words(&words, &cached));
        if similarity > t {
            candidates.push((similarity, id));
        }
    }
    // The brute-force scan keeps the first message of the highest similarity: the
    // same as the best similarity, then the smallest id.
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
        if options.negation_guard && differ_in_meaning(&words, &word_set(&cached)) {
            guarded.get_or_insert(NoMatch::Guarded {
                id,
                similarity,
                message: cached,
            });
            continue;
        }
        return Ok(Lookup {
            found: Some(CacheMatch {
                id,
                kind: Outcome::Fuzzy,
                similarity,
                message: cached,
                response,
            }),
            no_match: None,
        });
    }
    Ok(none(guarded))
}

fn lookup_on(
    c: &Connection,
    agent_id: i64,
    message: &str,
    options: FuzzyOptions,
) -> Result<Lookup> {
    match exact_on(c, agent_id, message)? {
        Some(hit) => Ok(Lookup {
            found: Some(hit),
            no_match: None,
        }),
        None => fuzzy_on(c, agent_id, message, options),
    }
}

impl ResponseCache {
    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The cached response to exactly this message (case-sensitive), if any.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn lookup_exact(&self, agent_id: i64, message: &str) -> Result<Option<CacheMatch>> {
        self.store.read(|c| exact_on(c, agent_id, message))
    }

    /// The cached message most similar to `message` (word-set Jaccard strictly above
    /// the threshold; the earliest cached among equals; the guard applied), found
    /// through the word index, in time linear in the message's words. A message of
    /// more than [`MAX_FUZZY_WORDS`] distinct words is not compared (no match). The answer is the one a scan of every cached message
    /// would give.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a bad threshold; SQLite errors.
    pub fn lookup_fuzzy(
        &self,
        agent_id: i64,
        message: &str,
        options: FuzzyOptions,
    ) -> Result<Option<CacheMatch>> {
        options.validate()?;
        self.store
            .snapshot(|c| fuzzy_on(c, agent_id, message, options))
            .map(|l| l.found)
    }

    /// The exact match, else the fuzzy one. A read: never a write transaction.
    ///
    /// # Errors
    /// As [`ResponseCache::lookup_fuzzy`].
    pub fn lookup(
        &self,
        agent_id: i64,
        message: &str,
        options: FuzzyOptions,
    ) -> Result<Option<CacheMatch>> {
        self.lookup_explained(agent_id, message, options)
            .map(|l| l.found)
    }

    /// [`ResponseCache::lookup`], saying why there is no match when the guard blocked
    /// one or the message was too long to compare.
    ///
    /// # Errors
    /// As [`ResponseCache::lookup_fuzzy`].
    pub fn lookup_explained(
        &self,
        agent_id: i64,
        message: &str,
        options: FuzzyOptions,
    ) -> Result<Lookup> {
        options.validate()?;
        self.store
            .snapshot(|c| lookup_on(c, agent_id, message, options))
    }

    /// [`ResponseCache::lookup_exact`] only if a pooled connection is idle now (see
    /// `ToolCache::try_get`).
    pub(crate) fn try_lookup_exact(
        &self,
        agent_id: i64,
        message: &str,
    ) -> Option<Result<Option<CacheMatch>>> {
        self.store.try_read(|c| exact_on(c, agent_id, message))
    }

    /// Stores `response` for `message` in one transaction; a message already cached
    /// gets the new response (and keeps its id). Returns the row id. The message's
    /// words reach the word index in a later batch (or right after, in a second
    /// transaction, when 128 rows of the agent are waiting); fuzzy lookups see it
    /// either way.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for text over 1 MiB; SQLite errors, in which case
    /// nothing was stored.
    pub fn put(&self, agent_id: i64, message: &str, response: &str) -> Result<i64> {
        check_size("the message", message)?;
        check_size("the response", response)?;
        let now = self.store.now_micros();
        let (id, waiting_rows) = self.store.write(|tx| {
            let id = put_on(tx, agent_id, message, response, now)?;
            Ok((id, waiting(tx, agent_id)?))
        })?;
        if waiting_rows >= UNINDEXED_MAX {
            // A transaction of its own that writes many pages: committed without the
            // inline checkpoint (see Store::write_bulk).
            self.store.write_bulk(|tx| index_agent(tx, agent_id))?;
        }
        Ok(id)
    }

    /// Adds the words of every row waiting for the word index, in batches of 2,000
    /// rows per transaction. Returns how many rows were indexed.
    ///
    /// # Errors
    /// SQLite errors; batches already done stay done.
    pub fn index_pending(&self) -> Result<u64> {
        const PENDING: &str = "SELECT id, agent_id, message FROM response_cache \
             INDEXED BY response_cache_unindexed WHERE indexed = 0 ORDER BY id LIMIT ?1";
        let mut total = 0;
        loop {
            let n = self.store.write_bulk(|tx| {
                let rows: Vec<(i64, i64, String)> = {
                    let mut stmt = tx.prepare_cached(PENDING).sql(PENDING)?;
                    let rows = stmt
                        .query_map([INDEX_BATCH], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                        .sql(PENDING)?;
                    rows.collect::<rusqlite::Result<_>>().sql(PENDING)?
                };
                for (id, agent_id, message) in &rows {
                    index_row(tx, *agent_id, *id, message)?;
                }
                Ok(rows.len() as i64)
            })?;
            total += n as u64;
            if n < INDEX_BATCH {
                return Ok(total);
            }
        }
    }

    /// Stores many pairs in one transaction (a bulk load), as [`ResponseCache::put`]
    /// one by one would, and indexes them in it.
    ///
    /// # Errors
    /// As [`ResponseCache::put`]; nothing is stored if one fails.
    pub fn put_many<M: AsRef<str>, R: AsRef<str>>(
        &self,
        agent_id: i64,
        pairs: &[(M, R)],
    ) -> Result<()> {
        for (m, r) in pairs {
            check_size("a message", m.as_ref())?;
            check_size("a response", r.as_ref())?;
        }
        let now = self.store.now_micros();
        self.store.write_bulk(|tx| {
            for (m, r) in pairs {
                put_on(tx, agent_id, m.as_ref(), r.as_ref(), now)?;
            }
            index_agent(tx, agent_id)
        })
    }

    /// Writes batched hits (`(row id, hits, last use)`; rows deleted meanwhile are
    /// skipped) and log rows in one transaction, then trims each agent's log to its
    /// most recent `keep` rows (at most 5,000 removed per call, so a trim never holds
    /// the lock long; the next call removes more).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a negative or non-finite duration; SQLite
    /// errors. Either way nothing was written.
    pub fn record(
        &self,
        hits: &[(i64, u64, i64)],
        rows: &[LoggedResponse],
        keep: u64,
    ) -> Result<()> {
        for r in rows {
            if !(r.duration.is_finite() && r.duration >= 0.0) {
                return Err(Error::invalid(format!(
                    "a response time must be a finite number of seconds >= 0, got {}",
                    r.duration
                )));
            }
        }
        if hits.is_empty() && rows.is_empty() {
            return Ok(());
        }
        self.store.write_bulk(|tx| {
            hits_on(tx, hits)?;
            log_on(tx, rows, keep)
        })
    }

    /// Appends to the response log (see [`ResponseCache::record`]).
    ///
    /// # Errors
    /// As [`ResponseCache::record`].
    pub fn log(&self, rows: &[LoggedResponse], keep: u64) -> Result<()> {
        self.record(&[], rows, keep)
    }

    /// The response-time stats of an agent's log, in SQL: one aggregate pass over
    /// the duration index, and each percentile a walk from the nearer end of it.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn time_stats(&self, agent_id: i64) -> Result<ResponseTimeStats> {
        self.store.snapshot(|c| time_stats_on(c, agent_id))
    }

    /// The original's tuning of the target time, as one write transaction (so two
    /// processes tuning at once both count): with more than 90% of the logged
    /// responses under the target it becomes 0.9x, under 50% 1.2x, else it stays.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn tune_target(&self, agent_id: i64) -> Result<Tuning> {
        const SET: &str = "UPDATE agents SET target_response_time = ?2 WHERE id = ?1";
        self.store.write(|tx| {
            let stats = time_stats_on(tx, agent_id)?;
            let ResponseTimeStats::Data(s) = stats else {
                let target = target_on(tx, agent_id)?;
                return Ok(Tuning {
                    old_target: target,
                    new_target: target,
                    achievement_rate: None,
                });
            };
            let rate = s.target_achievement_rate;
            let old = s.target_response_time;
            // Kept in the range every write and import accepts, however many tunings.
            let new = if rate > 90.0 {
                old * 0.9
            } else if rate < 50.0 {
                old * 1.2
            } else {
                old
            }
            .clamp(
                super::invariants::MIN_TARGET_SECONDS,
                super::invariants::MAX_RESPONSE_SECONDS,
            );
            if new != old {
                tx.prepare_cached(SET)
                    .and_then(|mut st| st.execute(params![agent_id, new]))
                    .sql(SET)?;
            }
            Ok(Tuning {
                old_target: old,
                new_target: new,
                achievement_rate: Some(rate),
            })
        })
    }

    /// Keeps the `keep` most recently used cached responses of an agent when it has
    /// more than `max` (the original's cap: over 1,000, keep 500). Returns how many
    /// were removed.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn cap(&self, agent_id: i64, max: u64, keep: u64) -> Result<u64> {
        let entries = self.entries(agent_id)?;
        if entries <= max {
            return Ok(0);
        }
        self.purge(agent_id, ResponsePurge::Keep(keep), false)
            .map(|r| r.removed)
    }

    /// Cached responses of an agent now.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn entries(&self, agent_id: i64) -> Result<u64> {
        self.store.read(|c| entries_on(c, agent_id))
    }

    /// Removes cached responses of an agent (with their word index) by `rule`, in
    /// batches of 2,000 per transaction (`All` too); a dry run counts them.
    ///
    /// # Errors
    /// SQLite errors; batches already done stay done.
    pub fn purge(
        &self,
        agent_id: i64,
        rule: ResponsePurge,
        dry_run: bool,
    ) -> Result<ResponsePurgeReport> {
        const COUNT_ALL: &str = "SELECT count(*) FROM response_cache WHERE agent_id = ?1";
        const COUNT_OLDER: &str =
            "SELECT count(*) FROM response_cache WHERE agent_id = ?1 AND created_at < ?2";
        const OLDER: &str = "SELECT id, message FROM response_cache \
             WHERE agent_id = ?1 AND created_at < ?2 ORDER BY id LIMIT ?3";
        const BEYOND: &str = "SELECT id, message FROM response_cache WHERE agent_id = ?1 \
             ORDER BY last_used_at DESC, id DESC LIMIT ?3 OFFSET ?2";
        let now = self.store.now_micros();
        let cutoff =
            |d: Duration| now.saturating_sub(i64::try_from(d.as_micros()).unwrap_or(i64::MAX));
        if dry_run {
            let n: i64 = self.store.read(|c| match rule {
                ResponsePurge::All => c
                    .query_row(COUNT_ALL, [agent_id], |r| r.get(0))
                    .sql(COUNT_ALL),
                ResponsePurge::OlderThan(d) => c
                    .query_row(COUNT_OLDER, params![agent_id, cutoff(d)], |r| r.get(0))
                    .sql(COUNT_OLDER),
                ResponsePurge::Keep(k) => {
                    let total: i64 = c
                        .query_row(COUNT_ALL, [agent_id], |r| r.get(0))
                        .sql(COUNT_ALL)?;
                    Ok((total - i64::try_from(k).unwrap_or(i64::MAX)).max(0))
                }
            })?;
            return Ok(ResponsePurgeReport {
                removed: n as u64,
                dry_run: true,
            });
        }
        // Every rule, `All` included, runs in batches, so a large purge never holds the
        // write lock long; a purge killed between two batches is finished by running it
        // again (its rule picks the rest).
        let mut removed = 0u64;
        loop {
            let n = self.store.write_bulk(|tx| {
                let (sql, second) = match rule {
                    ResponsePurge::OlderThan(d) => (OLDER, cutoff(d)),
                    ResponsePurge::Keep(k) => (BEYOND, i64::try_from(k).unwrap_or(i64::MAX)),
                    ResponsePurge::All => (OLDER, i64::MAX),
                };
                let victims: Vec<(i64, String)> = {
                    let mut stmt = tx.prepare_cached(sql).sql(sql)?;
                    let rows = stmt
                        .query_map(params![agent_id, second, DELETE_BATCH as i64], |r| {
                            Ok((r.get(0)?, r.get(1)?))
                        })
                        .sql(sql)?;
                    rows.collect::<rusqlite::Result<_>>().sql(sql)?
                };
                delete_rows(tx, agent_id, &victims)?;
                Ok(victims.len())
            })?;
            removed += n as u64;
            if n < DELETE_BATCH {
                return Ok(ResponsePurgeReport {
                    removed,
                    dry_run: false,
                });
            }
        }
    }

    /// An agent's cached responses, most recently used or most hit first.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn list(
        &self,
        agent_id: i64,
        order: ResponseOrder,
        limit: u64,
    ) -> Result<Vec<CachedResponse>> {
        const RECENT: &str = "SELECT id, message, response, hits, created_at, last_used_at \
             FROM response_cache WHERE agent_id = ?1 \
             ORDER BY last_used_at DESC, id DESC LIMIT ?2";
        const HITS: &str = "SELECT id, message, response, hits, created_at, last_used_at \
             FROM response_cache WHERE agent_id = ?1 \
             ORDER BY hits DESC, last_used_at DESC, id DESC LIMIT ?2";
        let sql = match order {
            ResponseOrder::Recent => RECENT,
            ResponseOrder::Hits => HITS,
        };
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.store.read(|c| {
            let mut stmt = c.prepare_cached(sql).sql(sql)?;
            let rows = stmt
                .query_map(params![agent_id, limit], |r| {
                    Ok(CachedResponse {
                        id: r.get(0)?,
                        message: r.get(1)?,
                        response: r.get(2)?,
                        hits: r.get(3)?,
                        created_at: r.get(4)?,
                        last_used_at: r.get(5)?,
                    })
                })
                .sql(sql)?;
            rows.collect::<rusqlite::Result<_>>().sql(sql)
        })
    }

    /// An agent's response time target, in seconds.
    ///
    /// # Errors
    /// [`Error::UnknownAgent`]-like SQLite errors when the agent is gone.
    pub fn target(&self, agent_id: i64) -> Result<f64> {
        self.store.read(|c| target_on(c, agent_id))
    }
}

fn put_on(tx: &Connection, agent_id: i64, message: &str, response: &str, now: i64) -> Result<i64> {
    const UPSERT: &str = "INSERT INTO response_cache \
         (agent_id, message_hash, message, response, word_count, created_at, last_used_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6) \
         ON CONFLICT (agent_id, message_hash) DO UPDATE SET \
         response = excluded.response, last_used_at = excluded.last_used_at \
         RETURNING id";
    let words = word_set(message).len();
    let hash = message_hash(message);
    tx.prepare_cached(UPSERT)
        .and_then(|mut s| {
            s.query_row(
                params![agent_id, &hash[..], message, response, words as i64, now],
                |r| r.get(0),
            )
        })
        .sql(UPSERT)
}

/// Rows of an agent waiting for the word index (counted up to the limit).
fn waiting(tx: &Connection, agent_id: i64) -> Result<i64> {
    const WAITING: &str = "SELECT count(*) FROM (SELECT 1 FROM response_cache \
         INDEXED BY response_cache_unindexed WHERE agent_id = ?1 AND indexed = 0 LIMIT ?2)";
    tx.prepare_cached(WAITING)
        .and_then(|mut s| s.query_row(params![agent_id, UNINDEXED_MAX], |r| r.get(0)))
        .sql(WAITING)
}

/// Indexes every waiting row of an agent.
fn index_agent(tx: &Connection, agent_id: i64) -> Result<()> {
    const AGENT_PENDING: &str = "SELECT id, message FROM response_cache INDEXED BY response_cache_unindexed \
     WHERE agent_id = ?1 AND indexed = 0";
    let rows: Vec<(i64, String)> = {
        let mut stmt = tx.prepare_cached(AGENT_PENDING).sql(AGENT_PENDING)?;
        let rows = stmt
            .query_map([agent_id], |r| Ok((r.get(0)?, r.get(1)?)))
            .sql(AGENT_PENDING)?;
        rows.collect::<rusqlite::Result<_>>().sql(AGENT_PENDING)?
    };
    for (id, message) in &rows {
        index_row(tx, agent_id, *id, message)?;
    }
    Ok(())
}

/// Adds one row's postings to the word index and marks it indexed.
fn index_row(tx: &Connection, agent_id: i64, id: i64, message: &str) -> Result<()> {
    const POSTING: &str = "INSERT OR IGNORE INTO response_words \
         (agent_id, word, word_count, response_id) VALUES (?1, ?2, ?3, ?4)";
    const MARK: &str = "UPDATE response_cache SET indexed = 1 WHERE id = ?1";
    let words = word_set(message);
    let mut posting = tx.prepare_cached(POSTING).sql(POSTING)?;
    for w in &words {
        posting
            .execute(params![agent_id, w, words.len() as i64, id])
            .sql(POSTING)?;
    }
    tx.prepare_cached(MARK)
        .and_then(|mut s| s.execute([id]))
        .sql(MARK)?;
    Ok(())
}

/// Deletes cached rows and their postings (found from the message's words, by primary
/// key).
fn delete_rows(tx: &Connection, agent_id: i64, victims: &[(i64, String)]) -> Result<()> {
    const POSTING: &str = "DELETE FROM response_words \
         WHERE agent_id = ?1 AND word = ?2 AND word_count = ?3 AND response_id = ?4";
    const ROW: &str = "DELETE FROM response_cache WHERE id = ?1";
    let mut posting = tx.prepare_cached(POSTING).sql(POSTING)?;
    let mut row = tx.prepare_cached(ROW).sql(ROW)?;
    for (id, message) in victims {
        let words = word_set(message);
        for w in &words {
            posting
                .execute(params![agent_id, w, words.len() as i64, id])
                .sql(POSTING)?;
        }
        row.execute([id]).sql(ROW)?;
    }
    Ok(())
}

fn hits_on(tx: &Connection, hits: &[(i64, u64, i64)]) -> Result<()> {
    const HIT: &str = "UPDATE response_cache SET hits = hits + ?2, \
         last_used_at = max(last_used_at, ?3) WHERE id = ?1";
    let mut stmt = tx.prepare_cached(HIT).sql(HIT)?;
    for (id, n, at) in hits {
        stmt.execute(params![id, *n as i64, at]).sql(HIT)?;
    }
    Ok(())
}

/// Appends log rows (their duration buckets follow by trigger).
fn insert_log(tx: &Connection, rows: &[LoggedResponse]) -> Result<()> {
    const INSERT: &str = "INSERT INTO response_log (agent_id, at, duration, bucket, outcome) \
         VALUES (?1, ?2, ?3, ?4, ?5)";
    let mut insert = tx.prepare_cached(INSERT).sql(INSERT)?;
    for r in rows {
        insert
            .execute(params![
                r.agent_id,
                r.at,
                r.duration,
                time_bucket(r.duration),
                r.outcome.as_str()
            ])
            .sql(INSERT)?;
    }
    Ok(())
}

fn log_on(tx: &Connection, rows: &[LoggedResponse], keep: u64) -> Result<()> {
    const CUTOFF: &str = "SELECT id FROM response_log WHERE agent_id = ?1 \
         ORDER BY id DESC LIMIT 1 OFFSET ?2";
    const TRIM: &str = "DELETE FROM response_log WHERE id IN (SELECT id FROM response_log \
         WHERE agent_id = ?1 AND id <= ?2 ORDER BY id LIMIT ?3)";
    let keep = i64::try_from(keep).unwrap_or(i64::MAX);
    insert_log(tx, rows)?;
    let mut agents: Vec<i64> = rows.iter().map(|r| r.agent_id).collect();
    agents.sort_unstable();
    agents.dedup();
    for agent in agents {
        let cutoff: Option<i64> = tx
            .prepare_cached(CUTOFF)
            .and_then(|mut s| s.query_row(params![agent, keep], |r| r.get(0)).optional())
            .sql(CUTOFF)?;
        if let Some(cutoff) = cutoff {
            tx.prepare_cached(TRIM)
                .and_then(|mut s| s.execute(params![agent, cutoff, LOG_TRIM_BATCH]))
                .sql(TRIM)?;
        }
    }
    Ok(())
}

fn target_on(c: &Connection, agent_id: i64) -> Result<f64> {
    const TARGET: &str = "SELECT target_response_time FROM agents WHERE id = ?1";
    c.prepare_cached(TARGET)
        .and_then(|mut s| s.query_row([agent_id], |r| r.get(0)))
        .sql(TARGET)
}

fn entries_on(c: &Connection, agent_id: i64) -> Result<u64> {
    const COUNT: &str = "SELECT count(*) FROM response_cache WHERE agent_id = ?1";
    c.prepare_cached(COUNT)
        .and_then(|mut s| s.query_row([agent_id], |r| r.get::<_, i64>(0)))
        .sql(COUNT)
        .map(|n| n as u64)
}

/// The duration bucket of a time in seconds (>= 0): the top 16 bits of its IEEE 754
/// pattern, i.e. its exponent and 4 mantissa bits, 16 buckets per doubling. For
/// non-negative numbers the bit pattern orders like the value, so buckets do too.
pub(crate) fn time_bucket(seconds: f64) -> i64 {
    // + 0.0 turns -0.0 (sign bit set) into 0.0.
    ((seconds + 0.0).to_bits() >> 48) as i64
}

fn time_stats_on(c: &Connection, agent_id: i64) -> Result<ResponseTimeStats> {
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
    let buckets: Vec<(i64, u64, f64)> = {
        let mut stmt = c.prepare_cached(BUCKETS).sql(BUCKETS)?;
        let rows = stmt
            .query_map([agent_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .sql(BUCKETS)?;
        rows.collect::<rusqlite::Result<_>>().sql(BUCKETS)?
    };
    let n: u64 = buckets.iter().map(|b| b.1).sum();
    if n == 0 {
        return Ok(ResponseTimeStats::NoData { no_data: true });
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
                return c
                    .prepare_cached(sql)
                    .and_then(|mut s| {
                        s.query_row(params![agent_id, bucket, offset as i64], |r| r.get(0))
                    })
                    .sql(sql);
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
        let inside: i64 = c
            .prepare_cached(BELOW)
            .and_then(|mut s| s.query_row(params![agent_id, target_bucket, target], |r| r.get(0)))
            .sql(BELOW)?;
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

/// Stores one imported response in the caller's transaction (see `store::transfer`);
/// a message the agent already has keeps its own response. It reaches the word index
/// with the next `index_pending`. Returns whether it was added.
pub(crate) fn restore_response(
    tx: &Connection,
    agent_id: i64,
    message: &str,
    response: &str,
    created_at: i64,
    last_used_at: i64,
    hits: u64,
) -> Result<bool> {
    check_size("message", message)?;
    check_size("response", response)?;
    let hits =
        i64::try_from(hits).map_err(|_| Error::invalid(format!("hits {hits} is too large")))?;
    const INSERT: &str = "INSERT INTO response_cache (agent_id, message_hash, message, response, \
         word_count, created_at, last_used_at, hits) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) \
         ON CONFLICT (agent_id, message_hash) DO NOTHING";
    let words = word_set(message).len() as i64;
    let hash = message_hash(message);
    let n = tx
        .prepare_cached(INSERT)
        .and_then(|mut s| {
            s.execute(params![
                agent_id,
                &hash[..],
                message,
                response,
                words,
                created_at,
                last_used_at,
                hits
            ])
        })
        .sql(INSERT)?;
    Ok(n == 1)
}

/// Appends one imported log row in the caller's transaction (no retention trim).
pub(crate) fn restore_log(tx: &Connection, row: &LoggedResponse) -> Result<()> {
    if !(row.duration.is_finite() && row.duration >= 0.0) {
        return Err(Error::invalid(format!(
            "a response time must be a finite number of seconds >= 0, got {}",
            row.duration
        )));
    }
    insert_log(tx, std::slice::from_ref(row))
}

#[cfg(test)]
mod tests {
    use super::{jaccard, time_bucket, words_needed};

    proptest::proptest! {
        /// The binary search agrees with the scan it replaced.
        #[test]
        fn words_needed_matches_a_scan(q in 0usize..400, c in 0usize..400, t in 0.0f64..1.0) {
            let scan = (1..=q.min(c)).find(|&i| jaccard(q, c, i) > t);
            proptest::prop_assert_eq!(words_needed(q, c, t), scan);
        }
    }

    #[test]
    fn buckets_order_like_durations() {
        let mut xs: Vec<f64> = vec![
            0.0, -0.0, 1e-9, 5e-6, 0.049, 0.05, 0.0500001, 1.0, 2.0, 3.99, 1e6,
        ];
        xs.sort_by(f64::total_cmp);
        for w in xs.windows(2) {
            assert!(time_bucket(w[0]) <= time_bucket(w[1]), "{} {}", w[0], w[1]);
        }
        assert_eq!(time_bucket(-0.0), time_bucket(0.0));
        assert!(
            time_bucket(1.0) < time_bucket(1.1),
            "16 buckets per doubling"
        );
        assert_eq!(time_bucket(1.0), time_bucket(1.06));
    }
}
