//! Why a module refuses a request or connection. Modules return these
//! typed; the edge turns each into its response (status,
//! `ngrok-error-code`, body) in one place, `gangway_edge::errors`.

use http::HeaderName;

use crate::webhook::Failure as WebhookFailure;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The route's ip_restriction, or an endpoint's IP restriction.
    IpBlocked,
    /// Traffic Policy `restrict-ips`.
    IpBlockedByPolicy,
    UserAgentBlocked,
    /// Basic auth: no valid credential. `challenge` is the
    /// `WWW-Authenticate` value.
    Unauthenticated {
        challenge: String,
    },
    WebhookUnverified {
        provider: &'static str,
        why: WebhookFailure,
        /// 403, or 401 where a provider's check wants it (xero).
        status: u16,
    },
    /// A body larger than the edge holds back to verify.
    WebhookBodyTooLarge,
    /// The websocket-TCP converter takes websocket upgrades only.
    NotWebsocket,
    /// A websocket version other than 13.
    WebsocketVersion,
    CircuitOpen,
    /// jwt-validation: `challenge` is the `WWW-Authenticate` value.
    JwtRefused {
        challenge: String,
        detail: String,
    },
    /// A policy expression, template or host action failed while it ran.
    PolicyFailed(String),
    /// A policy rendered a header value HTTP cannot carry.
    PolicyBadHeader(HeaderName),
    /// url-rewrite produced something that is not a path.
    PolicyBadRewrite(String),
    /// forward-internal named an endpoint that is not online.
    ForwardOffline(String),
}

impl Refusal {
    /// A short reason for the edge's log.
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::IpBlocked | Refusal::IpBlockedByPolicy => "client IP not allowed",
            Refusal::UserAgentBlocked => "user agent not allowed",
            Refusal::Unauthenticated { .. } => "no valid basic auth credential",
            Refusal::WebhookUnverified { why, .. } => why.reason(),
            Refusal::WebhookBodyTooLarge => "webhook body too large to verify",
            Refusal::NotWebsocket => "not a websocket upgrade",
            Refusal::WebsocketVersion => "unsupported websocket version",
            Refusal::CircuitOpen => "circuit breaker open",
            Refusal::JwtRefused { .. } => "JWT refused",
            Refusal::PolicyFailed(_)
            | Refusal::PolicyBadHeader(_)
            | Refusal::PolicyBadRewrite(_) => "traffic policy failed",
            Refusal::ForwardOffline(_) => "forward-internal target offline",
        }
    }
}
