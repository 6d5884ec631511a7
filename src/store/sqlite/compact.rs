//! Giving free pages back to the file system. A prune or purge frees pages inside the
//! file; SQLite reuses them, but the file does not shrink. Files created by this
//! version use `auto_vacuum = INCREMENTAL`, so `Store::compact` moves free pages off
//! the end of the file in short write transactions while agents keep running; a full
//! `VACUUM` (which also turns incremental vacuum on for an older file) rewrites the
//! whole file and holds the write lock while it does.

use rusqlite::Connection;

use super::Sqlite;
use super::stmt::SqlContext;
use crate::error::Result;
use crate::store::{CompactReport, PageUse};

/// Pages an incremental step frees per write transaction: a few milliseconds of lock.
const PAGES_PER_STEP: i64 = 2048;

/// How the file's pages are used, from SQLite's pragmas.
pub(super) fn page_use(c: &Connection) -> Result<PageUse> {
    const SQL: &str = "SELECT (SELECT page_count FROM pragma_page_count),
                (SELECT freelist_count FROM pragma_freelist_count),
                (SELECT page_size FROM pragma_page_size)";
    c.query_row(SQL, [], |r| {
        Ok(PageUse {
            pages: r.get(0)?,
            free_pages: r.get(1)?,
            page_size: r.get(2)?,
        })
    })
    .sql(SQL)
}

impl Sqlite {
    /// How the file's pages are used now.
    ///
    /// # Errors
    /// SQLite errors.
    pub(super) fn pages(&self) -> Result<PageUse> {
        self.read(page_use)
    }

    /// Gives free pages back to the file system. Incremental (the default) works in
    /// short write transactions, so agents keep writing meanwhile; it needs a file
    /// created with incremental vacuum (every file this version creates). `full` runs
    /// `VACUUM`: it rewrites the file (needing as much free disk again), holds the
    /// write lock throughout, and turns incremental vacuum on for next time.
    ///
    /// # Errors
    /// SQLite errors; busy when another process holds the write lock past the busy
    /// timeout.
    pub(super) fn compact_file(&self, full: bool) -> Result<CompactReport> {
        let before = self.pages()?;
        let size_before = self.file_size();
        let mut incremental = self.read(auto_vacuum)? == 2;
        let mut note = None;
        if full {
            let _turn = self.write_turn();
            let conn = self.conn()?;
            // Takes effect with the VACUUM that follows.
            conn.execute_batch("PRAGMA auto_vacuum = INCREMENTAL; VACUUM")
                .sql("VACUUM")?;
            incremental = auto_vacuum(&conn)? == 2;
        } else if incremental {
            let mut free = before.free_pages;
            // Each step frees up to PAGES_PER_STEP pages; stop when none are left, or
            // when a step frees nothing (agents freeing pages as fast do not keep it
            // going forever).
            while free > 0 {
                let left = self.write(|tx| {
                    tx.execute_batch(&format!("PRAGMA incremental_vacuum({PAGES_PER_STEP})"))
                        .sql("PRAGMA incremental_vacuum")?;
                    page_use(tx)
                })?;
                if left.free_pages >= free {
                    break;
                }
                free = left.free_pages;
            }
        } else if before.free_pages > 0 {
            note = Some(
                "this file was created without incremental vacuum, so its free pages can \
                 only come back with a full VACUUM: run `agentstore compact --full` \
                 (it blocks writers while it runs and turns incremental vacuum on)"
                    .to_string(),
            );
        }
        // In WAL mode the file shrinks when the WAL is copied back.
        self.checkpoint_now()?;
        let after = self.pages()?;
        Ok(CompactReport {
            mode: if full { "full" } else { "incremental" },
            before,
            after,
            bytes_reclaimed: size_before.saturating_sub(self.file_size()),
            incremental_vacuum: incremental,
            note,
        })
    }

    fn file_size(&self) -> u64 {
        std::fs::metadata(&self.path).map_or(0, |m| m.len())
    }
}

/// `PRAGMA auto_vacuum`: 0 none, 1 full, 2 incremental.
fn auto_vacuum(c: &Connection) -> Result<i64> {
    const SQL: &str = "SELECT auto_vacuum FROM pragma_auto_vacuum";
    c.query_row(SQL, [], |r| r.get(0)).sql(SQL)
}
