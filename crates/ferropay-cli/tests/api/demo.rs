//! `ferropay demo`: a newcomer's database gets something to look at — payments with every test
//! card ending as each card promises, a disputed one, refunds and a payout settled, the day
//! reconciled without a break, and books that verify — on SQLite and PostgreSQL.

use serde_json::Value;

use crate::helpers::*;

async fn the_demo_seeds_every_card_and_a_reconciled_day(db: Db) {
    let Some(db) = TestDb::create(db).await else {
        return;
    };
    let (code, stdout, stderr) = tokio::task::spawn_blocking({
        let url = db.url.clone();
        move || run_cli(&["demo", "--database-url", &url])
    })
    .await
    .unwrap();
    assert_eq!(code, 0, "{stderr}");
    let made: Value = serde_json::from_str(&stdout).unwrap();

    let statuses: Vec<(&str, &str)> = made["payments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["card"].as_str().unwrap(), p["status"].as_str().unwrap()))
        .collect();
    for (card, status) in [
        ("4242", "succeeded"),
        ("0002", "failed"),
        ("9995", "failed"),
        ("3155: 3-D Secure passed", "succeeded"),
        ("3155: 3-D Secure failed", "failed"),
        ("0259", "succeeded"),
        ("0119", "succeeded"),
        ("2685", "succeeded"),
    ] {
        assert!(
            statuses
                .iter()
                .any(|(label, s)| label.starts_with(card) && *s == status),
            "{card} {status} in {statuses:?}"
        );
    }
    assert_eq!(made["refunds"].as_array().unwrap().len(), 2);
    // One payment is disputed: the console's disputes tab has something to show.
    assert_eq!(made["dispute"]["status"], "needs_response", "{made:#}");
    assert!(made["dispute"]["id"].as_str().unwrap().starts_with("dp"));
    assert_eq!(made["payout"]["status"], "paid");
    let reconciliation = &made["reconciliation"];
    assert_eq!(reconciliation["breaks"], 0, "{made:#}");
    assert!(reconciliation["matched"].as_u64().unwrap() >= 7, "{made:#}");
    assert_eq!(
        made["ledger"],
        serde_json::json!({"transactions": made["ledger"]["transactions"], "balanced": true,
                           "wallets_match": true, "chain_intact": true})
    );

    // The demo's database is the reader's: the books verify from the command line too, and a
    // second run adds to it rather than colliding with the first (its reconciliation finds
    // breaks: each run's sandbox PSP is a new one, whose file knows only its own payments).
    let (code, _, stderr) = run_cli(&["ledger", "verify", "--database-url", &db.url]);
    assert_eq!(code, 0, "{stderr}");
    let (code, _, stderr) = tokio::task::spawn_blocking({
        let url = db.url.clone();
        move || run_cli(&["demo", "--database-url", &url])
    })
    .await
    .unwrap();
    assert_eq!(code, 0, "a second run: {stderr}");
}

#[tokio::test]
async fn demo_on_sqlite() {
    the_demo_seeds_every_card_and_a_reconciled_day(Db::Sqlite).await;
}

#[tokio::test]
async fn demo_on_postgres() {
    the_demo_seeds_every_card_and_a_reconciled_day(Db::Postgres).await;
}
