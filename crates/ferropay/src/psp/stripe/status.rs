//! Stripe's statuses in ferropay's words: one table per object, and the webhook events that
//! ferropay acts on. Everything else is recorded and acknowledged.
//!
//! | Checkout Session `status` | `payment_status` | PaymentIntent `status` | ferropay session |
//! |---|---|---|---|
//! | `open` | any | any | open (the buyer may still pay; a declined card stays here) |
//! | `complete` | `paid` / `no_payment_required` | any | succeeded |
//! | `complete` | `unpaid` | `processing`, none | processing (asynchronous payment method) |
//! | `complete` | `unpaid` | `requires_payment_method`, `canceled` | failed |
//! | `expired` | any | any | expired |
//!
//! | Refund `status` | ferropay refund |
//! |---|---|
//! | `pending`, `requires_action` | pending (asked again later) |
//! | `succeeded` | succeeded |
//! | `failed`, `canceled` | failed |
//!
//! | Dispute `status` | ferropay dispute |
//! |---|---|
//! | `warning_needs_response`, `needs_response` | `needs_response` |
//! | `warning_under_review`, `under_review` | `under_review` |
//! | `won`, `warning_closed` | `won` |
//! | `lost` | `lost` |

use crate::psp::{DisputeStatus, PspSessionStatus};

/// A Checkout Session's state (see the table above).
pub fn session_status(
    status: &str,
    payment_status: &str,
    intent_status: Option<&str>,
) -> Option<PspSessionStatus> {
    Some(match (status, payment_status, intent_status) {
        ("open", _, _) => PspSessionStatus::Open,
        ("complete", "paid" | "no_payment_required", _) => PspSessionStatus::Succeeded,
        ("complete", "unpaid", None | Some("processing")) => PspSessionStatus::Processing,
        ("complete", "unpaid", Some("requires_payment_method" | "canceled")) => {
            PspSessionStatus::Failed
        }
        ("complete", "unpaid", Some(_)) => PspSessionStatus::Processing,
        ("expired", _, _) => PspSessionStatus::Expired,
        _ => return None,
    })
}

/// The session state a `checkout.session.*` event says, whatever the object's fields.
pub fn session_event(event_type: &str) -> Option<SessionEvent> {
    Some(match event_type {
        "checkout.session.completed" => SessionEvent::FromObject,
        "checkout.session.async_payment_succeeded" => SessionEvent::Is(PspSessionStatus::Succeeded),
        "checkout.session.async_payment_failed" => SessionEvent::Is(PspSessionStatus::Failed),
        "checkout.session.expired" => SessionEvent::Is(PspSessionStatus::Expired),
        _ => return None,
    })
}

/// What a session event tells.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionEvent {
    /// Read the session object's `status` and `payment_status` (`completed`: paid, or unpaid
    /// while an asynchronous payment is under way).
    FromObject,
    Is(PspSessionStatus),
}

/// A refund's end: `Some(true)` succeeded, `Some(false)` failed, `None` still pending.
pub fn refund_settled(status: &str) -> Option<bool> {
    match status {
        "succeeded" => Some(true),
        "failed" | "canceled" => Some(false),
        _ => None,
    }
}

/// The refund events ferropay reads the refund object of.
pub const REFUND_EVENTS: [&str; 4] = [
    "refund.created",
    "refund.updated",
    "refund.failed",
    "charge.refund.updated",
];

/// A dispute's stage (see the table above).
pub fn dispute_status(status: &str) -> Option<DisputeStatus> {
    Some(match status {
        "warning_needs_response" | "needs_response" => DisputeStatus::NeedsResponse,
        "warning_under_review" | "under_review" => DisputeStatus::UnderReview,
        "won" | "warning_closed" => DisputeStatus::Won,
        "lost" => DisputeStatus::Lost,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_session_table() {
        use PspSessionStatus::*;
        for (status, paid, intent, expected) in [
            ("open", "unpaid", None, Some(Open)),
            (
                "open",
                "unpaid",
                Some("requires_payment_method"),
                Some(Open),
            ),
            ("complete", "paid", Some("succeeded"), Some(Succeeded)),
            ("complete", "no_payment_required", None, Some(Succeeded)),
            ("complete", "unpaid", None, Some(Processing)),
            ("complete", "unpaid", Some("processing"), Some(Processing)),
            (
                "complete",
                "unpaid",
                Some("requires_payment_method"),
                Some(Failed),
            ),
            ("complete", "unpaid", Some("canceled"), Some(Failed)),
            ("expired", "unpaid", None, Some(Expired)),
            ("unheard_of", "paid", None, None),
        ] {
            assert_eq!(
                session_status(status, paid, intent),
                expected,
                "{status}/{paid}/{intent:?}"
            );
        }
    }

    #[test]
    fn refunds_and_disputes() {
        assert_eq!(refund_settled("succeeded"), Some(true));
        assert_eq!(refund_settled("canceled"), Some(false));
        assert_eq!(refund_settled("pending"), None);
        assert_eq!(
            dispute_status("needs_response"),
            Some(DisputeStatus::NeedsResponse)
        );
        assert_eq!(dispute_status("lost"), Some(DisputeStatus::Lost));
        assert_eq!(dispute_status("charge_refunded"), None);
    }
}
