//! HTTP tunnel options: `--subdomain`, wildcard domains (most specific
//! binding wins), and pooling several agents on one endpoint.

use std::collections::HashSet;
use std::net::SocketAddr;

use crate::support::{agent_fails, eventually, Agent, Server};

/// An app that answers every request with its own name.
async fn named_app(name: &'static str) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let router = axum::Router::new().fallback(move || async move { name });
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    addr
}

/// GET over the public HTTP listener with `host`, returning the body.
async fn get_via_http(server: &Server, host: &str) -> (u16, String) {
    let url = format!("http://{host}:{}/", server.http_addr().port());
    let r = server.client().get(url).send().await.expect("get");
    (r.status().as_u16(), r.text().await.expect("body"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subdomain_flag_binds_under_the_base_domain() {
    let server = Server::start().await;
    let app = named_app("sub").await;
    let agent = Agent::http(&server, &app.to_string(), &["--subdomain", "demo"]).await;
    assert_eq!(
        agent.url,
        format!(
            "https://demo.gangway.localhost:{}",
            server.https_addr().port()
        )
    );
    let r = server.client().get(&agent.url).send().await.expect("get");
    assert_eq!(r.text().await.expect("body"), "sub");

    let err = agent_fails(
        &server,
        &["http", &app.to_string(), "--subdomain", "no_underscores"],
    )
    .await;
    assert!(err.contains("ERR_NGROK_326"), "invalid character: {err}");
    let err = agent_fails(&server, &["http", &app.to_string(), "--subdomain", "demo"]).await;
    assert!(err.contains("ERR_NGROK_334"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wildcard_domains_most_specific_binding_wins() {
    let server = Server::start().await;
    let (general, specific, exact) = (
        named_app("general").await,
        named_app("specific").await,
        named_app("exact").await,
    );
    let _a = Agent::http(
        &server,
        &general.to_string(),
        &["--domain", "*.wild.test", "--scheme", "http,https"],
    )
    .await;
    let _b = Agent::http(
        &server,
        &specific.to_string(),
        &["--domain", "*.deep.wild.test", "--scheme", "http,https"],
    )
    .await;
    let _c = Agent::http(
        &server,
        &exact.to_string(),
        &["--domain", "exact.deep.wild.test", "--scheme", "http,https"],
    )
    .await;

    for (host, served_by) in [
        ("x.wild.test", "general"),
        ("a.b.c.wild.test", "general"),
        ("x.deep.wild.test", "specific"),
        ("a.b.deep.wild.test", "specific"),
        ("exact.deep.wild.test", "exact"),
    ] {
        assert_eq!(
            get_via_http(&server, host).await,
            (200, served_by.into()),
            "{host}"
        );
    }
    let (status, _) = get_via_http(&server, "wild.test").await;
    assert_eq!(status, 404, "a wildcard does not cover its apex");

    let err = agent_fails(&server, &["http", "8080", "--domain", "a.*.wild.test"]).await;
    assert!(err.contains("ERR_NGROK_326"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pooled_agents_share_an_endpoint() {
    let server = Server::start().await;
    let (one, two) = (named_app("one").await, named_app("two").await);
    let domain = "pool.gangway.localhost";
    let mut first = Agent::http(
        &server,
        &one.to_string(),
        &[
            "--domain",
            domain,
            "--pooling-enabled",
            "--scheme",
            "http,https",
        ],
    )
    .await;
    let _second = Agent::http(
        &server,
        &two.to_string(),
        &[
            "--domain",
            domain,
            "--pooling-enabled",
            "--scheme",
            "http,https",
        ],
    )
    .await;

    let mut seen = HashSet::new();
    for _ in 0..20 {
        let (status, body) = get_via_http(&server, domain).await;
        assert_eq!(status, 200);
        seen.insert(body);
    }
    assert_eq!(seen, HashSet::from(["one".to_string(), "two".to_string()]));

    // A third agent without pooling is refused while the pool is up.
    let err = agent_fails(&server, &["http", &one.to_string(), "--domain", domain]).await;
    assert!(err.contains("ERR_NGROK_334"), "{err}");

    // One member leaves: the other takes all the traffic.
    first.kill();
    eventually("traffic to settle on the remaining agent", || {
        let server = &server;
        async move {
            for _ in 0..10 {
                if get_via_http(server, domain).await != (200, "two".to_string()) {
                    return None;
                }
            }
            Some(())
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_from_the_agent_flag() {
    let server = Server::start().await;
    let app = crate::support::app::start().await;
    let agent = Agent::http(
        &server,
        &app.to_string(),
        &[
            "--basic-auth",
            "alice:correct horse",
            "--basic-auth",
            "bob:battery staple",
        ],
    )
    .await;
    let client = server.client();
    let r = client
        .get(format!("{}/hello", agent.url))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["www-authenticate"], "Basic realm=\"ngrok\"");
    let r = client
        .get(format!("{}/hello", agent.url))
        .basic_auth("alice", Some("wrong password"))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 401);
    for (user, pass) in [("alice", "correct horse"), ("bob", "battery staple")] {
        let r = client
            .get(format!("{}/headers", agent.url))
            .basic_auth(user, Some(pass))
            .send()
            .await
            .expect("get");
        assert_eq!(r.status(), 200);
        let headers = r.text().await.expect("body");
        assert!(
            !headers.contains("authorization"),
            "the edge's credential must not reach the app: {headers}"
        );
    }
    let err = agent_fails(&server, &["http", "8080", "--basic-auth", "carol:short"]).await;
    assert!(err.contains("basic_auth.credentials[0].password"), "{err}");
    assert!(err.contains("ERR_NGROK_360"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_from_the_ngrok_sdk() {
    use ngrok::config::ForwarderBuilder;
    use ngrok::tunnel::EndpointInfo;

    let server = Server::start().await;
    let app = crate::support::app::start().await;
    let session = server.sdk_session().await;
    let fwd = session
        .http_endpoint()
        .basic_auth("sdkuser", "sdk password")
        .listen_and_forward(reqwest::Url::parse(&format!("http://{app}")).expect("url"))
        .await
        .expect("bind");
    let url = fwd.url().to_string();
    let client = server.client();
    assert_eq!(client.get(&url).send().await.expect("get").status(), 401);
    let r = client
        .get(format!("{url}/hello"))
        .basic_auth("sdkuser", Some("sdk password"))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.expect("body"), "hello from the local app");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_header_preserve_rewrite_and_literal() {
    let server = Server::start().await;
    let app = crate::support::app::start().await;
    let host_seen = |agent: &Agent| {
        let client = server.client();
        let url = format!("{}/headers", agent.url);
        async move {
            let body = client
                .get(url)
                .send()
                .await
                .expect("get")
                .text()
                .await
                .expect("body");
            body.lines()
                .find_map(|l| l.strip_prefix("host: ").map(str::to_string))
                .expect("host header")
        }
    };
    let preserve = Agent::http(&server, &app.to_string(), &[]).await;
    assert_eq!(
        host_seen(&preserve).await,
        format!("{}:{}", preserve.host(), server.https_addr().port())
    );
    let rewrite = Agent::http(&server, &app.to_string(), &["--host-header", "rewrite"]).await;
    assert_eq!(host_seen(&rewrite).await, app.to_string());
    let literal = Agent::http(
        &server,
        &app.to_string(),
        &["--host-header", "internal.example"],
    )
    .await;
    assert_eq!(host_seen(&literal).await, "internal.example");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheme_selects_the_listeners() {
    let server = Server::start().await;
    let app = named_app("scheme").await;
    let https_only = Agent::http(
        &server,
        &app.to_string(),
        &["--domain", "s1.gangway.localhost"],
    )
    .await;
    assert!(https_only.url.starts_with("https://"));
    assert_eq!(get_via_http(&server, "s1.gangway.localhost").await.0, 404);
    let r = server
        .client()
        .get(&https_only.url)
        .send()
        .await
        .expect("get");
    assert_eq!(r.text().await.expect("body"), "scheme");

    let http_only = Agent::http(
        &server,
        &app.to_string(),
        &["--domain", "s2.gangway.localhost", "--scheme", "http"],
    )
    .await;
    assert_eq!(
        http_only.url,
        format!("http://s2.gangway.localhost:{}", server.http_addr().port())
    );
    assert_eq!(
        get_via_http(&server, "s2.gangway.localhost").await,
        (200, "scheme".to_string())
    );
    let url = format!(
        "https://s2.gangway.localhost:{}/",
        server.https_addr().port()
    );
    assert_eq!(
        server.client().get(url).send().await.expect("get").status(),
        404
    );

    // Both: one random name on both listeners.
    let both = Agent::http(&server, &app.to_string(), &["--scheme", "http,https"]).await;
    let host = both.host();
    assert_eq!(
        get_via_http(&server, &host).await,
        (200, "scheme".to_string())
    );
    let r = server.client().get(&both.url).send().await.expect("get");
    assert_eq!(r.status(), 200);
    let lines = both.stdout.lock().expect("lines").clone();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with(&format!("Forwarding http://{host}:"))),
        "{lines:?}"
    );

    let err = agent_fails(&server, &["http", "8080", "--scheme", "gopher"]).await;
    assert!(err.contains("--scheme"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn region_and_metadata_are_reported_back() {
    use ngrok::config::ForwarderBuilder;

    let server = Server::start_with(&["--region", "eu"]).await;
    let app = named_app("meta").await;
    let agent = Agent::http(
        &server,
        &app.to_string(),
        &["--region", "us", "--metadata", r#"{"team":"edge"}"#],
    )
    .await;
    let lines = agent.stdout.lock().expect("lines").clone();
    assert!(
        lines
            .iter()
            .any(|l| l == r#"Region eu (this server serves region "eu", not "us")"#),
        "{lines:?}"
    );
    let body = server
        .client()
        .get(&agent.url)
        .send()
        .await
        .expect("get")
        .text()
        .await
        .expect("body");
    assert_eq!(body, "meta");

    // The SDK's session and tunnel metadata reach the edge too.
    let mut builder = server.sdk_builder();
    builder.metadata("sdk-session-meta");
    let session = Server::sdk_connect(&builder).await;
    let _fwd = session
        .http_endpoint()
        .metadata("sdk-tunnel-meta")
        .listen_and_forward(reqwest::Url::parse(&format!("http://{app}")).expect("url"))
        .await
        .expect("bind");
    let log = eventually("metadata in the edge log", || {
        let log = server.log();
        async move { log.contains("sdk-tunnel-meta").then_some(log) }
    })
    .await;
    assert!(log.contains(r#"metadata={"team":"edge"}"#), "{log}");
    assert!(log.contains("metadata=sdk-session-meta"), "{log}");
}
