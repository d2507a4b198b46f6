//! Reverse only on proof: a refund or payout call answered with an error is failed or reversed
//! only once the provider, asked by the call's idempotency key, says it never made it. The
//! sandbox answers 401 after making the refund or payout (as an expired or rotated key may
//! answer a retry the provider had already served): the refund still succeeds, the payout is
//! not reversed into the seller's wallet and ends `paid` — the seller is paid once.

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

db_test!(
    a_payout_whose_send_answers_401_after_the_effect_is_not_reversed_and_ends_paid,
    a_refund_whose_send_answers_401_after_the_effect_succeeds,
);
