//! The agent's config file through the real binary: `config check`,
//! `config add-authtoken` / `authtoken`, `start NAME... | --all | --none`
//! against a real server, `--config` merged in order, and errors that name
//! the file, the line and the key.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::support::{app, bin, eventually, Agent, Server};
use serde_json::json;

fn gangway(args: &[&str], config_home: &Path) -> Output {
    Command::new(bin())
        .args(args)
        .env("GANGWAY_CONFIG", config_home.join("gangway.yml"))
        .env_remove("GANGWAY_AUTHTOKEN")
        .env_remove("GANGWAY_SERVER_ADDR")
        .output()
        .expect("run gangway")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/config")
        .join(name)
}

#[test]
fn the_documented_v2_and_v3_examples_check_out() {
    let home = tempfile::tempdir().unwrap();
    for f in ["ngrok-v2.yml", "ngrok-v3.yml"] {
        let path = example(f);
        let o = gangway(
            &["config", "check", "--config", path.to_str().unwrap()],
            home.path(),
        );
        assert!(o.status.success(), "{f}: {}", text(&o));
        assert_eq!(
            String::from_utf8_lossy(&o.stdout).trim(),
            format!("Valid configuration file at {}", path.display())
        );
    }
    // No file at all is an error, not a silent success.
    let o = gangway(&["config", "check"], home.path());
    assert!(!o.status.success());
    assert!(text(&o).contains("no config file"), "{}", text(&o));
}

#[test]
fn bad_files_name_the_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "version: \"2\"\nauthtoken: abc\ntunnels:\n  web:\n    proto: htp\n    addr: 80\n",
            5,
            "tunnels.web.proto",
        ),
        (
            "version: \"2\"\ntunnels:\n  web:\n    proto: http\n    addr: 80\n    inspekt: false\n",
            6,
            "inspekt",
        ),
        (
            "version: 3\nagent:\n  authtoken: abc\n  web_addr: [1, 2]\n",
            4,
            "agent.web_addr",
        ),
        (
            "version: 3\nagent:\n  authtoken: abc\n  proxy_url: proxy.corp:3128\n",
            4,
            "agent.proxy_url",
        ),
        // Found at the end of the file; the message points back at line 2.
        ("version: 2\nauthtoken: [unclosed\n", 3, "line 2"),
    ];
    for (i, (yaml, line, key)) in cases.iter().enumerate() {
        let path = dir.path().join(format!("bad{i}.yml"));
        std::fs::write(&path, yaml).unwrap();
        let o = gangway(
            &["config", "check", "--config", path.to_str().unwrap()],
            dir.path(),
        );
        assert!(!o.status.success(), "case {i} passed");
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        assert!(
            err.contains(&format!("{}:{line}", path.display())),
            "case {i}: want line {line}: {err}"
        );
        assert!(err.contains(key), "case {i}: want key {key}: {err}");
        // Agent commands refuse to start on the same file.
        let o = gangway(
            &["http", "80", "--config", path.to_str().unwrap()],
            dir.path(),
        );
        assert!(!o.status.success());
        assert!(String::from_utf8_lossy(&o.stderr).contains(&format!(":{line}")));
    }
}

#[test]
fn add_authtoken_writes_and_keeps_the_rest() {
    let home = tempfile::tempdir().unwrap();
    let o = gangway(&["config", "add-authtoken", "tok-1"], home.path());
    assert!(o.status.success(), "{}", text(&o));
    let path = home.path().join("gangway.yml");
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        format!("Authtoken saved to configuration file: {}", path.display())
    );
    let o = gangway(&["config", "check"], home.path());
    assert!(o.status.success(), "{}", text(&o));

    // The alias replaces the token; comments and other keys stay.
    let mut body = std::fs::read_to_string(&path).unwrap();
    body.push_str("# my tunnels\n");
    std::fs::write(&path, &body).unwrap();
    let o = gangway(&["authtoken", "tok-2"], home.path());
    assert!(o.status.success(), "{}", text(&o));
    let after = std::fs::read_to_string(&path).unwrap();
    assert!(
        after.contains("tok-2") && !after.contains("tok-1"),
        "{after}"
    );
    assert!(after.contains("# my tunnels"), "{after}");

    // --config names another file.
    let other = home.path().join("sub/other.yml");
    let o = gangway(
        &[
            "config",
            "add-authtoken",
            "tok-3",
            "--config",
            other.to_str().unwrap(),
        ],
        home.path(),
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(std::fs::read_to_string(&other).unwrap().contains("tok-3"));
}

/// A config file pointing at the test server.
fn write_config(dir: &Path, name: &str, body: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, body).unwrap();
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_names_all_and_none_with_merged_files() {
    let server = Server::start().await;
    let app = app::start().await;
    let info: serde_json::Value =
        serde_json::from_slice(&std::fs::read(server.data_dir().join("server.json")).unwrap())
            .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca = info["ca_cert"].as_str().unwrap();
    // The first file has the session settings and a wrong token that the
    // second file overrides; tunnels from both files are merged by name.
    let base = write_config(
        dir.path(),
        "base.yml",
        &format!(
            "version: \"2\"\nauthtoken: wrong\nserver_addr: {}\nroot_cas: {ca}\nweb_addr: false\n\
             tunnels:\n  web:\n    proto: http\n    addr: 1\n  files:\n    proto: http\n    addr: {}\n    subdomain: cfg-files\n",
            info["agent_addr"].as_str().unwrap(),
            app.port(),
        ),
    );
    let over = write_config(
        dir.path(),
        "over.yml",
        &format!(
            "version: 3\nagent:\n  authtoken: {}\nendpoints:\n  - name: web\n    url: https://cfg-web.gangway.localhost\n    upstream:\n      url: {app}\n",
            info["authtoken"].as_str().unwrap(),
        ),
    );
    let configs = [
        "--config",
        base.to_str().unwrap(),
        "--config",
        over.to_str().unwrap(),
    ];
    let client = server.client();

    // start NAME: only that tunnel, as the later file defines it.
    let agent = Agent::spawn("start", dir.path(), "web", &configs).await;
    assert!(agent.url.starts_with("https://cfg-web."), "{}", agent.url);
    let r = client
        .get(format!("{}/hello", agent.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "hello from the local app");
    let lines = agent.stdout.lock().unwrap().clone();
    assert_eq!(
        lines.iter().filter(|l| l.starts_with("Forwarding")).count(),
        1,
        "{lines:?}"
    );
    drop(agent);

    // --all: every tunnel of both files.
    let agent = Agent::spawn("start", dir.path(), "--all", &configs).await;
    let both = eventually("two Forwarding lines", || async {
        let l = agent.stdout.lock().unwrap().clone();
        let f: Vec<String> = l
            .into_iter()
            .filter(|l| l.starts_with("Forwarding"))
            .collect();
        (f.len() == 2).then_some(f)
    })
    .await;
    let files_url = both
        .iter()
        .find_map(|l| {
            let url = l.strip_prefix("Forwarding ")?.split(" -> ").next()?;
            url.contains("cfg-files.").then(|| url.to_string())
        })
        .unwrap_or_else(|| panic!("no cfg-files tunnel: {both:?}"));
    let r = client
        .get(format!("{files_url}/hello"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    drop(agent);

    // An unknown name is refused and the known ones are listed.
    let o = gangway(
        &[
            "start",
            "nope",
            "--config",
            base.to_str().unwrap(),
            "--config",
            over.to_str().unwrap(),
        ],
        dir.path(),
    );
    assert!(!o.status.success());
    let err = text(&o);
    assert!(
        err.contains("nope") && err.contains("web") && err.contains("files"),
        "{err}"
    );

    // --none: only the session and the agent API; tunnels come by API,
    // by name from the config file or in full.
    let mut child = tokio::process::Command::new(bin())
        .args(["start", "--none", "--web-addr", "127.0.0.1:0"])
        .args(configs)
        .env("GANGWAY_CONFIG", dir.path().join("none.yml"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout));
    let web = tokio::time::timeout(crate::support::DEADLINE, async {
        while let Some(l) = lines.next_line().await.unwrap() {
            if let Some(u) = l.strip_prefix("Web Interface ") {
                return u.to_string();
            }
        }
        panic!("no Web Interface line");
    })
    .await
    .unwrap();
    let http = reqwest::Client::new();
    let online = eventually("session online", || async {
        let v: serde_json::Value = http
            .get(format!("{web}/api/status"))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        (v["session"]["status"] == "online").then_some(v)
    })
    .await;
    assert_eq!(online["session"]["status"], "online");
    let tunnels: serde_json::Value = http
        .get(format!("{web}/api/tunnels"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(tunnels["tunnels"], json!([]));
    let r = http
        .post(format!("{web}/api/tunnels"))
        .json(&json!({"name": "files"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let t: serde_json::Value = r.json().await.unwrap();
    assert!(
        t["public_url"]
            .as_str()
            .unwrap()
            .starts_with("https://cfg-files."),
        "{t}"
    );
    let r = client
        .get(format!("{}/hello", t["public_url"].as_str().unwrap()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let _ = child.kill().await;
}
