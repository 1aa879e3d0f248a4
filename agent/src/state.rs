//! What a running agent exposes to its local views (web UI, agent API,
//! console): the session's status, the bound tunnels with their metrics,
//! the inspector, and a control channel that starts and stops tunnels
//! while the session runs.

use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::forward::TunnelRoute;
use crate::http_forward::{HttpForwarder, RequestLine};
use crate::inspect::Inspector;
use crate::tunnels::TunnelSpec;

/// How long a start or stop waits for the session (it may be
/// reconnecting).
pub const CONTROL_TIMEOUT: Duration = Duration::from_secs(15);

/// Where the session stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionStatus {
    Connecting,
    Online,
    Reconnecting,
}

impl SessionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SessionStatus::Connecting => "connecting",
            SessionStatus::Online => "online",
            SessionStatus::Reconnecting => "reconnecting",
        }
    }
}

/// The session as views show it.
#[derive(Debug, Clone)]
pub struct SessionInfo {
    pub status: SessionStatus,
    pub region: String,
    pub server_addr: String,
    /// Why the last session ended, while reconnecting.
    pub last_error: String,
}

/// What a tunnel name escapes in its API path: all but RFC 3986's
/// unreserved characters.
const PATH_SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// A bound tunnel.
#[derive(Clone)]
pub struct TunnelInfo {
    pub name: String,
    pub public_url: String,
    /// `https`, `http`, `tcp` or `tls`.
    pub proto: String,
    /// Where it forwards, as users wrote it.
    pub addr: String,
    pub route: TunnelRoute,
}

impl TunnelInfo {
    /// The agent API's tunnel object.
    pub fn to_json(&self) -> Value {
        let name = percent_encoding::utf8_percent_encode(&self.name, PATH_SEGMENT);
        json!({
            "name": self.name,
            "uri": format!("/api/tunnels/{name}"),
            "public_url": self.public_url,
            "proto": self.proto,
            "config": {
                "addr": self.addr,
                "inspect": self.route.inspector.is_some(),
            },
            "metrics": self.route.metrics.to_json(self.route.http),
        })
    }
}

/// Why a start or stop failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ControlError {
    /// The request itself is wrong (a taken name, a bad option).
    #[error("{0}")]
    Invalid(String),
    /// The edge refused, or the session is down.
    #[error("{0}")]
    Failed(String),
    #[error("no tunnel named {0:?}")]
    NotFound(String),
}

/// A request to the session loop.
pub(crate) enum Control {
    /// One tunnel, or two sharing a hostname (`bind_tls: both`):
    /// `same_host_as` indexes count within the batch.
    Start {
        specs: Vec<TunnelSpec>,
        reply: oneshot::Sender<Result<Vec<TunnelInfo>, ControlError>>,
    },
    Stop {
        name: String,
        reply: oneshot::Sender<Result<(), ControlError>>,
    },
}

/// Shared between the session loop and the local views.
pub struct AgentState {
    pub inspector: Arc<Inspector>,
    /// Every finished HTTP request, for live logs.
    pub requests: broadcast::Sender<RequestLine>,
    session: RwLock<SessionInfo>,
    tunnels: RwLock<Vec<TunnelInfo>>,
    control_tx: mpsc::UnboundedSender<Control>,
    control_rx: Mutex<Option<mpsc::UnboundedReceiver<Control>>>,
    forwarder: OnceLock<Arc<HttpForwarder>>,
}

impl AgentState {
    pub fn new(inspector: Arc<Inspector>, server_addr: &str) -> Arc<Self> {
        let (control_tx, control_rx) = mpsc::unbounded_channel();
        // The console shows the last ten; the queue is allocated up front.
        let (requests, _) = broadcast::channel(64);
        Arc::new(AgentState {
            inspector,
            requests,
            session: RwLock::new(SessionInfo {
                status: SessionStatus::Connecting,
                region: String::new(),
                server_addr: server_addr.to_string(),
                last_error: String::new(),
            }),
            tunnels: RwLock::new(Vec::new()),
            control_tx,
            control_rx: Mutex::new(Some(control_rx)),
            forwarder: OnceLock::new(),
        })
    }

    pub fn session(&self) -> SessionInfo {
        self.session
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub(crate) fn update_session(&self, f: impl FnOnce(&mut SessionInfo)) {
        f(&mut self.session.write().unwrap_or_else(|p| p.into_inner()));
    }

    /// Bound tunnels, in the order they were started.
    pub fn tunnels(&self) -> Vec<TunnelInfo> {
        self.tunnels
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn tunnel(&self, name: &str) -> Option<TunnelInfo> {
        self.tunnels
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .find(|t| t.name == name)
            .cloned()
    }

    pub(crate) fn set_tunnels(&self, tunnels: Vec<TunnelInfo>) {
        *self.tunnels.write().unwrap_or_else(|p| p.into_inner()) = tunnels;
    }

    /// The forwarder HTTP tunnels use (for replays), once the agent runs.
    pub fn forwarder(&self) -> Option<Arc<HttpForwarder>> {
        self.forwarder.get().cloned()
    }

    pub(crate) fn set_forwarder(&self, f: Arc<HttpForwarder>) {
        let _ = self.forwarder.set(f);
    }

    /// The session loop's end of the control channel (taken once).
    pub(crate) fn take_control(&self) -> Option<mpsc::UnboundedReceiver<Control>> {
        self.control_rx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }

    /// Binds new tunnels on the running session (all or none).
    pub async fn start_tunnels(
        &self,
        specs: Vec<TunnelSpec>,
    ) -> Result<Vec<TunnelInfo>, ControlError> {
        let (reply, rx) = oneshot::channel();
        self.ask(Control::Start { specs, reply }, rx).await?
    }

    /// Unbinds the tunnel named `name`.
    pub async fn stop_tunnel(&self, name: &str) -> Result<(), ControlError> {
        let (reply, rx) = oneshot::channel();
        let name = name.to_string();
        self.ask(Control::Stop { name, reply }, rx).await?
    }

    async fn ask<T>(&self, c: Control, rx: oneshot::Receiver<T>) -> Result<T, ControlError> {
        let gone = || ControlError::Failed("the agent is not running".into());
        self.control_tx.send(c).map_err(|_| gone())?;
        match tokio::time::timeout(CONTROL_TIMEOUT, rx).await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(_)) => Err(gone()),
            Err(_) => Err(ControlError::Failed(format!(
                "the session did not answer within {CONTROL_TIMEOUT:?} (is the agent online?)"
            ))),
        }
    }
}
