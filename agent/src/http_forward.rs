//! HTTP tunnels at the agent: each proxy stream carries one HTTP/1.1
//! exchange (the edge asks for `Connection: close`), served with hyper and
//! forwarded through a keep-alive pool to the local app. Pooling here means
//! a request costs a muxado stream, not a new TCP connection to the app —
//! the bench showed the per-request connect dominating the tunnel's cost.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use boring::ssl::SslConnector;
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName};
use http::{Request, Response, StatusCode, Uri};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tracing::{debug, info};

use gangway_config::codes::{self, Code};

use crate::capture::Capture;
use crate::dial::MaybeTls;
use crate::forward::TunnelRoute;
use crate::upstream::Upstream;

/// Idle connections to the local app are kept this long.
pub const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);

type Body = BoxBody<Bytes, hyper::Error>;

/// Forwards HTTP requests to upstreams; one per agent, shared by streams.
pub struct HttpForwarder {
    client: Client<UpstreamConnector, Body>,
}

/// One finished request, for live logs (the console UI).
#[derive(Debug, Clone)]
pub struct RequestLine {
    pub tunnel: String,
    pub method: String,
    pub path: String,
    pub status: u16,
    pub duration: Duration,
}

impl HttpForwarder {
    pub fn new(tls: Arc<SslConnector>) -> Self {
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .build(UpstreamConnector { tls });
        HttpForwarder { client }
    }

    /// Serves the HTTP/1.1 exchange(s) on one proxy stream from the public
    /// client at `remote_addr`.
    pub async fn serve<S>(self: Arc<Self>, stream: S, route: TunnelRoute, remote_addr: String)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let route = Arc::new(route);
        let remote_addr: Arc<str> = remote_addr.into();
        let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
            let fwd = self.clone();
            let route = route.clone();
            let remote_addr = remote_addr.clone();
            async move {
                let req = req.map(BodyExt::boxed);
                Ok::<_, Infallible>(fwd.observe(req, &route, &remote_addr, None).await)
            }
        });
        let conn = hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(stream), svc)
            .with_upgrades();
        if let Err(e) = conn.await {
            debug!(error = %e, "http stream ended with error");
        }
    }

    /// Sends a captured request again (as edited) to the tunnel's
    /// upstream; it is captured like any other. Returns the status.
    pub async fn replay(
        &self,
        route: &TunnelRoute,
        req: Request<Bytes>,
        remote_addr: &str,
        replay_of: &str,
    ) -> Result<StatusCode, hyper::Error> {
        let req = req.map(|b| {
            Full::new(b)
                .map_err(|never: Infallible| match never {})
                .boxed()
        });
        let resp = self.observe(req, route, remote_addr, Some(replay_of)).await;
        let status = resp.status();
        // Reading the body to its end records the capture.
        resp.into_body().collect().await?;
        Ok(status)
    }

    /// Forwards one request with the tunnel's Host rewrite, capturing it
    /// when the tunnel is inspected and counting it in the metrics.
    async fn observe(
        &self,
        mut req: Request<Body>,
        route: &TunnelRoute,
        remote_addr: &str,
        replay_of: Option<&str>,
    ) -> Response<Body> {
        let started = std::time::Instant::now();
        if let Some(h) = &route.host_header {
            if let Ok(v) = header::HeaderValue::from_str(h) {
                req.headers_mut().insert(header::HOST, v);
            }
        }
        let line = (route.requests.receiver_count() > 0).then(|| {
            let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
            (req.method().to_string(), path.to_string())
        });
        let capture = route.inspector.as_ref().map(|ins| {
            let c = Capture::begin(ins, &route.name, remote_addr, &req);
            if let Some(id) = replay_of {
                c.replay_of(id);
            }
            c
        });
        let req = match &capture {
            Some(c) => req.map(|b| c.tap_request(b).boxed()),
            None => req,
        };
        let resp = self.forward(req, &route.upstream).await;
        let took = started.elapsed();
        route.metrics.http_done(took);
        if let Some((method, path)) = line {
            let _ = route.requests.send(RequestLine {
                tunnel: route.name.clone(),
                method,
                path,
                status: resp.status().as_u16(),
                duration: took,
            });
        }
        match capture {
            Some(c) => {
                c.respond(&resp);
                resp.map(|b| c.tap_response(b).boxed())
            }
            None => resp,
        }
    }

    async fn forward(&self, mut req: Request<Body>, up: &Upstream) -> Response<Body> {
        let upgrade = req.headers().contains_key(header::UPGRADE);
        let downstream_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
        strip_hop_by_hop(req.headers_mut(), upgrade);
        let path = req
            .uri()
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/")
            .to_string();
        let scheme = if up.tls { "https" } else { "http" };
        match format!("{scheme}://{}{path}", up.authority()).parse::<Uri>() {
            Ok(uri) => *req.uri_mut() = uri,
            Err(e) => {
                return text_response(
                    StatusCode::BAD_REQUEST,
                    format!("bad request target: {e}\n"),
                )
            }
        }
        let mut resp = match self.client.request(req).await {
            Ok(r) => r,
            Err(e) => {
                info!(upstream = %up, error = %e, "upstream request failed");
                return error_response(
                    codes::UPSTREAM_UNREACHABLE,
                    &format!("The agent could not reach the upstream service at {up}: {e}"),
                );
            }
        };
        if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
            if let Some(downstream) = downstream_upgrade {
                let upstream = hyper::upgrade::on(&mut resp);
                tokio::spawn(async move {
                    let (Ok(d), Ok(u)) = tokio::join!(downstream, upstream) else {
                        return;
                    };
                    let _ =
                        tokio::io::copy_bidirectional(&mut TokioIo::new(d), &mut TokioIo::new(u))
                            .await;
                });
            }
        } else {
            strip_hop_by_hop(resp.headers_mut(), false);
        }
        resp.map(|b| b.boxed())
    }
}

/// Connection-scoped headers must not cross a proxy; an upgrade keeps its
/// `Connection: upgrade` and `Upgrade`.
fn strip_hop_by_hop(h: &mut HeaderMap, keep_upgrade: bool) {
    let named: Vec<HeaderName> = h
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .filter(|n| !(keep_upgrade && n == header::UPGRADE))
        .collect();
    for n in named {
        h.remove(n);
    }
    for n in [
        header::HeaderName::from_static("keep-alive"),
        header::HeaderName::from_static("proxy-connection"),
        header::TE,
        header::TRAILER,
        header::TRANSFER_ENCODING,
        header::PROXY_AUTHORIZATION,
    ] {
        h.remove(n);
    }
    if keep_upgrade {
        h.insert(
            header::CONNECTION,
            header::HeaderValue::from_static("upgrade"),
        );
    } else {
        h.remove(header::CONNECTION);
        h.remove(header::UPGRADE);
    }
}

/// The agent's own error page: the message, then the code on its own line.
fn error_response(code: Code, message: &str) -> Response<Body> {
    let status = StatusCode::from_u16(code.status).unwrap_or(StatusCode::BAD_GATEWAY);
    text_response(status, format!("{message}\n{code}\n"))
}

fn text_response(status: StatusCode, body: String) -> Response<Body> {
    let body = Full::new(Bytes::from(body))
        .map_err(|never: Infallible| match never {})
        .boxed();
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// Dials upstreams for the pool: plain TCP, or TLS without verification.
#[derive(Clone)]
struct UpstreamConnector {
    tls: Arc<SslConnector>,
}

impl tower_service::Service<Uri> for UpstreamConnector {
    type Response = UpstreamIo;
    type Error = std::io::Error;
    type Future =
        Pin<Box<dyn std::future::Future<Output = Result<UpstreamIo, std::io::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let tls = self.tls.clone();
        Box::pin(async move {
            let host = uri
                .host()
                .ok_or_else(|| std::io::Error::other("upstream uri has no host"))?
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string();
            let secure = uri.scheme_str() == Some("https");
            let port = uri.port_u16().unwrap_or(if secure { 443 } else { 80 });
            let tcp = TcpStream::connect((host.as_str(), port)).await?;
            let _ = tcp.set_nodelay(true);
            if !secure {
                return Ok(UpstreamIo(TokioIo::new(MaybeTls::Plain(tcp))));
            }
            let cfg = tls
                .configure()
                .map_err(std::io::Error::other)?
                .use_server_name_indication(true)
                .verify_hostname(false);
            let s = tokio_boring::connect(cfg, &host, tcp)
                .await
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            Ok(UpstreamIo(TokioIo::new(MaybeTls::Tls(Box::new(s)))))
        })
    }
}

/// An upstream connection as hyper's client wants it.
struct UpstreamIo(TokioIo<MaybeTls>);

impl Connection for UpstreamIo {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl hyper::rt::Read for UpstreamIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<Result<(), std::io::Error>> {
        Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for UpstreamIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<Result<usize, std::io::Error>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), std::io::Error>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), std::io::Error>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }
}
