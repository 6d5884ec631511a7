//! `agentstore init`: create the file and its schema.

use agentstore::{POSTGRES_SCHEMA_VERSION, SCHEMA_VERSION};
use serde_json::json;

use crate::cli::Context;
use crate::cli::output::{Output, Reply};

/// Create the database file with owner-only permissions and apply the schema. On an
/// existing agentstore file it only checks it (and migrates an older one). On
/// PostgreSQL it creates the schema (and the `?schema=` one) even with --no-migrate.
#[derive(Debug, clap::Args)]
#[command(after_help = "Example:\n  agentstore --db ./agent.db init")]
pub struct Args {}

/// Runs `init`.
pub fn run(ctx: &Context, _args: Args) -> anyhow::Result<Reply> {
    let existed = match &ctx.location {
        // An empty file counts as new: init creates the schema in it.
        agentstore::Location::Sqlite(path) => std::fs::metadata(path).is_ok_and(|m| m.len() > 0),
        // On a server: whether the schema was there (opening without migration).
        _ => ctx.open_existing().is_ok(),
    };
    let store = ctx.open_for_init()?;
    let path = store.location().to_string();
    let verb = if existed { "checked" } else { "created" };
    let version = match &ctx.location {
        agentstore::Location::Sqlite(_) => SCHEMA_VERSION,
        _ => POSTGRES_SCHEMA_VERSION,
    };
    Ok(Output::Text {
        text: format!("{verb} {path} (schema {version})"),
        json: json!({ "path": path, "created": !existed, "schema_version": version }),
    }
    .into())
}
