//! Webhook verification end to end: deliveries signed by the providers'
//! own SDKs (PyPI stripe, svix, slack_sdk, twilio; npm
//! @octokit/webhooks-methods, installed by `scripts/setup`) pass the edge
//! byte for byte; a flipped byte, a stale timestamp or a missing header is
//! refused with 403 ERR_NGROK_3204 and never reaches the app. The edge
//! answers providers' endpoint challenges itself.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::support::{eventually, LabeledEdge, Server, DEADLINE};
use axum::extract::Request;
use axum::routing::any;
use axum::Router;
use base64::Engine;
use ngrok::config::ForwarderBuilder;
use ngrok::prelude::*;
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;
use tokio::time::timeout;

/// Deliveries the app received: (path, body).
type Seen = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

async fn recording_app(seen: Seen) -> SocketAddr {
    let router = Router::new().fallback(any(move |req: Request| {
        let seen = seen.clone();
        async move {
            let path = req.uri().path().to_string();
            let body = axum::body::to_bytes(req.into_body(), usize::MAX)
                .await
                .unwrap_or_default();
            seen.lock()
                .unwrap_or_else(|p| p.into_inner())
                .push((path, body.to_vec()));
            "received"
        }
    }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind app");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    addr
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

/// Headers the provider's Python SDK signs `body` with.
async fn python_sign(
    provider: &str,
    secret: &str,
    body: &str,
    url: &str,
    ts: u64,
) -> Vec<(String, String)> {
    let python = root().join(".venv/webhooks/bin/python");
    assert!(
        python.exists(),
        "{} missing: run scripts/setup",
        python.display()
    );
    let mut child = tokio::process::Command::new(python)
        .arg(root().join("tests/python/webhook_sign.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn python");
    let input =
        json!({"provider": provider, "secret": secret, "body": body, "url": url, "timestamp": ts});
    let mut stdin = child.stdin.take().expect("stdin");
    stdin
        .write_all(input.to_string().as_bytes())
        .await
        .expect("write");
    drop(stdin);
    let out = child.wait_with_output().await.expect("python");
    assert!(
        out.status.success(),
        "{provider} signer: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("headers json");
    v.as_object()
        .expect("object")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
        .collect()
}

/// GitHub's `X-Hub-Signature-256`, from @octokit/webhooks-methods.
async fn octokit_sign(secret: &str, body: &str) -> String {
    let modules = root().join("tests/node/node_modules/@octokit/webhooks-methods");
    assert!(
        modules.exists(),
        "{} missing: run scripts/setup",
        modules.display()
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("body");
    std::fs::write(&file, body).expect("write body");
    let out = tokio::process::Command::new("node")
        .arg(root().join("tests/node/sign_github.mjs"))
        .arg(secret)
        .arg(&file)
        .output()
        .await
        .expect("node");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf8")
}

async fn post(
    client: &reqwest::Client,
    url: &str,
    headers: &[(String, String)],
    body: &str,
) -> (u16, String) {
    let mut req = client.post(url).body(body.to_string());
    for (k, v) in headers {
        req = req.header(k.as_str(), v.as_str());
    }
    let r = req.send().await.expect("post");
    let code = r
        .headers()
        .get("ngrok-error-code")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    (r.status().as_u16(), code)
}

fn flip_one_byte(body: &str) -> String {
    let mut b = body.as_bytes().to_vec();
    let i = b.len() / 2;
    b[i] = if b[i] == b'a' { b'b' } else { b'a' };
    String::from_utf8(b).expect("ascii")
}

fn received(seen: &Seen, path: &str) -> Vec<Vec<u8>> {
    seen.lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .filter(|(p, _)| p == path)
        .map(|(_, b)| b.clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_sdk_signatures_pass_and_tampering_is_refused() {
    let events_dir = tempfile::tempdir().expect("tempdir");
    let events_file = events_dir.path().join("events.jsonl");
    let server = Server::start_with(&["--events", events_file.to_str().expect("path")]).await;
    let seen: Seen = Arc::default();
    let app = recording_app(seen.clone()).await;
    let edge = LabeledEdge::create(&server, "hooks").await;
    let base = edge.base_url.clone();
    // provider, secret (svix secrets are base64 keys behind `whsec_`).
    let providers = [
        ("github", "gh-secret-1"),
        ("stripe", "whsec_stripe_test_secret"),
        ("slack", "8f742231b10e8888abcd99yyyzzz85a5"),
        ("svix", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
        ("twilio", "twilio-auth-token"),
    ];
    for (provider, secret) in providers {
        let verify = json!({"webhook_verification": {"provider": provider, "secret": secret}});
        let route = edge.route(&server, &format!("/{provider}"), verify).await;
        assert_eq!(
            route["webhook_verification"]["provider"], provider,
            "{route}"
        );
    }
    let session = server.sdk_session().await;
    let _tunnel = edge.serve(&session, app).await;
    let client = server.client();
    // Routes are live once an unsigned delivery is refused by the module
    // rather than answered 502 (no tunnel yet).
    for (provider, _) in providers {
        let url = format!("{base}/{provider}");
        eventually(&format!("{provider} route live"), || async {
            (post(&client, &url, &[], "{}").await == (403, "ERR_NGROK_3204".into())).then_some(())
        })
        .await;
    }

    for (provider, secret) in providers {
        let url = format!("{base}/{provider}");
        let body = if provider == "twilio" {
            "CallSid=CA1234567890ABCDE&Caller=%2B12349013030&Digits=1234&From=%2B12349013030&To=%2B18005551212".to_string()
        } else {
            json!({"event": "gangway.test", "provider": provider, "data": {"amount": 4200, "note": "héllo"}}).to_string()
        };
        let headers = if provider == "github" {
            vec![(
                "X-Hub-Signature-256".to_string(),
                octokit_sign(secret, &body).await,
            )]
        } else {
            python_sign(provider, secret, &body, &url, now()).await
        };
        let before = received(&seen, &format!("/{provider}")).len();
        assert_eq!(
            post(&client, &url, &headers, &body).await,
            (200, String::new()),
            "{provider}: SDK-signed delivery"
        );
        let got = received(&seen, &format!("/{provider}"));
        assert_eq!(got.len(), before + 1, "{provider}");
        assert_eq!(
            got.last().map(|b| b.as_slice()),
            Some(body.as_bytes()),
            "{provider}: byte for byte"
        );

        assert_eq!(
            post(&client, &url, &headers, &flip_one_byte(&body)).await,
            (403, "ERR_NGROK_3204".into()),
            "{provider}: flipped byte"
        );
        let without: Vec<_> = headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case("content-type"))
            .cloned()
            .collect();
        assert_eq!(
            post(&client, &url, &without, &body).await,
            (403, "ERR_NGROK_3204".into()),
            "{provider}: missing signature header"
        );
        if matches!(provider, "stripe" | "slack" | "svix") {
            let stale = python_sign(provider, secret, &body, &url, now() - 3600).await;
            assert_eq!(
                post(&client, &url, &stale, &body).await,
                (403, "ERR_NGROK_3204".into()),
                "{provider}: timestamp an hour old"
            );
        }
        assert_eq!(
            received(&seen, &format!("/{provider}")).len(),
            before + 1,
            "{provider}: refused deliveries never reach the app"
        );
    }

    let events: Vec<Value> = std::fs::read_to_string(&events_file)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let decisions: Vec<&Value> = events
        .iter()
        .map(|e| &e["object"]["webhook_verification"]["decision"])
        .collect();
    assert!(decisions.iter().any(|d| *d == "allow"), "{decisions:?}");
    assert!(decisions.iter().any(|d| *d == "block"), "{decisions:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_option_verifies_large_bodies_and_the_edge_answers_challenges() {
    let server = Server::start().await;
    let seen: Seen = Arc::default();
    let app = recording_app(seen.clone()).await;
    let session = server.sdk_session().await;
    let to = reqwest::Url::parse(&format!("http://{app}")).expect("url");
    let github = timeout(
        DEADLINE,
        session
            .http_endpoint()
            .webhook_verification("github", "agent-secret")
            .listen_and_forward(to.clone()),
    )
    .await
    .expect("bind timed out")
    .expect("bind");
    let client = server.client();

    // A body far past Pingora's 64 KiB retry buffer, held at the edge
    // until verified, then forwarded whole.
    let big = json!({"commits": (0..4000).map(|i| format!("commit number {i} with a message")).collect::<Vec<_>>()}).to_string();
    assert!(big.len() > 100_000);
    let sig = octokit_sign("agent-secret", &big).await;
    let url = format!("{}/push", github.url());
    let headers = vec![("X-Hub-Signature-256".to_string(), sig)];
    assert_eq!(
        post(&client, &url, &headers, &big).await,
        (200, String::new())
    );
    assert_eq!(received(&seen, "/push"), vec![big.as_bytes().to_vec()]);
    assert_eq!(
        post(&client, &url, &headers, &flip_one_byte(&big)).await,
        (403, "ERR_NGROK_3204".into())
    );
    assert_eq!(
        received(&seen, "/push").len(),
        1,
        "the tampered one never arrived"
    );

    // Twitter's CRC check: the edge answers with the HMAC of the token.
    let twitter = timeout(
        DEADLINE,
        session
            .http_endpoint()
            .webhook_verification("twitter", "consumer-secret")
            .listen_and_forward(to.clone()),
    )
    .await
    .expect("bind timed out")
    .expect("bind");
    let r = client
        .get(format!("{}/webhook?crc_token=challenge123", twitter.url()))
        .send()
        .await
        .expect("crc");
    assert_eq!(r.status(), 200);
    let v: Value = serde_json::from_slice(&r.bytes().await.expect("body")).expect("json");
    let tag = ring::hmac::sign(
        &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"consumer-secret"),
        b"challenge123",
    );
    let want = format!(
        "sha256={}",
        base64::engine::general_purpose::STANDARD.encode(tag.as_ref())
    );
    assert_eq!(v["response_token"], want);
    assert!(
        received(&seen, "/webhook").is_empty(),
        "answered at the edge"
    );

    // Zoom's URL validation: verified, then answered by the edge.
    let zoom = timeout(
        DEADLINE,
        session
            .http_endpoint()
            .webhook_verification("zoom", "zoom-secret")
            .listen_and_forward(to),
    )
    .await
    .expect("bind timed out")
    .expect("bind");
    let body = json!({"event": "endpoint.url_validation", "payload": {"plainToken": "qgg8vlvZRS6UYooatFL8Aw"}}).to_string();
    let ts = now().to_string();
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"zoom-secret");
    let hexed = |t: ring::hmac::Tag| {
        t.as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    let sig = format!(
        "v0={}",
        hexed(ring::hmac::sign(&key, format!("v0:{ts}:{body}").as_bytes()))
    );
    let r = client
        .post(format!("{}/zoom", zoom.url()))
        .header("x-zm-signature", sig)
        .header("x-zm-request-timestamp", ts)
        .body(body)
        .send()
        .await
        .expect("zoom");
    assert_eq!(r.status(), 200);
    let v: Value = serde_json::from_slice(&r.bytes().await.expect("body")).expect("json");
    assert_eq!(v["plainToken"], "qgg8vlvZRS6UYooatFL8Aw");
    assert_eq!(
        v["encryptedToken"],
        hexed(ring::hmac::sign(&key, b"qgg8vlvZRS6UYooatFL8Aw"))
    );
    assert!(received(&seen, "/zoom").is_empty(), "answered at the edge");
}

/// An RSA signing certificate like the ones AWS publishes for SNS.
fn sns_signing_identity() -> (boring::pkey::PKey<boring::pkey::Private>, String) {
    use boring::asn1::Asn1Time;
    use boring::hash::MessageDigest;
    use boring::x509::{X509NameBuilder, X509};
    let key =
        boring::pkey::PKey::from_rsa(boring::rsa::Rsa::generate(2048).expect("rsa")).expect("pkey");
    let mut name = X509NameBuilder::new().expect("name");
    name.append_entry_by_text("CN", "sns.amazonaws.com")
        .expect("cn");
    let name = name.build();
    let mut b = X509::builder().expect("builder");
    b.set_version(2).expect("version");
    b.set_subject_name(&name).expect("subject");
    b.set_issuer_name(&name).expect("issuer");
    b.set_pubkey(&key).expect("pubkey");
    b.set_not_before(&Asn1Time::days_from_now(0).expect("t0"))
        .expect("nb");
    b.set_not_after(&Asn1Time::days_from_now(30).expect("t1"))
        .expect("na");
    b.sign(&key, MessageDigest::sha256()).expect("sign");
    let pem = String::from_utf8(b.build().to_pem().expect("pem")).expect("utf8");
    (key, pem)
}

/// Signs an SNS message the way AWS documents it: `Key\nValue\n` over the
/// type's fields in order, RSA with SHA1 (version 1) or SHA256 (2).
fn sns_sign(key: &boring::pkey::PKey<boring::pkey::Private>, msg: &mut Value, version: &str) {
    let fields: &[&str] = if msg["Type"] == "Notification" {
        &[
            "Message",
            "MessageId",
            "Subject",
            "Timestamp",
            "TopicArn",
            "Type",
        ]
    } else {
        &[
            "Message",
            "MessageId",
            "SubscribeURL",
            "Timestamp",
            "Token",
            "TopicArn",
            "Type",
        ]
    };
    let mut canonical = String::new();
    for f in fields {
        if let Some(v) = msg[*f].as_str() {
            canonical.push_str(&format!("{f}\n{v}\n"));
        }
    }
    let digest = match version {
        "1" => boring::hash::MessageDigest::sha1(),
        _ => boring::hash::MessageDigest::sha256(),
    };
    let mut signer = boring::sign::Signer::new(digest, key).expect("signer");
    signer.update(canonical.as_bytes()).expect("update");
    let sig = signer.sign_to_vec().expect("sign");
    msg["SignatureVersion"] = json!(version);
    msg["Signature"] = json!(base64::engine::general_purpose::STANDARD.encode(sig));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sns_signatures_verify_with_the_certificate_fetched_from_aws() {
    use std::sync::atomic::Ordering::SeqCst;
    let ca = crate::support::tls::TestCa::new("Test AWS CA");
    let (key, pem) = sns_signing_identity();
    // `sns.us-east-1.amazonaws.com` as the edge will see it.
    let (sns_addr, fetches) = crate::support::tls::document_host(
        &ca,
        "sns.us-east-1.amazonaws.com",
        "/SimpleNotificationService-test.pem",
        "application/x-pem-file",
        pem,
    )
    .await;
    let server = Server::start_reaching(&ca, "sns.us-east-1.amazonaws.com", sns_addr).await;
    let seen: Seen = Arc::default();
    let app = recording_app(seen.clone()).await;
    let session = server.sdk_session().await;
    let to = reqwest::Url::parse(&format!("http://{app}")).expect("url");
    let fwd = timeout(
        DEADLINE,
        session
            .http_endpoint()
            .webhook_verification("sns", "")
            .listen_and_forward(to),
    )
    .await
    .expect("bind timed out")
    .expect("bind");
    let client = server.client();
    let url = format!("{}/sns", fwd.url());
    let cert_url = "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-test.pem";
    let notification = |id: &str| {
        json!({
            "Type": "Notification",
            "MessageId": id,
            "TopicArn": "arn:aws:sns:us-east-1:123456789012:orders",
            "Subject": "order placed",
            "Message": "{\"order\": 42}",
            "Timestamp": "2026-11-22T10:00:00.000Z",
            "SigningCertURL": cert_url,
            "UnsubscribeURL": "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe",
        })
    };
    let typed = |t: &str| vec![("x-amz-sns-message-type".to_string(), t.to_string())];

    // Version 1 (SHA1): the edge fetches the certificate once, verifies,
    // and the app gets the delivery.
    let mut m = notification("m-1");
    sns_sign(&key, &mut m, "1");
    let body = m.to_string();
    assert_eq!(
        post(&client, &url, &typed("Notification"), &body).await,
        (200, String::new())
    );
    assert_eq!(received(&seen, "/sns"), vec![body.as_bytes().to_vec()]);
    // Version 2 (SHA256) confirmation, with the cached key.
    let mut c = json!({
        "Type": "SubscriptionConfirmation",
        "MessageId": "m-2",
        "Token": "2336412f37",
        "TopicArn": "arn:aws:sns:us-east-1:123456789012:orders",
        "Message": "You have chosen to subscribe to the topic.",
        "SubscribeURL": "https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription&Token=2336412f37",
        "Timestamp": "2026-11-22T10:00:01.000Z",
        "SigningCertURL": cert_url,
    });
    sns_sign(&key, &mut c, "2");
    assert_eq!(
        post(
            &client,
            &url,
            &typed("SubscriptionConfirmation"),
            &c.to_string()
        )
        .await,
        (200, String::new())
    );
    assert_eq!(fetches.load(SeqCst), 1, "the certificate is cached");

    // Tampering, a missing header, a header that contradicts the signed
    // Type, and a certificate URL off AWS's hosts are refused.
    let mut m = notification("m-3");
    sns_sign(&key, &mut m, "2");
    let tampered = m.to_string().replace("order placed", "order voided");
    let refused = (403, "ERR_NGROK_3204".to_string());
    assert_eq!(
        post(&client, &url, &typed("Notification"), &tampered).await,
        refused
    );
    assert_eq!(post(&client, &url, &[], &m.to_string()).await, refused);
    assert_eq!(
        post(
            &client,
            &url,
            &typed("SubscriptionConfirmation"),
            &m.to_string()
        )
        .await,
        refused
    );
    let mut evil = notification("m-4");
    evil["SigningCertURL"] = json!("https://sns.us-east-1.amazonaws.com.evil.example/x.pem");
    sns_sign(&key, &mut evil, "2");
    assert_eq!(
        post(&client, &url, &typed("Notification"), &evil.to_string()).await,
        refused
    );
    // A certificate AWS's host does not have: refused, nothing cached.
    let mut missing = notification("m-5");
    missing["SigningCertURL"] =
        json!("https://sns.us-east-1.amazonaws.com/SimpleNotificationService-gone.pem");
    sns_sign(&key, &mut missing, "2");
    assert_eq!(
        post(&client, &url, &typed("Notification"), &missing.to_string()).await,
        refused
    );
    assert_eq!(received(&seen, "/sns").len(), 2, "only verified deliveries");
    assert_eq!(fetches.load(SeqCst), 1);

    // The same module on an API route: SNS needs no secret.
    let edge = LabeledEdge::create(&server, "sns-hooks").await;
    let verify = json!({"webhook_verification": {"provider": "sns"}});
    let route = edge.route(&server, "/", verify).await;
    assert_eq!(route["webhook_verification"]["provider"], "sns", "{route}");
    let _labeled = edge.serve(&session, app).await;
    let route_url = format!("{}/orders", edge.base_url);
    eventually("sns route live", || async {
        let unsigned = post(&client, &route_url, &typed("Notification"), "{}").await;
        (unsigned == refused).then_some(())
    })
    .await;
    let mut m = notification("m-6");
    sns_sign(&key, &mut m, "1");
    assert_eq!(
        post(&client, &route_url, &typed("Notification"), &m.to_string()).await,
        (200, String::new())
    );
    assert_eq!(received(&seen, "/orders"), vec![m.to_string().into_bytes()]);

    // An edge that does not trust the host's certificate fetches nothing
    // and verifies nothing.
    let connect_to = format!("sns.us-east-1.amazonaws.com:443:{sns_addr}");
    let untrusting = Server::start_with(&["--connect-to", &connect_to]).await;
    let session = untrusting.sdk_session().await;
    let to = reqwest::Url::parse(&format!("http://{app}")).expect("url");
    let fwd = timeout(
        DEADLINE,
        session
            .http_endpoint()
            .webhook_verification("sns", "")
            .listen_and_forward(to),
    )
    .await
    .expect("bind timed out")
    .expect("bind");
    let mut m = notification("m-7");
    sns_sign(&key, &mut m, "2");
    assert_eq!(
        post(
            &untrusting.client(),
            &format!("{}/untrusted", fwd.url()),
            &typed("Notification"),
            &m.to_string()
        )
        .await,
        refused
    );
    assert!(received(&seen, "/untrusted").is_empty());
    assert_eq!(fetches.load(SeqCst), 1, "no certificate was served");
    let log = untrusting.log();
    assert!(
        log.contains("cannot fetch a webhook signing certificate"),
        "{log}"
    );
}
