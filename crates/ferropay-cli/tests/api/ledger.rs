//! The books after a mixed run: wallets equal what the sellers sold, `ferropay ledger verify`
//! (the real binary) passes, the journal refuses UPDATE and DELETE, and tampering is caught.

use std::process::Command;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::db_test;
use crate::helpers::*;

fn verify_with_cli(database_url: &str) -> (i32, Value) {
    let output = Command::new(env!("CARGO_BIN_EXE_ferropay"))
        .args(["ledger", "verify", "--database-url", database_url])
        .env("FERROPAY_LOG", "warn")
        .output()
        .expect("run ferropay ledger verify");
    let report: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!("{e}: {}", String::from_utf8_lossy(&output.stderr));
    });
    (output.status.code().unwrap(), report)
}

async fn a_mixed_run_leaves_books_that_verify(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let cards = [
        CARD_OK,
        CARD_DECLINED,
        CARD_OK,
        CARD_NO_FUNDS,
        CARD_OK,
        CARD_REVIEW,
    ];
    let mut expected_a = 0;
    let mut expected_c = 0;
    for (i, card) in cards.iter().enumerate() {
        let amount_a = 1000 + i as i64;
        let body = json!({
            "checkout_id": format!("chk_mixed_{i}"),
            "buyer": {"id": "buyer_1"},
            "currency": if i % 2 == 0 { "USD" } else { "EUR" },
            "orders": [
                {"order_id": "a", "seller_id": "seller_a", "amount": amount_a},
                {"order_id": "c", "seller_id": "seller_c", "amount": 99}
            ]
        });
        let response = app.post_payment(&format!("mixed-{i}"), &body).await;
        assert_eq!(response.status(), StatusCode::CREATED);
        let payment: Value = response.json().await.unwrap();
        app.pay(&payment, card).await;
        let end = if *card == CARD_DECLINED || *card == CARD_NO_FUNDS {
            "failed"
        } else {
            "succeeded"
        };
        app.wait_for_status(payment["id"].as_str().unwrap(), end)
            .await;
        if end == "succeeded" && body["currency"] == "USD" {
            expected_a += amount_a;
            expected_c += 99;
        }
    }
    assert_eq!(app.wallet_minor("seller_a", "USD").await, expected_a);
    assert_eq!(app.wallet_minor("seller_c", "USD").await, expected_c);
    assert_eq!(
        app.wallet_minor("seller_a", "EUR").await,
        1005,
        "the review card was EUR"
    );

    let (code, report) = verify_with_cli(&app.db.url);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["transactions"], 4);
    assert_eq!(report["balanced"], true);
    assert_eq!(report["wallets_match"], true);
    assert_eq!(report["chain_intact"], true);
}

async fn the_journal_is_append_only(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let payment = app.create_payment("chk_append_only").await;
    app.pay(&payment, CARD_OK).await;
    app.wait_for_status(payment["id"].as_str().unwrap(), "succeeded")
        .await;
    let pool = app.service().store.pool();
    for statement in [
        "UPDATE postings SET amount_minor = amount_minor + 1",
        "DELETE FROM postings",
        "UPDATE journal_transactions SET kind = 'x'",
        "DELETE FROM journal_transactions",
    ] {
        let result = sqlx::query(sqlx::AssertSqlSafe(statement))
            .execute(pool)
            .await;
        let error = result.expect_err(statement).to_string();
        assert!(error.contains("append-only"), "{statement}: {error}");
    }
    assert!(app.verify_ledger().await.ok());
}

/// A posting that names no journal transaction is refused, alone or among good ones, and
/// nothing of its statement stays (PostgreSQL checks it once per statement, SQLite by its
/// foreign key).
async fn a_posting_without_its_transaction_is_refused(db: Db) {
    use sqlx::Row;
    let Some(app) = spawn_app(db).await else {
        return;
    };
    app.paid_payment("chk_orphan").await;
    let pool = app.service().store.pool();
    let count = || async {
        sqlx::query("SELECT COUNT(*) AS n FROM postings")
            .fetch_one(pool)
            .await
            .unwrap()
            .get::<i64, _>("n")
    };
    let before = count().await;
    let existing: String = sqlx::query("SELECT id FROM journal_transactions WHERE seq = 1")
        .fetch_one(pool)
        .await
        .unwrap()
        .get("id");
    for values in [
        "('jtx_missing', 0, 'platform_fees:USD', 'USD', 5)".to_owned(),
        format!(
            "('{existing}', 90, 'platform_fees:USD', 'USD', 5), \
             ('jtx_missing', 1, 'platform_fees:USD', 'USD', -5)"
        ),
    ] {
        let statement = format!(
            "INSERT INTO postings (transaction_id, line_no, account, currency, amount_minor) \
             VALUES {values}"
        );
        let error = sqlx::query(sqlx::AssertSqlSafe(statement.as_str()))
            .execute(pool)
            .await
            .expect_err(&statement);
        let code = error
            .as_database_error()
            .and_then(|e| e.code())
            .map(|c| c.into_owned());
        // 23503 on PostgreSQL; SQLite's extended code for a foreign key failure is 787.
        assert!(
            matches!(code.as_deref(), Some("23503") | Some("787")),
            "{statement}: {error} ({code:?})"
        );
    }
    assert_eq!(
        count().await,
        before,
        "nothing of a refused statement stays"
    );
    assert!(app.verify_ledger().await.ok());
}

async fn tampering_behind_our_back_is_reported(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    for checkout_id in ["chk_t1", "chk_t2"] {
        let payment = app.create_payment(checkout_id).await;
        app.pay(&payment, CARD_OK).await;
        app.wait_for_status(payment["id"].as_str().unwrap(), "succeeded")
            .await;
    }
    // Someone with the database's owner rights lifts the guard and edits a posting.
    let pool = app.service().store.pool();
    let (disable, enable): (&[&str], &[&str]) = match db {
        Db::Sqlite => (&["DROP TRIGGER postings_no_update"], &[]),
        Db::Postgres => (
            &["ALTER TABLE postings DISABLE TRIGGER postings_append_only"],
            &["ALTER TABLE postings ENABLE TRIGGER postings_append_only"],
        ),
    };
    for statement in disable {
        sqlx::query(sqlx::AssertSqlSafe(*statement))
            .execute(pool)
            .await
            .unwrap();
    }
    sqlx::query(
        "UPDATE postings SET amount_minor = amount_minor - 100 \
         WHERE account = 'seller:seller_a' AND transaction_id = \
         (SELECT id FROM journal_transactions WHERE seq = 1)",
    )
    .execute(pool)
    .await
    .unwrap();
    for statement in enable {
        sqlx::query(sqlx::AssertSqlSafe(*statement))
            .execute(pool)
            .await
            .unwrap();
    }
    let first_id: String = {
        use sqlx::Row;
        sqlx::query("SELECT id FROM journal_transactions WHERE seq = 1")
            .fetch_one(pool)
            .await
            .unwrap()
            .get("id")
    };
    let (code, report) = verify_with_cli(&app.db.url);
    assert_eq!(code, 1, "{report}");
    assert_eq!(report["chain_intact"], false);
    assert_eq!(report["balanced"], false);
    assert_eq!(report["wallets_match"], false);
    assert_eq!(
        report["chain_breaks"][0]["transaction_id"],
        first_id.as_str()
    );
}

/// Lifts the append-only guard (as someone with the database owner's rights could), runs
/// `statements`, and puts the guard back where the database allows.
async fn behind_our_back(app: &TestApp, db: Db, statements: &[String]) {
    let pool = app.service().store.pool();
    let (disable, enable): (&[&str], &[&str]) = match db {
        Db::Sqlite => (
            &[
                "DROP TRIGGER IF EXISTS postings_no_update",
                "DROP TRIGGER IF EXISTS postings_no_delete",
                "DROP TRIGGER IF EXISTS journal_transactions_no_update",
                "DROP TRIGGER IF EXISTS journal_transactions_no_delete",
            ],
            &[],
        ),
        Db::Postgres => (
            &[
                "ALTER TABLE postings DISABLE TRIGGER postings_append_only",
                "ALTER TABLE journal_transactions DISABLE TRIGGER journal_transactions_append_only",
            ],
            &[
                "ALTER TABLE postings ENABLE TRIGGER postings_append_only",
                "ALTER TABLE journal_transactions ENABLE TRIGGER journal_transactions_append_only",
            ],
        ),
    };
    let all = disable
        .iter()
        .map(|s| s.to_string())
        .chain(statements.iter().cloned())
        .chain(enable.iter().map(|s| s.to_string()));
    for statement in all {
        sqlx::query(sqlx::AssertSqlSafe(statement.clone()))
            .execute(pool)
            .await
            .unwrap_or_else(|e| panic!("{statement}: {e}"));
    }
}

/// The id of the journal transaction with sequence number `seq`.
async fn transaction_at(app: &TestApp, seq: i64) -> String {
    use sqlx::Row;
    sqlx::query("SELECT id FROM journal_transactions WHERE seq = $1")
        .bind(seq)
        .fetch_one(app.service().store.pool())
        .await
        .unwrap()
        .get("id")
}

/// `ledger verify` exits 1 and names `transaction_id` among its chain breaks.
fn assert_reported(database_url: &str, transaction_id: &str, problem: &str) {
    let (code, report) = verify_with_cli(database_url);
    assert_eq!(code, 1, "{report}");
    assert_eq!(report["chain_intact"], false);
    let named = report["chain_breaks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["transaction_id"] == transaction_id);
    let named = named.unwrap_or_else(|| panic!("{transaction_id} not named: {report:#}"));
    assert!(
        named["problem"].as_str().unwrap().contains(problem),
        "{problem}: {named}"
    );
}

async fn deleted_and_changed_journal_rows_are_each_reported(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    for i in 0..5 {
        let payment = app.create_payment(&format!("chk_tamper_{i}")).await;
        app.pay(&payment, CARD_OK).await;
        app.wait_for_status(payment["id"].as_str().unwrap(), "succeeded")
            .await;
    }
    let ids = [
        transaction_at(&app, 1).await,
        transaction_at(&app, 2).await,
        transaction_at(&app, 3).await,
        transaction_at(&app, 4).await,
        transaction_at(&app, 5).await,
    ];
    assert_eq!(verify_with_cli(&app.db.url).0, 0);

    // A journal transaction's row changed: its hash no longer covers it.
    behind_our_back(
        &app,
        db,
        &[format!(
            "UPDATE journal_transactions SET created_at_ms = created_at_ms + 1 WHERE id = '{}'",
            ids[0]
        )],
    )
    .await;
    assert_reported(&app.db.url, &ids[0], "do not match its hash");

    // One posting deleted.
    behind_our_back(
        &app,
        db,
        &[format!(
            "DELETE FROM postings WHERE transaction_id = '{}' AND line_no = 2",
            ids[1]
        )],
    )
    .await;
    assert_reported(&app.db.url, &ids[1], "do not match its hash");
    assert_eq!(verify_with_cli(&app.db.url).1["balanced"], false);

    // A whole transaction deleted from the middle, postings and row.
    behind_our_back(
        &app,
        db,
        &[
            format!("DELETE FROM postings WHERE transaction_id = '{}'", ids[2]),
            format!("DELETE FROM journal_transactions WHERE id = '{}'", ids[2]),
        ],
    )
    .await;
    assert_reported(&app.db.url, &ids[2], "deleted");

    // The newest transaction deleted: only the chain's head remembers it.
    behind_our_back(
        &app,
        db,
        &[
            format!("DELETE FROM postings WHERE transaction_id = '{}'", ids[4]),
            format!("DELETE FROM journal_transactions WHERE id = '{}'", ids[4]),
        ],
    )
    .await;
    assert_reported(&app.db.url, &ids[4], "newest were deleted");
    // Transaction 4 itself is intact and is not blamed.
    let (_, report) = verify_with_cli(&app.db.url);
    assert!(
        !report["chain_breaks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|b| b["transaction_id"] == ids[3].as_str()),
        "{report:#}"
    );
}

db_test!(
    a_mixed_run_leaves_books_that_verify,
    the_journal_is_append_only,
    a_posting_without_its_transaction_is_refused,
    tampering_behind_our_back_is_reported,
    deleted_and_changed_journal_rows_are_each_reported,
);
