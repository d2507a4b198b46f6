//! Disputes through the real providers' fakes. A chargeback whose webhook is lost appears only
//! in the provider's settlement (Stripe's balance transactions of its payout, Adyen's Settlement
//! details report): reconciliation finds it — asking Stripe for the dispute by its id, taking
//! Adyen's Chargeback record as Adyen's word — books it (sellers' wallets debited once, the
//! ledger balanced) and reports the line as a healed `missing_in_ledger`. A dispute told twice
//! (the same webhook sent twice; Stripe's `created` and `funds_withdrawn`) is booked once.
//! Stripe's evidence goes to the dispute (`under_review`), and its `won` gives the money back.
//! Adyen's `ChargebackReversed` records (which name the payment, not the dispute) match the
//! payment's dispute: clean when its `CHARGEBACK_REVERSED` came, booked once from the report when
//! it was lost (from `lost` too), a break when the payment has no dispute; a `SecondChargeback`
//! is a break that names it.

use std::sync::atomic::Ordering;
use std::time::Duration;

use ferropay::reconcile::BreakKind;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::connectors::{Psp, Rig, rig, token};
use crate::helpers::*;

impl Rig {
    /// The payment's disputes once there are `count`, within 10 s.
    pub async fn disputes_of(&self, payment: &Value, count: usize) -> Vec<Value> {
        let path = format!("/v1/payments/{}/disputes", payment["id"].as_str().unwrap());
        eventually(
            Duration::from_secs(10),
            &format!("{count} disputes"),
            || async {
                self.app.get_json(&path).await["data"]
                    .as_array()
                    .is_some_and(|d| d.len() == count)
            },
        )
        .await;
        self.app.get_json(&path).await["data"]
            .as_array()
            .unwrap()
            .clone()
    }

    /// Opens a chargeback on the paid `payment` at the provider; answers its id there.
    pub fn chargeback(&self, payment: &Value) -> String {
        match self.psp {
            Psp::Stripe => {
                let session = self.stripe.session(&token(payment));
                let dispute = self
                    .stripe
                    .dispute(session["payment_intent"].as_str().unwrap());
                dispute["id"].as_str().unwrap().to_owned()
            }
            _ => {
                let psp = self.adyen.payment_of(&token(payment)).unwrap();
                self.adyen.chargeback(&psp)
            }
        }
    }

    fn faults(&self) -> &crate::fakes::Faults {
        match self.psp {
            Psp::Stripe => &self.stripe.faults,
            _ => &self.adyen.faults,
        }
    }

    /// Reconciles today from the provider's settlement, as the API runs it: Stripe's payout of
    /// the balance, Adyen's Settlement details report downloaded once announced.
    pub async fn reconcile_today(&self, batch: u32) -> Value {
        match self.psp {
            Psp::Stripe => {
                self.stripe.payout(now_s());
            }
            _ => {
                let name = format!("settlement_detail_report_batch_{batch}.csv");
                self.adyen
                    .publish_report(&name, self.adyen.settlement_report(batch, 0));
                self.report_announced(&name).await;
            }
        }
        self.run_today().await
    }

    /// Reconciles today through the API with what the provider has published so far.
    pub async fn run_today(&self) -> Value {
        let today = time::OffsetDateTime::now_utc().date();
        let response = self
            .app
            .post_keyed(
                "/v1/reconciliation/runs",
                "unused",
                &json!({"date": today.to_string(), "psp": self.psp.name()}),
            )
            .await;
        assert_eq!(response.status(), StatusCode::CREATED);
        response.json().await.unwrap()
    }

    /// Waits until ferropay has recorded Adyen's announcement of report `name`.
    pub async fn report_announced(&self, name: &str) {
        let id = format!("REPORT_AVAILABLE:{name}:true");
        eventually(
            Duration::from_secs(10),
            "the report is announced",
            || async {
                use sqlx::Row;
                sqlx::query("SELECT COUNT(*) AS n FROM webhook_events WHERE event_id = $1")
                    .bind(&id)
                    .fetch_one(self.app.service().store.pool())
                    .await
                    .unwrap()
                    .get::<i64, _>("n")
                    == 1
            },
        )
        .await;
    }
}

async fn a_chargeback_whose_webhook_is_lost_is_booked_by_reconciliation(db: Db, psp: Psp) {
    let Some(rig) = rig(db, psp).await else {
        return;
    };
    let disputed = rig.paid("chk_cb_lost").await;
    // A second payment, so that the provider's balance stays positive and is paid out.
    rig.paid("chk_cb_other").await;
    rig.faults().drop_webhooks.store(true, Ordering::SeqCst);
    let psp_dispute_id = rig.chargeback(&disputed);
    assert_eq!(
        rig.app
            .count("SELECT COUNT(*) FROM journal_transactions WHERE kind = 'chargeback'")
            .await,
        0,
        "no webhook reached ferropay"
    );
    assert_eq!(rig.app.wallet_minor("seller_a", "USD").await, 3000);
    // Adyen's report is announced by webhook: that one arrives.
    rig.faults().drop_webhooks.store(false, Ordering::SeqCst);

    let report = rig.reconcile_today(1).await;
    let healed: Vec<&Value> = report["breaks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["kind"] == "missing_in_ledger")
        .collect();
    assert_eq!(healed.len(), 1, "{report:#}");
    assert_eq!(healed[0]["auto_healed"], true, "{report:#}");
    assert_eq!(
        healed[0]["psp_reference"],
        psp_dispute_id.as_str(),
        "{report:#}"
    );
    assert_eq!(report["breaks_found"], 1, "only the healed one: {report:#}");
    let booked = rig.disputes_of(&disputed, 1).await.remove(0);
    assert_eq!(booked["psp_dispute_id"], psp_dispute_id.as_str());
    assert_eq!(booked["status"], "needs_response");
    assert_eq!(booked["amount"], 1750);
    // Debited once: the disputed payment's shares left the wallets.
    assert_eq!(rig.app.wallet_minor("seller_a", "USD").await, 1500);
    assert_eq!(rig.app.wallet_minor("seller_b", "USD").await, 250);
    rig.ledger_clean().await;

    // The same settlement read again: nothing booked twice.
    let again = rig.run_today().await;
    assert_eq!(
        rig.app
            .count("SELECT COUNT(*) FROM journal_transactions WHERE kind = 'chargeback'")
            .await,
        1,
        "{again:#}"
    );
    assert_eq!(rig.app.wallet_minor("seller_a", "USD").await, 1500);
    rig.ledger_clean().await;
}

async fn a_dispute_told_twice_is_booked_once(db: Db, psp: Psp) {
    let Some(rig) = rig(db, psp).await else {
        return;
    };
    let payment = rig.paid("chk_cb_twice").await;
    rig.faults()
        .duplicate_webhooks
        .store(true, Ordering::SeqCst);
    let psp_dispute_id = rig.chargeback(&payment);
    let booked = rig.disputes_of(&payment, 1).await.remove(0);
    assert_eq!(booked["psp_dispute_id"], psp_dispute_id.as_str());
    eventually(
        Duration::from_secs(10),
        "a copy is answered as a duplicate",
        || async {
            rig.app.metrics_text().await.lines().any(|line| {
                line.starts_with("ferropay_webhook_events_total{result=\"duplicate\"}")
                    && !line.ends_with(" 0")
            })
        },
    )
    .await;
    assert_eq!(
        rig.app
            .count("SELECT COUNT(*) FROM journal_transactions WHERE kind = 'chargeback'")
            .await,
        1,
        "debited once"
    );
    assert_eq!(rig.app.wallet_minor("seller_a", "USD").await, 0);
    assert_eq!(rig.app.wallet_minor("seller_b", "USD").await, 0);
    assert_eq!(rig.receivable().await, 0);
    rig.ledger_clean().await;
}

crate::stripe_and_adyen!(
    a_chargeback_whose_webhook_is_lost_is_booked_by_reconciliation,
    a_dispute_told_twice_is_booked_once,
);

/// Evidence on a Stripe dispute goes to Stripe (`submit=true`: `under_review`); Stripe's `won`
/// (its `charge.dispute.closed`) gives the sellers their money back, and asking Stripe for the
/// dispute says the same.
async fn stripe_dispute_evidence_and_a_won_dispute(db: Db) {
    let Some(rig) = rig(db, Psp::Stripe).await else {
        return;
    };
    let payment = rig.paid("chk_cb_evidence").await;
    let psp_dispute_id = rig.chargeback(&payment);
    let booked = rig.disputes_of(&payment, 1).await.remove(0);
    assert_eq!(rig.app.wallet_minor("seller_a", "USD").await, 0);
    let response = rig
        .app
        .http
        .post(format!(
            "{}/v1/disputes/{}/evidence",
            rig.app.base_url,
            booked["id"].as_str().unwrap()
        ))
        .bearer_auth(&rig.app.api_key)
        .json(&json!({"text": "Delivered on 2026-11-20, signed for by the buyer."}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let reviewed: Value = response.json().await.unwrap();
    assert_eq!(reviewed["status"], "under_review");
    let at_stripe = rig.stripe.dispute_object(&psp_dispute_id);
    assert_eq!(at_stripe["status"], "under_review");
    assert_eq!(
        at_stripe["evidence"]["uncategorized_text"],
        "Delivered on 2026-11-20, signed for by the buyer."
    );

    rig.stripe.close_dispute(&psp_dispute_id, true);
    rig.app
        .wait_for_item(
            &format!("/v1/payments/{}/disputes", payment["id"].as_str().unwrap()),
            booked["id"].as_str().unwrap(),
            "won",
        )
        .await;
    assert_eq!(rig.app.wallet_minor("seller_a", "USD").await, 1500);
    assert_eq!(rig.app.wallet_minor("seller_b", "USD").await, 250);
    let stripe = rig.app.service().connectors.of("stripe").unwrap().clone();
    let asked = stripe.dispute_status(&psp_dispute_id).await.unwrap();
    assert_eq!(asked.status, ferropay::psp::DisputeStatus::Won);
    assert_eq!(asked.amount_minor, 1750);
    rig.ledger_clean().await;
}

/// Adyen's Settlement details report fetched by API for a day (the reports Adyen announced that
/// day, downloaded with the report credential): every record type reconciles clean; the next
/// batch, tampered, reports an amount mismatch; a report that cannot be downloaded is the
/// provider's refusal, not a clean day.
async fn adyen_reports_are_downloaded_for_a_day(db: Db) {
    let Some(rig) = rig(db, Psp::Adyen).await else {
        return;
    };
    let first = rig.paid("chk_rpt_1").await;
    rig.paid("chk_rpt_2").await;
    let refunds = format!("/v1/payments/{}/refunds", first["id"].as_str().unwrap());
    let refund: Value = rig
        .app
        .post_keyed(&refunds, "r1", &json!({"order_id": "ord_2", "amount": 100}))
        .await
        .json()
        .await
        .unwrap();
    rig.app
        .wait_for_item(&refunds, refund["id"].as_str().unwrap(), "succeeded")
        .await;
    let today = time::OffsetDateTime::now_utc().date();
    // No report announced yet: nothing to reconcile, said so.
    let none = rig
        .app
        .post_keyed(
            "/v1/reconciliation/runs",
            "unused",
            &json!({"date": today.to_string(), "psp": "adyen"}),
        )
        .await;
    assert_eq!(none.status(), StatusCode::BAD_GATEWAY);
    let error: Value = none.json().await.unwrap();
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("announced no settlement report"),
        "{error}"
    );

    let name = "settlement_detail_report_batch_1.csv";
    rig.adyen
        .publish_report(name, rig.adyen.settlement_report(1, 15));
    rig.report_announced(name).await;
    let reconciler = rig.app.service().psp_reconciler("adyen").unwrap();
    let dir = std::env::temp_dir();
    let report = reconciler.reconcile_day(today, &dir, false).await.unwrap();
    // Two Settled, the Refunded, the Fee, the MerchantPayout.
    assert_eq!(report.lines, 5, "{report:#?}");
    assert_eq!(report.breaks_found, 0, "{report:#?}");
    assert_eq!(rig.receivable().await, 0);
    rig.ledger_clean().await;

    // Batch 2, tampered on its way: the day now has both reports; the first matches again,
    // the second's Settled line says one cent more.
    let third = rig.paid("chk_rpt_3").await;
    let psp = rig.adyen.payment_of(&token(&third)).unwrap();
    let tampered: String = rig
        .adyen
        .settlement_report(2, 0)
        .lines()
        .map(|line| {
            if line.contains(&psp) && line.contains(",Settled,") {
                line.replacen(",17.50,", ",17.51,", 1)
            } else {
                line.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let name = "settlement_detail_report_batch_2.csv";
    rig.adyen.publish_report(name, tampered);
    rig.report_announced(name).await;
    let report = reconciler.reconcile_day(today, &dir, false).await.unwrap();
    assert_eq!(report.lines, 8, "{report:#?}");
    assert_eq!(
        report.breaks_by_kind.get(&BreakKind::AmountMismatch),
        Some(&1),
        "{report:#?}"
    );
    assert_eq!(report.breaks_found, 1, "{report:#?}");

    // The report server keeps failing: an error to retry, not a clean day.
    rig.adyen
        .faults
        .server_errors
        .store(1_000, Ordering::SeqCst);
    let error = reconciler
        .reconcile_day(today, &dir, false)
        .await
        .unwrap_err();
    assert!(error.to_string().contains("settlement"), "{error}");
    rig.adyen.faults.server_errors.store(0, Ordering::SeqCst);
    rig.ledger_clean().await;
}

/// The number of journal transactions of `kind`.
async fn journals(rig: &Rig, kind: &str) -> i64 {
    use sqlx::Row;
    sqlx::query("SELECT COUNT(*) AS n FROM journal_transactions WHERE kind = $1")
        .bind(kind)
        .fetch_one(rig.app.service().store.pool())
        .await
        .unwrap()
        .get::<i64, _>("n")
}

/// Pays two payments (the second keeps Adyen's balance positive, so the batch pays out) and
/// opens a chargeback on the first, whose notification arrives. Answers the disputed payment,
/// its PSP reference, the dispute's and the dispute as booked.
async fn adyen_chargeback_booked(rig: &Rig, name: &str) -> (Value, String, String, Value) {
    let disputed = rig.paid(&format!("chk_{name}_cb")).await;
    rig.paid(&format!("chk_{name}_other")).await;
    let psp = rig.adyen.payment_of(&token(&disputed)).unwrap();
    let dispute = rig.adyen.chargeback(&psp);
    let booked = rig.disputes_of(&disputed, 1).await.remove(0);
    assert_eq!(booked["psp_dispute_id"], dispute.as_str());
    assert_eq!(rig.app.wallet_minor("seller_a", "USD").await, 1500);
    (disputed, psp, dispute, booked)
}

async fn wait_dispute(rig: &Rig, payment: &Value, booked: &Value, status: &str) {
    rig.app
        .wait_for_item(
            &format!("/v1/payments/{}/disputes", payment["id"].as_str().unwrap()),
            booked["id"].as_str().unwrap(),
            status,
        )
        .await;
}

/// Settled ×2, Chargeback and ChargebackReversed whose notifications all arrived: the report
/// reconciles clean, the reversal matched to the dispute booked as won (its record names the
/// payment and its own reference, not the dispute).
async fn adyen_a_reversed_chargeback_reconciles_clean(db: Db) {
    let Some(rig) = rig(db, Psp::Adyen).await else {
        return;
    };
    let (disputed, psp, dispute, booked) = adyen_chargeback_booked(&rig, "rev_clean").await;
    let reversal = rig.adyen.chargeback_reversed(&psp, &dispute);
    assert_ne!(reversal, dispute);
    wait_dispute(&rig, &disputed, &booked, "won").await;
    assert_eq!(rig.app.wallet_minor("seller_a", "USD").await, 3000);
    assert_eq!(rig.app.wallet_minor("seller_b", "USD").await, 500);

    let report = rig.reconcile_today(1).await;
    // Settled ×2, Chargeback, ChargebackReversed, Fee, MerchantPayout.
    assert_eq!(report["lines"], 6, "{report:#}");
    assert_eq!(report["breaks_found"], 0, "{report:#}");
    assert_eq!(report["matched"], 6, "{report:#}");
    assert_eq!(journals(&rig, "chargeback_reversal").await, 1);
    assert_eq!(rig.app.wallet_minor("seller_a", "USD").await, 3000);
    assert_eq!(rig.receivable().await, 0);
    rig.ledger_clean().await;
}

/// The CHARGEBACK_REVERSED notification is lost (the dispute open, or lost in pre-arbitration
/// first): reconciliation finds the dispute through the record's payment and books the reversal
/// once; the sellers get their shares back once; reading the report again books nothing.
async fn adyen_a_reversal_whose_notification_is_lost_is_booked_once(db: Db, lost_first: bool) {
    let Some(rig) = rig(db, Psp::Adyen).await else {
        return;
    };
    let (disputed, psp, dispute, booked) = adyen_chargeback_booked(&rig, "rev_lost").await;
    if lost_first {
        rig.adyen.prearbitration_lost(&psp, &dispute);
        wait_dispute(&rig, &disputed, &booked, "lost").await;
    }
    rig.adyen.faults.drop_webhooks.store(true, Ordering::SeqCst);
    let reversal = rig.adyen.chargeback_reversed(&psp, &dispute);
    rig.adyen
        .faults
        .drop_webhooks
        .store(false, Ordering::SeqCst);
    assert_eq!(journals(&rig, "chargeback_reversal").await, 0);

    let report = rig.reconcile_today(1).await;
    let breaks = report["breaks"].as_array().unwrap();
    assert_eq!(report["breaks_found"], 1, "{report:#}");
    assert_eq!(breaks[0]["kind"], "missing_in_ledger", "{report:#}");
    assert_eq!(breaks[0]["auto_healed"], true, "{report:#}");
    assert_eq!(breaks[0]["psp_reference"], reversal.as_str(), "{report:#}");
    assert_eq!(
        breaks[0]["merchant_reference"],
        disputed["id"].as_str().unwrap(),
        "{report:#}"
    );
    wait_dispute(&rig, &disputed, &booked, "won").await;
    assert_eq!(
        rig.disputes_of(&disputed, 1).await.len(),
        1,
        "no other dispute"
    );
    assert_eq!(journals(&rig, "chargeback").await, 1);
    assert_eq!(journals(&rig, "chargeback_reversal").await, 1);
    assert_eq!(rig.app.wallet_minor("seller_a", "USD").await, 3000);
    assert_eq!(rig.app.wallet_minor("seller_b", "USD").await, 500);
    assert_eq!(rig.receivable().await, 0);
    rig.ledger_clean().await;

    let again = rig.run_today().await;
    assert_eq!(again["breaks_found"], 0, "{again:#}");
    assert_eq!(journals(&rig, "chargeback_reversal").await, 1, "{again:#}");
    assert_eq!(rig.app.wallet_minor("seller_a", "USD").await, 3000);
    assert_eq!(rig.app.wallet_minor("seller_b", "USD").await, 500);
    rig.ledger_clean().await;
}

async fn adyen_a_lost_reversal_of_an_open_dispute_is_booked_once(db: Db) {
    adyen_a_reversal_whose_notification_is_lost_is_booked_once(db, false).await;
}

async fn adyen_a_lost_reversal_of_a_lost_dispute_is_booked_once(db: Db) {
    adyen_a_reversal_whose_notification_is_lost_is_booked_once(db, true).await;
}

/// Both notifications lost: the Chargeback record books the dispute, then the
/// ChargebackReversed record finds it (in the same run) and books its reversal.
async fn adyen_a_chargeback_and_its_reversal_both_lost_are_booked_in_one_run(db: Db) {
    let Some(rig) = rig(db, Psp::Adyen).await else {
        return;
    };
    let disputed = rig.paid("chk_rev_both_cb").await;
    rig.paid("chk_rev_both_other").await;
    let psp = rig.adyen.payment_of(&token(&disputed)).unwrap();
    rig.adyen.faults.drop_webhooks.store(true, Ordering::SeqCst);
    let dispute = rig.adyen.chargeback(&psp);
    rig.adyen.chargeback_reversed(&psp, &dispute);
    rig.adyen
        .faults
        .drop_webhooks
        .store(false, Ordering::SeqCst);

    let report = rig.reconcile_today(1).await;
    assert_eq!(report["breaks_found"], 2, "{report:#}");
    assert_eq!(report["auto_healed"], 2, "{report:#}");
    let booked = rig.disputes_of(&disputed, 1).await.remove(0);
    assert_eq!(booked["psp_dispute_id"], dispute.as_str());
    assert_eq!(booked["status"], "won");
    assert_eq!(journals(&rig, "chargeback").await, 1);
    assert_eq!(journals(&rig, "chargeback_reversal").await, 1);
    assert_eq!(rig.app.wallet_minor("seller_a", "USD").await, 3000);
    assert_eq!(rig.receivable().await, 0);
    rig.ledger_clean().await;
}

/// A ChargebackReversed record for a payment without a dispute is an `unknown_reference` break:
/// nothing is booked on a guess.
async fn adyen_a_reversal_of_a_payment_without_a_dispute_is_a_break(db: Db) {
    let Some(rig) = rig(db, Psp::Adyen).await else {
        return;
    };
    let payment = rig.paid("chk_rev_none").await;
    let psp = rig.adyen.payment_of(&token(&payment)).unwrap();
    rig.adyen.faults.drop_webhooks.store(true, Ordering::SeqCst);
    let reversal = rig.adyen.chargeback_reversed(&psp, "NO_SUCH_DISPUTE");
    rig.adyen
        .faults
        .drop_webhooks
        .store(false, Ordering::SeqCst);

    let report = rig.reconcile_today(1).await;
    assert_eq!(report["breaks_found"], 1, "{report:#}");
    let found = &report["breaks"][0];
    assert_eq!(found["kind"], "unknown_reference", "{report:#}");
    assert_eq!(found["auto_healed"], false, "{report:#}");
    assert_eq!(found["psp_reference"], reversal.as_str(), "{report:#}");
    assert_eq!(found["merchant_reference"], payment["id"], "{report:#}");
    assert!(
        found["detail"].as_str().unwrap().contains("no dispute"),
        "{report:#}"
    );
    assert_eq!(rig.disputes_of(&payment, 0).await.len(), 0);
    assert_eq!(journals(&rig, "chargeback_reversal").await, 0);
    assert_eq!(rig.app.wallet_minor("seller_a", "USD").await, 1500);
    rig.ledger_clean().await;
}

/// A second chargeback after a reversal: ferropay does not re-open a won dispute, so the
/// SecondChargeback record is a `missing_in_ledger` break (not healed) that names it; the
/// reversal's record still matches clean.
async fn adyen_a_second_chargeback_is_a_break_naming_it(db: Db) {
    let Some(rig) = rig(db, Psp::Adyen).await else {
        return;
    };
    let (disputed, psp, dispute, booked) = adyen_chargeback_booked(&rig, "rev_second").await;
    rig.adyen.chargeback_reversed(&psp, &dispute);
    wait_dispute(&rig, &disputed, &booked, "won").await;
    let second = rig.adyen.second_chargeback(&psp, &dispute);

    let report = rig.reconcile_today(1).await;
    assert_eq!(report["breaks_found"], 1, "{report:#}");
    let found = &report["breaks"][0];
    assert_eq!(found["kind"], "missing_in_ledger", "{report:#}");
    assert_eq!(found["auto_healed"], false, "{report:#}");
    assert_eq!(found["psp_reference"], second.as_str(), "{report:#}");
    assert!(
        found["detail"]
            .as_str()
            .unwrap()
            .contains("SecondChargeback"),
        "{report:#}"
    );
    assert_eq!(rig.disputes_of(&disputed, 1).await[0]["status"], "won");
    assert_eq!(journals(&rig, "chargeback").await, 1);
    assert_eq!(journals(&rig, "chargeback_reversal").await, 1);
    rig.ledger_clean().await;
}

crate::db_test!(
    stripe_dispute_evidence_and_a_won_dispute,
    adyen_reports_are_downloaded_for_a_day,
    adyen_a_reversed_chargeback_reconciles_clean,
    adyen_a_lost_reversal_of_an_open_dispute_is_booked_once,
    adyen_a_lost_reversal_of_a_lost_dispute_is_booked_once,
    adyen_a_chargeback_and_its_reversal_both_lost_are_booked_in_one_run,
    adyen_a_reversal_of_a_payment_without_a_dispute_is_a_break,
    adyen_a_second_chargeback_is_a_break_naming_it,
);
