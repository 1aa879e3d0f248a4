//! The agent's session loop: dial, authenticate, bind, serve streams; on a
//! lost session back off (capped, exponential) and do it again with the
//! same client id and tunnel ids, so URLs survive reconnects.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use boring::ssl::SslConnector;
use gangway_config::proxy_url::ProxyUrl;
use gangway_proto::heartbeat;
use gangway_proto::msg::{self, Auth, AuthExtra, AuthResp, Bind, BindExtra, BindResp, CommandResp};
use gangway_proto::rpc::{self, RpcError};
use gangway_proto::{ErrorCode, Role, Session, SessionConfig, Stream};
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::dial::{self, DialError};
use crate::forward::{proxy_stream, Routes, TunnelRoute};
use crate::http_forward::HttpForwarder;
use crate::inspect::Inspector;
use crate::metrics::TunnelMetrics;
use crate::state::{AgentState, Control, ControlError, SessionStatus, TunnelInfo};
use crate::tunnels::{twin_name, TunnelSpec};

/// First retry delay after a lost session.
pub const INITIAL_BACKOFF: Duration = Duration::from_millis(250);
/// Retry delays double up to this.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How long to wait for Unbind replies when shutting down.
const UNBIND_TIMEOUT: Duration = Duration::from_secs(2);

/// How to reach the edge and what to bind.
#[derive(Clone)]
pub struct AgentOptions {
    /// `host:port` of the edge's agent listener.
    pub server_addr: String,
    pub authtoken: String,
    /// PEM CA to trust for the edge (and an HTTPS proxy); the system roots
    /// when `None`.
    pub ca_pem: Option<Vec<u8>>,
    /// The outbound proxy to reach the edge through, if any.
    pub proxy: Option<ProxyUrl>,
    pub tunnels: Vec<TunnelSpec>,
    pub heartbeat_interval: Duration,
    pub heartbeat_tolerance: Duration,
    /// Opaque user metadata the edge keeps with the session.
    pub metadata: String,
    /// Shared with the local views (web UI, agent API, console); when
    /// `None`, a fresh one with inspection off.
    pub state: Option<Arc<AgentState>>,
}

/// Things a user wants to see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentEvent {
    /// A tunnel is bound (again, after a reconnect, with `rebound`).
    Bound {
        url: String,
        upstream: String,
        rebound: bool,
    },
    /// The session was lost; retrying after `delay`.
    Reconnecting { delay: Duration, reason: String },
    /// The edge accepted the session (first time only) and said which
    /// region it serves.
    Online { region: String },
}

/// Why the agent stopped for good.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The edge refused us (bad authtoken, domain taken, ...): retrying
    /// would not help. Carries the edge's message with its `ERR_` code.
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Dial(#[from] DialError),
}

impl AgentError {
    /// The `ERR_NGROK_...` code, when the edge gave one.
    pub fn code(&self) -> Option<&str> {
        match self {
            AgentError::Refused(s) => msg::error_code(s),
            AgentError::Dial(_) => None,
        }
    }
}

/// What a session attempt ended with.
enum Ended {
    Shutdown,
    Lost(String),
}

/// A tunnel of this agent and what it got from the edge.
struct Slot {
    spec: TunnelSpec,
    /// Empty until first bound; reused on rebinds.
    id: String,
    url: String,
    metrics: Arc<TunnelMetrics>,
}

/// State kept across reconnects. Stopped tunnels leave `None`, so that
/// `same_host_as` indexes stay valid.
struct Memory {
    client_id: String,
    slots: Vec<Option<Slot>>,
}

impl Memory {
    fn find(&self, name: &str) -> Option<usize> {
        self.slots
            .iter()
            .position(|s| s.as_ref().is_some_and(|s| s.spec.name == name))
    }

    /// `name`, or `name (2)`, ... when taken.
    fn free_name(&self, name: &str) -> String {
        let mut candidate = name.to_string();
        let mut n = 1;
        while self.find(&candidate).is_some() {
            n += 1;
            candidate = format!("{name} ({n})");
        }
        candidate
    }
}

/// The name ngrok gives command-line tunnels.
const COMMAND_LINE: &str = "command_line";

/// Runs until `shutdown` is cancelled (then unbinds and closes) or the edge
/// refuses us. Transient failures (edge down, session lost) are retried.
pub async fn run(
    opts: AgentOptions,
    events: mpsc::UnboundedSender<AgentEvent>,
    shutdown: CancellationToken,
) -> Result<(), AgentError> {
    let connector = dial::edge_connector(opts.ca_pem.as_deref())?;
    let upstream_tls = Arc::new(dial::insecure_connector()?);
    let http = Arc::new(HttpForwarder::new(upstream_tls.clone()));
    // Without views nobody could look at captures: inspection is off
    // (a store of size 0), so an embedding program or the session
    // simulator holds no bodies.
    let state = opts
        .state
        .clone()
        .unwrap_or_else(|| AgentState::new(Inspector::new(0, 0), &opts.server_addr));
    state.set_forwarder(http.clone());
    // A second run on the same state gets no control channel: keep a
    // sender so that its receiver just stays empty.
    let (_unused, spare) = mpsc::unbounded_channel();
    let mut control = state.take_control().unwrap_or(spare);
    let mut mem = Memory {
        client_id: String::new(),
        slots: Vec::with_capacity(opts.tunnels.len()),
    };
    for t in &opts.tunnels {
        let mut spec = t.clone();
        let wanted = if spec.name.is_empty() {
            match spec.same_host_as {
                Some(_) => twin_name(COMMAND_LINE, &spec.proto),
                None => COMMAND_LINE.to_string(),
            }
        } else {
            spec.name.clone()
        };
        spec.name = mem.free_name(&wanted);
        mem.slots.push(Some(Slot {
            spec,
            id: String::new(),
            url: String::new(),
            metrics: Arc::default(),
        }));
    }
    let ctx = SessionCtx {
        opts: &opts,
        connector: &connector,
        upstream_tls: &upstream_tls,
        http: &http,
        state: &state,
        events: &events,
        shutdown: &shutdown,
    };
    let mut backoff = INITIAL_BACKOFF;
    loop {
        // session_once watches `shutdown` itself so that it can unbind.
        let attempt = session_once(&ctx, &mut mem, &mut control).await;
        let reason = match attempt {
            Ok(Ended::Shutdown) => return Ok(()),
            Ok(Ended::Lost(reason)) => {
                // The session was up: start the backoff over.
                backoff = INITIAL_BACKOFF;
                reason
            }
            Err(Attempt::Fatal(e)) => return Err(e),
            Err(Attempt::Retry(reason)) => reason,
        };
        warn!(%reason, delay = ?backoff, "session lost; reconnecting");
        state.update_session(|s| {
            s.status = SessionStatus::Reconnecting;
            s.last_error = reason.clone();
        });
        let _ = events.send(AgentEvent::Reconnecting {
            delay: backoff,
            reason,
        });
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = shutdown.cancelled() => return Ok(()),
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

enum Attempt {
    Fatal(AgentError),
    Retry(String),
}

fn rpc_failure(what: &str, e: RpcError) -> Attempt {
    match e {
        RpcError::Remote(text) => Attempt::Fatal(AgentError::Refused(text)),
        other => Attempt::Retry(format!("{what}: {other}")),
    }
}

/// What every session attempt shares.
struct SessionCtx<'a> {
    opts: &'a AgentOptions,
    connector: &'a SslConnector,
    upstream_tls: &'a Arc<SslConnector>,
    http: &'a Arc<HttpForwarder>,
    state: &'a Arc<AgentState>,
    events: &'a mpsc::UnboundedSender<AgentEvent>,
    shutdown: &'a CancellationToken,
}

async fn session_once(
    ctx: &SessionCtx<'_>,
    mem: &mut Memory,
    control: &mut mpsc::UnboundedReceiver<Control>,
) -> Result<Ended, Attempt> {
    let (opts, shutdown, events) = (ctx.opts, ctx.shutdown, ctx.events);
    let dial = dial::dial_edge(ctx.connector, &opts.server_addr, opts.proxy.as_ref());
    let tls = tokio::select! {
        r = dial => r,
        _ = shutdown.cancelled() => return Ok(Ended::Shutdown),
    };
    let tls = tls.map_err(|e| match e {
        // A CA or setup problem will not fix itself.
        DialError::BadCa(_) | DialError::Setup(_) => Attempt::Fatal(e.into()),
        other => Attempt::Retry(other.to_string()),
    })?;
    let (session, acceptor) = gangway_proto::start(tls, SessionConfig::new(Role::Client));
    let _close_on_exit = CloseGuard(session.clone());

    let hb_session = session.clone();
    let (interval, tolerance) = (opts.heartbeat_interval, opts.heartbeat_tolerance);
    tokio::spawn(async move {
        let r = heartbeat::run_client(&hb_session, interval, tolerance, |rtt| {
            debug!(?rtt, "heartbeat")
        })
        .await;
        if let Err(e) = r {
            info!(error = %e, "heartbeat failed; dropping session");
            hb_session.close(ErrorCode::NONE, "heartbeat timeout");
        }
    });

    let auth = Auth {
        version: vec!["3".into(), "2".into()],
        client_id: mem.client_id.clone(),
        extra: AuthExtra {
            os: std::env::consts::OS.into(),
            arch: std::env::consts::ARCH.into(),
            auth_token: opts.authtoken.clone(),
            version: env!("CARGO_PKG_VERSION").into(),
            user_agent: format!("gangway/{}", env!("CARGO_PKG_VERSION")),
            heartbeat_interval: opts.heartbeat_interval.as_nanos() as i64,
            heartbeat_tolerance: opts.heartbeat_tolerance.as_nanos() as i64,
            client_type: "gangway".into(),
            metadata: opts.metadata.clone(),
            ..Default::default()
        },
    };
    let resp: AuthResp = tokio::select! {
        r = rpc::call(&session, msg::AUTH, &auth) => r.map_err(|e| rpc_failure("auth", e))?,
        _ = shutdown.cancelled() => return Ok(Ended::Shutdown),
    };
    if mem.client_id.is_empty() {
        let _ = events.send(AgentEvent::Online {
            region: resp.extra.region.clone(),
        });
    }
    mem.client_id = resp.client_id;
    ctx.state.update_session(|s| {
        s.status = SessionStatus::Online;
        s.region = resp.extra.region.clone();
        s.last_error.clear();
    });

    let routes: Routes = Arc::new(RwLock::new(HashMap::new()));
    let mut bound = Vec::with_capacity(mem.slots.len());
    for i in 0..mem.slots.len() {
        match bind_slot(ctx, &session, mem, i, &routes).await {
            Ok(Some(ev)) => bound.push(ev),
            Ok(None) => {}
            Err(e) => return Err(rpc_failure("bind", e)),
        }
    }
    publish(ctx.state, mem, &routes);
    // Report only once every tunnel is bound: a printed URL must work.
    for ev in bound {
        let _ = events.send(ev);
    }

    // Streams are accepted in their own task, so that a tunnel being
    // started or stopped through the API never stalls the traffic of the
    // others (a full accept queue resets new streams).
    let accepting = tokio::spawn(accept_streams(
        acceptor,
        routes.clone(),
        ctx.upstream_tls.clone(),
        ctx.http.clone(),
        session.clone(),
        shutdown.clone(),
    ));
    let _stop_accepting = AbortOnDrop(accepting.abort_handle());
    let mut accepting = accepting;
    loop {
        tokio::select! {
            _ = &mut accepting => {
                return Ok(Ended::Lost(
                    session.close_reason().map(|r| r.to_string()).unwrap_or_else(|| "session closed".into()),
                ))
            }
            Some(c) = control.recv() => {
                handle_control(ctx, &session, mem, &routes, c).await;
            }
            _ = shutdown.cancelled() => {
                let ids: Vec<String> = mem.slots.iter().flatten().map(|s| s.id.clone()).collect();
                unbind_all(&session, &ids).await;
                session.close(ErrorCode::NONE, "agent shutting down");
                return Ok(Ended::Shutdown);
            }
        }
    }
}

/// Serves every stream the edge opens until the session ends.
async fn accept_streams(
    mut acceptor: gangway_proto::Acceptor,
    routes: Routes,
    tls: Arc<SslConnector>,
    http: Arc<HttpForwarder>,
    session: Session,
    shutdown: CancellationToken,
) {
    while let Some(stream) = acceptor.accept().await {
        tokio::spawn(serve_stream(
            stream,
            routes.clone(),
            tls.clone(),
            http.clone(),
            session.clone(),
            shutdown.clone(),
        ));
    }
}

/// Stops a task when a session attempt ends for any reason.
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Binds (or rebinds) tunnel `i` and routes its streams. `None` for a
/// stopped slot.
async fn bind_slot(
    ctx: &SessionCtx<'_>,
    session: &Session,
    mem: &mut Memory,
    i: usize,
    routes: &Routes,
) -> Result<Option<AgentEvent>, RpcError> {
    let same_host = mem
        .slots
        .get(i)
        .and_then(|s| s.as_ref())
        .and_then(|s| s.spec.same_host_as)
        .and_then(|j| mem.slots.get(j))
        .and_then(|s| s.as_ref())
        .and_then(|s| url_host(&s.url));
    let Some(slot) = mem.slots.get_mut(i).and_then(|s| s.as_mut()) else {
        return Ok(None);
    };
    let t = &slot.spec;
    let mut spec = t.clone();
    if let Some(host) = same_host {
        spec.domain = Some(host);
    }
    let resp = if t.labels.is_empty() {
        let bind = Bind {
            id: slot.id.clone(),
            proto: t.proto.clone(),
            forwards_to: t.target(),
            forwards_proto: String::new(),
            opts: spec.bind_opts(),
            extra: BindExtra {
                pooling_enabled: t.pooling,
                metadata: t.metadata.clone(),
                ..BindExtra::default()
            },
        };
        rpc::call::<_, BindResp>(session, msg::BIND, &bind).await?
    } else {
        let req = msg::StartTunnelWithLabel {
            labels: t.labels.clone(),
            forwards_to: t.target(),
            forwards_proto: "http1".into(),
            metadata: t.metadata.clone(),
        };
        let r: msg::StartTunnelWithLabelResp =
            rpc::call(session, msg::START_TUNNEL_WITH_LABEL, &req).await?;
        let labels: Vec<String> = t.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        BindResp {
            url: format!("labeled tunnel {} ({})", r.id, labels.join(", ")),
            id: r.id,
            ..BindResp::default()
        }
    };
    let rebound = !slot.url.is_empty();
    slot.id = resp.id.clone();
    slot.url = resp.url.clone();
    routes
        .write()
        .unwrap_or_else(|p| p.into_inner())
        .insert(resp.id, route_of(ctx.state, slot));
    Ok(Some(AgentEvent::Bound {
        url: resp.url,
        upstream: slot.spec.target(),
        rebound,
    }))
}

fn route_of(state: &AgentState, slot: &Slot) -> TunnelRoute {
    let t = &slot.spec;
    TunnelRoute {
        name: t.name.clone(),
        upstream: t.upstream.clone(),
        http: t.is_http(),
        host_header: t.host_override(),
        serve_dir: t.serve_dir.clone(),
        terminate_tls: t.terminate_tls.clone(),
        // A store of size 0 (`inspect_db_size: -1`) means inspection off.
        inspector: (t.is_http() && t.inspect && state.inspector.limit_bytes() > 0)
            .then(|| state.inspector.clone()),
        metrics: slot.metrics.clone(),
        requests: state.requests.clone(),
    }
}

/// Tells the views which tunnels are bound now.
fn publish(state: &AgentState, mem: &Memory, routes: &Routes) {
    let routes = routes.read().unwrap_or_else(|p| p.into_inner());
    let infos = mem
        .slots
        .iter()
        .flatten()
        .filter_map(|s| {
            let route = routes.get(&s.id)?.clone();
            Some(TunnelInfo {
                name: s.spec.name.clone(),
                public_url: s.url.clone(),
                proto: s.spec.proto.clone(),
                addr: s.spec.target(),
                route,
            })
        })
        .collect();
    state.set_tunnels(infos);
}

/// Binds `specs` on the live session: all of them, or (after unbinding
/// the ones that made it) none.
async fn start_batch(
    ctx: &SessionCtx<'_>,
    session: &Session,
    mem: &mut Memory,
    routes: &Routes,
    mut specs: Vec<TunnelSpec>,
) -> Result<Vec<TunnelInfo>, ControlError> {
    let base = mem.slots.len();
    let mut names: Vec<String> = Vec::new();
    for spec in &mut specs {
        if spec.name.is_empty() {
            return Err(ControlError::Invalid("a tunnel needs a name".into()));
        }
        if mem.find(&spec.name).is_some() || names.contains(&spec.name) {
            return Err(ControlError::Invalid(format!(
                "a tunnel named {:?} already exists",
                spec.name
            )));
        }
        names.push(spec.name.clone());
        spec.same_host_as = spec.same_host_as.map(|k| base + k);
    }
    for spec in specs {
        mem.slots.push(Some(Slot {
            spec,
            id: String::new(),
            url: String::new(),
            metrics: Arc::default(),
        }));
    }
    let mut events = Vec::new();
    for i in base..mem.slots.len() {
        match bind_slot(ctx, session, mem, i, routes).await {
            Ok(ev) => events.extend(ev),
            Err(e) => {
                let bound: Vec<String> = mem.slots.drain(base..).flatten().map(|s| s.id).collect();
                {
                    let mut r = routes.write().unwrap_or_else(|p| p.into_inner());
                    for id in &bound {
                        r.remove(id);
                    }
                }
                unbind_all(session, &bound).await;
                return Err(ControlError::Failed(e.to_string()));
            }
        }
    }
    publish(ctx.state, mem, routes);
    for ev in events {
        let _ = ctx.events.send(ev);
    }
    Ok(names.iter().filter_map(|n| ctx.state.tunnel(n)).collect())
}

/// Starts or stops a tunnel on the live session (agent API).
async fn handle_control(
    ctx: &SessionCtx<'_>,
    session: &Session,
    mem: &mut Memory,
    routes: &Routes,
    c: Control,
) {
    match c {
        Control::Start { specs, reply } => {
            let _ = reply.send(start_batch(ctx, session, mem, routes, specs).await);
        }
        Control::Stop { name, reply } => {
            let Some(i) = mem.find(&name) else {
                let _ = reply.send(Err(ControlError::NotFound(name)));
                return;
            };
            if let Some(slot) = mem.slots[i].take() {
                routes
                    .write()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&slot.id);
                unbind_all(session, std::slice::from_ref(&slot.id)).await;
            }
            publish(ctx.state, mem, routes);
            let _ = reply.send(Ok(()));
        }
    }
}

/// `https://name:7443/...` → `name`.
fn url_host(url: &str) -> Option<String> {
    let rest = url.split("://").nth(1)?;
    let authority = rest.split('/').next()?;
    let host = authority
        .rsplit_once(':')
        .map(|(h, _)| h)
        .unwrap_or(authority);
    (!host.is_empty()).then(|| host.to_string())
}

/// Closes the session when a session attempt ends for any reason.
struct CloseGuard(Session);

impl Drop for CloseGuard {
    fn drop(&mut self) {
        if !self.0.is_closed() {
            self.0.close(ErrorCode::NONE, "");
        }
    }
}

async fn unbind_all(session: &Session, ids: &[String]) {
    for id in ids.iter().filter(|id| !id.is_empty()) {
        let req = msg::Unbind { id: id.clone() };
        let call = rpc::call::<_, msg::UnbindResp>(session, msg::UNBIND, &req);
        match tokio::time::timeout(UNBIND_TIMEOUT, call).await {
            Ok(Ok(_)) => info!(tunnel = %id, "unbound"),
            Ok(Err(e)) => warn!(tunnel = %id, error = %e, "unbind failed"),
            Err(_) => warn!(tunnel = %id, "unbind timed out"),
        }
    }
}

/// Streams the edge opens: proxied connections and commands.
async fn serve_stream(
    mut stream: Stream,
    routes: Routes,
    tls: Arc<SslConnector>,
    http: Arc<HttpForwarder>,
    session: Session,
    shutdown: CancellationToken,
) {
    let Ok(typ) = stream.read_u32().await else {
        return;
    };
    match typ {
        msg::PROXY => proxy_stream(stream, routes, tls, http).await,
        msg::HEARTBEAT => heartbeat::echo(stream, heartbeat::Liveness::new()).await,
        msg::STOP => {
            let _ = rpc::reply(&mut stream, &CommandResp::default()).await;
            info!("edge asked the agent to stop");
            shutdown.cancel();
        }
        msg::RESTART => {
            let _ = rpc::reply(&mut stream, &CommandResp::default()).await;
            info!("edge asked the agent to restart its session");
            session.close(ErrorCode::NONE, "restart requested");
        }
        msg::UPDATE => {
            let resp = CommandResp {
                error: "this agent does not update itself".into(),
            };
            let _ = rpc::reply(&mut stream, &resp).await;
        }
        msg::STOP_TUNNEL => {
            if let Ok(req) = rpc::read_request::<msg::StopTunnel>(&mut stream).await {
                warn!(tunnel = %req.id, message = %req.message, code = %req.error_code, "edge stopped a tunnel");
                routes
                    .write()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&req.id);
            }
        }
        other => {
            debug!(typ = other, "unknown stream type from edge");
            stream.reset(ErrorCode::PROTOCOL);
        }
    }
}
