//! API keys for operators: `GET /v1/api_keys` lists them (never a secret) and
//! `POST /v1/api_keys/{id}/revoke` revokes one at once on every instance. Keys are made with
//! `ferropay api-key create`, where the secret can be shown once to whoever runs it.

use axum::Json;
use axum::extract::State;
use ferropay::Ferropay;
use ferropay::api_keys::{self, KeyView};

use crate::error::ApiError;
use crate::extract::{ApiKey, PathId};
use crate::openapi::schemas;
use crate::routes::List;

/// Every API key, oldest first, revoked ones too; never a secret.
#[utoipa::path(get, path = "/v1/api_keys", tag = "api_keys",
    responses((status = 200, description = "The keys", body = schemas::ApiKeyList)))]
pub async fn list(
    State(service): State<Ferropay>,
    ApiKey(_): ApiKey,
) -> Result<Json<List<KeyView>>, ApiError> {
    Ok(Json(List::complete(api_keys::list(&service.store).await?)))
}

/// Revoke a key: every instance refuses it (401) from its next request on. A key cannot revoke
/// itself here (409 `own_key`), so an operator does not lock themselves out by mistake; use
/// another operator key or `ferropay api-key revoke`.
#[utoipa::path(post, path = "/v1/api_keys/{id}/revoke", tag = "api_keys",
    params(("id" = String, Path, description = "The key's id (`key_…`)")),
    responses(
        (status = 200, description = "The revoked key", body = schemas::ApiKey),
        (status = 409, description = "The key named is the one calling (`own_key`)", body = schemas::ErrorBody),
    ))]
pub async fn revoke(
    State(service): State<Ferropay>,
    ApiKey(caller_id): ApiKey,
    PathId(key_id): PathId,
) -> Result<Json<KeyView>, ApiError> {
    if key_id == caller_id {
        return Err(ApiError(ferropay::Error::conflict(
            "own_key",
            "a key cannot revoke itself over the API: use another operator key or `ferropay api-key revoke`",
        )));
    }
    Ok(Json(api_keys::revoke(&service.store, &key_id).await?))
}
