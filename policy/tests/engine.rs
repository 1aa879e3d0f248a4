//! Table-driven: a policy document and a request → the outcome the edge
//! must apply (response, upstream edits, logs), plus refused documents
//! with their paths.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use gangway_policy::engine::{self, HttpOutcome, Refused, Reply};
use gangway_policy::expr::Scope;
use gangway_policy::Policy;
use serde_json::json;

/// A GET of `url` (path?query) on https://shop.example from `ip`.
fn request(url: &str, headers: &[(&str, &str)], ip: &str) -> (Scope, Option<IpAddr>) {
    let (path, query) = url.split_once('?').unwrap_or((url, ""));
    let mut map: HashMap<String, Vec<String>> = HashMap::new();
    for (k, v) in headers {
        map.entry(k.to_ascii_lowercase())
            .or_default()
            .push(v.to_string());
    }
    let mut s = Scope::default();
    s.roots_mut().insert(
        "req".into(),
        json!({
            "method": "GET",
            "headers": map,
            "url": {"raw": format!("https://shop.example{url}"), "scheme": "https",
                    "host": "shop.example", "path": path, "query": query},
        }),
    );
    s.roots_mut()
        .insert("conn".into(), json!({"client_ip": ip}));
    s.roots_mut().insert("vars".into(), json!({}));
    s.req_headers = Arc::new(map);
    let mut params: HashMap<String, Vec<String>> = HashMap::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        params.entry(k.to_string()).or_default().push(v.to_string());
    }
    s.query = Arc::new(params);
    (s, ip.parse().ok())
}

fn run_request(doc: &str, url: &str, headers: &[(&str, &str)], ip: &str) -> HttpOutcome {
    let policy = Policy::parse(doc).unwrap_or_else(|e| panic!("{doc}: {e}"));
    let (mut scope, client) = request(url, headers, ip);
    engine::run(&policy.on_http_request, &mut scope, client)
}

/// The status of the policy's own answer; a refusal is checked apart.
fn status(o: &HttpOutcome) -> Option<u16> {
    assert_eq!(o.refused, None, "refused instead of answering");
    o.respond.as_ref().map(|r| r.status)
}

#[test]
fn actions_and_phase_semantics() {
    // (what, document, url, headers, client ip, check)
    type Check = fn(&HttpOutcome);
    type Case = (
        &'static str,
        &'static str,
        &'static str,
        Vec<(&'static str, &'static str)>,
        &'static str,
        Check,
    );
    let cases: Vec<Case> = vec![
        (
            "deny defaults to 403 and stops the phase",
            r#"{"on_http_request":[{"actions":[{"type":"deny"},{"type":"add-headers","config":{"headers":{"x-late":"1"}}}]}]}"#,
            "/",
            vec![],
            "192.0.2.1",
            |o| {
                assert_eq!(status(o), Some(403));
                assert!(o.add_headers.is_empty());
            },
        ),
        (
            "expressions are ANDed",
            r#"on_http_request:
  - expressions: ["req.url.path.startsWith('/admin')", "!inCidrRange(conn.client_ip, '10.0.0.0/8')"]
    actions: [{type: deny, config: {status_code: 401}}]"#,
            "/admin/x",
            vec![],
            "10.1.1.1",
            |o| assert_eq!(status(o), None),
        ),
        (
            "both true: denied with the configured status",
            r#"on_http_request:
  - expressions: ["req.url.path.startsWith('/admin')", "!inCidrRange(conn.client_ip, '10.0.0.0/8')"]
    actions: [{type: deny, config: {status_code: 401}}]"#,
            "/admin/x",
            vec![],
            "192.0.2.9",
            |o| assert_eq!(status(o), Some(401)),
        ),
        (
            "custom-response interpolates body and headers",
            r#"{"on_http_request":[{"actions":[{"type":"custom-response","config":{"status_code":418,"body":"hi ${conn.client_ip} ${getQueryParam('n')[0]}","headers":{"content-type":"text/plain","x-path":"${req.url.path}"}}}]}]}"#,
            "/tea?n=7",
            vec![],
            "192.0.2.2",
            |o| {
                assert_eq!(
                    o.respond,
                    Some(Reply {
                        status: 418,
                        body: "hi 192.0.2.2 7".into(),
                        headers: vec![
                            ("content-type".parse().unwrap(), "text/plain".into()),
                            ("x-path".parse().unwrap(), "/tea".into())
                        ]
                    })
                )
            },
        ),
        (
            "redirect with captures",
            r#"{"on_http_request":[{"actions":[{"type":"redirect","config":{"from":"^https://shop.example/old/(.*)$","to":"https://shop.example/new/$1","status_code":301}}]}]}"#,
            "/old/a/b?x=1",
            vec![],
            "192.0.2.3",
            |o| {
                let r = o.respond.as_ref().unwrap();
                assert_eq!(r.status, 301);
                assert_eq!(
                    r.headers,
                    vec![(
                        http::header::LOCATION,
                        "https://shop.example/new/a/b?x=1".into()
                    )]
                );
            },
        ),
        (
            "redirect whose from does not match does nothing",
            r#"{"on_http_request":[{"actions":[{"type":"redirect","config":{"from":"/old/","to":"/new/"}}]}]}"#,
            "/fresh",
            vec![],
            "192.0.2.3",
            |o| assert_eq!(status(o), None),
        ),
        (
            "url-rewrite; later rules see the new path",
            r#"on_http_request:
  - actions: [{type: url-rewrite, config: {from: "/v1/(.*)", to: "/api/v2/$1"}}]
  - expressions: ["req.url.path == '/api/v2/items'"]
    actions: [{type: add-headers, config: {headers: {x-rewritten: "yes"}}}]"#,
            "/v1/items",
            vec![],
            "192.0.2.4",
            |o| {
                assert_eq!(o.rewrite.as_deref(), Some("/api/v2/items"));
                assert_eq!(
                    o.add_headers,
                    vec![("x-rewritten".parse().unwrap(), "yes".into())]
                );
            },
        ),
        (
            "remove-headers and add-headers",
            r#"{"on_http_request":[{"actions":[{"type":"remove-headers","config":{"headers":["x-secret"]}},{"type":"add-headers","config":{"headers":{"x-client":"${conn.client_ip}"}}}]}]}"#,
            "/",
            vec![("X-Secret", "s")],
            "192.0.2.5",
            |o| {
                assert_eq!(
                    o.remove_headers,
                    vec![http::HeaderName::from_static("x-secret")]
                );
                assert_eq!(
                    o.add_headers,
                    vec![("x-client".parse().unwrap(), "192.0.2.5".into())]
                );
            },
        ),
        (
            "restrict-ips: deny wins",
            r#"{"on_http_request":[{"actions":[{"type":"restrict-ips","config":{"allow":["192.0.2.0/24"],"deny":["192.0.2.66"]}}]}]}"#,
            "/",
            vec![],
            "192.0.2.66",
            |o| {
                assert_eq!(o.refused, Some(Refused::IpBlocked));
            },
        ),
        (
            "restrict-ips: an IPv4 client on a dual-stack socket matches v4 CIDRs",
            r#"{"on_http_request":[{"actions":[{"type":"restrict-ips","config":{"allow":["192.0.2.0/24"]}}]}]}"#,
            "/",
            vec![],
            "::ffff:192.0.2.7",
            |o| assert_eq!(status(o), None),
        ),
        (
            "restrict-ips: allowed passes",
            r#"{"on_http_request":[{"actions":[{"type":"restrict-ips","config":{"allow":["192.0.2.0/24"]}}]}]}"#,
            "/",
            vec![],
            "192.0.2.7",
            |o| assert_eq!(status(o), None),
        ),
        (
            "set-vars feeds later expressions; log records",
            r#"on_http_request:
  - actions:
      - {type: set-vars, config: {vars: [{tier: "${hasReqHeader('x-pro') ? 'pro' : 'free'}"}]}}
  - name: pro users
    expressions: ["vars.tier == 'pro'"]
    actions: [{type: log, config: {metadata: {tier: pro}}}]"#,
            "/",
            vec![("x-pro", "1")],
            "192.0.2.8",
            |o| {
                assert_eq!(
                    o.logs,
                    vec![json!({"metadata": {"tier": "pro"}, "rule": "pro users"})]
                )
            },
        ),
        (
            "legacy inbound is on_http_request",
            r#"{"inbound":[{"actions":[{"type":"deny","config":{"status_code":404}}]}]}"#,
            "/",
            vec![],
            "192.0.2.1",
            |o| assert_eq!(status(o), Some(404)),
        ),
        (
            "a runtime CEL error is a 500 with a code, not a panic",
            r#"{"on_http_request":[{"expressions":["req.nope.deeper == 1"],"actions":[{"type":"deny"}]}]}"#,
            "/",
            vec![],
            "192.0.2.1",
            |o| {
                assert!(matches!(o.refused, Some(Refused::Failed(_))), "{o:?}");
            },
        ),
        (
            "close-connection",
            r#"{"on_http_request":[{"actions":[{"type":"close-connection"}]}]}"#,
            "/",
            vec![],
            "192.0.2.1",
            |o| assert!(o.close),
        ),
        (
            "basic-auth: no credentials is a 401 with the realm",
            r#"{"on_http_request":[{"actions":[{"type":"basic-auth","config":{"credentials":["ann:pw"],"realm":"shop"}}]}]}"#,
            "/",
            vec![("authorization", "Basic YW5uOndyb25n")],
            "192.0.2.1",
            |o| {
                let r = o.respond.as_ref().unwrap();
                assert_eq!(r.status, 401);
                assert_eq!(r.headers[0].1, "Basic realm=\"shop\"");
            },
        ),
        (
            "basic-auth: good credentials pass, are stripped, and later rules see the user",
            r#"{"on_http_request":[{"actions":[{"type":"basic-auth","config":{"credentials":["ann:pw"]}}]},
               {"expressions":["actions.ngrok.basic_auth.username == 'ann'"],
                "actions":[{"type":"add-headers","config":{"headers":{"x-user":"${actions.ngrok.basic_auth.username}"}}}]}]}"#,
            "/",
            vec![("authorization", "Basic YW5uOnB3")],
            "192.0.2.1",
            |o| {
                assert_eq!(status(o), None);
                assert_eq!(o.remove_headers, vec![http::header::AUTHORIZATION]);
                assert_eq!(o.add_headers[0].1, "ann");
            },
        ),
        (
            "rate-limit: the first request of a bucket passes",
            r#"{"on_http_request":[{"actions":[{"type":"rate-limit","config":{"name":"one","capacity":1,"rate":"60s","bucket_key":["conn.client_ip"]}}]}]}"#,
            "/",
            vec![],
            "192.0.2.1",
            |o| assert_eq!(status(o), None),
        ),
        (
            "forward-internal names the internal host and ends the phase",
            r#"{"on_http_request":[{"actions":[{"type":"forward-internal","config":{"url":"https://${req.url.path.split('/')[1]}.internal"}},{"type":"deny"}]}]}"#,
            "/api/x",
            vec![],
            "192.0.2.1",
            |o| {
                assert_eq!(status(o), None);
                let f = o.forward.as_ref().unwrap();
                assert_eq!(
                    (f.host.as_str(), f.continue_on_error),
                    ("api.internal", false)
                );
            },
        ),
        (
            "forward-internal to a rendered non-internal URL is a runtime error",
            r#"{"on_http_request":[{"actions":[{"type":"forward-internal","config":{"url":"https://${req.url.host}"}}]}]}"#,
            "/",
            vec![],
            "192.0.2.1",
            |o| assert!(matches!(o.refused, Some(Refused::Failed(_))), "{o:?}"),
        ),
    ];
    for (what, doc, url, headers, ip, check) in cases {
        let outcome = run_request(doc, url, &headers, ip);
        eprintln!("case: {what}");
        check(&outcome);
    }
}

#[test]
fn rate_limit_counts_per_bucket_and_dry_runs() {
    let policy = Policy::parse(
        r#"{"on_http_request":[
             {"actions":[{"type":"rate-limit","config":{"name":"dry","capacity":1,"rate":"60s","bucket_key":["conn.client_ip"],"enforce":false}}]},
             {"expressions":["actions.ngrok.rate_limit.limited"],"actions":[{"type":"add-headers","config":{"headers":{"x-would-limit":"1"}}}]},
             {"actions":[{"type":"rate-limit","config":{"name":"real","capacity":2,"rate":"60s","bucket_key":["conn.client_ip", "req.url.path"]}}]}]}"#,
    )
    .unwrap();
    let run = |ip: &str, path: &str| {
        let (mut scope, client) = request(path, &[], ip);
        engine::run(&policy.on_http_request, &mut scope, client)
    };
    let first = run("192.0.2.1", "/a");
    assert_eq!((status(&first), first.add_headers.len()), (None, 0));
    let second = run("192.0.2.1", "/a");
    assert_eq!(status(&second), None, "the dry run only marks");
    assert_eq!(second.add_headers[0].0, "x-would-limit");
    let third = run("192.0.2.1", "/a");
    let r = third.respond.expect("limited");
    assert_eq!(r.status, 429);
    let retry: u64 = r.headers[0].1.parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    assert_eq!(status(&run("192.0.2.1", "/b")), None, "another bucket");
    assert_eq!(status(&run("192.0.2.2", "/a")), None, "another client");
}

#[test]
fn bad_documents_are_refused_with_a_path() {
    let cases = [
        (
            r#"{"on_http_request":[{"actions":[{"type":"rate-limit","config":{"capacity":0,"rate":"1m"}}]}]}"#,
            "on_http_request[0].actions[0].config.capacity",
        ),
        (
            r#"{"on_http_request":[{"actions":[{"type":"rate-limit","config":{"capacity":5,"rate":"soon"}}]}]}"#,
            "on_http_request[0].actions[0].config.rate",
        ),
        (
            r#"{"on_http_request":[{"actions":[{"type":"basic-auth","config":{"credentials":["nopassword"]}}]}]}"#,
            "on_http_request[0].actions[0].config.credentials[0]",
        ),
        (
            r#"{"on_http_request":[{"actions":[{"type":"forward-internal","config":{"url":"https://example.com"}}]}]}"#,
            "on_http_request[0].actions[0].config.url",
        ),
        (
            r#"{"on_http_request":[{"actions":[{"type":"explode"}]}]}"#,
            "on_http_request[0].actions[0].type",
        ),
        (
            r#"{"on_http_request":[{"actions":[{"type":"deny","config":{"status_code":99}}]}]}"#,
            "on_http_request[0].actions[0].config.status_code",
        ),
        (
            r#"{"on_http_request":[{"actions":[{"type":"deny"}]},{"expressions":["req.method =="],"actions":[{"type":"deny"}]}]}"#,
            "on_http_request[1].expressions[0]",
        ),
        (
            r#"{"on_http_request":[{"expressions":["res.status_code == 500"],"actions":[{"type":"deny"}]}]}"#,
            "on_http_request[0].expressions[0]",
        ),
        (
            r#"{"on_http_request":[{"actions":[]}]}"#,
            "on_http_request[0].actions",
        ),
        (
            r#"{"on_http_request":[{"actions":[{"type":"redirect","config":{"from":"(","to":"/"}}]}]}"#,
            "on_http_request[0].actions[0].config.from",
        ),
        (
            r#"{"on_http_request":[{"actions":[{"type":"add-headers","config":{"headers":{"bad header":"v"}}}]}]}"#,
            "on_http_request[0].actions[0].config.headers.bad header",
        ),
        (
            r#"{"on_http_request":[{"actions":[{"type":"restrict-ips","config":{"allow":["300.0.0.0/8"]}}]}]}"#,
            "on_http_request[0].actions[0].config.allow[0]",
        ),
        (
            r#"{"on_http_request":[{"actions":[{"type":"url-rewrite","config":{"to":"${oops"}}]}]}"#,
            "on_http_request[0].actions[0].config.to",
        ),
        (
            r#"{"on_http_response":[{"actions":[{"type":"url-rewrite","config":{"to":"/"}}]}]}"#,
            "on_http_response[0].actions[0].type",
        ),
        (
            r#"{"on_http_request":[{"actions":[{"type":"oauth","config":{}}]}]}"#,
            "on_http_request[0].actions[0].type",
        ),
        (
            r#"{"on_http_request":[{"actions":[{"type":"deny","config":{"status_code":403,"extra":1}}]}]}"#,
            "on_http_request[0].actions[0].config.extra",
        ),
        (r#"{"on_http_request":[],"inbound":[]}"#, "inbound"),
        (r#"{"on_http_requests":[]}"#, "on_http_requests"),
        ("on_http_request: [ {", ""),
    ];
    for (doc, path) in cases {
        let err = Policy::parse(doc).expect_err(doc);
        assert_eq!(err.path, path, "{doc}: {err}");
    }
    assert!(Policy::parse("").unwrap().is_empty());
}

#[test]
fn the_rust_sdks_deprecated_policy_object_is_read() {
    // What ngrok-rust's `policy()` puts on the wire.
    let doc = r#"{"Inbound":[{"Name":"deny-curl","Expressions":["req.user_agent.startsWith('curl')"],
                  "Actions":[{"Type":"custom-response","Config":{"status_code":418,"body":"Name"}}]}],
                  "Outbound":[]}"#;
    let policy = Policy::parse(doc).unwrap();
    assert_eq!(policy.on_http_request[0].name, "deny-curl");
    let (mut scope, ip) = request("/", &[], "10.0.0.1");
    scope
        .roots_mut()
        .get_mut("req")
        .unwrap()
        .as_object_mut()
        .unwrap()
        .insert("user_agent".into(), json!("curl/8"));
    let out = engine::run(&policy.on_http_request, &mut scope, ip);
    let reply = out.respond.unwrap();
    assert_eq!((reply.status, reply.body.as_str()), (418, "Name"));
}
