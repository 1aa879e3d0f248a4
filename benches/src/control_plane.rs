//! Control-plane bench: how long an API write takes to reach the edge's
//! route table, and what a big configuration costs the edge.
//!
//! - compile: 10,000 HTTPS edges with 50,000 routes (5 each) compiled from
//!   stored records into `ControlConfig`, then into the edge's route table
//!   (`Registry::set_control`), with the process RSS they add;
//! - lookup: host → edge → route per request at that size, against the
//!   same lookup in a one-edge table;
//! - write → applied: an API write (HTTP, SQLite fsync) until the
//!   recompiled config is swapped in at the edge, p50/p99, with an empty
//!   store and with the big one.
//!
//! Everything runs in this process (the API on a loopback socket), so the
//! times are the control plane's own. `--edges N --routes-per-edge N
//! --writes N --out FILE`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use gangway_api::feed;
use gangway_api::ids::new_id;
use gangway_api::live::NoLive;
use gangway_api::rest::{ApiSettings, ApiState};
use gangway_api::store::sqlite::SqliteStore;
use gangway_api::store::{Op, Store};
use gangway_benches::{flag_value, machine, median, rss_kib, today, write_results};
use gangway_config::control::{ControlConfig, Resources};
use gangway_config::resources::{
    BackendModule, Common, HttpsEdge, HttpsEdgeRoute, MatchType, RouteModules, TunnelGroupBackend,
};
use gangway_edge::registry::Registry;
use http_body_util::{BodyExt, Full};

struct Opts {
    edges: usize,
    routes_per_edge: usize,
    writes: usize,
    out: Option<std::path::PathBuf>,
}

fn parse() -> Result<Opts, String> {
    let mut o = Opts {
        edges: 10_000,
        routes_per_edge: 5,
        writes: 200,
        out: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--edges" => o.edges = flag_value(&a, &mut args)?,
            "--routes-per-edge" => o.routes_per_edge = flag_value(&a, &mut args)?,
            "--writes" => o.writes = flag_value(&a, &mut args)?,
            "--out" => o.out = Some(flag_value::<String>(&a, &mut args)?.into()),
            other => return Err(format!("unknown flag {other}")),
        }
    }
    Ok(o)
}

fn common(prefix: &str) -> Common {
    Common {
        id: new_id(prefix),
        created_at: "2026-11-22T00:00:00Z".into(),
        description: String::new(),
        metadata: String::new(),
    }
}

/// A configuration of `edges` edges, each with `per_edge` prefix routes
/// to one of 100 tunnel groups, as the store holds it: (key, JSON) pairs.
fn big_config(edges: usize, per_edge: usize) -> Result<Vec<(String, Vec<u8>)>, String> {
    let enc = |v: &dyn erased::Json| v.to_json();
    let mut out = Vec::with_capacity(edges * (per_edge + 1) + 100);
    let groups: Vec<TunnelGroupBackend> = (0..100)
        .map(|i| TunnelGroupBackend {
            common: common("bkdtg"),
            labels: BTreeMap::from([("app".to_string(), format!("app{i}"))]),
        })
        .collect();
    for g in &groups {
        out.push((format!("/r/tunnel_group_backends/{}", g.common.id), enc(g)?));
    }
    for e in 0..edges {
        let edge = HttpsEdge {
            common: common("edghts"),
            hostports: vec![format!("e{e}.bench.test:443")],
            mutual_tls: None,
            tls_termination: None,
        };
        for r in 0..per_edge {
            let route = HttpsEdgeRoute {
                common: common("edghtsrt"),
                edge_id: edge.common.id.clone(),
                match_type: MatchType::PathPrefix,
                matches: if r == 0 {
                    "/".into()
                } else {
                    format!("/svc{r}")
                },
                modules: RouteModules {
                    backend: Some(BackendModule {
                        enabled: None,
                        backend_id: groups[(e + r) % groups.len()].common.id.clone(),
                    }),
                    ..RouteModules::default()
                },
            };
            out.push((
                format!(
                    "/r/https_edge_routes/{}/{}",
                    edge.common.id, route.common.id
                ),
                enc(&route)?,
            ));
        }
        out.push((format!("/r/https_edges/{}", edge.common.id), enc(&edge)?));
    }
    Ok(out)
}

/// Serialization behind one trait object, so records of several types go
/// through one closure.
mod erased {
    pub trait Json {
        fn to_json(&self) -> Result<Vec<u8>, String>;
    }
    impl<T: serde::Serialize> Json for T {
        fn to_json(&self) -> Result<Vec<u8>, String> {
            serde_json::to_vec(self).map_err(|e| e.to_string())
        }
    }
}

fn self_rss() -> u64 {
    rss_kib(std::process::id()).unwrap_or(0)
}

struct CompileResult {
    load_ms: f64,
    compile_ms: f64,
    table_ms: f64,
    rss_mib: f64,
    lookup_ns: f64,
    lookup_small_ns: f64,
}

/// Times ns per lookup of `hosts` × paths in `registry`'s table.
fn lookup_ns(registry: &Registry, hosts: &[String], rounds: usize) -> f64 {
    let paths = ["/", "/svc1/users", "/svc3", "/other/x", "/svc4/a/b/c"];
    let table = registry.table();
    let start = Instant::now();
    let mut hits = 0u64;
    for i in 0..rounds {
        let host = &hosts[i % hosts.len()];
        let path = paths[i % paths.len()];
        if let Some(edge) = table.lookup_edge(host) {
            if edge.route(path).is_some() {
                hits += 1;
            }
        }
    }
    let ns = start.elapsed().as_nanos() as f64 / rounds as f64;
    assert!(hits == rounds as u64, "every lookup must hit");
    ns
}

async fn compile_bench(store: &dyn Store, o: &Opts) -> Result<CompileResult, String> {
    let before = self_rss();
    let t = Instant::now();
    let (res, rev) = feed::load(store).await.map_err(|e| e.to_string())?;
    let load_ms = t.elapsed().as_secs_f64() * 1e3;
    let mut compiles = Vec::new();
    let mut tables = Vec::new();
    let registry = Registry::new();
    for _ in 0..3 {
        let t = Instant::now();
        let cfg = Arc::new(ControlConfig::compile(&res, rev));
        compiles.push(t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        registry.set_control(cfg);
        tables.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let rss_mib = (self_rss().saturating_sub(before)) as f64 / 1024.0;
    let hosts: Vec<String> = (0..o.edges.min(50_000))
        .map(|e| format!("e{}.bench.test", (e * 7919) % o.edges))
        .collect();
    let lookup = lookup_ns(&registry, &hosts, 2_000_000);

    // The same lookups against a one-edge table.
    let mut small = Resources::default();
    let one = res
        .https_edges
        .values()
        .next()
        .ok_or("no edges generated")?
        .clone();
    small.https_routes.extend(
        res.https_routes
            .iter()
            .filter(|(_, r)| r.edge_id == one.common.id)
            .map(|(k, v)| (k.clone(), v.clone())),
    );
    small.tunnel_groups = res.tunnel_groups.clone();
    let host = one.hostports[0].trim_end_matches(":443").to_string();
    small.https_edges.insert(one.common.id.clone(), one);
    let small_registry = Registry::new();
    small_registry.set_control(Arc::new(ControlConfig::compile(&small, rev)));
    let lookup_small = lookup_ns(&small_registry, &[host], 2_000_000);
    drop(res);
    Ok(CompileResult {
        load_ms,
        compile_ms: median(compiles),
        table_ms: median(tables),
        rss_mib,
        lookup_ns: lookup,
        lookup_small_ns: lookup_small,
    })
}

/// Write → applied latencies (ms) over `writes` sequential API writes.
async fn write_bench(
    store: Arc<dyn Store>,
    applied: Arc<Applied>,
    api: &str,
    key: &str,
    writes: usize,
) -> Result<Vec<f64>, String> {
    type Client = hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        Full<Bytes>,
    >;
    let client: Client =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http();
    let _ = store;
    let mut out = Vec::with_capacity(writes);
    for i in 0..writes {
        let seen = applied.count.load(Ordering::Acquire);
        let body = format!("{{\"description\":\"bench write {i}\"}}");
        let req = http::Request::post(format!("{api}/ip_policies"))
            .header("Authorization", format!("Bearer {key}"))
            .header("Ngrok-Version", "2")
            .header("Content-Type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        let t0 = Instant::now();
        let resp = client.request(req).await.map_err(|e| e.to_string())?;
        let status = resp.status();
        let _ = resp.into_body().collect().await;
        if status != 201 {
            return Err(format!("API write answered {status}"));
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if applied.count.load(Ordering::Acquire) > seen {
                let at = applied
                    .last
                    .lock()
                    .map_err(|e| e.to_string())?
                    .unwrap_or(t0);
                out.push(at.saturating_duration_since(t0).as_secs_f64() * 1e3);
                break;
            }
            if Instant::now() > deadline {
                return Err("the write never reached the edge".into());
            }
            tokio::time::sleep(Duration::from_micros(50)).await;
        }
    }
    Ok(out)
}

/// When configs were applied at the edge.
#[derive(Default)]
struct Applied {
    count: AtomicU64,
    last: Mutex<Option<Instant>>,
}

fn pct(mut v: Vec<f64>, p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v.get(i).copied().unwrap_or(0.0)
}

/// A store with a served API and a feed into an edge registry.
async fn control_plane(
    dir: &std::path::Path,
) -> Result<(Arc<dyn Store>, Arc<Applied>, String, String), String> {
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(&dir.join("bench.db")).map_err(|e| e.to_string())?);
    let key = gangway_api::bootstrap::api_key(store.as_ref(), None)
        .await
        .map_err(|e| e.to_string())?;
    let applied = Arc::new(Applied::default());
    let registry = Arc::new(Registry::new());
    let a = applied.clone();
    feed::start(
        store.clone(),
        Arc::new(move |cfg| {
            registry.set_control(cfg);
            if let Ok(mut l) = a.last.lock() {
                *l = Some(Instant::now());
            }
            a.count.fetch_add(1, Ordering::AcqRel);
        }),
    )
    .await
    .map_err(|e| e.to_string())?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let state = ApiState {
        store: store.clone(),
        settings: Arc::new(ApiSettings {
            api_addr: addr.to_string(),
            base_domain: "bench.test".into(),
            agent_addr: "localhost:4443".into(),
            region: "local".into(),
            https_port: 443,
            tcp_host: "localhost".into(),
            tcp_ports: 20000..=20999,
            live: Arc::new(NoLive),
        }),
    };
    tokio::spawn(gangway_api::rest::serve(listener, state));
    Ok((store, applied, format!("http://{addr}"), key))
}

async fn bulk_load(store: &dyn Store, records: Vec<(String, Vec<u8>)>) -> Result<(), String> {
    for chunk in records.chunks(5000) {
        let ops = chunk
            .iter()
            .map(|(k, v)| Op::Put {
                key: k.clone(),
                value: v.clone(),
                lease: None,
            })
            .collect();
        store
            .txn(Vec::new(), ops)
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

async fn run(o: Opts) -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let (store, applied, api, key) = control_plane(dir.path()).await?;
    eprintln!("write → applied, empty store ({} writes)", o.writes);
    let empty = write_bench(store.clone(), applied.clone(), &api, &key, o.writes).await?;

    let records = big_config(o.edges, o.routes_per_edge)?;
    let n = records.len();
    eprintln!("loading {n} records");
    bulk_load(store.as_ref(), records).await?;
    // Let the feed take in the bulk load before timing single writes.
    tokio::time::sleep(Duration::from_secs(2)).await;
    eprintln!(
        "write → applied, {} edges ({} writes)",
        o.edges,
        o.writes / 4
    );
    let big = write_bench(
        store.clone(),
        applied.clone(),
        &api,
        &key,
        (o.writes / 4).max(10),
    )
    .await?;
    eprintln!("compile and lookup");
    let c = compile_bench(store.as_ref(), &o).await?;

    let routes = o.edges * o.routes_per_edge;
    let md = format!(
        "# Control plane: API write → edge, and a big configuration\n\n\
         - date: {date}\n- machine: {machine}\n\
         - command: `scripts/bench control --edges {edges} --routes-per-edge {per} --writes {writes}`\n\
         - in one process: the API on loopback, the SQLite store (WAL, synchronous=FULL) in a temp dir, the feed, and the edge's registry; no agents\n\n\
         ## API write → change applied at the edge\n\n\
         From sending `POST /ip_policies` until the recompiled config is swapped into the edge's route table (HTTP, fsync, watch, full recompile, swap).\n\n\
         | store holds | writes | p50 ms | p99 ms | max ms |\n|---|---:|---:|---:|---:|\n\
         | nothing | {ne} | {e50:.2} | {e99:.2} | {emax:.2} |\n\
         | {edges} edges, {routes} routes | {nb} | {b50:.2} | {b99:.2} | {bmax:.2} |\n\n\
         ## {edges} HTTPS edges, {routes} routes\n\n\
         | step | result |\n|---|---:|\n\
         | read every record from the store | {load:.0} ms |\n\
         | compile into `ControlConfig` (median of 3) | {compile:.0} ms |\n\
         | build the edge's route table from it (median of 3) | {table:.0} ms |\n\
         | RSS added by the loaded and compiled config | {rss:.0} MiB |\n\
         | lookup host → edge → route, per request | {lk:.0} ns |\n\
         | the same lookup in a one-edge table | {lks:.0} ns ({ratio:.2}x) |\n\n\
         Every change recompiles the whole configuration, so a write's latency grows with its size; see the second row above.\n",
        date = today(),
        machine = machine(),
        edges = o.edges,
        per = o.routes_per_edge,
        writes = o.writes,
        ne = empty.len(),
        e50 = pct(empty.clone(), 0.5),
        e99 = pct(empty.clone(), 0.99),
        emax = pct(empty, 1.0),
        nb = big.len(),
        b50 = pct(big.clone(), 0.5),
        b99 = pct(big.clone(), 0.99),
        bmax = pct(big, 1.0),
        routes = routes,
        load = c.load_ms,
        compile = c.compile_ms,
        table = c.table_ms,
        rss = c.rss_mib,
        lk = c.lookup_ns,
        lks = c.lookup_small_ns,
        ratio = c.lookup_ns / c.lookup_small_ns.max(0.001),
    );
    write_results(o.out.as_deref(), "control-plane", &md)
}

fn main() -> std::process::ExitCode {
    let result = parse().and_then(|o| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?
            .block_on(run(o))
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("control-plane bench: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
