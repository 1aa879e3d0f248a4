//! The upstream "socket" of a proxied request: a muxado stream to the agent,
//! opened by Pingora through `PeerOptions::custom_l4`. The stream type and
//! ProxyHeader ride in the same first frame as the request head: one frame
//! (and one wakeup on each side) fewer per request.

use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll, Waker};

use async_trait::async_trait;
use std::net::SocketAddr;

use gangway_proto::codec::encode_proxy_header;
use gangway_proto::msg::ProxyHeader;
use gangway_proto::proxy_protocol;
use pingora_core::connectors::L4Connect;
use pingora_core::protocols::l4::socket::SocketAddr as L4SocketAddr;
use pingora_core::protocols::l4::stream::Stream as L4Stream;
use pingora_core::protocols::l4::virt::{VirtualSockOpt, VirtualSocket, VirtualSocketStream};
use pingora_error::{Error, ErrorType, OrErr};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::route_table::Target;

/// Opens a proxy stream on `target` for a connection from `client` to the
/// edge's listener at `server`.
#[derive(Clone)]
pub struct TunnelConnector {
    pub target: Target,
    pub client: Option<SocketAddr>,
    pub server: Option<SocketAddr>,
    /// Set when a module must see the whole body before the agent sees
    /// any of the request.
    pub gate: Option<Arc<WriteGate>>,
}

/// Holds everything written to a proxy stream at the edge until a verdict:
/// open sends it all, closed drops it (the agent never sees the request).
#[derive(Debug, Default)]
pub struct WriteGate {
    state: AtomicU8,
    /// The response reader, woken when the gate opens so it can flush.
    reader: Mutex<Option<Waker>>,
}

const GATE_PENDING: u8 = 0;
const GATE_OPEN: u8 = 1;
const GATE_CLOSED: u8 = 2;

/// Request head plus the largest body a module buffers.
const GATE_LIMIT: usize = gangway_modules::chain::BODY_LIMIT + 1024 * 1024;

impl WriteGate {
    pub fn new() -> Arc<Self> {
        Arc::new(WriteGate::default())
    }

    pub fn open(&self) {
        self.settle(GATE_OPEN);
    }

    pub fn close(&self) {
        self.settle(GATE_CLOSED);
    }

    fn settle(&self, to: u8) {
        self.state.store(to, Ordering::Release);
        let waker = self.reader.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(w) = waker {
            w.wake();
        }
    }

    fn state(&self) -> u8 {
        self.state.load(Ordering::Acquire)
    }
}

impl std::fmt::Debug for TunnelConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TunnelConnector")
            .field("tunnel_id", &self.target.tunnel_id)
            .finish()
    }
}

/// Error type for "the agent session could not take the stream": the
/// response mapper turns it into 502 offline.
pub const AGENT_UNAVAILABLE: ErrorType = ErrorType::Custom("AgentUnavailable");

impl TunnelConnector {
    /// Opens the stream; the returned socket sends the type and header in
    /// front of the first bytes written to it.
    pub fn open(&self) -> pingora_error::Result<TunnelSocket> {
        self.open_as(&self.target.proto)
    }

    /// Opens a stream whose bytes are raw TCP, not HTTP (the websocket-TCP
    /// converter's payloads): the ProxyHeader says Proto `tcp` so the agent
    /// pipes it to its upstream instead of parsing requests.
    pub fn open_raw(&self) -> pingora_error::Result<TunnelSocket> {
        self.open_as("tcp")
    }

    fn open_as(&self, proto: &str) -> pingora_error::Result<TunnelSocket> {
        let stream = self
            .target
            .session
            .open()
            .or_err(AGENT_UNAVAILABLE, "agent session cannot open a stream")?;
        let first = proxy_header_bytes_as(&self.target, proto, self.client, self.server);
        Ok(TunnelSocket {
            stream,
            pending_header: first,
            gate: self.gate.clone(),
        })
    }
}

#[async_trait]
impl L4Connect for TunnelConnector {
    async fn connect(&self, _addr: &L4SocketAddr) -> pingora_error::Result<L4Stream> {
        let socket = self.open()?;
        Ok(L4Stream::from(VirtualSocketStream::new(Box::new(socket))))
    }
}

/// The first bytes of every proxy stream to `target`: stream type 3 and
/// the ProxyHeader naming the tunnel and the public client.
pub fn proxy_header_bytes(
    target: &Target,
    client: Option<SocketAddr>,
    server: Option<SocketAddr>,
) -> Vec<u8> {
    proxy_header_bytes_as(target, &target.proto, client, server)
}

fn proxy_header_bytes_as(
    target: &Target,
    proto: &str,
    client: Option<SocketAddr>,
    server: Option<SocketAddr>,
) -> Vec<u8> {
    let header = ProxyHeader {
        id: target.tunnel_id.to_string(),
        client_addr: client.map(|a| a.to_string()).unwrap_or_default(),
        proto: proto.to_string(),
        edge_type: target.options.edge_type.wire().to_string(),
        // TLS endpoints get the client's raw TLS unless the edge holds
        // the tunnel's certificate or terminates with its own.
        passthrough_tls: &*target.proto == "tls"
            && target.options.tls_termination.is_none()
            && !target.options.terminated_at_edge,
    };
    let mut out = Vec::with_capacity(192);
    encode_proxy_header(&header, &mut out);
    proxy_protocol::encode(target.options.proxy_proto, client, server, &mut out);
    out
}

/// A muxado stream dressed as a Pingora virtual socket.
#[derive(Debug)]
pub struct TunnelSocket {
    stream: gangway_proto::Stream,
    /// Stream type + ProxyHeader (and, behind a gate, the held request
    /// bytes) not yet sent.
    pending_header: Vec<u8>,
    gate: Option<Arc<WriteGate>>,
}

/// What a gated socket may do now.
enum Gated {
    /// No gate, or it opened (held bytes now queue behind the header).
    Pass,
    Hold,
    Refused,
}

impl TunnelSocket {
    fn gated(&mut self) -> Gated {
        let Some(gate) = &self.gate else {
            return Gated::Pass;
        };
        match gate.state() {
            GATE_OPEN => {
                self.gate = None;
                Gated::Pass
            }
            GATE_CLOSED => Gated::Refused,
            _ => Gated::Hold,
        }
    }

    fn refused() -> std::io::Error {
        std::io::Error::new(
            std::io::ErrorKind::BrokenPipe,
            "a route module refused the request",
        )
    }

    /// Sends whatever of the header is still pending (for shutdown without
    /// any payload).
    fn poll_flush_header(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        while !self.pending_header.is_empty() {
            let n = ready!(Pin::new(&mut self.stream).poll_write(cx, &self.pending_header))?;
            self.pending_header.drain(..n);
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncRead for TunnelSocket {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        match this.gated() {
            Gated::Pass => {}
            Gated::Refused => return Poll::Ready(Err(Self::refused())),
            Gated::Hold => {
                if let Some(gate) = &this.gate {
                    *gate.reader.lock().unwrap_or_else(|p| p.into_inner()) =
                        Some(cx.waker().clone());
                    // The verdict may have landed before the waker did.
                    if gate.state() == GATE_PENDING {
                        return Poll::Pending;
                    }
                }
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
        }
        ready!(this.poll_flush_header(cx))?;
        Pin::new(&mut this.stream).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for TunnelSocket {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        match this.gated() {
            Gated::Pass => {}
            Gated::Refused => return Poll::Ready(Err(Self::refused())),
            Gated::Hold => {
                if this.pending_header.len() + buf.len() > GATE_LIMIT {
                    return Poll::Ready(Err(Self::refused()));
                }
                this.pending_header.extend_from_slice(buf);
                return Poll::Ready(Ok(buf.len()));
            }
        }
        if this.pending_header.is_empty() {
            return Pin::new(&mut this.stream).poll_write(cx, buf);
        }
        let header_len = this.pending_header.len();
        let mut first = std::mem::take(&mut this.pending_header);
        first.extend_from_slice(buf);
        let written = Pin::new(&mut this.stream).poll_write(cx, &first);
        first.truncate(header_len);
        this.pending_header = first;
        let n = ready!(written)?;
        if n >= header_len {
            this.pending_header.clear();
            return Poll::Ready(Ok(n - header_len));
        }
        // Only part of the header (or of the bytes a gate held) fit in the
        // window: send the rest on the next poll.
        this.pending_header.drain(..n);
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        match this.gated() {
            Gated::Pass => {}
            Gated::Refused => return Poll::Ready(Err(Self::refused())),
            // Nothing leaves before the verdict.
            Gated::Hold => return Poll::Ready(Ok(())),
        }
        ready!(this.poll_flush_header(cx))?;
        Pin::new(&mut this.stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        match this.gated() {
            Gated::Pass => {}
            // The agent never learns of a refused request.
            Gated::Refused | Gated::Hold => return Poll::Ready(Ok(())),
        }
        ready!(this.poll_flush_header(cx))?;
        Pin::new(&mut this.stream).poll_shutdown(cx)
    }
}

impl VirtualSocket for TunnelSocket {
    fn set_socket_option(&self, _opt: VirtualSockOpt) -> std::io::Result<()> {
        // Nagle and keepalive belong to the agent's TLS connection, not to
        // one stream inside it.
        Ok(())
    }
}

/// Builds the pingora error for a failure without a cause.
pub fn agent_unavailable(msg: &'static str) -> Box<Error> {
    Error::explain(AGENT_UNAVAILABLE, msg)
}
