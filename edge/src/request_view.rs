//! What route modules see of a Pingora session (the connection, the
//! request's host) and how their header edits reach Pingora's header
//! types, which keep their own case map.

use std::net::SocketAddr;

use http::{HeaderMap, HeaderName, HeaderValue};
use pingora_core::protocols::l4::socket::SocketAddr as L4SocketAddr;
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::Session;

use crate::client_tls::HandshakeFacts;
use crate::route_table::strip_port;
use gangway_modules::chain::{ConnInfo, HeaderEdits, TlsInfo};

/// The request's host: the URI's authority (HTTP/2, absolute form) or the
/// Host header, lowercased, without port or trailing dot.
pub fn request_host(req: &RequestHeader) -> Option<String> {
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

pub fn client_addr(session: &Session) -> Option<SocketAddr> {
    inet(session.client_addr())
}

pub fn server_addr(session: &Session) -> Option<SocketAddr> {
    inet(session.server_addr())
}

/// What the TLS handshake of the request's connection established.
pub fn handshake_facts(session: &Session) -> Option<&HandshakeFacts> {
    session
        .digest()?
        .ssl_digest
        .as_ref()?
        .extension
        .get::<HandshakeFacts>()
}

/// The connection as modules and events see it.
pub fn conn_info(session: &Session, host: &str) -> ConnInfo {
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
        server: server_addr(session),
        server_name: host.to_string(),
        tls,
    }
}

pub fn is_upgrade(req: &RequestHeader) -> bool {
    req.headers.contains_key(http::header::UPGRADE)
}

/// Whether a request carries no body (so a body-reading module can decide
/// before anything is proxied).
pub fn has_no_body(req: &RequestHeader) -> bool {
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

/// A request head, edited through Pingora's API.
pub struct RequestEdits<'a>(pub &'a mut RequestHeader);

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

/// A response head, edited through Pingora's API.
pub struct ResponseEdits<'a>(pub &'a mut ResponseHeader);

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
