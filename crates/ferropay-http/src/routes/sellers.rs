//! `PUT /v1/sellers/{seller_id}/psp_accounts/{psp}`: registers where a seller's payouts go at a
//! PSP that pays sellers out (Stripe Connect's connected account `acct_…`, an Adyen balance
//! account `BA…`).

use axum::Json;
use axum::extract::State;
use ferropay::Ferropay;
use ferropay::sellers::{PspAccountInput, PspAccountView};

use crate::error::ApiError;
use crate::extract::{ApiKey, JsonBody, PathIds};
use crate::openapi::schemas;

/// Registers (or replaces) the seller's account at a configured PSP.
#[utoipa::path(put, path = "/v1/sellers/{seller_id}/psp_accounts/{psp}", tag = "payouts",
    params(
        ("seller_id" = String, Path, description = "The seller's id"),
        ("psp" = String, Path, description = "A configured PSP (`stripe`)"),
    ),
    request_body = schemas::SetPspAccount,
    responses(
        (status = 200, description = "The account, as registered", body = schemas::PspAccount),
        (status = 400, description = "Not an account id of that PSP", body = schemas::ErrorBody),
        (status = 404, description = "No PSP of that name is configured", body = schemas::ErrorBody),
        (status = 413, description = "The body is larger than 64 KiB", body = schemas::ErrorBody),
    ))]
pub async fn set_psp_account(
    State(service): State<Ferropay>,
    ApiKey(_): ApiKey,
    PathIds(seller_id, psp): PathIds,
    body: JsonBody<PspAccountInput>,
) -> Result<Json<PspAccountView>, ApiError> {
    Ok(Json(
        service
            .set_seller_psp_account(&seller_id, &psp, &body.typed.account_id)
            .await?,
    ))
}
