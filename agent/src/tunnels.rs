//! The tunnel model: what one tunnel binds and where it forwards
//! ([`TunnelSpec`]), with its route-module options typed as the wire has
//! them ([`HttpModules`], sent as proto's `HttpOpts`). Command-line
//! flags, config-file tunnels ([`from_def`]) and agent API bodies
//! ([`api_tunnel_parser`]) all become `TunnelSpec`s here, through
//! [`HttpTunnel`], [`TcpTunnel`], [`TlsTunnel`] and [`LabeledTunnel`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine;
use gangway_config::agent_file::{self, AgentFile, BindTls, Proto, TunnelDef};
use gangway_proto::msg::{
    BasicAuth, BasicAuthCredential, CircuitBreaker, Compression, Headers, HttpOpts, IpRestriction,
    MutualTlsCa, TcpOpts, TlsOpts, UserAgentFilter, WebhookVerification, WebsocketTcpConverter,
};

use crate::dial::TlsTerminator;
use crate::upstream::Upstream;
use crate::web::TunnelParser;

/// One tunnel to open.
#[derive(Debug, Clone)]
pub struct TunnelSpec {
    /// Unique within the agent; `command_line` when left empty.
    pub name: String,
    /// HTTP only: capture exchanges for the inspector.
    pub inspect: bool,
    /// `http` or `https` (the URL scheme the edge serves).
    pub proto: String,
    pub upstream: Upstream,
    /// `Domain` to bind; a random subdomain of the server's base domain
    /// when empty.
    pub domain: Option<String>,
    /// Bind the hostname that tunnel `n` of this agent got (an HTTP
    /// tunnel next to an HTTPS one: one name, two schemes).
    pub same_host_as: Option<usize>,
    /// HTTP and TLS: a subdomain of the server's base domain.
    pub subdomain: Option<String>,
    /// TCP only: the `host:port` to bind; a free port when empty.
    pub remote_addr: Option<String>,
    /// Share the endpoint with other agents binding it with pooling on.
    pub pooling: bool,
    /// HTTP only: `(user, password)` pairs the edge demands.
    pub basic_auth: Vec<(String, String)>,
    /// HTTP only: `rewrite` (Host becomes the upstream's `host:port`) or a
    /// literal Host value; unchanged when `None`.
    pub host_header: Option<String>,
    /// HTTP only: serve this directory with the built-in file server.
    pub serve_dir: Option<PathBuf>,
    /// TLS only: terminate at the agent with this certificate and forward
    /// plaintext; otherwise the TLS bytes reach the upstream untouched.
    pub terminate_tls: Option<TlsTerminator>,
    /// Opaque user metadata the edge keeps with the tunnel.
    pub metadata: String,
    /// TCP and TLS: PROXY protocol version (1 or 2) the edge puts in front
    /// of each connection, passed on to the upstream; 0 for none.
    pub proxy_proto: u8,
    /// Labels: start a labeled tunnel (StartTunnelWithLabel) that serves
    /// the API edges whose backend selects them, instead of binding a name.
    /// HTTP forwarding.
    pub labels: BTreeMap<String, String>,
    /// HTTP only: the route modules the edge runs for the endpoint.
    pub modules: HttpModules,
}

/// An HTTP endpoint's route-module Bind options, typed as the wire has
/// them (the SDKs' `HTTPEndpoint` fields).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HttpModules {
    pub ip_restriction: Option<IpRestriction>,
    pub compression: bool,
    pub circuit_breaker: Option<CircuitBreaker>,
    pub request_headers: Option<Headers>,
    pub response_headers: Option<Headers>,
    pub user_agent_filter: Option<UserAgentFilter>,
    pub webhook_verification: Option<WebhookVerification>,
    /// PEM CAs for mutual TLS at the edge (HTTPS only).
    pub mutual_tls_cas: Option<Vec<u8>>,
    pub websocket_tcp_converter: bool,
    /// A Traffic Policy document (YAML or JSON).
    pub traffic_policy: Option<String>,
}

impl TunnelSpec {
    /// A `proto` tunnel to `upstream` with every option at its default.
    pub fn new(proto: &str, upstream: Upstream) -> Self {
        TunnelSpec {
            name: String::new(),
            inspect: true,
            proto: proto.to_string(),
            upstream,
            domain: None,
            same_host_as: None,
            subdomain: None,
            remote_addr: None,
            pooling: false,
            basic_auth: Vec::new(),
            host_header: None,
            serve_dir: None,
            terminate_tls: None,
            metadata: String::new(),
            proxy_proto: 0,
            labels: BTreeMap::new(),
            modules: HttpModules::default(),
        }
    }

    pub fn is_http(&self) -> bool {
        self.proto == "http" || self.proto == "https"
    }

    /// The Host the agent sends upstream, if it replaces the client's.
    pub(crate) fn host_override(&self) -> Option<String> {
        match self.host_header.as_deref() {
            None | Some("") | Some("preserve") => None,
            Some("rewrite") => Some(self.upstream.authority()),
            Some(value) => Some(value.to_string()),
        }
    }

    /// Where traffic goes, as users write it.
    pub fn target(&self) -> String {
        if let Some(dir) = &self.serve_dir {
            return format!("file://{}", dir.display());
        }
        if self.is_http() {
            self.upstream.to_string()
        } else {
            self.upstream.authority()
        }
    }

    /// Bind `Opts`: proto's typed options, in the shape the SDKs send.
    pub(crate) fn bind_opts(&self) -> serde_json::Value {
        let opts = if self.is_http() {
            serde_json::to_value(self.http_opts())
        } else if self.proto == "tls" {
            serde_json::to_value(TlsOpts {
                domain: Some(self.domain.clone().unwrap_or_default()),
                hostname: Some(String::new()),
                subdomain: Some(self.subdomain.clone().unwrap_or_default()),
                proxy_proto: Some(i64::from(self.proxy_proto)),
                mutual_tls_at_agent: Some(false),
                ..TlsOpts::default()
            })
        } else {
            serde_json::to_value(TcpOpts {
                addr: Some(self.remote_addr.clone().unwrap_or_default()),
                proxy_proto: Some(i64::from(self.proxy_proto)),
                ..TcpOpts::default()
            })
        };
        // Plain structs of strings and numbers always serialize.
        opts.unwrap_or_default()
    }

    fn http_opts(&self) -> HttpOpts {
        let m = &self.modules;
        let basic_auth = (!self.basic_auth.is_empty()).then(|| BasicAuth {
            credentials: self
                .basic_auth
                .iter()
                .map(|(u, p)| BasicAuthCredential {
                    username: u.clone(),
                    cleartext_password: p.clone(),
                    hashed_password: String::new(),
                })
                .collect(),
        });
        let scheme = if self.upstream.tls { "https" } else { "http" };
        HttpOpts {
            domain: Some(self.domain.clone().unwrap_or_default()),
            hostname: Some(String::new()),
            auth: Some(String::new()),
            subdomain: Some(self.subdomain.clone().unwrap_or_default()),
            host_header_rewrite: Some(self.host_header.as_deref() == Some("rewrite")),
            local_url_scheme: Some(scheme.to_string()),
            proxy_proto: Some(0),
            compression: m.compression.then_some(Compression {}),
            circuit_breaker: m.circuit_breaker,
            ip_restriction: m.ip_restriction.clone(),
            basic_auth,
            oauth: None,
            oidc: None,
            webhook_verification: m.webhook_verification.clone(),
            mutual_tls_ca: m.mutual_tls_cas.as_ref().map(|pem| MutualTlsCa {
                mutual_tls_ca: base64::engine::general_purpose::STANDARD.encode(pem),
            }),
            request_headers: m.request_headers.clone(),
            response_headers: m.response_headers.clone(),
            websocket_tcp_converter: m
                .websocket_tcp_converter
                .then_some(WebsocketTcpConverter {}),
            user_agent_filter: m.user_agent_filter.clone(),
            traffic_policy: m.traffic_policy.clone(),
            policy: None,
        }
    }
}

/// Why a tunnel cannot be set up; the message names the flag or key.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("{0}")]
    Usage(String),
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A config file tunnel's problem, naming the tunnel.
    #[error("{0}")]
    Config(String),
}

/// Reads a file a tunnel names (a certificate, a policy).
pub fn read(path: &Path) -> Result<Vec<u8>, SpecError> {
    std::fs::read(path).map_err(|source| SpecError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Reads a text file a tunnel names (a policy document).
pub fn read_text(path: &Path) -> Result<String, SpecError> {
    std::fs::read_to_string(path).map_err(|source| SpecError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// An HTTP tunnel as asked for.
#[derive(Debug, Clone, Default)]
pub struct HttpTunnel {
    /// A port, `host:port`, an http(s):// URL, or `file:///abs/dir`.
    pub addr: String,
    pub domain: Option<String>,
    pub subdomain: Option<String>,
    pub pooling: bool,
    /// `user:password` entries.
    pub basic_auth: Vec<String>,
    /// `http`, `https` or both.
    pub schemes: Vec<String>,
    pub host_header: Option<String>,
    pub inspect: bool,
    pub modules: HttpModules,
}

impl HttpTunnel {
    /// The tunnels it opens: one per scheme, HTTPS first.
    pub fn specs(&self) -> Result<Vec<TunnelSpec>, SpecError> {
        let serve_dir = file_root(&self.addr)?;
        let upstream = match serve_dir {
            // The file server answers itself; nothing is dialed.
            Some(_) => Upstream {
                host: "localhost".into(),
                port: 80,
                tls: false,
            },
            None => Upstream::parse(&self.addr).map_err(|e| SpecError::Usage(e.to_string()))?,
        };
        let mut schemes: Vec<String> = Vec::new();
        for s in &self.schemes {
            let s = s.trim().to_ascii_lowercase();
            if s != "http" && s != "https" {
                return Err(SpecError::Usage(format!(
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
            domain: self.domain.clone(),
            subdomain: self.subdomain.clone(),
            pooling: self.pooling,
            basic_auth: self
                .basic_auth
                .iter()
                .map(|pair| match pair.split_once(':') {
                    Some((u, p)) => Ok((u.to_string(), p.to_string())),
                    None => Err(SpecError::Usage(format!(
                        "--basic-auth {pair:?}: expected USER:PASSWORD"
                    ))),
                })
                .collect::<Result<_, _>>()?,
            host_header: self.host_header.clone(),
            serve_dir,
            inspect: self.inspect,
            modules: self.modules.clone(),
            ..TunnelSpec::new(proto, upstream)
        };
        let mut tunnels = vec![first.clone()];
        if let Some(second) = schemes.get(1) {
            // Plain HTTP carries no client certificate.
            let modules = HttpModules {
                mutual_tls_cas: None,
                ..first.modules.clone()
            };
            tunnels.push(TunnelSpec {
                proto: second.clone(),
                domain: None,
                subdomain: None,
                same_host_as: Some(0),
                modules,
                ..first
            });
        }
        Ok(tunnels)
    }
}

/// `file:///abs/path` → the directory, which must exist.
fn file_root(addr: &str) -> Result<Option<PathBuf>, SpecError> {
    let Some(path) = addr.strip_prefix("file://") else {
        return Ok(None);
    };
    let path = PathBuf::from(path);
    if !path.is_absolute() || !path.is_dir() {
        return Err(SpecError::Usage(format!(
            "{addr}: file:// needs the absolute path of an existing directory"
        )));
    }
    Ok(Some(path))
}

/// A TCP tunnel as asked for.
#[derive(Debug, Clone, Default)]
pub struct TcpTunnel {
    /// A port or `host:port`.
    pub addr: String,
    pub remote_addr: Option<String>,
    pub pooling: bool,
    pub proxy_proto: Option<u8>,
}

impl TcpTunnel {
    pub fn specs(&self) -> Result<Vec<TunnelSpec>, SpecError> {
        let mut upstream =
            Upstream::parse(&self.addr).map_err(|e| SpecError::Usage(e.to_string()))?;
        // Raw bytes: whatever the port, the agent does not speak TLS itself.
        upstream.tls = false;
        Ok(vec![TunnelSpec {
            remote_addr: self.remote_addr.clone(),
            pooling: self.pooling,
            proxy_proto: self.proxy_proto.unwrap_or(0),
            ..TunnelSpec::new("tcp", upstream)
        }])
    }
}

/// Where a TLS tunnel's certificate and key come from.
#[derive(Debug, Clone)]
pub enum CertSource {
    /// `--crt`/`--key` paths.
    Files { crt: PathBuf, key: PathBuf },
    /// A v3 file's inline PEM.
    Inline { crt: Vec<u8>, key: Vec<u8> },
}

/// A TLS tunnel as asked for.
#[derive(Debug, Clone, Default)]
pub struct TlsTunnel {
    /// A port or `host:port`; with a certificate, an `https://` address
    /// re-encrypts to the upstream.
    pub addr: String,
    pub domain: Option<String>,
    pub subdomain: Option<String>,
    /// Terminate at the agent with this certificate.
    pub cert: Option<CertSource>,
    pub pooling: bool,
    pub proxy_proto: Option<u8>,
}

impl TlsTunnel {
    pub fn specs(&self) -> Result<Vec<TunnelSpec>, SpecError> {
        let mut upstream =
            Upstream::parse(&self.addr).map_err(|e| SpecError::Usage(e.to_string()))?;
        let terminate_tls = match &self.cert {
            Some(CertSource::Inline { crt, key }) => Some(
                TlsTerminator::from_pem(crt, key)
                    .map_err(|e| SpecError::Usage(format!("inline certificate and key: {e}")))?,
            ),
            Some(CertSource::Files { crt, key }) => Some(
                TlsTerminator::from_pem(&read(crt)?, &read(key)?)
                    .map_err(|e| SpecError::Usage(format!("--crt/--key: {e}")))?,
            ),
            None => None,
        };
        // Passthrough hands the client's TLS to the upstream as is; after
        // terminating, plaintext goes on unless the address says https://.
        upstream.tls = terminate_tls.is_some() && self.addr.trim().starts_with("https://");
        Ok(vec![TunnelSpec {
            domain: self.domain.clone(),
            subdomain: self.subdomain.clone(),
            pooling: self.pooling,
            terminate_tls,
            proxy_proto: self.proxy_proto.unwrap_or(0),
            ..TunnelSpec::new("tls", upstream)
        }])
    }
}

/// A labeled tunnel as asked for.
#[derive(Debug, Clone, Default)]
pub struct LabeledTunnel {
    /// A port, `host:port` or an http(s):// URL.
    pub addr: String,
    /// `key=value` entries.
    pub labels: Vec<String>,
}

impl LabeledTunnel {
    pub fn specs(&self) -> Result<Vec<TunnelSpec>, SpecError> {
        let upstream = Upstream::parse(&self.addr).map_err(|e| SpecError::Usage(e.to_string()))?;
        let mut labels = BTreeMap::new();
        for l in &self.labels {
            match l.split_once('=') {
                Some((k, v)) if !k.trim().is_empty() && !v.trim().is_empty() => {
                    labels.insert(k.trim().to_string(), v.trim().to_string());
                }
                _ => {
                    return Err(SpecError::Usage(format!(
                        "--label {l:?}: expected KEY=VALUE"
                    )))
                }
            }
        }
        Ok(vec![TunnelSpec {
            labels,
            ..TunnelSpec::new("https", upstream)
        }])
    }
}

/// v3 files may hold certificates and keys inline instead of a path.
fn is_pem(value: &str) -> bool {
    value.trim_start().starts_with("-----BEGIN ")
}

/// A config value that is a PEM or a path to one.
fn pem_or_file(value: &str) -> Result<Vec<u8>, SpecError> {
    if is_pem(value) {
        Ok(value.as_bytes().to_vec())
    } else {
        read(Path::new(value))
    }
}

/// The route modules a config-file tunnel asks for.
fn modules_of(def: &TunnelDef) -> Result<HttpModules, SpecError> {
    let lists = |add: &[String], remove: &[String]| {
        (!add.is_empty() || !remove.is_empty()).then(|| Headers {
            add: add.to_vec(),
            remove: remove.to_vec(),
        })
    };
    let traffic_policy = match (&def.traffic_policy, &def.traffic_policy_file) {
        (Some(text), _) => Some(text.clone()),
        (None, Some(path)) => Some(read_text(Path::new(path))?),
        (None, None) => None,
    };
    let ua = &def.user_agent_filter;
    Ok(HttpModules {
        ip_restriction: (!def.cidr_allow.is_empty() || !def.cidr_deny.is_empty()).then(|| {
            IpRestriction {
                allow_cidrs: def.cidr_allow.clone(),
                deny_cidrs: def.cidr_deny.clone(),
            }
        }),
        compression: def.compression,
        circuit_breaker: def
            .circuit_breaker
            .map(|error_threshold| CircuitBreaker { error_threshold }),
        request_headers: lists(&def.request_header.add, &def.request_header.remove),
        response_headers: lists(&def.response_header.add, &def.response_header.remove),
        user_agent_filter: (!ua.allow.is_empty() || !ua.deny.is_empty()).then(|| UserAgentFilter {
            allow: ua.allow.clone(),
            deny: ua.deny.clone(),
        }),
        webhook_verification: def.verify_webhook.as_ref().map(|w| WebhookVerification {
            provider: w.provider.clone(),
            secret: w.secret.clone().unwrap_or_default(),
            sealed_secret: String::new(),
        }),
        mutual_tls_cas: def.client_cas.as_deref().map(pem_or_file).transpose()?,
        websocket_tcp_converter: def.websocket_tcp_converter,
        traffic_policy,
    })
}

/// The tunnels one config-file definition opens (two for `bind_tls:
/// both`, sharing the hostname), named after it.
pub fn from_def(def: &TunnelDef) -> Result<Vec<TunnelSpec>, SpecError> {
    let in_tunnel = |e: SpecError| SpecError::Config(format!("tunnel {:?}: {e}", def.name));
    let specs = if !def.labels.is_empty() {
        LabeledTunnel {
            addr: def.addr.clone(),
            labels: def.labels.clone(),
        }
        .specs()
    } else {
        match def.proto {
            Proto::Http => modules_of(def).and_then(|modules| {
                HttpTunnel {
                    addr: def.addr.clone(),
                    domain: def.hostname.clone(),
                    subdomain: def.subdomain.clone(),
                    pooling: def.pooling_enabled,
                    basic_auth: def.basic_auth.clone(),
                    schemes: match def.bind_tls {
                        BindTls::True => vec!["https".to_string()],
                        BindTls::False => vec!["http".to_string()],
                        BindTls::Both => vec!["https".to_string(), "http".to_string()],
                    },
                    host_header: def.host_header.clone(),
                    inspect: def.inspect.unwrap_or(true),
                    modules,
                }
                .specs()
            }),
            Proto::Tcp => TcpTunnel {
                addr: def.addr.clone(),
                remote_addr: def.remote_addr.clone(),
                pooling: def.pooling_enabled,
                proxy_proto: def.proxy_proto,
            }
            .specs(),
            Proto::Tls if def.client_cas.is_some() => Err(SpecError::Config(
                "client certificate CAs for TLS terminated at the agent are not supported yet"
                    .into(),
            )),
            Proto::Tls => TlsTunnel {
                addr: def.addr.clone(),
                domain: def.hostname.clone(),
                subdomain: def.subdomain.clone(),
                cert: match (&def.crt, &def.key) {
                    (Some(c), Some(k)) if is_pem(c) && is_pem(k) => Some(CertSource::Inline {
                        crt: c.clone().into_bytes(),
                        key: k.clone().into_bytes(),
                    }),
                    (Some(c), Some(k)) if !is_pem(c) && !is_pem(k) => Some(CertSource::Files {
                        crt: PathBuf::from(c),
                        key: PathBuf::from(k),
                    }),
                    (None, None) => None,
                    _ => {
                        return Err(in_tunnel(SpecError::Usage(
                            "--crt and --key go together".into(),
                        )))
                    }
                },
                pooling: def.pooling_enabled,
                proxy_proto: def.proxy_proto,
            }
            .specs(),
        }
    };
    let mut specs = specs.map_err(in_tunnel)?;
    for (i, s) in specs.iter_mut().enumerate() {
        s.name = if i == 0 {
            def.name.clone()
        } else {
            twin_name(&def.name, &s.proto)
        };
        s.metadata = def.metadata.clone().unwrap_or_default();
    }
    Ok(specs)
}

/// ngrok's name for the second tunnel of a pair bound on one name (the
/// plain-HTTP twin of `bind_tls: both`): `NAME (http)`.
pub fn twin_name(name: &str, proto: &str) -> String {
    format!("{name} ({proto})")
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
        from_def(&def).map_err(|e| e.to_string())
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

    #[test]
    fn bind_options_are_protos_typed_shape() {
        let spec = TunnelSpec {
            basic_auth: vec![("u".into(), "password1".into())],
            modules: HttpModules {
                compression: true,
                ip_restriction: Some(IpRestriction {
                    allow_cidrs: vec!["10.0.0.0/8".into()],
                    deny_cidrs: vec![],
                }),
                ..HttpModules::default()
            },
            ..TunnelSpec::new("https", Upstream::parse("8080").unwrap())
        };
        let v = spec.bind_opts();
        assert_eq!(v["Compression"], serde_json::json!({}));
        assert_eq!(v["IPRestriction"]["allow_cidrs"][0], "10.0.0.0/8");
        assert_eq!(v["BasicAuth"]["credentials"][0]["username"], "u");
        let back = HttpOpts::from_value(&v).unwrap();
        assert_eq!(
            back,
            spec.http_opts(),
            "what the edge reads is what was sent"
        );
        let tcp = TunnelSpec::new("tcp", Upstream::parse("22").unwrap()).bind_opts();
        assert_eq!(TcpOpts::from_value(&tcp).unwrap().addr.as_deref(), Some(""));
    }

    fn one(yaml: &str) -> Result<Vec<TunnelSpec>, SpecError> {
        let file = agent_file::parse("test.yml", yaml).unwrap();
        from_def(&file.tunnels[0])
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
        let pem = specs[0].modules.mutual_tls_cas.clone().unwrap();
        assert_eq!(String::from_utf8(pem).unwrap(), ca.cert.pem());
        let b64 = specs[0].bind_opts()["MutualTLSCA"]["mutual_tls_ca"]
            .as_str()
            .unwrap()
            .to_string();
        let sent = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap();
        assert_eq!(String::from_utf8(sent).unwrap(), ca.cert.pem());

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
