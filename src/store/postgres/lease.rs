//! Leases on PostgreSQL, as on SQLite: one upsert that takes a free or expired lease
//! (the row lock orders concurrent takers on many hosts), a renewal and a release.

use super::{Postgres, args, exec, get, opt_row};
use crate::error::Result;
use crate::store::engine::LeaseOps;

impl LeaseOps for Postgres {
    fn lease_take(
        &self,
        key: &[u8; 32],
        holder: &str,
        now: i64,
        until: i64,
    ) -> Result<Option<i64>> {
        const TAKE: &str = "INSERT INTO leases AS l (key, holder, expires_at) VALUES ($1, $2, $3)
            ON CONFLICT (key) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
             WHERE l.expires_at <= $4 OR l.holder = excluded.holder
            RETURNING holder";
        const HELD: &str = "SELECT expires_at FROM leases WHERE key = $1";
        const EXPIRE: &str = "DELETE FROM leases WHERE key IN (SELECT key FROM leases
            WHERE expires_at <= $1 AND key <> $2 LIMIT 8 FOR UPDATE SKIP LOCKED)";
        let key: &[u8] = key;
        self.write(|c| {
            exec(c, EXPIRE, args![now, key])?;
            if opt_row(c, TAKE, args![key, holder, until, now])?.is_some() {
                return Ok(None);
            }
            Ok(Some(match opt_row(c, HELD, args![key])? {
                Some(r) => get(&r, 0, HELD)?,
                None => now,
            }))
        })
    }

    fn lease_renew(&self, key: &[u8; 32], holder: &str, until: i64) -> Result<bool> {
        const RENEW: &str = "UPDATE leases SET expires_at = $3 WHERE key = $1 AND holder = $2";
        let key: &[u8] = key;
        Ok(self.write(|c| exec(c, RENEW, args![key, holder, until]))? > 0)
    }

    fn lease_release(&self, key: &[u8; 32], holder: &str) -> Result<()> {
        const RELEASE: &str = "DELETE FROM leases WHERE key = $1 AND holder = $2";
        let key: &[u8] = key;
        self.write(|c| exec(c, RELEASE, args![key, holder]))?;
        Ok(())
    }
}
