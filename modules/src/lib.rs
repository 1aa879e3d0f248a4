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
pub mod compile;
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

use gangway_config::control::IpSet;
use gangway_config::resources::RouteModules;

use chain::Chain;
use compile::{ChainConfig, API_FIELDS};

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

/// Compiles an API route's enabled modules ([`compile::ChainConfig`]).
/// `ip` is the route's IP policies already resolved to one set.
pub fn route_chain(m: &RouteModules, ip: Option<IpSet>) -> Result<Chain, ConfigError> {
    ChainConfig::from_route(m, ip).compile(&API_FIELDS)
}
