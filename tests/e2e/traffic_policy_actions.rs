//! Traffic Policy actions the edge runs with other modules' machinery,
//! end to end through an official-SDK agent endpoint: jwt-validation
//! against a JWKS fetched over HTTPS, verify-webhook (the body held back
//! until it verifies), compress-response (gzip, br, zstd),
//! circuit-breaker; and `on_tcp_connect` policies on TCP endpoints, from
//! an SDK Bind and from an API TCP edge.

use std::io::Read;
use std::net::SocketAddr;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::support::{events, eventually, id, Server, DEADLINE};
use axum::extract::Request;
use axum::response::IntoResponse;
use axum::routing::any;
use axum::Router;
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use ngrok::prelude::*;
use ring::signature::KeyPair;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::timeout;

const ISSUER: &str = "https://issuer.example/";
const JWKS_HOST: &str = "issuer.example";
const HOOK_SECRET: &str = "gh-secret";
/// Compressible: the same sentence many times.
const TEXT: &str = "Gangway compresses what the app sends, chunk by chunk. ";

const POLICY: &str = r#"
on_http_request:
  - expressions: ["req.url.path.startsWith('/jwt/')"]
    actions:
      - type: jwt-validation
        config:
          issuer: { allow_list: [ { value: "https://issuer.example/" } ] }
          audience: { allow_list: [ { value: "api://orders" } ] }
          http:
            tokens:
              - { type: jwt, method: header, name: Authorization, prefix: "Bearer " }
              - { type: jwt, method: query, name: access_token }
          jws:
            allowed_algorithms: [EdDSA]
            keys: { sources: { additional_jkus: [ "https://issuer.example/jwks.json" ] } }
      - type: add-headers
        config: { headers: { x-subject: "${actions.ngrok.jwt_validation.claims.sub}" } }
  - expressions: ["req.url.path.startsWith('/hook')"]
    actions:
      - type: verify-webhook
        config: { provider: github, secret: "gh-secret" }
  - expressions: ["req.url.path == '/dry-hook'"]
    actions:
      - type: verify-webhook
        config: { provider: github, secret: "gh-secret", enforce: false }
  - expressions: ["req.url.path == '/flaky'"]
    actions:
      - type: circuit-breaker
        config: { volume_threshold: 3, error_threshold: 0.5, window_duration: 60s, tripped_duration: 60s }
on_http_response:
  - expressions: ["req.url.path == '/text'"]
    actions:
      - type: compress-response
        config: { algorithms: [gzip, br, zstd] }
  - expressions: ["req.url.path.endsWith('hook')"]
    actions:
      - type: add-headers
        config: { headers: { x-verified: "${actions.ngrok.verify_webhook.verified}" } }
"#;

type Seen = Arc<Mutex<Vec<(String, Vec<u8>, Option<String>)>>>;

/// Records each request (path, body, x-subject); `/text` is long text,
/// `/flaky` fails.
async fn app(seen: Seen) -> SocketAddr {
    let router = Router::new().fallback(any(move |req: Request| {
        let seen = seen.clone();
        async move {
            let path = req.uri().path().to_string();
            let subject = req
                .headers()
                .get("x-subject")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let body = axum::body::to_bytes(req.into_body(), usize::MAX)
                .await
                .unwrap_or_default();
            seen.lock().unwrap_or_else(|p| p.into_inner()).push((
                path.clone(),
                body.to_vec(),
                subject,
            ));
            match path.as_str() {
                "/text" => TEXT.repeat(200).into_response(),
                "/flaky" => (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "down").into_response(),
                _ => "received".into_response(),
            }
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

/// An Ed25519 signing key and its JWK.
fn signing_key(kid: &str) -> (EncodingKey, Value) {
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng).expect("keygen");
    let pair = ring::signature::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).expect("key");
    let x = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(pair.public_key().as_ref());
    let jwk =
        json!({"kty": "OKP", "crv": "Ed25519", "x": x, "kid": kid, "alg": "EdDSA", "use": "sig"});
    (EncodingKey::from_ed_der(pkcs8.as_ref()), jwk)
}

fn token(key: &EncodingKey, kid: &str, claims: Value) -> String {
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(kid.to_string());
    jsonwebtoken::encode(&header, &claims, key).expect("sign")
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn github_signature(body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, HOOK_SECRET.as_bytes());
    let tag = ring::hmac::sign(&key, body);
    let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

fn bodies(seen: &Seen, path: &str) -> Vec<(Vec<u8>, Option<String>)> {
    seen.lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .filter(|(p, ..)| p == path)
        .map(|(_, b, s)| (b.clone(), s.clone()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_webhook_compression_and_breaker_actions_run_on_an_agent_endpoint() {
    let (key, jwk) = signing_key("k1");
    let (other_key, _) = signing_key("k1");
    let ca = crate::support::tls::TestCa::new("Test IdP CA");
    let (jwks_addr, fetches) = crate::support::tls::document_host(
        &ca,
        JWKS_HOST,
        "/jwks.json",
        "application/json",
        json!({ "keys": [jwk] }).to_string(),
    )
    .await;
    let server = Server::start_reaching(&ca, JWKS_HOST, jwks_addr).await;
    let seen: Seen = Arc::default();
    let app = app(seen.clone()).await;
    let session = server.sdk_session().await;
    let to = reqwest::Url::parse(&format!("http://{app}")).expect("url");
    let fwd = timeout(
        DEADLINE,
        session
            .http_endpoint()
            .traffic_policy(POLICY)
            .listen_and_forward(to),
    )
    .await
    .expect("bind timed out")
    .expect("bind");
    let base = fwd.url().to_string();
    let client = server.client();

    // jwt-validation: a table of tokens.
    let good = json!({"iss": ISSUER, "aud": "api://orders", "sub": "user-7", "exp": now() + 600});
    let cases: Vec<(&str, Option<String>, u16, &str)> = vec![
        ("no token", None, 401, "Bearer"),
        ("valid", Some(token(&key, "k1", good.clone())), 200, ""),
        (
            "expired",
            Some(token(
                &key,
                "k1",
                json!({"iss": ISSUER, "aud": "api://orders", "exp": now() - 600}),
            )),
            401,
            "Bearer error=\"invalid_token\"",
        ),
        (
            "wrong audience",
            Some(token(
                &key,
                "k1",
                json!({"iss": ISSUER, "aud": "api://other", "exp": now() + 600}),
            )),
            401,
            "Bearer error=\"invalid_token\"",
        ),
        (
            "wrong issuer",
            Some(token(
                &key,
                "k1",
                json!({"iss": "https://evil.example/", "aud": "api://orders", "exp": now() + 600}),
            )),
            401,
            "Bearer error=\"invalid_token\"",
        ),
        (
            "signed by another key",
            Some(token(&other_key, "k1", good.clone())),
            401,
            "Bearer error=\"invalid_token\"",
        ),
        (
            "garbage",
            Some("not.a.jwt".into()),
            401,
            "Bearer error=\"invalid_token\"",
        ),
    ];
    for (what, tok, status, challenge) in &cases {
        let mut req = client.get(format!("{base}/jwt/orders"));
        if let Some(t) = tok {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let r = req.send().await.expect(what);
        assert_eq!(r.status().as_u16(), *status, "{what}");
        let www = r
            .headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        assert_eq!(www, *challenge, "{what}");
        if *status == 401 {
            assert_eq!(r.headers()["ngrok-error-code"], "ERR_NGROK_3230", "{what}");
        }
    }
    // The token may come in a query parameter too; later actions see the
    // claims.
    let good_token = token(&key, "k1", good.clone());
    let r = client
        .get(format!("{base}/jwt/q?access_token={good_token}"))
        .send()
        .await
        .expect("query token");
    assert_eq!(r.status(), 200);
    assert_eq!(
        bodies(&seen, "/jwt/orders").len(),
        1,
        "only the valid token passed"
    );
    assert_eq!(bodies(&seen, "/jwt/q")[0].1.as_deref(), Some("user-7"));
    assert_eq!(
        fetches.load(SeqCst),
        1,
        "the JWKS is fetched once and cached"
    );

    // verify-webhook: the body reaches the app only when it verifies.
    let payload = br#"{"action":"opened","number":7}"#;
    let post = |path: &str, sig: String| {
        client
            .post(format!("{base}{path}"))
            .header("x-hub-signature-256", sig)
            .header("x-github-event", "pull_request")
            .body(payload.to_vec())
            .send()
    };
    let r = post("/hook", github_signature(payload))
        .await
        .expect("hook");
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-verified"], "true");
    let r = post("/hook", github_signature(b"something else"))
        .await
        .expect("hook");
    assert_eq!(r.status(), 403);
    assert_eq!(r.headers()["ngrok-error-code"], "ERR_NGROK_3204");
    assert_eq!(
        bodies(&seen, "/hook").len(),
        1,
        "the tampered body never arrived"
    );
    // enforce: false passes it on and says so to the response phase.
    let r = post("/dry-hook", github_signature(b"tampered"))
        .await
        .expect("hook");
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-verified"], "false");

    // compress-response: each coding decodes to the app's bytes.
    let expected = TEXT.repeat(200);
    for coding in ["gzip", "br", "zstd"] {
        let r = client
            .get(format!("{base}/text"))
            .header("accept-encoding", coding)
            .send()
            .await
            .expect("text");
        assert_eq!(r.headers()["content-encoding"], coding);
        assert!(r.headers().get("content-length").is_none());
        let raw = r.bytes().await.expect("body");
        assert!(
            raw.len() < expected.len() / 4,
            "{coding}: {} bytes",
            raw.len()
        );
        let mut plain = Vec::new();
        match coding {
            "gzip" => {
                flate2::read::GzDecoder::new(&raw[..])
                    .read_to_end(&mut plain)
                    .expect("gunzip");
            }
            "br" => {
                brotli::Decompressor::new(&raw[..], 4096)
                    .read_to_end(&mut plain)
                    .expect("unbrotli");
            }
            _ => plain = zstd::stream::decode_all(&raw[..]).expect("unzstd"),
        }
        assert_eq!(plain, expected.as_bytes(), "{coding}");
    }
    // A client that asks for none gets identity.
    let r = client
        .get(format!("{base}/text"))
        .header("accept-encoding", "identity")
        .send()
        .await
        .expect("text");
    assert!(r.headers().get("content-encoding").is_none());
    assert_eq!(r.text().await.expect("body"), expected);

    // circuit-breaker: three failures trip it; then the edge answers.
    for i in 0..3 {
        let r = client
            .get(format!("{base}/flaky"))
            .send()
            .await
            .expect("flaky");
        assert_eq!(r.status(), 500, "request {i} reaches the app");
    }
    let r = client
        .get(format!("{base}/flaky"))
        .send()
        .await
        .expect("flaky");
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["ngrok-error-code"], "ERR_NGROK_3202");
    assert_eq!(bodies(&seen, "/flaky").len(), 3);
    // Other paths are not behind the breaker.
    let r = client
        .get(format!("{base}/other"))
        .send()
        .await
        .expect("other");
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn action_configs_are_refused_with_their_path() {
    let server = Server::start().await;
    let session = server.sdk_session().await;
    let refused = [
        (
            "on_http_request:\n  - actions:\n      - type: jwt-validation\n        config: { issuer: { allow_list: [ { value: x } ] }, jws: { allowed_algorithms: [HS256], keys: { sources: { additional_jkus: [ \"https://a/jwks\" ] } } } }\n",
            "TrafficPolicy.on_http_request[0].actions[0].config.jws.allowed_algorithms[0]",
        ),
        (
            "on_http_request:\n  - actions:\n      - type: verify-webhook\n        config: { provider: nope, secret: s }\n",
            "TrafficPolicy.on_http_request[0].actions[0].config.provider",
        ),
        (
            "on_http_response:\n  - actions:\n      - type: compress-response\n        config: { algorithms: [lzma] }\n",
            "TrafficPolicy.on_http_response[0].actions[0].config.algorithms[0]",
        ),
        (
            "on_http_request:\n  - actions:\n      - type: circuit-breaker\n        config: { error_threshold: 2 }\n",
            "TrafficPolicy.on_http_request[0].actions[0].config.error_threshold",
        ),
        (
            "on_http_request:\n  - actions:\n      - type: verify-webhook\n        config: { provider: github, secret: s, enforce: false }\n  - expressions: [\"actions.ngrok.verify_webhook.verified\"]\n    actions:\n      - type: deny\n",
            "TrafficPolicy.on_http_request[1].expressions[0]",
        ),
    ];
    for (policy, path) in refused {
        let err = session
            .http_endpoint()
            .traffic_policy(policy)
            .listen()
            .await
            .err()
            .expect("a bad policy must refuse the bind");
        assert!(err.to_string().contains(path), "{path}: {err}");
    }
}

async fn connect_and_echo(addr: &str) -> Vec<u8> {
    let mut c = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let _ = c.write_all(b"ping").await;
    let _ = c.shutdown().await;
    let mut got = Vec::new();
    let _ = timeout(Duration::from_secs(10), c.read_to_end(&mut got)).await;
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_connect_policies_run_on_tcp_endpoints_from_binds_and_api_edges() {
    let events_dir = tempfile::tempdir().expect("tempdir");
    let events_file = events_dir.path().join("events.jsonl");
    let server = Server::start_with(&["--events", events_file.to_str().expect("path")]).await;
    let echo = crate::support::tls::local_tcp_server().await;
    let session = server.sdk_session().await;
    let to = reqwest::Url::parse(&format!("tcp://{echo}")).expect("url");
    let allow = r#"
on_tcp_connect:
  - expressions: ["inCidrRange(conn.client_ip, '127.0.0.0/8')"]
    actions:
      - type: log
        config: { metadata: { seen: local } }
  - expressions: ["!inCidrRange(conn.client_ip, '127.0.0.0/8')"]
    actions:
      - type: deny
"#;
    let deny = "on_tcp_connect:\n  - actions:\n      - type: restrict-ips\n        config: { deny: [\"127.0.0.0/8\"] }\n";
    let open = timeout(
        DEADLINE,
        session
            .tcp_endpoint()
            .traffic_policy(allow)
            .listen_and_forward(to.clone()),
    )
    .await
    .expect("bind timed out")
    .expect("bind");
    let closed = timeout(
        DEADLINE,
        session
            .tcp_endpoint()
            .traffic_policy(deny)
            .listen_and_forward(to.clone()),
    )
    .await
    .expect("bind timed out")
    .expect("bind");
    let addr = |u: &str| u.trim_start_matches("tcp://").to_string();
    assert_eq!(
        connect_and_echo(&addr(open.url())).await,
        b"local-plain:gnip"
    );
    assert!(connect_and_echo(&addr(closed.url())).await.is_empty());
    let ev = eventually("a tcp event with the policy's log", || {
        let found = events(&events_file).into_iter().find(|e| {
            e["event_type"] == "tcp_connection_closed.v0"
                && e["object"]["traffic_policy"]["logs"].is_array()
        });
        async move { found }
    })
    .await;
    assert_eq!(
        ev["object"]["traffic_policy"]["logs"][0]["metadata"]["seen"], "local",
        "{ev}"
    );

    // A TCP endpoint speaks no HTTP: HTTP phases refuse the Bind.
    let err = session
        .tcp_endpoint()
        .traffic_policy("on_http_request:\n  - actions:\n      - type: deny\n")
        .listen()
        .await
        .err()
        .expect("refused");
    assert!(
        err.to_string().contains("TrafficPolicy.on_http_request"),
        "{err}"
    );

    // The same on an API TCP edge: refused with the field path, then a
    // deny policy closes connections the edge's tunnels would serve.
    let api = server.api();
    let addr_res = api.create("/reserved_addrs", json!({})).await;
    let tcp_addr = addr_res["addr"].as_str().expect("addr").to_string();
    let group = api
        .create(
            "/backends/tunnel_group",
            json!({"labels": {"app": "tcp-tp"}}),
        )
        .await;
    let (status, body) = api
        .post(
            "/edges/tcp",
            json!({"hostports": [tcp_addr],
                   "backend": {"backend_id": id(&group)},
                   "traffic_policy": {"value": "on_http_response:\n  - actions:\n      - type: deny\n"}}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        body["details"]["field"], "traffic_policy.value.on_http_response",
        "{body}"
    );
    let edge = api
        .create(
            "/edges/tcp",
            json!({"hostports": [tcp_addr],
                   "backend": {"backend_id": id(&group)},
                   "traffic_policy": {"value": deny}}),
        )
        .await;
    assert_eq!(edge["traffic_policy"]["value"], deny);
    let mut labeled = session.labeled_tunnel();
    labeled.label("app", "tcp-tp");
    let _tunnel = timeout(DEADLINE, labeled.listen_and_forward(to))
        .await
        .expect("bind timed out")
        .expect("bind");
    let port = tcp_addr.rsplit(':').next().expect("port");
    let edge_addr = format!("127.0.0.1:{port}");
    // Give the edge time to serve the tunnel, then check it refuses.
    eventually("the TCP edge accepts connections", || {
        let a = edge_addr.clone();
        async move { tokio::net::TcpStream::connect(a).await.ok() }
    })
    .await;
    assert!(connect_and_echo(&edge_addr).await.is_empty());
    // Lifting the policy serves the same client.
    let (status, body) = api
        .patch(
            &format!("/edges/tcp/{}", id(&edge)),
            json!({"traffic_policy": {"value": allow}}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    eventually("the edge serves once the policy allows", || {
        let a = edge_addr.clone();
        async move {
            let got = connect_and_echo(&a).await;
            (got == b"local-plain:gnip").then_some(())
        }
    })
    .await;
}
