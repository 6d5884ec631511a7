//! Shared helpers: a temporary database and a reference model of memory retention.

use std::path::{Path, PathBuf};

use agentstore::{ManualClock, MemoryEntry, MemorySettings, Store, StoreOptions};
use tempfile::TempDir;

pub type TestResult = Result<(), Box<dyn std::error::Error>>;

/// How many times over the kill suites run: `AGENTSTORE_SOAK=N` (default 1) for a long
/// soak; CI runs the default, which already meets the numbers the README promises.
pub fn soak() -> u64 {
    std::env::var("AGENTSTORE_SOAK")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n >= 1)
        .unwrap_or(1)
}

/// A database file in its own temporary directory, removed on drop.
pub struct TempDb {
    pub dir: TempDir,
    pub path: PathBuf,
}

impl TempDb {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("agent.db");
        TempDb { dir, path }
    }

    /// Opens the store with a manual clock at `start` microseconds.
    pub fn open_at(&self, start: i64) -> (Store, ManualClock) {
        let clock = ManualClock::new(start);
        let store = Store::open(
            &self.path,
            StoreOptions::default().with_clock(clock.clone()),
        )
        .expect("open store");
        (store, clock)
    }

    /// Every file in the directory, with its length and a hash of its bytes.
    pub fn snapshot(&self) -> Vec<(String, usize, u64)> {
        snapshot_dir(self.dir.path())
    }
}

/// The agentstore binary on `db`, with no database from the environment.
pub fn agentstore(db: &TempDb) -> assert_cmd::Command {
    agentstore_at(&db.path)
}

/// The agentstore binary on the file at `path`, with no database or busy timeout from
/// the environment.
pub fn agentstore_at(path: &Path) -> assert_cmd::Command {
    let mut c = assert_cmd::Command::cargo_bin("agentstore").expect("binary");
    c.env_remove("AGENTSTORE_DB")
        .env_remove("AGENTSTORE_BUSY_TIMEOUT")
        .env_remove("COLUMNS")
        .arg("--db")
        .arg(path);
    c
}

/// Runs the binary with `--json` and `args`, expects success, and parses stdout.
pub fn json_of(db: &TempDb, args: &[&str]) -> serde_json::Value {
    json_at(&db.path, args)
}

/// [`json_of`] for a file at `path`.
pub fn json_at(path: &Path, args: &[&str]) -> serde_json::Value {
    let out = agentstore_at(path)
        .arg("--json")
        .args(args)
        .assert()
        .success();
    serde_json::from_slice(&out.get_output().stdout).expect("stdout is JSON")
}

/// An example binary, which `cargo test` builds beside the test binaries.
pub fn example_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
    let path = dir.join("examples").join(name);
    assert!(
        path.exists(),
        "{} is missing: run the whole `cargo test` (it builds the examples) or `cargo build --examples`",
        path.display()
    );
    path
}

pub fn snapshot_dir(dir: &Path) -> Vec<(String, usize, u64)> {
    use std::hash::{Hash, Hasher};
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| {
            let e = e.expect("dir entry");
            let bytes = std::fs::read(e.path()).unwrap_or_default();
            let mut h = std::collections::hash_map::DefaultHasher::new();
            bytes.hash(&mut h);
            (
                e.file_name().to_string_lossy().into_owned(),
                bytes.len(),
                h.finish(),
            )
        })
        .collect();
    files.sort();
    files
}

/// Every entry of an agent, in a canonical order, for comparing with the model.
pub fn all_entries(store: &Store, agent: &str) -> Vec<(i64, String, f64, i64)> {
    let a = store.existing_agent(agent).expect("agent");
    let mut v: Vec<_> = store
        .memory(&a)
        .list(agentstore::ListOrder::Time, u64::MAX)
        .expect("list")
        .into_iter()
        .map(|e: MemoryEntry| (e.id, e.content, e.importance, e.created_at))
        .collect();
    v.sort_by_key(|e| e.0);
    v
}

/// One entry of the reference model.
#[derive(Debug, Clone, PartialEq)]
pub struct RefEntry {
    pub id: i64,
    pub content: String,
    pub importance: f64,
    pub created: i64,
}

impl RefEntry {
    fn size(&self) -> i64 {
        self.content.len() as i64
    }
}

fn by_rank(a: &RefEntry, b: &RefEntry) -> std::cmp::Ordering {
    a.importance
        .total_cmp(&b.importance)
        .then(a.created.cmp(&b.created))
        .then(a.id.cmp(&b.id))
}

/// The retention rules written the plain way: a Vec, sorts and loops.
#[derive(Debug, Clone)]
pub struct RefMemory {
    pub settings: MemorySettings,
    pub entries: Vec<RefEntry>,
    pub message_count: i64,
}

impl RefMemory {
    pub fn new(settings: MemorySettings) -> Self {
        RefMemory {
            settings,
            entries: Vec::new(),
            message_count: 0,
        }
    }

    fn bytes(&self) -> i64 {
        self.entries.iter().map(RefEntry::size).sum()
    }

    /// Deletes the `n` lowest by (importance, created, id).
    pub fn delete_lowest(&mut self, n: usize) {
        self.entries.sort_by(by_rank);
        self.entries.drain(..n.min(self.entries.len()));
    }

    pub fn add(&mut self, content: &str, importance: f64, now: i64) -> i64 {
        let s = self.settings;
        self.message_count += 1;
        if s.cleanup_interval > 0 && self.message_count % s.cleanup_interval as i64 == 0 {
            let count = self.entries.len();
            let keep = (count as f64 * s.keep_fraction).floor() as usize;
            if keep > 0 {
                self.delete_lowest(count - keep);
            }
        }
        self.entries.push(RefEntry {
            id: self.message_count,
            content: content.to_string(),
            importance,
            created: now,
        });
        if self.entries.len() as u64 > s.max_entries {
            self.entries.sort_by_key(|e| (e.created, e.id));
            let extra = self.entries.len() - s.max_entries as usize;
            self.entries.drain(..extra);
        }
        if self.bytes() as f64 > s.max_bytes() {
            let target = (s.low_water * s.max_bytes()).floor() as i64;
            self.entries.sort_by(by_rank);
            while self.bytes() > target {
                self.entries.remove(0);
            }
        }
        self.message_count
    }

    pub fn sorted(&self) -> Vec<(i64, String, f64, i64)> {
        let mut v: Vec<_> = self
            .entries
            .iter()
            .map(|e| (e.id, e.content.clone(), e.importance, e.created))
            .collect();
        v.sort_by_key(|e| e.0);
        v
    }
}

/// The compressed context written the plain way: score every entry, sort, pack.
pub fn reference_context(entries: &[RefEntry], wi: f64, wr: f64, max_chars: u64) -> String {
    if entries.is_empty() {
        return String::new();
    }
    let newest = entries.iter().map(|e| e.created).max().unwrap();
    let oldest = entries.iter().map(|e| e.created).min().unwrap();
    let span = newest - oldest;
    let score = |e: &RefEntry| {
        let rec = if span == 0 {
            1.0
        } else {
            1.0 - (newest - e.created) as f64 / span as f64
        };
        wi * e.importance + wr * rec
    };
    let mut ranked: Vec<&RefEntry> = entries.iter().collect();
    ranked.sort_by(|a, b| {
        score(b)
            .total_cmp(&score(a))
            .then(b.created.cmp(&a.created))
            .then(b.id.cmp(&a.id))
    });
    let mut used = 0u64;
    let mut chosen = Vec::new();
    for e in ranked {
        let chars = e.content.chars().count() as u64;
        if used + chars > max_chars {
            break;
        }
        used += chars;
        chosen.push(e);
    }
    chosen.sort_by_key(|e| (e.created, e.id));
    let mut lines: Vec<String> = chosen.iter().map(|e| e.content.clone()).collect();
    let left_out = entries.len() - chosen.len();
    if left_out > 0 {
        lines.push(format!(
            "[... {left_out} earlier messages truncated for length ...]"
        ));
    }
    lines.join("\n")
}

/// Says why a test that needs `what` skips here, or fails it when the environment
/// variable `require` is set (the README's test command sets them: a suite it needs
/// must run, not skip).
pub fn skip(require: &str, what: &str, why: &str) {
    assert!(
        std::env::var_os(require).is_none(),
        "{require} is set but {why}"
    );
    eprintln!("skipping {what}: {why}");
}
