//! Hostname rules for bound endpoints: what a `Domain`, `Hostname` or
//! `Subdomain` may look like.

/// Why a requested name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostnameError {
    #[error("hostname is empty")]
    Empty,
    #[error("hostname is longer than 253 bytes")]
    TooLong,
    #[error(
        "label {0:?} must be 1-63 letters, digits or hyphens, not starting or ending with a hyphen"
    )]
    BadLabel(String),
    #[error("a wildcard is only allowed as the whole first label (\"*.example.com\")")]
    BadWildcard,
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
    let ok = !label.is_empty()
        && label.len() <= 63
        && !label.starts_with('-')
        && !label.ends_with('-')
        && label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(HostnameError::BadLabel(label.to_string()))
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
        assert!(normalize_hostname("a..b", false).is_err());
        assert!(normalize_hostname("-a.b", false).is_err());
        assert!(normalize_hostname("a_b.c", false).is_err());
        assert!(normalize_hostname("*.example.com", false).is_err());
        assert!(normalize_hostname("a.*.com", true).is_err());
        assert!(normalize_hostname(&"a".repeat(64), false).is_err());
        assert!(normalize_hostname("bad host", false).is_err());
    }
}
