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
use crate::engine::view::PayoutRow;
use crate::engine::{Command, Effect, Engine, Keys, Staged, View};
use crate::error::{Error, Result};
use crate::idempotency::{self, Claim, CreateOutcome, KeyScope};
use crate::ids::new_id;
use crate::ledger::{NewJournalTransaction, Posting, accounts};
use crate::money::{AmountMinor, Currency, Money};
use crate::outbox;
use crate::psp::{MadeByKey, PayoutRequest, PspError, SettlementUpdate};
use crate::service::Ferropay;
use crate::store::{Store, Tx};

/// `POST /v1/sellers/{seller_id}/payouts` body.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PayoutInput {
    pub currency: String,
    /// Minor units; absent means all that is available (`null` is refused).
    #[serde(default, deserialize_with = "crate::money::present_amount")]
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
/// hold its idempotency key (the job lease). Needs only the database and the engine: the payout
/// provider is called by a worker, so the CLI can pay a seller now through a running ferropay.
pub async fn create(
    store: &Store,
    engine: &Engine,
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
    let command = CreatePayout {
        scope: scope.clone(),
        seller_id: seller_id.to_owned(),
        currency,
        amount_minor: input.amount,
    };
    match engine.try_submit(command).await {
        Ok(outcome) => Ok(outcome),
        Err(error) => {
            // Nothing was written (a key with an answer is never forgotten).
            idempotency::forget(store, scope).await?;
            Err(error)
        }
    }
}

/// Records a payout of `amount_minor` (or all that is available) and moves it out of the
/// seller's account, saving the answer with the request's key; refused with
/// `insufficient_balance` when it would overdraw (what is available is decided in the engine's
/// batch under the wallet's lock, with the batch's earlier payouts and refunds counted).
pub struct CreatePayout {
    pub scope: KeyScope,
    pub seller_id: String,
    pub currency: Currency,
    pub amount_minor: Option<i64>,
}

impl Command for CreatePayout {
    type Answer = CreateOutcome;

    fn keys(&self, keys: &mut Keys) {
        keys.wallets.insert((self.seller_id.clone(), self.currency));
        keys.refund_totals = true;
        keys.idempotency
            .insert((self.scope.api_key_id.clone(), self.scope.key.clone()));
    }

    fn decide(&self, view: &View, staged: &mut Staged) -> Result<CreateOutcome> {
        view.check_unanswered(&self.scope.api_key_id, &self.scope.key)?;
        let (payout, payout_view) = decide_send(
            view,
            staged,
            &self.seller_id,
            self.currency,
            self.amount_minor,
        )?;
        let body =
            serde_json::to_string(&payout_view).map_err(|e| Error::Internal(e.to_string()))?;
        let _ = payout;
        Ok(staged.answer(&self.scope.api_key_id, &self.scope.key, 201, body))
    }
}

/// Stages a payout of `amount_minor` (or all that is available) to `seller_id`: the payout row,
/// the posting that moves it out of the seller's account, its job and event.
pub(crate) fn decide_send(
    view: &View,
    staged: &mut Staged,
    seller_id: &str,
    currency: Currency,
    amount_minor: Option<i64>,
) -> Result<(String, PayoutView)> {
    let available = view.available(seller_id, currency)?;
    let amount_minor = amount_minor.unwrap_or(available.minor());
    if amount_minor <= 0 || amount_minor > available.minor() {
        return Err(Error::conflict(
            "insufficient_balance",
            format!("seller {seller_id} has {available} available for payout"),
        ));
    }
    let amount = Money::new(amount_minor, currency);
    let payout = PayoutRow {
        id: new_id("pout"),
        seller_id: seller_id.to_owned(),
        amount,
        status: "pending".into(),
        psp_payout_id: None,
        failure_code: None,
        created_at_ms: view.now_ms,
        updated_at_ms: view.now_ms,
    };
    let payout_view = view_of_row(&payout);
    staged.post(
        view,
        NewJournalTransaction {
            source_ref: format!("payout:{}:sent", payout.id),
            kind: "payout_sent",
            payment_id: None,
            postings: vec![
                Posting::new(accounts::seller(seller_id), amount),
                Posting::new(
                    accounts::PAYOUTS_IN_TRANSIT,
                    amount
                        .checked_neg()
                        .map_err(|e| Error::Internal(e.to_string()))?,
                ),
            ],
        },
    )?;
    staged.push(job::effect(&payout.id, view.now_ms));
    staged.outbox(
        "payout.pending",
        seller_id,
        serde_json::to_value(&payout_view).map_err(|e| Error::Internal(e.to_string()))?,
    );
    let id = payout.id.clone();
    staged.push(Effect::NewPayout(payout));
    Ok((id, payout_view))
}

fn view_of_row(payout: &PayoutRow) -> PayoutView {
    PayoutView {
        id: payout.id.clone(),
        seller_id: payout.seller_id.clone(),
        amount: payout.amount.minor(),
        currency: payout.amount.currency().code().to_owned(),
        status: payout.status.clone(),
        failure_code: payout.failure_code.clone(),
        created_at: rfc3339_from_ms(payout.created_at_ms),
        updated_at: rfc3339_from_ms(payout.updated_at_ms),
    }
}

/// Calls the payout provider for a pending payout (the [`job`]'s work; safe to run again: the provider
/// dedupes on the payout's id). A refusal reverses the payout only once the provider, asked by
/// the payout's idempotency key, says it never made it; until it can say, the payout stays
/// pending and the job retries (then dead-letters, still pending, for an operator).
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
    // Payouts go through the connector the routing names for them, to the seller's account
    // there (if one is registered).
    let connector = service.connectors.payouts();
    let seller_id: String = row.try_get("seller_id").map_err(retryable)?;
    let destination_account = crate::sellers::psp_account(store, &seller_id, connector.name())
        .await
        .map_err(|e| PspError::Retryable(e.to_string()))?;
    let request = PayoutRequest {
        payout_id: payout_id.to_owned(),
        seller_id,
        destination_account,
        amount_minor: row.try_get("amount_minor").map_err(retryable)?,
        currency: row.try_get("currency").map_err(retryable)?,
    };
    match connector.create_payout(&request).await {
        Ok(accepted) => {
            mark_in_transit(service, payout_id, &accepted.psp_id, connector.name()).await
        }
        Err(PspError::Permanent(message)) => {
            // Reverse only on proof: an error answer (an expired or rotated key refusing a
            // retry) may hide a payout the provider made; a reversal would pay the seller twice.
            tracing::warn!(%payout_id, %message, "the provider refused the payout; asking whether it made it");
            let made = connector.payout_by_key(payout_id).await.map_err(|e| {
                PspError::Retryable(format!(
                    "the provider refused payout {payout_id} ({message}) and could not say \
                         whether it made it: {e}"
                ))
            })?;
            match made {
                MadeByKey::NotMade => {
                    tracing::error!(%payout_id, %message, "payout provider refused the payout and never made it");
                    let update = SettlementUpdate {
                        reference: payout_id.to_owned(),
                        succeeded: false,
                        psp_id: None,
                        amount_minor: None,
                        currency: None,
                        failure_code: Some("provider_rejected".into()),
                    };
                    settle(service, update).await
                }
                MadeByKey::Made { psp_id, settled } => {
                    tracing::info!(%payout_id, %psp_id, "the provider made the payout despite its error answer");
                    mark_in_transit(service, payout_id, &psp_id, connector.name()).await?;
                    match settled {
                        Some(mut update) => {
                            update.reference = payout_id.to_owned();
                            settle(service, update).await
                        }
                        None => Ok(()),
                    }
                }
            }
        }
        Err(error) => Err(error),
    }
}

async fn settle(service: &Ferropay, update: SettlementUpdate) -> Result<(), PspError> {
    service
        .engine
        .submit(SettlePayout { update })
        .await
        .map_err(|e| PspError::Retryable(e.to_string()))?;
    Ok(())
}

/// The provider accepted the payout: `in_transit` with its id, and the event, in one transaction.
async fn mark_in_transit(
    service: &Ferropay,
    payout_id: &str,
    psp_id: &str,
    psp: &str,
) -> Result<(), PspError> {
    let store = &service.store;
    let in_transit = async {
        let now = now_ms();
        let mut tx = store.begin_write().await?;
        // The provider it went through is remembered: its status is asked there.
        let moved = sqlx::query(
            "UPDATE payouts SET status = 'in_transit', psp_payout_id = $1, \
             updated_at_ms = $2, psp = $3 WHERE id = $4 AND status = 'pending'",
        )
        .bind(psp_id)
        .bind(now)
        .bind(psp)
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

/// What settling a payout did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Settled {
    Paid,
    Failed,
    /// Already settled, or no such payout: nothing changed.
    Unchanged,
}

/// The provider's word on a payout (its webhook, or the payout job's poll or permanent refusal).
pub struct SettlePayout {
    pub update: SettlementUpdate,
}

impl Command for SettlePayout {
    type Answer = Settled;

    fn keys(&self, keys: &mut Keys) {
        add_settlement_keys(keys, &self.update);
    }

    fn decide(&self, view: &View, staged: &mut Staged) -> Result<Settled> {
        decide_settlement(view, staged, &self.update)
    }
}

pub(crate) fn add_settlement_keys(keys: &mut Keys, update: &SettlementUpdate) {
    keys.payouts.insert(update.reference.clone());
    keys.source_refs
        .insert(format!("payout:{}:paid", update.reference));
    keys.source_refs
        .insert(format!("payout:{}:reversed", update.reference));
}

/// Decides the provider's word on a payout: paid moves the money from `payouts_in_transit` to
/// `bank`; failed reverses it into the seller's wallet. A settled payout never changes again.
pub(crate) fn decide_settlement(
    view: &View,
    staged: &mut Staged,
    update: &SettlementUpdate,
) -> Result<Settled> {
    let Some(payout) = view.payouts.get(&update.reference) else {
        tracing::warn!(reference = %update.reference, "provider update for an unknown payout");
        return Ok(Settled::Unchanged);
    };
    if !matches!(payout.status.as_str(), "pending" | "in_transit") {
        return Ok(Settled::Unchanged);
    }
    let currency = payout.amount.currency();
    if update
        .amount_minor
        .is_some_and(|a| a != payout.amount.minor())
        || update
            .currency
            .as_deref()
            .is_some_and(|c| c != currency.code())
    {
        return Err(Error::invalid("data.amount", "does not match the payout"));
    }
    let (kind, counter_account, settled, status, suffix) = if update.succeeded {
        (
            "payout_paid",
            accounts::BANK.to_owned(),
            Settled::Paid,
            "paid",
            "paid",
        )
    } else {
        (
            "payout_reversed",
            accounts::seller(&payout.seller_id),
            Settled::Failed,
            "failed",
            "reversed",
        )
    };
    staged.post(
        view,
        NewJournalTransaction {
            source_ref: format!("payout:{}:{suffix}", payout.id),
            kind,
            payment_id: None,
            postings: vec![
                Posting::new(accounts::PAYOUTS_IN_TRANSIT, payout.amount),
                Posting::new(
                    counter_account,
                    payout
                        .amount
                        .checked_neg()
                        .map_err(|e| Error::Internal(e.to_string()))?,
                ),
            ],
        },
    )?;
    let failure_code = (!update.succeeded).then(|| {
        update
            .failure_code
            .clone()
            .unwrap_or_else(|| "payout_failed".into())
    });
    staged.push(Effect::Payout {
        id: payout.id.clone(),
        status: status.into(),
        psp_payout_id: update.psp_id.clone(),
        failure_code,
    });
    staged.outbox(
        if update.succeeded { "payout.paid" } else { "payout.failed" },
        payout.seller_id.clone(),
        serde_json::json!({"payout_id": payout.id, "amount": payout.amount.minor(), "currency": currency.code(), "failure_code": update.failure_code}),
    );
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

pub(crate) fn view_of(row: &sqlx::any::AnyRow) -> Result<PayoutView> {
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
