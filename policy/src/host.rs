//! Actions whose effect belongs to the edge that embeds the engine: they
//! need the request body (verify-webhook), the response body stream
//! (compress-response), state kept across requests and results learned
//! after the exchange (circuit-breaker), or documents fetched over the
//! network (jwt-validation), or the handshake itself (terminate-tls). The
//! policy crate checks where they may run
//! and hands their config to a [`HostActions`] compiler; the engine hands
//! each run to a [`HostRun`].

use serde_json::{Map, Value as Json};

use crate::engine::Reply;
use crate::expr::{Phase, Scope};
use crate::PolicyError;

/// The actions a host implements.
pub const HOST_ACTIONS: &[&str] = &[
    "jwt-validation",
    "verify-webhook",
    "compress-response",
    "circuit-breaker",
    "terminate-tls",
];

/// Compiles host actions for one document.
pub trait HostActions {
    /// Compiles `kind`'s `config` (at `path`, e.g.
    /// `on_http_request[0].actions[1].config`) and returns the id the
    /// engine will pass back to [`HostRun::run`].
    fn compile(
        &mut self,
        kind: &str,
        config: &Map<String, Json>,
        path: &str,
        phase: Phase,
    ) -> Result<usize, PolicyError>;
}

/// For parsing without an edge (tools, the fuzz target): host actions are
/// refused, never silently skipped.
#[derive(Debug, Default)]
pub struct NoHost;

impl HostActions for NoHost {
    fn compile(
        &mut self,
        kind: &str,
        _config: &Map<String, Json>,
        path: &str,
        _phase: Phase,
    ) -> Result<usize, PolicyError> {
        Err(PolicyError::new(
            path,
            format!("{kind} runs only in an edge; this parser has none"),
        ))
    }
}

/// What a host action decided.
#[derive(Debug)]
pub enum HostStep {
    Continue,
    /// Answer with this; the phase ends.
    Respond(Reply),
    /// Refuse the request; the phase ends. The host keeps the reason.
    Refuse,
}

/// Runs host actions during one phase.
pub trait HostRun {
    fn run(&mut self, id: usize, scope: &mut Scope) -> Result<HostStep, String>;
}

impl HostRun for NoHost {
    fn run(&mut self, id: usize, _scope: &mut Scope) -> Result<HostStep, String> {
        Err(format!("host action {id} has no edge to run it"))
    }
}
