//! The agent's config file at work: which files to read, and how a tunnel
//! definition (from the file, or posted to `/api/tunnels`) becomes the
//! tunnels to bind, through the same code as the command-line flags.

use std::path::PathBuf;
use std::sync::Arc;

use gangway_agent::web::TunnelParser;
use gangway_agent::TunnelSpec;
use gangway_config::agent_file::{self, AgentFile, BindTls, Proto, TunnelDef};

use crate::agent_cmd::{
    http_specs, tcp_specs, tls_specs, tunnel_specs, AgentCmdError, HttpArgs, ModuleArgs, TcpArgs,
    TlsArgs, TunnelArgs,
};

/// The files to read: those given with `--config`, else the default one
/// if it exists.
pub fn paths(explicit: &[PathBuf]) -> Result<Vec<PathBuf>, AgentCmdError> {
    if !explicit.is_empty() {
        return Ok(explicit.to_vec());
    }
    Ok(agent_file::default_path()
        .filter(|p| p.exists())
        .into_iter()
        .collect())
}

/// The merged config; empty when there is no file.
pub fn load(explicit: &[PathBuf]) -> Result<AgentFile, AgentCmdError> {
    let paths = paths(explicit)?;
    if paths.is_empty() {
        return Ok(AgentFile::default());
    }
    agent_file::load(&paths).map_err(|e| AgentCmdError::Config(e.to_string()))
}

/// The tunnels one definition opens (two for `bind_tls: both`, sharing
/// the hostname), named after it.
pub fn specs(def: &TunnelDef) -> Result<Vec<TunnelSpec>, AgentCmdError> {
    let in_tunnel = |e: AgentCmdError| AgentCmdError::Config(format!("tunnel {:?}: {e}", def.name));
    let mut specs = if !def.labels.is_empty() {
        tunnel_specs(&TunnelArgs {
            addr: def.addr.clone(),
            labels: def.labels.clone(),
            ..TunnelArgs::default()
        })
    } else {
        match def.proto {
            Proto::Http => http_specs(&http_args(def)),
            Proto::Tcp => tcp_specs(&TcpArgs {
                addr: def.addr.clone(),
                remote_addr: def.remote_addr.clone(),
                pooling_enabled: def.pooling_enabled,
                proxy_proto: def.proxy_proto,
                ..TcpArgs::default()
            }),
            Proto::Tls => tls_specs(&TlsArgs {
                addr: def.addr.clone(),
                domain: def.hostname.clone(),
                subdomain: def.subdomain.clone(),
                crt: def.crt.as_ref().map(PathBuf::from),
                key: def.key.as_ref().map(PathBuf::from),
                pooling_enabled: def.pooling_enabled,
                proxy_proto: def.proxy_proto,
                ..TlsArgs::default()
            }),
        }
    }
    .map_err(in_tunnel)?;
    for (i, s) in specs.iter_mut().enumerate() {
        // ngrok names the plain-HTTP twin `NAME (http)`.
        s.name = if i == 0 {
            def.name.clone()
        } else {
            format!("{} ({})", def.name, s.proto)
        };
        s.metadata = def.metadata.clone().unwrap_or_default();
    }
    Ok(specs)
}

fn http_args(def: &TunnelDef) -> HttpArgs {
    let scheme = match def.bind_tls {
        BindTls::True => vec!["https".to_string()],
        BindTls::False => vec!["http".to_string()],
        BindTls::Both => vec!["https".to_string(), "http".to_string()],
    };
    HttpArgs {
        addr: def.addr.clone(),
        domain: def.hostname.clone(),
        subdomain: def.subdomain.clone(),
        pooling_enabled: def.pooling_enabled,
        basic_auth: def.basic_auth.clone(),
        scheme,
        host_header: def.host_header.clone(),
        inspect: def.inspect.unwrap_or(true),
        modules: ModuleArgs {
            cidr_allow: def.cidr_allow.clone(),
            cidr_deny: def.cidr_deny.clone(),
            compression: def.compression,
            circuit_breaker: def.circuit_breaker,
            request_header_add: def.request_header.add.clone(),
            request_header_remove: def.request_header.remove.clone(),
            response_header_add: def.response_header.add.clone(),
            response_header_remove: def.response_header.remove.clone(),
            ua_filter_allow: def.user_agent_filter.allow.clone(),
            ua_filter_deny: def.user_agent_filter.deny.clone(),
            verify_webhook: def.verify_webhook.as_ref().map(|w| w.provider.clone()),
            verify_webhook_secret: def.verify_webhook.as_ref().and_then(|w| w.secret.clone()),
            mutual_tls_cas: def.client_cas.as_ref().map(PathBuf::from),
            websocket_tcp_converter: def.websocket_tcp_converter,
            traffic_policy_file: def.traffic_policy_file.as_ref().map(PathBuf::from),
            traffic_policy: def.traffic_policy.clone(),
        },
        ..HttpArgs::default()
    }
}

/// `POST /api/tunnels` bodies are the config file's tunnel definitions
/// plus `name` (ngrok's agent API). `{"name": "web"}` alone starts the
/// config file's tunnel of that name.
pub fn api_tunnel_parser(file: Arc<AgentFile>) -> TunnelParser {
    Arc::new(move |body: &serde_json::Value| {
        let obj = body
            .as_object()
            .ok_or("the body must be a JSON object with name, proto and addr")?;
        let name = match obj.get("name") {
            Some(serde_json::Value::String(n)) if !n.trim().is_empty() => n.trim().to_string(),
            _ => return Err("name: missing (every tunnel needs a name)".to_string()),
        };
        let mut def = obj.clone();
        def.remove("name");
        let def = if def.is_empty() {
            file.tunnels
                .iter()
                .find(|t| t.name == name)
                .cloned()
                .ok_or_else(|| {
                    format!("proto: missing (and no tunnel {name:?} in the config file)")
                })?
        } else {
            tunnel_from_json(&name, def)?
        };
        specs(&def).map_err(|e| e.to_string())
    })
}

/// Reads a tunnel definition with the config file's parser (JSON is
/// YAML), so the API checks exactly what the file would.
fn tunnel_from_json(
    name: &str,
    def: serde_json::Map<String, serde_json::Value>,
) -> Result<TunnelDef, String> {
    let doc = serde_json::json!({"version": "2", "tunnels": {name: def}});
    let file = agent_file::parse("request body", &doc.to_string()).map_err(|e| {
        // One line of JSON: the key says where; the line does not.
        let key = e.key().unwrap_or_default().to_string();
        let whole = e.to_string();
        let why = whole
            .rsplit_once(&format!("{key}: "))
            .map_or(whole.as_str(), |(_, w)| w);
        let key = key
            .strip_prefix(&format!("tunnels.{name}."))
            .unwrap_or(&key)
            .to_string();
        if key.is_empty() {
            why.to_string()
        } else {
            format!("{key}: {why}")
        }
    })?;
    file.tunnels
        .into_iter()
        .next()
        .ok_or_else(|| "no tunnel in the request".to_string())
}
