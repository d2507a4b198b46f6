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

/// A PSP outage of an hour: every poll of every pending payment fails, many more times than a
/// job may fail before it is dead-lettered, and backs off to the ceiling; none is
/// dead-lettered. Once the PSP is back (and the clock has moved on an hour), every pending
/// payment settles as the PSP decided.
async fn an_hour_long_psp_outage_delays_payments_but_never_dead_letters_their_polls(db: Db) {
    let sandbox = sandbox_psp::spawn(
        tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        SandboxConfig {
            webhook_url: String::new(),
            ..AppOptions::default().sandbox
        },
    )
    .await
    .unwrap();
    let max_attempts = 3;
    let options = AppOptions {
        psp_url: Some(sandbox.base_url.clone()),
        poll_after_ms: 100,
        jobs: ferropay::jobs::JobsConfig {
            retry: ferropay::jobs::RetryPolicy {
                base_delay_ms: 20,
                max_delay_ms: 100,
                max_attempts,
            },
            ..test_jobs_config()
        },
        ..AppOptions::default()
    };
    let Some(mut app) = spawn_app_with(db, options).await else {
        sandbox.shutdown();
        return;
    };
    app.sandbox_url = sandbox.base_url.clone();
    let mut payments = Vec::new();
    for (i, _) in [CARD_OK, CARD_DECLINED, CARD_OK].iter().enumerate() {
        payments.push(app.create_payment(&format!("chk_outage_{i}")).await);
    }
    // The PSP's API goes down; its hosted page still takes the buyers' cards.
    let outage = |down: bool| {
        let app = &app;
        async move {
            app.http
                .post(format!("{}/v1/test/outage", app.sandbox_url))
                .bearer_auth(PSP_API_KEY)
                .json(&serde_json::json!({ "down": down }))
                .send()
                .await
                .unwrap()
                .json::<serde_json::Value>()
                .await
                .unwrap()
        }
    };
    outage(true).await;
    for (payment, card) in payments.iter().zip([CARD_OK, CARD_DECLINED, CARD_OK]) {
        app.pay(payment, card).await;
    }
    // Many more failed polls than a job may fail: still queued, none dead.
    let refused_at_least = (3 * (max_attempts + 2)) as u64;
    eventually(
        std::time::Duration::from_secs(20),
        "the polls keep failing",
        || async {
            let state = app
                .http
                .get(format!("{}/v1/test/outage", app.sandbox_url))
                .bearer_auth(PSP_API_KEY)
                .send()
                .await
                .unwrap()
                .json::<serde_json::Value>()
                .await
                .unwrap();
            state["refused_calls"].as_u64().unwrap() >= refused_at_least
        },
    )
    .await;
    assert_eq!(
        app.count("SELECT COUNT(*) FROM jobs WHERE status = 'dead'")
            .await,
        0
    );
    // An hour on: the payments are an hour old, so the polls back off to the ceiling.
    let store = &app.service().store;
    sqlx::query("UPDATE payments SET created_at_ms = created_at_ms - 3600000")
        .execute(store.pool())
        .await
        .unwrap();
    let ceiling_ms = ferropay::payin::poll::MAX_POLL_INTERVAL_MS;
    eventually(
        std::time::Duration::from_secs(30),
        "every poll waits the ceiling",
        || async {
            let now = ferropay::clock::now_ms();
            let waiting: i64 = sqlx::query_scalar::<_, i64>(
                "SELECT COUNT(*) FROM jobs WHERE kind = 'payin.poll_session' \
                 AND status = 'queued' AND due_at_ms > $1",
            )
            .bind(now + ceiling_ms - 60_000)
            .fetch_one(store.pool())
            .await
            .unwrap();
            waiting == 3
        },
    )
    .await;
    assert_eq!(
        app.count("SELECT COUNT(*) FROM jobs WHERE status = 'dead'")
            .await,
        0
    );
    for payment in &payments {
        assert_eq!(
            app.get_payment(payment["id"].as_str().unwrap()).await["status"],
            "requires_payment"
        );
    }
    // The PSP is back, and the clock has moved past the polls' time.
    let state = outage(false).await;
    assert_eq!(state["down"], false);
    sqlx::query(
        "UPDATE jobs SET due_at_ms = $1 WHERE kind = 'payin.poll_session' AND status = 'queued'",
    )
    .bind(ferropay::clock::now_ms())
    .execute(store.pool())
    .await
    .unwrap();
    let id = |i: usize| payments[i]["id"].as_str().unwrap().to_owned();
    app.wait_for_status(&id(0), "succeeded").await;
    app.wait_for_status(&id(1), "failed").await;
    app.wait_for_status(&id(2), "succeeded").await;
    assert_eq!(app.wallet_minor("seller_a", "USD").await, 3_000);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM jobs WHERE status = 'dead'")
            .await,
        0
    );
    let report = app.verify_ledger().await;
    assert!(report.ok(), "{report:?}");
    assert_eq!(report.transactions, 2);
    sandbox.shutdown();
}

db_test!(
    an_hour_long_psp_outage_delays_payments_but_never_dead_letters_their_polls,
    lost_webhooks_are_made_good_by_polling,
    an_expired_session_expires_the_payment,
    a_webhook_that_settles_the_payment_cancels_its_poll,
);
