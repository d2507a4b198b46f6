//! `Idempotency-Key` on `POST /v1/payments`: replay, 409 while in flight, 422 for another body,
//! 409 for a checkout already in flight, and 503 + resume after a passing PSP failure — never a
//! second PSP session.

use reqwest::StatusCode;
use sandbox_psp::{Faults, SandboxConfig};
use serde_json::Value;

use crate::db_test;
use crate::helpers::*;

async fn the_same_key_and_body_replay_the_first_answer(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let body = checkout("chk_replay");
    let first = app.post_payment("key-1", &body).await;
    assert_eq!(first.status(), StatusCode::CREATED);
    assert!(first.headers().get("Idempotent-Replayed").is_none());
    let first: Value = first.json().await.unwrap();

    // The same JSON, other whitespace and key order, is the same request.
    let reordered = format!(
        r#"{{ "orders": {}, "currency": "USD", "buyer": {{"email": "b@example.com", "id": "buyer_7"}}, "checkout_id": "chk_replay" }}"#,
        body["orders"]
    );
    let second = app.post_payment_raw(Some("key-1"), reordered).await;
    assert_eq!(second.status(), StatusCode::CREATED);
    assert_eq!(second.headers()["Idempotent-Replayed"], "true");
    let second: Value = second.json().await.unwrap();
    assert_eq!(first, second);

    assert_eq!(app.count("SELECT COUNT(*) FROM payments").await, 1);
    assert_eq!(
        app.psp_sessions_for(first["id"].as_str().unwrap())
            .await
            .len(),
        1
    );
}

async fn the_same_key_with_another_body_is_refused(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    assert_eq!(
        app.post_payment("key-1", &checkout("chk_a")).await.status(),
        StatusCode::CREATED
    );
    let other = app.post_payment("key-1", &checkout("chk_b")).await;
    assert_eq!(other.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let error: Value = other.json().await.unwrap();
    assert_eq!(error["error"]["code"], "idempotency_key_reused");
    assert_eq!(app.count("SELECT COUNT(*) FROM payments").await, 1);
}

async fn the_same_key_in_flight_gets_409(db: Db) {
    let options = AppOptions {
        sandbox: SandboxConfig {
            faults: Faults {
                latency_ms: 1_500,
                ..Faults::default()
            },
            ..AppOptions::default().sandbox
        },
        ..AppOptions::default()
    };
    let Some(app) = spawn_app_with(db, options).await else {
        return;
    };
    let body = checkout("chk_race");
    let (first, second) = tokio::join!(app.post_payment("key-race", &body), async {
        // The second is sent once the first holds the key (and waits on the PSP's latency).
        eventually(
            std::time::Duration::from_secs(10),
            "the first request holds its key",
            || async {
                app.count(
                    "SELECT COUNT(*) FROM idempotency_keys \
                     WHERE idempotency_key = 'key-race' AND locked_at_ms IS NOT NULL",
                )
                .await
                    == 1
            },
        )
        .await;
        app.post_payment("key-race", &body).await
    });
    assert_eq!(first.status(), StatusCode::CREATED);
    assert_eq!(second.status(), StatusCode::CONFLICT);
    let error: Value = second.json().await.unwrap();
    assert_eq!(error["error"]["code"], "idempotency_key_in_use");
    // Once the first has finished, the key replays it.
    let third = app.post_payment("key-race", &body).await;
    assert_eq!(third.status(), StatusCode::CREATED);
    assert_eq!(third.headers()["Idempotent-Replayed"], "true");
    assert_eq!(app.count("SELECT COUNT(*) FROM payments").await, 1);
}

async fn a_checkout_in_flight_or_paid_takes_no_second_payment(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let first = app.create_payment("chk_once").await;
    let second = app.post_payment("other-key", &checkout("chk_once")).await;
    assert_eq!(second.status(), StatusCode::CONFLICT);
    let error: Value = second.json().await.unwrap();
    assert_eq!(error["error"]["code"], "checkout_in_flight");

    app.pay(&first, CARD_OK).await;
    app.wait_for_status(first["id"].as_str().unwrap(), "succeeded")
        .await;
    let third = app.post_payment("third-key", &checkout("chk_once")).await;
    assert_eq!(
        third.status(),
        StatusCode::CONFLICT,
        "a paid checkout is not paid again"
    );

    // After a failed payment, the checkout may be paid anew.
    let failed = app.create_payment("chk_after_fail").await;
    app.pay(&failed, CARD_DECLINED).await;
    app.wait_for_status(failed["id"].as_str().unwrap(), "failed")
        .await;
    let retry = app
        .post_payment("retry-key", &checkout("chk_after_fail"))
        .await;
    assert_eq!(retry.status(), StatusCode::CREATED);
}

async fn a_psp_outage_answers_503_and_the_retry_resumes(db: Db) {
    // A PSP address where nothing listens yet.
    let psp_addr = parked_addr();
    let options = AppOptions {
        psp_url: Some(format!("http://{psp_addr}")),
        ..AppOptions::default()
    };
    let Some(mut app) = spawn_app_with(db, options).await else {
        return;
    };
    let body = checkout("chk_outage");
    let down = app.post_payment("key-outage", &body).await;
    assert_eq!(down.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(down.headers().get("Retry-After").is_some());
    let error: Value = down.json().await.unwrap();
    assert_eq!(error["error"]["code"], "psp_unavailable");
    assert_eq!(app.count("SELECT COUNT(*) FROM payments").await, 1);

    // The PSP comes back; the retry with the same key resumes the same payment.
    let sandbox = app.start_sandbox_at(psp_addr).await;
    let up = app.post_payment("key-outage", &body).await;
    assert_eq!(up.status(), StatusCode::CREATED);
    assert!(up.headers().get("Idempotent-Replayed").is_none());
    let payment: Value = up.json().await.unwrap();
    assert_eq!(app.count("SELECT COUNT(*) FROM payments").await, 1);
    let id = payment["id"].as_str().unwrap();
    assert_eq!(app.psp_sessions_for(id).await.len(), 1);
    app.pay(&payment, CARD_OK).await;
    app.wait_for_status(id, "succeeded").await;
    sandbox.shutdown();
}

async fn after_a_503_a_worker_registers_the_payment_in_the_background(db: Db) {
    let psp_addr = parked_addr();
    let options = AppOptions {
        psp_url: Some(format!("http://{psp_addr}")),
        ..AppOptions::default()
    };
    let Some(mut app) = spawn_app_with(db, options).await else {
        return;
    };
    let body = checkout("chk_background");
    let down = app.post_payment("key-background", &body).await;
    assert_eq!(down.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(down.headers()["Retry-After"], "1");
    let payment_id: String = {
        use sqlx::Row;
        sqlx::query("SELECT id FROM payments")
            .fetch_one(app.service().store.pool())
            .await
            .unwrap()
            .get("id")
    };
    // Left on the queue: waiting, or being tried by a worker (and failing) at this moment.
    let queued = app
        .count(
            "SELECT COUNT(*) FROM jobs WHERE kind = 'payin.register_session' \
             AND status IN ('queued', 'running')",
        )
        .await;
    assert_eq!(queued, 1, "the registration is left on the queue");

    // The PSP comes back; nobody retries the request, yet a worker registers the payment.
    let sandbox = app.start_sandbox_at(psp_addr).await;
    eventually(
        std::time::Duration::from_secs(10),
        "a worker registers the payment",
        || async { app.get_payment(&payment_id).await["redirect_url"].is_string() },
    )
    .await;
    let registered = app.get_payment(&payment_id).await;
    assert_eq!(registered["orders"][0]["status"], "executing");

    // The checkout's retry answers with that session: one at the PSP.
    let up = app.post_payment("key-background", &body).await;
    assert_eq!(up.status(), StatusCode::CREATED);
    let payment: Value = up.json().await.unwrap();
    assert_eq!(payment["id"], payment_id.as_str());
    assert_eq!(payment["redirect_url"], registered["redirect_url"]);
    assert_eq!(app.psp_sessions_for(&payment_id).await.len(), 1);
    sandbox.shutdown();
}

async fn psp_errors_after_the_effect_never_make_a_second_session(db: Db) {
    let options = AppOptions {
        sandbox: SandboxConfig {
            faults: Faults {
                error_rate: 0.5,
                ..Faults::default()
            },
            ..AppOptions::default().sandbox
        },
        ..AppOptions::default()
    };
    let Some(app) = spawn_app_with(db, options).await else {
        return;
    };
    let mut created = Vec::new();
    for i in 0..12 {
        let body = checkout(&format!("chk_flaky_{i}"));
        // A client retries 503s with the same key, as the contract asks.
        let mut answer = None;
        for _ in 0..20 {
            let response = app.post_payment(&format!("key-flaky-{i}"), &body).await;
            if response.status() != StatusCode::SERVICE_UNAVAILABLE {
                answer = Some(response);
                break;
            }
        }
        let response = answer.expect("a 201 within 20 tries");
        assert_eq!(response.status(), StatusCode::CREATED);
        created.push(response.json::<Value>().await.unwrap());
    }
    assert_eq!(app.count("SELECT COUNT(*) FROM payments").await, 12);
    for payment in &created {
        let sessions = app.psp_sessions_for(payment["id"].as_str().unwrap()).await;
        assert_eq!(sessions.len(), 1, "one PSP session per payment");
        assert_eq!(
            sessions[0]["token"].as_str(),
            payment["redirect_url"].as_str().unwrap().rsplit('/').next()
        );
    }
}

/// A request taken for dead (its claim older than the lease) and the retry that took its key
/// over both reach the end: the second to save its answer fails (its transaction, which would
/// write a second refund or payout, rolls back), and forgetting the key on that failure leaves
/// the first answer in place for every later retry.
async fn a_request_taken_over_cannot_finish_after_its_successor(db: Db) {
    use ferropay::idempotency::{self, Claim, KeyScope};
    let Some(test_db) = TestDb::create(db).await else {
        return;
    };
    let store = ferropay::store::Store::open(&test_db.url, 2).await.unwrap();
    let scope = KeyScope {
        api_key_id: "key_t".into(),
        key: "refund-race".into(),
    };
    let lease_ms = 30_000;
    let t0 = ferropay::clock::now_ms();
    let first = idempotency::claim(&store, &scope, "fp", t0, lease_ms)
        .await
        .unwrap();
    assert!(matches!(first, Claim::Proceed { .. }));
    // Within the lease the key is busy; past it, the retry takes it over.
    assert!(
        idempotency::claim(&store, &scope, "fp", t0 + 1_000, lease_ms)
            .await
            .is_err()
    );
    let retry = idempotency::claim(&store, &scope, "fp", t0 + lease_ms + 1, lease_ms)
        .await
        .unwrap();
    assert!(matches!(retry, Claim::Proceed { .. }));

    let mut tx = store.begin_write().await.unwrap();
    idempotency::finish(&mut tx, &scope, 201, r#"{"id":"re_retry"}"#)
        .await
        .unwrap();
    tx.commit().await.unwrap();

    let mut tx = store.begin_write().await.unwrap();
    let late = idempotency::finish(&mut tx, &scope, 201, r#"{"id":"re_first"}"#).await;
    let error = late.expect_err("the slower request must not save a second answer");
    assert_eq!(error.status(), 409, "{error}");
    tx.rollback().await.unwrap();
    idempotency::forget(&store, &scope).await.unwrap();

    let later = idempotency::claim(&store, &scope, "fp", t0 + 2 * lease_ms, lease_ms)
        .await
        .unwrap();
    assert_eq!(
        later,
        Claim::Replay {
            status: 201,
            body: r#"{"id":"re_retry"}"#.into()
        }
    );
    store.close().await;
}

/// Found by schemathesis: requests racing on one key that each release it (the checkout is in
/// flight) once made the loser of the race read a key that was gone, a 500. Each must be 409.
async fn requests_racing_on_a_released_key_are_each_answered(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    app.create_payment("chk_race").await;
    let body = checkout("chk_race");
    let answers =
        futures_util::future::join_all((0..16).map(|_| app.post_payment("race-key", &body))).await;
    for answer in answers {
        let status = answer.status();
        let error: Value = answer.json().await.unwrap();
        assert_eq!(status, StatusCode::CONFLICT, "{error}");
        assert!(
            ["checkout_in_flight", "idempotency_key_in_use"]
                .contains(&error["error"]["code"].as_str().unwrap()),
            "{error}"
        );
    }
}

/// First requests at once share the money engine's batches (payment creation is group
/// committed): one checkout asked for under many keys gets one payment and every other request
/// 409 `checkout_in_flight`; one new key sent many times makes one payment, every answer
/// naming it or saying the key is in use. Nothing is left half made: each payment created has
/// its orders, its key and its jobs.
async fn first_requests_at_once_make_one_payment_per_checkout_and_per_key(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let body = checkout("chk_many_keys");
    let keys: Vec<String> = (0..32).map(|i| format!("many-{i}")).collect();
    let answers = futures_util::future::join_all(
        keys.iter()
            .map(|key| app.post_payment_raw(Some(key), body.to_string())),
    )
    .await;
    let mut created = Vec::new();
    for answer in answers {
        let status = answer.status();
        let json: Value = answer.json().await.unwrap();
        if status == StatusCode::CREATED {
            created.push(json["id"].as_str().unwrap().to_owned());
        } else {
            assert_eq!(status, StatusCode::CONFLICT, "{json}");
            assert_eq!(json["error"]["code"], "checkout_in_flight", "{json}");
        }
    }
    assert_eq!(created.len(), 1, "one checkout, one payment: {created:?}");

    let body = checkout("chk_one_key");
    let answers = futures_util::future::join_all(
        (0..32).map(|_| app.post_payment_raw(Some("one-key"), body.to_string())),
    )
    .await;
    let mut named = std::collections::BTreeSet::new();
    for answer in answers {
        let status = answer.status();
        let json: Value = answer.json().await.unwrap();
        if status == StatusCode::CREATED {
            named.insert(json["id"].as_str().unwrap().to_owned());
        } else {
            assert_eq!(status, StatusCode::CONFLICT, "{json}");
            assert_eq!(json["error"]["code"], "idempotency_key_in_use", "{json}");
        }
    }
    assert_eq!(named.len(), 1, "one key, one payment: {named:?}");

    assert_eq!(app.count("SELECT COUNT(*) FROM payments").await, 2);
    assert_eq!(app.count("SELECT COUNT(*) FROM payment_orders").await, 4);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM payments WHERE psp_token IS NULL")
            .await,
        0,
        "every payment created has its session"
    );
    assert_eq!(
        app.count(
            "SELECT COUNT(*) FROM idempotency_keys WHERE payment_id IS NOT NULL \
             AND response_status = 201"
        )
        .await,
        2,
        "the two keys that made a payment hold its answer"
    );
    assert_eq!(
        app.count(
            "SELECT COUNT(*) FROM jobs WHERE kind = 'payin.register_session' AND status = 'done'"
        )
        .await,
        2
    );
    assert_eq!(
        app.count("SELECT COUNT(*) FROM jobs WHERE kind = 'payin.poll_session'")
            .await,
        2
    );
    if matches!(db, Db::Postgres) {
        // The payment, its orders, key and jobs were written by one statement (RowWrites).
        let metrics = app.metrics_text().await;
        assert!(
            metrics.contains("ferropay_engine_row_writes_total{as=\"one_statement\"}"),
            "{metrics}"
        );
    }
}

db_test!(
    first_requests_at_once_make_one_payment_per_checkout_and_per_key,
    requests_racing_on_a_released_key_are_each_answered,
    a_request_taken_over_cannot_finish_after_its_successor,
    the_same_key_and_body_replay_the_first_answer,
    the_same_key_with_another_body_is_refused,
    the_same_key_in_flight_gets_409,
    a_checkout_in_flight_or_paid_takes_no_second_payment,
    a_psp_outage_answers_503_and_the_retry_resumes,
    after_a_503_a_worker_registers_the_payment_in_the_background,
    psp_errors_after_the_effect_never_make_a_second_session,
);
