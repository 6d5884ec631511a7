//! The response path: the indexed fuzzy lookup against a scan of every cached message,
//! timeouts and fallbacks, the log and its percentiles, tuning, the cap, and the CLI.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use agentstore::agent::{
    FALLBACK_LONG, FALLBACK_OTHER, FALLBACK_QUESTION, GenerationError, Responder, ResponseConfig,
    generator_fn,
};
use agentstore::words::{differ_in_meaning, jaccard, shared_words, word_set};
use agentstore::{
    Error, FuzzyOptions, LoggedResponse, Outcome, ResponseTimeStats, Store, StoreOptions,
};
use proptest::prelude::*;
use serde_json::json;

use crate::common::{TempDb, TestResult};
use crate::engines::{Db, engines, engines_async};

/// The original's `_find_similar_response`, guard included: every cached message in
/// the order it was cached, the first of the best similarity above the threshold.
fn brute_force(
    store: &Store,
    agent_id: i64,
    query: &str,
    o: FuzzyOptions,
) -> Option<(i64, String)> {
    let c = rusqlite::Connection::open(store.sqlite_path().unwrap()).expect("open");
    let mut stmt = c
        .prepare("SELECT id, message, response FROM response_cache WHERE agent_id = ?1 ORDER BY id")
        .expect("prepare");
    let rows: Vec<(i64, String, String)> = stmt
        .query_map([agent_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    let q = word_set(query);
    let mut best: Option<(i64, String)> = None;
    let mut best_similarity = 0.0;
    for (id, message, response) in rows {
        let c = word_set(&message);
        if q.len() + c.len() == 0 {
            continue;
        }
        let s = jaccard(q.len(), c.len(), shared_words(&q, &c));
        if s > o.threshold
            && s > best_similarity
            && !(o.negation_guard && differ_in_meaning(query, &message))
        {
            best_similarity = s;
            best = Some((id, response));
        }
    }
    best
}

/// Words from a small vocabulary (so that messages overlap), with case changes,
/// repeats, Unicode, punctuation, negations and numbers.
fn message() -> impl Strategy<Value = String> {
    let word = prop_oneof![
        8 => prop::sample::select(vec![
            "the", "server", "is", "running", "up", "down", "disk", "full", "why", "how",
            "Server", "RUNNING", "café", "naïve", "日本", "?", "...", "!!",
        ]),
        1 => prop::sample::select(vec!["not", "no", "never", "isn't", "don't", "42", "v2", "8080"]),
    ];
    prop::collection::vec(word, 0..9).prop_map(|w| w.join(" "))
}

fn mutated(base: String, extra: String, drop_first: bool) -> String {
    let mut words: Vec<&str> = base.split(' ').collect();
    if drop_first && !words.is_empty() {
        words.remove(0);
    }
    format!("{} {extra}", words.join(" "))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn the_indexed_fuzzy_lookup_equals_a_scan_of_every_message(
        cached in prop::collection::vec(message(), 0..40),
        queries in prop::collection::vec((message(), any::<prop::sample::Index>(), message(), any::<bool>()), 1..12),
        threshold in prop::sample::select(vec![0.0, 0.3, 0.5, 0.7, 0.7, 0.9]),
        guard in any::<bool>(),
    ) {
        let db = TempDb::new();
        let store = Store::open(&db.path, StoreOptions::default()).unwrap();
        let agent = store.agent("bot").unwrap();
        store.agent("other").unwrap();
        let pairs: Vec<(String, String)> =
            cached.iter().enumerate().filter(|(_, m)| !m.is_empty()).map(|(i, m)| (m.clone(), format!("r{i}"))).collect();
        // The first part goes through a bulk store (indexed at once), the rest one by
        // one (waiting for the word index): lookups must not tell the difference.
        let split = pairs.len() / 2;
        store.response_cache(&agent).put_many(&pairs[..split]).unwrap();
        for (m, r) in &pairs[split..] {
            store.response_cache(&agent).put(m, r).unwrap();
        }
        // Another agent's messages never match.
        store.response_cache(&store.agent("other").unwrap()).put("the server is running", "other").unwrap();
        let options = FuzzyOptions::default().with_threshold(threshold).with_negation_guard(guard);
        for (fresh, pick, extra, drop_first) in queries {
            // Half the queries are near-copies of a cached message.
            let query = if cached.is_empty() || drop_first {
                fresh
            } else {
                mutated(pick.get(&cached).clone(), extra, false)
            };
            let got = store.response_cache(&agent)
                .lookup_fuzzy(&query, options)
                .unwrap()
                .map(|m| (m.id, m.response));
            prop_assert_eq!(got, brute_force(&store, agent.id, &query, options), "query {:?}", query);
        }
    }
}

engines! {
    fn ties_go_to_the_earliest_cached_and_the_guard_skips_to_the_next_best(db: &Db) -> TestResult {
        let store = db.open(StoreOptions::default())?;
        let agent = store.agent("bot")?;
        store
            .response_cache(&agent)
            .put("is the web server up now", "first")?;
        store
            .response_cache(&agent)
            .put("IS THE WEB SERVER UP NOW", "second (same words)")?;
        store
            .response_cache(&agent)
            .put("is the web server not up now", "negated")?;
        let options = FuzzyOptions::default();
        let m = store
            .response_cache(&agent)
            .lookup_fuzzy("is the web server up now please", options)?;
        let m = m.expect("a match");
        assert_eq!((m.response.as_str(), m.kind), ("first", Outcome::Fuzzy));
        assert!((m.similarity - 6.0 / 7.0).abs() < 1e-12);
        // Without the guard the negated one (5/6 shared... 6 of 7) could win; with it,
        // "is the web server not up now" never answers "is the web server up now".
        let m = store
            .response_cache(&agent)
            .lookup_fuzzy("is the web server not up", options)?;
        assert_eq!(m.map(|m| m.response), Some("negated".to_string()));
        let c2 = store.agent("c2")?;
        store
            .response_cache(&c2)
            .put("is the web server up now", "positive")?;
        let guarded = store
            .response_cache(&c2)
            .lookup_fuzzy("is the web server not up now", options)?;
        assert_eq!(guarded, None, "5 of 6 words shared, but one says not");
        let unguarded = store.response_cache(&c2).lookup_fuzzy(
            "is the web server not up now",
            options.with_negation_guard(false),
        )?;
        assert_eq!(unguarded.map(|m| m.response), Some("positive".to_string()));
        // Exact lookups are case-sensitive; empty and punctuation-only input is fine.
        assert_eq!(
            store
                .response_cache(&agent)
                .lookup_exact("IS THE WEB SERVER UP NOW")?
                .map(|m| m.response),
            Some("second (same words)".to_string())
        );
        assert_eq!(store.response_cache(&agent).lookup("", options)?, None);
        assert_eq!(store.response_cache(&agent).lookup("?!", options)?, None);
        Ok(())
    }
}

engines! {
    /// More guarded candidates than one round reads (16 on PostgreSQL), all as similar
    /// as the one the guard lets through, which was cached last: it is still found.
    fn the_guard_reads_past_a_round_of_blocked_candidates(db: &Db) -> TestResult {
        let store = db.open(StoreOptions::default())?;
        let agent = store.agent("bot")?;
        let cache = store.response_cache(&agent);
        let query = "alpha bravo charlie delta echo foxtrot golf hotel india juliet";
        for i in 0..20 {
            cache.put(&format!("{query} not x{i}"), &format!("negated {i}"))?;
        }
        cache.put(&format!("{query} kilo lima"), "the one")?;
        let options = FuzzyOptions::default();
        let m = cache.lookup_fuzzy(query, options)?.expect("a match");
        assert_eq!(m.response, "the one");
        assert!((m.similarity - 10.0 / 12.0).abs() < 1e-12);
        // With only negated ones cached, the first of them is what the guard blocked.
        let other = store.agent("other")?;
        let cache = store.response_cache(&other);
        for i in 0..20 {
            cache.put(&format!("{query} not x{i}"), &format!("negated {i}"))?;
        }
        let found = cache.lookup_explained(query, options)?;
        assert_eq!(found.found, None);
        match found.no_match {
            Some(agentstore::NoMatch::Guarded { message, .. }) => {
                assert_eq!(message, format!("{query} not x0"));
            }
            other => panic!("expected the guard, got {other:?}"),
        }
        Ok(())
    }
}

type Setup = (Store, agentstore::AgentRecord, Responder, Arc<AtomicUsize>);

/// A store with the agent "bot" answering through [`slow_echo`], and its call count.
fn echo_responder(db: &Db, delay: Duration, config: ResponseConfig) -> agentstore::Result<Setup> {
    let store = db.open(StoreOptions::default())?;
    let agent = store.agent("bot")?;
    let calls = Arc::new(AtomicUsize::new(0));
    let r = Responder::new(&store, &agent, slow_echo(delay, calls.clone()), config)?;
    Ok((store, agent, r, calls))
}

fn slow_echo(
    delay: Duration,
    calls: Arc<AtomicUsize>,
) -> impl agentstore::agent::ResponseGenerator {
    generator_fn(move |m: String| {
        let calls = calls.clone();
        async move {
            calls.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(delay).await;
            Ok::<_, GenerationError>(format!("answer to {m}"))
        }
    })
}

engines_async! {
    #[multi_thread]
    async fn generated_then_exact_then_fuzzy_and_every_answer_logged(db: &Db) -> TestResult {
        let (store, agent, r, calls) = echo_responder(db, Duration::ZERO, ResponseConfig::default())?;
        let first = r.process_message("what is the capital of france").await?;
        assert_eq!(first.outcome, Outcome::Generated);
        assert_eq!(first.response, "answer to what is the capital of france");
        let again = r.process_message("what is the capital of france").await?;
        assert_eq!(
            (again.outcome, again.response.as_str()),
            (Outcome::Exact, first.response.as_str())
        );
        let near = r
            .process_message("so what is the capital of france")
            .await?;
        assert_eq!(near.outcome, Outcome::Fuzzy);
        assert_eq!(near.similarity, Some(6.0 / 7.0));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        let stats = match r.response_time_stats().await? {
            ResponseTimeStats::Data(s) => s,
            other => panic!("expected data, got {other:?}"),
        };
        assert_eq!(stats.total_responses, 3);
        assert_eq!(stats.cache_entries, 1);
        r.close().await?;
        let listed = store
            .response_cache(&agent)
            .list(agentstore::ResponseOrder::Hits, 10)?;
        assert_eq!(listed[0].hits, 2, "hits are flushed on close");
        let outcomes: Vec<serde_json::Value> = db
            .sql("SELECT outcome FROM recent_responses WHERE agent = 'bot' ORDER BY id")
            .into_iter()
            .map(|r| r["outcome"].clone())
            .collect();
        assert_eq!(outcomes, ["generated", "exact", "fuzzy"]);
        // The store of the generated answer gave up the lease on answering it.
        assert_eq!(db.sql("SELECT count(*) AS n FROM leases")[0]["n"], 0);
        Ok(())
    }
}

engines_async! {
    #[multi_thread]
    async fn past_the_target_a_fallback_is_given_and_the_late_answer_cached(db: &Db) -> TestResult {
        let store = db.open(StoreOptions::default())?;
        let agent = store.agent("bot")?;
        store.set_target_response_time("bot", 0.05)?;
        let calls = Arc::new(AtomicUsize::new(0));
        let r = Responder::new(
            &store,
            &agent,
            slow_echo(Duration::from_millis(300), calls),
            ResponseConfig::default(),
        )?;
        let long = "one two three four five six seven eight nine ten eleven twelve thirteen \
                    fourteen fifteen sixteen seventeen eighteen nineteen twenty twentyone";
        let cases = [
            ("where is my order?", FALLBACK_QUESTION),
            (long, FALLBACK_LONG),
            ("tell me about tides", FALLBACK_OTHER),
        ];
        for (message, fallback) in cases {
            let reply = r.process_message(message).await?;
            assert_eq!(
                (reply.outcome, reply.response.as_str()),
                (Outcome::Fallback, fallback)
            );
            assert_eq!(
                store.response_cache(&agent).lookup_exact(message)?,
                None,
                "a fallback is never cached"
            );
        }
        for (message, _) in cases {
            let mut waited = 0;
            while store
                .response_cache(&agent)
                .lookup_exact(message)?
                .is_none()
            {
                assert!(waited < 500, "the late answer never arrived");
                tokio::time::sleep(Duration::from_millis(10)).await;
                waited += 1;
            }
            let reply = r.process_message(message).await?;
            assert_eq!(reply.outcome, Outcome::Exact);
            assert_eq!(reply.response, format!("answer to {message}"));
        }
        Ok(())
    }
}

engines_async! {
    #[multi_thread]
    async fn an_answer_later_than_the_grace_period_is_dropped(db: &Db) -> TestResult {
        let store = db.open(StoreOptions::default())?;
        let agent = store.agent("bot")?;
        store.set_target_response_time("bot", 0.02)?;
        let config = ResponseConfig::default().with_grace_period(Duration::from_millis(100));
        let calls = Arc::new(AtomicUsize::new(0));
        let r = Responder::new(
            &store,
            &agent,
            slow_echo(Duration::from_millis(400), calls),
            config,
        )?;
        assert_eq!(
            r.process_message("slow one").await?.outcome,
            Outcome::Fallback
        );
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert_eq!(store.response_cache(&agent).lookup_exact("slow one")?, None);
        Ok(())
    }
}

engines_async! {
    #[multi_thread]
    async fn a_generation_error_is_returned_logged_and_not_cached(db: &Db) -> TestResult {
        let store = db.open(StoreOptions::default())?;
        let agent = store.agent("bot")?;
        let failing = generator_fn(|_m: String| async move {
            Err::<String, _>(GenerationError::other("the model is overloaded"))
        });
        let r = Responder::new(&store, &agent, failing, ResponseConfig::default())?;
        let err = r.process_message("hello").await.unwrap_err();
        assert!(matches!(err, Error::GenerationFailed(_)));
        assert_eq!(
            err.to_string(),
            "generating a response failed: the model is overloaded"
        );
        r.flush().await?;
        assert_eq!(store.response_cache(&agent).entries()?, 0);
        let row = &db.sql("SELECT errors, total_logged FROM response_stats WHERE agent = 'bot'")[0];
        assert_eq!((&row["errors"], &row["total_logged"]), (&json!(1), &json!(1)));
        assert_eq!(
            serde_json::to_value(r.response_time_stats().await?)?,
            json!({"no_data": true}),
            "errors are not response times"
        );
        Ok(())
    }
}

/// The original's percentiles over a list of times.
fn reference_stats(times: &[f64], target: f64) -> (f64, f64, f64, f64, f64, u64) {
    let mut s = times.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    let under = s.iter().filter(|&&t| t < target).count() as u64;
    (
        s[0],
        s[n - 1],
        s[n / 2],
        s[(n as f64 * 0.9) as usize],
        s[(n as f64 * 0.95) as usize],
        under,
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn percentiles_equal_the_originals_nearest_rank(
        // Spread out, bunched inside one duration bucket, and repeated values.
        times in prop::collection::vec(prop_oneof![0.0f64..5.0, 1.0f64..1.01, Just(0.5), Just(0.0)], 1..300),
        errors in 0usize..5,
        target in 0.01f64..5.0,
    ) {
        let db = TempDb::new();
        let store = Store::open(&db.path, StoreOptions::default()).unwrap();
        let agent = store.agent("bot").unwrap();
        store.set_target_response_time("bot", target).unwrap();
        let agent = store.existing_agent(&agent.name).unwrap();
        let mut rows: Vec<LoggedResponse> = times
            .iter()
            .map(|&t| LoggedResponse { at: 0, duration: t, outcome: Outcome::Generated })
            .collect();
        rows.extend((0..errors).map(|_| LoggedResponse { at: 0, duration: 9.0, outcome: Outcome::Error }));
        store.response_cache(&agent).log(&rows, 100_000).unwrap();
        let s = match store.response_cache(&agent).time_stats().unwrap() {
            ResponseTimeStats::Data(s) => s,
            other => panic!("{other:?}"),
        };
        let (min, max, p50, p90, p95, under) = reference_stats(&times, target);
        prop_assert_eq!(s.total_responses, times.len() as u64);
        prop_assert_eq!((s.min_response_time, s.max_response_time), (min, max));
        prop_assert_eq!((s.p50_response_time, s.p90_response_time, s.p95_response_time), (p50, p90, p95));
        prop_assert_eq!(s.responses_under_target, under);
        let avg = times.iter().sum::<f64>() / times.len() as f64;
        prop_assert!((s.avg_response_time - avg).abs() < 1e-9);
        prop_assert!((s.target_achievement_rate - under as f64 * 100.0 / times.len() as f64).abs() < 1e-9);
    }
}

engines_async! {
    #[multi_thread]
    async fn optimize_moves_the_target_and_the_target_survives_a_reopen(db: &Db) -> TestResult {
        let log = |store: &Store, agent: &agentstore::AgentRecord, times: &[f64]| {
            let rows: Vec<LoggedResponse> = times
                .iter()
                .map(|&t| LoggedResponse {
                    at: 0,
                    duration: t,
                    outcome: Outcome::Exact,
                })
                .collect();
            store.response_cache(agent).log(&rows, 100_000)
        };
        {
            let store = db.open(StoreOptions::default())?;
            let fast = store.agent("fast")?;
            let slow = store.agent("slow")?;
            let middling = store.agent("middling")?;
            log(&store, &fast, &[0.1; 20])?; // 100% under 2.0 s
            log(&store, &slow, &[3.0, 3.0, 3.0, 0.1])?; // 25%
            log(&store, &middling, &[0.1, 0.1, 3.0, 3.0])?; // 50%: unchanged
            let never =
                generator_fn(|_m: String| async move { Ok::<_, GenerationError>(String::new()) });
            for (agent, want) in [(fast, 1.8), (slow, 2.4), (middling, 2.0)] {
                let r = Responder::new(&store, &agent, never.clone_gen(), ResponseConfig::default())?;
                let o = r.optimize_performance().await?;
                assert!((o.new_target - want).abs() < 1e-12, "{}: {o:?}", agent.name);
            }
            let none = store.agent("idle")?;
            let r = Responder::new(&store, &none, never, ResponseConfig::default())?;
            let o = r.optimize_performance().await?;
            assert_eq!(
                (o.old_target, o.new_target, o.achievement_rate),
                (2.0, 2.0, None)
            );
        }
        let store = db.open(StoreOptions::default())?;
        assert!((store.existing_agent("fast")?.target_response_time - 1.8).abs() < 1e-12);
        assert!((store.existing_agent("slow")?.target_response_time - 2.4).abs() < 1e-12);
        Ok(())
    }
}

/// Cloning a closure generator for several responders.
trait CloneGen {
    fn clone_gen(&self) -> Self;
}
impl<F: Clone> CloneGen for agentstore::agent::FnGenerator<F> {
    fn clone_gen(&self) -> Self {
        self.clone()
    }
}

engines_async! {
    #[multi_thread]
    async fn the_cap_keeps_the_most_recently_used_and_their_word_index(db: &Db) -> TestResult {
        let (store, clock) = db.open_at(1_767_225_600_000_000);
        let agent = store.agent("bot")?;
        let calls = Arc::new(AtomicUsize::new(0));
        let r = Responder::new(
            &store,
            &agent,
            slow_echo(Duration::ZERO, calls),
            ResponseConfig::default(),
        )?;
        for i in 0..1100 {
            clock.advance(Duration::from_secs(1));
            r.process_message(&format!("question number {i} about topic t{i}"))
                .await?;
        }
        // Old entries hit again are recently used.
        for i in [0, 1, 2] {
            clock.advance(Duration::from_secs(1));
            let reply = r
                .process_message(&format!("question number {i} about topic t{i}"))
                .await?;
            assert_eq!(reply.outcome, Outcome::Exact);
        }
        let o = r.optimize_performance().await?;
        assert_eq!((o.removed_entries, o.cache_entries), (600, 500));
        for i in [0, 1, 2, 1099, 700] {
            assert!(
                store
                    .response_cache(&agent)
                    .lookup_exact(&format!("question number {i} about topic t{i}"))?
                    .is_some(),
                "{i}"
            );
        }
        for i in [3, 100, 602] {
            assert!(
                store
                    .response_cache(&agent)
                    .lookup_exact(&format!("question number {i} about topic t{i}"))?
                    .is_none(),
                "{i}"
            );
        }
        // No posting is left for a removed row: the word index has one row per word of
        // each remaining message.
        let row = &db.sql(
            "SELECT (SELECT count(*) FROM response_words) AS postings,
                    (SELECT sum(word_count) FROM response_cache) AS words",
        )[0];
        assert_eq!(row["postings"], row["words"]);
        assert!(row["postings"].as_i64().is_some_and(|n| n > 0), "{row}");
        // Below the cap nothing is removed.
        assert_eq!(r.optimize_performance().await?.removed_entries, 0);
        Ok(())
    }
}

engines_async! {
    async fn the_log_keeps_its_retention(db: &Db) -> TestResult {
        let store = db.open(StoreOptions::default())?;
        let agent = store.agent("bot")?;
        let rows: Vec<LoggedResponse> = (0..300)
            .map(|i| LoggedResponse {
                at: i,
                duration: 0.1,
                outcome: Outcome::Exact,
            })
            .collect();
        store.response_cache(&agent).log(&rows, 120)?;
        let row = &db.sql("SELECT count(*) AS n, min(at) AS oldest FROM response_log")[0];
        assert_eq!(
            (&row["n"], &row["oldest"]),
            (&json!(120), &json!(180)),
            "the most recent 120 are kept"
        );
        Ok(())
    }
}

fn seeded(db: &Db) -> TestResult {
    let store = db.open(StoreOptions::default())?;
    let agent = store.agent("bot")?;
    store
        .response_cache(&agent)
        .put("what is the capital of france", "Paris")?;
    store
        .response_cache(&agent)
        .put("how tall is mount everest", "8849 m")?;
    store
        .response_cache(&agent)
        .put("is the server running", "yes")?;
    let rows: Vec<LoggedResponse> = [0.5, 1.0, 3.0, 0.2]
        .iter()
        .map(|&t| LoggedResponse {
            at: 0,
            duration: t,
            outcome: Outcome::Generated,
        })
        .collect();
    store.response_cache(&agent).log(&rows, 100_000)?;
    Ok(())
}

engines! {
    fn the_cli_shows_lists_and_looks_up(db: &Db) -> TestResult {
        seeded(db)?;
        let s = db.json(&["responses", "stats", "--agent", "bot"]);
        assert_eq!(s["total_responses"], 4);
        assert_eq!(s["p50_response_time"], 1.0);
        assert_eq!(s["responses_under_target"], 3);
        assert_eq!(s["target_achievement_rate"], 75.0);
        assert_eq!(s["cache_entries"], 3);
        store_agent(db, "quiet")?;
        assert_eq!(
            db.json(&["responses", "stats", "--agent", "quiet"]),
            json!({"no_data": true})
        );

        let listed = db.json(&["responses", "list", "--agent", "bot", "--limit", "2"],
        );
        assert_eq!(listed.as_array().map(Vec::len), Some(2));
        assert_eq!(listed[0]["response"], "yes", "most recently stored first");

        let exact = db.json(&[
                "responses",
                "lookup",
                "--agent",
                "bot",
                "how tall is mount everest",
            ],
        );
        assert_eq!(exact["match"], "exact");
        assert_eq!(exact["response"], "8849 m");
        let fuzzy = db.json(&[
                "responses",
                "lookup",
                "--agent",
                "bot",
                "so what is the capital of France",
            ],
        );
        assert_eq!(fuzzy["match"], "fuzzy");
        assert!((fuzzy["similarity"].as_f64().unwrap() - 6.0 / 7.0).abs() < 1e-12);
        let guarded = db.json(&[
                "responses",
                "lookup",
                "--agent",
                "bot",
                "is the server not running",
            ],
        );
        assert_eq!(guarded["match"], serde_json::Value::Null);
        // A blocked match is not "no match": the guard is named, with what it blocked.
        assert_eq!(guarded["no_match"]["reason"], "guarded");
        assert_eq!(guarded["no_match"]["message"], "is the server running");
        db.cli()
            .args([
                "responses",
                "lookup",
                "--agent",
                "bot",
                "is the server not running",
            ])
            .assert()
            .success()
            .stdout(predicates::str::contains("negation guard blocked #"));
        let unguarded = db.json(&[
                "responses",
                "lookup",
                "--agent",
                "bot",
                "--no-guard",
                "is the server not running",
            ],
        );
        assert_eq!(unguarded["response"], "yes");
        db.cli()
            .args([
                "responses",
                "lookup",
                "--agent",
                "bot",
                "completely different words",
            ])
            .assert()
            .success()
            .stdout("no match: the agent would generate a response\n");
        db.cli()
            .args([
                "responses",
                "lookup",
                "--agent",
                "bot",
                "--threshold",
                "1.5",
                "x",
            ])
            .assert()
            .code(2);
        Ok(())
    }
}

fn store_agent(db: &Db, name: &str) -> TestResult {
    db.open(StoreOptions::default())?.agent(name)?;
    Ok(())
}

engines! {
    fn the_cli_optimizes_and_purges(db: &Db) -> TestResult {
        seeded(db)?;
        let o = db.json(&["responses", "optimize", "--agent", "bot"]);
        assert_eq!(o["old_target"], 2.0);
        assert_eq!(o["new_target"], 2.0, "75% is between 50% and 90%");
        let before = db.snapshot();
        let dry = db.json(&[
                "responses",
                "purge",
                "--agent",
                "bot",
                "--keep",
                "1",
                "--dry-run",
            ],
        );
        assert_eq!(dry, json!({"removed": 2, "dry_run": true}));
        assert_eq!(db.snapshot(), before, "a dry run changes nothing");
        let done = db.json(&["responses", "purge", "--agent", "bot", "--keep", "1"],
        );
        assert_eq!(done["removed"], 2);
        let left = db.json(&["responses", "list", "--agent", "bot"]);
        assert_eq!(left[0]["response"], "yes");
        assert_eq!(
            db.json(&["responses", "purge", "--agent", "bot", "--older-than", "1h"]
            )["removed"],
            0
        );
        db.cli()
            .args(["responses", "purge", "--agent", "bot", "--all"])
            .assert()
            .success()
            .stdout("removed 1 cached responses\n");
        db.cli()
            .args(["responses", "purge", "--agent", "bot"])
            .assert()
            .code(2);
        db.cli()
            .args([
                "responses",
                "purge",
                "--agent",
                "bot",
                "--all",
                "--keep",
                "3",
            ])
            .assert()
            .code(2);
        let report = db.json(&["check"]);
        assert_eq!(report["ok"], true, "{report}");
        Ok(())
    }
}

#[test]
fn check_finds_a_word_index_or_buckets_out_of_step() -> TestResult {
    let db = Db::sqlite();
    seeded(&db)?;
    assert_eq!(db.json(&["check"])["ok"], true);
    let store = db.open(StoreOptions::default())?;
    let indexed = store
        .response_cache(&store.existing_agent("bot")?)
        .index_pending()?;
    drop(store);
    assert_eq!(indexed, 3);
    assert_eq!(db.json(&["check"])["ok"], true);
    let c = rusqlite::Connection::open(db.location())?;
    c.execute("DELETE FROM response_cache WHERE response = 'Paris'", [])?;
    c.execute("DELETE FROM response_time_buckets", [])?;
    drop(c);
    let out = db.cli().args(["--json", "check"]).assert().code(3);
    let report: serde_json::Value = serde_json::from_slice(&out.get_output().stdout)?;
    let problems = report["problems"].to_string();
    assert!(
        problems.contains("word index has 15 postings for 9 words"),
        "{problems}"
    );
    assert!(
        problems.contains("response time buckets count 0 responses, the log has 4"),
        "{problems}"
    );
    Ok(())
}

#[test]
fn stores_wait_for_the_word_index_in_bounded_numbers() -> TestResult {
    let db = TempDb::new();
    let store = Store::open(&db.path, StoreOptions::default())?;
    let agent = store.agent("bot")?;
    let waiting = || -> rusqlite::Result<i64> {
        rusqlite::Connection::open(&db.path)?.query_row(
            "SELECT count(*) FROM response_cache WHERE indexed = 0",
            [],
            |r| r.get(0),
        )
    };
    for i in 0..127 {
        store
            .response_cache(&agent)
            .put(&format!("message number {i} is here"), "r")?;
    }
    assert_eq!(waiting()?, 127);
    // Waiting rows answer fuzzy lookups like indexed ones.
    let m = store
        .response_cache(&agent)
        .lookup_fuzzy("so message number 5 is here", FuzzyOptions::default())?;
    assert_eq!(
        m.map(|m| m.message),
        Some("message number 5 is here".to_string())
    );
    store
        .response_cache(&agent)
        .put("the 128th waiting row", "r")?;
    assert_eq!(
        waiting()?,
        0,
        "the 128th store indexes the agent's waiting rows"
    );
    store.response_cache(&agent).put("one more", "r")?;
    assert_eq!(store.response_cache(&agent).index_pending()?, 1);
    assert_eq!(waiting()?, 0);
    let report = store.check()?;
    assert!(report.ok, "{:?}", report.problems);
    Ok(())
}

engines_async! {
    async fn a_message_over_the_limit_is_refused_before_anything_runs(db: &Db) -> TestResult {
        let (store, agent, r, calls) = echo_responder(db, Duration::ZERO, ResponseConfig::default())?;
        let err = r
            .process_message(&"x".repeat((1 << 20) + 1))
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "the message is 1048577 bytes; the limit is 1048576"
        );
        assert_eq!(calls.load(Ordering::SeqCst), 0);
        r.flush().await?;
        assert_eq!(store.response_cache(&agent).entries()?, 0);
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exact_and_fuzzy_hits_need_no_write_lock() -> TestResult {
    let db = TempDb::new();
    let options = StoreOptions::default().with_busy_timeout(Duration::from_millis(100));
    let store = Store::open(&db.path, options)?;
    let agent = store.agent("bot")?;
    store
        .response_cache(&agent)
        .put("what is the capital of france", "Paris")?;
    let calls = Arc::new(AtomicUsize::new(0));
    let r = Responder::new(
        &store,
        &agent,
        slow_echo(Duration::ZERO, calls),
        ResponseConfig::default(),
    )?;
    // Another process holds the write lock.
    let other = rusqlite::Connection::open(&db.path)?;
    other.execute_batch("BEGIN IMMEDIATE")?;
    for _ in 0..50 {
        assert_eq!(
            r.process_message("what is the capital of france")
                .await?
                .outcome,
            Outcome::Exact
        );
        assert_eq!(
            r.process_message("so what is the capital of france")
                .await?
                .outcome,
            Outcome::Fuzzy
        );
    }
    let miss = r.process_message("something new").await;
    assert!(
        miss.as_ref().is_err_and(Error::is_busy),
        "storing waits for the lock: {miss:?}"
    );
    other.execute_batch("ROLLBACK")?;
    r.close().await?;
    let listed = store
        .response_cache(&agent)
        .list(agentstore::ResponseOrder::Hits, 1)?;
    assert_eq!(
        listed[0].hits, 100,
        "the hits were counted in memory and written later"
    );
    Ok(())
}

engines! {
    fn concurrent_tunings_from_several_processes_all_count(db: &Db) -> TestResult {
        let _running = crate::zz_report::running();
        {
            let store = db.open(StoreOptions::default())?;
            let agent = store.agent("fast")?;
            let rows: Vec<LoggedResponse> = (0..50)
                .map(|_| LoggedResponse {
                    at: 0,
                    duration: 0.1,
                    outcome: Outcome::Exact,
                })
                .collect();
            store.response_cache(&agent).log(&rows, 100_000)?;
        }
        // Eight processes at once, each reading the target and writing 0.9x of it: a
        // read-modify-write that loses no update.
        let children: Vec<_> = (0..8)
            .map(|_| {
                std::process::Command::new(assert_cmd::cargo::cargo_bin("agentstore"))
                    .args(["--db", db.location()])
                    .args(["responses", "optimize", "--agent", "fast"])
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
            })
            .collect::<Result<_, _>>()?;
        for child in children {
            let out = child.wait_with_output()?;
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let target = db.open(StoreOptions::existing())?
            .existing_agent("fast")?
            .target_response_time;
        assert!(
            (target - 2.0 * 0.9f64.powi(8)).abs() < 1e-12,
            "target {target}"
        );
        crate::zz_report::add(crate::zz_report::Count::Processes, 8);
        crate::zz_report::add(crate::zz_report::Count::AcknowledgedWrites, 8);
        Ok(())
    }
}

engines! {
    fn bad_arguments_to_the_tool_and_response_commands_get_clear_errors(db: &Db) -> TestResult {
        // Reads of a file that does not exist fail and create nothing.
        for args in [
            vec!["tools", "stats"],
            vec!["tools", "cache", "list"],
            vec!["tools", "cache", "purge", "--all"],
            vec!["responses", "stats", "--agent", "bot"],
            vec!["responses", "lookup", "--agent", "bot", "hello"],
        ] {
            db.cli()
                .args(&args)
                .assert()
                .code(1)
                .stderr(predicates::str::contains("no agentstore database at"));
        }
        assert!(!db.exists(), "a read created the database");
        seeded(db)?;
        let before = db.snapshot();
        let usage: &[(&[&str], &str)] = &[
            (&["tools", "cache", "list", "--limit", "0"], "--limit"),
            (&["tools", "cache", "list", "--limit", "-5"], "--limit"),
            (
                &["responses", "list", "--agent", "bot", "--order", "bogus"],
                "bogus",
            ),
            (
                &["responses", "purge", "--agent", "bot", "--older-than", "7x"],
                "7x",
            ),
            (
                &["responses", "purge", "--agent", "bot", "--keep", "-1"],
                "--keep",
            ),
            (&["responses", "lookup", "--agent", "bot"], "MESSAGE"),
            (
                &[
                    "responses",
                    "lookup",
                    "--agent",
                    "bot",
                    "--threshold",
                    "NaN",
                    "x",
                ],
                "NaN",
            ),
            (&["tools", "cache", "purge", "--expired", "--all"], "--all"),
        ];
        for (args, mentions) in usage {
            db.cli()
                .args(*args)
                .assert()
                .code(2)
                .stderr(predicates::str::contains(*mentions));
        }
        for args in [
            vec!["tools", "stats", "--agent", "ghost"],
            vec!["tools", "cache", "purge", "--agent", "ghost"],
            vec!["responses", "stats", "--agent", "ghost"],
            vec!["responses", "optimize", "--agent", "ghost"],
            vec!["responses", "purge", "--agent", "ghost", "--all"],
        ] {
            let out = db.cli().args(&args).assert().code(1);
            let err = String::from_utf8(out.get_output().stderr.clone())?;
            assert_eq!(err.lines().count(), 1, "one line: {err}");
            assert!(err.contains("no agent named 'ghost'"), "{err}");
        }
        assert_eq!(db.snapshot(), before, "refused commands changed the file");
        Ok(())
    }
}

engines_async! {
    #[multi_thread]
    async fn a_huge_response_is_returned_uncached_and_a_huge_target_is_no_panic(db: &Db) -> TestResult {
        let store = db.open(StoreOptions::default())?;
        let agent = store.agent("bot")?;
        // Targets stay in a range later writes and imports accept: a year at most.
        assert!(store.set_target_response_time("bot", 1e300).is_err());
        store.set_target_response_time("bot", 366.0 * 86_400.0)?;
        let big =
            generator_fn(
                |_m: String| async move { Ok::<_, GenerationError>("y".repeat((1 << 20) + 1)) },
            );
        let r = Responder::new(&store, &agent, big, ResponseConfig::default())?;
        let reply = r.process_message("tell me everything").await?;
        assert_eq!(reply.outcome, Outcome::Generated);
        assert_eq!(reply.response.len(), (1 << 20) + 1);
        assert_eq!(
            store.response_cache(&agent).entries()?,
            0,
            "over 1 MiB: not cached"
        );
        Ok(())
    }
}

engines! {
    /// `--all` runs in batches like the other rules: more than one batch of responses
    /// (with their word index) goes, another agent's stay, and the file checks clean.
    fn purging_everything_takes_several_batches_and_keeps_the_index_in_step(db: &Db) -> TestResult {
        let store = db.open(StoreOptions::default())?;
        let (a, b) = (store.agent("a")?, store.agent("b")?);
        let pairs: Vec<(String, String)> = (0..5_000)
            .map(|i| {
                (
                    format!("question number {i} about topic {}", i % 37),
                    format!("answer {i}"),
                )
            })
            .collect();
        store.response_cache(&a).put_many(&pairs)?;
        store.response_cache(&b).put_many(&pairs[..10])?;
        drop(store);
        let report = db.json(&["responses", "purge", "--agent", "a", "--all"]);
        assert_eq!(report["removed"], 5_000);
        let check = db.json(&["check"]);
        assert_eq!(check["ok"], true, "{check}");
        assert_eq!(check["row_counts"]["response_cache"], 10);
        let words = db.json(&[
                "sql",
                "SELECT count(*) AS n FROM response_words WHERE agent_id = 1",
            ],
        );
        assert_eq!(words[0]["n"], 0);
        Ok(())
    }
}
