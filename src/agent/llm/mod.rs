//! LLM clients: the [`LlmClient`] trait the agent generates with, an
//! OpenAI-compatible HTTP client (`OpenAiClient`: OpenAI, Ollama, vLLM, llama.cpp's
//! server, LiteLLM) and an offline, deterministic [`SimulatedClient`] for demos and
//! tests.

#[cfg(feature = "openai")]
mod openai;
mod simulated;

use std::time::Duration;

use serde::{Deserialize, Serialize};

#[cfg(feature = "openai")]
pub use openai::{OpenAiClient, OpenAiConfig};
pub use simulated::{Latency, SimulatedClient};

/// Who said a chat message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Instructions and context for the model.
    System,
    /// The user.
    User,
    /// The model.
    Assistant,
}

/// One message of a chat prompt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// Who said it.
    pub role: Role,
    /// What was said.
    pub content: String,
}

impl ChatMessage {
    /// A system message.
    pub fn system(content: impl Into<String>) -> Self {
        ChatMessage {
            role: Role::System,
            content: content.into(),
        }
    }

    /// A user message.
    pub fn user(content: impl Into<String>) -> Self {
        ChatMessage {
            role: Role::User,
            content: content.into(),
        }
    }
}

/// Why an LLM call failed. Messages carry the HTTP status and a short excerpt of what
/// the server said, never the API key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LlmError {
    /// The client is misconfigured (a bad base URL, say).
    #[error("LLM client configuration: {0}")]
    Config(String),
    /// The server could not be reached.
    #[error("cannot reach the LLM server at {url}: {reason}")]
    Connect {
        /// The URL called.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// No complete answer within the client's timeout.
    #[error("the LLM server at {url} did not answer within {}", humanize(*.timeout))]
    Timeout {
        /// The URL called.
        url: String,
        /// The timeout.
        timeout: Duration,
    },
    /// The server answered with an error status.
    #[error("the LLM server answered HTTP {status}{}: {excerpt}", hint(*.status))]
    Http {
        /// The HTTP status code.
        status: u16,
        /// The start of the body (the API's error message when it sent one).
        excerpt: String,
    },
    /// The body was not JSON, or not the shape of a chat completion.
    #[error("the LLM server's answer is not a chat completion ({reason}): {excerpt}")]
    InvalidResponse {
        /// What was wrong with it.
        reason: String,
        /// The start of the body.
        excerpt: String,
    },
}

impl LlmError {
    /// True for failures that may pass on their own (timeouts, 429, 5xx, connection).
    pub fn is_transient(&self) -> bool {
        match self {
            LlmError::Timeout { .. } | LlmError::Connect { .. } => true,
            LlmError::Http { status, .. } => *status == 429 || *status >= 500,
            _ => false,
        }
    }
}

fn hint(status: u16) -> &'static str {
    match status {
        401 | 403 => " (check the API key: AGENTSTORE_LLM_API_KEY or --api-key)",
        404 => " (check the base URL and the model name)",
        429 => " (rate limited)",
        _ => "",
    }
}

fn humanize(d: Duration) -> String {
    crate::clock::format_duration(d)
}

/// A chat model. Object-safe: the agent holds an `Arc<dyn LlmClient>`.
#[async_trait::async_trait]
pub trait LlmClient: Send + Sync {
    /// What this client talks to, for humans: `openai gpt-4o-mini at http://...`,
    /// `simulated (seed 42)`. Never contains a secret.
    fn describe(&self) -> String;

    /// The model's reply to `messages`.
    ///
    /// # Errors
    /// An [`LlmError`] saying what failed.
    async fn chat(&self, messages: &[ChatMessage]) -> Result<String, LlmError>;
}

/// At most `max` characters of `text` (cut at a character boundary, `…` appended when
/// cut), with line breaks flattened: for error messages that must stay one line.
pub(crate) fn excerpt(text: &str, max: usize) -> String {
    let flat: String = text
        .trim()
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    match flat.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &flat[..cut]),
        None => flat,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpts_are_short_single_lines() {
        assert_eq!(excerpt("  a\nb\r\tc ", 10), "a b  c");
        assert_eq!(excerpt("ééééé", 3), "ééé…");
        assert_eq!(excerpt("abc", 3), "abc");
    }

    #[test]
    fn errors_name_status_and_say_what_to_do() {
        let e = LlmError::Http {
            status: 401,
            excerpt: "bad key".into(),
        };
        assert_eq!(
            e.to_string(),
            "the LLM server answered HTTP 401 (check the API key: AGENTSTORE_LLM_API_KEY or --api-key): bad key"
        );
        assert!(!e.is_transient());
        let e = LlmError::Http {
            status: 503,
            excerpt: String::new(),
        };
        assert!(e.is_transient());
    }
}
