use super::*;
use std::sync::atomic::{AtomicUsize, Ordering};

const ORIGIN: &str = "/home/u/.config/gangway/gangway.yml";
const V2_EXAMPLE: &str = include_str!("../../../tests/config/ngrok-v2.yml");
const V3_EXAMPLE: &str = include_str!("../../../tests/config/ngrok-v3.yml");
const TOKEN: &str = "4nq9771bPxe8ctg7LKr_2ClH7Y15Zqe4bWLWF9p";

fn err(text: &str) -> AgentFileError {
    match parse(ORIGIN, text) {
        Ok(file) => panic!("accepted: {file:?}"),
        Err(e) => e,
    }
}

/// Asserts the whole message, and that line and key are what it shows.
fn assert_err(text: &str, line: usize, key: Option<&str>, message: &str) {
    let e = err(text);
    assert_eq!(e.to_string(), message);
    assert_eq!(e.line(), Some(line), "{e}");
    assert_eq!(e.key(), key, "{e}");
    assert_eq!(e.origin(), ORIGIN);
}

fn def(name: &str, kind: TunnelKind, proto: Proto, addr: &str) -> TunnelDef {
    blank_def(name.into(), kind, proto, addr.into())
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap()
}

/// Compares a policy by value (JSON key order depends on serde_json
/// features), then the rest of the definition.
fn assert_tunnel(actual: &TunnelDef, mut expected: TunnelDef, policy: Option<serde_json::Value>) {
    let mut actual = actual.clone();
    let actual_policy = actual.traffic_policy.take().map(|p| json(&p));
    assert_eq!(actual_policy, policy, "{}", actual.name);
    expected.traffic_policy = None;
    assert_eq!(actual, expected);
}

struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("gangway-agent-file-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn file(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        fs::write(&path, text).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

// ------------------------------------------------------- examples

#[test]
fn v2_example_file() {
    let file = parse("ngrok-v2.yml", V2_EXAMPLE).unwrap();
    assert_eq!(file.version, 2);
    assert_eq!(file.authtoken.as_deref(), Some(TOKEN));
    assert_eq!(file.server_addr.as_deref(), Some("localhost:4443"));
    assert_eq!(file.region.as_deref(), Some("us"));
    assert_eq!(file.console_ui, Some(ConsoleUi::On));
    assert_eq!(file.web_addr, Some(WebAddr::Addr("localhost:4040".into())));
    assert_eq!(file.log.as_deref(), Some("/var/log/ngrok.log"));
    assert_eq!(file.log_level.as_deref(), Some("info"));
    assert_eq!(file.log_format, Some(LogFormat::Json));
    assert_eq!(
        file.metadata.as_deref(),
        Some(r#"{"serial": "00012xa-33rUtz9", "comment": "For customer alan@example.com"}"#)
    );
    assert_eq!(file.inspect_db_size, Some(50_000_000));
    assert_eq!(file.root_cas.as_deref(), Some("trusted"));
    assert_eq!(
        file.proxy_url.as_ref().map(|p| p.to_string()).as_deref(),
        Some("socks5://localhost:9150")
    );
    assert_eq!(
        file.web_allow_hosts,
        Some(vec!["8.8.8.8".into(), "example.com".into()])
    );

    let names: Vec<&str> = file.tunnels.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "httpbin",
            "demo",
            "myapp-http",
            "mypp-https",
            "website",
            "e2etls",
            "ssh-access",
            "example-website",
            "example-traffic-policy",
            "example-load-balanced-edge",
        ]
    );
    let t = |name: &str| file.tunnel(name).unwrap();
    use Proto::*;
    use TunnelKind::Tunnel;

    let mut want = def("httpbin", Tunnel, Http, "8000");
    want.subdomain = Some("alan-httpbin".into());
    assert_tunnel(t("httpbin"), want, None);

    let mut want = def("demo", Tunnel, Http, "9090");
    want.hostname = Some("demo.inconshreveable.com".into());
    want.inspect = Some(false);
    want.basic_auth = vec!["demo:secret".into()];
    assert_tunnel(t("demo"), want, None);

    let mut want = def("myapp-http", Tunnel, Http, "80");
    want.hostname = Some("example.com".into());
    want.bind_tls = BindTls::False;
    assert_tunnel(t("myapp-http"), want, None);

    let mut want = def("mypp-https", Tunnel, Tls, "443");
    want.hostname = Some("example.com".into());
    assert_tunnel(t("mypp-https"), want, None);

    let mut want = def("website", Tunnel, Http, "8888");
    want.basic_auth = vec!["bob:bobpassword".into()];
    want.bind_tls = BindTls::True;
    want.host_header = Some("myapp.dev".into());
    want.inspect = Some(false);
    want.subdomain = Some("myapp".into());
    assert_tunnel(t("website"), want, None);

    let mut want = def("e2etls", Tunnel, Tls, "9000");
    want.hostname = Some("myapp.example.com".into());
    want.crt = Some("example.crt".into());
    want.key = Some("example.key".into());
    assert_tunnel(t("e2etls"), want, None);

    let mut want = def("ssh-access", Tunnel, Tcp, "22");
    want.remote_addr = Some("1.tcp.ngrok.io:12345".into());
    assert_tunnel(t("ssh-access"), want, None);

    let mut want = def("example-website", Tunnel, Http, "8888");
    want.basic_auth = vec!["bob:bobpassword".into()];
    want.bind_tls = BindTls::True;
    want.host_header = Some("app.local".into());
    want.inspect = Some(false);
    want.hostname = Some("myapp.ngrok.app".into());
    assert_tunnel(t("example-website"), want, None);

    let policy = json(
        r#"{"on_tcp_connect": [{"name": "LimitIPs", "expressions": ["conn.client_ip != '1.1.1.1'"],
                "actions": [{"type": "deny"}]}]}"#,
    );
    assert_tunnel(
        t("example-traffic-policy"),
        def("example-traffic-policy", Tunnel, Tcp, "8000"),
        Some(policy),
    );

    let mut want = def("example-load-balanced-edge", Tunnel, Http, "8000");
    want.labels = vec!["env=prod".into(), "team=infra".into()];
    assert_tunnel(t("example-load-balanced-edge"), want, None);
}

#[test]
fn v3_example_file() {
    let file = parse("ngrok-v3.yml", V3_EXAMPLE).unwrap();
    assert_eq!(file.version, 3);
    assert_eq!(file.authtoken.as_deref(), Some(TOKEN));
    assert_eq!(file.server_addr.as_deref(), Some("localhost:4443"));
    assert_eq!(file.region, None);
    assert_eq!(file.console_ui, Some(ConsoleUi::IfTty));
    assert_eq!(file.web_addr, Some(WebAddr::Addr("localhost:4040".into())));
    assert_eq!(file.log.as_deref(), Some("/var/log/ngrok.log"));
    assert_eq!(file.log_level.as_deref(), Some("info"));
    assert_eq!(file.log_format, Some(LogFormat::Json));
    assert_eq!(
        file.metadata.as_deref(),
        Some(r#"{"serial": "00012xa-33rUtz9", "comment": "For customer alan@example.com"}"#)
    );
    assert_eq!(file.inspect_db_size, Some(104_857_600));
    assert_eq!(file.root_cas.as_deref(), Some("trusted"));
    assert_eq!(
        file.proxy_url.as_ref().map(|p| p.to_string()).as_deref(),
        Some("socks5://localhost:9150")
    );
    assert_eq!(
        file.web_allow_hosts,
        Some(vec!["8.8.8.8".into(), "example.com".into()])
    );

    let names: Vec<&str> = file.tunnels.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "httpbin",
            "demo",
            "ssh",
            "demo-2",
            "foo",
            "example-website",
            "my_tunnel_name",
            "basic"
        ]
    );
    let t = |name: &str| file.tunnel(name).unwrap();
    use Proto::*;
    use TunnelKind::Endpoint;

    let mut want = def("httpbin", Endpoint, Http, "8080");
    want.hostname = Some("alan-httpbin.ngrok.app".into());
    assert_tunnel(t("httpbin"), want, None);

    let mut want = def("demo", Endpoint, Http, "8181");
    want.hostname = Some("demo.inconshreveable.com".into());
    assert_tunnel(t("demo"), want, None);

    let mut want = def("ssh", Endpoint, Tcp, "22");
    want.remote_addr = Some("1.tcp.ngrok.io:12345".into());
    assert_tunnel(t("ssh"), want, None);

    let mut want = def("demo-2", Endpoint, Tls, "443");
    want.hostname = Some("myexample.ngrok.app".into());
    assert_tunnel(t("demo-2"), want, None);

    let mut want = def("foo", Endpoint, Http, "8080");
    want.description = Some("foo123".into());
    want.metadata = Some("foo123".into());
    want.hostname = Some("foo.ngrok.app".into());
    want.upstream_protocol = Some(UpstreamProtocol::Http1);
    let policy = json(
        r#"{"on_http_request": [{"actions": [{"type": "custom-response", "config": {
                "status_code": 200, "body": "hello, traffic policy!",
                "headers": {"content-type": "text/plain"}}}]}]}"#,
    );
    assert_tunnel(t("foo"), want, Some(policy));

    let mut want = def("example-website", Endpoint, Http, "8080");
    want.metadata = Some("foo123".into());
    want.hostname = Some("example-website.ngrok.app".into());
    want.upstream_protocol = Some(UpstreamProtocol::Http1);
    assert_tunnel(t("example-website"), want, None);

    assert_tunnel(
        t("my_tunnel_name"),
        def("my_tunnel_name", Endpoint, Http, "80"),
        None,
    );
    assert_tunnel(
        t("basic"),
        def("basic", TunnelKind::Tunnel, Http, "80"),
        None,
    );
}

#[test]
fn load_merges_later_over_earlier() {
    let dir = TempDir::new();
    let v2 = dir.file("v2.yml", V2_EXAMPLE);
    let v3 = dir.file("v3.yml", V3_EXAMPLE);
    let file = load(&[v2, v3]).unwrap();
    assert_eq!(file.version, 3);
    // Set by both: the later wins.
    assert_eq!(file.console_ui, Some(ConsoleUi::IfTty));
    assert_eq!(file.inspect_db_size, Some(104_857_600));
    // Only in the earlier: kept.
    assert_eq!(file.region.as_deref(), Some("us"));
    // Same names replace in place; new names are appended.
    let names: Vec<(&str, TunnelKind)> = file
        .tunnels
        .iter()
        .map(|t| (t.name.as_str(), t.kind))
        .collect();
    use TunnelKind::*;
    assert_eq!(
        names,
        [
            ("httpbin", Endpoint),
            ("demo", Endpoint),
            ("myapp-http", Tunnel),
            ("mypp-https", Tunnel),
            ("website", Tunnel),
            ("e2etls", Tunnel),
            ("ssh-access", Tunnel),
            ("example-website", Endpoint),
            ("example-traffic-policy", Tunnel),
            ("example-load-balanced-edge", Tunnel),
            ("ssh", Endpoint),
            ("demo-2", Endpoint),
            ("foo", Endpoint),
            ("my_tunnel_name", Endpoint),
            ("basic", Tunnel),
        ]
    );
    assert_eq!(file.tunnel("httpbin").unwrap().addr, "8080");
    assert_eq!(
        file.tunnel("example-website").unwrap().hostname.as_deref(),
        Some("example-website.ngrok.app")
    );
}

#[test]
fn merge_overrides_settings_and_tunnels_by_name() {
    let mut base = parse(
            "a.yml",
            "authtoken: one\nregion: eu\nlog_level: debug\ntunnels:\n  a: {proto: http, addr: 1}\n  b: {proto: tcp, addr: 2}\n",
        )
        .unwrap();
    let later = parse(
            "b.yml",
            "version: 3\nagent:\n  authtoken: two\n  web_addr: false\ntunnels:\n  b: {proto: tls, addr: 3}\n  c: {proto: http, addr: 4}\n",
        )
        .unwrap();
    base.merge(later);
    assert_eq!(base.version, 3);
    assert_eq!(base.authtoken.as_deref(), Some("two"));
    assert_eq!(base.region.as_deref(), Some("eu"));
    assert_eq!(base.log_level.as_deref(), Some("debug"));
    assert_eq!(base.web_addr, Some(WebAddr::Disabled));
    let got: Vec<(&str, Proto, &str)> = base
        .tunnels
        .iter()
        .map(|t| (t.name.as_str(), t.proto, t.addr.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            ("a", Proto::Http, "1"),
            ("b", Proto::Tls, "3"),
            ("c", Proto::Http, "4")
        ]
    );
}

#[test]
fn load_of_nothing_and_of_a_missing_file() {
    assert_eq!(load(&[]).unwrap(), AgentFile::default());
    let dir = TempDir::new();
    let missing = dir.0.join("nope.yml");
    let e = load(std::slice::from_ref(&missing)).unwrap_err();
    assert!(e.is_not_found());
    assert_eq!(e.origin(), missing.display().to_string());
    assert!(
        e.to_string()
            .starts_with(&format!("{}: cannot read: ", missing.display())),
        "{e}"
    );
    // A parse error from load names the file.
    let bad = dir.file(
        "bad.yml",
        "tunnels:\n  web:\n    proto: htp\n    addr: 80\n",
    );
    let e = load(std::slice::from_ref(&bad)).unwrap_err();
    assert!(!e.is_not_found());
    assert_eq!(
        e.to_string(),
        format!(
            "{}:3: tunnels.web.proto: \"htp\" is not one of http, tcp, tls",
            bad.display()
        )
    );
}

// -------------------------------------------------- accepted forms

#[test]
fn version_forms() {
    assert_eq!(parse(ORIGIN, "").unwrap(), AgentFile::default());
    assert_eq!(
        parse(ORIGIN, "# nothing yet\n").unwrap(),
        AgentFile::default()
    );
    assert_eq!(parse(ORIGIN, "authtoken: x\n").unwrap().version, 2);
    assert_eq!(parse(ORIGIN, "version: 2\n").unwrap().version, 2);
    assert_eq!(parse(ORIGIN, "version: \"2\"\n").unwrap().version, 2);
    assert_eq!(parse(ORIGIN, "version: 3\n").unwrap().version, 3);
    assert_eq!(
        parse(ORIGIN, "version: '3'\nagent:\n  authtoken: x\n")
            .unwrap()
            .version,
        3
    );
}

#[test]
fn agent_setting_forms() {
    let file = parse(
        ORIGIN,
        "console_ui: false\nweb_addr: false\ninspect_db_size: 50MB\nlog: false\n",
    )
    .unwrap();
    assert_eq!(file.console_ui, Some(ConsoleUi::Off));
    assert_eq!(file.web_addr, Some(WebAddr::Disabled));
    assert_eq!(file.inspect_db_size, Some(50_000_000));
    assert_eq!(file.log.as_deref(), Some("false"));
    let file = parse(
        ORIGIN,
        "inspect_db_size: \"10MiB\"\nweb_addr: '[::1]:4040'\nauthtoken: ''\n",
    )
    .unwrap();
    assert_eq!(file.inspect_db_size, Some(10 * 1024 * 1024));
    assert_eq!(file.web_addr, Some(WebAddr::Addr("[::1]:4040".into())));
    assert_eq!(file.authtoken, None);
    let file = parse(
        ORIGIN,
        "version: 3\nagent:\n  connect_url: tls://gw.example.com\n  connect_cas: host\n",
    )
    .unwrap();
    assert_eq!(file.server_addr.as_deref(), Some("gw.example.com:443"));
    assert_eq!(file.root_cas.as_deref(), Some("host"));
    let file = parse(ORIGIN, "server_addr: gw.example.com:4443\n").unwrap();
    assert_eq!(file.server_addr.as_deref(), Some("gw.example.com:4443"));

    // Proxies: `false` is none; 2.x's keys still count, proxy_url first.
    let proxy = |text: &str| {
        parse(ORIGIN, text)
            .unwrap()
            .proxy_url
            .map(|p| p.to_string())
    };
    assert_eq!(proxy("proxy_url: false\nhttp_proxy: ''\n"), None);
    assert_eq!(
        proxy("http_proxy: http://u:p@proxy.corp:3128\n").as_deref(),
        Some("http://u:***@proxy.corp:3128")
    );
    assert_eq!(
        proxy("proxy_url: https://p.corp\nsocks5_proxy: socks5://s.corp\n").as_deref(),
        Some("https://p.corp:443")
    );
    assert_err(
        "version: 3\nagent:\n  proxy_url: gopher://p.corp\n",
        3,
        Some("agent.proxy_url"),
        &format!(
            "{ORIGIN}:3: agent.proxy_url: scheme \"gopher\" is not one of http, https, socks5"
        ),
    );
}

#[test]
fn tunnel_forms() {
    let text = r#"
tunnels:
  files:
    proto: http
    addr: file:///srv/www
    schemes: [http, https]
    cidr_allow: [10.0.0.0/8, 192.168.1.1]
    ip_restriction:
      deny_cidrs: ["10.1.0.0/16"]
    request_header:
      add: ["x-a: 1"]
      remove: [x-b]
    response_header: {add: ["x-c:2"]}
    circuit_breaker: 0.5
    compression: true
    websocket_tcp_converter: true
    proxy_proto: 2
    verify_webhook: {provider: slack, secret: s3cret}
    user_agent_filter: {allow: ["curl.*"], deny: [".*bot.*"]}
    pooling_enabled: true
    policy: '{"on_http_request": []}'
  remote:
    proto: http
    addr: https://localhost:8443
    schemes: [http]
  tls:
    proto: tls
    addr: localhost:9000
    mutual_tls_cas: ca.pem
    terminate_at: agent
"#;
    let file = parse(ORIGIN, text).unwrap();
    let t = &file.tunnels[0];
    assert_eq!(t.addr, "file:///srv/www");
    assert_eq!(t.bind_tls, BindTls::Both);
    assert_eq!(t.cidr_allow, ["10.0.0.0/8", "192.168.1.1"]);
    assert_eq!(t.cidr_deny, ["10.1.0.0/16"]);
    assert_eq!(
        t.request_header,
        HeaderRules {
            add: vec!["x-a: 1".into()],
            remove: vec!["x-b".into()]
        }
    );
    assert_eq!(
        t.response_header,
        HeaderRules {
            add: vec!["x-c:2".into()],
            remove: vec![]
        }
    );
    assert_eq!(t.circuit_breaker, Some(0.5));
    assert!(t.compression && t.websocket_tcp_converter && t.pooling_enabled);
    assert_eq!(t.proxy_proto, Some(2));
    assert_eq!(
        t.verify_webhook,
        Some(VerifyWebhook {
            provider: "slack".into(),
            secret: Some("s3cret".into())
        })
    );
    assert_eq!(t.user_agent_filter.allow, ["curl.*"]);
    assert_eq!(t.user_agent_filter.deny, [".*bot.*"]);
    assert_eq!(
        t.traffic_policy.as_deref().map(json),
        Some(json(r#"{"on_http_request": []}"#))
    );
    assert_eq!(file.tunnels[1].bind_tls, BindTls::False);
    assert_eq!(file.tunnels[1].addr, "https://localhost:8443");
    assert_eq!(file.tunnels[2].client_cas.as_deref(), Some("ca.pem"));
    assert_eq!(file.tunnels[2].terminate_at, Some(TerminateAt::Agent));
}

#[test]
fn endpoint_forms() {
    let text = r#"version: 3
endpoints:
  - name: plain-http
    url: http://
    upstream: {url: "localhost:8080", proxy_protocol: 1}
  - name: host-http
    url: HTTP://App.Example.com:80/
    pooling_enabled: true
    bindings: [internal]
    upstream: {url: "https://example.org", protocol: http2}
  - name: e2e
    url: tls://secure.example.com
    agent_tls_termination:
      server_certificate: cert.pem
      server_private_key: key.pem
      mutual_tls_certificate_authorities: [ca.pem]
    traffic_policy_file: policy.yml
    upstream: {url: 9000}
"#;
    let file = parse(ORIGIN, text).unwrap();
    let [plain, host, e2e] = &file.tunnels[..] else {
        panic!("{:?}", file.tunnels)
    };
    assert_eq!(
        (plain.proto, plain.bind_tls, plain.hostname.as_deref()),
        (Proto::Http, BindTls::False, None)
    );
    assert_eq!(
        (plain.addr.as_str(), plain.proxy_proto),
        ("localhost:8080", Some(1))
    );
    assert_eq!(host.bind_tls, BindTls::False);
    assert_eq!(host.hostname.as_deref(), Some("app.example.com"));
    assert_eq!(host.bindings, ["internal"]);
    assert_eq!(host.upstream_protocol, Some(UpstreamProtocol::Http2));
    assert!(host.pooling_enabled);
    assert_eq!(e2e.proto, Proto::Tls);
    assert_eq!(e2e.crt.as_deref(), Some("cert.pem"));
    assert_eq!(e2e.key.as_deref(), Some("key.pem"));
    assert_eq!(e2e.client_cas.as_deref(), Some("ca.pem"));
    assert_eq!(e2e.traffic_policy_file.as_deref(), Some("policy.yml"));
}

#[test]
fn endpoint_urls() {
    let ok = |url: &str, proto, bind_tls, hostname: Option<&str>, remote: Option<&str>| {
        let want = UrlParts {
            proto,
            bind_tls,
            hostname: hostname.map(str::to_string),
            remote_addr: remote.map(str::to_string),
        };
        assert_eq!(parse_endpoint_url(url), Ok(want), "{url}");
    };
    use BindTls::*;
    use Proto::*;
    ok("", Http, True, None, None);
    ok("https://", Http, True, None, None);
    ok("http://", Http, False, None, None);
    ok("tcp://", Tcp, True, None, None);
    ok("tls://", Tls, True, None, None);
    ok(
        "example.ngrok.app",
        Http,
        True,
        Some("example.ngrok.app"),
        None,
    );
    ok(
        "https://example.ngrok.app:443",
        Http,
        True,
        Some("example.ngrok.app"),
        None,
    );
    ok(
        "https://*.example.com",
        Http,
        True,
        Some("*.example.com"),
        None,
    );
    ok(
        "tcp://1.tcp.ngrok.io:12345",
        Tcp,
        True,
        None,
        Some("1.tcp.ngrok.io:12345"),
    );
    ok(
        "tls://myexample.ngrok.app",
        Tls,
        True,
        Some("myexample.ngrok.app"),
        None,
    );
    for bad in [
        "ftp://x",
        "https://x/path",
        "https://u:p@x",
        "tcp://host",
        "https://x:99999",
        "https://exa mple",
    ] {
        assert!(parse_endpoint_url(bad).is_err(), "{bad}");
    }
}

// --------------------------------------------------------- errors

#[test]
fn error_bad_proto_names_line_and_key() {
    let text = "version: \"2\"\nauthtoken: abc\ntunnels:\n  web:\n    addr: 80\n    # the protocol\n    proto: htp\n";
    assert_err(
            text,
            7,
            Some("tunnels.web.proto"),
            "/home/u/.config/gangway/gangway.yml:7: tunnels.web.proto: \"htp\" is not one of http, tcp, tls",
        );
}

#[test]
fn error_bad_web_addr() {
    assert_err(
        "version: 3\nagent:\n  web_addr: localhost\n",
        3,
        Some("agent.web_addr"),
        "/home/u/.config/gangway/gangway.yml:3: agent.web_addr: expected host:port or false",
    );
}

#[test]
fn error_missing_upstream_url_points_at_upstream() {
    let text = "version: 3
agent:
  authtoken: x
endpoints:
  - name: a
    upstream:
      url: 80
  - name: b
    url: https://b.example.com
    # no url below
    upstream:
      protocol: http2
";
    assert_err(
        text,
        11,
        Some("endpoints[1].upstream.url"),
        "/home/u/.config/gangway/gangway.yml:11: endpoints[1].upstream.url: missing",
    );
    // Without upstream at all: the endpoint's first line.
    let text = "version: 3\nendpoints:\n  - name: a\n    upstream: {url: 80}\n  - name: b\n    url: https://b.example.com\n";
    assert_err(
        text,
        5,
        Some("endpoints[1].upstream"),
        &format!("{ORIGIN}:5: endpoints[1].upstream: missing"),
    );
    let text = "version: 3\nendpoints:\n- url: https://b.example.com\n  upstream:\n    url: 80\n";
    assert_err(
        text,
        3,
        Some("endpoints[0].name"),
        &format!("{ORIGIN}:3: endpoints[0].name: missing"),
    );
}

#[test]
fn error_unknown_keys() {
    let text = "tunnels:\n  web:\n    prot: http\n    addr: 80\n";
    assert_err(
        text,
        3,
        Some("tunnels.web.prot"),
        &format!("{ORIGIN}:3: tunnels.web.prot: unknown key (did you mean `proto`?)"),
    );
    assert_err(
        "authtokn: x\n",
        1,
        Some("authtokn"),
        &format!("{ORIGIN}:1: authtokn: unknown key (did you mean `authtoken`?)"),
    );
    assert_err(
        "color: blue\n",
        1,
        Some("color"),
        &format!("{ORIGIN}:1: color: unknown key"),
    );
    assert_err(
        "version: 3\nauthtoken: x\n",
        2,
        Some("authtoken"),
        &format!(
            "{ORIGIN}:2: authtoken: unknown key (in a version 3 file it belongs under agent:)"
        ),
    );
    assert_err(
        "version: 3\nagent:\n  server_addr: x:1\n",
        3,
        Some("agent.server_addr"),
        &format!("{ORIGIN}:3: agent.server_addr: unknown key (version 3 calls it connect_url)"),
    );
    assert_err(
        "authtoken: x\nendpoints: []\n",
        2,
        Some("endpoints"),
        &format!("{ORIGIN}:2: endpoints: unknown key (only in version 3 files: add version: 3)"),
    );
    let text =
        "version: 3\nendpoints:\n  - name: a\n    upstream:\n      url: 80\n      protocl: http1\n";
    assert_err(
        text,
        6,
        Some("endpoints[0].upstream.protocl"),
        &format!(
            "{ORIGIN}:6: endpoints[0].upstream.protocl: unknown key (did you mean `protocol`?)"
        ),
    );
}

#[test]
fn error_syntax_has_the_line() {
    let e = err("version: 2\ntunnels:\n  web:\n    proto: http\n   addr: 80\n");
    assert_eq!(e.line(), Some(5), "{e}");
    assert_eq!(e.key(), None);
    assert!(matches!(e.kind(), ErrorKind::Syntax(_)));
    assert!(e.to_string().starts_with(&format!("{ORIGIN}:5: ")), "{e}");
    let e = err("tunnels:\n\tweb: {}\n");
    assert_eq!(e.line(), Some(2), "{e}");
    assert!(
        e.to_string()
            .ends_with("(tabs are not allowed for indentation)"),
        "{e}"
    );
    let e = err("a: [1, 2\nb: 3\n");
    assert!(matches!(e.kind(), ErrorKind::Syntax(_)), "{e}");
    assert!(e.line().is_some(), "{e}");
}

#[test]
fn error_wrong_types() {
    assert_err(
        "tunnels:\n  web:\n    proto: http\n    addr: 80\n    inspect: maybe\n",
        5,
        Some("tunnels.web.inspect"),
        &format!(
            "{ORIGIN}:5: tunnels.web.inspect: invalid type: string \"maybe\", expected a boolean"
        ),
    );
    assert_err(
            "tunnels:\n  web: 80\n",
            2,
            Some("tunnels.web"),
            &format!("{ORIGIN}:2: tunnels.web: invalid type: integer `80`, expected a tunnel definition (a mapping)"),
        );
    assert_err(
        "tunnels: {web: {proto: htp, addr: 80}}\n",
        1,
        Some("tunnels.web.proto"),
        &format!("{ORIGIN}:1: tunnels.web.proto: \"htp\" is not one of http, tcp, tls"),
    );
    assert_err(
        "- a\n- b\n",
        1,
        None,
        &format!("{ORIGIN}:1: expected a mapping of settings at the top level"),
    );
}

#[test]
fn error_missing_tunnel_keys() {
    assert_err(
        "tunnels:\n  web:\n    addr: 80\n",
        2,
        Some("tunnels.web.proto"),
        &format!("{ORIGIN}:2: tunnels.web.proto: missing"),
    );
    assert_err(
        "tunnels:\n  ok: {proto: tcp, addr: 22}\n  web:\n    proto: http\n",
        3,
        Some("tunnels.web.addr"),
        &format!("{ORIGIN}:3: tunnels.web.addr: missing"),
    );
    assert_err(
        "tunnels:\n  hook:\n    proto: http\n    addr: 80\n    verify_webhook:\n      secret: x\n",
        5,
        Some("tunnels.hook.verify_webhook.provider"),
        &format!("{ORIGIN}:5: tunnels.hook.verify_webhook.provider: missing"),
    );
}

#[test]
fn error_values() {
    let tunnel = |extra: &str| {
        format!("version: 2\ntunnels:\n  web:\n    proto: http\n    addr: 80\n{extra}")
    };
    let case = |extra: &str, line, key: &str, message: &str| {
        assert_err(
            &tunnel(extra),
            line,
            Some(key),
            &format!("{ORIGIN}:{line}: {key}: {message}"),
        );
    };
    case(
        "    bind_tls: sometimes\n",
        6,
        "tunnels.web.bind_tls",
        "\"sometimes\" is not one of true, false, both",
    );
    case(
        "    basic_auth:\n      - a:b\n      - nopassword\n",
        8,
        "tunnels.web.basic_auth[1]",
        "expected user:password",
    );
    case(
        "    auth: nocolon\n",
        6,
        "tunnels.web.auth",
        "expected user:password",
    );
    case(
        "    bind_tls: both\n    schemes: [http]\n",
        7,
        "tunnels.web.schemes",
        "set only one of bind_tls, schemes",
    );
    case(
        "    schemes: []\n",
        6,
        "tunnels.web.schemes",
        "must list http, https or both",
    );
    case(
        "    schemes: [ftp]\n",
        6,
        "tunnels.web.schemes[0]",
        "\"ftp\" is not one of http, https",
    );
    case(
        "    hostname: a.com\n    domain: b.com\n",
        7,
        "tunnels.web.domain",
        "set only one of hostname, domain",
    );
    case(
        "    crt: c.pem\n",
        6,
        "tunnels.web.crt",
        "needs key as well",
    );
    case(
        "    remote_addr: 1.tcp.example.com:1\n",
        6,
        "tunnels.web.remote_addr",
        "only valid for tcp tunnels",
    );
    case(
        "    oauth:\n      provider: google\n",
        6,
        "tunnels.web.oauth",
        "not supported by gangway",
    );
    case(
        "    circuit_breaker: 1.5\n",
        6,
        "tunnels.web.circuit_breaker",
        "1.5 is not a ratio between 0 and 1",
    );
    case(
        "    cidr_deny:\n      - 10.0.0.0/8\n      - 10.0.0/33\n",
        8,
        "tunnels.web.cidr_deny[1]",
        "\"10.0.0/33\" is not a CIDR",
    );
    case(
        "    labels: [env]\n",
        6,
        "tunnels.web.labels[0]",
        "\"env\" is not name=value",
    );
    case(
        "    proxy_proto: 3\n",
        6,
        "tunnels.web.proxy_proto",
        "\"3\" is not one of 1, 2",
    );
    case(
        "    request_header:\n      add: [novalue]\n",
        7,
        "tunnels.web.request_header.add[0]",
        "\"novalue\" is not name:value",
    );
    case(
        "    traffic_policy: {a: 1}\n    policy: {a: 1}\n",
        7,
        "tunnels.web.policy",
        "set only one of traffic_policy, policy",
    );
    case(
        "    traffic_policy: [1]\n",
        6,
        "tunnels.web.traffic_policy",
        "expected a traffic policy document (a mapping)",
    );

    assert_err(
        "tunnels:\n  web:\n    proto: tcp\n    addr: 99999\n",
        4,
        Some("tunnels.web.addr"),
        &format!("{ORIGIN}:4: tunnels.web.addr: 99999 is not a port (1-65535)"),
    );
    assert_err(
            "tunnels:\n  web:\n    proto: http\n    addr: gopher://x\n",
            4,
            Some("tunnels.web.addr"),
            &format!("{ORIGIN}:4: tunnels.web.addr: scheme \"gopher\" is not one of http, https, file, tcp, tls"),
        );
    assert_err(
        "tunnels:\n  web:\n    proto: tcp\n    addr: 22\n    subdomain: x\n",
        5,
        Some("tunnels.web.subdomain"),
        &format!("{ORIGIN}:5: tunnels.web.subdomain: not valid for tcp tunnels"),
    );
}

#[test]
fn error_agent_values() {
    assert_err(
        "version: 4\n",
        1,
        Some("version"),
        &format!("{ORIGIN}:1: version: 4 is not one of 2, 3"),
    );
    assert_err(
        "authtoken: x\nversion: \"v2\"\n",
        2,
        Some("version"),
        &format!("{ORIGIN}:2: version: \"v2\" is not one of 2, 3"),
    );
    // ngrok's special values: 0 is the default, -1 turns inspection off.
    assert_eq!(
        parse(ORIGIN, "inspect_db_size: 0\n")
            .unwrap()
            .inspect_db_size,
        None
    );
    assert_eq!(
        parse(ORIGIN, "version: 3\nagent:\n  inspect_db_size: -1\n")
            .unwrap()
            .inspect_db_size,
        Some(0)
    );
    assert_err(
        "version: 3\nagent:\n  inspect_db_size: -2\n",
        3,
        Some("agent.inspect_db_size"),
        &format!(
            "{ORIGIN}:3: agent.inspect_db_size: must be a number of bytes, 0 (the default) or -1 (inspection off)"
        ),
    );
    assert_err(
            "inspect_db_size: 50 parsecs\n",
            1,
            Some("inspect_db_size"),
            &format!("{ORIGIN}:1: inspect_db_size: \"50 parsecs\" is not a size like 50000000, \"50MB\" or \"10MiB\""),
        );
    assert_err(
        "log_level: verbose\n",
        1,
        Some("log_level"),
        &format!("{ORIGIN}:1: log_level: \"verbose\" is not one of crit, warn, error, info, debug"),
    );
    assert_err(
        "log_format: xml\n",
        1,
        Some("log_format"),
        &format!("{ORIGIN}:1: log_format: \"xml\" is not one of logfmt, json, term"),
    );
    assert_err(
        "console_ui: sometimes\n",
        1,
        Some("console_ui"),
        &format!("{ORIGIN}:1: console_ui: \"sometimes\" is not one of true, false, iftty"),
    );
    assert_err(
        "connect_timeout: 30\n",
        1,
        Some("connect_timeout"),
        &format!("{ORIGIN}:1: connect_timeout: \"30\" is not a duration like 10s, 1m30s or 500ms"),
    );
    assert_err(
        "dns_resolver_ips: [1.1.1.1, dns.google]\n",
        1,
        Some("dns_resolver_ips[1]"),
        &format!("{ORIGIN}:1: dns_resolver_ips[1]: \"dns.google\" is not an IP address"),
    );
    assert_err(
        "server_addr: 'a b:1'\n",
        1,
        Some("server_addr"),
        &format!("{ORIGIN}:1: server_addr: expected host:port"),
    );
    assert_err(
        "version: 3\nagent:\n  root_cas: trusted\n  connect_cas: host\n",
        4,
        Some("agent.connect_cas"),
        &format!("{ORIGIN}:4: agent.connect_cas: set only one of root_cas, connect_cas"),
    );
}

#[test]
fn error_names() {
    assert_err(
        "tunnels:\n  ok: {proto: http, addr: 80}\n  \"\":\n    proto: http\n    addr: 80\n",
        3,
        Some("tunnels"),
        &format!("{ORIGIN}:3: tunnels: a tunnel name must not be empty"),
    );
    let text = "version: 3
endpoints:
  - name: web
    upstream: {url: 80}
  - name: api
    upstream: {url: 81}
  - name: web
    upstream: {url: 82}
";
    assert_err(
        text,
        7,
        Some("endpoints[2].name"),
        &format!("{ORIGIN}:7: endpoints[2].name: \"web\" is already the name of endpoints[0]"),
    );
    let text = "version: 3\nendpoints:\n  - name: web\n    upstream: {url: 80}\ntunnels:\n  web: {proto: http, addr: 81}\n";
    assert_err(
        text,
        6,
        Some("tunnels.web"),
        &format!("{ORIGIN}:6: tunnels.web: \"web\" is already the name of endpoints[0]"),
    );
    let text = "version: 3\nendpoints:\n  - name: ''\n    upstream: {url: 80}\n";
    assert_err(
        text,
        3,
        Some("endpoints[0].name"),
        &format!("{ORIGIN}:3: endpoints[0].name: missing"),
    );
    // The same YAML key twice: the second one.
    let text = "tunnels:\n  web:\n    proto: http\n    addr: 80\n  api: {proto: http, addr: 81}\n  web:\n    proto: tcp\n    addr: 22\n";
    assert_err(
        text,
        6,
        Some("tunnels.web"),
        &format!("{ORIGIN}:6: tunnels.web: defined more than once"),
    );
    assert_err(
        "authtoken: a\nregion: us\nauthtoken: b\n",
        3,
        Some("authtoken"),
        &format!("{ORIGIN}:3: authtoken: defined more than once"),
    );
}

#[test]
fn error_endpoint_values() {
    let endpoint = |extra: &str| {
        format!("version: 3\nendpoints:\n  - name: web\n    upstream:\n      url: 80\n{extra}")
    };
    let case = |extra: &str, line, key: &str, message: &str| {
        assert_err(
            &endpoint(extra),
            line,
            Some(key),
            &format!("{ORIGIN}:{line}: {key}: {message}"),
        );
    };
    case(
        "    url: ftp://x\n",
        6,
        "endpoints[0].url",
        "scheme \"ftp\" is not one of http, https, tcp, tls",
    );
    case(
        "    url: tcp://host\n",
        6,
        "endpoints[0].url",
        "expected tcp://host:port",
    );
    case(
        "    bindings: [public, internal]\n",
        6,
        "endpoints[0].bindings",
        "at most one binding may be given",
    );
    case(
        "    bindings: [outside]\n",
        6,
        "endpoints[0].bindings[0]",
        "\"outside\" is not one of public, internal, kubernetes",
    );
    case(
            "    agent_tls_termination:\n      server_certificate: c.pem\n      server_private_key: k.pem\n",
            6,
            "endpoints[0].agent_tls_termination",
            "only valid for tls:// urls",
        );
    assert_err(
            "version: 3\nendpoints:\n  - name: web\n    upstream:\n      url: 80\n      protocol: http3\n",
            6,
            Some("endpoints[0].upstream.protocol"),
            &format!("{ORIGIN}:6: endpoints[0].upstream.protocol: \"http3\" is not one of http1, http2"),
        );
}

// ---------------------------------------------------- save_authtoken

#[test]
fn save_authtoken_creates_a_v3_file() {
    let dir = TempDir::new();
    let path = dir.0.join("config").join("gangway").join("gangway.yml");
    save_authtoken(&path, "tok_123").unwrap();
    let text = fs::read_to_string(&path).unwrap();
    assert_eq!(text, "version: \"3\"\nagent:\n  authtoken: tok_123\n");
    let file = parse("new", &text).unwrap();
    assert_eq!(
        (file.version, file.authtoken.as_deref()),
        (3, Some("tok_123"))
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
}

#[test]
fn save_authtoken_replaces_a_v2_token_keeping_comments() {
    let dir = TempDir::new();
    let before = "# my ngrok config
version: \"2\"
authtoken: oldtoken # the old one
# tunnels below
tunnels:
  web:
    proto: http # plain
    addr: 80
";
    let path = dir.file("ngrok.yml", before);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
    }
    save_authtoken(&path, "newtoken").unwrap();
    let after = fs::read_to_string(&path).unwrap();
    assert_eq!(
        after,
        before.replace("authtoken: oldtoken #", "authtoken: newtoken #")
    );
    let file = parse("after", &after).unwrap();
    assert_eq!(
        (file.version, file.authtoken.as_deref()),
        (2, Some("newtoken"))
    );
    assert_eq!(file.tunnels.len(), 1);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o640
        );
    }
}

#[test]
fn save_authtoken_inserts_under_v3_agent() {
    let dir = TempDir::new();
    let before = "version: \"3\"
# agent settings
agent:
    # where the UI listens
    web_addr: localhost:4040
endpoints:
  - name: web
    upstream:
      url: 80
";
    let path = dir.file("gangway.yml", before);
    save_authtoken(&path, "tok").unwrap();
    let after = fs::read_to_string(&path).unwrap();
    assert_eq!(
        after,
        before.replace("agent:\n", "agent:\n    authtoken: tok\n")
    );
    let file = parse("after", &after).unwrap();
    assert_eq!((file.version, file.authtoken.as_deref()), (3, Some("tok")));
    assert_eq!(file.web_addr, Some(WebAddr::Addr("localhost:4040".into())));
    assert_eq!(file.tunnels.len(), 1);

    // And replaces it the next time.
    save_authtoken(&path, "tok2").unwrap();
    let again = fs::read_to_string(&path).unwrap();
    assert_eq!(
        again,
        before.replace("agent:\n", "agent:\n    authtoken: tok2\n")
    );
}

#[test]
fn save_authtoken_other_shapes() {
    let dir = TempDir::new();
    let check = |before: &str, token: &str, want: &str| {
        let path = dir.file("c.yml", before);
        save_authtoken(&path, token).unwrap();
        let after = fs::read_to_string(&path).unwrap();
        assert_eq!(after, want, "from {before:?}");
        assert_eq!(
            parse("after", &after).unwrap().authtoken.as_deref(),
            Some(token.trim())
        );
    };
    // v3 without agent: after version.
    check(
        "version: 3\nendpoints: []\n",
        "t",
        "version: 3\nagent:\n  authtoken: t\nendpoints: []\n",
    );
    // v3 with an empty inline agent.
    check(
        "version: 3\nagent: {}\n",
        "t",
        "version: 3\nagent:\n  authtoken: t\n",
    );
    // v2 without authtoken: after version, or first.
    check(
        "version: 2\nregion: us\n",
        "t",
        "version: 2\nauthtoken: t\nregion: us\n",
    );
    check("# c\nregion: us", "t", "# c\nauthtoken: t\nregion: us");
    // Empty file, or comments only: a v3 document is appended.
    check("", "t", "version: \"3\"\nagent:\n  authtoken: t\n");
    check(
        "# soon\n",
        "t",
        "# soon\nversion: \"3\"\nagent:\n  authtoken: t\n",
    );
    // CRLF line endings are kept.
    check(
        "version: 3\r\nagent:\r\n  region: us\r\n",
        "t",
        "version: 3\r\nagent:\r\n  authtoken: t\r\n  region: us\r\n",
    );
    // A token YAML would read as a number is quoted.
    check("authtoken: x\n", "12345", "authtoken: \"12345\"\n");
    // A multi-line old value is replaced whole.
    check(
        "authtoken: >\n  old\n  value\nregion: us\n",
        "t",
        "authtoken: t\nregion: us\n",
    );
    // Surrounding whitespace is trimmed.
    check("authtoken: x\n", " tok \n", "authtoken: tok\n");
}

#[test]
fn save_authtoken_refuses_broken_files_and_tokens() {
    let dir = TempDir::new();
    let before = "tunnels:\n  web: [\n";
    let path = dir.file("bad.yml", before);
    let e = save_authtoken(&path, "t").unwrap_err();
    assert!(matches!(e.kind(), ErrorKind::Syntax(_)), "{e}");
    assert_eq!(fs::read_to_string(&path).unwrap(), before);

    let path = dir.file("flow.yml", "version: 3\nagent: {region: us}\n");
    let e = save_authtoken(&path, "t").unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "{}:2: agent: is written inline; set agent.authtoken by hand",
            path.display()
        )
    );

    let e = save_authtoken(&path, "two words").unwrap_err();
    assert_eq!(e.key(), Some("authtoken"));
    assert!(save_authtoken(&path, "  ").is_err());
}

// ------------------------------------------------------- internals

#[test]
fn locate_follows_block_indentation() {
    let text = "\
# comment
version: 3
agent:
  authtoken: x   # 4

  web_addr: y
endpoints:
- name: a        # 8
  upstream:
    url: 1
-   name: b      # 11
    upstream:
      url: 2     # 13
tunnels:
  web:
    proto: http  # 16
    schemes:
      - http
      - https    # 19
";
    let lines = content_lines(text);
    let at = |path: &[Seg]| locate(&lines, path);
    assert_eq!(at(&path!["version"]), Some(2));
    assert_eq!(at(&path!["agent", "web_addr"]), Some(6));
    assert_eq!(at(&path!["endpoints", 0]), Some(8));
    assert_eq!(at(&path!["endpoints", 1, "name"]), Some(11));
    assert_eq!(at(&path!["endpoints", 1, "upstream", "url"]), Some(13));
    assert_eq!(at(&path!["endpoints", 1, "upstream", "protocol"]), Some(12));
    assert_eq!(at(&path!["endpoints", 0, "upstream", "url"]), Some(10));
    assert_eq!(at(&path!["tunnels", "web", "schemes", 1]), Some(19));
    assert_eq!(at(&path!["tunnels", "api"]), Some(14));
    assert_eq!(at(&path!["nothing"]), None);
    // A key name inside a value is not a key.
    assert_eq!(at(&path!["agent", "x"]), Some(3));
}

#[test]
fn durations_and_sizes() {
    assert_eq!(parse_go_duration("10s"), Some(Duration::from_secs(10)));
    assert_eq!(parse_go_duration("1m30s"), Some(Duration::from_secs(90)));
    assert_eq!(parse_go_duration("1h"), Some(Duration::from_secs(3600)));
    assert_eq!(parse_go_duration("500ms"), Some(Duration::from_millis(500)));
    assert_eq!(parse_go_duration("1.5s"), Some(Duration::from_millis(1500)));
    assert_eq!(parse_go_duration("0"), Some(Duration::ZERO));
    for bad in ["", "10", "s", "-1s", "1d", "1.2.3s"] {
        assert_eq!(parse_go_duration(bad), None, "{bad}");
    }
    assert_eq!(parse_size("50000000"), Some(50_000_000));
    assert_eq!(parse_size("50MB"), Some(50_000_000));
    assert_eq!(parse_size("100mb"), Some(100_000_000));
    assert_eq!(parse_size("10MiB"), Some(10_485_760));
    assert_eq!(parse_size("1.5 GB"), Some(1_500_000_000));
    for bad in ["", "MB", "10 parsecs", "-5MB"] {
        assert_eq!(parse_size(bad), None, "{bad}");
    }
}

#[test]
fn addresses() {
    for ok in [
        "80",
        "localhost:8080",
        "192.168.1.1:8080",
        "[::1]:80",
        "example.org",
        "https://localhost:8443",
        "file:///srv",
        "https://",
    ] {
        assert_eq!(check_addr(ok), Ok(()), "{ok}");
    }
    for bad in ["", "0", "65536", "host:port", "a b", "gopher://x"] {
        assert!(check_addr(bad).is_err(), "{bad}");
    }
    assert_eq!(
        server_addr("tls://gw.example.com:4443/"),
        Ok("gw.example.com:4443".into())
    );
    assert_eq!(
        server_addr("gw.example.com"),
        Ok("gw.example.com:443".into())
    );
    assert!(server_addr("").is_err());
}

#[test]
fn default_path_prefers_the_environment() {
    let dir = PathBuf::from("/home/u/.config");
    assert_eq!(
        default_path_from(Some("/etc/gw.yml".into()), Some(dir.clone())),
        Some(PathBuf::from("/etc/gw.yml"))
    );
    assert_eq!(
        default_path_from(Some("".into()), Some(dir.clone())),
        Some(PathBuf::from("/home/u/.config/gangway/gangway.yml"))
    );
    assert_eq!(
        default_path_from(None, Some(dir)),
        Some(PathBuf::from("/home/u/.config/gangway/gangway.yml"))
    );
    assert_eq!(default_path_from(None, None), None);
}
