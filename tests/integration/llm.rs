//! The OpenAI-compatible client against a real HTTP server on 127.0.0.1, and an agent
//! generating through it.

use std::time::Duration;

use agentstore::agent::{
    Agent, AgentConfig, ChatMessage, LlmClient, LlmError, OpenAiClient, OpenAiConfig,
};
use agentstore::{Outcome, Store, StoreOptions};

use crate::common::{TempDb, TestResult};
use crate::http::{Response, TestServer};

const KEY: &str = "sk-test-0123456789abcdef";

fn client(server: &TestServer, timeout: Duration) -> OpenAiClient {
    OpenAiClient::new(
        OpenAiConfig::default()
            .with_base_url(server.base_url())
            .with_api_key(Some(KEY.into()))
            .with_model("test-model")
            .with_timeout(timeout),
    )
    .expect("client")
}

fn prompt() -> Vec<ChatMessage> {
    vec![ChatMessage::system("be brief"), ChatMessage::user("hello?")]
}

#[tokio::test]
async fn a_completion_is_requested_and_read() -> TestResult {
    let server = TestServer::start(|_| Response::completion("Hi there."));
    let reply = client(&server, Duration::from_secs(5))
        .chat(&prompt())
        .await?;
    assert_eq!(reply, "Hi there.");
    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    let r = &requests[0];
    assert_eq!(
        (r.method.as_str(), r.path.as_str()),
        ("POST", "/v1/chat/completions")
    );
    assert_eq!(
        r.header("authorization"),
        Some(format!("Bearer {KEY}").as_str())
    );
    assert_eq!(
        r.json(),
        serde_json::json!({"model": "test-model", "messages": [
            {"role": "system", "content": "be brief"}, {"role": "user", "content": "hello?"}]})
    );
    Ok(())
}

#[tokio::test]
async fn without_a_key_no_authorization_is_sent() -> TestResult {
    let server = TestServer::start(|_| Response::completion("ok"));
    let client = OpenAiClient::new(OpenAiConfig::default().with_base_url(server.base_url()))?;
    client.chat(&prompt()).await?;
    assert_eq!(server.requests()[0].header("authorization"), None);
    Ok(())
}

/// A server that echoes the Authorization header in its error must not make the key
/// appear in the error.
#[tokio::test]
async fn http_401_is_typed_and_never_shows_the_key() -> TestResult {
    let server = TestServer::start(|r| {
        let body = serde_json::json!({"error": {
            "message": format!("Incorrect API key provided: {}", r.header("authorization").unwrap_or("")),
            "type": "invalid_request_error"}});
        Response::new(401, body.to_string())
    });
    let err = client(&server, Duration::from_secs(5))
        .chat(&prompt())
        .await
        .unwrap_err();
    let LlmError::Http { status, excerpt } = &err else {
        panic!("expected an HTTP error, got {err:?}");
    };
    assert_eq!(*status, 401);
    assert!(
        excerpt.starts_with("Incorrect API key provided: Bearer [redacted]"),
        "{excerpt}"
    );
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains(KEY), "{shown}");
    assert!(shown.contains("HTTP 401"), "{shown}");
    assert!(!err.is_transient());
    Ok(())
}

#[tokio::test]
async fn http_429_and_500_are_typed_and_transient() -> TestResult {
    for (status, body) in [
        (
            429,
            r#"{"error":{"message":"Rate limit reached for requests"}}"#,
        ),
        (500, "<html><body>Internal Server Error\n</body></html>"),
    ] {
        let server = TestServer::start(move |_| Response::new(status, body));
        let err = client(&server, Duration::from_secs(5))
            .chat(&prompt())
            .await
            .unwrap_err();
        match &err {
            LlmError::Http { status: s, excerpt } => {
                assert_eq!(*s, status);
                assert!(!excerpt.contains('\n'), "{excerpt:?}");
                assert!(
                    excerpt.contains("Rate limit") || excerpt.contains("Internal Server Error"),
                    "{excerpt}"
                );
            }
            other => panic!("expected HTTP {status}, got {other:?}"),
        }
        assert!(err.is_transient());
    }
    Ok(())
}

#[tokio::test]
async fn malformed_bodies_are_invalid_responses() -> TestResult {
    for body in [
        "this is not json",
        r#"{"choices": []}"#,
        r#"{"choices": [{"message": {"content": 42}}]}"#,
        r#"{"object": "list"}"#,
    ] {
        let server = TestServer::start(move |_| Response::new(200, body));
        let err = client(&server, Duration::from_secs(5))
            .chat(&prompt())
            .await
            .unwrap_err();
        let LlmError::InvalidResponse { excerpt, .. } = &err else {
            panic!("{body}: expected an invalid response, got {err:?}");
        };
        assert_eq!(excerpt, body);
        assert!(
            err.to_string().contains("is not a chat completion"),
            "{err}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn a_slow_server_times_out() -> TestResult {
    let server = TestServer::start(|_| Response {
        delay: Duration::from_secs(3),
        ..Response::completion("too late")
    });
    let err = client(&server, Duration::from_millis(300))
        .chat(&prompt())
        .await
        .unwrap_err();
    assert!(matches!(err, LlmError::Timeout { .. }), "{err:?}");
    assert!(
        err.to_string().contains("did not answer within 300ms"),
        "{err}"
    );
    Ok(())
}

#[tokio::test]
async fn a_closed_port_is_a_connect_error() -> TestResult {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0")?;
        l.local_addr()?.port()
    };
    let client = OpenAiClient::new(
        OpenAiConfig::default()
            .with_base_url(format!("http://127.0.0.1:{port}/v1"))
            .with_api_key(Some(KEY.into())),
    )?;
    let err = client.chat(&prompt()).await.unwrap_err();
    assert!(matches!(err, LlmError::Connect { .. }), "{err:?}");
    assert!(err.is_transient());
    assert!(!err.to_string().contains(KEY));
    Ok(())
}

/// The agent sends its compressed context and the message; the reply is cached and
/// remembered; a failing server is a generation error and caches nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_generates_through_the_http_client() -> TestResult {
    let db = TempDb::new();
    let store = Store::open(&db.path, StoreOptions::default())?;
    let server = TestServer::start(|r| {
        let user = r.json()["messages"][1]["content"]
            .as_str()
            .unwrap_or("")
            .to_string();
        match user.as_str() {
            "fail please" => Response::new(503, r#"{"error":{"message":"overloaded"}}"#),
            _ => Response::completion(&format!("answer to {user}")),
        }
    });
    let config = AgentConfig::new(client(&server, Duration::from_secs(5)));
    let agent = Agent::open(&store, "bot", config).await?;
    agent.remember("the user's name is Ada", 0.9).await?;

    let reply = agent.process_message("what is my name").await?;
    assert_eq!(reply.response, "answer to what is my name");
    assert_eq!(reply.outcome, Outcome::Generated);
    let sent = server.requests()[0].json();
    let system = sent["messages"][0]["content"].as_str().unwrap();
    assert!(system.contains("the user's name is Ada"), "{system}");

    let again = agent.process_message("what is my name").await?;
    assert_eq!(again.outcome, Outcome::Exact);
    assert_eq!(server.requests().len(), 1, "a hit does not call the LLM");

    let err = agent.process_message("fail please").await.unwrap_err();
    assert!(err.to_string().contains("HTTP 503"), "{err}");
    assert!(!err.to_string().contains(KEY));
    // The failure keeps the client's structured error: its status, and that a retry
    // may help.
    let agentstore::Error::GenerationFailed(failure) = &err else {
        panic!("not a generation failure: {err:?}")
    };
    match failure.llm() {
        Some(LlmError::Http { status, .. }) => assert_eq!(*status, 503),
        other => panic!("not the HTTP error: {other:?}"),
    }
    assert!(failure.llm().is_some_and(LlmError::is_transient));
    let stats = agent.stats().await?;
    // Ada's fact + two exchanges of two entries; the failure added nothing.
    assert_eq!(stats.memory.total_entries, 5);
    let json = serde_json::to_value(&stats)?;
    assert_eq!(json["responses"]["total_responses"], 2);
    assert_eq!(json["responses"]["cache_entries"], 1);
    agent.close().await?;
    Ok(())
}

/// `OpenAiClient::new(...)?` works in a function returning `agentstore::Result`.
#[test]
fn a_client_error_converts_into_the_library_error() {
    fn build(base_url: &str) -> agentstore::Result<OpenAiClient> {
        let client = OpenAiClient::new(OpenAiConfig::default().with_base_url(base_url))?;
        Ok(client)
    }
    assert!(build("http://127.0.0.1:9/v1").is_ok());
    let err = build("not a url").unwrap_err();
    assert!(
        matches!(err, agentstore::Error::Llm(LlmError::Config(_))),
        "{err:?}"
    );
    assert!(err.to_string().contains("configuration"), "{err}");
}
