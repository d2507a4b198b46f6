//! Payouts: paid, failed and reversed, overdraw refused, a refund racing a payout on one seller,
//! and the daily schedule paying each wallet once. After each, `ledger verify` passes.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::db_test;
use crate::helpers::*;

fn payouts_path(seller_id: &str) -> String {
    format!("/v1/sellers/{seller_id}/payouts")
}

async fn payout(app: &TestApp, seller_id: &str, key: &str, body: Value) -> reqwest::Response {
    app.post_keyed(&payouts_path(seller_id), key, &body).await
}

async fn a_payout_is_paid(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    app.paid_payment("chk_payout").await;
    let response = payout(
        &app,
        "seller_a",
        "po1",
        json!({"currency": "USD", "amount": 1000}),
    )
    .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let created: Value = response.json().await.unwrap();
    assert_eq!(created["amount"], 1000);
    let id = created["id"].as_str().unwrap();
    let paid = app
        .wait_for_item(&payouts_path("seller_a"), id, "paid")
        .await;
    assert_eq!(paid["failure_code"], Value::Null);
    assert_eq!(app.wallet("seller_a", "USD").await, (500, 500));
    assert_eq!(app.account_sum("payouts_in_transit", "USD").await, 0);
    assert_eq!(app.account_sum("bank", "USD").await, -1000);
    let report = app.verify_ledger().await;
    assert!(report.ok(), "{report:?}");
    assert_eq!(report.transactions, 3, "capture, sent, paid");
    // Receivers hear of each step of the payout, once each.
    for topic in ["payout.pending", "payout.in_transit", "payout.paid"] {
        let statement = format!("SELECT COUNT(*) FROM outbox WHERE topic = '{topic}'");
        let row = sqlx::query(sqlx::AssertSqlSafe(statement))
            .fetch_one(app.service().store.pool())
            .await
            .unwrap();
        assert_eq!(sqlx::Row::get::<i64, _>(&row, 0), 1, "{topic}");
    }
}

async fn a_failed_payout_is_reversed(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let body = json!({
        "checkout_id": "chk_closed",
        "buyer": {"id": "b"},
        "currency": "USD",
        "orders": [{"order_id": "o1", "seller_id": "closed_seller", "amount": 900}]
    });
    let payment: Value = app
        .post_payment("k-closed", &body)
        .await
        .json()
        .await
        .unwrap();
    app.pay(&payment, CARD_OK).await;
    app.wait_for_status(payment["id"].as_str().unwrap(), "succeeded")
        .await;

    let created: Value = payout(
        &app,
        "closed_seller",
        "po-closed",
        json!({"currency": "USD"}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(created["amount"], 900, "no amount: all that is available");
    let failed = app
        .wait_for_item(
            &payouts_path("closed_seller"),
            created["id"].as_str().unwrap(),
            "failed",
        )
        .await;
    assert_eq!(failed["failure_code"], "account_closed");
    assert_eq!(
        app.wallet("closed_seller", "USD").await,
        (900, 900),
        "whole again"
    );
    assert_eq!(app.account_sum("payouts_in_transit", "USD").await, 0);
    assert_eq!(app.account_sum("bank", "USD").await, 0);
    let report = app.verify_ledger().await;
    assert!(report.ok());
    assert_eq!(report.transactions, 3, "capture, sent, reversed");
}

async fn a_payout_that_would_overdraw_is_refused(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    app.paid_payment("chk_overdraw").await;
    let over = payout(
        &app,
        "seller_a",
        "x1",
        json!({"currency": "USD", "amount": 1501}),
    )
    .await;
    assert_eq!(over.status(), StatusCode::CONFLICT);
    let error: Value = over.json().await.unwrap();
    assert_eq!(error["error"]["code"], "insufficient_balance");
    let nobody = payout(&app, "seller_nobody", "x2", json!({"currency": "USD"})).await;
    assert_eq!(nobody.status(), StatusCode::CONFLICT);
    let bad = payout(&app, "seller_a", "x3", json!({"currency": "XYZ"})).await;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    let all = payout(&app, "seller_a", "x4", json!({"currency": "USD"})).await;
    assert_eq!(all.status(), StatusCode::CREATED);
    let (amount, available) = app.wallet("seller_a", "USD").await;
    assert_eq!(available, 0);
    assert!(amount == 1500 || amount == 0, "owed until paid: {amount}");
    let more = payout(
        &app,
        "seller_a",
        "x5",
        json!({"currency": "USD", "amount": 1}),
    )
    .await;
    assert_eq!(more.status(), StatusCode::CONFLICT);
    assert_eq!(app.count("SELECT COUNT(*) FROM payouts").await, 1);
    assert!(app.verify_ledger().await.ok());
}

async fn a_refund_racing_a_payout_never_overdraws(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    for round in 0..4 {
        let payment = app.paid_payment(&format!("chk_race_{round}")).await;
        let refund_path = format!("/v1/payments/{}/refunds", payment["id"].as_str().unwrap());
        let refund_body = json!({"order_id": "ord_1"});
        let payout_body = json!({"currency": "USD", "amount": 1500});
        let (refund_key, payout_key) = (format!("race-r{round}"), format!("race-p{round}"));
        let (refunded, paid_out) = tokio::join!(
            app.post_keyed(&refund_path, &refund_key, &refund_body),
            payout(&app, "seller_a", &payout_key, payout_body),
        );
        let winners = [refunded.status(), paid_out.status()]
            .iter()
            .filter(|s| **s == StatusCode::CREATED)
            .count();
        assert_eq!(
            winners,
            1,
            "round {round}: {} {}",
            refunded.status(),
            paid_out.status()
        );
        let (_, available) = app.wallet("seller_a", "USD").await;
        assert!(available >= 0);
    }
    // Once the winners have settled, the books must hold and no wallet be negative.
    eventually(
        std::time::Duration::from_secs(30),
        "every refund and payout settles",
        || async {
            app.count(
                "SELECT (SELECT COUNT(*) FROM refunds WHERE status = 'pending') \
                 + (SELECT COUNT(*) FROM payouts WHERE status IN ('pending', 'in_transit'))",
            )
            .await
                == 0
        },
    )
    .await;
    let (amount, available) = app.wallet("seller_a", "USD").await;
    assert!(amount >= 0 && available >= 0, "{amount} {available}");
    assert_eq!(
        app.count("SELECT COUNT(*) FROM wallets WHERE balance_minor < 0")
            .await,
        0
    );
    assert!(app.verify_ledger().await.ok());
}

async fn the_schedule_pays_each_wallet_once_a_day(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    app.paid_payment("chk_sched").await;
    let service = app.service();
    let first = ferropay::payout::schedule::run_once(service, "2026-11-24", 500)
        .await
        .unwrap();
    assert_eq!(
        first.len(),
        1,
        "seller_a has 1500; seller_b's 250 is under the minimum"
    );
    assert_eq!(first[0].seller_id, "seller_a");
    assert_eq!(first[0].amount, 1500);
    let again = ferropay::payout::schedule::run_once(service, "2026-11-24", 500)
        .await
        .unwrap();
    assert!(again.is_empty(), "the same day pays nobody twice");
    app.wait_for_item(&payouts_path("seller_a"), &first[0].id, "paid")
        .await;
    assert_eq!(app.count("SELECT COUNT(*) FROM payouts").await, 1);
    assert!(app.verify_ledger().await.ok());
}

async fn the_cli_pays_a_seller_now(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    app.paid_payment("chk_cli_payout").await;
    let run = |args: &[&str]| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_ferropay"))
            .args(args)
            .args(["--database-url", &app.db.url])
            .env("FERROPAY_LOG", "warn")
            .output()
            .expect("run ferropay payout create");
        let body: Value = serde_json::from_slice(&output.stdout).expect("JSON on stdout");
        (output.status.code().unwrap(), body)
    };
    let (code, created) = run(&[
        "payout",
        "create",
        "--seller-id",
        "seller_b",
        "--currency",
        "USD",
        "--idempotency-key",
        "cli-1",
    ]);
    assert_eq!(code, 0, "{created}");
    assert_eq!(created["amount"], 250);
    let (code, again) = run(&[
        "payout",
        "create",
        "--seller-id",
        "seller_b",
        "--currency",
        "USD",
        "--idempotency-key",
        "cli-1",
    ]);
    assert_eq!(code, 0);
    assert_eq!(again["id"], created["id"], "the same key pays once");
    let (code, refused) = run(&[
        "payout",
        "create",
        "--seller-id",
        "seller_b",
        "--currency",
        "USD",
        "--amount",
        "1",
    ]);
    assert_eq!(code, 1);
    assert_eq!(refused["error"]["code"], "insufficient_balance");
    // The running server's workers send it.
    app.wait_for_item(
        &payouts_path("seller_b"),
        created["id"].as_str().unwrap(),
        "paid",
    )
    .await;
    assert_eq!(app.wallet("seller_b", "USD").await, (0, 0));
    assert!(app.verify_ledger().await.ok());
}

async fn lost_webhooks_delay_refunds_and_payouts_but_never_lose_them(db: Db) {
    let mut options = AppOptions::default();
    // Every webhook is lost: only asking the PSP can settle anything.
    options.sandbox.faults.webhook_drop_rate = 1.0;
    options.sandbox.webhook_max_attempts = 1;
    options.poll_after_ms = 200;
    let Some(app) = spawn_app_with(db, options).await else {
        return;
    };
    let payment = app.create_payment("chk_lost").await;
    app.pay(&payment, CARD_OK).await;
    app.wait_for_status(payment["id"].as_str().unwrap(), "succeeded")
        .await;

    let refunds = format!("/v1/payments/{}/refunds", payment["id"].as_str().unwrap());
    let refund: Value = app
        .post_keyed(
            &refunds,
            "lost-r",
            &json!({"order_id": "ord_1", "amount": 300}),
        )
        .await
        .json()
        .await
        .unwrap();
    let payout: Value = payout(&app, "seller_b", "lost-p", json!({"currency": "USD"}))
        .await
        .json()
        .await
        .unwrap();
    app.wait_for_item(&refunds, refund["id"].as_str().unwrap(), "succeeded")
        .await;
    app.wait_for_item(
        &payouts_path("seller_b"),
        payout["id"].as_str().unwrap(),
        "paid",
    )
    .await;
    assert_eq!(
        app.count("SELECT COUNT(*) FROM webhook_events").await,
        0,
        "no webhook came"
    );
    assert_eq!(app.wallet("seller_a", "USD").await, (1200, 1200));
    assert_eq!(app.wallet("seller_b", "USD").await, (0, 0));
    let report = app.verify_ledger().await;
    assert!(report.ok());
    assert_eq!(
        report.transactions, 4,
        "capture, refund, payout sent, payout paid"
    );
}

db_test!(
    lost_webhooks_delay_refunds_and_payouts_but_never_lose_them,
    the_cli_pays_a_seller_now,
    a_payout_is_paid,
    a_failed_payout_is_reversed,
    a_payout_that_would_overdraw_is_refused,
    a_refund_racing_a_payout_never_overdraws,
    the_schedule_pays_each_wallet_once_a_day,
);
