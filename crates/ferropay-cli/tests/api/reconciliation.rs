//! Reconciliation against the sandbox PSP's settlement file: a day of mixed payments with every
//! discrepancy kind injected, each reported as its kind; a payment whose webhooks were all lost
//! is found, healed through the PSP and captured once; fees and the payout to the bank are
//! posted once and the books balance; a second run changes nothing; operators list and resolve
//! breaks through the CLI and the API.

use std::process::Command;

use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::Row;

use crate::db_test;
use crate::helpers::*;

/// Today's UTC date, `YYYY-MM-DD`: the settlement day of the payments a test makes.
fn today() -> String {
    let date = time::OffsetDateTime::now_utc().date();
    format!(
        "{:04}-{:02}-{:02}",
        date.year(),
        u8::from(date.month()),
        date.day()
    )
}

/// Runs the real binary with `args`; answers its exit code and stdout.
fn ferropay(args: &[&str]) -> (i32, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_ferropay"))
        .args(args)
        .env("FERROPAY_LOG", "warn")
        .output()
        .expect("run ferropay");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.code().is_some(),
        "killed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    if output.status.code() == Some(2) {
        panic!(
            "ferropay {args:?} could not run: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    (output.status.code().unwrap(), stdout)
}

impl TestApp {
    /// `POST` to one of the sandbox's test hooks.
    pub(crate) async fn sandbox_hook(&self, path: &str, body: Value) -> Value {
        let response = self
            .http
            .post(format!("{}{path}", self.sandbox_url))
            .bearer_auth(PSP_API_KEY)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(
            response.status().is_success(),
            "{path}: {}",
            response.status()
        );
        response.json().await.unwrap()
    }

    /// Today's settlement file from the sandbox, saved beside the test's database.
    async fn fetch_settlement_file(&self) -> (std::path::PathBuf, Vec<Vec<String>>) {
        let response = self
            .http
            .get(format!(
                "{}/v1/settlements/{}.csv",
                self.sandbox_url,
                today()
            ))
            .bearer_auth(PSP_API_KEY)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let text = response.text().await.unwrap();
        let path = std::env::temp_dir().join(format!(
            "ferropay-settlement-{}.csv",
            uuid::Uuid::now_v7().simple()
        ));
        std::fs::write(&path, &text).unwrap();
        let rows = text
            .lines()
            .skip(1)
            .map(|line| line.split(',').map(str::to_owned).collect())
            .collect();
        (path, rows)
    }

    /// Every account's balance, for comparing the books before and after.
    async fn balances(&self) -> Vec<(String, String, i64)> {
        sqlx::query(
            "SELECT account, currency, CAST(SUM(amount_minor) AS BIGINT) AS total FROM postings \
             GROUP BY account, currency ORDER BY account, currency",
        )
        .fetch_all(self.service().store.pool())
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get("account"), row.get("currency"), row.get("total")))
        .collect()
    }

    /// `POST /v1/reconciliation/runs` for today's file: the report (201).
    pub(crate) async fn reconcile_today_via_api(&self) -> Value {
        let response = self
            .http
            .post(format!("{}/v1/reconciliation/runs", self.base_url))
            .bearer_auth(&self.api_key)
            .json(&json!({"date": today()}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
        response.json().await.unwrap()
    }

    /// A payment paid at the PSP whose webhooks are all lost: only reconciliation can find it.
    async fn lost_payment(&self, checkout_id: &str) -> Value {
        let lost = self.create_payment(checkout_id).await;
        self.sandbox_hook(
            "/v1/test/lost_webhooks",
            json!({"references": [id_of(&lost)]}),
        )
        .await;
        self.pay(&lost, CARD_OK).await;
        lost
    }

    /// A paid payment: created, paid with `card`, and waited for until `status`.
    pub(crate) async fn paid(&self, checkout_id: &str, card: &str, status: &str) -> Value {
        let payment = self.create_payment(checkout_id).await;
        self.pay(&payment, card).await;
        self.wait_for_status(payment["id"].as_str().unwrap(), status)
            .await;
        payment
    }

    fn reconcile_with_cli(&self, file: &std::path::Path) -> Value {
        let (code, stdout) = ferropay(&[
            "reconcile",
            "--file",
            file.to_str().unwrap(),
            "--database-url",
            &self.db.url,
            "--psp-url",
            &self.sandbox_url,
            "--psp-api-key",
            PSP_API_KEY,
        ]);
        assert_eq!(code, 0, "{stdout}");
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
    }
}

/// The breaks of `report` of one kind.
pub(crate) fn of_kind<'a>(report: &'a Value, kind: &str) -> Vec<&'a Value> {
    report["breaks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["kind"] == kind)
        .collect()
}

pub(crate) fn id_of(payment: &Value) -> &str {
    payment["id"].as_str().unwrap()
}

async fn every_discrepancy_is_reported_as_its_kind_and_a_lost_payment_is_healed(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let matched = app.paid("chk_rec_ok", CARD_OK, "succeeded").await;
    let left_out = app.paid("chk_rec_missing", CARD_OK, "succeeded").await;
    let changed = app.paid("chk_rec_amount", CARD_OK, "succeeded").await;
    let doubled = app.paid("chk_rec_duplicate", CARD_OK, "succeeded").await;
    let other_currency = app.paid("chk_rec_currency", CARD_OK, "succeeded").await;
    let declined = app.paid("chk_rec_declined", CARD_DECLINED, "failed").await;
    // Every webhook about this one is lost: only reconciliation can find that it was paid.
    let lost = app.create_payment("chk_rec_lost").await;
    app.sandbox_hook(
        "/v1/test/lost_webhooks",
        json!({"references": [id_of(&lost)]}),
    )
    .await;
    app.pay(&lost, CARD_OK).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(
        app.get_payment(id_of(&lost)).await["status"],
        "requires_payment"
    );
    let transactions_before = app.verify_ledger().await.transactions;
    assert_eq!(transactions_before, 5);

    let faults = app
        .sandbox_hook(
            "/v1/test/settlement_faults",
            json!({
                "missing": [id_of(&left_out)],
                "amount_changed": [id_of(&changed)],
                "duplicated": [id_of(&doubled)],
                "currency_changed": [id_of(&other_currency)],
                "unknown_lines": 1,
            }),
        )
        .await;
    let stranger = faults["unknown_lines"][0]["merchant_reference"]
        .as_str()
        .unwrap()
        .to_owned();
    let (file, rows) = app.fetch_settlement_file().await;
    // ok, amount, duplicate ×2, currency, lost, unknown, and a payout per currency (USD, EUR).
    assert_eq!(rows.len(), 9, "{rows:?}");
    assert!(!rows.iter().any(|r| r[1] == id_of(&declined)));

    let report = app.reconcile_with_cli(&file);
    assert_eq!(report["lines"], 9, "{report:#}");
    // ok, the first of the duplicates, the healed one, and the two payouts.
    assert_eq!(report["matched"], 5, "{report:#}");
    assert_eq!(report["breaks_found"], 6, "{report:#}");
    for (kind, merchant_reference) in [
        ("missing_in_file", id_of(&left_out)),
        ("amount_mismatch", id_of(&changed)),
        ("duplicate_line", id_of(&doubled)),
        ("currency_mismatch", id_of(&other_currency)),
        ("unknown_reference", stranger.as_str()),
        ("missing_in_ledger", id_of(&lost)),
    ] {
        let found = of_kind(&report, kind);
        assert_eq!(found.len(), 1, "{kind}: {report:#}");
        assert_eq!(found[0]["merchant_reference"], merchant_reference, "{kind}");
        assert!(found[0]["psp_reference"].is_string(), "{kind}");
        assert_eq!(
            found[0]["auto_healed"],
            kind == "missing_in_ledger",
            "{kind}"
        );
    }
    let amount = &of_kind(&report, "amount_mismatch")[0];
    assert_eq!(
        (
            amount["expected_amount"].as_i64(),
            amount["actual_amount"].as_i64()
        ),
        (Some(1750), Some(1850))
    );
    assert_eq!(report["auto_healed"], 1);

    // The lost payment is healed: succeeded, captured exactly once, the seller credited.
    assert_eq!(app.get_payment(id_of(&lost)).await["status"], "succeeded");
    let captures =
        sqlx::query("SELECT COUNT(*) AS n FROM journal_transactions WHERE source_ref = $1")
            .bind(format!("capture:{}", id_of(&lost)))
            .fetch_one(app.service().store.pool())
            .await
            .unwrap()
            .get::<i64, _>("n");
    assert_eq!(captures, 1);
    assert_eq!(app.wallet_minor("seller_a", "USD").await, 6 * 1500);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM journal_transactions WHERE kind = 'capture'")
            .await,
        6
    );

    // What was posted is what the file says: its fees, and its payouts to the bank.
    let fees_usd: i64 = rows
        .iter()
        .filter(|r| r[4] == "USD")
        .map(|r| r[6].parse::<i64>().unwrap())
        .sum();
    assert_eq!(app.account_sum("psp_fees:sandbox", "USD").await, fees_usd);
    let payout = |currency: &str| -> i64 {
        rows.iter()
            .find(|r| r[2] == "payout_to_bank" && r[4] == currency)
            .map(|r| -r[5].parse::<i64>().unwrap())
            .unwrap()
    };
    assert_eq!(app.account_sum("bank", "USD").await, payout("USD"));
    assert_eq!(app.account_sum("bank", "EUR").await, payout("EUR"));
    // The receivable keeps exactly what the breaks explain, in USD: the left-out payment (1750
    // still owed), the stranger's 1234 and the duplicate's 1750 paid out but never captured,
    // the extra 100, and the payment the file moved to EUR (paid out in EUR instead).
    assert_eq!(
        app.account_sum("psp_receivable:sandbox", "USD").await,
        1750 - 1234 - 1750 - 100 + 1750
    );
    assert_eq!(
        app.account_sum("psp_receivable:sandbox", "EUR").await,
        -1750
    );
    let (code, verify) = ferropay(&["ledger", "verify", "--database-url", &app.db.url]);
    assert_eq!(code, 0, "{verify}");

    // The same file again changes nothing: no posting, no balance, no new break.
    let journal = app.verify_ledger().await.transactions;
    let balances = app.balances().await;
    let stored_breaks = app
        .count("SELECT COUNT(*) FROM reconciliation_breaks")
        .await;
    assert_eq!(stored_breaks, 6);
    let again = app.reconcile_with_cli(&file);
    assert_eq!(app.verify_ledger().await.transactions, journal);
    assert_eq!(app.balances().await, balances);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM reconciliation_breaks")
            .await,
        stored_breaks
    );
    assert_eq!(again["breaks_new"], 0, "{again:#}");
    assert_eq!(again["matched"], 5, "{again:#}");
    assert!(
        of_kind(&again, "missing_in_ledger").is_empty(),
        "healed before"
    );
    assert_eq!(of_kind(&again, "duplicate_line").len(), 1);
    assert!(
        again["postings"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["outcome"] == "already_posted"),
        "{again:#}"
    );
    std::fs::remove_file(file).unwrap();

    // Operators: five open breaks (the healed one is resolved), through the CLI and the API.
    let (code, listed) = ferropay(&[
        "reconcile",
        "breaks",
        "--open",
        "--database-url",
        &app.db.url,
    ]);
    assert_eq!(code, 0);
    let open: Vec<Value> = listed
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(open.len(), 5, "{listed}");
    assert!(open.iter().all(|b| b["status"] == "open"));
    let listed: Value = app
        .http
        .get(format!(
            "{}/v1/reconciliation/breaks?status=open",
            app.base_url
        ))
        .bearer_auth(&app.api_key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["data"].as_array().unwrap().len(), 5);
    let all = app.get_json("/v1/reconciliation/breaks").await;
    let healed: Vec<&Value> = all["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["auto_healed"] == true)
        .collect();
    assert_eq!(healed.len(), 1);
    assert_eq!(healed[0]["status"], "resolved");

    let first = open[0]["id"].as_str().unwrap();
    let resolve = |id: &str, body: Value| {
        app.http
            .post(format!(
                "{}/v1/reconciliation/breaks/{id}/resolve",
                app.base_url
            ))
            .bearer_auth(&app.api_key)
            .json(&body)
            .send()
    };
    let resolved = resolve(first, json!({"reason": "PSP confirmed by email"}))
        .await
        .unwrap();
    assert_eq!(resolved.status(), StatusCode::OK);
    let resolved: Value = resolved.json().await.unwrap();
    assert_eq!(resolved["status"], "resolved");
    assert_eq!(resolved["resolution"], "PSP confirmed by email");
    let twice = resolve(first, json!({"reason": "again"})).await.unwrap();
    assert_eq!(twice.status(), StatusCode::CONFLICT);
    let empty = resolve(open[1]["id"].as_str().unwrap(), json!({"reason": " "}))
        .await
        .unwrap();
    assert_eq!(empty.status(), StatusCode::BAD_REQUEST);
    let body: Value = empty.json().await.unwrap();
    assert_eq!(body["error"]["field"], "reason");
    let unknown = resolve("brk_nope", json!({"reason": "x"})).await.unwrap();
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    let anonymous = app
        .http
        .get(format!("{}/v1/reconciliation/breaks", app.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);

    let second = open[1]["id"].as_str().unwrap();
    let (code, stdout) = ferropay(&[
        "reconcile",
        "resolve",
        second,
        "--reason",
        "booked by hand",
        "--database-url",
        &app.db.url,
    ]);
    assert_eq!(code, 0, "{stdout}");
    let (code, _) = ferropay(&[
        "reconcile",
        "resolve",
        second,
        "--reason",
        "again",
        "--database-url",
        &app.db.url,
    ]);
    assert_eq!(code, 1, "resolved already");
    assert_eq!(
        app.count("SELECT COUNT(*) FROM reconciliation_breaks WHERE status = 'open'")
            .await,
        3
    );
    // The payment that agreed with the file is in no break at all.
    let (_, listed) = ferropay(&["reconcile", "breaks", "--database-url", &app.db.url]);
    assert_eq!(listed.lines().count(), 6);
    assert!(!listed.contains(id_of(&matched)), "{listed}");
}

async fn a_clean_day_settles_to_the_bank_once_and_the_books_balance(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    for i in 0..3 {
        app.paid(&format!("chk_clean_{i}"), CARD_OK, "succeeded")
            .await;
    }
    app.paid("chk_clean_declined", CARD_NO_FUNDS, "failed")
        .await;

    // The nightly path: ferropay fetches the day's file from the PSP itself.
    let run = |body: Value| {
        app.http
            .post(format!("{}/v1/reconciliation/runs", app.base_url))
            .bearer_auth(&app.api_key)
            .json(&body)
            .send()
    };
    let response = run(json!({"date": today()})).await.unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let report: Value = response.json().await.unwrap();
    assert_eq!(report["lines"], 4, "{report:#}");
    assert_eq!(report["matched"], 4, "{report:#}");
    assert_eq!(report["breaks_found"], 0, "{report:#}");
    assert!(report["source"].as_str().unwrap().starts_with("psp:"));

    // 1750 at 2.9 % + 30 is a fee of 81 (50.75 rounds up to 51).
    assert_eq!(app.account_sum("psp_fees:sandbox", "USD").await, 3 * 81);
    assert_eq!(app.account_sum("bank", "USD").await, 3 * (1750 - 81));
    assert_eq!(app.account_sum("psp_receivable:sandbox", "USD").await, 0);
    let report = app.verify_ledger().await;
    assert!(report.ok(), "{report:?}");
    assert_eq!(
        report.transactions,
        3 + 2,
        "three captures, the fees, the payout"
    );

    let balances = app.balances().await;
    let again: Value = run(json!({"date": today()}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(again["matched"], 4);
    assert_eq!(app.balances().await, balances);
    assert_eq!(app.verify_ledger().await.transactions, 5);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM reconciliation_runs WHERE status = 'completed'")
            .await,
        2
    );

    for (body, field) in [
        (json!({"date": "2026-02-30"}), "date"),
        (json!({}), "date"),
        (json!({"date": today(), "extra": 1}), "extra"),
    ] {
        let refused = run(body).await.unwrap();
        assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
        let error: Value = refused.json().await.unwrap();
        assert_eq!(error["error"]["field"], field);
    }
}

async fn refunds_in_the_file_match_the_refunds_in_the_ledger(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let kept = app.paid("chk_kept", CARD_OK, "succeeded").await;
    let refunded = app.paid("chk_refunded", CARD_OK, "succeeded").await;
    let path = format!("/v1/payments/{}/refunds", id_of(&refunded));
    let refund: Value = app
        .post_keyed(
            &path,
            "rec-refund",
            &json!({"order_id": "ord_1", "amount": 500}),
        )
        .await
        .json()
        .await
        .unwrap();
    app.wait_for_item(&path, refund["id"].as_str().unwrap(), "succeeded")
        .await;

    let report = app.reconcile_today_via_api().await;
    assert_eq!(report["breaks_found"], 0, "{report:#}");
    assert_eq!(report["matched"], report["lines"], "{report:#}");
    assert_eq!(
        report["lines"], 4,
        "two payments, a refund, the payout: {report:#}"
    );
    // What the PSP owed us is settled to the bank, less its fees, and the refund went back.
    assert_eq!(app.account_sum("psp_receivable:sandbox", "USD").await, 0);
    assert_eq!(app.wallet("seller_a", "USD").await.0, 1500 + 1000);
    let verified = app.verify_ledger().await;
    assert!(verified.ok(), "{verified:?}");
    assert!(id_of(&kept).starts_with("pay_"));

    // The file names the refund as the contract says: the PSP's refund id, and the refunded
    // payment's id as the merchant reference.
    let (file, rows) = app.fetch_settlement_file().await;
    let refund_line = rows
        .iter()
        .find(|row| row[2] == "refund")
        .expect("a refund line");
    assert_eq!(refund_line[1], id_of(&refunded), "{refund_line:?}");
    assert_ne!(refund_line[0], refund["id"].as_str().unwrap());
    // A refund line for a refund we never made is an unknown reference, and only that.
    let mut text = std::fs::read_to_string(&file).unwrap();
    text.push_str(&format!(
        "re_never_ours,{},refund,{},USD,-300,0,-300,stl_x\n",
        id_of(&kept),
        refund_line[3]
    ));
    std::fs::write(&file, text).unwrap();
    let again = app.reconcile_with_cli(&file);
    let unknown = of_kind(&again, "unknown_reference");
    assert_eq!(again["breaks_found"], 1, "{again:#}");
    assert_eq!(unknown.len(), 1, "{again:#}");
    assert_eq!(unknown[0]["psp_reference"], "re_never_ours");
    assert_eq!(again["matched"], 4, "{again:#}");
    let _ = std::fs::remove_file(file);
}

/// A run that cannot ask the PSP leaves a lost payment as an open `missing_in_ledger` break; once
/// a later run heals it, that break is resolved too — an operator must not book by hand what the
/// ledger has.
async fn a_missing_in_ledger_break_closes_once_the_ledger_has_it(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let lost = app.lost_payment("chk_rec_lost_later").await;
    let (file, _) = app.fetch_settlement_file().await;
    let (code, stdout) = ferropay(&[
        "reconcile",
        "--file",
        file.to_str().unwrap(),
        "--database-url",
        &app.db.url,
    ]);
    assert_eq!(code, 0, "{stdout}");
    let first: Value = serde_json::from_str(&stdout).unwrap();
    let missing = of_kind(&first, "missing_in_ledger");
    assert_eq!(missing.len(), 1, "{first:#}");
    assert_eq!(missing[0]["auto_healed"], false);
    let open = |url: String| {
        let (code, stdout) = ferropay(&["reconcile", "breaks", "--open", "--database-url", &url]);
        assert_eq!(code, 0);
        stdout
            .lines()
            .map(|line| serde_json::from_str::<Value>(line).unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(open(app.db.url.clone()).len(), 1);

    // With the PSP to ask, the next run heals the payment, and the open break is resolved.
    let second = app.reconcile_with_cli(&file);
    assert_eq!(second["auto_healed"], 1, "{second:#}");
    assert_eq!(app.get_payment(id_of(&lost)).await["status"], "succeeded");
    assert!(open(app.db.url.clone()).is_empty(), "no break left open");
    let (_, all) = ferropay(&["reconcile", "breaks", "--database-url", &app.db.url]);
    let healed: Value = serde_json::from_str(all.lines().next().unwrap()).unwrap();
    assert_eq!(healed["kind"], "missing_in_ledger");
    assert_eq!(healed["status"], "resolved");
    assert!(
        healed["resolution"]
            .as_str()
            .unwrap()
            .contains("the ledger has it now"),
        "{healed:#}"
    );
    let _ = std::fs::remove_file(file);
}

/// A payment keeps the platform fee rate it was created with: healed by `ferropay reconcile`,
/// a process that was given no rate, its capture still splits as `serve` would have.
async fn a_healed_payment_is_split_at_its_own_platform_fee(db: Db) {
    let Some(app) = spawn_app_with(
        db,
        AppOptions {
            platform_fee_bps: 1_000,
            ..AppOptions::default()
        },
    )
    .await
    else {
        return;
    };
    let lost = app.lost_payment("chk_rec_fee").await;
    let (file, _) = app.fetch_settlement_file().await;
    // `reconcile_with_cli` passes no --platform-fee-bps: the CLI's own rate is 0.
    let report = app.reconcile_with_cli(&file);
    assert_eq!(report["auto_healed"], 1, "{report:#}");
    assert_eq!(app.get_payment(id_of(&lost)).await["status"], "succeeded");
    // 10 % of 1500 and of 250.
    assert_eq!(app.account_sum("platform_fees", "USD").await, -(150 + 25));
    assert_eq!(app.wallet_minor("seller_a", "USD").await, 1350);
    assert_eq!(app.wallet_minor("seller_b", "USD").await, 225);
    assert!(app.verify_ledger().await.ok());
    let _ = std::fs::remove_file(file);
}

async fn a_file_that_is_not_a_settlement_file_is_refused(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("ferropay-bad-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let not_settlement = dir.join("orders.csv");
    std::fs::write(&not_settlement, "order,amount\n1,2\n").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_ferropay"))
        .args([
            "reconcile",
            "--file",
            not_settlement.to_str().unwrap(),
            "--database-url",
            &app.db.url,
        ])
        .env("FERROPAY_LOG", "warn")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("psp_reference"));

    // Malformed lines are breaks of their own; the run goes on.
    let malformed = dir.join("malformed.csv");
    std::fs::write(
        &malformed,
        format!(
            "{}\npsp_1,pay_1,payment,{}T10:00:00Z,USD,17.50,0,17.50,b\npsp_2,pay_2,payment,{}T10:00:00Z,USD,100,10,80,b\n",
            sandbox_psp::SETTLEMENT_HEADER,
            today(),
            today()
        ),
    )
    .unwrap();
    let report = app.reconcile_with_cli(&malformed);
    assert_eq!(report["lines"], 2);
    assert_eq!(report["matched"], 0);
    let found = of_kind(&report, "malformed_line");
    assert_eq!(found.len(), 2, "{report:#}");
    assert!(found[0]["detail"].as_str().unwrap().contains("gross"));
    assert!(found[1]["detail"].as_str().unwrap().contains("gross - fee"));
    assert_eq!(app.verify_ledger().await.transactions, 0);
    std::fs::remove_dir_all(dir).unwrap();
}

/// A chargeback the PSP sent no webhook about (a dispute whose webhook was lost): the file's
/// `chargeback` line is healed by asking the PSP for the dispute, which books the withdrawal
/// from the sellers; the day leaves no open break and `psp_receivable` at zero.
async fn a_chargeback_without_its_webhook_is_healed_and_the_bank_pays_the_psp(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let payment = app.paid("chk_disputed", CARD_OK, "succeeded").await;
    let session = app.psp_sessions_for(id_of(&payment)).await.remove(0);
    let dispute = app
        .sandbox_hook(
            "/v1/test/chargebacks",
            json!({"psp_reference": session["psp_reference"]}),
        )
        .await;
    assert_eq!(app.wallet_minor("seller_a", "USD").await, 1500);
    let report = app.reconcile_today_via_api().await;
    // The payment, the chargeback (healed) and the payout match.
    assert_eq!(report["lines"], 3, "{report:#}");
    assert_eq!(report["matched"], 3, "{report:#}");
    let healed = of_kind(&report, "missing_in_ledger");
    assert_eq!(healed.len(), 1, "{report:#}");
    assert_eq!(healed[0]["psp_reference"], dispute["id"]);
    assert_eq!(healed[0]["merchant_reference"], id_of(&payment));
    assert_eq!(healed[0]["auto_healed"], true, "{report:#}");
    assert_eq!(
        report["breaks"].as_array().unwrap().len(),
        1,
        "nothing else: {report:#}"
    );
    // The dispute is booked: the sellers gave their shares back.
    let disputes = app
        .get_json(&format!("/v1/payments/{}/disputes", id_of(&payment)))
        .await;
    assert_eq!(disputes["data"][0]["psp_dispute_id"], dispute["id"]);
    assert_eq!(disputes["data"][0]["status"], "needs_response");
    assert_eq!(disputes["data"][0]["amount"], 1750);
    assert_eq!(app.wallet_minor("seller_a", "USD").await, 0);
    assert_eq!(app.wallet_minor("seller_b", "USD").await, 0);
    // The chargeback and its 1500 fee exceed the day's sales: the PSP takes the difference
    // from our bank (1750 - 81 - 1750 - 1500 = -1581).
    assert_eq!(app.account_sum("bank", "USD").await, -1581);
    assert_eq!(app.account_sum("psp_fees:sandbox", "USD").await, 81 + 1500);
    assert_eq!(app.account_sum("psp_receivable:sandbox", "USD").await, 0);
    assert!(app.verify_ledger().await.ok());
    // Read again, the file changes nothing.
    let again = app.reconcile_today_via_api().await;
    assert_eq!(again["matched"], 3, "{again:#}");
    assert_eq!(app.account_sum("psp_receivable:sandbox", "USD").await, 0);
    assert_eq!(app.wallet_minor("seller_a", "USD").await, 0);
}

/// `GET /v1/reconciliation/settlement_files/{date}`: the PSP's file of the day through ferropay,
/// byte for byte what the PSP serves; the API key is needed and a date must be one.
async fn the_days_settlement_file_comes_through_ferropay(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let paid = app.paid_payment("chk_file").await;
    let today = time::OffsetDateTime::now_utc().date().to_string();
    let url = format!(
        "{}/v1/reconciliation/settlement_files/{today}",
        app.base_url
    );
    let response = app
        .http
        .get(&url)
        .bearer_auth(&app.api_key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let file = response.text().await.unwrap();
    let mut lines = file.lines();
    assert_eq!(lines.next(), Some(sandbox_psp::SETTLEMENT_HEADER));
    let payment_line = lines
        .find(|line| line.contains(paid["id"].as_str().unwrap()))
        .expect("the payment's line");
    assert!(payment_line.contains(",payment,"), "{payment_line}");

    let with_suffix = app
        .http
        .get(format!("{url}.csv"))
        .bearer_auth(&app.api_key)
        .send()
        .await
        .unwrap();
    assert_eq!(
        with_suffix.text().await.unwrap(),
        file,
        "`.csv` may be added"
    );
    let anonymous = app.http.get(&url).send().await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let bad = app
        .http
        .get(format!(
            "{}/v1/reconciliation/settlement_files/2026-13-45",
            app.base_url
        ))
        .bearer_auth(&app.api_key)
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    let error: Value = bad.json().await.unwrap();
    assert_eq!(error["error"]["field"], "date");
}

db_test!(
    the_days_settlement_file_comes_through_ferropay,
    a_healed_payment_is_split_at_its_own_platform_fee,
    a_missing_in_ledger_break_closes_once_the_ledger_has_it,
    a_chargeback_without_its_webhook_is_healed_and_the_bank_pays_the_psp,
    every_discrepancy_is_reported_as_its_kind_and_a_lost_payment_is_healed,
    a_clean_day_settles_to_the_bank_once_and_the_books_balance,
    a_file_that_is_not_a_settlement_file_is_refused,
    refunds_in_the_file_match_the_refunds_in_the_ledger,
);
