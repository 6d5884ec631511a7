//! The streamable HTTP transport of `agentstore mcp --http`: rmcp's service at `/mcp`,
//! behind a bearer token and an `Origin` check, served by hyper.
//!
//! Every request must carry `Authorization: Bearer <token>`; one without it (or with
//! another token) gets 401 before it reaches the MCP service, so it touches nothing.
//! A request from a browser page carries `Origin`: only loopback origins (and those
//! given with `--allow-origin`) pass, so a page on another site cannot reach a
//! loopback server through DNS rebinding. rmcp checks `Host` as well (loopback
//! names, and those given with `--allow-host`).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::{Bytes, Incoming};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, ORIGIN, WWW_AUTHENTICATE};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rmcp::transport::streamable_http_server::{
    StreamableHttpServerConfig, StreamableHttpService, session::local::LocalSessionManager,
};
use tokio::net::TcpListener;

use super::MemoryServer;

type Body = BoxBody<Bytes, Infallible>;

/// The largest request body accepted (a `remember` of 1 MiB, JSON-escaped, fits).
const MAX_BODY_BYTES: usize = 8 << 20;

/// The path of the MCP endpoint.
pub const PATH: &str = "/mcp";

/// What the listener lets in.
#[derive(Debug, Clone)]
pub struct Access {
    /// The bearer token every request must present.
    pub token: String,
    /// `Host` values accepted besides the loopback names.
    pub extra_hosts: Vec<String>,
    /// `Origin` values accepted besides loopback ones (`scheme://host[:port]`).
    pub extra_origins: Vec<String>,
}

/// Whether `headers` carry `Authorization: Bearer <token>` (compared in constant time).
fn authorized(headers: &hyper::HeaderMap, token: &str) -> bool {
    let Some(value) = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let Some((scheme, given)) = value.split_once(' ') else {
        return false;
    };
    scheme.eq_ignore_ascii_case("bearer")
        && blake3::hash(given.trim().as_bytes()) == blake3::hash(token.as_bytes())
}

/// Whether an `Origin` header (if any) is a loopback origin or one allowed.
fn origin_allowed(headers: &hyper::HeaderMap, extra: &[String]) -> bool {
    let Some(origin) = headers.get(ORIGIN) else {
        return true;
    };
    let Ok(origin) = origin.to_str() else {
        return false;
    };
    if extra.iter().any(|o| o.eq_ignore_ascii_case(origin)) {
        return true;
    }
    let Some(rest) = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
    else {
        return false;
    };
    let host = if let Some(v6) = rest.strip_prefix('[') {
        match v6.split_once(']') {
            Some((host, port)) if port.is_empty() || port.starts_with(':') => host,
            _ => return false,
        }
    } else {
        rest.split(':').next().unwrap_or_default()
    };
    let port_ok = match rest
        .rsplit_once(']')
        .map_or(rest, |(_, p)| p)
        .rsplit_once(':')
    {
        Some((_, port)) => port.parse::<u16>().is_ok(),
        None => true,
    };
    port_ok
        && (host.eq_ignore_ascii_case("localhost")
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback()))
}

fn plain(status: StatusCode, message: &str) -> Response<Body> {
    let body = serde_json::json!({ "error": message }).to_string();
    let mut response = Response::new(Full::new(Bytes::from(body)).boxed());
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        "application/json".parse().expect("a header value"),
    );
    response
}

/// Serves MCP on `listener` until the process ends: each connection on a task.
pub async fn serve(listener: TcpListener, server: MemoryServer, access: Access) {
    let local = listener.local_addr().ok();
    let mut hosts: Vec<String> = vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
    if let Some(addr) = local
        && !addr.ip().is_unspecified()
    {
        hosts.push(addr.ip().to_string());
    }
    hosts.extend(access.extra_hosts.iter().cloned());
    let config = StreamableHttpServerConfig::default()
        .with_allowed_hosts(hosts)
        .with_max_request_body_bytes(MAX_BODY_BYTES);
    let service: StreamableHttpService<MemoryServer, LocalSessionManager> =
        StreamableHttpService::new(move || Ok(server.clone()), Default::default(), config);
    let access = Arc::new(access);
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of descriptors and the like: wait a moment rather than spin.
                eprintln!("agentstore mcp: accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let service = service.clone();
        let access = access.clone();
        tokio::spawn(async move {
            let handler = hyper::service::service_fn(move |request: Request<Incoming>| {
                let service = service.clone();
                let access = access.clone();
                async move { Ok::<_, Infallible>(route(request, &service, &access, peer).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), handler)
                .await;
        });
    }
}

async fn route(
    request: Request<Incoming>,
    service: &StreamableHttpService<MemoryServer, LocalSessionManager>,
    access: &Access,
    peer: SocketAddr,
) -> Response<Body> {
    if request.uri().path() != PATH {
        return plain(StatusCode::NOT_FOUND, "not found: the MCP endpoint is /mcp");
    }
    if !authorized(request.headers(), &access.token) {
        eprintln!("agentstore mcp: refused a request from {peer} without the bearer token");
        let mut response = plain(
            StatusCode::UNAUTHORIZED,
            "unauthorized: send Authorization: Bearer <token>",
        );
        response.headers_mut().insert(
            WWW_AUTHENTICATE,
            "Bearer realm=\"agentstore\""
                .parse()
                .expect("a header value"),
        );
        return response;
    }
    if !origin_allowed(request.headers(), &access.extra_origins) {
        eprintln!("agentstore mcp: refused a request from {peer} with a foreign Origin");
        return plain(
            StatusCode::FORBIDDEN,
            "forbidden: this Origin may not use the server",
        );
    }
    service.handle(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(name: hyper::header::HeaderName, value: &str) -> hyper::HeaderMap {
        let mut h = hyper::HeaderMap::new();
        h.insert(name, value.parse().unwrap());
        h
    }

    #[test]
    fn only_the_token_authorizes() {
        let token = "s3cret-token";
        assert!(authorized(
            &headers(AUTHORIZATION, "Bearer s3cret-token"),
            token
        ));
        assert!(authorized(
            &headers(AUTHORIZATION, "bearer s3cret-token"),
            token
        ));
        assert!(!authorized(
            &headers(AUTHORIZATION, "Bearer s3cret-toke"),
            token
        ));
        assert!(!authorized(
            &headers(AUTHORIZATION, "Basic s3cret-token"),
            token
        ));
        assert!(!authorized(&headers(AUTHORIZATION, "s3cret-token"), token));
        assert!(!authorized(&hyper::HeaderMap::new(), token));
    }

    #[test]
    fn only_loopback_origins_pass() {
        for ok in [
            "http://localhost",
            "http://localhost:3000",
            "https://127.0.0.1:8443",
            "http://[::1]:9000",
            "http://127.1.2.3",
        ] {
            assert!(origin_allowed(&headers(ORIGIN, ok), &[]), "{ok}");
        }
        for bad in [
            "http://evil.example",
            "http://localhost.evil.example",
            "http://127.0.0.1.evil.example",
            "null",
            "file://",
            "http://[::2]:80",
            "http://localhost:notaport",
        ] {
            assert!(!origin_allowed(&headers(ORIGIN, bad), &[]), "{bad}");
        }
        assert!(origin_allowed(
            &headers(ORIGIN, "https://app.example"),
            &["https://app.example".into()]
        ));
        assert!(origin_allowed(&hyper::HeaderMap::new(), &[]));
    }
}
