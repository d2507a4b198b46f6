//! `GET /healthz`, and the JSON 404 for every route that does not exist.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use ferropay::Ferropay;

use crate::error::ApiError;

/// 200 once the server serves and its database answers.
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
