//! Payment creation as money-engine commands, so that many requests share one commit and
//! set-based statements instead of two write transactions each (the engine's group commit):
//!
//! - [`CreatePayment`], pay-in step 2 for a key never seen: the key (straight at
//!   `payment_created`), the payment and its orders, its registration job already leased to the
//!   request and its poll job. It must commit before the PSP is called: should the process die
//!   after the PSP made the session, the payment and its leased job exist, the lease runs out
//!   and a worker registers again under the same PSP idempotency key (the payment id), which
//!   finds the same session (I5). It must be visible before the PSP is called (a second
//!   request with the same key then meets it and answers 409), but need not yet be durable, so
//!   it is answered once its batch commits, before SQLite's sync (`store::durable`): should a
//!   power loss take it back, the PSP holds a session under an id that no payment has, whose
//!   URL nobody was given (the answer that carries it leaves only after [`StoreSession`]'s
//!   durable commit, which makes this one durable too); the client's retry with its key makes
//!   a new payment, charged once.
//! - [`StoreSession`], step 4 of the same request: the PSP's session, the orders `executing`,
//!   the job done and the answer saved with the key. The buyer never gets a hosted-page URL
//!   that a crash could forget: the answer leaves after the commit.
//!
//! Both decide in memory against the batch's view; what they cannot decide there (a key that
//! exists, a payment that moved on meanwhile) they hand back to the transactional path in
//! [`super::create`] and [`super::register`], which keeps every guarantee for those rare cases.

use serde_json::json;

use super::model::{OrderStatus, PaymentView};
use super::{poll, register};
use crate::clock::rfc3339_from_ms;
use crate::engine::effect::Effect;
use crate::engine::view::NewPaymentRow;
use crate::engine::{Command, Keys, Staged, View};
use crate::error::{Error, Result};
use crate::idempotency::{CreateOutcome, KeyScope};
use crate::jobs::ClaimedJob;
use crate::psp::PspSession;

/// Step 2 for a key never seen (see the module's header).
pub(crate) struct CreatePayment {
    pub scope: KeyScope,
    /// The request's fingerprint, kept with the key.
    pub request_sha256: String,
    pub payment: NewPaymentRow,
    /// The registration job, leased to the request until `lease_until_ms`.
    pub job: ClaimedJob,
    pub lease_until_ms: i64,
    pub poll_due_at_ms: i64,
}

/// How [`CreatePayment`] was decided.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Created {
    /// Written: the payment exists, its registration job is the request's.
    Fresh,
    /// The key exists (another request made it): nothing was written; the general path
    /// judges the request against it (replay, resume, or 409).
    KeyExists,
}

impl Command for CreatePayment {
    type Answer = Created;

    fn keys(&self, keys: &mut Keys) {
        keys.idempotency
            .insert((self.scope.api_key_id.clone(), self.scope.key.clone()));
        keys.checkouts.insert(self.payment.checkout_id.clone());
    }

    /// A fresh payment: visible is enough before the PSP call (see the module's header).
    fn answer_before_sync(answer: &Created) -> bool {
        *answer == Created::Fresh
    }

    fn decide(&self, view: &View, staged: &mut Staged) -> Result<Created> {
        if view.key_exists(&self.scope.api_key_id, &self.scope.key) {
            return Ok(Created::KeyExists);
        }
        let payment = &self.payment;
        if view.live_payment(&payment.checkout_id).is_some() {
            return Err(checkout_in_flight(&payment.checkout_id));
        }
        let payload = json!({ "payment_id": payment.id });
        staged.push(Effect::NewPayment(Box::new(payment.clone())));
        staged.push(Effect::NewKey {
            api_key_id: self.scope.api_key_id.clone(),
            key: self.scope.key.clone(),
            request_sha256: self.request_sha256.clone(),
            payment_id: payment.id.clone(),
        });
        assert_eq!(
            self.job.idempotency_key, payment.id,
            "the job is the payment's"
        );
        staged.push(Effect::LeasedJob {
            id: self.job.id.clone(),
            kind: register::KIND,
            key: payment.id.clone(),
            payload: payload.clone(),
            lease_token: self.job.lease_token.clone(),
            lease_until_ms: self.lease_until_ms,
        });
        staged.push(Effect::Job {
            kind: poll::KIND,
            key: payment.id.clone(),
            payload,
            due_at_ms: self.poll_due_at_ms,
        });
        Ok(Created::Fresh)
    }
}

/// The 409 for a second live payment of one checkout.
pub(crate) fn checkout_in_flight(checkout_id: &str) -> Error {
    Error::conflict(
        "checkout_in_flight",
        format!("checkout `{checkout_id}` already has a payment in flight or paid"),
    )
}

/// Step 4 of the request that created the payment (see the module's header).
pub(crate) struct StoreSession {
    pub scope: KeyScope,
    pub job: ClaimedJob,
    pub session: PspSession,
    /// The payment as the request created it: the answer is this, as the batch leaves it.
    pub created: PaymentView,
}

/// How [`StoreSession`] was decided.
#[derive(Debug)]
pub(crate) enum SessionStored {
    /// The session, the job and the answer are written: this is the answer.
    Answered(CreateOutcome),
    /// The session is written and the job done, but a request that took the key over has
    /// answered it: the caller's own answer step says 409.
    KeyTaken,
    /// The payment moved on (or has a session) since it was created: nothing was written;
    /// the transactional path stores the session and answers from the rows.
    Stale,
}

impl Command for StoreSession {
    type Answer = SessionStored;

    fn keys(&self, keys: &mut Keys) {
        // A session moves no money: the payment is locked, its sellers' wallets are not.
        keys.payments_without_money.insert(self.created.id.clone());
        keys.idempotency
            .insert((self.scope.api_key_id.clone(), self.scope.key.clone()));
    }

    fn decide(&self, view: &View, staged: &mut Staged) -> Result<SessionStored> {
        decide_session(self, view, staged)
    }
}

fn decide_session(
    command: &StoreSession,
    view: &View,
    staged: &mut Staged,
) -> Result<SessionStored> {
    let payment_id = &command.created.id;
    let session = &command.session;
    let payment = view
        .payment(payment_id)
        .ok_or_else(|| Error::NotFound(format!("payment `{payment_id}`")))?;
    if payment.status != "requires_payment" || payment.psp_token.is_some() {
        return Ok(SessionStored::Stale);
    }
    if !session.matches(
        payment.amount.minor(),
        payment.amount.currency().code(),
        payment_id,
    ) {
        return Err(Error::Internal(format!(
            "the PSP's session {} does not match payment {payment_id}",
            session.token
        )));
    }
    staged.push(Effect::Session {
        payment_id: payment_id.clone(),
        token: session.token.clone(),
        url: session.url.clone(),
        psp_reference: session.psp_reference.clone(),
    });
    let mut answer = command.created.clone();
    answer.redirect_url = Some(session.url.clone());
    answer.updated_at = rfc3339_from_ms(view.now_ms);
    for (position, order) in view.orders(payment_id).iter().enumerate() {
        let status = if order.status == OrderStatus::NotStarted.as_str() {
            staged.push(Effect::Order {
                payment_id: payment_id.clone(),
                position,
                status: Some(OrderStatus::Executing.as_str().to_owned()),
                platform_fee_minor: None,
            });
            OrderStatus::Executing
        } else {
            OrderStatus::parse(&order.status)
                .ok_or_else(|| Error::Internal(format!("order status `{}`", order.status)))?
        };
        let shown = answer
            .orders
            .get_mut(position)
            .filter(|shown| shown.id == order.id)
            .ok_or_else(|| Error::Internal(format!("payment {payment_id}'s orders differ")))?;
        shown.status = status;
    }
    staged.push(Effect::CompleteJob {
        id: command.job.id.clone(),
        lease_token: command.job.lease_token.clone(),
    });
    if view
        .check_unanswered(&command.scope.api_key_id, &command.scope.key)
        .is_err()
    {
        return Ok(SessionStored::KeyTaken);
    }
    let body = serde_json::to_string(&answer).map_err(|e| Error::Internal(e.to_string()))?;
    Ok(SessionStored::Answered(staged.answer(
        &command.scope.api_key_id,
        &command.scope.key,
        201,
        body,
    )))
}
