//! The response log's records: one row per answered message, the response-time
//! stats over it, and the tuning of the target time.

use serde::Serialize;

use super::Outcome;

/// One answered message, for the log.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoggedResponse {
    /// When it was answered, microseconds since the epoch.
    pub at: i64,
    /// How long it took, in seconds.
    pub duration: f64,
    /// How it was answered.
    pub outcome: Outcome,
}

/// The original design's `get_response_time_stats()`, computed in SQL over the log.
/// Times are in seconds. Serialises as `{"no_data": true}` when nothing is logged,
/// as the original's dict did.
#[derive(Debug, Clone, PartialEq)]
pub enum ResponseTimeStats {
    /// No response logged.
    NoData,
    /// The figures.
    Data(TimeFigures),
}

impl Serialize for ResponseTimeStats {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        match self {
            ResponseTimeStats::NoData => {
                let mut m = s.serialize_map(Some(1))?;
                m.serialize_entry("no_data", &true)?;
                m.end()
            }
            ResponseTimeStats::Data(figures) => figures.serialize(s),
        }
    }
}

/// The figures of [`ResponseTimeStats`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TimeFigures {
    /// Responses logged (generation errors not included).
    pub total_responses: u64,
    /// Mean time.
    pub avg_response_time: f64,
    /// Fastest.
    pub min_response_time: f64,
    /// Slowest.
    pub max_response_time: f64,
    /// `sorted[n / 2]`.
    pub p50_response_time: f64,
    /// `sorted[floor(n * 0.9)]`.
    pub p90_response_time: f64,
    /// `sorted[floor(n * 0.95)]`.
    pub p95_response_time: f64,
    /// Responses strictly faster than the target.
    pub responses_under_target: u64,
    /// `responses_under_target / total_responses * 100`.
    pub target_achievement_rate: f64,
    /// Cached responses of the agent now.
    pub cache_entries: u64,
    /// The agent's target time now.
    pub target_response_time: f64,
}

/// What [`ResponseCache::tune_target`](super::ResponseCache::tune_target) did.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Tuning {
    /// The target before, in seconds.
    pub old_target: f64,
    /// The target after.
    pub new_target: f64,
    /// The share of responses under the old target, in percent (None without data).
    pub achievement_rate: Option<f64>,
}

/// How the target is tuned: the original's rule, kept in the range every write and
/// import accepts however many tunings run.
pub(crate) type TuneRule = fn(achievement_rate: f64, old_target: f64) -> f64;

/// What tuning by `rule` makes of `stats`; `target` is the current target (the one in
/// `stats` when anything is logged). The engine writes the new target if it differs.
pub(crate) fn tuning(stats: &ResponseTimeStats, target: f64, rule: TuneRule) -> Tuning {
    match stats {
        ResponseTimeStats::Data(s) => {
            let rate = s.target_achievement_rate;
            Tuning {
                old_target: s.target_response_time,
                new_target: rule(rate, s.target_response_time),
                achievement_rate: Some(rate),
            }
        }
        ResponseTimeStats::NoData => Tuning {
            old_target: target,
            new_target: target,
            achievement_rate: None,
        },
    }
}

/// The original's tuning: with more than 90% of the logged responses under the target
/// it becomes 0.9x, under 50% 1.2x, else it stays; clamped to 1 µs ..= a year.
pub(crate) fn tuned_target(rate: f64, old: f64) -> f64 {
    if rate > 90.0 {
        old * 0.9
    } else if rate < 50.0 {
        old * 1.2
    } else {
        old
    }
    .clamp(
        crate::store::invariants::MIN_TARGET_SECONDS,
        crate::store::invariants::MAX_RESPONSE_SECONDS,
    )
}

/// Checks a logged duration: a finite number of seconds >= 0.
pub(crate) fn validate_duration(seconds: f64) -> crate::Result<()> {
    if seconds.is_finite() && seconds >= 0.0 {
        Ok(())
    } else {
        Err(crate::Error::invalid(format!(
            "a response time must be a finite number of seconds >= 0, got {seconds}"
        )))
    }
}

/// The duration bucket of a time in seconds (>= 0): the top 16 bits of its IEEE 754
/// pattern, i.e. its exponent and 4 mantissa bits, 16 buckets per doubling. For
/// non-negative numbers the bit pattern orders like the value, so buckets do too.
pub(crate) fn time_bucket(seconds: f64) -> i64 {
    // + 0.0 turns -0.0 (sign bit set) into 0.0.
    ((seconds + 0.0).to_bits() >> 48) as i64
}

#[cfg(test)]
mod tests {
    use super::time_bucket;

    #[test]
    fn buckets_order_like_durations() {
        let mut xs: Vec<f64> = vec![
            0.0, -0.0, 1e-9, 5e-6, 0.049, 0.05, 0.0500001, 1.0, 2.0, 3.99, 1e6,
        ];
        xs.sort_by(f64::total_cmp);
        for w in xs.windows(2) {
            assert!(time_bucket(w[0]) <= time_bucket(w[1]), "{} {}", w[0], w[1]);
        }
        assert_eq!(time_bucket(-0.0), time_bucket(0.0));
        assert!(
            time_bucket(1.0) < time_bucket(1.1),
            "16 buckets per doubling"
        );
        assert_eq!(time_bucket(1.0), time_bucket(1.06));
    }
}
