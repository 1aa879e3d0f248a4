//! The agent reaching the edge through real outbound proxies (`proxy_url`):
//! tinyproxy by HTTP CONNECT with Basic credentials, and microsocks by
//! SOCKS5 with a user and password. Proxies are taken from the environment
//! too, except for loopback edges.

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use crate::support::{app, bin, eventually, Agent, Server};

/// A proxy process, killed when dropped.
struct Proxy {
    child: Child,
    port: u16,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// Waits until something accepts on `port`.
async fn listening(port: u16) {
    eventually("the proxy to listen", || async move {
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()
            .map(|_| ())
    })
    .await;
}

/// tinyproxy on a free port, asking for `user:pass`, logging each request
/// to `dir/tinyproxy.log`.
async fn tinyproxy(dir: &Path, user: &str, pass: &str) -> Proxy {
    let port = free_port();
    let conf = dir.join("tinyproxy.conf");
    std::fs::write(
        &conf,
        format!(
            "Port {port}\nListen 127.0.0.1\nTimeout 600\nMaxClients 50\nAllow 127.0.0.1\n\
             LogLevel Connect\nLogFile \"{}\"\nBasicAuth {user} {pass}\n",
            dir.join("tinyproxy.log").display()
        ),
    )
    .unwrap();
    let child = Command::new("tinyproxy")
        .arg("-d")
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("tinyproxy (scripts/setup installs it)");
    listening(port).await;
    Proxy { child, port }
}

/// microsocks on `port`, asking for `user:pass`.
async fn microsocks(port: u16, user: &str, pass: &str) -> Proxy {
    let child = Command::new("microsocks")
        .args([
            "-i",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-u",
            user,
            "-P",
            pass,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("microsocks (scripts/setup installs it)");
    listening(port).await;
    Proxy { child, port }
}

/// A v3 agent config file with just `proxy_url`; its path.
fn proxy_config(server: &Server, name: &str, url: &str) -> String {
    let path = server.data_dir().join(name);
    std::fs::write(&path, format!("version: 3\nagent:\n  proxy_url: {url}\n")).unwrap();
    path.to_string_lossy().into_owned()
}

/// The app answers through the agent's public URL.
async fn serves(server: &Server, agent: &Agent) {
    let r = server
        .client()
        .get(format!("{}/hello", agent.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "hello from the local app");
}

fn session_lost(l: &str) -> Option<String> {
    l.starts_with("Session lost").then(|| l.to_string())
}

/// Starts an agent on `config` that cannot get through; the line that
/// says why (it keeps retrying until dropped).
async fn refusal(server: &Server, app: SocketAddr, config: &str) -> String {
    let agent = Agent::launch(
        "http",
        server.data_dir(),
        &app.to_string(),
        &["--config", config],
        &[],
    );
    agent.line("a Session lost line", session_lost).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_connect_proxy_with_basic_credentials() {
    let server = Server::start().await;
    let app = app::start().await;
    let dir = tempfile::tempdir().unwrap();
    let proxy = tinyproxy(dir.path(), "gw", "s3cret").await;

    let good = proxy_config(
        &server,
        "good.yml",
        &format!("http://gw:s3cret@127.0.0.1:{}", proxy.port),
    );
    let agent = Agent::http(&server, &app.to_string(), &["--config", &good]).await;
    serves(&server, &agent).await;
    // The session went through the proxy: it logged our CONNECT to the
    // edge's agent port.
    let edge = server.agent_socket_addr();
    let log = std::fs::read_to_string(dir.path().join("tinyproxy.log")).unwrap();
    assert!(
        log.contains(&format!("CONNECT 127.0.0.1:{}", edge.port()))
            || log.contains(&format!("CONNECT localhost:{}", edge.port())),
        "{log}"
    );

    // Wrong credentials: the agent keeps retrying and says why, without
    // printing the password.
    let bad = proxy_config(
        &server,
        "bad.yml",
        &format!("http://gw:wrong-pass@127.0.0.1:{}", proxy.port),
    );
    let line = refusal(&server, app, &bad).await;
    // tinyproxy answers 401 where RFC 9110 says 407; both mean this.
    assert!(line.contains("401") || line.contains("407"), "{line}");
    assert!(line.contains("wants credentials"), "{line}");
    assert!(!line.contains("wrong-pass"), "{line}");
    assert!(line.contains("http://gw:***@127.0.0.1"), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socks5_proxy_carries_the_session_and_its_reconnects() {
    let server = Server::start().await;
    let app = app::start().await;
    let port = free_port();
    let proxy = microsocks(port, "gw", "s3cret").await;

    let good = proxy_config(
        &server,
        "socks.yml",
        &format!("socks5://gw:s3cret@127.0.0.1:{port}"),
    );
    let agent = Agent::http(&server, &app.to_string(), &["--config", &good]).await;
    serves(&server, &agent).await;

    // The session lives on the proxy's connection: stopping the proxy
    // loses it, and the agent comes back through a new one.
    drop(proxy);
    let line = agent.line("a Session lost line", session_lost).await;
    assert!(!line.contains("s3cret"), "{line}");
    let _proxy = microsocks(port, "gw", "s3cret").await;
    agent
        .line("a Reconnected line", |l| {
            l.starts_with("Reconnected").then_some(())
        })
        .await;
    serves(&server, &agent).await;

    // A wrong password is refused by the proxy, and the agent says so.
    let bad = proxy_config(
        &server,
        "socks-bad.yml",
        &format!("socks5://gw:nope@127.0.0.1:{port}"),
    );
    let line = refusal(&server, app, &bad).await;
    assert!(line.contains("refused our user and password"), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn environment_proxies_skip_loopback_and_bad_ones_are_named() {
    let server = Server::start().await;
    let app = app::start().await;
    // Nothing listens on the proxy's port: were it used, the agent would
    // never come online. The edge is on loopback, so it is not.
    let dead = format!("http://127.0.0.1:{}", free_port());
    let agent = Agent::spawn_env(
        "http",
        server.data_dir(),
        &app.to_string(),
        &[],
        &[("HTTPS_PROXY", &dead)],
    )
    .await;
    serves(&server, &agent).await;

    // A proxy from the environment that cannot be used is an error that
    // names the variable.
    let out = tokio::process::Command::new(bin())
        .args(["http", "80", "--web-addr", "false"])
        .args([
            "--server-addr",
            "edge.gangway.invalid:443",
            "--authtoken",
            "tok",
        ])
        .env(
            "GANGWAY_CONFIG",
            server.data_dir().join("no-agent-config.yml"),
        )
        .env("https_proxy", "ftp://proxy.corp:21")
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("HTTPS_PROXY"), "{err}");
    assert!(
        err.contains("\"ftp\" is not one of http, https, socks5"),
        "{err}"
    );
}

/// stunnel on a free port terminating TLS with `cert`/`key` in front of
/// `backend`: an HTTPS proxy when the backend is tinyproxy.
async fn stunnel(dir: &Path, backend: u16, cert: &str, key: &str) -> Proxy {
    let port = free_port();
    let (cert_path, key_path) = (dir.join("proxy.crt"), dir.join("proxy.key"));
    std::fs::write(&cert_path, cert).unwrap();
    std::fs::write(&key_path, key).unwrap();
    let conf = dir.join("stunnel.conf");
    std::fs::write(
        &conf,
        format!(
            "foreground = yes\npid =\n[proxy]\naccept = 127.0.0.1:{port}\nconnect = 127.0.0.1:{backend}\n\
             cert = {}\nkey = {}\n",
            cert_path.display(),
            key_path.display()
        ),
    )
    .unwrap();
    let child = Command::new("stunnel4")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("stunnel4 (scripts/setup installs it)");
    listening(port).await;
    Proxy { child, port }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_proxy_is_spoken_to_over_verified_tls() {
    let server = Server::start().await;
    let app = app::start().await;
    let dir = tempfile::tempdir().unwrap();
    let plain = tinyproxy(dir.path(), "gw", "s3cret").await;
    let ca = crate::support::tls::TestCa::new("Corp Proxy CA");
    let (cert, key) = ca.leaf(&["localhost"]);
    let proxy = stunnel(dir.path(), plain.port, &cert, &key).await;
    let url = format!("https://gw:s3cret@localhost:{}", proxy.port);

    // root_cas holds the edge's CA and the proxy's: both are checked.
    let roots = dir.path().join("roots.pem");
    let mut pem = server.ca_pem();
    pem.extend_from_slice(ca.cert_pem.as_bytes());
    std::fs::write(&roots, pem).unwrap();
    let good = server.data_dir().join("https-proxy.yml");
    std::fs::write(
        &good,
        format!(
            "version: 3\nagent:\n  root_cas: {}\n  proxy_url: {url}\n",
            roots.display()
        ),
    )
    .unwrap();
    let agent = Agent::http(
        &server,
        &app.to_string(),
        &["--config", good.to_str().unwrap()],
    )
    .await;
    serves(&server, &agent).await;
    let log = std::fs::read_to_string(dir.path().join("tinyproxy.log")).unwrap();
    assert!(log.contains("CONNECT"), "{log}");

    // Without the proxy's CA, its certificate is refused.
    let untrusted = proxy_config(&server, "https-untrusted.yml", &url);
    let line = refusal(&server, app, &untrusted).await;
    assert!(line.contains("TLS handshake"), "{line}");
    assert!(line.contains("CERTIFICATE_VERIFY_FAILED"), "{line}");
}
