//! `/reserved_domains` and `/reserved_addrs`: names and TCP addresses held
//! for this deployment. A reserved name is bound only by agents whose
//! credential's ACL allows it, and an HTTPS edge may serve it.

use async_trait::async_trait;
use gangway_config::hostname::normalize_hostname;
use gangway_config::resources::{Common, ReservedAddr, ReservedDomain, TlsCertificate};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::{render_common, update_common, Ctx, Kind, Resource, Writes};
use crate::rest::error::{codes, ApiError, ApiResult};

pub const DOMAIN_INDEX: &str = "reserved_domain";
pub const ADDR_INDEX: &str = "reserved_addr";
/// HTTPS edges claim their host names here (see `https_edges`).
pub const HOSTPORT_INDEX: &str = "hostport";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateReservedDomain {
    #[serde(default)]
    pub domain: Option<String>,
    /// Older clients send `name`.
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub region: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub metadata: Option<String>,
    #[serde(default)]
    pub certificate_id: Option<String>,
    #[serde(default)]
    pub certificate_management_policy: Option<Value>,
    #[serde(default)]
    pub resolves_to: Option<Vec<Value>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateReservedDomain {
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub metadata: Option<String>,
    #[serde(default)]
    pub certificate_id: Option<String>,
    #[serde(default)]
    pub certificate_management_policy: Option<Value>,
    #[serde(default)]
    pub resolves_to: Option<Vec<Value>>,
}

/// Features of a reserved domain this server does not offer yet are
/// refused rather than silently dropped.
fn refuse_unsupported(policy: &Option<Value>, resolves_to: &Option<Vec<Value>>) -> ApiResult<()> {
    if policy.as_ref().is_some_and(|p| !p.is_null()) {
        return Err(ApiError::invalid(
            codes::INVALID_VALUE,
            "certificate_management_policy",
            "certificate_management_policy: automatic certificates are not supported yet.",
        ));
    }
    if resolves_to.as_ref().is_some_and(|r| !r.is_empty()) {
        return Err(ApiError::invalid(
            codes::INVALID_VALUE,
            "resolves_to",
            "resolves_to: this server resolves every reserved domain to itself.",
        ));
    }
    Ok(())
}

/// Checks a domain's `certificate_id` (empty: none) names a stored
/// certificate that covers the domain.
async fn certificate_for(
    ctx: &Ctx,
    domain: &str,
    certificate_id: Option<String>,
    w: &mut Writes,
) -> ApiResult<Option<String>> {
    let Some(id) = certificate_id.filter(|c| !c.is_empty()) else {
        return Ok(None);
    };
    let cert: TlsCertificate = ctx
        .referenced(&TlsCertificate::KIND, &id, "certificate_id", w)
        .await?;
    let covers = cert.summary.dns_names.iter().any(|n| {
        n == domain
            || n.strip_prefix("*.").is_some_and(|suffix| {
                domain
                    .split_once('.')
                    .is_some_and(|(label, rest)| label != "*" && rest == suffix)
            })
    });
    if !covers {
        return Err(ApiError::invalid(
            codes::INVALID_VALUE,
            "certificate_id",
            format!(
                "certificate_id: certificate {id} is for {:?}, not {domain:?}.",
                cert.summary.dns_names
            ),
        ));
    }
    Ok(Some(id))
}

#[async_trait]
impl Resource for ReservedDomain {
    const KIND: Kind = Kind {
        store: "reserved_domains",
        prefix: "rd",
        path: "/reserved_domains",
        list_key: "reserved_domains",
        noun: "reserved domain",
    };
    type Create = CreateReservedDomain;
    type Update = UpdateReservedDomain;

    fn common(&self) -> &Common {
        &self.common
    }

    async fn create(
        ctx: &Ctx,
        mut common: Common,
        mut input: CreateReservedDomain,
        w: &mut Writes,
    ) -> ApiResult<(Self, Option<String>)> {
        update_common(&mut common, input.description.take(), input.metadata.take())?;
        refuse_unsupported(&input.certificate_management_policy, &input.resolves_to)?;
        let raw = input.domain.or(input.name).unwrap_or_default();
        if raw.is_empty() {
            return Err(ApiError::invalid(
                codes::INVALID_HOSTNAME,
                "domain",
                "domain is required.",
            ));
        }
        let domain = normalize_hostname(&raw, true).map_err(|e| {
            ApiError::invalid(codes::INVALID_HOSTNAME, "domain", format!("domain: {e}"))
        })?;
        ctx.claim(DOMAIN_INDEX, &domain, &common.id, w, |by| {
            ApiError::new(
                codes::DOMAIN_TAKEN,
                format!("The domain {domain:?} is already reserved ({by})."),
            )
        })
        .await?;
        let certificate_id = certificate_for(ctx, &domain, input.certificate_id, w).await?;
        let rec = ReservedDomain {
            common,
            domain,
            region: input.region.unwrap_or_default(),
            certificate_id,
        };
        Ok((rec, None))
    }

    async fn update(
        &mut self,
        ctx: &Ctx,
        input: UpdateReservedDomain,
        w: &mut Writes,
    ) -> ApiResult<()> {
        refuse_unsupported(&input.certificate_management_policy, &input.resolves_to)?;
        if input.certificate_id.is_some() {
            self.certificate_id =
                certificate_for(ctx, &self.domain, input.certificate_id, w).await?;
        }
        update_common(&mut self.common, input.description, input.metadata)
    }

    async fn delete(&self, ctx: &Ctx, w: &mut Writes) -> ApiResult<()> {
        if let Some(edge) = ctx.claimant(HOSTPORT_INDEX, &self.domain).await? {
            return Err(ApiError::new(
                codes::IN_USE,
                format!(
                    "The domain {:?} is served by edge {edge}; remove it from the edge first.",
                    self.domain
                ),
            ));
        }
        w.release(DOMAIN_INDEX, &self.domain);
        Ok(())
    }

    async fn render(&self, ctx: &Ctx) -> ApiResult<Map<String, Value>> {
        let mut m = render_common(ctx, &Self::KIND, &self.common);
        m.insert("domain".into(), self.domain.clone().into());
        m.insert("region".into(), self.region.clone().into());
        // Names under the base domain resolve already; others need a CNAME.
        let base = &ctx.settings.base_domain;
        let under_base = self.domain.ends_with(&format!(".{base}"));
        let cname = (!under_base).then(|| {
            let body = self.common.id.split_once('_').map_or("", |(_, b)| b);
            format!("{}.cname.{base}", body.to_ascii_lowercase())
        });
        m.insert("cname_target".into(), cname.into());
        m.insert(
            "certificate".into(),
            self.certificate_id
                .as_ref()
                .map_or(Value::Null, |id| ctx.reference(&TlsCertificate::KIND, id)),
        );
        m.insert("certificate_management_policy".into(), Value::Null);
        m.insert("certificate_management_status".into(), Value::Null);
        m.insert("acme_challenge_cname_target".into(), Value::Null);
        m.insert("resolves_to".into(), Value::Array(Vec::new()));
        Ok(m)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateReservedAddr {
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub metadata: Option<String>,
    #[serde(default)]
    pub region: Option<String>,
    /// A specific `host:port` (or port) from the TCP range; default: any free.
    #[serde(default)]
    pub addr: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateReservedAddr {
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub metadata: Option<String>,
}

/// The port of a `host:port` or bare port the user asked for.
fn requested_port(ctx: &Ctx, addr: &str) -> ApiResult<u16> {
    let bad = |why: String| ApiError::invalid(codes::TCP_ADDR_INVALID, "addr", why);
    let (host, port) = addr.rsplit_once(':').unwrap_or(("", addr));
    if !host.is_empty() && !host.eq_ignore_ascii_case(&ctx.settings.tcp_host) {
        return Err(bad(format!(
            "addr: TCP addresses on this server are on host {:?}.",
            ctx.settings.tcp_host
        )));
    }
    let port: u16 = port
        .parse()
        .map_err(|_| bad(format!("addr: {addr:?} is not host:port.")))?;
    if !ctx.settings.tcp_ports.contains(&port) {
        let r = &ctx.settings.tcp_ports;
        return Err(bad(format!(
            "addr: port {port} is outside the range {}-{} this server allocates from.",
            r.start(),
            r.end()
        )));
    }
    Ok(port)
}

#[async_trait]
impl Resource for ReservedAddr {
    const KIND: Kind = Kind {
        store: "reserved_addrs",
        prefix: "ra",
        path: "/reserved_addrs",
        list_key: "reserved_addrs",
        noun: "reserved address",
    };
    type Create = CreateReservedAddr;
    type Update = UpdateReservedAddr;

    fn common(&self) -> &Common {
        &self.common
    }

    async fn create(
        ctx: &Ctx,
        mut common: Common,
        mut input: CreateReservedAddr,
        w: &mut Writes,
    ) -> ApiResult<(Self, Option<String>)> {
        update_common(&mut common, input.description.take(), input.metadata.take())?;
        let port = match input.addr.as_deref().filter(|a| !a.is_empty()) {
            Some(a) => {
                let port = requested_port(ctx, a)?;
                ctx.claim(ADDR_INDEX, &port.to_string(), &common.id, w, |by| {
                    ApiError::new(
                        codes::ADDR_TAKEN,
                        format!("Port {port} is already reserved ({by})."),
                    )
                })
                .await?;
                port
            }
            None => free_port(ctx, &common.id, w).await?,
        };
        let rec = ReservedAddr {
            common,
            addr: format!("{}:{port}", ctx.settings.tcp_host),
            region: input.region.unwrap_or_default(),
        };
        Ok((rec, None))
    }

    async fn update(
        &mut self,
        _: &Ctx,
        input: UpdateReservedAddr,
        _: &mut Writes,
    ) -> ApiResult<()> {
        update_common(&mut self.common, input.description, input.metadata)
    }

    async fn delete(&self, ctx: &Ctx, w: &mut Writes) -> ApiResult<()> {
        if let Some((_, port)) = self.addr.rsplit_once(':') {
            if let Some(edge) = ctx.claimant(super::l4_edges::TCP_EDGE_INDEX, port).await? {
                return Err(ApiError::new(
                    codes::IN_USE,
                    format!(
                        "The address {} is served by TCP edge {edge}; remove it from the edge first.",
                        self.addr
                    ),
                ));
            }
            w.release(ADDR_INDEX, port);
        }
        Ok(())
    }

    async fn render(&self, ctx: &Ctx) -> ApiResult<Map<String, Value>> {
        let mut m = render_common(ctx, &Self::KIND, &self.common);
        m.insert("addr".into(), self.addr.clone().into());
        m.insert("region".into(), self.region.clone().into());
        Ok(m)
    }
}

/// Claims a port of the TCP range nobody has reserved, starting at a
/// random offset.
async fn free_port(ctx: &Ctx, id: &str, w: &mut Writes) -> ApiResult<u16> {
    let range = ctx.settings.tcp_ports.clone();
    let (first, last) = (*range.start(), *range.end());
    let span = u32::from(last - first) + 1;
    let offset = rand::random::<u32>() % span;
    for i in 0..span {
        let port = first + ((offset + i) % span) as u16;
        if ctx.claimant(ADDR_INDEX, &port.to_string()).await?.is_none() {
            ctx.claim(ADDR_INDEX, &port.to_string(), id, w, |_| {
                ApiError::internal("port claimed twice")
            })
            .await?;
            return Ok(port);
        }
    }
    Err(ApiError::new(
        codes::ADDR_TAKEN,
        format!("Every port of {first}-{last} is reserved."),
    ))
}
