//! Route modules end to end, through the edge and an official-SDK agent:
//! configured on API edge routes and as agent Bind options, each module
//! blocks and allows as MODULES.md says, and every request leaves an event
//! with the modules' decisions.

use std::io::Read;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::support::{events, eventually, id, LabeledEdge, Server, DEADLINE};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::Router;
use ngrok::config::ForwarderBuilder;
use ngrok::prelude::*;
use serde_json::{json, Value};
use tokio::sync::Notify;
use tokio::time::timeout;

/// What the test steers in the app.
#[derive(Default)]
struct Ctl {
    /// `/flaky` answers 500 while set.
    fail: AtomicBool,
    /// `/stream` sends its second half after this.
    release: Notify,
}

/// Compressible text: the first half of `/stream`, and `/big`.
fn text(n: usize, seed: &str) -> Vec<u8> {
    (0..n)
        .flat_map(|i| format!("{seed} line {i} of a compressible body\n").into_bytes())
        .collect()
}

async fn app(ctl: Arc<Ctl>) -> SocketAddr {
    async fn headers(h: HeaderMap) -> axum::Json<Value> {
        let mut out = serde_json::Map::new();
        for (k, v) in &h {
            let list = out
                .entry(k.as_str().to_string())
                .or_insert_with(|| json!([]));
            if let Some(a) = list.as_array_mut() {
                a.push(json!(v.to_str().unwrap_or("")));
            }
        }
        axum::Json(Value::Object(out))
    }
    async fn flaky(State(ctl): State<Arc<Ctl>>) -> Response {
        if ctl.fail.load(Ordering::SeqCst) {
            (StatusCode::INTERNAL_SERVER_ERROR, "down").into_response()
        } else {
            "up".into_response()
        }
    }
    async fn stream(State(ctl): State<Arc<Ctl>>) -> Response {
        let body = async_stream(ctl);
        Response::new(Body::from_stream(body))
    }
    fn async_stream(
        ctl: Arc<Ctl>,
    ) -> impl futures::Stream<Item = Result<bytes::Bytes, std::io::Error>> {
        futures::stream::unfold(0u8, move |step| {
            let ctl = ctl.clone();
            async move {
                match step {
                    0 => Some((Ok(bytes::Bytes::from(text(2000, "first"))), 1)),
                    1 => {
                        ctl.release.notified().await;
                        Some((Ok(bytes::Bytes::from(text(2000, "second"))), 2))
                    }
                    _ => None,
                }
            }
        })
    }
    async fn resp() -> Response {
        ([("x-app-secret", "s3cret"), ("x-app-keep", "kept")], "resp").into_response()
    }
    async fn echo(req: Request) -> Response {
        let body = axum::body::to_bytes(req.into_body(), usize::MAX)
            .await
            .unwrap_or_default();
        body.into_response()
    }
    let router = Router::new()
        .route("/headers", any(headers))
        .route("/flaky", any(flaky))
        .route("/stream", any(stream))
        .route("/big", any(|| async { text(5000, "big") }))
        .route("/resp", any(resp))
        .route("/echo", any(echo))
        .with_state(ctl);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind app");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    addr
}

fn code(r: &reqwest::Response) -> String {
    r.headers()
        .get("ngrok-error-code")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

/// Waits for an event matching `pred`.
async fn event_where(path: &Path, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    eventually(what, || {
        let found = events(path).into_iter().find(|e| pred(e));
        async move { found }
    })
    .await
}

fn gunzip(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(b)
        .read_to_end(&mut out)
        .expect("gzip decodes");
    out
}

/// An edge with one route per module under test, served by one labeled
/// SDK tunnel.
struct EdgeUnderTest {
    base: String,
    edge_id: String,
    routes: std::collections::HashMap<&'static str, String>,
    _tunnel: ngrok::forwarder::Forwarder<ngrok::tunnel::LabeledTunnel>,
    _session: ngrok::Session,
}

async fn edge_with_routes(
    server: &Server,
    app: SocketAddr,
    prefixes: &[&'static str],
) -> EdgeUnderTest {
    let edge = LabeledEdge::create(server, "mods").await;
    let mut routes = std::collections::HashMap::new();
    for p in prefixes {
        let r = edge.route(server, p, json!({})).await;
        routes.insert(*p, id(&r));
    }
    let session = server.sdk_session().await;
    let tunnel = edge.serve(&session, app).await;
    let base = edge.base_url.clone();
    let edge_id = edge.edge_id.clone();
    let client = server.client();
    let probe = format!("{base}/resp");
    eventually("edge serves", || {
        let c = client.clone();
        let u = probe.clone();
        async move { c.get(u).send().await.ok().filter(|r| r.status() == 200) }
    })
    .await;
    EdgeUnderTest {
        base,
        edge_id,
        routes,
        _tunnel: tunnel,
        _session: session,
    }
}

impl EdgeUnderTest {
    fn module(&self, prefix: &str, module: &str) -> String {
        format!(
            "/edges/https/{}/routes/{}/{module}",
            self.edge_id, self.routes[prefix]
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_route_modules_block_allow_and_emit_events() {
    let events_dir = tempfile::tempdir().expect("tempdir");
    let events_file = events_dir.path().join("events.jsonl");
    let server = Server::start_with(&["--events", events_file.to_str().expect("path")]).await;
    let ctl = Arc::new(Ctl::default());
    let app = app(ctl.clone()).await;
    let e = edge_with_routes(&server, app, &["/", "/flaky"]).await;
    let api = server.api();
    let client = server.client();
    let url = |p: &str| format!("{}{p}", e.base);

    // user_agent_filter: deny wins unless an allow matches.
    let (s, v) = api
        .put(
            &e.module("/", "user_agent_filter"),
            json!({"allow": ["(?i)goodbot"], "deny": ["(?i)bot"]}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let with_ua = |ua: &'static str| {
        let c = client.clone();
        let u = url("/resp");
        async move { c.get(u).header("user-agent", ua).send().await.expect("get") }
    };
    eventually("ua filter applied", || async {
        let r = with_ua("EvilBot/1.0").await;
        (r.status() == 403 && code(&r) == "ERR_NGROK_3211").then_some(())
    })
    .await;
    assert_eq!(with_ua("GoodBot/2.0").await.status(), 200);
    assert_eq!(with_ua("Mozilla/5.0").await.status(), 200);
    event_where(&events_file, "ua block event", |ev| {
        ev["object"]["user_agent_filter"]["decision"] == "block"
            && ev["object"]["http"]["request"]["user_agent"] == "EvilBot/1.0"
    })
    .await;

    // request_headers: remove, then add (interpolated), before upstream.
    let (s, v) = api
        .put(
            &e.module("/", "request_headers"),
            json!({"add": {"X-Client": "${conn.client_ip}", "x-path": "${req.url.path}"}, "remove": ["X-Secret"]}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let seen: Value = eventually("request headers applied", || async {
        let r = client
            .get(url("/headers"))
            .header("x-secret", "leak")
            .header("user-agent", "test")
            .send()
            .await
            .ok()?;
        let v: Value = serde_json::from_slice(&r.bytes().await.ok()?).ok()?;
        v.get("x-client").is_some().then_some(v)
    })
    .await;
    assert_eq!(seen["x-client"], json!(["127.0.0.1"]), "{seen}");
    assert_eq!(seen["x-path"], json!(["/headers"]), "{seen}");
    assert!(
        seen.get("x-secret").is_none(),
        "removed before upstream: {seen}"
    );

    // response_headers: the app's secret header is dropped, one added.
    api.put(
        &e.module("/", "response_headers"),
        json!({"add": {"x-edge": "gangway"}, "remove": ["x-app-secret"]}),
    )
    .await;
    let r = eventually("response headers applied", || async {
        let r = client
            .get(url("/resp"))
            .header("user-agent", "test")
            .send()
            .await
            .ok()?;
        r.headers().contains_key("x-edge").then_some(r)
    })
    .await;
    assert!(r.headers().get("x-app-secret").is_none());
    assert_eq!(r.headers()["x-app-keep"], "kept");

    // compression: gzip and deflate decode to the original bytes.
    assert_eq!(
        api.put(&e.module("/", "compression"), json!({})).await.0,
        200
    );
    let big = text(5000, "big");
    let r = eventually("compression applied", || async {
        let r = client
            .get(url("/big"))
            .header("accept-encoding", "gzip;q=1, deflate;q=0.5")
            .header("user-agent", "test")
            .send()
            .await
            .ok()?;
        (r.headers().get("content-encoding").map(|v| v.as_bytes()) == Some(b"gzip")).then_some(r)
    })
    .await;
    assert_eq!(r.headers()["vary"], "Accept-Encoding");
    assert!(r.headers().get("content-length").is_none());
    let wire = r.bytes().await.expect("body");
    assert!(wire.len() < big.len() / 4, "compressed: {}", wire.len());
    assert_eq!(gunzip(&wire), big);
    // HTTP/1.1 keep-alive clients (wrk, nginx upstreams) need chunked
    // framing; two requests on one connection both decode.
    let h1 = server.client_builder().http1_only().build().expect("h1");
    for _ in 0..2 {
        let r = h1
            .get(url("/big"))
            .header("accept-encoding", "gzip")
            .header("user-agent", "test")
            .send()
            .await
            .expect("h1 get");
        assert_eq!(r.version(), reqwest::Version::HTTP_11);
        assert_eq!(r.headers()["transfer-encoding"], "chunked");
        assert_eq!(gunzip(&r.bytes().await.expect("body")), big);
    }
    let r = client
        .get(url("/big"))
        .header("accept-encoding", "deflate")
        .header("user-agent", "test")
        .send()
        .await
        .expect("get");
    assert_eq!(r.headers()["content-encoding"], "deflate");
    let mut plain = Vec::new();
    flate2::read::ZlibDecoder::new(&r.bytes().await.expect("body")[..])
        .read_to_end(&mut plain)
        .expect("zlib decodes");
    assert_eq!(plain, big);
    let r = client
        .get(url("/big"))
        .header("user-agent", "test")
        .send()
        .await
        .expect("get");
    assert!(
        r.headers().get("content-encoding").is_none(),
        "no Accept-Encoding, no coding"
    );
    assert_eq!(r.bytes().await.expect("body"), big);

    // Compression streams: the first compressed bytes arrive while the
    // app still holds back its second half.
    let mut r = client
        .get(url("/stream"))
        .header("accept-encoding", "gzip")
        .header("user-agent", "test")
        .send()
        .await
        .expect("get");
    assert_eq!(r.headers()["content-encoding"], "gzip");
    let first = timeout(Duration::from_secs(10), r.chunk())
        .await
        .expect("first compressed bytes before the upstream finished")
        .expect("chunk")
        .expect("some bytes");
    let mut wire = first.to_vec();
    ctl.release.notify_one();
    while let Some(c) = r.chunk().await.expect("chunk") {
        wire.extend_from_slice(&c);
    }
    let mut expected = text(2000, "first");
    expected.extend(text(2000, "second"));
    assert_eq!(gunzip(&wire), expected);
    let ev = event_where(&events_file, "compression event", |ev| {
        ev["object"]["compression"]["algorithm"] == "gzip"
    })
    .await;
    assert!(
        ev["object"]["compression"]["bytes_saved"]
            .as_i64()
            .unwrap_or(0)
            > 0,
        "{ev}"
    );

    // circuit_breaker on its own route: trips on upstream 5xx, answers
    // 503 while open, lets one probe through after tripped_duration.
    let (s, v) = api
        .put(
            &e.module("/flaky", "circuit_breaker"),
            json!({"volume_threshold": 4, "error_threshold_percentage": 0.5,
                   "tripped_duration": 2, "rolling_window": 10, "num_buckets": 10}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    // Config reaches the edge asynchronously: wait until the breaker
    // decides (its decision shows in the event).
    eventually("breaker configured", || async {
        client.get(url("/flaky")).send().await.ok()?;
        events(&events_file)
            .iter()
            .any(|ev| ev["object"]["circuit_breaker"]["decision"] == "allow")
            .then_some(())
    })
    .await;
    ctl.fail.store(true, Ordering::SeqCst);
    let mut statuses = Vec::new();
    for _ in 0..6 {
        let r = client.get(url("/flaky")).send().await.expect("get");
        statuses.push((r.status().as_u16(), code(&r)));
    }
    assert_eq!(statuses[0].0, 500, "{statuses:?}");
    assert!(
        statuses.contains(&(503, "ERR_NGROK_3202".to_string())),
        "tripped: {statuses:?}"
    );
    assert_eq!(statuses.last().map(|s| s.0), Some(503), "{statuses:?}");
    ctl.fail.store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(2300)).await;
    let r = client.get(url("/flaky")).send().await.expect("probe");
    assert_eq!(r.status(), 200, "the probe goes through and succeeds");
    let r = client.get(url("/flaky")).send().await.expect("after probe");
    assert_eq!(r.status(), 200, "a good probe closes the breaker");
    event_where(&events_file, "breaker block event", |ev| {
        ev["object"]["circuit_breaker"]["decision"] == "block"
    })
    .await;
    event_where(&events_file, "breaker probe event", |ev| {
        ev["object"]["circuit_breaker"]["decision"] == "allow_while_open"
    })
    .await;

    // Events carry the connection and request too.
    let ev = event_where(&events_file, "full event", |ev| {
        ev["object"]["http"]["request"]["url"]["path"] == "/big"
    })
    .await;
    assert_eq!(ev["event_type"], "http_request_complete.v0");
    assert!(ev["event_id"]
        .as_str()
        .is_some_and(|s| s.starts_with("ev_")));
    assert_eq!(ev["object"]["conn"]["client_ip"], "127.0.0.1");
    assert_eq!(ev["object"]["http"]["request"]["method"], "get");
    assert_eq!(ev["object"]["http"]["response"]["status_code"], 200);
    assert!(ev["object"]["tls"]["version"].as_str().is_some(), "{ev}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_module_config_is_refused_and_the_edge_keeps_serving() {
    let server = Server::start().await;
    let ctl = Arc::new(Ctl::default());
    let app = app(ctl).await;
    let e = edge_with_routes(&server, app, &["/"]).await;
    let api = server.api();
    let client = server.client();
    let ua = e.module("/", "user_agent_filter");
    assert_eq!(api.put(&ua, json!({"deny": ["^curl/"]})).await.0, 200);
    let blocked = format!("{}/resp", e.base);
    eventually("filter live", || async {
        let r = client
            .get(&blocked)
            .header("user-agent", "curl/8")
            .send()
            .await
            .ok()?;
        (r.status() == 403).then_some(())
    })
    .await;
    let cases = [
        (
            "user_agent_filter",
            json!({"deny": ["ok", "(unclosed"]}),
            "user_agent_filter.deny[1]",
        ),
        (
            "request_headers",
            json!({"add": {"bad header": "v"}}),
            "request_headers.add.bad header",
        ),
        (
            "request_headers",
            json!({"add": {"x-a": "${nope.var}"}}),
            "request_headers.add.x-a",
        ),
        (
            "response_headers",
            json!({"remove": ["user-agent"]}),
            "response_headers.remove[0]",
        ),
        (
            "webhook_verification",
            json!({"provider": "myspace", "secret": "s"}),
            "webhook_verification.provider",
        ),
        (
            "webhook_verification",
            json!({"provider": "github"}),
            "webhook_verification.secret",
        ),
        (
            "circuit_breaker",
            json!({"num_buckets": 500}),
            "circuit_breaker.num_buckets",
        ),
        (
            "circuit_breaker",
            json!({"error_threshold_percentage": 1.5}),
            "circuit_breaker.error_threshold_percentage",
        ),
        (
            "ip_restriction",
            json!({"ip_policy_ids": []}),
            "ip_restriction.ip_policy_ids",
        ),
    ];
    for (module, body, field) in cases {
        let (s, v) = api.put(&e.module("/", module), body.clone()).await;
        assert_eq!(s, 400, "{module} {body}: {v}");
        assert_eq!(v["details"]["field"], field, "{module} {body}: {v}");
    }
    // Nothing changed: the stored filter is intact and still enforced.
    let (s, v) = api.get(&ua).await;
    assert_eq!((s, &v["deny"]), (200, &json!(["^curl/"])), "{v}");
    let r = client
        .get(&blocked)
        .header("user-agent", "curl/8")
        .send()
        .await
        .expect("get");
    assert_eq!(
        (r.status().as_u16(), code(&r)),
        (403, "ERR_NGROK_3211".into())
    );
    let r = client
        .get(&blocked)
        .header("user-agent", "Mozilla/5.0")
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 200);
}

/// Starts an SDK HTTP endpoint built by `build`, forwarding to `app`.
async fn sdk_endpoint(
    session: &ngrok::Session,
    app: SocketAddr,
    build: impl FnOnce(&mut ngrok::config::HttpTunnelBuilder),
) -> ngrok::forwarder::Forwarder<ngrok::tunnel::HttpTunnel> {
    let mut b = session.http_endpoint();
    build(&mut b);
    let to = reqwest::Url::parse(&format!("http://{app}")).expect("url");
    timeout(DEADLINE, b.listen_and_forward(to))
        .await
        .expect("bind timed out")
        .expect("bind")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_bind_options_configure_the_same_modules() {
    let events_dir = tempfile::tempdir().expect("tempdir");
    let events_file = events_dir.path().join("events.jsonl");
    let server = Server::start_with(&["--events", events_file.to_str().expect("path")]).await;
    let ctl = Arc::new(Ctl::default());
    let app = app(ctl.clone()).await;
    let session = server.sdk_session().await;
    let client = server.client();

    // Every HTTP option the SDK has for these modules, on one endpoint.
    let fwd = sdk_endpoint(&session, app, |b| {
        b.allow_cidr("127.0.0.0/8")
            .deny_cidr("10.0.0.0/8")
            .deny_user_agent("(?i)badbot")
            .request_header("x-from-edge", "${conn.client_ip}")
            .remove_request_header("x-secret")
            .response_header("x-edge", "yes")
            .remove_response_header("x-app-secret")
            .compression()
            .circuit_breaker(0.5);
    })
    .await;
    let base = fwd.url().to_string();
    let r = client
        .get(format!("{base}/headers"))
        .header("x-secret", "leak")
        .header("user-agent", "test")
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-edge"], "yes");
    let seen: Value = serde_json::from_slice(&r.bytes().await.expect("body")).expect("json");
    assert_eq!(seen["x-from-edge"], json!(["127.0.0.1"]), "{seen}");
    assert!(seen.get("x-secret").is_none(), "{seen}");
    let r = client
        .get(format!("{base}/resp"))
        .header("user-agent", "BadBot")
        .send()
        .await
        .expect("get");
    assert_eq!(
        (r.status().as_u16(), code(&r)),
        (403, "ERR_NGROK_3211".into())
    );
    let r = client
        .get(format!("{base}/big"))
        .header("accept-encoding", "gzip")
        .header("user-agent", "test")
        .send()
        .await
        .expect("get");
    assert_eq!(r.headers()["content-encoding"], "gzip");
    assert!(r.headers().get("x-app-secret").is_none());
    assert_eq!(gunzip(&r.bytes().await.expect("body")), text(5000, "big"));
    let ev = event_where(&events_file, "sdk endpoint event", |ev| {
        ev["object"]["http"]["request"]["url"]["path"] == "/big"
    })
    .await;
    assert_eq!(ev["object"]["ip_policy"]["decision"], "allow", "{ev}");
    assert_eq!(ev["object"]["circuit_breaker"]["decision"], "allow", "{ev}");
    assert_eq!(ev["object"]["compression"]["algorithm"], "gzip", "{ev}");

    // A deny list that covers the client blocks it.
    let blocked = sdk_endpoint(&session, app, |b| {
        b.deny_cidr("127.0.0.1/32");
    })
    .await;
    let r = client
        .get(format!("{}/resp", blocked.url()))
        .send()
        .await
        .expect("get");
    assert_eq!(
        (r.status().as_u16(), code(&r)),
        (403, "ERR_NGROK_3205".into())
    );

    // The SDK breaker (error_threshold only, ngrok's other defaults:
    // 20 requests in 10 s) trips on 5xx.
    ctl.fail.store(true, Ordering::SeqCst);
    let mut last = 0;
    for _ in 0..25 {
        last = client
            .get(format!("{base}/flaky"))
            .header("user-agent", "test")
            .send()
            .await
            .expect("get")
            .status()
            .as_u16();
    }
    assert_eq!(last, 503, "tripped after the volume threshold");

    // Options that do not compile refuse the Bind with the field named.
    type Build = fn(&mut ngrok::config::HttpTunnelBuilder);
    let refused: [(Build, &str); 3] = [
        (
            |b| {
                b.allow_cidr("not-a-cidr");
            },
            "IPRestriction.allow_cidrs[0]",
        ),
        (
            |b| {
                b.deny_user_agent("(");
            },
            "UserAgentFilter.deny[0]",
        ),
        (
            |b| {
                b.webhook_verification("myspace", "s");
            },
            "WebhookVerification.provider",
        ),
    ];
    for (build, field) in refused {
        let mut b = session.http_endpoint();
        build(&mut b);
        let err = b
            .listen()
            .await
            .err()
            .expect("a bad option must refuse the bind");
        assert!(err.to_string().contains(field), "{field}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_ip_restriction_closes_blocked_connections_and_emits_events() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let events_dir = tempfile::tempdir().expect("tempdir");
    let events_file = events_dir.path().join("events.jsonl");
    let server = Server::start_with(&["--events", events_file.to_str().expect("path")]).await;
    let echo = crate::support::tls::local_tcp_server().await;
    let session = server.sdk_session().await;
    let to = reqwest::Url::parse(&format!("tcp://{echo}")).expect("url");
    let open = timeout(
        DEADLINE,
        session
            .tcp_endpoint()
            .allow_cidr("127.0.0.1/32")
            .listen_and_forward(to.clone()),
    )
    .await
    .expect("bind timed out")
    .expect("bind");
    let closed = timeout(
        DEADLINE,
        session
            .tcp_endpoint()
            .deny_cidr("127.0.0.0/8")
            .listen_and_forward(to),
    )
    .await
    .expect("bind timed out")
    .expect("bind");
    let addr = |u: &str| u.trim_start_matches("tcp://").to_string();

    let mut c = tokio::net::TcpStream::connect(addr(open.url()))
        .await
        .expect("connect");
    c.write_all(b"ping").await.expect("write");
    c.shutdown().await.expect("shutdown");
    let mut got = Vec::new();
    c.read_to_end(&mut got).await.expect("read");
    assert!(!got.is_empty(), "allowed client is served");

    let mut c = tokio::net::TcpStream::connect(addr(closed.url()))
        .await
        .expect("connect");
    let _ = c.write_all(b"ping").await;
    let mut got = Vec::new();
    let _ = timeout(Duration::from_secs(10), c.read_to_end(&mut got)).await;
    assert!(got.is_empty(), "blocked client gets nothing");

    let ev = event_where(&events_file, "tcp allow event", |ev| {
        ev["event_type"] == "tcp_connection_closed.v0"
            && ev["object"]["ip_policy"]["decision"] == "allow"
    })
    .await;
    assert_eq!(ev["object"]["conn"]["bytes_in"], 4, "{ev}");
    assert!(ev["object"]["conn"]["end_ts"].as_str().is_some(), "{ev}");
    event_where(&events_file, "tcp block event", |ev| {
        ev["event_type"] == "tcp_connection_closed.v0"
            && ev["object"]["ip_policy"]["decision"] == "block"
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_cli_flags_configure_modules() {
    let server = Server::start().await;
    let ctl = Arc::new(Ctl::default());
    let app = app(ctl).await;
    let agent = crate::support::Agent::http(
        &server,
        &app.to_string(),
        &[
            "--cidr-allow",
            "127.0.0.0/8",
            "--compression",
            "--request-header-add",
            "x-client:${conn.client_ip}",
            "--response-header-remove",
            "x-app-secret",
            "--ua-filter-deny",
            "(?i)curl",
            "--verify-webhook",
            "gitlab",
            "--verify-webhook-secret",
            "gl-token",
        ],
    )
    .await;
    let client = server.client();
    let get = |path: &str, ua: &'static str, token: Option<&'static str>| {
        let mut r = client
            .get(format!("{}{path}", agent.url))
            .header("user-agent", ua)
            .header("accept-encoding", "gzip");
        if let Some(t) = token {
            r = r.header("x-gitlab-token", t);
        }
        r.send()
    };
    let r = get("/headers", "Mozilla/5.0", Some("gl-token"))
        .await
        .expect("get");
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-encoding"], "gzip");
    let seen: Value =
        serde_json::from_slice(&gunzip(&r.bytes().await.expect("body"))).expect("json");
    assert_eq!(seen["x-client"], json!(["127.0.0.1"]), "{seen}");
    let r = get("/resp", "Mozilla/5.0", Some("gl-token"))
        .await
        .expect("get");
    assert!(r.headers().get("x-app-secret").is_none());
    let r = get("/resp", "curl/8.5", Some("gl-token"))
        .await
        .expect("get");
    assert_eq!(
        (r.status().as_u16(), code(&r)),
        (403, "ERR_NGROK_3211".into())
    );
    let r = get("/resp", "Mozilla/5.0", Some("wrong"))
        .await
        .expect("get");
    assert_eq!(
        (r.status().as_u16(), code(&r)),
        (403, "ERR_NGROK_3204".into())
    );

    let err = crate::support::agent_fails(
        &server,
        &["http", &app.to_string(), "--cidr-deny", "300.1.1.1/8"],
    )
    .await;
    assert!(err.contains("IPRestriction.deny_cidrs[0]"), "{err}");
    let err = crate::support::agent_fails(
        &server,
        &["http", &app.to_string(), "--verify-webhook", "github"],
    )
    .await;
    assert!(err.contains("WebhookVerification.secret"), "{err}");
}
