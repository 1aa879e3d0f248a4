//! Agent commands: `gangway http ...`. With no server flags they find the
//! local `gangway server` through its `server.json` and trust its dev CA.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use gangway_agent::{AgentEvent, AgentOptions, TlsTerminator, TunnelSpec, Upstream};
use gangway_config::server_info::SERVER_INFO_FILE;
use gangway_config::ServerInfo;
use gangway_proto::heartbeat::{DEFAULT_INTERVAL, DEFAULT_TOLERANCE};
use tokio_util::sync::CancellationToken;

use crate::data_dir::default_data_dir;

/// After Ctrl-C, give unbinding this long.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

#[derive(Args)]
pub struct HttpArgs {
    /// What to forward to: a port (`8080`), `host:port`, an http(s):// URL,
    /// or `file:///abs/dir` to serve a directory.
    addr: String,
    /// Hostname to serve on instead of a random subdomain; `*.example.com`
    /// binds a wildcard.
    #[arg(long, alias = "hostname", alias = "url", conflicts_with = "subdomain")]
    domain: Option<String>,
    /// A subdomain of the server's base domain (`--subdomain demo` →
    /// demo.gangway.localhost).
    #[arg(long)]
    subdomain: Option<String>,
    /// Let other agents bind the same endpoint with pooling on and share
    /// its traffic (round robin).
    #[arg(long)]
    pooling_enabled: bool,
    /// Require HTTP basic auth, `user:password` (password 8-128 bytes);
    /// repeat for several users.
    #[arg(long = "basic-auth", value_name = "USER:PASSWORD")]
    basic_auth: Vec<String>,
    /// Which public schemes serve the endpoint: `https` (default), `http`,
    /// or both (`--scheme http,https`).
    #[arg(long, value_delimiter = ',', default_value = "https")]
    scheme: Vec<String>,
    /// Host header sent to the app: `rewrite` (the upstream's host:port),
    /// a literal value, or `preserve` (the default: the public hostname).
    #[arg(long)]
    host_header: Option<String>,
    #[command(flatten)]
    modules: ModuleArgs,
    #[command(flatten)]
    conn: ConnectArgs,
}

/// Route modules the edge runs for an HTTP endpoint; the flags are
/// ngrok's agent flags.
#[derive(Args, Default)]
pub struct ModuleArgs {
    /// Allow only clients in this CIDR (repeatable).
    #[arg(long = "cidr-allow", value_name = "CIDR")]
    cidr_allow: Vec<String>,
    /// Refuse clients in this CIDR (repeatable).
    #[arg(long = "cidr-deny", value_name = "CIDR")]
    cidr_deny: Vec<String>,
    /// Compress responses (gzip or deflate, as the client accepts).
    #[arg(long)]
    compression: bool,
    /// Trip a circuit breaker when this share (0-1) of responses are 5xx.
    #[arg(long = "circuit-breaker", value_name = "RATIO")]
    circuit_breaker: Option<f64>,
    /// Header to add to requests, `name:value` (repeatable; `${...}`
    /// interpolates, e.g. `${conn.client_ip}`).
    #[arg(long = "request-header-add", value_name = "NAME:VALUE")]
    request_header_add: Vec<String>,
    /// Header to remove from requests (repeatable).
    #[arg(long = "request-header-remove", value_name = "NAME")]
    request_header_remove: Vec<String>,
    /// Header to add to responses, `name:value` (repeatable).
    #[arg(long = "response-header-add", value_name = "NAME:VALUE")]
    response_header_add: Vec<String>,
    /// Header to remove from responses (repeatable).
    #[arg(long = "response-header-remove", value_name = "NAME")]
    response_header_remove: Vec<String>,
    /// Serve user agents matching this regex even if a deny matches.
    #[arg(long = "ua-filter-allow", value_name = "REGEX")]
    ua_filter_allow: Vec<String>,
    /// Refuse user agents matching this regex.
    #[arg(long = "ua-filter-deny", value_name = "REGEX")]
    ua_filter_deny: Vec<String>,
    /// Verify webhook signatures from this provider (`github`, `stripe`,
    /// `slack`, ...) before requests reach the app.
    /// (`sns` needs no secret; the others refuse to start without one.)
    #[arg(long = "verify-webhook", value_name = "PROVIDER")]
    verify_webhook: Option<String>,
    /// The provider's signing secret for --verify-webhook.
    #[arg(
        long = "verify-webhook-secret",
        value_name = "SECRET",
        requires = "verify_webhook"
    )]
    verify_webhook_secret: Option<String>,
    /// Require client certificates issued by the CAs in this PEM file
    /// (mutual TLS at the edge; HTTPS only).
    #[arg(long = "mutual-tls-cas", value_name = "PATH")]
    mutual_tls_cas: Option<PathBuf>,
    /// Accept only websocket upgrades and relay their binary messages as a
    /// raw TCP connection to ADDR (e.g. a VNC or SSH port).
    #[arg(long = "websocket-tcp-converter")]
    websocket_tcp_converter: bool,
    /// Run the Traffic Policy in this file (YAML or JSON) at the edge, as
    /// `ngrok http --traffic-policy-file` does.
    #[arg(long = "traffic-policy-file", value_name = "PATH")]
    traffic_policy_file: Option<PathBuf>,
}

impl ModuleArgs {
    /// The Bind options these flags ask for, in the SDKs' shape.
    fn bind_opts(&self) -> Result<serde_json::Map<String, serde_json::Value>, AgentCmdError> {
        use base64::Engine;
        use serde_json::json;
        let mut o = serde_json::Map::new();
        if let Some(path) = &self.mutual_tls_cas {
            let pem = std::fs::read(path).map_err(|source| AgentCmdError::Read {
                path: path.clone(),
                source,
            })?;
            let b64 = base64::engine::general_purpose::STANDARD.encode(pem);
            o.insert(MUTUAL_TLS_CA.into(), json!({ "mutual_tls_ca": b64 }));
        }
        if let Some(path) = &self.traffic_policy_file {
            let text = std::fs::read_to_string(path).map_err(|source| AgentCmdError::Read {
                path: path.clone(),
                source,
            })?;
            o.insert("TrafficPolicy".into(), json!(text));
        }
        if !self.cidr_allow.is_empty() || !self.cidr_deny.is_empty() {
            o.insert(
                "IPRestriction".into(),
                json!({"allow_cidrs": self.cidr_allow, "deny_cidrs": self.cidr_deny}),
            );
        }
        if self.compression {
            o.insert("Compression".into(), json!({}));
        }
        if self.websocket_tcp_converter {
            o.insert("WebsocketTCPConverter".into(), json!({}));
        }
        if let Some(ratio) = self.circuit_breaker {
            o.insert("CircuitBreaker".into(), json!({"error_threshold": ratio}));
        }
        for (key, add, remove) in [
            (
                "RequestHeaders",
                &self.request_header_add,
                &self.request_header_remove,
            ),
            (
                "ResponseHeaders",
                &self.response_header_add,
                &self.response_header_remove,
            ),
        ] {
            if !add.is_empty() || !remove.is_empty() {
                o.insert(key.into(), json!({"add": add, "remove": remove}));
            }
        }
        if !self.ua_filter_allow.is_empty() || !self.ua_filter_deny.is_empty() {
            o.insert(
                "UserAgentFilter".into(),
                json!({"allow": self.ua_filter_allow, "deny": self.ua_filter_deny}),
            );
        }
        if let Some(provider) = &self.verify_webhook {
            let secret = self.verify_webhook_secret.as_deref().unwrap_or_default();
            o.insert(
                "WebhookVerification".into(),
                json!({"provider": provider, "secret": secret}),
            );
        }
        Ok(o)
    }
}

/// The Bind option carrying `--mutual-tls-cas`.
const MUTUAL_TLS_CA: &str = "MutualTLSCA";

#[derive(Args)]
pub struct TcpArgs {
    /// What to forward to: a port (`22`) or `host:port`.
    addr: String,
    /// Public `host:port` to bind (within the server's TCP port range)
    /// instead of a free port.
    #[arg(long)]
    remote_addr: Option<String>,
    /// Let other agents bind the same address with pooling on.
    #[arg(long)]
    pooling_enabled: bool,
    /// Send the upstream a PROXY protocol header (version 1 or 2) with the
    /// client's address ahead of each connection's bytes.
    #[arg(long, value_parser = clap::value_parser!(u8).range(1..=2))]
    proxy_proto: Option<u8>,
    #[command(flatten)]
    conn: ConnectArgs,
}

#[derive(Args)]
pub struct TlsArgs {
    /// What to forward to: a port (`443`) or `host:port`; with --crt/--key,
    /// an `https://` address re-encrypts to the upstream.
    addr: String,
    /// Hostname to serve on instead of a random subdomain; `*.example.com`
    /// binds a wildcard.
    #[arg(long, alias = "hostname", alias = "url", conflicts_with = "subdomain")]
    domain: Option<String>,
    /// A subdomain of the server's base domain.
    #[arg(long)]
    subdomain: Option<String>,
    /// Terminate TLS in the agent with this PEM certificate (chain)...
    #[arg(long, requires = "key")]
    crt: Option<PathBuf>,
    /// ...and this PEM private key.
    #[arg(long, requires = "crt")]
    key: Option<PathBuf>,
    /// Let other agents bind the same name with pooling on.
    #[arg(long)]
    pooling_enabled: bool,
    /// Send the upstream a PROXY protocol header (version 1 or 2) ahead of
    /// the TLS bytes (passthrough only).
    #[arg(long, value_parser = clap::value_parser!(u8).range(1..=2), conflicts_with = "crt")]
    proxy_proto: Option<u8>,
    #[command(flatten)]
    conn: ConnectArgs,
}

#[derive(Args)]
pub struct TunnelArgs {
    /// What to forward to: a port (`8080`), `host:port` or an http(s):// URL.
    addr: String,
    /// A label `key=value` (repeatable): the tunnel serves the routes of
    /// API edges whose tunnel-group backend selects its labels.
    #[arg(long = "label", value_name = "KEY=VALUE", required = true)]
    labels: Vec<String>,
    #[command(flatten)]
    conn: ConnectArgs,
}

/// How to reach the edge; shared by every tunnel command.
#[derive(Args)]
pub struct ConnectArgs {
    /// The edge's agent address `host:port` [default: the local server's].
    #[arg(long, env = "GANGWAY_SERVER_ADDR")]
    server_addr: Option<String>,
    /// Authtoken [default: the local server's].
    #[arg(long, env = "GANGWAY_AUTHTOKEN")]
    authtoken: Option<String>,
    /// PEM CA certificate to trust for the edge [default: the local server's dev CA, else system roots].
    #[arg(long)]
    ca_cert: Option<PathBuf>,
    /// Data dir of the local server to take defaults from.
    #[arg(long, env = "GANGWAY_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Opaque metadata (e.g. JSON) the edge keeps with this session and
    /// its tunnels; shown in the edge's log and tunnel listings.
    #[arg(long, default_value = "")]
    metadata: String,
    /// The region you expect (`us`, `eu`, ...): a Gangway edge serves one
    /// region, which is reported when the session starts; a mismatch is
    /// pointed out.
    #[arg(long)]
    region: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum AgentCmdError {
    #[error("{0}")]
    Usage(String),
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Agent(#[from] gangway_agent::AgentError),
    #[error("starting runtime: {0}")]
    Runtime(std::io::Error),
}

fn local_server(data_dir: Option<PathBuf>) -> Option<ServerInfo> {
    let dir = data_dir.or_else(|| default_data_dir().ok())?;
    let bytes = std::fs::read(dir.join(SERVER_INFO_FILE)).ok()?;
    ServerInfo::from_json(&bytes).ok()
}

fn options(
    args: &ConnectArgs,
    mut tunnels: Vec<TunnelSpec>,
) -> Result<AgentOptions, AgentCmdError> {
    for t in &mut tunnels {
        t.metadata = args.metadata.clone();
    }
    let local = local_server(args.data_dir.clone());
    let server_addr = args
        .server_addr
        .clone()
        .or_else(|| local.as_ref().map(|i| i.agent_addr.clone()))
        .ok_or_else(|| {
            AgentCmdError::Usage(
                "no --server-addr given and no local `gangway server` found (start one, or pass --server-addr and --authtoken)".into(),
            )
        })?;
    let authtoken = args
        .authtoken
        .clone()
        .or_else(|| local.as_ref().map(|i| i.authtoken.clone()))
        .ok_or_else(|| {
            AgentCmdError::Usage("no --authtoken given (or GANGWAY_AUTHTOKEN)".into())
        })?;
    let ca_path = args
        .ca_cert
        .clone()
        .or_else(|| local.as_ref().map(|i| PathBuf::from(&i.ca_cert)));
    let ca_pem = match ca_path {
        Some(path) => {
            Some(std::fs::read(&path).map_err(|source| AgentCmdError::Read { path, source })?)
        }
        None => None,
    };
    Ok(AgentOptions {
        server_addr,
        authtoken,
        ca_pem,
        tunnels,
        heartbeat_interval: DEFAULT_INTERVAL,
        heartbeat_tolerance: DEFAULT_TOLERANCE,
        metadata: args.metadata.clone(),
    })
}

/// `file:///abs/path` → the directory, which must exist.
fn file_root(addr: &str) -> Result<Option<PathBuf>, AgentCmdError> {
    let Some(path) = addr.strip_prefix("file://") else {
        return Ok(None);
    };
    let path = PathBuf::from(path);
    if !path.is_absolute() || !path.is_dir() {
        return Err(AgentCmdError::Usage(format!(
            "{addr}: file:// needs the absolute path of an existing directory"
        )));
    }
    Ok(Some(path))
}

pub fn run_http(args: HttpArgs) -> Result<(), AgentCmdError> {
    let serve_dir = file_root(&args.addr)?;
    let upstream = match serve_dir {
        // The file server answers itself; nothing is dialed.
        Some(_) => Upstream {
            host: "localhost".into(),
            port: 80,
            tls: false,
        },
        None => Upstream::parse(&args.addr).map_err(|e| AgentCmdError::Usage(e.to_string()))?,
    };
    let mut schemes: Vec<String> = Vec::new();
    for s in &args.scheme {
        let s = s.trim().to_ascii_lowercase();
        if s != "http" && s != "https" {
            return Err(AgentCmdError::Usage(format!(
                "--scheme {s:?}: expected http, https or http,https"
            )));
        }
        if !schemes.contains(&s) {
            schemes.push(s);
        }
    }
    // HTTPS first: its URL is the one people copy, and the HTTP tunnel
    // takes the same name.
    schemes.sort_by_key(|s| s != "https");
    let proto = schemes.first().map_or("https", String::as_str);
    let first = TunnelSpec {
        domain: args.domain.clone(),
        subdomain: args.subdomain.clone(),
        pooling: args.pooling_enabled,
        basic_auth: args
            .basic_auth
            .iter()
            .map(|pair| match pair.split_once(':') {
                Some((u, p)) => Ok((u.to_string(), p.to_string())),
                None => Err(AgentCmdError::Usage(format!(
                    "--basic-auth {pair:?}: expected USER:PASSWORD"
                ))),
            })
            .collect::<Result<_, _>>()?,
        host_header: args.host_header.clone(),
        serve_dir,
        modules: args.modules.bind_opts()?,
        ..TunnelSpec::new(proto, upstream)
    };
    let mut tunnels = vec![first.clone()];
    if let Some(second) = schemes.get(1) {
        // Plain HTTP carries no client certificate.
        let mut modules = first.modules.clone();
        modules.remove(MUTUAL_TLS_CA);
        tunnels.push(TunnelSpec {
            proto: second.clone(),
            domain: None,
            subdomain: None,
            same_host_as: Some(0),
            modules,
            ..first
        });
    }
    run_agent(options(&args.conn, tunnels)?, args.conn.region.clone())
}

pub fn run_tunnel(args: TunnelArgs) -> Result<(), AgentCmdError> {
    let upstream = Upstream::parse(&args.addr).map_err(|e| AgentCmdError::Usage(e.to_string()))?;
    let mut labels = std::collections::BTreeMap::new();
    for l in &args.labels {
        match l.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() && !v.trim().is_empty() => {
                labels.insert(k.trim().to_string(), v.trim().to_string());
            }
            _ => {
                return Err(AgentCmdError::Usage(format!(
                    "--label {l:?}: expected KEY=VALUE"
                )))
            }
        }
    }
    let tunnel = TunnelSpec {
        labels,
        ..TunnelSpec::new("https", upstream)
    };
    run_agent(options(&args.conn, vec![tunnel])?, args.conn.region.clone())
}

pub fn run_tcp(args: TcpArgs) -> Result<(), AgentCmdError> {
    let mut upstream =
        Upstream::parse(&args.addr).map_err(|e| AgentCmdError::Usage(e.to_string()))?;
    // Raw bytes: whatever the port, the agent does not speak TLS itself.
    upstream.tls = false;
    let tunnel = TunnelSpec {
        remote_addr: args.remote_addr.clone(),
        pooling: args.pooling_enabled,
        proxy_proto: args.proxy_proto.unwrap_or(0),
        ..TunnelSpec::new("tcp", upstream)
    };
    run_agent(options(&args.conn, vec![tunnel])?, args.conn.region.clone())
}

pub fn run_tls(args: TlsArgs) -> Result<(), AgentCmdError> {
    let mut upstream =
        Upstream::parse(&args.addr).map_err(|e| AgentCmdError::Usage(e.to_string()))?;
    let terminate_tls = match (&args.crt, &args.key) {
        (Some(crt), Some(key)) => {
            let read = |path: &PathBuf| {
                std::fs::read(path).map_err(|source| AgentCmdError::Read {
                    path: path.clone(),
                    source,
                })
            };
            let t = TlsTerminator::from_pem(&read(crt)?, &read(key)?)
                .map_err(|e| AgentCmdError::Usage(format!("--crt/--key: {e}")))?;
            Some(t)
        }
        (None, None) => None,
        _ => return Err(AgentCmdError::Usage("--crt and --key go together".into())),
    };
    // Passthrough hands the client's TLS to the upstream as is; after
    // terminating, plaintext goes on unless the address says https://.
    upstream.tls = terminate_tls.is_some() && args.addr.trim().starts_with("https://");
    let tunnel = TunnelSpec {
        domain: args.domain.clone(),
        subdomain: args.subdomain.clone(),
        pooling: args.pooling_enabled,
        terminate_tls,
        proxy_proto: args.proxy_proto.unwrap_or(0),
        ..TunnelSpec::new("tls", upstream)
    };
    run_agent(options(&args.conn, vec![tunnel])?, args.conn.region.clone())
}

/// Runs the agent, printing what users need to see. `region` is the one
/// the user asked for, if any.
fn run_agent(opts: AgentOptions, region: Option<String>) -> Result<(), AgentCmdError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(AgentCmdError::Runtime)?;
    rt.block_on(async move {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let shutdown = CancellationToken::new();
        let agent = tokio::spawn(gangway_agent::run(opts, tx, shutdown.clone()));
        let printer = tokio::spawn(async move {
            while let Some(ev) = rx.recv().await {
                let mut out = std::io::stdout().lock();
                let _ = match ev {
                    AgentEvent::Bound {
                        url,
                        upstream,
                        rebound: false,
                    } => writeln!(out, "Forwarding {url} -> {upstream}"),
                    AgentEvent::Bound {
                        url, rebound: true, ..
                    } => writeln!(out, "Reconnected: {url}"),
                    AgentEvent::Reconnecting { delay, reason } => {
                        writeln!(out, "Session lost ({reason}); reconnecting in {delay:?}")
                    }
                    AgentEvent::Online { region: served } => {
                        let asked = region.as_deref().map(str::trim).unwrap_or_default();
                        if !asked.is_empty() && !asked.eq_ignore_ascii_case(&served) {
                            writeln!(
                                out,
                                "Region {served} (this server serves region {served:?}, not {asked:?})"
                            )
                        } else {
                            writeln!(out, "Region {served}")
                        }
                    }
                };
                let _ = out.flush();
            }
        });
        let mut agent = agent;
        let result = tokio::select! {
            r = &mut agent => r,
            _ = stop_signal() => {
                shutdown.cancel();
                match tokio::time::timeout(SHUTDOWN_GRACE, &mut agent).await {
                    Ok(r) => r,
                    Err(_) => Ok(Ok(())),
                }
            }
        };
        printer.abort();
        match result {
            Ok(r) => r.map_err(AgentCmdError::from),
            Err(e) => Err(AgentCmdError::Usage(format!("agent task failed: {e}"))),
        }
    })
}

/// Ctrl-C, or SIGTERM (systemd, `kill`): both mean "unbind and exit".
async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
