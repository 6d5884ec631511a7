//! Faults from the machine: a full disk.

use std::path::{Path, PathBuf};
use std::process::Command;

use agentstore::{Error, MemorySettings, Store, StoreOptions};

use crate::common::TestResult;

/// A 2 MiB tmpfs, unmounted on drop.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount() -> Option<SmallDisk> {
        let dir = tempfile::tempdir().ok()?;
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=2m", "tmpfs"])
            .arg(dir.path())
            .output()
            .ok()?
            .status
            .success();
        ok.then_some(SmallDisk { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

#[test]
fn a_full_disk_fails_clearly_stores_nothing_partial_and_recovers() -> TestResult {
    let Some(disk) = SmallDisk::mount() else {
        println!("skipped: cannot mount a tmpfs here (needs root)");
        return Ok(());
    };
    let filler: PathBuf = disk.path().join("filler");
    std::fs::write(&filler, vec![7u8; 1024 * 1024])?;
    let path = disk.path().join("agent.db");
    let store = Store::open(&path, StoreOptions::default())?;
    let agent = store.agent("a")?;
    let settings = MemorySettings::default()
        .with_max_entries(1 << 40)
        .with_max_memory_mb(1024.0)
        .with_cleanup_interval(0);
    store.set_memory_settings("a", &settings)?;
    let memory = store.memory(&agent);

    let content = "x".repeat(4000);
    let mut acknowledged = 0u64;
    let err = loop {
        match memory.add(&content, 0.5) {
            Ok(_) => acknowledged += 1,
            Err(e) => break e,
        }
        assert!(acknowledged < 10_000, "the disk never filled up");
    };
    assert!(matches!(err, Error::DiskFull), "unexpected error: {err}");
    assert_eq!(
        err.to_string(),
        "disk full: the write was not stored; free some space and retry"
    );
    // Reads keep working and see exactly what was acknowledged.
    assert_eq!(memory.stats()?.total_entries, acknowledged);
    // A batch that does not fit is refused whole.
    let batch: Vec<(String, f64)> = (0..50).map(|_| (content.clone(), 0.5)).collect();
    assert!(matches!(memory.add_many(&batch), Err(Error::DiskFull)));
    assert_eq!(memory.stats()?.total_entries, acknowledged);

    // Free space: writes resume on the same store, without reopening.
    std::fs::remove_file(&filler)?;
    memory.add("after the disk was freed", 0.5)?;
    assert_eq!(memory.stats()?.total_entries, acknowledged + 1);
    let report = store.check()?;
    assert!(report.ok, "{:?}", report.problems);
    drop(memory);
    drop(store);
    Ok(())
}
