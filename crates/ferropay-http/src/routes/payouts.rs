//! `POST /v1/sellers/{seller_id}/payouts`, `GET /v1/sellers/{seller_id}/payouts` and
//! `GET /v1/payouts` (every payout, filtered and paged).

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use ferropay::Ferropay;
use ferropay::payout::PayoutInput;
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::extract::{ApiKey, JsonBody, PathId, QueryParams, idempotency_key};
use crate::openapi::schemas;
use crate::routes::List;
use crate::routes::lists::PayoutListQuery;
use crate::routes::payments::outcome_response;

/// Pay a seller out of their wallet (all that is available when `amount` is absent); the
/// payout provider confirms it later (`pending` → `in_transit` → `paid` | `failed`).
#[utoipa::path(post, path = "/v1/sellers/{seller_id}/payouts", tag = "payouts",
    params(("seller_id" = String, Path, description = "The seller's id"), ("Idempotency-Key" = String, Header, min_length = 1, max_length = 255, pattern = "^[!-~]([ -~]*[!-~])?$", description = "1–255 visible characters, required: the same key and body replay the first answer")),
    request_body = schemas::CreatePayout,
    responses(
        (status = 201, description = "The payout (or the first answer, replayed)", body = schemas::Payout,
            headers(("Idempotent-Replayed" = String, description = "`true` when this is the saved answer of an earlier request with the same key"))),
        (status = 409, description = "It would overdraw the wallet (`insufficient_balance`), or the key is in use", body = schemas::ErrorBody),
        (status = 413, description = "The body is larger than 64 KiB", body = schemas::ErrorBody),
        (status = 422, description = "The key was used with another body", body = schemas::ErrorBody),
    ))]
pub async fn create(
    State(service): State<Ferropay>,
    ApiKey(api_key_id): ApiKey,
    PathId(seller_id): PathId,
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

/// A seller's payouts, newest first.
#[utoipa::path(get, path = "/v1/sellers/{seller_id}/payouts", tag = "payouts",
    params(("seller_id" = String, Path, description = "The seller's id")),
    responses((status = 200, description = "Every payout of the seller", body = schemas::PayoutsOfSeller)))]
pub async fn list(
    State(service): State<Ferropay>,
    ApiKey(_): ApiKey,
    PathId(seller_id): PathId,
) -> Result<Json<Value>, ApiError> {
    let payouts = service.payouts(&seller_id).await?;
    Ok(Json(json!({ "seller_id": seller_id, "data": payouts })))
}

/// Payouts to every seller, newest first, filtered.
#[utoipa::path(get, path = "/v1/payouts", tag = "payouts",
    params(PayoutListQuery),
    responses((status = 200, description = "A page of payouts", body = schemas::PayoutList)))]
pub async fn list_all(
    State(service): State<Ferropay>,
    ApiKey(_): ApiKey,
    QueryParams(query): QueryParams<PayoutListQuery>,
) -> Result<axum::Json<List<ferropay::payout::PayoutView>>, ApiError> {
    let (filter, page) = query.parse()?;
    let listed = ferropay::lists::payouts(&service.store, &filter, &page).await?;
    Ok(axum::Json(List {
        data: listed.data,
        has_more: listed.has_more,
    }))
}
