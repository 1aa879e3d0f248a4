//! Criterion micro-benchmarks of the per-request and per-frame hot paths:
//! route lookup, the route module chain, ProxyHeader encoding and the
//! muxado frame codec. Each group has its cheapest neighbour beside it (a
//! miss, an empty chain, a bare copy) so the numbers read as ratios.
//!
//! Run: `cargo bench -p gangway-benches --bench hot_paths` (the full
//! `scripts/bench` runs it and adds the estimates to its results file).

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use gangway_config::control::IpSet;
use gangway_config::resources::RouteModules;
use gangway_edge::route_table::{Endpoint, RouteTable, Scheme};
use gangway_modules::chain::{Chain, ChainState, ConnInfo, RequestInfo};
use gangway_modules::documents::DocumentCache;
use gangway_proto::codec::encode_proxy_header;
use gangway_proto::frame::{self, Frame};
use gangway_proto::msg::ProxyHeader;

/// A table like a busy edge's: 10,000 exact names and 100 wildcards.
fn table() -> RouteTable {
    let exact = (0..10_000).map(|i| Endpoint::new(format!("app-{i}.gangway.test"), Vec::new()));
    let wild = (0..100).map(|i| Endpoint::new(format!("*.team-{i}.example.com"), Vec::new()));
    RouteTable::new(exact.chain(wild))
}

fn route_lookup(c: &mut Criterion) {
    let t = table();
    let mut g = c.benchmark_group("route lookup (10,100 endpoints)");
    for (name, host) in [
        ("exact", "app-4242.gangway.test"),
        ("exact with port, mixed case", "App-4242.Gangway.test:443"),
        ("wildcard", "api.v2.team-42.example.com"),
        ("miss", "nothing.here.test"),
    ] {
        g.bench_function(name, |b| {
            b.iter(|| black_box(t.lookup(black_box(host), Scheme::Https).is_some()))
        });
    }
    g.finish();
}

/// Every non-auth module that runs on a plain GET, as a route would have
/// them.
fn busy_chain() -> Chain {
    let modules: RouteModules = serde_json::from_value(serde_json::json!({
        "user_agent_filter": { "deny": ["(?i)curl/.*", "(?i).*bot.*"] },
        "circuit_breaker": { "error_threshold_percentage": 0.5 },
        "request_headers": { "add": { "x-client-ip": "${conn.client_ip}" }, "remove": ["x-debug"] },
        "response_headers": { "add": { "x-served-by": "gangway" }, "remove": ["server"] },
        "compression": {}
    }))
    .unwrap_or_default();
    let ip = IpSet::from_cidrs(&["10.0.0.0/8".into(), "192.168.0.0/16".into()], &[]).ok();
    gangway_modules::route_chain(&modules, ip).unwrap_or_default()
}

fn module_chain(c: &mut Criterion) {
    let conn = ConnInfo {
        client: Some(([10, 1, 2, 3], 50000).into()),
        server: Some(([127, 0, 0, 1], 443).into()),
        server_name: "app.example".into(),
        tls: None,
    };
    let uri: http::Uri = "/api/items?page=2".parse().unwrap_or_default();
    let mut headers = http::HeaderMap::new();
    for (k, v) in [
        ("host", "app.example"),
        ("user-agent", "Mozilla/5.0 (X11; Linux x86_64)"),
        ("accept", "application/json"),
        ("accept-encoding", "gzip, br"),
    ] {
        headers.insert(k, http::HeaderValue::from_static(v));
    }
    let req = RequestInfo {
        conn: &conn,
        method: &http::Method::GET,
        uri: &uri,
        headers: &headers,
        scheme: "https",
        host: "app.example",
    };
    let busy = busy_chain();
    assert_eq!(busy.names().len(), 6, "the bench chain lost a module");
    let documents = std::sync::Arc::new(DocumentCache::new());
    let mut g = c.benchmark_group("module chain, one GET");
    for (name, chain) in [("empty chain", Chain::default()), ("six modules", busy)] {
        g.bench_function(name, |b| {
            b.iter_batched(
                || (headers.clone(), http::HeaderMap::new()),
                |(mut up, mut down)| {
                    let mut st = ChainState::new(&chain, documents.clone());
                    let ok = chain.on_connect(&conn, &mut st).is_ok()
                        && chain.on_request(&req, &mut st).is_ok();
                    chain.upstream_request(&req, &mut up, &mut st);
                    chain.on_response(&req, 200, &mut down, &mut st);
                    black_box((ok, up, down))
                },
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

fn proxy_header(c: &mut Criterion) {
    let h = ProxyHeader {
        id: "tn_2bQxyJ8h3mK4pL6nR9sT1vW0".into(),
        client_addr: "203.0.113.77:51234".into(),
        proto: "https".into(),
        edge_type: String::new(),
        passthrough_tls: false,
    };
    let mut g = c.benchmark_group("ProxyHeader");
    g.bench_function("encode (type + length + JSON)", |b| {
        let mut out = Vec::with_capacity(256);
        b.iter(|| {
            out.clear();
            encode_proxy_header(black_box(&h), &mut out);
            black_box(out.len())
        })
    });
    g.bench_function("serde_json to_vec (reference)", |b| {
        b.iter(|| black_box(serde_json::to_vec(black_box(&h)).map(|v| v.len())))
    });
    g.finish();
}

fn muxado_frames(c: &mut Criterion) {
    let mut g = c.benchmark_group("muxado frame codec");
    for size in [16usize, 16 * 1024] {
        let frame = Frame::Data {
            stream_id: 7,
            syn: false,
            fin: false,
            payload: Bytes::from(vec![0xab; size]),
        };
        let wire = frame.to_bytes();
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_function(format!("encode DATA {size} B"), |b| {
            let mut out = BytesMut::with_capacity(size + 64);
            b.iter(|| {
                out.clear();
                black_box(&frame).encode(&mut out);
                black_box(out.len())
            })
        });
        g.bench_function(format!("decode DATA {size} B"), |b| {
            b.iter_batched(
                || BytesMut::from(&wire[..]),
                |mut buf| black_box(frame::decode(&mut buf).ok().flatten().is_some()),
                BatchSize::SmallInput,
            )
        });
        g.bench_function(format!("memcpy {size} B (reference)"), |b| {
            let mut out = BytesMut::with_capacity(size + 64);
            b.iter(|| {
                out.clear();
                out.extend_from_slice(black_box(&wire));
                black_box(out.len())
            })
        });
    }
    g.finish();
}

criterion_group!(
    benches,
    route_lookup,
    module_chain,
    proxy_header,
    muxado_frames
);
criterion_main!(benches);
