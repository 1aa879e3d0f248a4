//! The one chain compiler: a route's or endpoint's modules, typed
//! ([`ChainConfig`], each module's `XConfig`), compiled into its
//! [`Chain`] through each module's `XConfig::compile(path)`. API routes
//! and agent Binds differ only in how their wire becomes a `ChainConfig`
//! and in the field names errors use ([`FieldNames`]).

use gangway_config::control::IpSet;
use gangway_config::resources::{is_enabled, RouteModules};

use crate::basic_auth::BasicAuthConfig;
use crate::chain::{Chain, Module};
use crate::circuit_breaker::BreakerConfig;
use crate::headers::{Direction, HeaderRewriteConfig};
use crate::ip_restriction::IpRestriction;
use crate::traffic_policy::TrafficPolicyConfig;
use crate::user_agent::UserAgentFilterConfig;
use crate::webhook::WebhookVerificationConfig;
use crate::websocket_tcp::WebsocketTcpConverter;
use crate::{compression, ConfigError};

/// How a wire names each module, for error paths.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldNames {
    pub ip_restriction: &'static str,
    pub user_agent_filter: &'static str,
    pub webhook_verification: &'static str,
    pub basic_auth: &'static str,
    pub traffic_policy: &'static str,
    pub circuit_breaker: &'static str,
    pub request_headers: &'static str,
    pub response_headers: &'static str,
}

/// The REST API's route modules.
pub const API_FIELDS: FieldNames = FieldNames {
    ip_restriction: "ip_restriction",
    user_agent_filter: "user_agent_filter",
    webhook_verification: "webhook_verification",
    basic_auth: "basic_auth",
    traffic_policy: "traffic_policy.value",
    circuit_breaker: "circuit_breaker",
    request_headers: "request_headers",
    response_headers: "response_headers",
};

/// An agent Bind's options (the SDKs' `HTTPEndpoint` fields; basic auth
/// by the SDK option's name).
pub const BIND_FIELDS: FieldNames = FieldNames {
    ip_restriction: "IPRestriction",
    user_agent_filter: "UserAgentFilter",
    webhook_verification: "WebhookVerification",
    basic_auth: "basic_auth",
    traffic_policy: "TrafficPolicy",
    circuit_breaker: "CircuitBreaker",
    request_headers: "RequestHeaders",
    response_headers: "ResponseHeaders",
};

/// The modules of one route or endpoint, typed; `None`/`false` when off.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChainConfig {
    pub ip_restriction: Option<IpSet>,
    pub user_agent_filter: Option<UserAgentFilterConfig>,
    pub webhook_verification: Option<WebhookVerificationConfig>,
    pub basic_auth: Option<BasicAuthConfig>,
    pub traffic_policy: Option<TrafficPolicyConfig>,
    pub websocket_tcp_converter: bool,
    pub circuit_breaker: Option<BreakerConfig>,
    pub request_headers: Option<HeaderRewriteConfig>,
    pub response_headers: Option<HeaderRewriteConfig>,
    pub compression: bool,
}

impl ChainConfig {
    /// An API route's enabled modules; `ip` is its IP policies already
    /// resolved to one set. Modules compiled elsewhere (backend) or not
    /// built (oauth, oidc, saml) are not part of the chain.
    pub fn from_route(m: &RouteModules, ip: Option<IpSet>) -> Self {
        let on = is_enabled;
        ChainConfig {
            ip_restriction: ip,
            user_agent_filter: m
                .user_agent_filter
                .as_ref()
                .filter(|f| on(f.enabled))
                .map(|f| UserAgentFilterConfig {
                    allow: f.allow.clone(),
                    deny: f.deny.clone(),
                }),
            webhook_verification: m
                .webhook_verification
                .as_ref()
                .filter(|w| on(w.enabled))
                .map(|w| WebhookVerificationConfig {
                    provider: w.provider.clone(),
                    secret: w.secret.clone(),
                }),
            basic_auth: None,
            traffic_policy: m
                .traffic_policy
                .as_ref()
                .filter(|p| on(p.enabled))
                .map(|p| TrafficPolicyConfig {
                    text: p.value.clone(),
                }),
            websocket_tcp_converter: m
                .websocket_tcp_converter
                .as_ref()
                .is_some_and(|w| on(w.enabled)),
            circuit_breaker: m
                .circuit_breaker
                .as_ref()
                .filter(|b| on(b.enabled))
                .map(BreakerConfig::from),
            request_headers: m
                .request_headers
                .as_ref()
                .filter(|h| on(h.enabled))
                .map(|h| HeaderRewriteConfig::from_map(&h.add, &h.remove)),
            response_headers: m
                .response_headers
                .as_ref()
                .filter(|h| on(h.enabled))
                .map(|h| HeaderRewriteConfig::from_map(&h.add, &h.remove)),
            compression: m.compression.as_ref().is_some_and(|c| on(c.enabled)),
        }
    }

    /// Compiles every module; errors name the field as `names` spells it.
    pub fn compile(&self, names: &FieldNames) -> Result<Chain, ConfigError> {
        let mut out = Vec::new();
        if let Some(set) = &self.ip_restriction {
            out.push(Module::new(IpRestriction::new(set.clone())));
        }
        if let Some(c) = &self.user_agent_filter {
            out.push(Module::new(c.compile(names.user_agent_filter)?));
        }
        if let Some(c) = &self.webhook_verification {
            out.push(Module::new(c.compile(names.webhook_verification)?));
        }
        if let Some(c) = &self.basic_auth {
            out.push(Module::new(c.compile(names.basic_auth)?));
        }
        if let Some(c) = &self.traffic_policy {
            out.push(Module::new(c.compile(names.traffic_policy)?));
        }
        if self.websocket_tcp_converter {
            out.push(Module::new(WebsocketTcpConverter));
        }
        if let Some(c) = &self.circuit_breaker {
            out.push(Module::new(c.compile(names.circuit_breaker)?));
        }
        if let Some(c) = &self.request_headers {
            out.push(Module::new(
                c.compile(names.request_headers, Direction::Request)?,
            ));
        }
        if let Some(c) = &self.response_headers {
            out.push(Module::new(
                c.compile(names.response_headers, Direction::Response)?,
            ));
        }
        if self.compression {
            out.push(Module::new(compression::Compression::default()));
        }
        Ok(Chain::new(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gangway_config::resources::{CircuitBreakerModule, UserAgentFilterModule};

    #[test]
    fn api_and_bind_compile_alike_and_name_their_own_fields() {
        let bad = ChainConfig {
            user_agent_filter: Some(UserAgentFilterConfig {
                allow: vec!["(".into()],
                deny: vec![],
            }),
            ..ChainConfig::default()
        };
        assert_eq!(
            bad.compile(&API_FIELDS).unwrap_err().field,
            "user_agent_filter.allow[0]"
        );
        assert_eq!(
            bad.compile(&BIND_FIELDS).unwrap_err().field,
            "UserAgentFilter.allow[0]"
        );
        let route = RouteModules {
            user_agent_filter: Some(UserAgentFilterModule {
                enabled: Some(false),
                allow: vec!["(".into()],
                deny: vec![],
            }),
            circuit_breaker: Some(
                serde_json::from_value::<CircuitBreakerModule>(serde_json::json!({})).unwrap(),
            ),
            ..RouteModules::default()
        };
        let cfg = ChainConfig::from_route(&route, None);
        assert_eq!(cfg.user_agent_filter, None, "disabled modules are off");
        assert_eq!(
            cfg.circuit_breaker,
            Some(BreakerConfig::default()),
            "the API's defaults are the agent option's"
        );
        assert_eq!(
            cfg.compile(&API_FIELDS).unwrap().names(),
            ["circuit_breaker"]
        );
    }
}
