//! `/ip_policies` and `/ip_policy_rules`: named sets of allow/deny CIDRs
//! that routes' `ip_restriction` modules refer to.

use async_trait::async_trait;
use gangway_config::resources::{Common, HttpsEdgeRoute, IpAction, IpPolicy, IpPolicyRule};
use ipnet::IpNet;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::{load_all, render_common, update_common, Ctx, Kind, Resource, Writes};
use crate::rest::error::{codes, ApiError, ApiResult};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommonInput {
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub metadata: Option<String>,
}

#[async_trait]
impl Resource for IpPolicy {
    const KIND: Kind = Kind {
        store: "ip_policies",
        prefix: "ipp",
        path: "/ip_policies",
        list_key: "ip_policies",
        noun: "IP policy",
    };
    type Create = CommonInput;
    type Update = CommonInput;

    fn common(&self) -> &Common {
        &self.common
    }

    async fn create(
        _: &Ctx,
        mut common: Common,
        mut input: CommonInput,
        _: &mut Writes,
    ) -> ApiResult<(Self, Option<String>)> {
        update_common(&mut common, input.description.take(), input.metadata.take())?;
        Ok((IpPolicy { common }, None))
    }

    async fn update(&mut self, _: &Ctx, input: CommonInput, _: &mut Writes) -> ApiResult<()> {
        update_common(&mut self.common, input.description, input.metadata)
    }

    /// Refused while a route restricts by it; its rules go with it.
    async fn delete(&self, ctx: &Ctx, w: &mut Writes) -> ApiResult<()> {
        let id = &self.common.id;
        for (route, rev) in
            load_all::<HttpsEdgeRoute>(ctx, &super::routes::ROUTE_KIND.key_prefix()).await?
        {
            let uses = route
                .modules
                .ip_restriction
                .as_ref()
                .is_some_and(|m| m.ip_policy_ids.contains(id));
            if uses {
                return Err(ApiError::new(
                    codes::IN_USE,
                    format!(
                        "IP policy {id} is used by route {} of edge {}; remove it there first.",
                        route.common.id, route.edge_id
                    ),
                ));
            }
            let _ = rev;
        }
        let used = super::l4_edges::l4_user(ctx, |m| {
            m.ip_restriction
                .as_ref()
                .is_some_and(|r| r.ip_policy_ids.contains(id))
        })
        .await?;
        if let Some(edge) = used {
            return Err(ApiError::new(
                codes::IN_USE,
                format!("IP policy {id} is used by edge {edge}; remove it there first."),
            ));
        }
        for (rule, rev) in load_all::<IpPolicyRule>(ctx, &IpPolicyRule::KIND.key_prefix()).await? {
            if rule.ip_policy_id == *id {
                let key = IpPolicyRule::KIND.key(&rule.common.id);
                w.compares
                    .push(crate::store::Compare::ModRevision(key.clone(), rev));
                w.delete(key);
            }
        }
        Ok(())
    }

    async fn render(&self, ctx: &Ctx) -> ApiResult<Map<String, Value>> {
        Ok(render_common(ctx, &Self::KIND, &self.common))
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateRule {
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub metadata: Option<String>,
    pub cidr: String,
    pub ip_policy_id: String,
    pub action: IpAction,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateRule {
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub metadata: Option<String>,
    #[serde(default)]
    pub cidr: Option<String>,
    #[serde(default)]
    pub action: Option<IpAction>,
}

/// A CIDR or bare address, as its network (`10.1.2.3/8` → `10.0.0.0/8`).
pub fn parse_cidr(raw: &str) -> ApiResult<String> {
    let raw = raw.trim();
    let net = raw
        .parse::<IpNet>()
        .or_else(|_| raw.parse::<std::net::IpAddr>().map(IpNet::from))
        .map_err(|_| {
            ApiError::invalid(
                codes::INVALID_CIDR,
                "cidr",
                format!("cidr: {raw:?} is not a CIDR such as 10.0.0.0/8 or 2001:db8::/32."),
            )
        })?;
    Ok(net.trunc().to_string())
}

#[async_trait]
impl Resource for IpPolicyRule {
    const KIND: Kind = Kind {
        store: "ip_policy_rules",
        prefix: "ipr",
        path: "/ip_policy_rules",
        list_key: "ip_policy_rules",
        noun: "IP policy rule",
    };
    type Create = CreateRule;
    type Update = UpdateRule;

    fn common(&self) -> &Common {
        &self.common
    }

    async fn create(
        ctx: &Ctx,
        mut common: Common,
        mut input: CreateRule,
        w: &mut Writes,
    ) -> ApiResult<(Self, Option<String>)> {
        update_common(&mut common, input.description.take(), input.metadata.take())?;
        let cidr = parse_cidr(&input.cidr)?;
        ctx.referenced::<IpPolicy>(&IpPolicy::KIND, &input.ip_policy_id, "ip_policy_id", w)
            .await?;
        let rec = IpPolicyRule {
            common,
            cidr,
            ip_policy_id: input.ip_policy_id,
            action: input.action,
        };
        Ok((rec, None))
    }

    async fn update(&mut self, _: &Ctx, input: UpdateRule, _: &mut Writes) -> ApiResult<()> {
        let cidr = input.cidr.as_deref().map(parse_cidr).transpose()?;
        update_common(&mut self.common, input.description, input.metadata)?;
        if let Some(c) = cidr {
            self.cidr = c;
        }
        if let Some(a) = input.action {
            self.action = a;
        }
        Ok(())
    }

    async fn render(&self, ctx: &Ctx) -> ApiResult<Map<String, Value>> {
        let mut m = render_common(ctx, &Self::KIND, &self.common);
        m.insert("cidr".into(), self.cidr.clone().into());
        m.insert(
            "ip_policy".into(),
            ctx.reference(&IpPolicy::KIND, &self.ip_policy_id),
        );
        m.insert(
            "action".into(),
            serde_json::to_value(self.action).map_err(ApiError::internal)?,
        );
        Ok(m)
    }
}
