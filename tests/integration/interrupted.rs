//! Long deletes under SIGKILL and beside running agents: `memory prune` and `tools
//! cache purge` killed between batches leave a sound file, and the same command run
//! again finishes exactly the job (compared with an uninterrupted run on a copy); a
//! large prune in short batches lets writer processes with a short busy timeout keep
//! writing, and keeps every entry they added while it ran.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use agentstore::{CacheKey, MemorySettings, NewEntry, Prune, Store, StoreOptions, canonical_json};
use rusqlite::Connection;
use serde_json::{Value, json};

use crate::common::{TempDb, TestResult, all_entries, example_binary, json_at, soak};
use crate::crash::{Acknowledged, kill_and_collect};
use crate::zz_report::{self, Count};

const ENTRIES: usize = 40_000;
const DAY: i64 = 86_400_000_000;

/// Settings under which nothing but a prune removes entries.
fn no_retention() -> MemorySettings {
    MemorySettings::default()
        .with_max_entries(u64::MAX >> 1)
        .with_max_memory_mb(1024.0)
        .with_keep_fraction(1.0)
        .with_cleanup_interval(7)
}

/// A file whose agent `p` has 40,000 entries of varied importance and size, created
/// between 1 and about 12 days ago, none within 2.4 hours of 6 days old (so
/// `--older-than 6d` picks the same entries whenever the test runs it).
fn seeded(dir: &Path) -> PathBuf {
    let path = dir.join("base.db");
    let store = Store::open(&path, StoreOptions::default()).expect("open");
    store.agent("p").expect("agent");
    store
        .set_memory_settings("p", &no_retention())
        .expect("settings");
    let now = store.now_micros();
    let entries: Vec<NewEntry> = (0..ENTRIES)
        .map(|i| {
            let mut age = DAY + i as i64 * 25_000_000;
            if age >= 59 * DAY / 10 {
                age += DAY / 5;
            }
            NewEntry {
                role: Default::default(),
                content: format!("entry {i} {}", "x".repeat(i % 97)),
                importance: ((i * 7919) % 1000) as f64 / 1000.0,
                created_at: now - age,
            }
        })
        .collect();
    let memory = store.memory(&store.existing_agent("p").expect("agent"));
    memory.import_entries(&entries).expect("import");
    drop(memory);
    drop(store);
    path
}

/// Copies a closed database with its WAL, if one is left.
fn copy_db(from: &Path, to: &Path) {
    std::fs::copy(from, to).expect("copy the database");
    let wal = |p: &Path| PathBuf::from(format!("{}-wal", p.display()));
    if wal(from).exists() {
        std::fs::copy(wal(from), wal(to)).expect("copy the WAL");
    }
}

fn cli(db: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(assert_cmd::cargo::cargo_bin("agentstore"));
    c.env_remove("AGENTSTORE_DB")
        .env_remove("AGENTSTORE_BUSY_TIMEOUT")
        .arg("--db")
        .arg(db)
        .arg("--json")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

/// Polls `sql` (a count) until `ready` holds or the process exits; then waits `delay`
/// and kills it. Returns whether it was still running when killed.
fn kill_when(
    child: &mut Child,
    db: &Path,
    sql: &str,
    ready: impl Fn(i64) -> bool,
    delay: Duration,
) -> bool {
    let deadline = Instant::now() + Duration::from_secs(60);
    let conn = Connection::open(db).expect("watch connection");
    conn.busy_timeout(Duration::from_secs(5))
        .expect("busy timeout");
    loop {
        if child.try_wait().expect("try_wait").is_some() {
            return false;
        }
        let n: i64 = conn.query_row(sql, [], |r| r.get(0)).unwrap_or(-1);
        if n >= 0 && ready(n) {
            break;
        }
        assert!(Instant::now() < deadline, "the command never got going");
        std::thread::sleep(Duration::from_millis(1));
    }
    std::thread::sleep(delay);
    let running = child.try_wait().expect("try_wait").is_none();
    child.kill().expect("SIGKILL");
    let _ = child.wait();
    running
}

fn assert_sound(db: &Path, what: &str) -> Store {
    let store = Store::open(db, StoreOptions::existing()).expect("reopen");
    let report = store.check().expect("check");
    assert!(report.ok, "{what}: {:?}", report.problems);
    store
}

#[test]
fn a_prune_killed_between_batches_is_finished_by_running_it_again() -> TestResult {
    let _running = zz_report::running();
    let dir = tempfile::tempdir()?;
    let base = seeded(dir.path());
    let rules: [&[&str]; 4] = [
        &["--keep-fraction", "0.3"],
        &["--max-bytes", "600000"],
        &["--min-importance", "0.6"],
        &["--older-than", "6d"],
    ];
    let mut interrupted = 0;
    let mut rounds = 0;
    for (r, rule) in rules.iter().enumerate() {
        // The reference: the same prune, uninterrupted, on a copy.
        let reference = dir.path().join(format!("reference-{r}.db"));
        copy_db(&base, &reference);
        let mut args = vec!["memory", "prune", "--agent", "p"];
        args.extend_from_slice(rule);
        let whole = json_at(&reference, &args);
        assert!(
            whole["removed_entries"].as_u64().unwrap() > 1000,
            "{rule:?}: {whole}"
        );
        let want = all_entries(&Store::open(&reference, StoreOptions::existing())?, "p");

        for attempt in 0..2u64 {
            let work = dir.path().join(format!("work-{r}-{attempt}.db"));
            copy_db(&base, &work);
            // A short busy timeout makes small batches (a few ms each).
            let mut killed_args = vec!["--busy-timeout", "40ms"];
            killed_args.extend_from_slice(&args);
            let mut child = cli(&work, &killed_args).spawn()?;
            let was_running = kill_when(
                &mut child,
                &work,
                "SELECT count(*) FROM memory_prunes",
                |n| n > 0,
                Duration::from_millis(3 + attempt * 9),
            );
            rounds += 1;
            let store = assert_sound(&work, "after the kill");
            let pending: i64 = Connection::open(&work)?.query_row(
                "SELECT count(*) FROM memory_prunes",
                [],
                |r| r.get(0),
            )?;
            let left = store
                .memory(&store.existing_agent("p")?)
                .stats()?
                .total_entries;
            let notes = store.check()?.notes;
            assert_eq!(notes.len() as i64, pending, "{notes:?}");
            if pending > 0 {
                let mut command = format!("`memory prune {}`", rule.join(" "));
                if rule[0] == "--older-than" {
                    command = "`memory prune --older-than 6days`".into();
                }
                assert!(notes[0].contains(&command), "{notes:?} lacks {command}");
                interrupted += 1;
                assert!(was_running);
                assert!(
                    left < ENTRIES as u64 && left > want.len() as u64,
                    "{rule:?}: {left}"
                );
            }
            drop(store);
            if pending > 0 {
                // A dry run of the same prune counts exactly what finishing it removes.
                let mut dry = args.clone();
                dry.push("--dry-run");
                let counted = json_at(&work, &dry);
                assert_eq!(counted["resumed"], true, "{counted}");
                assert_eq!(counted["removed_entries"], left - want.len() as u64);
                // A different prune (on a copy) replaces the interrupted one.
                let other = dir.path().join(format!("other-{r}-{attempt}.db"));
                copy_db(&work, &other);
                let before: i64 = Connection::open(&other)?.query_row(
                    "SELECT count(*) FROM memory_prunes",
                    [],
                    |r| r.get(0),
                )?;
                assert_eq!(before, 1, "the copy lost the interrupted plan");
                let replaced = json_at(
                    &other,
                    &["memory", "prune", "--agent", "p", "--min-importance", "0"],
                );
                assert_eq!(
                    (
                        replaced["resumed"].clone(),
                        replaced["removed_entries"].clone()
                    ),
                    (Value::Bool(false), json!(0))
                );
                let plans: i64 = Connection::open(&other)?.query_row(
                    "SELECT count(*) FROM memory_prunes",
                    [],
                    |r| r.get(0),
                )?;
                assert_eq!(plans, 0, "the interrupted plan outlived a different prune");
            }

            let again = json_at(&work, &args);
            assert_eq!(again["resumed"], pending > 0, "{rule:?}: {again}");
            let store = assert_sound(&work, "after the rerun");
            assert_eq!(
                all_entries(&store, "p"),
                want,
                "{rule:?}: not the uninterrupted result"
            );
            let plans: i64 = Connection::open(&work)?.query_row(
                "SELECT count(*) FROM memory_prunes",
                [],
                |r| r.get(0),
            )?;
            assert_eq!(plans, 0);
        }
    }
    assert!(
        interrupted >= rounds / 2,
        "only {interrupted} of {rounds} kills landed between batches"
    );
    zz_report::add(Count::KillRounds, rounds);
    zz_report::add(Count::Processes, rounds * 2 + 4);
    Ok(())
}

#[test]
fn a_purge_killed_between_batches_is_finished_by_running_it_again() -> TestResult {
    let _running = zz_report::running();
    let db = TempDb::new();
    // 24,000 results of the tool "old" to purge and 6,000 of "keep" to keep.
    let store = Store::open(&db.path, StoreOptions::default())?;
    drop(store);
    {
        let mut conn = Connection::open(&db.path)?;
        let tx = conn.transaction()?;
        {
            let mut insert = tx.prepare(
                "INSERT INTO tool_cache (key, scope, tool, params, result, created_at, expires_at)
                 VALUES (?1, 'bot', ?2, ?3, ?4, 0, ?5)",
            )?;
            for i in 0..30_000 {
                let tool = if i % 5 == 4 { "keep" } else { "old" };
                let params = canonical_json(&json!({ "n": i }))?;
                let key = CacheKey::from_canonical("bot", tool, &params);
                insert.execute(rusqlite::params![
                    key.0.to_vec(),
                    tool,
                    params,
                    json!({ "v": i }).to_string(),
                    i64::MAX
                ])?;
            }
        }
        tx.commit()?;
    }
    let keys = |tool: &str| -> Vec<Vec<u8>> {
        let conn = Connection::open(&db.path).expect("open");
        let mut stmt = conn
            .prepare("SELECT key FROM tool_cache WHERE tool = ?1 ORDER BY key")
            .expect("prepare");
        stmt.query_map([tool], |r| r.get(0))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("keys")
    };
    let kept = keys("keep");
    assert_eq!(kept.len(), 6_000);

    let purge = ["tools", "cache", "purge", "--tool", "old", "--all"];
    let mut killed = vec!["--busy-timeout", "40ms"];
    killed.extend_from_slice(&purge);
    let mut child = cli(&db.path, &killed).spawn()?;
    let was_running = kill_when(
        &mut child,
        &db.path,
        "SELECT count(*) FROM tool_cache WHERE tool = 'old'",
        |n| n < 24_000,
        Duration::from_millis(5),
    );
    drop(assert_sound(&db.path, "after the kill"));
    let left = keys("old").len();
    assert!(
        was_running && left > 0,
        "the purge was not caught mid-run ({left} left)"
    );
    assert_eq!(
        keys("keep"),
        kept,
        "a batch touched rows outside the filter"
    );

    let again = json_at(&db.path, &purge);
    assert_eq!(again["removed"], left as u64);
    assert!(keys("old").is_empty());
    assert_eq!(keys("keep"), kept);
    drop(assert_sound(&db.path, "after the rerun"));
    zz_report::add(Count::KillRounds, 1);
    zz_report::add(Count::Processes, 2);
    Ok(())
}

/// A writer process (examples/crash_writer.rs) adding to agent `p` with a 250 ms busy
/// timeout until killed.
fn writer(db: &Path) -> Child {
    Command::new(example_binary("crash_writer"))
        .arg(db)
        .arg("p")
        .arg(u64::MAX.to_string())
        .arg("250")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn writer")
}

#[test]
fn a_large_prune_lets_agents_keep_writing_and_keeps_what_they_add() -> TestResult {
    let _running = zz_report::running();
    let dir = tempfile::tempdir()?;
    let base = seeded(dir.path());
    let reference = dir.path().join("reference.db");
    copy_db(&base, &reference);
    let rule = Prune::KeepFraction(0.3);
    let want = {
        let store = Store::open(&reference, StoreOptions::default())?;
        store
            .memory(&store.existing_agent("p")?)
            .prune(rule, false)?;
        all_entries(&store, "p")
    };

    // The prune first; the writers start once its plan is stored, so everything they
    // add comes after the entries it removes were fixed.
    let mut prune = cli(
        &base,
        &[
            "--busy-timeout",
            "250ms",
            "memory",
            "prune",
            "--agent",
            "p",
            "--keep-fraction",
            "0.3",
        ],
    )
    .spawn()?;
    let watch = Connection::open(&base)?;
    while watch.query_row("SELECT count(*) FROM memory_prunes", [], |r| {
        r.get::<_, i64>(0)
    })? == 0
    {
        assert!(
            prune.try_wait()?.is_none(),
            "the prune ended before it was seen"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    let mut writers: Vec<Child> = (0..2).map(|_| writer(&base)).collect();
    let out = prune.wait_with_output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The same busy timeout as the writers: the prune's batches must stay far below it.
    let report: Value = serde_json::from_slice(&out.stdout)?;
    assert!(report["batches"].as_u64().unwrap() > 1, "{report}");
    std::thread::sleep(Duration::from_millis(50));
    let mut acknowledged = Acknowledged::default();
    for mut w in writers.drain(..) {
        // Still running: no "database is locked" (or anything else) stopped it.
        if let Some(status) = w.try_wait()? {
            let mut err = String::new();
            std::io::Read::read_to_string(&mut w.stderr.take().unwrap(), &mut err)?;
            panic!("a writer stopped with {status}: {err}");
        }
        kill_and_collect(w, &mut acknowledged);
    }
    assert!(
        acknowledged.entries.len() > 20,
        "the writers wrote too little"
    );

    let store = assert_sound(&base, "after the prune and the writers");
    let now = all_entries(&store, "p");
    // The entries that were there before: exactly what the prune leaves alone.
    let old: Vec<_> = now
        .iter()
        .filter(|e| e.0 <= ENTRIES as i64)
        .cloned()
        .collect();
    assert_eq!(old, want);
    // Everything the writers were told is stored, whatever its importance.
    let added: std::collections::HashMap<i64, &String> = now.iter().map(|e| (e.0, &e.1)).collect();
    for (id, content) in &acknowledged.entries {
        assert_eq!(
            added.get(id),
            Some(&content),
            "entry {id} added during the prune is gone"
        );
    }
    zz_report::add(Count::Processes, 3);
    zz_report::add(Count::AcknowledgedWrites, acknowledged.len() as u64);
    Ok(())
}

#[path = "../../examples/support/cleanup.rs"]
mod cleanup;

/// The entries (id, content) a model holds after the first `count` adds of
/// `cleanup_writer`; time is the message number, which orders entries as the store's
/// clock does (ties are broken by id either way).
pub fn cleanup_model(count: u64) -> Vec<(i64, String)> {
    let mut model = crate::common::RefMemory::new(cleanup::settings());
    for n in 0..count {
        let (content, importance) = cleanup::entry(n);
        model.add(&content, importance, n as i64);
    }
    model.sorted().into_iter().map(|e| (e.0, e.1)).collect()
}

/// A child process that is killed and reaped when dropped (a failing test included).
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `cleanup_writer` on agent `agent`, continuing after `start` adds.
pub fn cleanup_writer(db: &Path, agent: &str, start: u64) -> Child {
    Command::new(example_binary("cleanup_writer"))
        .arg(db)
        .arg(agent)
        .arg(start.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn cleanup_writer")
}

/// Adds that run the original's cleanups, killed at random moments: the file holds
/// exactly what a model holds after the adds that committed (every acknowledged one,
/// and at most one more that committed just before the kill), never half a cleanup.
#[test]
fn adds_that_clean_up_are_all_or_nothing_under_kill() -> TestResult {
    let _running = zz_report::running();
    let db = TempDb::new();
    drop(Store::open(&db.path, StoreOptions::default())?);
    let mut committed = 0u64;
    let mut acknowledged_total = 0u64;
    let rounds = 6 * soak();
    for round in 0..rounds {
        let child = cleanup_writer(&db.path, "c", committed);
        std::thread::sleep(Duration::from_millis(40 + (round * 23) % 160));
        let acked = kill_and_count(child);
        let store = assert_sound(&db.path, "after the kill");
        let agent = store.existing_agent("c")?;
        let count = agent.message_count;
        assert!(
            count == committed + acked || count == committed + acked + 1,
            "round {round}: {count} committed, {acked} acknowledged after {committed}"
        );
        // Replay every committed add on the model.
        let want = cleanup_model(count);
        let got: Vec<(i64, String)> = all_entries(&store, "c")
            .into_iter()
            .map(|e| (e.0, e.1))
            .collect();
        assert_eq!(got, want, "round {round}: not the model after {count} adds");
        committed = count;
        acknowledged_total += acked;
    }
    assert!(
        committed > 100,
        "too few adds to prove anything: {committed}"
    );
    zz_report::add(Count::KillRounds, rounds);
    zz_report::add(Count::Processes, rounds);
    zz_report::add(Count::AcknowledgedWrites, acknowledged_total);
    Ok(())
}

/// Kills `child` and counts the adds it acknowledged (complete lines only: a line cut
/// by the kill was never acknowledged).
fn kill_and_count(mut child: Child) -> u64 {
    child.kill().expect("SIGKILL");
    let out = child.wait_with_output().expect("wait");
    out.stdout.iter().filter(|b| **b == b'\n').count() as u64
}

/// An import killed at random moments: the agent is either absent or complete.
#[test]
fn an_import_killed_midway_stores_all_of_it_or_nothing() -> TestResult {
    let _running = zz_report::running();
    let dir = tempfile::tempdir()?;
    let base = seeded(dir.path());
    let export = dir.path().join("p.jsonl");
    let out = cli(&base, &["export", "--agent", "p", "--output"])
        .arg(&export)
        .output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // One whole import first, to place the kills across its run.
    let whole = dir.path().join("whole.db");
    let started = Instant::now();
    json_at(&whole, &["import", export.to_str().expect("UTF-8 path")]);
    let took = started.elapsed();
    let mut complete = 0;
    for (round, share) in [0.1, 0.4, 0.7, 0.9, 1.5].into_iter().enumerate() {
        let target = dir.path().join(format!("import-{round}.db"));
        drop(Store::open(&target, StoreOptions::default())?);
        let mut child = cli(&target, &["import"]).arg(&export).spawn()?;
        std::thread::sleep(took.mul_f64(share));
        child.kill()?;
        let _ = child.wait();
        let store = assert_sound(&target, "after the killed import");
        match store.existing_agent("p") {
            Ok(p) => {
                assert_eq!(
                    p.memory_entries, ENTRIES as u64,
                    "round {round}: half an import"
                );
                complete += 1;
            }
            Err(e) => {
                assert!(e.to_string().contains("no agent named"), "{e}");
                let entries: i64 = Connection::open(&target)?.query_row(
                    "SELECT count(*) FROM memory_entries",
                    [],
                    |r| r.get(0),
                )?;
                assert_eq!(entries, 0, "round {round}: rows without their agent");
            }
        }
    }
    println!("import kills: {complete} of 5 had committed before the kill");
    zz_report::add(Count::KillRounds, 5);
    zz_report::add(Count::Processes, 7);
    Ok(())
}
