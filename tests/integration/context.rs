//! The compressed context against a reference that scores every entry and packs in
//! Rust.

use agentstore::{MemorySettings, NewEntry};
use proptest::prelude::*;

use crate::common::{RefEntry, TempDb, TestResult, reference_context};

const T0: i64 = 1_735_689_600_000_000;

fn load(
    entries: &[(String, f64, i64)],
    settings: MemorySettings,
) -> (TempDb, agentstore::Memory, Vec<RefEntry>) {
    let db = TempDb::new();
    let (store, _clock) = db.open_at(T0);
    let agent = store.agent("a").unwrap();
    store.set_memory_settings("a", &settings).unwrap();
    let memory = store.memory(&agent);
    let new: Vec<NewEntry> = entries
        .iter()
        .map(|(c, imp, t)| NewEntry {
            role: Default::default(),
            content: c.clone(),
            importance: *imp,
            created_at: T0 + t,
        })
        .collect();
    memory.import_entries(&new).unwrap();
    let model = new
        .into_iter()
        .enumerate()
        .map(|(i, e)| RefEntry {
            id: i as i64 + 1,
            content: e.content,
            importance: e.importance,
            created: e.created_at,
        })
        .collect();
    (db, memory, model)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn context_matches_the_reference(
        entries in prop::collection::vec(
            ("[a-zé\u{0}😀 ]{1,30}", prop_oneof![Just(0.0), Just(0.5), Just(1.0), 0.0f64..=1.0], 0i64..20),
            0..120,
        ),
        max_chars in 0u64..400,
        weights in prop_oneof![
            Just((0.7, 0.3)),
            Just((0.0, 1.0)),
            Just((1.0, 0.0)),
            (0.0f64..2.0, 0.0f64..2.0),
        ],
    ) {
        let settings = MemorySettings::default().with_importance_weight(weights.0).with_recency_weight(weights.1);
        let (_db, memory, model) = load(&entries, settings);
        let got = memory.context(max_chars).unwrap();
        let want = reference_context(&model, weights.0, weights.1, max_chars);
        prop_assert_eq!(&got.text, &want);
        prop_assert_eq!(got.included + got.truncated, model.len() as u64);
    }
}

#[test]
fn context_is_chronological_with_the_truncation_note() -> TestResult {
    let entries = vec![
        ("oldest but vital".to_string(), 1.0, 0),
        ("filler".to_string(), 0.1, 5),
        ("newest and useful".to_string(), 0.8, 10),
    ];
    let (_db, memory, _model) = load(&entries, MemorySettings::default());
    let c = memory.context(35)?;
    assert_eq!(
        c.text,
        "oldest but vital\nnewest and useful\n[... 1 earlier messages truncated for length ...]"
    );
    assert_eq!((c.included, c.truncated), (2, 1));
    // Everything fits: no note.
    assert_eq!(
        memory.context(1000)?.text,
        "oldest but vital\nfiller\nnewest and useful"
    );
    Ok(())
}

#[test]
fn context_at_scale_matches_the_reference() -> TestResult {
    // The W3 data shape: ~200-char entries, 1 s apart, 10,000 of them.
    let vocab = crate::workload::vocab();
    let pairs = crate::workload::memory_pairs(201, 10_000, &vocab);
    let entries: Vec<(String, f64, i64)> = pairs
        .into_iter()
        .enumerate()
        .map(|(i, (c, imp))| (c, imp, i as i64 * 1_000_000))
        .collect();
    let (_db, memory, model) = load(&entries, MemorySettings::default());
    let got = memory.context(2000)?;
    assert_eq!(got.text, reference_context(&model, 0.7, 0.3, 2000));
    assert_eq!(got.included, 9, "W3 expects 9 entries of about 204 chars");
    Ok(())
}
