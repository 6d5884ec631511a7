//! The compressed context against a reference that scores every entry and packs in
//! Rust, on both engines.

use agentstore::{MemorySettings, NewEntry, StoreOptions};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

use crate::common::{RefEntry, reference_context};
use crate::engines::{Db, Engine, engines};

const T0: i64 = 1_735_689_600_000_000;

/// A fresh agent `name` in `db` holding `entries` (content, importance, offset from
/// `T0`), and the model of it.
fn load(
    db: &Db,
    name: &str,
    entries: &[(String, f64, i64)],
    settings: MemorySettings,
) -> (agentstore::Memory, Vec<RefEntry>) {
    let (store, _clock) = db.open_at(T0);
    let agent = store.agent(name).unwrap();
    store.set_memory_settings(name, &settings).unwrap();
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
    (memory, model)
}

engines! {
    /// Random entries, budgets and weights: one fresh agent per case.
    fn context_matches_the_reference(db: &Db) -> TestResult {
        // PostgreSQL text holds no NUL byte (refused, tested in `retention`).
        let text = if db.engine == Engine::Postgres {
            "[a-zé😀 ]{1,30}"
        } else {
            "[a-zé\u{0}😀 ]{1,30}"
        };
        let entries = prop::collection::vec(
            (text, prop_oneof![Just(0.0), Just(0.5), Just(1.0), 0.0f64..=1.0], 0i64..20),
            0..120,
        );
        let weights = prop_oneof![
            Just((0.7, 0.3)),
            Just((0.0, 1.0)),
            Just((1.0, 0.0)),
            (0.0f64..2.0, 0.0f64..2.0),
        ];
        let case = std::cell::Cell::new(0);
        TestRunner::new(Config { cases: 64, ..Config::default() }).run(
            &(entries, 0u64..400, weights),
            |(entries, max_chars, weights)| {
                case.set(case.get() + 1);
                let settings = MemorySettings::default()
                    .with_importance_weight(weights.0)
                    .with_recency_weight(weights.1);
                let (memory, model) = load(db, &format!("a{}", case.get()), &entries, settings);
                let got = memory.context(max_chars).unwrap();
                let want = reference_context(&model, weights.0, weights.1, max_chars);
                prop_assert_eq!(&got.text, &want);
                prop_assert_eq!(got.included + got.truncated, model.len() as u64);
                Ok(())
            },
        )?;
        Ok(())
    }
}

engines! {
    fn context_is_chronological_with_the_truncation_note(db: &Db) -> TestResult {
        let entries = vec![
            ("oldest but vital".to_string(), 1.0, 0),
            ("filler".to_string(), 0.1, 5),
            ("newest and useful".to_string(), 0.8, 10),
        ];
        let (memory, _model) = load(db, "a", &entries, MemorySettings::default());
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
}

engines! {
    fn context_at_scale_matches_the_reference(db: &Db) -> TestResult {
        // The W3 data shape: ~200-char entries, 1 s apart, 10,000 of them.
        let vocab = crate::workload::vocab();
        let pairs = crate::workload::memory_pairs(201, 10_000, &vocab);
        let entries: Vec<(String, f64, i64)> = pairs
            .into_iter()
            .enumerate()
            .map(|(i, (c, imp))| (c, imp, i as i64 * 1_000_000))
            .collect();
        let (memory, model) = load(db, "a", &entries, MemorySettings::default());
        let got = memory.context(2000)?;
        assert_eq!(got.text, reference_context(&model, 0.7, 0.3, 2000));
        assert_eq!(got.included, 9, "W3 expects 9 entries of about 204 chars");
        Ok(())
    }
}

engines! {
    /// Nothing to add is no error on either engine, and changes nothing (found by the
    /// reference proptest drawing an empty list on PostgreSQL).
    fn adding_or_importing_nothing_is_a_no_op(db: &Db) -> TestResult {
        let store = db.open(StoreOptions::default())?;
        let agent = store.agent("a")?;
        let memory = store.memory(&agent);
        assert_eq!(memory.add_many::<&str>(&[])?, Vec::<i64>::new());
        memory.import_entries(&[])?;
        let agent = store.existing_agent("a")?;
        assert_eq!((agent.message_count, agent.memory_entries), (0, 0));
        assert_eq!(memory.add("first", 0.5)?, 1);
        Ok(())
    }
}
