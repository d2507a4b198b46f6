//! Reverse only on proof: a refund or payout call answered with an error is failed or reversed
//! only once the provider, asked by the call's idempotency key, says it never made it. The
//! sandbox answers 401 after making the refund or payout (as an expired or rotated key may
//! answer a retry the provider had already served): the refund still succeeds, the payout is
//! not reversed into the seller's wallet and ends `paid` — the seller is paid once. A payout the
//! provider says it never made is reversed; one it cannot account for (its look-up refused too)
//! stays `pending` through its retries and waits in the dead-letter queue for an operator, whose
//! replay pays it once.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::db_test;
use crate::helpers::*;

async fn a_payout_whose_send_answers_401_after_the_effect_is_not_reversed_and_ends_paid(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    app.paid_payment("chk_401_payout").await;
    app.sandbox_hook("/v1/test/unauthorized_after_effect", json!({"count": 1}))
        .await;
    let created = app
        .post_keyed(
            "/v1/sellers/seller_a/payouts",
            "payout-401",
            &json!({"currency": "USD"}),
        )
        .await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let payout: Value = created.json().await.unwrap();
    let paid = app
        .wait_for_item(
            "/v1/sellers/seller_a/payouts",
            payout["id"].as_str().unwrap(),
            "paid",
        )
        .await;
    assert_eq!(paid["failure_code"], Value::Null);
    // Paid once: out of the wallet, into the bank, nothing left in transit or given back.
    assert_eq!(app.wallet("seller_a", "USD").await, (0, 0));
    assert_eq!(app.account_sum("bank", "USD").await, -1500);
    assert_eq!(app.account_sum("payouts_in_transit", "USD").await, 0);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM journal_transactions WHERE kind = 'payout_reversed'")
            .await,
        0
    );
    // The provider holds exactly one payout for our key.
    let found: Value = app
        .http
        .get(format!("{}/v1/payouts", app.sandbox_url))
        .query(&[("idempotency_key", payout["id"].as_str().unwrap())])
        .bearer_auth(PSP_API_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(found["data"].as_array().unwrap().len(), 1);
    let report = app.verify_ledger().await;
    assert!(report.ok(), "{report:?}");
}

async fn a_refund_whose_send_answers_401_after_the_effect_succeeds(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let payment = app.paid_payment("chk_401_refund").await;
    let payment_id = payment["id"].as_str().unwrap();
    app.sandbox_hook("/v1/test/unauthorized_after_effect", json!({"count": 1}))
        .await;
    let created = app
        .post_keyed(
            &format!("/v1/payments/{payment_id}/refunds"),
            "refund-401",
            &json!({"order_id": "ord_1"}),
        )
        .await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let refund: Value = created.json().await.unwrap();
    app.wait_for_item(
        &format!("/v1/payments/{payment_id}/refunds"),
        refund["id"].as_str().unwrap(),
        "succeeded",
    )
    .await;
    assert_eq!(app.wallet("seller_a", "USD").await, (0, 0));
    assert_eq!(app.account_sum("psp_receivable:sandbox", "USD").await, 250);
    let report = app.verify_ledger().await;
    assert!(report.ok(), "{report:?}");
}

async fn a_payout_the_provider_never_made_is_reversed(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    app.paid_payment("chk_401_never_made").await;
    // The creation is refused and does nothing; the look-up by key answers "none".
    app.sandbox_hook("/v1/test/unauthorized_before_effect", json!({"count": 1}))
        .await;
    let created = app
        .post_keyed(
            "/v1/sellers/seller_a/payouts",
            "payout-never-made",
            &json!({"currency": "USD"}),
        )
        .await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let payout: Value = created.json().await.unwrap();
    let failed = app
        .wait_for_item(
            "/v1/sellers/seller_a/payouts",
            payout["id"].as_str().unwrap(),
            "failed",
        )
        .await;
    assert_eq!(failed["failure_code"], "provider_rejected");
    assert_eq!(app.wallet("seller_a", "USD").await, (1500, 1500));
    assert_eq!(app.account_sum("bank", "USD").await, 0);
    assert_eq!(app.account_sum("payouts_in_transit", "USD").await, 0);
    assert!(app.verify_ledger().await.ok());
}

async fn a_payout_the_provider_cannot_account_for_stays_pending_until_an_operator_replays_it(
    db: Db,
) {
    let options = AppOptions {
        jobs: ferropay::jobs::JobsConfig {
            retry: ferropay::jobs::RetryPolicy {
                base_delay_ms: 20,
                max_delay_ms: 100,
                max_attempts: 3,
            },
            ..test_jobs_config()
        },
        ..AppOptions::default()
    };
    let Some(app) = spawn_app_with(db, options).await else {
        return;
    };
    app.paid_payment("chk_401_unknown").await;
    // Every creation and every look-up is refused: the provider cannot say.
    app.sandbox_hook("/v1/test/unauthorized_before_effect", json!({"count": 100}))
        .await;
    let created = app
        .post_keyed(
            "/v1/sellers/seller_a/payouts",
            "payout-unknown",
            &json!({"currency": "USD"}),
        )
        .await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let payout: Value = created.json().await.unwrap();
    let payout_id = payout["id"].as_str().unwrap().to_owned();
    eventually(
        std::time::Duration::from_secs(10),
        "the payout's job is dead-lettered",
        || async {
            app.count("SELECT COUNT(*) FROM jobs WHERE kind = 'payout.send' AND status = 'dead'")
                .await
                == 1
        },
    )
    .await;
    // Still pending, nothing reversed: the money stays in flight, not available again.
    let listed = app.get_json("/v1/sellers/seller_a/payouts").await;
    assert_eq!(listed["data"][0]["id"], payout_id.as_str());
    assert_eq!(listed["data"][0]["status"], "pending");
    assert_eq!(app.wallet("seller_a", "USD").await, (1500, 0));
    assert_eq!(app.account_sum("payouts_in_transit", "USD").await, -1500);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM journal_transactions WHERE kind = 'payout_reversed'")
            .await,
        0
    );
    let dead = ferropay::jobs::dlq::list(&app.service().store)
        .await
        .unwrap();
    assert_eq!(dead.len(), 1);
    assert!(
        dead[0]
            .last_error
            .as_deref()
            .unwrap_or("")
            .contains("could not say"),
        "{dead:?}"
    );

    // The key is fixed; the operator replays the job; the payout is made once.
    app.sandbox_hook("/v1/test/unauthorized_before_effect", json!({"count": 0}))
        .await;
    ferropay::jobs::dlq::replay(&app.service().store, &dead[0].id)
        .await
        .unwrap();
    app.wait_for_item("/v1/sellers/seller_a/payouts", &payout_id, "paid")
        .await;
    assert_eq!(app.wallet("seller_a", "USD").await, (0, 0));
    assert_eq!(app.account_sum("bank", "USD").await, -1500);
    assert!(app.verify_ledger().await.ok());
}

db_test!(
    a_payout_whose_send_answers_401_after_the_effect_is_not_reversed_and_ends_paid,
    a_refund_whose_send_answers_401_after_the_effect_succeeds,
    a_payout_the_provider_never_made_is_reversed,
    a_payout_the_provider_cannot_account_for_stays_pending_until_an_operator_replays_it,
);
