//! Inbound PSP webhooks, after their signature is verified: the event as one command to the
//! money engine ([`ApplyEvent`]). Decided in the engine's batch: a duplicate event id changes
//! nothing; otherwise its dedupe row is written with whatever the event moves (a payment, a
//! refund, a payout or a dispute), in the batch's one commit.

use crate::engine::{Command, Effect, Keys, Staged, View};
use crate::error::Result;
use crate::payin::apply::{self, ApplyResult};
use crate::psp::{PspEvent, PspEventKind};
use crate::{dispute, payout, refund};

/// A verified webhook event from `psp`.
pub struct ApplyEvent {
    pub psp: String,
    pub event: PspEvent,
    /// The platform fee rate for payments that do not carry their own.
    pub fallback_fee_bps: u32,
}

impl Command for ApplyEvent {
    type Answer = ApplyResult;

    fn keys(&self, keys: &mut Keys) {
        keys.events
            .insert((self.psp.clone(), self.event.id.clone()));
        match &self.event.kind {
            PspEventKind::Payment(update) => apply::add_keys(keys, update),
            PspEventKind::Refund(update) => refund::add_settlement_keys(keys, update),
            PspEventKind::Payout(update) => payout::add_settlement_keys(keys, update),
            PspEventKind::Dispute(update) => dispute::add_keys(keys, update),
            PspEventKind::Other => {}
        }
    }

    fn decide(&self, view: &View, staged: &mut Staged) -> Result<ApplyResult> {
        let (psp, event) = (&self.psp, &self.event);
        if view.seen_events.contains(&(psp.clone(), event.id.clone())) {
            metrics::counter!("ferropay_webhook_events_total", "result" => "duplicate")
                .increment(1);
            return Ok(ApplyResult::Duplicate);
        }
        let reference = match &event.kind {
            PspEventKind::Payment(update) => Some(update.reference.clone()),
            PspEventKind::Refund(update) | PspEventKind::Payout(update) => {
                Some(update.reference.clone())
            }
            PspEventKind::Dispute(update) => Some(update.psp_dispute_id.clone()),
            PspEventKind::Other => None,
        };
        staged.push(Effect::Event {
            psp: psp.clone(),
            event_id: event.id.clone(),
            event_type: event.event_type.clone(),
            reference,
        });
        Ok(match &event.kind {
            PspEventKind::Payment(update) => {
                apply::decide(view, staged, psp, update, self.fallback_fee_bps)?
            }
            PspEventKind::Refund(update) => {
                let settled = refund::decide_settlement(view, staged, psp, update)?;
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
                let settled = payout::decide_settlement(view, staged, update)?;
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
            PspEventKind::Dispute(update) => {
                let applied = dispute::decide(view, staged, psp, update)?;
                match applied {
                    dispute::DisputeApplied::UnknownPayment => ApplyResult::UnknownPayment {
                        reference: update.reference.clone(),
                    },
                    dispute::DisputeApplied::Moved { .. } => ApplyResult::Settled {
                        reference: update.psp_dispute_id.clone(),
                        outcome: "dispute_moved",
                        changed: true,
                    },
                    dispute::DisputeApplied::Unchanged { .. } => ApplyResult::Settled {
                        reference: update.psp_dispute_id.clone(),
                        outcome: "dispute_unchanged",
                        changed: false,
                    },
                }
            }
            PspEventKind::Other => ApplyResult::Ignored,
        })
    }
}
