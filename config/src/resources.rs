//! Control-plane resources as the store keeps them (JSON under
//! `/r/<kind>/<id>`). The API validates and renders them in ngrok's wire
//! shapes; [`crate::control`] compiles them into what an edge serves.
//!
//! Records are lenient on read (no `deny_unknown_fields`) so an older node
//! can read what a newer one wrote.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Fields every resource has.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Common {
    pub id: String,
    /// RFC 3339, UTC.
    pub created_at: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub metadata: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKey {
    #[serde(flatten)]
    pub common: Common,
    #[serde(default)]
    pub owner_id: Option<String>,
    /// [`token_hash`] of the key; the key itself is shown once.
    pub token_hash: String,
}

/// An agent authtoken.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credential {
    #[serde(flatten)]
    pub common: Common,
    #[serde(default)]
    pub acl: Vec<String>,
    #[serde(default)]
    pub owner_id: Option<String>,
    pub token_hash: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReservedDomain {
    #[serde(flatten)]
    pub common: Common,
    /// Normalized host name; may be a wildcard (`*.example.com`).
    pub domain: String,
    #[serde(default)]
    pub region: String,
    #[serde(default)]
    pub certificate_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReservedAddr {
    #[serde(flatten)]
    pub common: Common,
    /// `host:port`.
    pub addr: String,
    #[serde(default)]
    pub region: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpPolicy {
    #[serde(flatten)]
    pub common: Common,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IpAction {
    Allow,
    Deny,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpPolicyRule {
    #[serde(flatten)]
    pub common: Common,
    /// Canonical CIDR (`10.0.0.0/8`, `2001:db8::/32`).
    pub cidr: String,
    pub ip_policy_id: String,
    pub action: IpAction,
}

/// A backend that sends to every agent tunnel whose labels include these.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TunnelGroupBackend {
    #[serde(flatten)]
    pub common: Common,
    pub labels: BTreeMap<String, String>,
}

/// What the API parsed out of an X.509 certificate, kept with the record
/// so listing never re-parses.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertSummary {
    pub subject_common_name: String,
    #[serde(default)]
    pub subject_organization: String,
    #[serde(default)]
    pub subject_organizational_unit: String,
    #[serde(default)]
    pub subject_locality: String,
    #[serde(default)]
    pub subject_province: String,
    #[serde(default)]
    pub subject_country: String,
    #[serde(default)]
    pub issuer_common_name: String,
    /// Lowercase hex, no separators.
    #[serde(default)]
    pub serial_number: String,
    /// RFC 3339, UTC.
    pub not_before: String,
    pub not_after: String,
    #[serde(default)]
    pub key_usages: Vec<String>,
    #[serde(default)]
    pub extended_key_usages: Vec<String>,
    #[serde(default)]
    pub dns_names: Vec<String>,
    #[serde(default)]
    pub ips: Vec<String>,
}

/// A CA that client certificates (mutual TLS) are verified against.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateAuthority {
    #[serde(flatten)]
    pub common: Common,
    pub ca_pem: String,
    pub summary: CertSummary,
}

/// A server certificate and its key, served by SNI for its names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TlsCertificate {
    #[serde(flatten)]
    pub common: Common,
    /// The chain, leaf first.
    pub certificate_pem: String,
    /// Never rendered by the API.
    pub private_key_pem: String,
    /// `rsa`, `ecdsa` or `ed25519`.
    pub private_key_type: String,
    pub summary: CertSummary,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpsEdge {
    #[serde(flatten)]
    pub common: Common,
    /// `host:port`, hosts normalized.
    #[serde(default)]
    pub hostports: Vec<String>,
    #[serde(default)]
    pub mutual_tls: Option<MutualTlsModule>,
    #[serde(default)]
    pub tls_termination: Option<TlsTerminationModule>,
}

/// A cloud endpoint: a public URL served by its Traffic Policy alone, with
/// no agent of its own (`forward-internal` hands requests to agents'
/// internal endpoints).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CloudEndpoint {
    #[serde(flatten)]
    pub common: Common,
    /// `https://host` as given, host normalized.
    pub url: String,
    /// The hostname the URL names.
    pub host: String,
    /// The policy document (JSON or YAML text).
    pub traffic_policy: String,
}

/// A TCP edge: reserved TCP addresses whose connections go to the tunnels
/// its backend selects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TcpEdge {
    #[serde(flatten)]
    pub common: Common,
    /// Reserved `host:port`s.
    #[serde(default)]
    pub hostports: Vec<String>,
    #[serde(flatten)]
    pub modules: EdgeModules,
}

/// A TLS edge: names on the TLS port whose connections (passed through,
/// or terminated at the edge) go to the tunnels its backend selects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TlsEdge {
    #[serde(flatten)]
    pub common: Common,
    /// `host:port`, hosts normalized.
    #[serde(default)]
    pub hostports: Vec<String>,
    #[serde(flatten)]
    pub modules: EdgeModules,
}

/// Modules of TCP and TLS edges (TCP edges use backend, ip_restriction and
/// traffic_policy).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EdgeModules {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<BackendModule>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_restriction: Option<IpRestrictionModule>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mutual_tls: Option<MutualTlsModule>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_termination: Option<TlsTerminationModule>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic_policy: Option<TrafficPolicyModule>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MutualTlsModule {
    #[serde(default)]
    pub enabled: Option<bool>,
    #[serde(default)]
    pub certificate_authority_ids: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsTerminationModule {
    #[serde(default)]
    pub enabled: Option<bool>,
    /// `edge`, or on TLS edges `upstream` (the agent's app terminates).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terminate_at: Option<String>,
    /// `"1.0"` .. `"1.3"`.
    #[serde(default)]
    pub min_version: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MatchType {
    ExactPath,
    PathPrefix,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HttpsEdgeRoute {
    #[serde(flatten)]
    pub common: Common,
    pub edge_id: String,
    pub match_type: MatchType,
    #[serde(rename = "match")]
    pub matches: String,
    #[serde(flatten)]
    pub modules: RouteModules,
}

/// A route's module configuration, each `None` when absent. The API
/// validates every field; the edge applies those whose module has landed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RouteModules {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<BackendModule>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_restriction: Option<IpRestrictionModule>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub circuit_breaker: Option<CircuitBreakerModule>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compression: Option<EnabledModule>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_headers: Option<HeadersModule>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_headers: Option<HeadersModule>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_verification: Option<WebhookVerificationModule>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oauth: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub saml: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oidc: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub websocket_tcp_converter: Option<EnabledModule>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent_filter: Option<UserAgentFilterModule>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic_policy: Option<TrafficPolicyModule>,
}

/// `enabled` is optional on the wire; absent means on.
pub fn is_enabled(enabled: Option<bool>) -> bool {
    enabled.unwrap_or(true)
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnabledModule {
    #[serde(default)]
    pub enabled: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendModule {
    #[serde(default)]
    pub enabled: Option<bool>,
    pub backend_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IpRestrictionModule {
    #[serde(default)]
    pub enabled: Option<bool>,
    pub ip_policy_ids: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CircuitBreakerModule {
    #[serde(default)]
    pub enabled: Option<bool>,
    /// Seconds the breaker stays open before one probe.
    #[serde(default = "breaker::tripped_duration")]
    pub tripped_duration: u32,
    /// Seconds of results the error ratio is computed over.
    #[serde(default = "breaker::rolling_window")]
    pub rolling_window: u32,
    #[serde(default = "breaker::num_buckets")]
    pub num_buckets: u32,
    /// Requests in the window before the breaker may trip.
    #[serde(default = "breaker::volume_threshold")]
    pub volume_threshold: u32,
    /// 0.0–1.0.
    #[serde(default = "breaker::error_threshold")]
    pub error_threshold_percentage: f64,
}

/// ngrok's circuit breaker defaults: the API's module and the agent's
/// `CircuitBreaker` option alike.
pub mod breaker {
    pub const TRIPPED_DURATION_SECS: u32 = 10;
    pub const ROLLING_WINDOW_SECS: u32 = 10;
    pub const NUM_BUCKETS: u32 = 10;
    pub const VOLUME_THRESHOLD: u32 = 20;
    pub const ERROR_THRESHOLD: f64 = 0.5;

    pub(crate) fn tripped_duration() -> u32 {
        TRIPPED_DURATION_SECS
    }
    pub(crate) fn rolling_window() -> u32 {
        ROLLING_WINDOW_SECS
    }
    pub(crate) fn num_buckets() -> u32 {
        NUM_BUCKETS
    }
    pub(crate) fn volume_threshold() -> u32 {
        VOLUME_THRESHOLD
    }
    pub(crate) fn error_threshold() -> f64 {
        ERROR_THRESHOLD
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeadersModule {
    #[serde(default)]
    pub enabled: Option<bool>,
    #[serde(default)]
    pub add: BTreeMap<String, String>,
    #[serde(default)]
    pub remove: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookVerificationModule {
    #[serde(default)]
    pub enabled: Option<bool>,
    pub provider: String,
    #[serde(default)]
    pub secret: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserAgentFilterModule {
    #[serde(default)]
    pub enabled: Option<bool>,
    #[serde(default)]
    pub allow: Vec<String>,
    #[serde(default)]
    pub deny: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrafficPolicyModule {
    #[serde(default)]
    pub enabled: Option<bool>,
    /// The policy document (JSON or YAML text).
    pub value: String,
}

/// Hex SHA-256 of a secret token: what the store keeps instead of it.
pub fn token_hash(token: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// A domain agents connect to instead of the edge's own agent address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentIngress {
    #[serde(flatten)]
    pub common: Common,
    /// Normalized; agents dial `tunnel.<region>.<domain>`.
    pub domain: String,
}

/// A Kubernetes operator installation that registered with the API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KubernetesOperator {
    #[serde(flatten)]
    pub common: Common,
    pub updated_at: String,
    /// Lowercase: `ingress`, `gateway`, `bindings`.
    #[serde(default)]
    pub enabled_features: Vec<String>,
    #[serde(default)]
    pub region: String,
    #[serde(default)]
    pub deployment: OperatorDeployment,
    #[serde(default)]
    pub binding: Option<OperatorBinding>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorDeployment {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub namespace: String,
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub cluster_name: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorBinding {
    #[serde(default)]
    pub endpoint_selectors: Vec<String>,
    #[serde(default)]
    pub ingress_endpoint: String,
    /// The client certificate signed from the operator's CSR (PEM).
    #[serde(default)]
    pub cert_pem: String,
    /// RFC 3339 validity of `cert_pem`.
    #[serde(default)]
    pub not_before: String,
    #[serde(default)]
    pub not_after: String,
}
