//! A success after we gave up is booked, never lost: a payment our side marked `expired` or
//! `failed` (here by a forged, correctly signed webhook, as when our expiry runs first) that the
//! buyer then pays at the PSP becomes `succeeded` with one capture, whichever path brings the
//! PSP's word — its webhook, the poller's last look, or reconciliation's heal — and a second
//! word changes nothing. A checkout another payment has paid meanwhile is not charged twice:
//! the late payment is captured and refunded at once.

use std::time::Duration;

use reqwest::StatusCode;
use sandbox_psp::SandboxConfig;
use serde_json::{Value, json};

use crate::db_test;
use crate::helpers::*;
use crate::reconciliation::{id_of, of_kind};

impl TestApp {
    /// Sends, as the PSP would (signed), that `payment` ended `kind` (`payment.expired`, …),
    /// under a fresh event id.
    async fn forge_outcome(&self, payment: &Value, kind: &str) {
        let body = json!({
            "id": format!("evt_forged_{}", uuid::Uuid::now_v7().simple()),
            "type": kind,
            "created": now_s(),
            "data": {
                "token": payment["redirect_url"].as_str().unwrap().rsplit('/').next(),
                "reference": payment["id"],
                "psp_reference": null,
                "amount": payment["amount"],
                "currency": payment["currency"],
                "status": kind.trim_start_matches("payment."),
                "failure_code": (kind == "payment.failed").then_some("card_declined"),
            }
        })
        .to_string();
        let response = self.send_webhook(&body, WEBHOOK_SECRET, now_s()).await;
        assert_eq!(response.status(), StatusCode::OK, "{kind}");
    }

    /// Capture journal transactions of `payment_id`.
    async fn captures_of(&self, payment_id: &str) -> i64 {
        use sqlx::Row;
        sqlx::query(
            "SELECT COUNT(*) AS n FROM journal_transactions \
             WHERE payment_id = $1 AND kind = 'capture'",
        )
        .bind(payment_id)
        .fetch_one(self.service().store.pool())
        .await
        .unwrap()
        .get::<i64, _>("n")
    }

    /// `payment.late_capture` events in the outbox, with their payloads.
    async fn late_capture_events(&self) -> Vec<Value> {
        use sqlx::Row;
        sqlx::query("SELECT payload FROM outbox WHERE topic = 'payment.late_capture'")
            .fetch_all(self.service().store.pool())
            .await
            .unwrap()
            .iter()
            .map(|row| serde_json::from_str(&row.get::<String, _>("payload")).unwrap())
            .collect()
    }
}

async fn a_success_after_expiry_is_booked_once_by_the_webhook(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let payment = app.create_payment("chk_late_webhook").await;
    let id = id_of(&payment);
    app.forge_outcome(&payment, "payment.expired").await;
    app.wait_for_status(id, "expired").await;
    // The page was still open: the buyer pays, the PSP's webhook says so.
    app.pay(&payment, CARD_OK).await;
    let paid = app.wait_for_status(id, "succeeded").await;
    assert_eq!(paid["orders"][0]["status"], "succeeded");
    assert_eq!(app.captures_of(id).await, 1);
    assert_eq!(app.wallet_minor("seller_a", "USD").await, 1500);
    assert_eq!(app.wallet_minor("seller_b", "USD").await, 250);
    let events = app.late_capture_events().await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["from"], "expired");
    assert_eq!(events[0]["duplicate_of"], Value::Null);
    // The same word again (another event id) and a contrary one change nothing.
    app.forge_outcome(&payment, "payment.succeeded").await;
    app.forge_outcome(&payment, "payment.failed").await;
    assert_eq!(app.get_payment(id).await["status"], "succeeded");
    assert_eq!(app.captures_of(id).await, 1);
    assert_eq!(app.wallet_minor("seller_a", "USD").await, 1500);
    let report = app.verify_ledger().await;
    assert!(report.ok(), "{report:?}");
    assert_eq!(report.transactions, 1);
}

async fn a_success_after_expiry_is_booked_once_by_the_poller(db: Db) {
    // No webhooks at all from the PSP: only the poller hears of the payment.
    let sandbox = sandbox_psp::spawn(
        tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        SandboxConfig {
            webhook_url: String::new(),
            ..AppOptions::default().sandbox
        },
    )
    .await
    .unwrap();
    let options = AppOptions {
        psp_url: Some(sandbox.base_url.clone()),
        poll_after_ms: 3_000,
        ..AppOptions::default()
    };
    let Some(mut app) = spawn_app_with(db, options).await else {
        sandbox.shutdown();
        return;
    };
    app.sandbox_url = sandbox.base_url.clone();
    let payment = app.create_payment("chk_late_poll").await;
    let id = id_of(&payment);
    // Our side gives up before the first poll; the buyer pays anyway.
    app.forge_outcome(&payment, "payment.expired").await;
    app.wait_for_status(id, "expired").await;
    app.pay(&payment, CARD_OK).await;
    // The poll kept for a last look finds the money taken.
    app.wait_for_status(id, "succeeded").await;
    assert_eq!(app.captures_of(id).await, 1);
    assert_eq!(app.late_capture_events().await.len(), 1);
    assert_eq!(app.wallet_minor("seller_a", "USD").await, 1500);
    eventually(Duration::from_secs(5), "the poll is done", || async {
        app.count("SELECT COUNT(*) FROM jobs WHERE kind = 'payin.poll_session' AND status = 'done'")
            .await
            == 1
    })
    .await;
    assert_eq!(
        app.count("SELECT COUNT(*) FROM jobs WHERE status = 'dead'")
            .await,
        0
    );
    let report = app.verify_ledger().await;
    assert!(report.ok(), "{report:?}");
    assert_eq!(report.transactions, 1);
    sandbox.shutdown();
}

async fn a_success_after_expiry_is_booked_once_by_reconciliation(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let payment = app.create_payment("chk_late_heal").await;
    let id = id_of(&payment);
    // The PSP's word on this payment never arrives: only the settlement file tells.
    app.sandbox_hook("/v1/test/lost_webhooks", json!({"references": [id]}))
        .await;
    app.forge_outcome(&payment, "payment.expired").await;
    app.wait_for_status(id, "expired").await;
    app.pay(&payment, CARD_OK).await;
    assert_eq!(app.get_payment(id).await["status"], "expired");

    let report = app.reconcile_today_via_api().await;
    assert_eq!(report["lines"], 2, "{report:#}");
    assert_eq!(report["matched"], 2, "{report:#}");
    let healed = of_kind(&report, "missing_in_ledger");
    assert_eq!(healed.len(), 1, "{report:#}");
    assert_eq!(healed[0]["auto_healed"], true, "{report:#}");
    assert_eq!(app.get_payment(id).await["status"], "succeeded");
    assert_eq!(app.captures_of(id).await, 1);
    assert_eq!(app.late_capture_events().await.len(), 1);
    assert_eq!(app.wallet_minor("seller_a", "USD").await, 1500);
    assert_eq!(app.account_sum("psp_receivable:sandbox", "USD").await, 0);
    // Read again: nothing moves.
    app.reconcile_today_via_api().await;
    assert_eq!(app.captures_of(id).await, 1);
    assert!(app.verify_ledger().await.ok());
}

async fn a_checkout_paid_twice_is_refunded_at_once(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let first = app.create_payment("chk_twice").await;
    let first_id = id_of(&first);
    app.forge_outcome(&first, "payment.failed").await;
    app.wait_for_status(first_id, "failed").await;
    // The buyer pays the checkout with a new payment...
    let second = app
        .post_payment("key-chk_twice-again", &checkout("chk_twice"))
        .await;
    assert_eq!(second.status(), StatusCode::CREATED);
    let second: Value = second.json().await.unwrap();
    app.pay(&second, CARD_OK).await;
    app.wait_for_status(id_of(&second), "succeeded").await;
    // ...and then the first one's page, left open, too.
    app.pay(&first, CARD_OK).await;
    let refunded = app.wait_for_status(first_id, "refunded").await;
    assert_eq!(
        refunded["failure_code"],
        Value::Null,
        "it did not fail after all"
    );
    assert_eq!(refunded["orders"][0]["status"], "refunded");
    assert_eq!(refunded["orders"][1]["status"], "refunded");
    let refunds = app
        .get_json(&format!("/v1/payments/{first_id}/refunds"))
        .await;
    let refunds = refunds["data"].as_array().unwrap();
    assert_eq!(refunds.len(), 2);
    assert!(refunds.iter().all(|r| r["status"] == "succeeded"));
    assert_eq!(
        refunds
            .iter()
            .map(|r| r["amount"].as_i64().unwrap())
            .sum::<i64>(),
        1750
    );
    assert_eq!(app.captures_of(first_id).await, 1);
    assert_eq!(app.captures_of(id_of(&second)).await, 1);
    // The sellers keep one payment's worth; the PSP owes us one payment.
    assert_eq!(app.wallet("seller_a", "USD").await, (1500, 1500));
    assert_eq!(app.wallet("seller_b", "USD").await, (250, 250));
    assert_eq!(app.account_sum("psp_receivable:sandbox", "USD").await, 1750);
    let events = app.late_capture_events().await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["duplicate_of"], id_of(&second));
    assert_eq!(app.get_payment(id_of(&second)).await["status"], "succeeded");
    let report = app.verify_ledger().await;
    assert!(report.ok(), "{report:?}");
    // Two captures and two refunds.
    assert_eq!(report.transactions, 4);
}

db_test!(
    a_success_after_expiry_is_booked_once_by_the_webhook,
    a_success_after_expiry_is_booked_once_by_the_poller,
    a_success_after_expiry_is_booked_once_by_reconciliation,
    a_checkout_paid_twice_is_refunded_at_once,
);
