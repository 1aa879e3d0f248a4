//! The immutable routing snapshot the data path reads: hostname → endpoint
//! → agent tunnels. Built by the registry, swapped in whole through
//! `ArcSwap`; requests never take a lock a config change holds.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use std::net::IpAddr;

use gangway_config::control::{CompiledHttpsEdge, CompiledL4Edge, CompiledRoute, IpSet};

use crate::client_tls::ClientTls;
pub use gangway_config::hostname::strip_port;
use gangway_modules::chain::{Chain, Module};

use crate::certs::CertSet;
use gangway_modules::traffic_policy::TrafficPolicy;
use gangway_proto::Session;
use pingora_core::tls::ssl::SslAcceptor;

/// What a tunnel's Bind options ask the edge to enforce, compiled once.
#[derive(Default)]
pub struct TunnelOptions {
    /// HTTP endpoints: the route modules the Bind options asked for.
    pub chain: Arc<Chain>,
    /// TCP and TLS endpoints: the Bind's `IPRestriction`.
    pub ip_restriction: Option<IpSet>,
    /// TLS endpoints: terminate at the edge with the tunnel's own
    /// certificate (SDK `TLSTermination`) instead of passing bytes through.
    pub tls_termination: Option<SslAcceptor>,
    /// PROXY protocol version (1 or 2) sent ahead of each connection's
    /// bytes; 0 for none.
    pub proxy_proto: u8,
    /// TLS edges with `tls_termination`: the edge terminates with its own
    /// certificates and the agent gets plaintext.
    pub terminated_at_edge: bool,
    /// The ProxyHeader's `EdgeType` for tunnels serving an API edge.
    pub edge_type: EdgeType,
    /// What the TLS port asks of clients for this endpoint's name (mutual
    /// TLS, minimum version); `None`: the default handshake.
    pub client_tls: Option<Arc<ClientTls>>,
}

/// Which kind of API edge a connection arrived through (the ProxyHeader's
/// `EdgeType`, numbered as the agent SDKs number it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum EdgeType {
    /// A named endpoint bound by the agent itself.
    #[default]
    None,
    Tcp,
    Tls,
    Https,
}

impl EdgeType {
    pub fn wire(self) -> &'static str {
        match self {
            EdgeType::None => "",
            EdgeType::Tcp => "1",
            EdgeType::Tls => "2",
            EdgeType::Https => "3",
        }
    }
}

impl std::fmt::Debug for TunnelOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TunnelOptions")
            .field("chain", &self.chain.names())
            .field("ip_restriction", &self.ip_restriction.is_some())
            .field("tls_termination", &self.tls_termination.is_some())
            .field("proxy_proto", &self.proxy_proto)
            .field("terminated_at_edge", &self.terminated_at_edge)
            .field("edge_type", &self.edge_type)
            .field("client_tls", &self.client_tls)
            .finish()
    }
}

/// An edge's handshake policy was configured but could not be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PolicyMissing;

/// One agent tunnel able to serve an endpoint.
#[derive(Clone)]
pub struct Target {
    pub session: Session,
    pub tunnel_id: Arc<str>,
    /// Bind `Proto` (`http`/`https`), echoed in the ProxyHeader.
    pub proto: Arc<str>,
    pub options: Arc<TunnelOptions>,
}

impl Target {
    /// Whether the tunnel's own IP restriction (TCP/TLS Bind option)
    /// admits `client`.
    pub fn admits(&self, client: Option<IpAddr>) -> bool {
        let set = self.options.ip_restriction.as_ref();
        set.is_none_or(|s| s.admits(client))
    }
}

/// A bound hostname and the tunnels serving it (several when pooled; none
/// while its agent is offline).
pub struct Endpoint {
    pub hostname: String,
    pub targets: Vec<Target>,
    /// Set when this is a TCP or TLS edge from the API.
    pub l4_edge: Option<Arc<CompiledL4Edge>>,
    /// The TCP or TLS edge's Traffic Policy (`on_tcp_connect`).
    pub l4_policy: Option<Arc<Chain>>,
    policy_failed: bool,
    next: AtomicUsize,
}

impl Endpoint {
    pub fn new(hostname: String, targets: Vec<Target>) -> Self {
        Endpoint {
            hostname,
            targets,
            l4_edge: None,
            l4_policy: None,
            policy_failed: false,
            next: AtomicUsize::new(0),
        }
    }

    /// The endpoint of a TCP or TLS edge.
    pub fn for_l4_edge(hostname: String, targets: Vec<Target>, edge: Arc<CompiledL4Edge>) -> Self {
        // The API compiled the same text when it was stored; a policy that
        // no longer compiles (an older store) closes every connection.
        let (l4_policy, policy_failed) = match edge.traffic_policy.as_deref() {
            None => (None, false),
            Some(text) => match TrafficPolicy::compile_l4("traffic_policy.value", text) {
                Ok(p) if p.terminate_tls().is_none() => {
                    (Some(Arc::new(Chain::new(vec![Module::new(p)]))), false)
                }
                Ok(_) => (None, true),
                Err(e) => {
                    tracing::warn!(edge = %edge.id, error = %e, "edge traffic policy refused; closing its connections");
                    (None, true)
                }
            },
        };
        Endpoint {
            l4_policy,
            policy_failed,
            l4_edge: Some(edge),
            ..Endpoint::new(hostname, targets)
        }
    }

    /// Whether a connection from `client` may be served. Edges fail
    /// closed while they have a module the edge cannot apply yet.
    pub fn admits(&self, client: Option<IpAddr>) -> bool {
        let Some(edge) = &self.l4_edge else {
            return true;
        };
        if !edge.unsupported.is_empty() || self.policy_failed {
            return false;
        }
        edge.ip_restriction
            .as_ref()
            .is_none_or(|s| s.admits(client))
    }

    /// The handshake policy of a TLS edge terminated here (`Err`: one was
    /// configured but could not be built), or of the agent's tunnel.
    pub fn client_tls(&self, target: &Target) -> Result<Option<Arc<ClientTls>>, PolicyMissing> {
        match (&target.options.client_tls, &self.l4_edge) {
            (Some(p), _) => Ok(Some(p.clone())),
            (None, Some(edge)) if !edge.client_tls.is_default() => Err(PolicyMissing),
            (None, _) => Ok(None),
        }
    }

    /// Round robin over tunnels whose session is still alive.
    pub fn pick(&self) -> Option<&Target> {
        let n = self.targets.len();
        if n == 0 {
            return None;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        (0..n)
            .map(|i| &self.targets[(start + i) % n])
            .find(|t| !t.session.is_closed())
    }
}

/// Which public listener a named endpoint answers on: an endpoint bound
/// with `Proto: "https"` is served over TLS only, `"http"` over plain
/// HTTP only; an agent wanting both binds twice. `"tls"` endpoints share
/// the TLS port with HTTPS and get the raw TLS bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scheme {
    Http,
    Https,
    Tls,
}

impl Scheme {
    pub fn from_proto(proto: &str) -> Self {
        match proto {
            "http" => Scheme::Http,
            "tls" => Scheme::Tls,
            _ => Scheme::Https,
        }
    }

    /// The scheme whose names share this one's port (HTTPS and TLS both
    /// answer on the TLS port, so one name cannot be bound as both).
    pub fn port_sibling(self) -> Option<Scheme> {
        match self {
            Scheme::Https => Some(Scheme::Tls),
            Scheme::Tls => Some(Scheme::Https),
            Scheme::Http => None,
        }
    }
}

/// Where a connection on the TLS port goes, decided from its SNI.
pub enum TlsRoute<'a> {
    /// A TLS endpoint: bytes go to the agent (after terminating, when the
    /// tunnel brought its own certificate).
    Tunnel(&'a Arc<Endpoint>),
    /// Anything else: terminate with the edge's certificates and serve HTTP.
    Https,
}

/// An HTTPS edge from the API with, for each of its routes, the labeled
/// tunnels its backend selects.
pub struct EdgeRoutes {
    pub config: Arc<CompiledHttpsEdge>,
    /// Parallel to `config.routes`.
    pub endpoints: Vec<Arc<Endpoint>>,
    /// Parallel to `config.routes`: each route's module chain, `None`
    /// when its configuration did not compile (the route fails closed).
    pub chains: Vec<Option<Arc<Chain>>>,
    /// The edge's handshake policy (`mutual_tls`, `tls_termination`).
    pub client_tls: Option<Arc<ClientTls>>,
}

/// A matched route of an HTTPS edge.
pub struct RouteMatch<'a> {
    pub route: &'a CompiledRoute,
    pub endpoint: &'a Arc<Endpoint>,
    pub chain: Option<&'a Arc<Chain>>,
}

impl EdgeRoutes {
    /// The route for a request path, the tunnels serving it and its chain.
    pub fn route(&self, path: &str) -> Option<RouteMatch<'_>> {
        let i = self.config.route_index(path)?;
        Some(RouteMatch {
            route: self.config.routes.get(i)?,
            endpoint: self.endpoints.get(i)?,
            chain: self.chains.get(i)?.as_ref(),
        })
    }
}

/// (scheme, hostname) → named endpoint, port → TCP endpoint, hostname →
/// API-configured HTTPS edge, and the server certificates by SNI.
#[derive(Default)]
pub struct RouteTable {
    edges: HashMap<String, Arc<EdgeRoutes>>,
    https: HashMap<String, Arc<Endpoint>>,
    http: HashMap<String, Arc<Endpoint>>,
    tls: HashMap<String, Arc<Endpoint>>,
    ports: HashMap<u16, Arc<Endpoint>>,
    certs: Option<Arc<CertSet>>,
}

impl RouteTable {
    /// A table of HTTPS endpoints only (tests and simple callers).
    pub fn new(endpoints: impl IntoIterator<Item = Endpoint>) -> Self {
        Self::with_tcp(
            endpoints.into_iter().map(|e| (Scheme::Https, e)),
            std::iter::empty(),
        )
    }

    pub fn with_tcp(
        hosts: impl IntoIterator<Item = (Scheme, Endpoint)>,
        ports: impl IntoIterator<Item = (u16, Endpoint)>,
    ) -> Self {
        let mut t = RouteTable {
            ports: ports.into_iter().map(|(p, e)| (p, Arc::new(e))).collect(),
            ..RouteTable::default()
        };
        for (scheme, e) in hosts {
            t.hosts_mut(scheme).insert(e.hostname.clone(), Arc::new(e));
        }
        t
    }

    fn hosts(&self, scheme: Scheme) -> &HashMap<String, Arc<Endpoint>> {
        match scheme {
            Scheme::Https => &self.https,
            Scheme::Http => &self.http,
            Scheme::Tls => &self.tls,
        }
    }

    fn hosts_mut(&mut self, scheme: Scheme) -> &mut HashMap<String, Arc<Endpoint>> {
        match scheme {
            Scheme::Https => &mut self.https,
            Scheme::Http => &mut self.http,
            Scheme::Tls => &mut self.tls,
        }
    }

    /// Sets the server certificates.
    pub fn with_certs(mut self, certs: Option<Arc<CertSet>>) -> Self {
        self.certs = certs;
        self
    }

    /// The server certificates (none before the edge has loaded its own).
    pub fn certs(&self) -> Option<&Arc<CertSet>> {
        self.certs.as_ref()
    }

    /// Sets the HTTPS edges (hostname → edge).
    pub fn with_edges(mut self, edges: HashMap<String, Arc<EdgeRoutes>>) -> Self {
        self.edges = edges;
        self
    }

    /// The HTTPS edge owning `host` (exact names; any case or port).
    pub fn lookup_edge(&self, host: &str) -> Option<&Arc<EdgeRoutes>> {
        if self.edges.is_empty() {
            return None;
        }
        let host = strip_port(host);
        self.edges.get(host).or_else(|| {
            self.edges
                .get(&host.trim_end_matches('.').to_ascii_lowercase())
        })
    }

    /// The handshake policy for an HTTPS name: its API edge's, else that
    /// of the agent endpoint serving it; `Ok(None)`: the default handshake.
    /// `Err` when the edge asks for a policy that could not be built: the
    /// name is refused rather than served with less.
    pub fn https_client_tls(&self, host: &str) -> Result<Option<&Arc<ClientTls>>, PolicyMissing> {
        if let Some(edge) = self.lookup_edge(host) {
            return match &edge.client_tls {
                None if !edge.config.client_tls.is_default() => Err(PolicyMissing),
                policy => Ok(policy.as_ref()),
            };
        }
        Ok(self.lookup(host, Scheme::Https).and_then(|ep| {
            ep.targets
                .iter()
                .find_map(|t| t.options.client_tls.as_ref())
        }))
    }

    /// The TCP endpoint on `port`.
    pub fn lookup_port(&self, port: u16) -> Option<&Arc<Endpoint>> {
        self.ports.get(&port)
    }

    /// Looks up a request's host (any case, with or without port). An
    /// exact binding wins; otherwise the most specific wildcard: for
    /// `a.b.example.com`, `*.b.example.com` before `*.example.com`
    /// (a wildcard matches subdomains at any depth).
    pub fn lookup(&self, host: &str, scheme: Scheme) -> Option<&Arc<Endpoint>> {
        lookup_ranked(self.hosts(scheme), host).map(|(_, e)| e)
    }

    /// Routes a connection on the TLS port by its SNI: to a TLS endpoint
    /// when one matches more specifically than any HTTPS endpoint (so a
    /// wildcard TLS binding never hides an exact HTTPS one, or the reverse).
    pub fn route_tls(&self, sni: &str) -> TlsRoute<'_> {
        let Some((tls_rank, tls)) = lookup_ranked(&self.tls, sni) else {
            return TlsRoute::Https;
        };
        match lookup_ranked(&self.https, sni) {
            Some((https_rank, _)) if https_rank >= tls_rank => TlsRoute::Https,
            _ => TlsRoute::Tunnel(tls),
        }
    }

    /// Endpoints of every kind.
    pub fn len(&self) -> usize {
        self.https.len() + self.http.len() + self.tls.len() + self.ports.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The endpoint for `host` and how specifically it matched: `usize::MAX`
/// for an exact name, else the number of labels the wildcard's suffix has.
fn lookup_ranked<'a>(
    hosts: &'a HashMap<String, Arc<Endpoint>>,
    host: &str,
) -> Option<(usize, &'a Arc<Endpoint>)> {
    if hosts.is_empty() {
        return None;
    }
    let host = strip_port(host);
    if let Some(e) = hosts.get(host) {
        return Some((usize::MAX, e));
    }
    let norm;
    let host = if host.bytes().any(|b| b.is_ascii_uppercase()) || host.ends_with('.') {
        norm = host.trim_end_matches('.').to_ascii_lowercase();
        if let Some(e) = hosts.get(&norm) {
            return Some((usize::MAX, e));
        }
        norm.as_str()
    } else {
        host
    };
    let mut rest = host;
    while let Some((_, parent)) = rest.split_once('.') {
        if let Some(e) = hosts.get(&format!("*.{parent}")) {
            return Some((parent.split('.').count(), e));
        }
        rest = parent;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_ports() {
        assert_eq!(strip_port("a.example:8443"), "a.example");
        assert_eq!(strip_port("a.example"), "a.example");
        assert_eq!(strip_port("[::1]:80"), "::1");
    }

    #[test]
    fn exact_beats_wildcard_and_specific_wildcard_beats_general() {
        let t = RouteTable::new([
            Endpoint::new("*.example.com".into(), vec![]),
            Endpoint::new("*.deep.example.com".into(), vec![]),
            Endpoint::new("exact.deep.example.com".into(), vec![]),
        ]);
        let name = |h: &str| t.lookup(h, Scheme::Https).map(|e| e.hostname.clone());
        assert_eq!(
            name("exact.deep.example.com").as_deref(),
            Some("exact.deep.example.com")
        );
        assert_eq!(
            name("x.deep.example.com").as_deref(),
            Some("*.deep.example.com")
        );
        assert_eq!(
            name("a.b.deep.example.com").as_deref(),
            Some("*.deep.example.com")
        );
        assert_eq!(name("x.example.com").as_deref(), Some("*.example.com"));
        assert_eq!(
            name("y.other.example.com").as_deref(),
            Some("*.example.com")
        );
        assert_eq!(
            name("example.com"),
            None,
            "a wildcard does not match its own apex"
        );
        assert_eq!(name("X.Example.COM").as_deref(), Some("*.example.com"));
    }

    #[test]
    fn tls_port_routes_to_the_more_specific_binding() {
        let t = RouteTable::with_tcp(
            [
                (Scheme::Tls, Endpoint::new("*.example.com".into(), vec![])),
                (
                    Scheme::Https,
                    Endpoint::new("web.example.com".into(), vec![]),
                ),
                (
                    Scheme::Https,
                    Endpoint::new("*.sub.example.com".into(), vec![]),
                ),
                (
                    Scheme::Tls,
                    Endpoint::new("db.sub.example.com".into(), vec![]),
                ),
            ],
            [],
        );
        let to_tunnel = |sni: &str| match t.route_tls(sni) {
            TlsRoute::Tunnel(e) => Some(e.hostname.clone()),
            TlsRoute::Https => None,
        };
        assert_eq!(
            to_tunnel("raw.example.com").as_deref(),
            Some("*.example.com")
        );
        assert_eq!(
            to_tunnel("web.example.com"),
            None,
            "exact HTTPS beats TLS wildcard"
        );
        assert_eq!(
            to_tunnel("x.sub.example.com"),
            None,
            "deeper HTTPS wildcard wins"
        );
        assert_eq!(
            to_tunnel("db.sub.example.com").as_deref(),
            Some("db.sub.example.com")
        );
        assert_eq!(to_tunnel("other.test"), None);
    }

    #[test]
    fn lookup_is_case_insensitive() {
        let t = RouteTable::new([Endpoint::new("a.example".into(), vec![])]);
        assert!(t.lookup("A.Example:443", Scheme::Https).is_some());
        assert!(t.lookup("a.example.", Scheme::Https).is_some());
        assert!(t.lookup("b.example", Scheme::Https).is_none());
        assert!(
            t.lookup("a.example", Scheme::Http).is_none(),
            "https-only endpoint"
        );
    }
}
