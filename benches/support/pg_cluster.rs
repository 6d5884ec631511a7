//! A throwaway PostgreSQL cluster for the tests and the benchmarks: `initdb` and
//! `pg_ctl` from the machine's own binaries (`pg_config --bindir`; as the `postgres`
//! user when run as root), a data directory in a temp dir, a free loopback port,
//! `fsync=off`; stopped when dropped. Or the server a URL names (not stopped).
//! Included by `tests/integration/postgres.rs` and `benches/workloads/postgres.rs`.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A PostgreSQL server: a cluster of its own, stopped on drop, or one given by URL.
pub struct Server {
    url: String,
    cluster: Option<(tempfile::TempDir, PathBuf, PathBuf)>,
    /// The server's `-o` options, for a restart.
    options: String,
}

fn bindir() -> Option<PathBuf> {
    let out = Command::new("pg_config").arg("--bindir").output().ok()?;
    let dir = PathBuf::from(String::from_utf8(out.stdout).ok()?.trim());
    dir.join("initdb").exists().then_some(dir)
}

/// Whether this process runs as root (server binaries then run as `postgres`).
pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Runs a server binary, as `postgres` when we are root (PostgreSQL refuses root).
fn run(bin: &Path, args: &[&str]) -> std::io::Result<std::process::Output> {
    if is_root() {
        Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(bin)
            .args(args)
            .output()
    } else {
        Command::new(bin).args(args).output()
    }
}

impl Server {
    /// The server at `url` (never stopped by this).
    pub fn at(url: String) -> Server {
        Server {
            url,
            cluster: None,
            options: String::new(),
        }
    }

    /// A cluster of its own, or why none can be started here.
    pub fn start_cluster() -> Result<Server, String> {
        Server::start_cluster_with(&|_| String::new())
    }

    /// A cluster of its own, `setup` run on its data directory after `initdb` (it may
    /// write files there: they are given to the server's user) and returning more
    /// `-c` options for the server.
    pub fn start_cluster_with(setup: &dyn Fn(&Path) -> String) -> Result<Server, String> {
        let Some(bin) = bindir() else {
            return Err("no PostgreSQL server binaries (pg_config --bindir has no initdb)".into());
        };
        let tmp = tempfile::tempdir().expect("tempdir");
        let data = tmp.path().join("data");
        std::fs::create_dir(&data).expect("data dir");
        if is_root() {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755))
                .expect("chmod");
            let status = Command::new("chown")
                .args(["postgres:postgres"])
                .arg(&data)
                .status()
                .expect("chown");
            assert!(status.success(), "chown of the data dir failed");
        }
        let d = data.to_str().expect("utf-8 path");
        let out = run(
            &bin.join("initdb"),
            &[
                "-D",
                d,
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
                "-E",
                "UTF8",
            ],
        )
        .expect("initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let extra = setup(&data);
        if is_root() {
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&data)
                .status()
                .expect("chown");
            assert!(status.success(), "chown of the data dir failed");
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let options = format!(
            "-c port={port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={d} -c fsync=off {extra}"
        );
        let log = data.join("server.log");
        let out = run(
            &bin.join("pg_ctl"),
            &[
                "-D",
                d,
                "-o",
                &options,
                "-l",
                log.to_str().unwrap(),
                "-w",
                "start",
            ],
        )
        .expect("pg_ctl start");
        assert!(
            out.status.success(),
            "pg_ctl start failed: {} {}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        Ok(Server {
            url: format!("postgres://postgres@127.0.0.1:{port}/postgres"),
            cluster: Some((tmp, data, bin)),
            options,
        })
    }

    /// Restarts the server (`pg_ctl restart -m fast`: every session is cut); false for
    /// a server the tests did not start.
    pub fn restart(&self) -> bool {
        let Some((_, data, bin)) = &self.cluster else {
            return false;
        };
        let d = data.to_str().expect("utf-8 path");
        let log = data.join("server.log");
        let out = run(
            &bin.join("pg_ctl"),
            &[
                "-D",
                d,
                "-o",
                &self.options,
                "-l",
                log.to_str().unwrap(),
                "-m",
                "fast",
                "-w",
                "restart",
            ],
        )
        .expect("pg_ctl restart");
        assert!(
            out.status.success(),
            "pg_ctl restart failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        true
    }

    /// The server's URL (a database the tests may use freely).
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some((_tmp, data, bin)) = &self.cluster {
            let _ = run(
                &bin.join("pg_ctl"),
                &[
                    "-D",
                    data.to_str().unwrap(),
                    "-m",
                    "immediate",
                    "-w",
                    "stop",
                ],
            );
        }
    }
}
