//! Schema creation and migrations. `schema.sql` is the fresh schema; an older file is
//! moved forward one step at a time. Everything runs inside one `BEGIN IMMEDIATE`
//! transaction, so concurrent openers of a new file agree on one schema.

use std::path::Path;

use rusqlite::{Connection, TransactionBehavior};

use super::connection::{APPLICATION_ID, Identity, SCHEMA_VERSION, identify};
use crate::error::{Result, SqlContext};

/// The fresh schema, embedded from the repository root.
pub const SCHEMA_SQL: &str = include_str!("../../schema.sql");

/// Brings the file to [`SCHEMA_VERSION`]: applies the fresh schema to an empty file, or
/// runs the steps from its version. Re-reads the marks under the write lock, since
/// another process may have done it first.
pub(crate) fn migrate(conn: &mut Connection, path: &Path) -> Result<()> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .sql("BEGIN IMMEDIATE")?;
    match identify(&tx, path)? {
        Identity::Empty => {
            tx.execute_batch(SCHEMA_SQL).sql("schema.sql")?;
            tx.pragma_update(None, "application_id", APPLICATION_ID)
                .sql("PRAGMA application_id")?;
        }
        Identity::Ours { version } => {
            // One step per version goes here (`version` to `version + 1`), never edited
            // once shipped. Schema 1 is the first, so there is none yet.
            debug_assert!(version <= SCHEMA_VERSION);
        }
    }
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)
        .sql("PRAGMA user_version")?;
    tx.commit().sql("COMMIT")
}
