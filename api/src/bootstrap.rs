//! A new deployment's first secrets: an API key to call the API with, and
//! the first-light authtoken as a credential, so agents keep working.

use gangway_config::resources::{token_hash, ApiKey, Common, Credential};

use crate::ids;
use crate::resources::api_keys::{self, new_api_key};
use crate::resources::credentials::{self, credential_for_token};
use crate::resources::{index_key, now_rfc3339, Kind, Resource};
use crate::store::{Compare, Op, Store, StoreError};

fn common(kind: &Kind, description: &str) -> Common {
    Common {
        id: ids::new_id(kind.prefix),
        created_at: now_rfc3339(),
        description: description.to_string(),
        metadata: String::new(),
    }
}

fn create_ops<T: serde::Serialize>(
    key: String,
    rec: &T,
    index: String,
    id: &str,
) -> Result<Vec<Op>, StoreError> {
    let value = serde_json::to_vec(rec).map_err(|e| StoreError::Backend(e.to_string()))?;
    Ok(vec![
        Op::Put {
            key,
            value,
            lease: None,
        },
        Op::Put {
            key: index,
            value: id.as_bytes().to_vec(),
            lease: None,
        },
    ])
}

/// Returns `saved` if it is a valid API key, else creates a new key and
/// returns its secret (shown once; the caller saves it for the user).
pub async fn api_key(store: &dyn Store, saved: Option<&str>) -> Result<String, StoreError> {
    if let Some(token) = saved.map(str::trim).filter(|t| !t.is_empty()) {
        let index = index_key(api_keys::TOKEN_INDEX, &token_hash(token));
        if store.get(&index).await?.is_some() {
            return Ok(token.to_string());
        }
    }
    let (rec, token) = new_api_key(common(&ApiKey::KIND, "made by gangway server"), None);
    let index = index_key(api_keys::TOKEN_INDEX, &rec.token_hash);
    let ops = create_ops(
        ApiKey::KIND.key(&rec.common.id),
        &rec,
        index.clone(),
        &rec.common.id,
    )?;
    store.txn(vec![Compare::ModRevision(index, 0)], ops).await?;
    Ok(token)
}

/// Makes `token` a credential (no ACL) unless one already has it.
pub async fn ensure_credential(
    store: &dyn Store,
    token: &str,
    description: &str,
) -> Result<(), StoreError> {
    let index = index_key(credentials::TOKEN_INDEX, &token_hash(token));
    if store.get(&index).await?.is_some() {
        return Ok(());
    }
    let rec: Credential = credential_for_token(common(&Credential::KIND, description), token);
    let ops = create_ops(
        Credential::KIND.key(&rec.common.id),
        &rec,
        index.clone(),
        &rec.common.id,
    )?;
    store.txn(vec![Compare::ModRevision(index, 0)], ops).await?;
    Ok(())
}
