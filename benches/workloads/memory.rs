//! W1 to W4: memory entries.

use std::path::Path;
use std::time::Instant;

use crate::data::{PRELOAD_EPOCH_MICROS, memory_pairs};
use agentstore::{NewEntry, Store, StoreOptions};
use rusqlite::{Connection, params};
use serde_json::{Value, json};

use crate::harness::{Bench, median, per_op, reps, summarize, throughput};

// ---------------------------------------------------------------- stores under test

pub fn open_store(path: &Path) -> Store {
    Store::open(path, StoreOptions::default()).expect("open store")
}

/// The entries a preload imports: `pairs` one second apart from the preload epoch.
pub fn preload_entries(pairs: &[(String, f64)]) -> Vec<NewEntry> {
    pairs
        .iter()
        .enumerate()
        .map(|(i, (c, imp))| NewEntry {
            role: Default::default(),
            content: c.clone(),
            importance: *imp,
            created_at: PRELOAD_EPOCH_MICROS + i as i64 * 1_000_000,
        })
        .collect()
}

/// A fresh store with one agent whose retention cannot interfere with preloading.
pub fn preloaded_store(path: &Path, pairs: &[(String, f64)]) -> (Store, agentstore::Memory) {
    let store = open_store(path);
    let agent = store.agent("bench").expect("agent");
    let entries = preload_entries(pairs);
    let memory = store.memory(&agent);
    memory.import_entries(&entries).expect("preload");
    // Settle: the bare baseline's preload checkpoints inside its commit, ours in the
    // background; without this the timed call would share the disk with that copy.
    store.checkpoint().expect("checkpoint");
    (store, memory)
}

/// The bare baseline: the same row shape and indexes in a plain rowid table, with the
/// same pragmas (WAL, synchronous=NORMAL).
pub fn bare_db(path: &Path) -> Connection {
    let c = Connection::open(path).expect("bare open");
    c.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;
         CREATE TABLE m (id INTEGER PRIMARY KEY, agent_id INTEGER NOT NULL,
             importance REAL NOT NULL, created_at INTEGER NOT NULL,
             size_bytes INTEGER NOT NULL, content TEXT NOT NULL);
         CREATE INDEX m_rank ON m (agent_id, importance, created_at);
         CREATE INDEX m_time ON m (agent_id, created_at);",
    )
    .expect("bare schema");
    c
}

pub const BARE_INSERT: &str = "INSERT INTO m (agent_id, importance, created_at, size_bytes, content) \
                           VALUES (1, ?1, ?2, ?3, ?4)";

pub fn bare_insert(c: &Connection, content: &str, importance: f64, created: i64) {
    c.prepare_cached(BARE_INSERT)
        .and_then(|mut s| s.execute(params![importance, created, content.len() as i64, content]))
        .expect("bare insert");
}

pub fn bare_preloaded(path: &Path, pairs: &[(String, f64)]) -> Connection {
    let mut c = bare_db(path);
    let tx = c.transaction().expect("tx");
    for (i, (content, imp)) in pairs.iter().enumerate() {
        bare_insert(
            &tx,
            content,
            *imp,
            PRELOAD_EPOCH_MICROS + i as i64 * 1_000_000,
        );
    }
    tx.commit().expect("commit");
    c
}

// ---------------------------------------------------------------- W1 memory_add

pub fn w1(b: &mut Bench) {
    let sizes: &[usize] = if b.config.quick {
        &[10_000]
    } else {
        &[10_000, 100_000]
    };
    let all = memory_pairs(101, *sizes.iter().max().unwrap_or(&10_000), &b.vocab);
    let now = || chrono::Utc::now().timestamp_micros();

    // Warm-up: 2,000 adds on a throwaway agent, and as many bare inserts.
    let warm = open_store(&b.db_path());
    let wm = warm.memory(&warm.agent("warm").expect("agent"));
    let bare_warm = bare_db(&b.db_path());
    for (c, imp) in &all[..2000] {
        wm.add(c, *imp).expect("add");
        bare_insert(&bare_warm, c, *imp, now());
    }

    let mut ratios = serde_json::Map::new();
    for &n in sizes {
        let pairs = &all[..n];
        let p = json!({ "N": n });

        // (a) throughput, a transaction per add.
        let store = open_store(&b.db_path());
        let memory = store.memory(&store.agent("a").expect("agent"));
        let t = Instant::now();
        for (c, imp) in pairs {
            memory.add(c, *imp).expect("add");
        }
        let add_secs = t.elapsed().as_secs_f64();
        let entries = memory.stats().expect("stats").total_entries;
        b.row(
            "W1_memory_add",
            "agentstore",
            "add_throughput",
            p.clone(),
            throughput(n, add_secs),
            json!({ "throughput_per_s": n as f64 / add_secs, "entries_after": entries }),
        );

        let bare = bare_db(&b.db_path());
        let t = Instant::now();
        for (c, imp) in pairs {
            bare_insert(&bare, c, *imp, now());
        }
        let bare_secs = t.elapsed().as_secs_f64();
        b.row(
            "W1_memory_add",
            "bare_sqlite",
            "insert_throughput",
            p.clone(),
            throughput(n, bare_secs),
            json!({ "throughput_per_s": n as f64 / bare_secs }),
        );

        // (b) latency, per-op clock, a second fresh agent.
        let store = open_store(&b.db_path());
        let memory = store.memory(&store.agent("b").expect("agent"));
        let lat = per_op(pairs, |(c, imp)| {
            memory.add(c, *imp).expect("add");
        });
        b.row(
            "W1_memory_add",
            "agentstore",
            "add_latency",
            p.clone(),
            summarize(&lat),
            json!({}),
        );
        let bare = bare_db(&b.db_path());
        let bare_lat = per_op(pairs, |(c, imp)| bare_insert(&bare, c, *imp, now()));
        b.row(
            "W1_memory_add",
            "bare_sqlite",
            "insert_latency",
            p.clone(),
            summarize(&bare_lat),
            json!({}),
        );

        // add_many: all N in one transaction, against the same rows in one transaction.
        let store = open_store(&b.db_path());
        let memory = store.memory(&store.agent("c").expect("agent"));
        let t = Instant::now();
        memory.add_many(pairs).expect("add_many");
        let many_secs = t.elapsed().as_secs_f64();
        b.row(
            "W1_memory_add",
            "agentstore",
            "add_many_throughput",
            p.clone(),
            throughput(n, many_secs),
            json!({ "throughput_per_s": n as f64 / many_secs,
                      "entries_after": memory.stats().expect("stats").total_entries }),
        );
        let mut bare = bare_db(&b.db_path());
        let t = Instant::now();
        let tx = bare.transaction().expect("tx");
        for (c, imp) in pairs {
            bare_insert(&tx, c, *imp, now());
        }
        tx.commit().expect("commit");
        let batch_secs = t.elapsed().as_secs_f64();
        b.row(
            "W1_memory_add",
            "bare_sqlite",
            "insert_batched_throughput",
            p.clone(),
            throughput(n, batch_secs),
            json!({ "throughput_per_s": n as f64 / batch_secs }),
        );

        // Like for like: the same rows in one transaction with the original's cleanup
        // every 100 messages done as a plain DELETE (no triggers, no cap, no budget).
        let mut bare = bare_db(&b.db_path());
        let t = Instant::now();
        let tx = bare.transaction().expect("tx");
        let mut count = 0i64;
        for (i, (c, imp)) in pairs.iter().enumerate() {
            if (i + 1) % 100 == 0 {
                let keep = (count as f64 * 0.7).floor() as i64;
                if keep > 0 {
                    tx.prepare_cached(
                        "DELETE FROM m WHERE id IN (SELECT id FROM m WHERE agent_id = 1 \
                         ORDER BY importance, created_at, id LIMIT ?1)",
                    )
                    .and_then(|mut s| s.execute([count - keep]))
                    .expect("bare cleanup");
                    count = keep;
                }
            }
            bare_insert(&tx, c, *imp, now());
            count += 1;
        }
        tx.commit().expect("commit");
        let retained_secs = t.elapsed().as_secs_f64();
        b.row(
            "W1_memory_add",
            "bare_sqlite",
            "insert_batched_with_cleanup",
            p.clone(),
            throughput(n, retained_secs),
            json!({ "throughput_per_s": n as f64 / retained_secs, "entries_after": count }),
        );

        ratios.insert(
            format!("N={n}"),
            json!({
                "add_many_vs_bare_batched_with_cleanup_rate": retained_secs / many_secs,
                "add_vs_bare_insert_rate": bare_secs / add_secs,
                "add_latency_median_vs_bare": median(&lat) / median(&bare_lat),
                "add_many_vs_bare_batched_rate": batch_secs / many_secs,
            }),
        );
    }
    b.summary("W1_memory_add", Value::Object(ratios));
}

// ---------------------------------------------------------------- W2 memory_cleanup

/// W2's plan: the sizes, (warm-up, timed) reps, and the entries of the largest size.
pub type CleanupPlan = (&'static [usize], (usize, usize), Vec<(String, f64)>);

/// W2's plan for this run (see [`CleanupPlan`]).
pub fn cleanup_plan(b: &Bench) -> CleanupPlan {
    let sizes: &[usize] = if b.config.quick {
        &[10_000]
    } else {
        &[10_000, 100_000]
    };
    let reps = if b.config.quick { (1, 3) } else { (1, 7) };
    let all = memory_pairs(201, *sizes.iter().max().unwrap_or(&10_000), &b.vocab);
    (sizes, reps, all)
}

pub fn w2(b: &mut Bench) {
    let (sizes, (warmups, timed), all) = cleanup_plan(b);
    let mut ratios = serde_json::Map::new();
    for &n in sizes {
        let pairs = &all[..n];
        let p = json!({ "N": n });
        let mut ours = Vec::new();
        let mut bare = Vec::new();
        let mut kept = 0;
        for rep in 0..warmups + timed {
            // Rebuilt before each rep, untimed.
            let path = b.db_path();
            let (_store, memory) = preloaded_store(&path, pairs);
            let t = Instant::now();
            memory.cleanup().expect("cleanup");
            let us = t.elapsed().as_nanos() as f64 / 1000.0;
            kept = memory.stats().expect("stats").total_entries;
            drop(memory);
            drop(_store);
            let _ = std::fs::remove_file(&path);

            let bpath = b.db_path();
            let c = bare_preloaded(&bpath, pairs);
            let keep = (n as f64 * 0.7).floor() as i64;
            let t = Instant::now();
            c.execute(
                "DELETE FROM m WHERE agent_id = 1 AND id NOT IN (SELECT id FROM m WHERE agent_id = 1 \
                 ORDER BY importance DESC, created_at DESC LIMIT ?1)",
                [keep],
            )
            .expect("bare delete");
            let bus = t.elapsed().as_nanos() as f64 / 1000.0;
            drop(c);
            let _ = std::fs::remove_file(&bpath);
            if rep >= warmups {
                ours.push(us);
                bare.push(bus);
            }
        }
        let per_s = |v: &[f64]| n as f64 / (median(v) / 1e6);
        b.row(
            "W2_memory_cleanup",
            "agentstore",
            "cleanup",
            p.clone(),
            summarize(&ours),
            json!({ "entries_after": kept, "throughput_entries_per_s": per_s(&ours) }),
        );
        b.row(
            "W2_memory_cleanup",
            "bare_sqlite",
            "delete_not_in_top",
            p.clone(),
            summarize(&bare),
            json!({ "throughput_entries_per_s": per_s(&bare) }),
        );
        ratios.insert(
            format!("N={n}"),
            json!({ "cleanup_median_vs_bare": median(&ours) / median(&bare) }),
        );
    }
    b.summary("W2_memory_cleanup", Value::Object(ratios));
}

// ---------------------------------------------------------------- W3 compressed_context

/// The reference: score every entry in Rust, sort, pack greedily (as the original).
pub fn reference_context(pairs: &[(String, f64)], max_chars: usize) -> Vec<usize> {
    let n = pairs.len() as i64;
    let span = (n - 1) * 1_000_000;
    let mut idx: Vec<usize> = (0..pairs.len()).collect();
    let score = |i: usize| {
        let rec = if span == 0 {
            1.0
        } else {
            1.0 - ((n - 1 - i as i64) * 1_000_000) as f64 / span as f64
        };
        0.7 * pairs[i].1 + 0.3 * rec
    };
    idx.sort_by(|&a, &b| score(b).total_cmp(&score(a)).then(b.cmp(&a)));
    let mut used = 0;
    let mut chosen = Vec::new();
    for i in idx {
        let len = pairs[i].0.chars().count();
        if used + len > max_chars {
            break;
        }
        used += len;
        chosen.push(i);
    }
    chosen.sort_unstable();
    chosen
}

pub fn w3(b: &mut Bench) {
    let sizes: &[usize] = if b.config.quick {
        &[1_000, 10_000]
    } else {
        &[1_000, 10_000, 100_000]
    };
    let all = memory_pairs(201, *sizes.iter().max().unwrap_or(&1_000), &b.vocab);
    let mut ratios = serde_json::Map::new();
    for &n in sizes {
        let pairs = &all[..n];
        let p = json!({ "N": n });
        let (_store, memory) = preloaded_store(&b.db_path(), pairs);
        let mut text = String::new();
        let ours = reps(2, 20, || text = memory.context(2000).expect("context").text);
        let want: Vec<&str> = reference_context(pairs, 2000)
            .iter()
            .map(|&i| pairs[i].0.as_str())
            .collect();
        let got: Vec<&str> = text.lines().filter(|l| !l.starts_with("[...")).collect();
        let same = got == want;
        assert!(
            same,
            "W3 N={n}: the packed entries differ from the reference"
        );
        b.row("W3_compressed_context", "agentstore", "context_2000", p.clone(), summarize(&ours),
              json!({ "entries_packed": got.len(), "context_chars": text.len(), "same_entries_as_reference": same }));

        // Bare: score every row in SQL and pack the top ones.
        let c = bare_preloaded(&b.db_path(), pairs);
        let span = ((n - 1) * 1_000_000) as f64;
        let newest = PRELOAD_EPOCH_MICROS + (n as i64 - 1) * 1_000_000;
        let bare = reps(2, 20, || {
            let mut stmt = c
                .prepare_cached(
                    "SELECT content FROM m WHERE agent_id = 1 ORDER BY \
                     0.7 * importance + 0.3 * (1.0 - (?1 - created_at) / ?2) DESC LIMIT 64",
                )
                .expect("prepare");
            let mut rows = stmt.query(params![newest, span]).expect("query");
            let mut used = 0;
            while let Some(r) = rows.next().expect("row") {
                let s: String = r.get(0).expect("content");
                if used + s.len() > 2000 {
                    break;
                }
                used += s.len();
            }
        });
        b.row(
            "W3_compressed_context",
            "bare_sqlite",
            "score_every_row",
            p.clone(),
            summarize(&bare),
            json!({}),
        );
        // With a query (two words of a random entry, as an agent's incoming message
        // shares some words with what it remembers): the walk merged with the search.
        let queries = two_word_queries(pairs, 909, 22);
        let mut next = queries.iter().cycle();
        let with_query = reps(2, 20, || {
            let q = next.next().expect("cycle");
            text = memory.context_for(q, 2000).expect("context").text;
        });
        b.row(
            "W3_compressed_context",
            "agentstore",
            "context_for_query_2000",
            p.clone(),
            summarize(&with_query),
            json!({ "query_words": 2 }),
        );
        ratios.insert(format!("N={n}"), json!({ "context_median_us": median(&ours),
                                                "context_median_vs_bare": median(&ours) / median(&bare),
                                                "context_for_query_median_us": median(&with_query) }));
    }
    b.summary("W3_compressed_context", Value::Object(ratios));
}

/// `count` queries of two words, each pair from one random entry of `pairs`.
fn two_word_queries(pairs: &[(String, f64)], seed: u64, count: usize) -> Vec<String> {
    let mut r = crate::data::SplitMix64::new(seed);
    (0..count)
        .map(|_| {
            let words: Vec<&str> = pairs[r.below(pairs.len() as u64) as usize]
                .0
                .split(' ')
                .collect();
            let a = words[r.below(words.len() as u64) as usize];
            let b = words[r.below(words.len() as u64) as usize];
            format!("{a} {b}")
        })
        .collect()
}

// ---------------------------------------------------------------- W12 memory search

/// W12: full-text search of memory, a two-word query, top 10, at 10k and 100k
/// entries, against a bare FTS5 table of the same contents (same tokenizer, BM25,
/// `ORDER BY rank LIMIT 10`, no snippet, no join).
pub fn w12(b: &mut Bench) {
    let sizes: &[usize] = if b.config.quick {
        &[10_000]
    } else {
        &[10_000, 100_000]
    };
    let all = memory_pairs(201, *sizes.iter().max().unwrap_or(&10_000), &b.vocab);
    let mut ratios = serde_json::Map::new();
    for &n in sizes {
        let pairs = &all[..n];
        let p = json!({ "N": n, "limit": 10 });
        let (_store, memory) = preloaded_store(&b.db_path(), pairs);
        let queries = two_word_queries(pairs, 1201, 52);
        let options = agentstore::SearchOptions::default().with_limit(10);
        let mut next = queries.iter().cycle();
        let mut hits = 0usize;
        let ours = reps(2, 50, || {
            let q = next.next().expect("cycle");
            hits += memory.search(q, &options).expect("search").len();
        });
        assert!(hits > 0, "W12 N={n}: the queries found nothing");
        b.row(
            "W12_memory_search",
            "agentstore",
            "search_2_words_top_10",
            p.clone(),
            summarize(&ours),
            json!({ "hits_per_query": hits as f64 / 52.0 }),
        );

        let c = Connection::open(b.db_path()).expect("bare open");
        c.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;
             CREATE VIRTUAL TABLE t USING fts5(content, tokenize = 'unicode61 remove_diacritics 2');",
        )
        .expect("bare schema");
        {
            let tx = c.unchecked_transaction().expect("tx");
            for (content, _) in pairs {
                tx.execute("INSERT INTO t (content) VALUES (?1)", [content])
                    .expect("bare insert");
            }
            tx.commit().expect("commit");
        }
        let mut next = queries.iter().cycle();
        let bare = reps(2, 50, || {
            let q = next.next().expect("cycle").replace(' ', " OR ");
            let mut stmt = c
                .prepare_cached(
                    "SELECT rowid, bm25(t) FROM t WHERE t MATCH ?1 ORDER BY rank LIMIT 10",
                )
                .expect("prepare");
            let mut rows = stmt.query([q]).expect("query");
            while rows.next().expect("row").is_some() {}
        });
        b.row(
            "W12_memory_search",
            "bare_sqlite",
            "fts5_top_10",
            p.clone(),
            summarize(&bare),
            json!({}),
        );
        ratios.insert(format!("N={n}"), json!({ "search_median_us": median(&ours),
                                                "search_median_vs_bare": median(&ours) / median(&bare) }));
    }
    b.summary("W12_memory_search", Value::Object(ratios));
}

// ---------------------------------------------------------------- W4 memory_stats

pub fn w4(b: &mut Bench) {
    let sizes: &[(usize, usize)] = if b.config.quick {
        &[(1_000, 50), (10_000, 20)]
    } else {
        &[(1_000, 200), (10_000, 50), (100_000, 15)]
    };
    let all = memory_pairs(
        201,
        sizes.iter().map(|s| s.0).max().unwrap_or(1_000),
        &b.vocab,
    );
    let mut ratios = serde_json::Map::new();
    for &(n, timed) in sizes {
        let pairs = &all[..n];
        let p = json!({ "N": n });
        let (_store, memory) = preloaded_store(&b.db_path(), pairs);
        let ours = reps(2, timed, || {
            memory.stats().expect("stats");
        });
        b.row(
            "W4_memory_stats",
            "agentstore",
            "stats",
            p.clone(),
            summarize(&ours),
            json!({}),
        );
        let c = bare_preloaded(&b.db_path(), pairs);
        let bare = reps(2, timed, || {
            c.prepare_cached(
                "SELECT count(*), sum(size_bytes), avg(importance), min(created_at), max(created_at) \
                 FROM m WHERE agent_id = 1",
            )
            .and_then(|mut s| s.query_row([], |r| r.get::<_, i64>(0)))
            .expect("bare stats");
        });
        b.row(
            "W4_memory_stats",
            "bare_sqlite",
            "aggregate_scan",
            p.clone(),
            summarize(&bare),
            json!({}),
        );
        ratios.insert(format!("N={n}"), json!({ "stats_median_us": median(&ours),
                                                "stats_median_vs_bare": median(&ours) / median(&bare) }));
    }
    b.summary("W4_memory_stats", Value::Object(ratios));
}
