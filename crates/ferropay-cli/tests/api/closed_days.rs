//! Reconciliation only of closed days: today's UTC day (still open: the PSP's file is partial), a
//! day in the future, or a day before our first payment is refused with 400 and posts nothing;
//! a provisional run of today reads and matches, heals and posts nothing and stores nothing; a
//! PSP that refuses the file for good is 502 with its reason, one that is down is 503.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::db_test;
use crate::helpers::*;

fn day(offset_days: i64) -> String {
    let date = time::OffsetDateTime::now_utc().date() + time::Duration::days(offset_days);
    format!(
        "{:04}-{:02}-{:02}",
        date.year(),
        u8::from(date.month()),
        date.day()
    )
}

impl TestApp {
    async fn run_reconciliation(&self, body: Value) -> (StatusCode, Value) {
        let response = self
            .http
            .post(format!("{}/v1/reconciliation/runs", self.base_url))
            .bearer_auth(&self.api_key)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Rows that only a final run writes: its run, its matches, its breaks, its postings.
    async fn reconciliation_writes(&self) -> [i64; 4] {
        [
            self.count("SELECT COUNT(*) FROM reconciliation_runs").await,
            self.count("SELECT COUNT(*) FROM reconciliation_matches")
                .await,
            self.count("SELECT COUNT(*) FROM reconciliation_breaks")
                .await,
            self.count(
                "SELECT COUNT(*) FROM journal_transactions \
                 WHERE kind IN ('psp_fees', 'bank_settlement')",
            )
            .await,
        ]
    }
}

/// Production's rule: a day closes at midnight UTC.
fn closing_at_midnight() -> AppOptions {
    AppOptions {
        reconcile_day_close_lag_ms: 0,
        ..AppOptions::default()
    }
}

async fn only_a_closed_day_is_reconciled_for_good(db: Db) {
    let Some(app) = spawn_app_with(db, closing_at_midnight()).await else {
        return;
    };
    // Before any payment, no day can have a file of ours.
    let (status, error) = app.run_reconciliation(json!({"date": day(-1)})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{error}");
    assert_eq!(error["error"]["field"], "date");

    app.paid_payment("chk_open_day").await;
    // Lost webhooks: only reconciliation would find this one paid, and heal it.
    let lost = app.create_payment("chk_open_day_lost").await;
    let lost_id = lost["id"].as_str().unwrap().to_owned();
    let hook = app
        .http
        .post(format!("{}/v1/test/lost_webhooks", app.sandbox_url))
        .bearer_auth(PSP_API_KEY)
        .json(&json!({"references": [lost_id]}))
        .send()
        .await
        .unwrap();
    assert!(hook.status().is_success());
    app.pay(&lost, CARD_OK).await;

    let transactions_before = app.verify_ledger().await.transactions;
    for (date, why) in [
        (day(0), "today has not ended"),
        (day(1), "tomorrow"),
        (day(400), "next year"),
        (day(-1), "yesterday: before our first payment"),
        ("1999-12-31".to_owned(), "before our first payment"),
    ] {
        let (status, error) = app.run_reconciliation(json!({"date": date})).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{why}: {error}");
        assert_eq!(error["error"]["field"], "date", "{why}");
        assert_eq!(error["error"]["type"], "invalid_request", "{why}");
    }
    // A provisional run cannot look into the future either.
    let (status, _) = app
        .run_reconciliation(json!({"date": day(1), "provisional": true}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = app
        .run_reconciliation(json!({"date": day(0), "provisional": "yes"}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(app.reconciliation_writes().await, [0, 0, 0, 0]);

    // Provisional: today's file is read and matched, and nothing is written.
    let (status, report) = app
        .run_reconciliation(json!({"date": day(0), "provisional": true}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{report}");
    assert_eq!(report["provisional"], true);
    // Two payments and the payout to the bank.
    assert_eq!(report["lines"], 3, "{report:#}");
    assert_eq!(report["matched"], 2, "{report:#}");
    let breaks = report["breaks"].as_array().unwrap();
    assert_eq!(breaks.len(), 1, "{report:#}");
    assert_eq!(breaks[0]["kind"], "missing_in_ledger");
    assert_eq!(
        breaks[0]["auto_healed"], false,
        "a provisional run heals nothing"
    );
    let postings = report["postings"].as_array().unwrap();
    assert_eq!(postings.len(), 2, "the fees and the payout: {report:#}");
    assert!(
        postings.iter().all(|p| p["outcome"] == "not_posted"),
        "{report:#}"
    );
    assert_eq!(app.reconciliation_writes().await, [0, 0, 0, 0]);
    assert_eq!(app.verify_ledger().await.transactions, transactions_before);
    assert_eq!(
        app.get_payment(&lost_id).await["status"],
        "requires_payment"
    );
    assert_eq!(app.account_sum("bank", "USD").await, 0);

    // The same through the CLI: a --date of today is refused, --provisional posts nothing.
    let file = std::env::temp_dir().join(format!(
        "ferropay-open-day-{}.csv",
        uuid::Uuid::now_v7().simple()
    ));
    let text = app
        .http
        .get(format!("{}/v1/settlements/{}.csv", app.sandbox_url, day(0)))
        .bearer_auth(PSP_API_KEY)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    std::fs::write(&file, text).unwrap();
    let file_arg = file.to_str().unwrap();
    let today = day(0);
    let (code, stdout, stderr) = run_cli(&[
        "reconcile",
        "--file",
        file_arg,
        "--date",
        &today,
        "--database-url",
        &app.db.url,
    ]);
    assert_eq!(code, 1, "{stdout} {stderr}");
    assert!(stderr.contains("has not closed"), "{stderr}");
    let (code, stdout, stderr) = run_cli(&[
        "reconcile",
        "--file",
        file_arg,
        "--date",
        &today,
        "--provisional",
        "--database-url",
        &app.db.url,
    ]);
    assert_eq!(code, 0, "{stderr}");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["provisional"], true);
    assert_eq!(report["matched"], 2, "{report:#}");
    assert_eq!(app.reconciliation_writes().await, [0, 0, 0, 0]);
    let _ = std::fs::remove_file(&file);
    assert!(app.verify_ledger().await.ok());
}

async fn a_psp_refusing_the_file_is_502_with_its_reason_and_one_down_is_503(db: Db) {
    let addr = parked_addr();
    let options = AppOptions {
        psp_url: Some(format!("http://{addr}")),
        psp_api_key: "psk_not_the_key".into(),
        ..AppOptions::default()
    };
    let Some(app) = spawn_app_with(db, options).await else {
        return;
    };
    let file_url = format!(
        "{}/v1/reconciliation/settlement_files/{}",
        app.base_url,
        day(0)
    );
    // Down: a passing failure, retry later.
    let (status, error) = app
        .run_reconciliation(json!({"date": day(0), "provisional": true}))
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{error}");
    assert_eq!(error["error"]["code"], "psp_unavailable");
    let down = app
        .http
        .get(&file_url)
        .bearer_auth(&app.api_key)
        .send()
        .await
        .unwrap();
    assert_eq!(down.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(down.headers().contains_key("retry-after"));

    // Up, but it refuses our key for good: 502 with the PSP's own words, and no Retry-After.
    let sandbox = sandbox_psp::spawn(
        tokio::net::TcpListener::bind(addr).await.unwrap(),
        AppOptions::default().sandbox,
    )
    .await
    .unwrap();
    let (status, error) = app
        .run_reconciliation(json!({"date": day(0), "provisional": true}))
        .await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{error}");
    assert_eq!(error["error"]["code"], "psp_rejected");
    let message = error["error"]["message"].as_str().unwrap();
    assert!(message.contains("401"), "{message}");
    assert!(message.contains("API key"), "the PSP's reason: {message}");
    let refused = app
        .http
        .get(&file_url)
        .bearer_auth(&app.api_key)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::BAD_GATEWAY);
    assert!(!refused.headers().contains_key("retry-after"));
    let error: Value = refused.json().await.unwrap();
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("API key"),
        "{error}"
    );
    assert_eq!(app.reconciliation_writes().await, [0, 0, 0, 0]);
    drop(sandbox);
}

db_test!(
    only_a_closed_day_is_reconciled_for_good,
    a_psp_refusing_the_file_is_502_with_its_reason_and_one_down_is_503,
);
