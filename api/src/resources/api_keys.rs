//! `/api_keys`: keys for this API. The secret is shown once, at create;
//! the store keeps its hash, indexed for the auth check.

use async_trait::async_trait;
use gangway_config::resources::{token_hash, ApiKey, Common};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::{render_common, update_common, Ctx, Kind, Resource, Writes};
use crate::ids;
use crate::rest::error::ApiResult;

/// Index of key hashes → ids, read on every request.
pub const TOKEN_INDEX: &str = "api_key_token";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateApiKey {
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub metadata: Option<String>,
    #[serde(default)]
    pub owner_id: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateApiKey {
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub metadata: Option<String>,
}

/// Builds a key record and its secret; also used to make the first key.
pub fn new_api_key(common: Common, owner_id: Option<String>) -> (ApiKey, String) {
    let token = ids::new_token(&common.id);
    let rec = ApiKey {
        common,
        owner_id,
        token_hash: token_hash(&token),
    };
    (rec, token)
}

#[async_trait]
impl Resource for ApiKey {
    const KIND: Kind = Kind {
        store: "api_keys",
        prefix: "ak",
        path: "/api_keys",
        list_key: "keys",
        noun: "API key",
    };
    type Create = CreateApiKey;
    type Update = UpdateApiKey;

    fn common(&self) -> &Common {
        &self.common
    }

    async fn create(
        ctx: &Ctx,
        mut common: Common,
        mut input: CreateApiKey,
        w: &mut Writes,
    ) -> ApiResult<(Self, Option<String>)> {
        update_common(&mut common, input.description.take(), input.metadata.take())?;
        let (rec, token) = new_api_key(common, input.owner_id);
        ctx.claim(TOKEN_INDEX, &rec.token_hash, &rec.common.id, w, |_| {
            crate::rest::error::ApiError::internal("API key collision")
        })
        .await?;
        Ok((rec, Some(token)))
    }

    async fn update(&mut self, _: &Ctx, input: UpdateApiKey, _: &mut Writes) -> ApiResult<()> {
        update_common(&mut self.common, input.description, input.metadata)
    }

    async fn delete(&self, _: &Ctx, w: &mut Writes) -> ApiResult<()> {
        w.release(TOKEN_INDEX, &self.token_hash);
        Ok(())
    }

    async fn render(&self, ctx: &Ctx) -> ApiResult<Map<String, Value>> {
        let mut m = render_common(ctx, &Self::KIND, &self.common);
        m.insert("token".into(), Value::Null);
        m.insert("owner_id".into(), self.owner_id.clone().into());
        Ok(m)
    }
}
