//! gangway-proto: the ngrok agent wire protocol, shared by edge and agent.
//!
//! Layers, bottom up: [`frame`] (muxado frame codec, no IO), [`session`]
//! (muxado streams and flow control over any byte stream), [`heartbeat`],
//! [`msg`] (RPC and proxy-header JSON shapes), [`codec`] (incremental JSON
//! and ProxyHeader encoding) and [`rpc`] (one call per stream). Beside
//! them, [`client_hello`]: the SNI of a TLS ClientHello, which the edge's
//! TLS port routes by (untrusted bytes, parsed without IO, fuzzed), and
//! [`proxy_protocol`] headers the edge sends when a tunnel asks for them.
//!
//! Must not depend on pingora: the agent links this crate too.

pub mod client_hello;
pub mod codec;
pub mod frame;
pub mod heartbeat;
pub mod msg;
pub mod proxy_protocol;
pub mod rpc;
pub mod session;

pub use frame::ErrorCode;
pub use session::{
    start, Acceptor, Role, Session, SessionConfig, SessionError, Stream, PIPE_BUFFER_BYTES,
};
