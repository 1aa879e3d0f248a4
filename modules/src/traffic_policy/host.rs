//! The Traffic Policy actions that reuse route-module machinery: the
//! policy crate validates where they run and calls back here
//! ([`gangway_policy::host`]).
//!
//! - `verify-webhook`: the webhook module's provider table; the body is
//!   held back from the agent until it verifies, as on a route.
//! - `compress-response`: the compression module's streaming encoders,
//!   with br and zstd as well.
//! - `circuit-breaker`: the circuit-breaker module's windows, one per
//!   action, counted when the exchange ends.
//! - `jwt-validation`: [`crate::jwt`], keys fetched by the edge.

use std::time::{Duration, Instant};

use gangway_policy::actions::Config;
use gangway_policy::engine::{set_result, Reply};
use gangway_policy::expr::{Phase, Scope};
use gangway_policy::host::{HostActions, HostRun, HostStep};
use gangway_policy::PolicyError;
use serde_json::{json, Map, Value as Json};

use crate::chain::{EdgeResponse, Facts, Flow, RequestInfo};
use crate::circuit_breaker::{Admission, BreakerConfig, CircuitBreaker};
use crate::compression::Coding;
use crate::decisions::Access;
use crate::documents::DocumentCache;
use crate::jwt::{JwtValidation, TokenRefusal};
use crate::refusal::Refusal;
use crate::webhook::{Verdict, WebhookVerification};

#[derive(Debug)]
pub(super) enum HostAction {
    Jwt(Box<JwtValidation>),
    Webhook {
        verifier: Box<WebhookVerification>,
        enforce: bool,
    },
    Compress(Vec<Coding>),
    Breaker {
        breaker: Box<CircuitBreaker>,
        enforce: bool,
    },
    /// Decided when the endpoint is bound, not per connection.
    TerminateTls(Box<TerminateTls>),
}

/// `terminate-tls`: how a TLS endpoint answers the handshake. Without a
/// certificate, the edge's own certificate for the name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TerminateTls {
    /// Where the action is, for errors the edge finds (a bad PEM).
    pub path: String,
    pub server_certificate: Option<String>,
    pub server_private_key: Option<String>,
    /// "1.2" or "1.3".
    pub min_version: Option<String>,
    pub max_version: Option<String>,
    /// PEM bundles: clients must present a certificate from one of them.
    pub mutual_tls_certificate_authorities: Vec<String>,
}

fn terminate_tls(c: &Config<'_>) -> Result<TerminateTls, PolicyError> {
    c.only(&[
        "server_certificate",
        "server_private_key",
        "min_version",
        "max_version",
        "mutual_tls_certificate_authorities",
    ])?;
    let cert = c.string("server_certificate")?.map(str::to_string);
    let key = c.string("server_private_key")?.map(str::to_string);
    match (&cert, &key) {
        (Some(_), None) => {
            return Err(c.err("server_private_key", "required with server_certificate"))
        }
        (None, Some(_)) => {
            return Err(c.err("server_certificate", "required with server_private_key"))
        }
        _ => {}
    }
    let version = |key: &str| -> Result<Option<String>, PolicyError> {
        match c.string(key)? {
            None => Ok(None),
            Some(v @ ("1.2" | "1.3")) => Ok(Some(v.to_string())),
            Some(_) => Err(c.err(key, "must be \"1.2\" or \"1.3\"")),
        }
    };
    let (min, max) = (version("min_version")?, version("max_version")?);
    if let (Some(lo), Some(hi)) = (&min, &max) {
        if lo > hi {
            return Err(c.err("max_version", "must not be below min_version"));
        }
    }
    let cas: Vec<String> = c
        .list("mutual_tls_certificate_authorities")?
        .into_iter()
        .map(|(_, pem)| pem.to_string())
        .collect();
    if cert.is_none() && (min.is_some() || max.is_some() || !cas.is_empty()) {
        return Err(c.err(
            "server_certificate",
            "required on this edge when versions or client CAs are set (the edge's own certificates keep their settings)",
        ));
    }
    Ok(TerminateTls {
        path: c.path.to_string(),
        server_certificate: cert,
        server_private_key: key,
        min_version: min,
        max_version: max,
        mutual_tls_certificate_authorities: cas,
    })
}

/// Compiles a document's host actions into the list their ids index.
#[derive(Debug, Default)]
pub(super) struct Compiler {
    pub actions: Vec<HostAction>,
}

impl HostActions for Compiler {
    fn compile(
        &mut self,
        kind: &str,
        config: &Map<String, Json>,
        path: &str,
        phase: Phase,
    ) -> Result<usize, PolicyError> {
        let c = Config {
            map: config,
            path,
            phase,
        };
        let action = match kind {
            "jwt-validation" => HostAction::Jwt(Box::new(JwtValidation::compile(&c)?)),
            "verify-webhook" => {
                c.only(&["provider", "secret", "enforce"])?;
                let provider = c
                    .string("provider")?
                    .ok_or_else(|| c.err("provider", "required: e.g. github, stripe, slack"))?;
                let secret = c.string("secret")?.unwrap_or_default();
                let verifier = WebhookVerification::compile(path, provider, secret)
                    .map_err(|e| PolicyError::new(e.field, e.reason))?;
                HostAction::Webhook {
                    verifier: Box::new(verifier),
                    enforce: c.bool("enforce", true)?,
                }
            }
            "compress-response" => {
                c.only(&["algorithms"])?;
                let mut codings = Vec::new();
                for (p, name) in c.list("algorithms")? {
                    let coding = Coding::from_token(name).ok_or_else(|| {
                        PolicyError::new(
                            &p,
                            format!("{name:?} is not one of gzip, deflate, br, zstd"),
                        )
                    })?;
                    if !codings.contains(&coding) {
                        codings.push(coding);
                    }
                }
                if codings.is_empty() {
                    codings = Coding::ALL.to_vec();
                }
                HostAction::Compress(codings)
            }
            "circuit-breaker" => {
                c.only(&[
                    "error_threshold",
                    "volume_threshold",
                    "window_duration",
                    "tripped_duration",
                    "num_buckets",
                    "enforce",
                ])?;
                let cfg = breaker_config(&c)?;
                let breaker = CircuitBreaker::new(path, cfg)
                    .map_err(|e| PolicyError::new(e.field, e.reason))?;
                HostAction::Breaker {
                    breaker: Box::new(breaker),
                    enforce: c.bool("enforce", true)?,
                }
            }
            "terminate-tls" => HostAction::TerminateTls(Box::new(terminate_tls(&c)?)),
            other => {
                return Err(PolicyError::new(
                    path,
                    format!("{other} has no host implementation"),
                ))
            }
        };
        self.actions.push(action);
        Ok(self.actions.len() - 1)
    }
}

fn breaker_config(c: &Config<'_>) -> Result<BreakerConfig, PolicyError> {
    let d = BreakerConfig::default();
    let duration = |key: &str, default: Duration| -> Result<Duration, PolicyError> {
        match c.string(key)? {
            None => Ok(default),
            Some(s) => gangway_policy::limits::parse_duration(s)
                .filter(|d| !d.is_zero())
                .ok_or_else(|| c.err(key, "must be a duration such as 10s or 1m")),
        }
    };
    let count = |key: &str, default: u32, max: u32| -> Result<u32, PolicyError> {
        match c.map.get(key) {
            None | Some(Json::Null) => Ok(default),
            Some(v) => v
                .as_u64()
                .filter(|n| (1..=u64::from(max)).contains(n))
                .map(|n| n as u32)
                .ok_or_else(|| c.err(key, &format!("must be a whole number, 1 to {max}"))),
        }
    };
    let error_threshold = match c.map.get("error_threshold") {
        None | Some(Json::Null) => d.error_threshold,
        Some(v) => v
            .as_f64()
            .filter(|f| (0.0..=1.0).contains(f))
            .ok_or_else(|| c.err("error_threshold", "must be a number from 0.0 to 1.0"))?,
    };
    Ok(BreakerConfig {
        tripped_duration: duration("tripped_duration", d.tripped_duration)?,
        rolling_window: duration("window_duration", d.rolling_window)?,
        num_buckets: count("num_buckets", d.num_buckets, 128)?,
        volume_threshold: count("volume_threshold", 10, 1_000_000)?,
        error_threshold,
    })
}

/// An answer a route module produced, as the policy engine carries it.
fn reply_of(r: EdgeResponse) -> Reply {
    Reply {
        status: r.status,
        headers: r
            .headers
            .into_iter()
            .map(|(n, v)| (n, String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .collect(),
        body: String::from_utf8_lossy(&r.body).into_owned(),
    }
}

/// What the request phase's host actions leave for later phases.
#[derive(Debug, Default)]
pub(super) struct Pending {
    /// Breakers that admitted the request, and whether as their probe.
    pub breakers: Vec<(usize, bool)>,
    /// verify-webhook actions waiting for the body.
    pub webhooks: Vec<usize>,
}

/// Runs host actions in the request phase (head).
pub(super) struct RequestHost<'a, 'r> {
    pub actions: &'a [HostAction],
    pub req: &'a RequestInfo<'r>,
    pub facts: &'a mut Facts,
    pub documents: &'a DocumentCache,
    pub pending: Pending,
    /// Why a host action refused the request ([`HostStep::Refuse`]).
    pub refusal: Option<Refusal>,
}

impl RequestHost<'_, '_> {
    fn refuse(&mut self, why: Refusal) -> Result<HostStep, String> {
        self.refusal = Some(why);
        Ok(HostStep::Refuse)
    }
}

impl HostRun for RequestHost<'_, '_> {
    fn run(&mut self, id: usize, scope: &mut Scope) -> Result<HostStep, String> {
        let Some(action) = self.actions.get(id) else {
            return Err(format!("host action {id} is not compiled"));
        };
        match action {
            HostAction::Jwt(jwt) => {
                let outcome = jwt.validate(self.req, self.documents);
                set_result(scope, "jwt_validation", crate::jwt::result(&outcome));
                match outcome {
                    Ok(_) => Ok(HostStep::Continue),
                    Err(TokenRefusal::NoKeys(e)) => Err(format!("jwt-validation: {e}")),
                    Err(why) => {
                        let challenge = match &why {
                            TokenRefusal::Missing => "Bearer".to_string(),
                            _ => "Bearer error=\"invalid_token\"".to_string(),
                        };
                        let detail = match why {
                            TokenRefusal::Missing => "no token".to_string(),
                            TokenRefusal::Invalid(e) | TokenRefusal::NoKeys(e) => e,
                        };
                        self.refuse(Refusal::JwtRefused { challenge, detail })
                    }
                }
            }
            HostAction::Webhook { verifier, enforce } => {
                let decision = &mut self.facts.decisions.webhook_verification;
                match verifier.check_head(self.req) {
                    Verdict::Pass | Verdict::Fetch(_) => self.pending.webhooks.push(id),
                    // A provider's challenge, answered by the edge.
                    Verdict::Answer(answer) => {
                        *decision = Some(Access::Allow);
                        return Ok(HostStep::Respond(reply_of(answer)));
                    }
                    Verdict::Refuse(why) => {
                        *decision = Some(Access::Block);
                        if *enforce {
                            return self.refuse(verifier.refusal(why));
                        }
                        set_result(scope, "verify_webhook", json!({ "verified": false }));
                    }
                }
                Ok(HostStep::Continue)
            }
            HostAction::Breaker { breaker, enforce } => {
                let admission = breaker.admit(Instant::now());
                let tripped = admission == Admission::Block;
                set_result(scope, "circuit_breaker", json!({ "tripped": tripped }));
                match admission {
                    Admission::Allow => self.pending.breakers.push((id, false)),
                    Admission::Probe => self.pending.breakers.push((id, true)),
                    Admission::Block if *enforce => return self.refuse(Refusal::CircuitOpen),
                    Admission::Block => {}
                }
                Ok(HostStep::Continue)
            }
            HostAction::Compress(_) => Err("compress-response runs only on responses".into()),
            HostAction::TerminateTls(_) => Err("terminate-tls runs only on connect".into()),
        }
    }
}

/// Runs host actions in `on_tcp_connect`: terminate-tls was applied when
/// the endpoint was bound, so it only lets the rules go on.
pub(super) struct ConnectHost<'a> {
    pub actions: &'a [HostAction],
}

impl HostRun for ConnectHost<'_> {
    fn run(&mut self, id: usize, _scope: &mut Scope) -> Result<HostStep, String> {
        match self.actions.get(id) {
            Some(HostAction::TerminateTls(_)) => Ok(HostStep::Continue),
            _ => Err(format!("host action {id} cannot run on connect")),
        }
    }
}

/// Runs host actions in the response phase: only compress-response runs
/// there, and it decides once the phase's header edits are known.
#[derive(Default)]
pub(super) struct ResponseHost<'a> {
    pub actions: &'a [HostAction],
    pub compress: Option<&'a [Coding]>,
}

impl HostRun for ResponseHost<'_> {
    fn run(&mut self, id: usize, _scope: &mut Scope) -> Result<HostStep, String> {
        match self.actions.get(id) {
            Some(HostAction::Compress(codings)) => {
                self.compress = Some(codings);
                Ok(HostStep::Continue)
            }
            _ => Err(format!("host action {id} cannot run on a response")),
        }
    }
}

/// verify-webhook on the whole body: `Err` is how the request stops (a
/// refusal, a provider's challenge answered, or a signing certificate to
/// fetch first).
pub(super) fn verify_body(
    actions: &[HostAction],
    webhooks: &[usize],
    req: &RequestInfo<'_>,
    body: &[u8],
    facts: &mut Facts,
    documents: &DocumentCache,
    scope: &mut Scope,
) -> Result<(), Flow> {
    for &id in webhooks {
        let Some(HostAction::Webhook { verifier, enforce }) = actions.get(id) else {
            continue;
        };
        let decision = &mut facts.decisions.webhook_verification;
        let verified = match verifier.check_body(req, body, documents) {
            Verdict::Pass => {
                *decision = Some(Access::Allow);
                true
            }
            // A provider's body challenge (zoom), answered by the edge.
            Verdict::Answer(answer) => {
                *decision = Some(Access::Allow);
                return Err(Flow::Respond(answer));
            }
            Verdict::Refuse(why) => {
                *decision = Some(Access::Block);
                if *enforce {
                    return Err(Flow::Refuse(verifier.refusal(why)));
                }
                false
            }
            Verdict::Fetch(f) => return Err(Flow::Fetch(f)),
        };
        set_result(scope, "verify_webhook", json!({ "verified": verified }));
    }
    Ok(())
}
