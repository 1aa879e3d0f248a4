//! Load generators and the services they talk to, besides wrk (in the
//! crate root): an echo service, iperf3, a short-connection loop, an
//! open-loop HTTP(S) client at a fixed request rate, and probes that check
//! every system serves the right bytes before it is measured.

use std::net::{SocketAddr, TcpListener as StdListener};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use boring::ssl::{SslConnector, SslMethod, SslVerifyMode};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::peers::free_port;
use crate::{wait_for, Proc, Sample, BODY};

/// Bytes each short connection sends and gets back.
pub const PING: &[u8] = &[0x5a; 32];

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())
}

/// An echo service on its own thread: reads to EOF, sends it all back,
/// closes.
pub fn start_echo() -> Result<SocketAddr, String> {
    let std_listener = StdListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let addr = std_listener.local_addr().map_err(|e| e.to_string())?;
    std_listener
        .set_nonblocking(true)
        .map_err(|e| e.to_string())?;
    let rt = runtime()?;
    std::thread::spawn(move || {
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

pub fn start_iperf_server() -> Result<(Proc, SocketAddr), String> {
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

/// Sends `payload` through `addr` to the echo service and checks every
/// byte comes back.
pub fn probe_echo(addr: SocketAddr, payload: &[u8]) -> Result<(), String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .map_err(|e| format!("connect {addr}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    let mut reply = Vec::with_capacity(payload.len());
    // Write on another thread: a large payload would fill both buffers.
    let mut writer = s.try_clone().map_err(|e| e.to_string())?;
    let sent = payload.to_vec();
    let w = std::thread::spawn(move || {
        writer.write_all(&sent)?;
        writer.shutdown(std::net::Shutdown::Write)
    });
    s.read_to_end(&mut reply)
        .map_err(|e| format!("read from {addr}: {e}"))?;
    w.join()
        .map_err(|_| "writer thread panicked".to_string())?
        .map_err(|e| format!("write to {addr}: {e}"))?;
    if reply != payload {
        return Err(format!(
            "wrong echo through {addr}: sent {} bytes, got {} back{}",
            payload.len(),
            reply.len(),
            if reply.len() == payload.len() {
                " (different bytes)"
            } else {
                ""
            }
        ));
    }
    Ok(())
}

/// A deterministic, incompressible-looking payload of `len` bytes.
pub fn pattern(len: usize) -> Vec<u8> {
    let mut x: u32 = 0x9e37_79b9;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// iperf3 for `secs` seconds through `addr`; received bits/s.
pub fn iperf(addr: SocketAddr, secs: u64) -> Result<f64, String> {
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

/// Percentiles of `lat_ms` (sorted in place) as a sample over `secs`.
fn summarize(lat_ms: &mut [f64], bytes: u64, secs: f64) -> Sample {
    lat_ms.sort_by(|a, b| a.total_cmp(b));
    let pct = |p: f64| {
        let i = ((lat_ms.len() as f64 * p / 100.0) as usize).min(lat_ms.len().saturating_sub(1));
        lat_ms.get(i).copied().unwrap_or(0.0)
    };
    Sample {
        rps: lat_ms.len() as f64 / secs,
        p50_ms: pct(50.0),
        p75_ms: pct(75.0),
        p90_ms: pct(90.0),
        p99_ms: pct(99.0),
        p999_ms: pct(99.9),
        mb_s: bytes as f64 / secs / 1e6,
    }
}

/// `workers` loops, each: connect, send 32 bytes, half-close, read the
/// echo to EOF, close. Any failure or wrong reply fails the scenario.
/// `rps` in the result is connections per second.
pub fn connection_rate(addr: SocketAddr, workers: u32, secs: u64) -> Result<Sample, String> {
    runtime()?.block_on(async move {
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
        let bytes = (all.len() * PING.len()) as u64;
        Ok(summarize(&mut all, bytes, secs as f64))
    })
}

/// Where an HTTP load goes: an address, whether it speaks TLS, and the
/// Host (and SNI) to send.
#[derive(Debug, Clone)]
pub struct Target {
    pub addr: SocketAddr,
    pub tls: bool,
    pub host: String,
}

impl Target {
    /// The URL wrk is given (its Host header is set separately).
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}/", self.addr)
    }
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A keep-alive HTTP/1.1 connection to `t` (certificates not verified:
/// every system uses a throwaway one).
async fn connect_http(
    t: &Target,
    tls: &SslConnector,
) -> Result<hyper::client::conn::http1::SendRequest<Empty<Bytes>>, String> {
    let tcp = tokio::net::TcpStream::connect(t.addr)
        .await
        .map_err(|e| format!("connect {}: {e}", t.addr))?;
    let _ = tcp.set_nodelay(true);
    let io: Box<dyn Io> = if t.tls {
        let cfg = tls.configure().map_err(|e| e.to_string())?;
        Box::new(
            tokio_boring::connect(cfg, &t.host, tcp)
                .await
                .map_err(|e| format!("TLS to {}: {e}", t.addr))?,
        )
    } else {
        Box::new(tcp)
    };
    let (send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(io))
        .await
        .map_err(|e| format!("HTTP handshake with {}: {e}", t.addr))?;
    tokio::spawn(conn);
    Ok(send)
}

/// One GET; the body must be exactly [`BODY`]. Returns the body length.
async fn get_checked(
    send: &mut hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
    t: &Target,
) -> Result<usize, String> {
    send.ready()
        .await
        .map_err(|e| format!("connection to {}: {e}", t.addr))?;
    let req = http::Request::get("/")
        .header(http::header::HOST, &t.host)
        .body(Empty::new())
        .map_err(|e| e.to_string())?;
    let resp = send
        .send_request(req)
        .await
        .map_err(|e| format!("request to {}: {e}", t.addr))?;
    let status = resp.status();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("body from {}: {e}", t.addr))?
        .to_bytes();
    if !status.is_success() || body.as_ref() != BODY {
        return Err(format!(
            "{} answered {status} with {:?}, not the app's {:?}",
            t.addr,
            String::from_utf8_lossy(&body[..body.len().min(200)]),
            String::from_utf8_lossy(BODY)
        ));
    }
    Ok(body.len())
}

fn insecure_tls() -> Result<SslConnector, String> {
    let mut b = SslConnector::builder(SslMethod::tls()).map_err(|e| e.to_string())?;
    b.set_verify(SslVerifyMode::NONE);
    Ok(b.build())
}

/// One request through `t`; the app's exact bytes must come back.
pub fn probe_http(t: &Target) -> Result<(), String> {
    let tls = insecure_tls()?;
    runtime()?.block_on(async {
        let mut send = connect_http(t, &tls).await?;
        get_checked(&mut send, t).await.map(drop)
    })
}

/// Open-loop load: `rate` GETs per second for `secs`, spread over
/// `connections` keep-alive connections. A request sent late because its
/// connection was still busy is timed from when it was due, not when it
/// was sent, so a stall shows up in the percentiles instead of quietly
/// lowering the rate (coordinated omission). Every body is checked.
pub fn fixed_rate(t: &Target, rate: u32, secs: u64, connections: u32) -> Result<Sample, String> {
    let tls = Arc::new(insecure_tls()?);
    let total = u64::from(rate) * secs;
    let conns = u64::from(connections.max(1));
    runtime()?.block_on(async move {
        let mut senders = Vec::new();
        for _ in 0..conns {
            senders.push(connect_http(t, &tls).await?);
        }
        let start = tokio::time::Instant::now() + Duration::from_millis(50);
        let interval = Duration::from_secs_f64(1.0 / f64::from(rate.max(1)));
        let tasks: Vec<_> = senders
            .into_iter()
            .enumerate()
            .map(|(k, mut send)| {
                let t = t.clone();
                tokio::spawn(async move {
                    let mut lat = Vec::new();
                    let mut bytes = 0u64;
                    let mut i = k as u64;
                    while i < total {
                        let due = start + interval * i as u32;
                        // Late because the last request was slow: the wait
                        // counts. On time: the timer's own slack (tokio
                        // wakes on 1 ms ticks) is the client's, not the
                        // system's, so timing starts on waking.
                        let from = if tokio::time::Instant::now() >= due {
                            due
                        } else {
                            tokio::time::sleep_until(due).await;
                            tokio::time::Instant::now()
                        };
                        bytes += get_checked(&mut send, &t).await? as u64;
                        lat.push(from.elapsed().as_secs_f64() * 1000.0);
                        i += conns;
                    }
                    Ok::<_, String>((lat, bytes))
                })
            })
            .collect();
        let (mut all, mut bytes) = (Vec::new(), 0);
        for task in tasks {
            let (lat, b) = task.await.map_err(|e| e.to_string())??;
            all.extend(lat);
            bytes += b;
        }
        let elapsed = start.elapsed().as_secs_f64().max(secs as f64);
        Ok(summarize(&mut all, bytes, elapsed))
    })
}
