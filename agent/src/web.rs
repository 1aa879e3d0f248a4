//! The agent's local web interface (`web_addr`, 127.0.0.1:4040 by
//! default): the inspection UI (one embedded page, works offline), its
//! live event stream, and the agent API under `/api` in the ngrok agent's
//! shapes.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use gangway_config::codes::{self, Code};

use crate::inspect::News;
use crate::state::{AgentState, ControlError};
use crate::tunnels::TunnelSpec;

/// The inspection UI: HTML, CSS and JS in one file.
const UI_HTML: &str = include_str!("web/ui.html");
/// Largest API request body.
const MAX_API_BODY: usize = 16 * 1024 * 1024;
/// An idle event stream gets a comment line this often, so that nothing
/// in between times it out.
const SSE_KEEPALIVE: Duration = Duration::from_secs(15);
/// When the default port is taken, the next ones are tried (as ngrok
/// does: 4040, 4041, ...).
const PORT_ATTEMPTS: u16 = 10;

/// Turns an API tunnel definition (the config file's tunnel keys, with
/// `name`) into the tunnels to start; the error says which key is wrong.
pub type TunnelParser = Arc<dyn Fn(&Value) -> Result<Vec<TunnelSpec>, String> + Send + Sync>;

type Body = BoxBody<Bytes, Infallible>;

/// Binds `addr`; with `next_free`, a taken port moves on to the next ones.
pub async fn bind(addr: &str, next_free: bool) -> std::io::Result<TcpListener> {
    let first: SocketAddr = tokio::net::lookup_host(addr)
        .await?
        .next()
        .ok_or_else(|| std::io::Error::other(format!("{addr}: no address")))?;
    let attempts = if next_free { PORT_ATTEMPTS } else { 1 };
    let mut last = None;
    for i in 0..attempts {
        let mut a = first;
        a.set_port(first.port().saturating_add(i));
        match TcpListener::bind(a).await {
            Ok(l) => return Ok(l),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no port to try")))
}

/// Serves the web interface on `listener` until `shutdown`. Besides
/// localhost and IP addresses, `allow_hosts` (`web_allow_hosts`) names the
/// `Host`s it answers.
pub async fn serve(
    listener: TcpListener,
    state: Arc<AgentState>,
    parse_tunnel: TunnelParser,
    allow_hosts: Vec<String>,
    shutdown: CancellationToken,
) {
    if let Ok(a) = listener.local_addr() {
        info!(addr = %a, "web interface listening");
    }
    let web = Arc::new(Web {
        state,
        parse_tunnel,
        allow_hosts,
        shutdown: shutdown.clone(),
    });
    loop {
        let (tcp, _) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    debug!(error = %e, "web accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => return,
        };
        let web = web.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let web = web.clone();
                async move { Ok::<_, Infallible>(web.handle(req).await) }
            });
            let conn =
                hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tcp), svc);
            if let Err(e) = conn.await {
                debug!(error = %e, "web connection ended with error");
            }
        });
    }
}

struct Web {
    state: Arc<AgentState>,
    parse_tunnel: TunnelParser,
    allow_hosts: Vec<String>,
    shutdown: CancellationToken,
}

/// The agent API's error object.
fn error(code: Code, msg: &str, err: impl std::fmt::Display) -> Response<Body> {
    let status = StatusCode::from_u16(code.status).unwrap_or(StatusCode::BAD_REQUEST);
    let err = err.to_string();
    let mut details = serde_json::Map::new();
    if !err.is_empty() {
        details.insert("err".into(), json!(err));
    }
    json_response(
        status,
        &json!({
            "error_code": code.number,
            "status_code": status.as_u16(),
            "msg": msg,
            "details": details,
        }),
    )
}

fn json_response(status: StatusCode, v: &Value) -> Response<Body> {
    let mut body = serde_json::to_vec_pretty(v).unwrap_or_default();
    body.push(b'\n');
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).boxed()
}

fn no_content() -> Response<Body> {
    let mut r = Response::new(full(Bytes::new()));
    *r.status_mut() = StatusCode::NO_CONTENT;
    r
}

fn not_found(what: &str) -> Response<Body> {
    error(codes::AGENT_API_NOT_FOUND, "not found", what)
}

fn method_not_allowed(allow: &'static str) -> Response<Body> {
    let mut r = error(
        codes::AGENT_API_METHOD_NOT_ALLOWED,
        "method not allowed",
        format!("allowed: {allow}"),
    );
    r.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    r
}

/// Only names that resolve to this machine, and those the user listed,
/// may reach the UI: a page on another site that rebinds its DNS name to
/// 127.0.0.1 must not read captured traffic.
fn host_allowed(req: &Request<Incoming>, allow_hosts: &[String]) -> bool {
    let Some(host) = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
    else {
        return true;
    };
    let name = match host.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    };
    let name = name.trim_start_matches('[').trim_end_matches(']');
    name.eq_ignore_ascii_case("localhost")
        || name.to_ascii_lowercase().ends_with(".localhost")
        || name.parse::<std::net::IpAddr>().is_ok()
        || allow_hosts.iter().any(|h| h.eq_ignore_ascii_case(name))
}

/// Reads a JSON API body; only `application/json` is accepted, which also
/// keeps other sites' plain form posts out.
async fn json_body(req: Request<Incoming>) -> Result<Value, Response<Body>> {
    let ct = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = ct.split(';').next().unwrap_or("").trim();
    if !essence.eq_ignore_ascii_case("application/json") {
        return Err(error(
            codes::AGENT_API_UNSUPPORTED_MEDIA_TYPE,
            "only application/json request bodies are accepted",
            format!("Content-Type was {ct:?}"),
        ));
    }
    let bytes = Limited::new(req.into_body(), MAX_API_BODY)
        .collect()
        .await
        .map_err(|e| {
            error(
                codes::AGENT_API_BAD_REQUEST,
                "could not read the request body",
                e,
            )
        })?
        .to_bytes();
    serde_json::from_slice(&bytes).map_err(|e| {
        error(
            codes::AGENT_API_BAD_REQUEST,
            "the request body is not valid JSON",
            e,
        )
    })
}

fn query_param(req: &Request<Incoming>, key: &str) -> Option<String> {
    req.uri().query()?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == key).then(|| {
            percent_encoding::percent_decode_str(&v.replace('+', " "))
                .decode_utf8_lossy()
                .into_owned()
        })
    })
}

impl Web {
    async fn handle(&self, req: Request<Incoming>) -> Response<Body> {
        if !host_allowed(&req, &self.allow_hosts) {
            return error(codes::AGENT_API_FORBIDDEN_HOST,
                "this Host is not allowed; use localhost or an IP address, or list it in web_allow_hosts",
                "",
            );
        }
        let path = req.uri().path().to_string();
        let segments: Vec<String> = path
            .trim_start_matches('/')
            .split('/')
            .map(|s| {
                percent_encoding::percent_decode_str(s)
                    .decode_utf8_lossy()
                    .into_owned()
            })
            .collect();
        let seg: Vec<&str> = segments.iter().map(String::as_str).collect();
        let m = req.method().clone();
        match (seg.as_slice(), &m) {
            ([""] | ["inspect", "http"] | ["status"], &Method::GET | &Method::HEAD) => ui_page(),
            ([""] | ["inspect", "http"] | ["status"], _) => method_not_allowed("GET, HEAD"),
            (["api", "tunnels"], &Method::GET) => self.list_tunnels(),
            (["api", "tunnels"], &Method::POST) => self.start_tunnel(req).await,
            (["api", "tunnels"], _) => method_not_allowed("GET, POST"),
            (["api", "tunnels", name], &Method::GET) => match self.state.tunnel(name) {
                Some(t) => json_response(StatusCode::OK, &t.to_json()),
                None => not_found(&format!("no tunnel named {name:?}")),
            },
            (["api", "tunnels", name], &Method::DELETE) => self.stop_tunnel(name).await,
            (["api", "tunnels", _], _) => method_not_allowed("GET, DELETE"),
            (["api", "requests", "http"], &Method::GET) => self.list_requests(&req),
            (["api", "requests", "http"], &Method::POST) => self.replay(req).await,
            (["api", "requests", "http"], &Method::DELETE) => {
                self.state.inspector.clear();
                no_content()
            }
            (["api", "requests", "http"], _) => method_not_allowed("GET, POST, DELETE"),
            (["api", "requests", "http", id], &Method::GET) => match self.state.inspector.get(id) {
                Some(e) => json_response(StatusCode::OK, &e.to_json()),
                None => not_found(&format!("no captured request with id {id:?}")),
            },
            (["api", "requests", "http", _], _) => method_not_allowed("GET"),
            (["api", "status"], &Method::GET) => self.status(),
            (["api", "events"], &Method::GET) => self.events(),
            _ => not_found(&format!("no such page: {path}")),
        }
    }

    fn list_tunnels(&self) -> Response<Body> {
        let tunnels: Vec<Value> = self.state.tunnels().iter().map(|t| t.to_json()).collect();
        json_response(
            StatusCode::OK,
            &json!({"tunnels": tunnels, "uri": "/api/tunnels"}),
        )
    }

    async fn start_tunnel(&self, req: Request<Incoming>) -> Response<Body> {
        let def = match json_body(req).await {
            Ok(v) => v,
            Err(r) => return r,
        };
        let invalid = |e: &str| {
            error(
                codes::AGENT_API_INVALID_TUNNEL,
                "invalid tunnel configuration",
                e,
            )
        };
        let specs = match (self.parse_tunnel)(&def) {
            Ok(s) if !s.is_empty() => s,
            Ok(_) => return invalid("no tunnel to start"),
            Err(e) => return invalid(&e),
        };
        match self.state.start_tunnels(specs).await {
            Ok(started) => match started.first() {
                Some(t) => json_response(StatusCode::CREATED, &t.to_json()),
                None => error(
                    codes::AGENT_API_START_FAILED,
                    "failed to start tunnel",
                    "the tunnel stopped as it started",
                ),
            },
            Err(ControlError::Invalid(e)) => invalid(&e),
            Err(e) => error(codes::AGENT_API_START_FAILED, "failed to start tunnel", e),
        }
    }

    async fn stop_tunnel(&self, name: &str) -> Response<Body> {
        match self.state.stop_tunnel(name).await {
            Ok(()) => no_content(),
            Err(ControlError::NotFound(_)) => not_found(&format!("no tunnel named {name:?}")),
            Err(e) => error(codes::AGENT_API_START_FAILED, "failed to stop tunnel", e),
        }
    }

    fn list_requests(&self, req: &Request<Incoming>) -> Response<Body> {
        let limit = match query_param(req, "limit").map(|l| l.parse::<usize>()) {
            None => None,
            Some(Ok(n)) => Some(n),
            Some(Err(_)) => {
                return error(
                    codes::AGENT_API_BAD_REQUEST,
                    "limit must be a non-negative integer",
                    "",
                )
            }
        };
        let tunnel = query_param(req, "tunnel_name");
        let requests: Vec<Value> = self
            .state
            .inspector
            .list(limit, tunnel.as_deref())
            .iter()
            .map(|e| e.to_json())
            .collect();
        json_response(
            StatusCode::OK,
            &json!({"uri": "/api/requests/http", "requests": requests}),
        )
    }

    /// `POST /api/requests/http {"id", "tunnel_name"?, "modify"?}`: sends
    /// a captured request to its tunnel's app again, as it was or edited.
    async fn replay(&self, req: Request<Incoming>) -> Response<Body> {
        let body = match json_body(req).await {
            Ok(v) => v,
            Err(r) => return r,
        };
        let bad = |msg: &str, err: &str| error(codes::AGENT_API_BAD_REQUEST, msg, err);
        let Some(id) = body.get("id").and_then(Value::as_str) else {
            return bad("missing \"id\" of the request to replay", "");
        };
        let Some(ex) = self.state.inspector.get(id) else {
            return not_found(&format!("no captured request with id {id:?}"));
        };
        let tunnel_name = match body.get("tunnel_name") {
            None | Some(Value::Null) => ex.tunnel_name.clone(),
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            Some(_) => return bad("tunnel_name must be a tunnel's name", ""),
        };
        let Some(tunnel) = self.state.tunnel(&tunnel_name) else {
            return not_found(&format!("no tunnel named {tunnel_name:?}"));
        };
        if !tunnel.route.http {
            return bad("only HTTP tunnels replay requests", &tunnel_name);
        }
        let modify = body.get("modify").filter(|m| !m.is_null());
        if ex.request.truncated() && modify.and_then(|m| m.get("body")).is_none() {
            return bad(
                "the captured body was truncated; replaying it would send part of it",
                &format!(
                    "kept {} of {} bytes",
                    ex.request.body.len(),
                    ex.request.body_len
                ),
            );
        }
        let edited = match crate::replay::build(&ex.request, modify) {
            Ok(r) => r,
            Err(e) => return bad("invalid modification", &e),
        };
        let Some(fwd) = self.state.forwarder() else {
            return error(
                codes::AGENT_API_REPLAY_FAILED,
                "the agent is not running",
                "",
            );
        };
        match fwd
            .replay(&tunnel.route, edited, &ex.remote_addr, &ex.id)
            .await
        {
            Ok(_) => no_content(),
            Err(e) => error(codes::AGENT_API_REPLAY_FAILED, "replay failed", e),
        }
    }

    fn status(&self) -> Response<Body> {
        let s = self.state.session();
        let ins = &self.state.inspector;
        json_response(
            StatusCode::OK,
            &json!({
                "version": env!("CARGO_PKG_VERSION"),
                "session": {
                    "status": s.status.as_str(),
                    "region": s.region,
                    "server_addr": s.server_addr,
                    "last_error": s.last_error,
                },
                "inspect": {
                    "count": ins.len(),
                    "bytes": ins.bytes(),
                    "limit_bytes": ins.limit_bytes(),
                },
            }),
        )
    }

    /// Server-sent events: `request` with each new capture, `clear`
    /// when the list was emptied.
    fn events(&self) -> Response<Body> {
        let news = self.state.inspector.subscribe();
        let inspector = self.state.inspector.clone();
        let shutdown = self.shutdown.clone();
        let stream = futures::stream::unfold(
            (news, inspector, shutdown, true),
            |(mut news, inspector, shutdown, first)| async move {
                if first {
                    // Headers go out at once; browsers then show the
                    // stream as open.
                    let hello = Bytes::from_static(b": connected\n\n");
                    return Some((Ok(Frame::data(hello)), (news, inspector, shutdown, false)));
                }
                loop {
                    let next = tokio::select! {
                        n = news.recv() => n,
                        _ = tokio::time::sleep(SSE_KEEPALIVE) => {
                            let ping = Bytes::from_static(b": keepalive\n\n");
                            return Some((Ok(Frame::data(ping)), (news, inspector, shutdown, false)));
                        }
                        _ = shutdown.cancelled() => return None,
                    };
                    let text = match next {
                        Ok(News::Recorded(id)) => match inspector.get(&id) {
                            Some(e) => format!("event: request\ndata: {}\n\n", e.to_json()),
                            None => continue,
                        },
                        Ok(News::Cleared) => "event: clear\ndata: {}\n\n".to_string(),
                        // Too slow a reader: tell it to reload the list.
                        Err(RecvError::Lagged(_)) => "event: reload\ndata: {}\n\n".to_string(),
                        Err(RecvError::Closed) => return None,
                    };
                    return Some((
                        Ok::<_, Infallible>(Frame::data(Bytes::from(text))),
                        (news, inspector, shutdown, false),
                    ));
                }
            },
        );
        let mut r = Response::new(BodyExt::boxed(StreamBody::new(stream)));
        let h = r.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream"),
        );
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        r
    }
}

fn ui_page() -> Response<Body> {
    let mut r = Response::new(full(UI_HTML));
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // Everything is inline; nothing may load from elsewhere.
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src 'self' data:",
        ),
    );
    r
}
