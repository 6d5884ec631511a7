//! Memory entries: adding with the original design's retention (regular cleanup every
//! N messages, a hard cap on entries, an emergency cleanup over the byte budget),
//! pruning on demand, O(1) stats, and the compressed context. Everything that selects
//! rows is SQL over the clustered primary key (agent, importance, created, id) or the
//! time index; counts and byte totals come from trigger-kept `memory_counters`.

use rusqlite::{Connection, params};
use serde::Serialize;

use super::agents::mb_to_bytes;
use super::{AgentRecord, MAX_CONTENT_BYTES, Store};
use crate::clock::serialize_micros;
use crate::error::{Error, Result, SqlContext};

/// A stored memory entry.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MemoryEntry {
    /// The agent's message number for this entry (unique per agent).
    pub id: i64,
    /// The text.
    pub content: String,
    /// Importance in `[0, 1]`.
    pub importance: f64,
    /// When it was added (RFC 3339 UTC with microseconds in JSON).
    #[serde(serialize_with = "serialize_micros")]
    pub created_at: i64,
    /// UTF-8 byte length of `content`.
    pub size_bytes: i64,
}

/// An entry to restore as it was (see [`Memory::import_entries`]).
#[derive(Debug, Clone, PartialEq)]
pub struct NewEntry {
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

/// Checks an entry before any SQL runs.
fn validate_entry(content: &str, importance: f64) -> Result<()> {
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

// --- the entries a cleanup removes; prune.rs plans with the same two queries ---

/// The ?2-th lowest entry of agent ?1 by (importance, created, id), over the clustered
/// primary key.
macro_rules! nth_lowest {
    () => {
        "SELECT importance, created_at, id FROM memory_entries WHERE agent_id = ?1
          ORDER BY importance, created_at, id LIMIT 1 OFFSET ?2 - 1"
    };
}
pub(super) use nth_lowest;

/// The lowest entry of agent ?1 by (importance, created, id) at which the sizes so far
/// add up to at least ?2 bytes: a running sum over the primary key.
macro_rules! freeing {
    () => {
        "SELECT importance, created_at, id FROM (
             SELECT importance, created_at, id,
                    sum(size_bytes) OVER (ORDER BY importance, created_at, id
                                          ROWS UNBOUNDED PRECEDING) AS freed
               FROM memory_entries WHERE agent_id = ?1)
          WHERE freed >= ?2 ORDER BY importance, created_at, id LIMIT 1"
    };
}
pub(super) use freeing;

/// The lowest ?2 entries: a range of the primary key, bounded by the ?2-th row.
const DELETE_LOWEST_N: &str = concat!(
    "DELETE FROM memory_entries WHERE agent_id = ?1 AND (importance, created_at, id) <= (",
    nth_lowest!(),
    ")"
);
/// The lowest entries whose sizes add up to at least ?2 bytes, fewest first.
const DELETE_LOWEST_BYTES: &str = concat!(
    "DELETE FROM memory_entries WHERE agent_id = ?1 AND (importance, created_at, id) <= (",
    freeing!(),
    ")"
);
/// The oldest ?2 entries by (created, id), over the time index.
const DELETE_OLDEST_N: &str = "DELETE FROM memory_entries WHERE agent_id = ?1
    AND (created_at, id) <= (SELECT created_at, id FROM memory_entries WHERE agent_id = ?1
                              ORDER BY created_at, id LIMIT 1 OFFSET ?2 - 1)";

/// The agent's retention settings, as an add applies them.
struct Retention {
    cleanup_interval: i64,
    keep_fraction: f64,
    max_entries: i64,
    max_bytes: f64,
    low_water: f64,
}

/// Reserves ?2 message numbers and reads the counters the adds start from.
const RESERVE: &str = "UPDATE memory_counters SET message_count = message_count + ?2
     WHERE agent_id = ?1 RETURNING message_count, entries, bytes";

/// The retention settings an add applies.
const SETTINGS: &str = "SELECT cleanup_interval, keep_fraction, max_entries, max_memory_mb,
    low_water FROM agents WHERE id = ?1";

const COUNTERS: &str = "SELECT entries, bytes FROM memory_counters WHERE agent_id = ?1";

/// `OR ROLLBACK`: a constraint failure (which validation in Rust should make
/// impossible) rolls back the whole transaction, as the caller would anyway. Together
/// with the deferred foreign key it lets SQLite skip the statement journal that a
/// trigger-firing INSERT otherwise keeps (about a third of add_many's user time).
const INSERT: &str = "INSERT OR ROLLBACK INTO memory_entries
    (agent_id, importance, created_at, id, size_bytes, content) VALUES (?1, ?2, ?3, ?4, ?5, ?6)";

/// Inserts one entry with `INSERT` (prepared once by the caller for a whole batch).
fn insert_entry(
    insert: &mut rusqlite::CachedStatement<'_>,
    agent_id: i64,
    id: i64,
    content: &str,
    importance: f64,
    created_at: i64,
) -> Result<()> {
    let size = content.len() as i64;
    insert
        .execute(params![agent_id, importance, created_at, id, size, content])
        .sql(INSERT)?;
    Ok(())
}

/// The regular cleanup over `count` existing entries; returns how many it deleted.
fn regular_cleanup(tx: &Connection, agent_id: i64, count: i64, keep_fraction: f64) -> Result<u64> {
    match regular_cleanup_deletes(count, keep_fraction) {
        0 => Ok(0),
        doomed => delete(tx, DELETE_LOWEST_N, agent_id, doomed),
    }
}

/// Runs a prepared-and-cached DELETE with two bound values; returns rows deleted.
fn delete(tx: &Connection, sql: &str, agent_id: i64, bound: i64) -> Result<u64> {
    let n = tx
        .prepare_cached(sql)
        .and_then(|mut s| s.execute(params![agent_id, bound]))
        .sql(sql)?;
    Ok(n as u64)
}

fn counters(tx: &Connection, agent_id: i64) -> Result<(i64, i64)> {
    tx.prepare_cached(COUNTERS)
        .and_then(|mut s| s.query_row([agent_id], |r| Ok((r.get(0)?, r.get(1)?))))
        .sql(COUNTERS)
}

/// How many entries the regular cleanup deletes from `count`: all but
/// `floor(count * keep)`, or none when that floor is 0 (the original kept everything
/// then, because `list[-0:]` is the whole list).
pub(crate) fn regular_cleanup_deletes(count: i64, keep_fraction: f64) -> i64 {
    let keep = (count as f64 * keep_fraction).floor() as i64;
    if keep == 0 { 0 } else { count - keep }
}

/// Adds `items` in the caller's transaction, each exactly as the original added one:
/// bump the message counter and, on a multiple of cleanup_interval, clean up the
/// existing entries; insert; drop the oldest beyond max_entries; over the byte budget,
/// delete the least important down to low_water x budget. The message numbers are
/// reserved with one statement and the counters followed in Rust, re-read from the
/// trigger-kept columns after each delete, so an add that deletes nothing runs one
/// INSERT and nothing else.
fn add_in<S: AsRef<str>>(
    tx: &Connection,
    agent_id: i64,
    items: &[(S, f64)],
    now: i64,
) -> Result<Vec<i64>> {
    let n = items.len() as i64;
    let (last_message, mut entries, mut bytes): (i64, i64, i64) = tx
        .prepare_cached(RESERVE)
        .and_then(|mut st| {
            st.query_row(params![agent_id, n], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
        })
        .sql(RESERVE)?;
    let s = tx
        .prepare_cached(SETTINGS)
        .and_then(|mut st| {
            st.query_row([agent_id], |r| {
                Ok(Retention {
                    cleanup_interval: r.get(0)?,
                    keep_fraction: r.get(1)?,
                    max_entries: r.get(2)?,
                    max_bytes: mb_to_bytes(r.get(3)?),
                    low_water: r.get(4)?,
                })
            })
        })
        .sql(SETTINGS)?;
    let mut ids = Vec::with_capacity(items.len());
    let mut insert = tx.prepare_cached(INSERT).sql(INSERT)?;
    for (k, (content, importance)) in items.iter().enumerate() {
        let message = last_message - n + 1 + k as i64;

        if s.cleanup_interval > 0
            && message % s.cleanup_interval == 0
            && regular_cleanup(tx, agent_id, entries, s.keep_fraction)? > 0
        {
            (entries, bytes) = counters(tx, agent_id)?;
        }

        let content = content.as_ref();
        insert_entry(&mut insert, agent_id, message, content, *importance, now)?;
        entries += 1;
        bytes += content.len() as i64;

        if entries > s.max_entries {
            delete(tx, DELETE_OLDEST_N, agent_id, entries - s.max_entries)?;
            (entries, bytes) = counters(tx, agent_id)?;
        }

        if bytes as f64 > s.max_bytes {
            let target = (s.low_water * s.max_bytes).floor() as i64;
            delete(tx, DELETE_LOWEST_BYTES, agent_id, bytes - target)?;
            (entries, bytes) = counters(tx, agent_id)?;
        }
        ids.push(message);
    }
    Ok(ids)
}

impl Memory {
    /// The agent's row id.
    pub fn agent_id(&self) -> i64 {
        self.agent_id
    }

    /// Adds one entry and applies the agent's retention, all in one transaction:
    /// bump the message counter and run the regular cleanup on every
    /// `cleanup_interval`-th message, insert, drop the oldest beyond `max_entries`,
    /// and run the emergency cleanup when over the byte budget. Returns the entry's id.
    ///
    /// # Errors
    /// [`Error::InvalidImportance`], [`Error::InvalidArgument`] for oversized content;
    /// SQLite errors. Nothing is written when it fails.
    pub fn add(&self, content: &str, importance: f64) -> Result<i64> {
        validate_entry(content, importance)?;
        let now = self.store.now_micros();
        let ids = self
            .store
            .write(|tx| add_in(tx, self.agent_id, &[(content, importance)], now))?;
        Ok(ids[0])
    }

    /// Adds a batch in one transaction, with the same result as adding them one by one.
    /// Returns their ids in order.
    ///
    /// # Errors
    /// As [`Memory::add`]; every item is validated before anything is written.
    pub fn add_many<S: AsRef<str>>(&self, items: &[(S, f64)]) -> Result<Vec<i64>> {
        for (content, importance) in items {
            validate_entry(content.as_ref(), *importance)?;
        }
        let now = self.store.now_micros();
        self.store
            .write_bulk(|tx| add_in(tx, self.agent_id, items, now))
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
        self.store.write_bulk(|tx| {
            let last: i64 = tx
                .prepare_cached(RESERVE)
                .and_then(|mut s| {
                    s.query_row(params![self.agent_id, entries.len() as i64], |r| r.get(0))
                })
                .sql(RESERVE)?;
            let first = last - entries.len() as i64 + 1;
            let mut insert = tx.prepare_cached(INSERT).sql(INSERT)?;
            for (i, e) in entries.iter().enumerate() {
                let id = first + i as i64;
                insert_entry(
                    &mut insert,
                    self.agent_id,
                    id,
                    &e.content,
                    e.importance,
                    e.created_at,
                )?;
            }
            Ok(entries.len() as u64)
        })
    }

    /// Runs the regular cleanup now, with the agent's `keep_fraction`. Returns the
    /// number of entries removed.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn cleanup(&self) -> Result<u64> {
        const KEEP: &str = "SELECT c.entries, a.keep_fraction
            FROM agents a JOIN memory_counters c ON c.agent_id = a.id WHERE a.id = ?1";
        self.store.write_bulk(|tx| {
            let (count, keep): (i64, f64) = tx
                .query_row(KEEP, [self.agent_id], |r| Ok((r.get(0)?, r.get(1)?)))
                .sql(KEEP)?;
            regular_cleanup(tx, self.agent_id, count, keep)
        })
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
    /// reaches before the epoch; [`Error::InvalidImportance`]; SQLite errors (a batch
    /// that fails removes nothing; the batches before it stay removed and the same
    /// prune run again finishes them).
    pub fn prune(&self, rule: Prune, dry_run: bool) -> Result<PruneReport> {
        super::prune::prune(&self.store, self.agent_id, rule, dry_run)
    }

    /// The original design's stats, from the trigger-kept counters and the two ends of
    /// the time index: the same cost at any number of entries.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn stats(&self) -> Result<MemoryStats> {
        // The `memory_stats` view is the one definition of these figures; only the age
        // needs the store's clock.
        const STATS: &str = "SELECT total_entries, total_memory_mb, avg_importance_score,
                memory_utilization_pct, oldest_created_at, newest_created_at
           FROM memory_stats WHERE agent_id = ?1";
        let now = self.store.now_micros();
        let hours = |micros: i64| micros as f64 / 3_600_000_000.0;
        self.store.read(|c| {
            c.prepare_cached(STATS)
                .and_then(|mut s| {
                    s.query_row([self.agent_id], |r| {
                        let oldest: Option<i64> = r.get(4)?;
                        let newest: Option<i64> = r.get(5)?;
                        let ends = oldest.zip(newest);
                        Ok(MemoryStats {
                            total_entries: r.get(0)?,
                            total_memory_mb: r.get(1)?,
                            avg_importance_score: ends.and(r.get(2)?),
                            memory_utilization_pct: ends.and(r.get(3)?),
                            oldest_entry_age_hours: ends.map(|(o, _)| hours(now - o)),
                            memory_span_hours: ends.map(|(o, n)| hours(n - o)),
                        })
                    })
                })
                .sql(STATS)
        })
    }

    /// Up to `limit` entries in `order`.
    ///
    /// # Errors
    /// SQLite errors.
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
    /// SQLite errors, or `each`'s.
    pub fn list_each(
        &self,
        order: ListOrder,
        limit: u64,
        mut each: impl FnMut(MemoryEntry) -> Result<()>,
    ) -> Result<()> {
        const BY_TIME: &str = "SELECT id, content, importance, created_at, size_bytes
            FROM memory_entries WHERE agent_id = ?1 ORDER BY created_at DESC, id DESC LIMIT ?2";
        const BY_IMPORTANCE: &str = "SELECT id, content, importance, created_at, size_bytes
            FROM memory_entries WHERE agent_id = ?1
            ORDER BY importance DESC, created_at DESC, id DESC LIMIT ?2";
        let sql = match order {
            ListOrder::Time => BY_TIME,
            ListOrder::Importance => BY_IMPORTANCE,
        };
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.store.read(|c| {
            let mut stmt = c.prepare_cached(sql).sql(sql)?;
            let mut rows = stmt.query(params![self.agent_id, limit]).sql(sql)?;
            while let Some(r) = rows.next().sql(sql)? {
                let entry = (|| {
                    Ok::<_, rusqlite::Error>(MemoryEntry {
                        id: r.get(0)?,
                        content: r.get(1)?,
                        importance: r.get(2)?,
                        created_at: r.get(3)?,
                        size_bytes: r.get(4)?,
                    })
                })()
                .sql(sql)?;
                each(entry)?;
            }
            Ok(())
        })
    }

    /// The compressed context: entries ranked by
    /// `importance_weight * importance + recency_weight * recency` (ties: newer first),
    /// taken greedily until the first that does not fit in `max_chars` characters, then
    /// emitted in chronological order, with a note of how many were left out.
    ///
    /// The ranking runs in SQL over a range of the importance order: any entry below
    /// importance `c` scores under `w_i * c + w_r`, so once the ranked entries above
    /// that bound settle the answer, nothing below `c` is read. `c` starts just under
    /// the top importance and is lowered until the answer is settled.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn context(&self, max_chars: u64) -> Result<CompressedContext> {
        self.store
            .snapshot(|c| compressed_context(c, self.agent_id, max_chars))
    }
}

/// One entry the context walk has taken.
struct Chosen {
    created_at: i64,
    id: i64,
    content: String,
}

fn compressed_context(c: &Connection, agent_id: i64, max_chars: u64) -> Result<CompressedContext> {
    const ENDS: &str = "SELECT c.entries, a.importance_weight, a.recency_weight,
            (SELECT max(importance) FROM memory_entries m WHERE m.agent_id = a.id),
            (SELECT min(created_at) FROM memory_entries m WHERE m.agent_id = a.id),
            (SELECT max(created_at) FROM memory_entries m WHERE m.agent_id = a.id)
       FROM agents a JOIN memory_counters c ON c.agent_id = a.id WHERE a.id = ?1";
    // Recency as the original: 1 - (newest - created) / (newest - oldest), 1.0 when the
    // span is 0; the same float operations as a Rust reference, so ranks agree exactly.
    // Content is read by reference and its characters counted in Rust (SQL's length()
    // stops at the first NUL, and content may hold NULs); only the taken ones are copied.
    const RANKED: &str = "SELECT created_at, id, content,
            ?2 * importance + ?3 * (CASE WHEN ?5 = 0 THEN 1.0
                 ELSE 1.0 - CAST(?4 - created_at AS REAL) / CAST(?5 AS REAL) END) AS score
       FROM memory_entries
      WHERE agent_id = ?1 AND importance >= ?6
      ORDER BY score DESC, created_at DESC, id DESC";

    let (total, wi, wr, top, oldest, newest): (
        u64,
        f64,
        f64,
        Option<f64>,
        Option<i64>,
        Option<i64>,
    ) = c
        .prepare_cached(ENDS)
        .and_then(|mut s| {
            s.query_row([agent_id], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                ))
            })
        })
        .sql(ENDS)?;
    let (Some(top), Some(oldest), Some(newest)) = (top, oldest, newest) else {
        return Ok(CompressedContext {
            text: String::new(),
            included: 0,
            truncated: 0,
        });
    };
    let span = newest - oldest;

    let mut stmt = c.prepare_cached(RANKED).sql(RANKED)?;
    let mut gap = 1.0 / 64.0;
    let chosen = loop {
        // Below `cutoff` nothing is read; a cutoff under 0 reads every entry.
        let cutoff = if gap >= 1.0 { -1.0 } else { top - gap };
        let everything = cutoff <= 0.0;
        // Any unread entry scores below this (a small margin absorbs rounding).
        let unread_bound = wi * cutoff + wr + 1e-9;
        let mut rows = stmt
            .query(params![agent_id, wi, wr, newest, span, cutoff])
            .sql(RANKED)?;
        let mut chosen: Vec<Chosen> = Vec::new();
        let mut used = 0u64;
        let mut settled = everything;
        while let Some(r) = rows.next().sql(RANKED)? {
            let score: f64 = r.get(3).sql(RANKED)?;
            if !everything && score <= unread_bound {
                // An unread entry might outrank this one: read more.
                settled = false;
                break;
            }
            let content = r.get_ref(2).and_then(|v| Ok(v.as_str()?)).sql(RANKED)?;
            let chars = content.chars().count() as u64;
            if used + chars > max_chars {
                settled = true;
                break;
            }
            used += chars;
            chosen.push(Chosen {
                created_at: r.get(0).sql(RANKED)?,
                id: r.get(1).sql(RANKED)?,
                content: content.to_owned(),
            });
        }
        if settled {
            break chosen;
        }
        gap *= 4.0;
    };

    let mut chosen = chosen;
    chosen.sort_by_key(|e| (e.created_at, e.id));
    let included = chosen.len() as u64;
    let mut lines: Vec<String> = chosen.into_iter().map(|e| e.content).collect();
    let truncated = total - included;
    if truncated > 0 {
        lines.push(format!(
            "[... {truncated} earlier messages truncated for length ...]"
        ));
    }
    Ok(CompressedContext {
        text: lines.join("\n"),
        included,
        truncated,
    })
}

/// Inserts one imported entry in the caller's transaction (see `store::transfer`):
/// with its id for an agent the import created, else with the next message number.
/// No cleanup runs; the next add applies the agent's limits.
pub(crate) fn restore_entry(
    tx: &Connection,
    agent_id: i64,
    id: Option<i64>,
    content: &str,
    importance: f64,
    created_at: i64,
) -> Result<()> {
    validate_entry(content, importance)?;
    let id = match id {
        Some(id) => id,
        None => tx
            .prepare_cached(RESERVE)
            .and_then(|mut s| s.query_row(params![agent_id, 1], |r| r.get(0)))
            .sql(RESERVE)?,
    };
    const INSERT_NEW: &str = "INSERT INTO memory_entries \
        (agent_id, importance, created_at, id, size_bytes, content) VALUES (?1, ?2, ?3, ?4, ?5, ?6)";
    tx.prepare_cached(INSERT_NEW)
        .and_then(|mut s| {
            s.execute(params![
                agent_id,
                importance,
                created_at,
                id,
                content.len() as i64,
                content
            ])
        })
        .sql(INSERT_NEW)?;
    Ok(())
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
