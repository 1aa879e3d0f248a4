//! The objects of the edge's events: what a finished HTTP exchange says
//! (`http_request_complete.v0`), with each module's typed decision turned
//! into the string events use, here and nowhere else.

use std::time::SystemTime;

use http::HeaderMap;
use serde_json::{json, Map, Value};

use crate::events::rfc3339;
use gangway_modules::chain::ConnInfo;
use gangway_modules::decisions::{Access, BreakerDecision, Decisions};

/// A finished HTTP exchange.
pub struct HttpExchange<'a> {
    pub conn: &'a ConnInfo,
    pub started: SystemTime,
    /// `http` or `https`.
    pub scheme: &'static str,
    pub host: &'a str,
    pub method: &'a http::Method,
    pub uri: &'a http::Uri,
    /// The URL the client asked for.
    pub url: String,
    pub request_headers: &'a HeaderMap,
    pub request_body_bytes: u64,
    /// The response written, if one was.
    pub response: Option<(u16, &'a HeaderMap)>,
    pub response_body_bytes: u64,
    pub decisions: Option<&'a Decisions>,
}

/// The `http_request_complete.v0` object.
pub fn http_request(x: &HttpExchange<'_>) -> Map<String, Value> {
    let mut obj = Map::new();
    let conn = x.conn;
    obj.insert(
        "conn".into(),
        json!({
            "client_ip": conn.client.map(|a| a.ip().to_string()),
            "server_ip": conn.server.map(|a| a.ip().to_string()),
            "server_name": conn.server_name,
            "server_port": conn.server.map(|a| a.port()),
            "start_ts": rfc3339(x.started),
        }),
    );
    let user_agent = x
        .request_headers
        .get(http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    obj.insert(
        "http".into(),
        json!({
            "request": {
                "method": x.method.as_str().to_ascii_lowercase(),
                "url": {
                    "raw": x.url,
                    "scheme": x.scheme,
                    "host": x.host,
                    "path": x.uri.path(),
                    "query": x.uri.query().unwrap_or(""),
                },
                "headers": headers_json(x.request_headers),
                "body_length": x.request_body_bytes,
                "user_agent": user_agent,
            },
            "response": {
                "status_code": x.response.map(|(status, _)| status),
                "headers": x.response.map(|(_, h)| headers_json(h)),
                "body_length": x.response_body_bytes,
            },
        }),
    );
    obj.insert("backend".into(), json!({ "connection_reused": false }));
    if let Some(tls) = &conn.tls {
        let mut t = json!({ "version": tls.version, "cipher_suite": tls.cipher_suite });
        if let Some(cert) = &tls.client_cert {
            t["client_cert"] = json!({
                "serial_number": cert.serial_number,
                "subject": { "cn": cert.subject_cn },
            });
        }
        obj.insert("tls".into(), t);
    }
    if let Some(d) = x.decisions {
        write_decisions(d, &mut obj);
    }
    obj
}

/// `allow` / `block`, as events spell them.
pub fn access(a: Access) -> &'static str {
    match a {
        Access::Allow => "allow",
        Access::Block => "block",
    }
}

fn breaker(d: BreakerDecision) -> &'static str {
    match d {
        BreakerDecision::Allow => "allow",
        BreakerDecision::Block => "block",
        BreakerDecision::AllowWhileOpen => "allow_while_open",
    }
}

/// Adds the decided module fields to an event object, nested by dots
/// (`ip_policy.decision` → `{"ip_policy":{"decision":..}}`).
pub fn write_decisions(d: &Decisions, obj: &mut Map<String, Value>) {
    let mut put = |path: &str, v: Value| insert_path(obj, path, v);
    if let Some(a) = d.ip_policy {
        put("ip_policy.decision", json!(access(a)));
    }
    if let Some(a) = d.basic_auth {
        put("basic_auth.decision", json!(access(a)));
    }
    if let Some(u) = &d.basic_auth_username {
        put("basic_auth.username", json!(u));
    }
    if let Some(b) = d.circuit_breaker {
        put("circuit_breaker.decision", json!(breaker(b)));
    }
    if let Some(c) = d.compression {
        let algorithm = c.coding.map_or("none", |c| c.token());
        put("compression.algorithm", json!(algorithm));
        put("compression.bytes_saved", json!(c.bytes_saved));
    }
    if let Some(a) = d.user_agent_filter {
        put("user_agent_filter.decision", json!(access(a)));
    }
    if let Some(a) = d.webhook_verification {
        put("webhook_verification.decision", json!(access(a)));
    }
    if !d.traffic_policy_logs.is_empty() {
        put("traffic_policy.logs", json!(d.traffic_policy_logs));
    }
}

/// Sets `a.b.c` in a JSON object, creating the intermediate objects.
fn insert_path(obj: &mut Map<String, Value>, path: &str, v: Value) {
    let mut parts = path.split('.').peekable();
    let mut cur = obj;
    while let Some(p) = parts.next() {
        if parts.peek().is_none() {
            cur.insert(p.to_string(), v);
            return;
        }
        let next = cur
            .entry(p.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
        if !next.is_object() {
            *next = Value::Object(Map::new());
        }
        let Value::Object(m) = next else { return };
        cur = m;
    }
}

fn headers_json(h: &HeaderMap) -> Value {
    let mut out = Map::new();
    for (name, value) in h {
        let v = Value::String(String::from_utf8_lossy(value.as_bytes()).into_owned());
        match out.get_mut(name.as_str()) {
            Some(Value::Array(list)) => list.push(v),
            _ => {
                out.insert(name.as_str().to_string(), Value::Array(vec![v]));
            }
        }
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use gangway_modules::compression::Coding;
    use gangway_modules::decisions::CompressionDecision;

    #[test]
    fn decisions_nest_by_dots() {
        let d = Decisions {
            ip_policy: Some(Access::Allow),
            compression: Some(CompressionDecision {
                coding: Some(Coding::Gzip),
                bytes_saved: 12,
            }),
            circuit_breaker: Some(BreakerDecision::AllowWhileOpen),
            ..Decisions::default()
        };
        let mut obj = Map::new();
        write_decisions(&d, &mut obj);
        assert_eq!(
            Value::Object(obj),
            json!({"ip_policy":{"decision":"allow"},
                   "circuit_breaker":{"decision":"allow_while_open"},
                   "compression":{"algorithm":"gzip","bytes_saved":12}})
        );
    }
}
