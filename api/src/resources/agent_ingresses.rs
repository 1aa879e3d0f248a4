//! `/agent_ingresses`: a domain of the user's that agents connect to
//! instead of the edge's own agent address. Agents dial the region domain
//! `tunnel.<region>.<domain>`; the agent listener presents, by SNI, the
//! TLS certificate uploaded for that name (`/tls_certificates`).
//!
//! Gangway runs no DNS server: `ns_targets` names the agent host the
//! region domains must resolve to (a CNAME), where ngrok names its own
//! nameservers. Automatic certificates are refused, not dropped.

use async_trait::async_trait;
use gangway_config::hostname::normalize_hostname;
use gangway_config::resources::{AgentIngress, Common};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::{render_common, update_common, Ctx, Kind, Resource, Writes};
use crate::rest::error::{codes, ApiError, ApiResult};

/// Index of ingress domains (value: the ingress id).
const INDEX: &str = "agent_ingress";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateIngress {
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub metadata: Option<String>,
    #[serde(default)]
    pub domain: String,
    #[serde(default)]
    pub certificate_management_policy: Option<Value>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateIngress {
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub metadata: Option<String>,
    #[serde(default)]
    pub certificate_management_policy: Option<Value>,
}

fn refuse_managed_certs(policy: &Option<Value>) -> ApiResult<()> {
    if policy.as_ref().is_some_and(|p| !p.is_null()) {
        return Err(ApiError::invalid(
            codes::INVALID_VALUE,
            "certificate_management_policy",
            "certificate_management_policy: automatic certificates are not supported; upload one for the region domain to /tls_certificates.",
        ));
    }
    Ok(())
}

/// The names agents dial for `domain`, one per region this deployment
/// serves.
pub fn region_domains(domain: &str, region: &str) -> Vec<String> {
    vec![format!("tunnel.{region}.{domain}")]
}

#[async_trait]
impl Resource for AgentIngress {
    const KIND: Kind = Kind {
        store: "agent_ingresses",
        prefix: "agin",
        path: "/agent_ingresses",
        list_key: "ingresses",
        noun: "agent ingress",
    };
    type Create = CreateIngress;
    type Update = UpdateIngress;

    fn common(&self) -> &Common {
        &self.common
    }

    async fn create(
        ctx: &Ctx,
        mut common: Common,
        mut input: CreateIngress,
        w: &mut Writes,
    ) -> ApiResult<(Self, Option<String>)> {
        update_common(&mut common, input.description.take(), input.metadata.take())?;
        refuse_managed_certs(&input.certificate_management_policy)?;
        if input.domain.is_empty() {
            return Err(ApiError::invalid(
                codes::INVALID_HOSTNAME,
                "domain",
                "domain is required.",
            ));
        }
        let domain = normalize_hostname(&input.domain, false).map_err(|e| {
            ApiError::invalid(codes::INVALID_HOSTNAME, "domain", format!("domain: {e}"))
        })?;
        let base = &ctx.settings.base_domain;
        if domain == *base || domain.ends_with(&format!(".{base}")) {
            return Err(ApiError::invalid(
                codes::INVALID_HOSTNAME,
                "domain",
                format!(
                    "domain: {domain:?} is this server's own base domain; agents reach it already."
                ),
            ));
        }
        ctx.claim(INDEX, &domain, &common.id, w, |by| {
            ApiError::new(
                codes::DOMAIN_TAKEN,
                format!("{domain:?} is already an agent ingress ({by})."),
            )
        })
        .await?;
        Ok((AgentIngress { common, domain }, None))
    }

    async fn update(&mut self, _: &Ctx, input: UpdateIngress, _: &mut Writes) -> ApiResult<()> {
        refuse_managed_certs(&input.certificate_management_policy)?;
        update_common(&mut self.common, input.description, input.metadata)
    }

    async fn delete(&self, _: &Ctx, w: &mut Writes) -> ApiResult<()> {
        w.release(INDEX, &self.domain);
        Ok(())
    }

    async fn render(&self, ctx: &Ctx) -> ApiResult<Map<String, Value>> {
        let mut m = render_common(ctx, &Self::KIND, &self.common);
        let agent_host = ctx
            .settings
            .agent_addr
            .rsplit_once(':')
            .map_or(ctx.settings.agent_addr.as_str(), |(h, _)| h);
        m.insert("domain".into(), self.domain.clone().into());
        m.insert("ns_targets".into(), vec![agent_host.to_string()].into());
        m.insert(
            "region_domains".into(),
            region_domains(&self.domain, &ctx.settings.region).into(),
        );
        m.insert("certificate_management_policy".into(), Value::Null);
        m.insert("certificate_management_status".into(), Value::Null);
        Ok(m)
    }
}
