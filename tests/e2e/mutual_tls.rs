//! Mutual TLS and the minimum TLS version, per hostname, on the public TLS
//! port: an API HTTPS edge's `mutual_tls` and `tls_termination.min_version`,
//! and the SDK's `mutual_tlsca(...)` on HTTPS and TLS endpoints. A client
//! without a certificate, or with one from another CA, is refused in the
//! handshake; a good certificate is served and its serial and CN reach the
//! request event.

use std::sync::Arc;

use crate::support::tls::{client_identity, provider, reverse_after_eof, TestCa};
use crate::support::{events, eventually, id, Server, DEADLINE};
use ngrok::config::ForwarderBuilder;
use ngrok::prelude::*;
use rustls::pki_types::ServerName;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

/// How the test client shows up.
#[derive(Clone, Default)]
struct ClientTls {
    /// (certificate PEM, key PEM) to present, if any.
    cert: Option<(String, String)>,
    tls12_only: bool,
    /// Trusted besides the edge's dev CA.
    extra_root: Option<rustls::pki_types::CertificateDer<'static>>,
}

impl ClientTls {
    fn anonymous() -> Self {
        ClientTls::default()
    }

    fn with(cert: &(String, String)) -> Self {
        ClientTls {
            cert: Some(cert.clone()),
            ..ClientTls::default()
        }
    }

    fn trusting(mut self, ca: &TestCa) -> Self {
        self.extra_root = Some(ca.der.clone());
        self
    }

    fn config(&self, server: &Server) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        for c in rustls_pemfile::certs(&mut &server.ca_pem()[..]) {
            roots.add(c.expect("pem")).expect("root");
        }
        if let Some(extra) = &self.extra_root {
            roots.add(extra.clone()).expect("extra root");
        }
        let versions: &[&rustls::SupportedProtocolVersion] = if self.tls12_only {
            &[&rustls::version::TLS12]
        } else {
            rustls::DEFAULT_VERSIONS
        };
        let b = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(versions)
            .expect("versions")
            .with_root_certificates(roots);
        let cfg = match &self.cert {
            None => b.with_no_client_auth(),
            Some((cert, key)) => {
                let (chain, key) = client_identity(cert, key);
                b.with_client_auth_cert(chain, key).expect("client auth")
            }
        };
        Arc::new(cfg)
    }
}

/// Connects to the TLS port as `sni`, sends `payload` and returns all the
/// bytes that came back, or the error (a refused handshake shows up here,
/// as TLS 1.3 reports a client-certificate failure after the client's
/// Finished). `half_close` sends close_notify after the payload, for
/// services that answer at EOF.
async fn exchange(
    server: &Server,
    sni: &str,
    tls: &ClientTls,
    payload: &[u8],
    half_close: bool,
) -> Result<Vec<u8>, String> {
    let tcp = TcpStream::connect(server.https_addr())
        .await
        .map_err(|e| e.to_string())?;
    let name = ServerName::try_from(sni.to_string()).expect("name");
    let connector = tokio_rustls::TlsConnector::from(tls.config(server));
    let run = async {
        let mut s = connector.connect(name, tcp).await?;
        s.write_all(payload).await?;
        if half_close {
            s.shutdown().await?;
        } else {
            s.flush().await?;
        }
        let mut out = Vec::new();
        s.read_to_end(&mut out).await?;
        Ok::<_, std::io::Error>(out)
    };
    match timeout(DEADLINE, run).await {
        Ok(Ok(out)) if out.is_empty() => Err("closed without a reply".into()),
        Ok(Ok(out)) => Ok(out),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("timed out".into()),
    }
}

/// GET `path` with `Host: host` over a connection made for `sni`.
async fn get_via(
    server: &Server,
    sni: &str,
    host: &str,
    path: &str,
    tls: &ClientTls,
) -> Result<String, String> {
    let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    exchange(server, sni, tls, req.as_bytes(), false)
        .await
        .map(|b| String::from_utf8_lossy(&b).into_owned())
}

async fn get(server: &Server, host: &str, tls: &ClientTls) -> Result<String, String> {
    get_via(server, host, host, "/hello", tls).await
}

fn served(reply: &Result<String, String>) -> bool {
    reply
        .as_ref()
        .is_ok_and(|r| r.starts_with("HTTP/1.1 200") && r.ends_with("hello from the local app"))
}

/// Waits until a client configured as `tls` gets `want` (served or not).
async fn until(server: &Server, host: &str, tls: &ClientTls, want: bool, what: &str) {
    eventually(what, || async {
        (served(&get(server, host, tls).await) == want).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_edge_mutual_tls_and_min_version() {
    let dir = tempfile::tempdir().expect("tempdir");
    let events_file = dir.path().join("events.jsonl");
    let server = Server::start_with(&["--events", events_file.to_str().expect("path")]).await;
    let app = crate::support::app::start().await;
    let api = server.api();
    let port = server.https_addr().port();
    let host = format!("secure.{}", server.info.base_domain);

    let ca = TestCa::new("Gangway Test Client CA");
    let other_ca = TestCa::new("Someone Else's CA");
    let alice = ca.client_leaf("alice", &[0x1a, 0x2b, 0x3c]);
    let mallory = other_ca.client_leaf("mallory", &[0x66]);
    let stored_ca = api
        .create("/certificate_authorities", json!({"ca_pem": ca.cert_pem}))
        .await;
    let group = api
        .create(
            "/backends/tunnel_group",
            json!({"labels": {"app": "secure"}}),
        )
        .await;
    let edge = api
        .create(
            "/edges/https",
            json!({
                "hostports": [format!("{host}:{port}")],
                "mutual_tls": {"certificate_authority_ids": [id(&stored_ca)]},
            }),
        )
        .await;
    let edge_id = id(&edge);
    api.create(
        &format!("/edges/https/{edge_id}/routes"),
        json!({"match_type": "path_prefix", "match": "/", "backend": {"backend_id": id(&group)}}),
    )
    .await;
    let session = server.sdk_session().await;
    let mut b = session.labeled_tunnel();
    b.label("app", "secure");
    let to = reqwest::Url::parse(&format!("http://{app}")).expect("url");
    let _tunnel = timeout(DEADLINE, b.listen_and_forward(to))
        .await
        .expect("bind timed out")
        .expect("bind");

    // A certificate from the edge's CA is served.
    until(
        &server,
        &host,
        &ClientTls::with(&alice),
        true,
        "alice served",
    )
    .await;
    // No certificate, or one from another CA: the handshake is refused.
    let none = get(&server, &host, &ClientTls::anonymous()).await;
    assert!(
        none.as_ref()
            .is_err_and(|e| e.contains("CertificateRequired")),
        "no certificate must be refused in the handshake: {none:?}"
    );
    let other = get(&server, &host, &ClientTls::with(&mallory)).await;
    assert!(
        other.as_ref().is_err_and(|e| e.contains("alert")),
        "another CA's certificate must be refused: {other:?}"
    );

    // The event names the certificate.
    let ev = eventually("event with the client certificate", || {
        let found = events(&events_file)
            .into_iter()
            .find(|e| e["object"]["conn"]["server_name"] == host.as_str());
        async move { found }
    })
    .await;
    let cert = &ev["object"]["tls"]["client_cert"];
    assert_eq!(cert["serial_number"], "1a2b3c", "{ev}");
    assert_eq!(cert["subject"]["cn"], "alice", "{ev}");

    // A connection made for another name cannot carry requests for this
    // one (HTTP/2 reuse would otherwise skip the certificate check).
    let plain = format!("plain.{}", server.info.base_domain);
    let misdirected = get_via(&server, &plain, &host, "/hello", &ClientTls::anonymous())
        .await
        .expect("a reply");
    assert!(misdirected.starts_with("HTTP/1.1 421"), "{misdirected}");
    assert!(misdirected.contains("ERR_NGROK_9048"), "{misdirected}");

    // min_version 1.3: a TLS 1.2 client is refused, TLS 1.3 still served.
    let (s, v) = api
        .put(
            &format!("/edges/https/{edge_id}/tls_termination"),
            json!({"min_version": "1.3"}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let alice12 = ClientTls {
        tls12_only: true,
        ..ClientTls::with(&alice)
    };
    until(&server, &host, &alice12, false, "TLS 1.2 refused").await;
    let refused = get(&server, &host, &alice12).await;
    assert!(refused.is_err(), "{refused:?}");
    assert!(served(&get(&server, &host, &ClientTls::with(&alice)).await));

    // Removing mutual TLS opens the edge to clients without certificates.
    assert_eq!(
        api.delete(&format!("/edges/https/{edge_id}/mutual_tls"))
            .await,
        204
    );
    until(
        &server,
        &host,
        &ClientTls::anonymous(),
        true,
        "mutual TLS off",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_mutual_tls_on_https_and_tls_endpoints() {
    let server = Server::start().await;
    let session = server.sdk_session().await;
    let app = crate::support::app::start().await;
    let ca = TestCa::new("SDK Client CA");
    let other_ca = TestCa::new("Other CA");
    let good = ca.client_leaf("svc-a", &[7]);
    let bad = other_ca.client_leaf("svc-b", &[8]);

    // HTTPS endpoint with MutualTLSCA.
    let host = format!("mtls-sdk.{}", server.info.base_domain);
    let to = reqwest::Url::parse(&format!("http://{app}")).expect("url");
    let _http = session
        .http_endpoint()
        .domain(host.clone())
        .mutual_tlsca(ca.cert_pem.clone().into_bytes().into())
        .listen_and_forward(to)
        .await
        .expect("http bind with mutual TLS");
    until(
        &server,
        &host,
        &ClientTls::with(&good),
        true,
        "good cert served",
    )
    .await;
    assert!(get(&server, &host, &ClientTls::anonymous()).await.is_err());
    assert!(get(&server, &host, &ClientTls::with(&bad)).await.is_err());

    // TLS endpoint terminated at the edge with the SDK's certificate, and
    // client certificates checked there too.
    let tls_host = format!("mtls-raw.{}", server.info.base_domain);
    // The endpoint's own server certificate comes from the test CA.
    let (srv_cert, srv_key) = ca.leaf(&[&tls_host]);
    let mut tunnel = session
        .tls_endpoint()
        .domain(tls_host.clone())
        .termination(srv_cert.into_bytes().into(), srv_key.into_bytes().into())
        .mutual_tlsca(ca.cert_pem.clone().into_bytes().into())
        .listen()
        .await
        .expect("tls bind with mutual TLS");
    tokio::spawn(async move {
        use futures::TryStreamExt;
        while let Ok(Some(conn)) = tunnel.try_next().await {
            tokio::spawn(reverse_after_eof(conn, "plain"));
        }
    });
    let reply = eventually("TLS endpoint serves", || async {
        exchange(
            &server,
            &tls_host,
            &ClientTls::with(&good).trusting(&ca),
            b"abc",
            true,
        )
        .await
        .ok()
    })
    .await;
    assert_eq!(reply, b"plain:cba");
    for refused in [ClientTls::anonymous(), ClientTls::with(&bad)] {
        let r = exchange(&server, &tls_host, &refused.trusting(&ca), b"abc", true).await;
        assert!(r.is_err(), "{r:?}");
    }

    // Mutual TLS needs the edge to terminate; a bad bundle is refused.
    let err = session
        .tls_endpoint()
        .domain(format!("mtls-pass.{}", server.info.base_domain))
        .mutual_tlsca(ca.cert_pem.clone().into_bytes().into())
        .listen()
        .await
        .err()
        .expect("passthrough with mutual TLS must be refused");
    assert_eq!(err.error_code(), Some("ERR_NGROK_9034"), "{err}");
    assert!(err.to_string().contains("TLSTermination"), "{err}");
    let err = session
        .http_endpoint()
        .domain(format!("mtls-bad.{}", server.info.base_domain))
        .mutual_tlsca(b"not a certificate".to_vec().into())
        .listen()
        .await
        .err()
        .expect("a bad CA bundle must be refused");
    assert_eq!(err.error_code(), Some("ERR_NGROK_9034"), "{err}");
    assert!(err.to_string().contains("MutualTLSCA"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_cli_mutual_tls_cas_flag() {
    let server = Server::start().await;
    let app = crate::support::app::start().await;
    let ca = TestCa::new("CLI Client CA");
    let dir = tempfile::tempdir().expect("tempdir");
    let ca_file = dir.path().join("clients-ca.pem");
    std::fs::write(&ca_file, &ca.cert_pem).expect("write ca");
    let agent = crate::support::Agent::http(
        &server,
        &app.to_string(),
        &["--mutual-tls-cas", ca_file.to_str().expect("path")],
    )
    .await;
    let host = agent.host();
    let good = ca.client_leaf("cli-client", &[9]);
    until(
        &server,
        &host,
        &ClientTls::with(&good),
        true,
        "cli endpoint serves",
    )
    .await;
    assert!(get(&server, &host, &ClientTls::anonymous()).await.is_err());

    // A file that is not there is the agent's own error, before dialing.
    let err = crate::support::agent_fails(
        &server,
        &["http", "80", "--mutual-tls-cas", "/nonexistent/ca.pem"],
    )
    .await;
    assert!(err.contains("/nonexistent/ca.pem"), "{err}");
}
