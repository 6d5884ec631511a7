//! `Memory::prune` in batches. A prune first turns its rule into a plan: the last
//! entry it removes in one of the two orders entries are kept in (cleanup order
//! `(importance, created_at, id)`, or time order `(created_at, id)`) and the agent's
//! message number, so entries added while it runs are never touched. The engine stores
//! the plan in the transaction of the first batch and deletes it in the transaction of
//! the last, and each batch removes the lowest entries up to the plan's bound. A prune
//! killed between two batches leaves its plan behind; the same prune run again
//! finishes that plan (instead of applying a relative rule such as `--keep-fraction`
//! to what is left), and a different prune replaces it.

use std::fmt;

use super::{Prune, PruneReport, Store};
use crate::clock::format_duration;
use crate::error::{Error, Result};
use crate::store::batch;

/// The bound of a plan: the last entry it removes, in its order.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Bound {
    /// `(importance, created_at, id)`, the primary key's order.
    Cleanup(f64, i64, i64),
    /// `(created_at, id)`, the time index's order.
    Time(i64, i64),
}

impl Bound {
    /// A bound from its columns: no importance means time order.
    pub(crate) fn from_columns(importance: Option<f64>, created_at: i64, id: i64) -> Bound {
        match importance {
            Some(i) => Bound::Cleanup(i, created_at, id),
            None => Bound::Time(created_at, id),
        }
    }

    /// The bound as columns (no importance in time order).
    pub(crate) fn values(self) -> (Option<f64>, i64, i64) {
        match self {
            Bound::Cleanup(i, c, id) => (Some(i), c, id),
            Bound::Time(c, id) => (None, c, id),
        }
    }
}

/// A prune's plan, as the engine stores it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PrunePlan {
    /// The rule's [`resume_key`].
    pub rule: String,
    pub bound: Bound,
    /// The agent's message number when the plan was made; no later entry is removed.
    pub max_id: i64,
}

/// Where a prune starts (see `MemoryOps::prune_start`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PruneStart {
    /// The plan to run; `None` when the rule removes nothing.
    pub plan: Option<PrunePlan>,
    /// The plan is an interrupted run of this same rule.
    pub resumed: bool,
    /// An interrupted prune of another rule is stored (this one replaces it).
    pub other: bool,
    /// With `count`: the entries and bytes the plan has left to remove.
    pub left: (u64, u64),
}

/// The key under which an interrupted prune of `rule` is stored and recognised. It
/// is fixed (files written by earlier versions hold it), whatever the CLI's wording.
pub(crate) fn resume_key(rule: Prune) -> String {
    match rule {
        Prune::KeepFraction(x) => format!("keep-fraction {x}"),
        Prune::MinImportance(x) => format!("min-importance {x}"),
        Prune::OlderThan(d) => format!("older-than {}", format_duration(d)),
        Prune::MaxBytes(n) => format!("max-bytes {n}"),
    }
}

impl fmt::Display for Prune {
    /// The rule as the CLI spells it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Prune::KeepFraction(x) => write!(f, "keep-fraction {x}"),
            Prune::MinImportance(x) => write!(f, "min-importance {x}"),
            Prune::OlderThan(d) => write!(f, "older-than {}", format_duration(*d)),
            Prune::MaxBytes(n) => write!(f, "max-bytes {n}"),
        }
    }
}

/// How many entries `KeepFraction(f)` removes from `entries`: all but
/// `floor(entries * f)`, even when that is all of them.
pub(crate) fn keep_fraction_deletes(entries: i64, f: f64) -> i64 {
    entries - (entries as f64 * f).floor() as i64
}

/// The cutoff of `OlderThan(d)` at `now`: entries created before it go.
pub(crate) fn older_than_cutoff(d: std::time::Duration, now: i64) -> Result<i64> {
    i64::try_from(d.as_micros())
        .ok()
        .and_then(|d| now.checked_sub(d))
        .ok_or_else(|| {
            Error::invalid(format!(
                "duration {} reaches before 1970",
                format_duration(d)
            ))
        })
}

fn validate(rule: Prune) -> Result<()> {
    match rule {
        Prune::KeepFraction(f) => crate::store::agents::check_unit("keep fraction", f),
        Prune::MinImportance(x) => super::validate_importance(x),
        Prune::OlderThan(_) | Prune::MaxBytes(_) => Ok(()),
    }
}

/// Runs `rule` over `agent_id`'s memory (see the module docs).
pub(super) fn prune(
    store: &Store,
    agent_id: i64,
    rule: Prune,
    dry_run: bool,
) -> Result<PruneReport> {
    validate(rule)?;
    let engine = store.engine();
    let now = store.now_micros();
    let key = resume_key(rule);
    // The plan is made from a snapshot, outside the write lock: finding the bound can
    // read many rows. Entries deleted meanwhile are simply not there to delete again.
    let start = engine.prune_start(agent_id, rule, &key, now, dry_run)?;
    let mut report = PruneReport {
        removed_entries: 0,
        removed_bytes: 0,
        dry_run,
        batches: 0,
        resumed: start.resumed,
    };
    if dry_run {
        (report.removed_entries, report.removed_bytes) = start.left;
        return Ok(report);
    }
    let Some(plan) = start.plan else {
        // Nothing to remove: this prune is complete, and replaces an interrupted one.
        if start.other {
            engine.prune_forget(agent_id)?;
        }
        return Ok(report);
    };
    let mut bytes = 0u64;
    let mut first = (!start.resumed).then_some(&plan);
    let done = batch::in_batches(engine.busy_timeout(), |rows| {
        // After the first batch the plan is read back every time: another process may
        // have finished it.
        let step = engine.prune_batch(agent_id, first.take(), now, rows)?;
        Ok(step.map(|(entries, b, last)| {
            bytes += b;
            (entries, last)
        }))
    })?;
    report.batches = done.batches;
    report.removed_entries = done.rows;
    report.removed_bytes = bytes;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Files written by earlier versions hold these keys; they must not change.
    #[test]
    fn resume_keys_are_the_stored_spelling() {
        assert_eq!(resume_key(Prune::KeepFraction(0.5)), "keep-fraction 0.5");
        assert_eq!(
            resume_key(Prune::MinImportance(0.25)),
            "min-importance 0.25"
        );
        assert_eq!(
            resume_key(Prune::OlderThan(Duration::from_secs(90_061))),
            "older-than 1day 1h 1m 1s"
        );
        assert_eq!(resume_key(Prune::MaxBytes(4096)), "max-bytes 4096");
    }
}
