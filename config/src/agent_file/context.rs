//! The parsing context: one file's text and version, and turning serde's
//! errors into errors that name the key, the line and what was meant.

use super::*;

pub(super) struct Ctx<'a> {
    pub(super) origin: &'a str,
    pub(super) text: &'a str,
    pub(super) lines: Vec<Line<'a>>,
}

impl<'a> Ctx<'a> {
    pub(super) fn new(origin: &'a str, text: &'a str) -> Self {
        Ctx {
            origin,
            text,
            lines: content_lines(text),
        }
    }

    pub(super) fn error(
        &self,
        line: Option<usize>,
        key: Option<String>,
        kind: ErrorKind,
    ) -> AgentFileError {
        AgentFileError {
            origin: self.origin.to_string(),
            line,
            key,
            kind,
        }
    }

    pub(super) fn at(&self, path: &[Seg], kind: ErrorKind) -> AgentFileError {
        self.error(locate(&self.lines, path), Some(render(path)), kind)
    }

    pub(super) fn invalid(&self, path: &[Seg], message: impl Into<String>) -> AgentFileError {
        self.at(path, ErrorKind::Invalid(message.into()))
    }

    pub(super) fn missing(&self, path: &[Seg]) -> AgentFileError {
        self.at(path, ErrorKind::Missing)
    }

    pub(super) fn not_a_mapping(&self) -> AgentFileError {
        let line = self.lines.first().map(|l| l.no);
        self.error(
            line,
            None,
            ErrorKind::Invalid("expected a mapping of settings at the top level".into()),
        )
    }

    /// First pass: the text as a YAML value.
    pub(super) fn parse_value(&self, text: &str) -> Result<Value, AgentFileError> {
        let de = yaml_serde::Deserializer::from_str(text);
        serde_path_to_error::deserialize(de).map_err(|e| self.value_error(e))
    }

    pub(super) fn value_error(
        &self,
        err: serde_path_to_error::Error<yaml_serde::Error>,
    ) -> AgentFileError {
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
    pub(super) fn version(&self, map: &yaml_serde::Mapping) -> Result<u8, AgentFileError> {
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
    pub(super) fn serde_error(
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

pub(super) fn segments(path: &serde_path_to_error::Path) -> Vec<Seg> {
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
pub(super) fn clean_message(err: &yaml_serde::Error, path: &[Seg]) -> String {
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
pub(super) const V3_AGENT_KEYS: &[&str] = &[
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
pub(super) fn unknown_key_hint(path: &[Seg], serde_rest: &str, version: u8) -> String {
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

pub(super) fn edit_distance(a: &str, b: &str) -> usize {
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
