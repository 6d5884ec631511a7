//! Memory on SQLite. Everything that selects rows is SQL over the clustered primary
//! key (agent, importance, created, id) or the time index; counts and byte totals come
//! from trigger-kept `memory_counters`.

use rusqlite::{Connection, params};

use super::Sqlite;
use super::stmt::{SqlContext, each_row, exec, row};
use crate::error::Result;
use crate::store::engine::MemoryOps;
use crate::store::memory::{
    Forget, PrunePlan, PruneStart, Query, context_text, regular_cleanup_deletes, validate_entry,
};
use crate::store::{
    CompressedContext, ContextEntry, ForgetReport, ListOrder, MemoryEntry, MemoryStats, NewEntry,
    Prune, Role, SearchHit, SearchOptions,
};

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
pub(super) const INSERT: &str = "INSERT OR ROLLBACK INTO memory_entries
    (agent_id, importance, created_at, id, size_bytes, content, role)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";

/// The most message numbers an agent can have: `doc` is agent_id * 2^40 + id.
const MAX_MESSAGE_ID: i64 = (1 << 40) - 1;

/// Inserts one entry with `INSERT` (prepared once by the caller for a whole batch).
pub(super) fn insert_entry(
    insert: &mut rusqlite::CachedStatement<'_>,
    agent_id: i64,
    id: i64,
    entry: (Role, &str, f64),
    created_at: i64,
) -> Result<()> {
    let (role, content, importance) = entry;
    if !(1..=MAX_MESSAGE_ID).contains(&id) {
        return Err(crate::Error::invalid(format!(
            "memory entry id {id} is outside 1..={MAX_MESSAGE_ID}, the ids one agent can have"
        )));
    }
    let size = content.len() as i64;
    insert
        .execute(params![
            agent_id,
            importance,
            created_at,
            id,
            size,
            content,
            role.as_str()
        ])
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
    Ok(exec(tx, sql, params![agent_id, bound])? as u64)
}

fn counters(tx: &Connection, agent_id: i64) -> Result<(i64, i64)> {
    row(tx, COUNTERS, [agent_id], |r| Ok((r.get(0)?, r.get(1)?)))
}

/// Adds `items` in the caller's transaction, each exactly as the original added one:
/// bump the message counter and, on a multiple of cleanup_interval, clean up the
/// existing entries; insert; drop the oldest beyond max_entries; over the byte budget,
/// delete the least important down to low_water x budget. The message numbers are
/// reserved with one statement and the counters followed in Rust, re-read from the
/// trigger-kept columns after each delete, so an add that deletes nothing runs one
/// INSERT and nothing else.
fn add_in(
    tx: &Connection,
    agent_id: i64,
    items: &[(Role, &str, f64)],
    now: i64,
) -> Result<Vec<i64>> {
    let n = items.len() as i64;
    let (last_message, mut entries, mut bytes): (i64, i64, i64) =
        row(tx, RESERVE, params![agent_id, n], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?;
    let s = row(tx, SETTINGS, [agent_id], |r| {
        Ok(Retention {
            cleanup_interval: r.get(0)?,
            keep_fraction: r.get(1)?,
            max_entries: r.get(2)?,
            max_bytes: crate::store::agents::mb_to_bytes(r.get(3)?),
            low_water: r.get(4)?,
        })
    })?;
    let mut ids = Vec::with_capacity(items.len());
    let mut insert = tx.prepare_cached(INSERT).sql(INSERT)?;
    for (k, &item) in items.iter().enumerate() {
        let content = item.1;
        let message = last_message - n + 1 + k as i64;

        if s.cleanup_interval > 0
            && message % s.cleanup_interval == 0
            && regular_cleanup(tx, agent_id, entries, s.keep_fraction)? > 0
        {
            (entries, bytes) = counters(tx, agent_id)?;
        }

        insert_entry(&mut insert, agent_id, message, item, now)?;
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

/// The columns [`entry_from_row`] decodes.
macro_rules! entry_columns {
    () => {
        "id, content, importance, created_at, size_bytes, role"
    };
}
pub(super) use entry_columns;

/// A stored role; the schema's CHECK admits only these.
pub(super) fn role_from(r: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<Role> {
    let name = r.get_ref(i)?.as_str()?;
    name.parse().map_err(|e: crate::Error| {
        rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, Box::new(e))
    })
}

/// The one decoder of a [`MemoryEntry`], from [`entry_columns`].
pub(super) fn entry_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<MemoryEntry> {
    Ok(MemoryEntry {
        id: r.get(0)?,
        content: r.get(1)?,
        importance: r.get(2)?,
        created_at: r.get(3)?,
        size_bytes: r.get(4)?,
        role: role_from(r, 5)?,
    })
}

impl MemoryOps for Sqlite {
    fn memory_add(
        &self,
        agent_id: i64,
        items: &[(Role, &str, f64)],
        now: i64,
        bulk: bool,
    ) -> Result<Vec<i64>> {
        self.write_as(bulk, |tx| add_in(tx, agent_id, items, now))
    }

    fn memory_restore(&self, agent_id: i64, entries: &[NewEntry]) -> Result<u64> {
        self.write_bulk(|tx| {
            let last: i64 = row(tx, RESERVE, params![agent_id, entries.len() as i64], |r| {
                r.get(0)
            })?;
            let first = last - entries.len() as i64 + 1;
            let mut insert = tx.prepare_cached(INSERT).sql(INSERT)?;
            for (i, e) in entries.iter().enumerate() {
                let id = first + i as i64;
                insert_entry(
                    &mut insert,
                    agent_id,
                    id,
                    (e.role, &e.content, e.importance),
                    e.created_at,
                )?;
            }
            Ok(entries.len() as u64)
        })
    }

    fn memory_cleanup(&self, agent_id: i64) -> Result<u64> {
        const KEEP: &str = "SELECT c.entries, a.keep_fraction
            FROM agents a JOIN memory_counters c ON c.agent_id = a.id WHERE a.id = ?1";
        self.write_bulk(|tx| {
            let (count, keep): (i64, f64) =
                row(tx, KEEP, [agent_id], |r| Ok((r.get(0)?, r.get(1)?)))?;
            regular_cleanup(tx, agent_id, count, keep)
        })
    }

    fn memory_stats(&self, agent_id: i64, now: i64) -> Result<MemoryStats> {
        // The `memory_stats` view is the one definition of these figures; only the age
        // needs the store's clock.
        const STATS: &str = "SELECT total_entries, total_memory_mb, avg_importance_score,
                memory_utilization_pct, oldest_created_at, newest_created_at
           FROM memory_stats WHERE agent_id = ?1";
        let hours = |micros: i64| micros as f64 / 3_600_000_000.0;
        self.read(|c| {
            row(c, STATS, [agent_id], |r| {
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
    }

    fn memory_list(
        &self,
        agent_id: i64,
        order: ListOrder,
        limit: u64,
        each: &mut dyn FnMut(MemoryEntry) -> Result<()>,
    ) -> Result<()> {
        const BY_TIME: &str = concat!(
            "SELECT ",
            entry_columns!(),
            " FROM memory_entries WHERE agent_id = ?1 ORDER BY created_at DESC, id DESC LIMIT ?2"
        );
        const BY_IMPORTANCE: &str = concat!(
            "SELECT ",
            entry_columns!(),
            " FROM memory_entries WHERE agent_id = ?1
            ORDER BY importance DESC, created_at DESC, id DESC LIMIT ?2"
        );
        let sql = match order {
            ListOrder::Time => BY_TIME,
            ListOrder::Importance => BY_IMPORTANCE,
        };
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(|c| each_row(c, sql, params![agent_id, limit], entry_from_row, each))
    }

    fn memory_context(
        &self,
        agent_id: i64,
        max_chars: u64,
        query: Option<&Query>,
    ) -> Result<CompressedContext> {
        if query.is_some() {
            self.sync_search_for_read()?;
        }
        self.snapshot(|c| compressed_context(c, agent_id, max_chars, query))
    }

    fn memory_get(&self, agent_id: i64, id: i64) -> Result<Option<MemoryEntry>> {
        self.read(|c| super::recall::get(c, agent_id, id))
    }

    fn memory_search(
        &self,
        agent_id: i64,
        query: &Query,
        options: &SearchOptions,
    ) -> Result<Vec<SearchHit>> {
        self.sync_search_for_read()?;
        self.snapshot(|c| super::recall::search(c, agent_id, query, options))
    }

    fn memory_rate(&self, agent_id: i64, id: i64, importance: f64) -> Result<Option<MemoryEntry>> {
        self.write(|tx| super::recall::rate(tx, agent_id, id, importance))
    }

    fn memory_forget(
        &self,
        agent_id: i64,
        target: &Forget<'_>,
        dry_run: bool,
    ) -> Result<ForgetReport> {
        if dry_run {
            self.sync_search_for_read()?;
            let entries = self.snapshot(|c| super::recall::doomed(c, agent_id, target))?;
            return Ok(ForgetReport {
                entries,
                dry_run,
                scrubbed: false,
            });
        }
        let (entries, scrubbed) =
            self.write_forgetting(|tx| super::recall::forget(tx, agent_id, target))?;
        Ok(ForgetReport {
            entries,
            dry_run,
            scrubbed,
        })
    }

    fn prune_start(
        &self,
        agent_id: i64,
        rule: Prune,
        key: &str,
        now: i64,
        count: bool,
    ) -> Result<PruneStart> {
        self.snapshot(|c| super::prune::start(c, agent_id, rule, key, now, count))
    }

    fn prune_forget(&self, agent_id: i64) -> Result<()> {
        self.write(|tx| super::prune::forget(tx, agent_id))
    }

    fn prune_batch(
        &self,
        agent_id: i64,
        first: Option<&PrunePlan>,
        now: i64,
        rows: i64,
    ) -> Result<Option<(u64, u64, bool)>> {
        self.write_bulk(|tx| super::prune::batch(tx, agent_id, first, now, rows))
    }
}

/// One entry the context walk has read: its score and what the prompt needs.
struct Scored {
    score: f64,
    created_at: i64,
    id: i64,
    role: Role,
    content: String,
}

impl Scored {
    /// Whether this entry comes before `other` in the walk: higher score, then newer.
    fn before(&self, other: &Scored) -> bool {
        (self.score, self.created_at, self.id) > (other.score, other.created_at, other.id)
    }
}

/// The query's best matches with their whole score, best first: relevance is the
/// BM25 score over the best one's (0..1].
fn scored_matches(
    c: &Connection,
    agent_id: i64,
    query: &Query,
    weights: (f64, f64, f64),
    newest: i64,
    span: i64,
) -> Result<Vec<Scored>> {
    const ENTRY: &str = "SELECT importance, created_at, id, role, content FROM memory_entries
        WHERE doc = ?1";
    let (wi, wr, wq) = weights;
    let options = SearchOptions::default().with_limit(crate::store::CONTEXT_MATCHES);
    let top = super::recall::top_matches(c, agent_id, query, &options)?;
    let Some(best) = top.first().map(|t| t.1) else {
        return Ok(Vec::new());
    };
    let mut stmt = c.prepare_cached(ENTRY).sql(ENTRY)?;
    let mut out = Vec::with_capacity(top.len());
    for (doc, bm25) in top {
        let relevance = if best > 0.0 { bm25 / best } else { 1.0 };
        let m = stmt
            .query_row([doc], |r| {
                let importance: f64 = r.get(0)?;
                let created_at: i64 = r.get(1)?;
                Ok(Scored {
                    score: wi * importance
                        + wr * recency(newest, span, created_at)
                        + wq * relevance,
                    created_at,
                    id: r.get(2)?,
                    role: role_from(r, 3)?,
                    content: r.get(4)?,
                })
            })
            .sql(ENTRY)?;
        out.push(m);
    }
    out.sort_by(|a, b| {
        (b.score, b.created_at, b.id)
            .partial_cmp(&(a.score, a.created_at, a.id))
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    Ok(out)
}

/// The original's recency: 1 - (newest - created) / (newest - oldest), 1.0 when the
/// span is 0. The same float operations as the SQL of the walk.
fn recency(newest: i64, span: i64, created_at: i64) -> f64 {
    if span == 0 {
        1.0
    } else {
        1.0 - (newest - created_at) as f64 / span as f64
    }
}

fn compressed_context(
    c: &Connection,
    agent_id: i64,
    max_chars: u64,
    query: Option<&Query>,
) -> Result<CompressedContext> {
    const ENDS: &str = "SELECT c.entries, a.importance_weight, a.recency_weight,
            a.relevance_weight,
            (SELECT max(importance) FROM memory_entries m WHERE m.agent_id = a.id),
            (SELECT min(created_at) FROM memory_entries m WHERE m.agent_id = a.id),
            (SELECT max(created_at) FROM memory_entries m WHERE m.agent_id = a.id)
       FROM agents a JOIN memory_counters c ON c.agent_id = a.id WHERE a.id = ?1";
    // Recency as `recency()`, so ranks agree exactly with a Rust reference. Content is
    // read by reference and its characters counted in Rust (SQL's length() stops at
    // the first NUL, and content may hold NULs); only the taken ones are copied.
    const RANKED: &str = "SELECT created_at, id, content,
            ?2 * importance + ?3 * (CASE WHEN ?5 = 0 THEN 1.0
                 ELSE 1.0 - CAST(?4 - created_at AS REAL) / CAST(?5 AS REAL) END) AS score,
            role
       FROM memory_entries
      WHERE agent_id = ?1 AND importance >= ?6
      ORDER BY score DESC, created_at DESC, id DESC";

    let (total, wi, wr, wq, top, oldest, newest): (
        u64,
        f64,
        f64,
        f64,
        Option<f64>,
        Option<i64>,
        Option<i64>,
    ) = row(c, ENDS, [agent_id], |r| {
        Ok((
            r.get(0)?,
            r.get(1)?,
            r.get(2)?,
            r.get(3)?,
            r.get(4)?,
            r.get(5)?,
            r.get(6)?,
        ))
    })?;
    let (Some(top), Some(oldest), Some(newest)) = (top, oldest, newest) else {
        return Ok(context_text(Vec::new(), 0));
    };
    let span = newest - oldest;
    // The relevant entries, scored whole; the walk below skips them (their score in
    // it lacks the relevance) and merges them in.
    let matches = match query {
        Some(q) if wq > 0.0 => scored_matches(c, agent_id, q, (wi, wr, wq), newest, span)?,
        _ => Vec::new(),
    };
    let matched: std::collections::HashSet<i64> = matches.iter().map(|m| m.id).collect();
    // No unread entry can score more than the walk's bound plus the largest relevance
    // term: matches are all read up front.
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
        let mut chosen: Vec<Scored> = Vec::new();
        let mut pending = matches.iter().peekable();
        let mut used = 0u64;
        // Takes `e` if it fits; false when it does not (the packing stops there).
        let mut take = |e: Scored, chosen: &mut Vec<Scored>| {
            let chars = e.content.chars().count() as u64;
            if used + chars > max_chars {
                return false;
            }
            used += chars;
            chosen.push(e);
            true
        };
        let clone = |m: &Scored| Scored {
            content: m.content.clone(),
            ..*m
        };
        let mut settled = everything;
        let mut full = false;
        'walk: while let Some(r) = rows.next().sql(RANKED)? {
            let id: i64 = r.get(1).sql(RANKED)?;
            if matched.contains(&id) {
                continue;
            }
            let score: f64 = r.get(3).sql(RANKED)?;
            let created_at: i64 = r.get(0).sql(RANKED)?;
            let probe = Scored {
                score,
                created_at,
                id,
                role: Role::Note,
                content: String::new(),
            };
            while let Some(m) = pending.next_if(|m| m.before(&probe)) {
                if !take(clone(m), &mut chosen) {
                    full = true;
                    break 'walk;
                }
            }
            if !everything && score <= unread_bound {
                // An unread entry might outrank this one: read more.
                settled = false;
                break;
            }
            let content = r.get_ref(2).and_then(|v| Ok(v.as_str()?)).sql(RANKED)?;
            let entry = Scored {
                content: content.to_owned(),
                role: role_from(r, 4).sql(RANKED)?,
                ..probe
            };
            if !take(entry, &mut chosen) {
                full = true;
                break;
            }
        }
        if !full && settled {
            // The walk is done: the matches left score below everything it read.
            for m in pending {
                if !take(clone(m), &mut chosen) {
                    break;
                }
            }
        }
        if full || settled {
            break chosen;
        }
        gap *= 4.0;
    };

    let mut chosen = chosen;
    chosen.sort_by_key(|e| (e.created_at, e.id));
    Ok(context_text(
        chosen
            .into_iter()
            .map(|e| ContextEntry {
                id: e.id,
                role: e.role,
                content: e.content,
            })
            .collect(),
        total,
    ))
}

/// Inserts one imported entry in the caller's transaction (see `store::transfer`):
/// with its id for an agent the import created, else with the next message number.
/// No cleanup runs; the next add applies the agent's limits.
pub(super) fn restore_entry(
    tx: &Connection,
    agent_id: i64,
    id: Option<i64>,
    entry: (Role, &str, f64),
    created_at: i64,
) -> Result<()> {
    validate_entry(entry.1, entry.2)?;
    let id = match id {
        Some(id) => id,
        None => row(tx, RESERVE, params![agent_id, 1], |r| r.get(0))?,
    };
    // A plain INSERT (not OR ROLLBACK): a duplicate id is a line error of the import.
    const INSERT_NEW: &str = "INSERT INTO memory_entries \
        (agent_id, importance, created_at, id, size_bytes, content, role) \
        VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";
    let mut insert = tx.prepare_cached(INSERT_NEW).sql(INSERT_NEW)?;
    insert_entry(&mut insert, agent_id, id, entry, created_at)
}
