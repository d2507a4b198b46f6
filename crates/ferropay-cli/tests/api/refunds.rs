//! Refunds: partial then full, over-refund refused, a duplicate request applied once, concurrent
//! requests never refunding more than was captured, a failed refund changing no balance, and
//! platform fees returned exactly. After each, `ledger verify` passes.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::db_test;
use crate::helpers::*;

fn refunds_path(payment: &Value) -> String {
    format!("/v1/payments/{}/refunds", payment["id"].as_str().unwrap())
}

async fn refund(app: &TestApp, payment: &Value, key: &str, body: Value) -> reqwest::Response {
    app.post_keyed(&refunds_path(payment), key, &body).await
}

async fn partial_then_full_refunds(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let payment = app.paid_payment("chk_refund").await;
    let id = payment["id"].as_str().unwrap();

    let response = refund(
        &app,
        &payment,
        "r1",
        json!({"order_id": "ord_1", "amount": 500}),
    )
    .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let first: Value = response.json().await.unwrap();
    assert_eq!(first["status"], "pending");
    assert_eq!(first["amount"], 500);
    // While pending, the seller's part is held: available drops, the balance does not yet.
    assert_eq!(app.wallet("seller_a", "USD").await.1, 1000);
    app.wait_for_item(
        &refunds_path(&payment),
        first["id"].as_str().unwrap(),
        "succeeded",
    )
    .await;
    assert_eq!(app.get_payment(id).await["status"], "partially_refunded");
    assert_eq!(app.wallet("seller_a", "USD").await, (1000, 1000));

    // No amount: the rest of the order.
    let response = refund(&app, &payment, "r2", json!({"order_id": "ord_1"})).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let rest: Value = response.json().await.unwrap();
    assert_eq!(rest["amount"], 1000);
    app.wait_for_item(
        &refunds_path(&payment),
        rest["id"].as_str().unwrap(),
        "succeeded",
    )
    .await;
    let after = app.get_payment(id).await;
    assert_eq!(after["status"], "partially_refunded");
    assert_eq!(after["orders"][0]["status"], "refunded");
    assert_eq!(after["orders"][1]["status"], "succeeded");
    assert_eq!(app.wallet("seller_a", "USD").await, (0, 0));

    let response = refund(&app, &payment, "r3", json!({"order_id": "ord_2"})).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let last: Value = response.json().await.unwrap();
    app.wait_for_item(
        &refunds_path(&payment),
        last["id"].as_str().unwrap(),
        "succeeded",
    )
    .await;
    assert_eq!(app.get_payment(id).await["status"], "refunded");
    assert_eq!(app.wallet("seller_b", "USD").await, (0, 0));

    assert_eq!(app.account_sum("psp_receivable:sandbox", "USD").await, 0);
    let report = app.verify_ledger().await;
    assert!(report.ok(), "{report:?}");
    assert_eq!(report.transactions, 4, "one capture and three refunds");
}

async fn over_refunds_and_bad_refunds_are_refused(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let payment = app.paid_payment("chk_over").await;
    let over = refund(
        &app,
        &payment,
        "o1",
        json!({"order_id": "ord_1", "amount": 1501}),
    )
    .await;
    assert_eq!(over.status(), StatusCode::BAD_REQUEST);
    let error: Value = over.json().await.unwrap();
    assert_eq!(error["error"]["field"], "amount");
    let unknown = refund(&app, &payment, "o2", json!({"order_id": "ord_9"})).await;
    assert_eq!(unknown.status(), StatusCode::BAD_REQUEST);
    let error: Value = unknown.json().await.unwrap();
    assert_eq!(error["error"]["field"], "order_id");
    let zero = refund(
        &app,
        &payment,
        "o3",
        json!({"order_id": "ord_1", "amount": 0}),
    )
    .await;
    assert_eq!(zero.status(), StatusCode::BAD_REQUEST);

    let unpaid = app.create_payment("chk_unpaid").await;
    let response = refund(&app, &unpaid, "o4", json!({"order_id": "ord_1"})).await;
    assert_eq!(response.status(), StatusCode::CONFLICT);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"]["code"], "payment_not_refundable");

    let full = refund(&app, &payment, "o5", json!({"order_id": "ord_1"})).await;
    assert_eq!(full.status(), StatusCode::CREATED);
    let again = refund(
        &app,
        &payment,
        "o6",
        json!({"order_id": "ord_1", "amount": 1}),
    )
    .await;
    assert_eq!(again.status(), StatusCode::CONFLICT);
    let error: Value = again.json().await.unwrap();
    assert_eq!(error["error"]["code"], "already_refunded");

    assert_eq!(app.count("SELECT COUNT(*) FROM refunds").await, 1);
    assert!(app.verify_ledger().await.ok());
}

async fn a_duplicate_refund_request_is_applied_once(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let payment = app.paid_payment("chk_dup_refund").await;
    let body = json!({"order_id": "ord_1", "amount": 700});
    let first = refund(&app, &payment, "same", body.clone()).await;
    assert_eq!(first.status(), StatusCode::CREATED);
    let first: Value = first.json().await.unwrap();
    let second = refund(&app, &payment, "same", body).await;
    assert_eq!(second.status(), StatusCode::CREATED);
    assert_eq!(second.headers()["Idempotent-Replayed"], "true");
    let second: Value = second.json().await.unwrap();
    assert_eq!(first["id"], second["id"]);
    app.wait_for_item(
        &refunds_path(&payment),
        first["id"].as_str().unwrap(),
        "succeeded",
    )
    .await;
    assert_eq!(app.count("SELECT COUNT(*) FROM refunds").await, 1);
    assert_eq!(app.wallet("seller_a", "USD").await, (800, 800));
    let report = app.verify_ledger().await;
    assert!(report.ok());
    assert_eq!(report.transactions, 2);
}

async fn concurrent_refunds_never_pass_the_captured_amount(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let payment = app.paid_payment("chk_concurrent_refund").await;
    let requests = (0..6).map(|i| {
        let app = &app;
        let payment = &payment;
        async move {
            refund(
                app,
                payment,
                &format!("c{i}"),
                json!({"order_id": "ord_1", "amount": 600}),
            )
            .await
        }
    });
    let responses = futures_util::future::join_all(requests).await;
    let created = responses
        .iter()
        .filter(|r| r.status() == StatusCode::CREATED)
        .count();
    assert_eq!(created, 2, "600 + 600 fit in 1500, a third does not");
    assert!(
        responses
            .iter()
            .all(|r| r.status() == StatusCode::CREATED || r.status() == StatusCode::BAD_REQUEST)
    );
    let total = app
        .count("SELECT CAST(COALESCE(SUM(amount_minor), 0) AS BIGINT) FROM refunds")
        .await;
    assert_eq!(total, 1200);
}

async fn a_failed_refund_changes_no_balance(db: Db) {
    let mut options = AppOptions::default();
    // The sandbox would settle much later; the PSP's failure arrives first, as a webhook.
    options.sandbox.settle_delay_ms = 60_000;
    let Some(app) = spawn_app_with(db, options).await else {
        return;
    };
    let payment = app.paid_payment("chk_refund_fails").await;
    let response = refund(
        &app,
        &payment,
        "f1",
        json!({"order_id": "ord_1", "amount": 400}),
    )
    .await;
    let pending: Value = response.json().await.unwrap();
    let refund_id = pending["id"].as_str().unwrap();
    assert_eq!(
        app.wallet("seller_a", "USD").await,
        (1500, 1100),
        "held while pending"
    );

    let event = json!({
        "id": "evt_refund_failed",
        "type": "refund.failed",
        "created": now_s(),
        "data": {"id": "re_psp_1", "reference": refund_id, "amount": 400, "currency": "USD",
                 "status": "failed", "failure_code": "expired_card"}
    })
    .to_string();
    let answer = app.send_webhook(&event, WEBHOOK_SECRET, now_s()).await;
    assert_eq!(answer.status(), StatusCode::OK);
    let failed = app
        .wait_for_item(&refunds_path(&payment), refund_id, "failed")
        .await;
    assert_eq!(failed["failure_code"], "expired_card");
    assert_eq!(
        app.wallet("seller_a", "USD").await,
        (1500, 1500),
        "the hold is released"
    );
    assert_eq!(
        app.get_payment(payment["id"].as_str().unwrap()).await["status"],
        "succeeded"
    );
    let report = app.verify_ledger().await;
    assert!(report.ok());
    assert_eq!(report.transactions, 1, "a failed refund posts nothing");
}

async fn platform_fees_are_returned_exactly(db: Db) {
    let options = AppOptions {
        platform_fee_bps: 1000,
        ..AppOptions::default()
    };
    let Some(app) = spawn_app_with(db, options).await else {
        return;
    };
    let payment = app.paid_payment("chk_fees").await;
    // 10 % of 1500 and of 250 stay with the platform.
    assert_eq!(app.wallet("seller_a", "USD").await, (1350, 1350));
    assert_eq!(app.account_sum("platform_fees", "USD").await, -175);
    for (key, amount) in [("p1", Some(333)), ("p2", None)] {
        let mut body = json!({"order_id": "ord_1"});
        if let Some(amount) = amount {
            body["amount"] = json!(amount);
        }
        let created: Value = refund(&app, &payment, key, body)
            .await
            .json()
            .await
            .unwrap();
        app.wait_for_item(
            &refunds_path(&payment),
            created["id"].as_str().unwrap(),
            "succeeded",
        )
        .await;
    }
    assert_eq!(app.wallet("seller_a", "USD").await, (0, 0));
    assert_eq!(
        app.account_sum("platform_fees", "USD").await,
        -25,
        "only ord_2's fee remains"
    );
    assert!(app.verify_ledger().await.ok());
}

db_test!(
    partial_then_full_refunds,
    over_refunds_and_bad_refunds_are_refused,
    a_duplicate_refund_request_is_applied_once,
    concurrent_refunds_never_pass_the_captured_amount,
    a_failed_refund_changes_no_balance,
    platform_fees_are_returned_exactly,
);
