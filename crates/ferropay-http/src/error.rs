//! Errors as the contract answers them: `{"error": {"type", "code", "message"}}` with a fitting
//! status, `Retry-After` on 503, and internal details only in the log.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// A ferropay error on its way out as HTTP.
#[derive(Debug)]
pub struct ApiError(pub ferropay::Error);

impl From<ferropay::Error> for ApiError {
    fn from(error: ferropay::Error) -> Self {
        Self(error)
    }
}

impl ApiError {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self(ferropay::Error::invalid(field, message))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.0.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if status.is_server_error() {
            tracing::error!(error = %self.0, "request failed");
        }
        let mut response = json_response(status, self.0.to_body().to_string());
        if let Some(retry_after_s) = self.0.retry_after_s() {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_s));
        }
        response
    }
}

/// 413 in the contract's shape.
pub fn payload_too_large() -> Response {
    let body = serde_json::json!({"error": {
        "type": "invalid_request",
        "code": "payload_too_large",
        "message": format!("the request body is larger than {} bytes", crate::MAX_BODY_BYTES),
    }});
    json_response(StatusCode::PAYLOAD_TOO_LARGE, body.to_string())
}

/// A response whose body is already-serialized JSON.
pub fn json_response(status: StatusCode, body: String) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}
