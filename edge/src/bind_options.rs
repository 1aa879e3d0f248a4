//! What a Bind's options ask the edge to enforce, compiled into the
//! endpoint's [`TunnelOptions`]: the module chain (through the same
//! compiler as API routes), TLS termination, mutual TLS, PROXY protocol,
//! IP restriction. Pure: options in, options or a typed refusal out.
//! Options this edge cannot apply refuse the Bind rather than serve the
//! endpoint unprotected.

use std::sync::Arc;

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
use gangway_proto::msg::{self, HttpOpts, MsgError, MutualTlsCa, TcpOpts, TlsOpts};
use pingora_core::tls::ssl::{SslAcceptor, SslVersion};

use crate::certs::CertKey;
use crate::client_tls::{parse_ca_bundle, ClientTls};
use crate::errors::RpcRefusal;
use crate::route_table::TunnelOptions;

/// Compiles what an HTTP Bind asks the edge to enforce into the
/// endpoint's module chain, through the same compiler as API routes.
/// Options this edge cannot apply yet refuse the Bind rather than serve
/// the endpoint unprotected.
pub fn compile_http_options(opts: &HttpOpts) -> Result<TunnelOptions, RpcRefusal> {
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
pub fn compile_tls_options(opts: &TlsOpts) -> Result<TunnelOptions, RpcRefusal> {
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

pub fn bad_opts(e: MsgError) -> RpcRefusal {
    RpcRefusal::new(
        codes::INVALID_OPTIONS,
        format!("Invalid tunnel options: {e}"),
    )
}

/// A TCP Bind's options: its policy (no TLS to terminate), PROXY
/// protocol and IP restriction.
pub fn compile_tcp_options(opts: &TcpOpts) -> Result<TunnelOptions, RpcRefusal> {
    Ok(TunnelOptions {
        chain: tcp_policy_chain(opts.traffic_policy.as_deref())?,
        proxy_proto: proxy_proto_version(opts.proxy_proto)?,
        ip_restriction: compile_l4_ip(opts.ip_restriction.as_ref())?,
        ..TunnelOptions::default()
    })
}
