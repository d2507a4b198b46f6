//! `POST /v1/sellers/{seller_id}/payouts` and `GET /v1/sellers/{seller_id}/payouts`.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use ferropay::Ferropay;
use ferropay::payout::PayoutInput;
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::extract::{ApiKey, JsonBody, idempotency_key};
use crate::routes::payments::outcome_response;

pub async fn create(
    State(service): State<Ferropay>,
    ApiKey(api_key_id): ApiKey,
    Path(seller_id): Path<String>,
    headers: HeaderMap,
    body: JsonBody<PayoutInput>,
) -> Result<Response, ApiError> {
    let outcome = service
        .create_payout(
            &api_key_id,
            idempotency_key(&headers)?,
            &seller_id,
            &body.value,
            body.typed,
        )
        .await?;
    Ok(outcome_response(outcome))
}

pub async fn list(
    State(service): State<Ferropay>,
    ApiKey(_): ApiKey,
    Path(seller_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let payouts = service.payouts(&seller_id).await?;
    Ok(Json(json!({ "seller_id": seller_id, "data": payouts })))
}
