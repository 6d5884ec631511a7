//! The data of `agentstore report`: per agent, the figures the stats commands print
//! (from the same functions, so they are equal) and the aggregates the charts are
//! drawn from, computed by the engine over bins, so a report's size does not grow
//! with the agent's rows.

use serde::Serialize;

use super::memory::regular_cleanup_deletes;
use super::{
    AgentRecord, MemoryEntry, MemorySettings, MemoryStats, ResponseTimeStats, Store, ToolStats,
};
use crate::clock::serialize_micros;
use crate::error::Result;

/// Importance bins of the histogram and the grid: 0.1 wide.
pub const IMPORTANCE_BINS: usize = 10;
/// Age bins of the importance-by-age grid.
pub const AGE_BINS: usize = 24;
/// Time bins of the outcome mix.
pub const TIME_BINS: usize = 30;
/// Entries in the top-importance table.
pub const TOP_ENTRIES: u64 = 20;
/// Tools shown, by calls (the rest are counted in the note).
pub const MAX_TOOLS: usize = 40;
/// The expiry horizons of the tool cache chart, in seconds (then "later").
pub const EXPIRY_HORIZONS: [(&str, i64); 6] = [
    ("1 min", 60),
    ("10 min", 600),
    ("1 h", 3_600),
    ("6 h", 21_600),
    ("1 day", 86_400),
    ("7 days", 604_800),
];

/// A report: every agent asked for, at one time.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// When the figures were read (RFC 3339 in JSON).
    #[serde(serialize_with = "serialize_micros")]
    pub generated_at: i64,
    /// One per agent, by name.
    pub agents: Vec<AgentReport>,
}

/// One agent's figures and chart data.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AgentReport {
    /// The agent's name.
    pub agent: String,
    /// Its memory settings (budget, cap, cleanup interval, ...).
    pub settings: MemorySettings,
    /// What `memory stats` prints.
    pub memory: MemoryStats,
    /// Content bytes now.
    pub memory_bytes: u64,
    /// The byte budget (`max_memory_mb` in bytes).
    pub memory_budget_bytes: u64,
    /// The next regular cleanup.
    pub next_cleanup: NextCleanup,
    /// Entries per importance bin (`[lo, hi)`, the last closed).
    pub importance_histogram: Vec<Bin>,
    /// Entries per (age, importance) cell, with how many the next cleanup removes.
    pub importance_by_age: Vec<AgeCell>,
    /// The age bins' width, in hours (`AGE_BINS` bins from 0 to the oldest entry).
    pub age_bin_hours: f64,
    /// The most important entries (content clipped to 200 characters, as error
    /// messages clip values: see [`crate::clip`]).
    pub top_entries: Vec<MemoryEntry>,
    /// What `responses stats` prints.
    pub responses: ResponseTimeStats,
    /// Logged responses per response-time bin (two per doubling), errors left out.
    pub response_time_histogram: Vec<Bin>,
    /// Outcomes per time bin, oldest first.
    pub outcomes_over_time: Vec<OutcomeBin>,
    /// What `tools stats` prints.
    pub tools: ToolStats,
    /// The tool cache of the agent's scope by time to expiry.
    pub tool_cache: CacheExpiries,
}

/// A histogram bin.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Bin {
    /// Lower edge.
    pub lo: f64,
    /// Upper edge.
    pub hi: f64,
    /// Rows in it.
    pub count: u64,
}

/// One cell of the importance-by-age grid.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct AgeCell {
    /// Age bin (0: newest).
    pub age_bin: u32,
    /// Importance bin (0: least important).
    pub importance_bin: u32,
    /// Entries in the cell.
    pub count: u64,
    /// Of them, entries the next regular cleanup would remove.
    pub doomed: u64,
}

/// When the next regular cleanup runs and what it would remove.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct NextCleanup {
    /// `false` when `cleanup_interval` is 0 (no regular cleanup).
    pub enabled: bool,
    /// Messages until it runs (it runs before the add of that message).
    pub messages_until: u64,
    /// Entries it would remove from today's entries: the lowest by (importance,
    /// created), all but `floor(entries * keep_fraction)`.
    pub removes_entries: u64,
}

/// Outcomes in one time bin.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct OutcomeBin {
    /// Start of the bin (RFC 3339 in JSON).
    #[serde(serialize_with = "serialize_micros")]
    pub from: i64,
    /// End of the bin.
    #[serde(serialize_with = "serialize_micros")]
    pub to: i64,
    /// Exact hits.
    pub exact: u64,
    /// Fuzzy hits.
    pub fuzzy: u64,
    /// Generated within the target.
    pub generated: u64,
    /// Fallback replies.
    pub fallback: u64,
    /// Generation errors.
    pub error: u64,
}

/// The scope's cached tool results by time to expiry.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CacheExpiries {
    /// Rows in the scope (expired ones not yet removed included, as `cache_size`).
    pub size: u64,
    /// Rows past their expiry, waiting to be removed.
    pub expired: u64,
    /// Live rows expiring within each horizon of [`EXPIRY_HORIZONS`] (and not an
    /// earlier one), then the rest (`later`).
    pub expiring: Vec<ExpiryBucket>,
}

/// Live rows that expire within a horizon.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExpiryBucket {
    /// "within 1 h", ..., "later".
    pub within: String,
    /// Rows.
    pub count: u64,
}

/// What the engine aggregates for one agent (see `ReportOps`).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Aggregates {
    /// Entries per importance bin.
    pub importance: Vec<u64>,
    /// (age bin, importance bin, count, doomed).
    pub cells: Vec<(u32, u32, u64, u64)>,
    /// Oldest entry's creation time.
    pub oldest: Option<i64>,
    /// (duration bucket lower edge in seconds, responses) over the non-error log.
    pub durations: Vec<(f64, u64)>,
    /// (time bin, outcome, count).
    pub outcomes: Vec<(u32, String, u64)>,
    /// First and last logged time.
    pub log_span: Option<(i64, i64)>,
    /// Expired rows, then live rows per horizon (and later).
    pub expiries: Vec<u64>,
}

impl Store {
    /// The report of `agent`, or of every agent.
    ///
    /// # Errors
    /// [`crate::Error::UnknownAgent`]; database errors.
    pub fn report(&self, agent: Option<&str>) -> Result<Report> {
        let agents = match agent {
            Some(name) => vec![self.existing_agent(name)?],
            None => self.agents()?,
        };
        let generated_at = self.now_micros();
        let agents = agents
            .iter()
            .map(|a| self.agent_report(a, generated_at))
            .collect::<Result<_>>()?;
        Ok(Report {
            generated_at,
            agents,
        })
    }

    fn agent_report(&self, agent: &AgentRecord, now: i64) -> Result<AgentReport> {
        let s = agent.settings;
        let memory = self.memory(agent);
        let stats = memory.stats()?;
        // No regular cleanup (interval 0) removes nothing.
        let removes = match s.cleanup_interval {
            0 => 0,
            _ => regular_cleanup_deletes(agent.memory_entries as i64, s.keep_fraction),
        };
        let next_cleanup = NextCleanup {
            enabled: s.cleanup_interval > 0,
            messages_until: match s.cleanup_interval {
                0 => 0,
                n => n - agent.message_count % n,
            },
            removes_entries: removes.max(0) as u64,
        };
        let top_entries = memory
            .list(super::ListOrder::Importance, TOP_ENTRIES)?
            .into_iter()
            .map(|mut e| {
                e.content = crate::clip(&e.content);
                e
            })
            .collect();
        let responses = self.response_cache(agent).time_stats()?;
        let tools = self.tool_cache(agent).stats()?;
        let agg = self
            .engine()
            .report_aggregates(agent, now, removes.max(0))?;
        let age_span = agg.oldest.map_or(0, |o| (now - o).max(0));
        Ok(AgentReport {
            agent: agent.name.clone(),
            settings: s,
            memory: stats,
            memory_bytes: agent.memory_bytes,
            memory_budget_bytes: s.max_bytes() as u64,
            next_cleanup,
            importance_histogram: agg
                .importance
                .iter()
                .enumerate()
                .map(|(i, &count)| Bin {
                    lo: i as f64 / IMPORTANCE_BINS as f64,
                    hi: (i + 1) as f64 / IMPORTANCE_BINS as f64,
                    count,
                })
                .collect(),
            importance_by_age: agg
                .cells
                .iter()
                .map(|&(age_bin, importance_bin, count, doomed)| AgeCell {
                    age_bin,
                    importance_bin,
                    count,
                    doomed,
                })
                .collect(),
            age_bin_hours: (age_span as f64 + 1.0) / AGE_BINS as f64 / 3.6e9,
            top_entries,
            responses,
            response_time_histogram: duration_bins(&agg.durations),
            outcomes_over_time: outcome_bins(&agg),
            tool_cache: CacheExpiries {
                size: tools.cache_size,
                expired: agg.expiries.first().copied().unwrap_or(0),
                expiring: EXPIRY_HORIZONS
                    .iter()
                    .map(|(label, _)| format!("within {label}"))
                    .chain(std::iter::once("later".to_string()))
                    .zip(agg.expiries.iter().skip(1))
                    .map(|(within, &count)| ExpiryBucket { within, count })
                    .collect(),
            },
            tools,
        })
    }
}

/// Two bins per doubling of the response time, `[2^e, 1.5 * 2^e)` and `[1.5 * 2^e,
/// 2^(e+1))`: the engine's duration buckets (16 per doubling, the exponent and the top
/// four mantissa bits) fall whole into one of them, so each count is exact.
fn duration_bins(durations: &[(f64, u64)]) -> Vec<Bin> {
    let mut bins: Vec<Bin> = Vec::new();
    for &(lo, count) in durations {
        let (lo, hi) = half_doubling(lo);
        match bins.last_mut() {
            Some(last) if last.lo == lo => last.count += count,
            _ => bins.push(Bin { lo, hi, count }),
        }
    }
    bins
}

/// The bin of [`duration_bins`] that holds `seconds` (`[0, tiny)` for 0 and for
/// subnormal times).
fn half_doubling(seconds: f64) -> (f64, f64) {
    let bits = seconds.to_bits();
    let exponent = (bits >> 52) & 0x7ff;
    if seconds <= 0.0 || seconds.is_nan() || exponent == 0 || exponent == 0x7ff {
        return (0.0, f64::MIN_POSITIVE);
    }
    let power = f64::from_bits(exponent << 52);
    if (bits >> 51) & 1 == 0 {
        (power, power * 1.5)
    } else {
        (power * 1.5, power * 2.0)
    }
}

fn outcome_bins(agg: &Aggregates) -> Vec<OutcomeBin> {
    let Some((first, last)) = agg.log_span else {
        return Vec::new();
    };
    let width = (last - first + 1) as f64 / TIME_BINS as f64;
    let mut bins: Vec<OutcomeBin> = (0..TIME_BINS)
        .map(|i| OutcomeBin {
            from: first + (i as f64 * width) as i64,
            to: first + ((i + 1) as f64 * width) as i64,
            exact: 0,
            fuzzy: 0,
            generated: 0,
            fallback: 0,
            error: 0,
        })
        .collect();
    for (bin, outcome, count) in &agg.outcomes {
        let Some(b) = bins.get_mut(*bin as usize) else {
            continue;
        };
        match outcome.as_str() {
            "exact" => b.exact += count,
            "fuzzy" => b.fuzzy += count,
            "generated" => b.generated += count,
            "fallback" => b.fallback += count,
            _ => b.error += count,
        }
    }
    bins
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duration_bins_hold_their_values() {
        for x in [
            1e-6, 0.001, 0.0049, 0.05, 0.5, 0.7, 1.0, 1.5, 2.0, 3.99, 100.0,
        ] {
            let (lo, hi) = half_doubling(x);
            assert!(lo <= x && x < hi, "{x}: [{lo}, {hi})");
            // Every duration bucket (16 per doubling) with this value is inside too.
            let bucket = crate::store::responses::time_bucket(x);
            let bucket_lo = f64::from_bits((bucket as u64) << 48);
            assert_eq!(half_doubling(bucket_lo), (lo, hi), "{x}");
        }
        assert_eq!(half_doubling(0.0).0, 0.0);
        let bins = duration_bins(&[(0.5, 2), (0.6, 3), (1.0, 4), (1.2, 1)]);
        let counts: Vec<u64> = bins.iter().map(|b| b.count).collect();
        assert_eq!(counts, vec![5, 5]);
    }
}
