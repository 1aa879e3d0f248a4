//! The agent's YAML configuration file, in ngrok's formats v2 and v3:
//! parsing (every error names the file, the line and the key), merging
//! several files, and writing the authtoken into a file in place.
//!
//! Parsing is pure; only [`load`] reads and [`save_authtoken`] writes files.
//!
//! Parsing runs in two passes over the text: the first reads it as a plain
//! YAML value (syntax errors, duplicate keys, the `version`), the second
//! deserializes it into the wire structs of that version through
//! `serde_path_to_error`, which gives the key path, while `yaml_serde`
//! gives the line. Checks made after deserialization find the key's line
//! by walking the indentation of the text (`locate`), which is exact for
//! block-style YAML and points at the nearest enclosing key for flow style.
//!
//! The model and entry points are here; the rest is by section: `error`,
//! `locate` (key paths and lines), `context` (serde errors made readable),
//! `wire` (what each version holds), `convert` (wire → model), `checks`
//! (single values), `authtoken` (editing a file in place).

use std::collections::HashMap;
use std::fmt;
use std::fs;
use std::io::{self, Write as _};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::{self, IgnoredAny};
use serde::{Deserialize, Deserializer};
use yaml_serde::Value;

use crate::hostname::split_host_port;
use crate::proxy_url::ProxyUrl;

// First: its `path!` macro is used by the others.
#[macro_use]
mod locate;
mod authtoken;
mod checks;
mod context;
mod convert;
mod error;
mod wire;

use self::{authtoken::*, checks::*, context::*, convert::*, locate::*, wire::*};
pub use authtoken::edit_authtoken;
pub use error::{AgentFileError, ErrorKind};

/// Environment variable naming the file `gangway` reads when no `--config`
/// is given.
pub const CONFIG_ENV: &str = "GANGWAY_CONFIG";
/// Directory under the user's config directory (`~/.config` on Linux).
pub const CONFIG_DIR_NAME: &str = "gangway";
/// File name inside [`CONFIG_DIR_NAME`].
pub const CONFIG_FILE_NAME: &str = "gangway.yml";
/// Port assumed when `server_addr` / `agent.connect_url` has none (ngrok's).
pub const DEFAULT_SERVER_PORT: u16 = 443;
/// Version of the files [`save_authtoken`] creates.
pub const NEW_FILE_VERSION: u8 = 3;

/// Where `gangway` looks when no `--config` is given: `$GANGWAY_CONFIG` if
/// set and not empty, else `dirs::config_dir()/gangway/gangway.yml`
/// (`~/.config/gangway/gangway.yml` on Linux). `None` when neither is known.
pub fn default_path() -> Option<PathBuf> {
    default_path_from(std::env::var_os(CONFIG_ENV), dirs::config_dir())
}

fn default_path_from(
    env: Option<std::ffi::OsString>,
    config_dir: Option<PathBuf>,
) -> Option<PathBuf> {
    match env {
        Some(path) if !path.is_empty() => Some(PathBuf::from(path)),
        _ => config_dir.map(|dir| dir.join(CONFIG_DIR_NAME).join(CONFIG_FILE_NAME)),
    }
}

/// Reads and merges `paths` in order with [`AgentFile::merge`]. A file that
/// cannot be read is an error naming its path ([`AgentFileError::is_not_found`]
/// tells a missing one apart, for callers that tolerate a missing default
/// file). No paths give [`AgentFile::default`].
pub fn load(paths: &[PathBuf]) -> Result<AgentFile, AgentFileError> {
    let mut merged = AgentFile::default();
    for path in paths {
        let origin = path.display().to_string();
        let text = fs::read_to_string(path)
            .map_err(|e| AgentFileError::io(&origin, ErrorKind::Read(e)))?;
        merged.merge(parse(&origin, &text)?);
    }
    Ok(merged)
}

/// Parses one file's text. `origin` is the path shown in errors. A file
/// without `version` is v2 (like old ngrok); an empty file is
/// [`AgentFile::default`].
pub fn parse(origin: &str, text: &str) -> Result<AgentFile, AgentFileError> {
    let ctx = Ctx::new(origin, text);
    let value = ctx.parse_value(text)?;
    let map = match &value {
        Value::Null => return Ok(AgentFile::default()),
        Value::Mapping(map) => map,
        _ => return Err(ctx.not_a_mapping()),
    };
    let version = ctx.version(map)?;
    let de = yaml_serde::Deserializer::from_str(text);
    if version == 3 {
        let wire: V3Wire =
            serde_path_to_error::deserialize(de).map_err(|e| ctx.serde_error(e, 3))?;
        from_v3(&ctx, wire)
    } else {
        let wire: V2Wire =
            serde_path_to_error::deserialize(de).map_err(|e| ctx.serde_error(e, 2))?;
        from_v2(&ctx, wire)
    }
}

/// Writes `token` as the authtoken of the file at `path`.
///
/// A missing file (and its directory) is created as a v3 file,
/// `version: "3"\nagent:\n  authtoken: TOKEN\n`, readable by its owner only.
/// An existing file keeps every other line and comment: the `authtoken:`
/// value (top-level for v2, under `agent:` for v3) is replaced, or the key
/// is inserted. The file is replaced atomically, keeping its permissions,
/// and a symlink is followed. A file that is not valid YAML is left alone
/// and its syntax error returned.
pub fn save_authtoken(path: &Path, token: &str) -> Result<(), AgentFileError> {
    let origin = path.display().to_string();
    let token = token.trim();
    if token.is_empty() || token.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(AgentFileError {
            origin,
            line: None,
            key: Some("authtoken".into()),
            kind: ErrorKind::Invalid("must be a non-empty token without spaces".into()),
        });
    }
    match fs::read_to_string(path) {
        Ok(text) => {
            let edited = edit_authtoken(&origin, &text, token)?;
            replace_file(path, &edited)
                .map_err(|e| AgentFileError::io(&origin, ErrorKind::Write(e)))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let text = format!(
                "version: \"{NEW_FILE_VERSION}\"\nagent:\n  authtoken: {}\n",
                yaml_scalar(token)
            );
            create_file(path, &text).map_err(|e| AgentFileError::io(&origin, ErrorKind::Write(e)))
        }
        Err(e) => Err(AgentFileError::io(&origin, ErrorKind::Read(e))),
    }
}

/// The settings of one or more merged agent files.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentFile {
    /// 2 or 3: the version of the last file merged (2 for no file).
    pub version: u8,
    /// v2 `authtoken`; v3 `agent.authtoken`. An empty value is `None`.
    pub authtoken: Option<String>,
    /// `host:port` of the server: v2 `server_addr`; v3 `agent.connect_url`
    /// with any scheme stripped; port [`DEFAULT_SERVER_PORT`] if absent.
    pub server_addr: Option<String>,
    pub region: Option<String>,
    pub console_ui: Option<ConsoleUi>,
    pub web_addr: Option<WebAddr>,
    /// `stdout`, `stderr`, `false`, or a file path.
    pub log: Option<String>,
    /// One of `crit`, `warn`, `error`, `info`, `debug`.
    pub log_level: Option<String>,
    pub log_format: Option<LogFormat>,
    pub metadata: Option<String>,
    /// Bytes. The file may say `50000000`, `"50MB"` or `"10MiB"`; `0` is
    /// the default (`None`) and `-1` turns inspection off (`Some(0)`), as
    /// in ngrok.
    pub inspect_db_size: Option<u64>,
    /// `trusted`, `host`, or a PEM file path: v2 `root_cas`; v3
    /// `agent.root_cas` or `agent.connect_cas` (ngrok's v3 name).
    pub root_cas: Option<String>,
    /// The outbound proxy to the edge: `proxy_url` (v2 also reads ngrok
    /// 2.x's `http_proxy` and `socks5_proxy`).
    pub proxy_url: Option<ProxyUrl>,
    /// Host names the web interface answers besides localhost and IPs.
    pub web_allow_hosts: Option<Vec<String>>,
    /// v2 `tunnels` and v3 `endpoints` then `tunnels`, in file order; names
    /// are unique.
    pub tunnels: Vec<TunnelDef>,
}

impl Default for AgentFile {
    fn default() -> Self {
        AgentFile {
            version: 2,
            authtoken: None,
            server_addr: None,
            region: None,
            console_ui: None,
            web_addr: None,
            log: None,
            log_level: None,
            log_format: None,
            metadata: None,
            inspect_db_size: None,
            root_cas: None,
            proxy_url: None,
            web_allow_hosts: None,
            tunnels: Vec::new(),
        }
    }
}

impl AgentFile {
    /// Merges a later file into this one, like ngrok: every setting the
    /// later file has replaces ours; a later tunnel replaces ours of the same
    /// name (keeping our position) or is appended.
    pub fn merge(&mut self, later: AgentFile) {
        let AgentFile {
            version,
            authtoken,
            server_addr,
            region,
            console_ui,
            web_addr,
            log,
            log_level,
            log_format,
            metadata,
            inspect_db_size,
            root_cas,
            proxy_url,
            web_allow_hosts,
            tunnels,
        } = later;
        self.version = version;
        override_with(&mut self.authtoken, authtoken);
        override_with(&mut self.server_addr, server_addr);
        override_with(&mut self.region, region);
        override_with(&mut self.console_ui, console_ui);
        override_with(&mut self.web_addr, web_addr);
        override_with(&mut self.log, log);
        override_with(&mut self.log_level, log_level);
        override_with(&mut self.log_format, log_format);
        override_with(&mut self.metadata, metadata);
        override_with(&mut self.inspect_db_size, inspect_db_size);
        override_with(&mut self.root_cas, root_cas);
        override_with(&mut self.proxy_url, proxy_url);
        override_with(&mut self.web_allow_hosts, web_allow_hosts);
        for tunnel in tunnels {
            match self.tunnels.iter_mut().find(|t| t.name == tunnel.name) {
                Some(slot) => *slot = tunnel,
                None => self.tunnels.push(tunnel),
            }
        }
    }

    /// The tunnel or endpoint named `name`.
    pub fn tunnel(&self, name: &str) -> Option<&TunnelDef> {
        self.tunnels.iter().find(|t| t.name == name)
    }
}

fn override_with<T>(slot: &mut Option<T>, later: Option<T>) {
    if later.is_some() {
        *slot = later;
    }
}

/// One tunnel (v2 `tunnels.NAME`, v3 `tunnels.NAME`) or endpoint (v3
/// `endpoints[i]`).
#[derive(Debug, Clone, PartialEq)]
pub struct TunnelDef {
    pub name: String,
    pub kind: TunnelKind,
    /// v2 `proto`; v3 the scheme of `url`. A labeled v2 tunnel without
    /// `proto` is `Http` (the edge decides).
    pub proto: Proto,
    /// Where traffic goes, as written: a port (`80`), `host:port`, or a URL
    /// (`https://localhost:8443`, `file:///dir`). v2 `addr`; v3 `upstream.url`.
    pub addr: String,
    pub inspect: Option<bool>,
    /// `user:pass` entries: v2 `auth` then `basic_auth`.
    pub basic_auth: Vec<String>,
    pub host_header: Option<String>,
    /// Which of http/https an HTTP tunnel binds (default: https only).
    /// v2 `bind_tls` or `schemes`; v3 the scheme of `url`.
    pub bind_tls: BindTls,
    pub subdomain: Option<String>,
    /// v2 `hostname` or `domain`; v3 the host of an http(s)/tls `url`.
    pub hostname: Option<String>,
    /// TLS certificate and key (paths; v3 also allows inline PEM): v2 `crt`,
    /// `key`; v3 `agent_tls_termination.server_certificate`/`server_private_key`.
    pub crt: Option<String>,
    pub key: Option<String>,
    /// CA bundle for client certificates: v2 `client_cas` or
    /// `mutual_tls_cas`; v3 `agent_tls_termination.mutual_tls_certificate_authorities`.
    pub client_cas: Option<String>,
    /// TCP only: v2 `remote_addr`; v3 `host:port` of a `tcp://` url.
    pub remote_addr: Option<String>,
    pub metadata: Option<String>,
    pub description: Option<String>,
    /// `name=value` labels of an ngrok labeled tunnel.
    pub labels: Vec<String>,
    pub pooling_enabled: bool,
    /// The `traffic_policy` (or legacy `policy`) document as JSON text.
    pub traffic_policy: Option<String>,
    /// A path to a traffic policy file (`traffic_policy_file`), not read here.
    pub traffic_policy_file: Option<String>,
    /// `cidr_allow` / `ip_restriction.allow_cidrs`: CIDRs or addresses.
    pub cidr_allow: Vec<String>,
    /// `cidr_deny` / `ip_restriction.deny_cidrs`.
    pub cidr_deny: Vec<String>,
    pub compression: bool,
    /// Ratio of 5xx responses in 0..=1 above which requests are rejected.
    pub circuit_breaker: Option<f64>,
    pub request_header: HeaderRules,
    pub response_header: HeaderRules,
    pub websocket_tcp_converter: bool,
    /// PROXY protocol version, 1 or 2: v2 `proxy_proto`; v3 `upstream.proxy_protocol`.
    pub proxy_proto: Option<u8>,
    pub verify_webhook: Option<VerifyWebhook>,
    pub user_agent_filter: UserAgentFilter,
    pub terminate_at: Option<TerminateAt>,
    /// v3 `upstream.protocol`.
    pub upstream_protocol: Option<UpstreamProtocol>,
    /// v3 `bindings` (`public`, `internal` or `kubernetes`; at most one).
    pub bindings: Vec<String>,
}

/// Which section of the file a [`TunnelDef`] came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TunnelKind {
    /// `tunnels:` (v2, or v3's deprecated section).
    Tunnel,
    /// `endpoints:` (v3).
    Endpoint,
}

/// `console_ui`: `true`, `false` or `iftty` (ngrok's default).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsoleUi {
    On,
    Off,
    IfTty,
}

/// `web_addr`: `false`, or the `host:port` to bind the inspection UI/API on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebAddr {
    Disabled,
    Addr(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Logfmt,
    Json,
    Term,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    Http,
    Tcp,
    Tls,
}

impl Proto {
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Http => "http",
            Proto::Tcp => "tcp",
            Proto::Tls => "tls",
        }
    }
}

/// Which endpoints an HTTP tunnel binds: `True` https only, `False` http
/// only, `Both`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BindTls {
    #[default]
    True,
    False,
    Both,
}

/// `terminate_at` of a TLS tunnel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TerminateAt {
    Edge,
    Agent,
    Upstream,
}

/// v3 `upstream.protocol`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamProtocol {
    Http1,
    Http2,
}

/// `request_header` / `response_header`: `add` entries are `name:value`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HeaderRules {
    pub add: Vec<String>,
    pub remove: Vec<String>,
}

/// `verify_webhook`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyWebhook {
    pub provider: String,
    pub secret: Option<String>,
}

/// `user_agent_filter`: regular expressions.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UserAgentFilter {
    pub allow: Vec<String>,
    pub deny: Vec<String>,
}

#[cfg(test)]
mod tests;
