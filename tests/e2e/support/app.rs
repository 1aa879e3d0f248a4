//! The "local app" behind tunnels: an axum server on 127.0.0.1:0.

use std::net::SocketAddr;

use axum::body::{Body, Bytes};
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, Request};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::Router;
use futures::StreamExt;

/// Deterministic byte pattern so large bodies can be checked without
/// keeping a copy: byte i is `(i * 31 + 7) % 251`.
pub fn pattern_byte(i: u64) -> u8 {
    ((i.wrapping_mul(31).wrapping_add(7)) % 251) as u8
}

pub fn pattern_chunk(offset: u64, len: usize) -> Vec<u8> {
    (0..len as u64).map(|i| pattern_byte(offset + i)).collect()
}

async fn hello() -> &'static str {
    "hello from the local app"
}

async fn echo(body: Bytes) -> Bytes {
    body
}

async fn headers(h: HeaderMap) -> String {
    let mut out: Vec<String> = h
        .iter()
        .map(|(k, v)| format!("{}: {}", k, v.to_str().unwrap_or("?")))
        .collect();
    out.sort();
    out.join("\n")
}

#[derive(serde::Deserialize)]
struct BigQuery {
    bytes: u64,
}

/// Streams `bytes` of the pattern in 64 KiB chunks (chunked encoding).
async fn big(Query(q): Query<BigQuery>) -> Response {
    const CHUNK: u64 = 64 * 1024;
    let total = q.bytes;
    let stream = futures::stream::iter((0..total.div_ceil(CHUNK)).map(move |i| {
        let off = i * CHUNK;
        let len = CHUNK.min(total - off) as usize;
        Ok::<_, std::io::Error>(Bytes::from(pattern_chunk(off, len)))
    }));
    Body::from_stream(stream).into_response()
}

/// Consumes an upload as it streams, checks it against the pattern, and
/// answers `<bytes> <ok|corrupt>`.
async fn verify_upload(req: Request) -> String {
    let mut stream = req.into_body().into_data_stream();
    let mut n: u64 = 0;
    let mut ok = true;
    while let Some(chunk) = stream.next().await {
        let Ok(chunk) = chunk else {
            return format!("{n} error");
        };
        for b in chunk.iter() {
            ok &= *b == pattern_byte(n);
            n += 1;
        }
    }
    format!("{n} {}", if ok { "ok" } else { "corrupt" })
}

async fn ws(upgrade: WebSocketUpgrade) -> Response {
    upgrade.on_upgrade(|mut socket: WebSocket| async move {
        while let Some(Ok(msg)) = socket.recv().await {
            let reply = match msg {
                Message::Text(t) => Message::Text(format!("echo: {}", t.as_str()).into()),
                Message::Binary(b) => Message::Binary(b),
                Message::Close(_) => break,
                _ => continue,
            };
            if socket.send(reply).await.is_err() {
                break;
            }
        }
    })
}

pub fn router() -> Router {
    Router::new()
        .route("/", get(hello))
        .route("/hello", get(hello))
        .route("/echo", post(echo))
        .route("/headers", any(headers))
        .route("/big", get(big))
        .route("/upload", post(verify_upload))
        .route("/ws", get(ws))
}

/// Serves the app on a free loopback port until the test ends.
pub async fn start() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind app");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, router()).await;
    });
    addr
}
