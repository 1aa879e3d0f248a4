//! One phase of a policy run against one request: rules in order, a rule's
//! expressions ANDed, its actions in order, a terminating action ending the
//! phase. The edge builds the [`Scope`] and applies the [`HttpOutcome`].

use std::net::IpAddr;
use std::time::Instant;

use http::HeaderName;
use serde_json::{json, Value as Json};

use crate::actions::{Action, VarValue};
use crate::expr::Scope;
use crate::host::{HostRun, HostStep, NoHost};
use crate::Rule;

/// A response the policy chose to send (deny, custom-response, redirect,
/// rate-limit, basic-auth).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(HeaderName, String)>,
    pub body: String,
}

/// Why a phase refused the request; the edge answers each with its code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// restrict-ips: the client's address is not allowed.
    IpBlocked,
    /// An expression, template or host action failed while it ran.
    Failed(String),
    /// A host action refused; the host knows why.
    Host,
}

/// What a phase decided.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct HttpOutcome {
    /// Answer with this instead of (or, in the response phase, in place of)
    /// the upstream's response.
    pub respond: Option<Reply>,
    /// Refuse the request (the edge answers with an error code).
    pub refused: Option<Refused>,
    /// Close the connection without an answer.
    pub close: bool,
    /// Header edits for the request going upstream (request phase) or the
    /// response going to the client (response phase): removals first.
    pub remove_headers: Vec<HeaderName>,
    pub add_headers: Vec<(HeaderName, String)>,
    /// url-rewrite: the new path and query for the upstream request.
    pub rewrite: Option<String>,
    /// `log` actions' metadata, for the event's `traffic_policy.logs`.
    pub logs: Vec<Json>,
    /// forward-internal: hand the request to this internal endpoint.
    pub forward: Option<Forward>,
}

/// Where forward-internal sends the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forward {
    /// `api.internal`
    pub host: String,
    /// When the endpoint is offline: serve as if the action had not run
    /// (`on_error: continue`) instead of answering 502.
    pub continue_on_error: bool,
}

/// Runs `rules` against `scope`. `client_ip` is the connection's source
/// address (restrict-ips never trusts headers).
pub fn run(rules: &[Rule], scope: &mut Scope, client_ip: Option<IpAddr>) -> HttpOutcome {
    run_with(rules, scope, client_ip, &mut NoHost)
}

/// [`run`] with `host` running the edge's actions ([`crate::host`]).
pub fn run_with(
    rules: &[Rule],
    scope: &mut Scope,
    client_ip: Option<IpAddr>,
    host: &mut dyn HostRun,
) -> HttpOutcome {
    let mut out = HttpOutcome::default();
    if let Err(e) = run_rules(rules, scope, client_ip, host, &mut out) {
        out.logs.push(json!({ "error": e }));
        out.respond = None;
        out.refused = Some(Refused::Failed(e));
    }
    out
}

fn run_rules(
    rules: &[Rule],
    scope: &mut Scope,
    client_ip: Option<IpAddr>,
    host: &mut dyn HostRun,
    out: &mut HttpOutcome,
) -> Result<(), String> {
    for rule in rules {
        let mut applies = true;
        for e in &rule.expressions {
            if !e.matches(scope)? {
                applies = false;
                break;
            }
        }
        if !applies {
            continue;
        }
        for action in &rule.actions {
            if apply(action, rule, scope, client_ip, host, out)? {
                return Ok(());
            }
        }
    }
    Ok(())
}

/// Applies one action; true when it ended the phase.
fn apply(
    action: &Action,
    rule: &Rule,
    scope: &mut Scope,
    client_ip: Option<IpAddr>,
    host: &mut dyn HostRun,
    out: &mut HttpOutcome,
) -> Result<bool, String> {
    let render = |t: &crate::expr::Template, scope: &Scope| t.render(scope);
    match action {
        Action::Deny { status } => {
            out.respond = Some(Reply {
                status: *status,
                headers: Vec::new(),
                body: String::new(),
            });
        }
        Action::CustomResponse {
            status,
            body,
            headers,
        } => {
            out.respond = Some(Reply {
                status: *status,
                headers: rendered(headers, scope)?,
                body: render(body, scope)?,
            });
        }
        Action::Redirect {
            from,
            to,
            status,
            headers,
        } => {
            let url = current_url(scope);
            let to = render(to, scope)?;
            let location = match from {
                Some(re) if !re.is_match(&url) => return Ok(false),
                Some(re) => re.replace(&url, to.as_str()).into_owned(),
                None => to,
            };
            let mut h = rendered(headers, scope)?;
            h.push((http::header::LOCATION, location));
            out.respond = Some(Reply {
                status: *status,
                headers: h,
                body: String::new(),
            });
        }
        Action::UrlRewrite { from, to } => {
            let url = current_url(scope);
            let to = render(to, scope)?;
            let new = match from {
                Some(re) if !re.is_match(&url) => return Ok(false),
                Some(re) => re.replace(&url, to.as_str()).into_owned(),
                None => to,
            };
            let path = path_of(&new);
            set_path(scope, &path);
            out.rewrite = Some(path);
        }
        Action::AddHeaders { headers } => out.add_headers.extend(rendered(headers, scope)?),
        Action::RemoveHeaders { names } => out.remove_headers.extend(names.iter().cloned()),
        Action::RestrictIps(set) => {
            if !set.admits(client_ip) {
                out.refused = Some(Refused::IpBlocked);
                return Ok(true);
            }
        }
        Action::Log { metadata } => {
            let mut entry = json!({ "metadata": metadata });
            if !rule.name.is_empty() {
                entry["rule"] = json!(rule.name);
            }
            out.logs.push(entry);
        }
        Action::SetVars { vars } => {
            for (name, value) in vars {
                let v = match value {
                    VarValue::Text(t) => Json::String(t.render(scope)?),
                    VarValue::Value(v) => v.clone(),
                };
                scope.set_var(name, v);
            }
        }
        Action::CloseConnection => out.close = true,
        Action::ForwardInternal {
            url,
            continue_on_error,
        } => {
            let url = render(url, scope)?;
            let host = crate::actions::internal_host(&url)?;
            out.forward = Some(Forward {
                host,
                continue_on_error: *continue_on_error,
            });
        }
        Action::RateLimit(limit) => {
            let bucket = limit.bucket(scope)?;
            let limited = limit.check(&bucket, Instant::now());
            set_result(
                scope,
                "rate_limit",
                json!({ "name": limit.name, "bucket_key": bucket, "limited": limited.is_some() }),
            );
            if let Some(l) = limited.filter(|_| limit.enforce) {
                out.respond = Some(Reply {
                    status: 429,
                    headers: vec![(http::header::RETRY_AFTER, l.retry_after.to_string())],
                    body: "Too many requests: the endpoint's rate limit was reached.\n".into(),
                });
                return Ok(true);
            }
        }
        Action::BasicAuth(auth) => {
            let header = scope
                .req_headers
                .get("authorization")
                .and_then(|v| v.first())
                .cloned();
            let user = auth.user(header.as_deref());
            set_result(
                scope,
                "basic_auth",
                json!({ "authorized": user.is_some(), "username": user.clone().unwrap_or_default() }),
            );
            match user {
                // The app never sees credentials the edge checked.
                Some(_) => out.remove_headers.push(http::header::AUTHORIZATION),
                None if auth.enforce => {
                    out.respond = Some(Reply {
                        status: 401,
                        headers: vec![(
                            http::header::WWW_AUTHENTICATE,
                            format!("Basic realm=\"{}\"", auth.realm),
                        )],
                        body: "Authentication required.\n".into(),
                    });
                    return Ok(true);
                }
                None => {}
            }
        }
        Action::Host { id, .. } => match host.run(*id, scope)? {
            HostStep::Continue => {}
            HostStep::Respond(reply) => {
                out.respond = Some(reply);
                return Ok(true);
            }
            HostStep::Refuse => {
                out.refused = Some(Refused::Host);
                return Ok(true);
            }
        },
    }
    Ok(action.terminates())
}

/// Sets `actions.ngrok.<action>` for later rules.
pub fn set_result(scope: &mut Scope, action: &str, value: Json) {
    let roots = scope.roots_mut();
    let actions = roots
        .entry("actions")
        .or_insert_with(|| json!({ "ngrok": {} }));
    if !actions.get("ngrok").is_some_and(Json::is_object) {
        *actions = json!({ "ngrok": {} });
    }
    if let Some(Json::Object(ngrok)) = actions.get_mut("ngrok") {
        ngrok.insert(action.to_string(), value);
    }
}

fn rendered(
    headers: &[(HeaderName, crate::expr::Template)],
    scope: &Scope,
) -> Result<Vec<(HeaderName, String)>, String> {
    headers
        .iter()
        .map(|(n, t)| Ok((n.clone(), t.render(scope)?)))
        .collect()
}

/// `req.url.raw` as the edge set it (scheme, host, path and query).
fn current_url(scope: &Scope) -> String {
    scope
        .roots()
        .get("req")
        .and_then(|r| r.pointer("/url/raw"))
        .and_then(Json::as_str)
        .unwrap_or_default()
        .to_string()
}

/// The path and query of a rewrite target, absolute or not.
fn path_of(target: &str) -> String {
    let rest = match target.split_once("://") {
        Some((_, after)) => after.find('/').map_or("/", |i| &after[i..]),
        None => target,
    };
    if rest.starts_with('/') {
        rest.to_string()
    } else {
        format!("/{rest}")
    }
}

/// Later rules see the rewritten URL.
fn set_path(scope: &mut Scope, path_and_query: &str) {
    let Some(Json::Object(req)) = scope.roots_mut().get_mut("req") else {
        return;
    };
    let Some(Json::Object(url)) = req.get_mut("url") else {
        return;
    };
    let (path, query) = path_and_query
        .split_once('?')
        .unwrap_or((path_and_query, ""));
    let origin = url
        .get("raw")
        .and_then(Json::as_str)
        .and_then(|raw| {
            raw.split_once("://")
                .map(|(s, rest)| (s.to_string(), rest.to_string()))
        })
        .map(|(scheme, rest)| {
            let host = rest.split('/').next().unwrap_or_default().to_string();
            format!("{scheme}://{host}")
        })
        .unwrap_or_default();
    url.insert("path".into(), json!(path));
    url.insert("query".into(), json!(query));
    url.insert("raw".into(), json!(format!("{origin}{path_and_query}")));
}
