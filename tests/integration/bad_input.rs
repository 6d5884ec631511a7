//! Every bad input the reliability issue lists, through the CLI as a user runs it:
//! each gets one clear line on stderr, exit 2 (usage, invalid value) or 1 (runtime
//! failure), no panic, and leaves the directory byte-for-byte as it was (no new
//! -wal, -shm or -journal either). Odd but valid content round-trips exactly.

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::common::{TempDb, agentstore, json_of, snapshot_dir};
use crate::zz_report::{self, Count};

/// One bad invocation: what it is, its arguments, its stdin, the exit code and a piece
/// of the message.
struct Case {
    what: &'static str,
    args: Vec<String>,
    stdin: Option<Vec<u8>>,
    code: i32,
    says: &'static str,
}

fn case(what: &'static str, args: &[&str], code: i32, says: &'static str) -> Case {
    Case {
        what,
        args: args.iter().map(|a| a.to_string()).collect(),
        stdin: None,
        code,
        says,
    }
}

fn piped(what: &'static str, args: &[&str], stdin: Vec<u8>, code: i32, says: &'static str) -> Case {
    Case {
        stdin: Some(stdin),
        ..case(what, args, code, says)
    }
}

/// Runs `case` against `db` (a path; it may be a directory or missing) and checks the
/// outcome and that `dir` is unchanged.
fn refused(db: &std::path::Path, dir: &std::path::Path, c: &Case) {
    let before = snapshot_dir(dir);
    let mut child = Command::new(assert_cmd::cargo::cargo_bin("agentstore"))
        .env_remove("AGENTSTORE_DB")
        .arg("--db")
        .arg(db)
        .args(&c.args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run agentstore");
    let mut stdin = child.stdin.take().expect("stdin");
    let input = c.stdin.clone().unwrap_or_default();
    // The command may stop reading early (a refused size): a broken pipe is fine.
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().expect("wait");
    let _ = writer.join();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(c.code), "{}: {stderr}", c.what);
    assert!(stderr.starts_with("agentstore: "), "{}: {stderr}", c.what);
    assert_eq!(stderr.lines().count(), 1, "{}: {stderr}", c.what);
    assert!(stderr.contains(c.says), "{}: {stderr}", c.what);
    assert!(!stderr.contains("panicked"), "{}: {stderr}", c.what);
    assert_eq!(
        snapshot_dir(dir),
        before,
        "{}: the directory changed",
        c.what
    );
}

/// A file with an agent, memory, a cached tool result and a cached response, closed.
fn populated() -> TempDb {
    let db = TempDb::new();
    json_of(&db, &["memory", "add", "--agent", "bot", "hello"]);
    let store = agentstore::Store::open(&db.path, agentstore::StoreOptions::default()).unwrap();
    let bot = store.existing_agent("bot").unwrap();
    store
        .tool_cache(&bot)
        .put(
            "square",
            &serde_json::json!({"n": 3}),
            &serde_json::json!({"square": 9}),
            std::time::Duration::from_secs(3600),
        )
        .unwrap();
    store
        .response_cache(&bot)
        .put("hi there", "hello!")
        .unwrap();
    drop(store);
    db
}

#[test]
fn bad_values_and_names_are_refused_and_change_nothing() {
    let _running = zz_report::running();
    let db = populated();
    let add = |imp: &'static str| ["memory", "add", "--agent", "bot", "--importance", imp, "x"];
    let big = vec![b'a'; (1 << 20) + 1];
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000)).into_bytes();
    let huge = vec![b'7'; 10 << 20];
    let lookup = [
        "tools", "cache", "lookup", "--agent", "bot", "--tool", "square", "--params",
    ];
    let with = |extra: &'static str| -> Vec<&'static str> {
        let mut v = lookup.to_vec();
        v.push(extra);
        v
    };
    let cases = vec![
        case("importance NaN", &add("NaN"), 2, "between 0 and 1"),
        case("importance +inf", &add("inf"), 2, "between 0 and 1"),
        case("importance -inf", &add("-inf"), 2, "between 0 and 1"),
        case("importance negative", &add("-0.5"), 2, "between 0 and 1"),
        case("importance above 1", &add("1.5"), 2, "between 0 and 1"),
        case(
            "prune below NaN",
            &[
                "memory",
                "prune",
                "--agent",
                "bot",
                "--min-importance",
                "NaN",
            ],
            2,
            "between 0 and 1",
        ),
        case(
            "empty content",
            &["memory", "add", "--agent", "bot", ""],
            2,
            "content is empty",
        ),
        piped(
            "content over 1 MiB",
            &["memory", "add", "--agent", "bot", "-"],
            big.clone(),
            2,
            "the most one entry can hold",
        ),
        case(
            "unknown agent",
            &["memory", "list", "--agent", "ghost"],
            1,
            "no agent named 'ghost'",
        ),
        case(
            "unknown agent (write)",
            &[
                "memory",
                "prune",
                "--agent",
                "ghost",
                "--keep-fraction",
                "0.5",
            ],
            1,
            "no agent named 'ghost'",
        ),
        case(
            "unknown tool",
            &["tools", "cache", "list", "--tool", "ghost"],
            1,
            "no tool named 'ghost'",
        ),
        case(
            "unknown tool (purge)",
            &["tools", "cache", "purge", "--all", "--tool", "ghost"],
            1,
            "no tool named 'ghost'",
        ),
        case(
            "unknown memory order",
            &["memory", "list", "--agent", "bot", "--order", "size"],
            2,
            "invalid value 'size'",
        ),
        case(
            "unknown response order",
            &["responses", "list", "--agent", "bot", "--order", "nope"],
            2,
            "invalid value 'nope'",
        ),
        case(
            "unknown command",
            &["memroy", "list"],
            2,
            "unrecognized subcommand",
        ),
        case(
            "negative duration",
            &["memory", "prune", "--agent", "bot", "--older-than", "-5m"],
            2,
            "cannot be negative",
        ),
        case(
            "zero duration",
            &["memory", "prune", "--agent", "bot", "--older-than", "0s"],
            2,
            "is zero",
        ),
        case(
            "absurd duration",
            &[
                "memory",
                "prune",
                "--agent",
                "bot",
                "--older-than",
                "100000000y",
            ],
            2,
            "before 1970",
        ),
        case(
            "zero purge age",
            &["responses", "purge", "--agent", "bot", "--older-than", "0s"],
            2,
            "is zero",
        ),
        case(
            "zero busy timeout",
            &["--busy-timeout", "0s", "agents", "list"],
            2,
            "is zero",
        ),
        case(
            "absurd busy timeout",
            &["--busy-timeout", "100h", "agents", "list"],
            2,
            "out of range",
        ),
        case(
            "zero query time",
            &["sql", "--timeout", "0s", "SELECT 1"],
            2,
            "is zero",
        ),
        case(
            "zero limit",
            &["memory", "list", "--agent", "bot", "--limit", "0"],
            2,
            "at least 1",
        ),
        case(
            "negative limit",
            &["memory", "list", "--agent", "bot", "--limit", "-1"],
            2,
            "must not be negative",
        ),
        case(
            "absurd limit",
            &[
                "memory",
                "list",
                "--agent",
                "bot",
                "--limit",
                "99999999999999999999999",
            ],
            2,
            "too large",
        ),
        case(
            "negative byte budget",
            &["memory", "prune", "--agent", "bot", "--max-bytes", "-1"],
            2,
            "must not be negative",
        ),
        case(
            "negative keep",
            &["responses", "purge", "--agent", "bot", "--keep", "-3"],
            2,
            "must not be negative",
        ),
        case(
            "zero context budget",
            &["memory", "context", "--agent", "bot", "--max-chars", "0"],
            2,
            "at least 1",
        ),
        case(
            "malformed params",
            &with("{\"n\": 3"),
            2,
            "not one JSON value",
        ),
        case(
            "params with trailing garbage",
            &with("{\"n\": 3} x"),
            2,
            "trailing characters",
        ),
        piped(
            "params nested 10,000 deep",
            &with("-"),
            deep.clone(),
            2,
            "recursion limit",
        ),
        piped(
            "10 MB params",
            &with("-"),
            huge.clone(),
            2,
            "over the limit of 1048576 bytes",
        ),
        piped(
            "params that are not UTF-8",
            &with("-"),
            b"{\"q\": \"\xff\"}".to_vec(),
            2,
            "not UTF-8",
        ),
        piped(
            "import line nested 10,000 deep",
            &["import", "-"],
            [
                b"{\"type\":\"header\",\"format\":\"agentstore-export\",\"version\":1}\n".to_vec(),
                deep,
            ]
            .concat(),
            2,
            "import line 2",
        ),
        piped(
            "import line of 10 MB",
            &["import", "-"],
            [
                b"{\"type\":\"header\",\"format\":\"agentstore-export\",\"version\":1}\n".to_vec(),
                huge,
            ]
            .concat(),
            2,
            "import line 2",
        ),
        piped(
            "import line with invalid UTF-8",
            &["import", "-"],
            b"{\"type\":\"header\",\"format\":\"agentstore-export\",\"version\":1}\n\xff\xfe\n"
                .to_vec(),
            2,
            "import line 2",
        ),
        piped(
            "import line with trailing garbage",
            &["import", "-"],
            b"{\"type\":\"header\",\"format\":\"agentstore-export\",\"version\":1} {}\n".to_vec(),
            2,
            "import line 1",
        ),
    ];
    for c in &cases {
        refused(&db.path, db.dir.path(), c);
    }
    zz_report::add(Count::BadInputs, cases.len() as u64);
}

/// Files that are not (or no longer) agentstore databases, each tried with a command
/// that writes and one that only reads.
#[test]
fn bad_files_are_refused_and_left_untouched() {
    let _running = zz_report::running();
    let good = populated();
    let good_bytes = std::fs::read(&good.path).unwrap();
    let mut flipped = good_bytes.clone();
    // The root page of memory_entries (page 5): its b-tree header scrambled.
    for b in &mut flipped[4 * 4096..4 * 4096 + 12] {
        *b ^= 0x5A;
    }
    let newer = {
        let db = populated();
        let c = rusqlite::Connection::open(&db.path).unwrap();
        c.pragma_update(None, "user_version", agentstore::SCHEMA_VERSION + 1)
            .unwrap();
        drop(c);
        std::fs::read(&db.path).unwrap()
    };
    let foreign = {
        let db = TempDb::new();
        let c = rusqlite::Connection::open(&db.path).unwrap();
        c.execute_batch("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL); INSERT INTO invoices VALUES (1, 9.5);")
            .unwrap();
        drop(c);
        std::fs::read(&db.path).unwrap()
    };
    let png =
        b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0\x1f\x15\xc4\x89".to_vec();
    let files: Vec<(&str, Vec<u8>, &str, &str)> = vec![
        // (what, bytes, what a write says, what a read says)
        (
            "a zero-byte file",
            Vec::new(),
            "empty file",
            "no agentstore database",
        ),
        (
            "a text file",
            b"hello\n".to_vec(),
            "not an SQLite database",
            "not an SQLite database",
        ),
        (
            "a PNG",
            png,
            "not an SQLite database",
            "not an SQLite database",
        ),
        (
            "a truncated database",
            good_bytes[..8192].to_vec(),
            "damaged",
            "damaged",
        ),
        (
            "a database with a flipped page",
            flipped,
            "damaged",
            "damaged",
        ),
        (
            "another application's database",
            foreign,
            "another application",
            "another application",
        ),
        ("a newer agentstore database", newer, "newer", "newer"),
    ];
    let mut tried = 0;
    for (what, bytes, write_says, read_says) in &files {
        let db = TempDb::new();
        std::fs::write(&db.path, bytes).unwrap();
        let write = case(
            what,
            &["memory", "add", "--agent", "bot", "x"],
            1,
            write_says,
        );
        let read = case(what, &["memory", "list", "--agent", "bot"], 1, read_says);
        refused(&db.path, db.dir.path(), &write);
        refused(&db.path, db.dir.path(), &read);
        tried += 2;
    }
    // A directory where the file should be, and a missing parent directory.
    let db = TempDb::new();
    for path in [
        db.dir.path().to_path_buf(),
        db.dir.path().join("no/such/agent.db"),
    ] {
        for args in [
            &["memory", "add", "--agent", "bot", "x"][..],
            &["agents", "list"],
        ] {
            refused(
                &path,
                db.dir.path(),
                &case("a bad path", args, 1, "agentstore: "),
            );
            tried += 1;
        }
    }
    zz_report::add(Count::BadInputs, tried);
}

#[test]
fn odd_content_round_trips_exactly_and_injection_is_just_text() {
    let _running = zz_report::running();
    let db = populated();
    let odd = [
        "'); DROP TABLE memory_entries;--".to_string(),
        "nul \0 inside".to_string(),
        "\u{202E}right-to-left\u{202C} \u{FEFF}bom 🙂 e\u{301} \u{1F}unit".to_string(),
        "tab\tand\r\nnewlines\n".to_string(),
    ];
    for text in &odd {
        agentstore(&db)
            .args(["--json", "memory", "add", "--agent", "bot", "-"])
            .write_stdin(format!("{text}\n"))
            .assert()
            .success();
    }
    let listed = json_of(&db, &["memory", "list", "--agent", "bot", "--limit", "10"]);
    let contents: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["content"].as_str().unwrap())
        .collect();
    for text in &odd {
        assert!(
            contents.contains(&text.as_str()),
            "{text:?} not stored verbatim: {contents:?}"
        );
    }
    let check: Value = json_of(&db, &["check"]);
    assert_eq!(check["ok"], true);
    assert_eq!(check["row_counts"]["memory_entries"], 1 + odd.len() as u64);
    zz_report::add(Count::BadInputs, odd.len() as u64);
    zz_report::add(Count::AcknowledgedWrites, odd.len() as u64);
}
