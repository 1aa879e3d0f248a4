//! Traffic Policy end to end: one policy document, applied as an API
//! route's `traffic_policy` module, as an official-SDK agent's
//! `traffic_policy(...)` and as a cloud endpoint's policy (forwarding to
//! the agent's internal endpoint), answers a table of requests
//! identically; bad documents are refused with their path and nothing
//! changes.

use std::net::SocketAddr;
use std::path::Path;

use crate::support::{events, eventually, id, LabeledEdge, Server, DEADLINE};
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use axum::routing::any;
use axum::Router;
use ngrok::prelude::*;
use serde_json::{json, Value};
use tokio::time::timeout;

// The policy's parts, so the cloud endpoint's copy can add one rule.
macro_rules! request_rules {
    () => {
        r#"  - name: no-bots
    expressions: ["req.user_agent.contains('bot')"]
    actions:
      - type: deny
        config: { status_code: 403 }
  - name: moved
    expressions: ["req.url.path.startsWith('/old/')"]
    actions:
      - type: redirect
        config: { from: "/old/(.*)", to: "/new/$1", status_code: 301 }
  - name: teapot
    expressions: ["req.url.path == '/teapot'", "req.method == 'GET'"]
    actions:
      - type: custom-response
        config:
          status_code: 418
          body: "short and stout, ${conn.client_ip}"
          headers: { content-type: text/plain }
  - name: versioned
    expressions: ["req.url.path.startsWith('/v1/')"]
    actions:
      - type: url-rewrite
        config: { from: "/v1/(.*)", to: "/$1" }
  - name: close
    expressions: ["req.url.path == '/close'"]
    actions:
      - type: close-connection
  - name: no-loopback-when-asked
    expressions: ["hasReqHeader('x-block-me')"]
    actions:
      - type: restrict-ips
        config: { deny: ["127.0.0.0/8", "::1/128"] }
  - name: broken
    expressions: ["req.url.path == '/error'"]
    actions:
      - type: custom-response
        config: { body: "${req.headers['x-missing'][0]}" }
  - name: tag
    actions:
      - type: set-vars
        config: { vars: [ { tier: "gold" } ] }
      - type: add-headers
        config: { headers: { x-tier: "${vars.tier}", x-path: "${req.url.path}" } }
      - type: remove-headers
        config: { headers: [ x-secret ] }
      - type: log
        config: { metadata: { rule: tag, note: tagged } }
"#
    };
}
macro_rules! response_rules {
    () => {
        r#"  - expressions: ["res.status_code == 404"]
    actions:
      - type: custom-response
        config: { status_code: 404, body: "nothing at ${req.url.path} (${vars.tier})" }
  - actions:
      - type: add-headers
        config: { headers: { x-served-by: gangway } }
      - type: remove-headers
        config: { headers: [ x-app-secret ] }
"#
    };
}

/// Uses most actions and both HTTP phases; each row of [`TABLE`] hits one
/// rule.
const POLICY: &str = concat!(
    "on_http_request:\n",
    request_rules!(),
    "on_http_response:\n",
    response_rules!()
);

/// The same policy for a cloud endpoint: what falls through goes to the
/// agent's internal endpoint.
const CLOUD_POLICY: &str = concat!(
    "on_http_request:\n",
    request_rules!(),
    "  - name: to-agent\n    actions:\n      - type: forward-internal\n        config: { url: \"https://tp.internal\" }\n",
    "on_http_response:\n",
    response_rules!()
);

/// What one request looked like after the edge: status, a few headers,
/// the body (the app echoes request headers as JSON at `/headers`).
#[derive(Debug, PartialEq)]
enum Seen {
    Answer {
        status: u16,
        code: String,
        location: String,
        served_by: String,
        app_secret: bool,
        body: String,
    },
    Closed,
}

/// (path, extra headers)
const TABLE: &[(&str, &[(&str, &str)])] = &[
    ("/headers", &[("user-agent", "evilbot/1.0")]),
    ("/old/page?x=1", &[]),
    ("/teapot", &[]),
    ("/v1/headers", &[("x-secret", "leak")]),
    ("/headers", &[("x-secret", "leak")]),
    ("/resp", &[]),
    ("/nope", &[]),
    ("/close", &[]),
    ("/headers", &[("x-block-me", "1")]),
    ("/error", &[]),
];

async fn app() -> SocketAddr {
    async fn headers(h: HeaderMap) -> axum::Json<Value> {
        let mut out = serde_json::Map::new();
        for (k, v) in &h {
            out.insert(k.as_str().to_string(), json!(v.to_str().unwrap_or("")));
        }
        axum::Json(Value::Object(out))
    }
    let router = Router::new().route("/headers", any(headers)).route(
        "/resp",
        any(|| async { ([("x-app-secret", "s3cret")], "resp").into_response() }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind app");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    addr
}

/// Runs the table against `base`; the Host varies, so bodies that echo it
/// have it replaced by `HOST`.
async fn run_table(server: &Server, base: &str) -> Vec<Seen> {
    let client = server
        .client_builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let host = base.trim_start_matches("https://");
    let mut out = Vec::new();
    for (path, headers) in TABLE {
        let mut req = client.get(format!("{base}{path}"));
        if !headers.iter().any(|(k, _)| *k == "user-agent") {
            req = req.header("user-agent", "policy-test");
        }
        for (k, v) in *headers {
            req = req.header(*k, *v);
        }
        let seen = match req.send().await {
            Err(_) => Seen::Closed,
            Ok(r) => {
                let h = |n: &str| {
                    r.headers()
                        .get(n)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .replace(host, "HOST")
                };
                Seen::Answer {
                    status: r.status().as_u16(),
                    code: h("ngrok-error-code"),
                    location: h("location"),
                    served_by: h("x-served-by"),
                    app_secret: r.headers().contains_key("x-app-secret"),
                    body: {
                        let b = r.text().await.unwrap_or_default();
                        // The echoed request headers that say where the
                        // request came in differ by endpoint.
                        match serde_json::from_str::<Value>(&b) {
                            Ok(Value::Object(mut m)) => {
                                for k in ["host", "x-forwarded-host", "x-forwarded-for"] {
                                    m.remove(k);
                                }
                                Value::Object(m).to_string()
                            }
                            _ => b.replace(host, "HOST"),
                        }
                    },
                }
            }
        };
        out.push(seen);
    }
    out
}

/// What the table must produce, row by row.
fn check(seen: &[Seen]) {
    let answer = |i: usize| match &seen[i] {
        Seen::Answer {
            status,
            code,
            location,
            served_by,
            app_secret,
            body,
        } => (
            *status,
            code.as_str(),
            location.as_str(),
            served_by.as_str(),
            *app_secret,
            body.as_str(),
        ),
        Seen::Closed => panic!("row {i} ({}) was closed", TABLE[i].0),
    };
    // deny: the first matching terminating action ends the phase.
    assert_eq!(answer(0).0, 403);
    // redirect with captures, on the full URL.
    let (s, _, loc, ..) = answer(1);
    assert_eq!((s, loc), (301, "https://HOST/new/page?x=1"));
    // custom-response: both expressions true; interpolation.
    let (s, _, _, _, _, body) = answer(2);
    assert_eq!((s, body), (418, "short and stout, 127.0.0.1"));
    // url-rewrite, then later rules see the new path; headers edited
    // before upstream; response phase adds its header.
    let (s, _, _, by, _, body) = answer(3);
    assert_eq!((s, by), (200, "gangway"));
    let up: Value = serde_json::from_str(body).expect("echoed headers");
    assert_eq!(up["x-tier"], "gold", "{up}");
    assert_eq!(up["x-path"], "/headers", "{up}");
    assert!(up.get("x-secret").is_none(), "{up}");
    let up: Value = serde_json::from_str(answer(4).5).expect("echoed headers");
    assert_eq!(up["x-path"], "/headers", "{up}");
    // response phase: the app's header removed.
    let (s, _, _, by, secret, body) = answer(5);
    assert_eq!((s, by, secret, body), (200, "gangway", false, "resp"));
    // response phase replaced the app's 404; request vars visible.
    let (s, _, _, _, _, body) = answer(6);
    assert_eq!((s, body), (404, "nothing at /nope (gold)"));
    // close-connection: no answer at all.
    assert_eq!(seen[7], Seen::Closed);
    // restrict-ips on the connection's address.
    let (s, code, ..) = answer(8);
    assert_eq!((s, code), (403, "ERR_NGROK_3205"));
    // a runtime CEL error is a 500 with a code, not a panic.
    let (s, code, ..) = answer(9);
    assert_eq!((s, code), (500, "ERR_NGROK_9051"));
}

async fn event_with_logs(path: &Path) -> Value {
    eventually("an event with the policy's logs", || {
        let found = events(path)
            .into_iter()
            .find(|e| e["object"]["traffic_policy"]["logs"].is_array());
        async move { found }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_policy_behaves_the_same_on_a_route_an_agent_endpoint_and_a_cloud_endpoint() {
    let events_dir = tempfile::tempdir().expect("tempdir");
    let events_file = events_dir.path().join("events.jsonl");
    let server = Server::start_with(&["--events", events_file.to_str().expect("path")]).await;
    let app = app().await;
    let api = server.api();
    let port = server.https_addr().port();
    let to = reqwest::Url::parse(&format!("http://{app}")).expect("url");

    // 1. An API edge route with the policy as its traffic_policy module.
    let edge = LabeledEdge::create(&server, "routed").await;
    let route = edge
        .route(&server, "/", json!({"traffic_policy": {"value": POLICY}}))
        .await;
    assert_eq!(route["traffic_policy"]["value"], POLICY);
    let session = server.sdk_session().await;
    let _routed = edge.serve(&session, app).await;
    let routed = edge.base_url.clone();
    let client = server.client();
    eventually("the route serves", || {
        let u = format!("{routed}/resp");
        let c = client.clone();
        async move { c.get(u).send().await.ok().filter(|r| r.status() == 200) }
    })
    .await;
    let on_route = run_table(&server, &routed).await;
    check(&on_route);

    // 2. An agent endpoint bound with the same policy by the SDK.
    let fwd = timeout(
        DEADLINE,
        session
            .http_endpoint()
            .traffic_policy(POLICY)
            .listen_and_forward(to.clone()),
    )
    .await
    .expect("bind timed out")
    .expect("bind with a traffic policy");
    let on_agent = run_table(&server, fwd.url().trim_end_matches('/')).await;
    check(&on_agent);
    assert_eq!(on_route, on_agent, "same policy, same answers");

    // 3. A cloud endpoint (no agent of its own) with the same rules, which
    // forwards what falls through to the agent's internal endpoint.
    let cloud_url = format!("https://cloud.{}:{port}", server.info.base_domain);
    let cloud = api
        .create(
            "/endpoints",
            json!({"type": "cloud", "url": cloud_url, "traffic_policy": CLOUD_POLICY,
                   "description": "policy test"}),
        )
        .await;
    assert_eq!(cloud["type"], "cloud", "{cloud}");
    assert_eq!(cloud["url"], cloud_url.as_str());
    let (s, listed) = api.get("/endpoints").await;
    assert_eq!(s, 200);
    let listed = listed["endpoints"].as_array().expect("endpoints").clone();
    assert!(listed.iter().any(|e| e["id"] == cloud["id"]), "{listed:?}");
    assert!(
        listed.iter().any(|e| e["type"] == "ephemeral"),
        "{listed:?}"
    );
    // Until the internal endpoint is online, forward-internal says so.
    let r = eventually("the cloud endpoint serves", || {
        let c = client.clone();
        let u = format!("{cloud_url}/headers");
        async move { c.get(u).send().await.ok().filter(|r| r.status() == 502) }
    })
    .await;
    assert_eq!(r.headers()["ngrok-error-code"], "ERR_NGROK_3220");
    let _internal = timeout(
        DEADLINE,
        session
            .http_endpoint()
            .domain("tp.internal")
            .listen_and_forward(to.clone()),
    )
    .await
    .expect("bind timed out")
    .expect("bind an internal endpoint");
    // The internal endpoint is not reachable from outside.
    let port_url = format!("https://tp.internal:{port}/headers");
    // (No certificate names it; skip that check to see the edge's answer.)
    let lax = server
        .client_builder()
        .danger_accept_invalid_certs(true)
        .build()
        .expect("client");
    let r = lax.get(&port_url).send().await.expect("get");
    assert_eq!(r.status(), 404, "internal endpoints are not public");
    let on_cloud = run_table(&server, &cloud_url).await;
    check(&on_cloud);
    assert_eq!(on_route, on_cloud, "same policy, same answers");

    // Bad cloud endpoints are refused with the field; nothing is stored.
    for (body, field) in [
        (
            json!({"type": "cloud", "url": cloud_url, "traffic_policy": CLOUD_POLICY}),
            "",
        ),
        (
            json!({"type": "cloud", "url": "https://x.example.org", "traffic_policy": POLICY}),
            "url",
        ),
        (
            json!({"type": "cloud", "url": "http://y.localhost", "traffic_policy": POLICY}),
            "url",
        ),
        (
            json!({"type": "ephemeral", "url": "https://z.localhost", "traffic_policy": POLICY}),
            "type",
        ),
        (
            json!({"type": "cloud", "url": format!("https://w.{}", server.info.base_domain),
                   "traffic_policy": "on_http_request: [ { actions: [ { type: nope } ] } ]"}),
            "traffic_policy.on_http_request[0].actions[0].type",
        ),
    ] {
        let (s, v) = api.post("/endpoints", body.clone()).await;
        assert!(s == 400 || s == 409, "{body}: {s} {v}");
        if !field.is_empty() {
            assert_eq!(v["details"]["field"], field, "{v}");
        }
    }
    let (_, after) = api.get("/endpoints").await;
    let clouds = after["endpoints"]
        .as_array()
        .expect("endpoints")
        .iter()
        .filter(|e| e["type"] == "cloud")
        .count();
    assert_eq!(clouds, 1, "{after}");

    // Updating the policy takes effect; deleting frees the name.
    let ep = format!("/endpoints/{}", id(&cloud));
    let (s, v) = api
        .patch(
            &ep,
            json!({"traffic_policy": "on_http_request: [ { actions: [ { type: custom-response, config: { status_code: 202, body: updated } } ] } ]"}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    eventually("the new policy serves", || {
        let c = client.clone();
        let u = format!("{cloud_url}/");
        async move { c.get(u).send().await.ok().filter(|r| r.status() == 202) }
    })
    .await;
    assert_eq!(api.delete(&ep).await, 204);
    assert_eq!(api.get(&ep).await.0, 404);
    eventually("the name is gone", || {
        let c = client.clone();
        let u = format!("{cloud_url}/");
        async move { c.get(u).send().await.ok().filter(|r| r.status() == 404) }
    })
    .await;

    // The log action's entries are in the request's event.
    let ev = event_with_logs(&events_file).await;
    assert_eq!(
        ev["object"]["traffic_policy"]["logs"][0]["metadata"],
        json!({"rule": "tag", "note": "tagged"}),
        "{ev}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_policies_are_refused_with_their_path_and_nothing_changes() {
    let server = Server::start().await;
    let app = app().await;
    let api = server.api();
    let port = server.https_addr().port();
    let host = format!("bad.{}", server.info.base_domain);
    let edge = api
        .create(
            "/edges/https",
            json!({"hostports": [format!("{host}:{port}")]}),
        )
        .await;
    let good = r#"{"on_http_request":[{"actions":[{"type":"custom-response","config":{"status_code":201,"body":"kept"}}]}]}"#;
    let route = api
        .create(
            &format!("/edges/https/{}/routes", id(&edge)),
            json!({"match_type": "path_prefix", "match": "/",
                   "traffic_policy": {"value": good}}),
        )
        .await;
    let module = format!(
        "/edges/https/{}/routes/{}/traffic_policy",
        id(&edge),
        id(&route)
    );
    for (doc, path) in [
        (
            r#"{"on_http_request":[{"actions":[{"type":"teleport"}]}]}"#,
            "traffic_policy.value.on_http_request[0].actions[0].type",
        ),
        (
            r#"{"on_http_request":[{"expressions":["req.url.path =="],"actions":[{"type":"deny"}]}]}"#,
            "traffic_policy.value.on_http_request[0].expressions[0]",
        ),
        (
            "on_http_request:\n  - actions:\n      - type: deny\n        config: { status_code: \"nope\" }\n",
            "traffic_policy.value.on_http_request[0].actions[0].config.status_code",
        ),
        (
            r#"{"on_http_request":[{"expressions":["res.status_code == 200"],"actions":[{"type":"deny"}]}]}"#,
            "traffic_policy.value.on_http_request[0].expressions[0]",
        ),
    ] {
        let (s, v) = api.put(&module, json!({"value": doc})).await;
        assert_eq!(s, 400, "{doc}: {v}");
        assert!(v["msg"].as_str().unwrap_or("").contains(path), "{path} in {v}");
        assert_eq!(v["details"]["field"], path, "{v}");
    }
    let (_, stored) = api.get(&module).await;
    assert_eq!(stored["value"], good, "the stored policy is unchanged");
    let client = server.client();
    let r = eventually("the route still answers with the good policy", || {
        let c = client.clone();
        let u = format!("https://{host}:{port}/");
        async move { c.get(u).send().await.ok().filter(|r| r.status() == 201) }
    })
    .await;
    assert_eq!(r.text().await.expect("body"), "kept");

    // An agent Bind with a bad policy is refused with the path, and the
    // SDK sees the error.
    let session = server.sdk_session().await;
    let err = timeout(
        DEADLINE,
        session
            .http_endpoint()
            .traffic_policy(r#"{"on_http_request":[{"actions":[{"type":"deny","config":{"status_code":99}}]}]}"#)
            .listen_and_forward(reqwest::Url::parse(&format!("http://{app}")).expect("url")),
    )
    .await
    .expect("bind timed out")
    .err()
    .expect("a bad policy is refused");
    let text = format!("{err:?}");
    assert!(
        text.contains("TrafficPolicy.on_http_request[0].actions[0].config.status_code"),
        "{text}"
    );
    assert!(text.contains("ERR_NGROK_9034"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gangway_agent_runs_a_policy_file_and_refuses_a_bad_one() {
    let server = Server::start().await;
    let app = app().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("policy.yml");
    std::fs::write(&file, POLICY).expect("write policy");
    let agent = crate::support::Agent::http(
        &server,
        &app.to_string(),
        &["--traffic-policy-file", file.to_str().expect("path")],
    )
    .await;
    let on_cli = run_table(&server, &agent.url).await;
    check(&on_cli);

    std::fs::write(
        &file,
        "on_http_request:\n  - actions:\n      - type: teleport\n",
    )
    .expect("write policy");
    let err = crate::support::agent_fails(
        &server,
        &[
            "http",
            &app.to_string(),
            "--traffic-policy-file",
            file.to_str().expect("path"),
        ],
    )
    .await;
    assert!(
        err.contains("TrafficPolicy.on_http_request[0].actions[0].type"),
        "{err}"
    );
}
