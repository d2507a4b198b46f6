//! Console sessions: an operator signs in once with an API key holding the `operator` (or, to
//! look without acting, `read_only`) scope, and then holds a random session token in a cookie.
//! Only the token's SHA-256 is stored, with the key it was opened with; each request looks the
//! session up joined to its key, so revoking the key or the session's expiry ends it at once on
//! every instance. The key itself is never stored, logged or put in a URL.
//!
//! CSRF: every form that changes anything carries a token derived from the session token
//! (HMAC-SHA256 of a fixed label keyed by it), checked in constant time; a page of another site
//! cannot know it, and the cookie is `SameSite=Strict` besides.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use sqlx::Row;

use crate::api_keys::{self, Principal, Scope};
use crate::clock::now_ms;
use crate::error::{Error, Result};
use crate::secret::Secret;
use crate::store::Store;

/// How long a session lasts from sign-in, in ms: a working day.
pub const SESSION_TTL_MS: i64 = 8 * 3_600_000;

/// The scopes that may open a console session.
pub const CONSOLE_SCOPES: &[Scope] = &[Scope::Operator, Scope::ReadOnly];

const CSRF_LABEL: &[u8] = b"ferropay console csrf v1";

/// A session just opened: the token goes into the cookie and nowhere else.
pub struct Opened {
    pub token: Secret,
    pub expires_at_ms: i64,
}

/// The operator behind a live session.
#[derive(Clone, Debug)]
pub struct Operator {
    pub principal: Principal,
    pub expires_at_ms: i64,
}

impl Operator {
    /// Whether this session may act (resolve, replay, redeliver), not only look.
    pub fn may_act(&self) -> bool {
        self.principal.scopes.contains(&Scope::Operator)
    }
}

/// Signs in with an API key: `Unauthorized` for an unknown or revoked key, `InsufficientScope`
/// for a key with neither `operator` nor `read_only`. Expired sessions are swept on the way.
pub async fn open(store: &Store, key: &Secret) -> Result<Opened> {
    let principal = api_keys::authenticate(store, key).await?;
    principal.require(CONSOLE_SCOPES)?;
    let now = now_ms();
    sqlx::query("DELETE FROM console_sessions WHERE expires_at_ms < $1")
        .bind(now)
        .execute(store.pool())
        .await?;
    let token = Secret::new(format!("cs_{}", hex::encode(rand::random::<[u8; 32]>())));
    let expires_at_ms = now + SESSION_TTL_MS;
    sqlx::query(
        "INSERT INTO console_sessions (token_sha256, api_key_id, created_at_ms, expires_at_ms) \
         VALUES ($1, $2, $3, $4)",
    )
    .bind(digest(token.expose()))
    .bind(&principal.key_id)
    .bind(now)
    .bind(expires_at_ms)
    .execute(store.pool())
    .await?;
    tracing::info!(key_id = %principal.key_id, "console session opened");
    Ok(Opened {
        token,
        expires_at_ms,
    })
}

/// The operator of a live session, or `Unauthorized` (no such session, expired, or its key
/// revoked).
pub async fn find(store: &Store, token: &Secret) -> Result<Operator> {
    if !token.expose().starts_with("cs_") {
        return Err(Error::Unauthorized);
    }
    let row = sqlx::query(
        "SELECT s.api_key_id, s.expires_at_ms, k.scopes FROM console_sessions s \
         JOIN api_keys k ON k.id = s.api_key_id \
         WHERE s.token_sha256 = $1 AND s.expires_at_ms > $2 AND k.revoked_at_ms IS NULL",
    )
    .bind(digest(token.expose()))
    .bind(now_ms())
    .fetch_optional(store.pool())
    .await?
    .ok_or(Error::Unauthorized)?;
    let scopes: String = row.try_get("scopes")?;
    let principal = Principal {
        key_id: row.try_get("api_key_id")?,
        scopes: scopes
            .split_whitespace()
            .filter_map(|name| Scope::parse(name).ok())
            .collect(),
    };
    principal.require(CONSOLE_SCOPES)?;
    Ok(Operator {
        principal,
        expires_at_ms: row.try_get("expires_at_ms")?,
    })
}

/// Signs out: the session stops working everywhere.
pub async fn close(store: &Store, token: &Secret) -> Result<()> {
    sqlx::query("DELETE FROM console_sessions WHERE token_sha256 = $1")
        .bind(digest(token.expose()))
        .execute(store.pool())
        .await?;
    Ok(())
}

/// A random value for a form's double-submit token (the sign-in form's, before any session).
pub fn nonce() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

/// The CSRF token of a session, put in each of its forms.
pub fn csrf_token(session: &Secret) -> String {
    hex::encode(csrf_mac(session).finalize().into_bytes())
}

/// Whether `submitted` is the session's CSRF token (compared in constant time).
pub fn csrf_ok(session: &Secret, submitted: &str) -> bool {
    hex::decode(submitted).is_ok_and(|bytes| csrf_mac(session).verify_slice(&bytes).is_ok())
}

fn csrf_mac(session: &Secret) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(session.expose().as_bytes())
        .expect("HMAC takes a key of any length");
    mac.update(CSRF_LABEL);
    mac
}

fn digest(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csrf_tokens_belong_to_their_session() {
        let a = Secret::new("cs_a");
        let b = Secret::new("cs_b");
        let token = csrf_token(&a);
        assert!(csrf_ok(&a, &token));
        assert!(!csrf_ok(&b, &token));
        assert!(!csrf_ok(&a, ""));
        assert!(!csrf_ok(&a, "zz"));
        assert!(!csrf_ok(&a, &token[..10]));
    }
}
