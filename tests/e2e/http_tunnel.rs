//! HTTP tunnels end to end: a real `gangway server`, a real `gangway http`
//! agent, a local axum app, and clients speaking HTTP/1.1, HTTP/2 and
//! WebSocket over real TLS with the dev CA.

use std::time::Duration;

use crate::support::{app, eventually, Agent, Server};
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_post_keepalive_and_forwarded_headers() {
    let server = Server::start().await;
    let app = app::start().await;
    let agent = Agent::http(&server, &app.to_string(), &[]).await;
    assert!(agent.url.starts_with("https://"), "{}", agent.url);
    assert!(
        agent.host().ends_with(".gangway.localhost"),
        "{}",
        agent.url
    );

    // One HTTP/1.1 client: several requests reuse its connection.
    let client = server
        .client_builder()
        .http1_only()
        .build()
        .expect("client");
    for _ in 0..3 {
        let r = client
            .get(format!("{}/hello", agent.url))
            .send()
            .await
            .expect("get");
        assert_eq!(r.status(), 200);
        assert_eq!(r.version(), http::Version::HTTP_11);
        assert_eq!(r.text().await.expect("body"), "hello from the local app");
    }
    let r = client
        .post(format!("{}/echo", agent.url))
        .body("ping-pong")
        .send()
        .await
        .expect("post");
    assert_eq!(r.text().await.expect("body"), "ping-pong");

    // Chunked request body (a stream of unknown length).
    let chunks = futures::stream::iter(["a", "bb", "ccc"].map(Ok::<_, std::io::Error>));
    let r = client
        .post(format!("{}/echo", agent.url))
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .expect("chunked post");
    assert_eq!(r.text().await.expect("body"), "abbccc");

    let headers = client
        .get(format!("{}/headers", agent.url))
        .send()
        .await
        .expect("headers")
        .text()
        .await
        .expect("body");
    assert!(headers.contains("x-forwarded-for: 127.0.0.1"), "{headers}");
    assert!(headers.contains("x-forwarded-proto: https"), "{headers}");
    let port = server.https_addr().port();
    assert!(
        headers.contains(&format!("x-forwarded-host: {}:{port}", agent.host())),
        "{headers}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_client_and_plain_http_listener() {
    let server = Server::start().await;
    let app = app::start().await;
    let agent = Agent::http(&server, &app.to_string(), &["--scheme", "http,https"]).await;

    let r = server
        .client()
        .get(format!("{}/hello", agent.url))
        .send()
        .await
        .expect("h2 get");
    assert_eq!(r.version(), http::Version::HTTP_2);
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.expect("body"), "hello from the local app");

    let r = server
        .client()
        .post(format!("{}/echo", agent.url))
        .body(vec![7u8; 300_000])
        .send()
        .await
        .expect("h2 post");
    assert_eq!(r.bytes().await.expect("body").len(), 300_000);

    // The same endpoint on the public HTTP listener.
    let url = format!(
        "http://{}:{}/hello",
        agent.host(),
        server.http_addr().port()
    );
    let r = server.client().get(url).send().await.expect("http get");
    assert_eq!(r.status(), 200);
    let headers = server
        .client()
        .get(format!(
            "http://{}:{}/headers",
            agent.host(),
            server.http_addr().port()
        ))
        .send()
        .await
        .expect("headers")
        .text()
        .await
        .expect("body");
    assert!(
        headers.contains("x-forwarded-proto: http\n")
            || headers.ends_with("x-forwarded-proto: http"),
        "{headers}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_host_is_404_with_code() {
    let server = Server::start().await;
    let url = format!(
        "https://nobody.gangway.localhost:{}/",
        server.https_addr().port()
    );
    let r = server.client().get(url).send().await.expect("get");
    assert_eq!(r.status(), 404);
    assert_eq!(r.headers()["ngrok-error-code"], "ERR_NGROK_3200");
    assert!(r
        .text()
        .await
        .expect("body")
        .contains("nobody.gangway.localhost"));
}

const HUNDRED_MB: u64 = 100 * 1024 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_megabytes_each_way_streamed() {
    let server = Server::start().await;
    let app = app::start().await;
    let agent = Agent::http(&server, &app.to_string(), &[]).await;
    let client = server
        .client_builder()
        .http1_only()
        .build()
        .expect("client");

    // Download: check every byte against the pattern as it arrives.
    let r = client
        .get(format!("{}/big?bytes={HUNDRED_MB}", agent.url))
        .send()
        .await
        .expect("download");
    assert_eq!(r.status(), 200);
    let mut body = r.bytes_stream();
    let mut n: u64 = 0;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.expect("chunk");
        for b in chunk.iter() {
            assert_eq!(*b, app::pattern_byte(n), "byte {n}");
            n += 1;
        }
    }
    assert_eq!(n, HUNDRED_MB);

    // Upload: generated on the fly, verified by the app as it streams.
    const CHUNK: u64 = 256 * 1024;
    let chunks = futures::stream::iter(
        (0..HUNDRED_MB / CHUNK)
            .map(|i| Ok::<_, std::io::Error>(app::pattern_chunk(i * CHUNK, CHUNK as usize))),
    );
    let r = client
        .post(format!("{}/upload", agent.url))
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .expect("upload");
    assert_eq!(r.text().await.expect("body"), format!("{HUNDRED_MB} ok"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_echo_over_wss_and_ws() {
    let server = Server::start().await;
    let app = app::start().await;
    let agent = Agent::http(&server, &app.to_string(), &["--scheme", "http,https"]).await;

    // wss: TLS to the public HTTPS listener, then the upgrade.
    let tls = tokio_rustls::TlsConnector::from(server.rustls_config(&[b"http/1.1"]));
    let tcp = tokio::net::TcpStream::connect(server.https_addr())
        .await
        .expect("tcp");
    let name = rustls::pki_types::ServerName::try_from(agent.host()).expect("name");
    let stream = tls.connect(name, tcp).await.expect("tls");
    let url = format!("wss://{}:{}/ws", agent.host(), server.https_addr().port());
    let (mut ws, resp) = tokio_tungstenite::client_async(url, stream)
        .await
        .expect("wss upgrade");
    assert_eq!(resp.status(), 101);
    ws.send(Message::Text("hi".into())).await.expect("send");
    let reply = ws.next().await.expect("reply").expect("frame");
    assert_eq!(reply.into_text().expect("text").as_str(), "echo: hi");
    let big = vec![42u8; 1 << 20];
    ws.send(Message::Binary(big.clone().into()))
        .await
        .expect("send binary");
    let reply = ws.next().await.expect("reply").expect("frame");
    assert_eq!(reply.into_data().len(), big.len());
    ws.close(None).await.expect("close");

    // ws on the plain HTTP listener.
    let tcp = tokio::net::TcpStream::connect(server.http_addr())
        .await
        .expect("tcp");
    let url = format!("ws://{}:{}/ws", agent.host(), server.http_addr().port());
    let (mut ws, _) = tokio_tungstenite::client_async(url, tcp)
        .await
        .expect("ws upgrade");
    ws.send(Message::Text("plain".into())).await.expect("send");
    let reply = ws.next().await.expect("reply").expect("frame");
    assert_eq!(reply.into_text().expect("text").as_str(), "echo: plain");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_agent_gives_502_and_restarted_agent_serves_same_url() {
    let server = Server::start().await;
    let app = app::start().await;
    let domain = "stable.gangway.localhost";
    let mut agent = Agent::http(&server, &app.to_string(), &["--domain", domain]).await;
    let url = agent.url.clone();
    assert_eq!(
        url,
        format!("https://{domain}:{}", server.https_addr().port())
    );
    let client = server.client();
    assert_eq!(client.get(&url).send().await.expect("get").status(), 200);

    agent.kill();
    // The edge notices the dead TLS connection and marks the endpoint
    // offline. (A request racing the death may get 502 ERR_NGROK_3004,
    // "failed mid-request", first.)
    let r = eventually("502 offline after agent death", || {
        let client = client.clone();
        let url = url.clone();
        async move {
            let r = client.get(&url).send().await.ok()?;
            let offline =
                r.status() == 502 && r.headers().get("ngrok-error-code")? == "ERR_NGROK_3200";
            offline.then_some(r)
        }
    })
    .await;
    assert!(r.text().await.expect("body").contains("offline"));

    let agent = Agent::http(&server, &app.to_string(), &["--domain", domain]).await;
    assert_eq!(agent.url, url);
    let r = client
        .get(format!("{url}/hello"))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_down_gives_502_from_agent() {
    let server = Server::start().await;
    // A port nobody listens on: bind, learn it, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let agent = Agent::http(&server, &port.to_string(), &[]).await;
    let r = server.client().get(&agent.url).send().await.expect("get");
    assert_eq!(r.status(), 502);
    assert!(r.text().await.expect("body").contains("ERR_NGROK_8012"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_unbinds_the_tunnel_too() {
    let server = Server::start().await;
    let app = app::start().await;
    let mut agent = Agent::http(&server, &app.to_string(), &[]).await;
    let url = agent.url.clone();
    let status = agent.terminate();
    assert!(status.success(), "agent exit: {status:?}");
    let r = server.client().get(&url).send().await.expect("get");
    assert_eq!(r.status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_unbinds_the_tunnel() {
    let server = Server::start().await;
    let app = app::start().await;
    let mut agent = Agent::http(&server, &app.to_string(), &[]).await;
    let url = agent.url.clone();
    assert_eq!(
        server
            .client()
            .get(&url)
            .send()
            .await
            .expect("get")
            .status(),
        200
    );
    let status = agent.interrupt();
    assert!(status.success(), "agent exit: {status:?}");
    // Unbound on purpose: the name is gone (404), not offline (502).
    let r = server.client().get(&url).send().await.expect("get");
    assert_eq!(r.status(), 404);
    assert_eq!(r.headers()["ngrok-error-code"], "ERR_NGROK_3200");
}

/// A TCP relay between agent and edge that the test can cut, to lose the
/// session without killing either process.
async fn cuttable_relay(
    target: std::net::SocketAddr,
) -> (std::net::SocketAddr, tokio::sync::watch::Sender<u32>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind relay");
    let addr = listener.local_addr().expect("addr");
    let (cut_tx, cut_rx) = tokio::sync::watch::channel(0u32);
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            let mut cut = cut_rx.clone();
            let generation = *cut.borrow_and_update();
            tokio::spawn(async move {
                let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await else {
                    return;
                };
                tokio::select! {
                    _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                    _ = async { while *cut.borrow() == generation { if cut.changed().await.is_err() { break; } } } => {}
                }
                // Dropping both sockets is the cut.
                let _ = inbound.shutdown().await;
            });
        }
    });
    (addr, cut_tx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_session_reconnects_and_rebinds_same_url() {
    let server = Server::start().await;
    let app = app::start().await;
    let (relay, cut) = cuttable_relay(server.agent_socket_addr()).await;
    let relay_addr = format!("localhost:{}", relay.port());
    let agent = Agent::http(&server, &app.to_string(), &["--server-addr", &relay_addr]).await;
    let url = agent.url.clone();
    let client = server.client();
    assert_eq!(client.get(&url).send().await.expect("get").status(), 200);

    cut.send_modify(|g| *g += 1);
    eventually("agent to report the reconnect", || {
        let lines = agent.stdout.clone();
        async move {
            lines
                .lock()
                .expect("lines")
                .iter()
                .any(|l| l.starts_with("Reconnected: "))
                .then_some(())
        }
    })
    .await;
    let lines = agent.stdout.lock().expect("lines").clone();
    assert!(lines.contains(&format!("Reconnected: {url}")), "{lines:?}");
    let r = eventually("the same URL to serve again", || {
        let client = client.clone();
        let url = url.clone();
        async move {
            let r = client.get(format!("{url}/hello")).send().await.ok()?;
            (r.status() == 200).then_some(r)
        }
    })
    .await;
    assert_eq!(r.text().await.expect("body"), "hello from the local app");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_agents_on_one_domain_without_pooling_second_is_refused() {
    let server = Server::start().await;
    let app = app::start().await;
    let domain = "taken.gangway.localhost";
    let _first = Agent::http(&server, &app.to_string(), &["--domain", domain]).await;
    let out = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::process::Command::new(crate::support::bin())
            .args(["http", &app.to_string(), "--domain", domain, "--data-dir"])
            .arg(server.data_dir())
            .output(),
    )
    .await
    .expect("second agent exits")
    .expect("run");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("ERR_NGROK_334"), "{stderr}");
    let mut buf = Vec::new();
    let _ = (&out.stdout[..]).read_to_end(&mut buf).await;
}

/// A local HTTPS service with a self-signed certificate: the agent speaks
/// TLS to it without verifying, as the ngrok agent does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_upstream_with_self_signed_certificate() {
    let server = Server::start().await;
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("cert");
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(ck.signing_key.serialize_der().into());
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(vec![ck.cert.der().clone()], key)
        .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(cfg));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut req = Vec::new();
                let mut buf = [0u8; 1024];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = tls
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\nconnection: close\r\n\r\nover tls!")
                    .await;
                let _ = tls.shutdown().await;
            });
        }
    });
    let agent = Agent::http(&server, &format!("https://localhost:{port}"), &[]).await;
    let r = server
        .client()
        .get(format!("{}/", agent.url))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.expect("body"), "over tls!");
}
