//! `/certificate_authorities` (CAs that mutual TLS verifies client
//! certificates against) and `/tls_certificates` (server certificates the
//! edge serves by SNI for their names).

use async_trait::async_trait;
use gangway_config::resources::{
    CertSummary, CertificateAuthority, Common, HttpsEdge, MutualTlsModule, ReservedDomain,
    TlsCertificate,
};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::l4_edges::l4_user;
use super::x509::{check_key, pem_certificates, summarize};
use super::{load_all, render_common, update_common, Ctx, Kind, Resource, Writes};
use crate::rest::error::{codes, ApiError, ApiResult};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateCa {
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub metadata: Option<String>,
    pub ca_pem: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateCert {
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub metadata: Option<String>,
    pub certificate_pem: String,
    pub private_key_pem: String,
}

/// Updates change only the common fields (a new certificate is a new
/// resource, as in ngrok).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateCommon {
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub metadata: Option<String>,
}

fn bad_pem(field: &str, why: String) -> ApiError {
    ApiError::invalid(codes::INVALID_PEM, field, format!("{field} {why}."))
}

fn render_summary(m: &mut Map<String, Value>, s: &CertSummary) {
    m.insert(
        "subject_common_name".into(),
        s.subject_common_name.clone().into(),
    );
    m.insert("not_before".into(), s.not_before.clone().into());
    m.insert("not_after".into(), s.not_after.clone().into());
    m.insert("key_usages".into(), json!(s.key_usages));
    m.insert("extended_key_usages".into(), json!(s.extended_key_usages));
}

/// An edge whose mutual TLS trusts CA `id`, if any (then it cannot go).
async fn ca_user(ctx: &Ctx, id: &str) -> ApiResult<Option<String>> {
    let uses = |m: &Option<MutualTlsModule>| {
        m.as_ref()
            .is_some_and(|m| m.certificate_authority_ids.iter().any(|c| c == id))
    };
    for (e, _) in load_all::<HttpsEdge>(ctx, &HttpsEdge::KIND.key_prefix()).await? {
        if uses(&e.mutual_tls) {
            return Ok(Some(e.common.id));
        }
    }
    l4_user(ctx, |m| uses(&m.mutual_tls)).await
}

#[async_trait]
impl Resource for CertificateAuthority {
    const KIND: Kind = Kind {
        store: "certificate_authorities",
        prefix: "ca",
        path: "/certificate_authorities",
        list_key: "certificate_authorities",
        noun: "certificate authority",
    };
    type Create = CreateCa;
    type Update = UpdateCommon;

    fn common(&self) -> &Common {
        &self.common
    }

    async fn create(
        _: &Ctx,
        mut common: Common,
        mut input: CreateCa,
        _: &mut Writes,
    ) -> ApiResult<(Self, Option<String>)> {
        update_common(&mut common, input.description.take(), input.metadata.take())?;
        let ders = pem_certificates(&input.ca_pem).map_err(|e| bad_pem("ca_pem", e))?;
        let mut summary = None;
        for (i, der) in ders.iter().enumerate() {
            let (s, is_ca) = summarize(der).map_err(|e| bad_pem("ca_pem", e))?;
            if !is_ca {
                return Err(bad_pem(
                    "ca_pem",
                    format!(
                        "certificate {i} ({:?}) is not a CA: its basicConstraints do not say CA:TRUE",
                        s.subject_common_name
                    ),
                ));
            }
            summary.get_or_insert(s);
        }
        Ok((
            CertificateAuthority {
                common,
                ca_pem: input.ca_pem,
                summary: summary.unwrap_or_default(),
            },
            None,
        ))
    }

    async fn update(&mut self, _: &Ctx, input: UpdateCommon, _: &mut Writes) -> ApiResult<()> {
        update_common(&mut self.common, input.description, input.metadata)
    }

    async fn delete(&self, ctx: &Ctx, _: &mut Writes) -> ApiResult<()> {
        match ca_user(ctx, &self.common.id).await? {
            Some(edge) => Err(ApiError::new(
                codes::IN_USE,
                format!(
                    "Certificate authority {} is trusted by the mutual TLS of edge {edge}; remove it there first.",
                    self.common.id
                ),
            )),
            None => Ok(()),
        }
    }

    async fn render(&self, ctx: &Ctx) -> ApiResult<Map<String, Value>> {
        let mut m = render_common(ctx, &Self::KIND, &self.common);
        m.insert("ca_pem".into(), self.ca_pem.clone().into());
        render_summary(&mut m, &self.summary);
        Ok(m)
    }
}

#[async_trait]
impl Resource for TlsCertificate {
    const KIND: Kind = Kind {
        store: "tls_certificates",
        prefix: "cert",
        path: "/tls_certificates",
        list_key: "tls_certificates",
        noun: "TLS certificate",
    };
    type Create = CreateCert;
    type Update = UpdateCommon;

    fn common(&self) -> &Common {
        &self.common
    }

    async fn create(
        _: &Ctx,
        mut common: Common,
        mut input: CreateCert,
        _: &mut Writes,
    ) -> ApiResult<(Self, Option<String>)> {
        update_common(&mut common, input.description.take(), input.metadata.take())?;
        let field = "certificate_pem";
        let ders = pem_certificates(&input.certificate_pem).map_err(|e| bad_pem(field, e))?;
        let mut summary = None;
        for der in &ders {
            let (s, _) = summarize(der).map_err(|e| bad_pem(field, e))?;
            summary.get_or_insert(s);
        }
        let summary = summary.unwrap_or_default();
        if summary.dns_names.is_empty() && summary.ips.is_empty() {
            return Err(bad_pem(
                field,
                "names no host in its subjectAltName, so no client would accept it".into(),
            ));
        }
        let key_type = check_key(&ders[0], &input.private_key_pem)
            .map_err(|e| bad_pem("private_key_pem", e))?;
        Ok((
            TlsCertificate {
                common,
                certificate_pem: input.certificate_pem,
                private_key_pem: input.private_key_pem,
                private_key_type: key_type.to_string(),
                summary,
            },
            None,
        ))
    }

    async fn update(&mut self, _: &Ctx, input: UpdateCommon, _: &mut Writes) -> ApiResult<()> {
        update_common(&mut self.common, input.description, input.metadata)
    }

    /// Refused while a reserved domain is served with it.
    async fn delete(&self, ctx: &Ctx, _: &mut Writes) -> ApiResult<()> {
        let id = &self.common.id;
        for (d, _) in load_all::<ReservedDomain>(ctx, &ReservedDomain::KIND.key_prefix()).await? {
            if d.certificate_id.as_deref() == Some(id.as_str()) {
                return Err(ApiError::new(
                    codes::IN_USE,
                    format!(
                        "TLS certificate {id} is the certificate of reserved domain {} ({}); change that first.",
                        d.common.id, d.domain
                    ),
                ));
            }
        }
        Ok(())
    }

    async fn render(&self, ctx: &Ctx) -> ApiResult<Map<String, Value>> {
        let s = &self.summary;
        let mut m = render_common(ctx, &Self::KIND, &self.common);
        m.insert(
            "certificate_pem".into(),
            self.certificate_pem.clone().into(),
        );
        render_summary(&mut m, s);
        m.insert("issued_at".into(), Value::Null);
        m.insert(
            "private_key_type".into(),
            self.private_key_type.clone().into(),
        );
        m.insert(
            "issuer_common_name".into(),
            s.issuer_common_name.clone().into(),
        );
        m.insert("serial_number".into(), s.serial_number.clone().into());
        m.insert(
            "subject_organization".into(),
            s.subject_organization.clone().into(),
        );
        m.insert(
            "subject_organizational_unit".into(),
            s.subject_organizational_unit.clone().into(),
        );
        m.insert("subject_locality".into(), s.subject_locality.clone().into());
        m.insert("subject_province".into(), s.subject_province.clone().into());
        m.insert("subject_country".into(), s.subject_country.clone().into());
        m.insert(
            "subject_alternative_names".into(),
            json!({"dns_names": s.dns_names, "ips": s.ips}),
        );
        Ok(m)
    }
}
