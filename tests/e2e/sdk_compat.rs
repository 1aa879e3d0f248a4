//! The official ngrok Rust SDK (crate `ngrok` 0.19), unmodified, against a
//! real `gangway server`: the SDK is the compatibility target, so these tests
//! pin what an ngrok user sees when they point `server_addr` at Gangway.

use std::net::SocketAddr;

use bytes::Bytes;
use ngrok::config::{ForwarderBuilder, HttpTunnelBuilder};
use ngrok::forwarder::Forwarder;
use ngrok::tunnel::{EndpointInfo, HttpTunnel, TunnelCloser};
// The SDK's own error trait: `error_code()` lifts the `ERR_NGROK_...` line
// out of the edge's error text.
use crate::support::{app, Server, DEADLINE};
use ngrok::Error as _;
use tokio::time::timeout;

const HELLO: &str = "hello from the local app";

/// Connects an SDK session the way a user of a self-hosted edge would:
/// custom server address and CA, nothing else.
async fn connect_sdk(
    server: &Server,
    authtoken: &str,
) -> Result<ngrok::Session, ngrok::session::ConnectError> {
    let mut builder = ngrok::Session::builder();
    builder
        .authtoken(authtoken)
        .server_addr(server.info.agent_addr.clone())
        .expect("agent_addr is a valid host:port")
        .ca_cert(Bytes::from(server.ca_pem()));
    // connect() gives up on its own only on errors; a hung handshake must
    // still fail the test rather than the CI job.
    timeout(DEADLINE, builder.connect())
        .await
        .expect("SDK connect timed out")
}

/// Binds `builder` and lets the SDK's own forwarder carry connections to
/// the local app, so the proxy streams are handled by SDK code, not ours.
async fn forward_to_app(builder: &HttpTunnelBuilder, app: SocketAddr) -> Forwarder<HttpTunnel> {
    // `url` is not a dev-dependency; reqwest re-exports the same `url::Url`
    // (one url 2.x in Cargo.lock) that the SDK's signature names.
    let to = reqwest::Url::parse(&format!("http://{app}")).expect("app url");
    timeout(DEADLINE, builder.listen_and_forward(to))
        .await
        .expect("SDK bind timed out")
        .expect("SDK bind")
}

/// `base_domain[:port]` as the edge writes it at the end of public URLs
/// (the port is left out only when it is the scheme's default).
fn public_suffix(server: &Server) -> String {
    let port = server.https_addr().port();
    if port == 443 {
        server.info.base_domain.clone()
    } else {
        format!("{}:{port}", server.info.base_domain)
    }
}

async fn get_hello(server: &Server, url: &str) {
    let resp = server
        .client()
        .get(format!("{url}/hello"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}/hello: {e}\nserver log:\n{}", server.log()));
    assert_eq!(
        resp.status(),
        200,
        "GET {url}/hello\nserver log:\n{}",
        server.log()
    );
    assert_eq!(resp.text().await.expect("body"), HELLO);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ngrok_sdk_http_endpoint_serves_through_edge() {
    let server = Server::start().await;
    let app = app::start().await;
    let session = match connect_sdk(&server, &server.info.authtoken).await {
        Ok(s) => s,
        Err(e) => panic!("SDK session refused: {e:?}\nserver log:\n{}", server.log()),
    };

    let fwd = forward_to_app(&session.http_endpoint(), app).await;
    let url = fwd.url().to_string();
    assert!(url.starts_with("https://"), "SDK endpoint URL {url}");
    assert!(
        url.ends_with(&format!(".{}", public_suffix(&server))),
        "SDK endpoint URL {url} is not under {}",
        public_suffix(&server)
    );

    get_hello(&server, &url).await;
    // A second request proves the tunnel outlives its first proxy stream.
    get_hello(&server, &url).await;

    // A request body has to travel edge -> SDK -> app and back.
    let body = "ping through the ngrok sdk";
    let resp = server
        .client()
        .post(format!("{url}/echo"))
        .body(body)
        .send()
        .await
        .expect("POST /echo");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.expect("echo body"), body);

    drop(fwd);
    drop(session);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ngrok_sdk_with_domain_and_wrong_token() {
    let server = Server::start().await;
    let app = app::start().await;
    let session = match connect_sdk(&server, &server.info.authtoken).await {
        Ok(s) => s,
        Err(e) => panic!("SDK session refused: {e:?}\nserver log:\n{}", server.log()),
    };

    // (a) A requested domain is honoured exactly.
    let domain = format!("fixed-name.{}", server.info.base_domain);
    let mut builder = session.http_endpoint();
    builder.domain(domain.clone());
    let fwd = forward_to_app(&builder, app).await;
    let port = server.https_addr().port();
    let expected = if port == 443 {
        format!("https://{domain}")
    } else {
        format!("https://{domain}:{port}")
    };
    assert_eq!(fwd.url(), expected);
    get_hello(&server, &expected).await;

    // (b) A wrong authtoken is refused at connect time with the ngrok code
    // the SDK surfaces to users.
    match connect_sdk(&server, "definitely-not-the-token").await {
        Ok(_) => panic!("a session with a wrong authtoken was accepted"),
        Err(e) => {
            assert!(
                matches!(e, ngrok::session::ConnectError::Auth(_)),
                "expected an Auth error, got {e:?}"
            );
            assert_eq!(e.error_code(), Some("ERR_NGROK_107"), "error: {e:?}");
        }
    }

    // (c) The refused session must not disturb the healthy one.
    get_hello(&server, &expected).await;

    drop(fwd);
    drop(session);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ngrok_sdk_tunnel_close_unbinds() {
    let server = Server::start().await;
    let app = app::start().await;
    let session = match connect_sdk(&server, &server.info.authtoken).await {
        Ok(s) => s,
        Err(e) => panic!("SDK session refused: {e:?}\nserver log:\n{}", server.log()),
    };

    // Explicit close: the SDK sends Unbind and waits for the reply.
    let mut closed = forward_to_app(&session.http_endpoint(), app).await;
    let closed_url = closed.url().to_string();
    get_hello(&server, &closed_url).await;
    timeout(DEADLINE, closed.close())
        .await
        .expect("close timed out")
        .expect("SDK close (Unbind)");
    expect_unbound(&server, &closed_url).await;

    // Drop: the SDK unbinds from a background task, so only eventually.
    let dropped = forward_to_app(&session.http_endpoint(), app).await;
    let dropped_url = dropped.url().to_string();
    get_hello(&server, &dropped_url).await;
    drop(dropped);
    expect_unbound(&server, &dropped_url).await;

    // The session itself survives its tunnels and can bind again.
    let again = forward_to_app(&session.http_endpoint(), app).await;
    get_hello(&server, again.url()).await;

    drop(again);
    drop(session);
}

/// Waits until `url` stops being served, then checks it is the edge's own
/// "endpoint not found" answer rather than some other failure.
async fn expect_unbound(server: &Server, url: &str) {
    let client = server.client();
    let (status, code) = crate::support::eventually("the endpoint to be unbound", || {
        let client = client.clone();
        let url = url.to_string();
        async move {
            let resp = client.get(format!("{url}/hello")).send().await.ok()?;
            // 200: still bound. 502 ERR_NGROK_3004: a request that raced
            // the unbind reached the SDK after it dropped the listener (it
            // closes such streams at once) — also not yet unbound.
            let raced = resp.status() == 502
                && resp
                    .headers()
                    .get("ngrok-error-code")
                    .is_some_and(|c| c == "ERR_NGROK_3004");
            if resp.status() == 200 || raced {
                return None;
            }
            let code = resp
                .headers()
                .get("ngrok-error-code")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            Some((resp.status().as_u16(), code))
        }
    })
    .await;
    assert_eq!(
        status,
        404,
        "after unbind {url}\nserver log:\n{}",
        server.log()
    );
    assert_eq!(code.as_deref(), Some("ERR_NGROK_3200"));
}
