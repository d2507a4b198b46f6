//! Each sandbox test card, paid on the hosted page, to its end status — and what that does to
//! the orders, the wallets and the ledger.

use reqwest::StatusCode;
use sandbox_psp::SandboxConfig;

use crate::db_test;
use crate::helpers::*;

async fn card_4242_succeeds_and_books_the_sale(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let payment = app.create_payment("chk_ok").await;
    assert_eq!(payment["status"], "requires_payment");
    assert_eq!(payment["amount"], 1750);
    assert_eq!(payment["orders"][0]["status"], "executing");
    let id = payment["id"].as_str().unwrap();

    let (status, location, _) = app.pay(&payment, CARD_OK).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let location = location.unwrap();
    assert!(
        location.starts_with(&format!("{}/payments/{id}/status", app.base_url)),
        "{location}"
    );
    assert!(location.contains("status=succeeded"));

    let paid = app.wait_for_status(id, "succeeded").await;
    assert!(
        paid["orders"]
            .as_array()
            .unwrap()
            .iter()
            .all(|o| o["status"] == "succeeded")
    );
    assert_eq!(app.wallet_minor("seller_a", "USD").await, 1500);
    assert_eq!(app.wallet_minor("seller_b", "USD").await, 250);
    let report = app.verify_ledger().await;
    assert!(report.ok(), "{report:?}");
    assert_eq!(report.transactions, 1);
    assert_eq!(report.postings, 3);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM outbox WHERE topic = 'payment.succeeded'")
            .await,
        1
    );
    // The PSP charged once.
    assert_eq!(app.psp_sessions_for(id).await.len(), 1);

    let metrics = app.metrics_text().await;
    assert!(
        metrics.contains(r#"ferropay_payments_total{status="succeeded"} 1"#),
        "{metrics}"
    );
    assert!(metrics.contains(r#"ferropay_ledger_transactions_total{kind="capture"} 1"#));
    assert!(metrics.contains("ferropay_http_requests_total"));
    // The backlog, read from the database: nothing is dead, no break is open, nothing is
    // pending for long; no relay runs here, so there is no outbox lag to report.
    assert!(
        !metrics.contains("ferropay_outbox_lag_seconds"),
        "{metrics}"
    );
    for gauge in [
        r#"ferropay_jobs{status="dead"} 0"#,
        "ferropay_reconciliation_breaks_open 0",
        "ferropay_payments_pending_long 0",
    ] {
        assert!(
            metrics.lines().any(|line| line == gauge),
            "{gauge}: {metrics}"
        );
    }
}

async fn declined_cards_fail_and_post_nothing(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    for (checkout_id, card, code) in [
        ("chk_declined", CARD_DECLINED, "card_declined"),
        ("chk_no_funds", CARD_NO_FUNDS, "insufficient_funds"),
    ] {
        let payment = app.create_payment(checkout_id).await;
        let (status, location, _) = app.pay(&payment, card).await;
        assert_eq!(status, StatusCode::SEE_OTHER);
        assert!(location.unwrap().contains("status=failed"));
        let failed = app
            .wait_for_status(payment["id"].as_str().unwrap(), "failed")
            .await;
        assert_eq!(failed["failure_code"], code);
        assert!(
            failed["orders"]
                .as_array()
                .unwrap()
                .iter()
                .all(|o| o["status"] == "failed")
        );
    }
    assert_eq!(app.wallet_minor("seller_a", "USD").await, 0);
    let report = app.verify_ledger().await;
    assert!(report.ok());
    assert_eq!(report.transactions, 0);
}

async fn three_d_secure_passes_and_fails(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let passed = app.create_payment("chk_3ds_pass").await;
    let (status, _, page) = app.pay(&passed, CARD_3DS).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("name=\"code\""), "a challenge form: {page}");
    let (status, location) = app.challenge(&passed, "123456").await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert!(location.unwrap().contains("status=succeeded"));
    app.wait_for_status(passed["id"].as_str().unwrap(), "succeeded")
        .await;

    let failed = app.create_payment("chk_3ds_fail").await;
    app.pay(&failed, CARD_3DS).await;
    let (status, location) = app.challenge(&failed, "000000").await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert!(location.unwrap().contains("status=failed"));
    let failed = app
        .wait_for_status(failed["id"].as_str().unwrap(), "failed")
        .await;
    assert_eq!(failed["failure_code"], "authentication_failed");

    assert_eq!(app.wallet_minor("seller_a", "USD").await, 1500);
    let report = app.verify_ledger().await;
    assert!(report.ok());
    assert_eq!(report.transactions, 1);
}

/// The buyer's status page of a payment, as HTML.
async fn status_page(app: &TestApp, payment_id: &str) -> String {
    let response = app
        .http
        .get(format!("{}/payments/{payment_id}/status", app.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.text().await.unwrap()
}

async fn review_holds_the_payment_then_it_succeeds(db: Db) {
    let mut options = AppOptions::default();
    options.sandbox.review_delay_ms = 1_500;
    let Some(app) = spawn_app_with(db, options).await else {
        return;
    };
    let payment = app.create_payment("chk_review").await;
    let id = payment["id"].as_str().unwrap();
    let (_, location, _) = app.pay(&payment, CARD_REVIEW).await;
    assert!(location.unwrap().contains("status=processing"));
    let processing = app.wait_for_status(id, "processing").await;
    assert!(
        processing["orders"]
            .as_array()
            .unwrap()
            .iter()
            .all(|o| o["status"] == "pending")
    );
    assert_eq!(
        app.wallet_minor("seller_a", "USD").await,
        0,
        "nothing booked while in review"
    );

    let page = status_page(&app, id).await;
    assert!(
        page.contains("http-equiv=\"refresh\""),
        "a pending page refreshes itself"
    );

    app.wait_for_status(id, "succeeded").await;
    assert_eq!(app.wallet_minor("seller_a", "USD").await, 1500);
    let page = status_page(&app, id).await;
    assert!(
        !page.contains("http-equiv=\"refresh\""),
        "a final page does not refresh"
    );
    assert!(page.contains("data-status=\"succeeded\""));
    assert!(app.verify_ledger().await.ok());
}

async fn processing_error_keeps_the_payment_open(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let payment = app.create_payment("chk_retry_card").await;
    let id = payment["id"].as_str().unwrap();
    let (status, location, page) = app.pay(&payment, CARD_PROCESSING_ERROR).await;
    assert!(location.is_none(), "no redirect on a processing error");
    assert_eq!(
        status,
        StatusCode::OK,
        "the page is shown again, to try again"
    );
    assert!(page.contains("processing_error") || page.contains("processing error"));
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(app.get_payment(id).await["status"], "requires_payment");

    let (_, location, _) = app.pay(&payment, CARD_OK).await;
    assert!(location.unwrap().contains("status=succeeded"));
    app.wait_for_status(id, "succeeded").await;
    assert_eq!(app.verify_ledger().await.transactions, 1);
}

async fn an_unpaid_session_expires(db: Db) {
    let options = AppOptions {
        sandbox: SandboxConfig {
            session_ttl_ms: 300,
            ..AppOptions::default().sandbox
        },
        ..AppOptions::default()
    };
    let Some(app) = spawn_app_with(db, options).await else {
        return;
    };
    let payment = app.create_payment("chk_expire").await;
    let expired = app
        .wait_for_status(payment["id"].as_str().unwrap(), "expired")
        .await;
    assert!(
        expired["orders"]
            .as_array()
            .unwrap()
            .iter()
            .all(|o| o["status"] == "expired")
    );
    // The checkout is free again for a new payment.
    let again = app
        .post_payment("another-key", &checkout("chk_expire"))
        .await;
    assert_eq!(again.status(), StatusCode::CREATED);
    assert_eq!(app.verify_ledger().await.transactions, 0);
}

/// The buyer is back from the PSP, which said "succeeded", but its webhook has not arrived: the
/// page says it is confirming and reloads, and never offers to pay again (a buyer once paid
/// twice that way); once the webhook is applied, the same URL says paid.
async fn back_before_the_webhook_the_page_confirms_and_never_offers_to_pay(db: Db) {
    let mut options = AppOptions::default();
    // Every webhook is lost, and the poller is far off: only the webhook sent below settles it.
    options.sandbox.faults.webhook_drop_rate = 1.0;
    options.sandbox.webhook_max_attempts = 1;
    let Some(app) = spawn_app_with(db, options).await else {
        return;
    };
    let payment = app.create_payment("chk_confirming").await;
    let id = payment["id"].as_str().unwrap();
    let pay_url = payment["redirect_url"].as_str().unwrap();
    let (_, location, _) = app.pay(&payment, CARD_OK).await;
    let back = location.unwrap();
    assert!(back.contains("status=succeeded"));

    let page = |url: String| {
        let http = app.http.clone();
        async move {
            let response = http.get(url).send().await.unwrap();
            assert_eq!(response.status(), StatusCode::OK);
            response.text().await.unwrap()
        }
    };
    let confirming = page(back.clone()).await;
    assert!(
        confirming.contains(r#"data-state="confirming""#),
        "{confirming}"
    );
    assert!(confirming.contains("Confirming your payment"));
    assert!(confirming.contains(r#"http-equiv="refresh" content="1""#));
    assert!(!confirming.contains(pay_url), "no way to pay again");
    assert_eq!(app.get_payment(id).await["status"], "requires_payment");
    // Reached some other way, an unpaid payment offers the hosted page.
    let unpaid = page(format!("{}/payments/{id}/status", app.base_url)).await;
    assert!(unpaid.contains(r#"data-state="awaiting_payment""#));
    assert!(unpaid.contains(&format!(r#"href="{pay_url}""#)));

    let event = payment_event("evt_confirming", "payment.succeeded", &payment);
    let applied = app.send_webhook(&event, WEBHOOK_SECRET, now_s()).await;
    assert_eq!(applied.status(), StatusCode::OK);
    let paid = page(back).await;
    assert!(paid.contains(r#"data-state="paid""#), "{paid}");
    assert!(paid.contains("Thank you, your payment went through"));
    assert!(!paid.contains("http-equiv=\"refresh\""));
}

db_test!(
    back_before_the_webhook_the_page_confirms_and_never_offers_to_pay,
    card_4242_succeeds_and_books_the_sale,
    declined_cards_fail_and_post_nothing,
    three_d_secure_passes_and_fails,
    review_holds_the_payment_then_it_succeeds,
    processing_error_keeps_the_payment_open,
    an_unpaid_session_expires,
);
