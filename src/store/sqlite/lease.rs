//! Leases on SQLite: one upsert that takes a free or expired lease, a renewal and a
//! release, each its own short write transaction.

use rusqlite::{Connection, params};

use super::Sqlite;
use super::stmt::{exec, opt_row};
use crate::error::Result;
use crate::store::engine::LeaseOps;

/// Expired leases removed, at most, by each take (holders that died leave theirs).
const EXPIRE_BATCH: i64 = 8;

/// Gives up `holder`'s lease on `key` in the transaction `tx` (a release, or the store
/// of the result the lease was held for).
pub(super) fn release_on(tx: &Connection, key: &[u8; 32], holder: &str) -> Result<()> {
    const RELEASE: &str = "DELETE FROM leases WHERE key = ?1 AND holder = ?2";
    exec(tx, RELEASE, params![&key[..], holder])?;
    Ok(())
}

impl LeaseOps for Sqlite {
    fn lease_take(
        &self,
        key: &[u8; 32],
        holder: &str,
        now: i64,
        until: i64,
    ) -> Result<Option<i64>> {
        const TAKE: &str = "INSERT INTO leases (key, holder, expires_at) VALUES (?1, ?2, ?3)
            ON CONFLICT (key) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
             WHERE leases.expires_at <= ?4 OR leases.holder = excluded.holder
            RETURNING holder";
        const HELD: &str = "SELECT expires_at FROM leases WHERE key = ?1";
        const EXPIRE: &str = "DELETE FROM leases WHERE key IN
            (SELECT key FROM leases WHERE expires_at <= ?1 AND key <> ?2 LIMIT ?3)";
        self.write(|tx| {
            exec(tx, EXPIRE, params![now, &key[..], EXPIRE_BATCH])?;
            let taken: Option<String> =
                opt_row(tx, TAKE, params![&key[..], holder, until, now], |r| {
                    r.get(0)
                })?;
            if taken.is_some() {
                return Ok(None);
            }
            Ok(Some(
                opt_row(tx, HELD, params![&key[..]], |r| r.get(0))?.unwrap_or(now),
            ))
        })
    }

    fn lease_renew(&self, key: &[u8; 32], holder: &str, until: i64) -> Result<bool> {
        const RENEW: &str = "UPDATE leases SET expires_at = ?3 WHERE key = ?1 AND holder = ?2";
        Ok(self.write(|tx| exec(tx, RENEW, params![&key[..], holder, until]))? > 0)
    }

    fn lease_release(&self, key: &[u8; 32], holder: &str) -> Result<()> {
        self.write(|tx| release_on(tx, key, holder))
    }
}
