//! The agent RPCs' decisions, apart from the session that carries them:
//! which credential an authtoken is, what an Auth is answered, what a
//! Bind or StartTunnelWithLabel asks the registry for (or why it is
//! refused). Pure: requests, config and the control plane in; plans,
//! answers or typed refusals out. The IO is `agent_listener`'s.

use gangway_config::codes;
use gangway_config::control::{Acl, ControlConfig};
use gangway_config::hostname::{normalize_hostname, validate_label};
use gangway_config::resources::token_hash;
use gangway_config::EdgeConfig;
use gangway_proto::msg::{
    self, Auth, AuthResp, AuthRespExtra, Bind, BindResp, HttpOpts, StartTunnelWithLabel, TcpOpts,
    TlsOpts,
};

use crate::bind_options::{
    bad_opts, compile_http_options, compile_tcp_options, compile_tls_options,
};
use crate::errors::RpcRefusal;
use crate::route_table::TunnelOptions;

/// Protocol versions we speak, preferred first.
pub const SUPPORTED_VERSIONS: [&str; 2] = ["3", "2"];

/// The authtoken a session presented.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// One of the edge's configured tokens: no restrictions.
    Static,
    /// A stored credential, by token hash; its ACL is read at each bind
    /// so an update (or revocation) applies to the next one.
    Stored(String),
}

/// Bind rules in force for a session: `None` means unrestricted.
pub type Rules = Option<Acl>;

/// Which credential `token` is, and the stored credential's id (empty for
/// a static token).
pub fn authenticate(
    token: &str,
    cfg: &EdgeConfig,
    control: &ControlConfig,
) -> Result<(Credential, String), RpcRefusal> {
    let token = token.trim();
    if token.is_empty() {
        return Err(RpcRefusal::new(
            codes::AUTHTOKEN_MISSING,
            "An authtoken is required to start a session with this server.",
        ));
    }
    if cfg.authtokens.iter().any(|t| t == token) {
        return Ok((Credential::Static, String::new()));
    }
    let hash = token_hash(token);
    match control.credential(&hash) {
        Some(grant) => Ok((Credential::Stored(hash), grant.id.clone())),
        None => Err(RpcRefusal::new(
            codes::AUTHTOKEN_INVALID,
            "The authtoken you specified is not valid for this server.",
        )),
    }
}

/// The session's bind rules now (its credential may have changed or been
/// deleted since Auth); `None` before Auth.
pub fn rules(
    credential: Option<&Credential>,
    control: &ControlConfig,
) -> Result<Rules, RpcRefusal> {
    match credential {
        Some(Credential::Static) => Ok(None),
        Some(Credential::Stored(hash)) => match control.credential(hash) {
            Some(grant) => Ok(Some(grant.acl.clone())),
            None => Err(RpcRefusal::new(
                codes::AUTHTOKEN_INVALID,
                "The authtoken of this session has been deleted.",
            )),
        },
        None => Err(RpcRefusal::new(
            codes::NOT_AUTHENTICATED,
            "Authenticate before any other request.",
        )),
    }
}

/// The answer to an accepted Auth: the version both speak, the agent's
/// client id (its own when valid, so a reconnect keeps it).
pub fn auth_accepted(req: &Auth, cfg: &EdgeConfig) -> AuthResp {
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
    AuthResp {
        version: version.to_string(),
        client_id,
        extra: AuthRespExtra {
            version: env!("CARGO_PKG_VERSION").to_string(),
            region: cfg.region.clone(),
            cookie: random_id(32),
            account_name: "gangway".to_string(),
            session_duration: 0,
            plan_name: "Gangway".to_string(),
            banner: String::new(),
        },
        error: String::new(),
    }
}

/// The answer to a refused Auth.
pub fn auth_refused(refusal: &RpcRefusal) -> AuthResp {
    AuthResp {
        version: SUPPORTED_VERSIONS[0].to_string(),
        error: msg::error_string(&refusal.message, refusal.code.as_str()),
        ..Default::default()
    }
}

/// Random lowercase alphanumerics for ids and cookies.
pub fn random_id(len: usize) -> String {
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

/// What a Bind asks of the registry.
pub enum BindPlan {
    /// A public name on the HTTP, HTTPS or TLS port.
    Named {
        tunnel_id: String,
        proto: String,
        hostname: String,
        options: TunnelOptions,
    },
    /// A TCP port: `requested`, or a free one.
    Tcp {
        tunnel_id: String,
        requested: Option<u16>,
        options: TunnelOptions,
    },
    /// A private endpoint, answered without touching the listeners.
    Private(BindResp),
}

/// Decides a Bind: its options compiled, its name or port chosen and
/// checked against the session's rules (read when needed, as before:
/// `rules` is the session's credential check).
pub fn plan_bind(
    cfg: &EdgeConfig,
    req: &Bind,
    rules: impl Fn() -> Result<Rules, RpcRefusal>,
) -> Result<BindPlan, RpcRefusal> {
    let proto = req.proto.as_str();
    if proto == "tcp" {
        return plan_tcp(cfg, req, rules);
    }
    let (requested, subdomain, options) = match proto {
        "http" | "https" => {
            let opts = HttpOpts::from_value(&req.opts).map_err(bad_opts)?;
            let options = compile_http_options(&opts)?;
            if proto == "http" && options.client_tls.is_some() {
                return Err(RpcRefusal::new(
                    codes::INVALID_OPTIONS,
                    "MutualTLSCA needs an https endpoint: plain HTTP carries no client certificate.",
                ));
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
    let tunnel_id = tunnel_id(req)?;
    let hostname = endpoint_hostname(
        &cfg.base_domain,
        requested.as_deref(),
        subdomain.as_deref(),
        &tunnel_id,
    )?;
    if let Some(acl) = rules()? {
        if !acl.allows_name(&hostname) {
            return Err(RpcRefusal::new(
                codes::ACL_DENIED,
                format!("Your authtoken's ACL does not allow binding {hostname}."),
            ));
        }
    }
    if req.extra.bindings.iter().any(|b| b == "kubernetes") {
        return kubernetes_bound(req, tunnel_id, &hostname).map(BindPlan::Private);
    }
    Ok(BindPlan::Named {
        tunnel_id,
        proto: proto.to_string(),
        hostname,
        options,
    })
}

/// TCP: `Addr` empty (any free port), `host:port`, `:port` or `port`;
/// the host, if given, must be this server's TCP host or address.
fn plan_tcp(
    cfg: &EdgeConfig,
    req: &Bind,
    rules: impl Fn() -> Result<Rules, RpcRefusal>,
) -> Result<BindPlan, RpcRefusal> {
    let opts = TcpOpts::from_value(&req.opts).map_err(bad_opts)?;
    let options = compile_tcp_options(&opts)?;
    let tunnel_id = tunnel_id(req)?;
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
    let rules = rules()?;
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
        return Err(RpcRefusal::new(
            codes::ACL_DENIED_ADDR,
            "Your authtoken's ACL allows only the TCP addresses it names; pass one as the remote address.",
        ));
    }
    Ok(BindPlan::Tcp {
        tunnel_id,
        requested,
        options,
    })
}

/// The answer to a bound tunnel: its id and URL, and the options echoed
/// with the keys the SDKs require.
pub fn bound(req: &Bind, tunnel_id: String, proto: &str, url: String) -> BindResp {
    let mut opts = req.opts.clone();
    msg::fill_required_opts(proto, &mut opts);
    BindResp {
        id: tunnel_id,
        url,
        proto: proto.to_string(),
        opts,
        extra: msg::BindRespExtra {
            token: String::new(),
        },
        error: String::new(),
    }
}

/// The public URL of a named endpoint.
pub fn named_url(cfg: &EdgeConfig, proto: &str, hostname: &str) -> String {
    match proto {
        "http" => cfg.http_url(hostname),
        "tls" => cfg.tls_url(hostname),
        _ => cfg.https_url(hostname),
    }
}

/// Decides a StartTunnelWithLabel: the new tunnel's id.
pub fn plan_labeled(req: &StartTunnelWithLabel, rules: &Rules) -> Result<String, RpcRefusal> {
    if req.labels.is_empty() {
        return Err(RpcRefusal::new(
            codes::BAD_BIND,
            "A labeled tunnel needs at least one label.",
        ));
    }
    if let Some(acl) = rules {
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
    Ok(format!("tn_{}", random_id(26)))
}

/// The name a Bind gets: its Domain (wildcards allowed), else its
/// Subdomain under the base domain, else one derived from the tunnel id.
pub fn endpoint_hostname(
    base: &str,
    domain: Option<&str>,
    subdomain: Option<&str>,
    tunnel_id: &str,
) -> Result<String, RpcRefusal> {
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

/// The Bind's tunnel id, or a new one.
fn tunnel_id(req: &Bind) -> Result<String, RpcRefusal> {
    if req.id.is_empty() {
        Ok(format!("tn_{}", random_id(26)))
    } else if valid_tunnel_id(&req.id) {
        Ok(req.id.clone())
    } else {
        Err(RpcRefusal::new(codes::BAD_BIND, "Invalid tunnel id."))
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cfg() -> EdgeConfig {
        let addr = "127.0.0.1:443".parse().expect("addr");
        EdgeConfig {
            base_domain: "base.example".into(),
            agent_addr: addr,
            http_addr: "127.0.0.1:80".parse().expect("addr"),
            https_addr: addr,
            cert_path: "unused.pem".into(),
            key_path: "unused.key".into(),
            authtokens: vec!["static".into()],
            threads: 1,
            tcp_ip: "127.0.0.1".parse().expect("ip"),
            tcp_host: "tcp.base.example".into(),
            tcp_ports: 20000..=20009,
            region: "local".into(),
            events: Default::default(),
            reserved: Vec::new(),
            outbound_ca: None,
            connect_to: Vec::new(),
        }
    }

    fn bind(proto: &str, opts: serde_json::Value) -> Bind {
        Bind {
            id: "tn_1".into(),
            proto: proto.into(),
            opts,
            ..Bind::default()
        }
    }

    fn code<T>(r: Result<T, RpcRefusal>) -> &'static str {
        r.err().map_or("", |e| e.code.as_str())
    }

    #[test]
    fn auth_tells_missing_from_unknown_tokens() {
        let control = ControlConfig::default();
        assert_eq!(code(authenticate(" ", &cfg(), &control)), "ERR_NGROK_4018");
        assert_eq!(code(authenticate("x", &cfg(), &control)), "ERR_NGROK_107");
        assert_eq!(
            authenticate("static", &cfg(), &control).map(|(c, _)| c),
            Ok(Credential::Static)
        );
        assert_eq!(code(rules(None, &control)), "ERR_NGROK_4016");
    }

    #[test]
    fn binds_plan_names_ports_and_refusals() {
        let open = || Ok(None);
        let plan = plan_bind(&cfg(), &bind("https", json!({"Subdomain": "Shop"})), open);
        assert!(
            matches!(plan, Ok(BindPlan::Named { ref hostname, .. }) if hostname == "shop.base.example")
        );
        let random = plan_bind(&cfg(), &bind("https", json!({})), open);
        let Ok(BindPlan::Named { hostname, .. }) = random else {
            panic!("a named plan");
        };
        assert_eq!(hostname, format!("{}.base.example", subdomain_for("tn_1")));
        let tcp = |addr: &str| plan_bind(&cfg(), &bind("tcp", json!({"Addr": addr})), open);
        assert!(matches!(
            tcp("tcp.base.example:20001"),
            Ok(BindPlan::Tcp {
                requested: Some(20001),
                ..
            })
        ));
        assert!(matches!(
            tcp(""),
            Ok(BindPlan::Tcp {
                requested: None,
                ..
            })
        ));
        assert_eq!(code(tcp("elsewhere.example:20001")), "ERR_NGROK_4504");
        assert_eq!(code(tcp(":http")), "ERR_NGROK_4502");
        assert_eq!(
            code(plan_bind(&cfg(), &bind("udp", json!({})), open)),
            "ERR_NGROK_332"
        );
        let bad_name = bind("https", json!({"Domain": "a_b.example"}));
        assert_eq!(code(plan_bind(&cfg(), &bad_name, open)), "ERR_NGROK_326");
        let deleted = || Err(RpcRefusal::new(codes::AUTHTOKEN_INVALID, "deleted"));
        assert_eq!(
            code(plan_bind(&cfg(), &bind("https", json!({})), deleted)),
            "ERR_NGROK_107"
        );
    }
}
