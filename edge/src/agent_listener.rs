//! Agent sessions: TLS (terminated by the Pingora listener), then muxado in
//! the server role over any byte stream. Streams the agent opens are
//! typed: heartbeats are echoed, Auth must succeed before Bind/Unbind, and
//! a session that stops beating is reaped. A broken or hostile agent
//! closes only its own session. What each RPC decides is `agent_rpc`'s;
//! this is the IO around it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use gangway_config::codes;
use gangway_config::EdgeConfig;
use gangway_proto::codec::MAX_RPC_BYTES;
use gangway_proto::heartbeat::{self, Liveness};
use gangway_proto::msg::{self, error_string, Auth, Bind, MsgError};
use gangway_proto::rpc;
use gangway_proto::{ErrorCode, Role, Session, SessionConfig, Stream};
use pingora_core::apps::ServerApp;
use pingora_core::protocols::Stream as L4Stream;
use pingora_core::server::ShutdownWatch;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tracing::{debug, info, warn};

use crate::agent_rpc::{self, BindPlan, Credential, Rules};
use crate::errors::RpcRefusal;
use crate::registry::{now_ms, Registry, SessionInfo, SessionKey, TunnelInfo};

/// An agent must authenticate this soon after connecting.
pub const AUTH_TIMEOUT: Duration = Duration::from_secs(30);
/// A stream must announce its type this soon after opening.
pub const STREAM_TYPE_TIMEOUT: Duration = Duration::from_secs(10);

/// The Pingora app behind the agent listener.
pub struct AgentApp {
    registry: Arc<Registry>,
    cfg: Arc<EdgeConfig>,
}

impl AgentApp {
    pub fn new(registry: Arc<Registry>, cfg: Arc<EdgeConfig>) -> Self {
        AgentApp { registry, cfg }
    }
}

#[async_trait]
impl ServerApp for AgentApp {
    async fn process_new(
        self: &Arc<Self>,
        io: L4Stream,
        _shutdown: &ShutdownWatch,
    ) -> Option<L4Stream> {
        let peer = io
            .get_socket_digest()
            .and_then(|d| d.peer_addr().map(|a| a.to_string()))
            .unwrap_or_default();
        serve(self.clone(), io, peer).await;
        None
    }
}

/// One authenticated-or-not agent connection.
struct Conn {
    app: Arc<AgentApp>,
    session: Session,
    key: SessionKey,
    peer: String,
    authed: AtomicBool,
    liveness: Arc<Liveness>,
    /// How the session authenticated; set once by Auth.
    credential: OnceLock<Credential>,
}

/// Serves one agent session on `io` (TLS from the listener, or any byte
/// stream: tests pair an agent with the edge in memory) until it ends.
pub async fn serve<IO>(app: Arc<AgentApp>, io: IO, peer: String)
where
    IO: AsyncRead + AsyncWrite + Send + 'static,
{
    let (session, mut acceptor) = gangway_proto::start(io, SessionConfig::new(Role::Server));
    let key = app.registry.add_session(session.clone());
    let liveness = Liveness::new();
    liveness.touch();
    let conn = Arc::new(Conn {
        app: app.clone(),
        session: session.clone(),
        key,
        peer,
        authed: AtomicBool::new(false),
        credential: OnceLock::new(),
        liveness,
    });
    debug!(peer = %conn.peer, session = key, "agent connected");
    let auth_deadline = tokio::time::sleep(AUTH_TIMEOUT);
    tokio::pin!(auth_deadline);
    loop {
        tokio::select! {
            s = acceptor.accept() => match s {
                Some(stream) => { tokio::spawn(conn.clone().handle(stream)); }
                None => break,
            },
            _ = &mut auth_deadline, if !conn.authed.load(Ordering::Acquire) => {
                info!(peer = %conn.peer, "agent did not authenticate in time");
                session.close(ErrorCode::NONE, "authentication timeout");
                break;
            }
        }
    }
    app.registry.remove_session(key);
    if !session.is_closed() {
        session.close(ErrorCode::NONE, "");
    }
    if conn.authed.load(Ordering::Acquire) {
        info!(peer = %conn.peer, session = key, reason = ?session.close_reason(), "agent session ended");
    } else {
        debug!(peer = %conn.peer, session = key, reason = ?session.close_reason(), "unauthenticated connection ended");
    }
}

impl Conn {
    async fn handle(self: Arc<Self>, mut stream: Stream) {
        let typ = match tokio::time::timeout(STREAM_TYPE_TIMEOUT, stream.read_u32()).await {
            Ok(Ok(t)) => t,
            _ => {
                stream.reset(ErrorCode::PROTOCOL);
                return;
            }
        };
        match typ {
            msg::HEARTBEAT => heartbeat::echo(stream, self.liveness.clone()).await,
            msg::AUTH => self.auth(stream).await,
            msg::BIND | msg::UNBIND | msg::SRV_INFO | msg::START_TUNNEL_WITH_LABEL => {
                if !self.authed.load(Ordering::Acquire) {
                    self.fail_rpc(
                        stream,
                        RpcRefusal::new(
                            codes::NOT_AUTHENTICATED,
                            "Authenticate before any other request.",
                        ),
                    )
                    .await;
                    self.session.close(ErrorCode::PROTOCOL, "not authenticated");
                    return;
                }
                match typ {
                    msg::BIND => self.bind(stream).await,
                    msg::UNBIND => self.unbind(stream).await,
                    msg::SRV_INFO => {
                        let _ = rpc::reply(
                            &mut stream,
                            &msg::SrvInfoResp {
                                region: String::new(),
                            },
                        )
                        .await;
                    }
                    _ => self.bind_labeled(stream).await,
                }
            }
            other => {
                debug!(peer = %self.peer, typ = other, "unknown stream type");
                stream.reset(ErrorCode::PROTOCOL);
            }
        }
    }

    /// Reads an RPC request; a malformed or oversized one ends the session.
    async fn request<T: serde::de::DeserializeOwned>(&self, stream: &mut Stream) -> Option<T> {
        match rpc::read_request::<T>(stream).await {
            Ok(req) => Some(req),
            Err(e) => {
                warn!(peer = %self.peer, error = %e, "bad rpc request; closing session");
                let why = match e {
                    MsgError::TooLarge { .. } => {
                        format!("rpc request larger than {MAX_RPC_BYTES} bytes")
                    }
                    other => other.to_string(),
                };
                self.session.close(ErrorCode::PROTOCOL, &why);
                None
            }
        }
    }

    async fn send<T: Serialize>(&self, stream: &mut Stream, resp: &T) {
        if let Err(e) = rpc::reply(stream, resp).await {
            debug!(peer = %self.peer, error = %e, "writing rpc reply");
        }
    }

    async fn fail_rpc(&self, mut stream: Stream, refusal: RpcRefusal) {
        #[derive(Serialize)]
        struct ErrorOnly {
            #[serde(rename = "Error")]
            error: String,
        }
        self.send(
            &mut stream,
            &ErrorOnly {
                error: error_string(&refusal.message, refusal.code.as_str()),
            },
        )
        .await;
    }

    async fn auth(&self, mut stream: Stream) {
        let Some(req) = self.request::<Auth>(&mut stream).await else {
            return;
        };
        let control = self.app.registry.control();
        let (credential, credential_id) =
            match agent_rpc::authenticate(&req.extra.auth_token, &self.app.cfg, &control) {
                Ok(c) => c,
                Err(refusal) => {
                    info!(peer = %self.peer, code = %refusal.code, "agent authentication failed");
                    self.send(&mut stream, &agent_rpc::auth_refused(&refusal))
                        .await;
                    self.session.close(ErrorCode::NONE, "authentication failed");
                    return;
                }
            };
        let _ = self.credential.set(credential);
        let resp = agent_rpc::auth_accepted(&req, &self.app.cfg);
        let (interval, tolerance) =
            heartbeat::from_auth_nanos(req.extra.heartbeat_interval, req.extra.heartbeat_tolerance);
        self.liveness.touch();
        if !self.authed.swap(true, Ordering::AcqRel) {
            tokio::spawn(heartbeat::reap(
                self.session.clone(),
                self.liveness.clone(),
                interval,
                tolerance,
            ));
        }
        info!(
            peer = %self.peer,
            client_id = %resp.client_id,
            agent = %req.extra.user_agent,
            metadata = %req.extra.metadata,
            "agent authenticated"
        );
        self.app.registry.set_session_info(
            self.key,
            SessionInfo {
                client_id: resp.client_id.clone(),
                peer: self.peer.clone(),
                os: req.extra.os.clone(),
                agent_version: req.extra.version.clone(),
                metadata: req.extra.metadata.clone(),
                credential_id,
                started_at_ms: now_ms(),
            },
        );
        self.send(&mut stream, &resp).await;
    }

    /// The session's bind rules now.
    fn rules(&self) -> Result<Rules, RpcRefusal> {
        agent_rpc::rules(self.credential.get(), &self.app.registry.control())
    }

    async fn bind_labeled(&self, mut stream: Stream) {
        let Some(req) = self.request::<msg::StartTunnelWithLabel>(&mut stream).await else {
            return;
        };
        let started = self.rules().and_then(|rules| {
            let id = agent_rpc::plan_labeled(&req, &rules)?;
            self.app
                .registry
                .bind_labeled(self.key, &id, req.labels.clone())?;
            Ok(id)
        });
        match started {
            Ok(id) => {
                info!(peer = %self.peer, tunnel = %id, labels = ?req.labels, forwards_to = %req.forwards_to, "labeled tunnel started");
                self.app.registry.record_tunnel(TunnelInfo {
                    session: self.key,
                    id: id.clone(),
                    url: String::new(),
                    proto: "https".to_string(),
                    forwards_to: req.forwards_to.clone(),
                    metadata: req.metadata.clone(),
                    labels: req.labels.clone(),
                    bindings: Vec::new(),
                    started_at_ms: now_ms(),
                });
                let resp = msg::StartTunnelWithLabelResp {
                    id,
                    error: String::new(),
                };
                self.send(&mut stream, &resp).await
            }
            Err(refusal) => {
                info!(peer = %self.peer, code = %refusal.code, error = %refusal.message, "labeled tunnel refused");
                self.fail_rpc(stream, refusal).await
            }
        }
    }

    async fn bind(&self, mut stream: Stream) {
        let Some(req) = self.request::<Bind>(&mut stream).await else {
            return;
        };
        match self.try_bind(&req) {
            Ok(resp) => {
                info!(
                    peer = %self.peer,
                    tunnel = %resp.id,
                    url = %resp.url,
                    forwards_to = %req.forwards_to,
                    metadata = %req.extra.metadata,
                    "tunnel bound"
                );
                self.app.registry.record_tunnel(TunnelInfo {
                    session: self.key,
                    id: resp.id.clone(),
                    url: resp.url.clone(),
                    proto: resp.proto.clone(),
                    forwards_to: req.forwards_to.clone(),
                    metadata: req.extra.metadata.clone(),
                    labels: Default::default(),
                    bindings: req.extra.bindings.clone(),
                    started_at_ms: now_ms(),
                });
                self.send(&mut stream, &resp).await
            }
            Err(refusal) => {
                info!(peer = %self.peer, code = %refusal.code, error = %refusal.message, "bind refused");
                self.fail_rpc(stream, refusal).await
            }
        }
    }

    /// Carries out what `agent_rpc::plan_bind` decided.
    fn try_bind(&self, req: &Bind) -> Result<msg::BindResp, RpcRefusal> {
        let cfg = &self.app.cfg;
        let pooling = req.extra.pooling_enabled;
        match agent_rpc::plan_bind(cfg, req, || self.rules())? {
            BindPlan::Private(resp) => Ok(resp),
            BindPlan::Named {
                tunnel_id,
                proto,
                hostname,
                options,
            } => {
                self.app.registry.bind(
                    self.key,
                    &tunnel_id,
                    &proto,
                    &hostname,
                    pooling,
                    Arc::new(options),
                )?;
                let url = agent_rpc::named_url(cfg, &proto, &hostname);
                Ok(agent_rpc::bound(req, tunnel_id, &proto, url))
            }
            BindPlan::Tcp {
                tunnel_id,
                requested,
                options,
            } => {
                let port = self.app.registry.bind_tcp(
                    self.key,
                    &tunnel_id,
                    requested,
                    &cfg.tcp_ports,
                    pooling,
                    Arc::new(options),
                )?;
                Ok(agent_rpc::bound(req, tunnel_id, "tcp", cfg.tcp_url(port)))
            }
        }
    }

    async fn unbind(&self, mut stream: Stream) {
        let Some(req) = self.request::<msg::Unbind>(&mut stream).await else {
            return;
        };
        if self.app.registry.unbind(self.key, &req.id) {
            info!(peer = %self.peer, tunnel = %req.id, "tunnel unbound");
            self.send(
                &mut stream,
                &msg::UnbindResp {
                    error: String::new(),
                },
            )
            .await;
        } else {
            self.fail_rpc(
                stream,
                RpcRefusal::new(
                    codes::UNKNOWN_TUNNEL,
                    format!("No tunnel {} in this session.", req.id),
                ),
            )
            .await;
        }
    }
}
