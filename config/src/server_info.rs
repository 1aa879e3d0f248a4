//! `server.json`: what a running `gangway server` publishes in its data dir
//! so that local agents (and tests) can find and trust it.

use serde::{Deserialize, Serialize};

/// File name inside the data dir.
pub const SERVER_INFO_FILE: &str = "server.json";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerInfo {
    /// `host:port` agents dial (TLS, muxado).
    pub agent_addr: String,
    /// `host:port` of the public HTTP listener.
    pub http_addr: String,
    /// `host:port` of the public HTTPS listener.
    pub https_addr: String,
    pub base_domain: String,
    /// Path of the dev CA certificate (PEM) that signed the server's certificate.
    pub ca_cert: String,
    /// An authtoken the server accepts.
    pub authtoken: String,
    /// Host of `tcp://` endpoint URLs.
    #[serde(default)]
    pub tcp_host: String,
    /// Port range of TCP endpoints, `FIRST-LAST`.
    #[serde(default)]
    pub tcp_ports: String,
    /// `host:port` of the REST API.
    #[serde(default)]
    pub api_addr: String,
    /// Its base URL for API clients (`http://host:port`).
    #[serde(default)]
    pub api_url: String,
    /// An API key (`Authorization: Bearer …`).
    #[serde(default)]
    pub api_key: String,
}

impl ServerInfo {
    pub fn from_json(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}
