//! TCP and TLS edges, certificate authorities and TLS certificates through
//! the REST API, served by the running edge: official-SDK labeled tunnels
//! behind a TCP edge on a reserved address and a TLS edge (passthrough,
//! then terminated at the edge), modules toggled live; uploaded
//! certificates served by SNI for a reserved custom domain.

use std::net::SocketAddr;
use std::time::Duration;

use crate::support::tls::{
    cert_for, client_trusting, local_tcp_server, local_tls_server, TestCa, TestCert,
};
use crate::support::{eventually, id, Server, DEADLINE};
use ngrok::config::ForwarderBuilder;
use ngrok::prelude::*;
use rustls::pki_types::ServerName;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

async fn labeled_to(
    session: &ngrok::Session,
    label: &str,
    upstream: SocketAddr,
) -> ngrok::forwarder::Forwarder<ngrok::tunnel::LabeledTunnel> {
    let mut b = session.labeled_tunnel();
    b.label("edge", label);
    let to = reqwest::Url::parse(&format!("tcp://{upstream}")).expect("url");
    timeout(DEADLINE, b.listen_and_forward(to))
        .await
        .expect("labeled bind timed out")
        .expect("labeled bind")
}

/// Sends `payload` on a plain TCP connection, half-closes, returns the
/// reply (empty when the edge closed the connection).
async fn tcp_round_trip(addr: SocketAddr, payload: &[u8]) -> Vec<u8> {
    let Ok(mut tcp) = TcpStream::connect(addr).await else {
        return b"<refused>".to_vec();
    };
    let mut reply = Vec::new();
    let io = async {
        tcp.write_all(payload).await?;
        tcp.shutdown().await?;
        tcp.read_to_end(&mut reply).await
    };
    let _ = timeout(Duration::from_secs(10), io).await;
    reply
}

/// A TLS round trip to the edge's TLS port as `sni`, trusting `roots`;
/// `None` when the handshake fails.
async fn tls_try(
    server: &Server,
    sni: &str,
    connector: tokio_rustls::TlsConnector,
    payload: &[u8],
) -> Option<Vec<u8>> {
    let tcp = TcpStream::connect(server.https_addr()).await.ok()?;
    let name = ServerName::try_from(sni.to_string()).ok()?;
    let mut tls = timeout(Duration::from_secs(10), connector.connect(name, tcp))
        .await
        .ok()?
        .ok()?;
    tls.write_all(payload).await.ok()?;
    tls.shutdown().await.ok()?;
    let mut reply = Vec::new();
    timeout(Duration::from_secs(10), tls.read_to_end(&mut reply))
        .await
        .ok()?
        .ok()?;
    Some(reply)
}

#[tokio::test]
async fn tcp_and_tls_edges_serve_labeled_tunnels_and_change_live() {
    let server = Server::start().await;
    let api = server.api();
    let plain = local_tcp_server().await;
    let base = server.info.base_domain.clone();
    let tls_name = format!("raw.{base}");
    let app_cert: TestCert = cert_for(&[&tls_name]);
    let tls_app = local_tls_server(&app_cert).await;

    let tcp_group = api
        .create("/backends/tunnel_group", json!({"labels": {"edge": "tcp"}}))
        .await;
    let tls_group = api
        .create("/backends/tunnel_group", json!({"labels": {"edge": "tls"}}))
        .await;
    let addr = api.create("/reserved_addrs", json!({})).await;
    let addr_s = addr["addr"].as_str().expect("addr").to_string();
    let port: u16 = addr_s
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse().ok())
        .expect("port");
    let public = SocketAddr::from(([127, 0, 0, 1], port));

    // A TCP edge needs a reserved address, and says so with a field.
    let (status, err) = api
        .post(
            "/edges/tcp",
            json!({"hostports": [format!("{}:1", server.info.tcp_host)]}),
        )
        .await;
    assert_eq!(status, 400, "{err}");
    assert_eq!(err["details"]["field"], "hostports[0]");
    let (status, err) = api
        .post("/edges/tcp", json!({"hostports": ["db.example.com:5432"]}))
        .await;
    assert_eq!(
        (status, err["error_code"].as_str()),
        (400, Some("ERR_NGROK_7120"))
    );
    let (status, err) = api
        .post(
            "/edges/tcp",
            json!({"mutual_tls": {"certificate_authority_ids": []}}),
        )
        .await;
    assert_eq!(
        (status, err["details"]["field"].as_str()),
        (400, Some("mutual_tls"))
    );

    let tcp_edge = api
        .create(
            "/edges/tcp",
            json!({
                "description": "db",
                "hostports": [addr_s],
                "backend": {"backend_id": id(&tcp_group)},
            }),
        )
        .await;
    assert_eq!(tcp_edge["hostports"], json!([addr_s]));
    assert_eq!(tcp_edge["backend"]["backend"]["id"], id(&tcp_group));
    assert_eq!(tcp_edge["ip_restriction"], Value::Null);
    let tcp_path = format!("/edges/tcp/{}", id(&tcp_edge));
    // The address is the edge's now: a second edge cannot take it.
    let (status, _) = api.post("/edges/tcp", json!({"hostports": [addr_s]})).await;
    assert_eq!(status, 409);

    let session = server.sdk_session().await;
    let _tcp_tunnel = labeled_to(&session, "tcp", plain).await;
    eventually("TCP edge serves the labeled tunnel", || async {
        (tcp_round_trip(public, b"ping").await == b"local-plain:gnip").then_some(())
    })
    .await;

    // An agent cannot bind the edge's address for itself.
    let err = session
        .tcp_endpoint()
        .remote_addr(addr_s.clone())
        .listen()
        .await
        .err()
        .expect("bind of an edge's address refused");
    assert_eq!(
        err.error_code().map(|c| c.to_string()).as_deref(),
        Some("ERR_NGROK_334"),
        "{err}"
    );

    // ip_restriction: a policy denying loopback closes the connection.
    let policy = api.create("/ip_policies", json!({})).await;
    for (cidr, action) in [("0.0.0.0/0", "allow"), ("127.0.0.0/8", "deny")] {
        api.create(
            "/ip_policy_rules",
            json!({"ip_policy_id": id(&policy), "cidr": cidr, "action": action}),
        )
        .await;
    }
    let (status, m) = api
        .put(
            &format!("{tcp_path}/ip_restriction"),
            json!({"enabled": true, "ip_policy_ids": [id(&policy)]}),
        )
        .await;
    assert_eq!(status, 200, "{m}");
    assert_eq!(m["ip_policies"][0]["id"], id(&policy));
    eventually("blocked client is closed on", || async {
        tcp_round_trip(public, b"ping")
            .await
            .is_empty()
            .then_some(())
    })
    .await;
    // The policy cannot go while the edge uses it.
    let status = api.delete(&format!("/ip_policies/{}", id(&policy))).await;
    assert_eq!(status, 409);
    assert_eq!(api.delete(&format!("{tcp_path}/ip_restriction")).await, 204);
    eventually("restriction lifted", || async {
        (tcp_round_trip(public, b"ping").await == b"local-plain:gnip").then_some(())
    })
    .await;

    // The edge's Traffic Policy runs on_tcp_connect; HTTP phases are
    // refused with their path.
    let (status, err) = api
        .put(
            &format!("{tcp_path}/traffic_policy"),
            json!({"enabled": true, "value": "{\"on_http_request\": [{\"actions\": [{\"type\": \"deny\"}]}]}"}),
        )
        .await;
    assert_eq!(
        (status, err["details"]["field"].as_str()),
        (400, Some("traffic_policy.value.on_http_request")),
        "{err}"
    );
    let (status, _) = api
        .put(
            &format!("{tcp_path}/traffic_policy"),
            json!({"enabled": true, "value": "{\"on_tcp_connect\": [{\"actions\": [{\"type\": \"deny\"}]}]}"}),
        )
        .await;
    assert_eq!(status, 200);
    eventually("the edge's traffic policy closes connections", || async {
        tcp_round_trip(public, b"ping")
            .await
            .is_empty()
            .then_some(())
    })
    .await;
    let (status, got) = api.get(&format!("{tcp_path}/traffic_policy")).await;
    assert_eq!((status, got["enabled"].as_bool()), (200, Some(true)));
    assert_eq!(api.delete(&format!("{tcp_path}/traffic_policy")).await, 204);
    let (status, _) = api.get(&format!("{tcp_path}/traffic_policy")).await;
    assert_eq!(status, 404);

    // TLS edge: the client's TLS passes through to the app's certificate.
    let tls_edge = api
        .create(
            "/edges/tls",
            json!({
                "hostports": [format!("{tls_name}:443")],
                "backend": {"backend_id": id(&tls_group)},
            }),
        )
        .await;
    let tls_path = format!("/edges/tls/{}", id(&tls_edge));
    let _tls_tunnel = labeled_to(&session, "tls", tls_app).await;
    eventually("TLS edge passes TLS through", || async {
        let reply = tls_try(&server, &tls_name, client_trusting(&app_cert), b"hello").await?;
        (reply == b"local-tls:olleh").then_some(())
    })
    .await;
    // Its name is the edge's: no agent, and no HTTPS edge, may take it.
    let (status, _) = api
        .post(
            "/edges/https",
            json!({"hostports": [format!("{tls_name}:443")]}),
        )
        .await;
    assert_eq!(status, 409);

    // Terminated at the edge (with the edge's certificate for the name),
    // the app behind gets plaintext.
    let (status, t) = api
        .put(
            &format!("{tls_path}/tls_termination"),
            json!({"enabled": true, "terminate_at": "edge", "min_version": "1.2"}),
        )
        .await;
    assert_eq!(status, 200, "{t}");
    assert_eq!(t["terminate_at"], "edge");
    let (status, _) = api
        .put(
            &format!("{tls_path}/backend"),
            json!({"enabled": true, "backend_id": id(&tcp_group)}),
        )
        .await;
    assert_eq!(status, 200);
    let edge_client = tokio_rustls::TlsConnector::from(server.rustls_config(&[]));
    eventually("TLS edge terminates", || async {
        let reply = tls_try(&server, &tls_name, edge_client.clone(), b"hello").await?;
        (reply == b"local-plain:olleh").then_some(())
    })
    .await;
    // Where the edge terminates it can also require a client certificate.
    let clients = TestCa::new("TLS edge clients");
    let stored = api
        .create(
            "/certificate_authorities",
            json!({"ca_pem": clients.cert_pem}),
        )
        .await;
    let (status, m) = api
        .put(
            &format!("{tls_path}/mutual_tls"),
            json!({"certificate_authority_ids": [id(&stored)]}),
        )
        .await;
    assert_eq!(status, 200, "{m}");
    eventually("a client without a certificate is refused", || async {
        tls_try(&server, &tls_name, edge_client.clone(), b"hello")
            .await
            .is_none()
            .then_some(())
    })
    .await;
    let (cert, key) = clients.client_leaf("edge-client", &[5]);
    let with_cert =
        tokio_rustls::TlsConnector::from(server.rustls_config_with_client_cert(&cert, &key));
    let reply = tls_try(&server, &tls_name, with_cert, b"hello").await;
    assert_eq!(reply.as_deref(), Some(&b"local-plain:olleh"[..]));
    assert_eq!(api.delete(&format!("{tls_path}/mutual_tls")).await, 204);
    eventually("mutual TLS lifted", || async {
        let reply = tls_try(&server, &tls_name, edge_client.clone(), b"hello").await?;
        (reply == b"local-plain:olleh").then_some(())
    })
    .await;
    let (status, err) = api
        .put(
            &format!("{tls_path}/tls_termination"),
            json!({"terminate_at": "upstream", "min_version": "1.2"}),
        )
        .await;
    assert_eq!(
        (status, err["details"]["field"].as_str()),
        (400, Some("tls_termination.min_version"))
    );

    // The tunnel group cannot go while edges use it; deleting the edges
    // stops the service and frees the names.
    assert_eq!(
        api.delete(&format!("/backends/tunnel_group/{}", id(&tcp_group)))
            .await,
        409
    );
    assert_eq!(api.delete(&tcp_path).await, 204);
    assert_eq!(api.delete(&tls_path).await, 204);
    eventually("edges gone", || async {
        let tcp_gone = tcp_round_trip(public, b"ping").await != b"local-plain:gnip";
        // The name falls back to the edge's own HTTPS service.
        let tls_gone = tls_try(&server, &tls_name, edge_client.clone(), b"x").await
            != Some(b"local-plain:x".to_vec());
        (tcp_gone && tls_gone).then_some(())
    })
    .await;
    let (_, list) = api.get("/edges/tcp").await;
    assert_eq!(list["tcp_edges"], json!([]));
    assert_eq!(
        api.delete(&format!("/reserved_addrs/{}", id(&addr))).await,
        204
    );
}

#[tokio::test]
async fn uploaded_certificates_are_parsed_checked_and_served_by_sni() {
    let server = Server::start().await;
    let api = server.api();
    let ca = TestCa::new("Gangway Test Root");

    // Certificate authorities: parsed, and only CAs accepted.
    let rec = api
        .create(
            "/certificate_authorities",
            json!({"ca_pem": ca.cert_pem, "description": "test root"}),
        )
        .await;
    assert!(id(&rec).starts_with("ca_"));
    assert_eq!(rec["subject_common_name"], "Gangway Test Root");
    assert_eq!(rec["ca_pem"], ca.cert_pem);
    assert!(
        rec["key_usages"]
            .as_array()
            .is_some_and(|k| k.contains(&json!("cert_sign"))),
        "{rec}"
    );
    assert!(rec["not_before"].as_str().is_some_and(|t| t.ends_with('Z')));
    let (shop_cert, shop_key) = ca.leaf(&["shop.example.net"]);
    for (body, why) in [
        (json!({"ca_pem": shop_cert}), "a leaf"),
        (
            json!({"ca_pem": "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"}),
            "bad DER",
        ),
        (json!({"ca_pem": "hello"}), "no PEM"),
    ] {
        let (status, err) = api.post("/certificate_authorities", body).await;
        assert_eq!(status, 400, "{why}: {err}");
        assert_eq!(err["error_code"], "ERR_NGROK_9050", "{why}");
        assert_eq!(err["details"]["field"], "ca_pem", "{why}");
    }

    // TLS certificates: chain and key checked, fields parsed, key never shown.
    let cert = api
        .create(
            "/tls_certificates",
            json!({"certificate_pem": shop_cert, "private_key_pem": shop_key}),
        )
        .await;
    assert!(id(&cert).starts_with("cert_"));
    assert_eq!(
        cert["subject_alternative_names"]["dns_names"],
        json!(["shop.example.net"])
    );
    assert_eq!(cert["issuer_common_name"], "Gangway Test Root");
    assert_eq!(cert["subject_organization"], "Gangway Tests");
    assert_eq!(cert["private_key_type"], "ecdsa");
    assert_eq!(cert["extended_key_usages"], json!(["server_auth"]));
    assert!(cert["serial_number"]
        .as_str()
        .is_some_and(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit())));
    assert!(cert.get("private_key_pem").is_none());
    let (_, other_key) = ca.leaf(&["other.example.net"]);
    let (status, err) = api
        .post(
            "/tls_certificates",
            json!({"certificate_pem": shop_cert, "private_key_pem": other_key}),
        )
        .await;
    assert_eq!(
        (status, err["details"]["field"].as_str()),
        (400, Some("private_key_pem")),
        "{err}"
    );

    // A reserved domain pinned to it; a certificate for another name is refused.
    let (other_cert, other_key) = ca.leaf(&["other.example.net"]);
    let other = api
        .create(
            "/tls_certificates",
            json!({"certificate_pem": other_cert, "private_key_pem": other_key}),
        )
        .await;
    let (status, err) = api
        .post(
            "/reserved_domains",
            json!({"domain": "shop.example.net", "certificate_id": id(&other)}),
        )
        .await;
    assert_eq!(
        (status, err["details"]["field"].as_str()),
        (400, Some("certificate_id")),
        "{err}"
    );
    let domain = api
        .create(
            "/reserved_domains",
            json!({"domain": "shop.example.net", "certificate_id": id(&cert)}),
        )
        .await;
    assert_eq!(domain["certificate"]["id"], id(&cert));

    // An agent serves the domain; clients that trust only the test CA
    // verify the edge's certificate for it.
    let app = crate::support::app::start().await;
    let session = server.sdk_session().await;
    let _ep = timeout(
        DEADLINE,
        session
            .http_endpoint()
            .domain("shop.example.net")
            .listen_and_forward(reqwest::Url::parse(&format!("http://{app}")).expect("url")),
    )
    .await
    .expect("bind timed out")
    .expect("bind");
    let ca_client = reqwest::Client::builder()
        .use_preconfigured_tls(ca.client_config())
        .resolve("shop.example.net", server.https_addr())
        .no_proxy()
        .build()
        .expect("client");
    let url = format!(
        "https://shop.example.net:{}/hello",
        server.https_addr().port()
    );
    eventually("served with the uploaded certificate", || async {
        let resp = ca_client.get(&url).send().await.ok()?;
        (resp.status() == 200).then_some(())
    })
    .await;

    // In use → 409; unpinned → deletable.
    assert_eq!(
        api.delete(&format!("/tls_certificates/{}", id(&cert)))
            .await,
        409
    );
    let (status, _) = api
        .patch(
            &format!("/reserved_domains/{}", id(&domain)),
            json!({"certificate_id": ""}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        api.delete(&format!("/tls_certificates/{}", id(&cert)))
            .await,
        204
    );

    // A CA trusted by an edge's mutual TLS cannot go.
    let edge = api
        .create(
            "/edges/https",
            json!({"mutual_tls": {"certificate_authority_ids": [id(&rec)]}}),
        )
        .await;
    assert_eq!(
        edge["mutual_tls"]["certificate_authorities"][0]["id"],
        id(&rec)
    );
    assert_eq!(
        api.delete(&format!("/certificate_authorities/{}", id(&rec)))
            .await,
        409
    );
    assert_eq!(
        api.delete(&format!("/edges/https/{}", id(&edge))).await,
        204
    );
    assert_eq!(
        api.delete(&format!("/certificate_authorities/{}", id(&rec)))
            .await,
        204
    );
}
