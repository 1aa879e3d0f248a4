//! The resource framework: each kind of resource says how it is created,
//! updated, deleted and rendered; the generic handlers here do the rest
//! (ids, timestamps, common-field limits, guarded writes, pagination).
//!
//! Records live at `/r/<kind>/<id>` as JSON; unique names are claimed with
//! index keys under `/idx/`. Every write is one store transaction guarded by
//! the revisions it read, so a rejected or racing write stores nothing.

pub mod agent_ingresses;
pub mod api_keys;
pub mod backends;
pub mod certificates;
pub mod cloud_endpoints;
pub mod credentials;
pub mod https_edges;
pub mod ip_policies;
pub mod kubernetes_operators;
pub mod l4_edges;
pub mod live;
pub mod reserved;
pub mod routes;
pub mod x509;

use std::sync::Arc;

use async_trait::async_trait;
use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use gangway_config::resources::Common;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::ids;
use crate::rest::error::{codes, ApiError, ApiResult};
use crate::rest::extract::{Body, ListParams};
use crate::rest::ApiState;
use crate::store::{Compare, Op, Revision, Store};

/// Where a kind lives in the store and in URLs.
pub struct Kind {
    /// Key segment: records are at `/r/<store>/<id>`.
    pub store: &'static str,
    pub prefix: &'static str,
    /// Collection path, e.g. `/credentials`.
    pub path: &'static str,
    /// The list response's array key.
    pub list_key: &'static str,
    /// For messages: "credential".
    pub noun: &'static str,
}

impl Kind {
    pub fn key(&self, id: &str) -> String {
        format!("/r/{}/{id}", self.store)
    }

    pub fn key_prefix(&self) -> String {
        format!("/r/{}/", self.store)
    }
}

/// The key of unique name `value` in index `index` (its value: the owner's id).
pub fn index_key(index: &str, value: &str) -> String {
    format!("/idx/{index}/{value}")
}

/// Description and metadata limits, as ngrok documents them.
pub const MAX_DESCRIPTION: usize = 255;
pub const MAX_METADATA: usize = 4096;

/// A request's view of the API: the store, settings and the base URL that
/// `uri` fields are built on.
pub struct Ctx {
    pub store: Arc<dyn Store>,
    pub settings: Arc<crate::rest::ApiSettings>,
    pub base: String,
}

impl FromRequestParts<ApiState> for Ctx {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, st: &ApiState) -> Result<Self, ApiError> {
        // `uri`s are absolute and must lead back here however the client
        // reached us (API clients follow `next_page_uri` verbatim).
        let host = parts
            .headers
            .get(axum::http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .filter(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_graphic()))
            .map(str::to_string)
            .unwrap_or_else(|| st.settings.api_addr.clone());
        Ok(Ctx {
            store: st.store.clone(),
            settings: st.settings.clone(),
            base: format!("http://{host}"),
        })
    }
}

impl Ctx {
    pub fn uri(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `{"id","uri"}` of a resource.
    pub fn reference(&self, kind: &Kind, id: &str) -> Value {
        serde_json::json!({"id": id, "uri": self.uri(&format!("{}/{id}", kind.path))})
    }

    /// Loads a record, or 404.
    pub async fn load<T: DeserializeOwned>(
        &self,
        kind: &Kind,
        id: &str,
    ) -> ApiResult<(T, Revision)> {
        match self.store.get(&kind.key(id)).await? {
            Some(kv) => {
                let rec = serde_json::from_slice(&kv.value).map_err(ApiError::internal)?;
                Ok((rec, kv.mod_revision))
            }
            None => Err(ApiError::not_found(kind.noun, id)),
        }
    }

    /// Loads a record another one refers to at `field`; the write is then
    /// guarded on it still being there. Missing → 400 with the field.
    pub async fn referenced<T: DeserializeOwned>(
        &self,
        kind: &Kind,
        id: &str,
        field: &str,
        w: &mut Writes,
    ) -> ApiResult<T> {
        if !ids::has_prefix(id, kind.prefix) {
            return Err(ApiError::invalid(
                codes::WRONG_ID_PREFIX,
                field,
                format!(
                    "{field}: {id:?} is not a {} id ({}_…).",
                    kind.noun, kind.prefix
                ),
            ));
        }
        match self.load::<T>(kind, id).await {
            Ok((rec, rev)) => {
                w.compares.push(Compare::ModRevision(kind.key(id), rev));
                Ok(rec)
            }
            Err(e) if e.status == StatusCode::NOT_FOUND => Err(ApiError::invalid(
                codes::REFERENCED_NOT_FOUND,
                field,
                format!("{field}: {} {id:?} does not exist.", kind.noun),
            )),
            Err(e) => Err(e),
        }
    }

    /// Claims the unique name `index/value` for `owner`. Taken by another
    /// resource → `taken`. Guarded, so two racing claims cannot both win.
    pub async fn claim(
        &self,
        index: &str,
        value: &str,
        owner: &str,
        w: &mut Writes,
        taken: impl FnOnce(&str) -> ApiError,
    ) -> ApiResult<()> {
        let key = index_key(index, value);
        match self.store.get(&key).await? {
            Some(kv) if kv.value == owner.as_bytes() => Ok(()),
            Some(kv) => Err(taken(&String::from_utf8_lossy(&kv.value))),
            None => {
                w.compares.push(Compare::ModRevision(key.clone(), 0));
                w.ops.push(Op::Put {
                    key,
                    value: owner.as_bytes().to_vec(),
                    lease: None,
                });
                Ok(())
            }
        }
    }

    /// Who holds `index/value`, if anyone.
    pub async fn claimant(&self, index: &str, value: &str) -> ApiResult<Option<String>> {
        Ok(self
            .store
            .get(&index_key(index, value))
            .await?
            .map(|kv| String::from_utf8_lossy(&kv.value).into_owned()))
    }
}

/// Writes and guards a resource adds to its own transaction.
#[derive(Default)]
pub struct Writes {
    pub compares: Vec<Compare>,
    pub ops: Vec<Op>,
}

impl Writes {
    pub fn release(&mut self, index: &str, value: &str) {
        self.ops.push(Op::Delete {
            key: index_key(index, value),
        });
    }

    pub fn delete(&mut self, key: String) {
        self.ops.push(Op::Delete { key });
    }

    pub fn put<T: Serialize>(&mut self, key: String, rec: &T) -> ApiResult<()> {
        let value = serde_json::to_vec(rec).map_err(ApiError::internal)?;
        self.ops.push(Op::Put {
            key,
            value,
            lease: None,
        });
        Ok(())
    }
}

/// Checks description and metadata against ngrok's limits.
pub fn check_common(description: Option<&str>, metadata: Option<&str>) -> ApiResult<()> {
    if description.is_some_and(|d| d.len() > MAX_DESCRIPTION) {
        return Err(ApiError::invalid(
            codes::DESCRIPTION_TOO_LONG,
            "description",
            format!("description is longer than {MAX_DESCRIPTION} bytes."),
        ));
    }
    if metadata.is_some_and(|m| m.len() > MAX_METADATA) {
        return Err(ApiError::invalid(
            codes::METADATA_TOO_LONG,
            "metadata",
            format!("metadata is longer than {MAX_METADATA} bytes."),
        ));
    }
    Ok(())
}

/// Applies an update's description/metadata (absent: unchanged).
pub fn update_common(
    common: &mut Common,
    description: Option<String>,
    metadata: Option<String>,
) -> ApiResult<()> {
    check_common(description.as_deref(), metadata.as_deref())?;
    if let Some(d) = description {
        common.description = d;
    }
    if let Some(m) = metadata {
        common.metadata = m;
    }
    Ok(())
}

/// The fields every rendered resource starts with.
pub fn render_common(ctx: &Ctx, kind: &Kind, c: &Common) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("id".into(), c.id.clone().into());
    m.insert(
        "uri".into(),
        ctx.uri(&format!("{}/{}", kind.path, c.id)).into(),
    );
    m.insert("created_at".into(), c.created_at.clone().into());
    m.insert("description".into(), c.description.clone().into());
    m.insert("metadata".into(), c.metadata.clone().into());
    m
}

pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// What a kind of resource does; the generic handlers below serve it.
#[async_trait]
pub trait Resource: Serialize + DeserializeOwned + Send + Sync + 'static {
    const KIND: Kind;
    type Create: DeserializeOwned + Send + 'static;
    type Update: DeserializeOwned + Send + 'static;

    fn common(&self) -> &Common;

    /// Builds the record. Returns a secret to show once, if the kind has one.
    async fn create(
        ctx: &Ctx,
        common: Common,
        input: Self::Create,
        w: &mut Writes,
    ) -> ApiResult<(Self, Option<String>)>;

    async fn update(&mut self, ctx: &Ctx, input: Self::Update, w: &mut Writes) -> ApiResult<()>;

    /// Releases what the record claimed; may refuse while it is in use.
    async fn delete(&self, _ctx: &Ctx, _w: &mut Writes) -> ApiResult<()> {
        Ok(())
    }

    async fn render(&self, ctx: &Ctx) -> ApiResult<Map<String, Value>>;
}

/// How often a write is retried when a guard it read changed under it.
const WRITE_ATTEMPTS: usize = 8;

pub async fn commit(ctx: &Ctx, w: Writes) -> ApiResult<bool> {
    Ok(ctx.store.txn(w.compares, w.ops).await?.succeeded)
}

fn busy() -> ApiError {
    ApiError::new(
        codes::IN_USE,
        "The resource kept changing while this write was applied; try again.",
    )
}

pub async fn create<R: Resource>(ctx: Ctx, Body(input): Body<R::Create>) -> ApiResult<Response>
where
    R::Create: Clone,
{
    let id = ids::new_id(R::KIND.prefix);
    let created_at = now_rfc3339();
    for _ in 0..WRITE_ATTEMPTS {
        let common = Common {
            id: id.clone(),
            created_at: created_at.clone(),
            description: String::new(),
            metadata: String::new(),
        };
        let mut w = Writes::default();
        let (rec, secret) = R::create(&ctx, common, input.clone(), &mut w).await?;
        let key = R::KIND.key(&id);
        w.compares.push(Compare::ModRevision(key.clone(), 0));
        w.put(key, &rec)?;
        if commit(&ctx, w).await? {
            let mut body = rec.render(&ctx).await?;
            if let Some(s) = secret {
                body.insert("token".into(), s.into());
            }
            return Ok((StatusCode::CREATED, Json(Value::Object(body))).into_response());
        }
    }
    Err(busy())
}

/// Loads record `id`, applies `f`, and writes it back, guarded by its own
/// revision and by `guards` (e.g. the references `f`'s input was checked
/// against). Retried when the record changed meanwhile.
pub async fn modify<R: Resource>(
    ctx: &Ctx,
    id: &str,
    guards: &[Compare],
    f: impl Fn(&mut R) -> ApiResult<()>,
) -> ApiResult<R> {
    for _ in 0..WRITE_ATTEMPTS {
        let (mut rec, rev) = ctx.load::<R>(&R::KIND, id).await?;
        f(&mut rec)?;
        let mut w = Writes {
            compares: guards.to_vec(),
            ops: Vec::new(),
        };
        let key = R::KIND.key(id);
        w.compares.push(Compare::ModRevision(key.clone(), rev));
        w.put(key, &rec)?;
        if commit(ctx, w).await? {
            return Ok(rec);
        }
    }
    Err(busy())
}

pub async fn get_one<R: Resource>(ctx: Ctx, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let (rec, _) = ctx.load::<R>(&R::KIND, &id).await?;
    Ok(Json(Value::Object(rec.render(&ctx).await?)))
}

pub async fn list<R: Resource>(ctx: Ctx, params: ListParams) -> ApiResult<Json<Value>> {
    let (items, next) = list_page::<R>(&ctx, &R::KIND, &params).await?;
    let mut body = Map::new();
    body.insert(R::KIND.list_key.into(), Value::Array(items));
    body.insert("uri".into(), ctx.uri(R::KIND.path).into());
    body.insert("next_page_uri".into(), next.into());
    Ok(Json(Value::Object(body)))
}

/// One page, newest first, and the absolute URI of the next one.
pub async fn list_page<R: Resource>(
    ctx: &Ctx,
    kind: &Kind,
    params: &ListParams,
) -> ApiResult<(Vec<Value>, Option<String>)> {
    let before = params.before_id.as_ref().map(|id| kind.key(id));
    let page = ctx
        .store
        .range_rev(&kind.key_prefix(), before.as_deref(), params.limit)
        .await?;
    let mut items = Vec::with_capacity(page.kvs.len());
    let mut last = None;
    for kv in &page.kvs {
        let rec: R = serde_json::from_slice(&kv.value).map_err(ApiError::internal)?;
        last = Some(rec.common().id.clone());
        items.push(Value::Object(rec.render(ctx).await?));
    }
    let next = match (page.more, last) {
        (true, Some(last)) => Some(ctx.uri(&format!(
            "{}?before_id={last}&limit={}",
            kind.path, params.limit
        ))),
        _ => None,
    };
    Ok((items, next))
}

pub async fn update<R: Resource>(
    ctx: Ctx,
    Path(id): Path<String>,
    Body(input): Body<R::Update>,
) -> ApiResult<Json<Value>>
where
    R::Update: Clone,
{
    for _ in 0..WRITE_ATTEMPTS {
        let (mut rec, rev) = ctx.load::<R>(&R::KIND, &id).await?;
        let mut w = Writes::default();
        rec.update(&ctx, input.clone(), &mut w).await?;
        let key = R::KIND.key(&id);
        w.compares.push(Compare::ModRevision(key.clone(), rev));
        w.put(key, &rec)?;
        if commit(&ctx, w).await? {
            return Ok(Json(Value::Object(rec.render(&ctx).await?)));
        }
    }
    Err(busy())
}

pub async fn delete<R: Resource>(ctx: Ctx, Path(id): Path<String>) -> ApiResult<StatusCode> {
    for _ in 0..WRITE_ATTEMPTS {
        let (rec, rev) = ctx.load::<R>(&R::KIND, &id).await?;
        let mut w = Writes::default();
        rec.delete(&ctx, &mut w).await?;
        let key = R::KIND.key(&id);
        w.compares.push(Compare::ModRevision(key.clone(), rev));
        w.delete(key);
        if commit(&ctx, w).await? {
            return Ok(StatusCode::NO_CONTENT);
        }
    }
    Err(busy())
}

/// Mounts create/list at the collection and get/update/delete at `/{id}`.
pub fn crud<R: Resource>(router: Router<ApiState>) -> Router<ApiState>
where
    R::Create: Clone,
    R::Update: Clone,
{
    let path = R::KIND.path;
    router.route(path, get(list::<R>).post(create::<R>)).route(
        &format!("{path}/{{id}}"),
        get(get_one::<R>).patch(update::<R>).delete(delete::<R>),
    )
}

/// Records of a kind under a key prefix, oldest first (for embedding,
/// e.g. an edge's routes).
pub async fn load_all<R: DeserializeOwned>(
    ctx: &Ctx,
    prefix: &str,
) -> ApiResult<Vec<(R, Revision)>> {
    let mut out = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = ctx.store.range(prefix, after.as_deref(), 500).await?;
        for kv in &page.kvs {
            out.push((
                serde_json::from_slice(&kv.value).map_err(ApiError::internal)?,
                kv.mod_revision,
            ));
        }
        after = page.kvs.last().map(|kv| kv.key.clone());
        if !page.more {
            return Ok(out);
        }
    }
}

/// Checks an id path segment's prefix so a mistyped id says so (vs 404).
pub fn check_id(kind: &Kind, id: &str) -> ApiResult<()> {
    if ids::has_prefix(id, kind.prefix) {
        Ok(())
    } else {
        Err(ApiError::not_found(kind.noun, id))
    }
}
