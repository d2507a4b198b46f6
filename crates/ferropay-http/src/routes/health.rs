//! `GET /healthz`, and the JSON 404 for every route that does not exist and the JSON 405 for a
//! route asked with a method it does not take.

use axum::extract::State;
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use ferropay::Ferropay;

use crate::error::{ApiError, json_response};

/// 200 once the server serves and its database answers.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses(
        (status = 200, description = "Serving, and the database answers", content_type = "text/plain", body = String),
        (status = 503, description = "The database does not answer", content_type = "text/plain", body = String),
    ))]
pub async fn healthz(State(service): State<Ferropay>) -> Response {
    match sqlx_ping(&service).await {
        Ok(()) => (StatusCode::OK, "ok").into_response(),
        Err(error) => {
            tracing::error!(%error, "health check: database unreachable");
            (StatusCode::SERVICE_UNAVAILABLE, "database unreachable").into_response()
        }
    }
}

async fn sqlx_ping(service: &Ferropay) -> Result<(), ferropay::Error> {
    service.store.ping().await
}

pub async fn not_found() -> ApiError {
    ApiError(ferropay::Error::NotFound("route".into()))
}

/// 405, in the contract's error shape (axum's own has no body); axum adds the `Allow` header.
pub async fn method_not_allowed(method: Method, uri: Uri) -> Response {
    let body = serde_json::json!({"error": {
        "type": "invalid_request",
        "code": "method_not_allowed",
        "message": format!("{method} is not allowed on {}", uri.path()),
    }});
    json_response(StatusCode::METHOD_NOT_ALLOWED, body.to_string())
}
