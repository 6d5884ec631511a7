//! The binary as a user runs it: each command, its JSON shape and its exit code.

use std::io::Read;
use std::process::{Command as StdCommand, Stdio};

use assert_cmd::Command;
use predicates::prelude::*;
use serde_json::Value;

use crate::common::{TempDb, TestResult, agentstore, json_of};

fn add(db: &TempDb, agent: &str, importance: &str, text: &str) -> String {
    let out = agentstore(db)
        .args([
            "memory",
            "add",
            "--agent",
            agent,
            "--importance",
            importance,
            text,
        ])
        .assert()
        .success();
    String::from_utf8(out.get_output().stdout.clone())
        .unwrap()
        .trim()
        .to_string()
}

#[test]
fn init_creates_and_then_checks() {
    let db = TempDb::new();
    agentstore(&db)
        .arg("init")
        .assert()
        .success()
        .stdout(predicate::str::starts_with("created "));
    let v = json_of(&db, &["init"]);
    assert_eq!(v["created"], false);
    assert_eq!(v["schema_version"], agentstore::SCHEMA_VERSION);
}

#[test]
fn the_database_comes_from_the_environment_too() {
    let db = TempDb::new();
    Command::cargo_bin("agentstore")
        .unwrap()
        .env("AGENTSTORE_DB", &db.path)
        .arg("init")
        .assert()
        .success();
    assert!(db.path.exists());
}

#[test]
fn memory_add_prints_ids_and_list_has_the_json_shape() {
    let db = TempDb::new();
    assert_eq!(add(&db, "bot", "0.9", "the user prefers metric units"), "1");
    assert_eq!(add(&db, "bot", "0.1", "small talk"), "2");
    let v = json_of(&db, &["memory", "list", "--agent", "bot"]);
    let items = v.as_array().unwrap();
    assert_eq!(items.len(), 2);
    let keys: Vec<&String> = items[0].as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        [
            "id",
            "role",
            "content",
            "importance",
            "created_at",
            "size_bytes"
        ]
    );
    assert_eq!(items[0]["role"], "note");
    assert_eq!(items[0]["id"], 2, "newest first");
    let created = items[0]["created_at"].as_str().unwrap();
    assert!(
        created.len() == 27 && created.ends_with('Z') && created.as_bytes()[19] == b'.',
        "RFC 3339 with microseconds: {created}"
    );
    let by_importance = json_of(
        &db,
        &[
            "memory",
            "list",
            "--agent",
            "bot",
            "--order",
            "importance",
            "--limit",
            "1",
        ],
    );
    assert_eq!(by_importance[0]["content"], "the user prefers metric units");
    agentstore(&db)
        .args(["memory", "list", "--agent", "bot"])
        .assert()
        .success()
        .stdout(predicate::str::contains("small talk"));
}

#[test]
fn memory_stats_and_context() {
    let db = TempDb::new();
    add(&db, "bot", "0.9", "alpha");
    add(&db, "bot", "0.3", "beta");
    let s = json_of(&db, &["memory", "stats", "--agent", "bot"]);
    assert_eq!(s["total_entries"], 2);
    assert!((s["avg_importance_score"].as_f64().unwrap() - 0.6).abs() < 1e-12);
    let c = json_of(
        &db,
        &["memory", "context", "--agent", "bot", "--max-chars", "5"],
    );
    assert_eq!(
        c["text"],
        "alpha\n[... 1 earlier messages truncated for length ...]"
    );
    agentstore(&db)
        .args(["memory", "context", "--agent", "bot"])
        .assert()
        .success()
        .stdout("alpha\nbeta\n");
}

/// `memory prune --agent bot RULE...` with --json.
fn prune(db: &TempDb, rule: &[&str]) -> Value {
    let mut args = vec!["memory", "prune", "--agent", "bot"];
    args.extend_from_slice(rule);
    json_of(db, &args)
}

#[test]
fn prune_modes_and_dry_run() {
    let db = TempDb::new();
    for (i, imp) in ["0.1", "0.2", "0.8", "0.9"].iter().enumerate() {
        add(&db, "bot", imp, &format!("entry {i}"));
    }
    let dry = prune(&db, &["--min-importance", "0.5", "--dry-run"]);
    assert_eq!(dry["removed_entries"], 2);
    assert_eq!(dry["dry_run"], true);
    assert_eq!(
        json_of(&db, &["memory", "stats", "--agent", "bot"])["total_entries"],
        4
    );
    agentstore(&db)
        .args([
            "memory",
            "prune",
            "--agent",
            "bot",
            "--min-importance",
            "0.5",
        ])
        .assert()
        .success()
        .stdout("removed 2 entries (14 B)\n");
    assert_eq!(
        prune(&db, &["--keep-fraction", "0.5"])["removed_entries"],
        1
    );
    assert_eq!(
        prune(&db, &["--max-bytes", "0", "--dry-run"])["removed_bytes"],
        7
    );
    assert_eq!(prune(&db, &["--older-than", "1h"])["removed_entries"], 0);
}

#[test]
fn agents_list_and_check() {
    let db = TempDb::new();
    add(&db, "b", "0.5", "x");
    add(&db, "a", "0.5", "y");
    let v = json_of(&db, &["agents", "list"]);
    let names: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["a", "b"]);
    assert_eq!(v[0]["settings"]["max_entries"], 1000);
    let c = json_of(&db, &["check"]);
    assert_eq!(c["ok"], true);
    assert_eq!(c["row_counts"]["memory_entries"], 2);
}

#[test]
fn check_exits_3_when_a_counter_is_wrong() -> TestResult {
    let db = TempDb::new();
    add(&db, "bot", "0.5", "x");
    {
        let c = rusqlite::Connection::open(&db.path)?;
        c.execute("UPDATE memory_counters SET entries = 7", [])?;
    }
    agentstore(&db)
        .arg("check")
        .assert()
        .code(3)
        .stdout(predicate::str::contains(
            "counter says 7 entries, table has 1",
        ));
    Ok(())
}

#[test]
fn sql_prints_rows_and_refuses_writes() {
    let db = TempDb::new();
    add(&db, "bot", "0.5", "x");
    let v = json_of(
        &db,
        &["sql", "SELECT agent, total_entries FROM memory_stats"],
    );
    assert_eq!(v, serde_json::json!([{"agent": "bot", "total_entries": 1}]));
    agentstore(&db)
        .args(["sql", "DELETE FROM memory_entries"])
        .assert()
        .code(2)
        .stderr(predicate::str::starts_with(
            "agentstore: refused: DELETE is not allowed",
        ));
    agentstore(&db)
        .args([
            "sql",
            "--timeout",
            "200ms",
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT max(i) FROM n",
        ])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("time limit"));
}

#[test]
fn usage_errors_exit_2_with_one_line() {
    let db = TempDb::new();
    add(&db, "bot", "0.5", "x");
    let cases: &[&[&str]] = &[
        &[
            "memory",
            "add",
            "--agent",
            "bot",
            "--importance",
            "1.5",
            "x",
        ],
        &[
            "memory",
            "add",
            "--agent",
            "bot",
            "--importance",
            "NaN",
            "x",
        ],
        &["memory", "list", "--agent", "bot", "--order", "size"],
        &["memory", "list", "--agent", "bot", "--limit", "0"],
        &["memory", "prune", "--agent", "bot", "--older-than", "7x"],
        &["memory", "prune", "--agent", "bot"],
        &[
            "memory",
            "prune",
            "--agent",
            "bot",
            "--keep-fraction",
            "0.5",
            "--max-bytes",
            "1",
        ],
        &[
            "memory",
            "prune",
            "--agent",
            "bot",
            "--older-than",
            "100000000y",
        ],
        &["sql", "SELECT 1; SELECT 2"],
        &["mem", "list"],
    ];
    for args in cases {
        let out = agentstore(&db).args(*args).assert().code(2);
        let stderr = String::from_utf8(out.get_output().stderr.clone()).unwrap();
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.starts_with("agentstore: "), "{args:?}: {stderr}");
    }
    agentstore(&db)
        .args(["memory", "prune", "--agent", "bot", "--older-than", "7x"])
        .assert()
        .stderr(predicate::str::contains(
            "invalid value '7x' for '--older-than <OLDER_THAN>': not a duration; try 90m, 12h or 7d",
        ));
}

#[test]
fn runtime_errors_exit_1_and_reads_create_nothing() {
    let db = TempDb::new();
    for args in [
        &["agents", "list"][..],
        &["memory", "list", "--agent", "bot"],
        &["memory", "stats", "--agent", "bot"],
        &["check"],
        &["sql", "SELECT 1"],
        &[
            "memory",
            "prune",
            "--agent",
            "bot",
            "--min-importance",
            "0.5",
        ],
    ] {
        agentstore(&db)
            .args(args)
            .assert()
            .code(1)
            .stderr(predicate::str::starts_with(
                "agentstore: no agentstore database at",
            ));
    }
    assert!(db.snapshot().is_empty(), "a read created a file");

    add(&db, "bot", "0.5", "x");
    agentstore(&db)
        .args(["memory", "stats", "--agent", "ghost"])
        .assert()
        .code(1)
        .stderr("agentstore: no agent named 'ghost' (see `agentstore agents list`)\n");

    let text = TempDb::new();
    std::fs::write(&text.path, "hello").unwrap();
    agentstore(&text)
        .args(["memory", "add", "--agent", "bot", "x"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("is not an SQLite database"));
    assert_eq!(std::fs::read(&text.path).unwrap(), b"hello");
}

#[test]
fn help_has_examples() {
    for args in [
        &["memory", "add", "--help"][..],
        &["memory", "prune", "--help"],
        &["sql", "--help"],
        &["check", "--help"],
        &["agents", "list", "--help"],
    ] {
        Command::cargo_bin("agentstore")
            .unwrap()
            .args(args)
            .assert()
            .success()
            .stdout(predicate::str::contains("agentstore "))
            .stdout(predicate::str::contains("Example"));
    }
}

#[test]
fn a_closed_stdout_pipe_exits_quietly() -> TestResult {
    let db = TempDb::new();
    add(&db, "bot", "0.5", "x");
    let mut child = StdCommand::new(assert_cmd::cargo::cargo_bin("agentstore"))
        .arg("--db")
        .arg(&db.path)
        .args([
            "sql",
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 200000) SELECT i FROM n",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 16];
    stdout.read_exact(&mut first)?;
    drop(stdout); // like `| head -c 16`
    let out = child.wait_with_output()?;
    assert!(out.status.success(), "exit {:?}", out.status);
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

#[test]
fn read_commands_leave_the_files_unchanged() {
    let db = TempDb::new();
    add(&db, "bot", "0.9", "alpha");
    add(&db, "bot", "0.2", "beta");
    let before = db.snapshot();
    assert_eq!(
        before.len(),
        1,
        "a finished write leaves only the database file"
    );
    for args in [
        &["agents", "list"][..],
        &["memory", "list", "--agent", "bot"],
        &["memory", "stats", "--agent", "bot"],
        &["memory", "context", "--agent", "bot"],
        &[
            "memory",
            "prune",
            "--agent",
            "bot",
            "--keep-fraction",
            "0",
            "--dry-run",
        ],
        &["sql", "SELECT * FROM memory_entries"],
        &["check"],
    ] {
        agentstore(&db).args(args).assert().success();
        assert_eq!(
            db.snapshot(),
            before,
            "`{}` changed the files",
            args.join(" ")
        );
    }
}

#[test]
fn check_finds_duplicate_entry_ids() -> TestResult {
    let db = TempDb::new();
    add(&db, "bot", "0.5", "x");
    {
        // The unique index on `doc` keeps this from happening; a damaged file (here,
        // one that lost the index and the trigger) can still hold it.
        let c = rusqlite::Connection::open(&db.path)?;
        c.execute_batch(
            "DROP INDEX memory_entries_by_doc; DROP TRIGGER memory_entries_count_insert;",
        )?;
        c.execute(
            "INSERT INTO memory_entries (agent_id, importance, created_at, id, size_bytes, content)
             SELECT agent_id, 0.25, created_at, id, size_bytes, content FROM memory_entries",
            [],
        )?;
    }
    agentstore(&db)
        .arg("check")
        .assert()
        .code(3)
        .stdout(predicate::str::contains("entry id 1 appears 2 times"));
    Ok(())
}

#[test]
fn sixteen_processes_creating_one_file_at_once_all_succeed() -> TestResult {
    let _running = crate::zz_report::running();
    let db = TempDb::new();
    let children: Vec<_> = (0..16)
        .map(|i| {
            StdCommand::new(assert_cmd::cargo::cargo_bin("agentstore"))
                .arg("--db")
                .arg(&db.path)
                .args([
                    "memory",
                    "add",
                    "--agent",
                    &format!("a{}", i % 4),
                    &format!("hello {i}"),
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
        })
        .collect::<Result<_, _>>()?;
    for child in children {
        let out = child.wait_with_output()?;
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let report = json_of(&db, &["check"]);
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["schema_version"], agentstore::SCHEMA_VERSION);
    assert_eq!(report["journal_mode"], "wal");
    assert_eq!(report["row_counts"]["memory_entries"], 16);
    assert_eq!(report["row_counts"]["agents"], 4);
    crate::zz_report::add(crate::zz_report::Count::Processes, 16);
    crate::zz_report::add(crate::zz_report::Count::AcknowledgedWrites, 16);
    Ok(())
}

/// A database of 200 entries, closed, so that its bytes can be damaged.
fn populated_file() -> TempDb {
    let db = TempDb::new();
    let store = agentstore::Store::open(&db.path, agentstore::StoreOptions::default()).unwrap();
    let memory = store.memory(&store.agent("bot").unwrap());
    let items: Vec<(String, f64)> = (0..200)
        .map(|i| (format!("entry {i} {}", "padding ".repeat(8)), 0.5))
        .collect();
    memory
        .import_entries(
            &items
                .iter()
                .enumerate()
                .map(|(i, (c, imp))| agentstore::NewEntry {
                    role: Default::default(),
                    content: c.clone(),
                    importance: *imp,
                    created_at: i as i64,
                })
                .collect::<Vec<_>>(),
        )
        .unwrap();
    drop(memory);
    drop(store);
    db
}

#[test]
fn a_truncated_database_is_refused_untouched() {
    let db = populated_file();
    let bytes = std::fs::read(&db.path).unwrap();
    std::fs::write(&db.path, &bytes[..8192]).unwrap();
    let before = db.snapshot();
    for args in [
        &["memory", "add", "--agent", "bot", "x"][..],
        &["check"],
        &["sql", "SELECT 1"],
    ] {
        agentstore(&db)
            .args(args)
            .assert()
            .code(1)
            .stderr(predicate::str::contains("is a damaged SQLite database"));
    }
    assert_eq!(db.snapshot(), before);
}

#[test]
fn check_reports_a_damaged_page_with_exit_3() {
    let db = populated_file();
    let mut bytes = std::fs::read(&db.path).unwrap();
    // Scramble the header of the third page (a b-tree page of the schema's tables).
    for b in &mut bytes[2 * 4096..2 * 4096 + 12] {
        *b ^= 0x5A;
    }
    std::fs::write(&db.path, &bytes).unwrap();
    agentstore(&db)
        .arg("check")
        .assert()
        .code(3)
        .stdout(predicate::str::contains("the file is damaged"));
}

#[test]
fn a_directory_or_a_missing_parent_is_a_runtime_error() {
    let db = TempDb::new();
    for path in [
        db.dir.path().to_path_buf(),
        db.dir.path().join("no/such/x.db"),
    ] {
        Command::cargo_bin("agentstore")
            .unwrap()
            .arg("--db")
            .arg(&path)
            .args(["memory", "add", "--agent", "bot", "x"])
            .assert()
            .code(1)
            .stderr(predicate::str::starts_with("agentstore: cannot "));
    }
}

#[test]
fn a_read_only_file_can_be_read_but_not_written() -> TestResult {
    let _running = crate::zz_report::running();
    use std::os::unix::fs::PermissionsExt;
    // Root ignores permission bits, so run the binary as `nobody` when we are root.
    let is_root = StdCommand::new("id").arg("-u").output()?.stdout == b"0\n";
    let runuser = std::path::Path::new("/usr/sbin/runuser");
    if !is_root || !runuser.exists() {
        println!("skipped: needs root and runuser to act as another user");
        return Ok(());
    }
    let db = TempDb::new();
    add(&db, "bot", "0.5", "hello");
    // A directory and a copy of the binary that `nobody` can reach.
    std::fs::set_permissions(db.dir.path(), std::fs::Permissions::from_mode(0o777))?;
    let bin = db.dir.path().join("agentstore");
    std::fs::copy(assert_cmd::cargo::cargo_bin("agentstore"), &bin)?;
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755))?;
    std::fs::set_permissions(&db.path, std::fs::Permissions::from_mode(0o444))?;
    let db_bytes = std::fs::read(&db.path)?;
    let as_nobody = |args: &[&str]| {
        StdCommand::new(runuser)
            .args(["-u", "nobody", "--"])
            .arg(&bin)
            .arg("--db")
            .arg(&db.path)
            .args(args)
            .output()
    };
    let read = as_nobody(&["memory", "list", "--agent", "bot"])?;
    assert!(
        read.status.success(),
        "{}",
        String::from_utf8_lossy(&read.stderr)
    );
    assert!(String::from_utf8_lossy(&read.stdout).contains("hello"));
    let write = as_nobody(&["memory", "add", "--agent", "bot", "more"])?;
    assert_eq!(write.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&write.stderr).contains("the database is read-only"),
        "{}",
        String::from_utf8_lossy(&write.stderr)
    );
    assert_eq!(std::fs::read(&db.path)?, db_bytes, "the file changed");
    crate::zz_report::add(crate::zz_report::Count::BadInputs, 2);
    Ok(())
}

#[test]
fn a_missing_subcommand_shows_the_help_on_stderr() {
    for args in [&[][..], &["memory"], &["agents"]] {
        Command::cargo_bin("agentstore")
            .unwrap()
            .args(args)
            .assert()
            .code(2)
            .stdout("")
            .stderr(predicate::str::contains("Usage: agentstore"));
    }
}

#[test]
fn memory_add_reads_the_text_from_stdin_with_a_dash() {
    let db = TempDb::new();
    agentstore(&db)
        .args(["memory", "add", "--agent", "bot", "-"])
        .write_stdin("a long note\nover two lines\n")
        .assert()
        .success()
        .stdout("1\n");
    let v = json_of(&db, &["memory", "list", "--agent", "bot"]);
    assert_eq!(v[0]["content"], "a long note\nover two lines");
}
