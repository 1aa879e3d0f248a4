//! The control plane end to end: resources written through the REST API
//! reach the running edge without a restart. An HTTPS edge with path
//! routes serves official-SDK labeled tunnels; routes, modules and the
//! edge change live; credentials' ACLs are checked at bind; everything
//! survives a `kill -9` restart.

use std::net::SocketAddr;

use crate::support::tls::TestCa;
use crate::support::{eventually, id, Server, DEADLINE};
use axum::extract::Request;
use axum::routing::any;
use axum::Router;
use ngrok::config::ForwarderBuilder;
use ngrok::prelude::*;
use serde_json::{json, Value};
use tokio::time::timeout;

/// A local app that answers `<name>:<path>`, so a test can tell which
/// agent served a request.
async fn named_app(name: &'static str) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind app");
    let addr = listener.local_addr().expect("addr");
    let app = Router::new().fallback(any(move |req: Request| async move {
        format!("{name}:{}", req.uri().path())
    }));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr
}

/// Starts an SDK labeled tunnel forwarding to `app`.
async fn labeled(
    session: &ngrok::Session,
    labels: &[(&str, &str)],
    app: SocketAddr,
) -> ngrok::forwarder::Forwarder<ngrok::tunnel::LabeledTunnel> {
    let mut b = session.labeled_tunnel();
    for (k, v) in labels {
        b.label(*k, *v);
    }
    let to = reqwest::Url::parse(&format!("http://{app}")).expect("url");
    timeout(DEADLINE, b.listen_and_forward(to))
        .await
        .expect("labeled bind timed out")
        .expect("labeled bind")
}

/// (status, error code header, body) of a GET.
async fn fetch(server: &Server, url: &str) -> (u16, String, String) {
    let resp = server.client().get(url).send().await.expect("request");
    let status = resp.status().as_u16();
    let code = resp
        .headers()
        .get("ngrok-error-code")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    (status, code, resp.text().await.unwrap_or_default())
}

/// Waits until `url` answers `status` with `body` (or, for an edge
/// error, the error code): config reaches the edge asynchronously.
async fn until(server: &Server, url: &str, status: u16, expect: &str) {
    eventually(&format!("{url} → {status} {expect}"), || async {
        let (s, code, body) = fetch(server, url).await;
        (s == status && (body == expect || code == expect)).then_some(())
    })
    .await
}

#[tokio::test]
async fn https_edge_routes_labeled_agents_and_changes_live() {
    let server = Server::start().await;
    let api = server.api();
    let port = server.https_addr().port();
    let host = format!("shop.{}", server.info.base_domain);
    let base = format!("https://{host}:{port}");

    let web = api
        .create("/backends/tunnel_group", json!({"labels": {"app": "web"}}))
        .await;
    let backend = api
        .create("/backends/tunnel_group", json!({"labels": {"app": "api"}}))
        .await;
    let edge = api
        .create(
            "/edges/https",
            json!({"description": "shop", "hostports": [format!("{host}:{port}")]}),
        )
        .await;
    let edge_id = id(&edge);
    let root = api
        .create(
            &format!("/edges/https/{edge_id}/routes"),
            json!({"match_type": "path_prefix", "match": "/", "backend": {"backend_id": id(&web)}}),
        )
        .await;
    assert_eq!(root["backend"]["backend"]["id"], id(&web), "{root}");

    let session = server.sdk_session().await;
    let _web = labeled(
        &session,
        &[("app", "web"), ("dc", "local")],
        named_app("web").await,
    )
    .await;
    let _api = labeled(&session, &[("app", "api")], named_app("api").await).await;

    until(&server, &format!("{base}/x"), 200, "web:/x").await;
    until(&server, &format!("{base}/api/users"), 200, "web:/api/users").await;

    // A longer prefix wins, and an exact path beats any prefix.
    api.create(
        &format!("/edges/https/{edge_id}/routes"),
        json!({"match_type": "path_prefix", "match": "/api", "backend": {"backend_id": id(&backend)}}),
    )
    .await;
    until(&server, &format!("{base}/api/users"), 200, "api:/api/users").await;
    api.create(
        &format!("/edges/https/{edge_id}/routes"),
        json!({"match_type": "exact_path", "match": "/api/health", "backend": {"backend_id": id(&web)}}),
    )
    .await;
    until(
        &server,
        &format!("{base}/api/health"),
        200,
        "web:/api/health",
    )
    .await;
    let (s, _, body) = fetch(&server, &format!("{base}/x")).await;
    assert_eq!((s, body.as_str()), (200, "web:/x"));

    // The tunnel group lists the tunnels it selects.
    let (_, group) = api
        .get(&format!("/backends/tunnel_group/{}", id(&web)))
        .await;
    assert_eq!(
        group["tunnels"].as_array().map(Vec::len),
        Some(1),
        "{group}"
    );

    // Toggle an IP restriction on the root route: the test client
    // (127.0.0.1) is outside the only allow rule, then inside a new one.
    let policy = api
        .create("/ip_policies", json!({"description": "office"}))
        .await;
    api.create(
        "/ip_policy_rules",
        json!({"ip_policy_id": id(&policy), "cidr": "10.0.0.0/8", "action": "allow"}),
    )
    .await;
    let module = format!("/edges/https/{edge_id}/routes/{}/ip_restriction", id(&root));
    let (s, m) = api
        .put(&module, json!({"ip_policy_ids": [id(&policy)]}))
        .await;
    assert_eq!(s, 200, "{m}");
    assert_eq!(m["ip_policies"][0]["id"], id(&policy), "{m}");
    until(&server, &format!("{base}/x"), 403, "ERR_NGROK_3205").await;
    let (s, _, _) = fetch(&server, &format!("{base}/api/users")).await;
    assert_eq!(s, 200, "other routes are not restricted");
    let rule = api
        .create(
            "/ip_policy_rules",
            json!({"ip_policy_id": id(&policy), "cidr": "127.0.0.1", "action": "allow"}),
        )
        .await;
    assert_eq!(rule["cidr"], "127.0.0.1/32");
    until(&server, &format!("{base}/x"), 200, "web:/x").await;
    api.put(
        &module,
        json!({"enabled": true, "ip_policy_ids": [id(&policy)]}),
    )
    .await;
    api.patch(
        &format!("/ip_policy_rules/{}", id(&rule)),
        json!({"cidr": "192.0.2.0/24"}),
    )
    .await;
    until(&server, &format!("{base}/x"), 403, "ERR_NGROK_3205").await;
    assert_eq!(api.delete(&module).await, 204);
    until(&server, &format!("{base}/x"), 200, "web:/x").await;
    assert_eq!(api.get(&module).await.0, 404, "module gone");

    // A module this edge cannot apply yet fails closed, not open.
    let oauth = format!("/edges/https/{edge_id}/routes/{}/oauth", id(&root));
    let doc = json!({"enabled": true, "provider": {"google": {}}});
    assert_eq!(api.put(&oauth, doc).await.0, 200);
    until(&server, &format!("{base}/x"), 503, "ERR_NGROK_9047").await;
    let off = json!({"enabled": false, "provider": {"google": {}}});
    assert_eq!(api.put(&oauth, off).await.0, 200);
    until(&server, &format!("{base}/x"), 200, "web:/x").await;

    // The edge owns its name: an agent cannot bind it directly.
    let err = session
        .http_endpoint()
        .domain(host.clone())
        .listen()
        .await
        .err()
        .expect("bind of an edge's name must fail");
    assert_eq!(err.error_code(), Some("ERR_NGROK_334"), "{err}");

    // Deleting the edge (and with it its routes) takes the name down.
    assert_eq!(api.delete(&format!("/edges/https/{edge_id}")).await, 204);
    until(&server, &format!("{base}/x"), 404, "ERR_NGROK_3200").await;
    assert_eq!(
        api.get(&format!("/edges/https/{edge_id}/routes/{}", id(&root)))
            .await
            .0,
        404
    );
    // The name is free again for agents.
    let bound = session.http_endpoint().domain(host.clone()).listen().await;
    assert!(bound.is_ok(), "{:?}", bound.err());
}

#[tokio::test]
async fn credential_acls_and_reserved_domains_are_enforced_at_bind() {
    let server = Server::start().await;
    let api = server.api();
    let base = server.info.base_domain.clone();
    let cred = api
        .create(
            "/credentials",
            json!({"description": "team blue", "acl": [format!("bind:*.blue.{base}"), "bind:team=blue"]}),
        )
        .await;
    let token = cred["token"]
        .as_str()
        .expect("token shown at create")
        .to_string();
    let (_, again) = api.get(&format!("/credentials/{}", id(&cred))).await;
    assert_eq!(again["token"], Value::Null, "the token is shown only once");

    let mut b = server.sdk_builder();
    b.authtoken(token.clone());
    let blue = Server::sdk_connect(&b).await;
    let ok = blue
        .http_endpoint()
        .domain(format!("web.blue.{base}"))
        .listen()
        .await;
    assert!(ok.is_ok(), "{:?}", ok.err());
    let err = blue
        .http_endpoint()
        .domain(format!("web.red.{base}"))
        .listen()
        .await
        .err()
        .expect("ACL must refuse");
    assert_eq!(err.error_code(), Some("ERR_NGROK_316"), "{err}");
    let err = blue
        .labeled_tunnel()
        .label("team", "red")
        .listen()
        .await
        .err()
        .expect("ACL must refuse the label");
    assert_eq!(err.error_code(), Some("ERR_NGROK_316"), "{err}");
    let ok = blue.labeled_tunnel().label("team", "blue").listen().await;
    assert!(ok.is_ok(), "{:?}", ok.err());

    // A reserved custom domain is bound only by credentials allowed to.
    let reserved = api
        .create("/reserved_domains", json!({"domain": "App.Example.Test"}))
        .await;
    assert_eq!(reserved["domain"], "app.example.test");
    assert!(
        reserved["cname_target"]
            .as_str()
            .is_some_and(|c| c.ends_with(&format!(".cname.{base}"))),
        "{reserved}"
    );
    let (s, dup) = api
        .post("/reserved_domains", json!({"domain": "app.example.test"}))
        .await;
    assert_eq!(
        (s, dup["error_code"].as_str()),
        (409, Some("ERR_NGROK_9041"))
    );
    let err = blue
        .http_endpoint()
        .domain("app.example.test")
        .listen()
        .await
        .err()
        .expect("not in the ACL");
    assert_eq!(err.error_code(), Some("ERR_NGROK_316"), "{err}");
    let owner = server.sdk_session().await;
    let ok = owner
        .http_endpoint()
        .domain("app.example.test")
        .listen()
        .await;
    assert!(ok.is_ok(), "an unrestricted credential may: {:?}", ok.err());

    // ACL changes apply to the next bind, without reconnecting.
    let (s, _) = api
        .patch(
            &format!("/credentials/{}", id(&cred)),
            json!({"acl": ["bind:*.example.test"]}),
        )
        .await;
    assert_eq!(s, 200);
    eventually("the new ACL", || async {
        blue.http_endpoint()
            .domain("api.example.test")
            .listen()
            .await
            .ok()
    })
    .await;

    // A deleted credential no longer starts sessions.
    assert_eq!(
        api.delete(&format!("/credentials/{}", id(&cred))).await,
        204
    );
    let err = eventually("the credential to be gone", || {
        let b = b.clone();
        async move { b.connect().await.err() }
    })
    .await;
    assert_eq!(err.error_code(), Some("ERR_NGROK_107"), "{err}");
}

#[tokio::test]
async fn every_resource_survives_a_kill_restart() {
    let mut server = Server::start().await;
    let api = server.api();
    let port = server.https_addr().port();
    let host = format!("kept.{}", server.info.base_domain);
    let cred = api
        .create(
            "/credentials",
            json!({"description": "kept", "acl": ["bind:team=kept"]}),
        )
        .await;
    let token = cred["token"].as_str().expect("token").to_string();
    let group = api
        .create(
            "/backends/tunnel_group",
            json!({"labels": {"team": "kept"}}),
        )
        .await;
    let edge = api
        .create(
            "/edges/https",
            json!({"hostports": [format!("{host}:{port}")]}),
        )
        .await;
    let route = api
        .create(
            &format!("/edges/https/{}/routes", id(&edge)),
            json!({"match_type": "path_prefix", "match": "/", "backend": {"backend_id": id(&group)},
                   "circuit_breaker": {"enabled": false, "error_threshold_percentage": 0.25}}),
        )
        .await;
    let policy = api
        .create("/ip_policies", json!({"metadata": "{\"k\":1}"}))
        .await;
    let rule = api
        .create(
            "/ip_policy_rules",
            json!({"ip_policy_id": id(&policy), "cidr": "2001:db8::1/32", "action": "deny"}),
        )
        .await;
    let domain = api
        .create("/reserved_domains", json!({"domain": "kept.example.test"}))
        .await;
    let addr = api
        .create("/reserved_addrs", json!({"description": "db"}))
        .await;
    let key = api.create("/api_keys", json!({"description": "ci"})).await;
    let test_ca = TestCa::new("Kept CA");
    let (cert_pem, key_pem) = test_ca.leaf(&["kept.example.test"]);
    let ca_pem = test_ca.cert_pem.clone();
    let ca = api
        .create("/certificate_authorities", json!({"ca_pem": ca_pem}))
        .await;
    let cert = api
        .create(
            "/tls_certificates",
            json!({"certificate_pem": cert_pem, "private_key_pem": key_pem}),
        )
        .await;
    let tcp_edge = api
        .create(
            "/edges/tcp",
            json!({"hostports": [addr["addr"]], "backend": {"backend_id": id(&group)}}),
        )
        .await;
    let tls_edge = api
        .create(
            "/edges/tls",
            json!({
                "hostports": ["kept.example.test:443"],
                "mutual_tls": {"enabled": false, "certificate_authority_ids": [id(&ca)]},
                "tls_termination": {"terminate_at": "upstream"},
            }),
        )
        .await;
    let ingress = api
        .create("/agent_ingresses", json!({"domain": "connect.kept.test"}))
        .await;
    let operator = api
        .create(
            "/kubernetes_operators",
            json!({"enabled_features": ["ingress"], "deployment": {"name": "op", "namespace": "ngrok"}}),
        )
        .await;
    let paths = [
        format!("/certificate_authorities/{}", id(&ca)),
        format!("/tls_certificates/{}", id(&cert)),
        format!("/edges/tcp/{}", id(&tcp_edge)),
        format!("/edges/tls/{}", id(&tls_edge)),
        format!("/agent_ingresses/{}", id(&ingress)),
        format!("/kubernetes_operators/{}", id(&operator)),
        format!("/credentials/{}", id(&cred)),
        format!("/backends/tunnel_group/{}", id(&group)),
        format!("/edges/https/{}", id(&edge)),
        format!("/edges/https/{}/routes/{}", id(&edge), id(&route)),
        format!("/ip_policies/{}", id(&policy)),
        format!("/ip_policy_rules/{}", id(&rule)),
        format!("/reserved_domains/{}", id(&domain)),
        format!("/reserved_addrs/{}", id(&addr)),
        format!("/api_keys/{}", id(&key)),
    ];
    let mut before = Vec::new();
    for p in &paths {
        let (s, v) = api.get(p).await;
        assert_eq!(s, 200, "{p}: {v}");
        before.push(v);
    }

    server.restart(&[]).await;
    let api = server.api();
    assert_eq!(api.key, server.info.api_key, "the saved API key is reused");
    // uris carry the API's (new) port; everything else must be identical.
    let strip = |v: &Value| {
        serde_json::from_str::<Value>(&v.to_string().replace(&api.base, "API")).expect("json")
    };
    for (p, old) in paths.iter().zip(&before) {
        let (s, now) = api.get(p).await;
        assert_eq!(s, 200, "{p} after restart: {now}");
        let old_base = old["uri"]
            .as_str()
            .and_then(|u| u.find(p.as_str()).map(|i| u[..i].to_string()))
            .expect("uri");
        let old = serde_json::from_str::<Value>(&old.to_string().replace(&old_base, "API"))
            .expect("json");
        assert_eq!(strip(&now), old, "{p}");
    }

    // The credential and the edge work on the restarted server too.
    let port = server.https_addr().port();
    let (s, _) = api
        .patch(
            &format!("/edges/https/{}", id(&edge)),
            json!({"hostports": [format!("{host}:{port}")]}),
        )
        .await;
    assert_eq!(s, 200);
    let mut b = server.sdk_builder();
    b.authtoken(token);
    let session = Server::sdk_connect(&b).await;
    let _fwd = labeled(&session, &[("team", "kept")], named_app("kept").await).await;
    until(
        &server,
        &format!("https://{host}:{port}/ok"),
        200,
        "kept:/ok",
    )
    .await;
}

#[tokio::test]
async fn gangway_tunnel_with_labels_serves_an_edge() {
    let server = Server::start().await;
    let api = server.api();
    let port = server.https_addr().port();
    let host = format!("cli.{}", server.info.base_domain);
    let group = api
        .create("/backends/tunnel_group", json!({"labels": {"app": "cli"}}))
        .await;
    let edge = api
        .create(
            "/edges/https",
            json!({"hostports": [format!("{host}:{port}")]}),
        )
        .await;
    api.create(
        &format!("/edges/https/{}/routes", id(&edge)),
        json!({"match_type": "path_prefix", "match": "/", "backend": {"backend_id": id(&group)}}),
    )
    .await;
    let app = named_app("cli").await;
    let agent = crate::support::Agent::spawn(
        "tunnel",
        server.data_dir(),
        &app.to_string(),
        &["--label", "app=cli", "--label", "team=x"],
    )
    .await;
    assert!(agent.url.starts_with("labeled tunnel tn_"), "{}", agent.url);
    until(
        &server,
        &format!("https://{host}:{port}/hi"),
        200,
        "cli:/hi",
    )
    .await;
    let (_, group) = api
        .get(&format!("/backends/tunnel_group/{}", id(&group)))
        .await;
    assert_eq!(
        group["tunnels"].as_array().map(Vec::len),
        Some(1),
        "{group}"
    );
    drop(agent);
    until(
        &server,
        &format!("https://{host}:{port}/hi"),
        502,
        "ERR_NGROK_3200",
    )
    .await;
}
