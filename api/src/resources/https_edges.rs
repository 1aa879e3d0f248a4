//! `/edges/https`: public host names (`hostports`) served by the edge with
//! their own TLS settings, routing requests by path to routes.

use std::collections::BTreeSet;

use async_trait::async_trait;
use axum::extract::Path;
use axum::routing::put;
use axum::{Json, Router};
use gangway_config::hostname::normalize_hostname;
use gangway_config::resources::{
    is_enabled, CertificateAuthority, Common, HttpsEdge, HttpsEdgeRoute, MutualTlsModule,
    TlsTerminationModule,
};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::reserved::HOSTPORT_INDEX;
use super::routes;
use super::routes::render_module;
use super::{
    check_common, load_all, modify, render_common, update_common, Ctx, Kind, Resource, Writes,
};
use crate::rest::error::{codes, ApiError, ApiResult};
use crate::rest::extract::Body;
use crate::rest::ApiState;
use crate::store::Compare;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateHttpsEdge {
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub metadata: Option<String>,
    #[serde(default)]
    pub hostports: Option<Vec<String>>,
    #[serde(default)]
    pub mutual_tls: Option<MutualTlsModule>,
    #[serde(default)]
    pub tls_termination: Option<TlsTerminationModule>,
}

const TLS_VERSIONS: [&str; 4] = ["1.0", "1.1", "1.2", "1.3"];

pub(super) async fn check_mutual_tls(
    ctx: &Ctx,
    m: &MutualTlsModule,
    field: &str,
    w: &mut Writes,
) -> ApiResult<()> {
    for (i, id) in m.certificate_authority_ids.iter().enumerate() {
        ctx.referenced::<Value>(
            &CertificateAuthority::KIND,
            id,
            &format!("{field}.certificate_authority_ids[{i}]"),
            w,
        )
        .await?;
    }
    Ok(())
}

fn check_tls_termination(t: &TlsTerminationModule, field: &str) -> ApiResult<()> {
    check_termination(t, field, &["edge"])
}

/// `min_version` is a TLS version; `terminate_at` one of `places`
/// (`upstream` only on TLS edges, and then without `min_version`).
pub(super) fn check_termination(
    t: &TlsTerminationModule,
    field: &str,
    places: &[&str],
) -> ApiResult<()> {
    if let Some(v) = t.min_version.as_deref() {
        if !TLS_VERSIONS.contains(&v) {
            return Err(ApiError::invalid(
                codes::INVALID_VALUE,
                &format!("{field}.min_version"),
                format!("{field}.min_version: {v:?} is not one of 1.0, 1.1, 1.2, 1.3."),
            ));
        }
    }
    if let Some(at) = t.terminate_at.as_deref() {
        if !places.contains(&at) {
            return Err(ApiError::invalid(
                codes::INVALID_VALUE,
                &format!("{field}.terminate_at"),
                format!(
                    "{field}.terminate_at: {at:?} is not one of {}.",
                    places.join(", ")
                ),
            ));
        }
        if at == "upstream" && t.min_version.is_some() {
            return Err(ApiError::invalid(
                codes::INVALID_VALUE,
                &format!("{field}.min_version"),
                format!(
                    "{field}.min_version: the upstream sets the TLS version when it terminates."
                ),
            ));
        }
    }
    Ok(())
}

/// Normalizes `host:port`s, checking each host is servable here: under
/// the base domain or reserved. Duplicates are dropped.
pub(super) async fn parse_hostports(ctx: &Ctx, raw: &[String]) -> ApiResult<Vec<(String, String)>> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for (i, hp) in raw.iter().enumerate() {
        let (host, hostport) = parse_hostport(ctx, hp, &format!("hostports[{i}]")).await?;
        if seen.insert(host.clone()) {
            out.push((host, hostport));
        }
    }
    Ok(out)
}

/// One `host:port` on the HTTPS port whose host this server may serve;
/// returns the normalized host and `host:port`. Errors name `field`.
pub(super) async fn parse_hostport(
    ctx: &Ctx,
    hp: &str,
    field: &str,
) -> ApiResult<(String, String)> {
    let bad = |why: String| ApiError::invalid(codes::INVALID_HOSTPORT, field, why);
    let (host, port) = hp
        .rsplit_once(':')
        .ok_or_else(|| bad(format!("{field}: {hp:?} is not host:port.")))?;
    let port: u16 = port
        .parse()
        .map_err(|_| bad(format!("{field}: {port:?} is not a port.")))?;
    if port != 443 && port != ctx.settings.https_port {
        return Err(bad(format!(
            "{field}: HTTPS endpoints answer on port 443 or {}, not {port}.",
            ctx.settings.https_port
        )));
    }
    let host = normalize_hostname(host, false).map_err(|e| bad(format!("{field}: {e}")))?;
    let base = &ctx.settings.base_domain;
    let under_base = host.ends_with(&format!(".{base}"));
    if !under_base
        && ctx
            .claimant(super::reserved::DOMAIN_INDEX, &host)
            .await?
            .is_none()
    {
        return Err(ApiError::invalid(
            codes::HOSTPORT_NOT_RESERVED,
            field,
            format!(
                "{field}: {host:?} is not under {base} and not a reserved domain; reserve it first."
            ),
        ));
    }
    let hostport = format!("{host}:{port}");
    Ok((host, hostport))
}

/// Claims each host for `edge` (a host serves one edge).
async fn claim_hosts(
    ctx: &Ctx,
    edge: &str,
    hosts: &[(String, String)],
    w: &mut Writes,
) -> ApiResult<()> {
    for (host, _) in hosts {
        ctx.claim(HOSTPORT_INDEX, host, edge, w, |by| {
            ApiError::new(
                codes::HOSTPORT_TAKEN,
                format!("{host:?} is already served by edge {by}."),
            )
        })
        .await?;
    }
    Ok(())
}

pub(super) fn host_of(hp: &str) -> &str {
    hp.rsplit_once(':').map_or(hp, |(h, _)| h)
}

#[async_trait]
impl Resource for HttpsEdge {
    const KIND: Kind = Kind {
        store: "https_edges",
        prefix: "edghts",
        path: "/edges/https",
        list_key: "https_edges",
        noun: "HTTPS edge",
    };
    type Create = CreateHttpsEdge;
    type Update = CreateHttpsEdge;

    fn common(&self) -> &Common {
        &self.common
    }

    async fn create(
        ctx: &Ctx,
        mut common: Common,
        mut input: CreateHttpsEdge,
        w: &mut Writes,
    ) -> ApiResult<(Self, Option<String>)> {
        update_common(&mut common, input.description.take(), input.metadata.take())?;
        let hosts = parse_hostports(ctx, input.hostports.as_deref().unwrap_or_default()).await?;
        if let Some(m) = &input.mutual_tls {
            check_mutual_tls(ctx, m, "mutual_tls", w).await?;
        }
        if let Some(t) = &input.tls_termination {
            check_tls_termination(t, "tls_termination")?;
        }
        claim_hosts(ctx, &common.id, &hosts, w).await?;
        let rec = HttpsEdge {
            common,
            hostports: hosts.into_iter().map(|(_, hp)| hp).collect(),
            mutual_tls: input.mutual_tls,
            tls_termination: input.tls_termination,
        };
        Ok((rec, None))
    }

    async fn update(&mut self, ctx: &Ctx, input: CreateHttpsEdge, w: &mut Writes) -> ApiResult<()> {
        check_common(input.description.as_deref(), input.metadata.as_deref())?;
        if let Some(raw) = &input.hostports {
            let hosts = parse_hostports(ctx, raw).await?;
            claim_hosts(ctx, &self.common.id, &hosts, w).await?;
            for old in &self.hostports {
                if !hosts.iter().any(|(h, _)| h == host_of(old)) {
                    w.release(HOSTPORT_INDEX, host_of(old));
                }
            }
            self.hostports = hosts.into_iter().map(|(_, hp)| hp).collect();
        }
        if let Some(m) = &input.mutual_tls {
            check_mutual_tls(ctx, m, "mutual_tls", w).await?;
            self.mutual_tls = Some(m.clone());
        }
        if let Some(t) = &input.tls_termination {
            check_tls_termination(t, "tls_termination")?;
            self.tls_termination = Some(t.clone());
        }
        update_common(&mut self.common, input.description, input.metadata)
    }

    /// Releases its names; its routes go with it.
    async fn delete(&self, ctx: &Ctx, w: &mut Writes) -> ApiResult<()> {
        for hp in &self.hostports {
            w.release(HOSTPORT_INDEX, host_of(hp));
        }
        let prefix = routes::edge_routes_prefix(&self.common.id);
        for (route, rev) in load_all::<HttpsEdgeRoute>(ctx, &prefix).await? {
            let key = routes::route_key(&self.common.id, &route.common.id);
            w.compares.push(Compare::ModRevision(key.clone(), rev));
            w.delete(key);
        }
        Ok(())
    }

    async fn render(&self, ctx: &Ctx) -> ApiResult<Map<String, Value>> {
        let mut m = render_common(ctx, &Self::KIND, &self.common);
        m.insert("hostports".into(), self.hostports.clone().into());
        m.insert(
            "mutual_tls".into(),
            render_mutual_tls(ctx, self.mutual_tls.as_ref()),
        );
        m.insert(
            "tls_termination".into(),
            render_tls_termination(self.tls_termination.as_ref()),
        );
        let prefix = routes::edge_routes_prefix(&self.common.id);
        let mut list = Vec::new();
        for (route, _) in load_all::<HttpsEdgeRoute>(ctx, &prefix).await? {
            list.push(Value::Object(routes::render_route(ctx, &route)));
        }
        m.insert("routes".into(), Value::Array(list));
        Ok(m)
    }
}

/// Rendered like the TLS edges' module (references for the CA ids).
fn render_mutual_tls(ctx: &Ctx, m: Option<&MutualTlsModule>) -> Value {
    m.and_then(|m| serde_json::to_value(m).ok())
        .map_or(Value::Null, |v| render_module(ctx, "mutual_tls", &v))
}

fn render_tls_termination(t: Option<&TlsTerminationModule>) -> Value {
    match t {
        None => Value::Null,
        Some(t) => serde_json::json!({
            "enabled": is_enabled(t.enabled),
            "min_version": t.min_version,
        }),
    }
}

async fn put_mutual_tls(
    ctx: Ctx,
    Path(id): Path<String>,
    Body(m): Body<MutualTlsModule>,
) -> ApiResult<Json<Value>> {
    let mut w = Writes::default();
    check_mutual_tls(&ctx, &m, "mutual_tls", &mut w).await?;
    // Guarded by the CAs it refers to, so none can vanish meanwhile.
    let edge = modify::<HttpsEdge>(&ctx, &id, &w.compares, |e| {
        e.mutual_tls = Some(m.clone());
        Ok(())
    })
    .await?;
    Ok(Json(render_mutual_tls(&ctx, edge.mutual_tls.as_ref())))
}

async fn get_mutual_tls(ctx: Ctx, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let (edge, _) = ctx.load::<HttpsEdge>(&HttpsEdge::KIND, &id).await?;
    match &edge.mutual_tls {
        Some(m) => Ok(Json(render_mutual_tls(&ctx, Some(m)))),
        None => Err(ApiError::not_found("mutual_tls module of edge", &id)),
    }
}

async fn delete_mutual_tls(ctx: Ctx, Path(id): Path<String>) -> ApiResult<axum::http::StatusCode> {
    modify::<HttpsEdge>(&ctx, &id, &[], |e| {
        e.mutual_tls = None;
        Ok(())
    })
    .await?;
    Ok(axum::http::StatusCode::NO_CONTENT)
}

async fn put_tls_termination(
    ctx: Ctx,
    Path(id): Path<String>,
    Body(t): Body<TlsTerminationModule>,
) -> ApiResult<Json<Value>> {
    check_tls_termination(&t, "tls_termination")?;
    let edge = modify::<HttpsEdge>(&ctx, &id, &[], |e| {
        e.tls_termination = Some(t.clone());
        Ok(())
    })
    .await?;
    Ok(Json(render_tls_termination(edge.tls_termination.as_ref())))
}

async fn get_tls_termination(ctx: Ctx, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let (edge, _) = ctx.load::<HttpsEdge>(&HttpsEdge::KIND, &id).await?;
    match &edge.tls_termination {
        Some(t) => Ok(Json(render_tls_termination(Some(t)))),
        None => Err(ApiError::not_found("tls_termination module of edge", &id)),
    }
}

async fn delete_tls_termination(
    ctx: Ctx,
    Path(id): Path<String>,
) -> ApiResult<axum::http::StatusCode> {
    modify::<HttpsEdge>(&ctx, &id, &[], |e| {
        e.tls_termination = None;
        Ok(())
    })
    .await?;
    Ok(axum::http::StatusCode::NO_CONTENT)
}

/// The edge's own module sub-resources (routes mount separately).
pub fn modules(router: Router<ApiState>) -> Router<ApiState> {
    router
        .route(
            "/edges/https/{id}/mutual_tls",
            put(put_mutual_tls)
                .get(get_mutual_tls)
                .delete(delete_mutual_tls),
        )
        .route(
            "/edges/https/{id}/tls_termination",
            put(put_tls_termination)
                .get(get_tls_termination)
                .delete(delete_tls_termination),
        )
}
