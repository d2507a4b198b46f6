//! `GET /v1/sellers/{seller_id}/wallet`: what the platform owes a seller, per currency.

use axum::Json;
use axum::extract::State;
use ferropay::Ferropay;
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::extract::{ApiKey, PathId};
use crate::openapi::schemas;

/// What the platform owes a seller, per currency, and what of it can be paid out now.
#[utoipa::path(get, path = "/v1/sellers/{seller_id}/wallet", tag = "wallets",
    params(("seller_id" = String, Path, description = "The seller's id")),
    responses((status = 200, description = "The wallet (no balances for a seller with no sales)", body = schemas::Wallet)))]
pub async fn show(
    State(service): State<Ferropay>,
    ApiKey(_): ApiKey,
    PathId(seller_id): PathId,
) -> Result<Json<Value>, ApiError> {
    let balances = service.wallet(&seller_id).await?;
    Ok(Json(
        json!({ "seller_id": seller_id, "balances": balances }),
    ))
}
