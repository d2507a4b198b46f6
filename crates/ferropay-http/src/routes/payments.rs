//! `POST /v1/payments` and `GET /v1/payments/{id}`.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use ferropay::Ferropay;
use ferropay::payin::create::CreateOutcome;
use ferropay::payin::request::CreatePaymentInput;

use crate::error::{ApiError, json_response};
use crate::extract::{ApiKey, JsonBody, idempotency_key};

pub async fn create(
    State(service): State<Ferropay>,
    ApiKey(api_key_id): ApiKey,
    headers: HeaderMap,
    body: JsonBody<CreatePaymentInput>,
) -> Result<Response, ApiError> {
    let outcome = service
        .create_payment(
            &api_key_id,
            idempotency_key(&headers)?,
            &body.value,
            body.typed,
        )
        .await?;
    Ok(outcome_response(outcome))
}

/// The answer of a keyed create, fresh or replayed (`Idempotent-Replayed: true`).
pub fn outcome_response(outcome: CreateOutcome) -> Response {
    let status = StatusCode::from_u16(outcome.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = json_response(status, outcome.body);
    if outcome.replayed {
        response
            .headers_mut()
            .insert("Idempotent-Replayed", HeaderValue::from_static("true"));
    }
    response
}

pub async fn show(
    State(service): State<Ferropay>,
    ApiKey(_): ApiKey,
    Path(payment_id): Path<String>,
) -> Result<Response, ApiError> {
    let view = service.payment(&payment_id).await?;
    let body = serde_json::to_string(&view)
        .map_err(|e| ApiError(ferropay::Error::Internal(e.to_string())))?;
    Ok(json_response(StatusCode::OK, body))
}
