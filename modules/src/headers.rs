//! `request_headers` / `response_headers`: remove, then add. Adding
//! appends (except `host`, which replaces); names are lowercased; values
//! may use `${...}` interpolation.

use std::collections::BTreeMap;

use http::{HeaderName, HeaderValue};

use crate::chain::{Cx, Facts, HeaderEdits, RequestInfo, ResponseFlow, RouteModule, Stage};
use crate::interpolate::Template;
use crate::ConfigError;

/// ngrok's limit on each list.
pub const MAX_HEADERS: usize = 5;

/// Which head a rewrite applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Request,
    Response,
}

/// Wire config: headers to add (name, value) and to remove.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderRewriteConfig {
    pub add: Vec<(String, String)>,
    pub remove: Vec<String>,
}

impl HeaderRewriteConfig {
    /// The API's shape: a name → value map.
    pub fn from_map(add: &BTreeMap<String, String>, remove: &[String]) -> Self {
        HeaderRewriteConfig {
            add: add.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            remove: remove.to_vec(),
        }
    }

    /// The agent's shape: `name:value` strings; errors name `path`.
    pub fn from_pairs(path: &str, add: &[String], remove: &[String]) -> Result<Self, ConfigError> {
        let mut pairs = Vec::new();
        for (i, entry) in add.iter().enumerate() {
            let (name, value) = entry.split_once(':').ok_or_else(|| {
                ConfigError::new(format!("{path}.add[{i}]"), "must be \"name:value\"")
            })?;
            pairs.push((name.trim().to_string(), value.trim().to_string()));
        }
        Ok(HeaderRewriteConfig {
            add: pairs,
            remove: remove.to_vec(),
        })
    }

    /// `path` prefixes error paths (`request_headers`).
    pub fn compile(&self, path: &str, direction: Direction) -> Result<HeaderRewrite, ConfigError> {
        HeaderRewrite::compile(path, direction, &self.add, &self.remove)
    }
}

#[derive(Debug, Clone)]
pub struct HeaderRewrite {
    direction: Direction,
    remove: Vec<HeaderName>,
    add: Vec<(HeaderName, Template)>,
}

impl HeaderRewrite {
    /// `field` prefixes error paths (`request_headers`). `add` pairs are
    /// (name, value) as given; names are checked and lowercased here.
    pub fn compile(
        field: &str,
        direction: Direction,
        add: &[(String, String)],
        remove: &[String],
    ) -> Result<Self, ConfigError> {
        if add.len() > MAX_HEADERS {
            return Err(ConfigError::new(
                format!("{field}.add"),
                format!("at most {MAX_HEADERS} headers can be added"),
            ));
        }
        if remove.len() > MAX_HEADERS {
            return Err(ConfigError::new(
                format!("{field}.remove"),
                format!("at most {MAX_HEADERS} headers can be removed"),
            ));
        }
        let mut adds = Vec::new();
        for (name, value) in add {
            let f = format!("{field}.add.{name}");
            let header = header_name(&f, name)?;
            if header == http::header::USER_AGENT {
                return Err(ConfigError::new(f, "user-agent cannot be added"));
            }
            if value.contains(['\r', '\n', '\0']) {
                return Err(ConfigError::new(f, "not a valid header value"));
            }
            let template = Template::parse(value).map_err(|e| ConfigError::new(&f, e))?;
            if let Some(lit) = template.as_literal() {
                HeaderValue::from_str(lit)
                    .map_err(|_| ConfigError::new(&f, "not a valid header value"))?;
            }
            adds.push((header, template));
        }
        let mut removes = Vec::new();
        for (i, name) in remove.iter().enumerate() {
            let f = format!("{field}.remove[{i}]");
            let header = header_name(&f, name)?;
            if header == http::header::USER_AGENT {
                return Err(ConfigError::new(f, "user-agent cannot be removed"));
            }
            if header == http::header::HOST && !adds.iter().any(|(n, _)| n == http::header::HOST) {
                return Err(ConfigError::new(
                    f,
                    "host can be removed only if it is added back",
                ));
            }
            removes.push(header);
        }
        Ok(HeaderRewrite {
            direction,
            remove: removes,
            add: adds,
        })
    }

    fn apply(&self, req: &RequestInfo<'_>, head: &mut dyn HeaderEdits, facts: &Facts) {
        for name in &self.remove {
            head.remove(name);
        }
        for (name, template) in &self.add {
            // An interpolated request value that is not a valid header
            // value (it cannot be, from a parsed request) is skipped.
            let Ok(value) = HeaderValue::from_str(&template.render(req, facts)) else {
                continue;
            };
            if name == http::header::HOST {
                head.insert(name.clone(), value);
            } else {
                head.append(name.clone(), value);
            }
        }
    }
}

fn header_name(field: &str, name: &str) -> Result<HeaderName, ConfigError> {
    HeaderName::from_bytes(name.trim().to_ascii_lowercase().as_bytes())
        .map_err(|_| ConfigError::new(field, "not a valid header name"))
}

impl RouteModule for HeaderRewrite {
    type State = ();

    fn stage(&self) -> Stage {
        match self.direction {
            Direction::Request => Stage::RequestHeaders,
            Direction::Response => Stage::ResponseHeaders,
        }
    }

    fn upstream_request(&self, req: &RequestInfo<'_>, head: &mut dyn HeaderEdits, cx: Cx<'_, ()>) {
        if self.direction == Direction::Request {
            self.apply(req, head, cx.facts);
        }
    }

    fn on_response(
        &self,
        req: &RequestInfo<'_>,
        _status: u16,
        out: &mut dyn HeaderEdits,
        cx: Cx<'_, ()>,
    ) -> ResponseFlow {
        if self.direction == Direction::Response {
            self.apply(req, out, cx.facts);
        }
        ResponseFlow::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::{ConnInfo, TestCx};
    use http::HeaderMap;

    fn run(m: &HeaderRewrite, mut head: HeaderMap) -> HeaderMap {
        let conn = ConnInfo {
            client: Some("198.51.100.7:4000".parse().unwrap()),
            ..ConnInfo::default()
        };
        let uri: http::Uri = "/p".parse().unwrap();
        let req_headers = HeaderMap::new();
        let req = RequestInfo {
            conn: &conn,
            method: &http::Method::GET,
            uri: &uri,
            headers: &req_headers,
            scheme: "https",
            host: "h.example",
        };
        m.upstream_request(&req, &mut head, TestCx::default().cx());
        head
    }

    #[test]
    fn removes_every_value_then_appends() {
        let m = HeaderRewriteConfig::from_pairs(
            "request_headers",
            &["X-Client:${conn.client_ip}".into(), "x-keep:new".into()],
            &["X-Secret".into()],
        )
        .and_then(|c| c.compile("request_headers", Direction::Request))
        .unwrap();
        let mut head = HeaderMap::new();
        head.append("x-secret", HeaderValue::from_static("1"));
        head.append("x-secret", HeaderValue::from_static("2"));
        head.append("x-keep", HeaderValue::from_static("old"));
        let out = run(&m, head);
        assert!(out.get("x-secret").is_none());
        assert_eq!(out.get("x-client").unwrap(), "198.51.100.7");
        let keep: Vec<_> = out.get_all("x-keep").iter().collect();
        assert_eq!(keep, ["old", "new"]);
    }

    #[test]
    fn host_replaces_and_limits_are_config_errors() {
        let m = HeaderRewriteConfig::from_pairs(
            "request_headers",
            &["host:internal.example".into()],
            &["host".into()],
        )
        .and_then(|c| c.compile("request_headers", Direction::Request))
        .unwrap();
        let mut head = HeaderMap::new();
        head.insert("host", HeaderValue::from_static("public.example"));
        assert_eq!(run(&m, head).get_all("host").iter().count(), 1);

        let field = |r: Result<HeaderRewrite, ConfigError>| r.unwrap_err().field;
        let rw = |add: &[(&str, &str)], remove: &[&str]| {
            let add: Vec<_> = add
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect();
            let remove: Vec<_> = remove.iter().map(|s| s.to_string()).collect();
            HeaderRewrite::compile("request_headers", Direction::Request, &add, &remove)
        };
        assert_eq!(
            field(rw(&[("bad name", "v")], &[])),
            "request_headers.add.bad name"
        );
        assert_eq!(
            field(rw(&[("User-Agent", "v")], &[])),
            "request_headers.add.User-Agent"
        );
        assert_eq!(field(rw(&[], &["host"])), "request_headers.remove[0]");
        assert_eq!(field(rw(&[("x", "${what}")], &[])), "request_headers.add.x");
        assert_eq!(field(rw(&[("x", "a\nb")], &[])), "request_headers.add.x");
        let six: Vec<(&str, &str)> = vec![
            ("a", ""),
            ("b", ""),
            ("c", ""),
            ("d", ""),
            ("e", ""),
            ("f", ""),
        ];
        assert_eq!(field(rw(&six, &[])), "request_headers.add");
    }
}
