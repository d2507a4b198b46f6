//! API keys for operators: `GET /v1/api_keys` lists them (never a secret) and
//! `POST /v1/api_keys/{id}/revoke` revokes one at once on every instance. Keys are made with
//! `ferropay api-key create`, where the secret can be shown once to whoever runs it.

use axum::Json;
use axum::extract::{Path, State};
use ferropay::Ferropay;
use ferropay::api_keys::{self, KeyView};

use crate::error::ApiError;
use crate::extract::ApiKey;
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

/// Revoke a key: every instance refuses it (401) from its next request on.
#[utoipa::path(post, path = "/v1/api_keys/{id}/revoke", tag = "api_keys",
    params(("id" = String, Path, description = "The key's id (`key_…`)")),
    responses((status = 200, description = "The revoked key", body = schemas::ApiKey)))]
pub async fn revoke(
    State(service): State<Ferropay>,
    ApiKey(_): ApiKey,
    Path(key_id): Path<String>,
) -> Result<Json<KeyView>, ApiError> {
    Ok(Json(api_keys::revoke(&service.store, &key_id).await?))
}
