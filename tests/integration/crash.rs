//! Real processes, real SIGKILL: nothing a writer was told is stored may be missing
//! after the writer is killed at a random moment, with several writers at once.

use std::collections::HashMap;
use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use agentstore::{ListOrder, Store, StoreOptions};

use crate::common::{TempDb, TestResult, example_binary};

fn spawn(db: &TempDb, agent: &str) -> Child {
    Command::new(example_binary("crash_writer"))
        .arg(&db.path)
        .arg(agent)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn writer")
}

/// Kills the writer and returns what it acknowledged: complete lines only (a line
/// cut by the kill was never acknowledged).
fn kill_and_collect(mut child: Child) -> Vec<(i64, String)> {
    child.kill().expect("SIGKILL");
    let mut out = Vec::new();
    child
        .stdout
        .take()
        .expect("stdout")
        .read_to_end(&mut out)
        .expect("read stdout");
    let _ = child.wait();
    let end = out.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    let complete = &out[..end];
    String::from_utf8_lossy(complete)
        .lines()
        .map(|line| {
            let (id, content) = line.split_once('\t').expect("id<TAB>content");
            (id.parse().expect("numeric id"), content.to_string())
        })
        .collect()
}

#[test]
fn killed_writers_lose_nothing_they_acknowledged() -> TestResult {
    let db = TempDb::new();
    let mut acknowledged: HashMap<String, Vec<(i64, String)>> = HashMap::new();
    let mut rounds = 0;
    // 12 rounds: 1 to 4 writers at once, killed after 20 to 140 ms.
    for round in 0..12u64 {
        let writers = 1 + (round % 4) as usize;
        let children: Vec<(String, Child)> = (0..writers)
            .map(|w| {
                let agent = format!("w{w}");
                let child = spawn(&db, &agent);
                (agent, child)
            })
            .collect();
        std::thread::sleep(Duration::from_millis(20 + (round * 37) % 120));
        for (agent, child) in children {
            acknowledged
                .entry(agent)
                .or_default()
                .extend(kill_and_collect(child));
        }
        rounds += 1;

        // After every round: the store opens, passes check, and has every line.
        let store = Store::open(&db.path, StoreOptions::existing())?;
        let report = store.check()?;
        assert!(report.ok, "round {round}: {:?}", report.problems);
        for (agent, lines) in &acknowledged {
            let Ok(a) = store.existing_agent(agent) else {
                assert!(
                    lines.is_empty(),
                    "agent {agent} lost with {} entries",
                    lines.len()
                );
                continue;
            };
            let stored: HashMap<i64, String> = store
                .memory(&a)
                .list(ListOrder::Time, u64::MAX)?
                .into_iter()
                .map(|e| (e.id, e.content))
                .collect();
            for (id, content) in lines {
                assert_eq!(
                    stored.get(id),
                    Some(content),
                    "round {round}: agent {agent} lost acknowledged entry {id}"
                );
            }
        }
    }
    let total: usize = acknowledged.values().map(Vec::len).sum();
    println!("crash: {rounds} kill rounds, {total} acknowledged entries checked");
    assert!(
        total > 0,
        "the writers acknowledged nothing; the test proved nothing"
    );
    Ok(())
}
