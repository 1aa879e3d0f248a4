//! TLS tunnels end to end: `gangway tls` passing the client's TLS through
//! to a local TLS service, or terminating it in the agent (`--crt/--key`);
//! the official SDK's `tls_endpoint()` both ways (passthrough, and
//! `termination()` at the edge); HTTPS and TLS endpoints sharing one port;
//! clear ends for clients without SNI or without TLS.

use std::time::Duration;

use crate::support::tls::{
    cert_for, client_trusting, local_tcp_server, local_tls_server, reverse_after_eof, TestCert,
};
use crate::support::{agent_fails, Agent, Server};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Connects to the edge's TLS port as `sni`, trusting `cert`; sends
/// `payload`, half-closes and returns the reply.
async fn tls_round_trip(server: &Server, sni: &str, cert: &TestCert, payload: &[u8]) -> Vec<u8> {
    let tcp = TcpStream::connect(server.https_addr())
        .await
        .expect("connect");
    let name = ServerName::try_from(sni.to_string()).expect("name");
    let mut tls = tokio::time::timeout(
        Duration::from_secs(10),
        client_trusting(cert).connect(name, tcp),
    )
    .await
    .expect("handshake in time")
    .unwrap_or_else(|e| panic!("TLS handshake as {sni}: {e}"));
    tls.write_all(payload).await.expect("write");
    tls.shutdown().await.expect("close_notify");
    let mut reply = Vec::new();
    tls.read_to_end(&mut reply).await.expect("read reply");
    reply
}

/// `tls://host:port` → host.
fn host_of(url: &str) -> &str {
    let rest = url.strip_prefix("tls://").expect("tls:// url");
    rest.rsplit_once(':').expect("port").0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gangway_tls_passes_the_clients_tls_through_to_the_local_service() {
    let server = Server::start().await;
    let cert = cert_for(&["db.example.test"]);
    let local = local_tls_server(&cert).await;
    let agent = Agent::spawn(
        "tls",
        server.data_dir(),
        &local.to_string(),
        &["--domain", "db.example.test"],
    )
    .await;
    assert_eq!(
        agent.url,
        format!("tls://db.example.test:{}", server.https_addr().port())
    );
    // The client validates the local service's own certificate: the edge
    // never terminated.
    let reply = tls_round_trip(&server, "db.example.test", &cert, b"through").await;
    assert_eq!(reply, b"local-tls:hguorht");

    // HTTPS endpoints keep working on the same port next to it.
    let app = crate::support::app::start().await;
    let web = Agent::http(&server, &app.to_string(), &[]).await;
    let body = server
        .client()
        .get(format!("{}/hello", web.url))
        .send()
        .await
        .expect("https request")
        .text()
        .await
        .expect("body");
    assert_eq!(body, "hello from the local app");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gangway_tls_with_crt_and_key_terminates_in_the_agent() {
    let server = Server::start().await;
    let host = "vault.gangway.localhost";
    let cert = cert_for(&[host]);
    let dir = tempfile::tempdir().expect("tempdir");
    let (crt, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    std::fs::write(&crt, &cert.cert_pem).expect("crt");
    std::fs::write(&key, &cert.key_pem).expect("key");
    let local = local_tcp_server().await;
    let agent = Agent::spawn(
        "tls",
        server.data_dir(),
        &local.to_string(),
        &[
            "--subdomain",
            "vault",
            "--crt",
            crt.to_str().expect("path"),
            "--key",
            key.to_str().expect("path"),
        ],
    )
    .await;
    assert_eq!(host_of(&agent.url), host);
    let reply = tls_round_trip(&server, host, &cert, b"secret").await;
    assert_eq!(
        reply, b"local-plain:terces",
        "the local service got plaintext"
    );

    // A key that does not match the certificate is refused before dialing.
    let other = cert_for(&["other.test"]);
    std::fs::write(&key, &other.key_pem).expect("key");
    let err = agent_fails(
        &server,
        &[
            "tls",
            "9",
            "--crt",
            crt.to_str().expect("path"),
            "--key",
            key.to_str().expect("path"),
        ],
    )
    .await;
    assert!(err.contains("does not match"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ngrok_sdk_tls_endpoint_passthrough_and_edge_termination() {
    use futures::TryStreamExt;
    use ngrok::config::ForwarderBuilder;
    use ngrok::prelude::*;

    let server = Server::start().await;
    let session = server.sdk_session().await;

    // Passthrough, forwarded by the SDK to a local TLS service.
    let cert = cert_for(&["sdk-raw.example.test"]);
    let local = local_tls_server(&cert).await;
    let to = reqwest::Url::parse(&format!("tls://{local}")).expect("url");
    let fwd = session
        .tls_endpoint()
        .domain("sdk-raw.example.test")
        .listen_and_forward(to)
        .await
        .expect("tls bind");
    assert_eq!(host_of(fwd.url()), "sdk-raw.example.test");
    let reply = tls_round_trip(&server, "sdk-raw.example.test", &cert, b"abc").await;
    assert_eq!(reply, b"local-tls:cba");

    // Termination at the edge with the SDK's certificate: the SDK's
    // connections carry plaintext.
    let host = "sdk-term.example.test";
    let term = cert_for(&[host]);
    let mut tunnel = session
        .tls_endpoint()
        .domain(host)
        .termination(
            term.cert_pem.clone().into_bytes().into(),
            term.key_pem.clone().into_bytes().into(),
        )
        .listen()
        .await
        .expect("tls bind with termination");
    let serve = tokio::spawn(async move {
        let conn = tunnel
            .try_next()
            .await
            .expect("accept")
            .expect("a connection");
        assert_eq!(conn.proto(), "tls");
        reverse_after_eof(conn, "sdk-plain").await;
    });
    let reply = tls_round_trip(&server, host, &term, b"xyz").await;
    assert_eq!(reply, b"sdk-plain:zyx");
    serve.await.expect("sdk side");

    // A certificate the edge cannot parse is refused with a clear code.
    let err = session
        .tls_endpoint()
        .domain("bad-term.example.test")
        .termination(b"not a pem".to_vec().into(), b"nor this".to_vec().into())
        .listen()
        .await
        .err()
        .expect("bind must fail");
    assert_eq!(err.error_code(), Some("ERR_NGROK_9034"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_sdk_session_serves_http_tcp_and_tls_endpoints_at_once() {
    use ngrok::config::ForwarderBuilder;
    use ngrok::tunnel::EndpointInfo;

    let server = Server::start().await;
    let session = server.sdk_session().await;
    let app = crate::support::app::start().await;
    let web = session
        .http_endpoint()
        .listen_and_forward(reqwest::Url::parse(&format!("http://{app}")).expect("url"))
        .await
        .expect("http bind");
    let plain = local_tcp_server().await;
    let tcp = session
        .tcp_endpoint()
        .listen_and_forward(reqwest::Url::parse(&format!("tcp://{plain}")).expect("url"))
        .await
        .expect("tcp bind");
    let cert = cert_for(&["multi.example.test"]);
    let local_tls = local_tls_server(&cert).await;
    let tls = session
        .tls_endpoint()
        .domain("multi.example.test")
        .listen_and_forward(reqwest::Url::parse(&format!("tls://{local_tls}")).expect("url"))
        .await
        .expect("tls bind");

    let body = server
        .client()
        .get(format!("{}/hello", web.url()))
        .send()
        .await
        .expect("http")
        .text()
        .await
        .expect("body");
    assert_eq!(body, "hello from the local app");

    let port: u16 = tcp
        .url()
        .rsplit(':')
        .next()
        .expect("port")
        .parse()
        .expect("port");
    let mut conn = TcpStream::connect(("127.0.0.1", port)).await.expect("tcp");
    conn.write_all(b"tcp").await.expect("write");
    conn.shutdown().await.expect("half-close");
    let mut reply = Vec::new();
    conn.read_to_end(&mut reply).await.expect("read");
    assert_eq!(reply, b"local-plain:pct");

    assert_eq!(host_of(tls.url()), "multi.example.test");
    let reply = tls_round_trip(&server, "multi.example.test", &cert, b"tls").await;
    assert_eq!(reply, b"local-tls:slt");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_without_sni_or_tls_get_a_clear_end_not_a_hang() {
    let server = Server::start().await;
    // No SNI (an IP address as the server name): a fatal alert at once.
    let tcp = TcpStream::connect(server.https_addr())
        .await
        .expect("connect");
    let cert = cert_for(&["unused.test"]);
    let ip = ServerName::IpAddress(std::net::IpAddr::from([127, 0, 0, 1]).into());
    let res = tokio::time::timeout(
        Duration::from_secs(5),
        client_trusting(&cert).connect(ip, tcp),
    )
    .await
    .expect("the edge answers instead of hanging");
    let err = res.expect_err("handshake must fail").to_string();
    assert!(
        err.contains("UnrecognisedName") || err.contains("unrecognized"),
        "{err}"
    );

    // Plain HTTP on the TLS port: told to use https.
    let mut tcp = TcpStream::connect(server.https_addr())
        .await
        .expect("connect");
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let mut reply = String::new();
    tokio::time::timeout(Duration::from_secs(5), tcp.read_to_string(&mut reply))
        .await
        .expect("closed in time")
        .expect("read");
    assert!(reply.starts_with("HTTP/1.1 400"), "{reply}");
    assert!(reply.contains("https://"), "{reply}");

    // Garbage: closed.
    let mut tcp = TcpStream::connect(server.https_addr())
        .await
        .expect("connect");
    tcp.write_all(&[0xff; 16]).await.expect("write");
    let mut rest = Vec::new();
    let n = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut rest))
        .await
        .expect("closed in time");
    assert!(n.is_ok_and(|n| n == 0) || rest.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_bound_for_https_cannot_also_be_a_tls_endpoint() {
    let server = Server::start().await;
    let app = crate::support::app::start().await;
    let web = Agent::http(
        &server,
        &app.to_string(),
        &["--domain", "shared.gangway.localhost"],
    )
    .await;
    let err = agent_fails(
        &server,
        &["tls", "9", "--domain", "shared.gangway.localhost"],
    )
    .await;
    assert!(err.contains("ERR_NGROK_334"), "{err}");
    let err = agent_fails(&server, &["tls", "9", "--domain", "bad..name"]).await;
    assert!(err.contains("ERR_NGROK_327"), "{err}");
    let err = agent_fails(&server, &["tls", "9", "--subdomain=-dash"]).await;
    assert!(err.contains("ERR_NGROK_328"), "{err}");
    // The HTTPS endpoint is untouched.
    let status = server
        .client()
        .get(format!("{}/hello", web.url))
        .send()
        .await
        .expect("request")
        .status();
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_traffic_policy_terminates_tls_with_its_certificate() {
    use futures::TryStreamExt;
    use ngrok::prelude::*;

    let server = Server::start().await;
    let session = server.sdk_session().await;
    let host = "policy-term.example.test";
    let term = cert_for(&[host]);
    let policy = serde_json::json!({"on_tcp_connect": [
        {"actions": [
            {"type": "terminate-tls", "config": {
                "server_certificate": term.cert_pem, "server_private_key": term.key_pem,
                "min_version": "1.2"}},
            {"type": "log", "config": {"metadata": {"terminated": true}}}
        ]}
    ]})
    .to_string();
    let mut tunnel = session
        .tls_endpoint()
        .domain(host)
        .traffic_policy(policy)
        .listen()
        .await
        .expect("tls bind with terminate-tls");
    let serve = tokio::spawn(async move {
        let conn = tunnel
            .try_next()
            .await
            .expect("accept")
            .expect("a connection");
        reverse_after_eof(conn, "policy-plain").await;
    });
    let reply = tls_round_trip(&server, host, &term, b"xyz").await;
    assert_eq!(reply, b"policy-plain:zyx");
    serve.await.expect("sdk side");

    // Refused with their paths: a conditional terminate-tls, a bad
    // certificate, terminate-tls on HTTP and TCP endpoints.
    let conditional = "on_tcp_connect:\n  - expressions: [\"conn.client_port > 0\"]\n    actions:\n      - type: terminate-tls\n";
    let err = session
        .tls_endpoint()
        .domain("cond-term.example.test")
        .traffic_policy(conditional)
        .listen()
        .await
        .err()
        .expect("refused");
    assert!(
        err.to_string()
            .contains("TrafficPolicy.on_tcp_connect[0].expressions"),
        "{err}"
    );
    let bad = "on_tcp_connect:\n  - actions:\n      - type: terminate-tls\n        config: { server_certificate: nope, server_private_key: nope }\n";
    let err = session
        .tls_endpoint()
        .domain("bad-policy-term.example.test")
        .traffic_policy(bad)
        .listen()
        .await
        .err()
        .expect("refused");
    assert_eq!(err.error_code(), Some("ERR_NGROK_9034"), "{err}");
    assert!(
        err.to_string()
            .contains("TrafficPolicy.on_tcp_connect[0].actions[0].config.server_certificate"),
        "{err}"
    );
    let plain = "on_tcp_connect:\n  - actions:\n      - type: terminate-tls\n";
    let err = session
        .http_endpoint()
        .traffic_policy(plain)
        .listen()
        .await
        .err()
        .expect("refused");
    assert!(
        err.to_string()
            .contains("TrafficPolicy.on_tcp_connect[0].actions[0]"),
        "{err}"
    );
    let err = session
        .tcp_endpoint()
        .traffic_policy(plain)
        .listen()
        .await
        .err()
        .expect("refused");
    assert!(err.to_string().contains("TLS"), "{err}");
}
