//! One behavioural suite, both engines: a test written once as
//! `engines! { fn name(db: &Db) -> TestResult { ... } }` runs as `name::sqlite` on a
//! fresh file and as `name::postgres` in a fresh schema of the test server (see
//! `postgres.rs`; one throwaway cluster shared by the tests running at the same time);
//! `engines_async!` does the same for `async fn`.
//! A [`Db`] hands out stores, the CLI and the `--db` location; it has no file path, so
//! a test that inspects the SQLite file cannot be written against it by mistake.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

use agentstore::{ManualClock, Store, StoreOptions};
use tempfile::TempDir;

use crate::postgres::Server;

/// Which engine a [`Db`] is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

/// A fresh, empty database on one engine, removed on drop, and a scratch directory
/// for the files a test writes (exports, reports).
pub struct Db {
    pub engine: Engine,
    /// Scratch space; on SQLite it also holds the database file.
    pub dir: TempDir,
    location: String,
    server: Option<Arc<Server>>,
    schema: String,
}

/// The test server, shared by every test holding it; started again when the last
/// holder has dropped it. `None` (the reason printed) where none can be had.
fn shared_server() -> Option<Arc<Server>> {
    static SHARED: Mutex<Weak<Server>> = Mutex::new(Weak::new());
    let mut shared = SHARED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(server) = shared.upgrade() {
        return Some(server);
    }
    let server = Arc::new(crate::postgres::server()?);
    *shared = Arc::downgrade(&server);
    Some(server)
}

impl Db {
    /// A fresh SQLite file in its own temporary directory.
    pub fn sqlite() -> Db {
        let dir = tempfile::tempdir().expect("tempdir");
        let location = dir.path().join("agent.db").to_str().expect("utf-8").into();
        Db {
            engine: Engine::Sqlite,
            dir,
            location,
            server: None,
            schema: String::new(),
        }
    }

    /// A fresh schema on the test server, or `None` where there is no server.
    pub fn postgres() -> Option<Db> {
        static N: AtomicUsize = AtomicUsize::new(0);
        let server = shared_server()?;
        let schema = format!(
            "suite_{}_{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        );
        let sep = if server.url().contains('?') { '&' } else { '?' };
        Some(Db {
            engine: Engine::Postgres,
            dir: tempfile::tempdir().expect("tempdir"),
            location: format!("{}{sep}schema={schema}", server.url()),
            server: Some(server),
            schema,
        })
    }

    /// What `--db` and [`Store::connect`] take: the file's path or the URL.
    pub fn location(&self) -> &str {
        &self.location
    }

    /// The store, opened (or created) with `options`.
    pub fn open(&self, options: StoreOptions) -> agentstore::Result<Store> {
        Store::connect(&self.location, options)
    }

    /// The store with a manual clock at `start` microseconds.
    pub fn open_at(&self, start: i64) -> (Store, ManualClock) {
        let clock = ManualClock::new(start);
        let store = self
            .open(StoreOptions::default().with_clock(clock.clone()))
            .expect("open store");
        (store, clock)
    }

    /// The agentstore binary on this database, with nothing from the environment.
    pub fn cli(&self) -> assert_cmd::Command {
        let mut c = assert_cmd::Command::cargo_bin("agentstore").expect("binary");
        c.env_remove("AGENTSTORE_DB")
            .env_remove("AGENTSTORE_BUSY_TIMEOUT")
            .env_remove("COLUMNS")
            .arg("--db")
            .arg(&self.location);
        c
    }

    /// Runs the binary with `--json` and `args`, expects success, and parses stdout.
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let out = self.cli().arg("--json").args(args).assert().success();
        serde_json::from_slice(&out.get_output().stdout).expect("stdout is JSON")
    }

    /// The rows of a read-only `query` through `agentstore sql`, as JSON objects.
    pub fn sql(&self, query: &str) -> Vec<serde_json::Value> {
        match self.json(&["sql", query]) {
            serde_json::Value::Array(rows) => rows,
            other => panic!("sql printed {other}"),
        }
    }

    /// Whether the database exists: the file, or the schema on the server.
    pub fn exists(&self) -> bool {
        match &self.server {
            None => std::path::Path::new(&self.location).exists(),
            Some(server) => postgres::Client::connect(server.url(), postgres::NoTls)
                .expect("connect to the test server")
                .query_opt(
                    "SELECT 1 FROM information_schema.schemata WHERE schema_name = $1",
                    &[&self.schema],
                )
                .expect("schemata")
                .is_some(),
        }
    }

    /// Everything stored, to compare before and after something that must change
    /// nothing: on SQLite every file's length and hash (the file, its WAL), on
    /// PostgreSQL every row of every table of the schema, as text.
    pub fn snapshot(&self) -> Vec<String> {
        match &self.server {
            None => crate::common::snapshot_dir(self.dir.path())
                .into_iter()
                .map(|f| format!("{f:?}"))
                .collect(),
            Some(server) => {
                let mut c = postgres::Client::connect(server.url(), postgres::NoTls)
                    .expect("connect to the test server");
                let tables: Vec<String> = c
                    .query(
                        "SELECT table_name::text FROM information_schema.tables
                          WHERE table_schema = $1 AND table_type = 'BASE TABLE' ORDER BY 1",
                        &[&self.schema],
                    )
                    .expect("tables")
                    .iter()
                    .map(|r| r.get(0))
                    .collect();
                let mut rows = Vec::new();
                for t in tables {
                    let q = format!("SELECT t::text FROM {}.{t} t ORDER BY 1", self.schema);
                    for r in c.query(&q, &[]).expect("rows") {
                        rows.push(format!("{t}: {}", r.get::<_, String>(0)));
                    }
                }
                rows
            }
        }
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        // A server given by URL outlives the tests: leave it as it was.
        if let Some(server) = &self.server
            && let Ok(mut c) = postgres::Client::connect(server.url(), postgres::NoTls)
        {
            let _ = c.batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.schema));
        }
    }
}

/// Each `fn name(db: &Db) -> TestResult { .. }` becomes a module `name` with the
/// tests `sqlite` and `postgres` (which prints why it skips where there is no server).
macro_rules! engines {
    ($($(#[$meta:meta])* fn $name:ident($db:ident: &Db) -> TestResult $body:block)*) => {
        $(
            $(#[$meta])*
            mod $name {
                #[allow(unused_imports)]
                use super::*;

                fn run($db: &$crate::engines::Db) -> $crate::common::TestResult $body

                #[test]
                fn sqlite() -> $crate::common::TestResult {
                    run(&$crate::engines::Db::sqlite())
                }

                #[test]
                fn postgres() -> $crate::common::TestResult {
                    match $crate::engines::Db::postgres() {
                        Some(db) => run(&db),
                        None => Ok(()),
                    }
                }
            }
        )*
    };
}
pub(crate) use engines;

/// [`engines!`] for one `async fn name(db: &Db) -> TestResult { .. }`: it runs on a
/// current-thread tokio runtime (as `#[tokio::test]`), or on a two-worker one when
/// marked `#[multi_thread]`; the database is made and dropped outside the runtime.
macro_rules! engines_async {
    (#[multi_thread] $(#[$meta:meta])* async fn $name:ident($db:ident: &Db) -> TestResult $body:block) => {
        $crate::engines::engines_async!(@gen (new_multi_thread().worker_threads(2))
            $(#[$meta])* $name $db $body);
    };
    ($(#[$meta:meta])* async fn $name:ident($db:ident: &Db) -> TestResult $body:block) => {
        $crate::engines::engines_async!(@gen (new_current_thread()) $(#[$meta])* $name $db $body);
    };
    (@gen ($($builder:tt)*) $(#[$meta:meta])* $name:ident $db:ident $body:block) => {
        $(#[$meta])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            async fn run($db: &$crate::engines::Db) -> $crate::common::TestResult $body

            fn on(db: &$crate::engines::Db) -> $crate::common::TestResult {
                tokio::runtime::Builder::$($builder)*
                    .enable_all()
                    .build()?
                    .block_on(run(db))
            }

            #[test]
            fn sqlite() -> $crate::common::TestResult {
                on(&$crate::engines::Db::sqlite())
            }

            #[test]
            fn postgres() -> $crate::common::TestResult {
                match $crate::engines::Db::postgres() {
                    Some(db) => on(&db),
                    None => Ok(()),
                }
            }
        }
    };
}
pub(crate) use engines_async;
