//! `POST /v1/payments`, `GET /v1/payments` (filtered, paged) and `GET /v1/payments/{id}`.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use ferropay::Ferropay;
use ferropay::payin::create::CreateOutcome;
use ferropay::payin::request::CreatePaymentInput;

use crate::error::{ApiError, json_response};
use crate::extract::{ApiKey, JsonBody, PathId, QueryParams, idempotency_key};
use crate::openapi::schemas;
use crate::routes::List;
use crate::routes::lists::PaymentListQuery;

/// Create a payment for a checkout and register it with the PSP; the answer's `redirect_url`
/// is the hosted payment page to send the buyer to.
#[utoipa::path(post, path = "/v1/payments", tag = "payments",
    params(("Idempotency-Key" = String, Header, min_length = 1, max_length = 255, pattern = "^[!-~]([ -~]*[!-~])?$", description = "1–255 visible characters, required: the same key and body replay the first answer")),
    request_body = schemas::CreatePayment,
    responses(
        (status = 201, description = "The payment (or the first answer, replayed)", body = schemas::Payment,
            headers(("Idempotent-Replayed" = String, description = "`true` when this is the saved answer of an earlier request with the same key"))),
        (status = 409, description = "The key is in use by a request in flight, or the checkout has a payment in flight or paid", body = schemas::ErrorBody),
        (status = 413, description = "The body is larger than 64 KiB", body = schemas::ErrorBody),
        (status = 422, description = "The key was used with another body", body = schemas::ErrorBody),
        (status = 502, description = "The PSP refused the payment for good", body = schemas::ErrorBody),
        (status = 503, description = "The PSP is unavailable: retry with the same key", body = schemas::ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
    ))]
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

/// Payments, newest first, filtered.
#[utoipa::path(get, path = "/v1/payments", tag = "payments",
    params(PaymentListQuery),
    responses((status = 200, description = "A page of payments", body = schemas::PaymentList)))]
pub async fn list(
    State(service): State<Ferropay>,
    ApiKey(_): ApiKey,
    QueryParams(query): QueryParams<PaymentListQuery>,
) -> Result<Json<List<ferropay::payin::model::PaymentView>>, ApiError> {
    let (filter, page) = query.parse()?;
    let listed = ferropay::lists::payments(&service.store, &filter, &page).await?;
    Ok(Json(List {
        data: listed.data,
        has_more: listed.has_more,
    }))
}

/// One payment with its orders and their current statuses.
#[utoipa::path(get, path = "/v1/payments/{id}", tag = "payments",
    params(("id" = String, Path, description = "The payment's id (`pay_…`)")),
    responses((status = 200, description = "The payment", body = schemas::Payment)))]
pub async fn show(
    State(service): State<Ferropay>,
    ApiKey(_): ApiKey,
    PathId(payment_id): PathId,
) -> Result<Response, ApiError> {
    let view = service.payment(&payment_id).await?;
    let body = serde_json::to_string(&view)
        .map_err(|e| ApiError(ferropay::Error::Internal(e.to_string())))?;
    Ok(json_response(StatusCode::OK, body))
}
