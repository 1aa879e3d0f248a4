//! Documents the edge fetches on behalf of route modules (JWKS, SNS signing
//! certificates) into its one document cache: HTTPS only, verified against
//! the system roots plus the `--outbound-ca` bundle, with curl-style
//! `--connect-to HOST:PORT:ADDR:PORT` overrides for mirrors and air-gapped
//! sites. The protocol is `gangway_modules::documents`'.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use gangway_modules::documents::{Document, DocumentCache, DocumentKind, Fetch};
use pingora_core::connectors::http::Connector;
use pingora_core::tls::x509::X509;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_http::RequestHeader;
use tracing::warn;

/// Connect, handshake, and each read or write must finish within this.
const STEP_TIMEOUT: Duration = Duration::from_secs(5);

/// The largest document accepted (a certificate chain is a few KiB).
pub const MAX_DOCUMENT_BYTES: usize = 256 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{0} is not an https:// URL with a host")]
    BadUrl(String),
    #[error("cannot resolve {0}")]
    Resolve(String),
    #[error("{0}")]
    Http(String),
    #[error("the server answered {0}")]
    Status(u16),
    #[error("the document is larger than {MAX_DOCUMENT_BYTES} bytes")]
    TooLarge,
}

/// `--connect-to HOST:PORT:ADDR:PORT`: requests for HOST:PORT connect to
/// ADDR:PORT, still verifying the certificate for HOST.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectTo {
    pub host: String,
    pub port: u16,
    pub to: SocketAddr,
}

impl std::str::FromStr for ConnectTo {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || {
            format!("{s:?} is not HOST:PORT:ADDR:PORT (e.g. sns.us-east-1.amazonaws.com:443:127.0.0.1:8443)")
        };
        let (host, rest) = s.split_once(':').ok_or_else(bad)?;
        let (port, to) = rest.split_once(':').ok_or_else(bad)?;
        let port: u16 = port.parse().map_err(|_| bad())?;
        let to: SocketAddr = to.parse().map_err(|_| bad())?;
        if host.is_empty() {
            return Err(bad());
        }
        Ok(ConnectTo {
            host: host.to_ascii_lowercase(),
            port,
            to,
        })
    }
}

pub struct Fetcher {
    connector: Connector,
    extra_roots: Option<Arc<Box<[X509]>>>,
    connect_to: Vec<ConnectTo>,
}

impl Fetcher {
    /// `extra_roots`: PEM CAs trusted besides the system's.
    pub fn new(extra_roots: Option<&[u8]>, connect_to: Vec<ConnectTo>) -> Result<Self, String> {
        let extra_roots = match extra_roots {
            Some(pem) => {
                let certs = X509::stack_from_pem(pem).map_err(|e| e.to_string())?;
                if certs.is_empty() {
                    return Err("no PEM certificate in the bundle".into());
                }
                Some(Arc::new(certs.into_boxed_slice()))
            }
            None => None,
        };
        Ok(Fetcher {
            connector: Connector::new(None),
            extra_roots,
            connect_to,
        })
    }

    /// GETs `url` and returns its body.
    pub async fn get(&self, url: &str) -> Result<Bytes, FetchError> {
        let uri: http::Uri = url
            .parse()
            .map_err(|_| FetchError::BadUrl(url.to_string()))?;
        let host = uri
            .host()
            .filter(|_| uri.scheme_str() == Some("https"))
            .ok_or_else(|| FetchError::BadUrl(url.to_string()))?
            .to_ascii_lowercase();
        let port = uri.port_u16().unwrap_or(443);
        let addr = self.address(&host, port).await?;
        let mut peer = HttpPeer::new(addr, true, host.clone());
        peer.options.connection_timeout = Some(STEP_TIMEOUT);
        peer.options.total_connection_timeout = Some(STEP_TIMEOUT * 2);
        peer.options.read_timeout = Some(STEP_TIMEOUT);
        peer.options.write_timeout = Some(STEP_TIMEOUT);
        peer.options.ca = self.extra_roots.clone();
        let http = |e: Box<pingora_error::Error>| FetchError::Http(e.to_string());
        let (mut session, _) = self.connector.get_http_session(&peer).await.map_err(http)?;
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        let mut req = RequestHeader::build("GET", path.as_bytes(), None).map_err(http)?;
        let authority = if port == 443 {
            host.clone()
        } else {
            format!("{host}:{port}")
        };
        req.insert_header(http::header::HOST, authority)
            .map_err(http)?;
        req.insert_header(http::header::USER_AGENT, "gangway-edge")
            .map_err(http)?;
        req.insert_header(http::header::CONNECTION, "close")
            .map_err(http)?;
        session
            .write_request_header(Box::new(req))
            .await
            .map_err(http)?;
        session.finish_request_body().await.map_err(http)?;
        session.read_response_header().await.map_err(http)?;
        let status = session.response_header().map_or(0, |r| r.status.as_u16());
        if status != 200 {
            return Err(FetchError::Status(status));
        }
        let mut body = BytesMut::new();
        while let Some(chunk) = session.read_response_body().await.map_err(http)? {
            if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
                return Err(FetchError::TooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body.freeze())
    }

    async fn address(&self, host: &str, port: u16) -> Result<SocketAddr, FetchError> {
        if let Some(c) = self
            .connect_to
            .iter()
            .find(|c| c.host == host && c.port == port)
        {
            return Ok(c.to);
        }
        let resolve = tokio::net::lookup_host((host, port));
        tokio::time::timeout(STEP_TIMEOUT, resolve)
            .await
            .ok()
            .and_then(Result::ok)
            .and_then(|mut addrs| addrs.next())
            .ok_or_else(|| FetchError::Resolve(host.to_string()))
    }
}

/// The edge's document cache and the fetcher that fills it.
pub struct Documents {
    fetcher: Fetcher,
    cache: Arc<DocumentCache>,
}

impl Documents {
    pub fn new(fetcher: Fetcher) -> Self {
        Documents {
            fetcher,
            cache: Arc::default(),
        }
    }

    /// The cache every request's modules read.
    pub fn cache(&self) -> &Arc<DocumentCache> {
        &self.cache
    }

    /// Fetches `f` into the cache if it is missing or stale. On failure
    /// what the cache held keeps serving and the failure is remembered, so
    /// the next request does not refetch at once.
    pub async fn ensure(&self, f: &Fetch) {
        if !self.cache.needs_fetch(f) {
            return;
        }
        let doc = match self.fetcher.get(&f.url).await {
            Ok(body) => parse(f.kind, &body),
            Err(e) => Err(e.to_string()),
        };
        match doc {
            Ok(doc) => self.cache.store(f, doc),
            Err(error) => {
                match f.kind {
                    DocumentKind::Jwks => {
                        warn!(url = %f.url, %error, "cannot fetch a JWKS for jwt-validation")
                    }
                    DocumentKind::SigningCertificate => {
                        warn!(url = %f.url, %error, "cannot fetch a webhook signing certificate")
                    }
                }
                self.cache.failed(f);
            }
        }
    }
}

/// A fetched body as the document `kind` names.
fn parse(kind: DocumentKind, body: &[u8]) -> Result<Document, String> {
    match kind {
        DocumentKind::Jwks => Document::jwks(body),
        DocumentKind::SigningCertificate => {
            rsa_key_of_certificate(body).map(|der| Document::RsaPublicKey(der.into()))
        }
    }
}

/// The RSA public key (DER `RSAPublicKey`) of the first certificate in a
/// PEM document.
pub fn rsa_key_of_certificate(pem: &[u8]) -> Result<Vec<u8>, String> {
    let cert = X509::from_pem(pem).map_err(|e| format!("not a PEM certificate: {e}"))?;
    let key = cert.public_key().map_err(|e| e.to_string())?;
    let rsa = key
        .rsa()
        .map_err(|_| "the certificate's key is not RSA".to_string())?;
    rsa.public_key_to_der_pkcs1().map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_to_reads_like_curls() {
        let c: ConnectTo = "SNS.us-east-1.amazonaws.com:443:127.0.0.1:8443"
            .parse()
            .unwrap();
        assert_eq!(c.host, "sns.us-east-1.amazonaws.com");
        assert_eq!((c.port, c.to.port()), (443, 8443));
        let v6: ConnectTo = "a.example:443:[::1]:9443".parse().unwrap();
        assert!(v6.to.is_ipv6());
        for bad in [
            "a.example",
            "a.example:443",
            ":443:127.0.0.1:1",
            "a:x:127.0.0.1:1",
        ] {
            assert!(bad.parse::<ConnectTo>().is_err(), "{bad}");
        }
    }
}
