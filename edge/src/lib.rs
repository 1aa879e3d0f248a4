//! gangway-edge: the Pingora server that owns public listeners and agent
//! sessions.
//!
//! - [`agent_listener`]: TLS + muxado server role; Auth, Bind, Unbind,
//!   heartbeats, reaping.
//! - [`registry`]: live sessions and bound endpoints; every change compiles
//!   a new immutable [`route_table::RouteTable`] and swaps it in.
//! - [`proxy`]: the `ProxyHttp` whose upstream is a muxado stream to the
//!   agent ([`tunnel_stream`]).
//! - [`public_tls`]: the TLS port; peeks the SNI (`gangway_proto::client_hello`) and
//!   passes TLS endpoints through or terminates for HTTPS.
//! - [`websocket_bridge`]: the websocket-TCP converter's 101 and relay.
//! - [`tcp_listener`]: per-port listeners of TCP endpoints.
//! - [`certs`]: certificates chosen by SNI in the TLS handshake.
//! - [`fetch`]: HTTPS documents modules need (SNS signing certificates).
//! - [`server`]: wires the listeners into one Pingora `Server`.
//!
//! Must not depend on the API crate: config reaches the edge as data.

pub mod agent_listener;
pub mod certs;
pub mod client_tls;
pub mod errors;
pub mod events;
pub mod fetch;
pub mod proxy;
pub mod public_tls;
pub mod registry;
pub mod route_table;
pub mod server;
pub mod tcp_listener;
pub mod tunnel_stream;
pub mod websocket_bridge;

pub use server::{build_server, Edge, EdgeError};
