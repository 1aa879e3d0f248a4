//! What each module decided about one request, as typed values. The edge's
//! event writer turns them into the `http_request_complete.v0` fields
//! (and their strings) in one place.

use serde_json::Value;

use crate::compression::Coding;

/// An allow/block decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Allow,
    Block,
}

/// The circuit breaker's decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerDecision {
    Allow,
    Block,
    /// Open, but this request is its one probe.
    AllowWhileOpen,
}

/// What compression did to the response body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompressionDecision {
    /// `None`: the response went out unencoded.
    pub coding: Option<Coding>,
    /// Input bytes minus output bytes (negative when it grew).
    pub bytes_saved: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decisions {
    pub ip_policy: Option<Access>,
    pub basic_auth: Option<Access>,
    pub basic_auth_username: Option<String>,
    pub circuit_breaker: Option<BreakerDecision>,
    /// Set whenever compression (or compress-response) looked at a response.
    pub compression: Option<CompressionDecision>,
    pub user_agent_filter: Option<Access>,
    pub webhook_verification: Option<Access>,
    /// Traffic Policy `log` actions' entries, in the order they ran.
    pub traffic_policy_logs: Vec<Value>,
}
