//! gangway-config: wire types and validated configuration shared by every
//! process shape — the edge node's settings, the `server.json` a local
//! server publishes for agents, hostname rules, the control plane's stored
//! resources and their compiled form, and the agent's config file
//! (ngrok.yml, v2 and v3).
//!
//! Pure data and validation: must not depend on pingora or tokio IO.

pub mod agent_file;
pub mod codes;
pub mod control;
pub mod edge;
pub mod hostname;
pub mod proxy_url;
pub mod resources;
pub mod server_info;

pub use edge::EdgeConfig;
pub use hostname::{normalize_hostname, HostnameError};
pub use server_info::ServerInfo;
