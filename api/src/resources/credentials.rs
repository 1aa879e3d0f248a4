//! `/credentials`: agent authtokens. The token is shown once, at create;
//! `acl` bind rules are checked by the edge when an agent binds.

use async_trait::async_trait;
use gangway_config::control::Acl;
use gangway_config::resources::{token_hash, Common, Credential};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::{render_common, update_common, Ctx, Kind, Resource, Writes};
use crate::ids;
use crate::rest::error::{codes, ApiError, ApiResult};

pub const TOKEN_INDEX: &str = "credential_token";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateCredential {
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub metadata: Option<String>,
    #[serde(default)]
    pub acl: Vec<String>,
    #[serde(default)]
    pub owner_id: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateCredential {
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub metadata: Option<String>,
    #[serde(default)]
    pub acl: Option<Vec<String>>,
}

fn check_acl(acl: &[String]) -> ApiResult<()> {
    for (i, rule) in acl.iter().enumerate() {
        if let Err(e) = Acl::parse(std::slice::from_ref(rule)) {
            return Err(ApiError::invalid(
                codes::INVALID_ACL_RULE,
                &format!("acl[{i}]"),
                e.to_string(),
            ));
        }
    }
    Ok(())
}

/// A credential for a token chosen elsewhere (the first-light authtoken).
pub fn credential_for_token(common: Common, token: &str) -> Credential {
    Credential {
        common,
        acl: Vec::new(),
        owner_id: None,
        token_hash: token_hash(token),
    }
}

#[async_trait]
impl Resource for Credential {
    const KIND: Kind = Kind {
        store: "credentials",
        prefix: "cr",
        path: "/credentials",
        list_key: "credentials",
        noun: "credential",
    };
    type Create = CreateCredential;
    type Update = UpdateCredential;

    fn common(&self) -> &Common {
        &self.common
    }

    async fn create(
        ctx: &Ctx,
        mut common: Common,
        mut input: CreateCredential,
        w: &mut Writes,
    ) -> ApiResult<(Self, Option<String>)> {
        update_common(&mut common, input.description.take(), input.metadata.take())?;
        check_acl(&input.acl)?;
        let token = ids::new_token(&common.id);
        let mut rec = credential_for_token(common, &token);
        rec.acl = input.acl;
        rec.owner_id = input.owner_id;
        ctx.claim(TOKEN_INDEX, &rec.token_hash, &rec.common.id, w, |_| {
            ApiError::internal("credential token collision")
        })
        .await?;
        Ok((rec, Some(token)))
    }

    async fn update(&mut self, _: &Ctx, input: UpdateCredential, _: &mut Writes) -> ApiResult<()> {
        if let Some(acl) = &input.acl {
            check_acl(acl)?;
        }
        update_common(&mut self.common, input.description, input.metadata)?;
        if let Some(acl) = input.acl {
            self.acl = acl;
        }
        Ok(())
    }

    async fn delete(&self, _: &Ctx, w: &mut Writes) -> ApiResult<()> {
        w.release(TOKEN_INDEX, &self.token_hash);
        Ok(())
    }

    async fn render(&self, ctx: &Ctx) -> ApiResult<Map<String, Value>> {
        let mut m = render_common(ctx, &Self::KIND, &self.common);
        m.insert("token".into(), Value::Null);
        m.insert("acl".into(), self.acl.clone().into());
        m.insert("owner_id".into(), self.owner_id.clone().into());
        Ok(m)
    }
}
