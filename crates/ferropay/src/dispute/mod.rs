//! Disputes (chargebacks): the buyer's bank takes (part of) a captured payment back through the
//! PSP, and later decides for the merchant (`won`: the money comes back) or against (`lost`).
//!
//! The PSP's word on a dispute — its `dispute.*` webhook, reconciliation's heal of a settlement
//! file's `chargeback` or `chargeback_reversal` line, or the answer to our evidence — is one
//! command to the money engine ([`ApplyDispute`]), decided under the dispute's and the
//! payment's locks:
//!
//! - the first word of a dispute records it and books the withdrawal, `chargeback:{psp id}`:
//!   `psp_receivable` is credited with the disputed amount, each seller's wallet debited with
//!   its share less the platform's fee share, `platform_fees` debited with the rest (the shares
//!   follow each order's part of the payment and the fee it paid). A wallet may go negative:
//!   the seller owes the platform, and payouts wait until it is positive again;
//! - `won` books the reinstatement, `chargeback_reversal:{psp id}`, the withdrawal's mirror;
//! - statuses only move forward (`needs_response` → `under_review` → `won` | `lost`); a late
//!   or repeated word changes nothing, and each journal transaction is posted once by its
//!   source reference;
//! - one exception, [`ApplyReversal`]: the PSP's settlement shows a lost dispute's funds given
//!   back (Adyen's `ChargebackReversed` record), so the dispute moves from `lost` to `won` and
//!   the reinstatement is booked (once, by its source reference). A webhook's `won` after
//!   `lost` still changes nothing: notifications come in any order, the settlement's money does
//!   not. A won dispute is never re-opened (a second chargeback after a reversal is not booked:
//!   reconciliation reports it as a break).

pub mod evidence;
pub mod list;

use serde::Serialize;

use crate::engine::view::{DisputeRow, PaymentRow};
use crate::engine::{Command, Effect, Keys, Staged, View};
use crate::error::{Error, Result};
use crate::ids::new_id;
use crate::ledger::{NewJournalTransaction, Posting, accounts};
use crate::money::Money;
use crate::psp::{DisputeStatus, DisputeUpdate};

/// What applying the PSP's word on a dispute did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DisputeApplied {
    /// The dispute moved (or was first recorded) to `status`.
    Moved { dispute_id: String, status: String },
    /// The dispute is there already, or further along.
    Unchanged { dispute_id: String, status: String },
    /// It names a payment we do not have.
    UnknownPayment,
}

/// The journal source reference of a dispute's withdrawal (as the settlement file's
/// `chargeback` line is matched).
pub fn withdrawal_ref(psp_dispute_id: &str) -> String {
    format!("chargeback:{psp_dispute_id}")
}

/// The journal source reference of a won dispute's reinstatement (the `chargeback_reversal`
/// line).
pub fn reinstatement_ref(psp_dispute_id: &str) -> String {
    format!("chargeback_reversal:{psp_dispute_id}")
}

/// The PSP's word on one dispute.
pub struct ApplyDispute {
    pub psp: String,
    pub update: DisputeUpdate,
}

impl Command for ApplyDispute {
    type Answer = DisputeApplied;

    fn keys(&self, keys: &mut Keys) {
        add_keys(keys, &self.update);
    }

    fn decide(&self, view: &View, staged: &mut Staged) -> Result<DisputeApplied> {
        decide(view, staged, &self.psp, &self.update)
    }
}

/// A dispute's funds given back, as the PSP's settlement shows them (reconciliation of a
/// `chargeback_reversal` line whose notification was lost): `update.status` is `won`, and an
/// open or `lost` dispute moves to `won` with its reinstatement booked.
pub struct ApplyReversal {
    pub psp: String,
    pub update: DisputeUpdate,
}

impl Command for ApplyReversal {
    type Answer = DisputeApplied;

    fn keys(&self, keys: &mut Keys) {
        add_keys(keys, &self.update);
    }

    fn decide(&self, view: &View, staged: &mut Staged) -> Result<DisputeApplied> {
        if self.update.status != DisputeStatus::Won {
            return Err(Error::Internal(format!(
                "a reversal of dispute {} must be `won`",
                self.update.psp_dispute_id
            )));
        }
        decide_with(view, staged, &self.psp, &self.update, true)
    }
}

pub(crate) fn add_keys(keys: &mut Keys, update: &DisputeUpdate) {
    keys.payments.insert(update.reference.clone());
    keys.source_refs
        .insert(format!("capture:{}", update.reference));
    keys.disputes.insert(update.psp_dispute_id.clone());
    keys.source_refs
        .insert(withdrawal_ref(&update.psp_dispute_id));
    keys.source_refs
        .insert(reinstatement_ref(&update.psp_dispute_id));
}

pub(crate) fn decide(
    view: &View,
    staged: &mut Staged,
    psp: &str,
    update: &DisputeUpdate,
) -> Result<DisputeApplied> {
    decide_with(view, staged, psp, update, false)
}

/// [`decide`]; `reversal_after_loss`: a `won` moves a `lost` dispute too ([`ApplyReversal`]).
fn decide_with(
    view: &View,
    staged: &mut Staged,
    psp: &str,
    update: &DisputeUpdate,
    reversal_after_loss: bool,
) -> Result<DisputeApplied> {
    let Some(payment) = view.payment(&update.reference) else {
        tracing::warn!(reference = %update.reference, dispute = %update.psp_dispute_id, "a dispute on an unknown payment");
        return Ok(DisputeApplied::UnknownPayment);
    };
    if payment.psp != psp {
        return Err(Error::invalid(
            "data.reference",
            format!("payment {} is not a {psp} payment", payment.id),
        ));
    }
    let currency = payment.amount.currency();
    if update.currency != currency.code() {
        return Err(Error::invalid(
            "data.currency",
            "does not match the disputed payment's currency",
        ));
    }
    if update.amount_minor <= 0 || update.amount_minor > payment.amount.minor() {
        return Err(Error::invalid(
            "data.amount",
            format!(
                "a dispute takes 1 to {} minor units of payment {}",
                payment.amount.minor(),
                payment.id
            ),
        ));
    }
    if !view
        .posted_refs
        .contains_key(&format!("capture:{}", payment.id))
    {
        // Our books lack the capture (its webhook is late): the PSP retries, by then the
        // poller or reconciliation has booked it.
        return Err(Error::conflict(
            "payment_not_captured",
            format!(
                "payment {} is {} in our books; a dispute needs its capture first",
                payment.id, payment.status
            ),
        ));
    }
    let amount = Money::new(update.amount_minor, currency);
    let id = &update.psp_dispute_id;
    let (dispute, from) = match view.disputes.get(id) {
        Some(existing) => {
            if existing.amount != amount || existing.payment_id != payment.id {
                return Err(Error::invalid(
                    "data.amount",
                    format!("does not match dispute {}", existing.id),
                ));
            }
            let from = DisputeStatus::parse(&existing.status)
                .ok_or_else(|| Error::Internal(format!("dispute status `{}`", existing.status)))?;
            let reversed_after_loss = reversal_after_loss
                && from == DisputeStatus::Lost
                && update.status == DisputeStatus::Won;
            if update.status.rank() <= from.rank() && !reversed_after_loss {
                return Ok(DisputeApplied::Unchanged {
                    dispute_id: existing.id.clone(),
                    status: existing.status.clone(),
                });
            }
            staged.push(Effect::Dispute {
                psp_dispute_id: id.clone(),
                status: update.status.as_str().to_owned(),
            });
            (existing.clone(), Some(from))
        }
        None => {
            let dispute = DisputeRow {
                id: new_id("dp"),
                psp: psp.to_owned(),
                psp_dispute_id: id.clone(),
                payment_id: payment.id.clone(),
                amount,
                reason: update.reason.clone(),
                status: update.status.as_str().to_owned(),
                created_at_ms: view.now_ms,
                updated_at_ms: view.now_ms,
            };
            staged.push(Effect::NewDispute(dispute.clone()));
            // The PSP has taken the funds back: the sellers and the platform give their shares.
            staged.post(view, withdrawal(view, psp, payment, &dispute, false)?)?;
            staged.outbox(
                "dispute.created",
                payment.id.clone(),
                event_payload(&dispute, DisputeStatus::NeedsResponse),
            );
            (dispute, None)
        }
    };
    if update.status == DisputeStatus::Won {
        staged.post(view, withdrawal(view, psp, payment, &dispute, true)?)?;
    }
    if update.status != DisputeStatus::NeedsResponse {
        staged.outbox(
            format!("dispute.{}", update.status.as_str()),
            payment.id.clone(),
            event_payload(&dispute, update.status),
        );
    }
    tracing::info!(dispute_id = %dispute.id, payment_id = %payment.id, from = ?from.map(DisputeStatus::as_str), to = update.status.as_str(), "dispute moved");
    metrics::counter!("ferropay_disputes_total", "status" => update.status.as_str()).increment(1);
    Ok(DisputeApplied::Moved {
        dispute_id: dispute.id,
        status: update.status.as_str().to_owned(),
    })
}

fn event_payload(dispute: &DisputeRow, status: DisputeStatus) -> serde_json::Value {
    serde_json::json!({
        "dispute_id": dispute.id,
        "payment_id": dispute.payment_id,
        "psp_dispute_id": dispute.psp_dispute_id,
        "status": status.as_str(),
        "amount": dispute.amount.minor(),
        "currency": dispute.amount.currency().code(),
        "reason": dispute.reason,
    })
}

/// The withdrawal of `dispute`'s amount (or, `reinstated`, its mirror): `psp_receivable`
/// credited, each order's seller debited with its share less its fee share, `platform_fees`
/// debited with the fee shares. An order's share is its part of the payment, rounded down;
/// the last order takes what rounding left.
fn withdrawal(
    view: &View,
    psp: &str,
    payment: &PaymentRow,
    dispute: &DisputeRow,
    reinstated: bool,
) -> Result<NewJournalTransaction> {
    let currency = payment.amount.currency();
    let orders = view.orders(&payment.id);
    let (shares, fees) = split(
        dispute.amount.minor(),
        payment.amount.minor(),
        &orders
            .iter()
            .map(|o| (o.amount_minor, o.platform_fee_minor))
            .collect::<Vec<_>>(),
    )?;
    let sign = if reinstated { -1 } else { 1 };
    let mut postings = vec![Posting::minor(
        accounts::psp_receivable(psp),
        -sign * dispute.amount.minor(),
        currency,
    )];
    for (order, (share, fee)) in orders.iter().zip(shares.iter().zip(&fees)) {
        let seller_part = share - fee;
        if seller_part != 0 {
            postings.push(Posting::minor(
                accounts::seller(&order.seller_id),
                sign * seller_part,
                currency,
            ));
        }
    }
    let fees_total: i64 = fees.iter().sum();
    if fees_total != 0 {
        postings.push(Posting::minor(
            accounts::PLATFORM_FEES,
            sign * fees_total,
            currency,
        ));
    }
    let (source_ref, kind) = if reinstated {
        (
            reinstatement_ref(&dispute.psp_dispute_id),
            "chargeback_reversal",
        )
    } else {
        (withdrawal_ref(&dispute.psp_dispute_id), "chargeback")
    };
    Ok(NewJournalTransaction {
        source_ref,
        kind,
        payment_id: Some(payment.id.clone()),
        postings,
    })
}

/// Splits `amount_minor` of a payment of `payment_minor` across its orders (`(amount, fee)`
/// each): each order's share and the platform fee share within it. Shares sum to
/// `amount_minor`; each fee share is at most its share.
pub fn split(
    amount_minor: i64,
    payment_minor: i64,
    orders: &[(i64, i64)],
) -> Result<(Vec<i64>, Vec<i64>)> {
    if payment_minor <= 0 || amount_minor > payment_minor || orders.is_empty() {
        return Err(Error::Internal(format!(
            "cannot split {amount_minor} of a payment of {payment_minor} over {} orders",
            orders.len()
        )));
    }
    let ratio = |part: i64, of: i64, whole: i64| -> Result<i64> {
        i64::try_from(i128::from(part) * i128::from(of) / i128::from(whole.max(1)))
            .map_err(|_| Error::Internal("dispute share overflows".into()))
    };
    let mut shares = Vec::with_capacity(orders.len());
    let mut fees = Vec::with_capacity(orders.len());
    let mut left = amount_minor;
    for (index, (order_minor, fee_minor)) in orders.iter().enumerate() {
        let share = if index + 1 == orders.len() {
            left
        } else {
            ratio(amount_minor, *order_minor, payment_minor)?
        };
        left -= share;
        let fee = ratio(share, *fee_minor, *order_minor)?.clamp(0, share.min(*fee_minor).max(0));
        shares.push(share);
        fees.push(fee);
    }
    Ok((shares, fees))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::split;

    #[test]
    fn a_whole_dispute_takes_each_order_and_its_fee() {
        let (shares, fees) = split(1750, 1750, &[(1500, 150), (250, 25)]).unwrap();
        assert_eq!(shares, [1500, 250]);
        assert_eq!(fees, [150, 25]);
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

        /// The shares sum to the disputed amount, none is negative, and no fee share passes
        /// its order's share or its order's fee.
        #[test]
        fn shares_sum_to_the_dispute(
            orders in proptest::collection::vec((1..100_000_i64, 0..=10_000_i64), 1..5),
            cut in 1..=10_000_i64,
        ) {
            let orders: Vec<(i64, i64)> = orders
                .into_iter()
                .map(|(amount, bps)| (amount, amount * bps / 10_000))
                .collect();
            let payment: i64 = orders.iter().map(|o| o.0).sum();
            let amount = (payment * cut / 10_000).max(1);
            let (shares, fees) = split(amount, payment, &orders).unwrap();
            prop_assert_eq!(shares.iter().sum::<i64>(), amount);
            for ((share, fee), (order, order_fee)) in shares.iter().zip(&fees).zip(&orders) {
                prop_assert!(*share >= 0 && *share <= *order + orders.len() as i64);
                prop_assert!(*fee >= 0 && fee <= share && fee <= order_fee);
            }
        }
    }
}
