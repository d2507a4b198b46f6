//! The state machine on a real database: generated sequences of PSP events — duplicated,
//! reordered, contradicting one another, some as signed webhooks (deduplicated by event id),
//! some as the poller's answers — are submitted to the real money engine as the webhook's
//! `ApplyEvent` and the poller's `ApplyPaymentUpdate`, against SQLite. After every delivery the payment's status is the pure state machine's, it
//! never moves backwards, and the ledger holds at most one capture; at the end the sellers'
//! wallets hold exactly what a success owes them and `ledger verify` passes.
//!
//! A second property covers late captures of a checkout paid again: a payment our side expired
//! or failed, whose checkout another payment has paid, then succeeds at the PSP (delivered any
//! number of times, by webhook or poll, among contrary events): it is captured once and refunded
//! in full at once, and its sellers have nothing of it available.

use std::sync::atomic::{AtomicUsize, Ordering};

use ferropay::engine::Engine;
use ferropay::inbound::ApplyEvent;
use ferropay::payin::apply::ApplyPaymentUpdate;
use ferropay::payin::model::PaymentStatus;
use ferropay::payin::state::{on_psp_outcome, rank};
use ferropay::psp::{PaymentUpdate, PspEvent, PspEventKind, PspOutcome};
use ferropay::store::Store;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use sqlx::Row;

const PSP: &str = "sandbox";

/// One delivery: which event of the case's pool, and whether it came as a webhook or a poll.
#[derive(Clone, Debug)]
struct Delivery {
    event: usize,
    via_poll: bool,
}

#[derive(Clone, Debug)]
struct Case {
    /// The distinct events the PSP "sent" (by index: `evt_{case}_{index}`).
    events: Vec<PspOutcome>,
    deliveries: Vec<Delivery>,
    /// Each order's amount, one seller each.
    orders_minor: Vec<i64>,
}

fn any_case() -> impl Strategy<Value = Case> {
    let outcome = proptest::sample::select(vec![
        PspOutcome::Processing,
        PspOutcome::Succeeded,
        PspOutcome::Failed,
        PspOutcome::Expired,
    ]);
    (
        proptest::collection::vec(outcome, 1..5),
        proptest::collection::vec(1..=100_000_i64, 1..4),
    )
        .prop_flat_map(|(events, orders_minor)| {
            let delivery = (0..events.len(), any::<bool>())
                .prop_map(|(event, via_poll)| Delivery { event, via_poll });
            (
                Just(events),
                proptest::collection::vec(delivery, 1..12),
                Just(orders_minor),
            )
        })
        .prop_map(|(events, deliveries, orders_minor)| Case {
            events,
            deliveries,
            orders_minor,
        })
}

/// A payment as `POST /v1/payments` leaves it once registered: `requires_payment`, its orders
/// `executing`, one seller per order.
async fn insert_payment(store: &Store, case_no: usize, orders_minor: &[i64]) -> String {
    let payment_id = format!("pay_case_{case_no}");
    let total: i64 = orders_minor.iter().sum();
    let mut tx = store.begin_write().await.unwrap();
    sqlx::query(
        "INSERT INTO payments (id, checkout_id, buyer_id, currency, amount_minor, status, psp, \
         psp_token, created_at_ms, updated_at_ms) \
         VALUES ($1, $2, 'buyer', 'EUR', $3, 'requires_payment', $4, $5, 0, 0)",
    )
    .bind(&payment_id)
    .bind(format!("chk_{case_no}"))
    .bind(total)
    .bind(PSP)
    .bind(format!("tok_{case_no}"))
    .execute(&mut *tx)
    .await
    .unwrap();
    for (position, amount_minor) in orders_minor.iter().enumerate() {
        sqlx::query(
            "INSERT INTO payment_orders (id, payment_id, position, order_id, seller_id, \
             amount_minor, status, created_at_ms, updated_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, 'executing', 0, 0)",
        )
        .bind(format!("po_{case_no}_{position}"))
        .bind(&payment_id)
        .bind(position as i64)
        .bind(format!("ord_{position}"))
        .bind(seller(case_no, position))
        .bind(*amount_minor)
        .execute(&mut *tx)
        .await
        .unwrap();
    }
    tx.commit().await.unwrap();
    payment_id
}

fn seller(case_no: usize, position: usize) -> String {
    format!("seller_{case_no}_{position}")
}

fn update(payment_id: &str, outcome: PspOutcome, total: i64) -> PaymentUpdate {
    PaymentUpdate {
        reference: payment_id.to_owned(),
        outcome,
        psp_reference: Some(format!("psp_{payment_id}")),
        amount_minor: Some(total),
        currency: Some("EUR".into()),
        failure_code: (outcome == PspOutcome::Failed).then(|| "card_declined".into()),
    }
}

async fn status_and_captures(store: &Store, payment_id: &str) -> (PaymentStatus, i64) {
    let status: String = sqlx::query("SELECT status FROM payments WHERE id = $1")
        .bind(payment_id)
        .fetch_one(store.pool())
        .await
        .unwrap()
        .get("status");
    let captures: i64 = sqlx::query(
        "SELECT COUNT(*) AS n FROM journal_transactions WHERE payment_id = $1 AND kind = 'capture'",
    )
    .bind(payment_id)
    .fetch_one(store.pool())
    .await
    .unwrap()
    .get("n");
    (PaymentStatus::parse(&status).unwrap(), captures)
}

async fn check(
    store: &Store,
    engine: &Engine,
    case_no: usize,
    case: Case,
) -> Result<(), TestCaseError> {
    let payment_id = insert_payment(store, case_no, &case.orders_minor).await;
    let total: i64 = case.orders_minor.iter().sum();
    // The oracle: the pure state machine over the same deliveries.
    let mut expected = PaymentStatus::RequiresPayment;
    for delivery in &case.deliveries {
        let outcome = case.events[delivery.event];
        let update = update(&payment_id, outcome, total);
        if delivery.via_poll {
            engine
                .submit(ApplyPaymentUpdate {
                    psp: PSP.into(),
                    update,
                    fallback_fee_bps: 0,
                })
                .await
                .unwrap();
        } else {
            let event = PspEvent {
                id: format!("evt_{case_no}_{}", delivery.event),
                event_type: format!("payment.{outcome:?}").to_lowercase(),
                created_s: 0,
                kind: PspEventKind::Payment(update),
            };
            engine
                .submit(ApplyEvent {
                    psp: PSP.into(),
                    event,
                    fallback_fee_bps: 0,
                })
                .await
                .unwrap();
        }
        let before = expected;
        if let Some(transition) = on_psp_outcome(expected, outcome) {
            expected = transition.payment;
        }
        let (status, captures) = status_and_captures(store, &payment_id).await;
        prop_assert!(
            rank(status) >= rank(before),
            "{before:?} went back to {status:?}"
        );
        prop_assert_eq!(status, expected);
        prop_assert_eq!(captures, i64::from(status == PaymentStatus::Succeeded));
    }
    for (position, amount_minor) in case.orders_minor.iter().enumerate() {
        let wallet = ferropay::wallet::balances(store, &seller(case_no, position))
            .await
            .unwrap();
        let held: i64 = wallet.iter().map(|b| b.amount).sum();
        let owed = if expected == PaymentStatus::Succeeded {
            *amount_minor
        } else {
            0
        };
        prop_assert_eq!(held, owed);
    }
    Ok(())
}

#[test]
fn generated_event_sequences_apply_like_the_pure_state_machine() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let dir = std::env::temp_dir().join(format!("ferropay-prop-{}", uuid::Uuid::now_v7()));
    let url = format!("sqlite://{}/ferropay.db", dir.display());
    let store = runtime.block_on(Store::open(&url, 2)).unwrap();
    let engine = runtime
        .block_on(async { Engine::start(store.clone(), Default::default()) })
        .unwrap();
    let case_no = AtomicUsize::new(0);
    // Bounded so that it stays quick: each case writes a payment and up to a dozen events.
    let mut runner = TestRunner::new(Config {
        cases: 128,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&any_case(), |case| {
        let n = case_no.fetch_add(1, Ordering::SeqCst);
        runtime.block_on(check(&store, &engine, n, case))
    });
    let report = runtime
        .block_on(ferropay::ledger::verify::verify(&store))
        .unwrap();
    runtime.block_on(store.close());
    let _ = std::fs::remove_dir_all(&dir);
    result.unwrap();
    assert!(report.ok(), "{report:?}");
}

#[derive(Clone, Debug)]
struct LateCase {
    /// What our side decided first: `Failed` or `Expired`.
    ours: PspOutcome,
    /// The deliveries after the checkout was paid again: the PSP's success among noise.
    deliveries: Vec<(PspOutcome, bool)>,
    orders_minor: Vec<i64>,
}

fn any_late_case() -> impl Strategy<Value = LateCase> {
    let noise = proptest::sample::select(vec![
        PspOutcome::Processing,
        PspOutcome::Succeeded,
        PspOutcome::Failed,
        PspOutcome::Expired,
    ]);
    (
        proptest::sample::select(vec![PspOutcome::Failed, PspOutcome::Expired]),
        proptest::collection::vec((noise, any::<bool>()), 0..6),
        any::<bool>(),
        proptest::collection::vec(1..=100_000_i64, 1..4),
    )
        .prop_map(|(ours, mut deliveries, via_poll, orders_minor)| {
            // The PSP's success comes at least once.
            deliveries.push((PspOutcome::Succeeded, via_poll));
            LateCase {
                ours,
                deliveries,
                orders_minor,
            }
        })
}

async fn check_late(
    store: &Store,
    engine: &Engine,
    case_no: usize,
    case: LateCase,
) -> Result<(), TestCaseError> {
    let payment_id = insert_payment(store, case_no, &case.orders_minor).await;
    let total: i64 = case.orders_minor.iter().sum();
    let submit = |outcome: PspOutcome, via_poll: bool, n: usize| {
        let update = update(&payment_id, outcome, total);
        async move {
            if via_poll {
                engine
                    .submit(ApplyPaymentUpdate {
                        psp: PSP.into(),
                        update,
                        fallback_fee_bps: 0,
                    })
                    .await
                    .unwrap();
            } else {
                engine
                    .submit(ApplyEvent {
                        psp: PSP.into(),
                        event: PspEvent {
                            id: format!("evt_late_{case_no}_{n}"),
                            event_type: format!("payment.{outcome:?}").to_lowercase(),
                            created_s: 0,
                            kind: PspEventKind::Payment(update),
                        },
                        fallback_fee_bps: 0,
                    })
                    .await
                    .unwrap();
            }
        }
    };
    submit(case.ours, true, 0).await;
    // The buyer paid the checkout again, with another payment.
    let other = format!("pay_case_{case_no}_again");
    sqlx::query(
        "INSERT INTO payments (id, checkout_id, buyer_id, currency, amount_minor, status, psp, \
         created_at_ms, updated_at_ms) VALUES ($1, $2, 'buyer', 'EUR', $3, 'succeeded', $4, 0, 0)",
    )
    .bind(&other)
    .bind(format!("chk_{case_no}"))
    .bind(total)
    .bind(PSP)
    .execute(store.pool())
    .await
    .unwrap();
    for (n, (outcome, via_poll)) in case.deliveries.iter().enumerate() {
        submit(*outcome, *via_poll, n + 1).await;
    }
    let (status, captures) = status_and_captures(store, &payment_id).await;
    prop_assert_eq!(status, PaymentStatus::Succeeded);
    prop_assert_eq!(captures, 1);
    let row = sqlx::query(
        "SELECT duplicate_of, (SELECT COUNT(*) FROM refunds r WHERE r.payment_id = p.id \
         AND r.status = 'pending') AS refunds, (SELECT CAST(COALESCE(SUM(amount_minor), 0) AS BIGINT) \
         FROM refunds r WHERE r.payment_id = p.id) AS refunded FROM payments p WHERE p.id = $1",
    )
    .bind(&payment_id)
    .fetch_one(store.pool())
    .await
    .unwrap();
    prop_assert_eq!(row.get::<Option<String>, _>("duplicate_of"), Some(other));
    prop_assert_eq!(row.get::<i64, _>("refunds"), case.orders_minor.len() as i64);
    prop_assert_eq!(row.get::<i64, _>("refunded"), total);
    for (position, amount_minor) in case.orders_minor.iter().enumerate() {
        let wallet = ferropay::wallet::balances(store, &seller(case_no, position))
            .await
            .unwrap();
        // Captured, and all of it held for the refund on its way.
        prop_assert_eq!(wallet.iter().map(|b| b.amount).sum::<i64>(), *amount_minor);
        prop_assert_eq!(wallet.iter().map(|b| b.available).sum::<i64>(), 0);
    }
    Ok(())
}

#[test]
fn a_late_capture_of_a_checkout_paid_again_is_captured_once_and_refunded_at_once() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let dir = std::env::temp_dir().join(format!("ferropay-prop-{}", uuid::Uuid::now_v7()));
    let url = format!("sqlite://{}/ferropay.db", dir.display());
    let store = runtime.block_on(Store::open(&url, 2)).unwrap();
    let engine = runtime
        .block_on(async { Engine::start(store.clone(), Default::default()) })
        .unwrap();
    let case_no = AtomicUsize::new(0);
    let mut runner = TestRunner::new(Config {
        cases: 48,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&any_late_case(), |case| {
        let n = case_no.fetch_add(1, Ordering::SeqCst);
        runtime.block_on(check_late(&store, &engine, n, case))
    });
    let report = runtime
        .block_on(ferropay::ledger::verify::verify(&store))
        .unwrap();
    runtime.block_on(store.close());
    let _ = std::fs::remove_dir_all(&dir);
    result.unwrap();
    assert!(report.ok(), "{report:?}");
}
