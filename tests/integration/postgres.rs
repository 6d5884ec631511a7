//! The PostgreSQL schema (`schema-postgres.sql`, the first part of issue 14) on a real
//! server: a throwaway cluster started with the machine's own binaries (as the
//! `postgres` user when run as root), or the server `AGENTSTORE_TEST_POSTGRES` names.
//! Without binaries the tests print why they skip; `scripts/test.sh` sets
//! `AGENTSTORE_REQUIRE_POSTGRES=1`, which turns the skip into a failure.

use agentstore::{Store, StoreOptions};
use postgres::{Client, NoTls};

use crate::common::{TempDb, TestResult, skip};

#[path = "../../benches/support/pg_cluster.rs"]
mod pg_cluster;

pub use pg_cluster::{Server, is_root};

/// A server for one test: `AGENTSTORE_TEST_POSTGRES`, else a throwaway cluster; `None`
/// (with the reason printed) when neither can be had, unless
/// `AGENTSTORE_REQUIRE_POSTGRES` is set, which makes that a failure.
pub fn server() -> Option<Server> {
    if let Ok(url) = std::env::var("AGENTSTORE_TEST_POSTGRES") {
        return Some(Server::at(url));
    }
    match Server::start_cluster() {
        Ok(server) => Some(server),
        Err(why) => {
            skip(
                "AGENTSTORE_REQUIRE_POSTGRES",
                "a PostgreSQL test",
                &format!("{why}; set AGENTSTORE_TEST_POSTGRES to a URL"),
            );
            None
        }
    }
}

/// A client of the test server.
pub fn client(server: &Server) -> Client {
    Client::connect(server.url(), NoTls).expect("connect to the test server")
}

/// A client in a fresh schema of its own with `schema-postgres.sql` applied.
fn schema_client(server: &Server, name: &str) -> Client {
    let mut c = client(server);
    c.batch_execute(&format!(
        "DROP SCHEMA IF EXISTS {name} CASCADE; CREATE SCHEMA {name}; SET search_path = {name};"
    ))
    .expect("schema");
    c.batch_execute(include_str!("../../schema-postgres.sql"))
        .expect("schema-postgres.sql applies");
    c.batch_execute(include_str!("../../schema-postgres-functions.sql"))
        .expect("schema-postgres-functions.sql applies");
    c
}

/// The columns of each view, in order.
fn sqlite_view_columns(views: &[&str]) -> Vec<Vec<String>> {
    let db = TempDb::new();
    drop(Store::open(&db.path, StoreOptions::default()).expect("store"));
    let c = rusqlite::Connection::open(&db.path).expect("open");
    views
        .iter()
        .map(|v| {
            let mut stmt = c
                .prepare(&format!(
                    "SELECT name FROM pragma_table_info('{v}') ORDER BY cid"
                ))
                .expect("prepare");
            stmt.query_map([], |r| r.get(0))
                .expect("query")
                .collect::<rusqlite::Result<Vec<String>>>()
                .expect("columns")
        })
        .collect()
}

const VIEWS: [&str; 5] = [
    "memory_stats",
    "memory_by_role",
    "tool_stats",
    "response_stats",
    "recent_responses",
];

#[test]
fn the_postgres_schema_applies_and_its_views_have_the_sqlite_columns() -> TestResult {
    let Some(server) = server() else {
        return Ok(());
    };
    let mut c = schema_client(&server, "views_test");
    let expected = sqlite_view_columns(&VIEWS);
    for (view, want) in VIEWS.iter().zip(expected) {
        let got: Vec<String> = c
            .query(
                "SELECT column_name::text FROM information_schema.columns
                  WHERE table_schema = 'views_test' AND table_name = $1 ORDER BY ordinal_position",
                &[view],
            )?
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(got, want, "view {view}");
    }
    // Floats are 8 bytes, times and keys as stated.
    let types: Vec<(String, String)> = c
        .query(
            "SELECT column_name::text, data_type::text FROM information_schema.columns
              WHERE table_schema = 'views_test' AND table_name = 'memory_entries'
              ORDER BY ordinal_position",
            &[],
        )?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert!(types.contains(&("importance".into(), "double precision".into())));
    assert!(types.contains(&("created_at".into(), "bigint".into())));
    let version: i32 = c
        .query_one("SELECT version FROM agentstore_schema", &[])?
        .get(0);
    assert_eq!(version as i64, agentstore::POSTGRES_SCHEMA_VERSION);
    Ok(())
}

#[test]
fn the_postgres_triggers_keep_the_counters_and_the_buckets() -> TestResult {
    let Some(server) = server() else {
        return Ok(());
    };
    let mut c = schema_client(&server, "trigger_test");
    c.batch_execute(
        "INSERT INTO agents (name, created_at) VALUES ('a', 1), ('b', 1);
         INSERT INTO memory_entries (agent_id, importance, created_at, id, size_bytes, content, role)
         SELECT 1 + (i % 2), (i % 10) / 10.0, i, i, length('entry ' || i), 'entry ' || i || ' about tides', 'user'
           FROM generate_series(1, 1000) i;
         DELETE FROM memory_entries WHERE agent_id = 1 AND importance < 0.5;",
    )?;
    let rows = c.query(
        "SELECT c.entries, c.bytes, c.importance_sum, count(m.id), coalesce(sum(m.size_bytes), 0)::bigint,
                coalesce(sum(m.importance), 0)
           FROM memory_counters c LEFT JOIN memory_entries m ON m.agent_id = c.agent_id
          GROUP BY c.agent_id, c.entries, c.bytes, c.importance_sum ORDER BY c.agent_id",
        &[],
    )?;
    assert_eq!(rows.len(), 2);
    for r in rows {
        let (entries, bytes, sum): (i64, i64, f64) = (r.get(0), r.get(1), r.get(2));
        let (real_entries, real_bytes, real_sum): (i64, i64, f64) = (r.get(3), r.get(4), r.get(5));
        assert_eq!((entries, bytes), (real_entries, real_bytes));
        assert!((sum - real_sum).abs() < 1e-9, "{sum} vs {real_sum}");
    }
    c.batch_execute("DELETE FROM memory_entries WHERE agent_id = 2")?;
    let sum: f64 = c
        .query_one(
            "SELECT importance_sum FROM memory_counters WHERE agent_id = 2",
            &[],
        )?
        .get(0);
    assert_eq!(sum, 0.0, "exactly 0 with the last entry");
    let err = c
        .batch_execute("UPDATE memory_entries SET importance = 1.0")
        .unwrap_err();
    assert!(err.to_string().contains("db error"), "{err}");
    let refused = format!("{:?}", err);
    assert!(refused.contains("immutable"), "{refused}");
    // Full text over the generated vector.
    let n: i64 = c
        .query_one(
            "SELECT count(*) FROM memory_entries WHERE search @@ plainto_tsquery('simple', 'TIDES')",
            &[],
        )?
        .get(0);
    assert_eq!(n, 200, "agent a keeps importance 0.6 and 0.8 of its 500");
    // The response-time buckets follow the log.
    c.batch_execute(
        "INSERT INTO response_log (agent_id, at, duration, bucket, outcome)
         SELECT 1, i, i / 100.0, i % 3, CASE WHEN i % 5 = 0 THEN 'error' ELSE 'exact' END
           FROM generate_series(1, 100) i;
         DELETE FROM response_log WHERE at <= 50;",
    )?;
    let (kept, real): (i64, i64) = {
        let r = c.query_one(
            "SELECT (SELECT sum(responses) FROM response_time_buckets)::bigint,
                    (SELECT count(*) FROM response_log WHERE outcome <> 'error')",
            &[],
        )?;
        (r.get(0), r.get(1))
    };
    assert_eq!(kept, real);
    let logged: i64 = c
        .query_one(
            "SELECT total_logged FROM response_stats WHERE agent = 'a'",
            &[],
        )?
        .get(0);
    assert_eq!(logged, 50);
    Ok(())
}
