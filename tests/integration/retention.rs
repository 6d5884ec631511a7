//! Adding entries with retention (regular cleanup, the max_entries cap, the emergency
//! cleanup), pruning and stats, checked against the plain model in `common`.

use std::time::Duration;

use agentstore::{Error, MemorySettings, NewEntry, Prune};
use std::cell::Cell;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

use crate::common::{RefEntry, RefMemory, all_entries};
use crate::engines::{Engine, engines};

const T0: i64 = 1_735_689_600_000_000;

fn settings_strategy() -> impl Strategy<Value = MemorySettings> {
    (
        1u64..25,
        0u64..8,
        prop_oneof![Just(0.7), Just(0.5), Just(0.0), Just(1.0), 0.0f64..1.0],
        100u64..2000,
        prop_oneof![Just(0.8), Just(0.0), Just(1.0), 0.0f64..1.0],
    )
        .prop_map(|(max_entries, interval, keep, budget, low)| {
            MemorySettings::default()
                .with_max_entries(max_entries)
                .with_cleanup_interval(interval)
                .with_keep_fraction(keep)
                .with_max_memory_mb(budget as f64 / (1024.0 * 1024.0))
                .with_low_water(low)
        })
}

fn importance_strategy() -> impl Strategy<Value = f64> {
    // Few distinct values, so ties in importance (and in time) are common.
    prop_oneof![Just(0.0), Just(0.5), Just(1.0), 0.0f64..=1.0]
}

/// (content, importance, clock step in µs, batch with the next one)
/// PostgreSQL text holds no NUL byte (refused, tested below), so its contents have none.
fn ops_strategy(engine: Engine) -> impl Strategy<Value = Vec<(String, f64, u8, bool)>> {
    let text = match engine {
        Engine::Sqlite => "[a-z é\u{0}]{1,120}",
        Engine::Postgres => "[a-z é]{1,120}",
    };
    prop::collection::vec((text, importance_strategy(), 0u8..3, any::<bool>()), 1..60)
}

/// A runner of `cases` random cases, and a fresh agent name for each.
fn runner(cases: u32) -> (TestRunner, impl Fn() -> String) {
    let case = Cell::new(0);
    let name = move || {
        case.set(case.get() + 1);
        format!("a{}", case.get())
    };
    (
        TestRunner::new(Config {
            cases,
            ..Config::default()
        }),
        name,
    )
}

engines! {
    /// Every add (single or batched) leaves exactly the entries the model keeps, and
    /// the trigger-kept counters equal the real ones.
    fn retention_matches_the_reference(db: &Db) -> TestResult {
        let (mut runner, next) = runner(48);
        runner.run(&(settings_strategy(), ops_strategy(db.engine)), |(settings, ops)| {
            let name = next();
            let (store, clock) = db.open_at(T0);
            let agent = store.agent(&name).unwrap();
            store.set_memory_settings(&name, &settings).unwrap();
            let memory = store.memory(&agent);
            let mut model = RefMemory::new(settings);

            let mut i = 0;
            while i < ops.len() {
                clock.advance(Duration::from_micros(ops[i].2 as u64));
                let now = store.now_micros();
                // A run of ops flagged `batch` goes through add_many; the rest through add.
                let mut j = i + 1;
                while j < ops.len() && ops[j - 1].3 {
                    j += 1;
                }
                if j - i > 1 {
                    let batch: Vec<(String, f64)> =
                        ops[i..j].iter().map(|o| (o.0.clone(), o.1)).collect();
                    let ids = memory.add_many(&batch).unwrap();
                    let want: Vec<i64> =
                        batch.iter().map(|(c, imp)| model.add(c, *imp, now)).collect();
                    prop_assert_eq!(ids, want);
                } else {
                    let id = memory.add(&ops[i].0, ops[i].1).unwrap();
                    prop_assert_eq!(id, model.add(&ops[i].0, ops[i].1, now));
                }
                prop_assert_eq!(all_entries(&store, &name), model.sorted());
                i = j;
            }
            let report = store.check().unwrap();
            prop_assert!(report.ok, "{:?}", report.problems);
            let stats = memory.stats().unwrap();
            prop_assert_eq!(stats.total_entries, model.entries.len() as u64);
            Ok(())
        })?;
        Ok(())
    }

    /// Each prune rule removes what the model removes, and its dry run reports the same
    /// numbers while removing nothing.
    fn prune_matches_the_reference_and_dry_runs_agree(db: &Db) -> TestResult {
        // Up to 300 entries: a prune's first batch is 64 rows, so this covers one to
        // three batches.
        let entries =
            prop::collection::vec(("[a-z]{1,40}", importance_strategy(), 0i64..50), 0..300);
        let rule = prop_oneof![
            (0.0f64..=1.0).prop_map(Prune::KeepFraction),
            importance_strategy().prop_map(Prune::MinImportance),
            (1u64..60).prop_map(|s| Prune::OlderThan(Duration::from_micros(s))),
            (0u64..2000).prop_map(Prune::MaxBytes),
        ];
        let (mut runner, next) = runner(48);
        runner.run(&(entries, rule), |(entries, rule)| {
            let name = next();
            let (store, _clock) = db.open_at(T0 + 50);
            let agent = store.agent(&name).unwrap();
            let memory = store.memory(&agent);
            let new: Vec<NewEntry> = entries
                .iter()
                .map(|(c, imp, t)| NewEntry { role: Default::default(), content: c.clone(), importance: *imp, created_at: T0 + t })
                .collect();
            memory.import_entries(&new).unwrap();
            let mut model: Vec<RefEntry> = new
                .iter()
                .enumerate()
                .map(|(i, e)| RefEntry {
                    id: i as i64 + 1,
                    content: e.content.clone(),
                    importance: e.importance,
                    created: e.created_at,
                })
                .collect();
            let before = all_entries(&store, &name);

            let dry = memory.prune(rule, true).unwrap();
            prop_assert_eq!(all_entries(&store, &name), before.clone());
            let done = memory.prune(rule, false).unwrap();
            prop_assert_eq!(dry.removed_entries, done.removed_entries);
            prop_assert_eq!(dry.removed_bytes, done.removed_bytes);
            prop_assert!(!done.resumed && !dry.resumed);
            // The first batch is 64 rows; whatever the sizes after it, more rows than that
            // took more than one transaction, and nothing to remove took none.
            prop_assert_eq!(done.batches == 0, done.removed_entries == 0);
            prop_assert_eq!(done.batches > 1, done.removed_entries > 64);

            let total_before = model.len();
            let bytes_before: i64 = model.iter().map(|e| e.content.len() as i64).sum();
            let mut rm = RefMemory::new(MemorySettings::default());
            rm.entries = model.clone();
            match rule {
                Prune::KeepFraction(f) => {
                    let keep = (total_before as f64 * f).floor() as usize;
                    rm.delete_lowest(total_before - keep);
                }
                Prune::MinImportance(x) => rm.entries.retain(|e| e.importance >= x),
                Prune::OlderThan(d) => {
                    let cutoff = T0 + 50 - d.as_micros() as i64;
                    rm.entries.retain(|e| e.created >= cutoff);
                }
                Prune::MaxBytes(max) => {
                    rm.entries.sort_by(|a, b| a.importance.total_cmp(&b.importance)
                        .then(a.created.cmp(&b.created)).then(a.id.cmp(&b.id)));
                    while rm.entries.iter().map(|e| e.content.len() as u64).sum::<u64>() > max {
                        rm.entries.remove(0);
                    }
                }
            }
            model = rm.entries.clone();
            prop_assert_eq!(all_entries(&store, &name), rm.sorted());
            prop_assert_eq!(done.removed_entries as usize, total_before - model.len());
            let bytes_after: i64 = model.iter().map(|e| e.content.len() as i64).sum();
            prop_assert_eq!(done.removed_bytes as i64, bytes_before - bytes_after);
            prop_assert!(store.check().unwrap().ok);
            Ok(())
        })?;
        Ok(())
    }
}

engines! {
    fn the_seed_scenario_settles_at_about_231_entries(db: &Db) -> TestResult {
        // W1's expected behaviour: cleanup every 100 messages keeps 70%; x -> 0.7(x+99)+1.
        let (store, _clock) = db.open_at(T0);
        let memory = store.memory(&store.agent("a")?);
        let items: Vec<(String, f64)> = (0..1000)
            .map(|i| (format!("message {i}"), (i % 10) as f64 / 10.0))
            .collect();
        memory.add_many(&items)?;
        let mut x = 0i64;
        for step in 1..=1000i64 {
            if step % 100 == 0 {
                x = (x as f64 * 0.7).floor() as i64;
            }
            x += 1;
        }
        assert_eq!(memory.stats()?.total_entries, x as u64);
        assert!((225..=235).contains(&x), "settled at {x}");
        Ok(())
    }
}

engines! {
    fn bad_importance_is_refused_before_any_write(db: &Db) -> TestResult {
        let (store, _clock) = db.open_at(T0);
        let agent = store.agent("a")?;
        let memory = store.memory(&agent);
        for bad in [f64::NAN, f64::INFINITY, -0.01, 1.5] {
            let err = memory.add("x", bad).unwrap_err();
            assert!(matches!(err, Error::InvalidImportance(_)), "{err}");
            assert!(err.to_string().starts_with("importance must be"));
        }
        // A batch with one bad item stores none of it.
        let err = memory
            .add_many(&[("ok", 0.5), ("bad", f64::NAN)])
            .unwrap_err();
        assert!(matches!(err, Error::InvalidImportance(_)));
        assert_eq!(store.existing_agent("a")?.message_count, 0);
        assert_eq!(memory.stats()?.total_entries, 0);
        Ok(())
    }
}

engines! {
    fn oversized_content_is_refused(db: &Db) -> TestResult {
        let (store, _clock) = db.open_at(T0);
        let memory = store.memory(&store.agent("a")?);
        let big = "x".repeat(agentstore::MAX_CONTENT_BYTES + 1);
        assert!(matches!(
            memory.add(&big, 0.5),
            Err(Error::InvalidArgument(_))
        ));
        assert_eq!(memory.stats()?.total_entries, 0);
        Ok(())
    }
}

engines! {
    fn state_survives_closing_and_reopening(db: &Db) -> TestResult {
        {
            let (store, clock) = db.open_at(T0);
            let memory = store.memory(&store.agent("a")?);
            for i in 0..150 {
                clock.advance(Duration::from_secs(1));
                memory.add(&format!("entry {i} ünïcode"), (i % 7) as f64 / 7.0)?;
            }
            let mut s = store.existing_agent("a")?.settings;
            s.max_entries = 77;
            store.set_memory_settings("a", &s)?;
        }
        let (store, _clock) = db.open_at(T0 + 3_600_000_000);
        let agent = store.existing_agent("a")?;
        assert_eq!(agent.message_count, 150);
        assert_eq!(agent.settings.max_entries, 77);
        // 100th message: 99 existing -> keep 69; then 50 more = 120 entries.
        assert_eq!(agent.memory_entries, 120);
        let stats = store.memory(&agent).stats()?;
        assert_eq!(stats.total_entries, 120);
        assert!(stats.memory_span_hours.unwrap() <= 149.0 / 3600.0 + 1e-12);
        assert!(store.check()?.ok);
        Ok(())
    }
}

engines! {
    fn stats_have_exactly_the_original_keys(db: &Db) -> TestResult {
        let (store, clock) = db.open_at(T0);
        let memory = store.memory(&store.agent("a")?);
        let empty = serde_json::to_value(memory.stats()?)?;
        let keys: Vec<&String> = empty.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["total_entries", "total_memory_mb"]);

        memory.add(&"a".repeat(1024 * 1024 / 2), 0.2)?;
        clock.advance(Duration::from_secs(7200));
        memory.add("b", 0.6)?;
        clock.advance(Duration::from_secs(3600));
        let s = memory.stats()?;
        let v = serde_json::to_value(&s)?;
        let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
        assert_eq!(
            keys,
            [
                "total_entries",
                "total_memory_mb",
                "avg_importance_score",
                "memory_utilization_pct",
                "oldest_entry_age_hours",
                "memory_span_hours"
            ]
        );
        assert_eq!(s.total_entries, 2);
        assert!((s.total_memory_mb - (524_288.0 + 1.0) / 1_048_576.0).abs() < 1e-12);
        assert!((s.avg_importance_score.unwrap() - 0.4).abs() < 1e-12);
        assert!((s.memory_utilization_pct.unwrap() - s.total_memory_mb * 10.0).abs() < 1e-9);
        assert!((s.oldest_entry_age_hours.unwrap() - 3.0).abs() < 1e-9);
        assert!((s.memory_span_hours.unwrap() - 2.0).abs() < 1e-9);
        Ok(())
    }
}

engines! {
    fn the_emergency_cleanup_stops_at_low_water(db: &Db) -> TestResult {
        let (store, _clock) = db.open_at(T0);
        let agent = store.agent("a")?;
        let settings = MemorySettings::default()
            .with_max_memory_mb(1000.0 / (1024.0 * 1024.0))
            .with_cleanup_interval(0);
        store.set_memory_settings("a", &settings)?;
        let memory = store.memory(&agent);
        for i in 0..10 {
            memory.add(&"x".repeat(100), i as f64 / 10.0)?; // 1000 bytes: not over
        }
        assert_eq!(memory.stats()?.total_entries, 10);
        memory.add("y", 0.95)?; // 1001 bytes: down to <= 800, least important first
        let left = all_entries(&store, "a");
        let bytes: usize = left.iter().map(|e| e.1.len()).sum();
        assert_eq!(bytes, 701);
        assert_eq!(
            left.first().map(|e| e.0),
            Some(4),
            "ids 1-3 (importance 0-0.2) went"
        );
        Ok(())
    }
}

engines! {
    fn empty_content_is_refused_and_odd_content_round_trips(db: &Db) -> TestResult {
        let (store, _clock) = db.open_at(T0);
        let memory = store.memory(&store.agent("a")?);
        let err = memory.add("", 0.5).unwrap_err();
        assert_eq!(
            err.to_string(),
            "content is empty; a memory entry needs some text"
        );
        let mut odd = vec![
            "nul\0inside",
            "🦀 émoji and ünïcode ﷽",
            "'); DROP TABLE memory_entries;--",
            "line\nbreaks\r\nand\ttabs",
        ];
        if db.engine == Engine::Postgres {
            // PostgreSQL text holds no NUL byte: refused before anything is written.
            let err = memory.add(odd[0], 0.5).unwrap_err();
            assert!(err.to_string().contains("NUL byte"), "{err}");
            assert_eq!(store.existing_agent("a")?.message_count, 0);
            odd.remove(0);
        }
        for text in &odd {
            memory.add(text, 0.5)?;
        }
        let stored: Vec<String> = all_entries(&store, "a").into_iter().map(|e| e.1).collect();
        assert_eq!(stored, odd);
        assert_eq!(memory.stats()?.total_entries, odd.len() as u64);
        Ok(())
    }
}
