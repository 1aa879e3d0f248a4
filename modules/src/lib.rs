//! gangway-modules: the route modules that run on each request before it
//! is handed to an agent, the [`chain::RouteModule`] trait they implement,
//! and the compiler from a route's configuration to its [`chain::Chain`].
//!
//! Layer: request logic only; must not depend on listeners or sessions.
//! Each module is wire config → `compile()` → an immutable module; what
//! one request needs lives in the module's own per-request state
//! ([`chain::RouteModule::State`]).

pub mod basic_auth;
pub mod chain;
pub mod circuit_breaker;
pub mod compression;
pub mod decisions;
pub mod documents;
pub mod headers;
pub mod interpolate;
pub mod ip_restriction;
pub mod jwt;
pub mod refusal;
pub mod request;
pub mod traffic_policy;
pub mod user_agent;
pub mod webhook;
pub mod websocket_tcp;

use std::time::Duration;

use gangway_config::control::IpSet;
use gangway_config::resources::{is_enabled, RouteModules};

use chain::{Chain, Module};

/// A module's configuration was refused; `field` names it
/// (`basic_auth.credentials[0].password`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct ConfigError {
    pub field: String,
    pub reason: String,
}

impl ConfigError {
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        ConfigError {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// Compiles an API route's enabled modules. `ip` is the route's IP
/// policies already resolved to one set. Modules compiled elsewhere
/// (backend) or not yet landed (oauth, oidc, saml) are not part of the
/// chain.
pub fn route_chain(m: &RouteModules, ip: Option<IpSet>) -> Result<Chain, ConfigError> {
    let mut out: Vec<Module> = Vec::new();
    let on = is_enabled;
    if let Some(set) = ip {
        out.push(Module::new(ip_restriction::IpRestriction::new(set)));
    }
    if let Some(f) = m.user_agent_filter.as_ref().filter(|x| on(x.enabled)) {
        out.push(Module::new(user_agent::UserAgentFilter::compile(
            "user_agent_filter",
            &f.allow,
            &f.deny,
        )?));
    }
    if let Some(w) = m.webhook_verification.as_ref().filter(|x| on(x.enabled)) {
        out.push(Module::new(webhook::WebhookVerification::compile(
            "webhook_verification",
            &w.provider,
            &w.secret,
        )?));
    }
    if let Some(p) = m.traffic_policy.as_ref().filter(|x| on(x.enabled)) {
        out.push(Module::new(traffic_policy::TrafficPolicy::compile(
            "traffic_policy.value",
            &p.value,
        )?));
    }
    if m.websocket_tcp_converter
        .as_ref()
        .is_some_and(|x| on(x.enabled))
    {
        out.push(Module::new(websocket_tcp::WebsocketTcpConverter));
    }
    if let Some(b) = m.circuit_breaker.as_ref().filter(|x| on(x.enabled)) {
        let cfg = circuit_breaker::BreakerConfig {
            tripped_duration: Duration::from_secs(u64::from(b.tripped_duration)),
            rolling_window: Duration::from_secs(u64::from(b.rolling_window)),
            num_buckets: b.num_buckets,
            volume_threshold: b.volume_threshold,
            error_threshold: b.error_threshold_percentage,
        };
        out.push(Module::new(circuit_breaker::CircuitBreaker::new(
            "circuit_breaker",
            cfg,
        )?));
    }
    for (field, dir, h) in [
        (
            "request_headers",
            headers::Direction::Request,
            &m.request_headers,
        ),
        (
            "response_headers",
            headers::Direction::Response,
            &m.response_headers,
        ),
    ] {
        if let Some(h) = h.as_ref().filter(|x| on(x.enabled)) {
            out.push(Module::new(headers::HeaderRewrite::from_map(
                field, dir, &h.add, &h.remove,
            )?));
        }
    }
    if m.compression.as_ref().is_some_and(|x| on(x.enabled)) {
        out.push(Module::new(compression::Compression::default()));
    }
    Ok(Chain::new(out))
}
