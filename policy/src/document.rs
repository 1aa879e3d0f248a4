//! A policy document (JSON or YAML) parsed into phases of compiled rules.
//! Every error names its path, e.g.
//! `on_http_request[1].actions[0].config.status_code`.

use serde_json::Value as Json;

use crate::actions::Action;
use crate::expr::{Expr, Phase};
use crate::host::{HostActions, NoHost};
use crate::PolicyError;

/// The largest document accepted.
pub const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;

#[derive(Debug, Default)]
pub struct Policy {
    pub on_tcp_connect: Vec<Rule>,
    pub on_http_request: Vec<Rule>,
    pub on_http_response: Vec<Rule>,
}

#[derive(Debug)]
pub struct Rule {
    pub name: String,
    /// ANDed; no expressions means always.
    pub expressions: Vec<Expr>,
    pub actions: Vec<Action>,
}

impl Policy {
    /// Parses a JSON or YAML document (YAML is a superset of JSON, but
    /// JSON errors read better, so JSON is tried first when it looks like
    /// JSON).
    pub fn parse(text: &str) -> Result<Policy, PolicyError> {
        Self::parse_with(text, &mut NoHost)
    }

    /// [`Policy::parse`] with `host` compiling the actions the edge runs.
    pub fn parse_with(text: &str, host: &mut dyn HostActions) -> Result<Policy, PolicyError> {
        if text.len() > MAX_DOCUMENT_BYTES {
            return Err(PolicyError::new(
                "",
                format!("the document is larger than {MAX_DOCUMENT_BYTES} bytes"),
            ));
        }
        let trimmed = text.trim_start();
        let doc: Json = if trimmed.starts_with('{') {
            serde_json::from_str(text)
                .map_err(|e| PolicyError::new("", format!("not valid JSON: {e}")))?
        } else {
            yaml_serde::from_str(text)
                .map_err(|e| PolicyError::new("", format!("not valid YAML: {e}")))?
        };
        Self::from_json(&doc, host)
    }

    pub fn from_json(doc: &Json, host: &mut dyn HostActions) -> Result<Policy, PolicyError> {
        let legacy;
        let doc = if is_pascal_case(doc) {
            legacy = lower_pascal_keys(doc, 0);
            &legacy
        } else {
            doc
        };
        let obj = match doc {
            Json::Object(o) => o,
            // An empty YAML document.
            Json::Null => return Ok(Policy::default()),
            _ => return Err(PolicyError::new("", "must be an object of phases")),
        };
        const PHASES: [&str; 5] = [
            "on_tcp_connect",
            "on_http_request",
            "on_http_response",
            "inbound",
            "outbound",
        ];
        if let Some(k) = obj.keys().find(|k| !PHASES.contains(&k.as_str())) {
            return Err(PolicyError::new(
                k.as_str(),
                format!("unknown phase (known: {})", PHASES.join(", ")),
            ));
        }
        for (new, old) in [
            ("on_http_request", "inbound"),
            ("on_http_response", "outbound"),
        ] {
            if obj.contains_key(new) && obj.contains_key(old) {
                return Err(PolicyError::new(
                    old,
                    format!("{old} is the legacy name of {new}; use one of them"),
                ));
            }
        }
        let mut phase = |key: &str, legacy: Option<&str>, phase: Phase| {
            let (name, raw) = match (
                obj.get(key),
                legacy.and_then(|l| obj.get(l).map(|v| (l, v))),
            ) {
                (Some(v), _) => (key, v),
                (None, Some((l, v))) => (l, v),
                (None, None) => return Ok(Vec::new()),
            };
            rules(raw, name, phase, host)
        };
        Ok(Policy {
            on_tcp_connect: phase("on_tcp_connect", None, Phase::TcpConnect)?,
            on_http_request: phase("on_http_request", Some("inbound"), Phase::HttpRequest)?,
            on_http_response: phase("on_http_response", Some("outbound"), Phase::HttpResponse)?,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.on_tcp_connect.is_empty()
            && self.on_http_request.is_empty()
            && self.on_http_response.is_empty()
    }
}

/// The ngrok Rust SDK's deprecated `policy()` sends the Go agent's
/// policy object: `{"Inbound":[{"Name","Expressions","Actions":[{"Type","Config"}]}]}`.
fn is_pascal_case(doc: &Json) -> bool {
    doc.as_object()
        .is_some_and(|o| o.contains_key("Inbound") || o.contains_key("Outbound"))
}

/// Lowercases the keys of the document, its rules and its actions (three
/// levels of objects; an action's config is the user's and kept as is).
fn lower_pascal_keys(v: &Json, depth: usize) -> Json {
    match v {
        Json::Object(o) if depth < 3 => Json::Object(
            o.iter()
                .map(|(k, v)| {
                    let key = match k.as_str() {
                        "Inbound" | "Outbound" | "Name" | "Expressions" | "Actions" | "Type"
                        | "Config" => k.to_ascii_lowercase(),
                        _ => k.clone(),
                    };
                    let next = if key == "config" || key == "expressions" {
                        v.clone()
                    } else {
                        lower_pascal_keys(v, depth + 1)
                    };
                    (key, next)
                })
                .collect(),
        ),
        Json::Array(list) => {
            Json::Array(list.iter().map(|x| lower_pascal_keys(x, depth)).collect())
        }
        other => other.clone(),
    }
}

fn rules(
    raw: &Json,
    path: &str,
    phase: Phase,
    host: &mut dyn HostActions,
) -> Result<Vec<Rule>, PolicyError> {
    let list = match raw {
        Json::Array(l) => l,
        Json::Null => return Ok(Vec::new()),
        _ => return Err(PolicyError::new(path, "must be a list of rules")),
    };
    list.iter()
        .enumerate()
        .map(|(i, r)| rule(r, &format!("{path}[{i}]"), phase, host))
        .collect()
}

fn rule(
    raw: &Json,
    path: &str,
    phase: Phase,
    host: &mut dyn HostActions,
) -> Result<Rule, PolicyError> {
    let obj = raw
        .as_object()
        .ok_or_else(|| PolicyError::new(path, "must be an object with expressions and actions"))?;
    if let Some(k) = obj
        .keys()
        .find(|k| !["name", "expressions", "actions"].contains(&k.as_str()))
    {
        return Err(PolicyError::new(
            format!("{path}.{k}"),
            "unknown field (known: name, expressions, actions)",
        ));
    }
    let name = match obj.get("name") {
        None | Some(Json::Null) => String::new(),
        Some(Json::String(s)) => s.clone(),
        Some(_) => return Err(PolicyError::new(format!("{path}.name"), "must be a string")),
    };
    let expressions = match obj.get("expressions") {
        None | Some(Json::Null) => Vec::new(),
        Some(Json::Array(list)) => list
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let p = format!("{path}.expressions[{i}]");
                let src = e
                    .as_str()
                    .ok_or_else(|| PolicyError::new(&p, "must be a CEL expression string"))?;
                Expr::compile(src, &p, phase)
            })
            .collect::<Result<_, _>>()?,
        Some(_) => {
            return Err(PolicyError::new(
                format!("{path}.expressions"),
                "must be a list of CEL expressions",
            ))
        }
    };
    let actions = match obj.get("actions") {
        Some(Json::Array(list)) if !list.is_empty() => list
            .iter()
            .enumerate()
            .map(|(i, a)| Action::parse(a, &format!("{path}.actions[{i}]"), phase, host))
            .collect::<Result<_, _>>()?,
        _ => {
            return Err(PolicyError::new(
                format!("{path}.actions"),
                "required: a list of at least one action",
            ))
        }
    };
    Ok(Rule {
        name,
        expressions,
        actions,
    })
}
