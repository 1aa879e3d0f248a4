//! The immutable routing snapshot the data path reads: hostname → endpoint
//! → agent tunnels. Built by the registry, swapped in whole through
//! `ArcSwap`; requests never take a lock a config change holds.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use gangway_modules::basic_auth::BasicAuth;
use gangway_proto::Session;

/// What a tunnel's Bind options ask the edge to enforce, compiled once.
#[derive(Debug, Default)]
pub struct TunnelOptions {
    pub basic_auth: Option<BasicAuth>,
}

/// One agent tunnel able to serve an endpoint.
#[derive(Clone)]
pub struct Target {
    pub session: Session,
    pub tunnel_id: Arc<str>,
    /// Bind `Proto` (`http`/`https`), echoed in the ProxyHeader.
    pub proto: Arc<str>,
    pub options: Arc<TunnelOptions>,
}

/// A bound hostname and the tunnels serving it (several when pooled; none
/// while its agent is offline).
pub struct Endpoint {
    pub hostname: String,
    pub targets: Vec<Target>,
    next: AtomicUsize,
}

impl Endpoint {
    pub fn new(hostname: String, targets: Vec<Target>) -> Self {
        Endpoint {
            hostname,
            targets,
            next: AtomicUsize::new(0),
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

/// Which public listener an HTTP endpoint answers on: an endpoint bound
/// with `Proto: "https"` is served over TLS only, `"http"` over plain
/// HTTP only; an agent wanting both binds twice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    pub fn from_proto(proto: &str) -> Self {
        if proto == "http" {
            Scheme::Http
        } else {
            Scheme::Https
        }
    }
}

/// (scheme, hostname) → HTTP endpoint, and port → TCP endpoint.
#[derive(Default)]
pub struct RouteTable {
    https: HashMap<String, Arc<Endpoint>>,
    http: HashMap<String, Arc<Endpoint>>,
    ports: HashMap<u16, Arc<Endpoint>>,
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
            let map = match scheme {
                Scheme::Https => &mut t.https,
                Scheme::Http => &mut t.http,
            };
            map.insert(e.hostname.clone(), Arc::new(e));
        }
        t
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
        let hosts = match scheme {
            Scheme::Https => &self.https,
            Scheme::Http => &self.http,
        };
        let host = strip_port(host);
        if let Some(e) = hosts.get(host) {
            return Some(e);
        }
        let norm;
        let host = if host.bytes().any(|b| b.is_ascii_uppercase()) || host.ends_with('.') {
            norm = host.trim_end_matches('.').to_ascii_lowercase();
            if let Some(e) = hosts.get(&norm) {
                return Some(e);
            }
            norm.as_str()
        } else {
            host
        };
        let mut rest = host;
        while let Some((_, parent)) = rest.split_once('.') {
            if let Some(e) = hosts.get(&format!("*.{parent}")) {
                return Some(e);
            }
            rest = parent;
        }
        None
    }

    /// Endpoints of every kind.
    pub fn len(&self) -> usize {
        self.https.len() + self.http.len() + self.ports.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// `host:port` → `host`; `[v6]:port` → `v6`.
pub fn strip_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
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
