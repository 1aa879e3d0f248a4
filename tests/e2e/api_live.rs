//! The API's live views, read from the edge's session registry: tunnel
//! sessions, tunnels and agent-started endpoints of official-SDK agents,
//! and the restart/stop/update commands delivered to the agent over its
//! session as RPCs.

use std::sync::Arc;

use crate::support::{eventually, Server, DEADLINE};
use ngrok::config::ForwarderBuilder;
use ngrok::prelude::*;
use serde_json::Value;
use tokio::sync::Notify;
use tokio::time::timeout;

fn ids(list: &Value, key: &str) -> Vec<String> {
    list[key]
        .as_array()
        .unwrap_or_else(|| panic!("{key} in {list}"))
        .iter()
        .map(|v| v["id"].as_str().expect("id").to_string())
        .collect()
}

#[tokio::test]
async fn sessions_tunnels_and_endpoints_are_listed_live_and_commands_reach_the_agent() {
    let server = Server::start().await;
    let api = server.api();
    let stopped = Arc::new(Notify::new());
    let mut b = server.sdk_builder();
    b.metadata("rack=7");
    let on_stop = stopped.clone();
    b.handle_stop_command(move |_req: ngrok::session::Stop| {
        let on_stop = on_stop.clone();
        async move {
            on_stop.notify_one();
            Ok(())
        }
    });
    b.handle_update_command(|_req: ngrok::session::Update| async move {
        Err("updates are managed by the package manager".to_string())
    });
    let mut session = Server::sdk_connect(&b).await;
    let sid = session.id();
    assert!(sid.starts_with("ts_"), "session id {sid}");
    let to = reqwest::Url::parse("http://127.0.0.1:9").expect("url");
    let http = timeout(
        DEADLINE,
        session
            .http_endpoint()
            .metadata("web")
            .listen_and_forward(to.clone()),
    )
    .await
    .expect("bind timed out")
    .expect("bind");
    let mut lb = session.labeled_tunnel();
    lb.label("app", "api");
    let labeled = timeout(DEADLINE, lb.listen_and_forward(to))
        .await
        .expect("labeled timed out")
        .expect("labeled");

    // Sessions: ours, with its metadata and the credential it used.
    let (status, list) = api.get("/tunnel_sessions").await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(ids(&list, "tunnel_sessions"), vec![sid.clone()]);
    let s = &list["tunnel_sessions"][0];
    assert_eq!(s["metadata"], "rack=7");
    assert_eq!(s["ip"], "127.0.0.1");
    assert_eq!(s["os"], std::env::consts::OS);
    assert!(
        s["credential"]["id"]
            .as_str()
            .is_some_and(|c| c.starts_with("cr_")),
        "{s}"
    );
    assert!(s["uri"]
        .as_str()
        .is_some_and(|u| u.ends_with(&format!("/tunnel_sessions/{sid}"))));
    let (status, one) = api.get(&format!("/tunnel_sessions/{sid}")).await;
    assert_eq!((status, &one["id"]), (200, &Value::from(sid.clone())));

    // Tunnels: both, each pointing at the session; the labeled one with labels.
    let (_, tunnels) = api.get("/tunnels").await;
    let mut got = ids(&tunnels, "tunnels");
    got.sort();
    let mut want = vec![http.id().to_string(), labeled.id().to_string()];
    want.sort();
    assert_eq!(got, want);
    for t in tunnels["tunnels"].as_array().expect("tunnels") {
        assert_eq!(t["tunnel_session"]["id"], sid.as_str());
    }
    let (_, lt) = api.get(&format!("/tunnels/{}", labeled.id())).await;
    assert_eq!(lt["labels"]["app"], "api", "{lt}");

    // Endpoints: the named one only, with its URL split into parts.
    let (_, eps) = api.get("/endpoints").await;
    let ep = &eps["endpoints"][0];
    assert_eq!(eps["endpoints"].as_array().map(Vec::len), Some(1), "{eps}");
    assert_eq!(ep["public_url"], http.url());
    assert_eq!(ep["type"], "ephemeral");
    assert_eq!(ep["metadata"], "web");
    assert_eq!(ep["tunnel"]["id"], http.id());
    let (status, same) = api
        .get(
            ep["uri"]
                .as_str()
                .and_then(|u| u.split_once("/endpoints"))
                .map(|(_, r)| format!("/endpoints{r}"))
                .as_deref()
                .expect("uri"),
        )
        .await;
    assert_eq!((status, &same["id"]), (200, &ep["id"]));

    // Pagination over live lists works like over stored ones.
    let (_, page1) = api.get("/tunnels?limit=1").await;
    assert_eq!(ids(&page1, "tunnels").len(), 1);
    let next = page1["next_page_uri"].as_str().expect("next page");
    let (_, page2) = api
        .get(
            next.split_once(&server.info.api_url)
                .map_or(next, |(_, p)| p),
        )
        .await;
    assert_eq!(ids(&page2, "tunnels").len(), 1);
    assert!(page2["next_page_uri"].is_null());
    assert_ne!(ids(&page1, "tunnels"), ids(&page2, "tunnels"));

    // Update: the agent refuses, and the API says why.
    let (status, err) = api
        .post(&format!("/tunnel_sessions/{sid}/update"), Value::Null)
        .await;
    assert_eq!(status, 400, "{err}");
    // 9048 is the edge's "misdirected"; the API's agent refusal is 9052.
    assert_eq!(err["error_code"], "ERR_NGROK_9052");
    assert!(
        err["msg"]
            .as_str()
            .is_some_and(|m| m.contains("package manager")),
        "{err}"
    );

    // Stop: delivered to the agent's handler.
    let (status, body) = api
        .post(&format!("/tunnel_sessions/{sid}/stop"), Value::Null)
        .await;
    assert_eq!((status, &body), (200, &serde_json::json!({})));
    timeout(DEADLINE, stopped.notified())
        .await
        .expect("the agent's stop handler ran");

    // Unknown sessions are 404 for reads and commands alike.
    let (status, _) = api.get("/tunnel_sessions/ts_nope").await;
    assert_eq!(status, 404);
    let (status, err) = api
        .post("/tunnel_sessions/ts_nope/restart", Value::Null)
        .await;
    assert_eq!(
        (status, err["error_code"].as_str()),
        (404, Some("ERR_NGROK_404"))
    );

    // A session that closes leaves the views.
    drop(http);
    drop(labeled);
    session.close().await.expect("close");
    eventually("session gone from the API", || async {
        let (_, list) = api.get("/tunnel_sessions").await;
        let (_, tunnels) = api.get("/tunnels").await;
        (ids(&list, "tunnel_sessions").is_empty() && ids(&tunnels, "tunnels").is_empty())
            .then_some(())
    })
    .await;
}

#[tokio::test]
async fn restart_makes_the_gangway_agent_reconnect_with_its_tunnel() {
    let server = Server::start().await;
    let api = server.api();
    let app = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("app");
    let upstream = app.local_addr().expect("addr").to_string();
    let _agent = crate::support::Agent::http(&server, &upstream, &[]).await;
    let first = eventually("agent session listed", || async {
        let (_, list) = api.get("/tunnel_sessions").await;
        ids(&list, "tunnel_sessions").into_iter().next()
    })
    .await;
    let (status, body) = api
        .post(&format!("/tunnel_sessions/{first}/restart"), Value::Null)
        .await;
    assert_eq!(status, 200, "{body}");
    // The agent drops its session and dials again, resuming its id and tunnel.
    eventually("agent back with its tunnel", || async {
        let log = server.log();
        let (_, tunnels) = api.get("/tunnels").await;
        (log.matches("agent authenticated").count() >= 2 && ids(&tunnels, "tunnels").len() == 1)
            .then_some(())
    })
    .await;
    let (_, list) = api.get("/tunnel_sessions").await;
    assert_eq!(ids(&list, "tunnel_sessions"), vec![first]);
}
