//! The MCP tools: their definitions (names, titles, JSON schemas of their arguments
//! and results, the protocol's hints) and what each call does to the store.
//!
//! A call's arguments are read here, not by the SDK, so that every mistake a model
//! can make (a wrong type, a missing or unknown field, importance 7, an empty query,
//! an unknown id, content over the limit) comes back as a tool error it can read and
//! correct, never as a protocol error.

use std::sync::Arc;

use agentstore::{
    AgentRecord, ForgetTarget, ListOrder, MAX_CONTENT_BYTES, MemoryEntry, Role, SearchOptions,
    Store, agent::context_text, clock::to_rfc3339,
};
use rmcp::model::{CallToolResult, ContentBlock, JsonObject, Tool, ToolAnnotations};
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Hits `recall` returns at most.
pub const MAX_RECALL: u64 = 100;
/// Entries `list_memories` returns at most.
pub const MAX_LIST: u64 = 1000;
/// The longest context `context` packs, in characters.
pub const MAX_CONTEXT_CHARS: u64 = 1 << 20;
/// Ids one `forget` takes at most.
pub const MAX_FORGET_IDS: usize = 10_000;

/// Whose memory the tools reach.
#[derive(Debug, Clone)]
pub enum Scope {
    /// This agent's only (`--agent`); the tools take no `agent` argument.
    Fixed(AgentRecord),
    /// Any agent, named by each call's `agent` argument (`--any-agent`).
    Any,
}

/// Who said an entry (the store's roles).
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RoleArg {
    /// The user's message.
    User,
    /// The agent's reply.
    Assistant,
    /// A system instruction.
    System,
    /// A tool's output.
    Tool,
    /// A fact or note (the default).
    #[default]
    Note,
}

impl From<RoleArg> for Role {
    fn from(r: RoleArg) -> Role {
        match r {
            RoleArg::User => Role::User,
            RoleArg::Assistant => Role::Assistant,
            RoleArg::System => Role::System,
            RoleArg::Tool => Role::Tool,
            RoleArg::Note => Role::Note,
        }
    }
}

impl From<Role> for RoleArg {
    fn from(r: Role) -> RoleArg {
        match r {
            Role::User => RoleArg::User,
            Role::Assistant => RoleArg::Assistant,
            Role::System => RoleArg::System,
            Role::Tool => RoleArg::Tool,
            Role::Note => RoleArg::Note,
        }
    }
}

/// The order of `list_memories`.
#[derive(Debug, Clone, Copy, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum OrderArg {
    /// Newest first (the default).
    #[default]
    Time,
    /// Most important first, newest first among equals.
    Importance,
}

fn half() -> f64 {
    0.5
}

fn ten() -> u64 {
    10
}

fn twenty() -> u64 {
    20
}

fn two_thousand() -> u64 {
    2000
}

/// `remember`'s arguments.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RememberArgs {
    /// The agent (only on a server started with --any-agent; created on first use).
    #[serde(default)]
    pub agent: Option<String>,
    /// The text to remember (at most 1 MiB of UTF-8).
    pub content: String,
    /// How much it matters, from 0 to 1 (default 0.5). Cleanup removes the least
    /// important entries first, and the context prefers important ones.
    #[serde(default = "half")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub importance: f64,
    /// Who said it (default "note": a fact or note).
    #[serde(default)]
    pub role: RoleArg,
}

/// `recall`'s arguments.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RecallArgs {
    /// The agent (only on a server started with --any-agent).
    #[serde(default)]
    pub agent: Option<String>,
    /// What to look for: words (entries with more of them, and rarer ones, rank
    /// higher), `retr*` for a prefix, `"rate limit"` for a phrase. Case and accents
    /// are ignored.
    pub query: String,
    /// At most this many matches, 1 to 100 (default 10).
    #[serde(default = "ten")]
    #[schemars(range(min = 1, max = 100))]
    pub limit: u64,
    /// Only entries of this role.
    #[serde(default)]
    pub role: Option<RoleArg>,
}

/// `context`'s arguments.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ContextArgs {
    /// The agent (only on a server started with --any-agent).
    #[serde(default)]
    pub agent: Option<String>,
    /// The message the context is for: entries relevant to it rank higher, beside
    /// importance and recency. Without it, importance and recency alone.
    #[serde(default)]
    pub query: Option<String>,
    /// The character budget of the packed entries (default 2000, the agent's).
    #[serde(default = "two_thousand")]
    #[schemars(range(min = 1, max = 1048576))]
    pub max_chars: u64,
}

/// `list_memories`'s arguments.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListArgs {
    /// The agent (only on a server started with --any-agent).
    #[serde(default)]
    pub agent: Option<String>,
    /// At most this many entries, 1 to 1000 (default 20).
    #[serde(default = "twenty")]
    #[schemars(range(min = 1, max = 1000))]
    pub limit: u64,
    /// "time" (newest first, the default) or "importance" (most important first).
    #[serde(default)]
    pub order: OrderArg,
}

/// `get_memory`'s arguments.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GetArgs {
    /// The agent (only on a server started with --any-agent).
    #[serde(default)]
    pub agent: Option<String>,
    /// The entry's id (as `remember`, `recall` and `list_memories` give it).
    pub id: i64,
}

/// `rate_memory`'s arguments.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RateArgs {
    /// The agent (only on a server started with --any-agent).
    #[serde(default)]
    pub agent: Option<String>,
    /// The entry's id.
    pub id: i64,
    /// Its new importance, from 0 to 1.
    #[schemars(range(min = 0.0, max = 1.0))]
    pub importance: f64,
}

/// `forget`'s arguments.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ForgetArgs {
    /// The agent (only on a server started with --any-agent).
    #[serde(default)]
    pub agent: Option<String>,
    /// The ids of the entries to remove (each must exist). Give this or `matching`.
    #[serde(default)]
    pub ids: Option<Vec<i64>>,
    /// Remove every entry that matches all words of this query (words, `prefix*`,
    /// `"phrases"`, as `recall` reads them). Give this or `ids`.
    #[serde(default)]
    pub matching: Option<String>,
    /// List exactly what would be removed, and remove nothing (default false).
    #[serde(default)]
    pub dry_run: bool,
}

/// `memory_stats`'s arguments.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StatsArgs {
    /// The agent (only on a server started with --any-agent).
    #[serde(default)]
    pub agent: Option<String>,
}

/// `remember`'s result.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Remembered {
    /// The new entry's id.
    pub id: i64,
    /// The agent it belongs to.
    pub agent: String,
}

/// A memory entry.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Entry {
    /// Its id.
    pub id: i64,
    /// Its text.
    pub content: String,
    /// Who said it.
    pub role: RoleArg,
    /// Its importance, 0 to 1.
    pub importance: f64,
    /// When it was added, RFC 3339 UTC.
    pub created_at: String,
    /// The UTF-8 byte length of its text.
    pub size_bytes: u64,
}

impl From<MemoryEntry> for Entry {
    fn from(e: MemoryEntry) -> Entry {
        Entry {
            id: e.id,
            content: e.content,
            role: e.role.into(),
            importance: e.importance,
            created_at: to_rfc3339(e.created_at),
            size_bytes: e.size_bytes,
        }
    }
}

/// One match of `recall`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Match {
    /// The entry's id.
    pub id: i64,
    /// Its text.
    pub content: String,
    /// Who said it.
    pub role: RoleArg,
    /// Its importance, 0 to 1.
    pub importance: f64,
    /// When it was added, RFC 3339 UTC.
    pub created_at: String,
    /// How well it matches (BM25; higher is better).
    pub score: f64,
    /// The text around the matches, which are between [ and ].
    pub snippet: String,
}

/// `recall`'s result.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Recalled {
    /// The matches, best first.
    pub matches: Vec<Match>,
}

/// `context`'s result.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Context {
    /// The packed context as the agent puts it in its prompt: a header, one
    /// `role: text` line per chosen entry in chronological order, and a note of how
    /// many were left out. Empty when nothing is remembered.
    pub text: String,
    /// Entries included.
    pub included: u64,
    /// Entries left out.
    pub truncated: u64,
    /// The ids of the included entries, in the order of `text`.
    pub ids: Vec<i64>,
}

/// `list_memories`'s result.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Listed {
    /// The entries, in the order asked for.
    pub entries: Vec<Entry>,
}

/// `forget`'s result.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Forgotten {
    /// Whether this was a dry run (nothing was removed).
    pub dry_run: bool,
    /// How many entries were (or, dry, would be) removed.
    pub count: u64,
    /// Exactly those entries.
    pub entries: Vec<Entry>,
    /// Whether the removed text is gone from the database's files too (not only
    /// from its tables). Always false on a dry run.
    pub scrubbed: bool,
}

/// `memory_stats`'s result: the original design's memory stats. With no entries,
/// only the first two are present.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Stats {
    /// Entries now.
    pub total_entries: u64,
    /// Content bytes now, in MiB.
    pub total_memory_mb: f64,
    /// Mean importance.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub avg_importance_score: Option<f64>,
    /// Content bytes as a percentage of the byte budget.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_utilization_pct: Option<f64>,
    /// Age of the oldest entry, in hours.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oldest_entry_age_hours: Option<f64>,
    /// Time between the oldest and the newest entry, in hours.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_span_hours: Option<f64>,
}

/// The hints of one tool: (read-only, destructive, idempotent).
struct Hints(bool, bool, bool);

/// A tool's definition. `any_agent`: whether calls name their agent.
fn tool<A: JsonSchema + 'static, R: JsonSchema + 'static>(
    name: &'static str,
    title: &str,
    description: &'static str,
    Hints(read_only, destructive, idempotent): Hints,
    any_agent: bool,
) -> Tool {
    use rmcp::handler::server::common::{schema_for_input, schema_for_output, schema_for_type};
    // Every argument struct is an object, so `schema_for_input` (which also strips the
    // top-level title) succeeds; the plain schema is the same one, unstripped.
    let mut input = schema_for_input::<A>()
        .unwrap_or_else(|_| schema_for_type::<A>())
        .as_ref()
        .clone();
    scope_schema(&mut input, any_agent);
    Tool::new(name, description, Arc::new(input))
        .with_title(title)
        .with_raw_output_schema(schema_for_output::<R>())
        .with_annotations(
            ToolAnnotations::with_title(title)
                .read_only(read_only)
                .destructive(destructive)
                .idempotent(idempotent)
                .open_world(false),
        )
}

/// An input schema for the scope: without the `agent` property on a fixed agent's
/// server, with `agent` required on an --any-agent one.
fn scope_schema(schema: &mut JsonObject, any_agent: bool) {
    if any_agent {
        if let Some(Value::Object(properties)) = schema.get_mut("properties")
            && let Some(Value::Object(agent)) = properties.get_mut("agent")
        {
            agent.insert("type".into(), Value::from("string"));
            agent.insert(
                "description".into(),
                Value::from("The agent whose memory this reaches."),
            );
        }
        let required = schema
            .entry("required")
            .or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(list) = required {
            list.insert(0, Value::from("agent"));
        }
    } else if let Some(Value::Object(properties)) = schema.get_mut("properties") {
        properties.remove("agent");
    }
}

/// Every tool, as `tools/list` shows them.
pub fn definitions(any_agent: bool) -> Vec<Tool> {
    vec![
        tool::<RememberArgs, Remembered>(
            "remember",
            "Remember",
            "Store a memory entry (a fact, a preference, something said) and return its id. \
             The agent's retention applies: a cleanup every so many entries keeps the most \
             important ones, within a cap and a byte budget.",
            Hints(false, false, false),
            any_agent,
        ),
        tool::<RecallArgs, Recalled>(
            "recall",
            "Recall",
            "Full-text search of the memory, best match first: id, content, role, \
             importance, created time and score of each match.",
            Hints(true, false, true),
            any_agent,
        ),
        tool::<ContextArgs, Context>(
            "context",
            "Context",
            "The packed context the agent itself puts in its prompt: entries chosen for \
             importance, recency and relevance to `query`, within `max_chars`, oldest first.",
            Hints(true, false, true),
            any_agent,
        ),
        tool::<ListArgs, Listed>(
            "list_memories",
            "List memories",
            "List memory entries, newest first or most important first.",
            Hints(true, false, true),
            any_agent,
        ),
        tool::<GetArgs, Entry>(
            "get_memory",
            "Get a memory",
            "One memory entry by id.",
            Hints(true, false, true),
            any_agent,
        ),
        tool::<RateArgs, Entry>(
            "rate_memory",
            "Rate a memory",
            "Change one entry's importance (its id, text and time stay) and return the entry \
             as it now is.",
            Hints(false, false, true),
            any_agent,
        ),
        tool::<ForgetArgs, Forgotten>(
            "forget",
            "Forget",
            "Remove entries for good, by id or every entry matching a query, and return \
             exactly what was removed; with dry_run, what would be, removing nothing. The \
             text is scrubbed from the database's files as well.",
            Hints(false, true, true),
            any_agent,
        ),
        tool::<StatsArgs, Stats>(
            "memory_stats",
            "Memory stats",
            "Entries, size in MiB, mean importance, use of the byte budget, age of the \
             oldest entry and the time span covered.",
            Hints(true, false, true),
            any_agent,
        ),
    ]
}

/// A mistake to report to the model: one line.
#[derive(Debug)]
pub struct ToolError(pub String);

impl From<agentstore::Error> for ToolError {
    fn from(e: agentstore::Error) -> ToolError {
        ToolError(e.to_string())
    }
}

type Outcome = Result<Value, ToolError>;

fn fail<T>(message: impl Into<String>) -> Result<T, ToolError> {
    Err(ToolError(message.into()))
}

/// `arguments` read as `A`, or the mistake in one line.
fn read<A: DeserializeOwned>(tool: &str, arguments: Option<JsonObject>) -> Result<A, ToolError> {
    let value = Value::Object(arguments.unwrap_or_default());
    serde_json::from_value(value).or_else(|e| fail(format!("invalid arguments for {tool}: {e}")))
}

fn json<T: Serialize>(value: T) -> Outcome {
    serde_json::to_value(value).or_else(|e| fail(format!("cannot encode the result: {e}")))
}

/// The store and whose memory the tools reach: what a call needs.
#[derive(Clone)]
pub struct Tools {
    /// The open store.
    pub store: Store,
    /// Whose memory.
    pub scope: Scope,
}

impl Tools {
    /// The agent a call reaches: the fixed one, or the one it names (created when
    /// `create`).
    fn agent(&self, named: Option<&str>, create: bool) -> Result<AgentRecord, ToolError> {
        match (&self.scope, named) {
            (Scope::Fixed(agent), None) => Ok(agent.clone()),
            (Scope::Fixed(agent), Some(name)) if name == agent.name => Ok(agent.clone()),
            (Scope::Fixed(agent), Some(name)) => fail(format!(
                "this server serves agent {:?} only, not {name:?}; leave out `agent`",
                agent.name
            )),
            (Scope::Any, None) => {
                fail("`agent` is required: this server serves any agent, so each call names one")
            }
            (Scope::Any, Some(name)) if create => Ok(self.store.agent(name)?),
            (Scope::Any, Some(name)) => Ok(self.store.existing_agent(name)?),
        }
    }

    /// Runs tool `name` with `arguments` (on the calling thread: it does I/O).
    pub fn call(&self, name: &str, arguments: Option<JsonObject>) -> Result<Value, ToolError> {
        match name {
            "remember" => self.remember(read(name, arguments)?),
            "recall" => self.recall(read(name, arguments)?),
            "context" => self.context(read(name, arguments)?),
            "list_memories" => self.list(read(name, arguments)?),
            "get_memory" => self.get(read(name, arguments)?),
            "rate_memory" => self.rate(read(name, arguments)?),
            "forget" => self.forget(read(name, arguments)?),
            "memory_stats" => self.stats(read(name, arguments)?),
            other => fail(format!("no tool named {other:?}")),
        }
    }

    fn remember(&self, a: RememberArgs) -> Outcome {
        if a.content.len() > MAX_CONTENT_BYTES {
            return fail(format!(
                "the content is {} bytes; the limit is {MAX_CONTENT_BYTES} (1 MiB)",
                a.content.len()
            ));
        }
        let agent = self.agent(a.agent.as_deref(), true)?;
        let id = self
            .store
            .memory(&agent)
            .add_as(a.role.into(), &a.content, a.importance)?;
        json(Remembered {
            id,
            agent: agent.name,
        })
    }

    fn recall(&self, a: RecallArgs) -> Outcome {
        if !a.query.chars().any(char::is_alphanumeric) {
            return fail("the query is empty: give words to look for");
        }
        if a.limit == 0 || a.limit > MAX_RECALL {
            return fail(format!(
                "limit must be between 1 and {MAX_RECALL}, not {}",
                a.limit
            ));
        }
        let agent = self.agent(a.agent.as_deref(), false)?;
        let mut options = SearchOptions::default().with_limit(a.limit);
        if let Some(role) = a.role {
            options = options.with_role(role.into());
        }
        let hits = self.store.memory(&agent).search(&a.query, &options)?;
        json(Recalled {
            matches: hits
                .into_iter()
                .map(|h| Match {
                    id: h.id,
                    content: h.content,
                    role: h.role.into(),
                    importance: h.importance,
                    created_at: to_rfc3339(h.created_at),
                    score: h.score,
                    snippet: h.snippet,
                })
                .collect(),
        })
    }

    fn context(&self, a: ContextArgs) -> Outcome {
        if a.max_chars == 0 || a.max_chars > MAX_CONTEXT_CHARS {
            return fail(format!(
                "max_chars must be between 1 and {MAX_CONTEXT_CHARS}, not {}",
                a.max_chars
            ));
        }
        let agent = self.agent(a.agent.as_deref(), false)?;
        let memory = self.store.memory(&agent);
        let context = match a.query.as_deref() {
            Some(q) if !q.trim().is_empty() => memory.context_for(q, a.max_chars)?,
            _ => memory.context(a.max_chars)?,
        };
        json(Context {
            text: context_text(&context),
            included: context.included,
            truncated: context.truncated,
            ids: context.entries.iter().map(|e| e.id).collect(),
        })
    }

    fn list(&self, a: ListArgs) -> Outcome {
        if a.limit == 0 || a.limit > MAX_LIST {
            return fail(format!(
                "limit must be between 1 and {MAX_LIST}, not {}",
                a.limit
            ));
        }
        let agent = self.agent(a.agent.as_deref(), false)?;
        let order = match a.order {
            OrderArg::Time => ListOrder::Time,
            OrderArg::Importance => ListOrder::Importance,
        };
        let entries = self.store.memory(&agent).list(order, a.limit)?;
        json(Listed {
            entries: entries.into_iter().map(Entry::from).collect(),
        })
    }

    fn get(&self, a: GetArgs) -> Outcome {
        let agent = self.agent(a.agent.as_deref(), false)?;
        match self.store.memory(&agent).get(a.id)? {
            Some(entry) => json(Entry::from(entry)),
            None => fail(no_entry(&agent, a.id)),
        }
    }

    fn rate(&self, a: RateArgs) -> Outcome {
        let agent = self.agent(a.agent.as_deref(), false)?;
        match self.store.memory(&agent).rate(a.id, a.importance)? {
            Some(entry) => json(Entry::from(entry)),
            None => fail(no_entry(&agent, a.id)),
        }
    }

    fn forget(&self, a: ForgetArgs) -> Outcome {
        let target = match (a.ids, a.matching) {
            (Some(_), Some(_)) => return fail("give `ids` or `matching`, not both"),
            (None, None) => {
                return fail("give `ids` (a list of entry ids) or `matching` (a query)");
            }
            (Some(ids), None) if ids.is_empty() => return fail("`ids` is empty"),
            (Some(ids), None) if ids.len() > MAX_FORGET_IDS => {
                return fail(format!(
                    "{} ids; one forget takes at most {MAX_FORGET_IDS}",
                    ids.len()
                ));
            }
            (Some(ids), None) => ForgetTarget::Ids(ids),
            (None, Some(q)) if !q.chars().any(char::is_alphanumeric) => {
                return fail("`matching` is empty: give words to match");
            }
            (None, Some(q)) => ForgetTarget::Matching(q),
        };
        let agent = self.agent(a.agent.as_deref(), false)?;
        let report = self.store.memory(&agent).forget(&target, a.dry_run)?;
        json(Forgotten {
            dry_run: report.dry_run,
            count: report.entries.len() as u64,
            entries: report.entries.into_iter().map(Entry::from).collect(),
            scrubbed: report.scrubbed,
        })
    }

    fn stats(&self, a: StatsArgs) -> Outcome {
        let agent = self.agent(a.agent.as_deref(), false)?;
        let s = self.store.memory(&agent).stats()?;
        json(Stats {
            total_entries: s.total_entries,
            total_memory_mb: s.total_memory_mb,
            avg_importance_score: s.avg_importance_score,
            memory_utilization_pct: s.memory_utilization_pct,
            oldest_entry_age_hours: s.oldest_entry_age_hours,
            memory_span_hours: s.memory_span_hours,
        })
    }
}

fn no_entry(agent: &AgentRecord, id: i64) -> String {
    format!("agent {:?} has no memory entry {id}", agent.name)
}

/// A call's outcome as the protocol's result: structured content (and its JSON as
/// text) on success, `isError` with the one-line message on a mistake.
pub fn result(outcome: Result<Value, ToolError>) -> CallToolResult {
    match outcome {
        Ok(value) => CallToolResult::structured(value),
        Err(ToolError(message)) => {
            CallToolResult::error(vec![ContentBlock::text(message.replace('\n', " "))])
        }
    }
}
