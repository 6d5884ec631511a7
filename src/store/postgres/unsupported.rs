//! The operations the PostgreSQL engine does not do yet (issue 14 in progress): each
//! refuses with [`Error::Unsupported`], naming itself, before anything is read or
//! written.

use super::Postgres;
use crate::error::{Error, Result};
use crate::store::AgentRecord;
use crate::store::engine::ReportOps;
use crate::store::report::Aggregates;

fn no<T>(what: &'static str) -> Result<T> {
    Err(Error::Unsupported(what))
}

impl ReportOps for Postgres {
    fn report_aggregates(&self, _: &AgentRecord, _: i64, _: i64) -> Result<Aggregates> {
        no("report")
    }
}
