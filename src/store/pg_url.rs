//! A PostgreSQL location: `postgres://user[:password]@host[:port]/dbname[?params]`, with
//! agentstore's own `schema` parameter taken out, and shown everywhere with the
//! password blanked.

use crate::error::{Error, Result};

/// A `postgres://` (or `postgresql://`) URL. Its `Display` and `Debug` blank the
/// password, so it can be printed in errors and logs.
#[derive(Clone, PartialEq, Eq)]
pub struct PostgresUrl {
    /// The URL as the driver reads it (without `schema`, `sslrootcert`, and with a
    /// `verify-*` sslmode as `require`), password included.
    url: String,
    /// The URL as given, password blanked.
    shown: String,
    /// The schema named by `?schema=`, if any.
    schema: Option<String>,
    /// `sslmode`.
    tls: TlsMode,
    /// `sslrootcert`: the PEM file of the certificate authorities the server's
    /// certificate must chain to.
    root_cert: Option<String>,
    /// `prepare=true`: connections keep prepared statements.
    prepare: bool,
}

/// How a connection is encrypted and the server checked: the URL's `sslmode`, with
/// libpq's meanings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TlsMode {
    /// Plain TCP (or a Unix socket), never TLS.
    Disable,
    /// TLS when the server offers it, without checking its certificate; else plain
    /// (the default, as libpq's).
    #[default]
    Prefer,
    /// TLS or no connection; the certificate is checked against `sslrootcert` when one
    /// is given (as libpq does), else not checked.
    Require,
    /// TLS, and the server's certificate must chain to a trusted authority
    /// (`sslrootcert`, else the Mozilla roots); its name is not checked.
    VerifyCa,
    /// As `VerifyCa`, and the certificate must name the host connected to.
    VerifyFull,
}

/// The longest schema name PostgreSQL keeps (NAMEDATALEN - 1).
const MAX_SCHEMA_BYTES: usize = 63;

impl PostgresUrl {
    /// Reads a URL; `schema=NAME` among its parameters selects the schema that holds
    /// agentstore's tables (several deployments in one database), instead of the
    /// connection's `search_path`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a URL without a host part or with a bad schema name.
    pub fn parse(text: &str) -> Result<PostgresUrl> {
        let rest = text
            .strip_prefix("postgres://")
            .or_else(|| text.strip_prefix("postgresql://"))
            .ok_or_else(|| Error::invalid("a PostgreSQL URL starts with postgres://"))?;
        let (base, query) = match rest.split_once('?') {
            Some((base, query)) => (base, Some(query)),
            None => (rest, None),
        };
        let mut schema = None;
        let mut tls = TlsMode::default();
        let mut root_cert = None;
        let mut prepare = false;
        let mut kept = Vec::new();
        let mut shown = Vec::new();
        for pair in query.into_iter().flat_map(|q| q.split('&')) {
            match pair.split_once('=') {
                // A schema name is a plain identifier: nothing in it is ever encoded.
                Some(("schema", value)) => {
                    schema = Some(check_schema(value)?);
                    continue;
                }
                Some(("sslmode", value)) => {
                    tls = match value {
                        "disable" => TlsMode::Disable,
                        "prefer" => TlsMode::Prefer,
                        "require" => TlsMode::Require,
                        "verify-ca" => TlsMode::VerifyCa,
                        "verify-full" => TlsMode::VerifyFull,
                        other => {
                            return Err(Error::invalid(format!(
                                "sslmode={other} is not one agentstore knows: disable, \
                                 prefer, require, verify-ca or verify-full"
                            )));
                        }
                    };
                }
                Some(("sslrootcert", value)) => root_cert = Some(value.to_string()),
                Some(("prepare", value)) => {
                    prepare = match value {
                        "true" | "on" | "1" => true,
                        "false" | "off" | "0" => false,
                        other => {
                            return Err(Error::invalid(format!(
                                "prepare={other}: say true or false"
                            )));
                        }
                    };
                }
                _ if pair.is_empty() => continue,
                _ => kept.push(pair),
            }
            shown.push(pair);
        }
        let mut url = format!("postgres://{base}");
        if !kept.is_empty() {
            url.push('?');
            url.push_str(&kept.join("&"));
        }
        let mut given = format!("postgres://{base}");
        if !shown.is_empty() {
            given.push('?');
            given.push_str(&shown.join("&"));
        }
        let mut shown = redact(&given);
        if let Some(schema) = &schema {
            shown.push(if shown.contains('?') { '&' } else { '?' });
            shown.push_str("schema=");
            shown.push_str(schema);
        }
        Ok(PostgresUrl {
            url,
            shown,
            schema,
            tls,
            root_cert,
            prepare,
        })
    }

    /// The URL's `prepare=true`: connections keep prepared statements (for a direct
    /// connection; see `PostgresOptions::prepared_statements`).
    pub fn prepare(&self) -> bool {
        self.prepare
    }

    /// The URL's `sslmode` (`prefer` when it names none).
    pub fn tls_mode(&self) -> TlsMode {
        self.tls
    }

    /// The URL's `sslrootcert`, if any.
    pub fn root_cert(&self) -> Option<&str> {
        self.root_cert.as_deref()
    }

    /// The URL the driver connects with (password included: never print it).
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub(crate) fn secret_url(&self) -> &str {
        &self.url
    }

    /// The schema named by `?schema=`, if any.
    pub fn schema(&self) -> Option<&str> {
        self.schema.as_deref()
    }

    /// The URL with the password (in the user part or a `password` parameter) blanked.
    pub fn redacted(&self) -> String {
        self.shown.clone()
    }
}

impl std::fmt::Display for PostgresUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl std::fmt::Debug for PostgresUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PostgresUrl({})", self.redacted())
    }
}

/// A schema name agentstore accepts: a plain lower-case identifier, so it needs no
/// quoting anywhere and cannot smuggle SQL.
fn check_schema(name: &str) -> Result<String> {
    let ok = !name.is_empty()
        && name.len() <= MAX_SCHEMA_BYTES
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && !name.starts_with("pg_");
    if ok {
        Ok(name.to_string())
    } else {
        Err(Error::invalid(format!(
            "schema {name:?} is not a schema name agentstore uses: 1 to 63 lower-case \
             letters, digits and underscores, not starting with a digit or pg_"
        )))
    }
}

/// `url` with the password blanked: `user:***@` and `password=***`.
fn redact(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let (base, query) = match rest.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (rest, None),
    };
    let base = match base.rsplit_once('@') {
        Some((user, host)) => match user.split_once(':') {
            Some((name, _)) => format!("{name}:***@{host}"),
            None => format!("{user}@{host}"),
        },
        None => base.to_string(),
    };
    let mut out = format!("{scheme}://{base}");
    if let Some(query) = query {
        let pairs: Vec<String> = query
            .split('&')
            .map(|p| match p.split_once('=') {
                Some(("password", _)) => "password=***".to_string(),
                _ => p.to_string(),
            })
            .collect();
        out.push('?');
        out.push_str(&pairs.join("&"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_blanked_and_the_schema_taken_out() {
        let u = PostgresUrl::parse("postgres://bob:s3cret@db.example:5433/agents?schema=team_a")
            .unwrap();
        assert_eq!(u.schema(), Some("team_a"));
        assert_eq!(
            u.secret_url(),
            "postgres://bob:s3cret@db.example:5433/agents"
        );
        assert_eq!(
            u.to_string(),
            "postgres://bob:***@db.example:5433/agents?schema=team_a"
        );
        assert!(!format!("{u:?}").contains("s3cret"));
        let u = PostgresUrl::parse(
            "postgresql://bob@localhost/agents?password=hunter2&sslmode=disable",
        )
        .unwrap();
        assert_eq!(u.schema(), None);
        assert_eq!(
            u.to_string(),
            "postgres://bob@localhost/agents?password=***&sslmode=disable"
        );
        assert!(!format!("{u:?}").contains("hunter2"));
        // A password holding '@' or ':' is still blanked whole.
        let u = PostgresUrl::parse("postgres://bob:p%40ss:w@h/db").unwrap();
        assert!(!u.to_string().contains("ss:w"), "{u}");
    }

    #[test]
    fn tls_settings_are_read_and_kept_from_the_driver() {
        let u = PostgresUrl::parse(
            "postgres://bob:pw@db.example/agents?sslmode=verify-full&sslrootcert=/etc/ca.pem&schema=a",
        )
        .unwrap();
        assert_eq!(u.tls_mode(), TlsMode::VerifyFull);
        assert_eq!(u.root_cert(), Some("/etc/ca.pem"));
        assert_eq!(u.secret_url(), "postgres://bob:pw@db.example/agents");
        assert_eq!(
            u.to_string(),
            "postgres://bob:***@db.example/agents?sslmode=verify-full&sslrootcert=/etc/ca.pem&schema=a"
        );
        assert_eq!(
            PostgresUrl::parse("postgres://h/db").unwrap().tls_mode(),
            TlsMode::Prefer
        );
        let err = PostgresUrl::parse("postgres://h/db?sslmode=allow-ish").unwrap_err();
        assert!(err.to_string().contains("verify-full"), "{err}");
    }

    #[test]
    fn schema_names_are_plain_identifiers() {
        for bad in [
            "",
            "Team",
            "a-b",
            "a;drop",
            "1x",
            "pg_catalog",
            &"x".repeat(64),
        ] {
            let url = format!("postgres://h/db?schema={bad}");
            assert!(PostgresUrl::parse(&url).is_err(), "{bad}");
        }
        assert!(PostgresUrl::parse("postgres://h/db?schema=agentstore_2").is_ok());
        assert!(PostgresUrl::parse("mysql://h/db").is_err());
    }
}
