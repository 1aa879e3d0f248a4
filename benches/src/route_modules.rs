//! Benchmark: what route modules cost.
//!
//! 1. Requests/s and p99 through the HTTPS tunnel with every non-auth
//!    module on (IP restriction, user-agent filter, webhook verification,
//!    circuit breaker, request and response headers, compression) against
//!    the same endpoint with none, in one run, alternating, with wrk.
//! 2. Webhook verification cost per delivery for each signing family,
//!    against a bare HMAC-SHA256 of the same body (the irreducible part).
//! 3. Compression throughput (MB/s on one core) of the module's streaming
//!    encoder against flate2 compressing the same bytes in one call.
//!
//! Run: `scripts/bench modules [--duration SECS] [--connections N] [--rounds N]`.

use std::time::Instant;

use base64::Engine;
use gangway_benches::{
    host_of, machine, median_sample, ratio_table, start_agent, start_app, start_server, time_ns,
    today, write_results, wrk, LoadOpts, Sample,
};
use gangway_modules::chain::{ConnInfo, RequestInfo};
use gangway_modules::compression::{Coding, Encoder};
use gangway_modules::webhook::WebhookVerification;
use ring::hmac;

const SECRET: &str = "bench-webhook-secret";

/// A 2 KiB JSON delivery, the size of a typical webhook.
fn delivery() -> String {
    let mut s = String::from("{\"event\":\"bench\",\"items\":[");
    let mut i = 0;
    while s.len() < 2000 {
        s.push_str(&format!("{{\"id\":{i},\"name\":\"item {i}\"}},"));
        i += 1;
    }
    s.push_str("{}]}");
    s
}

fn hmac_hex(key: &[u8], msg: &[u8]) -> String {
    hex::encode(hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), msg).as_ref())
}

fn hmac_b64(key: &[u8], msg: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD
        .encode(hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), msg).as_ref())
}

/// A provider, its secret and the headers of a delivery it signed.
type SignedCase = (&'static str, String, Vec<(&'static str, String)>);

/// (provider, µs per verification, ratio to a bare HMAC).
fn verification_costs() -> Result<Vec<(String, f64, f64)>, String> {
    let body = delivery();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_secs();
    let ts = now.to_string();
    let svix_key = b"0123456789abcdef0123456789abcdef";
    let svix_secret = format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(svix_key)
    );
    let cases: Vec<SignedCase> = vec![
        (
            "github",
            SECRET.into(),
            vec![(
                "x-hub-signature-256",
                format!("sha256={}", hmac_hex(SECRET.as_bytes(), body.as_bytes())),
            )],
        ),
        (
            "stripe",
            SECRET.into(),
            vec![(
                "stripe-signature",
                format!(
                    "t={ts},v1={}",
                    hmac_hex(SECRET.as_bytes(), format!("{ts}.{body}").as_bytes())
                ),
            )],
        ),
        (
            "slack",
            SECRET.into(),
            vec![
                (
                    "x-slack-signature",
                    format!(
                        "v0={}",
                        hmac_hex(SECRET.as_bytes(), format!("v0:{ts}:{body}").as_bytes())
                    ),
                ),
                ("x-slack-request-timestamp", ts.clone()),
            ],
        ),
        (
            "svix",
            svix_secret,
            vec![
                ("svix-id", "msg_1".into()),
                ("svix-timestamp", ts.clone()),
                (
                    "svix-signature",
                    format!(
                        "v1,{}",
                        hmac_b64(svix_key, format!("msg_1.{ts}.{body}").as_bytes())
                    ),
                ),
            ],
        ),
        (
            "shopify",
            SECRET.into(),
            vec![(
                "x-shopify-hmac-sha256",
                hmac_b64(SECRET.as_bytes(), body.as_bytes()),
            )],
        ),
    ];
    let conn = ConnInfo::default();
    let uri: http::Uri = "/hook".parse().map_err(|e| format!("{e}"))?;
    let key = hmac::Key::new(hmac::HMAC_SHA256, SECRET.as_bytes());
    let bare = time_ns(|| {
        std::hint::black_box(hmac::sign(&key, std::hint::black_box(body.as_bytes())));
    });
    let mut out = vec![(
        "bare HMAC-SHA256 (baseline)".to_string(),
        bare / 1000.0,
        1.0,
    )];
    for (provider, secret, headers) in cases {
        let m = WebhookVerification::compile("webhook_verification", provider, &secret)
            .map_err(|e| e.to_string())?;
        let mut h = http::HeaderMap::new();
        for (k, v) in &headers {
            let name = http::HeaderName::from_bytes(k.as_bytes()).map_err(|e| e.to_string())?;
            let value = http::HeaderValue::from_str(v).map_err(|e| e.to_string())?;
            h.insert(name, value);
        }
        let req = RequestInfo {
            conn: &conn,
            method: &http::Method::POST,
            uri: &uri,
            headers: &h,
            scheme: "https",
            host: "bench.test",
        };
        m.verify(&req, body.as_bytes(), now)
            .map_err(|e| format!("{provider}: bench delivery does not verify: {e:?}"))?;
        let ns = time_ns(|| {
            let _ =
                std::hint::black_box(m.verify(&req, std::hint::black_box(body.as_bytes()), now));
        });
        out.push((provider.to_string(), ns / 1000.0, ns / bare));
    }
    Ok(out)
}

/// (name, MB/s, compression ratio) for the module's streaming encoder
/// and flate2 in one call, on 8 MiB of JSON-like text in 16 KiB chunks.
fn compression_throughput() -> Vec<(String, f64, f64)> {
    let text: Vec<u8> = (0..)
        .flat_map(|i: u64| {
            format!(
                "{{\"id\":{i},\"user\":\"user{}\",\"active\":{},\"score\":{}}}\n",
                i % 977,
                i.is_multiple_of(2),
                i * 7 % 1000
            )
            .into_bytes()
        })
        .take(8 << 20)
        .collect();
    let mb = text.len() as f64 / 1e6;
    let mut out = Vec::new();
    for coding in [Coding::Gzip, Coding::Deflate] {
        let t = Instant::now();
        let mut enc = Encoder::new(coding);
        let mut n = 0usize;
        for chunk in text.chunks(16 * 1024) {
            n += enc.encode(chunk, false).len();
        }
        n += enc.encode(&[], true).len();
        let secs = t.elapsed().as_secs_f64();
        out.push((
            format!(
                "module {} (streamed, sync flush per 16 KiB)",
                coding.token()
            ),
            mb / secs,
            text.len() as f64 / n as f64,
        ));
    }
    let t = Instant::now();
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
    let _ = std::io::Write::write_all(&mut e, &text);
    let n = e.finish().map(|v| v.len()).unwrap_or(1);
    out.push((
        "flate2 gzip, one call (baseline)".into(),
        mb / t.elapsed().as_secs_f64(),
        text.len() as f64 / n as f64,
    ));
    out
}

fn run() -> Result<(), String> {
    let o = LoadOpts::from_args()?;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let app = start_app()?;
    let (_server, info) = start_server(dir.path(), o.edge_threads, &[])?;
    let app_addr = app.to_string();
    let (_plain, plain_url) = start_agent(dir.path(), &["http", &app_addr])?;
    // Every non-auth module; a third agent has all but compression, which
    // on a tiny response is mostly HTTP/1.1 chunked framing.
    let no_compression = [
        "http",
        &app_addr,
        "--cidr-allow",
        "127.0.0.0/8",
        "--ua-filter-deny",
        "(?i)badbot",
        "--verify-webhook",
        "github",
        "--verify-webhook-secret",
        SECRET,
        "--circuit-breaker",
        "0.5",
        "--request-header-add",
        "x-client-ip:${conn.client_ip}",
        "--request-header-remove",
        "x-secret",
        "--response-header-add",
        "x-edge:gangway",
        "--response-header-remove",
        "server",
    ];
    let every: Vec<&str> = no_compression
        .iter()
        .copied()
        .chain(["--compression"])
        .collect();
    let (_mods, mods_url) = start_agent(dir.path(), &every)?;
    let (_nocomp, nocomp_url) = start_agent(dir.path(), &no_compression)?;
    // Every request is a signed 2 KiB webhook POST asking for gzip, to both
    // endpoints alike.
    let body = delivery();
    let sig = format!("sha256={}", hmac_hex(SECRET.as_bytes(), body.as_bytes()));
    let script = dir.path().join("post.lua");
    std::fs::write(
        &script,
        format!(
            "wrk.method = \"POST\"\nwrk.body = {body:?}\nwrk.headers[\"Content-Type\"] = \"application/json\"\nwrk.headers[\"X-Hub-Signature-256\"] = \"{sig}\"\nwrk.headers[\"Accept-Encoding\"] = \"gzip\"\nwrk.headers[\"User-Agent\"] = \"wrk\"\n"
        ),
    )
    .map_err(|e| e.to_string())?;
    let extra = vec!["-s".to_string(), script.display().to_string()];
    let scenarios = [
        ("HTTPS tunnel, no modules", host_of(&plain_url)),
        ("HTTPS tunnel, every non-auth module", host_of(&mods_url)),
        (
            "HTTPS tunnel, every non-auth module but compression",
            host_of(&nocomp_url),
        ),
    ];
    let url = format!("https://{}/", info.https_addr);
    for (_, host) in &scenarios {
        wrk(&url, Some(host), o.connections, 2, &extra)?;
    }
    let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); scenarios.len()];
    for round in 0..o.rounds {
        for (i, (name, host)) in scenarios.iter().enumerate() {
            let s = wrk(&url, Some(host), o.connections, o.duration_secs, &extra)?;
            eprintln!(
                "round {round}: {name}: {:.0} req/s, p50 {:.3} ms, p99 {:.3} ms",
                s.rps, s.p50_ms, s.p99_ms
            );
            samples[i].push(s);
        }
    }
    let med: Vec<Sample> = samples.iter().map(|v| median_sample(v)).collect();
    let verify = verification_costs()?;
    let compress = compression_throughput();

    let mut md = String::new();
    md.push_str("# Route modules: cost through the tunnel, webhook verification, compression\n\n");
    md.push_str(&format!("- date: {}\n- machine: {}\n", today(), machine()));
    md.push_str(&format!(
        "- command: `scripts/bench modules --duration {} --connections {} --rounds {}`\n",
        o.duration_secs, o.connections, o.rounds
    ));
    md.push_str(&format!(
        "- load: wrk, 1 thread, {} keep-alive connections, {} s per run, alternated {} times, medians; each request a signed 2 KiB webhook POST with `Accept-Encoding: gzip` (15-byte response); everything shares the cores\n\n",
        o.connections, o.duration_secs, o.rounds
    ));
    md.push_str(&ratio_table(
        scenarios.iter().map(|(n, _)| *n),
        &med,
        "no modules",
    ));
    let per_req_us = 1e6 / med[1].rps - 1e6 / med[0].rps;
    md.push_str(&format!(
        "\nAdded machine time per request with every module on: {per_req_us:.1} µs.\n\n"
    ));
    md.push_str("Compression is most of the difference between the last two rows. A compressed response has no known length, so HTTP/1.1 framing becomes chunked, and Pingora flushes the header, each chunk and the last chunk: three TLS writes per response instead of one. On top of that, each response sets up a deflate stream. Small JSON answers pay this in full.\n\n");
    md.push_str("## Webhook verification, one 2 KiB delivery (in process)\n\n| provider | µs per verification | vs bare HMAC |\n|---|---:|---:|\n");
    for (name, us, ratio) in &verify {
        md.push_str(&format!("| {name} | {us:.2} | {ratio:.2}x |\n"));
    }
    md.push_str("\n## Compression, one core (in process, 8 MiB of JSON lines)\n\n| encoder | MB/s | ratio |\n|---|---:|---:|\n");
    for (name, mbs, ratio) in &compress {
        md.push_str(&format!("| {name} | {mbs:.0} | {ratio:.1}x |\n"));
    }
    write_results(o.out.as_deref(), "route-modules", &md)?;
    Ok(())
}

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("route-modules bench: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
