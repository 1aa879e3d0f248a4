//! The route-module contract and the compiled chain that runs a route's
//! modules in the order MODULES.md fixes.
//!
//! A module is immutable (`&self`), shared by every request of a route,
//! and keeps what one request needs in its own typed
//! [`RouteModule::State`]; modules share only the [`Facts`] they
//! established (decisions for the event, the authenticated user). What a
//! phase asks of the edge is its return value: a [`Flow`] (go on, go on
//! with [`Directives`], refuse, respond, close, fetch a document first)
//! or a [`ResponseFlow`]. The chain knows no concrete module.

use std::any::Any;
use std::fmt;
use std::sync::Arc;

use bytes::Bytes;

use crate::decisions::Decisions;
use crate::documents::{DocumentCache, Fetch};
use crate::refusal::Refusal;
pub use crate::request::{
    ClientCert, ConnInfo, EdgeResponse, HeaderEdits, Outcome, RequestInfo, TlsInfo,
};
pub use gangway_policy::engine::Forward;

/// What a request passed by the chain asks of the edge besides forwarding.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Directives {
    /// url-rewrite: the path and query sent upstream.
    pub rewrite: Option<String>,
    /// forward-internal: the internal endpoint that serves the request
    /// instead of the route's own.
    pub forward: Option<Forward>,
    /// The edge answers the upgrade itself and bridges a raw stream.
    pub upgrade: Option<Upgrade>,
}

impl Directives {
    /// Later modules' directives override earlier ones'.
    pub fn merge(&mut self, later: Directives) {
        if later.rewrite.is_some() {
            self.rewrite = later.rewrite;
        }
        if later.forward.is_some() {
            self.forward = later.forward;
        }
        if later.upgrade.is_some() {
            self.upgrade = later.upgrade;
        }
    }
}

/// Upgrades the edge answers itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upgrade {
    /// websocket_tcp_converter: 101 here, messages bridged to a raw
    /// stream to the agent.
    WebsocketTcp,
}

/// What a connect, request or request-body phase decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Flow {
    Continue,
    /// Go on, and have the edge apply these.
    Direct(Directives),
    /// Refuse: the edge answers with the refusal's status and code.
    Refuse(Refusal),
    /// Answer with this instead of forwarding.
    Respond(EdgeResponse),
    /// Close the connection without an answer.
    Close,
    /// The module cannot decide without this document: the edge fetches
    /// it into the cache and runs the phase again.
    Fetch(Fetch),
}

/// Where a chain stopped a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stop {
    Refuse(Refusal),
    Respond(EdgeResponse),
    Close,
    Fetch(Fetch),
}

/// What a response phase decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResponseFlow {
    Continue,
    /// Write this instead of the upstream's response (none of which was
    /// written yet).
    Replace(EdgeResponse),
    /// Write the response for this refusal instead of the upstream's.
    Refuse(Refusal),
    Close,
}

/// What modules established about one request that other modules (and
/// the request's event) read.
#[derive(Debug, Default)]
pub struct Facts {
    pub decisions: Decisions,
    /// The user a module authenticated, for `${basic_auth.username}`.
    pub user: Option<String>,
}

/// What a phase gets besides the request: its module's own state, the
/// shared facts, and the edge's document cache.
pub struct Cx<'a, S> {
    pub state: &'a mut S,
    pub facts: &'a mut Facts,
    pub documents: &'a DocumentCache,
}

/// Where a module runs, in MODULES.md order: the chain sorts by this, so
/// callers may add modules in any order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stage {
    IpRestriction,
    UserAgentFilter,
    WebhookVerification,
    /// basic auth, oauth, oidc, saml: one per route.
    Auth,
    TrafficPolicy,
    WebsocketTcpConverter,
    CircuitBreaker,
    RequestHeaders,
    Compression,
    ResponseHeaders,
}

impl Stage {
    /// The module's API name.
    pub fn name(self) -> &'static str {
        match self {
            Stage::IpRestriction => "ip_restriction",
            Stage::UserAgentFilter => "user_agent_filter",
            Stage::WebhookVerification => "webhook_verification",
            Stage::Auth => "auth",
            Stage::TrafficPolicy => "traffic_policy",
            Stage::WebsocketTcpConverter => "websocket_tcp_converter",
            Stage::CircuitBreaker => "circuit_breaker",
            Stage::RequestHeaders => "request_headers",
            Stage::Compression => "compression",
            Stage::ResponseHeaders => "response_headers",
        }
    }
}

/// A route module. Each phase has a default that does nothing, so a
/// module implements only the phases it acts in.
pub trait RouteModule: Send + Sync + fmt::Debug + 'static {
    /// What the module remembers about one request, from phase to phase
    /// (`()` when nothing).
    type State: Default + Send + Sync + 'static;

    fn stage(&self) -> Stage;

    /// The module's API name (`ip_restriction`, ...).
    fn name(&self) -> &'static str {
        self.stage().name()
    }

    /// Before anything is read: the layer-4 source is known.
    fn on_connect(&self, _conn: &ConnInfo, _cx: Cx<'_, Self::State>) -> Flow {
        Flow::Continue
    }

    /// The request head arrived.
    fn on_request(&self, _req: &RequestInfo<'_>, _cx: Cx<'_, Self::State>) -> Flow {
        Flow::Continue
    }

    /// Whether [`on_request_body`](Self::on_request_body) needs the whole body.
    fn wants_body(&self) -> bool {
        false
    }

    /// The whole request body (only for modules that want it), before any
    /// of the request reaches the agent.
    fn on_request_body(
        &self,
        _req: &RequestInfo<'_>,
        _body: &[u8],
        _cx: Cx<'_, Self::State>,
    ) -> Flow {
        Flow::Continue
    }

    /// The request head about to go upstream.
    fn upstream_request(
        &self,
        _req: &RequestInfo<'_>,
        _head: &mut dyn HeaderEdits,
        _cx: Cx<'_, Self::State>,
    ) {
    }

    /// The response head about to go to the client.
    fn on_response(
        &self,
        _req: &RequestInfo<'_>,
        _status: u16,
        _out: &mut dyn HeaderEdits,
        _cx: Cx<'_, Self::State>,
    ) -> ResponseFlow {
        ResponseFlow::Continue
    }

    /// Whether [`response_body`](Self::response_body) rewrites bodies.
    fn filters_response_body(&self) -> bool {
        false
    }

    /// A chunk of the response body on its way to the client; `end` on
    /// the last call.
    fn response_body(&self, _chunk: &mut Option<Bytes>, _end: bool, _cx: Cx<'_, Self::State>) {}

    /// The exchange is over.
    fn on_complete(&self, _outcome: &Outcome, _cx: Cx<'_, Self::State>) {}

    /// Documents the edge must have fetched (when
    /// [`DocumentCache::needs_fetch`] says so) before the request phase.
    fn documents(&self) -> &[Fetch] {
        &[]
    }
}

/// A module's per-request state, created when a phase first needs it.
type Slot = Option<Box<dyn Any + Send + Sync>>;

fn state_of<S: Default + Send + Sync + 'static>(slot: &mut Slot) -> Option<&mut S> {
    if !slot.as_ref().is_some_and(|s| s.is::<S>()) {
        // Zero-sized states (most modules') allocate nothing.
        *slot = Some(Box::new(S::default()));
    }
    slot.as_mut()?.downcast_mut::<S>()
}

/// [`RouteModule`] with its state type erased, for the chain.
trait Erased: Send + Sync + fmt::Debug {
    fn stage(&self) -> Stage;
    fn name(&self) -> &'static str;
    fn wants_body(&self) -> bool;
    fn filters_response_body(&self) -> bool;
    fn documents(&self) -> &[Fetch];
    fn on_connect(&self, conn: &ConnInfo, p: Parts<'_>) -> Flow;
    fn on_request(&self, req: &RequestInfo<'_>, p: Parts<'_>) -> Flow;
    fn on_request_body(&self, req: &RequestInfo<'_>, body: &[u8], p: Parts<'_>) -> Flow;
    fn upstream_request(&self, req: &RequestInfo<'_>, head: &mut dyn HeaderEdits, p: Parts<'_>);
    fn on_response(
        &self,
        req: &RequestInfo<'_>,
        status: u16,
        out: &mut dyn HeaderEdits,
        p: Parts<'_>,
    ) -> ResponseFlow;
    fn response_body(&self, chunk: &mut Option<Bytes>, end: bool, p: Parts<'_>);
    fn on_complete(&self, outcome: &Outcome, p: Parts<'_>);
}

/// One module's view of the request state.
struct Parts<'a> {
    slot: &'a mut Slot,
    facts: &'a mut Facts,
    documents: &'a DocumentCache,
}

/// Runs `phase` with the module's typed state; `otherwise` if the state
/// cannot be had (it always can: the slot is the module's own).
macro_rules! with_cx {
    ($p:expr, $otherwise:expr, |$cx:ident| $body:expr) => {{
        let Parts {
            slot,
            facts,
            documents,
        } = $p;
        match state_of::<M::State>(slot) {
            Some(state) => {
                let $cx = Cx {
                    state,
                    facts,
                    documents,
                };
                $body
            }
            None => $otherwise,
        }
    }};
}

impl<M: RouteModule> Erased for M {
    fn stage(&self) -> Stage {
        RouteModule::stage(self)
    }
    fn name(&self) -> &'static str {
        RouteModule::name(self)
    }
    fn wants_body(&self) -> bool {
        RouteModule::wants_body(self)
    }
    fn filters_response_body(&self) -> bool {
        RouteModule::filters_response_body(self)
    }
    fn documents(&self) -> &[Fetch] {
        RouteModule::documents(self)
    }
    fn on_connect(&self, conn: &ConnInfo, p: Parts<'_>) -> Flow {
        with_cx!(p, Flow::Continue, |cx| RouteModule::on_connect(
            self, conn, cx
        ))
    }
    fn on_request(&self, req: &RequestInfo<'_>, p: Parts<'_>) -> Flow {
        with_cx!(p, Flow::Continue, |cx| RouteModule::on_request(
            self, req, cx
        ))
    }
    fn on_request_body(&self, req: &RequestInfo<'_>, body: &[u8], p: Parts<'_>) -> Flow {
        with_cx!(p, Flow::Continue, |cx| RouteModule::on_request_body(
            self, req, body, cx
        ))
    }
    fn upstream_request(&self, req: &RequestInfo<'_>, head: &mut dyn HeaderEdits, p: Parts<'_>) {
        with_cx!(p, (), |cx| RouteModule::upstream_request(
            self, req, head, cx
        ))
    }
    fn on_response(
        &self,
        req: &RequestInfo<'_>,
        status: u16,
        out: &mut dyn HeaderEdits,
        p: Parts<'_>,
    ) -> ResponseFlow {
        with_cx!(p, ResponseFlow::Continue, |cx| RouteModule::on_response(
            self, req, status, out, cx
        ))
    }
    fn response_body(&self, chunk: &mut Option<Bytes>, end: bool, p: Parts<'_>) {
        with_cx!(p, (), |cx| RouteModule::response_body(self, chunk, end, cx))
    }
    fn on_complete(&self, outcome: &Outcome, p: Parts<'_>) {
        with_cx!(p, (), |cx| RouteModule::on_complete(self, outcome, cx))
    }
}

/// A compiled module, ready to join a chain.
#[derive(Debug)]
pub struct Module(Box<dyn Erased>);

impl Module {
    pub fn new(m: impl RouteModule) -> Self {
        Module(Box::new(m))
    }

    pub fn name(&self) -> &'static str {
        self.0.name()
    }
}

/// Largest request body a module buffers (webhook verification): GitHub,
/// the largest sender, caps deliveries at 25 MB.
pub const BODY_LIMIT: usize = 25 * 1024 * 1024;

/// A route's modules, in execution order.
#[derive(Debug, Default)]
pub struct Chain {
    modules: Vec<Box<dyn Erased>>,
    wants_body: bool,
    filters_response_body: bool,
}

/// One request's state across a chain: each module's own, and the facts
/// they share.
pub struct ChainState {
    slots: Vec<Slot>,
    pub facts: Facts,
    documents: Arc<DocumentCache>,
}

impl fmt::Debug for ChainState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChainState")
            .field("facts", &self.facts)
            .finish_non_exhaustive()
    }
}

impl ChainState {
    /// State for one request through `chain`, reading documents from
    /// `documents`.
    pub fn new(chain: &Chain, documents: Arc<DocumentCache>) -> Self {
        ChainState {
            slots: std::iter::repeat_with(|| None)
                .take(chain.modules.len())
                .collect(),
            facts: Facts::default(),
            documents,
        }
    }

    /// The document cache this request reads.
    pub fn documents(&self) -> &DocumentCache {
        &self.documents
    }
}

impl Chain {
    /// Orders `modules` by [`Stage`].
    pub fn new(modules: Vec<Module>) -> Self {
        let mut modules: Vec<Box<dyn Erased>> = modules.into_iter().map(|m| m.0).collect();
        modules.sort_by_key(|m| m.stage());
        Chain {
            wants_body: modules.iter().any(|m| m.wants_body()),
            filters_response_body: modules.iter().any(|m| m.filters_response_body()),
            modules,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.modules.is_empty()
    }

    /// Module names, in order.
    pub fn names(&self) -> Vec<&'static str> {
        self.modules.iter().map(|m| m.name()).collect()
    }

    /// The documents modules need before the request phase.
    pub fn documents(&self) -> impl Iterator<Item = &Fetch> {
        self.modules.iter().flat_map(|m| m.documents().iter())
    }

    /// Whether the request body must be held until the chain has seen it.
    pub fn wants_body(&self) -> bool {
        self.wants_body
    }

    /// Runs `phase` on each module in order until it returns `Some`.
    fn until<T>(
        &self,
        st: &mut ChainState,
        mut phase: impl FnMut(&dyn Erased, Parts<'_>) -> Option<T>,
    ) -> Option<T> {
        let ChainState {
            slots,
            facts,
            documents,
        } = st;
        for (m, slot) in self.modules.iter().zip(slots.iter_mut()) {
            let parts = Parts {
                slot,
                facts,
                documents,
            };
            if let Some(out) = phase(m.as_ref(), parts) {
                return Some(out);
            }
        }
        None
    }

    /// Runs a connect, request or body phase: the first module that stops
    /// the request ends it; directives accumulate.
    fn request_phase(
        &self,
        st: &mut ChainState,
        mut phase: impl FnMut(&dyn Erased, Parts<'_>) -> Flow,
    ) -> Result<Directives, Stop> {
        let mut directives = Directives::default();
        let stop = self.until(st, |m, p| match phase(m, p) {
            Flow::Continue => None,
            Flow::Direct(d) => {
                directives.merge(d);
                None
            }
            Flow::Refuse(r) => Some(Stop::Refuse(r)),
            Flow::Respond(r) => Some(Stop::Respond(r)),
            Flow::Close => Some(Stop::Close),
            Flow::Fetch(f) => Some(Stop::Fetch(f)),
        });
        match stop {
            Some(stop) => Err(stop),
            None => Ok(directives),
        }
    }

    pub fn on_connect(&self, conn: &ConnInfo, st: &mut ChainState) -> Result<Directives, Stop> {
        self.request_phase(st, |m, p| m.on_connect(conn, p))
    }

    pub fn on_request(
        &self,
        req: &RequestInfo<'_>,
        st: &mut ChainState,
    ) -> Result<Directives, Stop> {
        self.request_phase(st, |m, p| m.on_request(req, p))
    }

    pub fn on_request_body(
        &self,
        req: &RequestInfo<'_>,
        body: &[u8],
        st: &mut ChainState,
    ) -> Result<Directives, Stop> {
        self.request_phase(st, |m, p| {
            if m.wants_body() {
                m.on_request_body(req, body, p)
            } else {
                Flow::Continue
            }
        })
    }

    pub fn upstream_request(
        &self,
        req: &RequestInfo<'_>,
        head: &mut dyn HeaderEdits,
        st: &mut ChainState,
    ) {
        self.until(st, |m, p| {
            m.upstream_request(req, head, p);
            None::<()>
        });
    }

    /// The first module that replaces the response, refuses or closes
    /// ends the phase.
    pub fn on_response(
        &self,
        req: &RequestInfo<'_>,
        status: u16,
        out: &mut dyn HeaderEdits,
        st: &mut ChainState,
    ) -> ResponseFlow {
        self.until(st, |m, p| match m.on_response(req, status, out, p) {
            ResponseFlow::Continue => None,
            other => Some(other),
        })
        .unwrap_or(ResponseFlow::Continue)
    }

    /// Passes a response body chunk through the modules that rewrite
    /// bodies; `end` on the last one.
    pub fn response_body(&self, chunk: &mut Option<Bytes>, end: bool, st: &mut ChainState) {
        if !self.filters_response_body {
            return;
        }
        self.until(st, |m, p| {
            if m.filters_response_body() {
                m.response_body(chunk, end, p);
            }
            None::<()>
        });
    }

    pub fn on_complete(&self, outcome: &Outcome, st: &mut ChainState) {
        self.until(st, |m, p| {
            m.on_complete(outcome, p);
            None::<()>
        });
    }
}

/// A module's phase context outside a chain, for unit tests.
#[cfg(test)]
#[derive(Default)]
pub(crate) struct TestCx<S> {
    pub state: S,
    pub facts: Facts,
    pub documents: DocumentCache,
}

#[cfg(test)]
impl<S> TestCx<S> {
    pub fn cx(&mut self) -> Cx<'_, S> {
        Cx {
            state: &mut self.state,
            facts: &mut self.facts,
            documents: &self.documents,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counts its requests in its own state and tags the shared facts.
    #[derive(Debug)]
    struct Counter(Stage);

    #[derive(Default)]
    struct Seen(u32);

    impl RouteModule for Counter {
        type State = Seen;
        fn stage(&self) -> Stage {
            self.0
        }
        fn on_request(&self, _req: &RequestInfo<'_>, cx: Cx<'_, Seen>) -> Flow {
            cx.state.0 += 1;
            cx.facts.user.get_or_insert_with(|| self.0.name().into());
            match self.0 {
                Stage::TrafficPolicy => Flow::Direct(Directives {
                    rewrite: Some("/new".into()),
                    ..Directives::default()
                }),
                Stage::CircuitBreaker => Flow::Refuse(Refusal::CircuitOpen),
                _ => Flow::Continue,
            }
        }
        fn on_complete(&self, _outcome: &Outcome, cx: Cx<'_, Seen>) {
            assert_eq!(cx.state.0, 1, "each module keeps its own state");
        }
    }

    fn run(chain: &Chain, st: &mut ChainState) -> Result<Directives, Stop> {
        let conn = ConnInfo::default();
        let uri: http::Uri = "/".parse().unwrap();
        let headers = http::HeaderMap::new();
        let req = RequestInfo {
            conn: &conn,
            method: &http::Method::GET,
            uri: &uri,
            headers: &headers,
            scheme: "https",
            host: "h.example",
        };
        chain.on_request(&req, st)
    }

    #[test]
    fn modules_run_in_stage_order_with_their_own_state() {
        let chain = Chain::new(vec![
            Module::new(Counter(Stage::Compression)),
            Module::new(Counter(Stage::TrafficPolicy)),
            Module::new(Counter(Stage::IpRestriction)),
        ]);
        assert_eq!(
            chain.names(),
            ["ip_restriction", "traffic_policy", "compression"]
        );
        let mut st = ChainState::new(&chain, Arc::default());
        let directives = run(&chain, &mut st).unwrap();
        assert_eq!(directives.rewrite.as_deref(), Some("/new"));
        assert_eq!(st.facts.user.as_deref(), Some("ip_restriction"));
        chain.on_complete(
            &Outcome {
                forwarded: true,
                status: Some(200),
            },
            &mut st,
        );
    }

    #[test]
    fn the_first_refusal_stops_the_chain() {
        let chain = Chain::new(vec![
            Module::new(Counter(Stage::CircuitBreaker)),
            Module::new(Counter(Stage::Compression)),
        ]);
        let mut st = ChainState::new(&chain, Arc::default());
        assert_eq!(
            run(&chain, &mut st),
            Err(Stop::Refuse(Refusal::CircuitOpen))
        );
    }
}
