//! Recall: what a search query means, engine-independent. A query is parsed once into
//! terms (words, `prefix*` and `"phrases"`); each engine renders them in its own
//! syntax, so whatever a user types is a valid query on every engine.

use serde::Serialize;

use super::Role;
use crate::clock::serialize_micros;
use crate::error::{Error, Result};

/// The longest query [`Memory::search`](super::Memory::search) and forget accept, in
/// bytes. A context built for a longer message uses its first this many bytes.
pub const MAX_QUERY_BYTES: usize = 16 * 1024;

/// The most terms a query keeps (the first ones; repeats count once).
pub const MAX_QUERY_TERMS: usize = 64;

/// How many of the best matches of a query a context scores for relevance; the other
/// entries score 0 for it (see [`Memory::context_for`](super::Memory::context_for)).
pub const CONTEXT_MATCHES: u64 = 100;

/// One term of a query.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Term {
    /// A word, matched as a whole token.
    Word(String),
    /// `retr*`: any token that starts with it.
    Prefix(String),
    /// `"rate limit"`: these tokens one after another.
    Phrase(String),
}

/// A parsed query: its distinct terms in the order typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Query {
    pub terms: Vec<Term>,
}

/// Whether `text` has anything a tokenizer would index.
fn has_word(text: &str) -> bool {
    text.chars().any(char::is_alphanumeric)
}

impl Query {
    /// Parses what a user typed: `"..."` is a phrase (an unclosed quote is ignored),
    /// a token ending in `*` a prefix, anything else a word; tokens with no letter or
    /// digit are dropped. Never fails: text that is no valid syntax is plain words.
    pub(crate) fn parse(text: &str) -> Query {
        let mut terms: Vec<Term> = Vec::new();
        let mut push = |term: Term| {
            if terms.len() < MAX_QUERY_TERMS && !terms.contains(&term) {
                terms.push(term);
            }
        };
        let mut rest = text;
        while !rest.is_empty() {
            rest = rest.trim_start();
            if let Some(after) = rest.strip_prefix('"') {
                if let Some(end) = after.find('"') {
                    let phrase = after[..end].split_whitespace().collect::<Vec<_>>();
                    if has_word(&after[..end]) {
                        push(if phrase.len() == 1 {
                            Term::Word(phrase[0].to_string())
                        } else {
                            Term::Phrase(phrase.join(" "))
                        });
                    }
                    rest = &after[end + 1..];
                    continue;
                }
                rest = after;
                continue;
            }
            let end = rest
                .find(|c: char| c.is_whitespace() || c == '"')
                .unwrap_or(rest.len());
            let token = &rest[..end];
            rest = &rest[end..];
            if !has_word(token) {
                continue;
            }
            match token.strip_suffix('*') {
                Some(stem) if has_word(stem) && !stem.ends_with('*') => {
                    push(Term::Prefix(stem.to_string()))
                }
                _ => push(Term::Word(token.trim_end_matches('*').to_string())),
            }
        }
        Query { terms }
    }

    /// [`Query::parse`] of a query a user typed: refuses one that is empty or over
    /// [`MAX_QUERY_BYTES`].
    pub(crate) fn user(text: &str) -> Result<Query> {
        if text.trim().is_empty() {
            return Err(Error::invalid(
                "the query is empty; give some words to search for",
            ));
        }
        if text.len() > MAX_QUERY_BYTES {
            return Err(Error::invalid(format!(
                "the query is {} bytes; the limit is {MAX_QUERY_BYTES}",
                text.len()
            )));
        }
        Ok(Query::parse(text))
    }

    /// The query of a context built for `message`: its first [`MAX_QUERY_BYTES`].
    pub(crate) fn of_message(message: &str) -> Query {
        let mut end = message.len().min(MAX_QUERY_BYTES);
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        Query::parse(&message[..end])
    }

    /// The query in FTS5 syntax: every term quoted (so no operator or column filter
    /// can be typed), joined by `OR` for a search or `AND` for a match of all terms.
    pub(crate) fn to_fts5(&self, all: bool) -> String {
        let quote = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
        let parts: Vec<String> = self
            .terms
            .iter()
            .map(|t| match t {
                Term::Word(w) | Term::Phrase(w) => quote(w),
                Term::Prefix(p) => format!("{} *", quote(p)),
            })
            .collect();
        parts.join(if all { " AND " } else { " OR " })
    }
}

/// What [`Memory::search`](super::Memory::search) returns and how.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct SearchOptions {
    /// The most hits (default 10).
    pub limit: u64,
    /// Only entries of this role.
    pub role: Option<Role>,
    /// Only entries created at or after this time (microseconds since the epoch).
    pub since: Option<i64>,
}

impl Default for SearchOptions {
    fn default() -> Self {
        SearchOptions {
            limit: 10,
            role: None,
            since: None,
        }
    }
}

impl SearchOptions {
    /// These options returning at most `limit` hits.
    pub fn with_limit(mut self, limit: u64) -> Self {
        self.limit = limit;
        self
    }

    /// These options returning only entries of `role`.
    pub fn with_role(mut self, role: Role) -> Self {
        self.role = Some(role);
        self
    }

    /// These options returning only entries created at or after `since` (microseconds
    /// since the epoch).
    pub fn with_since(mut self, since: i64) -> Self {
        self.since = Some(since);
        self
    }
}

/// One entry a search found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SearchHit {
    /// The entry's id.
    pub id: i64,
    /// Who said it.
    pub role: Role,
    /// The text.
    pub content: String,
    /// Importance in `[0, 1]`.
    pub importance: f64,
    /// When it was added (RFC 3339 UTC with microseconds in JSON).
    #[serde(serialize_with = "serialize_micros")]
    pub created_at: i64,
    /// Relevance, higher is better: BM25 on SQLite, `ts_rank` on PostgreSQL.
    pub score: f64,
    /// A short passage around the matches, each match between `[` and `]`.
    pub snippet: String,
}

/// Which entries a forget removes.
#[derive(Debug, Clone, PartialEq)]
pub enum ForgetTarget {
    /// These ids (every one must be the agent's).
    Ids(Vec<i64>),
    /// Every entry that matches all terms of this query (words, `prefix*`,
    /// `"phrases"`), as the search index tokenises them.
    Matching(String),
}

/// What a forget removed, or on a dry run would remove.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ForgetReport {
    /// The entries, by id.
    pub entries: Vec<super::MemoryEntry>,
    /// Whether this was a dry run (nothing removed).
    pub dry_run: bool,
    /// Whether the forgotten text is gone from the database's files too (SQLite: the
    /// WAL was checkpointed and truncated; false when a reader kept it from finishing,
    /// and the text then stays in the WAL until the next checkpoint). Always false on
    /// a dry run.
    pub scrubbed: bool,
}

#[cfg(test)]
mod tests {
    use super::{Query, Term};
    use proptest::prelude::*;

    #[test]
    fn words_prefixes_and_phrases() {
        let q = Query::parse(r#"retr* "rate  limit" Hello, hello? *** "x"#);
        assert_eq!(
            q.terms,
            vec![
                Term::Prefix("retr".into()),
                Term::Phrase("rate limit".into()),
                Term::Word("Hello,".into()),
                Term::Word("hello?".into()),
                Term::Word("x".into()),
            ]
        );
        assert_eq!(
            Query::parse(r#"a"b" c"#).to_fts5(false),
            r#""a" OR "b" OR "c""#
        );
        assert_eq!(
            Query::parse(r#"say "hi"#).to_fts5(true),
            r#""say" AND "hi""#
        );
    }

    proptest! {
        #[test]
        fn every_term_has_a_word_and_the_fts5_text_is_balanced(text in "\\PC{0,60}") {
            let q = Query::parse(&text);
            prop_assert!(q.terms.len() <= super::MAX_QUERY_TERMS);
            for t in &q.terms {
                let (Term::Word(s) | Term::Prefix(s) | Term::Phrase(s)) = t;
                prop_assert!(super::has_word(s));
            }
            let fts = q.to_fts5(false);
            prop_assert_eq!(fts.matches('"').count() % 2, 0);
        }
    }
}
