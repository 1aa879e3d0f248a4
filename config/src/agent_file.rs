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

// ---------------------------------------------------------------- errors

/// A rejected agent file: where ([`origin`](Self::origin), [`line`](Self::line),
/// [`key`](Self::key)) and why ([`kind`](Self::kind)). Displays as
/// `FILE:LINE: KEY: MESSAGE`, leaving out what is unknown.
#[derive(Debug)]
pub struct AgentFileError {
    origin: String,
    line: Option<usize>,
    key: Option<String>,
    kind: ErrorKind,
}

/// Why an agent file was rejected.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The file could not be read (missing, unreadable, not UTF-8).
    #[error("cannot read: {0}")]
    Read(io::Error),
    /// The file or its directory could not be written.
    #[error("cannot write: {0}")]
    Write(io::Error),
    /// The text is not YAML (or holds more than one document).
    #[error("invalid YAML: {0}")]
    Syntax(String),
    /// A key the file's version does not have there; the text is a hint
    /// (" (did you mean `proto`?)"), possibly empty.
    #[error("unknown key{0}")]
    UnknownKey(String),
    /// A key ngrok has that gangway does not implement.
    #[error("not supported by gangway")]
    Unsupported,
    /// The same key twice in one mapping.
    #[error("defined more than once")]
    Duplicate,
    /// A required key is absent.
    #[error("missing")]
    Missing,
    /// A value of the wrong type, out of range, or at odds with another key.
    #[error("{0}")]
    Invalid(String),
}

impl AgentFileError {
    fn io(origin: &str, kind: ErrorKind) -> Self {
        AgentFileError {
            origin: origin.to_string(),
            line: None,
            key: None,
            kind,
        }
    }

    /// The file's path (or the `origin` given to [`parse`]).
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// 1-based line of the offending key or value, when known.
    pub fn line(&self) -> Option<usize> {
        self.line
    }

    /// Path of the offending key, like `tunnels.web.proto` or
    /// `endpoints[1].upstream.url` (indexes from 0).
    pub fn key(&self) -> Option<&str> {
        self.key.as_deref()
    }

    pub fn kind(&self) -> &ErrorKind {
        &self.kind
    }

    /// The file does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(&self.kind, ErrorKind::Read(e) if e.kind() == io::ErrorKind::NotFound)
    }
}

impl fmt::Display for AgentFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.origin)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        f.write_str(": ")?;
        if let Some(key) = &self.key {
            write!(f, "{key}: ")?;
        }
        write!(f, "{}", self.kind)
    }
}

impl std::error::Error for AgentFileError {}

// ------------------------------------------------------------- key paths

/// One step of a key path.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    Key(String),
    Index(usize),
}

impl From<&str> for Seg {
    fn from(key: &str) -> Self {
        Seg::Key(key.to_string())
    }
}

impl From<&String> for Seg {
    fn from(key: &String) -> Self {
        Seg::Key(key.clone())
    }
}

impl From<usize> for Seg {
    fn from(index: usize) -> Self {
        Seg::Index(index)
    }
}

macro_rules! path {
    ($($seg:expr),* $(,)?) => { [$(Seg::from($seg)),*] };
}

/// `a.b[1].c`, the form `serde_path_to_error` prints.
fn render(path: &[Seg]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            Seg::Key(key) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

fn join(base: &[Seg], more: impl Into<Seg>) -> Vec<Seg> {
    let mut path = base.to_vec();
    path.push(more.into());
    path
}

// ------------------------------------------------ locating keys in the text

/// A line of content (not blank, not a comment). A sequence item
/// `  - name: x` becomes two: the item marker (`item`, indent 2) and
/// `name: x` at indent 4.
#[derive(Debug, Clone, Copy)]
struct Line<'a> {
    /// 1-based line number in the file.
    no: usize,
    indent: usize,
    text: &'a str,
    item: bool,
}

fn content_lines(text: &str) -> Vec<Line<'_>> {
    let mut out = Vec::new();
    for (i, raw) in text.split('\n').enumerate() {
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        let raw = if i == 0 {
            raw.strip_prefix('\u{feff}').unwrap_or(raw)
        } else {
            raw
        };
        let trimmed = raw.trim_start_matches(' ');
        let mut indent = raw.len() - trimmed.len();
        let mut rest = trimmed.trim_end();
        let marker = rest == "---" || rest.starts_with("--- ") || rest == "...";
        if rest.is_empty() || rest.starts_with('#') || (indent == 0 && marker) {
            continue;
        }
        loop {
            if rest == "-" || rest.starts_with("- ") {
                out.push(Line {
                    no: i + 1,
                    indent,
                    text: "-",
                    item: true,
                });
                let after = &rest[1..];
                let value = after.trim_start_matches(' ');
                indent += 1 + after.len() - value.len();
                rest = value;
                if rest.is_empty() || rest.starts_with('#') {
                    break;
                }
            } else {
                out.push(Line {
                    no: i + 1,
                    indent,
                    text: rest,
                    item: false,
                });
                break;
            }
        }
    }
    out
}

/// Whether `text` (a line's content) is the mapping key `key`, plain or
/// quoted.
fn key_matches(text: &str, key: &str) -> bool {
    let rest = if let Some(quoted) = text.strip_prefix('"') {
        quoted.strip_prefix(key).and_then(|r| r.strip_prefix('"'))
    } else if let Some(quoted) = text.strip_prefix('\'') {
        quoted.strip_prefix(key).and_then(|r| r.strip_prefix('\''))
    } else {
        text.strip_prefix(key)
    };
    match rest.map(|r| r.trim_start_matches(' ')) {
        Some(r) => r == ":" || r.starts_with(": ") || r.starts_with(":\t"),
        None => false,
    }
}

/// The lines nested under `scope[at]`: deeper ones, plus sequence items at
/// the same indent under a key (`key:\n- a`).
fn children<'s, 'a>(scope: &'s [Line<'a>], at: usize) -> &'s [Line<'a>] {
    let head = scope[at];
    let rest = &scope[at + 1..];
    let end = rest
        .iter()
        .position(|l| {
            !(l.indent > head.indent || (l.indent == head.indent && l.item && !head.item))
        })
        .unwrap_or(rest.len());
    &rest[..end]
}

/// Line of the key at `path`, or of its nearest ancestor found (so a
/// missing key points at its parent). `nth` picks among several matches of
/// the last key (duplicates).
fn locate_nth(lines: &[Line<'_>], path: &[Seg], nth: usize) -> Option<usize> {
    let mut scope = lines;
    let mut found = None;
    for (depth, seg) in path.iter().enumerate() {
        let Some(first) = scope.first() else { break };
        let level = first.indent;
        let last = depth + 1 == path.len();
        let pos = match seg {
            Seg::Key(key) => scope
                .iter()
                .enumerate()
                .filter(|(_, l)| l.indent == level && !l.item && key_matches(l.text, key))
                .map(|(i, _)| i)
                .nth(if last { nth } else { 0 }),
            Seg::Index(n) => scope
                .iter()
                .enumerate()
                .filter(|(_, l)| l.indent == level && l.item)
                .map(|(i, _)| i)
                .nth(*n),
        };
        let Some(at) = pos else { break };
        found = Some(scope[at].no);
        scope = children(scope, at);
    }
    found
}

fn locate(lines: &[Line<'_>], path: &[Seg]) -> Option<usize> {
    locate_nth(lines, path, 0)
}

// ------------------------------------------------------- parsing context

struct Ctx<'a> {
    origin: &'a str,
    text: &'a str,
    lines: Vec<Line<'a>>,
}

impl<'a> Ctx<'a> {
    fn new(origin: &'a str, text: &'a str) -> Self {
        Ctx {
            origin,
            text,
            lines: content_lines(text),
        }
    }

    fn error(&self, line: Option<usize>, key: Option<String>, kind: ErrorKind) -> AgentFileError {
        AgentFileError {
            origin: self.origin.to_string(),
            line,
            key,
            kind,
        }
    }

    fn at(&self, path: &[Seg], kind: ErrorKind) -> AgentFileError {
        self.error(locate(&self.lines, path), Some(render(path)), kind)
    }

    fn invalid(&self, path: &[Seg], message: impl Into<String>) -> AgentFileError {
        self.at(path, ErrorKind::Invalid(message.into()))
    }

    fn missing(&self, path: &[Seg]) -> AgentFileError {
        self.at(path, ErrorKind::Missing)
    }

    fn not_a_mapping(&self) -> AgentFileError {
        let line = self.lines.first().map(|l| l.no);
        self.error(
            line,
            None,
            ErrorKind::Invalid("expected a mapping of settings at the top level".into()),
        )
    }

    /// First pass: the text as a YAML value.
    fn parse_value(&self, text: &str) -> Result<Value, AgentFileError> {
        let de = yaml_serde::Deserializer::from_str(text);
        serde_path_to_error::deserialize(de).map_err(|e| self.value_error(e))
    }

    fn value_error(&self, err: serde_path_to_error::Error<yaml_serde::Error>) -> AgentFileError {
        let path = segments(err.path());
        let inner = err.into_inner();
        let message = clean_message(&inner, &path);
        if let Some(key) = message.strip_prefix("duplicate entry with key ") {
            let key = key
                .strip_prefix('"')
                .and_then(|k| k.strip_suffix('"'))
                .unwrap_or(key);
            let path = join(&path, key);
            let line =
                locate_nth(&self.lines, &path, 1).or_else(|| inner.location().map(|l| l.line()));
            return self.error(line, Some(render(&path)), ErrorKind::Duplicate);
        }
        let line = inner.location().map(|l| l.line());
        let mut message = message;
        if let Some(n) = line {
            let starts_with_tab = self
                .text
                .split('\n')
                .nth(n.saturating_sub(1))
                .is_some_and(|l| l.trim_start_matches(' ').starts_with('\t'));
            if starts_with_tab {
                message.push_str(" (tabs are not allowed for indentation)");
            }
        }
        self.error(line, None, ErrorKind::Syntax(message))
    }

    /// `version`: absent or null is 2.
    fn version(&self, map: &yaml_serde::Mapping) -> Result<u8, AgentFileError> {
        let Some(value) = map.get("version") else {
            return Ok(2);
        };
        let version = match value {
            Value::Null => Some(2),
            Value::Number(n) => n.as_u64().and_then(|n| u8::try_from(n).ok()),
            Value::String(s) => s.trim().parse::<u8>().ok(),
            _ => None,
        };
        match version {
            Some(v @ (2 | 3)) => Ok(v),
            _ => {
                let shown = match value {
                    Value::String(s) => format!("{s:?}"),
                    Value::Number(n) => n.to_string(),
                    Value::Bool(b) => b.to_string(),
                    _ => "this value".to_string(),
                };
                Err(self.invalid(&path!["version"], format!("{shown} is not one of 2, 3")))
            }
        }
    }

    /// Second pass: a deserialization error.
    fn serde_error(
        &self,
        err: serde_path_to_error::Error<yaml_serde::Error>,
        version: u8,
    ) -> AgentFileError {
        let path = segments(err.path());
        let inner = err.into_inner();
        let line = inner
            .location()
            .map(|l| l.line())
            .or_else(|| locate(&self.lines, &path));
        let message = clean_message(&inner, &path);
        let kind = match message.strip_prefix("unknown field `") {
            Some(rest) => ErrorKind::UnknownKey(unknown_key_hint(&path, rest, version)),
            None => ErrorKind::Invalid(message),
        };
        let key = (!path.is_empty()).then(|| render(&path));
        self.error(line, key, kind)
    }
}

fn segments(path: &serde_path_to_error::Path) -> Vec<Seg> {
    use serde_path_to_error::Segment;
    path.iter()
        .map(|seg| match seg {
            Segment::Seq { index } => Seg::Index(*index),
            Segment::Map { key } => Seg::Key(key.clone()),
            Segment::Enum { variant } => Seg::Key(variant.clone()),
            _ => Seg::Key("?".into()),
        })
        .collect()
}

/// yaml_serde's message without its own path prefix and location suffix
/// (we print both our way).
fn clean_message(err: &yaml_serde::Error, path: &[Seg]) -> String {
    let mut message = err.to_string();
    if let Some(loc) = err.location() {
        let at = format!(" at line {} column {}", loc.line(), loc.column());
        if let Some(pos) = message.find(&at) {
            message.replace_range(pos..pos + at.len(), "");
        }
    }
    // yaml_serde names the map for an unknown field, the field otherwise.
    for len in [path.len(), path.len().saturating_sub(1)] {
        if len == 0 {
            continue;
        }
        let prefix = format!("{}: ", render(&path[..len]));
        if let Some(rest) = message.strip_prefix(&prefix) {
            return rest.to_string();
        }
    }
    message
}

/// Keys of v3's `agent:` section (also the v2 top-level agent keys).
const V3_AGENT_KEYS: &[&str] = &[
    "api_key",
    "authtoken",
    "connect_cas",
    "connect_interface",
    "connect_timeout",
    "connect_url",
    "console_ui",
    "console_ui_color",
    "crl_noverify",
    "crl_url",
    "dns_resolver_ips",
    "heartbeat_interval",
    "heartbeat_tolerance",
    "inspect_db_size",
    "log",
    "log_format",
    "log_level",
    "metadata",
    "proxy_url",
    "region",
    "remote_management",
    "root_cas",
    "update_channel",
    "update_check",
    "web_addr",
    "web_allow_hosts",
];

/// A hint for an unknown key: where it belongs in the other version, or the
/// closest known key. `serde_rest` is serde's message after "unknown field `".
fn unknown_key_hint(path: &[Seg], serde_rest: &str, version: u8) -> String {
    let key = match path.last() {
        Some(Seg::Key(key)) => key.as_str(),
        _ => "",
    };
    let top = path.len() == 1;
    if version == 3 && top && key == "server_addr" {
        return " (version 3 calls it agent.connect_url)".into();
    }
    if version == 3 && top && V3_AGENT_KEYS.contains(&key) {
        return " (in a version 3 file it belongs under agent:)".into();
    }
    if version == 2 && top && (key == "agent" || key == "endpoints") {
        return " (only in version 3 files: add version: 3)".into();
    }
    if version == 3
        && path.len() == 2
        && path[0] == Seg::Key("agent".into())
        && key == "server_addr"
    {
        return " (version 3 calls it connect_url)".into();
    }
    let expected = serde_rest.split_once("expected").map_or("", |(_, e)| e);
    let candidates = expected.split('`').skip(1).step_by(2);
    let best = candidates
        .map(|c| (edit_distance(key, c), c))
        .filter(|(d, c)| *d <= 2 && *d < c.len().max(key.len()))
        .min_by_key(|(d, _)| *d);
    match best {
        Some((_, c)) => format!(" (did you mean `{c}`?)"),
        None => String::new(),
    }
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = Vec::with_capacity(b.len() + 1);
        cur.push(i + 1);
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur.push((prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

// ------------------------------------------------------------ wire types

/// Deserializes any scalar's text (so `true` and `"true"` both arrive as
/// text) through `parse`. Errors are raised inside the deserializer's call,
/// which is what makes yaml_serde attach the value's line to them.
fn from_scalar<'de, D, T, F>(d: D, expecting: String, parse: F) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    F: FnOnce(&str) -> Result<T, String>,
{
    struct ScalarVisitor<F> {
        expecting: String,
        parse: F,
    }
    impl<T, F: FnOnce(&str) -> Result<T, String>> de::Visitor<'_> for ScalarVisitor<F> {
        type Value = T;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(&self.expecting)
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
            (self.parse)(v).map_err(E::custom)
        }
    }
    d.deserialize_str(ScalarVisitor { expecting, parse })
}

/// A keyword, case-insensitively.
fn keyword<'de, D, T>(d: D, names: &'static [(&'static str, T)]) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Copy,
{
    let list = names
        .iter()
        .map(|(name, _)| *name)
        .collect::<Vec<_>>()
        .join(", ");
    from_scalar(d, format!("one of {list}"), |text| {
        let wanted = text.trim();
        names
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(wanted))
            .map(|(_, value)| *value)
            .ok_or_else(|| format!("{text:?} is not one of {list}"))
    })
}

/// `Deserialize` for an enum written as one of a few keywords.
macro_rules! keywords {
    ($ty:ty { $($word:literal => $val:expr),+ $(,)? }) => {
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                keyword(d, &[$(($word, $val)),+])
            }
        }
    };
}

keywords!(Proto {
    "http" => Proto::Http,
    "tcp" => Proto::Tcp,
    "tls" => Proto::Tls,
});

keywords!(BindTls {
    "true" => BindTls::True,
    "false" => BindTls::False,
    "both" => BindTls::Both,
});

keywords!(ConsoleUi {
    "true" => ConsoleUi::On,
    "false" => ConsoleUi::Off,
    "iftty" => ConsoleUi::IfTty,
});

keywords!(LogFormat {
    "logfmt" => LogFormat::Logfmt,
    "json" => LogFormat::Json,
    "term" => LogFormat::Term,
});

keywords!(TerminateAt {
    "edge" => TerminateAt::Edge,
    "agent" => TerminateAt::Agent,
    "upstream" => TerminateAt::Upstream,
});

keywords!(UpstreamProtocol {
    "http1" => UpstreamProtocol::Http1,
    "http2" => UpstreamProtocol::Http2,
});

/// `proxy_url` (and 2.x's `http_proxy`, `socks5_proxy`): a proxy URL, or
/// `false` or empty for none.
struct ProxySetting(Option<ProxyUrl>);

impl<'de> Deserialize<'de> for ProxySetting {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        from_scalar(d, "a proxy URL or false".into(), |text| match text.trim() {
            "" | "false" => Ok(ProxySetting(None)),
            url => ProxyUrl::parse(url).map(|p| ProxySetting(Some(p))),
        })
    }
}

impl<'de> Deserialize<'de> for WebAddr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        from_scalar(d, "host:port or false".into(), |text| {
            let text = text.trim();
            if text == "false" {
                Ok(WebAddr::Disabled)
            } else if valid_host_port(text) {
                Ok(WebAddr::Addr(text.to_string()))
            } else {
                Err("expected host:port or false".into())
            }
        })
    }
}

/// `log_level`, one of ngrok's values.
struct LogLevel(&'static str);

impl<'de> Deserialize<'de> for LogLevel {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        const LEVELS: &[(&str, &str)] = &[
            ("crit", "crit"),
            ("warn", "warn"),
            ("error", "error"),
            ("info", "info"),
            ("debug", "debug"),
        ];
        keyword(d, LEVELS).map(LogLevel)
    }
}

/// `schemes` entries.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Scheme {
    Http,
    Https,
}

impl<'de> Deserialize<'de> for Scheme {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        keyword(d, &[("http", Scheme::Http), ("https", Scheme::Https)])
    }
}

/// `inspect_db_size`: a positive integer of bytes, or a string with a
/// unit. As in ngrok, `0` means the default (`None`) and `-1` turns
/// inspection off (`Some(0)`).
struct DbSize(Option<u64>);

const DB_SIZE_RULE: &str = "must be a number of bytes, 0 (the default) or -1 (inspection off)";

impl<'de> Deserialize<'de> for DbSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct SizeVisitor;
        impl de::Visitor<'_> for SizeVisitor {
            type Value = DbSize;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number of bytes like 50000000 or \"50MB\"")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<DbSize, E> {
                Ok(DbSize((v > 0).then_some(v)))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<DbSize, E> {
                match v {
                    -1 => Ok(DbSize(Some(0))),
                    v => match u64::try_from(v) {
                        Ok(v) => self.visit_u64(v),
                        Err(_) => Err(E::custom(DB_SIZE_RULE)),
                    },
                }
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<DbSize, E> {
                match v.trim() {
                    "-1" => return Ok(DbSize(Some(0))),
                    "0" => return Ok(DbSize(None)),
                    _ => {}
                }
                match parse_size(v) {
                    Some(0) => Err(E::custom(DB_SIZE_RULE)),
                    Some(n) => Ok(DbSize(Some(n))),
                    None => Err(E::custom(format!(
                        "{v:?} is not a size like 50000000, \"50MB\" or \"10MiB\""
                    ))),
                }
            }
        }
        d.deserialize_any(SizeVisitor)
    }
}

/// A Go duration (`10s`, `1m30s`, `500ms`): connect/heartbeat settings.
struct GoDuration(#[allow(dead_code)] Duration);

impl<'de> Deserialize<'de> for GoDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        from_scalar(d, "a duration like 10s".into(), |text| {
            parse_go_duration(text)
                .map(GoDuration)
                .ok_or_else(|| format!("{text:?} is not a duration like 10s, 1m30s or 500ms"))
        })
    }
}

/// An IP address, with or without a port (`dns_resolver_ips`).
struct IpString;

impl<'de> Deserialize<'de> for IpString {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        from_scalar(d, "an IP address".into(), |text| {
            let text = text.trim();
            if text.parse::<IpAddr>().is_ok() || text.parse::<SocketAddr>().is_ok() {
                Ok(IpString)
            } else {
                Err(format!("{text:?} is not an IP address"))
            }
        })
    }
}

/// `proxy_proto` / `upstream.proxy_protocol`: 1, 2, or empty (none).
struct ProxyProto(Option<u8>);

impl<'de> Deserialize<'de> for ProxyProto {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        from_scalar(d, "1 or 2".into(), |text| match text.trim() {
            "" => Ok(ProxyProto(None)),
            "1" => Ok(ProxyProto(Some(1))),
            "2" => Ok(ProxyProto(Some(2))),
            _ => Err(format!("{text:?} is not one of 1, 2")),
        })
    }
}

/// A mapping kept in file order (tunnels by name).
struct Ordered<T>(Vec<(String, T)>);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Ordered<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct OrderedVisitor<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> de::Visitor<'de> for OrderedVisitor<T> {
            type Value = Ordered<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a mapping of names to definitions")
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Ordered<T>, A::Error> {
                let mut entries = Vec::new();
                while let Some(name) = map.next_key::<String>()? {
                    let value = map.next_value::<T>()?;
                    entries.push((name, value));
                }
                Ok(Ordered(entries))
            }
        }
        d.deserialize_map(OrderedVisitor(std::marker::PhantomData))
    }
}

/// A v2 file. Keys gangway does not use are type-checked, then dropped.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping of settings")]
#[allow(dead_code)]
struct V2Wire {
    version: Option<IgnoredAny>,
    authtoken: Option<String>,
    api_key: Option<String>,
    connect_interface: Option<String>,
    connect_timeout: Option<GoDuration>,
    console_ui: Option<ConsoleUi>,
    console_ui_color: Option<String>,
    crl_noverify: Option<bool>,
    dns_resolver_ips: Option<Vec<IpString>>,
    heartbeat_interval: Option<GoDuration>,
    heartbeat_tolerance: Option<GoDuration>,
    inspect_db_size: Option<DbSize>,
    log: Option<String>,
    log_format: Option<LogFormat>,
    log_level: Option<LogLevel>,
    metadata: Option<String>,
    proxy_url: Option<ProxySetting>,
    region: Option<String>,
    remote_management: Option<bool>,
    root_cas: Option<String>,
    server_addr: Option<String>,
    tunnels: Option<Ordered<TunnelWire>>,
    update_channel: Option<String>,
    update_check: Option<bool>,
    web_addr: Option<WebAddr>,
    web_allow_hosts: Option<Vec<String>>,
    // ngrok 2.x keys, still in old files.
    http_proxy: Option<ProxySetting>,
    socks5_proxy: Option<ProxySetting>,
    update: Option<bool>,
}

/// A v3 file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping of settings")]
struct V3Wire {
    #[allow(dead_code)]
    version: Option<IgnoredAny>,
    agent: Option<AgentWire>,
    endpoints: Option<Vec<EndpointWire>>,
    tunnels: Option<Ordered<TunnelWire>>,
}

/// v3 `agent:`.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, expecting = "a mapping of agent settings")]
#[allow(dead_code)]
struct AgentWire {
    authtoken: Option<String>,
    api_key: Option<String>,
    connect_cas: Option<String>,
    connect_interface: Option<String>,
    connect_timeout: Option<GoDuration>,
    connect_url: Option<String>,
    console_ui: Option<ConsoleUi>,
    console_ui_color: Option<String>,
    crl_noverify: Option<bool>,
    crl_url: Option<String>,
    dns_resolver_ips: Option<Vec<IpString>>,
    heartbeat_interval: Option<GoDuration>,
    heartbeat_tolerance: Option<GoDuration>,
    inspect_db_size: Option<DbSize>,
    log: Option<String>,
    log_format: Option<LogFormat>,
    log_level: Option<LogLevel>,
    metadata: Option<String>,
    proxy_url: Option<ProxySetting>,
    region: Option<String>,
    remote_management: Option<bool>,
    root_cas: Option<String>,
    update_channel: Option<String>,
    update_check: Option<bool>,
    web_addr: Option<WebAddr>,
    web_allow_hosts: Option<Vec<String>>,
}

/// A tunnel definition (v2, and v3's deprecated `tunnels:`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a tunnel definition (a mapping)")]
struct TunnelWire {
    proto: Option<Proto>,
    addr: Option<String>,
    inspect: Option<bool>,
    auth: Option<String>,
    basic_auth: Option<Vec<String>>,
    host_header: Option<String>,
    bind_tls: Option<BindTls>,
    schemes: Option<Vec<Scheme>>,
    subdomain: Option<String>,
    hostname: Option<String>,
    domain: Option<String>,
    crt: Option<String>,
    key: Option<String>,
    client_cas: Option<String>,
    mutual_tls_cas: Option<String>,
    remote_addr: Option<String>,
    metadata: Option<String>,
    description: Option<String>,
    labels: Option<Vec<String>>,
    pooling_enabled: Option<bool>,
    traffic_policy: Option<serde_json::Value>,
    /// ngrok's name for `traffic_policy` before agent 3.14.
    policy: Option<serde_json::Value>,
    traffic_policy_file: Option<String>,
    cidr_allow: Option<Vec<String>>,
    cidr_deny: Option<Vec<String>>,
    ip_restriction: Option<IpRestrictionWire>,
    compression: Option<bool>,
    circuit_breaker: Option<f64>,
    request_header: Option<HeaderRulesWire>,
    response_header: Option<HeaderRulesWire>,
    websocket_tcp_converter: Option<bool>,
    proxy_proto: Option<ProxyProto>,
    verify_webhook: Option<VerifyWebhookWire>,
    user_agent_filter: Option<UserAgentFilterWire>,
    terminate_at: Option<TerminateAt>,
    // ngrok modules gangway does not implement: refused rather than
    // silently dropped, since they guard access.
    oauth: Option<IgnoredAny>,
    oidc: Option<IgnoredAny>,
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping with allow_cidrs and deny_cidrs"
)]
struct IpRestrictionWire {
    #[serde(default)]
    allow_cidrs: Vec<String>,
    #[serde(default)]
    deny_cidrs: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping with add and remove")]
struct HeaderRulesWire {
    #[serde(default)]
    add: Vec<String>,
    #[serde(default)]
    remove: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping with provider and secret")]
struct VerifyWebhookWire {
    provider: Option<String>,
    secret: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping with allow and deny")]
struct UserAgentFilterWire {
    #[serde(default)]
    allow: Vec<String>,
    #[serde(default)]
    deny: Vec<String>,
}

/// A v3 endpoint definition.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "an endpoint definition (a mapping)")]
struct EndpointWire {
    name: Option<String>,
    url: Option<String>,
    description: Option<String>,
    metadata: Option<String>,
    bindings: Option<Vec<String>>,
    traffic_policy: Option<serde_json::Value>,
    traffic_policy_file: Option<String>,
    pooling_enabled: Option<bool>,
    upstream: Option<UpstreamWire>,
    agent_tls_termination: Option<AgentTlsWire>,
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping with url, protocol and proxy_protocol"
)]
struct UpstreamWire {
    url: Option<String>,
    protocol: Option<UpstreamProtocol>,
    proxy_protocol: Option<ProxyProto>,
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping of TLS termination settings"
)]
struct AgentTlsWire {
    server_certificate: Option<String>,
    server_private_key: Option<String>,
    #[serde(default)]
    mutual_tls_certificate_authorities: Vec<String>,
}

// ------------------------------------------------------------ conversion

fn non_empty(value: Option<String>) -> Option<String> {
    value.filter(|v| !v.trim().is_empty())
}

fn from_v2(ctx: &Ctx<'_>, wire: V2Wire) -> Result<AgentFile, AgentFileError> {
    let server_addr = match wire.server_addr {
        Some(addr) => Some(server_addr(&addr).map_err(|m| ctx.invalid(&path!["server_addr"], m))?),
        None => None,
    };
    let mut file = AgentFile {
        version: 2,
        authtoken: non_empty(wire.authtoken),
        server_addr,
        region: wire.region,
        console_ui: wire.console_ui,
        web_addr: wire.web_addr,
        log: wire.log,
        log_level: wire.log_level.map(|l| l.0.to_string()),
        log_format: wire.log_format,
        metadata: wire.metadata,
        inspect_db_size: wire.inspect_db_size.and_then(|s| s.0),
        root_cas: wire.root_cas,
        proxy_url: [wire.proxy_url, wire.http_proxy, wire.socks5_proxy]
            .into_iter()
            .find_map(|p| p.and_then(|p| p.0)),
        web_allow_hosts: wire.web_allow_hosts,
        tunnels: Vec::new(),
    };
    for (name, tunnel) in wire.tunnels.map(|t| t.0).unwrap_or_default() {
        file.tunnels.push(tunnel_def(ctx, name, tunnel)?);
    }
    Ok(file)
}

fn from_v3(ctx: &Ctx<'_>, wire: V3Wire) -> Result<AgentFile, AgentFileError> {
    let agent = wire.agent.unwrap_or_default();
    if agent.root_cas.is_some() && agent.connect_cas.is_some() {
        return Err(ctx.invalid(
            &path!["agent", "connect_cas"],
            "set only one of root_cas, connect_cas",
        ));
    }
    let server_addr = match agent.connect_url {
        Some(url) => {
            Some(server_addr(&url).map_err(|m| ctx.invalid(&path!["agent", "connect_url"], m))?)
        }
        None => None,
    };
    let mut file = AgentFile {
        version: 3,
        authtoken: non_empty(agent.authtoken),
        server_addr,
        region: agent.region,
        console_ui: agent.console_ui,
        web_addr: agent.web_addr,
        log: agent.log,
        log_level: agent.log_level.map(|l| l.0.to_string()),
        log_format: agent.log_format,
        metadata: agent.metadata,
        inspect_db_size: agent.inspect_db_size.and_then(|s| s.0),
        root_cas: agent.root_cas.or(agent.connect_cas),
        proxy_url: agent.proxy_url.and_then(|p| p.0),
        web_allow_hosts: agent.web_allow_hosts,
        tunnels: Vec::new(),
    };
    // Names are unique across endpoints and tunnels: `gangway start NAME`.
    let mut seen: HashMap<String, String> = HashMap::new();
    for (i, endpoint) in wire.endpoints.unwrap_or_default().into_iter().enumerate() {
        let def = endpoint_def(ctx, i, endpoint)?;
        let here = path!["endpoints", i];
        if let Some(first) = seen.insert(def.name.clone(), render(&here)) {
            return Err(ctx.invalid(
                &join(&here, "name"),
                format!("{:?} is already the name of {first}", def.name),
            ));
        }
        file.tunnels.push(def);
    }
    for (name, tunnel) in wire.tunnels.map(|t| t.0).unwrap_or_default() {
        let here = path!["tunnels", &name];
        if let Some(first) = seen.get(&name) {
            return Err(ctx.invalid(&here, format!("{name:?} is already the name of {first}")));
        }
        file.tunnels.push(tunnel_def(ctx, name, tunnel)?);
    }
    Ok(file)
}

/// An empty `TunnelDef` to fill in.
fn blank_def(name: String, kind: TunnelKind, proto: Proto, addr: String) -> TunnelDef {
    TunnelDef {
        name,
        kind,
        proto,
        addr,
        inspect: None,
        basic_auth: Vec::new(),
        host_header: None,
        bind_tls: BindTls::True,
        subdomain: None,
        hostname: None,
        crt: None,
        key: None,
        client_cas: None,
        remote_addr: None,
        metadata: None,
        description: None,
        labels: Vec::new(),
        pooling_enabled: false,
        traffic_policy: None,
        traffic_policy_file: None,
        cidr_allow: Vec::new(),
        cidr_deny: Vec::new(),
        compression: false,
        circuit_breaker: None,
        request_header: HeaderRules::default(),
        response_header: HeaderRules::default(),
        websocket_tcp_converter: false,
        proxy_proto: None,
        verify_webhook: None,
        user_agent_filter: UserAgentFilter::default(),
        terminate_at: None,
        upstream_protocol: None,
        bindings: Vec::new(),
    }
}

fn tunnel_def(ctx: &Ctx<'_>, name: String, w: TunnelWire) -> Result<TunnelDef, AgentFileError> {
    let base = path!["tunnels", &name];
    if name.trim().is_empty() {
        let line = locate(&ctx.lines, &base);
        let kind = ErrorKind::Invalid("a tunnel name must not be empty".into());
        return Err(ctx.error(line, Some("tunnels".into()), kind));
    }
    let at = |key: &str| join(&base, key);
    if w.oauth.is_some() {
        return Err(ctx.at(&at("oauth"), ErrorKind::Unsupported));
    }
    if w.oidc.is_some() {
        return Err(ctx.at(&at("oidc"), ErrorKind::Unsupported));
    }

    let labels = w.labels.unwrap_or_default();
    for (i, label) in labels.iter().enumerate() {
        if !label.contains('=') || label.starts_with('=') {
            return Err(ctx.invalid(
                &join(&at("labels"), i),
                format!("{label:?} is not name=value"),
            ));
        }
    }
    let proto = match w.proto {
        Some(proto) => proto,
        None if !labels.is_empty() => Proto::Http,
        None => return Err(ctx.missing(&at("proto"))),
    };
    let addr = w.addr.ok_or_else(|| ctx.missing(&at("addr")))?;
    check_addr(&addr).map_err(|m| ctx.invalid(&at("addr"), m))?;

    let mut def = blank_def(
        name.clone(),
        TunnelKind::Tunnel,
        proto,
        addr.trim().to_string(),
    );
    def.labels = labels;
    def.inspect = w.inspect;
    def.host_header = w.host_header;
    def.subdomain = w.subdomain;
    def.metadata = w.metadata;
    def.description = w.description;
    def.pooling_enabled = w.pooling_enabled.unwrap_or(false);
    def.compression = w.compression.unwrap_or(false);
    def.websocket_tcp_converter = w.websocket_tcp_converter.unwrap_or(false);
    def.proxy_proto = w.proxy_proto.and_then(|p| p.0);
    def.terminate_at = w.terminate_at;
    def.traffic_policy_file = w.traffic_policy_file;

    if let Some(auth) = w.auth {
        check_credentials(&auth).map_err(|m| ctx.invalid(&at("auth"), m))?;
        def.basic_auth.push(auth);
    }
    for (i, auth) in w.basic_auth.unwrap_or_default().into_iter().enumerate() {
        check_credentials(&auth).map_err(|m| ctx.invalid(&join(&at("basic_auth"), i), m))?;
        def.basic_auth.push(auth);
    }

    def.bind_tls = match (w.bind_tls, w.schemes) {
        (Some(_), Some(_)) => {
            return Err(ctx.invalid(&at("schemes"), "set only one of bind_tls, schemes"))
        }
        (Some(bind_tls), None) => bind_tls,
        (None, Some(schemes)) => {
            let http = schemes.contains(&Scheme::Http);
            let https = schemes.contains(&Scheme::Https);
            match (http, https) {
                (true, true) => BindTls::Both,
                (true, false) => BindTls::False,
                (false, true) => BindTls::True,
                (false, false) => {
                    return Err(ctx.invalid(&at("schemes"), "must list http, https or both"))
                }
            }
        }
        (None, None) => BindTls::True,
    };

    def.hostname = match (w.hostname, w.domain) {
        (Some(_), Some(_)) => {
            return Err(ctx.invalid(&at("domain"), "set only one of hostname, domain"))
        }
        (hostname, domain) => hostname.or(domain),
    };
    def.client_cas = match (w.client_cas, w.mutual_tls_cas) {
        (Some(_), Some(_)) => {
            return Err(ctx.invalid(
                &at("mutual_tls_cas"),
                "set only one of client_cas, mutual_tls_cas",
            ));
        }
        (client_cas, mutual) => client_cas.or(mutual),
    };
    match (&w.crt, &w.key) {
        (Some(_), None) => return Err(ctx.invalid(&at("crt"), "needs key as well")),
        (None, Some(_)) => return Err(ctx.invalid(&at("key"), "needs crt as well")),
        _ => {}
    }
    def.crt = w.crt;
    def.key = w.key;

    if let Some(remote) = w.remote_addr {
        if proto != Proto::Tcp {
            return Err(ctx.invalid(&at("remote_addr"), "only valid for tcp tunnels"));
        }
        if !valid_host_port(remote.trim()) {
            return Err(ctx.invalid(&at("remote_addr"), "expected host:port"));
        }
        def.remote_addr = Some(remote.trim().to_string());
    }
    if proto == Proto::Tcp {
        for (key, set) in [
            ("subdomain", def.subdomain.is_some()),
            ("hostname", def.hostname.is_some()),
        ] {
            if set {
                return Err(ctx.invalid(&at(key), "not valid for tcp tunnels"));
            }
        }
    }

    for (key, list) in [("cidr_allow", w.cidr_allow), ("cidr_deny", w.cidr_deny)] {
        let target = if key == "cidr_allow" {
            &mut def.cidr_allow
        } else {
            &mut def.cidr_deny
        };
        for (i, cidr) in list.unwrap_or_default().into_iter().enumerate() {
            check_cidr(&cidr).map_err(|m| ctx.invalid(&join(&at(key), i), m))?;
            target.push(cidr.trim().to_string());
        }
    }
    if let Some(restriction) = w.ip_restriction {
        let base = at("ip_restriction");
        for (key, list) in [
            ("allow_cidrs", restriction.allow_cidrs),
            ("deny_cidrs", restriction.deny_cidrs),
        ] {
            let target = if key == "allow_cidrs" {
                &mut def.cidr_allow
            } else {
                &mut def.cidr_deny
            };
            for (i, cidr) in list.into_iter().enumerate() {
                check_cidr(&cidr).map_err(|m| ctx.invalid(&join(&join(&base, key), i), m))?;
                target.push(cidr.trim().to_string());
            }
        }
    }

    if let Some(ratio) = w.circuit_breaker {
        if !(0.0..=1.0).contains(&ratio) {
            return Err(ctx.invalid(
                &at("circuit_breaker"),
                format!("{ratio} is not a ratio between 0 and 1"),
            ));
        }
        def.circuit_breaker = Some(ratio);
    }
    if let Some(rules) = w.request_header {
        def.request_header = header_rules(ctx, &at("request_header"), rules)?;
    }
    if let Some(rules) = w.response_header {
        def.response_header = header_rules(ctx, &at("response_header"), rules)?;
    }
    if let Some(hook) = w.verify_webhook {
        let provider = non_empty(hook.provider)
            .ok_or_else(|| ctx.missing(&join(&at("verify_webhook"), "provider")))?;
        def.verify_webhook = Some(VerifyWebhook {
            provider,
            secret: hook.secret,
        });
    }
    if let Some(filter) = w.user_agent_filter {
        def.user_agent_filter = UserAgentFilter {
            allow: filter.allow,
            deny: filter.deny,
        };
    }

    let policy = match (w.traffic_policy, w.policy) {
        (Some(_), Some(_)) => {
            return Err(ctx.invalid(&at("policy"), "set only one of traffic_policy, policy"))
        }
        (Some(doc), None) => Some((doc, at("traffic_policy"))),
        (None, Some(doc)) => Some((doc, at("policy"))),
        (None, None) => None,
    };
    if let Some((doc, path)) = policy {
        if def.traffic_policy_file.is_some() {
            return Err(ctx.invalid(&path, "set only one of traffic_policy, traffic_policy_file"));
        }
        def.traffic_policy = Some(policy_json(ctx, &path, doc)?);
    }
    Ok(def)
}

fn endpoint_def(ctx: &Ctx<'_>, index: usize, w: EndpointWire) -> Result<TunnelDef, AgentFileError> {
    let base = path!["endpoints", index];
    let at = |key: &str| join(&base, key);
    let name = non_empty(w.name).ok_or_else(|| ctx.missing(&at("name")))?;
    let url = match &w.url {
        Some(url) => parse_endpoint_url(url).map_err(|m| ctx.invalid(&at("url"), m))?,
        None => UrlParts::default(),
    };
    let upstream = w.upstream.ok_or_else(|| ctx.missing(&at("upstream")))?;
    let upstream_url = join(&at("upstream"), "url");
    let addr = upstream.url.ok_or_else(|| ctx.missing(&upstream_url))?;
    check_addr(&addr).map_err(|m| ctx.invalid(&upstream_url, m))?;

    let mut def = blank_def(
        name,
        TunnelKind::Endpoint,
        url.proto,
        addr.trim().to_string(),
    );
    def.bind_tls = url.bind_tls;
    def.hostname = url.hostname;
    def.remote_addr = url.remote_addr;
    def.description = w.description;
    def.metadata = w.metadata;
    def.pooling_enabled = w.pooling_enabled.unwrap_or(false);
    def.upstream_protocol = upstream.protocol;
    def.proxy_proto = upstream.proxy_protocol.and_then(|p| p.0);
    def.traffic_policy_file = w.traffic_policy_file;

    let bindings = w.bindings.unwrap_or_default();
    if bindings.len() > 1 {
        return Err(ctx.invalid(&at("bindings"), "at most one binding may be given"));
    }
    for (i, binding) in bindings.iter().enumerate() {
        if !["public", "internal", "kubernetes"].contains(&binding.as_str()) {
            let message = format!("{binding:?} is not one of public, internal, kubernetes");
            return Err(ctx.invalid(&join(&at("bindings"), i), message));
        }
    }
    def.bindings = bindings;

    if let Some(tls) = w.agent_tls_termination {
        let tls_path = at("agent_tls_termination");
        if def.proto != Proto::Tls {
            return Err(ctx.invalid(&tls_path, "only valid for tls:// urls"));
        }
        match (&tls.server_certificate, &tls.server_private_key) {
            (Some(_), None) => return Err(ctx.missing(&join(&tls_path, "server_private_key"))),
            (None, Some(_)) => return Err(ctx.missing(&join(&tls_path, "server_certificate"))),
            _ => {}
        }
        def.crt = tls.server_certificate;
        def.key = tls.server_private_key;
        let mut cas = tls.mutual_tls_certificate_authorities;
        if cas.len() > 1 {
            let path = join(&tls_path, "mutual_tls_certificate_authorities");
            return Err(ctx.invalid(
                &path,
                "gangway takes one CA bundle; put the certificates in one file",
            ));
        }
        def.client_cas = cas.pop();
    }
    if let Some(doc) = w.traffic_policy {
        let path = at("traffic_policy");
        if def.traffic_policy_file.is_some() {
            return Err(ctx.invalid(&path, "set only one of traffic_policy, traffic_policy_file"));
        }
        def.traffic_policy = Some(policy_json(ctx, &path, doc)?);
    }
    Ok(def)
}

fn header_rules(
    ctx: &Ctx<'_>,
    base: &[Seg],
    rules: HeaderRulesWire,
) -> Result<HeaderRules, AgentFileError> {
    for (i, header) in rules.add.iter().enumerate() {
        match header.split_once(':') {
            Some((name, _)) if !name.trim().is_empty() => {}
            _ => {
                return Err(ctx.invalid(
                    &join(&join(base, "add"), i),
                    format!("{header:?} is not name:value"),
                ))
            }
        }
    }
    Ok(HeaderRules {
        add: rules.add,
        remove: rules.remove,
    })
}

/// A traffic policy document (a mapping, or a string holding YAML/JSON) as
/// JSON text.
fn policy_json(
    ctx: &Ctx<'_>,
    path: &[Seg],
    doc: serde_json::Value,
) -> Result<String, AgentFileError> {
    let doc = match doc {
        serde_json::Value::String(text) => yaml_serde::from_str::<serde_json::Value>(&text)
            .map_err(|e| ctx.invalid(path, format!("not a traffic policy document: {e}")))?,
        other => other,
    };
    if !doc.is_object() {
        return Err(ctx.invalid(path, "expected a traffic policy document (a mapping)"));
    }
    serde_json::to_string(&doc).map_err(|e| ctx.invalid(path, e.to_string()))
}

// ----------------------------------------------------------- value checks

/// What a v3 endpoint `url` says.
#[derive(Debug, PartialEq, Eq)]
struct UrlParts {
    proto: Proto,
    bind_tls: BindTls,
    hostname: Option<String>,
    remote_addr: Option<String>,
}

impl Default for UrlParts {
    /// No url: a random https endpoint.
    fn default() -> Self {
        UrlParts {
            proto: Proto::Http,
            bind_tls: BindTls::True,
            hostname: None,
            remote_addr: None,
        }
    }
}

/// An endpoint url: a domain (`example.org`, https), an origin
/// (`https://example.org[:port]`, `tcp://host:port`, `tls://host`), a bare
/// scheme (`http://`), or empty. The port of an http(s)/tls origin is
/// dropped (the edge's listeners decide it).
fn parse_endpoint_url(url: &str) -> Result<UrlParts, String> {
    let url = url.trim();
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (scheme.to_ascii_lowercase(), rest),
        None => ("https".to_string(), url),
    };
    let (proto, bind_tls) = match scheme.as_str() {
        "https" => (Proto::Http, BindTls::True),
        "http" => (Proto::Http, BindTls::False),
        "tcp" => (Proto::Tcp, BindTls::True),
        "tls" => (Proto::Tls, BindTls::True),
        other => {
            return Err(format!(
                "scheme {other:?} is not one of http, https, tcp, tls"
            ))
        }
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.contains(['/', '?', '#']) {
        return Err("must be scheme://host[:port] without a path".into());
    }
    if rest.contains('@') {
        return Err("must not contain credentials".into());
    }
    let mut parts = UrlParts {
        proto,
        bind_tls,
        hostname: None,
        remote_addr: None,
    };
    if rest.is_empty() {
        return Ok(parts);
    }
    let (host, port) = split_host_port(rest);
    if !valid_hostname(host) {
        return Err(format!("{host:?} is not a host name"));
    }
    if let Some(port) = port {
        if !port.parse::<u16>().is_ok_and(|p| p > 0) {
            return Err(format!("{port:?} is not a port"));
        }
    }
    match (proto, port) {
        (Proto::Tcp, Some(port)) => parts.remote_addr = Some(format!("{host}:{port}")),
        (Proto::Tcp, None) => return Err("expected tcp://host:port".into()),
        _ => parts.hostname = Some(host.to_ascii_lowercase()),
    }
    Ok(parts)
}

fn valid_hostname(host: &str) -> bool {
    !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._*".contains(c))
}

/// `host:port` with a non-empty host and a numeric port.
fn valid_host_port(s: &str) -> bool {
    let (host, port) = split_host_port(s);
    let host_ok = !host.is_empty() && !host.contains(|c: char| c.is_whitespace() || c == '/');
    host_ok && port.is_some_and(|p| p.parse::<u16>().is_ok())
}

/// `server_addr` / `connect_url` as `host:port`: any scheme and trailing
/// slash dropped, port [`DEFAULT_SERVER_PORT`] if absent.
fn server_addr(value: &str) -> Result<String, String> {
    let value = value.trim();
    let rest = value.split_once("://").map_or(value, |(_, rest)| rest);
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if valid_host_port(rest) {
        return Ok(rest.to_string());
    }
    if valid_hostname(rest) && !rest.contains('*') {
        return Ok(format!("{rest}:{DEFAULT_SERVER_PORT}"));
    }
    Err("expected host:port".into())
}

/// A tunnel's upstream: a port, `host:port`, a host, or a URL.
fn check_addr(addr: &str) -> Result<(), String> {
    let addr = addr.trim();
    if addr.is_empty() {
        return Err("must not be empty".into());
    }
    if addr.chars().all(|c| c.is_ascii_digit()) {
        return match addr.parse::<u16>() {
            Ok(port) if port > 0 => Ok(()),
            _ => Err(format!("{addr} is not a port (1-65535)")),
        };
    }
    if let Some((scheme, _)) = addr.split_once("://") {
        const SCHEMES: &[&str] = &["http", "https", "file", "tcp", "tls"];
        if !SCHEMES.contains(&scheme.to_ascii_lowercase().as_str()) {
            return Err(format!(
                "scheme {scheme:?} is not one of {}",
                SCHEMES.join(", ")
            ));
        }
        return Ok(());
    }
    match split_host_port(addr) {
        (host, Some(port)) if !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0) => {
            Ok(())
        }
        (host, None) if valid_hostname(host) => Ok(()),
        _ => Err("expected a port, host:port or URL".into()),
    }
}

fn check_credentials(value: &str) -> Result<(), String> {
    match value.split_once(':') {
        Some((user, _)) if !user.is_empty() => Ok(()),
        _ => Err("expected user:password".into()),
    }
}

fn check_cidr(value: &str) -> Result<(), String> {
    let value = value.trim();
    if value.parse::<ipnet::IpNet>().is_ok() || value.parse::<IpAddr>().is_ok() {
        Ok(())
    } else {
        Err(format!("{value:?} is not a CIDR"))
    }
}

/// Go's `time.ParseDuration` syntax: `1h30m`, `10s`, `1.5s`, `500ms`, `0`.
fn parse_go_duration(text: &str) -> Option<Duration> {
    const UNITS: &[(&str, f64)] = &[
        ("ns", 1.0),
        ("us", 1e3),
        ("µs", 1e3),
        ("μs", 1e3),
        ("ms", 1e6),
        ("s", 1e9),
        ("m", 60e9),
        ("h", 3600e9),
    ];
    let text = text.trim();
    if text == "0" {
        return Some(Duration::ZERO);
    }
    let mut rest = text;
    let mut nanos = 0.0_f64;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let (unit, scale) = UNITS.iter().find(|(unit, _)| rest.starts_with(unit))?;
        rest = &rest[unit.len()..];
        nanos += number * scale;
    }
    if !nanos.is_finite() || nanos > u64::MAX as f64 {
        return None;
    }
    Some(Duration::from_nanos(nanos as u64))
}

/// `50000000`, `50MB`, `10MiB`, `1.5 GB` (SI units are powers of 1000,
/// IEC units of 1024).
fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let number: f64 = text[..split].parse().ok()?;
    let scale: f64 = match text[split..].trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "m" | "mb" => 1e6,
        "g" | "gb" => 1e9,
        "t" | "tb" => 1e12,
        "kib" => 1024.0,
        "mib" => 1024.0 * 1024.0,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        "tib" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    let bytes = (number * scale).round();
    if !bytes.is_finite() || bytes > u64::MAX as f64 {
        return None;
    }
    Some(bytes as u64)
}

// ------------------------------------------------------- authtoken edits

/// A YAML scalar for `value`: plain when it reads back as the same string,
/// else double-quoted.
fn yaml_scalar(value: &str) -> String {
    let safe = value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
        && !value.starts_with(['-', '.']);
    let reads_back =
        matches!(yaml_serde::from_str::<Value>(value), Ok(Value::String(s)) if s == value);
    if safe && reads_back {
        value.to_string()
    } else {
        serde_json::to_string(value).unwrap_or_default()
    }
}

/// Where a file's authtoken lives.
fn authtoken_of(value: &Value, version: u8) -> Option<&str> {
    let holder = if version == 3 {
        value.get("agent")?
    } else {
        value
    };
    holder.get("authtoken")?.as_str()
}

/// The text of `text` with its authtoken set to `token`.
fn edit_authtoken(origin: &str, text: &str, token: &str) -> Result<String, AgentFileError> {
    let ctx = Ctx::new(origin, text);
    let value = ctx.parse_value(text)?;
    let scalar = yaml_scalar(token);
    let eol = if text.contains("\r\n") { "\r\n" } else { "\n" };
    let mut out = PhysicalLines::new(text, eol);
    let version = match &value {
        Value::Null => {
            // Empty or only comments: append a new document's settings.
            out.insert(out.len(), &format!("version: \"{NEW_FILE_VERSION}\""));
            out.insert(out.len(), "agent:");
            out.insert(out.len(), &format!("  authtoken: {scalar}"));
            NEW_FILE_VERSION
        }
        Value::Mapping(map) => {
            let version = ctx.version(map)?;
            let lines = &ctx.lines;
            let top_indent = lines.first().map_or(0, |l| l.indent);
            let top = |key: &str| {
                lines
                    .iter()
                    .position(|l| l.indent == top_indent && !l.item && key_matches(l.text, key))
            };
            // New top-level keys go after `version:`, else before the first key.
            let insert_at = top("version")
                .map_or_else(|| lines.first().map_or(0, |l| l.no - 1), |i| lines[i].no);
            let pad = " ".repeat(top_indent);
            if version == 2 {
                match top("authtoken") {
                    Some(i) => out.set_value(lines, i, &scalar),
                    None => out.insert(insert_at, &format!("{pad}authtoken: {scalar}")),
                }
            } else if let Some(a) = top("agent") {
                let agent = lines[a];
                let inline = inline_value(agent.text);
                if !inline.is_empty() && !["{}", "~", "null"].contains(&inline) {
                    let kind =
                        ErrorKind::Invalid("is written inline; set agent.authtoken by hand".into());
                    return Err(ctx.error(Some(agent.no), Some("agent".into()), kind));
                }
                if !inline.is_empty() {
                    out.replace(agent.no - 1, &format!("{pad}agent:"));
                }
                let nested = children(lines, a);
                let level = nested.first().map_or(agent.indent + 2, |l| l.indent);
                let existing = nested
                    .iter()
                    .position(|l| l.indent == level && !l.item && key_matches(l.text, "authtoken"));
                match existing {
                    // Index into `lines`: children start right after `a`.
                    Some(i) => out.set_value(lines, a + 1 + i, &scalar),
                    None => out.insert(
                        agent.no,
                        &format!("{}authtoken: {scalar}", " ".repeat(level)),
                    ),
                }
            } else {
                out.insert(insert_at, &format!("{pad}agent:"));
                out.insert(insert_at + 1, &format!("{pad}  authtoken: {scalar}"));
            }
            version
        }
        _ => return Err(ctx.not_a_mapping()),
    };
    let edited = out.finish();
    let written = yaml_serde::from_str::<Value>(&edited).ok();
    if written.as_ref().and_then(|v| authtoken_of(v, version)) != Some(token) {
        let kind = ErrorKind::Invalid("could not be updated in place; set it by hand".into());
        return Err(AgentFileError {
            origin: origin.to_string(),
            line: None,
            key: Some("authtoken".into()),
            kind,
        });
    }
    Ok(edited)
}

/// What follows `key:` on a line, without a trailing comment.
fn inline_value(text: &str) -> &str {
    let after = text.split_once(':').map_or("", |(_, rest)| rest);
    let (value, _) = split_comment(after);
    value.trim()
}

/// Splits `s` before a ` #` comment outside quotes.
fn split_comment(s: &str) -> (&str, Option<&str>) {
    let mut quote = None;
    let mut prev_space = true;
    for (i, c) in s.char_indices() {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, '#') if prev_space => return (&s[..i], Some(&s[i..])),
            _ => {}
        }
        prev_space = c == ' ' || c == '\t';
    }
    (s, None)
}

/// A file's physical lines, edited by line index.
struct PhysicalLines {
    lines: Vec<String>,
    eol: &'static str,
}

impl PhysicalLines {
    fn new(text: &str, eol: &'static str) -> Self {
        PhysicalLines {
            lines: text.split_inclusive('\n').map(str::to_owned).collect(),
            eol,
        }
    }

    fn len(&self) -> usize {
        self.lines.len()
    }

    /// Inserts `content` as a new line before index `at`.
    fn insert(&mut self, at: usize, content: &str) {
        let at = at.min(self.lines.len());
        if let Some(prev) = at.checked_sub(1).and_then(|i| self.lines.get_mut(i)) {
            if !prev.ends_with('\n') {
                prev.push_str(self.eol);
            }
        }
        self.lines.insert(at, format!("{content}{}", self.eol));
    }

    /// Replaces line `at`'s content, keeping its line ending.
    fn replace(&mut self, at: usize, content: &str) {
        if let Some(line) = self.lines.get_mut(at) {
            let ending = if line.ends_with("\r\n") {
                "\r\n"
            } else if line.ends_with('\n') {
                "\n"
            } else {
                ""
            };
            *line = format!("{content}{ending}");
        }
    }

    /// Sets the value of the key on content line `lines[at]`, keeping its
    /// comment, and drops the old value's continuation lines.
    fn set_value(&mut self, lines: &[Line<'_>], at: usize, scalar: &str) {
        let line = lines[at];
        let index = line.no - 1;
        let Some(physical) = self.lines.get(index) else {
            return;
        };
        let body = physical.trim_end_matches(['\r', '\n']);
        let Some(colon) = body.find(':') else { return };
        let (_, comment) = split_comment(&body[colon + 1..]);
        let mut content = format!("{} {scalar}", &body[..=colon]);
        if let Some(comment) = comment {
            content.push(' ');
            content.push_str(comment);
        }
        self.replace(index, &content);
        let mut continuation: Vec<usize> = children(lines, at).iter().map(|l| l.no - 1).collect();
        continuation.dedup();
        for index in continuation.into_iter().rev() {
            if index < self.lines.len() {
                self.lines.remove(index);
            }
        }
    }

    fn finish(self) -> String {
        self.lines.concat()
    }
}

/// Creates `path` (and its directory) readable by its owner only.
fn create_file(path: &Path, text: &str) -> io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir)?;
    }
    let mut file = private_file(path)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()
}

/// Replaces the file `path` points to (following symlinks) atomically,
/// keeping its permissions.
fn replace_file(path: &Path, text: &str) -> io::Result<()> {
    let target = fs::canonicalize(path)?;
    let permissions = fs::metadata(&target)?.permissions();
    let name = target
        .file_name()
        .map_or_else(|| "config".into(), |n| n.to_string_lossy().into_owned());
    let temp = target.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let result = write_then_rename(&temp, &target, text, permissions);
    if result.is_err() {
        // Best effort: the temporary file is ours and useless now.
        let _ = fs::remove_file(&temp);
    }
    result
}

fn write_then_rename(
    temp: &Path,
    target: &Path,
    text: &str,
    permissions: fs::Permissions,
) -> io::Result<()> {
    let mut file = private_file(temp)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    fs::set_permissions(temp, permissions)?;
    fs::rename(temp, target)
}

fn private_file(path: &Path) -> io::Result<fs::File> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)
}

#[cfg(test)]
#[path = "agent_file_tests.rs"]
mod tests;
