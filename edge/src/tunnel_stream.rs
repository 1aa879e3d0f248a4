//! The upstream "socket" of a proxied request: a muxado stream to the agent,
//! opened by Pingora through `PeerOptions::custom_l4`. The stream type and
//! ProxyHeader ride in the same first frame as the request head: one frame
//! (and one wakeup on each side) fewer per request.

use std::pin::Pin;
use std::task::{ready, Context, Poll};

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
        let stream = self
            .target
            .session
            .open()
            .or_err(AGENT_UNAVAILABLE, "agent session cannot open a stream")?;
        let first = proxy_header_bytes(&self.target, self.client, self.server);
        Ok(TunnelSocket {
            stream,
            pending_header: first,
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
    let header = ProxyHeader {
        id: target.tunnel_id.to_string(),
        client_addr: client.map(|a| a.to_string()).unwrap_or_default(),
        proto: target.proto.to_string(),
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
    /// Stream type + ProxyHeader not yet sent.
    pending_header: Vec<u8>,
}

impl TunnelSocket {
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
        // Only part of the header fit (a full window cannot be smaller than
        // a header, so this is theoretical): send the rest on the next poll.
        this.pending_header.drain(..n);
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_flush_header(cx))?;
        Pin::new(&mut this.stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
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
