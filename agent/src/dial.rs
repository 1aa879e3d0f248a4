//! TLS the agent speaks: to the edge (verified against the given CA or the
//! system roots), to TLS upstreams (not verified), and as a server for TLS
//! tunnels it terminates itself (`--crt/--key`).

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use boring::pkey::PKey;
use boring::ssl::{SslAcceptor, SslConnector, SslMethod, SslVerifyMode};
use boring::x509::store::X509StoreBuilder;
use boring::x509::X509;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_boring::SslStream;

use gangway_config::hostname::strip_port;
use gangway_config::proxy_url::ProxyUrl;

/// Why a connection could not be made.
#[derive(Debug, thiserror::Error)]
pub enum DialError {
    #[error("connecting to {addr}: {source}")]
    Tcp {
        addr: String,
        source: std::io::Error,
    },
    #[error("TLS setup: {0}")]
    Setup(String),
    #[error("TLS handshake with {addr}: {detail}")]
    Handshake { addr: String, detail: String },
    #[error("the CA certificate is not valid PEM: {0}")]
    BadCa(String),
    #[error("the TLS certificate or key: {0}")]
    BadCert(String),
    #[error("through proxy {proxy}: {detail}")]
    Proxy { proxy: String, detail: String },
}

/// Builds a connector that trusts `ca_pem` (every certificate in it) or,
/// without one, the system roots.
pub fn edge_connector(ca_pem: Option<&[u8]>) -> Result<SslConnector, DialError> {
    let mut b =
        SslConnector::builder(SslMethod::tls()).map_err(|e| DialError::Setup(e.to_string()))?;
    if let Some(pem) = ca_pem {
        let certs = X509::stack_from_pem(pem).map_err(|e| DialError::BadCa(e.to_string()))?;
        if certs.is_empty() {
            return Err(DialError::BadCa("no certificate found".into()));
        }
        let mut store = X509StoreBuilder::new().map_err(|e| DialError::Setup(e.to_string()))?;
        for c in certs {
            store
                .add_cert(c)
                .map_err(|e| DialError::BadCa(e.to_string()))?;
        }
        b.set_verify_cert_store(store.build())
            .map_err(|e| DialError::Setup(e.to_string()))?;
    }
    Ok(b.build())
}

/// Dials the edge's agent listener, directly or through `proxy`. The
/// same connector checks an HTTPS proxy's certificate.
pub async fn dial_edge(
    connector: &SslConnector,
    addr: &str,
    proxy: Option<&ProxyUrl>,
) -> Result<SslStream<MaybeTls>, DialError> {
    let stream = match proxy {
        Some(proxy) => crate::proxy::connect(proxy, addr, connector).await?,
        None => {
            let tcp = TcpStream::connect(addr)
                .await
                .map_err(|source| DialError::Tcp {
                    addr: addr.to_string(),
                    source,
                })?;
            let _ = tcp.set_nodelay(true);
            MaybeTls::Plain(tcp)
        }
    };
    let cfg = connector
        .configure()
        .map_err(|e| DialError::Setup(e.to_string()))?;
    tokio_boring::connect(cfg, strip_port(addr), stream)
        .await
        .map_err(|e| DialError::Handshake {
            addr: addr.to_string(),
            detail: e.to_string(),
        })
}

/// A connector for local TLS services: no verification, SNI still sent.
pub fn insecure_connector() -> Result<SslConnector, DialError> {
    let mut b =
        SslConnector::builder(SslMethod::tls()).map_err(|e| DialError::Setup(e.to_string()))?;
    b.set_verify(SslVerifyMode::NONE);
    Ok(b.build())
}

/// A certificate and key the agent terminates TLS tunnels with.
#[derive(Clone)]
pub struct TlsTerminator(pub SslAcceptor);

impl fmt::Debug for TlsTerminator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TlsTerminator")
    }
}

impl TlsTerminator {
    /// From a PEM chain (leaf first) and its PEM private key.
    pub fn from_pem(chain_pem: &[u8], key_pem: &[u8]) -> Result<Self, DialError> {
        let bad = |e: boring::error::ErrorStack| DialError::BadCert(e.to_string());
        let mut chain = X509::stack_from_pem(chain_pem).map_err(bad)?.into_iter();
        let leaf = chain
            .next()
            .ok_or_else(|| DialError::BadCert("no certificate in the PEM".into()))?;
        let key = PKey::private_key_from_pem(key_pem).map_err(bad)?;
        if !leaf.public_key().is_ok_and(|public| public.public_eq(&key)) {
            return Err(DialError::BadCert(
                "the key does not match the certificate".into(),
            ));
        }
        let mut b = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls())
            .map_err(|e| DialError::Setup(e.to_string()))?;
        b.set_certificate(&leaf).map_err(bad)?;
        for c in chain {
            b.add_extra_chain_cert(c).map_err(bad)?;
        }
        b.set_private_key(&key).map_err(bad)?;
        Ok(TlsTerminator(b.build()))
    }
}

/// A TCP stream, or TLS over one: a TLS upstream, or what the edge's TLS
/// runs over (direct, HTTP/SOCKS-proxied, or through an HTTPS proxy).
pub enum MaybeTls {
    Plain(TcpStream),
    Tls(Box<SslStream<TcpStream>>),
}

impl AsyncRead for MaybeTls {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_read(cx, buf),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for MaybeTls {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_write(cx, buf),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_flush(cx),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_shutdown(cx),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            MaybeTls::Plain(s) => s.is_write_vectored(),
            MaybeTls::Tls(s) => s.is_write_vectored(),
        }
    }
}
