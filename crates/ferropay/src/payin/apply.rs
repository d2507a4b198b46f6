//! Pay-in step 9: applying what the PSP says about a payment, in ONE database transaction —
//! the event's dedupe row, payment and order statuses, the balanced capture transaction in the
//! ledger (which moves the sellers' wallets), and an outbox event. A duplicate event, or an
//! outcome the state machine rejects, changes nothing.

use serde::Serialize;
use sqlx::Row;

use super::model::PaymentStatus;
use super::repo::lock_payment;
use super::state::{Transition, on_psp_outcome};
use crate::clock::now_ms;
use crate::error::{Error, Result};
use crate::jobs;
use crate::ledger::{self, NewJournalTransaction, Posting, accounts};
use crate::outbox;
use crate::psp::{PaymentUpdate, PspEvent, PspEventKind};
use crate::store::{Store, Tx};
use crate::{payout, refund};

/// What applying an event or update did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum ApplyResult {
    /// The payment moved.
    Applied {
        payment_id: String,
        from: PaymentStatus,
        to: PaymentStatus,
    },
    /// The payment is where the update would take it, or further along: nothing changed.
    Unchanged {
        payment_id: String,
        status: PaymentStatus,
    },
    /// This event id was seen before: nothing changed.
    Duplicate,
    /// The event names a payment we do not have; it is recorded and acknowledged.
    UnknownPayment { reference: String },
    /// A refund or payout was settled (or was already: `changed` false).
    Settled {
        reference: String,
        outcome: &'static str,
        changed: bool,
    },
    /// An event type this version does not act on; recorded and acknowledged.
    Ignored,
}

/// Applies a verified webhook event from `psp`: dedupe by event id, then the update.
pub async fn apply_event(
    store: &Store,
    psp: &str,
    event: &PspEvent,
    platform_fee_bps: u32,
) -> Result<ApplyResult> {
    let mut tx = store.begin_write().await?;
    let reference = match &event.kind {
        PspEventKind::Payment(update) => Some(update.reference.as_str()),
        PspEventKind::Refund(update) | PspEventKind::Payout(update) => {
            Some(update.reference.as_str())
        }
        PspEventKind::Other => None,
    };
    let first_time = sqlx::query(
        "INSERT INTO webhook_events (psp, event_id, event_type, reference, received_at_ms) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (psp, event_id) DO NOTHING",
    )
    .bind(psp)
    .bind(&event.id)
    .bind(&event.event_type)
    .bind(reference)
    .bind(now_ms())
    .execute(&mut *tx)
    .await?
    .rows_affected()
        == 1;
    if !first_time {
        metrics::counter!("ferropay_webhook_events_total", "result" => "duplicate").increment(1);
        return Ok(ApplyResult::Duplicate);
    }
    let result = match &event.kind {
        PspEventKind::Payment(update) => {
            apply_update_in(store, &mut tx, psp, update, platform_fee_bps).await?
        }
        PspEventKind::Refund(update) => {
            let settled = refund::settle_in(store, &mut tx, psp, update).await?;
            ApplyResult::Settled {
                reference: update.reference.clone(),
                outcome: if update.succeeded {
                    "refund_succeeded"
                } else {
                    "refund_failed"
                },
                changed: settled != refund::Settled::Unchanged,
            }
        }
        PspEventKind::Payout(update) => {
            let settled = payout::settle_in(store, &mut tx, update).await?;
            ApplyResult::Settled {
                reference: update.reference.clone(),
                outcome: if update.succeeded {
                    "payout_paid"
                } else {
                    "payout_failed"
                },
                changed: settled != payout::Settled::Unchanged,
            }
        }
        PspEventKind::Other => ApplyResult::Ignored,
    };
    tx.commit().await?;
    Ok(result)
}

/// Applies an update that did not come as a webhook (the poller, reconciliation) in its own
/// transaction, through the same path.
pub async fn apply_update(
    store: &Store,
    psp: &str,
    update: &PaymentUpdate,
    platform_fee_bps: u32,
) -> Result<ApplyResult> {
    let mut tx = store.begin_write().await?;
    let result = apply_update_in(store, &mut tx, psp, update, platform_fee_bps).await?;
    tx.commit().await?;
    Ok(result)
}

async fn apply_update_in(
    store: &Store,
    tx: &mut Tx,
    psp: &str,
    update: &PaymentUpdate,
    platform_fee_bps: u32,
) -> Result<ApplyResult> {
    let Some(row) = lock_payment(store, tx, &update.reference).await? else {
        tracing::warn!(reference = %update.reference, "PSP update for an unknown payment");
        return Ok(ApplyResult::UnknownPayment {
            reference: update.reference.clone(),
        });
    };
    let payment_id: String = row.try_get("id")?;
    let amount_minor: i64 = row.try_get("amount_minor")?;
    let currency: String = row.try_get("currency")?;
    let payment_psp: String = row.try_get("psp")?;
    // The payment's own rate, fixed at its creation; the caller's only for older payments.
    let platform_fee_bps = match row.try_get::<Option<i64>, _>("platform_fee_bps")? {
        Some(bps) => u32::try_from(bps)
            .map_err(|_| Error::Internal(format!("payment fee rate {bps} bps")))?,
        None => platform_fee_bps,
    };
    let status_text: String = row.try_get("status")?;
    let status = PaymentStatus::parse(&status_text)
        .ok_or_else(|| Error::Internal(format!("payment status `{status_text}`")))?;

    if payment_psp != psp {
        return Err(Error::invalid(
            "data.reference",
            format!("payment {payment_id} is not a {psp} payment"),
        ));
    }
    if update.amount_minor.is_some_and(|a| a != amount_minor) {
        tracing::error!(%payment_id, ?update.amount_minor, amount_minor, "PSP amount differs from ours");
        return Err(Error::invalid(
            "data.amount",
            "does not match the payment's amount",
        ));
    }
    if update.currency.as_deref().is_some_and(|c| c != currency) {
        return Err(Error::invalid(
            "data.currency",
            "does not match the payment's currency",
        ));
    }

    let Some(transition) = on_psp_outcome(status, update.outcome) else {
        return Ok(ApplyResult::Unchanged { payment_id, status });
    };
    let now = now_ms();
    write_transition(tx, &payment_id, &transition, update, now).await?;
    if transition.payment.is_final() {
        // The poller has nothing left to ask about this payment.
        jobs::cancel_queued(tx, super::poll::KIND, &payment_id).await?;
    }
    if transition.capture {
        let capture = capture_transaction(
            tx,
            psp,
            &payment_id,
            &currency,
            amount_minor,
            platform_fee_bps,
        )
        .await?;
        ledger::post(store, tx, &capture).await?;
    }
    let checkout_id: String = row.try_get("checkout_id")?;
    let event = serde_json::json!({
        "payment_id": payment_id,
        "checkout_id": checkout_id,
        "status": transition.payment,
        "amount": amount_minor,
        "currency": currency,
        "failure_code": update.failure_code,
    });
    outbox::enqueue(
        tx,
        &format!("payment.{}", transition.payment.as_str()),
        &payment_id,
        &event,
        now,
    )
    .await?;
    tracing::info!(%payment_id, from = status.as_str(), to = transition.payment.as_str(), "payment moved");
    metrics::counter!("ferropay_payments_total", "status" => transition.payment.as_str())
        .increment(1);
    Ok(ApplyResult::Applied {
        payment_id,
        from: status,
        to: transition.payment,
    })
}

async fn write_transition(
    tx: &mut Tx,
    payment_id: &str,
    transition: &Transition,
    update: &PaymentUpdate,
    now: i64,
) -> Result<()> {
    sqlx::query(
        "UPDATE payments SET status = $1, psp_reference = COALESCE($2, psp_reference), \
         failure_code = COALESCE($3, failure_code), updated_at_ms = $4 WHERE id = $5",
    )
    .bind(transition.payment.as_str())
    .bind(update.psp_reference.as_deref())
    .bind(update.failure_code.as_deref())
    .bind(now)
    .bind(payment_id)
    .execute(&mut **tx)
    .await?;
    sqlx::query("UPDATE payment_orders SET status = $1, updated_at_ms = $2 WHERE payment_id = $3")
        .bind(transition.orders.as_str())
        .bind(now)
        .bind(payment_id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// The capture: debit what the PSP now owes us, credit each seller's share less the platform
/// fee, credit the platform's fees. Sums to zero by construction; `ledger::post` checks again.
async fn capture_transaction(
    tx: &mut Tx,
    psp: &str,
    payment_id: &str,
    currency: &str,
    amount_minor: i64,
    platform_fee_bps: u32,
) -> Result<NewJournalTransaction> {
    let orders = sqlx::query(
        "SELECT id, seller_id, amount_minor FROM payment_orders WHERE payment_id = $1 \
         ORDER BY position",
    )
    .bind(payment_id)
    .fetch_all(&mut **tx)
    .await?;
    let mut postings = vec![Posting::new(
        accounts::psp_receivable(psp),
        currency,
        amount_minor,
    )];
    let mut fees_minor = 0_i64;
    for order in &orders {
        let order_minor: i64 = order.try_get("amount_minor")?;
        let fee_minor = platform_fee_minor(order_minor, platform_fee_bps)?;
        fees_minor += fee_minor;
        if fee_minor > 0 {
            // Kept with the order, so that a refund returns exactly the fee that was taken.
            let order_id: String = order.try_get("id")?;
            sqlx::query("UPDATE payment_orders SET platform_fee_minor = $1 WHERE id = $2")
                .bind(fee_minor)
                .bind(&order_id)
                .execute(&mut **tx)
                .await?;
        }
        if order_minor > fee_minor {
            let seller_id: String = order.try_get("seller_id")?;
            postings.push(Posting::new(
                accounts::seller(&seller_id),
                currency,
                -(order_minor - fee_minor),
            ));
        }
    }
    if fees_minor > 0 {
        postings.push(Posting::new(accounts::PLATFORM_FEES, currency, -fees_minor));
    }
    Ok(NewJournalTransaction {
        source_ref: format!("capture:{payment_id}"),
        kind: "capture",
        payment_id: Some(payment_id.to_owned()),
        postings,
    })
}

/// The platform's fee on an order, in basis points, rounded down to whole minor units.
pub fn platform_fee_minor(order_minor: i64, fee_bps: u32) -> Result<i64> {
    let fee = i128::from(order_minor) * i128::from(fee_bps) / 10_000;
    i64::try_from(fee).map_err(|_| Error::Internal("platform fee overflows".into()))
}

#[cfg(test)]
mod tests {
    use super::platform_fee_minor;

    #[test]
    fn fees_round_down_in_minor_units() {
        assert_eq!(platform_fee_minor(1500, 0).unwrap(), 0);
        assert_eq!(platform_fee_minor(1500, 1000).unwrap(), 150);
        assert_eq!(platform_fee_minor(999, 250).unwrap(), 24);
        assert_eq!(platform_fee_minor(1, 9_999).unwrap(), 0);
    }
}
