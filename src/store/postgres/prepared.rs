//! Prepared statements, when the store is told there is no transaction-mode pooler
//! between it and the server (`PostgresOptions::with_prepared_statements`, or
//! `?prepare=true`): each pooled connection keeps the statements it has prepared, and
//! a statement is then bound and run without being parsed and planned again (the
//! difference between an unnamed statement and a prepared one is most of a hot read's
//! time on a fast network). Off by default, because a named statement outlives its
//! transaction, which a transaction-mode pooler (PgBouncer before 1.21) does not allow.
//!
//! The cache is moved from the connection into this thread for the length of one
//! operation (see [`with`]), so the statement helpers find it without a parameter.

use std::cell::RefCell;
use std::collections::HashMap;

use postgres::types::{ToSql, Type};
use postgres::{Client, Statement};

/// Statements a connection keeps, at most (the engine's are a fixed set; purge filters
/// vary): when full, the cache starts over.
const MAX_STATEMENTS: usize = 512;

/// One connection's prepared statements, by their (qualified) text.
#[derive(Default)]
pub(crate) struct Statements(HashMap<String, Statement>);

thread_local! {
    static CURRENT: RefCell<Option<Statements>> = const { RefCell::new(None) };
}

/// Runs `f` with `statements` (a connection's cache, if it has one) current on this
/// thread, and puts the cache back afterwards.
pub(crate) fn with<T>(statements: &mut Option<Statements>, f: impl FnOnce() -> T) -> T {
    let Some(mine) = statements.take() else {
        return f();
    };
    let before = CURRENT.with(|c| c.replace(Some(mine)));
    let out = f();
    *statements = CURRENT.with(|c| std::mem::replace(&mut *c.borrow_mut(), before));
    out
}

/// The prepared form of `sql` for the current connection, preparing it the first
/// time; `None` when no cache is current (the caller sends an unnamed statement).
pub(crate) fn statement(
    c: &mut Client,
    sql: &str,
    args: &[(&(dyn ToSql + Sync), Type)],
) -> Option<Result<Statement, postgres::Error>> {
    CURRENT.with(|current| {
        let mut current = current.borrow_mut();
        let cache = current.as_mut()?;
        if let Some(s) = cache.0.get(sql) {
            return Some(Ok(s.clone()));
        }
        let types: Vec<Type> = args.iter().map(|(_, t)| t.clone()).collect();
        Some(c.prepare_typed(sql, &types).inspect(|s| {
            if cache.0.len() >= MAX_STATEMENTS {
                cache.0.clear();
            }
            cache.0.insert(sql.to_string(), s.clone());
        }))
    })
}

/// Forgets `sql`'s statement after it failed (a schema change can invalidate it).
pub(crate) fn forget(sql: &str) {
    CURRENT.with(|c| {
        if let Some(cache) = c.borrow_mut().as_mut() {
            cache.0.remove(sql);
        }
    });
}

/// The values of `args`, as a prepared statement takes them.
pub(crate) fn values<'a>(
    args: &'a [(&'a (dyn ToSql + Sync), Type)],
) -> Vec<&'a (dyn ToSql + Sync)> {
    args.iter().map(|(v, _)| *v).collect()
}
