//! gangway-policy: Traffic Policy documents — phases (`on_tcp_connect`,
//! `on_http_request`, `on_http_response`), rules, CEL expressions and
//! actions — parsed, validated with error paths and compiled once, then
//! run per request by [`engine`].
//!
//! Layer: pure configuration and evaluation; must not depend on pingora or
//! any IO. The edge supplies what a request looks like ([`engine::HttpInput`])
//! and applies what the policy decided ([`engine::HttpOutcome`]).
//!
//! - [`document`]: JSON/YAML → phases of rules, every error with its path.
//! - [`expr`]: CEL programs, the variables and extra functions, `${...}`.
//! - [`actions`]: each action's config, validated.
//! - [`engine`]: a phase run against one request.
//! - [`host`]: actions the embedding edge implements (body, stream, state).

pub mod actions;
pub mod document;
pub mod engine;
pub mod expr;
pub mod host;
pub mod limits;
pub mod request;

pub use document::{Policy, Rule};

/// A config error at a path such as
/// `on_http_request[1].actions[0].config.status_code`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct PolicyError {
    pub path: String,
    pub message: String,
}

impl PolicyError {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        PolicyError {
            path: path.into(),
            message: message.into(),
        }
    }
}
