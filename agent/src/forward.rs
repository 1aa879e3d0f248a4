//! Proxy streams from the edge: read the ProxyHeader, then hand HTTP
//! tunnels to the pooled [`HttpForwarder`] and copy the bytes of TCP and
//! TLS tunnels (and of websockets the edge converted to TCP) both ways,
//! with half-close (TLS decrypted first when the agent terminates it).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use boring::ssl::SslConnector;
use gangway_proto::codec::{read_proxy_header, MAX_PROXY_HEADER_BYTES};
use gangway_proto::Stream;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tracing::{debug, info};

use crate::dial::TlsTerminator;
use crate::http_forward::{HttpForwarder, RequestLine};
use crate::inspect::Inspector;
use crate::metrics::TunnelMetrics;
use crate::upstream::Upstream;

/// A bound tunnel as the forwarder needs it.
#[derive(Clone)]
pub struct TunnelRoute {
    /// The tunnel's name (config name, API name or `command_line`).
    pub name: String,
    pub upstream: Upstream,
    pub http: bool,
    /// HTTP only: replace the request's Host with this.
    pub host_header: Option<String>,
    /// HTTP only: serve this directory instead of forwarding.
    pub serve_dir: Option<std::path::PathBuf>,
    /// TLS only: decrypt here before forwarding.
    pub terminate_tls: Option<TlsTerminator>,
    /// HTTP only: where exchanges are captured, when inspected.
    pub inspector: Option<Arc<Inspector>>,
    pub metrics: Arc<TunnelMetrics>,
    /// HTTP only: finished requests, for live logs.
    pub requests: tokio::sync::broadcast::Sender<RequestLine>,
}

/// Tunnel id → where its traffic goes. Replaced on (re)bind.
pub type Routes = Arc<RwLock<HashMap<String, TunnelRoute>>>;

/// Serves one proxy stream (its type already read).
pub async fn proxy_stream(
    mut stream: Stream,
    routes: Routes,
    tls: Arc<SslConnector>,
    http: Arc<HttpForwarder>,
) {
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
    // An HTTP endpoint's stream announced as `tcp` carries the payloads of
    // a websocket the edge converted (websocket_tcp_converter): raw bytes
    // for the upstream's TCP port, not requests.
    let converted = route.http && header.proto == "tcp";
    let metrics = route.metrics.clone();
    let _open = metrics.conn_opened();
    if converted && route.serve_dir.is_some() {
        debug!("a converted websocket cannot be served from a directory");
        let _ = stream.shutdown().await;
        return;
    }
    if let Some(dir) = &route.serve_dir {
        crate::file_server::serve(stream, dir.clone()).await;
        return;
    }
    if route.http && !converted {
        let remote_ip = client_ip(&header.client_addr);
        http.serve(stream, route, remote_ip).await;
        return;
    }
    match &route.terminate_tls {
        Some(TlsTerminator(acceptor)) => match tokio_boring::accept(acceptor, stream).await {
            Ok(decrypted) => forward_raw(decrypted, &route.upstream, &tls).await,
            Err(e) => debug!(error = %e, "TLS handshake with the client failed"),
        },
        None => forward_raw(stream, &route.upstream, &tls).await,
    }
}

/// `203.0.113.7:50412` → `203.0.113.7` (the inspector shows the client's
/// IP, as ngrok's does).
fn client_ip(addr: &str) -> String {
    addr.parse::<std::net::SocketAddr>()
        .map(|a| a.ip().to_string())
        .unwrap_or_else(|_| addr.to_string())
}

/// Dials the upstream (over TLS for an https:// one) and copies bytes both
/// ways.
async fn forward_raw<S>(mut stream: S, up: &Upstream, tls: &SslConnector)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let tcp = match TcpStream::connect(up.authority()).await {
        Ok(t) => t,
        Err(e) => {
            info!(upstream = %up, error = %e, "upstream unreachable");
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
                info!(upstream = %up, error = %e, "upstream TLS handshake failed");
                let _ = stream.shutdown().await;
            }
        }
    } else {
        pipe(stream, tcp).await
    }
}

async fn pipe<E, L>(mut stream: E, mut local: L)
where
    E: AsyncRead + AsyncWrite + Unpin,
    L: AsyncRead + AsyncWrite + Unpin,
{
    let buf = gangway_proto::PIPE_BUFFER_BYTES;
    match tokio::io::copy_bidirectional_with_sizes(&mut stream, &mut local, buf, buf).await {
        Ok((up, down)) => debug!(bytes_to_upstream = up, bytes_to_edge = down, "stream done"),
        Err(e) => debug!(error = %e, "stream ended with error"),
    }
}
