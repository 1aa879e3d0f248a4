//! Reaching the edge through an outbound proxy (ngrok's `proxy_url`): an
//! HTTP(S) proxy by `CONNECT`, or a SOCKS5 proxy (RFC 1928, with RFC 1929
//! user/password). The tunnel to the edge is then TLS over the proxied
//! stream, so the proxy sees only the edge's address.

use base64::Engine as _;
use boring::ssl::SslConnector;
use gangway_config::hostname::strip_port;
use gangway_config::proxy_url::{ProxyScheme, ProxyUrl};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::dial::{DialError, MaybeTls};

/// Longest proxy reply head we read before calling it broken.
const MAX_CONNECT_REPLY: usize = 8 * 1024;

/// A stream to `target` (`host:port`) through `proxy`; an HTTPS proxy's
/// certificate is checked by `proxy_tls`.
pub async fn connect(
    proxy: &ProxyUrl,
    target: &str,
    proxy_tls: &SslConnector,
) -> Result<MaybeTls, DialError> {
    let failed = |detail: String| DialError::Proxy {
        proxy: proxy.to_string(),
        detail,
    };
    let tcp = TcpStream::connect(&proxy.addr)
        .await
        .map_err(|e| failed(format!("connecting: {e}")))?;
    let _ = tcp.set_nodelay(true);
    let user = proxy.user.as_ref();
    match proxy.scheme {
        ProxyScheme::Http => {
            let mut s = MaybeTls::Plain(tcp);
            http_connect(&mut s, target, user).await.map_err(failed)?;
            Ok(s)
        }
        ProxyScheme::Https => {
            let cfg = proxy_tls
                .configure()
                .map_err(|e| DialError::Setup(e.to_string()))?;
            let tls = tokio_boring::connect(cfg, strip_port(&proxy.addr), tcp)
                .await
                .map_err(|e| failed(format!("TLS handshake: {e}")))?;
            let mut s = MaybeTls::Tls(Box::new(tls));
            http_connect(&mut s, target, user).await.map_err(failed)?;
            Ok(s)
        }
        ProxyScheme::Socks5 => {
            let mut s = MaybeTls::Plain(tcp);
            socks5_connect(&mut s, target, user).await.map_err(failed)?;
            Ok(s)
        }
    }
}

/// `CONNECT target` and its reply, read up to the blank line and no
/// further (the edge speaks next only after our ClientHello).
async fn http_connect(
    s: &mut MaybeTls,
    target: &str,
    user: Option<&(String, String)>,
) -> Result<(), String> {
    let mut req = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
    if let Some((name, pass)) = user {
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{name}:{pass}"));
        req.push_str(&format!("Proxy-Authorization: Basic {token}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes())
        .await
        .map_err(|e| format!("sending CONNECT: {e}"))?;

    let mut head = Vec::with_capacity(256);
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() >= MAX_CONNECT_REPLY {
            return Err(format!(
                "the reply to CONNECT is over {MAX_CONNECT_REPLY} bytes"
            ));
        }
        let n = s
            .read(&mut byte)
            .await
            .map_err(|e| format!("reading the reply to CONNECT: {e}"))?;
        if n == 0 {
            return Err("the proxy closed the connection after CONNECT".into());
        }
        head.push(byte[0]);
    }
    let status_line = head
        .split(|b| *b == b'\n')
        .next()
        .map(|l| String::from_utf8_lossy(l).trim().to_string())
        .unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let (version, code) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    if !version.starts_with("HTTP/1.") {
        return Err(format!("not an HTTP reply to CONNECT: {status_line:?}"));
    }
    match code.parse::<u16>() {
        Ok(200..=299) => Ok(()),
        // 407 by the RFC; tinyproxy, for one, says 401.
        Ok(401 | 407) => Err(format!(
            "the proxy wants credentials, or refused ours: {status_line}"
        )),
        _ => Err(format!("CONNECT {target} refused: {status_line}")),
    }
}

/// The SOCKS5 handshake for a CONNECT to `target`. Host names go to the
/// proxy unresolved (it may see DNS we cannot).
async fn socks5_connect(
    s: &mut MaybeTls,
    target: &str,
    user: Option<&(String, String)>,
) -> Result<(), String> {
    let io = |what: &'static str| move |e: std::io::Error| format!("{what}: {e}");
    let host = strip_port(target);
    let port: u16 = target
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse().ok())
        .ok_or_else(|| format!("{target:?} has no port"))?;

    // Greeting: offer user/password only when we have them.
    let methods: &[u8] = if user.is_some() {
        &[0x00, 0x02]
    } else {
        &[0x00]
    };
    let mut hello = vec![0x05, methods.len() as u8];
    hello.extend_from_slice(methods);
    s.write_all(&hello).await.map_err(io("SOCKS5 greeting"))?;
    let mut choice = [0u8; 2];
    s.read_exact(&mut choice)
        .await
        .map_err(io("SOCKS5 greeting reply"))?;
    if choice[0] != 0x05 {
        return Err(format!("not a SOCKS5 proxy (version byte {})", choice[0]));
    }
    match (choice[1], user) {
        (0x00, _) => {}
        (0x02, Some((name, pass))) => {
            if name.len() > 255 || pass.len() > 255 {
                return Err("SOCKS5 user and password are at most 255 bytes each".into());
            }
            let mut auth = vec![0x01, name.len() as u8];
            auth.extend_from_slice(name.as_bytes());
            auth.push(pass.len() as u8);
            auth.extend_from_slice(pass.as_bytes());
            s.write_all(&auth).await.map_err(io("SOCKS5 login"))?;
            let mut status = [0u8; 2];
            s.read_exact(&mut status)
                .await
                .map_err(io("SOCKS5 login reply"))?;
            if status[1] != 0x00 {
                return Err("the SOCKS5 proxy refused our user and password".into());
            }
        }
        (0x02, None) => {
            return Err("the SOCKS5 proxy wants a user and password; put them in proxy_url".into())
        }
        _ => return Err("the SOCKS5 proxy accepts none of our login methods".into()),
    }

    let mut req = vec![0x05, 0x01, 0x00];
    match host.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(ip)) => {
            req.push(0x01);
            req.extend_from_slice(&ip.octets());
        }
        Ok(std::net::IpAddr::V6(ip)) => {
            req.push(0x04);
            req.extend_from_slice(&ip.octets());
        }
        Err(_) => {
            if host.len() > 255 {
                return Err(format!("host name {host:?} is over 255 bytes"));
            }
            req.push(0x03);
            req.push(host.len() as u8);
            req.extend_from_slice(host.as_bytes());
        }
    }
    req.extend_from_slice(&port.to_be_bytes());
    s.write_all(&req).await.map_err(io("SOCKS5 CONNECT"))?;

    let mut reply = [0u8; 4];
    s.read_exact(&mut reply)
        .await
        .map_err(io("SOCKS5 CONNECT reply"))?;
    if reply[1] != 0x00 {
        return Err(format!(
            "SOCKS5 CONNECT {target} refused: {}",
            socks5_reply_text(reply[1])
        ));
    }
    // The bound address, which we do not need.
    let skip = match reply[3] {
        0x01 => 4,
        0x04 => 16,
        0x03 => {
            let mut len = [0u8; 1];
            s.read_exact(&mut len)
                .await
                .map_err(io("SOCKS5 CONNECT reply"))?;
            usize::from(len[0])
        }
        other => return Err(format!("SOCKS5 reply has address type {other}")),
    };
    let mut rest = vec![0u8; skip + 2];
    s.read_exact(&mut rest)
        .await
        .map_err(io("SOCKS5 CONNECT reply"))?;
    Ok(())
}

fn socks5_reply_text(code: u8) -> &'static str {
    match code {
        0x01 => "general failure",
        0x02 => "not allowed by the proxy's rules",
        0x03 => "network unreachable",
        0x04 => "host unreachable",
        0x05 => "connection refused",
        0x06 => "TTL expired",
        0x07 => "command not supported",
        0x08 => "address type not supported",
        _ => "unknown error",
    }
}
