//! Real processes, real SIGKILL: nothing a writer was told is stored may be missing
//! after the writer is killed at a random moment, with several writers at once.

use std::collections::HashMap;
use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use agentstore::{CacheKey, ListOrder, Store, StoreOptions};
use serde_json::Value;

use crate::common::{TempDb, TestResult, example_binary, json_at, soak};
use crate::zz_report::{self, Count};

fn spawn(db: &TempDb, agent: &str) -> Child {
    Command::new(example_binary("crash_writer"))
        .arg(&db.path)
        .arg(agent)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn writer")
}

/// What one writer acknowledged before it was killed.
#[derive(Default)]
pub struct Acknowledged {
    pub entries: Vec<(i64, String)>,
    tool_results: Vec<(String, Value)>,
    responses: Vec<(i64, String, String)>,
    logged: Vec<i64>,
}

impl Acknowledged {
    pub fn len(&self) -> usize {
        self.entries.len() + self.tool_results.len() + self.responses.len() + self.logged.len()
    }
}

/// Kills the writer and adds what it acknowledged.
pub fn kill_and_collect(mut child: Child, into: &mut Acknowledged) {
    child.kill().expect("SIGKILL");
    let mut out = Vec::new();
    child
        .stdout
        .take()
        .expect("stdout")
        .read_to_end(&mut out)
        .expect("read stdout");
    let _ = child.wait();
    parse_acknowledged(&out, into);
}

/// The writes a writer printed: complete lines only (a line cut by the kill was
/// never acknowledged).
fn parse_acknowledged(out: &[u8], into: &mut Acknowledged) {
    let end = out.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    for line in String::from_utf8_lossy(&out[..end]).lines() {
        let fields: Vec<&str> = line.split('\t').collect();
        match fields.as_slice() {
            ["m", id, content] => into
                .entries
                .push((id.parse().expect("id"), content.to_string())),
            ["t", key, result] => into
                .tool_results
                .push((key.to_string(), serde_json::from_str(result).expect("json"))),
            ["r", id, message, response] => into.responses.push((
                id.parse().expect("id"),
                message.to_string(),
                response.to_string(),
            )),
            ["l", at] => into.logged.push(at.parse().expect("time")),
            other => panic!("unexpected line {other:?}"),
        }
    }
}

fn key_from_hex(hex: &str) -> CacheKey {
    let mut key = [0u8; 32];
    for (i, b) in key.iter_mut().enumerate() {
        *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).expect("hex");
    }
    CacheKey(key)
}

/// Every acknowledged write of every writer is in the store, as written.
fn assert_all_there(
    store: &Store,
    acknowledged: &HashMap<String, Acknowledged>,
    round: u64,
) -> TestResult {
    let log = rusqlite::Connection::open(store.sqlite_path().expect("an SQLite store"))?;
    for (agent, ack) in acknowledged {
        let Ok(a) = store.existing_agent(agent) else {
            assert_eq!(ack.len(), 0, "agent {agent} lost with its writes");
            continue;
        };
        let stored: HashMap<i64, String> = store
            .memory(&a)
            .list(ListOrder::Time, u64::MAX)?
            .into_iter()
            .map(|e| (e.id, e.content))
            .collect();
        for (id, content) in &ack.entries {
            assert_eq!(
                stored.get(id),
                Some(content),
                "round {round}: {agent} lost entry {id}"
            );
        }
        // add_many is all or nothing, acknowledged or not: every batch in the store
        // has its five entries.
        let mut batches: HashMap<&str, usize> = HashMap::new();
        for content in stored.values() {
            if let Some((base, _)) = content
                .strip_suffix(" batch")
                .and_then(|c| c.rsplit_once('-'))
            {
                *batches.entry(base).or_default() += 1;
            }
        }
        for (base, n) in batches {
            assert_eq!(n, 5, "round {round}: batch {base} is partly stored");
        }
        for (key, result) in &ack.tool_results {
            let got = store.tool_cache(&a).get_key(&key_from_hex(key))?;
            assert_eq!(
                got.as_ref(),
                Some(result),
                "round {round}: {agent} lost tool result {key}"
            );
        }
        for (id, message, response) in &ack.responses {
            let got = store.response_cache(&a).lookup_exact(message)?;
            let got = got.map(|m| (m.id, m.response));
            assert_eq!(
                got,
                Some((*id, response.clone())),
                "round {round}: {agent} lost response {id}"
            );
        }
        for at in &ack.logged {
            let n: i64 = log.query_row(
                "SELECT count(*) FROM response_log WHERE agent_id = ?1 AND at = ?2",
                (a.id, at),
                |r| r.get(0),
            )?;
            assert_eq!(n, 1, "round {round}: {agent} lost log row {at}");
        }
    }
    Ok(())
}

#[test]
fn killed_writers_lose_nothing_they_acknowledged() -> TestResult {
    let _running = zz_report::running();
    let db = TempDb::new();
    // The file exists before the first kill: a writer killed within 20 ms may not
    // have created it yet, and the readers below never create one.
    drop(Store::open(&db.path, StoreOptions::default())?);
    let mut acknowledged: HashMap<String, Acknowledged> = HashMap::new();
    let mut rounds = 0;
    let mut processes = 0;
    // 20 rounds (times AGENTSTORE_SOAK): 1 to 4 writers at once, killed after 20 to
    // 140 ms.
    let total_rounds = 20 * soak();
    for round in 0..total_rounds {
        let writers = 1 + (round % 4) as usize;
        let children: Vec<(String, Child)> = (0..writers)
            .map(|w| {
                let agent = format!("w{w}");
                let child = spawn(&db, &agent);
                (agent, child)
            })
            .collect();
        processes += children.len();
        std::thread::sleep(Duration::from_millis(20 + (round * 37) % 120));
        for (agent, child) in children {
            kill_and_collect(child, acknowledged.entry(agent).or_default());
        }
        rounds += 1;
        if round == total_rounds - 1 {
            // The writers were killed with their WAL open: every CLI command reads
            // through it and sees every acknowledged write.
            assert!(wal(&db).exists(), "expected a hot WAL after the kill");
            let before = file_identity(&db);
            cli_sees_everything(&db, &acknowledged);
            assert_eq!(
                file_identity(&db),
                before,
                "a CLI read moved or copied the file"
            );
        }

        // After every round: the store opens, passes check (counters, buckets and the
        // word index agree with the rows), and has every acknowledged write.
        let store = Store::open(&db.path, StoreOptions::existing())?;
        let report = store.check()?;
        assert!(report.ok, "round {round}: {:?}", report.problems);
        assert_all_there(&store, &acknowledged, round)?;
    }
    let total: usize = acknowledged.values().map(Acknowledged::len).sum();
    let kinds = |f: fn(&Acknowledged) -> usize| acknowledged.values().map(f).sum::<usize>();
    println!(
        "crash: {rounds} kill rounds, {processes} writer processes, {total} acknowledged writes checked \
         ({} entries, {} tool results, {} responses, {} log rows)",
        kinds(|a| a.entries.len()),
        kinds(|a| a.tool_results.len()),
        kinds(|a| a.responses.len()),
        kinds(|a| a.logged.len()),
    );
    assert!(
        kinds(|a| a.responses.len()) > 0 && kinds(|a| a.tool_results.len()) > 0,
        "the writers acknowledged too little; the test proved nothing"
    );
    assert_eq!(rounds, total_rounds);
    zz_report::add(Count::KillRounds, rounds);
    zz_report::add(Count::Processes, processes as u64);
    zz_report::add(Count::AcknowledgedWrites, total as u64);
    Ok(())
}

fn wal(db: &TempDb) -> std::path::PathBuf {
    let mut p = db.path.as_os_str().to_owned();
    p.push("-wal");
    p.into()
}

/// Reads every acknowledged write back through the CLI (JSON output).
fn cli_sees_everything(db: &TempDb, acknowledged: &HashMap<String, Acknowledged>) {
    let report = json_at(&db.path, &["check"]);
    assert_eq!(report["ok"], true, "{report}");
    let cached = json_at(&db.path, &["tools", "cache", "list", "--limit", "1000000"]);
    let cached: HashMap<&str, &Value> = cached
        .as_array()
        .expect("array")
        .iter()
        .map(|r| (r["key"].as_str().expect("key"), &r["result"]))
        .collect();
    for (agent, ack) in acknowledged {
        let listed = json_at(
            &db.path,
            &["memory", "list", "--agent", agent, "--limit", "1000000"],
        );
        let entries: HashMap<i64, &str> = listed
            .as_array()
            .expect("array")
            .iter()
            .map(|e| {
                (
                    e["id"].as_i64().expect("id"),
                    e["content"].as_str().expect("text"),
                )
            })
            .collect();
        for (id, content) in &ack.entries {
            assert_eq!(
                entries.get(id),
                Some(&content.as_str()),
                "CLI misses entry {id} of {agent}"
            );
        }
        let listed = json_at(
            &db.path,
            &["responses", "list", "--agent", agent, "--limit", "1000000"],
        );
        let responses: HashMap<i64, &str> = listed
            .as_array()
            .expect("array")
            .iter()
            .map(|r| {
                (
                    r["id"].as_i64().expect("id"),
                    r["response"].as_str().expect("text"),
                )
            })
            .collect();
        for (id, _, response) in &ack.responses {
            assert_eq!(
                responses.get(id),
                Some(&response.as_str()),
                "CLI misses response {id}"
            );
        }
        for (key, result) in &ack.tool_results {
            assert_eq!(
                cached.get(key.as_str()),
                Some(&result),
                "CLI misses tool result {key}"
            );
        }
        let logged = json_at(
            &db.path,
            &[
                "sql",
                &format!(
                    "SELECT count(*) AS n FROM response_log l JOIN agents a ON a.id = l.agent_id WHERE a.name = '{agent}'"
                ),
            ],
        );
        assert!(logged[0]["n"].as_u64().expect("n") >= ack.logged.len() as u64);
        let dry = json_at(
            &db.path,
            &[
                "memory",
                "prune",
                "--agent",
                agent,
                "--older-than",
                "3650d",
                "--dry-run",
            ],
        );
        assert_eq!(dry["removed_entries"], 0);
        // The stats commands and views count at least what was acknowledged.
        let stats = json_at(&db.path, &["stats", "--agent", agent]);
        let memory = &stats["memory_stats"][0];
        assert!(memory["total_entries"].as_u64().expect("entries") >= ack.entries.len() as u64);
        let responses = &stats["response_stats"][0];
        assert!(responses["total_logged"].as_u64().expect("logged") >= ack.logged.len() as u64);
        // An export (one snapshot) carries every acknowledged entry.
        let out = Command::new(assert_cmd::cargo::cargo_bin("agentstore"))
            .arg("--db")
            .arg(&db.path)
            .args(["export", "--agent", agent])
            .output()
            .expect("run export");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let exported: std::collections::HashSet<i64> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).expect("JSON line"))
            .filter(|r| r["type"] == "memory")
            .map(|r| r["id"].as_i64().expect("id"))
            .collect();
        for (id, _) in &ack.entries {
            assert!(exported.contains(id), "export misses entry {id} of {agent}");
        }
        for args in [
            &["tools", "cache", "purge", "--all", "--dry-run"][..],
            &["responses", "purge", "--agent", agent, "--all", "--dry-run"],
        ] {
            json_at(&db.path, args);
        }
    }
}

/// The database file's identity and the directory's file names: a command that moved,
/// replaced or copied the file, or left another file beside it, changes one of them.
fn file_identity(db: &TempDb) -> (u64, Vec<String>) {
    use std::os::unix::fs::MetadataExt;
    let inode = std::fs::metadata(&db.path).expect("metadata").ino();
    let mut names: Vec<String> = std::fs::read_dir(db.dir.path())
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| !n.ends_with("-shm") && !n.ends_with("-wal"))
        .collect();
    names.sort();
    (inode, names)
}

#[test]
fn four_writers_and_two_cli_readers_share_the_file() -> TestResult {
    let _running = zz_report::running();
    let db = TempDb::new();
    drop(Store::open(&db.path, StoreOptions::default())?);
    let writers: Vec<(String, Child)> = (0..4)
        .map(|w| {
            let agent = format!("w{w}");
            let child = Command::new(example_binary("crash_writer"))
                .arg(&db.path)
                .arg(&agent)
                .arg("2000")
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn writer");
            (agent, child)
        })
        .collect();
    // A fifth writer whose adds run the original's cleanups (deleting rows).
    let mut cleaner =
        crate::interrupted::KillOnDrop(crate::interrupted::cleanup_writer(&db.path, "c", 0));
    let running = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    // Two readers: `check` (counters, buckets and the word index agree with the rows
    // in every snapshot: no reader sees half of a write or a cleanup) and stats.
    let readers: Vec<_> = [["check"].as_slice(), ["agents", "list"].as_slice()]
        .into_iter()
        .map(|args| {
            let (db_path, running) = (db.path.clone(), running.clone());
            let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
            std::thread::spawn(move || {
                let mut reads = 0;
                while running.load(std::sync::atomic::Ordering::SeqCst) || reads == 0 {
                    let args: Vec<&str> = args.iter().map(String::as_str).collect();
                    let v = json_at(&db_path, &args);
                    if args[0] == "check" {
                        assert_eq!(v["ok"], true, "{v}");
                    }
                    reads += 1;
                }
                reads
            })
        })
        .collect();
    // A third reader: in each snapshot, the cleaning agent's entries are exactly a
    // model's after that snapshot's number of adds, never half of a cleanup.
    let whole = {
        let (db_path, running) = (db.path.clone(), running.clone());
        std::thread::spawn(move || {
            const SNAPSHOT: &str = "SELECT c.message_count AS n,
                    (SELECT group_concat(id, ',' ORDER BY id) FROM memory_entries m
                      WHERE m.agent_id = a.id) AS ids
               FROM agents a JOIN memory_counters c ON c.agent_id = a.id WHERE a.name = 'c'";
            let mut seen = 0;
            while running.load(std::sync::atomic::Ordering::SeqCst) || seen == 0 {
                let rows = json_at(&db_path, &["sql", SNAPSHOT]);
                let Some(row) = rows.as_array().and_then(|r| r.first()) else {
                    continue;
                };
                let n = row["n"].as_u64().expect("n");
                let ids: Vec<i64> = row["ids"]
                    .as_str()
                    .unwrap_or("")
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(|s| s.parse().expect("id"))
                    .collect();
                let want: Vec<i64> = crate::interrupted::cleanup_model(n)
                    .into_iter()
                    .map(|e| e.0)
                    .collect();
                assert_eq!(ids, want, "a reader saw part of a cleanup after {n} adds");
                seen += 1;
            }
            seen
        })
    };
    let mut acknowledged: HashMap<String, Acknowledged> = HashMap::new();
    for (agent, child) in writers {
        let out = child.wait_with_output()?;
        assert!(
            out.status.success(),
            "writer {agent} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        parse_acknowledged(&out.stdout, acknowledged.entry(agent).or_default());
    }
    running.store(false, std::sync::atomic::Ordering::SeqCst);
    let reads: usize = readers.into_iter().map(|r| r.join().expect("reader")).sum();
    let snapshots = whole.join().expect("model reader");
    assert!(
        cleaner.0.try_wait()?.is_none(),
        "the cleaning writer stopped early"
    );
    drop(cleaner);
    let store = Store::open(&db.path, StoreOptions::existing())?;
    assert_all_there(&store, &acknowledged, 0)?;
    // Every write of every round was acknowledged: nothing failed, nothing is missing.
    for (agent, ack) in &acknowledged {
        assert_eq!(ack.entries.len(), 400 + 400 * 5, "{agent}");
        assert_eq!(
            (
                ack.tool_results.len(),
                ack.responses.len(),
                ack.logged.len()
            ),
            (400, 400, 400)
        );
    }
    let report = store.check()?;
    assert!(report.ok, "{:?}", report.problems);
    println!(
        "load: 4 writer processes x 2,000 rounds and a cleaning writer, {reads} CLI reads and \
         {snapshots} whole-cleanup snapshots, no error reached any caller"
    );
    zz_report::add(Count::Processes, 5 + (reads + snapshots) as u64);
    let acked: usize = acknowledged.values().map(Acknowledged::len).sum();
    zz_report::add(Count::AcknowledgedWrites, acked as u64);
    Ok(())
}
