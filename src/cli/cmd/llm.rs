//! The flags that choose an LLM client, shared by `chat` and `demo`.

use std::sync::Arc;
use std::time::Duration;

use agentstore::agent::{Latency, LlmClient, OpenAiClient, OpenAiConfig, SimulatedClient};
use clap::ValueEnum;

use crate::cli::parse;

/// Which client answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LlmKind {
    /// Offline and deterministic: replies derived from the prompt, marked
    /// `[simulated]`, with seeded latencies (some past the 2 s target).
    Simulated,
    /// Any OpenAI-compatible chat completions server (OpenAI, Ollama, vLLM,
    /// llama.cpp's server, LiteLLM).
    Openai,
}

/// Latencies of the simulated client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SimulatedLatency {
    /// 20-400 ms, and one call in eight 2.2-3.5 s.
    Demo,
    /// No waiting.
    None,
}

/// LLM flags.
#[derive(Debug, clap::Args)]
pub struct LlmArgs {
    /// The client that generates responses.
    #[arg(long, value_enum, default_value = "simulated")]
    pub llm: LlmKind,
    /// openai: the API root; `/chat/completions` is appended [default:
    /// https://api.openai.com/v1].
    #[arg(long, env = "AGENTSTORE_LLM_BASE_URL", value_name = "URL")]
    pub base_url: Option<String>,
    /// openai: the model name [default: gpt-4o-mini].
    #[arg(long, env = "AGENTSTORE_LLM_MODEL", value_name = "M")]
    pub model: Option<String>,
    /// openai: the API key, sent as a bearer token (prefer the environment variable:
    /// a flag shows in the process list).
    #[arg(
        long,
        env = "AGENTSTORE_LLM_API_KEY",
        hide_env_values = true,
        value_name = "KEY"
    )]
    pub api_key: Option<String>,
    /// openai: the longest a request may take.
    #[arg(long, default_value = "60s", value_parser = parse::duration, value_name = "DURATION")]
    pub llm_timeout: Duration,
    /// simulated: the latency distribution.
    #[arg(long, value_enum, default_value = "demo")]
    pub simulated_latency: SimulatedLatency,
}

impl LlmArgs {
    /// The client these flags describe; `seed` seeds the simulated one.
    pub fn client(&self, seed: u64) -> anyhow::Result<Arc<dyn LlmClient>> {
        Ok(match self.llm {
            LlmKind::Simulated => {
                let latency = match self.simulated_latency {
                    SimulatedLatency::Demo => Latency::DEMO,
                    SimulatedLatency::None => Latency::NONE,
                };
                Arc::new(SimulatedClient::new(seed, latency))
            }
            LlmKind::Openai => {
                let mut config = OpenAiConfig::default()
                    .with_timeout(self.llm_timeout)
                    .with_api_key(self.api_key.clone().filter(|k| !k.is_empty()));
                if let Some(url) = self.base_url.clone().filter(|u| !u.is_empty()) {
                    config.base_url = url;
                }
                if let Some(model) = self.model.clone().filter(|m| !m.is_empty()) {
                    config.model = model;
                }
                Arc::new(
                    OpenAiClient::new(config)
                        .map_err(|e| agentstore::Error::InvalidArgument(e.to_string()))?,
                )
            }
        })
    }
}

/// A multi-threaded runtime for the async agent (two workers: store calls block a
/// worker briefly, see the agent's `blocking`).
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}
