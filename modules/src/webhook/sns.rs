//! AWS SNS: no shared secret. Each message is RSA-signed with a key whose
//! certificate AWS publishes at the message's `SigningCertURL`. Only URLs
//! on `sns.<region>.amazonaws.com` are trusted; the edge fetches them over
//! verified HTTPS into its document cache ([`crate::documents`]) when a
//! check asks for one. SNS keeps a message's `Timestamp` across its retries,
//! which a delivery policy may spread over hours, so there is no replay
//! window: the signature covers the `MessageId` for the app to de-duplicate.

use base64::Engine;
use ring::signature;
use serde_json::Value;

use super::Failure;
use crate::chain::RequestInfo;
use crate::documents::{DocumentCache, Fetch};

/// The header SNS sends with the message's `Type`.
pub const TYPE_HEADER: &str = "x-amz-sns-message-type";

/// The signed fields, in AWS's canonical order, per message type.
const NOTIFICATION: &[&str] = &[
    "Message",
    "MessageId",
    "Subject",
    "Timestamp",
    "TopicArn",
    "Type",
];
const CONFIRMATION: &[&str] = &[
    "Message",
    "MessageId",
    "SubscribeURL",
    "Timestamp",
    "Token",
    "TopicArn",
    "Type",
];

/// Why a message cannot be verified yet, or at all.
#[derive(Debug, PartialEq, Eq)]
pub enum Check {
    Refused(Failure),
    /// The key behind this (vetted) certificate URL is not known yet.
    NeedKey(Fetch),
}

/// A `SigningCertURL` the edge may fetch: `https://sns.<region>.amazonaws.com`
/// (or `.com.cn`), default port, a `.pem` path, nothing else.
pub fn vetted_cert_url(raw: &str) -> Option<String> {
    let uri: http::Uri = raw.parse().ok()?;
    if uri.scheme_str() != Some("https") || uri.query().is_some() {
        return None;
    }
    let auth = uri.authority()?;
    if auth.as_str().contains('@') || auth.port().is_some_and(|p| p.as_u16() != 443) {
        return None;
    }
    let host = auth.host().to_ascii_lowercase();
    let region = host
        .strip_prefix("sns.")?
        .strip_suffix(".amazonaws.com")
        .or_else(|| host.strip_prefix("sns.")?.strip_suffix(".amazonaws.com.cn"))?;
    let region_ok = !region.is_empty()
        && region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !region_ok || !uri.path().ends_with(".pem") {
        return None;
    }
    Some(format!("https://{host}{}", uri.path()))
}

/// The string AWS signs: `Key\nValue\n` for each signed field present.
fn canonical(msg: &serde_json::Map<String, Value>, fields: &[&str]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    for &key in fields {
        match msg.get(key) {
            Some(Value::String(v)) => {
                out.extend_from_slice(key.as_bytes());
                out.push(b'\n');
                out.extend_from_slice(v.as_bytes());
                out.push(b'\n');
            }
            // Only a notification's Subject may be left out.
            None if key == "Subject" => {}
            _ => return None,
        }
    }
    Some(out)
}

/// Checks an SNS delivery with the signing keys in `documents`.
pub fn verify(req: &RequestInfo<'_>, body: &[u8], documents: &DocumentCache) -> Result<(), Check> {
    let refused = |f| Err(Check::Refused(f));
    let Some(kind) = req.header(TYPE_HEADER) else {
        return refused(Failure::MissingSignature);
    };
    let Ok(Value::Object(msg)) = serde_json::from_slice::<Value>(body) else {
        return refused(Failure::MissingSignature);
    };
    let field = |k: &str| msg.get(k).and_then(Value::as_str);
    // The header and the signed Type must agree.
    if field("Type") != Some(kind.trim()) {
        return refused(Failure::BadSignature);
    }
    let fields = match kind.trim() {
        "Notification" => NOTIFICATION,
        "SubscriptionConfirmation" | "UnsubscribeConfirmation" => CONFIRMATION,
        _ => return refused(Failure::BadSignature),
    };
    let alg: &dyn signature::VerificationAlgorithm = match field("SignatureVersion") {
        Some("1") => &signature::RSA_PKCS1_2048_8192_SHA1_FOR_LEGACY_USE_ONLY,
        Some("2") => &signature::RSA_PKCS1_2048_8192_SHA256,
        _ => return refused(Failure::MissingSignature),
    };
    let Some(sig) =
        field("Signature").and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
    else {
        return refused(Failure::MissingSignature);
    };
    let Some(url) = field("SigningCertURL").and_then(vetted_cert_url) else {
        return refused(Failure::BadSignature);
    };
    let Some(signed) = canonical(&msg, fields) else {
        return refused(Failure::BadSignature);
    };
    let Some(key) = documents.rsa_public_key(&url) else {
        return Err(Check::NeedKey(Fetch::signing_certificate(url)));
    };
    match signature::UnparsedPublicKey::new(alg, &*key).verify(&signed, &sig) {
        Ok(()) => Ok(()),
        Err(_) => refused(Failure::BadSignature),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_sns_hosts_serve_signing_certificates() {
        let ok = "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-abc.pem";
        assert_eq!(vetted_cert_url(ok).as_deref(), Some(ok));
        assert!(vetted_cert_url(
            "https://sns.cn-north-1.amazonaws.com.cn/SimpleNotificationService-x.pem"
        )
        .is_some());
        for bad in [
            "http://sns.us-east-1.amazonaws.com/a.pem",
            "https://sns.us-east-1.amazonaws.com.evil.example/a.pem",
            "https://evil.example/sns.us-east-1.amazonaws.com/a.pem",
            "https://sns.us-east-1.amazonaws.com:8443/a.pem",
            "https://user@sns.us-east-1.amazonaws.com/a.pem",
            "https://sns.us-east-1.amazonaws.com/a.pem?x=1",
            "https://sns..amazonaws.com/a.pem",
            "https://sns.us_east.amazonaws.com/a.pem",
            "https://sns.us-east-1.amazonaws.com/a.txt",
            "https://s3.amazonaws.com/a.pem",
        ] {
            assert_eq!(vetted_cert_url(bad), None, "{bad}");
        }
    }

    #[test]
    fn canonical_strings_follow_the_message_type() {
        let n: Value = serde_json::json!({
            "Type": "Notification", "MessageId": "m1", "TopicArn": "arn:t",
            "Message": "hello", "Timestamp": "2026-11-22T10:00:00.000Z",
        });
        let s = canonical(n.as_object().unwrap(), NOTIFICATION).unwrap();
        assert_eq!(
            String::from_utf8(s).unwrap(),
            "Message\nhello\nMessageId\nm1\nTimestamp\n2026-11-22T10:00:00.000Z\nTopicArn\narn:t\nType\nNotification\n"
        );
        // A confirmation without its Token cannot be checked.
        let c: Value = serde_json::json!({
            "Type": "SubscriptionConfirmation", "MessageId": "m2", "TopicArn": "arn:t",
            "Message": "confirm", "Timestamp": "t", "SubscribeURL": "https://x",
        });
        assert_eq!(canonical(c.as_object().unwrap(), CONFIRMATION), None);
    }
}
