//! The variables a policy sees, built from plain request facts: the edge
//! fills a [`Connection`] and an [`HttpRequest`]; this module shapes them
//! as ngrok documents them (`conn.client_ip`, `req.url.query_params`,
//! `req.headers` lowercase → list, `res.status_code`, ...).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use http::{HeaderMap, Method, Uri};
use serde_json::{json, Map, Value as Json};

use crate::expr::Scope;

/// The TLS session of a connection, when the edge terminated it.
#[derive(Debug, Clone, Default)]
pub struct Tls {
    pub version: String,
    pub cipher_suite: String,
    pub client_cert_serial: Option<String>,
    pub client_cert_cn: Option<String>,
}

/// What is known when a connection arrives.
#[derive(Debug, Clone, Default)]
pub struct Connection {
    pub client: Option<SocketAddr>,
    pub server: Option<SocketAddr>,
    pub tls: Option<Tls>,
    /// The public URL of the endpoint (`https://app.example`), for
    /// `endpoint.url`.
    pub endpoint_url: String,
    pub endpoint_id: String,
}

/// What the request head says.
#[derive(Debug, Clone, Copy)]
pub struct HttpRequest<'a> {
    pub method: &'a Method,
    pub uri: &'a Uri,
    pub headers: &'a HeaderMap,
    /// `http` or `https`: what the client used.
    pub scheme: &'a str,
    /// Lowercase, without port.
    pub host: &'a str,
}

impl Scope {
    /// The scope of a new connection: `conn`, `endpoint`, `time`, `vars`.
    pub fn for_connection(conn: &Connection) -> Scope {
        let mut s = Scope::default();
        let roots = s.roots_mut();
        let mut c = json!({
            "client_ip": conn.client.map(|a| a.ip().to_string()).unwrap_or_default(),
            "client_port": conn.client.map_or(0, |a| a.port()),
            "server_ip": conn.server.map(|a| a.ip().to_string()).unwrap_or_default(),
            "server_port": conn.server.map_or(0, |a| a.port()),
        });
        if let Some(tls) = &conn.tls {
            c["tls"] = json!({
                "version": tls.version,
                "cipher_suite": tls.cipher_suite,
                "client_cert": {
                    "serial_number": tls.client_cert_serial.clone().unwrap_or_default(),
                    "subject": { "common_name": tls.client_cert_cn.clone().unwrap_or_default() },
                },
            });
        }
        roots.insert("conn".into(), c);
        roots.insert(
            "endpoint".into(),
            json!({ "id": conn.endpoint_id, "url": conn.endpoint_url }),
        );
        roots.insert("time".into(), json!({ "now": rfc3339_now() }));
        roots.insert("vars".into(), Json::Object(Map::new()));
        s
    }

    /// The scope of one request on `conn`: adds `req` and the header and
    /// query tables the helper functions read.
    pub fn for_request(conn: &Connection, req: &HttpRequest<'_>) -> Scope {
        let mut s = Scope::for_connection(conn);
        let headers = header_lists(req.headers);
        let path = req.uri.path();
        let query = req.uri.query().unwrap_or("");
        let params = query_params(query);
        let port = req
            .uri
            .port_u16()
            .or_else(|| host_port(req.headers))
            .unwrap_or(if req.scheme == "https" { 443 } else { 80 });
        let authority = req
            .uri
            .authority()
            .map(|a| a.as_str().to_string())
            .or_else(|| header(req.headers, "host").map(str::to_string))
            .unwrap_or_else(|| req.host.to_string());
        let pq = req.uri.path_and_query().map_or("/", |pq| pq.as_str());
        let content_length = header(req.headers, "content-length")
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0);
        s.roots_mut().insert(
            "req".into(),
            json!({
                "method": req.method.as_str(),
                "host": req.host,
                "headers": headers,
                "cookies": cookies(req.headers),
                "user_agent": header(req.headers, "user-agent").unwrap_or(""),
                "content_length": content_length,
                "url": {
                    "raw": format!("{}://{authority}{pq}", req.scheme),
                    "scheme": req.scheme,
                    "host": req.host,
                    "port": port,
                    "path": path,
                    "query": query,
                    "query_params": params,
                },
            }),
        );
        s.req_headers = Arc::new(headers);
        s.query = Arc::new(params);
        s
    }

    /// Adds `res` for the response phase.
    pub fn set_response(&mut self, status: u16, headers: &HeaderMap) {
        let content_length = header(headers, "content-length")
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0);
        self.roots_mut().insert(
            "res".into(),
            json!({
                "status_code": status,
                "headers": header_lists(headers),
                "content_length": content_length,
            }),
        );
    }
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

fn host_port(h: &HeaderMap) -> Option<u16> {
    let host = header(h, "host")?;
    let (_, port) = host.rsplit_once(':')?;
    port.parse().ok()
}

/// Headers by lowercase name, every value kept in order.
fn header_lists(h: &HeaderMap) -> HashMap<String, Vec<String>> {
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    for (name, value) in h {
        out.entry(name.as_str().to_string())
            .or_default()
            .push(String::from_utf8_lossy(value.as_bytes()).into_owned());
    }
    out
}

/// Query parameters, percent-decoded, every value kept in order.
fn query_params(query: &str) -> HashMap<String, Vec<String>> {
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        out.entry(decode(k)).or_default().push(decode(v));
    }
    out
}

/// `application/x-www-form-urlencoded` decoding; bad escapes stay as sent.
fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `Cookie` headers as name → list of `{name, value}`.
fn cookies(h: &HeaderMap) -> Map<String, Json> {
    let mut out = Map::new();
    for v in h.get_all(http::header::COOKIE) {
        let Ok(v) = v.to_str() else { continue };
        for pair in v.split(';') {
            let Some((name, value)) = pair.trim().split_once('=') else {
                continue;
            };
            let entry = json!({ "name": name, "value": value.trim_matches('"') });
            match out.get_mut(name) {
                Some(Json::Array(list)) => list.push(entry),
                _ => {
                    out.insert(name.to_string(), Json::Array(vec![entry]));
                }
            }
        }
    }
    out
}

/// `time.now` as RFC 3339 UTC (CEL's `timestamp()` parses it).
fn rfc3339_now() -> String {
    let secs = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expr::{Expr, Phase};

    fn eval(scope: &Scope, src: &str) -> bool {
        Expr::compile(src, "t", Phase::HttpResponse)
            .unwrap()
            .matches(scope)
            .unwrap()
    }

    #[test]
    fn request_variables_have_ngrok_shapes() {
        let uri: Uri = "/a%20b/c?x=1&x=two+words&y=%41".parse().unwrap();
        let mut headers = HeaderMap::new();
        headers.insert("host", "Shop.example:8443".parse().unwrap());
        headers.append("x-multi", "1".parse().unwrap());
        headers.append("x-multi", "2".parse().unwrap());
        headers.insert("cookie", "sid=abc; theme=\"dark\"".parse().unwrap());
        headers.insert("user-agent", "curl/8".parse().unwrap());
        let conn = Connection {
            client: Some("10.1.2.3:5555".parse().unwrap()),
            server: Some("127.0.0.1:8443".parse().unwrap()),
            ..Connection::default()
        };
        let mut s = Scope::for_request(
            &conn,
            &HttpRequest {
                method: &Method::POST,
                uri: &uri,
                headers: &headers,
                scheme: "https",
                host: "shop.example",
            },
        );
        s.set_response(404, &HeaderMap::new());
        for src in [
            "req.method == 'POST'",
            "req.url.raw == 'https://Shop.example:8443/a%20b/c?x=1&x=two+words&y=%41'",
            "req.url.port == 8443",
            "req.url.path == '/a%20b/c'",
            "req.url.query_params['x'] == ['1', 'two words']",
            "req.url.query_params.y[0] == 'A'",
            "req.headers['x-multi'] == ['1', '2']",
            "req.cookies.sid[0].value == 'abc' && req.cookies.theme[0].value == 'dark'",
            "req.user_agent.startsWith('curl/')",
            "conn.client_ip == '10.1.2.3' && conn.client_port == 5555",
            "conn.server_port == 8443",
            "res.status_code == 404",
            "timestamp(time.now) > timestamp('2020-01-01T00:00:00Z')",
            "getQueryParam('x').size() == 2",
        ] {
            assert!(eval(&s, src), "{src}");
        }
    }

    #[test]
    fn percent_decoding_keeps_bad_escapes() {
        assert_eq!(decode("a%2"), "a%2");
        assert_eq!(decode("%zz%41"), "%zzA");
        assert_eq!(decode("%"), "%");
        assert_eq!(decode("%e2%82%ac"), "€");
    }
}
