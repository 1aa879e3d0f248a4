//! `/backends/tunnel_group`: a backend that sends to every agent tunnel
//! started with labels that include the group's labels.

use std::collections::BTreeMap;

use async_trait::async_trait;
use gangway_config::resources::{Common, HttpsEdgeRoute, TunnelGroupBackend};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::{load_all, render_common, update_common, Ctx, Kind, Resource, Writes};
use crate::rest::error::{codes, ApiError, ApiResult};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateTunnelGroup {
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub metadata: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateTunnelGroup {
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub metadata: Option<String>,
    #[serde(default)]
    pub labels: Option<BTreeMap<String, String>>,
}

fn check_labels(labels: &BTreeMap<String, String>) -> ApiResult<()> {
    if labels.is_empty() {
        return Err(ApiError::invalid(
            codes::INVALID_VALUE,
            "labels",
            "labels: a tunnel group needs at least one label to select tunnels by.",
        ));
    }
    for (k, v) in labels {
        if k.is_empty() || v.is_empty() || k.len() > 256 || v.len() > 256 {
            return Err(ApiError::invalid(
                codes::INVALID_VALUE,
                &format!("labels.{k}"),
                format!("labels.{k}: keys and values are 1 to 256 bytes."),
            ));
        }
    }
    Ok(())
}

#[async_trait]
impl Resource for TunnelGroupBackend {
    const KIND: Kind = Kind {
        store: "tunnel_group_backends",
        prefix: "bkdtg",
        path: "/backends/tunnel_group",
        list_key: "backends",
        noun: "tunnel group backend",
    };
    type Create = CreateTunnelGroup;
    type Update = UpdateTunnelGroup;

    fn common(&self) -> &Common {
        &self.common
    }

    async fn create(
        _: &Ctx,
        mut common: Common,
        mut input: CreateTunnelGroup,
        _: &mut Writes,
    ) -> ApiResult<(Self, Option<String>)> {
        update_common(&mut common, input.description.take(), input.metadata.take())?;
        check_labels(&input.labels)?;
        Ok((
            TunnelGroupBackend {
                common,
                labels: input.labels,
            },
            None,
        ))
    }

    async fn update(&mut self, _: &Ctx, input: UpdateTunnelGroup, _: &mut Writes) -> ApiResult<()> {
        if let Some(l) = &input.labels {
            check_labels(l)?;
        }
        update_common(&mut self.common, input.description, input.metadata)?;
        if let Some(l) = input.labels {
            self.labels = l;
        }
        Ok(())
    }

    async fn delete(&self, ctx: &Ctx, _: &mut Writes) -> ApiResult<()> {
        let id = &self.common.id;
        for (route, _) in
            load_all::<HttpsEdgeRoute>(ctx, &super::routes::ROUTE_KIND.key_prefix()).await?
        {
            if route
                .modules
                .backend
                .as_ref()
                .is_some_and(|b| b.backend_id == *id)
            {
                return Err(ApiError::new(
                    codes::IN_USE,
                    format!(
                        "Backend {id} is used by route {} of edge {}; remove it there first.",
                        route.common.id, route.edge_id
                    ),
                ));
            }
        }
        let used = super::l4_edges::l4_user(ctx, |m| {
            m.backend.as_ref().is_some_and(|b| b.backend_id == *id)
        })
        .await?;
        if let Some(edge) = used {
            return Err(ApiError::new(
                codes::IN_USE,
                format!("Backend {id} is used by edge {edge}; remove it there first."),
            ));
        }
        Ok(())
    }

    async fn render(&self, ctx: &Ctx) -> ApiResult<Map<String, Value>> {
        let mut m = render_common(ctx, &Self::KIND, &self.common);
        m.insert(
            "labels".into(),
            serde_json::to_value(&self.labels).map_err(ApiError::internal)?,
        );
        let tunnels = ctx
            .settings
            .live
            .tunnels_with_labels(&self.labels)
            .into_iter()
            .map(|id| serde_json::json!({"id": id, "uri": ctx.uri(&format!("/tunnels/{id}"))}))
            .collect();
        m.insert("tunnels".into(), Value::Array(tunnels));
        Ok(m)
    }
}
