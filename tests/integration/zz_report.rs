//! The reliability report: the stress tests add what they did to the counters here,
//! and `zz_report::reliability_counts` prints the totals at the end of the suite. The
//! test harness starts tests in name order, so this module's name puts its test last;
//! it then waits for the contributing tests still running (each holds a [`Running`]
//! guard) before it prints. Printed straight to stderr, past the harness's capture, so
//! the counts are in every CI log.

use std::io::Write;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What the report counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Count {
    /// Rounds in which processes were killed with SIGKILL and the file was checked.
    KillRounds,
    /// Processes started against one file (writers, readers, openers, CLI runs).
    Processes,
    /// Acknowledged writes checked to be present afterwards.
    AcknowledgedWrites,
    /// Bad inputs tried (each refused cleanly, with the file unchanged).
    BadInputs,
    /// Write attempts through the read-only `sql` command, each refused.
    WriteTricksRefused,
}

const KINDS: [(Count, &str); 5] = [
    (Count::KillRounds, "kill rounds survived"),
    (Count::Processes, "processes"),
    (Count::AcknowledgedWrites, "acknowledged writes checked"),
    (Count::BadInputs, "bad inputs tried"),
    (Count::WriteTricksRefused, "write tricks refused"),
];

struct Tally {
    counts: [u64; 5],
    started: u64,
    finished: u64,
}

static TALLY: Mutex<Tally> = Mutex::new(Tally {
    counts: [0; 5],
    started: 0,
    finished: 0,
});

fn tally() -> std::sync::MutexGuard<'static, Tally> {
    TALLY.lock().unwrap_or_else(|e| e.into_inner())
}

/// Adds `n` to a counter.
pub fn add(count: Count, n: u64) {
    let i = KINDS
        .iter()
        .position(|(c, _)| *c == count)
        .expect("known count");
    tally().counts[i] += n;
}

/// Held by a contributing test while it runs (dropped on panic too).
pub struct Running(());

/// Marks the calling test as a contributor that the report waits for.
pub fn running() -> Running {
    tally().started += 1;
    Running(())
}

impl Drop for Running {
    fn drop(&mut self) {
        tally().finished += 1;
    }
}

#[test]
fn reliability_counts() {
    // Tests that started just before this one may not have registered yet.
    std::thread::sleep(Duration::from_millis(300));
    let deadline = Instant::now() + Duration::from_secs(900);
    loop {
        let t = tally();
        if t.started == t.finished || Instant::now() > deadline {
            break;
        }
        drop(t);
        std::thread::sleep(Duration::from_millis(50));
    }
    let t = tally();
    let mut text = String::from("\nreliability report (this run):\n");
    for ((_, name), n) in KINDS.iter().zip(t.counts) {
        text += &format!("  {n:>8}  {name}\n");
    }
    if t.started == 0 {
        text += "  (no stress test ran in this process; run the whole `cargo test`)\n";
    }
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
    assert_eq!(
        t.started, t.finished,
        "a stress test was still running after 15 minutes"
    );
}
