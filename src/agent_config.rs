//! The agent's config files: which to read, merged. What a tunnel
//! definition opens is the agent crate's model (`gangway_agent::tunnels`).

use std::path::PathBuf;

use gangway_config::agent_file::{self, AgentFile};

use crate::agent_cmd::AgentCmdError;

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
