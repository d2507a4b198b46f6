//! Refunds: money back to a buyer, per payment order, full or partial, never more than was
//! captured (concurrent requests included), idempotent. A refund is accepted as `pending` (the
//! seller's part is held out of what they can take), sent to the PSP with the refund's id as
//! idempotency key, and settled by the PSP's webhook: on success the ledger moves the amount from
//! the seller's account (and the platform's fee share) back to `psp_receivable`; on failure no
//! balance changes and the refund says why.

pub mod job;

use serde::{Deserialize, Serialize};
use sqlx::Row;

use crate::clock::{now_ms, rfc3339_from_ms};
use crate::error::{Error, Result};
use crate::idempotency::{self, Claim, KeyScope};
use crate::ids::new_id;
use crate::ledger::{self, NewJournalTransaction, Posting, accounts};
use crate::money::AmountMinor;
use crate::outbox;
use crate::payin::create::CreateOutcome;
use crate::payin::model::{OrderStatus, PaymentStatus};
use crate::payin::repo::lock_payment;
use crate::psp::{PspError, RefundRequest, SettlementUpdate};
use crate::service::Ferropay;
use crate::store::{Store, Tx};
use crate::wallet;

/// `POST /v1/payments/{id}/refunds` body.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefundInput {
    pub order_id: String,
    /// Minor units; absent means the rest of the order.
    #[serde(default)]
    pub amount: Option<i64>,
}

/// A refund as the API shows it.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct RefundView {
    pub id: String,
    pub payment_id: String,
    pub order_id: String,
    pub seller_id: String,
    pub amount: i64,
    pub currency: String,
    /// `pending` → `succeeded` | `failed`.
    pub status: String,
    pub failure_code: Option<String>,
    pub created_at: String,
}

/// Creates (or replays) a refund of `input` on `payment_id`.
pub async fn create(
    service: &Ferropay,
    scope: &KeyScope,
    payment_id: &str,
    input: &RefundInput,
    fingerprint: &str,
) -> Result<CreateOutcome> {
    let store = &service.store;
    if let Some(amount) = input.amount {
        AmountMinor::parse(amount).map_err(|e| Error::invalid("amount", e.to_string()))?;
    }
    if let Claim::Replay { status, body } = idempotency::claim(
        store,
        scope,
        fingerprint,
        now_ms(),
        service.config.jobs.lease_ms,
    )
    .await?
    {
        return Ok(CreateOutcome {
            status,
            body,
            replayed: true,
        });
    }
    match insert(service, scope, payment_id, input).await {
        Ok(outcome) => Ok(outcome),
        Err(error) => {
            // Nothing was written: the key is free for a request judged afresh.
            idempotency::forget(store, scope).await?;
            Err(error)
        }
    }
}

async fn insert(
    service: &Ferropay,
    scope: &KeyScope,
    payment_id: &str,
    input: &RefundInput,
) -> Result<CreateOutcome> {
    let store = &service.store;
    let mut tx = store.begin_write().await?;
    let payment = lock_payment(store, &mut tx, payment_id)
        .await?
        .ok_or_else(|| Error::NotFound(format!("payment `{payment_id}`")))?;
    let status_text: String = payment.try_get("status")?;
    let currency: String = payment.try_get("currency")?;
    if !matches!(
        PaymentStatus::parse(&status_text),
        Some(PaymentStatus::Succeeded | PaymentStatus::PartiallyRefunded)
    ) {
        return Err(Error::conflict(
            "payment_not_refundable",
            format!("payment {payment_id} is {status_text}; only a paid payment can be refunded"),
        ));
    }
    let order = sqlx::query(
        "SELECT id, seller_id, amount_minor, platform_fee_minor FROM payment_orders \
         WHERE payment_id = $1 AND order_id = $2",
    )
    .bind(payment_id)
    .bind(&input.order_id)
    .fetch_optional(&mut *tx)
    .await?
    .ok_or_else(|| {
        Error::invalid(
            "order_id",
            format!("payment {payment_id} has no order `{}`", input.order_id),
        )
    })?;
    let order_row_id: String = order.try_get("id")?;
    let seller_id: String = order.try_get("seller_id")?;
    let order_minor: i64 = order.try_get("amount_minor")?;
    let order_fee_minor: i64 = order.try_get("platform_fee_minor")?;

    // What is already refunded or on its way, under the payment's lock: concurrent refunds of
    // one order queue here, so their sum can never pass what was captured.
    let taken = sqlx::query(
        "SELECT CAST(COALESCE(SUM(amount_minor), 0) AS BIGINT) AS amount, \
                CAST(COALESCE(SUM(platform_fee_minor), 0) AS BIGINT) AS fee \
         FROM refunds WHERE payment_order_id = $1 AND status IN ('pending', 'succeeded')",
    )
    .bind(&order_row_id)
    .fetch_one(&mut *tx)
    .await?;
    let refunded_minor: i64 = taken.try_get("amount")?;
    let refunded_fee_minor: i64 = taken.try_get("fee")?;
    let remaining_minor = order_minor - refunded_minor;
    if remaining_minor <= 0 {
        return Err(Error::conflict(
            "already_refunded",
            format!("order `{}` is fully refunded", input.order_id),
        ));
    }
    let amount_minor = input.amount.unwrap_or(remaining_minor);
    if amount_minor > remaining_minor {
        return Err(Error::invalid(
            "amount",
            format!("at most {remaining_minor} minor units of this order remain refundable"),
        ));
    }
    // The platform returns its fee in proportion; the last refund returns what is left of it.
    let fee_minor = if amount_minor == remaining_minor {
        order_fee_minor - refunded_fee_minor
    } else {
        i64::try_from(
            i128::from(order_fee_minor) * i128::from(amount_minor) / i128::from(order_minor),
        )
        .map_err(|_| Error::Internal("refund fee overflows".into()))?
    };
    let seller_part_minor = amount_minor - fee_minor;
    let available_minor = wallet::lock_available(store, &mut tx, &seller_id, &currency).await?;
    if seller_part_minor > available_minor {
        return Err(Error::conflict(
            "insufficient_balance",
            format!(
                "seller {seller_id} has {available_minor} {currency} available; the refund needs {seller_part_minor}"
            ),
        ));
    }

    let refund_id = new_id("re");
    let now = now_ms();
    sqlx::query(
        "INSERT INTO refunds (id, payment_id, payment_order_id, seller_id, currency, amount_minor, \
         platform_fee_minor, status, created_at_ms, updated_at_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', $8, $8)",
    )
    .bind(&refund_id)
    .bind(payment_id)
    .bind(&order_row_id)
    .bind(&seller_id)
    .bind(&currency)
    .bind(amount_minor)
    .bind(fee_minor)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    job::enqueue(&mut tx, &refund_id, now).await?;
    let view = load_on(&mut tx, &refund_id).await?;
    outbox::enqueue(
        &mut tx,
        "refund.pending",
        payment_id,
        &serde_json::to_value(&view).unwrap_or_default(),
        now,
    )
    .await?;
    let body = serde_json::to_string(&view).map_err(|e| Error::Internal(e.to_string()))?;
    idempotency::finish(&mut tx, scope, 201, &body).await?;
    tx.commit().await?;
    Ok(CreateOutcome {
        status: 201,
        body,
        replayed: false,
    })
}

/// Sends a pending refund to the PSP (the [`job`]'s work; safe to run again: the PSP dedupes on the
/// refund's id). A permanent refusal fails the refund, which releases its hold.
pub async fn send(service: &Ferropay, refund_id: &str) -> Result<(), PspError> {
    let store = &service.store;
    let row = sqlx::query(
        "SELECT r.status, r.amount_minor, r.currency, p.psp_token FROM refunds r \
         JOIN payments p ON p.id = r.payment_id WHERE r.id = $1",
    )
    .bind(refund_id)
    .fetch_optional(store.pool())
    .await
    .map_err(|e| PspError::Retryable(e.to_string()))?
    .ok_or_else(|| PspError::Permanent(format!("no refund {refund_id}")))?;
    let get = |name: &str| -> Result<String, PspError> {
        row.try_get::<Option<String>, _>(name)
            .map_err(|e| PspError::Retryable(e.to_string()))?
            .ok_or_else(|| PspError::Permanent(format!("refund {refund_id} has no {name}")))
    };
    if get("status")? != "pending" {
        return Ok(());
    }
    let request = RefundRequest {
        refund_id: refund_id.to_owned(),
        payment_token: get("psp_token")?,
        amount_minor: row
            .try_get("amount_minor")
            .map_err(|e| PspError::Retryable(e.to_string()))?,
        currency: get("currency")?,
    };
    match service.connector.create_refund(&request).await {
        Ok(accepted) => {
            sqlx::query("UPDATE refunds SET psp_refund_id = $1, updated_at_ms = $2 WHERE id = $3")
                .bind(&accepted.psp_id)
                .bind(now_ms())
                .bind(refund_id)
                .execute(store.pool())
                .await
                .map_err(|e| PspError::Retryable(e.to_string()))?;
            Ok(())
        }
        Err(PspError::Permanent(message)) => {
            tracing::error!(%refund_id, %message, "PSP refused the refund");
            let update = SettlementUpdate {
                reference: refund_id.to_owned(),
                succeeded: false,
                psp_id: None,
                amount_minor: None,
                currency: None,
                failure_code: Some("psp_rejected".into()),
            };
            let mut tx = store
                .begin_write()
                .await
                .map_err(|e| PspError::Retryable(e.to_string()))?;
            settle_in(store, &mut tx, service.connector.name(), &update)
                .await
                .map_err(|e| PspError::Retryable(e.to_string()))?;
            tx.commit()
                .await
                .map_err(|e| PspError::Retryable(e.to_string()))?;
            Ok(())
        }
        Err(retryable) => Err(retryable),
    }
}

/// What settling a refund did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Settled {
    Succeeded,
    Failed,
    /// Already settled, or no such refund: nothing changed.
    Unchanged,
}

/// Applies the PSP's word on a refund inside `tx`: on success, the ledger and statuses; on
/// failure, the status (which frees the hold). A settled refund never changes again.
pub(crate) async fn settle_in(
    store: &Store,
    tx: &mut Tx,
    psp: &str,
    update: &SettlementUpdate,
) -> Result<Settled> {
    let Some(refund) = sqlx::query("SELECT payment_id FROM refunds WHERE id = $1")
        .bind(&update.reference)
        .fetch_optional(&mut **tx)
        .await?
    else {
        tracing::warn!(reference = %update.reference, "PSP update for an unknown refund");
        return Ok(Settled::Unchanged);
    };
    let payment_id: String = refund.try_get("payment_id")?;
    // Lock order: payment, ledger head, wallets.
    lock_payment(store, tx, &payment_id).await?;
    let refund = sqlx::query(
        "SELECT r.status, r.amount_minor, r.platform_fee_minor, r.currency, r.seller_id, \
                r.payment_order_id, o.amount_minor AS order_minor, p.amount_minor AS payment_minor \
         FROM refunds r JOIN payment_orders o ON o.id = r.payment_order_id \
         JOIN payments p ON p.id = r.payment_id WHERE r.id = $1",
    )
    .bind(&update.reference)
    .fetch_one(&mut **tx)
    .await?;
    let status: String = refund.try_get("status")?;
    if status != "pending" {
        return Ok(Settled::Unchanged);
    }
    let amount_minor: i64 = refund.try_get("amount_minor")?;
    let currency: String = refund.try_get("currency")?;
    if update.amount_minor.is_some_and(|a| a != amount_minor)
        || update.currency.as_deref().is_some_and(|c| c != currency)
    {
        return Err(Error::invalid("data.amount", "does not match the refund"));
    }
    let now = now_ms();
    if !update.succeeded {
        sqlx::query(
            "UPDATE refunds SET status = 'failed', failure_code = $1, updated_at_ms = $2 WHERE id = $3",
        )
        .bind(update.failure_code.as_deref().unwrap_or("refund_failed"))
        .bind(now)
        .bind(&update.reference)
        .execute(&mut **tx)
        .await?;
        outbox::enqueue(tx, "refund.failed", &payment_id, &serde_json::json!({"refund_id": update.reference, "failure_code": update.failure_code}), now).await?;
        return Ok(Settled::Failed);
    }

    let fee_minor: i64 = refund.try_get("platform_fee_minor")?;
    let seller_id: String = refund.try_get("seller_id")?;
    let mut postings = vec![Posting::new(
        accounts::psp_receivable(psp),
        &currency,
        -amount_minor,
    )];
    if amount_minor > fee_minor {
        postings.push(Posting::new(
            accounts::seller(&seller_id),
            &currency,
            amount_minor - fee_minor,
        ));
    }
    if fee_minor > 0 {
        postings.push(Posting::new(accounts::PLATFORM_FEES, &currency, fee_minor));
    }
    ledger::post(
        store,
        tx,
        &NewJournalTransaction {
            source_ref: format!("refund:{}", update.reference),
            kind: "refund",
            payment_id: Some(payment_id.clone()),
            postings,
        },
    )
    .await?;
    sqlx::query(
        "UPDATE refunds SET status = 'succeeded', psp_refund_id = COALESCE($1, psp_refund_id), \
         updated_at_ms = $2 WHERE id = $3",
    )
    .bind(update.psp_id.as_deref())
    .bind(now)
    .bind(&update.reference)
    .execute(&mut **tx)
    .await?;

    // Statuses follow what has been refunded in total.
    let order_row_id: String = refund.try_get("payment_order_id")?;
    let order_minor: i64 = refund.try_get("order_minor")?;
    let payment_minor: i64 = refund.try_get("payment_minor")?;
    let order_refunded = refunded_sum(tx, "payment_order_id", &order_row_id).await?;
    let payment_refunded = refunded_sum(tx, "payment_id", &payment_id).await?;
    assert!(
        order_refunded <= order_minor,
        "refunds of an order passed its amount"
    );
    if order_refunded == order_minor {
        sqlx::query("UPDATE payment_orders SET status = $1, updated_at_ms = $2 WHERE id = $3")
            .bind(OrderStatus::Refunded.as_str())
            .bind(now)
            .bind(&order_row_id)
            .execute(&mut **tx)
            .await?;
    }
    let payment_status = if payment_refunded == payment_minor {
        PaymentStatus::Refunded
    } else {
        PaymentStatus::PartiallyRefunded
    };
    sqlx::query("UPDATE payments SET status = $1, updated_at_ms = $2 WHERE id = $3")
        .bind(payment_status.as_str())
        .bind(now)
        .bind(&payment_id)
        .execute(&mut **tx)
        .await?;
    outbox::enqueue(
        tx,
        "refund.succeeded",
        &payment_id,
        &serde_json::json!({"refund_id": update.reference, "amount": amount_minor, "currency": currency, "payment_status": payment_status}),
        now,
    )
    .await?;
    Ok(Settled::Succeeded)
}

async fn refunded_sum(tx: &mut Tx, column: &'static str, id: &str) -> Result<i64> {
    let sql: &'static str = match column {
        "payment_id" => {
            "SELECT CAST(COALESCE(SUM(amount_minor), 0) AS BIGINT) AS total FROM refunds \
             WHERE payment_id = $1 AND status = 'succeeded'"
        }
        _ => {
            "SELECT CAST(COALESCE(SUM(amount_minor), 0) AS BIGINT) AS total FROM refunds \
             WHERE payment_order_id = $1 AND status = 'succeeded'"
        }
    };
    Ok(sqlx::query(sql)
        .bind(id)
        .fetch_one(&mut **tx)
        .await?
        .try_get("total")?)
}

/// A payment's refunds, oldest first.
pub async fn list(store: &Store, payment_id: &str) -> Result<Vec<RefundView>> {
    let rows = sqlx::query(
        "SELECT r.id, r.payment_id, o.order_id, r.seller_id, r.amount_minor, r.currency, \
         r.status, r.failure_code, r.created_at_ms FROM refunds r \
         JOIN payment_orders o ON o.id = r.payment_order_id WHERE r.payment_id = $1 \
         ORDER BY r.created_at_ms, r.id",
    )
    .bind(payment_id)
    .fetch_all(store.pool())
    .await?;
    rows.iter().map(view_of).collect()
}

async fn load_on(tx: &mut Tx, refund_id: &str) -> Result<RefundView> {
    let row = sqlx::query(
        "SELECT r.id, r.payment_id, o.order_id, r.seller_id, r.amount_minor, r.currency, \
         r.status, r.failure_code, r.created_at_ms FROM refunds r \
         JOIN payment_orders o ON o.id = r.payment_order_id WHERE r.id = $1",
    )
    .bind(refund_id)
    .fetch_one(&mut **tx)
    .await?;
    view_of(&row)
}

fn view_of(row: &sqlx::any::AnyRow) -> Result<RefundView> {
    Ok(RefundView {
        id: row.try_get("id")?,
        payment_id: row.try_get("payment_id")?,
        order_id: row.try_get("order_id")?,
        seller_id: row.try_get("seller_id")?,
        amount: row.try_get("amount_minor")?,
        currency: row.try_get("currency")?,
        status: row.try_get("status")?,
        failure_code: row.try_get("failure_code")?,
        created_at: rfc3339_from_ms(row.try_get("created_at_ms")?),
    })
}
