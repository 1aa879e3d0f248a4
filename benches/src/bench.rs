//! The bench harness: every load scenario, each running its systems
//! alternately in one run, written as one results table plus a plot of
//! the latency distributions.
//!
//! Run: `scripts/bench` (full profile: builds release binaries, installs
//! the peers, runs the criterion micro-benchmarks and then this), or
//! `scripts/bench --profile smoke` (what CI runs: short, and it fails only
//! when a scenario breaks — errors or wrong bytes — never on a number).
//!
//! Options: `--profile full|smoke`, `--only NAME,...` (scenarios: https, inspect,
//! handshake, fixed-rate, tcp-http, tcp-bulk, connect, sessions),
//! `--duration SECS`, `--rounds N`, `--sessions N,...`, `--out-dir DIR`, `--micro DIR`
//! (criterion's output directory, to add its estimates to the results).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use gangway_benches::load::{self, Target};
use gangway_benches::peers::{self, System};
use gangway_benches::report::{self, Key, Row, Section};
use gangway_benches::sessions::IdleSessions;
use gangway_benches::{
    flag_value, host_of, machine, median, median_sample, start_agent, start_app, start_server,
    today, wrk, Sample,
};

const SCENARIOS: [&str; 8] = [
    "https",
    "inspect",
    "handshake",
    "fixed-rate",
    "tcp-http",
    "tcp-bulk",
    "connect",
    "sessions",
];

#[derive(Debug, Clone)]
struct Profile {
    name: String,
    duration: u64,
    rounds: u32,
    /// wrk connections.
    connections: u32,
    /// Concurrent connect loops.
    workers: u32,
    /// Fixed request rates, req/s.
    rates: Vec<u32>,
    /// Idle session counts to measure at.
    sessions: Vec<usize>,
    only: Option<Vec<String>>,
    out_dir: PathBuf,
    micro: Option<PathBuf>,
}

impl Profile {
    fn full() -> Profile {
        Profile {
            name: "full".into(),
            duration: 10,
            rounds: 3,
            connections: 32,
            workers: 16,
            rates: vec![1000, 5000],
            sessions: vec![1000, 10_000],
            only: None,
            out_dir: PathBuf::from("benches/results"),
            micro: None,
        }
    }

    fn smoke() -> Profile {
        Profile {
            name: "smoke".into(),
            duration: 1,
            rounds: 1,
            connections: 8,
            workers: 4,
            rates: vec![200],
            sessions: vec![50],
            only: None,
            out_dir: PathBuf::from("target/bench-smoke"),
            micro: None,
        }
    }

    fn from_args() -> Result<Profile, String> {
        let args: Vec<String> = std::env::args().skip(1).collect();
        let smoke = args
            .windows(2)
            .any(|w| w[0] == "--profile" && w[1] == "smoke");
        let mut p = if smoke {
            Profile::smoke()
        } else {
            Profile::full()
        };
        let mut it = args.into_iter();
        while let Some(a) = it.next() {
            match a.as_str() {
                "--profile" => {
                    let name: String = flag_value(&a, &mut it)?;
                    if name != "full" && name != "smoke" {
                        return Err(format!("--profile {name:?}: use full or smoke"));
                    }
                }
                "--only" => {
                    let list: String = flag_value(&a, &mut it)?;
                    let names: Vec<String> = list.split(',').map(str::to_string).collect();
                    if let Some(bad) = names.iter().find(|n| !SCENARIOS.contains(&n.as_str())) {
                        return Err(format!(
                            "--only: no scenario {bad:?}; there are {}",
                            SCENARIOS.join(", ")
                        ));
                    }
                    p.only = Some(names);
                }
                "--duration" => p.duration = flag_value(&a, &mut it)?,
                "--sessions" => {
                    let list: String = flag_value(&a, &mut it)?;
                    p.sessions = list
                        .split(',')
                        .map(|n| n.parse().map_err(|e| format!("--sessions {n:?}: {e}")))
                        .collect::<Result<_, _>>()?;
                }
                "--rounds" => p.rounds = flag_value(&a, &mut it)?,
                "--out-dir" => p.out_dir = flag_value(&a, &mut it)?,
                "--micro" => p.micro = Some(flag_value(&a, &mut it)?),
                other => return Err(format!("unknown option {other}")),
            }
        }
        Ok(p)
    }

    fn wants(&self, scenario: &str) -> bool {
        self.only
            .as_ref()
            .is_none_or(|l| l.iter().any(|n| n == scenario))
    }

    fn command(&self) -> String {
        let mut c = format!("scripts/bench --profile {}", self.name);
        if let Some(only) = &self.only {
            c.push_str(&format!(" --only {}", only.join(",")));
        }
        c
    }
}

/// What the run produced: sections measured and scenarios that broke.
#[derive(Default)]
struct Outcome {
    sections: Vec<Section>,
    broken: Vec<String>,
}

impl Outcome {
    /// Records a scenario group's result; a failure is reported, not fatal,
    /// so one broken scenario does not hide the others.
    fn take(&mut self, what: &str, r: Result<Vec<Section>, String>) {
        match r {
            Ok(s) => self.sections.extend(s),
            Err(e) => {
                eprintln!("BROKEN {what}: {e}");
                self.broken.push(format!("{what}: {e}"));
            }
        }
    }
}

/// Runs `measure` on every system `rounds` times, alternating, and
/// returns each system's runs.
fn alternate<T>(
    systems: usize,
    rounds: u32,
    mut measure: impl FnMut(usize) -> Result<T, String>,
) -> Result<Vec<Vec<T>>, String> {
    let mut runs: Vec<Vec<T>> = (0..systems).map(|_| Vec::new()).collect();
    for _ in 0..rounds {
        for (i, r) in runs.iter_mut().enumerate() {
            r.push(measure(i)?);
        }
    }
    Ok(runs)
}

/// Direct, nginx and Gangway in front of the same app, and where each
/// takes HTTP load.
struct HttpSystems {
    systems: Vec<System>,
    targets: Vec<Target>,
}

fn http_systems(dir: &Path, app: SocketAddr) -> Result<HttpSystems, String> {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])
        .map_err(|e| e.to_string())?;
    let nginx = peers::nginx(
        dir,
        app,
        &cert.cert.pem(),
        &cert.signing_key.serialize_pem(),
    )?;
    let (server, info) = start_server(dir, 1, &[])?;
    let (agent, url) = start_agent(dir, &["http", &app.to_string()])?;
    let https: SocketAddr = info
        .https_addr
        .parse()
        .map_err(|e| format!("https_addr {}: {e}", info.https_addr))?;
    let gangway = System {
        name: "gangway",
        note: "edge (1 listener thread) + agent; HTTPS at the edge, muxado stream per request, keep-alive pool from agent to app, inspection on (the default)",
        public: vec![https],
        procs: vec![server, agent],
        other_pids: Vec::new(),
    };
    let targets = vec![
        Target {
            addr: app,
            tls: false,
            host: "localhost".into(),
        },
        Target {
            addr: nginx.public[0],
            tls: true,
            host: "localhost".into(),
        },
        Target {
            addr: https,
            tls: true,
            host: host_of(&url),
        },
    ];
    let systems = vec![
        System::direct(&[app], "wrk straight at the app over plain HTTP"),
        nginx,
        gangway,
    ];
    for t in &targets {
        load::probe_http(t)?;
    }
    Ok(HttpSystems { systems, targets })
}

/// wrk at saturation on each system's target, alternated.
fn wrk_rows(
    systems: &[System],
    targets: &[Target],
    p: &Profile,
    extra: &[String],
) -> Result<Vec<Row>, String> {
    let runs = alternate(systems.len(), p.rounds, |i| {
        let t = &targets[i];
        let s = wrk(&t.url(), Some(&t.host), p.connections, p.duration, extra)?;
        eprintln!(
            "  {}: {:.0} req/s, p50 {:.3} ms, p99 {:.3} ms",
            systems[i].name, s.rps, s.p50_ms, s.p99_ms
        );
        Ok(s)
    })?;
    // wrk is closed-loop: make sure the correct bytes still come back.
    for t in targets {
        load::probe_http(t)?;
    }
    Ok(rows_of(systems, &runs))
}

fn http_scenarios(dir: &Path, app: SocketAddr, p: &Profile) -> Result<Vec<Section>, String> {
    let hs = http_systems(dir, app)?;
    for t in &hs.targets {
        wrk(&t.url(), Some(&t.host), p.connections, 1, &[])?;
    }
    let mut out = Vec::new();
    if p.wants("https") {
        eprintln!("https: small responses over keep-alive");
        out.push(Section {
            scenario: "HTTPS keep-alive, 15 B responses".into(),
            key: Key::Rps,
            how: format!(
                "wrk, 1 thread, {} keep-alive connections, {} s × {} rounds (medians); direct is plain HTTP to the app, nginx and Gangway terminate TLS",
                p.connections, p.duration, p.rounds
            ),
            rows: wrk_rows(&hs.systems, &hs.targets, p, &[])?,
        });
    }
    if p.wants("handshake") {
        eprintln!("handshake: a new connection per request");
        let close = ["-H".to_string(), "Connection: close".to_string()];
        out.push(Section {
            scenario: "new connection per request".into(),
            key: Key::Rps,
            how: format!(
                "wrk with `Connection: close`, {} connections, {} s × {} rounds: connection setup rate (TCP for direct, TCP + full TLS handshake for nginx and Gangway)",
                p.connections, p.duration, p.rounds
            ),
            rows: wrk_rows(&hs.systems, &hs.targets, p, &close)?,
        });
    }
    if p.wants("fixed-rate") {
        for &rate in &p.rates {
            eprintln!("fixed-rate: {rate} req/s");
            let conns = 16;
            let runs = alternate(hs.systems.len(), p.rounds, |i| {
                let s = load::fixed_rate(&hs.targets[i], rate, p.duration, conns)?;
                eprintln!(
                    "  {}: {:.0} req/s, p50 {:.3} ms, p99 {:.3} ms",
                    hs.systems[i].name, s.rps, s.p50_ms, s.p99_ms
                );
                Ok(s)
            })?;
            out.push(Section {
                scenario: format!("HTTPS at {rate} req/s"),
                key: Key::P99,
                how: format!(
                    "open-loop client (ours), {rate} req/s on {conns} keep-alive connections for {} s × {} rounds; latency from when each request was due; every body checked",
                    p.duration, p.rounds
                ),
                rows: rows_of(&hs.systems, &runs),
            });
        }
    }
    Ok(out)
}

/// Requests/s through one edge and two agents on the same app, one with
/// inspection off and one with it on (the default).
fn inspect_scenario(dir: &Path, app: SocketAddr, p: &Profile) -> Result<Vec<Section>, String> {
    let (_server, info) = start_server(dir, 1, &[])?;
    let https: SocketAddr = info
        .https_addr
        .parse()
        .map_err(|e| format!("https_addr {}: {e}", info.https_addr))?;
    let app_arg = app.to_string();
    let mut systems = Vec::new();
    let mut targets = Vec::new();
    for (name, note, extra) in [
        (
            "inspect off",
            "gangway http --inspect=false: nothing captured",
            "--inspect=false",
        ),
        (
            "inspect on",
            "gangway http (inspection on, the default): every exchange captured with its bodies",
            "--inspect=true",
        ),
    ] {
        let (agent, url) = start_agent(dir, &["http", &app_arg, extra])?;
        systems.push(System {
            name,
            note,
            public: vec![https],
            procs: vec![agent],
            other_pids: Vec::new(),
        });
        targets.push(Target {
            addr: https,
            tls: true,
            host: host_of(&url),
        });
    }
    for t in &targets {
        load::probe_http(t)?;
        wrk(&t.url(), Some(&t.host), p.connections, 1, &[])?;
    }
    eprintln!("inspect: the same agent with inspection off and on");
    let rows = wrk_rows(&systems, &targets, p, &[])?;
    Ok(vec![Section {
        scenario: "agent inspection off vs on".into(),
        key: Key::Rps,
        how: format!(
            "wrk, 1 thread, {} keep-alive connections, {} s × {} rounds (medians), HTTPS through one edge to two agents on the same app; RSS is the agent's",
            p.connections, p.duration, p.rounds
        ),
        rows,
    }])
}

/// TCP tunnels to the same three services: iperf3, echo, the HTTP app.
fn tcp_scenarios(dir: &Path, app: SocketAddr, p: &Profile) -> Result<Vec<Section>, String> {
    let (_iperf_server, iperf_addr) = load::start_iperf_server()?;
    let echo = load::start_echo()?;
    let targets = [iperf_addr, echo, app];
    let systems = vec![
        System::direct(&targets, "straight to iperf3, the echo service and the app"),
        peers::gangway_tcp(dir, &targets)?,
        peers::rathole(dir, &targets)?,
        peers::bore(&targets)?,
    ];
    let big = load::pattern(1 << 20);
    // Each tunnel becomes ready on its own (bore runs a client per
    // service): wait for all three before checking bytes.
    for s in &systems {
        let wait = |what: &str, ok: &dyn Fn() -> bool| {
            gangway_benches::wait_for(&format!("{} {what} tunnel", s.name), || ok().then_some(()))
        };
        wait("iperf3", &|| {
            std::net::TcpStream::connect_timeout(&s.public[0], std::time::Duration::from_secs(1))
                .is_ok()
        })?;
        wait("echo", &|| {
            load::probe_echo(s.public[1], load::PING).is_ok()
        })?;
        wait("HTTP", &|| {
            load::probe_http(&http_target(s.public[2])).is_ok()
        })?;
        load::probe_echo(s.public[1], &big)?;
    }
    let mut out = Vec::new();
    if p.wants("tcp-http") {
        eprintln!("tcp-http: HTTP through TCP tunnels");
        let runs = alternate(systems.len(), p.rounds, |i| {
            let t = http_target(systems[i].public[2]);
            let s = wrk(&t.url(), Some(&t.host), p.connections, p.duration, &[])?;
            eprintln!(
                "  {}: {:.0} req/s, p99 {:.3} ms",
                systems[i].name, s.rps, s.p99_ms
            );
            Ok(s)
        })?;
        for s in &systems {
            load::probe_http(&http_target(s.public[2]))?;
        }
        out.push(Section {
            scenario: "HTTP through a TCP tunnel".into(),
            key: Key::Rps,
            how: format!(
                "wrk, {} keep-alive connections, {} s × {} rounds, plain HTTP carried by each TCP tunnel",
                p.connections, p.duration, p.rounds
            ),
            rows: rows_of(&systems, &runs),
        });
    }
    if p.wants("tcp-bulk") {
        eprintln!("tcp-bulk: iperf3");
        let runs = alternate(systems.len(), p.rounds, |i| {
            let bps = load::iperf(systems[i].public[0], p.duration)?;
            eprintln!("  {}: {:.2} Gbit/s", systems[i].name, bps / 1e9);
            Ok(bps)
        })?;
        for s in &systems {
            load::probe_echo(s.public[1], &big)?;
        }
        out.push(Section {
            scenario: "bulk TCP throughput".into(),
            key: Key::MbPerSec,
            how: format!(
                "iperf3, one TCP stream, {} s × {} rounds; a 1 MiB echo through each system checked before and after",
                p.duration, p.rounds
            ),
            rows: systems
                .iter()
                .zip(&runs)
                .map(|(s, r)| Row {
                    system: s.name.to_string(),
                    mb_s: Some(median(r.clone()) / 8.0 / 1e6),
                    rss_mib: s.rss_mib(),
                    ..Row::default()
                })
                .collect(),
        });
    }
    if p.wants("connect") {
        eprintln!("connect: connection setup through TCP tunnels");
        let runs = alternate(systems.len(), p.rounds, |i| {
            let s = load::connection_rate(systems[i].public[1], p.workers, p.duration)?;
            eprintln!(
                "  {}: {:.0} conn/s, p99 {:.3} ms",
                systems[i].name, s.rps, s.p99_ms
            );
            Ok(s)
        })?;
        out.push(Section {
            scenario: "TCP connections/s".into(),
            key: Key::Rps,
            how: format!(
                "{} loops of connect / send 32 B / half-close / read the echo / close, {} s × {} rounds; req/s here is connections/s",
                p.workers, p.duration, p.rounds
            ),
            rows: rows_of(&systems, &runs),
        });
    }
    Ok(out)
}

fn http_target(addr: SocketAddr) -> Target {
    Target {
        addr,
        tls: false,
        host: "localhost".into(),
    }
}

fn rows_of(systems: &[System], runs: &[Vec<Sample>]) -> Vec<Row> {
    systems
        .iter()
        .zip(runs)
        .map(|(s, r)| Row::from_sample(s.name, &median_sample(r), s.rss_mib()))
        .collect()
}

/// Edge RSS with no sessions and at each session count.
fn sessions_scenario(dir: &Path, app: SocketAddr, p: &Profile) -> Result<Vec<Section>, String> {
    let (server, info) = start_server(dir, 1, &[])?;
    let sim = IdleSessions::new(&info, app)?;
    // One session first, so one-time allocations are not counted per session.
    sim.grow_to(1)?;
    std::thread::sleep(std::time::Duration::from_secs(1));
    let rss = || {
        server
            .rss_kib()
            .map(|k| k as f64 / 1024.0)
            .ok_or("the edge's RSS")
    };
    let base = rss()?;
    let mut rows = vec![Row {
        system: "gangway edge, 1 session".into(),
        rss_mib: Some(base),
        ..Row::default()
    }];
    let mut per = Vec::new();
    for &n in &p.sessions {
        eprintln!("sessions: growing to {n}");
        sim.grow_to(n)?;
        std::thread::sleep(std::time::Duration::from_secs(2));
        let mib = rss()?;
        per.push(format!(
            "{:.1} KiB per session at {n}",
            (mib - base) * 1024.0 / (n.saturating_sub(1).max(1)) as f64
        ));
        rows.push(Row {
            system: format!("gangway edge, {n} sessions"),
            rss_mib: Some(mib),
            ..Row::default()
        });
    }
    drop(sim);
    Ok(vec![Section {
        scenario: "idle agent sessions".into(),
        key: Key::Rss,
        how: format!(
            "a session simulator in the harness opens real agent sessions (TLS + muxado, Auth, one HTTPS tunnel bound, heartbeats every 10 s), {} handshakes at a time, then the edge's RSS is read; {}",
            gangway_benches::sessions::CONNECTING_AT_ONCE,
            per.join(", ")
        ),
        rows,
    }])
}

/// Criterion's mean estimate for each benchmark under `dir`.
fn micro_table(dir: &Path) -> Result<String, String> {
    let mut found = Vec::new();
    collect_estimates(dir, dir, &mut found);
    if found.is_empty() {
        return Err(format!("no criterion estimates under {}", dir.display()));
    }
    found.sort_by(|a, b| a.0.cmp(&b.0));
    let mut md = String::from("| benchmark | mean | 95% interval |\n|---|---:|---:|\n");
    for (name, mean, lo, hi) in found {
        md.push_str(&format!(
            "| {name} | {} | {} – {} |\n",
            ns(mean),
            ns(lo),
            ns(hi)
        ));
    }
    Ok(md)
}

fn ns(v: f64) -> String {
    if v >= 1000.0 {
        format!("{:.2} µs", v / 1000.0)
    } else {
        format!("{v:.1} ns")
    }
}

fn collect_estimates(root: &Path, dir: &Path, out: &mut Vec<(String, f64, f64, f64)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n == "new") {
                let est = path.join("estimates.json");
                let Some(v) = std::fs::read(&est)
                    .ok()
                    .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
                else {
                    continue;
                };
                let get = |p: &str| v.pointer(p).and_then(|x| x.as_f64());
                if let (Some(m), Some(lo), Some(hi)) = (
                    get("/mean/point_estimate"),
                    get("/mean/confidence_interval/lower_bound"),
                    get("/mean/confidence_interval/upper_bound"),
                ) {
                    let name = dir
                        .strip_prefix(root)
                        .map(|p| p.display().to_string())
                        .unwrap_or_default();
                    out.push((name, m, lo, hi));
                }
            } else if path
                .file_name()
                .is_some_and(|n| n != "report" && n != "base")
            {
                collect_estimates(root, &path, out);
            }
        }
    }
}

fn run() -> Result<bool, String> {
    let p = Profile::from_args()?;
    let started = std::time::Instant::now();
    let app = start_app()?;
    let mut outcome = Outcome::default();
    let wants_http = ["https", "handshake", "fixed-rate"]
        .iter()
        .any(|s| p.wants(s));
    if wants_http {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        outcome.take("HTTP scenarios", http_scenarios(dir.path(), app, &p));
    }
    if p.wants("inspect") {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        outcome.take("inspect", inspect_scenario(dir.path(), app, &p));
    }
    if ["tcp-http", "tcp-bulk", "connect"]
        .iter()
        .any(|s| p.wants(s))
    {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        outcome.take("TCP scenarios", tcp_scenarios(dir.path(), app, &p));
    }
    if p.wants("sessions") {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        outcome.take("sessions", sessions_scenario(dir.path(), app, &p));
    }

    let date = today();
    let svg_name = format!("{date}-latency.svg");
    let mut md = format!(
        "# Gangway load benchmarks ({} profile)\n\n\
         - date: {date}\n- machine: {}\n- command: `{}`\n- gangway: {}\n- wall time: {:.0} s\n\
         - everything on one machine: load tools, systems and services share the cores, so compare ratios within this run; each scenario alternates its systems {} time(s) and shows medians\n\n",
        p.name,
        machine(),
        p.command(),
        git_rev(),
        started.elapsed().as_secs_f64(),
        p.rounds,
    );
    md.push_str(&report::markdown(&outcome.sections));
    md.push_str(&format!(
        "\nLatency distributions: [{svg_name}]({svg_name})\n\n![latency distributions]({svg_name})\n"
    ));
    if let Some(dir) = &p.micro {
        md.push_str("\n## Micro-benchmarks (criterion, `cargo bench -p gangway-benches`)\n\n");
        match micro_table(dir) {
            Ok(t) => md.push_str(&t),
            Err(e) => outcome.broken.push(format!("micro-benchmarks: {e}")),
        }
    }
    if !outcome.broken.is_empty() {
        md.push_str("\n## Broken scenarios\n\n");
        for b in &outcome.broken {
            md.push_str(&format!("- {b}\n"));
        }
    }
    std::fs::create_dir_all(&p.out_dir).map_err(|e| e.to_string())?;
    let md_path = p.out_dir.join(format!("{date}.md"));
    std::fs::write(&md_path, &md).map_err(|e| format!("{}: {e}", md_path.display()))?;
    let svg_path = p.out_dir.join(&svg_name);
    std::fs::write(&svg_path, report::svg(&outcome.sections))
        .map_err(|e| format!("{}: {e}", svg_path.display()))?;
    print!("{md}");
    eprintln!("wrote {} and {}", md_path.display(), svg_path.display());
    Ok(outcome.broken.is_empty())
}

fn git_rev() -> String {
    std::process::Command::new("git")
        .args(["describe", "--always", "--dirty"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}

fn main() -> std::process::ExitCode {
    match run() {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("bench: some scenarios are broken (see above)");
            std::process::ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("bench: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
