//! Every failure of the API as a status code and a JSON body naming what was wrong.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use mindmesh_core::CoreError;
use mindmesh_supervisor::SupervisorError;

use serde::{Deserialize, Serialize};

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub param: Option<String>,
    pub code: &'static str,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, message: message.into(), param: None, code }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid", message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }
    pub fn internal(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }
    fn kind(&self) -> &'static str {
        match self.status.as_u16() {
            401 => "authentication_error",
            404 => "not_found_error",
            429 => "rate_limit_error",
            400..=499 => "invalid_request_error",
            _ => "server_error",
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                kind: self.kind().to_owned(),
                message: self.message,
                param: self.param,
                code: Some(self.code.to_owned()),
            },
        };
        (self.status, Json(body)).into_response()
    }
}

impl From<CoreError> for ApiError {
    fn from(e: CoreError) -> Self {
        let param = e.field().map(str::to_owned);
        ApiError { param, ..ApiError::bad_request(e.to_string()) }
    }
}

impl From<SupervisorError> for ApiError {
    fn from(e: SupervisorError) -> Self {
        match e {
            SupervisorError::NotFound(_) => ApiError::not_found(e.to_string()),
            SupervisorError::Exists(_) => {
                ApiError { param: Some("name".into()), ..ApiError::new(StatusCode::CONFLICT, "exists", e.to_string()) }
            }
            SupervisorError::Conflict(_) => ApiError::new(StatusCode::CONFLICT, "conflict", e.to_string()),
            SupervisorError::Full(_) => ApiError::new(StatusCode::INSUFFICIENT_STORAGE, "full", e.to_string()),
            SupervisorError::Invalid(core) => core.into(),
            SupervisorError::Timeout(_) => ApiError::new(StatusCode::GATEWAY_TIMEOUT, "timeout", e.to_string()),
            SupervisorError::Stopped => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "stopping", e.to_string()),
            SupervisorError::Io { .. } => ApiError::internal(e.to_string()),
            SupervisorError::Probe(_) => ApiError::new(StatusCode::BAD_GATEWAY, "persona_error", e.to_string()),
            SupervisorError::Command { .. } => ApiError {
                param: Some("command".into()),
                ..ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "command_not_runnable", e.to_string())
            },
        }
    }
}

impl From<mindmesh_store::StoreError> for ApiError {
    fn from(e: mindmesh_store::StoreError) -> Self {
        // a store that failed is a node that is stopping: 503, so a client retries elsewhere
        if e.is_fatal() {
            return ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "store_failed", format!("store: {e}"));
        }
        ApiError::internal(format!("store: {e}"))
    }
}

/// The error body of every failed request, in OpenAI's shape so one client handles both the
/// management API and the gateway.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorDetail {
    pub message: String,
    #[serde(rename = "type")]
    pub kind: String,
    /// The offending field, for validation errors.
    pub param: Option<String>,
    pub code: Option<String>,
}
