//! The read-only `sql` gate fuzz check: whatever the statement, the database file and
//! its directory are byte-for-byte unchanged afterwards, and no file appears in the
//! working directory either.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use agentstore::{Store, StoreOptions};

struct Fixture {
    _dir: tempfile::TempDir,
    db: PathBuf,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = dir.path().join("gate.db");
        {
            let store = Store::open(&db, StoreOptions::default()).expect("open");
            let agent = store.agent("fuzz").expect("agent");
            let memory = store.memory(&agent);
            for i in 0..20 {
                memory.add(&format!("entry {i}"), 0.5).expect("add");
            }
        }
        Fixture { _dir: dir, db }
    })
}

/// Names, sizes and a hash of every file in `dir`.
fn snapshot(dir: &Path) -> Vec<(String, u64, [u8; 32])> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .expect("read dir")
        .filter_map(|e| e.ok())
        .map(|e| {
            let path = e.path();
            let bytes = std::fs::read(&path).unwrap_or_default();
            (
                e.file_name().to_string_lossy().into_owned(),
                bytes.len() as u64,
                *blake3::hash(&bytes).as_bytes(),
            )
        })
        .collect();
    files.sort();
    files
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Runs one input. Panics when a statement wrote or created a file.
pub fn check(data: &[u8]) {
    let Ok(sql) = std::str::from_utf8(data) else {
        return;
    };
    let fx = fixture();
    let dir = fx.db.parent().expect("parent");
    let cwd = std::env::current_dir().expect("cwd");
    let before = (snapshot(dir), names(&cwd));
    let result = agentstore::query_read_only(&fx.db, sql, Duration::from_millis(200));
    let after = (snapshot(dir), names(&cwd));
    assert_eq!(
        before,
        after,
        "{sql:?} changed files ({:?})",
        result.map(|r| r.rows.len())
    );
}
