//! Memory on PostgreSQL: the same operations as on SQLite, in the same order of
//! steps, over the primary key (agent, importance, created, id), the time index and
//! the GIN index of the generated `search` vector. An add locks the agent's counter
//! row first, so one agent's concurrent adds (on any host) run their cleanups one
//! after another, and other agents never wait.

use postgres::types::Type;
use postgres::{Client, Row};

use super::{Postgres, args, exec, get, opt_row, refuse_nul, row, rows};
use crate::error::{Error, Result};
use crate::store::engine::MemoryOps;
use crate::store::memory::search::Term;
use crate::store::memory::{
    Forget, PrunePlan, PruneStart, Query, context_text, regular_cleanup_deletes, validate_entry,
};
use crate::store::{
    CompressedContext, ContextEntry, ForgetReport, ListOrder, MemoryEntry, MemoryStats, NewEntry,
    Prune, Role, SearchHit, SearchOptions,
};

/// The $2-th lowest entry of agent $1 by (importance, created, id).
pub(super) const NTH_LOWEST: &str = "SELECT importance, created_at, id FROM memory_entries
    WHERE agent_id = $1 ORDER BY importance, created_at, id LIMIT 1 OFFSET $2 - 1";

/// The lowest entry of agent $1 at which the sizes so far add up to at least $2 bytes.
pub(super) const FREEING: &str = "SELECT importance, created_at, id FROM (
        SELECT importance, created_at, id,
               sum(size_bytes) OVER (ORDER BY importance, created_at, id
                                     ROWS UNBOUNDED PRECEDING) AS freed
          FROM memory_entries WHERE agent_id = $1) f
    WHERE freed >= $2 ORDER BY importance, created_at, id LIMIT 1";

const DELETE_LOWEST_N: &str = "DELETE FROM memory_entries WHERE agent_id = $1
    AND (importance, created_at, id) <= (SELECT importance, created_at, id FROM memory_entries
        WHERE agent_id = $1 ORDER BY importance, created_at, id LIMIT 1 OFFSET $2 - 1)";
const DELETE_LOWEST_BYTES: &str = "DELETE FROM memory_entries WHERE agent_id = $1
    AND (importance, created_at, id) <= (SELECT importance, created_at, id FROM (
        SELECT importance, created_at, id,
               sum(size_bytes) OVER (ORDER BY importance, created_at, id
                                     ROWS UNBOUNDED PRECEDING) AS freed
          FROM memory_entries WHERE agent_id = $1) f
        WHERE freed >= $2 ORDER BY importance, created_at, id LIMIT 1)";
const DELETE_OLDEST_N: &str = "DELETE FROM memory_entries WHERE agent_id = $1
    AND (created_at, id) <= (SELECT created_at, id FROM memory_entries WHERE agent_id = $1
                              ORDER BY created_at, id LIMIT 1 OFFSET $2 - 1)";

/// Reserves $2 message numbers (locking the agent's counter row) and reads the
/// counters and settings the adds start from.
const RESERVE: &str = "UPDATE memory_counters c SET message_count = c.message_count + $2
      FROM agents a WHERE c.agent_id = $1 AND a.id = c.agent_id
    RETURNING c.message_count, c.entries, c.bytes, a.cleanup_interval, a.keep_fraction,
              a.max_entries, a.max_memory_mb, a.low_water";

const COUNTERS: &str = "SELECT entries, bytes FROM memory_counters WHERE agent_id = $1";

/// An add of one or more entries in one autocommit statement (one round trip, as a
/// bare INSERT), when it takes no retention step: no message number of the batch is
/// a cleanup point, and the entries fit under both caps at the end of the batch (so
/// after each of them: the counts only grow), with the arithmetic of [`add_in`]
/// (float8, as in Rust). Otherwise it changes nothing and returns no row, and
/// [`add_in`] does the add in a transaction. Entries come as arrays, numbered in
/// order after the reserved range. The statement is the schema's function
/// `memory_add_fast` (schema-postgres-functions.sql), whose plan the server keeps.
const ADD_FAST: &str = "SELECT * FROM memory_add_fast($1, $2, $3, $4, $5, $6, $7, $8, $9)";

/// One statement for a whole batch of entries: arrays unnested in order.
const INSERT_MANY: &str = "INSERT INTO memory_entries
    (agent_id, importance, created_at, id, size_bytes, content, role)
    SELECT $1, i, t, n, octet_length(x), x, r
      FROM unnest($2::float8[], $3::int8[], $4::int8[], $5::text[], $6::text[]) AS u(i, t, n, x, r)";

const INSERT: &str = "INSERT INTO memory_entries
    (agent_id, importance, created_at, id, size_bytes, content, role)
    VALUES ($1, $2, $3, $4, octet_length($5), $5, $6)";

/// Entries restored per INSERT.
const RESTORE_CHUNK: usize = 1000;

/// The most message numbers an agent can have (as on SQLite, whose `doc` needs it).
const MAX_MESSAGE_ID: i64 = (1 << 40) - 1;

/// The columns [`entry_from_row`] decodes.
pub(super) const ENTRY_COLUMNS: &str = "id, content, importance, created_at, size_bytes, role";

/// A stored role; the schema's CHECK admits only these.
fn role_from(r: &Row, i: usize, sql: &str) -> Result<Role> {
    get::<&str>(r, i, sql)?.parse()
}

/// The one decoder of a [`MemoryEntry`], from [`ENTRY_COLUMNS`] at `at`.
pub(super) fn entry_from_row(r: &Row, sql: &str) -> Result<MemoryEntry> {
    Ok(MemoryEntry {
        id: get(r, 0, sql)?,
        content: get(r, 1, sql)?,
        importance: get(r, 2, sql)?,
        created_at: get(r, 3, sql)?,
        size_bytes: get::<i64>(r, 4, sql)?.max(0) as u64,
        role: role_from(r, 5, sql)?,
    })
}

fn check_id(id: i64) -> Result<()> {
    if (1..=MAX_MESSAGE_ID).contains(&id) {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "memory entry id {id} is outside 1..={MAX_MESSAGE_ID}, the ids one agent can have"
        )))
    }
}

fn counters(c: &mut Client, agent_id: i64) -> Result<(i64, i64)> {
    let r = row(c, COUNTERS, args![agent_id])?;
    Ok((get(&r, 0, COUNTERS)?, get(&r, 1, COUNTERS)?))
}

/// The regular cleanup over `count` existing entries; how many it deleted.
fn regular_cleanup(c: &mut Client, agent_id: i64, count: i64, keep_fraction: f64) -> Result<u64> {
    match regular_cleanup_deletes(count, keep_fraction) {
        0 => Ok(0),
        doomed => exec(c, DELETE_LOWEST_N, args![agent_id, doomed]),
    }
}

/// Adds `items` in the caller's transaction exactly as the SQLite engine does (see
/// there): the message numbers are reserved with one statement that also locks the
/// agent's counters; the entries between two retention steps go in with one INSERT
/// each run, so an add that deletes nothing is two statements.
fn add_in(
    c: &mut Client,
    agent_id: i64,
    items: &[(Role, &str, f64)],
    now: i64,
) -> Result<Vec<i64>> {
    let n = items.len() as i64;
    let r = row(c, RESERVE, args![agent_id, n])?;
    let last_message: i64 = get(&r, 0, RESERVE)?;
    let (mut entries, mut bytes): (i64, i64) = (get(&r, 1, RESERVE)?, get(&r, 2, RESERVE)?);
    let interval: i64 = get(&r, 3, RESERVE)?;
    let keep: f64 = get(&r, 4, RESERVE)?;
    let max_entries: i64 = get(&r, 5, RESERVE)?;
    let max_bytes = crate::store::agents::mb_to_bytes(get(&r, 6, RESERVE)?);
    let low_water: f64 = get(&r, 7, RESERVE)?;
    let first = last_message - n + 1;
    check_id(first)?;
    check_id(last_message)?;
    let mut ids = Vec::with_capacity(items.len());
    // Entries waiting to be inserted with one statement (no step between them reads
    // or deletes rows).
    let mut pending: Vec<(i64, (Role, &str, f64))> = Vec::new();
    let flush = |c: &mut Client, pending: &mut Vec<(i64, (Role, &str, f64))>| -> Result<()> {
        match pending.len() {
            0 => Ok(()),
            1 => {
                let (id, (role, content, importance)) = pending[0];
                exec(
                    c,
                    INSERT,
                    args![agent_id, importance, now, id, content, role.as_str()],
                )?;
                pending.clear();
                Ok(())
            }
            _ => {
                let importance: Vec<f64> = pending.iter().map(|p| p.1.2).collect();
                let created: Vec<i64> = vec![now; pending.len()];
                let id: Vec<i64> = pending.iter().map(|p| p.0).collect();
                let content: Vec<&str> = pending.iter().map(|p| p.1.1).collect();
                let role: Vec<&str> = pending.iter().map(|p| p.1.0.as_str()).collect();
                super::exec(
                    c,
                    INSERT_MANY,
                    &[
                        (&agent_id, postgres::types::Type::INT8),
                        (&importance, postgres::types::Type::FLOAT8_ARRAY),
                        (&created, postgres::types::Type::INT8_ARRAY),
                        (&id, postgres::types::Type::INT8_ARRAY),
                        (&content, postgres::types::Type::TEXT_ARRAY),
                        (&role, postgres::types::Type::TEXT_ARRAY),
                    ],
                )?;
                pending.clear();
                Ok(())
            }
        }
    };
    for (k, &item) in items.iter().enumerate() {
        let message = first + k as i64;
        if interval > 0 && message % interval == 0 && regular_cleanup_deletes(entries, keep) > 0 {
            flush(c, &mut pending)?;
            regular_cleanup(c, agent_id, entries, keep)?;
            (entries, bytes) = counters(c, agent_id)?;
        }
        pending.push((message, item));
        entries += 1;
        bytes += item.1.len() as i64;
        if entries > max_entries {
            flush(c, &mut pending)?;
            exec(c, DELETE_OLDEST_N, args![agent_id, entries - max_entries])?;
            (entries, bytes) = counters(c, agent_id)?;
        }
        if bytes as f64 > max_bytes {
            flush(c, &mut pending)?;
            let target = (low_water * max_bytes).floor() as i64;
            exec(c, DELETE_LOWEST_BYTES, args![agent_id, bytes - target])?;
            (entries, bytes) = counters(c, agent_id)?;
        }
        ids.push(message);
    }
    flush(c, &mut pending)?;
    Ok(ids)
}

/// A query's terms as a `tsquery` text for the 'simple' configuration: words are
/// cut where PostgreSQL's parser cuts them (at anything but letters and digits) and
/// lower-cased; a term of several words is a phrase (`<->`), a prefix ends in `:*`;
/// terms are joined with `|` (any) or `&` (all).
pub(super) fn tsquery(query: &Query, all: bool) -> String {
    let lexemes = |text: &str| -> Vec<String> {
        text.split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
            .map(|w| format!("'{}'", w.to_lowercase()))
            .collect()
    };
    let parts: Vec<String> = query
        .terms
        .iter()
        .filter_map(|t| {
            let (text, prefix) = match t {
                Term::Word(w) | Term::Phrase(w) => (w.as_str(), false),
                Term::Prefix(p) => (p.as_str(), true),
            };
            let mut words = lexemes(text);
            if prefix && let Some(last) = words.last_mut() {
                last.push_str(":*");
            }
            (!words.is_empty()).then(|| format!("({})", words.join(" <-> ")))
        })
        .collect();
    parts.join(if all { " & " } else { " | " })
}

/// The ranking of a query's matches, the one rule of search and of the relevant
/// context: the columns a statement selects come before it, then `rank`; `$1` is the
/// agent, `$2` the `tsquery` text, `$3` a role or NULL, `$4` the earliest creation
/// time, `$5` how many. Entries matching any term, best first, ties by newer id. The
/// rank is `ts_rank` (term frequency, as BM25 weighs it; PostgreSQL has no BM25), not
/// `ts_rank_cd`: cover density costs about ten times as much per match (2.8 against
/// 0.3 ms for 85 matches of a 16-word message), and every match is ranked before the
/// best are kept.
macro_rules! ranked_matches {
    () => {
        "ts_rank(search, q)::float8 AS rank
           FROM memory_entries, to_tsquery('simple', $2) q
          WHERE agent_id = $1 AND search @@ q
            AND ($3::text IS NULL OR role = $3) AND created_at >= $4
          ORDER BY rank DESC, id DESC LIMIT $5"
    };
}

/// The score of the context's walk without relevance, with the arithmetic of the
/// SQLite engine's walk: the importance and recency weights, the newest creation time
/// and the span of creation times are the parameters named.
macro_rules! walk_score {
    ($importance:literal, $recency:literal, $newest:literal, $span:literal) => {
        concat!(
            $importance,
            " * importance + ",
            $recency,
            " * (CASE WHEN ",
            $span,
            " = 0 THEN 1.0::float8 ELSE 1.0::float8 - (",
            $newest,
            " - created_at)::float8 / ",
            $span,
            "::float8 END)"
        )
    };
}

/// The `limit` best matches of `query` (any term): (id, rank), as
/// [`ranked_matches`] orders them.
fn top_matches(
    c: &mut Client,
    agent_id: i64,
    query: &Query,
    options: &SearchOptions,
) -> Result<Vec<(i64, f64)>> {
    const TOP: &str = concat!("SELECT id, ", ranked_matches!());
    let text = tsquery(query, false);
    if text.is_empty() {
        return Ok(Vec::new());
    }
    let role = options.role.map(|r| r.as_str());
    let since = options.since.unwrap_or(i64::MIN);
    let limit = i64::try_from(options.limit).unwrap_or(i64::MAX);
    rows(c, TOP, args![agent_id, text, role, since, limit])?
        .iter()
        .map(|r| Ok((get(r, 0, TOP)?, get(r, 1, TOP)?)))
        .collect()
}

/// The hits of a search, best first, with a snippet (matches between `[` and `]`).
fn search(
    c: &mut Client,
    agent_id: i64,
    query: &Query,
    options: &SearchOptions,
) -> Result<Vec<SearchHit>> {
    const HITS: &str = "SELECT m.id, m.content, m.importance, m.created_at, m.size_bytes, m.role,
            ts_headline('simple', m.content, to_tsquery('simple', $2),
                        'StartSel=[, StopSel=], MaxWords=12, MinWords=11, ShortWord=0, MaxFragments=1, FragmentDelimiter=…'),
            t.score
       FROM unnest($3::int8[], $4::float8[]) WITH ORDINALITY AS t(id, score, rank)
       JOIN memory_entries m ON m.agent_id = $1 AND m.id = t.id
      ORDER BY t.rank";
    let top = top_matches(c, agent_id, query, options)?;
    if top.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<i64> = top.iter().map(|t| t.0).collect();
    let scores: Vec<f64> = top.iter().map(|t| t.1).collect();
    let text = tsquery(query, false);
    let found = super::rows(
        c,
        HITS,
        &[
            (&agent_id, postgres::types::Type::INT8),
            (&text, postgres::types::Type::TEXT),
            (&ids, postgres::types::Type::INT8_ARRAY),
            (&scores, postgres::types::Type::FLOAT8_ARRAY),
        ],
    )?;
    found
        .iter()
        .map(|r| {
            let e = entry_from_row(r, HITS)?;
            Ok(SearchHit {
                id: e.id,
                role: e.role,
                content: e.content,
                importance: e.importance,
                created_at: e.created_at,
                score: get(r, 7, HITS)?,
                snippet: get(r, 6, HITS)?,
            })
        })
        .collect()
}

fn get_entry(c: &mut Client, agent_id: i64, id: i64) -> Result<Option<MemoryEntry>> {
    let sql = format!("SELECT {ENTRY_COLUMNS} FROM memory_entries WHERE agent_id = $1 AND id = $2");
    opt_row(c, &sql, args![agent_id, id])?
        .map(|r| entry_from_row(&r, &sql))
        .transpose()
}

/// The entries `target` names, by id; an id the agent does not have is an error.
pub(super) fn doomed(
    c: &mut Client,
    agent_id: i64,
    target: &Forget<'_>,
) -> Result<Vec<MemoryEntry>> {
    match target {
        Forget::Matching(query) => {
            let text = tsquery(query, true);
            if text.is_empty() {
                return Ok(Vec::new());
            }
            let sql = format!(
                "SELECT {ENTRY_COLUMNS} FROM memory_entries
                  WHERE agent_id = $1 AND search @@ to_tsquery('simple', $2) ORDER BY id"
            );
            rows(c, &sql, args![agent_id, text])?
                .iter()
                .map(|r| entry_from_row(r, &sql))
                .collect()
        }
        Forget::Ids(ids) => {
            let mut ids = ids.to_vec();
            ids.sort_unstable();
            ids.dedup();
            let sql = format!(
                "SELECT {ENTRY_COLUMNS} FROM memory_entries
                  WHERE agent_id = $1 AND id = ANY($2) ORDER BY id"
            );
            let found: Vec<MemoryEntry> = rows(c, &sql, args![agent_id, ids.clone()])?
                .iter()
                .map(|r| entry_from_row(r, &sql))
                .collect::<Result<_>>()?;
            if let Some(missing) = ids.iter().find(|id| !found.iter().any(|e| e.id == **id)) {
                return Err(Error::invalid(format!(
                    "the agent has no memory entry {missing}; nothing was forgotten"
                )));
            }
            Ok(found)
        }
    }
}

/// One entry the context walk has read.
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

/// The compressed context, from one snapshot, walked as the SQLite engine walks it:
/// entries above an importance cutoff (a range of the primary key) ranked by
/// importance and recency, the query's matches (scored whole, read by id) merged in,
/// packed greedily; the cutoff is lowered only when an unread entry could still
/// outrank what was read. So a context reads a few hundred rows, not every entry.
fn compressed_context(
    c: &mut Client,
    agent_id: i64,
    max_chars: u64,
    query: Option<&Query>,
) -> Result<CompressedContext> {
    const ENDS: &str = "SELECT c.entries, a.importance_weight, a.recency_weight,
            a.relevance_weight,
            (SELECT max(importance) FROM memory_entries m WHERE m.agent_id = a.id),
            (SELECT min(created_at) FROM memory_entries m WHERE m.agent_id = a.id),
            (SELECT max(created_at) FROM memory_entries m WHERE m.agent_id = a.id)
       FROM agents a JOIN memory_counters c ON c.agent_id = a.id WHERE a.id = $1";
    // The walk: entries above an importance cutoff ($6), best score first.
    const RANKED: &str = concat!(
        "SELECT created_at, id, content, ",
        walk_score!("$2", "$3", "$4", "$5"),
        " AS score, role FROM memory_entries
          WHERE agent_id = $1 AND importance >= $6
          ORDER BY score DESC, created_at DESC, id DESC"
    );
    // The query's best matches with their texts and walk scores, in the statement
    // that ranks them (as search ranks them, without its filters).
    const MATCHED: &str = concat!(
        "SELECT created_at, id, content, ",
        walk_score!("$6", "$7", "$8", "$9"),
        " AS score, role, ",
        ranked_matches!()
    );
    let r = row(c, ENDS, args![agent_id])?;
    let total: i64 = get(&r, 0, ENDS)?;
    let (wi, wr, wq): (f64, f64, f64) = (get(&r, 1, ENDS)?, get(&r, 2, ENDS)?, get(&r, 3, ENDS)?);
    let top: Option<f64> = get(&r, 4, ENDS)?;
    let (oldest, newest): (Option<i64>, Option<i64>) = (get(&r, 5, ENDS)?, get(&r, 6, ENDS)?);
    let (Some(top), Some(oldest), Some(newest)) = (top, oldest, newest) else {
        return Ok(context_text(Vec::new(), 0));
    };
    let span = newest - oldest;
    let decode = |r: &Row, sql: &str| -> Result<Scored> {
        Ok(Scored {
            created_at: get(r, 0, sql)?,
            id: get(r, 1, sql)?,
            content: get(r, 2, sql)?,
            score: get(r, 3, sql)?,
            role: role_from(r, 4, sql)?,
        })
    };
    // The query's best matches, scored whole (relevance: rank over the best one's).
    let mut matches: Vec<Scored> = match query {
        Some(q) if wq > 0.0 => {
            let text = tsquery(q, false);
            let limit = crate::store::CONTEXT_MATCHES as i64;
            let found = if text.is_empty() {
                Vec::new()
            } else {
                let none: Option<&str> = None;
                let args = args![agent_id, text, none, i64::MIN, limit, wi, wr, newest, span];
                rows(c, MATCHED, args)?
            };
            // Relevance: rank over the best one's.
            let best: f64 = match found.first() {
                Some(r) => get(r, 5, MATCHED)?,
                None => 0.0,
            };
            found
                .iter()
                .map(|r| {
                    let mut m = decode(r, MATCHED)?;
                    let rank: f64 = get(r, 5, MATCHED)?;
                    m.score += wq * if best > 0.0 { rank / best } else { 1.0 };
                    Ok(m)
                })
                .collect::<Result<Vec<_>>>()?
        }
        _ => Vec::new(),
    };
    matches.sort_by(|a, b| {
        (b.score, b.created_at, b.id)
            .partial_cmp(&(a.score, a.created_at, a.id))
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    let matched: std::collections::HashSet<i64> = matches.iter().map(|m| m.id).collect();
    let clone = |m: &Scored| Scored {
        content: m.content.clone(),
        ..*m
    };
    let mut gap = 1.0 / 64.0;
    let chosen = loop {
        let cutoff = if gap >= 1.0 { -1.0 } else { top - gap };
        let everything = cutoff <= 0.0;
        // Any unread entry scores below this (a small margin absorbs rounding).
        let unread_bound = wi * cutoff + wr + 1e-9;
        let mut walk = super::stream(c, RANKED, args![agent_id, wi, wr, newest, span, cutoff])?;
        use postgres::fallible_iterator::FallibleIterator;
        let mut chosen: Vec<Scored> = Vec::new();
        let mut pending = matches.iter().peekable();
        let mut used = 0u64;
        let mut take = |e: Scored, chosen: &mut Vec<Scored>| {
            let chars = e.content.chars().count() as u64;
            if used + chars > max_chars {
                return false;
            }
            used += chars;
            chosen.push(e);
            true
        };
        let mut settled = everything;
        let mut full = false;
        'walk: while let Some(r) = walk.next().map_err(|e| super::wrap(e, RANKED))? {
            let e = decode(&r, RANKED)?;
            if matched.contains(&e.id) {
                continue;
            }
            while let Some(m) = pending.next_if(|m| m.before(&e)) {
                if !take(clone(m), &mut chosen) {
                    full = true;
                    break 'walk;
                }
            }
            if !everything && e.score <= unread_bound {
                settled = false;
                break;
            }
            if !take(e, &mut chosen) {
                full = true;
                break;
            }
        }
        drop(walk);
        if !full && settled {
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
        total.max(0) as u64,
    ))
}

impl MemoryOps for Postgres {
    fn memory_add(
        &self,
        agent_id: i64,
        items: &[(Role, &str, f64)],
        now: i64,
        _bulk: bool,
    ) -> Result<Vec<i64>> {
        if items.is_empty() {
            return Ok(Vec::new()); // no transaction (and no id to reserve)
        }
        for (_, content, _) in items {
            refuse_nul("the entry's content", content)?;
        }
        let timeout = self.lock_timeout_ms();
        let importance: Vec<f64> = items.iter().map(|i| i.2).collect();
        let content: Vec<&str> = items.iter().map(|i| i.1).collect();
        let role: Vec<&str> = items.iter().map(|i| i.0.as_str()).collect();
        let n = items.len() as i64;
        let bytes: i64 = content.iter().map(|c| c.len() as i64).sum();
        let mut added: Vec<i64> = self.write_one(|c| {
            let found = super::rows(
                c,
                ADD_FAST,
                &[
                    (&agent_id, Type::INT8),
                    (&importance, Type::FLOAT8_ARRAY),
                    (&content, Type::TEXT_ARRAY),
                    (&role, Type::TEXT_ARRAY),
                    (&timeout, Type::TEXT),
                    (&n, Type::INT8),
                    (&bytes, Type::INT8),
                    (&MAX_MESSAGE_ID, Type::INT8),
                    (&now, Type::INT8),
                ],
            )?;
            found.iter().map(|r| get(r, 0, ADD_FAST)).collect()
        })?;
        if !added.is_empty() {
            added.sort_unstable();
            return Ok(added);
        }
        self.write(|c| add_in(c, agent_id, items, now))
    }

    fn memory_restore(&self, agent_id: i64, entries: &[NewEntry]) -> Result<u64> {
        if entries.is_empty() {
            return Ok(0);
        }
        for e in entries {
            refuse_nul("the entry's content", &e.content)?;
        }
        const BUMP: &str = "UPDATE memory_counters SET message_count = message_count + $2
             WHERE agent_id = $1 RETURNING message_count";
        self.write(|c| {
            let last: i64 = get(
                &row(c, BUMP, args![agent_id, entries.len() as i64])?,
                0,
                BUMP,
            )?;
            let first = last - entries.len() as i64 + 1;
            check_id(first)?;
            check_id(last)?;
            // In chunks of one INSERT each (the same statement an add uses).
            for (k, chunk) in entries.chunks(RESTORE_CHUNK).enumerate() {
                let start = first + (k * RESTORE_CHUNK) as i64;
                let importance: Vec<f64> = chunk.iter().map(|e| e.importance).collect();
                let created: Vec<i64> = chunk.iter().map(|e| e.created_at).collect();
                let ids: Vec<i64> = (0..chunk.len() as i64).map(|i| start + i).collect();
                let content: Vec<&str> = chunk.iter().map(|e| e.content.as_str()).collect();
                let role: Vec<&str> = chunk.iter().map(|e| e.role.as_str()).collect();
                super::exec(
                    c,
                    INSERT_MANY,
                    &[
                        (&agent_id, postgres::types::Type::INT8),
                        (&importance, postgres::types::Type::FLOAT8_ARRAY),
                        (&created, postgres::types::Type::INT8_ARRAY),
                        (&ids, postgres::types::Type::INT8_ARRAY),
                        (&content, postgres::types::Type::TEXT_ARRAY),
                        (&role, postgres::types::Type::TEXT_ARRAY),
                    ],
                )?;
            }
            Ok(entries.len() as u64)
        })
    }

    fn memory_cleanup(&self, agent_id: i64) -> Result<u64> {
        const KEEP: &str = "SELECT c.entries, a.keep_fraction
            FROM agents a JOIN memory_counters c ON c.agent_id = a.id WHERE a.id = $1
            FOR UPDATE OF c";
        self.write(|c| {
            let r = row(c, KEEP, args![agent_id])?;
            let (count, keep): (i64, f64) = (get(&r, 0, KEEP)?, get(&r, 1, KEEP)?);
            regular_cleanup(c, agent_id, count, keep)
        })
    }

    fn memory_stats(&self, agent_id: i64, now: i64) -> Result<MemoryStats> {
        const STATS: &str = "SELECT total_entries, total_memory_mb, avg_importance_score,
                memory_utilization_pct, oldest_created_at, newest_created_at
           FROM memory_stats WHERE agent_id = $1";
        let hours = |micros: i64| micros as f64 / 3_600_000_000.0;
        self.read_one(|c| {
            let r = row(c, STATS, args![agent_id])?;
            let oldest: Option<i64> = get(&r, 4, STATS)?;
            let newest: Option<i64> = get(&r, 5, STATS)?;
            let ends = oldest.zip(newest);
            let avg: Option<f64> = get(&r, 2, STATS)?;
            let util: Option<f64> = get(&r, 3, STATS)?;
            Ok(MemoryStats {
                total_entries: get::<i64>(&r, 0, STATS)?.max(0) as u64,
                total_memory_mb: get(&r, 1, STATS)?,
                avg_importance_score: ends.and(avg),
                memory_utilization_pct: ends.and(util),
                oldest_entry_age_hours: ends.map(|(o, _)| hours(now - o)),
                memory_span_hours: ends.map(|(o, n)| hours(n - o)),
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
        let order_by = match order {
            ListOrder::Time => "created_at DESC, id DESC",
            ListOrder::Importance => "importance DESC, created_at DESC, id DESC",
        };
        let sql = format!(
            "SELECT {ENTRY_COLUMNS} FROM memory_entries WHERE agent_id = $1 ORDER BY {order_by} LIMIT $2"
        );
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        // Streamed: rows are handed over as they arrive, one at a time.
        self.read(|c| {
            use postgres::fallible_iterator::FallibleIterator;
            let mut it = super::stream(c, &sql, args![agent_id, limit])?;
            while let Some(r) = it.next().map_err(|e| super::wrap(e, &sql))? {
                each(entry_from_row(&r, &sql)?)?;
            }
            Ok(())
        })
    }

    fn memory_context(
        &self,
        agent_id: i64,
        max_chars: u64,
        query: Option<&Query>,
    ) -> Result<CompressedContext> {
        self.read(|c| compressed_context(c, agent_id, max_chars, query))
    }

    fn memory_get(&self, agent_id: i64, id: i64) -> Result<Option<MemoryEntry>> {
        self.read_one(|c| get_entry(c, agent_id, id))
    }

    fn memory_search(
        &self,
        agent_id: i64,
        query: &Query,
        options: &SearchOptions,
    ) -> Result<Vec<SearchHit>> {
        // Two statements, each its own snapshot: the best ids, then their rows (an
        // entry deleted in between is left out).
        self.read_one(|c| search(c, agent_id, query, options))
    }

    fn memory_rate(&self, agent_id: i64, id: i64, importance: f64) -> Result<Option<MemoryEntry>> {
        // Entries are immutable (a trigger refuses updates, as on SQLite): a delete and
        // an insert with the same id, role, text and time keep the counters right.
        const TAKE: &str = "DELETE FROM memory_entries WHERE agent_id = $1 AND id = $2
            RETURNING content, created_at, role";
        self.write(|c| {
            let Some(r) = opt_row(c, TAKE, args![agent_id, id])? else {
                return Ok(None);
            };
            let content: String = get(&r, 0, TAKE)?;
            let created_at: i64 = get(&r, 1, TAKE)?;
            let role = role_from(&r, 2, TAKE)?;
            exec(
                c,
                INSERT,
                args![
                    agent_id,
                    importance,
                    created_at,
                    id,
                    content.as_str(),
                    role.as_str()
                ],
            )?;
            Ok(Some(MemoryEntry {
                id,
                role,
                size_bytes: content.len() as u64,
                content,
                importance,
                created_at,
            }))
        })
    }

    fn memory_forget(
        &self,
        agent_id: i64,
        target: &Forget<'_>,
        dry_run: bool,
    ) -> Result<ForgetReport> {
        if dry_run {
            let entries = self.read(|c| doomed(c, agent_id, target))?;
            return Ok(ForgetReport {
                entries,
                dry_run,
                scrubbed: false,
            });
        }
        const DELETE: &str = "DELETE FROM memory_entries WHERE agent_id = $1 AND id = ANY($2)";
        let entries = self.write(|c| {
            let entries = doomed(c, agent_id, target)?;
            if !entries.is_empty() {
                let ids: Vec<i64> = entries.iter().map(|e| e.id).collect();
                exec(c, DELETE, args![agent_id, ids])?;
            }
            Ok(entries)
        })?;
        // PostgreSQL keeps a deleted row's bytes until VACUUM reclaims the page, and
        // in its WAL; agentstore cannot scrub them (see the README).
        Ok(ForgetReport {
            entries,
            dry_run,
            scrubbed: false,
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
        self.read(|c| super::prune::start(c, agent_id, rule, key, now, count))
    }

    fn prune_forget(&self, agent_id: i64) -> Result<()> {
        self.write(|c| super::prune::forget(c, agent_id))
    }

    fn prune_batch(
        &self,
        agent_id: i64,
        first: Option<&PrunePlan>,
        now: i64,
        rows: i64,
    ) -> Result<Option<(u64, u64, bool)>> {
        self.write(|c| super::prune::batch(c, agent_id, first, now, rows))
    }
}

/// Inserts one restored entry with `id`, in the caller's transaction.
pub(super) fn restore_entry(
    c: &mut Client,
    agent_id: i64,
    id: i64,
    entry: (Role, &str, f64),
    created_at: i64,
) -> Result<()> {
    validate_entry(entry.1, entry.2)?;
    refuse_nul("the entry's content", entry.1)?;
    check_id(id)?;
    exec(
        c,
        INSERT,
        args![agent_id, entry.2, created_at, id, entry.1, entry.0.as_str()],
    )?;
    Ok(())
}
