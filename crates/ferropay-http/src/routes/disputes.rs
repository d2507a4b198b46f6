//! `GET /v1/disputes` (every dispute, newest first, paged), `GET /v1/payments/{id}/disputes`
//! (one payment's) and `POST /v1/disputes/{id}/evidence` (the merchant's answer, sent to the PSP).

use axum::Json;
use axum::extract::State;
use ferropay::Ferropay;
use ferropay::dispute::evidence::EvidenceInput;
use ferropay::dispute::list::DisputeView;
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::extract::{ApiKey, JsonBody, PathId, QueryParams};
use crate::openapi::schemas;
use crate::routes::List;
use crate::routes::lists::DisputeListQuery;

/// Disputes of every payment, newest first.
#[utoipa::path(get, path = "/v1/disputes", tag = "disputes",
    params(DisputeListQuery),
    responses((status = 200, description = "A page of disputes", body = schemas::DisputeList)))]
pub async fn list_all(
    State(service): State<Ferropay>,
    ApiKey(_): ApiKey,
    QueryParams(query): QueryParams<DisputeListQuery>,
) -> Result<Json<List<DisputeView>>, ApiError> {
    let (status, page) = query.parse()?;
    let listed = ferropay::dispute::list::all(&service.store, status, &page).await?;
    Ok(Json(List {
        data: listed.data,
        has_more: listed.has_more,
    }))
}

/// A payment's disputes, oldest first.
#[utoipa::path(get, path = "/v1/payments/{id}/disputes", tag = "disputes",
    params(("id" = String, Path, description = "The payment's id")),
    responses((status = 200, description = "Every dispute of the payment", body = schemas::DisputesOfPayment)))]
pub async fn list(
    State(service): State<Ferropay>,
    ApiKey(_): ApiKey,
    PathId(payment_id): PathId,
) -> Result<Json<Value>, ApiError> {
    service.payment(&payment_id).await?;
    let disputes = ferropay::dispute::list::of_payment(&service.store, &payment_id).await?;
    Ok(Json(json!({ "data": disputes })))
}

/// Send the merchant's evidence on a dispute that needs a response; the PSP reviews it
/// (`under_review`) and later decides (`won` | `lost`).
#[utoipa::path(post, path = "/v1/disputes/{id}/evidence", tag = "disputes",
    params(("id" = String, Path, description = "The dispute's id")),
    request_body = schemas::DisputeEvidence,
    responses(
        (status = 200, description = "The dispute, under review", body = schemas::Dispute),
        (status = 409, description = "The dispute no longer takes evidence", body = schemas::ErrorBody),
        (status = 413, description = "The body is larger than 64 KiB", body = schemas::ErrorBody),
        (status = 503, description = "The PSP did not answer; send it again", body = schemas::ErrorBody),
    ))]
pub async fn submit_evidence(
    State(service): State<Ferropay>,
    ApiKey(_): ApiKey,
    PathId(dispute_id): PathId,
    body: JsonBody<EvidenceInput>,
) -> Result<Json<DisputeView>, ApiError> {
    let dispute = ferropay::dispute::evidence::submit(&service, &dispute_id, &body.typed).await?;
    Ok(Json(dispute))
}
