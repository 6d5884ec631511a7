//! Value parsers for flags, with messages that say what was wrong and what works.

use std::time::Duration;

/// A number in `[0, 1]` (importance, fractions). NaN and infinities are refused.
pub fn unit_interval(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && (0.0..=1.0).contains(&v) => Ok(v),
        _ => Err(format!("must be a number between 0 and 1, got '{s}'")),
    }
}

/// A duration such as `90m`, `12h` or `7d`; zero is refused.
pub fn duration(s: &str) -> Result<Duration, String> {
    match humantime::parse_duration(s.trim()) {
        Ok(d) if d.is_zero() => Err(format!(
            "'{s}' is zero; give a duration such as 90m, 12h or 7d"
        )),
        Ok(d) => Ok(d),
        Err(_) => Err(format!("'{s}' is not a duration; try 90m, 12h or 7d")),
    }
}

/// A busy timeout: a duration from 1 ms to 10 minutes.
pub fn busy_timeout(s: &str) -> Result<Duration, String> {
    let d = duration(s)?;
    if d < Duration::from_millis(1) || d > Duration::from_secs(600) {
        return Err(format!(
            "'{s}' is out of range; give a busy timeout from 1ms to 10m"
        ));
    }
    Ok(d)
}

/// A whole number of at least 1.
pub fn positive(s: &str) -> Result<u64, String> {
    match s.trim().parse::<u64>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!("must be a whole number of at least 1, got '{s}'")),
    }
}

/// A whole number of at least 0.
pub fn count(s: &str) -> Result<u64, String> {
    s.trim()
        .parse::<u64>()
        .map_err(|_| format!("must be a whole number of at least 0, got '{s}'"))
}

/// Reads standard input as UTF-8 text, stopping `limit` bytes in: never more than
/// `limit + 1` bytes are held, however much is sent. More than `limit` bytes, or
/// bytes that are not UTF-8 (binary data), are invalid input (exit 2); `what` names
/// the value in the message.
pub fn stdin_text(what: &str, limit: usize) -> anyhow::Result<String> {
    use std::io::Read as _;
    let mut bytes = Vec::new();
    std::io::stdin()
        .lock()
        .take(limit as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| anyhow::anyhow!("cannot read {what} from standard input: {e}"))?;
    if bytes.len() > limit {
        return Err(agentstore::Error::InvalidArgument(format!(
            "{what} on standard input is over {limit} bytes, the most it can be"
        ))
        .into());
    }
    String::from_utf8(bytes).map_err(|e| {
        agentstore::Error::InvalidArgument(format!(
            "{what} on standard input is not UTF-8 text (byte {} is not; binary data cannot be stored)",
            e.utf8_error().valid_up_to()
        ))
        .into()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn importance_rejects_out_of_range_and_nan() {
        assert_eq!(unit_interval("0.25"), Ok(0.25));
        for bad in ["1.5", "-0.1", "NaN", "inf", "x"] {
            assert!(unit_interval(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn durations_accept_humantime_and_explain_errors() {
        assert_eq!(duration("90m"), Ok(Duration::from_secs(5400)));
        assert_eq!(duration("7d"), Ok(Duration::from_secs(7 * 86400)));
        assert_eq!(
            duration("7x").unwrap_err(),
            "'7x' is not a duration; try 90m, 12h or 7d"
        );
        assert!(duration("0s").is_err());
    }
}
