//! gangway-config: wire types and validated configuration shared by every
//! process shape — the edge node's settings, the `server.json` a local
//! server publishes for agents, and hostname rules. Later: API resources and
//! the agent's ngrok.yml.
//!
//! Pure data and validation: must not depend on pingora or tokio IO.

pub mod edge;
pub mod hostname;
pub mod server_info;

pub use edge::EdgeConfig;
pub use hostname::{normalize_hostname, HostnameError};
pub use server_info::ServerInfo;
