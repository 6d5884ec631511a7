//! The operations the PostgreSQL engine does not do yet (issue 14 in progress): each
//! refuses with [`Error::Unsupported`], naming itself, before anything is read or
//! written.

use std::time::Duration;

use super::Postgres;
use crate::error::{Error, Result};
use crate::store::engine::{AdminOps, ReportOps, ResponseOps};
use crate::store::forget::{ForgetEverywhereReport, Needles};
use crate::store::memory::Query;
use crate::store::report::Aggregates;
use crate::store::responses::{ResponsePurge, TuneRule};
use crate::store::transfer::{ImportSink, Record};
use crate::store::{
    AgentRecord, CacheMatch, CachedResponse, CheckReport, CompactReport, FuzzyOptions,
    ImportReport, LoggedResponse, Lookup, PageUse, QueryResult, QuerySink, ResponseOrder,
    ResponseTimeStats, StatsView, Tuning,
};

fn no<T>(what: &'static str) -> Result<T> {
    Err(Error::Unsupported(what))
}

impl ResponseOps for Postgres {
    fn response_exact(&self, _: i64, _: &str) -> Result<Option<CacheMatch>> {
        no("the response cache")
    }
    fn response_try_exact(&self, _: i64, _: &str) -> Option<Result<Option<CacheMatch>>> {
        Some(no("the response cache"))
    }
    fn response_lookup(&self, _: i64, _: &str, _: FuzzyOptions, _: bool) -> Result<Lookup> {
        no("the response cache")
    }
    fn response_put(&self, _: i64, _: &str, _: &str, _: i64) -> Result<i64> {
        no("the response cache")
    }
    fn response_put_many(&self, _: i64, _: &[(&str, &str)], _: i64) -> Result<()> {
        no("the response cache")
    }
    fn response_index_pending(&self) -> Result<u64> {
        no("the response cache")
    }
    fn response_record(
        &self,
        _: i64,
        _: &[(i64, u64, i64)],
        _: &[LoggedResponse],
        _: u64,
    ) -> Result<()> {
        no("the response log")
    }
    fn response_time_stats(&self, _: i64) -> Result<ResponseTimeStats> {
        no("response stats")
    }
    fn response_tune(&self, _: i64, _: TuneRule) -> Result<Tuning> {
        no("response tuning")
    }
    fn response_entries(&self, _: i64) -> Result<u64> {
        no("the response cache")
    }
    fn response_purge_count(&self, _: i64, _: ResponsePurge, _: i64) -> Result<u64> {
        no("the response cache")
    }
    fn response_purge_batch(&self, _: i64, _: ResponsePurge, _: i64, _: i64) -> Result<u64> {
        no("the response cache")
    }
    fn response_list(&self, _: i64, _: ResponseOrder, _: u64) -> Result<Vec<CachedResponse>> {
        no("the response cache")
    }
    fn response_target(&self, _: i64) -> Result<f64> {
        no("response tuning")
    }
}

impl AdminOps for Postgres {
    fn check(&self) -> Result<CheckReport> {
        no("check")
    }
    fn export(&self, _: Option<&str>, _: &mut dyn FnMut(Record) -> Result<()>) -> Result<()> {
        no("export")
    }
    fn import(
        &self,
        _: &mut dyn FnMut(&mut dyn ImportSink) -> Result<ImportReport>,
    ) -> Result<ImportReport> {
        no("import")
    }
    fn view(&self, _: StatsView, _: Option<&str>) -> Result<QueryResult> {
        no("the stats views")
    }
    fn page_use(&self) -> Result<PageUse> {
        no("page use")
    }
    fn compact(&self, _: bool) -> Result<CompactReport> {
        no("compact")
    }
    fn checkpoint(&self) -> Result<()> {
        Ok(())
    }
    fn reindex(&self) -> Result<u64> {
        // The search vector is a generated column: PostgreSQL keeps it and its index.
        Ok(0)
    }
    fn forget_everywhere(
        &self,
        _: i64,
        _: &str,
        _: &Query,
        _: &Needles,
        _: bool,
    ) -> Result<ForgetEverywhereReport> {
        no("forget across caches")
    }
    fn query_read_only(&self, _: &str, _: Duration, _: &mut dyn QuerySink) -> Result<u64> {
        no("sql")
    }
}

impl ReportOps for Postgres {
    fn report_aggregates(&self, _: &AgentRecord, _: i64, _: i64) -> Result<Aggregates> {
        no("report")
    }
}
