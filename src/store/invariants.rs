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

/// The part of `check` that looks for rows outside these ranges: one query per
/// relation, each naming the agent (or scope) and what is wrong. Each returns at most
/// a few rows of `(name, detail)`.
pub const CHECKS: &[(&str, &str)] = &[
    (
        "memory entry ids below 1",
        "SELECT 'agent ' || quote(a.name), 'memory entry id ' || m.id || ' is below 1' FROM memory_entries m
           JOIN agents a ON a.id = m.agent_id WHERE m.id < 1 LIMIT 5",
    ),
    (
        "message counters out of range",
        "SELECT 'agent ' || quote(a.name), 'message counter ' || c.message_count || ' is out of range'
           FROM memory_counters c JOIN agents a ON a.id = c.agent_id
          WHERE c.message_count < 0 OR c.message_count > 9007199254740992 LIMIT 5",
    ),
    (
        "tool counters",
        "SELECT 'agent ' || quote(a.name), 'tool ' || quote(t.tool) || ': ' ||
                CASE WHEN t.cache_hits > t.total_calls THEN 'more cache hits than calls'
                     WHEN t.errors > t.total_calls THEN 'more errors than calls'
                     WHEN t.total_calls > 9007199254740992 THEN 'a call count out of range'
                     ELSE 'total time out of range' END
           FROM tool_counters t JOIN agents a ON a.id = t.agent_id
          WHERE t.cache_hits > t.total_calls OR t.errors > t.total_calls
             OR t.total_calls > 9007199254740992 OR t.total_time > 3.16224e11 LIMIT 5",
    ),
    (
        "cached responses",
        "SELECT 'agent ' || quote(a.name), 'cached response #' || r.id || ': ' ||
                CASE WHEN r.message = '' THEN 'an empty message'
                     WHEN r.response = '' THEN 'an empty response'
                     WHEN r.last_used_at < r.created_at THEN 'last used before it was created'
                     ELSE 'a hit count out of range' END
           FROM response_cache r JOIN agents a ON a.id = r.agent_id
          WHERE r.message = '' OR r.response = '' OR r.last_used_at < r.created_at
             OR r.hits > 9007199254740992 LIMIT 5",
    ),
    (
        "response times",
        "SELECT 'agent ' || quote(a.name), 'response log row ' || l.id || ': a time of ' || l.duration || ' s is out of range'
           FROM response_log l JOIN agents a ON a.id = l.agent_id
          WHERE NOT (l.duration BETWEEN 0 AND 31622400) LIMIT 5",
    ),
    (
        "target response times",
        "SELECT 'agent ' || quote(a.name), 'target response time ' || a.target_response_time || ' s is out of range'
           FROM agents a WHERE NOT (a.target_response_time BETWEEN 1e-6 AND 31622400) LIMIT 5",
    ),
    (
        "cached tool results",
        "SELECT 'tool scope ' || quote(t.scope), 'cached result of ' || quote(t.tool) || ' expires before it was created'
           FROM tool_cache t WHERE t.expires_at < t.created_at LIMIT 5",
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    /// The SQL spells the limits out; they must be these constants.
    #[test]
    fn the_checks_use_the_constants() {
        let all: String = CHECKS.iter().map(|(_, sql)| *sql).collect();
        assert!(all.contains(&MAX_COUNT.to_string()));
        assert!(all.contains(&format!("{}", MAX_RESPONSE_SECONDS as u64)));
        assert!(all.contains(&format!("{MAX_TOTAL_SECONDS:e}")));
    }
}
