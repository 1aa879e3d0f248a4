//! Settings of one edge node.

use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::path::PathBuf;

/// Default base domain: every `*.localhost` name resolves to loopback, so a
/// local server works without DNS setup.
pub const DEFAULT_BASE_DOMAIN: &str = "gangway.localhost";
/// Default agent listener (TLS + muxado).
pub const DEFAULT_AGENT_PORT: u16 = 4443;
/// Default public HTTP listener.
pub const DEFAULT_HTTP_PORT: u16 = 7080;
/// Default public HTTPS listener.
pub const DEFAULT_HTTPS_PORT: u16 = 7443;
/// Default REST API listener (plain HTTP; loopback by default).
pub const DEFAULT_API_PORT: u16 = 7090;

/// Default range TCP endpoints are allocated from (below Linux's
/// ephemeral range, so outgoing connections never take them).
pub const DEFAULT_TCP_PORTS: RangeInclusive<u16> = 20000..=20999;

/// Everything an edge node needs to start. Addresses are already bound-able
/// (port 0 has been resolved by the caller).
#[derive(Debug, Clone)]
pub struct EdgeConfig {
    /// Random subdomains are allocated under this name.
    pub base_domain: String,
    pub agent_addr: SocketAddr,
    pub http_addr: SocketAddr,
    pub https_addr: SocketAddr,
    /// PEM certificate chain and key served on the agent listener and as the
    /// default certificate for public HTTPS.
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
    /// Authtokens agents may present.
    pub authtokens: Vec<String>,
    /// Worker threads per listener service.
    pub threads: usize,
    /// Address TCP endpoints listen on.
    pub tcp_ip: IpAddr,
    /// Host name printed in `tcp://host:port` URLs.
    pub tcp_host: String,
    /// Ports TCP endpoints may use.
    pub tcp_ports: RangeInclusive<u16>,
    /// Region name this edge reports to agents (ngrok's `us`, `eu`, ...).
    pub region: String,
    /// Where `http_request_complete.v0` / `tcp_connection_closed.v0`
    /// events are written.
    pub events: EventsOutput,
    /// Listen addresses whose port was picked for us (port 0 asked) and is
    /// held by a bound SO_REUSEPORT placeholder until the process exits, so
    /// nothing else can take it between picking and listening. The edge
    /// listens on these with SO_REUSEPORT too, which is what lets it join.
    pub reserved: Vec<SocketAddr>,
    /// PEM CAs the edge trusts, besides the system's, for documents it
    /// fetches for modules (SNS signing certificates).
    pub outbound_ca: Option<PathBuf>,
    /// `HOST:PORT:ADDR:PORT` overrides for those fetches (like curl's
    /// `--connect-to`).
    pub connect_to: Vec<String>,
}

/// The event sink an edge writes JSON lines to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum EventsOutput {
    #[default]
    Off,
    Stdout,
    File(PathBuf),
}

impl std::str::FromStr for EventsOutput {
    type Err = std::convert::Infallible;

    /// `off`, `stdout`, or a file path (appended to).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s.trim() {
            "" | "off" | "none" => EventsOutput::Off,
            "stdout" | "-" => EventsOutput::Stdout,
            path => EventsOutput::File(PathBuf::from(path)),
        })
    }
}

impl EdgeConfig {
    /// The public URL for `hostname` on the HTTPS listener, omitting the
    /// port when it is the scheme default.
    pub fn https_url(&self, hostname: &str) -> String {
        url_for("https", hostname, self.https_addr.port(), 443)
    }

    /// The public URL of a TCP endpoint.
    pub fn tcp_url(&self, port: u16) -> String {
        format!("tcp://{}:{port}", self.tcp_host)
    }

    /// The public URL of a TLS endpoint: the TLS port, always spelled out
    /// since `tls://` has no default port.
    pub fn tls_url(&self, hostname: &str) -> String {
        format!("tls://{hostname}:{}", self.https_addr.port())
    }

    /// The public URL for `hostname` on the HTTP listener.
    pub fn http_url(&self, hostname: &str) -> String {
        url_for("http", hostname, self.http_addr.port(), 80)
    }
}

fn url_for(scheme: &str, host: &str, port: u16, default_port: u16) -> String {
    if port == default_port {
        format!("{scheme}://{host}")
    } else {
        format!("{scheme}://{host}:{port}")
    }
}
