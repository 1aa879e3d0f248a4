//! Pieces every bench binary shares: starting release `gangway` processes,
//! waiting for readiness, and writing a results file with the machine and
//! date in its header.
//!
//! The harness (`src/bench.rs`) adds: [`peers`] (the systems compared),
//! [`load`] (load generators and correctness probes), [`sessions`] (the
//! idle-session simulator) and [`report`] (results table and plot).

pub mod load;
pub mod peers;
pub mod report;
pub mod sessions;

use std::convert::Infallible;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Request, Response};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

pub use gangway_testkit::{rss_kib, Proc};

/// The `gangway` binary under test: `$GANGWAY_BIN` or the release build.
pub fn gangway_bin() -> PathBuf {
    std::env::var_os("GANGWAY_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target/release/gangway"))
}

/// Polls `f` every 20 ms for up to 30 s.
pub fn wait_for<T>(what: &str, f: impl FnMut() -> Option<T>) -> Result<T, String> {
    gangway_testkit::wait_for(what, gangway_testkit::DEADLINE, f)
}

/// Polls `f` every 20 ms for up to `secs` seconds.
pub fn wait_for_secs<T>(what: &str, secs: u64, f: impl FnMut() -> Option<T>) -> Result<T, String> {
    gangway_testkit::wait_for(what, Duration::from_secs(secs), f)
}

/// Starts `gangway server` on free ports in `dir` and waits for its
/// `server.json`.
pub fn start_server(
    dir: &Path,
    threads: u32,
    extra: &[&str],
) -> Result<(Proc, gangway_config::ServerInfo), String> {
    let child = gangway_testkit::server_command(&gangway_bin(), dir, threads)
        .args(extra)
        .env("GANGWAY_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("starting {}: {e}", gangway_bin().display()))?;
    let proc = Proc(child);
    let info = wait_for("server.json", || gangway_testkit::server_info(dir))?;
    Ok((proc, info))
}

/// Starts a `gangway` agent command (`http 8080 ...`, `tcp 22`) against the
/// server in `dir` and returns it with the URL of its first `Forwarding` line.
pub fn start_agent(dir: &Path, args: &[&str]) -> Result<(Proc, String), String> {
    let mut child = gangway_testkit::agent_command(&gangway_bin(), dir, args)
        .env("GANGWAY_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("starting agent: {e}"))?;
    let stdout = child.stdout.take().ok_or("agent stdout")?;
    let proc = Proc(child);
    let mut lines = BufReader::new(stdout).lines();
    let url = loop {
        match lines.next() {
            Some(Ok(l)) => {
                if let Some(url) = gangway_testkit::forwarding_url(&l) {
                    break url;
                }
            }
            _ => return Err(format!("agent {args:?} exited before binding")),
        }
    };
    // Keep draining stdout so the agent never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    Ok((proc, url))
}

/// The value after command-line flag `flag`, parsed.
pub fn flag_value<T>(flag: &str, args: &mut impl Iterator<Item = String>) -> Result<T, String>
where
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    let raw = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
    raw.parse().map_err(|e| format!("{flag} {raw:?}: {e}"))
}

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// Core count and CPU model, for results headers.
pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown cpu".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    format!("{cores} cores, {cpu}")
}

pub fn today() -> String {
    Command::new("date")
        .arg("+%Y-%m-%d")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|_| "unknown-date".into())
}

/// Prints `md` and writes it to `out`, or `benches/results/<date>-<name>.md`.
pub fn write_results(out: Option<&Path>, name: &str, md: &str) -> Result<(), String> {
    print!("{md}");
    let out = out
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(format!("benches/results/{}-{name}.md", today())));
    if let Some(parent) = out.parent() {
        std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
    }
    std::fs::write(&out, md).map_err(|e| format!("writing {}: {e}", out.display()))?;
    eprintln!("wrote {}", out.display());
    Ok(())
}

/// The small response the HTTP benches' app answers every request with.
pub const BODY: &[u8] = b"hello, gangway\n";

/// A minimal keep-alive HTTP/1.1 app on a free port, on its own thread.
pub fn start_app() -> Result<SocketAddr, String> {
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
                    // Reads the request body first, as real apps do.
                    let svc = service_fn(|req: Request<hyper::body::Incoming>| async {
                        let _ = http_body_util::BodyExt::collect(req.into_body()).await;
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

/// What one load run measured.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sample {
    pub rps: f64,
    pub p50_ms: f64,
    pub p75_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    /// 0 when the load tool does not report it (wrk).
    pub p999_ms: f64,
    /// Response bytes per second, in MB (10^6).
    pub mb_s: f64,
}

impl Sample {
    /// (percentile, ms) points of the latency distribution, for plots.
    pub fn percentiles(&self) -> Vec<(f64, f64)> {
        [
            (50.0, self.p50_ms),
            (75.0, self.p75_ms),
            (90.0, self.p90_ms),
            (99.0, self.p99_ms),
            (99.9, self.p999_ms),
        ]
        .into_iter()
        .filter(|(_, ms)| *ms > 0.0)
        .collect()
    }
}

/// wrk's `Transfer/sec` value (`2.01MB`) in MB/s.
fn parse_rate_mb(s: &str) -> Option<f64> {
    let (num, unit) = s.split_at(s.find(|c: char| c.is_ascii_alphabetic())?);
    let v: f64 = num.parse().ok()?;
    Some(match unit {
        "B" => v / 1e6,
        "KB" => v * 1024.0 / 1e6,
        "MB" => v * 1024.0 * 1024.0 / 1e6,
        "GB" => v * 1024.0 * 1024.0 * 1024.0 / 1e6,
        _ => return None,
    })
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

pub fn parse_wrk(out: &str) -> Result<Sample, String> {
    let mut s = Sample::default();
    for line in out.lines() {
        let t: Vec<&str> = line.split_whitespace().collect();
        match t.as_slice() {
            ["Requests/sec:", v] => s.rps = v.parse().map_err(|e| format!("rps: {e}"))?,
            ["50%", v] => s.p50_ms = parse_latency_ms(v).ok_or("p50")?,
            ["75%", v] => s.p75_ms = parse_latency_ms(v).ok_or("p75")?,
            ["90%", v] => s.p90_ms = parse_latency_ms(v).ok_or("p90")?,
            ["99%", v] => s.p99_ms = parse_latency_ms(v).ok_or("p99")?,
            ["Transfer/sec:", v] => s.mb_s = parse_rate_mb(v).ok_or("transfer rate")?,
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

/// Runs wrk against `url` (with `extra` arguments, e.g. `-s script.lua`)
/// and parses its latency report.
pub fn wrk(
    url: &str,
    host: Option<&str>,
    connections: u32,
    duration_secs: u64,
    extra: &[String],
) -> Result<Sample, String> {
    let mut cmd = Command::new("wrk");
    cmd.args(extra);
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

/// Options every wrk-driven bench takes.
#[derive(Debug, Clone)]
pub struct LoadOpts {
    /// Worker threads per edge listener.
    pub edge_threads: u32,
    pub duration_secs: u64,
    pub connections: u32,
    pub rounds: u32,
    pub out: Option<PathBuf>,
}

impl LoadOpts {
    /// `--duration SECS` (10), `--connections N` (32), `--rounds N` (3),
    /// `--edge-threads N` (1), `--out PATH`.
    pub fn from_args() -> Result<LoadOpts, String> {
        let mut o = LoadOpts {
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
}

/// The median of each measure over several runs.
pub fn median_sample(runs: &[Sample]) -> Sample {
    let m = |f: fn(&Sample) -> f64| median(runs.iter().map(f).collect());
    Sample {
        rps: m(|s| s.rps),
        p50_ms: m(|s| s.p50_ms),
        p75_ms: m(|s| s.p75_ms),
        p90_ms: m(|s| s.p90_ms),
        p99_ms: m(|s| s.p99_ms),
        p999_ms: m(|s| s.p999_ms),
        mb_s: m(|s| s.mb_s),
    }
}

/// Nanoseconds per call of `f`, over enough calls to take ~0.5 s.
pub fn time_ns(mut f: impl FnMut()) -> f64 {
    for _ in 0..1000 {
        f();
    }
    let mut n = 1000u64;
    loop {
        let t = std::time::Instant::now();
        for _ in 0..n {
            f();
        }
        let el = t.elapsed();
        if el.as_millis() >= 500 {
            return el.as_nanos() as f64 / n as f64;
        }
        n *= 2;
    }
}

/// The host of an agent's `Forwarding` URL (`https://host:port`), for
/// wrk's Host header.
pub fn host_of(url: &str) -> String {
    url.split("://")
        .nth(1)
        .and_then(|r| r.split(':').next())
        .unwrap_or_default()
        .to_string()
}

/// A results table of `medians` (first row is the baseline), each named
/// by `names`, with req/s and p99 as ratios against `baseline`.
pub fn ratio_table<'a>(
    names: impl Iterator<Item = &'a str>,
    medians: &[Sample],
    baseline: &str,
) -> String {
    let mut md = format!("| scenario | req/s | p50 ms | p99 ms | req/s vs {baseline} | p99 vs {baseline} |\n|---|---:|---:|---:|---:|---:|\n");
    let Some(base) = medians.first() else {
        return md;
    };
    for (name, s) in names.zip(medians) {
        md.push_str(&format!(
            "| {name} | {:.0} | {:.3} | {:.3} | {:.2}x | {:.2}x |\n",
            s.rps,
            s.p50_ms,
            s.p99_ms,
            s.rps / base.rps,
            s.p99_ms / base.p99_ms
        ));
    }
    md
}
