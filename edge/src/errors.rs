//! Every refusal and failure the edge answers, turned into its response in
//! one place ([`respond`]): status, `ngrok-error-code` from the codes
//! table ([`gangway_config::codes`]) and a short plain body, so users (and
//! the SDKs) can tell an edge error from an upstream one. Agent RPC
//! refusals are typed here too ([`RpcRefusal`]).

use gangway_config::codes::{self, Code};
use gangway_modules::chain::EdgeResponse;
use gangway_modules::refusal::Refusal;
use http::{HeaderName, HeaderValue};

use crate::registry::BindError;

/// Header carrying the edge's error code.
pub const ERROR_CODE_HEADER: &str = "ngrok-error-code";

/// What went wrong with a request at the edge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EdgeFailure {
    /// No endpoint is bound for the requested host.
    UnknownHost,
    /// The endpoint exists but no agent session is serving it.
    AgentOffline,
    /// The agent session failed while carrying the request.
    TunnelFailed,
    /// The request has no usable Host.
    MissingHost,
    /// An API edge owns the host but none of its routes matches the path.
    NoRoute,
    /// The route has a module this edge cannot apply; it fails closed.
    ModuleUnavailable,
    /// The host asks for its own handshake (mutual TLS or a minimum
    /// version) but the request came on a connection made for another name,
    /// as HTTP/2 connection reuse does.
    Misdirected,
    /// The client sent a request the proxy cannot parse.
    BadRequest,
    /// The proxy failed the request with this status (Pingora's own
    /// limits and timeouts).
    Proxy(u16),
    /// A route module refused the request.
    Refused(Refusal),
}

impl From<Refusal> for EdgeFailure {
    fn from(r: Refusal) -> Self {
        EdgeFailure::Refused(r)
    }
}

impl EdgeFailure {
    /// For the log.
    pub fn reason(&self) -> &'static str {
        match self {
            EdgeFailure::UnknownHost => "unknown host",
            EdgeFailure::AgentOffline => "agent offline",
            EdgeFailure::TunnelFailed => "tunnel failed",
            EdgeFailure::MissingHost => "missing host",
            EdgeFailure::NoRoute => "no route",
            EdgeFailure::ModuleUnavailable => "module unavailable",
            EdgeFailure::Misdirected => "misdirected",
            EdgeFailure::BadRequest => "bad request",
            EdgeFailure::Proxy(_) => "proxy error",
            EdgeFailure::Refused(r) => r.reason(),
        }
    }
}

/// The response for `failure` on `host`: its status, code and message.
pub fn respond(failure: &EdgeFailure, host: &str) -> EdgeResponse {
    use EdgeFailure as F;
    let (code, status, message) = match failure {
        F::UnknownHost => (
            codes::ENDPOINT_NOT_FOUND,
            None,
            format!("The endpoint {host} is not found."),
        ),
        F::AgentOffline => (
            codes::ENDPOINT_NOT_FOUND,
            // ngrok's 3200 is 404; a bound name whose agent is away is a
            // gateway failure, and its users may retry.
            Some(502),
            format!("The endpoint {host} is offline: its agent is not connected."),
        ),
        F::TunnelFailed => (
            codes::TUNNEL_FAILED,
            None,
            format!("The agent for {host} did not return a complete response."),
        ),
        F::MissingHost => (
            codes::MISSING_HOST,
            None,
            "The request has no Host header.".to_string(),
        ),
        F::NoRoute => (
            codes::ENDPOINT_NOT_FOUND,
            None,
            format!("No route of the edge for {host} matches this path."),
        ),
        F::ModuleUnavailable => (
            codes::MODULE_UNAVAILABLE,
            None,
            format!("The route for {host} has a module this edge cannot apply; it refuses requests rather than skip it."),
        ),
        F::Misdirected => (
            codes::MISDIRECTED,
            None,
            format!("{host} needs a TLS connection of its own (client certificate or TLS version); this one was made for another name."),
        ),
        F::BadRequest => (
            codes::BAD_REQUEST,
            None,
            "The request could not be parsed.".to_string(),
        ),
        F::Proxy(status) => (
            codes::PROXY_FAILED,
            Some(*status),
            format!("The edge could not proxy the request ({status})."),
        ),
        F::Refused(r) => return refusal_response(r, host),
    };
    error(code, status.unwrap_or(code.status), message)
}

/// A module's refusal as the client sees it.
fn refusal_response(r: &Refusal, host: &str) -> EdgeResponse {
    let (code, status, message) = match r {
        Refusal::IpBlocked => (
            codes::IP_BLOCKED,
            None,
            format!("Your IP address is not allowed to reach {host}."),
        ),
        Refusal::IpBlockedByPolicy => (
            codes::IP_BLOCKED,
            None,
            "The client's IP address is not allowed by the endpoint's traffic policy.".into(),
        ),
        Refusal::UserAgentBlocked => (
            codes::USER_AGENT_BLOCKED,
            None,
            "Your user agent is not allowed to reach this endpoint.".into(),
        ),
        // As ngrok: a challenge and no code.
        Refusal::Unauthenticated { challenge } => {
            let mut resp = EdgeResponse::text(401, "Authentication required.\n");
            if let Ok(v) = HeaderValue::from_str(challenge) {
                resp.headers.push((http::header::WWW_AUTHENTICATE, v));
            }
            return resp;
        }
        Refusal::WebhookUnverified {
            provider, status, ..
        } => (
            codes::WEBHOOK_UNVERIFIED,
            Some(*status),
            format!("The request's {provider} webhook signature did not verify."),
        ),
        Refusal::WebhookBodyTooLarge => (
            codes::WEBHOOK_UNVERIFIED,
            Some(413),
            "The request body is larger than the 25 MiB the edge verifies.".into(),
        ),
        Refusal::NotWebsocket => (
            codes::WEBSOCKET_REQUIRED,
            None,
            "This endpoint converts websockets to TCP: only websocket upgrade requests are accepted.".into(),
        ),
        Refusal::WebsocketVersion => {
            // RFC 6455 §4.2.2: an unknown version gets 426 naming ours.
            return error(
                codes::WEBSOCKET_REQUIRED,
                426,
                "This endpoint speaks websocket version 13 only.".into(),
            )
            .with_header(
                HeaderName::from_static("sec-websocket-version"),
                HeaderValue::from_static(gangway_modules::websocket_tcp::VERSION),
            );
        }
        Refusal::CircuitOpen => (
            codes::CIRCUIT_OPEN,
            None,
            "The circuit breaker for this endpoint is open: its upstream has been failing.".into(),
        ),
        Refusal::JwtRefused { challenge, detail } => {
            let resp = error(
                codes::JWT_REFUSED,
                codes::JWT_REFUSED.status,
                format!("The request's JWT was refused: {detail}."),
            );
            return match HeaderValue::from_str(challenge) {
                Ok(v) => resp.with_header(http::header::WWW_AUTHENTICATE, v),
                Err(_) => resp,
            };
        }
        Refusal::PolicyFailed(e) => (
            codes::POLICY_FAILED,
            None,
            format!("The endpoint's traffic policy failed: {e}"),
        ),
        Refusal::PolicyBadHeader(name) => (
            codes::POLICY_FAILED,
            None,
            format!("The endpoint's traffic policy set header {name} to a value HTTP cannot carry."),
        ),
        Refusal::PolicyBadRewrite(path) => (
            codes::POLICY_FAILED,
            None,
            format!("The endpoint's traffic policy rewrote the URL to {path:?}, which is not a valid path."),
        ),
        Refusal::ForwardOffline(to) => (
            codes::FORWARD_FAILED,
            None,
            format!("The traffic policy forwards to {to}, which is not online."),
        ),
    };
    error(code, status.unwrap_or(code.status), message)
}

/// An error response: the message, then the code on its own line.
fn error(code: Code, status: u16, message: String) -> EdgeResponse {
    let mut resp = EdgeResponse::text(status, format!("{message}\n{code}\n"));
    resp.code = Some(code);
    resp
}

/// An agent RPC refused: the code and a message for the agent's user
/// (PROTOCOL.md: the message, a blank line, the code on its own line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpcRefusal {
    pub code: Code,
    pub message: String,
}

impl RpcRefusal {
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        RpcRefusal {
            code,
            message: message.into(),
        }
    }
}

impl From<BindError> for RpcRefusal {
    fn from(e: BindError) -> Self {
        use BindError::*;
        let code = match &e {
            InUse(_) | PortInUse(_) | EdgeOwned { .. } => codes::ENDPOINT_IN_USE,
            SessionGone => codes::UNKNOWN_TUNNEL,
            PortOutOfRange { .. } => codes::TCP_ADDR_INVALID,
            PortsExhausted { .. } => codes::TCP_PORTS_EXHAUSTED,
        };
        RpcRefusal::new(code, e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_refusal_carries_its_code_and_status() {
        let cases = [
            (EdgeFailure::UnknownHost, 404, Some("ERR_NGROK_3200")),
            (EdgeFailure::AgentOffline, 502, Some("ERR_NGROK_3200")),
            (EdgeFailure::Misdirected, 421, Some("ERR_NGROK_9048")),
            (Refusal::IpBlocked.into(), 403, Some("ERR_NGROK_3205")),
            (
                Refusal::IpBlockedByPolicy.into(),
                403,
                Some("ERR_NGROK_3205"),
            ),
            (Refusal::CircuitOpen.into(), 503, Some("ERR_NGROK_3202")),
            (
                Refusal::WebsocketVersion.into(),
                426,
                Some("ERR_NGROK_3206"),
            ),
            (
                Refusal::PolicyFailed("x".into()).into(),
                500,
                Some("ERR_NGROK_9051"),
            ),
            (
                Refusal::ForwardOffline("a.internal".into()).into(),
                502,
                Some("ERR_NGROK_3220"),
            ),
            (
                Refusal::Unauthenticated {
                    challenge: "Basic realm=\"ngrok\"".into(),
                }
                .into(),
                401,
                None,
            ),
        ];
        for (failure, status, code) in cases {
            let r = respond(&failure, "h.example");
            assert_eq!(r.status, status, "{failure:?}");
            assert_eq!(r.code.map(|c| c.as_str()), code, "{failure:?}");
            if let Some(code) = code {
                assert!(
                    String::from_utf8_lossy(&r.body).ends_with(&format!("\n{code}\n")),
                    "{failure:?}"
                );
            }
        }
    }
}
