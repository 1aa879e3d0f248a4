//! API errors in ngrok's shape:
//! `{"error_code":"ERR_NGROK_…","status_code":…,"msg":"…","details":{…}}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};

use crate::store::StoreError;

/// ngrok's API error codes we answer with.
pub mod codes {
    pub const MISSING_AUTH: u32 = 200;
    pub const BAD_AUTH_HEADER: u32 = 201;
    pub const INVALID_API_KEY: u32 = 203;
    pub const UNSUPPORTED_CONTENT_TYPE: u32 = 210;
    pub const BAD_BODY: u32 = 213;
    pub const UNKNOWN_FIELD: u32 = 214;
    pub const INVALID_VALUE: u32 = 215;
    pub const MISSING_CONTENT_TYPE: u32 = 216;
    pub const BAD_VERSION: u32 = 217;
    pub const MISSING_VERSION: u32 = 218;
    pub const WRONG_ID_PREFIX: u32 = 227;
    pub const BAD_QUERY: u32 = 230;
    pub const LIMIT_OUT_OF_RANGE: u32 = 233;
    pub const DESCRIPTION_TOO_LONG: u32 = 420;
    pub const METADATA_TOO_LONG: u32 = 421;
    pub const INVALID_ACL_RULE: u32 = 600;
    pub const NOT_FOUND: u32 = 404;
    pub const METHOD_NOT_ALLOWED: u32 = 405;
    pub const INVALID_CIDR: u32 = 362;
    pub const REFERENCED_NOT_FOUND: u32 = 380;
    pub const INVALID_DOMAIN: u32 = 326;
    pub const INVALID_ADDR: u32 = 4502;
    // Ours, in the 9000s like the edge's, where ngrok publishes no code.
    pub const IN_USE: u32 = 9040;
    pub const DOMAIN_TAKEN: u32 = 9041;
    pub const ADDR_TAKEN: u32 = 9042;
    pub const HOSTPORT_NOT_RESERVED: u32 = 9043;
    pub const HOSTPORT_TAKEN: u32 = 9044;
    pub const INVALID_HOSTPORT: u32 = 9045;
    pub const INVALID_MATCH: u32 = 9046;
    pub const AGENT_REFUSED: u32 = 9048;
    pub const AGENT_UNREACHABLE: u32 = 9049;
    pub const INVALID_PEM: u32 = 9050;
    pub const AUTH_MODULES_EXCLUSIVE: u32 = 7079;
    pub const TCP_EDGE_NEEDS_ADDR: u32 = 7120;
    pub const INTERNAL: u32 = 500;
}

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: u32,
    pub msg: String,
    pub details: Map<String, Value>,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(status: StatusCode, code: u32, msg: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            msg: msg.into(),
            details: Map::new(),
        }
    }

    pub fn bad_request(code: u32, msg: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, msg)
    }

    /// A bad value at `field` (a JSON path such as `backend.backend_id`).
    pub fn invalid(code: u32, field: &str, msg: impl Into<String>) -> Self {
        Self::bad_request(code, msg).detail("field", field)
    }

    pub fn not_found(what: &str, id: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            codes::NOT_FOUND,
            format!("Resource not found: {what} {id:?} does not exist."),
        )
    }

    pub fn conflict(code: u32, msg: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, msg)
    }

    pub fn internal(msg: impl std::fmt::Display) -> Self {
        tracing::error!(error = %msg, "API internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            codes::INTERNAL,
            "An internal error occurred; see the server log.",
        )
    }

    pub fn detail(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.details.insert(key.to_string(), value.into());
        self
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ApiError::internal(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({
            "error_code": format!("ERR_NGROK_{}", self.code),
            "status_code": self.status.as_u16(),
            "msg": self.msg,
            "details": self.details,
        });
        (self.status, axum::Json(body)).into_response()
    }
}
