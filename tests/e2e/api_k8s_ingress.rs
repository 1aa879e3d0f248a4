//! What the official API clients lack, over raw HTTP: agent ingresses
//! (the agent listener serving the ingress's region domain with its
//! uploaded certificate) and Kubernetes operators (CSR signed by the
//! deployment CA; bound endpoints from live `kubernetes`-bound agents).

use std::sync::Arc;
use std::time::Duration;

use crate::support::tls::TestCa;
use crate::support::{eventually, id, Server, DEADLINE};
use ngrok::config::ForwarderBuilder;
use ngrok::prelude::*;
use rustls::pki_types::ServerName;
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio::time::timeout;

#[tokio::test]
async fn agent_ingresses_over_raw_http_and_served_by_the_agent_listener() {
    let server = Server::start().await;
    let api = server.api();
    let (status, ing) = api
        .post(
            "/agent_ingresses",
            json!({"domain": "Connect.Acme.test", "description": "acme devices"}),
        )
        .await;
    assert_eq!(status, 201, "{ing}");
    assert!(id(&ing).starts_with("agin_"));
    assert_eq!(ing["domain"], "connect.acme.test");
    let region_domain = ing["region_domains"][0]
        .as_str()
        .expect("region domain")
        .to_string();
    assert_eq!(region_domain, "tunnel.local.connect.acme.test", "{ing}");
    assert_eq!(ing["ns_targets"], json!(["localhost"]));
    assert_eq!(ing["certificate_management_policy"], Value::Null);
    assert!(ing["uri"].as_str().is_some_and(|u| u.starts_with("http")));

    for (body, field, status) in [
        (json!({"domain": "connect.acme.test"}), None, 409),
        (json!({"domain": "bad..name"}), Some("domain"), 400),
        (json!({}), Some("domain"), 400),
        (
            json!({"domain": format!("x.{}", server.info.base_domain)}),
            Some("domain"),
            400,
        ),
        (
            json!({"domain": "b.acme.test", "certificate_management_policy": {"authority": "letsencrypt"}}),
            Some("certificate_management_policy"),
            400,
        ),
        (
            json!({"domain": "c.acme.test", "ns_targets": []}),
            None,
            400,
        ),
    ] {
        let (got, err) = api.post("/agent_ingresses", body.clone()).await;
        assert_eq!(got, status, "{body}: {err}");
        if let Some(f) = field {
            assert_eq!(err["details"]["field"], f, "{body}");
        }
    }
    let (status, list) = api.get("/agent_ingresses").await;
    assert_eq!(status, 200);
    assert_eq!(
        list["ingresses"].as_array().map(Vec::len),
        Some(1),
        "{list}"
    );
    let path = format!("/agent_ingresses/{}", id(&ing));
    let (status, upd) = api
        .patch(&path, json!({"metadata": "{\"team\":\"devices\"}"}))
        .await;
    assert_eq!(
        (status, upd["metadata"].as_str()),
        (200, Some("{\"team\":\"devices\"}"))
    );
    assert_eq!(upd["domain"], "connect.acme.test");

    // With a certificate for the region domain uploaded, agents dialing it
    // verify the agent listener against the user's own CA.
    let ca = TestCa::new("Ingress Test CA");
    let (cert_pem, key_pem) = ca.leaf(&[&region_domain]);
    api.create(
        "/tls_certificates",
        json!({"certificate_pem": cert_pem, "private_key_pem": key_pem}),
    )
    .await;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(ca.client_config()));
    eventually(
        "agent listener presents the ingress certificate",
        || async {
            let tcp = TcpStream::connect(server.agent_socket_addr()).await.ok()?;
            let name = ServerName::try_from(region_domain.clone()).ok()?;
            let tls = timeout(Duration::from_secs(5), connector.connect(name, tcp)).await;
            matches!(tls, Ok(Ok(_))).then_some(())
        },
    )
    .await;

    assert_eq!(api.delete(&path).await, 204);
    let (status, _) = api.get(&path).await;
    assert_eq!(status, 404);
    // The name is free again.
    api.create("/agent_ingresses", json!({"domain": "connect.acme.test"}))
        .await;
}

#[tokio::test]
async fn kubernetes_operators_sign_csrs_and_list_bound_endpoints() {
    let server = Server::start().await;
    let api = server.api();
    let csr_key = rcgen::KeyPair::generate().expect("key");
    let mut csr_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    csr_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "ngrok-operator");
    let csr = csr_params
        .serialize_request(&csr_key)
        .expect("csr")
        .pem()
        .expect("pem");

    let body = json!({
        "description": "Example Kubernetes Operator",
        "metadata": "{\"environment\": \"staging\"}",
        "enabled_features": ["Ingress", "Bindings"],
        "region": "global",
        "deployment": {"name": "ngrok-operator", "namespace": "ngrok-operator", "version": "0.19.0"},
        "binding": {"endpoint_selectors": ["true"], "csr": csr, "ingress_endpoint": "kubernetes-binding-ingress.example:443"},
    });
    let (status, op) = api.post("/kubernetes_operators", body.clone()).await;
    assert_eq!(status, 201, "{op}");
    assert!(id(&op).starts_with("k8sop_"));
    assert_eq!(op["enabled_features"], json!(["ingress", "bindings"]));
    assert_eq!(op["deployment"]["namespace"], "ngrok-operator");
    assert_eq!(op["binding"]["endpoint_selectors"], json!(["true"]));
    assert!(op["updated_at"].as_str().is_some_and(|t| t.ends_with('Z')));

    // binding.cert: a client certificate for the CSR's key, from the
    // deployment CA.
    let cert_pem = op["binding"]["cert"]["cert"].as_str().expect("cert");
    let cert = boring::x509::X509::from_pem(cert_pem.as_bytes()).expect("PEM certificate");
    let public = cert
        .public_key()
        .expect("key")
        .public_key_to_pem()
        .expect("pem");
    assert_eq!(
        String::from_utf8_lossy(&public).trim(),
        csr_key.public_key_pem().trim(),
        "certificate is for the CSR's key"
    );
    let cn = |name: &boring::x509::X509NameRef| {
        name.entries_by_nid(boring::nid::Nid::COMMONNAME)
            .next()
            .and_then(|e| e.data().as_utf8().ok())
            .map(|s| s.to_string())
    };
    assert_eq!(
        cn(cert.issuer_name()).as_deref(),
        Some("Gangway deployment CA")
    );
    assert_eq!(cn(cert.subject_name()).as_deref(), Some("ngrok-operator"));
    assert!(op["binding"]["cert"]["not_after"]
        .as_str()
        .is_some_and(|t| t > op["binding"]["cert"]["not_before"].as_str().unwrap_or("~")));

    // One record per deployment; bad input is refused with a field path.
    let (status, _) = api.post("/kubernetes_operators", body).await;
    assert_eq!(status, 409);
    for (body, field) in [
        (
            json!({"enabled_features": ["ingress", "teleport"]}),
            "enabled_features[1]",
        ),
        (
            json!({"binding": {"endpoint_selectors": ["true"]}}),
            "binding",
        ),
        (json!({"enabled_features": ["bindings"]}), "binding"),
        (
            json!({"enabled_features": ["bindings"], "binding": {"endpoint_selectors": ["endpoint.url.contains('x')"]}}),
            "binding.endpoint_selectors[0]",
        ),
        (
            json!({"enabled_features": ["bindings"], "binding": {"endpoint_selectors": ["true"], "csr": "nope"}}),
            "binding.csr",
        ),
        (
            json!({"deployment": {"name": "x", "replicas": 2}}),
            "deployment.replicas",
        ),
    ] {
        let (status, err) = api.post("/kubernetes_operators", body.clone()).await;
        assert_eq!(status, 400, "{body}: {err}");
        assert_eq!(err["details"]["field"], field, "{body}: {err}");
    }
    let (_, list) = api.get("/kubernetes_operators").await;
    assert_eq!(
        list["operators"].as_array().map(Vec::len),
        Some(1),
        "{list}"
    );

    // An agent endpoint bound into the cluster is listed; a public one is
    // not, and the bound one is not reachable from the public listeners.
    let session = server.sdk_session().await;
    let app = crate::support::app::start().await;
    let to = reqwest::Url::parse(&format!("http://{app}")).expect("url");
    let bound = timeout(
        DEADLINE,
        session
            .http_endpoint()
            .domain("web.prod")
            .binding("kubernetes")
            .listen_and_forward(to.clone()),
    )
    .await
    .expect("bind timed out")
    .expect("kubernetes bind");
    assert_eq!(bound.url(), "http://web.prod");
    let _public = timeout(DEADLINE, session.http_endpoint().listen_and_forward(to))
        .await
        .expect("bind timed out")
        .expect("public bind");
    let path = format!("/kubernetes_operators/{}", id(&op));
    let (status, eps) = api.get(&format!("{path}/bound_endpoints")).await;
    assert_eq!(status, 200, "{eps}");
    let listed = eps["endpoints"].as_array().expect("endpoints");
    assert_eq!(listed.len(), 1, "{eps}");
    assert_eq!(listed[0]["public_url"], "http://web.prod");
    assert_eq!(listed[0]["bindings"], json!(["kubernetes"]));
    assert_eq!(listed[0]["tunnel"]["id"], bound.id());
    assert!(eps["uri"]
        .as_str()
        .is_some_and(|u| u.ends_with("/bound_endpoints")));
    // (No certificate covers the name either; only routing is checked.)
    let resp = server
        .client_builder()
        .danger_accept_invalid_certs(true)
        .build()
        .expect("client")
        .get(format!("https://web.prod:{}/", server.https_addr().port()))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 404, "kubernetes-bound endpoints are private");
    let err = session
        .http_endpoint()
        .domain("a.b.c")
        .binding("kubernetes")
        .listen()
        .await
        .err()
        .expect("three labels refused");
    assert!(err.to_string().contains("service.namespace"), "{err}");

    // Update and delete.
    let (status, upd) = api
        .patch(
            &path,
            json!({"deployment": {"version": "0.19.1"}, "enabled_features": ["bindings"]}),
        )
        .await;
    assert_eq!(status, 200, "{upd}");
    assert_eq!(upd["deployment"]["version"], "0.19.1");
    assert_eq!(upd["deployment"]["name"], "ngrok-operator");
    assert_eq!(
        upd["binding"]["cert"]["cert"], cert_pem,
        "no new CSR: same certificate"
    );
    let (status, err) = api
        .patch(&path, json!({"enabled_features": ["ingress"]}))
        .await;
    assert_eq!(
        (status, err["details"]["field"].as_str()),
        (400, Some("binding")),
        "{err}"
    );
    assert_eq!(api.delete(&path).await, 204);
    let (status, _) = api.get(&format!("{path}/bound_endpoints")).await;
    assert_eq!(status, 404);
}
