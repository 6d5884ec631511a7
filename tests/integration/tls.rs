//! TLS to PostgreSQL (`sslmode`, `sslrootcert`): a cluster of its own that accepts
//! TCP connections only over TLS (`hostssl` in `pg_hba.conf`), with a server
//! certificate for `localhost` signed by a test authority the `openssl` command makes.
//! Every connection that works is therefore encrypted; what must fail fails with the
//! reason in one line.

use std::path::Path;
use std::process::Command;

use agentstore::{Store, StoreOptions};

use crate::common::{TestResult, skip};
use crate::postgres::Server;

/// Makes `name.key` and `name.crt` in `dir` with openssl: a self-signed authority
/// (`issuer` None) or a certificate for `localhost` signed by `issuer`.
fn certificate(dir: &Path, name: &str, issuer: Option<&str>) {
    let key = dir.join(format!("{name}.key"));
    let crt = dir.join(format!("{name}.crt"));
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let ok = match issuer {
        None => Command::new("openssl")
            .args(["req", "-x509"])
            .args(ec)
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&crt)
            .args([
                "-days",
                "2",
                "-subj",
                &format!("/CN=agentstore test {name}"),
            ])
            .output(),
        Some(ca) => {
            let csr = dir.join(format!("{name}.csr"));
            let ext = dir.join(format!("{name}.ext"));
            std::fs::write(
                &ext,
                "subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\n\
                 keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
            )
            .expect("extensions");
            let req = Command::new("openssl")
                .arg("req")
                .args(ec)
                .arg("-keyout")
                .arg(&key)
                .arg("-out")
                .arg(&csr)
                .args(["-subj", "/CN=localhost"])
                .output()
                .expect("openssl req");
            assert!(
                req.status.success(),
                "{}",
                String::from_utf8_lossy(&req.stderr)
            );
            Command::new("openssl")
                .args(["x509", "-req", "-days", "2", "-in"])
                .arg(&csr)
                .arg("-CA")
                .arg(dir.join(format!("{ca}.crt")))
                .arg("-CAkey")
                .arg(dir.join(format!("{ca}.key")))
                .args(["-set_serial", "2", "-extfile"])
                .arg(&ext)
                .arg("-out")
                .arg(&crt)
                .output()
        }
    }
    .expect("openssl");
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
}

fn openssl_missing() -> bool {
    Command::new("openssl").arg("version").output().is_err()
}

#[test]
fn tls_connections_check_the_server_as_sslmode_says() -> TestResult {
    if openssl_missing() {
        skip(
            "AGENTSTORE_REQUIRE_POSTGRES",
            "the TLS test",
            "there is no openssl command to make certificates",
        );
        return Ok(());
    }
    let certs = tempfile::tempdir()?;
    let c = certs.path();
    certificate(c, "ca", None);
    certificate(c, "other", None);
    certificate(c, "server", Some("ca"));
    let setup = |data: &Path| {
        for (from, to) in [("server.crt", "server.crt"), ("server.key", "server.key")] {
            std::fs::copy(c.join(from), data.join(to)).expect("copy");
        }
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            data.join("server.key"),
            std::fs::Permissions::from_mode(0o600),
        )
        .expect("chmod");
        std::fs::write(
            data.join("pg_hba.conf"),
            "local all all trust\nhostssl all all 127.0.0.1/32 trust\n",
        )
        .expect("pg_hba.conf");
        "-c ssl=on".to_string()
    };
    let server = match Server::start_cluster_with(&setup) {
        Ok(server) => server,
        Err(why) => {
            skip("AGENTSTORE_REQUIRE_POSTGRES", "the TLS test", &why);
            return Ok(());
        }
    };
    let port = server
        .url()
        .rsplit(':')
        .next()
        .and_then(|p| p.split('/').next())
        .expect("a port")
        .to_string();
    let ca = c.join("ca.crt");
    let other = c.join("other.crt");
    let (ca, other) = (ca.to_str().unwrap(), other.to_str().unwrap());
    let url = |host: &str, params: &str| {
        format!("postgres://postgres@{host}:{port}/postgres?schema=tls&{params}")
    };
    let open = |u: &str| Store::connect(u, StoreOptions::default()).map(|_| ());
    // The authority and the name check out: connected (and so encrypted).
    let full = url(
        "localhost",
        &format!("sslmode=verify-full&sslrootcert={ca}"),
    );
    let store = Store::connect(&full, StoreOptions::default())?;
    let agent = store.agent("bot")?;
    store.memory(&agent).add("over TLS", 0.5)?;
    assert_eq!(store.existing_agent("bot")?.memory_entries, 1);
    drop(store);
    // The certificate names localhost, not 127.0.0.1: verify-full refuses, verify-ca
    // (the chain only) connects.
    let err = open(&url(
        "127.0.0.1",
        &format!("sslmode=verify-full&sslrootcert={ca}"),
    ))
    .unwrap_err()
    .to_string();
    assert!(err.contains("certificate"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    open(&url(
        "127.0.0.1",
        &format!("sslmode=verify-ca&sslrootcert={ca}"),
    ))?;
    // Another authority: refused, by verify-ca and by require with a root file (libpq's
    // rule); require alone encrypts without checking; so does the default, prefer.
    for mode in ["verify-ca", "require"] {
        let err = open(&url(
            "127.0.0.1",
            &format!("sslmode={mode}&sslrootcert={other}"),
        ))
        .unwrap_err()
        .to_string();
        assert!(err.contains("certificate"), "{mode}: {err}");
    }
    open(&url("127.0.0.1", "sslmode=require"))?;
    open(&url("127.0.0.1", "sslmode=prefer"))?;
    open(&format!(
        "postgres://postgres@127.0.0.1:{port}/postgres?schema=tls"
    ))?;
    // Without TLS the server's hostssl rule turns us away, and says why.
    let err = open(&url("127.0.0.1", "sslmode=disable"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("no encryption") || err.contains("pg_hba"),
        "{err}"
    );
    // A root file that is missing or holds no certificate: the CLI says so, exit 2.
    for bad in [c.join("missing.crt"), c.join("server.ext")] {
        let out = Command::new(env!("CARGO_BIN_EXE_agentstore"))
            .args([
                "--db",
                &url(
                    "localhost",
                    &format!("sslmode=verify-full&sslrootcert={}", bad.display()),
                ),
                "agents",
                "list",
            ])
            .output()?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains("sslrootcert"), "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
    }
    Ok(())
}
