//! The public HTTP(S) data path: route by Host, run the route's module
//! chain, hand the request to an agent tunnel over a muxado stream, answer
//! refusals and failures with a code (`errors::respond`), and emit one
//! event per request.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use pingora_core::protocols::l4::socket::SocketAddr as L4SocketAddr;
use pingora_core::upstreams::peer::{HttpPeer, PeerOptions, Scheme};
use pingora_error::{Error, ErrorSource, ErrorType, Result};
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::{FailToProxy, ProxyHttp, Session};
use tracing::debug;

use crate::errors::{respond, EdgeFailure, ERROR_CODE_HEADER};
use crate::event_objects::{self, HttpExchange};
use crate::events::HTTP_REQUEST_COMPLETE;
use crate::fetch::Documents;
use crate::registry::Registry;
use crate::request_view::{
    client_addr, conn_info, handshake_facts, has_no_body, is_upgrade, request_host, server_addr,
    RequestEdits, ResponseEdits,
};
use crate::route_table::{strip_port, Scheme as PublicScheme, Target};
use crate::tunnel_stream::{TunnelConnector, WriteGate, AGENT_UNAVAILABLE};
use crate::websocket_bridge;
use gangway_modules::chain::{
    Chain, ChainState, ConnInfo, Directives, EdgeResponse, Outcome, RequestInfo, ResponseFlow,
    Stop, Upgrade, BODY_LIMIT,
};
use gangway_modules::refusal::Refusal;

/// Placeholder address for virtual peers: Pingora wants one for logging
/// and pooling keys; no socket is ever opened to it.
const VIRTUAL_PEER_ADDR: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0);

/// Error type for "the edge answered after proxying began": the answer
/// waits in the request's context for `fail_to_proxy` to write.
const EDGE_ANSWERED: ErrorType = ErrorType::Custom("EdgeAnswered");

/// Error type for "a policy closes the connection without an answer".
const EDGE_CLOSED: ErrorType = ErrorType::Custom("EdgeClosed");

/// Times a phase may ask for documents before the edge gives up on it.
const FETCH_ROUNDS: usize = 2;

fn close_connection() -> Box<Error> {
    Error::explain(EDGE_CLOSED, "the traffic policy closed the connection")
}

/// One per public listener (`tls` tells which).
pub struct EdgeProxy {
    registry: Arc<Registry>,
    documents: Arc<Documents>,
    tls: bool,
}

impl EdgeProxy {
    pub fn new(registry: Arc<Registry>, documents: Arc<Documents>, tls: bool) -> Self {
        EdgeProxy {
            registry,
            documents,
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
    /// The chain's state for this request, once a chain is chosen.
    modules: Option<ChainState>,
    /// url-rewrite: the path and query sent upstream.
    rewrite: Option<String>,
    /// Holds the request at the edge while a module reads the body.
    gate: Option<Arc<WriteGate>>,
    body: Vec<u8>,
    /// An answer decided after proxying began (body or response phase).
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
            modules: None,
            rewrite: None,
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

/// The head of a response the edge generated (errors carry
/// `ngrok-error-code`).
fn answer_header(answer: &EdgeResponse) -> Result<ResponseHeader> {
    let mut resp = ResponseHeader::build(answer.status, Some(answer.headers.len() + 3))?;
    for (name, value) in &answer.headers {
        resp.append_header(name.clone(), value.clone())?;
    }
    resp.insert_header(http::header::CONTENT_LENGTH, answer.body.len().to_string())?;
    if let Some(code) = answer.code {
        resp.insert_header(ERROR_CODE_HEADER, code.as_str())?;
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

/// How the edge ends a request a module stopped.
enum Ending {
    Answer(EdgeResponse),
    Close,
}

/// What the edge does for `stop`. A document still missing after the
/// fetch rounds leaves the module unable to decide: it fails closed.
fn ending(stop: Stop, host: &str) -> Ending {
    match stop {
        Stop::Refuse(r) => {
            debug!(%host, why = r.reason(), "module refused the request");
            Ending::Answer(respond(&r.into(), host))
        }
        Stop::Respond(answer) => Ending::Answer(answer),
        Stop::Close => Ending::Close,
        Stop::Fetch(f) => {
            debug!(%host, url = %f.url, "a module still lacks a document");
            Ending::Answer(respond(&EdgeFailure::ModuleUnavailable, host))
        }
    }
}

fn is_internal(host: &str) -> bool {
    strip_port(host)
        .trim_end_matches('.')
        .ends_with(".internal")
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
                    tracing::warn!(%host, route = %m.route.id, modules = ?m.route.unsupported, "route has modules this edge cannot apply; refusing");
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

    /// Writes the answer for `failure` and ends the request.
    async fn fail(&self, session: &mut Session, failure: EdgeFailure, host: &str) -> Result<bool> {
        write_answer(session, &respond(&failure, host)).await?;
        Ok(true)
    }

    /// Ends a request a module stopped before anything was proxied.
    async fn end(&self, session: &mut Session, stop: Stop, host: &str) -> Result<bool> {
        match ending(stop, host) {
            Ending::Answer(answer) => {
                write_answer(session, &answer).await?;
                Ok(true)
            }
            Ending::Close => Err(close_connection()),
        }
    }

    /// The connect and request phases, fetching what modules ask for.
    async fn run_request_phase(
        &self,
        info: &RequestInfo<'_>,
        chain: &Chain,
        st: &mut ChainState,
    ) -> std::result::Result<Directives, Stop> {
        let mut directives = chain.on_connect(info.conn, st)?;
        let mut rounds = 0;
        loop {
            match chain.on_request(info, st) {
                Err(Stop::Fetch(f)) if rounds < FETCH_ROUNDS => {
                    rounds += 1;
                    self.documents.ensure(&f).await;
                }
                Err(stop) => return Err(stop),
                Ok(d) => {
                    directives.merge(d);
                    return Ok(directives);
                }
            }
        }
    }

    /// The body phase over the whole body, fetching what modules ask for.
    async fn run_body_phase(
        &self,
        info: &RequestInfo<'_>,
        body: &[u8],
        chain: &Chain,
        st: &mut ChainState,
    ) -> std::result::Result<Directives, Stop> {
        let mut rounds = 0;
        loop {
            match chain.on_request_body(info, body, st) {
                Err(Stop::Fetch(f)) if rounds < FETCH_ROUNDS => {
                    rounds += 1;
                    self.documents.ensure(&f).await;
                }
                other => return other,
            }
        }
    }
}

#[async_trait]
impl ProxyHttp for EdgeProxy {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> Self::CTX {
        RequestCtx::default()
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Self::CTX) -> Result<bool> {
        let Some(host) = request_host(session.req_header()) else {
            return self.fail(session, EdgeFailure::MissingHost, "").await;
        };
        ctx.conn = conn_info(session, &host);
        ctx.host = host;
        let sni = handshake_facts(session).and_then(|f| f.sni.clone());
        let routed = self.route(&ctx.host, session.req_header().uri.path(), sni.as_deref());
        let (chain, target) = match routed {
            Ok(Routed::Edge { chain, target }) => (chain, target),
            Ok(Routed::Agent(t)) => (t.options.chain.clone(), Some(t)),
            Err(failure) => {
                let host = ctx.host.clone();
                return self.fail(session, failure, &host).await;
            }
        };
        ctx.chain = Some(chain.clone());
        for f in chain.documents() {
            self.documents.ensure(f).await;
        }
        let mut st = ChainState::new(&chain, self.documents.cache().clone());
        let phase = {
            let info = request_info!(session, ctx, self.scheme());
            self.run_request_phase(&info, &chain, &mut st).await
        };
        let mut target = target;
        let mut phase = phase.and_then(|d| match &d.forward {
            None => Ok(d),
            Some(forward) => match self.internal_target(&forward.host) {
                Some(t) => {
                    target = Some(t);
                    Ok(d)
                }
                None if forward.continue_on_error => Ok(d),
                None => Err(Stop::Refuse(Refusal::ForwardOffline(forward.host.clone()))),
            },
        });
        // Modules answer even when no agent is online (a policy's
        // custom-response needs none).
        if phase.is_ok() && target.is_none() {
            ctx.modules = Some(st);
            let host = ctx.host.clone();
            return self.fail(session, EdgeFailure::AgentOffline, &host).await;
        }
        if chain.wants_body() {
            if let Ok(directives) = &mut phase {
                if has_no_body(session.req_header()) {
                    let info = request_info!(session, ctx, self.scheme());
                    match self.run_body_phase(&info, &[], &chain, &mut st).await {
                        Ok(d) => directives.merge(d),
                        Err(stop) => phase = Err(stop),
                    }
                } else {
                    ctx.gate = Some(WriteGate::new());
                }
            }
        }
        ctx.modules = Some(st);
        let directives = match phase {
            Ok(d) => d,
            Err(stop) => {
                let host = ctx.host.clone();
                return self.end(session, stop, &host).await;
            }
        };
        ctx.rewrite = directives.rewrite;
        if directives.upgrade == Some(Upgrade::WebsocketTcp) {
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
            server: server_addr(session),
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
        if let (Some(chain), Some(st)) = (ctx.chain.clone(), ctx.modules.as_mut()) {
            let info = request_info!(session, ctx, self.scheme());
            chain.upstream_request(&info, &mut RequestEdits(upstream), st);
        }
        if let Some(path) = ctx.rewrite.take() {
            match path.parse::<http::Uri>() {
                Ok(uri) => upstream.set_uri(uri),
                Err(_) => {
                    ctx.forwarded = false;
                    ctx.answer = Some(respond(&Refusal::PolicyBadRewrite(path).into(), &ctx.host));
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
            let answer = respond(&Refusal::WebhookBodyTooLarge.into(), &ctx.host);
            return Err(self.answer_now(ctx, &gate, answer));
        }
        if let Some(b) = body {
            ctx.body.extend_from_slice(b);
        }
        if !end_of_stream {
            return Ok(());
        }
        let whole = std::mem::take(&mut ctx.body);
        let Some(mut st) = ctx.modules.take() else {
            return Ok(());
        };
        let verdict = {
            let info = request_info!(session, ctx, self.scheme());
            self.run_body_phase(&info, &whole, &chain, &mut st).await
        };
        ctx.modules = Some(st);
        match verdict {
            Ok(_) => {
                ctx.gate = None;
                gate.open();
                Ok(())
            }
            Err(stop) => match ending(stop, &ctx.host) {
                Ending::Answer(answer) => Err(self.answer_now(ctx, &gate, answer)),
                Ending::Close => {
                    gate.close();
                    ctx.gate = None;
                    ctx.forwarded = false;
                    Err(close_connection())
                }
            },
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
        let Some(chain) = ctx.chain.clone().filter(|c| !c.is_empty()) else {
            return Ok(());
        };
        let Some(st) = ctx.modules.as_mut() else {
            return Ok(());
        };
        let info = request_info!(session, ctx, self.scheme());
        let flow = chain.on_response(&info, status, &mut ResponseEdits(upstream_response), st);
        // Nothing of the upstream's response has been written yet: a
        // replacement goes out whole from `fail_to_proxy`.
        let answer = match flow {
            ResponseFlow::Continue => return Ok(()),
            ResponseFlow::Close => return Err(close_connection()),
            ResponseFlow::Replace(answer) => answer,
            ResponseFlow::Refuse(r) => respond(&r.into(), &ctx.host),
        };
        ctx.answer = Some(answer);
        Err(Error::explain(
            EDGE_ANSWERED,
            "the traffic policy replaced the response",
        ))
    }

    fn response_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut Self::CTX,
    ) -> Result<Option<Duration>> {
        if let (Some(chain), Some(st)) = (&ctx.chain, ctx.modules.as_mut()) {
            chain.response_body(body, end_of_stream, st);
        }
        ctx.response_body_bytes += body.as_ref().map_or(0, |b| b.len()) as u64;
        Ok(None)
    }

    async fn logging(&self, session: &mut Session, _e: Option<&Error>, ctx: &mut Self::CTX) {
        let outcome = Outcome {
            forwarded: ctx.forwarded,
            status: ctx.upstream_status,
        };
        if let (Some(chain), Some(st)) = (ctx.chain.clone(), ctx.modules.as_mut()) {
            chain.on_complete(&outcome, st);
        }
        if ctx.host.is_empty() {
            return;
        }
        let events = self.registry.events().sink();
        if !events.enabled() {
            return;
        }
        let req = session.req_header();
        let url = request_info!(session, ctx, self.scheme()).full_url();
        let response = session.response_written();
        let object = event_objects::http_request(&HttpExchange {
            conn: &ctx.conn,
            started: ctx.started,
            scheme: self.scheme(),
            host: &ctx.host,
            method: &req.method,
            uri: &req.uri,
            url,
            request_headers: &req.headers,
            request_body_bytes: ctx.request_body_bytes,
            response: response.map(|r| (r.status.as_u16(), &r.headers)),
            response_body_bytes: ctx.response_body_bytes,
            decisions: ctx.modules.as_ref().map(|st| &st.facts.decisions),
        });
        events.emit(HTTP_REQUEST_COMPLETE, object);
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &pingora_error::Error,
        ctx: &mut Self::CTX,
    ) -> FailToProxy {
        let done = |error_code| FailToProxy {
            error_code,
            can_reuse_downstream: false,
        };
        if *e.etype() == EDGE_CLOSED {
            return done(0);
        }
        if *e.etype() == EDGE_ANSWERED {
            if let Some(answer) = ctx.answer.take() {
                if session.response_written().is_none() {
                    let _ = write_answer(session, &answer).await;
                }
                return done(answer.status);
            }
        }
        let failure = match e.etype() {
            ErrorType::HTTPStatus(0) => return done(0),
            ErrorType::HTTPStatus(400) => EdgeFailure::BadRequest,
            ErrorType::HTTPStatus(code) => EdgeFailure::Proxy(*code),
            t if *t == AGENT_UNAVAILABLE => EdgeFailure::AgentOffline,
            _ => match e.esource() {
                ErrorSource::Upstream | ErrorSource::Internal | ErrorSource::Unset => {
                    EdgeFailure::TunnelFailed
                }
                // The client went away, or sent garbage.
                ErrorSource::Downstream => match e.etype() {
                    ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed => {
                        return done(0)
                    }
                    _ => EdgeFailure::BadRequest,
                },
            },
        };
        debug!(host = %ctx.host, error = %e, why = failure.reason(), "proxy failure");
        let answer = respond(&failure, &ctx.host);
        if session.response_written().is_none() {
            let _ = write_answer(session, &answer).await;
        }
        done(answer.status)
    }
}

impl EdgeProxy {
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
            server: server_addr(session),
            gate: None,
        };
        let agent = match connector.open_raw() {
            Ok(stream) => stream,
            Err(e) => {
                debug!(host = %ctx.host, error = %e, "cannot open a stream for a websocket");
                let host = ctx.host.clone();
                return self.fail(session, EdgeFailure::AgentOffline, &host).await;
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
