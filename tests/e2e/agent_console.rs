//! The agent's console UI in a real terminal: `gangway http` runs in a
//! detached tmux session (a pseudo-terminal), and the screen is read back
//! with `tmux capture-pane`.

use std::process::Command;

use crate::support::{app, bin, eventually, Server};

/// A tmux server of our own (its own socket), torn down on drop.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn cmd(&self) -> Command {
        let mut c = Command::new("tmux");
        c.args(["-L", &self.socket]);
        c
    }

    fn screen(&self) -> String {
        let out = self
            .cmd()
            .args(["capture-pane", "-p", "-t", "agent"])
            .output()
            .expect("tmux capture-pane");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn alive(&self) -> bool {
        self.cmd()
            .args(["has-session", "-t", "agent"])
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd().arg("kill-server").status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_ui_shows_status_forwarding_metrics_and_requests() {
    let server = Server::start().await;
    let app = app::start().await;
    let tmux = Tmux {
        socket: format!("gangway-test-{}", std::process::id()),
    };
    let dir = server.data_dir();
    let command = format!(
        "GANGWAY_CONFIG={cfg} {bin} http {app} --data-dir {dir} --web-addr 127.0.0.1:0",
        cfg = dir.join("no-agent-config.yml").display(),
        bin = bin(),
        dir = dir.display(),
    );
    let started = tmux
        .cmd()
        .args([
            "new-session",
            "-d",
            "-s",
            "agent",
            "-x",
            "120",
            "-y",
            "40",
            &command,
        ])
        .status()
        .expect("tmux new-session");
    assert!(started.success());

    let screen = eventually("the console's status screen", || async {
        let s = tmux.screen();
        (s.contains("Forwarding") && s.contains("online")).then_some(s)
    })
    .await;
    for want in [
        "gangway",
        "(Ctrl+C to quit)",
        "Session Status",
        "Version",
        env!("CARGO_PKG_VERSION"),
        "Region",
        "Web Interface",
        "http://127.0.0.1:",
        "Connections",
        "ttl",
        "opn",
        "rt1",
        "rt5",
        "p50",
        "p90",
        "HTTP Requests",
    ] {
        assert!(screen.contains(want), "missing {want:?} in:\n{screen}");
    }
    let url = screen
        .lines()
        .find_map(|l| l.strip_prefix("Forwarding"))
        .and_then(|rest| rest.split_whitespace().next())
        .expect("a Forwarding line")
        .to_string();
    assert!(url.starts_with("https://"), "{url}");
    assert!(screen.contains(&format!("-> http://{app}")), "{screen}");

    let client = server.client();
    for path in ["/hello", "/missing-page"] {
        client
            .get(format!("{url}{path}"))
            .send()
            .await
            .expect("request through the tunnel");
    }
    // The request line shows when the response head is captured; the
    // connection counters settle once its stream has closed.
    let counters_of = |screen: &str| {
        screen
            .lines()
            .skip_while(|l| !l.starts_with("Connections"))
            .nth(1)
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    let screen = eventually("requests in the console", || async {
        let s = tmux.screen();
        let settled = counters_of(&s).get(1).is_some_and(|open| open == "0");
        (s.contains("/missing-page") && settled).then_some(s)
    })
    .await;
    let line = |path: &str| {
        screen
            .lines()
            .find(|l| l.starts_with("GET") && l.contains(path))
            .unwrap_or_else(|| panic!("no line for {path} in:\n{screen}"))
            .to_string()
    };
    assert!(line("/hello").ends_with("200 OK"), "{screen}");
    assert!(line("/missing-page").ends_with("404 Not Found"), "{screen}");
    // Newest first, and the connection counter moved.
    let pos = |p: &str| screen.find(p).unwrap_or(usize::MAX);
    assert!(pos("/missing-page") < pos("/hello"), "{screen}");
    let counters = counters_of(&screen);
    assert_eq!(counters.first().map(String::as_str), Some("2"), "{screen}");
    assert_eq!(counters.get(1).map(String::as_str), Some("0"), "{screen}");

    // Ctrl-C: the agent exits and leaves the terminal as it was.
    tmux.cmd()
        .args(["send-keys", "-t", "agent", "C-c"])
        .status()
        .expect("send C-c");
    eventually("the agent exits", || async {
        (!tmux.alive()).then_some(())
    })
    .await;
}
