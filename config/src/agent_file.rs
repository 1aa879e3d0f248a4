//! The agent's YAML configuration file, in ngrok's formats v2 and v3:
//! parsing (every error names the file, the line and the key), merging
//! several files, and writing the authtoken into a file in place.
//!
//! Parsing is pure; only [`load`] reads and [`save_authtoken`] writes files.
//!
//! Parsing runs in two passes over the text: the first reads it as a plain
//! YAML value (syntax errors, duplicate keys, the `version`), the second
//! deserializes it into the wire structs of that version through
//! `serde_path_to_error`, which gives the key path, while `serde_yaml`
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
use serde_yaml::Value;

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
    let de = serde_yaml::Deserializer::from_str(text);
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
    /// Bytes, > 0. The file may say `50000000`, `"50MB"` or `"10MiB"`.
    pub inspect_db_size: Option<u64>,
    /// `trusted`, `host`, or a PEM file path: v2 `root_cas`; v3
    /// `agent.root_cas` or `agent.connect_cas` (ngrok's v3 name).
    pub root_cas: Option<String>,
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
        let de = serde_yaml::Deserializer::from_str(text);
        serde_path_to_error::deserialize(de).map_err(|e| self.value_error(e))
    }

    fn value_error(&self, err: serde_path_to_error::Error<serde_yaml::Error>) -> AgentFileError {
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
    fn version(&self, map: &serde_yaml::Mapping) -> Result<u8, AgentFileError> {
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
        err: serde_path_to_error::Error<serde_yaml::Error>,
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

/// serde_yaml's message without its own path prefix and location suffix
/// (we print both our way).
fn clean_message(err: &serde_yaml::Error, path: &[Seg]) -> String {
    let mut message = err.to_string();
    if let Some(loc) = err.location() {
        let at = format!(" at line {} column {}", loc.line(), loc.column());
        if let Some(pos) = message.find(&at) {
            message.replace_range(pos..pos + at.len(), "");
        }
    }
    // serde_yaml names the map for an unknown field, the field otherwise.
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
/// which is what makes serde_yaml attach the value's line to them.
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

impl<'de> Deserialize<'de> for Proto {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        keyword(
            d,
            &[
                ("http", Proto::Http),
                ("tcp", Proto::Tcp),
                ("tls", Proto::Tls),
            ],
        )
    }
}

impl<'de> Deserialize<'de> for BindTls {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        keyword(
            d,
            &[
                ("true", BindTls::True),
                ("false", BindTls::False),
                ("both", BindTls::Both),
            ],
        )
    }
}

impl<'de> Deserialize<'de> for ConsoleUi {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        keyword(
            d,
            &[
                ("true", ConsoleUi::On),
                ("false", ConsoleUi::Off),
                ("iftty", ConsoleUi::IfTty),
            ],
        )
    }
}

impl<'de> Deserialize<'de> for LogFormat {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        keyword(
            d,
            &[
                ("logfmt", LogFormat::Logfmt),
                ("json", LogFormat::Json),
                ("term", LogFormat::Term),
            ],
        )
    }
}

impl<'de> Deserialize<'de> for TerminateAt {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        keyword(
            d,
            &[
                ("edge", TerminateAt::Edge),
                ("agent", TerminateAt::Agent),
                ("upstream", TerminateAt::Upstream),
            ],
        )
    }
}

impl<'de> Deserialize<'de> for UpstreamProtocol {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        keyword(
            d,
            &[
                ("http1", UpstreamProtocol::Http1),
                ("http2", UpstreamProtocol::Http2),
            ],
        )
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

/// `inspect_db_size`: a positive integer of bytes, or a string with a unit.
struct DbSize(u64);

impl<'de> Deserialize<'de> for DbSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct SizeVisitor;
        impl de::Visitor<'_> for SizeVisitor {
            type Value = DbSize;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number of bytes like 50000000 or \"50MB\"")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<DbSize, E> {
                if v == 0 {
                    return Err(E::custom("must be greater than 0"));
                }
                Ok(DbSize(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<DbSize, E> {
                match u64::try_from(v) {
                    Ok(v) => self.visit_u64(v),
                    Err(_) => Err(E::custom("must be greater than 0")),
                }
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<DbSize, E> {
                match parse_size(v) {
                    Some(0) => Err(E::custom("must be greater than 0")),
                    Some(n) => Ok(DbSize(n)),
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
    proxy_url: Option<String>,
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
    http_proxy: Option<String>,
    socks5_proxy: Option<String>,
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
    proxy_url: Option<String>,
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
        inspect_db_size: wire.inspect_db_size.map(|s| s.0),
        root_cas: wire.root_cas,
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
        inspect_db_size: agent.inspect_db_size.map(|s| s.0),
        root_cas: agent.root_cas.or(agent.connect_cas),
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
        serde_json::Value::String(text) => serde_yaml::from_str::<serde_json::Value>(&text)
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

/// `host[:port]`, with `[v6]:port`; the port only when it is all digits.
fn split_host_port(s: &str) -> (&str, Option<&str>) {
    if let Some(rest) = s.strip_prefix('[') {
        if let Some((host, tail)) = rest.split_once(']') {
            return (host, tail.strip_prefix(':'));
        }
    }
    match s.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => (host, Some(port)),
        _ => (s, None),
    }
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
        matches!(serde_yaml::from_str::<Value>(value), Ok(Value::String(s)) if s == value);
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
    let written = serde_yaml::from_str::<Value>(&edited).ok();
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
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    const ORIGIN: &str = "/home/u/.config/gangway/gangway.yml";
    const V2_EXAMPLE: &str = include_str!("../../tests/config/ngrok-v2.yml");
    const V3_EXAMPLE: &str = include_str!("../../tests/config/ngrok-v3.yml");
    const TOKEN: &str = "4nq9771bPxe8ctg7LKr_2ClH7Y15Zqe4bWLWF9p";

    fn err(text: &str) -> AgentFileError {
        match parse(ORIGIN, text) {
            Ok(file) => panic!("accepted: {file:?}"),
            Err(e) => e,
        }
    }

    /// Asserts the whole message, and that line and key are what it shows.
    fn assert_err(text: &str, line: usize, key: Option<&str>, message: &str) {
        let e = err(text);
        assert_eq!(e.to_string(), message);
        assert_eq!(e.line(), Some(line), "{e}");
        assert_eq!(e.key(), key, "{e}");
        assert_eq!(e.origin(), ORIGIN);
    }

    fn def(name: &str, kind: TunnelKind, proto: Proto, addr: &str) -> TunnelDef {
        blank_def(name.into(), kind, proto, addr.into())
    }

    fn json(text: &str) -> serde_json::Value {
        serde_json::from_str(text).unwrap()
    }

    /// Compares a policy by value (JSON key order depends on serde_json
    /// features), then the rest of the definition.
    fn assert_tunnel(
        actual: &TunnelDef,
        mut expected: TunnelDef,
        policy: Option<serde_json::Value>,
    ) {
        let mut actual = actual.clone();
        let actual_policy = actual.traffic_policy.take().map(|p| json(&p));
        assert_eq!(actual_policy, policy, "{}", actual.name);
        expected.traffic_policy = None;
        assert_eq!(actual, expected);
    }

    struct TempDir(PathBuf);

    impl TempDir {
        fn new() -> Self {
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let dir =
                std::env::temp_dir().join(format!("gangway-agent-file-{}-{n}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }

        fn file(&self, name: &str, text: &str) -> PathBuf {
            let path = self.0.join(name);
            fs::write(&path, text).unwrap();
            path
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    // ------------------------------------------------------- examples

    #[test]
    fn v2_example_file() {
        let file = parse("ngrok-v2.yml", V2_EXAMPLE).unwrap();
        assert_eq!(file.version, 2);
        assert_eq!(file.authtoken.as_deref(), Some(TOKEN));
        assert_eq!(file.server_addr.as_deref(), Some("localhost:4443"));
        assert_eq!(file.region.as_deref(), Some("us"));
        assert_eq!(file.console_ui, Some(ConsoleUi::On));
        assert_eq!(file.web_addr, Some(WebAddr::Addr("localhost:4040".into())));
        assert_eq!(file.log.as_deref(), Some("/var/log/ngrok.log"));
        assert_eq!(file.log_level.as_deref(), Some("info"));
        assert_eq!(file.log_format, Some(LogFormat::Json));
        assert_eq!(
            file.metadata.as_deref(),
            Some(r#"{"serial": "00012xa-33rUtz9", "comment": "For customer alan@example.com"}"#)
        );
        assert_eq!(file.inspect_db_size, Some(50_000_000));
        assert_eq!(file.root_cas.as_deref(), Some("trusted"));

        let names: Vec<&str> = file.tunnels.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "httpbin",
                "demo",
                "myapp-http",
                "mypp-https",
                "website",
                "e2etls",
                "ssh-access",
                "example-website",
                "example-traffic-policy",
                "example-load-balanced-edge",
            ]
        );
        let t = |name: &str| file.tunnel(name).unwrap();
        use Proto::*;
        use TunnelKind::Tunnel;

        let mut want = def("httpbin", Tunnel, Http, "8000");
        want.subdomain = Some("alan-httpbin".into());
        assert_tunnel(t("httpbin"), want, None);

        let mut want = def("demo", Tunnel, Http, "9090");
        want.hostname = Some("demo.inconshreveable.com".into());
        want.inspect = Some(false);
        want.basic_auth = vec!["demo:secret".into()];
        assert_tunnel(t("demo"), want, None);

        let mut want = def("myapp-http", Tunnel, Http, "80");
        want.hostname = Some("example.com".into());
        want.bind_tls = BindTls::False;
        assert_tunnel(t("myapp-http"), want, None);

        let mut want = def("mypp-https", Tunnel, Tls, "443");
        want.hostname = Some("example.com".into());
        assert_tunnel(t("mypp-https"), want, None);

        let mut want = def("website", Tunnel, Http, "8888");
        want.basic_auth = vec!["bob:bobpassword".into()];
        want.bind_tls = BindTls::True;
        want.host_header = Some("myapp.dev".into());
        want.inspect = Some(false);
        want.subdomain = Some("myapp".into());
        assert_tunnel(t("website"), want, None);

        let mut want = def("e2etls", Tunnel, Tls, "9000");
        want.hostname = Some("myapp.example.com".into());
        want.crt = Some("example.crt".into());
        want.key = Some("example.key".into());
        assert_tunnel(t("e2etls"), want, None);

        let mut want = def("ssh-access", Tunnel, Tcp, "22");
        want.remote_addr = Some("1.tcp.ngrok.io:12345".into());
        assert_tunnel(t("ssh-access"), want, None);

        let mut want = def("example-website", Tunnel, Http, "8888");
        want.basic_auth = vec!["bob:bobpassword".into()];
        want.bind_tls = BindTls::True;
        want.host_header = Some("app.local".into());
        want.inspect = Some(false);
        want.hostname = Some("myapp.ngrok.app".into());
        assert_tunnel(t("example-website"), want, None);

        let policy = json(
            r#"{"on_tcp_connect": [{"name": "LimitIPs", "expressions": ["conn.client_ip != '1.1.1.1'"],
                "actions": [{"type": "deny"}]}]}"#,
        );
        assert_tunnel(
            t("example-traffic-policy"),
            def("example-traffic-policy", Tunnel, Tcp, "8000"),
            Some(policy),
        );

        let mut want = def("example-load-balanced-edge", Tunnel, Http, "8000");
        want.labels = vec!["env=prod".into(), "team=infra".into()];
        assert_tunnel(t("example-load-balanced-edge"), want, None);
    }

    #[test]
    fn v3_example_file() {
        let file = parse("ngrok-v3.yml", V3_EXAMPLE).unwrap();
        assert_eq!(file.version, 3);
        assert_eq!(file.authtoken.as_deref(), Some(TOKEN));
        assert_eq!(file.server_addr.as_deref(), Some("localhost:4443"));
        assert_eq!(file.region, None);
        assert_eq!(file.console_ui, Some(ConsoleUi::IfTty));
        assert_eq!(file.web_addr, Some(WebAddr::Addr("localhost:4040".into())));
        assert_eq!(file.log.as_deref(), Some("/var/log/ngrok.log"));
        assert_eq!(file.log_level.as_deref(), Some("info"));
        assert_eq!(file.log_format, Some(LogFormat::Json));
        assert_eq!(
            file.metadata.as_deref(),
            Some(r#"{"serial": "00012xa-33rUtz9", "comment": "For customer alan@example.com"}"#)
        );
        assert_eq!(file.inspect_db_size, Some(104_857_600));
        assert_eq!(file.root_cas.as_deref(), Some("trusted"));

        let names: Vec<&str> = file.tunnels.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "httpbin",
                "demo",
                "ssh",
                "demo-2",
                "foo",
                "example-website",
                "my_tunnel_name",
                "basic"
            ]
        );
        let t = |name: &str| file.tunnel(name).unwrap();
        use Proto::*;
        use TunnelKind::Endpoint;

        let mut want = def("httpbin", Endpoint, Http, "8080");
        want.hostname = Some("alan-httpbin.ngrok.app".into());
        assert_tunnel(t("httpbin"), want, None);

        let mut want = def("demo", Endpoint, Http, "8181");
        want.hostname = Some("demo.inconshreveable.com".into());
        assert_tunnel(t("demo"), want, None);

        let mut want = def("ssh", Endpoint, Tcp, "22");
        want.remote_addr = Some("1.tcp.ngrok.io:12345".into());
        assert_tunnel(t("ssh"), want, None);

        let mut want = def("demo-2", Endpoint, Tls, "443");
        want.hostname = Some("myexample.ngrok.app".into());
        assert_tunnel(t("demo-2"), want, None);

        let mut want = def("foo", Endpoint, Http, "8080");
        want.description = Some("foo123".into());
        want.metadata = Some("foo123".into());
        want.hostname = Some("foo.ngrok.app".into());
        want.upstream_protocol = Some(UpstreamProtocol::Http1);
        let policy = json(
            r#"{"on_http_request": [{"actions": [{"type": "custom-response", "config": {
                "status_code": 200, "body": "hello, traffic policy!",
                "headers": {"content-type": "text/plain"}}}]}]}"#,
        );
        assert_tunnel(t("foo"), want, Some(policy));

        let mut want = def("example-website", Endpoint, Http, "8080");
        want.metadata = Some("foo123".into());
        want.hostname = Some("example-website.ngrok.app".into());
        want.upstream_protocol = Some(UpstreamProtocol::Http1);
        assert_tunnel(t("example-website"), want, None);

        assert_tunnel(
            t("my_tunnel_name"),
            def("my_tunnel_name", Endpoint, Http, "80"),
            None,
        );
        assert_tunnel(
            t("basic"),
            def("basic", TunnelKind::Tunnel, Http, "80"),
            None,
        );
    }

    #[test]
    fn load_merges_later_over_earlier() {
        let dir = TempDir::new();
        let v2 = dir.file("v2.yml", V2_EXAMPLE);
        let v3 = dir.file("v3.yml", V3_EXAMPLE);
        let file = load(&[v2, v3]).unwrap();
        assert_eq!(file.version, 3);
        // Set by both: the later wins.
        assert_eq!(file.console_ui, Some(ConsoleUi::IfTty));
        assert_eq!(file.inspect_db_size, Some(104_857_600));
        // Only in the earlier: kept.
        assert_eq!(file.region.as_deref(), Some("us"));
        // Same names replace in place; new names are appended.
        let names: Vec<(&str, TunnelKind)> = file
            .tunnels
            .iter()
            .map(|t| (t.name.as_str(), t.kind))
            .collect();
        use TunnelKind::*;
        assert_eq!(
            names,
            [
                ("httpbin", Endpoint),
                ("demo", Endpoint),
                ("myapp-http", Tunnel),
                ("mypp-https", Tunnel),
                ("website", Tunnel),
                ("e2etls", Tunnel),
                ("ssh-access", Tunnel),
                ("example-website", Endpoint),
                ("example-traffic-policy", Tunnel),
                ("example-load-balanced-edge", Tunnel),
                ("ssh", Endpoint),
                ("demo-2", Endpoint),
                ("foo", Endpoint),
                ("my_tunnel_name", Endpoint),
                ("basic", Tunnel),
            ]
        );
        assert_eq!(file.tunnel("httpbin").unwrap().addr, "8080");
        assert_eq!(
            file.tunnel("example-website").unwrap().hostname.as_deref(),
            Some("example-website.ngrok.app")
        );
    }

    #[test]
    fn merge_overrides_settings_and_tunnels_by_name() {
        let mut base = parse(
            "a.yml",
            "authtoken: one\nregion: eu\nlog_level: debug\ntunnels:\n  a: {proto: http, addr: 1}\n  b: {proto: tcp, addr: 2}\n",
        )
        .unwrap();
        let later = parse(
            "b.yml",
            "version: 3\nagent:\n  authtoken: two\n  web_addr: false\ntunnels:\n  b: {proto: tls, addr: 3}\n  c: {proto: http, addr: 4}\n",
        )
        .unwrap();
        base.merge(later);
        assert_eq!(base.version, 3);
        assert_eq!(base.authtoken.as_deref(), Some("two"));
        assert_eq!(base.region.as_deref(), Some("eu"));
        assert_eq!(base.log_level.as_deref(), Some("debug"));
        assert_eq!(base.web_addr, Some(WebAddr::Disabled));
        let got: Vec<(&str, Proto, &str)> = base
            .tunnels
            .iter()
            .map(|t| (t.name.as_str(), t.proto, t.addr.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("a", Proto::Http, "1"),
                ("b", Proto::Tls, "3"),
                ("c", Proto::Http, "4")
            ]
        );
    }

    #[test]
    fn load_of_nothing_and_of_a_missing_file() {
        assert_eq!(load(&[]).unwrap(), AgentFile::default());
        let dir = TempDir::new();
        let missing = dir.0.join("nope.yml");
        let e = load(std::slice::from_ref(&missing)).unwrap_err();
        assert!(e.is_not_found());
        assert_eq!(e.origin(), missing.display().to_string());
        assert!(
            e.to_string()
                .starts_with(&format!("{}: cannot read: ", missing.display())),
            "{e}"
        );
        // A parse error from load names the file.
        let bad = dir.file(
            "bad.yml",
            "tunnels:\n  web:\n    proto: htp\n    addr: 80\n",
        );
        let e = load(std::slice::from_ref(&bad)).unwrap_err();
        assert!(!e.is_not_found());
        assert_eq!(
            e.to_string(),
            format!(
                "{}:3: tunnels.web.proto: \"htp\" is not one of http, tcp, tls",
                bad.display()
            )
        );
    }

    // -------------------------------------------------- accepted forms

    #[test]
    fn version_forms() {
        assert_eq!(parse(ORIGIN, "").unwrap(), AgentFile::default());
        assert_eq!(
            parse(ORIGIN, "# nothing yet\n").unwrap(),
            AgentFile::default()
        );
        assert_eq!(parse(ORIGIN, "authtoken: x\n").unwrap().version, 2);
        assert_eq!(parse(ORIGIN, "version: 2\n").unwrap().version, 2);
        assert_eq!(parse(ORIGIN, "version: \"2\"\n").unwrap().version, 2);
        assert_eq!(parse(ORIGIN, "version: 3\n").unwrap().version, 3);
        assert_eq!(
            parse(ORIGIN, "version: '3'\nagent:\n  authtoken: x\n")
                .unwrap()
                .version,
            3
        );
    }

    #[test]
    fn agent_setting_forms() {
        let file = parse(
            ORIGIN,
            "console_ui: false\nweb_addr: false\ninspect_db_size: 50MB\nlog: false\n",
        )
        .unwrap();
        assert_eq!(file.console_ui, Some(ConsoleUi::Off));
        assert_eq!(file.web_addr, Some(WebAddr::Disabled));
        assert_eq!(file.inspect_db_size, Some(50_000_000));
        assert_eq!(file.log.as_deref(), Some("false"));
        let file = parse(
            ORIGIN,
            "inspect_db_size: \"10MiB\"\nweb_addr: '[::1]:4040'\nauthtoken: ''\n",
        )
        .unwrap();
        assert_eq!(file.inspect_db_size, Some(10 * 1024 * 1024));
        assert_eq!(file.web_addr, Some(WebAddr::Addr("[::1]:4040".into())));
        assert_eq!(file.authtoken, None);
        let file = parse(
            ORIGIN,
            "version: 3\nagent:\n  connect_url: tls://gw.example.com\n  connect_cas: host\n",
        )
        .unwrap();
        assert_eq!(file.server_addr.as_deref(), Some("gw.example.com:443"));
        assert_eq!(file.root_cas.as_deref(), Some("host"));
        let file = parse(ORIGIN, "server_addr: gw.example.com:4443\n").unwrap();
        assert_eq!(file.server_addr.as_deref(), Some("gw.example.com:4443"));
    }

    #[test]
    fn tunnel_forms() {
        let text = r#"
tunnels:
  files:
    proto: http
    addr: file:///srv/www
    schemes: [http, https]
    cidr_allow: [10.0.0.0/8, 192.168.1.1]
    ip_restriction:
      deny_cidrs: ["10.1.0.0/16"]
    request_header:
      add: ["x-a: 1"]
      remove: [x-b]
    response_header: {add: ["x-c:2"]}
    circuit_breaker: 0.5
    compression: true
    websocket_tcp_converter: true
    proxy_proto: 2
    verify_webhook: {provider: slack, secret: s3cret}
    user_agent_filter: {allow: ["curl.*"], deny: [".*bot.*"]}
    pooling_enabled: true
    policy: '{"on_http_request": []}'
  remote:
    proto: http
    addr: https://localhost:8443
    schemes: [http]
  tls:
    proto: tls
    addr: localhost:9000
    mutual_tls_cas: ca.pem
    terminate_at: agent
"#;
        let file = parse(ORIGIN, text).unwrap();
        let t = &file.tunnels[0];
        assert_eq!(t.addr, "file:///srv/www");
        assert_eq!(t.bind_tls, BindTls::Both);
        assert_eq!(t.cidr_allow, ["10.0.0.0/8", "192.168.1.1"]);
        assert_eq!(t.cidr_deny, ["10.1.0.0/16"]);
        assert_eq!(
            t.request_header,
            HeaderRules {
                add: vec!["x-a: 1".into()],
                remove: vec!["x-b".into()]
            }
        );
        assert_eq!(
            t.response_header,
            HeaderRules {
                add: vec!["x-c:2".into()],
                remove: vec![]
            }
        );
        assert_eq!(t.circuit_breaker, Some(0.5));
        assert!(t.compression && t.websocket_tcp_converter && t.pooling_enabled);
        assert_eq!(t.proxy_proto, Some(2));
        assert_eq!(
            t.verify_webhook,
            Some(VerifyWebhook {
                provider: "slack".into(),
                secret: Some("s3cret".into())
            })
        );
        assert_eq!(t.user_agent_filter.allow, ["curl.*"]);
        assert_eq!(t.user_agent_filter.deny, [".*bot.*"]);
        assert_eq!(
            t.traffic_policy.as_deref().map(json),
            Some(json(r#"{"on_http_request": []}"#))
        );
        assert_eq!(file.tunnels[1].bind_tls, BindTls::False);
        assert_eq!(file.tunnels[1].addr, "https://localhost:8443");
        assert_eq!(file.tunnels[2].client_cas.as_deref(), Some("ca.pem"));
        assert_eq!(file.tunnels[2].terminate_at, Some(TerminateAt::Agent));
    }

    #[test]
    fn endpoint_forms() {
        let text = r#"version: 3
endpoints:
  - name: plain-http
    url: http://
    upstream: {url: "localhost:8080", proxy_protocol: 1}
  - name: host-http
    url: HTTP://App.Example.com:80/
    pooling_enabled: true
    bindings: [internal]
    upstream: {url: "https://example.org", protocol: http2}
  - name: e2e
    url: tls://secure.example.com
    agent_tls_termination:
      server_certificate: cert.pem
      server_private_key: key.pem
      mutual_tls_certificate_authorities: [ca.pem]
    traffic_policy_file: policy.yml
    upstream: {url: 9000}
"#;
        let file = parse(ORIGIN, text).unwrap();
        let [plain, host, e2e] = &file.tunnels[..] else {
            panic!("{:?}", file.tunnels)
        };
        assert_eq!(
            (plain.proto, plain.bind_tls, plain.hostname.as_deref()),
            (Proto::Http, BindTls::False, None)
        );
        assert_eq!(
            (plain.addr.as_str(), plain.proxy_proto),
            ("localhost:8080", Some(1))
        );
        assert_eq!(host.bind_tls, BindTls::False);
        assert_eq!(host.hostname.as_deref(), Some("app.example.com"));
        assert_eq!(host.bindings, ["internal"]);
        assert_eq!(host.upstream_protocol, Some(UpstreamProtocol::Http2));
        assert!(host.pooling_enabled);
        assert_eq!(e2e.proto, Proto::Tls);
        assert_eq!(e2e.crt.as_deref(), Some("cert.pem"));
        assert_eq!(e2e.key.as_deref(), Some("key.pem"));
        assert_eq!(e2e.client_cas.as_deref(), Some("ca.pem"));
        assert_eq!(e2e.traffic_policy_file.as_deref(), Some("policy.yml"));
    }

    #[test]
    fn endpoint_urls() {
        let ok = |url: &str, proto, bind_tls, hostname: Option<&str>, remote: Option<&str>| {
            let want = UrlParts {
                proto,
                bind_tls,
                hostname: hostname.map(str::to_string),
                remote_addr: remote.map(str::to_string),
            };
            assert_eq!(parse_endpoint_url(url), Ok(want), "{url}");
        };
        use BindTls::*;
        use Proto::*;
        ok("", Http, True, None, None);
        ok("https://", Http, True, None, None);
        ok("http://", Http, False, None, None);
        ok("tcp://", Tcp, True, None, None);
        ok("tls://", Tls, True, None, None);
        ok(
            "example.ngrok.app",
            Http,
            True,
            Some("example.ngrok.app"),
            None,
        );
        ok(
            "https://example.ngrok.app:443",
            Http,
            True,
            Some("example.ngrok.app"),
            None,
        );
        ok(
            "https://*.example.com",
            Http,
            True,
            Some("*.example.com"),
            None,
        );
        ok(
            "tcp://1.tcp.ngrok.io:12345",
            Tcp,
            True,
            None,
            Some("1.tcp.ngrok.io:12345"),
        );
        ok(
            "tls://myexample.ngrok.app",
            Tls,
            True,
            Some("myexample.ngrok.app"),
            None,
        );
        for bad in [
            "ftp://x",
            "https://x/path",
            "https://u:p@x",
            "tcp://host",
            "https://x:99999",
            "https://exa mple",
        ] {
            assert!(parse_endpoint_url(bad).is_err(), "{bad}");
        }
    }

    // --------------------------------------------------------- errors

    #[test]
    fn error_bad_proto_names_line_and_key() {
        let text = "version: \"2\"\nauthtoken: abc\ntunnels:\n  web:\n    addr: 80\n    # the protocol\n    proto: htp\n";
        assert_err(
            text,
            7,
            Some("tunnels.web.proto"),
            "/home/u/.config/gangway/gangway.yml:7: tunnels.web.proto: \"htp\" is not one of http, tcp, tls",
        );
    }

    #[test]
    fn error_bad_web_addr() {
        assert_err(
            "version: 3\nagent:\n  web_addr: localhost\n",
            3,
            Some("agent.web_addr"),
            "/home/u/.config/gangway/gangway.yml:3: agent.web_addr: expected host:port or false",
        );
    }

    #[test]
    fn error_missing_upstream_url_points_at_upstream() {
        let text = "version: 3
agent:
  authtoken: x
endpoints:
  - name: a
    upstream:
      url: 80
  - name: b
    url: https://b.example.com
    # no url below
    upstream:
      protocol: http2
";
        assert_err(
            text,
            11,
            Some("endpoints[1].upstream.url"),
            "/home/u/.config/gangway/gangway.yml:11: endpoints[1].upstream.url: missing",
        );
        // Without upstream at all: the endpoint's first line.
        let text = "version: 3\nendpoints:\n  - name: a\n    upstream: {url: 80}\n  - name: b\n    url: https://b.example.com\n";
        assert_err(
            text,
            5,
            Some("endpoints[1].upstream"),
            &format!("{ORIGIN}:5: endpoints[1].upstream: missing"),
        );
        let text =
            "version: 3\nendpoints:\n- url: https://b.example.com\n  upstream:\n    url: 80\n";
        assert_err(
            text,
            3,
            Some("endpoints[0].name"),
            &format!("{ORIGIN}:3: endpoints[0].name: missing"),
        );
    }

    #[test]
    fn error_unknown_keys() {
        let text = "tunnels:\n  web:\n    prot: http\n    addr: 80\n";
        assert_err(
            text,
            3,
            Some("tunnels.web.prot"),
            &format!("{ORIGIN}:3: tunnels.web.prot: unknown key (did you mean `proto`?)"),
        );
        assert_err(
            "authtokn: x\n",
            1,
            Some("authtokn"),
            &format!("{ORIGIN}:1: authtokn: unknown key (did you mean `authtoken`?)"),
        );
        assert_err(
            "color: blue\n",
            1,
            Some("color"),
            &format!("{ORIGIN}:1: color: unknown key"),
        );
        assert_err(
            "version: 3\nauthtoken: x\n",
            2,
            Some("authtoken"),
            &format!(
                "{ORIGIN}:2: authtoken: unknown key (in a version 3 file it belongs under agent:)"
            ),
        );
        assert_err(
            "version: 3\nagent:\n  server_addr: x:1\n",
            3,
            Some("agent.server_addr"),
            &format!("{ORIGIN}:3: agent.server_addr: unknown key (version 3 calls it connect_url)"),
        );
        assert_err(
            "authtoken: x\nendpoints: []\n",
            2,
            Some("endpoints"),
            &format!(
                "{ORIGIN}:2: endpoints: unknown key (only in version 3 files: add version: 3)"
            ),
        );
        let text = "version: 3\nendpoints:\n  - name: a\n    upstream:\n      url: 80\n      protocl: http1\n";
        assert_err(
            text,
            6,
            Some("endpoints[0].upstream.protocl"),
            &format!(
                "{ORIGIN}:6: endpoints[0].upstream.protocl: unknown key (did you mean `protocol`?)"
            ),
        );
    }

    #[test]
    fn error_syntax_has_the_line() {
        let e = err("version: 2\ntunnels:\n  web:\n    proto: http\n   addr: 80\n");
        assert_eq!(e.line(), Some(5), "{e}");
        assert_eq!(e.key(), None);
        assert!(matches!(e.kind(), ErrorKind::Syntax(_)));
        assert!(e.to_string().starts_with(&format!("{ORIGIN}:5: ")), "{e}");
        let e = err("tunnels:\n\tweb: {}\n");
        assert_eq!(e.line(), Some(2), "{e}");
        assert!(
            e.to_string()
                .ends_with("(tabs are not allowed for indentation)"),
            "{e}"
        );
        let e = err("a: [1, 2\nb: 3\n");
        assert!(matches!(e.kind(), ErrorKind::Syntax(_)), "{e}");
        assert!(e.line().is_some(), "{e}");
    }

    #[test]
    fn error_wrong_types() {
        assert_err(
            "tunnels:\n  web:\n    proto: http\n    addr: 80\n    inspect: maybe\n",
            5,
            Some("tunnels.web.inspect"),
            &format!("{ORIGIN}:5: tunnels.web.inspect: invalid type: string \"maybe\", expected a boolean"),
        );
        assert_err(
            "tunnels:\n  web: 80\n",
            2,
            Some("tunnels.web"),
            &format!("{ORIGIN}:2: tunnels.web: invalid type: integer `80`, expected a tunnel definition (a mapping)"),
        );
        assert_err(
            "tunnels: {web: {proto: htp, addr: 80}}\n",
            1,
            Some("tunnels.web.proto"),
            &format!("{ORIGIN}:1: tunnels.web.proto: \"htp\" is not one of http, tcp, tls"),
        );
        assert_err(
            "- a\n- b\n",
            1,
            None,
            &format!("{ORIGIN}:1: expected a mapping of settings at the top level"),
        );
    }

    #[test]
    fn error_missing_tunnel_keys() {
        assert_err(
            "tunnels:\n  web:\n    addr: 80\n",
            2,
            Some("tunnels.web.proto"),
            &format!("{ORIGIN}:2: tunnels.web.proto: missing"),
        );
        assert_err(
            "tunnels:\n  ok: {proto: tcp, addr: 22}\n  web:\n    proto: http\n",
            3,
            Some("tunnels.web.addr"),
            &format!("{ORIGIN}:3: tunnels.web.addr: missing"),
        );
        assert_err(
            "tunnels:\n  hook:\n    proto: http\n    addr: 80\n    verify_webhook:\n      secret: x\n",
            5,
            Some("tunnels.hook.verify_webhook.provider"),
            &format!("{ORIGIN}:5: tunnels.hook.verify_webhook.provider: missing"),
        );
    }

    #[test]
    fn error_values() {
        let tunnel = |extra: &str| {
            format!("version: 2\ntunnels:\n  web:\n    proto: http\n    addr: 80\n{extra}")
        };
        let case = |extra: &str, line, key: &str, message: &str| {
            assert_err(
                &tunnel(extra),
                line,
                Some(key),
                &format!("{ORIGIN}:{line}: {key}: {message}"),
            );
        };
        case(
            "    bind_tls: sometimes\n",
            6,
            "tunnels.web.bind_tls",
            "\"sometimes\" is not one of true, false, both",
        );
        case(
            "    basic_auth:\n      - a:b\n      - nopassword\n",
            8,
            "tunnels.web.basic_auth[1]",
            "expected user:password",
        );
        case(
            "    auth: nocolon\n",
            6,
            "tunnels.web.auth",
            "expected user:password",
        );
        case(
            "    bind_tls: both\n    schemes: [http]\n",
            7,
            "tunnels.web.schemes",
            "set only one of bind_tls, schemes",
        );
        case(
            "    schemes: []\n",
            6,
            "tunnels.web.schemes",
            "must list http, https or both",
        );
        case(
            "    schemes: [ftp]\n",
            6,
            "tunnels.web.schemes[0]",
            "\"ftp\" is not one of http, https",
        );
        case(
            "    hostname: a.com\n    domain: b.com\n",
            7,
            "tunnels.web.domain",
            "set only one of hostname, domain",
        );
        case(
            "    crt: c.pem\n",
            6,
            "tunnels.web.crt",
            "needs key as well",
        );
        case(
            "    remote_addr: 1.tcp.example.com:1\n",
            6,
            "tunnels.web.remote_addr",
            "only valid for tcp tunnels",
        );
        case(
            "    oauth:\n      provider: google\n",
            6,
            "tunnels.web.oauth",
            "not supported by gangway",
        );
        case(
            "    circuit_breaker: 1.5\n",
            6,
            "tunnels.web.circuit_breaker",
            "1.5 is not a ratio between 0 and 1",
        );
        case(
            "    cidr_deny:\n      - 10.0.0.0/8\n      - 10.0.0/33\n",
            8,
            "tunnels.web.cidr_deny[1]",
            "\"10.0.0/33\" is not a CIDR",
        );
        case(
            "    labels: [env]\n",
            6,
            "tunnels.web.labels[0]",
            "\"env\" is not name=value",
        );
        case(
            "    proxy_proto: 3\n",
            6,
            "tunnels.web.proxy_proto",
            "\"3\" is not one of 1, 2",
        );
        case(
            "    request_header:\n      add: [novalue]\n",
            7,
            "tunnels.web.request_header.add[0]",
            "\"novalue\" is not name:value",
        );
        case(
            "    traffic_policy: {a: 1}\n    policy: {a: 1}\n",
            7,
            "tunnels.web.policy",
            "set only one of traffic_policy, policy",
        );
        case(
            "    traffic_policy: [1]\n",
            6,
            "tunnels.web.traffic_policy",
            "expected a traffic policy document (a mapping)",
        );

        assert_err(
            "tunnels:\n  web:\n    proto: tcp\n    addr: 99999\n",
            4,
            Some("tunnels.web.addr"),
            &format!("{ORIGIN}:4: tunnels.web.addr: 99999 is not a port (1-65535)"),
        );
        assert_err(
            "tunnels:\n  web:\n    proto: http\n    addr: gopher://x\n",
            4,
            Some("tunnels.web.addr"),
            &format!("{ORIGIN}:4: tunnels.web.addr: scheme \"gopher\" is not one of http, https, file, tcp, tls"),
        );
        assert_err(
            "tunnels:\n  web:\n    proto: tcp\n    addr: 22\n    subdomain: x\n",
            5,
            Some("tunnels.web.subdomain"),
            &format!("{ORIGIN}:5: tunnels.web.subdomain: not valid for tcp tunnels"),
        );
    }

    #[test]
    fn error_agent_values() {
        assert_err(
            "version: 4\n",
            1,
            Some("version"),
            &format!("{ORIGIN}:1: version: 4 is not one of 2, 3"),
        );
        assert_err(
            "authtoken: x\nversion: \"v2\"\n",
            2,
            Some("version"),
            &format!("{ORIGIN}:2: version: \"v2\" is not one of 2, 3"),
        );
        assert_err(
            "inspect_db_size: 0\n",
            1,
            Some("inspect_db_size"),
            &format!("{ORIGIN}:1: inspect_db_size: must be greater than 0"),
        );
        assert_err(
            "version: 3\nagent:\n  inspect_db_size: -1\n",
            3,
            Some("agent.inspect_db_size"),
            &format!("{ORIGIN}:3: agent.inspect_db_size: must be greater than 0"),
        );
        assert_err(
            "inspect_db_size: 50 parsecs\n",
            1,
            Some("inspect_db_size"),
            &format!("{ORIGIN}:1: inspect_db_size: \"50 parsecs\" is not a size like 50000000, \"50MB\" or \"10MiB\""),
        );
        assert_err(
            "log_level: verbose\n",
            1,
            Some("log_level"),
            &format!(
                "{ORIGIN}:1: log_level: \"verbose\" is not one of crit, warn, error, info, debug"
            ),
        );
        assert_err(
            "log_format: xml\n",
            1,
            Some("log_format"),
            &format!("{ORIGIN}:1: log_format: \"xml\" is not one of logfmt, json, term"),
        );
        assert_err(
            "console_ui: sometimes\n",
            1,
            Some("console_ui"),
            &format!("{ORIGIN}:1: console_ui: \"sometimes\" is not one of true, false, iftty"),
        );
        assert_err(
            "connect_timeout: 30\n",
            1,
            Some("connect_timeout"),
            &format!(
                "{ORIGIN}:1: connect_timeout: \"30\" is not a duration like 10s, 1m30s or 500ms"
            ),
        );
        assert_err(
            "dns_resolver_ips: [1.1.1.1, dns.google]\n",
            1,
            Some("dns_resolver_ips[1]"),
            &format!("{ORIGIN}:1: dns_resolver_ips[1]: \"dns.google\" is not an IP address"),
        );
        assert_err(
            "server_addr: 'a b:1'\n",
            1,
            Some("server_addr"),
            &format!("{ORIGIN}:1: server_addr: expected host:port"),
        );
        assert_err(
            "version: 3\nagent:\n  root_cas: trusted\n  connect_cas: host\n",
            4,
            Some("agent.connect_cas"),
            &format!("{ORIGIN}:4: agent.connect_cas: set only one of root_cas, connect_cas"),
        );
    }

    #[test]
    fn error_names() {
        assert_err(
            "tunnels:\n  ok: {proto: http, addr: 80}\n  \"\":\n    proto: http\n    addr: 80\n",
            3,
            Some("tunnels"),
            &format!("{ORIGIN}:3: tunnels: a tunnel name must not be empty"),
        );
        let text = "version: 3
endpoints:
  - name: web
    upstream: {url: 80}
  - name: api
    upstream: {url: 81}
  - name: web
    upstream: {url: 82}
";
        assert_err(
            text,
            7,
            Some("endpoints[2].name"),
            &format!("{ORIGIN}:7: endpoints[2].name: \"web\" is already the name of endpoints[0]"),
        );
        let text = "version: 3\nendpoints:\n  - name: web\n    upstream: {url: 80}\ntunnels:\n  web: {proto: http, addr: 81}\n";
        assert_err(
            text,
            6,
            Some("tunnels.web"),
            &format!("{ORIGIN}:6: tunnels.web: \"web\" is already the name of endpoints[0]"),
        );
        let text = "version: 3\nendpoints:\n  - name: ''\n    upstream: {url: 80}\n";
        assert_err(
            text,
            3,
            Some("endpoints[0].name"),
            &format!("{ORIGIN}:3: endpoints[0].name: missing"),
        );
        // The same YAML key twice: the second one.
        let text = "tunnels:\n  web:\n    proto: http\n    addr: 80\n  api: {proto: http, addr: 81}\n  web:\n    proto: tcp\n    addr: 22\n";
        assert_err(
            text,
            6,
            Some("tunnels.web"),
            &format!("{ORIGIN}:6: tunnels.web: defined more than once"),
        );
        assert_err(
            "authtoken: a\nregion: us\nauthtoken: b\n",
            3,
            Some("authtoken"),
            &format!("{ORIGIN}:3: authtoken: defined more than once"),
        );
    }

    #[test]
    fn error_endpoint_values() {
        let endpoint = |extra: &str| {
            format!("version: 3\nendpoints:\n  - name: web\n    upstream:\n      url: 80\n{extra}")
        };
        let case = |extra: &str, line, key: &str, message: &str| {
            assert_err(
                &endpoint(extra),
                line,
                Some(key),
                &format!("{ORIGIN}:{line}: {key}: {message}"),
            );
        };
        case(
            "    url: ftp://x\n",
            6,
            "endpoints[0].url",
            "scheme \"ftp\" is not one of http, https, tcp, tls",
        );
        case(
            "    url: tcp://host\n",
            6,
            "endpoints[0].url",
            "expected tcp://host:port",
        );
        case(
            "    bindings: [public, internal]\n",
            6,
            "endpoints[0].bindings",
            "at most one binding may be given",
        );
        case(
            "    bindings: [outside]\n",
            6,
            "endpoints[0].bindings[0]",
            "\"outside\" is not one of public, internal, kubernetes",
        );
        case(
            "    agent_tls_termination:\n      server_certificate: c.pem\n      server_private_key: k.pem\n",
            6,
            "endpoints[0].agent_tls_termination",
            "only valid for tls:// urls",
        );
        assert_err(
            "version: 3\nendpoints:\n  - name: web\n    upstream:\n      url: 80\n      protocol: http3\n",
            6,
            Some("endpoints[0].upstream.protocol"),
            &format!("{ORIGIN}:6: endpoints[0].upstream.protocol: \"http3\" is not one of http1, http2"),
        );
    }

    // ---------------------------------------------------- save_authtoken

    #[test]
    fn save_authtoken_creates_a_v3_file() {
        let dir = TempDir::new();
        let path = dir.0.join("config").join("gangway").join("gangway.yml");
        save_authtoken(&path, "tok_123").unwrap();
        let text = fs::read_to_string(&path).unwrap();
        assert_eq!(text, "version: \"3\"\nagent:\n  authtoken: tok_123\n");
        let file = parse("new", &text).unwrap();
        assert_eq!(
            (file.version, file.authtoken.as_deref()),
            (3, Some("tok_123"))
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                fs::metadata(&path).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
    }

    #[test]
    fn save_authtoken_replaces_a_v2_token_keeping_comments() {
        let dir = TempDir::new();
        let before = "# my ngrok config
version: \"2\"
authtoken: oldtoken # the old one
# tunnels below
tunnels:
  web:
    proto: http # plain
    addr: 80
";
        let path = dir.file("ngrok.yml", before);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        }
        save_authtoken(&path, "newtoken").unwrap();
        let after = fs::read_to_string(&path).unwrap();
        assert_eq!(
            after,
            before.replace("authtoken: oldtoken #", "authtoken: newtoken #")
        );
        let file = parse("after", &after).unwrap();
        assert_eq!(
            (file.version, file.authtoken.as_deref()),
            (2, Some("newtoken"))
        );
        assert_eq!(file.tunnels.len(), 1);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                fs::metadata(&path).unwrap().permissions().mode() & 0o777,
                0o640
            );
        }
    }

    #[test]
    fn save_authtoken_inserts_under_v3_agent() {
        let dir = TempDir::new();
        let before = "version: \"3\"
# agent settings
agent:
    # where the UI listens
    web_addr: localhost:4040
endpoints:
  - name: web
    upstream:
      url: 80
";
        let path = dir.file("gangway.yml", before);
        save_authtoken(&path, "tok").unwrap();
        let after = fs::read_to_string(&path).unwrap();
        assert_eq!(
            after,
            before.replace("agent:\n", "agent:\n    authtoken: tok\n")
        );
        let file = parse("after", &after).unwrap();
        assert_eq!((file.version, file.authtoken.as_deref()), (3, Some("tok")));
        assert_eq!(file.web_addr, Some(WebAddr::Addr("localhost:4040".into())));
        assert_eq!(file.tunnels.len(), 1);

        // And replaces it the next time.
        save_authtoken(&path, "tok2").unwrap();
        let again = fs::read_to_string(&path).unwrap();
        assert_eq!(
            again,
            before.replace("agent:\n", "agent:\n    authtoken: tok2\n")
        );
    }

    #[test]
    fn save_authtoken_other_shapes() {
        let dir = TempDir::new();
        let check = |before: &str, token: &str, want: &str| {
            let path = dir.file("c.yml", before);
            save_authtoken(&path, token).unwrap();
            let after = fs::read_to_string(&path).unwrap();
            assert_eq!(after, want, "from {before:?}");
            assert_eq!(
                parse("after", &after).unwrap().authtoken.as_deref(),
                Some(token.trim())
            );
        };
        // v3 without agent: after version.
        check(
            "version: 3\nendpoints: []\n",
            "t",
            "version: 3\nagent:\n  authtoken: t\nendpoints: []\n",
        );
        // v3 with an empty inline agent.
        check(
            "version: 3\nagent: {}\n",
            "t",
            "version: 3\nagent:\n  authtoken: t\n",
        );
        // v2 without authtoken: after version, or first.
        check(
            "version: 2\nregion: us\n",
            "t",
            "version: 2\nauthtoken: t\nregion: us\n",
        );
        check("# c\nregion: us", "t", "# c\nauthtoken: t\nregion: us");
        // Empty file, or comments only: a v3 document is appended.
        check("", "t", "version: \"3\"\nagent:\n  authtoken: t\n");
        check(
            "# soon\n",
            "t",
            "# soon\nversion: \"3\"\nagent:\n  authtoken: t\n",
        );
        // CRLF line endings are kept.
        check(
            "version: 3\r\nagent:\r\n  region: us\r\n",
            "t",
            "version: 3\r\nagent:\r\n  authtoken: t\r\n  region: us\r\n",
        );
        // A token YAML would read as a number is quoted.
        check("authtoken: x\n", "12345", "authtoken: \"12345\"\n");
        // A multi-line old value is replaced whole.
        check(
            "authtoken: >\n  old\n  value\nregion: us\n",
            "t",
            "authtoken: t\nregion: us\n",
        );
        // Surrounding whitespace is trimmed.
        check("authtoken: x\n", " tok \n", "authtoken: tok\n");
    }

    #[test]
    fn save_authtoken_refuses_broken_files_and_tokens() {
        let dir = TempDir::new();
        let before = "tunnels:\n  web: [\n";
        let path = dir.file("bad.yml", before);
        let e = save_authtoken(&path, "t").unwrap_err();
        assert!(matches!(e.kind(), ErrorKind::Syntax(_)), "{e}");
        assert_eq!(fs::read_to_string(&path).unwrap(), before);

        let path = dir.file("flow.yml", "version: 3\nagent: {region: us}\n");
        let e = save_authtoken(&path, "t").unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "{}:2: agent: is written inline; set agent.authtoken by hand",
                path.display()
            )
        );

        let e = save_authtoken(&path, "two words").unwrap_err();
        assert_eq!(e.key(), Some("authtoken"));
        assert!(save_authtoken(&path, "  ").is_err());
    }

    // ------------------------------------------------------- internals

    #[test]
    fn locate_follows_block_indentation() {
        let text = "\
# comment
version: 3
agent:
  authtoken: x   # 4

  web_addr: y
endpoints:
- name: a        # 8
  upstream:
    url: 1
-   name: b      # 11
    upstream:
      url: 2     # 13
tunnels:
  web:
    proto: http  # 16
    schemes:
      - http
      - https    # 19
";
        let lines = content_lines(text);
        let at = |path: &[Seg]| locate(&lines, path);
        assert_eq!(at(&path!["version"]), Some(2));
        assert_eq!(at(&path!["agent", "web_addr"]), Some(6));
        assert_eq!(at(&path!["endpoints", 0]), Some(8));
        assert_eq!(at(&path!["endpoints", 1, "name"]), Some(11));
        assert_eq!(at(&path!["endpoints", 1, "upstream", "url"]), Some(13));
        assert_eq!(at(&path!["endpoints", 1, "upstream", "protocol"]), Some(12));
        assert_eq!(at(&path!["endpoints", 0, "upstream", "url"]), Some(10));
        assert_eq!(at(&path!["tunnels", "web", "schemes", 1]), Some(19));
        assert_eq!(at(&path!["tunnels", "api"]), Some(14));
        assert_eq!(at(&path!["nothing"]), None);
        // A key name inside a value is not a key.
        assert_eq!(at(&path!["agent", "x"]), Some(3));
    }

    #[test]
    fn durations_and_sizes() {
        assert_eq!(parse_go_duration("10s"), Some(Duration::from_secs(10)));
        assert_eq!(parse_go_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_go_duration("1h"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_go_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_go_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_go_duration("0"), Some(Duration::ZERO));
        for bad in ["", "10", "s", "-1s", "1d", "1.2.3s"] {
            assert_eq!(parse_go_duration(bad), None, "{bad}");
        }
        assert_eq!(parse_size("50000000"), Some(50_000_000));
        assert_eq!(parse_size("50MB"), Some(50_000_000));
        assert_eq!(parse_size("100mb"), Some(100_000_000));
        assert_eq!(parse_size("10MiB"), Some(10_485_760));
        assert_eq!(parse_size("1.5 GB"), Some(1_500_000_000));
        for bad in ["", "MB", "10 parsecs", "-5MB"] {
            assert_eq!(parse_size(bad), None, "{bad}");
        }
    }

    #[test]
    fn addresses() {
        for ok in [
            "80",
            "localhost:8080",
            "192.168.1.1:8080",
            "[::1]:80",
            "example.org",
            "https://localhost:8443",
            "file:///srv",
            "https://",
        ] {
            assert_eq!(check_addr(ok), Ok(()), "{ok}");
        }
        for bad in ["", "0", "65536", "host:port", "a b", "gopher://x"] {
            assert!(check_addr(bad).is_err(), "{bad}");
        }
        assert_eq!(
            server_addr("tls://gw.example.com:4443/"),
            Ok("gw.example.com:4443".into())
        );
        assert_eq!(
            server_addr("gw.example.com"),
            Ok("gw.example.com:443".into())
        );
        assert!(server_addr("").is_err());
    }

    #[test]
    fn default_path_prefers_the_environment() {
        let dir = PathBuf::from("/home/u/.config");
        assert_eq!(
            default_path_from(Some("/etc/gw.yml".into()), Some(dir.clone())),
            Some(PathBuf::from("/etc/gw.yml"))
        );
        assert_eq!(
            default_path_from(Some("".into()), Some(dir.clone())),
            Some(PathBuf::from("/home/u/.config/gangway/gangway.yml"))
        );
        assert_eq!(
            default_path_from(None, Some(dir)),
            Some(PathBuf::from("/home/u/.config/gangway/gangway.yml"))
        );
        assert_eq!(default_path_from(None, None), None);
    }
}
