//! The payment state machine as one pure function (invariant I7): given where a payment stands
//! and what the PSP says, what changes. A status only moves forward; a late, duplicate or
//! out-of-order outcome changes nothing; money is captured (posted) on exactly one transition.
//!
//! One exception, because money the PSP took must be booked whatever our status says: a
//! `succeeded` from the PSP moves a `failed` or `expired` payment to `succeeded` (a late
//! capture: our expiry ran first, or a 3-D Secure page left open was paid). It is the only
//! move out of a final status, it captures, and `succeeded` is never left, so it happens at
//! most once and a payment is still captured at most once.

use super::model::{OrderStatus, PaymentStatus};
use crate::psp::PspOutcome;

/// What applying an outcome does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transition {
    pub payment: PaymentStatus,
    pub orders: OrderStatus,
    /// Post the capture to the ledger (only on the move into `succeeded`).
    pub capture: bool,
    /// A late capture: the move from `failed` or `expired` into `succeeded`.
    pub late: bool,
}

/// The transition for `outcome` from `from`, or `None` when it changes nothing.
pub fn on_psp_outcome(from: PaymentStatus, outcome: PspOutcome) -> Option<Transition> {
    use PaymentStatus as P;
    let open = matches!(from, P::RequiresPayment | P::Processing);
    let given_up = matches!(from, P::Failed | P::Expired);
    let to = |payment, orders, capture| {
        Some(Transition {
            payment,
            orders,
            capture,
            late: false,
        })
    };
    match outcome {
        PspOutcome::Processing if from == P::RequiresPayment => {
            to(P::Processing, OrderStatus::Pending, false)
        }
        PspOutcome::Succeeded if open => to(P::Succeeded, OrderStatus::Succeeded, true),
        PspOutcome::Succeeded if given_up => Some(Transition {
            payment: P::Succeeded,
            orders: OrderStatus::Succeeded,
            capture: true,
            late: true,
        }),
        PspOutcome::Failed if open => to(P::Failed, OrderStatus::Failed, false),
        PspOutcome::Expired if open => to(P::Expired, OrderStatus::Expired, false),
        _ => None,
    }
}

/// How far along a status is, for checking that statuses never go backwards.
pub fn rank(status: PaymentStatus) -> u8 {
    match status {
        PaymentStatus::RequiresPayment => 0,
        PaymentStatus::Processing => 1,
        PaymentStatus::Succeeded | PaymentStatus::Failed | PaymentStatus::Expired => 2,
        PaymentStatus::PartiallyRefunded => 3,
        PaymentStatus::Refunded => 4,
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const OUTCOMES: [PspOutcome; 4] = [
        PspOutcome::Processing,
        PspOutcome::Succeeded,
        PspOutcome::Failed,
        PspOutcome::Expired,
    ];

    /// Whether `t` from `from` is allowed: forward, or the one late capture.
    fn allowed(from: PaymentStatus, t: Transition) -> bool {
        let late_capture = matches!(from, PaymentStatus::Failed | PaymentStatus::Expired)
            && t.payment == PaymentStatus::Succeeded
            && t.capture
            && t.late;
        (rank(t.payment) > rank(from) && !t.late) || late_capture
    }

    /// Runs a sequence of outcomes from `requires_payment`, as the webhook path would.
    fn run(outcomes: &[PspOutcome]) -> (PaymentStatus, u32) {
        let mut status = PaymentStatus::RequiresPayment;
        let mut captures = 0;
        for outcome in outcomes {
            if let Some(t) = on_psp_outcome(status, *outcome) {
                assert!(allowed(status, t), "{status:?} -> {t:?}");
                status = t.payment;
                captures += u32::from(t.capture);
            }
        }
        (status, captures)
    }

    #[test]
    fn every_sequence_moves_forward_and_captures_at_most_once() {
        // All sequences of up to five outcomes, with repeats: duplicates and reorderings.
        let mut sequences: Vec<Vec<PspOutcome>> = vec![vec![]];
        for _ in 0..5 {
            let mut longer = Vec::new();
            for seq in &sequences {
                for outcome in OUTCOMES {
                    let mut next = seq.clone();
                    next.push(outcome);
                    longer.push(next);
                }
            }
            sequences.extend(longer);
        }
        for seq in &sequences {
            let (status, captures) = run(seq);
            assert!(captures <= 1, "{seq:?} captured {captures} times");
            assert_eq!(captures == 1, status == PaymentStatus::Succeeded, "{seq:?}");
            // Money the PSP took wins (a late capture); else the first decisive outcome.
            let first_final = seq.iter().find(|o| **o != PspOutcome::Processing);
            let expected = match first_final {
                _ if seq.contains(&PspOutcome::Succeeded) => PaymentStatus::Succeeded,
                Some(PspOutcome::Failed) => PaymentStatus::Failed,
                Some(PspOutcome::Expired) => PaymentStatus::Expired,
                _ if seq.contains(&PspOutcome::Processing) => PaymentStatus::Processing,
                _ => PaymentStatus::RequiresPayment,
            };
            assert_eq!(status, expected, "{seq:?}");
        }
    }

    fn any_outcome() -> impl Strategy<Value = PspOutcome> {
        proptest::sample::select(OUTCOMES.to_vec())
    }

    fn any_status() -> impl Strategy<Value = PaymentStatus> {
        proptest::sample::select(PaymentStatus::ALL.to_vec())
    }

    /// What a PSP really sends for one payment: maybe `processing`, then at most one decisive
    /// outcome.
    fn psp_stream() -> impl Strategy<Value = Vec<PspOutcome>> {
        let decisive = proptest::option::of(proptest::sample::select(vec![
            PspOutcome::Succeeded,
            PspOutcome::Failed,
            PspOutcome::Expired,
        ]));
        (any::<bool>(), decisive).prop_map(|(processing, decisive)| {
            let mut events = Vec::new();
            if processing {
                events.push(PspOutcome::Processing);
            }
            events.extend(decisive);
            events
        })
    }

    /// The stream as it arrives: every event delivered one to three times, in any order.
    fn delivered(
        stream: Vec<PspOutcome>,
    ) -> impl Strategy<Value = (Vec<PspOutcome>, Vec<PspOutcome>)> {
        let copies = proptest::collection::vec(1..=3_usize, stream.len());
        (Just(stream), copies).prop_flat_map(|(stream, copies)| {
            let deliveries: Vec<PspOutcome> = stream
                .iter()
                .zip(&copies)
                .flat_map(|(event, n)| std::iter::repeat_n(*event, *n))
                .collect();
            (Just(stream), Just(deliveries).prop_shuffle())
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

        /// From any status, no sequence of outcomes moves it backwards, and money is captured
        /// at most once, only on the move from an open status into `succeeded`.
        #[test]
        fn no_sequence_goes_backwards_or_captures_twice(
            start in any_status(),
            outcomes in proptest::collection::vec(any_outcome(), 0..40),
        ) {
            let mut status = start;
            let mut captures = 0;
            for outcome in outcomes {
                if let Some(t) = on_psp_outcome(status, outcome) {
                    prop_assert!(allowed(status, t), "{status:?} -> {t:?}");
                    if t.capture {
                        prop_assert!(!status.is_final() || t.late);
                        prop_assert_eq!(t.payment, PaymentStatus::Succeeded);
                    }
                    captures += u32::from(t.capture);
                    status = t.payment;
                }
            }
            prop_assert!(captures <= 1);
            prop_assert!(rank(status) >= rank(start));
            // Succeeded, refunded: money taken stays taken.
            if matches!(start, PaymentStatus::Succeeded | PaymentStatus::PartiallyRefunded | PaymentStatus::Refunded) {
                prop_assert_eq!(captures, 0);
                prop_assert_eq!(status, start);
            }
        }

        /// Duplicated and reordered deliveries of what a PSP sends end where the PSP ended,
        /// with one capture exactly when it succeeded.
        #[test]
        fn duplicated_and_reordered_deliveries_converge(
            (stream, deliveries) in psp_stream().prop_flat_map(delivered),
        ) {
            let (status, captures) = run(&deliveries);
            let expected = match stream.last() {
                Some(PspOutcome::Succeeded) => PaymentStatus::Succeeded,
                Some(PspOutcome::Failed) => PaymentStatus::Failed,
                Some(PspOutcome::Expired) => PaymentStatus::Expired,
                Some(PspOutcome::Processing) => PaymentStatus::Processing,
                None => PaymentStatus::RequiresPayment,
            };
            prop_assert_eq!(status, expected, "{:?}", deliveries);
            prop_assert_eq!(captures, u32::from(expected == PaymentStatus::Succeeded));
        }
    }

    #[test]
    fn final_states_absorb_every_outcome_but_a_late_success() {
        for from in [
            PaymentStatus::Succeeded,
            PaymentStatus::Failed,
            PaymentStatus::Expired,
            PaymentStatus::PartiallyRefunded,
            PaymentStatus::Refunded,
        ] {
            for outcome in OUTCOMES {
                let late = matches!(from, PaymentStatus::Failed | PaymentStatus::Expired)
                    && outcome == PspOutcome::Succeeded;
                let expected = late.then_some(Transition {
                    payment: PaymentStatus::Succeeded,
                    orders: OrderStatus::Succeeded,
                    capture: true,
                    late: true,
                });
                assert_eq!(
                    on_psp_outcome(from, outcome),
                    expected,
                    "{from:?} {outcome:?}"
                );
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

        /// We gave up (our expiry, a decline the PSP later overturned) while the PSP took the
        /// money: whatever order and however often both sides' events arrive, the payment ends
        /// `succeeded` with exactly one capture.
        #[test]
        fn a_success_after_we_gave_up_is_captured_once(
            ours in proptest::sample::select(vec![PspOutcome::Failed, PspOutcome::Expired]),
            copies in proptest::collection::vec(1..=3_usize, 3),
            seed in any::<u64>(),
        ) {
            let mut deliveries: Vec<PspOutcome> = Vec::new();
            deliveries.extend(std::iter::repeat_n(PspOutcome::Processing, copies[0]));
            deliveries.extend(std::iter::repeat_n(ours, copies[1]));
            deliveries.extend(std::iter::repeat_n(PspOutcome::Succeeded, copies[2]));
            // A fixed shuffle per seed (proptest shrinks the seed).
            let mut state = seed | 1;
            for i in (1..deliveries.len()).rev() {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                deliveries.swap(i, (state % (i as u64 + 1)) as usize);
            }
            let (status, captures) = run(&deliveries);
            prop_assert_eq!(status, PaymentStatus::Succeeded, "{:?}", deliveries);
            prop_assert_eq!(captures, 1, "{:?}", deliveries);
        }
    }
}
