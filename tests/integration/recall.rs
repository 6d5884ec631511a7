//! Recall: roles, full-text search against a reference BM25, the context built for a
//! query against a reference that scores every entry, rate, forget (and that the
//! forgotten text is gone from the files), and the agent's use of all of it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agentstore::agent::{Agent, AgentConfig, ChatMessage, LlmClient, LlmError, ResponseConfig};
use agentstore::{
    CONTEXT_MATCHES, ForgetTarget, ListOrder, MemorySettings, NewEntry, Outcome, Role,
    SearchOptions, Store, StoreOptions,
};
use proptest::prelude::*;

use crate::common::{TempDb, TestResult};
use crate::engines::{Db, Engine, engines, engines_async};

const T0: i64 = 1_700_000_000_000_000;

/// FTS5's bm25() (fts5_aux.c) over whitespace-separated lower-case words, with the
/// statistics of the whole index (every agent's entries): k1 = 1.2, b = 0.75, an IDF
/// floored at 1e-6.
fn reference_bm25(docs: &[Vec<&str>], query: &[&str]) -> Vec<f64> {
    let n = docs.len() as f64;
    let avgdl = docs.iter().map(|d| d.len()).sum::<usize>() as f64 / n;
    let idf: Vec<f64> = query
        .iter()
        .map(|q| {
            let hits = docs.iter().filter(|d| d.contains(q)).count() as f64;
            let idf = ((n - hits + 0.5) / (hits + 0.5)).ln();
            if idf <= 0.0 { 1e-6 } else { idf }
        })
        .collect();
    docs.iter()
        .map(|d| {
            let dl = d.len() as f64;
            query
                .iter()
                .zip(&idf)
                .map(|(q, idf)| {
                    let tf = d.iter().filter(|w| *w == q).count() as f64;
                    idf * (tf * 2.2) / (tf + 1.2 * (1.0 - 0.75 + 0.75 * dl / avgdl))
                })
                .sum()
        })
        .collect()
}

const VOCAB: [&str; 10] = [
    "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet",
];

fn words(n: std::ops::Range<usize>) -> impl Strategy<Value = Vec<&'static str>> {
    proptest::collection::vec(proptest::sample::select(&VOCAB[..]), n)
}

/// Two agents' entries (the first is searched), and a query of distinct words.
fn corpus() -> impl Strategy<
    Value = (
        Vec<Vec<&'static str>>,
        Vec<Vec<&'static str>>,
        Vec<&'static str>,
    ),
> {
    (
        proptest::collection::vec(words(1..8), 1..40),
        proptest::collection::vec(words(1..8), 0..10),
        proptest::sample::subsequence(&VOCAB[..], 1..4),
    )
}

/// The store in `db` with the agent `bot`.
fn bot_in(db: &Db) -> (Store, agentstore::AgentRecord) {
    let store = db.open(StoreOptions::default()).expect("open");
    let agent = store.agent("bot").expect("agent");
    (store, agent)
}

/// A new store with the agent `bot`.
fn bot() -> (TempDb, Store, agentstore::AgentRecord) {
    let db = TempDb::new();
    let store = Store::open(&db.path, StoreOptions::default()).expect("open");
    let agent = store.agent("bot").expect("agent");
    (db, store, agent)
}

fn store_with(db: &TempDb, agents: &[(&str, &[Vec<&str>])]) -> Store {
    let store = Store::open(&db.path, StoreOptions::default()).expect("open");
    for (name, docs) in agents {
        let agent = store.agent(name).expect("agent");
        let entries: Vec<NewEntry> = docs
            .iter()
            .enumerate()
            .map(|(i, d)| NewEntry {
                role: Role::Note,
                content: d.join(" "),
                importance: 0.5,
                created_at: T0 + i as i64,
            })
            .collect();
        store
            .memory(&agent)
            .import_entries(&entries)
            .expect("import");
    }
    store
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Hits, their order and their scores are BM25's, with the statistics of the whole
    /// index; the other agent's entries are never hits.
    #[test]
    fn search_ranks_as_a_reference_bm25((mine, theirs, query) in corpus()) {
        let db = TempDb::new();
        let store = store_with(&db, &[("a", &mine), ("b", &theirs)]);
        let agent = store.existing_agent("a").unwrap();
        let hits = store
            .memory(&agent)
            .search(&query.join(" "), &SearchOptions::default().with_limit(100))
            .unwrap();

        let all: Vec<Vec<&str>> = mine.iter().chain(&theirs).cloned().collect();
        let scores = reference_bm25(&all, &query);
        let mut expected: Vec<(f64, i64)> = (0..mine.len())
            .filter(|&i| query.iter().any(|q| mine[i].contains(q)))
            .map(|i| (scores[i], i as i64 + 1))
            .collect();
        expected.sort_by(|x, y| y.0.total_cmp(&x.0).then(y.1.cmp(&x.1)));

        prop_assert_eq!(hits.len(), expected.len());
        for (hit, (score, id)) in hits.iter().zip(&expected) {
            prop_assert!((hit.score - score).abs() <= 1e-9 * score.abs().max(1e-6),
                "score {} vs {}", hit.score, score);
            // Equal reference scores may come in either order only if they are equal
            // in the engine too.
            if hit.id != *id {
                let other = expected.iter().find(|e| e.1 == hit.id).unwrap();
                prop_assert!((other.0 - score).abs() <= 1e-12, "{} ranked at {}", hit.id, id);
            }
            prop_assert_eq!(&hit.content, &mine[hit.id as usize - 1].join(" "));
            prop_assert!(hit.snippet.contains('['), "{}", hit.snippet);
        }
    }

    /// The context for a query is the greedy packing of every entry by
    /// importance_weight * importance + recency_weight * recency + relevance_weight *
    /// relevance, where relevance is BM25 over the best match's (0 for non-matches).
    #[test]
    fn the_context_for_a_query_matches_a_reference_that_scores_every_entry(
        docs in proptest::collection::vec((words(1..6), 0u8..5, 0i64..50), 1..60),
        query in proptest::sample::subsequence(&VOCAB[..], 1..3),
        max_chars in 10u64..200,
        wq in prop_oneof![Just(0.0), Just(0.5), Just(1.0), Just(3.0)],
    ) {
        let db = TempDb::new();
        let store = Store::open(&db.path, StoreOptions::default()).unwrap();
        store.agent("a").unwrap();
        store
            .set_memory_settings("a", &MemorySettings::default().with_relevance_weight(wq))
            .unwrap();
        let agent = store.existing_agent("a").unwrap();
        let entries: Vec<NewEntry> = docs
            .iter()
            .map(|(w, imp, t)| NewEntry {
                role: Role::User,
                content: w.join(" "),
                importance: f64::from(*imp) / 4.0,
                created_at: T0 + t * 1_000_000,
            })
            .collect();
        store.memory(&agent).import_entries(&entries).unwrap();

        let got = store.memory(&agent).context_for(&query.join(" "), max_chars).unwrap();

        let texts: Vec<Vec<&str>> = docs.iter().map(|d| d.0.clone()).collect();
        let bm25 = reference_bm25(&texts, &query);
        let mut matches: Vec<(f64, i64)> = (0..docs.len())
            .filter(|&i| query.iter().any(|q| texts[i].contains(q)))
            .map(|i| (bm25[i], i as i64 + 1))
            .collect();
        matches.sort_by(|x, y| y.0.total_cmp(&x.0).then(y.1.cmp(&x.1)));
        matches.truncate(CONTEXT_MATCHES as usize);
        let best = matches.first().map(|m| m.0).unwrap_or(1.0);
        let relevance: HashMap<i64, f64> = matches.iter().map(|(s, id)| (*id, s / best)).collect();
        let created: Vec<i64> = entries.iter().map(|e| e.created_at).collect();
        let (oldest, newest) = (*created.iter().min().unwrap(), *created.iter().max().unwrap());
        let span = newest - oldest;
        let mut ranked: Vec<(f64, i64, i64, usize)> = entries
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let id = i as i64 + 1;
                let recency = if span == 0 { 1.0 } else {
                    1.0 - (newest - e.created_at) as f64 / span as f64
                };
                let mut score = 0.7 * e.importance + 0.3 * recency;
                if wq > 0.0 {
                    score += wq * relevance.get(&id).copied().unwrap_or(0.0);
                }
                (score, e.created_at, id, i)
            })
            .collect();
        ranked.sort_by(|x, y| y.0.total_cmp(&x.0).then(y.1.cmp(&x.1)).then(y.2.cmp(&x.2)));
        let mut used = 0u64;
        let mut chosen: Vec<(i64, i64)> = Vec::new();
        for (_, created_at, id, i) in ranked {
            let chars = entries[i].content.chars().count() as u64;
            if used + chars > max_chars {
                break;
            }
            used += chars;
            chosen.push((created_at, id));
        }
        chosen.sort();
        let ids: Vec<i64> = got.entries.iter().map(|e| e.id).collect();
        let expected: Vec<i64> = chosen.iter().map(|c| c.1).collect();
        prop_assert_eq!(ids, expected);
        prop_assert!(got.entries.iter().all(|e| e.role == Role::User));
        if wq == 0.0 {
            prop_assert_eq!(&got, &store.memory(&agent).context(max_chars).unwrap());
        }
    }
}

#[test]
fn queries_are_any_text_and_match_prefixes_phrases_and_accents() -> TestResult {
    let (_db, store, agent) = bot();
    let m = store.memory(&agent);
    m.add("the rate limit was exceeded while retrying", 0.5)?;
    m.add("limit the rate of retries", 0.5)?;
    m.add_as(Role::User, "Le café est très bon", 0.5)?;
    let ids = |q: &str| -> Vec<i64> {
        m.search(q, &SearchOptions::default())
            .unwrap()
            .iter()
            .map(|h| h.id)
            .collect()
    };
    assert_eq!(ids("\"rate limit\""), [1]);
    assert_eq!(ids("retr*"), [2, 1], "both have a word starting with retr");
    assert_eq!(ids("CAFE tres"), [3]);
    assert_eq!(ids("limit"), [2, 1], "equal scores: newest first");
    for weird in [
        "\"unbalanced",
        "AND OR NOT",
        "NEAR(a b)",
        "content: x",
        "*",
        "a\"b\"c",
        "^start",
        "(((",
        "-rate",
        "rate + limit",
        "\u{0}",
    ] {
        m.search(weird, &SearchOptions::default())
            .unwrap_or_else(|e| panic!("{weird:?}: {e}"));
    }
    assert_eq!(ids("-rate"), [2, 1], "punctuation is no operator");
    let user_only = m.search("café rate", &SearchOptions::default().with_role(Role::User))?;
    assert_eq!(user_only.iter().map(|h| h.id).collect::<Vec<_>>(), [3]);
    let later = m.search("rate", &SearchOptions::default().with_since(i64::MAX))?;
    assert!(later.is_empty());
    assert!(m.search("   ", &SearchOptions::default()).is_err());
    assert!(
        m.search(&"x".repeat(1 << 20), &SearchOptions::default())
            .is_err()
    );
    Ok(())
}

engines! {
    fn rate_keeps_the_entry_and_the_counters_right(db: &Db) -> TestResult {
        let (store, agent) = bot_in(db);
        let m = store.memory(&agent);
        m.add_as(Role::User, "first", 0.2)?;
        m.add("second", 0.4)?;
        let before = m.get(1)?.unwrap();
        let after = m.rate(1, 0.9)?.unwrap();
        assert_eq!(
            (after.id, after.role, &after.content, after.created_at),
            (before.id, before.role, &before.content, before.created_at)
        );
        assert_eq!(m.get(1)?.unwrap(), after);
        let stats = m.stats()?;
        assert!((stats.avg_importance_score.unwrap() - 0.65).abs() < 1e-12);
        assert_eq!(m.rate(7, 0.5)?, None);
        assert!(m.rate(1, f64::NAN).is_err());
        assert_eq!(
            m.search("first", &SearchOptions::default())?[0].importance,
            0.9
        );
        assert!(store.check()?.ok);
        Ok(())
    }
}

engines! {
    fn forget_removes_exactly_what_it_lists_and_refuses_unknown_ids(db: &Db) -> TestResult {
        let (store, agent) = bot_in(db);
        let other = store.agent("other")?;
        let m = store.memory(&agent);
        for text in [
            "my address is 5 Elm Road",
            "I like Elm trees",
            "road works ahead",
        ] {
            m.add(text, 0.5)?;
        }
        store.memory(&other).add("elm road in another agent", 0.5)?;

        let matching = ForgetTarget::Matching("elm road".into());
        let dry = m.forget(&matching, true)?;
        assert_eq!(dry.entries.iter().map(|e| e.id).collect::<Vec<_>>(), [1]);
        assert_eq!(m.stats()?.total_entries, 3, "a dry run removes nothing");
        let done = m.forget(&matching, false)?;
        assert_eq!(done.entries, dry.entries);
        // PostgreSQL cannot scrub its pages and WAL (README, Engines).
        assert_eq!(done.scrubbed, db.engine == Engine::Sqlite);
        assert_eq!(m.get(1)?, None);
        assert_eq!(store.memory(&other).stats()?.total_entries, 1);

        let err = m
            .forget(&ForgetTarget::Ids(vec![2, 99]), false)
            .unwrap_err();
        assert!(err.to_string().contains("99"), "{err}");
        assert_eq!(m.stats()?.total_entries, 2, "nothing removed on a bad id");
        // An id of the other agent is not this agent's.
        assert!(m.forget(&ForgetTarget::Ids(vec![1]), true).is_err());
        let none = m.forget(&ForgetTarget::Matching("nothing like it".into()), false)?;
        assert!(none.entries.is_empty());
        assert_eq!(
            m.forget(&ForgetTarget::Ids(vec![2, 3]), false)?
                .entries
                .len(),
            2
        );
        assert_eq!(m.stats()?.total_entries, 0);
        assert!(store.check()?.ok);
        Ok(())
    }
}

/// Every file of the database (the file, its WAL and shared memory) as bytes.
fn files_contain(db: &TempDb, marker: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(db.dir.path()).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        if bytes.windows(marker.len()).any(|w| w == marker) {
            found.push(path.display().to_string());
        }
    }
    found
}

#[test]
fn forgotten_text_is_gone_from_every_file() -> TestResult {
    let (db, store, agent) = bot();
    let roomy = MemorySettings::default()
        .with_max_entries(100_000)
        .with_cleanup_interval(0)
        .with_max_memory_mb(100.0);
    store.set_memory_settings("bot", &roomy)?;
    let m = store.memory(&agent);
    // Enough entries for many pages in every table and index segment, the secret in
    // several of them, moved around by later writes before it is forgotten.
    let mut rng = 7u64;
    let mut word = || {
        rng = rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        VOCAB[(rng >> 33) as usize % VOCAB.len()]
    };
    for i in 0..3000 {
        let filler: Vec<&str> = (0..8).map(|_| word()).collect();
        let text = if i % 500 == 7 {
            format!("{} zqxsecretmarker {}", filler.join(" "), i)
        } else {
            filler.join(" ")
        };
        m.add(&text, 0.5)?;
    }
    let cache = store.response_cache(&agent);
    cache.put(
        "where does zqxsecretmarker live",
        "at the zqxsecretmarker house",
    )?;
    cache.put("an unrelated question", "an unrelated answer")?;
    let tools = store.tool_cache(&agent);
    tools.put(
        "lookup",
        &serde_json::json!({"q": "zqxsecretmarker"}),
        &serde_json::json!("found"),
        Duration::from_secs(600),
    )?;
    tools.put(
        "lookup",
        &serde_json::json!({"q": "other"}),
        &serde_json::json!("found"),
        Duration::from_secs(600),
    )?;
    for i in 0..500 {
        m.add(&format!("later entry {i} {}", word()), 0.5)?;
    }
    assert!(!files_contain(&db, b"zqxsecretmarker").is_empty());

    let dry = store.forget_everywhere(&agent, "zqxsecretmarker", true)?;
    assert_eq!(
        (
            dry.memory_entries.len(),
            dry.responses.len(),
            dry.tool_results.len()
        ),
        (6, 1, 1)
    );
    let done = store.forget_everywhere(&agent, "zqxsecretmarker", false)?;
    assert_eq!(done.memory_entries, dry.memory_entries);
    assert!(done.scrubbed);
    assert_eq!(files_contain(&db, b"zqxsecretmarker"), Vec::<String>::new());
    assert_eq!(
        cache
            .lookup_exact("an unrelated question")?
            .unwrap()
            .response,
        "an unrelated answer"
    );
    assert_eq!(m.stats()?.total_entries, 3494);
    assert!(store.check()?.ok);
    Ok(())
}

/// An LLM that answers after `delay`, and keeps every system prompt it was sent.
struct SlowLlm {
    delay: Duration,
    prompts: Arc<Mutex<Vec<String>>>,
}

#[async_trait::async_trait]
impl LlmClient for SlowLlm {
    fn describe(&self) -> String {
        "slow test llm".into()
    }
    async fn chat(&self, messages: &[ChatMessage]) -> Result<String, LlmError> {
        self.prompts
            .lock()
            .unwrap()
            .push(messages[0].content.clone());
        tokio::time::sleep(self.delay).await;
        Ok(format!("the real answer to {}", messages[1].content))
    }
}

async fn agent_with(
    store: &Store,
    delay: Duration,
    grace: Duration,
) -> (Agent, Arc<Mutex<Vec<String>>>) {
    let prompts = Arc::new(Mutex::new(Vec::new()));
    let llm = SlowLlm {
        delay,
        prompts: prompts.clone(),
    };
    let config =
        AgentConfig::new(llm).with_responses(ResponseConfig::default().with_grace_period(grace));
    (Agent::open(store, "bot", config).await.unwrap(), prompts)
}

engines_async! {
    #[multi_thread]
    async fn the_agent_remembers_who_said_what_and_prompts_with_roles(db: &Db) -> TestResult {
        let store = db.open(StoreOptions::default())?;
        let (agent, prompts) = agent_with(&store, Duration::ZERO, Duration::from_secs(5)).await;
        agent.remember("the user's name is Ada", 0.9).await?;
        agent
            .process_message("what is the capital of France?")
            .await?;
        agent.process_message("and of Italy, Ada asks").await?;
        let entries = agent.memories(ListOrder::Time, 10).await?;
        let roles: Vec<(Role, &str)> = entries
            .iter()
            .rev()
            .map(|e| (e.role, e.content.as_str()))
            .collect();
        assert_eq!(
            roles,
            [
                (Role::Note, "the user's name is Ada"),
                (Role::User, "what is the capital of France?"),
                (
                    Role::Assistant,
                    "the real answer to what is the capital of France?"
                ),
                (Role::User, "and of Italy, Ada asks"),
                (Role::Assistant, "the real answer to and of Italy, Ada asks"),
            ]
        );
        let prompts = prompts.lock().unwrap();
        let last = prompts.last().unwrap();
        assert!(last.contains(agentstore::agent::CONTEXT_HEADER), "{last}");
        assert!(last.contains("\nnote: the user's name is Ada\nuser: what is the capital of France?\nassistant: the real answer to what is the capital of France?"), "{last}");
        Ok(())
    }
}

engines_async! {
    #[multi_thread]
    async fn a_fallback_is_never_remembered_and_the_late_answer_is(db: &Db) -> TestResult {
        let store = db.open(StoreOptions::default())?;
        store.agent("bot")?;
        store.set_target_response_time("bot", 0.05)?;
        let (agent, _) = agent_with(&store, Duration::from_millis(300), Duration::from_secs(5)).await;
        let reply = agent.process_message("tell me about tides").await?;
        assert_eq!(reply.outcome, Outcome::Fallback);
        let now: Vec<(Role, String)> = agent
            .memories(ListOrder::Time, 10)
            .await?
            .into_iter()
            .map(|e| (e.role, e.content))
            .collect();
        assert_eq!(now, [(Role::User, "tell me about tides".to_string())]);
        assert_eq!(agent.responder().settle().await, 1);
        let later: Vec<(Role, String)> = agent
            .memories(ListOrder::Time, 10)
            .await?
            .into_iter()
            .rev()
            .map(|e| (e.role, e.content))
            .collect();
        assert_eq!(
            later,
            [
                (Role::User, "tell me about tides".to_string()),
                (
                    Role::Assistant,
                    "the real answer to tell me about tides".to_string()
                ),
            ]
        );
        Ok(())
    }
}

engines_async! {
    #[multi_thread]
    async fn a_late_answer_past_the_grace_period_leaves_only_the_question(db: &Db) -> TestResult {
        let store = db.open(StoreOptions::default())?;
        store.agent("bot")?;
        store.set_target_response_time("bot", 0.02)?;
        let (agent, _) = agent_with(
            &store,
            Duration::from_millis(400),
            Duration::from_millis(100),
        )
        .await;
        assert_eq!(
            agent.process_message("slow one").await?.outcome,
            Outcome::Fallback
        );
        agent.responder().settle().await;
        let all = agent.memories(ListOrder::Time, 10).await?;
        assert_eq!(all.len(), 1);
        assert_eq!(
            (all[0].role, all[0].content.as_str()),
            (Role::User, "slow one")
        );
        Ok(())
    }
}

#[test]
fn an_acknowledged_forget_survives_a_kill_9() -> TestResult {
    use std::io::BufRead;
    for round in 0..crate::common::soak() * 3 {
        let db = TempDb::new();
        let marker = format!("zqxkillmarker{round}");
        let mut child = std::process::Command::new(crate::common::example_binary("forget_writer"))
            .arg(&db.path)
            .arg(&marker)
            .stdout(std::process::Stdio::piped())
            .spawn()?;
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line)?;
        // Killed while it writes on: what the forget acknowledged must hold.
        std::thread::sleep(Duration::from_millis(20 * round));
        child.kill()?;
        child.wait()?;
        assert_eq!(line.trim(), "forgotten 5 true", "{line}");
        assert_eq!(files_contain(&db, marker.as_bytes()), Vec::<String>::new());
        let store = Store::open(&db.path, StoreOptions::default())?;
        assert!(store.check()?.ok);
        let agent = store.existing_agent("bot")?;
        let left = store
            .memory(&agent)
            .search(&marker, &SearchOptions::default())?;
        assert!(left.is_empty());
        assert!(store.memory(&agent).stats()?.total_entries >= 1995);
    }
    Ok(())
}

// --- the CLI, as a user runs it ---

fn cli_add(db: &TempDb, args: &[&str]) {
    crate::common::agentstore(db)
        .args(["memory", "add", "--agent", "bot"])
        .args(args)
        .assert()
        .success();
}

/// Runs the CLI and returns (exit code, stderr).
fn cli_fails(db: &TempDb, args: &[&str]) -> (i32, String) {
    let out = crate::common::agentstore(db).args(args).assert().failure();
    let o = out.get_output();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn memory_search_get_rate_and_forget_from_the_cli() {
    use crate::common::json_of;
    let db = TempDb::new();
    cli_add(&db, &["--role", "user", "my home address is 5 Elm Road"]);
    cli_add(
        &db,
        &["--importance", "0.9", "the user prefers metric units"],
    );
    cli_add(
        &db,
        &["--role", "assistant", "noted: metric units from now on"],
    );
    crate::common::agentstore(&db)
        .args([
            "memory",
            "add",
            "--agent",
            "other",
            "metric units elsewhere",
        ])
        .assert()
        .success();

    let hits = json_of(&db, &["memory", "search", "--agent", "bot", "metric units"]);
    let hits = hits.as_array().unwrap();
    assert_eq!(hits.len(), 2);
    let keys: Vec<&String> = hits[0].as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        [
            "id",
            "role",
            "content",
            "importance",
            "created_at",
            "score",
            "snippet"
        ]
    );
    assert!(hits[0]["score"].as_f64().unwrap() >= hits[1]["score"].as_f64().unwrap());
    assert!(hits[0]["snippet"].as_str().unwrap().contains("[metric]"));
    let user = json_of(
        &db,
        &[
            "memory",
            "search",
            "--agent",
            "bot",
            "--role",
            "assistant",
            "--limit",
            "5",
            "metric",
        ],
    );
    assert_eq!(user.as_array().unwrap().len(), 1);
    assert_eq!(user[0]["role"], "assistant");
    let text = crate::common::agentstore(&db)
        .args(["memory", "search", "--agent", "bot", "metric"])
        .assert()
        .success();
    let text = String::from_utf8_lossy(&text.get_output().stdout).into_owned();
    assert!(
        text.contains("snippet") && text.contains("[metric]"),
        "{text}"
    );
    let none = crate::common::agentstore(&db)
        .args(["memory", "search", "--agent", "bot", "zebra"])
        .assert()
        .success();
    assert!(String::from_utf8_lossy(&none.get_output().stdout).contains("no entry matches"));

    let one = json_of(&db, &["memory", "get", "--agent", "bot", "1"]);
    assert_eq!(one["role"], "user");
    assert_eq!(one["content"], "my home address is 5 Elm Road");
    let rated = json_of(
        &db,
        &[
            "memory",
            "rate",
            "--agent",
            "bot",
            "1",
            "--importance",
            "0.1",
        ],
    );
    assert_eq!(
        (rated["id"].as_i64(), rated["importance"].as_f64()),
        (Some(1), Some(0.1))
    );
    assert_eq!(rated["created_at"], one["created_at"]);

    let context = json_of(
        &db,
        &[
            "memory",
            "context",
            "--agent",
            "bot",
            "--query",
            "home address",
            "--max-chars",
            "30",
        ],
    );
    assert!(
        context["text"]
            .as_str()
            .unwrap()
            .starts_with("my home address is 5 Elm Road\n"),
        "{context}"
    );
    assert_eq!(context["entries"][0]["role"], "user");

    let dry = json_of(
        &db,
        &[
            "memory",
            "forget",
            "--agent",
            "bot",
            "--matching",
            "elm road",
            "--dry-run",
        ],
    );
    assert_eq!(dry["dry_run"], true);
    assert_eq!(dry["entries"][0]["id"], 1);
    let gone = json_of(&db, &["memory", "forget", "--agent", "bot", "1", "3"]);
    assert_eq!(gone["entries"].as_array().unwrap().len(), 2);
    assert_eq!(gone["scrubbed"], true);
    let (code, err) = cli_fails(&db, &["memory", "get", "--agent", "bot", "1"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("has no memory entry 1"), "{err}");
    let nothing = json_of(
        &db,
        &["memory", "forget", "--agent", "bot", "--matching", "zebra"],
    );
    assert_eq!(nothing["entries"].as_array().unwrap().len(), 0);
}

#[test]
fn recall_commands_refuse_bad_input_with_exit_2_and_change_nothing() {
    let db = TempDb::new();
    cli_add(&db, &["an entry"]);
    crate::common::agentstore(&db)
        .args(["memory", "add", "--agent", "other", "theirs"])
        .assert()
        .success();
    let export = || {
        let out = crate::common::agentstore(&db)
            .arg("export")
            .assert()
            .success();
        out.get_output().stdout.clone()
    };
    let before = export();
    // 100 KiB: over the query limit, under the 128 KiB Linux allows one argument.
    let big = "word ".repeat(20 * 1024);
    let cases: Vec<Vec<&str>> = vec![
        vec!["memory", "search", "--agent", "bot", ""],
        vec!["memory", "search", "--agent", "bot", &big],
        vec![
            "memory", "search", "--agent", "bot", "--role", "wizard", "x",
        ],
        vec!["memory", "add", "--agent", "bot", "--role", "wizard", "x"],
        vec!["memory", "get", "--agent", "bot", "0"],
        vec!["memory", "get", "--agent", "bot", "abc"],
        vec![
            "memory",
            "rate",
            "--agent",
            "bot",
            "1",
            "--importance",
            "NaN",
        ],
        vec!["memory", "rate", "--agent", "bot", "1", "--importance", "7"],
        vec![
            "memory",
            "rate",
            "--agent",
            "bot",
            "2",
            "--importance",
            "0.5",
        ],
        vec!["memory", "forget", "--agent", "bot", "2"],
        vec!["memory", "forget", "--agent", "bot"],
        vec!["memory", "forget", "--agent", "bot", "--matching", "   "],
        vec!["forget", "--agent", "bot", "--matching", ""],
        vec![
            "memory",
            "forget",
            "--agent",
            "bot",
            "1",
            "--matching",
            "entry",
        ],
    ];
    for args in cases {
        let (code, err) = cli_fails(&db, &args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: one line: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    // An id of another agent is not this agent's (the other agent's entry is id 1 too,
    // so use the bot's view of id 1 after the other agent adds id 2).
    crate::common::agentstore(&db)
        .args(["memory", "add", "--agent", "other", "second of theirs"])
        .assert()
        .success();
    assert_eq!(
        cli_fails(&db, &["memory", "get", "--agent", "bot", "2"]).0,
        2
    );
    let after = export();
    let lines = |b: &[u8]| {
        String::from_utf8_lossy(b)
            .lines()
            .filter(|l| l.contains("\"an entry\""))
            .count()
    };
    assert_eq!(lines(&before), 1);
    assert_eq!(lines(&after), 1, "bot's entry is unchanged");
}

#[test]
fn forget_everywhere_and_check_repair_from_the_cli() {
    use crate::common::{agentstore, json_of};
    let db = TempDb::new();
    cli_add(&db, &["the user's passport number is X123"]);
    cli_add(&db, &["nothing to see"]);
    {
        let store = Store::open(&db.path, StoreOptions::default()).unwrap();
        let agent = store.existing_agent("bot").unwrap();
        store
            .response_cache(&agent)
            .put("what is my passport number?", "it is X123")
            .unwrap();
        store
            .tool_cache(&agent)
            .put(
                "docs",
                &serde_json::json!({"find": "passport"}),
                &serde_json::json!({"number": "X123"}),
                Duration::from_secs(600),
            )
            .unwrap();
    }
    let dry = json_of(
        &db,
        &[
            "forget",
            "--agent",
            "bot",
            "--matching",
            "passport",
            "--dry-run",
        ],
    );
    assert_eq!(dry["memory_entries"].as_array().unwrap().len(), 1);
    assert_eq!(dry["responses"].as_array().unwrap().len(), 1);
    assert_eq!(dry["tool_results"].as_array().unwrap().len(), 1);
    let out = agentstore(&db)
        .args(["forget", "--agent", "bot", "--matching", "passport"])
        .assert()
        .success();
    let text = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    assert!(
        text.starts_with("forgot 1 memory entries, 1 cached responses, 1 cached tool results"),
        "{text}"
    );
    let again = json_of(
        &db,
        &[
            "forget",
            "--agent",
            "bot",
            "--matching",
            "passport",
            "--dry-run",
        ],
    );
    assert_eq!(again["responses"].as_array().unwrap().len(), 0);
    assert!(
        std::fs::read(&db.path)
            .unwrap()
            .windows(4)
            .all(|w| w != b"X123")
    );

    // A damaged search index: an indexed text that is no entry, and an entry missing.
    {
        let c = rusqlite::Connection::open(&db.path).unwrap();
        c.execute_batch(
            "INSERT INTO memory_search (rowid, content) VALUES (424242, 'ghost');
             DELETE FROM memory_search_docsize WHERE id = (SELECT doc FROM memory_entries LIMIT 1);",
        )
        .unwrap();
    }
    let out = agentstore(&db).arg("check").assert().code(3);
    let text = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    assert!(
        text.contains("the memory search index lacks 1 entries"),
        "{text}"
    );
    assert!(
        text.contains("the memory search index holds 1 entries that are not in memory"),
        "{text}"
    );
    let repaired = json_of(&db, &["check", "--repair"]);
    assert_eq!(repaired["ok"], true, "{repaired}");
    assert_eq!(repaired["reindexed_entries"], 1);
    let hits = json_of(&db, &["memory", "search", "--agent", "bot", "nothing"]);
    assert_eq!(hits.as_array().unwrap().len(), 1);
    let reindexed = json_of(&db, &["memory", "reindex"]);
    assert_eq!(reindexed["indexed_entries"], 1);
}

#[test]
fn roles_and_the_relevance_weight_survive_export_and_import() -> TestResult {
    let (a, b) = (TempDb::new(), TempDb::new());
    let source = Store::open(&a.path, StoreOptions::default())?;
    let agent = source.agent("bot")?;
    source.set_memory_settings("bot", &MemorySettings::default().with_relevance_weight(2.5))?;
    let m = source.memory(&agent);
    m.add_many_as(&[
        (Role::System, "be brief", 0.9),
        (Role::User, "hello there", 0.5),
        (Role::Assistant, "hi", 0.4),
        (Role::Tool, "{\"temp\": 21}", 0.3),
    ])?;
    let mut export = Vec::new();
    source.export(None, &mut export)?;
    let text = String::from_utf8(export.clone())?;
    assert!(text.contains("\"role\":\"assistant\""), "{text}");

    let target = Store::open(&b.path, StoreOptions::default())?;
    target.import(&mut export.as_slice(), None)?;
    let copy = target.existing_agent("bot")?;
    assert_eq!(copy.settings.relevance_weight, 2.5);
    let roles: Vec<Role> = target
        .memory(&copy)
        .list(ListOrder::Time, 10)?
        .iter()
        .rev()
        .map(|e| e.role)
        .collect();
    assert_eq!(
        roles,
        [Role::System, Role::User, Role::Assistant, Role::Tool]
    );
    let hits = target
        .memory(&copy)
        .search("hello", &SearchOptions::default())?;
    assert_eq!(hits.len(), 1, "imported entries are indexed");
    let mut again = Vec::new();
    target.export(None, &mut again)?;
    assert_eq!(String::from_utf8(again)?, text);

    // An export made before roles existed imports its entries as notes.
    let old = text
        .lines()
        .map(|l| {
            l.replace(",\"role\":\"user\"", "")
                .replace(",\"relevance_weight\":2.5", "")
        })
        .collect::<Vec<_>>()
        .join("\n");
    let c = TempDb::new();
    let third = Store::open(&c.path, StoreOptions::default())?;
    third.import(&mut old.as_bytes(), None)?;
    let agent = third.existing_agent("bot")?;
    assert_eq!(agent.settings.relevance_weight, 1.0);
    let hello = third
        .memory(&agent)
        .search("hello", &SearchOptions::default())?;
    assert_eq!(hello[0].role, Role::Note);
    Ok(())
}

engines! {
    fn the_fuzzy_guard_blocks_swapped_repeated_and_changed_numbers(db: &Db) -> TestResult {
        let (store, agent) = bot_in(db);
        let cache = store.response_cache(&agent);
        cache.put(
            "please transfer 5 dollars to account 7 today",
            "done: 5 to 7",
        )?;
        cache.put("please add 5 5 7 to the running total now", "17")?;
        cache.put(
            "please pay 1,000 dollars to the landlord today",
            "paid 1000",
        )?;
        let options = agentstore::FuzzyOptions::default().with_threshold(0.5);
        let guarded = |message: &str| -> bool {
            let lookup = cache.lookup_explained(message, options).unwrap();
            assert!(lookup.found.is_none() || lookup.no_match.is_none());
            matches!(lookup.no_match, Some(agentstore::NoMatch::Guarded { .. }))
        };
        assert!(guarded("please transfer 7 dollars to account 5 today"));
        assert!(guarded("please add 5 7 7 to the running total now"));
        assert!(guarded("please pay 1,001 dollars to the landlord today"));
        // One number written two ways is the same number: a fuzzy hit.
        let hit = cache
            .lookup("please pay 1000 dollars to the landlord today", options)?
            .expect("a fuzzy match");
        assert_eq!(hit.response, "paid 1000");
        Ok(())
    }
}

engines! {
    fn search_since_keeps_only_recent_entries(db: &Db) -> TestResult {
        {
            let store = db.open(StoreOptions::default())?;
            let agent = store.agent("bot")?;
            let old = NewEntry {
                role: Role::Note,
                content: "tide tables from long ago".into(),
                importance: 0.5,
                created_at: T0,
            };
            store.memory(&agent).import_entries(&[old])?;
            store.memory(&agent).add("tide tables for today", 0.5)?;
        }
        let recent = db.json(&[
                "memory", "search", "--agent", "bot", "--since", "1h", "tide",
            ],
        );
        let ids: Vec<i64> = recent
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["id"].as_i64().unwrap())
            .collect();
        assert_eq!(ids, [2]);
        let all = db.json(&["memory", "search", "--agent", "bot", "tide"]);
        assert_eq!(all.as_array().unwrap().len(), 2);
        Ok(())
    }
}
