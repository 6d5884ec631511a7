//! The PostgreSQL engine through PgBouncer in transaction mode (each transaction, or
//! each autocommit statement, may run on another server connection): no session state
//! and no named prepared statement may be relied on. PgBouncer is Debian's package
//! (`scripts/test.sh` installs it and sets `AGENTSTORE_REQUIRE_PGBOUNCER`, which turns
//! the skip into a failure); it runs as the `postgres` user when we are root.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use agentstore::{MemorySettings, SearchOptions, Store, StoreOptions};
use postgres::NoTls;

use crate::common::{TestResult, skip};
use crate::postgres::is_root;

fn pgbouncer_binary() -> Option<PathBuf> {
    ["/usr/sbin/pgbouncer", "/usr/bin/pgbouncer"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

/// A PgBouncer in front of `host:port`, transaction pooling over 2 server connections.
struct Bouncer {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Bouncer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(bin: &Path, host: &str, port: u16) -> Bouncer {
    let dir = tempfile::tempdir().expect("tempdir");
    let listen = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let d = dir.path();
    std::fs::write(d.join("userlist.txt"), "\"postgres\" \"\"\n").expect("userlist");
    std::fs::write(
        d.join("pgbouncer.ini"),
        format!(
            "[databases]\npostgres = host={host} port={port} dbname=postgres user=postgres\n\
             [pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {listen}\n\
             auth_type = trust\nauth_file = {}\npool_mode = transaction\n\
             default_pool_size = 2\nmax_client_conn = 200\nunix_socket_dir =\n\
             logfile = {}\n",
            d.join("userlist.txt").display(),
            d.join("pgbouncer.log").display()
        ),
    )
    .expect("pgbouncer.ini");
    let ini = d.join("pgbouncer.ini");
    let mut cmd = if is_root() {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(bin);
        c
    } else {
        Command::new(bin)
    };
    let child = cmd
        .arg(&ini)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn pgbouncer");
    // Ready when it accepts a connection.
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", listen)).is_err() {
        assert!(
            Instant::now() < deadline,
            "pgbouncer did not start listening"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    Bouncer {
        child,
        port: listen,
        _dir: dir,
    }
}

#[test]
fn the_engine_works_through_pgbouncer_in_transaction_mode() -> TestResult {
    let Some(bin) = pgbouncer_binary() else {
        skip(
            "AGENTSTORE_REQUIRE_PGBOUNCER",
            "the PgBouncer test",
            "there is no pgbouncer binary",
        );
        return Ok(());
    };
    let Some(server) = crate::postgres::server() else {
        return Ok(());
    };
    let config: postgres::Config = server.url().parse()?;
    let host = match config.get_hosts().first() {
        Some(postgres::config::Host::Tcp(h)) => h.clone(),
        _ => "127.0.0.1".to_string(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let bouncer = start(&bin, &host, port);
    let schema = format!("bounced_{}", std::process::id());
    let url = format!(
        "postgres://postgres@127.0.0.1:{}/postgres?schema={schema}",
        bouncer.port
    );
    // Four processes' worth of stores (each a pool of 4) over 2 server connections,
    // every part of the engine at once: schema creation, memory with cleanups, search,
    // context, the tool cache, the response cache with fuzzy lookups, leases, stats.
    std::thread::scope(|s| {
        for t in 0..4 {
            let url = url.clone();
            s.spawn(move || {
                let store = Store::connect(&url, StoreOptions::default()).expect("connect");
                let name = format!("a{t}");
                store.agent(&name).expect("agent");
                store
                    .set_memory_settings(
                        &name,
                        &MemorySettings::default()
                            .with_cleanup_interval(7)
                            .with_max_entries(20),
                    )
                    .expect("settings");
                let agent = store.existing_agent(&name).expect("agent");
                let memory = store.memory(&agent);
                let cache = store.response_cache(&agent);
                let tools = store.tool_cache(&agent);
                for i in 0..40 {
                    memory
                        .add(&format!("note {i} about tides and otters"), 0.5)
                        .expect("add");
                    memory
                        .add_many(&[("a pair of", 0.4), ("entries at once", 0.6)])
                        .expect("add many");
                    let message = format!("what is the tide at pier {i} today");
                    cache.put(&message, &format!("low at {i}")).expect("put");
                    let near = format!("what is the tide at pier {i} today please");
                    let hit = cache
                        .lookup_fuzzy(&near, agentstore::FuzzyOptions::default())
                        .expect("fuzzy");
                    assert_eq!(hit.map(|m| m.response), Some(format!("low at {i}")));
                    let params = serde_json::json!({ "pier": i });
                    tools
                        .put(
                            "tide",
                            &params,
                            &serde_json::json!(i),
                            Duration::from_secs(60),
                        )
                        .expect("tool put");
                    assert_eq!(
                        tools.get("tide", &params).expect("tool get"),
                        Some(serde_json::json!(i))
                    );
                }
                let hits = memory
                    .search("entries", &SearchOptions::default())
                    .expect("search");
                assert!(!hits.is_empty());
                memory.context(500).expect("context");
                memory.stats().expect("stats");
                let agent = store.existing_agent(&name).expect("agent");
                assert_eq!(agent.message_count, 120);
                assert!(agent.memory_entries <= 20, "{}", agent.memory_entries);
            });
        }
    });
    // The CLI, with its read-only `sql` (a SET LOCAL statement timeout) and `check`.
    let cli = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_agentstore"))
            .args(["--db", &url])
            .args(args)
            .output()
            .expect("run agentstore")
    };
    let out = cli(&["--json", "sql", "SELECT count(*) AS agents FROM agents"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"agents\":4"));
    let out = cli(&["check"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Nothing the engine set outlived its transaction on the shared server sessions.
    let mut c = postgres::Client::connect(
        &format!("postgres://postgres@127.0.0.1:{}/postgres", bouncer.port),
        NoTls,
    )?;
    // (The simple protocol: a named statement would not survive the pooler either.)
    let mut show = |setting: &str| -> String {
        c.simple_query(&format!("SHOW {setting}"))
            .expect("show")
            .iter()
            .find_map(|m| match m {
                postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
                _ => None,
            })
            .expect("a value")
    };
    for _ in 0..4 {
        assert_eq!(show("lock_timeout"), "0");
        let path = show("search_path");
        assert!(!path.contains(&schema), "{path}");
    }
    Ok(())
}
