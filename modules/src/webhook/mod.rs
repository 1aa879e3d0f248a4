//! `webhook_verification`: the whole body is held back from the agent
//! until the provider's signature over it checks out (constant-time), with
//! the provider's replay window. The edge answers the endpoint-verification
//! challenges of twitter, zoom, xero and worldline itself.

mod providers;
pub mod sns;

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use ring::{digest, hmac, signature};
use serde_json::{json, Value};

use crate::chain::{Cx, EdgeResponse, Flow, RequestInfo, RouteModule, Stage};
use crate::decisions::Access;
use crate::documents::{DocumentCache, Fetch};
use crate::refusal::Refusal;
use crate::ConfigError;

pub use providers::PROVIDERS;

/// Replay window when a provider documents none.
pub const DEFAULT_WINDOW_SECS: u64 = 180;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alg {
    HmacSha1,
    HmacSha256,
    HmacSha512,
    /// The header carries the secret itself.
    Equal,
    /// ECDSA P-256 with SHA-256, DER signature.
    EcdsaP256,
    Ed25519,
    /// AWS SNS: RSA with a certificate fetched from AWS (see `sns`).
    SnsRsa,
}

/// How the signature is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enc {
    Hex,
    Base64,
    Raw,
}

/// How the configured secret becomes a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyForm {
    Raw,
    /// Base64 (microsoft teams).
    Base64,
    /// `whsec_<base64>`.
    SvixSecret,
    /// Base64 of a DER SubjectPublicKeyInfo (sendgrid).
    EcdsaSpkiBase64,
    /// Hex of the raw public key (discord).
    Ed25519Hex,
    /// No secret: the key comes with the message (sns).
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TsUnit {
    Seconds,
    Millis,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TsSource {
    Header(&'static str, TsUnit),
    /// From the signature header's fields (`t=`).
    Fields(TsUnit),
    MailgunBody,
}

/// Where the signature(s) are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigSource {
    /// `<prefix><sig>`, or several separated by `list`, each prefixed.
    Header {
        name: &'static str,
        prefix: &'static str,
        list: Option<char>,
    },
    /// `ts_key=<ts>,sig_key=<sig>[,sig_key=<sig>]`.
    Fields {
        name: &'static str,
        ts_key: &'static str,
        sig_key: &'static str,
    },
    /// `svix-signature: v1,<b64> v1,<b64>` (or the `webhook-*` names).
    Svix,
    /// `signature.{timestamp,token,signature}` in the JSON or form body.
    MailgunBody,
}

/// A piece of the signed message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Lit(&'static str),
    Body,
    Ts,
    Method,
    /// The URL the sender posted to.
    Url,
    Header(&'static str),
    /// Form parameters sorted by name, each name then value.
    TwilioParams,
    MailgunToken,
}

/// One provider's scheme.
#[derive(Debug, Clone, Copy)]
pub struct Provider {
    pub id: &'static str,
    pub alg: Alg,
    pub key: KeyForm,
    pub sig: SigSource,
    pub message: &'static [Part],
    pub enc: Enc,
    pub ts: Option<TsSource>,
    /// Replay window in seconds (0: the default).
    pub window: u64,
}

/// Provider ids the module accepts.
pub fn provider_ids() -> impl Iterator<Item = &'static str> {
    PROVIDERS.iter().map(|p| p.id)
}

pub fn provider(id: &str) -> Option<&'static Provider> {
    PROVIDERS.iter().find(|p| p.id == id)
}

enum Key {
    Hmac(hmac::Key),
    Secret(Vec<u8>),
    Ecdsa(Vec<u8>),
    Ed25519(Vec<u8>),
    /// Per message, from its signing certificate.
    Fetched,
}

/// The compiled module.
pub struct WebhookVerification {
    provider: &'static Provider,
    secret: Vec<u8>,
    key: Key,
}

impl std::fmt::Debug for WebhookVerification {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookVerification")
            .field("provider", &self.provider.id)
            .finish()
    }
}

/// Why a request was refused (for logs; the client gets one message).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    MissingSignature,
    MissingTimestamp,
    Stale,
    BadSignature,
    /// The signing certificate could not be fetched (sns).
    KeyUnavailable,
}

impl Failure {
    /// For the edge's log.
    pub fn reason(self) -> &'static str {
        match self {
            Failure::MissingSignature => "webhook signature missing",
            Failure::MissingTimestamp => "webhook timestamp missing",
            Failure::Stale => "webhook timestamp outside the replay window",
            Failure::BadSignature => "webhook signature mismatch",
            Failure::KeyUnavailable => "webhook signing certificate unavailable",
        }
    }
}

/// What a check of a request found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Verified (or, for the head, nothing refused yet: wait for the body).
    Pass,
    /// Verified, and the provider expects the edge to answer this
    /// (an endpoint-verification challenge).
    Answer(EdgeResponse),
    Refuse(Failure),
    /// The signing certificate must be fetched before the body can be
    /// checked (sns).
    Fetch(Fetch),
}

/// Wire config: a provider id and its signing secret (none for sns).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WebhookVerificationConfig {
    pub provider: String,
    pub secret: String,
}

impl WebhookVerificationConfig {
    /// `path` prefixes error paths (`webhook_verification`).
    pub fn compile(&self, path: &str) -> Result<WebhookVerification, ConfigError> {
        WebhookVerification::compile(path, &self.provider, &self.secret)
    }
}

impl WebhookVerification {
    /// `field` prefixes error paths (`webhook_verification`).
    pub fn compile(field: &str, provider_id: &str, secret: &str) -> Result<Self, ConfigError> {
        let provider = provider(provider_id).ok_or_else(|| {
            let known: Vec<&str> = provider_ids().collect();
            ConfigError::new(
                format!("{field}.provider"),
                format!(
                    "{provider_id:?} is not a known provider ({})",
                    known.join(", ")
                ),
            )
        })?;
        let bad_secret = |why: &str| ConfigError::new(format!("{field}.secret"), why.to_string());
        if provider.key == KeyForm::None {
            return Ok(WebhookVerification {
                provider,
                secret: Vec::new(),
                key: Key::Fetched,
            });
        }
        if secret.is_empty() {
            return Err(bad_secret("this provider needs a secret"));
        }
        let b64 = |s: &str| {
            base64::engine::general_purpose::STANDARD
                .decode(s.trim())
                .map_err(|_| bad_secret("must be base64"))
        };
        let alg = match provider.alg {
            Alg::HmacSha1 => Some(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY),
            Alg::HmacSha256 => Some(hmac::HMAC_SHA256),
            Alg::HmacSha512 => Some(hmac::HMAC_SHA512),
            _ => None,
        };
        let key_bytes = match provider.key {
            KeyForm::Raw => secret.as_bytes().to_vec(),
            KeyForm::Base64 => b64(secret)?,
            KeyForm::SvixSecret => b64(secret.trim().trim_start_matches("whsec_"))?,
            KeyForm::EcdsaSpkiBase64 => {
                let der = b64(secret)?;
                // A P-256 SubjectPublicKeyInfo ends with the 65-byte point.
                if der.len() != 91 || der[26] != 0x04 {
                    return Err(bad_secret(
                        "must be the base64 P-256 public key the provider shows",
                    ));
                }
                der[26..].to_vec()
            }
            KeyForm::Ed25519Hex => {
                let k = hex::decode(secret.trim())
                    .map_err(|_| bad_secret("must be the hex public key"))?;
                if k.len() != 32 {
                    return Err(bad_secret("must be a 32-byte hex public key"));
                }
                k
            }
            KeyForm::None => Vec::new(),
        };
        let key = match (provider.alg, alg) {
            (_, Some(a)) => Key::Hmac(hmac::Key::new(a, &key_bytes)),
            (Alg::Equal, None) => Key::Secret(key_bytes),
            (Alg::EcdsaP256, None) => Key::Ecdsa(key_bytes),
            (_, None) => Key::Ed25519(key_bytes),
        };
        Ok(WebhookVerification {
            provider,
            secret: secret.as_bytes().to_vec(),
            key,
        })
    }

    pub fn provider(&self) -> &'static Provider {
        self.provider
    }

    fn window(&self) -> u64 {
        if self.provider.window == 0 {
            DEFAULT_WINDOW_SECS
        } else {
            self.provider.window
        }
    }

    /// HMAC of `msg` with the raw secret (challenge answers).
    fn hmac_sha256(&self, msg: &[u8]) -> hmac::Tag {
        hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, &self.secret), msg)
    }

    /// Checks a request and its whole body at `now` (Unix seconds).
    pub fn verify(&self, req: &RequestInfo<'_>, body: &[u8], now: u64) -> Result<(), Failure> {
        let p = self.provider;
        if matches!(self.key, Key::Fetched) {
            // The signing certificate comes with a document cache.
            return Err(Failure::KeyUnavailable);
        }
        let found = extract(p, req, body);
        if found.sigs.is_empty() {
            return Err(Failure::MissingSignature);
        }
        if let Some(src) = p.ts {
            let raw = found.ts.as_deref().ok_or(Failure::MissingTimestamp)?;
            let unit = match src {
                TsSource::Header(_, u) | TsSource::Fields(u) => u,
                TsSource::MailgunBody => TsUnit::Seconds,
            };
            let ts: u64 = raw.trim().parse().map_err(|_| Failure::MissingTimestamp)?;
            let secs = match unit {
                TsUnit::Seconds => ts,
                TsUnit::Millis => ts / 1000,
            };
            if now.abs_diff(secs) > self.window() {
                return Err(Failure::Stale);
            }
        }
        if p.id == "twilio" && !twilio_body_hash_ok(req, body) {
            return Err(Failure::BadSignature);
        }
        let mut msg = Vec::with_capacity(body.len() + 64);
        for part in p.message {
            match part {
                Part::Lit(s) => msg.extend_from_slice(s.as_bytes()),
                Part::Body => msg.extend_from_slice(body),
                Part::Ts => msg.extend_from_slice(found.ts.as_deref().unwrap_or("").as_bytes()),
                Part::Method => msg.extend_from_slice(req.method.as_str().as_bytes()),
                Part::Url => msg.extend_from_slice(req.full_url().as_bytes()),
                Part::Header(h) => {
                    msg.extend_from_slice(svix_header(req, h).unwrap_or("").as_bytes())
                }
                Part::TwilioParams => twilio_params(req, body, &mut msg),
                Part::MailgunToken => {
                    msg.extend_from_slice(found.token.as_deref().unwrap_or("").as_bytes())
                }
            }
        }
        let ok = found.sigs.iter().any(|sig| {
            let decoded = match p.enc {
                Enc::Hex => hex::decode(sig.trim()).ok(),
                Enc::Base64 => base64::engine::general_purpose::STANDARD
                    .decode(sig.trim())
                    .ok(),
                Enc::Raw => Some(sig.as_bytes().to_vec()),
            };
            let Some(decoded) = decoded else {
                return false;
            };
            match &self.key {
                Key::Hmac(k) => hmac::verify(k, &msg, &decoded).is_ok(),
                Key::Secret(s) => crate::basic_auth::ct_eq(s, &decoded),
                Key::Ecdsa(pk) => {
                    signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_ASN1, pk)
                        .verify(&msg, &decoded)
                        .is_ok()
                }
                Key::Ed25519(pk) => signature::UnparsedPublicKey::new(&signature::ED25519, pk)
                    .verify(&msg, &decoded)
                    .is_ok(),
                Key::Fetched => false,
            }
        });
        if ok {
            Ok(())
        } else {
            Err(Failure::BadSignature)
        }
    }

    /// A challenge the edge answers without a body (twitter CRC, worldline).
    fn head_challenge(&self, req: &RequestInfo<'_>) -> Option<EdgeResponse> {
        if *req.method != http::Method::GET {
            return None;
        }
        match self.provider.id {
            "twitter" => {
                let token = query_param(req, "crc_token")?;
                let tag = self.hmac_sha256(token.as_bytes());
                let b64 = base64::engine::general_purpose::STANDARD.encode(tag.as_ref());
                Some(EdgeResponse::json(
                    200,
                    &json!({ "response_token": format!("sha256={b64}") }),
                ))
            }
            "worldline" => {
                let v = req.header("x-gcs-webhooks-endpoint-verification")?;
                let mut r = EdgeResponse::empty(200);
                r.body = bytes::Bytes::from(v.to_string());
                r.headers.push((
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static("text/plain"),
                ));
                Some(r)
            }
            _ => None,
        }
    }

    /// A challenge answered after the body verified (zoom, xero).
    fn body_challenge(&self, body: &[u8]) -> Option<EdgeResponse> {
        match self.provider.id {
            "zoom" => {
                let v: Value = serde_json::from_slice(body).ok()?;
                if v.get("event")?.as_str()? != "endpoint.url_validation" {
                    return None;
                }
                let plain = v.get("payload")?.get("plainToken")?.as_str()?;
                let tag = self.hmac_sha256(plain.as_bytes());
                Some(EdgeResponse::json(
                    200,
                    &json!({ "plainToken": plain, "encryptedToken": hex::encode(tag.as_ref()) }),
                ))
            }
            "xero" => {
                // Intent to receive: a signed delivery with no events.
                let v: Value = serde_json::from_slice(body).ok()?;
                v.get("events")?
                    .as_array()?
                    .is_empty()
                    .then(|| EdgeResponse::empty(200))
            }
            _ => None,
        }
    }

    /// The refusal for `why`.
    pub fn refusal(&self, why: Failure) -> Refusal {
        Refusal::WebhookUnverified {
            provider: self.provider.id,
            why,
            // Xero's intent-to-receive check wants 401 for a bad signature.
            status: if self.provider.id == "xero" { 401 } else { 403 },
        }
    }

    /// Checks the request head: a challenge to answer, a signature header
    /// that is absent, or [`Verdict::Pass`] to wait for the body.
    pub fn check_head(&self, req: &RequestInfo<'_>) -> Verdict {
        if let Some(answer) = self.head_challenge(req) {
            return Verdict::Answer(answer);
        }
        let present = match self.provider.sig {
            SigSource::Header { name, .. } | SigSource::Fields { name, .. } => {
                req.headers.contains_key(name)
            }
            SigSource::Svix => svix_header(req, "svix-signature").is_some(),
            SigSource::MailgunBody => true,
        };
        if present {
            Verdict::Pass
        } else {
            Verdict::Refuse(Failure::MissingSignature)
        }
    }

    /// Checks the request with its whole body. SNS keys come from
    /// `documents`: a key not there yet is asked for once, then refused.
    pub fn check_body(
        &self,
        req: &RequestInfo<'_>,
        body: &[u8],
        documents: &DocumentCache,
    ) -> Verdict {
        let verdict = match self.key {
            Key::Fetched => match sns::verify(req, body, documents) {
                Ok(()) => Ok(()),
                Err(sns::Check::Refused(why)) => Err(why),
                Err(sns::Check::NeedKey(fetch)) if documents.needs_fetch(&fetch) => {
                    return Verdict::Fetch(fetch)
                }
                Err(sns::Check::NeedKey(_)) => Err(Failure::KeyUnavailable),
            },
            _ => self.verify(req, body, now_secs()),
        };
        match verdict {
            Err(why) => Verdict::Refuse(why),
            Ok(()) => match self.body_challenge(body) {
                Some(answer) => Verdict::Answer(answer),
                None => Verdict::Pass,
            },
        }
    }

    /// A verdict as a module phase returns it, with its decision recorded.
    fn flow(&self, verdict: Verdict, decision: &mut Option<Access>) -> Flow {
        match verdict {
            Verdict::Pass => Flow::Continue,
            Verdict::Answer(answer) => {
                *decision = Some(Access::Allow);
                Flow::Respond(answer)
            }
            Verdict::Refuse(why) => {
                *decision = Some(Access::Block);
                Flow::Refuse(self.refusal(why))
            }
            Verdict::Fetch(f) => Flow::Fetch(f),
        }
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl RouteModule for WebhookVerification {
    type State = ();

    fn stage(&self) -> Stage {
        Stage::WebhookVerification
    }

    fn on_request(&self, req: &RequestInfo<'_>, cx: Cx<'_, ()>) -> Flow {
        let verdict = self.check_head(req);
        self.flow(verdict, &mut cx.facts.decisions.webhook_verification)
    }

    fn wants_body(&self) -> bool {
        true
    }

    fn on_request_body(&self, req: &RequestInfo<'_>, body: &[u8], cx: Cx<'_, ()>) -> Flow {
        let verdict = self.check_body(req, body, cx.documents);
        let decision = &mut cx.facts.decisions.webhook_verification;
        if verdict == Verdict::Pass {
            *decision = Some(Access::Allow);
        }
        self.flow(verdict, decision)
    }
}

/// Signatures, timestamp and (mailgun) token found in a request.
#[derive(Default)]
struct Found {
    sigs: Vec<String>,
    ts: Option<String>,
    token: Option<String>,
}

fn extract(p: &Provider, req: &RequestInfo<'_>, body: &[u8]) -> Found {
    let mut f = Found::default();
    match p.sig {
        SigSource::Header { name, prefix, list } => {
            for value in req.headers.get_all(name) {
                let Ok(v) = value.to_str() else { continue };
                let items: Vec<&str> = match list {
                    Some(sep) => v.split(sep).collect(),
                    None => vec![v],
                };
                for item in items {
                    let item = item.trim();
                    let sig = if prefix.is_empty() {
                        Some(item)
                    } else if item.len() >= prefix.len()
                        && item[..prefix.len()].eq_ignore_ascii_case(prefix)
                    {
                        Some(&item[prefix.len()..])
                    } else {
                        None
                    };
                    if let Some(s) = sig.filter(|s| !s.is_empty()) {
                        f.sigs.push(s.to_string());
                    }
                }
            }
        }
        SigSource::Fields {
            name,
            ts_key,
            sig_key,
        } => {
            if let Some(v) = req.header(name) {
                for field in v.split(',') {
                    let Some((k, val)) = field.trim().split_once('=') else {
                        continue;
                    };
                    if k == ts_key {
                        f.ts = Some(val.to_string());
                    } else if k == sig_key {
                        f.sigs.push(val.to_string());
                    }
                }
            }
        }
        SigSource::Svix => {
            if let Some(v) = svix_header(req, "svix-signature") {
                for item in v.split(' ') {
                    if let Some(("v1", sig)) = item.split_once(',') {
                        f.sigs.push(sig.to_string());
                    }
                }
            }
        }
        SigSource::MailgunBody => {
            let (ts, token, sig) = mailgun_fields(req, body);
            f.ts = ts;
            f.token = token;
            f.sigs.extend(sig);
        }
    }
    if let Some(TsSource::Header(h, _)) = p.ts {
        f.ts = svix_header(req, h).map(str::to_string);
    }
    f
}

/// A header, also under the Standard Webhooks name svix clients send
/// (`webhook-id` for `svix-id`, ...).
fn svix_header<'a>(req: &'a RequestInfo<'_>, name: &str) -> Option<&'a str> {
    req.header(name).or_else(|| {
        name.strip_prefix("svix-")
            .and_then(|rest| req.header(&format!("webhook-{rest}")))
    })
}

fn query_param(req: &RequestInfo<'_>, name: &str) -> Option<String> {
    form_pairs(req.uri.query()?.as_bytes())
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
}

/// `application/x-www-form-urlencoded` pairs, decoded.
fn form_pairs(raw: &[u8]) -> Vec<(String, String)> {
    let decode = |s: &[u8]| {
        let plus: Vec<u8> = s
            .iter()
            .map(|&b| if b == b'+' { b' ' } else { b })
            .collect();
        percent_encoding::percent_decode(&plus)
            .decode_utf8_lossy()
            .into_owned()
    };
    raw.split(|&b| b == b'&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let mut it = p.splitn(2, |&b| b == b'=');
            let k = decode(it.next().unwrap_or_default());
            let v = decode(it.next().unwrap_or_default());
            (k, v)
        })
        .collect()
}

fn is_form(req: &RequestInfo<'_>) -> bool {
    req.header("content-type").is_some_and(|c| {
        c.to_ascii_lowercase()
            .starts_with("application/x-www-form-urlencoded")
    })
}

fn twilio_params(req: &RequestInfo<'_>, body: &[u8], out: &mut Vec<u8>) {
    if !is_form(req) {
        return;
    }
    let mut pairs = form_pairs(body);
    pairs.sort();
    for (k, v) in pairs {
        out.extend_from_slice(k.as_bytes());
        out.extend_from_slice(v.as_bytes());
    }
}

/// Twilio's JSON deliveries sign the URL, whose `bodySHA256` must then be
/// the body's hash.
fn twilio_body_hash_ok(req: &RequestInfo<'_>, body: &[u8]) -> bool {
    match query_param(req, "bodySHA256") {
        None => is_form(req) || body.is_empty(),
        Some(expected) => {
            let actual = hex::encode(digest::digest(&digest::SHA256, body));
            crate::basic_auth::ct_eq(actual.as_bytes(), expected.to_ascii_lowercase().as_bytes())
        }
    }
}

fn mailgun_fields(
    req: &RequestInfo<'_>,
    body: &[u8],
) -> (Option<String>, Option<String>, Option<String>) {
    if is_form(req) {
        let pairs = form_pairs(body);
        let get = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        return (get("timestamp"), get("token"), get("signature"));
    }
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return (None, None, None);
    };
    let sig = v.get("signature");
    let get = |k: &str| {
        sig.and_then(|s| s.get(k)).and_then(|x| match x {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        })
    };
    (get("timestamp"), get("token"), get("signature"))
}

#[cfg(test)]
mod tests;
