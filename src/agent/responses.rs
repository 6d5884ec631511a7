//! Answering messages fast: [`Responder`] answers from the response cache (exact,
//! then fuzzy), else generates under the agent's target time with a fallback reply on
//! timeout; it logs every response and tunes the target. Hits and log rows are
//! batched in memory (a hit never writes); a generated response is stored before it
//! is returned.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::LlmError;
use super::batch::{Batch, Flush, Pending, blocking, flush_now, flush_when, lock};
use super::lease;
use crate::error::{Error, Result};
use crate::store::{
    AgentRecord, CacheMatch, FuzzyOptions, LoggedResponse, MAX_CONTENT_BYTES, Optimization,
    Outcome, ResponseCache, ResponseTimeStats, Store,
};

/// The original's fallback replies, chosen by the message's shape.
pub const FALLBACK_QUESTION: &str =
    "I'm processing your request. Could you please rephrase or simplify your question?";
/// For a message of more than 20 words.
pub const FALLBACK_LONG: &str = "I understand you're asking about this topic. Let me provide a brief response while I gather more details.";
/// For any other message.
pub const FALLBACK_OTHER: &str =
    "That's an interesting question. Here's what I can tell you immediately...";

/// The fallback reply for `message`, as the original chose it: a `?` anywhere, else
/// more than 20 words, else the general one.
pub fn fallback_reply(message: &str) -> &'static str {
    if message.contains('?') {
        FALLBACK_QUESTION
    } else if message.split_whitespace().count() > 20 {
        FALLBACK_LONG
    } else {
        FALLBACK_OTHER
    }
}

/// A generation failure: returned to the caller inside [`Error::GenerationFailed`],
/// and nothing is cached.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GenerationError {
    /// The LLM client failed: its error keeps the HTTP status and says whether a
    /// retry may help ([`LlmError::is_transient`]).
    #[error(transparent)]
    Llm(#[from] LlmError),
    /// Any other failure, in words.
    #[error("{0}")]
    Other(String),
}

impl GenerationError {
    /// A failure described in words.
    pub fn other(message: impl Into<String>) -> Self {
        GenerationError::Other(message.into())
    }

    /// The LLM client's error, when that is what failed.
    pub fn llm(&self) -> Option<&LlmError> {
        match self {
            GenerationError::Llm(e) => Some(e),
            GenerationError::Other(_) => None,
        }
    }
}

impl From<&str> for GenerationError {
    fn from(message: &str) -> Self {
        GenerationError::other(message)
    }
}

impl From<String> for GenerationError {
    fn from(message: String) -> Self {
        GenerationError::Other(message)
    }
}

/// What produces a response when the cache has none (an LLM, in the agent).
#[async_trait::async_trait]
pub trait ResponseGenerator: Send + Sync {
    /// A response to `message`.
    ///
    /// # Errors
    /// A [`GenerationError`] saying what went wrong.
    async fn generate(&self, message: &str) -> std::result::Result<String, GenerationError>;
}

/// A [`ResponseGenerator`] from an async closure: see [`generator_fn`].
#[derive(Clone)]
pub struct FnGenerator<F>(F);

/// Wraps `f(message) -> impl Future<Output = Result<String, GenerationError>>` as a
/// generator.
///
/// ```
/// use agentstore::agent::{GenerationError, generator_fn};
///
/// let echo = generator_fn(|message: String| async move {
///     Ok::<_, GenerationError>(format!("you said: {message}"))
/// });
/// ```
pub fn generator_fn<F, Fut>(f: F) -> FnGenerator<F>
where
    F: Fn(String) -> Fut + Send + Sync,
    Fut: Future<Output = std::result::Result<String, GenerationError>> + Send,
{
    FnGenerator(f)
}

#[async_trait::async_trait]
impl<F, Fut> ResponseGenerator for FnGenerator<F>
where
    F: Fn(String) -> Fut + Send + Sync,
    Fut: Future<Output = std::result::Result<String, GenerationError>> + Send,
{
    async fn generate(&self, message: &str) -> std::result::Result<String, GenerationError> {
        (self.0)(message.to_string()).await
    }
}

/// How a [`Responder`] behaves.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ResponseConfig {
    /// Fuzzy matching: threshold (0.7) and the negation/number guard (on).
    pub fuzzy: FuzzyOptions,
    /// How long a generation that missed the target may keep running in the
    /// background; its response is cached if it arrives in time (30 s).
    pub grace_period: Duration,
    /// The cap that `optimize_performance` applies: over `max_cache_entries` (1,000)
    /// cached responses, keep the `keep_on_cap` (500) most recently used.
    pub max_cache_entries: u64,
    /// See `max_cache_entries`.
    pub keep_on_cap: u64,
    /// Log rows kept per agent (the most recent 100,000).
    pub log_retention: u64,
    /// How often, at most, hits and log rows are written while messages keep coming.
    pub flush_interval: Duration,
    /// The lease on a new message being answered (10 s, renewed while it is
    /// generated): the same new message for this agent in other processes waits for
    /// its response (until its own target time, then answers with the fallback);
    /// a process that died is taken over after at most this long.
    pub lease: Duration,
}

/// Builder methods: `ResponseConfig::default()` (or a constructor), then `with_*`.
impl ResponseConfig {
    /// This configuration with another `fuzzy`.
    pub fn with_fuzzy(mut self, fuzzy: FuzzyOptions) -> Self {
        self.fuzzy = fuzzy;
        self
    }

    /// This configuration with another `lease` (at least 30 ms).
    pub fn with_lease(mut self, lease: Duration) -> Self {
        self.lease = lease.max(Duration::from_millis(30));
        self
    }

    /// This configuration with another `grace_period`.
    pub fn with_grace_period(mut self, grace_period: Duration) -> Self {
        self.grace_period = grace_period;
        self
    }

    /// This configuration with another `max_cache_entries`.
    pub fn with_max_cache_entries(mut self, max_cache_entries: u64) -> Self {
        self.max_cache_entries = max_cache_entries;
        self
    }

    /// This configuration with another `keep_on_cap`.
    pub fn with_keep_on_cap(mut self, keep_on_cap: u64) -> Self {
        self.keep_on_cap = keep_on_cap;
        self
    }

    /// This configuration with another `log_retention`.
    pub fn with_log_retention(mut self, log_retention: u64) -> Self {
        self.log_retention = log_retention;
        self
    }

    /// This configuration with another `flush_interval`.
    pub fn with_flush_interval(mut self, flush_interval: Duration) -> Self {
        self.flush_interval = flush_interval;
        self
    }
}

impl Default for ResponseConfig {
    fn default() -> Self {
        ResponseConfig {
            fuzzy: FuzzyOptions::default(),
            grace_period: Duration::from_secs(30),
            max_cache_entries: 1000,
            keep_on_cap: 500,
            log_retention: 100_000,
            flush_interval: Duration::from_secs(1),
            lease: crate::agent::lease::DEFAULT_LEASE,
        }
    }
}

/// The lease key of a new message of agent `agent_id`.
fn lease_key(agent_id: i64, message: &str) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(b"agentstore response lease\0");
    h.update(&agent_id.to_le_bytes());
    h.update(message.as_bytes());
    *h.finalize().as_bytes()
}

/// What to do with the response of a generation that missed its target, once it has
/// been cached (see [`Responder::process_message_then`]). Never called if the
/// generation fails or outlasts the grace period.
pub type LateAnswer =
    Box<dyn FnOnce(String) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>> + Send>;

/// The answer to one message.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Reply {
    /// The response text.
    pub response: String,
    /// Seconds from the call to the answer.
    pub response_time: f64,
    /// Exact, fuzzy, generated or fallback.
    pub outcome: Outcome,
    /// For a fuzzy answer, the similarity of the cached message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub similarity: Option<f64>,
}

/// An agent's response path. Cheap to clone; clones share the pending hits and log.
#[derive(Clone)]
pub struct Responder {
    inner: Arc<Inner>,
}

struct Inner {
    cache: ResponseCache,
    /// The store's answer: may a read run on an async worker thread?
    reads_inline: bool,
    agent: String,
    generator: Arc<dyn ResponseGenerator>,
    config: ResponseConfig,
    pending: Batch<Unwritten>,
    /// Generations that missed the target and go on (see `settle`).
    background: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

/// Hits and log rows not yet written.
#[derive(Default)]
struct Unwritten {
    /// Row id: (hits, last use).
    hits: HashMap<i64, (u64, i64)>,
    log: Vec<LoggedResponse>,
}

impl Pending for Unwritten {
    fn is_empty(&self) -> bool {
        self.hits.is_empty() && self.log.is_empty()
    }
    fn merge(&mut self, unwritten: Self) {
        for (id, (n, at)) in unwritten.hits {
            let e = self.hits.entry(id).or_insert((0, at));
            e.0 += n;
            e.1 = e.1.max(at);
        }
        let newer = std::mem::replace(&mut self.log, unwritten.log);
        self.log.extend(newer);
    }
}

impl std::fmt::Debug for Responder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Responder")
            .field("agent", &self.inner.agent)
            .field("config", &self.inner.config)
            .finish()
    }
}

impl Responder {
    /// The response path of `agent`, generating with `generator`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a bad fuzzy threshold.
    pub fn new(
        store: &Store,
        agent: &AgentRecord,
        generator: impl ResponseGenerator + 'static,
        config: ResponseConfig,
    ) -> Result<Responder> {
        Self::with_generator(store, agent, Arc::new(generator), config)
    }

    /// [`Responder::new`] with a shared generator.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a bad fuzzy threshold.
    pub fn with_generator(
        store: &Store,
        agent: &AgentRecord,
        generator: Arc<dyn ResponseGenerator>,
        config: ResponseConfig,
    ) -> Result<Responder> {
        config.fuzzy.validate()?;
        Ok(Responder {
            inner: Arc::new(Inner {
                cache: store.response_cache(agent),
                reads_inline: store.reads_inline(),
                agent: agent.name.clone(),
                generator,
                pending: Batch::new(config.flush_interval),
                background: Default::default(),
                config,
            }),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &ResponseConfig {
        &self.inner.config
    }

    /// Answers `message`: the cached response to the same message, else to the most
    /// similar one, else a generated one within the agent's target time (stored before
    /// it is returned), else, past the target, a fallback reply while the generation
    /// goes on in the background for up to the grace period (its response is cached
    /// for next time; a fallback never is). Every answer is logged.
    ///
    /// # Errors
    /// [`Error::GenerationFailed`] when the generator fails (logged, nothing cached);
    /// [`Error::InvalidArgument`] for a message over 1 MiB; database errors.
    pub async fn process_message(&self, message: &str) -> Result<Reply> {
        self.process_message_then(message, None).await
    }

    /// [`Responder::process_message`], calling `late` with the real response when the
    /// answer was a fallback and the generation then finished within the grace period
    /// (after its response is cached). The agent adds that response to memory this
    /// way, never the fallback.
    ///
    /// # Errors
    /// As [`Responder::process_message`].
    pub async fn process_message_then(
        &self,
        message: &str,
        late: Option<LateAnswer>,
    ) -> Result<Reply> {
        let start = Instant::now();
        let inner = &*self.inner;
        if message.len() > MAX_CONTENT_BYTES {
            return Err(Error::invalid(format!(
                "the message is {} bytes; the limit is {MAX_CONTENT_BYTES}",
                message.len()
            )));
        }
        if let Some(hit) = self.lookup(message).await? {
            let kind = hit.kind;
            self.note(Some(hit.id), start, kind);
            return Ok(Reply {
                response: hit.response,
                response_time: start.elapsed().as_secs_f64(),
                outcome: kind,
                similarity: (kind == Outcome::Fuzzy).then_some(hit.similarity),
            });
        }

        let cache = inner.cache.clone();
        let target = blocking(move || cache.target()).await?;
        // Stored targets are positive and finite; one too large for a Duration waits
        // forever rather than panicking.
        let target = Duration::try_from_secs_f64(target).unwrap_or(Duration::MAX);
        // One generation across processes: under the message's lease, or the
        // response of the process that holds it (as an exact hit), or, past the
        // target while it still generates, the fallback.
        let key = lease_key(inner.cache.agent_id(), message);
        let look = || {
            let (cache, owned) = (inner.cache.clone(), message.to_string());
            async move { blocking(move || cache.lookup_exact(&owned)).await }
        };
        let run = |lease| self.generate(message, start, target, late, lease);
        let store = inner.cache.store().clone();
        let deadline = start.checked_add(target);
        match lease::once(&store, key, inner.config.lease, deadline, look, run).await? {
            lease::Once::Ran(reply) => reply,
            lease::Once::Found(hit) => {
                self.note(Some(hit.id), start, Outcome::Exact);
                Ok(Reply {
                    response: hit.response,
                    response_time: start.elapsed().as_secs_f64(),
                    outcome: Outcome::Exact,
                    similarity: None,
                })
            }
            lease::Once::Waited => {
                self.note(None, start, Outcome::Fallback);
                Ok(Reply {
                    response: fallback_reply(message).to_string(),
                    response_time: start.elapsed().as_secs_f64(),
                    outcome: Outcome::Fallback,
                    similarity: None,
                })
            }
        }
    }

    /// Generates the answer to a new message under its lease (kept until the response
    /// is cached, in the background too).
    async fn generate(
        &self,
        message: &str,
        start: Instant,
        target: Duration,
        late: Option<LateAnswer>,
        lease: lease::Lease,
    ) -> Result<Reply> {
        let inner = &*self.inner;
        let generator = inner.generator.clone();
        let owned = message.to_string();
        let mut generation = tokio::spawn(async move { generator.generate(&owned).await });
        let target = target.saturating_sub(start.elapsed());
        match tokio::time::timeout(target, &mut generation).await {
            Ok(Ok(Ok(response))) => {
                let (cache, owned, key) = (inner.cache.clone(), message.to_string(), lease.key());
                let stored = blocking(move || {
                    // A response too large to cache, or an empty message or response
                    // (never cached), is still the answer.
                    if !cacheable(&owned, &response) {
                        return Ok((response, false));
                    }
                    // The lease is given up by the store itself (one statement fewer).
                    cache
                        .put_releasing(&owned, &response, Some((&key, lease::holder())))
                        .map(|_| (response, true))
                })
                .await;
                lease.end(matches!(stored, Ok((_, true))));
                let (response, _) = stored?;
                self.note(None, start, Outcome::Generated);
                Ok(Reply {
                    response,
                    response_time: start.elapsed().as_secs_f64(),
                    outcome: Outcome::Generated,
                    similarity: None,
                })
            }
            Ok(done) => {
                drop(lease);
                self.note(None, start, Outcome::Error);
                let failure = match done {
                    Ok(Err(e)) => e,
                    Err(join) if join.is_panic() => {
                        GenerationError::other("the generator panicked")
                    }
                    Err(join) => GenerationError::other(join.to_string()),
                    Ok(Ok(_)) => unreachable!("handled above"),
                };
                Err(Error::GenerationFailed(failure))
            }
            Err(_) => {
                self.finish_in_background(message, generation, start.elapsed(), late, lease);
                self.note(None, start, Outcome::Fallback);
                Ok(Reply {
                    response: fallback_reply(message).to_string(),
                    response_time: start.elapsed().as_secs_f64(),
                    outcome: Outcome::Fallback,
                    similarity: None,
                })
            }
        }
    }

    /// Lets a generation that missed the target run until the grace period ends,
    /// then caches its response (or aborts it).
    fn finish_in_background(
        &self,
        message: &str,
        mut generation: tokio::task::JoinHandle<std::result::Result<String, GenerationError>>,
        spent: Duration,
        late: Option<LateAnswer>,
        lease: lease::Lease,
    ) {
        let left = self.inner.config.grace_period.saturating_sub(spent);
        let cache = self.inner.cache.clone();
        let message = message.to_string();
        let task = tokio::spawn(async move {
            // The lease lasts until the response is cached (the store gives it up) or
            // the grace period ends (dropped with this task).
            match tokio::time::timeout(left, &mut generation).await {
                Ok(Ok(Ok(response))) if cacheable(&message, &response) => {
                    let kept = response.clone();
                    let key = lease.key();
                    let cached = blocking(move || {
                        cache.put_releasing(&message, &response, Some((&key, lease::holder())))
                    })
                    .await;
                    lease.end(cached.is_ok());
                    if let (Ok(_), Some(late)) = (cached, late) {
                        late(kept).await;
                    }
                }
                Ok(_) => {}
                Err(_) => generation.abort(),
            }
        });
        let mut background = lock(&self.inner.background);
        background.retain(|t| !t.is_finished());
        background.push(task);
    }

    /// Waits until the generations that missed their target have finished (their
    /// responses cached) or reached the end of the grace period. Returns how many it
    /// waited for. Call before exiting when their answers should be kept for next time.
    pub async fn settle(&self) -> usize {
        let tasks = std::mem::take(&mut *lock(&self.inner.background));
        let n = tasks.len();
        for task in tasks {
            let _ = task.await;
        }
        n
    }

    /// The exact match, on this thread when the store says its reads may run inline
    /// and a connection is free now (one primary-key read); else, and for the fuzzy
    /// match (several statements in one snapshot, up to a millisecond), through
    /// [`blocking`].
    async fn lookup(&self, message: &str) -> Result<Option<CacheMatch>> {
        let inner = &self.inner;
        let inline = match inner.reads_inline {
            true => inner.cache.try_lookup_exact(message),
            false => None,
        };
        // A hit answered here allocates nothing more.
        if let Some(Ok(Some(hit))) = inline {
            return Ok(Some(hit));
        }
        let (cache, options, message) =
            (inner.cache.clone(), inner.config.fuzzy, message.to_string());
        match inline {
            // Read here already: only the fuzzy match is left.
            Some(Ok(None)) => blocking(move || cache.lookup_fuzzy(&message, options)).await,
            // Not inline (or an error worth a retry): both, off this thread.
            _ => blocking(move || cache.lookup(&message, options)).await,
        }
    }

    /// Counts a hit (if any) and logs the response, in memory; writes when the flush
    /// interval has passed (without waiting for it).
    fn note(&self, hit: Option<i64>, start: Instant, outcome: Outcome) {
        let inner = &*self.inner;
        let at = inner.cache.store().now_micros();
        let row = LoggedResponse {
            at,
            duration: start.elapsed().as_secs_f64(),
            outcome,
        };
        let due = inner.pending.add(|p| {
            if let Some(id) = hit {
                let e = p.hits.entry(id).or_insert((0, at));
                e.0 += 1;
                e.1 = e.1.max(at);
            }
            p.log.push(row);
        });
        flush_when(&self.inner, due);
    }

    /// Writes the pending hits and log rows.
    ///
    /// # Errors
    /// Database errors; they stay pending for the next flush.
    pub async fn flush(&self) -> Result<()> {
        flush_now(&self.inner).await
    }

    /// Flushes; call before the process exits (dropping the last clone flushes too,
    /// without reporting errors).
    ///
    /// # Errors
    /// As [`Responder::flush`].
    pub async fn close(self) -> Result<()> {
        self.flush().await
    }

    /// The response-time stats over the agent's log (after a flush), in SQL.
    ///
    /// # Errors
    /// Database errors.
    pub async fn response_time_stats(&self) -> Result<ResponseTimeStats> {
        let inner = self.inner.clone();
        blocking(move || {
            inner.flush()?;
            inner.cache.time_stats()
        })
        .await
    }

    /// The original's auto-tuning: with more than 90% of responses under the target,
    /// the target becomes 0.9x; under 50%, 1.2x; the new target is stored in the
    /// agent's row. Then the cache is capped (over 1,000 entries, keep the 500 most
    /// recently used).
    ///
    /// # Errors
    /// Database errors.
    pub async fn optimize_performance(&self) -> Result<Optimization> {
        let inner = self.inner.clone();
        blocking(move || {
            inner.flush()?;
            inner
                .cache
                .optimize(inner.config.max_cache_entries, inner.config.keep_on_cap)
        })
        .await
    }
}

impl Flush for Inner {
    fn flush(&self) -> Result<()> {
        self.pending.flush(|p| {
            let hits: Vec<(i64, u64, i64)> =
                p.hits.iter().map(|(id, (n, at))| (*id, *n, *at)).collect();
            self.cache.record(&hits, &p.log, self.config.log_retention)
        })?;
        // New responses reach the word index here, off the answering path.
        self.cache.index_pending().map(|_| ())
    }
}

impl Drop for Inner {
    /// Best effort (`close()` reports errors), and never a write on an async worker
    /// thread.
    fn drop(&mut self) {
        let pending = self.pending.take();
        let (cache, keep) = (self.cache.clone(), self.config.log_retention);
        crate::offload::finish_off_worker(move || {
            if !pending.is_empty() {
                let hits: Vec<(i64, u64, i64)> = pending
                    .hits
                    .iter()
                    .map(|(id, (n, at))| (*id, *n, *at))
                    .collect();
                let _ = cache.record(&hits, &pending.log, keep);
            }
            // New responses reach the word index here, off the answering path.
            let _ = cache.index_pending();
        });
    }
}

/// Whether a generated response can be cached: neither side empty, the response
/// within the size limit (`ResponseCache::put` refuses the rest).
fn cacheable(message: &str, response: &str) -> bool {
    !message.is_empty() && !response.is_empty() && response.len() <= MAX_CONTENT_BYTES
}
