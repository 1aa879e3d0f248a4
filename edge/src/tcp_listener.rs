//! Public TCP endpoints: one listener per bound port, started and stopped
//! by the registry as agents bind and unbind. Each accepted connection
//! becomes one muxado stream to an agent, raw bytes both ways, half-close
//! honoured.

use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::route_table::RouteTable;
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
                tokio::spawn(proxy(tcp, peer.to_string(), port, table.clone()));
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

async fn proxy(
    mut tcp: TcpStream,
    client_addr: String,
    port: u16,
    table: Arc<ArcSwap<RouteTable>>,
) {
    let target = {
        let table = table.load();
        table.lookup_port(port).and_then(|ep| ep.pick().cloned())
    };
    // Offline endpoint (agent gone, name kept): close at once.
    let Some(target) = target else {
        return;
    };
    let _ = tcp.set_nodelay(true);
    let Ok(mut stream) = target.session.open() else {
        return;
    };
    // The registry binds TCP tunnels with proto "tcp".
    let first = proxy_header_bytes(&target, client_addr);
    if stream.write_all(&first).await.is_err() {
        return;
    }
    match tokio::io::copy_bidirectional(&mut tcp, &mut stream).await {
        Ok((up, down)) => debug!(
            port,
            bytes_to_agent = up,
            bytes_to_client = down,
            "tcp connection done"
        ),
        Err(e) => debug!(port, error = %e, "tcp connection ended with error"),
    }
}
