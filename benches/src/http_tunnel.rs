//! Benchmark: small HTTP responses through the full tunnel (client → HTTPS
//! edge → muxado stream → agent → local app) against the same load straight
//! at the app, in one run, alternating, with wrk. Writes a Markdown table
//! to `benches/results/`.
//!
//! Run: `scripts/bench` (builds release binaries, then runs this).
//! Options: `--duration SECS` (default 10), `--connections N` (default 32),
//! `--rounds N` (default 3), `--edge-threads N` (per listener, default 1),
//! `--out PATH`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;

use bytes::Bytes;
use gangway_benches::{
    flag_value, machine, median, start_agent, start_server, today, write_results,
};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Request, Response};

/// The small response every scenario fetches.
const BODY: &[u8] = b"hello, gangway\n";

struct Opts {
    edge_threads: u32,
    duration_secs: u64,
    connections: u32,
    rounds: u32,
    out: Option<PathBuf>,
}

fn parse_opts() -> Result<Opts, String> {
    let mut o = Opts {
        edge_threads: 1,
        duration_secs: 10,
        connections: 32,
        rounds: 3,
        out: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--duration" => o.duration_secs = flag_value(&a, &mut args)?,
            "--connections" => o.connections = flag_value(&a, &mut args)?,
            "--edge-threads" => o.edge_threads = flag_value(&a, &mut args)?,
            "--rounds" => o.rounds = flag_value(&a, &mut args)?,
            "--out" => o.out = Some(flag_value::<PathBuf>(&a, &mut args)?),
            other => return Err(format!("unknown option {other}")),
        }
    }
    Ok(o)
}

/// A minimal keep-alive HTTP/1.1 app on a free port, on its own thread.
fn start_app() -> Result<SocketAddr, String> {
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let addr = std_listener.local_addr().map_err(|e| e.to_string())?;
    std_listener
        .set_nonblocking(true)
        .map_err(|e| e.to_string())?;
    std::thread::spawn(move || {
        let rt = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                eprintln!("app runtime: {e}");
                return;
            }
        };
        rt.block_on(async move {
            let Ok(listener) = tokio::net::TcpListener::from_std(std_listener) else {
                return;
            };
            while let Ok((tcp, _)) = listener.accept().await {
                let _ = tcp.set_nodelay(true);
                tokio::spawn(async move {
                    let svc = service_fn(|_req: Request<hyper::body::Incoming>| async {
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(BODY))))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tcp), svc)
                        .await;
                });
            }
        });
    });
    Ok(addr)
}

/// What wrk measured.
#[derive(Debug, Clone, Copy, Default)]
struct Sample {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
}

fn parse_latency_ms(s: &str) -> Option<f64> {
    let (num, unit) = s.split_at(s.find(|c: char| c.is_ascii_alphabetic())?);
    let v: f64 = num.parse().ok()?;
    Some(match unit {
        "us" => v / 1000.0,
        "ms" => v,
        "s" => v * 1000.0,
        _ => return None,
    })
}

fn parse_wrk(out: &str) -> Result<Sample, String> {
    let mut s = Sample::default();
    for line in out.lines() {
        let t: Vec<&str> = line.split_whitespace().collect();
        match t.as_slice() {
            ["Requests/sec:", v] => s.rps = v.parse().map_err(|e| format!("rps: {e}"))?,
            ["50%", v] => s.p50_ms = parse_latency_ms(v).ok_or("p50")?,
            ["99%", v] => s.p99_ms = parse_latency_ms(v).ok_or("p99")?,
            _ => {}
        }
    }
    if s.rps == 0.0 {
        return Err(format!("wrk reported no requests:\n{out}"));
    }
    if out.contains("Non-2xx") || out.contains("Socket errors") {
        return Err(format!("wrk saw errors:\n{out}"));
    }
    Ok(s)
}

fn wrk(
    url: &str,
    host: Option<&str>,
    connections: u32,
    duration_secs: u64,
) -> Result<Sample, String> {
    let mut cmd = Command::new("wrk");
    cmd.args(["-t1", "--latency"])
        .arg(format!("-c{connections}"))
        .arg(format!("-d{duration_secs}s"));
    if let Some(h) = host {
        cmd.args(["-H", &format!("Host: {h}")]);
    }
    let out = cmd
        .arg(url)
        .output()
        .map_err(|e| format!("running wrk: {e}"))?;
    parse_wrk(&String::from_utf8_lossy(&out.stdout))
}

fn run() -> Result<(), String> {
    let o = parse_opts()?;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let app = start_app()?;
    let (_server, info) = start_server(dir.path(), o.edge_threads, &[])?;
    let app_addr = app.to_string();
    let (_agent, url) = start_agent(dir.path(), &["http", &app_addr, "--scheme", "http,https"])?;
    let host = url
        .split("://")
        .nth(1)
        .and_then(|r| r.split(':').next())
        .ok_or("agent url")?
        .to_string();

    // (name, url, Host header)
    let scenarios: [(&str, String, Option<&str>); 3] = [
        ("direct to app (http)", format!("http://{app}/"), None),
        (
            "tunnel via HTTPS edge",
            format!("https://{}/", info.https_addr),
            Some(&host),
        ),
        (
            "tunnel via HTTP edge",
            format!("http://{}/", info.http_addr),
            Some(&host),
        ),
    ];
    // Warm up every path once (TLS session setup, allocator, caches).
    for (_, u, h) in &scenarios {
        wrk(u, *h, o.connections, 2)?;
    }
    let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); scenarios.len()];
    for round in 0..o.rounds {
        for (i, (name, u, h)) in scenarios.iter().enumerate() {
            let s = wrk(u, *h, o.connections, o.duration_secs)?;
            eprintln!(
                "round {round}: {name}: {:.0} req/s, p50 {:.3} ms, p99 {:.3} ms",
                s.rps, s.p50_ms, s.p99_ms
            );
            samples[i].push(s);
        }
    }
    let med: Vec<Sample> = samples
        .iter()
        .map(|v| Sample {
            rps: median(v.iter().map(|s| s.rps).collect()),
            p50_ms: median(v.iter().map(|s| s.p50_ms).collect()),
            p99_ms: median(v.iter().map(|s| s.p99_ms).collect()),
        })
        .collect();
    let base = med[0];
    let mut md = String::new();
    md.push_str("# HTTP through the tunnel vs direct\n\n");
    md.push_str(&format!("- date: {}\n- machine: {}\n", today(), machine()));
    md.push_str(&format!(
        "- command: `scripts/bench --duration {} --connections {} --rounds {} --edge-threads {}`\n",
        o.duration_secs, o.connections, o.rounds, o.edge_threads
    ));
    md.push_str(&format!(
        "- load: wrk, 1 thread, {} keep-alive connections, {} s per run, scenarios alternated {} times; medians shown\n",
        o.connections, o.duration_secs, o.rounds
    ));
    md.push_str(&format!("- response: {} bytes; everything on one machine (wrk, edge, agent, app share the cores)\n\n", BODY.len()));
    md.push_str("| scenario | req/s | p50 ms | p99 ms | req/s vs direct | p50 vs direct |\n|---|---:|---:|---:|---:|---:|\n");
    for ((name, _, _), s) in scenarios.iter().zip(&med) {
        md.push_str(&format!(
            "| {name} | {:.0} | {:.3} | {:.3} | {:.2}x | {:.2}x |\n",
            s.rps,
            s.p50_ms,
            s.p99_ms,
            s.rps / base.rps,
            s.p50_ms / base.p50_ms
        ));
    }
    let per_req_us = (1e6 / med[1].rps) - (1e6 / base.rps);
    md.push_str(&format!(
        "\nAdded cost per request through the HTTPS tunnel (1/throughput difference at saturation): {per_req_us:.1} µs of machine time.\n"
    ));
    write_results(o.out.as_deref(), "http-tunnel", &md)?;
    Ok(())
}

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("http-tunnel bench: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
