//! The HTTP side of the API: settings, authentication, and the router
//! that mounts every resource.

pub mod error;
pub mod extract;
pub mod openapi;

use std::ops::RangeInclusive;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::Router;
use gangway_config::resources::{
    token_hash, AgentIngress, ApiKey, CertificateAuthority, Credential, HttpsEdge, IpPolicy,
    IpPolicyRule, KubernetesOperator, ReservedAddr, ReservedDomain, TcpEdge, TlsCertificate,
    TlsEdge, TunnelGroupBackend,
};

use crate::live::LiveView;
use crate::resources::{self, api_keys, crud};
use crate::store::Store;
use error::{codes, ApiError};

/// What the API needs to know about the deployment it configures.
pub struct ApiSettings {
    /// `host:port` clients reach the API at (used when a request has no Host).
    pub api_addr: String,
    pub base_domain: String,
    /// `host:port` agents dial (agent ingresses point their names here).
    pub agent_addr: String,
    /// The region agents are told at Auth (shown on sessions and tunnels).
    pub region: String,
    /// The public TLS port (HTTPS edges accept it or 443 in `hostports`).
    pub https_port: u16,
    /// Host and port range of TCP addresses.
    pub tcp_host: String,
    pub tcp_ports: RangeInclusive<u16>,
    /// The edge's live sessions and tunnels.
    pub live: Arc<dyn LiveView>,
}

#[derive(Clone)]
pub struct ApiState {
    pub store: Arc<dyn Store>,
    pub settings: Arc<ApiSettings>,
}

/// Every route of the API, authenticated.
pub fn router(state: ApiState) -> Router {
    let mut r = Router::new();
    r = crud::<ApiKey>(r);
    r = crud::<Credential>(r);
    r = crud::<ReservedDomain>(r);
    r = crud::<ReservedAddr>(r);
    r = crud::<IpPolicy>(r);
    r = crud::<IpPolicyRule>(r);
    r = crud::<TunnelGroupBackend>(r);
    r = crud::<AgentIngress>(r);
    r = crud::<KubernetesOperator>(r);
    r = resources::kubernetes_operators::mount(r);
    r = crud::<CertificateAuthority>(r);
    r = crud::<TlsCertificate>(r);
    r = crud::<HttpsEdge>(r);
    r = crud::<TcpEdge>(r);
    r = crud::<TlsEdge>(r);
    r = resources::l4_edges::modules(r);
    r = resources::https_edges::modules(r);
    r = resources::routes::mount(r);
    r = resources::live::mount(r);
    r = resources::cloud_endpoints::mount(r);
    r.fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), authenticate))
        // The description of the API is public, like ngrok's documentation.
        .route("/openapi.json", axum::routing::get(openapi_json))
        .with_state(state)
}

async fn openapi_json() -> axum::Json<&'static serde_json::Value> {
    axum::Json(openapi::document())
}

async fn not_found() -> ApiError {
    ApiError::new(codes::NOT_FOUND, "No such API path.")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        codes::METHOD_NOT_ALLOWED,
        "This path does not support that method.",
    )
}

/// `Authorization: Bearer <api key>` and `Ngrok-Version: 2` on every call.
async fn authenticate(
    State(st): State<ApiState>,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let unauthorized = |code, msg: &str| ApiError::new(code, msg.to_string());
    let header = req.headers().get(AUTHORIZATION).ok_or_else(|| {
        unauthorized(
            codes::MISSING_AUTH,
            "Send your API key as 'Authorization: Bearer <key>'.",
        )
    })?;
    let token = header
        .to_str()
        .ok()
        .and_then(|h| {
            h.strip_prefix("Bearer ")
                .or_else(|| h.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            unauthorized(
                codes::BAD_AUTH_HEADER,
                "The Authorization header must be 'Bearer <key>'.",
            )
        })?;
    let key = resources::index_key(api_keys::TOKEN_INDEX, &token_hash(token));
    if st.store.get(&key).await?.is_none() {
        return Err(unauthorized(
            codes::INVALID_API_KEY,
            "The API key is not valid.",
        ));
    }
    match req.headers().get("ngrok-version").map(|v| v.as_bytes()) {
        Some(b"2") => {}
        Some(_) => {
            return Err(ApiError::new(
                codes::BAD_VERSION,
                "Ngrok-Version must be 2.",
            ))
        }
        None => {
            return Err(ApiError::new(
                codes::MISSING_VERSION,
                "Send the header 'Ngrok-Version: 2'.",
            ))
        }
    }
    Ok(next.run(req).await)
}

/// Serves the API on `listener` until the process ends.
pub async fn serve(listener: tokio::net::TcpListener, state: ApiState) -> std::io::Result<()> {
    axum::serve(listener, router(state)).await
}
