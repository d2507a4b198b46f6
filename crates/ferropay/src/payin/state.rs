//! The payment state machine as one pure function (invariant I7): given where a payment stands
//! and what the PSP says, what changes. A status only moves forward; a late, duplicate or
//! out-of-order outcome changes nothing; money is captured (posted) on exactly one transition.

use super::model::{OrderStatus, PaymentStatus};
use crate::psp::PspOutcome;

/// What applying an outcome does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transition {
    pub payment: PaymentStatus,
    pub orders: OrderStatus,
    /// Post the capture to the ledger (only on the move into `succeeded`).
    pub capture: bool,
}

/// The transition for `outcome` from `from`, or `None` when it changes nothing.
pub fn on_psp_outcome(from: PaymentStatus, outcome: PspOutcome) -> Option<Transition> {
    use PaymentStatus as P;
    let open = matches!(from, P::RequiresPayment | P::Processing);
    match outcome {
        PspOutcome::Processing if from == P::RequiresPayment => Some(Transition {
            payment: P::Processing,
            orders: OrderStatus::Pending,
            capture: false,
        }),
        PspOutcome::Succeeded if open => Some(Transition {
            payment: P::Succeeded,
            orders: OrderStatus::Succeeded,
            capture: true,
        }),
        PspOutcome::Failed if open => Some(Transition {
            payment: P::Failed,
            orders: OrderStatus::Failed,
            capture: false,
        }),
        PspOutcome::Expired if open => Some(Transition {
            payment: P::Expired,
            orders: OrderStatus::Expired,
            capture: false,
        }),
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

    /// Runs a sequence of outcomes from `requires_payment`, as the webhook path would.
    fn run(outcomes: &[PspOutcome]) -> (PaymentStatus, u32) {
        let mut status = PaymentStatus::RequiresPayment;
        let mut captures = 0;
        for outcome in outcomes {
            if let Some(t) = on_psp_outcome(status, *outcome) {
                assert!(
                    rank(t.payment) > rank(status),
                    "{status:?} -> {:?}",
                    t.payment
                );
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
            // The first decisive outcome wins.
            let first_final = seq.iter().find(|o| **o != PspOutcome::Processing);
            let expected = match first_final {
                Some(PspOutcome::Succeeded) => PaymentStatus::Succeeded,
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
                    prop_assert!(rank(t.payment) > rank(status), "{status:?} -> {:?}", t.payment);
                    if t.capture {
                        prop_assert!(!status.is_final());
                        prop_assert_eq!(t.payment, PaymentStatus::Succeeded);
                    }
                    captures += u32::from(t.capture);
                    status = t.payment;
                }
            }
            prop_assert!(captures <= 1);
            prop_assert!(rank(status) >= rank(start));
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
    fn final_states_absorb_every_outcome() {
        for from in [
            PaymentStatus::Succeeded,
            PaymentStatus::Failed,
            PaymentStatus::Expired,
            PaymentStatus::PartiallyRefunded,
            PaymentStatus::Refunded,
        ] {
            for outcome in OUTCOMES {
                assert_eq!(on_psp_outcome(from, outcome), None, "{from:?} {outcome:?}");
            }
        }
    }
}
