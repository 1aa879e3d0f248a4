//! Builds the route table: control-plane config + bindings + what was
//! compiled from the config (chains, client TLS policies, certificates)
//! → one immutable [`RouteTable`] snapshot. Pure: no locks, no sockets;
//! the registry calls it under its lock and swaps the result in.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use gangway_config::control::{
    ClientTlsSpec, CompiledL4Edge, CompiledRoute, ControlConfig, IpSet, ServedCertificate,
};
use gangway_config::resources::RouteModules;
use gangway_modules::chain::Chain;

use crate::bindings::{carries, Bindings, EndpointState};
use crate::certs::CertSet;
use crate::client_tls::ClientTls;
use crate::route_table::{
    EdgeRoutes, EdgeType, Endpoint, RouteTable, Scheme, Target, TunnelOptions,
};

/// A route's compiled chain and what it was compiled from: kept while
/// the route's modules are unchanged, so breaker state survives other
/// config changes.
struct CachedChain {
    modules: RouteModules,
    ip: Option<IpSet>,
    chain: Option<Arc<Chain>>,
}

impl CachedChain {
    fn compile(route: &CompiledRoute) -> Self {
        let chain = match gangway_modules::route_chain(&route.modules, route.ip_restriction.clone())
        {
            Ok(c) => Some(Arc::new(c)),
            Err(e) => {
                tracing::warn!(route = %route.id, error = %e, "route modules do not compile; the route refuses requests");
                None
            }
        };
        CachedChain {
            modules: route.modules.clone(),
            ip: route.ip_restriction.clone(),
            chain,
        }
    }

    fn is_for(&self, route: &CompiledRoute) -> bool {
        self.modules == route.modules && self.ip == route.ip_restriction
    }
}

/// What the table needs compiled from the control-plane config, kept
/// across configs where its source did not change.
#[derive(Default)]
pub struct Compiled {
    /// HTTPS edge routes' chains by route id.
    chains: HashMap<String, CachedChain>,
    /// Edges' handshake policies by what they ask, built once per
    /// distinct policy rather than on every rebuild.
    client_tls: HashMap<ClientTlsSpec, Arc<ClientTls>>,
    /// The file certificates (default first), as loaded at start.
    base_certs: Option<Arc<CertSet>>,
    /// The stored certificates the current set was built with.
    stored_certs: Vec<Arc<ServedCertificate>>,
    certs: Option<Arc<CertSet>>,
}

impl Compiled {
    /// Serves `base` (the file certificates) plus the stored ones.
    pub fn set_base_certs(&mut self, base: CertSet) {
        let base = Arc::new(base);
        self.certs = Some(Arc::new(base.with_stored(&self.stored_certs)));
        self.base_certs = Some(base);
    }

    /// Compiles what changed in `control`: chains of routes whose modules
    /// changed, client TLS policies not built yet, the certificate set if
    /// the stored certificates changed.
    pub fn update(&mut self, control: &ControlConfig) {
        let mut chains = HashMap::new();
        for (_, edge) in control.https_edges() {
            for route in &edge.routes {
                if chains.contains_key(&route.id) {
                    continue;
                }
                let cached = match self.chains.remove(&route.id) {
                    Some(c) if c.is_for(route) => c,
                    _ => CachedChain::compile(route),
                };
                chains.insert(route.id.clone(), cached);
            }
        }
        self.chains = chains;
        let specs = control
            .https_edges()
            .map(|(_, e)| &e.client_tls)
            .chain(control.tls_edges().map(|(_, e)| &e.client_tls))
            .filter(|spec| !spec.is_default());
        let mut policies = HashMap::new();
        for spec in specs {
            if policies.contains_key(spec) {
                continue;
            }
            let policy = match self.client_tls.remove(spec) {
                Some(p) => p,
                None => match ClientTls::from_spec(spec) {
                    Ok(p) => Arc::new(p),
                    // Building an acceptor only fails when BoringSSL cannot
                    // allocate; the TLS port then refuses the edge's names
                    // (see `RouteTable::https_client_tls`).
                    Err(e) => {
                        tracing::error!(error = %e, "building a client TLS policy");
                        continue;
                    }
                },
            };
            policies.insert(spec.clone(), policy);
        }
        self.client_tls = policies;
        // Most changes touch no certificate: parse them only when they do.
        if self.stored_certs != control.certificates {
            self.stored_certs = control.certificates.clone();
            if let Some(base) = &self.base_certs {
                self.certs = Some(Arc::new(base.with_stored(&self.stored_certs)));
            }
        }
    }

    /// The built policy for `spec`; `None` for the default handshake.
    fn client_tls_of(&self, spec: &ClientTlsSpec) -> Option<Arc<ClientTls>> {
        if spec.is_default() {
            return None;
        }
        self.client_tls.get(spec).cloned()
    }
}

/// The route table for `control` and `bindings`.
pub fn build(control: &ControlConfig, bindings: &Bindings, compiled: &Compiled) -> RouteTable {
    let sessions = &bindings.sessions;
    let endpoint = |name: String, ep: &EndpointState| {
        let targets = ep
            .tunnels
            .iter()
            .filter_map(|t| {
                sessions.get(&t.session).map(|s| Target {
                    session: s.clone(),
                    tunnel_id: t.tunnel_id.clone(),
                    proto: t.proto.clone(),
                    options: t.options.clone(),
                })
            })
            .collect();
        Endpoint::new(name, targets)
    };
    let hosts = bindings
        .endpoints
        .iter()
        .map(|((scheme, host), ep)| (*scheme, endpoint(host.clone(), ep)));
    let ports = bindings
        .tcp
        .iter()
        .map(|(port, ep)| (*port, endpoint(format!(":{port}"), ep)));
    let tls_edges = control.tls_edges().map(|(host, edge)| {
        (
            Scheme::Tls,
            l4_endpoint(bindings, compiled, host.clone(), edge, EdgeType::Tls),
        )
    });
    let tcp_edges = control.tcp_edges().map(|(port, edge)| {
        (
            *port,
            l4_endpoint(bindings, compiled, format!(":{port}"), edge, EdgeType::Tcp),
        )
    });
    // Edges come last: they own their names and ports.
    RouteTable::with_tcp(hosts.chain(tls_edges), ports.chain(tcp_edges))
        .with_edges(https_edges(control, bindings, compiled))
        .with_certs(compiled.certs.clone())
}

/// Each API edge with the labeled tunnels its routes' backends select.
fn https_edges(
    control: &ControlConfig,
    bindings: &Bindings,
    compiled: &Compiled,
) -> HashMap<String, Arc<EdgeRoutes>> {
    let mut by_id: HashMap<&str, Arc<EdgeRoutes>> = HashMap::new();
    let mut out = HashMap::new();
    for (host, edge) in control.https_edges() {
        let routes = by_id.entry(edge.id.as_str()).or_insert_with(|| {
            let client_tls = compiled.client_tls_of(&edge.client_tls);
            let opts = Arc::new(TunnelOptions {
                edge_type: EdgeType::Https,
                client_tls: client_tls.clone(),
                ..TunnelOptions::default()
            });
            let endpoints = edge
                .routes
                .iter()
                .map(|r| {
                    let targets =
                        labeled_targets(bindings, r.backend_labels.as_ref(), "https", opts.clone());
                    Arc::new(Endpoint::new(host.clone(), targets))
                })
                .collect();
            let chains = edge
                .routes
                .iter()
                .map(|r| compiled.chains.get(&r.id).and_then(|c| c.chain.clone()))
                .collect();
            Arc::new(EdgeRoutes {
                config: edge.clone(),
                endpoints,
                chains,
                client_tls,
            })
        });
        out.insert(host.clone(), routes.clone());
    }
    out
}

/// The live labeled tunnels carrying `want` (none without a backend), as
/// targets speaking `proto`.
fn labeled_targets(
    bindings: &Bindings,
    want: Option<&BTreeMap<String, String>>,
    proto: &str,
    options: Arc<TunnelOptions>,
) -> Vec<Target> {
    let Some(want) = want else {
        return Vec::new();
    };
    let proto: Arc<str> = Arc::from(proto);
    bindings
        .labeled
        .iter()
        .filter(|(_, t)| carries(&t.labels, want))
        .filter_map(|((k, id), _)| {
            bindings.sessions.get(k).map(|s| Target {
                session: s.clone(),
                tunnel_id: id.clone(),
                proto: proto.clone(),
                options: options.clone(),
            })
        })
        .collect()
}

/// A TCP or TLS edge's endpoint, served by the labeled tunnels its
/// backend selects.
fn l4_endpoint(
    bindings: &Bindings,
    compiled: &Compiled,
    name: String,
    edge: &Arc<CompiledL4Edge>,
    kind: EdgeType,
) -> Endpoint {
    let (proto, terminated_at_edge) = match kind {
        EdgeType::Tls => ("tls", edge.terminate_at_edge),
        _ => ("tcp", false),
    };
    let opts = TunnelOptions {
        terminated_at_edge,
        edge_type: kind,
        client_tls: compiled.client_tls_of(&edge.client_tls),
        ..TunnelOptions::default()
    };
    let targets = labeled_targets(
        bindings,
        edge.backend_labels.as_ref(),
        proto,
        Arc::new(opts),
    );
    Endpoint::for_l4_edge(name, targets, edge.clone())
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use gangway_config::control::Resources;
    use gangway_proto::{Role, Session, SessionConfig};
    use serde::de::DeserializeOwned;
    use serde_json::json;

    use super::*;
    use crate::bindings::BoundTunnel;
    use crate::certs::CertKey;
    use crate::route_table::Scheme;

    fn session() -> Session {
        let (a, far) = tokio::io::duplex(1024);
        // The far end lives as long as the test.
        std::mem::forget(far);
        gangway_proto::start(a, SessionConfig::new(Role::Server)).0
    }

    fn resource<T: DeserializeOwned>(v: serde_json::Value) -> T {
        serde_json::from_value(v).expect("a valid resource")
    }

    fn cert(name: &str) -> CertKey {
        let c = rcgen::generate_simple_self_signed(vec![name.to_string()]).expect("cert");
        let (pem, key) = (c.cert.pem(), c.signing_key.serialize_pem());
        CertKey::from_pem(pem.as_bytes(), key.as_bytes(), name).expect("loads")
    }

    #[tokio::test]
    async fn one_snapshot_of_config_bindings_and_certificates() {
        let mut res = Resources::default();
        let common = |id: &str| json!({"id": id, "created_at": "2026-12-03T00:00:00Z"});
        let mut group = common("bkd_1");
        group["labels"] = json!({"app": "web"});
        res.tunnel_groups.insert("bkd_1".into(), resource(group));
        let mut edge = common("edghts_1");
        edge["hostports"] = json!(["shop.example:443"]);
        res.https_edges.insert("edghts_1".into(), resource(edge));
        let mut route = common("edghtsrt_1");
        route["edge_id"] = json!("edghts_1");
        route["match_type"] = json!("path_prefix");
        route["match"] = json!("/");
        route["backend"] = json!({"backend_id": "bkd_1"});
        route["compression"] = json!({});
        res.https_routes
            .insert("edghtsrt_1".into(), resource(route));
        let control = ControlConfig::compile(&res, 1);

        let mut bindings = Bindings::default();
        bindings.add_session(1, session());
        let tunnel = |id: &str, proto: &str| BoundTunnel::new(1, id, proto, false, Arc::default());
        bindings
            .bind("a.example", tunnel("tn_a", "https"), &control)
            .expect("bind");
        let labels = [("app".to_string(), "web".to_string())].into();
        bindings.bind_labeled(1, "tn_l", labels).expect("labeled");
        bindings
            .bind_tcp(20001, tunnel("tn_t", "tcp"))
            .expect("tcp");
        let mut compiled = Compiled::default();
        compiled.set_base_certs(CertSet::new(cert("edge.example"), Vec::new()));
        compiled.update(&control);

        let table = build(&control, &bindings, &compiled);
        let targets =
            |t: &RouteTable, host: &str| t.lookup(host, Scheme::Https).map(|e| e.targets.len());
        assert_eq!(targets(&table, "a.example"), Some(1));
        assert_eq!(table.lookup_port(20001).map(|e| e.targets.len()), Some(1));
        let edge = table.lookup_edge("shop.example").expect("the API edge");
        let m = edge.route("/cart").expect("its route");
        assert_eq!(m.endpoint.targets.len(), 1, "the labeled tunnel serves it");
        assert_eq!(m.chain.map(|c| c.names()), Some(vec!["compression"]));
        let certs = table.certs().expect("certificates are part of the table");
        assert!(certs
            .select(Some("edge.example"))
            .dns_names()
            .contains(&"edge.example".to_string()));

        // The session goes: its name answers offline, its labels serve no more.
        bindings.remove_session(1, Instant::now());
        let table = build(&control, &bindings, &compiled);
        assert_eq!(targets(&table, "a.example"), Some(0));
        let edge = table.lookup_edge("shop.example").expect("the API edge");
        assert_eq!(edge.route("/").map(|m| m.endpoint.targets.len()), Some(0));
    }
}
