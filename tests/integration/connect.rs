//! The public API as a library user meets it, through `Store::connect` (the location
//! the CLI's `--db` takes), against the SQLite engine: every table group's handle,
//! the administration calls, and the async agent's memory methods.

use std::io::Cursor;
use std::time::Duration;

use agentstore::agent::{Agent, AgentConfig, SimulatedClient};
use agentstore::{
    CacheFilter, DbErrorKind, FuzzyOptions, ListOrder, Location, LoggedResponse, Outcome, Prune,
    ResponseTimeStats, StatsView, Store, StoreOptions, ToolCounts,
};
use serde_json::json;

use crate::common::{TempDb, TestResult};

/// The binary with no `--db` given, so the test gives its own.
fn bare() -> assert_cmd::Command {
    let mut c = assert_cmd::Command::cargo_bin("agentstore").expect("binary");
    c.env_remove("AGENTSTORE_DB")
        .env_remove("AGENTSTORE_BUSY_TIMEOUT");
    c
}

fn connect(db: &TempDb) -> agentstore::Result<Store> {
    Store::connect(
        &format!("sqlite:{}", db.path.display()),
        StoreOptions::default(),
    )
}

#[test]
fn locations_name_the_engine_or_are_refused_by_name() -> TestResult {
    assert_eq!(
        Location::parse("agent.db").unwrap(),
        Location::Sqlite("agent.db".into())
    );
    assert_eq!(
        Location::parse("sqlite:/tmp/a b.db").unwrap(),
        Location::Sqlite("/tmp/a b.db".into())
    );
    assert_eq!(
        Location::parse("sqlite:///tmp/x.db").unwrap(),
        Location::Sqlite("/tmp/x.db".into())
    );
    // A Windows-style or odd path is still a path.
    assert_eq!(
        Location::parse("C:/data/agent.db").unwrap(),
        Location::Sqlite("C:/data/agent.db".into())
    );
    for bad in [
        "",
        "sqlite:",
        "mysql://h/db",
        "postgres://h/db?schema=Bad-Name",
    ] {
        let err = Location::parse(bad).unwrap_err();
        assert_eq!(
            err.kind(),
            agentstore::ErrorKind::InvalidInput,
            "{bad}: {err}"
        );
    }
    let err = Location::parse("mysql://u@h/db").unwrap_err().to_string();
    assert!(
        err.contains("mysql:// databases are not supported"),
        "{err}"
    );
    // A PostgreSQL URL: the schema parameter taken out, the password never shown.
    let Location::Postgres(url) = Location::parse("postgres://u:s3cret@h:5433/db?schema=team_a")?
    else {
        panic!("a postgres:// URL is a PostgreSQL location");
    };
    assert_eq!(url.schema(), Some("team_a"));
    assert_eq!(url.to_string(), "postgres://u:***@h:5433/db?schema=team_a");
    let shown = format!("{:?}", Location::Postgres(url));
    assert!(!shown.contains("s3cret"), "{shown}");
    Ok(())
}

#[test]
fn every_handle_works_through_a_connected_store() -> TestResult {
    let db = TempDb::new();
    let store = connect(&db)?;
    assert_eq!(store.location(), &Location::Sqlite(db.path.clone()));
    assert!(
        store.identity().starts_with("sqlite:"),
        "{}",
        store.identity()
    );
    assert!(store.reads_inline());
    // A second store on the same file has the same identity (single-flight shares it).
    let other = Store::open(&db.path, StoreOptions::existing())?;
    assert_eq!(other.identity(), store.identity());
    drop(other);

    let bot = store.agent("bot")?;
    let memory = store.memory(&bot);
    memory.add("the user prefers metric units", 0.9)?;
    memory.add_many(&[("small talk", 0.1), ("the deadline is friday", 0.7)])?;
    assert_eq!(memory.stats()?.total_entries, 3);
    let listed = memory.list(ListOrder::Importance, 10)?;
    assert_eq!(listed[0].content, "the user prefers metric units");
    assert_eq!(listed[0].size_bytes, 29);
    let report = memory.prune(Prune::MinImportance(0.5), false)?;
    assert_eq!((report.removed_entries, report.removed_bytes), (1, 10));
    assert!(memory.context(2000)?.text.contains("friday"));

    // The tool cache derives its key from the agent's scope, the tool and the params:
    // key order in the params does not matter.
    let tools = store.tool_cache(&bot);
    assert!(tools.put(
        "search",
        &json!({"q": "rust", "page": 1}),
        &json!({"hits": 3}),
        Duration::from_secs(60)
    )?);
    assert_eq!(
        tools.get("search", &json!({"page": 1, "q": "rust"}))?,
        Some(json!({"hits": 3}))
    );
    let key = agentstore::CacheKey::new("bot", "search", &json!({"q": "rust", "page": 1}))?;
    assert_eq!(tools.key("search", &json!({"page": 1, "q": "rust"}))?, key);
    let listed = store.tool_results().list(&CacheFilter::default(), 10)?;
    assert_eq!(listed.len(), 1);
    assert_eq!(
        listed[0].key,
        key.to_hex(),
        "the stored key is the derived one"
    );
    tools.add_counts(&[(
        "search".into(),
        ToolCounts {
            total_calls: 2,
            cache_hits: 1,
            errors: 0,
            total_time: 0.5,
        },
    )])?;
    let stats = tools.stats()?;
    assert_eq!((stats.total_tool_calls, stats.cache_size), (2, 1));

    let responses = store.response_cache(&bot);
    let id = responses.put("what is the capital of france", "Paris")?;
    let hit = responses
        .lookup(
            "what is the capital of france please",
            FuzzyOptions::default(),
        )?
        .expect("a fuzzy hit");
    assert_eq!((hit.id, hit.kind), (id, Outcome::Fuzzy));
    assert_eq!(responses.time_stats()?, ResponseTimeStats::NoData);
    assert_eq!(
        serde_json::to_value(ResponseTimeStats::NoData)?,
        json!({"no_data": true})
    );
    responses.record(
        &[(id, 2, store.now_micros())],
        &[LoggedResponse {
            at: store.now_micros(),
            duration: 0.25,
            outcome: Outcome::Fuzzy,
        }],
        1000,
    )?;
    let ResponseTimeStats::Data(figures) = responses.time_stats()? else {
        panic!("no figures")
    };
    assert_eq!(figures.total_responses, 1);
    let tuned = responses.optimize(1000, 500)?;
    assert!(tuned.new_target < tuned.old_target, "{tuned:?}");

    // Administration.
    assert!(store.check()?.ok);
    let view = store.view(StatsView::Memory, Some("bot"))?;
    assert_eq!(view.rows.len(), 1);
    let mut export = Vec::new();
    let exported = store.export(Some("bot"), &mut export)?;
    assert_eq!(exported.memory_entries, 2);
    let copy = TempDb::new();
    let imported = connect(&copy)?.import(&mut Cursor::new(&export), None)?;
    assert_eq!(imported.memory_entries, 2);
    let mut sink = agentstore::QueryResult {
        columns: Vec::new(),
        rows: Vec::new(),
    };
    let rows = store.query_read_only(
        "SELECT count(*) FROM memory_entries",
        Duration::from_secs(5),
        &mut sink,
    )?;
    assert_eq!((rows, &sink.rows[0][0]), (1, &json!(2)));
    Ok(())
}

#[test]
fn a_busy_database_is_classified_by_the_engine() -> TestResult {
    let db = TempDb::new();
    let store = Store::open(
        &db.path,
        StoreOptions::default().with_busy_timeout(Duration::from_millis(50)),
    )?;
    let bot = store.agent("bot")?;
    let locker = rusqlite::Connection::open(&db.path)?;
    locker.execute_batch("BEGIN IMMEDIATE")?;
    let err = store.memory(&bot).add("blocked", 0.5).unwrap_err();
    assert!(err.is_busy(), "{err:?}");
    assert_eq!(err.db_kind(), Some(DbErrorKind::Busy));
    assert!(err.statement().is_some(), "the failing statement is kept");
    assert!(
        std::error::Error::source(&err).is_some(),
        "the source is kept"
    );
    locker.execute_batch("ROLLBACK")?;
    Ok(())
}

#[test]
fn the_cli_takes_an_sqlite_location_and_refuses_other_engines() -> TestResult {
    let db = TempDb::new();
    let location = format!("sqlite:{}", db.path.display());
    bare()
        .args([
            "--db", &location, "memory", "add", "--agent", "bot", "hello",
        ])
        .assert()
        .success();
    assert!(db.path.exists(), "sqlite:PATH names the file");
    let out = bare()
        .args(["--db", "mysql://u@localhost/agents", "agents", "list"])
        .assert()
        .code(2);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    assert!(
        stderr.contains("mysql:// databases are not supported"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    // A PostgreSQL server that is not there: one line, the password blanked.
    let out = bare()
        .args([
            "--db",
            "postgres://u:s3cret@127.0.0.1:1/agents",
            "agents",
            "list",
        ])
        .assert()
        .code(1);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    assert!(
        stderr.contains(
            "cannot connect to the PostgreSQL server at postgres://u:***@127.0.0.1:1/agents"
        ),
        "{stderr}"
    );
    assert!(!stderr.contains("s3cret"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    Ok(())
}

/// The async agent offers what the CLI does with memory, and opening and dropping it
/// on an async worker does no blocking I/O there (a current-thread runtime too).
#[test]
fn the_async_agent_lists_summarises_and_prunes_memory() -> TestResult {
    let db = TempDb::new();
    for flavor in ["multi", "current"] {
        let rt = match flavor {
            "multi" => tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?,
            _ => tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?,
        };
        rt.block_on(async {
            let store = connect(&db)?;
            let agent = Agent::open(
                &store,
                flavor,
                AgentConfig::new(SimulatedClient::instant(1)),
            )
            .await?;
            drop(store);
            agent.remember("keep me", 0.9).await?;
            agent.remember("drop me", 0.1).await?;
            assert_eq!(agent.memory_stats().await?.total_entries, 2);
            let listed = agent.memories(ListOrder::Importance, 10).await?;
            assert_eq!(listed[0].content, "keep me");
            let dry = agent.prune_memory(Prune::MinImportance(0.5), true).await?;
            assert_eq!((dry.removed_entries, dry.dry_run), (1, true));
            agent.prune_memory(Prune::MinImportance(0.5), false).await?;
            assert_eq!(agent.memories(ListOrder::Time, 10).await?.len(), 1);
            // An answer whose log row is still in memory: the drop writes it.
            agent.process_message("hello there").await?;
            // The last handle of the store goes with the agent, on this worker.
            drop(agent);
            Ok::<_, agentstore::Error>(())
        })?;
        // What the drops wrote was written before they returned.
        drop(rt);
    }
    let check = Store::open(&db.path, StoreOptions::existing())?;
    assert_eq!(check.agents()?.len(), 2);
    for agent in check.agents()? {
        let stats = check.response_cache(&agent).time_stats()?;
        let ResponseTimeStats::Data(figures) = stats else {
            panic!(
                "{}: the dropped agent's log row was not written",
                agent.name
            )
        };
        assert_eq!(figures.total_responses, 1, "{}", agent.name);
    }
    Ok(())
}
