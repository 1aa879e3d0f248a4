//! Benchmark: TCP tunnels. Bulk throughput (iperf3) and short-connection
//! rate through a Gangway TCP tunnel, against the same load straight at the
//! service and through rathole and bore, systems alternated in one run.
//! Writes a Markdown table to `benches/results/`.
//!
//! Run: `scripts/bench tcp` (builds release binaries, installs iperf3,
//! rathole 0.5 and bore-cli 0.6, then runs this).
//! Options: `--duration SECS` per measurement (default 5), `--rounds N`
//! (default 3), `--workers N` concurrent connection loops (default 16),
//! `--only NAME,...` (direct, gangway, rathole, bore), `--out PATH`.

use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use gangway_benches::{
    flag_value, machine, median, start_agent, start_server, today, wait_for, write_results, Proc,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Bytes each short connection sends and gets back.
const PING: &[u8] = &[0x5a; 32];

struct Opts {
    duration_secs: u64,
    rounds: u32,
    workers: u32,
    only: Option<Vec<String>>,
    out: Option<PathBuf>,
}

fn parse_opts() -> Result<Opts, String> {
    let mut o = Opts {
        duration_secs: 5,
        rounds: 3,
        workers: 16,
        only: None,
        out: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--duration" => o.duration_secs = flag_value(&a, &mut args)?,
            "--rounds" => o.rounds = flag_value(&a, &mut args)?,
            "--workers" => o.workers = flag_value(&a, &mut args)?,
            "--only" => {
                let list: String = flag_value(&a, &mut args)?;
                o.only = Some(list.split(',').map(str::to_string).collect());
            }
            "--out" => o.out = Some(flag_value::<PathBuf>(&a, &mut args)?),
            other => return Err(format!("unknown option {other}")),
        }
    }
    Ok(o)
}

fn free_port() -> Result<u16, String> {
    let l = StdListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    Ok(l.local_addr().map_err(|e| e.to_string())?.port())
}

/// An echo service on its own thread: reads to EOF, sends it all back,
/// closes.
fn start_echo() -> Result<SocketAddr, String> {
    let std_listener = StdListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let addr = std_listener.local_addr().map_err(|e| e.to_string())?;
    std_listener
        .set_nonblocking(true)
        .map_err(|e| e.to_string())?;
    std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        rt.block_on(async move {
            let Ok(listener) = tokio::net::TcpListener::from_std(std_listener) else {
                return;
            };
            while let Ok((mut tcp, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    if tcp.read_to_end(&mut buf).await.is_ok() {
                        let _ = tcp.write_all(&buf).await;
                        let _ = tcp.shutdown().await;
                    }
                });
            }
        });
    });
    Ok(addr)
}

fn start_iperf_server() -> Result<(Proc, SocketAddr), String> {
    let port = free_port()?;
    let child = Command::new("iperf3")
        .args(["-s", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("starting iperf3 (install it: apt-get install iperf3): {e}"))?;
    let proc = Proc(child);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    // A bare connect is harmless: iperf3 drops it and keeps serving.
    wait_for("iperf3 server", || {
        std::net::TcpStream::connect(addr).ok().map(|_| ())
    })?;
    Ok((proc, addr))
}

/// One system under test: where its two public ports are, and its
/// processes (kept alive until it is dropped).
struct System {
    name: &'static str,
    note: &'static str,
    iperf: SocketAddr,
    echo: SocketAddr,
    procs: Vec<Proc>,
}

impl System {
    fn rss_mib(&self) -> Option<f64> {
        let kib: Option<u64> = self.procs.iter().map(Proc::rss_kib).sum();
        kib.map(|k| k as f64 / 1024.0)
    }
}

/// Echo round trip through `addr`, used to wait until a tunnel carries data.
fn echo_works(addr: SocketAddr) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let mut reply = Vec::new();
    s.write_all(PING).is_ok()
        && s.shutdown(std::net::Shutdown::Write).is_ok()
        && s.read_to_end(&mut reply).is_ok()
        && reply == PING
}

fn port_of(url: &str) -> Result<u16, String> {
    url.rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| format!("no port in {url}"))
}

fn gangway(dir: &Path, iperf: SocketAddr, echo: SocketAddr) -> Result<System, String> {
    let (server, _) = start_server(dir, 1, &[])?;
    let (a1, u1) = start_agent(dir, &["tcp", &iperf.to_string()])?;
    let (a2, u2) = start_agent(dir, &["tcp", &echo.to_string()])?;
    let sys = System {
        name: "gangway",
        note: "edge + 2 agents; agent link is TLS (BoringSSL) + muxado, one stream per connection",
        iperf: SocketAddr::from(([127, 0, 0, 1], port_of(&u1)?)),
        echo: SocketAddr::from(([127, 0, 0, 1], port_of(&u2)?)),
        procs: vec![server, a1, a2],
    };
    wait_for("gangway echo tunnel", || echo_works(sys.echo).then_some(()))?;
    Ok(sys)
}

fn rathole(dir: &Path, iperf: SocketAddr, echo: SocketAddr) -> Result<System, String> {
    let (control, p_iperf, p_echo) = (free_port()?, free_port()?, free_port()?);
    let server_toml = format!(
        "[server]\nbind_addr = \"127.0.0.1:{control}\"\n\
         [server.services.iperf]\ntoken = \"bench\"\nbind_addr = \"127.0.0.1:{p_iperf}\"\n\
         [server.services.echo]\ntoken = \"bench\"\nbind_addr = \"127.0.0.1:{p_echo}\"\n"
    );
    let client_toml = format!(
        "[client]\nremote_addr = \"127.0.0.1:{control}\"\n\
         [client.services.iperf]\ntoken = \"bench\"\nlocal_addr = \"{iperf}\"\n\
         [client.services.echo]\ntoken = \"bench\"\nlocal_addr = \"{echo}\"\n"
    );
    let (s_path, c_path) = (
        dir.join("rathole-server.toml"),
        dir.join("rathole-client.toml"),
    );
    std::fs::write(&s_path, server_toml).map_err(|e| e.to_string())?;
    std::fs::write(&c_path, client_toml).map_err(|e| e.to_string())?;
    let spawn = |flag: &str, path: &Path| {
        Command::new("rathole")
            .arg(flag)
            .arg(path)
            .env("RUST_LOG", "error")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map(Proc)
            .map_err(|e| format!("starting rathole (cargo install rathole --version 0.5.0): {e}"))
    };
    let server = spawn("--server", &s_path)?;
    let client = spawn("--client", &c_path)?;
    let sys = System {
        name: "rathole 0.5",
        note: "server + client; plain TCP transport (no encryption), default config",
        iperf: SocketAddr::from(([127, 0, 0, 1], p_iperf)),
        echo: SocketAddr::from(([127, 0, 0, 1], p_echo)),
        procs: vec![server, client],
    };
    wait_for("rathole echo tunnel", || echo_works(sys.echo).then_some(()))?;
    Ok(sys)
}

fn bore(iperf: SocketAddr, echo: SocketAddr) -> Result<System, String> {
    let (p_iperf, p_echo) = (free_port()?, free_port()?);
    let server = Command::new("bore")
        .args(["server", "--bind-addr", "127.0.0.1"])
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map(Proc)
        .map_err(|e| format!("starting bore (cargo install bore-cli --version 0.6.0): {e}"))?;
    // bore's control port is fixed (7835).
    wait_for("bore server", || {
        std::net::TcpStream::connect("127.0.0.1:7835")
            .ok()
            .map(|_| ())
    })?;
    let client = |local: SocketAddr, port: u16| {
        Command::new("bore")
            .args([
                "local",
                &local.port().to_string(),
                "--local-host",
                "127.0.0.1",
            ])
            .args(["--to", "127.0.0.1", "--port", &port.to_string()])
            .env("RUST_LOG", "error")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map(Proc)
            .map_err(|e| format!("starting bore local: {e}"))
    };
    let c1 = client(iperf, p_iperf)?;
    let c2 = client(echo, p_echo)?;
    let sys = System {
        name: "bore 0.6",
        note: "server + 2 clients; plain TCP, a new control round trip and data connection per connection",
        iperf: SocketAddr::from(([127, 0, 0, 1], p_iperf)),
        echo: SocketAddr::from(([127, 0, 0, 1], p_echo)),
        procs: vec![server, c1, c2],
    };
    wait_for("bore echo tunnel", || echo_works(sys.echo).then_some(()))?;
    Ok(sys)
}

/// iperf3 for `secs` seconds through `addr`; received bits/s.
fn iperf(addr: SocketAddr, secs: u64) -> Result<f64, String> {
    let out = Command::new("iperf3")
        .args(["-c", "127.0.0.1", "-p", &addr.port().to_string()])
        .args(["-t", &secs.to_string(), "-J"])
        .output()
        .map_err(|e| format!("running iperf3: {e}"))?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(|e| {
        format!(
            "iperf3 output is not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })?;
    if let Some(err) = v.get("error").and_then(|e| e.as_str()) {
        return Err(format!("iperf3 through {addr}: {err}"));
    }
    v.pointer("/end/sum_received/bits_per_second")
        .and_then(|b| b.as_f64())
        .filter(|b| *b > 0.0)
        .ok_or_else(|| format!("iperf3 through {addr} measured nothing"))
}

/// What the short-connection loop measured.
#[derive(Debug, Clone, Copy, Default)]
struct ConnSample {
    per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
}

/// `workers` loops, each: connect, send 32 bytes, half-close, read the
/// echo to EOF, close. Any failure or wrong reply fails the scenario.
fn connection_rate(addr: SocketAddr, workers: u32, secs: u64) -> Result<ConnSample, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async move {
        let deadline = Instant::now() + Duration::from_secs(secs);
        let tasks: Vec<_> = (0..workers)
            .map(|_| {
                tokio::spawn(async move {
                    let mut lat = Vec::new();
                    while Instant::now() < deadline {
                        let t0 = Instant::now();
                        let mut s = tokio::net::TcpStream::connect(addr)
                            .await
                            .map_err(|e| format!("connect {addr}: {e}"))?;
                        s.write_all(PING).await.map_err(|e| format!("write: {e}"))?;
                        s.shutdown().await.map_err(|e| format!("shutdown: {e}"))?;
                        let mut reply = Vec::with_capacity(PING.len());
                        s.read_to_end(&mut reply)
                            .await
                            .map_err(|e| format!("read: {e}"))?;
                        if reply != PING {
                            return Err(format!(
                                "wrong echo through {addr}: {} bytes",
                                reply.len()
                            ));
                        }
                        // Both sides are done: skip TIME_WAIT so a long run
                        // does not run out of loopback ports.
                        let _ = s.set_zero_linger();
                        lat.push(t0.elapsed().as_secs_f64() * 1000.0);
                    }
                    Ok::<_, String>(lat)
                })
            })
            .collect();
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.map_err(|e| e.to_string())??);
        }
        if all.is_empty() {
            return Err(format!("no connection completed through {addr}"));
        }
        all.sort_by(|a, b| a.total_cmp(b));
        let pct = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)];
        Ok(ConnSample {
            per_sec: all.len() as f64 / secs as f64,
            p50_ms: pct(0.50),
            p99_ms: pct(0.99),
        })
    })
}

#[derive(Default)]
struct Results {
    gbps: Vec<f64>,
    conns: Vec<ConnSample>,
}

fn run() -> Result<(), String> {
    let o = parse_opts()?;
    let wanted = |name: &str| o.only.as_ref().is_none_or(|l| l.iter().any(|n| n == name));
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let (_iperf_server, iperf_addr) = start_iperf_server()?;
    let echo = start_echo()?;

    let mut systems = Vec::new();
    if wanted("direct") {
        systems.push(System {
            name: "direct",
            note: "client straight to iperf3 / the echo service",
            iperf: iperf_addr,
            echo,
            procs: Vec::new(),
        });
    }
    if wanted("gangway") {
        systems.push(gangway(dir.path(), iperf_addr, echo)?);
    }
    if wanted("rathole") {
        systems.push(rathole(dir.path(), iperf_addr, echo)?);
    }
    if wanted("bore") {
        systems.push(bore(iperf_addr, echo)?);
    }
    // Warm-up: one short pass over every path.
    for s in &systems {
        iperf(s.iperf, 1)?;
        connection_rate(s.echo, o.workers, 1)?;
    }
    let mut results: Vec<Results> = systems.iter().map(|_| Results::default()).collect();
    for round in 0..o.rounds {
        for (s, r) in systems.iter().zip(results.iter_mut()) {
            let bps = iperf(s.iperf, o.duration_secs)?;
            let c = connection_rate(s.echo, o.workers, o.duration_secs)?;
            eprintln!(
                "round {round}: {}: {:.2} Gbit/s, {:.0} conn/s (p50 {:.3} ms, p99 {:.3} ms)",
                s.name,
                bps / 1e9,
                c.per_sec,
                c.p50_ms,
                c.p99_ms
            );
            r.gbps.push(bps / 1e9);
            r.conns.push(c);
        }
    }

    let med: Vec<(f64, ConnSample)> = results
        .iter()
        .map(|r| {
            (
                median(r.gbps.clone()),
                ConnSample {
                    per_sec: median(r.conns.iter().map(|c| c.per_sec).collect()),
                    p50_ms: median(r.conns.iter().map(|c| c.p50_ms).collect()),
                    p99_ms: median(r.conns.iter().map(|c| c.p99_ms).collect()),
                },
            )
        })
        .collect();
    let (base_gbps, base_conn) = med.first().copied().unwrap_or_default();
    let mut md = String::new();
    md.push_str("# TCP through the tunnel vs direct, rathole and bore\n\n");
    md.push_str(&format!("- date: {}\n- machine: {}\n", today(), machine()));
    md.push_str(&format!(
        "- command: `scripts/bench tcp --duration {} --rounds {} --workers {}`\n",
        o.duration_secs, o.rounds, o.workers
    ));
    md.push_str(&format!(
        "- bulk: iperf3, one TCP stream, {} s; connections: {} concurrent loops of connect / send 32 B / half-close / read echo / close, {} s; systems alternated {} times, medians shown\n",
        o.duration_secs, o.workers, o.duration_secs, o.rounds
    ));
    md.push_str("- everything on one machine (load tool, tunnel, service share the cores); ratios are against the first row\n\n");
    md.push_str("| system | Gbit/s | vs first | conn/s | vs first | conn p50 ms | conn p99 ms | RSS MiB after |\n|---|---:|---:|---:|---:|---:|---:|---:|\n");
    for (s, (gbps, c)) in systems.iter().zip(&med) {
        let rss = s
            .rss_mib()
            .filter(|_| !s.procs.is_empty())
            .map(|m| format!("{m:.1}"))
            .unwrap_or_else(|| "–".into());
        md.push_str(&format!(
            "| {} | {:.2} | {:.2}x | {:.0} | {:.2}x | {:.3} | {:.3} | {} |\n",
            s.name,
            gbps,
            gbps / base_gbps,
            c.per_sec,
            c.per_sec / base_conn.per_sec,
            c.p50_ms,
            c.p99_ms,
            rss
        ));
    }
    md.push_str("\nSystems:\n");
    for s in &systems {
        md.push_str(&format!("- {}: {}\n", s.name, s.note));
    }
    write_results(o.out.as_deref(), "tcp-tunnel", &md)
}

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tcp-tunnel bench: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
