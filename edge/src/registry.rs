//! Live agent sessions, the control plane's config, and the route table
//! built from both. Each change takes the state lock, changes the pure
//! [`Bindings`], rebuilds the table ([`table_builder`]) and swaps it in, so
//! the data path reads a consistent snapshot without locking. TCP
//! listeners ([`TcpListeners`]) are bound and dropped outside that lock.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::ops::RangeInclusive;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use arc_swap::ArcSwap;
use gangway_config::control::ControlConfig;
use gangway_proto::Session;

pub use crate::bindings::{
    now_ms, BindError, SessionInfo, SessionKey, TunnelInfo, OFFLINE_ENDPOINT_TTL,
};
use crate::bindings::{Bindings, BoundTunnel, TcpPlan};
use crate::certs::CertSet;
use crate::events::{EventSink, Events};
use crate::route_table::{RouteTable, TunnelOptions};
use crate::table_builder::{self, Compiled};
use crate::tcp_ports::{Held, TcpListeners};

#[derive(Default)]
struct State {
    bindings: Bindings,
    compiled: Compiled,
}

/// Sessions, endpoints and the current route table.
pub struct Registry {
    state: Mutex<State>,
    table: Arc<ArcSwap<RouteTable>>,
    /// What the control plane configured; swapped whole on every change.
    control: ArcSwap<ControlConfig>,
    next_key: AtomicU64,
    /// The listeners of TCP endpoints' and TCP edges' ports.
    listeners: TcpListeners,
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

    /// A registry whose TCP endpoints and edges listen on `tcp_ip`.
    pub fn with_tcp_ip(tcp_ip: IpAddr) -> Self {
        let table = Arc::new(ArcSwap::from_pointee(RouteTable::default()));
        let events = Events::default();
        Registry {
            state: Mutex::new(State::default()),
            listeners: TcpListeners::new(tcp_ip, table.clone(), events.clone()),
            table,
            control: ArcSwap::from_pointee(ControlConfig::default()),
            next_key: AtomicU64::new(1),
            events,
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

    /// The swappable table itself, for listeners that load it per
    /// connection (the TLS certificate callback).
    pub fn table_handle(&self) -> Arc<ArcSwap<RouteTable>> {
        self.table.clone()
    }

    /// The control plane's current config.
    pub fn control(&self) -> Arc<ControlConfig> {
        self.control.load_full()
    }

    /// Rebuilds and swaps the table, then brings the TCP listeners in line
    /// (outside the state lock; `held` keeps other changes from racing).
    fn commit(&self, mut st: MutexGuard<'_, State>, mut held: Held<'_>) {
        let control = self.control.load();
        st.bindings.expire(Instant::now());
        let table = table_builder::build(&control, &st.bindings, &st.compiled);
        let wanted = st.bindings.wanted_ports(&control);
        self.table.store(Arc::new(table));
        drop(st);
        held.reconcile(&wanted);
    }

    /// Serves `certs` (the file certificates; the default first) on the
    /// TLS listeners, with the control plane's stored certificates.
    pub fn set_base_certs(&self, certs: CertSet) {
        let held = self.listeners.hold();
        let mut st = self.lock();
        st.compiled.set_base_certs(certs);
        self.commit(st, held);
    }

    /// Applies a new control-plane config: edges, their routes and the
    /// stored certificates change at once, live sessions stay.
    pub fn set_control(&self, control: Arc<ControlConfig>) {
        let held = self.listeners.hold();
        let mut st = self.lock();
        st.compiled.update(&control);
        self.control.store(control);
        self.commit(st, held);
    }

    /// Starts a labeled tunnel: it serves every edge (or edge route) whose
    /// backend's labels it carries, speaking that edge's protocol.
    pub fn bind_labeled(
        &self,
        key: SessionKey,
        tunnel_id: &str,
        labels: BTreeMap<String, String>,
    ) -> Result<(), BindError> {
        let held = self.listeners.hold();
        let mut st = self.lock();
        st.bindings.bind_labeled(key, tunnel_id, labels)?;
        self.commit(st, held);
        Ok(())
    }

    /// Ids of live labeled tunnels carrying every one of `labels`.
    pub fn tunnels_with_labels(&self, labels: &BTreeMap<String, String>) -> Vec<String> {
        self.lock().bindings.tunnels_with_labels(labels)
    }

    pub fn add_session(&self, session: Session) -> SessionKey {
        let key = self.next_key.fetch_add(1, Ordering::Relaxed);
        self.lock().bindings.add_session(key, session);
        key
    }

    /// Binds `hostname` to a tunnel of session `key` (see
    /// [`Bindings::bind`]).
    pub fn bind(
        &self,
        key: SessionKey,
        tunnel_id: &str,
        proto: &str,
        hostname: &str,
        pooling: bool,
        options: Arc<TunnelOptions>,
    ) -> Result<(), BindError> {
        let held = self.listeners.hold();
        let mut st = self.lock();
        let control = self.control.load();
        let tunnel = BoundTunnel::new(key, tunnel_id, proto, pooling, options);
        st.bindings.bind(hostname, tunnel, &control)?;
        self.commit(st, held);
        Ok(())
    }

    /// Removes one tunnel; returns whether it was bound.
    pub fn unbind(&self, key: SessionKey, tunnel_id: &str) -> bool {
        let held = self.listeners.hold();
        let mut st = self.lock();
        let found = st.bindings.unbind(key, tunnel_id);
        if found {
            self.commit(st, held);
        }
        found
    }

    /// Forgets a closed session. Its endpoints stay, offline, for
    /// [`OFFLINE_ENDPOINT_TTL`] unless another tunnel still serves them.
    pub fn remove_session(&self, key: SessionKey) {
        let held = self.listeners.hold();
        let mut st = self.lock();
        if st.bindings.remove_session(key, Instant::now()) {
            self.commit(st, held);
        }
    }

    /// Records what a session's agent reported at Auth.
    pub fn set_session_info(&self, key: SessionKey, info: SessionInfo) {
        self.lock().bindings.set_session_info(key, info);
    }

    pub fn session_info(&self, key: SessionKey) -> Option<SessionInfo> {
        self.lock().bindings.session_info.get(&key).cloned()
    }

    /// Every authenticated live session.
    pub fn sessions(&self) -> Vec<(SessionKey, SessionInfo)> {
        let st = self.lock();
        st.bindings
            .session_info
            .iter()
            .map(|(k, i)| (*k, i.clone()))
            .collect()
    }

    /// The session an agent knows as `client_id`.
    pub fn session_by_client_id(&self, client_id: &str) -> Option<Session> {
        self.lock().bindings.session_by_client_id(client_id)
    }

    /// Records a tunnel that was just bound (replacing its earlier record).
    pub fn record_tunnel(&self, info: TunnelInfo) {
        self.lock().bindings.record_tunnel(info);
    }

    /// Every bound tunnel of live sessions, by session then tunnel id.
    pub fn tunnels(&self) -> Vec<TunnelInfo> {
        self.lock().bindings.tunnel_info.values().cloned().collect()
    }

    pub fn session_count(&self) -> usize {
        self.lock().bindings.sessions.len()
    }

    /// Binds a TCP tunnel: on `requested` if given (it must be in `range`
    /// and free), else on a free port of the range. A rebind of a known
    /// tunnel id gets its old port back. Returns the port.
    pub fn bind_tcp(
        &self,
        key: SessionKey,
        tunnel_id: &str,
        requested: Option<u16>,
        range: &RangeInclusive<u16>,
        pooling: bool,
        options: Arc<TunnelOptions>,
    ) -> Result<u16, BindError> {
        let mut held = self.listeners.hold();
        let control = self.control.load_full();
        let plan = {
            let st = self.lock();
            st.bindings
                .tcp_plan(key, tunnel_id, requested, range, &control)?
        };
        // The socket is bound here, with the state unlocked.
        let port = match plan {
            TcpPlan::Port(port) => {
                if !held.listen(port) {
                    return Err(BindError::PortInUse(port));
                }
                port
            }
            TcpPlan::AnyFree { taken } => held
                .listen_on_free(range, &taken, |p| control.is_reserved_port(p))
                .ok_or(BindError::PortsExhausted {
                    first: *range.start(),
                    last: *range.end(),
                })?,
        };
        let mut st = self.lock();
        let tunnel = BoundTunnel::new(key, tunnel_id, "tcp", pooling, options);
        let bound = st.bindings.bind_tcp(port, tunnel);
        // Committed either way: a listener bound for a refused bind goes.
        self.commit(st, held);
        bound.map(|()| port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route_table::Scheme;
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
