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
            Proto::Tls if def.client_cas.is_some() => Err(AgentCmdError::Config(
                "client certificate CAs for TLS terminated at the agent are not supported yet"
                    .into(),
            )),
            Proto::Tls => tls_specs(&TlsArgs {
                addr: def.addr.clone(),
                domain: def.hostname.clone(),
                subdomain: def.subdomain.clone(),
                crt: def.crt.as_deref().and_then(path_unless_pem),
                key: def.key.as_deref().and_then(path_unless_pem),
                inline_pem: match (&def.crt, &def.key) {
                    (Some(c), Some(k)) if is_pem(c) && is_pem(k) => {
                        Some((c.clone().into_bytes(), k.clone().into_bytes()))
                    }
                    _ => None,
                },
                pooling_enabled: def.pooling_enabled,
                proxy_proto: def.proxy_proto,
                ..TlsArgs::default()
            }),
        }
    }
    .map_err(in_tunnel)?;
    for (i, s) in specs.iter_mut().enumerate() {
        s.name = if i == 0 {
            def.name.clone()
        } else {
            gangway_agent::twin_name(&def.name, &s.proto)
        };
        s.metadata = def.metadata.clone().unwrap_or_default();
    }
    Ok(specs)
}

/// v3 files may hold certificates and keys inline instead of a path.
fn is_pem(value: &str) -> bool {
    value.trim_start().starts_with("-----BEGIN ")
}

fn path_unless_pem(value: &str) -> Option<PathBuf> {
    (!is_pem(value)).then(|| PathBuf::from(value))
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
            mutual_tls_cas: def.client_cas.as_deref().and_then(path_unless_pem),
            mutual_tls_cas_pem: def
                .client_cas
                .as_ref()
                .filter(|c| is_pem(c))
                .map(|c| c.clone().into_bytes()),
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
        let why = e.kind().to_string();
        let key = key
            .strip_prefix(&format!("tunnels.{name}."))
            .unwrap_or(&key)
            .to_string();
        if key.is_empty() {
            why
        } else {
            format!("{key}: {why}")
        }
    })?;
    file.tunnels
        .into_iter()
        .next()
        .ok_or_else(|| "no tunnel in the request".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(yaml: &str) -> Result<Vec<TunnelSpec>, AgentCmdError> {
        let file = agent_file::parse("test.yml", yaml).unwrap();
        specs(&file.tunnels[0])
    }

    fn indent(pem: &str, n: usize) -> String {
        pem.lines()
            .map(|l| format!("{}{l}\n", " ".repeat(n)))
            .collect()
    }

    #[test]
    fn v3_inline_pem_terminates_at_the_agent() {
        let cert = rcgen::generate_simple_self_signed(vec!["inline.example".into()]).unwrap();
        let yaml = format!(
            "version: 3\nendpoints:\n  - name: inline\n    url: tls://inline.example\n    upstream:\n      url: 9000\n    agent_tls_termination:\n      server_certificate: |\n{}      server_private_key: |\n{}",
            indent(&cert.cert.pem(), 8),
            indent(&cert.signing_key.serialize_pem(), 8),
        );
        let specs = one(&yaml).unwrap();
        assert_eq!(specs.len(), 1);
        assert_eq!(specs[0].name, "inline");
        assert_eq!(specs[0].proto, "tls");
        assert!(specs[0].terminate_tls.is_some());
        assert_eq!(specs[0].domain.as_deref(), Some("inline.example"));
    }

    #[test]
    fn inline_and_path_client_cas_reach_the_bind_options() {
        let ca = rcgen::generate_simple_self_signed(vec!["ca.example".into()]).unwrap();
        let yaml = format!(
            "version: \"2\"\ntunnels:\n  web:\n    proto: http\n    addr: 80\n    client_cas: |\n{}",
            indent(&ca.cert.pem(), 6)
        );
        let specs = one(&yaml).unwrap();
        let b64 = specs[0].modules["MutualTLSCA"]["mutual_tls_ca"]
            .as_str()
            .unwrap()
            .to_string();
        use base64::Engine;
        let pem = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap();
        assert_eq!(String::from_utf8(pem).unwrap(), ca.cert.pem());

        let missing = "version: \"2\"\ntunnels:\n  web:\n    proto: http\n    addr: 80\n    client_cas: /nonexistent/ca.pem\n";
        let err = one(missing).unwrap_err().to_string();
        assert!(err.contains("/nonexistent/ca.pem"), "{err}");
    }

    #[test]
    fn bind_tls_both_names_the_twin_like_ngrok() {
        let specs = one(
            "version: \"2\"\ntunnels:\n  site:\n    proto: http\n    addr: 8080\n    bind_tls: both\n    inspect: false\n",
        )
        .unwrap();
        let names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["site", "site (http)"]);
        assert_eq!(specs[1].same_host_as, Some(0));
        assert!(specs.iter().all(|s| !s.inspect));
    }
}
