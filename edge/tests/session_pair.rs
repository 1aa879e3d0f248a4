//! An agent and the edge paired in memory (a tokio duplex instead of TLS
//! over TCP) with time paused, as quinn-proto's tests pair a client and a
//! server: Auth, Bind, Unbind, refusals, the auth deadline, heartbeats
//! kept and lost, and a reconnect that takes its name back. No sockets,
//! no sleeps that cost wall-clock time.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use gangway_config::EdgeConfig;
use gangway_edge::agent_listener::{serve, AgentApp, AUTH_TIMEOUT};
use gangway_edge::registry::Registry;
use gangway_edge::route_table::Scheme;
use gangway_proto::heartbeat;
use gangway_proto::msg::{
    self, Auth, AuthExtra, AuthResp, Bind, BindExtra, BindResp, Unbind, UnbindResp,
};
use gangway_proto::rpc::{self, RpcError};
use gangway_proto::{Acceptor, Role, Session, SessionConfig};
use serde_json::json;

const TOKEN: &str = "pair-token";
const INTERVAL: Duration = Duration::from_secs(1);
const TOLERANCE: Duration = Duration::from_secs(2);

fn config() -> Arc<EdgeConfig> {
    let addr = SocketAddr::from(([127, 0, 0, 1], 443));
    Arc::new(EdgeConfig {
        base_domain: "pair.example".into(),
        agent_addr: addr,
        http_addr: SocketAddr::from(([127, 0, 0, 1], 80)),
        https_addr: addr,
        cert_path: "unused.pem".into(),
        key_path: "unused.key".into(),
        authtokens: vec![TOKEN.into()],
        threads: 1,
        tcp_ip: IpAddr::from([127, 0, 0, 1]),
        tcp_host: "pair.example".into(),
        tcp_ports: 40000..=40009,
        region: "memory".into(),
        events: Default::default(),
        reserved: Vec::new(),
        outbound_ca: None,
        connect_to: Vec::new(),
    })
}

/// The agent's end of one in-memory connection.
struct Agent {
    session: Session,
    _streams: Acceptor,
}

fn connect(app: &Arc<AgentApp>) -> Agent {
    let (agent_io, edge_io) = tokio::io::duplex(64 * 1024);
    tokio::spawn(serve(app.clone(), edge_io, "memory".into()));
    let (session, streams) = gangway_proto::start(agent_io, SessionConfig::new(Role::Client));
    Agent {
        session,
        _streams: streams,
    }
}

async fn auth(agent: &Agent, token: &str, client_id: &str) -> Result<AuthResp, RpcError> {
    let req = Auth {
        version: vec!["3".into()],
        client_id: client_id.into(),
        extra: AuthExtra {
            auth_token: token.into(),
            heartbeat_interval: INTERVAL.as_nanos() as i64,
            heartbeat_tolerance: TOLERANCE.as_nanos() as i64,
            ..AuthExtra::default()
        },
    };
    rpc::call(&agent.session, msg::AUTH, &req).await
}

async fn bind(agent: &Agent, tunnel_id: &str, subdomain: &str) -> Result<BindResp, RpcError> {
    let req = Bind {
        id: tunnel_id.into(),
        proto: "https".into(),
        forwards_to: "localhost:8080".into(),
        forwards_proto: String::new(),
        opts: json!({ "Subdomain": subdomain }),
        extra: BindExtra::default(),
    };
    rpc::call(&agent.session, msg::BIND, &req).await
}

async fn unbind(agent: &Agent, tunnel_id: &str) -> Result<UnbindResp, RpcError> {
    let req = Unbind {
        id: tunnel_id.into(),
    };
    rpc::call(&agent.session, msg::UNBIND, &req).await
}

/// Tunnels serving `host` on the HTTPS port; `None`: unknown name.
fn serving(registry: &Registry, host: &str) -> Option<usize> {
    registry
        .table()
        .lookup(host, Scheme::Https)
        .map(|e| e.targets.len())
}

#[tokio::test(start_paused = true)]
async fn auth_bind_unbind_heartbeats_and_reconnect_in_memory() {
    let registry = Arc::new(Registry::new());
    let app = Arc::new(AgentApp::new(registry.clone(), config()));
    let host = "app.pair.example";

    // Nothing before Auth; a bad token is refused with ngrok's code.
    let early = connect(&app);
    let err = bind(&early, "tn_pair", "app")
        .await
        .expect_err("before auth");
    assert_eq!(err.code(), Some("ERR_NGROK_4016"), "{err}");
    let stranger = connect(&app);
    let err = auth(&stranger, "nope", "").await.expect_err("bad token");
    assert_eq!(err.code(), Some("ERR_NGROK_107"), "{err}");

    // An agent that never authenticates is cut off at the deadline.
    let idle = connect(&app);
    tokio::time::sleep(AUTH_TIMEOUT + Duration::from_secs(1)).await;
    assert!(
        idle.session.is_closed(),
        "unauthenticated past the deadline"
    );

    // Auth keeps the agent's client id; Bind routes the name.
    let agent = connect(&app);
    let resp = auth(&agent, TOKEN, "ts_pair").await.expect("auth");
    assert_eq!(resp.client_id, "ts_pair");
    let bound = bind(&agent, "tn_pair", "app").await.expect("bind");
    assert_eq!(bound.url, "https://app.pair.example");
    assert_eq!(serving(&registry, host), Some(1));
    let other = bind(&agent, "tn_other", "App").await;
    let err = other.expect_err("the name is taken and neither pools");
    assert_eq!(err.code(), Some("ERR_NGROK_334"), "{err}");

    // Unbind frees the name; an unknown tunnel is refused.
    unbind(&agent, "tn_pair").await.expect("unbind");
    assert_eq!(serving(&registry, host), None);
    let err = unbind(&agent, "tn_pair").await.expect_err("gone");
    assert_eq!(err.code(), Some("ERR_NGROK_333"), "{err}");

    // Heartbeats keep the session for as long as they come.
    bind(&agent, "tn_pair", "app").await.expect("bind again");
    let beats = {
        let session = agent.session.clone();
        tokio::spawn(async move {
            let _ = heartbeat::run_client(&session, INTERVAL, TOLERANCE, |_| {}).await;
        })
    };
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert!(!agent.session.is_closed(), "beating for a minute");
    assert_eq!(serving(&registry, host), Some(1));

    // They stop: the edge reaps the session; the name answers offline.
    beats.abort();
    tokio::time::sleep(INTERVAL + TOLERANCE + Duration::from_secs(1)).await;
    assert!(agent.session.is_closed(), "reaped after the tolerance");
    assert_eq!(serving(&registry, host), Some(0), "offline, not unknown");
    assert_eq!(registry.session_count(), 0);

    // The agent reconnects with its client id and tunnel id: same URL.
    let again = connect(&app);
    auth(&again, TOKEN, "ts_pair").await.expect("auth again");
    let rebound = bind(&again, "tn_pair", "app").await.expect("rebind");
    assert_eq!(rebound.url, bound.url);
    assert_eq!(serving(&registry, host), Some(1));
    let sessions = registry.sessions();
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0].1.client_id, "ts_pair");
}
