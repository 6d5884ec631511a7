//! Issue 12: what a careful user, and someone out to break it, found. Each test is
//! named for the class of fault it pins down.

use std::io::Read;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::process::{Command, Stdio};

use predicates::prelude::*;

use crate::common::{TempDb, agentstore, agentstore_at, json_of};

/// The binary on `db` with `args`, running, with stdin, stdout and stderr piped.
fn spawn(db: &TempDb, args: &[&str]) -> std::process::Child {
    Command::new(assert_cmd::cargo::cargo_bin("agentstore"))
        .arg("--db")
        .arg(&db.path)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn init(db: &TempDb) {
    agentstore(db).arg("init").assert().success();
}

fn add(db: &TempDb, agent: &str, text: &str) {
    agentstore(db)
        .args(["memory", "add", "--agent", agent, text])
        .assert()
        .success();
}

// ---- It must never damage what is not its own -------------------------------------

#[test]
fn special_database_paths_are_refused_before_sqlite_touches_them() {
    let dir = tempfile::tempdir().unwrap();
    for (path, code, says) in [
        ("/dev/null", 2, "not a regular file"),
        ("/dev/zero", 2, "not a regular file"),
        (":memory:", 2, ":memory:"),
        ("file:x.db?mode=memory", 2, "special name"),
        ("", 2, "a value is required"),
    ] {
        agentstore_at(std::path::Path::new(path))
            .current_dir(dir.path())
            .arg("init")
            .assert()
            .code(code)
            .stderr(predicate::str::contains(says));
    }
    let fifo = dir.path().join("fifo");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    agentstore_at(&fifo)
        .args(["stats"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("FIFO"));
    // Nothing appeared: no journal beside the device, no `:memory:` file.
    assert!(!std::path::Path::new("/dev/zero-journal").exists());
    assert!(!std::path::Path::new("/dev/null-journal").exists());
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, vec![std::ffi::OsString::from("fifo")]);
}

fn export_to(db: &TempDb, target: &std::path::Path) -> assert_cmd::assert::Assert {
    agentstore(db)
        .arg("export")
        .arg("--output")
        .arg(target)
        .assert()
}

#[test]
fn export_writes_through_devices_and_fifos_and_never_replaces_them() {
    let db = TempDb::new();
    add(&db, "bot", "remember this");
    export_to(&db, std::path::Path::new("/dev/null")).success();
    let null = std::fs::metadata("/dev/null").unwrap();
    assert!(null.file_type().is_char_device(), "/dev/null was replaced");

    let fifo = db.dir.path().join("pipe");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || {
            let mut text = String::new();
            std::fs::File::open(fifo)
                .unwrap()
                .read_to_string(&mut text)
                .unwrap();
            text
        })
    };
    export_to(&db, &fifo).success();
    let text = reader.join().unwrap();
    assert!(text.contains("remember this"), "{text}");
    assert!(
        std::fs::symlink_metadata(&fifo)
            .unwrap()
            .file_type()
            .is_fifo()
    );
}

#[test]
fn export_follows_symlinks_and_keeps_a_replaced_files_mode() {
    let db = TempDb::new();
    add(&db, "bot", "remember this");
    let dir = db.dir.path();
    let real = dir.join("real.jsonl");
    std::fs::write(&real, "old").unwrap();
    std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o600)).unwrap();
    let link = dir.join("link.jsonl");
    std::os::unix::fs::symlink("real.jsonl", &link).unwrap();

    export_to(&db, &link).success();
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    let meta = std::fs::metadata(&real).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert!(
        std::fs::read_to_string(&real)
            .unwrap()
            .contains("remember this")
    );

    std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o640)).unwrap();
    export_to(&db, &real).success();
    let mode = std::fs::metadata(&real).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o640);

    let new = dir.join("new.jsonl");
    export_to(&db, &new).success();
    let mode = std::fs::metadata(&new).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "a new export is owner-only");
    // No temporary file is left behind.
    let partials = std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .contains("partial")
        })
        .count();
    assert_eq!(partials, 0);
}

#[test]
fn export_refuses_a_directory_before_any_work_and_dash_is_stdout() {
    let db = TempDb::new();
    add(&db, "bot", "remember this");
    export_to(&db, db.dir.path())
        .code(2)
        .stderr(predicate::str::contains("is a directory"));
    export_to(&db, &db.dir.path().join("missing/x.jsonl"))
        .code(2)
        .stderr(predicate::str::contains("does not exist"));
    export_to(&db, std::path::Path::new("-"))
        .success()
        .stdout(predicate::str::starts_with("{\"type\":\"header\""));
    // A directory is refused before the database is even opened: no file is created.
    let fresh = TempDb::new();
    export_to(&fresh, fresh.dir.path()).code(2);
    assert!(!fresh.path.exists());
}

// ---- Memory and time stay bounded ----------------------------------------------------

/// Runs the binary under a cap on its address space, so a result collected in memory
/// fails instead of passing.
fn capped(db: &TempDb, megabytes: u64, args: &str) -> std::process::Output {
    let bin = assert_cmd::cargo::cargo_bin("agentstore");
    Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -v {}; exec '{}' --db '{}' {args}",
            megabytes * 1024,
            bin.display(),
            db.path.display()
        ))
        .env_remove("COLUMNS")
        .output()
        .unwrap()
}

#[test]
fn sql_streams_rows_in_bounded_memory_as_table_and_json() {
    let db = TempDb::new();
    init(&db);
    // 300,000 rows of 300 bytes: about 90 MB of text, more than twice that collected
    // as values, under a 100 MB cap on the whole process.
    let query = "\"WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c LIMIT 300000) SELECT x, printf('%0300d', x) AS pad FROM c\"";
    for (json, frame) in [("", 4), ("--json", 2)] {
        let out = capped(&db, 100, &format!("{json} sql {query} --timeout 10m"));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // Every row arrives: one line each, inside the table's frame or the array.
        let lines = out.stdout.iter().filter(|b| **b == b'\n').count();
        assert_eq!(lines, 300_000 + frame);
        if !json.is_empty() {
            let tail = String::from_utf8_lossy(&out.stdout[out.stdout.len() - 700..]).into_owned();
            assert!(tail.contains("{\"x\":300000,"), "{tail}");
        }
    }
}

#[test]
fn sql_stops_at_a_closed_pipe_and_at_its_timeout() {
    let db = TempDb::new();
    init(&db);
    let mut child = spawn(
        &db,
        &[
            "sql",
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c) SELECT x FROM c",
            "--timeout",
            "10m",
        ],
    );
    let mut first = [0u8; 64];
    child
        .stdout
        .as_mut()
        .unwrap()
        .read_exact(&mut first)
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    // An endless query piped to `head` ends when the reader goes, quietly.
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Past the timeout, what was produced stays and the error says why.
    let out = agentstore(&db)
        .args([
            "--json",
            "sql",
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c) SELECT x FROM c",
            "--timeout",
            "300ms",
        ])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("interrupted after 300ms"));
    let stdout = String::from_utf8_lossy(&out.get_output().stdout);
    assert!(stdout.starts_with("[\n  {\"x\":1}"));
    // Cut short: not a JSON document a parser would take as the whole result.
    assert!(serde_json::from_str::<serde_json::Value>(&stdout).is_err());
}

fn widest_line(text: &str) -> usize {
    text.lines().map(|l| l.chars().count()).max().unwrap_or(0)
}

#[test]
fn table_cells_are_cut_to_the_width_in_linear_time() {
    let db = TempDb::new();
    init(&db);
    // 60 MB of blob drawn as a table: cut, not wrapped (it used to run past 120 s).
    let out = agentstore(&db)
        .args(["sql", "SELECT zeroblob(60000000) AS b, 'short' AS s"])
        .assert()
        .success();
    let text = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    assert!(widest_line(&text) <= 100, "{text}");
    assert!(text.contains("X'0000"), "{text}");
    assert!(text.contains('…'), "a cut cell is marked: {text}");
    assert!(text.contains("short"));

    // COLUMNS sets the width; --wide lifts it; --json gives the full value.
    let long = format!("SELECT '{}' AS v", "y".repeat(5000));
    let out = agentstore(&db)
        .env("COLUMNS", "40")
        .args(["sql", &long])
        .assert()
        .success();
    assert!(widest_line(&String::from_utf8_lossy(&out.get_output().stdout)) <= 40);
    let out = agentstore(&db)
        .args(["--wide", "sql", &long])
        .assert()
        .success();
    let text = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    assert!(text.contains(&"y".repeat(5000)) && !text.contains('…'));
    let rows = json_of(&db, &["sql", &long]);
    assert_eq!(rows[0]["v"].as_str().unwrap().len(), 5000);
}

#[test]
fn two_large_memory_entries_list_as_a_narrow_table() {
    let db = TempDb::new();
    let big = "z".repeat(1 << 20);
    for _ in 0..2 {
        agentstore(&db)
            .args(["memory", "add", "--agent", "bot", "-"])
            .write_stdin(big.clone())
            .assert()
            .success();
    }
    let out = agentstore(&db)
        .args(["memory", "list", "--agent", "bot"])
        .assert()
        .success();
    assert!(widest_line(&String::from_utf8_lossy(&out.get_output().stdout)) <= 100);
}

#[test]
fn stdin_reads_stop_past_the_limit_and_binary_is_invalid_input() {
    let db = TempDb::new();
    init(&db);
    // 2 MiB: refused without reading all of it, nothing stored.
    agentstore(&db)
        .args(["memory", "add", "--agent", "bot", "-"])
        .write_stdin(vec![b'a'; 2 << 20])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("limit"));
    agentstore(&db)
        .args(["memory", "add", "--agent", "bot", "-"])
        .write_stdin(vec![0xff, 0xfe, 0x00, 0x80])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("UTF-8"));
    agentstore(&db)
        .args([
            "tools", "cache", "lookup", "--agent", "bot", "--tool", "t", "--params", "-",
        ])
        .write_stdin(vec![0xc3, 0x28])
        .assert()
        .code(2);
    let agents = json_of(&db, &["agents", "list"]);
    assert_eq!(agents.as_array().map(Vec::len), Some(0), "{agents}");
}

// ---- Errors a person can act on -----------------------------------------------------

#[test]
fn agent_names_refuse_blank_invisible_and_overlong_values() {
    let db = TempDb::new();
    init(&db);
    let long = "n".repeat(10_000);
    for bad in [
        "",
        "   ",
        "\t",
        "a\u{202e}b",
        "zero\u{200b}width",
        "\u{feff}bom",
        "a\nb",
        &long,
    ] {
        let out = agentstore(&db)
            .args(["memory", "add", "--agent", bad, "x"])
            .assert()
            .code(2);
        let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
        assert!(
            stderr.len() < 400,
            "a {}-byte error for {bad:?}",
            stderr.len()
        );
        assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    }
    agentstore(&db)
        .args(["memory", "add", "--agent", &"n".repeat(200), "x"])
        .assert()
        .success();
    // An unknown agent's name is clipped too.
    let out = agentstore(&db)
        .args(["memory", "stats", "--agent", &long])
        .assert()
        .failure();
    assert!(out.get_output().stderr.len() < 400);
}

#[test]
fn a_long_value_in_a_usage_error_is_clipped() {
    let db = TempDb::new();
    let long = "9".repeat(10_000);
    let out = agentstore(&db)
        .args(["memory", "list", "--agent", "bot", "--limit", &long])
        .assert()
        .code(2);
    assert!(out.get_output().stderr.len() < 400);
}

#[test]
fn number_and_duration_flags_say_what_is_wrong() {
    let db = TempDb::new();
    for (args, says) in [
        (
            &[
                "memory",
                "list",
                "--agent",
                "b",
                "--limit",
                "18446744073709551616",
            ][..],
            "too large",
        ),
        (
            &["--busy-timeout", "-1s", "stats"][..],
            "cannot be negative",
        ),
        (
            &["memory", "list", "--agent", "b", "--limit", "-3"][..],
            "must not be negative",
        ),
    ] {
        agentstore(&db)
            .args(args)
            .assert()
            .code(2)
            .stderr(predicate::str::contains(says));
    }
}

/// `n` distinct words, `w0 w1 ...`, repeated until the text is about `bytes` long.
fn words_text(n: usize, bytes: usize) -> String {
    let one: Vec<String> = (0..n).map(|i| format!("w{}", letters(i))).collect();
    let one = one.join(" ");
    let mut text = String::new();
    while text.len() + one.len() < bytes {
        text.push_str(&one);
        text.push(' ');
    }
    text
}

/// A number as letters (digits would trip the negation-and-number guard).
fn letters(mut i: usize) -> String {
    let mut s = String::new();
    loop {
        s.push((b'a' + (i % 26) as u8) as char);
        i /= 26;
        if i == 0 {
            return s;
        }
    }
}

#[test]
fn the_fuzzy_lookup_of_a_megabyte_message_is_linear_or_skipped_with_its_reason() {
    let db = TempDb::new();
    let store = agentstore::Store::open(&db.path, agentstore::StoreOptions::default()).unwrap();
    let agent = store.agent("bot").unwrap();
    let options = agentstore::FuzzyOptions::default();
    // 4,000 distinct words, repeated to 990 KB; the query changes one word.
    let cached = words_text(4000, 990_000);
    store
        .response_cache(&agent)
        .put(&cached, "the long answer")
        .unwrap();
    let near = cached.replacen("wa ", "changed ", 1);
    let hit = store
        .response_cache(&agent)
        .lookup(&near, options)
        .unwrap()
        .expect("a fuzzy match");
    assert!(hit.similarity > 0.99, "{}", hit.similarity);
    // The same with a number in it: the guard blocks it, and says so.
    let numbered = cached.replacen("wa ", "42 ", 1);
    let lookup = store
        .response_cache(&agent)
        .lookup_explained(&numbered, options)
        .unwrap();
    assert!(lookup.found.is_none());
    assert!(matches!(
        lookup.no_match,
        Some(agentstore::NoMatch::Guarded { .. })
    ));
    // Past the documented limit of distinct words: skipped, with the reason.
    let huge = words_text(agentstore::MAX_FUZZY_WORDS + 1, 200_000);
    let lookup = store
        .response_cache(&agent)
        .lookup_explained(&huge, options)
        .unwrap();
    assert_eq!(
        lookup.no_match,
        Some(agentstore::NoMatch::TooManyWords {
            words: agentstore::MAX_FUZZY_WORDS + 1,
            limit: agentstore::MAX_FUZZY_WORDS
        })
    );
}

#[test]
fn importing_the_same_export_twice_is_refused_and_changes_nothing() {
    let db = TempDb::new();
    add(&db, "bot", "first");
    add(&db, "bot", "second");
    let export = db.dir.path().join("bot.jsonl");
    export_to(&db, &export).success();
    let other = TempDb::new();
    agentstore(&other)
        .arg("import")
        .arg(&export)
        .assert()
        .success();
    let before = other.snapshot();
    agentstore(&other)
        .arg("import")
        .arg(&export)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("was imported before"));
    assert_eq!(other.snapshot(), before);
    // Into the file it came from: the same agent, refused too.
    agentstore(&db).arg("import").arg(&export).assert().code(2);
    // A copy under a new name is the way to have it twice.
    agentstore(&other)
        .args(["import", "--agent", "bot-copy"])
        .arg(&export)
        .assert()
        .success();
    let stats = json_of(&other, &["memory", "stats", "--agent", "bot-copy"]);
    assert_eq!(stats["total_entries"], 2, "{stats}");
    let stats = json_of(&other, &["memory", "stats", "--agent", "bot"]);
    assert_eq!(stats["total_entries"], 2, "{stats}");
}

#[test]
fn an_export_with_a_byte_order_mark_imports() {
    let db = TempDb::new();
    add(&db, "bot", "first");
    let export = db.dir.path().join("bot.jsonl");
    export_to(&db, &export).success();
    let mut bytes = "\u{feff}".as_bytes().to_vec();
    bytes.extend(std::fs::read(&export).unwrap());
    std::fs::write(&export, bytes).unwrap();
    let other = TempDb::new();
    agentstore(&other)
        .arg("import")
        .arg(&export)
        .assert()
        .success();
    agentstore(&other).arg("check").assert().success();
}

#[test]
fn check_reports_rows_outside_the_invariants_import_refuses() {
    let db = TempDb::new();
    add(&db, "bot", "first");
    agentstore(&db).arg("check").assert().success();
    {
        let c = rusqlite::Connection::open(&db.path).unwrap();
        c.execute_batch(
            "INSERT INTO tool_counters (agent_id, tool, total_calls, cache_hits) VALUES (1, 't', 1, 5);
             INSERT INTO memory_entries (agent_id, importance, created_at, id, size_bytes, content)
                  VALUES (1, 0.5, 0, 0, 1, 'x');
             INSERT INTO tool_cache VALUES (zeroblob(32), 's', 't', '{}', '1', 100, 50);
             INSERT INTO response_log (agent_id, at, duration, bucket, outcome) VALUES (1, 0, 1e300, 0, 'error');",
        )
        .unwrap();
    }
    let out = agentstore(&db).arg("check").assert().code(3);
    let text = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    for says in [
        "more cache hits than calls",
        "memory entry id 0 is below 1",
        "expires before it was created",
        "out of range",
    ] {
        assert!(text.contains(says), "{says:?} not in {text}");
    }
}

// ---- Errors a person can act on (continued) -----------------------------------------

#[test]
fn database_errors_show_no_sql_unless_verbose() {
    let db = TempDb::new();
    init(&db);
    let query = "SELECT abs(-9223372036854775808)";
    let out = agentstore(&db).args(["sql", query]).assert().code(1);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(stderr.contains("integer overflow"), "{stderr}");
    assert!(!stderr.contains("SELECT"), "SQL shown: {stderr}");
    agentstore(&db)
        .args(["-v", "sql", query])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("(in `SELECT abs("));
}

#[test]
fn a_locked_database_names_the_timeout_and_the_flag() {
    let db = TempDb::new();
    add(&db, "bot", "first");
    let holder = rusqlite::Connection::open(&db.path).unwrap();
    holder.execute_batch("BEGIN IMMEDIATE").unwrap();
    agentstore(&db)
        .args([
            "--busy-timeout",
            "150ms",
            "memory",
            "add",
            "--agent",
            "bot",
            "second",
        ])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("busy timeout (150ms)"))
        .stderr(predicate::str::contains("--busy-timeout"));
    holder.execute_batch("ROLLBACK").unwrap();
}

/// A WAL file without its -shm on a read-only mount: said plainly, no SQL. Needs a
/// bind mount, so root; elsewhere it says why it skips.
#[test]
fn a_wal_file_on_a_read_only_mount_gets_an_actionable_message() {
    let db = TempDb::new();
    add(&db, "bot", "first");
    let mount = db.dir.path().join("ro");
    std::fs::create_dir(&mount).unwrap();
    let bind = |args: &[&str]| {
        Command::new("mount")
            .args(args)
            .status()
            .is_ok_and(|s| s.success())
    };
    let (src, dst) = (db.dir.path().to_str().unwrap(), mount.to_str().unwrap());
    if !bind(&["--bind", src, dst]) {
        eprintln!("skipped: cannot bind-mount here (needs root)");
        return;
    }
    let mounted = bind(&["-o", "remount,bind,ro", dst]);
    let out = mounted.then(|| {
        agentstore_at(&mount.join("agent.db"))
            .arg("stats")
            .output()
            .unwrap()
    });
    let unmounted = Command::new("umount")
        .arg(dst)
        .status()
        .is_ok_and(|s| s.success());
    assert!(unmounted, "could not unmount {dst}");
    let out = out.expect("remount read-only");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("WAL mode and its -shm file is missing"),
        "{stderr}"
    );
    assert!(!stderr.contains("SELECT"), "{stderr}");
}

// ---- What the README promises about crashes must hold --------------------------------

fn log_rows(db: &TempDb) -> u64 {
    let c = rusqlite::Connection::open(&db.path).unwrap();
    c.query_row("SELECT count(*) FROM response_log", [], |r| r.get(0))
        .unwrap()
}

/// A chat with its stdin kept open, and a reader of its replies.
struct Chat {
    child: std::process::Child,
    stdin: std::process::ChildStdin,
    replies: std::io::Lines<std::io::BufReader<std::process::ChildStdout>>,
}

impl Chat {
    fn start(db: &TempDb) -> Chat {
        use std::io::BufRead;
        let mut child = spawn(
            db,
            &[
                "--json",
                "chat",
                "--agent",
                "bot",
                "--simulated-latency",
                "none",
            ],
        );
        let stdin = child.stdin.take().unwrap();
        let replies = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        Chat {
            child,
            stdin,
            replies,
        }
    }

    /// Sends a message and waits for its reply.
    fn say(&mut self, message: &str) -> serde_json::Value {
        use std::io::Write as _;
        writeln!(self.stdin, "{message}").unwrap();
        self.stdin.flush().unwrap();
        let line = self.replies.next().expect("a reply").unwrap();
        serde_json::from_str(&line).unwrap()
    }
}

#[test]
fn counters_reach_the_file_on_a_timer_when_calls_stop() {
    let db = TempDb::new();
    init(&db);
    let mut chat = Chat::start(&db);
    for i in 0..10 {
        chat.say(&format!("question number {i}"));
    }
    // Quiet for longer than the one-second flush interval, then a kill -9: no next
    // call ever came to flush, the timer did.
    std::thread::sleep(std::time::Duration::from_millis(2500));
    chat.child.kill().unwrap();
    chat.child.wait().unwrap();
    assert_eq!(log_rows(&db), 10);
}

#[test]
fn chat_flushes_and_exits_130_or_143_on_a_signal() {
    for (signal, code) in [("INT", 130), ("TERM", 143)] {
        let db = TempDb::new();
        init(&db);
        let mut chat = Chat::start(&db);
        for i in 0..3 {
            chat.say(&format!("question {i}"));
        }
        // At once, within the flush interval: only the signal's flush writes them.
        let pid = chat.child.id().to_string();
        assert!(
            Command::new("kill")
                .args(["-s", signal, &pid])
                .status()
                .unwrap()
                .success()
        );
        let status = chat.child.wait().unwrap();
        assert_eq!(status.code(), Some(code), "SIG{signal}");
        assert_eq!(log_rows(&db), 3, "SIG{signal}");
        let mut stderr = String::new();
        chat.child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        assert!(stderr.contains("were written"), "{stderr}");
    }
}

#[test]
fn demo_flushes_and_exits_130_on_ctrl_c() {
    let db = TempDb::new();
    init(&db);
    let mut child = spawn(
        &db,
        &[
            "demo",
            "--messages",
            "100000",
            "--simulated-latency",
            "none",
        ],
    );
    // Into the response phase: rows are being logged.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while log_rows(&db) == 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(
        Command::new("kill")
            .args(["-s", "INT", &child.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(stderr.contains("were written"), "{stderr}");
    agentstore(&db).arg("check").assert().success();
}

#[test]
fn chat_reports_a_line_that_is_not_utf8_and_goes_on() {
    let db = TempDb::new();
    init(&db);
    let mut input = b"hello there\n".to_vec();
    input.extend_from_slice(b"bad \xff\xfe bytes\n");
    input.extend_from_slice(b"still here\n");
    let out = agentstore(&db)
        .args([
            "--json",
            "chat",
            "--agent",
            "bot",
            "--simulated-latency",
            "none",
        ])
        .write_stdin(input)
        .assert()
        .code(1)
        .stderr(predicate::str::contains("line 2 is not UTF-8"));
    let replies = String::from_utf8_lossy(&out.get_output().stdout)
        .lines()
        .count();
    assert_eq!(replies, 2);
}

#[test]
fn memory_list_streams_a_large_limit_in_bounded_memory() {
    let db = TempDb::new();
    // 50,000 entries of 2 KB: 100 MB listed, under an 80 MB cap on the process.
    let file = db.dir.path().join("big.jsonl");
    {
        use std::io::Write as _;
        let mut f = std::io::BufWriter::new(std::fs::File::create(&file).unwrap());
        writeln!(
            f,
            r#"{{"type":"header","format":"agentstore-export","version":1}}"#
        )
        .unwrap();
        writeln!(f, r#"{{"type":"agent","name":"bot","created_at":"2026-01-01T00:00:00.000000Z","message_count":50000,"tool_scope":null,"target_response_time":2.0,"settings":{{"max_memory_mb":1000.0,"max_entries":100000,"cleanup_interval":100,"keep_fraction":0.7,"importance_threshold":0.5,"importance_weight":0.7,"recency_weight":0.3,"low_water":0.8}}}}"#).unwrap();
        let pad = "x".repeat(2000);
        for i in 1..=50_000 {
            writeln!(f, r#"{{"type":"memory","agent":"bot","id":{i},"created_at":"2026-01-01T00:00:00.000000Z","importance":0.5,"content":"{i} {pad}"}}"#).unwrap();
        }
    }
    agentstore(&db).arg("import").arg(&file).assert().success();
    for json in ["--json", ""] {
        let out = capped(
            &db,
            80,
            &format!("{json} memory list --agent bot --limit 200000"),
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let lines = out.stdout.iter().filter(|b| **b == b'\n').count();
        assert_eq!(lines, 50_000 + if json.is_empty() { 4 } else { 2 });
    }
    let rows = json_of(&db, &["memory", "list", "--agent", "bot", "--limit", "3"]);
    assert_eq!(rows.as_array().map(Vec::len), Some(3));
}

// ---- Space comes back ---------------------------------------------------------------

#[test]
fn compact_gives_pages_back_while_another_process_writes() {
    let db = TempDb::new();
    {
        let store = agentstore::Store::open(&db.path, agentstore::StoreOptions::default()).unwrap();
        store.agent("bot").unwrap();
        store
            .set_memory_settings(
                "bot",
                &agentstore::MemorySettings::default()
                    .with_max_entries(100_000)
                    .with_max_memory_mb(1000.0)
                    .with_cleanup_interval(0),
            )
            .unwrap();
        let agent = store.agent("bot").unwrap();
        let memory = store.memory(&agent);
        let text = "p".repeat(2000);
        let entries: Vec<(String, f64)> = (0..6000).map(|i| (format!("{i} {text}"), 0.5)).collect();
        memory.add_many(&entries).unwrap();
    }
    agentstore(&db)
        .args([
            "memory",
            "prune",
            "--agent",
            "bot",
            "--keep-fraction",
            "0.5",
        ])
        .assert()
        .success();
    let check = json_of(&db, &["check"]);
    let free = check["pages"]["free_pages"].as_u64().unwrap();
    assert!(free > 1000, "{check}");
    assert!(
        check["notes"].to_string().contains("agentstore compact"),
        "{check}"
    );
    let size_before = std::fs::metadata(&db.path).unwrap().len();

    // A writer process keeps adding while compact runs.
    let mut writer = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "for i in $(seq 1 40); do '{}' --db '{}' memory add --agent other \"note $i\" || exit 1; done",
            assert_cmd::cargo::cargo_bin("agentstore").display(),
            db.path.display()
        ))
        .spawn()
        .unwrap();
    let report = json_of(&db, &["compact"]);
    assert!(
        writer.wait().unwrap().success(),
        "a write failed during compact"
    );
    assert_eq!(report["mode"], "incremental");
    assert_eq!(report["incremental_vacuum"], true);
    assert!(report["bytes_reclaimed"].as_u64().unwrap() > 0, "{report}");
    assert!(std::fs::metadata(&db.path).unwrap().len() < size_before);
    let stats = json_of(&db, &["memory", "stats", "--agent", "other"]);
    assert_eq!(stats["total_entries"], 40);
    agentstore(&db).arg("check").assert().success();
    // A full VACUUM works too, and says so.
    let full = json_of(&db, &["compact", "--full"]);
    assert_eq!(full["mode"], "full");
}

// ---- The smaller ones ---------------------------------------------------------------

#[test]
fn sql_reads_bare_pragmas_and_names_what_it_refuses() {
    let db = TempDb::new();
    init(&db);
    let rows = json_of(&db, &["sql", "PRAGMA journal_mode"]);
    assert_eq!(rows[0]["journal_mode"], "wal");
    let rows = json_of(&db, &["sql", "PRAGMA auto_vacuum"]);
    assert_eq!(
        rows[0]["auto_vacuum"], 2,
        "new files use incremental vacuum"
    );
    let before = db.snapshot();
    for (query, says) in [
        ("ANALYZE", "ANALYZE"),
        ("analyze memory_entries", "ANALYZE"),
        ("CREATE TEMP TABLE t(x)", "temporary objects"),
        ("PRAGMA journal_mode = DELETE", "not a read-only pragma"),
        ("CREATE TABLE z(x)", "schema change"),
    ] {
        let out = agentstore(&db).args(["sql", query]).assert().code(2);
        let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
        assert!(stderr.contains(says), "{query}: {stderr}");
        assert!(!stderr.contains("INSERT"), "{query}: {stderr}");
        assert!(
            out.get_output().stdout.is_empty(),
            "{query}: no '(no rows)' before an error"
        );
    }
    assert_eq!(db.snapshot(), before);
}

#[test]
fn two_demos_at_once_report_their_own_runs() {
    let db = TempDb::new();
    init(&db);
    let demos: Vec<_> = (0..2)
        .map(|_| {
            spawn(
                &db,
                &[
                    "--json",
                    "demo",
                    "--messages",
                    "10",
                    "--simulated-latency",
                    "none",
                ],
            )
        })
        .collect();
    for demo in demos {
        let out = demo.wait_with_output().unwrap();
        assert!(out.status.success());
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let tools = &report["tool_phase"];
        assert!(
            tools["cache_hits"].as_u64() <= tools["requests"].as_u64(),
            "{tools}"
        );
        assert!(
            tools["cache_hit_rate_pct"].as_f64().unwrap() <= 100.0,
            "{tools}"
        );
        let responses = &report["response_phase"];
        assert!(responses["cache_hit_rate_pct"].as_f64().unwrap() <= 100.0);
    }
}
