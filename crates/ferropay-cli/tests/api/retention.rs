//! Retention (`ferropay purge`, and `serve` every hour): payments' idempotency keys older than
//! a day, jobs finished more than a week ago and webhook event ids older than a month are
//! deleted, and nothing else: not a refund's key, not a key held by a request in flight, not a
//! dead job, not a recent row, not a payment. A key forgotten this way cannot charge a checkout
//! twice.

use serde_json::Value;

use crate::db_test;
use crate::helpers::*;

const HOUR_MS: i64 = 3_600_000;

async fn old_rows_go_and_a_forgotten_key_still_cannot_pay_twice(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let old = app.paid_payment("chk_retention_old").await;
    let recent = app.paid_payment("chk_retention_recent").await;
    let pool = app.service().store.pool().clone();
    let now = ferropay::clock::now_ms();
    let execute = |statement: String| {
        let pool = pool.clone();
        async move {
            sqlx::query(sqlx::AssertSqlSafe(statement))
                .execute(&pool)
                .await
                .unwrap()
                .rows_affected()
        }
    };
    let old_id = old["id"].as_str().unwrap();

    // Age what belongs to the first payment: its key by 25 h, its finished jobs by 8 days, the
    // webhook events about it by 31 days.
    assert_eq!(
        execute(format!(
            "UPDATE idempotency_keys SET created_at_ms = {} WHERE payment_id = '{old_id}'",
            now - 25 * HOUR_MS
        ))
        .await,
        1
    );
    let old_jobs = execute(format!(
        "UPDATE jobs SET finished_at_ms = {} WHERE status = 'done' AND payload LIKE '%{old_id}%'",
        now - 8 * 24 * HOUR_MS
    ))
    .await;
    assert!(old_jobs >= 1, "the registration job at least is done");
    let psp_reference = old["psp_reference"].as_str().map(str::to_owned);
    let old_events = execute(format!(
        "UPDATE webhook_events SET received_at_ms = {} WHERE reference = '{}' OR reference = '{old_id}'",
        now - 31 * 24 * HOUR_MS,
        psp_reference.as_deref().unwrap_or(old_id)
    ))
    .await;
    assert!(old_events >= 1, "the capture's webhook was seen");
    // Old but kept: a refund's key (it alone tells a retried refund from a second one), a key a
    // request still holds, and a dead job for an operator.
    let refund = app
        .post_keyed(
            &format!("/v1/payments/{old_id}/refunds"),
            "refund-old",
            &serde_json::json!({"order_id": "ord_1", "amount": 100}),
        )
        .await;
    assert_eq!(refund.status(), 201);
    // Its webhook must be in before the counts below, or it lands in between and is counted
    // as a row the purge should have kept or deleted.
    let refund: Value = refund.json().await.unwrap();
    app.wait_for_item(
        &format!("/v1/payments/{old_id}/refunds"),
        refund["id"].as_str().unwrap(),
        "succeeded",
    )
    .await;
    assert_eq!(
        execute(format!(
            "UPDATE idempotency_keys SET created_at_ms = {} WHERE idempotency_key = 'refund-old'",
            now - 72 * HOUR_MS
        ))
        .await,
        1
    );
    execute(format!(
        "INSERT INTO idempotency_keys (api_key_id, idempotency_key, request_sha256, \
         recovery_point, locked_at_ms, created_at_ms) \
         VALUES ('key_x', 'in-flight', 'h', 'started', {now}, {})",
        now - 48 * HOUR_MS
    ))
    .await;
    execute(format!(
        "INSERT INTO jobs (id, kind, idempotency_key, payload, status, attempts, due_at_ms, \
         last_error, created_at_ms, updated_at_ms, finished_at_ms) \
         VALUES ('job_dead_old', 'refund.send', 'ref_x', '{{}}', 'dead', 20, 0, 'declined', \
                 {old_ms}, {old_ms}, {old_ms})",
        old_ms = now - 60 * 24 * HOUR_MS
    ))
    .await;
    let keys_before = app.count("SELECT COUNT(*) FROM idempotency_keys").await;
    let jobs_before = app.count("SELECT COUNT(*) FROM jobs").await;
    let events_before = app.count("SELECT COUNT(*) FROM webhook_events").await;

    let (code, stdout, stderr) = run_cli(&["purge", "--database-url", &app.db.url]);
    assert_eq!(code, 0, "{stderr}");
    let purged: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(purged["idempotency_keys"], 1, "{purged}");
    assert_eq!(purged["done_jobs"], old_jobs, "{purged}");
    assert_eq!(purged["webhook_events"], old_events, "{purged}");
    assert_eq!(
        app.count("SELECT COUNT(*) FROM idempotency_keys").await,
        keys_before - 1
    );
    assert_eq!(
        app.count("SELECT COUNT(*) FROM jobs").await,
        jobs_before - old_jobs as i64
    );
    assert_eq!(
        app.count("SELECT COUNT(*) FROM webhook_events").await,
        events_before - old_events as i64
    );
    assert_eq!(
        app.count(
            "SELECT COUNT(*) FROM idempotency_keys \
             WHERE idempotency_key IN ('in-flight', 'refund-old')"
        )
        .await,
        2
    );
    assert_eq!(
        app.count("SELECT COUNT(*) FROM jobs WHERE id = 'job_dead_old'")
            .await,
        1
    );
    assert_eq!(app.count("SELECT COUNT(*) FROM payments").await, 2);

    // The old key is forgotten: the same request is new, and the paid checkout refuses it.
    let again = app
        .post_payment("key-chk_retention_old", &checkout("chk_retention_old"))
        .await;
    assert_eq!(again.status(), 409);
    let error: Value = again.json().await.unwrap();
    assert_eq!(error["error"]["code"], "checkout_in_flight");
    assert_eq!(
        app.count("SELECT COUNT(*) FROM payments WHERE checkout_id = 'chk_retention_old'")
            .await,
        1
    );
    // The recent key still replays its first answer.
    let replayed = app
        .post_payment(
            "key-chk_retention_recent",
            &checkout("chk_retention_recent"),
        )
        .await;
    assert_eq!(replayed.status(), 201);
    assert_eq!(replayed.headers()["Idempotent-Replayed"], "true");
    let body: Value = replayed.json().await.unwrap();
    assert_eq!(body["id"], recent["id"]);

    // Nothing more is old enough.
    let (code, stdout, stderr) = run_cli(&["purge", "--database-url", &app.db.url]);
    assert_eq!(code, 0, "{stderr}");
    let purged: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        purged,
        serde_json::json!({"idempotency_keys": 0, "done_jobs": 0, "webhook_events": 0})
    );
}

db_test!(old_rows_go_and_a_forgotten_key_still_cannot_pay_twice);
