//! Leases on PostgreSQL, as on SQLite: one upsert that takes a free or expired lease
//! (the row lock orders concurrent takers on many hosts), a renewal and a release;
//! each one autocommit statement (one round trip).

use super::{Postgres, args, exec, get, opt_row, row};
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
        // One autocommit statement: up to 8 other expired leases removed, then the
        // take; the holder's expiry when the take lost (seen by the statement's
        // snapshot).
        const TAKE: &str = concat!(
            lock_timeout_first!("$5"),
            ",
            gone AS (
                DELETE FROM leases WHERE key IN (
                    SELECT l2.key FROM leases l2, timeout
                     WHERE expires_at <= $4 AND key <> $1 AND timeout.ms IS NOT NULL
                     LIMIT 8 FOR UPDATE OF l2 SKIP LOCKED)),
            took AS (
                INSERT INTO leases AS l (key, holder, expires_at)
                SELECT $1, $2, $3 FROM timeout WHERE timeout.ms IS NOT NULL
                ON CONFLICT (key) DO UPDATE SET holder = excluded.holder,
                    expires_at = excluded.expires_at
                 WHERE l.expires_at <= $4 OR l.holder = excluded.holder
                RETURNING holder)
            SELECT (SELECT count(*) FROM took), (SELECT expires_at FROM leases WHERE key = $1)"
        );
        // A holder that committed after that snapshot began.
        const HELD: &str = "SELECT expires_at FROM leases WHERE key = $1";
        let key: &[u8] = key;
        let timeout = self.lock_timeout_ms();
        let (took, held): (i64, Option<i64>) = self.write_one(|c| {
            let r = row(c, TAKE, args![key, holder, until, now, timeout])?;
            Ok((get(&r, 0, TAKE)?, get(&r, 1, TAKE)?))
        })?;
        if took > 0 {
            return Ok(None);
        }
        if let Some(expires_at) = held {
            return Ok(Some(expires_at));
        }
        let held = self.read_one(|c| opt_row(c, HELD, args![key]))?;
        Ok(Some(match held {
            Some(r) => get(&r, 0, HELD)?,
            None => now,
        }))
    }

    fn lease_renew(&self, key: &[u8; 32], holder: &str, until: i64) -> Result<bool> {
        const RENEW: &str = concat!(
            lock_timeout_first!("$4"),
            "
            UPDATE leases SET expires_at = $3 FROM timeout
             WHERE key = $1 AND holder = $2 AND timeout.ms IS NOT NULL"
        );
        let key: &[u8] = key;
        let timeout = self.lock_timeout_ms();
        Ok(self.write_one(|c| exec(c, RENEW, args![key, holder, until, timeout]))? > 0)
    }

    fn lease_release(&self, key: &[u8; 32], holder: &str) -> Result<()> {
        const RELEASE: &str = concat!(
            lock_timeout_first!("$3"),
            "
            DELETE FROM leases USING timeout
             WHERE key = $1 AND holder = $2 AND timeout.ms IS NOT NULL"
        );
        let key: &[u8] = key;
        let timeout = self.lock_timeout_ms();
        self.write_one(|c| exec(c, RELEASE, args![key, holder, timeout]))?;
        Ok(())
    }
}
