//! The response cache: messages and their responses per agent, looked up exactly (by
//! the message's hash) or by word-set similarity with a guard against negations and
//! numbers, stored, counted, capped and purged; and the response log with its
//! time stats. The records and the agent-bound [`ResponseCache`] handle.

mod log;

use std::time::Duration;

use serde::Serialize;

pub use log::{LoggedResponse, ResponseTimeStats, TimeFigures, Tuning};
pub(crate) use log::{TuneRule, time_bucket, tuning, validate_duration};

use super::{AgentRecord, MAX_CONTENT_BYTES, Store, batch};
use crate::clock::serialize_micros;
use crate::error::{Error, Result};

/// How a fuzzy lookup decides.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
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
    /// These options with another threshold.
    pub fn with_threshold(mut self, threshold: f64) -> Self {
        self.threshold = threshold;
        self
    }

    /// These options with the negation guard on or off.
    pub fn with_negation_guard(mut self, on: bool) -> Self {
        self.negation_guard = on;
        self
    }

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

/// One fuzzy candidate, taken best first, through the negation guard: the lookup's
/// answer when the guard lets it through; else `None`, the first candidate blocked
/// kept in `guarded` (both engines' lookups walk their candidates with this).
pub(crate) fn through_guard(
    message: &str,
    options: FuzzyOptions,
    candidate: CacheMatch,
    guarded: &mut Option<NoMatch>,
) -> Option<Lookup> {
    if options.negation_guard && crate::store::words::differ_in_meaning(message, &candidate.message)
    {
        guarded.get_or_insert(NoMatch::Guarded {
            id: candidate.id,
            similarity: candidate.similarity,
            message: candidate.message,
        });
        return None;
    }
    Some(Lookup {
        found: Some(candidate),
        no_match: None,
    })
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

/// What [`ResponseCache::optimize`] (the agent's `optimize_performance`) did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Optimization {
    /// The target before, in seconds.
    pub old_target: f64,
    /// The target after.
    pub new_target: f64,
    /// The achievement rate it was based on (None without data).
    pub achievement_rate: Option<f64>,
    /// Cached responses removed by the cap.
    pub removed_entries: u64,
    /// Cached responses left.
    pub cache_entries: u64,
}

/// One agent's cached responses and response log. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ResponseCache {
    store: Store,
    agent_id: i64,
}

impl Store {
    /// The response cache and response log of `agent`.
    pub fn response_cache(&self, agent: &AgentRecord) -> ResponseCache {
        ResponseCache {
            store: self.clone(),
            agent_id: agent.id,
        }
    }
}

/// The key of an exact lookup: blake3 of the message.
pub(crate) fn message_hash(message: &str) -> [u8; 32] {
    *blake3::hash(message.as_bytes()).as_bytes()
}

/// Checks a message or response before it reaches the database.
pub(crate) fn check_size(what: &str, text: &str) -> Result<()> {
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

impl ResponseCache {
    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The agent's row id.
    pub fn agent_id(&self) -> i64 {
        self.agent_id
    }

    /// The cached response to exactly this message (case-sensitive), if any.
    ///
    /// # Errors
    /// Database errors.
    pub fn lookup_exact(&self, message: &str) -> Result<Option<CacheMatch>> {
        self.store.engine().response_exact(self.agent_id, message)
    }

    /// The cached message most similar to `message` (word-set Jaccard strictly above
    /// the threshold; the earliest cached among equals; the guard applied), found
    /// through the word index, in time linear in the message's words. A message of
    /// more than [`MAX_FUZZY_WORDS`] distinct words is not compared (no match). The
    /// answer is the one a scan of every cached message would give.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a bad threshold; database errors.
    pub fn lookup_fuzzy(&self, message: &str, options: FuzzyOptions) -> Result<Option<CacheMatch>> {
        options.validate()?;
        self.store
            .engine()
            .response_lookup(self.agent_id, message, options, true)
            .map(|l| l.found)
    }

    /// The exact match, else the fuzzy one. A read: never a write transaction.
    ///
    /// # Errors
    /// As [`ResponseCache::lookup_fuzzy`].
    pub fn lookup(&self, message: &str, options: FuzzyOptions) -> Result<Option<CacheMatch>> {
        self.lookup_explained(message, options).map(|l| l.found)
    }

    /// [`ResponseCache::lookup`], saying why there is no match when the guard blocked
    /// one or the message was too long to compare.
    ///
    /// # Errors
    /// As [`ResponseCache::lookup_fuzzy`].
    pub fn lookup_explained(&self, message: &str, options: FuzzyOptions) -> Result<Lookup> {
        options.validate()?;
        self.store
            .engine()
            .response_lookup(self.agent_id, message, options, false)
    }

    /// [`ResponseCache::lookup_exact`] only if it can run without waiting for a
    /// connection (see `ToolCache::try_get_key`).
    pub(crate) fn try_lookup_exact(&self, message: &str) -> Option<Result<Option<CacheMatch>>> {
        self.store
            .engine()
            .response_try_exact(self.agent_id, message)
    }

    /// Stores `response` for `message` in one transaction; a message already cached
    /// gets the new response (and keeps its id). Returns the row id. The message's
    /// words reach the word index in a later batch (or right after, in a second
    /// transaction, when 128 rows of the agent are waiting); fuzzy lookups see it
    /// either way.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for empty text or text over 1 MiB; database errors,
    /// in which case nothing was stored.
    pub fn put(&self, message: &str, response: &str) -> Result<i64> {
        self.put_releasing(message, response, None)
    }

    /// [`ResponseCache::put`], giving up `lease` (its key and holder) in the same
    /// write: the lease on answering `message`, held by this process.
    pub(crate) fn put_releasing(
        &self,
        message: &str,
        response: &str,
        lease: Option<(&[u8; 32], &str)>,
    ) -> Result<i64> {
        check_size("the message", message)?;
        check_size("the response", response)?;
        let now = self.store.now_micros();
        self.store
            .engine()
            .response_put(self.agent_id, message, response, now, lease)
    }

    /// Adds the words of every row waiting for the word index (every agent's), in
    /// short transactions. Returns how many rows were indexed.
    ///
    /// # Errors
    /// Database errors; batches already done stay done.
    pub fn index_pending(&self) -> Result<u64> {
        self.store.engine().response_index_pending()
    }

    /// Stores many pairs in one transaction (a bulk load), as [`ResponseCache::put`]
    /// one by one would, and indexes them in it.
    ///
    /// # Errors
    /// As [`ResponseCache::put`]; nothing is stored if one fails.
    pub fn put_many<M: AsRef<str>, R: AsRef<str>>(&self, pairs: &[(M, R)]) -> Result<()> {
        let pairs: Vec<(&str, &str)> = pairs
            .iter()
            .map(|(m, r)| (m.as_ref(), r.as_ref()))
            .collect();
        for (m, r) in &pairs {
            check_size("a message", m)?;
            check_size("a response", r)?;
        }
        let now = self.store.now_micros();
        self.store
            .engine()
            .response_put_many(self.agent_id, &pairs, now)
    }

    /// Writes batched hits (`(row id, hits, last use)`; rows deleted meanwhile are
    /// skipped) and log rows in one transaction, then trims the agent's log to its
    /// most recent `keep` rows (at most 5,000 removed per call, so a trim never holds
    /// the lock long; the next call removes more).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a negative or non-finite duration; database
    /// errors. Either way nothing was written.
    pub fn record(
        &self,
        hits: &[(i64, u64, i64)],
        rows: &[LoggedResponse],
        keep: u64,
    ) -> Result<()> {
        for r in rows {
            validate_duration(r.duration)?;
        }
        if hits.is_empty() && rows.is_empty() {
            return Ok(());
        }
        self.store
            .engine()
            .response_record(self.agent_id, hits, rows, keep)
    }

    /// Appends to the response log (see [`ResponseCache::record`]).
    ///
    /// # Errors
    /// As [`ResponseCache::record`].
    pub fn log(&self, rows: &[LoggedResponse], keep: u64) -> Result<()> {
        self.record(&[], rows, keep)
    }

    /// The response-time stats of the agent's log.
    ///
    /// # Errors
    /// Database errors.
    pub fn time_stats(&self) -> Result<ResponseTimeStats> {
        self.store.engine().response_time_stats(self.agent_id)
    }

    /// The original's tuning of the target time, as one write transaction (so two
    /// processes tuning at once both count): with more than 90% of the logged
    /// responses under the target it becomes 0.9x, under 50% 1.2x, else it stays.
    ///
    /// # Errors
    /// Database errors.
    pub fn tune_target(&self) -> Result<Tuning> {
        self.store
            .engine()
            .response_tune(self.agent_id, log::tuned_target)
    }

    /// Keeps the `keep` most recently used cached responses when there are more than
    /// `max` (the original's cap: over 1,000, keep 500). Returns how many were removed.
    ///
    /// # Errors
    /// Database errors.
    pub fn cap(&self, max: u64, keep: u64) -> Result<u64> {
        if self.entries()? <= max {
            return Ok(0);
        }
        self.purge(ResponsePurge::Keep(keep), false)
            .map(|r| r.removed)
    }

    /// The original's `optimize_performance` on the store: tune the target
    /// ([`ResponseCache::tune_target`]), then cap the cache
    /// ([`ResponseCache::cap`]: over `max_entries`, keep the `keep` most recently
    /// used).
    ///
    /// # Errors
    /// Database errors.
    pub fn optimize(&self, max_entries: u64, keep: u64) -> Result<Optimization> {
        let tuned = self.tune_target()?;
        let removed = self.cap(max_entries, keep)?;
        Ok(Optimization {
            old_target: tuned.old_target,
            new_target: tuned.new_target,
            achievement_rate: tuned.achievement_rate,
            removed_entries: removed,
            cache_entries: self.entries()?,
        })
    }

    /// Cached responses of the agent now.
    ///
    /// # Errors
    /// Database errors.
    pub fn entries(&self) -> Result<u64> {
        self.store.engine().response_entries(self.agent_id)
    }

    /// Removes cached responses (with their word index) by `rule`, in batches, each
    /// a short transaction (`All` too); a dry run counts them. A purge killed between
    /// two batches is finished by running it again (its rule picks the rest).
    ///
    /// # Errors
    /// Database errors; batches already done stay done.
    pub fn purge(&self, rule: ResponsePurge, dry_run: bool) -> Result<ResponsePurgeReport> {
        let engine = self.store.engine();
        let now = self.store.now_micros();
        if dry_run {
            return Ok(ResponsePurgeReport {
                removed: engine.response_purge_count(self.agent_id, rule, now)?,
                dry_run: true,
            });
        }
        let done = batch::in_batches(engine.busy_timeout(), |rows| {
            let n = engine.response_purge_batch(self.agent_id, rule, now, rows)?;
            Ok(batch::removed(n, rows))
        })?;
        Ok(ResponsePurgeReport {
            removed: done.rows,
            dry_run: false,
        })
    }

    /// The agent's cached responses, most recently used or most hit first.
    ///
    /// # Errors
    /// Database errors.
    pub fn list(&self, order: ResponseOrder, limit: u64) -> Result<Vec<CachedResponse>> {
        self.store
            .engine()
            .response_list(self.agent_id, order, limit)
    }

    /// The agent's response time target, in seconds.
    ///
    /// # Errors
    /// Database errors.
    pub fn target(&self) -> Result<f64> {
        self.store.engine().response_target(self.agent_id)
    }
}

/// The cutoff of `OlderThan(d)` at `now`.
pub(crate) fn older_than(d: Duration, now: i64) -> i64 {
    now.saturating_sub(crate::clock::duration_micros(d))
}
