//! The upstream "socket" of a proxied request: a muxado stream to the agent,
//! opened by Pingora through `PeerOptions::custom_l4`, with the ProxyHeader
//! in its first frame.

use std::pin::Pin;
use std::task::{Context, Poll};

use async_trait::async_trait;
use gangway_proto::codec::encode_proxy_header;
use gangway_proto::msg::ProxyHeader;
use pingora_core::connectors::L4Connect;
use pingora_core::protocols::l4::socket::SocketAddr as L4SocketAddr;
use pingora_core::protocols::l4::stream::Stream as L4Stream;
use pingora_core::protocols::l4::virt::{VirtualSockOpt, VirtualSocket, VirtualSocketStream};
use pingora_error::{Error, ErrorType, OrErr};
use tokio::io::{AsyncRead, AsyncWriteExt, ReadBuf};

use crate::route_table::Target;

/// Opens a proxy stream on `target` for a connection from `client_addr`.
#[derive(Clone)]
pub struct TunnelConnector {
    pub target: Target,
    pub client_addr: String,
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
    /// Opens the stream and writes the type and header in one frame.
    pub async fn open(&self) -> pingora_error::Result<gangway_proto::Stream> {
        let mut stream = self
            .target
            .session
            .open()
            .or_err(AGENT_UNAVAILABLE, "agent session cannot open a stream")?;
        let header = ProxyHeader {
            id: self.target.tunnel_id.to_string(),
            client_addr: self.client_addr.clone(),
            proto: self.target.proto.to_string(),
            edge_type: String::new(),
            passthrough_tls: false,
        };
        let mut first = Vec::with_capacity(192);
        encode_proxy_header(&header, &mut first);
        stream
            .write_all(&first)
            .await
            .or_err(AGENT_UNAVAILABLE, "writing proxy header")?;
        Ok(stream)
    }
}

#[async_trait]
impl L4Connect for TunnelConnector {
    async fn connect(&self, _addr: &L4SocketAddr) -> pingora_error::Result<L4Stream> {
        let stream = self.open().await?;
        Ok(L4Stream::from(VirtualSocketStream::new(Box::new(
            TunnelSocket(stream),
        ))))
    }
}

/// A muxado stream dressed as a Pingora virtual socket.
#[derive(Debug)]
pub struct TunnelSocket(pub gangway_proto::Stream);

impl AsyncRead for TunnelSocket {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for TunnelSocket {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
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
