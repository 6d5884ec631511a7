//! The OpenAI-compatible chat completions client: `POST {base_url}/chat/completions`,
//! which OpenAI, Ollama, vLLM, llama.cpp's server and LiteLLM all speak.

use std::time::Duration;

use serde_json::{Value, json};

use super::{ChatMessage, LlmClient, LlmError, excerpt};

/// Longest excerpt of a server's body quoted in an error.
const EXCERPT_CHARS: usize = 200;
/// A chat completion larger than this is refused rather than read into memory.
const MAX_BODY_BYTES: usize = 8 << 20;

/// Where and how [`OpenAiClient`] calls. [`OpenAiConfig::from_env`] reads the
/// `AGENTSTORE_LLM_*` variables; `Debug` never shows the key.
#[derive(Clone, PartialEq)]
#[non_exhaustive]
pub struct OpenAiConfig {
    /// The API root, e.g. `https://api.openai.com/v1` or `http://127.0.0.1:11434/v1`
    /// (Ollama); `/chat/completions` is appended.
    pub base_url: String,
    /// Sent as `Authorization: Bearer ...` when set (local servers need none).
    pub api_key: Option<String>,
    /// The model name the server knows.
    pub model: String,
    /// The whole request, connect to last byte (60 s).
    pub timeout: Duration,
    /// `max_tokens`, when set.
    pub max_tokens: Option<u32>,
    /// `temperature`, when set.
    pub temperature: Option<f64>,
}

/// Builder methods: `OpenAiConfig::default()` (or a constructor), then `with_*`.
impl OpenAiConfig {
    /// This configuration with another `base_url`.
    pub fn with_base_url(mut self, base_url: impl Into<String>) -> Self {
        self.base_url = base_url.into();
        self
    }

    /// This configuration with another `api_key`.
    pub fn with_api_key(mut self, api_key: Option<String>) -> Self {
        self.api_key = api_key;
        self
    }

    /// This configuration with another `model`.
    pub fn with_model(mut self, model: impl Into<String>) -> Self {
        self.model = model.into();
        self
    }

    /// This configuration with another `timeout`.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// This configuration with another `max_tokens`.
    pub fn with_max_tokens(mut self, max_tokens: Option<u32>) -> Self {
        self.max_tokens = max_tokens;
        self
    }

    /// This configuration with another `temperature`.
    pub fn with_temperature(mut self, temperature: Option<f64>) -> Self {
        self.temperature = temperature;
        self
    }
}

impl OpenAiConfig {
    /// The variable holding the base URL.
    pub const ENV_BASE_URL: &'static str = "AGENTSTORE_LLM_BASE_URL";
    /// The variable holding the API key.
    pub const ENV_API_KEY: &'static str = "AGENTSTORE_LLM_API_KEY";
    /// The variable holding the model name.
    pub const ENV_MODEL: &'static str = "AGENTSTORE_LLM_MODEL";
    /// The base URL used when none is given.
    pub const DEFAULT_BASE_URL: &'static str = "https://api.openai.com/v1";
    /// The model used when none is given.
    pub const DEFAULT_MODEL: &'static str = "gpt-4o-mini";

    /// The defaults, overridden by `AGENTSTORE_LLM_BASE_URL`, `AGENTSTORE_LLM_API_KEY`
    /// and `AGENTSTORE_LLM_MODEL` where set and not empty.
    pub fn from_env() -> Self {
        let var = |name| std::env::var(name).ok().filter(|v: &String| !v.is_empty());
        let mut config = OpenAiConfig::default();
        if let Some(url) = var(Self::ENV_BASE_URL) {
            config.base_url = url;
        }
        config.api_key = var(Self::ENV_API_KEY);
        if let Some(model) = var(Self::ENV_MODEL) {
            config.model = model;
        }
        config
    }
}

impl Default for OpenAiConfig {
    fn default() -> Self {
        OpenAiConfig {
            base_url: Self::DEFAULT_BASE_URL.to_string(),
            api_key: None,
            model: Self::DEFAULT_MODEL.to_string(),
            timeout: Duration::from_secs(60),
            max_tokens: None,
            temperature: None,
        }
    }
}

impl std::fmt::Debug for OpenAiConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiConfig")
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "[redacted]"))
            .field("model", &self.model)
            .field("timeout", &self.timeout)
            .field("max_tokens", &self.max_tokens)
            .field("temperature", &self.temperature)
            .finish()
    }
}

/// A client of an OpenAI-compatible chat completions endpoint (rustls, no system
/// OpenSSL). Cheap to share: one connection pool per client.
#[derive(Debug, Clone)]
pub struct OpenAiClient {
    http: reqwest::Client,
    url: reqwest::Url,
    config: OpenAiConfig,
}

impl OpenAiClient {
    /// A client for `config`.
    ///
    /// # Errors
    /// [`LlmError::Config`] for a base URL that is not http(s) or a key that cannot be
    /// sent in a header.
    pub fn new(config: OpenAiConfig) -> Result<Self, LlmError> {
        let base = config.base_url.trim_end_matches('/');
        let url = reqwest::Url::parse(&format!("{base}/chat/completions")).map_err(|e| {
            LlmError::Config(format!("base URL {:?} is not a URL: {e}", config.base_url))
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(LlmError::Config(format!(
                "base URL {:?} must start with http:// or https://",
                config.base_url
            )));
        }
        if let Some(key) = &config.api_key
            && reqwest::header::HeaderValue::from_str(&format!("Bearer {key}")).is_err()
        {
            return Err(LlmError::Config(
                "the API key contains characters that cannot be sent in a header".into(),
            ));
        }
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("agentstore/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| LlmError::Config(format!("cannot build the HTTP client: {e}")))?;
        Ok(OpenAiClient { http, url, config })
    }

    /// The configuration.
    pub fn config(&self) -> &OpenAiConfig {
        &self.config
    }

    /// The request body for `messages`.
    fn body(&self, messages: &[ChatMessage]) -> Value {
        let mut body = json!({ "model": self.config.model, "messages": messages });
        if let Some(n) = self.config.max_tokens {
            body["max_tokens"] = json!(n);
        }
        if let Some(t) = self.config.temperature {
            body["temperature"] = json!(t);
        }
        body
    }

    /// `text` with the API key blanked out, in case a server echoes it.
    fn redact(&self, text: String) -> String {
        match &self.config.api_key {
            Some(key) if key.len() >= 4 && text.contains(key.as_str()) => {
                text.replace(key.as_str(), "[redacted]")
            }
            _ => text,
        }
    }

    /// Maps a transport error (the URL has no secret in it; the key is a header).
    fn transport(&self, e: reqwest::Error) -> LlmError {
        let url = self.url.to_string();
        if e.is_timeout() {
            return LlmError::Timeout {
                url,
                timeout: self.config.timeout,
            };
        }
        let mut reason = Vec::new();
        let mut source: Option<&dyn std::error::Error> = Some(&e);
        while let Some(s) = source {
            reason.push(s.to_string());
            source = s.source();
        }
        // reqwest's own line repeats the URL; the causes say what happened.
        let reason = match reason.len() {
            1 => reason.remove(0),
            _ => reason[1..].join(": "),
        };
        LlmError::Connect {
            url,
            reason: self.redact(reason),
        }
    }

    /// Reads the body, refusing one over [`MAX_BODY_BYTES`].
    async fn read_body(&self, mut response: reqwest::Response) -> Result<Vec<u8>, LlmError> {
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| self.transport(e))? {
            if body.len() + chunk.len() > MAX_BODY_BYTES {
                return Err(LlmError::InvalidResponse {
                    reason: format!("the body is over {MAX_BODY_BYTES} bytes"),
                    excerpt: self.redact(excerpt(&String::from_utf8_lossy(&body), EXCERPT_CHARS)),
                });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

/// The API's own error message (`{"error": {"message": ...}}` or `{"error": "..."}`)
/// when the body has one, else the body.
fn error_message(body: &str) -> String {
    let parsed: Option<Value> = serde_json::from_str(body).ok();
    let message = parsed.as_ref().and_then(|v| {
        let e = v.get("error")?;
        e.get("message").and_then(Value::as_str).or(e.as_str())
    });
    message.unwrap_or(body).to_string()
}

/// `choices[0].message.content` of a chat completion.
fn completion_text(body: &str) -> Result<String, &'static str> {
    let value: Value = serde_json::from_str(body).map_err(|_| "not JSON")?;
    let choice = value
        .get("choices")
        .and_then(|c| c.get(0))
        .ok_or("no choices")?;
    choice
        .get("message")
        .and_then(|m| m.get("content"))
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or("no choices[0].message.content string")
}

#[async_trait::async_trait]
impl LlmClient for OpenAiClient {
    fn describe(&self) -> String {
        format!("openai-compatible {} at {}", self.config.model, self.url)
    }

    async fn chat(&self, messages: &[ChatMessage]) -> Result<String, LlmError> {
        let mut request = self.http.post(self.url.clone()).json(&self.body(messages));
        if let Some(key) = &self.config.api_key {
            request = request.bearer_auth(key);
        }
        let response = request.send().await.map_err(|e| self.transport(e))?;
        let status = response.status();
        let body = self.read_body(response).await?;
        let body = String::from_utf8_lossy(&body);
        if !status.is_success() {
            return Err(LlmError::Http {
                status: status.as_u16(),
                excerpt: self.redact(excerpt(&error_message(&body), EXCERPT_CHARS)),
            });
        }
        completion_text(&body).map_err(|reason| LlmError::InvalidResponse {
            reason: reason.to_string(),
            excerpt: self.redact(excerpt(&body, EXCERPT_CHARS)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_never_shows_in_debug() {
        let config = OpenAiConfig {
            api_key: Some("sk-secret-123".into()),
            ..OpenAiConfig::default()
        };
        let client = OpenAiClient::new(config).unwrap();
        let shown = format!("{client:?} {}", client.describe());
        assert!(!shown.contains("sk-secret-123"), "{shown}");
        assert!(shown.contains("[redacted]"));
    }

    #[test]
    fn bad_base_urls_are_config_errors() {
        for url in ["not a url", "ftp://example.com/v1", ""] {
            let config = OpenAiConfig {
                base_url: url.into(),
                ..OpenAiConfig::default()
            };
            assert!(
                matches!(OpenAiClient::new(config), Err(LlmError::Config(_))),
                "{url:?}"
            );
        }
    }

    #[test]
    fn the_request_has_the_chat_completions_shape() {
        let config = OpenAiConfig {
            base_url: "http://127.0.0.1:9/v1/".into(),
            model: "m".into(),
            max_tokens: Some(64),
            ..OpenAiConfig::default()
        };
        let client = OpenAiClient::new(config).unwrap();
        assert_eq!(
            client.url.as_str(),
            "http://127.0.0.1:9/v1/chat/completions"
        );
        let body = client.body(&[ChatMessage::system("s"), ChatMessage::user("u")]);
        assert_eq!(
            body,
            json!({"model": "m", "messages": [{"role": "system", "content": "s"},
                   {"role": "user", "content": "u"}], "max_tokens": 64})
        );
    }

    #[test]
    fn completions_and_error_bodies_are_read() {
        let ok = r#"{"choices":[{"message":{"role":"assistant","content":"hi"}}]}"#;
        assert_eq!(completion_text(ok).unwrap(), "hi");
        assert_eq!(completion_text("<html>").unwrap_err(), "not JSON");
        assert_eq!(
            completion_text(r#"{"choices":[]}"#).unwrap_err(),
            "no choices"
        );
        assert_eq!(
            error_message(r#"{"error":{"message":"Invalid API key","type":"x"}}"#),
            "Invalid API key"
        );
        assert_eq!(
            error_message(r#"{"error":"model not found"}"#),
            "model not found"
        );
        assert_eq!(error_message("Bad Gateway"), "Bad Gateway");
    }
}
