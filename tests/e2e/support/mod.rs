//! Test harness: a real `gangway server` process on free ports with its
//! own data dir, real `gangway http` agents, a local axum app, and clients
//! that trust the server's dev CA. No fixed ports; readiness is polled
//! with deadlines.
#![allow(dead_code)]

pub mod app;
pub mod tls;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gangway_config::server_info::SERVER_INFO_FILE;
use gangway_config::ServerInfo;

pub use gangway_testkit::DEADLINE;

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_gangway")
}

/// Polls `f` until it returns `Some` or the deadline passes.
pub async fn eventually<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The REST API as a test calls it: JSON in, (status, JSON) out.
pub struct Api {
    pub base: String,
    pub key: String,
    pub http: reqwest::Client,
}

impl Api {
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        let url = if path.starts_with("http") {
            path.to_string()
        } else {
            format!("{}{path}", self.base)
        };
        let mut req = self
            .http
            .request(method, url)
            .bearer_auth(&self.key)
            .header("Ngrok-Version", "2");
        if let Some(b) = body {
            req = req
                .header("Content-Type", "application/json")
                .body(serde_json::to_vec(&b).expect("json"));
        }
        let resp = req.send().await.expect("API request");
        let status = resp.status().as_u16();
        let text = resp.text().await.expect("API body");
        let json = if text.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("API body {text:?}: {e}"))
        };
        (status, json)
    }

    pub async fn get(&self, path: &str) -> (u16, serde_json::Value) {
        self.call(reqwest::Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    pub async fn put(&self, path: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
        self.call(reqwest::Method::PUT, path, Some(body)).await
    }

    pub async fn patch(&self, path: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
        self.call(reqwest::Method::PATCH, path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> u16 {
        self.call(reqwest::Method::DELETE, path, None).await.0
    }

    /// POSTs and expects 201; returns the created resource.
    pub async fn create(&self, path: &str, body: serde_json::Value) -> serde_json::Value {
        let (status, json) = self.post(path, body).await;
        assert_eq!(status, 201, "create {path}: {json}");
        json
    }
}

/// The `id` of an API object.
pub fn id(v: &serde_json::Value) -> String {
    v["id"]
        .as_str()
        .unwrap_or_else(|| panic!("id in {v}"))
        .to_string()
}

/// The JSON-lines events a server wrote to `path` so far.
pub fn events(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// A running `gangway server`, killed on drop.
pub struct Server {
    child: Child,
    pub dir: tempfile::TempDir,
    pub info: ServerInfo,
}

impl Server {
    pub async fn start() -> Server {
        Self::start_with(&[]).await
    }

    /// Starts a server with extra `gangway server` flags.
    pub async fn start_with(extra: &[&str]) -> Server {
        let dir = tempfile::tempdir().expect("tempdir");
        let (child, info) = Self::spawn(dir.path(), extra).await;
        Server { child, dir, info }
    }

    /// A server whose outbound fetches (SNS certificates, JWKS) for
    /// `host:443` go to `addr`, trusting `ca` as well as the system roots.
    pub async fn start_reaching(ca: &tls::TestCa, host: &str, addr: SocketAddr) -> Server {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca_file = dir.path().join("outbound-ca.pem");
        std::fs::write(&ca_file, &ca.cert_pem).expect("write ca");
        let connect_to = format!("{host}:443:{addr}");
        let args = [
            "--outbound-ca",
            ca_file.to_str().expect("path"),
            "--connect-to",
            &connect_to,
        ];
        let (child, info) = Self::spawn(dir.path(), &args).await;
        Server { child, dir, info }
    }

    /// Starts a server process on `dir` and waits for its server.json.
    async fn spawn(dir: &Path, extra: &[&str]) -> (Child, ServerInfo) {
        let _ = std::fs::remove_file(dir.join(SERVER_INFO_FILE));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("server.log"))
            .expect("log file");
        let child = gangway_testkit::server_command(Path::new(bin()), dir, 1)
            .args(extra)
            .env("GANGWAY_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn gangway server");
        let info = eventually("server.json", || async {
            gangway_testkit::server_info(dir)
        })
        .await;
        (child, info)
    }

    /// Kills the server (SIGKILL, like a crash) and starts it again on the
    /// same data dir, with new ports.
    pub async fn restart(&mut self, extra: &[&str]) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let (child, info) = Self::spawn(self.dir.path(), extra).await;
        self.child = child;
        self.info = info;
    }

    /// A client of the REST API with the server's API key.
    pub fn api(&self) -> Api {
        Api {
            base: self.info.api_url.clone(),
            key: self.info.api_key.clone(),
            http: reqwest::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(60))
                .build()
                .expect("api client"),
        }
    }

    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn ca_pem(&self) -> Vec<u8> {
        std::fs::read(&self.info.ca_cert).expect("ca.pem")
    }

    pub fn https_addr(&self) -> SocketAddr {
        self.info.https_addr.parse().expect("https addr")
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.info.http_addr.parse().expect("http addr")
    }

    /// The agent listener as an IP address (server.json names it `localhost`).
    pub fn agent_socket_addr(&self) -> SocketAddr {
        let port: u16 = self
            .info
            .agent_addr
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("port");
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// An official ngrok SDK session against this server, configured the
    /// way a self-hosting user would: server address, CA, authtoken.
    pub async fn sdk_session(&self) -> ngrok::Session {
        Self::sdk_connect(&self.sdk_builder()).await
    }

    /// The SDK session builder behind [`Server::sdk_session`], for tests
    /// that set more options before connecting.
    pub fn sdk_builder(&self) -> ngrok::session::SessionBuilder {
        let mut b = ngrok::Session::builder();
        b.authtoken(self.info.authtoken.clone())
            .server_addr(self.info.agent_addr.clone())
            .expect("server addr")
            .ca_cert(bytes::Bytes::from(self.ca_pem()));
        b
    }

    pub async fn sdk_connect(builder: &ngrok::session::SessionBuilder) -> ngrok::Session {
        tokio::time::timeout(DEADLINE, builder.connect())
            .await
            .expect("SDK connect timed out")
            .unwrap_or_else(|e| panic!("SDK connect: {e}"))
    }

    /// A client for public URLs: trusts the dev CA and resolves every name
    /// to the server's loopback address.
    pub fn client(&self) -> reqwest::Client {
        self.client_builder().build().expect("client")
    }

    pub fn client_builder(&self) -> reqwest::ClientBuilder {
        let ca = reqwest::Certificate::from_pem(&self.ca_pem()).expect("ca");
        reqwest::Client::builder()
            .add_root_certificate(ca)
            .dns_resolver(Arc::new(Loopback))
            .no_proxy()
            .timeout(Duration::from_secs(120))
    }

    /// Like [`Self::rustls_config`] (no ALPN), presenting a client
    /// certificate for mutual TLS.
    pub fn rustls_config_with_client_cert(
        &self,
        cert_pem: &str,
        key_pem: &str,
    ) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        for c in rustls_pemfile::certs(&mut &self.ca_pem()[..]) {
            roots.add(c.expect("pem")).expect("add root");
        }
        let (chain, key) = tls::client_identity(cert_pem, key_pem);
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let cfg = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .expect("client auth");
        Arc::new(cfg)
    }

    /// A rustls client config trusting the dev CA, for raw TLS tests.
    pub fn rustls_config(&self, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        for c in rustls_pemfile::certs(&mut &self.ca_pem()[..]) {
            roots.add(c.expect("pem")).expect("add root");
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(cfg)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Resolves any name to 127.0.0.1 (every listener in these tests is there).
struct Loopback;

impl reqwest::dns::Resolve for Loopback {
    fn resolve(&self, _name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let addrs: reqwest::dns::Addrs =
            Box::new(std::iter::once(SocketAddr::from(([127, 0, 0, 1], 0))));
        Box::pin(async move { Ok(addrs) })
    }
}

/// A running `gangway http` agent, killed (SIGKILL) on drop.
pub struct Agent {
    child: Child,
    pub url: String,
    pub stdout: Arc<std::sync::Mutex<Vec<String>>>,
}

impl Agent {
    /// Starts `gangway http <upstream> [extra...]` against `server` and
    /// waits for its `Forwarding` line.
    pub async fn http(server: &Server, upstream: &str, extra: &[&str]) -> Agent {
        Self::spawn("http", server.data_dir(), upstream, extra).await
    }

    /// Starts `gangway tcp <upstream> [extra...]`.
    pub async fn tcp(server: &Server, upstream: &str, extra: &[&str]) -> Agent {
        Self::spawn("tcp", server.data_dir(), upstream, extra).await
    }

    pub async fn spawn(command: &str, data_dir: &Path, upstream: &str, extra: &[&str]) -> Agent {
        Self::spawn_env(command, data_dir, upstream, extra, &[]).await
    }

    /// [`Agent::spawn`] with `envs` added to the agent's environment.
    pub async fn spawn_env(
        command: &str,
        data_dir: &Path,
        upstream: &str,
        extra: &[&str],
        envs: &[(&str, &str)],
    ) -> Agent {
        let mut agent = Self::launch(command, data_dir, upstream, extra, envs);
        agent.url = agent
            .line("Forwarding line", gangway_testkit::forwarding_url)
            .await;
        agent
    }

    /// Starts the agent, with `envs` added to its environment, without
    /// waiting for it to come online (`url` is empty); read its output with
    /// [`Agent::line`].
    pub fn launch(
        command: &str,
        data_dir: &Path,
        upstream: &str,
        extra: &[&str],
        envs: &[(&str, &str)],
    ) -> Agent {
        let args: Vec<&str> = [command, upstream]
            .into_iter()
            .chain(extra.iter().copied())
            .collect();
        let mut child = gangway_testkit::agent_command(Path::new(bin()), data_dir, &args)
            .env("GANGWAY_LOG", "info")
            .envs(envs.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn gangway http");
        let stdout = child.stdout.take().expect("stdout");
        let lines = Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                sink.lock().expect("lines").push(line);
            }
        });
        Agent {
            child,
            url: String::new(),
            stdout: lines,
        }
    }

    /// Waits for the first output line `pick` accepts, and what it took.
    pub async fn line<T>(&self, what: &str, pick: impl Fn(&str) -> Option<T>) -> T {
        eventually(what, || {
            let found = self
                .stdout
                .lock()
                .expect("lines")
                .iter()
                .find_map(|l| pick(l));
            async move { found }
        })
        .await
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGINT (Ctrl-C) and waits for the process to exit.
    pub fn interrupt(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .arg("-INT")
            .arg(self.child.id().to_string())
            .status();
        self.child.wait().expect("wait")
    }

    /// Sends SIGTERM and waits for the process to exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        self.child.wait().expect("wait")
    }

    /// The web interface's base URL, from the agent's `Web Interface`
    /// line (start it with `--web-addr`).
    pub fn web(&self) -> String {
        self.stdout
            .lock()
            .expect("lines")
            .iter()
            .find_map(|l| l.strip_prefix("Web Interface ").map(str::to_string))
            .expect("a Web Interface line (pass --web-addr)")
    }

    pub fn host(&self) -> String {
        let rest = self.url.split("://").nth(1).unwrap_or_default();
        rest.split(':').next().unwrap_or_default().to_string()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Path of a fresh file in `dir`.
pub fn path_in(dir: &Path, name: &str) -> PathBuf {
    dir.join(name)
}

/// Runs an agent command that is expected to fail; returns its stderr.
pub async fn agent_fails(server: &Server, args: &[&str]) -> String {
    let out = tokio::time::timeout(
        DEADLINE,
        tokio::process::Command::new(bin())
            .args(args)
            .arg("--data-dir")
            .arg(server.data_dir())
            .env_remove("GANGWAY_AUTHTOKEN")
            .env_remove("GANGWAY_SERVER_ADDR")
            .env(
                "GANGWAY_CONFIG",
                server.data_dir().join("no-agent-config.yml"),
            )
            .output(),
    )
    .await
    .expect("agent exits in time")
    .expect("run agent");
    assert!(!out.status.success(), "agent should have failed: {args:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The setup most API-edge tests start from: an HTTPS edge on
/// `NAME.<base domain>` whose routes send to the tunnel group `app=NAME`.
pub struct LabeledEdge {
    pub host: String,
    /// `https://NAME.<base domain>:PORT`
    pub base_url: String,
    pub edge_id: String,
    pub group_id: String,
    label: String,
}

impl LabeledEdge {
    pub async fn create(server: &Server, name: &str) -> LabeledEdge {
        let api = server.api();
        let port = server.https_addr().port();
        let host = format!("{name}.{}", server.info.base_domain);
        let group = api
            .create(
                "/backends/tunnel_group",
                serde_json::json!({"labels": {"app": name}}),
            )
            .await;
        let edge = api
            .create(
                "/edges/https",
                serde_json::json!({"hostports": [format!("{host}:{port}")]}),
            )
            .await;
        LabeledEdge {
            base_url: format!("https://{host}:{port}"),
            host,
            edge_id: id(&edge),
            group_id: id(&group),
            label: name.to_string(),
        }
    }

    /// Adds a `path_prefix` route on `prefix` backed by the group, with the
    /// route fields in `modules` (an object); returns the created route.
    pub async fn route(
        &self,
        server: &Server,
        prefix: &str,
        modules: serde_json::Value,
    ) -> serde_json::Value {
        let mut body = serde_json::json!({"match_type": "path_prefix", "match": prefix,
                                          "backend": {"backend_id": self.group_id}});
        if let (Some(b), serde_json::Value::Object(m)) = (body.as_object_mut(), modules) {
            b.extend(m);
        }
        let path = format!("/edges/https/{}/routes", self.edge_id);
        server.api().create(&path, body).await
    }

    /// An SDK labeled tunnel carrying the group's label, forwarding to
    /// `app`; keep it alive while the test runs.
    pub async fn serve(
        &self,
        session: &ngrok::Session,
        app: SocketAddr,
    ) -> ngrok::forwarder::Forwarder<ngrok::tunnel::LabeledTunnel> {
        use ngrok::config::ForwarderBuilder;
        let mut b = session.labeled_tunnel();
        b.label("app", &self.label);
        let to = reqwest::Url::parse(&format!("http://{app}")).expect("url");
        tokio::time::timeout(DEADLINE, b.listen_and_forward(to))
            .await
            .expect("bind timed out")
            .expect("bind")
    }
}
