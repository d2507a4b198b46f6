//! Disputes (chargebacks) end to end, against the sandbox PSP's card `4000 0000 0000 2685` and
//! its dispute hooks: the funds leave the sellers' wallets and the platform's fees when the PSP
//! withdraws them, come back when a dispute is won, stay gone when it is lost; a wallet a
//! dispute drives negative holds payouts back until it is positive again; a dispute whose
//! webhooks were all lost is healed by reconciliation; a clean day with disputes leaves no
//! break and `psp_receivable` at zero. `ledger verify` after each.

use std::time::Duration;

use reqwest::StatusCode;
use sandbox_psp::SandboxConfig;
use serde_json::{Value, json};

use crate::db_test;
use crate::helpers::*;
use crate::reconciliation::{id_of, of_kind};

/// Succeeds, then the buyer's bank disputes it after the sandbox's dispute delay.
pub(crate) const CARD_DISPUTED: &str = "4000 0000 0000 2685";

/// ferropay at a 10 % platform fee on a sandbox that disputes 300 ms after the payment.
pub(crate) async fn app_with_disputes(db: Db) -> Option<TestApp> {
    spawn_app_with(
        db,
        AppOptions {
            platform_fee_bps: 1_000,
            sandbox: SandboxConfig {
                dispute_delay_ms: 300,
                ..AppOptions::default().sandbox
            },
            ..AppOptions::default()
        },
    )
    .await
}

impl TestApp {
    /// The payment's disputes once it has `count` of them, for at most 10 s.
    pub(crate) async fn wait_for_disputes(&self, payment_id: &str, count: usize) -> Vec<Value> {
        let path = format!("/v1/payments/{payment_id}/disputes");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let found = self.get_json(&path).await["data"]
                .as_array()
                .unwrap()
                .clone();
            if found.len() == count {
                return found;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{payment_id} has {} disputes after 10 s, not {count}",
                found.len()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Waits (10 s at most) until the dispute `id` of `payment_id` has `status`.
    pub(crate) async fn wait_for_dispute(&self, payment_id: &str, id: &str, status: &str) -> Value {
        self.wait_for_item(&format!("/v1/payments/{payment_id}/disputes"), id, status)
            .await
    }

    /// `POST /v1/disputes/{id}/evidence`.
    async fn send_evidence(&self, dispute_id: &str, body: Value) -> reqwest::Response {
        self.http
            .post(format!(
                "{}/v1/disputes/{dispute_id}/evidence",
                self.base_url
            ))
            .bearer_auth(&self.api_key)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// The sandbox's card network decides a dispute (`won` or `lost`).
    pub(crate) async fn decide_dispute(&self, psp_dispute_id: &str, outcome: &str) {
        self.sandbox_hook(
            &format!("/v1/test/disputes/{psp_dispute_id}/decide"),
            json!({ "outcome": outcome }),
        )
        .await;
    }

    /// The outbox's events of `topic`.
    async fn events_of(&self, topic: &str) -> i64 {
        use sqlx::Row;
        sqlx::query("SELECT COUNT(*) AS n FROM outbox WHERE topic = $1")
            .bind(topic)
            .fetch_one(self.service().store.pool())
            .await
            .unwrap()
            .get::<i64, _>("n")
    }

    /// `(seller_a, seller_b, platform_fees, psp_receivable)` in USD: what the books say.
    async fn books(&self) -> (i64, i64, i64, i64) {
        (
            self.wallet_minor("seller_a", "USD").await,
            self.wallet_minor("seller_b", "USD").await,
            self.account_sum("platform_fees", "USD").await,
            self.account_sum("psp_receivable:sandbox", "USD").await,
        )
    }
}

async fn a_lost_dispute_and_a_won_one_end_in_balanced_books(db: Db) {
    let Some(app) = app_with_disputes(db).await else {
        return;
    };
    let lost = app
        .paid("chk_dispute_lost", CARD_DISPUTED, "succeeded")
        .await;
    let won = app
        .paid("chk_dispute_won", CARD_DISPUTED, "succeeded")
        .await;
    // Each 1750 payment: seller_a 1500 - 150 fee, seller_b 250 - 25, the platform 175.
    let lost_dispute = app.wait_for_disputes(id_of(&lost), 1).await.remove(0);
    let won_dispute = app.wait_for_disputes(id_of(&won), 1).await.remove(0);
    for dispute in [&lost_dispute, &won_dispute] {
        assert_eq!(dispute["status"], "needs_response");
        assert_eq!(dispute["amount"], 1750);
        assert_eq!(dispute["currency"], "USD");
        assert_eq!(dispute["reason"], "fraudulent");
        assert_eq!(dispute["evidence_submitted"], false);
    }
    // The PSP took both back: the sellers' shares and the platform's fees are gone with them.
    assert_eq!(app.books().await, (0, 0, 0, 0));
    let all = app.get_json("/v1/disputes").await;
    assert_eq!(all["data"].as_array().unwrap().len(), 2);
    assert_eq!(all["has_more"], false);

    // Evidence on one; the PSP reviews it.
    let won_id = won_dispute["id"].as_str().unwrap();
    let reviewed = app
        .send_evidence(
            won_id,
            json!({"text": "Delivered on 2026-11-20, signed for by the buyer."}),
        )
        .await;
    assert_eq!(reviewed.status(), StatusCode::OK);
    let reviewed: Value = reviewed.json().await.unwrap();
    assert_eq!(reviewed["status"], "under_review");
    assert_eq!(reviewed["evidence_submitted"], true);

    app.decide_dispute(won_dispute["psp_dispute_id"].as_str().unwrap(), "won")
        .await;
    app.wait_for_dispute(id_of(&won), won_id, "won").await;
    // Won: the funds are back where they were.
    assert_eq!(app.books().await, (1350, 225, -175, 1750));

    let lost_id = lost_dispute["id"].as_str().unwrap();
    app.decide_dispute(lost_dispute["psp_dispute_id"].as_str().unwrap(), "lost")
        .await;
    app.wait_for_dispute(id_of(&lost), lost_id, "lost").await;
    assert_eq!(app.books().await, (1350, 225, -175, 1750));

    // Statuses only move forward: a decided dispute takes no evidence, and nothing moved.
    let late = app.send_evidence(won_id, json!({"text": "more"})).await;
    assert_eq!(late.status(), StatusCode::CONFLICT);
    let body: Value = late.json().await.unwrap();
    assert_eq!(body["error"]["code"], "dispute_not_open");
    let bad = app.send_evidence(lost_id, json!({"text": ""})).await;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    let body: Value = bad.json().await.unwrap();
    assert_eq!(body["error"]["field"], "text", "{body}");
    let bad_status = app
        .http
        .get(format!("{}/v1/disputes?status=open", app.base_url))
        .bearer_auth(&app.api_key)
        .send()
        .await
        .unwrap();
    assert_eq!(bad_status.status(), StatusCode::BAD_REQUEST);
    let body: Value = bad_status.json().await.unwrap();
    assert_eq!(body["error"]["field"], "status", "{body}");
    let unknown = app.send_evidence("dp_nope", json!({"text": "x"})).await;
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    let won_only = app.get_json("/v1/disputes?status=won").await;
    assert_eq!(won_only["data"].as_array().unwrap().len(), 1);
    assert_eq!(won_only["data"][0]["id"], won_id);

    assert_eq!(app.events_of("dispute.created").await, 2);
    assert_eq!(app.events_of("dispute.under_review").await, 1);
    assert_eq!(app.events_of("dispute.won").await, 1);
    assert_eq!(app.events_of("dispute.lost").await, 1);
    let report = app.verify_ledger().await;
    assert!(report.ok(), "{report:?}");

    // The day's file: two payments, two chargebacks, one reversal, the payout: all matched.
    let day = app.reconcile_today_via_api().await;
    assert_eq!(day["lines"], 6, "{day:#}");
    assert_eq!(day["matched"], 6, "{day:#}");
    assert!(day["breaks"].as_array().unwrap().is_empty(), "{day:#}");
    assert_eq!(app.account_sum("psp_receivable:sandbox", "USD").await, 0);
    // The PSP's fees: 81 per payment and 1500 per chargeback.
    assert_eq!(
        app.account_sum("psp_fees:sandbox", "USD").await,
        2 * 81 + 2 * 1500
    );
    assert_eq!(app.books().await.0, 1350, "reconciliation moves no wallet");
    assert!(app.verify_ledger().await.ok());
}

async fn a_dispute_drives_a_wallet_negative_and_payouts_wait(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let payment = app.paid("chk_paid_out", CARD_OK, "succeeded").await;
    let payout = app
        .post_keyed(
            "/v1/sellers/seller_a/payouts",
            "payout-before-dispute",
            &json!({"currency": "USD"}),
        )
        .await;
    assert_eq!(payout.status(), StatusCode::CREATED);
    let payout: Value = payout.json().await.unwrap();
    app.wait_for_item(
        "/v1/sellers/seller_a/payouts",
        payout["id"].as_str().unwrap(),
        "paid",
    )
    .await;
    assert_eq!(app.wallet("seller_a", "USD").await, (0, 0));

    // The buyer's bank takes the payment back after seller_a was paid out.
    let session = app.psp_sessions_for(id_of(&payment)).await.remove(0);
    app.sandbox_hook(
        "/v1/test/chargebacks",
        json!({"psp_reference": session["psp_reference"], "notify": true}),
    )
    .await;
    app.wait_for_disputes(id_of(&payment), 1).await;
    // seller_a owes the platform what it was paid for the disputed sale; the wallet shows it.
    assert_eq!(app.wallet("seller_a", "USD").await, (-1500, -1500));
    assert_eq!(app.wallet("seller_b", "USD").await, (0, 0));

    let refused = app
        .post_keyed(
            "/v1/sellers/seller_a/payouts",
            "payout-while-negative",
            &json!({"currency": "USD", "amount": 1}),
        )
        .await;
    assert_eq!(refused.status(), StatusCode::CONFLICT);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "insufficient_balance");

    // The next sale pays the debt back first: nothing to pay out yet.
    app.paid_payment("chk_repays").await;
    assert_eq!(app.wallet("seller_a", "USD").await, (0, 0));
    let still_waiting = app
        .post_keyed(
            "/v1/sellers/seller_a/payouts",
            "payout-at-zero",
            &json!({"currency": "USD"}),
        )
        .await;
    assert_eq!(still_waiting.status(), StatusCode::CONFLICT);
    // Positive again: the payout goes.
    app.paid_payment("chk_positive").await;
    let paid = app
        .post_keyed(
            "/v1/sellers/seller_a/payouts",
            "payout-positive",
            &json!({"currency": "USD"}),
        )
        .await;
    assert_eq!(paid.status(), StatusCode::CREATED);
    let paid: Value = paid.json().await.unwrap();
    assert_eq!(paid["amount"], 1500);
    app.wait_for_item(
        "/v1/sellers/seller_a/payouts",
        paid["id"].as_str().unwrap(),
        "paid",
    )
    .await;
    assert_eq!(app.wallet("seller_a", "USD").await, (0, 0));
    let report = app.verify_ledger().await;
    assert!(report.ok(), "{report:?}");
}

async fn a_dispute_whose_webhooks_were_lost_is_healed_by_reconciliation(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let payment = app.paid("chk_dispute_unheard", CARD_OK, "succeeded").await;
    // From now on every webhook about this payment is lost: the dispute's and its decision's.
    app.sandbox_hook(
        "/v1/test/lost_webhooks",
        json!({"references": [id_of(&payment)]}),
    )
    .await;
    let session = app.psp_sessions_for(id_of(&payment)).await.remove(0);
    let dispute = app
        .sandbox_hook(
            "/v1/test/chargebacks",
            json!({"psp_reference": session["psp_reference"], "notify": true}),
        )
        .await;
    app.decide_dispute(dispute["id"].as_str().unwrap(), "won")
        .await;
    assert!(
        app.get_json(&format!("/v1/payments/{}/disputes", id_of(&payment)))
            .await["data"]
            .as_array()
            .unwrap()
            .is_empty(),
        "no webhook reached ferropay"
    );
    assert_eq!(app.wallet_minor("seller_a", "USD").await, 1500);

    let report = app.reconcile_today_via_api().await;
    // The payment, the chargeback, its reversal and the payout.
    assert_eq!(report["lines"], 4, "{report:#}");
    assert_eq!(report["matched"], 4, "{report:#}");
    let healed = of_kind(&report, "missing_in_ledger");
    assert_eq!(healed.len(), 2, "{report:#}");
    assert!(
        healed.iter().all(|b| b["auto_healed"] == true),
        "{report:#}"
    );
    let booked = app.wait_for_disputes(id_of(&payment), 1).await.remove(0);
    assert_eq!(booked["status"], "won");
    assert_eq!(booked["psp_dispute_id"], dispute["id"]);
    // Withdrawn and given back: the sellers are whole, the PSP owes nothing.
    assert_eq!(app.wallet_minor("seller_a", "USD").await, 1500);
    assert_eq!(app.wallet_minor("seller_b", "USD").await, 250);
    assert_eq!(app.account_sum("psp_receivable:sandbox", "USD").await, 0);
    assert_eq!(
        app.verify_ledger().await.transactions,
        // capture, chargeback, reversal, fees, bank settlement
        5
    );
    assert!(app.verify_ledger().await.ok());
}

db_test!(
    a_lost_dispute_and_a_won_one_end_in_balanced_books,
    a_dispute_drives_a_wallet_negative_and_payouts_wait,
    a_dispute_whose_webhooks_were_lost_is_healed_by_reconciliation,
);
