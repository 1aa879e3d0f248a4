//! The edge's live state as the API shows it: agent sessions, their
//! tunnels, and the commands the API may send to an agent. The edge
//! implements this (the API must not depend on the edge); tests and
//! API-only nodes use [`NoLive`].

use std::collections::BTreeMap;

use async_trait::async_trait;

/// An authenticated agent session.
#[derive(Debug, Clone, Default)]
pub struct LiveSession {
    /// The id the agent was given at Auth (`ts_…`).
    pub id: String,
    pub agent_version: String,
    /// The agent's address as the edge saw it (`ip:port`).
    pub peer: String,
    pub os: String,
    pub metadata: String,
    /// The stored credential it authenticated with; empty for a static token.
    pub credential_id: String,
    /// Milliseconds since the Unix epoch.
    pub started_at_ms: u64,
}

/// A tunnel of a live session.
#[derive(Debug, Clone, Default)]
pub struct LiveTunnel {
    pub id: String,
    pub session_id: String,
    /// Empty for labeled tunnels (they serve edges, not a URL of their own).
    pub public_url: String,
    pub proto: String,
    pub forwards_to: String,
    pub metadata: String,
    pub labels: BTreeMap<String, String>,
    /// Requested bindings; empty means public.
    pub bindings: Vec<String>,
    pub started_at_ms: u64,
}

/// What the API may ask an agent to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Restart,
    Stop,
    Update,
}

/// Why a command did not reach the agent or was refused by it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    #[error("no live session {0}")]
    NoSession(String),
    /// The agent answered with an error (e.g. it cannot update itself).
    #[error("the agent refused: {0}")]
    Refused(String),
    #[error("the agent did not answer: {0}")]
    Unreachable(String),
}

/// The edge's sessions and tunnels, read live.
#[async_trait]
pub trait LiveView: Send + Sync + 'static {
    /// Ids of online tunnels whose labels include all of `labels`.
    fn tunnels_with_labels(&self, labels: &BTreeMap<String, String>) -> Vec<String>;

    fn sessions(&self) -> Vec<LiveSession>;

    fn tunnels(&self) -> Vec<LiveTunnel>;

    /// Sends `cmd` to the agent of session `id` and waits for its answer.
    async fn command(&self, id: &str, cmd: Command) -> Result<(), CommandError>;
}

/// No edge attached: nothing is online.
pub struct NoLive;

#[async_trait]
impl LiveView for NoLive {
    fn tunnels_with_labels(&self, _: &BTreeMap<String, String>) -> Vec<String> {
        Vec::new()
    }

    fn sessions(&self) -> Vec<LiveSession> {
        Vec::new()
    }

    fn tunnels(&self) -> Vec<LiveTunnel> {
        Vec::new()
    }

    async fn command(&self, id: &str, _: Command) -> Result<(), CommandError> {
        Err(CommandError::NoSession(id.to_string()))
    }
}
