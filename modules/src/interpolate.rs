//! `${...}` in header values: compiled once into literal and variable
//! pieces, expanded per request from the connection and request.

use crate::chain::{Facts, RequestInfo};

/// A value a template can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Var {
    ClientIp,
    ClientPort,
    ServerIp,
    ServerPort,
    ServerName,
    TlsVersion,
    TlsCipher,
    ClientCertSerial,
    ClientCertCn,
    Method,
    Host,
    Path,
    Query,
    RawUrl,
    Scheme,
    UserAgent,
    BasicAuthUser,
}

const VARS: &[(&str, Var)] = &[
    ("conn.client_ip", Var::ClientIp),
    ("conn.client_port", Var::ClientPort),
    ("conn.server_ip", Var::ServerIp),
    ("conn.server_port", Var::ServerPort),
    ("conn.server_name", Var::ServerName),
    ("conn.tls.version", Var::TlsVersion),
    ("conn.tls.cipher_suite", Var::TlsCipher),
    ("conn.tls.client_cert.serial_number", Var::ClientCertSerial),
    ("conn.tls.client_cert.subject.cn", Var::ClientCertCn),
    ("req.method", Var::Method),
    ("req.host", Var::Host),
    ("req.url.host", Var::Host),
    ("req.url.path", Var::Path),
    ("req.url.query", Var::Query),
    ("req.url.raw", Var::RawUrl),
    ("req.url.scheme", Var::Scheme),
    ("req.user_agent", Var::UserAgent),
    ("basic_auth.username", Var::BasicAuthUser),
];

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Var(Var),
}

/// A compiled header value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pieces: Vec<Piece>,
}

impl Template {
    /// Parses `text`; an unknown or unterminated `${...}` is an error
    /// naming what was wrong.
    pub fn parse(text: &str) -> Result<Template, String> {
        let mut pieces = Vec::new();
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            if start > 0 {
                pieces.push(Piece::Text(rest[..start].to_string()));
            }
            let after = &rest[start + 2..];
            let end = after
                .find('}')
                .ok_or_else(|| format!("unterminated ${{ in {text:?}"))?;
            // Legacy module syntax writes `${.conn.client_ip}`.
            let name = after[..end].trim().trim_start_matches('.');
            let var = VARS
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| *v)
                .ok_or_else(|| {
                    let known: Vec<&str> = VARS.iter().map(|(n, _)| *n).collect();
                    format!("unknown variable {name:?} (known: {})", known.join(", "))
                })?;
            pieces.push(Piece::Var(var));
            rest = &after[end + 1..];
        }
        if !rest.is_empty() {
            pieces.push(Piece::Text(rest.to_string()));
        }
        Ok(Template { pieces })
    }

    /// The literal text, when the template has no variables.
    pub fn as_literal(&self) -> Option<&str> {
        match self.pieces.as_slice() {
            [] => Some(""),
            [Piece::Text(t)] => Some(t),
            _ => None,
        }
    }

    pub fn render(&self, req: &RequestInfo<'_>, facts: &Facts) -> String {
        if let Some(t) = self.as_literal() {
            return t.to_string();
        }
        let mut out = String::new();
        for p in &self.pieces {
            match p {
                Piece::Text(t) => out.push_str(t),
                Piece::Var(v) => push_var(&mut out, *v, req, facts),
            }
        }
        out
    }
}

fn push_var(out: &mut String, v: Var, req: &RequestInfo<'_>, facts: &Facts) {
    use std::fmt::Write;
    let conn = req.conn;
    let tls = conn.tls.as_ref();
    let cert = tls.and_then(|t| t.client_cert.as_ref());
    let _ = match v {
        Var::ClientIp => conn.client.map_or(Ok(()), |a| write!(out, "{}", a.ip())),
        Var::ClientPort => conn.client.map_or(Ok(()), |a| write!(out, "{}", a.port())),
        Var::ServerIp => conn.server.map_or(Ok(()), |a| write!(out, "{}", a.ip())),
        Var::ServerPort => conn.server.map_or(Ok(()), |a| write!(out, "{}", a.port())),
        Var::ServerName => out.write_str(&conn.server_name),
        Var::TlsVersion => out.write_str(tls.map_or("", |t| t.version.as_str())),
        Var::TlsCipher => out.write_str(tls.map_or("", |t| t.cipher_suite.as_str())),
        Var::ClientCertSerial => out.write_str(cert.map_or("", |c| c.serial_number.as_str())),
        Var::ClientCertCn => out.write_str(cert.map_or("", |c| c.subject_cn.as_str())),
        Var::Method => out.write_str(req.method.as_str()),
        Var::Host => out.write_str(req.host),
        Var::Path => out.write_str(req.uri.path()),
        Var::Query => out.write_str(req.uri.query().unwrap_or("")),
        Var::RawUrl => out.write_str(&req.full_url()),
        Var::Scheme => out.write_str(req.scheme),
        Var::UserAgent => out.write_str(req.header("user-agent").unwrap_or("")),
        Var::BasicAuthUser => out.write_str(facts.user.as_deref().unwrap_or("")),
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::ConnInfo;

    #[test]
    fn renders_connection_and_request_values() {
        let conn = ConnInfo {
            client: Some("203.0.113.9:5555".parse().unwrap()),
            server_name: "app.example".into(),
            ..ConnInfo::default()
        };
        let uri: http::Uri = "/a/b?x=1".parse().unwrap();
        let headers = http::HeaderMap::new();
        let req = RequestInfo {
            conn: &conn,
            method: &http::Method::POST,
            uri: &uri,
            headers: &headers,
            scheme: "https",
            host: "app.example",
        };
        let t = Template::parse("ip=${conn.client_ip} path=${ .req.url.path }?${req.url.query}")
            .unwrap();
        assert_eq!(
            t.render(&req, &Facts::default()),
            "ip=203.0.113.9 path=/a/b?x=1"
        );
        assert_eq!(
            Template::parse("${req.url.raw}")
                .unwrap()
                .render(&req, &Facts::default()),
            "https://app.example/a/b?x=1"
        );
        assert_eq!(
            Template::parse("plain").unwrap().as_literal(),
            Some("plain")
        );
    }

    #[test]
    fn unknown_and_unterminated_are_errors() {
        assert!(Template::parse("${nope}")
            .unwrap_err()
            .contains("unknown variable"));
        assert!(Template::parse("${conn.client_ip")
            .unwrap_err()
            .contains("unterminated"));
    }
}
