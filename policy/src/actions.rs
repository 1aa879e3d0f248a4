//! Actions and their config, validated field by field. String fields that
//! users interpolate are [`Template`]s.

use gangway_config::control::IpSet;
use http::HeaderName;
use regex::Regex;
use serde_json::{Map, Value as Json};

use crate::expr::{Expr, Phase, Template};
use crate::host::{HostActions, HOST_ACTIONS};
use crate::PolicyError;

/// Actions that answer the request (or end the connection) stop the phase.
#[derive(Debug)]
pub enum Action {
    Deny {
        status: u16,
    },
    CustomResponse {
        status: u16,
        body: Template,
        headers: Vec<(HeaderName, Template)>,
    },
    Redirect {
        from: Option<Regex>,
        to: Template,
        status: u16,
        headers: Vec<(HeaderName, Template)>,
    },
    UrlRewrite {
        from: Option<Regex>,
        to: Template,
    },
    AddHeaders {
        headers: Vec<(HeaderName, Template)>,
    },
    RemoveHeaders {
        names: Vec<HeaderName>,
    },
    /// The same allow/deny set as the ip_restriction module's.
    RestrictIps(IpSet),
    Log {
        metadata: Json,
    },
    SetVars {
        vars: Vec<(String, VarValue)>,
    },
    CloseConnection,
    /// Hand the request to an agent's internal endpoint (`*.internal`).
    ForwardInternal {
        url: Template,
        /// `on_error: continue`: when the endpoint is offline, go on with
        /// the next rule instead of answering with an error.
        continue_on_error: bool,
    },
    RateLimit(crate::limits::RateLimit),
    BasicAuth(crate::limits::BasicAuth),
    /// An action the edge runs ([`crate::host`]); `id` is its compiler's.
    Host {
        kind: &'static str,
        id: usize,
    },
}

/// A `set-vars` value: strings interpolate, anything else is kept as is.
#[derive(Debug)]
pub enum VarValue {
    Text(Template),
    Value(Json),
}

/// Every action type ngrok documents, and where it may run.
const KNOWN: &[(&str, &[Phase])] = &[
    (
        "deny",
        &[Phase::TcpConnect, Phase::HttpRequest, Phase::HttpResponse],
    ),
    (
        "custom-response",
        &[Phase::HttpRequest, Phase::HttpResponse],
    ),
    ("redirect", &[Phase::HttpRequest, Phase::HttpResponse]),
    ("url-rewrite", &[Phase::HttpRequest]),
    ("add-headers", &[Phase::HttpRequest, Phase::HttpResponse]),
    ("remove-headers", &[Phase::HttpRequest, Phase::HttpResponse]),
    ("restrict-ips", &[Phase::TcpConnect, Phase::HttpRequest]),
    (
        "log",
        &[Phase::TcpConnect, Phase::HttpRequest, Phase::HttpResponse],
    ),
    (
        "set-vars",
        &[Phase::TcpConnect, Phase::HttpRequest, Phase::HttpResponse],
    ),
    (
        "close-connection",
        &[Phase::TcpConnect, Phase::HttpRequest, Phase::HttpResponse],
    ),
    ("rate-limit", &[Phase::HttpRequest]),
    ("basic-auth", &[Phase::HttpRequest]),
    ("jwt-validation", &[Phase::HttpRequest]),
    ("verify-webhook", &[Phase::HttpRequest]),
    ("compress-response", &[Phase::HttpResponse]),
    ("circuit-breaker", &[Phase::HttpRequest]),
    ("forward-internal", &[Phase::HttpRequest]),
    ("terminate-tls", &[Phase::TcpConnect]),
    ("oauth", &[Phase::HttpRequest]),
    ("openid-connect", &[Phase::HttpRequest]),
];

impl Action {
    /// Whether the action ends the phase when it runs.
    pub fn terminates(&self) -> bool {
        matches!(
            self,
            Action::Deny { .. }
                | Action::CustomResponse { .. }
                | Action::Redirect { .. }
                | Action::CloseConnection
                | Action::ForwardInternal { .. }
        )
    }

    /// Parses `{type, config}` at `path` (`on_http_request[0].actions[1]`).
    pub fn parse(
        raw: &Json,
        path: &str,
        phase: Phase,
        host: &mut dyn HostActions,
    ) -> Result<Action, PolicyError> {
        let obj = raw
            .as_object()
            .ok_or_else(|| PolicyError::new(path, "must be an object with `type` and `config`"))?;
        only_keys(obj, path, &["type", "config"])?;
        let type_path = format!("{path}.type");
        let kind = obj
            .get("type")
            .and_then(Json::as_str)
            .ok_or_else(|| PolicyError::new(&type_path, "required: the action's type"))?;
        let Some((known_kind, phases)) = KNOWN.iter().find(|(k, _)| *k == kind) else {
            let known: Vec<&str> = KNOWN.iter().map(|(k, _)| *k).collect();
            return Err(PolicyError::new(
                type_path,
                format!("unknown action type {kind:?} (known: {})", known.join(", ")),
            ));
        };
        if !phases.contains(&phase) {
            return Err(PolicyError::new(
                type_path,
                format!("{kind} cannot run in {}", phase.name()),
            ));
        }
        let cfg_path = format!("{path}.config");
        let empty = Map::new();
        let cfg = match obj.get("config") {
            None | Some(Json::Null) => &empty,
            Some(Json::Object(m)) => m,
            Some(_) => return Err(PolicyError::new(cfg_path, "must be an object")),
        };
        if let Some(kind) = HOST_ACTIONS.iter().find(|k| **k == *known_kind) {
            let id = host.compile(kind, cfg, &cfg_path, phase)?;
            return Ok(Action::Host { kind, id });
        }
        let c = Config {
            map: cfg,
            path: &cfg_path,
            phase,
        };
        Ok(match kind {
            "deny" => {
                c.only(&["status_code"])?;
                Action::Deny {
                    status: c.status("status_code", 403)?,
                }
            }
            "custom-response" => {
                c.only(&["status_code", "body", "headers", "content"])?;
                let body = match c.map.get("body").or_else(|| c.map.get("content")) {
                    Some(_) if c.map.contains_key("body") => c.template("body")?,
                    Some(_) => c.template("content")?,
                    None => Template::compile("", &cfg_path, phase)?,
                };
                Action::CustomResponse {
                    status: c.status("status_code", 200)?,
                    body,
                    headers: c.headers("headers")?,
                }
            }
            "redirect" => {
                c.only(&["from", "to", "status_code", "headers"])?;
                Action::Redirect {
                    from: c.regex("from")?,
                    to: c.required_template("to")?,
                    status: c.status("status_code", 302)?,
                    headers: c.headers("headers")?,
                }
            }
            "url-rewrite" => {
                c.only(&["from", "to"])?;
                Action::UrlRewrite {
                    from: c.regex("from")?,
                    to: c.required_template("to")?,
                }
            }
            "add-headers" => {
                c.only(&["headers"])?;
                let headers = c.headers("headers")?;
                if headers.is_empty() {
                    return Err(c.err("headers", "required: at least one header"));
                }
                Action::AddHeaders { headers }
            }
            "remove-headers" => {
                c.only(&["headers"])?;
                let names = c.header_names("headers")?;
                if names.is_empty() {
                    return Err(c.err("headers", "required: at least one header name"));
                }
                Action::RemoveHeaders { names }
            }
            "restrict-ips" => {
                c.only(&["allow", "deny", "ip_policies", "enforce"])?;
                if c.map.contains_key("ip_policies") {
                    return Err(c.err(
                        "ip_policies",
                        "not supported by this edge yet; list the CIDRs in allow/deny",
                    ));
                }
                let (allow, deny) = (c.strings("allow")?, c.strings("deny")?);
                if allow.is_empty() && deny.is_empty() {
                    return Err(c.err("allow", "required: allow or deny CIDRs"));
                }
                let set = IpSet::from_cidrs(&allow, &deny).map_err(|e| {
                    let key = if e.list.starts_with("allow") { "allow" } else { "deny" };
                    PolicyError::new(
                        format!("{}[{}]", c.at(key), e.index),
                        format!("{:?} is not a CIDR", e.value.trim()),
                    )
                })?;
                Action::RestrictIps(set)
            }
            "log" => {
                c.only(&["metadata"])?;
                Action::Log {
                    metadata: c.map.get("metadata").cloned().unwrap_or(Json::Null),
                }
            }
            "set-vars" => {
                c.only(&["vars"])?;
                Action::SetVars { vars: c.vars()? }
            }
            "close-connection" => {
                c.only(&[])?;
                Action::CloseConnection
            }
            "forward-internal" => {
                c.only(&["url", "on_error", "binding"])?;
                let url = c.required_template("url")?;
                if let Some(literal) = url.literal() {
                    internal_host(literal).map_err(|e| c.err("url", &e))?;
                }
                let continue_on_error = match c.string("on_error")? {
                    None | Some("halt") => false,
                    Some("continue") => true,
                    Some(_) => return Err(c.err("on_error", "must be halt or continue")),
                };
                Action::ForwardInternal {
                    url,
                    continue_on_error,
                }
            }
            "rate-limit" => {
                c.only(&["name", "algorithm", "capacity", "rate", "bucket_key", "enforce"])?;
                if !matches!(c.string("algorithm")?, None | Some("sliding_window")) {
                    return Err(c.err("algorithm", "must be sliding_window"));
                }
                let capacity = c
                    .map
                    .get("capacity")
                    .and_then(Json::as_u64)
                    .filter(|n| (1..=1_000_000_000).contains(n))
                    .ok_or_else(|| c.err("capacity", "required: a count of requests, 1 or more"))?;
                let rate = c
                    .string("rate")?
                    .ok_or_else(|| c.err("rate", "required: a window such as 60s or 1m"))?;
                let window = crate::limits::parse_duration(rate)
                    .ok_or_else(|| c.err("rate", "must be a duration such as 500ms, 60s, 1m or 1h"))?;
                let keys = c
                    .list("bucket_key")?
                    .into_iter()
                    .map(|(path, src)| Expr::compile(src, &path, phase))
                    .collect::<Result<Vec<_>, _>>()?;
                Action::RateLimit(crate::limits::RateLimit::new(
                    c.string("name")?.unwrap_or_default(),
                    capacity,
                    window,
                    keys,
                    c.bool("enforce", true)?,
                ))
            }
            "basic-auth" => {
                c.only(&["credentials", "realm", "enforce"])?;
                let mut users = Vec::new();
                for (path, cred) in c.list("credentials")? {
                    let (user, pass) = cred
                        .split_once(':')
                        .filter(|(u, p)| !u.is_empty() && !p.is_empty())
                        .ok_or_else(|| PolicyError::new(&path, "must be user:password"))?;
                    users.push((user.to_string(), pass.to_string()));
                }
                if users.is_empty() {
                    return Err(c.err("credentials", "required: at least one user:password"));
                }
                let realm = c.string("realm")?.unwrap_or("ngrok").to_string();
                if realm.contains('"') || realm.chars().any(char::is_control) {
                    return Err(c.err("realm", "must not contain quotes or control characters"));
                }
                Action::BasicAuth(crate::limits::BasicAuth {
                    users,
                    realm,
                    enforce: c.bool("enforce", true)?,
                })
            }
            other => {
                return Err(PolicyError::new(
                    type_path,
                    format!("{other} is not supported by this edge yet; the policy was refused rather than run without it"),
                ))
            }
        })
    }
}

/// The host of a `forward-internal` URL, which must name an internal
/// endpoint (`https://api.internal`).
pub fn internal_host(url: &str) -> Result<String, String> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| format!("{url:?} is not an http:// or https:// URL"))?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = authority
        .rsplit_once(':')
        .filter(|(_, port)| port.parse::<u16>().is_ok())
        .map_or(authority, |(h, _)| h)
        .trim_end_matches('.')
        .to_ascii_lowercase();
    if !host.ends_with(".internal") || host.len() <= ".internal".len() {
        return Err(format!(
            "{url:?} is not an internal endpoint (its host must end in .internal)"
        ));
    }
    Ok(host)
}

fn only_keys(obj: &Map<String, Json>, path: &str, allowed: &[&str]) -> Result<(), PolicyError> {
    match obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(PolicyError::new(
            format!("{path}.{k}"),
            if allowed.is_empty() {
                "unknown field (this action takes no config)".to_string()
            } else {
                format!("unknown field (known: {})", allowed.join(", "))
            },
        )),
        None => Ok(()),
    }
}

/// One action's config object and its path: the field readers every
/// action (and every host action) validates with.
pub struct Config<'a> {
    pub map: &'a Map<String, Json>,
    pub path: &'a str,
    pub phase: Phase,
}

impl Config<'_> {
    pub fn at(&self, key: &str) -> String {
        format!("{}.{key}", self.path)
    }

    pub fn err(&self, key: &str, msg: &str) -> PolicyError {
        PolicyError::new(self.at(key), msg)
    }

    pub fn only(&self, keys: &[&str]) -> Result<(), PolicyError> {
        only_keys(self.map, self.path, keys)
    }

    pub fn status(&self, key: &str, default: u16) -> Result<u16, PolicyError> {
        match self.map.get(key) {
            None => Ok(default),
            Some(v) => v
                .as_u64()
                .and_then(|n| u16::try_from(n).ok())
                .filter(|n| (100..=599).contains(n))
                .ok_or_else(|| self.err(key, "must be an HTTP status code, 100-599")),
        }
    }

    pub fn string(&self, key: &str) -> Result<Option<&str>, PolicyError> {
        match self.map.get(key) {
            None | Some(Json::Null) => Ok(None),
            Some(Json::String(s)) => Ok(Some(s)),
            Some(_) => Err(self.err(key, "must be a string")),
        }
    }

    pub fn bool(&self, key: &str, default: bool) -> Result<bool, PolicyError> {
        match self.map.get(key) {
            None | Some(Json::Null) => Ok(default),
            Some(Json::Bool(b)) => Ok(*b),
            Some(_) => Err(self.err(key, "must be true or false")),
        }
    }

    pub fn template(&self, key: &str) -> Result<Template, PolicyError> {
        let s = self.string(key)?.unwrap_or_default();
        Template::compile(s, &self.at(key), self.phase)
    }

    pub fn required_template(&self, key: &str) -> Result<Template, PolicyError> {
        if self.string(key)?.is_none() {
            return Err(self.err(key, "required"));
        }
        self.template(key)
    }

    pub fn regex(&self, key: &str) -> Result<Option<Regex>, PolicyError> {
        self.string(key)?
            .map(|s| Regex::new(s).map_err(|e| self.err(key, &format!("not a valid regex: {e}"))))
            .transpose()
    }

    pub fn headers(&self, key: &str) -> Result<Vec<(HeaderName, Template)>, PolicyError> {
        let Some(v) = self.map.get(key) else {
            return Ok(Vec::new());
        };
        let obj = v
            .as_object()
            .ok_or_else(|| self.err(key, "must be an object of name: value"))?;
        obj.iter()
            .map(|(name, value)| {
                let path = format!("{}.{name}", self.at(key));
                let name = HeaderName::from_bytes(name.as_bytes())
                    .map_err(|_| PolicyError::new(&path, "not a valid header name"))?;
                let value = value
                    .as_str()
                    .ok_or_else(|| PolicyError::new(&path, "must be a string"))?;
                Ok((name, Template::compile(value, &path, self.phase)?))
            })
            .collect()
    }

    pub fn list(&self, key: &str) -> Result<Vec<(String, &str)>, PolicyError> {
        match self.map.get(key) {
            None | Some(Json::Null) => Ok(Vec::new()),
            Some(Json::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    let path = format!("{}[{i}]", self.at(key));
                    v.as_str()
                        .map(|s| (path.clone(), s))
                        .ok_or_else(|| PolicyError::new(path, "must be a string"))
                })
                .collect(),
            Some(_) => Err(self.err(key, "must be a list of strings")),
        }
    }

    pub fn header_names(&self, key: &str) -> Result<Vec<HeaderName>, PolicyError> {
        self.list(key)?
            .into_iter()
            .map(|(path, s)| {
                HeaderName::from_bytes(s.as_bytes())
                    .map_err(|_| PolicyError::new(path, "not a valid header name"))
            })
            .collect()
    }

    /// A list of strings, owned.
    pub fn strings(&self, key: &str) -> Result<Vec<String>, PolicyError> {
        Ok(self
            .list(key)?
            .into_iter()
            .map(|(_, s)| s.to_string())
            .collect())
    }

    /// `vars`: a list of one-key objects (ngrok's shape) or one object.
    fn vars(&self) -> Result<Vec<(String, VarValue)>, PolicyError> {
        let mut out = Vec::new();
        match self.map.get("vars") {
            Some(Json::Array(items)) => {
                for (i, item) in items.iter().enumerate() {
                    let obj = item.as_object().ok_or_else(|| {
                        PolicyError::new(
                            format!("{}[{i}]", self.at("vars")),
                            "must be {name: value}",
                        )
                    })?;
                    out.extend(obj.iter().map(|(k, v)| (k.clone(), v.clone())));
                }
            }
            Some(Json::Object(obj)) => out.extend(obj.iter().map(|(k, v)| (k.clone(), v.clone()))),
            _ => return Err(self.err("vars", "required: a list of {name: value}")),
        }
        if out.is_empty() {
            return Err(self.err("vars", "required: at least one variable"));
        }
        out.into_iter()
            .map(|(name, value)| {
                let value = match value {
                    Json::String(s) => VarValue::Text(Template::compile(
                        &s,
                        &format!("{}.{name}", self.at("vars")),
                        self.phase,
                    )?),
                    other => VarValue::Value(other),
                };
                Ok((name, value))
            })
            .collect()
    }
}
