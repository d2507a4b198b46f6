//! Several ferropay instances on one PostgreSQL, as production runs them: the same
//! `Idempotency-Key` sent at once to two instances makes one payment and one PSP session; the
//! same webhook event delivered at once to two instances applies once; a thousand payments to
//! one hot seller from concurrent clients leave the wallet equal to the ledger.
//!
//! PostgreSQL only (SQLite is one process's embedded database); skipped without
//! `FERROPAY_TEST_DATABASE_URL`.

use std::time::Instant;

use futures_util::StreamExt;
use reqwest::StatusCode;
use sandbox_psp::{Faults, SandboxConfig};
use serde_json::{Value, json};
use sqlx::Row;

use crate::helpers::*;

/// Concurrent clients in the hot-seller run.
const CLIENTS: usize = 16;
const HOT_PAYMENTS: usize = 1_000;

async fn payments_for_checkout(app: &TestApp, checkout_id: &str) -> Vec<String> {
    sqlx::query("SELECT id FROM payments WHERE checkout_id = $1")
        .bind(checkout_id)
        .fetch_all(app.service().store.pool())
        .await
        .unwrap()
        .iter()
        .map(|row| row.get("id"))
        .collect()
}

async fn post_payment_to(
    app: &TestApp,
    base_url: &str,
    key: &str,
    body: &Value,
) -> reqwest::Response {
    app.http
        .post(format!("{base_url}/v1/payments"))
        .bearer_auth(&app.api_key)
        .header("Idempotency-Key", key)
        .json(body)
        .send()
        .await
        .expect("POST /v1/payments")
}

async fn the_same_key_at_once_on_two_instances_makes_one_payment() {
    // A little PSP latency keeps the first request holding its key while the second arrives.
    let options = AppOptions {
        sandbox: SandboxConfig {
            faults: Faults {
                latency_ms: 50,
                ..Faults::default()
            },
            ..AppOptions::default().sandbox
        },
        ..AppOptions::default()
    };
    let Some(app) = spawn_app_with(Db::Postgres, options).await else {
        return;
    };
    let other = app.spawn_sibling().await;
    let bases = [app.base_url.clone(), other.public_url.clone()];
    let mut conflicts = 0;
    for round in 0..12 {
        let key = format!("key-twice-{round}");
        let body = checkout(&format!("chk_twice_{round}"));
        let (a, b) = tokio::join!(
            post_payment_to(&app, &bases[0], &key, &body),
            post_payment_to(&app, &bases[1], &key, &body)
        );
        let mut created = Vec::new();
        for response in [a, b] {
            match response.status() {
                StatusCode::CREATED => created.push(response.json::<Value>().await.unwrap()),
                StatusCode::CONFLICT => {
                    let error: Value = response.json().await.unwrap();
                    assert_eq!(error["error"]["code"], "idempotency_key_in_use");
                    conflicts += 1;
                }
                other => panic!("round {round}: {other}"),
            }
        }
        assert!(!created.is_empty(), "round {round}: nobody got the payment");
        if let [first, second] = created.as_slice() {
            assert_eq!(first, second, "a replay answers the same payment");
        }
        let payments = payments_for_checkout(&app, &format!("chk_twice_{round}")).await;
        assert_eq!(payments.len(), 1, "round {round}: one payment");
        assert_eq!(payments[0], created[0]["id"].as_str().unwrap());
        assert_eq!(
            app.psp_sessions_for(&payments[0]).await.len(),
            1,
            "one PSP session"
        );
    }
    assert!(conflicts > 0, "the two requests never overlapped");
    other.shutdown().await;
}

async fn the_same_webhook_at_once_on_two_instances_applies_once() {
    let Some(app) = spawn_app(Db::Postgres).await else {
        return;
    };
    let other = app.spawn_sibling().await;
    let mut payments = Vec::new();
    for i in 0..20 {
        payments.push(app.create_payment(&format!("chk_hook_{i}")).await);
    }
    for (i, payment) in payments.iter().enumerate() {
        let body = payment_event(&format!("evt_twice_{i}"), "payment.succeeded", payment);
        let (a, b) = tokio::join!(
            app.send_webhook_to(&app.base_url, &body, WEBHOOK_SECRET, now_s()),
            app.send_webhook_to(&other.public_url, &body, WEBHOOK_SECRET, now_s())
        );
        let mut results = Vec::new();
        for response in [a, b] {
            assert_eq!(response.status(), StatusCode::OK);
            let answer: Value = response.json().await.unwrap();
            results.push(answer["outcome"]["result"].as_str().unwrap().to_owned());
        }
        results.sort();
        assert_eq!(results, ["applied", "duplicate"], "event {i}");
    }
    let report = app.verify_ledger().await;
    assert!(report.ok(), "{report:?}");
    assert_eq!(report.transactions, 20);
    assert_eq!(app.wallet_minor("seller_a", "USD").await, 20 * 1_500);
    assert_eq!(app.count("SELECT COUNT(*) FROM outbox").await, 20);
    other.shutdown().await;
}

/// The hot seller's share of payment `i`: varied, so that a lost or doubled posting shows.
fn hot_amount_minor(i: usize) -> i64 {
    100 + (i as i64 * 37) % 4_900
}

async fn a_thousand_payments_to_one_hot_seller_keep_the_wallet_equal_to_the_ledger() {
    let Some(app) = spawn_app(Db::Postgres).await else {
        return;
    };
    let other = app.spawn_sibling().await;
    let bases = [app.base_url.clone(), other.public_url.clone()];
    let started = Instant::now();
    let app_ref = &app;
    let bases_ref = &bases;
    // `ledger verify` on the live database, again and again while the payments settle: it reads
    // one snapshot, so it never reports a false break.
    let settling = std::sync::atomic::AtomicBool::new(true);
    let verifier = async {
        let mut checks = 0;
        while settling.load(std::sync::atomic::Ordering::SeqCst) {
            let report = app_ref.verify_ledger().await;
            assert!(report.ok(), "verify during the run: {report:?}");
            checks += 1;
        }
        checks
    };
    let payments = futures_util::stream::iter(0..HOT_PAYMENTS)
        .map(|i| async move {
            let mut orders = vec![json!({"order_id": "hot", "seller_id": "seller_hot", "amount": hot_amount_minor(i)})];
            if i % 4 == 0 {
                orders.push(json!({"order_id": "cold", "seller_id": format!("seller_cold_{}", i % 10), "amount": 99}));
            }
            let body = json!({
                "checkout_id": format!("chk_hot_{i}"),
                "buyer": {"id": format!("buyer_{i}")},
                "currency": "EUR",
                "orders": orders,
            });
            // Created on one instance, settled by the PSP's webhook on the other.
            let response = post_payment_to(app_ref, &bases_ref[i % 2], &format!("key-hot-{i}"), &body).await;
            assert_eq!(response.status(), StatusCode::CREATED, "payment {i}");
            let payment: Value = response.json().await.unwrap();
            let event = payment_event(&format!("evt_hot_{i}"), "payment.succeeded", &payment);
            let target = &bases_ref[(i + 1) % 2];
            let answer = app_ref.send_webhook_to(target, &event, WEBHOOK_SECRET, now_s()).await;
            assert_eq!(answer.status(), StatusCode::OK, "webhook {i}");
            if i % 10 == 0 {
                // The PSP's retry of the same event, to the other instance: changes nothing.
                let again = app_ref
                    .send_webhook_to(&bases_ref[i % 2], &event, WEBHOOK_SECRET, now_s())
                    .await;
                let again: Value = again.json().await.unwrap();
                assert_eq!(again["outcome"]["result"], "duplicate");
            }
            hot_amount_minor(i)
        })
        .buffer_unordered(CLIENTS)
        .collect::<Vec<i64>>();
    let (settled, checks) = tokio::join!(
        async {
            let settled = payments.await;
            settling.store(false, std::sync::atomic::Ordering::SeqCst);
            settled
        },
        verifier
    );
    assert!(checks >= 1, "verify ran during the payments");
    let elapsed = started.elapsed();
    let expected_minor: i64 = settled.iter().sum();
    assert_eq!(app.wallet_minor("seller_hot", "EUR").await, expected_minor);
    let colds: i64 = (0..10)
        .map(|k| {
            (0..HOT_PAYMENTS)
                .filter(|i| i % 4 == 0 && i % 10 == k)
                .count() as i64
                * 99
        })
        .sum();
    let mut cold_total = 0;
    for k in 0..10 {
        cold_total += app.wallet_minor(&format!("seller_cold_{k}"), "EUR").await;
    }
    assert_eq!(cold_total, colds);
    let report = app.verify_ledger().await;
    assert!(report.ok(), "{report:?}");
    assert_eq!(report.transactions, HOT_PAYMENTS as i64);
    let (code, stdout, stderr) = run_cli(&["ledger", "verify", "--database-url", &app.db.url]);
    assert_eq!(code, 0, "{stdout} {stderr}");
    println!(
        "hot seller: {HOT_PAYMENTS} payments created and settled across 2 instances by {CLIENTS} \
         clients in {:.1} s; wallet {expected_minor} = ledger",
        elapsed.as_secs_f64()
    );
    other.shutdown().await;
}

mod postgres {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_same_key_at_once_on_two_instances_makes_one_payment() {
        super::the_same_key_at_once_on_two_instances_makes_one_payment().await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_same_webhook_at_once_on_two_instances_applies_once() {
        super::the_same_webhook_at_once_on_two_instances_applies_once().await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_thousand_payments_to_one_hot_seller_keep_the_wallet_equal_to_the_ledger() {
        super::a_thousand_payments_to_one_hot_seller_keep_the_wallet_equal_to_the_ledger().await
    }
}
