//! Leases on PostgreSQL, as on SQLite: one upsert that takes a free or expired lease
//! (the row lock orders concurrent takers on many hosts), a renewal and a release;
//! each one autocommit statement (one round trip), a call of the schema's function.

use super::{Postgres, args, get, opt_row, row};
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
        // One autocommit statement (the schema's `lease_take`): up to 8 other expired
        // leases removed, then the take; the holder's expiry when the take lost (seen
        // by the statement's snapshot).
        const TAKE: &str = "SELECT took, held FROM lease_take($1, $2, $3, $4, $5)";
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
        const RENEW: &str = "SELECT lease_renew($1, $2, $3, $4)";
        let key: &[u8] = key;
        let timeout = self.lock_timeout_ms();
        self.write_one(|c| {
            get(
                &row(c, RENEW, args![key, holder, until, timeout])?,
                0,
                RENEW,
            )
        })
    }

    fn lease_release(&self, key: &[u8; 32], holder: &str) -> Result<()> {
        const RELEASE: &str = "SELECT lease_release($1, $2, $3)";
        let key: &[u8] = key;
        let timeout = self.lock_timeout_ms();
        self.write_one(|c| row(c, RELEASE, args![key, holder, timeout]))?;
        Ok(())
    }
}
