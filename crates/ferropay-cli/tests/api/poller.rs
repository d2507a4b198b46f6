//! The pending-payment poller: with a PSP whose webhooks never arrive, payments still reach the
//! outcome the PSP decided (succeeded, failed, held for review then succeeded, expired), through
//! the same path as a webhook; a webhook that settles a payment first cancels its poll.

use reqwest::StatusCode;
use sandbox_psp::{SandboxConfig, SandboxHandle};

use crate::db_test;
use crate::helpers::*;

/// ferropay on a sandbox PSP that sends no webhooks at all, polling after 200 ms.
async fn app_without_webhooks(db: Db, session_ttl_ms: u64) -> Option<(TestApp, SandboxHandle)> {
    let sandbox = sandbox_psp::spawn(
        tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        SandboxConfig {
            webhook_url: String::new(),
            session_ttl_ms,
            ..AppOptions::default().sandbox
        },
    )
    .await
    .unwrap();
    let options = AppOptions {
        psp_url: Some(sandbox.base_url.clone()),
        poll_after_ms: 200,
        ..AppOptions::default()
    };
    let Some(mut app) = spawn_app_with(db, options).await else {
        sandbox.shutdown();
        return None;
    };
    app.sandbox_url = sandbox.base_url.clone();
    Some((app, sandbox))
}

async fn lost_webhooks_are_made_good_by_polling(db: Db) {
    let Some((app, sandbox)) = app_without_webhooks(db, 3_600_000).await else {
        return;
    };
    let mut payments = Vec::new();
    for (i, card) in [CARD_OK, CARD_DECLINED, CARD_REVIEW].iter().enumerate() {
        let payment = app.create_payment(&format!("chk_poll_{i}")).await;
        app.pay(&payment, card).await;
        payments.push(payment);
    }
    let id = |i: usize| payments[i]["id"].as_str().unwrap().to_owned();
    let paid = app.wait_for_status(&id(0), "succeeded").await;
    assert_eq!(paid["orders"][0]["status"], "succeeded");
    let declined = app.wait_for_status(&id(1), "failed").await;
    assert_eq!(declined["failure_code"], "card_declined");
    app.wait_for_status(&id(2), "succeeded").await;

    assert_eq!(
        app.count("SELECT COUNT(*) FROM webhook_events").await,
        0,
        "no webhook ever came: the poller did it all"
    );
    assert_eq!(app.wallet_minor("seller_a", "USD").await, 3_000);
    assert_eq!(app.wallet_minor("seller_b", "USD").await, 500);
    let report = app.verify_ledger().await;
    assert!(report.ok(), "{report:?}");
    assert_eq!(report.transactions, 2);
    // The poll that settles a payment records itself done just after the payment moves.
    eventually(
        std::time::Duration::from_secs(5),
        "three polls done",
        || async {
            app.count(
                "SELECT COUNT(*) FROM jobs WHERE kind = 'payin.poll_session' AND status = 'done'",
            )
            .await
                == 3
        },
    )
    .await;
    sandbox.shutdown();
}

async fn an_expired_session_expires_the_payment(db: Db) {
    let Some((app, sandbox)) = app_without_webhooks(db, 600).await else {
        return;
    };
    let payment = app.create_payment("chk_abandoned").await;
    let id = payment["id"].as_str().unwrap();
    let expired = app.wait_for_status(id, "expired").await;
    assert_eq!(expired["orders"][0]["status"], "expired");
    assert_eq!(expired["orders"][1]["status"], "expired");
    let sessions = app.psp_sessions_for(id).await;
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0]["status"], "expired");
    assert_eq!(app.verify_ledger().await.transactions, 0);
    // The checkout may be paid anew.
    let retry = app
        .post_payment("another-key", &checkout("chk_abandoned"))
        .await;
    assert_eq!(retry.status(), StatusCode::CREATED);
    sandbox.shutdown();
}

async fn a_webhook_that_settles_the_payment_cancels_its_poll(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let payment = app.create_payment("chk_webhook_first").await;
    app.pay(&payment, CARD_OK).await;
    app.wait_for_status(payment["id"].as_str().unwrap(), "succeeded")
        .await;
    assert_eq!(
        app.count(
            "SELECT COUNT(*) FROM jobs WHERE kind = 'payin.poll_session' AND status = 'done' \
             AND attempts = 0"
        )
        .await,
        1,
        "cancelled without ever running"
    );
    assert_eq!(
        app.count(
            "SELECT COUNT(*) FROM jobs WHERE kind = 'payin.register_session' AND status = 'done'"
        )
        .await,
        1
    );
}

db_test!(
    lost_webhooks_are_made_good_by_polling,
    an_expired_session_expires_the_payment,
    a_webhook_that_settles_the_payment_cancels_its_poll,
);
