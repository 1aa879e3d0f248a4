//! Server certificates chosen by SNI during the handshake. The set is
//! immutable and swapped whole, like the route table.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use gangway_config::control::ServedCertificate;

use crate::client_tls::{require_client_cert, HandshakeFacts};
use crate::route_table::RouteTable;
use pingora_core::listeners::TlsAccept;
use pingora_core::protocols::tls::TlsRef;
use pingora_core::tls::ext;
use pingora_core::tls::pkey::{PKey, Private};
use pingora_core::tls::ssl::{NameType, SslAcceptor, SslMethod, SslVersion};
use pingora_core::tls::x509::X509;

/// Why a certificate could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{what} is not valid PEM: {detail}")]
    Pem { what: String, detail: String },
    #[error("{0} holds no certificate")]
    Empty(String),
}

/// A certificate chain and its key.
pub struct CertKey {
    pub leaf: X509,
    pub chain: Vec<X509>,
    pub key: PKey<Private>,
}

impl CertKey {
    /// Parses a PEM chain (leaf first) and a PEM private key.
    pub fn from_pem(chain_pem: &[u8], key_pem: &[u8], what: &str) -> Result<Self, CertError> {
        let pem_err = |e: pingora_core::tls::error::ErrorStack| CertError::Pem {
            what: what.to_string(),
            detail: e.to_string(),
        };
        let mut certs = X509::stack_from_pem(chain_pem)
            .map_err(pem_err)?
            .into_iter();
        let leaf = certs
            .next()
            .ok_or_else(|| CertError::Empty(what.to_string()))?;
        let key = PKey::private_key_from_pem(key_pem).map_err(pem_err)?;
        Ok(CertKey {
            leaf,
            chain: certs.collect(),
            key,
        })
    }

    pub fn from_files(cert: &Path, key: &Path) -> Result<Self, CertError> {
        let read = |p: &Path| {
            std::fs::read(p).map_err(|source| CertError::Read {
                path: p.display().to_string(),
                source,
            })
        };
        Self::from_pem(&read(cert)?, &read(key)?, &cert.display().to_string())
    }

    /// A server acceptor that always presents this certificate; with
    /// `client_cas`, clients must present a certificate they issued.
    pub fn acceptor(&self, client_cas: Option<&[X509]>) -> Result<SslAcceptor, String> {
        self.acceptor_with(client_cas, None, None)
    }

    /// [`Self::acceptor`] limited to TLS versions `min`..=`max`.
    pub fn acceptor_with(
        &self,
        client_cas: Option<&[X509]>,
        min: Option<SslVersion>,
        max: Option<SslVersion>,
    ) -> Result<SslAcceptor, String> {
        if !self
            .leaf
            .public_key()
            .is_ok_and(|public| public.public_eq(&self.key))
        {
            return Err("the key does not match the certificate".into());
        }
        let mut b =
            SslAcceptor::mozilla_intermediate_v5(SslMethod::tls()).map_err(|e| e.to_string())?;
        b.set_certificate(&self.leaf).map_err(|e| e.to_string())?;
        for c in &self.chain {
            b.add_extra_chain_cert(c.clone())
                .map_err(|e| e.to_string())?;
        }
        b.set_private_key(&self.key).map_err(|e| e.to_string())?;
        if let Some(cas) = client_cas {
            require_client_cert(&mut b, cas).map_err(|e| e.to_string())?;
        }
        if min.is_some() {
            b.set_min_proto_version(min).map_err(|e| e.to_string())?;
        }
        if max.is_some() {
            b.set_max_proto_version(max).map_err(|e| e.to_string())?;
        }
        Ok(b.build())
    }

    /// DNS names in the certificate's subjectAltName.
    pub fn dns_names(&self) -> Vec<String> {
        self.leaf
            .subject_alt_names()
            .map(|names| {
                names
                    .iter()
                    .filter_map(|n| n.dnsname().map(str::to_ascii_lowercase))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Certificates by exact name and by wildcard suffix, plus a default for
/// clients that send no (or an unknown) SNI.
pub struct CertSet {
    exact: HashMap<String, Arc<CertKey>>,
    wildcard: HashMap<String, Arc<CertKey>>,
    default: Arc<CertKey>,
    /// The certificates from files (default first), kept so the stored
    /// ones can be swapped without reloading these.
    base: Vec<Arc<CertKey>>,
}

impl CertSet {
    pub fn new(default: CertKey, others: Vec<CertKey>) -> Self {
        let default = Arc::new(default);
        let base: Vec<Arc<CertKey>> = std::iter::once(default.clone())
            .chain(others.into_iter().map(Arc::new))
            .collect();
        let mut set = CertSet {
            exact: HashMap::new(),
            wildcard: HashMap::new(),
            default,
            base: base.clone(),
        };
        for ck in base {
            set.add(ck);
        }
        set
    }

    fn add(&mut self, ck: Arc<CertKey>) {
        for name in ck.dns_names() {
            match name.strip_prefix("*.") {
                Some(suffix) => self.wildcard.insert(suffix.to_string(), ck.clone()),
                None => self.exact.insert(name, ck.clone()),
            };
        }
    }

    /// This set's file certificates plus the API's stored ones: a stored
    /// certificate serves its names (over a file one), and a reserved
    /// domain pinned to a certificate is served with that one. A stored
    /// certificate that does not load is skipped and logged.
    pub fn with_stored(&self, stored: &[Arc<ServedCertificate>]) -> CertSet {
        let mut set = CertSet {
            exact: HashMap::new(),
            wildcard: HashMap::new(),
            default: self.default.clone(),
            base: self.base.clone(),
        };
        for ck in &self.base {
            set.add(ck.clone());
        }
        for sc in stored {
            let loaded = CertKey::from_pem(
                sc.certificate_pem.as_bytes(),
                sc.private_key_pem.as_bytes(),
                &sc.id,
            );
            let ck = match loaded {
                Ok(ck) => Arc::new(ck),
                Err(e) => {
                    tracing::warn!(certificate = %sc.id, error = %e, "stored certificate skipped");
                    continue;
                }
            };
            set.add(ck.clone());
            for domain in &sc.pinned_domains {
                set.exact.insert(domain.clone(), ck.clone());
            }
        }
        set
    }

    /// Exact name first, then a wildcard covering exactly one more label.
    pub fn select(&self, sni: Option<&str>) -> &Arc<CertKey> {
        let Some(name) = sni.map(str::to_ascii_lowercase) else {
            return &self.default;
        };
        if let Some(ck) = self.exact.get(&name) {
            return ck;
        }
        if let Some((_, parent)) = name.split_once('.') {
            if let Some(ck) = self.wildcard.get(parent) {
                return ck;
            }
        }
        &self.default
    }
}

/// The `TlsAccept` callback of the public HTTPS listener: certificates
/// come from the current route table.
pub struct SniResolver {
    table: Arc<ArcSwap<RouteTable>>,
}

impl SniResolver {
    pub fn new(table: Arc<ArcSwap<RouteTable>>) -> Self {
        SniResolver { table }
    }
}

#[async_trait]
impl TlsAccept for SniResolver {
    async fn certificate_callback(&self, ssl: &mut TlsRef) {
        let table = self.table.load();
        let Some(set) = table.certs() else {
            // No certificate: BoringSSL ends the handshake with an alert.
            return;
        };
        let sni = ssl.servername(NameType::HOST_NAME).map(str::to_string);
        let ck = set.select(sni.as_deref());
        // A failure here leaves the handshake without a certificate, which
        // BoringSSL turns into a handshake alert: the right outcome.
        if let Err(e) = ext::ssl_use_certificate(ssl, &ck.leaf) {
            tracing::warn!(error = %e, "setting certificate");
            return;
        }
        if let Err(e) = ext::ssl_use_private_key(ssl, &ck.key) {
            tracing::warn!(error = %e, "setting private key");
            return;
        }
        for c in &ck.chain {
            if let Err(e) = ext::ssl_add_chain_cert(ssl, c) {
                tracing::warn!(error = %e, "adding chain certificate");
            }
        }
    }

    /// Keeps the SNI and the client certificate for the HTTP layer.
    async fn handshake_complete_callback(
        &self,
        ssl: &TlsRef,
    ) -> Option<Arc<dyn std::any::Any + Send + Sync>> {
        Some(HandshakeFacts::of(ssl))
    }
}
