//! Opening files: what is created, and what is refused without changing a byte.

use std::os::unix::fs::PermissionsExt;

use agentstore::{APPLICATION_ID, Error, SCHEMA_VERSION, Store, StoreOptions};
use rusqlite::Connection;

use crate::common::{TempDb, TestResult};

fn assert_refused_untouched(db: &TempDb, check: impl Fn(&Error) -> bool) {
    let before = db.snapshot();
    for options in [StoreOptions::default(), StoreOptions::existing()] {
        let err = Store::open(&db.path, options).expect_err("must refuse");
        assert!(check(&err), "unexpected error: {err}");
        assert!(err.to_string().contains("untouched") || matches!(err, Error::TooNew { .. }));
    }
    assert_eq!(db.snapshot(), before, "the directory changed");
}

#[test]
fn a_new_file_gets_the_schema_marks_and_owner_only_permissions() -> TestResult {
    let db = TempDb::new();
    let store = Store::open(&db.path, StoreOptions::default())?;
    store.agent("a")?;
    for suffix in ["", "-wal", "-shm"] {
        let p = format!("{}{suffix}", db.path.display());
        let mode = std::fs::metadata(&p)?.permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{p} has mode {mode:o}");
    }
    let c = Connection::open(&db.path)?;
    let (app, version, mode): (i32, i64, String) = c.query_row(
        "SELECT (SELECT application_id FROM pragma_application_id), \
                (SELECT user_version FROM pragma_user_version), \
                (SELECT journal_mode FROM pragma_journal_mode)",
        [],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    assert_eq!(
        (app, version, mode.as_str()),
        (APPLICATION_ID, SCHEMA_VERSION, "wal")
    );
    // The embedded schema is what the file has.
    let tables: i64 = c.query_row(
        "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name IN ('agents', 'memory_entries')",
        [],
        |r| r.get(0),
    )?;
    assert_eq!(tables, 2);
    Ok(())
}

#[test]
fn a_text_file_is_refused_untouched() {
    let db = TempDb::new();
    std::fs::write(&db.path, "this is not a database\n".repeat(300)).unwrap();
    assert_refused_untouched(&db, |e| matches!(e, Error::NotADatabase(_)));
}

#[test]
fn a_png_is_refused_untouched() {
    let db = TempDb::new();
    let mut png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
    png.extend(std::iter::repeat_n(7u8, 5000));
    std::fs::write(&db.path, png).unwrap();
    assert_refused_untouched(&db, |e| matches!(e, Error::NotADatabase(_)));
}

#[test]
fn another_applications_database_is_refused_untouched() {
    let db = TempDb::new();
    {
        let c = Connection::open(&db.path).unwrap();
        c.execute_batch("CREATE TABLE notes (body TEXT); INSERT INTO notes VALUES ('mine');")
            .unwrap();
    }
    assert_refused_untouched(&db, |e| matches!(e, Error::ForeignDatabase { .. }));

    let other = TempDb::new();
    {
        let c = Connection::open(&other.path).unwrap();
        c.execute_batch("PRAGMA application_id = 1234;").unwrap();
    }
    assert_refused_untouched(&other, |e| matches!(e, Error::ForeignDatabase { .. }));
}

#[test]
fn a_newer_schema_is_refused_untouched() -> TestResult {
    let db = TempDb::new();
    {
        let store = Store::open(&db.path, StoreOptions::default())?;
        store.memory(&store.agent("a")?).add("kept", 0.5)?;
    }
    {
        let c = Connection::open(&db.path)?;
        // The pool's last connection may still be closing on another thread.
        c.busy_timeout(std::time::Duration::from_secs(10))?;
        c.pragma_update(None, "user_version", SCHEMA_VERSION + 1)?;
        // Close in DELETE mode so that no -wal/-shm is left for the snapshot.
        c.pragma_update(None, "journal_mode", "DELETE")?;
    }
    let before = db.snapshot();
    let err = Store::open(&db.path, StoreOptions::default()).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{} was written by a newer agentstore (schema {}, this build knows {}); upgrade agentstore",
            db.path.display(),
            SCHEMA_VERSION + 1,
            SCHEMA_VERSION
        )
    );
    assert_eq!(db.snapshot(), before);
    Ok(())
}

#[test]
fn reading_never_creates_a_file() {
    let db = TempDb::new();
    let err = Store::open(&db.path, StoreOptions::existing()).unwrap_err();
    assert!(matches!(err, Error::NotFound(_)));
    assert!(db.snapshot().is_empty());

    // An empty file is not initialised by a reader either.
    std::fs::write(&db.path, b"").unwrap();
    let err = Store::open(&db.path, StoreOptions::existing()).unwrap_err();
    assert!(matches!(err, Error::NotFound(_)), "{err}");
    assert_eq!(db.snapshot().len(), 1);
    assert_eq!(db.snapshot()[0].1, 0, "the empty file stays empty");
}

#[test]
fn a_directory_or_missing_parent_is_a_clear_error() {
    let db = TempDb::new();
    let err = Store::open(db.dir.path(), StoreOptions::default()).unwrap_err();
    assert!(err.to_string().contains("is a directory"), "{err}");
    let err = Store::open(
        db.dir.path().join("no/such/dir/x.db"),
        StoreOptions::default(),
    )
    .unwrap_err();
    assert!(err.to_string().starts_with("cannot create"), "{err}");
}

#[test]
fn unknown_agents_are_an_error_for_readers() -> TestResult {
    let db = TempDb::new();
    let store = Store::open(&db.path, StoreOptions::default())?;
    let err = store.existing_agent("ghost").unwrap_err();
    assert_eq!(
        err.to_string(),
        "no agent named 'ghost' (see `agentstore agents list`)"
    );
    assert!(store.agents()?.is_empty());
    assert!(matches!(store.agent(""), Err(Error::InvalidArgument(_))));
    Ok(())
}

#[test]
fn many_threads_creating_one_new_file_agree_on_one_schema() -> TestResult {
    let db = TempDb::new();
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(8));
    let handles: Vec<_> = (0..8)
        .map(|i| {
            let path = db.path.clone();
            let barrier = barrier.clone();
            std::thread::spawn(move || -> agentstore::Result<()> {
                barrier.wait();
                let store = Store::open(&path, StoreOptions::default())?;
                let memory = store.memory(&store.agent(&format!("agent-{}", i % 3))?);
                memory.add(&format!("hello from {i}"), 0.5)?;
                Ok(())
            })
        })
        .collect();
    for h in handles {
        h.join().expect("thread")?;
    }
    let store = Store::open(&db.path, StoreOptions::existing())?;
    assert_eq!(store.agents()?.len(), 3);
    let report = store.check()?;
    assert!(report.ok, "{:?}", report.problems);
    assert_eq!(report.row_counts["memory_entries"], 8);
    assert_eq!(report.journal_mode, "wal");
    Ok(())
}

#[test]
fn the_wal_stays_bounded_under_a_steady_writer() -> TestResult {
    // 4,000 commits of about three 4 KiB pages each would make a WAL of about 48 MiB
    // without checkpoints. The commit past 1,000 pages checkpoints and the log usually
    // starts over near 4 MiB; when the background checkpoint holds the lock at that
    // moment (a loaded machine), the commit past 2,000 pages waits for the restart, so
    // the file never passes 2,000 frames (8.2 MiB) plus one commit. Small batches
    // (bulk commits, which take the hook off for themselves) come in between, so this
    // also fails if a bulk commit left a connection without the hook.
    let db = TempDb::new();
    let store = Store::open(&db.path, StoreOptions::default())?;
    let memory = store.memory(&store.agent("a")?);
    let wal = db.dir.path().join("agent.db-wal");
    let mut largest = 0;
    for i in 0..4000 {
        memory.add(&format!("entry {i} {}", "x".repeat(200)), 0.5)?;
        if i % 500 == 0 {
            memory.add_many(&[("batched", 0.5), ("batched too", 0.5)])?;
        }
        if i % 100 == 0 {
            largest = largest.max(std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0));
        }
    }
    assert!(largest < 9 * 1024 * 1024, "the WAL grew to {largest} bytes");
    Ok(())
}

#[test]
fn our_marks_without_our_tables_are_refused_untouched() -> TestResult {
    let db = TempDb::new();
    {
        let c = Connection::open(&db.path)?;
        c.execute_batch(&format!(
            "CREATE TABLE agents (id INTEGER PRIMARY KEY);
             PRAGMA application_id = {APPLICATION_ID}; PRAGMA user_version = {SCHEMA_VERSION};"
        ))?;
    }
    assert_refused_untouched(
        &db,
        |e| matches!(e, Error::ForeignDatabase { detail, .. } if detail.contains("no table memory_counters")),
    );
    Ok(())
}

/// The structure of a database as SQLite sees it: every table's columns (name, type,
/// not null, default, key position), every index's columns, and the text of every
/// view and trigger with whitespace collapsed. Comments and formatting of CREATE TABLE
/// statements (which migrations cannot reproduce) are left out.
fn structure(path: &std::path::Path) -> rusqlite::Result<Vec<String>> {
    let c = Connection::open(path)?;
    let mut out = Vec::new();
    let mut objects = c.prepare(
        "SELECT type, name, tbl_name, coalesce(sql, '') FROM sqlite_schema \
         WHERE name NOT LIKE 'sqlite_%' ORDER BY type, name",
    )?;
    let rows = objects.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, String>(3)?,
        ))
    })?;
    for row in rows {
        let (kind, name, table, sql) = row?;
        match kind.as_str() {
            "table" => {
                let mut cols = c.prepare(
                    "SELECT name, type, \"notnull\", coalesce(dflt_value, ''), pk \
                     FROM pragma_table_xinfo(?1) ORDER BY cid",
                )?;
                for col in cols.query_map([&name], |r| {
                    Ok(format!(
                        "{}|{}|{}|{}|{}",
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, i64>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, i64>(4)?
                    ))
                })? {
                    out.push(format!("table {name}: {}", col?));
                }
                // CHECK constraints live only in the text; compare their count.
                out.push(format!(
                    "table {name}: {} checks",
                    sql.matches("CHECK").count()
                ));
            }
            "index" => {
                let mut cols = c.prepare(
                    "SELECT coalesce(name, '<expr>') FROM pragma_index_info(?1) ORDER BY seqno",
                )?;
                let names: Vec<String> = cols
                    .query_map([&name], |r| r.get(0))?
                    .collect::<rusqlite::Result<_>>()?;
                out.push(format!("index {name} on {table}: {}", names.join(",")));
            }
            _ => out.push(format!(
                "{kind} {name}: {}",
                sql.split_whitespace().collect::<Vec<_>>().join(" ")
            )),
        }
    }
    Ok(out)
}

#[test]
fn a_schema_1_file_is_migrated_to_the_fresh_schema_and_keeps_its_data() -> TestResult {
    let old = TempDb::new();
    {
        let c = Connection::open(&old.path)?;
        c.execute_batch(include_str!("../fixtures/schema-1.sql"))?;
        c.execute_batch(&format!(
            "PRAGMA application_id = {APPLICATION_ID}; PRAGMA user_version = 1;
             INSERT INTO agents (name, created_at, max_entries) VALUES ('old', 1, 77);
             UPDATE memory_counters SET message_count = 1;
             INSERT INTO memory_entries (agent_id, importance, created_at, id, size_bytes, content)
             VALUES (1, 0.5, 2, 1, 5, 'hello');"
        ))?;
    }
    let store = Store::open(&old.path, StoreOptions::default())?;
    let agent = store.existing_agent("old")?;
    assert_eq!(agent.settings.max_entries, 77);
    assert_eq!(agent.memory_entries, 1);
    assert_eq!(agent.tool_scope, "old");
    assert_eq!(agent.target_response_time, 2.0);
    let report = store.check()?;
    assert!(report.ok, "{:?}", report.problems);
    // Schema 4 indexed the old entry for search and made it a note.
    let hits = store
        .memory(&agent)
        .search("hello", &agentstore::SearchOptions::default())?;
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].role, agentstore::Role::Note);
    assert_eq!(agent.settings.relevance_weight, 1.0);
    drop(store);

    let fresh = TempDb::new();
    drop(Store::open(&fresh.path, StoreOptions::default())?);
    assert_eq!(structure(&old.path)?, structure(&fresh.path)?);
    let version: i64 =
        Connection::open(&old.path)?.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    assert_eq!(version, SCHEMA_VERSION);
    Ok(())
}
