//! Proxy streams from the edge: read the ProxyHeader, connect to the
//! tunnel's upstream, and copy bytes both ways with half-close.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use boring::ssl::SslConnector;
use gangway_proto::codec::{read_proxy_header, MAX_PROXY_HEADER_BYTES};
use gangway_proto::Stream;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tracing::{debug, info};

use crate::upstream::Upstream;

/// A bound tunnel as the forwarder needs it.
#[derive(Debug, Clone)]
pub struct TunnelRoute {
    pub upstream: Upstream,
    pub http: bool,
}

/// Tunnel id → where its traffic goes. Replaced on (re)bind.
pub type Routes = Arc<RwLock<HashMap<String, TunnelRoute>>>;

/// The agent's error page when the local service is down: the same code
/// the ngrok agent uses, in the body (the edge strips the header).
fn bad_gateway(upstream: &Upstream, err: &std::io::Error) -> Vec<u8> {
    let body = format!(
        "The agent could not connect to the upstream service at {upstream}: {err}\nERR_NGROK_8012\n"
    );
    format!(
        "HTTP/1.1 502 Bad Gateway\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Serves one proxy stream (its type already read).
pub async fn proxy_stream(mut stream: Stream, routes: Routes, tls: Arc<SslConnector>) {
    let header = match read_proxy_header(&mut stream, MAX_PROXY_HEADER_BYTES).await {
        Ok(h) => h,
        Err(e) => {
            debug!(error = %e, "bad proxy header");
            stream.reset(gangway_proto::ErrorCode::PROTOCOL);
            return;
        }
    };
    let route = routes
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .get(&header.id)
        .cloned();
    let Some(route) = route else {
        // Unknown tunnel: close at once, as the ngrok agent does.
        let _ = stream.shutdown().await;
        return;
    };
    let up = &route.upstream;
    let tcp = match TcpStream::connect(up.authority()).await {
        Ok(t) => t,
        Err(e) => {
            info!(upstream = %up, error = %e, "upstream unreachable");
            if route.http {
                let _ = stream.write_all(&bad_gateway(up, &e)).await;
            }
            let _ = stream.shutdown().await;
            return;
        }
    };
    let _ = tcp.set_nodelay(true);
    if up.tls {
        let cfg = match tls.configure() {
            Ok(c) => c.use_server_name_indication(true).verify_hostname(false),
            Err(e) => {
                debug!(error = %e, "tls config");
                return;
            }
        };
        match tokio_boring::connect(cfg, &up.host, tcp).await {
            Ok(tls) => pipe(stream, tls).await,
            Err(e) => {
                let err = std::io::Error::other(e.to_string());
                info!(upstream = %up, error = %err, "upstream TLS handshake failed");
                if route.http {
                    let _ = stream.write_all(&bad_gateway(up, &err)).await;
                }
                let _ = stream.shutdown().await;
            }
        }
    } else {
        pipe(stream, tcp).await
    }
}

async fn pipe<L: AsyncRead + AsyncWrite + Unpin>(mut stream: Stream, mut local: L) {
    match tokio::io::copy_bidirectional(&mut stream, &mut local).await {
        Ok((up, down)) => debug!(bytes_to_upstream = up, bytes_to_edge = down, "stream done"),
        Err(e) => debug!(error = %e, "stream ended with error"),
    }
}
