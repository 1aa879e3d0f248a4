//! gangway-policy: Traffic Policy documents — phases (`on_tcp_connect`,
//! `on_http_request`, `on_http_response`), rules, CEL expressions and
//! actions — parsed, validated with error paths and compiled once.
//!
//! Layer: pure configuration and evaluation; must not depend on pingora or
//! any IO. The engine lands with the Traffic Policy issue; until then this
//! crate is empty on purpose and nothing uses it.
