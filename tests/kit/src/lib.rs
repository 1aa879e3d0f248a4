//! gangway-testkit: what the end-to-end tests and the benches share to
//! drive real `gangway` processes: the server on free loopback ports with
//! its own data dir, agents against it, the lines that say they are
//! ready, and processes that die with the test. Blocking std only; the
//! tests wrap the waits in their own async polling.

use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use gangway_config::server_info::SERVER_INFO_FILE;
use gangway_config::ServerInfo;

/// How long a wait lasts unless it says otherwise.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// A child process killed when dropped, so a failed run leaves nothing
/// behind.
pub struct Proc(pub Child);

impl Proc {
    /// Resident set size in KiB, from `/proc`.
    pub fn rss_kib(&self) -> Option<u64> {
        rss_kib(self.0.id())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Resident set size of `pid` in KiB, from `/proc`.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// `gangway server` on `dir`, every listener on a free loopback port,
/// with `threads` worker threads per listener. Not yet spawned: callers
/// add flags, environment and where its output goes.
pub fn server_command(bin: &Path, dir: &Path, threads: u32) -> Command {
    let mut cmd = Command::new(bin);
    cmd.args(["server", "--threads", &threads.to_string(), "--data-dir"])
        .arg(dir)
        .args([
            "--agent-addr",
            "127.0.0.1:0",
            "--http-addr",
            "127.0.0.1:0",
            "--https-addr",
            "127.0.0.1:0",
            "--api-addr",
            "127.0.0.1:0",
        ]);
    cmd
}

/// The `server.json` a server on `dir` writes once every listener is up.
pub fn server_info(dir: &Path) -> Option<ServerInfo> {
    let bytes = std::fs::read(dir.join(SERVER_INFO_FILE)).ok()?;
    ServerInfo::from_json(&bytes).ok()
}

/// An agent command (`http 8080 ...`, `tcp 22`) against the server on
/// `dir`. Agents run several at once: no web interface unless `args` ask
/// for one (no port to fight over), and never the user's own config file.
pub fn agent_command(bin: &Path, dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(bin);
    cmd.args(args).arg("--data-dir").arg(dir);
    if !args.contains(&"--web-addr") {
        cmd.args(["--web-addr", "false"]);
    }
    cmd.env("GANGWAY_CONFIG", dir.join("no-agent-config.yml"));
    cmd
}

/// The public URL of an agent's `Forwarding URL -> upstream` line.
pub fn forwarding_url(line: &str) -> Option<String> {
    let rest = line.strip_prefix("Forwarding ")?;
    Some(rest.split(" -> ").next()?.to_string())
}

/// Polls `f` every 20 ms until it returns `Some`, for at most `limit`.
pub fn wait_for<T>(
    what: &str,
    limit: Duration,
    mut f: impl FnMut() -> Option<T>,
) -> Result<T, String> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return Ok(v);
        }
        if Instant::now() > deadline {
            return Err(format!("timed out waiting for {what}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_forwarding_lines() {
        assert_eq!(
            forwarding_url("Forwarding https://a.example:7443 -> http://localhost:8000").as_deref(),
            Some("https://a.example:7443")
        );
        assert_eq!(forwarding_url("Region local"), None);
        let dir = Path::new("/tmp/d");
        let cmd = agent_command(Path::new("gangway"), dir, &["http", "80"]);
        let args: Vec<_> = cmd
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            args,
            ["http", "80", "--data-dir", "/tmp/d", "--web-addr", "false"]
        );
    }
}
