//! Recall on SQLite: one entry by id, full-text search over the FTS5 index
//! `memory_search` (BM25), a new importance, and forgetting for good. An agent's
//! entries are one rowid range of the index (`doc` = agent_id * 2^40 + id), so a search
//! of one agent never reads another's postings.

use rusqlite::{Connection, OptionalExtension, params};

use super::memory::{INSERT, entry_columns, entry_from_row, insert_entry, role_from};
use super::stmt::{SqlContext, exec, opt_row, rows};
use crate::error::{Error, Result};
use crate::store::memory::{Forget, Query};
use crate::store::{MemoryEntry, SearchHit, SearchOptions};

/// Entries that may wait for the search index before a write indexes them.
const UNINDEXED_MAX: i64 = 64;

/// Empties the search index's queues into it with four set statements (one FTS5
/// flush each way): deleted entries out (in rowid order), added entries in.
pub(super) fn sync_search(tx: &Connection) -> Result<()> {
    const OUT: &str = "INSERT INTO memory_search (memory_search, rowid, content)
        SELECT 'delete', doc, content FROM memory_deindex ORDER BY doc";
    const IN: &str = "INSERT INTO memory_search (rowid, content)
        SELECT m.doc, m.content FROM memory_unindexed u JOIN memory_entries m ON m.doc = u.doc
         ORDER BY u.doc";
    exec(tx, OUT, [])?;
    exec(tx, "DELETE FROM memory_deindex", [])?;
    exec(tx, IN, [])?;
    exec(tx, "DELETE FROM memory_unindexed", [])?;
    Ok(())
}

/// [`sync_search`] when an entry that was indexed was deleted, or when
/// [`UNINDEXED_MAX`] entries wait: the end of every write transaction asks.
pub(super) fn sync_search_if_due(tx: &Connection) -> Result<()> {
    const DUE: &str = "SELECT EXISTS (SELECT 1 FROM memory_deindex)
        OR (SELECT count(*) FROM memory_unindexed) >= ?1";
    if super::stmt::row(tx, DUE, [UNINDEXED_MAX], |r| r.get::<_, bool>(0))? {
        sync_search(tx)?;
    }
    Ok(())
}

/// Whether anything waits for the search index (a reader of the index then has it
/// synced first).
pub(super) fn search_pending(c: &Connection) -> Result<bool> {
    const PENDING: &str = "SELECT EXISTS (SELECT 1 FROM memory_unindexed)
        OR EXISTS (SELECT 1 FROM memory_deindex)";
    super::stmt::row(c, PENDING, [], |r| r.get(0))
}

/// The first and last `doc` agent `agent_id` can have.
fn docs(agent_id: i64) -> (i64, i64) {
    let lo = agent_id << 40;
    (lo, lo + (1 << 40) - 1)
}

/// `doc` of entry `id` of agent `agent_id`.
fn doc(agent_id: i64, id: i64) -> Option<i64> {
    (1..1 << 40).contains(&id).then(|| (agent_id << 40) + id)
}

pub(super) fn get(c: &Connection, agent_id: i64, id: i64) -> Result<Option<MemoryEntry>> {
    const SQL: &str = concat!(
        "SELECT ",
        entry_columns!(),
        " FROM memory_entries WHERE doc = ?1"
    );
    match doc(agent_id, id) {
        Some(d) => opt_row(c, SQL, [d], entry_from_row),
        None => Ok(None),
    }
}

/// The `limit` best matches of `query` (any term) among the agent's entries: (doc,
/// score), best first, ties by newer id. BM25 is computed for every match (FTS5 has
/// no early termination); only the rows returned are read from memory_entries.
pub(super) fn top_matches(
    c: &Connection,
    agent_id: i64,
    query: &Query,
    options: &SearchOptions,
) -> Result<Vec<(i64, f64)>> {
    const PLAIN: &str = "SELECT rowid, -bm25(memory_search) FROM memory_search
        WHERE memory_search MATCH ?1 AND rowid BETWEEN ?2 AND ?3
        ORDER BY bm25(memory_search), rowid DESC LIMIT ?4";
    const FILTERED: &str = "SELECT f.rowid, -bm25(memory_search) FROM memory_search f
          JOIN memory_entries m ON m.doc = f.rowid
        WHERE memory_search MATCH ?1 AND f.rowid BETWEEN ?2 AND ?3
          AND (?5 IS NULL OR m.role = ?5) AND m.created_at >= ?6
        ORDER BY bm25(memory_search), f.rowid DESC LIMIT ?4";
    let (lo, hi) = docs(agent_id);
    let fts = query.to_fts5(false);
    let limit = i64::try_from(options.limit).unwrap_or(i64::MAX);
    let pair = |r: &rusqlite::Row<'_>| Ok((r.get(0)?, r.get(1)?));
    if options.role.is_none() && options.since.is_none() {
        rows(c, PLAIN, params![fts, lo, hi, limit], pair)
    } else {
        let role = options.role.map(|r| r.as_str());
        let since = options.since.unwrap_or(i64::MIN);
        rows(c, FILTERED, params![fts, lo, hi, limit, role, since], pair)
    }
}

pub(super) fn search(
    c: &Connection,
    agent_id: i64,
    query: &Query,
    options: &SearchOptions,
) -> Result<Vec<SearchHit>> {
    // The snippet needs the match's cursor, so it is asked for each hit alone (a rowid
    // lookup in the index) rather than for every match before the ranking.
    const HIT: &str = "SELECT m.id, m.content, m.importance, m.created_at, m.size_bytes, m.role,
                snippet(memory_search, 0, '[', ']', '…', 12)
           FROM memory_search JOIN memory_entries m ON m.doc = memory_search.rowid
          WHERE memory_search MATCH ?1 AND memory_search.rowid = ?2";
    let top = top_matches(c, agent_id, query, options)?;
    let fts = query.to_fts5(false);
    let mut stmt = c.prepare_cached(HIT).sql(HIT)?;
    let mut hits = Vec::with_capacity(top.len());
    for (d, score) in top {
        let hit = stmt
            .query_row(params![fts, d], |r| {
                let e = entry_from_row(r)?;
                Ok(SearchHit {
                    id: e.id,
                    role: e.role,
                    content: e.content,
                    importance: e.importance,
                    created_at: e.created_at,
                    score,
                    snippet: r.get(6)?,
                })
            })
            .optional()
            .sql(HIT)?;
        hits.extend(hit);
    }
    Ok(hits)
}

/// The entry as it is after `importance` replaced its own: a delete and an insert
/// with the same id, role, text and time, so the triggers keep the counters and the
/// index right.
pub(super) fn rate(
    tx: &Connection,
    agent_id: i64,
    id: i64,
    importance: f64,
) -> Result<Option<MemoryEntry>> {
    const TAKE: &str =
        "DELETE FROM memory_entries WHERE doc = ?1 RETURNING content, created_at, role";
    let Some(d) = doc(agent_id, id) else {
        return Ok(None);
    };
    let Some((content, created_at, role)) = opt_row(tx, TAKE, [d], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, i64>(1)?,
            role_from(r, 2)?,
        ))
    })?
    else {
        return Ok(None);
    };
    let mut insert = tx.prepare_cached(INSERT).sql(INSERT)?;
    insert_entry(
        &mut insert,
        agent_id,
        id,
        (role, &content, importance),
        created_at,
    )?;
    Ok(Some(MemoryEntry {
        id,
        role,
        size_bytes: content.len() as u64,
        content,
        importance,
        created_at,
    }))
}

/// The entries `target` names, by id; an id the agent does not have is an error.
pub(super) fn doomed(
    c: &Connection,
    agent_id: i64,
    target: &Forget<'_>,
) -> Result<Vec<MemoryEntry>> {
    const MATCHING: &str = concat!(
        "SELECT ",
        entry_columns!(),
        " FROM memory_entries WHERE doc IN (SELECT rowid FROM memory_search
            WHERE memory_search MATCH ?1 AND rowid BETWEEN ?2 AND ?3) ORDER BY id"
    );
    match target {
        Forget::Matching(query) => {
            let (lo, hi) = docs(agent_id);
            rows(
                c,
                MATCHING,
                params![query.to_fts5(true), lo, hi],
                entry_from_row,
            )
        }
        Forget::Ids(ids) => {
            let mut ids = ids.to_vec();
            ids.sort_unstable();
            ids.dedup();
            let mut entries = Vec::with_capacity(ids.len());
            for id in ids {
                match get(c, agent_id, id)? {
                    Some(e) => entries.push(e),
                    None => {
                        return Err(Error::invalid(format!(
                            "the agent has no memory entry {id}; nothing was forgotten"
                        )));
                    }
                }
            }
            Ok(entries)
        }
    }
}

/// Deletes the entries `target` names, with FTS5's `secure-delete` on for these
/// deletes, so their terms are removed from the index's pages rather than masked by
/// delete markers. Runs inside `Sqlite::write_forgetting`.
pub(super) fn forget(
    tx: &Connection,
    agent_id: i64,
    target: &Forget<'_>,
) -> Result<Vec<MemoryEntry>> {
    const SECURE: &str =
        "INSERT INTO memory_search (memory_search, rank) VALUES ('secure-delete', ?1)";
    const DELETE: &str = "DELETE FROM memory_entries WHERE doc = ?1";
    sync_search(tx)?;
    let entries = doomed(tx, agent_id, target)?;
    if entries.is_empty() {
        return Ok(entries);
    }
    for e in &entries {
        if let Some(d) = doc(agent_id, e.id) {
            exec(tx, DELETE, [d])?;
        }
    }
    // The deleted entries leave the index now, with secure-delete on, so that no
    // queue or index page keeps their text.
    exec(tx, SECURE, [1])?;
    sync_search(tx)?;
    exec(tx, SECURE, [0])?;
    Ok(entries)
}
