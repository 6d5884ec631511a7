//! Agents: each has a name, memory settings, a tool scope and a response time
//! target; every other record hangs off one. The records, their validation and the
//! `Store` methods that address agents by name.

use serde::Serialize;

use super::Store;
use crate::clock::serialize_micros;
use crate::error::{Error, Result};

/// An agent's memory settings, stored in its row so that the running agent and the
/// admin CLI apply the same limits. Defaults are the original design's.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct MemorySettings {
    /// Byte budget; over it, the emergency cleanup runs.
    pub max_memory_mb: f64,
    /// Hard cap on entries; the oldest beyond it are dropped.
    pub max_entries: u64,
    /// Run the regular cleanup every this many messages (0 turns it off).
    pub cleanup_interval: u64,
    /// The share of entries the regular cleanup keeps.
    pub keep_fraction: f64,
    /// Stored for the original design's `importance_threshold`; no automatic cleanup
    /// uses it (the original did not either).
    pub importance_threshold: f64,
    /// Weight of importance in the context score.
    pub importance_weight: f64,
    /// Weight of recency in the context score.
    pub recency_weight: f64,
    /// Weight of relevance to the query in the score of a context built for one
    /// ([`Memory::context_for`](crate::Memory::context_for)); absent from exports
    /// made before it existed, hence its default there.
    #[serde(default = "default_relevance_weight")]
    pub relevance_weight: f64,
    /// The emergency cleanup deletes down to this share of the byte budget.
    pub low_water: f64,
}

impl Default for MemorySettings {
    fn default() -> Self {
        MemorySettings {
            max_memory_mb: 10.0,
            max_entries: 1000,
            cleanup_interval: 100,
            keep_fraction: 0.7,
            importance_threshold: 0.5,
            importance_weight: 0.7,
            recency_weight: 0.3,
            relevance_weight: default_relevance_weight(),
            low_water: 0.8,
        }
    }
}

fn default_relevance_weight() -> f64 {
    1.0
}

/// Megabytes (MiB, as the original's `max_memory_mb`) to bytes.
pub(crate) fn mb_to_bytes(mb: f64) -> f64 {
    mb * 1024.0 * 1024.0
}

/// Checks that `value` is a finite number in `[0, 1]`.
pub(crate) fn check_unit(name: &str, value: f64) -> Result<()> {
    if value.is_finite() && (0.0..=1.0).contains(&value) {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "{name} must be between 0 and 1, got {value}"
        )))
    }
}

impl MemorySettings {
    /// These settings with the byte budget, in MiB.
    pub fn with_max_memory_mb(mut self, max_memory_mb: f64) -> Self {
        self.max_memory_mb = max_memory_mb;
        self
    }

    /// These settings with the cap on entries.
    pub fn with_max_entries(mut self, max_entries: u64) -> Self {
        self.max_entries = max_entries;
        self
    }

    /// These settings with the regular cleanup's interval, in messages (0: off).
    pub fn with_cleanup_interval(mut self, cleanup_interval: u64) -> Self {
        self.cleanup_interval = cleanup_interval;
        self
    }

    /// These settings with the share the regular cleanup keeps.
    pub fn with_keep_fraction(mut self, keep_fraction: f64) -> Self {
        self.keep_fraction = keep_fraction;
        self
    }

    /// These settings with the stored importance threshold.
    pub fn with_importance_threshold(mut self, importance_threshold: f64) -> Self {
        self.importance_threshold = importance_threshold;
        self
    }

    /// These settings with the weight of importance in the context score.
    pub fn with_importance_weight(mut self, importance_weight: f64) -> Self {
        self.importance_weight = importance_weight;
        self
    }

    /// These settings with the weight of recency in the context score.
    pub fn with_recency_weight(mut self, recency_weight: f64) -> Self {
        self.recency_weight = recency_weight;
        self
    }

    /// These settings with the weight of relevance in the score of a context built for
    /// a query.
    pub fn with_relevance_weight(mut self, relevance_weight: f64) -> Self {
        self.relevance_weight = relevance_weight;
        self
    }

    /// These settings with the share of the budget the emergency cleanup deletes down to.
    pub fn with_low_water(mut self, low_water: f64) -> Self {
        self.low_water = low_water;
        self
    }

    /// The byte budget in bytes.
    pub fn max_bytes(&self) -> f64 {
        mb_to_bytes(self.max_memory_mb)
    }

    /// Checks every value before it reaches SQL.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] naming the first bad setting.
    pub fn validate(&self) -> Result<()> {
        if !(self.max_memory_mb.is_finite() && self.max_memory_mb > 0.0) {
            return Err(Error::invalid(format!(
                "max_memory_mb must be a positive number, got {}",
                self.max_memory_mb
            )));
        }
        if self.max_entries == 0 || self.max_entries > i64::MAX as u64 {
            return Err(Error::invalid(format!(
                "max_entries must be at least 1, got {}",
                self.max_entries
            )));
        }
        if self.cleanup_interval > i64::MAX as u64 {
            return Err(Error::invalid("cleanup_interval is too large"));
        }
        check_unit("keep_fraction", self.keep_fraction)?;
        check_unit("importance_threshold", self.importance_threshold)?;
        check_unit("low_water", self.low_water)?;
        for (name, w) in [
            ("importance_weight", self.importance_weight),
            ("recency_weight", self.recency_weight),
            ("relevance_weight", self.relevance_weight),
        ] {
            if !(w.is_finite() && w >= 0.0) {
                return Err(Error::invalid(format!(
                    "{name} must be a finite number >= 0, got {w}"
                )));
            }
        }
        Ok(())
    }
}

/// One agent as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AgentRecord {
    /// Row id; other tables refer to it.
    pub id: i64,
    /// Unique name.
    pub name: String,
    /// When the agent was first used (RFC 3339 in JSON).
    #[serde(serialize_with = "serialize_micros")]
    pub created_at: i64,
    /// Messages added through the regular path so far.
    pub message_count: u64,
    /// Memory entries now (trigger-kept).
    pub memory_entries: u64,
    /// Bytes of memory content now (trigger-kept).
    pub memory_bytes: u64,
    /// The agent's memory settings.
    pub settings: MemorySettings,
    /// The tool cache scope the agent reads and writes: its own name unless it was
    /// configured to share another one.
    pub tool_scope: String,
    /// The response time target in seconds (tuned by `optimize_performance`).
    pub target_response_time: f64,
}

/// The longest agent name or tool scope, in characters.
pub const MAX_NAME_CHARS: usize = 200;

/// Checks an agent name or a tool scope (`what` says which): 1 to [`MAX_NAME_CHARS`]
/// characters, not blank, no control characters and no invisible format characters
/// (bidi overrides, zero-width spaces and joiners, the byte-order mark), which would
/// make two names look the same or a listing read backwards.
pub(crate) fn validate_label(what: &str, value: &str) -> Result<()> {
    let why = if value.trim().is_empty() {
        Some("must not be empty or blank".to_string())
    } else if value.chars().count() > MAX_NAME_CHARS {
        Some(format!("must be at most {MAX_NAME_CHARS} characters"))
    } else if value.chars().any(char::is_control) {
        Some("must not contain control characters".to_string())
    } else if value.chars().any(is_format_char) {
        Some(
            "must not contain invisible format characters (bidi controls, zero-width characters)"
                .to_string(),
        )
    } else {
        None
    };
    match why {
        Some(why) => Err(Error::invalid(format!(
            "{what} {why}, got {:?}",
            crate::error::clip(value)
        ))),
        None => Ok(()),
    }
}

/// Unicode's format characters (general category Cf): invisible, and able to reorder
/// or hide what is shown around them.
pub(crate) fn is_format_char(c: char) -> bool {
    matches!(c as u32,
        0x00AD | 0x0600..=0x0605 | 0x061C | 0x06DD | 0x070F | 0x0890..=0x0891 | 0x08E2
        | 0x180E | 0x200B..=0x200F | 0x202A..=0x202E | 0x2060..=0x2064 | 0x2066..=0x206F
        | 0xFEFF | 0xFFF9..=0xFFFB | 0x110BD | 0x110CD | 0x13430..=0x1343F
        | 0x1BCA0..=0x1BCA3 | 0x1D173..=0x1D17A | 0xE0001 | 0xE0020..=0xE007F)
}

/// A response time target: a positive finite number of seconds.
pub(crate) fn validate_target(seconds: f64) -> Result<()> {
    use super::invariants::{MAX_RESPONSE_SECONDS, MIN_TARGET_SECONDS};
    if (MIN_TARGET_SECONDS..=MAX_RESPONSE_SECONDS).contains(&seconds) {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "the target response time must be from {MIN_TARGET_SECONDS:e} to {MAX_RESPONSE_SECONDS:e} seconds, got {seconds}"
        )))
    }
}

impl Store {
    /// The agent called `name`, created with default settings on first use.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an empty or over-long name; database errors.
    pub fn agent(&self, name: &str) -> Result<AgentRecord> {
        validate_label("agent name", name)?;
        if let Some(found) = self.engine().find_agent(name)? {
            return Ok(found);
        }
        self.engine().create_agent(name, self.now_micros())
    }

    /// The agent called `name`, which must exist (for commands that only read).
    ///
    /// # Errors
    /// [`Error::UnknownAgent`] when there is no such agent.
    pub fn existing_agent(&self, name: &str) -> Result<AgentRecord> {
        self.engine()
            .find_agent(name)?
            .ok_or_else(|| Error::UnknownAgent(name.to_string()))
    }

    /// Every agent, by name.
    ///
    /// # Errors
    /// Database errors.
    pub fn agents(&self) -> Result<Vec<AgentRecord>> {
        self.engine().agents()
    }

    /// Replaces an agent's memory settings. They apply from the next call on, in this
    /// process and in every other one that uses the database.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a bad setting; [`Error::UnknownAgent`].
    pub fn set_memory_settings(&self, name: &str, settings: &MemorySettings) -> Result<()> {
        settings.validate()?;
        known(name, self.engine().set_memory_settings(name, settings)?)
    }

    /// Sets the tool cache scope of an agent: `None` returns it to its own name.
    /// Agents with the same scope share cached tool results.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a bad scope; [`Error::UnknownAgent`].
    pub fn set_tool_scope(&self, name: &str, scope: Option<&str>) -> Result<()> {
        if let Some(scope) = scope {
            validate_label("tool scope", scope)?;
        }
        known(name, self.engine().set_tool_scope(name, scope)?)
    }

    /// Sets an agent's response time target, in seconds.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] unless it is from 1 µs to a year;
    /// [`Error::UnknownAgent`].
    pub fn set_target_response_time(&self, name: &str, seconds: f64) -> Result<()> {
        validate_target(seconds)?;
        known(name, self.engine().set_target(name, seconds)?)
    }
}

/// `UnknownAgent` unless an update found the agent.
fn known(name: &str, found: bool) -> Result<()> {
    if found {
        Ok(())
    } else {
        Err(Error::UnknownAgent(name.to_string()))
    }
}

/// An agent as an import restores it (see `store::transfer`).
pub(crate) struct RestoredAgent<'a> {
    pub name: &'a str,
    pub created_at: i64,
    pub message_count: u64,
    pub settings: &'a MemorySettings,
    /// As stored: `None` is the agent's own name.
    pub tool_scope: Option<&'a str>,
    pub target_response_time: f64,
}

impl RestoredAgent<'_> {
    /// Checks every value before it reaches the database; returns the message count.
    pub(crate) fn validate(&self) -> Result<i64> {
        validate_label("agent name", self.name)?;
        if let Some(scope) = self.tool_scope {
            validate_label("tool scope", scope)?;
        }
        self.settings.validate()?;
        validate_target(self.target_response_time)?;
        i64::try_from(self.message_count).map_err(|_| {
            Error::invalid(format!("message_count {} is too large", self.message_count))
        })
    }
}
