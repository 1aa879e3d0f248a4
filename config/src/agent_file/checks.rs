//! Checks of single values: endpoint URLs, addresses, CIDRs, durations,
//! sizes.

use super::*;

/// What a v3 endpoint `url` says.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct UrlParts {
    pub(super) proto: Proto,
    pub(super) bind_tls: BindTls,
    pub(super) hostname: Option<String>,
    pub(super) remote_addr: Option<String>,
}

impl Default for UrlParts {
    /// No url: a random https endpoint.
    fn default() -> Self {
        UrlParts {
            proto: Proto::Http,
            bind_tls: BindTls::True,
            hostname: None,
            remote_addr: None,
        }
    }
}

/// An endpoint url: a domain (`example.org`, https), an origin
/// (`https://example.org[:port]`, `tcp://host:port`, `tls://host`), a bare
/// scheme (`http://`), or empty. The port of an http(s)/tls origin is
/// dropped (the edge's listeners decide it).
pub(super) fn parse_endpoint_url(url: &str) -> Result<UrlParts, String> {
    let url = url.trim();
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (scheme.to_ascii_lowercase(), rest),
        None => ("https".to_string(), url),
    };
    let (proto, bind_tls) = match scheme.as_str() {
        "https" => (Proto::Http, BindTls::True),
        "http" => (Proto::Http, BindTls::False),
        "tcp" => (Proto::Tcp, BindTls::True),
        "tls" => (Proto::Tls, BindTls::True),
        other => {
            return Err(format!(
                "scheme {other:?} is not one of http, https, tcp, tls"
            ))
        }
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.contains(['/', '?', '#']) {
        return Err("must be scheme://host[:port] without a path".into());
    }
    if rest.contains('@') {
        return Err("must not contain credentials".into());
    }
    let mut parts = UrlParts {
        proto,
        bind_tls,
        hostname: None,
        remote_addr: None,
    };
    if rest.is_empty() {
        return Ok(parts);
    }
    let (host, port) = split_host_port(rest);
    if !valid_hostname(host) {
        return Err(format!("{host:?} is not a host name"));
    }
    if let Some(port) = port {
        if !port.parse::<u16>().is_ok_and(|p| p > 0) {
            return Err(format!("{port:?} is not a port"));
        }
    }
    match (proto, port) {
        (Proto::Tcp, Some(port)) => parts.remote_addr = Some(format!("{host}:{port}")),
        (Proto::Tcp, None) => return Err("expected tcp://host:port".into()),
        _ => parts.hostname = Some(host.to_ascii_lowercase()),
    }
    Ok(parts)
}

pub(super) fn valid_hostname(host: &str) -> bool {
    !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._*".contains(c))
}

/// `host:port` with a non-empty host and a numeric port.
pub(super) fn valid_host_port(s: &str) -> bool {
    let (host, port) = split_host_port(s);
    let host_ok = !host.is_empty() && !host.contains(|c: char| c.is_whitespace() || c == '/');
    host_ok && port.is_some_and(|p| p.parse::<u16>().is_ok())
}

/// `server_addr` / `connect_url` as `host:port`: any scheme and trailing
/// slash dropped, port [`DEFAULT_SERVER_PORT`] if absent.
pub(super) fn server_addr(value: &str) -> Result<String, String> {
    let value = value.trim();
    let rest = value.split_once("://").map_or(value, |(_, rest)| rest);
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if valid_host_port(rest) {
        return Ok(rest.to_string());
    }
    if valid_hostname(rest) && !rest.contains('*') {
        return Ok(format!("{rest}:{DEFAULT_SERVER_PORT}"));
    }
    Err("expected host:port".into())
}

/// A tunnel's upstream: a port, `host:port`, a host, or a URL.
pub(super) fn check_addr(addr: &str) -> Result<(), String> {
    let addr = addr.trim();
    if addr.is_empty() {
        return Err("must not be empty".into());
    }
    if addr.chars().all(|c| c.is_ascii_digit()) {
        return match addr.parse::<u16>() {
            Ok(port) if port > 0 => Ok(()),
            _ => Err(format!("{addr} is not a port (1-65535)")),
        };
    }
    if let Some((scheme, _)) = addr.split_once("://") {
        const SCHEMES: &[&str] = &["http", "https", "file", "tcp", "tls"];
        if !SCHEMES.contains(&scheme.to_ascii_lowercase().as_str()) {
            return Err(format!(
                "scheme {scheme:?} is not one of {}",
                SCHEMES.join(", ")
            ));
        }
        return Ok(());
    }
    match split_host_port(addr) {
        (host, Some(port)) if !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0) => {
            Ok(())
        }
        (host, None) if valid_hostname(host) => Ok(()),
        _ => Err("expected a port, host:port or URL".into()),
    }
}

pub(super) fn check_credentials(value: &str) -> Result<(), String> {
    match value.split_once(':') {
        Some((user, _)) if !user.is_empty() => Ok(()),
        _ => Err("expected user:password".into()),
    }
}

pub(super) fn check_cidr(value: &str) -> Result<(), String> {
    let value = value.trim();
    if value.parse::<ipnet::IpNet>().is_ok() || value.parse::<IpAddr>().is_ok() {
        Ok(())
    } else {
        Err(format!("{value:?} is not a CIDR"))
    }
}

/// Go's `time.ParseDuration` syntax: `1h30m`, `10s`, `1.5s`, `500ms`, `0`.
pub(super) fn parse_go_duration(text: &str) -> Option<Duration> {
    const UNITS: &[(&str, f64)] = &[
        ("ns", 1.0),
        ("us", 1e3),
        ("µs", 1e3),
        ("μs", 1e3),
        ("ms", 1e6),
        ("s", 1e9),
        ("m", 60e9),
        ("h", 3600e9),
    ];
    let text = text.trim();
    if text == "0" {
        return Some(Duration::ZERO);
    }
    let mut rest = text;
    let mut nanos = 0.0_f64;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let (unit, scale) = UNITS.iter().find(|(unit, _)| rest.starts_with(unit))?;
        rest = &rest[unit.len()..];
        nanos += number * scale;
    }
    if !nanos.is_finite() || nanos > u64::MAX as f64 {
        return None;
    }
    Some(Duration::from_nanos(nanos as u64))
}

/// `50000000`, `50MB`, `10MiB`, `1.5 GB` (SI units are powers of 1000,
/// IEC units of 1024).
pub(super) fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let number: f64 = text[..split].parse().ok()?;
    let scale: f64 = match text[split..].trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "m" | "mb" => 1e6,
        "g" | "gb" => 1e9,
        "t" | "tb" => 1e12,
        "kib" => 1024.0,
        "mib" => 1024.0 * 1024.0,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        "tib" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    let bytes = (number * scale).round();
    if !bytes.is_finite() || bytes > u64::MAX as f64 {
        return None;
    }
    Some(bytes as u64)
}
