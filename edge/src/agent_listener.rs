//! Agent sessions: TLS (terminated by the Pingora listener), then muxado in
//! the server role. Streams the agent opens are typed: heartbeats are
//! echoed, Auth must succeed before Bind/Unbind, and a session that stops
//! beating is reaped. A broken or hostile agent closes only its own session.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use gangway_config::control::Acl;
use gangway_config::hostname::{normalize_hostname, validate_label};
use gangway_config::resources::token_hash;
use gangway_config::EdgeConfig;
use gangway_proto::codec::MAX_RPC_BYTES;
use gangway_proto::heartbeat::{self, Liveness};
use gangway_proto::msg::{
    self, error_string, Auth, AuthResp, AuthRespExtra, Bind, BindResp, HttpOpts, MsgError,
    MutualTlsCa, TcpOpts, TlsOpts,
};
use gangway_proto::rpc;
use gangway_proto::{ErrorCode, Role, Session, SessionConfig, Stream};
use pingora_core::apps::ServerApp;
use pingora_core::protocols::Stream as L4Stream;
use pingora_core::server::ShutdownWatch;
use serde::Serialize;
use tokio::io::AsyncReadExt;
use tracing::{debug, info, warn};

use crate::certs::CertKey;
use crate::client_tls::{parse_ca_bundle, ClientTls};
use crate::errors::RpcRefusal;
use crate::registry::{now_ms, Registry, SessionInfo, SessionKey, TunnelInfo};
use crate::route_table::TunnelOptions;
use gangway_config::codes;
use gangway_config::control::IpSet;
use gangway_modules::basic_auth::BasicAuthConfig;
use gangway_modules::chain::{Chain, Module};
use gangway_modules::circuit_breaker::BreakerConfig;
use gangway_modules::compile::{ChainConfig, FieldNames, BIND_FIELDS};
use gangway_modules::headers::HeaderRewriteConfig;
use gangway_modules::traffic_policy::{TerminateTls, TrafficPolicy, TrafficPolicyConfig};
use gangway_modules::user_agent::UserAgentFilterConfig;
use gangway_modules::webhook::WebhookVerificationConfig;
use gangway_modules::ConfigError;
use pingora_core::tls::ssl::{SslAcceptor, SslVersion};

/// An agent must authenticate this soon after connecting.
pub const AUTH_TIMEOUT: Duration = Duration::from_secs(30);
/// A stream must announce its type this soon after opening.
pub const STREAM_TYPE_TIMEOUT: Duration = Duration::from_secs(10);
/// Protocol versions we speak, preferred first.
const SUPPORTED_VERSIONS: [&str; 2] = ["3", "2"];

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
    credential: std::sync::OnceLock<Credential>,
}

/// The authtoken a session presented.
enum Credential {
    /// One of the edge's configured tokens: no restrictions.
    Static,
    /// A stored credential, by token hash; its ACL is read at each bind
    /// so an update (or revocation) applies to the next one.
    Stored(String),
}

/// Bind rules in force for a session: `None` means unrestricted.
type Rules = Option<Acl>;

async fn serve(app: Arc<AgentApp>, io: L4Stream, peer: String) {
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
        credential: std::sync::OnceLock::new(),
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

/// Random lowercase alphanumerics for ids and cookies.
fn random_id(len: usize) -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::thread_rng();
    (0..len)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect()
}

/// The random subdomain of a tunnel is derived from its id, so an agent
/// that reconnects and rebinds its tunnel id gets the same URL back.
fn subdomain_for(tunnel_id: &str) -> String {
    // FNV-1a: stable across builds, unlike std's hasher.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in tunnel_id.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{:012x}", h & 0xFFFF_FFFF_FFFF)
}

/// Compiles what an HTTP Bind asks the edge to enforce into the
/// endpoint's module chain, through the same compiler as API routes.
/// Options this edge cannot apply yet refuse the Bind rather than serve
/// the endpoint unprotected.
fn compile_http_options(opts: &HttpOpts) -> Result<TunnelOptions, RpcRefusal> {
    let unsupported = [
        ("OAuth", opts.oauth.as_ref().is_some_and(|v| !v.is_null())),
        ("OIDC", opts.oidc.as_ref().is_some_and(|v| !v.is_null())),
    ];
    if let Some((name, _)) = unsupported.iter().find(|(_, set)| *set) {
        return Err(RpcRefusal::new(codes::INVALID_OPTIONS, format!("{name} is not supported by this edge yet; the endpoint was not started rather than served without it.")));
    }
    let (config, names) = chain_config(opts)?;
    let chain = config.compile(&names).map_err(|e| {
        let basic_auth = e.field.starts_with(names.basic_auth);
        // ngrok's codes: 359 for a basic auth username, 360 for the password.
        let code = if basic_auth && e.field.ends_with(".username") {
            codes::BAD_BASIC_AUTH_USER
        } else if basic_auth {
            codes::BAD_BASIC_AUTH
        } else {
            codes::INVALID_OPTIONS
        };
        RpcRefusal::new(code, format!("Invalid {e}."))
    })?;
    let client_tls = match client_ca_bundle(opts.mutual_tls_ca.as_ref(), "MutualTLSCA")? {
        Some(pem) => Some(Arc::new(ClientTls::from_ca_bundle(&pem).map_err(|e| {
            RpcRefusal::new(codes::INVALID_OPTIONS, format!("Invalid MutualTLSCA: {e}."))
        })?)),
        None => None,
    };
    Ok(TunnelOptions {
        chain: Arc::new(chain),
        proxy_proto: proxy_proto_version(opts.proxy_proto)?,
        client_tls,
        ..TunnelOptions::default()
    })
}

/// An HTTP Bind's route-module options as the chain compiler takes them,
/// and the names its errors use. What the wire carries but the edge
/// cannot honour (hashed passwords, sealed secrets) refuses the Bind.
fn chain_config(opts: &HttpOpts) -> Result<(ChainConfig, FieldNames), RpcRefusal> {
    let invalid = |e: ConfigError| RpcRefusal::new(codes::INVALID_OPTIONS, format!("Invalid {e}."));
    let mut names = BIND_FIELDS;
    let mut config = ChainConfig {
        ip_restriction: compile_l4_ip(opts.ip_restriction.as_ref())?,
        basic_auth: basic_auth_config(opts)?,
        websocket_tcp_converter: opts.websocket_tcp_converter.is_some(),
        compression: opts.compression.is_some(),
        ..ChainConfig::default()
    };
    if let Some(ua) = &opts.user_agent_filter {
        config.user_agent_filter = Some(UserAgentFilterConfig {
            allow: ua.allow.clone(),
            deny: ua.deny.clone(),
        });
    }
    if let Some(wv) = &opts.webhook_verification {
        if wv.secret.is_empty() && !wv.sealed_secret.is_empty() {
            return Err(RpcRefusal::new(
                codes::INVALID_OPTIONS,
                "WebhookVerification: sealed secrets are not supported; send secret.",
            ));
        }
        config.webhook_verification = Some(WebhookVerificationConfig {
            provider: wv.provider.clone(),
            secret: wv.secret.clone(),
        });
    }
    if let Some(cb) = &opts.circuit_breaker {
        config.circuit_breaker = Some(BreakerConfig {
            error_threshold: cb.error_threshold,
            ..BreakerConfig::default()
        });
    }
    if let Some(h) = &opts.request_headers {
        let c = HeaderRewriteConfig::from_pairs(names.request_headers, &h.add, &h.remove);
        config.request_headers = Some(c.map_err(invalid)?);
    }
    if let Some(h) = &opts.response_headers {
        let c = HeaderRewriteConfig::from_pairs(names.response_headers, &h.add, &h.remove);
        config.response_headers = Some(c.map_err(invalid)?);
    }
    if let Some(text) = opts.traffic_policy.clone().filter(|p| !p.trim().is_empty()) {
        config.traffic_policy = Some(TrafficPolicyConfig { text });
    } else if let Some(legacy) = opts.policy.as_ref().filter(|v| !v.is_null()) {
        // The Go agent's legacy `Policy` object, when no TrafficPolicy text.
        names.traffic_policy = "Policy";
        config.traffic_policy = Some(TrafficPolicyConfig {
            text: legacy.to_string(),
        });
    }
    Ok((config, names))
}

/// The decoded PEM of a `MutualTLSCA` / `MutualTLSAtEdge` option, if set.
fn client_ca_bundle(opt: Option<&MutualTlsCa>, field: &str) -> Result<Option<Vec<u8>>, RpcRefusal> {
    let Some(b64) = opt
        .map(|m| m.mutual_tls_ca.as_str())
        .filter(|s| !s.is_empty())
    else {
        return Ok(None);
    };
    msg::decode_base64(b64).map(Some).map_err(|e| {
        RpcRefusal::new(
            codes::INVALID_OPTIONS,
            format!("{field}.mutual_tls_ca is not valid base64: {e}"),
        )
    })
}

/// `BasicAuth` credentials and the legacy `Auth` "user:pass".
fn basic_auth_config(opts: &HttpOpts) -> Result<Option<BasicAuthConfig>, RpcRefusal> {
    let mut creds = Vec::new();
    if let Some(ba) = &opts.basic_auth {
        for (i, c) in ba.credentials.iter().enumerate() {
            if c.cleartext_password.is_empty() && !c.hashed_password.is_empty() {
                return Err(RpcRefusal::new(codes::INVALID_OPTIONS, format!("basic_auth.credentials[{i}]: hashed passwords are not supported; send cleartext_password")));
            }
            creds.push((c.username.clone(), c.cleartext_password.clone()));
        }
    }
    if let Some(auth) = opts.auth.as_deref().filter(|a| !a.is_empty()) {
        let pair = BasicAuthConfig::parse_pair(auth).ok_or_else(|| {
            RpcRefusal::new(codes::INVALID_OPTIONS, "Auth must be \"user:password\".")
        })?;
        creds.push(pair);
    }
    Ok((!creds.is_empty()).then_some(BasicAuthConfig { credentials: creds }))
}

/// A TCP or TLS Bind's `IPRestriction`.
fn compile_l4_ip(
    ip: Option<&gangway_proto::msg::IpRestriction>,
) -> Result<Option<IpSet>, RpcRefusal> {
    let Some(ip) = ip else { return Ok(None) };
    IpSet::from_cidrs(&ip.allow_cidrs, &ip.deny_cidrs)
        .map(Some)
        .map_err(|e| {
            RpcRefusal::new(
                codes::INVALID_OPTIONS,
                format!(
                    "Invalid IPRestriction.{}[{}]: {:?} is not a CIDR.",
                    e.list, e.index, e.value
                ),
            )
        })
}

/// `ProxyProto`: 0 (none), 1 or 2.
fn proxy_proto_version(v: Option<i64>) -> Result<u8, RpcRefusal> {
    match v.unwrap_or(0) {
        v @ 0..=2 => Ok(v as u8),
        other => Err(RpcRefusal::new(
            codes::INVALID_OPTIONS,
            format!("ProxyProto must be 0, 1 or 2, not {other}."),
        )),
    }
}

/// Compiles what a TLS Bind asks the edge to do: terminate with the
/// tunnel's own certificate, or (by default) pass the bytes through.
fn compile_tls_options(opts: &TlsOpts) -> Result<TunnelOptions, RpcRefusal> {
    let invalid = |text: String| RpcRefusal::new(codes::INVALID_OPTIONS, text);
    let client_cas = match client_ca_bundle(opts.mutual_tls_at_edge.as_ref(), "MutualTLSAtEdge")? {
        Some(pem) => Some(
            parse_ca_bundle(&pem).map_err(|e| invalid(format!("Invalid MutualTLSAtEdge: {e}.")))?,
        ),
        None => None,
    };
    let policy = l4_policy(opts.traffic_policy.as_deref())?;
    let terminate = policy.as_ref().and_then(|p| p.terminate_tls()).cloned();
    let chain = policy_chain(policy);
    let proxy_proto = proxy_proto_version(opts.proxy_proto)?;
    if let Some(t) = terminate {
        if opts.tls_termination.is_some() || client_cas.is_some() {
            return Err(invalid(format!(
                "{} and TLSTermination/MutualTLSAtEdge both say how to terminate; use one.",
                t.path
            )));
        }
        let acceptor = terminate_tls_acceptor(&t)?;
        return Ok(TunnelOptions {
            chain,
            proxy_proto,
            ip_restriction: compile_l4_ip(opts.ip_restriction.as_ref())?,
            terminated_at_edge: acceptor.is_none(),
            tls_termination: acceptor,
            ..TunnelOptions::default()
        });
    }
    let ip_restriction = compile_l4_ip(opts.ip_restriction.as_ref())?;
    let Some(term) = opts
        .tls_termination
        .as_ref()
        .filter(|t| !t.cert.is_empty() || !t.key.is_empty() || !t.sealed_key.is_empty())
    else {
        if client_cas.is_some() {
            // Passed-through bytes carry the client's TLS to the agent.
            return Err(invalid(
                "MutualTLSAtEdge needs TLSTermination: the edge can only check client certificates where it terminates TLS.".into(),
            ));
        }
        return Ok(TunnelOptions {
            chain,
            proxy_proto,
            ip_restriction,
            ..TunnelOptions::default()
        });
    };
    if term.key.is_empty() {
        return Err(invalid(
            "TLSTermination needs cert and key (sealed keys are not supported).".into(),
        ));
    }
    let decode = |field: &str, v: &str| {
        msg::decode_base64(v)
            .map_err(|e| invalid(format!("TLSTermination.{field} is not valid base64: {e}")))
    };
    let (cert, key) = (decode("cert", &term.cert)?, decode("key", &term.key)?);
    let pair = CertKey::from_pem(&cert, &key, "TLSTermination.cert")
        .map_err(|e| invalid(format!("Invalid TLSTermination: {e}.")))?;
    let acceptor = pair
        .acceptor(client_cas.as_deref())
        .map_err(|e| invalid(format!("Invalid TLSTermination: {e}.")))?;
    Ok(TunnelOptions {
        chain,
        tls_termination: Some(acceptor),
        proxy_proto,
        ip_restriction,
        ..TunnelOptions::default()
    })
}

/// TCP and TLS endpoints: the Bind's Traffic Policy, which may only have
/// `on_tcp_connect` rules.
fn l4_policy(policy: Option<&str>) -> Result<Option<TrafficPolicy>, RpcRefusal> {
    let Some(text) = policy.filter(|p| !p.trim().is_empty()) else {
        return Ok(None);
    };
    TrafficPolicy::compile_l4("TrafficPolicy", text)
        .map(Some)
        .map_err(|e| RpcRefusal::new(codes::INVALID_OPTIONS, format!("Invalid {e}.")))
}

/// The policy as the tunnel's chain.
fn policy_chain(policy: Option<TrafficPolicy>) -> Arc<Chain> {
    match policy {
        Some(p) => Arc::new(Chain::new(vec![Module::new(p)])),
        None => Arc::new(Chain::default()),
    }
}

/// A TCP endpoint's policy: no TLS to terminate.
fn tcp_policy_chain(policy: Option<&str>) -> Result<Arc<Chain>, RpcRefusal> {
    let policy = l4_policy(policy)?;
    if let Some(p) = &policy {
        p.refuse_terminate_tls("a TCP endpoint carries no TLS to terminate; use a TLS endpoint")
            .map_err(|e| RpcRefusal::new(codes::INVALID_OPTIONS, format!("Invalid {e}.")))?;
    }
    Ok(policy_chain(policy))
}

/// A TLS endpoint's `terminate-tls`: its own certificate (with versions
/// and client CAs), or the edge's certificates for the name.
fn terminate_tls_acceptor(t: &TerminateTls) -> Result<Option<SslAcceptor>, RpcRefusal> {
    let invalid = |field: &str, e: String| {
        RpcRefusal::new(
            codes::INVALID_OPTIONS,
            format!("Invalid {}.{field}: {e}.", t.path),
        )
    };
    let (Some(cert), Some(key)) = (&t.server_certificate, &t.server_private_key) else {
        return Ok(None);
    };
    let pair = CertKey::from_pem(cert.as_bytes(), key.as_bytes(), "server_certificate")
        .map_err(|e| invalid("server_certificate", e.to_string()))?;
    let cas = if t.mutual_tls_certificate_authorities.is_empty() {
        None
    } else {
        let pem = t.mutual_tls_certificate_authorities.join("\n");
        Some(
            parse_ca_bundle(pem.as_bytes())
                .map_err(|e| invalid("mutual_tls_certificate_authorities", e.to_string()))?,
        )
    };
    let version = |v: &Option<String>| match v.as_deref() {
        Some("1.3") => Some(SslVersion::TLS1_3),
        Some("1.2") => Some(SslVersion::TLS1_2),
        _ => None,
    };
    pair.acceptor_with(
        cas.as_deref(),
        version(&t.min_version),
        version(&t.max_version),
    )
    .map(Some)
    .map_err(|e| invalid("server_certificate", e))
}

fn bad_opts(e: MsgError) -> RpcRefusal {
    RpcRefusal::new(
        codes::INVALID_OPTIONS,
        format!("Invalid tunnel options: {e}"),
    )
}

/// An endpoint with the `kubernetes` binding: private, addressed as
/// `name.namespace` inside clusters whose Kubernetes operator binds it (the
/// API lists it in the operator's `bound_endpoints`); never routed from
/// the public listeners.
fn kubernetes_bound(req: &Bind, tunnel_id: String, hostname: &str) -> Result<BindResp, RpcRefusal> {
    let labels: Vec<&str> = hostname.split('.').collect();
    if labels.len() != 2 || labels.iter().any(|l| l.is_empty() || *l == "*") {
        return Err(RpcRefusal::new(
            codes::BAD_BIND,
            format!("A kubernetes-bound endpoint is named 'service.namespace', not {hostname:?}."),
        ));
    }
    if req.extra.bindings.len() != 1 {
        return Err(RpcRefusal::new(
            codes::BAD_BIND,
            "An endpoint has one binding: 'kubernetes' cannot be combined with others.".to_string(),
        ));
    }
    let mut opts = req.opts.clone();
    msg::fill_required_opts(&req.proto, &mut opts);
    Ok(BindResp {
        id: tunnel_id,
        url: format!("http://{hostname}"),
        proto: req.proto.clone(),
        opts,
        extra: msg::BindRespExtra {
            token: String::new(),
        },
        error: String::new(),
    })
}

fn valid_tunnel_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
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
        let token = req.extra.auth_token.trim();
        let hash = token_hash(token);
        let credential = if self.app.cfg.authtokens.iter().any(|t| t == token) {
            Some(Credential::Static)
        } else if self.app.registry.control().credential(&hash).is_some() {
            Some(Credential::Stored(hash))
        } else {
            None
        };
        let failure = if token.is_empty() {
            Some(RpcRefusal::new(
                codes::AUTHTOKEN_MISSING,
                "An authtoken is required to start a session with this server.",
            ))
        } else if credential.is_none() {
            Some(RpcRefusal::new(
                codes::AUTHTOKEN_INVALID,
                "The authtoken you specified is not valid for this server.",
            ))
        } else {
            None
        };
        if let Some(refusal) = failure {
            info!(peer = %self.peer, code = %refusal.code, "agent authentication failed");
            let resp = AuthResp {
                version: SUPPORTED_VERSIONS[0].to_string(),
                error: error_string(&refusal.message, refusal.code.as_str()),
                ..Default::default()
            };
            self.send(&mut stream, &resp).await;
            self.session.close(ErrorCode::NONE, "authentication failed");
            return;
        }
        let credential_id = match &credential {
            Some(Credential::Stored(hash)) => self
                .app
                .registry
                .control()
                .credential(hash)
                .map(|g| g.id.clone())
                .unwrap_or_default(),
            _ => String::new(),
        };
        if let Some(c) = credential {
            let _ = self.credential.set(c);
        }
        let version = SUPPORTED_VERSIONS
            .iter()
            .find(|v| req.version.iter().any(|o| o == *v))
            .unwrap_or(&SUPPORTED_VERSIONS[0]);
        let client_id = if valid_tunnel_id(&req.client_id) {
            req.client_id.clone()
        } else {
            // The API lists sessions by this id (`ts_…`, like ngrok's).
            format!("ts_{}", random_id(27))
        };
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
            client_id = %client_id,
            agent = %req.extra.user_agent,
            metadata = %req.extra.metadata,
            "agent authenticated"
        );
        self.app.registry.set_session_info(
            self.key,
            SessionInfo {
                client_id: client_id.clone(),
                peer: self.peer.clone(),
                os: req.extra.os.clone(),
                agent_version: req.extra.version.clone(),
                metadata: req.extra.metadata.clone(),
                credential_id,
                started_at_ms: now_ms(),
            },
        );
        let resp = AuthResp {
            version: version.to_string(),
            client_id,
            extra: AuthRespExtra {
                version: env!("CARGO_PKG_VERSION").to_string(),
                region: self.app.cfg.region.clone(),
                cookie: random_id(32),
                account_name: "gangway".to_string(),
                session_duration: 0,
                plan_name: "Gangway".to_string(),
                banner: String::new(),
            },
            error: String::new(),
        };
        self.send(&mut stream, &resp).await;
    }

    /// The session's bind rules now (its credential may have changed or
    /// been deleted since Auth).
    fn rules(&self) -> Result<Rules, RpcRefusal> {
        match self.credential.get() {
            Some(Credential::Static) => Ok(None),
            Some(Credential::Stored(hash)) => match self.app.registry.control().credential(hash) {
                Some(grant) => Ok(Some(grant.acl.clone())),
                None => Err(RpcRefusal::new(
                    codes::AUTHTOKEN_INVALID,
                    "The authtoken of this session has been deleted.".to_string(),
                )),
            },
            None => Err(RpcRefusal::new(
                codes::NOT_AUTHENTICATED,
                "Authenticate before any other request.".to_string(),
            )),
        }
    }

    async fn bind_labeled(&self, mut stream: Stream) {
        let Some(req) = self.request::<msg::StartTunnelWithLabel>(&mut stream).await else {
            return;
        };
        match self.try_bind_labeled(&req) {
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

    fn try_bind_labeled(&self, req: &msg::StartTunnelWithLabel) -> Result<String, RpcRefusal> {
        if req.labels.is_empty() {
            return Err(RpcRefusal::new(
                codes::BAD_BIND,
                "A labeled tunnel needs at least one label.".to_string(),
            ));
        }
        if let Some(acl) = self.rules()? {
            if !acl.allows_labels(&req.labels) {
                return Err(RpcRefusal::new(
                    codes::ACL_DENIED,
                    format!(
                        "Your authtoken's ACL does not allow binding the labels {:?}.",
                        req.labels
                    ),
                ));
            }
        }
        let id = format!("tn_{}", random_id(26));
        self.app
            .registry
            .bind_labeled(self.key, &id, req.labels.clone())
            .map_err(RpcRefusal::from)?;
        Ok(id)
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

    fn try_bind(&self, req: &Bind) -> Result<BindResp, RpcRefusal> {
        let cfg = &self.app.cfg;
        let proto = req.proto.as_str();
        if proto == "tcp" {
            return self.try_bind_tcp(req);
        }
        let (requested, subdomain, options) = match proto {
            "http" | "https" => {
                let opts = HttpOpts::from_value(&req.opts).map_err(bad_opts)?;
                let options = compile_http_options(&opts)?;
                if proto == "http" && options.client_tls.is_some() {
                    return Err(RpcRefusal::new(codes::INVALID_OPTIONS, "MutualTLSCA needs an https endpoint: plain HTTP carries no client certificate."));
                }
                let domain = opts.requested_domain().map(str::to_string);
                (domain, opts.subdomain, options)
            }
            "tls" => {
                let opts = TlsOpts::from_value(&req.opts).map_err(bad_opts)?;
                let options = compile_tls_options(&opts)?;
                let domain = opts.requested_domain().map(str::to_string);
                (domain, opts.subdomain, options)
            }
            _ => {
                return Err(RpcRefusal::new(
                    codes::UNSUPPORTED_PROTO,
                    format!("Tunnels of protocol {proto:?} are not served by this edge."),
                ))
            }
        };
        let tunnel_id = self.tunnel_id(req)?;
        let hostname =
            self.endpoint_hostname(requested.as_deref(), subdomain.as_deref(), &tunnel_id)?;
        if let Some(acl) = self.rules()? {
            if !acl.allows_name(&hostname) {
                return Err(RpcRefusal::new(
                    codes::ACL_DENIED,
                    format!("Your authtoken's ACL does not allow binding {hostname}."),
                ));
            }
        }
        if req.extra.bindings.iter().any(|b| b == "kubernetes") {
            return kubernetes_bound(req, tunnel_id, &hostname);
        }
        self.app
            .registry
            .bind(
                self.key,
                &tunnel_id,
                proto,
                &hostname,
                req.extra.pooling_enabled,
                Arc::new(options),
            )
            .map_err(RpcRefusal::from)?;
        let url = match proto {
            "http" => cfg.http_url(&hostname),
            "tls" => cfg.tls_url(&hostname),
            _ => cfg.https_url(&hostname),
        };
        let mut opts = req.opts.clone();
        msg::fill_required_opts(proto, &mut opts);
        Ok(BindResp {
            id: tunnel_id,
            url,
            proto: proto.to_string(),
            opts,
            extra: msg::BindRespExtra {
                token: String::new(),
            },
            error: String::new(),
        })
    }

    /// The name a Bind gets: its Domain (wildcards allowed), else its
    /// Subdomain under the base domain, else one derived from the tunnel id.
    fn endpoint_hostname(
        &self,
        domain: Option<&str>,
        subdomain: Option<&str>,
        tunnel_id: &str,
    ) -> Result<String, RpcRefusal> {
        let base = &self.app.cfg.base_domain;
        let bad = |e: gangway_config::HostnameError| {
            RpcRefusal::new(e.ngrok_code(), format!("Invalid domain: {e}."))
        };
        match (domain, subdomain.filter(|s| !s.is_empty())) {
            (Some(domain), _) => normalize_hostname(domain, true).map_err(bad),
            (None, Some(sub)) => {
                let sub = sub.to_ascii_lowercase();
                validate_label(&sub).map_err(bad)?;
                Ok(format!("{sub}.{base}"))
            }
            (None, None) => Ok(format!("{}.{base}", subdomain_for(tunnel_id))),
        }
    }

    fn tunnel_id(&self, req: &Bind) -> Result<String, RpcRefusal> {
        if req.id.is_empty() {
            Ok(format!("tn_{}", random_id(26)))
        } else if valid_tunnel_id(&req.id) {
            Ok(req.id.clone())
        } else {
            Err(RpcRefusal::new(
                codes::BAD_BIND,
                "Invalid tunnel id.".to_string(),
            ))
        }
    }

    /// TCP: `Addr` empty (any free port), `host:port`, `:port` or `port`;
    /// the host, if given, must be this server's TCP host or address.
    fn try_bind_tcp(&self, req: &Bind) -> Result<BindResp, RpcRefusal> {
        let cfg = &self.app.cfg;
        let opts = TcpOpts::from_value(&req.opts).map_err(bad_opts)?;
        let chain = tcp_policy_chain(opts.traffic_policy.as_deref())?;
        let tunnel_id = self.tunnel_id(req)?;
        let requested = match opts
            .addr
            .as_deref()
            .map(str::trim)
            .filter(|a| !a.is_empty())
        {
            None => None,
            Some(addr) => {
                let (host, port) = addr.rsplit_once(':').unwrap_or(("", addr));
                let host = host.trim_start_matches('[').trim_end_matches(']');
                let ours = host.is_empty()
                    || host.eq_ignore_ascii_case(&cfg.tcp_host)
                    || host
                        .parse::<std::net::IpAddr>()
                        .is_ok_and(|ip| ip == cfg.tcp_ip);
                if !ours {
                    return Err(RpcRefusal::new(
                        codes::TCP_UNKNOWN_HOST,
                        format!(
                            "The host {host} is not this server's TCP host ({}).",
                            cfg.tcp_host
                        ),
                    ));
                }
                let port = port.parse::<u16>().map_err(|_| {
                    RpcRefusal::new(
                        codes::TCP_ADDR_INVALID,
                        format!("The TCP address {addr:?} has no valid port."),
                    )
                })?;
                Some(port)
            }
        };
        let rules = self.rules()?;
        if let (Some(acl), Some(port)) = (&rules, requested) {
            let addr = format!("{}:{port}", cfg.tcp_host);
            if !acl.allows_name(&addr) {
                return Err(RpcRefusal::new(
                    codes::ACL_DENIED_ADDR,
                    format!("Your authtoken's ACL does not allow binding {addr}."),
                ));
            }
        }
        if rules.as_ref().is_some_and(|a| !a.is_unrestricted()) && requested.is_none() {
            // A restricted credential may bind only addresses its rules name.
            return Err(RpcRefusal::new(codes::ACL_DENIED_ADDR, "Your authtoken's ACL allows only the TCP addresses it names; pass one as the remote address.".to_string()));
        }
        let port = self
            .app
            .registry
            .bind_tcp(
                self.key,
                &tunnel_id,
                requested,
                &cfg.tcp_ports,
                req.extra.pooling_enabled,
                Arc::new(TunnelOptions {
                    chain,
                    proxy_proto: proxy_proto_version(opts.proxy_proto)?,
                    ip_restriction: compile_l4_ip(opts.ip_restriction.as_ref())?,
                    ..TunnelOptions::default()
                }),
            )
            .map_err(RpcRefusal::from)?;
        let mut opts = req.opts.clone();
        msg::fill_required_opts("tcp", &mut opts);
        Ok(BindResp {
            id: tunnel_id,
            url: cfg.tcp_url(port),
            proto: "tcp".to_string(),
            opts,
            extra: msg::BindRespExtra {
                token: String::new(),
            },
            error: String::new(),
        })
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
