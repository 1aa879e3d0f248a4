//! `traffic_policy`: a Traffic Policy document run as a route module. The
//! same module serves an API route, an agent's Bind `TrafficPolicy` and a
//! cloud endpoint, so one policy behaves the same on all three.
//!
//! `on_tcp_connect` rules run when the request's connection is admitted,
//! `on_http_request` rules on the request head, `on_http_response` rules
//! on the upstream's response head. What the request phase leaves for
//! later phases (its variables, upstream header edits, admitted breakers,
//! webhooks waiting for the body) is the module's [`PolicyRun`]; what it
//! asks of the edge (a rewritten URL, a forward to an internal endpoint)
//! it returns as [`Directives`]. Actions built on other modules' machinery
//! (jwt-validation, verify-webhook, compress-response, circuit-breaker)
//! live in [`host`].

mod host;

pub use host::TerminateTls;

use std::net::IpAddr;

use bytes::Bytes;
use gangway_policy::engine::{self, HttpOutcome, Refused, Reply};
use gangway_policy::expr::{SavedScope, Scope};
use gangway_policy::request::{Connection, HttpRequest, Tls};
use gangway_policy::Policy;
use http::{HeaderName, HeaderValue};

use crate::chain::{
    ConnInfo, Cx, Directives, EdgeResponse, Flow, HeaderEdits, Outcome, RequestInfo, ResponseFlow,
    RouteModule, Stage,
};
use crate::compression::{self, Encoder};
use crate::documents::Fetch;
use crate::refusal::Refusal;
use crate::ConfigError;

/// Wire config: a policy document's text (JSON or YAML).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrafficPolicyConfig {
    pub text: String,
}

impl TrafficPolicyConfig {
    /// `path` prefixes error paths (`traffic_policy.value`).
    pub fn compile(&self, path: &str) -> Result<TrafficPolicy, ConfigError> {
        TrafficPolicy::compile(path, &self.text)
    }
}

#[derive(Debug)]
pub struct TrafficPolicy {
    policy: Policy,
    /// The host actions' compiled state, indexed by the ids in `policy`.
    host: Vec<host::HostAction>,
    /// JWKS the edge must have fetched before the request phase.
    documents: Vec<Fetch>,
    /// The request phase verifies a webhook: hold the body back.
    wants_body: bool,
    /// The response phase may compress (compress-response).
    compresses: bool,
    /// `terminate-tls`, for TLS endpoints to apply when bound.
    terminate_tls: Option<TerminateTls>,
}

/// What the request phase left for later phases of the same request.
#[derive(Debug, Default)]
pub struct PolicyRun {
    /// The request's variables, kept for the response phase (`vars.*`
    /// set on the request are visible there).
    scope: SavedScope,
    remove: Vec<HeaderName>,
    add: Vec<(HeaderName, HeaderValue)>,
    pending: host::Pending,
    /// compress-response chose an encoding for the response body.
    encoder: Option<Encoder>,
}

impl TrafficPolicy {
    /// Parses and compiles `text`; errors name `field` and the document
    /// path (`traffic_policy.value.on_http_request[0].actions[0].type`).
    pub fn compile(field: &str, text: &str) -> Result<Self, ConfigError> {
        let p = Self::compile_any(field, text)?;
        if let Some(t) = &p.terminate_tls {
            return Err(ConfigError::new(
                t.path.trim_end_matches(".config"),
                "HTTP endpoints always terminate TLS at the edge; terminate-tls is for TLS endpoints",
            ));
        }
        Ok(p)
    }

    fn compile_any(field: &str, text: &str) -> Result<Self, ConfigError> {
        let at = |path: &str| {
            if path.is_empty() {
                field.to_string()
            } else {
                format!("{field}.{path}")
            }
        };
        let mut compiler = host::Compiler::default();
        let policy = Policy::parse_with(text, &mut compiler)
            .map_err(|e| ConfigError::new(at(&e.path), e.message))?;
        let host = compiler.actions;
        let wants_body = host
            .iter()
            .any(|a| matches!(a, host::HostAction::Webhook { .. }));
        if wants_body {
            // The body arrives after the request phase has run.
            for (i, rule) in policy.on_http_request.iter().enumerate() {
                for (j, e) in rule.expressions.iter().enumerate() {
                    if e.source.contains("verify_webhook") {
                        return Err(ConfigError::new(
                            at(&format!("on_http_request[{i}].expressions[{j}]")),
                            "actions.ngrok.verify_webhook is known once the body has arrived, after on_http_request ran; read it in on_http_response",
                        ));
                    }
                }
            }
        }
        let mut terminate_tls = None;
        for (i, rule) in policy.on_tcp_connect.iter().enumerate() {
            for action in &rule.actions {
                let gangway_policy::actions::Action::Host { id, .. } = action else {
                    continue;
                };
                let Some(host::HostAction::TerminateTls(t)) = host.get(*id) else {
                    continue;
                };
                if !rule.expressions.is_empty() {
                    return Err(ConfigError::new(
                        at(&format!("on_tcp_connect[{i}].expressions")),
                        "terminate-tls is decided when the endpoint starts, before any connection: put it in a rule without expressions",
                    ));
                }
                if terminate_tls.is_some() {
                    return Err(ConfigError::new(
                        at(t.path.trim_end_matches(".config")),
                        "only one terminate-tls per policy",
                    ));
                }
                terminate_tls = Some(TerminateTls {
                    path: at(&t.path),
                    ..(**t).clone()
                });
            }
        }
        let documents = host
            .iter()
            .filter_map(|a| match a {
                host::HostAction::Jwt(j) => Some(j.documents().to_vec()),
                _ => None,
            })
            .flatten()
            .collect();
        let compresses = host
            .iter()
            .any(|a| matches!(a, host::HostAction::Compress(_)));
        Ok(TrafficPolicy {
            policy,
            host,
            documents,
            wants_body,
            compresses,
            terminate_tls,
        })
    }

    /// [`TrafficPolicy::compile`] for a TCP or TLS endpoint, where only
    /// `on_tcp_connect` can run.
    /// Only TLS endpoints can apply `terminate-tls` ([`Self::terminate_tls`]);
    /// other callers must refuse a policy that has it.
    pub fn compile_l4(field: &str, text: &str) -> Result<Self, ConfigError> {
        let p = Self::compile_any(field, text)?;
        for (phase, rules) in [
            ("on_http_request", &p.policy.on_http_request),
            ("on_http_response", &p.policy.on_http_response),
        ] {
            if !rules.is_empty() {
                return Err(ConfigError::new(
                    format!("{field}.{phase}"),
                    "a TCP or TLS endpoint speaks no HTTP: only on_tcp_connect runs here",
                ));
            }
        }
        Ok(p)
    }

    /// The policy's `terminate-tls` (its `path` is the full field path).
    pub fn terminate_tls(&self) -> Option<&TerminateTls> {
        self.terminate_tls.as_ref()
    }

    /// For endpoints that cannot terminate TLS (TCP, API edges).
    pub fn refuse_terminate_tls(&self, why: &str) -> Result<(), ConfigError> {
        match &self.terminate_tls {
            Some(t) => Err(ConfigError::new(
                t.path.trim_end_matches(".config"),
                why.to_string(),
            )),
            None => Ok(()),
        }
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }
}

/// The policy's view of a connection.
pub fn connection(conn: &ConnInfo, scheme: &str) -> Connection {
    Connection {
        client: conn.client,
        server: conn.server,
        tls: conn.tls.as_ref().map(|t| Tls {
            version: t.version.clone(),
            cipher_suite: t.cipher_suite.clone(),
            client_cert_serial: t.client_cert.as_ref().map(|c| c.serial_number.clone()),
            client_cert_cn: t.client_cert.as_ref().map(|c| c.subject_cn.clone()),
        }),
        endpoint_url: format!("{scheme}://{}", conn.server_name),
        endpoint_id: String::new(),
    }
}

fn client_ip(conn: &ConnInfo) -> Option<IpAddr> {
    conn.client.map(|a| a.ip())
}

/// A policy's answer as the edge writes it. A header value that rendered
/// to something HTTP cannot carry fails the request like any runtime error.
fn edge_response(reply: Reply) -> Result<EdgeResponse, Refusal> {
    let headers = header_values(reply.headers)?;
    Ok(EdgeResponse {
        status: reply.status,
        code: None,
        headers,
        body: Bytes::from(reply.body),
    })
}

/// Rendered header values, or the refusal for one that is not valid.
fn header_values(
    add: Vec<(HeaderName, String)>,
) -> Result<Vec<(HeaderName, HeaderValue)>, Refusal> {
    add.into_iter()
        .map(|(name, value)| match HeaderValue::from_str(&value) {
            Ok(v) => Ok((name, v)),
            Err(_) => Err(Refusal::PolicyBadHeader(name)),
        })
        .collect()
}

/// The module's refusal for what the engine refused (`host`: why a host
/// action refused, if one did).
fn refusal(refused: Refused, host: Option<Refusal>) -> Refusal {
    match refused {
        Refused::IpBlocked => Refusal::IpBlockedByPolicy,
        Refused::Failed(e) => Refusal::PolicyFailed(e),
        Refused::Host => host.unwrap_or_else(|| {
            Refusal::PolicyFailed("a host action refused without a reason".into())
        }),
    }
}

impl RouteModule for TrafficPolicy {
    /// What the request phase left for later phases; `None` until it ran.
    type State = Option<PolicyRun>;

    fn stage(&self) -> Stage {
        Stage::TrafficPolicy
    }

    fn on_connect(&self, conn: &ConnInfo, cx: Cx<'_, Option<PolicyRun>>) -> Flow {
        if self.policy.on_tcp_connect.is_empty() {
            return Flow::Continue;
        }
        let mut scope = Scope::for_connection(&connection(conn, "tcp"));
        let out = engine::run_with(
            &self.policy.on_tcp_connect,
            &mut scope,
            client_ip(conn),
            &mut host::ConnectHost {
                actions: &self.host,
            },
        );
        cx.facts.decisions.traffic_policy_logs.extend(out.logs);
        // Before any HTTP is spoken, refusing means closing.
        if out.close || out.respond.is_some() || out.refused.is_some() {
            return Flow::Close;
        }
        Flow::Continue
    }

    fn on_request(&self, req: &RequestInfo<'_>, cx: Cx<'_, Option<PolicyRun>>) -> Flow {
        if self.policy.on_http_request.is_empty() && self.policy.on_http_response.is_empty() {
            return Flow::Continue;
        }
        let mut scope = Scope::for_request(
            &connection(req.conn, req.scheme),
            &HttpRequest {
                method: req.method,
                uri: req.uri,
                headers: req.headers,
                scheme: req.scheme,
                host: req.host,
            },
        );
        let mut host = host::RequestHost {
            actions: &self.host,
            req,
            facts: cx.facts,
            documents: cx.documents,
            pending: host::Pending::default(),
            refusal: None,
        };
        let out = engine::run_with(
            &self.policy.on_http_request,
            &mut scope,
            client_ip(req.conn),
            &mut host,
        );
        let (pending, host_refusal) = (host.pending, host.refusal);
        let HttpOutcome {
            respond,
            refused,
            close,
            remove_headers,
            add_headers,
            rewrite,
            logs,
            forward,
        } = out;
        cx.facts.decisions.traffic_policy_logs.extend(logs);
        if close {
            return Flow::Close;
        }
        if let Some(r) = refused {
            return Flow::Refuse(refusal(r, host_refusal));
        }
        if let Some(reply) = respond {
            return match edge_response(reply) {
                Ok(answer) => Flow::Respond(answer),
                Err(r) => Flow::Refuse(r),
            };
        }
        let add = match header_values(add_headers) {
            Ok(add) => add,
            Err(r) => return Flow::Refuse(r),
        };
        *cx.state = Some(PolicyRun {
            scope: scope.save(),
            remove: remove_headers,
            add,
            pending,
            encoder: None,
        });
        if rewrite.is_none() && forward.is_none() {
            return Flow::Continue;
        }
        Flow::Direct(Directives {
            rewrite,
            forward,
            upgrade: None,
        })
    }

    fn wants_body(&self) -> bool {
        self.wants_body
    }

    fn on_request_body(
        &self,
        req: &RequestInfo<'_>,
        body: &[u8],
        cx: Cx<'_, Option<PolicyRun>>,
    ) -> Flow {
        let Some(run) = cx.state.as_mut() else {
            return Flow::Continue;
        };
        let mut scope = std::mem::take(&mut run.scope).restore();
        let verdict = host::verify_body(
            &self.host,
            &run.pending.webhooks,
            req,
            body,
            cx.facts,
            cx.documents,
            &mut scope,
        );
        run.scope = scope.save();
        match verdict {
            Ok(()) => Flow::Continue,
            Err(flow) => flow,
        }
    }

    fn documents(&self) -> &[Fetch] {
        &self.documents
    }

    fn on_complete(&self, outcome: &Outcome, cx: Cx<'_, Option<PolicyRun>>) {
        let Some(run) = cx.state.as_ref() else {
            return;
        };
        for &(id, probe) in &run.pending.breakers {
            if let Some(host::HostAction::Breaker { breaker, .. }) = self.host.get(id) {
                breaker.finish(outcome, probe);
            }
        }
    }

    fn upstream_request(
        &self,
        _req: &RequestInfo<'_>,
        head: &mut dyn HeaderEdits,
        cx: Cx<'_, Option<PolicyRun>>,
    ) {
        let Some(run) = cx.state.as_mut() else {
            return;
        };
        for name in &run.remove {
            head.remove(name);
        }
        for (name, value) in run.add.drain(..) {
            head.append(name, value);
        }
    }

    fn on_response(
        &self,
        req: &RequestInfo<'_>,
        status: u16,
        out: &mut dyn HeaderEdits,
        cx: Cx<'_, Option<PolicyRun>>,
    ) -> ResponseFlow {
        if self.policy.on_http_response.is_empty() {
            return ResponseFlow::Continue;
        }
        let Some(run) = cx.state.as_mut() else {
            return ResponseFlow::Continue;
        };
        let mut scope = std::mem::take(&mut run.scope).restore();
        scope.set_response(status, out.headers());
        let mut host = host::ResponseHost {
            actions: &self.host,
            compress: None,
        };
        let outcome = engine::run_with(
            &self.policy.on_http_response,
            &mut scope,
            req.conn.client.map(|a| a.ip()),
            &mut host,
        );
        let compress = host.compress;
        cx.facts.decisions.traffic_policy_logs.extend(outcome.logs);
        if outcome.close {
            return ResponseFlow::Close;
        }
        if let Some(r) = outcome.refused {
            return ResponseFlow::Refuse(refusal(r, None));
        }
        if let Some(reply) = outcome.respond {
            return match edge_response(reply) {
                Ok(answer) => ResponseFlow::Replace(answer),
                Err(r) => ResponseFlow::Refuse(r),
            };
        }
        let add = match header_values(outcome.add_headers) {
            Ok(add) => add,
            Err(r) => return ResponseFlow::Refuse(r),
        };
        for name in &outcome.remove_headers {
            out.remove(name);
        }
        for (name, value) in add {
            out.append(name, value);
        }
        if let Some(codings) = compress {
            run.encoder = compression::encode_response(req, status, out, cx.facts, codings);
        }
        ResponseFlow::Continue
    }

    fn filters_response_body(&self) -> bool {
        self.compresses
    }

    fn response_body(&self, chunk: &mut Option<Bytes>, end: bool, cx: Cx<'_, Option<PolicyRun>>) {
        let Some(run) = cx.state.as_mut() else {
            return;
        };
        compression::encode_body(run.encoder.as_mut(), chunk, end, cx.facts);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::TestCx;
    use http::{HeaderMap, Method, Uri};

    type St = TestCx<Option<PolicyRun>>;

    fn conn() -> ConnInfo {
        ConnInfo {
            client: Some("10.0.0.7:4000".parse().unwrap()),
            server: Some("127.0.0.1:443".parse().unwrap()),
            server_name: "app.example".into(),
            tls: None,
        }
    }

    fn request(m: &TrafficPolicy, path: &str, headers: &HeaderMap, st: &mut St) -> Flow {
        let conn = conn();
        let uri: Uri = path.parse().unwrap();
        let req = RequestInfo {
            conn: &conn,
            method: &Method::GET,
            uri: &uri,
            headers,
            scheme: "https",
            host: "app.example",
        };
        m.on_request(&req, st.cx())
    }

    #[test]
    fn errors_name_the_field_and_the_document_path() {
        let e = TrafficPolicy::compile(
            "traffic_policy.value",
            r#"{"on_http_request":[{"actions":[{"type":"nope"}]}]}"#,
        )
        .unwrap_err();
        assert_eq!(
            e.field,
            "traffic_policy.value.on_http_request[0].actions[0].type"
        );
        let e = TrafficPolicy::compile("TrafficPolicy", "[1]").unwrap_err();
        assert_eq!(e.field, "TrafficPolicy");
    }

    #[test]
    fn request_phase_edits_reach_upstream_and_response_phase_sees_vars() {
        let m = TrafficPolicy::compile(
            "p",
            r#"
on_http_request:
  - actions:
      - type: set-vars
        config: { vars: [ { who: "${req.url.path}" } ] }
      - type: add-headers
        config: { headers: { x-who: "${vars.who}" } }
      - type: remove-headers
        config: { headers: [ x-secret ] }
      - type: url-rewrite
        config: { from: "/old/(.*)", to: "/new/$1" }
on_http_response:
  - expressions: ["res.status_code == 200 && vars.who == '/old/x'"]
    actions:
      - type: add-headers
        config: { headers: { x-seen: "yes" } }
"#,
        )
        .unwrap();
        let mut st = St::default();
        let mut h = HeaderMap::new();
        h.insert("x-secret", "s".parse().unwrap());
        let Flow::Direct(d) = request(&m, "/old/x", &h, &mut st) else {
            panic!("url-rewrite is a directive");
        };
        assert_eq!(d.rewrite.as_deref(), Some("/new/x"));
        let conn = conn();
        let uri: Uri = "/old/x".parse().unwrap();
        let req = RequestInfo {
            conn: &conn,
            method: &Method::GET,
            uri: &uri,
            headers: &h,
            scheme: "https",
            host: "app.example",
        };
        let mut up = h.clone();
        m.upstream_request(&req, &mut up, st.cx());
        assert!(up.get("x-secret").is_none());
        assert_eq!(up.get("x-who").unwrap(), "/old/x");
        let mut resp = HeaderMap::new();
        m.on_response(&req, 200, &mut resp, st.cx());
        assert_eq!(resp.get("x-seen").unwrap(), "yes");
    }

    #[test]
    fn close_and_deny_and_response_replacement() {
        let m = TrafficPolicy::compile(
            "p",
            r#"{"on_http_request":[
                 {"expressions":["req.url.path == '/close'"],"actions":[{"type":"close-connection"}]},
                 {"expressions":["req.url.path == '/deny'"],"actions":[{"type":"deny","config":{"status_code":451}}]}],
               "on_http_response":[
                 {"expressions":["res.status_code >= 500"],
                  "actions":[{"type":"custom-response","config":{"status_code":503,"body":"down"}}]}]}"#,
        )
        .unwrap();
        let h = HeaderMap::new();
        let mut st = St::default();
        assert_eq!(request(&m, "/close", &h, &mut st), Flow::Close);
        let mut st = St::default();
        match request(&m, "/deny", &h, &mut st) {
            Flow::Respond(r) => assert_eq!(r.status, 451),
            other => panic!("{other:?}"),
        }
        let mut st = St::default();
        assert_eq!(request(&m, "/", &h, &mut st), Flow::Continue);
        let conn = conn();
        let uri: Uri = "/".parse().unwrap();
        let req = RequestInfo {
            conn: &conn,
            method: &Method::GET,
            uri: &uri,
            headers: &h,
            scheme: "https",
            host: "app.example",
        };
        let mut resp = HeaderMap::new();
        let ResponseFlow::Replace(r) = m.on_response(&req, 502, &mut resp, st.cx()) else {
            panic!("replaced");
        };
        assert_eq!((r.status, &r.body[..]), (503, &b"down"[..]));
    }

    #[test]
    fn tcp_connect_phase_closes_refused_clients() {
        let m = TrafficPolicy::compile(
            "p",
            r#"{"on_tcp_connect":[{"actions":[{"type":"restrict-ips","config":{"allow":["192.168.0.0/16"]}}]}]}"#,
        )
        .unwrap();
        let mut st = St::default();
        assert_eq!(m.on_connect(&conn(), st.cx()), Flow::Close);
    }
}
