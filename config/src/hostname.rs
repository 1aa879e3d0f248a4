//! Hostname rules for bound endpoints: what a `Domain`, `Hostname` or
//! `Subdomain` may look like.

use crate::codes::{self, Code};

/// Why a requested name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostnameError {
    #[error("hostname is empty")]
    Empty,
    #[error("hostname is longer than 253 bytes")]
    TooLong,
    #[error("label {0:?} is longer than 63 bytes")]
    LabelTooLong(String),
    #[error("hostname has an empty label (repeated or leading '.')")]
    EmptyLabel,
    #[error("invalid character {ch:?} in {label:?}: only a-z, 0-9 and '-' are allowed")]
    BadChar { ch: char, label: String },
    #[error("label {0:?} must not start with '-'")]
    BadFirst(String),
    #[error("label {0:?} must not end with '-'")]
    BadLast(String),
    #[error("a wildcard is only allowed as the whole first label (\"*.example.com\")")]
    BadWildcard,
}

impl HostnameError {
    /// The code ngrok's agent bind answers with for this mistake.
    pub fn ngrok_code(&self) -> Code {
        match self {
            HostnameError::BadChar { .. } | HostnameError::BadWildcard => codes::INVALID_HOSTNAME,
            HostnameError::EmptyLabel | HostnameError::Empty => codes::HOSTNAME_EMPTY_LABEL,
            HostnameError::BadFirst(_) => codes::HOSTNAME_BAD_FIRST,
            HostnameError::BadLast(_) => codes::HOSTNAME_BAD_LAST,
            HostnameError::LabelTooLong(_) => codes::HOSTNAME_LABEL_TOO_LONG,
            HostnameError::TooLong => codes::HOSTNAME_TOO_LONG,
        }
    }
}

/// Lower-cases and validates a DNS hostname; a trailing dot is dropped.
/// A leading `*.` label is accepted when `allow_wildcard` is set.
pub fn normalize_hostname(raw: &str, allow_wildcard: bool) -> Result<String, HostnameError> {
    let name = raw.trim().trim_end_matches('.').to_ascii_lowercase();
    if name.is_empty() {
        return Err(HostnameError::Empty);
    }
    if name.len() > 253 {
        return Err(HostnameError::TooLong);
    }
    for (i, label) in name.split('.').enumerate() {
        if label == "*" {
            if i == 0 && allow_wildcard && name.len() > 2 {
                continue;
            }
            return Err(HostnameError::BadWildcard);
        }
        validate_label(label)?;
    }
    Ok(name)
}

/// Validates one DNS label (a subdomain).
pub fn validate_label(label: &str) -> Result<(), HostnameError> {
    if label.is_empty() {
        return Err(HostnameError::EmptyLabel);
    }
    if label.len() > 63 {
        return Err(HostnameError::LabelTooLong(label.to_string()));
    }
    if let Some(ch) = label
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-'))
    {
        return Err(HostnameError::BadChar {
            ch,
            label: label.to_string(),
        });
    }
    if label.starts_with('-') {
        return Err(HostnameError::BadFirst(label.to_string()));
    }
    if label.ends_with('-') {
        return Err(HostnameError::BadLast(label.to_string()));
    }
    Ok(())
}

/// `host:port` → `host`; `[v6]:port` → `v6`.
pub fn strip_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}

/// `host[:port]` → (host, port), with `[v6]:port`.
pub fn split_host_port(s: &str) -> (&str, Option<&str>) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_and_normalizes() {
        assert_eq!(
            normalize_hostname("App.Example.COM.", false).unwrap(),
            "app.example.com"
        );
        assert_eq!(
            normalize_hostname("*.example.com", true).unwrap(),
            "*.example.com"
        );
    }

    #[test]
    fn rejects_malformed() {
        assert_eq!(normalize_hostname("", false), Err(HostnameError::Empty));
        assert_eq!(
            normalize_hostname("a..b", false),
            Err(HostnameError::EmptyLabel)
        );
        assert_eq!(
            normalize_hostname("-a.b", false),
            Err(HostnameError::BadFirst("-a".into()))
        );
        assert_eq!(
            normalize_hostname("a-.b", false).map_err(|e| e.ngrok_code().as_str()),
            Err("ERR_NGROK_329")
        );
        assert_eq!(
            normalize_hostname("a_b.c", false).map_err(|e| e.ngrok_code().as_str()),
            Err("ERR_NGROK_326")
        );
        assert!(normalize_hostname("*.example.com", false).is_err());
        assert!(normalize_hostname("a.*.com", true).is_err());
        assert!(normalize_hostname(&"a".repeat(64), false).is_err());
        assert!(normalize_hostname("bad host", false).is_err());
    }
}
