//! The edge's live state as the API shows it. The edge implements this
//! (the API must not depend on the edge); tests and API-only nodes use
//! [`NoLive`].

use std::collections::BTreeMap;

/// Read-only view of sessions and tunnels on the edge.
pub trait LiveView: Send + Sync + 'static {
    /// Ids of online tunnels whose labels include all of `labels`.
    fn tunnels_with_labels(&self, labels: &BTreeMap<String, String>) -> Vec<String>;
}

/// No edge attached: nothing is online.
pub struct NoLive;

impl LiveView for NoLive {
    fn tunnels_with_labels(&self, _: &BTreeMap<String, String>) -> Vec<String> {
        Vec::new()
    }
}
