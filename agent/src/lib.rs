//! gangway-agent: the client side of a tunnel. Dials the edge (TLS +
//! muxado client role), authenticates, binds tunnels, and forwards each
//! proxied stream to the local app; reconnects with backoff and rebinds the
//! same tunnel ids. Later: inspection, web UI, agent API.
//!
//! Must not depend on the edge or API crates: it speaks only the wire
//! protocol in gangway-proto.

pub mod dial;
pub mod file_server;
pub mod forward;
pub mod http_forward;
pub mod inspect;
pub mod run;
pub mod upstream;

pub use dial::TlsTerminator;
pub use run::{run, AgentError, AgentEvent, AgentOptions, TunnelSpec};
pub use upstream::{Upstream, UpstreamError};
