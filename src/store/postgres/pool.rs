//! Connections: the driver's configuration from a URL and the environment libpq
//! users expect (`PGPASSWORD`, the password file, `PGUSER`, `PGHOST`, `PGPORT`), and
//! the pool's manager, which checks a connection that sat idle before handing it out.

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use postgres::config::{Host, SslMode};
use postgres::{Client, Config, NoTls};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::error::{Error, Result};
use crate::store::{PostgresUrl, TlsMode};

/// A connection idle for longer than this is checked with an empty query before use
/// (a server restart or a firewall may have closed it meanwhile); a busier one is
/// used as it is, and a failure on it is retried (reads) or reported (writes).
const CHECK_AFTER_IDLE: Duration = Duration::from_secs(2);

/// The driver's configuration for `url`: what the URL says, then the environment for
/// what it leaves out.
pub(super) fn config(url: &PostgresUrl, connect_timeout: Duration) -> Result<Config> {
    let mut config = Config::from_str(url.secret_url()).map_err(|e| {
        Error::invalid(format!(
            "{url} is not a PostgreSQL URL agentstore can use: {e}"
        ))
    })?;
    if config.get_hosts().is_empty() {
        match std::env::var("PGHOST") {
            Ok(host) if !host.is_empty() => {
                config.host(&host);
            }
            _ => {
                config.host("localhost");
            }
        }
    }
    if config.get_ports().is_empty()
        && let Some(port) = std::env::var("PGPORT").ok().and_then(|p| p.parse().ok())
    {
        config.port(port);
    }
    if config.get_user().is_none() {
        let user = std::env::var("PGUSER")
            .or_else(|_| std::env::var("USER"))
            .map_err(|_| {
                Error::invalid(format!(
                    "{url} names no user, and neither PGUSER nor USER is set"
                ))
            })?;
        config.user(&user);
    }
    if config.get_dbname().is_none()
        && let Ok(db) = std::env::var("PGDATABASE")
    {
        config.dbname(&db);
    }
    if config.get_password().is_none() {
        if let Ok(password) = std::env::var("PGPASSWORD") {
            config.password(password);
        } else if let Some(password) = password_from_file(&config) {
            config.password(password);
        }
    }
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(connect_timeout);
    }
    if config.get_application_name().is_none() {
        config.application_name("agentstore");
    }
    config.ssl_mode(match url.tls_mode() {
        TlsMode::Disable => SslMode::Disable,
        TlsMode::Prefer => SslMode::Prefer,
        TlsMode::Require | TlsMode::VerifyCa | TlsMode::VerifyFull => SslMode::Require,
    });
    // Detect a peer that vanished without closing the socket.
    config.keepalives(true);
    config.keepalives_idle(Duration::from_secs(30));
    Ok(config)
}

/// How connections are made: plain, or with TLS and the certificate check the URL's
/// `sslmode` asks for.
#[derive(Clone)]
pub(super) enum Connector {
    /// `sslmode=disable`.
    Plain,
    /// Every other mode (`prefer` falls back to plain when the server has no TLS).
    Tls(MakeRustlsConnect),
}

impl Connector {
    /// The connector for `url`.
    pub(super) fn for_url(url: &PostgresUrl) -> Result<Connector> {
        let mode = url.tls_mode();
        if mode == TlsMode::Disable {
            return Ok(Connector::Plain);
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let chain = || -> Result<Option<Arc<WebPkiServerVerifier>>> {
            WebPkiServerVerifier::builder_with_provider(trusted(url)?, provider.clone())
                .build()
                .map(Some)
                .map_err(|e| Error::invalid(format!("{url}: sslrootcert: {e}")))
        };
        let (chain, names) = match mode {
            TlsMode::VerifyFull => (chain()?, true),
            TlsMode::VerifyCa => (chain()?, false),
            // As libpq: `require` with a root certificate file checks against it.
            TlsMode::Require if url.root_cert().is_some() => (chain()?, false),
            _ => (None, false),
        };
        let verifier = Arc::new(Verifier {
            chain,
            names,
            provider: provider.clone(),
        });
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::invalid(format!("{url}: TLS: {e}")))?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        Ok(Connector::Tls(MakeRustlsConnect::new(config)))
    }

    /// A new connection with `config`.
    pub(super) fn connect(&self, config: &Config) -> std::result::Result<Client, postgres::Error> {
        match self {
            Connector::Plain => config.connect(NoTls),
            Connector::Tls(tls) => config.connect(tls.clone()),
        }
    }
}

/// The authorities a server's certificate may chain to: the URL's `sslrootcert`
/// (a PEM file), else the Mozilla roots.
fn trusted(url: &PostgresUrl) -> Result<Arc<RootCertStore>> {
    let mut roots = RootCertStore::empty();
    let Some(path) = url.root_cert() else {
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        return Ok(Arc::new(roots));
    };
    let bad = |e: &dyn std::fmt::Display| Error::invalid(format!("{url}: sslrootcert {path}: {e}"));
    for cert in CertificateDer::pem_file_iter(path).map_err(|e| bad(&e))? {
        roots.add(cert.map_err(|e| bad(&e))?).map_err(|e| bad(&e))?;
    }
    if roots.is_empty() {
        return Err(bad(&"no certificate in the file"));
    }
    Ok(Arc::new(roots))
}

/// The server's certificate check: none for `prefer` and `require` without a root
/// file (`chain` None: encrypted, the server not authenticated, as libpq), the chain
/// for `verify-ca` (`names` false), the chain and the host's name for `verify-full`.
/// The handshake's signatures are verified in every mode.
#[derive(Debug)]
struct Verifier {
    chain: Option<Arc<WebPkiServerVerifier>>,
    names: bool,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        let Some(chain) = &self.chain else {
            return Ok(ServerCertVerified::assertion());
        };
        match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if !self.names => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        rustls::crypto::verify_tls12_signature(message, cert, dss, algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        rustls::crypto::verify_tls13_signature(message, cert, dss, algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The password for `config` in the password file (`PGPASSFILE`, else
/// `~/.pgpass`): lines `host:port:database:user:password`, `*` matching anything,
/// `\` escaping `:` and `\`; the first matching line wins, as libpq reads it.
fn password_from_file(config: &Config) -> Option<String> {
    let path = match std::env::var_os("PGPASSFILE") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(std::env::var_os("HOME")?).join(".pgpass"),
    };
    let text = std::fs::read_to_string(path).ok()?;
    let host = match config.get_hosts().first()? {
        Host::Tcp(h) => h.clone(),
        #[cfg(unix)]
        Host::Unix(_) => "localhost".to_string(),
    };
    let port = config
        .get_ports()
        .first()
        .copied()
        .unwrap_or(5432)
        .to_string();
    let user = config.get_user()?;
    let db = config.get_dbname().unwrap_or(user);
    password_in(&text, [&host, &port, db, user])
}

/// The password of the first line of a password file matching `wanted`.
fn password_in(text: &str, wanted: [&str; 4]) -> Option<String> {
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let mut fields = Vec::with_capacity(5);
        let mut field = String::new();
        let mut chars = line.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => field.extend(chars.next()),
                ':' if fields.len() < 4 => fields.push(std::mem::take(&mut field)),
                c => field.push(c),
            }
        }
        fields.push(field);
        if fields.len() == 5
            && fields[..4]
                .iter()
                .zip(wanted)
                .all(|(f, w)| f == "*" || f == w)
        {
            return fields.pop();
        }
    }
    None
}

/// A pool error at open, as one line naming the server (password blanked).
pub(super) fn unreachable(url: &PostgresUrl, e: r2d2::Error) -> Error {
    Error::Pool(format!("cannot connect to the PostgreSQL server at {url}: {e}").into())
}

/// A failed first connection, as one line naming the server (password blanked) and
/// the driver's reason (which never holds the password).
pub(super) fn cannot_connect(url: &PostgresUrl, e: &postgres::Error) -> Error {
    let mut reason = e.to_string();
    if let Some(source) = std::error::Error::source(e) {
        let source = source.to_string();
        if !reason.contains(&source) {
            reason = format!("{reason}: {source}");
        }
    }
    Error::Pool(format!("cannot connect to the PostgreSQL server at {url}: {reason}").into())
}

/// A client and when it was last handed back.
pub(crate) struct Connection {
    client: Client,
    returned: Instant,
    /// The pool's generation when this connection was last known good.
    generation: u64,
    /// The statements prepared on this connection, when the store prepares them.
    statements: Option<super::prepared::Statements>,
}

impl Connection {
    /// The connection's prepared statements, for the length of one operation.
    pub(crate) fn take_statements(&mut self) -> Option<super::prepared::Statements> {
        self.statements.take()
    }

    /// Gives them back (the connection keeps them for its next operation).
    pub(crate) fn put_statements(&mut self, statements: Option<super::prepared::Statements>) {
        self.statements = statements;
    }

    /// The client.
    pub(crate) fn client(&mut self) -> &mut Client {
        self.returned = Instant::now();
        &mut self.client
    }
}

/// Makes, checks and discards clients for r2d2.
pub(crate) struct Manager {
    config: Config,
    /// Plain or TLS.
    connector: Connector,
    /// Whether connections keep prepared statements.
    prepare: bool,
    /// Bumped when a connection was found lost: every connection of an earlier
    /// generation is then checked before its next use, so a retry gets one that works
    /// (after a server restart, all of them were cut).
    generation: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// The connection made to check the address and credentials, handed to the pool
    /// as its first one (a connection costs a server process: ~5 ms of a fresh
    /// process's start).
    seed: std::sync::Mutex<Option<Client>>,
}

impl Manager {
    /// A manager whose first connection is `seed`, already made with `config`.
    pub(super) fn new(
        config: Config,
        connector: Connector,
        prepare: bool,
        seed: Client,
    ) -> Manager {
        Manager {
            config,
            connector,
            prepare,
            generation: Default::default(),
            seed: std::sync::Mutex::new(Some(seed)),
        }
    }

    /// The counter [`Manager::lost`] bumps, shared with the engine.
    pub(super) fn generation(&self) -> std::sync::Arc<std::sync::atomic::AtomicU64> {
        self.generation.clone()
    }
}

impl std::fmt::Debug for Manager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Manager")
            .field("config", &self.config)
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}

impl r2d2::ManageConnection for Manager {
    type Connection = Connection;
    type Error = postgres::Error;

    fn connect(&self) -> std::result::Result<Connection, postgres::Error> {
        let seed = self.seed.lock().ok().and_then(|mut s| s.take());
        let client = match seed {
            Some(client) if !client.is_closed() => client,
            _ => self.connector.connect(&self.config)?,
        };
        Ok(Connection {
            statements: self.prepare.then(Default::default),
            client,
            returned: Instant::now(),
            generation: self.generation.load(std::sync::atomic::Ordering::SeqCst),
        })
    }

    fn is_valid(&self, conn: &mut Connection) -> std::result::Result<(), postgres::Error> {
        let now = self.generation.load(std::sync::atomic::Ordering::SeqCst);
        if conn.returned.elapsed() < CHECK_AFTER_IDLE && conn.generation == now {
            return Ok(());
        }
        conn.client.simple_query("")?;
        conn.returned = Instant::now();
        conn.generation = now;
        Ok(())
    }

    fn has_broken(&self, conn: &mut Connection) -> bool {
        conn.client.is_closed()
    }
}

#[cfg(test)]
mod tests {
    use super::password_in;

    #[test]
    fn the_password_file_is_read_as_libpq_reads_it() {
        let file = "# comment\n\
                    otherhost:5432:*:bob:nope\n\
                    db.example:5432:agents:bob:p\\:ss\\\\w\n\
                    *:*:*:bob:fallback\n";
        assert_eq!(
            password_in(file, ["db.example", "5432", "agents", "bob"]).as_deref(),
            Some("p:ss\\w")
        );
        assert_eq!(
            password_in(file, ["elsewhere", "5433", "x", "bob"]).as_deref(),
            Some("fallback")
        );
        assert_eq!(password_in(file, ["elsewhere", "5433", "x", "alice"]), None);
    }
}
