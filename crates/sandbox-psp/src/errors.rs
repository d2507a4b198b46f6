//! The JSON error answer of the `/v1/*` routes: `{"error": {"type", "code", "message"}}`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    kind: &'static str,
    code: &'static str,
    message: String,
}

impl ApiError {
    /// 400 for a field that is missing or wrong; `message` names the field.
    pub(crate) fn invalid_field(message: impl Into<String>) -> Self {
        Self::invalid_request("invalid_field", message)
    }

    /// 400 of another kind (`invalid_json`, `missing_idempotency_key`, …).
    pub(crate) fn invalid_request(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            kind: "invalid_request",
            code,
            message: message.into(),
        }
    }

    pub(crate) fn unauthorized() -> Self {
        Self {
            status: StatusCode::UNAUTHORIZED,
            kind: "authentication_error",
            code: "invalid_api_key",
            message: "send the sandbox API key as `Authorization: Bearer <key>`".to_owned(),
        }
    }

    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            kind: "invalid_request",
            code: "resource_missing",
            message: message.into(),
        }
    }

    pub(crate) fn key_reused() -> Self {
        Self {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            kind: "idempotency_error",
            code: "idempotency_key_reused",
            message: "this Idempotency-Key was already used with another request body".to_owned(),
        }
    }

    /// 503 answered while an outage is switched on (`POST /v1/test/outage`).
    pub(crate) fn outage() -> Self {
        Self {
            status: StatusCode::SERVICE_UNAVAILABLE,
            kind: "api_error",
            code: "outage",
            message: "the sandbox is in an outage (POST /v1/test/outage); try again later"
                .to_owned(),
        }
    }

    /// 500 answered by fault injection.
    pub(crate) fn injected() -> Self {
        Self {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            kind: "api_error",
            code: "injected_fault",
            message: "the sandbox injected this failure (faults.error_rate); retry with the same Idempotency-Key".to_owned(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({
            "error": {"type": self.kind, "code": self.code, "message": self.message}
        });
        (self.status, Json(body)).into_response()
    }
}
