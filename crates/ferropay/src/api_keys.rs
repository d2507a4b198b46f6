//! API keys for `/v1/*`: a key is an id and a secret `sk_…`; only the secret's SHA-256 is
//! stored, so a stolen database holds no usable key.

use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::Row;

use crate::clock::now_ms;
use crate::error::{Error, Result};
use crate::ids::new_id;
use crate::secret::Secret;
use crate::store::Store;

/// A key just created: the only moment its secret is known.
#[derive(Serialize)]
pub struct CreatedKey {
    pub id: String,
    pub name: String,
    pub secret: String,
}

pub async fn create(store: &Store, name: &str) -> Result<CreatedKey> {
    let id = new_id("key");
    let secret = format!("sk_{}", hex::encode(rand::random::<[u8; 24]>()));
    sqlx::query(
        "INSERT INTO api_keys (id, name, secret_sha256, created_at_ms) VALUES ($1, $2, $3, $4)",
    )
    .bind(&id)
    .bind(name)
    .bind(digest(&secret))
    .bind(now_ms())
    .execute(store.pool())
    .await?;
    Ok(CreatedKey {
        id,
        name: name.to_owned(),
        secret,
    })
}

/// The id of the live key whose secret this is, or `Error::Unauthorized`.
pub async fn authenticate(store: &Store, secret: &Secret) -> Result<String> {
    if !secret.expose().starts_with("sk_") {
        return Err(Error::Unauthorized);
    }
    let row =
        sqlx::query("SELECT id FROM api_keys WHERE secret_sha256 = $1 AND revoked_at_ms IS NULL")
            .bind(digest(secret.expose()))
            .fetch_optional(store.pool())
            .await?
            .ok_or(Error::Unauthorized)?;
    Ok(row.try_get("id")?)
}

fn digest(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}
