//! Errors of the agent file: the file, the line and the key, and what is wrong.

use super::*;

/// A rejected agent file: where ([`origin`](Self::origin), [`line`](Self::line),
/// [`key`](Self::key)) and why ([`kind`](Self::kind)). Displays as
/// `FILE:LINE: KEY: MESSAGE`, leaving out what is unknown.
#[derive(Debug)]
pub struct AgentFileError {
    pub(super) origin: String,
    pub(super) line: Option<usize>,
    pub(super) key: Option<String>,
    pub(super) kind: ErrorKind,
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
    pub(super) fn io(origin: &str, kind: ErrorKind) -> Self {
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
