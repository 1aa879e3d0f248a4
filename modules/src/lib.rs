//! gangway-modules: the route modules that run on each request before it
//! is handed to an agent — today basic auth; the `RouteModule` trait, the
//! chain compiler and the other modules (IP restriction, circuit breaker,
//! compression, header rewrite, webhook verification, user-agent filter)
//! land with the route-modules issue.
//!
//! Layer: request logic only; must not depend on listeners or sessions.
//! Each module is `XConfig` (wire) → `compile()` → `X` (immutable).

pub mod basic_auth;

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
