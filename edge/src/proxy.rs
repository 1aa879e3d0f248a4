//! The public HTTP(S) data path: route by Host, run the route's module
//! chain, hand the request to an agent tunnel over a muxado stream, answer
//! edge errors with a code, and emit one event per request.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};
use pingora_core::protocols::l4::socket::SocketAddr as L4SocketAddr;
use pingora_core::upstreams::peer::{HttpPeer, PeerOptions, Scheme};
use pingora_error::{Error, ErrorSource, ErrorType, Result};
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::{FailToProxy, ProxyHttp, Session};
use serde_json::{json, Map, Value};
use tracing::{debug, warn};

use crate::client_tls::HandshakeFacts;
use crate::errors::{EdgeFailure, ERROR_CODE_HEADER};
use crate::events::{rfc3339, HTTP_REQUEST_COMPLETE};
use crate::fetch::Fetcher;
use crate::registry::Registry;
use crate::route_table::{strip_port, Scheme as PublicScheme, Target};
use crate::tunnel_stream::{TunnelConnector, WriteGate, AGENT_UNAVAILABLE};
use crate::websocket_bridge;
use gangway_modules::chain::{
    Chain, ConnInfo, EdgeResponse, Flow, HeaderEdits, Outcome, RequestInfo, RequestState, TlsInfo,
    BODY_LIMIT,
};

/// Placeholder address for virtual peers: Pingora wants one for logging
/// and pooling keys; no socket is ever opened to it.
const VIRTUAL_PEER_ADDR: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0);

/// Error type for "a module answered while the body streamed in": the
/// answer waits in the request's context for `fail_to_proxy` to write.
const EDGE_ANSWERED: ErrorType = ErrorType::Custom("EdgeAnswered");

/// Error type for "a policy closes the connection without an answer".
const EDGE_CLOSED: ErrorType = ErrorType::Custom("EdgeClosed");

fn close_connection() -> Box<Error> {
    Error::explain(EDGE_CLOSED, "the traffic policy closed the connection")
}

/// One per public listener (`tls` tells which).
pub struct EdgeProxy {
    registry: Arc<Registry>,
    fetcher: Arc<Fetcher>,
    tls: bool,
}

impl EdgeProxy {
    pub fn new(registry: Arc<Registry>, fetcher: Arc<Fetcher>, tls: bool) -> Self {
        EdgeProxy {
            registry,
            fetcher,
            tls,
        }
    }

    fn scheme(&self) -> &'static str {
        if self.tls {
            "https"
        } else {
            "http"
        }
    }
}

/// Per-request state.
pub struct RequestCtx {
    host: String,
    target: Option<Target>,
    chain: Option<Arc<Chain>>,
    conn: ConnInfo,
    modules: RequestState,
    /// Holds the request at the edge while a module reads the body.
    gate: Option<Arc<WriteGate>>,
    body: Vec<u8>,
    /// A module's answer decided after proxying began (body phase).
    answer: Option<EdgeResponse>,
    /// The request went to the agent.
    forwarded: bool,
    upstream_status: Option<u16>,
    started: SystemTime,
    request_body_bytes: u64,
    response_body_bytes: u64,
}

impl Default for RequestCtx {
    fn default() -> Self {
        RequestCtx {
            host: String::new(),
            target: None,
            chain: None,
            conn: ConnInfo::default(),
            modules: RequestState::default(),
            gate: None,
            body: Vec::new(),
            answer: None,
            forwarded: false,
            upstream_status: None,
            started: SystemTime::now(),
            request_body_bytes: 0,
            response_body_bytes: 0,
        }
    }
}

fn request_host(req: &RequestHeader) -> Option<String> {
    let host = req.uri.host().map(str::to_string).or_else(|| {
        req.headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(str::to_string)
    })?;
    let host = strip_port(host.trim())
        .trim_end_matches('.')
        .to_ascii_lowercase();
    (!host.is_empty()).then_some(host)
}

fn inet(addr: Option<&L4SocketAddr>) -> Option<SocketAddr> {
    match addr {
        Some(L4SocketAddr::Inet(a)) => Some(*a),
        _ => None,
    }
}

fn client_addr(session: &Session) -> Option<SocketAddr> {
    inet(session.client_addr())
}

/// What the TLS handshake of the request's connection established.
fn handshake_facts(session: &Session) -> Option<&HandshakeFacts> {
    session
        .digest()?
        .ssl_digest
        .as_ref()?
        .extension
        .get::<HandshakeFacts>()
}

/// The connection as modules and events see it.
fn conn_info(session: &Session, host: &str) -> ConnInfo {
    let tls = session
        .digest()
        .and_then(|d| d.ssl_digest.as_ref())
        .map(|d| TlsInfo {
            version: d.version.to_string(),
            cipher_suite: d.cipher.to_string(),
            client_cert: d
                .extension
                .get::<HandshakeFacts>()
                .and_then(|f| f.client_cert.clone()),
        });
    ConnInfo {
        client: client_addr(session),
        server: inet(session.server_addr()),
        server_name: host.to_string(),
        tls,
    }
}

/// Pingora's request head keeps its own case map: edit through its API.
struct RequestEdits<'a>(&'a mut RequestHeader);

impl HeaderEdits for RequestEdits<'_> {
    fn headers(&self) -> &HeaderMap {
        &self.0.headers
    }
    fn remove(&mut self, name: &HeaderName) {
        self.0.remove_header(name);
    }
    fn append(&mut self, name: HeaderName, value: HeaderValue) {
        let _ = self.0.append_header(name, value);
    }
    fn insert(&mut self, name: HeaderName, value: HeaderValue) {
        let _ = self.0.insert_header(name, value);
    }
}

struct ResponseEdits<'a>(&'a mut ResponseHeader);

impl HeaderEdits for ResponseEdits<'_> {
    fn headers(&self) -> &HeaderMap {
        &self.0.headers
    }
    fn remove(&mut self, name: &HeaderName) {
        self.0.remove_header(name);
    }
    fn append(&mut self, name: HeaderName, value: HeaderValue) {
        let _ = self.0.append_header(name, value);
    }
    fn insert(&mut self, name: HeaderName, value: HeaderValue) {
        let _ = self.0.insert_header(name, value);
    }
}

/// The head of a response the edge generated (errors carry
/// `ngrok-error-code`).
fn answer_header(answer: &EdgeResponse) -> Result<ResponseHeader> {
    let mut resp = ResponseHeader::build(answer.status, Some(answer.headers.len() + 3))?;
    for (name, value) in &answer.headers {
        resp.append_header(name.clone(), value.clone())?;
    }
    resp.insert_header(http::header::CONTENT_LENGTH, answer.body.len().to_string())?;
    if let Some(code) = answer.code {
        resp.insert_header(ERROR_CODE_HEADER, code)?;
    }
    Ok(resp)
}

/// Writes a response the edge generated.
async fn write_answer(session: &mut Session, answer: &EdgeResponse) -> Result<()> {
    let resp = answer_header(answer)?;
    session.write_response_header(Box::new(resp), false).await?;
    session
        .write_response_body(Some(answer.body.clone()), true)
        .await
}

fn failure_answer(failure: EdgeFailure, host: &str) -> EdgeResponse {
    EdgeResponse::error(failure.status(), failure.code(), failure.message(host))
}

fn is_internal(host: &str) -> bool {
    strip_port(host)
        .trim_end_matches('.')
        .ends_with(".internal")
}

fn is_upgrade(req: &RequestHeader) -> bool {
    req.headers.contains_key(http::header::UPGRADE)
}

/// Whether a request carries no body (so a body-reading module can decide
/// before anything is proxied).
fn has_no_body(req: &RequestHeader) -> bool {
    let chunked = req
        .headers
        .get(http::header::TRANSFER_ENCODING)
        .is_some_and(|v| !v.as_bytes().is_empty());
    let length = req
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    !chunked && length.unwrap_or(0) == 0
}

macro_rules! request_info {
    ($session:expr, $ctx:expr, $scheme:expr) => {{
        let req = $session.req_header();
        RequestInfo {
            conn: &$ctx.conn,
            method: &req.method,
            uri: &req.uri,
            headers: &req.headers,
            scheme: $scheme,
            host: &$ctx.host,
        }
    }};
}

/// Where a request goes, before any module ran.
enum Routed {
    /// An API edge's route: its chain, and a tunnel if one is online.
    Edge {
        chain: Arc<Chain>,
        target: Option<Target>,
    },
    /// An agent-bound endpoint; its chain comes with the tunnel.
    Agent(Target),
}

impl EdgeProxy {
    fn route(
        &self,
        host: &str,
        path: &str,
        sni: Option<&str>,
    ) -> std::result::Result<Routed, EdgeFailure> {
        // Internal endpoints are reached only through forward-internal.
        if is_internal(host) {
            return Err(EdgeFailure::UnknownHost);
        }
        let table = self.registry.table();
        if self.tls {
            // A name with its own handshake policy is only served on a
            // connection negotiated for it: HTTP/2 reuse of a connection
            // made for another name would skip the client-certificate check.
            let own_policy = !matches!(table.https_client_tls(host), Ok(None));
            if own_policy && sni != Some(strip_port(host)) {
                return Err(EdgeFailure::Misdirected);
            }
            if let Some(edge) = table.lookup_edge(host) {
                let m = edge.route(path).ok_or(EdgeFailure::NoRoute)?;
                if !m.route.unsupported.is_empty() {
                    warn!(%host, route = %m.route.id, modules = ?m.route.unsupported, "route has modules this edge cannot apply; refusing");
                    return Err(EdgeFailure::ModuleUnavailable);
                }
                let chain = m.chain.cloned().ok_or(EdgeFailure::ModuleUnavailable)?;
                return Ok(Routed::Edge {
                    chain,
                    target: m.endpoint.pick().cloned(),
                });
            }
        }
        let scheme = if self.tls {
            PublicScheme::Https
        } else {
            PublicScheme::Http
        };
        let endpoint = table.lookup(host, scheme).ok_or(EdgeFailure::UnknownHost)?;
        let target = endpoint.pick().ok_or(EdgeFailure::AgentOffline)?;
        Ok(Routed::Agent(target.clone()))
    }

    /// An online tunnel of the internal endpoint `host` (`api.internal`),
    /// for forward-internal.
    fn internal_target(&self, host: &str) -> Option<Target> {
        let table = self.registry.table();
        [PublicScheme::Https, PublicScheme::Http]
            .into_iter()
            .find_map(|scheme| table.lookup(host, scheme)?.pick().cloned())
    }

    /// The `http_request_complete.v0` object.
    fn request_event(&self, session: &Session, ctx: &RequestCtx) -> Map<String, Value> {
        let req = session.req_header();
        let mut obj = Map::new();
        let conn = &ctx.conn;
        obj.insert(
            "conn".into(),
            json!({
                "client_ip": conn.client.map(|a| a.ip().to_string()),
                "server_ip": conn.server.map(|a| a.ip().to_string()),
                "server_name": conn.server_name,
                "server_port": conn.server.map(|a| a.port()),
                "start_ts": rfc3339(ctx.started),
            }),
        );
        let info = request_info!(session, ctx, self.scheme());
        let response = session.response_written();
        obj.insert(
            "http".into(),
            json!({
                "request": {
                    "method": req.method.as_str().to_ascii_lowercase(),
                    "url": {
                        "raw": info.full_url(),
                        "scheme": self.scheme(),
                        "host": ctx.host,
                        "path": req.uri.path(),
                        "query": req.uri.query().unwrap_or(""),
                    },
                    "headers": headers_json(&req.headers),
                    "body_length": ctx.request_body_bytes,
                    "user_agent": info.header("user-agent").unwrap_or(""),
                },
                "response": {
                    "status_code": response.map(|r| r.status.as_u16()),
                    "headers": response.map(|r| headers_json(&r.headers)),
                    "body_length": ctx.response_body_bytes,
                },
            }),
        );
        obj.insert("backend".into(), json!({ "connection_reused": false }));
        if let Some(tls) = &conn.tls {
            let mut t = json!({ "version": tls.version, "cipher_suite": tls.cipher_suite });
            if let Some(cert) = &tls.client_cert {
                t["client_cert"] = json!({
                    "serial_number": cert.serial_number,
                    "subject": { "cn": cert.subject_cn },
                });
            }
            obj.insert("tls".into(), t);
        }
        ctx.modules.decisions.write_into(&mut obj);
        obj
    }
}

fn headers_json(h: &HeaderMap) -> Value {
    let mut out = Map::new();
    for (name, value) in h {
        let v = Value::String(String::from_utf8_lossy(value.as_bytes()).into_owned());
        match out.get_mut(name.as_str()) {
            Some(Value::Array(list)) => list.push(v),
            _ => {
                out.insert(name.as_str().to_string(), Value::Array(vec![v]));
            }
        }
    }
    Value::Object(out)
}

#[async_trait]
impl ProxyHttp for EdgeProxy {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> Self::CTX {
        RequestCtx::default()
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Self::CTX) -> Result<bool> {
        let Some(host) = request_host(session.req_header()) else {
            write_answer(session, &failure_answer(EdgeFailure::MissingHost, "")).await?;
            return Ok(true);
        };
        ctx.conn = conn_info(session, &host);
        ctx.host = host;
        let sni = handshake_facts(session).and_then(|f| f.sni.clone());
        let routed = self.route(&ctx.host, session.req_header().uri.path(), sni.as_deref());
        let (chain, target) = match routed {
            Ok(Routed::Edge { chain, target }) => (chain, target),
            Ok(Routed::Agent(t)) => (t.options.chain.clone(), Some(t)),
            Err(failure) => {
                write_answer(session, &failure_answer(failure, &ctx.host)).await?;
                return Ok(true);
            }
        };
        ctx.chain = Some(chain.clone());
        let stale: Vec<String> = chain
            .documents()
            .filter(|url| gangway_modules::jwt::needs_fetch(url))
            .map(str::to_string)
            .collect();
        for url in stale {
            self.fetch_jwks(&url).await;
        }
        let mut flow = chain.on_connect(&ctx.conn, &mut ctx.modules);
        if flow == Flow::Continue {
            let info = request_info!(session, ctx, self.scheme());
            flow = chain.on_request(&info, &mut ctx.modules);
        }
        let mut target = target;
        if let Some(forward) = ctx.modules.forward_internal.take() {
            match self.internal_target(&forward.host) {
                Some(t) => target = Some(t),
                None if forward.continue_on_error => {}
                None => {
                    flow = Flow::Respond(EdgeResponse::error(
                        502,
                        gangway_policy::engine::FORWARD_FAILED_CODE,
                        format!(
                            "The traffic policy forwards to {}, which is not online.",
                            forward.host
                        ),
                    ))
                }
            }
        }
        // Modules answer even when no agent is online (a policy's
        // custom-response needs none).
        if flow == Flow::Continue && target.is_none() {
            flow = Flow::Respond(failure_answer(EdgeFailure::AgentOffline, &ctx.host));
        }
        if flow == Flow::Continue {
            let info = request_info!(session, ctx, self.scheme());
            if chain.wants_body() {
                if has_no_body(session.req_header()) {
                    flow = chain.on_request_body(&info, &[], &mut ctx.modules);
                } else {
                    ctx.gate = Some(WriteGate::new());
                }
            }
        }
        match flow {
            Flow::Continue => {}
            Flow::Respond(answer) => {
                if let Some(why) = ctx.modules.refusal {
                    debug!(host = %ctx.host, why, "module refused the request");
                }
                write_answer(session, &answer).await?;
                return Ok(true);
            }
            Flow::Close => return Err(close_connection()),
        }
        if ctx.modules.websocket_tcp {
            if let Some(target) = target {
                return self.convert_websocket(session, ctx, target).await;
            }
        }
        ctx.target = target;
        Ok(false)
    }

    async fn upstream_peer(
        &self,
        session: &mut Session,
        ctx: &mut Self::CTX,
    ) -> Result<Box<HttpPeer>> {
        let Some(target) = ctx.target.clone() else {
            return Err(crate::tunnel_stream::agent_unavailable("no tunnel chosen"));
        };
        ctx.forwarded = true;
        let mut options = PeerOptions::new();
        options.custom_l4 = Some(Arc::new(TunnelConnector {
            target,
            client: client_addr(session),
            server: inet(session.server_addr()),
            gate: ctx.gate.clone(),
        }));
        Ok(Box::new(HttpPeer {
            _address: L4SocketAddr::Inet(VIRTUAL_PEER_ADDR),
            scheme: Scheme::HTTP,
            sni: String::new(),
            proxy: None,
            client_cert_key: None,
            group_key: 0,
            options,
        }))
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream: &mut RequestHeader,
        ctx: &mut Self::CTX,
    ) -> Result<()> {
        if let Some(addr) = client_addr(session) {
            let ip = addr.ip().to_string();
            let xff = match upstream
                .headers
                .get("x-forwarded-for")
                .and_then(|v| v.to_str().ok())
            {
                Some(prev) if !prev.is_empty() => format!("{prev}, {ip}"),
                _ => ip,
            };
            upstream.insert_header("x-forwarded-for", xff)?;
        }
        let proto = self.scheme();
        let xfp = match upstream
            .headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
        {
            Some(prev) if !prev.is_empty() => format!("{prev}, {proto}"),
            _ => proto.to_string(),
        };
        upstream.insert_header("x-forwarded-proto", xfp)?;
        let forwarded_host = session
            .req_header()
            .headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(str::to_string)
            .or_else(|| session.req_header().uri.authority().map(|a| a.to_string()))
            .unwrap_or_else(|| ctx.host.clone());
        upstream.insert_header("x-forwarded-host", forwarded_host.as_str())?;
        // HTTP/2 requests carry :authority only; HTTP/1.1 upstreams need Host.
        if !upstream.headers.contains_key(http::header::HOST) {
            upstream.insert_header(http::header::HOST, forwarded_host.as_str())?;
        }
        // Each request gets its own stream: Pingora must not pool a stream
        // whose ProxyHeader named another client.
        if !is_upgrade(upstream) {
            upstream.insert_header(http::header::CONNECTION, "close")?;
        }
        if let Some(chain) = ctx.chain.clone() {
            let info = request_info!(session, ctx, self.scheme());
            chain.upstream_request(&info, &mut RequestEdits(upstream), &mut ctx.modules);
        }
        if let Some(path) = ctx.modules.upstream_path.take() {
            match path.parse::<http::Uri>() {
                Ok(uri) => upstream.set_uri(uri),
                Err(_) => {
                    let answer = EdgeResponse::error(
                        500,
                        gangway_policy::engine::RUNTIME_ERROR_CODE,
                        format!("The endpoint's traffic policy rewrote the URL to {path:?}, which is not a valid path."),
                    );
                    ctx.forwarded = false;
                    ctx.answer = Some(answer);
                    return Err(Error::explain(
                        EDGE_ANSWERED,
                        "url-rewrite produced a bad path",
                    ));
                }
            }
        }
        Ok(())
    }

    async fn request_body_filter(
        &self,
        session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut Self::CTX,
    ) -> Result<()> {
        let len = body.as_ref().map_or(0, |b| b.len());
        ctx.request_body_bytes += len as u64;
        let (Some(gate), Some(chain)) = (ctx.gate.clone(), ctx.chain.clone()) else {
            return Ok(());
        };
        if ctx.body.len() + len > BODY_LIMIT {
            return Err(self.answer_now(
                ctx,
                &gate,
                EdgeResponse::error(
                    413,
                    gangway_modules::webhook::ERROR_CODE,
                    "The request body is larger than the 25 MiB the edge verifies.",
                ),
            ));
        }
        if let Some(b) = body {
            ctx.body.extend_from_slice(b);
        }
        if !end_of_stream {
            return Ok(());
        }
        let whole = std::mem::take(&mut ctx.body);
        let mut flow = {
            let info = request_info!(session, ctx, self.scheme());
            chain.on_request_body(&info, &whole, &mut ctx.modules)
        };
        // A module that refused only for want of a signing certificate
        // gets it and decides again.
        if let Some(url) = ctx.modules.fetch.take() {
            if self.fetch_signing_key(&url).await {
                ctx.modules.refusal = None;
                let info = request_info!(session, ctx, self.scheme());
                flow = chain.on_request_body(&info, &whole, &mut ctx.modules);
            }
        }
        match flow {
            Flow::Continue => {
                ctx.gate = None;
                gate.open();
                Ok(())
            }
            Flow::Respond(answer) => {
                if let Some(why) = ctx.modules.refusal {
                    debug!(host = %ctx.host, why, "module refused the request");
                }
                Err(self.answer_now(ctx, &gate, answer))
            }
            Flow::Close => {
                gate.close();
                ctx.gate = None;
                ctx.forwarded = false;
                Err(close_connection())
            }
        }
    }

    async fn response_filter(
        &self,
        session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut Self::CTX,
    ) -> Result<()> {
        // Only the edge may claim an edge error.
        upstream_response.remove_header(ERROR_CODE_HEADER);
        let status = upstream_response.status.as_u16();
        if status != 100 {
            ctx.upstream_status = Some(status);
        }
        if let Some(chain) = ctx.chain.clone().filter(|c| !c.is_empty()) {
            let info = request_info!(session, ctx, self.scheme());
            chain.on_response(
                &info,
                status,
                &mut ResponseEdits(upstream_response),
                &mut ctx.modules,
            );
        }
        if ctx.modules.close_connection {
            return Err(close_connection());
        }
        if let Some(answer) = ctx.modules.replace_response.take() {
            // Nothing of the upstream's response has been written yet:
            // `fail_to_proxy` writes ours whole and drops the stream.
            ctx.answer = Some(answer);
            return Err(Error::explain(
                EDGE_ANSWERED,
                "the traffic policy replaced the response",
            ));
        }
        Ok(())
    }

    fn response_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut Self::CTX,
    ) -> Result<Option<Duration>> {
        if let Some(chain) = &ctx.chain {
            chain.response_body(body, end_of_stream, &mut ctx.modules);
        }
        ctx.response_body_bytes += body.as_ref().map_or(0, |b| b.len()) as u64;
        Ok(None)
    }

    async fn logging(&self, session: &mut Session, _e: Option<&Error>, ctx: &mut Self::CTX) {
        let outcome = Outcome {
            forwarded: ctx.forwarded,
            status: ctx.upstream_status,
        };
        if let Some(chain) = ctx.chain.clone() {
            chain.on_complete(&outcome, &mut ctx.modules);
        }
        if ctx.host.is_empty() {
            return;
        }
        let events = self.registry.events().sink();
        if events.enabled() {
            events.emit(HTTP_REQUEST_COMPLETE, self.request_event(session, ctx));
        }
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &pingora_error::Error,
        ctx: &mut Self::CTX,
    ) -> FailToProxy {
        if *e.etype() == EDGE_CLOSED {
            return FailToProxy {
                error_code: 0,
                can_reuse_downstream: false,
            };
        }
        if *e.etype() == EDGE_ANSWERED {
            if let Some(answer) = ctx.answer.take() {
                if session.response_written().is_none() {
                    let _ = write_answer(session, &answer).await;
                }
                return FailToProxy {
                    error_code: answer.status,
                    can_reuse_downstream: false,
                };
            }
        }
        let failure = match e.etype() {
            ErrorType::HTTPStatus(code) => {
                let code = *code;
                if code > 0 {
                    let _ = session.respond_error(code).await;
                }
                return FailToProxy {
                    error_code: code,
                    can_reuse_downstream: false,
                };
            }
            t if *t == AGENT_UNAVAILABLE => Some(EdgeFailure::AgentOffline),
            _ => match e.esource() {
                ErrorSource::Upstream | ErrorSource::Internal | ErrorSource::Unset => {
                    Some(EdgeFailure::TunnelFailed)
                }
                // The client went away or sent garbage: nobody to answer,
                // or a plain 400.
                ErrorSource::Downstream => match e.etype() {
                    ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed => {
                        None
                    }
                    _ => {
                        let _ = session.respond_error(400).await;
                        return FailToProxy {
                            error_code: 400,
                            can_reuse_downstream: false,
                        };
                    }
                },
            },
        };
        let Some(failure) = failure else {
            return FailToProxy {
                error_code: 0,
                can_reuse_downstream: false,
            };
        };
        debug!(host = %ctx.host, error = %e, "proxy failure");
        if session.response_written().is_none() {
            let _ = write_answer(session, &failure_answer(failure, &ctx.host)).await;
        }
        FailToProxy {
            error_code: failure.status(),
            can_reuse_downstream: false,
        }
    }
}

impl EdgeProxy {
    /// Fetches the SNS signing certificate at `url` (vetted by the module)
    /// and hands its key to the module; false if that failed.
    async fn fetch_signing_key(&self, url: &str) -> bool {
        let key = match self.fetcher.get(url).await {
            Ok(pem) => crate::fetch::rsa_key_of_certificate(&pem),
            Err(e) => Err(e.to_string()),
        };
        match key {
            Ok(der) => {
                gangway_modules::webhook::sns::remember_key(url, der);
                true
            }
            Err(error) => {
                warn!(%url, %error, "cannot fetch a webhook signing certificate");
                false
            }
        }
    }

    /// Fetches the JWKS at `url` for jwt-validation. On failure the keys
    /// already held (if any) keep serving, and the next try waits a TTL.
    async fn fetch_jwks(&self, url: &str) {
        let stored = match self.fetcher.get(url).await {
            Ok(doc) => gangway_modules::jwt::remember_jwks(url, &doc),
            Err(e) => Err(e.to_string()),
        };
        if let Err(error) = stored {
            warn!(%url, %error, "cannot fetch a JWKS for jwt-validation");
            gangway_modules::jwt::fetch_failed(url);
        }
    }

    /// The websocket-TCP converter admitted the request: answer the
    /// upgrade here and bridge its messages to a raw stream to the agent.
    async fn convert_websocket(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        target: Target,
    ) -> Result<bool> {
        let connector = TunnelConnector {
            target,
            client: client_addr(session),
            server: inet(session.server_addr()),
            gate: None,
        };
        let agent = match connector.open_raw() {
            Ok(stream) => stream,
            Err(e) => {
                debug!(host = %ctx.host, error = %e, "cannot open a stream for a websocket");
                let answer = failure_answer(EdgeFailure::AgentOffline, &ctx.host);
                write_answer(session, &answer).await?;
                return Ok(true);
            }
        };
        let resp = websocket_bridge::switching_protocols(session.req_header())?;
        ctx.forwarded = true;
        ctx.upstream_status = Some(101);
        let moved = websocket_bridge::bridge(session, agent, resp).await?;
        ctx.request_body_bytes = moved.from_client;
        ctx.response_body_bytes = moved.to_client;
        Ok(true)
    }

    /// Drops the held request and keeps `answer` for `fail_to_proxy`.
    fn answer_now(
        &self,
        ctx: &mut RequestCtx,
        gate: &WriteGate,
        answer: EdgeResponse,
    ) -> Box<Error> {
        gate.close();
        ctx.gate = None;
        ctx.forwarded = false;
        ctx.answer = Some(answer);
        Error::explain(EDGE_ANSWERED, "a route module answered the request")
    }
}
