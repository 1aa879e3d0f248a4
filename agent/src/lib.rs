//! gangway-agent: the client side of a tunnel. Dials the edge (TLS +
//! muxado client role), authenticates, binds tunnels, and forwards each
//! proxied stream to the local app; reconnects with backoff and rebinds the
//! same tunnel ids. Captures HTTP exchanges for inspection and serves the
//! local web UI and agent API. The tunnel model (flags, config-file
//! tunnels and agent API bodies → [`TunnelSpec`]) is [`tunnels`].
//!
//! Must not depend on the edge or API crates: it speaks only the wire
//! protocol in gangway-proto.

pub mod capture;
pub mod dial;
pub mod file_server;
pub mod forward;
pub mod http_forward;
pub mod inspect;
pub mod metrics;
pub mod proxy;
pub mod replay;
pub mod run;
pub mod state;
pub mod tunnels;
pub mod upstream;
pub mod web;

pub use dial::TlsTerminator;
pub use run::{run, AgentError, AgentEvent, AgentOptions};
pub use state::AgentState;
pub use tunnels::{twin_name, HttpModules, SpecError, TunnelSpec};
pub use upstream::{Upstream, UpstreamError};
