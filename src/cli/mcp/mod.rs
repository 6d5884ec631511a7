//! `agentstore mcp`: an agent's memory served over the Model Context Protocol, as
//! tools (remember, recall, context, list, get, rate, forget, stats) and resources
//! (the agent's stats, each entry by URI), on stdio and optionally on the streamable
//! HTTP transport ([`http`]).

pub mod http;
pub mod tools;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, ErrorData, Implementation,
    ListResourceTemplatesResult, ListResourcesResult, ListToolsResult, PaginatedRequestParams,
    ReadResourceRequestParams, ReadResourceResponse, ReadResourceResult, Resource,
    ResourceContents, ResourceTemplate, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::RequestContext;
use rmcp::{RoleServer, ServerHandler};
use serde_json::Value;

pub use tools::{Scope, Tools};

/// The URI scheme of the resources.
const SCHEME: &str = "agentstore://agents/";

/// Resources listed at most (one per agent on an --any-agent server).
const MAX_LISTED_RESOURCES: u64 = 1000;

/// One MCP session's handler. Cheap to clone: every session of the HTTP transport
/// gets a clone sharing the store.
#[derive(Clone)]
pub struct MemoryServer {
    tools: Tools,
    definitions: std::sync::Arc<Vec<Tool>>,
}

impl MemoryServer {
    /// A server over `store` for `scope`.
    pub fn new(tools: Tools) -> MemoryServer {
        let any = matches!(tools.scope, Scope::Any);
        MemoryServer {
            tools,
            definitions: std::sync::Arc::new(tools::definitions(any)),
        }
    }

    fn instructions(&self) -> String {
        let whose = match &self.tools.scope {
            Scope::Fixed(agent) => format!("the memory of agent {:?}", agent.name),
            Scope::Any => "the memory of any agent, named by each call's `agent`".to_string(),
        };
        format!(
            "A persistent, searchable memory: {whose}, kept in an agentstore database that \
             survives restarts and that other clients and the agentstore CLI may use at the \
             same time. `remember` what is worth keeping (with an importance from 0 to 1), \
             `recall` it by words, `context` packs what matters for a message, `forget` \
             removes entries for good (try dry_run first)."
        )
    }

    /// Runs a blocking store call off the async workers.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(Tools) -> T + Send + 'static,
    ) -> Result<T, ErrorData> {
        let tools = self.tools.clone();
        tokio::task::spawn_blocking(move || f(tools))
            .await
            .map_err(|e| ErrorData::internal_error(format!("the store call failed: {e}"), None))
    }
}

/// `agentstore://agents/<agent>/stats` or `.../memories/<id>`: the agent and the id.
fn parse_uri(uri: &str) -> Option<(String, Option<i64>)> {
    let rest = uri.strip_prefix(SCHEME)?;
    let (agent, what) = rest.split_once('/')?;
    let agent = percent_decode(agent)?;
    match what.split_once('/') {
        None if what == "stats" => Some((agent, None)),
        Some(("memories", id)) => {
            let id = id.parse::<i64>().ok().filter(|id| *id > 0)?;
            Some((agent, Some(id)))
        }
        _ => None,
    }
}

/// `name` with every byte outside the URI's unreserved set as `%XX`.
fn percent_encode(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The inverse of [`percent_encode`] (any `%XX` is decoded); `None` when malformed.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn stats_uri(agent: &str) -> String {
    format!("{SCHEME}{}/stats", percent_encode(agent))
}

impl ServerHandler for MemoryServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_resources()
                .build(),
        )
        .with_server_info(
            Implementation::new("agentstore", env!("CARGO_PKG_VERSION"))
                .with_title("agentstore memory"),
        )
        .with_instructions(self.instructions())
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(
            self.definitions.as_ref().clone(),
        ))
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        self.definitions.iter().find(|t| t.name == name).cloned()
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        if self.get_tool(&request.name).is_none() {
            return Err(ErrorData::invalid_params(
                format!("no tool named {:?}", request.name),
                None,
            ));
        }
        let name = request.name.to_string();
        let arguments = request.arguments;
        let outcome = self
            .blocking(move |tools| tools.call(&name, arguments))
            .await?;
        if let Err(tools::ToolError(message)) = &outcome {
            eprintln!("agentstore mcp: {}: {message}", request.name);
        }
        Ok(tools::result(outcome).into())
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        let names = self
            .blocking(|tools| match &tools.scope {
                Scope::Fixed(agent) => Ok(vec![agent.name.clone()]),
                Scope::Any => tools.store.agents().map(|agents| {
                    agents
                        .into_iter()
                        .take(MAX_LISTED_RESOURCES as usize)
                        .map(|a| a.name)
                        .collect()
                }),
            })
            .await?
            .map_err(|e| ErrorData::internal_error(e.to_string(), None))?;
        let resources = names
            .iter()
            .map(|name| {
                Resource::new(stats_uri(name), format!("{name} memory stats"))
                    .with_description("The agent's memory stats (the memory_stats tool's result)")
                    .with_mime_type("application/json")
            })
            .collect();
        Ok(ListResourcesResult::with_all_items(resources))
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        let template =
            ResourceTemplate::new(format!("{SCHEME}{{agent}}/memories/{{id}}"), "memory entry")
                .with_description("One memory entry by id (the get_memory tool's result)")
                .with_mime_type("application/json");
        Ok(ListResourceTemplatesResult::with_all_items(vec![template]))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        let uri = request.uri;
        let not_found = |why: &str| {
            ErrorData::resource_not_found(
                format!("{why}: {uri}"),
                Some(serde_json::json!({ "uri": uri })),
            )
        };
        let Some((agent, id)) = parse_uri(&uri) else {
            return Err(not_found(
                "not an agentstore resource (agentstore://agents/<agent>/stats or \
                 agentstore://agents/<agent>/memories/<id>)",
            ));
        };
        let mut arguments = serde_json::Map::new();
        if matches!(self.tools.scope, Scope::Any) {
            arguments.insert("agent".into(), Value::from(agent.clone()));
        } else if let Scope::Fixed(fixed) = &self.tools.scope
            && fixed.name != agent
        {
            return Err(not_found("this server serves another agent"));
        }
        let (tool, arguments) = match id {
            None => ("memory_stats", arguments),
            Some(id) => {
                arguments.insert("id".into(), Value::from(id));
                ("get_memory", arguments)
            }
        };
        let outcome = self
            .blocking(move |tools| tools.call(tool, Some(arguments)))
            .await?;
        match outcome {
            Ok(value) => Ok(ReadResourceResult::new(vec![
                ResourceContents::text(value.to_string(), uri.clone())
                    .with_mime_type("application/json"),
            ])
            .into()),
            Err(tools::ToolError(message)) => Err(not_found(&message)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn resource_uris_parse() {
        assert_eq!(
            parse_uri("agentstore://agents/bot/stats"),
            Some(("bot".into(), None))
        );
        assert_eq!(
            parse_uri("agentstore://agents/a%20b/memories/42"),
            Some(("a b".into(), Some(42)))
        );
        for bad in [
            "agentstore://agents/bot",
            "agentstore://agents/bot/memories/0",
            "agentstore://agents/bot/memories/x",
            "agentstore://agents/bot/memories/1/2",
            "agentstore://agents/%zz/stats",
            "file:///etc/passwd",
        ] {
            assert_eq!(parse_uri(bad), None, "{bad}");
        }
    }

    proptest! {
        #[test]
        fn agent_names_survive_the_uri(name in "\\PC{1,40}") {
            let uri = stats_uri(&name);
            prop_assert!(uri.is_ascii());
            prop_assert_eq!(parse_uri(&uri), Some((name, None)));
        }
    }
}
