//! Idempotency keys of our API (IETF draft semantics, with Stripe-like recovery points): the
//! first request with a key claims it; the same key and body replay the saved answer; the same
//! key while the first is still running is refused (409); another body is refused (422). A
//! request that failed for a passing reason releases the key without an answer, and a retry
//! resumes from the recovery point it had reached.

use sha2::{Digest, Sha256};
use sqlx::Row;

use crate::error::{Error, Result};
use crate::store::{Store, Tx};

/// How long keys are kept at least.
pub const RETENTION_MS: i64 = 24 * 60 * 60 * 1000;

/// Where a keyed request has got to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecoveryPoint {
    /// Nothing durable has happened yet.
    Started,
    /// The payment and its orders exist; the PSP session may or may not.
    PaymentCreated,
    /// The answer is saved.
    Finished,
}

impl RecoveryPoint {
    fn as_str(self) -> &'static str {
        match self {
            Self::Started => "started",
            Self::PaymentCreated => "payment_created",
            Self::Finished => "finished",
        }
    }

    fn parse(text: &str) -> Result<Self> {
        match text {
            "started" => Ok(Self::Started),
            "payment_created" => Ok(Self::PaymentCreated),
            "finished" => Ok(Self::Finished),
            other => Err(Error::Internal(format!("unknown recovery point `{other}`"))),
        }
    }
}

/// The key and who sent it.
#[derive(Clone, Debug)]
pub struct KeyScope {
    pub api_key_id: String,
    pub key: String,
}

/// The answer to a keyed create request: fresh, or replayed from the idempotency key.
#[derive(Clone, Debug)]
pub struct CreateOutcome {
    pub status: u16,
    pub body: String,
    pub replayed: bool,
}

/// What the caller should do with a keyed request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Claim {
    /// Go on from this point; `payment_id` is set once the payment exists.
    Proceed {
        point: RecoveryPoint,
        payment_id: Option<String>,
    },
    /// Answer with the saved response.
    Replay { status: u16, body: String },
}

/// Validates the header's value: 1–255 visible characters.
pub fn parse_key(value: Option<&str>) -> Result<String> {
    let value = value.ok_or_else(|| {
        Error::invalid("Idempotency-Key", "the Idempotency-Key header is required")
    })?;
    if value.is_empty() || value.chars().count() > 255 || value.chars().any(|c| c.is_control()) {
        return Err(Error::invalid(
            "Idempotency-Key",
            "must be 1 to 255 characters, without control characters",
        ));
    }
    Ok(value.to_owned())
}

/// A fingerprint of the request: SHA-256 of the body re-serialized canonically (keys sorted),
/// so whitespace and key order do not make two equal bodies differ.
pub fn fingerprint(canonical_body: &serde_json::Value) -> String {
    hex::encode(Sha256::digest(canonical_body.to_string().as_bytes()))
}

/// Claims `scope` for a request with `fingerprint`, or says why not. A claim held for
/// `lock_timeout_ms` or longer belongs to a request that died, and is taken over: ferropay
/// passes its lease (`JobsConfig::lease_ms`), which also bounds a live request's work.
pub async fn claim(
    store: &Store,
    scope: &KeyScope,
    fingerprint: &str,
    now_ms: i64,
    lock_timeout_ms: i64,
) -> Result<Claim> {
    // A key released by the request that held it (refused input, `checkout_in_flight`) between
    // our INSERT finding it and our SELECT reading it is free again: claim it afresh.
    for _ in 0..3 {
        if let Some(claim) = claim_once(store, scope, fingerprint, now_ms, lock_timeout_ms).await? {
            return Ok(claim);
        }
    }
    Err(Error::conflict(
        "idempotency_key_in_use",
        "a request with this Idempotency-Key is still being processed; retry later",
    ))
}

/// One try of [`claim`]; `None` when the key vanished between finding and reading it.
async fn claim_once(
    store: &Store,
    scope: &KeyScope,
    fingerprint: &str,
    now_ms: i64,
    lock_timeout_ms: i64,
) -> Result<Option<Claim>> {
    let mut tx = store.begin_write().await?;
    let inserted = sqlx::query(
        "INSERT INTO idempotency_keys \
         (api_key_id, idempotency_key, request_sha256, recovery_point, locked_at_ms, created_at_ms) \
         VALUES ($1, $2, $3, 'started', $4, $4) \
         ON CONFLICT (api_key_id, idempotency_key) DO NOTHING",
    )
    .bind(&scope.api_key_id)
    .bind(&scope.key)
    .bind(fingerprint)
    .bind(now_ms)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if inserted == 1 {
        tx.commit().await?;
        return Ok(Some(Claim::Proceed {
            point: RecoveryPoint::Started,
            payment_id: None,
        }));
    }

    let row = sqlx::query(store.pick(
        "SELECT request_sha256, recovery_point, locked_at_ms, payment_id, response_status, \
         response_body FROM idempotency_keys WHERE api_key_id = $1 AND idempotency_key = $2",
        "SELECT request_sha256, recovery_point, locked_at_ms, payment_id, response_status, \
         response_body FROM idempotency_keys WHERE api_key_id = $1 AND idempotency_key = $2 \
         FOR UPDATE",
    ))
    .bind(&scope.api_key_id)
    .bind(&scope.key)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let saved_fingerprint: String = row.try_get("request_sha256")?;
    if saved_fingerprint != fingerprint {
        return Err(Error::IdempotencyKeyReused);
    }
    let response_status: Option<i64> = row.try_get("response_status")?;
    let response_body: Option<String> = row.try_get("response_body")?;
    if let (Some(status), Some(body)) = (response_status, response_body) {
        let status = u16::try_from(status)
            .map_err(|_| Error::Internal(format!("saved status {status} is not HTTP")))?;
        // The answer may have been saved by a money-engine batch that SQLite has not synced
        // yet: it leaves only once it is on disk, as it would for the request that saved it
        // (store::durable).
        drop(tx);
        store
            .make_durable()
            .await
            .map_err(|e| Error::Internal(format!("syncing the database: {e}")))?;
        return Ok(Some(Claim::Replay { status, body }));
    }
    let locked_at_ms: Option<i64> = row.try_get("locked_at_ms")?;
    if locked_at_ms.is_some_and(|at| now_ms - at < lock_timeout_ms) {
        return Err(Error::conflict(
            "idempotency_key_in_use",
            "a request with this Idempotency-Key is still being processed; retry later",
        ));
    }
    sqlx::query(
        "UPDATE idempotency_keys SET locked_at_ms = $1 \
         WHERE api_key_id = $2 AND idempotency_key = $3",
    )
    .bind(now_ms)
    .bind(&scope.api_key_id)
    .bind(&scope.key)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    let point: String = row.try_get("recovery_point")?;
    Ok(Some(Claim::Proceed {
        point: RecoveryPoint::parse(&point)?,
        payment_id: row.try_get("payment_id")?,
    }))
}

/// Records, inside the caller's transaction, that the payment now exists.
pub async fn mark_payment_created(tx: &mut Tx, scope: &KeyScope, payment_id: &str) -> Result<()> {
    sqlx::query(
        "UPDATE idempotency_keys SET recovery_point = $1, payment_id = $2 \
         WHERE api_key_id = $3 AND idempotency_key = $4",
    )
    .bind(RecoveryPoint::PaymentCreated.as_str())
    .bind(payment_id)
    .bind(&scope.api_key_id)
    .bind(&scope.key)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Saves the final answer inside the caller's transaction and releases the key. The key must
/// still be unanswered: when a request that was taken for dead (its claim older than the lease)
/// and the retry that took its key over both get this far, the second to finish fails here, so
/// its transaction — the refund, the payout — rolls back and only one happens.
pub async fn finish(tx: &mut Tx, scope: &KeyScope, status: u16, body: &str) -> Result<()> {
    let saved = sqlx::query(
        "UPDATE idempotency_keys SET recovery_point = $1, response_status = $2, \
         response_body = $3, locked_at_ms = NULL \
         WHERE api_key_id = $4 AND idempotency_key = $5 AND response_status IS NULL",
    )
    .bind(RecoveryPoint::Finished.as_str())
    .bind(i64::from(status))
    .bind(body)
    .bind(&scope.api_key_id)
    .bind(&scope.key)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if saved != 1 {
        return Err(Error::conflict(
            "idempotency_key_in_use",
            "another request with this Idempotency-Key has finished; retry to get its answer",
        ));
    }
    Ok(())
}

/// Releases the key without an answer, so a retry may resume from its recovery point.
pub async fn release(store: &Store, scope: &KeyScope) -> Result<()> {
    sqlx::query(
        "UPDATE idempotency_keys SET locked_at_ms = NULL \
         WHERE api_key_id = $1 AND idempotency_key = $2",
    )
    .bind(&scope.api_key_id)
    .bind(&scope.key)
    .execute(store.pool())
    .await?;
    Ok(())
}

/// Forgets the key (the request changed nothing and its answer should not be kept). A key that
/// holds an answer — another request's, which finished — is never forgotten.
pub async fn forget(store: &Store, scope: &KeyScope) -> Result<()> {
    sqlx::query(
        "DELETE FROM idempotency_keys WHERE api_key_id = $1 AND idempotency_key = $2 \
         AND response_status IS NULL",
    )
    .bind(&scope.api_key_id)
    .bind(&scope.key)
    .execute(store.pool())
    .await?;
    Ok(())
}
