//! `/edges/https/{edge_id}/routes` and each route module as a
//! sub-resource (`PUT/GET/DELETE …/routes/{id}/<module>`).
//!
//! Routes are stored at `/r/https_edge_routes/<edge_id>/<id>` so an edge's
//! routes are one key range. Module bodies are validated here, field by
//! field, before anything is stored.

use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use gangway_config::resources::{
    is_enabled, BackendModule, CertificateAuthority, CircuitBreakerModule, Common, EnabledModule,
    HeadersModule, HttpsEdge, HttpsEdgeRoute, IpPolicy, IpRestrictionModule, MatchType,
    RouteModules, TrafficPolicyModule, TunnelGroupBackend, UserAgentFilterModule,
    WebhookVerificationModule,
};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::{check_common, commit, load_all, now_rfc3339, Ctx, Kind, Resource, Writes};
use crate::ids;
use crate::rest::error::{codes, ApiError, ApiResult};
use crate::rest::extract::Body;
use crate::rest::ApiState;
use crate::store::Compare;

pub const ROUTE_KIND: Kind = Kind {
    store: "https_edge_routes",
    prefix: "edghtsrt",
    path: "/edges/https",
    list_key: "routes",
    noun: "HTTPS edge route",
};

/// Every module a route can have, in ngrok's field order.
pub const MODULES: [&str; 13] = [
    "backend",
    "ip_restriction",
    "circuit_breaker",
    "compression",
    "request_headers",
    "response_headers",
    "webhook_verification",
    "oauth",
    "saml",
    "oidc",
    "websocket_tcp_converter",
    "user_agent_filter",
    "traffic_policy",
];

pub fn edge_routes_prefix(edge_id: &str) -> String {
    format!("/r/{}/{edge_id}/", ROUTE_KIND.store)
}

pub fn route_key(edge_id: &str, id: &str) -> String {
    format!("/r/{}/{edge_id}/{id}", ROUTE_KIND.store)
}

fn route_uri(ctx: &Ctx, edge_id: &str, id: &str) -> String {
    ctx.uri(&format!("/edges/https/{edge_id}/routes/{id}"))
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteInput {
    #[serde(default)]
    pub match_type: Option<String>,
    #[serde(default, rename = "match")]
    pub matches: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub metadata: Option<String>,
    #[serde(default)]
    pub backend: Option<Value>,
    #[serde(default)]
    pub ip_restriction: Option<Value>,
    #[serde(default)]
    pub circuit_breaker: Option<Value>,
    #[serde(default)]
    pub compression: Option<Value>,
    #[serde(default)]
    pub request_headers: Option<Value>,
    #[serde(default)]
    pub response_headers: Option<Value>,
    #[serde(default)]
    pub webhook_verification: Option<Value>,
    #[serde(default)]
    pub oauth: Option<Value>,
    #[serde(default)]
    pub saml: Option<Value>,
    #[serde(default)]
    pub oidc: Option<Value>,
    #[serde(default)]
    pub websocket_tcp_converter: Option<Value>,
    #[serde(default)]
    pub user_agent_filter: Option<Value>,
    #[serde(default)]
    pub traffic_policy: Option<Value>,
}

impl RouteInput {
    /// The modules the body sets (JSON `null` counts as absent).
    fn modules(&self) -> Vec<(&'static str, &Value)> {
        let all = [
            &self.backend,
            &self.ip_restriction,
            &self.circuit_breaker,
            &self.compression,
            &self.request_headers,
            &self.response_headers,
            &self.webhook_verification,
            &self.oauth,
            &self.saml,
            &self.oidc,
            &self.websocket_tcp_converter,
            &self.user_agent_filter,
            &self.traffic_policy,
        ];
        MODULES
            .iter()
            .zip(all)
            .filter_map(|(name, v)| v.as_ref().filter(|v| !v.is_null()).map(|v| (*name, v)))
            .collect()
    }
}

fn parse_match_type(raw: &str) -> ApiResult<MatchType> {
    match raw {
        "exact_path" => Ok(MatchType::ExactPath),
        "path_prefix" => Ok(MatchType::PathPrefix),
        other => Err(ApiError::invalid(
            codes::INVALID_MATCH,
            "match_type",
            format!("match_type: {other:?} is not exact_path or path_prefix."),
        )),
    }
}

fn check_match(m: &str) -> ApiResult<()> {
    if !m.starts_with('/')
        || m.bytes()
            .any(|b| b.is_ascii_whitespace() || b == b'?' || b == b'#')
    {
        return Err(ApiError::invalid(
            codes::INVALID_MATCH,
            "match",
            format!("match: {m:?} must be a path starting with '/' (no query or fragment)."),
        ));
    }
    Ok(())
}

pub(super) fn typed<T: DeserializeOwned>(field: &str, v: &Value) -> ApiResult<T> {
    let bytes = serde_json::to_vec(v).map_err(ApiError::internal)?;
    crate::rest::extract::parse_json::<T>(&bytes).map_err(|e| {
        let inner = e.details.get("field").and_then(Value::as_str).unwrap_or("");
        let path = if inner.is_empty() {
            field.to_string()
        } else {
            format!("{field}.{inner}")
        };
        let msg = match e.msg.split_once(": ") {
            Some((_, rest)) if !inner.is_empty() => format!("{path}: {rest}"),
            _ => format!("{path}: {}", e.msg),
        };
        ApiError { msg, ..e }.detail("field", path)
    })
}

fn out_of_range(field: &str, why: &str) -> ApiError {
    ApiError::invalid(codes::INVALID_VALUE, field, format!("{field}: {why}"))
}

/// Compiles one module alone with the edge's own compiler, so the API
/// refuses exactly what the edge could not run (field path included).
fn check_with_edge_compiler(modules: RouteModules) -> ApiResult<()> {
    gangway_modules::route_chain(&modules, None)
        .map(|_| ())
        .map_err(|e| out_of_range(&e.field, &format!("{}.", e.reason)))
}

/// The stored form of a header module: names lowercased.
fn normalize_headers(h: &mut HeadersModule) {
    h.add = std::mem::take(&mut h.add)
        .into_iter()
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v))
        .collect();
    for name in &mut h.remove {
        *name = name.trim().to_ascii_lowercase();
    }
}

/// Validates one module body and returns its stored form.
pub(super) async fn validate_module(
    ctx: &Ctx,
    name: &str,
    v: &Value,
    w: &mut Writes,
) -> ApiResult<Value> {
    let stored = match name {
        "backend" => {
            let m: BackendModule = typed(name, v)?;
            ctx.referenced::<TunnelGroupBackend>(
                &TunnelGroupBackend::KIND,
                &m.backend_id,
                "backend.backend_id",
                w,
            )
            .await?;
            serde_json::to_value(m)
        }
        "ip_restriction" => {
            let m: IpRestrictionModule = typed(name, v)?;
            if m.ip_policy_ids.is_empty() {
                return Err(out_of_range(
                    "ip_restriction.ip_policy_ids",
                    "at least one IP policy id.",
                ));
            }
            for (i, id) in m.ip_policy_ids.iter().enumerate() {
                let f = format!("ip_restriction.ip_policy_ids[{i}]");
                ctx.referenced::<IpPolicy>(&IpPolicy::KIND, id, &f, w)
                    .await?;
            }
            serde_json::to_value(m)
        }
        "circuit_breaker" => {
            let m: CircuitBreakerModule = typed(name, v)?;
            check_with_edge_compiler(RouteModules {
                circuit_breaker: Some(m.clone()),
                ..RouteModules::default()
            })?;
            serde_json::to_value(m)
        }
        "compression" | "websocket_tcp_converter" => {
            serde_json::to_value(typed::<EnabledModule>(name, v)?)
        }
        "request_headers" | "response_headers" => {
            let mut m: HeadersModule = typed(name, v)?;
            let mut one = RouteModules::default();
            if name == "request_headers" {
                one.request_headers = Some(m.clone());
            } else {
                one.response_headers = Some(m.clone());
            }
            check_with_edge_compiler(one)?;
            normalize_headers(&mut m);
            serde_json::to_value(m)
        }
        "webhook_verification" => {
            let m: WebhookVerificationModule = typed(name, v)?;
            check_with_edge_compiler(RouteModules {
                webhook_verification: Some(m.clone()),
                ..RouteModules::default()
            })?;
            serde_json::to_value(m)
        }
        "user_agent_filter" => {
            let m: UserAgentFilterModule = typed(name, v)?;
            check_with_edge_compiler(RouteModules {
                user_agent_filter: Some(m.clone()),
                ..RouteModules::default()
            })?;
            serde_json::to_value(m)
        }
        "traffic_policy" => {
            let m: TrafficPolicyModule = typed(name, v)?;
            if m.value.trim().is_empty() {
                return Err(out_of_range(
                    "traffic_policy.value",
                    "the policy document is empty.",
                ));
            }
            check_with_edge_compiler(RouteModules {
                traffic_policy: Some(m.clone()),
                ..RouteModules::default()
            })?;
            serde_json::to_value(m)
        }
        "oauth" | "saml" | "oidc" => {
            if !v.is_object() {
                return Err(out_of_range(name, "must be an object."));
            }
            Ok(v.clone())
        }
        other => {
            return Err(ApiError::not_found("route module", other));
        }
    };
    stored.map_err(ApiError::internal)
}

/// Sets (or with `None` removes) modules and checks the combination.
fn set_modules(route: &mut HttpsEdgeRoute, changes: Vec<(&str, Option<Value>)>) -> ApiResult<()> {
    let mut map = match serde_json::to_value(&route.modules).map_err(ApiError::internal)? {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    for (name, v) in changes {
        match v {
            Some(v) => map.insert(name.to_string(), v),
            None => map.remove(name),
        };
    }
    let modules: RouteModules =
        serde_json::from_value(Value::Object(map)).map_err(ApiError::internal)?;
    let auth = [&modules.oauth, &modules.saml, &modules.oidc]
        .iter()
        .filter(|m| {
            m.as_ref()
                .is_some_and(|v| v.get("enabled") != Some(&Value::Bool(false)))
        })
        .count();
    if auth > 1 {
        return Err(ApiError::new(
            codes::AUTH_MODULES_EXCLUSIVE,
            "oauth, oidc and saml are mutually exclusive on a route.",
        ));
    }
    route.modules = modules;
    Ok(())
}

fn enabled_of(v: &Value) -> bool {
    v.get("enabled").and_then(Value::as_bool).unwrap_or(true)
}

/// A stored module in ngrok's response shape.
pub(super) fn render_module(ctx: &Ctx, name: &str, v: &Value) -> Value {
    let mut out = match v {
        Value::Object(m) => m.clone(),
        _ => Map::new(),
    };
    out.insert("enabled".into(), enabled_of(v).into());
    match name {
        "backend" => {
            let id = out
                .remove("backend_id")
                .and_then(|v| v.as_str().map(str::to_string));
            out.insert(
                "backend".into(),
                id.map_or(Value::Null, |id| {
                    ctx.reference(&TunnelGroupBackend::KIND, &id)
                }),
            );
        }
        "ip_restriction" => {
            let ids: Vec<String> = out
                .remove("ip_policy_ids")
                .and_then(|v| serde_json::from_value(v).ok())
                .unwrap_or_default();
            out.insert(
                "ip_policies".into(),
                ids.iter()
                    .map(|id| ctx.reference(&IpPolicy::KIND, id))
                    .collect(),
            );
        }
        "mutual_tls" => {
            let ids: Vec<String> = out
                .remove("certificate_authority_ids")
                .and_then(|v| serde_json::from_value(v).ok())
                .unwrap_or_default();
            out.insert(
                "certificate_authorities".into(),
                ids.iter()
                    .map(|id| ctx.reference(&CertificateAuthority::KIND, id))
                    .collect(),
            );
        }
        _ => {}
    }
    Value::Object(out)
}

pub fn render_route(ctx: &Ctx, r: &HttpsEdgeRoute) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("edge_id".into(), r.edge_id.clone().into());
    m.insert("id".into(), r.common.id.clone().into());
    m.insert("created_at".into(), r.common.created_at.clone().into());
    m.insert(
        "match_type".into(),
        serde_json::to_value(r.match_type).unwrap_or(Value::Null),
    );
    m.insert("match".into(), r.matches.clone().into());
    m.insert(
        "uri".into(),
        route_uri(ctx, &r.edge_id, &r.common.id).into(),
    );
    m.insert("description".into(), r.common.description.clone().into());
    m.insert("metadata".into(), r.common.metadata.clone().into());
    let stored = serde_json::to_value(&r.modules).unwrap_or(Value::Null);
    for name in MODULES {
        let v = stored
            .get(name)
            .map_or(Value::Null, |v| render_module(ctx, name, v));
        m.insert(name.into(), v);
    }
    m
}

async fn load_route(ctx: &Ctx, edge_id: &str, id: &str) -> ApiResult<(HttpsEdgeRoute, i64)> {
    match ctx.store.get(&route_key(edge_id, id)).await? {
        Some(kv) => Ok((
            serde_json::from_slice(&kv.value).map_err(ApiError::internal)?,
            kv.mod_revision,
        )),
        None => Err(ApiError::not_found(ROUTE_KIND.noun, id)),
    }
}

/// Another route of the edge with the same match refuses a write.
async fn check_unique(ctx: &Ctx, route: &HttpsEdgeRoute) -> ApiResult<()> {
    let others = load_all::<HttpsEdgeRoute>(ctx, &edge_routes_prefix(&route.edge_id)).await?;
    for (o, _) in others {
        if o.common.id != route.common.id
            && o.match_type == route.match_type
            && o.matches == route.matches
        {
            return Err(ApiError::new(
                codes::IN_USE,
                format!(
                    "Route {} of this edge already matches {:?}.",
                    o.common.id, route.matches
                ),
            ));
        }
    }
    Ok(())
}

async fn validate_changes<'a>(
    ctx: &Ctx,
    input: &'a RouteInput,
    w: &mut Writes,
) -> ApiResult<Vec<(&'a str, Option<Value>)>> {
    let mut changes = Vec::new();
    for (name, v) in input.modules() {
        changes.push((name, Some(validate_module(ctx, name, v, w).await?)));
    }
    Ok(changes)
}

async fn create_route(
    ctx: Ctx,
    Path(edge_id): Path<String>,
    Body(input): Body<RouteInput>,
) -> ApiResult<Response> {
    check_common(input.description.as_deref(), input.metadata.as_deref())?;
    let match_type = parse_match_type(input.match_type.as_deref().unwrap_or(""))?;
    let matches = input.matches.clone().unwrap_or_default();
    check_match(&matches)?;
    let id = ids::new_id(ROUTE_KIND.prefix);
    let created_at = now_rfc3339();
    for _ in 0..8 {
        let (_, edge_rev) = ctx.load::<HttpsEdge>(&HttpsEdge::KIND, &edge_id).await?;
        let mut w = Writes::default();
        w.compares.push(Compare::ModRevision(
            HttpsEdge::KIND.key(&edge_id),
            edge_rev,
        ));
        let mut route = HttpsEdgeRoute {
            common: Common {
                id: id.clone(),
                created_at: created_at.clone(),
                description: input.description.clone().unwrap_or_default(),
                metadata: input.metadata.clone().unwrap_or_default(),
            },
            edge_id: edge_id.clone(),
            match_type,
            matches: matches.clone(),
            modules: RouteModules::default(),
        };
        let changes = validate_changes(&ctx, &input, &mut w).await?;
        set_modules(&mut route, changes)?;
        check_unique(&ctx, &route).await?;
        let key = route_key(&edge_id, &id);
        w.compares.push(Compare::ModRevision(key.clone(), 0));
        w.put(key, &route)?;
        if commit(&ctx, w).await? {
            let body = Value::Object(render_route(&ctx, &route));
            return Ok((StatusCode::CREATED, Json(body)).into_response());
        }
    }
    Err(ApiError::new(
        codes::IN_USE,
        "The edge kept changing; try again.",
    ))
}

async fn get_route(
    ctx: Ctx,
    Path((edge_id, id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let (route, _) = load_route(&ctx, &edge_id, &id).await?;
    Ok(Json(Value::Object(render_route(&ctx, &route))))
}

/// Writes a route read at `rev` back, guarded; false if it changed meanwhile.
async fn save_route(ctx: &Ctx, route: &HttpsEdgeRoute, rev: i64, mut w: Writes) -> ApiResult<bool> {
    check_unique(ctx, route).await?;
    let key = route_key(&route.edge_id, &route.common.id);
    w.compares.push(Compare::ModRevision(key.clone(), rev));
    w.put(key, route)?;
    commit(ctx, w).await
}

fn route_busy() -> ApiError {
    ApiError::new(codes::IN_USE, "The route kept changing; try again.")
}

async fn update_route(
    ctx: Ctx,
    Path((edge_id, id)): Path<(String, String)>,
    Body(input): Body<RouteInput>,
) -> ApiResult<Json<Value>> {
    check_common(input.description.as_deref(), input.metadata.as_deref())?;
    // The official clients send "" for match_type/match they leave alone.
    let match_type = match input.match_type.as_deref().filter(|s| !s.is_empty()) {
        Some(t) => Some(parse_match_type(t)?),
        None => None,
    };
    let matches = input.matches.clone().filter(|m| !m.is_empty());
    if let Some(m) = &matches {
        check_match(m)?;
    }
    for _ in 0..8 {
        let (mut route, rev) = load_route(&ctx, &edge_id, &id).await?;
        let mut w = Writes::default();
        let changes = validate_changes(&ctx, &input, &mut w).await?;
        set_modules(&mut route, changes)?;
        if let Some(t) = match_type {
            route.match_type = t;
        }
        if let Some(m) = &matches {
            route.matches = m.clone();
        }
        if let Some(d) = &input.description {
            route.common.description = d.clone();
        }
        if let Some(m) = &input.metadata {
            route.common.metadata = m.clone();
        }
        if save_route(&ctx, &route, rev, w).await? {
            return Ok(Json(Value::Object(render_route(&ctx, &route))));
        }
    }
    Err(route_busy())
}

async fn delete_route(
    ctx: Ctx,
    Path((edge_id, id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let (_, rev) = load_route(&ctx, &edge_id, &id).await?;
    let key = route_key(&edge_id, &id);
    let mut w = Writes::default();
    w.compares.push(Compare::ModRevision(key.clone(), rev));
    w.delete(key);
    if !commit(&ctx, w).await? {
        return Err(ApiError::new(
            codes::IN_USE,
            "The route changed meanwhile; try again.",
        ));
    }
    Ok(StatusCode::NO_CONTENT)
}

fn module_name(raw: &str) -> ApiResult<&'static str> {
    MODULES
        .iter()
        .find(|m| **m == raw)
        .copied()
        .ok_or_else(|| ApiError::not_found("route module", raw))
}

async fn put_module(
    ctx: Ctx,
    Path((edge_id, id, module)): Path<(String, String, String)>,
    Body(body): Body<Value>,
) -> ApiResult<Json<Value>> {
    let name = module_name(&module)?;
    let mut saved = None;
    for _ in 0..8 {
        let (mut route, rev) = load_route(&ctx, &edge_id, &id).await?;
        let mut w = Writes::default();
        let stored = validate_module(&ctx, name, &body, &mut w).await?;
        set_modules(&mut route, vec![(name, Some(stored))])?;
        if save_route(&ctx, &route, rev, w).await? {
            saved = Some(route);
            break;
        }
    }
    let route = saved.ok_or_else(route_busy)?;
    let stored = serde_json::to_value(&route.modules).map_err(ApiError::internal)?;
    Ok(Json(
        stored
            .get(name)
            .map_or(Value::Null, |v| render_module(&ctx, name, v)),
    ))
}

async fn get_module(
    ctx: Ctx,
    Path((edge_id, id, module)): Path<(String, String, String)>,
) -> ApiResult<Json<Value>> {
    let name = module_name(&module)?;
    let (route, _) = load_route(&ctx, &edge_id, &id).await?;
    let stored = serde_json::to_value(&route.modules).map_err(ApiError::internal)?;
    match stored.get(name) {
        Some(v) => Ok(Json(render_module(&ctx, name, v))),
        None => Err(ApiError::not_found(&format!("{name} module of route"), &id)),
    }
}

async fn delete_module(
    ctx: Ctx,
    Path((edge_id, id, module)): Path<(String, String, String)>,
) -> ApiResult<StatusCode> {
    let name = module_name(&module)?;
    for _ in 0..8 {
        let (mut route, rev) = load_route(&ctx, &edge_id, &id).await?;
        set_modules(&mut route, vec![(name, None)])?;
        if save_route(&ctx, &route, rev, Writes::default()).await? {
            return Ok(StatusCode::NO_CONTENT);
        }
    }
    Err(route_busy())
}

pub fn mount(router: Router<ApiState>) -> Router<ApiState> {
    router
        .route("/edges/https/{edge_id}/routes", post(create_route))
        .route(
            "/edges/https/{edge_id}/routes/{id}",
            get(get_route).patch(update_route).delete(delete_route),
        )
        .route(
            "/edges/https/{edge_id}/routes/{id}/{module}",
            put(put_module).get(get_module).delete(delete_module),
        )
}

/// Whether a stored module is switched on (absent `enabled` means on).
pub fn module_enabled(v: Option<&Value>) -> bool {
    v.is_some_and(|v| is_enabled(v.get("enabled").and_then(Value::as_bool)))
}
