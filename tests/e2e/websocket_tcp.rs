//! websocket_tcp_converter end to end: a websocket client on the public
//! side, a raw TCP app (one that speaks first, like VNC or SSH) behind the
//! agent. Configured as an API route module (served by an SDK labeled
//! tunnel and by `gangway tunnel --label`), as the SDK's Bind option, and
//! as the agent's `--websocket-tcp-converter` flag.

use std::net::SocketAddr;

use crate::support::{events, eventually, id, Agent, LabeledEdge, Server, DEADLINE};
use futures::{SinkExt, StreamExt};
use ngrok::config::ForwarderBuilder;
use ngrok::prelude::*;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::client::Response;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

const BANNER: &[u8] = b"RFB 003.008\n";

/// A TCP app that greets first, then echoes; a chunk holding `QUIT` gets
/// `bye\n` and a hang-up. Each connection reports how it ended.
async fn tcp_app() -> (SocketAddr, mpsc::UnboundedReceiver<&'static str>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                if conn.write_all(BANNER).await.is_err() {
                    return;
                }
                let mut buf = vec![0u8; 32 * 1024];
                loop {
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => {
                            let _ = tx.send("client closed");
                            return;
                        }
                        Ok(n) if buf[..n].windows(4).any(|w| w == b"QUIT") => {
                            let _ = conn.write_all(b"bye\n").await;
                            let _ = tx.send("app hung up");
                            return;
                        }
                        Ok(n) => {
                            if conn.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
    (addr, rx)
}

type Wss = WebSocketStream<tokio_rustls::client::TlsStream<TcpStream>>;

/// Opens `wss://host/path` on the edge's TLS port, offering the `binary`
/// subprotocol as noVNC does.
async fn wss(server: &Server, host: &str, path: &str) -> (Wss, Response) {
    let tls = tokio_rustls::TlsConnector::from(server.rustls_config(&[b"http/1.1"]));
    let tcp = TcpStream::connect(server.https_addr()).await.expect("tcp");
    let name = rustls::pki_types::ServerName::try_from(host.to_string()).expect("name");
    let stream = tls.connect(name, tcp).await.expect("tls");
    let url = format!("wss://{host}:{}{path}", server.https_addr().port());
    let mut req = url.into_client_request().expect("request");
    req.headers_mut()
        .insert("sec-websocket-protocol", "binary".parse().expect("value"));
    timeout(DEADLINE, tokio_tungstenite::client_async(req, stream))
        .await
        .expect("upgrade timed out")
        .expect("websocket upgrade")
}

/// Reads binary messages until `n` bytes arrived.
async fn read_bytes(ws: &mut Wss, n: usize) -> Vec<u8> {
    let mut got = Vec::with_capacity(n);
    while got.len() < n {
        let msg = timeout(DEADLINE, ws.next())
            .await
            .expect("read timed out")
            .expect("stream ended early")
            .expect("frame");
        match msg {
            Message::Binary(b) => got.extend_from_slice(&b),
            other => panic!("expected binary data, got {other:?}"),
        }
    }
    got
}

/// Everything a user of the converter relies on, against one endpoint.
async fn exercise(
    server: &Server,
    host: &str,
    path: &str,
    app_events: &mut mpsc::UnboundedReceiver<&'static str>,
) {
    let port = server.https_addr().port();
    let client = server.client();

    // Only websocket upgrades are served.
    let r = client
        .get(format!("https://{host}:{port}{path}"))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 400);
    assert_eq!(r.headers()["ngrok-error-code"], "ERR_NGROK_3206");

    let (mut ws, resp) = wss(server, host, path).await;
    assert_eq!(resp.status(), 101);
    assert_eq!(resp.headers()["sec-websocket-protocol"], "binary");
    // The app speaks first; its banner arrives as a binary message.
    assert_eq!(read_bytes(&mut ws, BANNER.len()).await, BANNER);
    ws.send(Message::Binary("ping".into())).await.expect("send");
    assert_eq!(read_bytes(&mut ws, 4).await, b"ping");
    // Text payloads are bytes to the app too.
    ws.send(Message::Text("text too".into()))
        .await
        .expect("send");
    assert_eq!(read_bytes(&mut ws, 8).await, b"text too");

    // 4 MiB each way at once, in 64 KiB messages: neither direction may
    // wait for the other.
    let payload: Vec<u8> = (0..4 << 20).map(|i: u32| (i % 251) as u8).collect();
    let (mut sink, mut stream) = ws.split();
    let send = {
        let payload = payload.clone();
        async move {
            for chunk in payload.chunks(64 * 1024) {
                sink.send(Message::Binary(chunk.to_vec().into()))
                    .await
                    .expect("send chunk");
            }
            sink
        }
    };
    let receive = async {
        let mut got = Vec::new();
        while got.len() < payload.len() {
            match timeout(DEADLINE, stream.next()).await {
                Ok(Some(Ok(Message::Binary(b)))) => got.extend_from_slice(&b),
                other => panic!("echo stalled or broke: {other:?}"),
            }
        }
        got
    };
    let (sink, echoed) = tokio::join!(send, receive);
    assert!(echoed == payload, "the echo differs from what was sent");
    let mut ws = sink.reunite(stream).expect("reunite");

    // The app hangs up: the client gets its last bytes, then a Close.
    ws.send(Message::Binary("QUIT".into())).await.expect("send");
    assert_eq!(read_bytes(&mut ws, 4).await, b"bye\n");
    let closing = timeout(DEADLINE, ws.next()).await.expect("close timed out");
    assert!(
        matches!(closing, Some(Ok(Message::Close(_)))),
        "expected a Close frame, got {closing:?}"
    );
    assert_eq!(app_events.recv().await, Some("app hung up"));

    // The client closes: the app sees end of stream.
    let (mut ws, _) = wss(server, host, path).await;
    assert_eq!(read_bytes(&mut ws, BANNER.len()).await, BANNER);
    ws.close(None).await.expect("close");
    let ended = timeout(DEADLINE, app_events.recv()).await.expect("app EOF");
    assert_eq!(ended, Some("client closed"));

    // A websocket version other than 13 gets 426 naming 13 (over HTTP/1.1:
    // HTTP/2 has no Upgrade).
    let h1 = server
        .client_builder()
        .http1_only()
        .build()
        .expect("client");
    let r = h1
        .get(format!("https://{host}:{port}{path}"))
        .header("upgrade", "websocket")
        .header("connection", "upgrade")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .header("sec-websocket-version", "8")
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 426);
    assert_eq!(r.headers()["sec-websocket-version"], "13");
}

/// An HTTPS edge whose `/vnc` route converts websockets, backed by the
/// tunnel group `app=vnc`.
async fn converter_edge(server: &Server) -> String {
    let edge = LabeledEdge::create(server, "vnc").await;
    let route = edge.route(server, "/vnc", json!({})).await;
    let module = format!(
        "/edges/https/{}/routes/{}/websocket_tcp_converter",
        edge.edge_id,
        id(&route)
    );
    let (status, body) = server.api().put(&module, json!({"enabled": true})).await;
    assert_eq!(status, 200, "{body}");
    edge.host
}

/// Waits until the edge answers a plain GET on `url` with the converter's
/// refusal (the route is live and its tunnel online).
async fn until_converting(server: &Server, url: String) {
    let client = server.client();
    eventually("converter route live", || {
        let c = client.clone();
        let u = url.clone();
        async move {
            let r = c.get(u).send().await.ok()?;
            (r.status() == 400).then_some(())
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_route_converts_websockets_for_sdk_and_gangway_labeled_tunnels() {
    let events_dir = tempfile::tempdir().expect("tempdir");
    let events_file = events_dir.path().join("events.jsonl");
    let server = Server::start_with(&["--events", events_file.to_str().expect("path")]).await;
    let host = converter_edge(&server).await;
    let url = format!("https://{host}:{}/vnc", server.https_addr().port());

    // Served by the official SDK's labeled tunnel, which copies bytes.
    let (app, mut app_events) = tcp_app().await;
    let session = server.sdk_session().await;
    let mut b = session.labeled_tunnel();
    b.label("app", "vnc");
    let to = reqwest::Url::parse(&format!("http://{app}")).expect("url");
    let tunnel = timeout(DEADLINE, b.listen_and_forward(to))
        .await
        .expect("bind timed out")
        .expect("bind");
    until_converting(&server, url.clone()).await;
    exercise(&server, &host, "/vnc", &mut app_events).await;

    // The event of a converted websocket: 101 and the bytes it carried.
    let ev = eventually("websocket event", || {
        let f = events_file.clone();
        async move {
            events(&f).into_iter().find(|e| {
                e["event_type"] == "http_request_complete.v0"
                    && e["object"]["http"]["response"]["status_code"] == 101
                    && e["object"]["http"]["response"]["body_length"]
                        .as_u64()
                        .is_some_and(|n| n > 4 << 20)
            })
        }
    })
    .await;
    let obj = &ev["object"];
    assert_eq!(obj["http"]["request"]["url"]["path"], "/vnc", "{ev}");
    assert!(obj["http"]["request"]["body_length"].as_u64() > Some(4 << 20));

    // Served by gangway's own agent: the stream is announced as `tcp`, so
    // it pipes bytes instead of parsing HTTP.
    drop(tunnel);
    drop(session);
    let (app, mut app_events) = tcp_app().await;
    let _agent = Agent::spawn(
        "tunnel",
        server.data_dir(),
        &app.to_string(),
        &["--label", "app=vnc"],
    )
    .await;
    until_converting(&server, url).await;
    exercise(&server, &host, "/vnc", &mut app_events).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_option_and_agent_flag_convert_websockets() {
    let server = Server::start().await;

    let (app, mut app_events) = tcp_app().await;
    let session = server.sdk_session().await;
    let mut b = session.http_endpoint();
    b.websocket_tcp_conversion();
    let to = reqwest::Url::parse(&format!("http://{app}")).expect("url");
    let fwd = timeout(DEADLINE, b.listen_and_forward(to))
        .await
        .expect("bind timed out")
        .expect("bind");
    let url = reqwest::Url::parse(fwd.url()).expect("url");
    let host = url.host_str().expect("host").to_string();
    exercise(&server, &host, "/", &mut app_events).await;

    let (app, mut app_events) = tcp_app().await;
    let agent = Agent::http(&server, &app.to_string(), &["--websocket-tcp-converter"]).await;
    exercise(&server, &agent.host(), "/anything", &mut app_events).await;
}
