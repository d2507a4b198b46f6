//! Pay-in step 9: what the PSP says about a payment, as a command to the money engine
//! ([`ApplyPaymentUpdate`]). Decided in the engine's batch against the payment as it stands:
//! statuses by the one transition function, the balanced capture transaction (which moves the
//! sellers' wallets), the poll that is no longer needed, and an outbox event — all written with
//! the batch's one commit. An outcome the state machine rejects changes nothing.
//!
//! The webhook, the poller and reconciliation's heal all submit this same command, so a late
//! capture (a `succeeded` after we marked the payment `failed` or `expired`) is booked the same
//! way whichever finds it: captured, logged and evented (`payment.late_capture`), and, when
//! another payment already has the checkout, refunded in full at once.

use serde::Serialize;

use super::model::PaymentStatus;
use super::state::on_psp_outcome;
use crate::engine::view::PaymentRow;
use crate::engine::{Command, Effect, Keys, Staged, View};
use crate::error::{Error, Result};
use crate::ledger::{NewJournalTransaction, Posting, accounts};
use crate::money::Money;
use crate::psp::PaymentUpdate;

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

/// The PSP's word on one payment, from its webhook, the poller or reconciliation.
#[derive(Clone, Debug)]
pub struct ApplyPaymentUpdate {
    pub psp: String,
    pub update: PaymentUpdate,
    /// The platform fee rate for payments that do not carry their own (from before it was kept).
    pub fallback_fee_bps: u32,
}

impl Command for ApplyPaymentUpdate {
    type Answer = ApplyResult;

    fn keys(&self, keys: &mut Keys) {
        add_keys(keys, &self.update);
    }

    fn decide(&self, view: &View, staged: &mut Staged) -> Result<ApplyResult> {
        decide(view, staged, &self.psp, &self.update, self.fallback_fee_bps)
    }
}

/// The rows deciding `update` needs.
pub(crate) fn add_keys(keys: &mut Keys, update: &PaymentUpdate) {
    keys.payments.insert(update.reference.clone());
    keys.source_refs.insert(capture_ref(&update.reference));
    if update.outcome == crate::psp::PspOutcome::Succeeded {
        // A late capture must know whether another payment has the checkout (loaded only for
        // the batch's failed or expired payments: nothing on the common path).
        keys.live_siblings = true;
    }
}

fn capture_ref(payment_id: &str) -> String {
    format!("capture:{payment_id}")
}

/// Decides `update` against the payment in `view`, staging every effect.
pub(crate) fn decide(
    view: &View,
    staged: &mut Staged,
    psp: &str,
    update: &PaymentUpdate,
    fallback_fee_bps: u32,
) -> Result<ApplyResult> {
    let Some(payment) = view.payment(&update.reference) else {
        tracing::warn!(reference = %update.reference, "PSP update for an unknown payment");
        return Ok(ApplyResult::UnknownPayment {
            reference: update.reference.clone(),
        });
    };
    let payment_id = payment.id.clone();
    if payment.psp != psp {
        return Err(Error::invalid(
            "data.reference",
            format!("payment {payment_id} is not a {psp} payment"),
        ));
    }
    if update
        .amount_minor
        .is_some_and(|a| a != payment.amount.minor())
    {
        tracing::error!(%payment_id, ?update.amount_minor, amount = %payment.amount, "PSP amount differs from ours");
        return Err(Error::invalid(
            "data.amount",
            "does not match the payment's amount",
        ));
    }
    if update
        .currency
        .as_deref()
        .is_some_and(|c| c != payment.amount.currency().code())
    {
        return Err(Error::invalid(
            "data.currency",
            "does not match the payment's currency",
        ));
    }
    // The payment's own rate, fixed at its creation; the caller's only for older payments.
    let fee_bps = match payment.platform_fee_bps {
        Some(bps) => u32::try_from(bps)
            .map_err(|_| Error::Internal(format!("payment fee rate {bps} bps")))?,
        None => fallback_fee_bps,
    };
    let status = PaymentStatus::parse(&payment.status)
        .ok_or_else(|| Error::Internal(format!("payment status `{}`", payment.status)))?;

    let Some(transition) = on_psp_outcome(status, update.outcome) else {
        // A PSP that tells its reference only later (Adyen's AUTHORISATION after the poller
        // captured from the link's status): kept, as refunds there name the payment by it.
        if payment.psp_reference.is_none() && update.psp_reference.is_some() {
            staged.push(Effect::Payment {
                id: payment_id.clone(),
                status: payment.status.clone(),
                psp_reference: update.psp_reference.clone(),
                failure_code: None,
            });
        }
        return Ok(ApplyResult::Unchanged { payment_id, status });
    };
    staged.push(Effect::Payment {
        id: payment_id.clone(),
        status: transition.payment.as_str().to_owned(),
        psp_reference: update.psp_reference.clone(),
        failure_code: update.failure_code.clone(),
    });
    let fees = if transition.capture {
        order_fees(view, payment, fee_bps)?
    } else {
        vec![0; view.orders(&payment_id).len()]
    };
    for (position, fee_minor) in fees.iter().enumerate() {
        staged.push(Effect::Order {
            payment_id: payment_id.clone(),
            position,
            status: Some(transition.orders.as_str().to_owned()),
            // Kept with the order, so that a refund returns exactly the fee that was taken.
            platform_fee_minor: transition.capture.then_some(*fee_minor),
        });
    }
    if transition.payment == PaymentStatus::Succeeded {
        // The poller has nothing left to ask about this payment. (A failed or expired one keeps
        // its poll for a last look: the PSP may take the money after all.)
        staged.push(Effect::CancelJob {
            kind: super::poll::KIND,
            key: payment_id.clone(),
        });
    }
    if transition.capture {
        let capture = capture_transaction(view, psp, payment, &fees)?;
        staged.post(view, capture)?;
    }
    // A late capture while another payment has the checkout (paid, or in flight): the buyer
    // paid twice. This one is booked and refunded at once, in full.
    let duplicate_of = transition
        .late
        .then(|| view.live_sibling(&payment.checkout_id, &payment_id))
        .flatten();
    if transition.late {
        tracing::warn!(%payment_id, from = status.as_str(), ?duplicate_of, "late capture: the PSP took the money after we gave up");
        metrics::counter!("ferropay_late_captures_total").increment(1);
        staged.outbox(
            "payment.late_capture",
            payment_id.clone(),
            serde_json::json!({
                "payment_id": payment_id,
                "checkout_id": payment.checkout_id,
                "from": status,
                "amount": payment.amount.minor(),
                "currency": payment.amount.currency().code(),
                "duplicate_of": duplicate_of,
            }),
        );
    }
    if let Some(paid_by) = duplicate_of {
        staged.push(Effect::DuplicateOf {
            id: payment_id.clone(),
            duplicate_of: paid_by.to_owned(),
        });
        crate::refund::stage_full_refund(view, staged, payment, &fees)?;
    }
    staged.outbox(
        format!("payment.{}", transition.payment.as_str()),
        payment_id.clone(),
        serde_json::json!({
            "payment_id": payment_id,
            "checkout_id": payment.checkout_id,
            "status": transition.payment,
            "amount": payment.amount.minor(),
            "currency": payment.amount.currency().code(),
            "failure_code": update.failure_code,
        }),
    );
    tracing::info!(%payment_id, from = status.as_str(), to = transition.payment.as_str(), "payment moved");
    metrics::counter!("ferropay_payments_total", "status" => transition.payment.as_str())
        .increment(1);
    Ok(ApplyResult::Applied {
        payment_id,
        from: status,
        to: transition.payment,
    })
}

/// The platform's fee on each order of `payment`, in order.
fn order_fees(view: &View, payment: &PaymentRow, fee_bps: u32) -> Result<Vec<i64>> {
    view.orders(&payment.id)
        .iter()
        .map(|order| platform_fee_minor(order.amount_minor, fee_bps))
        .collect()
}

/// The capture: debit what the PSP now owes us, credit each seller's share less the platform
/// fee, credit the platform's fees. Sums to zero by construction; the engine checks again.
fn capture_transaction(
    view: &View,
    psp: &str,
    payment: &PaymentRow,
    fees: &[i64],
) -> Result<NewJournalTransaction> {
    let currency = payment.amount.currency();
    let mut postings = vec![Posting::new(accounts::psp_receivable(psp), payment.amount)];
    let mut fees_total = Money::zero(currency);
    let orders = view.orders(&payment.id);
    assert_eq!(orders.len(), fees.len(), "one fee per order");
    let mut orders_total = Money::zero(currency);
    for (order, fee_minor) in orders.iter().zip(fees) {
        let order_amount = Money::new(order.amount_minor, currency);
        let fee = Money::new(*fee_minor, currency);
        orders_total = orders_total.checked_add(order_amount).map_err(internal)?;
        fees_total = fees_total.checked_add(fee).map_err(internal)?;
        let seller_share = order_amount.checked_sub(fee).map_err(internal)?;
        if seller_share.minor() > 0 {
            postings.push(Posting::new(
                accounts::seller(&order.seller_id),
                seller_share.checked_neg().map_err(internal)?,
            ));
        }
    }
    if orders_total != payment.amount {
        return Err(Error::Internal(format!(
            "payment {}: its orders sum to {orders_total}, not {}",
            payment.id, payment.amount
        )));
    }
    if fees_total.minor() > 0 {
        postings.push(Posting::new(
            accounts::PLATFORM_FEES,
            fees_total.checked_neg().map_err(internal)?,
        ));
    }
    Ok(NewJournalTransaction {
        source_ref: capture_ref(&payment.id),
        kind: "capture",
        payment_id: Some(payment.id.clone()),
        postings,
    })
}

fn internal(error: crate::money::MoneyError) -> Error {
    Error::Internal(error.to_string())
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
