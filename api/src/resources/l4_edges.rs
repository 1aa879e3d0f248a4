//! `/edges/tcp` and `/edges/tls`: edges below HTTP. A TCP edge owns
//! reserved TCP addresses; a TLS edge owns names on the TLS port. Both send
//! connections to the tunnels their `backend` selects, and have their
//! modules as sub-resources (`PUT/GET/DELETE /edges/<kind>/{id}/<module>`).

use async_trait::async_trait;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::routing::put;
use axum::{Json, Router};
use gangway_config::resources::{
    Common, EdgeModules, MutualTlsModule, TcpEdge, TlsEdge, TlsTerminationModule,
    TrafficPolicyModule,
};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::https_edges::{check_mutual_tls, check_termination, host_of, parse_hostports};
use super::reserved::{ADDR_INDEX, HOSTPORT_INDEX};
use super::routes::{render_module, typed, validate_module};
use super::{modify, render_common, update_common, Ctx, Kind, Resource, Writes};
use crate::rest::error::{codes, ApiError, ApiResult};
use crate::rest::extract::Body;
use crate::rest::ApiState;

/// Modules of each kind, in ngrok's field order.
pub const TCP_MODULES: [&str; 3] = ["backend", "ip_restriction", "traffic_policy"];
pub const TLS_MODULES: [&str; 5] = [
    "backend",
    "ip_restriction",
    "mutual_tls",
    "tls_termination",
    "traffic_policy",
];

/// Index of TCP addresses held by TCP edges (value: the edge id).
pub const TCP_EDGE_INDEX: &str = "tcp_edge_port";

/// Create and update bodies of both kinds; a TCP edge refuses the TLS
/// modules.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EdgeInput {
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub metadata: Option<String>,
    #[serde(default)]
    pub hostports: Option<Vec<String>>,
    #[serde(default)]
    pub backend: Option<Value>,
    #[serde(default)]
    pub ip_restriction: Option<Value>,
    #[serde(default)]
    pub mutual_tls: Option<Value>,
    #[serde(default)]
    pub tls_termination: Option<Value>,
    #[serde(default)]
    pub traffic_policy: Option<Value>,
}

impl EdgeInput {
    fn modules(&self) -> Vec<(&'static str, &Value)> {
        [
            ("backend", &self.backend),
            ("ip_restriction", &self.ip_restriction),
            ("mutual_tls", &self.mutual_tls),
            ("tls_termination", &self.tls_termination),
            ("traffic_policy", &self.traffic_policy),
        ]
        .into_iter()
        .filter_map(|(n, v)| v.as_ref().filter(|v| !v.is_null()).map(|v| (n, v)))
        .collect()
    }
}

/// What differs between the two kinds.
#[async_trait]
pub trait L4Edge: Resource<Create = EdgeInput, Update = EdgeInput> {
    /// Modules this kind has, in ngrok's field order.
    const MODULES: &'static [&'static str];
    /// The index its hostports are claimed in.
    const INDEX: &'static str;

    fn parts(&mut self) -> (&mut Common, &mut Vec<String>, &mut EdgeModules);
    fn modules(&self) -> &EdgeModules;
    fn hostports(&self) -> &[String];

    /// Normalized `(claim key, hostport)` pairs.
    async fn parse_hostports(ctx: &Ctx, raw: &[String]) -> ApiResult<Vec<(String, String)>>;
}

/// Validates one module body of an L4 edge; returns its stored form.
async fn validate(
    ctx: &Ctx,
    allowed: &[&str],
    name: &str,
    v: &Value,
    w: &mut Writes,
) -> ApiResult<Value> {
    if !allowed.contains(&name) {
        return Err(ApiError::invalid(
            codes::UNKNOWN_FIELD,
            name,
            format!("{name}: this kind of edge has no {name} module."),
        ));
    }
    match name {
        "mutual_tls" => {
            let m: MutualTlsModule = typed(name, v)?;
            check_mutual_tls(ctx, &m, name, w).await?;
            serde_json::to_value(m).map_err(ApiError::internal)
        }
        "tls_termination" => {
            let t: TlsTerminationModule = typed(name, v)?;
            check_termination(&t, name, &["edge", "upstream"])?;
            serde_json::to_value(t).map_err(ApiError::internal)
        }
        "traffic_policy" => {
            // Checked by the edge's compiler, which runs only
            // on_tcp_connect on TCP and TLS edges.
            let m: TrafficPolicyModule = typed(name, v)?;
            gangway_modules::traffic_policy::TrafficPolicy::compile_l4(
                "traffic_policy.value",
                &m.value,
            )
            .map_err(|e| {
                ApiError::invalid(
                    codes::INVALID_VALUE,
                    &e.field,
                    format!("{}: {}.", e.field, e.reason),
                )
            })?;
            serde_json::to_value(m).map_err(ApiError::internal)
        }
        _ => validate_module(ctx, name, v, w).await,
    }
}

fn set_module(m: &mut EdgeModules, name: &str, v: Option<Value>) -> ApiResult<()> {
    let mut map = match serde_json::to_value(&*m).map_err(ApiError::internal)? {
        Value::Object(map) => map,
        _ => Map::new(),
    };
    match v {
        Some(v) => map.insert(name.to_string(), v),
        None => map.remove(name),
    };
    *m = serde_json::from_value(Value::Object(map)).map_err(ApiError::internal)?;
    Ok(())
}

fn module_value(m: &EdgeModules, name: &str) -> Option<Value> {
    serde_json::to_value(m)
        .ok()
        .and_then(|v| v.get(name).cloned())
}

/// Applies an input to a record (new or existing): hostports, modules,
/// common fields.
async fn apply<R: L4Edge>(
    rec: &mut R,
    ctx: &Ctx,
    input: EdgeInput,
    w: &mut Writes,
) -> ApiResult<()> {
    super::check_common(input.description.as_deref(), input.metadata.as_deref())?;
    let mut staged = Vec::new();
    for (name, v) in input.modules() {
        staged.push((name, validate(ctx, R::MODULES, name, v, w).await?));
    }
    let id = rec.common().id.clone();
    let (common, hostports, modules) = rec.parts();
    if let Some(raw) = &input.hostports {
        let parsed = R::parse_hostports(ctx, raw).await?;
        for (key, hp) in &parsed {
            ctx.claim(R::INDEX, key, &id, w, |by| {
                ApiError::new(
                    codes::HOSTPORT_TAKEN,
                    format!("{hp:?} is already served by edge {by}."),
                )
            })
            .await?;
        }
        for old in hostports.iter() {
            let key = claim_key::<R>(old);
            if !parsed.iter().any(|(k, _)| *k == key) {
                w.release(R::INDEX, &key);
            }
        }
        *hostports = parsed.into_iter().map(|(_, hp)| hp).collect();
    }
    for (name, v) in staged {
        set_module(modules, name, Some(v))?;
    }
    update_common(common, input.description, input.metadata)
}

/// The index key a stored hostport was claimed under.
fn claim_key<R: L4Edge>(hp: &str) -> String {
    if R::INDEX == TCP_EDGE_INDEX {
        hp.rsplit_once(':').map_or(hp, |(_, p)| p).to_string()
    } else {
        host_of(hp).to_string()
    }
}

fn render<R: L4Edge>(rec: &R, ctx: &Ctx) -> Map<String, Value> {
    let mut m = render_common(ctx, &R::KIND, rec.common());
    let hps = rec.hostports();
    m.insert(
        "hostports".into(),
        if hps.is_empty() {
            Value::Null
        } else {
            hps.to_vec().into()
        },
    );
    for name in R::MODULES {
        let v =
            module_value(rec.modules(), name).map_or(Value::Null, |v| render_module(ctx, name, &v));
        m.insert((*name).into(), v);
    }
    m
}

/// The record accessors of [`L4Edge`], the same for both kinds.
macro_rules! l4_accessors {
    () => {
        fn parts(&mut self) -> (&mut Common, &mut Vec<String>, &mut EdgeModules) {
            (&mut self.common, &mut self.hostports, &mut self.modules)
        }
        fn modules(&self) -> &EdgeModules {
            &self.modules
        }
        fn hostports(&self) -> &[String] {
            &self.hostports
        }
    };
}

macro_rules! l4_resource {
    ($t:ty, $kind:expr) => {
        #[async_trait]
        impl Resource for $t {
            const KIND: Kind = $kind;
            type Create = EdgeInput;
            type Update = EdgeInput;

            fn common(&self) -> &Common {
                &self.common
            }

            async fn create(
                ctx: &Ctx,
                common: Common,
                input: EdgeInput,
                w: &mut Writes,
            ) -> ApiResult<(Self, Option<String>)> {
                let mut rec = Self {
                    common,
                    hostports: Vec::new(),
                    modules: EdgeModules::default(),
                };
                apply(&mut rec, ctx, input, w).await?;
                Ok((rec, None))
            }

            async fn update(
                &mut self,
                ctx: &Ctx,
                input: EdgeInput,
                w: &mut Writes,
            ) -> ApiResult<()> {
                apply(self, ctx, input, w).await
            }

            async fn delete(&self, _: &Ctx, w: &mut Writes) -> ApiResult<()> {
                for hp in &self.hostports {
                    w.release(<$t as L4Edge>::INDEX, &claim_key::<$t>(hp));
                }
                Ok(())
            }

            async fn render(&self, ctx: &Ctx) -> ApiResult<Map<String, Value>> {
                Ok(render(self, ctx))
            }
        }
    };
}

l4_resource!(
    TcpEdge,
    Kind {
        store: "tcp_edges",
        prefix: "edgtcp",
        path: "/edges/tcp",
        list_key: "tcp_edges",
        noun: "TCP edge",
    }
);

l4_resource!(
    TlsEdge,
    Kind {
        store: "tls_edges",
        prefix: "edgtls",
        path: "/edges/tls",
        list_key: "tls_edges",
        noun: "TLS edge",
    }
);

#[async_trait]
impl L4Edge for TcpEdge {
    const MODULES: &'static [&'static str] = &TCP_MODULES;
    const INDEX: &'static str = TCP_EDGE_INDEX;

    l4_accessors!();

    /// Each must be a reserved TCP address (`host:port`).
    async fn parse_hostports(ctx: &Ctx, raw: &[String]) -> ApiResult<Vec<(String, String)>> {
        let mut out: Vec<(String, String)> = Vec::new();
        for (i, hp) in raw.iter().enumerate() {
            let field = format!("hostports[{i}]");
            let port = hp
                .rsplit_once(':')
                .and_then(|(h, p)| {
                    h.eq_ignore_ascii_case(&ctx.settings.tcp_host)
                        .then(|| p.parse::<u16>().ok())
                        .flatten()
                })
                .ok_or_else(|| {
                    ApiError::invalid(
                        codes::TCP_EDGE_NEEDS_ADDR,
                        &field,
                        format!(
                            "{field}: TCP edges can only be associated with TCP addresses ({}:PORT): {hp:?} is not one.",
                            ctx.settings.tcp_host
                        ),
                    )
                })?;
            if ctx.claimant(ADDR_INDEX, &port.to_string()).await?.is_none() {
                return Err(ApiError::invalid(
                    codes::HOSTPORT_NOT_RESERVED,
                    &field,
                    format!("{field}: {hp:?} is not a reserved address; reserve it first."),
                ));
            }
            let key = port.to_string();
            if !out.iter().any(|(k, _)| *k == key) {
                out.push((key, format!("{}:{port}", ctx.settings.tcp_host)));
            }
        }
        Ok(out)
    }
}

#[async_trait]
impl L4Edge for TlsEdge {
    const MODULES: &'static [&'static str] = &TLS_MODULES;
    const INDEX: &'static str = HOSTPORT_INDEX;

    l4_accessors!();

    /// Names on the TLS port, as for HTTPS edges (one edge per name, of
    /// either kind: they share the port).
    async fn parse_hostports(ctx: &Ctx, raw: &[String]) -> ApiResult<Vec<(String, String)>> {
        parse_hostports(ctx, raw).await
    }
}

/// The first TCP or TLS edge whose modules satisfy `uses`, if any (for
/// refusing to delete what an edge still refers to).
pub async fn l4_user(ctx: &Ctx, uses: impl Fn(&EdgeModules) -> bool) -> ApiResult<Option<String>> {
    for (e, _) in super::load_all::<TcpEdge>(ctx, &TcpEdge::KIND.key_prefix()).await? {
        if uses(&e.modules) {
            return Ok(Some(e.common.id));
        }
    }
    for (e, _) in super::load_all::<TlsEdge>(ctx, &TlsEdge::KIND.key_prefix()).await? {
        if uses(&e.modules) {
            return Ok(Some(e.common.id));
        }
    }
    Ok(None)
}

fn known_module<R: L4Edge>(raw: &str) -> ApiResult<&'static str> {
    R::MODULES
        .iter()
        .find(|m| **m == raw)
        .copied()
        .ok_or_else(|| ApiError::not_found(&format!("{} module", R::KIND.noun), raw))
}

async fn put_module<R: L4Edge>(
    ctx: Ctx,
    Path((id, module)): Path<(String, String)>,
    Body(body): Body<Value>,
) -> ApiResult<Json<Value>> {
    let name = known_module::<R>(&module)?;
    let mut w = Writes::default();
    let stored = validate(&ctx, R::MODULES, name, &body, &mut w).await?;
    let rec = modify::<R>(&ctx, &id, &w.compares, |r| {
        set_module(r.parts().2, name, Some(stored.clone()))
    })
    .await?;
    let v = module_value(rec.modules(), name).unwrap_or(Value::Null);
    Ok(Json(render_module(&ctx, name, &v)))
}

async fn get_module<R: L4Edge>(
    ctx: Ctx,
    Path((id, module)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let name = known_module::<R>(&module)?;
    let (rec, _) = ctx.load::<R>(&R::KIND, &id).await?;
    match module_value(rec.modules(), name) {
        Some(v) => Ok(Json(render_module(&ctx, name, &v))),
        None => Err(ApiError::not_found(&format!("{name} module of edge"), &id)),
    }
}

async fn delete_module<R: L4Edge>(
    ctx: Ctx,
    Path((id, module)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let name = known_module::<R>(&module)?;
    modify::<R>(&ctx, &id, &[], |r| set_module(r.parts().2, name, None)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The module sub-resources of both kinds (CRUD mounts separately).
pub fn modules(router: Router<ApiState>) -> Router<ApiState> {
    router
        .route(
            "/edges/tcp/{id}/{module}",
            put(put_module::<TcpEdge>)
                .get(get_module::<TcpEdge>)
                .delete(delete_module::<TcpEdge>),
        )
        .route(
            "/edges/tls/{id}/{module}",
            put(put_module::<TlsEdge>)
                .get(get_module::<TlsEdge>)
                .delete(delete_module::<TlsEdge>),
        )
}
