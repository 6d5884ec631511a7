//! Statements with agentstore's table, view and function names qualified by the store's schema
//! (`team_a.memory_entries`), so that a statement needs no `search_path`: a read of one
//! statement then runs in autocommit, one round trip, with no session state. The
//! rewritten text of each statement is computed once and cached.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// The names qualified.
const NAMES: [&str; 23] = [
    "agents",
    "agentstore_schema",
    "lease_release",
    "lease_renew",
    "lease_take",
    "leases",
    "memory_add_fast",
    "memory_by_role",
    "memory_counters",
    "memory_entries",
    "memory_prunes",
    "memory_stats",
    "recent_responses",
    "response_cache",
    "response_cache_put",
    "response_log",
    "response_stats",
    "response_time_buckets",
    "response_words",
    "tool_cache",
    "tool_cache_put",
    "tool_counters",
    "tool_stats",
];

/// The schema and the statements rewritten for it.
pub(crate) struct Qualifier {
    prefix: String,
    cache: RwLock<HashMap<String, Arc<str>>>,
}

/// Statements cached at most (they are a fixed set, plus the filters of purges).
const MAX_CACHED: usize = 4096;

impl Qualifier {
    /// A qualifier for the (quoted) schema name `schema`.
    pub(crate) fn new(schema: &str) -> Qualifier {
        Qualifier {
            prefix: format!("{schema}."),
            cache: RwLock::new(HashMap::new()),
        }
    }

    /// `sql` with the names qualified.
    pub(crate) fn apply(&self, sql: &str) -> Arc<str> {
        if let Some(done) = self.cache.read().ok().and_then(|c| c.get(sql).cloned()) {
            return done;
        }
        let done: Arc<str> = rewrite(sql, &self.prefix).into();
        if let Ok(mut cache) = self.cache.write()
            && cache.len() < MAX_CACHED
        {
            cache.insert(sql.to_string(), done.clone());
        }
        done
    }
}

/// `sql` with each of [`NAMES`] that stands alone (not after a `.`, not inside a
/// string literal or a quoted identifier) prefixed.
fn rewrite(sql: &str, prefix: &str) -> String {
    let b = sql.as_bytes();
    let mut out = String::with_capacity(sql.len() + 64);
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'\'' || c == b'"' {
            let end = b[i + 1..]
                .iter()
                .position(|&x| x == c)
                .map_or(b.len(), |p| i + 2 + p);
            out.push_str(&sql[i..end]);
            i = end;
        } else if c.is_ascii_alphabetic() || c == b'_' {
            let start = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                i += 1;
            }
            let word = &sql[start..i];
            let after_dot = start > 0 && b[start - 1] == b'.';
            if !after_dot && NAMES.contains(&word) {
                out.push_str(prefix);
            }
            out.push_str(word);
        } else {
            let ch = sql[i..].chars().next().unwrap_or(' ');
            out.push(ch);
            i += ch.len_utf8();
        }
    }
    out
}

thread_local! {
    /// The qualifier of the engine whose operation runs on this thread.
    static CURRENT: RefCell<Option<Arc<Qualifier>>> = const { RefCell::new(None) };
}

/// Runs `f` with `q` as the current qualifier (see [`qualified`]).
pub(crate) fn with<T>(q: &Arc<Qualifier>, f: impl FnOnce() -> T) -> T {
    let before = CURRENT.with(|c| c.replace(Some(q.clone())));
    let out = f();
    CURRENT.with(|c| *c.borrow_mut() = before);
    out
}

/// A statement as it is sent: qualified (shared with the cache) or as written.
pub(crate) enum Qualified<'a> {
    /// Rewritten for the store's schema.
    Shared(Arc<str>),
    /// Outside an operation (migration): as written.
    AsWritten(&'a str),
}

impl std::ops::Deref for Qualified<'_> {
    type Target = str;

    fn deref(&self) -> &str {
        match self {
            Qualified::Shared(s) => s,
            Qualified::AsWritten(s) => s,
        }
    }
}

/// `sql` qualified for the operation running on this thread (as it is outside one),
/// without copying the cached text.
pub(crate) fn qualified(sql: &str) -> Qualified<'_> {
    CURRENT.with(|c| match c.borrow().as_ref() {
        Some(q) => Qualified::Shared(q.apply(sql)),
        None => Qualified::AsWritten(sql),
    })
}

#[cfg(test)]
mod tests {
    use super::rewrite;

    #[test]
    fn only_standalone_names_are_qualified() {
        assert_eq!(
            rewrite(
                "SELECT a.name FROM agents a JOIN memory_counters c ON c.agent_id = a.id WHERE a.name = 'agents'",
                "\"s\"."
            ),
            "SELECT a.name FROM \"s\".agents a JOIN \"s\".memory_counters c ON c.agent_id = a.id WHERE a.name = 'agents'"
        );
        assert_eq!(
            rewrite(
                "INSERT INTO tool_counters AS t (agent_id, tool) SELECT * FROM unnest($1)",
                "x."
            ),
            "INSERT INTO x.tool_counters AS t (agent_id, tool) SELECT * FROM unnest($1)"
        );
        assert_eq!(
            rewrite("SELECT \"agents\" FROM s.agents", "x."),
            "SELECT \"agents\" FROM s.agents"
        );
    }
}
