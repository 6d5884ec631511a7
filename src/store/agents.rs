//! Agents: one row each in `agents`, holding the agent's settings and the counters that
//! the memory triggers keep. Every other table hangs off an agent.

use rusqlite::{OptionalExtension, Row, params};
use serde::Serialize;

use super::Store;
use crate::clock::serialize_micros;
use crate::error::{Error, Result, SqlContext};

/// An agent's memory settings, stored in its row so that the running agent and the
/// admin CLI apply the same limits. Defaults are the original design's.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
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
            low_water: 0.8,
        }
    }
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

/// The columns of an [`AgentRecord`], from `agents a JOIN memory_counters c`.
const AGENT_COLUMNS: &str = "a.id, a.name, a.created_at, c.message_count, c.entries, c.bytes, \
     a.max_memory_mb, a.max_entries, a.cleanup_interval, a.keep_fraction, \
     a.importance_threshold, a.importance_weight, a.recency_weight, a.low_water, \
     coalesce(a.tool_scope, a.name), a.target_response_time \
     FROM agents a JOIN memory_counters c ON c.agent_id = a.id";

/// The eight memory settings in `agents` column order, starting at column `first`.
pub(crate) fn settings_from_row(r: &Row<'_>, first: usize) -> rusqlite::Result<MemorySettings> {
    Ok(MemorySettings {
        max_memory_mb: r.get(first)?,
        max_entries: r.get(first + 1)?,
        cleanup_interval: r.get(first + 2)?,
        keep_fraction: r.get(first + 3)?,
        importance_threshold: r.get(first + 4)?,
        importance_weight: r.get(first + 5)?,
        recency_weight: r.get(first + 6)?,
        low_water: r.get(first + 7)?,
    })
}

fn agent_from_row(r: &Row<'_>) -> rusqlite::Result<AgentRecord> {
    Ok(AgentRecord {
        id: r.get(0)?,
        name: r.get(1)?,
        created_at: r.get(2)?,
        message_count: r.get(3)?,
        memory_entries: r.get(4)?,
        memory_bytes: r.get(5)?,
        settings: settings_from_row(r, 6)?,
        tool_scope: r.get(14)?,
        target_response_time: r.get(15)?,
    })
}

/// The longest agent name or tool scope, in characters.
pub const MAX_NAME_CHARS: usize = 200;

/// Checks an agent name or a tool scope (`what` says which): 1 to [`MAX_NAME_CHARS`]
/// characters, not blank, no control characters and no invisible format characters
/// (bidi overrides, zero-width spaces and joiners, the byte-order mark), which would
/// make two names look the same or a listing read backwards.
fn validate_label(what: &str, value: &str) -> Result<()> {
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
fn validate_target(seconds: f64) -> Result<()> {
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
    /// [`Error::InvalidArgument`] for an empty or over-long name; SQLite errors.
    pub fn agent(&self, name: &str) -> Result<AgentRecord> {
        validate_label("agent name", name)?;
        if let Some(found) = self.read(|c| lookup(c, name))? {
            return Ok(found);
        }
        const INSERT: &str =
            "INSERT INTO agents (name, created_at) VALUES (?1, ?2) ON CONFLICT (name) DO NOTHING";
        let now = self.now_micros();
        self.write(|tx| {
            tx.prepare_cached(INSERT)
                .and_then(|mut s| s.execute(params![name, now]))
                .sql(INSERT)?;
            lookup(tx, name)?.ok_or_else(|| Error::UnknownAgent(name.to_string()))
        })
    }

    /// The agent called `name`, which must exist (for commands that only read).
    ///
    /// # Errors
    /// [`Error::UnknownAgent`] when there is no such agent.
    pub fn existing_agent(&self, name: &str) -> Result<AgentRecord> {
        self.read(|c| lookup(c, name))?
            .ok_or_else(|| Error::UnknownAgent(name.to_string()))
    }

    /// Every agent, by name.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn agents(&self) -> Result<Vec<AgentRecord>> {
        let sql = format!("SELECT {AGENT_COLUMNS} ORDER BY a.name");
        self.read(|c| {
            let mut stmt = c.prepare_cached(&sql).sql(&sql)?;
            let rows = stmt.query_map([], agent_from_row).sql(&sql)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().sql(&sql)
        })
    }

    /// Replaces an agent's memory settings. They apply from the next call on, in this
    /// process and in every other one that uses the file.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a bad setting; [`Error::UnknownAgent`].
    pub fn set_memory_settings(&self, name: &str, settings: &MemorySettings) -> Result<()> {
        settings.validate()?;
        const UPDATE: &str = "UPDATE agents SET max_memory_mb = ?2, max_entries = ?3, \
             cleanup_interval = ?4, keep_fraction = ?5, importance_threshold = ?6, \
             importance_weight = ?7, recency_weight = ?8, low_water = ?9 WHERE name = ?1";
        let s = settings;
        let changed = self.write(|tx| {
            tx.execute(
                UPDATE,
                params![
                    name,
                    s.max_memory_mb,
                    s.max_entries as i64,
                    s.cleanup_interval as i64,
                    s.keep_fraction,
                    s.importance_threshold,
                    s.importance_weight,
                    s.recency_weight,
                    s.low_water
                ],
            )
            .sql(UPDATE)
        })?;
        if changed == 0 {
            return Err(Error::UnknownAgent(name.to_string()));
        }
        Ok(())
    }
}

impl Store {
    /// Sets the tool cache scope of an agent: `None` returns it to its own name.
    /// Agents with the same scope share cached tool results.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a bad scope; [`Error::UnknownAgent`].
    pub fn set_tool_scope(&self, name: &str, scope: Option<&str>) -> Result<()> {
        if let Some(scope) = scope {
            validate_label("tool scope", scope)?;
        }
        const UPDATE: &str = "UPDATE agents SET tool_scope = ?2 WHERE name = ?1";
        let changed = self.write(|tx| tx.execute(UPDATE, params![name, scope]).sql(UPDATE))?;
        if changed == 0 {
            return Err(Error::UnknownAgent(name.to_string()));
        }
        Ok(())
    }

    /// Sets an agent's response time target, in seconds.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] unless it is a positive finite number;
    /// [`Error::UnknownAgent`].
    pub fn set_target_response_time(&self, name: &str, seconds: f64) -> Result<()> {
        validate_target(seconds)?;
        const UPDATE: &str = "UPDATE agents SET target_response_time = ?2 WHERE name = ?1";
        let changed = self.write(|tx| tx.execute(UPDATE, params![name, seconds]).sql(UPDATE))?;
        if changed == 0 {
            return Err(Error::UnknownAgent(name.to_string()));
        }
        Ok(())
    }
}

fn lookup(c: &rusqlite::Connection, name: &str) -> Result<Option<AgentRecord>> {
    let sql = format!("SELECT {AGENT_COLUMNS} WHERE a.name = ?1");
    c.prepare_cached(&sql)
        .and_then(|mut s| s.query_row([name], agent_from_row).optional())
        .sql(&sql)
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

/// The agent called `name`, in the caller's transaction.
pub(crate) fn find_agent(tx: &rusqlite::Connection, name: &str) -> Result<Option<AgentRecord>> {
    lookup(tx, name)
}

/// Inserts a new agent with its settings and message counter, in the caller's
/// transaction; returns its id.
pub(crate) fn restore_agent(tx: &rusqlite::Connection, a: &RestoredAgent<'_>) -> Result<i64> {
    validate_label("agent name", a.name)?;
    if let Some(scope) = a.tool_scope {
        validate_label("tool scope", scope)?;
    }
    a.settings.validate()?;
    validate_target(a.target_response_time)?;
    let message_count = i64::try_from(a.message_count)
        .map_err(|_| Error::invalid(format!("message_count {} is too large", a.message_count)))?;
    const INSERT: &str = "INSERT INTO agents (name, created_at, max_memory_mb, max_entries, \
         cleanup_interval, keep_fraction, importance_threshold, importance_weight, \
         recency_weight, low_water, tool_scope, target_response_time) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12) RETURNING id";
    const COUNT: &str = "UPDATE memory_counters SET message_count = ?2 WHERE agent_id = ?1";
    let s = a.settings;
    let id: i64 = tx
        .prepare_cached(INSERT)
        .and_then(|mut st| {
            st.query_row(
                params![
                    a.name,
                    a.created_at,
                    s.max_memory_mb,
                    s.max_entries as i64,
                    s.cleanup_interval as i64,
                    s.keep_fraction,
                    s.importance_threshold,
                    s.importance_weight,
                    s.recency_weight,
                    s.low_water,
                    a.tool_scope,
                    a.target_response_time
                ],
                |r| r.get(0),
            )
        })
        .sql(INSERT)?;
    tx.prepare_cached(COUNT)
        .and_then(|mut st| st.execute(params![id, message_count]))
        .sql(COUNT)?;
    Ok(id)
}
