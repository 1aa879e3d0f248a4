//! The agent's console UI, drawn on stdout when it is a terminal: session
//! status, version, region, web interface, `Forwarding` lines, connection
//! metrics (ttl opn rt1 rt5 p50 p90) and the latest HTTP requests, as the
//! ngrok agent shows them.

use std::collections::VecDeque;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use gangway_agent::http_forward::RequestLine;
use gangway_agent::state::SessionStatus;
use gangway_agent::AgentState;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

/// Requests listed at the bottom.
const RECENT: usize = 10;
/// Redraws at least this often (metrics move on their own).
const REFRESH: Duration = Duration::from_secs(1);

/// What the console shows besides the shared state.
pub struct Console {
    pub state: Arc<AgentState>,
    /// `http://127.0.0.1:4040`, or `None` when the web UI is off.
    pub web_url: Option<String>,
    /// The region the user asked for, if any.
    pub region_asked: Option<String>,
}

impl Console {
    /// Draws until `stop`; restores the terminal after.
    pub async fn run(self, stop: CancellationToken) {
        let mut requests = self.state.requests.subscribe();
        let mut recent: VecDeque<RequestLine> = VecDeque::with_capacity(RECENT);
        // The alternate screen: the user's scrollback is left as it was.
        print_flush("\x1b[?1049h\x1b[?25l");
        loop {
            print_flush(&self.frame(&recent));
            tokio::select! {
                r = requests.recv() => match r {
                    Ok(line) => {
                        if recent.len() == RECENT {
                            recent.pop_back();
                        }
                        recent.push_front(line);
                    }
                    Err(RecvError::Lagged(_)) => {}
                    Err(RecvError::Closed) => break,
                },
                _ = tokio::time::sleep(REFRESH) => {}
                _ = stop.cancelled() => break,
            }
        }
        print_flush("\x1b[?25h\x1b[?1049l");
    }

    /// One screen: each line clears what was there before.
    fn frame(&self, recent: &VecDeque<RequestLine>) -> String {
        let session = self.state.session();
        let tunnels = self.state.tunnels();
        let mut lines: Vec<String> =
            vec![format!("{:<62}(Ctrl+C to quit)", "gangway"), String::new()];
        let status = match session.status {
            SessionStatus::Online => "\x1b[32monline\x1b[0m".to_string(),
            SessionStatus::Connecting => "connecting".to_string(),
            SessionStatus::Reconnecting => {
                format!("\x1b[33mreconnecting\x1b[0m ({})", session.last_error)
            }
        };
        let mut row = |k: &str, v: String| lines.push(format!("{k:<30}{v}"));
        row("Session Status", status);
        row("Version", env!("CARGO_PKG_VERSION").to_string());
        let region = match &self.region_asked {
            Some(asked)
                if !session.region.is_empty() && !asked.eq_ignore_ascii_case(&session.region) =>
            {
                format!("{} (asked for {asked})", session.region)
            }
            _ => session.region.clone(),
        };
        row("Region", region);
        row(
            "Web Interface",
            self.web_url.clone().unwrap_or_else(|| "off".into()),
        );
        for t in &tunnels {
            row("Forwarding", format!("{} -> {}", t.public_url, t.addr));
        }
        lines.push(String::new());
        let (mut ttl, mut opn, mut rt1, mut rt5, mut p50, mut p90) =
            (0u64, 0i64, 0.0, 0.0, 0u64, 0u64);
        for t in &tunnels {
            let c = t.route.metrics.conns();
            ttl += c.count;
            opn += t.route.metrics.open();
            rt1 += c.rate1;
            rt5 += c.rate5;
            p50 = p50.max(c.p50);
            p90 = p90.max(c.p90);
        }
        let secs = |ns: u64| ns as f64 / 1e9;
        lines.push(format!(
            "{:<30}{:<8}{:<8}{:<8}{:<8}{:<8}{:<8}",
            "Connections", "ttl", "opn", "rt1", "rt5", "p50", "p90"
        ));
        lines.push(format!(
            "{:<30}{:<8}{:<8}{:<8.2}{:<8.2}{:<8.2}{:<8.2}",
            "",
            ttl,
            opn,
            rt1,
            rt5,
            secs(p50),
            secs(p90)
        ));
        lines.push(String::new());
        if tunnels.iter().any(|t| t.route.http) {
            lines.push("HTTP Requests".into());
            lines.push("-------------".into());
            lines.push(String::new());
            for r in recent {
                lines.push(format!(
                    "{:<8}{:<42} {}",
                    r.method,
                    truncate(&r.path, 42),
                    gangway_agent::inspect::status_line(r.status)
                ));
            }
        }
        let mut out = String::from("\x1b[H");
        for l in lines {
            out.push_str(&l);
            out.push_str("\x1b[K\r\n");
        }
        out.push_str("\x1b[J");
        out
    }
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        return s.to_string();
    }
    let mut t: String = s.chars().take(n.saturating_sub(3)).collect();
    t.push_str("...");
    t
}

fn print_flush(s: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(s.as_bytes());
    let _ = out.flush();
}
