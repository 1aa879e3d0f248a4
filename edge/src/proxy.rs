//! The public HTTP(S) data path: route by Host, hand the request to an agent
//! tunnel over a muxado stream, answer edge errors with a code.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use pingora_core::protocols::l4::socket::SocketAddr as L4SocketAddr;
use pingora_core::upstreams::peer::{HttpPeer, PeerOptions, Scheme};
use pingora_error::{ErrorSource, ErrorType, Result};
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::{FailToProxy, ProxyHttp, Session};

use tracing::warn;

use crate::errors::{EdgeFailure, ERROR_CODE_HEADER};
use crate::registry::Registry;
use crate::route_table::{strip_port, Scheme as PublicScheme, Target};
use crate::tunnel_stream::{TunnelConnector, AGENT_UNAVAILABLE};
use gangway_modules::basic_auth::AuthDecision;

/// Placeholder address for virtual peers: Pingora wants one for logging
/// and pooling keys; no socket is ever opened to it.
const VIRTUAL_PEER_ADDR: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0);

/// One per public listener (`tls` tells which).
pub struct EdgeProxy {
    registry: Arc<Registry>,
    tls: bool,
}

impl EdgeProxy {
    pub fn new(registry: Arc<Registry>, tls: bool) -> Self {
        EdgeProxy { registry, tls }
    }
}

/// Per-request state.
#[derive(Default)]
pub struct RequestCtx {
    host: String,
    target: Option<Target>,
    /// Basic auth passed at the edge: the credential is not the app's.
    strip_authorization: bool,
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

fn client_addr(session: &Session) -> Option<SocketAddr> {
    match session.client_addr() {
        Some(L4SocketAddr::Inet(a)) => Some(*a),
        _ => None,
    }
}

/// Writes a small error response carrying `ngrok-error-code`.
async fn respond(session: &mut Session, failure: EdgeFailure, host: &str) -> Result<()> {
    let body = Bytes::from(format!("{}\n{}\n", failure.message(host), failure.code()));
    let mut resp = ResponseHeader::build(failure.status(), Some(4))?;
    resp.insert_header(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")?;
    resp.insert_header(http::header::CONTENT_LENGTH, body.len().to_string())?;
    resp.insert_header(ERROR_CODE_HEADER, failure.code())?;
    session.write_response_header(Box::new(resp), false).await?;
    session.write_response_body(Some(body), true).await
}

/// 401 with a basic-auth challenge.
async fn challenge(session: &mut Session, www_authenticate: &str) -> Result<()> {
    let body = Bytes::from_static(b"Authentication required.\n");
    let mut resp = ResponseHeader::build(401, Some(4))?;
    resp.insert_header(http::header::WWW_AUTHENTICATE, www_authenticate)?;
    resp.insert_header(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")?;
    resp.insert_header(http::header::CONTENT_LENGTH, body.len().to_string())?;
    session.write_response_header(Box::new(resp), false).await?;
    session.write_response_body(Some(body), true).await
}

fn is_upgrade(req: &RequestHeader) -> bool {
    req.headers.contains_key(http::header::UPGRADE)
}

#[async_trait]
impl ProxyHttp for EdgeProxy {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> Self::CTX {
        RequestCtx::default()
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Self::CTX) -> Result<bool> {
        let Some(host) = request_host(session.req_header()) else {
            respond(session, EdgeFailure::MissingHost, "").await?;
            return Ok(true);
        };
        let table = self.registry.table();
        let scheme = if self.tls {
            PublicScheme::Https
        } else {
            PublicScheme::Http
        };
        if self.tls {
            if let Some(edge) = table.lookup_edge(&host) {
                let failure = match edge.route(session.req_header().uri.path()) {
                    None => EdgeFailure::NoRoute,
                    Some((route, _)) if !route.unsupported.is_empty() => {
                        warn!(%host, route = %route.id, modules = ?route.unsupported, "route has modules this edge cannot apply; refusing");
                        EdgeFailure::ModuleUnavailable
                    }
                    Some((route, ep)) => {
                        let blocked = route.ip_restriction.as_ref().is_some_and(|ips| {
                            client_addr(session).is_none_or(|a| !ips.allows(a.ip()))
                        });
                        match ep.pick() {
                            _ if blocked => EdgeFailure::IpBlocked,
                            Some(t) => {
                                ctx.target = Some(t.clone());
                                ctx.host = host;
                                return Ok(false);
                            }
                            None => EdgeFailure::AgentOffline,
                        }
                    }
                };
                respond(session, failure, &host).await?;
                return Ok(true);
            }
        }
        let failure = match table.lookup(&host, scheme) {
            None => EdgeFailure::UnknownHost,
            Some(ep) => match ep.pick() {
                Some(t) => {
                    if let Some(auth) = &t.options.basic_auth {
                        let header = session
                            .req_header()
                            .headers
                            .get(http::header::AUTHORIZATION);
                        match auth.check(header.map(|h| h.as_bytes())) {
                            AuthDecision::Allow { .. } => ctx.strip_authorization = true,
                            AuthDecision::Deny => {
                                challenge(session, &auth.challenge()).await?;
                                return Ok(true);
                            }
                        }
                    }
                    ctx.target = Some(t.clone());
                    ctx.host = host;
                    return Ok(false);
                }
                None => EdgeFailure::AgentOffline,
            },
        };
        respond(session, failure, &host).await?;
        Ok(true)
    }

    async fn upstream_peer(
        &self,
        session: &mut Session,
        ctx: &mut Self::CTX,
    ) -> Result<Box<HttpPeer>> {
        let Some(target) = ctx.target.clone() else {
            return Err(crate::tunnel_stream::agent_unavailable("no tunnel chosen"));
        };
        let server = match session.server_addr() {
            Some(L4SocketAddr::Inet(a)) => Some(*a),
            _ => None,
        };
        let mut options = PeerOptions::new();
        options.custom_l4 = Some(Arc::new(TunnelConnector {
            target,
            client: client_addr(session),
            server,
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
        let proto = if self.tls { "https" } else { "http" };
        let xfp = match upstream
            .headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
        {
            Some(prev) if !prev.is_empty() => format!("{prev}, {proto}"),
            _ => proto.to_string(),
        };
        upstream.insert_header("x-forwarded-proto", xfp)?;
        if ctx.strip_authorization {
            upstream.remove_header(&http::header::AUTHORIZATION);
        }
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
        Ok(())
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        upstream_response: &mut ResponseHeader,
        _ctx: &mut Self::CTX,
    ) -> Result<()> {
        // Only the edge may claim an edge error.
        upstream_response.remove_header(ERROR_CODE_HEADER);
        Ok(())
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &pingora_error::Error,
        ctx: &mut Self::CTX,
    ) -> FailToProxy {
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
        tracing::debug!(host = %ctx.host, error = %e, "proxy failure");
        if session.response_written().is_none() {
            let _ = respond(session, failure, &ctx.host).await;
        }
        FailToProxy {
            error_code: failure.status(),
            can_reuse_downstream: false,
        }
    }
}
