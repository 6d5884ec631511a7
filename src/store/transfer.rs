//! Export and import: an agent's whole state (or every agent's) as JSON Lines, one
//! record per row, after a header line that names the format and its version. An
//! export reads one snapshot; an import is one transaction, so a malformed line (its
//! number is in the error) changes nothing. Export, import into an empty file and
//! export again give the same bytes. The format, its line parser and the import's
//! checks are here; the engine reads the records and restores them (`ImportSink`).

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, Read, Write};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::agents::RestoredAgent;
use super::invariants;
use super::{AgentRecord, LoggedResponse, MemorySettings, Outcome, Role, Store, ToolCounts};
use crate::clock::{deserialize_micros, serialize_micros};
use crate::error::{DbErrorKind, Error, Result};

/// The `format` of the header line.
pub const EXPORT_FORMAT: &str = "agentstore-export";
/// The format version this build writes and reads.
pub const EXPORT_VERSION: u32 = 1;
/// The longest line an import reads (a 1 MiB entry, JSON-escaped, fits easily).
pub const MAX_IMPORT_LINE: usize = 16 << 20;

/// One line of an export. Times are RFC 3339 UTC with microseconds; durations are
/// seconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub(crate) enum Record {
    /// The first line.
    Header { format: String, version: u32 },
    /// An agent and its settings; its other records follow it.
    Agent {
        name: String,
        #[serde(
            serialize_with = "serialize_micros",
            deserialize_with = "deserialize_micros"
        )]
        created_at: i64,
        message_count: u64,
        /// `null`: the agent's own name.
        tool_scope: Option<String>,
        target_response_time: f64,
        settings: MemorySettings,
    },
    /// A memory entry; `id` is its message number.
    Memory {
        agent: String,
        id: i64,
        #[serde(
            serialize_with = "serialize_micros",
            deserialize_with = "deserialize_micros"
        )]
        created_at: i64,
        importance: f64,
        /// Who said it (`note` in exports made before roles existed).
        #[serde(default)]
        role: Role,
        content: String,
    },
    /// An agent's tool counters.
    ToolCounters {
        agent: String,
        tool: String,
        total_calls: u64,
        cache_hits: u64,
        errors: u64,
        total_time: f64,
    },
    /// A cached response.
    Response {
        agent: String,
        #[serde(
            serialize_with = "serialize_micros",
            deserialize_with = "deserialize_micros"
        )]
        created_at: i64,
        #[serde(
            serialize_with = "serialize_micros",
            deserialize_with = "deserialize_micros"
        )]
        last_used_at: i64,
        hits: u64,
        message: String,
        response: String,
    },
    /// A response-log row.
    ResponseLog {
        agent: String,
        #[serde(
            serialize_with = "serialize_micros",
            deserialize_with = "deserialize_micros"
        )]
        at: i64,
        duration: f64,
        outcome: Outcome,
    },
    /// A cached tool result (expired ones included).
    ToolCache {
        scope: String,
        tool: String,
        #[serde(
            serialize_with = "serialize_micros",
            deserialize_with = "deserialize_micros"
        )]
        created_at: i64,
        #[serde(
            serialize_with = "serialize_micros",
            deserialize_with = "deserialize_micros"
        )]
        expires_at: i64,
        params: Value,
        result: Value,
    },
}

/// What an export wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ExportReport {
    /// Agents.
    pub agents: u64,
    /// Memory entries.
    pub memory_entries: u64,
    /// Tool counter rows.
    pub tool_counters: u64,
    /// Cached responses.
    pub responses: u64,
    /// Response-log rows.
    pub response_log: u64,
    /// Cached tool results.
    pub tool_results: u64,
}

/// What an import added.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ImportReport {
    /// Lines read, the header included.
    pub lines: u64,
    /// Agents created.
    pub agents_created: u64,
    /// Agents that existed: their settings were kept, the records added to them.
    pub agents_merged: u64,
    /// Memory entries added.
    pub memory_entries: u64,
    /// Tool counter rows added to.
    pub tool_counters: u64,
    /// Cached responses added.
    pub responses: u64,
    /// Cached responses skipped because the agent already had one for the message.
    pub responses_skipped: u64,
    /// Response-log rows added.
    pub response_log: u64,
    /// Cached tool results stored.
    pub tool_results: u64,
}

/// Writes `record` as one line.
fn emit(out: &mut dyn Write, record: &Record) -> Result<()> {
    serde_json::to_writer(&mut *out, record)
        .map_err(std::io::Error::from)
        .and_then(|()| out.write_all(b"\n"))
        .map_err(|source| io_error("write the export", source))
}

fn io_error(context: &str, source: std::io::Error) -> Error {
    Error::Io {
        context: context.to_string(),
        source,
    }
}

/// A cached response as an import restores it.
pub(crate) struct RestoredResponse<'a> {
    pub message: &'a str,
    pub response: &'a str,
    pub created_at: i64,
    pub last_used_at: i64,
    pub hits: u64,
}

/// What an import writes through, inside the engine's one transaction.
pub(crate) trait ImportSink {
    /// The agent called `name`, as the transaction sees it.
    fn find_agent(&mut self, name: &str) -> Result<Option<AgentRecord>>;
    /// Inserts a new agent with its settings and message counter; returns its id.
    fn restore_agent(&mut self, agent: &RestoredAgent<'_>) -> Result<i64>;
    /// Inserts one entry: with `id` for an agent the import created, else with the
    /// next message number. No cleanup runs.
    fn restore_entry(
        &mut self,
        agent_id: i64,
        id: Option<i64>,
        entry: (Role, &str, f64),
        created_at: i64,
    ) -> Result<()>;
    /// Adds counters to an agent's.
    fn restore_counts(&mut self, agent_id: i64, tool: &str, counts: &ToolCounts) -> Result<()>;
    /// Stores a response unless the agent has one for the message; whether it did.
    fn restore_response(&mut self, agent_id: i64, response: &RestoredResponse<'_>) -> Result<bool>;
    /// Appends one log row (no retention trim).
    fn restore_log(&mut self, agent_id: i64, row: &LoggedResponse) -> Result<()>;
    /// Stores one tool result, replacing a row with the same key.
    #[allow(clippy::too_many_arguments)]
    fn restore_result(
        &mut self,
        scope: &str,
        tool: &str,
        params: &Value,
        result: &Value,
        created_at: i64,
        expires_at: i64,
    ) -> Result<()>;
}

impl Store {
    /// Writes every agent's state (or only `agent`'s, with the tool results of its
    /// scope) to `out` as JSON Lines, from one snapshot.
    ///
    /// # Errors
    /// [`Error::UnknownAgent`]; database and I/O errors.
    pub fn export(&self, agent: Option<&str>, out: &mut dyn Write) -> Result<ExportReport> {
        if let Some(name) = agent {
            self.existing_agent(name)?;
        }
        let mut report = ExportReport::default();
        emit(
            out,
            &Record::Header {
                format: EXPORT_FORMAT.into(),
                version: EXPORT_VERSION,
            },
        )?;
        self.engine().export(agent, &mut |record| {
            match &record {
                Record::Header { .. } => {}
                Record::Agent { .. } => report.agents += 1,
                Record::Memory { .. } => report.memory_entries += 1,
                Record::ToolCounters { .. } => report.tool_counters += 1,
                Record::Response { .. } => report.responses += 1,
                Record::ResponseLog { .. } => report.response_log += 1,
                Record::ToolCache { .. } => report.tool_results += 1,
            }
            emit(out, &record)
        })?;
        out.flush()
            .map_err(|source| io_error("write the export", source))?;
        Ok(report)
    }

    /// Reads an export from `input` in one transaction: all of it is added, or, at
    /// the first bad line, nothing. With `rename`, the file must hold one agent and its
    /// records go to the agent called `rename` (its own tool scope follows the name).
    /// A new agent gets the file's settings, message counter and memory ids; records
    /// for an agent that exists are added to it (memory entries get new message
    /// numbers; a response to a message it already has is skipped) and its settings
    /// are kept. No cleanup runs during an import.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] naming the line for a malformed, oversized or
    /// non-UTF-8 line, an unknown record or format version, or a value out of range;
    /// database and I/O errors. Nothing is written in any of these cases.
    pub fn import(&self, input: &mut dyn BufRead, rename: Option<&str>) -> Result<ImportReport> {
        let report = self
            .engine()
            .import(&mut |sink| Importer::new(sink, rename).run(&mut *input))?;
        // Imported responses reach the word index in short transactions of their own;
        // until then lookups read them directly.
        self.engine().response_index_pending()?;
        Ok(report)
    }
}

/// An import in progress.
struct Importer<'c> {
    tx: &'c mut dyn ImportSink,
    rename: Option<&'c str>,
    /// File agent name -> (row id, created by this import).
    agents: HashMap<String, (i64, bool)>,
    /// Tool scopes renamed with their agent.
    scopes: HashMap<String, String>,
    /// For each agent this import creates: its message counter and the memory ids
    /// seen so far (ids are message numbers: unique, from 1 to the counter).
    ids: HashMap<String, (i64, HashSet<i64>)>,
    report: ImportReport,
}

impl<'c> Importer<'c> {
    fn new(tx: &'c mut dyn ImportSink, rename: Option<&'c str>) -> Self {
        Importer {
            tx,
            rename,
            agents: HashMap::new(),
            scopes: HashMap::new(),
            ids: HashMap::new(),
            report: ImportReport::default(),
        }
    }

    fn run(mut self, input: &mut dyn BufRead) -> Result<ImportReport> {
        let mut buf = Vec::new();
        let mut number = 0u64;
        loop {
            buf.clear();
            let read = (&mut *input)
                .take(MAX_IMPORT_LINE as u64 + 1)
                .read_until(b'\n', &mut buf)
                .map_err(|source| io_error("read the import", source))?;
            if read == 0 {
                break;
            }
            number += 1;
            if buf.len() > MAX_IMPORT_LINE {
                return Err(at_line(
                    number,
                    format!("longer than {MAX_IMPORT_LINE} bytes"),
                ));
            }
            let line = std::str::from_utf8(&buf).map_err(|e| {
                at_line(
                    number,
                    format!("not valid UTF-8 (at byte {})", e.valid_up_to()),
                )
            })?;
            // A byte-order mark (some editors write one) is not part of the header.
            let line = match line.strip_prefix('\u{feff}') {
                Some(rest) if number == 1 => rest,
                _ => line,
            };
            if line.trim().is_empty() {
                continue;
            }
            let record: Record =
                serde_json::from_str(line).map_err(|e| at_line(number, e.to_string()))?;
            self.apply(number, record).map_err(|e| match e {
                Error::InvalidArgument(m) => at_line(number, m),
                e @ Error::InvalidImportance(_) => at_line(number, e),
                // A duplicate row, say: the file's fault, not the database's.
                Error::Sql {
                    kind: DbErrorKind::Constraint,
                    source,
                    ..
                } => at_line(number, source),
                other => other,
            })?;
        }
        if number == 0 {
            return Err(Error::invalid(
                "the import file is empty; an export starts with a header line",
            ));
        }
        self.report.lines = number;
        Ok(self.report)
    }

    /// The row id of an agent declared earlier in the file.
    fn agent(&self, name: &str) -> Result<(i64, bool)> {
        self.agents.get(name).copied().ok_or_else(|| {
            Error::invalid(format!(
                "agent {name:?} has no agent record before this line"
            ))
        })
    }

    fn apply(&mut self, number: u64, record: Record) -> Result<()> {
        if number == 1 {
            return match record {
                Record::Header { format, version }
                    if format == EXPORT_FORMAT && version == EXPORT_VERSION =>
                {
                    Ok(())
                }
                Record::Header { format, version } if format == EXPORT_FORMAT => {
                    Err(Error::invalid(format!(
                        "export format version {version}; this build reads version {EXPORT_VERSION}"
                    )))
                }
                Record::Header { format, .. } => Err(Error::invalid(format!(
                    "format {format:?} is not {EXPORT_FORMAT:?}"
                ))),
                _ => Err(Error::invalid(
                    "the first line must be the header: {\"type\":\"header\",\"format\":\"agentstore-export\",\"version\":1}",
                )),
            };
        }
        match record {
            Record::Header { .. } => return Err(Error::invalid("a second header line")),
            Record::Agent {
                name,
                created_at,
                message_count,
                tool_scope,
                target_response_time,
                settings,
            } => {
                if self.agents.contains_key(&name) {
                    return Err(Error::invalid(format!("agent {name:?} appears twice")));
                }
                let target = match self.rename {
                    Some(_) if !self.agents.is_empty() => {
                        return Err(Error::invalid(format!(
                            "a second agent ({name:?}); --agent imports a file of one agent"
                        )));
                    }
                    Some(new) => new.to_string(),
                    None => name.clone(),
                };
                if tool_scope.is_none() && target != name {
                    self.scopes.insert(name.clone(), target.clone());
                }
                let counter = invariants::count("message_count", message_count)?;
                let entry = match self.tx.find_agent(&target)? {
                    // Same name, same creation time: this very agent, from an earlier
                    // import of this export (or exported from this file). Merging it
                    // again would add its entries and log rows twice.
                    Some(existing) if existing.created_at == created_at => {
                        return Err(Error::invalid(format!(
                            "agent {target:?} is already in this database with the same creation time: \
                             this export (or an earlier one of the same agent) was imported before, and \
                             importing it again would duplicate its entries; nothing was imported \
                             (import with --agent NEW-NAME to make a copy)"
                        )));
                    }
                    Some(existing) => {
                        self.report.agents_merged += 1;
                        (existing.id, false)
                    }
                    None => {
                        self.report.agents_created += 1;
                        let id = self.tx.restore_agent(&RestoredAgent {
                            name: &target,
                            created_at,
                            message_count,
                            settings: &settings,
                            tool_scope: tool_scope.as_deref(),
                            target_response_time,
                        })?;
                        self.ids.insert(name.clone(), (counter, HashSet::new()));
                        (id, true)
                    }
                };
                self.agents.insert(name, entry);
            }
            Record::Memory {
                agent,
                id,
                created_at,
                importance,
                role,
                content,
            } => {
                let (agent_id, new) = self.agent(&agent)?;
                if let Some((counter, seen)) = self.ids.get_mut(&agent) {
                    if id < 1 || id > *counter {
                        return Err(Error::invalid(format!(
                            "memory entry id {id} is outside 1..={counter} (ids are message numbers, \
                             up to the agent's message_count)"
                        )));
                    }
                    if !seen.insert(id) {
                        return Err(Error::invalid(format!(
                            "memory entry id {id} appears twice for agent {agent:?}"
                        )));
                    }
                }
                self.tx.restore_entry(
                    agent_id,
                    new.then_some(id),
                    (role, &content, importance),
                    created_at,
                )?;
                self.report.memory_entries += 1;
            }
            Record::ToolCounters {
                agent,
                tool,
                total_calls,
                cache_hits,
                errors,
                total_time,
            } => {
                let (agent_id, _) = self.agent(&agent)?;
                for (what, n) in [
                    ("total_calls", total_calls),
                    ("cache_hits", cache_hits),
                    ("errors", errors),
                ] {
                    invariants::count(what, n)?;
                }
                if cache_hits > total_calls || errors > total_calls {
                    return Err(Error::invalid(format!(
                        "tool {tool:?}: {cache_hits} cache hits and {errors} errors in {total_calls} calls \
                         (neither can exceed the calls)"
                    )));
                }
                invariants::seconds("total_time", total_time, invariants::MAX_TOTAL_SECONDS)?;
                let counts = ToolCounts {
                    total_calls,
                    cache_hits,
                    errors,
                    total_time,
                };
                self.tx.restore_counts(agent_id, &tool, &counts)?;
                self.report.tool_counters += 1;
            }
            Record::Response {
                agent,
                created_at,
                last_used_at,
                hits,
                message,
                response,
            } => {
                let (agent_id, _) = self.agent(&agent)?;
                invariants::count("hits", hits)?;
                invariants::ordered("created_at", created_at, "last_used_at", last_used_at)?;
                let restored = RestoredResponse {
                    message: &message,
                    response: &response,
                    created_at,
                    last_used_at,
                    hits,
                };
                if self.tx.restore_response(agent_id, &restored)? {
                    self.report.responses += 1;
                } else {
                    self.report.responses_skipped += 1;
                }
            }
            Record::ResponseLog {
                agent,
                at,
                duration,
                outcome,
            } => {
                let (agent_id, _) = self.agent(&agent)?;
                invariants::seconds("duration", duration, invariants::MAX_RESPONSE_SECONDS)?;
                crate::store::responses::validate_duration(duration)?;
                self.tx.restore_log(
                    agent_id,
                    &LoggedResponse {
                        at,
                        duration,
                        outcome,
                    },
                )?;
                self.report.response_log += 1;
            }
            Record::ToolCache {
                scope,
                tool,
                created_at,
                expires_at,
                params,
                result,
            } => {
                invariants::ordered("created_at", created_at, "expires_at", expires_at)?;
                let scope = self.scopes.get(&scope).cloned().unwrap_or(scope);
                self.tx
                    .restore_result(&scope, &tool, &params, &result, created_at, expires_at)?;
                self.report.tool_results += 1;
            }
        }
        Ok(())
    }
}

fn at_line(number: u64, what: impl std::fmt::Display) -> Error {
    Error::invalid(format!("import line {number}: {what}"))
}
