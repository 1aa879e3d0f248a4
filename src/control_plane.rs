//! The control plane inside `gangway server`: the SQLite store in the data
//! dir, the REST API on its own listener, and the feed that compiles stored
//! resources into the edge's route table on every change. It runs on its
//! own small runtime, beside Pingora's.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use gangway_api::live::{Command, CommandError, LiveSession, LiveTunnel, LiveView};
use gangway_api::rest::{ApiSettings, ApiState};
use gangway_api::store::sqlite::SqliteStore;
use gangway_api::store::{Store, StoreError};
use gangway_api::{bootstrap, feed};
use gangway_edge::registry::Registry;
use gangway_edge::Edge;

use crate::data_dir::{write_private, DataDirError};

/// The store's file in the data dir.
pub const STORE_FILE: &str = "gangway.db";
/// Where the API key made at first start is kept for the user.
const API_KEY_FILE: &str = "api_key";

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("store {path}: {source}")]
    Store { path: String, source: StoreError },
    #[error(transparent)]
    DataDir(#[from] DataDirError),
    #[error("cannot bind the API on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("starting the control plane runtime: {0}")]
    Runtime(std::io::Error),
}

/// A running control plane; dropping it stops the API.
pub struct ControlPlane {
    pub api_key: String,
    _runtime: std::thread::JoinHandle<()>,
}

/// What the settings of the API are taken from.
pub struct ControlOptions<'a> {
    pub data_dir: &'a Path,
    pub api_addr: SocketAddr,
    /// The API port was picked for us and is held with SO_REUSEPORT (see
    /// `server_cmd::Ports`): bind with SO_REUSEPORT to join it.
    pub api_reserved: bool,
    /// The first-light authtoken, kept working as a credential.
    pub authtoken: &'a str,
    pub base_domain: String,
    pub agent_addr: String,
    pub region: String,
    pub https_port: u16,
    pub tcp_host: String,
    pub tcp_ports: std::ops::RangeInclusive<u16>,
}

/// The edge's registry as the API's live view.
struct EdgeLive(Arc<Registry>);

/// How long the API waits for an agent to answer a command.
const COMMAND_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

#[async_trait::async_trait]
impl LiveView for EdgeLive {
    fn tunnels_with_labels(&self, labels: &BTreeMap<String, String>) -> Vec<String> {
        self.0.tunnels_with_labels(labels)
    }

    fn sessions(&self) -> Vec<LiveSession> {
        self.0
            .sessions()
            .into_iter()
            .map(|(_, s)| LiveSession {
                id: s.client_id,
                agent_version: s.agent_version,
                peer: s.peer,
                os: s.os,
                metadata: s.metadata,
                credential_id: s.credential_id,
                started_at_ms: s.started_at_ms,
            })
            .collect()
    }

    fn tunnels(&self) -> Vec<LiveTunnel> {
        let ids: std::collections::HashMap<_, _> = self
            .0
            .sessions()
            .into_iter()
            .map(|(k, s)| (k, s.client_id))
            .collect();
        self.0
            .tunnels()
            .into_iter()
            .filter_map(|t| {
                Some(LiveTunnel {
                    session_id: ids.get(&t.session)?.clone(),
                    id: t.id,
                    public_url: t.url,
                    proto: t.proto,
                    forwards_to: t.forwards_to,
                    metadata: t.metadata,
                    labels: t.labels,
                    bindings: t.bindings,
                    started_at_ms: t.started_at_ms,
                })
            })
            .collect()
    }

    async fn command(&self, id: &str, cmd: Command) -> Result<(), CommandError> {
        use gangway_proto::{msg, rpc};
        let session = self
            .0
            .session_by_client_id(id)
            .ok_or_else(|| CommandError::NoSession(id.to_string()))?;
        let call = async {
            match cmd {
                Command::Restart => {
                    rpc::call::<_, msg::CommandResp>(&session, msg::RESTART, &msg::Restart {}).await
                }
                Command::Stop => {
                    rpc::call::<_, msg::CommandResp>(&session, msg::STOP, &msg::Stop {}).await
                }
                Command::Update => {
                    let req = msg::Update::default();
                    rpc::call::<_, msg::CommandResp>(&session, msg::UPDATE, &req).await
                }
            }
        };
        match tokio::time::timeout(COMMAND_TIMEOUT, call).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(rpc::RpcError::Remote(text))) => Err(CommandError::Refused(text)),
            Ok(Err(e)) => Err(CommandError::Unreachable(e.to_string())),
            Err(_) => Err(CommandError::Unreachable(format!(
                "no answer within {} s",
                COMMAND_TIMEOUT.as_secs()
            ))),
        }
    }
}

/// Opens the store, makes the first secrets, applies the stored config to
/// `edge` and starts the API. Returns once the edge has its config, so
/// agents are checked against the stored credentials from the start.
pub fn start(opts: ControlOptions<'_>, edge: &Edge) -> Result<ControlPlane, ControlError> {
    let registry = edge.registry.clone();
    let sink = edge.control_sink();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("gangway-api")
        .enable_all()
        .build()
        .map_err(ControlError::Runtime)?;
    let db = opts.data_dir.join(STORE_FILE);
    let key_path = opts.data_dir.join(API_KEY_FILE);
    let store_err = |source| ControlError::Store {
        path: db.display().to_string(),
        source,
    };
    let (store, api_key, listener) = rt.block_on(async {
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&db).map_err(store_err)?);
        let saved = std::fs::read_to_string(&key_path).ok();
        let api_key = bootstrap::api_key(store.as_ref(), saved.as_deref())
            .await
            .map_err(store_err)?;
        if saved.as_deref().map(str::trim) != Some(api_key.as_str()) {
            write_private(&key_path, api_key.as_bytes())?;
        }
        bootstrap::ensure_credential(store.as_ref(), opts.authtoken, "first-light authtoken")
            .await
            .map_err(store_err)?;
        feed::start(store.clone(), Arc::new(sink))
            .await
            .map_err(store_err)?;
        let listener =
            bind_api(opts.api_addr, opts.api_reserved).map_err(|source| ControlError::Bind {
                addr: opts.api_addr,
                source,
            })?;
        Ok::<_, ControlError>((store, api_key, listener))
    })?;
    let state = ApiState {
        store,
        settings: Arc::new(ApiSettings {
            api_addr: opts.api_addr.to_string(),
            base_domain: opts.base_domain,
            agent_addr: opts.agent_addr,
            region: opts.region,
            https_port: opts.https_port,
            tcp_host: opts.tcp_host,
            tcp_ports: opts.tcp_ports,
            live: Arc::new(EdgeLive(registry)),
        }),
    };
    let handle = std::thread::Builder::new()
        .name("gangway-api".into())
        .spawn(move || {
            if let Err(e) = rt.block_on(gangway_api::rest::serve(listener, state)) {
                tracing::error!(error = %e, "API server stopped");
            }
        })
        .map_err(ControlError::Runtime)?;
    Ok(ControlPlane {
        api_key,
        _runtime: handle,
    })
}

fn bind_api(addr: SocketAddr, reserved: bool) -> std::io::Result<tokio::net::TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    if reserved {
        socket.set_reuseport(true)?;
    }
    socket.bind(addr)?;
    socket.listen(1024)
}
