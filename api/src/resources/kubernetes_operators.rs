//! `/kubernetes_operators`: ngrok Kubernetes operator installations. With
//! the `bindings` feature an operator sends a CSR (`binding.csr`), which
//! the deployment CA signs into its client certificate (`binding.cert`),
//! and it reads the endpoints bound into its cluster from
//! `GET /kubernetes_operators/{id}/bound_endpoints`: live agent endpoints
//! with the `kubernetes` binding.

use async_trait::async_trait;
use axum::extract::Path;
use axum::routing::get;
use axum::{Json, Router};
use gangway_config::resources::{Common, KubernetesOperator, OperatorBinding, OperatorDeployment};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::live::{endpoint_id, page, render_endpoint};
use super::x509::{pem_certificates, summarize};
use super::{now_rfc3339, render_common, update_common, Ctx, Kind, Resource, Writes};
use crate::deployment_ca;
use crate::rest::error::{codes, ApiError, ApiResult};
use crate::rest::extract::ListParams;
use crate::rest::ApiState;

/// Index of installations by `namespace/name` (one record each).
const INDEX: &str = "k8s_operator";
const FEATURES: [&str; 3] = ["ingress", "gateway", "bindings"];

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeploymentInput {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default)]
    pub cluster_name: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BindingInput {
    #[serde(default)]
    pub endpoint_selectors: Option<Vec<String>>,
    #[serde(default)]
    pub csr: Option<String>,
    #[serde(default)]
    pub ingress_endpoint: Option<String>,
}

/// Create and update bodies (an update changes what it names).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperatorInput {
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub metadata: Option<String>,
    #[serde(default)]
    pub enabled_features: Option<Vec<String>>,
    #[serde(default)]
    pub region: Option<String>,
    #[serde(default)]
    pub deployment: Option<DeploymentInput>,
    #[serde(default)]
    pub binding: Option<BindingInput>,
}

fn invalid(field: &str, why: String) -> ApiError {
    ApiError::invalid(codes::INVALID_VALUE, field, format!("{field}: {why}"))
}

/// Lowercased, known, without duplicates.
fn parse_features(raw: &[String]) -> ApiResult<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    for (i, f) in raw.iter().enumerate() {
        let f = f.trim().to_ascii_lowercase();
        if !FEATURES.contains(&f.as_str()) {
            return Err(invalid(
                &format!("enabled_features[{i}]"),
                format!("{f:?} is not one of {}.", FEATURES.join(", ")),
            ));
        }
        if !out.contains(&f) {
            out.push(f);
        }
    }
    Ok(out)
}

/// Selectors are CEL over endpoints; until the policy engine lands only
/// the operator's default, `true` (every kubernetes-bound endpoint), is
/// evaluated, and anything else is refused rather than ignored.
fn check_selectors(selectors: &[String]) -> ApiResult<()> {
    for (i, s) in selectors.iter().enumerate() {
        if s.trim() != "true" {
            return Err(invalid(
                &format!("binding.endpoint_selectors[{i}]"),
                format!("{s:?}: only the selector `true` is supported until CEL expressions land."),
            ));
        }
    }
    Ok(())
}

async fn apply(
    rec: &mut KubernetesOperator,
    ctx: &Ctx,
    input: OperatorInput,
    w: &mut Writes,
) -> ApiResult<()> {
    super::check_common(input.description.as_deref(), input.metadata.as_deref())?;
    if let Some(f) = &input.enabled_features {
        rec.enabled_features = parse_features(f)?;
    }
    if let Some(r) = input.region {
        rec.region = if r.is_empty() { "global".into() } else { r };
    }
    if let Some(d) = input.deployment {
        let dep = &mut rec.deployment;
        let old_key = format!("{}/{}", dep.namespace, dep.name);
        for (field, value, slot) in [
            ("name", d.name, &mut dep.name),
            ("namespace", d.namespace, &mut dep.namespace),
            ("version", d.version, &mut dep.version),
            ("cluster_name", d.cluster_name, &mut dep.cluster_name),
        ] {
            if let Some(v) = value {
                if v.len() > 253 {
                    return Err(invalid(
                        &format!("deployment.{field}"),
                        "is longer than 253 bytes.".into(),
                    ));
                }
                *slot = v;
            }
        }
        let key = format!("{}/{}", dep.namespace, dep.name);
        if key != old_key && !dep.name.is_empty() {
            let id = rec.common.id.clone();
            ctx.claim(INDEX, &key, &id, w, |by| {
                ApiError::new(
                    codes::IN_USE,
                    format!("The operator deployment {key} is already registered as {by}."),
                )
            })
            .await?;
            if old_key != "/" {
                w.release(INDEX, &old_key);
            }
        }
    }
    if let Some(b) = input.binding {
        let binding = rec.binding.get_or_insert_with(OperatorBinding::default);
        if let Some(s) = b.endpoint_selectors {
            check_selectors(&s)?;
            binding.endpoint_selectors = s;
        }
        if let Some(e) = b.ingress_endpoint {
            binding.ingress_endpoint = e;
        }
        if let Some(csr) = b.csr.filter(|c| !c.trim().is_empty()) {
            let ca = deployment_ca::load_or_create(ctx.store.as_ref())
                .await
                .map_err(ApiError::internal)?;
            let pem = ca
                .sign_client_csr(&csr)
                .map_err(|why| invalid("binding.csr", why))?;
            let der = pem_certificates(&pem).map_err(|e| invalid("binding.csr", e))?;
            let (summary, _) = summarize(&der[0]).map_err(|e| invalid("binding.csr", e))?;
            binding.cert_pem = pem;
            binding.not_before = summary.not_before;
            binding.not_after = summary.not_after;
        }
    }
    let bindings_on = rec.enabled_features.iter().any(|f| f == "bindings");
    match &rec.binding {
        Some(_) if !bindings_on => {
            return Err(invalid(
                "binding",
                "set only with the 'bindings' feature in enabled_features.".into(),
            ))
        }
        Some(b) if b.endpoint_selectors.is_empty() => {
            return Err(invalid(
                "binding.endpoint_selectors",
                "at least one selector is required.".into(),
            ))
        }
        None if bindings_on => {
            return Err(invalid(
                "binding",
                "the 'bindings' feature needs a binding (endpoint_selectors, csr).".into(),
            ))
        }
        _ => {}
    }
    rec.updated_at = now_rfc3339();
    update_common(&mut rec.common, input.description, input.metadata)
}

#[async_trait]
impl Resource for KubernetesOperator {
    const KIND: Kind = Kind {
        store: "kubernetes_operators",
        prefix: "k8sop",
        path: "/kubernetes_operators",
        list_key: "operators",
        noun: "Kubernetes operator",
    };
    type Create = OperatorInput;
    type Update = OperatorInput;

    fn common(&self) -> &Common {
        &self.common
    }

    async fn create(
        ctx: &Ctx,
        common: Common,
        input: OperatorInput,
        w: &mut Writes,
    ) -> ApiResult<(Self, Option<String>)> {
        let mut rec = KubernetesOperator {
            updated_at: common.created_at.clone(),
            common,
            enabled_features: Vec::new(),
            region: "global".into(),
            deployment: OperatorDeployment::default(),
            binding: None,
        };
        apply(&mut rec, ctx, input, w).await?;
        Ok((rec, None))
    }

    async fn update(&mut self, ctx: &Ctx, input: OperatorInput, w: &mut Writes) -> ApiResult<()> {
        apply(self, ctx, input, w).await
    }

    async fn delete(&self, _: &Ctx, w: &mut Writes) -> ApiResult<()> {
        let d = &self.deployment;
        if !d.name.is_empty() {
            w.release(INDEX, &format!("{}/{}", d.namespace, d.name));
        }
        Ok(())
    }

    async fn render(&self, ctx: &Ctx) -> ApiResult<Map<String, Value>> {
        let mut m = render_common(ctx, &Self::KIND, &self.common);
        m.insert("updated_at".into(), self.updated_at.clone().into());
        m.insert("enabled_features".into(), json!(self.enabled_features));
        m.insert("region".into(), self.region.clone().into());
        m.insert("deployment".into(), json!(self.deployment));
        m.insert(
            "binding".into(),
            match &self.binding {
                None => Value::Null,
                Some(b) => json!({
                    "endpoint_selectors": b.endpoint_selectors,
                    "ingress_endpoint": b.ingress_endpoint,
                    "cert": {
                        "cert": b.cert_pem,
                        "not_before": b.not_before,
                        "not_after": b.not_after,
                    },
                }),
            },
        );
        Ok(m)
    }
}

/// Live endpoints bound into the operator's cluster.
async fn bound_endpoints(
    ctx: Ctx,
    Path(id): Path<String>,
    p: ListParams,
) -> ApiResult<Json<Value>> {
    let (op, _) = ctx
        .load::<KubernetesOperator>(&KubernetesOperator::KIND, &id)
        .await?;
    let bindings_on = op.enabled_features.iter().any(|f| f == "bindings");
    let items = if bindings_on {
        ctx.settings
            .live
            .tunnels()
            .iter()
            .filter(|t| t.bindings.iter().any(|b| b == "kubernetes"))
            .filter_map(|t| {
                Some((
                    t.started_at_ms,
                    endpoint_id(&t.id),
                    render_endpoint(&ctx, t)?,
                ))
            })
            .collect()
    } else {
        Vec::new()
    };
    let path = format!("{}/{id}/bound_endpoints", KubernetesOperator::KIND.path);
    Ok(Json(page(&ctx, &path, "endpoints", items, &p)))
}

pub fn mount(router: Router<ApiState>) -> Router<ApiState> {
    router.route(
        "/kubernetes_operators/{id}/bound_endpoints",
        get(bound_endpoints),
    )
}
