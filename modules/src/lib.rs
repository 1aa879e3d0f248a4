//! gangway-modules: the `RouteModule` trait (one method per request phase)
//! and every route module — IP restriction, circuit breaker, compression,
//! header rewrite, webhook verification, user-agent filter, auth — plus the
//! chain compiler and the typed decisions that become events.
//!
//! Layer: request logic only; must not depend on listeners or sessions.
//! The modules land with the route-modules issue; until then this crate is
//! empty on purpose and the edge forwards requests unmodified.
