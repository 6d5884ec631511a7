//! W7 (exact response hits and stores), W8 (fuzzy lookups) and W9 (response-time
//! stats).

use std::time::Instant;

use crate::data::{SplitMix64, fuzzy_messages, prompt_pairs, response_times};
use agentstore::agent::{Responder, ResponseConfig, generator_fn};
use agentstore::words::{differ_in_meaning, jaccard, shared_words, word_set};
use agentstore::{FuzzyOptions, LoggedResponse, Outcome, ResponseTimeStats, Store, StoreOptions};
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::{Value, json};

use crate::harness::{Bench, median, summarize};

pub fn timed(f: &mut dyn FnMut()) -> f64 {
    let t = Instant::now();
    f();
    t.elapsed().as_nanos() as f64 / 1000.0
}

/// The bare baseline of W7: one table keyed by the prompt's blake3, same pragmas.
fn bare_db(path: &std::path::Path) -> Connection {
    let c = Connection::open(path).expect("bare open");
    c.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;
         CREATE TABLE r (hash BLOB PRIMARY KEY, prompt TEXT NOT NULL, response TEXT NOT NULL)
             STRICT, WITHOUT ROWID;",
    )
    .expect("bare schema");
    c
}

fn bare_get(c: &Connection, prompt: &str) -> Option<String> {
    let hash = blake3::hash(prompt.as_bytes());
    c.prepare_cached("SELECT response FROM r WHERE hash = ?1")
        .and_then(|mut s| s.query_row([&hash.as_bytes()[..]], |r| r.get(0)).optional())
        .expect("bare get")
}

fn bare_put(c: &Connection, prompt: &str, response: &str) {
    let hash = blake3::hash(prompt.as_bytes());
    c.prepare_cached("INSERT OR REPLACE INTO r (hash, prompt, response) VALUES (?1, ?2, ?3)")
        .and_then(|mut s| s.execute(params![&hash.as_bytes()[..], prompt, response]))
        .expect("bare put");
}

pub fn w7(b: &mut Bench) {
    let sizes: &[usize] = if b.config.quick {
        &[10_000]
    } else {
        &[10_000, 100_000]
    };
    let m = if b.config.quick { 1_000 } else { 5_000 };
    let all = prompt_pairs(701, *sizes.iter().max().unwrap_or(&10_000), &b.vocab);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let mut ratios = serde_json::Map::new();
    for &r in sizes {
        let pairs = &all[..r];
        let mut seed = SplitMix64::new(702);
        let hits: Vec<&(String, String)> = (0..m)
            .map(|_| &pairs[seed.below(r as u64) as usize])
            .collect();
        let p = json!({ "R": r });

        let store = Store::open(b.db_path(), StoreOptions::default()).expect("open");
        let agent = store.agent("bench").expect("agent");
        let cache = store.response_cache(&agent);
        let t = Instant::now();
        for chunk in pairs.chunks(10_000) {
            store
                .response_cache(&agent)
                .put_many(chunk)
                .expect("preload");
        }
        let populate_s = t.elapsed().as_secs_f64();
        store.checkpoint().expect("checkpoint");
        let bare = bare_db(&b.db_path());
        {
            let tx = bare.unchecked_transaction().expect("tx");
            for (prompt, response) in pairs {
                bare_put(&tx, prompt, response);
            }
            tx.commit().expect("commit");
        }
        let never = generator_fn(|m: String| async move {
            Ok::<_, agentstore::agent::GenerationError>(format!("generated for {m}"))
        });
        let responder =
            Responder::new(&store, &agent, never, ResponseConfig::default()).expect("responder");

        // One untimed pass over the hit list, then the timed one; our call and the
        // bare lookup alternate so that both see the same machine state.
        let (ours, sync_get, bare_hit) = rt.block_on(async {
            for (prompt, _) in &hits {
                responder.process_message(prompt).await.expect("warm");
                bare_get(&bare, prompt).expect("bare warm");
            }
            let (mut ours, mut sync_get, mut bare_hit) = (Vec::new(), Vec::new(), Vec::new());
            for (prompt, response) in &hits {
                let t = Instant::now();
                let reply = responder.process_message(prompt).await.expect("hit");
                ours.push(t.elapsed().as_nanos() as f64 / 1000.0);
                assert!(reply.outcome == Outcome::Exact && &reply.response == response);
                sync_get.push(timed(&mut || {
                    store
                        .response_cache(&agent)
                        .lookup_exact(prompt)
                        .expect("get")
                        .expect("hit");
                }));
                bare_hit.push(timed(&mut || {
                    bare_get(&bare, prompt).expect("bare hit");
                }));
            }
            (ours, sync_get, bare_hit)
        });

        // Stores of brand-new pairs (seed 705), word index included.
        let new = prompt_pairs(705, 1_000, &b.vocab);
        let new_bare = prompt_pairs(705, 2_000, &b.vocab);
        let (mut put, mut bare_ins) = (Vec::new(), Vec::new());
        for ((prompt, response), (bp, br)) in new.iter().zip(&new_bare[1_000..]) {
            put.push(timed(&mut || {
                store
                    .response_cache(&agent)
                    .put(prompt, response)
                    .expect("put");
            }));
            bare_ins.push(timed(&mut || bare_put(&bare, bp, br)));
        }
        // The word index of the stores still waiting, so that the amortized cost below
        // covers every store's postings.
        let rest = timed(&mut || {
            cache.index_pending().expect("index");
        });
        let amortized_us = (put.iter().sum::<f64>() + rest) / put.len() as f64;
        rt.block_on(responder.close()).expect("close");

        let disk = json!({ "journal_mode": "wal", "synchronous": "NORMAL" });
        b.row(
            "W7_response_exact",
            "agentstore",
            "process_message_exact_hit",
            p.clone(),
            summarize(&ours),
            disk.clone(),
        );
        b.row(
            "W7_response_exact",
            "agentstore",
            "lookup_exact_sync",
            p.clone(),
            summarize(&sync_get),
            disk.clone(),
        );
        b.row(
            "W7_response_exact",
            "agentstore",
            "put_new",
            p.clone(),
            summarize(&put),
            json!({
                "word_index": "added in batches: a store that finds 128 rows waiting indexes them",
                "amortized_us_with_word_index": amortized_us,
                "populate_s": populate_s,
                "populate_per_s": r as f64 / populate_s,
            }),
        );
        b.row(
            "W7_response_exact",
            "bare_sqlite",
            "hash_and_pk_lookup",
            p.clone(),
            summarize(&bare_hit),
            disk,
        );
        b.row(
            "W7_response_exact",
            "bare_sqlite",
            "hash_and_insert",
            p,
            summarize(&bare_ins),
            json!({}),
        );
        ratios.insert(
            format!("R={r}"),
            json!({
                "process_message_hit_vs_bare_lookup": median(&ours) / median(&bare_hit),
                "lookup_exact_vs_bare_lookup": median(&sync_get) / median(&bare_hit),
                "put_median_us": median(&put),
                "put_amortized_us_with_word_index": amortized_us,
                "put_vs_bare_insert": median(&put) / median(&bare_ins),
            }),
        );
    }
    b.summary("W7_response_exact", Value::Object(ratios));
}

/// The original's scan: every cached message, in order, re-split on every call.
pub fn scan(cached: &[String], query: &str, options: FuzzyOptions) -> Option<usize> {
    let q = word_set(query);
    let mut best = None;
    let mut best_similarity = 0.0;
    for (i, message) in cached.iter().enumerate() {
        let c = word_set(message);
        if q.len() + c.len() == 0 {
            continue;
        }
        let s = jaccard(q.len(), c.len(), shared_words(&q, &c));
        if s > options.threshold
            && s > best_similarity
            && !(options.negation_guard && differ_in_meaning(query, message))
        {
            best_similarity = s;
            best = Some(i);
        }
    }
    best
}

/// W8's three kinds of query for a cache of `r` messages.
pub fn fuzzy_queries(
    messages: &[String],
    r: usize,
    vocab: &[String],
) -> [Vec<(String, Option<usize>)>; 3] {
    let mut a = SplitMix64::new(802);
    let hits = (0..10)
        .map(|_| {
            let (t, mut words) = loop {
                let t = a.below(r as u64) as usize;
                let words: Vec<&str> = messages[t].split(' ').collect();
                if word_set(&messages[t]).len() >= 8 {
                    break (t, words);
                }
            };
            let pos = a.below(words.len() as u64) as usize;
            let w = loop {
                let w = vocab[a.below(5000) as usize].as_str();
                if !words.contains(&w) {
                    break w;
                }
            };
            words[pos] = w;
            (words.join(" "), Some(t))
        })
        .collect();
    let mut b = SplitMix64::new(803);
    let strangers = (0..10)
        .map(|_| {
            let words: Vec<String> = (0..14)
                .map(|_| {
                    let len = 11 + b.below(2);
                    (0..len)
                        .map(|_| (b'a' + b.below(26) as u8) as char)
                        .collect()
                })
                .collect();
            (words.join(" "), None)
        })
        .collect();
    let mut c = SplitMix64::new(804);
    let random = (0..10)
        .map(|_| {
            let words: Vec<&str> = (0..14)
                .map(|_| vocab[c.below(5000) as usize].as_str())
                .collect();
            (words.join(" "), None)
        })
        .collect();
    [hits, strangers, random]
}

/// Caches `messages`, the i-th with the response `response-i`, in bulk.
pub fn preload_fuzzy(cache: &agentstore::ResponseCache, messages: &[String]) {
    let pairs: Vec<(&str, String)> = messages
        .iter()
        .enumerate()
        .map(|(i, m)| (m.as_str(), format!("response-{i}")))
        .collect();
    for chunk in pairs.chunks(10_000) {
        cache.put_many(chunk).expect("preload");
    }
}

/// W8's sizes `(R, reps)` and the cached messages of the largest.
pub fn fuzzy_sizes(b: &Bench) -> (&'static [(usize, usize)], Vec<String>) {
    let sizes: &[(usize, usize)] = if b.config.quick {
        &[(1_000, 3), (10_000, 2)]
    } else {
        &[(1_000, 10), (10_000, 3), (100_000, 2)]
    };
    let all = fuzzy_messages(
        801,
        sizes.iter().map(|s| s.0).max().unwrap_or(1_000),
        &b.vocab,
    );
    (sizes, all)
}

pub fn w8(b: &mut Bench) {
    let (sizes, all) = fuzzy_sizes(b);
    let options = FuzzyOptions::default();
    let unguarded = options.with_negation_guard(false);
    let mut ratios = serde_json::Map::new();
    for &(r, reps) in sizes {
        let messages = &all[..r];
        let store = Store::open(b.db_path(), StoreOptions::default()).expect("open");
        let agent = store.agent("bench").expect("agent");
        preload_fuzzy(&store.response_cache(&agent), messages);
        store.checkpoint().expect("checkpoint");
        let kinds = fuzzy_queries(messages, r, &b.vocab);
        let lookup = |q: &str| {
            store
                .response_cache(&agent)
                .lookup_fuzzy(q, options)
                .expect("lookup")
        };
        lookup(&kinds[0][0].0);
        lookup(&kinds[1][0].0);
        let p = json!({ "R": r });
        let mut row = serde_json::Map::new();
        for (kind, queries) in ["hit", "miss_no_shared_words", "miss_random_vocab"]
            .iter()
            .zip(&kinds)
        {
            let mut samples = Vec::new();
            let mut answers = Vec::new();
            for _ in 0..reps {
                for (q, _) in queries {
                    let mut got = None;
                    samples.push(timed(&mut || got = lookup(q)));
                    answers.push(got);
                }
            }
            // The same answers as a scan of every message, and as the original's scan
            // (no guard) except where the guard refused a match.
            let mut same_as_scan = true;
            let mut same_as_original = 0;
            let mut own_target = 0;
            let mut hits = 0;
            for ((q, target), got) in queries.iter().zip(&answers) {
                let got_index = got.as_ref().map(|m| {
                    m.response["response-".len()..]
                        .parse::<usize>()
                        .unwrap_or(usize::MAX)
                });
                same_as_scan &= got_index == scan(messages, q, options);
                same_as_original += usize::from(got_index == scan(messages, q, unguarded));
                hits += usize::from(got.is_some());
                own_target += usize::from(got_index.is_some() && got_index == *target);
            }
            assert!(
                same_as_scan,
                "W8 {kind} R={r}: the indexed lookup differs from the scan"
            );
            let extra = json!({
                "queries": queries.len(), "hits": hits, "hits_with_target_response": own_target,
                "same_answers_as_scan": same_as_scan,
                "same_answers_as_original_unguarded": format!("{same_as_original}/{}", queries.len()),
                "ns_per_cached_message": median(&samples) * 1000.0 / r as f64,
            });
            b.row(
                "W8_response_fuzzy",
                "agentstore",
                &format!("indexed_{kind}"),
                p.clone(),
                summarize(&samples),
                extra,
            );
            row.insert(format!("{kind}_median_us"), json!(median(&samples)));
        }
        // The bare baseline: the original's scan over rows read from SQLite, once per
        // query of the random-vocabulary miss (it costs the same for every kind).
        let c = Connection::open(store.sqlite_path().expect("SQLite")).expect("open");
        let mut scan_samples = Vec::new();
        for (q, _) in &kinds[2] {
            scan_samples.push(timed(&mut || {
                let mut stmt = c
                    .prepare_cached(
                        "SELECT message FROM response_cache WHERE agent_id = ?1 ORDER BY id",
                    )
                    .expect("prepare");
                let rows: Vec<String> = stmt
                    .query_map([agent.id], |r| r.get(0))
                    .expect("query")
                    .collect::<Result<_, _>>()
                    .expect("rows");
                scan(&rows, q, options);
            }));
        }
        b.row(
            "W8_response_fuzzy",
            "bare_sqlite",
            "scan_every_message",
            p.clone(),
            summarize(&scan_samples),
            json!({ "ns_per_cached_message": median(&scan_samples) * 1000.0 / r as f64 }),
        );
        row.insert("scan_median_us".into(), json!(median(&scan_samples)));
        ratios.insert(format!("R={r}"), Value::Object(row));
    }
    b.summary("W8_response_fuzzy", Value::Object(ratios));
}

pub fn w9(b: &mut Bench) {
    let sizes: &[(usize, usize)] = if b.config.quick {
        &[(10_000, 10)]
    } else {
        &[(10_000, 50), (100_000, 15)]
    };
    let all = response_times(901, sizes.iter().map(|s| s.0).max().unwrap_or(10_000));
    let mut ratios = serde_json::Map::new();
    for &(t, reps) in sizes {
        let times = &all[..t];
        let store = Store::open(b.db_path(), StoreOptions::default()).expect("open");
        let agent = store.agent("bench").expect("agent");
        let cache = store.response_cache(&agent);
        let rows: Vec<LoggedResponse> = times
            .iter()
            .map(|&d| LoggedResponse {
                at: 0,
                duration: d,
                outcome: Outcome::Generated,
            })
            .collect();
        for chunk in rows.chunks(20_000) {
            cache.log(chunk, 1_000_000).expect("log");
        }
        store.checkpoint().expect("checkpoint");
        let mut stats = None;
        store.response_cache(&agent).time_stats().expect("warm");
        let ours: Vec<f64> = (0..reps)
            .map(|_| {
                timed(&mut || {
                    stats = Some(store.response_cache(&agent).time_stats().expect("stats"))
                })
            })
            .collect();
        // Bare: read every duration in order and compute the figures in Rust.
        let c = Connection::open(store.sqlite_path().expect("SQLite")).expect("open");
        let bare_stats = |c: &Connection| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT duration FROM response_log WHERE agent_id = ?1 ORDER BY duration",
                )
                .expect("prepare");
            let s: Vec<f64> = stmt
                .query_map([agent.id], |r| r.get(0))
                .expect("query")
                .collect::<Result<_, _>>()
                .expect("rows");
            let n = s.len();
            let under = s.iter().filter(|&&d| d < 2.0).count();
            (
                s[n / 2],
                s[(n as f64 * 0.9) as usize],
                s[(n as f64 * 0.95) as usize],
                under,
            )
        };
        let mut reference = None;
        bare_stats(&c);
        let bare: Vec<f64> = (0..reps)
            .map(|_| timed(&mut || reference = Some(bare_stats(&c))))
            .collect();
        let same = match (&stats, reference) {
            (Some(ResponseTimeStats::Data(s)), Some((p50, p90, p95, under))) => {
                (
                    s.p50_response_time,
                    s.p90_response_time,
                    s.p95_response_time,
                    s.responses_under_target as usize,
                ) == (p50, p90, p95, under)
            }
            _ => false,
        };
        assert!(same, "W9 T={t}: the SQL stats differ from the reference");
        let p = json!({ "T": t });
        let rate = match &stats {
            Some(ResponseTimeStats::Data(s)) => s.target_achievement_rate,
            _ => f64::NAN,
        };
        b.row("W9_response_stats", "agentstore", "time_stats_sql", p.clone(), summarize(&ours),
              json!({ "exact": true, "method": "nearest rank sorted[floor(n*q)] over an index", "target_achievement_rate": rate }));
        b.row(
            "W9_response_stats",
            "bare_sqlite",
            "read_sorted_then_compute",
            p,
            summarize(&bare),
            json!({}),
        );
        ratios.insert(
            format!("T={t}"),
            json!({ "stats_median_us": median(&ours),
                                                "stats_vs_bare": median(&ours) / median(&bare) }),
        );
    }
    b.summary("W9_response_stats", Value::Object(ratios));
}
