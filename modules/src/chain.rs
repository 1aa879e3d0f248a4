//! The `RouteModule` trait and the compiled chain that runs a route's
//! modules in the order MODULES.md fixes.
//!
//! Modules are immutable (`&self`) and shared by every request of a route;
//! what one request needs to remember lives in [`RequestState`]. A module
//! never touches sockets: it reads a [`RequestInfo`], decides a [`Flow`],
//! and edits headers through [`HeaderEdits`], which the edge implements
//! for Pingora's header types.

use std::net::SocketAddr;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri};

use crate::compression::Encoder;
use crate::decisions::Decisions;

/// The client certificate a mutual-TLS connection presented.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientCert {
    /// Hex, as ngrok's events print it.
    pub serial_number: String,
    pub subject_cn: String,
}

/// The TLS session a request arrived on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsInfo {
    pub version: String,
    pub cipher_suite: String,
    pub client_cert: Option<ClientCert>,
}

/// The connection a request arrived on.
#[derive(Debug, Clone, Default)]
pub struct ConnInfo {
    pub client: Option<SocketAddr>,
    pub server: Option<SocketAddr>,
    /// SNI, or the Host for plain HTTP.
    pub server_name: String,
    pub tls: Option<TlsInfo>,
}

/// What modules see of a request.
#[derive(Debug, Clone, Copy)]
pub struct RequestInfo<'a> {
    pub conn: &'a ConnInfo,
    pub method: &'a Method,
    pub uri: &'a Uri,
    pub headers: &'a HeaderMap,
    /// `http` or `https`: the scheme the client used.
    pub scheme: &'static str,
    /// The Host, lowercased, without port.
    pub host: &'a str,
}

impl RequestInfo<'_> {
    /// First value of `name`, if it is valid UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The URL the client asked for: `scheme://host[:port]/path?query`
    /// (HTTP/2 carries the authority in the URI, HTTP/1.1 in Host).
    pub fn full_url(&self) -> String {
        let host = self
            .uri
            .authority()
            .map(|a| a.as_str())
            .or_else(|| self.header("host"))
            .unwrap_or(self.host);
        let pq = self.uri.path_and_query().map_or("/", |pq| pq.as_str());
        format!("{}://{}{}", self.scheme, host, pq)
    }
}

/// A response the edge writes itself instead of forwarding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdgeResponse {
    pub status: u16,
    /// `ngrok-error-code`, for error responses.
    pub code: Option<&'static str>,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: Bytes,
}

impl EdgeResponse {
    /// An edge error: status, `ngrok-error-code` and a short plain body.
    pub fn error(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        let body = format!("{}\n{code}\n", message.into());
        EdgeResponse {
            status,
            code: Some(code),
            headers: vec![(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            )],
            body: Bytes::from(body),
        }
    }

    /// A JSON answer (webhook challenges).
    pub fn json(status: u16, body: &serde_json::Value) -> Self {
        EdgeResponse {
            status,
            code: None,
            headers: vec![(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            body: Bytes::from(body.to_string()),
        }
    }

    /// An empty answer with `status`.
    pub fn empty(status: u16) -> Self {
        EdgeResponse {
            status,
            code: None,
            headers: Vec::new(),
            body: Bytes::new(),
        }
    }

    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }
}

/// What a phase decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Flow {
    Continue,
    /// Stop here and answer with this.
    Respond(EdgeResponse),
    /// Stop here and close the connection without an answer
    /// (Traffic Policy `close-connection`, or a refused TCP connect).
    Close,
}

/// Header edits on a request or response head (the edge applies them to
/// Pingora's header types, which keep their own case map).
pub trait HeaderEdits {
    /// The head as it stands (before this module's edits).
    fn headers(&self) -> &HeaderMap;
    /// Drops every value of `name`.
    fn remove(&mut self, name: &HeaderName);
    /// Adds a value after any existing ones.
    fn append(&mut self, name: HeaderName, value: HeaderValue);
    /// Replaces every value.
    fn insert(&mut self, name: HeaderName, value: HeaderValue);
}

impl HeaderEdits for HeaderMap {
    fn headers(&self) -> &HeaderMap {
        self
    }
    fn remove(&mut self, name: &HeaderName) {
        HeaderMap::remove(self, name);
    }
    fn append(&mut self, name: HeaderName, value: HeaderValue) {
        HeaderMap::append(self, name, value);
    }
    fn insert(&mut self, name: HeaderName, value: HeaderValue) {
        HeaderMap::insert(self, name, value);
    }
}

/// How the upstream exchange ended, for modules that learn from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// The request went to the agent (no module answered it).
    pub forwarded: bool,
    /// The upstream's status, if a response head came back.
    pub status: Option<u16>,
}

impl Outcome {
    /// An upstream 5xx, or an agent that could not be reached.
    pub fn is_error(&self) -> bool {
        self.forwarded && self.status.is_none_or(|s| s >= 500)
    }
}

/// One request's module state: decisions for the event and what later
/// phases need from earlier ones.
#[derive(Debug, Default)]
pub struct RequestState {
    pub decisions: Decisions,
    /// Set by the compression module when it chose an encoding.
    pub(crate) encoder: Option<Encoder>,
    /// This request is the circuit breaker's probe.
    pub(crate) breaker_probe: bool,
    /// The websocket-TCP converter accepted this request: bridge it.
    pub websocket_tcp: bool,
    /// Authenticated user name (basic auth), for `${...}` interpolation.
    pub username: Option<String>,
    /// Credentials the app must not see (basic auth passed at the edge).
    pub strip_authorization: bool,
    /// Why a module refused the request, for the edge's log.
    pub refusal: Option<&'static str>,
    /// A module refused only because it lacks this document, an HTTPS URL
    /// it has vetted (an SNS signing certificate): the edge may fetch it,
    /// hand the key to the module, and run the body phase again.
    pub fetch: Option<String>,
    /// Traffic Policy: what the request phase left for later phases.
    pub(crate) policy: Option<Box<crate::traffic_policy::PolicyRun>>,
    /// Traffic Policy `url-rewrite`: the path and query to send upstream.
    pub upstream_path: Option<String>,
    /// Traffic Policy answered in the response phase: the edge writes this
    /// instead of the upstream's response (none of which was written).
    pub replace_response: Option<EdgeResponse>,
    /// Traffic Policy `forward-internal`: the internal endpoint that
    /// serves this request instead of the route's own.
    pub forward_internal: Option<crate::traffic_policy::Forward>,
    /// Traffic Policy `close-connection` in the response phase.
    pub close_connection: bool,
}

/// Where a module runs, in MODULES.md order: the chain sorts by this, so
/// callers may add modules in any order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stage {
    IpRestriction,
    UserAgentFilter,
    WebhookVerification,
    /// basic auth, oauth, oidc, saml: one per route.
    Auth,
    TrafficPolicy,
    WebsocketTcpConverter,
    CircuitBreaker,
    RequestHeaders,
    Compression,
    ResponseHeaders,
}

impl Stage {
    /// The module's API name.
    pub fn name(self) -> &'static str {
        match self {
            Stage::IpRestriction => "ip_restriction",
            Stage::UserAgentFilter => "user_agent_filter",
            Stage::WebhookVerification => "webhook_verification",
            Stage::Auth => "auth",
            Stage::TrafficPolicy => "traffic_policy",
            Stage::WebsocketTcpConverter => "websocket_tcp_converter",
            Stage::CircuitBreaker => "circuit_breaker",
            Stage::RequestHeaders => "request_headers",
            Stage::Compression => "compression",
            Stage::ResponseHeaders => "response_headers",
        }
    }
}

/// A route module. Each phase has a default that does nothing, so a
/// module implements only the phases it acts in.
pub trait RouteModule: Send + Sync + std::fmt::Debug {
    fn stage(&self) -> Stage;

    /// The module's API name (`ip_restriction`, ...).
    fn name(&self) -> &'static str {
        self.stage().name()
    }

    /// Before anything is read: the layer-4 source is known.
    fn on_connect(&self, _conn: &ConnInfo, _st: &mut RequestState) -> Flow {
        Flow::Continue
    }

    /// The request head arrived.
    fn on_request(&self, _req: &RequestInfo<'_>, _st: &mut RequestState) -> Flow {
        Flow::Continue
    }

    /// Whether [`on_request_body`](Self::on_request_body) needs the whole body.
    fn wants_body(&self) -> bool {
        false
    }

    /// The whole request body (only for modules that want it), before any
    /// of the request reaches the agent.
    fn on_request_body(
        &self,
        _req: &RequestInfo<'_>,
        _body: &[u8],
        _st: &mut RequestState,
    ) -> Flow {
        Flow::Continue
    }

    /// The request head about to go upstream.
    fn upstream_request(
        &self,
        _req: &RequestInfo<'_>,
        _head: &mut dyn HeaderEdits,
        _st: &mut RequestState,
    ) {
    }

    /// The response head about to go to the client.
    fn on_response(
        &self,
        _req: &RequestInfo<'_>,
        _status: u16,
        _out: &mut dyn HeaderEdits,
        _st: &mut RequestState,
    ) {
    }

    /// The exchange is over.
    fn on_complete(&self, _outcome: &Outcome, _st: &mut RequestState) {}

    /// HTTPS documents (JWKS) the edge must fetch, when
    /// [`crate::jwt::needs_fetch`] says so, before the request phase.
    fn documents(&self) -> &[String] {
        &[]
    }
}

/// Largest request body a module buffers (webhook verification): GitHub,
/// the largest sender, caps deliveries at 25 MB.
pub const BODY_LIMIT: usize = 25 * 1024 * 1024;

/// A route's modules, in execution order.
#[derive(Debug, Default)]
pub struct Chain {
    modules: Vec<Box<dyn RouteModule>>,
    wants_body: bool,
}

impl Chain {
    /// Orders `modules` by [`Stage`].
    pub fn new(mut modules: Vec<Box<dyn RouteModule>>) -> Self {
        modules.sort_by_key(|m| m.stage());
        let wants_body = modules.iter().any(|m| m.wants_body());
        Chain {
            modules,
            wants_body,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.modules.is_empty()
    }

    /// Module names, in order.
    pub fn names(&self) -> Vec<&'static str> {
        self.modules.iter().map(|m| m.name()).collect()
    }

    pub fn on_connect(&self, conn: &ConnInfo, st: &mut RequestState) -> Flow {
        first_response(&self.modules, |m| m.on_connect(conn, st))
    }

    pub fn on_request(&self, req: &RequestInfo<'_>, st: &mut RequestState) -> Flow {
        first_response(&self.modules, |m| m.on_request(req, st))
    }

    /// The documents every module needs fetched ([`RouteModule::documents`]).
    pub fn documents(&self) -> impl Iterator<Item = &str> {
        self.modules
            .iter()
            .flat_map(|m| m.documents().iter().map(String::as_str))
    }

    /// Whether the request body must be held until the chain has seen it.
    pub fn wants_body(&self) -> bool {
        self.wants_body
    }

    pub fn on_request_body(
        &self,
        req: &RequestInfo<'_>,
        body: &[u8],
        st: &mut RequestState,
    ) -> Flow {
        first_response(&self.modules, |m| {
            if m.wants_body() {
                m.on_request_body(req, body, st)
            } else {
                Flow::Continue
            }
        })
    }

    pub fn upstream_request(
        &self,
        req: &RequestInfo<'_>,
        head: &mut dyn HeaderEdits,
        st: &mut RequestState,
    ) {
        for m in &self.modules {
            m.upstream_request(req, head, st);
        }
    }

    pub fn on_response(
        &self,
        req: &RequestInfo<'_>,
        status: u16,
        out: &mut dyn HeaderEdits,
        st: &mut RequestState,
    ) {
        for m in &self.modules {
            m.on_response(req, status, out, st);
        }
    }

    /// Passes a response body chunk through the chosen encoder, if any.
    /// `end` flushes the encoder's tail into the last chunk.
    pub fn response_body(&self, chunk: &mut Option<Bytes>, end: bool, st: &mut RequestState) {
        if let Some(enc) = st.encoder.as_mut() {
            let out = enc.encode(chunk.as_deref().unwrap_or_default(), end);
            if end {
                st.decisions.compression_bytes_saved = Some(enc.bytes_saved());
            }
            *chunk = Some(out);
        }
    }

    pub fn on_complete(&self, outcome: &Outcome, st: &mut RequestState) {
        for m in &self.modules {
            m.on_complete(outcome, st);
        }
    }
}

fn first_response(
    modules: &[Box<dyn RouteModule>],
    mut phase: impl FnMut(&dyn RouteModule) -> Flow,
) -> Flow {
    for m in modules {
        let flow = phase(m.as_ref());
        if flow != Flow::Continue {
            return flow;
        }
    }
    Flow::Continue
}
