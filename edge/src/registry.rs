//! Live agent sessions and the endpoints they bind. This is the only
//! mutable routing state; each change rebuilds the [`RouteTable`] and swaps
//! it in, so the data path reads a consistent snapshot without locking.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;

use arc_swap::ArcSwap;
use gangway_proto::Session;
use tokio_util::sync::{CancellationToken, DropGuard};

use gangway_config::control::{ClientTlsSpec, CompiledL4Edge, CompiledRoute, ControlConfig, IpSet};
use gangway_config::resources::RouteModules;
use gangway_modules::chain::Chain;

use crate::client_tls::ClientTls;
use crate::events::{EventSink, Events};

use crate::route_table::{
    EdgeRoutes, EdgeType, Endpoint, RouteTable, Scheme, Target, TunnelOptions,
};

/// Whether a tunnel's labels include every wanted label.
fn carries(have: &BTreeMap<String, String>, want: &BTreeMap<String, String>) -> bool {
    !want.is_empty() && want.iter().all(|(k, v)| have.get(k) == Some(v))
}

/// How long an endpoint whose agent vanished (without Unbind) keeps
/// answering 502 "offline" instead of 404, so a restarting agent's users
/// see the right error and the agent can take its name back.
pub const OFFLINE_ENDPOINT_TTL: Duration = Duration::from_secs(3600);

/// Identifies one agent session inside this edge.
pub type SessionKey = u64;

/// Why a bind was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BindError {
    #[error("The endpoint '{0}' is already online. Either stop the other agent, or start both with pooling enabled to balance traffic between them.")]
    InUse(String),
    #[error("the session is closed")]
    SessionGone,
    #[error(
        "The TCP port {port} is not within the range {first}-{last} this server allocates from."
    )]
    PortOutOfRange { port: u16, first: u16, last: u16 },
    #[error("The TCP address port {0} is in use.")]
    PortInUse(u16),
    #[error("No free TCP port is left in the range {first}-{last}.")]
    PortsExhausted { first: u16, last: u16 },
    #[error("The endpoint '{host}' is served by HTTPS edge {edge}; attach to it with a labeled tunnel instead.")]
    EdgeOwned { host: String, edge: String },
}

/// Where TCP endpoints listen.
#[derive(Debug, Clone)]
pub struct TcpPorts {
    pub ip: IpAddr,
    pub range: RangeInclusive<u16>,
}

struct BoundTunnel {
    session: SessionKey,
    tunnel_id: Arc<str>,
    proto: Arc<str>,
    pooling: bool,
    options: Arc<TunnelOptions>,
}

#[derive(Default)]
struct EndpointState {
    tunnels: Vec<BoundTunnel>,
    offline_since: Option<Instant>,
}

/// A TCP endpoint: its tunnels plus the listener that lives as long as
/// the endpoint does (dropping the guard stops it and frees the port).
struct TcpEndpointState {
    ep: EndpointState,
    _listener: DropGuard,
}

/// What an agent said about itself at Auth, kept for the API's views.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionInfo {
    pub client_id: String,
    pub peer: String,
    pub os: String,
    pub agent_version: String,
    pub metadata: String,
    /// The stored credential it authenticated with (empty: a static token).
    pub credential_id: String,
    /// Milliseconds since the Unix epoch.
    pub started_at_ms: u64,
}

/// A bound tunnel as users list it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunnelInfo {
    pub session: SessionKey,
    pub id: String,
    pub url: String,
    pub proto: String,
    pub forwards_to: String,
    pub metadata: String,
    /// StartTunnelWithLabel's labels (empty for named endpoints).
    pub labels: BTreeMap<String, String>,
    /// Bind's requested bindings (`public`, `kubernetes`, ...).
    pub bindings: Vec<String>,
    /// Milliseconds since the Unix epoch.
    pub started_at_ms: u64,
}

/// Milliseconds since the Unix epoch, for `started_at` fields.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

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

/// A tunnel started with labels, waiting for edges whose backend selects them.
struct LabeledTunnel {
    labels: BTreeMap<String, String>,
}

#[derive(Default)]
struct State {
    sessions: HashMap<SessionKey, Session>,
    labeled: BTreeMap<(SessionKey, Arc<str>), LabeledTunnel>,
    session_info: HashMap<SessionKey, SessionInfo>,
    tunnel_info: BTreeMap<(SessionKey, String), TunnelInfo>,
    endpoints: BTreeMap<(Scheme, String), EndpointState>,
    tcp: BTreeMap<u16, TcpEndpointState>,
    /// Listeners of TCP edges' ports that no agent-bound endpoint shares.
    edge_listeners: BTreeMap<u16, DropGuard>,
    /// HTTPS edge routes' chains by route id.
    chains: HashMap<String, CachedChain>,
    /// Edges' handshake policies by what they ask, built once per distinct
    /// policy rather than on every rebuild.
    client_tls: HashMap<ClientTlsSpec, Arc<ClientTls>>,
}

/// Sessions, endpoints and the current route table.
pub struct Registry {
    state: Mutex<State>,
    table: Arc<ArcSwap<RouteTable>>,
    /// What the control plane configured; swapped whole on every change.
    control: ArcSwap<ControlConfig>,
    next_key: AtomicU64,
    /// Where TCP edges' ports listen.
    tcp_ip: IpAddr,
    /// Where request and connection events go.
    events: Events,
}

impl Default for Registry {
    fn default() -> Self {
        Self::new()
    }
}

impl Registry {
    pub fn new() -> Self {
        Self::with_tcp_ip(IpAddr::from([127, 0, 0, 1]))
    }

    /// A registry whose TCP edges listen on `tcp_ip`.
    pub fn with_tcp_ip(tcp_ip: IpAddr) -> Self {
        Registry {
            state: Mutex::new(State::default()),
            table: Arc::new(ArcSwap::from_pointee(RouteTable::default())),
            control: ArcSwap::from_pointee(ControlConfig::default()),
            next_key: AtomicU64::new(1),
            tcp_ip,
            events: Events::default(),
        }
    }

    /// Sends events to `sink` from now on.
    pub fn set_events(&self, sink: Box<dyn EventSink>) {
        self.events.set(sink);
    }

    /// The event handle listeners share.
    pub fn events(&self) -> &Events {
        &self.events
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The snapshot the data path routes by.
    pub fn table(&self) -> arc_swap::Guard<Arc<RouteTable>> {
        self.table.load()
    }

    /// The control plane's current config.
    pub fn control(&self) -> Arc<ControlConfig> {
        self.control.load_full()
    }

    /// Applies a new control-plane config: edges and their routes change
    /// at once, live sessions stay.
    pub fn set_control(&self, control: Arc<ControlConfig>) {
        let mut st = self.lock();
        let mut chains = HashMap::new();
        for (_, edge) in control.https_edges() {
            for route in &edge.routes {
                if chains.contains_key(&route.id) {
                    continue;
                }
                let cached = match st.chains.remove(&route.id) {
                    Some(c) if c.is_for(route) => c,
                    _ => CachedChain::compile(route),
                };
                chains.insert(route.id.clone(), cached);
            }
        }
        st.chains = chains;
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
            let policy = match st.client_tls.remove(spec) {
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
        st.client_tls = policies;
        self.control.store(control);
        self.rebuild(&mut st);
    }

    /// Starts a labeled tunnel: it serves every edge (or edge route) whose
    /// backend's labels it carries, speaking that edge's protocol.
    pub fn bind_labeled(
        &self,
        key: SessionKey,
        tunnel_id: &str,
        labels: BTreeMap<String, String>,
    ) -> Result<(), BindError> {
        let mut st = self.lock();
        if !st.sessions.contains_key(&key) {
            return Err(BindError::SessionGone);
        }
        st.labeled.retain(|(_, id), _| &**id != tunnel_id);
        st.labeled
            .insert((key, Arc::from(tunnel_id)), LabeledTunnel { labels });
        self.rebuild(&mut st);
        Ok(())
    }

    /// Ids of live labeled tunnels carrying every one of `labels`.
    pub fn tunnels_with_labels(&self, labels: &BTreeMap<String, String>) -> Vec<String> {
        let st = self.lock();
        st.labeled
            .iter()
            .filter(|(_, t)| carries(&t.labels, labels))
            .map(|((_, id), _)| id.to_string())
            .collect()
    }

    pub fn add_session(&self, session: Session) -> SessionKey {
        let key = self.next_key.fetch_add(1, Ordering::Relaxed);
        self.lock().sessions.insert(key, session);
        key
    }

    /// Binds `hostname` to a tunnel of session `key`. A bind with the tunnel
    /// id of an existing binding replaces it: that is an agent reconnecting
    /// before the edge noticed its old session die.
    pub fn bind(
        &self,
        key: SessionKey,
        tunnel_id: &str,
        proto: &str,
        hostname: &str,
        pooling: bool,
        options: Arc<TunnelOptions>,
    ) -> Result<(), BindError> {
        let mut st = self.lock();
        if !st.sessions.contains_key(&key) {
            return Err(BindError::SessionGone);
        }
        let live: Vec<SessionKey> = st.sessions.keys().copied().collect();
        let scheme = Scheme::from_proto(proto);
        if scheme != Scheme::Http {
            if let Some(edge) = self.control.load().edge_owning(hostname) {
                return Err(BindError::EdgeOwned {
                    host: hostname.to_string(),
                    edge: edge.to_string(),
                });
            }
        }
        // HTTPS and TLS endpoints answer on one port: a name is one or the other.
        if let Some(sibling) = scheme.port_sibling() {
            let taken = st
                .endpoints
                .get(&(sibling, hostname.to_string()))
                .is_some_and(|ep| ep.tunnels.iter().any(|t| live.contains(&t.session)));
            if taken {
                return Err(BindError::InUse(hostname.to_string()));
            }
        }
        let ep = st
            .endpoints
            .entry((scheme, hostname.to_string()))
            .or_default();
        ep.tunnels
            .retain(|t| &*t.tunnel_id != tunnel_id && live.contains(&t.session));
        if let Some(other) = ep.tunnels.first() {
            if !(pooling && other.pooling) {
                return Err(BindError::InUse(hostname.to_string()));
            }
        }
        ep.tunnels.push(BoundTunnel {
            session: key,
            tunnel_id: Arc::from(tunnel_id),
            proto: Arc::from(proto),
            pooling,
            options,
        });
        ep.offline_since = None;
        self.rebuild(&mut st);
        Ok(())
    }

    /// Removes one tunnel; an endpoint left without tunnels is gone (404),
    /// since the agent said so explicitly. Returns whether it was bound.
    pub fn unbind(&self, key: SessionKey, tunnel_id: &str) -> bool {
        let mut st = self.lock();
        st.tunnel_info.remove(&(key, tunnel_id.to_string()));
        let mut found = st.labeled.remove(&(key, Arc::from(tunnel_id))).is_some();
        st.endpoints.retain(|_, ep| {
            let before = ep.tunnels.len();
            ep.tunnels
                .retain(|t| !(t.session == key && &*t.tunnel_id == tunnel_id));
            found |= ep.tunnels.len() != before;
            !(ep.tunnels.is_empty() && before != 0)
        });
        st.tcp.retain(|_, t| {
            let before = t.ep.tunnels.len();
            t.ep.tunnels
                .retain(|t| !(t.session == key && &*t.tunnel_id == tunnel_id));
            found |= t.ep.tunnels.len() != before;
            !(t.ep.tunnels.is_empty() && before != 0)
        });
        if found {
            self.rebuild(&mut st);
        }
        found
    }

    /// Forgets a closed session. Its endpoints stay, offline, for
    /// [`OFFLINE_ENDPOINT_TTL`] unless another tunnel still serves them.
    pub fn remove_session(&self, key: SessionKey) {
        let mut st = self.lock();
        if st.sessions.remove(&key).is_none() {
            return;
        }
        st.session_info.remove(&key);
        st.tunnel_info.retain(|(k, _), _| *k != key);
        st.labeled.retain(|(k, _), _| *k != key);
        let now = Instant::now();
        let st = &mut *st;
        let eps = st
            .endpoints
            .values_mut()
            .chain(st.tcp.values_mut().map(|t| &mut t.ep));
        for ep in eps {
            let before = ep.tunnels.len();
            ep.tunnels.retain(|t| t.session != key);
            if before != 0 && ep.tunnels.is_empty() {
                ep.offline_since = Some(now);
            }
        }
        self.rebuild(st);
    }

    /// Records what a session's agent reported at Auth.
    pub fn set_session_info(&self, key: SessionKey, info: SessionInfo) {
        let mut st = self.lock();
        if st.sessions.contains_key(&key) {
            st.session_info.insert(key, info);
        }
    }

    pub fn session_info(&self, key: SessionKey) -> Option<SessionInfo> {
        self.lock().session_info.get(&key).cloned()
    }

    /// Every authenticated live session.
    pub fn sessions(&self) -> Vec<(SessionKey, SessionInfo)> {
        let st = self.lock();
        st.session_info
            .iter()
            .map(|(k, i)| (*k, i.clone()))
            .collect()
    }

    /// The session an agent knows as `client_id` (the newest, when a
    /// reconnect overlaps the old session's last moments).
    pub fn session_by_client_id(&self, client_id: &str) -> Option<Session> {
        let st = self.lock();
        st.session_info
            .iter()
            .filter(|(_, i)| i.client_id == client_id)
            .max_by_key(|(k, _)| **k)
            .and_then(|(k, _)| st.sessions.get(k).cloned())
    }

    /// Records a tunnel that was just bound (replacing its earlier record).
    pub fn record_tunnel(&self, info: TunnelInfo) {
        let mut st = self.lock();
        if st.sessions.contains_key(&info.session) {
            st.tunnel_info.insert((info.session, info.id.clone()), info);
        }
    }

    /// Every bound tunnel of live sessions, by session then tunnel id.
    pub fn tunnels(&self) -> Vec<TunnelInfo> {
        self.lock().tunnel_info.values().cloned().collect()
    }

    pub fn session_count(&self) -> usize {
        self.lock().sessions.len()
    }

    /// Binds a TCP tunnel: on `requested` if given (it must be in the
    /// range and free), else on a free port of the range. A rebind of a
    /// known tunnel id gets its old port back. Returns the port.
    pub fn bind_tcp(
        &self,
        key: SessionKey,
        tunnel_id: &str,
        requested: Option<u16>,
        ports: &TcpPorts,
        pooling: bool,
        options: Arc<TunnelOptions>,
    ) -> Result<u16, BindError> {
        let (first, last) = (*ports.range.start(), *ports.range.end());
        let mut st = self.lock();
        if !st.sessions.contains_key(&key) {
            return Err(BindError::SessionGone);
        }
        if let Some(p) = requested {
            if !ports.range.contains(&p) {
                return Err(BindError::PortOutOfRange {
                    port: p,
                    first,
                    last,
                });
            }
            if let Some(edge) = self.control.load().tcp_edge(p) {
                return Err(BindError::EdgeOwned {
                    host: format!("port {p}"),
                    edge: edge.id.clone(),
                });
            }
        }
        let live: Vec<SessionKey> = st.sessions.keys().copied().collect();
        let previous = st
            .tcp
            .iter()
            .find(|(_, t)| t.ep.tunnels.iter().any(|b| &*b.tunnel_id == tunnel_id))
            .map(|(p, _)| *p);
        let port = match (requested, previous) {
            (Some(p), _) => p,
            (None, Some(p)) => p,
            (None, None) => {
                let port = self.listen_on_free_port(&mut st, ports)?;
                self.attach(&mut st, port, key, tunnel_id, pooling, options);
                return Ok(port);
            }
        };
        match st.tcp.get_mut(&port) {
            Some(t) => {
                t.ep.tunnels
                    .retain(|b| &*b.tunnel_id != tunnel_id && live.contains(&b.session));
                if let Some(other) = t.ep.tunnels.first() {
                    if !(pooling && other.pooling) {
                        return Err(BindError::PortInUse(port));
                    }
                }
            }
            None => {
                let listener = bind_port(ports.ip, port).ok_or(BindError::PortInUse(port))?;
                self.start_listener(&mut st, port, listener);
            }
        }
        self.attach(&mut st, port, key, tunnel_id, pooling, options);
        Ok(port)
    }

    fn listen_on_free_port(&self, st: &mut State, ports: &TcpPorts) -> Result<u16, BindError> {
        let (first, last) = (*ports.range.start(), *ports.range.end());
        let span = u32::from(last - first) + 1;
        let offset = rand::random::<u32>() % span;
        for i in 0..span {
            let port = first + ((offset + i) % span) as u16;
            if st.tcp.contains_key(&port) || self.control.load().is_reserved_port(port) {
                continue;
            }
            if let Some(listener) = bind_port(ports.ip, port) {
                self.start_listener(st, port, listener);
                return Ok(port);
            }
        }
        Err(BindError::PortsExhausted { first, last })
    }

    fn start_listener(&self, st: &mut State, port: u16, listener: std::net::TcpListener) {
        let cancel = CancellationToken::new();
        tokio::spawn(crate::tcp_listener::serve(
            listener,
            port,
            self.table.clone(),
            self.events.clone(),
            cancel.clone(),
        ));
        st.tcp.insert(
            port,
            TcpEndpointState {
                ep: EndpointState::default(),
                _listener: cancel.drop_guard(),
            },
        );
    }

    fn attach(
        &self,
        st: &mut State,
        port: u16,
        key: SessionKey,
        tunnel_id: &str,
        pooling: bool,
        options: Arc<TunnelOptions>,
    ) {
        if let Some(t) = st.tcp.get_mut(&port) {
            t.ep.tunnels.push(BoundTunnel {
                session: key,
                tunnel_id: Arc::from(tunnel_id),
                proto: Arc::from("tcp"),
                pooling,
                options,
            });
            t.ep.offline_since = None;
        }
        self.rebuild(st);
    }

    fn rebuild(&self, st: &mut State) {
        let now = Instant::now();
        let fresh = |ep: &EndpointState| match ep.offline_since {
            Some(t) => now.duration_since(t) < OFFLINE_ENDPOINT_TTL,
            None => true,
        };
        st.endpoints.retain(|_, ep| fresh(ep));
        st.tcp.retain(|_, t| fresh(&t.ep));
        self.sync_edge_listeners(st);
        let sessions = &st.sessions;
        let compile = |name: String, ep: &EndpointState| {
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
        let hosts = st
            .endpoints
            .iter()
            .map(|((scheme, host), ep)| (*scheme, compile(host.clone(), ep)));
        let ports = st
            .tcp
            .iter()
            .map(|(port, t)| (*port, compile(format!(":{port}"), &t.ep)));
        let edges = self.compile_edges(st);
        let control = self.control.load();
        let tls_edges = control.tls_edges().map(|(host, edge)| {
            (
                Scheme::Tls,
                l4_endpoint(st, host.clone(), edge, EdgeType::Tls),
            )
        });
        let tcp_edges = control.tcp_edges().map(|(port, edge)| {
            (
                *port,
                l4_endpoint(st, format!(":{port}"), edge, EdgeType::Tcp),
            )
        });
        // Edges come last: they own their names and ports.
        self.table.store(Arc::new(
            RouteTable::with_tcp(hosts.chain(tls_edges), ports.chain(tcp_edges)).with_edges(edges),
        ));
    }

    /// Keeps one listener on every TCP edge's port (an agent-bound
    /// endpoint's listener on the same port serves too: listeners route by
    /// the table). A port that cannot be bound now is retried on the next
    /// change.
    fn sync_edge_listeners(&self, st: &mut State) {
        let control = self.control.load();
        let wanted: Vec<u16> = control
            .tcp_edges()
            .map(|(p, _)| *p)
            .filter(|p| !st.tcp.contains_key(p))
            .collect();
        st.edge_listeners.retain(|p, _| wanted.contains(p));
        for port in wanted {
            if st.edge_listeners.contains_key(&port) {
                continue;
            }
            let Some(listener) = bind_port(self.tcp_ip, port) else {
                tracing::warn!(
                    port,
                    "cannot listen on a TCP edge's port; retrying on the next change"
                );
                continue;
            };
            let cancel = CancellationToken::new();
            tokio::spawn(crate::tcp_listener::serve(
                listener,
                port,
                self.table.clone(),
                self.events.clone(),
                cancel.clone(),
            ));
            st.edge_listeners.insert(port, cancel.drop_guard());
        }
    }

    /// Each API edge with the labeled tunnels its routes' backends select.
    fn compile_edges(&self, st: &State) -> HashMap<String, Arc<EdgeRoutes>> {
        let control = self.control.load();
        let mut by_id: HashMap<&str, Arc<EdgeRoutes>> = HashMap::new();
        let mut out = HashMap::new();
        for (host, edge) in control.https_edges() {
            let routes = by_id.entry(edge.id.as_str()).or_insert_with(|| {
                let client_tls = client_tls_of(st, &edge.client_tls);
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
                            labeled_targets(st, r.backend_labels.as_ref(), "https", opts.clone());
                        Arc::new(Endpoint::new(host.clone(), targets))
                    })
                    .collect();
                let chains = edge
                    .routes
                    .iter()
                    .map(|r| st.chains.get(&r.id).and_then(|c| c.chain.clone()))
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
}

/// The live labeled tunnels carrying `want` (none without a backend), as
/// targets speaking `proto`.
fn labeled_targets(
    st: &State,
    want: Option<&BTreeMap<String, String>>,
    proto: &str,
    options: Arc<TunnelOptions>,
) -> Vec<Target> {
    let Some(want) = want else {
        return Vec::new();
    };
    let proto: Arc<str> = Arc::from(proto);
    st.labeled
        .iter()
        .filter(|(_, t)| carries(&t.labels, want))
        .filter_map(|((k, id), _)| {
            st.sessions.get(k).map(|s| Target {
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
fn l4_endpoint(st: &State, name: String, edge: &Arc<CompiledL4Edge>, kind: EdgeType) -> Endpoint {
    let (proto, terminated_at_edge) = match kind {
        EdgeType::Tls => ("tls", edge.terminate_at_edge),
        _ => ("tcp", false),
    };
    let opts = TunnelOptions {
        terminated_at_edge,
        edge_type: kind,
        client_tls: client_tls_of(st, &edge.client_tls),
        ..TunnelOptions::default()
    };
    let targets = labeled_targets(st, edge.backend_labels.as_ref(), proto, Arc::new(opts));
    Endpoint::for_l4_edge(name, targets, edge.clone())
}

/// The built policy for `spec`; `None` for the default handshake.
fn client_tls_of(st: &State, spec: &ClientTlsSpec) -> Option<Arc<ClientTls>> {
    if spec.is_default() {
        return None;
    }
    st.client_tls.get(spec).cloned()
}

/// Binds `ip:port` now, so "in use" is known at bind time, not later.
fn bind_port(ip: IpAddr, port: u16) -> Option<std::net::TcpListener> {
    let l = std::net::TcpListener::bind(SocketAddr::new(ip, port)).ok()?;
    l.set_nonblocking(true).ok()?;
    Some(l)
}

#[cfg(test)]
mod tests {
    use super::*;
    use gangway_proto::{Role, SessionConfig};

    fn session() -> Session {
        let (a, _b) = tokio::io::duplex(1024);
        // Keep the far end alive for the test's duration by leaking it.
        std::mem::forget(_b);
        gangway_proto::start(a, SessionConfig::new(Role::Server)).0
    }

    fn targets(r: &Registry, host: &str) -> Option<usize> {
        r.table()
            .lookup(host, Scheme::Https)
            .map(|e| e.targets.len())
    }

    #[tokio::test]
    async fn bind_conflicts_unless_both_pool() {
        let r = Registry::new();
        let (a, b) = (r.add_session(session()), r.add_session(session()));
        r.bind(a, "tn_a", "https", "x.example", false, Arc::default())
            .unwrap();
        assert_eq!(
            r.bind(b, "tn_b", "https", "x.example", false, Arc::default()),
            Err(BindError::InUse("x.example".into()))
        );
        assert_eq!(targets(&r, "x.example"), Some(1));

        r.bind(a, "tn_p1", "https", "p.example", true, Arc::default())
            .unwrap();
        r.bind(b, "tn_p2", "https", "p.example", true, Arc::default())
            .unwrap();
        assert_eq!(targets(&r, "p.example"), Some(2));
    }

    #[tokio::test]
    async fn tunnel_and_session_records_follow_their_session() {
        let r = Registry::new();
        let a = r.add_session(session());
        let info = SessionInfo {
            metadata: "team=edge".into(),
            ..SessionInfo::default()
        };
        r.set_session_info(a, info.clone());
        let tunnel = |id: &str| TunnelInfo {
            session: a,
            id: id.into(),
            url: format!("https://{id}.example"),
            proto: "https".into(),
            forwards_to: "http://localhost:8080".into(),
            metadata: format!("{{\"id\":\"{id}\"}}"),
            labels: BTreeMap::new(),
            bindings: Vec::new(),
            started_at_ms: 1,
        };
        r.record_tunnel(tunnel("t1"));
        r.record_tunnel(tunnel("t2"));
        assert_eq!(r.session_info(a), Some(info));
        assert_eq!(r.tunnels(), vec![tunnel("t1"), tunnel("t2")]);
        r.bind(a, "t2", "https", "t2.example", false, Arc::default())
            .unwrap();
        assert!(r.unbind(a, "t2"));
        assert_eq!(r.tunnels(), vec![tunnel("t1")]);
        r.remove_session(a);
        assert!(r.tunnels().is_empty());
        assert_eq!(r.session_info(a), None);
    }

    #[tokio::test]
    async fn a_name_is_either_https_or_tls() {
        let r = Registry::new();
        let (a, b) = (r.add_session(session()), r.add_session(session()));
        r.bind(a, "tn_h", "https", "both.example", false, Arc::default())
            .unwrap();
        assert_eq!(
            r.bind(b, "tn_t", "tls", "both.example", true, Arc::default()),
            Err(BindError::InUse("both.example".into()))
        );
        // Plain HTTP has its own port: no conflict.
        r.bind(b, "tn_p", "http", "both.example", false, Arc::default())
            .unwrap();
        r.bind(b, "tn_t2", "tls", "raw.example", false, Arc::default())
            .unwrap();
        assert!(matches!(
            r.table().route_tls("raw.example"),
            crate::route_table::TlsRoute::Tunnel(_)
        ));
    }

    #[tokio::test]
    async fn rebinding_a_tunnel_id_replaces_the_old_binding() {
        let r = Registry::new();
        let old = r.add_session(session());
        r.bind(old, "tn_same", "https", "y.example", false, Arc::default())
            .unwrap();
        // The agent reconnected before the edge noticed the old session die.
        let new = r.add_session(session());
        r.bind(new, "tn_same", "https", "y.example", false, Arc::default())
            .unwrap();
        assert_eq!(targets(&r, "y.example"), Some(1));
    }

    #[tokio::test]
    async fn closed_session_leaves_endpoint_offline_and_unbind_removes_it() {
        let r = Registry::new();
        let a = r.add_session(session());
        r.bind(a, "tn_1", "https", "gone.example", false, Arc::default())
            .unwrap();
        r.bind(a, "tn_2", "https", "bye.example", false, Arc::default())
            .unwrap();
        assert!(r.unbind(a, "tn_2"));
        assert!(!r.unbind(a, "tn_2"), "second unbind finds nothing");
        assert_eq!(targets(&r, "bye.example"), None);

        r.remove_session(a);
        assert_eq!(targets(&r, "gone.example"), Some(0), "offline, not unknown");
        assert_eq!(r.session_count(), 0);
        assert_eq!(
            r.bind(a, "tn_3", "https", "z.example", false, Arc::default()),
            Err(BindError::SessionGone)
        );

        // Another agent may take the offline name.
        let b = r.add_session(session());
        r.bind(b, "tn_9", "https", "gone.example", false, Arc::default())
            .unwrap();
        assert_eq!(targets(&r, "gone.example"), Some(1));
    }
}
