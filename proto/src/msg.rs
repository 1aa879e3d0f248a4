//! RPC message types of the ngrok-compatible agent protocol (PROTOCOL.md sections 3-5).
//!
//! Keys are PascalCase exactly as the ngrok SDKs send and expect them. Input is deliberately
//! lenient (unknown keys ignored, `null` read as the default, the token key accepted in the
//! spellings Go and Rust agents use) because agents differ in small ways; output is shaped for
//! the strictest reader, the Rust SDK, which rejects replies that lack its required keys.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

/// The u32 (big-endian on the wire) that starts every muxado stream and names its message.
pub type StreamType = u32;

/// Agent -> edge: authenticate the session.
pub const AUTH: StreamType = 0;
/// Agent -> edge: bind a tunnel.
pub const BIND: StreamType = 1;
/// Agent -> edge: close a tunnel.
pub const UNBIND: StreamType = 2;
/// Edge -> agent: one public connection, preceded by a [`ProxyHeader`].
pub const PROXY: StreamType = 3;
/// Edge -> agent: ask the agent to restart.
pub const RESTART: StreamType = 4;
/// Edge -> agent: ask the agent to stop.
pub const STOP: StreamType = 5;
/// Edge -> agent: ask the agent to update itself.
pub const UPDATE: StreamType = 6;
/// Agent -> edge: start a labeled tunnel (served through a tunnel-group edge).
pub const START_TUNNEL_WITH_LABEL: StreamType = 7;
/// Agent -> edge: server info (Go agents only).
pub const SRV_INFO: StreamType = 8;
/// Edge -> agent: close one tunnel, with a message; the agent sends no reply.
pub const STOP_TUNNEL: StreamType = 9;
/// Either side: heartbeat stream (4-byte pings echoed back).
pub const HEARTBEAT: StreamType = 0xFFFF_FFFF;

/// `ProxyHeader::edge_type` values. The Rust SDK maps anything unknown (including "") to
/// "undefined", Go accepts "" and "0" for it.
pub const EDGE_TYPE_UNDEFINED: &str = "";
/// Edge type of a TCP edge.
pub const EDGE_TYPE_TCP: &str = "1";
/// Edge type of a TLS edge.
pub const EDGE_TYPE_TLS: &str = "2";
/// Edge type of an HTTPS edge.
pub const EDGE_TYPE_HTTPS: &str = "3";

/// Errors from decoding or framing protocol messages.
#[derive(Debug, thiserror::Error)]
pub enum MsgError {
    /// The bytes were not valid JSON, or not the shape we expected; carries serde's message.
    #[error("invalid JSON message: {0}")]
    InvalidJson(#[from] serde_json::Error),
    /// The peer sent more than `limit` bytes without completing one message.
    #[error("message larger than the {limit}-byte limit")]
    TooLarge {
        /// The limit that was exceeded.
        limit: usize,
    },
    /// A proxy header announced a negative JSON length.
    #[error("proxy header length is negative ({0})")]
    NegativeLength(i64),
    /// A proxy header announced a JSON length above the limit.
    #[error("proxy header length {len} exceeds the {limit}-byte limit")]
    HeaderTooLarge {
        /// The announced length.
        len: i64,
        /// The limit that was exceeded.
        limit: usize,
    },
    /// Reading or writing the stream failed.
    #[error("stream I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The stream ended before a complete message arrived.
    #[error("stream ended after {read} bytes, before a complete message")]
    UnexpectedEof {
        /// How many bytes had been read when the stream ended.
        read: usize,
    },
    /// A base64 field (certificates, CA bundles) did not decode.
    #[error("invalid base64: {0}")]
    InvalidBase64(&'static str),
}

/// Reads `null` (which Go sends for nil slices, maps and pointers) as the type's default.
fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// TrafficPolicy is a string (JSON or YAML) on the wire, but old Rust SDKs could send a policy
/// object; keep either as text so the policy layer has one input type.
fn string_or_json<'de, D>(d: D) -> Result<Option<String>, D::Error>
where
    D: Deserializer<'de>,
{
    Ok(match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s),
        Some(other) => Some(other.to_string()),
    })
}

/// Keeps secrets out of logs while still showing whether one was sent.
fn redacted(s: &str) -> &'static str {
    if s.is_empty() {
        ""
    } else {
        "<redacted>"
    }
}

// ---------------------------------------------------------------------------------------------
// Auth (0)
// ---------------------------------------------------------------------------------------------

/// Auth request, the first RPC of every session.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Auth {
    /// Protocol versions the agent supports, preferred first (SDKs send `["3","2"]`).
    #[serde(default, deserialize_with = "null_default")]
    pub version: Vec<String>,
    /// Empty for a new session; the previous session id when reconnecting.
    #[serde(default, deserialize_with = "null_default")]
    pub client_id: String,
    /// Everything else the agent reports about itself.
    #[serde(default, deserialize_with = "null_default")]
    pub extra: AuthExtra,
}

/// Auth details. All fields are optional on input.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AuthExtra {
    /// Agent operating system.
    #[serde(rename = "OS", default, deserialize_with = "null_default")]
    pub os: String,
    /// Agent CPU architecture.
    #[serde(default, deserialize_with = "null_default")]
    pub arch: String,
    /// The authtoken. Go agents spell the key `Authtoken`, Rust ones `AuthToken`.
    #[serde(
        rename = "AuthToken",
        alias = "Authtoken",
        alias = "authtoken",
        alias = "authToken",
        default,
        deserialize_with = "null_default"
    )]
    pub auth_token: String,
    /// Agent version.
    #[serde(default, deserialize_with = "null_default")]
    pub version: String,
    /// Agent host name.
    #[serde(default, deserialize_with = "null_default")]
    pub hostname: String,
    /// Agent user agent, e.g. `ngrok-rust/0.19.0`.
    #[serde(default, deserialize_with = "null_default")]
    pub user_agent: String,
    /// Opaque user metadata for the session.
    #[serde(default, deserialize_with = "null_default")]
    pub metadata: String,
    /// The cookie from the previous AuthResp, sent back on reconnect.
    #[serde(default, deserialize_with = "null_default")]
    pub cookie: String,
    /// Heartbeat interval in nanoseconds.
    #[serde(default, deserialize_with = "null_default")]
    pub heartbeat_interval: i64,
    /// Heartbeat tolerance in nanoseconds.
    #[serde(default, deserialize_with = "null_default")]
    pub heartbeat_tolerance: i64,
    /// `None` (null): agent too old to update; `Some("")`: supported; otherwise why not.
    #[serde(default)]
    pub update_unsupported_error: Option<String>,
    /// Same convention as `update_unsupported_error`, for Stop.
    #[serde(default)]
    pub stop_unsupported_error: Option<String>,
    /// Same convention as `update_unsupported_error`, for Restart.
    #[serde(default)]
    pub restart_unsupported_error: Option<String>,
    /// Proxy the agent dials through, if any.
    #[serde(default, deserialize_with = "null_default")]
    pub proxy_type: String,
    /// Whether the agent connects with a client certificate.
    #[serde(rename = "MutualTLS", default, deserialize_with = "null_default")]
    pub mutual_tls: bool,
    /// Whether the agent runs as a system service.
    #[serde(default, deserialize_with = "null_default")]
    pub service_run: bool,
    /// Agent config file version.
    #[serde(default, deserialize_with = "null_default")]
    pub config_version: String,
    /// Whether the agent uses a custom interface.
    #[serde(default, deserialize_with = "null_default")]
    pub custom_interface: bool,
    /// Whether the agent was given custom root CAs.
    #[serde(rename = "CustomCAs", default, deserialize_with = "null_default")]
    pub custom_cas: bool,
    /// Client kind, e.g. `ngrok-go` or a library identifier.
    #[serde(default, deserialize_with = "null_default")]
    pub client_type: String,
}

impl fmt::Debug for AuthExtra {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthExtra")
            .field("os", &self.os)
            .field("arch", &self.arch)
            .field("auth_token", &redacted(&self.auth_token))
            .field("version", &self.version)
            .field("hostname", &self.hostname)
            .field("user_agent", &self.user_agent)
            .field("metadata", &self.metadata)
            .field("cookie", &redacted(&self.cookie))
            .field("heartbeat_interval", &self.heartbeat_interval)
            .field("heartbeat_tolerance", &self.heartbeat_tolerance)
            .field("update_unsupported_error", &self.update_unsupported_error)
            .field("stop_unsupported_error", &self.stop_unsupported_error)
            .field("restart_unsupported_error", &self.restart_unsupported_error)
            .field("proxy_type", &self.proxy_type)
            .field("mutual_tls", &self.mutual_tls)
            .field("service_run", &self.service_run)
            .field("config_version", &self.config_version)
            .field("custom_interface", &self.custom_interface)
            .field("custom_cas", &self.custom_cas)
            .field("client_type", &self.client_type)
            .finish()
    }
}

/// Auth reply. The Rust SDK requires `Version` and `ClientId`; `Extra` may be absent.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AuthResp {
    /// Chosen protocol version (`"3"`).
    #[serde(default, deserialize_with = "null_default")]
    pub version: String,
    /// Session id; the agent sends it back as `Auth::client_id` on reconnect.
    #[serde(default, deserialize_with = "null_default")]
    pub client_id: String,
    /// Session details.
    #[serde(default, deserialize_with = "null_default")]
    pub extra: AuthRespExtra,
    /// Non-empty means the session was refused (see [`error_string`]).
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub error: String,
}

/// Auth reply details; the SDK treats every field as optional.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AuthRespExtra {
    /// Server version.
    #[serde(default, deserialize_with = "null_default")]
    pub version: String,
    /// Server region.
    #[serde(default, deserialize_with = "null_default")]
    pub region: String,
    /// Opaque resumption cookie the agent sends back on reconnect.
    #[serde(default, deserialize_with = "null_default")]
    pub cookie: String,
    /// Account name shown by agents.
    #[serde(default, deserialize_with = "null_default")]
    pub account_name: String,
    /// Maximum session duration (0 = unlimited).
    #[serde(default, deserialize_with = "null_default")]
    pub session_duration: i64,
    /// Plan name shown by agents.
    #[serde(default, deserialize_with = "null_default")]
    pub plan_name: String,
    /// Banner shown by agents.
    #[serde(default, deserialize_with = "null_default")]
    pub banner: String,
}

impl fmt::Debug for AuthRespExtra {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthRespExtra")
            .field("version", &self.version)
            .field("region", &self.region)
            .field("cookie", &redacted(&self.cookie))
            .field("account_name", &self.account_name)
            .field("session_duration", &self.session_duration)
            .field("plan_name", &self.plan_name)
            .field("banner", &self.banner)
            .finish()
    }
}

// ---------------------------------------------------------------------------------------------
// Bind (1) / Unbind (2) / StartTunnelWithLabel (7)
// ---------------------------------------------------------------------------------------------

/// Bind request.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Bind {
    /// Empty for a new tunnel; the old tunnel id when rebinding after a reconnect.
    #[serde(rename = "Id", default, deserialize_with = "null_default")]
    pub id: String,
    /// `http`, `https`, `tcp` or `tls`.
    #[serde(default, deserialize_with = "null_default")]
    pub proto: String,
    /// Where the agent forwards to (informational).
    #[serde(default, deserialize_with = "null_default")]
    pub forwards_to: String,
    /// Upstream protocol (`""`, `http1`, `http2`).
    #[serde(default, deserialize_with = "null_default")]
    pub forwards_proto: String,
    /// Protocol-specific options, kept raw so the reply can echo them byte-for-value (the SDK
    /// stores the echo and re-sends it on rebind). Parse with [`HttpOpts::from_value`] etc.
    #[serde(default)]
    pub opts: Value,
    /// Token, policy reference, metadata, bindings.
    #[serde(default, deserialize_with = "null_default")]
    pub extra: BindExtra,
}

/// Bind request extras.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct BindExtra {
    /// Bind token (unused by the SDK today).
    #[serde(default, deserialize_with = "null_default")]
    pub token: String,
    /// IP policy reference.
    #[serde(rename = "IPPolicyRef", default, deserialize_with = "null_default")]
    pub ip_policy_ref: String,
    /// Opaque user metadata for the tunnel.
    #[serde(default, deserialize_with = "null_default")]
    pub metadata: String,
    /// Requested bindings, e.g. `["public"]` or `["internal"]`.
    #[serde(default, deserialize_with = "null_default")]
    pub bindings: Vec<String>,
    /// Whether several agents may serve the same endpoint. Go agents call it `AllowsPooling`.
    #[serde(
        rename = "PoolingEnabled",
        alias = "AllowsPooling",
        default,
        deserialize_with = "null_default"
    )]
    pub pooling_enabled: bool,
}

impl fmt::Debug for BindExtra {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BindExtra")
            .field("token", &redacted(&self.token))
            .field("ip_policy_ref", &self.ip_policy_ref)
            .field("metadata", &self.metadata)
            .field("bindings", &self.bindings)
            .field("pooling_enabled", &self.pooling_enabled)
            .finish()
    }
}

/// Bind reply. The Rust SDK requires `Id`, `URL`, `Proto`, `Opts` (with the keys that
/// [`fill_required_opts`] guarantees) and `Extra.Token`, unless `Error` is non-empty.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct BindResp {
    /// Tunnel id (stable across reconnects).
    #[serde(rename = "Id", default, deserialize_with = "null_default")]
    pub id: String,
    /// Public URL, e.g. `https://app.example.com` or `tcp://host:port`.
    #[serde(rename = "URL", default, deserialize_with = "null_default")]
    pub url: String,
    /// Bound protocol.
    #[serde(default, deserialize_with = "null_default")]
    pub proto: String,
    /// Echo of the request's Opts.
    #[serde(default)]
    pub opts: Value,
    /// Must be present (with `Token`) for the Rust SDK.
    #[serde(default, deserialize_with = "null_default")]
    pub extra: BindRespExtra,
    /// Non-empty means the bind failed.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub error: String,
}

/// Bind reply extras.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct BindRespExtra {
    /// Always serialized: the Rust SDK requires the key.
    #[serde(default, deserialize_with = "null_default")]
    pub token: String,
}

impl fmt::Debug for BindRespExtra {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BindRespExtra")
            .field("token", &redacted(&self.token))
            .finish()
    }
}

/// Unbind request.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Unbind {
    /// Tunnel id to close.
    #[serde(rename = "Id", default, deserialize_with = "null_default")]
    pub id: String,
}

/// Unbind reply; `{}` on success.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct UnbindResp {
    /// Non-empty means the unbind failed.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub error: String,
}

/// StartTunnelWithLabel request.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct StartTunnelWithLabel {
    /// Labels a tunnel-group backend selects on.
    #[serde(default, deserialize_with = "null_default")]
    pub labels: BTreeMap<String, String>,
    /// Where the agent forwards to (informational).
    #[serde(default, deserialize_with = "null_default")]
    pub forwards_to: String,
    /// Upstream protocol.
    #[serde(default, deserialize_with = "null_default")]
    pub forwards_proto: String,
    /// Opaque user metadata.
    #[serde(default, deserialize_with = "null_default")]
    pub metadata: String,
}

/// StartTunnelWithLabel reply; the Rust SDK requires `Id` unless `Error` is set.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct StartTunnelWithLabelResp {
    /// Tunnel id.
    #[serde(rename = "Id", default, deserialize_with = "null_default")]
    pub id: String,
    /// Non-empty means the request failed.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub error: String,
}

// ---------------------------------------------------------------------------------------------
// SrvInfo (8) and edge -> agent commands (4, 5, 6, 9)
// ---------------------------------------------------------------------------------------------

/// SrvInfo request (Go agents); carries nothing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SrvInfo {}

/// SrvInfo reply.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SrvInfoResp {
    /// Server region; `""` is fine.
    #[serde(default, deserialize_with = "null_default")]
    pub region: String,
}

/// Restart command; carries nothing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Restart {}

/// Stop command; carries nothing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stop {}

/// Update command.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Update {
    /// Target version; empty means latest.
    #[serde(default, deserialize_with = "null_default")]
    pub version: String,
    /// Whether a major-version jump is allowed.
    #[serde(default, deserialize_with = "null_default")]
    pub permit_major_version: bool,
}

/// Agent reply to Restart/Stop/Update. The Rust SDK omits `Error` on success, Go sends `""`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CommandResp {
    /// Empty (or absent) means the agent accepted the command.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub error: String,
}

/// StopTunnel command; the agent closes that listener and sends no reply.
///
/// The Rust SDK reads this inside its accept loop and fails that loop if `Id` or `Message` is
/// missing, so both are always serialized.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct StopTunnel {
    /// Tunnel id.
    #[serde(rename = "Id", default, deserialize_with = "null_default")]
    pub id: String,
    /// Message shown to the user.
    #[serde(default, deserialize_with = "null_default")]
    pub message: String,
    /// Optional `ERR_NGROK_...` code; omitted when empty so the Rust SDK sees `None`.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub error_code: String,
}

// ---------------------------------------------------------------------------------------------
// Proxy (3)
// ---------------------------------------------------------------------------------------------

/// Header the edge writes at the start of every proxy stream (see `codec`). All five keys are
/// required by the Rust SDK, so all are always serialized.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ProxyHeader {
    /// Tunnel id the connection belongs to.
    #[serde(rename = "Id", default, deserialize_with = "null_default")]
    pub id: String,
    /// Public client address, `ip:port` or `[v6]:port`.
    #[serde(default, deserialize_with = "null_default")]
    pub client_addr: String,
    /// `http`, `https`, `tcp` or `tls`.
    #[serde(default, deserialize_with = "null_default")]
    pub proto: String,
    /// One of the `EDGE_TYPE_*` strings (a string on the wire, not a number).
    #[serde(default, deserialize_with = "null_default")]
    pub edge_type: String,
    /// True when raw TLS bytes are passed through.
    #[serde(rename = "PassthroughTLS", default, deserialize_with = "null_default")]
    pub passthrough_tls: bool,
}

// ---------------------------------------------------------------------------------------------
// Typed views of Bind Opts
// ---------------------------------------------------------------------------------------------

/// Parses Opts leniently; a missing/null Opts is the all-unset view.
fn opts_from_value<T: DeserializeOwned + Default>(v: &Value) -> Result<T, MsgError> {
    if v.is_null() {
        return Ok(T::default());
    }
    Ok(T::deserialize(v)?)
}

/// First non-empty of the given optional strings (Domain before the legacy Hostname).
fn first_non_empty(candidates: [&Option<String>; 2]) -> Option<&str> {
    candidates
        .into_iter()
        .filter_map(Option::as_deref)
        .find(|s| !s.is_empty())
}

/// HTTP/HTTPS bind options. Every field is optional: the SDK sends all keys, null when unset.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HttpOpts {
    /// Requested domain (SDK 0.17+).
    pub domain: Option<String>,
    /// Requested host name (older SDKs put the domain here).
    pub hostname: Option<String>,
    /// Legacy `user:password` auth.
    pub auth: Option<String>,
    /// Requested subdomain.
    pub subdomain: Option<String>,
    /// Legacy host header rewrite flag (the Rust SDK sends a `host:` request header instead).
    pub host_header_rewrite: Option<bool>,
    /// Scheme of the local service. Rust spells it `LocalUrlScheme`, Go `LocalURLScheme`.
    #[serde(alias = "LocalURLScheme")]
    pub local_url_scheme: Option<String>,
    /// PROXY protocol version: 0 none, 1, 2.
    pub proxy_proto: Option<i64>,
    /// Present (`{}`) when compression is enabled.
    pub compression: Option<Compression>,
    /// Circuit breaker settings.
    pub circuit_breaker: Option<CircuitBreaker>,
    /// CIDR allow/deny lists.
    #[serde(rename = "IPRestriction")]
    pub ip_restriction: Option<IpRestriction>,
    /// Basic auth credentials.
    pub basic_auth: Option<BasicAuth>,
    /// OAuth settings (raw for now).
    #[serde(rename = "OAuth")]
    pub oauth: Option<Value>,
    /// OIDC settings (raw for now).
    #[serde(rename = "OIDC")]
    pub oidc: Option<Value>,
    /// Webhook signature verification.
    pub webhook_verification: Option<WebhookVerification>,
    /// Client certificate CAs for mutual TLS at the edge.
    #[serde(rename = "MutualTLSCA")]
    pub mutual_tls_ca: Option<MutualTlsCa>,
    /// Headers added/removed on requests (`host:<h>` here means host rewrite).
    pub request_headers: Option<Headers>,
    /// Headers added/removed on responses.
    pub response_headers: Option<Headers>,
    /// Present (`{}`) when websocket-to-TCP conversion is enabled.
    #[serde(rename = "WebsocketTCPConverter")]
    pub websocket_tcp_converter: Option<WebsocketTcpConverter>,
    /// User agent allow/deny regexes.
    pub user_agent_filter: Option<UserAgentFilter>,
    /// Traffic policy text (JSON or YAML); an object is kept as its JSON text.
    #[serde(default, deserialize_with = "string_or_json")]
    pub traffic_policy: Option<String>,
    /// Legacy Go `Policy` middleware object, kept raw.
    pub policy: Option<Value>,
}

impl HttpOpts {
    /// Parses the typed view out of `Bind::opts`.
    pub fn from_value(v: &Value) -> Result<Self, MsgError> {
        opts_from_value(v)
    }

    /// The requested host: Domain, else the legacy Hostname; `None` when neither is set.
    pub fn requested_domain(&self) -> Option<&str> {
        first_non_empty([&self.domain, &self.hostname])
    }
}

/// TCP bind options.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TcpOpts {
    /// Requested `host:port` (reserved address), empty for any.
    pub addr: Option<String>,
    /// PROXY protocol version: 0 none, 1, 2.
    pub proxy_proto: Option<i64>,
    /// CIDR allow/deny lists.
    #[serde(rename = "IPRestriction")]
    pub ip_restriction: Option<IpRestriction>,
    /// Traffic policy text.
    #[serde(default, deserialize_with = "string_or_json")]
    pub traffic_policy: Option<String>,
    /// Legacy Go `Policy` middleware object, kept raw.
    pub policy: Option<Value>,
}

impl TcpOpts {
    /// Parses the typed view out of `Bind::opts`.
    pub fn from_value(v: &Value) -> Result<Self, MsgError> {
        opts_from_value(v)
    }
}

/// TLS bind options.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TlsOpts {
    /// Requested domain (SDK 0.17+).
    pub domain: Option<String>,
    /// Requested host name (older SDKs).
    pub hostname: Option<String>,
    /// Requested subdomain.
    pub subdomain: Option<String>,
    /// PROXY protocol version: 0 none, 1, 2.
    pub proxy_proto: Option<i64>,
    /// Whether the agent terminates mutual TLS itself.
    #[serde(rename = "MutualTLSAtAgent")]
    pub mutual_tls_at_agent: Option<bool>,
    /// Client certificate CAs for mutual TLS at the edge.
    #[serde(rename = "MutualTLSAtEdge")]
    pub mutual_tls_at_edge: Option<MutualTlsCa>,
    /// Certificate/key for TLS termination at the edge.
    #[serde(rename = "TLSTermination")]
    pub tls_termination: Option<TlsTermination>,
    /// CIDR allow/deny lists.
    #[serde(rename = "IPRestriction")]
    pub ip_restriction: Option<IpRestriction>,
    /// Traffic policy text.
    #[serde(default, deserialize_with = "string_or_json")]
    pub traffic_policy: Option<String>,
    /// Legacy Go `Policy` middleware object, kept raw.
    pub policy: Option<Value>,
}

impl TlsOpts {
    /// Parses the typed view out of `Bind::opts`.
    pub fn from_value(v: &Value) -> Result<Self, MsgError> {
        opts_from_value(v)
    }

    /// The requested host: Domain, else the legacy Hostname.
    pub fn requested_domain(&self) -> Option<&str> {
        first_non_empty([&self.domain, &self.hostname])
    }
}

/// Compression marker (`{}`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Compression {}

/// Websocket-to-TCP marker (`{}`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebsocketTcpConverter {}

/// Circuit breaker settings (snake_case keys on the wire).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct CircuitBreaker {
    /// Error ratio (0..1) that trips the breaker.
    #[serde(default, deserialize_with = "null_default")]
    pub error_threshold: f64,
}

/// CIDR allow/deny lists (snake_case keys).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpRestriction {
    /// Allowed CIDRs; empty means all not denied.
    #[serde(default, deserialize_with = "null_default")]
    pub allow_cidrs: Vec<String>,
    /// Denied CIDRs.
    #[serde(default, deserialize_with = "null_default")]
    pub deny_cidrs: Vec<String>,
}

/// Basic auth settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BasicAuth {
    /// Accepted credentials.
    #[serde(default, deserialize_with = "null_default")]
    pub credentials: Vec<BasicAuthCredential>,
}

/// One basic auth credential.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BasicAuthCredential {
    /// User name.
    #[serde(default, deserialize_with = "null_default")]
    pub username: String,
    /// Plain password (what the SDK sends).
    #[serde(default, deserialize_with = "null_default")]
    pub cleartext_password: String,
    /// Base64 of a password hash; see [`decode_base64`].
    #[serde(default, deserialize_with = "null_default")]
    pub hashed_password: String,
}

impl fmt::Debug for BasicAuthCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BasicAuthCredential")
            .field("username", &self.username)
            .field("cleartext_password", &redacted(&self.cleartext_password))
            .field("hashed_password", &redacted(&self.hashed_password))
            .finish()
    }
}

/// Webhook signature verification settings.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookVerification {
    /// Provider name, e.g. `github`.
    #[serde(default, deserialize_with = "null_default")]
    pub provider: String,
    /// Shared secret.
    #[serde(default, deserialize_with = "null_default")]
    pub secret: String,
    /// Base64 of a sealed secret.
    #[serde(default, deserialize_with = "null_default")]
    pub sealed_secret: String,
}

impl fmt::Debug for WebhookVerification {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookVerification")
            .field("provider", &self.provider)
            .field("secret", &redacted(&self.secret))
            .field("sealed_secret", &redacted(&self.sealed_secret))
            .finish()
    }
}

/// Client-certificate CA bundle; the key is snake_case even inside PascalCase Opts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MutualTlsCa {
    /// Base64 of concatenated PEM certificates; see [`decode_base64`].
    #[serde(default, deserialize_with = "null_default")]
    pub mutual_tls_ca: String,
}

/// Header add/remove lists (lower-case keys on the wire).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Headers {
    /// `name:value` entries to add.
    #[serde(default, deserialize_with = "null_default")]
    pub add: Vec<String>,
    /// Header names to remove.
    #[serde(default, deserialize_with = "null_default")]
    pub remove: Vec<String>,
}

/// User agent allow/deny regexes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserAgentFilter {
    /// Allowed user agent regexes.
    #[serde(default, deserialize_with = "null_default")]
    pub allow: Vec<String>,
    /// Denied user agent regexes.
    #[serde(default, deserialize_with = "null_default")]
    pub deny: Vec<String>,
}

/// TLS termination material, all base64 (PEM inside); see [`decode_base64`].
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TlsTermination {
    /// Base64 of the PEM certificate chain.
    #[serde(default, deserialize_with = "null_default")]
    pub cert: String,
    /// Base64 of the PEM private key.
    #[serde(default, deserialize_with = "null_default")]
    pub key: String,
    /// Base64 of a sealed private key.
    #[serde(default, deserialize_with = "null_default")]
    pub sealed_key: String,
}

impl fmt::Debug for TlsTermination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsTermination")
            .field("cert_len", &self.cert.len())
            .field("key", &redacted(&self.key))
            .field("sealed_key", &redacted(&self.sealed_key))
            .finish()
    }
}

/// Makes echoed Opts acceptable to the Rust SDK, which fails the whole Bind if a non-optional
/// key is missing or null: HTTP needs Hostname, Auth, Subdomain, HostHeaderRewrite,
/// ProxyProto; TCP needs Addr, ProxyProto; TLS needs Hostname, Subdomain, ProxyProto,
/// MutualTLSAtAgent. A null `Domain` (defaulted but not nullable in the SDK) becomes `""`.
/// Present, non-null values are left untouched. Unknown protocols are left as they are.
pub fn fill_required_opts(proto: &str, opts: &mut Value) {
    let required: Vec<(&str, Value)> = match proto {
        "http" | "https" => vec![
            ("Hostname", Value::String(String::new())),
            ("Auth", Value::String(String::new())),
            ("Subdomain", Value::String(String::new())),
            ("HostHeaderRewrite", Value::Bool(false)),
            ("ProxyProto", Value::from(0)),
        ],
        "tcp" => vec![
            ("Addr", Value::String(String::new())),
            ("ProxyProto", Value::from(0)),
        ],
        "tls" => vec![
            ("Hostname", Value::String(String::new())),
            ("Subdomain", Value::String(String::new())),
            ("ProxyProto", Value::from(0)),
            ("MutualTLSAtAgent", Value::Bool(false)),
        ],
        _ => return,
    };
    if !opts.is_object() {
        *opts = Value::Object(serde_json::Map::new());
    }
    let Some(map) = opts.as_object_mut() else {
        return;
    };
    for (key, default) in required {
        let slot = map.entry(key).or_insert(Value::Null);
        if slot.is_null() {
            *slot = default;
        }
    }
    if proto != "tcp" {
        if let Some(domain) = map.get_mut("Domain") {
            if domain.is_null() {
                *domain = Value::String(String::new());
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Error strings and base64
// ---------------------------------------------------------------------------------------------

/// Builds an RPC `Error` value the SDKs split into message and code:
/// `"{msg}\r\n\r\n{code}\r\n"`.
pub fn error_string(msg: &str, code: &str) -> String {
    format!("{msg}\r\n\r\n{code}\r\n")
}

/// The `ERR_...` line of an RPC error string, if there is one.
pub fn error_code(err: &str) -> Option<&str> {
    err.lines().map(str::trim).find(|l| l.starts_with("ERR_"))
}

/// Decodes standard (padded or unpadded) base64, as Go and the SDK encode byte fields such as
/// `mutual_tls_ca` and `TLSTermination.cert`. ASCII whitespace is skipped.
pub fn decode_base64(s: &str) -> Result<Vec<u8>, MsgError> {
    let mut out = Vec::with_capacity(s.len() / 4 * 3 + 2);
    let mut acc: u32 = 0;
    let mut bits: u32 = 0;
    let mut padding = 0usize;
    for &c in s.as_bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => {
                padding += 1;
                continue;
            }
            b' ' | b'\t' | b'\r' | b'\n' => continue,
            _ => return Err(MsgError::InvalidBase64("unexpected character")),
        };
        if padding > 0 {
            return Err(MsgError::InvalidBase64("data after padding"));
        }
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            // Only the low 8 bits are the next byte; the mask below drops them from acc.
            out.push(((acc >> bits) & 0xFF) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    if bits >= 6 || padding > 2 {
        return Err(MsgError::InvalidBase64("truncated input"));
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Shape of the Rust SDK 0.19 Auth (field order of its struct, Option fields as null/"").
    const RUST_AUTH: &str = r#"{"Version":["3","2"],"ClientId":"","Extra":{"OS":"linux","Arch":"x86_64","AuthToken":"tok_rust","Version":"0.19.0","Hostname":"","UserAgent":"ngrok-rust/0.19.0","Metadata":"","Cookie":"","HeartbeatInterval":10000000000,"HeartbeatTolerance":15000000000,"UpdateUnsupportedError":"the agent has no defined callback for this operation","StopUnsupportedError":"","RestartUnsupportedError":"the agent has no defined callback for this operation","ProxyType":"","MutualTLS":false,"ServiceRun":false,"ConfigVersion":"","CustomInterface":false,"CustomCAs":false,"ClientType":"library/official/rust"}}"#;

    /// Shape of a Go agent Auth: `Authtoken`, extra keys, nil pointers as null.
    const GO_AUTH: &str = r#"{"Version":["3","2"],"ClientId":"sess_prev","Extra":{"OS":"darwin","Arch":"arm64","Authtoken":"tok_go","Version":"3.5.0","Hostname":"mac","UserAgent":"ngrok-agent/3.5.0","Metadata":"","Cookie":"c00kie","HeartbeatInterval":10000000000,"HeartbeatTolerance":15000000000,"Fingerprint":null,"UpdateUnsupportedError":null,"StopUnsupportedError":"","RestartUnsupportedError":"","ProxyType":"","MutualTLS":false,"ServiceRun":true,"ConfigVersion":"2","CustomInterface":false,"CustomCAs":false,"ClientType":"ngrok-go","LegNumber":0}}"#;

    /// Shape of a Rust SDK HTTPS Bind with most middleware set.
    const RUST_HTTP_BIND: &str = r#"{"Id":"","Proto":"https","ForwardsTo":"http://localhost:8080","ForwardsProto":"","Opts":{"Domain":"app.example.test","Hostname":"","Auth":"","Subdomain":"","HostHeaderRewrite":false,"LocalUrlScheme":null,"ProxyProto":0,"Compression":{},"CircuitBreaker":{"error_threshold":0.5},"IPRestriction":{"allow_cidrs":["10.0.0.0/8"]},"BasicAuth":{"credentials":[{"username":"u","cleartext_password":"secretpw"}]},"OAuth":{"provider":"google","allow_emails":["a@b.c"]},"OIDC":null,"WebhookVerification":{"provider":"github","secret":"s3cr3t"},"MutualTLSCA":{"mutual_tls_ca":"LS0tLS1CRUdJTg=="},"RequestHeaders":{"add":["host:internal.local"]},"ResponseHeaders":{"remove":["server"]},"WebsocketTCPConverter":null,"UserAgentFilter":{"allow":["curl/.*"]},"TrafficPolicy":"{\"on_http_request\":[]}"},"Extra":{"Token":"","IPPolicyRef":"","Metadata":"meta","Bindings":["public"],"PoolingEnabled":false}}"#;

    #[test]
    fn stream_type_values() {
        assert_eq!(
            [AUTH, BIND, UNBIND, PROXY, RESTART, STOP, UPDATE],
            [0, 1, 2, 3, 4, 5, 6]
        );
        assert_eq!([START_TUNNEL_WITH_LABEL, SRV_INFO, STOP_TUNNEL], [7, 8, 9]);
        assert_eq!(HEARTBEAT, u32::MAX);
    }

    #[test]
    fn rust_auth_parses_and_round_trips() {
        let a: Auth = serde_json::from_str(RUST_AUTH).unwrap();
        assert_eq!(a.version, vec!["3", "2"]);
        assert_eq!(a.client_id, "");
        assert_eq!(a.extra.auth_token, "tok_rust");
        assert_eq!(a.extra.os, "linux");
        assert_eq!(a.extra.heartbeat_interval, 10_000_000_000);
        assert_eq!(a.extra.heartbeat_tolerance, 15_000_000_000);
        assert_eq!(a.extra.stop_unsupported_error.as_deref(), Some(""));
        assert_eq!(a.extra.client_type, "library/official/rust");

        let out = serde_json::to_value(&a).unwrap();
        assert_eq!(out, serde_json::from_str::<Value>(RUST_AUTH).unwrap());
        let back: Auth = serde_json::from_value(out).unwrap();
        assert_eq!(back, a);
    }

    #[test]
    fn go_auth_token_spelling_and_null_pointer() {
        let a: Auth = serde_json::from_str(GO_AUTH).unwrap();
        assert_eq!(a.client_id, "sess_prev");
        assert_eq!(a.extra.auth_token, "tok_go");
        assert_eq!(a.extra.cookie, "c00kie");
        assert_eq!(a.extra.update_unsupported_error, None);
        assert_eq!(a.extra.restart_unsupported_error.as_deref(), Some(""));
        assert!(a.extra.service_run);
        // Serialized with the Rust spelling only.
        let s = serde_json::to_string(&a).unwrap();
        assert!(s.contains(r#""AuthToken":"tok_go""#));
        assert!(!s.contains("Authtoken"));
    }

    #[test]
    fn token_key_variants() {
        for key in ["AuthToken", "Authtoken", "authtoken", "authToken"] {
            let j = format!(r#"{{"Extra":{{"{key}":"t"}}}}"#);
            let a: Auth = serde_json::from_str(&j).unwrap();
            assert_eq!(a.extra.auth_token, "t", "key {key}");
        }
    }

    #[test]
    fn nulls_and_missing_keys_are_defaults() {
        let j = r#"{"Version":null,"ClientId":null,"Extra":{"OS":null,"Arch":null,"AuthToken":null,"HeartbeatInterval":null,"MutualTLS":null,"CustomCAs":null,"StopUnsupportedError":null}}"#;
        let a: Auth = serde_json::from_str(j).unwrap();
        assert_eq!(a, Auth::default());
        let a: Auth = serde_json::from_str(r#"{"Extra":null}"#).unwrap();
        assert_eq!(a, Auth::default());
        let a: Auth = serde_json::from_str("{}").unwrap();
        assert_eq!(a, Auth::default());
    }

    #[test]
    fn unknown_keys_ignored() {
        let j = r#"{"Id":"t1","Future":{"x":[1,2]},"Proto":"tcp","Opts":{"Addr":"","ProxyProto":0,"NewThing":true},"Extra":{"Name":"n","Description":"d"}}"#;
        let b: Bind = serde_json::from_str(j).unwrap();
        assert_eq!(b.id, "t1");
        let o = TcpOpts::from_value(&b.opts).unwrap();
        assert_eq!(o.addr.as_deref(), Some(""));
    }

    #[test]
    fn debug_redacts_secrets() {
        let a: Auth = serde_json::from_str(GO_AUTH).unwrap();
        let d = format!("{a:?}");
        assert!(!d.contains("tok_go"));
        assert!(!d.contains("c00kie"));
        assert!(d.contains("<redacted>"));
    }

    #[test]
    fn auth_resp_shape() {
        let r = AuthResp {
            version: "3".into(),
            client_id: "sess_1".into(),
            extra: AuthRespExtra {
                region: "local".into(),
                cookie: "ck".into(),
                ..Default::default()
            },
            error: String::new(),
        };
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(
            v,
            json!({"Version":"3","ClientId":"sess_1","Extra":{"Version":"","Region":"local",
                "Cookie":"ck","AccountName":"","SessionDuration":0,"PlanName":"","Banner":""}})
        );
        let e = AuthResp {
            error: error_string("bad token", "ERR_NGROK_105"),
            ..Default::default()
        };
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["Error"], "bad token\r\n\r\nERR_NGROK_105\r\n");
        // Our agent can read a bare Go-style reply with extra keys and nulls.
        let g: AuthResp = serde_json::from_str(
            r#"{"Version":"3","ClientId":"s","Error":"","Extra":{"Region":null,"ConnectAddresses":null,"DeprecationWarning":null}}"#,
        )
        .unwrap();
        assert_eq!(g.client_id, "s");
    }

    #[test]
    fn rust_http_bind_parses() {
        let b: Bind = serde_json::from_str(RUST_HTTP_BIND).unwrap();
        assert_eq!(b.proto, "https");
        assert_eq!(b.extra.bindings, vec!["public"]);
        assert_eq!(b.extra.metadata, "meta");
        let o = HttpOpts::from_value(&b.opts).unwrap();
        assert_eq!(o.requested_domain(), Some("app.example.test"));
        assert_eq!(o.proxy_proto, Some(0));
        assert_eq!(o.host_header_rewrite, Some(false));
        assert_eq!(o.local_url_scheme, None);
        assert_eq!(o.compression, Some(Compression {}));
        assert_eq!(o.circuit_breaker.unwrap().error_threshold, 0.5);
        let ipr = o.ip_restriction.clone().unwrap();
        assert_eq!(ipr.allow_cidrs, vec!["10.0.0.0/8"]);
        assert!(ipr.deny_cidrs.is_empty());
        let cred = &o.basic_auth.as_ref().unwrap().credentials[0];
        assert_eq!(cred.username, "u");
        assert_eq!(cred.cleartext_password, "secretpw");
        assert_eq!(cred.hashed_password, "");
        assert_eq!(o.oauth.as_ref().unwrap()["provider"], "google");
        assert_eq!(o.oidc, None);
        assert_eq!(o.webhook_verification.as_ref().unwrap().provider, "github");
        assert_eq!(
            decode_base64(&o.mutual_tls_ca.as_ref().unwrap().mutual_tls_ca).unwrap(),
            b"-----BEGIN"
        );
        assert_eq!(
            o.request_headers.as_ref().unwrap().add,
            vec!["host:internal.local"]
        );
        assert_eq!(o.response_headers.as_ref().unwrap().remove, vec!["server"]);
        assert_eq!(o.websocket_tcp_converter, None);
        assert_eq!(o.user_agent_filter.as_ref().unwrap().allow, vec!["curl/.*"]);
        assert_eq!(
            o.traffic_policy.as_deref(),
            Some(r#"{"on_http_request":[]}"#)
        );
        assert!(!format!("{o:?}").contains("secretpw"));

        // The raw Opts survive a round trip untouched, so they can be echoed.
        let again: Bind = serde_json::from_value(serde_json::to_value(&b).unwrap()).unwrap();
        assert_eq!(again, b);
    }

    #[test]
    fn go_http_bind_spellings() {
        let j = r#"{"Id":"","Proto":"http","ForwardsTo":"localhost:80","ForwardsProto":"","Opts":{"URL":"","Domain":"","Hostname":"legacy.example.test","Subdomain":"","Auth":"","HostHeaderRewrite":true,"LocalURLScheme":"http","ProxyProto":2,"Compression":null,"CircuitBreaker":null,"IPRestriction":{"allow_cidrs":null,"deny_cidrs":["1.2.3.4/32"]},"BasicAuth":null,"OAuth":null,"OIDC":null,"WebhookVerification":null,"MutualTLSCA":null,"RequestHeaders":null,"ResponseHeaders":null,"WebsocketTCPConverter":{},"UserAgentFilter":null,"Policy":null,"TrafficPolicy":""},"Extra":{"Name":"","Token":"","IPPolicyRef":"","Metadata":"","Description":"","Bindings":null,"AllowsPooling":true}}"#;
        let b: Bind = serde_json::from_str(j).unwrap();
        assert!(b.extra.pooling_enabled);
        assert!(b.extra.bindings.is_empty());
        let o = HttpOpts::from_value(&b.opts).unwrap();
        assert_eq!(o.requested_domain(), Some("legacy.example.test"));
        assert_eq!(o.local_url_scheme.as_deref(), Some("http"));
        assert_eq!(o.proxy_proto, Some(2));
        assert_eq!(o.host_header_rewrite, Some(true));
        assert_eq!(o.ip_restriction.unwrap().deny_cidrs, vec!["1.2.3.4/32"]);
        assert_eq!(o.websocket_tcp_converter, Some(WebsocketTcpConverter {}));
        assert_eq!(o.traffic_policy.as_deref(), Some(""));
    }

    #[test]
    fn traffic_policy_object_becomes_text() {
        let o = HttpOpts::from_value(&json!({"TrafficPolicy": {"Inbound": []}})).unwrap();
        assert_eq!(o.traffic_policy.as_deref(), Some(r#"{"Inbound":[]}"#));
        let o = HttpOpts::from_value(&json!({"TrafficPolicy": null})).unwrap();
        assert_eq!(o.traffic_policy, None);
        let o = HttpOpts::from_value(&Value::Null).unwrap();
        assert_eq!(o, HttpOpts::default());
    }

    #[test]
    fn tcp_and_tls_opts() {
        let t = TcpOpts::from_value(&json!({"Addr":"1.tcp.example.test:20000","ProxyProto":1,
            "IPRestriction":{"deny_cidrs":["1.2.3.4/32"]},"TrafficPolicy":null}))
        .unwrap();
        assert_eq!(t.addr.as_deref(), Some("1.tcp.example.test:20000"));
        assert_eq!(t.proxy_proto, Some(1));
        assert_eq!(t.ip_restriction.unwrap().deny_cidrs, vec!["1.2.3.4/32"]);

        let s = TlsOpts::from_value(&json!({"Domain":"tls.example.test","Hostname":"",
            "Subdomain":"","ProxyProto":2,"MutualTLSAtAgent":false,
            "MutualTLSAtEdge":{"mutual_tls_ca":"Q0E="},
            "TLSTermination":{"cert":"Q0VSVA==","key":"S0VZ"},
            "IPRestriction":null,"TrafficPolicy":null}))
        .unwrap();
        assert_eq!(s.requested_domain(), Some("tls.example.test"));
        assert_eq!(s.mutual_tls_at_agent, Some(false));
        assert_eq!(
            decode_base64(&s.mutual_tls_at_edge.unwrap().mutual_tls_ca).unwrap(),
            b"CA"
        );
        let term = s.tls_termination.unwrap();
        assert_eq!(decode_base64(&term.cert).unwrap(), b"CERT");
        assert_eq!(decode_base64(&term.key).unwrap(), b"KEY");
        assert_eq!(term.sealed_key, "");
        assert!(!format!("{term:?}").contains("S0VZ"));
    }

    #[test]
    fn wrong_type_in_opts_is_an_error() {
        let e = HttpOpts::from_value(&json!({"ProxyProto": "two"})).unwrap_err();
        assert!(matches!(e, MsgError::InvalidJson(_)));
    }

    #[test]
    fn bind_resp_shape() {
        let b: Bind = serde_json::from_str(RUST_HTTP_BIND).unwrap();
        let r = BindResp {
            id: "tn_1".into(),
            url: "https://app.example.test".into(),
            proto: b.proto.clone(),
            opts: b.opts.clone(),
            extra: BindRespExtra::default(),
            error: String::new(),
        };
        let v = serde_json::to_value(&r).unwrap();
        let obj = v.as_object().unwrap();
        let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["Extra", "Id", "Opts", "Proto", "URL"]);
        assert_eq!(v["Extra"], json!({"Token": ""}));
        assert_eq!(v["Opts"], b.opts);

        let e = BindResp {
            error: error_string("Domain is reserved by another account.", "ERR_NGROK_313"),
            ..Default::default()
        };
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(
            v["Error"],
            "Domain is reserved by another account.\r\n\r\nERR_NGROK_313\r\n"
        );
    }

    #[test]
    fn fill_required_opts_per_proto() {
        let mut v = json!({"Domain": null, "Hostname": null, "ProxyProto": 2});
        fill_required_opts("https", &mut v);
        assert_eq!(
            v,
            json!({"Domain":"","Hostname":"","Auth":"","Subdomain":"",
                "HostHeaderRewrite":false,"ProxyProto":2})
        );
        let mut v = Value::Null;
        fill_required_opts("tcp", &mut v);
        assert_eq!(v, json!({"Addr":"","ProxyProto":0}));
        let mut v = json!({"Hostname":"x"});
        fill_required_opts("tls", &mut v);
        assert_eq!(
            v,
            json!({"Hostname":"x","Subdomain":"","ProxyProto":0,"MutualTLSAtAgent":false})
        );
        let mut v = json!({"a": 1});
        fill_required_opts("ssh", &mut v);
        assert_eq!(v, json!({"a": 1}));
    }

    #[test]
    fn unbind_label_srvinfo_commands() {
        let u: Unbind = serde_json::from_str(r#"{"Id":"tn_1","Extra":null}"#).unwrap();
        assert_eq!(u.id, "tn_1");
        assert_eq!(serde_json::to_string(&UnbindResp::default()).unwrap(), "{}");

        let l: StartTunnelWithLabel = serde_json::from_str(
            r#"{"Labels":{"edge":"edghts_1","b":"2"},"ForwardsTo":"localhost:80","ForwardsProto":"http1","Metadata":""}"#,
        )
        .unwrap();
        assert_eq!(l.labels.get("edge").map(String::as_str), Some("edghts_1"));
        assert_eq!(l.forwards_proto, "http1");
        let l: StartTunnelWithLabel = serde_json::from_str(r#"{"Labels":null}"#).unwrap();
        assert!(l.labels.is_empty());
        assert_eq!(
            serde_json::to_string(&StartTunnelWithLabelResp {
                id: "tn_2".into(),
                error: String::new()
            })
            .unwrap(),
            r#"{"Id":"tn_2"}"#
        );

        let _: SrvInfo = serde_json::from_str("{}").unwrap();
        assert_eq!(
            serde_json::to_string(&SrvInfoResp::default()).unwrap(),
            r#"{"Region":""}"#
        );

        assert_eq!(serde_json::to_string(&Restart {}).unwrap(), "{}");
        assert_eq!(serde_json::to_string(&Stop {}).unwrap(), "{}");
        assert_eq!(
            serde_json::to_string(&Update {
                version: "1.2.3".into(),
                permit_major_version: true
            })
            .unwrap(),
            r#"{"Version":"1.2.3","PermitMajorVersion":true}"#
        );

        let ok: CommandResp = serde_json::from_str("{}").unwrap();
        assert!(ok.error.is_empty());
        let ok: CommandResp = serde_json::from_str(r#"{"Error":""}"#).unwrap();
        assert!(ok.error.is_empty());
        let bad: CommandResp = serde_json::from_str(
            r#"{"Error":"the agent has no defined callback for this operation"}"#,
        )
        .unwrap();
        assert!(!bad.error.is_empty());
        assert_eq!(
            serde_json::to_string(&CommandResp::default()).unwrap(),
            "{}"
        );
    }

    #[test]
    fn stop_tunnel_shape() {
        let s = StopTunnel {
            id: "tn_1".into(),
            message: "bye".into(),
            error_code: String::new(),
        };
        assert_eq!(
            serde_json::to_string(&s).unwrap(),
            r#"{"Id":"tn_1","Message":"bye"}"#
        );
        let s = StopTunnel {
            error_code: "ERR_NGROK_3200".into(),
            ..s
        };
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["ErrorCode"], "ERR_NGROK_3200");
        let back: StopTunnel = serde_json::from_value(v).unwrap();
        assert_eq!(back, s);
    }

    #[test]
    fn proxy_header_shape() {
        let h = ProxyHeader {
            id: "tn_1".into(),
            client_addr: "[2001:db8::1]:5555".into(),
            proto: "https".into(),
            edge_type: EDGE_TYPE_UNDEFINED.into(),
            passthrough_tls: false,
        };
        assert_eq!(
            serde_json::to_string(&h).unwrap(),
            r#"{"Id":"tn_1","ClientAddr":"[2001:db8::1]:5555","Proto":"https","EdgeType":"","PassthroughTLS":false}"#
        );
        let back: ProxyHeader = serde_json::from_str(
            r#"{"Id":"tn_1","ClientAddr":"[2001:db8::1]:5555","Proto":"https","EdgeType":"","PassthroughTLS":false}"#,
        )
        .unwrap();
        assert_eq!(back, h);
    }

    #[test]
    fn error_strings() {
        let s = error_string("Domain is reserved by another account.", "ERR_NGROK_313");
        assert_eq!(
            s,
            "Domain is reserved by another account.\r\n\r\nERR_NGROK_313\r\n"
        );
        assert_eq!(error_code(&s), Some("ERR_NGROK_313"));
        assert_eq!(error_code("plain failure"), None);
        assert_eq!(
            error_code("a\nb\n  ERR_NGROK_105  \n"),
            Some("ERR_NGROK_105")
        );
    }

    #[test]
    fn base64_decoding() {
        assert_eq!(decode_base64("").unwrap(), b"");
        assert_eq!(decode_base64("Zg==").unwrap(), b"f");
        assert_eq!(decode_base64("Zm8=").unwrap(), b"fo");
        assert_eq!(decode_base64("Zm9v").unwrap(), b"foo");
        assert_eq!(decode_base64("Zm9vYg").unwrap(), b"foob");
        assert_eq!(decode_base64("Zm9v\nYmFy").unwrap(), b"foobar");
        assert_eq!(decode_base64("+/+/").unwrap(), [0xFB, 0xFF, 0xBF]);
        assert!(decode_base64("Z").is_err());
        assert!(decode_base64("Zg==Zg").is_err());
        assert!(decode_base64("Zm9v!").is_err());
    }
}
