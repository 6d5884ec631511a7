//! `agentstore sql` on PostgreSQL: one statement, run in a read-only transaction with a
//! statement timeout, and refused before it reaches the server when it is something a
//! read-only transaction still allows that changes or reaches beyond the database:
//! `COPY` (to a file or program, or from one), `SET`/`RESET`/`set_config`, `DO`,
//! `CALL`, `LISTEN`/`NOTIFY`, large-object and server-file functions, `dblink`,
//! advisory locks, signalling other backends, `PREPARE TRANSACTION`, functions that run
//! SQL text of their own, and more than one statement. A server-side function that
//! does such things under another name is beyond what a text check can see: the
//! README tells operators to give `sql` a read-only role as well.

use std::time::Duration;

use postgres::fallible_iterator::FallibleIterator;
use postgres::types::{FromSql, Type};
use serde_json::Value;

use super::Postgres;
use crate::error::{Error, Result};
use crate::store::QuerySink;

/// What a statement may start with.
const READ_STARTS: &[&str] = &["select", "with", "values", "table", "explain", "show"];

/// Functions refused wherever they appear, by name (schema-qualified or not); a
/// trailing `*` is a prefix.
const REFUSED_FUNCTIONS: &[(&str, &str)] = &[
    ("set_config", "set_config changes settings"),
    (
        "lo_*",
        "large-object functions read and write server files and objects",
    ),
    ("pg_read_file", "pg_read_file reads server files"),
    (
        "pg_read_binary_file",
        "pg_read_binary_file reads server files",
    ),
    ("pg_ls_*", "pg_ls_* lists server directories"),
    ("pg_stat_file", "pg_stat_file reads server files"),
    ("pg_file_*", "pg_file_* writes server files"),
    ("dblink*", "dblink reaches other databases"),
    // agentstore's own write functions (schema-postgres-functions.sql): they would
    // fail in the read-only transaction anyway; refused first, with a clear reason.
    ("memory_add_fast", "memory_add_fast writes memory entries"),
    ("tool_cache_put", "tool_cache_put writes the tool cache"),
    (
        "response_cache_put",
        "response_cache_put writes the response cache",
    ),
    ("lease_take", "lease_take writes leases"),
    ("lease_renew", "lease_renew writes leases"),
    ("lease_release", "lease_release writes leases"),
    ("pg_advisory*", "advisory locks outlive the query"),
    ("pg_try_advisory*", "advisory locks outlive the query"),
    (
        "pg_terminate_backend",
        "pg_terminate_backend ends other sessions",
    ),
    (
        "pg_cancel_backend",
        "pg_cancel_backend cancels other sessions' queries",
    ),
    (
        "pg_reload_conf",
        "pg_reload_conf reloads the server's configuration",
    ),
    ("pg_rotate_logfile", "pg_rotate_logfile acts on the server"),
    ("pg_logfile_rotate", "pg_logfile_rotate acts on the server"),
    ("pg_switch_wal", "pg_switch_wal acts on the server"),
    (
        "pg_create_restore_point",
        "pg_create_restore_point acts on the server",
    ),
    ("pg_promote", "pg_promote acts on the server"),
    ("pg_notify", "pg_notify sends notifications"),
    ("query_to_xml*", "query_to_xml runs SQL text of its own"),
    ("cursor_to_xml*", "cursor_to_xml runs SQL text of its own"),
    ("pg_import_system_collations", "it changes the catalog"),
    ("txid_current", "it assigns a transaction id"),
    ("pg_current_xact_id", "it assigns a transaction id"),
];

/// Leading keywords refused with their reason (anything else not in READ_STARTS is
/// refused as "not a query").
const REFUSED_STARTS: &[(&str, &str)] = &[
    ("copy", "COPY reads or writes files and programs"),
    ("set", "SET changes session settings"),
    ("reset", "RESET changes session settings"),
    ("do", "DO runs procedural code"),
    ("call", "CALL runs a procedure"),
    ("listen", "LISTEN subscribes the session"),
    ("unlisten", "UNLISTEN changes the session"),
    ("notify", "NOTIFY sends notifications"),
    (
        "prepare",
        "PREPARE (and PREPARE TRANSACTION) outlive the query",
    ),
    ("execute", "EXECUTE runs a prepared statement"),
    ("deallocate", "DEALLOCATE changes the session"),
    ("discard", "DISCARD changes the session"),
    ("load", "LOAD loads a library into the server"),
    ("lock", "LOCK takes locks"),
    ("begin", "transaction control is agentstore's"),
    ("start", "transaction control is agentstore's"),
    ("commit", "transaction control is agentstore's"),
    ("end", "transaction control is agentstore's"),
    ("rollback", "transaction control is agentstore's"),
    ("abort", "transaction control is agentstore's"),
    ("savepoint", "transaction control is agentstore's"),
    ("release", "transaction control is agentstore's"),
    ("checkpoint", "CHECKPOINT acts on the server"),
    ("vacuum", "VACUUM writes"),
    ("analyze", "ANALYZE writes statistics"),
    ("cluster", "CLUSTER rewrites tables"),
    ("reindex", "REINDEX rewrites indexes"),
    ("refresh", "REFRESH MATERIALIZED VIEW writes"),
    ("fetch", "cursors outlive the query"),
    ("move", "cursors outlive the query"),
    ("close", "cursors outlive the query"),
    ("declare", "cursors outlive the query"),
];

/// A token of the statement: words (identifiers and keywords, lower-cased, quotes
/// removed), and the punctuation that matters here.
#[derive(Debug, PartialEq)]
enum Token {
    Word(String),
    Open,
    Dot,
    Semicolon,
    Other,
}

/// The statement's tokens, outside string literals, dollar-quoted bodies and comments.
fn tokens(sql: &str) -> std::result::Result<Vec<Token>, String> {
    let b = sql.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_whitespace() {
            i += 1;
        } else if c == b'-' && b.get(i + 1) == Some(&b'-') {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if c == b'/' && b.get(i + 1) == Some(&b'*') {
            // Block comments nest in PostgreSQL.
            let mut depth = 0;
            loop {
                if i >= b.len() {
                    return Err("an unterminated /* comment".into());
                }
                if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
                    depth += 1;
                    i += 2;
                } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else if c == b'\'' {
            // A string; '' inside is a quote. E'' strings may escape with backslash.
            let escapes = i > 0 && matches!(b[i - 1], b'e' | b'E');
            i += 1;
            loop {
                match b.get(i) {
                    None => return Err("an unterminated string".into()),
                    Some(b'\\') if escapes => i += 2,
                    Some(b'\'') if b.get(i + 1) == Some(&b'\'') => i += 2,
                    Some(b'\'') => {
                        i += 1;
                        break;
                    }
                    Some(_) => i += 1,
                }
            }
            out.push(Token::Other);
        } else if c == b'"' {
            let mut name = String::new();
            i += 1;
            loop {
                match b.get(i) {
                    None => return Err("an unterminated quoted identifier".into()),
                    Some(b'"') if b.get(i + 1) == Some(&b'"') => {
                        name.push('"');
                        i += 2;
                    }
                    Some(b'"') => {
                        i += 1;
                        break;
                    }
                    Some(_) => {
                        let ch = sql[i..].chars().next().unwrap_or('\u{fffd}');
                        name.push(ch);
                        i += ch.len_utf8();
                    }
                }
            }
            // A quoted identifier keeps its case: "Lo_Import" is not lo_import, so it
            // is compared as it is.
            out.push(Token::Word(name));
        } else if c == b'$' {
            // $1 (a parameter) or a dollar-quoted body $tag$...$tag$.
            let tag_end = b[i + 1..]
                .iter()
                .position(|&x| !(x.is_ascii_alphanumeric() || x == b'_'))
                .map(|p| i + 1 + p);
            match tag_end {
                Some(e) if b[e] == b'$' && !b[i + 1..e].first().is_some_and(u8::is_ascii_digit) => {
                    let tag = &sql[i..=e];
                    let body = e + 1;
                    match sql[body..].find(tag) {
                        Some(end) => i = body + end + tag.len(),
                        None => return Err("an unterminated dollar-quoted string".into()),
                    }
                    out.push(Token::Other);
                }
                _ => {
                    i += 1;
                    out.push(Token::Other);
                }
            }
        } else if c.is_ascii_alphabetic() || c == b'_' || c >= 0x80 {
            let start = i;
            while i < b.len()
                && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b'$' || b[i] >= 0x80)
            {
                i += 1;
            }
            out.push(Token::Word(sql[start..i].to_lowercase()));
        } else {
            out.push(match c {
                b'(' => Token::Open,
                b'.' => Token::Dot,
                b';' => Token::Semicolon,
                _ => Token::Other,
            });
            i += 1;
        }
    }
    Ok(out)
}

fn refused(why: &str) -> Error {
    Error::NotReadOnly(why.to_string())
}

/// Whether `name` matches a pattern of [`REFUSED_FUNCTIONS`].
fn matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => name == pattern,
    }
}

/// Refuses what a read-only transaction would still allow (see the module docs).
pub(super) fn vet(sql: &str) -> Result<()> {
    let tokens = tokens(sql).map_err(|e| refused(&format!("the statement has {e}")))?;
    // One statement: nothing but semicolons after the first one.
    if let Some(at) = tokens.iter().position(|t| *t == Token::Semicolon)
        && tokens[at..].iter().any(|t| *t != Token::Semicolon)
    {
        return Err(refused("one statement at a time"));
    }
    let first = match tokens.first() {
        Some(Token::Word(w)) => w.as_str(),
        Some(_) if tokens.first() == Some(&Token::Open) => "select",
        _ => return Err(refused("the query is empty")),
    };
    if let Some((_, why)) = REFUSED_STARTS.iter().find(|(k, _)| *k == first) {
        return Err(refused(&format!(
            "{why}; `sql` runs read-only queries only"
        )));
    }
    if !READ_STARTS.contains(&first) {
        return Err(refused(&format!(
            "{} is not a query; `sql` runs read-only queries only (SELECT, WITH, VALUES, TABLE, EXPLAIN, SHOW)",
            first.to_uppercase()
        )));
    }
    // EXPLAIN ANALYZE runs the statement it explains: refused, like the statement
    // would be if it were refused; plain EXPLAIN only plans.
    if first == "explain"
        && tokens
            .iter()
            .any(|t| matches!(t, Token::Word(w) if w == "analyze" || w == "analyse"))
    {
        return Err(refused("EXPLAIN ANALYZE runs the statement; use EXPLAIN"));
    }
    for (k, t) in tokens.iter().enumerate() {
        let Token::Word(name) = t else { continue };
        if tokens.get(k + 1) != Some(&Token::Open) {
            continue;
        }
        if let Some((_, why)) = REFUSED_FUNCTIONS.iter().find(|(p, _)| matches(p, name)) {
            return Err(refused(&format!("{name}(): {why}")));
        }
    }
    Ok(())
}

/// A column value as JSON: numbers, booleans and text as themselves (a numeric as a
/// number when it is whole and fits in 64 bits, else as exact decimal text), NULL as null,
/// bytea as `X'..'`, and anything else in PostgreSQL's text form where it is text on
/// the wire, else as its type name and hex.
struct Any(Value);

impl<'a> FromSql<'a> for Any {
    fn from_sql(
        ty: &Type,
        raw: &'a [u8],
    ) -> std::result::Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        let v = match *ty {
            Type::INT8 => Value::from(i64::from_sql(ty, raw)?),
            Type::INT4 => Value::from(i32::from_sql(ty, raw)?),
            Type::INT2 => Value::from(i16::from_sql(ty, raw)?),
            Type::OID => Value::from(u32::from_sql(ty, raw)?),
            Type::FLOAT8 => Value::from(f64::from_sql(ty, raw)?),
            Type::FLOAT4 => Value::from(f32::from_sql(ty, raw)?),
            Type::BOOL => Value::from(bool::from_sql(ty, raw)?),
            Type::BYTEA => Value::from(format!(
                "X'{}'",
                crate::store::tool_cache::hex(raw).to_uppercase()
            )),
            // `sum` of a bigint is a numeric: a whole one that fits is the number it
            // is on SQLite; any other stays exact, as decimal text.
            Type::NUMERIC => {
                let text = numeric_text(raw)?;
                match text.parse::<i64>() {
                    Ok(n) => Value::from(n),
                    Err(_) => Value::from(text),
                }
            }
            // Microseconds since 2000-01-01 UTC.
            Type::TIMESTAMPTZ | Type::TIMESTAMP => Value::from(crate::clock::to_rfc3339(
                i64::from_sql(&Type::INT8, raw)?.saturating_add(946_684_800_000_000),
            )),
            Type::JSONB => {
                Value::from(String::from_utf8_lossy(raw.get(1..).unwrap_or_default()).into_owned())
            }
            _ if <&str as FromSql>::accepts(ty) || *ty == Type::JSON || *ty == Type::CHAR => {
                Value::from(String::from_utf8_lossy(raw).into_owned())
            }
            _ => Value::from(format!(
                "({} {})",
                ty.name(),
                crate::store::tool_cache::hex(raw)
            )),
        };
        Ok(Any(v))
    }

    fn from_sql_null(
        _: &Type,
    ) -> std::result::Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Any(Value::Null))
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

/// PostgreSQL's binary NUMERIC (digits in base 10,000) as decimal text.
fn numeric_text(
    raw: &[u8],
) -> std::result::Result<String, Box<dyn std::error::Error + Sync + Send>> {
    let word = |i: usize| -> std::result::Result<u16, Box<dyn std::error::Error + Sync + Send>> {
        Ok(u16::from_be_bytes(
            raw.get(i..i + 2).ok_or("a short numeric")?.try_into()?,
        ))
    };
    let ndigits = word(0)? as usize;
    let weight = word(2)? as i16 as i32;
    let sign = word(4)?;
    let dscale = word(6)? as usize;
    match sign {
        0xC000 => return Ok("NaN".into()),
        0xD000 => return Ok("Infinity".into()),
        0xF000 => return Ok("-Infinity".into()),
        _ => {}
    }
    let digits: Vec<u16> = (0..ndigits)
        .map(|k| word(8 + 2 * k))
        .collect::<std::result::Result<_, _>>()?;
    let at = |k: i32| -> u16 {
        usize::try_from(k)
            .ok()
            .and_then(|k| digits.get(k).copied())
            .unwrap_or(0)
    };
    let mut int = String::new();
    for k in 0..=weight {
        if int.is_empty() {
            int.push_str(&at(k).to_string());
        } else {
            int.push_str(&format!("{:04}", at(k)));
        }
    }
    if int.is_empty() {
        int.push('0');
    }
    let mut frac = String::new();
    let mut k = weight + 1;
    while frac.len() < dscale {
        frac.push_str(&format!("{:04}", at(k)));
        k += 1;
    }
    frac.truncate(dscale);
    let sign = if sign == 0x4000 { "-" } else { "" };
    Ok(if frac.is_empty() {
        format!("{sign}{int}")
    } else {
        format!("{sign}{int}.{frac}")
    })
}

impl Postgres {
    /// Runs one vetted statement read-only, handing its columns then each row to
    /// `sink`; the number of rows.
    pub(super) fn query_sandboxed(
        &self,
        sql: &str,
        timeout: Duration,
        sink: &mut dyn QuerySink,
    ) -> Result<u64> {
        vet(sql)?;
        let ms = timeout.as_millis().clamp(1, i32::MAX as u128);
        let begin = format!(
            "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY; SET LOCAL statement_timeout = {ms}"
        );
        let io = |e: std::io::Error| Error::Io {
            context: "write the rows".into(),
            source: e,
        };
        self.transaction(&begin, &mut |c| {
            // Prepared (and closed when dropped) inside this transaction, for the
            // column names even of an empty result.
            let statement = c
                .prepare_typed(sql, &[])
                .map_err(|e| timed_out(e, sql, timeout))?;
            let names: Vec<String> = statement
                .columns()
                .iter()
                .map(|c| c.name().to_string())
                .collect();
            sink.columns(&names).map_err(io)?;
            let mut it = c
                .query_raw(&statement, std::iter::empty::<i64>())
                .map_err(|e| timed_out(e, sql, timeout))?;
            let mut n = 0u64;
            while let Some(r) = it.next().map_err(|e| timed_out(e, sql, timeout))? {
                let values = (0..r.len())
                    .map(|i| r.try_get::<_, Any>(i).map(|a| a.0))
                    .collect::<std::result::Result<Vec<_>, _>>()
                    .map_err(|e| super::wrap(e, sql))?;
                sink.row(values).map_err(io)?;
                n += 1;
            }
            Ok(n)
        })
    }
}

/// A statement timeout as the store's timeout error; anything else as the query's
/// own error (refusals by the read-only transaction say so).
fn timed_out(e: postgres::Error, sql: &str, timeout: Duration) -> Error {
    if e.code() == Some(&postgres::error::SqlState::QUERY_CANCELED) {
        return Error::QueryTimeout(timeout);
    }
    if e.code() == Some(&postgres::error::SqlState::READ_ONLY_SQL_TRANSACTION) {
        let why = e
            .as_db_error()
            .map_or_else(|| e.to_string(), |d| d.message().to_string());
        return Error::NotReadOnly(why);
    }
    super::wrap(e, sql)
}

#[cfg(test)]
mod tests {
    use super::{numeric_text, vet};

    #[test]
    fn only_single_read_only_statements_pass() {
        for ok in [
            "SELECT 1",
            "select * from memory_stats;",
            "WITH x AS (SELECT 1) SELECT * FROM x",
            "SELECT 'COPY x TO ''/tmp/f''; SET a = 1' AS text",
            "SELECT $$ DO $x$ $$",
            "EXPLAIN SELECT 1",
            "(SELECT 1)",
            "SELECT lower('pg_terminate_backend(1)')",
            "SELECT \"Lo_Import\"(1)",
            "-- comment; DROP TABLE x\nSELECT 1",
        ] {
            assert!(vet(ok).is_ok(), "{ok}: {:?}", vet(ok));
        }
        for bad in [
            "",
            "SELECT 1; SELECT 2",
            "SELECT 1; DROP TABLE agents",
            "COPY agents TO '/tmp/x'",
            "COPY (SELECT 1) TO PROGRAM 'id'",
            "SET statement_timeout = 0",
            "RESET ALL",
            "SELECT set_config('a.b', 'c', false)",
            "DO $$ BEGIN END $$",
            "CALL p()",
            "LISTEN x",
            "NOTIFY x",
            "SELECT pg_notify('x', 'y')",
            "SELECT lo_import('/etc/passwd')",
            "SELECT pg_catalog.lo_export(1, '/tmp/x')",
            "SELECT pg_read_file('/etc/passwd')",
            "SELECT * FROM pg_ls_dir('.')",
            "SELECT dblink('host=x', 'select 1')",
            "SELECT pg_advisory_lock(1)",
            "SELECT pg_try_advisory_xact_lock(1)",
            "SELECT pg_terminate_backend(1)",
            "SELECT pg_cancel_backend(1)",
            "SELECT \"pg_terminate_backend\"(1)",
            "PREPARE TRANSACTION 'x'",
            "PREPARE q AS SELECT 1",
            "SELECT query_to_xml('select pg_terminate_backend(1)', true, true, '')",
            "EXPLAIN ANALYZE SELECT 1",
            "DELETE FROM agents",
            "BEGIN",
            "SELECT 'unterminated",
            "VACUUM",
        ] {
            assert!(vet(bad).is_err(), "{bad} passed");
        }
    }

    #[test]
    fn numerics_read_as_decimal_text() {
        // 12345.678: weight 1, digits [1, 2345, 6780], dscale 3.
        let mut raw = Vec::new();
        for w in [3u16, 1, 0, 3, 1, 2345, 6780] {
            raw.extend(w.to_be_bytes());
        }
        assert_eq!(numeric_text(&raw).unwrap(), "12345.678");
        // -0.05: weight -1, digits [500], dscale 2.
        let mut raw = Vec::new();
        for w in [1u16, 0xFFFF, 0x4000, 2, 500] {
            raw.extend(w.to_be_bytes());
        }
        assert_eq!(numeric_text(&raw).unwrap(), "-0.05");
    }
}
