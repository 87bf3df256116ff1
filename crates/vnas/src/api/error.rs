//! API errors: each has a stable code and an HTTP status.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use vnas_store::StoreError;

use super::types::ErrorBody;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, code, message: message.into() }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message, self.code)
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        let (status, code) = match &error {
            StoreError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "store_unavailable"),
            StoreError::VserverExists(_) => (StatusCode::CONFLICT, "vserver_exists"),
            StoreError::AddressInUse { .. } => (StatusCode::CONFLICT, "address_in_use"),
            StoreError::VserverNotFound(_) => (StatusCode::NOT_FOUND, "vserver_not_found"),
            StoreError::StaleEpoch { .. } => (StatusCode::CONFLICT, "stale_epoch"),
            StoreError::NodeNotFound(_) => (StatusCode::NOT_FOUND, "node_not_found"),
            StoreError::NodeAlreadyRunning(_) => (StatusCode::CONFLICT, "node_already_running"),
            StoreError::InvalidName(_) => (StatusCode::BAD_REQUEST, "invalid_name"),
            StoreError::Corrupt { .. } => (StatusCode::INTERNAL_SERVER_ERROR, "store_corrupt"),
            StoreError::ConfigChanged(_) => (StatusCode::CONFLICT, "changed_meanwhile"),
        };
        ApiError::new(status, code, error.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody { code: self.code.to_string(), message: self.message };
        (self.status, Json(body)).into_response()
    }
}
