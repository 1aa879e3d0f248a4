//! What each module decided about one request: the module fields of the
//! `http_request_complete.v0` event.

use serde_json::{json, Map, Value};

/// `allow` / `block`, as events spell them.
pub const ALLOW: &str = "allow";
pub const BLOCK: &str = "block";

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decisions {
    pub ip_policy: Option<&'static str>,
    pub basic_auth: Option<&'static str>,
    pub basic_auth_username: Option<String>,
    /// `allow`, `block` or `allow_while_open`.
    pub circuit_breaker: Option<&'static str>,
    /// `gzip`, `deflate` or `none` (set whenever compression is on).
    pub compression_algorithm: Option<&'static str>,
    pub compression_bytes_saved: Option<i64>,
    pub user_agent_filter: Option<&'static str>,
    pub webhook_verification: Option<&'static str>,
    /// Traffic Policy `log` actions' entries, in the order they ran.
    pub traffic_policy_logs: Vec<Value>,
}

impl Decisions {
    /// Adds the decided fields to an event object, nested by dots
    /// (`ip_policy.decision` → `{"ip_policy":{"decision":..}}`).
    pub fn write_into(&self, obj: &mut Map<String, Value>) {
        let mut put = |path: &str, v: Value| insert_path(obj, path, v);
        if let Some(d) = self.ip_policy {
            put("ip_policy.decision", json!(d));
        }
        if let Some(d) = self.basic_auth {
            put("basic_auth.decision", json!(d));
        }
        if let Some(u) = &self.basic_auth_username {
            put("basic_auth.username", json!(u));
        }
        if let Some(d) = self.circuit_breaker {
            put("circuit_breaker.decision", json!(d));
        }
        if let Some(a) = self.compression_algorithm {
            put("compression.algorithm", json!(a));
            put(
                "compression.bytes_saved",
                json!(self.compression_bytes_saved.unwrap_or(0)),
            );
        }
        if let Some(d) = self.user_agent_filter {
            put("user_agent_filter.decision", json!(d));
        }
        if let Some(d) = self.webhook_verification {
            put("webhook_verification.decision", json!(d));
        }
        if !self.traffic_policy_logs.is_empty() {
            put("traffic_policy.logs", json!(self.traffic_policy_logs));
        }
    }
}

/// Sets `a.b.c` in a JSON object, creating the intermediate objects.
pub fn insert_path(obj: &mut Map<String, Value>, path: &str, v: Value) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nests_by_dots() {
        let d = Decisions {
            ip_policy: Some(ALLOW),
            compression_algorithm: Some("gzip"),
            compression_bytes_saved: Some(12),
            ..Decisions::default()
        };
        let mut obj = Map::new();
        d.write_into(&mut obj);
        assert_eq!(
            Value::Object(obj),
            json!({"ip_policy":{"decision":"allow"},"compression":{"algorithm":"gzip","bytes_saved":12}})
        );
    }
}
