//! The schema on PostgreSQL: `schema-postgres.sql` applied to an empty schema, under a
//! transaction-scoped advisory lock so that many processes starting at once on an
//! empty database all succeed with one schema; a newer or foreign schema refused
//! untouched; creation forbidden when the operator migrates by hand.

use std::path::PathBuf;

use postgres::Client;

use super::{PgContext, Postgres, args, get, ident, opt_row, row};
use crate::error::{Error, Result};
use crate::store::{PostgresUrl, StoreOptions};

/// The schema of the PostgreSQL engine, as `schema-postgres.sql` holds it: tables,
/// views and triggers.
pub(super) const SCHEMA_POSTGRES_SQL: &str = include_str!("../../../schema-postgres.sql");

/// The functions of the hot writes (`schema-postgres-functions.sql`): applied after
/// [`SCHEMA_POSTGRES_SQL`], and alone by the migration from schema 5.
pub(super) const FUNCTIONS_SQL: &str = include_str!("../../../schema-postgres-functions.sql");

/// Schema 4 to 5: leases of calls in progress (single-flight across processes).
const TO_5: &str = "CREATE TABLE leases (
    key         bytea  NOT NULL PRIMARY KEY CHECK (length(key) = 32),
    holder      text   NOT NULL,
    expires_at  bigint NOT NULL
);
UPDATE agentstore_schema SET version = 5;";

/// The names of the functions [`FUNCTIONS_SQL`] creates, which `check` expects to
/// find (read from the file, so the two cannot drift apart).
pub(super) fn functions() -> Vec<&'static str> {
    FUNCTIONS_SQL
        .lines()
        .filter_map(|l| l.strip_prefix("CREATE OR REPLACE FUNCTION "))
        .filter_map(|rest| rest.split('(').next())
        .map(str::trim)
        .collect()
}

/// Schema 5 to 6: the functions of the hot writes; the tables are unchanged.
const TO_6: &str = "UPDATE agentstore_schema SET version = 6;";

/// The schema version this build writes and reads.
const VERSION: i64 = crate::store::POSTGRES_SCHEMA_VERSION;

/// The advisory lock key of schema creation: one per schema name, the same in every
/// agentstore process (a transaction-scoped lock: safe behind a pooler).
fn lock_key(schema: &str) -> i64 {
    let hash = blake3::hash(format!("agentstore schema {schema}").as_bytes());
    i64::from_le_bytes(hash.as_bytes()[..8].try_into().expect("8 bytes"))
}

/// The tables of agentstore's schema; finding any of them without the version table
/// means the schema is someone else's.
const TABLES: [&str; 10] = [
    "agents",
    "memory_counters",
    "memory_entries",
    "memory_prunes",
    "tool_cache",
    "tool_counters",
    "response_cache",
    "response_words",
    "response_log",
    "leases",
];

/// Checks the schema at `url` and creates it when allowed; returns the store's
/// identity (`postgres://host:port/dbname?schema=NAME`) and the schema's name.
pub(super) fn open(
    engine: &Postgres,
    url: &PostgresUrl,
    schema: Option<&str>,
    options: &StoreOptions,
) -> Result<(String, String)> {
    let shown = url.to_string();
    if let Some(found) = current(engine, schema) {
        return Ok(found);
    }
    let may_create = options.create && options.migrate;
    let identity = engine.write(|c| {
        // Which schema the tables live in: the named one, else the first of the
        // connection's search path that exists.
        let target: Option<String> = match schema {
            Some(s) => Some(s.to_string()),
            None => get(
                &row(c, "SELECT current_schema()", args![])?,
                0,
                "current_schema",
            )?,
        };
        let Some(target) = target else {
            return Err(refused(
                &shown,
                "the connection's search_path names no schema that exists; give one with \
                 ?schema=NAME",
            ));
        };
        const LOCK: &str = "SELECT pg_advisory_xact_lock($1)";
        super::exec(c, LOCK, args![lock_key(&target)])?;
        let exists = opt_row(
            c,
            "SELECT 1::int8 FROM pg_namespace WHERE nspname = $1",
            args![target.as_str()],
        )?
        .is_some();
        if !exists {
            if !may_create {
                return Err(missing(&shown, options));
            }
            c.batch_execute(&format!("CREATE SCHEMA {}", ident(&target)))
                .sql("CREATE SCHEMA")?;
        }
        match version(c, &target)? {
            Some(VERSION) => {}
            Some(found) if found > VERSION => {
                return Err(Error::TooNew {
                    path: PathBuf::from(&shown),
                    found,
                    known: VERSION,
                });
            }
            Some(found @ 4..VERSION) if may_create => {
                // Each step from `found` on, in this transaction: all or nothing.
                let mut steps = String::new();
                if found < 5 {
                    steps.push_str(TO_5); // the leases of calls in progress
                }
                steps.push_str(FUNCTIONS_SQL);
                steps.push_str(TO_6);
                c.batch_execute(&format!(
                    "SET LOCAL search_path TO {}, pg_catalog; {steps}",
                    ident(&target)
                ))
                .sql(&format!("schema {found} to {VERSION}"))?;
            }
            Some(found @ 4..VERSION) => return Err(missing_upgrade(&shown, found)),
            Some(found) => {
                return Err(refused(
                    &shown,
                    &format!(
                        "schema version {found} is not one this build can upgrade (it \
                         knows {VERSION})"
                    ),
                ));
            }
            None => {
                if let Some(table) = foreign_table(c, &target)? {
                    return Err(refused(
                        &shown,
                        &format!(
                            "schema {target} has a table {table} but no agentstore_schema: \
                             it is not an agentstore schema; use another with ?schema=NAME"
                        ),
                    ));
                }
                if !may_create {
                    return Err(missing(&shown, options));
                }
                // The schema file's objects land in `target`: it is first on the path
                // for this transaction, and its functions keep that path.
                c.batch_execute(&format!(
                    "SET LOCAL search_path TO {}, pg_catalog; {SCHEMA_POSTGRES_SQL} \
                     {FUNCTIONS_SQL}",
                    ident(&target)
                ))
                .sql("schema-postgres.sql")?;
            }
        }
        let place: (Option<String>, Option<i32>, String) = {
            let r = row(
                c,
                "SELECT host(inet_server_addr()), inet_server_port(), current_database()",
                args![],
            )?;
            (
                get(&r, 0, "server")?,
                get(&r, 1, "server")?,
                get(&r, 2, "server")?,
            )
        };
        let (host, port, db) = place;
        Ok((identity_of(host, port, &db, &target), target))
    })?;
    Ok(identity)
}

/// `postgres://host:port/dbname?schema=NAME`, the store's identity.
fn identity_of(host: Option<String>, port: Option<i32>, db: &str, schema: &str) -> String {
    format!(
        "postgres://{}:{}/{db}?schema={schema}",
        host.unwrap_or_else(|| "local".to_string()),
        port.unwrap_or(5432)
    )
}

/// The common case in one round trip and no lock: a named schema that is already at
/// this build's version. `None` for anything else (no such schema or table, another
/// version or application, an error), which the full check then handles and reports.
fn current(engine: &Postgres, schema: Option<&str>) -> Option<(String, String)> {
    let schema = schema?;
    let sql = format!(
        "SELECT application, version::int8, host(inet_server_addr()), inet_server_port(), \
         current_database() FROM {}.agentstore_schema",
        ident(schema)
    );
    let found = engine.read_one(|c| {
        let r = opt_row(c, &sql, args![])?;
        r.map(|r| -> Result<_> {
            let application: String = get(&r, 0, &sql)?;
            let version: i64 = get(&r, 1, &sql)?;
            let identity = identity_of(
                get(&r, 2, &sql)?,
                get(&r, 3, &sql)?,
                &get::<String>(&r, 4, &sql)?,
                schema,
            );
            Ok((application, version, identity))
        })
        .transpose()
    });
    match found {
        Ok(Some((application, VERSION, identity))) if application == "agentstore" => {
            Some((identity, schema.to_string()))
        }
        _ => None,
    }
}

/// The version in `schema`'s `agentstore_schema`, if the table exists; a foreign
/// application's row is refused.
fn version(c: &mut Client, schema: &str) -> Result<Option<i64>> {
    const TABLE: &str =
        "SELECT 1::int8 FROM pg_tables WHERE schemaname = $1 AND tablename = 'agentstore_schema'";
    if opt_row(c, TABLE, args![schema])?.is_none() {
        return Ok(None);
    }
    let sql = format!(
        "SELECT application, version::int8 FROM {}.agentstore_schema",
        ident(schema)
    );
    let r = opt_row(c, &sql, args![])?;
    match r {
        Some(r) => {
            let application: String = get(&r, 0, &sql)?;
            if application != "agentstore" {
                return Err(Error::invalid(format!(
                    "schema {schema} belongs to {application:?}, not agentstore"
                )));
            }
            Ok(Some(get(&r, 1, &sql)?))
        }
        None => Ok(Some(0)),
    }
}

/// One of agentstore's table names that `schema` already has, if any.
fn foreign_table(c: &mut Client, schema: &str) -> Result<Option<String>> {
    const ANY: &str = "SELECT tablename::text FROM pg_tables
        WHERE schemaname = $1 AND tablename = ANY($2) ORDER BY tablename LIMIT 1";
    let names: Vec<String> = TABLES.iter().map(|t| t.to_string()).collect();
    let r = super::rows(
        c,
        ANY,
        &[
            (&schema, postgres::types::Type::TEXT),
            (&names, postgres::types::Type::TEXT_ARRAY),
        ],
    )?;
    r.first().map(|r| get(r, 0, ANY)).transpose()
}

fn refused(location: &str, detail: &str) -> Error {
    Error::SchemaRefused {
        location: location.to_string(),
        detail: detail.to_string(),
    }
}

/// An older schema that may not be upgraded here.
fn missing_upgrade(location: &str, found: i64) -> Error {
    refused(
        location,
        &format!(
            "the schema is version {found} and automatic migration is off; upgrade it \
             with `agentstore init`"
        ),
    )
}

/// The database has no agentstore schema and may not be given one here.
fn missing(location: &str, options: &StoreOptions) -> Error {
    if options.create {
        refused(
            location,
            "no agentstore schema here, and automatic migration is off; create it with \
             `agentstore init`",
        )
    } else {
        Error::NotFound(PathBuf::from(location))
    }
}
