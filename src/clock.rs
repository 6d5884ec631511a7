//! Injected time. The store never reads the system clock directly, so TTLs, ages and
//! recency are tested by moving a [`ManualClock`] instead of sleeping.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};

/// A source of wall-clock time, in integer microseconds since the Unix epoch (UTC).
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// The current time in microseconds since the Unix epoch.
    fn now_micros(&self) -> i64;
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_micros(&self) -> i64 {
        Utc::now().timestamp_micros()
    }
}

/// A clock that only moves when told to; clones share the same time.
#[derive(Debug, Clone, Default)]
pub struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    /// A clock standing at `micros` microseconds since the epoch.
    pub fn new(micros: i64) -> Self {
        ManualClock(Arc::new(AtomicI64::new(micros)))
    }

    /// Sets the time.
    pub fn set(&self, micros: i64) {
        self.0.store(micros, Ordering::SeqCst);
    }

    /// Moves the time forward by `by`.
    pub fn advance(&self, by: Duration) {
        let by = i64::try_from(by.as_micros()).unwrap_or(i64::MAX);
        self.0.fetch_add(by, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_micros(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// Microseconds since the epoch as a UTC date-time (clamped to chrono's range).
pub fn to_datetime(micros: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(micros).unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// Microseconds since the epoch as RFC 3339 UTC with microseconds,
/// e.g. `2025-01-01T00:00:00.000000Z`.
pub fn to_rfc3339(micros: i64) -> String {
    to_datetime(micros).to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// Serializes an `i64` microsecond timestamp as RFC 3339 (for `#[serde(serialize_with)]`).
pub(crate) fn serialize_micros<S: serde::Serializer>(
    micros: &i64,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.serialize_str(&to_rfc3339(*micros))
}

/// Reads an RFC 3339 time as microseconds since the epoch (for
/// `#[serde(deserialize_with)]`).
pub(crate) fn deserialize_micros<'de, D: serde::Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    let text = <std::borrow::Cow<'de, str> as serde::Deserialize>::deserialize(d)?;
    chrono::DateTime::parse_from_rfc3339(&text)
        .map(|t| t.timestamp_micros())
        .map_err(|e| {
            serde::de::Error::custom(format!(
                "{text:?} is not an RFC 3339 time like 2025-01-01T00:00:00.000000Z: {e}"
            ))
        })
}

/// A duration in whole microseconds, saturating at `i64::MAX`.
pub(crate) fn duration_micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

/// A duration as people write it, largest unit first: `2s`, `1m 30s`, `1h 5m`,
/// `250ms`, `3days 4h` (humantime's spelling, which the CLI parses back).
pub fn format_duration(d: Duration) -> String {
    const UNITS: [(&str, u64); 6] = [
        ("years", 31_557_600),
        ("months", 2_630_016),
        ("days", 86_400),
        ("h", 3_600),
        ("m", 60),
        ("s", 1),
    ];
    let mut parts = Vec::new();
    let mut secs = d.as_secs();
    for (unit, size) in UNITS {
        let n = secs / size;
        secs %= size;
        if n > 0 {
            let unit = match unit {
                "years" | "months" | "days" if n == 1 => &unit[..unit.len() - 1],
                u => u,
            };
            parts.push(format!("{n}{unit}"));
        }
    }
    let nanos = d.subsec_nanos();
    for (unit, size) in [("ms", 1_000_000), ("us", 1_000), ("ns", 1)] {
        let n = nanos / size % 1_000;
        if n > 0 {
            parts.push(format!("{n}{unit}"));
        }
    }
    if parts.is_empty() {
        "0s".to_string()
    } else {
        parts.join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_humantime_writes_them() {
        for secs in [0u64, 1, 59, 61, 3_600, 3_661, 86_400, 90_061, 40_000_000] {
            for nanos in [0u32, 1, 1_500, 250_000_000, 999_999_999] {
                let d = Duration::new(secs, nanos);
                assert_eq!(
                    format_duration(d),
                    humantime::format_duration(d).to_string(),
                    "{d:?}"
                );
            }
        }
    }

    #[test]
    fn rfc3339_has_microseconds_and_z() {
        assert_eq!(
            to_rfc3339(1_735_689_600_000_001),
            "2025-01-01T00:00:00.000001Z"
        );
    }

    #[test]
    fn manual_clock_moves_only_when_told() {
        let c = ManualClock::new(10);
        let shared = c.clone();
        c.advance(Duration::from_millis(2));
        assert_eq!(shared.now_micros(), 2010);
        shared.set(5);
        assert_eq!(c.now_micros(), 5);
    }
}
