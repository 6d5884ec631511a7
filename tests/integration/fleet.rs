//! Single-flight across processes, on both engines: N processes that start the same
//! cacheable tool call, or the same new message for one agent, at once cause exactly
//! one execution; the others get its result as a hit. A leader killed with SIGKILL
//! leaves a lease that expires, and a waiting process then runs the call itself.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{TempDb, TestResult, example_binary};
use crate::postgres::Server;

/// The databases to run on: an SQLite file, and a PostgreSQL schema when a server can
/// be had here (see `postgres.rs`).
fn engines(db: &TempDb, server: &Option<Server>, schema: &str) -> Vec<String> {
    let mut out = vec![db.path.to_str().expect("utf-8 path").to_string()];
    if let Some(server) = server {
        out.push(format!("{}?schema={schema}", server.url()));
    }
    out
}

fn call(db: &str, mode: &str, agent: &str, log: &Path, sleep_ms: u64, lease_ms: u64) -> Child {
    Command::new(example_binary("fleet_call"))
        .args([db, mode, agent])
        .arg(log)
        .args([sleep_ms.to_string(), lease_ms.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn fleet_call")
}

fn output(child: Child) -> serde_json::Value {
    let out = child.wait_with_output().expect("wait");
    assert!(
        out.status.success(),
        "fleet_call failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("one JSON line")
}

fn executions(log: &Path) -> usize {
    std::fs::read_to_string(log).map_or(0, |t| t.lines().count())
}

#[test]
fn processes_starting_one_call_at_once_run_it_once() -> TestResult {
    let db = TempDb::new();
    let server = crate::postgres::server();
    for location in engines(&db, &server, "fleet_once") {
        for mode in ["tool", "message"] {
            let log = db.dir.path().join(format!("{mode}-{}.log", location.len()));
            let children: Vec<Child> = (0..6)
                .map(|_| call(&location, mode, "bot", &log, 400, 5000))
                .collect();
            let outs: Vec<serde_json::Value> = children.into_iter().map(output).collect();
            assert_eq!(executions(&log), 1, "{mode} on {location}: {outs:?}");
            if mode == "tool" {
                let results: Vec<&serde_json::Value> = outs.iter().map(|o| &o["result"]).collect();
                assert!(results.iter().all(|r| *r == results[0]), "{outs:?}");
                let hits = outs.iter().filter(|o| o["hit"] == true).count();
                assert_eq!(hits, 5, "the others' answers are hits: {outs:?}");
            } else {
                assert!(
                    outs.iter()
                        .all(|o| o["response"] == "the answer to what is the tide today")
                );
                let generated = outs.iter().filter(|o| o["outcome"] == "generated").count();
                assert_eq!(generated, 1, "{outs:?}");
                assert!(
                    outs.iter()
                        .all(|o| o["outcome"] == "generated" || o["outcome"] == "exact")
                );
            }
        }
    }
    Ok(())
}

#[test]
fn a_killed_leader_is_taken_over_after_its_lease() -> TestResult {
    let db = TempDb::new();
    let server = crate::postgres::server();
    for location in engines(&db, &server, "fleet_kill") {
        for mode in ["tool", "message"] {
            let log = db
                .dir
                .path()
                .join(format!("kill-{mode}-{}.log", location.len()));
            // The leader takes the lease and starts a long execution.
            let mut leader = call(&location, mode, "bot", &log, 60_000, 300);
            let deadline = Instant::now() + Duration::from_secs(20);
            while executions(&log) == 0 {
                assert!(Instant::now() < deadline, "the leader never started");
                std::thread::sleep(Duration::from_millis(5));
            }
            // Others start while it holds the lease; then it is killed.
            // (Their own leases are long: once one takes over, nothing may expire it on
            // a loaded machine; the leader's short one is what must run out.)
            let waiters: Vec<Child> = (0..3)
                .map(|_| call(&location, mode, "bot", &log, 100, 10_000))
                .collect();
            std::thread::sleep(Duration::from_millis(150));
            let killed = leader.kill();
            leader.wait()?;
            killed?;
            let outs: Vec<serde_json::Value> = waiters.into_iter().map(output).collect();
            // The leader's execution, then exactly one waiter's.
            assert_eq!(executions(&log), 2, "{mode} on {location}: {outs:?}");
            if mode == "tool" {
                assert_eq!(
                    outs.iter().filter(|o| o["hit"] == false).count(),
                    1,
                    "{outs:?}"
                );
            } else {
                let generated = outs.iter().filter(|o| o["outcome"] == "generated").count();
                assert_eq!(generated, 1, "{outs:?}");
            }
        }
    }
    Ok(())
}
