//! gangway-api: the ngrok-compatible REST API, its store (embedded SQLite;
//! etcd for a fleet), config push to edge nodes, and events.
//!
//! - [`store`]: the etcd-shaped store trait and its embedded SQLite backend.
//!
//! Layer: control plane; must not depend on pingora. The REST API and the
//! config push land on top of the store.

pub mod store;
