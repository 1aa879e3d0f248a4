//! Agent commands: `gangway http ...`. With no server flags they find the
//! local `gangway server` through its `server.json` and trust its dev CA.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Subcommand};
use gangway_agent::tunnels::{self, CertSource, HttpTunnel, LabeledTunnel, TcpTunnel, TlsTunnel};
use gangway_agent::{inspect, web, AgentState};
use gangway_agent::{AgentEvent, AgentOptions, HttpModules, SpecError, TunnelSpec};
use gangway_config::agent_file::{self, AgentFile, ConsoleUi, TunnelDef, WebAddr};
use gangway_config::proxy_url::ProxyUrl;
use gangway_config::server_info::SERVER_INFO_FILE;
use gangway_config::ServerInfo;
use gangway_proto::heartbeat::{DEFAULT_INTERVAL, DEFAULT_TOLERANCE};
use gangway_proto::msg;
use tokio_util::sync::CancellationToken;

use crate::agent_config;
use crate::console::Console;
use crate::data_dir::default_data_dir;
use crate::logging::{self, LogArgs};

/// After Ctrl-C, give unbinding this long.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

#[derive(Args, Default)]
pub struct HttpArgs {
    /// What to forward to: a port (`8080`), `host:port`, an http(s):// URL,
    /// or `file:///abs/dir` to serve a directory.
    pub(crate) addr: String,
    /// Hostname to serve on instead of a random subdomain; `*.example.com`
    /// binds a wildcard.
    #[arg(long, alias = "hostname", alias = "url", conflicts_with = "subdomain")]
    pub(crate) domain: Option<String>,
    /// A subdomain of the server's base domain (`--subdomain demo` →
    /// demo.gangway.localhost).
    #[arg(long)]
    pub(crate) subdomain: Option<String>,
    /// Let other agents bind the same endpoint with pooling on and share
    /// its traffic (round robin).
    #[arg(long)]
    pub(crate) pooling_enabled: bool,
    /// Require HTTP basic auth, `user:password` (password 8-128 bytes);
    /// repeat for several users.
    #[arg(long = "basic-auth", value_name = "USER:PASSWORD")]
    pub(crate) basic_auth: Vec<String>,
    /// Which public schemes serve the endpoint: `https` (default), `http`,
    /// or both (`--scheme http,https`).
    #[arg(long, value_delimiter = ',', default_value = "https")]
    pub(crate) scheme: Vec<String>,
    /// Host header sent to the app: `rewrite` (the upstream's host:port),
    /// a literal value, or `preserve` (the default: the public hostname).
    #[arg(long)]
    pub(crate) host_header: Option<String>,
    /// Capture requests for the web inspector; `--inspect=false` turns it
    /// off.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set,
          num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub(crate) inspect: bool,
    #[command(flatten)]
    pub(crate) modules: ModuleArgs,
    #[command(flatten)]
    pub(crate) conn: ConnectArgs,
}

/// Route modules the edge runs for an HTTP endpoint; the flags are
/// ngrok's agent flags.
#[derive(Args, Default)]
pub struct ModuleArgs {
    /// Allow only clients in this CIDR (repeatable).
    #[arg(long = "cidr-allow", value_name = "CIDR")]
    pub(crate) cidr_allow: Vec<String>,
    /// Refuse clients in this CIDR (repeatable).
    #[arg(long = "cidr-deny", value_name = "CIDR")]
    pub(crate) cidr_deny: Vec<String>,
    /// Compress responses (gzip or deflate, as the client accepts).
    #[arg(long)]
    pub(crate) compression: bool,
    /// Trip a circuit breaker when this share (0-1) of responses are 5xx.
    #[arg(long = "circuit-breaker", value_name = "RATIO")]
    pub(crate) circuit_breaker: Option<f64>,
    /// Header to add to requests, `name:value` (repeatable; `${...}`
    /// interpolates, e.g. `${conn.client_ip}`).
    #[arg(long = "request-header-add", value_name = "NAME:VALUE")]
    pub(crate) request_header_add: Vec<String>,
    /// Header to remove from requests (repeatable).
    #[arg(long = "request-header-remove", value_name = "NAME")]
    pub(crate) request_header_remove: Vec<String>,
    /// Header to add to responses, `name:value` (repeatable).
    #[arg(long = "response-header-add", value_name = "NAME:VALUE")]
    pub(crate) response_header_add: Vec<String>,
    /// Header to remove from responses (repeatable).
    #[arg(long = "response-header-remove", value_name = "NAME")]
    pub(crate) response_header_remove: Vec<String>,
    /// Serve user agents matching this regex even if a deny matches.
    #[arg(long = "ua-filter-allow", value_name = "REGEX")]
    pub(crate) ua_filter_allow: Vec<String>,
    /// Refuse user agents matching this regex.
    #[arg(long = "ua-filter-deny", value_name = "REGEX")]
    pub(crate) ua_filter_deny: Vec<String>,
    /// Verify webhook signatures from this provider (`github`, `stripe`,
    /// `slack`, ...) before requests reach the app.
    /// (`sns` needs no secret; the others refuse to start without one.)
    #[arg(long = "verify-webhook", value_name = "PROVIDER")]
    pub(crate) verify_webhook: Option<String>,
    /// The provider's signing secret for --verify-webhook.
    #[arg(
        long = "verify-webhook-secret",
        value_name = "SECRET",
        requires = "verify_webhook"
    )]
    pub(crate) verify_webhook_secret: Option<String>,
    /// Require client certificates issued by the CAs in this PEM file
    /// (mutual TLS at the edge; HTTPS only).
    #[arg(long = "mutual-tls-cas", value_name = "PATH")]
    pub(crate) mutual_tls_cas: Option<PathBuf>,
    /// Accept only websocket upgrades and relay their binary messages as a
    /// raw TCP connection to ADDR (e.g. a VNC or SSH port).
    #[arg(long = "websocket-tcp-converter")]
    pub(crate) websocket_tcp_converter: bool,
    /// Run the Traffic Policy in this file (YAML or JSON) at the edge, as
    /// `ngrok http --traffic-policy-file` does.
    #[arg(long = "traffic-policy-file", value_name = "PATH")]
    pub(crate) traffic_policy_file: Option<PathBuf>,
}

impl ModuleArgs {
    /// The route modules these flags ask for.
    fn modules(&self) -> Result<HttpModules, AgentCmdError> {
        let lists = |add: &[String], remove: &[String]| {
            (!add.is_empty() || !remove.is_empty()).then(|| msg::Headers {
                add: add.to_vec(),
                remove: remove.to_vec(),
            })
        };
        let mutual_tls_cas = self
            .mutual_tls_cas
            .as_deref()
            .map(tunnels::read)
            .transpose()?;
        let traffic_policy = self
            .traffic_policy_file
            .as_deref()
            .map(tunnels::read_text)
            .transpose()?;
        Ok(HttpModules {
            ip_restriction: (!self.cidr_allow.is_empty() || !self.cidr_deny.is_empty()).then(
                || msg::IpRestriction {
                    allow_cidrs: self.cidr_allow.clone(),
                    deny_cidrs: self.cidr_deny.clone(),
                },
            ),
            compression: self.compression,
            circuit_breaker: self
                .circuit_breaker
                .map(|error_threshold| msg::CircuitBreaker { error_threshold }),
            request_headers: lists(&self.request_header_add, &self.request_header_remove),
            response_headers: lists(&self.response_header_add, &self.response_header_remove),
            user_agent_filter: (!self.ua_filter_allow.is_empty()
                || !self.ua_filter_deny.is_empty())
            .then(|| msg::UserAgentFilter {
                allow: self.ua_filter_allow.clone(),
                deny: self.ua_filter_deny.clone(),
            }),
            webhook_verification: self.verify_webhook.as_ref().map(|provider| {
                msg::WebhookVerification {
                    provider: provider.clone(),
                    secret: self.verify_webhook_secret.clone().unwrap_or_default(),
                    sealed_secret: String::new(),
                }
            }),
            mutual_tls_cas,
            websocket_tcp_converter: self.websocket_tcp_converter,
            traffic_policy,
        })
    }
}

#[derive(Args, Default)]
pub struct TcpArgs {
    /// What to forward to: a port (`22`) or `host:port`.
    pub(crate) addr: String,
    /// Public `host:port` to bind (within the server's TCP port range)
    /// instead of a free port.
    #[arg(long)]
    pub(crate) remote_addr: Option<String>,
    /// Let other agents bind the same address with pooling on.
    #[arg(long)]
    pub(crate) pooling_enabled: bool,
    /// Send the upstream a PROXY protocol header (version 1 or 2) with the
    /// client's address ahead of each connection's bytes.
    #[arg(long, value_parser = clap::value_parser!(u8).range(1..=2))]
    pub(crate) proxy_proto: Option<u8>,
    #[command(flatten)]
    pub(crate) conn: ConnectArgs,
}

#[derive(Args, Default)]
pub struct TlsArgs {
    /// What to forward to: a port (`443`) or `host:port`; with --crt/--key,
    /// an `https://` address re-encrypts to the upstream.
    pub(crate) addr: String,
    /// Hostname to serve on instead of a random subdomain; `*.example.com`
    /// binds a wildcard.
    #[arg(long, alias = "hostname", alias = "url", conflicts_with = "subdomain")]
    pub(crate) domain: Option<String>,
    /// A subdomain of the server's base domain.
    #[arg(long)]
    pub(crate) subdomain: Option<String>,
    /// Terminate TLS in the agent with this PEM certificate (chain)...
    #[arg(long, requires = "key")]
    pub(crate) crt: Option<PathBuf>,
    /// ...and this PEM private key.
    #[arg(long, requires = "crt")]
    pub(crate) key: Option<PathBuf>,
    /// Let other agents bind the same name with pooling on.
    #[arg(long)]
    pub(crate) pooling_enabled: bool,
    /// Send the upstream a PROXY protocol header (version 1 or 2) ahead of
    /// the TLS bytes (passthrough only).
    #[arg(long, value_parser = clap::value_parser!(u8).range(1..=2), conflicts_with = "crt")]
    pub(crate) proxy_proto: Option<u8>,
    #[command(flatten)]
    pub(crate) conn: ConnectArgs,
}

#[derive(Args, Default)]
pub struct TunnelArgs {
    /// What to forward to: a port (`8080`), `host:port` or an http(s):// URL.
    pub(crate) addr: String,
    /// A label `key=value` (repeatable): the tunnel serves the routes of
    /// API edges whose tunnel-group backend selects its labels.
    #[arg(long = "label", value_name = "KEY=VALUE", required = true)]
    pub(crate) labels: Vec<String>,
    #[command(flatten)]
    pub(crate) conn: ConnectArgs,
}

/// How to reach the edge; shared by every tunnel command.
#[derive(Args, Default)]
pub struct ConnectArgs {
    /// The edge's agent address `host:port` [default: the local server's].
    #[arg(long, env = "GANGWAY_SERVER_ADDR")]
    pub(crate) server_addr: Option<String>,
    /// Authtoken [default: the local server's].
    #[arg(long, env = "GANGWAY_AUTHTOKEN")]
    pub(crate) authtoken: Option<String>,
    /// PEM CA certificate to trust for the edge [default: the local server's dev CA, else system roots].
    #[arg(long)]
    pub(crate) ca_cert: Option<PathBuf>,
    /// Data dir of the local server to take defaults from.
    #[arg(long, env = "GANGWAY_DATA_DIR")]
    pub(crate) data_dir: Option<PathBuf>,
    /// Opaque metadata (e.g. JSON) the edge keeps with this session and
    /// its tunnels; shown in the edge's log and tunnel listings.
    #[arg(long, default_value = "")]
    pub(crate) metadata: String,
    /// The region you expect (`us`, `eu`, ...): a Gangway edge serves one
    /// region, which is reported when the session starts; a mismatch is
    /// pointed out.
    #[arg(long)]
    pub(crate) region: Option<String>,
    /// Config file (ngrok.yml v2 or v3 format); repeat to merge several in
    /// order [default: ~/.config/gangway/gangway.yml if it exists].
    #[arg(long = "config", value_name = "PATH")]
    pub(crate) config: Vec<PathBuf>,
    /// Address of the web inspection interface and agent API, or `false`
    /// [default: 127.0.0.1:4040, or the next free port].
    #[arg(long, value_name = "ADDR")]
    pub(crate) web_addr: Option<String>,
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
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error("starting runtime: {0}")]
    Runtime(std::io::Error),
    /// A config file problem, already naming the file, line and key.
    #[error("{0}")]
    Config(String),
}

fn local_server(data_dir: Option<PathBuf>) -> Option<ServerInfo> {
    let dir = data_dir.or_else(|| default_data_dir().ok())?;
    let bytes = std::fs::read(dir.join(SERVER_INFO_FILE)).ok()?;
    ServerInfo::from_json(&bytes).ok()
}

/// Flags first, then the config file, then the local server's defaults.
fn options(
    args: &ConnectArgs,
    file: &AgentFile,
    mut tunnels: Vec<TunnelSpec>,
) -> Result<AgentOptions, AgentCmdError> {
    let metadata = if args.metadata.is_empty() {
        file.metadata.clone().unwrap_or_default()
    } else {
        args.metadata.clone()
    };
    for t in &mut tunnels {
        if t.metadata.is_empty() {
            t.metadata = metadata.clone();
        }
    }
    let local = local_server(args.data_dir.clone());
    let server_addr = args
        .server_addr
        .clone()
        .or_else(|| file.server_addr.clone())
        .or_else(|| local.as_ref().map(|i| i.agent_addr.clone()))
        .ok_or_else(|| {
            AgentCmdError::Usage(
                "no --server-addr given and no local `gangway server` found (start one, or pass --server-addr and --authtoken)".into(),
            )
        })?;
    let authtoken = args
        .authtoken
        .clone()
        .or_else(|| file.authtoken.clone())
        .or_else(|| local.as_ref().map(|i| i.authtoken.clone()))
        .ok_or_else(|| {
            AgentCmdError::Usage(
                "no --authtoken given (or GANGWAY_AUTHTOKEN, or `gangway config add-authtoken`)"
                    .into(),
            )
        })?;
    let file_ca = file
        .root_cas
        .as_deref()
        .filter(|r| !matches!(*r, "trusted" | "host" | ""))
        .map(PathBuf::from);
    let ca_path = args
        .ca_cert
        .clone()
        .or(file_ca)
        .or_else(|| local.as_ref().map(|i| PathBuf::from(&i.ca_cert)));
    let ca_pem = match ca_path {
        Some(path) => {
            Some(std::fs::read(&path).map_err(|source| AgentCmdError::Read { path, source })?)
        }
        None => None,
    };
    // The file's proxy_url, else the environment's (as Go programs read it).
    let proxy = match file.proxy_url.clone() {
        Some(p) => Some(p),
        None => ProxyUrl::from_env(&server_addr)
            .transpose()
            .map_err(|e| AgentCmdError::Usage(format!("HTTPS_PROXY/HTTP_PROXY: {e}")))?,
    };
    Ok(AgentOptions {
        server_addr,
        authtoken,
        proxy,
        ca_pem,
        tunnels,
        heartbeat_interval: DEFAULT_INTERVAL,
        heartbeat_tolerance: DEFAULT_TOLERANCE,
        metadata,
        state: None,
    })
}

/// The tunnels `gangway http` opens: one per scheme, HTTPS first.
pub fn http_specs(args: &HttpArgs) -> Result<Vec<TunnelSpec>, AgentCmdError> {
    let tunnel = HttpTunnel {
        addr: args.addr.clone(),
        domain: args.domain.clone(),
        subdomain: args.subdomain.clone(),
        pooling: args.pooling_enabled,
        basic_auth: args.basic_auth.clone(),
        schemes: args.scheme.clone(),
        host_header: args.host_header.clone(),
        inspect: args.inspect,
        modules: args.modules.modules()?,
    };
    Ok(tunnel.specs()?)
}

pub fn run_http(args: HttpArgs, logs: &LogArgs) -> Result<(), AgentCmdError> {
    let tunnels = http_specs(&args)?;
    run_agent(&args.conn, tunnels, logs)
}

pub fn tunnel_specs(args: &TunnelArgs) -> Result<Vec<TunnelSpec>, AgentCmdError> {
    let tunnel = LabeledTunnel {
        addr: args.addr.clone(),
        labels: args.labels.clone(),
    };
    Ok(tunnel.specs()?)
}

pub fn run_tunnel(args: TunnelArgs, logs: &LogArgs) -> Result<(), AgentCmdError> {
    let tunnels = tunnel_specs(&args)?;
    run_agent(&args.conn, tunnels, logs)
}

pub fn tcp_specs(args: &TcpArgs) -> Result<Vec<TunnelSpec>, AgentCmdError> {
    let tunnel = TcpTunnel {
        addr: args.addr.clone(),
        remote_addr: args.remote_addr.clone(),
        pooling: args.pooling_enabled,
        proxy_proto: args.proxy_proto,
    };
    Ok(tunnel.specs()?)
}

pub fn run_tcp(args: TcpArgs, logs: &LogArgs) -> Result<(), AgentCmdError> {
    let tunnels = tcp_specs(&args)?;
    run_agent(&args.conn, tunnels, logs)
}

pub fn tls_specs(args: &TlsArgs) -> Result<Vec<TunnelSpec>, AgentCmdError> {
    let cert = match (&args.crt, &args.key) {
        (Some(crt), Some(key)) => Some(CertSource::Files {
            crt: crt.clone(),
            key: key.clone(),
        }),
        (None, None) => None,
        _ => return Err(AgentCmdError::Usage("--crt and --key go together".into())),
    };
    let tunnel = TlsTunnel {
        addr: args.addr.clone(),
        domain: args.domain.clone(),
        subdomain: args.subdomain.clone(),
        cert,
        pooling: args.pooling_enabled,
        proxy_proto: args.proxy_proto,
    };
    Ok(tunnel.specs()?)
}

pub fn run_tls(args: TlsArgs, logs: &LogArgs) -> Result<(), AgentCmdError> {
    let tunnels = tls_specs(&args)?;
    run_agent(&args.conn, tunnels, logs)
}

/// `gangway start NAME... | --all | --none`: tunnels from the config file.
#[derive(Args)]
pub struct StartArgs {
    /// Names of tunnels (v2 `tunnels:`) or endpoints (v3 `endpoints:`) in
    /// the config file.
    names: Vec<String>,
    /// Start every tunnel in the config file.
    #[arg(long, conflicts_with_all = ["names", "none"])]
    all: bool,
    /// Start none: just the session, web interface and agent API (start
    /// tunnels with `POST /api/tunnels`).
    #[arg(long, conflicts_with = "names")]
    none: bool,
    #[command(flatten)]
    conn: ConnectArgs,
}

pub fn run_start(args: StartArgs, logs: &LogArgs) -> Result<(), AgentCmdError> {
    let file = agent_config::load(&args.conn.config)?;
    let defs: Vec<&TunnelDef> = if args.all {
        file.tunnels.iter().collect()
    } else if args.none {
        Vec::new()
    } else if args.names.is_empty() {
        return Err(AgentCmdError::Usage(
            "name the tunnels to start, or pass --all or --none".into(),
        ));
    } else {
        args.names
            .iter()
            .map(|n| {
                file.tunnels.iter().find(|t| &t.name == n).ok_or_else(|| {
                    let known: Vec<&str> = file.tunnels.iter().map(|t| t.name.as_str()).collect();
                    AgentCmdError::Usage(format!(
                        "no tunnel named {n:?} in the config file (it has: {})",
                        if known.is_empty() {
                            "none".to_string()
                        } else {
                            known.join(", ")
                        }
                    ))
                })
            })
            .collect::<Result<_, _>>()?
    };
    let mut tunnels = Vec::new();
    for def in defs {
        let base = tunnels.len();
        let mut specs = tunnels::from_def(def)?;
        for s in &mut specs {
            s.same_host_as = s.same_host_as.map(|k| base + k);
        }
        tunnels.extend(specs);
    }
    run_agent_with(&args.conn, file, tunnels, logs)
}

/// `gangway config ...`
#[derive(Subcommand)]
pub enum ConfigCmd {
    /// Save the authtoken in the config file.
    AddAuthtoken(AuthtokenArgs),
    /// Check the config file(s) and say what is wrong, with the line.
    Check(ConfigPathArgs),
}

#[derive(Args)]
pub struct AuthtokenArgs {
    token: String,
    /// The config file to write [default: ~/.config/gangway/gangway.yml].
    #[arg(long = "config", value_name = "PATH")]
    config: Option<PathBuf>,
}

#[derive(Args)]
pub struct ConfigPathArgs {
    /// Config files to check, merged in order [default: ~/.config/gangway/gangway.yml].
    #[arg(long = "config", value_name = "PATH")]
    config: Vec<PathBuf>,
}

pub fn run_config(cmd: ConfigCmd) -> Result<(), AgentCmdError> {
    match cmd {
        ConfigCmd::AddAuthtoken(a) => add_authtoken(a),
        ConfigCmd::Check(a) => {
            let paths = agent_config::paths(&a.config)?;
            if paths.is_empty() {
                return Err(AgentCmdError::Usage(
                    "no config file: none given with --config, and none at the default location"
                        .into(),
                ));
            }
            agent_config::load(&a.config)?;
            for p in paths {
                println!("Valid configuration file at {}", p.display());
            }
            Ok(())
        }
    }
}

pub fn add_authtoken(a: AuthtokenArgs) -> Result<(), AgentCmdError> {
    let path = match a.config {
        Some(p) => p,
        None => agent_file::default_path().ok_or_else(|| {
            AgentCmdError::Usage("no config directory on this system; pass --config".into())
        })?,
    };
    agent_file::save_authtoken(&path, a.token.trim())
        .map_err(|e| AgentCmdError::Config(e.to_string()))?;
    println!("Authtoken saved to configuration file: {}", path.display());
    Ok(())
}

fn run_agent(
    conn: &ConnectArgs,
    tunnels: Vec<TunnelSpec>,
    logs: &LogArgs,
) -> Result<(), AgentCmdError> {
    let file = agent_config::load(&conn.config)?;
    run_agent_with(conn, file, tunnels, logs)
}

/// Runs the agent with its local views: the web interface (unless off),
/// the console UI on a terminal, plain lines otherwise.
fn run_agent_with(
    conn: &ConnectArgs,
    file: AgentFile,
    tunnels: Vec<TunnelSpec>,
    logs: &LogArgs,
) -> Result<(), AgentCmdError> {
    let region = conn.region.clone().or_else(|| file.region.clone());
    let mut opts = options(conn, &file, tunnels)?;
    let console = match file.console_ui.as_ref() {
        Some(ConsoleUi::On) => true,
        Some(ConsoleUi::Off) => false,
        Some(ConsoleUi::IfTty) | None => std::io::stdout().is_terminal(),
    };
    logging::init_from(logs, Some(&file), console).map_err(AgentCmdError::Usage)?;

    let db_bytes = file
        .inspect_db_size
        .map(|n| usize::try_from(n).unwrap_or(usize::MAX))
        .unwrap_or(inspect::DEFAULT_DB_BYTES);
    let inspector = inspect::Inspector::new(db_bytes, inspect::DEFAULT_BODY_LIMIT);
    let state = AgentState::new(inspector, &opts.server_addr);
    opts.state = Some(state.clone());
    // `--web-addr` wins over the file; the default moves on to the next
    // free port when 4040 is taken, an explicit address does not.
    let web_addr = match (conn.web_addr.as_deref(), &file.web_addr) {
        (Some("false"), _) => None,
        (Some(a), _) => Some((a.to_string(), false)),
        (None, Some(WebAddr::Disabled)) => None,
        (None, Some(WebAddr::Addr(a))) => Some((a.clone(), false)),
        (None, None) => Some((DEFAULT_WEB_ADDR.to_string(), true)),
    };
    let file = Arc::new(file);

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(AgentCmdError::Runtime)?;
    rt.block_on(async move {
        let shutdown = CancellationToken::new();
        let listener = match web_addr {
            Some((addr, next_free)) => match web::bind(&addr, next_free).await {
                Ok(l) => Some(l),
                // Another agent has the default ports: run without the
                // web interface rather than not at all.
                Err(e) if next_free => {
                    eprintln!("gangway: web interface off: {addr} and the next ports: {e}");
                    None
                }
                Err(e) => {
                    return Err(AgentCmdError::Usage(format!(
                        "web interface at {addr}: {e}"
                    )))
                }
            },
            None => None,
        };
        let web_url = match listener {
            Some(listener) => {
                let local = listener.local_addr().map_err(AgentCmdError::Runtime)?;
                let parser = tunnels::api_tunnel_parser(file.clone());
                tokio::spawn(web::serve(
                    listener,
                    state.clone(),
                    parser,
                    file.web_allow_hosts.clone().unwrap_or_default(),
                    shutdown.clone(),
                ));
                Some(format!("http://{local}"))
            }
            None => None,
        };
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let agent = tokio::spawn(gangway_agent::run(opts, tx, shutdown.clone()));
        let view = if console {
            let c = Console {
                state: state.clone(),
                web_url: web_url.clone(),
                region_asked: region.clone(),
            };
            let stop = shutdown.clone();
            // Events are shown by the console from the shared state.
            tokio::spawn(async move {
                let drain = async { while rx.recv().await.is_some() {} };
                tokio::join!(c.run(stop), drain);
            })
        } else {
            tokio::spawn(print_events(rx, region.clone(), web_url.clone()))
        };
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
        shutdown.cancel();
        if console {
            // Let the console restore the terminal.
            let _ = tokio::time::timeout(Duration::from_millis(500), view).await;
        } else {
            view.abort();
        }
        match result {
            Ok(r) => r.map_err(AgentCmdError::from),
            Err(e) => Err(AgentCmdError::Usage(format!("agent task failed: {e}"))),
        }
    })
}

/// The ngrok agent's default web interface address.
const DEFAULT_WEB_ADDR: &str = "127.0.0.1:4040";

/// Plain lines for logs and pipes (no terminal).
async fn print_events(
    mut rx: tokio::sync::mpsc::UnboundedReceiver<AgentEvent>,
    region: Option<String>,
    web_url: Option<String>,
) {
    if let Some(u) = &web_url {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "Web Interface {u}");
        let _ = out.flush();
    }
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
