//! API keys for `/v1/*`: a key is an id, a secret `sk_…` and the scopes it may use; only the
//! secret's SHA-256 is stored, so a stolen database holds no usable key.
//!
//! Scopes ([`Scope`]): `payments` creates and reads payments and refunds and reads wallets;
//! `payouts` creates and reads payouts; `operator` runs reconciliation, resolves breaks, manages
//! webhook endpoints and API keys, and reads everything; `read_only` reads payments, refunds,
//! payouts, wallets, events and breaks. Each route names the scopes that let a key in
//! ([`Principal::require`]); a key without one of them is refused with 403 `insufficient_scope`.
//!
//! Every request looks its key up in the database (no cache), so a revoked key is refused at
//! once by every instance.

use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::Row;

use crate::clock::{now_ms, rfc3339_from_ms};
use crate::error::{Error, Result};
use crate::ids::new_id;
use crate::secret::Secret;
use crate::store::Store;

/// What a key may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Create and read payments and refunds; read wallets.
    Payments,
    /// Create and read payouts.
    Payouts,
    /// Reconciliation, breaks, webhook endpoints, API keys; reads everything.
    Operator,
    /// Read payments, refunds, payouts, wallets, events and breaks; change nothing.
    ReadOnly,
}

impl Scope {
    pub const ALL: [Self; 4] = [
        Self::Payments,
        Self::Payouts,
        Self::Operator,
        Self::ReadOnly,
    ];

    /// The scopes of a key made without `--scope`, and of keys made before scopes existed.
    pub const FULL: [Self; 3] = [Self::Payments, Self::Payouts, Self::Operator];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Payments => "payments",
            Self::Payouts => "payouts",
            Self::Operator => "operator",
            Self::ReadOnly => "read_only",
        }
    }

    pub fn parse(text: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|s| s.as_str() == text)
            .ok_or_else(|| {
                Error::invalid(
                    "scopes",
                    format!("unknown scope `{text}` (payments, payouts, operator, read_only)"),
                )
            })
    }
}

/// The key that authenticated a request, and what it may do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    pub key_id: String,
    pub scopes: Vec<Scope>,
}

impl Principal {
    /// `Ok` when the key has any of `allowed`; otherwise `Error::InsufficientScope` naming the
    /// first of them (the scope a key made for this route would have).
    pub fn require(&self, allowed: &[Scope]) -> Result<()> {
        if allowed.iter().any(|scope| self.scopes.contains(scope)) {
            return Ok(());
        }
        Err(Error::InsufficientScope {
            required: allowed.iter().map(|s| s.as_str()).collect(),
        })
    }
}

/// A key just created: the only moment its secret is known.
#[derive(Serialize)]
pub struct CreatedKey {
    pub id: String,
    pub name: String,
    pub scopes: Vec<Scope>,
    pub secret: String,
}

/// A key as listed: never its secret.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct KeyView {
    pub id: String,
    pub name: String,
    pub scopes: Vec<Scope>,
    pub created_at: String,
    /// When it was revoked; `null` while it works.
    pub revoked_at: Option<String>,
}

/// A full-access key (every scope that writes), as before scopes existed.
pub async fn create(store: &Store, name: &str) -> Result<CreatedKey> {
    create_scoped(store, name, &Scope::FULL).await
}

/// A key with exactly `scopes` (at least one).
pub async fn create_scoped(store: &Store, name: &str, scopes: &[Scope]) -> Result<CreatedKey> {
    let scopes = normalized(scopes)?;
    let id = new_id("key");
    let secret = format!("sk_{}", hex::encode(rand::random::<[u8; 24]>()));
    sqlx::query(
        "INSERT INTO api_keys (id, name, secret_sha256, created_at_ms, scopes) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(&id)
    .bind(name)
    .bind(digest(&secret))
    .bind(now_ms())
    .bind(stored(&scopes))
    .execute(store.pool())
    .await?;
    Ok(CreatedKey {
        id,
        name: name.to_owned(),
        scopes,
        secret,
    })
}

/// The live key whose secret this is, or `Error::Unauthorized`.
pub async fn authenticate(store: &Store, secret: &Secret) -> Result<Principal> {
    if !secret.expose().starts_with("sk_") {
        return Err(Error::Unauthorized);
    }
    let row = sqlx::query(
        "SELECT id, scopes FROM api_keys WHERE secret_sha256 = $1 AND revoked_at_ms IS NULL",
    )
    .bind(digest(secret.expose()))
    .fetch_optional(store.pool())
    .await?
    .ok_or(Error::Unauthorized)?;
    Ok(Principal {
        key_id: row.try_get("id")?,
        scopes: parse_stored(&row.try_get::<String, _>("scopes")?),
    })
}

/// Every key, oldest first, revoked ones too (at most 10,000).
pub async fn list(store: &Store) -> Result<Vec<KeyView>> {
    let rows = sqlx::query(
        "SELECT id, name, scopes, created_at_ms, revoked_at_ms FROM api_keys \
         ORDER BY created_at_ms, id LIMIT 10000",
    )
    .fetch_all(store.pool())
    .await?;
    rows.iter().map(view_of).collect()
}

/// Revokes a key: from the next request on, every instance refuses it (401). Revoking a
/// revoked key changes nothing and answers it as it is; an unknown id is `NotFound`.
pub async fn revoke(store: &Store, key_id: &str) -> Result<KeyView> {
    sqlx::query("UPDATE api_keys SET revoked_at_ms = $1 WHERE id = $2 AND revoked_at_ms IS NULL")
        .bind(now_ms())
        .bind(key_id)
        .execute(store.pool())
        .await?;
    let row = sqlx::query(
        "SELECT id, name, scopes, created_at_ms, revoked_at_ms FROM api_keys WHERE id = $1",
    )
    .bind(key_id)
    .fetch_optional(store.pool())
    .await?
    .ok_or_else(|| Error::NotFound(format!("API key `{key_id}`")))?;
    view_of(&row)
}

fn view_of(row: &sqlx::any::AnyRow) -> Result<KeyView> {
    Ok(KeyView {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        scopes: parse_stored(&row.try_get::<String, _>("scopes")?),
        created_at: rfc3339_from_ms(row.try_get("created_at_ms")?),
        revoked_at: row
            .try_get::<Option<i64>, _>("revoked_at_ms")?
            .map(rfc3339_from_ms),
    })
}

/// Sorted, without duplicates, at least one.
fn normalized(scopes: &[Scope]) -> Result<Vec<Scope>> {
    let mut scopes = scopes.to_vec();
    scopes.sort();
    scopes.dedup();
    if scopes.is_empty() {
        return Err(Error::invalid("scopes", "a key needs at least one scope"));
    }
    Ok(scopes)
}

fn stored(scopes: &[Scope]) -> String {
    scopes
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Names this version does not know (written by a newer one) grant nothing.
fn parse_stored(text: &str) -> Vec<Scope> {
    text.split_whitespace()
        .filter_map(|name| Scope::parse(name).ok())
        .collect()
}

fn digest(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_passes_with_any_allowed_scope_and_is_told_the_first_otherwise() {
        let key = Principal {
            key_id: "key_1".into(),
            scopes: vec![Scope::ReadOnly],
        };
        assert!(key.require(&[Scope::Payments, Scope::ReadOnly]).is_ok());
        let refused = key.require(&[Scope::Payments]).unwrap_err();
        assert_eq!(refused.status(), 403);
        assert_eq!(refused.to_body()["error"]["code"], "insufficient_scope");
        assert_eq!(refused.to_body()["error"]["required_scope"], "payments");
    }

    #[test]
    fn stored_scopes_round_trip_and_unknown_names_grant_nothing() {
        assert_eq!(
            parse_stored(&stored(&Scope::FULL)),
            vec![Scope::Payments, Scope::Payouts, Scope::Operator]
        );
        assert_eq!(parse_stored("read_only admin"), vec![Scope::ReadOnly]);
        assert!(normalized(&[]).is_err());
        assert!(Scope::parse("admin").is_err());
    }
}
