//! Who is connected and what they bound: agent sessions, their named,
//! labeled and TCP endpoints, and the rules a bind must pass (pooling,
//! one name per port, names owned by API edges). Pure state: no sockets,
//! no tasks, no clock but the one passed in. The [`crate::registry`]
//! wraps it with a lock, builds route tables from it, and keeps the TCP
//! listeners it asks for.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::ops::RangeInclusive;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gangway_config::control::ControlConfig;
use gangway_proto::Session;

use crate::route_table::{Scheme, TunnelOptions};

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

/// One tunnel serving an endpoint.
#[derive(Debug, Clone)]
pub struct BoundTunnel {
    pub session: SessionKey,
    pub tunnel_id: Arc<str>,
    pub proto: Arc<str>,
    pub pooling: bool,
    pub options: Arc<TunnelOptions>,
}

impl BoundTunnel {
    pub fn new(
        session: SessionKey,
        tunnel_id: &str,
        proto: &str,
        pooling: bool,
        options: Arc<TunnelOptions>,
    ) -> Self {
        BoundTunnel {
            session,
            tunnel_id: Arc::from(tunnel_id),
            proto: Arc::from(proto),
            pooling,
            options,
        }
    }
}

/// An endpoint's tunnels; an endpoint whose last tunnel's session died
/// stays, offline, for [`OFFLINE_ENDPOINT_TTL`].
#[derive(Debug, Default)]
pub struct EndpointState {
    pub tunnels: Vec<BoundTunnel>,
    pub offline_since: Option<Instant>,
}

impl EndpointState {
    /// Drops `tunnel_id`'s binding (a rebind replaces it) and those of
    /// sessions that are gone, then refuses a second binder unless both
    /// pool.
    fn admit(
        &mut self,
        tunnel_id: &str,
        pooling: bool,
        live: &HashMap<SessionKey, Session>,
    ) -> bool {
        self.tunnels
            .retain(|t| &*t.tunnel_id != tunnel_id && live.contains_key(&t.session));
        self.tunnels
            .first()
            .is_none_or(|other| pooling && other.pooling)
    }
}

/// A tunnel started with labels, waiting for edges whose backend selects them.
#[derive(Debug)]
pub struct LabeledTunnel {
    pub labels: BTreeMap<String, String>,
}

/// Whether a tunnel's labels include every wanted label.
pub fn carries(have: &BTreeMap<String, String>, want: &BTreeMap<String, String>) -> bool {
    !want.is_empty() && want.iter().all(|(k, v)| have.get(k) == Some(v))
}

/// Where a TCP bind goes, before any socket is bound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TcpPlan {
    /// This port: asked for, or the tunnel's port before a reconnect.
    Port(u16),
    /// Any free port of the range except these (bound or reserved).
    AnyFree { taken: BTreeSet<u16> },
}

/// Sessions and what they bound.
#[derive(Default)]
pub struct Bindings {
    pub sessions: HashMap<SessionKey, Session>,
    pub labeled: BTreeMap<(SessionKey, Arc<str>), LabeledTunnel>,
    pub session_info: HashMap<SessionKey, SessionInfo>,
    pub tunnel_info: BTreeMap<(SessionKey, String), TunnelInfo>,
    pub endpoints: BTreeMap<(Scheme, String), EndpointState>,
    /// TCP endpoints by port.
    pub tcp: BTreeMap<u16, EndpointState>,
}

impl Bindings {
    pub fn add_session(&mut self, key: SessionKey, session: Session) {
        self.sessions.insert(key, session);
    }

    fn live(&self, key: SessionKey) -> Result<(), BindError> {
        if self.sessions.contains_key(&key) {
            Ok(())
        } else {
            Err(BindError::SessionGone)
        }
    }

    /// Starts a labeled tunnel (a tunnel id of another session moves here).
    pub fn bind_labeled(
        &mut self,
        key: SessionKey,
        tunnel_id: &str,
        labels: BTreeMap<String, String>,
    ) -> Result<(), BindError> {
        self.live(key)?;
        self.labeled.retain(|(_, id), _| &**id != tunnel_id);
        self.labeled
            .insert((key, Arc::from(tunnel_id)), LabeledTunnel { labels });
        Ok(())
    }

    /// Ids of live labeled tunnels carrying every one of `labels`.
    pub fn tunnels_with_labels(&self, labels: &BTreeMap<String, String>) -> Vec<String> {
        self.labeled
            .iter()
            .filter(|(_, t)| carries(&t.labels, labels))
            .map(|((_, id), _)| id.to_string())
            .collect()
    }

    /// Binds `hostname` to a tunnel of session `key`. A bind with the tunnel
    /// id of an existing binding replaces it: that is an agent reconnecting
    /// before the edge noticed its old session die.
    pub fn bind(
        &mut self,
        hostname: &str,
        tunnel: BoundTunnel,
        control: &ControlConfig,
    ) -> Result<(), BindError> {
        self.live(tunnel.session)?;
        let scheme = Scheme::from_proto(&tunnel.proto);
        if scheme != Scheme::Http {
            if let Some(edge) = control.edge_owning(hostname) {
                return Err(BindError::EdgeOwned {
                    host: hostname.to_string(),
                    edge: edge.to_string(),
                });
            }
        }
        // HTTPS and TLS endpoints answer on one port: a name is one or the other.
        if let Some(sibling) = scheme.port_sibling() {
            let taken = self
                .endpoints
                .get(&(sibling, hostname.to_string()))
                .is_some_and(|ep| {
                    ep.tunnels
                        .iter()
                        .any(|t| self.sessions.contains_key(&t.session))
                });
            if taken {
                return Err(BindError::InUse(hostname.to_string()));
            }
        }
        let ep = self
            .endpoints
            .entry((scheme, hostname.to_string()))
            .or_default();
        if !ep.admit(&tunnel.tunnel_id, tunnel.pooling, &self.sessions) {
            return Err(BindError::InUse(hostname.to_string()));
        }
        ep.tunnels.push(tunnel);
        ep.offline_since = None;
        Ok(())
    }

    /// Where a TCP bind of `tunnel_id` goes: the requested port (which
    /// must be in the range and not an edge's), else the port this tunnel
    /// id had (a reconnect), else any free one.
    pub fn tcp_plan(
        &self,
        key: SessionKey,
        tunnel_id: &str,
        requested: Option<u16>,
        range: &RangeInclusive<u16>,
        control: &ControlConfig,
    ) -> Result<TcpPlan, BindError> {
        self.live(key)?;
        if let Some(port) = requested {
            if !range.contains(&port) {
                return Err(BindError::PortOutOfRange {
                    port,
                    first: *range.start(),
                    last: *range.end(),
                });
            }
            if let Some(edge) = control.tcp_edge(port) {
                return Err(BindError::EdgeOwned {
                    host: format!("port {port}"),
                    edge: edge.id.clone(),
                });
            }
            return Ok(TcpPlan::Port(port));
        }
        let previous = self
            .tcp
            .iter()
            .find(|(_, ep)| ep.tunnels.iter().any(|b| &*b.tunnel_id == tunnel_id))
            .map(|(p, _)| *p);
        Ok(match previous {
            Some(port) => TcpPlan::Port(port),
            None => TcpPlan::AnyFree {
                taken: self
                    .tcp
                    .keys()
                    .copied()
                    .chain(control.tcp_edges().map(|(p, _)| *p))
                    .filter(|p| range.contains(p))
                    .collect(),
            },
        })
    }

    /// Binds a TCP tunnel to `port`, whose listener is up.
    pub fn bind_tcp(&mut self, port: u16, tunnel: BoundTunnel) -> Result<(), BindError> {
        self.live(tunnel.session)?;
        let ep = self.tcp.entry(port).or_default();
        if !ep.admit(&tunnel.tunnel_id, tunnel.pooling, &self.sessions) {
            return Err(BindError::PortInUse(port));
        }
        ep.tunnels.push(tunnel);
        ep.offline_since = None;
        Ok(())
    }

    /// Removes one tunnel; an endpoint left without tunnels is gone (404),
    /// since the agent said so explicitly. Returns whether it was bound.
    pub fn unbind(&mut self, key: SessionKey, tunnel_id: &str) -> bool {
        self.tunnel_info.remove(&(key, tunnel_id.to_string()));
        let mut found = self.labeled.remove(&(key, Arc::from(tunnel_id))).is_some();
        let mut drop_tunnel = |ep: &mut EndpointState| {
            let before = ep.tunnels.len();
            ep.tunnels
                .retain(|t| !(t.session == key && &*t.tunnel_id == tunnel_id));
            found |= ep.tunnels.len() != before;
            !(ep.tunnels.is_empty() && before != 0)
        };
        self.endpoints.retain(|_, ep| drop_tunnel(ep));
        self.tcp.retain(|_, ep| drop_tunnel(ep));
        found
    }

    /// Forgets a closed session. Its endpoints stay, offline since `now`,
    /// unless another tunnel still serves them. False if it was unknown.
    pub fn remove_session(&mut self, key: SessionKey, now: Instant) -> bool {
        if self.sessions.remove(&key).is_none() {
            return false;
        }
        self.session_info.remove(&key);
        self.tunnel_info.retain(|(k, _), _| *k != key);
        self.labeled.retain(|(k, _), _| *k != key);
        for ep in self.endpoints.values_mut().chain(self.tcp.values_mut()) {
            let before = ep.tunnels.len();
            ep.tunnels.retain(|t| t.session != key);
            if before != 0 && ep.tunnels.is_empty() {
                ep.offline_since = Some(now);
            }
        }
        true
    }

    /// Drops endpoints offline for longer than [`OFFLINE_ENDPOINT_TTL`].
    pub fn expire(&mut self, now: Instant) {
        let fresh = |ep: &EndpointState| match ep.offline_since {
            Some(t) => now.duration_since(t) < OFFLINE_ENDPOINT_TTL,
            None => true,
        };
        self.endpoints.retain(|_, ep| fresh(ep));
        self.tcp.retain(|_, ep| fresh(ep));
    }

    /// Records what a session's agent reported at Auth.
    pub fn set_session_info(&mut self, key: SessionKey, info: SessionInfo) {
        if self.sessions.contains_key(&key) {
            self.session_info.insert(key, info);
        }
    }

    /// Records a tunnel that was just bound (replacing its earlier record).
    pub fn record_tunnel(&mut self, info: TunnelInfo) {
        if self.sessions.contains_key(&info.session) {
            self.tunnel_info
                .insert((info.session, info.id.clone()), info);
        }
    }

    /// The session an agent knows as `client_id` (the newest, when a
    /// reconnect overlaps the old session's last moments).
    pub fn session_by_client_id(&self, client_id: &str) -> Option<Session> {
        self.session_info
            .iter()
            .filter(|(_, i)| i.client_id == client_id)
            .max_by_key(|(k, _)| **k)
            .and_then(|(k, _)| self.sessions.get(k).cloned())
    }

    /// The ports TCP listeners must serve: bound TCP endpoints (online or
    /// offline) and TCP edges.
    pub fn wanted_ports(&self, control: &ControlConfig) -> BTreeSet<u16> {
        self.tcp
            .keys()
            .copied()
            .chain(control.tcp_edges().map(|(p, _)| *p))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gangway_proto::{Role, SessionConfig};

    fn session() -> Session {
        let (a, far) = tokio::io::duplex(1024);
        // The far end lives as long as the test.
        std::mem::forget(far);
        gangway_proto::start(a, SessionConfig::new(Role::Server)).0
    }

    #[tokio::test]
    async fn tcp_binds_plan_their_port_without_sockets() {
        let control = ControlConfig::default();
        let range = 20000..=20009;
        let mut b = Bindings::default();
        b.add_session(1, session());
        assert_eq!(
            b.tcp_plan(1, "tn_1", Some(30000), &range, &control),
            Err(BindError::PortOutOfRange {
                port: 30000,
                first: 20000,
                last: 20009
            })
        );
        assert_eq!(
            b.tcp_plan(9, "tn_1", None, &range, &control),
            Err(BindError::SessionGone)
        );
        let tcp = |id: &str| BoundTunnel::new(1, id, "tcp", false, Arc::default());
        b.bind_tcp(20003, tcp("tn_1")).expect("bind");
        // A reconnect of the same tunnel id gets its port back.
        assert_eq!(
            b.tcp_plan(1, "tn_1", None, &range, &control),
            Ok(TcpPlan::Port(20003))
        );
        assert_eq!(
            b.tcp_plan(1, "tn_2", None, &range, &control),
            Ok(TcpPlan::AnyFree {
                taken: [20003].into()
            })
        );
        assert_eq!(
            b.bind_tcp(20003, tcp("tn_2")),
            Err(BindError::PortInUse(20003))
        );
        assert_eq!(b.wanted_ports(&control), [20003].into());
    }

    #[tokio::test]
    async fn offline_endpoints_expire_after_their_ttl() {
        let control = ControlConfig::default();
        let mut b = Bindings::default();
        b.add_session(1, session());
        let tunnel = BoundTunnel::new(1, "tn_1", "https", false, Arc::default());
        b.bind("x.example", tunnel, &control).expect("bind");
        let t0 = Instant::now();
        assert!(b.remove_session(1, t0));
        assert!(!b.remove_session(1, t0), "once");
        b.expire(t0 + OFFLINE_ENDPOINT_TTL / 2);
        assert_eq!(b.endpoints.len(), 1, "offline, still known");
        b.expire(t0 + OFFLINE_ENDPOINT_TTL);
        assert!(b.endpoints.is_empty());
    }
}
