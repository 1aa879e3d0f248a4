//! The agent's local web interface end to end: a real `gangway server`, a
//! real `gangway http` agent with its web interface on a free port, a
//! local app that records what reaches it, and every agent API route —
//! captures, replay (plain and modified), tunnels started and stopped on
//! the live session, errors — plus the inspection UI in headless Chromium.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use crate::support::{eventually, Agent, Server};
use axum::extract::Request;
use axum::response::IntoResponse;
use base64::Engine;
use serde_json::{json, Value};

/// What reached the local app: method, URI, headers, body.
#[derive(Clone, Debug)]
struct Seen {
    method: String,
    uri: String,
    headers: Vec<(String, String)>,
    body: String,
}

type Log = Arc<Mutex<Vec<Seen>>>;

/// An app that records every request and answers it with JSON.
async fn recording_app() -> (SocketAddr, Log) {
    let log: Log = Arc::default();
    let sink = log.clone();
    let app = axum::Router::new().fallback(move |req: Request| {
        let sink = sink.clone();
        async move {
            let (parts, body) = req.into_parts();
            let body = axum::body::to_bytes(body, 1 << 20)
                .await
                .unwrap_or_default();
            let seen = Seen {
                method: parts.method.to_string(),
                uri: parts.uri.to_string(),
                headers: parts
                    .headers
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
                    .collect(),
                body: String::from_utf8_lossy(&body).into_owned(),
            };
            sink.lock().unwrap().push(seen.clone());
            (
                [("content-type", "application/json")],
                json!({"method": seen.method, "uri": seen.uri, "got": seen.body}).to_string(),
            )
                .into_response()
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, log)
}

fn seen(log: &Log, method: &str, uri: &str) -> Vec<Seen> {
    log.lock()
        .unwrap()
        .iter()
        .filter(|s| s.method == method && s.uri == uri)
        .cloned()
        .collect()
}

/// Plain HTTP to the agent's web interface.
struct Web {
    base: String,
    http: reqwest::Client,
}

impl Web {
    fn new(agent: &Agent) -> Web {
        Web {
            base: agent.web(),
            http: reqwest::Client::new(),
        }
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> (u16, Value) {
        let r = req.send().await.expect("web request");
        let status = r.status().as_u16();
        let text = r.text().await.expect("body");
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        self.send(self.http.get(format!("{}{path}", self.base)))
            .await
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.send(self.http.post(format!("{}{path}", self.base)).json(&body))
            .await
    }

    async fn delete(&self, path: &str) -> (u16, Value) {
        self.send(self.http.delete(format!("{}{path}", self.base)))
            .await
    }

    /// The captures, newest first.
    async fn requests(&self) -> Vec<Value> {
        let (status, v) = self.get("/api/requests/http").await;
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["uri"], "/api/requests/http");
        v["requests"].as_array().cloned().unwrap_or_default()
    }

    /// Waits until `n` exchanges are captured (a capture is recorded when
    /// the response body ends, just after the client has it).
    async fn wait_for(&self, n: usize) -> Vec<Value> {
        eventually(&format!("{n} captured requests"), || async {
            let r = self.requests().await;
            (r.len() >= n).then_some(r)
        })
        .await
    }
}

/// `gangway http APP` with its web interface on a free port, and a client
/// for that interface.
async fn agent_with_web(server: &Server, app: SocketAddr, extra: &[&str]) -> (Agent, Web) {
    let mut args = vec!["--web-addr", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    let agent = Agent::http(server, &app.to_string(), &args).await;
    let web = Web::new(&agent);
    (agent, web)
}

/// Writes an agent config file into the server's data dir; its path.
fn config_file(server: &Server, name: &str, yaml: &str) -> String {
    let path = server.data_dir().join(name);
    std::fs::write(&path, yaml).unwrap();
    path.to_string_lossy().into_owned()
}

fn raw(v: &Value) -> String {
    let b = base64::engine::general_purpose::STANDARD
        .decode(v["raw"].as_str().expect("raw"))
        .expect("base64 raw");
    String::from_utf8_lossy(&b).into_owned()
}

fn assert_error(status: u16, v: &Value, want_status: u16, code: u64) {
    assert_eq!(status, want_status, "{v}");
    assert_eq!(v["status_code"], want_status, "{v}");
    assert_eq!(v["error_code"], code, "{v}");
    assert!(v["msg"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn captures_replays_and_requests_routes() {
    let server = Server::start().await;
    let (app, log) = recording_app().await;
    let (agent, web) = agent_with_web(&server, app, &[]).await;
    let client = server.client();

    let r = client
        .post(format!("{}/items?color=blue", agent.url))
        .header("content-type", "application/json")
        .header("x-trace", "abc")
        .body(r#"{"name":"widget"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = client
        .get(format!("{}/health", agent.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // GET /api/requests/http: newest first, in ngrok's shape.
    let list = web.wait_for(2).await;
    assert_eq!(list.len(), 2);
    let (get, post) = (&list[0], &list[1]);
    assert_eq!(get["request"]["method"], "GET");
    assert_eq!(get["request"]["uri"], "/health");
    assert_eq!(post["request"]["method"], "POST");
    assert_eq!(post["request"]["uri"], "/items?color=blue");
    assert_eq!(post["tunnel_name"], "command_line");
    assert_eq!(post["remote_addr"], "127.0.0.1");
    assert!(post["duration"].as_u64().unwrap() > 0);
    assert_eq!(post["request"]["headers"]["X-Trace"][0], "abc");
    assert_eq!(post["response"]["status_code"], 200);
    assert_eq!(post["response"]["status"], "200 OK");
    let id = post["id"].as_str().unwrap().to_string();
    assert_eq!(post["uri"], format!("/api/requests/http/{id}"));
    let req_raw = raw(&post["request"]);
    assert!(
        req_raw.starts_with("POST /items?color=blue HTTP/1.1\r\n"),
        "{req_raw}"
    );
    assert!(
        req_raw.ends_with("\r\n\r\n{\"name\":\"widget\"}"),
        "{req_raw}"
    );
    let resp_raw = raw(&post["response"]);
    assert!(resp_raw.starts_with("HTTP/1.1 200 OK\r\n"), "{resp_raw}");
    assert!(
        resp_raw.contains(r#""got":"{\"name\":\"widget\"}""#),
        "{resp_raw}"
    );

    // Query parameters: limit and tunnel_name.
    let (s, v) = web.get("/api/requests/http?limit=1").await;
    assert_eq!((s, v["requests"].as_array().unwrap().len()), (200, 1));
    let (_, v) = web.get("/api/requests/http?tunnel_name=command_line").await;
    assert_eq!(v["requests"].as_array().unwrap().len(), 2);
    let (_, v) = web.get("/api/requests/http?tunnel_name=other").await;
    assert_eq!(v["requests"].as_array().unwrap().len(), 0);
    let (s, v) = web.get("/api/requests/http?limit=many").await;
    assert_error(s, &v, 400, 101);

    // GET /api/requests/http/:id
    let (s, one) = web.get(&format!("/api/requests/http/{id}")).await;
    assert_eq!(s, 200);
    assert_eq!(one["id"], id.as_str());
    assert_eq!(one["request"]["raw"], post["request"]["raw"]);
    let (s, v) = web.get("/api/requests/http/0000000000000000").await;
    assert_error(s, &v, 404, 100);

    // Replay: the app gets the same request again, captured as a replay.
    let (s, v) = web.post("/api/requests/http", json!({"id": id})).await;
    assert_eq!(s, 204, "{v}");
    let again = seen(&log, "POST", "/items?color=blue");
    assert_eq!(again.len(), 2);
    assert_eq!(again[1].body, r#"{"name":"widget"}"#);
    assert!(again[1]
        .headers
        .iter()
        .any(|(k, v)| k == "x-trace" && v == "abc"));
    let list = web.wait_for(3).await;
    assert_eq!(list[0]["replay_of"], id.as_str());
    assert_eq!(list[0]["request"]["uri"], "/items?color=blue");

    // Replay with modifications.
    let modify = json!({"id": id, "tunnel_name": "command_line", "modify": {
        "method": "PUT", "uri": "/replayed?via=api",
        "headers": [["Content-Type", "application/json"], ["X-Replay", "modified"]],
        "body": "{\"name\":\"changed\"}"}});
    let (s, v) = web.post("/api/requests/http", modify).await;
    assert_eq!(s, 204, "{v}");
    let edited = seen(&log, "PUT", "/replayed?via=api");
    assert_eq!(edited.len(), 1);
    assert_eq!(edited[0].body, r#"{"name":"changed"}"#);
    assert!(edited[0]
        .headers
        .iter()
        .any(|(k, v)| k == "x-replay" && v == "modified"));
    assert!(!edited[0].headers.iter().any(|(k, _)| k == "x-trace"));
    let list = web.wait_for(4).await;
    assert_eq!(list[0]["request"]["method"], "PUT");

    // Replay errors: unknown id, unknown tunnel, bad edits, bad bodies.
    let (s, v) = web
        .post("/api/requests/http", json!({"id": "ffffffffffffffff"}))
        .await;
    assert_error(s, &v, 404, 100);
    let (s, v) = web
        .post(
            "/api/requests/http",
            json!({"id": id, "tunnel_name": "nope"}),
        )
        .await;
    assert_error(s, &v, 404, 100);
    let (s, v) = web
        .post(
            "/api/requests/http",
            json!({"id": id, "modify": {"uri": "no-slash"}}),
        )
        .await;
    assert_error(s, &v, 400, 101);
    assert!(v["details"]["err"].as_str().unwrap().contains("modify.uri"));
    let (s, v) = web.post("/api/requests/http", json!({})).await;
    assert_error(s, &v, 400, 101);
    let (s, v) = web
        .send(
            web.http
                .post(format!("{}/api/requests/http", web.base))
                .header("content-type", "text/plain")
                .body(format!(r#"{{"id":"{id}"}}"#)),
        )
        .await;
    assert_error(s, &v, 415, 104);
    let (s, v) = web
        .send(
            web.http
                .post(format!("{}/api/requests/http", web.base))
                .header("content-type", "application/json")
                .body("{not json"),
        )
        .await;
    assert_error(s, &v, 400, 101);
    let (s, v) = web
        .send(web.http.put(format!("{}/api/requests/http", web.base)))
        .await;
    assert_error(s, &v, 405, 105);
    let (s, v) = web.get("/api/nothing-here").await;
    assert_error(s, &v, 404, 100);
    // A rebinding attacker's name is refused; localhost and IPs are not.
    let (s, v) = web
        .send(
            web.http
                .get(format!("{}/api/tunnels", web.base))
                .header("host", "evil.example:4040"),
        )
        .await;
    assert_error(s, &v, 403, 107);

    // DELETE /api/requests/http
    let (s, _) = web.delete("/api/requests/http").await;
    assert_eq!(s, 204);
    assert!(web.requests().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tunnels_routes_start_and_stop_on_the_live_session() {
    let server = Server::start().await;
    let (app, log) = recording_app().await;
    let (agent, web) = agent_with_web(&server, app, &[]).await;
    let client = server.client();

    let (s, v) = web.get("/api/tunnels").await;
    assert_eq!(s, 200);
    assert_eq!(v["uri"], "/api/tunnels");
    let t = &v["tunnels"][0];
    assert_eq!(t["name"], "command_line");
    assert_eq!(t["uri"], "/api/tunnels/command_line");
    assert_eq!(t["public_url"], agent.url.as_str());
    assert_eq!(t["proto"], "https");
    assert_eq!(t["config"]["addr"], format!("http://{app}"));
    assert_eq!(t["config"]["inspect"], true);

    for i in 0..3 {
        let r = client
            .get(format!("{}/m{i}", agent.url))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let (s, t) = web.get("/api/tunnels/command_line").await;
    assert_eq!(s, 200);
    for kind in ["conns", "http"] {
        let m = &t["metrics"][kind];
        assert_eq!(m["count"], 3, "{t}");
        for k in ["rate1", "rate5", "rate15"] {
            assert!(m[k].as_f64().is_some(), "{kind}.{k}: {t}");
        }
        for k in ["p50", "p90", "p95", "p99"] {
            assert!(m[k].as_u64().unwrap() > 0, "{kind}.{k}: {t}");
        }
    }
    assert_eq!(t["metrics"]["conns"]["gauge"], 0);

    // POST /api/tunnels: a second tunnel on the same session.
    let (s, t) = web
        .post(
            "/api/tunnels",
            json!({"name": "second", "proto": "http", "addr": app.to_string(),
                   "inspect": false, "subdomain": "second-api"}),
        )
        .await;
    assert_eq!(s, 201, "{t}");
    assert_eq!(t["name"], "second");
    assert_eq!(t["config"]["inspect"], false);
    let second = t["public_url"].as_str().unwrap().to_string();
    assert!(second.starts_with("https://second-api."), "{second}");
    let r = client
        .get(format!("{second}/via-second"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(seen(&log, "GET", "/via-second").len(), 1);
    let (_, v) = web.get("/api/tunnels").await;
    assert_eq!(v["tunnels"].as_array().unwrap().len(), 2);
    // Not inspected: nothing captured from it.
    let caps = web.wait_for(3).await;
    assert!(caps.iter().all(|c| c["request"]["uri"] != "/via-second"));

    // bind_tls both: two tunnels on one name.
    let (s, t) = web
        .post(
            "/api/tunnels",
            json!({"name": "both", "proto": "http", "addr": app.port(), "bind_tls": "both"}),
        )
        .await;
    assert_eq!(s, 201, "{t}");
    let (s, plain) = web.get("/api/tunnels/both%20(http)").await;
    assert_eq!(s, 200, "{plain}");
    assert!(plain["public_url"].as_str().unwrap().starts_with("http://"));

    // Errors: bad definitions, taken names, wrong content type.
    let (s, v) = web
        .post(
            "/api/tunnels",
            json!({"name": "bad", "proto": "htp", "addr": "80"}),
        )
        .await;
    assert_error(s, &v, 400, 102);
    assert!(
        v["details"]["err"].as_str().unwrap().contains("proto"),
        "{v}"
    );
    let (s, v) = web
        .post("/api/tunnels", json!({"proto": "http", "addr": "80"}))
        .await;
    assert_error(s, &v, 400, 102);
    let (s, v) = web
        .post(
            "/api/tunnels",
            json!({"name": "second", "proto": "http", "addr": "80"}),
        )
        .await;
    assert_error(s, &v, 400, 102);
    // The edge refuses a hostname another tunnel holds: 502, and the
    // agent's other tunnels are untouched.
    let (s, v) = web
        .post(
            "/api/tunnels",
            json!({"name": "clash", "proto": "http", "addr": "80", "subdomain": "second-api"}),
        )
        .await;
    assert_error(s, &v, 502, 103);
    let (s, v) = web
        .send(
            web.http
                .post(format!("{}/api/tunnels", web.base))
                .header("content-type", "application/x-www-form-urlencoded")
                .body("name=x&proto=http&addr=80"),
        )
        .await;
    assert_error(s, &v, 415, 104);

    // DELETE /api/tunnels/:name
    let (s, _) = web.delete("/api/tunnels/second").await;
    assert_eq!(s, 204);
    let r = client
        .get(format!("{second}/after-stop"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert!(seen(&log, "GET", "/after-stop").is_empty());
    let (s, v) = web.delete("/api/tunnels/second").await;
    assert_error(s, &v, 404, 100);
    let (s, v) = web.get("/api/tunnels/second").await;
    assert_error(s, &v, 404, 100);
    // The first tunnel still serves.
    let r = client
        .get(format!("{}/still", agent.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // The status page's data.
    let (s, v) = web.get("/api/status").await;
    assert_eq!(s, 200);
    assert_eq!(v["session"]["status"], "online");
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
    assert!(v["inspect"]["count"].as_u64().unwrap() >= 4, "{v}");
    assert_eq!(v["inspect"]["limit_bytes"], 50_000_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inspect_false_captures_nothing() {
    let server = Server::start().await;
    let (app, log) = recording_app().await;
    let (agent, web) = agent_with_web(&server, app, &["--inspect=false"]).await;
    let r = server
        .client()
        .get(format!("{}/quiet", agent.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(seen(&log, "GET", "/quiet").len(), 1);
    let (_, t) = web.get("/api/tunnels/command_line").await;
    assert_eq!(t["config"]["inspect"], false);
    // Metrics still count it.
    assert_eq!(t["metrics"]["http"]["count"], 1);
    assert!(web.requests().await.is_empty());

    // ngrok's `inspect_db_size: -1` turns inspection off for every tunnel.
    let cfg = config_file(
        &server,
        "no-db.yml",
        "version: 3\nagent:\n  inspect_db_size: -1\n",
    );
    let (agent, web) = agent_with_web(&server, app, &["--config", &cfg]).await;
    let r = server
        .client()
        .get(format!("{}/quiet-too", agent.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (_, t) = web.get("/api/tunnels/command_line").await;
    assert_eq!(t["config"]["inspect"], false);
    assert!(web.requests().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_allow_hosts_adds_names_the_interface_answers() {
    let server = Server::start().await;
    let (app, _) = recording_app().await;
    let cfg = config_file(
        &server,
        "allow-hosts.yml",
        "version: 3\nagent:\n  web_allow_hosts: [inspect.dev.test, Agent.LAN]\n",
    );
    let (_agent, web) = agent_with_web(&server, app, &["--config", &cfg]).await;
    let with_host = |host: &'static str| {
        web.http
            .get(format!("{}/api/tunnels", web.base))
            .header("host", host)
    };
    for host in ["inspect.dev.test:4040", "agent.lan", "localhost:4040"] {
        let (s, v) = web.send(with_host(host)).await;
        assert_eq!(s, 200, "{host}: {v}");
        assert_eq!(v["tunnels"].as_array().map(Vec::len), Some(1), "{host}");
    }
    // Names not listed are still refused.
    let (s, v) = web.send(with_host("other.dev.test")).await;
    assert_error(s, &v, 403, 107);
    assert!(
        v["msg"].as_str().unwrap().contains("web_allow_hosts"),
        "{v}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_addr_false_serves_nothing_and_the_ui_is_embedded() {
    let server = Server::start().await;
    let (app, _log) = recording_app().await;
    let off = Agent::http(&server, &app.to_string(), &[]).await;
    assert!(!off
        .stdout
        .lock()
        .unwrap()
        .iter()
        .any(|l| l.starts_with("Web Interface")));

    let (_agent, web) = agent_with_web(&server, app, &[]).await;
    let base = web.base;
    for page in ["/", "/inspect/http", "/status"] {
        let r = reqwest::get(format!("{base}{page}")).await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-type"], "text/html; charset=utf-8");
        let html = r.text().await.unwrap();
        assert!(html.contains("/api/events"), "{page}");
        // Works offline: nothing is loaded from anywhere else.
        for external in ["src=\"http", "href=\"http", "@import", "url(http"] {
            assert!(!html.contains(external), "{page} loads {external}");
        }
    }
}

/// The inspection UI in headless Chromium (Debian's, driven by npm
/// playwright-core): the list fills live, the detail pretty-prints JSON
/// and marks a syntax error, filters AND together, Replay and modified
/// Replay reach the app. Screenshots land in target/artifacts/.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inspection_ui_in_headless_chromium() {
    let server = Server::start().await;
    let (app, log) = recording_app().await;
    let (agent, web) = agent_with_web(&server, app, &[]).await;
    let client = server.client();
    for (method, path, body) in [
        (
            "POST",
            "/items?color=blue",
            r#"{"name":"widget","tags":["a","b"],"price":9.5}"#,
        ),
        ("GET", "/health", ""),
        ("POST", "/broken", r#"{"a": 1,, "b": 2}"#),
    ] {
        let mut req = client.request(method.parse().unwrap(), format!("{}{path}", agent.url));
        if !body.is_empty() {
            req = req
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        assert_eq!(req.send().await.unwrap().status(), 200);
    }
    web.wait_for(3).await;

    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let artifacts = root.join("target/artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let shot = artifacts.join("inspect-ui.png");
    let status_shot = artifacts.join("inspect-status.png");
    let _ = std::fs::remove_file(&shot);
    let out = tokio::process::Command::new("node")
        .arg(root.join("tests/node/inspect_ui.mjs"))
        .arg("--web")
        .arg(agent.web())
        .arg("--screenshot")
        .arg(&shot)
        .arg("--status-screenshot")
        .arg(&status_shot)
        .current_dir(root.join("tests/node"))
        .output()
        .await
        .expect("run node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "browser test failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: Value = serde_json::from_str(stdout.lines().last().unwrap_or("")).unwrap();
    assert_eq!(summary["ok"], true);
    assert!(std::fs::metadata(&shot).unwrap().len() > 10_000);
    assert!(std::fs::metadata(&status_shot).unwrap().len() > 10_000);
    // The browser's replays reached the app itself.
    assert_eq!(seen(&log, "POST", "/items?color=blue").len(), 2);
    let modified = seen(&log, "PUT", "/replayed?via=ui");
    assert_eq!(modified.len(), 1);
    assert_eq!(modified[0].body, r#"{"name":"changed"}"#);
    assert!(modified[0]
        .headers
        .iter()
        .any(|(k, v)| k == "x-replay" && v == "modified"));
}

/// `inspect_db_size` from the config file bounds what the agent keeps:
/// hundreds of requests with bodies pass, the oldest are dropped, and the
/// newest can still be fetched and replayed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inspect_db_size_bounds_the_captures() {
    let server = Server::start().await;
    let (app, log) = recording_app().await;
    let cfg = config_file(
        &server,
        "small-db.yml",
        "version: \"2\"\ninspect_db_size: 200000\n",
    );
    let (agent, web) = agent_with_web(&server, app, &["--config", &cfg]).await;
    let client = server.client();
    let body = "x".repeat(2000);
    let total = 300;
    for i in 0..total {
        let r = client
            .post(format!("{}/bulk/{i}", agent.url))
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    assert_eq!(log.lock().unwrap().len(), total);
    let status = eventually("the last capture", || async {
        let (_, v) = web.get("/api/status").await;
        let newest =
            web.get("/api/requests/http?limit=1").await.1["requests"][0]["request"]["uri"].clone();
        (newest == format!("/bulk/{}", total - 1)).then_some(v)
    })
    .await;
    let inspect = &status["inspect"];
    assert_eq!(inspect["limit_bytes"], 200_000);
    assert!(inspect["bytes"].as_u64().unwrap() <= 200_000, "{inspect}");
    let kept = inspect["count"].as_u64().unwrap() as usize;
    assert!(kept > 10 && kept < total, "{inspect}");
    let list = web.requests().await;
    assert_eq!(list.len(), kept);
    // The ones kept are the newest, in order.
    for (j, e) in list.iter().enumerate() {
        assert_eq!(e["request"]["uri"], format!("/bulk/{}", total - 1 - j));
    }
}
