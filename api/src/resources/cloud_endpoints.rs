//! `/endpoints` with `type: cloud`: a public URL that the edge serves by
//! its Traffic Policy alone. Agent-started endpoints are listed next to
//! them (from the live sessions); only cloud endpoints are created,
//! updated and deleted here.

use async_trait::async_trait;
use axum::extract::Path;
use axum::routing::get;
use axum::{Json, Router};
use gangway_config::resources::{CloudEndpoint, Common};
use gangway_modules::traffic_policy::TrafficPolicy;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::https_edges::parse_hostport;
use super::live::{page, render_endpoint};
use super::reserved::HOSTPORT_INDEX;
use super::{
    create, delete, load_all, render_common, update, update_common, Ctx, Kind, Resource, Writes,
};
use crate::rest::error::{codes, ApiError, ApiResult};
use crate::rest::extract::ListParams;
use crate::rest::ApiState;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateEndpoint {
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub url: String,
    #[serde(default)]
    pub traffic_policy: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub metadata: Option<String>,
    #[serde(default)]
    pub bindings: Option<Vec<String>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateEndpoint {
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub traffic_policy: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub metadata: Option<String>,
    #[serde(default)]
    pub bindings: Option<Vec<String>>,
}

fn invalid(field: &str, why: String) -> ApiError {
    ApiError::invalid(codes::INVALID_VALUE, field, why)
}

/// `https://host[:port]` → (host, `host:port`), checked like an HTTPS
/// edge's hostport.
async fn parse_url(ctx: &Ctx, url: &str) -> ApiResult<(String, String)> {
    let rest = url.trim().strip_prefix("https://").ok_or_else(|| {
        invalid(
            "url",
            format!("url: {url:?} must be https://host (cloud endpoints are served over HTTPS)."),
        )
    })?;
    let authority = rest.trim_end_matches('/');
    if authority.is_empty() || authority.contains(['/', '?', '#', '@']) {
        return Err(invalid(
            "url",
            format!("url: {url:?} must be just a scheme and host, without a path."),
        ));
    }
    let hostport = match authority.rsplit_once(':') {
        Some((_, port)) if port.bytes().all(|b| b.is_ascii_digit()) => authority.to_string(),
        _ => format!("{authority}:443"),
    };
    parse_hostport(ctx, &hostport, "url").await
}

/// The policy compiles with the edge's own compiler, so the API refuses
/// exactly what the edge could not run.
fn check_policy(text: &str) -> ApiResult<()> {
    if text.trim().is_empty() {
        return Err(invalid(
            "traffic_policy",
            "traffic_policy: required; a cloud endpoint has nothing else to serve with.".into(),
        ));
    }
    TrafficPolicy::compile("traffic_policy", text)
        .map(|_| ())
        .map_err(|e| invalid(&e.field, format!("{}: {}.", e.field, e.reason)))
}

fn check_bindings(b: Option<&[String]>) -> ApiResult<()> {
    match b {
        None | Some([]) => Ok(()),
        Some([one]) if one == "public" => Ok(()),
        Some(_) => Err(invalid(
            "bindings",
            "bindings: cloud endpoints here are public; use [\"public\"].".into(),
        )),
    }
}

async fn claim(ctx: &Ctx, host: &str, id: &str, w: &mut Writes) -> ApiResult<()> {
    ctx.claim(HOSTPORT_INDEX, host, id, w, |by| {
        ApiError::new(
            codes::HOSTPORT_TAKEN,
            format!("{host:?} is already served by {by}."),
        )
    })
    .await
}

#[async_trait]
impl Resource for CloudEndpoint {
    const KIND: Kind = Kind {
        store: "cloud_endpoints",
        prefix: "ep",
        path: "/endpoints",
        list_key: "endpoints",
        noun: "endpoint",
    };
    type Create = CreateEndpoint;
    type Update = UpdateEndpoint;

    fn common(&self) -> &Common {
        &self.common
    }

    async fn create(
        ctx: &Ctx,
        mut common: Common,
        mut input: CreateEndpoint,
        w: &mut Writes,
    ) -> ApiResult<(Self, Option<String>)> {
        update_common(&mut common, input.description.take(), input.metadata.take())?;
        match input.kind.as_deref() {
            Some("cloud") => {}
            other => {
                return Err(invalid(
                    "type",
                    format!("type: {other:?} cannot be created through the API; endpoints of type \"cloud\" can (agents start the others)."),
                ))
            }
        }
        check_bindings(input.bindings.as_deref())?;
        let (host, hostport) = parse_url(ctx, &input.url).await?;
        check_policy(&input.traffic_policy)?;
        claim(ctx, &host, &common.id, w).await?;
        Ok((
            CloudEndpoint {
                common,
                url: format!("https://{hostport}"),
                host,
                traffic_policy: input.traffic_policy,
            },
            None,
        ))
    }

    async fn update(&mut self, ctx: &Ctx, input: UpdateEndpoint, w: &mut Writes) -> ApiResult<()> {
        update_common(&mut self.common, input.description, input.metadata)?;
        check_bindings(input.bindings.as_deref())?;
        if let Some(policy) = input.traffic_policy {
            check_policy(&policy)?;
            self.traffic_policy = policy;
        }
        if let Some(url) = input.url {
            let (host, hostport) = parse_url(ctx, &url).await?;
            if host != self.host {
                claim(ctx, &host, &self.common.id, w).await?;
                w.release(HOSTPORT_INDEX, &self.host);
                self.host = host;
            }
            self.url = format!("https://{hostport}");
        }
        Ok(())
    }

    async fn delete(&self, _: &Ctx, w: &mut Writes) -> ApiResult<()> {
        w.release(HOSTPORT_INDEX, &self.host);
        Ok(())
    }

    async fn render(&self, ctx: &Ctx) -> ApiResult<Map<String, Value>> {
        let mut m = render_common(ctx, &Self::KIND, &self.common);
        let port = self
            .url
            .rsplit_once(':')
            .and_then(|(_, p)| p.parse::<u16>().ok())
            .unwrap_or(443);
        let fields = [
            ("type", Value::from("cloud")),
            ("url", self.url.clone().into()),
            ("public_url", self.url.clone().into()),
            ("proto", "https".into()),
            ("scheme", "https".into()),
            ("host", self.host.clone().into()),
            ("port", port.into()),
            ("hostport", format!("{}:{port}", self.host).into()),
            ("region", ctx.settings.region.clone().into()),
            ("updated_at", self.common.created_at.clone().into()),
            ("traffic_policy", self.traffic_policy.clone().into()),
            ("bindings", vec!["public".to_string()].into()),
        ];
        for (k, v) in fields {
            m.insert(k.into(), v);
        }
        Ok(m)
    }
}

/// Agent-started and cloud endpoints, newest first.
async fn list_endpoints(ctx: Ctx, p: ListParams) -> ApiResult<Json<Value>> {
    let mut items: Vec<(u64, String, Value)> = ctx
        .settings
        .live
        .tunnels()
        .iter()
        .filter_map(|t| {
            let v = render_endpoint(&ctx, t)?;
            let id = v["id"].as_str()?.to_string();
            Some((t.started_at_ms, id, v))
        })
        .collect();
    for (ep, _) in load_all::<CloudEndpoint>(&ctx, &CloudEndpoint::KIND.key_prefix()).await? {
        let ms = chrono::DateTime::parse_from_rfc3339(&ep.common.created_at)
            .map_or(0, |t| t.timestamp_millis().max(0) as u64);
        let id = ep.common.id.clone();
        items.push((ms, id, Value::Object(ep.render(&ctx).await?)));
    }
    Ok(Json(page(&ctx, "/endpoints", "endpoints", items, &p)))
}

/// A cloud endpoint from the store, else an agent's from the sessions.
async fn get_endpoint(ctx: Ctx, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    match ctx.load::<CloudEndpoint>(&CloudEndpoint::KIND, &id).await {
        Ok((ep, _)) => Ok(Json(Value::Object(ep.render(&ctx).await?))),
        Err(e) if e.status == axum::http::StatusCode::NOT_FOUND => ctx
            .settings
            .live
            .tunnels()
            .iter()
            .find_map(|t| render_endpoint(&ctx, t).filter(|v| v["id"] == id.as_str()))
            .map(Json)
            .ok_or_else(|| ApiError::not_found("endpoint", &id)),
        Err(e) => Err(e),
    }
}

pub fn mount(router: Router<ApiState>) -> Router<ApiState> {
    router
        .route(
            "/endpoints",
            get(list_endpoints).post(create::<CloudEndpoint>),
        )
        .route(
            "/endpoints/{id}",
            get(get_endpoint)
                .patch(update::<CloudEndpoint>)
                .delete(delete::<CloudEndpoint>),
        )
}
