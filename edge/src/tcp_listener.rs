//! Public TCP endpoints: one listener per bound port, started and stopped
//! by the registry as agents bind and unbind. Each accepted connection
//! becomes one muxado stream to an agent, raw bytes both ways, half-close
//! honoured.

use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::route_table::{RouteTable, Target};
use crate::tunnel_stream::proxy_header_bytes;

/// Accepts on `listener` until `cancel` fires (the endpoint is gone).
pub async fn serve(
    listener: std::net::TcpListener,
    port: u16,
    table: Arc<ArcSwap<RouteTable>>,
    cancel: CancellationToken,
) {
    let listener = match TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            warn!(port, error = %e, "tcp endpoint listener");
            return;
        }
    };
    loop {
        let accepted = tokio::select! {
            _ = cancel.cancelled() => break,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((tcp, peer)) => {
                tokio::spawn(proxy(tcp, peer, port, table.clone()));
            }
            Err(e) => {
                // Out of file descriptors and the like: back off briefly
                // rather than spin.
                debug!(port, error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
    debug!(port, "tcp endpoint closed");
}

async fn proxy(tcp: TcpStream, client: SocketAddr, port: u16, table: Arc<ArcSwap<RouteTable>>) {
    let target = {
        let table = table.load();
        table
            .lookup_port(port)
            .filter(|ep| ep.admits(Some(client.ip())))
            .and_then(|ep| ep.pick().cloned())
    };
    // Offline endpoint (agent gone, name kept) or a blocked client: close
    // at once.
    let Some(target) = target else {
        return;
    };
    let _ = tcp.set_nodelay(true);
    let server = tcp.local_addr().ok();
    pipe_to_agent(tcp, &target, Some(client), server, &[]).await;
}

/// Opens a proxy stream on `target` and copies bytes both ways until both
/// sides are done; the ProxyHeader and `preface` (bytes already read from
/// the client) go out in the stream's first frame.
pub async fn pipe_to_agent<C>(
    mut client: C,
    target: &Target,
    client_addr: Option<SocketAddr>,
    server_addr: Option<SocketAddr>,
    preface: &[u8],
) where
    C: AsyncRead + AsyncWrite + Unpin,
{
    let Ok(mut stream) = target.session.open() else {
        return;
    };
    let mut first = proxy_header_bytes(target, client_addr, server_addr);
    first.extend_from_slice(preface);
    if stream.write_all(&first).await.is_err() {
        return;
    }
    let buf = gangway_proto::PIPE_BUFFER_BYTES;
    match tokio::io::copy_bidirectional_with_sizes(&mut client, &mut stream, buf, buf).await {
        Ok((up, down)) => debug!(
            tunnel = %target.tunnel_id,
            bytes_to_agent = up + preface.len() as u64,
            bytes_to_client = down,
            "connection done"
        ),
        Err(e) => debug!(tunnel = %target.tunnel_id, error = %e, "connection ended with error"),
    }
}
