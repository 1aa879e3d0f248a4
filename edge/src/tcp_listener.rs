//! Public TCP endpoints: one listener per bound port, started and stopped
//! by the registry as agents bind and unbind. Each accepted connection
//! becomes one muxado stream to an agent, raw bytes both ways, half-close
//! honoured.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use arc_swap::ArcSwap;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use gangway_modules::chain::{ChainState, ConnInfo};
use gangway_modules::decisions::Access;

use crate::events::{Events, L4Conn};
use crate::route_table::{Endpoint, RouteTable, Target};
use crate::tunnel_stream::proxy_header_bytes;

/// Accepts on `listener` until `cancel` fires (the endpoint is gone).
pub async fn serve(
    listener: std::net::TcpListener,
    port: u16,
    table: Arc<ArcSwap<RouteTable>>,
    events: Events,
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
                tokio::spawn(proxy(tcp, peer, port, table.clone(), events.clone()));
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
    tcp: TcpStream,
    client: SocketAddr,
    port: u16,
    table: Arc<ArcSwap<RouteTable>>,
    events: Events,
) {
    let mut conn = L4Conn {
        client: Some(client),
        server: tcp.local_addr().ok(),
        server_name: String::new(),
        start: SystemTime::now(),
        ip_policy: None,
        policy_logs: Vec::new(),
    };
    let admission = {
        let table = table.load();
        table
            .lookup_port(port)
            .map(|ep| admit(ep, Some(client), conn.server, ""))
    };
    // No endpoint, an offline one (agent gone, name kept) or a blocked
    // client: close at once.
    let Some(admission) = admission else {
        return;
    };
    conn.ip_policy = admission.ip_policy;
    conn.policy_logs = admission.policy_logs;
    let Some(target) = admission.target else {
        events.tcp_closed(&conn, 0, 0);
        return;
    };
    let _ = tcp.set_nodelay(true);
    let (bytes_in, bytes_out) = pipe_to_agent(tcp, &target, Some(client), conn.server, &[]).await;
    events.tcp_closed(&conn, bytes_in, bytes_out);
}

/// What admission decided for one connection.
#[derive(Default)]
pub struct Admission {
    /// The tunnel to serve it; `None`: refused or offline.
    pub target: Option<Target>,
    /// `allow`/`block` when an IP restriction applied.
    pub ip_policy: Option<Access>,
    /// The client was refused (IP restriction or Traffic Policy): close
    /// quietly rather than report the endpoint offline.
    pub refused: bool,
    /// Traffic Policy `log` entries.
    pub policy_logs: Vec<serde_json::Value>,
}

/// Picks a tunnel for a connection from `client` and applies the edge's
/// and the tunnel's IP restrictions, then their Traffic Policies'
/// `on_tcp_connect` rules.
pub fn admit(
    ep: &Endpoint,
    client: Option<SocketAddr>,
    server: Option<SocketAddr>,
    server_name: &str,
) -> Admission {
    let ip = client.map(|a| a.ip());
    let edge_restricted = ep
        .l4_edge
        .as_ref()
        .is_some_and(|e| e.ip_restriction.is_some());
    let refused = |ip_policy| Admission {
        ip_policy,
        refused: true,
        ..Admission::default()
    };
    if !ep.admits(ip) {
        return refused(edge_restricted.then_some(Access::Block));
    }
    let Some(target) = ep.pick() else {
        return Admission::default();
    };
    let restricted = edge_restricted || target.options.ip_restriction.is_some();
    if !target.admits(ip) {
        return refused(Some(Access::Block));
    }
    let ip_policy = restricted.then_some(Access::Allow);
    let conn = ConnInfo {
        client,
        server,
        server_name: server_name.to_string(),
        tls: None,
    };
    // Connect phases read no documents.
    let documents = Arc::default();
    let mut policy_logs = Vec::new();
    let mut admitted = true;
    for chain in ep.l4_policy.iter().chain(Some(&target.options.chain)) {
        if admitted && !chain.is_empty() {
            let mut st = ChainState::new(chain, Arc::clone(&documents));
            admitted = chain.on_connect(&conn, &mut st).is_ok();
            policy_logs.append(&mut st.facts.decisions.traffic_policy_logs);
        }
    }
    if !admitted {
        return Admission {
            ip_policy,
            policy_logs,
            ..refused(ip_policy)
        };
    }
    Admission {
        target: Some(target.clone()),
        ip_policy,
        refused: false,
        policy_logs,
    }
}

/// Opens a proxy stream on `target` and copies bytes both ways until both
/// sides are done; the ProxyHeader and `preface` (bytes already read from
/// the client) go out in the stream's first frame. Returns the bytes
/// carried (from the client, to the client).
pub async fn pipe_to_agent<C>(
    mut client: C,
    target: &Target,
    client_addr: Option<SocketAddr>,
    server_addr: Option<SocketAddr>,
    preface: &[u8],
) -> (u64, u64)
where
    C: AsyncRead + AsyncWrite + Unpin,
{
    let Ok(mut stream) = target.session.open() else {
        return (0, 0);
    };
    let mut first = proxy_header_bytes(target, client_addr, server_addr);
    first.extend_from_slice(preface);
    if stream.write_all(&first).await.is_err() {
        return (0, 0);
    }
    let buf = gangway_proto::PIPE_BUFFER_BYTES;
    match tokio::io::copy_bidirectional_with_sizes(&mut client, &mut stream, buf, buf).await {
        Ok((up, down)) => {
            let up = up + preface.len() as u64;
            debug!(tunnel = %target.tunnel_id, bytes_to_agent = up, bytes_to_client = down, "connection done");
            (up, down)
        }
        Err(e) => {
            debug!(tunnel = %target.tunnel_id, error = %e, "connection ended with error");
            (preface.len() as u64, 0)
        }
    }
}
