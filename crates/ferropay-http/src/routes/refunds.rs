//! `POST /v1/payments/{id}/refunds` and `GET /v1/payments/{id}/refunds`.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use ferropay::Ferropay;
use ferropay::refund::RefundInput;
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::extract::{ApiKey, JsonBody, idempotency_key};
use crate::routes::payments::outcome_response;

pub async fn create(
    State(service): State<Ferropay>,
    ApiKey(api_key_id): ApiKey,
    Path(payment_id): Path<String>,
    headers: HeaderMap,
    body: JsonBody<RefundInput>,
) -> Result<Response, ApiError> {
    let outcome = service
        .create_refund(
            &api_key_id,
            idempotency_key(&headers)?,
            &payment_id,
            &body.value,
            body.typed,
        )
        .await?;
    Ok(outcome_response(outcome))
}

pub async fn list(
    State(service): State<Ferropay>,
    ApiKey(_): ApiKey,
    Path(payment_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let refunds = service.refunds(&payment_id).await?;
    Ok(Json(json!({ "data": refunds })))
}
