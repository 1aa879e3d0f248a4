//! Benchmark: small HTTP responses through the full tunnel (client → HTTPS
//! edge → muxado stream → agent → local app) against the same load straight
//! at the app, in one run, alternating, with wrk. Writes a Markdown table
//! to `benches/results/`.
//!
//! Run: `scripts/bench` (builds release binaries, then runs this).
//! Options: `--duration SECS` (default 10), `--connections N` (default 32),
//! `--rounds N` (default 3), `--edge-threads N` (per listener, default 1),
//! `--out PATH`.

use gangway_benches::{
    machine, median_sample, start_agent, start_app, start_server, today, write_results, wrk,
    LoadOpts, Sample, BODY,
};

fn run() -> Result<(), String> {
    let o = LoadOpts::from_args()?;
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
        wrk(u, *h, o.connections, 2, &[])?;
    }
    let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); scenarios.len()];
    for round in 0..o.rounds {
        for (i, (name, u, h)) in scenarios.iter().enumerate() {
            let s = wrk(u, *h, o.connections, o.duration_secs, &[])?;
            eprintln!(
                "round {round}: {name}: {:.0} req/s, p50 {:.3} ms, p99 {:.3} ms",
                s.rps, s.p50_ms, s.p99_ms
            );
            samples[i].push(s);
        }
    }
    let med: Vec<Sample> = samples.iter().map(|v| median_sample(v)).collect();
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
