//! gangway-edge: the Pingora server that owns public listeners and agent
//! sessions.
//!
//! - [`agent_listener`]: TLS + muxado server role over any byte stream;
//!   Auth, Bind, Unbind, heartbeats, reaping. What each RPC decides is
//!   [`agent_rpc`]'s (pure), what a Bind's options compile to
//!   [`bind_options`]'.
//! - [`registry`]: live sessions and bound endpoints behind one lock; every
//!   change builds a new immutable [`route_table::RouteTable`]
//!   ([`table_builder`], pure) from the pure [`bindings`] and swaps it in;
//!   [`tcp_ports`] keeps the TCP listeners, bound outside that lock.
//! - [`proxy`]: the `ProxyHttp` whose upstream is a muxado stream to the
//!   agent ([`tunnel_stream`]); [`request_view`] is what modules see of
//!   its sessions.
//! - [`errors`]: every refusal and failure turned into its response, in
//!   one place; agent RPC refusals.
//! - [`events`], [`event_objects`]: event sinks, and what each event says.
//! - [`public_tls`]: the TLS port; peeks the SNI (`gangway_proto::client_hello`) and
//!   passes TLS endpoints through or terminates for HTTPS.
//! - [`websocket_bridge`]: the websocket-TCP converter's 101 and relay.
//! - [`tcp_listener`]: per-port listeners of TCP endpoints.
//! - [`certs`]: certificates chosen by SNI in the TLS handshake.
//! - [`fetch`]: the document cache modules read (JWKS, SNS signing
//!   certificates) and the HTTPS fetcher that fills it.
//! - [`server`]: wires the listeners into one Pingora `Server`.
//!
//! Must not depend on the API crate: config reaches the edge as data.

pub mod agent_listener;
pub mod agent_rpc;
pub mod bind_options;
pub mod bindings;
pub mod certs;
pub mod client_tls;
pub mod errors;
pub mod event_objects;
pub mod events;
pub mod fetch;
pub mod proxy;
pub mod public_tls;
pub mod registry;
pub mod request_view;
pub mod route_table;
pub mod server;
pub mod table_builder;
pub mod tcp_listener;
pub mod tcp_ports;
pub mod tunnel_stream;
pub mod websocket_bridge;

pub use server::{build_server, Edge, EdgeError};
