//! The PSP's webhook: forged, stale, malformed and replayed events change nothing; a late or
//! out-of-order event never moves a status backwards nor posts twice.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::db_test;
use crate::helpers::*;

fn event(id: &str, kind: &str, payment: &Value) -> String {
    json!({
        "id": id,
        "type": kind,
        "created": now_s(),
        "data": {
            "token": payment["redirect_url"].as_str().unwrap().rsplit('/').next(),
            "reference": payment["id"],
            "psp_reference": "psp_test_1",
            "amount": payment["amount"],
            "currency": payment["currency"],
            "status": kind.trim_start_matches("payment."),
            "failure_code": null
        }
    })
    .to_string()
}

async fn forged_stale_and_malformed_webhooks_change_nothing(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let payment = app.create_payment("chk_forged").await;
    let id = payment["id"].as_str().unwrap();
    let body = event("evt_forged", "payment.succeeded", &payment);

    let forged = app.send_webhook(&body, "not-the-secret", now_s()).await;
    assert_eq!(forged.status(), StatusCode::BAD_REQUEST);
    let stale = app.send_webhook(&body, WEBHOOK_SECRET, now_s() - 301).await;
    assert_eq!(stale.status(), StatusCode::BAD_REQUEST);
    let future = app.send_webhook(&body, WEBHOOK_SECRET, now_s() + 301).await;
    assert_eq!(future.status(), StatusCode::BAD_REQUEST);
    let unsigned = app
        .http
        .post(format!("{}/webhooks/psp/sandbox", app.base_url))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status(), StatusCode::BAD_REQUEST);
    // The signature covers the raw body: one changed byte fails it.
    let header = sandbox_psp::sign(WEBHOOK_SECRET, now_s(), body.as_bytes());
    let tampered = app
        .http
        .post(format!("{}/webhooks/psp/sandbox", app.base_url))
        .header("Sandbox-Signature", header)
        .body(body.replace("1750", "1751"))
        .send()
        .await
        .unwrap();
    assert_eq!(tampered.status(), StatusCode::BAD_REQUEST);
    let malformed = app.send_webhook("{not json", WEBHOOK_SECRET, now_s()).await;
    assert_eq!(malformed.status(), StatusCode::BAD_REQUEST);
    // Well signed, but the amount is not the payment's.
    let wrong_amount = body.replace("\"amount\":1750", "\"amount\":9999");
    assert_ne!(wrong_amount, body);
    let wrong = app
        .send_webhook(&wrong_amount, WEBHOOK_SECRET, now_s())
        .await;
    assert_eq!(wrong.status(), StatusCode::BAD_REQUEST);

    assert_eq!(app.get_payment(id).await["status"], "requires_payment");
    assert_eq!(app.count("SELECT COUNT(*) FROM webhook_events").await, 0);
    assert_eq!(app.verify_ledger().await.transactions, 0);
    assert_eq!(app.wallet_minor("seller_a", "USD").await, 0);
}

async fn replayed_and_late_events_apply_once(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let payment = app.create_payment("chk_replayed").await;
    let id = payment["id"].as_str().unwrap();

    let succeeded = event("evt_1", "payment.succeeded", &payment);
    let first = app.send_webhook(&succeeded, WEBHOOK_SECRET, now_s()).await;
    assert_eq!(first.status(), StatusCode::OK);
    let first: Value = first.json().await.unwrap();
    assert_eq!(first["outcome"]["result"], "applied");

    // The same event again, as a PSP retry would send it.
    let again = app.send_webhook(&succeeded, WEBHOOK_SECRET, now_s()).await;
    assert_eq!(again.status(), StatusCode::OK);
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["outcome"]["result"], "duplicate");

    // Another event saying the same thing, and late ones that would go backwards.
    for (event_id, kind) in [
        ("evt_2", "payment.succeeded"),
        ("evt_3", "payment.processing"),
        ("evt_4", "payment.failed"),
        ("evt_5", "payment.expired"),
    ] {
        let response = app
            .send_webhook(&event(event_id, kind, &payment), WEBHOOK_SECRET, now_s())
            .await;
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["outcome"]["result"], "unchanged", "{kind}");
    }

    let paid = app.get_payment(id).await;
    assert_eq!(paid["status"], "succeeded");
    assert_eq!(app.wallet_minor("seller_a", "USD").await, 1500);
    let report = app.verify_ledger().await;
    assert!(report.ok());
    assert_eq!(report.transactions, 1, "posted once");
    assert_eq!(app.count("SELECT COUNT(*) FROM outbox").await, 1);
}

async fn concurrent_duplicate_deliveries_apply_once(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let payment = app.create_payment("chk_concurrent").await;
    let body = event("evt_same", "payment.succeeded", &payment);
    let deliveries = (0..8).map(|_| app.send_webhook(&body, WEBHOOK_SECRET, now_s()));
    let responses = futures_util::future::join_all(deliveries).await;
    let mut applied = 0;
    for response in responses {
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await.unwrap();
        applied += usize::from(body["outcome"]["result"] == "applied");
    }
    assert_eq!(applied, 1);
    assert_eq!(app.verify_ledger().await.transactions, 1);
    assert_eq!(app.wallet_minor("seller_b", "USD").await, 250);
}

async fn a_webhook_for_another_psp_is_not_found(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let response = app
        .http
        .post(format!("{}/webhooks/psp/otherpsp", app.base_url))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}

db_test!(
    forged_stale_and_malformed_webhooks_change_nothing,
    replayed_and_late_events_apply_once,
    concurrent_duplicate_deliveries_apply_once,
    a_webhook_for_another_psp_is_not_found,
);
