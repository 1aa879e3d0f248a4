//! Assembles one Pingora `Server`: the agent listener, the public TLS
//! listener (HTTPS and TLS endpoints) and the public HTTP listener, sharing
//! one registry.

use std::net::SocketAddr;
use std::sync::Arc;

use gangway_config::control::ControlConfig;
use gangway_config::edge::EventsOutput;
use gangway_config::EdgeConfig;
use pingora_core::listeners::tls::TlsSettings;
use pingora_core::listeners::TcpSocketOptions;
use pingora_core::server::configuration::ServerConf;
use pingora_core::server::Server;
use pingora_core::services::listening::Service;
use pingora_proxy::{http_proxy, http_proxy_service_with_name};

use crate::agent_listener::AgentApp;
use crate::certs::{CertError, CertKey, CertSet, SniResolver};
use crate::events::{JsonLinesSink, JsonLinesTarget};
use crate::fetch::{ConnectTo, Documents, Fetcher};
use crate::proxy::EdgeProxy;
use crate::public_tls::PublicTlsApp;
use crate::registry::Registry;

/// Why the edge could not be assembled.
#[derive(Debug, thiserror::Error)]
pub enum EdgeError {
    #[error(transparent)]
    Cert(#[from] CertError),
    #[error("cannot open the events file {path}: {error}")]
    Events {
        path: std::path::PathBuf,
        error: std::io::Error,
    },
    #[error("--outbound-ca / --connect-to: {0}")]
    Outbound(String),
    #[error("TLS setup for {listener}: {detail}")]
    Tls {
        listener: &'static str,
        detail: String,
    },
}

/// A ready-to-run edge: call `server.run_forever()`.
pub struct Edge {
    pub server: Server,
    pub registry: Arc<Registry>,
}

impl Edge {
    /// What the control plane calls with each new config: routes and
    /// certificates change at once (one table), connections stay.
    pub fn control_sink(&self) -> impl Fn(Arc<ControlConfig>) + Send + Sync + 'static {
        let registry = self.registry.clone();
        move |cfg: Arc<ControlConfig>| registry.set_control(cfg)
    }
}

/// Builds the Pingora server for `cfg`. Binding happens when it runs.
pub fn build_server(cfg: EdgeConfig) -> Result<Edge, EdgeError> {
    let cfg = Arc::new(cfg);
    let default_cert = CertKey::from_files(&cfg.cert_path, &cfg.key_path)?;

    let conf = ServerConf {
        threads: cfg.threads.max(1),
        // A local server should stop promptly on Ctrl-C/TERM.
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(1),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let registry = Arc::new(Registry::with_tcp_ip(cfg.tcp_ip));
    registry.set_base_certs(CertSet::new(default_cert, Vec::new()));
    let documents = Arc::new(Documents::new(outbound_fetcher(&cfg)?));
    let events = match &cfg.events {
        EventsOutput::Off => None,
        EventsOutput::Stdout => Some(JsonLinesTarget::Stdout),
        EventsOutput::File(p) => Some(JsonLinesTarget::File(p.clone())),
    };
    if let Some(target) = events {
        let path = match &target {
            JsonLinesTarget::File(p) => p.clone(),
            JsonLinesTarget::Stdout => "stdout".into(),
        };
        let sink =
            JsonLinesSink::open(target).map_err(|error| EdgeError::Events { path, error })?;
        registry.set_events(Box::new(sink));
    }

    let mut agents = Service::new(
        "agent listener".to_string(),
        AgentApp::new(registry.clone(), cfg.clone()),
    );
    let agent_tls = TlsSettings::with_callbacks(Box::new(SniResolver::new(
        registry.table_handle(),
    )))
    .map_err(|e| EdgeError::Tls {
        listener: "agent",
        detail: e.to_string(),
    })?;
    agents.add_tls_with_settings(
        &cfg.agent_addr.to_string(),
        socket_options(&cfg, cfg.agent_addr),
        agent_tls,
    );

    // HTTPS and TLS endpoints share the TLS port; see `public_tls`.
    let tls_app = PublicTlsApp::new(
        registry.clone(),
        http_proxy(
            &server.configuration,
            EdgeProxy::new(registry.clone(), documents.clone(), true),
        ),
        SniResolver::new(registry.table_handle()),
    )
    .map_err(|detail| EdgeError::Tls {
        listener: "https",
        detail,
    })?;
    let mut https = Service::new("public tls".to_string(), tls_app);
    add_tcp(&mut https, &cfg, cfg.https_addr);

    let mut http = http_proxy_service_with_name(
        &server.configuration,
        EdgeProxy::new(registry.clone(), documents, false),
        "public http",
    );
    add_tcp(&mut http, &cfg, cfg.http_addr);

    server.add_service(agents);
    server.add_service(https);
    server.add_service(http);
    Ok(Edge { server, registry })
}

/// SO_REUSEPORT only where the caller holds a placeholder on the port (see
/// `EdgeConfig::reserved`); a port the user named stays exclusive, so a
/// second server on it fails to bind instead of splitting the traffic.
fn socket_options(cfg: &EdgeConfig, addr: SocketAddr) -> Option<TcpSocketOptions> {
    cfg.reserved.contains(&addr).then(|| {
        let mut opts = TcpSocketOptions::default();
        opts.so_reuseport = Some(true);
        opts
    })
}

fn add_tcp<A>(service: &mut Service<A>, cfg: &EdgeConfig, addr: SocketAddr) {
    match socket_options(cfg, addr) {
        Some(opts) => service.add_tcp_with_settings(&addr.to_string(), opts),
        None => service.add_tcp(&addr.to_string()),
    }
}

fn outbound_fetcher(cfg: &EdgeConfig) -> Result<Fetcher, EdgeError> {
    let roots = match &cfg.outbound_ca {
        Some(path) => Some(
            std::fs::read(path)
                .map_err(|e| EdgeError::Outbound(format!("{}: {e}", path.display())))?,
        ),
        None => None,
    };
    let connect_to = cfg
        .connect_to
        .iter()
        .map(|s| s.parse::<ConnectTo>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(EdgeError::Outbound)?;
    Fetcher::new(roots.as_deref(), connect_to).map_err(EdgeError::Outbound)
}
