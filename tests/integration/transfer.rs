//! Export and import: the round trip is byte-identical, `--agent` moves one agent, and
//! any bad line aborts the whole import with its line number and changes nothing.

use std::io::Cursor;
use std::time::Duration;

use agentstore::{LoggedResponse, MemorySettings, Outcome, Store, StoreOptions, ToolCounts};
use proptest::prelude::*;
use serde_json::json;

use crate::common::{TempDb, TestResult, agentstore, json_of};

const T0: i64 = 1_780_000_000_123_456;

/// Odd content that must survive exactly.
const ODD: [&str; 5] = [
    "nul \u{0} inside",
    "emoji 🦀, combining e\u{301}, right-to-left \u{202e}txet",
    "'); DROP TABLE memory_entries;--",
    "line one\nline two\ttabbed \\ backslash \"quoted\"",
    "\u{feff}bom and \u{1f}unit separator",
];

/// A file with two agents, one of which shares a tool scope, and every kind of row.
fn populated() -> TempDb {
    let db = TempDb::new();
    let (store, clock) = db.open_at(T0);
    let bot = store.agent("bot").unwrap();
    store
        .set_memory_settings(
            "bot",
            &MemorySettings::default()
                .with_max_entries(77)
                .with_keep_fraction(0.65),
        )
        .unwrap();
    store.set_target_response_time("bot", 1.37).unwrap();
    let memory = store.memory(&bot);
    for (i, text) in ODD.iter().enumerate() {
        memory.add(text, 0.1 + 0.2 * i as f64).unwrap();
        clock.advance(Duration::from_micros(1_234_567));
    }
    let helper = store.agent("helper").unwrap();
    store.set_tool_scope("helper", Some("shared")).unwrap();
    store.memory(&helper).add("helper fact", 1.0).unwrap();

    let helper = store.existing_agent("helper").unwrap();
    for (agent, tool, params) in [
        (&bot, "search", json!({"q": "rust", "page": 1})),
        (
            &bot,
            "calc",
            json!({"expr": "1/3", "nested": {"b": [1, 2.5e-7], "a": null}}),
        ),
        (&helper, "search", json!({"q": "sqlite"})),
    ] {
        let result = json!({"value": 0.1 + 0.2, "tool": tool, "unicode": "é🦀"});
        store
            .tool_cache(agent)
            .put(tool, &params, &result, Duration::from_secs(3600))
            .unwrap();
    }
    store
        .tool_cache(&bot)
        .add_counts(&[(
            "search".into(),
            ToolCounts {
                total_calls: 7,
                cache_hits: 3,
                errors: 1,
                total_time: 0.123_456_789,
            },
        )])
        .unwrap();
    store
        .tool_cache(&helper)
        .add_counts(&[(
            "search".into(),
            ToolCounts {
                total_calls: 2,
                cache_hits: 0,
                errors: 0,
                total_time: 1.0 / 3.0,
            },
        )])
        .unwrap();
    let responses = store.response_cache(&bot);
    let id = store
        .response_cache(&bot)
        .put("what is rust?", "a language 🦀")
        .unwrap();
    store
        .response_cache(&bot)
        .put("nul \u{0} message", "nul \u{0} response")
        .unwrap();
    responses
        .record(
            &[(id, 4, T0 + 99)],
            &[
                LoggedResponse {
                    at: T0 + 1,
                    duration: 0.000_123_4,
                    outcome: Outcome::Exact,
                },
                LoggedResponse {
                    at: T0 + 2,
                    duration: 2.5,
                    outcome: Outcome::Fallback,
                },
                LoggedResponse {
                    at: T0 + 3,
                    duration: 0.1,
                    outcome: Outcome::Error,
                },
            ],
            1000,
        )
        .unwrap();
    drop(store);
    db
}

fn export(db: &TempDb, args: &[&str]) -> Vec<u8> {
    let out = agentstore(db).arg("export").args(args).assert().success();
    out.get_output().stdout.clone()
}

fn import(db: &TempDb, file: &std::path::Path, args: &[&str]) -> assert_cmd::assert::Assert {
    agentstore(db).arg("import").arg(file).args(args).assert()
}

#[test]
fn export_import_export_is_byte_identical() -> TestResult {
    let source = populated();
    let first = export(&source, &[]);
    let text = String::from_utf8(first.clone())?;
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        r#"{"type":"header","format":"agentstore-export","version":1}"#
    );
    // 2 agents, 6 entries, 2 counters, 2 responses, 3 log rows, 3 results + header.
    assert_eq!(lines.len(), 1 + 2 + 6 + 2 + 2 + 3 + 3, "{text}");
    assert!(text.contains(r#""content":"nul \u0000 inside""#), "{text}");

    let file = source.dir.path().join("all.jsonl");
    std::fs::write(&file, &first)?;
    let target = TempDb::new();
    let report = json_of(&target, &["import", file.to_str().unwrap()]);
    assert_eq!(report["agents_created"], 2);
    assert_eq!(report["memory_entries"], 6);
    assert_eq!(report["response_log"], 3);
    assert_eq!(report["tool_results"], 3);
    assert_eq!(export(&target, &[]), first, "export after import differs");

    // The imported file is whole: check passes, lookups and stats work.
    agentstore(&target).arg("check").assert().success();
    let hit = json_of(
        &target,
        &["responses", "lookup", "--agent", "bot", "what is rust?"],
    );
    assert_eq!(hit["match"], "exact", "{hit}");
    assert_eq!(hit["response"], "a language 🦀");
    let near = json_of(
        &target,
        &["responses", "lookup", "--agent", "bot", "so what is rust?"],
    );
    assert_eq!(near["match"], "fuzzy", "the word index was rebuilt: {near}");
    let stats = json_of(&target, &["responses", "stats", "--agent", "bot"]);
    assert_eq!(stats["total_responses"], 2);
    assert_eq!(stats["target_response_time"], 1.37);
    Ok(())
}

#[test]
fn export_to_a_file_prints_a_summary_and_leaves_no_partial_file() -> TestResult {
    let source = populated();
    let out = source.dir.path().join("bot.jsonl");
    let summary = json_of(
        &source,
        &[
            "export",
            "--agent",
            "bot",
            "--output",
            out.to_str().unwrap(),
        ],
    );
    assert_eq!(summary["agents"], 1);
    assert_eq!(summary["memory_entries"], 5);
    // Only bot's own scope: helper's "shared" result stays out.
    assert_eq!(summary["tool_results"], 2);
    assert_eq!(std::fs::read(&out)?, export(&source, &["--agent", "bot"]));
    assert!(!source.dir.path().join("bot.jsonl.partial").exists());
    Ok(())
}

#[test]
fn import_with_agent_renames_the_agent_and_its_own_scope() -> TestResult {
    let source = populated();
    let file = source.dir.path().join("bot.jsonl");
    std::fs::write(&file, export(&source, &["--agent", "bot"]))?;
    // Into the same file, under a new name.
    import(&source, &file, &["--agent", "bot-copy"]).success();
    let copy = String::from_utf8(export(&source, &["--agent", "bot-copy"]))?;
    let original = String::from_utf8(export(&source, &["--agent", "bot"]))?;
    assert_eq!(
        copy.replace(r#""agent":"bot-copy""#, r#""agent":"bot""#)
            .replace(r#""name":"bot-copy""#, r#""name":"bot""#)
            .replace(r#""scope":"bot-copy""#, r#""scope":"bot""#),
        original
    );
    let listed = json_of(&source, &["tools", "cache", "list", "--agent", "bot-copy"]);
    assert_eq!(listed.as_array().unwrap().len(), 2);

    // A file of two agents cannot be renamed.
    let all = source.dir.path().join("all.jsonl");
    std::fs::write(&all, export(&source, &[]))?;
    let before = source.snapshot();
    import(&source, &all, &["--agent", "x"])
        .code(2)
        .stderr(predicates::str::contains(
            "--agent imports a file of one agent",
        ));
    assert_eq!(source.snapshot(), before);
    Ok(())
}

#[test]
fn importing_into_an_existing_agent_adds_and_keeps_its_settings() -> TestResult {
    let source = populated();
    let file = source.dir.path().join("bot.jsonl");
    std::fs::write(&file, export(&source, &["--agent", "bot"]))?;
    let target = TempDb::new();
    agentstore(&target)
        .args(["memory", "add", "--agent", "bot", "already here"])
        .assert()
        .success();
    let report = json_of(&target, &["import", file.to_str().unwrap()]);
    assert_eq!(report["agents_merged"], 1);
    let stats = json_of(&target, &["memory", "stats", "--agent", "bot"]);
    assert_eq!(stats["total_entries"], 6);
    let agents = json_of(&target, &["agents", "list"]);
    assert_eq!(
        agents[0]["settings"]["max_entries"], 1000,
        "kept its own settings"
    );
    // Importing the same responses again skips them.
    let again = json_of(&target, &["import", file.to_str().unwrap()]);
    assert_eq!(again["responses"], 0);
    assert_eq!(again["responses_skipped"], 2);
    Ok(())
}

/// Good lines, then the bad one at line 4.
fn bad_file(bad: &[u8]) -> Vec<u8> {
    let mut f = br#"{"type":"header","format":"agentstore-export","version":1}
{"type":"agent","name":"new","created_at":"2026-01-01T00:00:00.000000Z","message_count":10,"tool_scope":null,"target_response_time":2.0,"settings":{"max_memory_mb":10.0,"max_entries":1000,"cleanup_interval":100,"keep_fraction":0.7,"importance_threshold":0.5,"importance_weight":0.7,"recency_weight":0.3,"low_water":0.8}}
{"type":"memory","agent":"new","id":1,"created_at":"2026-01-01T00:00:00.000000Z","importance":0.5,"content":"fine"}
"#
    .to_vec();
    f.extend_from_slice(bad);
    f.extend_from_slice(b"\n{\"type\":\"memory\",\"agent\":\"new\",\"id\":2,\"created_at\":\"2026-01-01T00:00:00.000000Z\",\"importance\":0.5,\"content\":\"after\"}\n");
    f
}

#[test]
fn a_bad_line_aborts_the_whole_import_and_changes_nothing() -> TestResult {
    let _running = crate::zz_report::running();
    let db = populated();
    let deep = format!(
        r#"{{"type":"tool_cache","scope":"s","tool":"t","created_at":"2026-01-01T00:00:00.000000Z","expires_at":"2026-01-01T00:00:00.000000Z","params":{}1{},"result":1}}"#,
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    let huge = format!(
        r#"{{"type":"memory","agent":"new","id":3,"created_at":"2026-01-01T00:00:00.000000Z","importance":0.5,"content":"{}"}}"#,
        "x".repeat(10 << 20)
    );
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"{not json".to_vec(), "key must be a string"),
        (br#"{"type":"memory","agent":"new","id":3,"created_at":"2026-01-01T00:00:00Z","importance":0.5,"content":"x"} trailing"#.to_vec(), "trailing characters"),
        (b"{\"type\":\"memory\",\"content\":\"\xff\xfe\"}".to_vec(), "not valid UTF-8"),
        (br#"{"type":"mystery"}"#.to_vec(), "unknown variant `mystery`"),
        (br#"{"type":"memory","agent":"new","id":3,"created_at":"2026-01-01T00:00:00Z","importance":1.5,"content":"x"}"#.to_vec(), "importance"),
        (br#"{"type":"memory","agent":"new","id":3,"created_at":"2026-01-01T00:00:00Z","importance":0.5,"content":""}"#.to_vec(), "content is empty"),
        (br#"{"type":"memory","agent":"ghost","id":3,"created_at":"2026-01-01T00:00:00Z","importance":0.5,"content":"x"}"#.to_vec(), "\"ghost\" has no agent record"),
        (br#"{"type":"memory","agent":"new","id":3,"created_at":"yesterday","importance":0.5,"content":"x"}"#.to_vec(), "not an RFC 3339 time"),
        (br#"{"type":"memory","agent":"new","id":3,"created_at":"2026-01-01T00:00:00Z","importance":0.5,"content":"x","extra":1}"#.to_vec(), "unknown field `extra`"),
        (br#"{"type":"response_log","agent":"new","at":"2026-01-01T00:00:00Z","duration":-1.0,"outcome":"exact"}"#.to_vec(), "number of seconds from 0"),
        // What `check` calls damage, or what later writes could not continue from.
        (br#"{"type":"memory","agent":"new","id":0,"created_at":"2026-01-01T00:00:00Z","importance":0.5,"content":"x"}"#.to_vec(), "id 0 is outside 1..=10"),
        (br#"{"type":"memory","agent":"new","id":-1,"created_at":"2026-01-01T00:00:00Z","importance":0.5,"content":"x"}"#.to_vec(), "id -1 is outside"),
        (br#"{"type":"memory","agent":"new","id":11,"created_at":"2026-01-01T00:00:00Z","importance":0.5,"content":"x"}"#.to_vec(), "id 11 is outside 1..=10"),
        (br#"{"type":"memory","agent":"new","id":1,"created_at":"2026-01-01T00:00:00Z","importance":0.5,"content":"x"}"#.to_vec(), "id 1 appears twice"),
        (br#"{"type":"agent","name":"big","created_at":"2026-01-01T00:00:00.000000Z","message_count":9223372036854775807,"tool_scope":null,"target_response_time":2.0,"settings":{"max_memory_mb":10.0,"max_entries":1000,"cleanup_interval":100,"keep_fraction":0.7,"importance_threshold":0.5,"importance_weight":0.7,"recency_weight":0.3,"low_water":0.8}}"#.to_vec(), "the most a count can be"),
        (br#"{"type":"agent","name":"slow","created_at":"2026-01-01T00:00:00.000000Z","message_count":1,"tool_scope":null,"target_response_time":1e300,"settings":{"max_memory_mb":10.0,"max_entries":1000,"cleanup_interval":100,"keep_fraction":0.7,"importance_threshold":0.5,"importance_weight":0.7,"recency_weight":0.3,"low_water":0.8}}"#.to_vec(), "target response time must be from"),
        (br#"{"type":"response_log","agent":"new","at":"2026-01-01T00:00:00Z","duration":1e300,"outcome":"exact"}"#.to_vec(), "number of seconds from 0"),
        (br#"{"type":"response","agent":"new","created_at":"2026-01-01T00:00:00Z","last_used_at":"2026-01-01T00:00:00Z","hits":0,"message":"","response":"r"}"#.to_vec(), "message is empty"),
        (br#"{"type":"response","agent":"new","created_at":"2026-01-01T00:00:00Z","last_used_at":"2026-01-01T00:00:00Z","hits":0,"message":"m","response":""}"#.to_vec(), "response is empty"),
        (br#"{"type":"response","agent":"new","created_at":"2026-01-02T00:00:00Z","last_used_at":"2026-01-01T00:00:00Z","hits":0,"message":"m","response":"r"}"#.to_vec(), "last_used_at is before created_at"),
        (br#"{"type":"tool_counters","agent":"new","tool":"t","total_calls":1,"cache_hits":2,"errors":0,"total_time":1.0}"#.to_vec(), "neither can exceed the calls"),
        (br#"{"type":"tool_cache","scope":"s","tool":"t","created_at":"2026-01-02T00:00:00Z","expires_at":"2026-01-01T00:00:00Z","params":{},"result":1}"#.to_vec(), "expires_at is before created_at"),
        (br#"{"type":"response_log","agent":"new","at":"2026-01-01T00:00:00Z","duration":1.0,"outcome":"slow"}"#.to_vec(), "unknown variant `slow`"),
        (br#"{"type":"header","format":"agentstore-export","version":1}"#.to_vec(), "a second header"),
        (deep.into_bytes(), "recursion limit exceeded"),
        (huge.into_bytes(), "the most one entry can hold"),
    ];
    let before = db.snapshot();
    crate::zz_report::add(crate::zz_report::Count::BadInputs, cases.len() as u64);
    for (bad, expected) in cases {
        let file = db.dir.path().join("../bad.jsonl");
        std::fs::write(&file, bad_file(&bad))?;
        let out = import(&db, &file, &[]).code(2);
        let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
        assert!(stderr.contains("import line 4: "), "{stderr}");
        assert!(
            stderr.contains(expected),
            "expected {expected:?} in {stderr}"
        );
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        std::fs::remove_file(&file)?;
        assert_eq!(db.snapshot(), before, "the file changed after {expected:?}");
    }
    Ok(())
}

#[test]
fn bad_headers_and_files_are_refused() -> TestResult {
    let db = TempDb::new();
    let dir = db.dir.path();
    for (content, expected) in [
        (&b""[..], "the import file is empty"),
        (
            br#"{"type":"header","format":"agentstore-export","version":9}"#,
            "version 9; this build reads version 1",
        ),
        (
            br#"{"type":"header","format":"other","version":1}"#,
            "is not \"agentstore-export\"",
        ),
        (br#"{"type":"agent","name":"a"}"#, "import line 1"),
        (b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR", "not valid UTF-8"),
    ] {
        let file = dir.join("in.jsonl");
        std::fs::write(&file, content)?;
        import(&db, &file, &[])
            .code(2)
            .stderr(predicates::str::contains(expected));
    }
    // A missing file or a directory: runtime errors, and no database is created.
    let fresh = TempDb::new();
    import(&fresh, &dir.join("missing.jsonl"), &[])
        .code(1)
        .stderr(predicates::str::contains("cannot open"));
    import(&fresh, dir, &[])
        .code(1)
        .stderr(predicates::str::contains("is a directory"));
    assert!(!fresh.path.exists());
    Ok(())
}

#[test]
fn import_reads_stdin() -> TestResult {
    let source = populated();
    let target = TempDb::new();
    agentstore(&target)
        .args(["import", "-"])
        .write_stdin(export(&source, &["--agent", "helper"]))
        .assert()
        .success();
    assert_eq!(
        json_of(&target, &["memory", "stats", "--agent", "helper"])["total_entries"],
        1
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Arbitrary lines after a valid start: the import succeeds or fails as a whole;
    /// it never panics, and a failure leaves the data as it was.
    #[test]
    fn arbitrary_import_lines_are_all_or_nothing(lines in proptest::collection::vec(
        prop_oneof![
            Just(r#"{"type":"memory","agent":"new","id":9,"created_at":"2026-01-01T00:00:00Z","importance":0.5,"content":"ok"}"#.to_string()),
            Just(r#"{"type":"response","agent":"new","created_at":"2026-01-01T00:00:00Z","last_used_at":"2026-01-01T00:00:00Z","hits":1,"message":"m","response":"r"}"#.to_string()),
            Just(r#"{"type":"tool_counters","agent":"new","tool":"t","total_calls":1,"cache_hits":0,"errors":0,"total_time":0.5}"#.to_string()),
            "\\PC{0,40}",
            "[{}\\[\\]\":,a-z0-9 ]{0,40}",
        ],
        0..6,
    )) {
        let db = TempDb::new();
        let store = Store::open(&db.path, StoreOptions::default()).unwrap();
        store.memory(&store.agent("keep").unwrap()).add("existing", 0.5).unwrap();
        let mut before = Vec::new();
        store.export(None, &mut before).unwrap();
        let mut input = String::from_utf8(bad_file(b"")).unwrap();
        input.push_str(&lines.join("\n"));
        match store.import(&mut Cursor::new(input.into_bytes()), None) {
            Ok(report) => prop_assert!(report.memory_entries >= 2),
            Err(e) => {
                prop_assert!(e.to_string().starts_with("import line "), "{}", e);
                let mut after = Vec::new();
                store.export(None, &mut after).unwrap();
                prop_assert_eq!(before, after);
            }
        }
    }
}
