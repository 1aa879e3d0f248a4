//! The REST API's answers to bad requests, over raw HTTP: ngrok's error
//! codes and shape, the field at fault, and nothing stored by a refused
//! write. (The official client's view is in `api_client.rs`.)

use crate::support::Server;
use serde_json::{json, Value};

async fn raw(
    server: &Server,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> (u16, Value) {
    let http = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    let mut req = http.request(
        method.parse().expect("method"),
        format!("{}{path}", server.info.api_url),
    );
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    if let Some(b) = body {
        req = req.body(b.to_string());
    }
    let resp = req.send().await.expect("send");
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// method, path, headers, body → status, error code.
type Case<'a> = (
    &'a str,
    &'a str,
    Vec<(&'a str, &'a str)>,
    Option<&'a str>,
    u16,
    &'a str,
);

fn code(v: &Value) -> &str {
    v["error_code"].as_str().unwrap_or("")
}

#[tokio::test]
async fn bad_requests_get_ngrok_error_codes() {
    let server = Server::start().await;
    let bearer = format!("Bearer {}", server.info.api_key);
    let auth = [("Authorization", bearer.as_str()), ("Ngrok-Version", "2")];
    let json_auth = [
        ("Authorization", bearer.as_str()),
        ("Ngrok-Version", "2"),
        ("Content-Type", "application/json"),
    ];

    let cases: Vec<Case> = vec![
        (
            "GET",
            "/credentials",
            vec![("Ngrok-Version", "2")],
            None,
            401,
            "ERR_NGROK_200",
        ),
        (
            "GET",
            "/credentials",
            vec![("Authorization", "Basic eDp5"), ("Ngrok-Version", "2")],
            None,
            401,
            "ERR_NGROK_201",
        ),
        (
            "GET",
            "/credentials",
            vec![("Authorization", "Bearer nope"), ("Ngrok-Version", "2")],
            None,
            401,
            "ERR_NGROK_203",
        ),
        (
            "GET",
            "/credentials",
            vec![("Authorization", bearer.as_str())],
            None,
            400,
            "ERR_NGROK_218",
        ),
        (
            "GET",
            "/credentials",
            vec![("Authorization", bearer.as_str()), ("Ngrok-Version", "1")],
            None,
            400,
            "ERR_NGROK_217",
        ),
        (
            "POST",
            "/ip_policies",
            auth.to_vec(),
            Some("{}"),
            400,
            "ERR_NGROK_216",
        ),
        (
            "POST",
            "/ip_policies",
            [auth.as_slice(), &[("Content-Type", "text/plain")]].concat(),
            Some("{}"),
            400,
            "ERR_NGROK_210",
        ),
        (
            "POST",
            "/ip_policies",
            json_auth.to_vec(),
            Some("{\"description\":"),
            400,
            "ERR_NGROK_213",
        ),
        (
            "POST",
            "/ip_policies",
            json_auth.to_vec(),
            Some("{\"colour\":\"red\"}"),
            400,
            "ERR_NGROK_214",
        ),
        (
            "POST",
            "/ip_policies",
            json_auth.to_vec(),
            Some("{\"description\":5}"),
            400,
            "ERR_NGROK_215",
        ),
        (
            "GET",
            "/ip_policies?limit=0",
            auth.to_vec(),
            None,
            400,
            "ERR_NGROK_233",
        ),
        (
            "GET",
            "/ip_policies?limit=ten",
            auth.to_vec(),
            None,
            400,
            "ERR_NGROK_230",
        ),
        (
            "GET",
            "/ip_policies/ipp_doesnotexist",
            auth.to_vec(),
            None,
            404,
            "ERR_NGROK_404",
        ),
        (
            "GET",
            "/no_such_resource",
            auth.to_vec(),
            None,
            404,
            "ERR_NGROK_404",
        ),
        (
            "PUT",
            "/ip_policies",
            json_auth.to_vec(),
            Some("{}"),
            405,
            "ERR_NGROK_405",
        ),
    ];
    for (method, path, headers, body, status, want) in cases {
        let (s, v) = raw(&server, method, path, &headers, body).await;
        assert_eq!((s, code(&v)), (status, want), "{method} {path}: {v}");
        assert_eq!(v["status_code"], status, "{v}");
        assert!(v["msg"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
        assert!(v["details"].is_object(), "{v}");
    }

    // The field at fault is named, nested paths included.
    let api = server.api();
    let edge = api.create("/edges/https", json!({})).await;
    let (s, v) = api
        .post(
            &format!("/edges/https/{}/routes", edge["id"].as_str().expect("id")),
            json!({"match_type": "path_prefix", "match": "/",
                   "circuit_breaker": {"num_buckets": "many"}}),
        )
        .await;
    assert_eq!((s, code(&v)), (400, "ERR_NGROK_215"), "{v}");
    assert_eq!(v["details"]["field"], "circuit_breaker.num_buckets", "{v}");

    // Refused writes store nothing.
    let (_, before) = api.get("/ip_policies").await;
    for body in [
        json!({"description": "x".repeat(256)}),
        json!({"metadata": "x".repeat(4097)}),
        json!({"description": "ok", "unknown": 1}),
    ] {
        let (s, _) = api.post("/ip_policies", body).await;
        assert_eq!(s, 400);
    }
    let (_, rule) = api
        .post(
            "/ip_policy_rules",
            json!({"ip_policy_id": "ipp_missing", "cidr": "10.0.0.0/8", "action": "allow"}),
        )
        .await;
    assert_eq!(code(&rule), "ERR_NGROK_380", "{rule}");
    let (_, after) = api.get("/ip_policies").await;
    assert_eq!(before, after);
    let (_, rules) = api.get("/ip_policy_rules").await;
    assert_eq!(rules["ip_policy_rules"], json!([]));
}

#[tokio::test]
async fn pages_are_newest_first_and_link_absolutely() {
    let server = Server::start().await;
    let api = server.api();
    let mut made = Vec::new();
    for i in 0..7 {
        let p = api
            .create("/ip_policies", json!({"description": format!("p{i}")}))
            .await;
        made.push(p["id"].as_str().expect("id").to_string());
    }
    let mut seen = Vec::new();
    let mut next = Some(format!("{}/ip_policies?limit=3", api.base));
    let mut pages = 0;
    while let Some(url) = next {
        let (s, page) = api.get(&url).await;
        assert_eq!(s, 200, "{page}");
        assert_eq!(page["uri"], format!("{}/ip_policies", api.base));
        for p in page["ip_policies"].as_array().expect("list") {
            seen.push(p["id"].as_str().expect("id").to_string());
        }
        next = page["next_page_uri"].as_str().map(str::to_string);
        if let Some(n) = &next {
            assert!(n.starts_with("http://"), "absolute: {n}");
        }
        pages += 1;
    }
    assert_eq!(pages, 3);
    let mut sorted = made.clone();
    sorted.sort();
    sorted.reverse();
    assert_eq!(seen, sorted, "every policy once, newest (largest id) first");
}

#[tokio::test]
async fn openapi_description_is_served_without_a_key_and_covers_every_path() {
    let server = Server::start().await;
    let (status, doc) = raw(&server, "GET", "/openapi.json", &[], None).await;
    assert_eq!(status, 200, "{doc}");
    assert_eq!(doc["openapi"], "3.0.3");
    let paths = doc["paths"].as_object().expect("paths");
    for p in [
        "/api_keys",
        "/credentials/{id}",
        "/certificate_authorities",
        "/tls_certificates/{id}",
        "/edges/https/{edge_id}/routes/{id}/traffic_policy",
        "/edges/tcp/{id}/backend",
        "/edges/tls/{id}/tls_termination",
        "/agent_ingresses",
        "/kubernetes_operators/{id}/bound_endpoints",
        "/tunnel_sessions/{id}/restart",
        "/tunnels",
        "/endpoints/{id}",
    ] {
        assert!(paths.contains_key(p), "{p} missing");
    }
    // Every documented collection answers (authenticated) as documented.
    let api = server.api();
    for (path, item) in paths {
        if path.contains('{') || item.get("get").is_none() {
            continue;
        }
        let (status, body) = api.get(path).await;
        assert_eq!(status, 200, "GET {path}: {body}");
    }
}
