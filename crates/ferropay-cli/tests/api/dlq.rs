//! The dead-letter queue through the real binary: a registration that keeps failing ends there
//! with its last error (`ferropay dlq list`), and once the PSP is back `ferropay dlq replay ID`
//! puts it back so a worker registers the payment — one PSP session, whatever happened before.
//! A permanent refusal goes there at once and fails the payment.

use std::time::Duration;

use ferropay::jobs::RetryPolicy;
use reqwest::StatusCode;
use serde_json::Value;

use crate::db_test;
use crate::helpers::*;

fn dlq_list(database_url: &str) -> Vec<Value> {
    let (code, stdout, stderr) = run_cli(&["dlq", "list", "--database-url", database_url]);
    assert_eq!(code, 0, "{stderr}");
    stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect()
}

async fn only_payment_id(app: &TestApp) -> String {
    use sqlx::Row;
    sqlx::query("SELECT id FROM payments")
        .fetch_one(app.service().store.pool())
        .await
        .unwrap()
        .get("id")
}

async fn a_registration_that_keeps_failing_is_dead_lettered_then_replayed(db: Db) {
    let psp_addr = parked_addr();
    let mut options = AppOptions {
        psp_url: Some(format!("http://{psp_addr}")),
        ..AppOptions::default()
    };
    options.jobs.retry = RetryPolicy {
        base_delay_ms: 10,
        max_delay_ms: 50,
        max_attempts: 3,
        retry_window_ms: 0,
    };
    let Some(mut app) = spawn_app_with(db, options).await else {
        return;
    };
    let body = checkout("chk_dead");
    let down = app.post_payment("key-dead", &body).await;
    assert_eq!(down.status(), StatusCode::SERVICE_UNAVAILABLE);
    let payment_id = only_payment_id(&app).await;

    // The workers go on trying in the background, then give up: the job is dead-lettered.
    let url = app.db.url.clone();
    eventually(Duration::from_secs(10), "the job is dead", || {
        let url = url.clone();
        async move { !dlq_list(&url).is_empty() }
    })
    .await;
    let dead = dlq_list(&app.db.url);
    assert_eq!(dead.len(), 1, "{dead:?}");
    let job = &dead[0];
    assert_eq!(job["kind"], "payin.register_session");
    assert_eq!(job["idempotency_key"], payment_id.as_str());
    assert_eq!(job["payload"]["payment_id"], payment_id.as_str());
    assert_eq!(job["attempts"], 3);
    let last_error = job["last_error"].as_str().unwrap();
    assert!(
        last_error.starts_with("retryable: sandbox unreachable"),
        "{last_error}"
    );
    let stuck = app.get_payment(&payment_id).await;
    assert_eq!(stuck["status"], "requires_payment");
    let metrics = app.metrics_text().await;
    assert!(
        metrics
            .lines()
            .any(|line| line == r#"ferropay_jobs{status="dead"} 1"#),
        "the dead letter shows on /metrics: {metrics}"
    );
    assert_eq!(stuck["redirect_url"], Value::Null);

    // The PSP is back; the operator replays the job and a worker registers the payment.
    let sandbox = app.start_sandbox_at(psp_addr).await;
    let job_id = job["id"].as_str().unwrap();
    let (code, stdout, stderr) = run_cli(&["dlq", "replay", job_id, "--database-url", &url]);
    assert_eq!(code, 0, "{stderr}");
    let replayed: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(replayed["id"], job_id);
    assert_eq!(replayed["status"], "queued");
    eventually(Duration::from_secs(10), "the worker registers", || async {
        app.get_payment(&payment_id).await["redirect_url"].is_string()
    })
    .await;
    assert!(dlq_list(&url).is_empty());

    // The checkout's retry with the same key gets that payment and its one session.
    let up = app.post_payment("key-dead", &body).await;
    assert_eq!(up.status(), StatusCode::CREATED);
    let payment: Value = up.json().await.unwrap();
    assert_eq!(payment["id"], payment_id.as_str());
    assert_eq!(app.psp_sessions_for(&payment_id).await.len(), 1);
    app.pay(&payment, CARD_OK).await;
    app.wait_for_status(&payment_id, "succeeded").await;

    // Only a dead job replays; an unknown one is refused too.
    let (code, _, stderr) = run_cli(&["dlq", "replay", job_id, "--database-url", &url]);
    assert_eq!(code, 1);
    assert!(stderr.contains("not in the dead-letter queue"), "{stderr}");
    let (code, _, stderr) = run_cli(&["dlq", "replay", "job_nope", "--database-url", &url]);
    assert_eq!(code, 1);
    assert!(stderr.contains("not found"), "{stderr}");
    sandbox.shutdown();
}

async fn a_psp_refusal_fails_the_payment_and_is_dead_lettered_at_once(db: Db) {
    let sandbox = sandbox_psp::spawn(
        tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        AppOptions::default().sandbox,
    )
    .await
    .unwrap();
    // ferropay holds the wrong key: the PSP answers 401, which no retry mends.
    let options = AppOptions {
        psp_url: Some(sandbox.base_url.clone()),
        psp_api_key: "psk_wrong".into(),
        ..AppOptions::default()
    };
    let Some(mut app) = spawn_app_with(db, options).await else {
        return;
    };
    app.sandbox_url = sandbox.base_url.clone();
    let body = checkout("chk_refused");
    let refused = app.post_payment("key-refused", &body).await;
    assert_eq!(refused.status(), StatusCode::BAD_GATEWAY);
    let error: Value = refused.json().await.unwrap();
    assert_eq!(error["error"]["code"], "psp_rejected");
    let payment_id = only_payment_id(&app).await;
    let payment = app.get_payment(&payment_id).await;
    assert_eq!(payment["status"], "failed");
    assert_eq!(payment["failure_code"], "psp_rejected");
    assert_eq!(payment["orders"][0]["status"], "failed");
    // Receivers hear of this failure as of any other.
    assert_eq!(
        app.count(
            "SELECT COUNT(*) FROM outbox WHERE topic = 'payment.failed' \
             AND payload LIKE '%psp_rejected%'"
        )
        .await,
        1
    );

    let dead = dlq_list(&app.db.url);
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0]["attempts"], 1, "no retry of a permanent failure");
    let last_error = dead[0]["last_error"].as_str().unwrap();
    assert!(
        last_error.starts_with("permanent: sandbox answered 401"),
        "{last_error}"
    );

    // The refusal is the key's final answer; the failed payment frees the checkout.
    let again = app.post_payment("key-refused", &body).await;
    assert_eq!(again.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(again.headers()["Idempotent-Replayed"], "true");
    let other_key = app.post_payment("key-refused-2", &body).await;
    assert_eq!(other_key.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(app.count("SELECT COUNT(*) FROM payments").await, 2);
    assert!(app.psp_sessions_for(&payment_id).await.is_empty());
    assert_eq!(
        app.count(
            "SELECT COUNT(*) FROM jobs WHERE kind = 'payin.poll_session' AND status = 'done'"
        )
        .await,
        2,
        "a refused payment is not polled"
    );
    sandbox.shutdown();
}

db_test!(
    a_registration_that_keeps_failing_is_dead_lettered_then_replayed,
    a_psp_refusal_fails_the_payment_and_is_dead_lettered_at_once,
);
