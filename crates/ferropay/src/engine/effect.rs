//! What a command's decision changes, staged until the command is accepted: the view then moves
//! by each effect (so later commands see it), and the batch writes them all at once.

use serde_json::Value;

use super::view::{DisputeRow, NewPaymentRow, PayoutRow, RefundRow, View};
use crate::error::{Error, Result};
use crate::ids::new_id;
use crate::ledger::{NewJournalTransaction, PostOutcome, check_balanced};

#[derive(Clone, Debug)]
pub enum Effect {
    /// A webhook event seen (its dedupe row).
    Event {
        psp: String,
        event_id: String,
        event_type: String,
        reference: Option<String>,
    },
    /// A payment's new status (and what the PSP told of it).
    Payment {
        id: String,
        status: String,
        psp_reference: Option<String>,
        failure_code: Option<String>,
    },
    /// A payment captured late while another payment had its checkout: refunded at once.
    DuplicateOf {
        id: String,
        duplicate_of: String,
    },
    /// One order of a payment (by its place in the payment's orders).
    Order {
        payment_id: String,
        position: usize,
        status: Option<String>,
        platform_fee_minor: Option<i64>,
    },
    NewRefund(RefundRow),
    Refund {
        id: String,
        status: String,
        psp_refund_id: Option<String>,
        failure_code: Option<String>,
    },
    NewPayout(PayoutRow),
    Payout {
        id: String,
        status: String,
        psp_payout_id: Option<String>,
        failure_code: Option<String>,
    },
    NewDispute(DisputeRow),
    /// A dispute's new status (by the PSP's dispute id).
    Dispute {
        psp_dispute_id: String,
        status: String,
    },
    /// A balanced journal transaction (checked when staged), with the id it will have.
    Post {
        id: String,
        transaction: NewJournalTransaction,
    },
    Outbox {
        topic: String,
        aggregate_id: String,
        payload: Value,
    },
    /// A job to enqueue (nothing happens if one of this kind and key exists).
    Job {
        kind: &'static str,
        key: String,
        payload: Value,
        due_at_ms: i64,
    },
    /// A job inserted already leased to the command's caller (`running`, its first attempt
    /// counted), which runs it at once and completes it by its lease token.
    LeasedJob {
        id: String,
        kind: &'static str,
        key: String,
        payload: Value,
        lease_token: String,
        /// When the lease runs out (a worker may then take the job over).
        lease_until_ms: i64,
    },
    /// A leased job done; nothing happens if its lease was lost meanwhile.
    CompleteJob {
        id: String,
        lease_token: String,
    },
    /// A new payment and its orders (pay-in step 2), `requires_payment` / `not_started`.
    NewPayment(Box<NewPaymentRow>),
    /// A new idempotency key, at `payment_created` for `payment_id` and held by its request.
    NewKey {
        api_key_id: String,
        key: String,
        request_sha256: String,
        payment_id: String,
    },
    /// The PSP's hosted-page session of a payment (pay-in step 4).
    Session {
        payment_id: String,
        token: String,
        url: String,
        psp_reference: Option<String>,
    },
    /// A queued job that is no longer needed.
    CancelJob {
        kind: &'static str,
        key: String,
    },
    /// The answer saved with a request's idempotency key.
    Answer {
        api_key_id: String,
        key: String,
        status: u16,
        body: String,
    },
}

/// The effects of one command's decision.
#[derive(Debug, Default)]
pub struct Staged {
    pub(crate) effects: Vec<Effect>,
}

impl Staged {
    pub fn push(&mut self, effect: Effect) {
        self.effects.push(effect);
    }

    /// Stages a journal transaction: checked balanced now (I3); a source reference posted
    /// before (or earlier in this batch) posts nothing and answers `AlreadyPosted` (I6).
    pub fn post(&mut self, view: &View, transaction: NewJournalTransaction) -> Result<PostOutcome> {
        if let Some(transaction_id) = view.posted_refs.get(&transaction.source_ref) {
            return Ok(PostOutcome::AlreadyPosted {
                transaction_id: transaction_id.clone(),
            });
        }
        if self.effects.iter().any(|e| {
            matches!(e, Effect::Post { transaction: t, .. } if t.source_ref == transaction.source_ref)
        }) {
            return Err(Error::Internal(format!(
                "one command posts {} twice",
                transaction.source_ref
            )));
        }
        check_balanced(&transaction.postings)?;
        let id = new_id("jtx");
        self.effects.push(Effect::Post {
            id: id.clone(),
            transaction,
        });
        Ok(PostOutcome::Posted { transaction_id: id })
    }

    /// Saves `body` as the answer of the request keyed `(api_key_id, key)` (checked unanswered
    /// with [`View::check_unanswered`]), and answers it as a fresh create outcome.
    pub fn answer(
        &mut self,
        api_key_id: &str,
        key: &str,
        status: u16,
        body: String,
    ) -> crate::idempotency::CreateOutcome {
        self.effects.push(Effect::Answer {
            api_key_id: api_key_id.to_owned(),
            key: key.to_owned(),
            status,
            body: body.clone(),
        });
        crate::idempotency::CreateOutcome {
            status,
            body,
            replayed: false,
        }
    }

    pub fn outbox(
        &mut self,
        topic: impl Into<String>,
        aggregate_id: impl Into<String>,
        payload: Value,
    ) {
        self.effects.push(Effect::Outbox {
            topic: topic.into(),
            aggregate_id: aggregate_id.into(),
            payload,
        });
    }
}
