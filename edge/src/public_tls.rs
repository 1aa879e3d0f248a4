//! The public TLS port, shared by HTTPS and TLS endpoints as on ngrok. The
//! ClientHello is peeked (not consumed) for its SNI: a TLS endpoint gets
//! the raw bytes, or is terminated with the tunnel's own certificate;
//! everything else is terminated with the edge's certificates (chosen by
//! SNI) and served by the HTTP proxy.

use std::sync::Arc;
use std::time::Duration;
use std::time::SystemTime;

use async_trait::async_trait;
use gangway_proto::client_hello::{self, Hello};
use pingora_core::apps::ServerApp;
use pingora_core::protocols::l4::stream::Stream as L4Stream;
use pingora_core::protocols::tls::server::{handshake, handshake_with_callback};
use pingora_core::protocols::{GetSocketDigest, Peek, Stream};
use pingora_core::server::ShutdownWatch;
use pingora_proxy::HttpProxy;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tracing::{debug, warn};

use crate::certs::SniResolver;
use crate::client_tls::ClientTls;
use crate::events::L4Conn;
use crate::proxy::EdgeProxy;
use crate::registry::Registry;
use crate::route_table::{PolicyMissing, Target, TlsRoute};
use crate::tcp_listener::{admit, pipe_to_agent};

/// A client must have sent its whole ClientHello this soon.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// And finished the handshake this soon.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// TLS alerts we send when we cannot serve a connection (RFC 8446 §6).
const ALERT_INTERNAL_ERROR: u8 = 80;
const ALERT_UNRECOGNIZED_NAME: u8 = 112;

/// Answer to a plain HTTP request on the TLS port, as nginx does.
const PLAIN_HTTP_ON_TLS_PORT: &[u8] = b"HTTP/1.1 400 Bad Request\r\n\
Content-Type: text/plain\r\nConnection: close\r\nContent-Length: 51\r\n\r\n\
This port speaks TLS: use an https:// URL instead.\n";

pub struct PublicTlsApp {
    registry: Arc<Registry>,
    http: Arc<HttpProxy<EdgeProxy>>,
    /// The handshake for names whose edge asks nothing special: edge
    /// certificates by SNI, h2 and HTTP/1.1 by ALPN for HTTPS.
    default: ClientTls,
    certs: SniResolver,
}

impl PublicTlsApp {
    pub fn new(
        registry: Arc<Registry>,
        http: HttpProxy<EdgeProxy>,
        certs: SniResolver,
    ) -> Result<Self, String> {
        Ok(PublicTlsApp {
            registry,
            http: Arc::new(http),
            default: ClientTls::default_policy()?,
            certs,
        })
    }

    /// Serves a connection routed to a TLS endpoint.
    async fn serve_tunnel(
        &self,
        mut l4: L4Stream,
        target: Target,
        policy: Result<Option<Arc<ClientTls>>, PolicyMissing>,
        conn: &L4Conn,
        hello_len: usize,
    ) -> (u64, u64) {
        let (client, server) = (conn.client, conn.server);
        let peer = client.map(|a| a.to_string()).unwrap_or_default();
        if target.options.terminated_at_edge {
            let Ok(policy) = policy else {
                warn!(%peer, sni = %conn.server_name, "TLS edge's client policy unavailable; refusing");
                send_alert(&mut l4, ALERT_INTERNAL_ERROR).await;
                return (0, 0);
            };
            let acceptor = policy.as_ref().map_or(&self.default.raw, |p| &p.raw);
            let tls = tokio::time::timeout(
                HANDSHAKE_TIMEOUT,
                handshake_with_callback(acceptor, l4, &self.certs),
            )
            .await;
            return match tls {
                Ok(Ok(tls)) => pipe_to_agent(tls, &target, client, server, &[]).await,
                Ok(Err(e)) => {
                    debug!(%peer, error = %e, "TLS edge handshake failed");
                    (0, 0)
                }
                Err(_) => {
                    debug!(%peer, "TLS edge handshake timed out");
                    (0, 0)
                }
            };
        }
        if let Some(acceptor) = &target.options.tls_termination {
            let tls = tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake(acceptor, l4)).await;
            return match tls {
                Ok(Ok(tls)) => pipe_to_agent(tls, &target, client, server, &[]).await,
                Ok(Err(e)) => {
                    debug!(%peer, error = %e, "TLS endpoint handshake failed");
                    (0, 0)
                }
                Err(_) => {
                    debug!(%peer, "TLS endpoint handshake timed out");
                    (0, 0)
                }
            };
        }
        // Passthrough: take the peeked ClientHello back out so it rides in
        // the stream's first frame with the ProxyHeader.
        let mut hello = vec![0; hello_len];
        if l4.read_exact(&mut hello).await.is_err() {
            return (0, 0);
        }
        pipe_to_agent(l4, &target, client, server, &hello).await
    }

    /// Terminates TLS with the edge's certificates and runs the HTTP proxy
    /// on the connection, keep-alive requests included.
    async fn serve_https(
        self: &Arc<Self>,
        l4: L4Stream,
        policy: Option<Arc<ClientTls>>,
        shutdown: &ShutdownWatch,
    ) {
        let acceptor = policy.as_ref().map_or(&self.default.http, |p| &p.http);
        let tls = tokio::time::timeout(
            HANDSHAKE_TIMEOUT,
            handshake_with_callback(acceptor, l4, &self.certs),
        )
        .await;
        let mut stream: Stream = match tls {
            Ok(Ok(tls)) => Box::new(tls),
            Ok(Err(e)) => return debug!(error = %e, "TLS handshake failed"),
            Err(_) => return debug!("TLS handshake timed out"),
        };
        while let Some(reused) = self.http.process_new(stream, shutdown).await {
            stream = reused;
        }
    }
}

#[async_trait]
impl ServerApp for PublicTlsApp {
    async fn process_new(self: &Arc<Self>, io: Stream, shutdown: &ShutdownWatch) -> Option<Stream> {
        let Ok(l4) = io.into_any().downcast::<L4Stream>() else {
            warn!("TLS port: listener handed over a non-TCP stream");
            return None;
        };
        let mut l4 = *l4;
        let digest = l4.get_socket_digest();
        let inet = |a: Option<&pingora_core::protocols::l4::socket::SocketAddr>| {
            a.and_then(|a| a.as_inet()).copied()
        };
        let client = digest.as_ref().and_then(|d| inet(d.peer_addr()));
        let server = digest.as_ref().and_then(|d| inet(d.local_addr()));
        let peer = client.map(|a| a.to_string()).unwrap_or_default();
        let (hello, peeked) = match tokio::time::timeout(HELLO_TIMEOUT, peek_hello(&mut l4)).await {
            Ok(Ok(h)) => h,
            Ok(Err(e)) => {
                debug!(%peer, error = %e, "connection closed before a ClientHello");
                return None;
            }
            Err(_) => {
                debug!(%peer, "no ClientHello in time");
                return None;
            }
        };
        let sni = match hello {
            Hello::Complete { sni: Some(sni) } => sni,
            Hello::Complete { sni: None } => {
                // Without a name there is no endpoint to choose.
                debug!(%peer, "ClientHello without SNI");
                send_alert(&mut l4, ALERT_UNRECOGNIZED_NAME).await;
                return None;
            }
            Hello::NotTls(why) => {
                debug!(%peer, why, "not TLS");
                if looks_like_http(&peeked) {
                    let _ = l4.write_all(PLAIN_HTTP_ON_TLS_PORT).await;
                    let _ = l4.flush().await;
                }
                return None;
            }
            Hello::NeedBytes(_) => return None,
        };
        let route = {
            let table = self.registry.table();
            match table.route_tls(&sni) {
                TlsRoute::Tunnel(ep) => {
                    let admission = admit(ep, client, server, &sni);
                    let policy = admission.target.as_ref().map(|t| ep.client_tls(t));
                    Some((admission, policy))
                }
                TlsRoute::Https => None,
            }
        };
        let Some((admission, policy)) = route else {
            let policy = self
                .registry
                .table()
                .https_client_tls(&sni)
                .map(|p| p.cloned());
            match policy {
                Ok(policy) => self.serve_https(l4, policy, shutdown).await,
                Err(PolicyMissing) => {
                    warn!(%peer, %sni, "HTTPS edge's client policy unavailable; refusing");
                    send_alert(&mut l4, ALERT_INTERNAL_ERROR).await;
                }
            }
            return None;
        };
        let conn = L4Conn {
            client,
            server,
            server_name: sni.clone(),
            start: SystemTime::now(),
            ip_policy: admission.ip_policy,
            policy_logs: admission.policy_logs,
        };
        let events = self.registry.events();
        match admission.target {
            Some(target) => {
                let policy = policy.unwrap_or(Ok(None));
                let (bytes_in, bytes_out) = self
                    .serve_tunnel(l4, target, policy, &conn, peeked.len())
                    .await;
                events.tcp_closed(&conn, bytes_in, bytes_out);
            }
            None if !admission.refused => {
                debug!(%peer, %sni, "TLS endpoint offline");
                send_alert(&mut l4, ALERT_INTERNAL_ERROR).await;
            }
            None => {
                debug!(%peer, %sni, "TLS endpoint refused the client");
                events.tcp_closed(&conn, 0, 0);
            }
        }
        None
    }

    async fn cleanup(&self) {
        self.http.cleanup().await;
    }
}

/// Peeks until the ClientHello is complete or shown not to be one. Returns
/// the verdict and the bytes it rests on (still unread on `l4`).
async fn peek_hello(l4: &mut L4Stream) -> std::io::Result<(Hello, Vec<u8>)> {
    let mut want = 5;
    loop {
        let mut buf = vec![0; want];
        l4.try_peek(&mut buf).await?;
        match client_hello::parse(&buf) {
            Hello::NeedBytes(n) if n > want => want = n,
            Hello::NeedBytes(_) => return Ok((Hello::NotTls("ClientHello parse stalled"), buf)),
            verdict => return Ok((verdict, buf)),
        }
    }
}

fn looks_like_http(bytes: &[u8]) -> bool {
    const METHODS: [&[u8]; 9] = [
        b"GET ", b"POST", b"PUT ", b"HEAD", b"DELE", b"OPTI", b"PATC", b"CONN", b"TRAC",
    ];
    bytes.len() >= 4 && METHODS.iter().any(|m| bytes[..4] == m[..])
}

async fn send_alert(l4: &mut L4Stream, description: u8) {
    // A fatal alert record in TLS 1.2 framing, which every client reads.
    let alert = [21, 3, 3, 0, 2, 2, description];
    let _ = l4.write_all(&alert).await;
    let _ = l4.flush().await;
}
