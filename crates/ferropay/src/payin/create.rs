//! `POST /v1/payments`, pay-in steps 2–4: store the payment event and its orders, register the
//! hosted-page session at the PSP with the payment's id as idempotency key, store the token, and
//! answer with the redirect URL.
//!
//! The request moves through recovery points saved with its idempotency key: a request that dies
//! or meets a passing PSP failure leaves its key released at the last point reached, and a retry
//! with the same key resumes there. Because the PSP's idempotency key is the payment's id, a
//! resumed request gets the session already registered, never a second one (I5).

use std::time::Duration;

use sqlx::Row;

use super::model::OrderStatus;
use super::repo::{load_view_on, lock_payment};
use super::request::NewPayment;
use crate::clock::now_ms;
use crate::error::{Error, Result};
use crate::idempotency::{self, Claim, KeyScope, RecoveryPoint};
use crate::ids::new_id;
use crate::psp::{PspError, PspSession, SessionRequest};
use crate::service::Ferropay;
use crate::store::is_unique_violation;

/// The answer to a create request: fresh, or replayed from the idempotency key.
#[derive(Clone, Debug)]
pub struct CreateOutcome {
    pub status: u16,
    pub body: String,
    pub replayed: bool,
}

/// Creates (or resumes, or replays) the payment for `payment` under `scope`.
pub async fn create_payment(
    service: &Ferropay,
    scope: &KeyScope,
    payment: &NewPayment,
    fingerprint: &str,
) -> Result<CreateOutcome> {
    let store = &service.store;
    let (point, payment_id) = match idempotency::claim(store, scope, fingerprint, now_ms()).await? {
        Claim::Replay { status, body } => {
            return Ok(CreateOutcome {
                status,
                body,
                replayed: true,
            });
        }
        Claim::Proceed { point, payment_id } => (point, payment_id),
    };

    let payment_id = match (point, payment_id) {
        (RecoveryPoint::Started, _) => match insert_payment(service, scope, payment).await {
            Ok(id) => id,
            Err(error) => {
                // Nothing was written: let the key go, so a later retry is judged afresh.
                idempotency::forget(store, scope).await?;
                return Err(error);
            }
        },
        (RecoveryPoint::PaymentCreated, Some(id)) => id,
        (point, _) => {
            return Err(Error::Internal(format!(
                "idempotency key at {point:?} without an answer"
            )));
        }
    };

    let session = match register_session(service, &payment_id).await {
        Ok(session) => session,
        Err(PspError::Retryable(message)) => {
            tracing::warn!(%payment_id, %message, "PSP registration failed; the key is released for a retry");
            idempotency::release(store, scope).await?;
            return Err(Error::PspUnavailable {
                message,
                retry_after_s: 1,
            });
        }
        Err(PspError::Permanent(message)) => {
            tracing::error!(%payment_id, %message, "PSP refused the session");
            return fail_for_good(service, scope, &payment_id, message).await;
        }
    };
    store_session(service, scope, &payment_id, &session).await
}

/// Step 2: the payment event and its orders, `requires_payment` / `not_started`, in one
/// transaction with the key's move to `payment_created`.
async fn insert_payment(
    service: &Ferropay,
    scope: &KeyScope,
    payment: &NewPayment,
) -> Result<String> {
    let payment_id = new_id("pay");
    let now = now_ms();
    let return_url = payment
        .return_url
        .clone()
        .unwrap_or_else(|| format!("{}/payments/{payment_id}/status", service.config.public_url));
    let mut tx = service.store.begin_write().await?;
    let inserted = sqlx::query(
        "INSERT INTO payments (id, checkout_id, buyer_id, buyer_email, currency, amount_minor, \
         status, psp, return_url, created_at_ms, updated_at_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, 'requires_payment', $7, $8, $9, $9)",
    )
    .bind(&payment_id)
    .bind(&payment.checkout_id)
    .bind(&payment.buyer_id)
    .bind(payment.buyer_email.as_deref())
    .bind(payment.currency.code())
    .bind(payment.total.get())
    .bind(service.connector.name())
    .bind(&return_url)
    .bind(now)
    .execute(&mut *tx)
    .await;
    match inserted {
        Ok(_) => {}
        Err(error) if is_unique_violation(&error) => {
            return Err(Error::conflict(
                "checkout_in_flight",
                format!(
                    "checkout `{}` already has a payment in flight or paid",
                    payment.checkout_id
                ),
            ));
        }
        Err(error) => return Err(error.into()),
    }
    for (position, order) in payment.orders.iter().enumerate() {
        sqlx::query(
            "INSERT INTO payment_orders (id, payment_id, position, order_id, seller_id, \
             amount_minor, status, created_at_ms, updated_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)",
        )
        .bind(new_id("po"))
        .bind(&payment_id)
        .bind(position as i64)
        .bind(&order.order_id)
        .bind(&order.seller_id)
        .bind(order.amount.get())
        .bind(OrderStatus::NotStarted.as_str())
        .bind(now)
        .execute(&mut *tx)
        .await?;
    }
    idempotency::mark_payment_created(&mut tx, scope, &payment_id).await?;
    tx.commit().await?;
    metrics::counter!("ferropay_payments_total", "status" => "requires_payment").increment(1);
    Ok(payment_id)
}

/// Step 3: register the session, retrying passing failures a few times within the request.
async fn register_session(service: &Ferropay, payment_id: &str) -> Result<PspSession, PspError> {
    let row = sqlx::query("SELECT amount_minor, currency, return_url FROM payments WHERE id = $1")
        .bind(payment_id)
        .fetch_one(service.store.pool())
        .await
        .map_err(|e| PspError::Retryable(format!("reading the payment: {e}")))?;
    let request = SessionRequest {
        idempotency_key: payment_id.to_owned(),
        amount_minor: row.try_get("amount_minor").map_err(db_retryable)?,
        currency: row.try_get("currency").map_err(db_retryable)?,
        reference: payment_id.to_owned(),
        return_url: row
            .try_get::<Option<String>, _>("return_url")
            .map_err(db_retryable)?
            .unwrap_or_default(),
    };
    let attempts = service.config.psp_register_attempts.max(1);
    let mut backoff_ms = 50_u64;
    let mut attempt = 1;
    loop {
        match service.connector.register_session(&request).await {
            Ok(session) => return Ok(session),
            Err(PspError::Retryable(message)) if attempt < attempts => {
                tracing::info!(%payment_id, attempt, %message, "retrying PSP registration");
                // Full jitter: anywhere up to the current backoff.
                let sleep_ms = rand::random_range(0..=backoff_ms);
                tokio::time::sleep(Duration::from_millis(sleep_ms)).await;
                backoff_ms = (backoff_ms * 4).min(2_000);
                attempt += 1;
            }
            Err(error) => return Err(error),
        }
    }
}

fn db_retryable(error: sqlx::Error) -> PspError {
    PspError::Retryable(format!("reading the payment: {error}"))
}

/// Step 4: store the token before anyone can see the hosted page, and save the answer.
async fn store_session(
    service: &Ferropay,
    scope: &KeyScope,
    payment_id: &str,
    session: &PspSession,
) -> Result<CreateOutcome> {
    let mut tx = service.store.begin_write().await?;
    let row = lock_payment(&service.store, &mut tx, payment_id)
        .await?
        .ok_or_else(|| Error::NotFound(format!("payment `{payment_id}`")))?;
    let amount_minor: i64 = row.try_get("amount_minor")?;
    let currency: String = row.try_get("currency")?;
    if session.amount_minor != amount_minor
        || session.currency != currency
        || session.reference != payment_id
    {
        return Err(Error::Internal(format!(
            "the PSP's session {} does not match payment {payment_id}",
            session.token
        )));
    }
    let now = now_ms();
    sqlx::query(
        "UPDATE payments SET psp_token = $1, psp_url = $2, \
         psp_reference = COALESCE(psp_reference, $3), updated_at_ms = $4 WHERE id = $5",
    )
    .bind(&session.token)
    .bind(&session.url)
    .bind(session.psp_reference.as_deref())
    .bind(now)
    .bind(payment_id)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "UPDATE payment_orders SET status = $1, updated_at_ms = $2 \
         WHERE payment_id = $3 AND status = $4",
    )
    .bind(OrderStatus::Executing.as_str())
    .bind(now)
    .bind(payment_id)
    .bind(OrderStatus::NotStarted.as_str())
    .execute(&mut *tx)
    .await?;
    let view = load_view_on(&mut tx, payment_id).await?;
    let body = serde_json::to_string(&view).map_err(|e| Error::Internal(e.to_string()))?;
    idempotency::finish(&mut tx, scope, 201, &body).await?;
    tx.commit().await?;
    Ok(CreateOutcome {
        status: 201,
        body,
        replayed: false,
    })
}

/// The PSP refused the session for good: the payment fails, and that answer is final for the key.
async fn fail_for_good(
    service: &Ferropay,
    scope: &KeyScope,
    payment_id: &str,
    message: String,
) -> Result<CreateOutcome> {
    let error = Error::PspRejected(message);
    let body = error.to_body().to_string();
    let now = now_ms();
    let mut tx = service.store.begin_write().await?;
    lock_payment(&service.store, &mut tx, payment_id).await?;
    sqlx::query(
        "UPDATE payments SET status = 'failed', failure_code = 'psp_rejected', updated_at_ms = $1 \
         WHERE id = $2 AND status = 'requires_payment'",
    )
    .bind(now)
    .bind(payment_id)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "UPDATE payment_orders SET status = $1, updated_at_ms = $2 WHERE payment_id = $3 \
         AND status IN ('not_started', 'executing')",
    )
    .bind(OrderStatus::Failed.as_str())
    .bind(now)
    .bind(payment_id)
    .execute(&mut *tx)
    .await?;
    idempotency::finish(&mut tx, scope, error.status(), &body).await?;
    tx.commit().await?;
    Ok(CreateOutcome {
        status: error.status(),
        body,
        replayed: false,
    })
}
