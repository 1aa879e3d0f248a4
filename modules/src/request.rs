//! What modules see of a connection and a request, what they may edit,
//! and the responses they may ask the edge to write. No sockets: the edge
//! fills these from Pingora's types.

use std::net::SocketAddr;

use bytes::Bytes;
use gangway_config::codes::Code;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri};

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

/// A response written by the edge instead of the upstream's: one a module
/// chose (a policy's custom-response, a provider's challenge), or a
/// refusal the edge rendered (then `code` is set).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdgeResponse {
    pub status: u16,
    /// `ngrok-error-code`: set only by the edge, for refusals and failures.
    pub code: Option<Code>,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: Bytes,
}

impl EdgeResponse {
    /// A JSON answer (webhook challenges).
    pub fn json(status: u16, body: &serde_json::Value) -> Self {
        EdgeResponse::empty(status)
            .with_header(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )
            .with_body(body.to_string())
    }

    /// A plain-text answer.
    pub fn text(status: u16, body: impl Into<Bytes>) -> Self {
        EdgeResponse::empty(status)
            .with_header(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            )
            .with_body(body)
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

    pub fn with_body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self
    }
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
