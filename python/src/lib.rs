//! `agentstore._native`: the store as a Python extension module. Every call releases
//! the GIL around the store (`Python::detach`), so Python threads run in parallel.
//! Results cross as JSON text with the CLI's `--json` keys; `agentstore/__init__.py`
//! turns them into dicts and lists. Errors become the exception classes below.

use std::time::Duration;

use agentstore::{
    CacheFilter, Error, ErrorKind, ForgetTarget, FuzzyOptions, ListOrder, Memory, Prune,
    ResponseCache, ResponsePurge, Role, SearchOptions, Store, StoreOptions, ToolCache,
};
use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use serde_json::Value;

create_exception!(
    _native,
    AgentstoreError,
    PyException,
    "Base class of agentstore's errors."
);
create_exception!(
    _native,
    InvalidArgument,
    AgentstoreError,
    "A bad value (the CLI's exit code 2)."
);
create_exception!(
    _native,
    NotFound,
    AgentstoreError,
    "No such database, agent or entry."
);
create_exception!(
    _native,
    Busy,
    AgentstoreError,
    "Another process held the lock past the busy timeout."
);
create_exception!(
    _native,
    Damaged,
    AgentstoreError,
    "The database file is damaged or not agentstore's."
);

/// The exception for a store error, with the CLI's message.
fn py_err(e: Error) -> PyErr {
    let msg = e.to_string();
    if e.is_busy() {
        Busy::new_err(msg)
    } else if e.is_damage()
        || matches!(
            e,
            Error::NotADatabase(_) | Error::Corrupt { .. } | Error::ForeignDatabase { .. }
        )
    {
        Damaged::new_err(msg)
    } else if matches!(e, Error::NotFound(_) | Error::UnknownAgent(_)) {
        NotFound::new_err(msg)
    } else if e.kind() == ErrorKind::InvalidInput {
        InvalidArgument::new_err(msg)
    } else {
        AgentstoreError::new_err(msg)
    }
}

fn invalid(msg: impl Into<String>) -> PyErr {
    InvalidArgument::new_err(msg.into())
}

/// Runs `f` without the GIL and maps its error.
fn off<T: Send>(py: Python<'_>, f: impl FnOnce() -> agentstore::Result<T> + Send) -> PyResult<T> {
    py.detach(f).map_err(py_err)
}

fn json<T: serde::Serialize>(value: &T) -> PyResult<String> {
    serde_json::to_string(value).map_err(|e| AgentstoreError::new_err(e.to_string()))
}

fn parse_json(text: &str, what: &str) -> PyResult<Value> {
    serde_json::from_str(text).map_err(|e| invalid(format!("{what} is not JSON: {e}")))
}

fn seconds(s: f64, what: &str) -> PyResult<Duration> {
    Duration::try_from_secs_f64(s).map_err(|_| {
        invalid(format!(
            "{what} must be a finite number of seconds >= 0, got {s}"
        ))
    })
}

fn role(name: &str) -> PyResult<Role> {
    name.parse().map_err(py_err)
}

/// An open store: an SQLite file (a path or `sqlite:PATH`).
#[pyclass(module = "agentstore._native", frozen)]
struct NativeStore {
    store: std::sync::Mutex<Option<Store>>,
}

impl NativeStore {
    fn get(&self) -> PyResult<Store> {
        self.store
            .lock()
            .map_err(|_| AgentstoreError::new_err("the store's lock was poisoned"))?
            .clone()
            .ok_or_else(|| AgentstoreError::new_err("the store is closed"))
    }
}

#[pymethods]
impl NativeStore {
    #[new]
    #[pyo3(signature = (location, create = true, busy_timeout = None))]
    fn new(
        py: Python<'_>,
        location: String,
        create: bool,
        busy_timeout: Option<f64>,
    ) -> PyResult<Self> {
        let mut options = if create {
            StoreOptions::default()
        } else {
            StoreOptions::existing()
        };
        if let Some(t) = busy_timeout {
            options = options.with_busy_timeout(seconds(t, "busy_timeout")?);
        }
        let store = off(py, || Store::connect(&location, options))?;
        Ok(NativeStore {
            store: std::sync::Mutex::new(Some(store)),
        })
    }

    /// Closes the store (its pooled connections, once no handle uses them).
    fn close(&self, py: Python<'_>) {
        let taken = self.store.lock().ok().and_then(|mut s| s.take());
        py.detach(move || drop(taken));
    }

    fn location(&self) -> PyResult<String> {
        Ok(self.get()?.location().to_string())
    }

    fn agents_json(&self, py: Python<'_>) -> PyResult<String> {
        let store = self.get()?;
        let agents = off(py, || store.agents())?;
        json(&agents)
    }

    fn memory(&self, py: Python<'_>, agent: String) -> PyResult<NativeMemory> {
        let store = self.get()?;
        let memory = off(py, || store.agent(&agent).map(|a| store.memory(&a)))?;
        Ok(NativeMemory { memory })
    }

    fn tool_cache(&self, py: Python<'_>, agent: String) -> PyResult<NativeToolCache> {
        let store = self.get()?;
        let cache = off(py, || store.agent(&agent).map(|a| store.tool_cache(&a)))?;
        Ok(NativeToolCache { cache, store })
    }

    fn responses(&self, py: Python<'_>, agent: String) -> PyResult<NativeResponses> {
        let store = self.get()?;
        let cache = off(py, || store.agent(&agent).map(|a| store.response_cache(&a)))?;
        Ok(NativeResponses { cache })
    }

    /// Removes every cached tool result of `tool` in every scope; how many.
    fn purge_tool(&self, py: Python<'_>, tool: String) -> PyResult<u64> {
        let store = self.get()?;
        let filter = CacheFilter {
            tool: Some(tool),
            ..CacheFilter::default()
        };
        off(py, || {
            store
                .tool_results()
                .purge(&filter, false)
                .map(|r| r.removed)
        })
    }
}

/// One agent's memory.
#[pyclass(module = "agentstore._native", frozen)]
struct NativeMemory {
    memory: Memory,
}

#[pymethods]
impl NativeMemory {
    #[pyo3(signature = (content, importance = 0.5, role = "note"))]
    fn add(&self, py: Python<'_>, content: String, importance: f64, role: &str) -> PyResult<i64> {
        let role = self::role(role)?;
        off(py, || self.memory.add_as(role, &content, importance))
    }

    fn add_many(&self, py: Python<'_>, items: Vec<(String, f64, String)>) -> PyResult<Vec<i64>> {
        let items = items
            .into_iter()
            .map(|(c, i, r)| Ok((role(&r)?, c, i)))
            .collect::<PyResult<Vec<_>>>()?;
        off(py, || self.memory.add_many_as(&items))
    }

    fn list_json(&self, py: Python<'_>, limit: u64, order: &str) -> PyResult<String> {
        let order = match order {
            "time" => ListOrder::Time,
            "importance" => ListOrder::Importance,
            other => {
                return Err(invalid(format!(
                    "order must be \"time\" or \"importance\", got {other:?}"
                )));
            }
        };
        json(&off(py, || self.memory.list(order, limit))?)
    }

    fn stats_json(&self, py: Python<'_>) -> PyResult<String> {
        json(&off(py, || self.memory.stats())?)
    }

    #[pyo3(signature = (max_chars, query = None))]
    fn context_json(
        &self,
        py: Python<'_>,
        max_chars: u64,
        query: Option<String>,
    ) -> PyResult<String> {
        let c = off(py, || match &query {
            Some(q) => self.memory.context_for(q, max_chars),
            None => self.memory.context(max_chars),
        })?;
        json(&c)
    }

    #[pyo3(signature = (keep_fraction = None, min_importance = None, older_than = None, max_bytes = None, dry_run = false))]
    fn prune_json(
        &self,
        py: Python<'_>,
        keep_fraction: Option<f64>,
        min_importance: Option<f64>,
        older_than: Option<f64>,
        max_bytes: Option<u64>,
        dry_run: bool,
    ) -> PyResult<String> {
        let rule = match (keep_fraction, min_importance, older_than, max_bytes) {
            (Some(f), None, None, None) => Prune::KeepFraction(f),
            (None, Some(i), None, None) => Prune::MinImportance(i),
            (None, None, Some(s), None) => Prune::OlderThan(seconds(s, "older_than")?),
            (None, None, None, Some(b)) => Prune::MaxBytes(b),
            _ => {
                return Err(invalid(
                    "give exactly one of keep_fraction, min_importance, older_than, max_bytes",
                ));
            }
        };
        json(&off(py, || self.memory.prune(rule, dry_run))?)
    }

    #[pyo3(signature = (query, limit = 10, role = None))]
    fn search_json(
        &self,
        py: Python<'_>,
        query: String,
        limit: u64,
        role: Option<String>,
    ) -> PyResult<String> {
        let mut options = SearchOptions::default().with_limit(limit);
        if let Some(r) = role {
            options = options.with_role(self::role(&r)?);
        }
        json(&off(py, || self.memory.search(&query, &options))?)
    }

    fn get_json(&self, py: Python<'_>, id: i64) -> PyResult<String> {
        json(&off(py, || self.memory.get(id))?)
    }

    fn rate_json(&self, py: Python<'_>, id: i64, importance: f64) -> PyResult<String> {
        json(&off(py, || self.memory.rate(id, importance))?)
    }

    #[pyo3(signature = (ids = None, matching = None, dry_run = false))]
    fn forget_json(
        &self,
        py: Python<'_>,
        ids: Option<Vec<i64>>,
        matching: Option<String>,
        dry_run: bool,
    ) -> PyResult<String> {
        let target = match (ids, matching) {
            (Some(ids), None) => ForgetTarget::Ids(ids),
            (None, Some(q)) => ForgetTarget::Matching(q),
            _ => return Err(invalid("give ids or matching, not both")),
        };
        json(&off(py, || self.memory.forget(&target, dry_run))?)
    }
}

/// One agent's tool cache (its scope).
#[pyclass(module = "agentstore._native", frozen)]
struct NativeToolCache {
    cache: ToolCache,
    store: Store,
}

#[pymethods]
impl NativeToolCache {
    /// The cached result (JSON text) of `tool` with `params` (JSON text), or None.
    fn get(&self, py: Python<'_>, tool: String, params: &str) -> PyResult<Option<String>> {
        let params = parse_json(params, "params")?;
        let hit = off(py, || self.cache.get(&tool, &params))?;
        Ok(hit.map(|v| v.to_string()))
    }

    fn put(
        &self,
        py: Python<'_>,
        tool: String,
        params: &str,
        result: &str,
        ttl: f64,
    ) -> PyResult<bool> {
        let params = parse_json(params, "params")?;
        let result = parse_json(result, "result")?;
        let ttl = seconds(ttl, "ttl")?;
        off(py, || self.cache.put(&tool, &params, &result, ttl))
    }

    #[pyo3(signature = (tool = None, expired_only = false, dry_run = false))]
    fn purge_json(
        &self,
        py: Python<'_>,
        tool: Option<String>,
        expired_only: bool,
        dry_run: bool,
    ) -> PyResult<String> {
        let filter = CacheFilter {
            scope: Some(self.cache.scope().to_string()),
            tool,
            expired_only,
        };
        json(&off(py, || {
            self.store.tool_results().purge(&filter, dry_run)
        })?)
    }

    fn stats_json(&self, py: Python<'_>) -> PyResult<String> {
        json(&off(py, || self.cache.stats())?)
    }
}

/// One agent's response cache.
#[pyclass(module = "agentstore._native", frozen)]
struct NativeResponses {
    cache: ResponseCache,
}

#[pymethods]
impl NativeResponses {
    /// The cached response to `message` exactly (fast path), or None.
    fn lookup_exact(&self, py: Python<'_>, message: String) -> PyResult<Option<String>> {
        Ok(off(py, || self.cache.lookup_exact(&message))?.map(|m| m.response))
    }

    #[pyo3(signature = (message, fuzzy = false, threshold = None, guard = true))]
    fn lookup_json(
        &self,
        py: Python<'_>,
        message: String,
        fuzzy: bool,
        threshold: Option<f64>,
        guard: bool,
    ) -> PyResult<String> {
        let hit = if fuzzy {
            let mut options = FuzzyOptions::default().with_negation_guard(guard);
            if let Some(t) = threshold {
                options = options.with_threshold(t);
            }
            off(py, || self.cache.lookup(&message, options))?
        } else {
            off(py, || self.cache.lookup_exact(&message))?
        };
        json(&hit)
    }

    fn put(&self, py: Python<'_>, message: String, response: String) -> PyResult<i64> {
        off(py, || self.cache.put(&message, &response))
    }

    fn purge_all(&self, py: Python<'_>) -> PyResult<u64> {
        off(py, || {
            self.cache
                .purge(ResponsePurge::All, false)
                .map(|r| r.removed)
        })
    }

    fn stats_json(&self, py: Python<'_>) -> PyResult<String> {
        json(&off(py, || self.cache.time_stats())?)
    }

    fn entries(&self, py: Python<'_>) -> PyResult<u64> {
        off(py, || self.cache.entries())
    }
}

/// The extension module.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add_class::<NativeStore>()?;
    m.add_class::<NativeMemory>()?;
    m.add_class::<NativeToolCache>()?;
    m.add_class::<NativeResponses>()?;
    m.add("AgentstoreError", py.get_type::<AgentstoreError>())?;
    m.add("InvalidArgument", py.get_type::<InvalidArgument>())?;
    m.add("NotFound", py.get_type::<NotFound>())?;
    m.add("Busy", py.get_type::<Busy>())?;
    m.add("Damaged", py.get_type::<Damaged>())?;
    m.add("NEVER_CACHED", agentstore::agent::NEVER_CACHED.to_vec())?;
    Ok(())
}
