//! What the engine runs: a [`Command`] names the rows it decides on ([`Keys`]) and decides
//! against the batch's [`View`], staging its effects. The use cases (pay-in, refunds, payouts,
//! reconciliation) implement it; the engine knows nothing of their rules.

use std::collections::BTreeSet;

use tokio::sync::oneshot;

use super::effect::Staged;
use super::view::View;
use crate::error::{Error, Result};
use crate::money::Currency;

/// A unit of work that moves money (or may): decided in memory within a batch, written with
/// the batch, answered after the batch commits.
pub trait Command: Send + 'static {
    type Answer: Send + 'static;

    /// Adds the rows this command reads or changes, so that the batch locks and loads them.
    fn keys(&self, keys: &mut Keys);

    /// Decides against `view` (the rows as they stand, with the effects of the batch's earlier
    /// commands applied). On `Ok`, `staged` holds every effect; on `Err`, whatever was staged is
    /// dropped and the command changes nothing.
    fn decide(&self, view: &View, staged: &mut Staged) -> Result<Self::Answer>;

    /// Whether `answer` (an accepted command's) may leave once the batch has committed, before
    /// the commit is durable (SQLite syncs after its commit, `store::durable`). Only for an
    /// answer that nobody outside the process hears, and whose every consequence outside it is
    /// made safe by a later command's durable commit (the one command that says so: pay-in's
    /// creation of a fresh payment, see `payin::commands`). Refusals and failures always wait
    /// for the sync: they may rest on the batches before. By default every answer waits.
    fn answer_before_sync(_answer: &Self::Answer) -> bool {
        false
    }
}

/// The rows a batch locks (in this order, each set sorted: payments, refunds, payouts, disputes,
/// idempotency keys, wallets; the chain head last) and the facts it loads.
#[derive(Debug, Default)]
pub struct Keys {
    pub payments: BTreeSet<String>,
    /// Payments the command locks and may change without moving their money (a new payment's
    /// PSP session): locked and loaded with `payments`, but their sellers' wallets are not
    /// locked for them — a batch of sessions then takes no wallet lock that a capture of the
    /// same sellers in another batch would wait for.
    pub payments_without_money: BTreeSet<String>,
    /// Refunds, with their payments (locked first).
    pub refunds: BTreeSet<String>,
    pub payouts: BTreeSet<String>,
    /// Disputes by the PSP's dispute id (locked after payouts; one that does not exist yet is
    /// created by the command, the unique index refusing a second creation in a parallel batch).
    pub disputes: BTreeSet<String>,
    /// Load, for the batch's failed or expired payments, the other payments of their checkouts
    /// that are live (in flight or paid): a late capture of one is refunded at once.
    pub live_siblings: bool,
    /// Checkouts whose live payment (in flight or paid) the command must know of, unlocked:
    /// the unique index on a checkout's live payment settles a race between batches.
    pub checkouts: BTreeSet<String>,
    /// `(api_key_id, idempotency_key)` whose answer the command saves.
    pub idempotency: BTreeSet<(String, String)>,
    /// Wallets the command moves (those of a loaded payment's orders, refund or payout are
    /// added by the engine).
    pub wallets: BTreeSet<(String, Currency)>,
    /// Load the refunds pending and succeeded per order of the batch's payments, and what is
    /// held out of each wallet for refunds still pending.
    pub refund_totals: bool,
    /// `(psp, event_id)` of webhook events, to tell duplicates.
    pub events: BTreeSet<(String, String)>,
    /// Journal source references the command may post, to tell what is posted already.
    pub source_refs: BTreeSet<String>,
}

/// A submitted command with its reply channel, type-erased so that one batch holds many kinds.
pub(crate) trait Pending: Send {
    fn keys(&self, keys: &mut Keys);
    /// Decides and keeps the answer (or the refusal) until [`Pending::answer`]. True when the
    /// command was accepted and `staged` holds its effects.
    fn decide(&mut self, view: &View, staged: &mut Staged) -> bool;
    /// [`Command::answer_before_sync`].
    fn answer_before_sync(&self) -> bool;
    /// Sends the kept answer (after the commit), or `error` (the batch failed).
    fn answer(self: Box<Self>, error: Option<Error>);
}

pub(crate) struct Submitted<C: Command> {
    pub command: C,
    pub answer: Option<Result<C::Answer>>,
    pub reply: oneshot::Sender<Result<C::Answer>>,
}

impl<C: Command> Pending for Submitted<C> {
    fn keys(&self, keys: &mut Keys) {
        self.command.keys(keys);
    }

    fn decide(&mut self, view: &View, staged: &mut Staged) -> bool {
        let answer = self.command.decide(view, staged);
        let accepted = answer.is_ok();
        self.answer = Some(answer);
        accepted
    }

    fn answer_before_sync(&self) -> bool {
        matches!(&self.answer, Some(Ok(answer)) if C::answer_before_sync(answer))
    }

    fn answer(self: Box<Self>, error: Option<Error>) {
        let answer = match (error, self.answer) {
            (Some(error), _) => Err(error),
            (None, Some(answer)) => answer,
            (None, None) => Err(Error::Internal(
                "a command was answered before its decision".into(),
            )),
        };
        // The caller may have gone (a client that hung up): its command is committed anyway.
        let _ = self.reply.send(answer);
    }
}
