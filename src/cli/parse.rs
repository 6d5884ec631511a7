//! Value parsers for flags, with messages that say what was wrong and what works.

use std::time::Duration;

/// A number in `[0, 1]` (importance, fractions). NaN and infinities are refused.
pub fn unit_interval(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && (0.0..=1.0).contains(&v) => Ok(v),
        _ => Err("must be a number between 0 and 1".into()),
    }
}

/// An entry id: a whole number from 1.
pub fn positive_id(s: &str) -> Result<i64, String> {
    match s.trim().parse::<i64>() {
        Ok(v) if v >= 1 => Ok(v),
        _ => Err("must be an entry id, a whole number from 1".into()),
    }
}

/// A duration such as `90m`, `12h` or `7d`; zero is refused.
pub fn duration(s: &str) -> Result<Duration, String> {
    match humantime::parse_duration(s.trim()) {
        Ok(d) if d.is_zero() => Err("it is zero; give a duration such as 90m, 12h or 7d".into()),
        Ok(d) => Ok(d),
        Err(_) if s.trim_start().starts_with('-') => {
            Err("a duration cannot be negative; try 90m, 12h or 7d".into())
        }
        Err(_) => Err("not a duration; try 90m, 12h or 7d".into()),
    }
}

/// A busy timeout: a duration from 1 ms to 10 minutes.
pub fn busy_timeout(s: &str) -> Result<Duration, String> {
    let d = duration(s)?;
    if d < Duration::from_millis(1) || d > Duration::from_secs(600) {
        return Err("out of range; give a busy timeout from 1ms to 10m".into());
    }
    Ok(d)
}

/// A whole number of at least 1.
pub fn positive(s: &str) -> Result<u64, String> {
    match whole(s)? {
        0 => Err("must be a whole number of at least 1".into()),
        n => Ok(n),
    }
}

/// A whole number of at least 0.
pub fn count(s: &str) -> Result<u64, String> {
    whole(s)
}

/// A whole number that fits 64 bits; the message says which way it is wrong.
fn whole(s: &str) -> Result<u64, String> {
    use std::num::IntErrorKind;
    s.trim().parse::<u64>().map_err(|e| match e.kind() {
        IntErrorKind::PosOverflow => format!("too large; the most is {}", u64::MAX),
        _ if s.trim().starts_with('-') => "must not be negative".into(),
        _ => "not a whole number".into(),
    })
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
            "{what} on standard input is over the limit of {limit} bytes; nothing was stored"
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
            "not a duration; try 90m, 12h or 7d"
        );
        assert!(duration("-1s").unwrap_err().contains("negative"));
        assert!(duration("0s").is_err());
    }

    #[test]
    fn whole_numbers_say_which_way_they_are_wrong() {
        assert_eq!(positive("7"), Ok(7));
        assert!(positive("0").unwrap_err().contains("at least 1"));
        assert!(
            positive("18446744073709551616")
                .unwrap_err()
                .contains("too large")
        );
        assert!(count("-3").unwrap_err().contains("negative"));
        assert!(count("x").unwrap_err().contains("not a whole number"));
    }
}
