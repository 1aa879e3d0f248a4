//! The official ngrok API client (PyPI `ngrok-api`, installed into
//! `.venv/ngrok-api` by `scripts/setup`) drives `gangway server`: create,
//! list with pagination, update and delete of every resource it covers,
//! and ngrok's error codes for bad input. The checks live in
//! `tests/python/api_client.py`.

use std::path::PathBuf;
use std::process::Command;

use crate::support::tls::TestCa;
use crate::support::Server;

fn python() -> PathBuf {
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/ngrok-api/bin/python");
    assert!(
        venv.exists(),
        "{} is missing: run scripts/setup (it installs PyPI ngrok-api)",
        venv.display()
    );
    venv
}

#[tokio::test]
async fn official_python_api_client_works_against_gangway() {
    let server = Server::start().await;
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python/api_client.py");
    let ca = TestCa::new("Gangway Client Test CA");
    let (leaf_pem, leaf_key) = ca.leaf(&[&format!("app.{}", server.info.base_domain)]);
    let ca_pem = ca.cert_pem.clone();
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
