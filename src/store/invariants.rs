//! The ranges and relations every stored row keeps, in one place: `check` reports a
//! row outside them as a problem, and an import refuses a record outside them before
//! anything is written. Each limit leaves room for later writes to continue from the
//! value (a message counter at `i64::MAX` would make every later add fail).

use crate::error::{Error, Result};

/// The largest count (message counter, hits, calls) a record may carry: 2^53, exact
/// as a JSON number in every reader, and far from where incrementing overflows.
pub const MAX_COUNT: u64 = 1 << 53;

/// The longest one response may have taken, in seconds (a year).
pub const MAX_RESPONSE_SECONDS: f64 = 366.0 * 86_400.0;

/// The shortest target response time: tuning (x0.9 at a time) stops here rather
/// than reach zero.
pub const MIN_TARGET_SECONDS: f64 = 1e-6;

/// The most seconds a tool's calls may have taken in all (ten thousand years).
pub const MAX_TOTAL_SECONDS: f64 = 1e4 * 366.0 * 86_400.0;

/// What `check` reports when an agent's trigger-kept counters (entries, bytes,
/// importance sum, message counter) disagree with the real counts of its rows. The
/// importance sum is a float kept by adding and subtracting: compared with a tolerance.
pub(crate) fn counter_problems(
    name: &str,
    kept: (i64, i64, f64, i64),
    real: (i64, i64, f64, i64),
    problems: &mut Vec<String>,
) {
    if kept.0 != real.0 {
        problems.push(format!(
            "agent '{name}': counter says {} entries, table has {}",
            kept.0, real.0
        ));
    }
    if kept.1 != real.1 {
        problems.push(format!(
            "agent '{name}': counter says {} bytes, table has {}",
            kept.1, real.1
        ));
    }
    if (kept.2 - real.2).abs() > 1e-6 * real.2.abs().max(1.0) {
        problems.push(format!(
            "agent '{name}': importance sum counter {} differs from {}",
            kept.2, real.2
        ));
    }
    if kept.3 < real.3 {
        problems.push(format!(
            "agent '{name}': message counter {} is below the highest entry id {}",
            kept.3, real.3
        ));
    }
}

/// A count in `0..=MAX_COUNT`.
pub fn count(what: &str, n: u64) -> Result<i64> {
    if n > MAX_COUNT {
        return Err(Error::invalid(format!(
            "{what} is {n}; the most a count can be is {MAX_COUNT}"
        )));
    }
    Ok(n as i64)
}

/// Seconds: finite, not negative, at most `max`.
pub fn seconds(what: &str, s: f64, max: f64) -> Result<()> {
    if !(s.is_finite() && (0.0..=max).contains(&s)) {
        return Err(Error::invalid(format!(
            "{what} must be a number of seconds from 0 to {max:e}, got {s}"
        )));
    }
    Ok(())
}

/// `later` is not before `earlier` (times in microseconds).
pub fn ordered(earlier_name: &str, earlier: i64, later_name: &str, later: i64) -> Result<()> {
    if later < earlier {
        return Err(Error::invalid(format!(
            "{later_name} is before {earlier_name}"
        )));
    }
    Ok(())
}
