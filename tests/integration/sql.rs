//! The read-only query entry point: reads work, every kind of write is refused and
//! leaves the file unchanged.

use std::time::Duration;

use agentstore::{Error, Store, StoreOptions, query_read_only};
use serde_json::json;

use crate::common::{TempDb, TestResult, agentstore};

fn populated() -> TempDb {
    let db = TempDb::new();
    let store = Store::open(&db.path, StoreOptions::default()).unwrap();
    let memory = store.memory(&store.agent("a").unwrap());
    memory.add("hello", 0.25).unwrap();
    memory.add("world", 0.75).unwrap();
    drop(memory);
    drop(store);
    db
}

#[test]
fn reads_return_columns_and_json_values() -> TestResult {
    let db = populated();
    let before = db.snapshot();
    let r = query_read_only(
        &db.path,
        "SELECT id, content, importance, NULL AS missing, X'00FF' AS blob FROM memory_entries ORDER BY id",
        Duration::from_secs(5),
    )?;
    assert_eq!(
        r.columns,
        ["id", "content", "importance", "missing", "blob"]
    );
    assert_eq!(
        r.rows[0],
        [
            json!(1),
            json!("hello"),
            json!(0.25),
            json!(null),
            json!("X'00FF'")
        ]
    );
    let stats = query_read_only(
        &db.path,
        "SELECT agent, total_entries FROM memory_stats",
        Duration::from_secs(5),
    )?;
    assert_eq!(stats.rows, [[json!("a"), json!(2)]]);
    let pragma = query_read_only(
        &db.path,
        "PRAGMA table_info(agents)",
        Duration::from_secs(5),
    )?;
    assert!(!pragma.rows.is_empty());
    assert_eq!(db.snapshot(), before, "a read changed the directory");
    Ok(())
}

#[test]
fn writes_are_refused_and_change_nothing() {
    let _running = crate::zz_report::running();
    let db = populated();
    let before = db.snapshot();
    let attach_target = db.dir.path().join("other.db");
    let vacuum_target = db.dir.path().join("copy.db");
    let tricks = [
        "INSERT INTO agents (name, created_at) VALUES ('x', 0)".to_string(),
        "UPDATE agents SET name = 'y'".into(),
        "DELETE FROM memory_entries".into(),
        "REPLACE INTO agents (id, name, created_at) VALUES (1, 'z', 0)".into(),
        "DROP TABLE memory_entries".into(),
        "CREATE TABLE t (x)".into(),
        "INSERT INTO agents (name, created_at) VALUES ('x', 0) RETURNING id".into(),
        "WITH d AS (SELECT 1) DELETE FROM memory_entries RETURNING id".into(),
        "BEGIN IMMEDIATE".into(),
        format!("ATTACH '{}' AS o", attach_target.display()),
        format!("VACUUM INTO '{}'", vacuum_target.display()),
        "PRAGMA writable_schema = ON".into(),
        "PRAGMA query_only = 0".into(),
        "PRAGMA journal_mode = DELETE".into(),
        "PRAGMA user_version = 99".into(),
        "SELECT load_extension('/tmp/nothing')".into(),
        "SELECT 1; DELETE FROM memory_entries".into(),
        // More of the same, spelled differently.
        format!(
            "ATTACH '{}' AS o; CREATE TABLE o.t (x)",
            attach_target.display()
        ),
        "UPDATE agents SET max_entries = 1 RETURNING id".into(),
        "WITH RECURSIVE n(i) AS (SELECT 1) DELETE FROM memory_entries WHERE id IN n RETURNING *"
            .into(),
        "INSERT INTO memory_entries SELECT * FROM memory_entries RETURNING id".into(),
        "PRAGMA main.user_version = 99".into(),
        "PRAGMA wal_checkpoint(TRUNCATE)".into(),
        "PRAGMA foreign_keys = OFF".into(),
        "SAVEPOINT s".into(),
        "VACUUM".into(),
        "REINDEX".into(),
        "ANALYZE".into(),
        "CREATE TEMP TABLE t (x)".into(),
        "DETACH main".into(),
        "SELECT load_extension('libc.so.6', 'system')".into(),
    ];
    for sql in &tricks {
        let err = query_read_only(&db.path, sql, Duration::from_secs(5))
            .expect_err(&format!("accepted: {sql}"));
        assert!(matches!(err, Error::NotReadOnly(_)), "{sql}: {err}");
        assert!(err.to_string().starts_with("refused: "), "{sql}: {err}");
    }
    // The same through the command an operator runs: exit 2, one clear line.
    for sql in &tricks {
        let out = agentstore(&db).args(["sql", sql]).assert().code(2);
        let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
        assert!(
            stderr.starts_with("agentstore: refused: "),
            "{sql}: {stderr}"
        );
        assert_eq!(stderr.lines().count(), 1, "{sql}: {stderr}");
    }
    assert!(!attach_target.exists() && !vacuum_target.exists());
    // Not a byte changed, and no -wal or -shm left behind.
    assert_eq!(db.snapshot(), before);
    crate::zz_report::add(
        crate::zz_report::Count::WriteTricksRefused,
        2 * tricks.len() as u64,
    );
}

#[test]
fn the_sql_command_interrupts_a_runaway_query_at_its_time_limit() {
    let _running = crate::zz_report::running();
    let db = populated();
    let before = db.snapshot();
    agentstore(&db)
        .args([
            "sql",
            "--timeout",
            "300ms",
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT max(i) FROM n",
        ])
        .assert()
        .code(1)
        .stderr(predicates::str::contains("time limit"));
    assert_eq!(db.snapshot(), before);
}

#[test]
fn oversized_or_invalid_queries_are_refused_as_bad_input() {
    let db = populated();
    let before = db.snapshot();
    let long = format!("SELECT 1 /* {} */", "x".repeat(2 << 20));
    let err = query_read_only(&db.path, &long, Duration::from_secs(5)).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "the query is {} bytes; the most `sql` accepts is 1048576",
            long.len()
        )
    );
    for bad in ["SELEC 1", "SELECT nope()", "SELECT * FROM no_such_table"] {
        let err = query_read_only(&db.path, bad, Duration::from_secs(5)).unwrap_err();
        assert_eq!(
            err.kind(),
            agentstore::ErrorKind::InvalidInput,
            "{bad}: {err}"
        );
        assert!(
            err.to_string().starts_with("the query is not valid here: "),
            "{err}"
        );
    }
    assert_eq!(db.snapshot(), before);
}

#[test]
fn a_runaway_query_is_interrupted() {
    let db = populated();
    let err = query_read_only(
        &db.path,
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT max(i) FROM n",
        Duration::from_millis(200),
    )
    .unwrap_err();
    assert!(matches!(err, Error::QueryTimeout(_)), "{err}");
    assert!(err.to_string().contains("time limit"));
}
