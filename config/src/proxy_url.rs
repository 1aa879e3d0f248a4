//! `proxy_url`: the outbound proxy the agent reaches the edge through (an
//! HTTP(S) proxy by `CONNECT`, or SOCKS5), from the config file or, as Go
//! programs like the ngrok agent do, from `HTTPS_PROXY`/`HTTP_PROXY`.

use std::fmt;

use percent_encoding::percent_decode_str;

use crate::hostname::{split_host_port, strip_port};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyScheme {
    Http,
    Https,
    Socks5,
}

/// A parsed `proxy_url`: `http://`, `https://` or `socks5://` (also
/// `socks5h://`), optional `user:password@`, and a port that defaults to
/// the scheme's (80, 443, 1080).
#[derive(Clone, PartialEq, Eq)]
pub struct ProxyUrl {
    pub scheme: ProxyScheme,
    /// `host:port`, IPv6 in brackets.
    pub addr: String,
    pub user: Option<(String, String)>,
}

impl fmt::Debug for ProxyUrl {
    // Never prints the password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

impl fmt::Display for ProxyUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = match self.scheme {
            ProxyScheme::Http => "http",
            ProxyScheme::Https => "https",
            ProxyScheme::Socks5 => "socks5",
        };
        match &self.user {
            Some((user, _)) => write!(f, "{scheme}://{user}:***@{}", self.addr),
            None => write!(f, "{scheme}://{}", self.addr),
        }
    }
}

impl ProxyUrl {
    /// Parses a proxy URL; the error says what is wrong with it.
    pub fn parse(s: &str) -> Result<Self, String> {
        let (scheme, rest) = s
            .split_once("://")
            .ok_or_else(|| format!("{s:?} has no scheme; use http://, https:// or socks5://"))?;
        let (scheme, default_port) = match scheme.to_ascii_lowercase().as_str() {
            "http" => (ProxyScheme::Http, 80),
            "https" => (ProxyScheme::Https, 443),
            "socks5" | "socks5h" => (ProxyScheme::Socks5, 1080),
            other => {
                return Err(format!(
                    "scheme {other:?} is not one of http, https, socks5"
                ))
            }
        };
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.contains(['/', '?', '#']) {
            return Err(format!(
                "{s:?} has a path; a proxy URL is only scheme://host:port"
            ));
        }
        let (user, hostport) = match authority.rsplit_once('@') {
            Some((userinfo, hostport)) => {
                let (name, pass) = userinfo.split_once(':').unwrap_or((userinfo, ""));
                let decode = |v: &str| percent_decode_str(v).decode_utf8_lossy().into_owned();
                (Some((decode(name), decode(pass))), hostport)
            }
            None => (None, authority),
        };
        let (host, port) = split_host_port(hostport);
        if host.is_empty() {
            return Err(format!("{s:?} has no host"));
        }
        let addr = match port {
            Some(port) => {
                port.parse::<u16>()
                    .ok()
                    .filter(|p| *p != 0)
                    .ok_or_else(|| format!("port {port:?} is not a number from 1 to 65535"))?;
                hostport.to_string()
            }
            None => format!("{hostport}:{default_port}"),
        };
        Ok(ProxyUrl { scheme, addr, user })
    }

    /// The proxy the environment names for a TLS connection to `target`,
    /// as Go's net/http reads it (which the ngrok agent uses):
    /// `HTTPS_PROXY`, then `HTTP_PROXY` (either case), unless `NO_PROXY`
    /// covers the host; loopback targets are never proxied.
    pub fn from_env(target: &str) -> Option<Result<Self, String>> {
        let var = |name: &str| {
            std::env::var(name)
                .or_else(|_| std::env::var(name.to_ascii_lowercase()))
                .ok()
                .filter(|v| !v.is_empty())
        };
        let host = strip_port(target);
        if is_loopback(host) || var("NO_PROXY").is_some_and(|np| no_proxy_covers(&np, host)) {
            return None;
        }
        let raw = var("HTTPS_PROXY").or_else(|| var("HTTP_PROXY"))?;
        // Go takes a bare `host:port` as http://.
        let raw = if raw.contains("://") {
            raw
        } else {
            format!("http://{raw}")
        };
        Some(ProxyUrl::parse(&raw))
    }
}

fn is_loopback(host: &str) -> bool {
    let host = host.to_ascii_lowercase();
    host == "localhost"
        || host.ends_with(".localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// `NO_PROXY`: comma-separated hosts, `.domain` or `domain` suffixes, or
/// `*` for everything (ports are not compared).
fn no_proxy_covers(no_proxy: &str, host: &str) -> bool {
    let host = host.to_ascii_lowercase();
    no_proxy.split(',').map(str::trim).any(|entry| {
        let entry = entry.to_ascii_lowercase();
        let entry = strip_port(&entry);
        if entry == "*" {
            return true;
        }
        let suffix = entry.trim_start_matches('.');
        !suffix.is_empty()
            && (host == suffix || host.strip_suffix(suffix).is_some_and(|h| h.ends_with('.')))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_schemes_ports_and_credentials() {
        let p = ProxyUrl::parse("http://proxy.corp:3128").unwrap();
        assert_eq!(
            (p.scheme, p.addr.as_str(), p.user),
            (ProxyScheme::Http, "proxy.corp:3128", None)
        );
        let p = ProxyUrl::parse("socks5://al%40ice:p%3Ass@[::1]/").unwrap();
        assert_eq!(p.scheme, ProxyScheme::Socks5);
        assert_eq!(p.addr, "[::1]:1080");
        assert_eq!(p.user, Some(("al@ice".into(), "p:ss".into())));
        assert_eq!(p.to_string(), "socks5://al@ice:***@[::1]:1080");
        assert_eq!(ProxyUrl::parse("HTTPS://h").unwrap().addr, "h:443");
        assert_eq!(ProxyUrl::parse("http://h").unwrap().addr, "h:80");
    }

    #[test]
    fn bad_proxy_urls_say_why() {
        for (bad, why) in [
            ("proxy:8080", "no scheme"),
            ("ftp://h:1", "not one of http, https, socks5"),
            ("http://h:0", "is not a number"),
            ("http://h:99999", "is not a number"),
            ("http://:8080", "no host"),
            ("http://h:80/path", "has a path"),
        ] {
            let err = ProxyUrl::parse(bad).unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }

    #[test]
    fn no_proxy_matches_hosts_and_domain_suffixes() {
        assert!(no_proxy_covers("example.com", "example.com"));
        assert!(no_proxy_covers(" .example.com", "edge.example.com"));
        assert!(no_proxy_covers("example.com:443", "edge.example.com"));
        assert!(!no_proxy_covers("example.com", "badexample.com"));
        assert!(no_proxy_covers("a.test,*", "anything"));
        assert!(!no_proxy_covers("", "anything"));
        assert!(is_loopback("localhost") && is_loopback("127.0.0.2") && is_loopback("::1"));
        assert!(is_loopback("Agents.Gangway.localhost"));
        assert!(!is_loopback("10.0.0.1"));
    }
}
