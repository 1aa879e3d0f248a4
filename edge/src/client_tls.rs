//! What the TLS port asks of a client for a given name: a client
//! certificate from the edge's CAs (mutual TLS) and the lowest TLS
//! version. Both must be fixed before the ClientHello is answered — BoringSSL
//! freezes the version range before the certificate callback — so each
//! policy gets its own acceptors, chosen by the SNI the listener peeked.
//! Separate acceptors also mean separate session-ticket keys and session
//! contexts: a session made under one policy never resumes under another,
//! where it would skip the client-certificate check.

use std::any::Any;
use std::sync::Arc;

use gangway_config::control::ClientTlsSpec;
use gangway_modules::chain::ClientCert;
use pingora_core::tls::error::ErrorStack;
use pingora_core::tls::hash::{hash, MessageDigest};
use pingora_core::tls::nid::Nid;
use pingora_core::tls::ssl::{
    self, AlpnError, SslAcceptor, SslAcceptorBuilder, SslMethod, SslRef, SslVerifyMode, SslVersion,
};
use pingora_core::tls::x509::store::X509StoreBuilder;
use pingora_core::tls::x509::X509;

/// ALPN the HTTPS side offers: h2, then HTTP/1.1.
const HTTP_ALPN: &[u8] = b"\x02h2\x08http/1.1";

/// The acceptors for one policy.
pub struct ClientTls {
    /// HTTPS endpoints: h2 and HTTP/1.1 by ALPN.
    pub http: SslAcceptor,
    /// TLS endpoints terminated here: no ALPN, the bytes are the app's.
    pub raw: SslAcceptor,
    /// Whether a verified client certificate is required.
    pub mutual: bool,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls")
            .field("mutual", &self.mutual)
            .finish()
    }
}

impl ClientTls {
    /// The acceptors of the default policy: any client, TLS 1.2 or later.
    pub fn default_policy() -> Result<ClientTls, String> {
        Self::build(None, false)
    }

    /// Acceptors for `spec`. A CA that does not parse is left out (the API
    /// parsed it when it was stored), which can only refuse more clients.
    pub fn from_spec(spec: &ClientTlsSpec) -> Result<ClientTls, String> {
        let cas = spec.client_cas.as_ref().map(|pems| {
            let mut cas = Vec::new();
            for pem in pems {
                match X509::stack_from_pem(pem.as_bytes()) {
                    Ok(certs) => cas.extend(certs),
                    Err(e) => tracing::warn!(error = %e, "mutual TLS CA skipped"),
                }
            }
            cas
        });
        Self::build(cas.as_deref(), spec.min_tls13)
    }

    /// Acceptors for an agent's `MutualTLSCA` PEM bundle.
    pub fn from_ca_bundle(pem: &[u8]) -> Result<ClientTls, String> {
        Self::build(Some(&parse_ca_bundle(pem)?), false)
    }

    /// `client_cas`: `Some` requires a client certificate from one of them.
    fn build(client_cas: Option<&[X509]>, min_tls13: bool) -> Result<ClientTls, String> {
        Ok(ClientTls {
            http: acceptor(client_cas, min_tls13, true)?,
            raw: acceptor(client_cas, min_tls13, false)?,
            mutual: client_cas.is_some(),
        })
    }
}

fn acceptor(
    client_cas: Option<&[X509]>,
    min_tls13: bool,
    http: bool,
) -> Result<SslAcceptor, String> {
    let err = |e: pingora_core::tls::error::ErrorStack| e.to_string();
    let mut b = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls()).map_err(err)?;
    if http {
        b.set_alpn_select_callback(|_, client| {
            ssl::select_next_proto(HTTP_ALPN, client).ok_or(AlpnError::NOACK)
        });
    }
    if min_tls13 {
        b.set_min_proto_version(Some(SslVersion::TLS1_3))
            .map_err(err)?;
    }
    if let Some(cas) = client_cas {
        require_client_cert(&mut b, cas).map_err(err)?;
    }
    Ok(b.build())
}

/// Makes `b` ask for a client certificate and refuse the handshake
/// without one that chains to `cas` (none: every client is refused).
pub fn require_client_cert(b: &mut SslAcceptorBuilder, cas: &[X509]) -> Result<(), ErrorStack> {
    let mut store = X509StoreBuilder::new()?;
    let mut context = Vec::new();
    for ca in cas {
        store.add_cert(ca.clone())?;
        // Tells the client which CAs to pick a certificate from.
        b.add_client_ca(ca)?;
        context.extend_from_slice(&ca.digest(MessageDigest::sha256())?);
    }
    b.set_verify_cert_store(store.build())?;
    b.set_verify(SslVerifyMode::PEER | SslVerifyMode::FAIL_IF_NO_PEER_CERT);
    // Sessions resume only under the same CAs.
    b.set_session_id_context(&hash(MessageDigest::sha256(), &context)?)?;
    Ok(())
}

/// Parses an agent's `MutualTLSCA` / `MutualTLSAtEdge` PEM bundle.
pub fn parse_ca_bundle(pem: &[u8]) -> Result<Vec<X509>, String> {
    let cas = X509::stack_from_pem(pem).map_err(|e| format!("not PEM certificates: {e}"))?;
    if cas.is_empty() {
        return Err("no certificate in the CA bundle".into());
    }
    Ok(cas)
}

/// What the handshake established, kept on the connection's TLS digest for
/// the HTTP layer: the name the client asked for and its certificate.
#[derive(Debug, Clone, Default)]
pub struct HandshakeFacts {
    pub sni: Option<String>,
    pub client_cert: Option<ClientCert>,
}

impl HandshakeFacts {
    pub fn of(ssl: &SslRef) -> Arc<dyn Any + Send + Sync> {
        let sni = ssl
            .servername(ssl::NameType::HOST_NAME)
            .map(str::to_ascii_lowercase);
        let client_cert = ssl.peer_certificate().map(|c| ClientCert {
            serial_number: c
                .serial_number()
                .to_bn()
                .ok()
                .and_then(|bn| bn.to_hex_str().ok().map(|h| h.to_ascii_lowercase()))
                .unwrap_or_default(),
            subject_cn: c
                .subject_name()
                .entries_by_nid(Nid::COMMONNAME)
                .next()
                .and_then(|e| e.data().as_utf8().ok().map(|s| s.to_string()))
                .unwrap_or_default(),
        });
        Arc::new(HandshakeFacts { sni, client_cert })
    }
}
