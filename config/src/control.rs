//! What an edge serves from the control plane, compiled from the stored
//! [`resources`](crate::resources): credentials by token hash with their
//! ACLs, reserved names, and HTTPS edges by hostname with their routes.
//! Built whole on every change and swapped in; never mutated.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;

use crate::hostname::strip_port;
use crate::resources::{
    is_enabled, ApiKey, CertificateAuthority, CloudEndpoint, Credential, EdgeModules, HttpsEdge,
    HttpsEdgeRoute, IpAction, IpPolicy, IpPolicyRule, MatchType, MutualTlsModule, ReservedAddr,
    ReservedDomain, RouteModules, TcpEdge, TlsCertificate, TlsEdge, TlsTerminationModule,
    TrafficPolicyModule, TunnelGroupBackend,
};

/// Every stored resource an edge needs, by id.
#[derive(Debug, Default, Clone)]
pub struct Resources {
    pub api_keys: BTreeMap<String, ApiKey>,
    pub credentials: BTreeMap<String, Credential>,
    pub reserved_domains: BTreeMap<String, ReservedDomain>,
    pub reserved_addrs: BTreeMap<String, ReservedAddr>,
    pub ip_policies: BTreeMap<String, IpPolicy>,
    pub ip_policy_rules: BTreeMap<String, IpPolicyRule>,
    pub tunnel_groups: BTreeMap<String, TunnelGroupBackend>,
    pub https_edges: BTreeMap<String, HttpsEdge>,
    pub https_routes: BTreeMap<String, HttpsEdgeRoute>,
    pub tcp_edges: BTreeMap<String, TcpEdge>,
    pub tls_edges: BTreeMap<String, TlsEdge>,
    pub certificate_authorities: BTreeMap<String, CertificateAuthority>,
    pub tls_certificates: BTreeMap<String, TlsCertificate>,
    pub cloud_endpoints: BTreeMap<String, CloudEndpoint>,
}

/// One credential's bind rules. No rules (or `*`) allows everything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acl {
    rules: Vec<AclRule>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum AclRule {
    All,
    /// `bind:a.example.com`, `bind:host:port`.
    Name(String),
    /// `bind:*.example.com`: the suffix `.example.com`.
    Suffix(String),
    /// `bind:k=v`, either side may be `*` (None).
    Label(Option<String>, Option<String>),
}

/// Why an ACL rule is malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AclError {
    #[error("ACL rule {0:?} must be '*' or start with 'bind:'")]
    NotBind(String),
    #[error("ACL rule {0:?} binds nothing")]
    Empty(String),
}

impl Acl {
    pub fn parse(rules: &[String]) -> Result<Acl, AclError> {
        let rules = rules
            .iter()
            .map(|r| {
                if r == "*" {
                    return Ok(AclRule::All);
                }
                let body = r
                    .strip_prefix("bind:")
                    .ok_or_else(|| AclError::NotBind(r.clone()))?
                    .trim();
                if body.is_empty() {
                    return Err(AclError::Empty(r.clone()));
                }
                if body == "*" {
                    return Ok(AclRule::All);
                }
                if let Some((k, v)) = body.split_once('=') {
                    let side = |s: &str| (s != "*").then(|| s.to_string());
                    return Ok(AclRule::Label(side(k), side(v)));
                }
                let body = body.to_ascii_lowercase();
                Ok(match body.strip_prefix('*') {
                    Some(suffix) if suffix.starts_with('.') => AclRule::Suffix(suffix.to_string()),
                    _ => AclRule::Name(body),
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Acl { rules })
    }

    /// No rules, or `*`: everything may be bound.
    pub fn is_unrestricted(&self) -> bool {
        self.rules.is_empty() || self.rules.contains(&AclRule::All)
    }

    /// May bind `name`: a host name (possibly a wildcard) or a `host:port`.
    pub fn allows_name(&self, name: &str) -> bool {
        if self.is_unrestricted() {
            return true;
        }
        let name = name.to_ascii_lowercase();
        self.rules.iter().any(|r| match r {
            AclRule::Name(n) => *n == name,
            // `*.example.com` covers `x.example.com`, `a.b.example.com`
            // and the wildcard `*.example.com` itself.
            AclRule::Suffix(s) => name.ends_with(s.as_str()) && name.len() > s.len(),
            _ => false,
        })
    }

    /// May bind a labeled tunnel: every label must match a rule.
    pub fn allows_labels(&self, labels: &BTreeMap<String, String>) -> bool {
        if self.is_unrestricted() {
            return true;
        }
        labels.iter().all(|(k, v)| {
            self.rules.iter().any(|r| match r {
                AclRule::Label(rk, rv) => {
                    rk.as_ref().is_none_or(|rk| rk == k) && rv.as_ref().is_none_or(|rv| rv == v)
                }
                _ => false,
            })
        })
    }
}

/// An authtoken the edge accepts.
#[derive(Debug, Clone)]
pub struct CredentialGrant {
    pub id: String,
    pub acl: Acl,
}

/// Allowed iff the address matches an allow rule and no deny rule.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IpSet {
    allow: Vec<IpNet>,
    deny: Vec<IpNet>,
    /// Agent `IPRestriction` with only deny CIDRs: everything not denied
    /// is allowed (IP policies instead block what matches nothing).
    allow_unlisted: bool,
}

/// A CIDR that does not parse: which list, which entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{list}[{index}]: {value:?} is not a CIDR (like 10.0.0.0/8 or 2001:db8::/32)")]
pub struct CidrError {
    pub list: &'static str,
    pub index: usize,
    pub value: String,
}

impl IpSet {
    /// The agent option's form: allow and deny CIDR lists; with no allow
    /// list, everything not denied is allowed. A bare address is a /32 or
    /// /128.
    pub fn from_cidrs(allow: &[String], deny: &[String]) -> Result<IpSet, CidrError> {
        let parse = |list: &'static str, items: &[String]| {
            items
                .iter()
                .enumerate()
                .map(|(index, v)| {
                    parse_cidr(v).ok_or_else(|| CidrError {
                        list,
                        index,
                        value: v.clone(),
                    })
                })
                .collect::<Result<Vec<_>, _>>()
        };
        Ok(IpSet {
            allow_unlisted: allow.is_empty(),
            allow: parse("allow_cidrs", allow)?,
            deny: parse("deny_cidrs", deny)?,
        })
    }

    /// Whether a client at `client` is let through. No known source (a
    /// Unix socket, say) is refused: the set cannot be checked.
    pub fn admits(&self, client: Option<IpAddr>) -> bool {
        client.is_some_and(|ip| self.allows(ip))
    }

    pub fn allows(&self, ip: IpAddr) -> bool {
        // An IPv4 client reached over a dual-stack socket appears mapped.
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        (self.allow_unlisted || self.allow.iter().any(|n| n.contains(&ip)))
            && !self.deny.iter().any(|n| n.contains(&ip))
    }
}

/// `10.0.0.0/8`, `2001:db8::/32`, or a bare address.
pub fn parse_cidr(v: &str) -> Option<IpNet> {
    let v = v.trim();
    v.parse::<IpNet>()
        .ok()
        .or_else(|| v.parse::<IpAddr>().ok().map(IpNet::from))
}

/// A route of an HTTPS edge, ready to serve.
#[derive(Debug, Clone)]
pub struct CompiledRoute {
    pub id: String,
    pub match_type: MatchType,
    pub matches: String,
    /// Labels a tunnel must carry to serve this route; `None`: no backend.
    pub backend_labels: Option<BTreeMap<String, String>>,
    pub ip_restriction: Option<IpSet>,
    /// The route's module configuration; the edge compiles it into a chain.
    pub modules: RouteModules,
    /// Enabled modules this edge cannot enforce yet: the route refuses
    /// requests (fails closed) rather than serve them unprotected.
    pub unsupported: Vec<&'static str>,
}

/// What an edge asks of a client's TLS handshake, for the TLS port to
/// apply when it terminates a connection for one of the edge's names.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct ClientTlsSpec {
    /// Mutual TLS: the PEM certificates of the CAs a client certificate
    /// must chain to. `Some(empty)` (every referenced CA deleted) refuses
    /// every client rather than none.
    pub client_cas: Option<Vec<String>>,
    /// `tls_termination.min_version: "1.3"`. Lower settings keep the
    /// edge's floor of TLS 1.2.
    pub min_tls13: bool,
}

impl ClientTlsSpec {
    /// True when the edge needs nothing beyond the default handshake.
    pub fn is_default(&self) -> bool {
        self.client_cas.is_none() && !self.min_tls13
    }
}

/// An HTTPS edge: its names and routes.
#[derive(Debug, Clone)]
pub struct CompiledHttpsEdge {
    pub id: String,
    pub hostnames: Vec<String>,
    pub client_tls: ClientTlsSpec,
    exact: HashMap<String, usize>,
    /// Prefix routes, longest first.
    prefixes: Vec<usize>,
    pub routes: Vec<CompiledRoute>,
}

impl CompiledHttpsEdge {
    /// The route for `path` (query excluded): an exact match, else the
    /// longest matching prefix.
    pub fn route(&self, path: &str) -> Option<&CompiledRoute> {
        self.route_index(path).and_then(|i| self.routes.get(i))
    }

    /// Index into [`routes`](Self::routes) of the route for `path`.
    pub fn route_index(&self, path: &str) -> Option<usize> {
        if let Some(&i) = self.exact.get(path) {
            return Some(i);
        }
        self.prefixes
            .iter()
            .copied()
            .find(|&i| path.starts_with(self.routes[i].matches.as_str()))
    }
}

/// A TCP or TLS edge, ready to serve.
#[derive(Debug, Clone)]
pub struct CompiledL4Edge {
    pub id: String,
    /// Labels a tunnel must carry to serve it; `None`: no backend.
    pub backend_labels: Option<BTreeMap<String, String>>,
    pub ip_restriction: Option<IpSet>,
    /// TLS edges: terminate at the edge (with the edge's certificates for
    /// the name) and send plaintext; otherwise the bytes pass through.
    pub terminate_at_edge: bool,
    /// TLS edges terminated at the edge: mutual TLS and minimum version.
    pub client_tls: ClientTlsSpec,
    /// Enabled modules the edge cannot apply yet: connections are closed
    /// rather than served unprotected.
    pub unsupported: Vec<&'static str>,
    /// The `traffic_policy` module's document (`on_tcp_connect` only),
    /// compiled by the edge.
    pub traffic_policy: Option<String>,
}

/// A stored server certificate, and the reserved domains pinned to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServedCertificate {
    pub id: String,
    pub certificate_pem: String,
    pub private_key_pem: String,
    pub pinned_domains: Vec<String>,
}

/// Everything an edge serves from the control plane.
#[derive(Debug, Default)]
pub struct ControlConfig {
    /// Store revision this was compiled at.
    pub revision: i64,
    credentials: HashMap<String, CredentialGrant>,
    reserved_domains: HashSet<String>,
    /// TCP ports held by reserved addresses: never handed out at random.
    reserved_ports: HashSet<u16>,
    /// Host name → edge.
    https_edges: HashMap<String, Arc<CompiledHttpsEdge>>,
    /// Host name → TLS edge.
    tls_edges: HashMap<String, Arc<CompiledL4Edge>>,
    /// Port → TCP edge.
    tcp_edges: HashMap<u16, Arc<CompiledL4Edge>>,
    /// Server certificates, served by SNI.
    pub certificates: Vec<Arc<ServedCertificate>>,
}

impl ControlConfig {
    pub fn compile(res: &Resources, revision: i64) -> ControlConfig {
        let credentials = res
            .credentials
            .values()
            .map(|c| {
                // The API refuses bad rules; a record that slipped past gets
                // no rights rather than all.
                let acl = Acl::parse(&c.acl).unwrap_or(Acl {
                    rules: vec![AclRule::Name(String::new())],
                });
                (
                    c.token_hash.clone(),
                    CredentialGrant {
                        id: c.common.id.clone(),
                        acl,
                    },
                )
            })
            .collect();
        let reserved_domains = res
            .reserved_domains
            .values()
            .map(|d| d.domain.clone())
            .collect();
        let reserved_ports = res
            .reserved_addrs
            .values()
            .filter_map(|a| a.addr.rsplit_once(':')?.1.parse().ok())
            .collect();
        let index = Index::new(res);
        let mut https_edges = HashMap::new();
        for edge in res.https_edges.values() {
            let compiled = Arc::new(compile_edge(res, &index, edge));
            for h in &compiled.hostnames {
                https_edges.insert(h.clone(), compiled.clone());
            }
        }
        for ep in res.cloud_endpoints.values() {
            https_edges.insert(ep.host.clone(), Arc::new(compile_cloud_endpoint(ep)));
        }
        let mut tls_edges = HashMap::new();
        for edge in res.tls_edges.values() {
            let compiled = Arc::new(compile_l4(res, &index, &edge.common.id, &edge.modules));
            for hp in &edge.hostports {
                tls_edges.insert(strip_port(hp).to_string(), compiled.clone());
            }
        }
        let mut tcp_edges = HashMap::new();
        for edge in res.tcp_edges.values() {
            let compiled = Arc::new(compile_l4(res, &index, &edge.common.id, &edge.modules));
            for hp in &edge.hostports {
                if let Some(port) = hp.rsplit_once(':').and_then(|(_, p)| p.parse().ok()) {
                    tcp_edges.insert(port, compiled.clone());
                }
            }
        }
        let certificates = res
            .tls_certificates
            .values()
            .map(|c| {
                Arc::new(ServedCertificate {
                    id: c.common.id.clone(),
                    certificate_pem: c.certificate_pem.clone(),
                    private_key_pem: c.private_key_pem.clone(),
                    pinned_domains: res
                        .reserved_domains
                        .values()
                        .filter(|d| d.certificate_id.as_deref() == Some(c.common.id.as_str()))
                        .map(|d| d.domain.clone())
                        .collect(),
                })
            })
            .collect();
        ControlConfig {
            revision,
            credentials,
            reserved_domains,
            reserved_ports,
            https_edges,
            tls_edges,
            tcp_edges,
            certificates,
        }
    }

    /// The id of the API edge (HTTPS or TLS) that owns `host`, if any:
    /// agents cannot bind such a name themselves.
    pub fn edge_owning(&self, host: &str) -> Option<&str> {
        if let Some(e) = self.https_edge(host) {
            return Some(&e.id);
        }
        self.tls_edge(host).map(|e| e.id.as_str())
    }

    /// The TLS edge serving `host`.
    pub fn tls_edge(&self, host: &str) -> Option<&Arc<CompiledL4Edge>> {
        if self.tls_edges.is_empty() {
            return None;
        }
        let host = strip_port(host);
        self.tls_edges.get(host).or_else(|| {
            self.tls_edges
                .get(&host.trim_end_matches('.').to_ascii_lowercase())
        })
    }

    /// Every TLS edge once per name.
    pub fn tls_edges(&self) -> impl Iterator<Item = (&String, &Arc<CompiledL4Edge>)> {
        self.tls_edges.iter()
    }

    /// The TCP edge on `port`.
    pub fn tcp_edge(&self, port: u16) -> Option<&Arc<CompiledL4Edge>> {
        self.tcp_edges.get(&port)
    }

    /// Every TCP edge by port.
    pub fn tcp_edges(&self) -> impl Iterator<Item = (&u16, &Arc<CompiledL4Edge>)> {
        self.tcp_edges.iter()
    }

    /// The grant for an authtoken, by its [`token_hash`](crate::resources::token_hash).
    pub fn credential(&self, token_hash: &str) -> Option<&CredentialGrant> {
        self.credentials.get(token_hash)
    }

    pub fn is_reserved(&self, domain: &str) -> bool {
        self.reserved_domains.contains(domain)
    }

    pub fn is_reserved_port(&self, port: u16) -> bool {
        self.reserved_ports.contains(&port)
    }

    /// The HTTPS edge serving `host` (exact names only; edges own names).
    pub fn https_edge(&self, host: &str) -> Option<&Arc<CompiledHttpsEdge>> {
        if self.https_edges.is_empty() {
            return None;
        }
        let host = strip_port(host);
        match self.https_edges.get(host) {
            Some(e) => Some(e),
            None => self
                .https_edges
                .get(&host.trim_end_matches('.').to_ascii_lowercase()),
        }
    }

    /// Every HTTPS edge once, with the names it serves.
    pub fn https_edges(&self) -> impl Iterator<Item = (&String, &Arc<CompiledHttpsEdge>)> {
        self.https_edges.iter()
    }
}

/// Routes by edge and rules by policy, so compiling is linear in size.
struct Index<'a> {
    routes: HashMap<&'a str, Vec<&'a HttpsEdgeRoute>>,
    rules: HashMap<&'a str, Vec<&'a IpPolicyRule>>,
}

impl<'a> Index<'a> {
    fn new(res: &'a Resources) -> Self {
        let mut routes: HashMap<&str, Vec<&HttpsEdgeRoute>> = HashMap::new();
        for r in res.https_routes.values() {
            routes.entry(r.edge_id.as_str()).or_default().push(r);
        }
        let mut rules: HashMap<&str, Vec<&IpPolicyRule>> = HashMap::new();
        for r in res.ip_policy_rules.values() {
            rules.entry(r.ip_policy_id.as_str()).or_default().push(r);
        }
        Index { routes, rules }
    }
}

fn compile_edge(res: &Resources, index: &Index<'_>, edge: &HttpsEdge) -> CompiledHttpsEdge {
    let client_tls = client_tls_spec(res, edge.mutual_tls.as_ref(), edge.tls_termination.as_ref());
    let hostnames = edge
        .hostports
        .iter()
        .map(|hp| strip_port(hp).to_string())
        .collect();
    let mut routes: Vec<CompiledRoute> = index
        .routes
        .get(edge.common.id.as_str())
        .into_iter()
        .flatten()
        .map(|r| CompiledRoute {
            id: r.common.id.clone(),
            match_type: r.match_type,
            matches: r.matches.clone(),
            backend_labels: backend_labels(res, r.modules.backend.as_ref()),
            ip_restriction: r
                .modules
                .ip_restriction
                .as_ref()
                .filter(|m| is_enabled(m.enabled))
                .map(|m| ip_set(index, &m.ip_policy_ids)),
            modules: r.modules.clone(),
            unsupported: unsupported_modules(&r.modules),
        })
        .collect();
    routes.sort_by(|a, b| a.id.cmp(&b.id));
    let mut exact = HashMap::new();
    let mut prefixes = Vec::new();
    for (i, r) in routes.iter().enumerate() {
        match r.match_type {
            MatchType::ExactPath => {
                exact.entry(r.matches.clone()).or_insert(i);
            }
            MatchType::PathPrefix => prefixes.push(i),
        }
    }
    prefixes.sort_by(|&a, &b| routes[b].matches.len().cmp(&routes[a].matches.len()));
    CompiledHttpsEdge {
        id: edge.common.id.clone(),
        hostnames,
        client_tls,
        exact,
        prefixes,
        routes,
    }
}

/// A cloud endpoint is served like an HTTPS edge with one route for every
/// path whose only module is the endpoint's policy.
fn compile_cloud_endpoint(ep: &CloudEndpoint) -> CompiledHttpsEdge {
    let modules = RouteModules {
        traffic_policy: Some(TrafficPolicyModule {
            enabled: Some(true),
            value: ep.traffic_policy.clone(),
        }),
        ..RouteModules::default()
    };
    CompiledHttpsEdge {
        id: ep.common.id.clone(),
        hostnames: vec![ep.host.clone()],
        client_tls: ClientTlsSpec::default(),
        exact: HashMap::new(),
        prefixes: vec![0],
        routes: vec![CompiledRoute {
            id: ep.common.id.clone(),
            match_type: MatchType::PathPrefix,
            matches: "/".into(),
            backend_labels: None,
            ip_restriction: None,
            modules,
            unsupported: Vec::new(),
        }],
    }
}

fn backend_labels(
    res: &Resources,
    b: Option<&crate::resources::BackendModule>,
) -> Option<BTreeMap<String, String>> {
    b.filter(|b| is_enabled(b.enabled))
        .and_then(|b| res.tunnel_groups.get(&b.backend_id))
        .map(|g| g.labels.clone())
}

fn compile_l4(res: &Resources, index: &Index<'_>, id: &str, m: &EdgeModules) -> CompiledL4Edge {
    let on = |e: Option<bool>| is_enabled(e);
    let termination = m.tls_termination.as_ref().filter(|t| on(t.enabled));
    let terminate_at_edge =
        termination.is_some_and(|t| t.terminate_at.as_deref() != Some("upstream"));
    let mut unsupported = Vec::new();
    let mutual_tls = m.mutual_tls.as_ref().filter(|x| on(x.enabled));
    // A client certificate can only be checked where TLS ends.
    if mutual_tls.is_some() && !terminate_at_edge {
        unsupported.push("mutual_tls");
    }
    CompiledL4Edge {
        traffic_policy: m
            .traffic_policy
            .as_ref()
            .filter(|x| on(x.enabled))
            .map(|p| p.value.clone()),
        id: id.to_string(),
        backend_labels: backend_labels(res, m.backend.as_ref()),
        ip_restriction: m
            .ip_restriction
            .as_ref()
            .filter(|r| on(r.enabled))
            .map(|r| ip_set(index, &r.ip_policy_ids)),
        terminate_at_edge,
        client_tls: client_tls_spec(res, mutual_tls, termination),
        unsupported,
    }
}

/// The handshake requirements of an edge's `mutual_tls` and
/// `tls_termination` modules (disabled ones count as absent).
fn client_tls_spec(
    res: &Resources,
    mutual_tls: Option<&MutualTlsModule>,
    termination: Option<&TlsTerminationModule>,
) -> ClientTlsSpec {
    let client_cas = mutual_tls.filter(|m| is_enabled(m.enabled)).map(|m| {
        m.certificate_authority_ids
            .iter()
            .filter_map(|id| res.certificate_authorities.get(id))
            .map(|ca| ca.ca_pem.clone())
            .collect()
    });
    let min_tls13 = termination
        .is_some_and(|t| is_enabled(t.enabled) && t.min_version.as_deref() == Some("1.3"));
    ClientTlsSpec {
        client_cas,
        min_tls13,
    }
}

/// Modules configured and enabled on a route that the edge does not apply
/// yet: the route fails closed until they land.
fn unsupported_modules(m: &RouteModules) -> Vec<&'static str> {
    let json_on = |v: &Option<serde_json::Value>| {
        v.as_ref()
            .is_some_and(|v| v.get("enabled").and_then(|e| e.as_bool()) != Some(false))
    };
    let checks: [(&'static str, bool); 3] = [
        ("oauth", json_on(&m.oauth)),
        ("saml", json_on(&m.saml)),
        ("oidc", json_on(&m.oidc)),
    ];
    checks
        .into_iter()
        .filter_map(|(name, enabled)| enabled.then_some(name))
        .collect()
}

/// All rules of the given policies as one set.
fn ip_set(index: &Index<'_>, policy_ids: &[String]) -> IpSet {
    let mut set = IpSet::default();
    let rules = policy_ids
        .iter()
        .filter_map(|id| index.rules.get(id.as_str()))
        .flatten();
    for rule in rules {
        let Ok(net) = rule.cidr.parse::<IpNet>() else {
            continue;
        };
        match rule.action {
            IpAction::Allow => set.allow.push(net),
            IpAction::Deny => set.deny.push(net),
        }
    }
    set
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acl(rules: &[&str]) -> Acl {
        Acl::parse(&rules.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn acl_rules_match_names_wildcards_and_labels() {
        let a = acl(&["bind:*.example.com", "bind:api.test", "bind:app=*"]);
        for (name, ok) in [
            ("x.example.com", true),
            ("a.b.example.com", true),
            ("*.example.com", true),
            ("example.com", false),
            ("API.test", true),
            ("other.test", false),
        ] {
            assert_eq!(a.allows_name(name), ok, "{name}");
        }
        let labels = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>()
        };
        assert!(a.allows_labels(&labels(&[("app", "web")])));
        assert!(!a.allows_labels(&labels(&[("app", "web"), ("dc", "eu")])));
        assert!(acl(&[]).allows_name("anything.test"));
        assert!(acl(&["*"]).allows_labels(&labels(&[("k", "v")])));
        assert_eq!(
            Acl::parse(&["read:x".to_string()]),
            Err(AclError::NotBind("read:x".into()))
        );
    }

    #[test]
    fn ip_sets_deny_wins_and_nothing_matched_is_blocked() {
        let set = IpSet {
            allow: vec!["10.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()],
            deny: vec!["10.1.0.0/16".parse().unwrap()],
            allow_unlisted: false,
        };
        let ok = |s: &str| set.allows(s.parse().unwrap());
        assert!(ok("10.2.3.4"));
        assert!(!ok("10.1.3.4"));
        assert!(!ok("192.168.1.1"));
        assert!(ok("::1"));
        assert!(ok("::ffff:10.2.3.4"), "v4-mapped v6 is matched as v4");
    }
}
