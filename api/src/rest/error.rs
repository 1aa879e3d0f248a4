//! API errors in ngrok's shape:
//! `{"error_code":"ERR_NGROK_…","status_code":…,"msg":"…","details":{…}}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};

use crate::store::StoreError;

/// The failure vocabulary (one table for the edge, RPCs and this API).
pub use gangway_config::codes;
use gangway_config::codes::Code;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: Code,
    pub msg: String,
    pub details: Map<String, Value>,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    /// An error answered with `code`'s status.
    pub fn new(code: Code, msg: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::from_u16(code.status).unwrap_or(StatusCode::BAD_REQUEST),
            code,
            msg: msg.into(),
            details: Map::new(),
        }
    }

    /// A bad value at `field` (a JSON path such as `backend.backend_id`).
    pub fn invalid(code: Code, field: &str, msg: impl Into<String>) -> Self {
        Self::new(code, msg).detail("field", field)
    }

    pub fn not_found(what: &str, id: &str) -> Self {
        Self::new(
            codes::NOT_FOUND,
            format!("Resource not found: {what} {id:?} does not exist."),
        )
    }

    pub fn internal(msg: impl std::fmt::Display) -> Self {
        tracing::error!(error = %msg, "API internal error");
        Self::new(
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
            "error_code": self.code.as_str(),
            "status_code": self.status.as_u16(),
            "msg": self.msg,
            "details": self.details,
        });
        (self.status, axum::Json(body)).into_response()
    }
}
