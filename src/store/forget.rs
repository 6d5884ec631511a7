//! Forgetting across an agent's whole state: its memory entries that match a query,
//! and the cached responses and tool results that contain its words. What "contains"
//! means is defined here, once, for every engine.

use serde::Serialize;

use super::memory::Query;
use super::memory::search::Term;
use super::{AgentRecord, CachedResponse, CachedToolResult, MemoryEntry, Store};
use crate::error::Result;

/// What [`Store::forget_everywhere`] removed, or on a dry run would remove.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ForgetEverywhereReport {
    /// Memory entries that match every term of the query.
    pub memory_entries: Vec<MemoryEntry>,
    /// Cached responses whose message, or whose response, contains every term.
    pub responses: Vec<CachedResponse>,
    /// Cached tool results of the agent's scope whose params, or whose result,
    /// contain every term.
    pub tool_results: Vec<CachedToolResult>,
    /// Whether this was a dry run (nothing removed).
    pub dry_run: bool,
    /// Whether the removed text is gone from the database's files too (see
    /// [`ForgetReport::scrubbed`](crate::ForgetReport::scrubbed)).
    pub scrubbed: bool,
}

/// The lower-cased texts a cached response or tool result must contain, one per term:
/// a word without the punctuation around it, a prefix's stem, a phrase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Needles(Vec<String>);

impl Needles {
    pub(crate) fn of(query: &Query) -> Needles {
        let needles = query
            .terms
            .iter()
            .map(|t| match t {
                Term::Word(w) => w.trim_matches(|c: char| !c.is_alphanumeric()),
                Term::Prefix(p) => p.as_str(),
                Term::Phrase(p) => p.as_str(),
            })
            .map(str::to_lowercase)
            .filter(|n| !n.is_empty())
            .collect();
        Needles(needles)
    }

    /// Whether `text`, lower-cased, contains every needle.
    pub(crate) fn all_in(&self, text: &str) -> bool {
        let lower = text.to_lowercase();
        !self.0.is_empty() && self.0.iter().all(|n| lower.contains(n.as_str()))
    }
}

impl Store {
    /// Forgets what matches `query` in everything of `agent`: memory entries that
    /// match all of its terms (as [`Memory::forget`](crate::Memory::forget) with
    /// [`ForgetTarget::Matching`](crate::ForgetTarget::Matching)), cached responses
    /// whose message or response contains all of them, and cached tool results of the
    /// agent's tool scope whose params or result contain all of them (compared
    /// case-insensitively as text; a word without the punctuation around it). One
    /// transaction, then the files are scrubbed as a memory forget does. With
    /// `dry_run`, lists exactly what would go and removes nothing.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`](crate::Error::InvalidArgument) for an empty query or
    /// one over [`MAX_QUERY_BYTES`](crate::MAX_QUERY_BYTES); database errors.
    pub fn forget_everywhere(
        &self,
        agent: &AgentRecord,
        query: &str,
        dry_run: bool,
    ) -> Result<ForgetEverywhereReport> {
        let query = Query::user(query)?;
        let needles = Needles::of(&query);
        if query.terms.is_empty() {
            return Ok(ForgetEverywhereReport {
                memory_entries: Vec::new(),
                responses: Vec::new(),
                tool_results: Vec::new(),
                dry_run,
                scrubbed: false,
            });
        }
        self.engine()
            .forget_everywhere(agent.id, &agent.tool_scope, &query, &needles, dry_run)
    }
}

#[cfg(test)]
mod tests {
    use super::{Needles, Query};

    #[test]
    fn needles_are_lower_cased_terms_without_punctuation() {
        let n = Needles::of(&Query::parse(r#"Home, "Main Street" 12*"#));
        assert_eq!(n.0, ["home", "main street", "12"]);
        assert!(n.all_in("my HOME is at 12b main street"));
        assert!(!n.all_in("my home is at 12b main  street"));
        assert!(!Needles::of(&Query::parse("")).all_in("anything"));
    }
}
