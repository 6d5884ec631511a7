//! Tools: the [`Tool`] trait, the [`ToolRegistry`], and [`Tools`], an agent's cached
//! executor. A call looks its result up in the store's tool cache (a read), runs the
//! tool on a miss, stores a successful result with its TTL, and counts the call in
//! memory; counters reach `tool_counters` in batches. Identical cacheable calls in
//! flight at the same time in this process run once (single-flight).

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;
use tokio::sync::Semaphore;

mod flight;

use super::batch::{Batch, Flush, Pending, blocking, flush_now, flush_when, lock};
use crate::error::{Error, Result};
use crate::store::{
    AgentRecord, CacheKey, DEFAULT_TOOL_TTL, Store, ToolCache, ToolCounts, ToolStats,
};
use flight::{AbortOnDrop, Failure, Flight, panic_message, run_contained};

use crate::agent::lease;

/// What a tool returns when it fails. The executor reports it as
/// [`Error::ToolFailed`] and never caches it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ToolError {
    /// The params do not suit the tool.
    #[error("invalid params: {0}")]
    InvalidParams(String),
    /// The tool ran and failed.
    #[error("{0}")]
    Failed(String),
}

/// A tool an agent can call. Object-safe: the registry holds `Arc<dyn Tool>`.
///
/// ```
/// use agentstore::agent::{Tool, ToolError};
/// use serde_json::{Value, json};
///
/// struct WordCount;
///
/// #[async_trait::async_trait]
/// impl Tool for WordCount {
///     fn name(&self) -> &str {
///         "word_count"
///     }
///     async fn execute(&self, params: Value) -> Result<Value, ToolError> {
///         let text = params["text"]
///             .as_str()
///             .ok_or_else(|| ToolError::InvalidParams("text must be a string".into()))?;
///         Ok(json!({ "words": text.split_whitespace().count() }))
///     }
/// }
/// ```
#[async_trait::async_trait]
pub trait Tool: Send + Sync {
    /// The name calls use; unique in a registry.
    fn name(&self) -> &str;

    /// Whether results may be cached. Tools with side effects or time-dependent
    /// results return false.
    fn cacheable(&self) -> bool {
        true
    }

    /// How long a result stays valid; `None` uses the executor's default (1 hour).
    fn ttl(&self) -> Option<Duration> {
        None
    }

    /// Runs the tool.
    ///
    /// # Errors
    /// A [`ToolError`] saying what went wrong.
    async fn execute(&self, params: Value) -> std::result::Result<Value, ToolError>;
}

/// Tools by name.
#[derive(Clone, Default)]
pub struct ToolRegistry {
    tools: HashMap<String, Arc<dyn Tool>>,
}

impl std::fmt::Debug for ToolRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ToolRegistry")
            .field("tools", &self.names())
            .finish()
    }
}

impl ToolRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a tool, replacing any tool of the same name.
    pub fn register(&mut self, tool: impl Tool + 'static) -> &mut Self {
        self.tools.insert(tool.name().to_string(), Arc::new(tool));
        self
    }

    /// This registry with `tool` added.
    pub fn with(mut self, tool: impl Tool + 'static) -> Self {
        self.register(tool);
        self
    }

    /// The tool called `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<dyn Tool>> {
        self.tools.get(name)
    }

    /// The registered names, sorted.
    pub fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.tools.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }
}

/// The names the original design never caches, whatever the tool says.
pub const NEVER_CACHED: [&str; 4] = [
    "web_search",
    "current_time",
    "random_generator",
    "file_write",
];

/// How an agent's tool executor behaves.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ToolConfig {
    /// The cache scope: `Some` stores it as the agent's scope (agents with the same
    /// scope share results); `None` keeps the stored one, which is the agent's own
    /// name unless set before.
    pub scope: Option<String>,
    /// TTL of tools that do not set their own.
    pub default_ttl: Duration,
    /// Tool names never cached, whatever the tool says.
    pub never_cache: BTreeSet<String>,
    /// How often, at most, counters are written while calls keep coming.
    pub flush_interval: Duration,
    /// The lease on a call in progress (10 s, renewed every third of it while the
    /// tool runs): identical calls in other processes wait for its result; a caller
    /// that died is taken over after at most this long.
    pub lease: Duration,
}

/// Builder methods: `ToolConfig::default()` (or a constructor), then `with_*`.
impl ToolConfig {
    /// This configuration with another `scope`.
    pub fn with_scope(mut self, scope: Option<String>) -> Self {
        self.scope = scope;
        self
    }

    /// This configuration with another `default_ttl`.
    pub fn with_default_ttl(mut self, default_ttl: Duration) -> Self {
        self.default_ttl = default_ttl;
        self
    }

    /// This configuration with another `lease` (at least 30 ms).
    pub fn with_lease(mut self, lease: Duration) -> Self {
        self.lease = lease.max(Duration::from_millis(30));
        self
    }

    /// This configuration with another `never_cache`.
    pub fn with_never_cache(mut self, never_cache: BTreeSet<String>) -> Self {
        self.never_cache = never_cache;
        self
    }

    /// This configuration with another `flush_interval`.
    pub fn with_flush_interval(mut self, flush_interval: Duration) -> Self {
        self.flush_interval = flush_interval;
        self
    }
}

impl Default for ToolConfig {
    fn default() -> Self {
        ToolConfig {
            scope: None,
            default_ttl: DEFAULT_TOOL_TTL,
            never_cache: NEVER_CACHED.iter().map(|s| s.to_string()).collect(),
            flush_interval: Duration::from_secs(1),
            lease: crate::agent::lease::DEFAULT_LEASE,
        }
    }
}

/// One request of a parallel batch: the original's `{"tool": ..., "params": ...}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolRequest {
    /// The tool's name.
    pub tool: String,
    /// Its params (an empty object when absent).
    #[serde(default = "empty_object")]
    pub params: Value,
}

fn empty_object() -> Value {
    Value::Object(Default::default())
}

impl ToolRequest {
    /// A request.
    pub fn new(tool: impl Into<String>, params: Value) -> Self {
        ToolRequest {
            tool: tool.into(),
            params,
        }
    }
}

/// The outcome of one request of a parallel batch. Serialises as the original:
/// `{"success": true, "result": ..., "tool": ...}` or
/// `{"success": false, "error": "...", "tool": ...}`.
#[derive(Debug)]
pub struct ToolOutcome {
    /// The tool the request named.
    pub tool: String,
    /// Its result or error.
    pub result: Result<Value>,
}

impl Serialize for ToolOutcome {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(3))?;
        match &self.result {
            Ok(v) => {
                m.serialize_entry("success", &true)?;
                m.serialize_entry("result", v)?;
            }
            Err(e) => {
                m.serialize_entry("success", &false)?;
                m.serialize_entry("error", &e.to_string())?;
            }
        }
        m.serialize_entry("tool", &self.tool)?;
        m.end()
    }
}

/// Limits of a parallel batch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ParallelOptions {
    /// Most requests running at once; `None` runs them all at once.
    pub max_concurrency: Option<usize>,
    /// Time limit of each request; one past it is cancelled and reported as
    /// [`Error::ToolTimedOut`].
    pub timeout: Option<Duration>,
}

/// Builder methods: `ParallelOptions::default()` (or a constructor), then `with_*`.
impl ParallelOptions {
    /// This configuration with another `max_concurrency`.
    pub fn with_max_concurrency(mut self, max_concurrency: Option<usize>) -> Self {
        self.max_concurrency = max_concurrency;
        self
    }

    /// This configuration with another `timeout`.
    pub fn with_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.timeout = timeout;
        self
    }
}

/// An agent's cached tool executor. Cheap to clone; clones share counters.
#[derive(Clone)]
pub struct Tools {
    inner: Arc<Inner>,
}

struct Inner {
    cache: ToolCache,
    /// The store's answer: may a read run on an async worker thread?
    reads_inline: bool,
    agent: String,
    scope: String,
    registry: ToolRegistry,
    config: ToolConfig,
    counters: Batch<Counters>,
    /// Calls made through this instance since it was opened, all tools together.
    session: Mutex<ToolCounts>,
}

/// Counters not yet written, by tool.
#[derive(Default)]
struct Counters(HashMap<String, ToolCounts>);

impl Pending for Counters {
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    fn merge(&mut self, unwritten: Self) {
        for (tool, c) in unwritten.0 {
            self.0.entry(tool).or_default().add(&c);
        }
    }
}

impl std::fmt::Debug for Tools {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tools")
            .field("agent", &self.inner.agent)
            .field("scope", &self.inner.scope)
            .field("registry", &self.inner.registry)
            .finish()
    }
}

impl Tools {
    /// The executor of agent `agent` over `registry`. With `config.scope` set, stores
    /// it as the agent's scope (a write); otherwise only reads.
    ///
    /// This is synchronous (it may write the scope); from async code call it where a
    /// blocking call is acceptable, e.g. in `spawn_blocking`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a bad scope; database errors.
    pub fn open(
        store: &Store,
        agent: &AgentRecord,
        registry: ToolRegistry,
        config: ToolConfig,
    ) -> Result<Tools> {
        let scope = match &config.scope {
            Some(scope) if *scope != agent.tool_scope => {
                store.set_tool_scope(&agent.name, Some(scope))?;
                scope.clone()
            }
            _ => agent.tool_scope.clone(),
        };
        let mut bound = agent.clone();
        bound.tool_scope = scope.clone();
        Ok(Tools {
            inner: Arc::new(Inner {
                cache: store.tool_cache(&bound),
                reads_inline: store.reads_inline(),
                agent: agent.name.clone(),
                scope,
                registry,
                counters: Batch::new(config.flush_interval),
                session: Mutex::new(ToolCounts::default()),
                config,
            }),
        })
    }

    /// The calls made through this instance (and its clones) since it was opened, all
    /// tools together: this process's own, where the stored counters also hold every
    /// other process's.
    pub fn session_counts(&self) -> ToolCounts {
        *lock(&self.inner.session)
    }

    /// The cache scope in use.
    pub fn scope(&self) -> &str {
        &self.inner.scope
    }

    /// The registry.
    pub fn registry(&self) -> &ToolRegistry {
        &self.inner.registry
    }

    /// Whether calls of this tool are cached: the tool says so and its name is not in
    /// the never-cache set.
    pub fn is_cacheable(&self, tool: &dyn Tool) -> bool {
        tool.cacheable() && !self.inner.config.never_cache.contains(tool.name())
    }

    /// Runs tool `name`, answering from the cache when an unexpired result is stored.
    /// A hit is a read (no write transaction); a miss runs the tool, stores a
    /// successful result if the tool is cacheable, and returns it. Identical calls in
    /// flight at the same time run the tool once. A panic in the tool is contained and
    /// reported as an error.
    ///
    /// # Errors
    /// [`Error::UnknownTool`]; [`Error::ToolFailed`] or [`Error::ToolPanicked`]
    /// (nothing cached); database errors from the lookup or the store.
    pub async fn execute_tool_cached(&self, name: &str, params: Value) -> Result<Value> {
        let start = Instant::now();
        let inner = &*self.inner;
        let Some(tool) = inner.registry.get(name) else {
            return Err(Error::UnknownTool {
                name: name.to_string(),
                registered: inner.registry.names().join(", "),
            });
        };
        if !self.is_cacheable(tool.as_ref()) {
            let out = run_contained(tool.as_ref(), params)
                .await
                .map_err(|f| f.into_error(name));
            self.record(name, start, false, out.is_err());
            return out;
        }

        // The canonical params and the key, once: for the lookup, the flight and the
        // store after a miss.
        let call = match inner.cache.call(name, &params) {
            Ok(call) => call,
            Err(e) => {
                self.record(name, start, false, true);
                return Err(e);
            }
        };
        match self.lookup(call.key).await {
            Ok(Some(hit)) => {
                self.record(name, start, true, false);
                return Ok(hit);
            }
            Ok(None) => {}
            Err(e) => {
                self.record(name, start, false, true);
                return Err(e);
            }
        }

        let flight = Flight::join((inner.cache.store().identity().to_string(), call.key.0));
        let mut leader_error = None;
        let mut lease_error = None;
        let mut ran = false;
        let (ran_ref, error_ref, lease_ref) = (&mut ran, &mut leader_error, &mut lease_error);
        let shared = flight
            .cell
            .get_or_init(move || async move {
                // One run across processes too: under the call's lease, or the result
                // of the process that holds it.
                let store = inner.cache.store().clone();
                let key = call.key;
                let look = || {
                    let cache = inner.cache.clone();
                    async move { blocking(move || cache.get_key(&key)).await }
                };
                let run = |lease: lease::Lease| async move {
                    *ran_ref = true;
                    let result = run_contained(tool.as_ref(), params).await?;
                    let ttl = tool.ttl().unwrap_or(inner.config.default_ttl);
                    let cache = inner.cache.clone();
                    let (put, result) = blocking(move || {
                        let put = cache.put_call(&call, &result, ttl, Some(lease::holder()));
                        (put, result)
                    })
                    .await;
                    // Given up by the store itself (one statement fewer), else now.
                    lease.end(matches!(put, Ok(true)));
                    match put {
                        // Stored, or too large to cache: either way the caller gets it.
                        Ok(_) => Ok(result),
                        Err(e) => {
                            let failure = Failure::Store(e.to_string());
                            *error_ref = Some(e);
                            Err(failure)
                        }
                    }
                };
                match lease::once(&store, key.0, inner.config.lease, None, look, run).await {
                    Ok(lease::Once::Ran(out)) => out,
                    Ok(lease::Once::Found(found)) => Ok(found),
                    Ok(lease::Once::Waited) => Err(Failure::Store("the lease wait ended".into())),
                    Err(e) => {
                        let failure = Failure::Store(e.to_string());
                        *lease_ref = Some(e);
                        Err(failure)
                    }
                }
            })
            .await
            .clone();
        drop(flight);
        let out = match (shared, leader_error.or(lease_error)) {
            (Ok(v), _) => Ok(v),
            (Err(_), Some(e)) => Err(e),
            (Err(f), None) => Err(f.into_error(name)),
        };
        // A call that joined another's flight did not run the tool: it counts as a hit.
        self.record(name, start, !ran && out.is_ok(), out.is_err());
        out
    }

    /// Runs every request concurrently (all at once) and returns one outcome per
    /// request, in request order. One request failing or panicking affects no other.
    pub async fn execute_tools_parallel(&self, requests: Vec<ToolRequest>) -> Vec<ToolOutcome> {
        self.execute_tools_parallel_with(requests, ParallelOptions::default())
            .await
    }

    /// [`Tools::execute_tools_parallel`] with a concurrency limit and a per-request
    /// timeout. Each request runs as its own tokio task.
    pub async fn execute_tools_parallel_with(
        &self,
        requests: Vec<ToolRequest>,
        options: ParallelOptions,
    ) -> Vec<ToolOutcome> {
        let limit = options
            .max_concurrency
            .map(|n| Arc::new(Semaphore::new(n.max(1))));
        let tasks: Vec<(String, AbortOnDrop<Result<Value>>)> = requests
            .into_iter()
            .map(|req| {
                let this = self.clone();
                let limit = limit.clone();
                let tool = req.tool.clone();
                let task = tokio::spawn(async move {
                    let _permit = match &limit {
                        Some(sem) => Some(sem.clone().acquire_owned().await),
                        None => None,
                    };
                    this.execute_with_timeout(&req.tool, req.params, options.timeout)
                        .await
                });
                (tool, AbortOnDrop(task))
            })
            .collect();
        let mut outcomes = Vec::with_capacity(tasks.len());
        for (tool, mut task) in tasks {
            let result = match (&mut task.0).await {
                Ok(result) => result,
                Err(e) => Err(Error::ToolPanicked {
                    tool: tool.clone(),
                    message: panic_message(e),
                }),
            };
            outcomes.push(ToolOutcome { tool, result });
        }
        outcomes
    }

    async fn execute_with_timeout(
        &self,
        name: &str,
        params: Value,
        timeout: Option<Duration>,
    ) -> Result<Value> {
        let Some(limit) = timeout else {
            return self.execute_tool_cached(name, params).await;
        };
        let start = Instant::now();
        match tokio::time::timeout(limit, self.execute_tool_cached(name, params)).await {
            Ok(out) => out,
            Err(_) => {
                self.record(name, start, false, true);
                Err(Error::ToolTimedOut {
                    tool: name.to_string(),
                    timeout: limit,
                })
            }
        }
    }

    /// The cache lookup: on this thread when the store says its reads may run inline
    /// and a connection is free now (on SQLite a microsecond primary-key read in WAL
    /// mode, which never waits for a writer); else on a blocking thread.
    async fn lookup(&self, key: CacheKey) -> Result<Option<Value>> {
        let cache = &self.inner.cache;
        let inline = match self.inner.reads_inline {
            true => cache.try_get_key(&key),
            false => None,
        };
        match inline {
            Some(found) => found,
            None => {
                let cache = cache.clone();
                blocking(move || cache.get_key(&key)).await
            }
        }
    }

    /// Counts one call in memory; writes the counters when the flush interval has
    /// passed (on a blocking thread, without waiting for it).
    fn record(&self, tool: &str, start: Instant, hit: bool, error: bool) {
        let elapsed = start.elapsed().as_secs_f64();
        {
            let mut session = lock(&self.inner.session);
            session.total_calls += 1;
            session.cache_hits += u64::from(hit);
            session.errors += u64::from(error);
            session.total_time += elapsed;
        }
        let due = self.inner.counters.add(|p| {
            let counts = match p.0.get_mut(tool) {
                Some(c) => c,
                None => p.0.entry(tool.to_string()).or_default(),
            };
            counts.total_calls += 1;
            counts.cache_hits += u64::from(hit);
            counts.errors += u64::from(error);
            counts.total_time += elapsed;
        });
        flush_when(&self.inner, due);
    }

    /// Writes the counters accumulated in memory.
    ///
    /// # Errors
    /// Database errors; the counters stay in memory for the next flush.
    pub async fn flush(&self) -> Result<()> {
        flush_now(&self.inner).await
    }

    /// Flushes the counters; call before the process exits. (Dropping the last clone
    /// flushes too, but cannot report an error.)
    ///
    /// # Errors
    /// As [`Tools::flush`].
    pub async fn close(self) -> Result<()> {
        self.flush().await
    }

    /// The agent's tool stats, after flushing this executor's counters (so they
    /// include every call made through it).
    ///
    /// # Errors
    /// Database errors.
    pub async fn stats(&self) -> Result<ToolStats> {
        let inner = self.inner.clone();
        blocking(move || {
            inner.flush()?;
            inner.cache.stats()
        })
        .await
    }

    /// Removes every expired row of the cache (all scopes) now; normal writes remove
    /// them in small batches anyway.
    ///
    /// # Errors
    /// Database errors.
    pub async fn remove_expired(&self) -> Result<u64> {
        let results = self.inner.cache.store().tool_results();
        blocking(move || results.remove_expired()).await
    }
}

impl Flush for Inner {
    fn flush(&self) -> Result<()> {
        self.counters.flush(|pending| {
            let rows: Vec<(String, ToolCounts)> = pending
                .0
                .iter()
                .map(|(tool, c)| (tool.clone(), *c))
                .collect();
            self.cache.add_counts(&rows)
        })
    }
}

impl Drop for Inner {
    /// Best effort (a clean shutdown calls `close()`, which reports errors), and never
    /// a write on an async worker thread.
    fn drop(&mut self) {
        let pending = self.counters.take();
        if pending.is_empty() {
            return;
        }
        let cache = self.cache.clone();
        crate::offload::finish_off_worker(move || {
            let rows: Vec<(String, ToolCounts)> = pending.0.into_iter().collect();
            let _ = cache.add_counts(&rows);
        });
    }
}
