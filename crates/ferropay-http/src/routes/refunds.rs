//! `POST /v1/payments/{id}/refunds`, `GET /v1/payments/{id}/refunds` and `GET /v1/refunds`
//! (every refund, filtered and paged).

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use ferropay::Ferropay;
use ferropay::refund::RefundInput;
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::extract::{ApiKey, JsonBody, PathId, QueryParams, idempotency_key};
use crate::openapi::schemas;
use crate::routes::List;
use crate::routes::lists::RefundListQuery;
use crate::routes::payments::outcome_response;

/// Refund an order of a paid payment, in full or in part; the PSP confirms it later
/// (`pending` → `succeeded` | `failed`).
#[utoipa::path(post, path = "/v1/payments/{id}/refunds", tag = "refunds",
    params(("id" = String, Path, description = "The payment's id"), ("Idempotency-Key" = String, Header, min_length = 1, max_length = 255, pattern = "^[!-~]([ -~]*[!-~])?$", description = "1–255 visible characters, required: the same key and body replay the first answer")),
    request_body = schemas::CreateRefund,
    responses(
        (status = 201, description = "The refund (or the first answer, replayed)", body = schemas::Refund,
            headers(("Idempotent-Replayed" = String, description = "`true` when this is the saved answer of an earlier request with the same key"))),
        (status = 409, description = "The payment cannot be refunded that much now, or the key is in use", body = schemas::ErrorBody),
        (status = 413, description = "The body is larger than 64 KiB", body = schemas::ErrorBody),
        (status = 422, description = "The key was used with another body", body = schemas::ErrorBody),
    ))]
pub async fn create(
    State(service): State<Ferropay>,
    ApiKey(api_key_id): ApiKey,
    PathId(payment_id): PathId,
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

/// A payment's refunds, oldest first.
#[utoipa::path(get, path = "/v1/payments/{id}/refunds", tag = "refunds",
    params(("id" = String, Path, description = "The payment's id")),
    responses((status = 200, description = "Every refund of the payment", body = schemas::RefundsOfPayment)))]
pub async fn list(
    State(service): State<Ferropay>,
    ApiKey(_): ApiKey,
    PathId(payment_id): PathId,
) -> Result<Json<Value>, ApiError> {
    let refunds = service.refunds(&payment_id).await?;
    Ok(Json(json!({ "data": refunds })))
}

/// Refunds of every payment, newest first, filtered.
#[utoipa::path(get, path = "/v1/refunds", tag = "refunds",
    params(RefundListQuery),
    responses((status = 200, description = "A page of refunds", body = schemas::RefundList)))]
pub async fn list_all(
    State(service): State<Ferropay>,
    ApiKey(_): ApiKey,
    QueryParams(query): QueryParams<RefundListQuery>,
) -> Result<Json<List<ferropay::refund::RefundView>>, ApiError> {
    let (filter, page) = query.parse()?;
    let listed = ferropay::lists::refunds(&service.store, &filter, &page).await?;
    Ok(Json(List {
        data: listed.data,
        has_more: listed.has_more,
    }))
}
