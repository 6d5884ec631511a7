//! The import fuzz check: any bytes given to `import` either import into a file that
//! `check` calls healthy, or are refused with the file unchanged; importing the same
//! bytes a second time never adds rows.

use agentstore::{Store, StoreOptions};

/// Runs one input. Panics when an invariant breaks.
pub fn check(data: &[u8]) {
    let dir = tempfile::tempdir_in(scratch()).expect("temp dir");
    let store = Store::open(dir.path().join("fuzz.db"), StoreOptions::default()).expect("open");
    let before = store.check().expect("check").row_counts;
    match store.import(&mut &data[..], None) {
        Err(e) => {
            let after = store.check().expect("check").row_counts;
            assert_eq!(before, after, "a refused import changed the file ({e})");
            let message = e.to_string();
            assert!(!message.contains('\n'), "a multi-line error: {message:?}");
        }
        Ok(_) => {
            let report = store.check().expect("check");
            assert!(
                report.ok,
                "an accepted import failed check: {:?}",
                report.problems
            );
            let counts = report.row_counts;
            let _ = store.import(&mut &data[..], None);
            let again = store.check().expect("check");
            assert!(
                again.ok,
                "a second import failed check: {:?}",
                again.problems
            );
            assert_eq!(counts, again.row_counts, "a second import added rows");
        }
    }
}

/// A RAM-backed directory when there is one: an input opens a fresh file.
fn scratch() -> std::path::PathBuf {
    let shm = std::path::Path::new("/dev/shm");
    if shm.is_dir() {
        shm.into()
    } else {
        std::env::temp_dir()
    }
}
