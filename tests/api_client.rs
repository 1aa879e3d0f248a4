//! The official ngrok API client (PyPI `ngrok-api`, installed into
//! `.venv/ngrok-api` by `scripts/setup`) drives `gangway server`: create,
//! list with pagination, update and delete of every resource it covers,
//! and ngrok's error codes for bad input. The checks live in
//! `tests/python/api_client.py`.

mod support;

use std::path::PathBuf;
use std::process::Command;

use support::Server;

fn python() -> PathBuf {
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/ngrok-api/bin/python");
    assert!(
        venv.exists(),
        "{} is missing: run scripts/setup (it installs PyPI ngrok-api)",
        venv.display()
    );
    venv
}

/// A CA and a leaf for `name` it signs (PEM), for the certificate checks.
fn test_pems(name: &str) -> (String, String, String) {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Gangway Client Test CA");
    let ca_key = rcgen::KeyPair::generate().expect("key");
    let ca = params.self_signed(&ca_key).expect("ca");
    let issuer = rcgen::Issuer::new(params, ca_key);
    let key = rcgen::KeyPair::generate().expect("key");
    let leaf = rcgen::CertificateParams::new(vec![name.to_string()])
        .expect("params")
        .signed_by(&key, &issuer)
        .expect("leaf");
    (ca.pem(), leaf.pem(), key.serialize_pem())
}

#[tokio::test]
async fn official_python_api_client_works_against_gangway() {
    let server = Server::start().await;
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python/api_client.py");
    let (ca_pem, leaf_pem, leaf_key) = test_pems(&format!("app.{}", server.info.base_domain));
    let out = tokio::task::spawn_blocking({
        let info = server.info.clone();
        let port = server.https_addr().port().to_string();
        move || {
            Command::new(python())
                .arg(script)
                .env("GANGWAY_API_URL", &info.api_url)
                .env("GANGWAY_API_KEY", &info.api_key)
                .env("GANGWAY_BASE_DOMAIN", &info.base_domain)
                .env("GANGWAY_HTTPS_PORT", port)
                .env("GANGWAY_TEST_CA_PEM", ca_pem)
                .env("GANGWAY_TEST_LEAF_PEM", leaf_pem)
                .env("GANGWAY_TEST_LEAF_KEY", leaf_key)
                .env("NO_PROXY", "*")
                .output()
                .expect("run python")
        }
    })
    .await
    .expect("join");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "api_client.py failed\nstdout:\n{stdout}\nstderr:\n{stderr}\nserver log:\n{}",
        server.log()
    );
    assert!(stdout.contains("all checks passed"), "{stdout}");
}
