use super::*;
use crate::chain::{ConnInfo, TestCx};
use http::{HeaderMap, HeaderValue, Method, Uri};

struct Req {
    conn: ConnInfo,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
}

impl Req {
    fn post(path: &str, headers: &[(&str, &str)]) -> Req {
        let mut h = HeaderMap::new();
        h.insert("host", HeaderValue::from_static("hooks.example"));
        for (k, v) in headers {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        Req {
            conn: ConnInfo::default(),
            method: Method::POST,
            uri: path.parse().unwrap(),
            headers: h,
        }
    }

    fn info(&self) -> RequestInfo<'_> {
        RequestInfo {
            conn: &self.conn,
            method: &self.method,
            uri: &self.uri,
            headers: &self.headers,
            scheme: "https",
            host: "hooks.example",
        }
    }
}

fn module(provider: &str, secret: &str) -> WebhookVerification {
    WebhookVerification::compile("webhook_verification", provider, secret).unwrap()
}

fn hmac256_hex(secret: &[u8], msg: &[u8]) -> String {
    hex::encode(hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, secret), msg).as_ref())
}

#[test]
fn github_documented_example() {
    // From GitHub's "Validating webhook deliveries" page.
    let m = module("github", "It's a Secret to Everybody");
    let sig = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
    let r = Req::post("/", &[("x-hub-signature-256", sig)]);
    assert_eq!(m.verify(&r.info(), b"Hello, World!", 0), Ok(()));
    assert_eq!(
        m.verify(&r.info(), b"Hello, World?", 0),
        Err(Failure::BadSignature)
    );
}

#[test]
fn stripe_window_and_any_v1() {
    let m = module("stripe", "whsec_test");
    let now = 1_700_000_000u64;
    let body = br#"{"id":"evt_1"}"#;
    let good = hmac256_hex(
        b"whsec_test",
        format!("{now}.{}", std::str::from_utf8(body).unwrap()).as_bytes(),
    );
    let header = format!("t={now},v1=00ff,v1={good},v0=abc");
    let r = Req::post("/", &[("stripe-signature", &header)]);
    assert_eq!(m.verify(&r.info(), body, now + 10), Ok(()));
    assert_eq!(m.verify(&r.info(), body, now + 301), Err(Failure::Stale));
    let no_ts = Req::post("/", &[("stripe-signature", &format!("v1={good}"))]);
    assert_eq!(
        m.verify(&no_ts.info(), body, now),
        Err(Failure::MissingTimestamp)
    );
}

#[test]
fn svix_base64_key_and_standard_webhook_names() {
    let key = b"0123456789abcdef0123456789abcdef";
    let secret = format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(key)
    );
    let m = module("svix", &secret);
    let now = 1_700_000_000u64;
    let body = b"{}";
    let tag = hmac::sign(
        &hmac::Key::new(hmac::HMAC_SHA256, key),
        format!("msg_1.{now}.{{}}").as_bytes(),
    );
    let sig = format!(
        "v1,bm90IGl0 v1,{}",
        base64::engine::general_purpose::STANDARD.encode(tag.as_ref())
    );
    let ts = now.to_string();
    let r = Req::post(
        "/",
        &[
            ("webhook-id", "msg_1"),
            ("webhook-timestamp", &ts),
            ("webhook-signature", &sig),
        ],
    );
    assert_eq!(m.verify(&r.info(), body, now), Ok(()));
    assert!(WebhookVerification::compile("w", "clerk", "whsec_!!!").is_err());
}

#[test]
fn gitlab_token_is_compared_whole() {
    let m = module("gitlab", "tok3n");
    let ok = Req::post("/", &[("x-gitlab-token", "tok3n")]);
    let bad = Req::post("/", &[("x-gitlab-token", "tok3")]);
    assert_eq!(m.verify(&ok.info(), b"x", 0), Ok(()));
    assert_eq!(m.verify(&bad.info(), b"x", 0), Err(Failure::BadSignature));
}

#[test]
fn twilio_signs_url_and_sorted_form_params() {
    let m = module("twilio", "12345");
    let body = b"To=%2B18005551212&CallSid=CA123&Digits=1234";
    let msg = "https://hooks.example/voice?foo=1CallSidCA123Digits1234To+18005551212";
    let tag = hmac::sign(
        &hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, b"12345"),
        msg.as_bytes(),
    );
    let sig = base64::engine::general_purpose::STANDARD.encode(tag.as_ref());
    let r = Req::post(
        "/voice?foo=1",
        &[
            ("x-twilio-signature", &sig),
            ("content-type", "application/x-www-form-urlencoded"),
        ],
    );
    assert_eq!(m.verify(&r.info(), body, 0), Ok(()));
    assert_eq!(
        m.verify(&r.info(), b"To=%2B18005551212&CallSid=CA124&Digits=1234", 0),
        Err(Failure::BadSignature)
    );
}

#[test]
fn discord_ed25519() {
    use ring::signature::KeyPair;
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = signature::Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
    let kp = signature::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
    let m = module("discord", &hex::encode(kp.public_key().as_ref()));
    let now = 1_700_000_000u64;
    let body = br#"{"type":1}"#;
    let sig = kp.sign(&[now.to_string().as_bytes(), body].concat());
    let ts = now.to_string();
    let r = Req::post(
        "/",
        &[
            ("x-signature-ed25519", &hex::encode(sig.as_ref())),
            ("x-signature-timestamp", &ts),
        ],
    );
    assert_eq!(m.verify(&r.info(), body, now), Ok(()));
    assert_eq!(
        m.verify(&r.info(), br#"{"type":2}"#, now),
        Err(Failure::BadSignature)
    );
}

#[test]
fn challenges_are_answered_at_the_edge() {
    let tw = module("twitter", "consumer-secret");
    let mut r = Req::post("/hook?crc_token=abc", &[]);
    r.method = Method::GET;
    let Verdict::Answer(resp) = tw.check_head(&r.info()) else {
        panic!("twitter CRC must be answered");
    };
    let tag = hmac::sign(
        &hmac::Key::new(hmac::HMAC_SHA256, b"consumer-secret"),
        b"abc",
    );
    let expected = format!(
        "sha256={}",
        base64::engine::general_purpose::STANDARD.encode(tag.as_ref())
    );
    let v: Value = serde_json::from_slice(&resp.body).unwrap();
    assert_eq!(v["response_token"], expected);

    let zoom = module("zoom", "zsecret");
    let body = br#"{"event":"endpoint.url_validation","payload":{"plainToken":"pt"}}"#;
    let ts = "1700000000";
    let sig = format!(
        "v0={}",
        hmac256_hex(
            b"zsecret",
            format!("v0:{ts}:{}", std::str::from_utf8(body).unwrap()).as_bytes()
        )
    );
    let r = Req::post(
        "/",
        &[("x-zm-signature", &sig), ("x-zm-request-timestamp", ts)],
    );
    assert_eq!(zoom.verify(&r.info(), body, 1_700_000_000), Ok(()));
    let answer = zoom.body_challenge(body).unwrap();
    let v: Value = serde_json::from_slice(&answer.body).unwrap();
    assert_eq!(v["encryptedToken"], hmac256_hex(b"zsecret", b"pt"));
}

#[test]
fn missing_header_is_refused_before_the_body() {
    let m = module("github", "s");
    let r = Req::post("/", &[]);
    let mut t = TestCx::default();
    assert_eq!(
        m.on_request(&r.info(), t.cx()),
        Flow::Refuse(Refusal::WebhookUnverified {
            provider: "github",
            why: Failure::MissingSignature,
            status: 403,
        })
    );
    assert_eq!(t.facts.decisions.webhook_verification, Some(Access::Block));
}

#[test]
fn config_errors_name_their_field() {
    let err = |p: &str, s: &str| {
        WebhookVerification::compile("webhook_verification", p, s)
            .unwrap_err()
            .field
    };
    assert_eq!(err("nope", "s"), "webhook_verification.provider");
    assert_eq!(err("github", ""), "webhook_verification.secret");
    assert_eq!(err("discord", "zz"), "webhook_verification.secret");
    assert_eq!(err("sendgrid", "aGVsbG8="), "webhook_verification.secret");
    let ids: Vec<_> = provider_ids().collect();
    let mut dedup = ids.clone();
    dedup.sort();
    dedup.dedup();
    assert_eq!(ids.len(), dedup.len(), "one row per provider");
}
