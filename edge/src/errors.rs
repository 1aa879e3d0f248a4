//! Error responses the edge itself generates. Each carries an
//! `ngrok-error-code` header so users (and the SDKs) can tell an edge error
//! from an upstream one.

/// What went wrong, mapped once to a status and code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
    /// The route's IP restriction blocks the client.
    IpBlocked,
    /// The route has a module this edge cannot apply yet; it fails closed.
    ModuleUnavailable,
    /// The host asks for its own handshake (mutual TLS or a minimum
    /// version) but the request came on a connection made for another name,
    /// as HTTP/2 connection reuse does.
    Misdirected,
}

impl EdgeFailure {
    pub fn status(self) -> u16 {
        match self {
            EdgeFailure::UnknownHost => 404,
            EdgeFailure::AgentOffline | EdgeFailure::TunnelFailed => 502,
            EdgeFailure::MissingHost => 400,
            EdgeFailure::NoRoute => 404,
            EdgeFailure::IpBlocked => 403,
            EdgeFailure::ModuleUnavailable => 503,
            EdgeFailure::Misdirected => 421,
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            EdgeFailure::UnknownHost | EdgeFailure::AgentOffline => "ERR_NGROK_3200",
            EdgeFailure::TunnelFailed => "ERR_NGROK_3004",
            EdgeFailure::MissingHost => "ERR_NGROK_3100",
            EdgeFailure::NoRoute => "ERR_NGROK_3200",
            EdgeFailure::IpBlocked => "ERR_NGROK_3205",
            // Ours: ngrok has no such state.
            EdgeFailure::ModuleUnavailable => "ERR_NGROK_9047",
            // Ours, like 9047.
            EdgeFailure::Misdirected => "ERR_NGROK_9048",
        }
    }

    pub fn message(self, host: &str) -> String {
        match self {
            EdgeFailure::UnknownHost => format!("The endpoint {host} is not found."),
            EdgeFailure::AgentOffline => {
                format!("The endpoint {host} is offline: its agent is not connected.")
            }
            EdgeFailure::TunnelFailed => {
                format!("The agent for {host} did not return a complete response.")
            }
            EdgeFailure::MissingHost => "The request has no Host header.".to_string(),
            EdgeFailure::NoRoute => format!("No route of the edge for {host} matches this path."),
            EdgeFailure::IpBlocked => {
                format!("Your IP address is not allowed to reach {host}.")
            }
            EdgeFailure::ModuleUnavailable => format!(
                "The route for {host} has a module this edge does not support yet; it refuses requests rather than skip it."
            ),
            EdgeFailure::Misdirected => format!(
                "{host} needs a TLS connection of its own (client certificate or TLS version); this one was made for another name."
            ),
        }
    }
}

/// Header carrying the edge's error code.
pub const ERROR_CODE_HEADER: &str = "ngrok-error-code";

/// Agent-facing RPC error codes (PROTOCOL.md: the code on its own line).
pub mod rpc {
    /// Authtoken missing.
    pub const AUTHTOKEN_MISSING: &str = "ERR_NGROK_4018";
    /// Authtoken not valid for this deployment.
    pub const AUTHTOKEN_INVALID: &str = "ERR_NGROK_107";
    /// The hostname is already bound by another session and pooling is off.
    pub const ENDPOINT_IN_USE: &str = "ERR_NGROK_334";
    /// A Bind whose payload makes no sense (bad tunnel id, ...).
    pub const BAD_BIND: &str = "ERR_NGROK_301";
    /// A tunnel protocol this edge does not serve.
    pub const UNSUPPORTED_PROTO: &str = "ERR_NGROK_332";
    /// Basic auth password outside 8-128 bytes.
    pub const BAD_BASIC_AUTH: &str = "ERR_NGROK_360";
    /// Basic auth username empty (or holding ':').
    pub const BAD_BASIC_AUTH_USER: &str = "ERR_NGROK_359";
    /// An RPC arrived before Auth.
    pub const NOT_AUTHENTICATED: &str = "ERR_NGROK_4016";
    /// Unknown tunnel id in Unbind.
    pub const UNKNOWN_TUNNEL: &str = "ERR_NGROK_333";
    /// A TCP port outside the range this server allocates from.
    pub const TCP_PORT_OUT_OF_RANGE: &str = "ERR_NGROK_4502";
    /// A TCP address whose host is not this server's TCP host.
    pub const TCP_UNKNOWN_HOST: &str = "ERR_NGROK_4504";
    /// Tunnel options the edge cannot accept (ours: ngrok documents none
    /// general code); the message names the field.
    pub const INVALID_OPTIONS: &str = "ERR_NGROK_9034";
    /// No free port left in the TCP range (ours: ngrok documents none).
    pub const TCP_PORTS_EXHAUSTED: &str = "ERR_NGROK_4505";
    /// The credential's ACL does not allow binding this name or labels.
    pub const ACL_DENIED: &str = "ERR_NGROK_316";
    /// The credential's ACL does not allow binding this TCP address.
    pub const ACL_DENIED_ADDR: &str = "ERR_NGROK_308";
}

/// The RPC error code for a refused bind.
pub fn bind_error_code(e: &crate::registry::BindError) -> &'static str {
    use crate::registry::BindError::*;
    match e {
        InUse(_) | PortInUse(_) => rpc::ENDPOINT_IN_USE,
        SessionGone => rpc::UNKNOWN_TUNNEL,
        PortOutOfRange { .. } => rpc::TCP_PORT_OUT_OF_RANGE,
        PortsExhausted { .. } => rpc::TCP_PORTS_EXHAUSTED,
        EdgeOwned { .. } => rpc::ENDPOINT_IN_USE,
    }
}
