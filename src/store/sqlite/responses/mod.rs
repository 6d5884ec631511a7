//! The response cache on SQLite: `response_cache` (one row per agent and message,
//! found by the message's hash), its word index `response_words` (postings added in
//! batches after the store; rows not yet indexed are read directly), purges and
//! listings. The lookups are in `fuzzy`, the log in `log`.

mod fuzzy;
mod log;

use rusqlite::{Connection, params};

use super::Sqlite;
use super::stmt::{SqlContext, exec, row, rows};
use crate::error::Result;
use crate::store::engine::ResponseOps;
use crate::store::responses::{TuneRule, check_size, message_hash, older_than};
use crate::store::words::word_set;
use crate::store::{
    CacheMatch, CachedResponse, FuzzyOptions, LoggedResponse, Lookup, ResponseOrder, ResponsePurge,
    ResponseTimeStats, Tuning,
};

pub(super) use log::insert_log;

/// Rows of one agent that may wait for the word index before a store indexes them
/// itself (a fuzzy lookup reads the waiting rows one by one).
const UNINDEXED_MAX: i64 = 128;

/// Rows indexed per transaction by `index_pending`.
const INDEX_BATCH: i64 = 2000;

/// The one decoder of a [`CachedResponse`], from `id, message, response, hits,
/// created_at, last_used_at`.
pub(in crate::store::sqlite) fn response_from_row(
    r: &rusqlite::Row<'_>,
) -> rusqlite::Result<CachedResponse> {
    Ok(CachedResponse {
        id: r.get(0)?,
        message: r.get(1)?,
        response: r.get(2)?,
        hits: r.get(3)?,
        created_at: r.get(4)?,
        last_used_at: r.get(5)?,
    })
}

impl ResponseOps for Sqlite {
    fn response_exact(&self, agent_id: i64, message: &str) -> Result<Option<CacheMatch>> {
        self.read(|c| fuzzy::exact(c, agent_id, message))
    }

    fn response_try_exact(
        &self,
        agent_id: i64,
        message: &str,
    ) -> Option<Result<Option<CacheMatch>>> {
        self.try_read(|c| fuzzy::exact(c, agent_id, message))
    }

    fn response_lookup(
        &self,
        agent_id: i64,
        message: &str,
        options: FuzzyOptions,
        fuzzy_only: bool,
    ) -> Result<Lookup> {
        self.snapshot(|c| fuzzy::lookup(c, agent_id, message, options, fuzzy_only))
    }

    fn response_put(
        &self,
        agent_id: i64,
        message: &str,
        response: &str,
        now: i64,
        lease: Option<(&[u8; 32], &str)>,
    ) -> Result<i64> {
        let (id, waiting_rows) = self.write(|tx| {
            let id = put_on(tx, agent_id, message, response, now)?;
            if let Some((key, holder)) = lease {
                crate::store::sqlite::lease::release_on(tx, key, holder)?;
            }
            Ok((id, waiting(tx, agent_id)?))
        })?;
        if waiting_rows >= UNINDEXED_MAX {
            // A transaction of its own that writes many pages: committed without the
            // inline checkpoint (see Sqlite::write_bulk).
            self.write_bulk(|tx| index_agent(tx, agent_id))?;
        }
        Ok(id)
    }

    fn response_put_many(&self, agent_id: i64, pairs: &[(&str, &str)], now: i64) -> Result<()> {
        self.write_bulk(|tx| {
            for (m, r) in pairs {
                put_on(tx, agent_id, m, r, now)?;
            }
            index_agent(tx, agent_id)
        })
    }

    fn response_index_pending(&self) -> Result<u64> {
        const PENDING: &str = "SELECT id, agent_id, message FROM response_cache \
             INDEXED BY response_cache_unindexed WHERE indexed = 0 ORDER BY id LIMIT ?1";
        let mut total = 0;
        loop {
            let n = self.write_bulk(|tx| {
                let pending: Vec<(i64, i64, String)> = rows(tx, PENDING, [INDEX_BATCH], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })?;
                for (id, agent_id, message) in &pending {
                    index_row(tx, *agent_id, *id, message)?;
                }
                Ok(pending.len() as i64)
            })?;
            total += n as u64;
            if n < INDEX_BATCH {
                return Ok(total);
            }
        }
    }

    fn response_record(
        &self,
        agent_id: i64,
        hits: &[(i64, u64, i64)],
        rows: &[LoggedResponse],
        keep: u64,
    ) -> Result<()> {
        self.write_bulk(|tx| {
            log::hits_on(tx, hits)?;
            log::log_on(tx, agent_id, rows, keep)
        })
    }

    fn response_time_stats(&self, agent_id: i64) -> Result<ResponseTimeStats> {
        self.snapshot(|c| log::time_stats_on(c, agent_id))
    }

    fn response_tune(&self, agent_id: i64, rule: TuneRule) -> Result<Tuning> {
        self.write(|tx| log::tune_on(tx, agent_id, rule))
    }

    fn response_entries(&self, agent_id: i64) -> Result<u64> {
        self.read(|c| log::entries_on(c, agent_id))
    }

    fn response_purge_count(&self, agent_id: i64, rule: ResponsePurge, now: i64) -> Result<u64> {
        const COUNT_ALL: &str = "SELECT count(*) FROM response_cache WHERE agent_id = ?1";
        const COUNT_OLDER: &str =
            "SELECT count(*) FROM response_cache WHERE agent_id = ?1 AND created_at < ?2";
        let n: i64 = self.read(|c| match rule {
            ResponsePurge::All => row(c, COUNT_ALL, [agent_id], |r| r.get(0)),
            ResponsePurge::OlderThan(d) => {
                row(c, COUNT_OLDER, params![agent_id, older_than(d, now)], |r| {
                    r.get(0)
                })
            }
            ResponsePurge::Keep(k) => {
                let total: i64 = row(c, COUNT_ALL, [agent_id], |r| r.get(0))?;
                Ok((total - i64::try_from(k).unwrap_or(i64::MAX)).max(0))
            }
        })?;
        Ok(n as u64)
    }

    fn response_purge_batch(
        &self,
        agent_id: i64,
        rule: ResponsePurge,
        now: i64,
        rows_: i64,
    ) -> Result<u64> {
        const OLDER: &str = "SELECT id, message FROM response_cache \
             WHERE agent_id = ?1 AND created_at < ?2 ORDER BY id LIMIT ?3";
        const BEYOND: &str = "SELECT id, message FROM response_cache WHERE agent_id = ?1 \
             ORDER BY last_used_at DESC, id DESC LIMIT ?3 OFFSET ?2";
        let (sql, second) = match rule {
            ResponsePurge::OlderThan(d) => (OLDER, older_than(d, now)),
            ResponsePurge::Keep(k) => (BEYOND, i64::try_from(k).unwrap_or(i64::MAX)),
            ResponsePurge::All => (OLDER, i64::MAX),
        };
        self.write_bulk(|tx| {
            let victims: Vec<(i64, String)> =
                rows(tx, sql, params![agent_id, second, rows_], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })?;
            delete_rows(tx, agent_id, &victims)?;
            Ok(victims.len() as u64)
        })
    }

    fn response_list(
        &self,
        agent_id: i64,
        order: ResponseOrder,
        limit: u64,
    ) -> Result<Vec<CachedResponse>> {
        const RECENT: &str = "SELECT id, message, response, hits, created_at, last_used_at \
             FROM response_cache WHERE agent_id = ?1 \
             ORDER BY last_used_at DESC, id DESC LIMIT ?2";
        const HITS: &str = "SELECT id, message, response, hits, created_at, last_used_at \
             FROM response_cache WHERE agent_id = ?1 \
             ORDER BY hits DESC, last_used_at DESC, id DESC LIMIT ?2";
        let sql = match order {
            ResponseOrder::Recent => RECENT,
            ResponseOrder::Hits => HITS,
        };
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(|c| rows(c, sql, params![agent_id, limit], response_from_row))
    }

    fn response_target(&self, agent_id: i64) -> Result<f64> {
        self.read(|c| log::target_on(c, agent_id))
    }
}

fn put_on(tx: &Connection, agent_id: i64, message: &str, response: &str, now: i64) -> Result<i64> {
    const UPSERT: &str = "INSERT INTO response_cache \
         (agent_id, message_hash, message, response, word_count, created_at, last_used_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6) \
         ON CONFLICT (agent_id, message_hash) DO UPDATE SET \
         response = excluded.response, last_used_at = excluded.last_used_at \
         RETURNING id";
    let words = word_set(message).len();
    let hash = message_hash(message);
    row(
        tx,
        UPSERT,
        params![agent_id, &hash[..], message, response, words as i64, now],
        |r| r.get(0),
    )
}

/// Rows of an agent waiting for the word index (counted up to the limit).
fn waiting(tx: &Connection, agent_id: i64) -> Result<i64> {
    const WAITING: &str = "SELECT count(*) FROM (SELECT 1 FROM response_cache \
         INDEXED BY response_cache_unindexed WHERE agent_id = ?1 AND indexed = 0 LIMIT ?2)";
    row(tx, WAITING, params![agent_id, UNINDEXED_MAX], |r| r.get(0))
}

/// Indexes every waiting row of an agent.
fn index_agent(tx: &Connection, agent_id: i64) -> Result<()> {
    const AGENT_PENDING: &str = "SELECT id, message FROM response_cache INDEXED BY response_cache_unindexed \
     WHERE agent_id = ?1 AND indexed = 0";
    let pending: Vec<(i64, String)> = rows(tx, AGENT_PENDING, [agent_id], |r| {
        Ok((r.get(0)?, r.get(1)?))
    })?;
    for (id, message) in &pending {
        index_row(tx, agent_id, *id, message)?;
    }
    Ok(())
}

/// Adds one row's postings to the word index and marks it indexed.
fn index_row(tx: &Connection, agent_id: i64, id: i64, message: &str) -> Result<()> {
    const POSTING: &str = "INSERT OR IGNORE INTO response_words \
         (agent_id, word, word_count, response_id) VALUES (?1, ?2, ?3, ?4)";
    const MARK: &str = "UPDATE response_cache SET indexed = 1 WHERE id = ?1";
    let words = word_set(message);
    let mut posting = tx.prepare_cached(POSTING).sql(POSTING)?;
    for w in &words {
        posting
            .execute(params![agent_id, w, words.len() as i64, id])
            .sql(POSTING)?;
    }
    exec(tx, MARK, [id])?;
    Ok(())
}

/// Deletes cached rows and their postings (found from the message's words, by primary
/// key).
pub(in crate::store::sqlite) fn delete_rows(
    tx: &Connection,
    agent_id: i64,
    victims: &[(i64, String)],
) -> Result<()> {
    const POSTING: &str = "DELETE FROM response_words \
         WHERE agent_id = ?1 AND word = ?2 AND word_count = ?3 AND response_id = ?4";
    const ROW: &str = "DELETE FROM response_cache WHERE id = ?1";
    let mut posting = tx.prepare_cached(POSTING).sql(POSTING)?;
    let mut row = tx.prepare_cached(ROW).sql(ROW)?;
    for (id, message) in victims {
        let words = word_set(message);
        for w in &words {
            posting
                .execute(params![agent_id, w, words.len() as i64, id])
                .sql(POSTING)?;
        }
        row.execute([id]).sql(ROW)?;
    }
    Ok(())
}

/// Stores one imported response in the caller's transaction (see `store::transfer`);
/// a message the agent already has keeps its own response. It reaches the word index
/// with the next `index_pending`. Returns whether it was added.
pub(super) fn restore_response(
    tx: &Connection,
    agent_id: i64,
    r: &crate::store::transfer::RestoredResponse<'_>,
) -> Result<bool> {
    check_size("message", r.message)?;
    check_size("response", r.response)?;
    let hits = i64::try_from(r.hits)
        .map_err(|_| crate::Error::invalid(format!("hits {} is too large", r.hits)))?;
    const INSERT: &str = "INSERT INTO response_cache (agent_id, message_hash, message, response, \
         word_count, created_at, last_used_at, hits) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) \
         ON CONFLICT (agent_id, message_hash) DO NOTHING";
    let words = word_set(r.message).len() as i64;
    let hash = message_hash(r.message);
    let n = exec(
        tx,
        INSERT,
        params![
            agent_id,
            &hash[..],
            r.message,
            r.response,
            words,
            r.created_at,
            r.last_used_at,
            hits
        ],
    )?;
    Ok(n == 1)
}
