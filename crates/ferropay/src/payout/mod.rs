//! Payouts: money on to a seller. At send, the amount leaves the seller's account for
//! `payouts_in_transit` in the same transaction that records the payout (so the wallet can never
//! pay the same money twice); the payout provider is then called with the payout's id as
//! idempotency key. `payout.paid` moves the money from `payouts_in_transit` to `bank`;
//! `payout.failed` reverses it, and the wallet is whole again.
//!
//! Signs, with debits positive: at send `seller +X, payouts_in_transit -X`; when paid
//! `payouts_in_transit +X, bank -X`; when failed `payouts_in_transit +X, seller -X`.

pub mod job;
pub mod schedule;

use serde::{Deserialize, Serialize};
use sqlx::Row;

use crate::clock::{now_ms, rfc3339_from_ms};
use crate::error::{Error, Result};
use crate::idempotency::{self, Claim, KeyScope};
use crate::ids::new_id;
use crate::ledger::{self, NewJournalTransaction, Posting, accounts};
use crate::money::{AmountMinor, Currency};
use crate::outbox;
use crate::payin::create::CreateOutcome;
use crate::psp::{PayoutRequest, PspError, SettlementUpdate};
use crate::service::Ferropay;
use crate::store::{Store, Tx};
use crate::wallet;

/// `POST /v1/sellers/{seller_id}/payouts` body.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PayoutInput {
    pub currency: String,
    /// Minor units; absent means all that is available.
    #[serde(default)]
    pub amount: Option<i64>,
}

/// A payout as the API shows it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct PayoutView {
    pub id: String,
    pub seller_id: String,
    pub amount: i64,
    pub currency: String,
    /// `pending` → `in_transit` → `paid` | `failed`.
    pub status: String,
    pub failure_code: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

/// Creates (or replays) a payout to `seller_id`. `lock_timeout_ms` is how long a request may
/// hold its idempotency key (the job lease). Needs only the database: the payout provider is
/// called by a worker, so the CLI can pay a seller now through a running ferropay.
pub async fn create(
    store: &Store,
    lock_timeout_ms: i64,
    scope: &KeyScope,
    seller_id: &str,
    input: &PayoutInput,
    fingerprint: &str,
) -> Result<CreateOutcome> {
    let currency =
        Currency::parse(&input.currency).map_err(|e| Error::invalid("currency", e.to_string()))?;
    if let Some(amount) = input.amount {
        AmountMinor::parse(amount).map_err(|e| Error::invalid("amount", e.to_string()))?;
    }
    if let Claim::Replay { status, body } =
        idempotency::claim(store, scope, fingerprint, now_ms(), lock_timeout_ms).await?
    {
        return Ok(CreateOutcome {
            status,
            body,
            replayed: true,
        });
    }
    let sent = async {
        let mut tx = store.begin_write().await?;
        let view = send_in(store, &mut tx, seller_id, currency, input.amount).await?;
        let body = serde_json::to_string(&view).map_err(|e| Error::Internal(e.to_string()))?;
        idempotency::finish(&mut tx, scope, 201, &body).await?;
        tx.commit().await?;
        Ok::<_, Error>(body)
    }
    .await;
    match sent {
        Ok(body) => Ok(CreateOutcome {
            status: 201,
            body,
            replayed: false,
        }),
        Err(error) => {
            idempotency::forget(store, scope).await?;
            Err(error)
        }
    }
}

/// Records a payout of `amount_minor` (or all that is available) inside `tx` and moves it out
/// of the seller's account; refused with `insufficient_balance` when it would overdraw.
pub(crate) async fn send_in(
    store: &Store,
    tx: &mut Tx,
    seller_id: &str,
    currency: Currency,
    amount_minor: Option<i64>,
) -> Result<PayoutView> {
    let available_minor = wallet::lock_available(store, tx, seller_id, currency.code()).await?;
    let amount_minor = amount_minor.unwrap_or(available_minor);
    if amount_minor <= 0 || amount_minor > available_minor {
        return Err(Error::conflict(
            "insufficient_balance",
            format!("seller {seller_id} has {available_minor} {currency} available for payout"),
        ));
    }
    let payout_id = new_id("pout");
    let now = now_ms();
    sqlx::query(
        "INSERT INTO payouts (id, seller_id, currency, amount_minor, status, created_at_ms, \
         updated_at_ms) VALUES ($1, $2, $3, $4, 'pending', $5, $5)",
    )
    .bind(&payout_id)
    .bind(seller_id)
    .bind(currency.code())
    .bind(amount_minor)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    ledger::post(
        store,
        tx,
        &NewJournalTransaction {
            source_ref: format!("payout:{payout_id}:sent"),
            kind: "payout_sent",
            payment_id: None,
            postings: vec![
                Posting::new(accounts::seller(seller_id), currency.code(), amount_minor),
                Posting::new(accounts::PAYOUTS_IN_TRANSIT, currency.code(), -amount_minor),
            ],
        },
    )
    .await?;
    job::enqueue(tx, &payout_id, now).await?;
    let view = load_on(tx, &payout_id).await?;
    outbox::enqueue(
        tx,
        "payout.pending",
        seller_id,
        &serde_json::to_value(&view).map_err(|e| Error::Internal(e.to_string()))?,
        now,
    )
    .await?;
    Ok(view)
}

/// Calls the payout provider for a pending payout (the [`job`]'s work; safe to run again: the provider
/// dedupes on the payout's id). A permanent refusal fails the payout and reverses it.
pub async fn send(service: &Ferropay, payout_id: &str) -> Result<(), PspError> {
    let store = &service.store;
    let retryable = |e: sqlx::Error| PspError::Retryable(e.to_string());
    let row =
        sqlx::query("SELECT status, seller_id, amount_minor, currency FROM payouts WHERE id = $1")
            .bind(payout_id)
            .fetch_optional(store.pool())
            .await
            .map_err(retryable)?
            .ok_or_else(|| PspError::Permanent(format!("no payout {payout_id}")))?;
    let status: String = row.try_get("status").map_err(retryable)?;
    if status != "pending" {
        return Ok(());
    }
    let request = PayoutRequest {
        payout_id: payout_id.to_owned(),
        seller_id: row.try_get("seller_id").map_err(retryable)?,
        amount_minor: row.try_get("amount_minor").map_err(retryable)?,
        currency: row.try_get("currency").map_err(retryable)?,
    };
    match service.connector.create_payout(&request).await {
        Ok(accepted) => {
            // The status and its event (`payout.in_transit`) in one transaction.
            let in_transit = async {
                let now = now_ms();
                let mut tx = store.begin_write().await?;
                let moved = sqlx::query(
                    "UPDATE payouts SET status = 'in_transit', psp_payout_id = $1, \
                     updated_at_ms = $2 WHERE id = $3 AND status = 'pending'",
                )
                .bind(&accepted.psp_id)
                .bind(now)
                .bind(payout_id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if moved == 1 {
                    let view = load_on(&mut tx, payout_id).await?;
                    outbox::enqueue(
                        &mut tx,
                        "payout.in_transit",
                        &view.seller_id,
                        &serde_json::to_value(&view).map_err(|e| Error::Internal(e.to_string()))?,
                        now,
                    )
                    .await?;
                }
                tx.commit().await?;
                Ok::<(), Error>(())
            };
            in_transit
                .await
                .map_err(|e| PspError::Retryable(e.to_string()))
        }
        Err(PspError::Permanent(message)) => {
            tracing::error!(%payout_id, %message, "payout provider refused the payout");
            let update = SettlementUpdate {
                reference: payout_id.to_owned(),
                succeeded: false,
                psp_id: None,
                amount_minor: None,
                currency: None,
                failure_code: Some("provider_rejected".into()),
            };
            let mut tx = store.begin_write().await.map_err(retryable)?;
            settle_in(store, &mut tx, &update)
                .await
                .map_err(|e| PspError::Retryable(e.to_string()))?;
            tx.commit().await.map_err(retryable)?;
            Ok(())
        }
        Err(error) => Err(error),
    }
}

/// What settling a payout did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Settled {
    Paid,
    Failed,
    /// Already settled, or no such payout: nothing changed.
    Unchanged,
}

/// Applies the provider's word on a payout inside `tx`. A settled payout never changes again.
pub(crate) async fn settle_in(
    store: &Store,
    tx: &mut Tx,
    update: &SettlementUpdate,
) -> Result<Settled> {
    // Lock order: ledger head first (every posting takes it), then the payout's own row.
    ledger::lock_head(store, tx).await?;
    let Some(row) = sqlx::query(store.pick(
        "SELECT status, seller_id, amount_minor, currency FROM payouts WHERE id = $1",
        "SELECT status, seller_id, amount_minor, currency FROM payouts WHERE id = $1 FOR UPDATE",
    ))
    .bind(&update.reference)
    .fetch_optional(&mut **tx)
    .await?
    else {
        tracing::warn!(reference = %update.reference, "provider update for an unknown payout");
        return Ok(Settled::Unchanged);
    };
    let status: String = row.try_get("status")?;
    if !matches!(status.as_str(), "pending" | "in_transit") {
        return Ok(Settled::Unchanged);
    }
    let seller_id: String = row.try_get("seller_id")?;
    let amount_minor: i64 = row.try_get("amount_minor")?;
    let currency: String = row.try_get("currency")?;
    if update.amount_minor.is_some_and(|a| a != amount_minor)
        || update.currency.as_deref().is_some_and(|c| c != currency)
    {
        return Err(Error::invalid("data.amount", "does not match the payout"));
    }
    let (kind, counter_account, settled) = if update.succeeded {
        ("payout_paid", accounts::BANK.to_owned(), Settled::Paid)
    } else {
        (
            "payout_reversed",
            accounts::seller(&seller_id),
            Settled::Failed,
        )
    };
    ledger::post(
        store,
        tx,
        &NewJournalTransaction {
            source_ref: format!(
                "payout:{}:{}",
                update.reference,
                if update.succeeded { "paid" } else { "reversed" }
            ),
            kind,
            payment_id: None,
            postings: vec![
                Posting::new(accounts::PAYOUTS_IN_TRANSIT, &currency, amount_minor),
                Posting::new(counter_account, &currency, -amount_minor),
            ],
        },
    )
    .await?;
    let now = now_ms();
    sqlx::query(
        "UPDATE payouts SET status = $1, failure_code = $2, \
         psp_payout_id = COALESCE($3, psp_payout_id), updated_at_ms = $4 WHERE id = $5",
    )
    .bind(if update.succeeded { "paid" } else { "failed" })
    .bind(if update.succeeded {
        None
    } else {
        Some(update.failure_code.as_deref().unwrap_or("payout_failed"))
    })
    .bind(update.psp_id.as_deref())
    .bind(now)
    .bind(&update.reference)
    .execute(&mut **tx)
    .await?;
    outbox::enqueue(
        tx,
        if update.succeeded { "payout.paid" } else { "payout.failed" },
        &seller_id,
        &serde_json::json!({"payout_id": update.reference, "amount": amount_minor, "currency": currency, "failure_code": update.failure_code}),
        now,
    )
    .await?;
    Ok(settled)
}

/// A seller's payouts, newest first.
pub async fn list(store: &Store, seller_id: &str) -> Result<Vec<PayoutView>> {
    let rows = sqlx::query(
        "SELECT id, seller_id, amount_minor, currency, status, failure_code, created_at_ms, \
         updated_at_ms FROM payouts WHERE seller_id = $1 ORDER BY created_at_ms DESC, id DESC",
    )
    .bind(seller_id)
    .fetch_all(store.pool())
    .await?;
    rows.iter().map(view_of).collect()
}

async fn load_on(tx: &mut Tx, payout_id: &str) -> Result<PayoutView> {
    let row = sqlx::query(
        "SELECT id, seller_id, amount_minor, currency, status, failure_code, created_at_ms, \
         updated_at_ms FROM payouts WHERE id = $1",
    )
    .bind(payout_id)
    .fetch_one(&mut **tx)
    .await?;
    view_of(&row)
}

fn view_of(row: &sqlx::any::AnyRow) -> Result<PayoutView> {
    Ok(PayoutView {
        id: row.try_get("id")?,
        seller_id: row.try_get("seller_id")?,
        amount: row.try_get("amount_minor")?,
        currency: row.try_get("currency")?,
        status: row.try_get("status")?,
        failure_code: row.try_get("failure_code")?,
        created_at: rfc3339_from_ms(row.try_get("created_at_ms")?),
        updated_at: rfc3339_from_ms(row.try_get("updated_at_ms")?),
    })
}
