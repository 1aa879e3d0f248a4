//! Live views read from the edge's session registry, not the store:
//! `/tunnel_sessions` (with restart/stop/update sent to the agent as RPC
//! commands), `/tunnels` and the agent-started `/endpoints`.

use axum::extract::Path;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Map, Value};

use gangway_config::resources::Credential;

use super::{Ctx, Resource};
use crate::live::{Command, CommandError, LiveSession, LiveTunnel};
use crate::rest::error::{codes, ApiError, ApiResult};
use crate::rest::extract::ListParams;
use crate::rest::ApiState;

fn rfc3339(ms: u64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms as i64)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn reference(ctx: &Ctx, path: &str, id: &str) -> Value {
    json!({"id": id, "uri": ctx.uri(&format!("{path}/{id}"))})
}

fn render_session(ctx: &Ctx, s: &LiveSession) -> Value {
    let ip = s
        .peer
        .parse::<std::net::SocketAddr>()
        .map_or_else(|_| s.peer.clone(), |a| a.ip().to_string());
    json!({
        "id": s.id,
        "uri": ctx.uri(&format!("/tunnel_sessions/{}", s.id)),
        "agent_version": s.agent_version,
        "credential": (!s.credential_id.is_empty())
            .then(|| ctx.reference(&Credential::KIND, &s.credential_id)),
        "ip": ip,
        "metadata": s.metadata,
        "os": s.os,
        "region": ctx.settings.region,
        "started_at": rfc3339(s.started_at_ms),
        "transport": "ngrok/2",
    })
}

/// An agent-started endpoint's id, derived from its tunnel's.
pub(super) fn endpoint_id(tunnel_id: &str) -> String {
    format!("ep_{}", tunnel_id.strip_prefix("tn_").unwrap_or(tunnel_id))
}

fn render_tunnel(ctx: &Ctx, t: &LiveTunnel) -> Value {
    let mut m = json!({
        "id": t.id,
        "started_at": rfc3339(t.started_at_ms),
        "metadata": t.metadata,
        "region": ctx.settings.region,
        "tunnel_session": reference(ctx, "/tunnel_sessions", &t.session_id),
        "forwards_to": t.forwards_to,
    });
    // A labeled tunnel has no URL of its own: it serves edges.
    if t.labels.is_empty() {
        m["public_url"] = t.public_url.clone().into();
        m["proto"] = t.proto.clone().into();
        m["endpoint"] = reference(ctx, "/endpoints", &endpoint_id(&t.id));
    } else {
        m["labels"] = json!(t.labels);
    }
    m
}

/// An agent-started endpoint: one per tunnel with a URL of its own.
pub(super) fn render_endpoint(ctx: &Ctx, t: &LiveTunnel) -> Option<Value> {
    if t.public_url.is_empty() {
        return None;
    }
    let url = http::Uri::try_from(t.public_url.as_str()).ok()?;
    let scheme = url.scheme_str().unwrap_or(&t.proto).to_string();
    let host = url.host().unwrap_or_default().to_string();
    let port = url.port_u16().unwrap_or(match scheme.as_str() {
        "http" => 80,
        _ => 443,
    });
    let id = endpoint_id(&t.id);
    Some(json!({
        "id": id,
        "uri": ctx.uri(&format!("/endpoints/{id}")),
        "region": ctx.settings.region,
        "created_at": rfc3339(t.started_at_ms),
        "updated_at": rfc3339(t.started_at_ms),
        "public_url": t.public_url,
        "url": t.public_url,
        "proto": t.proto,
        "scheme": scheme,
        "hostport": format!("{host}:{port}"),
        "host": host,
        "port": port,
        "type": "ephemeral",
        "metadata": t.metadata,
        "description": "",
        "upstream_url": t.forwards_to,
        "bindings": if t.bindings.is_empty() { vec!["public".to_string()] } else { t.bindings.clone() },
        "tunnel": reference(ctx, "/tunnels", &t.id),
        "tunnel_session": reference(ctx, "/tunnel_sessions", &t.session_id),
    }))
}

/// Pages an in-memory list, newest first, the way stored lists page.
pub(super) fn page(
    ctx: &Ctx,
    path: &str,
    key: &str,
    mut items: Vec<(u64, String, Value)>,
    p: &ListParams,
) -> Value {
    items.sort_by(|a, b| (b.0, &b.1).cmp(&(a.0, &a.1)));
    let start = match &p.before_id {
        Some(id) => items
            .iter()
            .position(|(_, i, _)| i == id)
            .map_or(items.len(), |i| i + 1),
        None => 0,
    };
    let rest = &items[start.min(items.len())..];
    let shown: Vec<Value> = rest
        .iter()
        .take(p.limit)
        .map(|(_, _, v)| v.clone())
        .collect();
    let next = (rest.len() > p.limit).then(|| {
        ctx.uri(&format!(
            "{path}?before_id={}&limit={}",
            rest[p.limit - 1].1,
            p.limit
        ))
    });
    let mut body = Map::new();
    body.insert(key.into(), Value::Array(shown));
    body.insert("uri".into(), ctx.uri(path).into());
    body.insert("next_page_uri".into(), next.into());
    Value::Object(body)
}

async fn list_sessions(ctx: Ctx, p: ListParams) -> Json<Value> {
    let items = ctx
        .settings
        .live
        .sessions()
        .iter()
        .map(|s| (s.started_at_ms, s.id.clone(), render_session(&ctx, s)))
        .collect();
    Json(page(&ctx, "/tunnel_sessions", "tunnel_sessions", items, &p))
}

async fn get_session(ctx: Ctx, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    ctx.settings
        .live
        .sessions()
        .iter()
        .find(|s| s.id == id)
        .map(|s| Json(render_session(&ctx, s)))
        .ok_or_else(|| ApiError::not_found("tunnel session", &id))
}

/// ngrok documents 204 for commands, but its Python client fails on a
/// bodiless answer; `200 {}` satisfies every client.
async fn command(ctx: &Ctx, id: &str, cmd: Command) -> ApiResult<Json<Value>> {
    match ctx.settings.live.command(id, cmd).await {
        Ok(()) => Ok(Json(json!({}))),
        Err(CommandError::NoSession(_)) => Err(ApiError::not_found("tunnel session", id)),
        Err(e @ CommandError::Refused(_)) => {
            Err(ApiError::new(codes::AGENT_REFUSED, e.to_string()))
        }
        Err(e @ CommandError::Unreachable(_)) => {
            Err(ApiError::new(codes::AGENT_UNREACHABLE, e.to_string()))
        }
    }
}

async fn restart(ctx: Ctx, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    command(&ctx, &id, Command::Restart).await
}

async fn stop(ctx: Ctx, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    command(&ctx, &id, Command::Stop).await
}

async fn update(ctx: Ctx, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    command(&ctx, &id, Command::Update).await
}

async fn list_tunnels(ctx: Ctx, p: ListParams) -> Json<Value> {
    let items = ctx
        .settings
        .live
        .tunnels()
        .iter()
        .map(|t| (t.started_at_ms, t.id.clone(), render_tunnel(&ctx, t)))
        .collect();
    Json(page(&ctx, "/tunnels", "tunnels", items, &p))
}

async fn get_tunnel(ctx: Ctx, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    ctx.settings
        .live
        .tunnels()
        .iter()
        .find(|t| t.id == id)
        .map(|t| Json(render_tunnel(&ctx, t)))
        .ok_or_else(|| ApiError::not_found("tunnel", &id))
}

pub fn mount(router: Router<ApiState>) -> Router<ApiState> {
    router
        .route("/tunnel_sessions", get(list_sessions))
        .route("/tunnel_sessions/{id}", get(get_session))
        .route("/tunnel_sessions/{id}/restart", post(restart))
        .route("/tunnel_sessions/{id}/stop", post(stop))
        .route("/tunnel_sessions/{id}/update", post(update))
        .route("/tunnels", get(list_tunnels))
        .route("/tunnels/{id}", get(get_tunnel))
}
