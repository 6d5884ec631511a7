//! An agent's memory: entries with an importance, added under the original design's
//! retention (regular cleanup every N messages, a cap on entries, an emergency cleanup
//! over the byte budget), listed, summarised, pruned on demand (`prune`), and packed
//! into a prompt's context. The records and the [`Memory`] handle; the SQL is the
//! engine's.

pub(crate) mod prune;
pub(crate) mod search;

use serde::Serialize;

pub(crate) use prune::{PrunePlan, PruneStart};
pub(crate) use search::Query;
pub use search::{
    CONTEXT_MATCHES, ForgetReport, ForgetTarget, MAX_QUERY_BYTES, MAX_QUERY_TERMS, SearchHit,
    SearchOptions,
};

use super::{AgentRecord, MAX_CONTENT_BYTES, Store};
use crate::clock::serialize_micros;
use crate::error::{Error, Result};

/// Who said a memory entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The user's message.
    User,
    /// The agent's reply.
    Assistant,
    /// A system instruction.
    System,
    /// A tool's output.
    Tool,
    /// A fact or note added outside a conversation (what `memory add` stores).
    #[default]
    Note,
}

impl Role {
    /// Every role, in the order of the schema's CHECK.
    pub const ALL: [Role; 5] = [
        Role::User,
        Role::Assistant,
        Role::System,
        Role::Tool,
        Role::Note,
    ];

    /// The name stored and printed.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::System => "system",
            Role::Tool => "tool",
            Role::Note => "note",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Role {
    type Err = Error;

    fn from_str(s: &str) -> Result<Role> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| {
                Error::invalid(format!(
                    "unknown role {s:?}; a role is one of user, assistant, system, tool, note"
                ))
            })
    }
}

/// A stored memory entry.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MemoryEntry {
    /// The agent's message number for this entry (unique per agent).
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
    /// UTF-8 byte length of `content`.
    pub size_bytes: u64,
}

/// An entry to restore as it was (see [`Memory::import_entries`]).
#[derive(Debug, Clone, PartialEq)]
pub struct NewEntry {
    /// Who said it.
    pub role: Role,
    /// The text.
    pub content: String,
    /// Importance in `[0, 1]`.
    pub importance: f64,
    /// Creation time, microseconds since the epoch.
    pub created_at: i64,
}

/// The original design's memory stats. With no entries, only the first two are present.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MemoryStats {
    /// Entries now.
    pub total_entries: u64,
    /// Content bytes now, in MiB.
    pub total_memory_mb: f64,
    /// Mean importance.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub avg_importance_score: Option<f64>,
    /// Content bytes as a percentage of the byte budget.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_utilization_pct: Option<f64>,
    /// Age of the oldest entry, in hours.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oldest_entry_age_hours: Option<f64>,
    /// Time between the oldest and the newest entry, in hours.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_span_hours: Option<f64>,
}

/// Order of [`Memory::list`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListOrder {
    /// Newest first.
    Time,
    /// Most important first (newest first among equals).
    Importance,
}

/// What a prune removes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Prune {
    /// Keep `floor(count * f)` entries, the top by (importance, created); remove the rest.
    KeepFraction(f64),
    /// Remove entries whose importance is below this.
    MinImportance(f64),
    /// Remove entries created more than this long ago.
    OlderThan(std::time::Duration),
    /// Remove entries, least important and oldest first, until the content bytes are at
    /// most this.
    MaxBytes(u64),
}

/// What a prune removed, or would remove on a dry run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PruneReport {
    /// Entries removed (or that would be).
    pub removed_entries: u64,
    /// Content bytes removed (or that would be).
    pub removed_bytes: u64,
    /// Whether this was a dry run.
    pub dry_run: bool,
    /// Write transactions it took (0 for a dry run or when nothing matched).
    pub batches: u64,
    /// Whether this run finished (or, dry, would finish) an earlier run of the same rule
    /// that was interrupted between two batches.
    pub resumed: bool,
}

/// The compressed context for a prompt.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CompressedContext {
    /// The chosen entries in chronological order, one per line, then the truncation
    /// note when any entry was left out.
    pub text: String,
    /// Entries included.
    pub included: u64,
    /// Entries left out.
    pub truncated: u64,
    /// The chosen entries, in the order of `text`, with who said each (a prompt
    /// shows the roles; `text` has the contents alone).
    pub entries: Vec<ContextEntry>,
}

/// One entry of a [`CompressedContext`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ContextEntry {
    /// The entry's id.
    pub id: i64,
    /// Who said it.
    pub role: Role,
    /// The text.
    pub content: String,
}

/// One agent's memory. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Memory {
    store: Store,
    agent_id: i64,
}

impl Store {
    /// The memory of `agent`.
    pub fn memory(&self, agent: &AgentRecord) -> Memory {
        Memory {
            store: self.clone(),
            agent_id: agent.id,
        }
    }
}

pub(crate) fn validate_importance(importance: f64) -> Result<()> {
    if importance.is_finite() && (0.0..=1.0).contains(&importance) {
        Ok(())
    } else {
        Err(Error::InvalidImportance(importance))
    }
}

/// Checks an entry before it reaches the database.
pub(crate) fn validate_entry(content: &str, importance: f64) -> Result<()> {
    validate_importance(importance)?;
    if content.is_empty() {
        return Err(Error::invalid(
            "content is empty; a memory entry needs some text",
        ));
    }
    if content.len() > MAX_CONTENT_BYTES {
        return Err(Error::invalid(format!(
            "content is {} bytes; the most one entry can hold is {MAX_CONTENT_BYTES}",
            content.len()
        )));
    }
    Ok(())
}

/// How many entries the regular cleanup deletes from `count`: all but
/// `floor(count * keep)`, or none when that floor is 0 (the original kept everything
/// then, because `list[-0:]` is the whole list).
pub(crate) fn regular_cleanup_deletes(count: i64, keep_fraction: f64) -> i64 {
    let keep = (count as f64 * keep_fraction).floor() as i64;
    if keep == 0 { 0 } else { count - keep }
}

impl Memory {
    /// The agent's row id.
    pub fn agent_id(&self) -> i64 {
        self.agent_id
    }

    /// The store this memory is in.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Adds one entry and applies the agent's retention, all in one transaction:
    /// bump the message counter and run the regular cleanup on every
    /// `cleanup_interval`-th message, insert, drop the oldest beyond `max_entries`,
    /// and run the emergency cleanup when over the byte budget. Returns the entry's id.
    ///
    /// # Errors
    /// [`Error::InvalidImportance`], [`Error::InvalidArgument`] for oversized content;
    /// database errors. Nothing is written when it fails.
    pub fn add(&self, content: &str, importance: f64) -> Result<i64> {
        self.add_as(Role::Note, content, importance)
    }

    /// [`Memory::add`] of an entry said by `role`.
    ///
    /// # Errors
    /// As [`Memory::add`].
    pub fn add_as(&self, role: Role, content: &str, importance: f64) -> Result<i64> {
        validate_entry(content, importance)?;
        let now = self.store.now_micros();
        let ids = self.store.engine().memory_add(
            self.agent_id,
            &[(role, content, importance)],
            now,
            false,
        )?;
        Ok(ids[0])
    }

    /// Adds a batch in one transaction, with the same result as adding them one by one.
    /// Returns their ids in order.
    ///
    /// # Errors
    /// As [`Memory::add`]; every item is validated before anything is written.
    pub fn add_many<S: AsRef<str>>(&self, items: &[(S, f64)]) -> Result<Vec<i64>> {
        let items: Vec<(Role, &str, f64)> = items
            .iter()
            .map(|(c, i)| (Role::Note, c.as_ref(), *i))
            .collect();
        self.add_items(&items)
    }

    /// [`Memory::add_many`] of entries with their roles: `(role, content, importance)`.
    ///
    /// # Errors
    /// As [`Memory::add`]; every item is validated before anything is written.
    pub fn add_many_as<S: AsRef<str>>(&self, items: &[(Role, S, f64)]) -> Result<Vec<i64>> {
        let items: Vec<(Role, &str, f64)> =
            items.iter().map(|(r, c, i)| (*r, c.as_ref(), *i)).collect();
        self.add_items(&items)
    }

    fn add_items(&self, items: &[(Role, &str, f64)]) -> Result<Vec<i64>> {
        for (_, content, importance) in items {
            validate_entry(content, *importance)?;
        }
        let now = self.store.now_micros();
        self.store
            .engine()
            .memory_add(self.agent_id, items, now, true)
    }

    /// Restores entries exactly as given (content, importance, creation time), in one
    /// transaction, without running any retention: for imports and preloading. Each
    /// takes the next message number as its id. Returns how many were stored.
    ///
    /// # Errors
    /// As [`Memory::add`]; every item is validated before anything is written.
    pub fn import_entries(&self, entries: &[NewEntry]) -> Result<u64> {
        for e in entries {
            validate_entry(&e.content, e.importance)?;
        }
        self.store.engine().memory_restore(self.agent_id, entries)
    }

    /// Runs the regular cleanup now, with the agent's `keep_fraction`. Returns the
    /// number of entries removed.
    ///
    /// # Errors
    /// Database errors.
    pub fn cleanup(&self) -> Result<u64> {
        self.store.engine().memory_cleanup(self.agent_id)
    }

    /// Removes entries by `rule`, or with `dry_run` counts what it would remove. Unlike
    /// the regular cleanup, `KeepFraction` keeps exactly `floor(count * f)` entries,
    /// even when that is 0.
    ///
    /// A large prune runs in batches (one write transaction each, sized to hold the
    /// write lock for at most an eighth of the busy timeout), so agents keep writing
    /// while it runs. The entries it removes are fixed when it starts: entries added
    /// meanwhile stay. Each batch is all-or-nothing; if the process dies between two
    /// batches, running the same prune again finishes exactly what the first run
    /// started ([`PruneReport::resumed`]), rather than applying a relative rule such as
    /// `KeepFraction` to what is left. A different prune replaces the unfinished one.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a fraction outside `[0, 1]` or a duration that
    /// reaches before the epoch; [`Error::InvalidImportance`]; database errors (a batch
    /// that fails removes nothing; the batches before it stay removed and the same
    /// prune run again finishes them).
    pub fn prune(&self, rule: Prune, dry_run: bool) -> Result<PruneReport> {
        prune::prune(&self.store, self.agent_id, rule, dry_run)
    }

    /// The original design's stats, from the trigger-kept counters and the two ends of
    /// the time index: the same cost at any number of entries.
    ///
    /// # Errors
    /// Database errors.
    pub fn stats(&self) -> Result<MemoryStats> {
        let now = self.store.now_micros();
        self.store.engine().memory_stats(self.agent_id, now)
    }

    /// Up to `limit` entries in `order`.
    ///
    /// # Errors
    /// Database errors.
    pub fn list(&self, order: ListOrder, limit: u64) -> Result<Vec<MemoryEntry>> {
        let mut entries = Vec::new();
        self.list_each(order, limit, |e| {
            entries.push(e);
            Ok(())
        })?;
        Ok(entries)
    }

    /// [`Memory::list`], handing each entry to `each` as it is read: memory is bounded
    /// by one entry whatever `limit` is. An error from `each` stops the listing and is
    /// returned.
    ///
    /// # Errors
    /// Database errors, or `each`'s.
    pub fn list_each(
        &self,
        order: ListOrder,
        limit: u64,
        mut each: impl FnMut(MemoryEntry) -> Result<()>,
    ) -> Result<()> {
        self.store
            .engine()
            .memory_list(self.agent_id, order, limit, &mut each)
    }

    /// The compressed context: entries ranked by
    /// `importance_weight * importance + recency_weight * recency` (ties: newer first),
    /// taken greedily until the first that does not fit in `max_chars` characters, then
    /// emitted in chronological order, with a note of how many were left out.
    ///
    /// # Errors
    /// Database errors.
    pub fn context(&self, max_chars: u64) -> Result<CompressedContext> {
        self.store
            .engine()
            .memory_context(self.agent_id, max_chars, None)
    }

    /// The compressed context for a prompt about `query`: [`Memory::context`] with a
    /// third term in the score, `relevance_weight * relevance`, where relevance is the
    /// entry's search score over the best score of the query's top
    /// [`CONTEXT_MATCHES`] matches (0..1; 1 for the best match) and 0 for every other
    /// entry. A query with no words (or an empty one) gives exactly
    /// [`Memory::context`]. Only the first [`MAX_QUERY_BYTES`] of `query` are used.
    ///
    /// # Errors
    /// Database errors.
    pub fn context_for(&self, query: &str, max_chars: u64) -> Result<CompressedContext> {
        let query = Query::of_message(query);
        let query = (!query.terms.is_empty()).then_some(&query);
        self.store
            .engine()
            .memory_context(self.agent_id, max_chars, query)
    }

    /// The entry `id`, if the agent has it.
    ///
    /// # Errors
    /// Database errors.
    pub fn get(&self, id: i64) -> Result<Option<MemoryEntry>> {
        self.store.engine().memory_get(self.agent_id, id)
    }

    /// Full-text search of the agent's entries, best first (ties: newest first). Plain
    /// words match any of them: an entry with more of the query's words, and rarer
    /// ones, ranks higher. `retr*` matches words that start with `retr`, `"rate limit"`
    /// the words one after the other. Case and diacritics are ignored. Any text is a
    /// valid query; characters that are no word are ignored.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an empty query or one over [`MAX_QUERY_BYTES`];
    /// database errors.
    pub fn search(&self, query: &str, options: &SearchOptions) -> Result<Vec<SearchHit>> {
        let query = Query::user(query)?;
        if query.terms.is_empty() || options.limit == 0 {
            return Ok(Vec::new());
        }
        self.store
            .engine()
            .memory_search(self.agent_id, &query, options)
    }

    /// Sets the importance of entry `id`, keeping its id, role, text and creation
    /// time. Returns the entry as it now is, or `None` if the agent has no such entry.
    ///
    /// # Errors
    /// [`Error::InvalidImportance`]; database errors.
    pub fn rate(&self, id: i64, importance: f64) -> Result<Option<MemoryEntry>> {
        validate_importance(importance)?;
        self.store
            .engine()
            .memory_rate(self.agent_id, id, importance)
    }

    /// Removes the entries `target` names, or on a dry run lists them, in one
    /// transaction. Forgotten means gone from the files: on SQLite the deleted rows
    /// and index entries are overwritten with zeros (`secure_delete`, FTS5's
    /// `secure-delete`) and the WAL is checkpointed and truncated before it returns
    /// ([`ForgetReport::scrubbed`]).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for no ids, an id the agent does not have (nothing
    /// is removed then), or a bad query (as [`Memory::search`]); database errors.
    pub fn forget(&self, target: &ForgetTarget, dry_run: bool) -> Result<ForgetReport> {
        let target = match target {
            ForgetTarget::Ids(ids) if ids.is_empty() => {
                return Err(Error::invalid("no entry ids to forget"));
            }
            ForgetTarget::Ids(ids) => Forget::Ids(ids),
            ForgetTarget::Matching(text) => Forget::Matching(Query::user(text)?),
        };
        if let Forget::Matching(q) = &target
            && q.terms.is_empty()
        {
            return Ok(ForgetReport {
                entries: Vec::new(),
                dry_run,
                scrubbed: false,
            });
        }
        self.store
            .engine()
            .memory_forget(self.agent_id, &target, dry_run)
    }
}

/// A validated [`ForgetTarget`], as an engine gets it.
pub(crate) enum Forget<'a> {
    Ids(&'a [i64]),
    Matching(Query),
}

/// The text of a compressed context: the chosen entries' contents in chronological
/// order, then the note of how many were left out.
pub(crate) fn context_text(chosen: Vec<ContextEntry>, total: u64) -> CompressedContext {
    let included = chosen.len() as u64;
    let mut lines: Vec<&str> = chosen.iter().map(|e| e.content.as_str()).collect();
    let truncated = total - included;
    let note = format!("[... {truncated} earlier messages truncated for length ...]");
    if truncated > 0 {
        lines.push(&note);
    }
    CompressedContext {
        text: lines.join("\n"),
        included,
        truncated,
        entries: chosen,
    }
}

#[cfg(test)]
mod tests {
    use super::regular_cleanup_deletes;

    #[test]
    fn regular_cleanup_keeps_the_floor_of_the_fraction() {
        // The seed: after 99 entries, keep int(99 * 0.7) = 69.
        assert_eq!(regular_cleanup_deletes(99, 0.7), 30);
        assert_eq!(regular_cleanup_deletes(100, 0.7), 30);
        // floor 0 keeps everything, as the original's list[-0:] did.
        assert_eq!(regular_cleanup_deletes(1, 0.7), 0);
        assert_eq!(regular_cleanup_deletes(5, 0.0), 0);
        assert_eq!(regular_cleanup_deletes(0, 0.7), 0);
        assert_eq!(regular_cleanup_deletes(10, 1.0), 0);
    }
}
