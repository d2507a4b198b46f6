//! The batch's view of the rows its commands decide on: loaded (and locked) once for the whole
//! batch, then moved by each accepted command's effects, so that a later command in the same
//! batch sees what an earlier one did (a wallet credited, a refund taken, an event seen).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use super::effect::Effect;
use crate::error::{Error, Result};
use crate::ledger::accounts;
use crate::money::{Currency, Money};

#[derive(Clone, Debug)]
pub struct PaymentRow {
    pub id: String,
    pub checkout_id: String,
    pub status: String,
    pub amount: Money,
    pub psp: String,
    pub psp_token: Option<String>,
    pub psp_reference: Option<String>,
    pub failure_code: Option<String>,
    /// The payment's own platform fee rate (`None` for payments from before it was kept).
    pub platform_fee_bps: Option<i64>,
    /// A late capture refunded at once: the payment that paid its checkout.
    pub duplicate_of: Option<String>,
    pub created_at_ms: i64,
}

#[derive(Clone, Debug)]
pub struct OrderRow {
    pub id: String,
    pub payment_id: String,
    pub position: i64,
    /// The marketplace's own order id.
    pub order_id: String,
    pub seller_id: String,
    pub amount_minor: i64,
    pub platform_fee_minor: i64,
    pub status: String,
}

#[derive(Clone, Debug)]
pub struct RefundRow {
    pub id: String,
    pub payment_id: String,
    pub payment_order_id: String,
    pub seller_id: String,
    pub amount: Money,
    /// The platform's fee share the refund returns; the seller returns the rest.
    pub platform_fee_minor: i64,
    pub status: String,
    pub psp_refund_id: Option<String>,
    pub failure_code: Option<String>,
    pub created_at_ms: i64,
}

impl RefundRow {
    /// What the refund takes back from the seller's wallet.
    pub fn seller_part(&self) -> Result<Money> {
        self.amount
            .checked_sub(Money::new(self.platform_fee_minor, self.amount.currency()))
            .map_err(|e| Error::Internal(format!("refund {}: {e}", self.id)))
    }
}

#[derive(Clone, Debug)]
pub struct PayoutRow {
    pub id: String,
    pub seller_id: String,
    pub amount: Money,
    pub status: String,
    pub psp_payout_id: Option<String>,
    pub failure_code: Option<String>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

#[derive(Clone, Debug)]
pub struct DisputeRow {
    pub id: String,
    pub psp: String,
    pub psp_dispute_id: String,
    pub payment_id: String,
    pub amount: Money,
    pub reason: String,
    pub status: String,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

/// A payment to create, with its orders (pay-in step 2).
#[derive(Clone, Debug)]
pub struct NewPaymentRow {
    pub id: String,
    pub checkout_id: String,
    pub buyer_id: String,
    pub buyer_email: Option<String>,
    pub amount: Money,
    pub psp: String,
    pub return_url: String,
    pub platform_fee_bps: i64,
    pub created_at_ms: i64,
    pub orders: Vec<NewOrderRow>,
}

/// One order of a [`NewPaymentRow`], in its place.
#[derive(Clone, Debug)]
pub struct NewOrderRow {
    pub id: String,
    pub order_id: String,
    pub seller_id: String,
    pub amount_minor: i64,
}

/// The refunds of one order, by state (minor units of the payment's currency).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RefundTotals {
    pub pending_minor: i64,
    pub pending_fee_minor: i64,
    pub succeeded_minor: i64,
    pub succeeded_fee_minor: i64,
}

#[derive(Clone, Copy, Debug)]
pub struct WalletRow {
    /// What the platform owes the seller (minus the sum of the seller account's postings).
    pub balance: Money,
    /// The seller's part of refunds still pending at the PSP: not available for payouts.
    pub held: Money,
    /// The balance as loaded, so that the write adds only this batch's change.
    pub loaded: Money,
}

/// The rows of one batch.
#[derive(Debug, Default)]
pub struct View {
    pub now_ms: i64,
    pub payments: HashMap<String, PaymentRow>,
    /// Each payment's orders, in position order.
    pub orders: HashMap<String, Vec<OrderRow>>,
    pub refunds: HashMap<String, RefundRow>,
    pub payouts: HashMap<String, PayoutRow>,
    /// By the PSP's dispute id.
    pub disputes: HashMap<String, DisputeRow>,
    /// Checkout id → its live payments (not failed or expired, not a refunded duplicate);
    /// loaded for the batch's failed or expired payments when a command asked.
    pub live_siblings: HashMap<String, Vec<String>>,
    /// By order row id; loaded when a command asked for refund totals.
    pub refund_totals: HashMap<String, RefundTotals>,
    pub wallets: BTreeMap<(String, Currency), WalletRow>,
    /// Idempotency keys locked for the batch: true once one holds an answer.
    pub answered_keys: HashMap<(String, String), bool>,
    pub seen_events: HashSet<(String, String)>,
    /// Posted source references and their transaction ids.
    pub posted_refs: HashMap<String, String>,
    /// Rows the batch's accepted commands changed, to be written.
    pub dirty: Dirty,
}

/// What the batch must write back, by row.
#[derive(Debug, Default)]
pub struct Dirty {
    pub payments: BTreeSet<String>,
    pub orders: BTreeSet<(String, usize)>,
    pub new_refunds: Vec<String>,
    pub refunds: BTreeSet<String>,
    pub new_payouts: Vec<String>,
    pub payouts: BTreeSet<String>,
    pub new_disputes: Vec<String>,
    pub disputes: BTreeSet<String>,
    /// Payments created by the batch, in decision order (their rows are in `payments`).
    pub new_payments: Vec<NewPaymentRow>,
}

impl View {
    pub fn payment(&self, id: &str) -> Option<&PaymentRow> {
        self.payments.get(id)
    }

    pub fn orders(&self, payment_id: &str) -> &[OrderRow] {
        self.orders
            .get(payment_id)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    pub fn refund_totals(&self, order_row_id: &str) -> RefundTotals {
        self.refund_totals
            .get(order_row_id)
            .copied()
            .unwrap_or_default()
    }

    /// Another payment of `checkout_id` than `payment_id` that is live (in flight or paid).
    pub fn live_sibling(&self, checkout_id: &str, payment_id: &str) -> Option<&str> {
        self.live_siblings
            .get(checkout_id)?
            .iter()
            .map(String::as_str)
            .find(|id| *id != payment_id)
    }

    /// A wallet the batch loaded (a command that moves a wallet names it in its keys).
    pub fn wallet(&self, seller_id: &str, currency: Currency) -> Result<&WalletRow> {
        self.wallets
            .get(&(seller_id.to_owned(), currency))
            .ok_or_else(|| {
                Error::Internal(format!(
                    "wallet {seller_id}/{currency} was not loaded for this batch"
                ))
            })
    }

    /// What the seller may take out now: the balance less refunds pending (never below zero
    /// is not assumed: a wallet may owe the platform).
    pub fn available(&self, seller_id: &str, currency: Currency) -> Result<Money> {
        let wallet = self.wallet(seller_id, currency)?;
        wallet
            .balance
            .checked_sub(wallet.held)
            .map_err(|e| Error::Internal(e.to_string()))
    }

    /// The live payment (in flight or paid) of `checkout_id`, of those the batch loaded (the
    /// command asked for its checkout) or created.
    pub fn live_payment(&self, checkout_id: &str) -> Option<&str> {
        self.live_siblings
            .get(checkout_id)?
            .iter()
            .map(String::as_str)
            .find(|id| {
                self.payments.get(*id).is_none_or(|p| {
                    !matches!(p.status.as_str(), "failed" | "expired") && p.duplicate_of.is_none()
                })
            })
    }

    /// Whether the idempotency key exists (the batch locked it, or a command of the batch
    /// created it).
    pub fn key_exists(&self, api_key_id: &str, key: &str) -> bool {
        self.answered_keys
            .contains_key(&(api_key_id.to_owned(), key.to_owned()))
    }

    /// Refuses a request whose idempotency key is not locked for this batch or already holds an
    /// answer (a request that took the key over after this one's lease ran out has finished).
    pub fn check_unanswered(&self, api_key_id: &str, key: &str) -> Result<()> {
        match self
            .answered_keys
            .get(&(api_key_id.to_owned(), key.to_owned()))
        {
            Some(false) => Ok(()),
            Some(true) | None => Err(Error::conflict(
                "idempotency_key_in_use",
                "another request with this Idempotency-Key has finished; retry to get its answer",
            )),
        }
    }

    /// Moves the view by one accepted effect.
    pub(crate) fn apply(&mut self, effect: &Effect) -> Result<()> {
        match effect {
            Effect::Event { psp, event_id, .. } => {
                self.seen_events.insert((psp.clone(), event_id.clone()));
            }
            Effect::Payment {
                id,
                status,
                psp_reference,
                failure_code,
            } => {
                let row = self
                    .payments
                    .get_mut(id)
                    .ok_or_else(|| Error::Internal(format!("payment {id} not loaded")))?;
                row.status = status.clone();
                if psp_reference.is_some() {
                    row.psp_reference = psp_reference.clone();
                }
                if failure_code.is_some() {
                    row.failure_code = failure_code.clone();
                }
                if status == "succeeded" {
                    // A late capture: the payment that had failed took the money after all.
                    row.failure_code = None;
                }
                self.dirty.payments.insert(id.clone());
            }
            Effect::DuplicateOf { id, duplicate_of } => {
                let row = self
                    .payments
                    .get_mut(id)
                    .ok_or_else(|| Error::Internal(format!("payment {id} not loaded")))?;
                row.duplicate_of = Some(duplicate_of.clone());
                self.dirty.payments.insert(id.clone());
            }
            Effect::NewDispute(dispute) => {
                self.dirty.new_disputes.push(dispute.psp_dispute_id.clone());
                self.disputes
                    .insert(dispute.psp_dispute_id.clone(), dispute.clone());
            }
            Effect::Dispute {
                psp_dispute_id,
                status,
            } => {
                let row = self.disputes.get_mut(psp_dispute_id).ok_or_else(|| {
                    Error::Internal(format!("dispute {psp_dispute_id} not loaded"))
                })?;
                row.status = status.clone();
                row.updated_at_ms = self.now_ms;
                if !self.dirty.new_disputes.contains(psp_dispute_id) {
                    self.dirty.disputes.insert(psp_dispute_id.clone());
                }
            }
            Effect::Order {
                payment_id,
                position,
                status,
                platform_fee_minor,
            } => {
                let order = self
                    .orders
                    .get_mut(payment_id)
                    .and_then(|orders| orders.get_mut(*position))
                    .ok_or_else(|| Error::Internal(format!("order {payment_id}/{position}")))?;
                if let Some(status) = status {
                    order.status = status.clone();
                }
                if let Some(fee) = platform_fee_minor {
                    order.platform_fee_minor = *fee;
                }
                self.dirty.orders.insert((payment_id.clone(), *position));
            }
            Effect::NewRefund(refund) => {
                let totals = self
                    .refund_totals
                    .entry(refund.payment_order_id.clone())
                    .or_default();
                totals.pending_minor += refund.amount.minor();
                totals.pending_fee_minor += refund.platform_fee_minor;
                self.hold(refund, true)?;
                self.dirty.new_refunds.push(refund.id.clone());
                self.refunds.insert(refund.id.clone(), refund.clone());
            }
            Effect::Refund {
                id,
                status,
                psp_refund_id,
                failure_code,
            } => {
                let refund = self
                    .refunds
                    .get(id)
                    .cloned()
                    .ok_or_else(|| Error::Internal(format!("refund {id} not loaded")))?;
                if refund.status == "pending" && status != "pending" {
                    let totals = self
                        .refund_totals
                        .entry(refund.payment_order_id.clone())
                        .or_default();
                    totals.pending_minor -= refund.amount.minor();
                    totals.pending_fee_minor -= refund.platform_fee_minor;
                    if status == "succeeded" {
                        totals.succeeded_minor += refund.amount.minor();
                        totals.succeeded_fee_minor += refund.platform_fee_minor;
                    }
                    self.hold(&refund, false)?;
                }
                let row = self.refunds.get_mut(id).expect("checked above");
                row.status = status.clone();
                if psp_refund_id.is_some() {
                    row.psp_refund_id = psp_refund_id.clone();
                }
                if failure_code.is_some() {
                    row.failure_code = failure_code.clone();
                }
                if !self.dirty.new_refunds.contains(id) {
                    self.dirty.refunds.insert(id.clone());
                }
            }
            Effect::NewPayout(payout) => {
                self.dirty.new_payouts.push(payout.id.clone());
                self.payouts.insert(payout.id.clone(), payout.clone());
            }
            Effect::Payout {
                id,
                status,
                psp_payout_id,
                failure_code,
            } => {
                let row = self
                    .payouts
                    .get_mut(id)
                    .ok_or_else(|| Error::Internal(format!("payout {id} not loaded")))?;
                row.status = status.clone();
                row.updated_at_ms = self.now_ms;
                if psp_payout_id.is_some() {
                    row.psp_payout_id = psp_payout_id.clone();
                }
                if failure_code.is_some() {
                    row.failure_code = failure_code.clone();
                }
                if !self.dirty.new_payouts.contains(id) {
                    self.dirty.payouts.insert(id.clone());
                }
            }
            Effect::Post { id, transaction } => {
                for posting in &transaction.postings {
                    if let Some(seller_id) = accounts::seller_id(&posting.account) {
                        let key = (seller_id.to_owned(), posting.amount.currency());
                        let wallet = self.wallets.get_mut(&key).ok_or_else(|| {
                            Error::Internal(format!("wallet {seller_id} not loaded"))
                        })?;
                        // The wallet holds what we owe the seller: a credit (negative) raises it.
                        wallet.balance = wallet
                            .balance
                            .checked_sub(posting.amount)
                            .map_err(|e| Error::Internal(e.to_string()))?;
                    }
                }
                self.posted_refs
                    .insert(transaction.source_ref.clone(), id.clone());
            }
            Effect::Answer {
                api_key_id, key, ..
            } => {
                self.answered_keys
                    .insert((api_key_id.clone(), key.clone()), true);
            }
            Effect::NewPayment(new) => {
                if let Some(live) = self.live_payment(&new.checkout_id) {
                    return Err(Error::Internal(format!(
                        "checkout {} has live payment {live}",
                        new.checkout_id
                    )));
                }
                self.payments.insert(
                    new.id.clone(),
                    PaymentRow {
                        id: new.id.clone(),
                        checkout_id: new.checkout_id.clone(),
                        status: "requires_payment".into(),
                        amount: new.amount,
                        psp: new.psp.clone(),
                        psp_token: None,
                        psp_reference: None,
                        failure_code: None,
                        platform_fee_bps: Some(new.platform_fee_bps),
                        duplicate_of: None,
                        created_at_ms: new.created_at_ms,
                    },
                );
                let orders = new
                    .orders
                    .iter()
                    .enumerate()
                    .map(|(position, o)| OrderRow {
                        id: o.id.clone(),
                        payment_id: new.id.clone(),
                        position: position as i64,
                        order_id: o.order_id.clone(),
                        seller_id: o.seller_id.clone(),
                        amount_minor: o.amount_minor,
                        platform_fee_minor: 0,
                        status: "not_started".into(),
                    })
                    .collect();
                self.orders.insert(new.id.clone(), orders);
                self.live_siblings
                    .entry(new.checkout_id.clone())
                    .or_default()
                    .push(new.id.clone());
                self.dirty.new_payments.push(new.as_ref().clone());
            }
            Effect::NewKey {
                api_key_id, key, ..
            } => {
                let previous = self
                    .answered_keys
                    .insert((api_key_id.clone(), key.clone()), false);
                if previous.is_some() {
                    return Err(Error::Internal(format!("idempotency key {key} exists")));
                }
            }
            Effect::Session {
                payment_id,
                token,
                psp_reference,
                ..
            } => {
                let row = self
                    .payments
                    .get_mut(payment_id)
                    .ok_or_else(|| Error::Internal(format!("payment {payment_id} not loaded")))?;
                row.psp_token = Some(token.clone());
                if row.psp_reference.is_none() {
                    row.psp_reference = psp_reference.clone();
                }
            }
            Effect::Outbox { .. }
            | Effect::Job { .. }
            | Effect::LeasedJob { .. }
            | Effect::CompleteJob { .. }
            | Effect::CancelJob { .. } => {}
        }
        Ok(())
    }

    /// Adds (or releases) a pending refund's hold on its seller's wallet.
    fn hold(&mut self, refund: &RefundRow, add: bool) -> Result<()> {
        let part = refund.seller_part()?;
        let key = (refund.seller_id.clone(), refund.amount.currency());
        if let Some(wallet) = self.wallets.get_mut(&key) {
            wallet.held = if add {
                wallet.held.checked_add(part)
            } else {
                wallet.held.checked_sub(part)
            }
            .map_err(|e| Error::Internal(e.to_string()))?;
        }
        Ok(())
    }
}
