//! gangway-api: the ngrok-compatible REST API, its store (embedded SQLite;
//! etcd for a fleet), config push to edge nodes, and events.
//!
//! Layer: control plane; must not depend on pingora. It lands with the
//! control-plane issue; until then `gangway server` runs without an API and
//! this crate is empty on purpose.
