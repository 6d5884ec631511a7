//! `--engine postgres`: W1 to W9 and W12 on PostgreSQL (W6 and W8 beside what they
//! are compared with on SQLite: one tool call, the original's scan), the others each
//! beside a bare `postgres`-crate baseline of the same operation (prepared statements,
//! the same indexes, one transaction per write as the store does) in the same run,
//! alternating one op of each; and W11 (on both engines): a fleet of K processes, each
//! answering a stream of new messages for its own agent, on one SQLite file and on one
//! PostgreSQL server.
//!
//! The server is `AGENTSTORE_BENCH_POSTGRES` (a URL), else a throwaway cluster of the
//! machine's PostgreSQL binaries (see `benches/support/pg_cluster.rs`).

use std::process::Command;
use std::time::Instant;

use agentstore::agent::{Agent, AgentConfig, SimulatedClient, ToolConfig, ToolRegistry, Tools};
use agentstore::{MemorySettings, SearchOptions, Store, StoreOptions};
use postgres::{Client, NoTls};
use serde_json::{Value, json};

use crate::data::{PRELOAD_EPOCH_MICROS, SplitMix64, memory_pairs, prompt_pairs, tool_params};
use crate::harness::{Bench, median, summarize, throughput};
use crate::pg_cluster::Server;
use crate::tools::Lookup;

/// The server the run uses, and the schema counter.
/// `--pg-prepared`: every store of the run keeps prepared statements (`prepare=true`).
pub static PREPARED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

pub struct Pg {
    server: Server,
    next: usize,
}

impl Pg {
    /// The server, or why there is none.
    pub fn start() -> Result<Pg, String> {
        let server = match std::env::var("AGENTSTORE_BENCH_POSTGRES") {
            Ok(url) => Server::at(url),
            Err(_) => Server::start_cluster()?,
        };
        Ok(Pg { server, next: 0 })
    }

    /// A fresh schema's URL.
    pub fn url(&mut self) -> String {
        self.next += 1;
        let prepare = if PREPARED.load(std::sync::atomic::Ordering::Relaxed) {
            "&prepare=true"
        } else {
            ""
        };
        format!(
            "{}?schema=bench{}_{}{prepare}",
            self.server.url(),
            std::process::id(),
            self.next
        )
    }

    /// A bare client in a fresh schema of its own.
    fn bare(&mut self, ddl: &str) -> Client {
        self.next += 1;
        let schema = format!("bare{}_{}", std::process::id(), self.next);
        let mut c = Client::connect(self.server.url(), NoTls).expect("bare connect");
        c.batch_execute(&format!(
            "CREATE SCHEMA {schema}; SET search_path TO {schema}; {ddl}"
        ))
        .expect("bare schema");
        c
    }
}

fn store(url: &str) -> Store {
    Store::connect(url, StoreOptions::default()).expect("connect")
}

/// Times `ours` and `bare` alternately, `n` of each; their per-op microseconds.
fn alternate(
    n: usize,
    mut ours: impl FnMut(usize),
    mut bare: impl FnMut(usize),
) -> (Vec<f64>, Vec<f64>) {
    let (mut a, mut b) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for i in 0..n {
        let t = Instant::now();
        ours(i);
        a.push(t.elapsed().as_secs_f64() * 1e6);
        let t = Instant::now();
        bare(i);
        b.push(t.elapsed().as_secs_f64() * 1e6);
    }
    (a, b)
}

/// Two rows (ours and the baseline) and their ratio.
fn pair(b: &mut Bench, workload: &str, case: &str, p: Value, ours: &[f64], bare: &[f64]) -> f64 {
    let ratio = median(ours) / median(bare);
    b.row(
        workload,
        "agentstore_pg",
        case,
        p.clone(),
        summarize(ours),
        json!({ "ratio_to_bare": ratio }),
    );
    b.row(
        workload,
        "bare_postgres",
        case,
        p,
        summarize(bare),
        json!({}),
    );
    ratio
}

const BARE_MEMORY: &str = "CREATE TABLE m (agent_id bigint NOT NULL, importance double precision NOT NULL,
        created_at bigint NOT NULL, id bigint NOT NULL, size_bytes bigint NOT NULL, content text NOT NULL,
        search tsvector GENERATED ALWAYS AS (to_tsvector('simple', content)) STORED,
        PRIMARY KEY (agent_id, importance, created_at, id));
    CREATE INDEX m_time ON m (agent_id, created_at, id);
    CREATE INDEX m_search ON m USING gin (search);
    CREATE TABLE c (agent_id bigint PRIMARY KEY, n bigint NOT NULL);
    INSERT INTO c VALUES (1, 0);";

/// W1 (adds, a transaction each), W3 (the context) and W12 (search) on PostgreSQL.
pub fn memory(b: &mut Bench, pg: &mut Pg) {
    let n = if b.config.quick { 1_000 } else { 10_000 };
    let pairs = memory_pairs(101, n, &b.vocab);
    let url = pg.url();
    let s = store(&url);
    s.agent("bench").expect("agent");
    s.set_memory_settings(
        "bench",
        &MemorySettings::default()
            .with_cleanup_interval(0)
            .with_max_entries(1 << 30)
            .with_max_memory_mb(1e6),
    )
    .expect("settings");
    let memory = s.memory(&s.existing_agent("bench").expect("agent"));
    let mut bare = pg.bare(BARE_MEMORY);
    let insert = bare
        .prepare(
            "INSERT INTO m (agent_id, importance, created_at, id, size_bytes, content)
                  VALUES (1, $1, $2, $3, $4, $5)",
        )
        .expect("prepare");
    let bump = bare
        .prepare("UPDATE c SET n = n + 1 WHERE agent_id = 1 RETURNING n")
        .expect("prepare");
    let (ours, base) = alternate(
        n,
        |i| {
            memory.add(&pairs[i].0, pairs[i].1).expect("add");
        },
        |i| {
            let mut tx = bare.transaction().expect("tx");
            let id: i64 = tx.query_one(&bump, &[]).expect("bump").get(0);
            let (content, importance) = &pairs[i];
            tx.execute(
                &insert,
                &[
                    importance,
                    &(PRELOAD_EPOCH_MICROS + i as i64),
                    &id,
                    &(content.len() as i64),
                    content,
                ],
            )
            .expect("insert");
            tx.commit().expect("commit");
        },
    );
    let w1 = pair(
        b,
        "W1_memory_add",
        "add_pg",
        json!({ "N": n }),
        &ours,
        &base,
    );

    // W3: the compressed context (2,000 characters) over the same N entries, the
    // baseline one ranked SELECT of the same score in SQL.
    let reps = if b.config.quick { 20 } else { 50 };
    let rank = bare
        .prepare("SELECT content FROM m WHERE agent_id = 1 ORDER BY
            0.7 * importance + 0.3 * (1.0 - ($1::int8 - created_at)::float8 / greatest($2::int8, 1)::float8) DESC,
            created_at DESC, id DESC LIMIT 100")
        .expect("prepare");
    let (newest, span) = (PRELOAD_EPOCH_MICROS + n as i64, n as i64);
    let (ours, base) = alternate(
        reps,
        |_| {
            memory.context(2000).expect("context");
        },
        |_| {
            let rows = bare.query(&rank, &[&newest, &span]).expect("rank");
            let mut used = 0;
            for r in rows {
                let c: &str = r.get(0);
                used += c.chars().count();
                if used > 2000 {
                    break;
                }
            }
        },
    );
    let w3 = pair(
        b,
        "W3_memory_context",
        "context_pg",
        json!({ "N": n, "max_chars": 2000 }),
        &ours,
        &base,
    );

    // W12: full-text search, ten best, of two vocabulary words.
    let top = bare
        .prepare(
            "SELECT id, content, ts_rank(search, q) AS s FROM m, to_tsquery('simple', $1) q
            WHERE agent_id = 1 AND search @@ q ORDER BY s DESC, id DESC LIMIT 10",
        )
        .expect("prepare");
    let mut r = SplitMix64::new(1201);
    let queries: Vec<String> = (0..reps)
        .map(|_| {
            let a = &b.vocab[r.below(b.vocab.len() as u64) as usize];
            let c = &b.vocab[r.below(b.vocab.len() as u64) as usize];
            format!("{a} {c}")
        })
        .collect();
    let options = SearchOptions::default().with_limit(10);
    let (ours, base) = alternate(
        reps,
        |i| {
            memory.search(&queries[i], &options).expect("search");
        },
        |i| {
            let q = queries[i].replace(' ', " | ");
            bare.query(&top, &[&q]).expect("search");
        },
    );
    let w12 = pair(
        b,
        "W12_memory_search",
        "search_pg",
        json!({ "N": n }),
        &ours,
        &base,
    );
    b.summary(
        "PG_memory",
        json!({ "W1_ratio": w1, "W3_ratio": w3, "W12_ratio": w12 }),
    );
}

/// W5: tool-cache hits and miss+store through the executor on PostgreSQL, against a
/// bare lookup and upsert by key.
pub fn tools(b: &mut Bench, pg: &mut Pg) {
    let (c, m) = if b.config.quick {
        (1_000, 300)
    } else {
        (10_000, 2_000)
    };
    let all = tool_params(501, c + m, &b.vocab);
    let mut r = SplitMix64::new(502);
    let hits: Vec<Value> = (0..m)
        .map(|_| all[r.below(c as u64) as usize].clone())
        .collect();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let url = pg.url();
    let s = store(&url);
    let agent = s.agent("bench").expect("agent");
    let tools = Tools::open(
        &s,
        &agent,
        ToolRegistry::new().with(Lookup),
        ToolConfig::default(),
    )
    .expect("tools");
    let mut bare = pg.bare(
        "CREATE TABLE t (key bytea PRIMARY KEY, result text NOT NULL, expires_at bigint NOT NULL);",
    );
    let get = bare
        .prepare("SELECT result FROM t WHERE key = $1 AND expires_at > $2")
        .expect("prepare");
    let put = bare
        .prepare("INSERT INTO t VALUES ($1, $2, $3) ON CONFLICT (key) DO UPDATE SET result = excluded.result")
        .expect("prepare");
    let key = |p: &Value| blake3::hash(p.to_string().as_bytes()).as_bytes().to_vec();
    rt.block_on(async {
        for p in &all[..c] {
            tools
                .execute_tool_cached("lookup", p.clone())
                .await
                .expect("preload");
        }
    });
    for p in &all[..c] {
        bare.execute(&put, &[&key(p), &p.to_string(), &i64::MAX])
            .expect("bare preload");
    }
    let now = chrono::Utc::now().timestamp_micros();
    let (ours, base) = alternate(
        m,
        |i| {
            rt.block_on(tools.execute_tool_cached("lookup", hits[i].clone()))
                .expect("hit");
        },
        |i| {
            bare.query_opt(&get, &[&key(&hits[i]), &now]).expect("get");
        },
    );
    let hit = pair(
        b,
        "W5_tool_cache",
        "execute_cached_hit_pg",
        json!({ "C": c, "M": m }),
        &ours,
        &base,
    );
    let (ours, base) = alternate(
        m,
        |i| {
            rt.block_on(tools.execute_tool_cached("lookup", all[c + i].clone()))
                .expect("miss");
        },
        |i| {
            let p = &all[c + i];
            let mut tx = bare.transaction().expect("tx");
            if tx.query_opt(&get, &[&key(p), &now]).expect("get").is_none() {
                tx.execute(&put, &[&key(p), &p.to_string(), &i64::MAX])
                    .expect("put");
            }
            tx.commit().expect("commit");
        },
    );
    let miss = pair(
        b,
        "W5_tool_cache",
        "miss_and_store_pg",
        json!({ "C": c, "M": m }),
        &ours,
        &base,
    );
    rt.block_on(tools.close()).expect("close");
    b.summary(
        "PG_tools",
        json!({ "hit_ratio": hit, "miss_store_ratio": miss }),
    );
}

/// W7: exact hits and stores of new responses on PostgreSQL, against a bare lookup by
/// hash and a bare insert of the row and its postings.
pub fn responses(b: &mut Bench, pg: &mut Pg) {
    let (r_n, m) = if b.config.quick {
        (1_000, 300)
    } else {
        (10_000, 2_000)
    };
    let pairs = prompt_pairs(701, r_n + m, &b.vocab);
    let url = pg.url();
    let s = store(&url);
    let agent = s.agent("bench").expect("agent");
    let cache = s.response_cache(&agent);
    let (pre, new) = pairs.split_at(r_n);
    cache.put_many(pre).expect("preload");
    let mut bare = pg.bare(
        "CREATE TABLE r (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, hash bytea UNIQUE NOT NULL,
             message text NOT NULL, response text NOT NULL);
         CREATE TABLE w (word text NOT NULL, n bigint NOT NULL, id bigint NOT NULL, PRIMARY KEY (word, n, id));",
    );
    let get = bare
        .prepare("SELECT message, response FROM r WHERE hash = $1")
        .expect("prepare");
    let ins = bare
        .prepare("INSERT INTO r (hash, message, response) VALUES ($1, $2, $3) RETURNING id")
        .expect("prepare");
    let post = bare
        .prepare("INSERT INTO w SELECT unnest($1::text[]), $2, $3 ON CONFLICT DO NOTHING")
        .expect("prepare");
    let hash = |m: &str| blake3::hash(m.as_bytes()).as_bytes().to_vec();
    let store_bare = |bare: &mut Client, m: &str, r: &str| {
        let mut tx = bare.transaction().expect("tx");
        let id: i64 = tx
            .query_one(&ins, &[&hash(m), &m, &r])
            .expect("insert")
            .get(0);
        let words = agentstore::words::word_set(m);
        tx.execute(&post, &[&words, &(words.len() as i64), &id])
            .expect("postings");
        tx.commit().expect("commit");
    };
    for (m, r) in pre {
        store_bare(&mut bare, m, r);
    }
    let mut rng = SplitMix64::new(702);
    let hits: Vec<&str> = (0..m)
        .map(|_| pre[rng.below(r_n as u64) as usize].0.as_str())
        .collect();
    let (ours, base) = alternate(
        m,
        |i| {
            cache.lookup_exact(hits[i]).expect("hit").expect("a hit");
        },
        |i| {
            bare.query_opt(&get, &[&hash(hits[i])])
                .expect("get")
                .expect("a hit");
        },
    );
    let hit = pair(
        b,
        "W7_response_exact",
        "exact_hit_pg",
        json!({ "R": r_n, "M": m }),
        &ours,
        &base,
    );
    let (ours, base) = alternate(
        m,
        |i| {
            cache.put(&new[i].0, &new[i].1).expect("put");
        },
        |i| store_bare(&mut bare, &new[i].0, &new[i].1),
    );
    let put = pair(
        b,
        "W7_response_exact",
        "put_new_pg",
        json!({ "R": r_n, "M": m }),
        &ours,
        &base,
    );
    b.summary(
        "PG_responses",
        json!({ "exact_hit_ratio": hit, "put_new_ratio": put }),
    );
}

/// W11's child: answers `m` new messages for `agent` on `db`, prints its seconds.
pub fn w11_child(db: &str, agent: &str, m: usize) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let vocab = crate::data::vocab();
    let messages: Vec<String> = crate::data::fuzzy_messages(800 + agent.len() as u64, m, &vocab)
        .into_iter()
        .enumerate()
        .map(|(i, msg)| format!("{agent} {i} {msg}"))
        .collect();
    let store = Store::connect(db, StoreOptions::default()).expect("connect");
    let secs = rt.block_on(async {
        let agent = Agent::open(&store, agent, AgentConfig::new(SimulatedClient::instant(1)))
            .await
            .expect("agent");
        let t = Instant::now();
        for msg in &messages {
            agent.process_message(msg).await.expect("answer");
        }
        agent.flush().await.expect("flush");
        t.elapsed().as_secs_f64()
    });
    println!("{}", json!({ "secs": secs, "messages": m }));
}

/// W11: K = 1, 2, 4, 8 processes, each answering new messages for its own agent, on
/// one SQLite file and on one PostgreSQL server: messages per second over all of
/// them (from the first start to the last finish).
pub fn w11(b: &mut Bench, pg: Option<&mut Pg>) {
    let m = if b.config.quick { 100 } else { 400 };
    let exe = std::env::current_exe().expect("bench binary");
    let mut dbs: Vec<(&str, String)> =
        vec![("sqlite", b.db_path().to_str().expect("utf-8").to_string())];
    if let Some(pg) = pg {
        dbs.push(("postgres", pg.url()));
    }
    let mut summary = serde_json::Map::new();
    for (engine, db) in &dbs {
        // The schema exists before the fleet starts (as an operator's `init`).
        drop(store(db));
        for k in [1usize, 2, 4, 8] {
            let t = Instant::now();
            let running: Vec<_> = (0..k)
                .map(|i| {
                    Command::new(&exe)
                        .args(["--w11-child", db, &format!("fleet{k}_{i}"), &m.to_string()])
                        .stdout(std::process::Stdio::piped())
                        .spawn()
                        .expect("spawn")
                })
                .collect();
            for child in running {
                let out = child.wait_with_output().expect("child");
                assert!(out.status.success(), "W11 child failed");
            }
            let secs = t.elapsed().as_secs_f64();
            let rate = (k * m) as f64 / secs;
            b.row(
                "W11_fleet",
                &format!("agentstore_{engine}"),
                "messages_per_s",
                json!({ "K": k, "M": m }),
                throughput(k * m, secs),
                json!({}),
            );
            summary.insert(format!("{engine}_K{k}"), json!(rate));
        }
    }
    b.summary("W11_fleet", Value::Object(summary));
}

/// W4 (memory stats at 1k and 100k entries) and W9 (response-time stats over 10k and
/// 100k logged responses) on PostgreSQL: both read kept counters or buckets, so their
/// time must not grow with the rows, where the bare aggregates' does.
pub fn stats(b: &mut Bench, pg: &mut Pg) {
    use agentstore::{LoggedResponse, Outcome};
    let sizes: &[usize] = if b.config.quick {
        &[1_000, 10_000]
    } else {
        &[1_000, 100_000]
    };
    let reps = if b.config.quick { 20 } else { 50 };
    let mut summary = serde_json::Map::new();
    for &n in sizes {
        let pairs = memory_pairs(201, n, &b.vocab);
        let url = pg.url();
        let s = store(&url);
        let agent = s.agent("bench").expect("agent");
        let entries: Vec<agentstore::NewEntry> = pairs
            .iter()
            .enumerate()
            .map(|(i, (c, imp))| agentstore::NewEntry {
                role: Default::default(),
                content: c.clone(),
                importance: *imp,
                created_at: PRELOAD_EPOCH_MICROS + i as i64 * 1_000_000,
            })
            .collect();
        let memory = s.memory(&agent);
        memory.import_entries(&entries).expect("preload");
        let mut bare = pg.bare(BARE_MEMORY);
        let mut tx = bare.transaction().expect("tx");
        let insert = tx
            .prepare("INSERT INTO m (agent_id, importance, created_at, id, size_bytes, content)
                      SELECT 1, i, t, n, octet_length(x), x
                        FROM unnest($1::float8[], $2::int8[], $3::int8[], $4::text[]) AS u(i, t, n, x)")
            .expect("prepare");
        let imp: Vec<f64> = entries.iter().map(|e| e.importance).collect();
        let at: Vec<i64> = entries.iter().map(|e| e.created_at).collect();
        let ids: Vec<i64> = (1..=n as i64).collect();
        let texts: Vec<&str> = entries.iter().map(|e| e.content.as_str()).collect();
        tx.execute(&insert, &[&imp, &at, &ids, &texts])
            .expect("bare preload");
        tx.commit().expect("commit");
        s.compact(false).expect("vacuum");
        bare.batch_execute("VACUUM ANALYZE m").expect("bare vacuum");
        let agg = bare
            .prepare("SELECT count(*), sum(size_bytes), avg(importance), min(created_at), max(created_at)
                      FROM m WHERE agent_id = 1")
            .expect("prepare");
        let (ours, base) = alternate(
            reps,
            |_| {
                memory.stats().expect("stats");
            },
            |_| {
                bare.query_one(&agg, &[]).expect("aggregates");
            },
        );
        let r = pair(
            b,
            "W4_memory_stats",
            "stats_pg",
            json!({ "N": n }),
            &ours,
            &base,
        );
        summary.insert(format!("W4_N{n}_median_us"), json!(median(&ours)));
        summary.insert(format!("W4_N{n}_ratio"), json!(r));

        // W9: n logged responses (10x the memory sizes, capped at 100k).
        let t_n = (n * 10).min(100_000);
        let cache = s.response_cache(&agent);
        let mut rng = SplitMix64::new(901);
        let rows: Vec<LoggedResponse> = (0..t_n)
            .map(|i| LoggedResponse {
                at: PRELOAD_EPOCH_MICROS + i as i64,
                duration: rng.below(5_000_000) as f64 / 1e6,
                outcome: Outcome::Generated,
            })
            .collect();
        for chunk in rows.chunks(5_000) {
            cache.log(chunk, u64::MAX).expect("log");
        }
        let mut bare = pg.bare("CREATE TABLE l (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, d double precision NOT NULL);");
        let ins = bare
            .prepare("INSERT INTO l (d) SELECT unnest($1::float8[])")
            .expect("prepare");
        let ds: Vec<f64> = rows.iter().map(|r| r.duration).collect();
        bare.execute(&ins, &[&ds]).expect("bare log");
        // As autovacuum would after a bulk load: visibility map and statistics, for
        // both sides.
        s.compact(false).expect("vacuum");
        bare.batch_execute("VACUUM ANALYZE l").expect("bare vacuum");
        let pct = bare
            .prepare("SELECT count(*), avg(d), min(d), max(d),
                             percentile_disc(ARRAY[0.5, 0.9, 0.95]) WITHIN GROUP (ORDER BY d) FROM l")
            .expect("prepare");
        let (ours, base) = alternate(
            reps,
            |_| {
                cache.time_stats().expect("time stats");
            },
            |_| {
                bare.query_one(&pct, &[]).expect("percentiles");
            },
        );
        let r = pair(
            b,
            "W9_response_stats",
            "time_stats_pg",
            json!({ "T": t_n }),
            &ours,
            &base,
        );
        summary.insert(format!("W9_T{t_n}_median_us"), json!(median(&ours)));
        summary.insert(format!("W9_T{t_n}_ratio"), json!(r));
    }
    b.summary("PG_stats", Value::Object(summary));
}

/// W2 on PostgreSQL: one cleanup (keep the top 70% by importance and time) of N
/// preloaded entries, against a bare `DELETE ... NOT IN (top 70%)`; both rebuilt
/// before each rep, untimed.
pub fn cleanup(b: &mut Bench, pg: &mut Pg) {
    let (sizes, (warmups, timed), all) = crate::memory::cleanup_plan(b);
    let url = pg.url();
    let s = store(&url);
    let mut bare = pg.bare(BARE_MEMORY);
    let mut ratios = serde_json::Map::new();
    for &n in sizes {
        let pairs = &all[..n];
        let entries = crate::memory::preload_entries(pairs);
        let (mut ours, mut base) = (Vec::new(), Vec::new());
        let mut kept = 0;
        for rep in 0..warmups + timed {
            // A fresh agent each rep, preloaded, untimed.
            let agent = s.agent(&format!("w2-{n}-{rep}")).expect("agent");
            let memory = s.memory(&agent);
            for chunk in entries.chunks(10_000) {
                memory.import_entries(chunk).expect("preload");
            }
            let t = Instant::now();
            memory.cleanup().expect("cleanup");
            let us = t.elapsed().as_secs_f64() * 1e6;
            kept = memory.stats().expect("stats").total_entries;

            bare.batch_execute("TRUNCATE m").expect("truncate");
            let imp: Vec<f64> = pairs.iter().map(|p| p.1).collect();
            let created: Vec<i64> = (0..n as i64)
                .map(|i| PRELOAD_EPOCH_MICROS + i * 1_000_000)
                .collect();
            let ids: Vec<i64> = (1..=n as i64).collect();
            let sizes: Vec<i64> = pairs.iter().map(|p| p.0.len() as i64).collect();
            let contents: Vec<&str> = pairs.iter().map(|p| p.0.as_str()).collect();
            bare.execute(
                "INSERT INTO m (agent_id, importance, created_at, id, size_bytes, content)
                 SELECT 1, * FROM unnest($1::float8[], $2::int8[], $3::int8[], $4::int8[], $5::text[])",
                &[&imp, &created, &ids, &sizes, &contents],
            )
            .expect("bare preload");
            bare.batch_execute("VACUUM ANALYZE m").expect("analyze");
            let keep = (n as f64 * 0.7).floor() as i64;
            let t = Instant::now();
            bare.execute(
                "DELETE FROM m WHERE agent_id = 1 AND id NOT IN (SELECT id FROM m WHERE agent_id = 1
                  ORDER BY importance DESC, created_at DESC LIMIT $1)",
                &[&keep],
            )
            .expect("bare delete");
            let bus = t.elapsed().as_secs_f64() * 1e6;
            if rep >= warmups {
                ours.push(us);
                base.push(bus);
            }
        }
        assert_eq!(
            kept,
            (n as f64 * 0.7).floor() as u64,
            "W2 on PostgreSQL kept"
        );
        let r = pair(
            b,
            "W2_memory_cleanup",
            "cleanup_pg",
            json!({ "N": n, "entries_after": kept }),
            &ours,
            &base,
        );
        ratios.insert(format!("N={n}_ratio"), json!(r));
        ratios.insert(format!("N={n}_median_us"), json!(median(&ours)));
    }
    b.summary("PG_W2_memory_cleanup", Value::Object(ratios));
}

/// W6 on PostgreSQL: the 32-request batch (24 distinct) against a 10 ms tool.
pub fn parallel_tools(b: &mut Bench, pg: &mut Pg) {
    let url = pg.url();
    let s = store(&url);
    crate::tools::w6_on(b, &s, "agentstore_pg", "PG_W6_parallel_tools");
}

/// W8 on PostgreSQL: the indexed fuzzy lookup at R = 1k, 10k (and 100k), hits and
/// both kinds of miss, with the same answers as the original's scan; the bare
/// baseline is that scan over the messages read from the server.
pub fn fuzzy(b: &mut Bench, pg: &mut Pg) {
    use crate::responses::{fuzzy_queries, fuzzy_sizes, scan, timed};
    let (sizes, all) = fuzzy_sizes(b);
    let options = agentstore::FuzzyOptions::default();
    let mut summary = serde_json::Map::new();
    for &(r, reps) in sizes {
        let messages = &all[..r];
        let url = pg.url();
        let s = store(&url);
        let agent = s.agent("bench").expect("agent");
        let cache = s.response_cache(&agent);
        crate::responses::preload_fuzzy(&cache, messages);
        let kinds = fuzzy_queries(messages, r, &b.vocab);
        let lookup = |q: &str| cache.lookup_fuzzy(q, options).expect("lookup");
        lookup(&kinds[0][0].0);
        lookup(&kinds[1][0].0);
        for (kind, queries) in ["hit", "miss_no_shared_words", "miss_random_vocab"]
            .iter()
            .zip(&kinds)
        {
            let mut samples = Vec::new();
            let mut same_as_scan = true;
            for _ in 0..reps {
                for (q, _) in queries {
                    let mut got = None;
                    samples.push(timed(&mut || got = lookup(q)));
                    let index = got.map(|m| {
                        m.response["response-".len()..]
                            .parse::<usize>()
                            .unwrap_or(usize::MAX)
                    });
                    same_as_scan &= index == scan(messages, q, options);
                }
            }
            assert!(
                same_as_scan,
                "W8 on PostgreSQL {kind} R={r}: differs from the scan"
            );
            b.row(
                "W8_response_fuzzy",
                "agentstore_pg",
                &format!("indexed_{kind}_pg"),
                json!({ "R": r }),
                summarize(&samples),
                json!({ "same_answers_as_scan": same_as_scan }),
            );
            summary.insert(format!("R={r}_{kind}_median_us"), json!(median(&samples)));
        }
        // The bare baseline: every message read from the server, then the scan.
        let mut bare = Client::connect(pg.server.url(), NoTls).expect("bare connect");
        let schema = url
            .rsplit("schema=")
            .next()
            .and_then(|s| s.split('&').next())
            .expect("schema")
            .to_string();
        let select = bare
            .prepare(&format!(
                "SELECT message FROM {schema}.response_cache WHERE agent_id = $1 ORDER BY id"
            ))
            .expect("prepare");
        let mut scan_samples = Vec::new();
        for (q, _) in &kinds[2] {
            scan_samples.push(timed(&mut || {
                let rows: Vec<String> = bare
                    .query(&select, &[&agent.id])
                    .expect("rows")
                    .iter()
                    .map(|row| row.get(0))
                    .collect();
                scan(&rows, q, options);
            }));
        }
        b.row(
            "W8_response_fuzzy",
            "bare_postgres",
            "scan_every_message_pg",
            json!({ "R": r }),
            summarize(&scan_samples),
            json!({}),
        );
        summary.insert(
            format!("R={r}_scan_median_us"),
            json!(median(&scan_samples)),
        );
    }
    b.summary("PG_W8_response_fuzzy", Value::Object(summary));
}
