//! gangway-api: the ngrok-compatible REST API, its store (embedded SQLite;
//! etcd for a fleet), and config push to edge nodes.
//!
//! - [`store`]: the etcd-shaped store trait and its embedded SQLite backend.
//! - [`rest`]: the HTTP API (auth, errors, bodies, router).
//! - [`resources`]: each kind of resource: validation, storage, rendering.
//! - [`feed`]: watches the store and compiles what edges serve.
//! - [`bootstrap`]: the first API key and credential of a new deployment.
//! - [`deployment_ca`]: the CA that signs Kubernetes operators' client certificates.
//! - [`live`]: the edge's sessions and tunnels as the API reads them.
//!
//! Layer: control plane; must not depend on pingora or the edge.

pub mod bootstrap;
pub mod deployment_ca;
pub mod feed;
pub mod ids;
pub mod live;
pub mod resources;
pub mod rest;
pub mod store;
