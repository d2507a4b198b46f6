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
use crate::engine::view::RefundRow;
use crate::engine::{Command, Effect, Keys, Staged, View};
use crate::error::{Error, Result};
use crate::idempotency::{self, Claim, CreateOutcome, KeyScope};
use crate::ids::new_id;
use crate::ledger::{NewJournalTransaction, Posting, accounts};
use crate::money::{AmountMinor, Money};
use crate::payin::model::{OrderStatus, PaymentStatus};
use crate::psp::{MadeByKey, PspError, RefundRequest, SettlementUpdate};
use crate::service::Ferropay;
use crate::store::Store;

/// `POST /v1/payments/{id}/refunds` body.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefundInput {
    pub order_id: String,
    /// Minor units; absent means the rest of the order (`null` is refused).
    #[serde(default, deserialize_with = "crate::money::present_amount")]
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
    let command = CreateRefund {
        scope: scope.clone(),
        payment_id: payment_id.to_owned(),
        input: input.clone(),
    };
    match service.engine.try_submit(command).await {
        Ok(outcome) => Ok(outcome),
        Err(error) => {
            // Nothing was written: the key is free for a request judged afresh.
            idempotency::forget(store, scope).await?;
            Err(error)
        }
    }
}

/// Records a refund of `input` on `payment_id` and saves its answer with the request's key: a
/// command to the money engine, decided under the payment's lock against what is already
/// refunded or on its way, so that concurrent refunds of one order never pass what was captured.
pub struct CreateRefund {
    pub scope: KeyScope,
    pub payment_id: String,
    pub input: RefundInput,
}

impl Command for CreateRefund {
    type Answer = CreateOutcome;

    fn keys(&self, keys: &mut Keys) {
        keys.payments.insert(self.payment_id.clone());
        keys.refund_totals = true;
        keys.idempotency
            .insert((self.scope.api_key_id.clone(), self.scope.key.clone()));
    }

    fn decide(&self, view: &View, staged: &mut Staged) -> Result<CreateOutcome> {
        let payment_id = &self.payment_id;
        let payment = view
            .payment(payment_id)
            .ok_or_else(|| Error::NotFound(format!("payment `{payment_id}`")))?;
        if !matches!(
            PaymentStatus::parse(&payment.status),
            Some(PaymentStatus::Succeeded | PaymentStatus::PartiallyRefunded)
        ) {
            return Err(Error::conflict(
                "payment_not_refundable",
                format!(
                    "payment {payment_id} is {}; only a paid payment can be refunded",
                    payment.status
                ),
            ));
        }
        let order = view
            .orders(payment_id)
            .iter()
            .find(|o| o.order_id == self.input.order_id)
            .ok_or_else(|| {
                Error::invalid(
                    "order_id",
                    format!(
                        "payment {payment_id} has no order `{}`",
                        self.input.order_id
                    ),
                )
            })?;
        view.check_unanswered(&self.scope.api_key_id, &self.scope.key)?;
        let totals = view.refund_totals(&order.id);
        let taken_minor = totals.pending_minor + totals.succeeded_minor;
        let taken_fee_minor = totals.pending_fee_minor + totals.succeeded_fee_minor;
        let remaining_minor = order.amount_minor - taken_minor;
        if remaining_minor <= 0 {
            return Err(Error::conflict(
                "already_refunded",
                format!("order `{}` is fully refunded", self.input.order_id),
            ));
        }
        let amount_minor = self.input.amount.unwrap_or(remaining_minor);
        if amount_minor <= 0 {
            return Err(Error::invalid(
                "amount",
                "must be a positive count of minor units",
            ));
        }
        if amount_minor > remaining_minor {
            return Err(Error::invalid(
                "amount",
                format!("at most {remaining_minor} minor units of this order remain refundable"),
            ));
        }
        let fee_minor = fee_returned_minor(
            order.amount_minor,
            order.platform_fee_minor,
            taken_minor,
            taken_fee_minor,
            amount_minor,
        )?;
        let currency = payment.amount.currency();
        let seller_part = Money::new(amount_minor - fee_minor, currency);
        let available = view.available(&order.seller_id, currency)?;
        if seller_part.minor() > available.minor() {
            return Err(Error::conflict(
                "insufficient_balance",
                format!(
                    "seller {} has {available} available; the refund needs {seller_part}",
                    order.seller_id
                ),
            ));
        }

        let refund = RefundRow {
            id: new_id("re"),
            payment_id: payment_id.clone(),
            payment_order_id: order.id.clone(),
            seller_id: order.seller_id.clone(),
            amount: Money::new(amount_minor, currency),
            platform_fee_minor: fee_minor,
            status: "pending".into(),
            psp_refund_id: None,
            failure_code: None,
            created_at_ms: view.now_ms,
        };
        let refund_view = RefundView {
            id: refund.id.clone(),
            payment_id: payment_id.clone(),
            order_id: order.order_id.clone(),
            seller_id: refund.seller_id.clone(),
            amount: amount_minor,
            currency: currency.code().to_owned(),
            status: refund.status.clone(),
            failure_code: None,
            created_at: rfc3339_from_ms(refund.created_at_ms),
        };
        staged.push(job::effect(&refund.id, view.now_ms));
        staged.push(Effect::NewRefund(refund));
        let payload =
            serde_json::to_value(&refund_view).map_err(|e| Error::Internal(e.to_string()))?;
        let body = payload.to_string();
        staged.outbox("refund.pending", payment_id.clone(), payload);
        Ok(staged.answer(&self.scope.api_key_id, &self.scope.key, 201, body))
    }
}

/// Stages a refund of every order of `payment` in full, as a decision of the command that
/// captures it (`fees`: each order's platform fee, just taken): a late capture of a checkout
/// another payment has paid. Like a requested refund: `pending`, holding the seller's part,
/// with its `refund.send` job and `refund.pending` event.
pub(crate) fn stage_full_refund(
    view: &View,
    staged: &mut Staged,
    payment: &crate::engine::view::PaymentRow,
    fees: &[i64],
) -> Result<()> {
    let currency = payment.amount.currency();
    for (order, fee_minor) in view.orders(&payment.id).iter().zip(fees) {
        if order.amount_minor <= 0 {
            continue;
        }
        // The payment is captured by this very command: no refund of it can exist yet (a
        // refund needs a paid payment), so the whole order is refundable.
        let refund = RefundRow {
            id: new_id("re"),
            payment_id: payment.id.clone(),
            payment_order_id: order.id.clone(),
            seller_id: order.seller_id.clone(),
            amount: Money::new(order.amount_minor, currency),
            platform_fee_minor: *fee_minor,
            status: "pending".into(),
            psp_refund_id: None,
            failure_code: None,
            created_at_ms: view.now_ms,
        };
        let refund_view = RefundView {
            id: refund.id.clone(),
            payment_id: payment.id.clone(),
            order_id: order.order_id.clone(),
            seller_id: refund.seller_id.clone(),
            amount: order.amount_minor,
            currency: currency.code().to_owned(),
            status: refund.status.clone(),
            failure_code: None,
            created_at: rfc3339_from_ms(refund.created_at_ms),
        };
        staged.push(job::effect(&refund.id, view.now_ms));
        staged.push(Effect::NewRefund(refund));
        staged.outbox(
            "refund.pending",
            payment.id.clone(),
            serde_json::to_value(&refund_view).map_err(|e| Error::Internal(e.to_string()))?,
        );
    }
    Ok(())
}

/// The platform's fee share that a refund of `amount_minor` returns, computed on the order's
/// cumulative refunds so that rounding never drifts by more than one minor unit per order:
/// after any sequence of refunds, the fee returned is the order's fee times the share refunded,
/// rounded down, and the last refund returns all that is left of it.
pub fn fee_returned_minor(
    order_minor: i64,
    order_fee_minor: i64,
    refunded_minor: i64,
    refunded_fee_minor: i64,
    amount_minor: i64,
) -> Result<i64> {
    let after_minor = refunded_minor + amount_minor;
    assert!(
        amount_minor > 0 && after_minor <= order_minor && order_minor > 0,
        "a refund within its order"
    );
    let fee_after_minor = if after_minor == order_minor {
        order_fee_minor
    } else {
        i64::try_from(
            i128::from(order_fee_minor) * i128::from(after_minor) / i128::from(order_minor),
        )
        .map_err(|_| Error::Internal("refund fee overflows".into()))?
    };
    let fee_minor = fee_after_minor - refunded_fee_minor;
    // Never more than the refund, never negative (an older refund may have returned more).
    Ok(fee_minor.clamp(0, amount_minor))
}

/// Sends a pending refund to the PSP (the [`job`]'s work; safe to run again: the PSP dedupes on the
/// refund's id). A refusal fails the refund (releasing its hold) only once the PSP, asked by the
/// refund's idempotency key, says it never made it; a refund it did make goes on as accepted.
/// Until the PSP can say, the refund stays pending and the job retries (then dead-letters).
pub async fn send(service: &Ferropay, refund_id: &str) -> Result<(), PspError> {
    let store = &service.store;
    let row = sqlx::query(
        "SELECT r.status, r.amount_minor, r.currency, p.psp, p.psp_token, p.psp_reference \
         FROM refunds r JOIN payments p ON p.id = r.payment_id WHERE r.id = $1",
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
        psp_reference: row
            .try_get("psp_reference")
            .map_err(|e| PspError::Retryable(e.to_string()))?,
        amount_minor: row
            .try_get("amount_minor")
            .map_err(|e| PspError::Retryable(e.to_string()))?,
        currency: get("currency")?,
    };
    // The refund goes to the PSP that took the payment.
    let psp = get("psp")?;
    let connector = service
        .connectors
        .of(&psp)
        .map_err(|e| PspError::Retryable(e.to_string()))?;
    match connector.create_refund(&request).await {
        Ok(accepted) => record_accepted(service, refund_id, &accepted.psp_id).await,
        Err(PspError::Permanent(message)) => {
            // Reverse only on proof: the refusal may answer a retry the PSP had already served
            // (an expired or rotated key), so ask what our key made before failing anything.
            tracing::warn!(%refund_id, %message, "the PSP refused the refund; asking whether it made it");
            let made = connector.refund_by_key(&request).await.map_err(|e| {
                PspError::Retryable(format!(
                    "the PSP refused refund {refund_id} ({message}) and could not say \
                         whether it made it: {e}"
                ))
            })?;
            match made {
                MadeByKey::NotMade => {
                    tracing::error!(%refund_id, %message, "PSP refused the refund and never made it");
                    settle(service, &psp, failed_update(refund_id, "psp_rejected")).await
                }
                MadeByKey::Made { psp_id, settled } => {
                    tracing::info!(%refund_id, %psp_id, "the PSP made the refund despite its error answer");
                    record_accepted(service, refund_id, &psp_id).await?;
                    match settled {
                        Some(mut update) => {
                            update.reference = refund_id.to_owned();
                            settle(service, &psp, update).await
                        }
                        None => Ok(()),
                    }
                }
            }
        }
        Err(retryable) => Err(retryable),
    }
}

/// Keeps the PSP's id of a refund it accepted (the job then asks it where the refund stands).
async fn record_accepted(
    service: &Ferropay,
    refund_id: &str,
    psp_id: &str,
) -> Result<(), PspError> {
    sqlx::query("UPDATE refunds SET psp_refund_id = $1, updated_at_ms = $2 WHERE id = $3")
        .bind(psp_id)
        .bind(now_ms())
        .bind(refund_id)
        .execute(service.store.pool())
        .await
        .map_err(|e| PspError::Retryable(e.to_string()))?;
    Ok(())
}

fn failed_update(refund_id: &str, failure_code: &str) -> SettlementUpdate {
    SettlementUpdate {
        reference: refund_id.to_owned(),
        succeeded: false,
        psp_id: None,
        amount_minor: None,
        currency: None,
        failure_code: Some(failure_code.into()),
    }
}

async fn settle(service: &Ferropay, psp: &str, update: SettlementUpdate) -> Result<(), PspError> {
    service
        .engine
        .submit(SettleRefund {
            psp: psp.to_owned(),
            update,
        })
        .await
        .map_err(|e| PspError::Retryable(e.to_string()))?;
    Ok(())
}

/// What settling a refund did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Settled {
    Succeeded,
    Failed,
    /// Already settled, or no such refund: nothing changed.
    Unchanged,
}

/// The PSP's word on a refund (its webhook, or the refund job's poll or permanent refusal).
pub struct SettleRefund {
    pub psp: String,
    pub update: SettlementUpdate,
}

impl Command for SettleRefund {
    type Answer = Settled;

    fn keys(&self, keys: &mut Keys) {
        add_settlement_keys(keys, &self.update);
    }

    fn decide(&self, view: &View, staged: &mut Staged) -> Result<Settled> {
        decide_settlement(view, staged, &self.psp, &self.update)
    }
}

/// The rows settling a refund needs: the refund (and so its payment) and the refund totals.
pub(crate) fn add_settlement_keys(keys: &mut Keys, update: &SettlementUpdate) {
    keys.refunds.insert(update.reference.clone());
    keys.refund_totals = true;
    keys.source_refs.insert(refund_ref(&update.reference));
}

fn refund_ref(refund_id: &str) -> String {
    format!("refund:{refund_id}")
}

/// Decides the PSP's word on a refund: on success, the ledger (the amount leaves the seller's
/// account and the platform's fee share, back to `psp_receivable`) and the statuses; on failure,
/// the status (which frees the hold). A settled refund never changes again.
pub(crate) fn decide_settlement(
    view: &View,
    staged: &mut Staged,
    psp: &str,
    update: &SettlementUpdate,
) -> Result<Settled> {
    let Some(refund) = view.refunds.get(&update.reference) else {
        tracing::warn!(reference = %update.reference, "PSP update for an unknown refund");
        return Ok(Settled::Unchanged);
    };
    if refund.status != "pending" {
        return Ok(Settled::Unchanged);
    }
    let currency = refund.amount.currency();
    if update
        .amount_minor
        .is_some_and(|a| a != refund.amount.minor())
        || update
            .currency
            .as_deref()
            .is_some_and(|c| c != currency.code())
    {
        return Err(Error::invalid("data.amount", "does not match the refund"));
    }
    let payment = view
        .payment(&refund.payment_id)
        .ok_or_else(|| Error::Internal(format!("refund {}: payment not loaded", refund.id)))?;
    if !update.succeeded {
        let failure_code = update
            .failure_code
            .clone()
            .unwrap_or_else(|| "refund_failed".into());
        staged.push(Effect::Refund {
            id: refund.id.clone(),
            status: "failed".into(),
            psp_refund_id: update.psp_id.clone(),
            failure_code: Some(failure_code.clone()),
        });
        staged.outbox(
            "refund.failed",
            payment.id.clone(),
            serde_json::json!({"refund_id": refund.id, "failure_code": failure_code}),
        );
        return Ok(Settled::Failed);
    }

    let fee = Money::new(refund.platform_fee_minor, currency);
    let seller_part = refund.seller_part()?;
    let mut postings = vec![Posting::new(
        accounts::psp_receivable(psp),
        refund
            .amount
            .checked_neg()
            .map_err(|e| Error::Internal(e.to_string()))?,
    )];
    if seller_part.minor() > 0 {
        postings.push(Posting::new(
            accounts::seller(&refund.seller_id),
            seller_part,
        ));
    }
    if fee.minor() > 0 {
        postings.push(Posting::new(accounts::PLATFORM_FEES, fee));
    }
    staged.post(
        view,
        NewJournalTransaction {
            source_ref: refund_ref(&refund.id),
            kind: "refund",
            payment_id: Some(payment.id.clone()),
            postings,
        },
    )?;
    staged.push(Effect::Refund {
        id: refund.id.clone(),
        status: "succeeded".into(),
        psp_refund_id: update.psp_id.clone(),
        failure_code: None,
    });

    // Statuses follow what has been refunded in total, this refund included.
    let orders = view.orders(&payment.id);
    let order_refunded_minor =
        view.refund_totals(&refund.payment_order_id).succeeded_minor + refund.amount.minor();
    let payment_refunded_minor = orders
        .iter()
        .map(|o| view.refund_totals(&o.id).succeeded_minor)
        .sum::<i64>()
        + refund.amount.minor();
    let (position, order) = orders
        .iter()
        .enumerate()
        .find(|(_, o)| o.id == refund.payment_order_id)
        .ok_or_else(|| Error::Internal(format!("refund {}: order not loaded", refund.id)))?;
    assert!(
        order_refunded_minor <= order.amount_minor,
        "refunds of an order passed its amount"
    );
    if order_refunded_minor == order.amount_minor {
        staged.push(Effect::Order {
            payment_id: payment.id.clone(),
            position,
            status: Some(OrderStatus::Refunded.as_str().to_owned()),
            platform_fee_minor: None,
        });
    }
    let payment_status = if payment_refunded_minor == payment.amount.minor() {
        PaymentStatus::Refunded
    } else {
        PaymentStatus::PartiallyRefunded
    };
    staged.push(Effect::Payment {
        id: payment.id.clone(),
        status: payment_status.as_str().to_owned(),
        psp_reference: None,
        failure_code: None,
    });
    staged.outbox(
        "refund.succeeded",
        payment.id.clone(),
        serde_json::json!({"refund_id": refund.id, "amount": refund.amount.minor(), "currency": currency.code(), "payment_status": payment_status}),
    );
    Ok(Settled::Succeeded)
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

pub(crate) fn view_of(row: &sqlx::any::AnyRow) -> Result<RefundView> {
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

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::fee_returned_minor;

    #[test]
    fn ninety_refunds_of_one_return_the_fee_share_and_the_last_returns_the_rest() {
        // An order of 100 at a 10 % fee (10): refunded one unit at a time.
        let (mut refunded, mut fee_back) = (0, 0);
        for step in 1..=100 {
            let fee = fee_returned_minor(100, 10, refunded, fee_back, 1).unwrap();
            refunded += 1;
            fee_back += fee;
            assert_eq!(fee_back, 10 * refunded / 100, "after {step} refunds");
        }
        assert_eq!(fee_back, 10);
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

        /// Whatever the sequence of partial refunds, the fee returned so far is the order's fee
        /// times the share refunded, rounded down (within one minor unit of exact), and all of
        /// it once the order is fully refunded; no refund returns more fee than its amount.
        #[test]
        fn the_fee_returned_follows_the_cumulative_refund(
            order_minor in 1..100_000_i64,
            fee_bps in 0..=10_000_i64,
            cuts in proptest::collection::vec(1..10_000_i64, 1..30),
        ) {
            let order_fee = order_minor * fee_bps / 10_000;
            let (mut refunded, mut fee_back) = (0_i64, 0_i64);
            for cut in cuts {
                let remaining = order_minor - refunded;
                if remaining == 0 { break; }
                let amount = cut.min(remaining);
                let fee = fee_returned_minor(order_minor, order_fee, refunded, fee_back, amount).unwrap();
                prop_assert!((0..=amount).contains(&fee));
                refunded += amount;
                fee_back += fee;
                let exact = i128::from(order_fee) * i128::from(refunded);
                prop_assert!(i128::from(fee_back) * i128::from(order_minor) <= exact);
                prop_assert!(exact - i128::from(fee_back) * i128::from(order_minor) < i128::from(order_minor));
            }
            if refunded == order_minor {
                prop_assert_eq!(fee_back, order_fee);
            }
        }
    }
}
