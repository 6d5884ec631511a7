//! The async layer: what an agent does with the store. [`Agent`] composes an agent's
//! memory, its tools with the cached executor ([`Tools`]), its response path
//! ([`Responder`]) and one [`LlmClient`]. Store calls that may wait run off the async
//! workers (see `batch::blocking`); the store itself stays synchronous.

mod batch;
mod lease;
pub mod llm;
mod responses;
mod tools;

use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;

pub use crate::store::Optimization;
pub use lease::DEFAULT_LEASE;
pub use llm::{ChatMessage, Latency, LlmClient, LlmError, Role, SimulatedClient};
#[cfg(feature = "openai")]
pub use llm::{OpenAiClient, OpenAiConfig};
pub use responses::{
    FALLBACK_LONG, FALLBACK_OTHER, FALLBACK_QUESTION, FnGenerator, GenerationError, LateAnswer,
    Reply, Responder, ResponseConfig, ResponseGenerator, fallback_reply, generator_fn,
};
pub use tools::{
    NEVER_CACHED, ParallelOptions, Tool, ToolConfig, ToolError, ToolOutcome, ToolRegistry,
    ToolRequest, Tools,
};

use crate::error::{Error, Result};
use crate::store::Role as MemoryRole;
use crate::store::{
    AgentRecord, CompressedContext, ListOrder, MAX_CONTENT_BYTES, Memory, MemoryEntry,
    MemorySettings, MemoryStats, Outcome, Prune, PruneReport, ResponseTimeStats, Store, ToolStats,
};
use batch::blocking;

/// The importance given to the two memory entries of an exchange.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Importance {
    /// The user's message (0.5).
    pub user: f64,
    /// The agent's reply (0.4).
    pub reply: f64,
}

/// Builder methods: `Importance::default()` (or a constructor), then `with_*`.
impl Importance {
    /// The importance of the user's message and of the agent's reply.
    pub fn new(user: f64, reply: f64) -> Self {
        Importance { user, reply }
    }

    /// This configuration with another `user`.
    pub fn with_user(mut self, user: f64) -> Self {
        self.user = user;
        self
    }

    /// This configuration with another `reply`.
    pub fn with_reply(mut self, reply: f64) -> Self {
        self.reply = reply;
        self
    }
}

impl Default for Importance {
    fn default() -> Self {
        Importance {
            user: 0.5,
            reply: 0.4,
        }
    }
}

/// The instructions that open every prompt unless configured otherwise.
pub const DEFAULT_SYSTEM_PROMPT: &str =
    "You are a helpful assistant. Answer briefly and use what you remember when it helps.";

/// Everything [`Agent::open`] composes an agent from.
#[derive(Clone)]
#[non_exhaustive]
pub struct AgentConfig {
    /// The model that generates responses.
    pub llm: Arc<dyn LlmClient>,
    /// The tools the agent can call.
    pub tools: ToolRegistry,
    /// How tool calls are cached and counted.
    pub tool_config: ToolConfig,
    /// How messages are answered.
    pub responses: ResponseConfig,
    /// Memory settings to store as the agent's (`None` keeps the stored ones, which
    /// are the original's defaults for a new agent).
    pub memory: Option<MemorySettings>,
    /// Importance of the entries an exchange adds to memory.
    pub importance: Importance,
    /// The character budget of the compressed context in a prompt (2,000).
    pub context_chars: u64,
    /// The system prompt; the compressed context follows it.
    pub system_prompt: String,
    /// Whether the context of a prompt is chosen for relevance to the incoming
    /// message as well as for importance and recency ([`Memory::context_for`]; on by
    /// default). Off, it is [`Memory::context`].
    pub relevant_context: bool,
}

/// Builder methods: `AgentConfig::default()` (or a constructor), then `with_*`.
impl AgentConfig {
    /// This configuration with another `tool_config`.
    pub fn with_tool_config(mut self, tool_config: ToolConfig) -> Self {
        self.tool_config = tool_config;
        self
    }

    /// This configuration with another `responses`.
    pub fn with_responses(mut self, responses: ResponseConfig) -> Self {
        self.responses = responses;
        self
    }

    /// This configuration storing `memory` as the agent's memory settings.
    pub fn with_memory(mut self, memory: MemorySettings) -> Self {
        self.memory = Some(memory);
        self
    }

    /// This configuration with another `importance`.
    pub fn with_importance(mut self, importance: Importance) -> Self {
        self.importance = importance;
        self
    }

    /// This configuration with another `context_chars`.
    pub fn with_context_chars(mut self, context_chars: u64) -> Self {
        self.context_chars = context_chars;
        self
    }

    /// This configuration choosing the context for relevance to the message, or not.
    pub fn with_relevant_context(mut self, relevant_context: bool) -> Self {
        self.relevant_context = relevant_context;
        self
    }

    /// This configuration with another `system_prompt`.
    pub fn with_system_prompt(mut self, system_prompt: impl Into<String>) -> Self {
        self.system_prompt = system_prompt.into();
        self
    }
}

impl AgentConfig {
    /// The defaults, generating with `llm`, with no tools.
    pub fn new(llm: impl LlmClient + 'static) -> Self {
        Self::with_llm(Arc::new(llm))
    }

    /// [`AgentConfig::new`] with a shared client.
    pub fn with_llm(llm: Arc<dyn LlmClient>) -> Self {
        AgentConfig {
            llm,
            tools: ToolRegistry::new(),
            tool_config: ToolConfig::default(),
            responses: ResponseConfig::default(),
            memory: None,
            importance: Importance::default(),
            context_chars: 2000,
            system_prompt: DEFAULT_SYSTEM_PROMPT.to_string(),
            relevant_context: true,
        }
    }

    /// Adds a tool.
    pub fn tool(mut self, tool: impl Tool + 'static) -> Self {
        self.tools.register(tool);
        self
    }
}

impl std::fmt::Debug for AgentConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentConfig")
            .field("llm", &self.llm.describe())
            .field("tools", &self.tools.names())
            .field("tool_config", &self.tool_config)
            .field("responses", &self.responses)
            .field("memory", &self.memory)
            .field("importance", &self.importance)
            .field("context_chars", &self.context_chars)
            .finish_non_exhaustive()
    }
}

/// Everything an agent knows about itself, in one serialisable document.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AgentStats {
    /// The agent's name.
    pub agent: String,
    /// The model, as [`LlmClient::describe`] says.
    pub llm: String,
    /// The original's memory stats.
    pub memory: MemoryStats,
    /// The original's tool performance stats.
    pub tools: ToolStats,
    /// The original's response-time stats.
    pub responses: ResponseTimeStats,
}

/// The generator behind an agent's responses: the compressed context and the message,
/// sent to the LLM.
struct LlmGenerator {
    memory: Memory,
    llm: Arc<dyn LlmClient>,
    system_prompt: String,
    context_chars: u64,
    relevant_context: bool,
}

/// The header above the remembered lines of a prompt.
pub const CONTEXT_HEADER: &str = "What you remember, oldest first (chosen for importance, \
     recency and relevance to this message; each line says who said it):";

impl LlmGenerator {
    /// The prompt for `message`: the system prompt, then what the agent remembers, one
    /// `role: text` line per entry in chronological order.
    async fn prompt(&self, message: &str) -> Result<Vec<ChatMessage>> {
        let (memory, chars) = (self.memory.clone(), self.context_chars);
        let query = self.relevant_context.then(|| message.to_string());
        let context = blocking(move || match query {
            Some(query) => memory.context_for(&query, chars),
            None => memory.context(chars),
        })
        .await?;
        Ok(vec![
            ChatMessage::system(prompt_text(&self.system_prompt, &context)),
            ChatMessage::user(message),
        ])
    }
}

/// The system prompt with the remembered lines under [`CONTEXT_HEADER`].
pub fn prompt_text(system_prompt: &str, context: &CompressedContext) -> String {
    let remembered = context_text(context);
    if remembered.is_empty() {
        return system_prompt.to_string();
    }
    format!("{system_prompt}\n\n{remembered}")
}

/// What a prompt says the agent remembers: [`CONTEXT_HEADER`], one `role: text` line
/// per entry of `context` in chronological order, and a note of how many were left
/// out; empty when `context` has no entries.
pub fn context_text(context: &CompressedContext) -> String {
    let mut text = String::new();
    if context.entries.is_empty() {
        return text;
    }
    text.push_str(CONTEXT_HEADER);
    for e in &context.entries {
        text.push('\n');
        text.push_str(e.role.as_str());
        text.push_str(": ");
        text.push_str(&e.content);
    }
    if context.truncated > 0 {
        text.push_str(&format!(
            "\n[... {} earlier messages truncated for length ...]",
            context.truncated
        ));
    }
    text
}

#[async_trait::async_trait]
impl ResponseGenerator for LlmGenerator {
    async fn generate(&self, message: &str) -> std::result::Result<String, GenerationError> {
        let prompt = self
            .prompt(message)
            .await
            .map_err(|e| GenerationError::other(format!("cannot build the prompt: {e}")))?;
        Ok(self.llm.chat(&prompt).await?)
    }
}

/// An agent: its memory, tools, response cache and LLM over one [`Store`]. Everything
/// it learns is in the file, so a restarted agent carries on where it stopped.
///
/// ```
/// use agentstore::agent::{Agent, AgentConfig, SimulatedClient};
/// use agentstore::{Store, StoreOptions};
///
/// # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
/// # async fn main() -> agentstore::Result<()> {
/// let dir = tempfile::tempdir().unwrap();
/// let store = Store::open(dir.path().join("agent.db"), StoreOptions::default())?;
/// let config = AgentConfig::new(SimulatedClient::instant(42));
/// let agent = Agent::open(&store, "assistant", config.clone()).await?;
/// let first = agent.process_message("what is a write-ahead log?").await?;
/// agent.close().await?;
///
/// // A new process (here: a new agent over the same file) answers from the cache.
/// let agent = Agent::open(&store, "assistant", config).await?;
/// let again = agent.process_message("what is a write-ahead log?").await?;
/// assert_eq!(again.response, first.response);
/// assert_eq!(again.outcome, agentstore::Outcome::Exact);
/// agent.close().await?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Agent {
    record: AgentRecord,
    memory: Memory,
    tools: Tools,
    responder: Responder,
    llm: Arc<dyn LlmClient>,
    importance: Importance,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("name", &self.record.name)
            .field("llm", &self.llm.describe())
            .finish_non_exhaustive()
    }
}

impl Agent {
    /// The agent called `name` in `store` (created on first use), composed as `config`
    /// says. Memory settings and a tool scope in `config` are stored in the agent's row.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a bad name, settings or fuzzy threshold; SQLite
    /// errors.
    pub async fn open(store: &Store, name: &str, config: AgentConfig) -> Result<Agent> {
        let (s, owned) = (store.clone(), name.to_string());
        let settings = config.memory;
        let (registry, tool_config) = (config.tools, config.tool_config);
        // Every store call of opening (the agent's row, its settings, its tool scope)
        // runs off the async worker.
        let (record, tools) = blocking(move || {
            s.agent(&owned)?;
            if let Some(settings) = settings {
                s.set_memory_settings(&owned, &settings)?;
            }
            let record = s.agent(&owned)?;
            let tools = Tools::open(&s, &record, registry, tool_config)?;
            Ok::<_, Error>((record, tools))
        })
        .await?;
        let memory = store.memory(&record);
        let generator = LlmGenerator {
            memory: memory.clone(),
            llm: config.llm.clone(),
            system_prompt: config.system_prompt,
            context_chars: config.context_chars,
            relevant_context: config.relevant_context,
        };
        let responder =
            Responder::with_generator(store, &record, Arc::new(generator), config.responses)?;
        Ok(Agent {
            record,
            memory,
            tools,
            responder,
            llm: config.llm,
            importance: config.importance,
        })
    }

    /// The agent's name.
    pub fn name(&self) -> &str {
        &self.record.name
    }

    /// The agent's row as it was when opened.
    pub fn record(&self) -> &AgentRecord {
        &self.record
    }

    /// The agent's memory entries, up to `limit` in `order` (see [`Memory::list`]).
    ///
    /// # Errors
    /// Database errors.
    pub async fn memories(&self, order: ListOrder, limit: u64) -> Result<Vec<MemoryEntry>> {
        let memory = self.memory.clone();
        blocking(move || memory.list(order, limit)).await
    }

    /// The original's memory stats (see [`Memory::stats`]).
    ///
    /// # Errors
    /// Database errors.
    pub async fn memory_stats(&self) -> Result<MemoryStats> {
        let memory = self.memory.clone();
        blocking(move || memory.stats()).await
    }

    /// Prunes the agent's memory by `rule`, or counts what it would remove (see
    /// [`Memory::prune`]: batched, resumable).
    ///
    /// # Errors
    /// As [`Memory::prune`].
    pub async fn prune_memory(&self, rule: Prune, dry_run: bool) -> Result<PruneReport> {
        let memory = self.memory.clone();
        blocking(move || memory.prune(rule, dry_run)).await
    }

    /// The agent's memory (synchronous; call it from blocking code, or use the async
    /// [`Agent::memories`], [`Agent::memory_stats`], [`Agent::prune_memory`]).
    pub fn memory(&self) -> &Memory {
        &self.memory
    }

    /// The tool executor.
    pub fn tools(&self) -> &Tools {
        &self.tools
    }

    /// The response path.
    pub fn responder(&self) -> &Responder {
        &self.responder
    }

    /// The LLM client.
    pub fn llm(&self) -> &Arc<dyn LlmClient> {
        &self.llm
    }

    /// Answers `message` (see [`Responder::process_message`]: exact, fuzzy, generated
    /// from the compressed context and the message under the target time, or a
    /// fallback) and adds the exchange to memory with the configured importance.
    ///
    /// # Errors
    /// As [`Agent::process_message_with`].
    pub async fn process_message(&self, message: &str) -> Result<Reply> {
        self.process_message_with(message, self.importance).await
    }

    /// [`Agent::process_message`] with the importance of this exchange's entries. The
    /// message (role `user`) and the reply (`assistant`) are added in one transaction
    /// after the answer; a reply over the entry size limit (1 MiB) is answered but not
    /// remembered. A fallback reply is never remembered: the message is added alone,
    /// and the generation's own response follows it into memory if it finishes within
    /// the grace period ([`Responder::settle`] waits for that). A failed generation
    /// adds nothing.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an empty message, one over 1 MiB or an importance
    /// outside 0..1 (checked before anything runs); [`Error::GenerationFailed`] when the
    /// LLM fails; database errors.
    pub async fn process_message_with(
        &self,
        message: &str,
        importance: Importance,
    ) -> Result<Reply> {
        if message.trim().is_empty() {
            return Err(Error::invalid("the message is empty"));
        }
        for value in [importance.user, importance.reply] {
            if !(value.is_finite() && (0.0..=1.0).contains(&value)) {
                return Err(Error::InvalidImportance(value));
            }
        }
        // A fallback is not the agent's answer: memory gets the real one if the
        // generation finishes in its grace period, after the user's message is in.
        let (stored, user_is_in) = tokio::sync::oneshot::channel::<()>();
        let memory = self.memory.clone();
        let late: LateAnswer = Box::new(move |response: String| {
            Box::pin(async move {
                if user_is_in.await.is_ok() && response.len() <= MAX_CONTENT_BYTES {
                    let _ = blocking(move || {
                        memory.add_as(MemoryRole::Assistant, &response, importance.reply)
                    })
                    .await;
                }
            })
        });
        let reply = self
            .responder
            .process_message_then(message, Some(late))
            .await?;
        let mut exchange = vec![(MemoryRole::User, message.to_string(), importance.user)];
        if reply.outcome != Outcome::Fallback
            && reply.response.len() <= MAX_CONTENT_BYTES
            && !reply.response.is_empty()
        {
            exchange.push((
                MemoryRole::Assistant,
                reply.response.clone(),
                importance.reply,
            ));
        }
        let memory = self.memory.clone();
        blocking(move || memory.add_many_as(&exchange)).await?;
        let _ = stored.send(());
        Ok(reply)
    }

    /// Adds a memory entry (a fact, a note) outside a conversation.
    ///
    /// # Errors
    /// As [`Memory::add`].
    pub async fn remember(&self, content: &str, importance: f64) -> Result<i64> {
        let (memory, content) = (self.memory.clone(), content.to_string());
        blocking(move || memory.add(&content, importance)).await
    }

    /// The compressed context, as a prompt gets it.
    ///
    /// # Errors
    /// Database errors.
    pub async fn context(&self, max_chars: u64) -> Result<CompressedContext> {
        let memory = self.memory.clone();
        blocking(move || memory.context(max_chars)).await
    }

    /// Runs a tool through the cache (see [`Tools::execute_tool_cached`]).
    ///
    /// # Errors
    /// As [`Tools::execute_tool_cached`].
    pub async fn execute_tool(&self, name: &str, params: Value) -> Result<Value> {
        self.tools.execute_tool_cached(name, params).await
    }

    /// Runs tools in parallel (see [`Tools::execute_tools_parallel`]).
    pub async fn execute_tools_parallel(&self, requests: Vec<ToolRequest>) -> Vec<ToolOutcome> {
        self.tools.execute_tools_parallel(requests).await
    }

    /// Tunes the target time and caps the response cache (see
    /// [`Responder::optimize_performance`]).
    ///
    /// # Errors
    /// Database errors.
    pub async fn optimize_performance(&self) -> Result<Optimization> {
        self.responder.optimize_performance().await
    }

    /// Memory, tool and response stats together (counters flushed first).
    ///
    /// # Errors
    /// Database errors.
    pub async fn stats(&self) -> Result<AgentStats> {
        let tools = self.tools.stats().await?;
        let responses = self.responder.response_time_stats().await?;
        let memory = self.memory_stats().await?;
        Ok(AgentStats {
            agent: self.record.name.clone(),
            llm: self.llm.describe(),
            memory,
            tools,
            responses,
        })
    }

    /// Writes the batched counters (tool counters, response hits and log).
    ///
    /// # Errors
    /// Database errors; the counters stay pending.
    pub async fn flush(&self) -> Result<()> {
        self.tools.flush().await?;
        self.responder.flush().await
    }

    /// Waits for generations still running past their target (bounded by the grace
    /// period, so their answers are cached for next time), then flushes. Dropping the
    /// last clone of an agent flushes too, without waiting or reporting errors.
    ///
    /// # Errors
    /// As [`Agent::flush`].
    pub async fn close(self) -> Result<()> {
        self.responder.settle().await;
        self.flush().await
    }
}
