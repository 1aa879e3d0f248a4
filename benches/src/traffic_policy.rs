//! Benchmark: what a Traffic Policy costs.
//!
//! 1. Evaluation per request (ns) of a 10-rule `on_http_request` phase,
//!    in process: building the request's variables, then running the
//!    rules (nine that do not match, one that adds two headers).
//! 2. Requests/s and p99 through the HTTPS tunnel with that policy
//!    (`gangway http --traffic-policy-file`) against the same endpoint
//!    with none, in one run, alternating, with wrk.
//!
//! Run: `scripts/bench policy [--duration SECS] [--connections N] [--rounds N]`.

use gangway_benches::{
    host_of, machine, median, median_sample, ratio_table, start_agent, start_app, start_server,
    time_ns, today, write_results, wrk, LoadOpts, Sample,
};
use gangway_policy::engine;
use gangway_policy::expr::Scope;
use gangway_policy::request::{Connection, HttpRequest};
use gangway_policy::Policy;

/// Ten rules of the kinds users write: path, method, header, CIDR and
/// query checks that do not match a plain GET, then one that tags it.
pub const POLICY: &str = r#"
on_http_request:
  - expressions: ["req.url.path.startsWith('/admin')"]
    actions: [ { type: deny, config: { status_code: 403 } } ]
  - expressions: ["req.method == 'DELETE'"]
    actions: [ { type: deny, config: { status_code: 405 } } ]
  - expressions: ["req.user_agent.contains('badbot')"]
    actions: [ { type: deny } ]
  - expressions: ["inCidrRanges(conn.client_ip, ['192.0.2.0/24', '198.51.100.0/24'])"]
    actions: [ { type: deny } ]
  - expressions: ["hasReqHeader('x-debug')"]
    actions: [ { type: custom-response, config: { status_code: 200, body: debug } } ]
  - expressions: ["req.url.path.startsWith('/old/')"]
    actions: [ { type: redirect, config: { to: "/new/", status_code: 301 } } ]
  - expressions: ["getQueryParam('token').size() > 0"]
    actions: [ { type: deny, config: { status_code: 401 } } ]
  - expressions: ["req.url.path.endsWith('.php')"]
    actions: [ { type: deny, config: { status_code: 404 } } ]
  - expressions: ["req.host.endsWith('.internal')"]
    actions: [ { type: deny } ]
  - actions:
      - type: add-headers
        config: { headers: { x-client-ip: "${conn.client_ip}", x-policy: tagged } }
"#;

/// (ns building the variables, ns running the ten rules), medians of 5.
fn evaluation_cost() -> Result<(f64, f64), String> {
    let policy = Policy::parse(POLICY).map_err(|e| e.to_string())?;
    let uri: http::Uri = "/api/items?page=2".parse().map_err(|e| format!("{e}"))?;
    let mut headers = http::HeaderMap::new();
    for (k, v) in [
        ("host", "app.example"),
        ("user-agent", "Mozilla/5.0 (X11; Linux x86_64)"),
        ("accept", "application/json"),
        ("accept-encoding", "gzip, br"),
        ("cookie", "session=abc123; theme=dark"),
    ] {
        headers.insert(k, http::HeaderValue::from_static(v));
    }
    let conn = Connection {
        client: Some(([10, 1, 2, 3], 50000).into()),
        server: Some(([127, 0, 0, 1], 443).into()),
        ..Connection::default()
    };
    let req = HttpRequest {
        method: &http::Method::GET,
        uri: &uri,
        headers: &headers,
        scheme: "https",
        host: "app.example",
    };
    let ip = conn.client.map(|a| a.ip());
    // The run must tag the request, or the bench measures something else.
    let mut scope = Scope::for_request(&conn, &req);
    let out = engine::run(&policy.on_http_request, &mut scope, ip);
    if out.add_headers.len() != 2 || out.respond.is_some() {
        return Err(format!("the bench policy did not run as meant: {out:?}"));
    }
    let mut build = Vec::new();
    let mut total = Vec::new();
    for _ in 0..5 {
        build.push(time_ns(|| {
            std::hint::black_box(Scope::for_request(&conn, &req));
        }));
        total.push(time_ns(|| {
            let mut scope = Scope::for_request(&conn, &req);
            std::hint::black_box(engine::run(&policy.on_http_request, &mut scope, ip));
        }));
    }
    let (b, t) = (median(build), median(total));
    Ok((b, t - b))
}

fn run() -> Result<(), String> {
    let o = LoadOpts::from_args()?;
    let (build_ns, rules_ns) = evaluation_cost()?;
    eprintln!("variables {build_ns:.0} ns, ten rules {rules_ns:.0} ns");
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let app = start_app()?;
    let (_server, info) = start_server(dir.path(), o.edge_threads, &[])?;
    let app_addr = app.to_string();
    let policy_file = dir.path().join("policy.yml");
    std::fs::write(&policy_file, POLICY).map_err(|e| e.to_string())?;
    let policy_path = policy_file.display().to_string();
    let (_plain, plain_url) = start_agent(dir.path(), &["http", &app_addr])?;
    let (_tp, tp_url) = start_agent(
        dir.path(),
        &["http", &app_addr, "--traffic-policy-file", &policy_path],
    )?;
    let scenarios = [
        ("HTTPS tunnel, no policy", host_of(&plain_url)),
        ("HTTPS tunnel, 10-rule policy", host_of(&tp_url)),
    ];
    let url = format!("https://{}/", info.https_addr);
    for (_, host) in &scenarios {
        wrk(&url, Some(host), o.connections, 2, &[])?;
    }
    let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); scenarios.len()];
    for round in 0..o.rounds {
        for (i, (name, host)) in scenarios.iter().enumerate() {
            let s = wrk(&url, Some(host), o.connections, o.duration_secs, &[])?;
            eprintln!(
                "round {round}: {name}: {:.0} req/s, p50 {:.3} ms, p99 {:.3} ms",
                s.rps, s.p50_ms, s.p99_ms
            );
            samples[i].push(s);
        }
    }
    let med: Vec<Sample> = samples.iter().map(|v| median_sample(v)).collect();

    let mut md = String::new();
    md.push_str("# Traffic Policy: evaluation cost and throughput\n\n");
    md.push_str(&format!("- date: {}\n- machine: {}\n", today(), machine()));
    md.push_str(&format!(
        "- command: `scripts/bench policy --duration {} --connections {} --rounds {}`\n",
        o.duration_secs, o.connections, o.rounds
    ));
    md.push_str(&format!(
        "- load: wrk, 1 thread, {} keep-alive connections, {} s per run, alternated {} times, medians; GET / (15-byte response); everything shares the cores\n\n",
        o.connections, o.duration_secs, o.rounds
    ));
    md.push_str("## Evaluation per request (in process, one core)\n\n| step | ns |\n|---|---:|\n");
    md.push_str(&format!(
        "| request variables (`conn`, `req`, headers, query, cookies) | {build_ns:.0} |\n| ten rules: nine non-matching, one adding two interpolated headers | {rules_ns:.0} |\n| total | {:.0} |\n\n",
        build_ns + rules_ns
    ));
    md.push_str("## Through the tunnel\n\n");
    md.push_str(&ratio_table(
        scenarios.iter().map(|(n, _)| *n),
        &med,
        "none",
    ));
    let per_req_us = 1e6 / med[1].rps - 1e6 / med[0].rps;
    md.push_str(&format!(
        "\nAdded machine time per request with the policy: {per_req_us:.1} µs.\n"
    ));
    write_results(o.out.as_deref(), "traffic-policy", &md)?;
    Ok(())
}

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("traffic-policy bench: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
