//! The websocket-TCP converter's data path. Once the route's chain admits a
//! websocket upgrade, the edge completes the handshake itself and carries
//! every message's payload to the agent as raw bytes, on a stream announced
//! as Proto `tcp`; bytes from the agent go back as binary messages.
//!
//! Pingora keeps the client connection inside its `Session`, which offers
//! only "read body" and "write body" on one `&mut`. So the websocket codec
//! (tungstenite) runs over an in-memory pipe, and [`pump`] moves bytes
//! between that pipe and the session without ever letting one direction's
//! backpressure stall the other.

use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use pingora_error::Result;
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::Session;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;
use tracing::debug;

/// Each direction of the in-memory pipe, and the largest read from the
/// agent sent as one message.
const PIPE_BYTES: usize = 64 * 1024;

/// After one side ends, how long the other gets to finish the close
/// handshake and drain before the connection is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// Bytes moved, for the request's event.
#[derive(Debug, Default, Clone, Copy)]
pub struct Bridged {
    pub from_client: u64,
    pub to_client: u64,
}

/// The 101 that completes an admitted handshake (the module has checked
/// the method, `Upgrade`, key and version).
pub fn switching_protocols(req: &RequestHeader) -> Result<ResponseHeader> {
    let key = req
        .headers
        .get("sec-websocket-key")
        .map(|k| k.as_bytes())
        .unwrap_or_default();
    let mut resp = ResponseHeader::build(101, Some(4))?;
    resp.insert_header(http::header::UPGRADE, "websocket")?;
    resp.insert_header(http::header::CONNECTION, "Upgrade")?;
    resp.insert_header("sec-websocket-accept", derive_accept_key(key))?;
    // websockify's convention, which noVNC and friends expect: a client
    // offering `binary` gets it; with no subprotocol chosen the header is
    // left out, which RFC 6455 allows.
    if offers_binary(req) {
        resp.insert_header("sec-websocket-protocol", "binary")?;
    }
    Ok(resp)
}

fn offers_binary(req: &RequestHeader) -> bool {
    req.headers
        .get_all("sec-websocket-protocol")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim() == "binary")
}

/// Writes the 101 and bridges until either side closes.
pub async fn bridge<A>(session: &mut Session, agent: A, resp: ResponseHeader) -> Result<Bridged>
where
    A: AsyncRead + AsyncWrite + Unpin,
{
    session.write_response_header(Box::new(resp), false).await?;
    // A websocket may sit idle as long as the TCP app behind it likes.
    session.set_read_timeout(None);
    let (edge_end, codec_end) = tokio::io::duplex(PIPE_BYTES);
    let ws = WebSocketStream::from_raw_socket(codec_end, Role::Server, None).await;
    let mut moved = Bridged::default();
    {
        let relay = relay(ws, agent);
        let pump = pump(session, edge_end, &mut moved);
        tokio::pin!(relay, pump);
        tokio::select! {
            // The websocket closed (or the agent ended it): let what is
            // queued for the client, the close frame included, reach it.
            () = &mut relay => {
                let _ = tokio::time::timeout(CLOSE_GRACE, &mut pump).await;
            }
            // The client's connection is gone: dropping the relay drops
            // the agent stream.
            () = &mut pump => {}
        }
    }
    Ok(moved)
}

/// Websocket messages ↔ the agent's byte stream, each direction on its own
/// so neither waits for the other.
async fn relay<A>(ws: WebSocketStream<DuplexStream>, agent: A)
where
    A: AsyncRead + AsyncWrite + Unpin,
{
    let (mut to_client, mut from_client) = ws.split();
    let (mut agent_rd, mut agent_wr) = tokio::io::split(agent);
    let inbound = async {
        while let Some(msg) = from_client.next().await {
            let payload = match msg {
                Ok(Message::Binary(b)) => b,
                // Text payloads are bytes to the TCP app all the same.
                Ok(Message::Text(t)) => Bytes::from(t),
                // Pings are answered by the codec; a Close is echoed by it
                // and then ends the stream.
                Ok(_) => continue,
                Err(e) => {
                    debug!(error = %e, "websocket from the client ended");
                    break;
                }
            };
            if agent_wr.write_all(&payload).await.is_err() {
                break;
            }
        }
        let _ = agent_wr.shutdown().await;
    };
    let outbound = async {
        let mut buf = vec![0u8; PIPE_BYTES];
        loop {
            match agent_rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let msg = Message::Binary(Bytes::copy_from_slice(&buf[..n]));
                    if to_client.send(msg).await.is_err() {
                        return;
                    }
                }
            }
        }
        let close = CloseFrame {
            code: CloseCode::Normal,
            reason: "the TCP connection closed".into(),
        };
        let _ = to_client.send(Message::Close(Some(close))).await;
    };
    tokio::pin!(inbound, outbound);
    tokio::select! {
        // The client closed or went away: the agent has had its FIN.
        () = &mut inbound => {}
        // The app closed: the client gets a moment to answer our Close.
        () = &mut outbound => {
            let _ = tokio::time::timeout(CLOSE_GRACE, &mut inbound).await;
        }
    }
}

/// Client connection ↔ the codec's end of the pipe. Only writes to the
/// client run to completion (Pingora's body write is not cancel-safe);
/// every other step is a cancel-safe read or partial write, so bytes for
/// the client keep flowing while the app is slow to take the client's.
async fn pump(session: &mut Session, pipe: DuplexStream, moved: &mut Bridged) {
    let (mut from_codec, mut to_codec) = tokio::io::split(pipe);
    let mut buf = vec![0u8; PIPE_BYTES];
    let mut for_codec = Bytes::new();
    loop {
        tokio::select! {
            read = session.read_request_body(), if for_codec.is_empty() => match read {
                Ok(Some(bytes)) => {
                    moved.from_client += bytes.len() as u64;
                    for_codec = bytes;
                }
                // The client closed its connection.
                Ok(None) | Err(_) => return,
            },
            wrote = to_codec.write(&for_codec), if !for_codec.is_empty() => match wrote {
                Ok(n) if n > 0 => {
                    let _ = for_codec.split_to(n);
                }
                _ => return,
            },
            read = from_codec.read(&mut buf) => match read {
                Ok(n) if n > 0 => {
                    let bytes = Bytes::copy_from_slice(&buf[..n]);
                    if session.write_response_body(Some(bytes), false).await.is_err() {
                        return;
                    }
                    moved.to_client += n as u64;
                }
                // The codec is done: everything for the client is out.
                _ => return,
            },
        }
    }
}
