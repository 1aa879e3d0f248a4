//! Hostile or broken input on the agent port. Whatever a single connection
//! sends, the edge must end *that* connection (quickly, and with a
//! well-formed GOAWAY if it says anything) and keep serving everyone else,
//! so every test ends by fetching through an agent that was up all along.

use std::io::Read;
use std::process::{Child, Command, Stdio};

use crate::support::{app, Agent, Server, DEADLINE};
use bytes::Bytes;
use gangway_proto::codec::typed_json;
use gangway_proto::frame::Frame;
use gangway_proto::msg::AUTH;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{timeout, timeout_at, Instant};
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

// muxado frame types and flags, spelled out here rather than taken from the
// edge's codec so a codec bug cannot hide behind a matching test bug.
const TYPE_RST: u8 = 0;
const TYPE_DATA: u8 = 1;
const TYPE_WNDINC: u8 = 2;
const TYPE_GOAWAY: u8 = 3;
const FLAG_FIN: u8 = 0x1;

// muxado error codes the edge is expected to send.
const CODE_NONE: u32 = 0;
const CODE_PROTOCOL: u32 = 1;

/// Anything larger from the edge is a bug; refuse to buffer it.
const MAX_FRAME_BODY: usize = 1 << 20;

const HELLO: &str = "hello from the local app";

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// A server, the local app, and an agent already serving it, so each test
/// can prove at the end that the edge kept working for others.
async fn setup() -> (Server, Agent) {
    let server = Server::start().await;
    let app = app::start().await;
    let agent = Agent::http(&server, &app.to_string(), &[]).await;
    assert_agent_serves(&server, &agent).await;
    (server, agent)
}

async fn assert_agent_serves(server: &Server, agent: &Agent) {
    let url = format!("{}/hello", agent.url);
    let resp = server
        .client()
        .get(&url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}\nserver log:\n{}", server.log()));
    assert_eq!(
        resp.status(),
        200,
        "GET {url}\nserver log:\n{}",
        server.log()
    );
    assert_eq!(resp.text().await.expect("body"), HELLO);
}

/// TLS to the agent port exactly as an SDK does it: SNI `localhost`, no ALPN.
async fn tls_connect(server: &Server) -> TlsStream<TcpStream> {
    let tcp = timeout(DEADLINE, TcpStream::connect(server.agent_socket_addr()))
        .await
        .expect("TCP connect timed out")
        .expect("TCP connect to the agent port");
    let connector = TlsConnector::from(server.rustls_config(&[]));
    let name = ServerName::try_from("localhost").expect("server name");
    timeout(DEADLINE, connector.connect(name, tcp))
        .await
        .expect("TLS handshake timed out")
        .expect("TLS handshake with the agent port")
}

/// Deterministic noise (xorshift32), so a failure reproduces byte for byte.
fn noise(len: usize, mut seed: u32) -> Vec<u8> {
    (0..len)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            seed as u8
        })
        .collect()
}

async fn write_raw<S: AsyncWrite + Unpin>(s: &mut S, bytes: &[u8]) -> std::io::Result<()> {
    s.write_all(bytes).await?;
    s.flush().await
}

/// Writes `frames` back to back in one write, as a fast peer would.
async fn write_frames<S: AsyncWrite + Unpin>(s: &mut S, frames: &[Frame]) -> std::io::Result<()> {
    let mut bytes = Vec::new();
    for f in frames {
        bytes.extend_from_slice(&f.to_bytes());
    }
    write_raw(s, &bytes).await
}

/// A frame as it came off the wire, decoded by hand (see the constants).
#[derive(Debug)]
struct RawFrame {
    typ: u8,
    flags: u8,
    stream_id: u32,
    /// Exactly the header's length field worth of bytes: a GOAWAY whose
    /// length omits its 8 fixed bytes shows up here as a short body.
    body: Vec<u8>,
}

impl RawFrame {
    fn goaway_code(&self) -> Option<u32> {
        let code = self.body.get(4..8)?;
        Some(u32::from_be_bytes([code[0], code[1], code[2], code[3]]))
    }
}

/// Reads one frame (8-byte header, then its body). Any error, including a
/// clean EOF, means the connection is over.
async fn read_frame<S: AsyncRead + Unpin>(s: &mut S) -> std::io::Result<RawFrame> {
    let mut head = [0u8; 8];
    s.read_exact(&mut head).await?;
    let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
    assert!(
        len <= MAX_FRAME_BODY,
        "edge sent a {len}-byte frame: {head:02x?}"
    );
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).await?;
    Ok(RawFrame {
        typ: head[3] >> 4,
        flags: head[3] & 0x0F,
        stream_id: u32::from_be_bytes([head[4], head[5], head[6], head[7]]) & 0x7FFF_FFFF,
        body,
    })
}

/// [`read_frame`] bounded by `deadline`; running out of time fails the test.
async fn next_frame<S: AsyncRead + Unpin>(
    s: &mut S,
    deadline: Instant,
    what: &str,
) -> std::io::Result<RawFrame> {
    timeout_at(deadline, read_frame(s))
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// Reads until the edge ends the connection (EOF, TLS close, or reset all
/// count) and returns the frames it sent on the way out. A live connection
/// at the deadline fails the test: the edge must not leave hostile peers
/// hanging.
async fn expect_closed<S: AsyncRead + Unpin>(s: &mut S) -> Vec<RawFrame> {
    let deadline = Instant::now() + DEADLINE;
    let mut frames = Vec::new();
    while let Ok(f) = next_frame(s, deadline, "the edge to close the connection").await {
        frames.push(f);
    }
    frames
}

/// The only thing an edge may say before hanging up on a protocol error is
/// GOAWAY, and it must be well formed (length counts the 8 fixed bytes).
fn assert_only_goaway(frames: &[RawFrame], code: u32) {
    for f in frames {
        assert_eq!(
            f.typ, TYPE_GOAWAY,
            "expected only GOAWAY before close, got {f:?}"
        );
        assert_eq!(f.stream_id, 0, "GOAWAY on a stream: {f:?}");
        assert!(
            f.body.len() >= 8,
            "GOAWAY length {} < 8: {f:?}",
            f.body.len()
        );
        assert_eq!(f.goaway_code(), Some(code), "GOAWAY code: {f:?}");
    }
}

/// Kills a spawned process if the test fails before it exits.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_agent_port_without_tls() {
    let (server, agent) = setup().await;

    let mut tcp = timeout(DEADLINE, TcpStream::connect(server.agent_socket_addr()))
        .await
        .expect("TCP connect timed out")
        .expect("TCP connect to the agent port");
    let mut garbage = noise(4096, 0x9E37_79B9);
    // Not 0x16 (TLS handshake record) nor >= 0x80 (SSLv2-style hello): a
    // plausible record header would let the server legitimately wait for a
    // body we never send, and this test is about outright garbage.
    garbage[0] = 0x42;
    // The server may hang up before it has read everything; a failed write
    // is then just an early sign of the close we are waiting for.
    let _ = write_raw(&mut tcp, &garbage).await;

    // Not muxado yet, so read raw bytes (a TLS alert, perhaps) until EOF.
    let deadline = Instant::now() + DEADLINE;
    let mut buf = [0u8; 4096];
    loop {
        match timeout_at(deadline, tcp.read(&mut buf)).await {
            Err(_) => panic!("the edge kept a non-TLS connection open"),
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(_)) => continue,
        }
    }

    assert_agent_serves(&server, &agent).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_muxado_frames_after_tls() {
    let (server, agent) = setup().await;

    let mut tls = tls_connect(&server).await;
    // Type nibble 0xF does not exist in muxado; the header is rejected
    // before its 4-byte body is even looked at.
    let mut bytes = vec![0x00, 0x00, 0x04, 0xF0, 0x00, 0x00, 0x00, 0x03];
    bytes.extend(noise(4, 0x1234_5678));
    write_raw(&mut tls, &bytes)
        .await
        .expect("write garbage frame");

    let frames = expect_closed(&mut tls).await;
    assert_only_goaway(&frames, CODE_PROTOCOL);

    assert_agent_serves(&server, &agent).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_frames_are_protocol_errors() {
    let (server, agent) = setup().await;

    // DATA must name a stream; stream 0 is the session itself.
    let mut tls = tls_connect(&server).await;
    let data_on_zero = Frame::Data {
        stream_id: 0,
        syn: true,
        fin: false,
        payload: Bytes::from_static(&[0, 0, 0, 0]),
    };
    write_frames(&mut tls, &[data_on_zero])
        .await
        .expect("write DATA on stream 0");
    let frames = expect_closed(&mut tls).await;
    assert_only_goaway(&frames, CODE_PROTOCOL);

    // WNDINC bodies are exactly 4 bytes. Open a real stream first (a
    // heartbeat, which the edge answers only when we send a beat) so the
    // bad length is rejected on a live stream, not merely an unknown one.
    let mut tls = tls_connect(&server).await;
    let open_heartbeat = Frame::Data {
        stream_id: 3,
        syn: true,
        fin: false,
        payload: Bytes::copy_from_slice(&gangway_proto::msg::HEARTBEAT.to_be_bytes()),
    };
    write_frames(&mut tls, &[open_heartbeat])
        .await
        .expect("open stream 3");
    let wndinc_len5 = [
        0x00, 0x00, 0x05, 0x20, 0x00, 0x00, 0x00, 0x03, 0x00, 0x00, 0x00, 0x01, 0x00,
    ];
    write_raw(&mut tls, &wndinc_len5)
        .await
        .expect("write WNDINC of length 5");
    let frames = expect_closed(&mut tls).await;
    assert_only_goaway(&frames, CODE_PROTOCOL);

    assert_agent_serves(&server, &agent).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_rpc_closes_only_that_session() {
    let (server, agent) = setup().await;

    let mut tls = tls_connect(&server).await;
    // An Auth whose token string never ends: the edge cannot find the end
    // of the JSON and must stop buffering at its 64 KiB RPC limit instead
    // of growing without bound. 100 KiB total stays under the 256 KiB
    // stream window, so flow control is not what stops us.
    let mut rpc = AUTH.to_be_bytes().to_vec();
    rpc.extend_from_slice(br#"{"Version":["3"],"Extra":{"AuthToken":""#);
    rpc.resize(100 * 1024, b'a');
    let mut chunks = rpc.chunks(40 * 1024);
    let first = Frame::Data {
        stream_id: 3,
        syn: true,
        fin: false,
        payload: Bytes::copy_from_slice(chunks.next().expect("first chunk")),
    };
    // Below the limit the session is healthy, so this write must succeed.
    write_frames(&mut tls, &[first])
        .await
        .expect("write first RPC chunk");
    let rest: Vec<Frame> = chunks
        .map(|c| Frame::Data {
            stream_id: 3,
            syn: false,
            fin: false,
            payload: Bytes::copy_from_slice(c),
        })
        .collect();
    // The edge may hang up as soon as it passes the limit, so the tail of
    // the write can fail; the close is checked below.
    let _ = write_frames(&mut tls, &rest).await;

    let frames = expect_closed(&mut tls).await;
    // The edge may return window credit (or reset the stream) for what it
    // read before giving up; beyond that, only a protocol GOAWAY.
    let closing: Vec<RawFrame> = frames
        .into_iter()
        .filter(|f| !(f.stream_id == 3 && (f.typ == TYPE_WNDINC || f.typ == TYPE_RST)))
        .collect();
    assert_only_goaway(&closing, CODE_PROTOCOL);

    assert_agent_serves(&server, &agent).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_authtoken_gets_error_code() {
    let (server, agent) = setup().await;

    let mut tls = tls_connect(&server).await;
    // The shape the Rust SDK sends, minus fields the edge does not need.
    let auth = serde_json::json!({
        "Version": ["3", "2"],
        "ClientId": "",
        "Extra": {
            "OS": std::env::consts::OS,
            "Arch": std::env::consts::ARCH,
            "AuthToken": "wrong-token",
            "Version": "0.0.0",
            "UserAgent": "gangway-bad-input-test",
            "HeartbeatInterval": 10_000_000_000i64,
            "HeartbeatTolerance": 15_000_000_000i64,
        },
    });
    // Type and JSON in the SYN frame and no FIN, exactly like the SDK.
    let open_auth = Frame::Data {
        stream_id: 3,
        syn: true,
        fin: false,
        payload: Bytes::from(typed_json(AUTH, &auth).expect("encode auth")),
    };
    write_frames(&mut tls, &[open_auth])
        .await
        .expect("write Auth");

    // The reply is one JSON object on stream 3, then FIN.
    let deadline = Instant::now() + DEADLINE;
    let mut reply = Vec::new();
    loop {
        let f = next_frame(&mut tls, deadline, "the Auth reply")
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "connection ended before the Auth reply was complete ({e}); got {:?}",
                    String::from_utf8_lossy(&reply)
                )
            });
        match (f.typ, f.stream_id) {
            (TYPE_DATA, 3) => {
                reply.extend_from_slice(&f.body);
                if f.flags & FLAG_FIN != 0 {
                    break;
                }
            }
            (TYPE_RST, 3) => panic!("edge reset the Auth stream instead of replying: {f:?}"),
            (TYPE_GOAWAY, _) => panic!("GOAWAY before the Auth reply was complete: {f:?}"),
            // Window credit and the like carry nothing we need.
            _ => {}
        }
    }
    let reply: serde_json::Value = serde_json::from_slice(&reply).unwrap_or_else(|e| {
        panic!(
            "Auth reply is not JSON ({e}): {}",
            String::from_utf8_lossy(&reply)
        )
    });
    let error = reply["Error"].as_str().unwrap_or_default();
    assert!(error.contains("ERR_NGROK_107"), "Auth reply: {reply}");

    // A refused agent gets no session: the edge hangs up (a GOAWAY without
    // an error code, since the peer did nothing wrong at the muxado level).
    let frames = expect_closed(&mut tls).await;
    assert_only_goaway(&frames, CODE_NONE);

    assert_agent_serves(&server, &agent).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_with_wrong_token_exits_with_code() {
    let (server, agent) = setup().await;
    let app = app::start().await;

    let child = Command::new(crate::support::bin())
        .arg("http")
        .arg(app.to_string())
        .args(["--authtoken", "wrong"])
        .arg("--data-dir")
        .arg(server.data_dir())
        // Only the flags above may decide where and how it connects.
        .env_remove("GANGWAY_AUTHTOKEN")
        .env_remove("GANGWAY_SERVER_ADDR")
        .env_remove("GANGWAY_DATA_DIR")
        .env("GANGWAY_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn gangway http");
    let mut child = KillOnDrop(child);
    // Drain stderr on a thread so a chatty agent cannot block on a full pipe.
    let mut stderr = child.0.stderr.take().expect("stderr");
    let stderr = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });

    // A refusal is final: the agent must exit, not retry forever.
    let status = crate::support::eventually("the agent to exit", || {
        let r = child.0.try_wait().expect("try_wait");
        async move { r }
    })
    .await;
    let stderr = stderr.join().expect("stderr reader");
    assert!(
        !status.success(),
        "agent exited with {status}; stderr:\n{stderr}"
    );
    assert!(stderr.contains("ERR_NGROK_107"), "agent stderr:\n{stderr}");

    assert_agent_serves(&server, &agent).await;
}
