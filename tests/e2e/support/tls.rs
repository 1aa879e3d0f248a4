//! TLS helpers for tests: certificates made with rcgen, rustls clients
//! that trust only them, and small local TLS/TCP services.

use std::net::SocketAddr;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;

/// A self-signed certificate for some names, as PEM and DER.
pub struct TestCert {
    pub cert_pem: String,
    pub key_pem: String,
    pub der: CertificateDer<'static>,
}

pub fn cert_for(names: &[&str]) -> TestCert {
    let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    let ck = rcgen::generate_simple_self_signed(names).expect("cert");
    TestCert {
        cert_pem: ck.cert.pem(),
        key_pem: ck.signing_key.serialize_pem(),
        der: ck.cert.der().clone(),
    }
}

pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A client certificate chain and key from PEM, for rustls client auth.
pub fn client_identity(
    cert_pem: &str,
    key_pem: &str,
) -> (
    Vec<CertificateDer<'static>>,
    rustls::pki_types::PrivateKeyDer<'static>,
) {
    let chain = rustls_pemfile::certs(&mut cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .expect("cert pem");
    let key = rustls_pemfile::private_key(&mut key_pem.as_bytes())
        .expect("key pem")
        .expect("a key");
    (chain, key)
}

/// A client that trusts only `cert`.
pub fn client_trusting(cert: &TestCert) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.der.clone()).expect("root");
    let cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
}

pub fn acceptor_for(cert: &TestCert) -> tokio_rustls::TlsAcceptor {
    let key = PrivateKeyDer::Pkcs8(
        rustls_pemfile::pkcs8_private_keys(&mut cert.key_pem.as_bytes())
            .next()
            .expect("key")
            .expect("pem"),
    );
    let cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(vec![cert.der.clone()], key)
        .expect("server cert");
    tokio_rustls::TlsAcceptor::from(Arc::new(cfg))
}

/// Reads to EOF, answers `<tag>:` + the bytes reversed, and closes.
pub async fn reverse_after_eof<S: AsyncRead + AsyncWrite + Unpin>(mut io: S, tag: &str) {
    let mut got = Vec::new();
    if io.read_to_end(&mut got).await.is_err() {
        return;
    }
    got.reverse();
    let mut reply = format!("{tag}:").into_bytes();
    reply.extend(got);
    let _ = io.write_all(&reply).await;
    let _ = io.shutdown().await;
}

/// A local TLS service presenting `cert`.
pub async fn local_tls_server(cert: &TestCert) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let acceptor = acceptor_for(cert);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(tls) = acceptor.accept(tcp).await {
                    reverse_after_eof(tls, "local-tls").await;
                }
            });
        }
    });
    addr
}

/// A local plain TCP service.
pub async fn local_tcp_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(reverse_after_eof(tcp, "local-plain"));
        }
    });
    addr
}

/// A CA made with rcgen, for certificates the edge is given through the
/// API (uploads, mutual TLS, ingress names).
pub struct TestCa {
    pub cert_pem: String,
    pub der: CertificateDer<'static>,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl TestCa {
    pub fn new(common_name: &str) -> TestCa {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, common_name);
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = params.self_signed(&key).expect("ca");
        TestCa {
            cert_pem: cert.pem(),
            der: cert.der().clone(),
            issuer: rcgen::Issuer::new(params, key),
        }
    }

    /// (certificate PEM, key PEM) of a server certificate for `names`
    /// (the first is also the subject CN).
    pub fn leaf(&self, names: &[&str]) -> (String, String) {
        let mut params =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .expect("params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, names[0]);
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "Gangway Tests");
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.issuer).expect("leaf");
        (cert.pem(), key.serialize_pem())
    }

    /// (certificate PEM, key PEM) of a client certificate for mutual TLS,
    /// with subject CN `cn` and the given serial number.
    pub fn client_leaf(&self, cn: &str, serial: &[u8]) -> (String, String) {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        params.serial_number = Some(rcgen::SerialNumber::from_slice(serial));
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.issuer).expect("client leaf");
        (cert.pem(), key.serialize_pem())
    }

    /// A rustls client config trusting only this CA.
    pub fn client_config(&self) -> rustls::ClientConfig {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.der.clone()).expect("root");
        rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth()
    }
}

/// An HTTPS host with a certificate from `ca` for `name`, serving `body`
/// at `path` (404 elsewhere), one request per connection: what the edge
/// fetches from the internet (SNS certificates, JWKS). Counts the fetches.
pub async fn document_host(
    ca: &TestCa,
    name: &str,
    path: &str,
    content_type: &str,
    body: String,
) -> (SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
    let (cert_pem, key_pem) = ca.leaf(&[name]);
    let der = rustls_pemfile::certs(&mut cert_pem.as_bytes())
        .next()
        .expect("cert")
        .expect("pem");
    let acceptor = acceptor_for(&TestCert {
        cert_pem,
        key_pem,
        der,
    });
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let fetches = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = fetches.clone();
    let wanted = format!("GET {path} ");
    let ok = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, count, wanted, ok) =
                (acceptor.clone(), count.clone(), wanted.clone(), ok.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let reply = if String::from_utf8_lossy(&head).starts_with(&wanted) {
                    count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    ok
                } else {
                    "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                        .into()
                };
                let _ = tls.write_all(reply.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    (addr, fetches)
}
