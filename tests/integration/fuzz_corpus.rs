//! Replays the fuzz targets' corpora (`fuzz/corpus/<target>/`: the seeds, and inputs
//! the fuzzer found worth keeping) through the same checks the targets run, so CI
//! catches a regression in seconds without a fuzzer. `cargo fuzz run <target>` runs
//! them for longer (see the README).

#[path = "../../fuzz/checks/canonical_json.rs"]
mod canonical_json;
#[path = "../../fuzz/checks/import.rs"]
mod import;
#[path = "../../fuzz/checks/sql_gate.rs"]
mod sql_gate;

/// Every file of one target's corpus, by name.
fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no corpus for {target}");
    files
}

fn replay(target: &str, check: fn(&[u8])) {
    for (name, data) in corpus(target) {
        let outcome = std::panic::catch_unwind(|| check(&data));
        assert!(
            outcome.is_ok(),
            "fuzz/corpus/{target}/{name} fails its check"
        );
    }
}

#[test]
fn the_import_corpus_passes() {
    replay("import", import::check);
}

#[test]
fn the_sql_gate_corpus_passes() {
    replay("sql_gate", sql_gate::check);
}

#[test]
fn the_canonical_json_corpus_passes() {
    replay("canonical_json", canonical_json::check);
}
