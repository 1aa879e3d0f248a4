//! Documents modules need from the network (JWKS key sets, AWS SNS signing
//! certificates), held in one cache the edge owns and hands to every
//! phase. This crate does no IO; the protocol is the same for every kind:
//!
//! 1. A module names what it needs as a [`Fetch`]: up front, through
//!    [`RouteModule::documents`](crate::chain::RouteModule::documents)
//!    (the edge fetches those [`DocumentCache::needs_fetch`] calls missing
//!    or stale before the request phase), or from a phase, as
//!    [`Flow::Fetch`](crate::chain::Flow::Fetch) (the edge fetches it and
//!    runs that phase again).
//! 2. The edge GETs the URL over verified HTTPS, turns the body into a
//!    [`Document`] of the asked kind, and [`DocumentCache::store`]s it, or
//!    records [`DocumentCache::failed`].
//! 3. The module reads it from the cache.

use std::collections::HashMap;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;

/// JWKS are refetched this long after they were fetched.
pub const JWKS_TTL: Duration = Duration::from_secs(300);
/// A token naming a key the set lacks triggers a refetch (the issuer
/// rotated its keys), at most this often.
pub const ROTATION_REFETCH: Duration = Duration::from_secs(30);
/// A failed first fetch is retried after this.
pub const FAILED_RETRY: Duration = Duration::from_secs(5);
/// Documents held at most; past it the oldest is dropped (a route names a
/// handful, and AWS rotates a handful of signing certificates).
pub const MAX_DOCUMENTS: usize = 256;

/// What a fetched body is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DocumentKind {
    /// A JSON Web Key Set (jwt-validation).
    Jwks,
    /// A PEM X.509 certificate whose RSA key signs messages (AWS SNS).
    SigningCertificate,
}

/// A document a module needs: an `https://` URL it has vetted, and what
/// the body must be.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Fetch {
    pub url: String,
    pub kind: DocumentKind,
}

impl Fetch {
    pub fn jwks(url: impl Into<String>) -> Self {
        Fetch {
            url: url.into(),
            kind: DocumentKind::Jwks,
        }
    }

    pub fn signing_certificate(url: impl Into<String>) -> Self {
        Fetch {
            url: url.into(),
            kind: DocumentKind::SigningCertificate,
        }
    }
}

/// A fetched document, parsed.
#[derive(Debug, Clone)]
pub enum Document {
    Jwks(Arc<JwkSet>),
    /// DER `RSAPublicKey` of a signing certificate (the edge parses the
    /// X.509: that needs its TLS library).
    RsaPublicKey(Arc<[u8]>),
}

impl Document {
    /// Parses a JWKS body.
    pub fn jwks(body: &[u8]) -> Result<Document, String> {
        let set: JwkSet =
            serde_json::from_slice(body).map_err(|e| format!("not a JWKS document: {e}"))?;
        Ok(Document::Jwks(Arc::new(set)))
    }
}

#[derive(Debug)]
struct Entry {
    kind: DocumentKind,
    /// None: every fetch so far failed.
    doc: Option<Document>,
    at: Instant,
    /// A module found it lacking (a JWKS without the token's key).
    stale: bool,
}

/// Fetched documents by URL. Shared by every route of an edge: two routes
/// naming one JWKS fetch it once.
#[derive(Debug, Default)]
pub struct DocumentCache {
    entries: RwLock<HashMap<String, Entry>>,
}

impl DocumentCache {
    pub fn new() -> Self {
        Self::default()
    }

    fn read(&self) -> RwLockReadGuard<'_, HashMap<String, Entry>> {
        // Entries are replaced whole: a panic elsewhere cannot tear one.
        self.entries.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, HashMap<String, Entry>> {
        self.entries.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the edge should fetch `f` now: never fetched, past its TTL
    /// (JWKS), found lacking a while ago, or failed a while ago.
    pub fn needs_fetch(&self, f: &Fetch) -> bool {
        let entries = self.read();
        let Some(e) = entries.get(&f.url) else {
            return true;
        };
        let age = e.at.elapsed();
        let expired = match e.kind {
            DocumentKind::Jwks => age >= JWKS_TTL,
            // A certificate's key does not change under its URL.
            DocumentKind::SigningCertificate => false,
        };
        expired || (e.stale && age >= ROTATION_REFETCH) || (e.doc.is_none() && age >= FAILED_RETRY)
    }

    /// Keeps what was fetched for `f`.
    pub fn store(&self, f: &Fetch, doc: Document) {
        let mut entries = self.write();
        make_room(&mut entries, &f.url);
        entries.insert(
            f.url.clone(),
            Entry {
                kind: f.kind,
                doc: Some(doc),
                at: Instant::now(),
                stale: false,
            },
        );
    }

    /// A fetch of `f` failed: what is held keeps serving, and the next try
    /// waits ([`FAILED_RETRY`] for a first fetch, a TTL otherwise) rather
    /// than refetching on every request.
    pub fn failed(&self, f: &Fetch) {
        let mut entries = self.write();
        make_room(&mut entries, &f.url);
        let e = entries.entry(f.url.clone()).or_insert(Entry {
            kind: f.kind,
            doc: None,
            at: Instant::now(),
            stale: false,
        });
        e.at = Instant::now();
        e.stale = false;
    }

    /// A module found the document at `url` lacking (a key it names is
    /// not there): refetch after [`ROTATION_REFETCH`].
    pub fn mark_stale(&self, url: &str) {
        if let Some(e) = self.write().get_mut(url) {
            e.stale = true;
        }
    }

    pub fn jwks(&self, url: &str) -> Option<Arc<JwkSet>> {
        match self.read().get(url)?.doc.as_ref()? {
            Document::Jwks(set) => Some(set.clone()),
            Document::RsaPublicKey(_) => None,
        }
    }

    pub fn rsa_public_key(&self, url: &str) -> Option<Arc<[u8]>> {
        match self.read().get(url)?.doc.as_ref()? {
            Document::RsaPublicKey(key) => Some(key.clone()),
            Document::Jwks(_) => None,
        }
    }
}

/// Drops the oldest entry when a new URL would pass [`MAX_DOCUMENTS`].
fn make_room(entries: &mut HashMap<String, Entry>, url: &str) {
    if entries.len() < MAX_DOCUMENTS || entries.contains_key(url) {
        return;
    }
    let oldest = entries
        .iter()
        .min_by_key(|(_, e)| e.at)
        .map(|(u, _)| u.clone());
    if let Some(u) = oldest {
        entries.remove(&u);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fetched_documents_serve_until_stale_or_expired() {
        let cache = DocumentCache::new();
        let jwks = Fetch::jwks("https://issuer.example/jwks");
        assert!(cache.needs_fetch(&jwks));
        cache.failed(&jwks);
        assert!(!cache.needs_fetch(&jwks), "a failure waits before retrying");
        assert!(cache.jwks(&jwks.url).is_none());
        let doc = Document::jwks(br#"{"keys":[]}"#).unwrap();
        cache.store(&jwks, doc);
        assert!(cache.jwks(&jwks.url).is_some());
        assert!(!cache.needs_fetch(&jwks));
        cache.mark_stale(&jwks.url);
        assert!(!cache.needs_fetch(&jwks), "rotation refetches are spaced");
        assert!(Document::jwks(b"<html>").is_err());

        let cert = Fetch::signing_certificate("https://sns.us-east-1.amazonaws.com/a.pem");
        cache.store(&cert, Document::RsaPublicKey(Arc::from(&b"der"[..])));
        assert_eq!(
            cache.rsa_public_key(&cert.url).as_deref(),
            Some(&b"der"[..])
        );
        assert!(cache.jwks(&cert.url).is_none(), "kinds do not mix");
    }

    #[test]
    fn the_cache_is_bounded() {
        let cache = DocumentCache::new();
        for i in 0..MAX_DOCUMENTS + 10 {
            cache.failed(&Fetch::jwks(format!("https://h.example/{i}")));
        }
        assert_eq!(cache.read().len(), MAX_DOCUMENTS);
    }
}
