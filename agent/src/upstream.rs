//! Where a tunnel forwards to: `8080`, `host:port`, or a URL.

use std::fmt;

/// A local (or any reachable) service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    pub host: String,
    pub port: u16,
    /// Speak TLS to it (an `https://` URL or port 443). Its certificate is
    /// not verified, as the ngrok agent does for local services.
    pub tls: bool,
}

/// Why an address could not be understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamError {
    #[error("{0:?} is not a port, host:port or http(s):// URL")]
    Malformed(String),
    #[error("{0:?} has an invalid port")]
    BadPort(String),
    #[error("scheme {0:?} is not supported; use http:// or https://")]
    BadScheme(String),
}

impl Upstream {
    /// Parses `8080`, `localhost:8080`, `[::1]:8080`, `http://host[:port]`
    /// or `https://host[:port]` (a path is ignored).
    pub fn parse(raw: &str) -> Result<Self, UpstreamError> {
        let s = raw.trim();
        if s.is_empty() {
            return Err(UpstreamError::Malformed(raw.to_string()));
        }
        if let Ok(port) = s.parse::<u16>() {
            if port == 0 {
                return Err(UpstreamError::BadPort(raw.to_string()));
            }
            return Ok(Upstream {
                host: "localhost".into(),
                port,
                tls: port == 443,
            });
        }
        let (scheme, rest) = match s.split_once("://") {
            Some((scheme, rest)) => (Some(scheme.to_ascii_lowercase()), rest),
            None => (None, s),
        };
        let tls_default = match scheme.as_deref() {
            None => None,
            Some("http") => Some(false),
            Some("https") => Some(true),
            Some(other) => return Err(UpstreamError::BadScheme(other.to_string())),
        };
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        let (host, port) =
            split_host_port(authority).ok_or_else(|| UpstreamError::Malformed(raw.to_string()))?;
        let port = match port {
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| UpstreamError::BadPort(raw.to_string()))?,
            None => match tls_default {
                Some(true) => 443,
                Some(false) => 80,
                None => return Err(UpstreamError::Malformed(raw.to_string())),
            },
        };
        if host.is_empty() {
            return Err(UpstreamError::Malformed(raw.to_string()));
        }
        Ok(Upstream {
            host: host.to_string(),
            port,
            tls: tls_default.unwrap_or(port == 443),
        })
    }

    /// `host:port` for connecting (IPv6 bracketed).
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

fn split_host_port(s: &str) -> Option<(&str, Option<&str>)> {
    if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        return match after.strip_prefix(':') {
            Some(p) => Some((host, Some(p))),
            None if after.is_empty() => Some((host, None)),
            None => None,
        };
    }
    match s.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => Some((h, Some(p))),
        Some(_) => None,
        None => Some((s, None)),
    }
}

impl fmt::Display for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "https" } else { "http" };
        write!(f, "{scheme}://{}", self.authority())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_usual_forms() {
        assert_eq!(
            Upstream::parse("8080").unwrap().authority(),
            "localhost:8080"
        );
        assert!(Upstream::parse("443").unwrap().tls);
        let u = Upstream::parse("https://example.internal").unwrap();
        assert_eq!((u.port, u.tls), (443, true));
        let u = Upstream::parse("http://10.0.0.5:3000/app").unwrap();
        assert_eq!((u.host.as_str(), u.port, u.tls), ("10.0.0.5", 3000, false));
        assert_eq!(
            Upstream::parse("[::1]:9000").unwrap().authority(),
            "[::1]:9000"
        );
        assert_eq!(
            Upstream::parse("app:80").unwrap().to_string(),
            "http://app:80"
        );
    }

    #[test]
    fn rejects_nonsense() {
        assert!(Upstream::parse("").is_err());
        assert!(Upstream::parse("0").is_err());
        assert!(Upstream::parse("host:99999").is_err());
        assert!(Upstream::parse("ftp://x").is_err());
        assert!(Upstream::parse("justahost").is_err());
    }
}
